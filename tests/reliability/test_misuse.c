/*
 * API misuse that tests/runtime/test_graph.c, test_run.c, test_errors.c and
 * test_pipeline.c do not already cover: every call returns a clear error
 * (or a documented neutral value) and never crashes.
 *
 *   - NULL handles for the getters, printers and emitters;
 *   - zero sizes and NULL pointers in the built-in sources and collect;
 *   - absurd item and batch sizes, whose byte counts overflow size_t: the
 *     run fails with PARA_ENOMEM instead of writing past a short batch;
 *   - a source that claims to have written more items than it had room for;
 *   - para_emit_reserve() asked for more than memory can hold;
 *   - calls from inside a node function on the running runtime and graph:
 *     para_run(), para_runtime_destroy(), para_graph_add(),
 *     para_graph_connect(), para_graph_validate(), para_node_set_priority()
 *     (all PARA_EBUSY; the run itself completes);
 *   - para_graph_validate() from another thread while the graph runs;
 *   - a graph run on one runtime, then on another after the first is
 *     destroyed.
 * RELIABILITY.md counts these cases together with the existing ones.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "para.h"
#include "rel_util.h"

static unsigned cases; /* misuse cases checked, printed at the end */

/* Under ASan and TSan, a request larger than their limit must return NULL
 * (as malloc does) rather than abort: the absurd-size cases check that para
 * handles the NULL. The names are fixed by the sanitizer runtimes (the
 * project's rule against leading underscores gives way, as for the
 * linker's __wrap_ names). */
#define REL_SAN_OPTIONS "allocator_may_return_null=1"
__attribute__((visibility("default"))) const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return REL_SAN_OPTIONS;
}
__attribute__((visibility("default"))) const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return REL_SAN_OPTIONS;
}

#define EXPECT(call, want)                                                     \
    do {                                                                       \
        assert_int_equal((call), (want));                                      \
        cases++;                                                               \
    } while (0)

static para_graph_t *new_graph(void)
{
    para_graph_t *g = NULL;
    assert_int_equal(para_graph_create(&g), 0);
    return g;
}

static int sink_nop(void *ctx, const void *in)
{
    (void)ctx;
    (void)in;
    return 0;
}

static int map_copy8(void *ctx, const void *in, void *out)
{
    (void)ctx;
    memcpy(out, in, 8);
    return 0;
}

/* ---- NULL handles -------------------------------------------------------- */

static void test_null_handles(void **state)
{
    (void)state;
    assert_non_null(para_runtime_errmsg(NULL));
    cases++;
    assert_non_null(para_graph_errmsg(NULL));
    cases++;
    assert_null(para_node_name(NULL));
    cases++;
    EXPECT(para_graph_node_count(NULL), 0);
    EXPECT(para_runtime_workers(NULL), 0);
    EXPECT(para_run_cancel(NULL), PARA_EINVAL);
    EXPECT(para_stats_fprint(stdout, NULL, NULL, PARA_STATS_TABLE),
           PARA_EINVAL);
    para_runtime_t *rt = rel_runtime(1, 0, 0);
    assert_non_null(rt);
    EXPECT(para_stats_fprint(NULL, rt, NULL, PARA_STATS_TABLE), PARA_EINVAL);
    EXPECT(para_stats_fprint(stdout, rt, NULL, 7), PARA_EINVAL);
    /* no graph: counters */
    EXPECT(para_stats_fprint(stdout, rt, NULL, PARA_STATS_TABLE), 0);
    EXPECT(para_emit(NULL, "12345678"), PARA_ENOMEM);
    assert_null(para_emit_reserve(NULL, 1));
    cases++;
    para_pipe_free(NULL);
    cases++;
    /* An empty chain is a fragment, but no pipeline. */
    para_pipe_t *empty = para_pipe_chain_v(NULL, 0);
    para_graph_t *g = NULL;
    int rc = para_pipeline_v(&g, &empty, 1);
    assert_true(rc < 0);
    assert_null(g);
    cases++;
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* ---- sizes --------------------------------------------------------------- */

static int src_nop(void *ctx, void *out, size_t cap, size_t *n)
{
    (void)ctx;
    (void)out;
    (void)cap;
    *n = 0;
    return 0;
}

static void test_zero_sizes_and_null_pointers(void **state)
{
    (void)state;
    para_graph_t *g = new_graph();
    uint64_t arr[4] = {0};
    size_t count = 0;
    para_node_t *n = NULL;
    EXPECT(para_graph_add_array(g, "a0", arr, 4, 0, &n), PARA_EINVAL);
    EXPECT(para_graph_add_array(g, "anull", NULL, 4, 8, &n), PARA_EINVAL);
    EXPECT(para_graph_add_collect(g, "c0", 0, arr, 4, &count, &n), PARA_EINVAL);
    EXPECT(para_graph_add_collect(g, "cnull", 8, NULL, 4, &count, &n),
           PARA_EINVAL);
    EXPECT(para_graph_add_collect(g, "ccount", 8, arr, 4, NULL, &n),
           PARA_EINVAL);
    EXPECT(para_graph_add_source(g, NULL, 8, src_nop, NULL, &n), PARA_EINVAL);
    EXPECT(para_graph_add_source(g, "nofn", 8, NULL, NULL, &n), PARA_EINVAL);
    EXPECT(para_graph_add_map_batch(g, "mb0", 8, 0, NULL, NULL, 0, &n),
           PARA_EINVAL);
    assert_int_equal(para_graph_node_count(g), 0);
    /* An empty array is fine: a run over it sees nothing. */
    EXPECT(para_graph_add_array(g, "empty", NULL, 0, 8, &n), 0);
    para_graph_destroy(g);
}

/* The run must fail with PARA_ENOMEM, never write past a short batch. */
static int map_first8(void *ctx, const void *in, void *out)
{
    (void)ctx;
    memcpy(out, in, 8); /* the rest of the (huge) item is left as is */
    return 0;
}

static void expect_run(para_runtime_t *rt, para_graph_t *g, int want,
                       const char *what)
{
    int rc = para_run(rt, g);
    if (rc != want)
        fail_msg("%s: %s (%s), expected %s", what, para_err_name(rc),
                 para_runtime_errmsg(rt), para_err_name(want));
    cases++;
}

static void test_absurd_item_sizes(void **state)
{
    (void)state;
    para_runtime_t *rt = rel_runtime(2, 0, 0);
    assert_non_null(rt);
    const size_t sizes[] = {(size_t)1 << 62, SIZE_MAX - 7, SIZE_MAX};
    for (unsigned i = 0; i < 3; i++) {
        para_graph_t *g = new_graph();
        para_node_t *r = NULL, *m = NULL, *k = NULL;
        assert_int_equal(para_graph_add_range(g, "range", 0, 1000, &r), 0);
        assert_int_equal(
            para_graph_add_map(g, "huge", 8, sizes[i], map_first8, NULL, 0, &m),
            0);
        assert_int_equal(para_graph_add_sink(g, "sink", sizes[i], sink_nop,
                                             NULL, PARA_NODE_PARALLEL, &k),
                         0);
        assert_int_equal(para_graph_connect(g, r, m), 0);
        assert_int_equal(para_graph_connect(g, m, k), 0);
        expect_run(rt, g, PARA_ENOMEM, "huge item size");
        assert_non_null(strstr(para_runtime_errmsg(rt), "huge"));
        para_graph_destroy(g);
    }
    assert_int_equal(para_runtime_destroy(rt), 0);
}

struct counter_src {
    uint64_t next, n; /* claim-owned */
};

static int counting_source(void *ctx, void *out, size_t cap, size_t *n)
{
    struct counter_src *c = ctx;
    uint64_t *o = out;
    size_t k = 0;
    while (k < cap && c->next < c->n)
        o[k++] = c->next++;
    *n = k;
    return 0;
}

static void test_absurd_batch_sizes(void **state)
{
    (void)state;
    /* Forced batch sizes above 16M items are refused at creation. */
    const size_t batches[] = {((size_t)1 << 24) + 1, (size_t)1 << 61,
                              SIZE_MAX / 2, SIZE_MAX};
    for (unsigned i = 0; i < 4; i++) {
        para_runtime_attr_t a;
        assert_int_equal(para_runtime_attr_init(&a), 0);
        a.batch_items = batches[i];
        para_runtime_t *rt = NULL;
        assert_int_equal(para_runtime_create(&rt, &a), PARA_EINVAL);
        assert_null(rt);
    }
    /* The largest forced batch (16M items) of 2^40-byte items: the batch's
     * size overflows size_t (2^24 * 2^40 == 0 mod 2^64). */
    {
        para_runtime_t *rt = rel_runtime(2, (size_t)1 << 24, 0);
        assert_non_null(rt);
        /* A callback source told it has room for 2^24 huge items. */
        struct counter_src c = {0, 5000};
        para_graph_t *g = new_graph();
        para_node_t *s = NULL, *k = NULL;
        assert_int_equal(para_graph_add_source(g, "counter", (size_t)1 << 40,
                                               counting_source, &c, &s),
                         0);
        assert_int_equal(para_graph_add_sink(g, "sink", (size_t)1 << 40,
                                             sink_nop, NULL, PARA_NODE_PARALLEL,
                                             &k),
                         0);
        assert_int_equal(para_graph_connect(g, s, k), 0);
        expect_run(rt, g, PARA_ENOMEM, "huge batch, callback source");
        assert_int_equal(c.next, 0); /* never called with a short batch */
        para_graph_destroy(g);
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
    /* Forced batches of 1000 items into a map whose items are 2^61 bytes:
     * 1000 * 2^61 overflows. */
    para_runtime_t *rt = rel_runtime(2, 1000, 0);
    assert_non_null(rt);
    para_graph_t *g = new_graph();
    para_node_t *r = NULL, *m = NULL, *k = NULL;
    assert_int_equal(para_graph_add_range(g, "range", 0, 5000, &r), 0);
    assert_int_equal(para_graph_add_map(g, "wide", 8, (size_t)1 << 61,
                                        map_first8, NULL, 0, &m),
                     0);
    assert_int_equal(para_graph_add_sink(g, "sink", (size_t)1 << 61, sink_nop,
                                         NULL, PARA_NODE_PARALLEL, &k),
                     0);
    assert_int_equal(para_graph_connect(g, r, m), 0);
    assert_int_equal(para_graph_connect(g, m, k), 0);
    expect_run(rt, g, PARA_ENOMEM, "batch of wide items");
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static int lying_source(void *ctx, void *out, size_t cap, size_t *n)
{
    (void)ctx;
    (void)out;
    *n = cap + 1;
    return 0;
}

static int reserve_too_much(void *ctx, const void *in, para_emitter_t *e)
{
    (void)ctx;
    (void)in;
    void *p = para_emit_reserve(e, SIZE_MAX / 2);
    /* NULL, and the emitter stays failed: the node's 0 is overridden. */
    return p == NULL ? 0 : 1;
}

static void test_lying_source_and_huge_reserve(void **state)
{
    (void)state;
    para_runtime_t *rt = rel_runtime(2, 0, 0);
    assert_non_null(rt);
    para_graph_t *g = new_graph();
    para_node_t *s = NULL, *k = NULL;
    assert_int_equal(
        para_graph_add_source(g, "liar", 8, lying_source, NULL, &s), 0);
    assert_int_equal(para_graph_add_sink(g, "sink", 8, sink_nop, NULL,
                                         PARA_NODE_PARALLEL, &k),
                     0);
    assert_int_equal(para_graph_connect(g, s, k), 0);
    expect_run(rt, g, PARA_EINVAL, "source writes more than cap");
    assert_non_null(strstr(para_runtime_errmsg(rt), "liar"));
    para_graph_destroy(g);

    g = new_graph();
    para_node_t *r = NULL, *f = NULL;
    para_node_desc_t d = {.name = "greedy",
                          .in_size = 8,
                          .out_size = 8,
                          .flat_map = reserve_too_much};
    assert_int_equal(para_graph_add_range(g, "range", 0, 100, &r), 0);
    assert_int_equal(para_graph_add(g, &d, &f), 0);
    assert_int_equal(para_graph_add_sink(g, "sink", 8, sink_nop, NULL,
                                         PARA_NODE_PARALLEL, &k),
                     0);
    assert_int_equal(para_graph_connect(g, r, f), 0);
    assert_int_equal(para_graph_connect(g, f, k), 0);
    expect_run(rt, g, PARA_ENODE, "para_emit_reserve(SIZE_MAX / 2)");
    assert_non_null(strstr(para_runtime_errmsg(rt), "greedy"));
    assert_non_null(strstr(para_runtime_errmsg(rt), "PARA_ENOMEM"));
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* ---- calls from inside a node function -------------------------------- */

struct inside {
    para_runtime_t *rt;
    para_graph_t *g;
    para_node_t *src, *self;
    int rc_run, rc_destroy, rc_add, rc_connect, rc_validate, rc_prio;
    bool probed; /* plain: SERIAL sink */
    uint64_t count;
};

static int probing_sink(void *ctx, const void *in)
{
    (void)in;
    struct inside *s = ctx;
    s->count++;
    if (s->probed)
        return 0;
    s->probed = true;
    s->rc_run = para_run(s->rt, s->g);
    s->rc_destroy = para_runtime_destroy(s->rt);
    para_node_t *n = NULL;
    s->rc_add = para_graph_add_range(s->g, "late", 0, 10, &n);
    s->rc_connect = para_graph_connect(s->g, s->src, s->self);
    s->rc_validate = para_graph_validate(s->g);
    s->rc_prio = para_node_set_priority(s->self, 5);
    return 0;
}

static void test_calls_from_inside_a_node(void **state)
{
    (void)state;
    for (unsigned workers = 1; workers <= 2; workers++) {
        para_runtime_t *rt = rel_runtime(workers, 0, 0);
        assert_non_null(rt);
        struct inside s = {.rt = rt};
        para_graph_t *g = new_graph();
        s.g = g;
        para_node_t *r = NULL, *m = NULL;
        assert_int_equal(para_graph_add_range(g, "range", 0, 10000, &r), 0);
        assert_int_equal(
            para_graph_add_map(g, "copy", 8, 8, map_copy8, NULL, 0, &m), 0);
        assert_int_equal(para_graph_add_sink(g, "probe", 8, probing_sink, &s,
                                             PARA_NODE_SERIAL, &s.self),
                         0);
        s.src = r;
        assert_int_equal(para_graph_connect(g, r, m), 0);
        assert_int_equal(para_graph_connect(g, m, s.self), 0);
        assert_int_equal(para_run(rt, g), 0);
        assert_int_equal(s.count, 10000);
        EXPECT(s.rc_run, PARA_EBUSY);
        EXPECT(s.rc_destroy, PARA_EBUSY);
        EXPECT(s.rc_add, PARA_EBUSY);
        EXPECT(s.rc_connect, PARA_EBUSY);
        EXPECT(s.rc_validate, PARA_EBUSY);
        EXPECT(s.rc_prio, PARA_EBUSY);
        assert_int_equal(para_graph_node_count(g), 3);
        /* The graph is unchanged and runs again. */
        s.probed = false;
        s.count = 0;
        assert_int_equal(para_run(rt, g), 0);
        assert_int_equal(s.count, 10000);
        para_graph_destroy(g);
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
}

/* ---- validate from another thread while running ------------------------ */

struct holder {
    atomic_int entered, release;
    uint64_t count; /* plain: SERIAL */
};

static int holding_sink(void *ctx, const void *in)
{
    (void)in;
    struct holder *h = ctx;
    if (h->count++ == 0) {
        /* release / acquire: pair with the test thread. */
        atomic_store_explicit(&h->entered, 1, memory_order_release);
        while (atomic_load_explicit(&h->release, memory_order_acquire) == 0)
            sched_yield();
    }
    return 0;
}

struct runner {
    para_runtime_t *rt;
    para_graph_t *g;
    int rc;
};

static void *runner_main(void *arg)
{
    struct runner *r = arg;
    r->rc = para_run(r->rt, r->g);
    return NULL;
}

static void test_validate_and_reuse_while_running(void **state)
{
    (void)state;
    para_runtime_t *rt = rel_runtime(2, 0, 0);
    assert_non_null(rt);
    struct holder h = {.count = 0};
    atomic_init(&h.entered, 0);
    atomic_init(&h.release, 0);
    para_graph_t *g = new_graph();
    para_node_t *r = NULL, *k = NULL;
    assert_int_equal(para_graph_add_range(g, "range", 0, 5000, &r), 0);
    assert_int_equal(para_graph_add_sink(g, "hold", 8, holding_sink, &h,
                                         PARA_NODE_SERIAL, &k),
                     0);
    assert_int_equal(para_graph_connect(g, r, k), 0);
    struct runner run = {rt, g, 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, runner_main, &run), 0);
    /* acquire: pairs with the sink's release store of entered. */
    while (atomic_load_explicit(&h.entered, memory_order_acquire) == 0)
        sched_yield();
    EXPECT(para_graph_validate(g), PARA_EBUSY);
    assert_non_null(strstr(para_graph_errmsg(g), "running"));
    EXPECT(para_run_cancel(rt) == 0 ? 0 : 1, 0); /* a run is in progress */
    atomic_store_explicit(&h.release, 1, memory_order_release);
    assert_int_equal(pthread_join(th, NULL), 0);
    /* The cancel may come after the sink's first item: either outcome. */
    assert_true(run.rc == 0 || run.rc == PARA_ECANCELED);

    /* The graph outlives its runtime and runs on another one. */
    assert_int_equal(para_runtime_destroy(rt), 0);
    rt = rel_runtime(1, 0, 0);
    assert_non_null(rt);
    h.count = 0;
    assert_int_equal(para_run(rt, g), 0);
    assert_int_equal(h.count, 5000);
    cases++;
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_print_count(void **state)
{
    (void)state;
    print_message("    %u misuse cases checked in this file\n", cases);
    assert_true(cases > 40);
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
        cmocka_unit_test(test_null_handles),
        cmocka_unit_test(test_zero_sizes_and_null_pointers),
        cmocka_unit_test(test_absurd_item_sizes),
        cmocka_unit_test(test_absurd_batch_sizes),
        cmocka_unit_test(test_lying_source_and_huge_reserve),
        cmocka_unit_test(test_calls_from_inside_a_node),
        cmocka_unit_test(test_validate_and_reuse_while_running),
        cmocka_unit_test(test_print_count),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
