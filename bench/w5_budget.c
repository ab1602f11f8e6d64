/*
 * para-bench: workload w5, back-pressure (the benchmark contract
 * (BENCHMARKS.md)).
 *
 * The source allocates a 4096-byte buffer per item and fills it
 * (memset(buf, i & 0xff, 4096)); a parallel stage computes
 * spin(buf[0] + i, 500); a serial sink sums the results and frees the
 * buffers. The buffers live outside para's batches, so the source declares
 * them (item_bytes = 4096) and the memory policy counts them.
 *
 *   seq        the loop: malloc, memset, spin, add, free.
 *   bounded    memaware with a 64 MiB budget (run first: peak RSS is a
 *              process-wide high-water mark, so the smaller one goes first).
 *   unbounded  memaware with the budget off and no batch limit.
 *   bounded-dhondt  the 64 MiB budget under the dhondt policy.
 *
 * Each para variant has a runtime of its own (attr.mem_budget differs).
 * The rows report peak_rss_mb, the process's high-water mark after the
 * variant, and the stats line on stderr gives para's own peak bytes.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define W5_ITEMS 500000u
#define W5_QUICK 25000u
#define W5_BUF 4096u
#define W5_SPIN 500u
#define W5_BUDGET ((size_t)64 << 20)

struct w5_item {
    unsigned char *buf;
    uint64_t i; /* source: the index; after the map: the spin result */
};

struct w5_state {
    uint64_t n;
    uint64_t next;   /* the source's cursor */
    uint64_t sum;    /* the sink's */
    uint64_t expect; /* set by w5_seq() */
};

static int w5_source(void *ctx, void *out, size_t cap, size_t *written)
{
    struct w5_state *st = ctx;
    struct w5_item *o = out;
    size_t k = 0;
    for (; k < cap && st->next < st->n; k++, st->next++) {
        unsigned char *buf = malloc(W5_BUF);
        if (buf == NULL)
            return -1;
        memset(buf, (int)(st->next & 0xff), W5_BUF);
        o[k] = (struct w5_item){buf, st->next};
    }
    *written = k;
    return 0;
}

static int w5_map(void *ctx, const void *in, void *out)
{
    (void)ctx;
    const struct w5_item *it = in;
    struct w5_item *o = out;
    o->buf = it->buf;
    o->i = spin(it->buf[0] + it->i, W5_SPIN);
    return 0;
}

static int w5_sink(void *ctx, const void *in)
{
    struct w5_state *st = ctx;
    const struct w5_item *it = in;
    st->sum += it->i;
    free(it->buf);
    return 0;
}

static int w5_seq(void *state, bench_row_t *row)
{
    struct w5_state *st = state;
    (void)row;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < st->n; i++) {
        unsigned char *buf = malloc(W5_BUF);
        if (buf == NULL)
            return 1;
        memset(buf, (int)(i & 0xff), W5_BUF);
        /* The buffer must be really written and read: an empty asm with
         * the pointer as input keeps the compiler from folding it away. */
        __asm__ volatile("" : : "r"(buf) : "memory");
        sum += spin(buf[0] + i, W5_SPIN);
        free(buf);
    }
    st->expect = sum;
    return 0;
}

static int w5_build(para_graph_t *g, void *state)
{
    struct w5_state *st = state;
    st->next = 0;
    st->sum = 0;
    para_node_t *src, *map, *sink;
    para_node_desc_t sd = {.name = "alloc",
                           .out_size = sizeof(struct w5_item),
                           .source = w5_source,
                           .ctx = st,
                           .item_bytes = W5_BUF};
    para_node_desc_t md = {.name = "spin",
                           .in_size = sizeof(struct w5_item),
                           .out_size = sizeof(struct w5_item),
                           .map = w5_map,
                           .item_bytes = W5_BUF};
    int rc;
    if ((rc = para_graph_add(g, &sd, &src)) != 0 ||
        (rc = para_graph_add(g, &md, &map)) != 0 ||
        (rc = para_graph_add_sink(g, "sum-free", sizeof(struct w5_item),
                                  w5_sink, st, PARA_NODE_SERIAL, &sink)) != 0 ||
        (rc = para_graph_connect(g, src, map)) != 0 ||
        (rc = para_graph_connect(g, map, sink)) != 0)
        return rc;
    return 0;
}

static void w5_check(void *state, bench_row_t *row)
{
    struct w5_state *st = state;
    if (st->sum != st->expect)
        bench_fail(row, "sum %llu, expected %llu", (unsigned long long)st->sum,
                   (unsigned long long)st->expect);
}

static void w5_variant(const bench_cfg_t *cfg, struct w5_state *st,
                       bench_row_t *row, const char *policy, size_t budget)
{
    para_runtime_attr_t a;
    if (para_runtime_attr_init(&a) != 0)
        fprintf(stderr, "para-bench: a PARA_* variable does not parse\n");
    a.workers = cfg->threads;
    a.policy = policy;
    a.mem_budget = budget;
    a.max_batches = 0;
    bench_cfg_t c = *cfg;
    if (para_runtime_create(&c.rt, &a) != 0) {
        bench_fail(row, "cannot create the runtime");
        return;
    }
    static const bench_graph_ops_t ops = {w5_build, w5_check};
    bench_time_graph(&c, &ops, st, row);
    para_stats_t s;
    if (para_runtime_stats(c.rt, &s) == 0)
        fprintf(stderr,
                "w5 %s: para peak bytes %.1f MiB (budget %s), sources held "
                "%.1f ms\n",
                row->variant, (double)s.peak_bytes / (1 << 20),
                budget == SIZE_MAX ? "off" : "64 MiB",
                (double)s.source_hold_ns / 1e6);
    if (para_runtime_destroy(c.rt) != 0)
        bench_fail(row, "runtime destroy failed");
}

int bench_w5(const bench_cfg_t *cfg)
{
    struct w5_state st = {.n = cfg->quick ? W5_QUICK : W5_ITEMS};
    bench_row_t seq, bounded, unbounded;
    bench_row_init(&seq, "w5", "seq", st.n, 1);
    bench_time(cfg, w5_seq, &st, &seq);
    seq.seq_seconds = seq.seconds;
    bench_print_row(&seq);

    bench_row_init(&bounded, "w5", "bounded", st.n, cfg->threads);
    bounded.seq_seconds = seq.seconds;
    w5_variant(cfg, &st, &bounded, "memaware", W5_BUDGET);
    bench_print_row(&bounded);

    bench_row_init(&unbounded, "w5", "unbounded", st.n, cfg->threads);
    unbounded.seq_seconds = seq.seconds;
    w5_variant(cfg, &st, &unbounded, "memaware", SIZE_MAX);
    bench_print_row(&unbounded);

    bench_row_t dh;
    bench_row_init(&dh, "w5", "bounded-dhondt", st.n, cfg->threads);
    dh.seq_seconds = seq.seconds;
    w5_variant(cfg, &st, &dh, "dhondt", W5_BUDGET);
    bench_print_row(&dh);
    return seq.ok && bounded.ok && unbounded.ok && dh.ok ? 0 : 1;
}
