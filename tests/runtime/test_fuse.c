/*
 * Fused CPU chains (runtime/fuse.h): where chains begin and end, that a
 * fused run computes what an unfused one does, failure naming the stage,
 * cancellation, statistics per stage, input ports, fused fan-out (a range
 * feeding three chains: results, statistics, failure, cancellation), serial
 * tails run inline (one call at a time, failure, cancellation,
 * statistics), and PARA_FUSE.
 */
#define _POSIX_C_SOURCE 200809L /* setenv, unsetenv */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fuse.h"
#include "options.h"
#include "para.h"
#include "para/reduce.h"
#include "scheduler.h"

#define N 100000u

static para_runtime_t *make_rt(unsigned workers, size_t batch)
{
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = workers;
    a.batch_items = batch;
    a.progress = "off";
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    return rt;
}

/* @p g fails on @p rt, and the message names node @p node and its error
 * code @p rc. */
static void run_fails_naming(para_runtime_t *rt, para_graph_t *g,
                             const char *node, int rc)
{
    assert_int_equal(para_run(rt, g), PARA_ENODE);
    const char *msg = para_runtime_errmsg(rt);
    char name[64], code[16];
    snprintf(name, sizeof name, "'%s'", node);
    snprintf(code, sizeof code, "%d", rc);
    if (strstr(msg, name) == NULL || strstr(msg, code) == NULL)
        fail_msg("node %s failed with %s; message: %s", name, code, msg);
}

static uint64_t ld(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static void st(void *p, uint64_t v)
{
    memcpy(p, &v, sizeof v);
}

/* ---- node functions ---------------------------------------------------- */

/* A map that fails at one item value (fail_at; 0 never) with fail_rc, and
 * may cancel its run at an item value instead. */
typedef struct mctx {
    uint64_t add;
    uint64_t fail_at;
    int fail_rc;
    uint64_t cancel_at;
    para_runtime_t *rt;
    _Atomic int ports[3]; /* para_input_port() seen: -1, 0, 1 */
} mctx;

static void seen_port(mctx *c)
{
    int p = para_input_port();
    atomic_fetch_add_explicit(&c->ports[p + 1], 1, memory_order_relaxed);
}

static int add_map(void *ctx, const void *in, void *out)
{
    mctx *c = ctx;
    uint64_t x = ld(in);
    seen_port(c);
    if (c->fail_at != 0 && x == c->fail_at)
        return c->fail_rc;
    if (c->cancel_at != 0 && x == c->cancel_at)
        (void)!para_run_cancel(c->rt);
    st(out, x + c->add);
    return 0;
}

static int add_map_batch(void *ctx, const void *in, void *out, size_t n)
{
    mctx *c = ctx;
    for (size_t i = 0; i < n; i++) {
        uint64_t x = ld((const unsigned char *)in + 8 * i);
        if (c->fail_at != 0 && x == c->fail_at)
            return c->fail_rc;
        st((unsigned char *)out + 8 * i, x + c->add);
    }
    return 0;
}

static int even_filter(void *ctx, const void *in)
{
    mctx *c = ctx;
    uint64_t x = ld(in);
    if (c->fail_at != 0 && x == c->fail_at)
        return c->fail_rc; /* negative: a filter's failure */
    return (x & 1) == 0;
}

static int twice_flat(void *ctx, const void *in, para_emitter_t *e)
{
    (void)ctx;
    uint64_t x = ld(in);
    if (para_emit(e, &x) != 0 || para_emit(e, &x) != 0)
        return PARA_ENOMEM;
    return 0;
}

typedef struct sum_ctx {
    _Atomic uint64_t sum, count, calls;
} sum_ctx;

static int psink(void *ctx, const void *in)
{
    sum_ctx *s = ctx;
    atomic_fetch_add_explicit(&s->sum, ld(in), memory_order_relaxed);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    return 0;
}

static int psink_batch(void *ctx, const void *in, size_t n)
{
    sum_ctx *s = ctx;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += ld((const unsigned char *)in + 8 * i);
    atomic_fetch_add_explicit(&s->sum, sum, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->count, n, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed);
    return 0;
}

static void release_none(void *ctx, void *items, size_t n)
{
    (void)ctx;
    (void)items;
    (void)n;
}

static void red_init(void *ctx, void *state)
{
    (void)ctx;
    memset(state, 0, 8);
}
static int red_fold(void *ctx, void *state, const void *items, size_t n)
{
    (void)ctx;
    uint64_t s = ld(state);
    for (size_t i = 0; i < n; i++)
        s += ld((const unsigned char *)items + 8 * i);
    st(state, s);
    return 0;
}
static void red_merge(void *ctx, void *into, const void *from)
{
    (void)ctx;
    st(into, ld(into) + ld(from));
}

/* ---- chain boundaries ---------------------------------------------------- */

/*
 *   src (range 0..N)
 *     -> a (map +1) -> f (filter even) -> b (map_batch +0) -+-> ps (parallel
 *                                                          |   sink)
 *                                                          +-> c (map +0)
 *                                                               -> ss (SERIAL
 *                                                                  sink)
 *   arr (array) -> own (map, items own memory) -> d (map) -> red (reduce)
 *   arr -> o (map) -> ord (ORDERED sink)
 */
typedef struct bgraph {
    para_graph_t *g;
    para_node_t *src, *a, *f, *b, *ps, *c, *ss, *arr, *own, *d, *red, *o, *ord;
    mctx ma, mf, mb, mc, mown, md, mo;
    sum_ctx sps, sss, sord;
    uint64_t array[1000];
    uint64_t red_result;
} bgraph;

static void bgraph_build(bgraph *x)
{
    memset(x, 0, sizeof *x);
    x->ma.add = 1;
    for (unsigned i = 0; i < 1000; i++)
        x->array[i] = i;
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    x->g = g;
    assert_int_equal(para_graph_add_range(g, "src", 0, N, &x->src), 0);
    assert_int_equal(para_graph_add_map(g, "a", 8, 8, add_map, &x->ma,
                                        PARA_NODE_PARALLEL, &x->a),
                     0);
    assert_int_equal(para_graph_add_filter(g, "f", 8, even_filter, &x->mf,
                                           PARA_NODE_PARALLEL, &x->f),
                     0);
    assert_int_equal(para_graph_add_map_batch(g, "b", 8, 8, add_map_batch,
                                              &x->mb, PARA_NODE_PARALLEL,
                                              &x->b),
                     0);
    assert_int_equal(para_graph_add_sink(g, "ps", 8, psink, &x->sps,
                                         PARA_NODE_PARALLEL, &x->ps),
                     0);
    assert_int_equal(para_graph_add_map(g, "c", 8, 8, add_map, &x->mc,
                                        PARA_NODE_PARALLEL, &x->c),
                     0);
    assert_int_equal(para_graph_add_sink(g, "ss", 8, psink, &x->sss,
                                         PARA_NODE_SERIAL, &x->ss),
                     0);
    assert_int_equal(para_graph_add_array(g, "arr", x->array, 1000, 8, &x->arr),
                     0);
    para_node_desc_t od = {.name = "own",
                           .in_size = 8,
                           .out_size = 8,
                           .ctx = &x->mown,
                           .map = add_map,
                           .release = release_none};
    assert_int_equal(para_graph_add(g, &od, &x->own), 0);
    assert_int_equal(para_graph_add_map(g, "d", 8, 8, add_map, &x->md,
                                        PARA_NODE_PARALLEL, &x->d),
                     0);
    para_reduce_desc_t rd = {.name = "red",
                             .in_size = 8,
                             .state_size = 8,
                             .init = red_init,
                             .fold = red_fold,
                             .merge = red_merge,
                             .result = &x->red_result};
    assert_int_equal(para_graph_add_reduce(g, &rd, &x->red), 0);
    assert_int_equal(para_graph_add_map(g, "o", 8, 8, add_map, &x->mo,
                                        PARA_NODE_PARALLEL, &x->o),
                     0);
    assert_int_equal(para_graph_add_sink(g, "ord", 8, psink, &x->sord,
                                         PARA_NODE_ORDERED, &x->ord),
                     0);
    para_node_t *const edges[][2] = {
        {x->src, x->a}, {x->a, x->f},   {x->f, x->b},     {x->b, x->ps},
        {x->b, x->c},   {x->c, x->ss},  {x->arr, x->own}, {x->own, x->d},
        {x->d, x->red}, {x->arr, x->o}, {x->o, x->ord},
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        assert_int_equal(para_graph_connect(g, edges[i][0], edges[i][1]), 0);
}

static void bgraph_check(const bgraph *x)
{
    /* even x+1 for x in 0..N-1: the odd x; each once into ps and ss. */
    uint64_t sum = 0, cnt = 0;
    for (uint64_t v = 0; v < N; v++)
        if (((v + 1) & 1) == 0) {
            sum += v + 1;
            cnt++;
        }
    assert_int_equal(atomic_load(&x->sps.sum), sum);
    assert_int_equal(atomic_load(&x->sps.count), cnt);
    assert_int_equal(atomic_load(&x->sss.sum), sum);
    assert_int_equal(atomic_load(&x->sss.count), cnt);
    assert_int_equal(x->red_result, 999u * 1000 / 2);
    assert_int_equal(atomic_load(&x->sord.sum), 999u * 1000 / 2);
}

static void test_chain_boundaries(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2, 0);
    assert_true(rt->fuse); /* on by default */
    bgraph x;
    bgraph_build(&x);
    assert_int_equal(para_run(rt, x.g), 0);
    bgraph_check(&x);
    /* a -> f -> b is one chain: fan-out after b ends it. */
    assert_ptr_equal(x.a->fuse_next, x.f);
    assert_ptr_equal(x.f->fuse_next, x.b);
    assert_null(x.b->fuse_next);
    assert_int_equal(x.a->fuse_stages, 3);
    assert_true(x.f->fuse_inner && x.b->fuse_inner);
    assert_false(x.a->fuse_inner);
    /* The range feeds only the chain's head: not materialised. */
    assert_true(x.src->src_fused);
    /* After the fan-out: each successor is a head of its own; a serial
     * sink ends c's chain and is in none. */
    assert_int_equal(x.ps->fuse_stages, 1);
    assert_false(x.ps->fuse_inner);
    assert_int_equal(x.c->fuse_stages, 1);
    assert_null(x.c->fuse_next);
    assert_int_equal(x.ss->fuse_stages, 0);
    assert_false(x.ss->fuse_inner);
    /* Items that own memory end a chain on both sides: own is in none,
     * d's chain starts after it (and its input is not in a chain). */
    assert_int_equal(x.own->fuse_stages, 0);
    assert_null(x.own->fuse_next);
    assert_int_equal(x.d->fuse_stages, 0);
    /* b's successors are both chain heads: a fused fan-out (one task per
     * batch of b runs ps and c); the range has one successor. */
    assert_true(x.b->fuse_fan);
    assert_false(x.src->fuse_fan);
    /* The array also feeds own (not a chain): it is materialised, and no
     * fan-out is fused there. */
    assert_false(x.arr->fuse_fan);
    assert_false(x.arr->src_fused);
    /* ORDERED nodes are in no chain; o (before one) is a chain alone. */
    assert_int_equal(x.ord->fuse_stages, 0);
    assert_null(x.o->fuse_next);
    /* The tile keeps the widest inner edge within the tile bytes. */
    assert_int_equal(x.a->fuse_tile, PARA__FUSE_TILE_BYTES / 8);

    /* Fusion off: no chain, the same results. */
    rt->fuse = false;
    para_graph_destroy(x.g);
    bgraph_build(&x);
    assert_int_equal(para_run(rt, x.g), 0);
    bgraph_check(&x);
    assert_null(x.a->fuse_next);
    assert_false(x.src->src_fused);
    assert_false(x.b->fuse_fan);
    assert_int_equal(x.a->fuse_stages, 0);
    para_graph_destroy(x.g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* A map -> unordered reduce chain fuses (the reduce is its last stage); an
 * ORDERED reduce does not join a chain; a forced batch size keeps batch
 * functions out of chains. */
static void test_chain_ends(void **state)
{
    (void)state;
    for (int variant = 0; variant < 3; variant++) {
        para_runtime_t *rt = make_rt(2, variant == 2 ? 64 : 0);
        para_graph_t *g;
        assert_int_equal(para_graph_create(&g), 0);
        para_node_t *src, *m, *b, *red;
        mctx mm = {.add = 1}, mb = {0};
        uint64_t result = 0;
        assert_int_equal(para_graph_add_range(g, "src", 0, N, &src), 0);
        assert_int_equal(para_graph_add_map(g, "m", 8, 8, add_map, &mm, 0, &m),
                         0);
        assert_int_equal(
            para_graph_add_map_batch(g, "b", 8, 8, add_map_batch, &mb, 0, &b),
            0);
        para_reduce_desc_t rd = {.name = "red",
                                 .flags =
                                     variant == 1 ? PARA_REDUCE_ORDERED : 0,
                                 .in_size = 8,
                                 .state_size = 8,
                                 .init = red_init,
                                 .fold = red_fold,
                                 .merge = red_merge,
                                 .result = &result};
        assert_int_equal(para_graph_add_reduce(g, &rd, &red), 0);
        assert_int_equal(para_graph_connect(g, src, m), 0);
        assert_int_equal(para_graph_connect(g, m, b), 0);
        assert_int_equal(para_graph_connect(g, b, red), 0);
        assert_int_equal(para_run(rt, g), 0);
        assert_int_equal(result, (uint64_t)N * (N + 1) / 2);
        switch (variant) {
        case 0: /* m -> b -> red */
            assert_ptr_equal(m->fuse_next, b);
            assert_ptr_equal(b->fuse_next, red);
            assert_int_equal(m->fuse_stages, 3);
            break;
        case 1: /* ORDERED reduce: m -> b only */
            assert_ptr_equal(m->fuse_next, b);
            assert_null(b->fuse_next);
            assert_false(red->fuse_inner);
            break;
        case 2: /* forced batches: b sees whole batches, m is alone */
            assert_null(m->fuse_next);
            assert_int_equal(m->fuse_stages, 1);
            assert_int_equal(b->fuse_stages, 0);
            assert_true(src->src_fused); /* m still takes index tiles */
            break;
        }
        para_graph_destroy(g);
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
}

/* ---- failure, cancellation ---------------------------------------------- */

/* even_filter by batches (items.h). */
PARA_FILTER_ITEMS(even_filter_batch, uint64_t, even_filter)

/* src -> a (map) -> f (filter; by batches if @p batched) -> b (map_batch)
 * -> ps (parallel sink); the stage @p which (0 a, 1 f, 2 b) fails at item
 * value 777 (a sees x, f and b see x + 1). */
static void run_failing(para_runtime_t *rt, int which, bool batched)
{
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *a, *f, *b, *ps;
    mctx ma = {.add = 1}, mf = {0}, mb = {0};
    sum_ctx s = {0};
    static const int rcs[] = {42, -5, 9};
    mctx *target = which == 0 ? &ma : which == 1 ? &mf : &mb;
    target->fail_at = which == 0 ? 777 : 778;
    target->fail_rc = rcs[which];
    assert_int_equal(para_graph_add_range(g, "src", 0, N, &src), 0);
    assert_int_equal(para_graph_add_map(g, "a", 8, 8, add_map, &ma, 0, &a), 0);
    assert_int_equal(
        batched ? para_graph_add_filter_batch(g, "f", 8, even_filter_batch, &mf,
                                              0, &f)
                : para_graph_add_filter(g, "f", 8, even_filter, &mf, 0, &f),
        0);
    assert_int_equal(
        para_graph_add_map_batch(g, "b", 8, 8, add_map_batch, &mb, 0, &b), 0);
    assert_int_equal(
        para_graph_add_sink(g, "ps", 8, psink, &s, PARA_NODE_PARALLEL, &ps), 0);
    assert_int_equal(para_graph_connect(g, src, a), 0);
    assert_int_equal(para_graph_connect(g, a, f), 0);
    assert_int_equal(para_graph_connect(g, f, b), 0);
    assert_int_equal(para_graph_connect(g, b, ps), 0);
    static const char *names[] = {"a", "f", "b"};
    run_fails_naming(rt, g, names[which], rcs[which]);
    if (rt->fuse) {
        assert_ptr_equal(a->fuse_next, f); /* it did fail inside a chain */
        assert_ptr_equal(f->fuse_next, b);
        assert_ptr_equal(b->fuse_next, ps);
    }
    /* The graph runs again once the failure is gone. */
    target->fail_at = 0;
    atomic_store(&s.sum, 0);
    atomic_store(&s.count, 0);
    assert_int_equal(para_run(rt, g), 0);
    assert_int_equal(atomic_load(&s.count), N / 2);
    para_graph_destroy(g);
}

static void test_failure_names_stage(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2, 0);
    for (int fuse = 1; fuse >= 0; fuse--) {
        rt->fuse = fuse;
        for (int which = 0; which < 3; which++) {
            run_failing(rt, which, false);
            run_failing(rt, which, true);
        }
    }
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_cancel_inside_chain(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2, 0);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *a, *c, *ps;
    mctx ma = {.add = 1}, mc = {.cancel_at = 1001, .rt = rt};
    sum_ctx s = {0};
    const uint64_t n = 4000000u; /* far more than one tile and batch */
    assert_int_equal(para_graph_add_range(g, "src", 0, n, &src), 0);
    assert_int_equal(para_graph_add_map(g, "a", 8, 8, add_map, &ma, 0, &a), 0);
    assert_int_equal(para_graph_add_map(g, "c", 8, 8, add_map, &mc, 0, &c), 0);
    assert_int_equal(
        para_graph_add_sink(g, "ps", 8, psink, &s, PARA_NODE_PARALLEL, &ps), 0);
    assert_int_equal(para_graph_connect(g, src, a), 0);
    assert_int_equal(para_graph_connect(g, a, c), 0);
    assert_int_equal(para_graph_connect(g, c, ps), 0);
    /* c, an inner stage, cancels the run at item value 1001. */
    assert_int_equal(para_run(rt, g), PARA_ECANCELED);
    assert_ptr_equal(a->fuse_next, c);
    assert_true(atomic_load(&s.count) < n);
    /* The runtime and graph run again. */
    mc.cancel_at = 0;
    atomic_store(&s.count, 0);
    atomic_store(&s.sum, 0);
    assert_int_equal(para_run(rt, g), 0);
    assert_int_equal(atomic_load(&s.count), n);
    assert_int_equal(atomic_load(&s.sum), n * (n + 1) / 2);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* ---- statistics, trace-independent accounting, ports -------------------- */

static void test_stats_per_stage(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2, 0);
    para_node_stats_t s[2][5];
    for (int fuse = 1; fuse >= 0; fuse--) {
        rt->fuse = fuse;
        para_graph_t *g;
        assert_int_equal(para_graph_create(&g), 0);
        para_node_t *nodes[5];
        mctx ma = {.add = 1}, mf = {0};
        sum_ctx sk = {0};
        assert_int_equal(para_graph_add_range(g, "src", 0, N, &nodes[0]), 0);
        assert_int_equal(
            para_graph_add_map(g, "inc", 8, 8, add_map, &ma, 0, &nodes[1]), 0);
        assert_int_equal(
            para_graph_add_filter(g, "even", 8, even_filter, &mf, 0, &nodes[2]),
            0);
        para_node_desc_t fd = {.name = "twice",
                               .in_size = 8,
                               .out_size = 8,
                               .flat_map = twice_flat};
        assert_int_equal(para_graph_add(g, &fd, &nodes[3]), 0);
        assert_int_equal(para_graph_add_sink_batch(g, "sink", 8, psink_batch,
                                                   &sk, PARA_NODE_SERIAL,
                                                   &nodes[4]),
                         0);
        for (int i = 0; i < 4; i++)
            assert_int_equal(para_graph_connect(g, nodes[i], nodes[i + 1]), 0);
        assert_int_equal(para_run(rt, g), 0);
        if (fuse)
            assert_int_equal(nodes[1]->fuse_stages, 3);
        for (int i = 0; i < 5; i++)
            assert_int_equal(para_node_stats(nodes[i], &s[fuse][i]), 0);
        assert_int_equal(atomic_load(&sk.count), N);
        /* The workers' task and busy counts agree with the stages'. */
        uint64_t tasks = 0, busy = 0, batches = 0, node_busy = 0;
        for (unsigned w = 0; w < para_runtime_workers(rt); w++) {
            para_worker_stats_t ws;
            assert_int_equal(para_worker_stats(rt, w, &ws), 0);
            tasks += ws.tasks;
            busy += ws.busy_ns;
        }
        for (int i = 1; i < 5; i++) {
            batches += s[fuse][i].batches;
            node_busy += s[fuse][i].busy_ns;
        }
        assert_int_equal(tasks, batches);
        assert_int_equal(busy, node_busy);
        /* Every stage of the chain counted every fused task once. */
        assert_int_equal(s[fuse][2].batches, s[fuse][1].batches);
        assert_int_equal(s[fuse][3].batches, s[fuse][1].batches);
        for (int i = 1; i < 4; i++)
            assert_true(s[fuse][i].busy_ns > 0);
        para_graph_destroy(g);
    }
    /* Items in and out of every stage: the same with and without fusion. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(s[1][i].items_in, s[0][i].items_in);
        assert_int_equal(s[1][i].items_out, s[0][i].items_out);
    }
    assert_int_equal(s[1][1].items_in, N);
    assert_int_equal(s[1][2].items_out, N / 2);
    assert_int_equal(s[1][3].items_out, N);
    assert_int_equal(s[1][4].items_in, N);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* A chain head fed by two ranges (a merge) sees its input port; the stage
 * after it sees port 0. */
static void test_input_ports(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2, 0);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *r0, *r1, *h, *m, *ps;
    mctx mh = {0}, mm = {0};
    sum_ctx s = {0};
    assert_int_equal(para_graph_add_range(g, "r0", 0, 3000, &r0), 0);
    assert_int_equal(para_graph_add_range(g, "r1", 0, 5000, &r1), 0);
    assert_int_equal(para_graph_add_map(g, "h", 8, 8, add_map, &mh, 0, &h), 0);
    assert_int_equal(para_graph_add_map(g, "m", 8, 8, add_map, &mm, 0, &m), 0);
    assert_int_equal(
        para_graph_add_sink(g, "ps", 8, psink, &s, PARA_NODE_PARALLEL, &ps), 0);
    assert_int_equal(para_graph_connect(g, r0, h), 0);
    assert_int_equal(para_graph_connect(g, r1, h), 0);
    assert_int_equal(para_graph_connect(g, h, m), 0);
    assert_int_equal(para_graph_connect(g, m, ps), 0);
    assert_int_equal(para_run(rt, g), 0);
    assert_true(r0->src_fused && r1->src_fused);
    assert_ptr_equal(h->fuse_next, m);
    assert_int_equal(atomic_load(&mh.ports[1]), 3000); /* port 0 */
    assert_int_equal(atomic_load(&mh.ports[2]), 5000); /* port 1 */
    assert_int_equal(atomic_load(&mh.ports[0]), 0);
    assert_int_equal(atomic_load(&mm.ports[1]), 8000); /* inner: port 0 */
    assert_int_equal(atomic_load(&s.count), 8000);
    assert_int_equal(atomic_load(&s.sum), 2999u * 3000 / 2 + 4999u * 5000 / 2);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* para_item_index() inside a chain: a stage after maps reads the item's
 * source number (its value minus what the maps added); after a filter
 * there is none. */
typedef struct ictx {
    uint64_t minus;  /* value - index, for stages after maps */
    bool unnumbered; /* after a filter: PARA_NO_INDEX expected */
    _Atomic uint64_t bad, seen;
} ictx;

static int index_map(void *ctx, const void *in, void *out)
{
    ictx *c = ctx;
    uint64_t x = ld(in), want = c->unnumbered ? PARA_NO_INDEX : x - c->minus;
    if (para_item_index(in) != want)
        atomic_fetch_add_explicit(&c->bad, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->seen, 1, memory_order_relaxed);
    st(out, x);
    return 0;
}

static void test_item_index(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2, 0);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *a, *i1, *f, *i2, *ps;
    mctx ma = {.add = 5}, mf = {0};
    ictx c1 = {.minus = 5}, c2 = {.unnumbered = true};
    sum_ctx s = {0};
    assert_int_equal(para_graph_add_range(g, "src", 0, N, &src), 0);
    assert_int_equal(para_graph_add_map(g, "a", 8, 8, add_map, &ma, 0, &a), 0);
    assert_int_equal(para_graph_add_map(g, "i1", 8, 8, index_map, &c1, 0, &i1),
                     0);
    assert_int_equal(para_graph_add_filter(g, "f", 8, even_filter, &mf, 0, &f),
                     0);
    assert_int_equal(para_graph_add_map(g, "i2", 8, 8, index_map, &c2, 0, &i2),
                     0);
    assert_int_equal(
        para_graph_add_sink(g, "ps", 8, psink, &s, PARA_NODE_PARALLEL, &ps), 0);
    assert_int_equal(para_graph_connect(g, src, a), 0);
    assert_int_equal(para_graph_connect(g, a, i1), 0);
    assert_int_equal(para_graph_connect(g, i1, f), 0);
    assert_int_equal(para_graph_connect(g, f, i2), 0);
    assert_int_equal(para_graph_connect(g, i2, ps), 0);
    for (int fuse = 1; fuse >= 0; fuse--) {
        rt->fuse = fuse;
        atomic_store(&c1.bad, 0);
        atomic_store(&c2.bad, 0);
        atomic_store(&c1.seen, 0);
        assert_int_equal(para_run(rt, g), 0);
        if (fuse)
            assert_int_equal(a->fuse_stages, 5);
        assert_int_equal(atomic_load(&c1.seen), N);
        assert_int_equal(atomic_load(&c1.bad), 0);
        assert_int_equal(atomic_load(&c2.bad), 0);
    }
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* ---- serial tails ---------------------------------------------------------
 */

/* A serial node's context: counts calls that overlap another (an atomic
 * count of calls inside) and keeps plain state, so that ThreadSanitizer
 * sees a missing happens-before between two calls; fails with fail_rc at
 * item value fail_at, or cancels its run at item value cancel_at or at its
 * cancel_nth call. */
typedef struct tctx {
    _Atomic int inside;
    _Atomic unsigned overlaps;
    uint64_t sum, count; /* plain: written by the node's calls only */
    uint64_t fail_at;
    int fail_rc;
    uint64_t cancel_at;
    uint64_t cancel_nth; /* 0: never */
    para_runtime_t *rt;
    unsigned spin; /* busy work per item: a tail slower than its producers */
} tctx;

static void tail_enter(tctx *c)
{
    if (atomic_fetch_add_explicit(&c->inside, 1, memory_order_relaxed) != 0)
        atomic_fetch_add_explicit(&c->overlaps, 1, memory_order_relaxed);
}

static void tail_leave(tctx *c)
{
    atomic_fetch_sub_explicit(&c->inside, 1, memory_order_relaxed);
}

static int tail_sink(void *ctx, const void *in)
{
    tctx *c = ctx;
    uint64_t x = ld(in);
    tail_enter(c);
    int rc = 0;
    if (c->fail_at != 0 && x == c->fail_at)
        rc = c->fail_rc;
    else if ((c->cancel_at != 0 && x == c->cancel_at) ||
             (c->cancel_nth != 0 && c->count + 1 == c->cancel_nth))
        (void)!para_run_cancel(c->rt);
    if (rc == 0) {
        c->sum += x;
        c->count++;
    }
    for (volatile unsigned k = 0; k < c->spin; k++) {
    }
    tail_leave(c);
    return rc;
}

static int tail_map(void *ctx, const void *in, void *out)
{
    tctx *c = ctx;
    uint64_t x = ld(in);
    tail_enter(c);
    c->sum += x;
    c->count++;
    st(out, 2 * x);
    tail_leave(c);
    return 0;
}

/* Batches node @p n ran inline as a serial tail, over all workers. */
static uint64_t inline_batches(const para_node_t *n)
{
    uint64_t b = 0;
    for (unsigned i = 0; i < n->n_wst; i++)
        b += atomic_load_explicit(&n->wst[i].inline_batches,
                                  memory_order_relaxed);
    return b;
}

/* Batches node @p n's tasks were held back by their producers while it
 * was busy (scheduler.c, tail_hold()), over all workers. */
static uint64_t held_batches(const para_node_t *n)
{
    uint64_t b = 0;
    for (unsigned i = 0; i < n->n_wst; i++)
        b +=
            atomic_load_explicit(&n->wst[i].held_batches, memory_order_relaxed);
    return b;
}

/* src (range 1..M) -> m (map +0) -> tail (SERIAL sink). */
typedef struct tgraph {
    para_graph_t *g;
    para_node_t *src, *m, *tail;
    mctx mm;
    tctx tc;
} tgraph;

static void tgraph_build(tgraph *x, uint64_t m)
{
    memset(x, 0, sizeof *x);
    assert_int_equal(para_graph_create(&x->g), 0);
    assert_int_equal(para_graph_add_range(x->g, "src", 1, m + 1, &x->src), 0);
    assert_int_equal(
        para_graph_add_map(x->g, "m", 8, 8, add_map, &x->mm, 0, &x->m), 0);
    assert_int_equal(para_graph_add_sink(x->g, "tail", 8, tail_sink, &x->tc,
                                         PARA_NODE_SERIAL, &x->tail),
                     0);
    assert_int_equal(para_graph_connect(x->g, x->src, x->m), 0);
    assert_int_equal(para_graph_connect(x->g, x->m, x->tail), 0);
}

/* Run @p x's graph (M items) on @p rt and check what the tail saw: every
 * item once, one call at a time, and as many batches as the map made;
 * the tail's statistics in *st_tail. */
static void tgraph_run_check(tgraph *x, para_runtime_t *rt, uint64_t m,
                             para_node_stats_t *st_tail)
{
    x->tc.count = x->tc.sum = 0;
    assert_int_equal(para_run(rt, x->g), 0);
    assert_int_equal(x->tc.count, m);
    assert_int_equal(x->tc.sum, m * (m + 1) / 2);
    assert_int_equal(atomic_load(&x->tc.overlaps), 0);
    para_node_stats_t sm;
    assert_int_equal(para_node_stats(x->m, &sm), 0);
    assert_int_equal(para_node_stats(x->tail, st_tail), 0);
    assert_int_equal(st_tail->items_in, m);
    assert_int_equal(st_tail->batches, sm.batches);
    assert_true(inline_batches(x->tail) <= st_tail->batches);
}

/* The serial sink after a chain runs inline, one call at a time, with the
 * same items and statistics as without fusion. */
static void test_serial_tail_sink(void **state)
{
    (void)state;
    const uint64_t m = 400000;
    para_runtime_t *rt = make_rt(2, 0);
    for (int fuse = 1; fuse >= 0; fuse--) {
        rt->fuse = fuse;
        tgraph x;
        tgraph_build(&x, m);
        para_node_stats_t st_tail;
        tgraph_run_check(&x, rt, m, &st_tail);
        assert_true(st_tail.busy_ns > 0);
        if (fuse) {
            assert_ptr_equal(x.m->fuse_tail, x.tail);
            assert_null(x.m->fuse_next); /* the tail is in no chain */
            assert_false(x.tail->fuse_inner);
            assert_true(inline_batches(x.tail) > 0);
        } else {
            assert_null(x.m->fuse_tail);
            assert_int_equal(inline_batches(x.tail), 0);
        }
        para_graph_destroy(x.g);
    }
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* A serial map as the tail of two chains (a merge), passing its output on;
 * an ORDERED node is never a tail. */
static void test_serial_tail_map(void **state)
{
    (void)state;
    const uint64_t m = 200000;
    para_runtime_t *rt = make_rt(2, 0);
    for (int fuse = 1; fuse >= 0; fuse--) {
        rt->fuse = fuse;
        para_graph_t *g;
        assert_int_equal(para_graph_create(&g), 0);
        para_node_t *r0, *r1, *m0, *m1, *smap, *ps, *mo, *ord;
        mctx c0 = {0}, c1 = {0}, co = {0};
        tctx ts = {0};
        sum_ctx sps = {0}, sord = {0};
        assert_int_equal(para_graph_add_range(g, "r0", 0, m, &r0), 0);
        assert_int_equal(para_graph_add_range(g, "r1", m, 2 * m, &r1), 0);
        assert_int_equal(
            para_graph_add_map(g, "m0", 8, 8, add_map, &c0, 0, &m0), 0);
        assert_int_equal(
            para_graph_add_map(g, "m1", 8, 8, add_map, &c1, 0, &m1), 0);
        assert_int_equal(para_graph_add_map(g, "smap", 8, 8, tail_map, &ts,
                                            PARA_NODE_SERIAL, &smap),
                         0);
        assert_int_equal(para_graph_add_sink(g, "ps", 8, psink, &sps,
                                             PARA_NODE_PARALLEL, &ps),
                         0);
        assert_int_equal(
            para_graph_add_map(g, "mo", 8, 8, add_map, &co, 0, &mo), 0);
        assert_int_equal(para_graph_add_sink(g, "ord", 8, psink, &sord,
                                             PARA_NODE_ORDERED, &ord),
                         0);
        para_node_t *const edges[][2] = {
            {r0, m0},   {r1, m1}, {m0, smap}, {m1, smap},
            {smap, ps}, {r0, mo}, {mo, ord},
        };
        for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
            assert_int_equal(para_graph_connect(g, edges[i][0], edges[i][1]),
                             0);
        assert_int_equal(para_run(rt, g), 0);
        const uint64_t total = (2 * m) * (2 * m - 1) / 2;
        assert_int_equal(ts.count, 2 * m);
        assert_int_equal(ts.sum, total);
        assert_int_equal(atomic_load(&ts.overlaps), 0);
        assert_int_equal(atomic_load(&sps.count), 2 * m);
        assert_int_equal(atomic_load(&sps.sum), 2 * total);
        assert_int_equal(atomic_load(&sord.sum), m * (m - 1) / 2);
        assert_null(mo->fuse_tail);   /* ORDERED: never inline */
        assert_null(smap->fuse_tail); /* a serial node has no tail */
        if (fuse) {
            assert_ptr_equal(m0->fuse_tail, smap);
            assert_ptr_equal(m1->fuse_tail, smap);
            assert_true(inline_batches(smap) > 0);
        } else {
            assert_null(m0->fuse_tail);
        }
        assert_int_equal(inline_batches(ord), 0);
        para_graph_destroy(g);
    }
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* A serial tail that fails names itself; one that cancels the run stops
 * it; the graph runs again afterwards. One worker: the tail is always
 * free, so it fails (cancels) inline. */
static void test_serial_tail_failure(void **state)
{
    (void)state;
    const uint64_t m = 400000;
    for (unsigned workers = 1; workers <= 2; workers++) {
        para_runtime_t *rt = make_rt(workers, 0);
        for (int fuse = 1; fuse >= 0; fuse--) {
            rt->fuse = fuse;
            tgraph x;
            tgraph_build(&x, m);
            x.tc.fail_at = 777;
            x.tc.fail_rc = 77;
            run_fails_naming(rt, x.g, "tail", 77);
            assert_int_equal(atomic_load(&x.tc.overlaps), 0);
            if (fuse && workers == 1)
                assert_true(inline_batches(x.tail) > 0);
            /* Cancelled from inside the tail. */
            x.tc.fail_at = 0;
            x.tc.cancel_at = 1001;
            x.tc.rt = rt;
            x.tc.count = x.tc.sum = 0;
            assert_int_equal(para_run(rt, x.g), PARA_ECANCELED);
            assert_true(x.tc.count < m);
            /* Cancelled in the call that gets the last item (with one
             * worker, the run's last call): still canceled. */
            x.tc.cancel_at = m;
            assert_int_equal(para_run(rt, x.g), PARA_ECANCELED);
            /* And a clean run. */
            x.tc.cancel_at = 0;
            x.tc.count = x.tc.sum = 0;
            assert_int_equal(para_run(rt, x.g), 0);
            assert_int_equal(x.tc.count, m);
            assert_int_equal(x.tc.sum, m * (m + 1) / 2);
            para_graph_destroy(x.g);
        }
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
}

/* A tail slower than its producers is busy when most of their batches
 * come: each producer holds its batches back and runs them itself once the
 * tail is free. Every item reaches the tail once, one call at a time; the
 * run ends (nothing is left held) also when the byte budget stops the
 * sources while batches are held, when the tail fails and when it cancels
 * the run. Holds depend on timing: the test tries up to three times to see
 * one, and checks every run. */
static void test_serial_tail_hold(void **state)
{
    (void)state;
    const uint64_t m = 200000;
    for (unsigned workers = 2; workers <= 3; workers++) {
        for (int budget = 0; budget <= 1; budget++) {
            para_runtime_attr_t a;
            assert_int_equal(para_runtime_attr_init(&a), 0);
            a.workers = workers;
            a.progress = "off";
            a.pin = "none";
            /* A few batches' worth: sources wait while batches are held. */
            a.mem_budget = budget ? 96 * 1024 : 0;
            para_runtime_t *rt = NULL;
            assert_int_equal(para_runtime_create(&rt, &a), 0);
            tgraph x;
            tgraph_build(&x, m);
            x.tc.spin = 40;
            uint64_t held = 0;
            for (int attempt = 0; attempt < 3 && held == 0; attempt++) {
                para_node_stats_t st_tail;
                tgraph_run_check(&x, rt, m, &st_tail);
                held = held_batches(x.tail);
            }
            if (held == 0)
                fail_msg("%u workers, budget %d: no batch was held back for "
                         "the busy tail in three runs",
                         workers, budget);
            /* Failing and cancelling with batches held. */
            x.tc.fail_at = m - 777;
            x.tc.fail_rc = 78;
            run_fails_naming(rt, x.g, "tail", 78);
            /* At the tail's m/2-th call, not at item value m/2: items
             * reach an unordered tail in any order, and that one's batch
             * was now and then the last one the tail ran (the count then
             * reached m; seen under a parallel ctest). */
            x.tc.fail_at = 0;
            x.tc.cancel_nth = m / 2;
            x.tc.rt = rt;
            x.tc.count = 0;
            assert_int_equal(para_run(rt, x.g), PARA_ECANCELED);
            assert_true(x.tc.count < m);
            assert_int_equal(atomic_load(&x.tc.overlaps), 0);
            para_graph_destroy(x.g);
            assert_int_equal(para_runtime_destroy(rt), 0);
        }
    }
}

/* ---- fused fan-out ---------------------------------------------------- */

/*
 *   src (range 0..N) -+-> a (map +1) -> b (map +0) -> s1 (SERIAL sink)
 *                     +-> c (map +2) -> s2 (SERIAL sink)
 *                     +-> ps (parallel sink)
 *
 * The range's successors are all chain heads: one task per range batch
 * runs a..b, c and ps over each tile of the indices.
 */
typedef struct fgraph {
    para_graph_t *g;
    para_node_t *src, *a, *b, *c, *ps, *s1, *s2;
    mctx ma, mb, mc;
    sum_ctx k1, k2, kp;
} fgraph;

static void fgraph_build(fgraph *x, para_runtime_t *rt)
{
    memset(x, 0, sizeof *x);
    x->ma.add = 1;
    x->mc.add = 2;
    x->mb.rt = x->mc.rt = rt;
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    x->g = g;
    assert_int_equal(para_graph_add_range(g, "src", 0, N, &x->src), 0);
    assert_int_equal(
        para_graph_add_map(g, "a", 8, 8, add_map, &x->ma, 0, &x->a), 0);
    assert_int_equal(
        para_graph_add_map(g, "b", 8, 8, add_map, &x->mb, 0, &x->b), 0);
    assert_int_equal(
        para_graph_add_map(g, "c", 8, 8, add_map, &x->mc, 0, &x->c), 0);
    assert_int_equal(para_graph_add_sink(g, "ps", 8, psink, &x->kp,
                                         PARA_NODE_PARALLEL, &x->ps),
                     0);
    assert_int_equal(para_graph_add_sink(g, "s1", 8, psink, &x->k1,
                                         PARA_NODE_SERIAL, &x->s1),
                     0);
    assert_int_equal(para_graph_add_sink(g, "s2", 8, psink, &x->k2,
                                         PARA_NODE_SERIAL, &x->s2),
                     0);
    para_node_t *const edges[][2] = {
        {x->src, x->a}, {x->a, x->b},  {x->b, x->s1},
        {x->src, x->c}, {x->c, x->s2}, {x->src, x->ps},
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        assert_int_equal(para_graph_connect(g, edges[i][0], edges[i][1]), 0);
}

static void fgraph_check(const fgraph *x)
{
    const uint64_t sum = (uint64_t)N * (N - 1) / 2;
    assert_int_equal(atomic_load(&x->k1.count), N);
    assert_int_equal(atomic_load(&x->k1.sum), sum + N);
    assert_int_equal(atomic_load(&x->k2.count), N);
    assert_int_equal(atomic_load(&x->k2.sum), sum + 2 * (uint64_t)N);
    assert_int_equal(atomic_load(&x->kp.count), N);
    assert_int_equal(atomic_load(&x->kp.sum), sum);
}

static void test_fan_out(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2, 0);
    para_node_stats_t st[2][7];
    for (int fuse = 1; fuse >= 0; fuse--) {
        rt->fuse = fuse;
        fgraph x;
        fgraph_build(&x, rt);
        assert_int_equal(para_run(rt, x.g), 0);
        fgraph_check(&x);
        assert_int_equal(x.src->fuse_fan, fuse);
        assert_int_equal(x.src->src_fused, fuse);
        /* Both branches end in a serial tail, the first at an inner stage
         * (the chain's last): its batches are read where they were made. */
        assert_int_equal(x.b->fuse_inner, fuse);
        assert_ptr_equal(x.b->fuse_tail, fuse ? x.s1 : NULL);
        assert_ptr_equal(x.c->fuse_tail, fuse ? x.s2 : NULL);
        assert_int_equal(inline_batches(x.s1) > 0, fuse);
        assert_int_equal(inline_batches(x.s2) > 0, fuse);
        para_node_t *nodes[7] = {x.src, x.a, x.b, x.c, x.ps, x.s1, x.s2};
        for (int i = 0; i < 7; i++)
            assert_int_equal(para_node_stats(nodes[i], &st[fuse][i]), 0);
        /* Every stage of every branch counted one batch per source batch,
         * and the workers' tasks still add up to the nodes' batches. */
        for (int i = 1; i < 5; i++)
            assert_int_equal(st[fuse][i].batches, st[fuse][0].batches);
        uint64_t tasks = 0, batches = 0;
        for (unsigned w = 0; w < para_runtime_workers(rt); w++) {
            para_worker_stats_t ws;
            assert_int_equal(para_worker_stats(rt, w, &ws), 0);
            tasks += ws.tasks;
        }
        for (int i = 1; i < 7; i++)
            batches += st[fuse][i].batches;
        assert_int_equal(tasks, batches);

        /* A stage of the second branch fails: the run names it, and the
         * graph runs again without the failure. */
        x.mc.fail_at = N / 3;
        x.mc.fail_rc = 41;
        run_fails_naming(rt, x.g, "c", 41);
        x.mc.fail_at = 0;
        /* An inner stage of the first branch cancels the run. */
        x.mb.cancel_at = N / 2;
        assert_int_equal(para_run(rt, x.g), PARA_ECANCELED);
        x.mb.cancel_at = 0;
        memset(&x.k1, 0, sizeof x.k1);
        memset(&x.k2, 0, sizeof x.k2);
        memset(&x.kp, 0, sizeof x.kp);
        assert_int_equal(para_run(rt, x.g), 0);
        fgraph_check(&x);
        para_graph_destroy(x.g);
    }
    /* Items in and out of every node: the same with and without fusion. */
    for (int i = 0; i < 7; i++) {
        assert_int_equal(st[1][i].items_in, st[0][i].items_in);
        assert_int_equal(st[1][i].items_out, st[0][i].items_out);
    }
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* ---- PARA_FUSE ---------------------------------------------------------- */

static void test_env(void **state)
{
    (void)state;
    setenv("PARA_FUSE", "0", 1);
    para_runtime_t *rt = make_rt(1, 0);
    assert_false(rt->fuse);
    assert_int_equal(para_runtime_destroy(rt), 0);
    setenv("PARA_FUSE", "on", 1);
    rt = make_rt(1, 0);
    assert_true(rt->fuse);
    assert_int_equal(para_runtime_destroy(rt), 0);
    /* A value that does not parse is an error naming the variable. */
    setenv("PARA_FUSE", "sometimes", 1);
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), PARA_EINVAL);
    rt = NULL;
    assert_int_equal(para_runtime_create(&rt, NULL), PARA_EINVAL);
    assert_null(rt);
    char msg[256];
    assert_int_equal(para__options_check_env(msg, sizeof msg), PARA_EINVAL);
    assert_non_null(strstr(msg, "PARA_FUSE"));
    unsetenv("PARA_FUSE");
}

static int quiet_log_level;
static void quiet_log(int level, const char *msg, void *arg)
{
    (void)msg;
    (void)arg;
    quiet_log_level = level;
}

/* para__filter_items(), the loop of every filter (fused or not), for
 * per-item and batch filters: for the item sizes with a fixed-size copy
 * and others, the kept items in order, and a failure: a per-item filter
 * stops at its item with the ones kept before it, a batch filter at the
 * start of the failing call's piece (PARA__FILTER_TILE items). */
typedef struct fctx {
    const unsigned char *base;
    size_t is;
    size_t fail_at; /* item index, or SIZE_MAX */
} fctx;

static int keep_item(const fctx *c, size_t i)
{
    return (c->base[i * c->is] + i / 3) % 3 != 0;
}

static int byte_filter(void *ctx, const void *in)
{
    const fctx *c = ctx;
    size_t i = (size_t)((const unsigned char *)in - c->base) / c->is;
    if (i == c->fail_at)
        return -7;
    return keep_item(c, i);
}

static int byte_filter_batch(void *ctx, const void *in, size_t n,
                             unsigned char *keep)
{
    const fctx *c = ctx;
    size_t first = (size_t)((const unsigned char *)in - c->base) / c->is;
    for (size_t j = 0; j < n; j++) {
        if (first + j == c->fail_at)
            return -7;
        keep[j] = (unsigned char)keep_item(c, first + j);
    }
    return 0;
}

static void test_filter_items(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 8, 16, 24, 32, 40};
    enum { M = 1200 };
    unsigned char *src = malloc(M * 40), *dst = malloc(M * 40),
                  *want = malloc(M * 40);
    assert_non_null(src);
    assert_non_null(dst);
    assert_non_null(want);
    for (int batched = 0; batched < 2; batched++) {
        for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
            const size_t is = sizes[z];
            for (size_t i = 0; i < M * is; i++)
                src[i] = (unsigned char)(i / is + 7 * (i % is));
            for (int f = 0; f < 2; f++) {
                fctx c = {src, is, f ? 700 : SIZE_MAX};
                size_t stop = f ? (batched ? 512 : 700) : M;
                size_t expect_kept = 0;
                for (size_t i = 0; i < stop; i++)
                    if (keep_item(&c, i))
                        memcpy(want + expect_kept++ * is, src + i * is, is);
                para_node_t n;
                memset(&n, 0, sizeof n);
                n.in_size = n.out_size = is;
                n.ctx = &c;
                n.filter_batched = batched;
                if (batched)
                    n.fn.filter_batch = byte_filter_batch;
                else
                    n.fn.filter = byte_filter;
                memset(dst, 0xee, M * 40);
                size_t done = 999, kept = 999;
                int rc = para__filter_items(&n, src, M, dst, &done, &kept);
                assert_int_equal(rc, f ? -7 : 0);
                assert_int_equal(done, stop);
                assert_int_equal(kept, expect_kept);
                assert_memory_equal(dst, want, kept * is);
            }
        }
    }
    free(src);
    free(dst);
    free(want);
    /* A node is a filter one way or the other. */
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_desc_t d = {.name = "both",
                          .in_size = 8,
                          .out_size = 8,
                          .filter = byte_filter,
                          .filter_batch = byte_filter_batch};
    assert_int_equal(para_graph_add(g, &d, NULL), PARA_EINVAL);
    assert_non_null(strstr(para_graph_errmsg(g), "exactly one function"));
    para_graph_destroy(g);
}

/* A fused range's tile of indices, narrow and (where the CPU has them)
 * wide stores: every length from 0 to 70 and a full tile, at every offset
 * from a cache line's start that an 8-byte item can have, from a first
 * index near 2^64 too (the wrap is the caller's, never reached by a
 * range); nothing is written past the last index. */
static void test_fill_indices(void **state)
{
    (void)state;
    enum { MAX = 1024 + 8 };
    static uint64_t buf[MAX + 16];
    static const uint64_t firsts[] = {0, 7, 123456789, UINT64_MAX - 2000};
    const bool wides[2] = {false, para__fuse_wide_fill()};
    for (unsigned wi = 0; wi < 2; wi++) {
        for (unsigned fi = 0; fi < 4; fi++) {
            for (size_t off = 0; off < 8; off++) {
                for (size_t m = 0; m <= 1024; m = m < 70 ? m + 1 : m + 954) {
                    memset(buf, 0xAB, sizeof buf);
                    uint64_t *v = buf + off;
                    para__fuse_fill_indices(v, firsts[fi], m, wides[wi]);
                    for (size_t i = 0; i < m; i++)
                        assert_int_equal(v[i], firsts[fi] + i);
                    for (size_t i = m; i < m + 8; i++)
                        assert_int_equal(v[i], 0xABABABABABABABABull);
                }
            }
        }
    }
}

int main(void)
{
    unsetenv("PARA_FUSE");
    para_set_log_fn(quiet_log, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fill_indices),
        cmocka_unit_test(test_chain_boundaries),
        cmocka_unit_test(test_chain_ends),
        cmocka_unit_test(test_failure_names_stage),
        cmocka_unit_test(test_cancel_inside_chain),
        cmocka_unit_test(test_stats_per_stage),
        cmocka_unit_test(test_input_ports),
        cmocka_unit_test(test_item_index),
        cmocka_unit_test(test_fan_out),
        cmocka_unit_test(test_serial_tail_sink),
        cmocka_unit_test(test_serial_tail_map),
        cmocka_unit_test(test_serial_tail_failure),
        cmocka_unit_test(test_serial_tail_hold),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_filter_items),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
