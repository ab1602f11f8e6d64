/*
 * para-bench: declarations shared by the files of bench/.
 *
 * The benchmark is split in four files:
 *
 *   para_bench.c   command line, the runtime, the workload table (main)
 *   bench_util.c   clocks, medians, peak RSS, the JSON rows, and the two
 *                  timing loops every workload goes through
 *   workloads.c    w1, w2, w3, w7 (para graphs and their seq baselines)
 *   w4_offload.c   w4 (kernel nodes: cpu, dev1, dev, mixed, limit)
 *   w5_budget.c    w5 (the memory budget: bounded, unbounded)
 *   w6_shift.c     w6 (para, seq, and the static thread-per-stage pipeline)
 *   w8_chain.c     w8 (three kernels on one device: cpu, dev, dev-copy,
 *                  limit)
 *   w10_devices.c  w10 (three simulated devices: makespan and shares)
 *   shapes.c       w12, w13, w14 (short runs, large items, a deep chain)
 *   w11_mpi.c      w11 (across MPI ranks; only with the MPI part)
 *
 * Every workload follows the project's benchmark contract exactly (sizes,
 * spin() counts and checksums are documented in BENCHMARKS.md), so that its
 * numbers can be put beside other runtimes measured the same way.
 */
#ifndef PARA_BENCH_H
#define PARA_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "para.h"

#if defined(__GNUC__)
#define BENCH_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define BENCH_PRINTF(fmt, args)
#endif

/*
 * The work unit of the benchmark contract (BENCHMARKS.md), verbatim. Every cost
 * in the benchmark is a number of these iterations. The multiply chain is
 * loop-carried, so the compiler can neither vectorise nor fold it; its speed
 * depends on branch alignment on Cascade Lake, hence
 * -Wa,-mbranches-within-32B-boundaries in bench/CMakeLists.txt for every file
 * that inlines it.
 */
static inline uint64_t spin(uint64_t x, uint32_t iters)
{
    for (uint32_t i = 0; i < iters; i++) {
        x ^= x >> 31;
        x *= 0x9E3779B97F4A7C15ull;
    }
    return x;
}

/* What every workload needs from main(). */
typedef struct bench_cfg {
    para_runtime_t *rt; /* created once by main(), reused by every run */
    unsigned threads;   /* the runtime's worker count */
    unsigned repeat;    /* runs per variant; the median time is reported */
    int quick;          /* 1: the --quick sizes */
    double min_seconds; /* --min-seconds: a timing shorter than this is made
                           of back-to-back runs until it is not; the time
                           per run is their mean (0: one run per timing) */
    unsigned handicap;  /* --handicap K: every para_run() of a timing is
                           done K times (a stand-in for a K-fold slowdown of
                           the runtime, to prove the perf guard); 1 normally */
    para_runtime_t *rt_traced; /* --trace FILE: a second runtime with the
                                  event trace on, or NULL */
} bench_cfg_t;

/* One output line: one workload, one variant. */
typedef struct bench_row {
    const char *workload; /* "w1" ... */
    const char *variant;  /* "seq", "para", "static" */
    uint64_t items;       /* items per run, as the contract counts them */
    unsigned threads;     /* threads the variant ran on */
    double seconds;       /* median over the runs that completed; 0 if none */
    double cpu_seconds;   /* median process CPU time of those runs (seq and
                             graph rows; 0 = not measured): on a shared
                             machine it says what a variant costs when its
                             wall time says only what share it got */
    double seq_seconds;   /* median seq time of the same process; 0 = none,
                             which prints "efficiency":null */
    int ok;               /* 1 until bench_fail() */
    char extra[256];      /* more JSON fields of the workload, without the
                             braces ("\"p99_us\":41.0"), or "" */
    char check[256];      /* "ok", or the first failure */
} bench_row_t;

void bench_row_init(bench_row_t *row, const char *workload, const char *variant,
                    uint64_t items, unsigned threads);

/* Record a failed check (the first one wins) and echo it to stderr. */
void bench_fail(bench_row_t *row, const char *fmt, ...) BENCH_PRINTF(2, 3);

/* Print @p row as one JSON line on stdout, with the current peak RSS. */
void bench_print_row(const bench_row_t *row);

/* Monotonic clock in seconds. */
double bench_now(void);

/*
 * A timed body for bench_time(): does one whole run of a variant, returns 0,
 * or calls bench_fail() on @p row and returns non-zero to stop the repeats.
 */
typedef int (*bench_timed_fn)(void *state, bench_row_t *row);

/* The work of [begin, end) on one thread: returns its (wrapping) sum. */
typedef uint64_t (*bench_range_fn)(uint64_t begin, uint64_t end);

/*
 * The `ideal` rows: [0, @p n) split statically over @p threads plain
 * pthreads (at most 64), no runtime at all; *@p sum gets the slices' sums
 * added. Returns 0, or non-zero after bench_fail() on @p row.
 */
int bench_static_split(unsigned threads, uint64_t n, bench_range_fn fn,
                       uint64_t *sum, bench_row_t *row);

/*
 * The `ideal` row of @p workload: bench_static_split() over cfg->threads,
 * timed by bench_time(), the sum checked against @p expect, the row printed
 * with @p seq_seconds as its baseline. Not run (and failed) when the seq
 * reference failed (@p seq_seconds 0). Returns 0, or 1 if the row failed.
 */
int bench_ideal_row(const bench_cfg_t *cfg, const char *workload, uint64_t n,
                    bench_range_fn fn, uint64_t expect, double seq_seconds);

/* Run @p fn cfg->repeat times, timing all of it; sets row->seconds. Each
 * timing repeats @p fn back to back until it lasts cfg->min_seconds. */
void bench_time(const bench_cfg_t *cfg, bench_timed_fn fn, void *state,
                bench_row_t *row);

/* A para variant: how to build a fresh graph, and how to check a run. */
typedef struct bench_graph_ops {
    /* Add nodes and edges to the empty @p graph and reset the run's state.
     * Returns 0 or the PARA_E* code of the failing para_graph_*() call. */
    int (*build)(para_graph_t *graph, void *state);
    /* Compare the state after a run with the expected result; bench_fail()
     * on mismatch. */
    void (*check)(void *state, bench_row_t *row);
} bench_graph_ops_t;

/*
 * Build a fresh graph, para_run() it on cfg->rt, check it, destroy it;
 * cfg->repeat times. Only para_run() is timed: graph construction is not
 * what the contract compares. Sets row->seconds.
 */
void bench_time_graph(const bench_cfg_t *cfg, const bench_graph_ops_t *ops,
                      void *state, bench_row_t *row);

/*
 * The common shape of w1, w2, w6 and w7: time @p seq (the plain loop, which
 * also computes the expected result into @p state), print its row, then time
 * the para graph of @p ops against it and print that row. Returns 0 if both
 * checks passed; *@p seq_seconds (may be NULL) receives the seq median, for
 * variants a workload adds after these two.
 */
/*
 * As bench_time_graph(), and when @p traced is not NULL, also time the same
 * graph on cfg->rt_traced after each run on cfg->rt (interleaved, so that
 * both see the same noise); sets traced->seconds.
 */
void bench_time_graph_pair(const bench_cfg_t *cfg, const bench_graph_ops_t *ops,
                           void *state, bench_row_t *row, bench_row_t *traced);

/*
 * The common shape of w1, w2, w6 and w7 (see below). With --trace, a third
 * row "para-traced" times the graph on the traced runtime, interleaved with
 * the "para" runs.
 */
int bench_seq_para(const bench_cfg_t *cfg, const char *workload, uint64_t items,
                   bench_timed_fn seq, const bench_graph_ops_t *ops,
                   void *state, double *seq_seconds);

/*
 * The para graph of @p ops once more under each scheduling policy, on a
 * runtime of its own ("para-ws", "para-memaware", "para-dhondt"), against the
 * seq median
 * @p seq_seconds. Returns 0 if every check passed.
 */
int bench_policy_rows(const bench_cfg_t *cfg, const char *workload,
                      uint64_t items, const bench_graph_ops_t *ops, void *state,
                      double seq_seconds);

/* The workloads. Each prints its rows and returns 0 if every check passed. */
int bench_w1(const bench_cfg_t *cfg);
int bench_w2(const bench_cfg_t *cfg);
int bench_w3(const bench_cfg_t *cfg);
int bench_w4(const bench_cfg_t *cfg);
int bench_w5(const bench_cfg_t *cfg);
int bench_w6(const bench_cfg_t *cfg);
int bench_w7(const bench_cfg_t *cfg);
int bench_w8(const bench_cfg_t *cfg);
int bench_w9(const bench_cfg_t *cfg);
int bench_w10(const bench_cfg_t *cfg);
int bench_w12(const bench_cfg_t *cfg);
#ifdef PARA_BENCH_MPI
/* w11 (w11_mpi.c, with PARA_MPI): run under mpirun; bench_mpi_finish()
 * finalises MPI if w11 initialised it. */
int bench_w11(const bench_cfg_t *cfg);
void bench_mpi_finish(void);
#endif
int bench_w13(const bench_cfg_t *cfg);
int bench_w14(const bench_cfg_t *cfg);

#endif /* PARA_BENCH_H */
