#!/usr/bin/env bash
# The runtime's layers (docs/ARCHITECTURE.md), checked two ways:
#  (a) includes: a file in runtime/ may include only headers of its own
#      layer or a lower one (and public headers, system headers);
#  (b) calls: from the library's object files (nm: U = uses, T = defines),
#      the graph "file A uses a function file B defines" must have no cycle
#      of three or more files (two files calling each other are allowed).
# Usage: scripts/check-layers.sh [build-dir]   (default: build; (b) is
# skipped with a note when the object files are missing).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "${1:-build}" <<'PY'
import glob, os, re, subprocess, sys

# ---- the layer table (keep in step with docs/ARCHITECTURE.md) -------------
LAYERS = [
    ("primitives", ["util.h", "log.c", "errors.c", "deque.h", "deque.c",
                    "mpsc_stack.h", "eventcount.h", "eventcount.c",
                    "topology.h", "topology.c", "trace.h", "errmsg.h",
                    "errmsg.c"]),
    ("run context", ["runctx.h", "runctx.c"]),
    ("memory", ["slab.h", "slab.c", "batch.h", "batch.c", "budget.h",
                "budget.c"]),
    ("graph", ["graph.h", "graph.c", "footprint.h", "footprint.c",
               "pipeline.c", "owned.h", "owned.c", "reduce_node.h",
               "reduce.c"]),
    ("scheduler", ["scheduler.h", "scheduler.c", "fuse.h", "fuse.c",
                   "policy.h"]),
    ("policies, device host side",
     ["policy.c", "policies/*.c", "device_node.h", "device_node.c",
      "<devices>/device.h"]),
    ("observation", ["trace.c", "stats.h", "stats.c", "progress.h",
                     "progress.c"]),
    ("api", ["run.c", "options.c", "options.h", "kernels.c", "internal.h",
             "records.c", "records_pool.h",
             "<generated>/para_kernels.h"]),
    ("cross-process", ["mpi/*.c", "mpi/*.h", "mpi_internal.h"]),
]
PUBLIC = re.compile(r'^para(/[a-z_]+)?\.h$')  # include/: any layer

layer_of = {}
for i, (_, files) in enumerate(LAYERS):
    for f in files:
        layer_of[f] = i

def file_layer(rel):
    if rel in layer_of:
        return layer_of[rel]
    d = os.path.dirname(rel)
    for ext in (".c", ".h"):
        if d and d + "/*" + ext in layer_of and rel.endswith(ext):
            return layer_of[d + "/*" + ext]
    return None

def header_layer(name):
    for key in (name, "<devices>/" + name, "<generated>/" + name):
        if key in layer_of:
            return layer_of[key]
    return None

errors = []
files = sorted(glob.glob("runtime/*.[ch]") + glob.glob("runtime/*/*.[ch]"))
for path in files:
    rel = os.path.relpath(path, "runtime")
    me = file_layer(rel)
    if me is None:
        errors.append(f"{path}: not in the layer table of "
                      "scripts/check-layers.sh")
        continue
    for no, line in enumerate(open(path, encoding="utf-8"), 1):
        m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
        if not m:
            continue
        inc = m.group(1)
        if PUBLIC.match(inc):
            continue
        hl = header_layer(inc)
        if hl is None:
            errors.append(f"{path}:{no}: includes \"{inc}\", which is in no "
                          "layer")
        elif hl > me:
            errors.append(f"{path}:{no}: includes \"{inc}\" ({LAYERS[hl][0]})"
                          f" from a lower layer ({LAYERS[me][0]})")
print(f"includes: {len(files)} files checked against "
      f"{len(LAYERS)} layers")

# ---- the function-use graph between the runtime's object files -----------
# libpara's objects: an object library (para_objects) or the library itself
objdir = os.path.join(sys.argv[1], "CMakeFiles", "para_objects.dir",
                      "runtime")
if not os.path.isdir(objdir):
    objdir = os.path.join(sys.argv[1], "CMakeFiles", "para.dir", "runtime")
objs = sorted(glob.glob(os.path.join(objdir, "**", "*.o"), recursive=True))
if not objs:
    print(f"calls: no object files under {objdir}: build first (skipped)")
else:
    defines, uses = {}, {}
    for o in objs:
        name = os.path.relpath(o, objdir)[:-2]  # foo.c
        out = subprocess.run(["nm", o], check=True, capture_output=True,
                             text=True).stdout
        uses[name] = set()
        for line in out.splitlines():
            p = line.split()
            if len(p) == 3 and p[1] in "TDRB":
                defines[p[2]] = name
            elif len(p) == 2 and p[0] == "U":
                uses[name].add(p[1])
    edges = {n: sorted({defines[s] for s in u if s in defines
                        and defines[s] != n}) for n, u in uses.items()}
    nodes = sorted(edges)
    order = {n: i for i, n in enumerate(nodes)}
    cycles = []
    # Simple cycles through their smallest node (the graph is small).
    def walk(start, node, path, seen):
        for nxt in edges[node]:
            if nxt == start and len(path) >= 3:
                cycles.append(path + [start])
            elif order[nxt] > order[start] and nxt not in seen:
                seen.add(nxt)
                walk(start, nxt, path + [nxt], seen)
                seen.discard(nxt)
    for s in nodes:
        walk(s, s, [s], {s})
    for c in cycles:
        errors.append("call cycle: " + " -> ".join(c))
    n_edges = sum(len(v) for v in edges.values())
    print(f"calls: {len(nodes)} object files, {n_edges} edges, "
          f"{len(cycles)} cycles of 3 or more files")

for e in errors:
    print("check-layers: " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
