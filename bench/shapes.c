/*
 * para-bench: w12, w13 and w14, the graph shapes that cost a runtime more
 * than its steady state does.
 *
 *   w12  short runs: one runtime, one graph built once and run again and
 *        again: range 0..500 -> parallel spin(i,32) -> serial sink sum.
 *        Each run is timed alone; the rows give the median and the p99 of
 *        the time per run, beside the same loop inline (seq).
 *   w13  large items: a serial source fills item i (32 KiB) with the bytes
 *        (i + j) & 0xff -> parallel 64-bit FNV-1a over the item's bytes ->
 *        serial sink sum; peak RSS.
 *   w14  deep chain: range -> 16 parallel maps, each spin(x,25) -> serial
 *        sink sum; seq, and ideal (the 16 maps fused into one loop, split
 *        statically over plain threads, no runtime).
 *
 * Maps and sinks are per-item functions looped by para/items.h, as the
 * README teaches for items of a few nanoseconds.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "para/items.h"

#define W12_RUNS 20000u
#define W12_QUICK 2000u
#define W12_ITEMS 500u
#define W13_ITEMS 40000u
#define W13_QUICK 4000u
#define W13_BYTES 32768u
#define W14_ITEMS 1000000u
#define W14_QUICK 50000u
#define W14_STAGES 16u

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts @p v; the value at quantile @p q (0..1), nearest rank. */
static double quantile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0.0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t k = (size_t)(q * (double)n + 0.5);
    if (k > 0)
        k--;
    return v[k < n ? k : n - 1];
}

/* A serial sink: wrapping sum and count of uint64_t items. */
struct shape_sink {
    uint64_t sum;
    uint64_t count;
};

static inline int sink_item(void *ctx, const uint64_t *in)
{
    struct shape_sink *s = ctx;
    s->sum += *in;
    s->count++;
    return 0;
}
PARA_SINK_ITEMS(sink_items, uint64_t, sink_item)

static void check_sink(const struct shape_sink *s, uint64_t count, uint64_t sum,
                       bench_row_t *row)
{
    if (s->count != count)
        bench_fail(row, "sink got %llu items, expected %llu",
                   (unsigned long long)s->count, (unsigned long long)count);
    else if (s->sum != sum)
        bench_fail(row, "sum %llu, expected %llu", (unsigned long long)s->sum,
                   (unsigned long long)sum);
}

/* ---- w12: short runs ----------------------------------------------------- */

static inline int w12_item(void *ctx, const uint64_t *in, uint64_t *out)
{
    (void)ctx;
    *out = spin(*in, 32);
    return 0;
}
PARA_MAP_ITEMS(w12_map_items, uint64_t, uint64_t, w12_item)

static void w12_row(bench_row_t *row, double *per_run, size_t runs)
{
    double total = 0.0;
    for (size_t k = 0; k < runs; k++)
        total += per_run[k];
    row->seconds = total;
    double med = quantile(per_run, runs, 0.5);
    double p99 = quantile(per_run, runs, 0.99);
    snprintf(row->extra, sizeof row->extra,
             "\"us_per_run\":%.2f,\"p99_us\":%.2f", 1e6 * med, 1e6 * p99);
}

int bench_w12(const bench_cfg_t *cfg)
{
    size_t runs = cfg->quick ? W12_QUICK : W12_RUNS;
    double *t = calloc(runs, sizeof *t);
    if (t == NULL) {
        fprintf(stderr, "para-bench: w12: out of memory\n");
        return 1;
    }
    uint64_t expect = 0;
    for (uint64_t i = 0; i < W12_ITEMS; i++)
        expect += spin(i, 32);

    /* seq: the same loop inline, timed per run like para's. */
    bench_row_t seq;
    bench_row_init(&seq, "w12", "seq", (uint64_t)W12_ITEMS * runs, 1);
    for (size_t r = 0; r < runs; r++) {
        double t0 = bench_now();
        uint64_t sum = 0;
        for (uint64_t i = 0; i < W12_ITEMS; i++)
            sum += spin(i, 32);
        /* Keeps the loop: the sum is compared after the clock stops. */
        __asm__ volatile("" : : "r"(sum) : "memory");
        t[r] = bench_now() - t0;
        if (sum != expect) {
            bench_fail(&seq, "run %zu: sum %llu, expected %llu", r,
                       (unsigned long long)sum, (unsigned long long)expect);
            break;
        }
    }
    w12_row(&seq, t, runs);
    seq.seq_seconds = seq.seconds;
    bench_print_row(&seq);

    /* para: one graph, built once, run `runs` times on the same runtime. */
    bench_row_t para;
    bench_row_init(&para, "w12", "para", (uint64_t)W12_ITEMS * runs,
                   cfg->threads);
    para.seq_seconds = seq.seconds;
    struct shape_sink sink;
    para_graph_t *g = NULL;
    para_node_t *src, *map, *snk;
    int rc = para_graph_create(&g);
    if (rc == 0)
        rc = para_graph_add_range(g, "i", 0, W12_ITEMS, &src);
    if (rc == 0)
        rc = para_graph_add_map_batch(g, "spin32", 8, 8, w12_map_items, NULL,
                                      PARA_NODE_PARALLEL, &map);
    if (rc == 0)
        rc = para_graph_add_sink_batch(g, "sum", 8, sink_items, &sink,
                                       PARA_NODE_SERIAL, &snk);
    if (rc == 0 && (rc = para_graph_connect(g, src, map)) == 0)
        rc = para_graph_connect(g, map, snk);
    if (rc != 0) {
        bench_fail(&para, "building the graph: %s", para_err_name(rc));
    } else {
        unsigned handicap = cfg->handicap > 0 ? cfg->handicap : 1;
        for (size_t r = 0; r < runs && para.ok; r++) {
            t[r] = 0.0;
            /* --handicap K: K runs timed as one (each checked). */
            for (unsigned k = 0; k < handicap && para.ok; k++) {
                memset(&sink, 0, sizeof sink);
                double t0 = bench_now();
                rc = para_run(cfg->rt, g);
                t[r] += bench_now() - t0;
                if (rc != 0) {
                    bench_fail(&para, "run %zu: para_run: %s: %s", r,
                               para_err_name(rc), para_runtime_errmsg(cfg->rt));
                    break;
                }
                check_sink(&sink, W12_ITEMS, expect, &para);
            }
        }
        w12_row(&para, t, runs);
    }
    para_graph_destroy(g);
    bench_print_row(&para);
    free(t);
    return seq.ok && para.ok ? 0 : 1;
}

/* ---- w13: large items ---------------------------------------------------- */

struct w13_state {
    uint64_t n;
    uint64_t next; /* the serial source's cursor */
    uint64_t expect;
    struct shape_sink sink;
};

static void w13_fill(unsigned char *item, uint64_t i)
{
    for (uint32_t j = 0; j < W13_BYTES; j++)
        item[j] = (unsigned char)((i + j) & 0xff);
}

static uint64_t fnv1a64(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t k = 0; k < n; k++) {
        h ^= p[k];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int w13_seq(void *state, bench_row_t *row)
{
    struct w13_state *st = state;
    unsigned char *item = malloc(W13_BYTES);
    if (item == NULL) {
        bench_fail(row, "out of memory");
        return 1;
    }
    uint64_t sum = 0;
    for (uint64_t i = 0; i < st->n; i++) {
        w13_fill(item, i);
        sum += fnv1a64(item, W13_BYTES);
    }
    free(item);
    st->expect = sum;
    return 0;
}

static int w13_source(void *ctx, void *out, size_t cap, size_t *written)
{
    struct w13_state *st = ctx;
    unsigned char *p = out;
    size_t k = 0;
    for (; k < cap && st->next < st->n; k++, st->next++)
        w13_fill(p + k * W13_BYTES, st->next);
    *written = k;
    return 0;
}

static int w13_hash(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t h = fnv1a64(in, W13_BYTES);
    memcpy(out, &h, sizeof h);
    return 0;
}

static int w13_build(para_graph_t *g, void *state)
{
    struct w13_state *st = state;
    st->next = 0;
    memset(&st->sink, 0, sizeof st->sink);
    para_node_t *src, *hash, *snk;
    int rc;
    if ((rc = para_graph_add_source(g, "items", W13_BYTES, w13_source, st,
                                    &src)) != 0 ||
        (rc = para_graph_add_map(g, "fnv1a", W13_BYTES, 8, w13_hash, NULL,
                                 PARA_NODE_PARALLEL, &hash)) != 0 ||
        (rc = para_graph_add_sink_batch(g, "sum", 8, sink_items, &st->sink,
                                        PARA_NODE_SERIAL, &snk)) != 0 ||
        (rc = para_graph_connect(g, src, hash)) != 0 ||
        (rc = para_graph_connect(g, hash, snk)) != 0)
        return rc;
    return 0;
}

static void w13_check(void *state, bench_row_t *row)
{
    struct w13_state *st = state;
    check_sink(&st->sink, st->n, st->expect, row);
}

int bench_w13(const bench_cfg_t *cfg)
{
    struct w13_state st = {.n = cfg->quick ? W13_QUICK : W13_ITEMS};
    static const bench_graph_ops_t ops = {w13_build, w13_check};
    return bench_seq_para(cfg, "w13", st.n, w13_seq, &ops, &st, NULL);
}

/* ---- w14: deep chain ----------------------------------------------------- */

struct w14_state {
    uint64_t n;
    uint64_t expect;
    struct shape_sink sink;
};

static inline uint64_t w14_chain(uint64_t x)
{
    for (unsigned s = 0; s < W14_STAGES; s++)
        x = spin(x, 25);
    return x;
}

static int w14_seq(void *state, bench_row_t *row)
{
    (void)row;
    struct w14_state *st = state;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < st->n; i++)
        sum += w14_chain(i);
    st->expect = sum;
    return 0;
}

static inline int w14_item(void *ctx, const uint64_t *in, uint64_t *out)
{
    (void)ctx;
    *out = spin(*in, 25);
    return 0;
}
PARA_MAP_ITEMS(w14_map_items, uint64_t, uint64_t, w14_item)

static int w14_build(para_graph_t *g, void *state)
{
    struct w14_state *st = state;
    memset(&st->sink, 0, sizeof st->sink);
    para_node_t *prev, *next;
    int rc = para_graph_add_range(g, "i", 0, st->n, &prev);
    for (unsigned s = 0; s < W14_STAGES && rc == 0; s++) {
        char name[16];
        snprintf(name, sizeof name, "spin25-%u", s + 1);
        rc = para_graph_add_map_batch(g, name, 8, 8, w14_map_items, NULL,
                                      PARA_NODE_PARALLEL, &next);
        if (rc == 0)
            rc = para_graph_connect(g, prev, next);
        prev = next;
    }
    if (rc == 0)
        rc = para_graph_add_sink_batch(g, "sum", 8, sink_items, &st->sink,
                                       PARA_NODE_SERIAL, &next);
    if (rc == 0)
        rc = para_graph_connect(g, prev, next);
    return rc;
}

static void w14_check(void *state, bench_row_t *row)
{
    struct w14_state *st = state;
    check_sink(&st->sink, st->n, st->expect, row);
}

/* ideal: the fused loop split statically over plain threads. */
static uint64_t w14_range(uint64_t begin, uint64_t end)
{
    uint64_t sum = 0;
    for (uint64_t i = begin; i < end; i++)
        sum += w14_chain(i);
    return sum;
}

int bench_w14(const bench_cfg_t *cfg)
{
    struct w14_state st = {.n = cfg->quick ? W14_QUICK : W14_ITEMS};
    static const bench_graph_ops_t ops = {w14_build, w14_check};
    double seq_seconds = 0.0;
    int rc = bench_seq_para(cfg, "w14", st.n, w14_seq, &ops, &st, &seq_seconds);
    rc |= bench_ideal_row(cfg, "w14", st.n, w14_range, st.expect, seq_seconds);
    return rc;
}
