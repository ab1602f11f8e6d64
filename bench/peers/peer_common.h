/*
 * Peers of para-bench: what the oneTBB, OpenMP and StarPU programs share.
 *
 * Every peer runs the workloads of BENCHMARKS.md with the sizes, spin()
 * counts and checks of para-bench (bench/workloads.c, bench/w6_shift.c) and
 * prints the same JSON rows through bench/bench_util.c, so one script can
 * put them side by side (scripts/peers.sh).
 *
 * Workloads w1, w2, w6, w7 and w14 are linear chains: a serial in-order source
 * emitting {i, i}, some stages, a serial sink. They are described here once,
 * as a table of stages (peer_chain_t) that each peer maps onto its own
 * constructs (a TBB filter, an OpenMP loop body with ordered/critical
 * sections, a StarPU codelet with a data dependency on the sink's state).
 * A stage works on a chunk of items, so the same table serves "one token or
 * task per item" (chunks of 1) and "chunked" variants. w3 has a fan-out and
 * each peer writes it with its own graph construct.
 *
 * The seq reference of each workload is the same plain loop as in
 * para-bench; a peer times it (the "seq" row, so efficiencies are computed
 * as para-bench computes them) and checks every run against it.
 */
#ifndef PEER_COMMON_H
#define PEER_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "bench.h"

/* Item counts of the workloads (BENCHMARKS.md): full / --quick. */
#define PEER_W1_ITEMS 2000000u
#define PEER_W1_QUICK 100000u
#define PEER_W2_ITEMS 200000u
#define PEER_W2_QUICK 10000u
#define PEER_W3_ITEMS 10000000u
#define PEER_W3_QUICK 500000u
#define PEER_W6_ITEMS 400000u
#define PEER_W6_QUICK 20000u
#define PEER_W7_ITEMS 1000000u
#define PEER_W7_QUICK 50000u
#define PEER_W7_BINS 1024u
#define PEER_W14_ITEMS 1000000u
#define PEER_W14_QUICK 50000u
#define PEER_W14_STAGES 16u

/* The item every chain stage sees: the source index and the value so far. */
typedef struct peer_item {
    uint64_t i;
    uint64_t v;
} peer_item_t;

/* How a stage may run: any number at once, one at a time, or one at a time
 * in source order. */
enum peer_kind { PEER_PARALLEL, PEER_SERIAL, PEER_ORDERED };

/* State of one run: the reference (set by the seq loop) and what the serial
 * stages accumulate. Serial stages write it without locks; each peer must
 * guarantee they run one at a time. */
typedef struct peer_state {
    uint64_t n;
    uint64_t expect;                 /* reference sum, set by seq */
    uint64_t seq_hist[PEER_W7_BINS]; /* w7 reference histogram */
    uint64_t hist[PEER_W7_BINS];     /* w7 stateful node */
    uint64_t sum, count;             /* the sink */
    uint64_t expected;               /* ordered sink: next index due */
    uint64_t out_of_order;           /* items whose index was not due */
    uint64_t bad_expected, bad_got;  /* the first of them */
    const struct peer_chain *chain;  /* for the checks */
} peer_state_t;

typedef void (*peer_stage_fn)(peer_item_t *items, size_t n, peer_state_t *st);

typedef struct peer_stage {
    const char *name;
    peer_stage_fn fn;
    enum peer_kind kind;
} peer_stage_t;

#define PEER_MAX_STAGES (PEER_W14_STAGES + 1)

/* A linear workload: source {i, i} for i in [0, n), then the stages; the
 * last stage is the sink. */
typedef struct peer_chain {
    const char *workload;
    uint64_t items, quick_items;
    size_t chunk; /* items per token/task in chunked variants (~100 us) */
    int nstages;
    peer_stage_t stage[PEER_MAX_STAGES];
    int check_hist; /* w7 */
    /* the seq loop: sets st->expect (and st->seq_hist) */
    void (*seq)(peer_state_t *st);
} peer_chain_t;

/* The chains of w1, w2, w6, w7, w14; NULL for any other id. */
const peer_chain_t *peer_chain_find(const char *workload);

/* Fill a chunk of source items: {i, i} for i in [first, first + n). */
static inline void peer_source_fill(peer_item_t *items, uint64_t first,
                                    size_t n)
{
    for (size_t k = 0; k < n; k++) {
        items[k].i = first + k;
        items[k].v = first + k;
    }
}

/*
 * One-token-per-item variants of w1 and w3, whose items cost ~11 ns and
 * ~2 ns, run the first PEER_ITEM_CAP items only (their rows say how many):
 * at microseconds per token, 10 M items would take a minute per run.
 */
#define PEER_ITEM_CAP (1u << 18)
static inline uint64_t peer_item_cap(const char *workload, uint64_t items)
{
    int tiny = workload[0] == 'w' && (workload[1] == '1' || workload[1] == '3');
    return tiny && items > PEER_ITEM_CAP ? PEER_ITEM_CAP : items;
}

/* Reset what a run accumulates (not the reference). */
void peer_state_reset(peer_state_t *st);

/* Compare a finished run with the reference; bench_fail() on mismatch. */
void peer_state_check(const peer_state_t *st, bench_row_t *row);

/* Time the seq loop of @p chain (cfg->repeat runs), print its row, and
 * leave the reference in @p st. Returns the seq median in seconds. */
double peer_run_seq(const bench_cfg_t *cfg, const peer_chain_t *chain,
                    peer_state_t *st);

/*
 * w3: x fans out to (x -> (2x, x) -> 2x - x) and (x -> -x); both feed one
 * serial sink sum += y, sq += y*y (int64, summed in uint64_t). Checks: sum 0,
 * sq = 2 * sum of x*x (wrapping), 2N items.
 * The stages are out-of-line functions over arrays, each writing its output
 * to memory as para's nodes do: inlined into one loop, a compiler folds
 * (2x - x) + (-x) to nothing and the "graph" measures an empty loop.
 */
typedef struct peer_w3_pair {
    int64_t x2, x;
} peer_w3_pair_t;
void peer_w3_pair(int64_t first, size_t n, peer_w3_pair_t *out);
void peer_w3_diff(const peer_w3_pair_t *in, size_t n, int64_t *out);
void peer_w3_neg(int64_t first, size_t n, int64_t *out);
/* What w3's sink accumulates. */
typedef struct peer_w3_acc {
    uint64_t sum, sq, count;
} peer_w3_acc_t;
/* The sink: adds @p n values and their squares (wrapping) to @p acc. */
void peer_w3_sink(const int64_t *in, size_t n, peer_w3_acc_t *acc);
void peer_w3_check(uint64_t n, const peer_w3_acc_t *acc, bench_row_t *row);

/* Command line shared by the peers; the same options as para-bench, plus
 * the linear-pipeline protocol (bench/peers/README in BENCHMARKS.md):
 *   --workload LIST  w1,w2,w3,w4,w6,w7,w14 | all | lp (w4, the device
 *                    workload, only peer-starpu runs; "all" leaves it out)
 *   --threads N --quick --repeat R
 *   --lp-stages S --lp-mode serial|parallel --lp-items N --lp-expect SUM
 *   --lp-reference (compute the lp reference sum, print it, run nothing)
 * Without --lp-expect, the lp reference is computed by a seq loop.
 */
/* Workloads the peers know: w1, w2, w3, w4 (peer-starpu), w6, w7, w14. */
#define PEER_MAX_WORKLOAD 14

typedef struct peer_opts {
    int selected[PEER_MAX_WORKLOAD + 1]; /* [k]: workload w<k>; [0] = lp */
    unsigned threads;
    unsigned repeat;
    int quick;
    unsigned lp_stages;
    int lp_parallel;
    uint64_t lp_items;
    uint64_t lp_expect;
    int lp_have_expect;
    int lp_print_reference; /* --lp-reference: print the sum and exit */
} peer_opts_t;

/* Parse argv; returns 0, or 2 after printing why (exit status 2). */
int peer_parse_args(const char *prog, int argc, char **argv, peer_opts_t *o);

/*
 * The linear-pipeline protocol of Taskflow: S stages of ~10 us of spin()
 * each (PEER_LP_ITERS iterations: the chain is latency-bound at ~1.6 ns per
 * iteration on the development VM, so 6000 take ~10 us), on items
 * x = i; stage s computes x = spin(x, PEER_LP_ITERS); a serial sink sums.
 */
#define PEER_LP_ITERS 6000u
#define PEER_LP_TOKENS 8u

/* The reference sum of the protocol over @p items items and @p stages
 * stages, computed by a plain loop (slow: items * stages * 10 us). */
uint64_t peer_lp_reference(uint64_t items, unsigned stages);

/* The workload name of an lp row: "lp8s", "lp16p", ... */
const char *peer_lp_name(unsigned stages, int parallel);

#ifdef __cplusplus
}
#endif

#endif /* PEER_COMMON_H */
