#!/usr/bin/env python3
"""Prints the module dependency graph of the extension's src/ (which module uses which, from
`crate::a::b` paths and `super::x` paths in the code, comments and strings ignored) and exits 1
when modules depend on each other in a cycle. Run: python3 scripts/modgraph.py [src]"""
import os
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return "::".join(rel) or "crate"


def strip(code):
    """The code without comments, string and char literals (a small lexer: a quote inside a
    comment or a char literal must not start a string)."""
    out, i, n = [], 0, len(code)
    while i < n:
        c = code[i]
        if code.startswith("//", i):
            j = code.find("\n", i)
            i = n if j < 0 else j
        elif code.startswith("/*", i):
            j = code.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "r" and re.match(r'r#*"', code[i:]) and (i == 0 or not (code[i - 1].isalnum() or code[i - 1] == "_")):
            hashes = re.match(r"r(#*)\"", code[i:]).group(1)
            j = code.find('"' + hashes, i + 2 + len(hashes))
            i = n if j < 0 else j + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            j = i + 1
            while j < n and code[j] != '"':
                j += 2 if code[j] == "\\" else 1
            i = j + 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", code[i:i + 4]):
            i += len(re.match(r"'(\\.|[^\\'])'", code[i:i + 4]).group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


mods = {}
for d, _, files in os.walk(ROOT):
    for f in files:
        if f.endswith(".rs"):
            p = os.path.join(d, f)
            mods[module_of(p)] = p
known = set(mods)


def resolve(parts):
    """The longest known module prefix of a path."""
    for n in range(len(parts), 0, -1):
        m = "::".join(parts[:n])
        if m in known:
            return m
    return None


edges = {m: set() for m in known}
for m, p in mods.items():
    code = strip(open(p, encoding="utf-8").read())
    parent = m.rsplit("::", 1)[0] if "::" in m else ""
    for path in re.findall(r"\bcrate((?:::\w+)+)", code):
        t = resolve(path.strip(":").split("::"))
        if t and t != m and not m.startswith(t + "::") and t != "crate":
            edges[m].add(t)
    for path in re.findall(r"\bsuper((?:::\w+)+)", code):
        base = parent.split("::") if parent else []
        t = resolve(base + path.strip(":").split("::"))
        if t and t != m and t != parent:
            edges[m].add(t)

# Tarjan's strongly connected components.
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(edges[v]):
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
        sccs.append(comp)


sys.setrecursionlimit(10000)
for v in sorted(known):
    if v not in index:
        visit(v)

for m in sorted(known):
    print(f"{m:24} -> {', '.join(sorted(edges[m])) or '-'}")
cycles = [sorted(c) for c in sccs if len(c) > 1]
if cycles:
    for c in cycles:
        print("cycle: " + " <-> ".join(c))
    sys.exit(1)
print("no cycles among", len(known), "modules")
