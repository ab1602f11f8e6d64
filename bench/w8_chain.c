/*
 * para-bench: workload w8, a chain of three kernels on one device (the
 * benchmark contract (BENCHMARKS.md)).
 *
 * x[i] = (float)(i % 4096) / 4096 (an array source) -> A: y = 2x + 1 ->
 * B: 256 times y = 0.999 y + 0.001 -> C: z = y * y -> a serial sink summing
 * in double. The sink must get exactly N items and the sum must be within
 * 1e-5 (relative) of the C reference (a device may contract a*x+b into an
 * FMA).
 *
 *   cpu       the three nodes with their C functions only (no kernel).
 *   dev       the three as kernel nodes (no C function): the data stays on
 *             the device from A to C (device-resident edges).
 *   dev-copy  the same graph on a runtime with residency off
 *             (PARA_RESIDENT=0): every edge goes through host memory.
 *   limit     plain OpenCL, no para in it: one write of all N inputs, A, B
 *             and C enqueued back to back on one queue (work-groups of the
 *             driver's choosing), one read, then the same sum. Its buffers
 *             and program are made before timing.
 *
 * dev and dev-copy report h2d_bytes and d2h_bytes, the bytes para's device
 * statistics counted each way in the last run. The summary line on stderr
 * gives dev/limit, dev/dev-copy and the bytes against N * 4.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#ifdef PARA_BENCH_OPENCL
#include "opencl/cl_internal.h"
#endif

#define W8_N 4194304u
#define W8_QUICK_N 262144u
#define W8_B_ROUNDS 256

static const char w8_src[] =
    "__kernel void w8_a(__global const float *in, __global float *out,\n"
    "                   uint n)\n"
    "{\n"
    "    size_t i = get_global_id(0);\n"
    "    if (i < n) out[i] = 2.0f * in[i] + 1.0f;\n"
    "}\n"
    "__kernel void w8_b(__global const float *in, __global float *out,\n"
    "                   uint n)\n"
    "{\n"
    "    size_t i = get_global_id(0);\n"
    "    if (i >= n) return;\n"
    "    float y = in[i];\n"
    "    for (int k = 0; k < 256; k++) y = y * 0.999f + 0.001f;\n"
    "    out[i] = y;\n"
    "}\n"
    "__kernel void w8_c(__global const float *in, __global float *out,\n"
    "                   uint n)\n"
    "{\n"
    "    size_t i = get_global_id(0);\n"
    "    if (i < n) out[i] = in[i] * in[i];\n"
    "}\n";

struct w8_state {
    uint32_t n;
    float *x;
    double expect; /* the C reference sum */
    double sum;    /* the sink's */
    uint64_t count;
    int device; /* 1: kernel nodes, 0: C functions */
    para_node_t *node[3];
    para_node_stats_t ns[3]; /* of the last run */
    para_kernel_desc_t k[3];
};

static int a_cpu(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    const float *x = in;
    float *y = out;
    for (size_t i = 0; i < n; i++)
        y[i] = 2.0f * x[i] + 1.0f;
    return 0;
}

static int b_cpu(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    const float *x = in;
    float *y = out;
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        for (int k = 0; k < W8_B_ROUNDS; k++)
            v = v * 0.999f + 0.001f;
        y[i] = v;
    }
    return 0;
}

static int c_cpu(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    const float *x = in;
    float *y = out;
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] * x[i];
    return 0;
}

static int sum_sink(void *ctx, const void *in, size_t n)
{
    struct w8_state *st = ctx;
    const float *z = in;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += z[i];
    st->sum += s;
    st->count += n;
    return 0;
}

static int w8_build(para_graph_t *g, void *state)
{
    struct w8_state *st = state;
    st->sum = 0;
    st->count = 0;
    static const char *const names[3] = {"A", "B", "C"};
    para_map_batch_fn fns[3] = {a_cpu, b_cpu, c_cpu};
    para_node_t *src, *k[3], *sink;
    int rc = para_graph_add_array(g, "x", st->x, st->n, 4, &src);
    for (int i = 0; i < 3 && rc == 0; i++) {
        para_node_desc_t d = {
            .name = names[i],
            .in_size = 4,
            .out_size = 4,
            .ctx = st,
            .map_batch = st->device ? NULL : fns[i],
            .kernel = st->device ? &st->k[i] : NULL,
        };
        rc = para_graph_add(g, &d, &k[i]);
        st->node[i] = k[i];
    }
    if (rc == 0)
        rc = para_graph_add_sink_batch(g, "sum", 4, sum_sink, st,
                                       PARA_NODE_SERIAL, &sink);
    if (rc == 0)
        rc = para_graph_connect(g, src, k[0]);
    if (rc == 0)
        rc = para_graph_connect(g, k[0], k[1]);
    if (rc == 0)
        rc = para_graph_connect(g, k[1], k[2]);
    if (rc == 0)
        rc = para_graph_connect(g, k[2], sink);
    return rc;
}

static void check_sum(bench_row_t *row, double got, double want)
{
    double diff = got > want ? got - want : want - got;
    if (diff > 1e-5 * (want > 0 ? want : -want))
        bench_fail(row, "sum %.9g, reference %.9g (more than 1e-5 apart)", got,
                   want);
}

static void w8_check(void *state, bench_row_t *row)
{
    struct w8_state *st = state;
    if (st->count != st->n)
        bench_fail(row, "sink got %llu items, expected %u",
                   (unsigned long long)st->count, st->n);
    check_sum(row, st->sum, st->expect);
    for (int i = 0; i < 3; i++)
        if (para_node_stats(st->node[i], &st->ns[i]) != 0)
            memset(&st->ns[i], 0, sizeof st->ns[i]);
}

/* Launches and device time per kernel of the last run, on stderr. */
static void print_launches(const struct w8_state *st, const char *variant)
{
    fprintf(stderr, "w8 %s:", variant);
    for (int i = 0; i < 3; i++)
        fprintf(stderr, " %c %llu launches %.1f ms%s", "ABC"[i],
                (unsigned long long)st -> ns[i].device_launches,
                (double)st->ns[i].device_ns / 1e6, i < 2 ? ";" : "\n");
}

/* The bytes @p rt's devices copied each way in its last run. */
static void add_bytes(para_runtime_t *rt, bench_row_t *row)
{
    uint64_t in = 0, out = 0;
    for (unsigned k = 0; k < para_runtime_device_count(rt); k++) {
        para_device_stats_t ds;
        if (para_device_stats(rt, k, &ds) == 0) {
            in += ds.bytes_in;
            out += ds.bytes_out;
        }
    }
    snprintf(row->extra, sizeof row->extra,
             "\"h2d_bytes\":%llu,\"d2h_bytes\":%llu", (unsigned long long)in,
             (unsigned long long)out);
}

static double items_per_s(const bench_row_t *r)
{
    return r->seconds > 0 ? (double)r->items / r->seconds : 0.0;
}

/* ---- limit: plain OpenCL ---------------------------------------------------
 */

#ifdef PARA_BENCH_OPENCL
struct w8_limit {
    struct w8_state *st;
    cl_command_queue q;
    cl_kernel k[3];
    cl_mem buf[2];
    float *out;
};

static int w8_limit_run(void *state, bench_row_t *row)
{
    struct w8_limit *lim = state;
    struct w8_state *st = lim->st;
    size_t bytes = (size_t)st->n * 4;
    /* The driver's own work-group size (NULL): on PoCL 3.1 with 2 cores
     * twice as fast here as 128-item groups. */
    size_t global = st->n;
    /* buf[0] -> A -> buf[1] -> B -> buf[0] -> C -> buf[1] */
    cl_int rc = clEnqueueWriteBuffer(lim->q, lim->buf[0], CL_FALSE, 0, bytes,
                                     st->x, 0, NULL, NULL);
    for (int i = 0; i < 3 && rc == CL_SUCCESS; i++)
        rc = clEnqueueNDRangeKernel(lim->q, lim->k[i], 1, NULL, &global, NULL,
                                    0, NULL, NULL);
    if (rc == CL_SUCCESS)
        rc = clEnqueueReadBuffer(lim->q, lim->buf[1], CL_TRUE, 0, bytes,
                                 lim->out, 0, NULL, NULL);
    if (rc != CL_SUCCESS) {
        bench_fail(row, "OpenCL call failed: %d", (int)rc);
        return 1;
    }
    double s = 0;
    for (uint32_t i = 0; i < st->n; i++)
        s += lim->out[i];
    check_sum(row, s, st->expect);
    return 0;
}

/* The device PARA_DEVICE names as "P:D", else the first GPU, else the first
 * accelerator, else the first device (what "auto" opens). */
static int pick_device(cl_platform_id *pp, cl_device_id *dd)
{
    cl_platform_id plats[16];
    cl_uint np = 0;
    if (clGetPlatformIDs(16, plats, &np) != CL_SUCCESS || np == 0)
        return -1;
    unsigned wp = 0, wd = 0;
    const char *sel = getenv("PARA_DEVICE");
    bool exact = sel != NULL && sscanf(sel, "%u:%u", &wp, &wd) == 2;
    const cl_device_type order[3] = {
        CL_DEVICE_TYPE_GPU, CL_DEVICE_TYPE_ACCELERATOR, CL_DEVICE_TYPE_ALL};
    for (int o = 0; o < 3; o++) {
        for (cl_uint p = 0; p < np && p < 16; p++) {
            cl_device_id devs[16];
            cl_uint nd = 0;
            if (clGetDeviceIDs(plats[p], exact ? CL_DEVICE_TYPE_ALL : order[o],
                               16, devs, &nd) != CL_SUCCESS)
                continue;
            for (cl_uint d = 0; d < nd && d < 16; d++) {
                if (exact && (p != wp || d != wd))
                    continue;
                *pp = plats[p];
                *dd = devs[d];
                return 0;
            }
        }
    }
    return -1;
}

static void w8_limit(const bench_cfg_t *cfg, struct w8_state *st,
                     bench_row_t *row)
{
    struct w8_limit lim = {.st = st};
    cl_platform_id plat;
    cl_device_id dev;
    cl_context ctx = NULL;
    cl_program prog = NULL;
    cl_int rc = CL_SUCCESS;
    if (pick_device(&plat, &dev) != 0) {
        bench_fail(row, "no OpenCL device");
        return;
    }
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM,
                                     (cl_context_properties)plat, 0};
    ctx = clCreateContext(props, 1, &dev, NULL, NULL, &rc);
    if (rc == CL_SUCCESS)
        lim.q = clCreateCommandQueue(ctx, dev, 0, &rc);
    const char *src = w8_src;
    if (rc == CL_SUCCESS)
        prog = clCreateProgramWithSource(ctx, 1, &src, NULL, &rc);
    if (rc == CL_SUCCESS)
        rc = clBuildProgram(prog, 1, &dev, "", NULL, NULL);
    static const char *const entries[3] = {"w8_a", "w8_b", "w8_c"};
    size_t bytes = (size_t)st->n * 4;
    for (int i = 0; i < 2 && rc == CL_SUCCESS; i++)
        lim.buf[i] = clCreateBuffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, &rc);
    cl_uint n32 = st->n;
    for (int i = 0; i < 3 && rc == CL_SUCCESS; i++) {
        lim.k[i] = clCreateKernel(prog, entries[i], &rc);
        cl_mem from = lim.buf[i % 2], to = lim.buf[(i + 1) % 2];
        if (rc == CL_SUCCESS)
            rc = clSetKernelArg(lim.k[i], 0, sizeof from, &from);
        if (rc == CL_SUCCESS)
            rc = clSetKernelArg(lim.k[i], 1, sizeof to, &to);
        if (rc == CL_SUCCESS)
            rc = clSetKernelArg(lim.k[i], 2, sizeof n32, &n32);
    }
    lim.out = malloc(bytes);
    if (rc != CL_SUCCESS || lim.out == NULL)
        bench_fail(row, "OpenCL setup failed: %d", (int)rc);
    else
        bench_time(cfg, w8_limit_run, &lim, row);
    for (int i = 0; i < 3; i++)
        if (lim.k[i] != NULL)
            clReleaseKernel(lim.k[i]);
    for (int i = 0; i < 2; i++)
        if (lim.buf[i] != NULL)
            clReleaseMemObject(lim.buf[i]);
    if (prog != NULL)
        clReleaseProgram(prog);
    if (lim.q != NULL)
        clReleaseCommandQueue(lim.q);
    if (ctx != NULL)
        clReleaseContext(ctx);
    free(lim.out);
}
#else
static void w8_limit(const bench_cfg_t *cfg, struct w8_state *st,
                     bench_row_t *row)
{
    (void)cfg;
    (void)st;
    bench_fail(row, "built without OpenCL");
}
#endif

int bench_w8(const bench_cfg_t *cfg)
{
    struct w8_state st = {.n = cfg->quick ? W8_QUICK_N : W8_N};
    st.x = malloc((size_t)st.n * sizeof *st.x);
    float *tmp = malloc((size_t)st.n * sizeof *tmp);
    if (st.x == NULL || tmp == NULL) {
        fprintf(stderr, "para-bench: w8: out of memory\n");
        free(st.x);
        free(tmp);
        return 1;
    }
    for (uint32_t i = 0; i < st.n; i++)
        st.x[i] = (float)(i % 4096) / 4096.0f;
    a_cpu(NULL, st.x, tmp, st.n);
    b_cpu(NULL, tmp, tmp, st.n);
    c_cpu(NULL, tmp, tmp, st.n);
    for (uint32_t i = 0; i < st.n; i++)
        st.expect += tmp[i];
    free(tmp);
    static const char *const entries[3] = {"w8_a", "w8_b", "w8_c"};
    for (int i = 0; i < 3; i++)
        st.k[i] = (para_kernel_desc_t){.source = w8_src, .entry = entries[i]};
    static const bench_graph_ops_t ops = {w8_build, w8_check};

    bench_row_t cpu, dev, copy, limit;
    bench_row_init(&cpu, "w8", "cpu", st.n, cfg->threads);
    st.device = 0;
    bench_time_graph(cfg, &ops, &st, &cpu);
    bench_print_row(&cpu);

    bench_row_init(&dev, "w8", "dev", st.n, cfg->threads);
    st.device = 1;
    bench_time_graph(cfg, &ops, &st, &dev);
    add_bytes(cfg->rt, &dev);
    bench_print_row(&dev);
    print_launches(&st, "dev");

    /* dev-copy: a runtime whose device opens with residency off. */
    bench_row_init(&copy, "w8", "dev-copy", st.n, cfg->threads);
    {
        para_runtime_attr_t a;
        if (para_runtime_attr_init(&a) != 0)
            fprintf(stderr, "para-bench: a PARA_* variable does not parse\n");
        a.workers = cfg->threads;
        bench_cfg_t c2 = *cfg;
        const char *old = getenv("PARA_RESIDENT");
        char *saved = old != NULL ? strdup(old) : NULL;
        setenv("PARA_RESIDENT", "0", 1);
        if (para_runtime_create(&c2.rt, &a) != 0) {
            bench_fail(&copy, "cannot create the dev-copy runtime");
        } else {
            if (para_runtime_open_device(c2.rt) == NULL)
                bench_fail(&copy, "no device: %s", para_runtime_errmsg(c2.rt));
            else
                bench_time_graph(&c2, &ops, &st, &copy);
            add_bytes(c2.rt, &copy);
            if (para_runtime_destroy(c2.rt) != 0)
                bench_fail(&copy, "runtime destroy failed");
        }
        if (saved != NULL)
            setenv("PARA_RESIDENT", saved, 1);
        else
            unsetenv("PARA_RESIDENT");
        free(saved);
    }
    bench_print_row(&copy);
    print_launches(&st, "dev-copy");

    bench_row_init(&limit, "w8", "limit", st.n, 1);
    w8_limit(cfg, &st, &limit);
    bench_print_row(&limit);

    fprintf(
        stderr, "w8: dev/limit %.3f, dev/dev-copy %.3f, dev/cpu %.2f; %s\n",
        items_per_s(&limit) > 0 ? items_per_s(&dev) / items_per_s(&limit) : 0.0,
        items_per_s(&copy) > 0 ? items_per_s(&dev) / items_per_s(&copy) : 0.0,
        items_per_s(&cpu) > 0 ? items_per_s(&dev) / items_per_s(&cpu) : 0.0,
        dev.extra);
    int ok = cpu.ok && dev.ok && copy.ok && limit.ok;
    free(st.x);
    return ok ? 0 : 1;
}
