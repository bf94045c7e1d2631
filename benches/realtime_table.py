"""Turns a realtime benchmark results file (JSON lines from benches/ws_fanout.rs and
benches/sse_fanout.rs) into Markdown tables, Plinth and PocketBase side by side (medians
across runs; missing deliveries and errors summed)."""
import json
import statistics
import sys
from collections import defaultdict

SERVERS = ["plinth", "pocketbase"]
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
groups = defaultdict(list)
for r in rows:
    groups[(r["mode"], r["server"], r["subscribers"])].append(r)


def med(rs, key):
    values = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def problems(rs):
    """Missing deliveries and error counts of a cell, as a short note ('' when clean)."""
    missing = sum(r.get("missing", 0) for r in rs)
    failed = sum(r.get("subscribe_failed", 0) for r in rs)
    errors = sum(sum(r.get("errors", {}).values()) for r in rs)
    notes = []
    if missing:
        notes.append(f"{missing} missing")
    if failed:
        notes.append(f"{failed} not subscribed")
    if errors:
        notes.append(f"{errors} errors")
    return ", ".join(notes)


def ms(us):
    return f"{us / 1000:.2f}"


def cell(mode, server, n, fmt):
    rs = groups.get((mode, server, n))
    if not rs:
        return "—"
    note = problems(rs)
    return fmt(rs) + (f" ({note})" if note else "")


latency_ns = sorted({n for (mode, _, n) in groups if mode == "latency"})
if latency_ns:
    print("One write delivered to N subscribers (latency = receive − write sent; p50 / p99 / max, ms):")
    print()
    # The ideal server (benches/ideal_fanout.rs) is the floor the machine and the load
    # generator allow: a column only when the file has it.
    ideal = any(r["server"] == "ideal" for r in rows)
    extra_head, extra_rule = (" ideal server (floor) |", "---:|") if ideal else ("", "")
    print(f"| subscribers | Plinth | PocketBase | p99 ratio |{extra_head}")
    print(f"|---:|---:|---:|---:|{extra_rule}")
    for n in latency_ns:
        p, b = groups.get(("latency", "plinth", n)), groups.get(("latency", "pocketbase", n))
        fmt = lambda rs: f"{ms(med(rs, 'p50_us'))} / {ms(med(rs, 'p99_us'))} / {ms(med(rs, 'max_us'))}"
        ratio = f"{med(b, 'p99_us') / max(med(p, 'p99_us'), 1):.1f}x" if p and b else "—"
        extra = f" {cell('latency', 'ideal', n, fmt)} |" if ideal else ""
        print(f"| {n:,} | {cell('latency', 'plinth', n, fmt)} | {cell('latency', 'pocketbase', n, fmt)} | {ratio} |{extra}")
    print()
    # Older result files predate the per-write figures.
    if any("fanout_span" in r for r in rows):
        print("Time to the last subscriber of a write (fan-out span; median / p99 over writes, ms):")
        print()
        print(f"| subscribers | Plinth | PocketBase |{extra_head}")
        print(f"|---:|---:|---:|{extra_rule}")
        def both(rs):
            span = lambda q: ms(statistics.median(r["fanout_span"][q] for r in rs if "fanout_span" in r))
            return f"{span('p50_us')} / {span('p99_us')}"

        for n in latency_ns:
            extra = f" {cell('latency', 'ideal', n, both)} |" if ideal else ""
            print(f"| {n:,} | {cell('latency', 'plinth', n, both)} | {cell('latency', 'pocketbase', n, both)} |{extra}")
        print()

    # The writer's answer while its own fan-out runs (the writer waits for nothing else:
    # one write at a time). Older result files predate it.
    if any("write" in r for r in rows):
        print("The writer's answer during its fan-out (write request sent -> answer; p50 / p99 over writes, ms):")
        print()
        print(f"| subscribers | Plinth | PocketBase |{extra_head}")
        print(f"|---:|---:|---:|{extra_rule}")
        def answer(rs):
            w = lambda q: ms(statistics.median(r["write"][q] for r in rs if "write" in r))
            return f"{w('p50_us')} / {w('p99_us')}"

        for n in latency_ns:
            extra = f" {cell('latency', 'ideal', n, answer)} |" if ideal else ""
            print(f"| {n:,} | {cell('latency', 'plinth', n, answer)} | {cell('latency', 'pocketbase', n, answer)} |{extra}")
        print()

summary = []
for n in sorted({n for (mode, _, n) in groups if mode == "throughput"}):
    summary.append((
        f"events/s delivered, {n} subscribers (total; per subscriber; write req/s)",
        lambda rs: f"{med(rs, 'events_per_sec'):,.0f}; {med(rs, 'events_per_sec_per_subscriber'):,.0f}; {med(rs, 'write_rps'):,.0f}",
        "throughput", n, "events_per_sec", False,
    ))
for n in sorted({n for (mode, _, n) in groups if mode == "idle"}):
    summary.append((
        f"memory per idle connection at {n:,} connections (KiB)",
        lambda rs: f"{med(rs, 'bytes_per_connection') / 1024:.1f}",
        "idle", n, "bytes_per_connection", True,
    ))
if summary:
    print("| measurement | Plinth | PocketBase | ratio |")
    print("|---|---:|---:|---:|")
    for title, fmt, mode, n, key, lower_is_better in summary:
        p, b = groups.get((mode, "plinth", n)), groups.get((mode, "pocketbase", n))
        ratio = "—"
        if p and b:
            pv, bv = med(p, key), med(b, key)
            r = (bv / pv if pv else 0) if lower_is_better else (pv / bv if bv else 0)
            ratio = f"{r:.1f}x"
        print(f"| {title} | {cell(mode, 'plinth', n, fmt)} | {cell(mode, 'pocketbase', n, fmt)} | {ratio} |")
