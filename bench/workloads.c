/*
 * para-bench: workloads w1, w2, w3 and w7 of the benchmark contract
 * (BENCHMARKS.md).
 *
 * Each workload is a graph written the way a user would write it: per-item
 * node functions, no batching by hand (the runtime batches), item sizes in
 * bytes. Where the contract asks for a seq baseline, a plain loop doing the
 * same spin() calls runs first in the same process; it is both the time the
 * efficiency is measured against and the independent source of the
 * checksum the para run must reproduce.
 *
 *   w1  range i -> parallel map spin(i,16) -> serial sink sum
 *       The cost per item is tiny, so this measures per-item overhead.
 *   w2  serial callback source {i,i} -> parallel a=spin(i,200)
 *       -> parallel b=spin(a,2000) -> ORDERED sink: indices 0..N-1 in order,
 *       sum of b. The index travels in the item so that the sink can check
 *       the order itself rather than trust the runtime.
 *   w3  the seed graph: x -> (x -> (2x,x) -> 2x-x) and (x -> -x), both into
 *       one serial sink; the sum is 0, the sum of squares is 2 * sum(x*x)
 *       and the sink sees 2N items. seq is the same functions in one
 *       fused loop on one thread.
 *   w7  range i -> parallel y=spin(i,300) -> SERIAL stateful map
 *       hist[y&1023]++, spin(y,50) -> serial sink sum. The histogram is
 *       compared bin by bin with the one the seq loop builds.
 *
 * Items are read and written with memcpy: the API passes untyped pointers
 * into the runtime's batch memory and promises no alignment, and memcpy of
 * 8 or 16 bytes compiles to plain loads and stores anyway.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"

/* Item counts of the benchmark contract (BENCHMARKS.md): full / --quick. */
#define W1_ITEMS 2000000u
#define W1_QUICK 100000u
#define W2_ITEMS 200000u
#define W2_QUICK 10000u
#define W3_ITEMS 10000000u
#define W3_QUICK 500000u
#define W7_ITEMS 1000000u
#define W7_QUICK 50000u

#define W7_BINS 1024u

static inline uint64_t load_u64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store_u64(void *p, uint64_t v)
{
    memcpy(p, &v, sizeof v);
}

/* A serial sink that sums uint64_t items (wrapping) and counts them. The
 * count catches lost or duplicated items that a sum might not. */
struct sum_sink {
    uint64_t sum;
    uint64_t count;
};

static int sum_sink_fn(void *ctx, const void *in)
{
    struct sum_sink *s = ctx;
    s->sum += load_u64(in);
    s->count++;
    return 0;
}

static void check_sum(const struct sum_sink *s, uint64_t count, uint64_t sum,
                      bench_row_t *row)
{
    if (s->count != count)
        bench_fail(row, "sink got %llu items, expected %llu",
                   (unsigned long long)s->count, (unsigned long long)count);
    else if (s->sum != sum)
        bench_fail(row, "sum %llu, expected %llu", (unsigned long long)s->sum,
                   (unsigned long long)sum);
}

/* ---- w1: fine-grain ---------------------------------------------------- */

struct w1_state {
    uint64_t n;
    uint64_t expect; /* set by w1_seq() */
    struct sum_sink sink;
};

static int w1_seq(void *state, bench_row_t *row)
{
    (void)row;
    struct w1_state *st = state;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < st->n; i++)
        sum += spin(i, 16);
    st->expect = sum;
    return 0;
}

static int w1_map(void *ctx, const void *in, void *out)
{
    (void)ctx;
    store_u64(out, spin(load_u64(in), 16));
    return 0;
}

/* The same per-item code, looped by para/items.h in this translation unit
 * so that the compiler inlines it (the recommended form for items of a few
 * nanoseconds). */
static inline int w1_item(void *ctx, const uint64_t *in, uint64_t *out)
{
    (void)ctx;
    *out = spin(*in, 16);
    return 0;
}
PARA_MAP_ITEMS(w1_map_items, uint64_t, uint64_t, w1_item)

/* The serial sink keeps its sum and count in registers over a batch
 * (PARA_SINK_ITEMS_STATE), as the peers' sink does with a local: with
 * PARA_SINK_ITEMS both went to memory after every item. */
static inline int w1_sum_item(struct sum_sink *s, const uint64_t *in)
{
    s->sum += *in;
    s->count++;
    return 0;
}
PARA_SINK_ITEMS_STATE(w1_sum_items, uint64_t, struct sum_sink, w1_sum_item)

/* fnptr: 1 = per-item function pointers, 0 = para/items.h adaptors. */
static int w1_build_graph(para_graph_t *g, struct w1_state *st, int fnptr)
{
    memset(&st->sink, 0, sizeof st->sink);
    para_node_t *src, *map, *sink;
    int rc;
    if ((rc = para_graph_add_range(g, "i", 0, st->n, &src)) != 0)
        return rc;
    if (fnptr)
        rc = para_graph_add_map(g, "spin16", 8, 8, w1_map, NULL,
                                PARA_NODE_PARALLEL, &map);
    else
        rc = para_graph_add_map_batch(g, "spin16", 8, 8, w1_map_items, NULL,
                                      PARA_NODE_PARALLEL, &map);
    if (rc != 0)
        return rc;
    if (fnptr)
        rc = para_graph_add_sink(g, "sum", 8, sum_sink_fn, &st->sink,
                                 PARA_NODE_SERIAL, &sink);
    else
        rc = para_graph_add_sink_batch(g, "sum", 8, w1_sum_items, &st->sink,
                                       PARA_NODE_SERIAL, &sink);
    if (rc != 0 || (rc = para_graph_connect(g, src, map)) != 0 ||
        (rc = para_graph_connect(g, map, sink)) != 0)
        return rc;
    return 0;
}

static int w1_build(para_graph_t *g, void *state)
{
    return w1_build_graph(g, state, 0);
}

static int w1_build_fnptr(para_graph_t *g, void *state)
{
    return w1_build_graph(g, state, 1);
}

static void w1_check(void *state, bench_row_t *row)
{
    struct w1_state *st = state;
    check_sum(&st->sink, st->n, st->expect, row);
}

/*
 * ideal: the seq loop split statically over plain pthreads, no runtime at
 * all. It is the ceiling any scheduler can reach on this machine: where the
 * "cores" are SMT siblings sharing one multiplier (as on the development
 * VM), two copies of the spin(i,16) loop each run at half speed, and this
 * row shows it.
 */
static uint64_t w1_range(uint64_t begin, uint64_t end)
{
    uint64_t sum = 0;
    for (uint64_t i = begin; i < end; i++)
        sum += spin(i, 16);
    return sum;
}

int bench_w1(const bench_cfg_t *cfg)
{
    struct w1_state st = {.n = cfg->quick ? W1_QUICK : W1_ITEMS};
    static const bench_graph_ops_t ops = {w1_build, w1_check};
    double seq_seconds = 0;
    int rc = bench_seq_para(cfg, "w1", st.n, w1_seq, &ops, &st, &seq_seconds);

    /* The same graph with per-item function pointers, for comparison. */
    static const bench_graph_ops_t fnptr_ops = {w1_build_fnptr, w1_check};
    bench_row_t fp;
    bench_row_init(&fp, "w1", "para-fnptr", st.n, cfg->threads);
    fp.seq_seconds = seq_seconds;
    bench_time_graph(cfg, &fnptr_ops, &st, &fp);
    bench_print_row(&fp);
    rc |= !fp.ok;

    rc |= bench_ideal_row(cfg, "w1", st.n, w1_range, st.expect, seq_seconds);
    return rc;
}

/* ---- w2: ordered pipeline ---------------------------------------------- */

/* The index rides along with the value so the ORDERED sink can verify the
 * order on its own. */
struct w2_item {
    uint64_t i;
    uint64_t v;
};

struct w2_state {
    uint64_t n;
    uint64_t expect; /* set by w2_seq() */
    /* source: next index to emit */
    uint64_t next;
    /* sink */
    uint64_t expected; /* index the next item must carry */
    uint64_t sum;
    uint64_t count;
    uint64_t out_of_order;          /* items whose index was not `expected` */
    uint64_t bad_expected, bad_got; /* the first such item */
};

static int w2_seq(void *state, bench_row_t *row)
{
    (void)row;
    struct w2_state *st = state;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < st->n; i++)
        sum += spin(spin(i, 200), 2000);
    st->expect = sum;
    return 0;
}

/* A user callback source rather than para_graph_add_range(): the benchmark
 * contract's "serial in-order source". It is called by one worker at a time, so
 * `next` needs no lock. */
static int w2_source(void *ctx, void *out, size_t cap, size_t *n_written)
{
    struct w2_state *st = ctx;
    uint64_t left = st->n - st->next;
    size_t k = left < cap ? (size_t)left : cap;
    unsigned char *p = out;
    for (size_t j = 0; j < k; j++) {
        struct w2_item it = {st->next + j, st->next + j};
        memcpy(p + j * sizeof it, &it, sizeof it);
    }
    st->next += k;
    *n_written = k;
    return 0;
}

static int w2_map_a(void *ctx, const void *in, void *out)
{
    (void)ctx;
    struct w2_item it;
    memcpy(&it, in, sizeof it);
    it.v = spin(it.v, 200);
    memcpy(out, &it, sizeof it);
    return 0;
}

static int w2_map_b(void *ctx, const void *in, void *out)
{
    (void)ctx;
    struct w2_item it;
    memcpy(&it, in, sizeof it);
    it.v = spin(it.v, 2000);
    memcpy(out, &it, sizeof it);
    return 0;
}

/* Records disorder instead of failing the run: a precise "expected 17, got
 * 20" is worth more than PARA_ENODE. Resynchronises on the item seen, so one
 * swap counts as a couple of errors, not as every item after it. */
static int w2_sink(void *ctx, const void *in)
{
    struct w2_state *st = ctx;
    struct w2_item it;
    memcpy(&it, in, sizeof it);
    if (it.i != st->expected) {
        if (st->out_of_order++ == 0) {
            st->bad_expected = st->expected;
            st->bad_got = it.i;
        }
    }
    st->expected = it.i + 1;
    st->sum += it.v;
    st->count++;
    return 0;
}

static int w2_build(para_graph_t *g, void *state)
{
    struct w2_state *st = state;
    st->next = 0;
    st->expected = 0;
    st->sum = 0;
    st->count = 0;
    st->out_of_order = 0;
    para_node_t *src, *a, *b, *sink;
    const size_t sz = sizeof(struct w2_item);
    int rc;
    if ((rc = para_graph_add_source(g, "i", sz, w2_source, st, &src)) != 0 ||
        (rc = para_graph_add_map(g, "spin200", sz, sz, w2_map_a, NULL,
                                 PARA_NODE_PARALLEL, &a)) != 0 ||
        (rc = para_graph_add_map(g, "spin2000", sz, sz, w2_map_b, NULL,
                                 PARA_NODE_PARALLEL, &b)) != 0 ||
        (rc = para_graph_add_sink(g, "ordered_sum", sz, w2_sink, st,
                                  PARA_NODE_ORDERED, &sink)) != 0 ||
        (rc = para_graph_connect(g, src, a)) != 0 ||
        (rc = para_graph_connect(g, a, b)) != 0 ||
        (rc = para_graph_connect(g, b, sink)) != 0)
        return rc;
    return 0;
}

static void w2_check(void *state, bench_row_t *row)
{
    struct w2_state *st = state;
    if (st->out_of_order != 0)
        bench_fail(row,
                   "order: %llu items out of order, first: expected index "
                   "%llu, got %llu",
                   (unsigned long long)st->out_of_order,
                   (unsigned long long)st->bad_expected,
                   (unsigned long long)st->bad_got);
    else if (st->count != st->n)
        bench_fail(row, "sink got %llu items, expected %llu",
                   (unsigned long long)st->count, (unsigned long long)st->n);
    else if (st->sum != st->expect)
        bench_fail(row, "sum %llu, expected %llu", (unsigned long long)st->sum,
                   (unsigned long long)st->expect);
}

int bench_w2(const bench_cfg_t *cfg)
{
    struct w2_state st = {.n = cfg->quick ? W2_QUICK : W2_ITEMS};
    static const bench_graph_ops_t ops = {w2_build, w2_check};
    return bench_seq_para(cfg, "w2", st.n, w2_seq, &ops, &st, NULL);
}

/* ---- w3: the seed graph ------------------------------------------------ */

/*
 * Values are int64 as in the original example. x < 10^7, so 2x and every
 * partial sum (at most sum of all x, about 5*10^13) fit easily; the sink
 * still adds in uint64_t, where wrapping is defined and gives the same bits
 * as the two's-complement int64 sum, so no interleaving of the two branches
 * can make the sum undefined behaviour.
 */
struct w3_pair {
    int64_t x2;
    int64_t x;
};

/* The serial sink of w3: sum += y and sq += y*y (wrapping uint64), and the
 * item count. The two branches cancel in the sum, so a lost or doubled
 * batch of x and -x alike would leave it 0; sq and the count cannot be
 * fooled that way. */
struct w3_sink {
    uint64_t sum;
    uint64_t sq;
    uint64_t count;
};

struct w3_state {
    uint64_t n;
    uint64_t expect_sq; /* 2 * sum of x*x, wrapping; set by w3_expect() */
    struct w3_sink sink;
};

static int w3_sink_fn(void *ctx, const void *in)
{
    struct w3_sink *s = ctx;
    uint64_t y = load_u64(in);
    s->sum += y;
    s->sq += y * y;
    s->count++;
    return 0;
}

static int w3_pair_fn(void *ctx, const void *in, void *out)
{
    (void)ctx;
    int64_t x = (int64_t)load_u64(in);
    struct w3_pair p = {2 * x, x};
    memcpy(out, &p, sizeof p);
    return 0;
}

static int w3_diff_fn(void *ctx, const void *in, void *out)
{
    (void)ctx;
    struct w3_pair p;
    memcpy(&p, in, sizeof p);
    int64_t y = p.x2 - p.x;
    memcpy(out, &y, sizeof y);
    return 0;
}

static int w3_neg_fn(void *ctx, const void *in, void *out)
{
    (void)ctx;
    int64_t x;
    memcpy(&x, in, sizeof x);
    int64_t y = -x;
    memcpy(out, &y, sizeof y);
    return 0;
}

/* The same per-item work as typed functions, inlined into batch loops
 * (para/items.h); the typed loads and stores let the compiler keep a pair
 * in registers where the generic functions above copy bytes. */
static inline int w3_pair_item(void *ctx, const uint64_t *in,
                               struct w3_pair *out)
{
    (void)ctx;
    int64_t x = (int64_t)*in;
    out->x2 = 2 * x;
    out->x = x;
    return 0;
}
static inline int w3_diff_item(void *ctx, const struct w3_pair *in,
                               uint64_t *out)
{
    (void)ctx;
    *out = (uint64_t)(in->x2 - in->x);
    return 0;
}
static inline int w3_neg_item(void *ctx, const uint64_t *in, uint64_t *out)
{
    (void)ctx;
    *out = (uint64_t)(-(int64_t)*in);
    return 0;
}
static inline int w3_sum_item(struct w3_sink *s, const uint64_t *in)
{
    return w3_sink_fn(s, in);
}
PARA_MAP_ITEMS(w3_pair_items, uint64_t, struct w3_pair, w3_pair_item)
PARA_MAP_ITEMS(w3_diff_items, struct w3_pair, uint64_t, w3_diff_item)
PARA_MAP_ITEMS(w3_neg_items, uint64_t, uint64_t, w3_neg_item)
PARA_SINK_ITEMS_STATE(w3_sum_items, uint64_t, struct w3_sink, w3_sum_item)

/* fnptr: 1 = per-item function pointers (one indirect call per item and
 * node), 0 = the para/items.h adaptors. */
static int w3_build_graph(para_graph_t *g, struct w3_state *st, int fnptr)
{
    memset(&st->sink, 0, sizeof st->sink);
    para_node_t *x, *pair, *diff, *neg, *sum;
    int rc;
    if ((rc = para_graph_add_range(g, "x", 0, st->n, &x)) != 0)
        return rc;
    if (fnptr)
        rc = para_graph_add_map(g, "pair", 8, sizeof(struct w3_pair),
                                w3_pair_fn, NULL, PARA_NODE_PARALLEL, &pair);
    else
        rc = para_graph_add_map_batch(g, "pair", 8, sizeof(struct w3_pair),
                                      w3_pair_items, NULL, PARA_NODE_PARALLEL,
                                      &pair);
    if (rc != 0)
        return rc;
    if (fnptr)
        rc = para_graph_add_map(g, "diff", sizeof(struct w3_pair), 8,
                                w3_diff_fn, NULL, PARA_NODE_PARALLEL, &diff);
    else
        rc = para_graph_add_map_batch(g, "diff", sizeof(struct w3_pair), 8,
                                      w3_diff_items, NULL, PARA_NODE_PARALLEL,
                                      &diff);
    if (rc != 0)
        return rc;
    if (fnptr)
        rc = para_graph_add_map(g, "neg", 8, 8, w3_neg_fn, NULL,
                                PARA_NODE_PARALLEL, &neg);
    else
        rc = para_graph_add_map_batch(g, "neg", 8, 8, w3_neg_items, NULL,
                                      PARA_NODE_PARALLEL, &neg);
    if (rc != 0)
        return rc;
    if (fnptr)
        rc = para_graph_add_sink(g, "sum", 8, w3_sink_fn, &st->sink,
                                 PARA_NODE_SERIAL, &sum);
    else
        rc = para_graph_add_sink_batch(g, "sum", 8, w3_sum_items, &st->sink,
                                       PARA_NODE_SERIAL, &sum);
    if (rc != 0 || (rc = para_graph_connect(g, x, pair)) != 0 ||
        (rc = para_graph_connect(g, pair, diff)) != 0 ||
        (rc = para_graph_connect(g, x, neg)) != 0 ||
        (rc = para_graph_connect(g, diff, sum)) != 0 ||
        (rc = para_graph_connect(g, neg, sum)) != 0)
        return rc;
    return 0;
}

static int w3_build(para_graph_t *g, void *state)
{
    return w3_build_graph(g, state, 0);
}

static int w3_build_fnptr(para_graph_t *g, void *state)
{
    return w3_build_graph(g, state, 1);
}

static void w3_check(void *state, bench_row_t *row)
{
    struct w3_state *st = state;
    const struct w3_sink *k = &st->sink;
    if (k->count != 2 * st->n)
        bench_fail(row, "sink got %llu items, expected %llu",
                   (unsigned long long)k->count,
                   (unsigned long long)(2 * st->n));
    else if (k->sum != 0)
        bench_fail(row, "sum %lld, expected 0", (long long)k->sum);
    else if (k->sq != st->expect_sq)
        bench_fail(row, "sum of squares %llu, expected %llu",
                   (unsigned long long)k->sq,
                   (unsigned long long)st->expect_sq);
}

/* The expected sum of squares, computed apart from any graph: each x
 * reaches the sink twice (as x and as -x), both squaring to x*x. */
static void w3_expect(struct w3_state *st)
{
    uint64_t sq = 0;
    for (uint64_t x = 0; x < st->n; x++)
        sq += x * x;
    st->expect_sq = 2 * sq;
}

/* seq: one thread's fused loop over the same per-item functions, in the
 * order a sequential program would call them: the fastest the graph's
 * work can go on one core, which the para row is compared with. */
static int w3_seq(void *state, bench_row_t *row)
{
    struct w3_state *st = state;
    memset(&st->sink, 0, sizeof st->sink);
    for (uint64_t i = 0; i < st->n; i++) {
        uint64_t x = i, y;
        struct w3_pair p;
        w3_pair_item(NULL, &x, &p);
        w3_diff_item(NULL, &p, &y);
        w3_sum_item(&st->sink, &y);
        w3_neg_item(NULL, &x, &y);
        w3_sum_item(&st->sink, &y);
    }
    w3_check(st, row);
    return row->ok ? 0 : 1;
}

/* ideal: the seq loop split statically over plain pthreads, each slice
 * with a sink of its own (the graph's serial sink has one; no scheduler can
 * beat a split that needs none). A slice returns its sum of squares plus
 * its sum (0 when every x met its -x) plus its count beyond the 2 items per
 * x it should have seen, so the total is 2 * sum of x*x only if all three
 * are right. */
static uint64_t w3_range(uint64_t begin, uint64_t end)
{
    struct w3_sink k = {0, 0, 0};
    for (uint64_t i = begin; i < end; i++) {
        uint64_t x = i, y;
        struct w3_pair p;
        w3_pair_item(NULL, &x, &p);
        w3_diff_item(NULL, &p, &y);
        w3_sum_item(&k, &y);
        w3_neg_item(NULL, &x, &y);
        w3_sum_item(&k, &y);
    }
    return k.sq + k.sum + (k.count - 2 * (end - begin));
}

int bench_w3(const bench_cfg_t *cfg)
{
    struct w3_state st = {.n = cfg->quick ? W3_QUICK : W3_ITEMS};
    w3_expect(&st);
    static const bench_graph_ops_t ops = {w3_build, w3_check};
    /* items is N source items, as the contract counts them (the sink sees
     * 2N). The seq row's efficiency compares para's 2 threads with it. */
    double seq_seconds = 0.0;
    int failed =
        bench_seq_para(cfg, "w3", st.n, w3_seq, &ops, &st, &seq_seconds);
    static const bench_graph_ops_t fnptr_ops = {w3_build_fnptr, w3_check};
    bench_row_t fp;
    bench_row_init(&fp, "w3", "para-fnptr", st.n, cfg->threads);
    fp.seq_seconds = seq_seconds;
    bench_time_graph(cfg, &fnptr_ops, &st, &fp);
    bench_print_row(&fp);
    failed |= !fp.ok;
    failed |=
        bench_ideal_row(cfg, "w3", st.n, w3_range, st.expect_sq, seq_seconds);
    return failed ? 1 : 0;
}

/* ---- w7: stateful bottleneck ------------------------------------------- */

struct w7_state {
    uint64_t n;
    uint64_t expect;            /* set by w7_seq() */
    uint64_t seq_hist[W7_BINS]; /* set by w7_seq() */
    uint64_t hist[W7_BINS];     /* the SERIAL node's state */
    struct sum_sink sink;
};

static int w7_seq(void *state, bench_row_t *row)
{
    (void)row;
    struct w7_state *st = state;
    memset(st->seq_hist, 0, sizeof st->seq_hist);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < st->n; i++) {
        uint64_t y = spin(i, 300);
        st->seq_hist[y & (W7_BINS - 1)]++;
        sum += spin(y, 50);
    }
    st->expect = sum;
    return 0;
}

static int w7_map_y(void *ctx, const void *in, void *out)
{
    (void)ctx;
    store_u64(out, spin(load_u64(in), 300));
    return 0;
}

/* SERIAL: one worker at a time, so the histogram needs no atomics. */
static int w7_hist(void *ctx, const void *in, void *out)
{
    uint64_t *hist = ctx;
    uint64_t y = load_u64(in);
    hist[y & (W7_BINS - 1)]++;
    store_u64(out, spin(y, 50));
    return 0;
}

static int w7_build(para_graph_t *g, void *state)
{
    struct w7_state *st = state;
    memset(st->hist, 0, sizeof st->hist);
    memset(&st->sink, 0, sizeof st->sink);
    para_node_t *src, *y, *hist, *sink;
    int rc;
    if ((rc = para_graph_add_range(g, "i", 0, st->n, &src)) != 0 ||
        (rc = para_graph_add_map(g, "spin300", 8, 8, w7_map_y, NULL,
                                 PARA_NODE_PARALLEL, &y)) != 0 ||
        (rc = para_graph_add_map(g, "hist", 8, 8, w7_hist, st->hist,
                                 PARA_NODE_SERIAL, &hist)) != 0 ||
        (rc = para_graph_add_sink(g, "sum", 8, sum_sink_fn, &st->sink,
                                  PARA_NODE_SERIAL, &sink)) != 0 ||
        (rc = para_graph_connect(g, src, y)) != 0 ||
        (rc = para_graph_connect(g, y, hist)) != 0 ||
        (rc = para_graph_connect(g, hist, sink)) != 0)
        return rc;
    return 0;
}

static void w7_check(void *state, bench_row_t *row)
{
    struct w7_state *st = state;
    uint64_t total = 0;
    for (unsigned b = 0; b < W7_BINS; b++)
        total += st->hist[b];
    if (total != st->n) {
        bench_fail(row, "histogram total %llu, expected %llu",
                   (unsigned long long)total, (unsigned long long)st->n);
        return;
    }
    for (unsigned b = 0; b < W7_BINS; b++) {
        if (st->hist[b] != st->seq_hist[b]) {
            bench_fail(row, "histogram bin %u: %llu, expected %llu", b,
                       (unsigned long long)st->hist[b],
                       (unsigned long long)st->seq_hist[b]);
            return;
        }
    }
    check_sum(&st->sink, st->n, st->expect, row);
}

int bench_w7(const bench_cfg_t *cfg)
{
    struct w7_state st = {.n = cfg->quick ? W7_QUICK : W7_ITEMS};
    static const bench_graph_ops_t ops = {w7_build, w7_check};
    double seq_seconds = 0.0;
    int failed =
        bench_seq_para(cfg, "w7", st.n, w7_seq, &ops, &st, &seq_seconds);
    return failed | bench_policy_rows(cfg, "w7", st.n, &ops, &st, seq_seconds);
}
