"""Reads a topic back with confluent-kafka (an independent librdkafka from PyPI) as a
consumer group, until `expected` messages arrived and then a few quiet seconds more (to
catch duplicates), checking each message's key and headers against its JSON.
Usage: readback.py BOOTSTRAP TOPIC EXPECTED KEY_FIELD TIMEOUT_SECS [TIMES_FILE]. Prints one JSON
object; TIMES_FILE gets the distinct `time`s read, sorted, one a line."""
import json
import sys
import time

from confluent_kafka import Consumer

bootstrap, topic, expected, key_field, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "nightjar-readback-" + topic,
              "auto.offset.reset": "earliest", "enable.auto.commit": True})
c.subscribe([topic])
count, pids, times, bad_key, bad_headers, errors = 0, set(), set(), [], [], []
deadline = time.time() + timeout
quiet_until = None
while time.time() < deadline:
    if quiet_until is not None and time.time() > quiet_until:
        break
    msgs = c.consume(num_messages=10000, timeout=1.0)
    for m in msgs:
        if m.error():
            errors.append(str(m.error()))
            continue
        count += 1
        ev = json.loads(m.value())
        kind = next(k for k in ev if k.startswith("process_") or k == "rate_limit_info")
        proc = ev[kind].get("process", {})
        pids.add(proc.get("pid"))
        times.add(ev.get("time"))
        pod = proc.get("pod")
        if key_field == "namespace_pod":
            want = f"{pod['namespace']}/{pod['name']}" if pod else ev["node_name"]
        elif key_field == "exec_id":
            want = proc.get("exec_id", ev["node_name"])
        else:
            want = ev["node_name"]
        if (m.key() or b"").decode() != want and len(bad_key) < 5:
            bad_key.append([(m.key() or b"").decode(), want])
        h = {k: v.decode() for k, v in (m.headers() or [])}
        want_h = {"event_type": kind, "node_name": ev["node_name"]}
        if ev[kind].get("policy_name"):
            want_h["policy_name"] = ev[kind]["policy_name"]
        if h != want_h and len(bad_headers) < 5:
            bad_headers.append([h, want_h])
    if count >= expected and quiet_until is None:
        quiet_until = time.time() + 5
c.close()
if len(sys.argv) > 6:
    with open(sys.argv[6], "w") as f:
        f.write("".join(t + "\n" for t in sorted(times)))
print(json.dumps({"count": count, "distinct_pids": len(pids), "distinct_times": len(times), "bad_key": bad_key, "bad_headers": bad_headers, "errors": errors[:5]}))
