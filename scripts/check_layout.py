#!/usr/bin/env python3
"""The layout rule of src/ (library files only; src/bin/ is the binary crate):

- no import cycle among files: an edge A -> B is any `crate::path` that A names (in `use` lines or
  in code, unit tests excluded), resolved to the deepest file that defines that module;
- no file over 800 lines.

Exits 1 naming the cycle or the file. Run from anywhere: `python3 scripts/check_layout.py`.
"""
import collections
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
MAX_LINES = 800


def modules():
    out = {}
    for d, _, fs in os.walk(SRC):
        if os.path.relpath(d, SRC).split(os.sep)[0] == "bin":
            continue
        for f in fs:
            if f.endswith(".rs"):
                p = os.path.join(d, f)
                parts = os.path.relpath(p, SRC)[:-3].split(os.sep)
                if parts[-1] == "mod":
                    parts = parts[:-1]
                if parts == ["lib"]:
                    parts = []
                out["::".join(parts)] = p
    return out


def edges(files):
    def resolve(path):
        segs = path.split("::")
        for i in range(len(segs), 0, -1):
            if "::".join(segs[:i]) in files:
                return "::".join(segs[:i])
        return None

    out = collections.defaultdict(set)
    for mod, p in files.items():
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests", open(p, encoding="utf-8").read())[0]
        code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
        names = re.findall(r"crate::((?:\w+::)*\w+)", code)
        for group in re.findall(r"crate::((?:\w+::)*)\{([^}]*)\}", code):
            names += [group[0] + n for n in re.findall(r"\w+", group[1])]
        for n in names:
            t = resolve(n)
            if t and t != mod:
                out[mod].add(t)
    return out


def cycle(graph, nodes):
    state = {}

    def visit(v, path):
        state[v] = 1
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state:
                c = visit(w, path + [w])
                if c:
                    return c
        state[v] = 2
        return None

    for v in sorted(nodes):
        if v not in state:
            c = visit(v, [v])
            if c:
                return c
    return None


def main():
    files = modules()
    problems = []
    c = cycle(edges(files), files)
    if c:
        problems.append("import cycle: " + " -> ".join(os.path.relpath(files[m], SRC) for m in c))
    for p in sorted(files.values()):
        n = sum(1 for _ in open(p, encoding="utf-8"))
        if n > MAX_LINES:
            problems.append(f"{os.path.relpath(p, SRC)} has {n} lines (at most {MAX_LINES})")
    for p in problems:
        print(f"check_layout: {p}", file=sys.stderr)
    if not problems:
        print(f"check_layout: {len(files)} files of src/, no import cycle, none over {MAX_LINES} lines", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
