/*
 * Differential test of the runtime: thousands of random graphs, each run by
 * para and by a sequential reference interpreter of the same graph, compared
 * item for item at every sink.
 *
 * Generation. A graph has 1-3 sources (range, array, callback), 1-10 inner
 * nodes (map / filter / flat-map, per-item or batch form) and 1-3 sinks
 * (per-item, batch, collect), plus extra sinks when needed to give every
 * node an output. Nodes are created in a topological order and edges only
 * go forward, so the graph is a DAG; fan-out and merges are common. Items
 * are uint64_t or a 16-byte struct, chosen per edge group (every input of a
 * node has the same size). Flags are PARALLEL, SERIAL or ORDERED (ORDERED
 * only where a single source reaches the node); priorities are random. The
 * number of paths from the sources to a node, P(v), is capped so that the
 * work stays small. Nodes are added to the para graph in a random order and
 * the edges connected in a random order (the order of the connect calls for
 * one node defines its input numbering, which the reference follows).
 *
 * Node functions are pure functions of the item (see apply()), except that
 * some ORDERED inner nodes are stateful: the index of the item in the node's
 * processing order feeds the function, so the output proves the order in
 * which the node saw its items. Serial nodes also check that no two calls
 * overlap (an atomic flag) and bump a plain counter, so ThreadSanitizer sees
 * any missing happens-before edge between their calls.
 *
 * Reference. With a fixed batch size B the runtime's batches are known
 * exactly (runtime.h, graph.h): range and array sources cut item indices into
 * [kB, (k+1)B), a callback source makes one batch per call with cap B, every
 * other node turns each input batch into one output batch with the same
 * sequence range, and the path index of a batch arriving at v through its
 * input j is offset_j + p, offset_j being the sum of P over v's inputs before
 * j. ORDERED nodes process batches by (seq_begin, path). The reference
 * computes every node's batches in topological order, so an ORDERED sink's
 * observed sequence is fully determined; other sinks are compared as
 * multisets, and batch-form sinks also as multisets of batches (each call
 * must receive exactly one whole batch). With adaptive batches (B = 0) the
 * boundaries are unknown: ORDERED sinks are checked in order only when a
 * single path reaches them, and stateful nodes are only generated where
 * P(v) = 1. Per-node statistics (items in and out) are checked too.
 *
 * Configurations: workers 1..4, batch_items in {1, 2, 3, 7, 64, 1000, 0},
 * max_batches in {0, 1, 2, 5, 64}, any registered policy, and
 * mem_budget in {1 B, 4 KiB, 64 KiB, 1 MiB, default}. Runs of eight consecutive
 * graphs share a runtime; some graphs are run a second time on another runtime.
 *
 * Every random graph runs with fusion (fuse.h: fused chains, sources left
 * unmaterialised, fused fan-outs, serial tails run inline by the node
 * before them, or held back while busy) and without, and the test fails
 * if fused chains, fused fan-outs, serial tails or held-back batches never
 * showed up.
 *
 * The three tests: random graphs checked in full; the same with one node
 * failing at a random item (para_run() must return PARA_ENODE naming the
 * node, and the runtime and graph must work afterwards); invalid graphs
 * (PARA_ESIZE, PARA_EUNCONNECTED, PARA_ECYCLE, PARA_EORDER).
 *
 * Environment: PARA_DIFF_SEED (default: from the clock; always printed),
 * PARA_DIFF_GRAPHS (default 1500 random graphs; the failure and invalid
 * tests run a fifth and a tenth of that), PARA_DIFF_ONLY=i (run only graph i
 * of each test, to reproduce a failure), PARA_DIFF_WATCHDOG_S (a run that
 * takes longer aborts with the graph printed; default 30 s times
 * PARA_TEST_TIMEOUT_MULT). Every failure prints the seed, the graph, the
 * configuration and the command line that reproduces it.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "para.h"
#include "policy.h"
#include "scheduler.h"

#define MAX_NODES 40
#define MAX_PREDS 8
#define MAX_EDGES (MAX_NODES * MAX_PREDS)
#define MAX_FANOUT 3     /* flat-map: at most this many outputs per item */
#define INNER_PATH_CAP 8 /* P(v) of inner nodes */
#define SINK_PATH_CAP 16 /* P(v) of sinks */
#define BLOCK 8          /* consecutive graphs sharing a runtime */
#define DEFAULT_GRAPHS 1500u
#define SECOND_GRAPH 1000000u /* index offset of a test's extra graphs */

/* ---- hashing and the PRNG ---------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct rng {
    uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r)
{
    r->s += 0x9E3779B97F4A7C15ull;
    return mix64(r->s);
}

static unsigned rng_below(rng_t *r, unsigned n)
{
    return n == 0 ? 0 : (unsigned)(rng_next(r) % n);
}

static bool rng_chance(rng_t *r, unsigned percent)
{
    return rng_below(r, 100) < percent;
}

/* ---- items --------------------------------------------------------------- */

/* Canonical form of an item: 8-byte items are {a, 0}. */
typedef struct pair {
    uint64_t a, b;
} pair_t;

_Static_assert(sizeof(pair_t) == 16, "the wide item type is 16 bytes");

static pair_t item_load(const void *p, size_t size)
{
    pair_t x = {0, 0};
    memcpy(&x.a, p, sizeof x.a);
    if (size == 16)
        memcpy(&x.b, (const unsigned char *)p + 8, sizeof x.b);
    return x;
}

static void item_store(void *p, pair_t x, size_t size)
{
    memcpy(p, &x.a, sizeof x.a);
    if (size == 16)
        memcpy((unsigned char *)p + 8, &x.b, sizeof x.b);
}

static int cmp_pair(const void *x, const void *y)
{
    const pair_t *p = x, *q = y;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    if (p->b != q->b)
        return p->b < q->b ? -1 : 1;
    return 0;
}

typedef struct span {
    const pair_t *p;
    size_t n;
} span_t;

static int cmp_span(const void *x, const void *y)
{
    const span_t *s = x, *t = y;
    if (s->n != t->n)
        return s->n < t->n ? -1 : 1;
    for (size_t i = 0; i < s->n; i++) {
        int c = cmp_pair(&s->p[i], &t->p[i]);
        if (c != 0)
            return c;
    }
    return 0;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    assert_non_null(p);
    return p;
}

/* ---- the graph model ---------------------------------------------------- */

enum role { ROLE_RANGE, ROLE_ARRAY, ROLE_SOURCE, ROLE_INNER, ROLE_SINK };

enum kind {
    KIND_NONE,
    KIND_MAP,
    KIND_MAP_BATCH,
    KIND_FILTER,
    KIND_FLAT,
    KIND_FLAT_BATCH,
    KIND_SINK,
    KIND_SINK_BATCH,
    KIND_COLLECT,
};

static const char *const kind_names[] = {
    "src", "map", "mapb", "filter", "flat", "flatb", "sink", "sinkb", "collect",
};

static const char *const role_names[] = {"range", "array", "srcfn", "inner",
                                         "sink"};

/* A batch of the reference interpreter. */
typedef struct rbatch {
    uint64_t seq;
    uint32_t path;
    size_t n;
    pair_t *items; /* owned by the producing node's list */
} rbatch;

typedef struct blist {
    rbatch *v;
    size_t n, cap;
} blist;

static void blist_push(blist *l, rbatch b)
{
    if (l->n == l->cap) {
        l->cap = l->cap == 0 ? 16 : 2 * l->cap;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        assert_non_null(l->v);
    }
    l->v[l->n++] = b;
}

typedef struct gnode {
    /* Shape, fixed once generated. */
    enum role role;
    enum kind kind;
    char name[24];
    unsigned flags;
    int priority;
    bool wrapper; /* built with a convenience wrapper, not para_graph_add() */
    bool serial;  /* SERIAL, ORDERED, or a callback source */
    size_t in_size, out_size;
    unsigned preds[MAX_PREDS]; /* in connect order */
    unsigned n_preds, n_succs;
    uint32_t paths;   /* P(v) */
    unsigned srcmask; /* sources reaching v */

    /* Function parameters. */
    uint64_t mul, add, salt;
    unsigned modk;     /* filter: drop if hash % modk == 0; 0 keeps all */
    unsigned fanout;   /* flat-map: 0..fanout outputs per item */
    bool stateful;     /* ORDERED: the processing index feeds the function */
    bool reserve;      /* flat_map_batch: mix para_emit_reserve/para_emit;
                          filter: by batches (filter_batch) */
    bool short_writes; /* callback source: often writes less than cap */
    size_t n_items;    /* sources */
    uint64_t begin;    /* range */
    void *array;       /* array source: n_items * out_size bytes */

    /* Failure injection: fail at the call whose items reach fail_at. */
    uint64_t fail_at; /* 0: never */
    int fail_rc;
    _Atomic uint64_t fail_count;

    /* Run state. Plain fields are touched by serial nodes only. */
    uint64_t state;
    uint64_t calls;
    size_t src_pos;
    uint64_t src_calls;
    size_t bad_cap;     /* callback source: calls with cap != batch_items */
    size_t fixed_batch; /* the run's batch_items */
    _Atomic int busy;
    _Atomic unsigned overlaps;

    /* Sink records. */
    pair_t *got;
    size_t got_cap;
    _Atomic size_t got_n;
    size_t (*bounds)[2]; /* batch sinks: [first item, count] per call */
    size_t bounds_cap;
    _Atomic size_t n_bounds;
    void *collect;
    size_t collect_cap, collect_count;

    /* Reference results. */
    blist out;   /* non-sinks: output batches */
    pair_t *exp; /* sinks: input items in (seq, path) order */
    size_t exp_n;
    span_t *exp_batches; /* sinks: non-empty input batches */
    size_t exp_nb;
    uint64_t exp_in, exp_out;
    uint64_t exp_calls; /* callback source, fixed batches: calls made */

    para_node_t *h;
} gnode;

typedef struct dcfg {
    unsigned workers;
    size_t batch;
    unsigned max_batches;
    const char *policy;
    size_t mem_budget; /* memaware only; 0 = default */
} dcfg;

typedef struct dgraph {
    const char *test;
    uint64_t seed;
    unsigned index;
    dcfg cfg;
    unsigned n, n_sources, n_nonsinks;
    gnode node[MAX_NODES];
    unsigned edge_from[MAX_EDGES], edge_to[MAX_EDGES], n_edges;
    unsigned add_order[MAX_NODES];
    para_graph_t *g;
} dgraph;

static unsigned popcount(unsigned x)
{
    unsigned n = 0;
    for (; x != 0; x &= x - 1)
        n++;
    return n;
}

static bool single_source(const gnode *g)
{
    return popcount(g->srcmask) == 1;
}

static bool is_ordered(const gnode *g)
{
    return (g->flags & PARA_NODE_ORDERED) != 0 || g->kind == KIND_COLLECT;
}

/* ---- describing a graph (for failures) ---------------------------------- */

static const char *flag_name(unsigned flags)
{
    if (flags & PARA_NODE_ORDERED)
        return "ORDERED";
    if (flags & PARA_NODE_SERIAL)
        return "SERIAL";
    return "PARALLEL";
}

static void describe(FILE *f, const dgraph *d)
{
    fprintf(f,
            "---- para differential: test %s, seed 0x%016" PRIx64 ", graph %u\n"
            "reproduce: PARA_DIFF_SEED=0x%016" PRIx64
            " PARA_DIFF_ONLY=%u ./test_differential%s\n"
            "config: workers=%u batch_items=%zu%s max_batches=%u%s "
            "policy=%s mem_budget=%zu\n",
            d->test, d->seed, d->index, d->seed, d->index % SECOND_GRAPH,
            d->index >= SECOND_GRAPH ? " (the second graph of that index)" : "",
            d->cfg.workers, d->cfg.batch,
            d->cfg.batch == 0 ? " (adaptive)" : "", d->cfg.max_batches,
            d->cfg.max_batches == 0 ? " (auto)" : "", d->cfg.policy,
            d->cfg.mem_budget);
    for (unsigned v = 0; v < d->n; v++) {
        const gnode *g = &d->node[v];
        fprintf(f, "  %-12s %-6s", g->name, role_names[g->role]);
        if (g->role == ROLE_RANGE)
            fprintf(f, " [%" PRIu64 ", +%zu)", g->begin, g->n_items);
        else if (g->role == ROLE_ARRAY || g->role == ROLE_SOURCE)
            fprintf(f, " items=%zu salt=0x%" PRIx64 "%s", g->n_items, g->salt,
                    g->short_writes ? " short-writes" : "");
        else
            fprintf(f, " %-7s %-8s", kind_names[g->kind],
                    flag_name(is_ordered(g) ? PARA_NODE_ORDERED : g->flags));
        fprintf(f, " prio=%d in=%zu out=%zu P=%u src=0x%x%s%s", g->priority,
                g->in_size, g->out_size, g->paths, g->srcmask,
                g->wrapper ? " wrapper" : "", g->stateful ? " stateful" : "");
        if (g->role == ROLE_INNER)
            fprintf(f,
                    " mul=0x%" PRIx64 " add=0x%" PRIx64 " salt=0x%" PRIx64
                    " modk=%u fanout=%u%s",
                    g->mul, g->add, g->salt, g->modk, g->fanout,
                    g->reserve ? " reserve" : "");
        if (g->fail_at != 0)
            fprintf(f, " FAIL@%" PRIu64 " rc=%d", g->fail_at, g->fail_rc);
        if (g->n_preds > 0) {
            fprintf(f, " <-");
            for (unsigned j = 0; j < g->n_preds; j++)
                fprintf(f, " %s", d->node[g->preds[j]].name);
        }
        fputc('\n', f);
    }
    fprintf(f, "  add order:");
    for (unsigned k = 0; k < d->n; k++)
        fprintf(f, " %u", d->add_order[k]);
    fprintf(f, "\n  connect order:");
    for (unsigned e = 0; e < d->n_edges; e++)
        fprintf(f, " %u->%u", d->edge_from[e], d->edge_to[e]);
    fprintf(f, "\n");
}

static void fail_graph(const dgraph *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void fail_graph(const dgraph *d, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    describe(stderr, d);
    fprintf(stderr, "FAILED: %s\n", msg);
    fflush(stderr);
    fail_msg("%s (seed 0x%016" PRIx64 ", graph %u)", msg, d->seed, d->index);
}

/* ---- node functions (shared by para and the reference) ----------------- */

static pair_t src_value(const gnode *g, size_t i)
{
    pair_t x = {0, 0};
    switch (g->role) {
    case ROLE_RANGE:
        x.a = g->begin + i;
        break;
    case ROLE_ARRAY:
        x = item_load((const unsigned char *)g->array + i * g->out_size,
                      g->out_size);
        break;
    default:
        x.a = mix64(g->salt + i);
        if (g->out_size == 16)
            x.b = mix64(g->salt ^ (i * 0xD6E8FEB86659FD93ull));
        break;
    }
    return x;
}

/* Items written by call @p call of a callback source with room for @p room
 * (the smaller of cap and the items left). */
static size_t src_write_count(const gnode *g, uint64_t call, size_t room)
{
    if (!g->short_writes || room == 0)
        return room;
    return 1 + (size_t)(mix64(g->salt ^ call) % room);
}

/* The function of an inner node on item @p x; @p st is the item's index in
 * the node's processing order for stateful nodes, 0 otherwise. Returns the
 * number of outputs written to @p out. */
static size_t apply(const gnode *g, pair_t x, uint64_t st,
                    pair_t out[MAX_FANOUT])
{
    uint64_t key = x.a + x.b * 0x100000001B3ull + st * 0x9E3779B97F4A7C15ull;
    bool wide = g->out_size == 16;
    switch (g->kind) {
    case KIND_MAP:
    case KIND_MAP_BATCH:
        out[0].a = key * g->mul + g->add;
        out[0].b = wide ? mix64(key ^ g->salt) : 0;
        return 1;
    case KIND_FILTER:
        if (g->modk != 0 && mix64(key ^ g->salt) % g->modk == 0)
            return 0;
        out[0] = x;
        return 1;
    case KIND_FLAT:
    case KIND_FLAT_BATCH: {
        size_t k = (size_t)(mix64(key ^ g->salt) % (g->fanout + 1));
        for (size_t j = 0; j < k; j++) {
            out[j].a = key * g->mul + g->add + j * 0x51ED2701ull;
            out[j].b = wide ? (key ^ (j + 1)) : 0;
        }
        return k;
    }
    default:
        return 0;
    }
}

/* ---- para callbacks ----------------------------------------------------- */

static void enter(gnode *g)
{
    if (!g->serial)
        return;
    /* relaxed: only detects overlapping calls; the runtime must order them
     * (then this sees the 0 stored by the previous leave()). */
    if (atomic_exchange_explicit(&g->busy, 1, memory_order_relaxed) != 0)
        atomic_fetch_add_explicit(&g->overlaps, 1, memory_order_relaxed);
    g->calls++; /* plain: TSan reports serial calls without happens-before */
}

static void leave(gnode *g)
{
    if (g->serial)
        /* relaxed: see enter(). */
        atomic_store_explicit(&g->busy, 0, memory_order_relaxed);
}

static bool should_fail(gnode *g, size_t n)
{
    if (g->fail_at == 0 || n == 0)
        return false;
    /* relaxed: a counter; exactly one call crosses fail_at. */
    uint64_t old =
        atomic_fetch_add_explicit(&g->fail_count, n, memory_order_relaxed);
    return old < g->fail_at && g->fail_at <= old + n;
}

static uint64_t next_state(gnode *g)
{
    return g->stateful ? g->state++ : 0;
}

/* The source's open hook: every run starts from item 0. */
static int cb_source_open(void *ctx)
{
    gnode *g = ctx;
    g->src_pos = 0;
    g->src_calls = 0;
    return 0;
}

static int cb_source(void *ctx, void *out, size_t cap, size_t *n_written)
{
    gnode *g = ctx;
    enter(g);
    int rc = 0;
    uint64_t call = g->src_calls++;
    if (g->fixed_batch != 0 && cap != g->fixed_batch)
        g->bad_cap++;
    if (should_fail(g, 1)) {
        rc = g->fail_rc;
    } else {
        size_t room = g->n_items - g->src_pos;
        if (room > cap)
            room = cap;
        size_t k = src_write_count(g, call, room);
        for (size_t i = 0; i < k; i++)
            item_store((unsigned char *)out + i * g->out_size,
                       src_value(g, g->src_pos + i), g->out_size);
        g->src_pos += k;
        *n_written = k;
    }
    leave(g);
    return rc;
}

static int cb_map(void *ctx, const void *in, void *out)
{
    gnode *g = ctx;
    enter(g);
    int rc = 0;
    if (should_fail(g, 1)) {
        rc = g->fail_rc;
    } else {
        pair_t y[MAX_FANOUT];
        apply(g, item_load(in, g->in_size), next_state(g), y);
        item_store(out, y[0], g->out_size);
    }
    leave(g);
    return rc;
}

static int cb_map_batch(void *ctx, const void *in, void *out, size_t n)
{
    gnode *g = ctx;
    enter(g);
    int rc = 0;
    if (should_fail(g, n)) {
        rc = g->fail_rc;
    } else {
        for (size_t i = 0; i < n; i++) {
            pair_t y[MAX_FANOUT];
            apply(g,
                  item_load((const unsigned char *)in + i * g->in_size,
                            g->in_size),
                  next_state(g), y);
            item_store((unsigned char *)out + i * g->out_size, y[0],
                       g->out_size);
        }
    }
    leave(g);
    return rc;
}

static int cb_filter(void *ctx, const void *in)
{
    gnode *g = ctx;
    enter(g);
    int rc;
    if (should_fail(g, 1)) {
        rc = g->fail_rc;
    } else {
        pair_t y[MAX_FANOUT];
        rc = (int)apply(g, item_load(in, g->in_size), next_state(g), y);
    }
    leave(g);
    return rc;
}

/* cb_filter by batches (a filter node with `reserve` drawn). */
static int cb_filter_batch(void *ctx, const void *in, size_t n,
                           unsigned char *keep)
{
    const gnode *g = ctx;
    for (size_t i = 0; i < n; i++) {
        int rc = cb_filter(ctx, (const unsigned char *)in + i * g->in_size);
        if (rc < 0)
            return rc;
        keep[i] = rc > 0;
    }
    return 0;
}

static int flat_one(gnode *g, const void *in, para_emitter_t *out, bool reserve)
{
    pair_t y[MAX_FANOUT];
    size_t k = apply(g, item_load(in, g->in_size), next_state(g), y);
    if (reserve && k > 0) {
        unsigned char *p = para_emit_reserve(out, k);
        if (p == NULL)
            return PARA_ENOMEM;
        for (size_t j = 0; j < k; j++)
            item_store(p + j * g->out_size, y[j], g->out_size);
        return 0;
    }
    for (size_t j = 0; j < k; j++) {
        unsigned char buf[16];
        item_store(buf, y[j], g->out_size);
        int rc = para_emit(out, buf);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int cb_flat(void *ctx, const void *in, para_emitter_t *out)
{
    gnode *g = ctx;
    enter(g);
    int rc = should_fail(g, 1) ? g->fail_rc : flat_one(g, in, out, false);
    leave(g);
    return rc;
}

static int cb_flat_batch(void *ctx, const void *in, size_t n,
                         para_emitter_t *out)
{
    gnode *g = ctx;
    enter(g);
    int rc = 0;
    if (should_fail(g, n)) {
        rc = g->fail_rc;
    } else {
        for (size_t i = 0; i < n && rc == 0; i++) {
            bool reserve = g->reserve && (mix64(g->salt ^ i) & 1) != 0;
            rc = flat_one(g, (const unsigned char *)in + i * g->in_size, out,
                          reserve);
        }
    }
    leave(g);
    return rc;
}

static void record(gnode *g, const void *in, size_t n, bool batch)
{
    /* relaxed: reserves disjoint slots; the main thread reads them after
     * para_run() returns, which orders it after every node call. */
    size_t at = atomic_fetch_add_explicit(&g->got_n, n, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        if (at + i < g->got_cap)
            g->got[at + i] = item_load(
                (const unsigned char *)in + i * g->in_size, g->in_size);
    if (batch && n > 0) {
        /* relaxed: as above. */
        size_t b =
            atomic_fetch_add_explicit(&g->n_bounds, 1, memory_order_relaxed);
        if (b < g->bounds_cap) {
            g->bounds[b][0] = at;
            g->bounds[b][1] = n;
        }
    }
}

static int cb_sink(void *ctx, const void *in)
{
    gnode *g = ctx;
    enter(g);
    int rc = 0;
    if (should_fail(g, 1))
        rc = g->fail_rc;
    else
        record(g, in, 1, false);
    leave(g);
    return rc;
}

static int cb_sink_batch(void *ctx, const void *in, size_t n)
{
    gnode *g = ctx;
    enter(g);
    int rc = 0;
    if (should_fail(g, n))
        rc = g->fail_rc;
    else
        record(g, in, n, true);
    leave(g);
    return rc;
}

/* ---- generation --------------------------------------------------------- */

static const size_t k_batch_sizes[] = {1, 2, 3, 7, 64, 1000, 0};
static const unsigned k_max_batches[] = {0, 1, 2, 5, 64};
/* 1 byte: one source batch at a time (down to one item), whatever the
 * graph; then a few batches; then the default (a fraction of the RAM). */
static const size_t k_budgets[] = {1, 4096, 65536, 1 << 20, 0};

static dcfg random_cfg(rng_t *r)
{
    dcfg c;
    c.workers = 1 + rng_below(r, 4);
    c.batch = k_batch_sizes[rng_below(r, 7)];
    c.max_batches = k_max_batches[rng_below(r, 5)];
    /* Every registered policy (runtime/policy.h), a new one included. */
    size_t n_policies = 0;
    while (para__policy_at(n_policies) != NULL)
        n_policies++;
    c.policy = para__policy_at(rng_below(r, (unsigned)n_policies))->name;
    c.mem_budget = k_budgets[rng_below(r, 5)];
    return c;
}

/* Items per source: fewer for tiny batches, which cost a task each. */
static size_t max_items(size_t batch)
{
    switch (batch) {
    case 1:
        return 150;
    case 2:
        return 300;
    case 3:
        return 450;
    case 7:
        return 1000;
    default:
        return 3000;
    }
}

static unsigned new_node(dgraph *d, enum role role)
{
    assert_true(d->n < MAX_NODES);
    unsigned v = d->n++;
    gnode *g = &d->node[v];
    g->role = role;
    atomic_init(&g->fail_count, 0);
    atomic_init(&g->busy, 0);
    atomic_init(&g->overlaps, 0);
    atomic_init(&g->got_n, 0);
    atomic_init(&g->n_bounds, 0);
    return v;
}

static void add_edge(dgraph *d, unsigned u, unsigned v)
{
    gnode *gu = &d->node[u], *gv = &d->node[v];
    assert_true(gv->n_preds < MAX_PREDS && d->n_edges < MAX_EDGES);
    gv->preds[gv->n_preds++] = u;
    gu->n_succs++;
    gv->paths += gu->paths;
    gv->srcmask |= gu->srcmask;
    d->edge_from[d->n_edges] = u;
    d->edge_to[d->n_edges] = v;
    d->n_edges++;
}

static bool has_pred(const gnode *g, unsigned u)
{
    for (unsigned j = 0; j < g->n_preds; j++)
        if (g->preds[j] == u)
            return true;
    return false;
}

/* A random non-sink node below @p limit, preferring ones without an output
 * yet with probability @p dangling_pct. */
static unsigned pick_anchor(const dgraph *d, rng_t *r, unsigned limit,
                            unsigned dangling_pct)
{
    unsigned cand[MAX_NODES], n = 0;
    for (unsigned u = 0; u < limit; u++)
        if (d->node[u].n_succs == 0)
            cand[n++] = u;
    if (n > 0 && rng_chance(r, dangling_pct))
        return cand[rng_below(r, n)];
    return rng_below(r, limit);
}

static void add_extra_inputs(dgraph *d, rng_t *r, unsigned v, unsigned limit,
                             unsigned extra, uint32_t path_cap)
{
    gnode *g = &d->node[v];
    for (unsigned e = 0; e < extra; e++) {
        for (unsigned tries = 0; tries < 8; tries++) {
            unsigned u = pick_anchor(d, r, limit, 50);
            const gnode *c = &d->node[u];
            if (c->out_size != g->in_size || has_pred(g, u) ||
                g->paths + c->paths > path_cap || g->n_preds >= MAX_PREDS)
                continue;
            add_edge(d, u, v);
            break;
        }
    }
}

static unsigned flags_for(rng_t *r, const gnode *g)
{
    switch (rng_below(r, 4)) {
    case 0:
    case 1:
        return PARA_NODE_PARALLEL;
    case 2:
        return PARA_NODE_SERIAL;
    default:
        return single_source(g) ? PARA_NODE_ORDERED : PARA_NODE_SERIAL;
    }
}

static void gen_graph(dgraph *d, rng_t *r)
{
    size_t nmax = max_items(d->cfg.batch);

    unsigned n_src = 1 + rng_below(r, 3);
    for (unsigned i = 0; i < n_src; i++) {
        unsigned v = new_node(d, (enum role)(ROLE_RANGE + rng_below(r, 3)));
        gnode *g = &d->node[v];
        g->out_size = g->role != ROLE_RANGE && rng_chance(r, 30) ? 16 : 8;
        g->paths = 1;
        g->srcmask = 1u << i;
        g->n_items = rng_chance(r, 8) ? 0 : rng_below(r, (unsigned)nmax + 1);
        g->begin = rng_chance(r, 50) ? 0 : rng_next(r) >> 1;
        g->salt = rng_next(r);
        g->priority = (int)rng_below(r, 5) - 2;
        if (g->role == ROLE_ARRAY) {
            g->array = xcalloc(g->n_items, g->out_size);
            for (size_t k = 0; k < g->n_items; k++) {
                pair_t x = {rng_next(r), 0};
                if (g->out_size == 16)
                    x.b = rng_next(r);
                if (k > 0 && rng_chance(r, 10)) /* some duplicates */
                    x = item_load((unsigned char *)g->array +
                                      (k - 1) * g->out_size,
                                  g->out_size);
                item_store((unsigned char *)g->array + k * g->out_size, x,
                           g->out_size);
            }
        }
        if (g->role == ROLE_SOURCE) {
            g->serial = true;
            g->short_writes = rng_chance(r, 40);
            g->wrapper = rng_chance(r, 50);
        }
    }
    d->n_sources = n_src;

    unsigned n_inner = 1 + rng_below(r, 10);
    for (unsigned i = 0; i < n_inner; i++) {
        unsigned v = new_node(d, ROLE_INNER);
        gnode *g = &d->node[v];
        unsigned anchor = pick_anchor(d, r, v, 70);
        g->in_size = d->node[anchor].out_size;
        add_edge(d, anchor, v);
        add_extra_inputs(d, r, v, v, rng_below(r, 3), INNER_PATH_CAP);
        g->kind = (enum kind)(KIND_MAP + rng_below(r, 5));
        g->out_size = g->in_size;
        if (g->kind != KIND_FILTER && rng_chance(r, 20))
            g->out_size = g->in_size == 8 ? 16 : 8;
        g->mul = rng_next(r) | 1;
        g->add = rng_next(r);
        g->salt = rng_next(r);
        static const unsigned modks[] = {0, 2, 2, 3, 3, 4, 5, 7, 1};
        g->modk = modks[rng_below(r, 9)];
        g->fanout = rng_chance(r, 10) ? 3 : 2;
        g->reserve = rng_chance(r, 50);
        g->priority = (int)rng_below(r, 5) - 2;
        g->wrapper = (g->kind == KIND_MAP || g->kind == KIND_FILTER) &&
                     rng_chance(r, 50);
    }
    d->n_nonsinks = d->n;

    unsigned n_sink = 1 + rng_below(r, 3);
    for (unsigned k = 0; k < n_sink; k++) {
        unsigned v = new_node(d, ROLE_SINK);
        unsigned anchor = pick_anchor(d, r, d->n_nonsinks, 80);
        d->node[v].in_size = d->node[anchor].out_size;
        add_edge(d, anchor, v);
        add_extra_inputs(d, r, v, d->n_nonsinks, rng_below(r, 3),
                         SINK_PATH_CAP);
    }
    /* Every node without an output feeds a sink. */
    for (unsigned u = 0; u < d->n_nonsinks; u++) {
        const gnode *gu = &d->node[u];
        if (gu->n_succs != 0)
            continue;
        unsigned found = UINT_MAX;
        for (unsigned s = d->n_nonsinks; s < d->n && found == UINT_MAX; s++) {
            const gnode *gs = &d->node[s];
            if (gs->in_size == gu->out_size &&
                gs->paths + gu->paths <= SINK_PATH_CAP &&
                gs->n_preds < MAX_PREDS && rng_chance(r, 70))
                found = s;
        }
        if (found == UINT_MAX) {
            found = new_node(d, ROLE_SINK);
            d->node[found].in_size = gu->out_size;
        }
        add_edge(d, u, found);
    }

    /* Flags and kinds, now that the sources reaching each node are known. */
    for (unsigned v = d->n_sources; v < d->n; v++) {
        gnode *g = &d->node[v];
        if (g->role == ROLE_SINK) {
            unsigned k = rng_below(r, 3);
            g->kind = k == 0 ? KIND_SINK
                      : k == 1
                          ? KIND_SINK_BATCH
                          : (single_source(g) ? KIND_COLLECT : KIND_SINK_BATCH);
            g->flags = g->kind == KIND_COLLECT ? 0 : flags_for(r, g);
            g->priority = (int)rng_below(r, 5) - 2;
            g->wrapper = g->kind == KIND_SINK && rng_chance(r, 50);
        } else {
            g->flags = flags_for(r, g);
            g->stateful = (g->flags & PARA_NODE_ORDERED) != 0 &&
                          (d->cfg.batch != 0 || g->paths == 1) &&
                          rng_chance(r, 50);
        }
        g->serial = (g->flags & (PARA_NODE_SERIAL | PARA_NODE_ORDERED)) != 0;
        if (g->role == ROLE_SINK)
            g->salt = rng_next(r);
    }
    for (unsigned v = 0; v < d->n; v++) {
        gnode *g = &d->node[v];
        const char *kn = g->role == ROLE_INNER || g->role == ROLE_SINK
                             ? kind_names[g->kind]
                             : role_names[g->role];
        snprintf(g->name, sizeof g->name, "n%02u_%s", v, kn);
    }

    /* Random connect order; it defines each node's input numbering. */
    for (unsigned e = d->n_edges; e > 1; e--) {
        unsigned k = rng_below(r, e);
        unsigned f = d->edge_from[e - 1], t = d->edge_to[e - 1];
        d->edge_from[e - 1] = d->edge_from[k];
        d->edge_to[e - 1] = d->edge_to[k];
        d->edge_from[k] = f;
        d->edge_to[k] = t;
    }
    for (unsigned v = 0; v < d->n; v++)
        d->node[v].n_preds = 0;
    for (unsigned e = 0; e < d->n_edges; e++) {
        gnode *g = &d->node[d->edge_to[e]];
        g->preds[g->n_preds++] = d->edge_from[e];
    }
    /* Random order of para_graph_add calls. */
    for (unsigned v = 0; v < d->n; v++)
        d->add_order[v] = v;
    for (unsigned v = d->n; v > 1; v--) {
        unsigned k = rng_below(r, v);
        unsigned t = d->add_order[v - 1];
        d->add_order[v - 1] = d->add_order[k];
        d->add_order[k] = t;
    }
}

/* ---- the reference interpreter ------------------------------------------ */

static int cmp_rbatch(const void *x, const void *y)
{
    const rbatch *p = x, *q = y;
    if (p->seq != q->seq)
        return p->seq < q->seq ? -1 : 1;
    if (p->path != q->path)
        return p->path < q->path ? -1 : 1;
    return 0;
}

static void ref_source(gnode *g, size_t batch)
{
    if (batch == 0)
        batch = 64; /* adaptive: any size gives the same items */
    size_t pos = 0;
    uint64_t call = 0;
    for (;;) {
        size_t room = g->n_items - pos;
        if (room > batch)
            room = batch;
        size_t k =
            g->role == ROLE_SOURCE ? src_write_count(g, call, room) : room;
        call++;
        if (k == 0)
            break;
        pair_t *items = xcalloc(k, sizeof *items);
        for (size_t i = 0; i < k; i++)
            items[i] = src_value(g, pos + i);
        blist_push(&g->out, (rbatch){pos, 0, k, items});
        pos += k;
    }
    g->exp_calls = call;
    g->exp_in = 0;
    g->exp_out = g->n_items;
}

static void ref_node(dgraph *d, unsigned v)
{
    gnode *g = &d->node[v];
    size_t total = 0;
    for (unsigned j = 0; j < g->n_preds; j++)
        total += d->node[g->preds[j]].out.n;
    rbatch *in = xcalloc(total, sizeof *in);
    size_t k = 0;
    uint32_t offset = 0;
    for (unsigned j = 0; j < g->n_preds; j++) {
        const gnode *u = &d->node[g->preds[j]];
        for (size_t i = 0; i < u->out.n; i++) {
            in[k] = u->out.v[i];
            in[k].path += offset;
            k++;
        }
        offset += u->paths;
    }
    assert_int_equal(offset, g->paths);
    qsort(in, total, sizeof *in, cmp_rbatch);

    g->exp_in = 0;
    g->exp_out = 0;
    if (g->role == ROLE_SINK) {
        for (size_t i = 0; i < total; i++)
            g->exp_in += in[i].n;
        g->exp_n = (size_t)g->exp_in;
        g->exp = xcalloc(g->exp_n, sizeof *g->exp);
        g->exp_batches = xcalloc(total, sizeof *g->exp_batches);
        size_t at = 0;
        for (size_t i = 0; i < total; i++) {
            if (in[i].n == 0)
                continue;
            memcpy(g->exp + at, in[i].items, in[i].n * sizeof *g->exp);
            g->exp_batches[g->exp_nb++] = (span_t){g->exp + at, in[i].n};
            at += in[i].n;
        }
    } else {
        uint64_t st = 0;
        for (size_t i = 0; i < total; i++) {
            pair_t *out = xcalloc(in[i].n * MAX_FANOUT, sizeof *out);
            size_t m = 0;
            for (size_t x = 0; x < in[i].n; x++)
                m += apply(g, in[i].items[x], g->stateful ? st++ : 0, out + m);
            blist_push(&g->out, (rbatch){in[i].seq, in[i].path, m, out});
            g->exp_in += in[i].n;
            g->exp_out += m;
        }
    }
    free(in);
}

static void reference(dgraph *d)
{
    for (unsigned v = 0; v < d->n; v++) {
        if (v < d->n_sources)
            ref_source(&d->node[v], d->cfg.batch);
        else
            ref_node(d, v);
    }
}

/* ---- building, running, checking ---------------------------------------- */

static void check_add(dgraph *d, gnode *g, int rc)
{
    if (rc != 0)
        fail_graph(d, "adding %s: %s: %s", g->name, para_err_name(rc),
                   para_graph_errmsg(d->g));
    assert_non_null(g->h);
    if (g->wrapper || g->role == ROLE_RANGE || g->role == ROLE_ARRAY ||
        g->kind == KIND_COLLECT) {
        rc = para_node_set_priority(g->h, g->priority);
        if (rc != 0)
            fail_graph(d, "set_priority %s: %s", g->name, para_err_name(rc));
    }
    if (strcmp(para_node_name(g->h), g->name) != 0)
        fail_graph(d, "para_node_name(%s) = '%s'", g->name,
                   para_node_name(g->h));
}

static void alloc_sink(gnode *g)
{
    g->got_cap = g->exp_n;
    g->got = xcalloc(g->got_cap, sizeof *g->got);
    g->bounds_cap = g->exp_n + 1;
    g->bounds = xcalloc(g->bounds_cap, sizeof *g->bounds);
    if (g->kind == KIND_COLLECT) {
        g->collect_cap = g->exp_n + (size_t)(g->salt % 4);
        g->collect = xcalloc(g->collect_cap, g->in_size);
    }
}

static void build_node(dgraph *d, unsigned v)
{
    gnode *g = &d->node[v];
    para_graph_t *pg = d->g;
    para_node_desc_t desc = {
        .name = g->name,
        .flags = g->flags,
        .priority = g->priority,
        .in_size = g->in_size,
        .out_size = g->out_size,
        .ctx = g,
    };
    int rc;
    switch (g->role) {
    case ROLE_RANGE:
        rc = para_graph_add_range(pg, g->name, g->begin, g->begin + g->n_items,
                                  &g->h);
        break;
    case ROLE_ARRAY:
        rc = para_graph_add_array(pg, g->name, g->array, g->n_items,
                                  g->out_size, &g->h);
        break;
    case ROLE_SOURCE:
        if (g->wrapper) {
            rc = para_graph_add_source_with_open(
                pg, g->name, g->out_size, cb_source, cb_source_open, g, &g->h);
        } else {
            desc.flags = 0;
            desc.source = cb_source;
            desc.open = cb_source_open;
            rc = para_graph_add(pg, &desc, &g->h);
        }
        break;
    case ROLE_INNER:
        if (g->wrapper && g->kind == KIND_MAP) {
            rc = para_graph_add_map(pg, g->name, g->in_size, g->out_size,
                                    cb_map, g, g->flags, &g->h);
            break;
        }
        if (g->wrapper && g->kind == KIND_FILTER) {
            rc = para_graph_add_filter(pg, g->name, g->in_size, cb_filter, g,
                                       g->flags, &g->h);
            break;
        }
        switch (g->kind) {
        case KIND_MAP:
            desc.map = cb_map;
            break;
        case KIND_MAP_BATCH:
            desc.map_batch = cb_map_batch;
            break;
        case KIND_FILTER:
            if (g->reserve)
                desc.filter_batch = cb_filter_batch;
            else
                desc.filter = cb_filter;
            break;
        case KIND_FLAT:
            desc.flat_map = cb_flat;
            break;
        default:
            desc.flat_map_batch = cb_flat_batch;
            break;
        }
        rc = para_graph_add(pg, &desc, &g->h);
        break;
    default:
        alloc_sink(g);
        desc.out_size = 0;
        if (g->kind == KIND_COLLECT) {
            rc = para_graph_add_collect(pg, g->name, g->in_size, g->collect,
                                        g->collect_cap, &g->collect_count,
                                        &g->h);
        } else if (g->wrapper) {
            rc = para_graph_add_sink(pg, g->name, g->in_size, cb_sink, g,
                                     g->flags, &g->h);
        } else {
            if (g->kind == KIND_SINK)
                desc.sink = cb_sink;
            else
                desc.sink_batch = cb_sink_batch;
            rc = para_graph_add(pg, &desc, &g->h);
        }
        break;
    }
    check_add(d, g, rc);
}

static void build_graph(dgraph *d)
{
    int rc = para_graph_create(&d->g);
    assert_int_equal(rc, 0);
    for (unsigned k = 0; k < d->n; k++)
        build_node(d, d->add_order[k]);
    for (unsigned e = 0; e < d->n_edges; e++) {
        gnode *u = &d->node[d->edge_from[e]], *v = &d->node[d->edge_to[e]];
        rc = para_graph_connect(d->g, u->h, v->h);
        if (rc != 0)
            fail_graph(d, "connect %s -> %s: %s: %s", u->name, v->name,
                       para_err_name(rc), para_graph_errmsg(d->g));
    }
    if (para_graph_node_count(d->g) != d->n)
        fail_graph(d, "para_graph_node_count = %zu, expected %u",
                   para_graph_node_count(d->g), d->n);
    /* A duplicate edge is refused and leaves the graph as it was. */
    if (d->n_edges > 0 && d->index % 5 == 0) {
        unsigned e = d->index % d->n_edges;
        rc = para_graph_connect(d->g, d->node[d->edge_from[e]].h,
                                d->node[d->edge_to[e]].h);
        if (rc != PARA_EINVAL)
            fail_graph(d, "duplicate edge %u->%u: %s, expected PARA_EINVAL",
                       d->edge_from[e], d->edge_to[e], para_err_name(rc));
    }
}

static void free_graph(dgraph *d)
{
    para_graph_destroy(d->g);
    d->g = NULL;
    for (unsigned v = 0; v < d->n; v++) {
        gnode *g = &d->node[v];
        for (size_t i = 0; i < g->out.n; i++)
            free(g->out.v[i].items);
        free(g->out.v);
        free(g->array);
        free(g->got);
        free(g->bounds);
        free(g->collect);
        free(g->exp);
        free(g->exp_batches);
    }
    free(d);
}

/* The watchdog turns a hung run into a failure that names the graph. */
typedef struct watchdog {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool stop, armed;
    struct timespec deadline;
    const dgraph *graph;
    double limit_s;
} watchdog_t;

static void *watchdog_main(void *arg)
{
    watchdog_t *wd = arg;
    pthread_mutex_lock(&wd->mu);
    while (!wd->stop) {
        if (!wd->armed) {
            pthread_cond_wait(&wd->cv, &wd->mu);
            continue;
        }
        int rc = pthread_cond_timedwait(&wd->cv, &wd->mu, &wd->deadline);
        if (rc == ETIMEDOUT && wd->armed && !wd->stop) {
            fprintf(stderr, "HANG: para_run() did not return within %.0f s\n",
                    wd->limit_s);
            describe(stderr, wd->graph);
            fflush(stderr);
            abort();
        }
    }
    pthread_mutex_unlock(&wd->mu);
    return NULL;
}

static int watchdog_start(watchdog_t *wd, double limit_s)
{
    memset(wd, 0, sizeof *wd);
    wd->limit_s = limit_s;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&wd->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc == 0)
        rc = pthread_mutex_init(&wd->mu, NULL);
    if (rc == 0)
        rc = pthread_create(&wd->thread, NULL, watchdog_main, wd);
    return rc == 0 ? 0 : -1;
}

static void watchdog_stop(watchdog_t *wd)
{
    pthread_mutex_lock(&wd->mu);
    wd->stop = true;
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
    pthread_join(wd->thread, NULL);
    pthread_cond_destroy(&wd->cv);
    pthread_mutex_destroy(&wd->mu);
}

static void watchdog_arm(watchdog_t *wd, const dgraph *d)
{
    pthread_mutex_lock(&wd->mu);
    clock_gettime(CLOCK_MONOTONIC, &wd->deadline);
    wd->deadline.tv_sec += (time_t)wd->limit_s;
    wd->graph = d;
    wd->armed = true;
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
}

static void watchdog_disarm(watchdog_t *wd)
{
    pthread_mutex_lock(&wd->mu);
    wd->armed = false;
    pthread_mutex_unlock(&wd->mu);
}

typedef struct dtest {
    const char *name;
    uint64_t seed;
    unsigned first, last;
    watchdog_t *wd;
} dtest;

/* One watchdog for the whole group, started by group_setup(): a failed test
 * leaves through a longjmp, so per-test state must not own a thread. */
static watchdog_t g_watchdog;

static void reset_run(dgraph *d)
{
    for (unsigned v = 0; v < d->n; v++) {
        gnode *g = &d->node[v];
        g->state = 0;
        g->calls = 0;
        g->bad_cap = 0;
        g->fixed_batch = d->cfg.batch;
        g->collect_count = SIZE_MAX;
        /* relaxed: para_run() orders these before every node call. */
        atomic_store_explicit(&g->fail_count, 0, memory_order_relaxed);
        atomic_store_explicit(&g->busy, 0, memory_order_relaxed);
        atomic_store_explicit(&g->overlaps, 0, memory_order_relaxed);
        atomic_store_explicit(&g->got_n, 0, memory_order_relaxed);
        atomic_store_explicit(&g->n_bounds, 0, memory_order_relaxed);
    }
}

static int run_graph(dtest *t, dgraph *d, para_runtime_t *rt)
{
    reset_run(d);
    watchdog_arm(t->wd, d);
    int rc = para_run(rt, d->g);
    watchdog_disarm(t->wd);
    return rc;
}

static void report_diff(const dgraph *d, const gnode *g, const char *what,
                        const pair_t *exp, const pair_t *got, size_t n,
                        size_t at)
{
    fprintf(stderr, "sink %s: %s differ at index %zu of %zu:\n", g->name, what,
            at, n);
    size_t lo = at > 3 ? at - 3 : 0;
    for (size_t i = lo; i < n && i < at + 4; i++)
        fprintf(stderr,
                "  [%zu] expected (0x%016" PRIx64 ", 0x%" PRIx64
                ") got (0x%016" PRIx64 ", 0x%" PRIx64 ")%s\n",
                i, exp[i].a, exp[i].b, got[i].a, got[i].b,
                i == at ? "  <--" : "");
    fail_graph(d, "sink %s: %s differ at index %zu of %zu", g->name, what, at,
               n);
}

static void check_sink(const dgraph *d, const gnode *g)
{
    const pair_t *got = g->got;
    pair_t *decoded = NULL;
    /* relaxed: after para_run() returned. */
    size_t got_n = atomic_load_explicit(&g->got_n, memory_order_relaxed);
    if (g->kind == KIND_COLLECT) {
        got_n = g->collect_count;
        if (got_n > g->collect_cap)
            fail_graph(d, "collect %s: count %zu, capacity %zu", g->name, got_n,
                       g->collect_cap);
        decoded = xcalloc(got_n, sizeof *decoded);
        for (size_t i = 0; i < got_n; i++)
            decoded[i] = item_load((unsigned char *)g->collect + i * g->in_size,
                                   g->in_size);
        got = decoded;
    }
    if (got_n != g->exp_n) {
        free(decoded);
        fail_graph(d, "sink %s (%s %s, P=%u): expected %zu items, got %zu",
                   g->name, kind_names[g->kind],
                   flag_name(is_ordered(g) ? PARA_NODE_ORDERED : g->flags),
                   g->paths, g->exp_n, got_n);
    }
    bool exact = is_ordered(g) && (d->cfg.batch != 0 || g->paths == 1);
    if (exact) {
        for (size_t i = 0; i < got_n; i++)
            if (cmp_pair(&got[i], &g->exp[i]) != 0)
                report_diff(d, g, "items (in order)", g->exp, got, got_n, i);
    } else {
        pair_t *e = xcalloc(got_n, sizeof *e), *o = xcalloc(got_n, sizeof *o);
        memcpy(e, g->exp, got_n * sizeof *e);
        memcpy(o, got, got_n * sizeof *o);
        qsort(e, got_n, sizeof *e, cmp_pair);
        qsort(o, got_n, sizeof *o, cmp_pair);
        for (size_t i = 0; i < got_n; i++)
            if (cmp_pair(&o[i], &e[i]) != 0)
                report_diff(d, g, "sorted items (multiset)", e, o, got_n, i);
        free(e);
        free(o);
    }
    free(decoded);

    /* Batch sinks receive whole batches: compare the multisets of batches. */
    if (g->kind == KIND_SINK_BATCH && d->cfg.batch != 0) {
        size_t nb = atomic_load_explicit(&g->n_bounds, memory_order_relaxed);
        if (nb != g->exp_nb)
            fail_graph(d,
                       "batch sink %s: expected %zu non-empty batches, got "
                       "%zu calls with items",
                       g->name, g->exp_nb, nb);
        span_t *e = xcalloc(nb, sizeof *e), *o = xcalloc(nb, sizeof *o);
        memcpy(e, g->exp_batches, nb * sizeof *e);
        for (size_t i = 0; i < nb; i++)
            o[i] = (span_t){g->got + g->bounds[i][0], g->bounds[i][1]};
        qsort(e, nb, sizeof *e, cmp_span);
        qsort(o, nb, sizeof *o, cmp_span);
        for (size_t i = 0; i < nb; i++) {
            if (cmp_span(&e[i], &o[i]) != 0) {
                size_t en = e[i].n, on = o[i].n;
                free(e);
                free(o);
                fail_graph(d,
                           "batch sink %s: batches differ (sorted batch %zu: "
                           "expected %zu items, got %zu)",
                           g->name, i, en, on);
            }
        }
        free(e);
        free(o);
    }
}

static void check_results(const dgraph *d)
{
    for (unsigned v = 0; v < d->n; v++) {
        const gnode *g = &d->node[v];
        /* relaxed: after para_run() returned. */
        unsigned ov = atomic_load_explicit(&g->overlaps, memory_order_relaxed);
        if (ov != 0)
            fail_graph(d, "serial node %s: %u overlapping calls", g->name, ov);
        if (g->role == ROLE_SOURCE) {
            if (g->bad_cap != 0)
                fail_graph(d, "source %s: %zu calls with cap != %zu", g->name,
                           g->bad_cap, d->cfg.batch);
            if (d->cfg.batch != 0 && g->src_calls != g->exp_calls)
                fail_graph(
                    d, "source %s: called %" PRIu64 " times, expected %" PRIu64,
                    g->name, g->src_calls, g->exp_calls);
            if (g->src_pos != g->n_items)
                fail_graph(d, "source %s: %zu of %zu items pulled", g->name,
                           g->src_pos, g->n_items);
        }
        if (g->role == ROLE_SINK)
            check_sink(d, g);
        para_node_stats_t st;
        int rc = para_node_stats(g->h, &st);
        if (rc != 0)
            fail_graph(d, "para_node_stats(%s): %s", g->name,
                       para_err_name(rc));
        if (st.items_in != g->exp_in || st.items_out != g->exp_out)
            fail_graph(d,
                       "stats of %s: items_in %" PRIu64 " items_out %" PRIu64
                       ", expected %" PRIu64 " and %" PRIu64,
                       g->name, st.items_in, st.items_out, g->exp_in,
                       g->exp_out);
    }
}

static void run_and_check(dtest *t, dgraph *d, para_runtime_t *rt)
{
    int rc = run_graph(t, d, rt);
    if (rc != 0)
        fail_graph(d, "para_run returned %s: %s", para_err_name(rc),
                   para_runtime_errmsg(rt));
    check_results(d);
}

static para_runtime_t *make_runtime(const dcfg *c)
{
    para_runtime_attr_t a;
    int rc = para_runtime_attr_init(&a);
    assert_int_equal(rc, 0);
    a.workers = c->workers;
    a.batch_items = c->batch;
    a.max_batches = c->max_batches;
    a.policy = c->policy;
    a.mem_budget = c->mem_budget;
    para_runtime_t *rt = NULL;
    rc = para_runtime_create(&rt, &a);
    if (rc != 0)
        fail_msg("para_runtime_create(workers=%u batch=%zu max=%u): %s",
                 c->workers, c->batch, c->max_batches, para_err_name(rc));
    assert_int_equal(para_runtime_workers(rt), c->workers);
    return rt;
}

static void destroy_runtime(para_runtime_t *rt)
{
    int rc = para_runtime_destroy(rt);
    assert_int_equal(rc, 0);
}

/* ---- test drivers -------------------------------------------------------- */

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return dflt;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || *end != '\0')
        fail_msg("cannot parse %s=%s", name, s);
    return (uint64_t)v;
}

static uint64_t g_default_seed; /* chosen once in main() */

/* @p divisor: this test runs PARA_DIFF_GRAPHS / divisor graphs. */
static void dtest_init(dtest *t, const char *name, unsigned divisor)
{
    memset(t, 0, sizeof *t);
    t->name = name;
    t->seed = env_u64("PARA_DIFF_SEED", g_default_seed);
    uint64_t graphs = env_u64("PARA_DIFF_GRAPHS", DEFAULT_GRAPHS) / divisor;
    if (graphs == 0)
        graphs = 1;
    t->first = 0;
    t->last = (unsigned)graphs;
    const char *only = getenv("PARA_DIFF_ONLY");
    if (only != NULL && *only != '\0') {
        t->first = (unsigned)env_u64("PARA_DIFF_ONLY", 0);
        t->last = t->first + 1;
    }
    t->wd = &g_watchdog;
}

static uint64_t test_salt(const char *name)
{
    uint64_t h = 1469598103934665603ull;
    for (; *name != '\0'; name++)
        h = (h ^ (unsigned char)*name) * 1099511628211ull;
    return h;
}

static dcfg block_cfg(const dtest *t, unsigned index)
{
    rng_t r = {mix64(t->seed ^ test_salt(t->name)) ^ mix64(index / BLOCK)};
    return random_cfg(&r);
}

static dgraph *new_graph(const dtest *t, unsigned index, const dcfg *cfg,
                         rng_t *r)
{
    dgraph *d = xcalloc(1, sizeof *d);
    d->test = t->name;
    d->seed = t->seed;
    d->index = index;
    d->cfg = *cfg;
    r->s = mix64(t->seed ^ test_salt(t->name) ^ mix64(0x5EED0000ull + index));
    gen_graph(d, r);
    reference(d);
    return d;
}

/* Keeps one runtime per block of graphs. */
typedef struct rt_cache {
    para_runtime_t *rt;
    dcfg cfg;
    unsigned block;
} rt_cache;

static para_runtime_t *cached_runtime(rt_cache *c, const dtest *t,
                                      unsigned index, dcfg *cfg)
{
    *cfg = block_cfg(t, index);
    if (c->rt == NULL || c->block != index / BLOCK) {
        if (c->rt != NULL)
            destroy_runtime(c->rt);
        c->rt = make_runtime(cfg);
        c->cfg = *cfg;
        c->block = index / BLOCK;
    }
    return c->rt;
}

static void print_summary(const dtest *t, unsigned graphs, double secs)
{
    printf("differential/%s: %u graphs, seed 0x%016" PRIx64 ", %.2f s\n",
           t->name, graphs, t->seed, secs);
    fflush(stdout);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Did the last run of @p d fuse anything (fuse.h): a chain of two or more
 * stages, or a source left unmaterialised for the chains it feeds? */
static bool graph_fused(const dgraph *d)
{
    for (unsigned v = 0; v < d->n; v++) {
        const para_node_t *h = d->node[v].h;
        if (h != NULL && (h->fuse_next != NULL || h->src_fused))
            return true;
    }
    return false;
}

/* Did the last run of @p d fuse a fan-out (fuse.h: one task runs every
 * successor's chain)? */
static bool graph_fanned(const dgraph *d)
{
    for (unsigned v = 0; v < d->n; v++) {
        const para_node_t *h = d->node[v].h;
        if (h != NULL && h->fuse_fan)
            return true;
    }
    return false;
}

/* Did the last run of @p d give a node a serial tail (fuse.h)? */
static bool graph_tailed(const dgraph *d)
{
    for (unsigned v = 0; v < d->n; v++) {
        const para_node_t *h = d->node[v].h;
        if (h != NULL && h->fuse_tail != NULL)
            return true;
    }
    return false;
}

/* Batches of the last run of @p d that their producers held back for a
 * busy serial tail (scheduler.c, tail_hold()). */
static uint64_t graph_held(const dgraph *d)
{
    uint64_t held = 0;
    for (unsigned v = 0; v < d->n; v++) {
        const para_node_t *h = d->node[v].h;
        for (unsigned k = 0; h != NULL && k < h->n_wst; k++)
            held += atomic_load_explicit(&h->wst[k].held_batches,
                                         memory_order_relaxed);
    }
    return held;
}

static void test_random_graphs(void **state)
{
    (void)state;
    dtest t;
    dtest_init(&t, "random_graphs", 1);
    double t0 = now_s();
    rt_cache cache = {0};
    unsigned fused = 0, fanned = 0, tailed = 0, held = 0;
    for (unsigned i = t.first; i < t.last; i++) {
        dcfg cfg;
        para_runtime_t *rt = cached_runtime(&cache, &t, i, &cfg);
        rng_t r;
        dgraph *d = new_graph(&t, i, &cfg, &r);
        build_graph(d);
        /* Every graph with fused chains (PARA_FUSE) and without: the same
         * items, statistics and (where the reference knows it) order. */
        bool fuse = rt->fuse;
        rt->fuse = true;
        run_and_check(&t, d, rt);
        fused += graph_fused(d);
        fanned += graph_fanned(d);
        tailed += graph_tailed(d);
        held += graph_held(d) > 0;
        rt->fuse = false;
        run_and_check(&t, d, rt);
        if (graph_fused(d) || graph_fanned(d) || graph_tailed(d))
            fail_graph(d, "fused a chain, a fan-out or a serial tail with "
                          "fusion off");
        rt->fuse = fuse;
        if (rng_chance(&r, 15)) {
            /* Run the same graph again on another runtime: the graph must
             * be reusable, and the result must not depend on the workers
             * or the batch limit. */
            dcfg alt = random_cfg(&r);
            alt.batch = cfg.batch;
            d->cfg = alt;
            para_runtime_t *rt2 = make_runtime(&alt);
            run_and_check(&t, d, rt2);
            destroy_runtime(rt2);
            /* And once more on the first runtime. */
            d->cfg = cfg;
            run_and_check(&t, d, rt);
        }
        free_graph(d);
    }
    if (cache.rt != NULL)
        destroy_runtime(cache.rt);
    print_summary(&t, t.last - t.first, now_s() - t0);
    printf("differential/random_graphs: %u graphs had fused chains or "
           "sources, %u fused fan-outs, %u serial tails, in %u of them "
           "batches held back for a busy tail\n",
           fused, fanned, tailed, held);
    /* The generator makes chains of parallel maps, and parallel nodes
     * feeding one serial node, often enough. */
    if (t.last - t.first >= 100 && fused == 0)
        fail_msg("no graph had a fused chain: the fusion path went untested");
    if (t.last - t.first >= 100 && fanned == 0)
        fail_msg("no graph had a fused fan-out: that path went untested");
    if (t.last - t.first >= 100 && tailed == 0)
        fail_msg("no graph had a serial tail: the inline path went untested");
    /* Holds need a tail busy on another worker: about every other graph
     * with a tail has one on two cores. */
    if (t.last - t.first >= 100 && held == 0)
        fail_msg("no batch was held back for a busy tail: that path went "
                 "untested");
}

static void test_node_failure(void **state)
{
    (void)state;
    dtest t;
    dtest_init(&t, "node_failure", 5);
    double t0 = now_s();
    rt_cache cache = {0};
    for (unsigned i = t.first; i < t.last; i++) {
        dcfg cfg;
        para_runtime_t *rt = cached_runtime(&cache, &t, i, &cfg);
        rng_t r;
        dgraph *d = new_graph(&t, i, &cfg, &r);

        /* Nodes that will certainly be called: callback sources, and user
         * functions with at least one input item. */
        unsigned cand[MAX_NODES], n = 0;
        for (unsigned v = 0; v < d->n; v++) {
            const gnode *g = &d->node[v];
            if (g->role == ROLE_SOURCE ||
                ((g->role == ROLE_INNER || g->role == ROLE_SINK) &&
                 g->kind != KIND_COLLECT && g->exp_in > 0))
                cand[n++] = v;
        }
        gnode *target = NULL;
        if (n > 0) {
            target = &d->node[cand[rng_below(&r, n)]];
            if (target->role == ROLE_SOURCE)
                target->fail_at =
                    d->cfg.batch != 0
                        ? 1 + rng_below(&r, (unsigned)target->exp_calls)
                        : 1;
            else
                target->fail_at = 1 + rng_below(&r, (unsigned)target->exp_in);
            static const int rcs[] = {1, -1, 7, -42, 1000, 3};
            target->fail_rc = rcs[rng_below(&r, 6)];
            if (target->kind == KIND_FILTER && target->fail_rc > 0)
                target->fail_rc = -target->fail_rc;
        }
        build_graph(d);
        if (target != NULL) {
            int rc = run_graph(&t, d, rt);
            if (rc != PARA_ENODE)
                fail_graph(d,
                           "node %s failed with %d: para_run returned %s "
                           "(%s), expected PARA_ENODE",
                           target->name, target->fail_rc, para_err_name(rc),
                           para_runtime_errmsg(rt));
            const char *msg = para_runtime_errmsg(rt);
            char val[32];
            snprintf(val, sizeof val, "%d", target->fail_rc);
            if (strstr(msg, target->name) == NULL || strstr(msg, val) == NULL)
                fail_graph(d, "errmsg '%s' does not name node %s and value %s",
                           msg, target->name, val);
            for (unsigned v = 0; v < d->n; v++)
                if (atomic_load_explicit(&d->node[v].overlaps,
                                         memory_order_relaxed) != 0)
                    fail_graph(d, "serial node %s: overlapping calls",
                               d->node[v].name);
            /* The same graph and runtime work afterwards. */
            target->fail_at = 0;
        }
        run_and_check(&t, d, rt);
        free_graph(d);
        /* And so does another graph on the same runtime. */
        if (rng_chance(&r, 30)) {
            dgraph *d2 = new_graph(&t, i + SECOND_GRAPH, &cfg, &r);
            build_graph(d2);
            run_and_check(&t, d2, rt);
            free_graph(d2);
        }
    }
    if (cache.rt != NULL)
        destroy_runtime(cache.rt);
    print_summary(&t, t.last - t.first, now_s() - t0);
}

/* Does @p from reach @p to? (edges go from lower to higher indices) */
static bool reaches(const dgraph *d, unsigned from, unsigned to)
{
    bool seen[MAX_NODES] = {false};
    seen[from] = true;
    for (unsigned v = from + 1; v <= to; v++) {
        const gnode *g = &d->node[v];
        for (unsigned j = 0; j < g->n_preds; j++)
            if (seen[g->preds[j]])
                seen[v] = true;
    }
    return seen[to];
}

static void expect_invalid(dtest *t, dgraph *d, para_runtime_t *rt, int want,
                           const char *name)
{
    int rc = para_graph_validate(d->g);
    if (rc != want)
        fail_graph(d, "validate: %s (%s), expected %s", para_err_name(rc),
                   para_graph_errmsg(d->g), para_err_name(want));
    if (name != NULL && strstr(para_graph_errmsg(d->g), name) == NULL)
        fail_graph(d, "validate message '%s' does not name %s",
                   para_graph_errmsg(d->g), name);
    rc = run_graph(t, d, rt);
    if (rc != want)
        fail_graph(d, "para_run: %s (%s), expected %s", para_err_name(rc),
                   para_runtime_errmsg(rt), para_err_name(want));
    if (name != NULL && strstr(para_runtime_errmsg(rt), name) == NULL)
        fail_graph(d, "runtime message '%s' does not name %s",
                   para_runtime_errmsg(rt), name);
    for (unsigned v = 0; v < d->n; v++) {
        const gnode *g = &d->node[v];
        if (g->calls != 0 || g->src_calls != 0 ||
            atomic_load_explicit(&g->got_n, memory_order_relaxed) != 0)
            fail_graph(d, "invalid graph ran node %s", g->name);
    }
}

static void test_invalid_graphs(void **state)
{
    (void)state;
    dtest t;
    dtest_init(&t, "invalid_graphs", 10);
    double t0 = now_s();
    rt_cache cache = {0};
    for (unsigned i = t.first; i < t.last; i++) {
        dcfg cfg;
        para_runtime_t *rt = cached_runtime(&cache, &t, i, &cfg);
        rng_t r;
        dgraph *d = new_graph(&t, i, &cfg, &r);
        unsigned defect = rng_below(&r, 4);

        /* Defect 2: an ORDERED node reached by several sources. */
        unsigned multi = UINT_MAX;
        for (unsigned v = d->n_sources; v < d->n; v++)
            if (!single_source(&d->node[v]) && d->node[v].kind != KIND_COLLECT)
                multi = v;
        /* Defect 1: an edge w -> v closing a cycle through inner nodes. */
        unsigned cyc_from = UINT_MAX, cyc_to = UINT_MAX;
        for (unsigned v = d->n_sources; v < d->n_nonsinks; v++)
            for (unsigned w = v + 1; w < d->n_nonsinks; w++)
                if (d->node[w].out_size == d->node[v].in_size &&
                    !has_pred(&d->node[v], w) && reaches(d, v, w)) {
                    cyc_from = w;
                    cyc_to = v;
                }
        if (defect == 2 && multi == UINT_MAX)
            defect = 0;
        if (defect == 1 && cyc_from == UINT_MAX)
            defect = 3;

        if (defect == 2) {
            d->node[multi].flags = PARA_NODE_ORDERED;
            d->node[multi].serial = true;
        }
        if (defect == 1)
            for (unsigned v = 0; v < d->n; v++)
                if (d->node[v].flags & PARA_NODE_ORDERED)
                    d->node[v].flags = PARA_NODE_SERIAL;
        build_graph(d);
        int rc;
        switch (defect) {
        case 0: {
            /* A sink whose input size matches nothing: the edge is refused
             * and the sink stays unconnected. */
            para_node_t *bad;
            const char *name = "zz_badsize";
            para_node_desc_t desc = {.name = name,
                                     .in_size = 24,
                                     .sink = cb_sink,
                                     .ctx = &d->node[0]};
            rc = para_graph_add(d->g, &desc, &bad);
            if (rc != 0)
                fail_graph(d, "adding %s: %s", name, para_err_name(rc));
            unsigned u = rng_below(&r, d->n_nonsinks);
            rc = para_graph_connect(d->g, d->node[u].h, bad);
            if (rc != PARA_ESIZE)
                fail_graph(d, "connect %s -> %s: %s, expected PARA_ESIZE",
                           d->node[u].name, name, para_err_name(rc));
            /* Sinks have no output, sources no input. */
            unsigned s = d->n - 1;
            rc = para_graph_connect(d->g, d->node[s].h, d->node[s - 1].h);
            if (rc != PARA_EINVAL)
                fail_graph(d, "connect from sink %s: %s, expected EINVAL",
                           d->node[s].name, para_err_name(rc));
            rc = para_graph_connect(d->g, d->node[u].h, d->node[0].h);
            if (rc != PARA_EINVAL)
                fail_graph(d, "connect to source %s: %s, expected EINVAL",
                           d->node[0].name, para_err_name(rc));
            expect_invalid(&t, d, rt, PARA_EUNCONNECTED, name);
            break;
        }
        case 1:
            rc = para_graph_connect(d->g, d->node[cyc_from].h,
                                    d->node[cyc_to].h);
            if (rc != 0)
                fail_graph(d, "connect %u -> %u: %s", cyc_from, cyc_to,
                           para_err_name(rc));
            expect_invalid(&t, d, rt, PARA_ECYCLE, NULL);
            break;
        case 2:
            expect_invalid(&t, d, rt, PARA_EORDER, d->node[multi].name);
            break;
        default: {
            /* An inner node with an input and no output. */
            para_node_t *dang;
            const char *name = "zz_dangling";
            unsigned u = rng_below(&r, d->n_nonsinks);
            rc = para_graph_add_map(d->g, name, d->node[u].out_size, 8, cb_map,
                                    &d->node[u], 0, &dang);
            if (rc == 0)
                rc = para_graph_connect(d->g, d->node[u].h, dang);
            if (rc != 0)
                fail_graph(d, "adding %s: %s", name, para_err_name(rc));
            expect_invalid(&t, d, rt, PARA_EUNCONNECTED, name);
            break;
        }
        }
        free_graph(d);
        /* The runtime still runs valid graphs. */
        dgraph *ok = new_graph(&t, i + SECOND_GRAPH, &cfg, &r);
        build_graph(ok);
        run_and_check(&t, ok, rt);
        free_graph(ok);
    }
    if (cache.rt != NULL)
        destroy_runtime(cache.rt);
    print_summary(&t, t.last - t.first, now_s() - t0);
}

static int group_setup(void **state)
{
    (void)state;
    double mult = (double)env_u64("PARA_TEST_TIMEOUT_MULT", 1);
    double limit = (double)env_u64("PARA_DIFF_WATCHDOG_S", 0);
    if (limit == 0)
        limit = 30.0 * (mult < 1 ? 1 : mult);
    return watchdog_start(&g_watchdog, limit);
}

static int group_teardown(void **state)
{
    (void)state;
    watchdog_stop(&g_watchdog);
    return 0;
}

int main(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    g_default_seed =
        mix64((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^
        mix64((uint64_t)getpid());
    printf("differential: seed 0x%016" PRIx64
           " (set PARA_DIFF_SEED to reproduce)\n",
           env_u64("PARA_DIFF_SEED", g_default_seed));
    fflush(stdout);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_graphs),
        cmocka_unit_test(test_node_failure),
        cmocka_unit_test(test_invalid_graphs),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
