/*
 * Kernel nodes in graphs (runtime/device_node.c): gathering batches into
 * launches, splitting outputs, order downstream, flush at the end of the
 * stream, failures, device selection and CPU fallback.
 *
 * The first group runs on the "cpu" back-end (a launch runs the node's CPU
 * function on the device host thread), so it needs no OpenCL and checks the
 * launch path on any machine. The second group runs the same graphs on the
 * OpenCL device that "auto" picks (PoCL in CI) with the kernels of kernels/
 * and checks the results against the CPU reference, MIXED nodes included.
 * Without an OpenCL device the second group is skipped, unless
 * PARA_REQUIRE_DEVICE=1 (CI), where that is a failure.
 *
 * CI also runs this file under ThreadSanitizer.
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
#include <time.h>

#include <cmocka.h>

#include "para.h"
#include "mandelbrot_ref.h"

static char log_buf[8192];

static void capture_log(int level, const char *msg, void *arg)
{
    (void)level;
    (void)arg;
    size_t used = strlen(log_buf);
    snprintf(log_buf + used, sizeof log_buf - used, "%s\n", msg);
}

static para_runtime_t *make_rt(const char *device, unsigned workers,
                               size_t batch_items)
{
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = workers;
    a.device = device;
    a.batch_items = batch_items;
    a.pin = "none";
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    return rt;
}

static void spin_ns(uint64_t ns)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((uint64_t)(t.tv_sec - t0.tv_sec) * 1000000000u +
                 (uint64_t)t.tv_nsec - (uint64_t)t0.tv_nsec <
             ns);
}

/* ---- CPU implementations ------------------------------------------------ */

/* y = 3 x + 1 on uint32 (the meaning of axpb_u32 with mul 3, add 1). */
typedef struct axpb_ctx {
    uint32_t mul, add;
    uint64_t spin_ns_per_item; /* make launches slow, so batches gather */
    _Atomic int fail_at;       /* fail on the input item of this value */
} axpb_ctx;

static int axpb_cpu(void *ctx, const void *in, void *out, size_t n)
{
    axpb_ctx *c = ctx;
    const uint32_t *x = in;
    uint32_t *y = out;
    /* relaxed: set before the run. */
    int fail_at = atomic_load_explicit(&c->fail_at, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        if ((int)x[i] == fail_at)
            return 42;
        y[i] = x[i] * c->mul + c->add;
    }
    if (c->spin_ns_per_item != 0)
        spin_ns(c->spin_ns_per_item * n);
    return 0;
}

/* A callback source of uint32 0..total-1, at most `per_call` per batch. */
typedef struct small_source {
    uint32_t next, total, per_call;
} small_source;

static int small_source_fn(void *ctx, void *out, size_t cap, size_t *written)
{
    small_source *s = ctx;
    uint32_t *o = out;
    size_t n = 0;
    while (n < cap && n < s->per_call && s->next < s->total)
        o[n++] = s->next++;
    *written = n;
    return 0;
}

static const para_kernel_arg_t *axpb_args(const axpb_ctx *c)
{
    static para_kernel_arg_t args[2];
    args[0] = (para_kernel_arg_t){&c->mul, sizeof c->mul};
    args[1] = (para_kernel_arg_t){&c->add, sizeof c->add};
    return args;
}

static para_kernel_desc_t axpb_kernel(const axpb_ctx *c)
{
    return (para_kernel_desc_t){.source = para_kernel_source("copy"),
                                .entry = "axpb_u32",
                                .args = axpb_args(c),
                                .n_args = 2};
}

/* source (per_call items a batch) -> kernel axpb -> collect; checks every
 * item in order. Returns the run's code; stats through *ks. */
static int run_axpb(para_runtime_t *rt, uint32_t total, uint32_t per_call,
                    axpb_ctx *c, bool with_cpu, para_node_stats_t *ks)
{
    small_source src = {0, total, per_call};
    uint32_t *got = calloc(total + 1, sizeof *got);
    assert_non_null(got);
    size_t count = 0;
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *s, *k, *out;
    assert_int_equal(para_graph_add_source(g, "numbers", sizeof(uint32_t),
                                           small_source_fn, &src, &s),
                     0);
    para_kernel_desc_t kd = axpb_kernel(c);
    assert_int_equal(para_graph_add_kernel(g, "axpb", sizeof(uint32_t),
                                           sizeof(uint32_t), &kd,
                                           with_cpu ? axpb_cpu : NULL, c, &k),
                     0);
    assert_int_equal(para_graph_add_collect(g, "out", sizeof(uint32_t), got,
                                            total + 1, &count, &out),
                     0);
    assert_int_equal(para_graph_connect(g, s, k), 0);
    assert_int_equal(para_graph_connect(g, k, out), 0);
    int rc = para_run(rt, g);
    if (rc == 0) {
        assert_int_equal(count, total);
        for (uint32_t i = 0; i < total; i++)
            if (got[i] != i * c->mul + c->add)
                fail_msg("item %u: got %u, want %u", i, got[i],
                         i * c->mul + c->add);
    }
    if (ks != NULL)
        assert_int_equal(para_node_stats(k, ks), 0);
    para_graph_destroy(g);
    free(got);
    return rc;
}

/* ---- cpu back-end -------------------------------------------------------- */

static void test_cpu_backend_gathers_and_orders(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt("cpu", 2, 0);
    assert_string_equal(para_runtime_device(rt), "para cpu back-end");
    axpb_ctx c = {.mul = 3, .add = 1, .spin_ns_per_item = 2000};
    atomic_init(&c.fail_at, -1);
    para_node_stats_t ks;
    assert_int_equal(run_axpb(rt, 6000, 4, &c, true, &ks), 0);
    /* Every item went through a launch, and launches gathered batches. */
    assert_int_equal(ks.items_in, 6000);
    assert_int_equal(ks.device_items, 6000);
    assert_int_equal(ks.batches, 1500);
    print_message("cpu back-end: 1500 batches in %llu launches\n",
                  (unsigned long long)ks.device_launches);
    assert_true(ks.device_launches > 0);
    assert_true(ks.device_launches <= ks.batches / 2);
    para_stats_t st;
    assert_int_equal(para_runtime_stats(rt, &st), 0);
    assert_int_equal(st.device_items, 6000);
    assert_int_equal(st.device_launches, ks.device_launches);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_cpu_backend_flushes_partial_batch(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt("cpu", 2, 0);
    axpb_ctx c = {.mul = 7, .add = 5};
    atomic_init(&c.fail_at, -1);
    /* One item, then an odd count: the last launch is partial and must be
     * flushed when the stream ends, not wait for more. */
    assert_int_equal(run_axpb(rt, 1, 1000, &c, true, NULL), 0);
    assert_int_equal(run_axpb(rt, 1001, 10, &c, true, NULL), 0);
    assert_int_equal(run_axpb(rt, 0, 10, &c, true, NULL), 0);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_cpu_backend_forced_batch_launches_each(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt("cpu", 2, 1);
    axpb_ctx c = {.mul = 2, .add = 0};
    atomic_init(&c.fail_at, -1);
    para_node_stats_t ks;
    assert_int_equal(run_axpb(rt, 500, 1, &c, true, &ks), 0);
    assert_int_equal(ks.device_launches, 500); /* dev1: one item a launch */
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_cpu_backend_failure_names_node(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt("cpu", 2, 0);
    axpb_ctx c = {.mul = 3, .add = 1};
    atomic_init(&c.fail_at, 777);
    assert_int_equal(run_axpb(rt, 5000, 8, &c, true, NULL), PARA_ENODE);
    const char *msg = para_runtime_errmsg(rt);
    assert_non_null(strstr(msg, "'axpb'"));
    assert_non_null(strstr(msg, "42"));
    /* The runtime and the device are fine afterwards. */
    atomic_store_explicit(&c.fail_at, -1, memory_order_relaxed);
    assert_int_equal(run_axpb(rt, 5000, 8, &c, true, NULL), 0);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* A sink that fails while the device still holds batches. */
static int failing_sink(void *ctx, const void *in)
{
    (void)ctx;
    return *(const uint32_t *)in == 3u * 2000u + 1u ? -5 : 0;
}

static void test_cpu_backend_abort_downstream(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt("cpu", 2, 0);
    axpb_ctx c = {.mul = 3, .add = 1, .spin_ns_per_item = 500};
    atomic_init(&c.fail_at, -1);
    small_source src = {0, 20000, 16};
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *s, *k, *sink;
    assert_int_equal(
        para_graph_add_source(g, "numbers", 4, small_source_fn, &src, &s), 0);
    para_kernel_desc_t kd = axpb_kernel(&c);
    assert_int_equal(
        para_graph_add_kernel(g, "axpb", 4, 4, &kd, axpb_cpu, &c, &k), 0);
    assert_int_equal(para_graph_add_sink(g, "check", 4, failing_sink, NULL,
                                         PARA_NODE_PARALLEL, &sink),
                     0);
    assert_int_equal(para_graph_connect(g, s, k), 0);
    assert_int_equal(para_graph_connect(g, k, sink), 0);
    assert_int_equal(para_run(rt, g), PARA_ENODE);
    assert_non_null(strstr(para_runtime_errmsg(rt), "'check'"));
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* Fan-out of a kernel node to an ORDERED collect and a parallel sink, and
 * a merge of two producers into it. */
typedef struct sum_sink {
    _Atomic uint64_t sum, count;
} sum_sink;

static int sum_sink_fn(void *ctx, const void *in)
{
    sum_sink *s = ctx;
    /* relaxed: totals read after the run. */
    atomic_fetch_add_explicit(&s->sum, *(const uint32_t *)in,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    return 0;
}

static int to_u32(void *ctx, const void *in, void *out)
{
    (void)ctx;
    *(uint32_t *)out = (uint32_t) * (const uint64_t *)in;
    return 0;
}

static int keep_not_mod_7(void *ctx, const void *in)
{
    (void)ctx;
    return *(const uint32_t *)in % 7 != 0;
}

static void check_fan_out_merge(const char *device)
{
    para_runtime_t *rt = make_rt(device, 2, 0);
    axpb_ctx c = {.mul = 3, .add = 1};
    atomic_init(&c.fail_at, -1);
    enum { TOTAL = 30000 };
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *r, *conv, *even, *odd, *k, *col, *sum;
    assert_int_equal(para_graph_add_range(g, "range", 0, TOTAL, &r), 0);
    assert_int_equal(para_graph_add_map(g, "u32", 8, 4, to_u32, NULL, 0, &conv),
                     0);
    /* Two paths into the kernel node (a merge), each a filter that drops
     * the multiples of 7. */
    assert_int_equal(
        para_graph_add_filter(g, "not7", 4, keep_not_mod_7, NULL, 0, &even), 0);
    assert_int_equal(
        para_graph_add_filter(g, "is7", 4, keep_not_mod_7, NULL, 0, &odd), 0);
    para_kernel_desc_t kd = axpb_kernel(&c);
    assert_int_equal(
        para_graph_add_kernel(g, "axpb", 4, 4, &kd, axpb_cpu, &c, &k), 0);
    static uint32_t got[2 * TOTAL];
    size_t count = 0;
    assert_int_equal(
        para_graph_add_collect(g, "ordered", 4, got, 2 * TOTAL, &count, &col),
        0);
    sum_sink ss;
    atomic_init(&ss.sum, 0);
    atomic_init(&ss.count, 0);
    assert_int_equal(para_graph_add_sink(g, "sum", 4, sum_sink_fn, &ss,
                                         PARA_NODE_PARALLEL, &sum),
                     0);
    assert_int_equal(para_graph_connect(g, r, conv), 0);
    assert_int_equal(para_graph_connect(g, conv, even), 0);
    assert_int_equal(para_graph_connect(g, conv, odd), 0);
    assert_int_equal(para_graph_connect(g, even, k), 0);
    assert_int_equal(para_graph_connect(g, odd, k), 0);
    assert_int_equal(para_graph_connect(g, k, col), 0);
    assert_int_equal(para_graph_connect(g, k, sum), 0);
    assert_int_equal(para_run(rt, g), 0);

    /* Each kept item arrives twice, once per path. The ORDERED collect
     * orders batches by (source range, path): every source batch's kept
     * items come as an ascending run, then the same run again from the
     * second path, and the runs ascend. */
    size_t kept = 0;
    uint64_t want_sum = 0;
    for (uint32_t i = 0; i < TOTAL; i++) {
        if (i % 7 != 0) {
            kept += 2;
            want_sum += 2ull * (i * 3 + 1);
        }
    }
    uint32_t last = 0, next_x = 1; /* the next kept source item */
    for (size_t i = 0; i < count;) {
        size_t len = 1;
        while (i + len < count && got[i + len] > got[i + len - 1])
            len++;
        assert_true(i + 2 * len <= count);
        assert_true(i == 0 || got[i] > last);
        for (size_t j = 0; j < len; j++) {
            while (next_x % 7 == 0)
                next_x++;
            assert_int_equal(got[i + j], next_x * 3 + 1);
            assert_int_equal(got[i + len + j], got[i + j]);
            next_x++;
        }
        last = got[i + len - 1];
        i += 2 * len;
    }
    assert_int_equal(count, kept);
    assert_int_equal(atomic_load(&ss.count), kept);
    assert_int_equal(atomic_load(&ss.sum), want_sum);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_cpu_backend_fan_out_merge_order(void **state)
{
    (void)state;
    check_fan_out_merge("cpu");
}

/* ---- selection and fallback ------------------------------------------------
 */

static void test_no_device_runs_cpu_function(void **state)
{
    (void)state;
    log_buf[0] = '\0';
    para_runtime_t *rt = make_rt("none", 2, 0);
    assert_null(para_runtime_device(rt));
    axpb_ctx c = {.mul = 3, .add = 1};
    atomic_init(&c.fail_at, -1);
    para_node_stats_t ks;
    assert_int_equal(run_axpb(rt, 3000, 16, &c, true, &ks), 0);
    assert_int_equal(ks.device_items, 0);
    assert_int_equal(ks.items_in, 3000);
    assert_non_null(strstr(log_buf, "kernel nodes run their CPU functions"));
    /* Logged once per runtime. */
    log_buf[0] = '\0';
    assert_int_equal(run_axpb(rt, 3000, 16, &c, true, NULL), 0);
    assert_null(strstr(log_buf, "kernel nodes run"));
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static int never_sink(void *ctx, const void *in)
{
    (void)in;
    (*(int *)ctx)++;
    return 0;
}

static void test_no_device_no_cpu_function_fails_before_run(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt("none", 2, 0);
    axpb_ctx c = {.mul = 3, .add = 1};
    int sink_calls = 0;
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *r, *conv, *k, *sink;
    assert_int_equal(para_graph_add_range(g, "range", 0, 100, &r), 0);
    assert_int_equal(para_graph_add_map(g, "u32", 8, 4, to_u32, NULL, 0, &conv),
                     0);
    para_kernel_desc_t kd = axpb_kernel(&c);
    assert_int_equal(
        para_graph_add_kernel(g, "gpu-only", 4, 4, &kd, NULL, NULL, &k), 0);
    assert_int_equal(
        para_graph_add_sink(g, "sink", 4, never_sink, &sink_calls, 0, &sink),
        0);
    assert_int_equal(para_graph_connect(g, r, conv), 0);
    assert_int_equal(para_graph_connect(g, conv, k), 0);
    assert_int_equal(para_graph_connect(g, k, sink), 0);
    assert_int_equal(para_run(rt, g), PARA_ENODEV);
    assert_non_null(strstr(para_runtime_errmsg(rt), "'gpu-only'"));
    assert_non_null(strstr(para_runtime_errmsg(rt), "none"));
    assert_int_equal(sink_calls, 0);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);

    /* The cpu back-end cannot run a node without a CPU function either. */
    rt = make_rt("cpu", 1, 0);
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_range(g, "range", 0, 100, &r), 0);
    assert_int_equal(para_graph_add_map(g, "u32", 8, 4, to_u32, NULL, 0, &conv),
                     0);
    assert_int_equal(
        para_graph_add_kernel(g, "gpu-only", 4, 4, &kd, NULL, NULL, &k), 0);
    assert_int_equal(
        para_graph_add_sink(g, "sink", 4, never_sink, &sink_calls, 0, &sink),
        0);
    assert_int_equal(para_graph_connect(g, r, conv), 0);
    assert_int_equal(para_graph_connect(g, conv, k), 0);
    assert_int_equal(para_graph_connect(g, k, sink), 0);
    assert_int_equal(para_run(rt, g), PARA_ENODEV);
    assert_non_null(strstr(para_runtime_errmsg(rt), "no CPU function"));
    assert_int_equal(sink_calls, 0);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_unknown_device_is_an_error(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt("no-such-device-xyz", 2, 0);
    assert_null(para_runtime_device(rt));
    axpb_ctx c = {.mul = 3, .add = 1};
    atomic_init(&c.fail_at, -1);
    assert_int_equal(run_axpb(rt, 100, 16, &c, true, NULL), PARA_ENODEV);
    assert_non_null(strstr(para_runtime_errmsg(rt), "no-such-device-xyz"));
    /* Graphs without kernel nodes do not need the device. */
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *r, *sink;
    int calls = 0;
    assert_int_equal(para_graph_add_range(g, "range", 0, 10, &r), 0);
    assert_int_equal(para_graph_add_sink(g, "sink", 8, never_sink, &calls,
                                         PARA_NODE_SERIAL, &sink),
                     0);
    assert_int_equal(para_graph_connect(g, r, sink), 0);
    assert_int_equal(para_run(rt, g), 0);
    assert_int_equal(calls, 10);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_kernel_desc_validation(void **state)
{
    (void)state;
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_kernel_desc_t no_entry = {.source = "__kernel void k() {}"};
    assert_int_equal(
        para_graph_add_kernel(g, "k", 4, 4, &no_entry, NULL, NULL, NULL),
        PARA_EINVAL);
    assert_non_null(strstr(para_graph_errmsg(g), "entry point"));
    uint32_t v = 1;
    para_kernel_arg_t bad_arg = {&v, 0};
    para_kernel_desc_t bad = {
        .source = "x", .entry = "k", .args = &bad_arg, .n_args = 1};
    assert_int_equal(
        para_graph_add_kernel(g, "k", 4, 4, &bad, NULL, NULL, NULL),
        PARA_EINVAL);
    para_kernel_desc_t ok = {.source = "x", .entry = "k"};
    para_node_desc_t serial = {.name = "k",
                               .in_size = 4,
                               .out_size = 4,
                               .flags = PARA_NODE_SERIAL,
                               .kernel = &ok};
    assert_int_equal(para_graph_add(g, &serial, NULL), PARA_EINVAL);
    assert_non_null(strstr(para_graph_errmsg(g), "PARALLEL"));
    para_node_desc_t with_sink = {
        .name = "k", .in_size = 4, .sink = never_sink, .kernel = &ok};
    assert_int_equal(para_graph_add(g, &with_sink, NULL), PARA_EINVAL);
    assert_int_equal(
        para_graph_add_kernel(g, "k", 4, 4, NULL, NULL, NULL, NULL),
        PARA_EINVAL);
    assert_null(para_kernel_source("no-such-kernel"));
    assert_non_null(strstr(para_kernel_source("mandelbrot"), "__kernel"));
    para_graph_destroy(g);
}

/* ---- OpenCL -----------------------------------------------------------------
 */

static bool have_opencl;

static int opencl_group_setup(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt("auto", 1, 0);
    const char *name = para_runtime_device(rt);
    have_opencl = name != NULL;
    if (name != NULL)
        print_message("OpenCL device: %s\n", name);
    else
        print_message("no OpenCL device: %s\n", para_runtime_errmsg(rt));
    assert_int_equal(para_runtime_destroy(rt), 0);
    const char *req = getenv("PARA_REQUIRE_DEVICE");
    if (!have_opencl && req != NULL && strcmp(req, "1") == 0)
        return -1; /* CI: the device tests must not skip */
    return 0;
}

#define NEED_OPENCL()                                                          \
    do {                                                                       \
        if (!have_opencl)                                                      \
            skip();                                                            \
    } while (0)

static void test_opencl_kernel_node_gathers(void **state)
{
    (void)state;
    NEED_OPENCL();
    para_runtime_t *rt = make_rt("auto", 2, 0);
    axpb_ctx c = {.mul = 3, .add = 1};
    atomic_init(&c.fail_at, -1);
    para_node_stats_t ks;
    /* Device only: every item through launches, many batches a launch. */
    assert_int_equal(run_axpb(rt, 100000, 64, &c, false, &ks), 0);
    assert_int_equal(ks.device_items, 100000);
    print_message("opencl: %llu batches in %llu launches\n",
                  (unsigned long long)ks.batches,
                  (unsigned long long)ks.device_launches);
    assert_true(ks.device_launches < ks.batches);
    assert_int_equal(run_axpb(rt, 1, 64, &c, false, NULL), 0);
    assert_int_equal(run_axpb(rt, 4097, 1000, &c, false, NULL), 0);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_opencl_fan_out_merge_order(void **state)
{
    (void)state;
    NEED_OPENCL();
    check_fan_out_merge("auto");
}

static void test_opencl_mixed_node_splits(void **state)
{
    (void)state;
    NEED_OPENCL();
    para_runtime_t *rt = make_rt("auto", 2, 0);
    axpb_ctx c = {.mul = 5, .add = 2};
    atomic_init(&c.fail_at, -1);
    para_node_stats_t ks;
    assert_int_equal(run_axpb(rt, 200000, 256, &c, true, &ks), 0);
    print_message("mixed: %llu of %llu items on the device\n",
                  (unsigned long long)ks.device_items,
                  (unsigned long long)ks.items_in);
    assert_int_equal(ks.items_in, 200000);
    /* The CPU is tried first, then the device: both implementations ran. */
    assert_true(ks.device_items < ks.items_in);
    assert_true(ks.device_items > 0);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_opencl_build_error_names_node(void **state)
{
    (void)state;
    NEED_OPENCL();
    para_runtime_t *rt = make_rt("auto", 2, 0);
    para_kernel_desc_t bad = {
        .source = "__kernel void broken(__global const uint *in, "
                  "__global uint *out, uint n) { out[0] = undeclared; }",
        .entry = "broken"};
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *r, *conv, *k, *sink;
    int calls = 0;
    assert_int_equal(para_graph_add_range(g, "range", 0, 100, &r), 0);
    assert_int_equal(para_graph_add_map(g, "u32", 8, 4, to_u32, NULL, 0, &conv),
                     0);
    assert_int_equal(
        para_graph_add_kernel(g, "broken-node", 4, 4, &bad, NULL, NULL, &k), 0);
    assert_int_equal(para_graph_add_sink(g, "sink", 4, never_sink, &calls,
                                         PARA_NODE_SERIAL, &sink),
                     0);
    assert_int_equal(para_graph_connect(g, r, conv), 0);
    assert_int_equal(para_graph_connect(g, conv, k), 0);
    assert_int_equal(para_graph_connect(g, k, sink), 0);
    assert_int_equal(para_run(rt, g), PARA_EKERNEL_BUILD);
    const char *msg = para_runtime_errmsg(rt);
    assert_non_null(strstr(msg, "'broken-node'"));
    assert_non_null(strstr(msg, "undeclared"));
    assert_int_equal(calls, 0);
    para_graph_destroy(g);
    /* The runtime still runs good kernels. */
    axpb_ctx c = {.mul = 3, .add = 1};
    atomic_init(&c.fail_at, -1);
    assert_int_equal(run_axpb(rt, 1000, 64, &c, false, NULL), 0);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* Mandelbrot through a kernel node, against the C reference (the device
 * may differ in the last bit of a division: allow 0.1 % of the sum). */
static void test_opencl_mandelbrot_node(void **state)
{
    (void)state;
    NEED_OPENCL();
    enum { W = 256, H = 256 };
    uint32_t *pixels = malloc(W * H * sizeof *pixels);
    assert_non_null(pixels);
    uint64_t want = 0;
    for (uint32_t i = 0; i < W * H; i++) {
        pixels[i] = i;
        want += para_mandelbrot_ref(i, W, H);
    }
    para_runtime_t *rt = make_rt("auto", 2, 0);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *k, *sum;
    assert_int_equal(para_graph_add_array(g, "pixels", pixels, W * H, 4, &src),
                     0);
    uint32_t w = W, h = H;
    para_kernel_arg_t args[] = {{&w, 4}, {&h, 4}};
    para_kernel_desc_t kd = {.source = para_kernel_source("mandelbrot"),
                             .entry = "mandelbrot",
                             .args = args,
                             .n_args = 2};
    assert_int_equal(
        para_graph_add_kernel(g, "mandelbrot", 4, 4, &kd, NULL, NULL, &k), 0);
    sum_sink ss;
    atomic_init(&ss.sum, 0);
    atomic_init(&ss.count, 0);
    assert_int_equal(para_graph_add_sink(g, "sum", 4, sum_sink_fn, &ss,
                                         PARA_NODE_SERIAL, &sum),
                     0);
    assert_int_equal(para_graph_connect(g, src, k), 0);
    assert_int_equal(para_graph_connect(g, k, sum), 0);
    assert_int_equal(para_run(rt, g), 0);
    uint64_t got = atomic_load(&ss.sum);
    assert_int_equal(atomic_load(&ss.count), W * H);
    double diff = got > want ? (double)(got - want) : (double)(want - got);
    print_message("mandelbrot %ux%u: node sum %llu, C sum %llu\n", W, H,
                  (unsigned long long)got, (unsigned long long)want);
    assert_true(diff <= 0.001 * (double)want);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
    free(pixels);
}

int main(void)
{
    para_set_log_fn(capture_log, NULL);
    const struct CMUnitTest cpu_tests[] = {
        cmocka_unit_test(test_cpu_backend_gathers_and_orders),
        cmocka_unit_test(test_cpu_backend_flushes_partial_batch),
        cmocka_unit_test(test_cpu_backend_forced_batch_launches_each),
        cmocka_unit_test(test_cpu_backend_failure_names_node),
        cmocka_unit_test(test_cpu_backend_abort_downstream),
        cmocka_unit_test(test_cpu_backend_fan_out_merge_order),
        cmocka_unit_test(test_no_device_runs_cpu_function),
        cmocka_unit_test(test_no_device_no_cpu_function_fails_before_run),
        cmocka_unit_test(test_unknown_device_is_an_error),
        cmocka_unit_test(test_kernel_desc_validation),
    };
    const struct CMUnitTest opencl_tests[] = {
        cmocka_unit_test(test_opencl_kernel_node_gathers),
        cmocka_unit_test(test_opencl_fan_out_merge_order),
        cmocka_unit_test(test_opencl_mixed_node_splits),
        cmocka_unit_test(test_opencl_build_error_names_node),
        cmocka_unit_test(test_opencl_mandelbrot_node),
    };
    int failed = cmocka_run_group_tests_name("device nodes, cpu back-end",
                                             cpu_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("device nodes, OpenCL", opencl_tests,
                                          opencl_group_setup, NULL);
    return failed != 0;
}
