#!/usr/bin/env python3
"""Prints the dependency graph of src/'s top-level modules (from `crate::<module>` paths
in each module's files) and its cycles (strongly connected components).

Usage: scripts/module-deps.py [--check]
With --check it exits 1 when there is a cycle (issue 13 wants none; ARCHITECTURE.md says
which remain)."""
import collections
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def top_modules():
    out = set()
    for name in os.listdir(SRC):
        if name in ("lib.rs", "main.rs", "bin"):
            continue
        out.add(name[:-3] if name.endswith(".rs") else name)
    return out


def graph(mods):
    deps = collections.defaultdict(set)
    for root, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            first = os.path.relpath(path, SRC).split(os.sep)[0]
            top = first[:-3] if first.endswith(".rs") else first
            if top not in mods:
                continue
            with open(path, encoding="utf-8") as fh:
                for m in re.findall(r"crate::([a-z_]+)", fh.read()):
                    if m != top and m in mods:
                        deps[top].add(m)
    return deps


def cycles(mods, deps):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(deps[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(mods):
        if v not in index:
            visit(v)
    return found


def main():
    mods = top_modules()
    deps = graph(mods)
    for m in sorted(mods):
        print(f"{m:10} -> {' '.join(sorted(deps[m])) or '(none)'}")
    found = cycles(mods, deps)
    for c in found:
        print("cycle:", " <-> ".join(c))
    if not found:
        print("no cycle")
    if "--check" in sys.argv and found:
        sys.exit(1)


if __name__ == "__main__":
    main()
