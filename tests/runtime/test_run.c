/*
 * Tests for runtime/run.c and the scheduler behind it: graphs run to
 * completion with known answers (sums and counts), for every node shape
 * (range / array / callback sources, per-item and batch maps, filters,
 * flat-maps, sinks, collect), for fan-out, merge and several sources, for
 * ORDERED nodes, for node failures, for statistics, for several runtime
 * configurations (workers, forced batch sizes, max_batches = 1), for
 * close short runs (no sleep in the kernel between them), and for the
 * concurrency contract of para_run() (EBUSY, independent runtimes).
 *
 * CI also runs this file under ThreadSanitizer; sink contexts of SERIAL and
 * ORDERED nodes are plain (the header promises happens-before between their
 * calls), PARALLEL nodes use atomics.
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
#include <sys/resource.h>
#include <time.h>

#include <cmocka.h>

#include "para.h"

#define N 200000u

/* ---- expected values --------------------------------------------------- */

static uint64_t sum_range(uint64_t b, uint64_t e) /* sum of [b, e) */
{
    if (e <= b)
        return 0;
    return (e - b) * (b + e - 1) / 2;
}

/* ---- runtime and graph helpers ----------------------------------------- */

static uint64_t now_ns_test(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void quiet_log(int level, const char *msg, void *arg)
{
    (void)level;
    (void)msg;
    (void)arg;
}

static int group_setup(void **state)
{
    (void)state;
    para_set_log_fn(quiet_log, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    para_set_log_fn(NULL, NULL);
    return 0;
}

static para_runtime_t *make_rt_ex(unsigned workers, size_t batch_items,
                                  unsigned max_batches)
{
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = workers;
    a.batch_items = batch_items;
    a.max_batches = max_batches;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    assert_non_null(rt);
    if (workers != 0)
        assert_int_equal(para_runtime_workers(rt), workers);
    return rt;
}

static para_runtime_t *make_rt(unsigned workers)
{
    return make_rt_ex(workers, 0, 0);
}

static void destroy_rt(para_runtime_t *rt)
{
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static para_graph_t *new_graph(void)
{
    para_graph_t *g = NULL;
    assert_int_equal(para_graph_create(&g), 0);
    assert_non_null(g);
    return g;
}

static para_node_t *range(para_graph_t *g, const char *name, uint64_t b,
                          uint64_t e)
{
    para_node_t *n = NULL;
    assert_int_equal(para_graph_add_range(g, name, b, e, &n), 0);
    return n;
}

static para_node_t *map8(para_graph_t *g, const char *name, para_map_fn fn,
                         void *ctx, unsigned flags)
{
    para_node_t *n = NULL;
    assert_int_equal(para_graph_add_map(g, name, 8, 8, fn, ctx, flags, &n), 0);
    return n;
}

static para_node_t *sink8(para_graph_t *g, const char *name, para_sink_fn fn,
                          void *ctx, unsigned flags)
{
    para_node_t *n = NULL;
    assert_int_equal(para_graph_add_sink(g, name, 8, fn, ctx, flags, &n), 0);
    return n;
}

static para_node_t *add_desc(para_graph_t *g, const para_node_desc_t *d)
{
    para_node_t *n = NULL;
    assert_int_equal(para_graph_add(g, d, &n), 0);
    return n;
}

static void conn(para_graph_t *g, para_node_t *a, para_node_t *b)
{
    assert_int_equal(para_graph_connect(g, a, b), 0);
}

/* A SERIAL sink of 8-byte items that takes whole batches. */
static para_node_t *serial_batch_sink(para_graph_t *g, const char *name,
                                      para_sink_batch_fn fn, void *ctx)
{
    return add_desc(g, &(para_node_desc_t){.name = name,
                                           .flags = PARA_NODE_SERIAL,
                                           .in_size = 8,
                                           .sink_batch = fn,
                                           .ctx = ctx});
}

static void run_ok(para_runtime_t *rt, para_graph_t *g)
{
    int rc = para_run(rt, g);
    if (rc != 0)
        fail_msg("para_run() = %d (%s): %s", rc, para_err_name(rc),
                 para_runtime_errmsg(rt));
}

static void check_rt_msg(const para_runtime_t *rt, const char *a, const char *b)
{
    const char *msg = para_runtime_errmsg(rt);
    assert_non_null(msg);
    if (msg[0] == '\0')
        fail_msg("para_runtime_errmsg() is empty");
    if (a != NULL && strstr(msg, a) == NULL)
        fail_msg("para_runtime_errmsg() \"%s\" lacks \"%s\"", msg, a);
    if (b != NULL && strstr(msg, b) == NULL)
        fail_msg("para_runtime_errmsg() \"%s\" lacks \"%s\"", msg, b);
}

static uint64_t rd(const void *p)
{
    return *(const uint64_t *)p;
}

/* ---- node functions ---------------------------------------------------- */

/* SERIAL / ORDERED accumulator: plain fields. */
struct acc {
    uint64_t sum;
    uint64_t count;
    uint64_t calls; /* batch sinks: number of calls */
    size_t max_n;   /* batch sinks: largest batch seen */
};

static int sink_acc(void *ctx, const void *in)
{
    struct acc *a = ctx;
    a->sum += rd(in);
    a->count++;
    return 0;
}

static int sink_acc_batch(void *ctx, const void *in, size_t n)
{
    struct acc *a = ctx;
    const uint64_t *v = in;
    for (size_t i = 0; i < n; i++)
        a->sum += v[i];
    a->count += n;
    a->calls++;
    if (n > a->max_n)
        a->max_n = n;
    return 0;
}

/* PARALLEL accumulator. */
struct aacc {
    atomic_uint_least64_t sum;
    atomic_uint_least64_t count;
};

static void aacc_init(struct aacc *a)
{
    atomic_init(&a->sum, 0);
    atomic_init(&a->count, 0);
}

static int sink_aacc(void *ctx, const void *in)
{
    struct aacc *a = ctx;
    /* relaxed: read after para_run() returns. */
    atomic_fetch_add_explicit(&a->sum, rd(in), memory_order_relaxed);
    atomic_fetch_add_explicit(&a->count, 1, memory_order_relaxed);
    return 0;
}

static uint64_t aload(atomic_uint_least64_t *p)
{
    return atomic_load_explicit(p, memory_order_relaxed);
}

static int map_x3p1(void *ctx, const void *in, void *out)
{
    (void)ctx;
    *(uint64_t *)out = 3 * rd(in) + 1;
    return 0;
}

static int map_inc(void *ctx, const void *in, void *out)
{
    (void)ctx;
    *(uint64_t *)out = rd(in) + 1;
    return 0;
}

static int map_dbl(void *ctx, const void *in, void *out)
{
    (void)ctx;
    *(uint64_t *)out = 2 * rd(in);
    return 0;
}

static int map_sq(void *ctx, const void *in, void *out)
{
    (void)ctx;
    *(uint64_t *)out = rd(in) * rd(in);
    return 0;
}

/* Identity that burns a little time on some items, so that a parallel map
 * finishes batches out of order. */
static int map_jitter(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t x = rd(in);
    volatile uint64_t spin = 0;
    if (x % 1024 < 8)
        for (int i = 0; i < 2000; i++)
            spin += (uint64_t)i;
    /* spin is never that large; reading it keeps the loop. */
    *(uint64_t *)out = spin == UINT64_MAX ? 0 : x;
    return 0;
}

static int map_batch_inc(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    const uint64_t *a = in;
    uint64_t *b = out;
    for (size_t i = 0; i < n; i++)
        b[i] = a[i] + 1;
    return 0;
}

static int filter_even(void *ctx, const void *in)
{
    (void)ctx;
    return rd(in) % 2 == 0;
}

static int filter_none(void *ctx, const void *in)
{
    (void)ctx;
    (void)in;
    return 0;
}

static int fm_twice_emit(void *ctx, const void *in, para_emitter_t *out)
{
    (void)ctx;
    if (para_emit(out, in) != 0)
        return 1;
    if (para_emit(out, in) != 0)
        return 1;
    return 0;
}

static int fm_twice_reserve(void *ctx, const void *in, para_emitter_t *out)
{
    (void)ctx;
    unsigned char *p = para_emit_reserve(out, 2);
    if (p == NULL)
        return 1;
    memcpy(p, in, 8);
    memcpy(p + 8, in, 8);
    return 0;
}

/* x % 4 copies of x: zero for some inputs. */
static int fm_mod4(void *ctx, const void *in, para_emitter_t *out)
{
    (void)ctx;
    for (uint64_t k = 0; k < rd(in) % 4; k++)
        if (para_emit(out, in) != 0)
            return 1;
    return 0;
}

/* 100 items per input (x*100 + k): outputs far larger than any batch. */
static int fm_fanout100(void *ctx, const void *in, para_emitter_t *out)
{
    (void)ctx;
    unsigned char *p = para_emit_reserve(out, 100);
    if (p == NULL)
        return 1;
    for (uint64_t k = 0; k < 100; k++) {
        uint64_t v = rd(in) * 100 + k;
        memcpy(p + 8 * k, &v, 8);
    }
    return 0;
}

/* Batch flat-map: the odd inputs, mixing emit and reserve. */
static int fmb_odds(void *ctx, const void *in, size_t n, para_emitter_t *out)
{
    (void)ctx;
    const uint64_t *v = in;
    for (size_t i = 0; i < n; i++) {
        if (v[i] % 2 == 0)
            continue;
        if (v[i] % 4 == 1) {
            if (para_emit(out, &v[i]) != 0)
                return 1;
        } else {
            void *p = para_emit_reserve(out, 1);
            if (p == NULL)
                return 1;
            memcpy(p, &v[i], 8);
        }
    }
    return 0;
}

/* Callback source: [0, n) in chunks of at most `chunk` items. */
struct cbsrc {
    atomic_int inside; /* overlap detector: one caller at a time */
    atomic_ulong overlaps;
    uint64_t next, n;
    uint64_t chunk;
    unsigned long calls;
    unsigned long after_end; /* calls after it returned 0 items */
    size_t max_cap, min_cap;
    bool ended;
    int fail_rc; /* returned once next >= fail_after, if non-zero */
    uint64_t fail_after;
};

static void cbsrc_init(struct cbsrc *c, uint64_t n, uint64_t chunk)
{
    memset(c, 0, sizeof *c);
    atomic_init(&c->inside, 0);
    atomic_init(&c->overlaps, 0);
    c->n = n;
    c->chunk = chunk;
    c->min_cap = SIZE_MAX;
}

static int cb_source_body(struct cbsrc *c, void *out, size_t cap,
                          size_t *n_written);

/* The open hook: every run starts from item 0 (counted in `opens`). */
static unsigned long cbsrc_opens;
static int cbsrc_open(void *ctx)
{
    struct cbsrc *c = ctx;
    c->next = 0;
    c->ended = false;
    cbsrc_opens++;
    return 0;
}

static int cb_source(void *ctx, void *out, size_t cap, size_t *n_written)
{
    struct cbsrc *c = ctx;
    /* relaxed: only detects overlapping calls; counted, read after the run */
    if (atomic_exchange_explicit(&c->inside, 1, memory_order_relaxed) != 0)
        atomic_fetch_add_explicit(&c->overlaps, 1, memory_order_relaxed);
    int rc = cb_source_body(c, out, cap, n_written);
    atomic_store_explicit(&c->inside, 0, memory_order_relaxed);
    return rc;
}

static int cb_source_body(struct cbsrc *c, void *out, size_t cap,
                          size_t *n_written)
{
    c->calls++;
    if (c->ended)
        c->after_end++;
    if (cap > c->max_cap)
        c->max_cap = cap;
    if (cap < c->min_cap)
        c->min_cap = cap;
    if (c->fail_rc != 0 && c->next >= c->fail_after)
        return c->fail_rc;
    uint64_t k = c->n - c->next;
    if (k > cap)
        k = cap;
    if (k > c->chunk)
        k = c->chunk;
    uint64_t *o = out;
    for (uint64_t i = 0; i < k; i++)
        o[i] = c->next++;
    *n_written = (size_t)k;
    if (k == 0)
        c->ended = true;
    return 0;
}

/* An idle runtime uses no CPU: after a run, its workers sleep. Measured as
 * process CPU time over a 300 ms idle window (a spinning worker would burn
 * about 300 ms per worker). */
static double process_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_idle_runtime_uses_no_cpu(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(4);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *m = map8(g, "x3p1", map_x3p1, NULL, PARA_NODE_PARALLEL);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, r, m);
    conn(g, m, k);
    run_ok(rt, g);
    double before = process_cpu_seconds();
    struct timespec nap = {.tv_sec = 0, .tv_nsec = 300 * 1000 * 1000};
    nanosleep(&nap, NULL);
    double used = process_cpu_seconds() - before;
    /* Generous for sanitizer builds and a loaded machine; a single spinning
     * worker alone would use about 0.3 s. */
    assert_true(used < 0.05);
    para_graph_destroy(g);
    destroy_rt(rt);
}

/* Regression: a failure while several serial and ordered nodes are being
 * drained. The holder of a node used to read its reorder buffer after
 * releasing the claim (a data race TSan reported). Chain of alternating
 * SERIAL / ORDERED copies plus a failing branch, batch size 1, 4 workers. */
static _Atomic unsigned long abort_seen;

static int map_copy(void *ctx, const void *in, void *out)
{
    (void)ctx;
    memcpy(out, in, 8);
    return 0;
}

static int map_fail_at_3000(void *ctx, const void *in, void *out)
{
    (void)ctx;
    memcpy(out, in, 8);
    return atomic_fetch_add_explicit(&abort_seen, 1, memory_order_relaxed) ==
                   3000
               ? 7
               : 0;
}

static int sink_nothing(void *ctx, const void *in)
{
    (void)ctx;
    (void)in;
    return 0;
}

static void test_failure_while_serial_nodes_drain(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt_ex(4, 1, 64);
    for (int it = 0; it < 150; it++) {
        atomic_store_explicit(&abort_seen, 0, memory_order_relaxed);
        para_graph_t *g = new_graph();
        para_node_t *src = range(g, "src", 0, 6000);
        para_node_t *fail = map8(g, "fail", map_fail_at_3000, NULL, 0);
        conn(g, src, fail);
        para_node_t *prev = src;
        for (int i = 0; i < 6; i++) {
            char name[8];
            snprintf(name, sizeof name, "s%d", i);
            para_node_t *m = map8(g, name, map_copy, NULL,
                                  i % 2 ? PARA_NODE_ORDERED : PARA_NODE_SERIAL);
            conn(g, prev, m);
            prev = m;
        }
        para_node_t *k = sink8(g, "k", sink_nothing, NULL, PARA_NODE_ORDERED);
        conn(g, prev, k);
        conn(g, fail, k);
        assert_int_equal(para_run(rt, g), PARA_ENODE);
        assert_non_null(strstr(para_runtime_errmsg(rt), "'fail'"));
        para_graph_destroy(g);
    }
    destroy_rt(rt);
}

/* Pinning is visible from inside the workers: with pin = "cores" every
 * worker thread's affinity is narrower than the machine (one core's PUs);
 * with pin = "none" it is the whole allowed set. The thread calling
 * para_run() works as worker 0 and is never pinned: it is not ours. */
struct affinity_seen {
    pthread_mutex_t lock;
    pthread_t caller;
    int max_cpus; /* largest CPU_COUNT seen in a node function */
    int min_cpus;
    int seen;             /* items run by worker threads */
    cpu_set_t worker_set; /* the last affinity a worker thread had */
    pthread_t worker;     /* a worker thread that ran items */
    bool have_worker;
    /* Set by the test: the caller's first item of the run records that
     * worker thread's affinity (start_set), then clears it. */
    bool check_start;
    int start_rc; /* pthread_getaffinity_np() for start_set */
    cpu_set_t start_set;
};

static int map_record_affinity(void *ctx, const void *in, void *out)
{
    struct affinity_seen *a = ctx;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (!pthread_equal(pthread_self(), a->caller) &&
        sched_getaffinity(0, sizeof set, &set) == 0) {
        int c = CPU_COUNT(&set);
        pthread_mutex_lock(&a->lock);
        a->seen++;
        if (c > a->max_cpus)
            a->max_cpus = c;
        if (c < a->min_cpus)
            a->min_cpus = c;
        a->worker_set = set;
        a->worker = pthread_self();
        a->have_worker = true;
        pthread_mutex_unlock(&a->lock);
    } else if (pthread_equal(pthread_self(), a->caller) && a->check_start) {
        a->check_start = false; /* only the caller reads and writes it */
        pthread_mutex_lock(&a->lock);
        pthread_t worker = a->worker;
        pthread_mutex_unlock(&a->lock);
        CPU_ZERO(&a->start_set);
        a->start_rc =
            pthread_getaffinity_np(worker, sizeof a->start_set, &a->start_set);
    }
    /* About 10 us an item: the worker threads join long before the end. */
    uint64_t t0 = now_ns_test();
    while (now_ns_test() - t0 < 10000)
        ;
    memcpy(out, in, 8);
    return 0;
}

static int run_affinity(const char *pin, struct affinity_seen *a)
{
    para_runtime_attr_t attr;
    assert_int_equal(para_runtime_attr_init(&attr), 0);
    attr.pin = pin;
    attr.batch_items = 1;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &attr), 0);
    para_graph_t *g = new_graph();
    struct acc sum = {0};
    a->max_cpus = 0;
    a->min_cpus = 1 << 20;
    a->seen = 0;
    para_node_t *r = range(g, "range", 0, 2000);
    para_node_t *m = map8(g, "affinity", map_record_affinity, a, 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &sum, PARA_NODE_SERIAL);
    conn(g, r, m);
    conn(g, m, k);
    run_ok(rt, g);
    int workers = (int)para_runtime_workers(rt);
    para_graph_destroy(g);
    destroy_rt(rt);
    return workers;
}

static void test_workers_are_pinned(void **state)
{
    (void)state;
    cpu_set_t all;
    CPU_ZERO(&all);
    assert_int_equal(sched_getaffinity(0, sizeof all, &all), 0);
    int allowed = CPU_COUNT(&all);
    struct affinity_seen a = {.lock = PTHREAD_MUTEX_INITIALIZER,
                              .caller = pthread_self()};

    /* A run lasts about 20 ms; on a busy machine (ctest -j2) the worker
     * thread may get no core before the caller has done every item, so a
     * run is repeated, up to 50 times, until a worker thread ran some. */
    int workers = 0;
    for (int i = 0; i < 50 && (i == 0 || a.seen == 0); i++)
        workers = run_affinity("none", &a);
    if (workers < 2)
        skip(); /* worker 0 only: the caller's thread */
    assert_true(a.seen > 0);
    assert_int_equal(a.max_cpus, allowed);

    for (int i = 0; i < 50 && (i == 0 || a.seen == 0); i++)
        workers = run_affinity("cores", &a);
    if (allowed < 2 || workers < 2)
        skip(); /* one CPU: pinned and unpinned look the same */
    assert_true(a.seen > 0);
    assert_true(a.max_cpus < allowed);
    assert_true(a.min_cpus >= 1);

    /* An unknown mode is refused. */
    para_runtime_attr_t attr;
    assert_int_equal(para_runtime_attr_init(&attr), 0);
    attr.pin = "sideways";
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &attr), PARA_EINVAL);
    assert_null(rt);
}

/* The calling thread keeps its core: para_run()'s thread, moved onto the
 * core the pinned worker thread is bound to, works the run there, and the
 * worker thread is bound to the caller's other core instead (without it,
 * the two shared one core until the kernel moved the caller: 1.4-4.9 ms of
 * a first 10 ms run on a 2-core VM); moved back, the worker returns. The
 * caller binds the worker thread before waking it: at the caller's first
 * item the worker is already elsewhere (when the worker bound itself, it
 * first had to get the caller's core to run on: 0.3-3 ms). */
static int first_cpu(const cpu_set_t *set)
{
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, set))
            return c;
    return -1;
}

static void pin_caller(int cpu)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
}

/* Runs @p g until a worker thread ran some of its items (up to 50 runs):
 * the worker's affinity then. */
static cpu_set_t worker_affinity(para_runtime_t *rt, para_graph_t *g,
                                 struct affinity_seen *a)
{
    a->seen = 0;
    for (int i = 0; i < 50 && a->seen == 0; i++)
        run_ok(rt, g);
    assert_true(a->seen > 0);
    return a->worker_set;
}

static void test_caller_keeps_its_core(void **state)
{
    (void)state;
    cpu_set_t all;
    CPU_ZERO(&all);
    assert_int_equal(sched_getaffinity(0, sizeof all, &all), 0);
    int allowed = CPU_COUNT(&all);
    if (allowed < 2)
        skip();
    para_runtime_attr_t attr;
    assert_int_equal(para_runtime_attr_init(&attr), 0);
    attr.pin = "cores";
    attr.workers = 2;
    attr.batch_items = 1;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &attr), 0);
    struct affinity_seen a = {.lock = PTHREAD_MUTEX_INITIALIZER,
                              .caller = pthread_self()};
    a.min_cpus = 1 << 20;
    para_graph_t *g = new_graph();
    struct acc sum = {0};
    para_node_t *r = range(g, "range", 0, 2000);
    para_node_t *m = map8(g, "affinity", map_record_affinity, &a, 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &sum, PARA_NODE_SERIAL);
    conn(g, r, m);
    conn(g, m, k);

    cpu_set_t own = worker_affinity(rt, g, &a);
    if (CPU_COUNT(&own) >= allowed) {
        /* not pinned here (one core with several PUs) */
        para_graph_destroy(g);
        destroy_rt(rt);
        skip();
    }
    int x = first_cpu(&own);
    pin_caller(x); /* the caller on the worker's core */
    assert_true(a.have_worker);
    a.check_start = true;
    cpu_set_t moved = worker_affinity(rt, g, &a);
    assert_false(a.check_start); /* the caller ran an item */
    assert_int_equal(a.start_rc, 0);
    assert_false(CPU_ISSET(x, &a.start_set)); /* moved before it woke */
    assert_false(CPU_ISSET(x, &moved));
    assert_true(CPU_COUNT(&moved) < allowed);
    int y = first_cpu(&moved);
    pin_caller(y); /* and on the core it moved to */
    cpu_set_t back = worker_affinity(rt, g, &a);
    assert_false(CPU_ISSET(y, &back));
    assert_true(CPU_EQUAL(&back, &own));
    assert_int_equal(sched_setaffinity(0, sizeof all, &all), 0);
    assert_int_equal(sum.count % 2000, 0);
    para_graph_destroy(g);
    destroy_rt(rt);
}

/* The thread calling para_run() works as worker 0: with one worker it runs
 * every task itself, run after run, and the run's statistics count them. */
struct thread_seen {
    pthread_t caller;
    uint64_t others; /* items run by any other thread */
};

static int map_record_thread(void *ctx, const void *in, void *out)
{
    struct thread_seen *t = ctx;
    if (!pthread_equal(pthread_self(), t->caller))
        t->others++; /* one worker: no concurrent writer */
    memcpy(out, in, 8);
    return 0;
}

static void test_caller_works_as_worker(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(1);
    para_graph_t *g = new_graph();
    struct acc sum = {0};
    struct thread_seen t = {.caller = pthread_self()};
    para_node_t *r = range(g, "range", 0, 1000);
    para_node_t *m = map8(g, "who", map_record_thread, &t, 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &sum, PARA_NODE_SERIAL);
    conn(g, r, m);
    conn(g, m, k);
    for (int i = 0; i < 50; i++) {
        sum.sum = sum.count = 0;
        run_ok(rt, g);
        assert_int_equal(sum.count, 1000);
        assert_int_equal(sum.sum, sum_range(0, 1000));
    }
    assert_int_equal(t.others, 0);
    para_worker_stats_t ws;
    assert_int_equal(para_worker_stats(rt, 0, &ws), 0);
    assert_true(ws.tasks > 0);
    para_graph_destroy(g);
    destroy_rt(rt);
}

/* Close short runs cost no sleep in the kernel: between runs the other
 * worker spins for the next one on a hint stored after para_run()'s thread
 * released the runtime's lock. (When it spun on the generation itself, it
 * reached for the lock while the caller still held it and slept: 0.16-0.35
 * voluntary context switches per run of this graph on a loaded 2-core VM,
 * 0.01-0.02 since.) Process-wide voluntary switches (a thread that sleeps)
 * over 2,000 runs of range 0..500 -> parallel map -> serial sink must stay
 * under 0.1 per run (in one of up to three measurements). Skipped under
 * sanitizers (they slow the runs apart by more than the spin waits) and with
 * fewer than 2 CPUs. */
static int map_spin(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t x = *(const uint64_t *)in;
    for (int i = 0; i < 32; i++)
        x = x * 6364136223846793005u + 1442695040888963407u;
    memcpy(out, &x, 8);
    return 0;
}

static void test_short_runs_do_not_sleep(void **state)
{
    (void)state;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    skip();
#endif
    /* Valgrind runs one thread at a time, so a waiting worker must yield
     * the core: it preloads its vgpreload_*.so. */
    const char *pre = getenv("LD_PRELOAD");
    if (pre != NULL && strstr(pre, "vgpreload") != NULL)
        skip();
    cpu_set_t online;
    if (sched_getaffinity(0, sizeof online, &online) != 0 ||
        CPU_COUNT(&online) < 2)
        skip();
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc sum = {0};
    para_node_t *r = range(g, "range", 0, 500);
    para_node_t *m = map8(g, "spin", map_spin, NULL, 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &sum, PARA_NODE_SERIAL);
    conn(g, r, m);
    conn(g, m, k);
    for (int i = 0; i < 50; i++) /* warm: batch sizes learned */
        run_ok(rt, g);
    /* Up to three measurements: one is enough. Idle, a measurement gives
     * 0.001-0.012; beside another test that keeps both cores busy (ctest
     * -j2 ran the OpenCL `resident` tests beside it in CI run 63) one gave
     * 0.102, as the worker spinning for the next run is kept off its core
     * past the spin and sleeps. The fault this test catches slept in every
     * run: 0.16-0.35 in every measurement. */
    double voluntary = 1.0;
    for (int attempt = 0; attempt < 3 && voluntary >= 0.1; attempt++) {
        struct rusage u0, u1;
        assert_int_equal(getrusage(RUSAGE_SELF, &u0), 0);
        const int runs = 2000;
        for (int i = 0; i < runs; i++) {
            sum.count = 0;
            run_ok(rt, g);
            assert_int_equal(sum.count, 500);
        }
        assert_int_equal(getrusage(RUSAGE_SELF, &u1), 0);
        voluntary = (double)(u1.ru_nvcsw - u0.ru_nvcsw) / runs;
        print_message("short runs: %.3f voluntary context switches per run\n",
                      voluntary);
    }
    assert_true(voluntary < 0.1);
    para_graph_destroy(g);
    destroy_rt(rt);
}

/* A node's min_batch hint: the source upstream pulls at least that many
 * items per batch (while it has them), though the node is cheap and the
 * learned size alone would start at 16; and a deep chain of cheap stages
 * gets source batches of more than the ramp's start. */
struct small_batches {
    uint64_t small; /* batches under the hint */
    uint64_t batches;
};

static int sink_count_small(void *ctx, const void *in, size_t n)
{
    (void)in;
    struct small_batches *b = ctx; /* SERIAL: one caller at a time */
    b->batches++;
    if (n < 500)
        b->small++;
    return 0;
}

static void test_node_min_batch_hint(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct small_batches b = {0};
    para_node_t *r = range(g, "range", 0, 20000);
    para_node_t *m = add_desc(g, &(para_node_desc_t){.name = "x3p1",
                                                     .in_size = 8,
                                                     .out_size = 8,
                                                     .map = map_x3p1,
                                                     .min_batch = 500});
    para_node_t *k = serial_batch_sink(g, "count", sink_count_small, &b);
    conn(g, r, m);
    conn(g, m, k);
    for (int i = 0; i < 5; i++) {
        b.small = b.batches = 0;
        run_ok(rt, g);
        /* The last pull may find fewer than 500 items left: one batch. */
        assert_true(b.small <= 1);
        assert_true(b.batches >= 2 && b.batches <= 40);
    }
    para_graph_destroy(g);
    destroy_rt(rt);
}

/* A graph run again on the same runtime starts from the batch size its
 * last run learned, instead of the ramp's 16 items; on another runtime,
 * or once its edges change, it learns afresh. One worker, so that no end
 * share cuts a batch and the serial sink sees batches in pull order. */
struct first_batch {
    size_t first; /* items in the first batch the sink saw */
    size_t batches;
};

static int sink_first_batch(void *ctx, const void *in, size_t n)
{
    (void)in;
    struct first_batch *f = ctx; /* SERIAL: one caller at a time */
    if (f->batches++ == 0)
        f->first = n;
    return 0;
}

static void run_first_batch(para_runtime_t *rt, para_graph_t *g,
                            struct first_batch *f)
{
    *f = (struct first_batch){0, 0};
    run_ok(rt, g);
}

static void test_rerun_starts_from_learned_size(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(1);
    para_graph_t *g = new_graph();
    struct first_batch f;
    para_node_t *r = range(g, "range", 0, 200000);
    para_node_t *m = map8(g, "x3p1", map_x3p1, NULL, 0);
    para_node_t *k = serial_batch_sink(g, "first", sink_first_batch, &f);
    conn(g, r, m);
    conn(g, m, k);
    run_first_batch(rt, g, &f);
    assert_int_equal(f.first, 16); /* nothing learned yet: the ramp */
    const size_t ramped = f.batches;
    run_first_batch(rt, g, &f);
    print_message("rerun: first batch %zu items, %zu batches (first run "
                  "%zu)\n",
                  f.first, f.batches, ramped);
    assert_true(f.first > 16);
    assert_true(f.batches < ramped);

    /* Another runtime learns for itself. */
    para_runtime_t *other = make_rt(1);
    run_first_batch(other, g, &f);
    assert_int_equal(f.first, 16);
    destroy_rt(other);

    /* New edges: what was learned was for the old graph. */
    struct first_batch f2;
    para_node_t *k2 = serial_batch_sink(g, "first2", sink_first_batch, &f2);
    conn(g, m, k2);
    f2 = (struct first_batch){0, 0};
    run_first_batch(rt, g, &f);
    assert_int_equal(f.first, 16);
    assert_int_equal(f2.first, 16);
    para_graph_destroy(g);
    destroy_rt(rt);
}

/* ---- basic runs -------------------------------------------------------- */

static void test_range_map_sink(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(0);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *m = map8(g, "x3p1", map_x3p1, NULL, PARA_NODE_PARALLEL);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, r, m);
    conn(g, m, k);
    run_ok(rt, g);
    assert_int_equal(a.count, N);
    assert_int_equal(a.sum, 3 * sum_range(0, N) + N);
    assert_string_equal(para_runtime_errmsg(rt), "");
    para_graph_destroy(g);
    destroy_rt(rt);
}

static void test_range_offset(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "range", 1000003, 1000003 + 77777);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, r, k);
    run_ok(rt, g);
    assert_int_equal(a.count, 77777);
    assert_int_equal(a.sum, sum_range(1000003, 1000003 + 77777));
    para_graph_destroy(g);
    destroy_rt(rt);
}

struct triple {
    uint32_t a, b, c;
};

static int sink_triple(void *ctx, const void *in)
{
    struct acc *a = ctx;
    const struct triple *t = in;
    a->sum += (uint64_t)t->a + t->b + t->c;
    a->count++;
    return 0;
}

/* A serial sink fed by an array source (not fused: serial nodes end
 * chains) reads its items in the array itself: batches of an array source
 * are views of it, not copies. */
struct in_place {
    struct acc acc;
    const struct triple *base;
    size_t n, outside;
};

static int sink_triple_in_place(void *ctx, const void *in)
{
    struct in_place *p = ctx;
    const struct triple *t = in;
    if (t < p->base || t >= p->base + p->n)
        p->outside++;
    return sink_triple(&p->acc, in);
}

static void test_array_source(void **state)
{
    (void)state;
    enum { M = 50000 };
    struct triple *items = malloc(M * sizeof *items);
    assert_non_null(items);
    uint64_t expect = 0;
    for (uint32_t i = 0; i < M; i++) {
        items[i] = (struct triple){i, 2 * i, i % 7};
        expect += (uint64_t)i + 2 * i + i % 7;
    }
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *s = NULL, *k = NULL;
    assert_int_equal(
        para_graph_add_array(g, "array", items, M, sizeof *items, &s), 0);
    assert_int_equal(para_graph_add_sink(g, "sum", sizeof(struct triple),
                                         sink_triple, &a, PARA_NODE_SERIAL, &k),
                     0);
    conn(g, s, k);
    run_ok(rt, g);
    assert_int_equal(a.count, M);
    assert_int_equal(a.sum, expect);

    /* The same, reading in place. */
    para_graph_t *g3 = new_graph();
    struct in_place p = {.base = items, .n = M};
    assert_int_equal(
        para_graph_add_array(g3, "array", items, M, sizeof *items, &s), 0);
    assert_int_equal(para_graph_add_sink(g3, "sum", sizeof(struct triple),
                                         sink_triple_in_place, &p,
                                         PARA_NODE_SERIAL, &k),
                     0);
    conn(g3, s, k);
    run_ok(rt, g3);
    assert_int_equal(p.acc.count, M);
    assert_int_equal(p.acc.sum, expect);
    assert_int_equal(p.outside, 0);
    para_graph_destroy(g3);

    /* An empty array source. */
    para_graph_t *g2 = new_graph();
    struct acc b = {0};
    assert_int_equal(
        para_graph_add_array(g2, "empty", items, 0, sizeof *items, &s), 0);
    assert_int_equal(para_graph_add_sink(g2, "sum", sizeof(struct triple),
                                         sink_triple, &b, PARA_NODE_SERIAL, &k),
                     0);
    conn(g2, s, k);
    run_ok(rt, g2);
    assert_int_equal(b.count, 0);

    para_graph_destroy(g);
    para_graph_destroy(g2);
    destroy_rt(rt);
    free(items);
}

static void test_callback_source(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct cbsrc c;
    cbsrc_init(&c, N, 77); /* short writes must not end the source */
    struct acc a = {0};
    para_node_t *s = NULL;
    assert_int_equal(para_graph_add_source(g, "cb", 8, cb_source, &c, &s), 0);
    para_node_t *m = map8(g, "inc", map_inc, NULL, 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, s, m);
    conn(g, m, k);
    run_ok(rt, g);
    assert_int_equal(a.count, N);
    assert_int_equal(a.sum, sum_range(0, N) + N);
    assert_true(c.ended);
    assert_int_equal(c.after_end, 0);
    assert_int_equal(atomic_load_explicit(&c.overlaps, memory_order_relaxed),
                     0);
    assert_true(c.min_cap >= 1);
    /* At least ceil(N / 77) calls with items, plus the one that ended it. */
    assert_true(c.calls >= (N + 76) / 77 + 1);
    para_graph_destroy(g);
    destroy_rt(rt);
}

static void test_filter(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *f = NULL;
    assert_int_equal(
        para_graph_add_filter(g, "even", 8, filter_even, NULL, 0, &f), 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, r, f);
    conn(g, f, k);
    run_ok(rt, g);
    assert_int_equal(a.count, N / 2);
    assert_int_equal(a.sum, 2 * sum_range(0, N / 2));

    /* A filter that drops everything. */
    para_graph_t *g2 = new_graph();
    struct acc b = {0};
    r = range(g2, "range", 0, N);
    assert_int_equal(
        para_graph_add_filter(g2, "none", 8, filter_none, NULL, 0, &f), 0);
    k = sink8(g2, "sum", sink_acc, &b, PARA_NODE_SERIAL);
    conn(g2, r, f);
    conn(g2, f, k);
    run_ok(rt, g2);
    assert_int_equal(b.count, 0);
    para_graph_destroy(g);
    para_graph_destroy(g2);
    destroy_rt(rt);
}

static void run_flat_map(para_runtime_t *rt, para_flat_map_fn fn, uint64_t n,
                         uint64_t exp_count, uint64_t exp_sum)
{
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "range", 0, n);
    para_node_desc_t d = {
        .name = "flat", .in_size = 8, .out_size = 8, .flat_map = fn};
    para_node_t *f = add_desc(g, &d);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, r, f);
    conn(g, f, k);
    run_ok(rt, g);
    assert_int_equal(a.count, exp_count);
    assert_int_equal(a.sum, exp_sum);
    para_graph_destroy(g);
}

static void test_flat_map(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    run_flat_map(rt, fm_twice_emit, N, 2 * N, 2 * sum_range(0, N));
    run_flat_map(rt, fm_twice_reserve, N, 2 * N, 2 * sum_range(0, N));
    uint64_t c = 0, s = 0;
    for (uint64_t x = 0; x < N; x++) {
        c += x % 4;
        s += x * (x % 4);
    }
    run_flat_map(rt, fm_mod4, N, c, s);
    /* 10000 inputs -> 1,000,000 outputs: the values are [0, 1e6). */
    run_flat_map(rt, fm_fanout100, 10000, 1000000, sum_range(0, 1000000));
    destroy_rt(rt);
}

static void test_batch_functions(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "range", 0, N);
    para_node_desc_t dm = {.name = "inc_batch",
                           .in_size = 8,
                           .out_size = 8,
                           .map_batch = map_batch_inc};
    para_node_t *m = add_desc(g, &dm);
    para_node_t *k = serial_batch_sink(g, "sum_batch", sink_acc_batch, &a);
    conn(g, r, m);
    conn(g, m, k);
    run_ok(rt, g);
    assert_int_equal(a.count, N);
    assert_int_equal(a.sum, sum_range(0, N) + N);
    assert_true(a.calls >= 1);
    assert_true(a.calls <= N);

    /* flat_map_batch */
    para_graph_t *g2 = new_graph();
    struct acc b = {0};
    r = range(g2, "range", 0, N);
    para_node_desc_t df = {.name = "odds",
                           .in_size = 8,
                           .out_size = 8,
                           .flat_map_batch = fmb_odds};
    para_node_t *f = add_desc(g2, &df);
    k = sink8(g2, "sum", sink_acc, &b, PARA_NODE_SERIAL);
    conn(g2, r, f);
    conn(g2, f, k);
    run_ok(rt, g2);
    assert_int_equal(b.count, N / 2);
    assert_int_equal(b.sum, sum_range(0, N) - 2 * sum_range(0, N / 2));
    para_graph_destroy(g);
    para_graph_destroy(g2);
    destroy_rt(rt);
}

static void test_fan_out(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0}, b = {0};
    struct aacc c;
    aacc_init(&c);
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *m = map8(g, "sq", map_sq, NULL, 0);
    para_node_t *k1 = sink8(g, "sum_a", sink_acc, &a, PARA_NODE_SERIAL);
    para_node_t *k2 = sink8(g, "sum_b", sink_acc, &b, PARA_NODE_SERIAL);
    para_node_t *k3 = sink8(g, "sum_c", sink_aacc, &c, PARA_NODE_PARALLEL);
    conn(g, r, m);
    conn(g, m, k1);
    conn(g, m, k2);
    conn(g, r, k3);
    run_ok(rt, g);
    uint64_t sq = 0;
    for (uint64_t x = 0; x < N; x++)
        sq += x * x;
    assert_int_equal(a.count, N);
    assert_int_equal(b.count, N);
    assert_int_equal(a.sum, sq);
    assert_int_equal(b.sum, sq);
    assert_int_equal(aload(&c.count), N);
    assert_int_equal(aload(&c.sum), sum_range(0, N));
    para_graph_destroy(g);
    destroy_rt(rt);
}

static void test_merge(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *m1 = map8(g, "inc", map_inc, NULL, 0);
    para_node_t *m2 = map8(g, "dbl", map_dbl, NULL, 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, r, m1);
    conn(g, r, m2);
    conn(g, m1, k);
    conn(g, m2, k);
    run_ok(rt, g);
    assert_int_equal(a.count, 2 * N);
    assert_int_equal(a.sum, (sum_range(0, N) + N) + 2 * sum_range(0, N));
    para_graph_destroy(g);
    destroy_rt(rt);
}

static void test_two_sources(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    struct cbsrc c;
    cbsrc_init(&c, N, UINT64_MAX);                /* [0, N) */
    para_node_t *r = range(g, "range", N, 3 * N); /* [N, 3N) */
    para_node_t *s = NULL;
    assert_int_equal(para_graph_add_source(g, "cb", 8, cb_source, &c, &s), 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, r, k);
    conn(g, s, k);
    run_ok(rt, g);
    assert_int_equal(a.count, 3 * N);
    assert_int_equal(a.sum, sum_range(0, 3 * N));
    assert_int_equal(c.after_end, 0);
    assert_int_equal(atomic_load_explicit(&c.overlaps, memory_order_relaxed),
                     0);
    para_graph_destroy(g);
    destroy_rt(rt);
}

/* ---- order ------------------------------------------------------------- */

struct order_check {
    uint64_t expect; /* next value expected */
    uint64_t count;
    uint64_t bad;       /* out-of-order items */
    uint64_t first_bad; /* index of the first one */
};

static int sink_in_order(void *ctx, const void *in)
{
    struct order_check *o = ctx;
    if (rd(in) != o->expect) {
        if (o->bad == 0)
            o->first_bad = o->count;
        o->bad++;
    }
    o->expect = rd(in) + 1;
    o->count++;
    return 0;
}

static void test_ordered_sink(void **state)
{
    (void)state;
    enum { NO = 100000 };
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct order_check o = {0};
    para_node_t *r = range(g, "range", 0, NO);
    para_node_t *m = map8(g, "jitter", map_jitter, NULL, PARA_NODE_PARALLEL);
    para_node_t *k = sink8(g, "in_order", sink_in_order, &o, PARA_NODE_ORDERED);
    conn(g, r, m);
    conn(g, m, k);
    for (int rep = 0; rep < 3; rep++) {
        memset(&o, 0, sizeof o);
        run_ok(rt, g);
        if (o.bad != 0)
            fail_msg("%llu items out of order, first at index %llu",
                     (unsigned long long)o.bad,
                     (unsigned long long)o.first_bad);
        assert_int_equal(o.count, NO);
        assert_int_equal(o.expect, NO);
    }
    para_graph_destroy(g);
    destroy_rt(rt);
}

static int sink_in_order_step2(void *ctx, const void *in)
{
    struct order_check *o = ctx;
    if (rd(in) != o->expect) {
        if (o->bad == 0)
            o->first_bad = o->count;
        o->bad++;
    }
    o->expect = rd(in) + 2;
    o->count++;
    return 0;
}

static void test_ordered_after_filter(void **state)
{
    (void)state;
    /* Dropped items leave holes in the sequence; the ordered node must not
     * wait on them and must see the survivors (0, 2, 4, ...) in order. */
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct order_check o = {0};
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *m = map8(g, "jitter", map_jitter, NULL, 0);
    para_node_t *f = NULL;
    assert_int_equal(
        para_graph_add_filter(g, "even", 8, filter_even, NULL, 0, &f), 0);
    para_node_t *k =
        sink8(g, "in_order", sink_in_order_step2, &o, PARA_NODE_ORDERED);
    conn(g, r, m);
    conn(g, m, f);
    conn(g, f, k);
    run_ok(rt, g);
    if (o.bad != 0)
        fail_msg("%llu items out of order, first at index %llu",
                 (unsigned long long)o.bad, (unsigned long long)o.first_bad);
    assert_int_equal(o.count, N / 2);
    assert_int_equal(o.expect, N);
    para_graph_destroy(g);
    destroy_rt(rt);
}

/* ORDERED node with two inputs from one source (diamond): on each input the
 * items arrive in source order. Input "even" carries 2x, "odd" 2x+1. */
struct diamond_check {
    uint64_t next_even, next_odd;
    uint64_t count;
    uint64_t bad;
};

static int map_2x1(void *ctx, const void *in, void *out)
{
    (void)ctx;
    *(uint64_t *)out = 2 * rd(in) + 1;
    return 0;
}

static int sink_diamond(void *ctx, const void *in)
{
    struct diamond_check *d = ctx;
    uint64_t v = rd(in);
    uint64_t *next = (v % 2 == 0) ? &d->next_even : &d->next_odd;
    if (v / 2 != *next)
        d->bad++;
    *next = v / 2 + 1;
    d->count++;
    return 0;
}

static void test_ordered_diamond(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct diamond_check d = {0};
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *j = map8(g, "jitter", map_jitter, NULL, 0);
    para_node_t *e = map8(g, "even", map_dbl, NULL, 0);
    para_node_t *o = map8(g, "odd", map_2x1, NULL, 0);
    para_node_t *k = sink8(g, "both", sink_diamond, &d, PARA_NODE_ORDERED);
    conn(g, r, j);
    conn(g, j, e);
    conn(g, j, o);
    conn(g, e, k);
    conn(g, o, k);
    run_ok(rt, g);
    assert_int_equal(d.count, 2 * N);
    assert_int_equal(d.bad, 0);
    assert_int_equal(d.next_even, N);
    assert_int_equal(d.next_odd, N);
    para_graph_destroy(g);
    destroy_rt(rt);
}

/* ---- collect ----------------------------------------------------------- */

static void test_collect(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    uint64_t *arr = calloc(N, sizeof *arr);
    assert_non_null(arr);
    size_t count = 12345;
    para_graph_t *g = new_graph();
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *m = map8(g, "sq", map_sq, NULL, 0);
    para_node_t *c = NULL;
    assert_int_equal(
        para_graph_add_collect(g, "collect", 8, arr, N, &count, &c), 0);
    conn(g, r, m);
    conn(g, m, c);
    run_ok(rt, g);
    assert_int_equal(count, N);
    size_t bad = 0;
    for (uint64_t i = 0; i < N; i++)
        if (arr[i] != i * i)
            bad++;
    assert_int_equal(bad, 0);

    /* After a filter: the survivors, compacted, in order. */
    para_graph_t *g2 = new_graph();
    memset(arr, 0, N * sizeof *arr);
    count = 12345;
    r = range(g2, "range", 0, N);
    para_node_t *j = map8(g2, "jitter", map_jitter, NULL, 0);
    para_node_t *f = NULL;
    assert_int_equal(
        para_graph_add_filter(g2, "even", 8, filter_even, NULL, 0, &f), 0);
    assert_int_equal(
        para_graph_add_collect(g2, "collect", 8, arr, N, &count, &c), 0);
    conn(g2, r, j);
    conn(g2, j, f);
    conn(g2, f, c);
    run_ok(rt, g2);
    assert_int_equal(count, N / 2);
    for (uint64_t i = 0; i < N / 2; i++)
        if (arr[i] != 2 * i)
            bad++;
    assert_int_equal(bad, 0);

    para_graph_destroy(g);
    para_graph_destroy(g2);
    destroy_rt(rt);
    free(arr);
}

static void test_collect_overflow(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    enum { M = 10000 };
    uint64_t *arr = calloc(M + 1, sizeof *arr);
    assert_non_null(arr);
    arr[M - 1] = 0xDEADull; /* guard: capacity is M - 1 */
    size_t count = 0;
    para_graph_t *g = new_graph();
    para_node_t *r = range(g, "range", 0, M);
    para_node_t *c = NULL;
    assert_int_equal(
        para_graph_add_collect(g, "small", 8, arr, M - 1, &count, &c), 0);
    conn(g, r, c);
    assert_int_equal(para_run(rt, g), PARA_EOVERFLOW);
    check_rt_msg(rt, NULL, NULL);
    assert_true(count <= M - 1);
    assert_int_equal(arr[M - 1], 0xDEADull); /* nothing written past it */

    /* Exactly enough room works, and the runtime recovered. */
    para_graph_t *g2 = new_graph();
    r = range(g2, "range", 0, M);
    assert_int_equal(para_graph_add_collect(g2, "exact", 8, arr, M, &count, &c),
                     0);
    conn(g2, r, c);
    run_ok(rt, g2);
    assert_int_equal(count, M);
    assert_int_equal(arr[M - 1], M - 1);
    assert_int_equal(arr[0], 0);

    para_graph_destroy(g);
    para_graph_destroy(g2);
    destroy_rt(rt);
    free(arr);
}

/* ---- failures ---------------------------------------------------------- */

static int map_fail42(void *ctx, const void *in, void *out)
{
    const uint64_t *at = ctx;
    if (rd(in) == *at)
        return 42;
    *(uint64_t *)out = rd(in);
    return 0;
}

static int sink_fail_neg(void *ctx, const void *in)
{
    const uint64_t *at = ctx;
    return rd(in) == *at ? -77 : 0;
}

static int filter_fail(void *ctx, const void *in)
{
    const uint64_t *at = ctx;
    return rd(in) == *at ? -9 : 1;
}

static void test_node_failure(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    uint64_t at = N / 2;
    para_graph_t *g = new_graph();
    struct aacc a;
    aacc_init(&a);
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *m = map8(g, "the_failing_map", map_fail42, &at, 0);
    para_node_t *k = sink8(g, "sum", sink_aacc, &a, PARA_NODE_PARALLEL);
    conn(g, r, m);
    conn(g, m, k);
    assert_int_equal(para_run(rt, g), PARA_ENODE);
    check_rt_msg(rt, "the_failing_map", "42");
    assert_true(aload(&a.count) < N);

    /* The same runtime runs another graph. */
    para_graph_t *g2 = new_graph();
    struct acc b = {0};
    r = range(g2, "range", 0, N);
    k = sink8(g2, "sum", sink_acc, &b, PARA_NODE_SERIAL);
    conn(g2, r, k);
    run_ok(rt, g2);
    assert_int_equal(b.count, N);
    assert_int_equal(b.sum, sum_range(0, N));

    /* And the failing graph fails the same way again. */
    assert_int_equal(para_run(rt, g), PARA_ENODE);
    check_rt_msg(rt, "the_failing_map", "42");

    para_graph_destroy(g);
    para_graph_destroy(g2);
    destroy_rt(rt);
}

static void test_sink_and_filter_failure(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    uint64_t at = 12345;
    para_graph_t *g = new_graph();
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *k = sink8(g, "bad_sink", sink_fail_neg, &at, PARA_NODE_SERIAL);
    conn(g, r, k);
    assert_int_equal(para_run(rt, g), PARA_ENODE);
    check_rt_msg(rt, "bad_sink", "-77");

    para_graph_t *g2 = new_graph();
    struct acc a = {0};
    r = range(g2, "range", 0, N);
    para_node_t *f = NULL;
    assert_int_equal(
        para_graph_add_filter(g2, "bad_filter", 8, filter_fail, &at, 0, &f), 0);
    k = sink8(g2, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g2, r, f);
    conn(g2, f, k);
    assert_int_equal(para_run(rt, g2), PARA_ENODE);
    check_rt_msg(rt, "bad_filter", "-9");

    para_graph_destroy(g);
    para_graph_destroy(g2);
    destroy_rt(rt);
}

static void test_source_failure(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct cbsrc c;
    cbsrc_init(&c, N, 100);
    c.fail_rc = 1234;
    c.fail_after = 5000;
    struct acc a = {0};
    para_node_t *s = NULL;
    assert_int_equal(para_graph_add_source_with_open(
                         g, "failing_source", 8, cb_source, cbsrc_open, &c, &s),
                     0);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, s, k);
    assert_int_equal(para_run(rt, g), PARA_ENODE);
    check_rt_msg(rt, "failing_source", "1234");
    /* The call that crossed 5000 wrote fewer than 100 items past it. */
    if (a.count >= 5000 + 100)
        fail_msg("sink saw %llu items; the source produced at most %llu",
                 (unsigned long long)a.count, (unsigned long long)c.next);
    assert_true(a.count <= c.next);

    /* The runtime is still usable. */
    cbsrc_init(&c, 1000, 100);
    memset(&a, 0, sizeof a);
    run_ok(rt, g);
    assert_int_equal(a.count, 1000);
    assert_int_equal(a.sum, sum_range(0, 1000));
    para_graph_destroy(g);
    destroy_rt(rt);
}

/* ---- edge cases -------------------------------------------------------- */

static void test_empty_range(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "empty", 7, 7);
    para_node_t *m = map8(g, "inc", map_inc, NULL, 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, r, m);
    conn(g, m, k);
    run_ok(rt, g);
    assert_int_equal(a.count, 0);
    assert_int_equal(a.sum, 0);

    /* Collect: count is set to 0 by the run. */
    uint64_t arr[4];
    size_t count = 99;
    para_graph_t *g2 = new_graph();
    r = range(g2, "empty", 0, 0);
    para_node_t *c = NULL;
    assert_int_equal(para_graph_add_collect(g2, "col", 8, arr, 4, &count, &c),
                     0);
    conn(g2, r, c);
    run_ok(rt, g2);
    assert_int_equal(count, 0);

    /* Empty callback source. */
    para_graph_t *g3 = new_graph();
    struct cbsrc cb;
    cbsrc_init(&cb, 0, 10);
    struct acc b = {0};
    para_node_t *s = NULL;
    assert_int_equal(para_graph_add_source(g3, "cb", 8, cb_source, &cb, &s), 0);
    k = sink8(g3, "sum", sink_acc, &b, PARA_NODE_SERIAL);
    conn(g3, s, k);
    run_ok(rt, g3);
    assert_int_equal(b.count, 0);
    assert_true(cb.ended);
    assert_int_equal(cb.after_end, 0);

    para_graph_destroy(g);
    para_graph_destroy(g2);
    para_graph_destroy(g3);
    destroy_rt(rt);
}

static void test_single_item(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "one", 41, 42);
    para_node_t *m = map8(g, "inc", map_inc, NULL, 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_ORDERED);
    conn(g, r, m);
    conn(g, m, k);
    run_ok(rt, g);
    assert_int_equal(a.count, 1);
    assert_int_equal(a.sum, 42);
    para_graph_destroy(g);
    destroy_rt(rt);
}

static void test_run_twice(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    struct cbsrc c;
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *m = map8(g, "x3p1", map_x3p1, NULL, 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, r, m);
    conn(g, m, k);
    uint64_t first = 0;
    for (int rep = 0; rep < 3; rep++) {
        memset(&a, 0, sizeof a);
        run_ok(rt, g);
        assert_int_equal(a.count, N);
        if (rep == 0)
            first = a.sum;
        assert_int_equal(a.sum, first);
    }
    assert_int_equal(first, 3 * sum_range(0, N) + N);

    /* A callback source with an open hook is rewound by every run: the
     * context is set up once, and each run gives the same result. */
    para_graph_t *g2 = new_graph();
    para_node_t *s = NULL;
    assert_int_equal(para_graph_add_source_with_open(g2, "cb", 8, cb_source,
                                                     cbsrc_open, &c, &s),
                     0);
    k = sink8(g2, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g2, s, k);
    cbsrc_init(&c, 5000, 64);
    unsigned long opens0 = cbsrc_opens;
    for (int rep = 0; rep < 3; rep++) {
        memset(&a, 0, sizeof a);
        run_ok(rt, g2);
        assert_int_equal(a.count, 5000);
        assert_int_equal(a.sum, sum_range(0, 5000));
    }
    assert_int_equal(cbsrc_opens - opens0, 3);
    para_graph_destroy(g);
    para_graph_destroy(g2);
    destroy_rt(rt);
}

/* A callback source without an open hook runs once: a second run fails
 * with PARA_EINVAL naming it (it would produce nothing), and leaves the
 * graph as it was. An open hook that fails fails the run, naming it. */
static int failing_open(void *ctx)
{
    (void)ctx;
    return -7;
}

static void test_source_without_open_runs_once(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct cbsrc c;
    cbsrc_init(&c, 3000, 100);
    struct acc a = {0};
    para_node_t *s = NULL;
    assert_int_equal(para_graph_add_source(g, "once", 8, cb_source, &c, &s), 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, s, k);
    run_ok(rt, g);
    assert_int_equal(a.count, 3000);
    unsigned long calls = c.calls;
    assert_int_equal(para_run(rt, g), PARA_EINVAL);
    check_rt_msg(rt, "once", "open hook");
    assert_int_equal(c.calls, calls); /* not called at all */
    assert_int_equal(a.count, 3000);

    para_graph_t *g2 = new_graph();
    para_node_desc_t d = {.name = "bad_open",
                          .out_size = 8,
                          .ctx = &c,
                          .source = cb_source,
                          .open = failing_open};
    s = add_desc(g2, &d);
    k = sink8(g2, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g2, s, k);
    assert_int_equal(para_run(rt, g2), PARA_ENODE);
    check_rt_msg(rt, "bad_open", "-7");
    assert_int_equal(c.calls, calls);

    /* Only sources take an open hook. */
    para_node_desc_t m = {.name = "map_open",
                          .in_size = 8,
                          .out_size = 8,
                          .map = map_inc,
                          .open = cbsrc_open};
    assert_int_equal(para_graph_add(g2, &m, NULL), PARA_EINVAL);
    para_graph_destroy(g);
    para_graph_destroy(g2);
    destroy_rt(rt);
}

/* Per-item convenience sinks are SERIAL unless PARALLEL is asked for: a
 * sink that adds into a plain context is correct with flags 0. */
struct overlap_sink {
    atomic_int inside;
    atomic_ulong overlaps;
    uint64_t sum, count;
};

static int overlap_sink_fn(void *ctx, const void *in)
{
    struct overlap_sink *o = ctx;
    /* relaxed: only detects overlapping calls, read after the run. */
    if (atomic_exchange_explicit(&o->inside, 1, memory_order_relaxed) != 0)
        atomic_fetch_add_explicit(&o->overlaps, 1, memory_order_relaxed);
    o->sum += rd(in);
    o->count++;
    atomic_store_explicit(&o->inside, 0, memory_order_relaxed);
    return 0;
}

static int slow_inc(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t v = rd(in) + 1;
    memcpy(out, &v, sizeof v);
    return 0;
}

static void test_convenience_sink_is_serial(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(4);
    for (int pipe = 0; pipe < 2; pipe++) {
        struct overlap_sink o = {0};
        atomic_init(&o.inside, 0);
        atomic_init(&o.overlaps, 0);
        para_graph_t *g = NULL;
        if (pipe) {
            assert_int_equal(
                PARA_PIPELINE(&g, para_pipe_range("r", 0, 200000),
                              para_pipe_map("inc", 8, 8, slow_inc, NULL),
                              para_pipe_sink("sum", 8, overlap_sink_fn, &o, 0)),
                0);
        } else {
            g = new_graph();
            para_node_t *r = range(g, "r", 0, 200000);
            para_node_t *m = map8(g, "inc", slow_inc, NULL, 0);
            para_node_t *k = sink8(g, "sum", overlap_sink_fn, &o, 0);
            conn(g, r, m);
            conn(g, m, k);
        }
        run_ok(rt, g);
        assert_int_equal(o.count, 200000);
        assert_int_equal(o.sum, sum_range(0, 200000) + 200000);
        assert_int_equal(atomic_load(&o.overlaps), 0);
        para_graph_destroy(g);
    }
    /* Asked for PARALLEL, the sink is parallel (several workers at once
     * is then possible; the atomic sink stays exact). */
    struct aacc a;
    aacc_init(&a);
    para_graph_t *g = new_graph();
    para_node_t *r = range(g, "r", 0, 200000);
    para_node_t *k = sink8(g, "sum", sink_aacc, &a, PARA_NODE_PARALLEL);
    conn(g, r, k);
    run_ok(rt, g);
    assert_int_equal(aload(&a.count), 200000);
    /* PARALLEL together with SERIAL is refused. */
    assert_int_equal(para_graph_add_sink(g, "bad", 8, sink_aacc, &a,
                                         PARA_NODE_PARALLEL | PARA_NODE_SERIAL,
                                         NULL),
                     PARA_EINVAL);
    para_graph_destroy(g);
    destroy_rt(rt);
}

static void test_priorities(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0}, b = {0};
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *m1 = map8(g, "inc", map_inc, NULL, 0);
    para_node_t *m2 = map8(g, "dbl", map_dbl, NULL, 0);
    para_node_t *k1 = sink8(g, "sa", sink_acc, &a, PARA_NODE_SERIAL);
    para_node_t *k2 = sink8(g, "sb", sink_acc, &b, PARA_NODE_SERIAL);
    conn(g, r, m1);
    conn(g, r, m2);
    conn(g, m1, k1);
    conn(g, m2, k2);
    assert_int_equal(para_node_set_priority(m1, 10), 0);
    assert_int_equal(para_node_set_priority(k2, -10), 0);
    run_ok(rt, g);
    assert_int_equal(a.sum, sum_range(0, N) + N);
    assert_int_equal(b.sum, 2 * sum_range(0, N));
    para_graph_destroy(g);
    destroy_rt(rt);
}

/* ---- statistics -------------------------------------------------------- */

static void test_node_stats(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *m = map8(g, "inc", map_inc, NULL, 0);
    para_node_t *f = NULL;
    assert_int_equal(
        para_graph_add_filter(g, "even", 8, filter_even, NULL, 0, &f), 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, r, m);
    conn(g, m, f);
    conn(g, f, k);
    for (int rep = 0; rep < 2; rep++) {
        memset(&a, 0, sizeof a);
        run_ok(rt, g);
        /* Each run's stats replace the previous ones (not cumulative). */
        para_node_stats_t sr, sm, sf, sk;
        assert_int_equal(para_node_stats(r, &sr), 0);
        assert_int_equal(para_node_stats(m, &sm), 0);
        assert_int_equal(para_node_stats(f, &sf), 0);
        assert_int_equal(para_node_stats(k, &sk), 0);
        assert_int_equal(sr.items_in, 0);
        assert_int_equal(sr.items_out, N);
        assert_true(sr.batches >= 1);
        assert_int_equal(sm.items_in, N);
        assert_int_equal(sm.items_out, N);
        assert_true(sm.batches >= 1 && sm.batches <= N);
        assert_int_equal(sf.items_in, N);
        assert_int_equal(sf.items_out, N / 2);
        assert_true(sf.batches >= 1);
        assert_int_equal(sk.items_in, N / 2);
        assert_int_equal(sk.items_out, 0);
        assert_true(sk.batches >= 1);
        /* Edges conserve items. */
        assert_int_equal(sr.items_out, sm.items_in);
        assert_int_equal(sm.items_out, sf.items_in);
        assert_int_equal(sf.items_out, sk.items_in);
        assert_int_equal(sk.items_in, a.count);
        /* Every batch the source produced went through the 1:1 map. */
        assert_int_equal(sm.batches, sr.batches);
    }
    para_graph_destroy(g);
    destroy_rt(rt);
}

static void test_node_stats_fan(void **state)
{
    (void)state;
    /* Fan-out: every successor consumes everything; merge: the sink counts
     * both inputs. */
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *m1 = map8(g, "inc", map_inc, NULL, 0);
    para_node_t *m2 = map8(g, "dbl", map_dbl, NULL, 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, r, m1);
    conn(g, r, m2);
    conn(g, m1, k);
    conn(g, m2, k);
    run_ok(rt, g);
    para_node_stats_t sr, s1, s2, sk;
    assert_int_equal(para_node_stats(r, &sr), 0);
    assert_int_equal(para_node_stats(m1, &s1), 0);
    assert_int_equal(para_node_stats(m2, &s2), 0);
    assert_int_equal(para_node_stats(k, &sk), 0);
    assert_int_equal(sr.items_out, N);
    assert_int_equal(s1.items_in, N);
    assert_int_equal(s2.items_in, N);
    assert_int_equal(sk.items_in, s1.items_out + s2.items_out);
    assert_int_equal(sk.items_in, 2 * N);
    para_graph_destroy(g);
    destroy_rt(rt);
}

static void test_runtime_stats(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_stats_t st;
    memset(&st, 0xff, sizeof st);
    assert_int_equal(para_runtime_stats(rt, &st), 0);
    assert_int_equal(st.size, sizeof st);
    assert_int_equal(st.version, PARA_STATS_VERSION);
    assert_int_equal(st.runs, 0);
    assert_int_equal(st.tasks, 0);

    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *m = map8(g, "inc", map_inc, NULL, 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, r, m);
    conn(g, m, k);
    run_ok(rt, g);
    assert_int_equal(para_runtime_stats(rt, &st), 0);
    assert_int_equal(st.runs, 1);
    assert_true(st.tasks > 0);
    assert_true(st.source_batches > 0);
    assert_true(st.batches_allocated > 0);
    assert_true(st.peak_batches >= 1);
    assert_true(st.peak_batches <= st.batches_allocated);
    assert_true(st.run_ns > 0);
    assert_true(st.steal_attempts >= st.steals);
    para_node_stats_t sr;
    assert_int_equal(para_node_stats(r, &sr), 0);
    assert_int_equal(st.source_batches, sr.batches);
    /* Each source batch is processed by the map and by the sink. */
    assert_true(st.tasks >= 2 * st.source_batches);
    uint64_t tasks1 = st.tasks;

    memset(&a, 0, sizeof a);
    run_ok(rt, g);
    assert_int_equal(para_runtime_stats(rt, &st), 0);
    assert_int_equal(st.runs, 2);
    assert_true(st.tasks > tasks1); /* cumulative */
    para_graph_destroy(g);
    destroy_rt(rt);
}

struct text {
    char buf[8192];
    size_t len;
    unsigned lines;
    unsigned bad_lines;
};

/* para_stats_fprint(PARA_STATS_TABLE) into @p t, line by line. */
static void collect_table(const para_runtime_t *rt, const para_graph_t *g,
                          struct text *t)
{
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    assert_non_null(f);
    assert_int_equal(para_stats_fprint(f, rt, g, PARA_STATS_TABLE), 0);
    assert_int_equal(fclose(f), 0);
    for (const char *line = out; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t n = nl != NULL ? (size_t)(nl - line) + 1 : strlen(line);
        if (nl == NULL)
            t->bad_lines++; /* unterminated */
        t->lines++;
        if (t->len + n < sizeof t->buf) {
            memcpy(t->buf + t->len, line, n);
            t->len += n;
            t->buf[t->len] = '\0';
        }
        line += n;
    }
    free(out);
}

static void test_stats_print(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "my_range_node", 0, 1000);
    para_node_t *k = sink8(g, "my_sink_node", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, r, k);
    run_ok(rt, g);
    struct text *t = calloc(1, sizeof *t);
    assert_non_null(t);
    collect_table(rt, g, t);
    assert_true(t->lines > 0);
    assert_int_equal(t->bad_lines, 0);
    assert_non_null(strstr(t->buf, "my_range_node"));
    assert_non_null(strstr(t->buf, "my_sink_node"));
    /* Without a graph: only the runtime counters. */
    memset(t, 0, sizeof *t);
    collect_table(rt, NULL, t);
    assert_true(t->lines > 0);
    assert_null(strstr(t->buf, "my_sink_node"));
    free(t);
    para_graph_destroy(g);
    destroy_rt(rt);
}

/* ---- configurations ---------------------------------------------------- */

/* range -> map -> filter -> flat_map(x2) -> {serial sink, parallel sink} */
static void run_mixed_graph(para_runtime_t *rt, uint64_t n)
{
    para_graph_t *g = new_graph();
    struct acc a = {0};
    struct aacc b;
    aacc_init(&b);
    para_node_t *r = range(g, "range", 0, n);
    para_node_t *m = map8(g, "inc", map_inc, NULL, 0);
    para_node_t *f = NULL;
    assert_int_equal(
        para_graph_add_filter(g, "even", 8, filter_even, NULL, 0, &f), 0);
    para_node_desc_t d = {.name = "twice",
                          .in_size = 8,
                          .out_size = 8,
                          .flat_map = fm_twice_emit};
    para_node_t *fm = add_desc(g, &d);
    para_node_t *k1 = sink8(g, "serial", sink_acc, &a, PARA_NODE_SERIAL);
    para_node_t *k2 = sink8(g, "parallel", sink_aacc, &b, PARA_NODE_PARALLEL);
    conn(g, r, m);
    conn(g, m, f);
    conn(g, f, fm);
    conn(g, fm, k1);
    conn(g, fm, k2);
    run_ok(rt, g);
    /* x+1 for x in [0, n): the even ones are 2, 4, ..., each twice. */
    uint64_t cnt = 0, sum = 0;
    for (uint64_t x = 1; x <= n; x++)
        if (x % 2 == 0) {
            cnt += 2;
            sum += 2 * x;
        }
    assert_int_equal(a.count, cnt);
    assert_int_equal(a.sum, sum);
    assert_int_equal(aload(&b.count), cnt);
    assert_int_equal(aload(&b.sum), sum);
    para_graph_destroy(g);
}

static void test_workers_1(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(1);
    run_mixed_graph(rt, N);
    destroy_rt(rt);
}

static void test_workers_4(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(4);
    run_mixed_graph(rt, N);
    destroy_rt(rt);
}

static void test_workers_auto(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(0);
    assert_true(para_runtime_workers(rt) >= 1);
    run_mixed_graph(rt, N);
    destroy_rt(rt);
}

static void check_forced_batches(size_t batch, uint64_t n)
{
    para_runtime_t *rt = make_rt_ex(2, batch, 0);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "range", 0, n);
    para_node_t *k = serial_batch_sink(g, "sum_batch", sink_acc_batch, &a);
    conn(g, r, k);
    run_ok(rt, g);
    assert_int_equal(a.count, n);
    assert_int_equal(a.sum, sum_range(0, n));
    /* Source batches hold at most `batch` items, and the forced size is
     * actually used. */
    assert_int_equal(a.max_n, batch < n ? batch : n);
    uint64_t min_batches = (n + batch - 1) / batch;
    assert_true(a.calls >= min_batches);
    para_node_stats_t sr;
    assert_int_equal(para_node_stats(r, &sr), 0);
    assert_true(sr.batches >= min_batches);
    if (batch == 1)
        assert_int_equal(sr.batches, n);

    /* The cap offered to a callback source is the forced size. */
    para_graph_t *g2 = new_graph();
    struct cbsrc c;
    cbsrc_init(&c, n, UINT64_MAX);
    memset(&a, 0, sizeof a);
    para_node_t *s = NULL;
    assert_int_equal(para_graph_add_source(g2, "cb", 8, cb_source, &c, &s), 0);
    k = serial_batch_sink(g2, "sum_batch", sink_acc_batch, &a);
    conn(g2, s, k);
    run_ok(rt, g2);
    assert_int_equal(a.count, n);
    assert_int_equal(c.max_cap, batch);
    assert_int_equal(a.max_n, batch < n ? batch : n);

    /* A full mixed graph too. */
    run_mixed_graph(rt, n);
    para_graph_destroy(g);
    para_graph_destroy(g2);
    destroy_rt(rt);
}

static void test_batch_items_1(void **state)
{
    (void)state;
    check_forced_batches(1, 3000);
}

static void test_batch_items_1000(void **state)
{
    (void)state;
    check_forced_batches(1000, 10500);
}

static void test_max_batches_1(void **state)
{
    (void)state;
    /* One batch alive at once before sources are held back: maps and
     * flat-maps still need room for their outputs; this must not deadlock. */
    para_runtime_t *rt = make_rt_ex(2, 0, 1);
    run_mixed_graph(rt, N);
    /* With an ORDERED node and a merge as well. */
    para_graph_t *g = new_graph();
    struct diamond_check d = {0};
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *e = map8(g, "even", map_dbl, NULL, 0);
    para_node_t *o = map8(g, "odd", map_2x1, NULL, 0);
    para_node_t *k = sink8(g, "both", sink_diamond, &d, PARA_NODE_ORDERED);
    conn(g, r, e);
    conn(g, r, o);
    conn(g, e, k);
    conn(g, o, k);
    run_ok(rt, g);
    assert_int_equal(d.count, 2 * N);
    assert_int_equal(d.bad, 0);
    para_graph_destroy(g);
    destroy_rt(rt);

    /* Also with a single worker and one-item batches. */
    rt = make_rt_ex(1, 1, 1);
    run_mixed_graph(rt, 2000);
    destroy_rt(rt);
}

/* ---- serial nodes, item sizes, more failures --------------------------- */

/* A SERIAL map / sink: plain state, plus an overlap detector. */
struct serial_state {
    atomic_int inside;
    atomic_ulong overlaps;
    uint64_t calls; /* plain: the runtime orders SERIAL calls */
    uint64_t sum;
};

static void serial_init(struct serial_state *st)
{
    atomic_init(&st->inside, 0);
    atomic_init(&st->overlaps, 0);
    st->calls = 0;
    st->sum = 0;
}

static void serial_enter(struct serial_state *st)
{
    /* relaxed: only detects overlapping calls; read after the run. */
    if (atomic_exchange_explicit(&st->inside, 1, memory_order_relaxed) != 0)
        atomic_fetch_add_explicit(&st->overlaps, 1, memory_order_relaxed);
}

static void serial_leave(struct serial_state *st)
{
    atomic_store_explicit(&st->inside, 0, memory_order_relaxed);
}

/* Numbers its items in call order: out = call index. */
static int map_serial_number(void *ctx, const void *in, void *out)
{
    (void)in;
    struct serial_state *st = ctx;
    serial_enter(st);
    *(uint64_t *)out = st->calls++;
    serial_leave(st);
    return 0;
}

static int sink_serial(void *ctx, const void *in)
{
    struct serial_state *st = ctx;
    serial_enter(st);
    st->sum += rd(in);
    st->calls++;
    serial_leave(st);
    return 0;
}

static void test_serial_exclusive(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(4);
    para_graph_t *g = new_graph();
    struct serial_state sm, sk;
    serial_init(&sm);
    serial_init(&sk);
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *j = map8(g, "jitter", map_jitter, NULL, 0);
    para_node_t *m =
        map8(g, "number", map_serial_number, &sm, PARA_NODE_SERIAL);
    para_node_t *k = sink8(g, "sum", sink_serial, &sk, PARA_NODE_SERIAL);
    conn(g, r, j);
    conn(g, j, m);
    conn(g, m, k);
    run_ok(rt, g);
    assert_int_equal(atomic_load_explicit(&sm.overlaps, memory_order_relaxed),
                     0);
    assert_int_equal(atomic_load_explicit(&sk.overlaps, memory_order_relaxed),
                     0);
    assert_int_equal(sm.calls, N);
    assert_int_equal(sk.calls, N);
    /* The serial map handed out 0..N-1 exactly once each. */
    assert_int_equal(sk.sum, sum_range(0, N));
    para_graph_destroy(g);
    destroy_rt(rt);
}

struct wide {
    uint64_t x, x2, tag;
};

static int map_widen(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t x = rd(in);
    struct wide w = {x, 2 * x, 0x7A67u};
    memcpy(out, &w, sizeof w);
    return 0;
}

static int map_narrow(void *ctx, const void *in, void *out)
{
    (void)ctx;
    struct wide w;
    memcpy(&w, in, sizeof w);
    if (w.x2 != 2 * w.x || w.tag != 0x7A67u)
        return 3; /* corrupted item */
    *(uint8_t *)out = (uint8_t)(w.x % 251);
    return 0;
}

static int sink_bytes(void *ctx, const void *in)
{
    struct acc *a = ctx;
    a->sum += *(const uint8_t *)in;
    a->count++;
    return 0;
}

/* 4 KiB items: the runtime must size batches in bytes sensibly. */
enum { BIG = 4096 };

static int map_to_big(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t x = rd(in);
    unsigned char *o = out;
    memset(o, (int)(x & 0xff), BIG);
    memcpy(o, &x, 8);
    return 0;
}

static int map_from_big(void *ctx, const void *in, void *out)
{
    (void)ctx;
    const unsigned char *b = in;
    uint64_t x;
    memcpy(&x, b, 8);
    if (b[BIG - 1] != (unsigned char)(x & 0xff))
        return 4; /* truncated or corrupted item */
    memcpy(out, &x, 8);
    return 0;
}

static void test_item_sizes(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *w = NULL, *nw = NULL, *k = NULL;
    assert_int_equal(para_graph_add_map(g, "widen", 8, sizeof(struct wide),
                                        map_widen, NULL, 0, &w),
                     0);
    assert_int_equal(para_graph_add_map(g, "narrow", sizeof(struct wide), 1,
                                        map_narrow, NULL, 0, &nw),
                     0);
    assert_int_equal(para_graph_add_sink(g, "bytes", 1, sink_bytes, &a,
                                         PARA_NODE_SERIAL, &k),
                     0);
    conn(g, r, w);
    conn(g, w, nw);
    conn(g, nw, k);
    run_ok(rt, g);
    uint64_t expect = 0;
    for (uint64_t x = 0; x < N; x++)
        expect += x % 251;
    assert_int_equal(a.count, N);
    assert_int_equal(a.sum, expect);

    para_graph_t *g2 = new_graph();
    struct acc b = {0};
    enum { NB = 20000 };
    r = range(g2, "range", 0, NB);
    assert_int_equal(
        para_graph_add_map(g2, "to_big", 8, BIG, map_to_big, NULL, 0, &w), 0);
    assert_int_equal(
        para_graph_add_map(g2, "from_big", BIG, 8, map_from_big, NULL, 0, &nw),
        0);
    k = sink8(g2, "sum", sink_acc, &b, PARA_NODE_SERIAL);
    conn(g2, r, w);
    conn(g2, w, nw);
    conn(g2, nw, k);
    run_ok(rt, g2);
    assert_int_equal(b.count, NB);
    assert_int_equal(b.sum, sum_range(0, NB));
    para_graph_destroy(g);
    para_graph_destroy(g2);
    destroy_rt(rt);
}

static void test_collect_after_flat_map(void **state)
{
    (void)state;
    /* Collect keeps source order, and within one input the emission order:
     * 10000 inputs x 100 outputs = 0, 1, ..., 999999. */
    para_runtime_t *rt = make_rt(2);
    enum { NI = 10000, NO = NI * 100 };
    uint64_t *arr = malloc(NO * sizeof *arr);
    assert_non_null(arr);
    size_t count = 0;
    para_graph_t *g = new_graph();
    para_node_t *r = range(g, "range", 0, NI);
    para_node_desc_t d = {
        .name = "x100", .in_size = 8, .out_size = 8, .flat_map = fm_fanout100};
    para_node_t *f = add_desc(g, &d);
    para_node_t *c = NULL;
    assert_int_equal(
        para_graph_add_collect(g, "collect", 8, arr, NO, &count, &c), 0);
    conn(g, r, f);
    conn(g, f, c);
    run_ok(rt, g);
    assert_int_equal(count, NO);
    size_t bad = 0, first_bad = 0;
    for (uint64_t i = 0; i < NO; i++)
        if (arr[i] != i && bad++ == 0)
            first_bad = i;
    if (bad != 0)
        fail_msg("%zu items misplaced, first at %zu", bad, first_bad);
    para_graph_destroy(g);
    destroy_rt(rt);
    free(arr);
}

static int map_always42(void *ctx, const void *in, void *out)
{
    (void)ctx;
    (void)in;
    (void)out;
    return 42;
}

static void test_failure_cases(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(4);
    /* Every item fails, on every worker at once. */
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *r = range(g, "range", 0, N);
    para_node_t *m = map8(g, "all_fail", map_always42, NULL, 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, r, m);
    conn(g, m, k);
    assert_int_equal(para_run(rt, g), PARA_ENODE);
    check_rt_msg(rt, "all_fail", "42");
    assert_int_equal(a.count, 0);

    /* A failure upstream of an ORDERED collect: the hole it leaves must not
     * make the run hang. */
    uint64_t at = N / 3;
    uint64_t *arr = malloc(N * sizeof *arr);
    assert_non_null(arr);
    size_t count = 0;
    para_graph_t *g2 = new_graph();
    r = range(g2, "range", 0, N);
    m = map8(g2, "fails_once", map_fail42, &at, 0);
    para_node_t *c = NULL;
    assert_int_equal(
        para_graph_add_collect(g2, "collect", 8, arr, N, &count, &c), 0);
    conn(g2, r, m);
    conn(g2, m, c);
    assert_int_equal(para_run(rt, g2), PARA_ENODE);
    check_rt_msg(rt, "fails_once", "42");
    destroy_rt(rt);

    /* The same with one batch in flight and one worker. */
    rt = make_rt_ex(1, 0, 1);
    assert_int_equal(para_run(rt, g2), PARA_ENODE);
    check_rt_msg(rt, "fails_once", "42");
    assert_int_equal(para_run(rt, g), PARA_ENODE);
    check_rt_msg(rt, "all_fail", "42");
    destroy_rt(rt);

    para_graph_destroy(g);
    para_graph_destroy(g2);
    free(arr);
}

/* ---- lifecycle --------------------------------------------------------- */

static void test_destroy(void **state)
{
    (void)state;
    assert_int_equal(para_runtime_destroy(NULL), 0);
    for (int i = 0; i < 20; i++) {
        para_runtime_t *rt = make_rt((unsigned)(i % 4) + 1);
        destroy_rt(rt);
    }
    /* Destroy right after a run. */
    para_runtime_t *rt = make_rt(4);
    run_mixed_graph(rt, 1000);
    destroy_rt(rt);
}

static void test_two_runtimes(void **state)
{
    (void)state;
    /* Independent runtimes coexist. */
    para_runtime_t *rt1 = make_rt(2);
    para_runtime_t *rt2 = make_rt(1);
    run_mixed_graph(rt1, 10000);
    run_mixed_graph(rt2, 10000);
    run_mixed_graph(rt1, 10000);
    destroy_rt(rt2);
    run_mixed_graph(rt1, 10000);
    destroy_rt(rt1);
}

/* ---- concurrency of para_run ------------------------------------------- */

struct runner {
    pthread_t thread;
    para_runtime_t *rt;
    para_graph_t *g;
    atomic_int *gate;
    int rc;
};

static void *runner_main(void *arg)
{
    struct runner *r = arg;
    /* acquire: pairs with the release store that opens the gate. */
    while (atomic_load_explicit(r->gate, memory_order_acquire) == 0)
        sched_yield();
    r->rc = para_run(r->rt, r->g);
    return NULL;
}

static void start_runner(struct runner *r, para_runtime_t *rt, para_graph_t *g,
                         atomic_int *gate)
{
    r->rt = rt;
    r->g = g;
    r->gate = gate;
    r->rc = 1;
    assert_int_equal(pthread_create(&r->thread, NULL, runner_main, r), 0);
}

static para_graph_t *sum_graph(uint64_t n, struct acc *a)
{
    para_graph_t *g = new_graph();
    para_node_t *r = range(g, "range", 0, n);
    para_node_t *m = map8(g, "inc", map_inc, NULL, 0);
    para_node_t *k = sink8(g, "sum", sink_acc, a, PARA_NODE_SERIAL);
    conn(g, r, m);
    conn(g, m, k);
    return g;
}

static void test_concurrent_runs_two_graphs(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    enum { NC = 100000 };
    unsigned busy = 0;
    for (int iter = 0; iter < 10; iter++) {
        struct acc a1 = {0}, a2 = {0};
        para_graph_t *g1 = sum_graph(NC, &a1);
        para_graph_t *g2 = sum_graph(NC, &a2);
        atomic_int gate;
        atomic_init(&gate, 0);
        struct runner r1, r2;
        start_runner(&r1, rt, g1, &gate);
        start_runner(&r2, rt, g2, &gate);
        /* release: pairs with the runners' acquire loads of the gate. */
        atomic_store_explicit(&gate, 1, memory_order_release);
        assert_int_equal(pthread_join(r1.thread, NULL), 0);
        assert_int_equal(pthread_join(r2.thread, NULL), 0);
        assert_true(r1.rc == 0 || r1.rc == PARA_EBUSY);
        assert_true(r2.rc == 0 || r2.rc == PARA_EBUSY);
        assert_true(r1.rc == 0 || r2.rc == 0);
        const struct acc *as[2] = {&a1, &a2};
        const int rcs[2] = {r1.rc, r2.rc};
        for (int i = 0; i < 2; i++) {
            if (rcs[i] == 0) {
                assert_int_equal(as[i]->count, NC);
                assert_int_equal(as[i]->sum, sum_range(0, NC) + NC);
            } else {
                /* A refused run never calls the node functions. */
                assert_int_equal(as[i]->count, 0);
                busy++;
            }
        }
        para_graph_destroy(g1);
        para_graph_destroy(g2);
    }
    print_message("    %u of 20 runs refused with PARA_EBUSY\n", busy);
    destroy_rt(rt);
}

static void test_concurrent_runs_same_graph(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    enum { NC = 100000 };
    para_graph_t *g = new_graph();
    struct aacc a;
    aacc_init(&a);
    para_node_t *r = range(g, "range", 0, NC);
    para_node_t *k = sink8(g, "sum", sink_aacc, &a, PARA_NODE_PARALLEL);
    conn(g, r, k);
    unsigned ok = 0;
    for (int iter = 0; iter < 10; iter++) {
        atomic_int gate;
        atomic_init(&gate, 0);
        struct runner r1, r2;
        start_runner(&r1, rt, g, &gate);
        start_runner(&r2, rt, g, &gate);
        atomic_store_explicit(&gate, 1, memory_order_release);
        assert_int_equal(pthread_join(r1.thread, NULL), 0);
        assert_int_equal(pthread_join(r2.thread, NULL), 0);
        assert_true(r1.rc == 0 || r1.rc == PARA_EBUSY);
        assert_true(r2.rc == 0 || r2.rc == PARA_EBUSY);
        assert_true(r1.rc == 0 || r2.rc == 0);
        ok += (r1.rc == 0) + (r2.rc == 0);
        assert_int_equal(aload(&a.count), (uint64_t)ok * NC);
        assert_int_equal(aload(&a.sum), (uint64_t)ok * sum_range(0, NC));
    }
    para_graph_destroy(g);
    destroy_rt(rt);
}

static void test_concurrent_runtimes(void **state)
{
    (void)state;
    /* Two runtimes, each driven by its own thread at the same time. */
    para_runtime_t *rt1 = make_rt(2);
    para_runtime_t *rt2 = make_rt(2);
    enum { NC = 200000 };
    struct acc a1 = {0}, a2 = {0};
    para_graph_t *g1 = sum_graph(NC, &a1);
    para_graph_t *g2 = sum_graph(NC, &a2);
    atomic_int gate;
    atomic_init(&gate, 0);
    struct runner r1, r2;
    start_runner(&r1, rt1, g1, &gate);
    start_runner(&r2, rt2, g2, &gate);
    atomic_store_explicit(&gate, 1, memory_order_release);
    assert_int_equal(pthread_join(r1.thread, NULL), 0);
    assert_int_equal(pthread_join(r2.thread, NULL), 0);
    assert_int_equal(r1.rc, 0);
    assert_int_equal(r2.rc, 0);
    assert_int_equal(a1.count, NC);
    assert_int_equal(a2.count, NC);
    assert_int_equal(a1.sum, sum_range(0, NC) + NC);
    assert_int_equal(a2.sum, sum_range(0, NC) + NC);
    para_graph_destroy(g1);
    para_graph_destroy(g2);
    destroy_rt(rt1);
    destroy_rt(rt2);
}

/* A sink that holds the run open until the main thread says so. */
struct holder {
    atomic_int entered; /* the sink has started (the run is in progress) */
    atomic_int release; /* main is done probing */
    uint64_t count;     /* plain: SERIAL sink */
};

static int sink_hold(void *ctx, const void *in)
{
    (void)in;
    struct holder *h = ctx;
    if (h->count++ == 0) {
        /* release: pairs with main's acquire of entered. */
        atomic_store_explicit(&h->entered, 1, memory_order_release);
        /* acquire: pairs with main's release of release. */
        while (atomic_load_explicit(&h->release, memory_order_acquire) == 0)
            sched_yield();
    }
    return 0;
}

static void test_busy_while_running(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_runtime_t *rt2 = make_rt(1);
    para_graph_t *g = new_graph();
    struct holder h;
    atomic_init(&h.entered, 0);
    atomic_init(&h.release, 0);
    h.count = 0;
    para_node_t *r = range(g, "range", 0, 10000);
    para_node_t *m = map8(g, "inc", map_inc, NULL, 0);
    para_node_t *k = sink8(g, "hold", sink_hold, &h, PARA_NODE_SERIAL);
    conn(g, r, m);
    conn(g, m, k);
    struct acc a = {0};
    para_graph_t *other = sum_graph(1000, &a);

    atomic_int gate;
    atomic_init(&gate, 1);
    struct runner run;
    start_runner(&run, rt, g, &gate);
    while (atomic_load_explicit(&h.entered, memory_order_acquire) == 0)
        sched_yield();

    /* The run is in progress now. */
    int rc_run_rt = para_run(rt, other); /* runtime busy */
    int rc_run_g = para_run(rt2, g);     /* graph busy */
    int rc_destroy = para_runtime_destroy(rt);
    int rc_prio = para_node_set_priority(k, 3);
    para_node_t *extra = NULL;
    int rc_add = para_graph_add_range(g, "late", 0, 10, &extra);
    int rc_conn = para_graph_connect(g, r, k); /* a new, valid edge */

    atomic_store_explicit(&h.release, 1, memory_order_release);
    assert_int_equal(pthread_join(run.thread, NULL), 0);
    assert_int_equal(run.rc, 0);
    assert_int_equal(h.count, 10000);

    assert_int_equal(rc_run_rt, PARA_EBUSY);
    assert_int_equal(a.count, 0);
    assert_int_equal(rc_run_g, PARA_EBUSY);
    assert_int_equal(rc_destroy, PARA_EBUSY);
    assert_int_equal(rc_prio, PARA_EBUSY);
    assert_int_equal(rc_add, PARA_EBUSY);
    assert_int_equal(rc_conn, PARA_EBUSY);
    assert_int_equal(para_graph_node_count(g), 3);

    /* Everything works again afterwards. */
    run_ok(rt, other);
    assert_int_equal(a.count, 1000);
    para_graph_destroy(g);
    para_graph_destroy(other);
    destroy_rt(rt);
    destroy_rt(rt2);
}

/* Error messages are copies per calling thread: a thread reading them while
 * another thread's runs fail and rewrite them sees whole messages only
 * (TSan: no race), and its copy is its own. */
static int map_boom(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t v;
    memcpy(&v, in, sizeof v);
    memcpy(out, &v, sizeof v);
    return v == 777 ? -7 : 0;
}

struct msg_reader {
    para_runtime_t *rt;
    para_graph_t *g;
    atomic_bool stop; /* seq_cst: test code */
    const char *last_rt_copy;
    unsigned reads, torn;
};

static void *read_msgs(void *arg)
{
    struct msg_reader *r = arg;
    while (!atomic_load(&r->stop) || r->reads < 100) {
        const char *m = para_runtime_errmsg(r->rt);
        if (m[0] != '\0' &&
            (strstr(m, "boom") == NULL || strstr(m, "-7") == NULL))
            r->torn++;
        const char *gm = para_graph_errmsg(r->g);
        if (gm[0] != '\0')
            r->torn++; /* nothing in this graph fails to validate */
        r->reads++;
    }
    /* the runs are over: the last failure's message */
    r->last_rt_copy = para_runtime_errmsg(r->rt);
    return NULL;
}

static void test_errmsg_other_thread(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    para_graph_t *g = new_graph();
    struct acc a = {0};
    para_node_t *s = range(g, "x", 0, 5000);
    para_node_t *m = map8(g, "boom", map_boom, NULL, 0);
    para_node_t *k = sink8(g, "sum", sink_acc, &a, PARA_NODE_SERIAL);
    conn(g, s, m);
    conn(g, m, k);
    struct msg_reader r = {.rt = rt, .g = g};
    atomic_init(&r.stop, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, read_msgs, &r), 0);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(para_run(rt, g), PARA_ENODE);
        check_rt_msg(rt, "boom", "-7");
    }
    atomic_store(&r.stop, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(r.torn, 0);
    assert_true(r.reads >= 100);
    /* each thread has its own copy */
    assert_ptr_not_equal(r.last_rt_copy, para_runtime_errmsg(rt));
    assert_string_equal(r.last_rt_copy, para_runtime_errmsg(rt));
    para_graph_destroy(g);
    destroy_rt(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range_map_sink),
        cmocka_unit_test(test_idle_runtime_uses_no_cpu),
        cmocka_unit_test(test_workers_are_pinned),
        cmocka_unit_test(test_caller_keeps_its_core),
        cmocka_unit_test(test_caller_works_as_worker),
        cmocka_unit_test(test_short_runs_do_not_sleep),
        cmocka_unit_test(test_node_min_batch_hint),
        cmocka_unit_test(test_rerun_starts_from_learned_size),
        cmocka_unit_test(test_failure_while_serial_nodes_drain),
        cmocka_unit_test(test_range_offset),
        cmocka_unit_test(test_array_source),
        cmocka_unit_test(test_callback_source),
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_flat_map),
        cmocka_unit_test(test_batch_functions),
        cmocka_unit_test(test_fan_out),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_two_sources),
        cmocka_unit_test(test_ordered_sink),
        cmocka_unit_test(test_ordered_after_filter),
        cmocka_unit_test(test_ordered_diamond),
        cmocka_unit_test(test_collect),
        cmocka_unit_test(test_collect_overflow),
        cmocka_unit_test(test_node_failure),
        cmocka_unit_test(test_sink_and_filter_failure),
        cmocka_unit_test(test_source_failure),
        cmocka_unit_test(test_source_without_open_runs_once),
        cmocka_unit_test(test_convenience_sink_is_serial),
        cmocka_unit_test(test_empty_range),
        cmocka_unit_test(test_single_item),
        cmocka_unit_test(test_run_twice),
        cmocka_unit_test(test_priorities),
        cmocka_unit_test(test_node_stats),
        cmocka_unit_test(test_node_stats_fan),
        cmocka_unit_test(test_runtime_stats),
        cmocka_unit_test(test_stats_print),
        cmocka_unit_test(test_workers_1),
        cmocka_unit_test(test_workers_4),
        cmocka_unit_test(test_workers_auto),
        cmocka_unit_test(test_batch_items_1),
        cmocka_unit_test(test_batch_items_1000),
        cmocka_unit_test(test_max_batches_1),
        cmocka_unit_test(test_serial_exclusive),
        cmocka_unit_test(test_item_sizes),
        cmocka_unit_test(test_collect_after_flat_map),
        cmocka_unit_test(test_failure_cases),
        cmocka_unit_test(test_destroy),
        cmocka_unit_test(test_two_runtimes),
        cmocka_unit_test(test_concurrent_runs_two_graphs),
        cmocka_unit_test(test_concurrent_runs_same_graph),
        cmocka_unit_test(test_concurrent_runtimes),
        cmocka_unit_test(test_busy_while_running),
        cmocka_unit_test(test_errmsg_other_thread),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
