/*
 * para-bench: workload w4, offload (the benchmark contract (BENCHMARKS.md)).
 *
 * Pixel i of a W x H image (W = H = 1024, quick 256) gets its Mandelbrot
 * escape count; a serial sink counts the items and sums the counts. The sink
 * must get exactly N items (a lost or repeated batch fails the check) and
 * the sum must be within 0.01 % of the C reference (the device may round a
 * division differently).
 *
 *   seq     the C reference loop on one thread (the baseline of `cpu`).
 *   cpu     array source of pixel indices -> map_batch node with the C
 *           function -> serial sink: the same node with its CPU
 *           implementation.
 *   dev1    the kernel node on the device, source batches forced to one
 *           item, so one launch per pixel (a runtime of its own with
 *           batch_items = 1); on the first 65,536 pixels only.
 *   dev     the kernel node (kernels/mandelbrot.cl) alone: automatic
 *           batching.
 *
 * dev runs once untimed before its timing, as limit does: that first run
 * builds the kernel on the runtime (mixed, after it, finds it built; dev1's
 * build is lost in its second of launches).
 *   mixed   the node with both implementations: the runtime splits it.
 *   limit   no para at all: on an OpenCL device, the fastest of plain
 *           OpenCL schedules (one launch of everything, or chunks on two
 *           queues with double-buffered copies; w4_limit.c); on the cpu
 *           and simulated back-ends, one launch of all N through the
 *           device layer. Then the sum.
 *
 * The device is the one PARA_DEVICE names (default auto: PoCL in CI). The
 * summary line on stderr gives the acceptance ratios of issue 3: dev /
 * limit, dev / dev1 (per item), mixed / max(cpu, dev).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "device.h"
#include "mandelbrot_ref.h"
#include "w4_limit.h"

#define W4_SIDE 1024u
#define W4_QUICK_SIDE 256u
#define W4_DEV1_ITEMS 65536u

struct w4_state {
    uint32_t side;
    uint32_t n;       /* pixels in this variant */
    uint32_t *pixels; /* 0 .. side*side - 1 */
    uint64_t expect;  /* reference sum over the first n pixels */
    uint64_t sum;     /* the sink's */
    uint64_t count;   /* items the sink got */
    int with_cpu, with_kernel;
    para_node_t *node; /* the mandelbrot node of the last graph */
    uint64_t device_items, node_items; /* summed over the runs (check) */
    uint64_t launches, runs;           /* the node's launches, the runs */
    para_kernel_arg_t args[2];
    para_kernel_desc_t kernel;
};

static int mandel_batch(void *ctx, const void *in, void *out, size_t n)
{
    const struct w4_state *st = ctx;
    const uint32_t *p = in;
    uint32_t *o = out;
    for (size_t i = 0; i < n; i++)
        o[i] = para_mandelbrot_ref(p[i], st->side, st->side);
    return 0;
}

static int sum_batch(void *ctx, const void *in, size_t n)
{
    struct w4_state *st = ctx;
    const uint32_t *c = in;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += c[i];
    st->sum += s;
    st->count += n;
    return 0;
}

static int w4_build(para_graph_t *g, void *state)
{
    struct w4_state *st = state;
    st->sum = 0;
    st->count = 0;
    para_node_t *src, *m, *sink;
    int rc = para_graph_add_array(g, "pixels", st->pixels, st->n, 4, &src);
    if (rc == 0) {
        para_node_desc_t d = {
            .name = "mandelbrot",
            .in_size = 4,
            .out_size = 4,
            .ctx = st,
            .map_batch = st->with_cpu ? mandel_batch : NULL,
            .kernel = st->with_kernel ? &st->kernel : NULL,
        };
        rc = para_graph_add(g, &d, &m);
        st->node = m;
    }
    if (rc == 0)
        rc = para_graph_add_sink_batch(g, "sum", 4, sum_batch, st,
                                       PARA_NODE_SERIAL, &sink);
    if (rc == 0)
        rc = para_graph_connect(g, src, m);
    if (rc == 0)
        rc = para_graph_connect(g, m, sink);
    return rc;
}

static void check_sum(bench_row_t *row, uint64_t got, uint64_t want)
{
    double diff = got > want ? (double)(got - want) : (double)(want - got);
    if (diff > 0.0001 * (double)want)
        bench_fail(row, "sum %llu, reference %llu (more than 0.01 %% apart)",
                   (unsigned long long)got, (unsigned long long)want);
}

static void w4_check(void *state, bench_row_t *row)
{
    struct w4_state *st = state;
    if (st->count != st->n)
        bench_fail(row, "sink got %llu items, expected %u",
                   (unsigned long long)st->count, st->n);
    check_sum(row, st->sum, st->expect);
    para_node_stats_t ns;
    if (st->node != NULL && para_node_stats(st->node, &ns) == 0) {
        st->device_items += ns.device_items;
        st->node_items += ns.items_in;
        st->launches += ns.device_launches;
        st->runs++;
    }
}

static int w4_seq(void *state, bench_row_t *row)
{
    struct w4_state *st = state;
    uint64_t s = 0;
    for (uint32_t i = 0; i < st->n; i++)
        s += para_mandelbrot_ref(st->pixels[i], st->side, st->side);
    st->expect = s;
    (void)row;
    return 0;
}

/* ---- limit: one launch, no runtime -------------------------------------- */

struct w4_limit {
    struct w4_state *st;
    const para__device_ops *ops;
    void *dev, *kernel;
    uint32_t *out;
    para__launch l;
    char msg[2048];
};

static int w4_limit_run(void *state, bench_row_t *row)
{
    struct w4_limit *lim = state;
    struct w4_state *st = lim->st;
    lim->l.in = st->pixels;
    lim->l.out = lim->out;
    lim->l.n = st->n;
    int rc =
        lim->ops->launch_begin(lim->kernel, &lim->l, lim->msg, sizeof lim->msg);
    while (rc == 0)
        rc = lim->ops->launch_wait(lim->kernel, &lim->l, 1000000000u, lim->msg,
                                   sizeof lim->msg);
    if (rc < 0) {
        bench_fail(row, "launch: %s", lim->msg);
        return 1;
    }
    uint64_t s = 0;
    for (uint32_t i = 0; i < st->n; i++)
        s += lim->out[i];
    check_sum(row, s, st->expect);
    return 0;
}

/* The first entry of a device list ("all", "0:0,0:1", ...). */
static int first_entry(void *arg, const char *entry)
{
    char *first = arg;
    if (first[0] == '\0')
        snprintf(first, 128, "%s", entry);
    return 0;
}

static void w4_limit(const bench_cfg_t *cfg, struct w4_state *st,
                     bench_row_t *row)
{
    const char *list = getenv("PARA_DEVICE");
    struct w4_limit lim = {.st = st};
    if (list == NULL || list[0] == '\0')
        list = "auto";
    /* limit is one launch on one device: the list's first. */
    char sel[128] = "";
    int rc =
        para__device_expand(list, first_entry, sel, lim.msg, sizeof lim.msg);
    if (rc == 0)
        rc =
            para__device_open(sel, &lim.ops, &lim.dev, lim.msg, sizeof lim.msg);
    if (rc != 0) {
        bench_fail(row, "no device: %s", lim.msg);
        return;
    }
    if (strcmp(lim.ops->name, "opencl") == 0) {
        const para__device_info *info = lim.ops->info(lim.dev);
        w4_limit_job job = {.platform_index = info->platform_index,
                            .device_index = info->device_index,
                            .source = st->kernel.source,
                            .pixels = st->pixels,
                            .n = st->n,
                            .side = st->side,
                            .expect = st->expect};
        lim.ops->close(lim.dev);
        if (w4_limit_plain(cfg, &job, row) == 0)
            return;
        rc =
            para__device_open(sel, &lim.ops, &lim.dev, lim.msg, sizeof lim.msg);
        if (rc != 0) {
            bench_fail(row, "no device: %s", lim.msg);
            return;
        }
    }
    para__kernel_arg args[2] = {{&st->side, 4, PARA_KARG_SCALAR},
                                {&st->side, 4, PARA_KARG_SCALAR}};
    para__kernel_spec spec = {.name = "mandelbrot",
                              .source = st->kernel.source,
                              .entry = "mandelbrot",
                              .in_size = 4,
                              .out_size = 4,
                              .args = args,
                              .n_args = 2,
                              .cpu_fn = mandel_batch,
                              .cpu_arg = st};
    lim.out = malloc((size_t)st->n * 4);
    rc = lim.out == NULL ? PARA_ENOMEM
                         : lim.ops->kernel_create(lim.dev, &spec, &lim.kernel,
                                                  lim.msg, sizeof lim.msg);
    if (rc != 0)
        bench_fail(row, "kernel: %s", lim.msg);
    else
        bench_time(cfg, w4_limit_run, &lim, row);
    if (lim.kernel != NULL) {
        lim.ops->launch_fini(lim.kernel, &lim.l);
        lim.ops->kernel_release(lim.kernel);
    }
    lim.ops->close(lim.dev);
    free(lim.out);
}

/* ---- the variants ---------------------------------------------------------
 */

static double items_per_s(const bench_row_t *r)
{
    return r->seconds > 0 ? (double)r->items / r->seconds : 0.0;
}

static void graph_variant(const bench_cfg_t *cfg, struct w4_state *st,
                          bench_row_t *row, int with_cpu, int with_kernel,
                          int warm_up)
{
    st->with_cpu = with_cpu;
    st->with_kernel = with_kernel;
    static const bench_graph_ops_t ops = {w4_build, w4_check};
    if (warm_up) {
        /* One untimed run first, as limit and the peers have: the first run
         * on a runtime builds the kernel for the device (the runtime keeps
         * it for the next runs), which no timing of the others pays. */
        bench_cfg_t warm = *cfg;
        warm.repeat = 1;
        warm.min_seconds = 0;
        bench_row_t w;
        bench_row_init(&w, row->workload, row->variant, row->items,
                       row->threads);
        bench_time_graph(&warm, &ops, st, &w);
        if (!w.ok)
            bench_fail(row, "warm-up run: %s", w.check);
    }
    st->device_items = st->node_items = 0;
    st->launches = st->runs = 0;
    if (row->ok)
        bench_time_graph(cfg, &ops, st, row);
}

int bench_w4(const bench_cfg_t *cfg)
{
    struct w4_state st = {.side = cfg->quick ? W4_QUICK_SIDE : W4_SIDE};
    uint32_t total = st.side * st.side;
    st.pixels = malloc((size_t)total * sizeof *st.pixels);
    if (st.pixels == NULL) {
        fprintf(stderr, "para-bench: w4: out of memory\n");
        return 1;
    }
    for (uint32_t i = 0; i < total; i++)
        st.pixels[i] = i;
    st.args[0] = (para_kernel_arg_t){&st.side, 4, PARA_KARG_SCALAR};
    st.args[1] = (para_kernel_arg_t){&st.side, 4, PARA_KARG_SCALAR};
    st.kernel = (para_kernel_desc_t){.source = para_kernel_source("mandelbrot"),
                                     .entry = "mandelbrot",
                                     .args = st.args,
                                     .n_args = 2};
    int ok = 1;

    /* dev1 first, on its own runtime and the first pixels only. */
    st.n = total < W4_DEV1_ITEMS ? total : W4_DEV1_ITEMS;
    bench_row_t dev1;
    bench_row_init(&dev1, "w4", "dev1", st.n, cfg->threads);
    {
        bench_row_t ref;
        bench_row_init(&ref, "w4", "seq", st.n, 1);
        w4_seq(&st, &ref);
        para_runtime_attr_t a;
        if (para_runtime_attr_init(&a) != 0)
            fprintf(stderr, "para-bench: a PARA_* variable does not parse\n");
        a.workers = cfg->threads;
        a.batch_items = 1;
        bench_cfg_t c1 = *cfg;
        if (para_runtime_create(&c1.rt, &a) != 0) {
            bench_fail(&dev1, "cannot create the dev1 runtime");
        } else {
            graph_variant(&c1, &st, &dev1, 0, 1, 0);
            if (para_runtime_destroy(c1.rt) != 0)
                bench_fail(&dev1, "runtime destroy failed");
        }
    }

    st.n = total;
    bench_row_t seq, cpu, dev, mixed, limit;
    bench_row_init(&seq, "w4", "seq", total, 1);
    bench_time(cfg, w4_seq, &st, &seq);
    seq.seq_seconds = seq.seconds;
    bench_print_row(&seq);

    bench_row_init(&cpu, "w4", "cpu", total, cfg->threads);
    cpu.seq_seconds = seq.seconds;
    graph_variant(cfg, &st, &cpu, 1, 0, 0);
    bench_print_row(&cpu);

    bench_print_row(&dev1);

    bench_row_init(&dev, "w4", "dev", total, cfg->threads);
    graph_variant(cfg, &st, &dev, 0, 1, 1);
    snprintf(dev.extra, sizeof dev.extra, "\"launches\":%.1f",
             st.runs ? (double)st.launches / (double)st.runs : 0.0);
    bench_print_row(&dev);
    /* Per device (PARA_DEVICE=all and the like: every one should work). */
    for (unsigned k = 0; k < para_runtime_device_count(cfg->rt); k++) {
        para_device_stats_t ds;
        if (para_device_stats(cfg->rt, k, &ds) == 0)
            fprintf(stderr,
                    "w4 dev: device %u (%s): %llu pixels, %llu "
                    "launches\n",
                    k, ds.name, (unsigned long long)ds.items,
                    (unsigned long long)ds.launches);
    }

    bench_row_init(&mixed, "w4", "mixed", total, cfg->threads);
    graph_variant(cfg, &st, &mixed, 1, 1, 0);
    bench_print_row(&mixed);
    fprintf(stderr, "w4 mixed: %.1f %% of the pixels on the device\n",
            st.node_items
                ? 100.0 * (double)st.device_items / (double)st.node_items
                : 0.0);

    bench_row_init(&limit, "w4", "limit", total, 1);
    w4_limit(cfg, &st, &limit);
    bench_print_row(&limit);

    double best = items_per_s(&cpu) > items_per_s(&dev) ? items_per_s(&cpu)
                                                        : items_per_s(&dev);
    fprintf(
        stderr,
        "w4: dev/limit %.3f, dev/dev1 %.1f, mixed/max(cpu,dev) %.3f, "
        "dev/cpu %.2f\n",
        items_per_s(&limit) > 0 ? items_per_s(&dev) / items_per_s(&limit) : 0.0,
        items_per_s(&dev1) > 0 ? items_per_s(&dev) / items_per_s(&dev1) : 0.0,
        best > 0 ? items_per_s(&mixed) / best : 0.0,
        items_per_s(&cpu) > 0 ? items_per_s(&dev) / items_per_s(&cpu) : 0.0);
    ok = seq.ok && cpu.ok && dev1.ok && dev.ok && mixed.ok && limit.ok;
    free(st.pixels);
    return ok ? 0 : 1;
}
