"""Turns a benchmark results file (JSON lines from benches/load.rs) into a Markdown table
of medians across runs, with Plinth/PocketBase ratios."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
groups = defaultdict(list)
ceiling = []
memory = []
for r in rows:
    if r.get("label") == "sqlite-ceiling":
        ceiling.append(r)
        continue
    if r.get("label") == "memory":
        memory.append(r)
        continue
    groups[(r["label"], r["connections"], r["server"])].append(r)


def med(rs, key):
    return statistics.median(r[key] for r in rs)


def cpu(rs):
    vals = [r["server_cpu_us_per_req"] for r in rs if "server_cpu_us_per_req" in r]
    return f"{statistics.median(vals):.0f}" if vals else "–"


def side(rs):
    if not rs:
        return "– | – | – | –"
    return (f"{med(rs, 'rps'):,.0f} | {med(rs, 'p50_us') / 1000:.2f} | {med(rs, 'p99_us') / 1000:.2f} "
            f"| {cpu(rs)}")


print("| workload | conns | Plinth req/s | p50 ms | p99 ms | CPU µs/req "
      "| PocketBase req/s | p50 ms | p99 ms | CPU µs/req | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for label in ["create", "get", "list", "olist", "ocount", "oget", "ocreate"]:
    for conns in [16, 64]:
        p = groups.get((label, conns, "plinth"), [])
        b = groups.get((label, conns, "pocketbase"), [])
        if not p and not b:
            continue
        errs = sum(r["errors"] for r in p + b)
        ratio = f"{med(p, 'rps') / max(med(b, 'rps'), 1):.1f}x" if p and b else "–"
        print(f"| {label} | {conns} | {side(p)} | {side(b)} | {ratio}"
              + (f" ({errs} errors)" if errs else "") + " |")
if ceiling:
    print()
    print(
        f"Raw SQLite ceiling (one row per transaction, WAL, synchronous=NORMAL, no HTTP): "
        f"{statistics.median(c['per_sec'] for c in ceiling):,.0f} inserts/s, "
        f"p50 {statistics.median(c['p50_us'] for c in ceiling)} µs, "
        f"p99 {statistics.median(c['p99_us'] for c in ceiling)} µs (median of {len(ceiling)} runs)."
    )
for m in memory:
    print(f"\nPlinth's memory after the workloads ({m['owned_docs']:,} owned documents, data "
          f"{m['data_mib']:,} MiB): RSS {m['rss_mib']} MiB ({m['rss_anon_mib']} anonymous, "
          f"{m['rss_file_mib']} file), peak {m['peak_rss_mib']} MiB.")
