#!/usr/bin/env python3
"""nightjar benchmark harness: every scenario, its baseline measured in the same run, one
table. Exits non-zero, naming the scenario, if any scenario could not run.

Run through bench/run.sh (it builds in release mode first). Needs root (eBPF).
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NJ = os.path.join(ROOT, "target/release/nightjar")
LOADGEN = os.path.join(ROOT, "target/release/loadgen")
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
ROWS = []  # (scenario, nightjar figure, baseline figure, ratio)


class ScenarioFailed(Exception):
    pass


def med(xs):
    return statistics.median(xs)


def spread(xs):
    return (max(xs) - min(xs)) / med(xs) * 100 if xs and med(xs) else 0.0


def fmt(xs, unit, digits=0):
    return f"{med(xs):,.{digits}f} {unit} (±{spread(xs):.0f}%, n={len(xs)})"


def row(scenario, ours, base, ratio):
    ROWS.append((scenario, ours, base, ratio))
    print(f"  {scenario}: {ours} | baseline {base} | {ratio}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def loadgen(mode, path, count, rate=None, cpu=0):
    cmd = ["taskset", "-c", str(cpu), LOADGEN, mode, path, str(count)] + ([str(rate)] if rate else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise ScenarioFailed(f"loadgen {mode} failed: {out.stderr.strip()}")
    m = re.search(r"ops=(\d+) secs=([\d.]+) rate=([\d.]+)", out.stdout)
    return float(m.group(2)), float(m.group(3))


class Agent:
    """A release nightjar on its own temp dir, ports and socket; file sink only."""

    def __init__(self, policies_dir="", extra=()):
        self.dir = tempfile.mkdtemp(prefix="nightjar-bench-")
        self.port = free_port()
        self.log = os.path.join(self.dir, "events.log")
        args = [
            NJ, "run",
            "--set", f"metrics.listen=127.0.0.1:{self.port}",
            "--set", f"control.socket={self.dir}/nj.sock",
            "--set", "server.address=",
            "--set", f"sinks.file.path={self.log}",
            "--set", "sinks.file.max_size=0",
            "--set", "sinks.stdout.enabled=false",
            "--set", f"sensor.policies_dir={policies_dir}",
            # Every event is measured through the whole path: no folding, no limits.
            "--set", "pipeline.dedup.enabled=false",
            "--set", "sensor.proc_scan=false",
            *extra,
        ]
        self.proc = subprocess.Popen(["taskset", "-c", "1", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise ScenarioFailed(f"agent exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except Exception:
                time.sleep(0.2)
        raise ScenarioFailed("agent never became healthy")

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name_labels, _, value = line.rpartition(" ")
            name = name_labels.split("{")[0]
            try:
                out[name] = out.get(name, 0.0) + float(value)
            except ValueError:
                pass
            out[name_labels] = float(value) if value.replace(".", "", 1).replace("e+", "").isdigit() else out.get(name_labels, 0)
        return out

    def cpu_seconds(self):
        # The agent is the child of taskset, which execs it: same pid.
        with open(f"/proc/{self.proc.pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        tck = os.sysconf("SC_CLK_TCK")
        return (int(parts[11]) + int(parts[12])) / tck

    def rss_mib(self, key="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise ScenarioFailed("agent did not stop within 60 s of SIGTERM")
        shutil.rmtree(self.dir, ignore_errors=True)


def bench_policy(dirpath, target):
    """monitor-sensitive-files, watching the bench's own file instead of /etc."""
    os.makedirs(dirpath, exist_ok=True)
    src = open(os.path.join(ROOT, "config/policies/monitor-sensitive-files.yaml")).read()
    text = re.sub(r"values:\n(\s+- \"[^\n]*\n)+", f'values:\n        - "{target}"\n', src, count=1)
    text = text.replace("name: monitor-sensitive-files", "name: bench-files")
    with open(os.path.join(dirpath, "bench-files.yaml"), "w") as f:
        f.write(text)


def settle(agent, key, want=None, quiet=1.5, timeout=120):
    """Waits until metric `key` stops moving (or reaches `want`); returns its value."""
    last, since, end = None, time.time(), time.time() + timeout
    while time.time() < end:
        v = agent.metrics().get(key, 0.0)
        if want is not None and v >= want:
            return v
        if v != last:
            last, since = v, time.time()
        elif time.time() - since > quiet:
            return v
        time.sleep(0.25)
    return last or 0.0


def scenario_kernel_path(tmp):
    print("1. kernel event path (one core generates, the agent runs on the other)", flush=True)
    target = os.path.join(tmp, "bench-secret")
    open(target, "w").write("x")
    pdir = os.path.join(tmp, "policies-kpath")
    bench_policy(pdir, target)
    n = 300_000
    base, ours, delivered, missed, cpu = [], [], [], [], []
    for _ in range(RUNS):
        base.append(loadgen("open", target, n)[1])
        a = Agent(pdir)
        try:
            m0 = a.metrics()
            c0, t0 = a.cpu_seconds(), time.time()
            secs, rate = loadgen("open", target, n)
            got = settle(a, "nightjar_policy_events_total", want=m0.get("nightjar_policy_events_total", 0) + n)
            got -= m0.get("nightjar_policy_events_total", 0)
            ms = a.metrics().get("nightjar_missed_events_total", 0.0) - m0.get("nightjar_missed_events_total", 0.0)
            cpu.append((a.cpu_seconds() - c0) / (time.time() - t0) * 100)
            ours.append(rate)
            delivered.append(got / secs)
            missed.append(ms)
        finally:
            a.stop()
    row("open loop on a watched file: generator ops/s", fmt(ours, "ops/s"), fmt(base, "ops/s"), f"{med(ours)/med(base):.2f}")
    row("  events delivered/s (policy events)", fmt(delivered, "ev/s"), fmt(base, "ops/s"), f"{med(delivered)/med(base):.2f}")
    row("  missed events per run / agent CPU %", f"{med(missed):.0f} missed, {med(cpu):.0f}% CPU", f"{n} ops/run", "-")

    n = 3000
    base, ours, delivered = [], [], []
    for _ in range(RUNS):
        base.append(loadgen("exec", "/bin/true", n)[1])
        a = Agent("")
        try:
            m0 = a.metrics().get("nightjar_process_exec_total", 0.0)
            secs, rate = loadgen("exec", "/bin/true", n)
            got = settle(a, "nightjar_process_exec_total", want=m0 + n) - m0
            ours.append(rate)
            delivered.append(got / secs)
        finally:
            a.stop()
    row("exec loop: generator execs/s", fmt(ours, "exec/s"), fmt(base, "exec/s"), f"{med(ours)/med(base):.2f}")
    row("  process_exec events delivered/s", fmt(delivered, "ev/s"), fmt(base, "exec/s"), f"{med(delivered)/med(base):.2f}")


def scenario_overhead(tmp):
    print("2. overhead: storms without the agent, with the base sensor, with policies (interleaved)", flush=True)
    pdir = os.path.join(tmp, "policies-seed")
    os.makedirs(pdir, exist_ok=True)
    # Observing seed policies only: enforcing ones do not belong host-wide in a benchmark.
    for p in ["monitor-sensitive-files", "detect-privilege-escalation"]:
        shutil.copy(os.path.join(ROOT, f"config/policies/{p}.yaml"), pdir)
    res = {k: {"exec": [], "open": []} for k in ["none", "base", "policies"]}
    filtered, posted = [], []
    order = ["none", "base", "policies"]
    for r in range(RUNS):
        for k in order[r % 3:] + order[: r % 3]:
            a = None if k == "none" else Agent("" if k == "base" else pdir)
            try:
                res[k]["exec"].append(loadgen("exec", "/bin/true", 2000)[0])
                m0 = a.metrics() if a else {}
                res[k]["open"].append(loadgen("open", "/etc/hostname", 300_000)[0])
                if k == "policies":
                    time.sleep(1.5)  # the filtered counters are exported every second
                    m1 = a.metrics()
                    key_f, key_p = "nightjar_policy_filtered_total", "nightjar_policy_events_total"
                    filtered.append(m1.get(key_f, 0.0) - m0.get(key_f, 0.0))
                    posted.append(m1.get(key_p, 0.0) - m0.get(key_p, 0.0))
            finally:
                if a:
                    a.stop()
    if filtered:
        row(
            "open-storm with policies: hook hits filtered in the kernel vs delivered",
            f"{med(filtered):,.0f} filtered, {med(posted):,.0f} delivered",
            "300,000 opens of /etc/hostname",
            f"{med(filtered) / 300_000:.2f} filtered per open",
        )
        cost = (med(res["policies"]["open"]) - med(res["none"]["open"])) / 300_000 * 1e9
        row("cost per non-matching openat with the sensitive-files policy", f"{cost:,.0f} ns", f"{med(res['none']['open']) / 300_000 * 1e9:,.0f} ns per open+close without agent", "-")
    for storm, unit in [("exec", "2000 execs"), ("open", "300k opens")]:
        b = med(res["none"][storm])
        for k in ["base", "policies"]:
            v = med(res[k][storm])
            row(
                f"{storm}-storm wall time, agent {'base sensor' if k == 'base' else '+ seed policies (non-matching)'}",
                fmt(res[k][storm], "s", 3),
                fmt(res["none"][storm], "s", 3),
                f"{(v / b - 1) * 100:+.1f}% wall time",
            )


HOOK_POLICY = """apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: bench-{name}
spec:
{hook}
    selectors:
    - matchPIDs:
      - operator: In
        values: [1]
"""


def scenario_hook_cost(tmp):
    """ns per call of a hooked function whose selector does not match, by hook kind."""
    print("7. hook cost: calls with a non-matching policy vs none (uprobe, tracepoint; kprobe where the kernel has them)", flush=True)
    n = 2_000_000
    loadgen_path = os.path.realpath(LOADGEN)
    kinds = [
        ("uprobe", "call", f"  uprobes:\n  - path: \"{loadgen_path}\"\n    symbols: [nightjar_bench_target]"),
        ("tracepoint", "getppid", "  tracepoints:\n  - subsystem: syscalls\n    event: sys_enter_getppid"),
    ]
    has_kprobes = os.path.exists("/sys/kernel/tracing/kprobe_events") or os.path.exists("/sys/kernel/debug/tracing/kprobe_events")
    if has_kprobes:
        kinds.append(("kprobe", "getppid", "  kprobes:\n  - call: __x64_sys_getppid\n    syscall: false"))
    for name, mode, hook in kinds:
        pdir = os.path.join(tmp, f"policies-hook-{name}")
        os.makedirs(pdir, exist_ok=True)
        with open(os.path.join(pdir, "p.yaml"), "w") as f:
            f.write(HOOK_POLICY.format(name=name, hook=hook))
        base, hooked = [], []
        for _ in range(RUNS):
            base.append(loadgen(mode, "-", n)[0])
            a = Agent(pdir)
            try:
                hooked.append(loadgen(mode, "-", n)[0])
            finally:
                a.stop()
        cost = (med(hooked) - med(base)) / n * 1e9
        row(f"cost per call of a {name} hook, selector not matching", f"{cost:,.0f} ns", f"{med(base) / n * 1e9:,.0f} ns per call without agent", f"{med(hooked) / med(base):.2f}x")
    if not has_kprobes:
        row("cost per call of a generic kprobe hook, selector not matching", "not measured", "this kernel has no kprobes", "-")


def cargo_bench(pkg, bench, env=None):
    out = subprocess.run(
        ["cargo", "bench", "--locked", "-p", pkg, "--bench", bench],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=1800,
    )
    if out.returncode != 0:
        raise ScenarioFailed(f"cargo bench {bench} failed: {out.stderr[-2000:]}")
    return out.stdout


def scenario_pipeline():
    print("3. pipeline and local sinks (synthetic events)", flush=True)
    base, full = [], []
    for _ in range(RUNS):
        o = cargo_bench("nightjar-pipeline", "pipeline")
        base.append(float(re.search(r"baseline .*?([\d.]+) events/s", o).group(1)))
        full.append(float(re.search(r"pipeline  .*?([\d.]+) events/s", o).group(1)))
    row("pipeline: all stages -> null sink, one core", fmt(full, "ev/s"), fmt(base, "ev/s") + " (fan-out only)", f"{med(full)/med(base):.2f}")
    fs, cat, pq, fsmb, enc, genc = [], [], [], [], [], []
    for _ in range(RUNS):
        o = cargo_bench("nightjar-sinks", "local_sinks")
        for line in o.splitlines():
            cols = re.split(r"\s{2,}", line.strip())
            if line.startswith("cat"):
                cat.append(float(cols[2]))
            elif line.startswith("file sink (defaults"):
                fs.append(float(cols[1]))
                fsmb.append(float(cols[2]))
            elif line.startswith("parquet sink"):
                pq.append(float(cols[1]))
            elif line.startswith("json encode:"):
                m = re.match(r"json encode: ([\d.]+) events/s typed, ([\d.]+) events/s", line)
                enc.append(float(m.group(1)))
                genc.append(float(m.group(2)))
    if not (fs and cat and pq and enc):
        raise ScenarioFailed("local_sinks bench output not understood")
    row("file sink (JSON lines) MB/s", fmt(fsmb, "MB/s", 1) + f", {med(fs):,.0f} ev/s", fmt(cat, "MB/s", 1) + " (cat)", f"{med(fsmb)/med(cat):.2f}")
    row("parquet sink events/s", fmt(pq, "ev/s"), fmt(fs, "ev/s") + " (file sink)", f"{med(pq)/med(fs):.2f}")
    row("JSON encode events/s, one thread", fmt(enc, "ev/s"), fmt(genc, "ev/s") + " (same docs as serde_json::Value)", f"{med(enc)/med(genc):.2f}")


def scenario_memory(tmp):
    print("5. memory: agent RSS with sustained load (30 s each)", flush=True)
    target = os.path.join(tmp, "bench-secret-mem")
    open(target, "w").write("x")
    pdir = os.path.join(tmp, "policies-mem")
    bench_policy(pdir, target)
    secs = int(os.environ.get("BENCH_MEM_SECS", "30"))
    for rate in [1_000, 10_000, 100_000]:
        a = Agent(pdir)
        try:
            idle = a.rss_mib()
            m0 = a.metrics()
            _, achieved = loadgen("open", target, rate * secs, rate=rate)
            settle(a, "nightjar_policy_events_total")
            rss, hwm = a.rss_mib(), a.rss_mib("VmHWM")
            ms = a.metrics().get("nightjar_missed_events_total", 0.0) - m0.get("nightjar_missed_events_total", 0.0)
        finally:
            a.stop()
        row(f"agent RSS at {rate:,} events/s for {secs} s", f"{rss:.1f} MiB (peak {hwm:.1f}), {ms:,.0f} missed, {achieved:,.0f}/s achieved", f"{idle:.1f} MiB idle", f"{rss/idle:.2f}")


def scenario_remote_sinks():
    print("4. remote sinks (Kafka, Elasticsearch) vs their reference clients", flush=True)
    benches = os.path.join(ROOT, "sinks/benches/remote_sinks.rs")
    if not os.path.exists(benches):
        raise ScenarioFailed("the Kafka and Elasticsearch sinks have no benchmark yet (sinks/benches/remote_sinks.rs)")
    # Each run starts its own broker and Elasticsearch-API server (fresh topics, indices).
    got = {}  # what -> ([ours ev/s], baseline name, [baseline ev/s])
    events = os.environ.get("BENCH_REMOTE_EVENTS", "20000")
    for _ in range(RUNS):
        o = cargo_bench("nightjar-sinks", "remote_sinks", env={"NIGHTJAR_BENCH_EVENTS": events})
        for line in o.splitlines():
            m = re.match(r"\| (.+?) \| ([\d.]+) ev/s \| ([\d.]+) ev/s \((.+?)\) \| [\d.]+ \|$", line.strip())
            if m:
                ours, bname, base = got.setdefault(m.group(1), ([], m.group(4), []))
                ours.append(float(m.group(2)))
                base.append(float(m.group(3)))
    if len(got) < 3 or any(len(v[0]) != RUNS for v in got.values()):
        raise ScenarioFailed(f"remote_sinks printed {len(got)} comparisons (want 3, each {RUNS} times)")
    for what, (ours, bname, base) in got.items():
        row(f"{what} ({events} events)", fmt(ours, "ev/s"), fmt(base, "ev/s") + f" {bname}", f"{med(ours)/med(base):.2f}")



def scenario_buffers():
    print("6. sink buffers: disk vs memory, and replay after an outage", flush=True)
    mem, disk, fill, replay = [], [], [], []
    events = os.environ.get("BENCH_BUFFER_EVENTS", "300000")
    for _ in range(RUNS):
        o = cargo_bench("nightjar-sinks", "buffers", env={"NIGHTJAR_BENCH_EVENTS": events})
        for line in o.splitlines():
            cols = re.split(r"\s{2,}", line.strip())
            if len(cols) == 2 and re.fullmatch(r"[\d.]+", cols[1]):
                {"memory buffer": mem, "disk buffer (fsync interval)": disk,
                 "disk buffer fill (outage, no reader)": fill,
                 "disk buffer replay after restart": replay}.get(cols[0], []).append(float(cols[1]))
    if not (mem and disk and fill and replay):
        raise ScenarioFailed("buffers bench output not understood")
    row(f"disk buffer events/s ({events} events)", fmt(disk, "ev/s"), fmt(mem, "ev/s") + " (memory buffer)", f"{med(disk)/med(mem):.2f}")
    row("disk buffer replay after an outage, events/s", fmt(replay, "ev/s"), fmt(fill, "ev/s") + " (filling it)", f"{med(replay)/med(fill):.2f}")

def main():
    if os.geteuid() != 0:
        sys.exit("bench: run as root (the agent loads eBPF programs)")
    for tool in ["taskset"]:
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found")
    started = time.time()
    tmp = tempfile.mkdtemp(prefix="nightjar-bench-")
    failed = []
    scenarios = [
        ("1 kernel event path", lambda: scenario_kernel_path(tmp)),
        ("2 overhead", lambda: scenario_overhead(tmp)),
        ("3 pipeline and local sinks", scenario_pipeline),
        ("4 remote sinks", scenario_remote_sinks),
        ("5 memory", lambda: scenario_memory(tmp)),
        ("6 sink buffers", scenario_buffers),
        ("7 hook cost", lambda: scenario_hook_cost(tmp)),
    ]
    only = os.environ.get("BENCH_ONLY")
    for name, fn in scenarios:
        if only and not name.startswith(only):
            continue
        try:
            fn()
        except Exception as e:  # a scenario that cannot run fails the harness, loudly
            failed.append((name, str(e)))
            print(f"  SCENARIO FAILED: {name}: {e}", file=sys.stderr, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"nightjar benchmarks — {time.strftime('%Y-%m-%d %H:%M')} — {os.cpu_count()} cores, kernel {os.uname().release}, {RUNS} runs each, median (spread)")
    w = max(len(r[0]) for r in ROWS) if ROWS else 10
    print(f"| {'scenario':<{w}} | nightjar | baseline (same run) | ratio |")
    print(f"|{'-' * (w + 2)}|---|---|---|")
    for r in ROWS:
        print(f"| {r[0]:<{w}} | {r[1]} | {r[2]} | {r[3]} |")
    print(f"\ntotal {time.time() - started:.0f} s")
    if failed:
        print("\nINCOMPLETE: these scenarios could not run:", file=sys.stderr)
        for n, e in failed:
            print(f"  - {n}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
