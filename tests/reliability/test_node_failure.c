/*
 * A failing node ends the run cleanly, for every node kind and flag.
 *
 * Graph (forced batches of 64 items, so batch boundaries are known):
 *
 *   src --+--> [failing node, kind K, flags F] --> rec_a (sink_batch, SERIAL)
 *         +--> slow (map, sleeps now and then) --> rec_b (sink_batch, SERIAL)
 *
 * src is a range of 2^40 items (a callback source when K is the source), so
 * a run that did not stop would take hours. The failing node returns an
 * error on item FAIL_AT. For every K x F x workers in {1, 2, 4}:
 *   - para_run() returns PARA_ENODE, the message names the node and its
 *     return value;
 *   - it returns within a bounded time, and the slow branch starts at most a
 *     few calls after the failure (the other workers stop promptly);
 *   - every batch is released (para_run() panics on a live batch; ASan and
 *     valgrind in CI check the frees);
 *   - the recording sinks saw only whole batches (64 consecutive items
 *     starting at a multiple of 64), and rec_a never saw the failing batch:
 *     a failing node's partial output is dropped, never delivered;
 *   - the runtime runs the next graph correctly.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

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

#include <cmocka.h>

#include "para.h"
#include "rel_util.h"

#define HUGE_N (1ull << 40)
#define BATCH 64u
#define FAIL_AT (BATCH * 100u + 5u)
#define FAIL_RC 4242

enum kind {
    K_SOURCE,
    K_MAP,
    K_MAP_BATCH,
    K_FILTER,
    K_FLAT_MAP,
    K_FLAT_MAP_BATCH,
    K_SINK,
    K_SINK_BATCH,
    K_FILTER_BATCH,
    N_KINDS
};

static const char *kind_name[N_KINDS] = {
    "source",         "map",  "map_batch",  "filter",      "flat_map",
    "flat_map_batch", "sink", "sink_batch", "filter_batch"};

struct state {
    atomic_int failed;      /* the failing node has returned its error */
    atomic_long late_calls; /* slow-branch calls started after that */
    atomic_long slow_calls; /* all slow-branch calls */
    uint64_t src_next;      /* callback source: claim-owned */
    long bad_batches_a;     /* rec_a: plain, SERIAL */
    long batches_a;         /* rec_a */
    bool saw_failing_a;     /* rec_a saw the batch that holds FAIL_AT */
    long bad_batches_b;     /* rec_b */
    long batches_b;         /* rec_b */
};

static struct state st;

static void state_reset(void)
{
    /* relaxed: reset between runs; para_run() orders it before the run. */
    atomic_store_explicit(&st.failed, 0, memory_order_relaxed);
    atomic_store_explicit(&st.late_calls, 0, memory_order_relaxed);
    atomic_store_explicit(&st.slow_calls, 0, memory_order_relaxed);
    st.src_next = 0;
    st.bad_batches_a = st.batches_a = 0;
    st.saw_failing_a = false;
    st.bad_batches_b = st.batches_b = 0;
}

static int fail_now(void)
{
    /* release: the slow branch's acquire load sees it after our return. */
    atomic_store_explicit(&st.failed, 1, memory_order_release);
    return FAIL_RC;
}

static uint64_t rd(const void *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof x);
    return x;
}

/* ---- the failing node, one function per kind ----------------------------- */

static int f_source(void *ctx, void *out, size_t cap, size_t *n)
{
    (void)ctx;
    uint64_t *o = out;
    size_t k = 0;
    while (k < cap) {
        if (st.src_next == FAIL_AT)
            return fail_now();
        o[k++] = st.src_next++;
    }
    *n = k;
    return 0;
}

static int f_map(void *ctx, const void *in, void *out)
{
    (void)ctx;
    if (rd(in) == FAIL_AT)
        return fail_now();
    memcpy(out, in, 8);
    return 0;
}

static int f_map_batch(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        if (rd((const char *)in + 8 * i) == FAIL_AT)
            return fail_now();
        memcpy((char *)out + 8 * i, (const char *)in + 8 * i, 8);
    }
    return 0;
}

static int f_filter(void *ctx, const void *in)
{
    (void)ctx;
    return rd(in) == FAIL_AT ? -fail_now() : 1;
}

static int f_filter_batch(void *ctx, const void *in, size_t n,
                          unsigned char *keep)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        if (rd((const char *)in + 8 * i) == FAIL_AT)
            return fail_now();
        keep[i] = 1;
    }
    return 0;
}

static int f_flat_map(void *ctx, const void *in, para_emitter_t *e)
{
    (void)ctx;
    if (rd(in) == FAIL_AT)
        return fail_now();
    return para_emit(e, in);
}

static int f_flat_map_batch(void *ctx, const void *in, size_t n,
                            para_emitter_t *e)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        const void *item = (const char *)in + 8 * i;
        if (rd(item) == FAIL_AT)
            return fail_now();
        int rc = para_emit(e, item);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int f_sink(void *ctx, const void *in)
{
    (void)ctx;
    return rd(in) == FAIL_AT ? fail_now() : 0;
}

static int f_sink_batch(void *ctx, const void *in, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        if (rd((const char *)in + 8 * i) == FAIL_AT)
            return fail_now();
    return 0;
}

/* ---- the healthy nodes ----------------------------------------------------
 */

static bool whole(const void *in, size_t n)
{
    uint64_t first = rd(in);
    if (n != BATCH || first % BATCH != 0)
        return false;
    for (size_t i = 1; i < n; i++)
        if (rd((const char *)in + 8 * i) != first + i)
            return false;
    return true;
}

static int rec_a(void *ctx, const void *in, size_t n)
{
    (void)ctx;
    st.batches_a++;
    if (!whole(in, n))
        st.bad_batches_a++;
    if (n > 0 && rd(in) / BATCH == FAIL_AT / BATCH)
        st.saw_failing_a = true;
    return 0;
}

static int rec_b(void *ctx, const void *in, size_t n)
{
    (void)ctx;
    st.batches_b++;
    if (!whole(in, n))
        st.bad_batches_b++;
    return 0;
}

static int slow(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    /* acquire: pairs with the release in fail_now(). relaxed RMWs:
     * counters read after the run. */
    if (atomic_load_explicit(&st.failed, memory_order_acquire))
        atomic_fetch_add_explicit(&st.late_calls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st.slow_calls, 1, memory_order_relaxed);
    memcpy(out, in, n * 8);
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
    return 0;
}

/* ---- building and checking ---------------------------------------------- */

static para_node_t *add_failing(para_graph_t *g, enum kind k, unsigned flags)
{
    para_node_desc_t d = {
        .name = "the_failing_node", .flags = flags, .in_size = 8};
    d.out_size = 8;
    switch (k) {
    case K_SOURCE:
        d.source = f_source;
        d.in_size = 0;
        break;
    case K_MAP:
        d.map = f_map;
        break;
    case K_MAP_BATCH:
        d.map_batch = f_map_batch;
        break;
    case K_FILTER:
        d.filter = f_filter;
        break;
    case K_FLAT_MAP:
        d.flat_map = f_flat_map;
        break;
    case K_FLAT_MAP_BATCH:
        d.flat_map_batch = f_flat_map_batch;
        break;
    case K_SINK:
        d.sink = f_sink;
        d.out_size = 0;
        break;
    case K_SINK_BATCH:
        d.sink_batch = f_sink_batch;
        d.out_size = 0;
        break;
    case K_FILTER_BATCH:
        d.filter_batch = f_filter_batch;
        break;
    default:
        fail();
    }
    para_node_t *n = NULL;
    assert_int_equal(para_graph_add(g, &d, &n), 0);
    return n;
}

static para_graph_t *failing_graph(enum kind k, unsigned flags)
{
    para_graph_t *g = NULL;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src = NULL, *f = NULL, *ra = NULL, *s = NULL, *rb = NULL;
    if (k == K_SOURCE)
        src = f = add_failing(g, k, 0);
    else {
        assert_int_equal(para_graph_add_range(g, "range", 0, HUGE_N, &src), 0);
        f = add_failing(g, k, flags);
        assert_int_equal(para_graph_connect(g, src, f), 0);
    }
    if (k != K_SINK && k != K_SINK_BATCH) {
        assert_int_equal(para_graph_add_sink_batch(g, "rec_a", 8, rec_a, NULL,
                                                   PARA_NODE_SERIAL, &ra),
                         0);
        assert_int_equal(para_graph_connect(g, f, ra), 0);
    }
    assert_int_equal(
        para_graph_add_map_batch(g, "slow", 8, 8, slow, NULL, 0, &s), 0);
    assert_int_equal(para_graph_add_sink_batch(g, "rec_b", 8, rec_b, NULL,
                                               PARA_NODE_SERIAL, &rb),
                     0);
    assert_int_equal(para_graph_connect(g, src, s), 0);
    assert_int_equal(para_graph_connect(g, s, rb), 0);
    return g;
}

/* The runtime runs a healthy graph next; @p batch: its forced batch size. */
static void check_next_run(para_runtime_t *rt, unsigned batch)
{
    para_graph_t *g = NULL;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *r = NULL, *rb = NULL;
    assert_int_equal(para_graph_add_range(g, "range", 0, BATCH * 50, &r), 0);
    assert_int_equal(para_graph_add_sink_batch(g, "rec_b", 8, rec_b, NULL,
                                               PARA_NODE_SERIAL, &rb),
                     0);
    assert_int_equal(para_graph_connect(g, r, rb), 0);
    state_reset();
    assert_int_equal(para_run(rt, g), 0);
    assert_int_equal(st.batches_b, BATCH * 50 / batch);
    if (batch == BATCH)
        assert_int_equal(st.bad_batches_b, 0);
    para_graph_destroy(g);
}

static void test_every_kind_fails_cleanly(void **state)
{
    (void)state;
    const unsigned workers[] = {1, 2, 4};
    const unsigned flag_set[] = {PARA_NODE_PARALLEL, PARA_NODE_SERIAL,
                                 PARA_NODE_ORDERED};
    unsigned cases = 0;
    uint64_t worst_ns = 0;
    long worst_late = 0;
    for (unsigned wi = 0; wi < 3; wi++) {
        para_runtime_t *rt = rel_runtime(workers[wi], BATCH, 0);
        assert_non_null(rt);
        for (int k = 0; k < N_KINDS; k++) {
            for (unsigned fi = 0; fi < 3; fi++) {
                if (k == K_SOURCE && fi > 0)
                    continue; /* sources take no flags */
                para_graph_t *g = failing_graph((enum kind)k, flag_set[fi]);
                state_reset();
                uint64_t t0 = rel_now_ns();
                int rc = para_run(rt, g);
                uint64_t dt = rel_now_ns() - t0;
                const char *msg = para_runtime_errmsg(rt);
                if (rc != PARA_ENODE ||
                    strstr(msg, "the_failing_node") == NULL ||
                    strstr(msg, k == K_FILTER ? "-4242" : "4242") == NULL)
                    fail_msg("%s (flags %u, %u workers): %s: %s", kind_name[k],
                             flag_set[fi], workers[wi], para_err_name(rc), msg);
                if (dt > rel_bound_ns(5000))
                    fail_msg("%s: the failed run took %.1f ms", kind_name[k],
                             (double)dt / 1e6);
                /* relaxed: the run's workers synchronised with us. */
                long late =
                    atomic_load_explicit(&st.late_calls, memory_order_relaxed);
                /* At most one call per worker can start between the
                 * failing return and the abort flag, plus one that
                 * checked the flag just before. */
                if (late > 2 * (long)workers[wi])
                    fail_msg("%s: %ld slow calls started after the failure",
                             kind_name[k], late);
                if (st.bad_batches_a != 0 || st.bad_batches_b != 0)
                    fail_msg("%s: a sink saw a partial batch (%ld, %ld)",
                             kind_name[k], st.bad_batches_a, st.bad_batches_b);
                if (st.saw_failing_a)
                    fail_msg("%s: the failing batch reached its successor",
                             kind_name[k]);
                if (dt > worst_ns)
                    worst_ns = dt;
                if (late > worst_late)
                    worst_late = late;
                cases++;
                para_graph_destroy(g);
            }
        }
        check_next_run(rt, BATCH);
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
    print_message("    %u failing-node cases: slowest failed run %.2f ms, "
                  "at most %ld calls started elsewhere after a failure\n",
                  cases, (double)worst_ns / 1e6, worst_late);
}

/* Every item fails, on every worker at once, with many batches queued: the
 * first failure wins, its message is intact, nothing leaks. */
static int fail_all(void *ctx, const void *in, void *out)
{
    (void)ctx;
    memcpy(out, in, 8);
    return -(int)(rd(in) % 1000) - 1;
}

static void test_simultaneous_failures(void **state)
{
    (void)state;
    para_runtime_t *rt = rel_runtime(4, 1, 1024);
    assert_non_null(rt);
    for (int i = 0; i < 20; i++) {
        para_graph_t *g = NULL;
        assert_int_equal(para_graph_create(&g), 0);
        para_node_t *r = NULL, *m = NULL, *k = NULL;
        assert_int_equal(para_graph_add_range(g, "range", 0, HUGE_N, &r), 0);
        assert_int_equal(para_graph_add_map(g, "everyone_fails", 8, 8, fail_all,
                                            NULL, 0, &m),
                         0);
        assert_int_equal(para_graph_add_sink_batch(g, "rec_b", 8, rec_b, NULL,
                                                   PARA_NODE_ORDERED, &k),
                         0);
        assert_int_equal(para_graph_connect(g, r, m), 0);
        assert_int_equal(para_graph_connect(g, m, k), 0);
        assert_int_equal(para_run(rt, g), PARA_ENODE);
        const char *msg = para_runtime_errmsg(rt);
        assert_non_null(strstr(msg, "node 'everyone_fails' returned -"));
        para_graph_destroy(g);
    }
    check_next_run(rt, 1);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static int group_setup(void **state)
{
    (void)state;
    para_set_log_fn(rel_quiet_log, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    para_set_log_fn(NULL, NULL);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_fails_cleanly),
        cmocka_unit_test(test_simultaneous_failures),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
