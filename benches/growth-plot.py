"""Growth curves of issue 17: JSONL of benches/growth-{tenants,sockets,nodes}.sh (and of
benches/bigdata.sh, whose one-tenant rows make the documents curve) -> one PNG per curve
and markdown tables (with a model of a larger machine for the nodes) to paste into
BENCHMARKS.md. Nodes rows are grouped by their `tenants` (TENANTS of growth-nodes.sh; 1
when absent), a table and a line per tenant count; the model takes the CPU per create of
the most tenants present.

  python3 benches/growth-plot.py [--out docs/growth] [--no-png] RESULTS.jsonl...

The drivers call it on the file they wrote. matplotlib is installed from PyPI (pip, into
the running Python) when it is missing; --no-png prints the tables only.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict

GOAL_IDLE_MIB = 200  # 10,000 tenants in <= 200 MiB idle
GOAL_COLD_P99_MS = 5  # a cold tenant answers within 5 ms p99
GOAL_NODES_RATIO = 2.5  # 3 nodes >= 2.5x one node's creates/s


def pyplot():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("installing matplotlib (pip)...", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "matplotlib"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ms(us):
    return None if us is None else us / 1000


def fmt(x, digits=2):
    if x is None:
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


def median(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def source(rows):
    r = rows[0]
    return f"commit {r.get('commit', '?')}; {r.get('cores', '')}"


class Plots:
    def __init__(self, out, enabled):
        self.out, self.plt = out, (pyplot() if enabled else None)
        self.written = []
        if enabled:
            os.makedirs(out, exist_ok=True)

    def save(self, fig, name):
        path = os.path.join(self.out, name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        self.plt.close(fig)
        self.written.append(path)

    def figure(self, title, subtitle, xlabel, ylabel, logx=False):
        fig, ax = self.plt.subplots(figsize=(7, 4.2))
        ax.set_title(f"{title}\n{subtitle}", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if logx:
            ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        return fig, ax


# ------------------------------------------------------------------ tenants

def tenants(rows, plots):
    by = defaultdict(dict)
    spread = defaultdict(list)
    for r in rows:
        if r["measure"] == "spread":
            spread[r["tenants"]].append(r)
        else:
            by[r["tenants"]][r["measure"]] = r
    xs = sorted(by)
    print(f"### Tenants on one node ({source(rows)})\n")
    r0 = rows[0]
    print(f"Each tenant: {r0['docs_per_tenant']} documents, one user, a service key; idle close "
          f"{r0['idle_s']} s, hooks {'on' if r0['hooks'] else 'off'}. Cold = first get after the "
          f"tenant's file was closed; warm = the same get right after. Spread = load.rs, "
          f"{spread[xs[0]][0]['connections'] if spread.get(xs[0]) else '?'} connections, each get "
          f"to a random tenant, median of runs.\n")
    print("| tenants | idle RSS MiB (anon + file) | idle fds | tenant files open idle | start ms "
          "| all served, then idle: RSS MiB (anon + file) / files open | first get after start p50 / p99 ms "
          "| cold p50 / p99 ms | warm p50 / p99 ms | spread req/s | spread p99 ms | server µs/req "
          "| fds / files open after spread | spread errors |")
    print("|---:|---|---:|---:|---:|---|---|---|---|---:|---:|---:|---|---:|")
    for x in xs:
        idle, cold = by[x].get("idle", {}), by[x].get("cold", {})
        served = by[x].get("served", {})
        first = served.get("first", {})
        served_cols = (f"{served.get('rss_kib', 0) / 1024:,.0f} ({served.get('rss_anon_kib', 0) / 1024:,.0f} + "
                       f"{served.get('rss_file_kib', 0) / 1024:,.0f}) / {served.get('tenant_files_open', '–')} "
                       f"| {fmt(ms(first.get('p50_us')))} / {fmt(ms(first.get('p99_us')))}") if served else "– | –"
        sp = spread.get(x, [])
        c, w = cold.get("cold", {}), cold.get("warm", {})
        wanted = f" (of {idle['tenants_wanted']:,})" if idle.get("tenants_wanted", x) != x else ""
        print(f"| {x:,}{wanted} | {idle.get('rss_kib', 0) / 1024:,.0f} ({idle.get('rss_anon_kib', 0) / 1024:,.0f} + "
              f"{idle.get('rss_file_kib', 0) / 1024:,.0f}) | {idle.get('fds', '–')} | {idle.get('tenant_files_open', '–')} "
              f"| {idle.get('start_ms', '–')} | {served_cols} | {fmt(ms(c.get('p50_us')))} / {fmt(ms(c.get('p99_us')))} (n={c.get('n', 0)}) "
              f"| {fmt(ms(w.get('p50_us')))} / {fmt(ms(w.get('p99_us')))} | {fmt(median(sp, 'rps'), 0)} "
              f"| {fmt(ms(median(sp, 'p99_us')))} | {fmt(median(sp, 'server_cpu_us_per_req'), 0)} "
              f"| {max((r['fds'] for r in sp), default='–')} / {max((r['tenant_files_open'] for r in sp), default='–')} "
              f"| {sum(r['errors'] for r in sp)} |")
    print(f"\nGoals: {GOAL_IDLE_MIB} MiB idle at 10,000 tenants; cold p99 <= {GOAL_COLD_P99_MS} ms.\n")
    if not plots.plt:
        return
    sub = source(rows)
    fig, ax = plots.figure("Idle memory and descriptors vs tenants", sub, "tenants", "MiB", logx=True)
    ax.plot(xs, [by[x].get("idle", {}).get("rss_kib", 0) / 1024 for x in xs], "o-", label="RSS")
    ax.plot(xs, [by[x].get("idle", {}).get("rss_anon_kib", 0) / 1024 for x in xs], "s--", label="RSS anonymous")
    if any("served" in by[x] for x in xs):
        ax.plot(xs, [by[x].get("served", {}).get("rss_kib", 0) / 1024 for x in xs], "D-",
                label="RSS, every tenant served once, then idle")
    ax.axhline(GOAL_IDLE_MIB, color="red", ls=":", label=f"goal {GOAL_IDLE_MIB} MiB")
    ax2 = ax.twinx()
    ax2.plot(xs, [by[x].get("idle", {}).get("fds", 0) for x in xs], "^-.", color="gray", label="open fds")
    ax2.set_ylabel("descriptors")
    lines = ax.get_legend_handles_labels(), ax2.get_legend_handles_labels()
    ax.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="upper left")
    plots.save(fig, "tenants-memory.png")

    fig, ax = plots.figure("First request to a cold tenant", sub, "tenants", "ms", logx=True)
    for kind, style in (("cold", "-"), ("warm", "--")):
        for p, marker in (("p50_us", "o"), ("p99_us", "^")):
            ax.plot(xs, [ms(by[x].get("cold", {}).get(kind, {}).get(p)) for x in xs], marker + style,
                    label=f"{kind} {p[:3]}")
    ax.axhline(GOAL_COLD_P99_MS, color="red", ls=":", label=f"goal p99 {GOAL_COLD_P99_MS} ms")
    ax.legend()
    plots.save(fig, "tenants-cold.png")

    fig, ax = plots.figure("Requests spread over all tenants", sub, "tenants", "requests/s", logx=True)
    ax.plot(xs, [median(spread.get(x, []), "rps") for x in xs], "o-", label="req/s (median)")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(xs, [ms(median(spread.get(x, []), "p99_us")) for x in xs], "^--", color="gray", label="p99 ms")
    ax2.set_ylabel("p99 ms")
    ax2.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels(), ax2.get_legend_handles_labels()
    ax.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="lower left")
    plots.save(fig, "tenants-spread.png")


# ------------------------------------------------------------------ sockets

def sockets(rows, plots):
    rows = sorted(rows, key=lambda r: r["sockets"])
    print(f"### Idle realtime sockets on one node ({source(rows)})\n")
    print("| idle sockets | tenants | open | server RSS MiB before → after | bytes / socket "
          "| fan-out to | delivery p50 / p99 / max ms | span p99 ms | writer p99 ms | missing | note |")
    print("|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['sockets']:,} | {r['tenants']} | – | – | – | – | – | – | – | – | skipped: {r['skipped']} |")
            continue
        f = r["fanout"]
        print(f"| {r['sockets']:,} | {r['tenants']} | {r['sockets_open']:,} "
              f"| {r['rss_before_kib'] / 1024:,.0f} → {r['rss_after_kib'] / 1024:,.0f} | {r['bytes_per_socket']:,} "
              f"| {f['subscribed']:,} | {fmt(ms(f.get('p50_us')))} / {fmt(ms(f.get('p99_us')))} / {fmt(ms(f.get('max_us')))} "
              f"| {fmt(ms(f['fanout_span'].get('p99_us')))} | {fmt(ms(f['write'].get('p99_us')))} | {f['missing']} "
              f"| {'' if r['sockets_open_after_fanout'] >= r['sockets_open'] else 'idle sockets lost during the fan-out: ' + str(r['sockets_open'] - r['sockets_open_after_fanout'])} |")
    print()
    done = [r for r in rows if "skipped" not in r]
    if not plots.plt or not done:
        return
    sub = source(rows)
    xs = [r["sockets_open"] for r in done]
    fig, ax = plots.figure("Server memory per idle subscribed socket", sub, "idle sockets", "bytes per socket")
    ax.plot(xs, [r["bytes_per_socket"] for r in done], "o-", label="RSS growth / socket")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(xs, [r["rss_after_kib"] / 1024 for r in done], "^--", color="gray", label="RSS MiB")
    ax2.set_ylabel("RSS MiB")
    lines = ax.get_legend_handles_labels(), ax2.get_legend_handles_labels()
    ax.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="lower right")
    plots.save(fig, "sockets-memory.png")

    fig, ax = plots.figure(f"Fan-out to {done[0]['fanout']['subscribers']:,} subscribers beside N idle sockets",
                           sub, "idle sockets", "delivery ms")
    for p, marker in (("p50_us", "o-"), ("p99_us", "^-"), ("max_us", "x:")):
        ax.plot(xs, [ms(r["fanout"].get(p)) for r in done], marker, label=p[:-3])
    ax.set_ylim(bottom=0)
    ax.legend()
    plots.save(fig, "sockets-fanout.png")


# ------------------------------------------------------------------ nodes

def tenants_label(t):
    return f"{t} tenant{'s' if t > 1 else ''}"


def nodes(rows, plots):
    """One series per tenant count (`TENANTS`; rows from before it was recorded wrote to
    one tenant): a table each, a line each in the plots."""
    series = {}
    for r in rows:
        creates, fanout = series.setdefault(r.get("tenants", 1), (defaultdict(list), {}))
        if r["measure"] == "creates":
            creates[r["nodes"]].append(r)
        else:
            fanout[r["nodes"]] = r
    print(f"### Nodes on one PostgreSQL behind haproxy ({rows[0]['postgres']})\n")
    for t in sorted(series):
        nodes_table(t, *series[t], rows)
    model = nodes_model(series)
    if model:
        print(f"{model['text']}\n")
        print("| nodes (a core each) | " + " | ".join(f"PostgreSQL on {p} core{'s' if p > 1 else ''}"
                                                   for p in model["pg_cores"]) + " |")
        print("|---:|" + "---:|" * len(model["pg_cores"]))
        for n, row in model["rows"]:
            print(f"| {n} | " + " | ".join(f"{v:,.0f}" for v in row) + " |")
        print()
    xs = sorted({r["nodes"] for r in rows})
    if not plots.plt or not xs:
        return
    # The largest cluster's layout names every role.
    sub = max(rows, key=lambda r: r["nodes"]).get("cores", "")
    fig, ax = plots.figure("Creates/s through haproxy vs nodes", sub, "nodes", "creates/s")
    for t in sorted(series):
        creates = series[t][0]
        cx = sorted(creates)
        ax.plot(cx, [median(creates[x], "rps") for x in cx], "o-", lw=2,
                label=f"measured (this machine), {tenants_label(t)}")
    if model:
        for j, p in enumerate(model["pg_cores"]):
            ax.plot([n for n, _ in model["rows"]], [row[j] for _, row in model["rows"]], "--",
                    label=f"model ({tenants_label(model['tenants'])}): a core per node, PostgreSQL on {p}")
        if model["base_rps"]:
            ax.plot([3], [model["base_rps"] * GOAL_NODES_RATIO], "r*", ms=12,
                    label=f"goal: 3 nodes ≥ {GOAL_NODES_RATIO}× one node ({tenants_label(model['tenants'])})")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    plots.save(fig, "nodes-creates.png")
    fig, ax = plots.figure("Fan-out through haproxy vs nodes", sub, "nodes", "delivery ms")
    ax.set_xticks(xs)
    for t in sorted(series):
        fanout = series[t][1]
        fx = sorted(fanout)
        suffix = f" ({t}-tenant run)" if len(series) > 1 else ""
        for p, marker in (("p50_us", "o-"), ("p99_us", "^-")):
            ax.plot(fx, [ms(fanout[x].get(p)) for x in fx], marker, label=p[:-3] + suffix)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    plots.save(fig, "nodes-fanout.png")


def nodes_table(t, creates, fanout, rows):
    xs = sorted(set(creates) | set(fanout))
    base = median(creates.get(xs[0], []), "rps") if xs else None
    spread = next((r["spread"] for r in rows if r.get("tenants", 1) == t and "spread" in r), None)
    if t == 1:
        print("Creates to one tenant:\n")
    else:
        print(f"Creates spread over {t:,} tenants (`TENANTS={t}`, a key each, round-robin by "
              f"{spread or 'request'}):\n")
    print("| nodes | cores | creates/s | × first | p50 / p99 ms | CPU µs per create: nodes / PostgreSQL / haproxy / load "
          "| CPU % of a core: nodes / PostgreSQL / haproxy / load | fan-out p50 / p99 ms | missing |")
    print("|---:|---|---:|---:|---|---|---|---|---:|")
    for x in xs:
        c = creates.get(x, [])
        f = fanout.get(x, {})
        rps = median(c, "rps")
        mid = sorted(c, key=lambda r: r["rps"])[len(c) // 2] if c else {}
        pct = mid.get("cpu_pct", {})
        print(f"| {x} | {(c or [f])[0].get('cores', '')} | {fmt(rps, 0)} | {fmt(rps / base if rps and base else None)} "
              f"| {fmt(ms(median(c, 'p50_us')))} / {fmt(ms(median(c, 'p99_us')))} "
              f"| {fmt(median(c, 'node_cpu_us_per_req'), 0)} / {fmt(median(c, 'pg_cpu_us_per_req'), 0)} / "
              f"{fmt(median(c, 'proxy_cpu_us_per_req'), 0)} / {fmt(median(c, 'client_cpu_us_per_req'), 0)} "
              f"| {'+'.join(str(p) for p in pct.get('nodes', []))} / {pct.get('postgres', '–')} / "
              f"{pct.get('haproxy', '–')} / {pct.get('load', '–')} "
              f"| {fmt(ms(f.get('p50_us')))} / {fmt(ms(f.get('p99_us')))} | {f.get('missing', '–')} |")
    print()


def nodes_model(series):
    """creates/s on a larger machine from the CPU per create of the smallest cluster's run,
    taken from the series with the most tenants (writes spread over tenants do not queue
    on one tenant's seq row; one tenant's do, and their cost grows with nodes): each node
    on a core of its own, PostgreSQL on P cores, haproxy and the load generator elsewhere;
    a role caps the rate at (its cores / its CPU seconds per create). Assumes the costs
    stay constant as nodes are added, which the series' other rows can check."""
    with_creates = [t for t in series if series[t][0]]
    if not with_creates:
        return None
    t = max(with_creates)
    creates = series[t][0]
    first = min(creates)
    one = creates[first]
    node_us, pg_us = median(one, "node_cpu_us_per_req"), median(one, "pg_cpu_us_per_req")
    proxy_us = median(one, "proxy_cpu_us_per_req")
    if not node_us or not pg_us:
        return None
    pg_cores = [1, 2, 4]
    # haproxy on two cores of its own (nbthread follows the cores it may use).
    proxy_cap = 2e6 / proxy_us if proxy_us else float("inf")
    rows = [(n, [min(n * 1e6 / node_us, p * 1e6 / pg_us, proxy_cap) for p in pg_cores]) for n in range(1, 9)]
    sat = ", ".join(f"on {p} core{'s' if p > 1 else ''} at {p * node_us / pg_us:.1f} nodes" for p in pg_cores)
    if t > 1:
        which = (f"the {first}-node run with creates spread over {t:,} tenants (the most tenants in these "
                 f"rows{'; the one-tenant rows are not used' if 1 in series else ''})")
    else:
        which = (f"the {first}-node run with creates to one tenant (no multi-tenant rows here: "
                 f"`TENANTS=N bash benches/growth-nodes.sh` makes them)")
    others = [n for n in sorted(creates) if n != first]
    check = ""
    if others:
        costs = lambda key: " / ".join(fmt(median(creates[n], key), 0) for n in others)
        check = (f" Measured in the same series at {' / '.join(str(n) for n in others)} nodes (nodes sharing "
                 f"cores here): node {costs('node_cpu_us_per_req')} µs, PostgreSQL {costs('pg_cpu_us_per_req')} "
                 f"µs per create.")
    text = (f"Model from {which}: a create costs {node_us:.0f} µs of node CPU, {pg_us:.0f} µs "
            f"of PostgreSQL and {proxy_us or 0:.0f} µs of haproxy. With a core per node, PostgreSQL saturates "
            f"{sat}; haproxy on 2 cores caps the rate at {proxy_cap:,.0f} creates/s (load generators on other "
            f"machines). The figures assume these costs stay constant as nodes are added (no lock or pool "
            f"contention): compare with the measured rows.{check} 3 nodes against one in the model: "
            f"{' / '.join(f'{row3 / row1:.2f}×' for row1, row3 in zip(rows[0][1], rows[2][1]))} with PostgreSQL "
            f"on {' / '.join(str(p) for p in pg_cores)} cores (goal ≥ {GOAL_NODES_RATIO}× until PostgreSQL "
            f"saturates).")
    return {"pg_cores": pg_cores, "rows": rows, "text": text, "tenants": t, "base_rps": median(one, "rps")}


# ------------------------------------------------------------------ documents (bigdata.sh)

def documents(rows, plots):
    """Part one of benches/bigdata.sh (one tenant, DOCS documents), one run per document
    count: gets and lists by document count, for each memory setting present."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["cache_mib"], r["mmap_mib"], r["workload"], r["docs"])].append(r)
    settings = sorted({(c, m) for c, m, _, _ in groups})
    xs = sorted({d for *_, d in groups})
    print("### Documents in one tenant (benches/bigdata.sh, part one)\n")
    print("| documents | cache / mmap MiB | workload | req/s | p50 / p99 ms | server µs/req | RSS MiB (anon + file) |")
    print("|---:|---|---|---:|---|---:|---|")
    for (cache, mmap, workload, docs), rs in sorted(groups.items(), key=lambda kv: (kv[0][3], kv[0][:3])):
        print(f"| {docs:,} | {cache} / {mmap} | {workload} | {fmt(median(rs, 'rps'), 0)} "
              f"| {fmt(ms(median(rs, 'p50_us')))} / {fmt(ms(median(rs, 'p99_us')))} | {fmt(median(rs, 'cpu_us_per_req'), 0)} "
              f"| {median(rs, 'rss_kib') / 1024:,.0f} ({median(rs, 'rss_anon_kib') / 1024:,.0f} + "
              f"{median(rs, 'rss_file_kib') / 1024:,.0f}) |")
    print()
    if not plots.plt:
        return
    fig, ax = plots.figure("Reads in one tenant vs documents", "benches/bigdata.sh, 64 connections",
                           "documents", "requests/s", logx=True)
    for cache, mmap in settings:
        for workload, marker in (("get", "o-"), ("list", "^--")):
            ys = [median(groups.get((cache, mmap, workload, d), []), "rps") for d in xs]
            if any(y is not None for y in ys):
                ax.plot(xs, ys, marker, label=f"{workload}, cache {cache} / mmap {mmap} MiB")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    plots.save(fig, "documents-reads.png")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/growth")
    ap.add_argument("--no-png", action="store_true")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    by = defaultdict(list)
    for path in a.files:
        for line in open(path):
            if line.strip():
                r = json.loads(line)
                by["documents" if r.get("part") == "one-tenant" else r.get("bench")].append(r)
    plots = Plots(a.out, not a.no_png)
    for bench, draw in (("growth-tenants", tenants), ("documents", documents), ("growth-sockets", sockets),
                        ("growth-nodes", nodes)):
        if by.get(bench):
            draw(by[bench], plots)
    for p in plots.written:
        print(f"wrote {p}", file=sys.stderr)


if __name__ == "__main__":
    main()
