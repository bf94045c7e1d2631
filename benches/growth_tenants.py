"""Helpers of benches/growth-tenants.sh: seeding the template tenant, the cold-tenant
measurement, counting a server's open tenant files. Standard library only; loopback only.

  seed-docs BASE KEY SLUG N             N documents d00000.. in collection notes (batch API)
  cold BASE KEY SLUGS PID SAMPLE MAX_S WAIT_S
        first request to tenants whose file is closed: rounds over a shuffled list of the
        tenants, each tenant once per round, waiting WAIT_S between rounds so the server
        closes the files again; stops at SAMPLE requests or after MAX_S seconds. Each cold
        request is followed at once by the same request again (warm, same connection):
        the difference is the price of opening the file. One JSON line on stdout.
  open-files PID                        how many tenant files the server holds open
  touch BASE KEY SLUGS                  one get in every tenant (SLUGS' order, one keep-alive
        connection), then the same get again at once: the first request each tenant gets
        and a warm one (the difference is the open); a JSON line with their p50/p99
  state BASE PID                        the server's memory (/proc: VmRSS, RssAnon, RssFile,
        threads), descriptors, tenant files open and the /metrics gauges of per-tenant
        state; a JSON object on one line
"""
import http.client
import json
import os
import random
import sys
import time
import urllib.request
from urllib.parse import urlsplit


def call(method, url, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=120) as res:
        text = res.read()
    return json.loads(text) if text else None


def loopback(base):
    host = urlsplit(base).hostname
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        sys.exit(f"{base}: load is only ever sent to loopback")
    return base


def seed_docs(base, key, slug, n):
    for start in range(0, n, 500):
        writes = [{"op": "put", "collection": "notes", "id": f"d{i:05d}",
                   "data": {"title": f"note {i}", "n": i, "status": "open" if i % 2 else "closed"}}
                  for i in range(start, min(n, start + 500))]
        call("POST", f"{base}/v1/t/{slug}/batch", key, {"writes": writes})


def open_tenant_files(pid):
    """Distinct tenant database files among the process's descriptors (-wal, -shm count
    as their file)."""
    files = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue  # closed meanwhile
        name = os.path.basename(target)
        if "/tenants/" in target and name.startswith("tenant-"):
            files.add(name.split(".db")[0])
    return len(files)


def pct(sorted_us, p):
    if not sorted_us:
        return None
    return sorted_us[round((len(sorted_us) - 1) * p)]


def summary(samples):
    s = sorted(samples)
    return {"n": len(s), "p50_us": pct(s, 0.5), "p99_us": pct(s, 0.99), "max_us": s[-1] if s else None}


def cold(base, key, slugs_file, pid, sample, max_s, wait_s):
    url = urlsplit(loopback(base))
    slugs = [line.split()[0] for line in open(slugs_file) if line.strip()]
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"authorization": f"Bearer {key}"}

    def get(slug):
        t0 = time.perf_counter()
        conn.request("GET", f"/v1/t/{slug}/collections/notes/docs/d00000", headers=headers)
        res = conn.getresponse()
        res.read()
        return res.status, round((time.perf_counter() - t0) * 1e6)

    cold_us, warm_us, errors, open_before, rounds = [], [], {}, [], 0
    started = time.monotonic()
    while len(cold_us) < sample and time.monotonic() - started < max_s:
        if rounds:
            time.sleep(wait_s)
        rounds += 1
        open_before.append(open_tenant_files(pid))
        order = random.sample(slugs, len(slugs))[: sample - len(cold_us)]
        for slug in order:
            if time.monotonic() - started >= max_s:
                break
            for bucket in (cold_us, warm_us):
                status, us = get(slug)
                if status == 200:
                    bucket.append(us)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
    print(json.dumps({"cold": summary(cold_us), "warm": summary(warm_us), "rounds": rounds,
                      "wait_s": wait_s, "tenant_files_open_before_round": open_before,
                      "seconds": round(time.monotonic() - started, 1), "errors": errors}))


def touch(base, key, slugs_file):
    url = urlsplit(loopback(base))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"authorization": f"Bearer {key}"}
    first, again, errors = [], [], {}
    started = time.monotonic()
    for slug in (line.split()[0] for line in open(slugs_file) if line.strip()):
        for bucket in (first, again):
            t0 = time.perf_counter()
            conn.request("GET", f"/v1/t/{slug}/collections/notes/docs/d00000", headers=headers)
            res = conn.getresponse()
            res.read()
            if res.status == 200:
                bucket.append(round((time.perf_counter() - t0) * 1e6))
            else:
                errors[str(res.status)] = errors.get(str(res.status), 0) + 1
    print(json.dumps({"first": summary(first), "again": summary(again), "errors": errors,
                      "seconds": round(time.monotonic() - started, 1)}))


# Gauges of /metrics that say what the server holds per tenant (those it exposes).
STATE_GAUGES = ("plinth_sqlite_memory_bytes", "plinth_sqlite_connections",
                "plinth_sqlite_tenant_files", "plinth_tenants_cached")


def state(base, pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "Threads"):
                out[key] = int(value.split()[0])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    out["tenant_files_open"] = open_tenant_files(pid)
    with urllib.request.urlopen(f"{loopback(base)}/metrics", timeout=30) as res:
        for line in res.read().decode().splitlines():
            name, _, value = line.partition(" ")
            if name in STATE_GAUGES:
                out[name.removeprefix("plinth_")] = float(value)
            elif name.startswith("plinth_tenants_cached{"):
                out[name.removeprefix("plinth_")] = float(value)
    print(json.dumps(out))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "seed-docs":
        seed_docs(loopback(args[0]), args[1], args[2], int(args[3]))
    elif cmd == "cold":
        cold(args[0], args[1], args[2], int(args[3]), int(args[4]), float(args[5]), float(args[6]))
    elif cmd == "touch":
        touch(args[0], args[1], args[2])
    elif cmd == "state":
        state(args[0], int(args[1]))
    elif cmd == "open-files":
        print(open_tenant_files(int(args[0])))
    else:
        sys.exit(f"unknown command {cmd}\n{__doc__}")
