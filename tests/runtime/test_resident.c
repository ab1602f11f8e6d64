/*
 * Device-resident edges (runtime/device_node.c, devices/opencl): a kernel
 * node's output stays on the device for kernel nodes after it there, and
 * comes back to the host once, however many CPU consumers read it.
 *
 * On the OpenCL device "auto" picks (PoCL in CI): chains of kernel nodes,
 * fan-out to kernel and CPU consumers, a MIXED consumer, each checked
 * item by item against the CPU's arithmetic, and the bytes each node and
 * the device copied (only the chain's input in and its output out); the
 * same chain with PARA_RESIDENT=0 copies at every node; pinned host
 * staging (PARA_PINNED=on) gives the same; the device budget
 * of the memory-aware policy holds resident bytes under its limit, and
 * batches that live only on the device stay off the host budget. On the
 * "cpu" back-end (no residency) the chain copies at every node as before.
 * Without an OpenCL device the OpenCL tests are skipped, unless
 * PARA_REQUIRE_DEVICE=1 (CI), where that is a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "para.h"

#ifdef PARA_HAVE_CL_LIVE
#include "opencl/cl_internal.h"
#endif

static bool have_opencl;

#define N_ITEMS 200000u

/* One affine stage y = mul x + add, on the device (axpb_u32 of the copy
 * kernels) and on the CPU. */
typedef struct stage {
    uint32_t mul, add;
    para_kernel_arg_t args[2];
} stage;

static stage stages[4] = {
    {3, 1, {{0}}}, {5, 2, {{0}}}, {7, 3, {{0}}}, {11, 4, {{0}}}};

static const char axpb_src[] =
    "__kernel void axpb_u32(__global const uint *in, __global uint *out,\n"
    "                       uint n, uint mul, uint add)\n"
    "{\n"
    "    size_t i = get_global_id(0);\n"
    "    if (i < n) out[i] = in[i] * mul + add;\n"
    "}\n";

static int axpb_cpu(void *ctx, const void *in, void *out, size_t n)
{
    const stage *st = ctx;
    const uint32_t *x = in;
    uint32_t *y = out;
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] * st->mul + st->add;
    return 0;
}

static uint32_t apply(unsigned first, unsigned count, uint32_t x)
{
    for (unsigned i = first; i < first + count; i++)
        x = x * stages[i].mul + stages[i].add;
    return x;
}

static para_node_t *add_stage(para_graph_t *g, const char *name, unsigned i,
                              bool with_cpu)
{
    stage *st = &stages[i];
    st->args[0] = (para_kernel_arg_t){&st->mul, 4, PARA_KARG_SCALAR};
    st->args[1] = (para_kernel_arg_t){&st->add, 4, PARA_KARG_SCALAR};
    para_kernel_desc_t kd = {
        .source = axpb_src, .entry = "axpb_u32", .args = st->args, .n_args = 2};
    para_node_t *n = NULL;
    assert_int_equal(para_graph_add_kernel(g, name, 4, 4, &kd,
                                           with_cpu ? axpb_cpu : NULL, st, &n),
                     0);
    return n;
}

static uint32_t *input(void)
{
    uint32_t *in = malloc(N_ITEMS * sizeof *in);
    assert_non_null(in);
    for (uint32_t i = 0; i < N_ITEMS; i++)
        in[i] = i * 2654435761u;
    return in;
}

/* The tests' runtime: 2 workers, unpinned, on @p device, batches of
 * @p batch_items; @p policy and @p mem_budget when not NULL / 0. */
static para_runtime_t *make_rt_with(const char *device, size_t batch_items,
                                    const char *policy, size_t mem_budget)
{
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = 2;
    a.device = device;
    a.pin = "none";
    a.batch_items = batch_items;
    if (policy != NULL)
        a.policy = policy;
    if (mem_budget != 0)
        a.mem_budget = mem_budget;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    return rt;
}

static para_runtime_t *make_rt(const char *device)
{
    return make_rt_with(device, 1000, NULL, 0);
}

static void check_chain(const uint32_t *in, const uint32_t *got, size_t count,
                        unsigned stages_run)
{
    assert_int_equal(count, N_ITEMS);
    for (uint32_t i = 0; i < N_ITEMS; i++)
        if (got[i] != apply(0, stages_run, in[i]))
            fail_msg("item %u: got %u, want %u", i, got[i],
                     apply(0, stages_run, in[i]));
}

typedef struct chain_result {
    para_node_stats_t node[3];
    para_device_stats_t dev;
} chain_result;

/* in -> A -> B -> C -> collect, kernel nodes (with CPU functions if
 * @p with_cpu: MIXED nodes, or CPU functions for the "cpu" back-end). */
static void run_chain(para_runtime_t *rt, bool with_cpu, chain_result *r)
{
    uint32_t *in = input();
    uint32_t *got = calloc(N_ITEMS, sizeof *got);
    assert_non_null(got);
    size_t count = 0;
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *k[3], *out;
    assert_int_equal(para_graph_add_array(g, "in", in, N_ITEMS, 4, &src), 0);
    k[0] = add_stage(g, "A", 0, with_cpu);
    k[1] = add_stage(g, "B", 1, with_cpu);
    k[2] = add_stage(g, "C", 2, with_cpu);
    assert_int_equal(
        para_graph_add_collect(g, "out", 4, got, N_ITEMS, &count, &out), 0);
    assert_int_equal(para_graph_connect(g, src, k[0]), 0);
    assert_int_equal(para_graph_connect(g, k[0], k[1]), 0);
    assert_int_equal(para_graph_connect(g, k[1], k[2]), 0);
    assert_int_equal(para_graph_connect(g, k[2], out), 0);
    int rc = para_run(rt, g);
    if (rc != 0)
        fail_msg("run: %s: %s", para_err_name(rc), para_runtime_errmsg(rt));
    check_chain(in, got, count, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(para_node_stats(k[i], &r->node[i]), 0);
    assert_int_equal(para_device_stats(rt, 0, &r->dev), 0);
    para_graph_destroy(g);
    free(got);
    free(in);
}

#define NEED_OPENCL()                                                          \
    do {                                                                       \
        if (!have_opencl)                                                      \
            skip();                                                            \
    } while (0)

static void expect_no_live_cl_objects(void)
{
#ifdef PARA_HAVE_CL_LIVE
    long mems = -1, events = -1;
    para__cl_live(&mems, &events);
    assert_int_equal(mems, 0);
    assert_int_equal(events, 0);
#endif
}

/* A chain of three kernel-only nodes: the items go in once and come out
 * once; B and C take their inputs from the node before on the device. */
static void test_chain_stays_on_device(void **state)
{
    (void)state;
    NEED_OPENCL();
    para_runtime_t *rt = make_rt("auto");
    chain_result r;
    run_chain(rt, false, &r);
    const uint64_t bytes = (uint64_t)N_ITEMS * 4;
    assert_int_equal(r.node[0].device_bytes_in, bytes);
    assert_int_equal(r.node[0].device_bytes_out, 0);
    assert_int_equal(r.node[1].device_bytes_in, 0);
    assert_int_equal(r.node[1].device_bytes_out, 0);
    assert_int_equal(r.node[2].device_bytes_in, 0);
    assert_int_equal(r.node[2].device_bytes_out, bytes);
    assert_int_equal(r.node[0].device_handovers, 0);
    assert_true(r.node[1].device_handovers > 0);
    assert_true(r.node[2].device_handovers > 0);
    assert_int_equal(r.dev.bytes_in, bytes);
    assert_int_equal(r.dev.bytes_out, bytes);
    assert_int_equal(r.dev.handovers,
                     r.node[1].device_handovers + r.node[2].device_handovers);
    /* A second run reuses the device buffers of the first. */
    run_chain(rt, false, &r);
    assert_true(r.dev.pool_hits > 0);
    assert_int_equal(r.dev.bytes_in, bytes);
    assert_int_equal(para_runtime_destroy(rt), 0);
    expect_no_live_cl_objects();
}

/* PARA_RESIDENT=0: every launch copies in and out, as without residency. */
static void test_chain_resident_off(void **state)
{
    (void)state;
    NEED_OPENCL();
    setenv("PARA_RESIDENT", "0", 1); /* read when the device opens */
    para_runtime_t *rt = make_rt("auto");
    chain_result r;
    run_chain(rt, false, &r);
    unsetenv("PARA_RESIDENT");
    const uint64_t bytes = (uint64_t)N_ITEMS * 4;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r.node[i].device_bytes_in, bytes);
        assert_int_equal(r.node[i].device_bytes_out, bytes);
        assert_int_equal(r.node[i].device_handovers, 0);
    }
    assert_int_equal(r.dev.bytes_in, 3 * bytes);
    assert_int_equal(r.dev.handovers, 0);
    assert_int_equal(para_runtime_destroy(rt), 0);
    expect_no_live_cl_objects();
}

/* PARA_PINNED=on (the default for GPUs, off for a CPU device like PoCL's):
 * launches stage in the back-end's pinned host memory; the same results
 * and bytes, with residency on and off, and nothing left behind. */
static void test_chain_pinned_staging(void **state)
{
    (void)state;
    NEED_OPENCL();
    const uint64_t bytes = (uint64_t)N_ITEMS * 4;
    for (int resident = 1; resident >= 0; resident--) {
        setenv("PARA_PINNED", "on", 1); /* read when the device opens */
        setenv("PARA_RESIDENT", resident ? "1" : "0", 1);
        para_runtime_t *rt = make_rt("auto");
        chain_result r;
        run_chain(rt, false, &r);
        unsetenv("PARA_PINNED");
        unsetenv("PARA_RESIDENT");
        assert_int_equal(r.dev.bytes_in, resident ? bytes : 3 * bytes);
        assert_int_equal(r.dev.bytes_out, resident ? bytes : 3 * bytes);
        assert_int_equal(para_runtime_destroy(rt), 0);
        expect_no_live_cl_objects();
    }
}

static size_t count_str(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p != NULL;
         p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The device lane of the trace shows copies apart from kernels: with
 * residency, one copy in per launch of A and one copy out per launch of C,
 * and none for B; without, one of each per launch of every node. */
static void test_trace_shows_copies(void **state)
{
    (void)state;
    NEED_OPENCL();
    char path[] = "/tmp/para-test-resident-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    for (int resident = 1; resident >= 0; resident--) {
        setenv("PARA_RESIDENT", resident ? "1" : "0", 1);
        para_runtime_attr_t a;
        assert_int_equal(para_runtime_attr_init(&a), 0);
        a.workers = 2;
        a.device = "auto";
        a.pin = "none";
        a.batch_items = 1000;
        a.trace = path;
        para_runtime_t *rt = NULL;
        assert_int_equal(para_runtime_create(&rt, &a), 0);
        chain_result r;
        run_chain(rt, false, &r);
        unsetenv("PARA_RESIDENT");
        assert_int_equal(para_runtime_destroy(rt), 0);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        static char json[8 << 20];
        size_t len = fread(json, 1, sizeof json - 1, f);
        fclose(f);
        json[len] = '\0';
        uint64_t launches = r.node[0].device_launches +
                            r.node[1].device_launches +
                            r.node[2].device_launches;
        size_t in = count_str(json, "\"copy in\""),
               out = count_str(json, "\"copy out\""),
               kernels = count_str(json, "\"cat\":\"device\"");
        print_message("resident %d: %zu copies in, %zu out, %zu kernels, "
                      "%llu launches\n",
                      resident, in, out, kernels, (unsigned long long)launches);
        assert_int_equal(kernels, launches);
        assert_int_equal(in, resident ? r.node[0].device_launches : launches);
        assert_int_equal(out, resident ? r.node[2].device_launches : launches);
    }
    unlink(path);
}

/* The "cpu" back-end has no residency: the same chain copies at every
 * node and gives the same results. */
static void test_chain_cpu_backend_unchanged(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt("cpu");
    chain_result r;
    run_chain(rt, true, &r);
    const uint64_t bytes = (uint64_t)N_ITEMS * 4;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r.node[i].device_bytes_in, bytes);
        assert_int_equal(r.node[i].device_bytes_out, bytes);
        assert_int_equal(r.node[i].device_handovers, 0);
    }
    assert_int_equal(para_runtime_destroy(rt), 0);
}

typedef struct twice_sink {
    const uint32_t *in;
    uint64_t seen, wrong;
} twice_sink;

static int twice_map(void *ctx, const void *in, void *out)
{
    (void)ctx;
    *(uint32_t *)out = *(const uint32_t *)in * 2u;
    return 0;
}

static int count_sink(void *ctx, const void *in, size_t n)
{
    (void)in;
    twice_sink *s = ctx;
    s->seen += n;
    return 0;
}

/* A (kernel-only) fans out to B (kernel-only, on the device), D (a CPU map)
 * and a CPU sink; B to C (MIXED, split by measured speed). A's output
 * comes back once for its two CPU consumers and stays on the device for
 * B; B's comes back for the MIXED C, which may run either side. Every
 * result is the CPU's. */
static void test_fan_out_device_and_cpu(void **state)
{
    (void)state;
    NEED_OPENCL();
    para_runtime_t *rt = make_rt("auto");
    uint32_t *in = input();
    uint32_t *got_c = calloc(N_ITEMS, sizeof *got_c);
    uint32_t *got_d = calloc(N_ITEMS, sizeof *got_d);
    assert_non_null(got_c);
    assert_non_null(got_d);
    size_t count_c = 0, count_d = 0;
    twice_sink ts = {in, 0, 0};
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *a, *b, *c, *d, *out_c, *out_d, *sink;
    assert_int_equal(para_graph_add_array(g, "in", in, N_ITEMS, 4, &src), 0);
    a = add_stage(g, "A", 0, false);
    b = add_stage(g, "B", 1, false);
    c = add_stage(g, "C", 2, true);
    assert_int_equal(para_graph_add_map(g, "D", 4, 4, twice_map, NULL, 0, &d),
                     0);
    assert_int_equal(
        para_graph_add_collect(g, "out-c", 4, got_c, N_ITEMS, &count_c, &out_c),
        0);
    assert_int_equal(
        para_graph_add_collect(g, "out-d", 4, got_d, N_ITEMS, &count_d, &out_d),
        0);
    assert_int_equal(para_graph_add_sink_batch(g, "count", 4, count_sink, &ts,
                                               PARA_NODE_SERIAL, &sink),
                     0);
    assert_int_equal(para_graph_connect(g, src, a), 0);
    assert_int_equal(para_graph_connect(g, a, b), 0);
    assert_int_equal(para_graph_connect(g, a, d), 0);
    assert_int_equal(para_graph_connect(g, a, sink), 0);
    assert_int_equal(para_graph_connect(g, b, c), 0);
    assert_int_equal(para_graph_connect(g, c, out_c), 0);
    assert_int_equal(para_graph_connect(g, d, out_d), 0);
    for (int run = 0; run < 2; run++) {
        count_c = count_d = 0;
        ts.seen = 0;
        int rc = para_run(rt, g);
        if (rc != 0)
            fail_msg("run: %s: %s", para_err_name(rc), para_runtime_errmsg(rt));
        check_chain(in, got_c, count_c, 3);
        assert_int_equal(count_d, N_ITEMS);
        for (uint32_t i = 0; i < N_ITEMS; i++)
            if (got_d[i] != apply(0, 1, in[i]) * 2u)
                fail_msg("D item %u: got %u, want %u", i, got_d[i],
                         apply(0, 1, in[i]) * 2u);
        assert_int_equal(ts.seen, N_ITEMS);
        para_node_stats_t sa, sb;
        assert_int_equal(para_node_stats(a, &sa), 0);
        assert_int_equal(para_node_stats(b, &sb), 0);
        const uint64_t bytes = (uint64_t)N_ITEMS * 4;
        /* Once back for D and the sink together; not at all for B. */
        assert_int_equal(sa.device_bytes_out, bytes);
        assert_int_equal(sb.device_bytes_in, 0);
        assert_true(sb.device_handovers > 0);
        /* C is MIXED: B's output comes back for it. */
        assert_int_equal(sb.device_bytes_out, bytes);
    }
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
    expect_no_live_cl_objects();
    free(got_c);
    free(got_d);
    free(in);
}

/* Small batches of an odd size (7 items, 28 bytes: parts that are never
 * aligned for sub-buffers) through the resident chain: right results, one
 * copy in and one out. (Launches gathering parts of several buffers are
 * tested launch by launch in tests/devices/test_opencl.c.) */
static void test_small_odd_batches(void **state)
{
    (void)state;
    NEED_OPENCL();
    /* 28-byte parts: never aligned */
    para_runtime_t *rt = make_rt_with("auto", 7, NULL, 0);
    chain_result r;
    run_chain(rt, false, &r);
    assert_int_equal(r.dev.bytes_in, (uint64_t)N_ITEMS * 4);
    assert_int_equal(r.dev.bytes_out, (uint64_t)N_ITEMS * 4);
    assert_true(r.node[1].device_handovers > 0);
    assert_int_equal(para_runtime_destroy(rt), 0);
    expect_no_live_cl_objects();
}

/* The memory-aware policy's device budget: with PARA_DEVICE_BUDGET far
 * below the chain's data, the bytes batches hold on the device never pass
 * it (the device's resident_peak), and the
 * results are right; without it the same run holds more there. */
static void test_device_budget_holds(void **state)
{
    (void)state;
    NEED_OPENCL();
    para_runtime_t *rt = make_rt("auto");
    chain_result r;
    run_chain(rt, false, &r);
    uint64_t free_peak = r.dev.resident_peak;
    print_message("resident peak without a device budget: %llu bytes\n",
                  (unsigned long long)free_peak);
    assert_true(free_peak > 0);

    /* Far below the unbudgeted peak, which depends on timing: 64,000 to
     * 152,000 bytes seen (16 to 38 of the 4,000-byte batches). */
    const uint64_t budget = 24 << 10;
    setenv("PARA_DEVICE_BUDGET", "24K", 1); /* read as each run starts */
    run_chain(rt, false, &r);
    para_stats_t st = {.size = sizeof st, .version = PARA_STATS_VERSION};
    assert_int_equal(para_runtime_stats(rt, &st), 0);
    unsetenv("PARA_DEVICE_BUDGET");
    print_message("with a 24 KiB device budget: peak %llu bytes, %llu source "
                  "holds\n",
                  (unsigned long long)r.dev.resident_peak,
                  (unsigned long long)st.source_holds);
    assert_true(r.dev.resident_peak > 0);
    assert_true(r.dev.resident_peak <= budget);
    assert_true(free_peak > budget);
    assert_true(r.node[1].device_handovers > 0);
    assert_int_equal(para_runtime_destroy(rt), 0);
    expect_no_live_cl_objects();
}

/* Device-only batches on the host budget: a chain whose middle outputs live
 * only on the device (A -> B -> C, kernel only) runs under a host budget of
 * 14 KiB, below the footprint of one 1,000-item source batch (26 KiB with
 * the outputs of A and B off the host, 56 KiB with them on it), so one
 * source batch at a time is admitted. Its most bytes at once are C's
 * output staging and batch (12,192 bytes); with A's and B's outputs taking
 * host room as well, 16,384 bytes were measured, over the budget. The run
 * completes with the right results, the chain stays on the device, and the
 * host's peak bytes stay under the budget. */
static void test_device_only_batches_off_host_budget(void **state)
{
    (void)state;
    NEED_OPENCL();
    const size_t budget = 14 << 10;
    para_runtime_t *rt = make_rt_with("auto", 1000, "memaware", budget);
    chain_result r;
    run_chain(rt, false, &r);
    para_stats_t st = {.size = sizeof st, .version = PARA_STATS_VERSION};
    assert_int_equal(para_runtime_stats(rt, &st), 0);
    print_message("host budget %zu bytes: peak %llu bytes, %llu source holds, "
                  "device resident peak %llu bytes\n",
                  budget, (unsigned long long)st.peak_bytes,
                  (unsigned long long)st.source_holds,
                  (unsigned long long)r.dev.resident_peak);
    assert_int_equal(st.mem_budget, budget);
    assert_true(st.peak_bytes > 0);
    assert_true(st.peak_bytes <= budget);
    assert_true(r.node[1].device_handovers > 0);
    assert_true(r.node[2].device_handovers > 0);
    assert_int_equal(r.node[1].device_bytes_in, 0);
    assert_int_equal(r.node[1].device_bytes_out, 0);
    assert_true(r.dev.resident_peak > 0);
    assert_int_equal(para_runtime_destroy(rt), 0);
    expect_no_live_cl_objects();
}

/* A kernel node with the item index (PARA_KARG_INDEX) whose input is
 * resident: A -> B where B computes y = x + i from A's buffer and the
 * numbers made on the device; every item checked, B copied nothing in. */
static void test_resident_with_item_index(void **state)
{
    (void)state;
    NEED_OPENCL();
    static const char idx_src[] =
        "__kernel void plus_i(__global const uint *in, __global uint *out,\n"
        "                     uint n, __global const ulong *idx)\n"
        "{\n"
        "    size_t i = get_global_id(0);\n"
        "    if (i < n) out[i] = in[i] + (uint)idx[i];\n"
        "}\n";
    para_runtime_t *rt = make_rt("auto");
    uint32_t *in = input();
    uint32_t *got = calloc(N_ITEMS, sizeof *got);
    assert_non_null(got);
    size_t count = 0;
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *a, *b, *out;
    assert_int_equal(para_graph_add_array(g, "in", in, N_ITEMS, 4, &src), 0);
    a = add_stage(g, "A", 0, false);
    para_kernel_arg_t args[1] = {{.kind = PARA_KARG_INDEX}};
    para_kernel_desc_t kd = {
        .source = idx_src, .entry = "plus_i", .args = args, .n_args = 1};
    assert_int_equal(para_graph_add_kernel(g, "B", 4, 4, &kd, NULL, NULL, &b),
                     0);
    assert_int_equal(
        para_graph_add_collect(g, "out", 4, got, N_ITEMS, &count, &out), 0);
    assert_int_equal(para_graph_connect(g, src, a), 0);
    assert_int_equal(para_graph_connect(g, a, b), 0);
    assert_int_equal(para_graph_connect(g, b, out), 0);
    int rc = para_run(rt, g);
    if (rc != 0)
        fail_msg("run: %s: %s", para_err_name(rc), para_runtime_errmsg(rt));
    assert_int_equal(count, N_ITEMS);
    for (uint32_t i = 0; i < N_ITEMS; i++)
        if (got[i] != apply(0, 1, in[i]) + i)
            fail_msg("item %u: got %u, want %u", i, got[i],
                     apply(0, 1, in[i]) + i);
    para_node_stats_t sb;
    assert_int_equal(para_node_stats(b, &sb), 0);
    assert_int_equal(sb.device_bytes_in, 0);
    assert_true(sb.device_handovers > 0);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
    expect_no_live_cl_objects();
    free(got);
    free(in);
}

static int group_setup(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt("auto");
    const char *name = para_runtime_open_device(rt);
    have_opencl = name != NULL && strstr(name, "sim") == NULL;
    if (name != NULL)
        print_message("device: %s\n", name);
    else
        print_message("no OpenCL device: %s\n", para_runtime_errmsg(rt));
    assert_int_equal(para_runtime_destroy(rt), 0);
    const char *req = getenv("PARA_REQUIRE_DEVICE");
    if (!have_opencl && req != NULL && strcmp(req, "1") == 0)
        return -1;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_cpu_backend_unchanged),
        cmocka_unit_test(test_chain_stays_on_device),
        cmocka_unit_test(test_chain_resident_off),
        cmocka_unit_test(test_chain_pinned_staging),
        cmocka_unit_test(test_trace_shows_copies),
        cmocka_unit_test(test_fan_out_device_and_cpu),
        cmocka_unit_test(test_small_odd_batches),
        cmocka_unit_test(test_device_budget_holds),
        cmocka_unit_test(test_device_only_batches_off_host_budget),
        cmocka_unit_test(test_resident_with_item_index),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
