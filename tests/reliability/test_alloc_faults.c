/*
 * Allocation failure injection: every allocation para makes, one at a time.
 *
 * tests/CMakeLists.txt links this test with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,
 * --wrap=aligned_alloc,--wrap=free. Because para is a static library, only
 * the calls made from para's object files (and this file's) land in the
 * __wrap_ functions of rel_alloc.h; hwloc, libc and cmocka keep the real
 * allocator.
 * The wrappers count allocations while armed and make the k-th fail
 * (single mode) or the k-th and every later one (persistent mode), and they
 * keep a count of live blocks, so a leak shows up at the very k that caused
 * it, in every build (ASan in CI adds its own leak and overflow checks).
 *
 * For each k, one scenario: create a runtime, build the representative graph
 * of rel_graph.h (fan-out, merge, SERIAL and ORDERED nodes, a flat-map, a
 * callback source, a filter, a batch sink, an array source into collect),
 * run it, then disarm and run it again. The scenario passes when each call
 * either succeeds or returns PARA_ENOMEM / PARA_EAGAIN (runtime creation) or
 * PARA_ENOMEM / PARA_ENODE (a run; ENODE when para_emit() failed inside the
 * flat-map, which the node function returns), never crashes, leaves the
 * runtime and graph reusable (the second run is complete and correct) or
 * destroyable, and leaks no block. The sweep goes on until a scenario sees
 * no injected failure at all (k past the last allocation).
 *
 * The widened sweeps run the graph with kernel nodes (inc and twice, with
 * their CPU functions) on the `cpu` device back-end, with tracing on, under
 * every policy (ws, memaware, dhondt); and they inject failures of
 * pthread_create() and of the hwloc calls that can fail (rel_sysfault.h)
 * the same way, one call at a time. With a device, a failed run may also be
 * PARA_EAGAIN (a thread could not start) and a failed device open is
 * retried by the next run.
 *
 * The owned-items sweep runs rel_graph_build_owned(): items that own a
 * malloc'd buffer (the source's allocations are swept too), moved by a
 * filter, shared by a fan-out; a leaked or doubly freed buffer shows up as
 * above. The records sweep runs a records source over a file split by
 * several workers (chunks mapped, then read), into a PARALLEL map and a
 * SERIAL sink.
 *
 * PARA_ALLOC_SWEEP_REPEAT=N repeats the multi-worker sweeps N times (they
 * are not deterministic: which allocation is the k-th depends on the
 * interleaving). Under ThreadSanitizer every 5th point is swept
 * (PARA_ALLOC_SWEEP_STRIDE overrides), so that the step stays short.
 *
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "para.h"
#include "rel_alloc.h"
#include "rel_graph.h"
#include "rel_sysfault.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* ---- one scenario ------------------------------------------------------ */

static void quiet_log(int level, const char *msg, void *arg)
{
    (void)level;
    (void)msg;
    (void)arg;
}

enum outcome { OK_CLEAN, FAIL_CREATE, FAIL_BUILD, FAIL_RUN, OK_ABSORBED };

struct tally {
    long scenarios;
    long by[5];
    long max_calls;
};

static struct rel_ctx ctx;           /* large: static, not from the allocator */
static size_t cfg_batch_items = 16;  /* many batches from few items */
static unsigned cfg_max_batches = 4; /* few alive: pools are reused */
/* The widened sweeps: */
static const char *cfg_device; /* NULL: the default (auto) */
static const char *cfg_policy; /* NULL: the default (memaware) */
static bool cfg_trace;         /* write a trace after each run */
static bool cfg_kernels;       /* rel_graph_build_kernel() */
static bool cfg_sys;           /* inject pthread/hwloc failures, not malloc */
static bool cfg_owned;         /* rel_graph_build_owned() */
static int cfg_records;        /* 0, or a records graph: 1 mapped, 2 pread */
static char trace_path[256];

static void fault_arm(long k, bool persist)
{
    if (cfg_sys)
        sys_arm(k, persist);
    else
        arm(k, persist);
}

static void fault_disarm(void)
{
    sys_disarm();
    disarm();
}

static long faults_injected(void)
{
    /* relaxed: every thread that failed has synchronised with us. */
    return cfg_sys ? atomic_load_explicit(&sys_injected, memory_order_relaxed)
                   : atomic_load_explicit(&injected, memory_order_relaxed);
}

static long faults_counted(void)
{
    /* relaxed: as above. */
    return cfg_sys ? atomic_load_explicit(&sys_calls, memory_order_relaxed)
                   : atomic_load_explicit(&calls, memory_order_relaxed);
}

/* The records graph: a file of short lines split in chunks of 256 bytes
 * (several workers pull at once) -> a PARALLEL map of each slice to its
 * length and first byte -> SERIAL sink (count and sum). */
static char rec_path[64];
static uint64_t rec_count, rec_sum, rec_want_count, rec_want_sum;

static int rec_map(void *c, const void *in, void *out)
{
    (void)c;
    const para_slice_t *sl = in;
    *(uint64_t *)out =
        sl->len * 1000 + (sl->len > 0 ? (unsigned char)sl->data[0] : 0);
    return 0;
}

static int rec_sink(void *c, const void *in)
{
    (void)c;
    rec_count++;
    rec_sum += *(const uint64_t *)in;
    return 0;
}

static void rec_file_make(void)
{
    snprintf(rec_path, sizeof rec_path, "/tmp/para-alloc-rec-XXXXXX");
    int fd = mkstemp(rec_path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    rec_want_count = rec_want_sum = 0;
    for (unsigned i = 0; i < 200; i++) {
        int len =
            fprintf(f, "%c line %u %.*s\n", 'a' + (int)(i % 26), i,
                    (int)(i % 40), "........................................");
        rec_want_count++;
        rec_want_sum += (uint64_t)(len - 1) * 1000 + (uint64_t)('a' + i % 26);
    }
    assert_int_equal(fclose(f), 0);
}

static int build_records(para_graph_t **out)
{
    para_graph_t *g = NULL;
    *out = NULL;
    int rc = para_graph_create(&g);
    if (rc != 0)
        return rc;
    para_records_attr_t ra;
    assert_int_equal(para_records_attr_init(&ra), 0);
    ra.block_size = 256;
    ra.map = cfg_records == 1;
    para_node_t *s, *m, *k;
    if ((rc = para_graph_add_records_file(g, "lines", rec_path, &ra, &s)) !=
            0 ||
        (rc = para_graph_add_map(g, "len", sizeof(para_slice_t), 8, rec_map,
                                 NULL, 0, &m)) != 0 ||
        (rc = para_graph_add_sink(g, "sum", 8, rec_sink, NULL, PARA_NODE_SERIAL,
                                  &k)) != 0 ||
        (rc = para_graph_connect(g, s, m)) != 0 ||
        (rc = para_graph_connect(g, m, k)) != 0) {
        para_graph_destroy(g);
        return rc;
    }
    *out = g;
    return 0;
}

static void answer_reset(uint64_t n)
{
    rel_ctx_reset(&ctx, n);
    rec_count = rec_sum = 0;
}

static bool answer_ok(bool full)
{
    if (cfg_records)
        return rec_count == rec_want_count && rec_sum == rec_want_sum;
    return cfg_owned ? rel_owned_check(&ctx) : rel_ctx_check(&ctx, full);
}

static int build(para_graph_t **g, bool pipeline)
{
    if (cfg_records)
        return build_records(g);
    if (pipeline)
        return rel_graph_build_pipeline(g, &ctx);
    if (cfg_owned)
        return rel_graph_build_owned(g, &ctx);
    return cfg_kernels ? rel_graph_build_kernel(g, &ctx)
                       : rel_graph_build(g, &ctx);
}

static para_runtime_t *create_rt(unsigned workers, int *rc)
{
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = workers;
    a.batch_items = cfg_batch_items;
    a.max_batches = cfg_max_batches;
    /* Pinned under thread/hwloc faults, so that binding calls are made. */
    a.pin = cfg_sys ? "cores" : "none";
    if (cfg_device != NULL)
        a.device = cfg_device;
    if (cfg_policy != NULL)
        a.policy = cfg_policy;
    if (cfg_trace)
        a.trace = trace_path;
    para_runtime_t *rt = NULL;
    *rc = para_runtime_create(&rt, &a);
    if (*rc != 0)
        assert_null(rt);
    return rt;
}

/* Run @p g twice more unarmed: the graph and runtime must be reusable. */
static void check_reusable(para_runtime_t *rt, para_graph_t *g, bool full,
                           uint64_t n)
{
    answer_reset(n);
    int rc = para_run(rt, g);
    if (rc != 0)
        fail_msg("rerun after injection: %s: %s", para_err_name(rc),
                 para_runtime_errmsg(rt));
    assert_true(answer_ok(full));
}

static enum outcome scenario(long k, bool persist, unsigned workers,
                             bool pipeline, uint64_t n, long *calls_out)
{
    long base = live_now();
    fault_arm(k, persist);
    int rc;
    enum outcome out;
    para_graph_t *g = NULL;
    para_runtime_t *rt = create_rt(workers, &rc);
    if (rc != 0) {
        fault_disarm();
        if (rc != PARA_ENOMEM && rc != PARA_EAGAIN)
            fail_msg("k=%ld: runtime_create returned %s", k, para_err_name(rc));
        out = FAIL_CREATE;
        goto done;
    }
    answer_reset(n);
    rc = build(&g, pipeline);
    if (rc != 0) {
        fault_disarm();
        if (rc != PARA_ENOMEM)
            fail_msg("k=%ld: graph build returned %s", k, para_err_name(rc));
        assert_null(g);
        /* The runtime still runs a graph built afterwards. */
        answer_reset(n);
        assert_int_equal(build(&g, pipeline), 0);
        check_reusable(rt, g, !pipeline, n);
        out = FAIL_BUILD;
        goto done;
    }
    rc = para_run(rt, g);
    fault_disarm();
    if (rc == 0) {
        if (!answer_ok(!pipeline))
            fail_msg("k=%ld: run succeeded with a wrong answer", k);
        out = faults_injected() != 0 ? OK_ABSORBED : OK_CLEAN;
    } else {
        /* With a device: its host thread may fail to start (EAGAIN). */
        if (rc != PARA_ENOMEM && rc != PARA_ENODE &&
            !(cfg_device != NULL && rc == PARA_EAGAIN))
            fail_msg("k=%ld: run returned %s: %s", k, para_err_name(rc),
                     para_runtime_errmsg(rt));
        if (rc == PARA_ENODE &&
            strstr(para_runtime_errmsg(rt), "PARA_ENOMEM") == NULL)
            fail_msg("k=%ld: ENODE without ENOMEM: %s", k,
                     para_runtime_errmsg(rt));
        assert_true(para_runtime_errmsg(rt)[0] != '\0');
        out = FAIL_RUN;
    }
    check_reusable(rt, g, !pipeline, n);
done:
    *calls_out = faults_counted();
    para_graph_destroy(g);
    if (rt != NULL)
        assert_int_equal(para_runtime_destroy(rt), 0);
    long leaked = live_now() - base;
    if (leaked != 0)
        fail_msg("k=%ld (%s, %u workers): %ld blocks leaked", k,
                 persist ? "persistent" : "single", workers, leaked);
    return out;
}

/* Sweep k = 1, 2, ... until a scenario sees no injected failure. */
static long sweep_stride; /* 0: PARA_ALLOC_SWEEP_STRIDE or the default */

static long stride(void)
{
    if (sweep_stride > 0)
        return sweep_stride;
    const char *s = getenv("PARA_ALLOC_SWEEP_STRIDE");
    long v = s != NULL ? atol(s) : UNDER_TSAN ? 5 : 1;
    return v < 1 ? 1 : v;
}

static long total_points;

static void sweep(const char *what, bool persist, unsigned workers,
                  bool pipeline, uint64_t n)
{
    struct tally t = {0};
    long step = stride();
    for (long k = 1;; k += step) {
        long c = 0;
        enum outcome o = scenario(k, persist, workers, pipeline, n, &c);
        t.scenarios++;
        t.by[o]++;
        if (c > t.max_calls)
            t.max_calls = c;
        if (o == OK_CLEAN)
            break;
        if (k > 100000)
            fail_msg("sweep does not end");
    }
    total_points += t.scenarios - 1;
    char every[32] = "";
    if (step > 1)
        snprintf(every, sizeof every, " (every %ldth)", step);
    print_message("    %s: %ld points swept%s (up to %ld %s per "
                  "scenario): create failed %ld, build failed %ld, run "
                  "failed %ld, absorbed %ld, no leak\n",
                  what, t.scenarios - 1, every, t.max_calls,
                  cfg_sys ? "thread/hwloc calls" : "allocations",
                  t.by[FAIL_CREATE], t.by[FAIL_BUILD], t.by[FAIL_RUN],
                  t.by[OK_ABSORBED]);
}

static int repeat_count(void)
{
    const char *s = getenv("PARA_ALLOC_SWEEP_REPEAT");
    int r = s != NULL ? atoi(s) : 1;
    return r < 1 ? 1 : r;
}

/* ---- tests --------------------------------------------------------------- */

static void test_wrappers_inject(void **state)
{
    (void)state;
    /* The harness itself: the wrappers are linked in and fail on demand. */
    /* Through volatile pointers, so the compiler cannot elide the pairs. */
    void *(*volatile alloc)(size_t) = malloc;
    void (*volatile release)(void *) = free;
    long base = live_now();
    arm(2, false);
    void *a = alloc(16);
    void *b = alloc(16);
    void *c = alloc(16);
    disarm();
    assert_non_null(a);
    assert_null(b);
    assert_non_null(c);
    assert_int_equal(live_now() - base, 2);
    release(a);
    release(c);
    assert_int_equal(live_now(), base);
    /* And para's own allocations go through them. */
    arm(1, false);
    para_graph_t *g = NULL;
    assert_int_equal(para_graph_create(&g), PARA_ENOMEM);
    disarm();
    assert_null(g);
}

static void test_sweep_single_1_worker(void **state)
{
    (void)state;
    sweep("single failure, 1 worker", false, 1, false, 200);
}

static void test_sweep_persistent_1_worker(void **state)
{
    (void)state;
    sweep("persistent failure, 1 worker", true, 1, false, 200);
}

static void test_sweep_single_2_workers(void **state)
{
    (void)state;
    int r = repeat_count();
    for (int i = 0; i < r; i++)
        sweep("single failure, 2 workers", false, 2, false, 200);
}

static void test_sweep_persistent_3_workers(void **state)
{
    (void)state;
    int r = repeat_count();
    for (int i = 0; i < r; i++)
        sweep("persistent failure, 3 workers", true, 3, false, 200);
}

static void test_sweep_pipeline_builder(void **state)
{
    (void)state;
    sweep("PARA_PIPELINE, single failure, 2 workers", false, 2, true, 200);
}

static void test_sweep_deep_queues(void **state)
{
    (void)state;
    /* Tiny batches and up to 256 alive: deques grow (a failed growth runs
     * the task inline) and more batches come from the allocator. */
    cfg_batch_items = 2;
    cfg_max_batches = 256;
    sweep("single failure, 2 workers, deep queues", false, 2, false, 1000);
    sweep("persistent failure, 2 workers, deep queues", true, 2, false, 1000);
    cfg_batch_items = 16;
    cfg_max_batches = 4;
}

/* Kernel nodes on the `cpu` back-end, tracing on, under @p policy. */
static void sweep_widened(const char *policy, bool sys, bool persist,
                          unsigned workers)
{
    cfg_device = "cpu";
    cfg_policy = policy;
    cfg_trace = true;
    cfg_kernels = true;
    cfg_sys = sys;
    char what[160];
    snprintf(what, sizeof what,
             "kernels on cpu, traced, %s, %s %s failure, %u "
             "workers",
             policy, persist ? "persistent" : "single",
             sys ? "thread/hwloc" : "allocation", workers);
    sweep(what, persist, workers, false, 200);
    cfg_device = cfg_policy = NULL;
    cfg_trace = cfg_kernels = cfg_sys = false;
}

static void test_sweep_kernels_policies(void **state)
{
    (void)state;
    static const char *const policies[] = {"ws", "memaware", "dhondt"};
    for (int p = 0; p < 3; p++) {
        sweep_widened(policies[p], false, false, 2);
        sweep_widened(policies[p], false, true, 1);
    }
}

/* Items that own memory (a malloc'd buffer each, freed by the release
 * hook): every injected failure, in para or in the source's own
 * allocations, still frees every buffer exactly once (the live-block count
 * catches a leak, ASan a double free). */
static void test_sweep_owned_items(void **state)
{
    (void)state;
    cfg_owned = true;
    sweep("owned items, single failure, 1 worker", false, 1, false, 300);
    sweep("owned items, persistent failure, 2 workers", true, 2, false, 300);
    sweep("owned items, single failure, 3 workers", false, 3, false, 300);
    cfg_owned = false;
}

/* A records source over a file, split by several workers (mapped chunks,
 * and chunks read with pread()): every injected failure frees every block
 * and part; the rerun counts every line. */
static void test_sweep_records(void **state)
{
    (void)state;
    rec_file_make();
    for (cfg_records = 1; cfg_records <= 2; cfg_records++) {
        sweep("records, single failure, 1 worker", false, 1, false, 0);
        sweep("records, persistent failure, 2 workers", true, 2, false, 0);
        sweep("records, single failure, 3 workers", false, 3, false, 0);
    }
    cfg_records = 0;
    unlink(rec_path);
}

static void test_sweep_threads_hwloc(void **state)
{
    (void)state;
    static const char *const policies[] = {"ws", "memaware", "dhondt"};
    for (int p = 0; p < 3; p++) {
        sweep_widened(policies[p], true, false, 2);
        sweep_widened(policies[p], true, true, 3);
    }
    /* Without a device or tracing too: the plain graph. */
    cfg_sys = true;
    sweep("plain graph, single thread/hwloc failure, 2 workers", false, 2,
          false, 200);
    cfg_sys = false;
}

/* The same graph on the OpenCL device (PoCL in CI): each point opens the
 * device and builds (or loads from the binary cache) the kernels, so the
 * sweep takes every 10th point (PARA_ALLOC_SWEEP_STRIDE overrides). Skipped
 * without an OpenCL device unless PARA_REQUIRE_DEVICE=1. */
static void test_sweep_opencl(void **state)
{
    (void)state;
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = 1;
    a.device = "auto";
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    const char *name = para_runtime_open_device(rt);
    bool opencl = name != NULL && strstr(name, "cpu back-end") == NULL;
    assert_int_equal(para_runtime_destroy(rt), 0);
    if (!opencl) {
        const char *req = getenv("PARA_REQUIRE_DEVICE");
        if (req != NULL && strcmp(req, "1") == 0)
            fail_msg("no OpenCL device and PARA_REQUIRE_DEVICE=1");
        print_message("    no OpenCL device: sweep skipped\n");
        return;
    }
    const char *env = getenv("PARA_ALLOC_SWEEP_STRIDE");
    long saved = sweep_stride;
    sweep_stride = env != NULL ? 0 : 10;
    cfg_device = "auto";
    cfg_policy = "memaware";
    cfg_trace = true;
    cfg_kernels = true;
    sweep("kernels on OpenCL, traced, memaware, single allocation failure, "
          "2 workers",
          false, 2, false, 200);
    cfg_sys = true;
    sweep("kernels on OpenCL, traced, memaware, single thread/hwloc failure, "
          "2 workers",
          false, 2, false, 200);
    cfg_device = cfg_policy = NULL;
    cfg_trace = cfg_kernels = cfg_sys = false;
    sweep_stride = saved;
}

static void test_points_total(void **state)
{
    (void)state;
    print_message("    %ld points in all\n", total_points);
}

static int group_setup(void **state)
{
    (void)state;
    para_set_log_fn(quiet_log, NULL);
    const char *tmp = getenv("TMPDIR");
    snprintf(trace_path, sizeof trace_path, "%s/para-alloc-faults-%ld.json",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp", (long)getpid());
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    para_set_log_fn(NULL, NULL);
    remove(trace_path);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrappers_inject),
        cmocka_unit_test(test_sweep_single_1_worker),
        cmocka_unit_test(test_sweep_persistent_1_worker),
        cmocka_unit_test(test_sweep_single_2_workers),
        cmocka_unit_test(test_sweep_persistent_3_workers),
        cmocka_unit_test(test_sweep_pipeline_builder),
        cmocka_unit_test(test_sweep_deep_queues),
        cmocka_unit_test(test_sweep_kernels_policies),
        cmocka_unit_test(test_sweep_owned_items),
        cmocka_unit_test(test_sweep_records),
        cmocka_unit_test(test_sweep_threads_hwloc),
        cmocka_unit_test(test_sweep_opencl),
        cmocka_unit_test(test_points_total),
    };
    /* PARA_TEST_FILTER=test_sweep_records runs one sweep (cmocka's
     * pattern: '*' and '?' wildcards). */
    const char *only = getenv("PARA_TEST_FILTER");
    if (only != NULL)
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
