#!/usr/bin/env python3
"""A stand-in for para-bench, to prove that the perf guard fails when it
should and passes when it should (tests/perf_guard/selftest.sh).

It takes para-bench's options and prints rows in para-bench's format, with
timings a healthy runtime gets on a quiet 2-core machine; STANDIN_MODE
breaks them one way:

  ok               healthy rows
  crash            prints some rows, then dies of SIGSEGV
  exit1            every row, then exit status 1 (as a failed check does)
  missing:W/V      row W/V is not printed
  badcheck:W/V     row W/V has a failed check (and the exit status is 1)
  slow:F           every para variant F times slower (--handicap K too)
  rss:MB           w5's rows report peak RSS MB
  flaky            the first invocation of each group is 3x slower for
                   para, later ones healthy (STANDIN_STATE: a counter file)
  w12slow          w12's para as on a host that passes cache lines slowly
                   (seq / para 0.38; the stand-in probe says how slowly)
"""
import os
import signal
import sys

# (variant, threads, seconds of a healthy quick/full run, is a para run)
ROWS = {
    "w1": (2000000, [("seq", 1, 0.025, False), ("para", 2, 0.01437, True),
                     ("para-fnptr", 2, 0.018, True),
                     ("ideal", 2, 0.01365, False)]),
    "w2": (10000, [("seq", 1, 0.050, False), ("para", 2, 0.0253, True)]),
    "w3": (10000000, [("seq", 1, 0.006, False), ("para", 2, 0.024, True),
                      ("para-fnptr", 2, 0.120, True),
                      ("ideal", 2, 0.004, False)]),
    "w4": (65536, [("seq", 1, 0.012, False), ("cpu", 2, 0.0065, True),
                   ("dev1", 2, 3.0, True), ("dev", 2, 0.0094, True),
                   ("mixed", 2, 0.0063, True), ("limit", 1, 0.0085, False)]),
    "w5": (25000, [("seq", 1, 0.040, False), ("bounded", 2, 0.0227, True),
                   ("unbounded", 2, 0.022, True),
                   ("bounded-dhondt", 2, 0.040, True)]),
    "w6": (20000, [("seq", 1, 0.250, False), ("para", 2, 0.130, True),
                   ("static", 3, 0.312, False)]),
    "w7": (50000, [("seq", 1, 0.033, False), ("para", 2, 0.016, True)]),
    "w9": (142074, [("seq", 1, 0.034, False), ("para", 2, 0.0246, True)]),
    "w10": (4194304, [("para", 2, 0.0666, True)]),
    "w12": (10000000, [("seq", 1, 0.200, False), ("para", 2, 0.267, True)]),
    "w13": (4000, [("seq", 1, 0.45, False), ("para", 2, 0.23, True)]),
    "w14": (50000, [("seq", 1, 0.048, False), ("para", 2, 0.01195, True),
                    ("ideal", 2, 0.0245, False)]),
}
# Extra fields of a healthy row, from its seconds and items.
EXTRA = {
    ("w10", "para"): lambda secs, items: f'"t_star":0.059919,',
    ("w12", "seq"): lambda secs, items: f'"us_per_run":{secs / 20000 * 1e6:.2f},'
                                        f'"p99_us":{secs / 20000 * 3e6:.2f},',
    ("w12", "para"): lambda secs, items: f'"us_per_run":{secs / 20000 * 1e6:.2f},'
                                         f'"p99_us":{secs / 20000 * 3e6:.2f},',
}


def main():
    args = sys.argv[1:]
    workloads, handicap = [], 1
    for i, a in enumerate(args):
        if a == "--workload":
            workloads = args[i + 1].split(",")
        elif a == "--handicap":
            handicap = int(args[i + 1])
    mode = os.environ.get("STANDIN_MODE", "ok")
    slow = float(handicap)
    if mode.startswith("slow:"):
        slow *= float(mode[5:])
    if mode == "flaky":
        state = os.environ["STANDIN_STATE"]
        key = ",".join(workloads)
        seen = open(state).read().split() if os.path.exists(state) else []
        if key not in seen:
            slow *= 3.0
            with open(state, "a") as f:
                f.write(key + "\n")
    failed = False
    printed = 0
    for w in workloads:
        items, variants = ROWS[w]
        seq = variants[0][2]
        for variant, threads, secs, is_para in variants:
            if mode == f"missing:{w}/{variant}":
                continue
            if is_para:
                secs *= slow
                if mode == "w12slow" and w == "w12":
                    secs *= 0.75 / 0.38
            check = "ok"
            if mode == f"badcheck:{w}/{variant}":
                check = "sum 1, expected 2"
                failed = True
            rss = 15.0
            if w == "w5" and mode.startswith("rss:"):
                rss = float(mode[4:])
            eff = seq / (threads * secs)
            extra = EXTRA.get((w, variant), lambda s_, i_: "")(secs, items)
            print(f'{{"workload":"{w}","variant":"{variant}","items":{items},'
                  f'"threads":{threads},"seconds":{secs:.6f},'
                  f'"items_per_s":{items / secs:.0f},"efficiency":{eff:.3f},'
                  f'{extra}"peak_rss_mb":{rss:.1f},"check":"{check}"}}',
                  flush=True)
            printed += 1
            if mode == "crash" and printed == 2:
                os.kill(os.getpid(), signal.SIGSEGV)
    return 1 if failed or mode == "exit1" else 0


if __name__ == "__main__":
    sys.exit(main())
