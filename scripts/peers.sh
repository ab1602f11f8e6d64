#!/usr/bin/env bash
# para side by side with oneTBB, OpenMP and StarPU (issue 7), in one run.
#
#   ./scripts/peers.sh [--quick] [--full] [--threads N] [--rounds R]
#                      [--lp-rounds R] [--workloads LIST] [--no-lp]
#                      [--report-only]
#
# On a fresh Debian 12 machine: installs para's packages and the peers'
# (libtbb-dev, libstarpu-dev, gnuplot-nox; OpenMP comes with gcc), builds
# para, para-bench and the peers (bench/peers) in Release in build-peers/,
# then runs, round after round so that every binary sees the same machine:
#
#   1. the workloads w1 w2 w3 w6 w7 w14: para-bench, peer-tbb,
#      peer-omp, peer-starpu, each with --repeat 1, R rounds (default 5);
#      and w4, the device workload (Mandelbrot on the OpenCL device, PoCL
#      here): para-bench's `dev` against peer-starpu's OpenCL-only
#      variants (no CPU worker, tasks of 65,536 pixels; oneTBB and OpenMP
#      have no device and sit it out). PoCL's threads are as the
#      environment sets them (POCL_MAX_PTHREAD_COUNT; CI sets 1), and the
#      report says which;
#   2. the linear-pipeline protocol (8 and 16 stages of ~10 us, serial or
#      parallel stages, 8 tokens for the peers): para-lp, peer-tbb, peer-omp
#      over 2^10, 2^12, 2^14, 2^16 items (--full: 2^10 ... 2^20, every
#      power of two), 3 rounds (--full: 1).
#
# and writes bench/results/peers.md (medians, para ÷ peer ratios),
# peers.png (gnuplot), peers-lp.png, and the raw rows (peers-raw.jsonl).
# --quick: the --quick sizes and lp up to 2^12 (a smoke test, ~1 minute).
# --workloads LIST: only these of w1,w2,w3,w4,w6,w7,w14 (e.g. w1,w14);
# --no-lp: skip the linear-pipeline protocol (a focused sitting of a few
# minutes). --report-only: no build or run; the report from the raw rows.
# Threads default to 2. A default run takes ~8 minutes on 2 idle cores.
set -euo pipefail
cd "$(dirname "$0")/.."

threads=2 rounds=5 lp_rounds=3 quick=0 full=0 report_only=0 lp=1
workloads=w1,w2,w3,w4,w6,w7,w14
args="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; rounds=3; lp_rounds=1 ;;
    --full) full=1; lp_rounds=1 ;;
    --threads) threads="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    --lp-rounds) lp_rounds="$2"; shift ;;
    --workloads) workloads="$2"; shift ;;
    --no-lp) lp=0 ;;
    --report-only) report_only=1 ;;
    *) echo "usage: $0 [--quick] [--full] [--threads N] [--rounds R]" \
            "[--lp-rounds R] [--workloads LIST] [--no-lp] [--report-only]" >&2
       exit 2 ;;
  esac
  shift
done

out=bench/results
raw="$out/peers-raw.jsonl"
failed=0
if [ "$report_only" = 0 ]; then
# ---- packages ---------------------------------------------------------------
./scripts/install-deps.sh
peer_packages=(libtbb-dev libstarpu-dev gnuplot-nox python3)
missing=()
for p in "${peer_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  as_root=()
  [ "$(id -u)" -ne 0 ] && as_root=(sudo)
  echo "peers: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---- build --------------------------------------------------------------------
cmake -S bench/peers -B build-peers -DCMAKE_BUILD_TYPE=Release \
  -DPARA_WERROR=ON >/dev/null
cmake --build build-peers -j "$(nproc)" >/dev/null
b=build-peers
for exe in para/bench/para-bench para-lp peer-tbb peer-omp peer-starpu; do
  [ -x "$b/$exe" ] || { echo "peers: $b/$exe was not built" >&2; exit 1; }
done

# ---- run ------------------------------------------------------------------------
mkdir -p "$out"
: >"$raw"
size=()
[ "$quick" = 1 ] && size=(--quick)
export STARPU_SILENT=1
common=(--threads "$threads" --repeat 1 "${size[@]}")
run() { # run one binary, keep its rows; a failed check fails the script
  "$@" >>"$raw" || { echo "peers: FAILED: $*" >&2; failed=1; }
}

# oneTBB and OpenMP have no device: they get the list without w4.
cpu_workloads=$(echo ",$workloads," | sed 's/,w4,/,/g; s/^,//; s/,$//')
echo "peers: workloads $workloads, $rounds rounds, $threads threads"
for r in $(seq 1 "$rounds"); do
  echo "  round $r/$rounds ($(date +%T), load $(cut -d' ' -f1 /proc/loadavg))"
  run "$b/para/bench/para-bench" --workload "$workloads" "${common[@]}"
  if [ -n "$cpu_workloads" ]; then
    run "$b/peer-tbb" --workload "$cpu_workloads" "${common[@]}"
    run "$b/peer-omp" --workload "$cpu_workloads" "${common[@]}"
  fi
  # StarPU is initialised once per process: CPU workers for the CPU
  # workloads, one OpenCL worker and no CPU worker for w4. A process that
  # ran the CPU ones could not start StarPU again for w4 (starpu_init
  # -ENODEV), so w4 gets a process of its own.
  if [ -n "$cpu_workloads" ]; then
    run "$b/peer-starpu" --workload "$cpu_workloads" "${common[@]}"
  fi
  if [ "$cpu_workloads" != "$workloads" ]; then
    run "$b/peer-starpu" --workload w4 "${common[@]}"
  fi
done

if [ "$lp" = 0 ]; then
  sizes=()
elif [ "$quick" = 1 ]; then
  sizes=(1024 4096)
elif [ "$full" = 1 ]; then
  sizes=(); for e in $(seq 10 20); do sizes+=($((1 << e))); done
else
  sizes=(1024 4096 16384 65536)
fi
[ "$lp" = 1 ] && echo "peers: linear pipeline, items ${sizes[*]}, $lp_rounds rounds"
declare -A expect
for s in 8 16; do
  for n in "${sizes[@]}"; do
    expect[$s,$n]=$("$b/para-lp" --lp-reference --lp-stages "$s" --lp-items "$n")
  done
done
for r in $(seq 1 "$lp_rounds"); do
  for s in 8 16; do
    for mode in serial parallel; do
      for n in "${sizes[@]}"; do
        echo "  round $r/$lp_rounds: $s stages, $mode, $n items ($(date +%T))"
        lp=(--workload lp --lp-stages "$s" --lp-mode "$mode" --lp-items "$n"
            --lp-expect "${expect[$s,$n]}" --threads "$threads" --repeat 1)
        run "$b/para-lp" "${lp[@]}"
        run "$b/peer-tbb" "${lp[@]}"
        run "$b/peer-omp" "${lp[@]}"
      done
    done
  done
done

fi # report_only

# ---- report -----------------------------------------------------------------
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
header="## Peers: para ÷ oneTBB, OpenMP, StarPU

Generated by \`./scripts/peers.sh $args\` on $(date -u +%F), commit $commit;
$(nproc) cores ($cpu), threads=$threads; workloads: median of $rounds rounds,
linear pipeline: median of $lp_rounds rounds (each round runs every binary
once, interleaved). gcc $(gcc -dumpversion), oneTBB $(dpkg-query -W -f='${Version}' libtbb-dev),
StarPU $(dpkg-query -W -f='${Version}' libstarpu-dev); w4 on PARA_DEVICE=${PARA_DEVICE:-auto},
POCL_MAX_PTHREAD_COUNT=${POCL_MAX_PTHREAD_COUNT:-unset, PoCL default: a thread per core}; w4's
para row is para-bench's \`dev\`."
python3 bench/peers/combine.py "$raw" "$out/peers.md" "$out/peers.dat" \
  "$out/peers-lp.dat" "$header" || failed=1

if gnuplot <<GP
set terminal pngcairo size 1100,520 font "sans,10"
set output "$out/peers.png"
set title "para ÷ peer throughput (best variant of each peer; > 1: para ahead), threads=$threads"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y 2
set yrange [0.0625:*]
set ylabel "para items/s ÷ peer items/s (log2)"
set grid ytics
set xtics rotate by -30 scale 0
set key top left
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 dt 2
plot "$out/peers.dat" using 2:xtic(1) title "oneTBB", \
     "" using 3 title "OpenMP", "" using 4 title "StarPU"
GP
then :; else
  # w4 alone (only StarPU has it) leaves gnuplot columns without points.
  echo "peers: gnuplot drew no peers.png (columns without points?)" >&2
fi
[ "$lp" = 1 ] && gnuplot <<GP
set terminal pngcairo size 900,480 font "sans,10"
set output "$out/peers-lp.png"
set title "linear pipeline: para ÷ peer throughput vs items, threads=$threads"
set logscale x 2
set xlabel "items"
set ylabel "para ÷ peer"
set grid
set key outside right
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 dt 2
plot for [i=2:9] "$out/peers-lp.dat" using 1:i with linespoints title columnheader(i)
GP
echo "peers: wrote $out/peers.md, $out/peers.png$([ "$lp" = 1 ] && echo ", $out/peers-lp.png"), $raw"
exit $failed
