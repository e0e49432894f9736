// Validates Prometheus Operator objects (ServiceMonitor, PrometheusRule) against the
// operator's CRD schemas, as compiled in the npm package @kubernetes-models/prometheus-operator
// (installed by scripts/setup.sh), for tests/integration/kubernetes.rs.
//
//   node validate_crds.mjs NPM_PREFIX < objects.json      (a JSON array of objects)
//
// Prints one line per object ("ok KIND NAME" or "invalid KIND NAME: why"); exits 1 if any
// object is invalid or of a kind it has no schema for.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const prefix = process.argv[2];
const models = `${prefix}/node_modules/@kubernetes-models/prometheus-operator`;
const objects = JSON.parse(readFileSync(0, "utf8"));
let bad = 0;
for (const o of objects) {
  const [group, version] = String(o.apiVersion).split("/");
  const name = `${o.kind} ${o.metadata?.name}`;
  let Model;
  try {
    const mod = await import(pathToFileURL(`${models}/${group}/${version}/${o.kind}.js`).href);
    Model = mod[o.kind];
  } catch (e) {
    console.log(`invalid ${name}: no schema for ${o.apiVersion} ${o.kind}`);
    bad++;
    continue;
  }
  try {
    new Model(o).validate();
    console.log(`ok ${name}`);
  } catch (e) {
    console.log(`invalid ${name}: ${e.message}`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);
