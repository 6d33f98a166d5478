#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""abd: name and count the calls tests/store-trace records.

Usage: store_trace.py BINARY SOURCE-DIR [--path] [--layers] SCENARIO...

For each scenario (SCENARIO+file: with a store file) it runs the binary,
names every function, and prints three counts (and with --path every stop,
a function entered, with its file):
  stops    functions entered, the first one included
  files    distinct source files those functions are in
  returns  moves back into a file already visited, on a call or a return
           (the reader of the code opening a file again)
and the same counts without the functions of headers (the one-line inline
helpers of store-impl.h, read as if written out in their callers).
With --layers it also checks that every call between two files goes down
the store's layers (LAYERS below: a file calls only files of a lower
layer), which is what rules out a circle of calls, and exits 1 if not.
"""

import os
import re
import subprocess
import sys
import tempfile

# The store's layers, top to bottom (filters/async/store/store-impl.h).
LAYERS = {
    "store-client.c": 4, "store-writeback.c": 4, "store.c": 4,
    "store-check.c": 3,
    "store-life.c": 2,
    "store-index.c": 1, "store-arena.c": 1,
    "store-impl.h": 0, "storefile.c": 0, "drainrate.c": 0, "privfile.c": 0,
    "storelock.c": 0, "storelock.h": 0,
}


def definitions(srcdir):
    """Where each function is defined, by name (GNU layout: the name at
    the start of a line, then " ("), for the static inline functions of
    headers, which addr2line places in the file that included them."""
    where = {}
    for root, _, files in os.walk(srcdir):
        for name in files:
            if not name.endswith((".c", ".h")):
                continue
            with open(os.path.join(root, name)) as fp:
                for line in fp:
                    m = re.match(r"([a-z_][a-z0-9_]*) \(", line)
                    if m:
                        where.setdefault(m.group(1), set()).add(name)
    return where


def resolve(binary, addrs):
    out = subprocess.run(["addr2line", "-f", "-e", binary] + addrs,
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    names = {}
    for i, a in enumerate(addrs):
        fn, loc = lines[2 * i], lines[2 * i + 1]
        names[a] = (fn, os.path.basename(loc.split(":")[0]))
    return names


def trace(binary, where, scenario):
    """SCENARIO+file: with a store file (in a private directory)."""
    with tempfile.TemporaryDirectory() as d:
        argv = [binary, scenario.removesuffix("+file")]
        if scenario.endswith("+file"):
            argv.append(os.path.join(d, "store"))
        out = subprocess.run(argv, capture_output=True, text=True,
                             check=True).stdout
    events = [line.split() for line in out.splitlines()]
    names = resolve(binary, sorted({a for _, a in events}))
    for a, (fn, f) in names.items():
        if len(where.get(fn, ())) == 1:
            names[a] = (fn, next(iter(where[fn])))
    return [(kind, names[a]) for kind, a in events]


def fold_headers(events):
    """The events without the functions of headers (store-impl.h's inline
    one-line helpers), as if written out in their callers."""
    return [(k, (fn, f)) for k, (fn, f) in events if not f.endswith(".h")]


def measure(events):
    """Stops, files, returns and the call edges between files."""
    stack, visited, path, edges = [], set(), [], set()
    stops = returns = 0
    pos = None
    for kind, (fn, f) in events:
        if kind == "E":
            stops += 1
            path.append("  " * len(stack) + f"{fn} ({f})")
            if stack and stack[-1] != f:
                edges.add((stack[-1], f))
            stack.append(f)
            new = f
        else:
            stack.pop()
            new = stack[-1] if stack else None
        if new is not None and new != pos and new in visited:
            returns += 1
        if new is not None:
            visited.add(new)
            pos = new
    return stops, len(visited), returns, path, edges, visited


def main():
    args = sys.argv[1:]
    binary = args.pop(0)
    where = definitions(args.pop(0))
    check_layers = "--layers" in args
    verbose = "--path" in args
    args = [a for a in args if a not in ("--layers", "--path")]
    bad = 0
    for scenario in args:
        events = trace(binary, where, scenario)
        stops, nfiles, returns, path, edges, files = measure(events)
        print(f"== {scenario}: {stops} stops in {nfiles} files "
              f"({', '.join(sorted(files))}), {returns} returns to a file "
              f"already visited")
        c_stops, c_nfiles, c_returns, _, _, _ = measure(fold_headers(events))
        print(f"   without header helpers: {c_stops} stops in {c_nfiles} "
              f"files, {c_returns} returns")
        if verbose:
            for line in path:
                print(line)
        if check_layers:
            for a, b in sorted(edges):
                if a not in LAYERS or b not in LAYERS:
                    print(f"LAYERS: {a} -> {b}: a file of no known layer")
                    bad += 1
                elif LAYERS[b] >= LAYERS[a]:
                    print(f"LAYERS: {a} (layer {LAYERS[a]}) calls up or "
                          f"across into {b} (layer {LAYERS[b]})")
                    bad += 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
