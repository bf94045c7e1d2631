"""Helpers of benches/bigdata.sh: seeding through the batch API, touching tenants, the
table. Standard library only; loopback only."""
import json
import statistics
import sys
import urllib.request
from collections import defaultdict


def call(method, url, token=None, body=None, ctype="application/json"):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("content-type", ctype)
    with urllib.request.urlopen(req, timeout=120) as res:
        text = res.read()
    return json.loads(text) if text else None


def note(i):
    # ~150 bytes of JSON; 100 owners interleaved, as many users write at once.
    return {"owner": f"u{i % 100:02d}", "title": f"note {i}",
            "status": "open" if (i // 100) % 2 == 0 else "closed", "created": i}


def seed_one(base, key, tenant, n, progress=True):
    for start in range(0, n, 500):
        writes = [{"op": "put", "collection": "notes", "id": f"s{i:08d}", "data": note(i)}
                  for i in range(start, min(n, start + 500))]
        call("POST", f"{base}/v1/t/{tenant}/batch", key, {"writes": writes})
        if progress and start % 100000 == 0:
            print(f"  {start:,} / {n:,}", file=sys.stderr, flush=True)


def ids(n, out, most=200000):
    step = max(1, n // most)
    with open(out, "w") as f:
        for i in range(0, n, step):
            f.write(f"s{i:08d}\n")


def seed_tenants(base, admin, tenants, docs, keys_out):
    keys = []
    for t in range(tenants):
        slug = f"t{t:05d}"
        call("POST", f"{base}/admin/v1/tenants", admin, {"slug": slug})
        key = call("POST", f"{base}/admin/v1/tenants/{slug}/keys", admin, {"name": "seed"})["key"]
        keys.append(f"{slug} {key}")
        seed_one(base, key, slug, docs, progress=False)
        if t % 100 == 0:
            print(f"  tenant {t} / {tenants}", file=sys.stderr, flush=True)
    with open(keys_out, "w") as f:
        f.write("\n".join(keys) + "\n")


def touch(base, keys_file, docs):
    """Every tenant: one list of all its documents (up to 1,000) and one get."""
    for line in open(keys_file):
        slug, key = line.split()
        page = call("GET", f"{base}/v1/t/{slug}/collections/notes/docs?limit=1000", key)
        want = min(docs, 1000)
        if len(page["items"]) != want:
            sys.exit(f"{slug}: {len(page['items'])} documents listed, expected {want}")
        doc = call("GET", f"{base}/v1/t/{slug}/collections/notes/docs/s{docs // 2:08d}", key)
        if doc["data"] != note(docs // 2):
            sys.exit(f"{slug}: wrong document {doc}")


def mib(kib):
    return f"{kib / 1024:,.0f}"


def table(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    one = [r for r in rows if r.get("part") == "one-tenant"]
    many = [r for r in rows if r.get("part") == "tenants"]
    if one:
        print(f"One tenant, {one[0]['docs']:,} documents ({one[0]['db_mib']:,} MiB of files), "
              f"{one[0]['connections']} connections, medians of runs:")
        print()
        print("| cache MiB | mmap MiB | workload | req/s | p50 ms | p99 ms | server CPU µs/req "
              "| RSS MiB (anon + file) | SQLite heap MiB |")
        print("|---:|---:|---|---:|---:|---:|---:|---|---:|")
        groups = defaultdict(list)
        for r in one:
            groups[(r["cache_mib"], r["mmap_mib"], r["workload"])].append(r)
        for (cache, mmap, workload), rs in groups.items():
            med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
            print(f"| {cache} | {mmap} | {workload} | {med('rps'):,.0f} | {med('p50_us') / 1000:.2f} "
                  f"| {med('p99_us') / 1000:.2f} | {med('cpu_us_per_req'):.0f} "
                  f"| {mib(med('rss_kib'))} ({mib(med('rss_anon_kib'))} + {mib(med('rss_file_kib'))}) "
                  f"| {med('sqlite_bytes') / 2**20:.1f} |")
    if many:
        print()
        print(f"{many[0]['tenants']:,} tenants × {many[0]['docs_per_tenant']:,} documents:")
        print()
        print("| cache MiB | mmap MiB | idle close s | hooks | phase | RSS MiB (anon + file) | SQLite heap MiB |")
        print("|---:|---:|---:|---|---|---|---:|")
        for r in many:
            print(f"| {r['cache_mib']} | {r['mmap_mib']} | {r['idle_s']} | {r.get('hooks', True)} | {r['phase']} "
                  f"| {mib(r['rss_kib'])} ({mib(r['rss_anon_kib'])} + {mib(r['rss_file_kib'])}) "
                  f"| {r['sqlite_bytes'] / 2**20:.1f} |")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "seed-one":
        seed_one(args[0], args[1], args[2], int(args[3]))
    elif cmd == "ids":
        ids(int(args[0]), args[1])
    elif cmd == "seed-tenants":
        seed_tenants(args[0], args[1], int(args[2]), int(args[3]), args[4])
    elif cmd == "touch":
        touch(args[0], args[1], int(args[2]))
    elif cmd == "table":
        table(args[0])
    else:
        sys.exit(f"unknown command {cmd}")
