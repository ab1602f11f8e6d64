#!/usr/bin/env python3
"""Performance regression guard: para-bench against ratio floors.

Every guarded figure is a ratio of two timings taken in the same process
(efficiency = seq / (threads x para), para / ideal, para / static,
dev / limit), so it does not depend on how fast the machine is today, only
on how the runtime compares with the plain code beside it. Each timing lasts
tens of milliseconds (full sizes where a quick run is a millisecond or two,
--min-seconds everywhere): on a 2-core virtual machine a one-millisecond run
measures how fast threads wake up, not the runtime.

The guard fails when
  - para-bench crashes or exits non-zero (a failed check is a non-zero exit),
  - a row a figure needs is missing, or its check is not "ok",
  - a figure stays below its floor (or above its ceiling) after
    re-measurement.
A figure near its floor (within NEAR) is measured again, up to ATTEMPTS
times in all, with more repeats each time: the best of two attempts counts,
or the median of three to six, or the third best of seven (see judged()). A real 2x slowdown halves
every attempt. Nothing is skipped when the machine is busy: it is
re-measured. Seven attempts, not three: in CI run 43 a burst of host noise
took a core from two consecutive w1 attempts (efficiency 0.518, 0.517,
then 0.721; para / ideal from the same rows 0.91), and in CI run 60 one
spoiled four consecutive attempts of w3 and w12 (w12 0.436, 0.432, 0.424,
0.412, then 0.849) on the code that had passed three runs in a row.

A figure bound by moving cache lines between the cores (w12) has a second,
lower floor for a host that passes them slowly, used for an attempt where
para-host-probe, run just before it, says so (SLOW_FLOORS).

Floors sit at about 0.6-0.7 of the lowest value seen on quiet 2-core runs and
above half of the typical value, so that a runtime twice as slow (para-bench
--handicap 2 runs every para_run() twice) falls below every speed floor;
scripts/perf-guard-selftest.sh proves both sides.

Usage: perf_guard.py [--bench PATH] [--threads N] [--repeat R]
                     [--handicap K] [--json FILE] [--probe PATH]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

NEAR = 1.15      # a figure under floor * NEAR is measured again
ATTEMPTS = 7     # measurements of a doubtful group, in all
MIN_SECONDS = 0.05

# Groups of workloads run in one para-bench process each. w5 runs alone: its
# peak RSS is a process-wide high-water mark.
GROUPS = {
    "full": (["w1", "w3", "w12"], False),  # quick w1/w3 are ~1-4 ms: too
                                           # short; w12's 20,000 runs give
                                           # a steadier median than 2,000
    "quick": (["w2", "w6", "w7"], True),
    "w4": (["w4"], True),
    "w5": (["w5"], True),
    "shapes": (["w9", "w13", "w14"], True),
    "w10": (["w10"], False),             # quick runs re-learn from nothing
}


def eff(rows, w, v="para"):
    r = rows[(w, v)]
    return r["efficiency"]


def speed(rows, w, a, b):
    ra, rb = rows[(w, a)], rows[(w, b)]
    if not ra["items_per_s"] or not rb["items_per_s"]:
        return None
    return ra["items_per_s"] / rb["items_per_s"]


def rss(rows, w, v):
    return rows[(w, v)]["peak_rss_mb"]


def field_ratio(rows, w, field, a, b):
    """rows[w/a][field] / rows[w/b][field]."""
    x, y = rows[(w, a)].get(field), rows[(w, b)].get(field)
    if not x or not y:
        return None
    return x / y


def t_star_ratio(rows):
    """w10: the optimum makespan over the one measured (1.0 = optimal)."""
    r = rows[("w10", "para")]
    if not r.get("t_star") or not r["seconds"]:
        return None
    return r["t_star"] / r["seconds"]


# (name, group, value of the rows, bound, kind, quiet range, speed figure)
# kind "min": the value must be >= bound; "max": <= bound. A speed figure
# halves when para is twice as slow (the self-test checks each one).
FIGURES = [
    ("w1 efficiency (para vs seq)", "full",
     lambda r: eff(r, "w1"), 0.55, "min", "0.74-0.91", True),
    # Not a speed figure for the self-test: `ideal` is ~10 ms of plain
    # threads that swings 9-17 ms here, so under --handicap 2 this ratio
    # came out anywhere in 0.38-0.93 (CI run 19: median 0.707). w1's 2x
    # slowdown is caught by w1 efficiency, from the same rows.
    ("w1 para / ideal (throughput)", "full",
     lambda r: speed(r, "w1", "para", "ideal"), 0.68, "min", "0.79-1.0", False),
    ("w2 efficiency (ordered pipeline)", "quick",
     lambda r: eff(r, "w2"), 0.65, "min", "0.99-1.0", True),
    ("w3 para / seq (throughput)", "full",
     lambda r: speed(r, "w3", "para", "seq"), 0.20, "min", "0.27-0.47",
     True),
    ("w4 dev / limit (throughput)", "w4",
     lambda r: speed(r, "w4", "dev", "limit"), 0.65, "min", "0.87-0.97", True),
    ("w4 mixed / seq (throughput)", "w4",
     lambda r: speed(r, "w4", "mixed", "seq"), 1.2, "min", "1.89-1.90", True),
    ("w5 efficiency (bounded)", "w5",
     lambda r: eff(r, "w5", "bounded"), 0.55, "min", "0.84-0.92", True),
    ("w5 peak RSS MB (bounded, 64 MiB budget)", "w5",
     lambda r: rss(r, "w5", "bounded"), 80.0, "max", "14.9-15.0", False),
    ("w6 efficiency (shifting load)", "quick",
     lambda r: eff(r, "w6"), 0.65, "min", "0.99-1.0", True),
    ("w6 para / static (throughput)", "quick",
     lambda r: speed(r, "w6", "para", "static"), 1.6, "min", "2.07-2.85", True),
    ("w7 efficiency (stateful bottleneck)", "quick",
     lambda r: eff(r, "w7"), 0.65, "min", "1.03-1.04", True),
    ("w9 efficiency (text lines)", "shapes",
     lambda r: eff(r, "w9"), 0.62, "min", "0.84-1.0", True),
    ("w10 T* / makespan (simulated devices)", "w10",
     t_star_ratio, 0.60, "min", "0.87-0.93", True),
    # 0.64-0.83 on the EPYC VM before 0c2e0e9 (a rerun starts from the
    # learned batch size); on the Xeon VM 0.50-0.56 before it and 0.91
    # after, 0.42-0.45 under --handicap 2 (BENCHMARKS.md, session 14).
    ("w12 seq / para time per run (median)", "full",
     lambda r: field_ratio(r, "w12", "us_per_run", "seq", "para"), 0.52,
     "min", "0.64-0.91", True),
    ("w13 efficiency (32 KiB items)", "shapes",
     lambda r: eff(r, "w13"), 0.62, "min", "0.98-1.0", True),
    ("w13 peak RSS MB", "shapes",
     lambda r: rss(r, "w13", "para"), 64.0, "max", "14.9-15.0", False),
    # para's batch loops interleave independent items' spin chains, which
    # the one fused loop per item of `ideal` cannot: para is 2.07-2.12x
    # ideal on the AMD EPYC VM, 2.75-3.24x on the Intel Xeon one (more of
    # the chains in flight at once). Under --handicap 2 the Xeon's attempts
    # were 1.38-1.82, judged 1.41 (CI on 3e37ec8), above the old floor of
    # 1.3, so the slowdown went unseen there; 1.7 sits between that and the
    # EPYC's healthy 2.07.
    ("w14 para / ideal (16-stage chain)", "shapes",
     lambda r: speed(r, "w14", "para", "ideal"), 1.7, "min", "2.07-3.24",
     True),
]


def run_group(args, group, repeat):
    """Run one group; returns (rows, error message or None)."""
    workloads, quick = GROUPS[group]
    cmd = [args.bench, "--workload", ",".join(workloads), "--threads",
           str(args.threads), "--repeat", str(repeat), "--min-seconds",
           str(MIN_SECONDS)]
    if quick:
        cmd.append("--quick")
    if args.handicap > 1:
        cmd += ["--handicap", str(args.handicap)]
    print(f"perf-guard: {' '.join(cmd)} (load "
          f"{os.getloadavg()[0]:.2f})", flush=True)
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {}, f"{group}: para-bench did not finish in {args.timeout} s"
    except OSError as e:
        return {}, f"{group}: cannot run {args.bench}: {e}"
    rows = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                return rows, f"{group}: unparsable row: {line[:120]}"
            rows[(r["workload"], r["variant"])] = r
    bad = [f"{w}/{v}: {r['check']}" for (w, v), r in rows.items()
           if r.get("check") != "ok"]
    if p.returncode < 0:
        sig = signal.Signals(-p.returncode).name
        tail = "\n    ".join(p.stderr.strip().splitlines()[-5:])
        return rows, f"{group}: para-bench crashed ({sig})\n    {tail}"
    if bad:
        return rows, f"{group}: failed check: " + "; ".join(bad)
    if p.returncode != 0:
        tail = "\n    ".join(p.stderr.strip().splitlines()[-5:])
        return rows, (f"{group}: para-bench exited {p.returncode}"
                      f"\n    {tail}")
    return rows, None


def value_of(fig, rows):
    """The figure's value from rows, or (None, why)."""
    try:
        v = fig[2](rows)
    except KeyError as e:
        return None, f"row {e.args[0][0]}/{e.args[0][1]} missing"
    if v is None:
        return None, "row has no value"
    return float(v), None


def holds(fig, v):
    return v >= fig[3] if fig[4] == "min" else v <= fig[3]


def near(fig, v):
    return v < fig[3] * NEAR if fig[4] == "min" else v > fig[3] / NEAR


# Attempts of seven that must hold, where not three. w12 times 500-item
# runs of ~11-16 us, and most of para's share of one is the handful of
# cache-line transfers that start and end it on two cores: when the host's
# vCPUs pass a line slowly (para-host-probe's ping-pong) it drops to
# 0.37-0.41 for minutes at a time. CI on 5841add: 0.386, 0.394, 0.396,
# 0.411, 0.373, then 0.541 and 0.658 once the state passed (the build of
# 092cdd3 measured as this one, 3 pairs in one sitting: 0.71 both; and
# CI on d1f3160 began at 0.396 too). Two attempts must hold: a 2x slowdown
# (0.32-0.42 from the quiet 0.64-0.83) spoils them all but a lucky one;
# under --handicap 2 in CI (run of d1f3160) the attempts were 0.197-0.571
# with one above 0.52, the second best 0.374.
HOLDS_OF_SEVEN = {"w12 seq / para time per run (median)": 2}

# Floors for a host that passes cache lines slowly. Two attempts of seven
# were not enough: CI on de24b56 spent the whole guard in that state (w12
# 0.364-0.427, one 0.599), and so did this machine for the builds before
# and after the change under test alike (para 28.3-28.7 us per run, same
# sitting). para-host-probe (beside para-bench) measures the state right
# before each attempt of the group; where its ping-pong is over
# SLOW_PINGPONG_NS (113 ns quiet, 428-624 ns slow on the CI VM) the attempt
# is held to the slow floor instead, shown scaled to the quiet one
# (value x floor / slow floor) so that every attempt is judged on the same
# line. In that state a healthy runtime's second best of seven was 0.381
# and 0.427 (attempts 0.364-0.600), and under --handicap 2 in CI (run of
# 3ac01c4) 0.294 (attempts 0.196-0.301: the second of each pair of runs
# is cheaper than the first); the slow floor sits between, near their
# geometric mean.
SLOW_PINGPONG_NS = 300
SLOW_FLOORS = {"w12 seq / para time per run (median)": 0.335}


def probe_pingpong(args):
    """The host's cache-line ping-pong in ns (para-host-probe), or None
    where there is no probe or it fails."""
    probe = args.probe or os.path.join(os.path.dirname(args.bench),
                                       "para-host-probe")
    if not os.path.exists(probe):
        return None
    try:
        p = subprocess.run([probe], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=30)
        return float(json.loads(p.stdout.splitlines()[0])["pingpong_ns"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError,
            IndexError):
        return None


def judged(fig, values):
    """The value a figure is judged on: the best attempt while there are
    one or two (a second is only taken when the first was near its bound),
    the median of three to six, the third best of seven (the second for the
    figures in HOLDS_OF_SEVEN). Noise mostly makes para look slower, but it can
    also slow the baseline (a plain-threads `ideal` or a short `seq`) and
    make one attempt look better than it is: with three attempts or more,
    half or more must hold, so one lucky attempt cannot hide a real slowdown."""
    if not values:
        return None
    if len(values) >= ATTEMPTS:
        # All seven: the third best. Host noise comes in bursts that can
        # spoil four attempts in a row (CI run 60: w12 0.436, 0.432, 0.424,
        # 0.412, then 0.849; CI run 50: w3 0.161-0.187, then 0.314 and
        # 0.316), while a real 2x slowdown spoils all seven; three
        # attempts must hold (under --handicap 2 the second best of five
        # already stayed below every floor in CI runs 54-59).
        ranked = sorted(values, reverse=(fig[4] == "min"))
        return ranked[HOLDS_OF_SEVEN.get(fig[0], 3) - 1]
    if len(values) >= 3:
        return sorted(values)[len(values) // 2]
    return max(values) if fig[4] == "min" else min(values)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", default="build/bench/para-bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--handicap", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--json", help="write every figure's result here")
    ap.add_argument("--probe", help="para-host-probe (default: beside "
                    "--bench, where there is one)")
    args = ap.parse_args()

    start = time.monotonic()
    best = {f[0]: None for f in FIGURES}
    values = {f[0]: [] for f in FIGURES}
    notes = {f[0]: [] for f in FIGURES}  # each attempt as measured
    errors = []
    todo = list(GROUPS)
    for attempt in range(1, ATTEMPTS + 1):
        repeat = args.repeat + 2 * (attempt - 1)
        for group in todo:
            slow_host = False
            if any(f[1] == group and f[0] in SLOW_FLOORS for f in FIGURES):
                pp = probe_pingpong(args)
                slow_host = pp is not None and pp > SLOW_PINGPONG_NS
                if pp is not None:
                    print(f"perf-guard: host ping-pong {pp:.0f} ns"
                          f"{' (slow: slow floors)' if slow_host else ''}",
                          flush=True)
            rows, err = run_group(args, group, repeat)
            if err:
                errors.append(err)
                continue
            for fig in FIGURES:
                if fig[1] != group:
                    continue
                v, why = value_of(fig, rows)
                if v is None:
                    errors.append(f"{fig[0]}: {why}")
                    continue
                if slow_host and fig[0] in SLOW_FLOORS:
                    scale = fig[3] / SLOW_FLOORS[fig[0]]
                    notes[fig[0]].append(f"{v:.3f} slow host x{scale:.2f}")
                    v *= scale
                else:
                    notes[fig[0]].append(f"{v:.3f}")
                values[fig[0]].append(v)
                best[fig[0]] = judged(fig, values[fig[0]])
        if errors:
            break  # a crash, a missing row or a failed check: no re-measuring
        todo = sorted({f[1] for f in FIGURES
                       if best[f[0]] is not None and near(f, best[f[0]])})
        if not todo:
            break
        if attempt < ATTEMPTS:
            print(f"perf-guard: near or below a bound, measuring again: "
                  f"{', '.join(todo)}", flush=True)

    failed = bool(errors)
    results = []
    print(f"perf-guard: figures ({'handicap %d, ' % args.handicap if args.handicap > 1 else ''}"
          f"{args.threads} threads, {time.monotonic() - start:.0f} s):")
    for fig in FIGURES:
        name, _, _, bound, kind, quiet, is_speed = fig
        v = best[name]
        if v is None:
            status = "MISSING"
            failed = True
        elif holds(fig, v):
            status = "ok"
        else:
            status = "BELOW FLOOR" if kind == "min" else "ABOVE CEILING"
            failed = True
        word = "floor" if kind == "min" else "ceiling"
        shown = "   n/a" if v is None else f"{v:6.3f}"
        tries = ", ".join(notes[name])
        print(f"  {name:42s} {shown}  {word} {bound:5.2f}  (quiet: {quiet})"
              f"  {status}  [{tries}]")
        results.append({"figure": name, "value": v, "bound": bound,
                        "kind": kind, "status": status, "speed": is_speed,
                        "attempts": values[name], "measured": notes[name]})
    for e in errors:
        print(f"  ERROR: {e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"failed": failed, "errors": errors,
                       "handicap": args.handicap, "figures": results}, f,
                      indent=1)
    print("perf-guard: " + ("FAILED" if failed else "ok"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
