"""Renders a Helm chart with Helm's own template engine (helm-python-sdk: Helm 4's Go SDK
as a library) and lints it, for tests/integration/kubernetes.rs.

    python render_chart.py CHART VALUES_JSON RELEASE NAMESPACE

Prints the manifests as one YAML stream (templates in name order); lint errors or a
template error exit 1 with Helm's message.
"""
import json
import sys

import helm_python as helm


def main() -> int:
    chart_dir, values_json, release, namespace = sys.argv[1:5]
    values = json.loads(values_json)
    lint = helm.lint(chart_dir, values, strict=True, namespace=namespace)
    if lint.get("errors"):
        print(f"helm lint {chart_dir}: {lint['errors']}", file=sys.stderr)
        return 1
    with helm.Chart.load(chart_dir) as chart:
        manifests = chart.render(values, name=release, namespace=namespace)
    for name in sorted(manifests):
        text = manifests[name]
        if text.strip() and not name.endswith("NOTES.txt"):
            sys.stdout.write(f"---\n# Source: {name}\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
