# Reads a nightjar Parquet dataset back with independent tools (pyarrow, DuckDB) and
# prints what the tests compare, as one JSON object. Usage: python readback.py ROOT
import json
import sys

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq

root = sys.argv[1]
out = {}

# pyarrow: the dataset with its Hive partitions, and each file's footer.
d = ds.dataset(root, format="parquet", partitioning="hive")
t = d.to_table()
out["files"] = sorted(f[len(root):] for f in d.files)
out["rows"] = t.num_rows
out["types"] = {f.name: str(f.type) for f in t.schema}
meta = [pq.ParquetFile(f).metadata for f in d.files]
groups = [m.row_group(i) for m in meta for i in range(m.num_row_groups)]
out["row_groups"] = len(groups)
out["max_row_group_rows"] = max((g.num_rows for g in groups), default=0)
out["codecs"] = sorted({g.column(j).compression for g in groups for j in range(g.num_columns)})
events = [json.loads(s) for s in t.column("event").to_pylist()]
pids = t.column("pid").to_pylist()
out["json_matches_pid"] = all(
    (e.get("process_exec") or e.get("process_kprobe") or {}).get("process", {}).get("pid") == p
    for e, p in zip(events, pids)
)

# DuckDB: the same files through its own Parquet reader.
con = duckdb.connect()
src = f"read_parquet('{root}/**/*.parquet', hive_partitioning = true)"
out["duck_rows"] = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
out["duck_types"] = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
out["duck_sigkill_ns1_pids"] = [
    r[0]
    for r in con.execute(
        f"SELECT pid FROM {src} WHERE action = 'SIGKILL' AND namespace = 'ns1' ORDER BY pid"
    ).fetchall()
]
out["duck_per_hour"] = [
    [str(r[0]), str(r[1]), r[2]]
    for r in con.execute(f"SELECT dt, hour, count(*) FROM {src} GROUP BY ALL ORDER BY ALL").fetchall()
]
out["duck_min_time_ns"] = con.execute(f"SELECT epoch_ns(min(time)) FROM {src}").fetchone()[0]
print(json.dumps(out))
