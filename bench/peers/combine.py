#!/usr/bin/env python3
"""Combine the raw rows of scripts/peers.sh into bench/results/peers.md,
peers.dat (for gnuplot) and peers-lp.dat.

Input: JSON lines, one per row of para-bench / para-lp / peer-*, each
extended by peers.sh with "round" and "binary". For every (workload, items,
variant) the median of the rounds' seconds is taken; ratios are throughput
ratios: para items/s divided by the peer's items/s (> 1: para is ahead).
Rows run on fewer items (per-item variants with a cap) compare rates.
"""
import json
import statistics
import sys
from collections import defaultdict

BASELINES = {"seq", "ideal", "static", "para-fnptr", "para-serial"}
FAMILIES = ["tbb", "omp", "starpu"]


def family(variant):
    return variant.split("-")[0]


def main(raw_path, md_path, dat_path, lp_dat_path, header):
    runs = defaultdict(list)
    failures = []
    for line in open(raw_path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if r.get("check") != "ok":
            failures.append(r)
            continue
        key = (r["workload"], r["variant"], r["items"])
        runs[key].append(r)

    med = {}
    for key, rows in runs.items():
        secs = statistics.median(x["seconds"] for x in rows)
        med[key] = {
            "seconds": secs,
            "rate": key[2] / secs if secs > 0 else 0.0,
            "rounds": len(rows),
            "threads": rows[0]["threads"],
            "eff": statistics.median(
                x["efficiency"] for x in rows
            ) if rows[0]["efficiency"] is not None else None,
        }

    # para's row per (workload): para-bench rows for w*, para-lp for lp*;
    # on w4 (the device workload) para-bench's `dev` (its other w4 rows,
    # cpu, dev1, mixed and limit, are listed with dev ÷ them).
    para = {}
    for (w, v, n), m in med.items():
        if v == "para" or (w == "w4" and v == "dev"):
            para[(w, n)] = m
    workloads = sorted({w for (w, _, _) in med if w.startswith("w")})
    lps = sorted({(w, n) for (w, v, n) in med if w.startswith("lp")},
                 key=lambda x: (x[0], x[1]))

    out = [header, ""]
    out.append("### Every variant (median of the rounds)\n")
    out.append("| workload | variant | items | threads | seconds | items/s |"
               " efficiency | para ÷ variant |")
    out.append("|---|---|--:|--:|--:|--:|--:|--:|")
    best = defaultdict(dict)  # workload label -> family -> (ratio, variant)

    def add_rows(w, para_key_items, keys):
        p = para.get((w, para_key_items))
        for key in keys:
            m = med[key]
            _, v, n = key
            ratio = ""
            if p is not None and m is not p and m["rate"] > 0:
                r = p["rate"] / m["rate"]
                ratio = f"{r:.2f}"
                fam = family(v)
                if v not in BASELINES and fam in FAMILIES:
                    label = w if w.startswith("w") else f"{w} n={n}"
                    cur = best[label].get(fam)
                    if cur is None or r < cur[0]:
                        best[label][fam] = (r, v)
            eff = "" if m["eff"] is None else f"{m['eff']:.3f}"
            out.append(f"| {w} | {v} | {n} | {m['threads']} | "
                       f"{m['seconds']:.4f} | {m['rate']:,.0f} | {eff} | "
                       f"{ratio} |")

    for w in workloads:
        pitems = [n for (ww, n) in para if ww == w]
        keys = sorted((k for k in med if k[0] == w),
                      key=lambda k: (k[1] != "seq", k[1] not in ("para", "dev"),
                                     k[1]))
        add_rows(w, pitems[0] if pitems else None, keys)
    for (w, n) in lps:
        keys = sorted((k for k in med if k[0] == w and k[2] == n),
                      key=lambda k: (k[1] != "para", k[1]))
        add_rows(w, n, keys)

    out.append("")
    out.append("### para ÷ best variant of each peer (throughput ratio; "
               "> 1: para ahead)\n")
    out.append("| workload | " + " | ".join(f"para ÷ {f}" for f in FAMILIES)
               + " |")
    out.append("|---|" + "--:|" * len(FAMILIES))
    dat = ["# label " + " ".join(FAMILIES)]
    lp_dat = defaultdict(dict)
    for label in list(workloads) + [f"{w} n={n}" for (w, n) in lps]:
        cells, nums = [], []
        for f in FAMILIES:
            b = best.get(label, {}).get(f)
            if b is None:
                cells.append("–")
                nums.append("NaN")
            else:
                mark = "" if b[0] >= 1.0 else " **(behind)**"
                cells.append(f"{b[0]:.2f} ({b[1]}){mark}")
                nums.append(f"{b[0]:.4f}")
        if label.startswith("lp"):
            w, n = label.split(" n=")
            lp_dat[w][int(n)] = nums
        out.append(f"| {label} | " + " | ".join(cells) + " |")
        # the plot gets the workloads and the largest lp size only
        if not label.startswith("lp"):
            dat.append(f'"{label}" ' + " ".join(nums))
    for w in sorted(lp_dat):
        n = max(lp_dat[w])
        dat.append(f'"{w} n={n}" ' + " ".join(lp_dat[w][n]))
    if failures:
        out.append("")
        out.append("### Failed checks\n")
        for r in failures:
            out.append(f"- {r['workload']}/{r['variant']}: {r['check']}")
    open(md_path, "w").write("\n".join(out) + "\n")
    open(dat_path, "w").write("\n".join(dat) + "\n")
    with open(lp_dat_path, "w") as f:
        f.write("# items " + " ".join(f"{w}_{fam}" for w in sorted(lp_dat)
                                      for fam in ("tbb", "omp")) + "\n")
        sizes = sorted({n for w in lp_dat for n in lp_dat[w]})
        for n in sizes:
            vals = []
            for w in sorted(lp_dat):
                nums = lp_dat[w].get(n, ["NaN"] * 3)
                vals += nums[:2]
            f.write(f"{n} " + " ".join(vals) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
