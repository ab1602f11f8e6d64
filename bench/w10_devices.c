/*
 * w10: several devices, simulated.
 *
 * range 0..N-1 -> device-only kernel node y = 3 x + 1 on three simulated
 * devices (devices/sim/sim.c) -> serial sink that sums. The devices are
 * (L, R) = (50 us, 20 M items/s), (50 us, 10 M items/s) and (200 us, 40 M
 * items/s): a launch of n items on one of them completes no earlier than
 * max(now, device free) + L + n / R, so the best possible makespan is
 * T* = N / sum(R) (about 60 ms for N = 4,194,304). The row reports the
 * median seconds, t_star, and each device's share of the items (of the
 * last run), in the order the devices were given; the ideal share of
 * device k is R_k / sum(R). On stderr, per device, its launches and the
 * time it had a launch in flight in the last run (beside the makespan:
 * how long it sat idle); PARA_VERBOSE=2 also logs the latency and rate
 * the runtime learnt for each device, to compare with the (L, R) above.
 *
 * The node has a CPU function (the simulated devices compute with it) but
 * is PARA_NODE_DEVICE_ONLY: the workers never run its batches, so the
 * shares are the scheduler's spreading over the devices alone.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define W10_ITEMS 4194304ull
#define W10_QUICK 262144ull
#ifndef W10_DEVICES
#define W10_DEVICES "sim:50:20M,sim:50:10M,sim:200:40M"
#endif

static const double w10_rate[3] = {20e6, 10e6, 40e6};

/* The OpenCL C of the same node, for real devices. */
static const char w10_source[] =
    "__kernel void axpb_u64(__global const ulong *in, __global ulong *out,\n"
    "                       uint n)\n"
    "{\n"
    "    uint i = get_global_id(0);\n"
    "    if (i < n)\n"
    "        out[i] = in[i] * 3 + 1;\n"
    "}\n";

struct w10_state {
    uint64_t n;
    uint64_t sum, count;
};

static int w10_cpu(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    const uint64_t *x = in;
    uint64_t *y = out;
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] * 3 + 1;
    return 0;
}

static int w10_sink(void *ctx, const void *in, size_t n)
{
    struct w10_state *st = ctx;
    const uint64_t *y = in;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += y[i];
    st->sum += s;
    st->count += n;
    return 0;
}

static int w10_build(para_graph_t *g, void *state)
{
    struct w10_state *st = state;
    st->sum = st->count = 0;
    static const para_kernel_desc_t kd = {.source = w10_source,
                                          .entry = "axpb_u64"};
    para_node_desc_t nd = {.name = "axpb",
                           .flags = PARA_NODE_DEVICE_ONLY,
                           .in_size = 8,
                           .out_size = 8,
                           .map_batch = w10_cpu,
                           .kernel = &kd};
    para_node_t *src, *k, *sink;
    int rc = para_graph_add_range(g, "i", 0, st->n, &src);
    if (rc == 0)
        rc = para_graph_add(g, &nd, &k);
    if (rc == 0)
        rc = para_graph_add_sink_batch(g, "sum", 8, w10_sink, st,
                                       PARA_NODE_SERIAL, &sink);
    if (rc == 0)
        rc = para_graph_connect(g, src, k);
    if (rc == 0)
        rc = para_graph_connect(g, k, sink);
    return rc;
}

static void w10_check(void *state, bench_row_t *row)
{
    struct w10_state *st = state;
    /* sum of 3 i + 1 over 0..n-1 = 3 n (n - 1) / 2 + n (mod 2^64). */
    uint64_t n = st->n;
    uint64_t want =
        3 * (n % 2 == 0 ? (n / 2) * (n - 1) : n * ((n - 1) / 2)) + n;
    if (st->count != n)
        bench_fail(row, "sink saw %llu items, want %llu",
                   (unsigned long long)st->count, (unsigned long long)n);
    else if (st->sum != want)
        bench_fail(row, "sum %llu, want %llu", (unsigned long long)st->sum,
                   (unsigned long long)want);
}

int bench_w10(const bench_cfg_t *cfg)
{
    struct w10_state st = {.n = cfg->quick ? W10_QUICK : W10_ITEMS};
    bench_row_t row;
    bench_row_init(&row, "w10", "para", st.n, cfg->threads);

    para_runtime_attr_t attr;
    para_runtime_t *rt = NULL;
    int rc = para_runtime_attr_init(&attr);
    if (rc == 0) {
        attr.workers = cfg->threads;
        attr.device = W10_DEVICES;
        rc = para_runtime_create(&rt, &attr);
    }
    if (rc != 0) {
        bench_fail(&row, "runtime with %s: %s", W10_DEVICES, para_err_name(rc));
        bench_print_row(&row);
        return 1;
    }
    bench_cfg_t c = *cfg;
    c.rt = rt;
    c.rt_traced = NULL;
    static const bench_graph_ops_t ops = {w10_build, w10_check};
    bench_time_graph(&c, &ops, &st, &row);

    double sum_r = 0;
    for (unsigned k = 0; k < 3; k++)
        sum_r += w10_rate[k];
    double t_star = (double)st.n / sum_r;
    char shares[128] = "";
    size_t used = 0;
    unsigned nd = para_runtime_device_count(rt);
    for (unsigned k = 0; k < nd && k < 3; k++) {
        para_device_stats_t ds;
        memset(&ds, 0, sizeof ds);
        double share = 0;
        if (para_device_stats(rt, k, &ds) == 0)
            share = (double)ds.items / (double)st.n;
        used += (size_t)snprintf(shares + used, sizeof shares - used, "%s%.4f",
                                 k > 0 ? "," : "", share);
        fprintf(stderr,
                "w10: device %u (%s): share %.4f, ideal %.4f, %llu launches, "
                "busy %.1f ms\n",
                k, ds.name, share, w10_rate[k] / sum_r,
                (unsigned long long)ds.launches, (double)ds.busy_ns / 1e6);
    }
    if (nd != 3)
        bench_fail(&row, "%u devices report statistics, want 3", nd);
    snprintf(row.extra, sizeof row.extra, "\"t_star\":%.6f,\"shares\":[%s]",
             t_star, shares);
    fprintf(stderr, "w10: makespan %.4f s = %.3f x T* (%.4f s)\n", row.seconds,
            row.seconds / t_star, t_star);
    bench_print_row(&row);
    rc = para_runtime_destroy(rt);
    return row.ok && rc == 0 ? 0 : 1;
}
