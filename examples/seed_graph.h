/*
 * The node functions of the original design's example (workload w3 of
 * BENCHMARKS.md), shared by examples/seed_graph.c and the tests that run the
 * same graph:
 *
 *     x -> (2x, x) -> x2 - x  \
 *                              +-> sum += y      (the sum is 0, 2N items)
 *     x -> -x                 /
 *
 * Items are 8-byte integers, except the 16-byte pair between the first two
 * maps. memcpy keeps the accesses free of alignment assumptions.
 */
#ifndef PARA_EXAMPLES_SEED_GRAPH_H
#define PARA_EXAMPLES_SEED_GRAPH_H

#include <stdint.h>
#include <string.h>

typedef struct seed_pair {
    int64_t x2, x;
} seed_pair_t;

/* What the sink accumulates; SERIAL, so no locks. */
typedef struct seed_total {
    int64_t sum;
    uint64_t count;
} seed_total_t;

/* x -> (2x, x) */
static inline int seed_pair(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t x;
    memcpy(&x, in, sizeof x);
    seed_pair_t p = {2 * (int64_t)x, (int64_t)x};
    memcpy(out, &p, sizeof p);
    return 0;
}

/* (x2, x) -> x2 - x */
static inline int seed_diff(void *ctx, const void *in, void *out)
{
    (void)ctx;
    seed_pair_t p;
    memcpy(&p, in, sizeof p);
    int64_t y = p.x2 - p.x;
    memcpy(out, &y, sizeof y);
    return 0;
}

/* x -> -x */
static inline int seed_negate(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t x;
    memcpy(&x, in, sizeof x);
    int64_t y = -(int64_t)x;
    memcpy(out, &y, sizeof y);
    return 0;
}

/* sum += y */
static inline int seed_add(void *ctx, const void *in)
{
    seed_total_t *t = ctx;
    int64_t y;
    memcpy(&y, in, sizeof y);
    t->sum += y;
    t->count++;
    return 0;
}

#endif /* PARA_EXAMPLES_SEED_GRAPH_H */
