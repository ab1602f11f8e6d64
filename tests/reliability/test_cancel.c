/*
 * Cancellation: para_run_cancel() from another thread and from inside node
 * functions of every kind. A canceled run returns PARA_ECANCELED within a
 * bounded time, releases every batch (para_run() panics otherwise; ASan in
 * CI checks the frees), and leaves the runtime and the graph reusable. A
 * request never outlives its run: after a cancel that came too late, the
 * next run completes.
 *
 * The long runs read a range of 2^40 items: without cancellation they would
 * take hours, so a return within the bound proves the stop.
 *
 * CI runs this file under ThreadSanitizer too (label concurrency).
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
#include <time.h>

#include <cmocka.h>

#include "para.h"
#include "rel_util.h"

#define HUGE_N (1ull << 40)

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* ---- node functions ------------------------------------------------------ */

struct shared {
    para_runtime_t *rt;
    atomic_ullong items;  /* items seen by the sink */
    atomic_ullong sum;    /* their sum */
    uint64_t cancel_at;   /* items before a node cancels (0: never) */
    bool sink_cancels;    /* the sink cancels too (else only other nodes) */
    atomic_int cancel_rc; /* what para_run_cancel() returned inside */
    atomic_int canceled;  /* a node has called para_run_cancel() */
    uint64_t src_next;    /* callback source: claim-owned */
    uint64_t src_n;
};

static void shared_init(struct shared *s, para_runtime_t *rt, uint64_t at)
{
    s->rt = rt;
    atomic_init(&s->items, 0);
    atomic_init(&s->sum, 0);
    s->cancel_at = at;
    s->sink_cancels = true;
    atomic_init(&s->cancel_rc, 1);
    atomic_init(&s->canceled, 0);
    s->src_next = 0;
    s->src_n = HUGE_N;
}

static uint64_t load_u64(atomic_ullong *a)
{
    /* relaxed: counters read after para_run() returned, or as progress
     * hints while it runs. */
    return atomic_load_explicit(a, memory_order_relaxed);
}

/* Called by node functions: cancel once when the count passes cancel_at. */
static void maybe_cancel(struct shared *s, uint64_t count)
{
    if (s->cancel_at == 0 || count < s->cancel_at)
        return;
    int zero = 0;
    /* relaxed: only one caller must win; the result is read after the run. */
    if (atomic_compare_exchange_strong_explicit(
            &s->canceled, &zero, 1, memory_order_relaxed, memory_order_relaxed))
        atomic_store_explicit(&s->cancel_rc, para_run_cancel(s->rt),
                              memory_order_relaxed);
}

static int count_sink(void *ctx, const void *in)
{
    struct shared *s = ctx;
    uint64_t x;
    memcpy(&x, in, sizeof x);
    /* relaxed: statistics; read after the run. */
    atomic_fetch_add_explicit(&s->sum, x, memory_order_relaxed);
    uint64_t c =
        atomic_fetch_add_explicit(&s->items, 1, memory_order_relaxed) + 1;
    if (s->sink_cancels)
        maybe_cancel(s, c);
    return 0;
}

static int cancel_map(void *ctx, const void *in, void *out)
{
    struct shared *s = ctx;
    memcpy(out, in, 8);
    uint64_t x;
    memcpy(&x, in, sizeof x);
    maybe_cancel(s, x + 1);
    return 0;
}

static int cancel_map_batch(void *ctx, const void *in, void *out, size_t n)
{
    struct shared *s = ctx;
    memcpy(out, in, n * 8);
    uint64_t last;
    memcpy(&last, (const unsigned char *)in + (n - 1) * 8, sizeof last);
    maybe_cancel(s, last + 1);
    return 0;
}

static int cancel_flat_map(void *ctx, const void *in, para_emitter_t *e)
{
    struct shared *s = ctx;
    uint64_t x;
    memcpy(&x, in, sizeof x);
    maybe_cancel(s, x + 1);
    return para_emit(e, in);
}

static int cancel_filter(void *ctx, const void *in)
{
    struct shared *s = ctx;
    uint64_t x;
    memcpy(&x, in, sizeof x);
    maybe_cancel(s, x + 1);
    return 1;
}

static int cancel_source(void *ctx, void *out, size_t cap, size_t *n)
{
    struct shared *s = ctx;
    uint64_t *o = out;
    size_t k = 0;
    while (k < cap && s->src_next < s->src_n)
        o[k++] = s->src_next++;
    *n = k;
    maybe_cancel(s, s->src_next);
    return 0;
}

static int slow_map(void *ctx, const void *in, void *out)
{
    (void)ctx;
    memcpy(out, in, 8);
    uint64_t x;
    memcpy(&x, in, sizeof x);
    if (x % 64 == 0)
        sleep_us(50);
    return 0;
}

/* ---- graph helpers ------------------------------------------------------- */

static para_graph_t *new_graph(void)
{
    para_graph_t *g = NULL;
    assert_int_equal(para_graph_create(&g), 0);
    return g;
}

static void conn(para_graph_t *g, para_node_t *a, para_node_t *b)
{
    assert_int_equal(para_graph_connect(g, a, b), 0);
}

/* range(HUGE_N) -> map (slow now and then) -> sink(flags). */
static para_graph_t *long_graph(struct shared *s, unsigned sink_flags)
{
    para_graph_t *g = new_graph();
    para_node_t *r = NULL, *m = NULL, *k = NULL;
    assert_int_equal(para_graph_add_range(g, "range", 0, HUGE_N, &r), 0);
    assert_int_equal(para_graph_add_map(g, "slow", 8, 8, slow_map, NULL, 0, &m),
                     0);
    assert_int_equal(
        para_graph_add_sink(g, "sink", 8, count_sink, s, sink_flags, &k), 0);
    conn(g, r, m);
    conn(g, m, k);
    return g;
}

/* A finite run: the runtime works after a cancel. */
static void check_runtime_works(para_runtime_t *rt)
{
    struct shared s;
    shared_init(&s, rt, 0);
    para_graph_t *g = new_graph();
    para_node_t *r = NULL, *k = NULL;
    assert_int_equal(para_graph_add_range(g, "range", 0, 100000, &r), 0);
    assert_int_equal(para_graph_add_sink(g, "sink", 8, count_sink, &s,
                                         PARA_NODE_PARALLEL, &k),
                     0);
    conn(g, r, k);
    assert_int_equal(para_run(rt, g), 0);
    assert_int_equal(load_u64(&s.items), 100000);
    assert_int_equal(load_u64(&s.sum), 100000ull * 99999ull / 2);
    para_graph_destroy(g);
}

static void check_canceled(para_runtime_t *rt, int rc)
{
    if (rc != PARA_ECANCELED)
        fail_msg("run returned %s (%s), expected PARA_ECANCELED",
                 para_err_name(rc), para_runtime_errmsg(rt));
    assert_non_null(strstr(para_runtime_errmsg(rt), "canceled"));
}

/* ---- tests ------------------------------------------------------------- */

static void test_cancel_without_run(void **state)
{
    (void)state;
    assert_int_equal(para_run_cancel(NULL), PARA_EINVAL);
    para_runtime_t *rt = rel_runtime(2, 0, 0);
    assert_non_null(rt);
    assert_int_equal(para_run_cancel(rt), PARA_EAGAIN);
    assert_int_equal(para_run_cancel(rt), PARA_EAGAIN);
    /* Nothing was left behind for the next run. */
    check_runtime_works(rt);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

struct runner {
    pthread_t thread;
    para_runtime_t *rt;
    para_graph_t *g;
    int rc;
    atomic_ullong end_ns;
};

static void *runner_main(void *arg)
{
    struct runner *r = arg;
    r->rc = para_run(r->rt, r->g);
    /* relaxed: read after pthread_join(). */
    atomic_store_explicit(&r->end_ns, rel_now_ns(), memory_order_relaxed);
    return NULL;
}

static void cancel_from_thread(unsigned workers, unsigned sink_flags)
{
    para_runtime_t *rt = rel_runtime(workers, 0, 0);
    assert_non_null(rt);
    struct shared s;
    shared_init(&s, rt, 0);
    para_graph_t *g = long_graph(&s, sink_flags);
    for (int round = 0; round < 3; round++) {
        /* relaxed: no run is in progress; pthread_create orders it. */
        atomic_store_explicit(&s.items, 0, memory_order_relaxed);
        struct runner r = {.rt = rt, .g = g, .rc = 1};
        atomic_init(&r.end_ns, 0);
        assert_int_equal(pthread_create(&r.thread, NULL, runner_main, &r), 0);
        uint64_t deadline = rel_now_ns() + rel_bound_ns(10000);
        while (load_u64(&s.items) < 20000) {
            if (rel_now_ns() > deadline)
                fail_msg("round %d: the run made no progress (ended "
                         "early?)",
                         round);
            sleep_us(100);
        }
        uint64_t t0 = rel_now_ns();
        assert_int_equal(para_run_cancel(rt), 0);
        assert_int_equal(pthread_join(r.thread, NULL), 0);
        /* relaxed: written before the thread ended; the join orders it. */
        uint64_t dt =
            atomic_load_explicit(&r.end_ns, memory_order_relaxed) - t0;
        check_canceled(rt, r.rc);
        if (dt > rel_bound_ns(1000))
            fail_msg("cancel took %.1f ms", (double)dt / 1e6);
        if (round == 0)
            print_message("    %u workers: para_run() returned %.3f ms "
                          "after para_run_cancel()\n",
                          workers, (double)dt / 1e6);
    }
    check_runtime_works(rt);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_cancel_from_thread(void **state)
{
    (void)state;
    cancel_from_thread(1, PARA_NODE_SERIAL);
    cancel_from_thread(2, PARA_NODE_PARALLEL);
    cancel_from_thread(4, PARA_NODE_ORDERED);
}

enum where {
    IN_SOURCE,
    IN_MAP,
    IN_MAP_BATCH,
    IN_FILTER,
    IN_FLAT_MAP,
    IN_SINK_PARALLEL,
    IN_SINK_SERIAL,
    IN_SINK_ORDERED,
    N_WHERE
};

static const char *where_name[N_WHERE] = {
    "source",   "map",           "map_batch",   "filter",
    "flat_map", "parallel sink", "serial sink", "ordered sink"};

/* source -> stage -> sink, where @p w names the node that cancels. */
static para_graph_t *cancel_inside_graph(struct shared *s, enum where w)
{
    para_graph_t *g = new_graph();
    para_node_t *src = NULL, *mid = NULL, *k = NULL;
    if (w == IN_SOURCE)
        assert_int_equal(
            para_graph_add_source(g, "source", 8, cancel_source, s, &src), 0);
    else
        assert_int_equal(para_graph_add_range(g, "range", 0, HUGE_N, &src), 0);
    switch (w) {
    case IN_MAP:
        assert_int_equal(
            para_graph_add_map(g, "mid", 8, 8, cancel_map, s, 0, &mid), 0);
        break;
    case IN_MAP_BATCH:
        assert_int_equal(para_graph_add_map_batch(g, "mid", 8, 8,
                                                  cancel_map_batch, s, 0, &mid),
                         0);
        break;
    case IN_FILTER:
        assert_int_equal(
            para_graph_add_filter(g, "mid", 8, cancel_filter, s, 0, &mid), 0);
        break;
    case IN_FLAT_MAP: {
        para_node_desc_t d = {.name = "mid",
                              .in_size = 8,
                              .out_size = 8,
                              .ctx = s,
                              .flat_map = cancel_flat_map};
        assert_int_equal(para_graph_add(g, &d, &mid), 0);
        break;
    }
    default:
        assert_int_equal(
            para_graph_add_map(g, "mid", 8, 8, slow_map, NULL, 0, &mid), 0);
    }
    unsigned flags = w == IN_SINK_SERIAL    ? PARA_NODE_SERIAL
                     : w == IN_SINK_ORDERED ? PARA_NODE_ORDERED
                                            : PARA_NODE_PARALLEL;
    /* The sink counts; it cancels only in the sink cases. */
    assert_int_equal(
        para_graph_add_sink(g, "sink", 8, count_sink, s, flags, &k), 0);
    conn(g, src, mid);
    conn(g, mid, k);
    return g;
}

static void test_cancel_from_inside_nodes(void **state)
{
    (void)state;
    const unsigned workers[] = {1, 2, 4};
    for (unsigned wi = 0; wi < 3; wi++) {
        para_runtime_t *rt = rel_runtime(workers[wi], 0, 0);
        assert_non_null(rt);
        for (int w = 0; w < N_WHERE; w++) {
            struct shared s;
            shared_init(&s, rt, 50000);
            bool sink = w >= IN_SINK_PARALLEL;
            s.sink_cancels = sink;
            para_graph_t *g = cancel_inside_graph(&s, (enum where)w);
            uint64_t t0 = rel_now_ns();
            int rc = para_run(rt, g);
            uint64_t dt = rel_now_ns() - t0;
            if (rc != PARA_ECANCELED)
                fail_msg("cancel in %s, %u workers: %s (%s)", where_name[w],
                         workers[wi], para_err_name(rc),
                         para_runtime_errmsg(rt));
            /* The node named by w canceled (only it could), and was told
             * that a run was in progress. */
            assert_int_equal(
                atomic_load_explicit(&s.canceled, memory_order_relaxed), 1);
            assert_int_equal(
                atomic_load_explicit(&s.cancel_rc, memory_order_relaxed), 0);
            if (sink)
                assert_true(load_u64(&s.items) >= 50000);
            if (dt > rel_bound_ns(5000))
                fail_msg("cancel in %s took %.1f ms", where_name[w],
                         (double)dt / 1e6);
            para_graph_destroy(g);
        }
        check_runtime_works(rt);
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
}

/* A source that blocks until the test cancels: the other workers are parked
 * meanwhile, and must wake up for the cancellation. */
struct blocking {
    para_runtime_t *rt;
    atomic_int entered;
    atomic_int go;
    uint64_t calls; /* claim-owned */
};

static int blocking_source(void *ctx, void *out, size_t cap, size_t *n)
{
    struct blocking *b = ctx;
    uint64_t *o = out;
    if (b->calls++ == 3) {
        /* release / acquire: pairs with the test thread's loads / stores. */
        atomic_store_explicit(&b->entered, 1, memory_order_release);
        while (atomic_load_explicit(&b->go, memory_order_acquire) == 0)
            sleep_us(100);
    }
    for (size_t i = 0; i < cap; i++)
        o[i] = i;
    *n = cap;
    return 0;
}

struct blocking_run {
    para_runtime_t *rt;
    para_graph_t *g;
    int rc;
};

static void *blocking_main(void *arg)
{
    struct blocking_run *r = arg;
    r->rc = para_run(r->rt, r->g);
    return NULL;
}

static void test_cancel_while_source_blocks(void **state)
{
    (void)state;
    para_runtime_t *rt = rel_runtime(3, 0, 0);
    assert_non_null(rt);
    struct blocking b = {.rt = rt, .calls = 0};
    atomic_init(&b.entered, 0);
    atomic_init(&b.go, 0);
    struct shared s;
    shared_init(&s, rt, 0);
    para_graph_t *g = new_graph();
    para_node_t *src = NULL, *k = NULL;
    assert_int_equal(
        para_graph_add_source(g, "blocking", 8, blocking_source, &b, &src), 0);
    assert_int_equal(para_graph_add_sink(g, "sink", 8, count_sink, &s,
                                         PARA_NODE_PARALLEL, &k),
                     0);
    conn(g, src, k);
    struct blocking_run r = {.rt = rt, .g = g, .rc = 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, blocking_main, &r), 0);
    /* acquire: pairs with the source's release store of entered. */
    while (atomic_load_explicit(&b.entered, memory_order_acquire) == 0)
        sleep_us(100);
    sleep_us(20000); /* let the other workers park */
    assert_int_equal(para_run_cancel(rt), 0);
    atomic_store_explicit(&b.go, 1, memory_order_release);
    assert_int_equal(pthread_join(th, NULL), 0);
    check_canceled(rt, r.rc);
    check_runtime_works(rt);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* Cancels at random moments of short runs: each run returns 0 with the full
 * answer or PARA_ECANCELED, never hangs, and the next run is unaffected. */
static void test_cancel_random_moments(void **state)
{
    (void)state;
    para_runtime_t *rt = rel_runtime(2, 0, 0);
    assert_non_null(rt);
    enum { NR = 20000 };
    unsigned canceled = 0, completed = 0;
    uint64_t rng = 12345;
    for (int iter = 0; iter < 100; iter++) {
        struct shared s;
        shared_init(&s, rt, 0);
        para_graph_t *g = new_graph();
        para_node_t *r = NULL, *m = NULL, *k = NULL;
        assert_int_equal(para_graph_add_range(g, "range", 0, NR, &r), 0);
        assert_int_equal(
            para_graph_add_map(g, "slow", 8, 8, slow_map, NULL, 0, &m), 0);
        assert_int_equal(para_graph_add_sink(g, "sink", 8, count_sink, &s,
                                             PARA_NODE_ORDERED, &k),
                         0);
        conn(g, r, m);
        conn(g, m, k);
        struct runner run = {.rt = rt, .g = g, .rc = 1};
        atomic_init(&run.end_ns, 0);
        assert_int_equal(pthread_create(&run.thread, NULL, runner_main, &run),
                         0);
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        sleep_us((long)((rng >> 33) % 20000));
        int crc = para_run_cancel(rt);
        assert_true(crc == 0 || crc == PARA_EAGAIN);
        assert_int_equal(pthread_join(run.thread, NULL), 0);
        if (run.rc == 0) {
            completed++;
            assert_int_equal(load_u64(&s.items), NR);
            assert_int_equal(load_u64(&s.sum), (uint64_t)NR * (NR - 1) / 2);
        } else {
            check_canceled(rt, run.rc);
            assert_int_equal(crc, 0);
            assert_true(load_u64(&s.items) < NR);
            canceled++;
        }
        para_graph_destroy(g);
    }
    print_message("    100 runs: %u canceled, %u completed first\n", canceled,
                  completed);
    check_runtime_works(rt);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* A thread that cancels over and over while runs come and go: a request
 * made while one run ends must not cancel the next. */
struct spammer {
    para_runtime_t *rt;
    atomic_int stop;
    atomic_long hits;
};

static void *spammer_main(void *arg)
{
    struct spammer *sp = arg;
    /* acquire: pairs with the release store of stop. */
    while (atomic_load_explicit(&sp->stop, memory_order_acquire) == 0) {
        if (para_run_cancel(sp->rt) == 0)
            /* relaxed: a count read after the join. */
            atomic_fetch_add_explicit(&sp->hits, 1, memory_order_relaxed);
        sched_yield();
    }
    return NULL;
}

static void test_cancel_never_carries_over(void **state)
{
    (void)state;
    para_runtime_t *rt = rel_runtime(2, 0, 0);
    assert_non_null(rt);
    struct spammer sp = {.rt = rt};
    atomic_init(&sp.stop, 0);
    atomic_init(&sp.hits, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, spammer_main, &sp), 0);
    unsigned ok = 0, canceled = 0;
    for (int i = 0; i < 300; i++) {
        struct shared s;
        shared_init(&s, rt, 0);
        para_graph_t *g = new_graph();
        para_node_t *r = NULL, *k = NULL;
        assert_int_equal(para_graph_add_range(g, "range", 0, 2000, &r), 0);
        assert_int_equal(para_graph_add_sink(g, "sink", 8, count_sink, &s,
                                             PARA_NODE_PARALLEL, &k),
                         0);
        conn(g, r, k);
        int rc = para_run(rt, g);
        if (rc == 0) {
            ok++;
            assert_int_equal(load_u64(&s.items), 2000);
        } else {
            check_canceled(rt, rc);
            canceled++;
        }
        para_graph_destroy(g);
    }
    /* release: pairs with the spammer's acquire load of stop. */
    atomic_store_explicit(&sp.stop, 1, memory_order_release);
    assert_int_equal(pthread_join(th, NULL), 0);
    print_message("    300 runs under a cancel storm: %u canceled, %u "
                  "completed\n",
                  canceled, ok);
    /* With the storm over, runs complete: nothing was left pending. */
    for (int i = 0; i < 20; i++)
        check_runtime_works(rt);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* A failure and a cancellation in the same run: exactly one is reported. */
static int fail_map(void *ctx, const void *in, void *out)
{
    struct shared *s = ctx;
    memcpy(out, in, 8);
    uint64_t x;
    memcpy(&x, in, sizeof x);
    maybe_cancel(s, x + 1);
    return x == s->cancel_at ? 99 : 0;
}

static void test_cancel_and_failure(void **state)
{
    (void)state;
    para_runtime_t *rt = rel_runtime(2, 0, 0);
    assert_non_null(rt);
    struct shared s;
    shared_init(&s, rt, 10000);
    s.sink_cancels = false;
    para_graph_t *g = new_graph();
    para_node_t *r = NULL, *m = NULL, *k = NULL;
    assert_int_equal(para_graph_add_range(g, "range", 0, HUGE_N, &r), 0);
    assert_int_equal(para_graph_add_map(g, "both", 8, 8, fail_map, &s, 0, &m),
                     0);
    assert_int_equal(para_graph_add_sink(g, "sink", 8, count_sink, &s,
                                         PARA_NODE_PARALLEL, &k),
                     0);
    conn(g, r, m);
    conn(g, m, k);
    int rc = para_run(rt, g);
    assert_true(rc == PARA_ECANCELED || rc == PARA_ENODE);
    if (rc == PARA_ENODE)
        assert_non_null(strstr(para_runtime_errmsg(rt), "both"));
    else
        assert_non_null(strstr(para_runtime_errmsg(rt), "canceled"));
    check_runtime_works(rt);
    para_graph_destroy(g);
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
        cmocka_unit_test(test_cancel_without_run),
        cmocka_unit_test(test_cancel_from_thread),
        cmocka_unit_test(test_cancel_from_inside_nodes),
        cmocka_unit_test(test_cancel_while_source_blocks),
        cmocka_unit_test(test_cancel_random_moments),
        cmocka_unit_test(test_cancel_never_carries_over),
        cmocka_unit_test(test_cancel_and_failure),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
