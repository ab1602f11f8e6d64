/*
 * para-bench: workload w11, across processes (BENCHMARKS.md), built when
 * the MPI part is (PARA_MPI).
 *
 *   mpirun -np P para-bench --workload w11 --threads 1
 *
 * w6 and w2 at their own sizes, run by para_mpi_run() over the P ranks of
 * MPI_COMM_WORLD: the source and the sink on rank 0, every parallel stage
 * replicated on every rank (its batches dealt to the ranks by credit).
 *
 *   w6  range i -> stage1 -> stage2 -> stage3 (spin() costs 3000/300/300
 *       for the first half of i, 300/300/3000 after) -> serial sink sum.
 *   w2  serial callback source {i,i} -> spin(200) -> spin(2000) -> ORDERED
 *       sink that checks the indices arrive as 0..N-1 and sums.
 *
 * Variants seq-w6 and seq-w2 are the plain loops, timed on rank 0 while
 * the other ranks wait without spinning; w6 and w2 are the distributed
 * runs, timed on rank 0 from a barrier to the end of para_mpi_run() (which
 * ends together on every rank). Efficiency = seq / (P x threads x seconds);
 * the rows add "ranks", "bytes_sent" and "cpu_seconds" (summed over ranks;
 * seq rows: rank 0's), and "comm_cpu_seconds" (the communication threads'
 * share). On a loaded machine seq / cpu_seconds shows the overhead that the
 * wall-clock efficiency cannot. Only rank 0 prints. --min-seconds and
 * --handicap do not apply here.
 *
 * MPI is initialised here (MPI_THREAD_FUNNELED) when the program has not
 * done it, and finalised by bench_mpi_finish() at exit. Run w11 alone under
 * mpirun: the other workloads would run on every rank independently.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "bench.h"
#include "para/mpi.h"

#define W6_ITEMS 400000u
#define W6_QUICK 20000u
#define W2_ITEMS 200000u
#define W2_QUICK 10000u

static int g_rank, g_size, g_inited_here;

struct w11_item {
    uint64_t i, x;
};

struct w11_state {
    int shape; /* 6 or 2 */
    uint64_t n, expect;
    uint64_t next;               /* w2 source */
    uint64_t expected, disorder; /* w2 sink: next index, disorder seen */
    uint64_t sum, count;         /* sinks */
};

/* w6's stage costs: stage k for item i. */
static inline uint32_t w6_cost(int k, uint64_t i, uint64_t n)
{
    static const uint32_t cost[3][2] = {{3000, 300}, {300, 300}, {300, 3000}};
    return cost[k][i < n / 2 ? 0 : 1];
}

static int seq_run(void *state, bench_row_t *row)
{
    (void)row;
    struct w11_state *st = state;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < st->n; i++) {
        if (st->shape == 6) {
            uint64_t x = i;
            for (int k = 0; k < 3; k++)
                x = spin(x, w6_cost(k, i, st->n));
            sum += x;
        } else {
            sum += spin(spin(i, 200), 2000);
        }
    }
    st->expect = sum;
    return 0;
}

struct w6_stage_ctx {
    int k;
    uint64_t n;
};

static struct w6_stage_ctx w6_ctx[3];

static int w6_first(void *ctx, const void *in, void *out)
{
    const struct w6_stage_ctx *c = ctx;
    struct w11_item it;
    memcpy(&it.i, in, sizeof it.i);
    it.x = spin(it.i, w6_cost(c->k, it.i, c->n));
    memcpy(out, &it, sizeof it);
    return 0;
}

static int w6_next(void *ctx, const void *in, void *out)
{
    const struct w6_stage_ctx *c = ctx;
    struct w11_item it;
    memcpy(&it, in, sizeof it);
    it.x = spin(it.x, w6_cost(c->k, it.i, c->n));
    memcpy(out, &it, sizeof it);
    return 0;
}

static int w2_source(void *ctx, void *out, size_t cap, size_t *n_written)
{
    struct w11_state *st = ctx;
    uint64_t left = st->n - st->next;
    size_t k = left < cap ? (size_t)left : cap;
    for (size_t j = 0; j < k; j++) {
        struct w11_item it = {st->next + j, st->next + j};
        memcpy((unsigned char *)out + j * sizeof it, &it, sizeof it);
    }
    st->next += k;
    *n_written = k;
    return 0;
}

static int w2_map(void *ctx, const void *in, void *out)
{
    struct w11_item it;
    memcpy(&it, in, sizeof it);
    it.x = spin(it.x, (uint32_t)(uintptr_t)ctx);
    memcpy(out, &it, sizeof it);
    return 0;
}

static int sink_fn(void *ctx, const void *in)
{
    struct w11_state *st = ctx;
    struct w11_item it;
    memcpy(&it, in, sizeof it);
    if (st->shape == 2 && it.i != st->expected)
        st->disorder++;
    st->expected = it.i + 1;
    st->sum += it.x;
    st->count++;
    return 0;
}

/* Every rank builds the same graph; the sink state matters on rank 0. */
static int build(para_graph_t *g, struct w11_state *st)
{
    const size_t sz = sizeof(struct w11_item);
    st->next = st->expected = st->disorder = st->sum = st->count = 0;
    para_node_t *src, *a, *b, *c = NULL, *sink;
    int rc;
    if (st->shape == 6) {
        for (int k = 0; k < 3; k++)
            w6_ctx[k] = (struct w6_stage_ctx){k, st->n};
        if ((rc = para_graph_add_range(g, "i", 0, st->n, &src)) != 0 ||
            (rc = para_graph_add_map(g, "stage1", 8, sz, w6_first, &w6_ctx[0],
                                     0, &a)) != 0 ||
            (rc = para_graph_add_map(g, "stage2", sz, sz, w6_next, &w6_ctx[1],
                                     0, &b)) != 0 ||
            (rc = para_graph_add_map(g, "stage3", sz, sz, w6_next, &w6_ctx[2],
                                     0, &c)) != 0 ||
            (rc = para_graph_add_sink(g, "sum", sz, sink_fn, st,
                                      PARA_NODE_SERIAL, &sink)) != 0 ||
            (rc = para_graph_connect(g, src, a)) != 0 ||
            (rc = para_graph_connect(g, a, b)) != 0 ||
            (rc = para_graph_connect(g, b, c)) != 0 ||
            (rc = para_graph_connect(g, c, sink)) != 0)
            return rc;
    } else {
        if ((rc = para_graph_add_source(g, "i", sz, w2_source, st, &src)) !=
                0 ||
            (rc = para_graph_add_map(g, "spin200", sz, sz, w2_map,
                                     (void *)(uintptr_t)200, 0, &a)) != 0 ||
            (rc = para_graph_add_map(g, "spin2000", sz, sz, w2_map,
                                     (void *)(uintptr_t)2000, 0, &b)) != 0 ||
            (rc = para_graph_add_sink(g, "ordered_sum", sz, sink_fn, st,
                                      PARA_NODE_ORDERED, &sink)) != 0 ||
            (rc = para_graph_connect(g, src, a)) != 0 ||
            (rc = para_graph_connect(g, a, b)) != 0 ||
            (rc = para_graph_connect(g, b, sink)) != 0)
            return rc;
    }
    /* Source and sink stay on rank 0 (the default). */
    if ((rc = para_mpi_place(a, PARA_MPI_ALL_RANKS)) != 0 ||
        (rc = para_mpi_place(b, PARA_MPI_ALL_RANKS)) != 0 ||
        (c != NULL && (rc = para_mpi_place(c, PARA_MPI_ALL_RANKS)) != 0))
        return rc;
    return 0;
}

/* A barrier that sleeps instead of spinning: ranks that wait must leave
 * the cores to the ones that work (more ranks than cores is allowed). */
static void quiet_barrier(void)
{
    MPI_Request r;
    MPI_Ibarrier(MPI_COMM_WORLD, &r);
    for (int done = 0;;) {
        MPI_Test(&r, &done, MPI_STATUS_IGNORE);
        if (done)
            return;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
}

/* Process CPU time (every thread of this rank), seconds. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int one_shape(const bench_cfg_t *cfg, int shape)
{
    struct w11_state st = {.shape = shape};
    st.n = shape == 6 ? (cfg->quick ? W6_QUICK : W6_ITEMS)
                      : (cfg->quick ? W2_QUICK : W2_ITEMS);
    char seq_name[16], para_name[16];
    snprintf(seq_name, sizeof seq_name, "seq-w%d", shape);
    snprintf(para_name, sizeof para_name, "w%d", shape);

    bench_row_t seq;
    bench_row_init(&seq, "w11", seq_name, st.n, 1);
    if (g_rank == 0) {
        double c0 = cpu_now();
        bench_time(cfg, seq_run, &st, &seq);
        snprintf(seq.extra, sizeof seq.extra, "\"cpu_seconds\":%.6f",
                 (cpu_now() - c0) / cfg->repeat);
        seq.seq_seconds = seq.seconds;
        bench_print_row(&seq);
    }
    quiet_barrier();

    bench_row_t row;
    bench_row_init(&row, "w11", para_name, st.n,
                   (unsigned)g_size * cfg->threads);
    row.seq_seconds = seq.seconds;
    double *t = calloc(cfg->repeat, sizeof *t);
    double cpu = 0, cpu_all = 0, comm = 0, comm_all = 0;
    unsigned long long bytes = 0;
    int ok = t != NULL;
    for (unsigned r = 0; r < cfg->repeat && ok; r++) {
        para_graph_t *g = NULL;
        int rc = para_graph_create(&g);
        if (rc == 0)
            rc = build(g, &st);
        if (rc != 0) {
            bench_fail(&row, "building the graph: %s", para_err_name(rc));
            para_graph_destroy(g);
            ok = 0;
            break;
        }
        para_mpi_stats_t ms;
        quiet_barrier();
        double c0 = cpu_now();
        double t0 = bench_now();
        rc = para_mpi_run(cfg->rt, g, MPI_COMM_WORLD, &ms);
        t[r] = bench_now() - t0;
        cpu += cpu_now() - c0;
        comm += 1e-9 * (double)ms.comm_cpu_ns;
        unsigned long long mine = ms.bytes_sent;
        MPI_Reduce(&mine, &bytes, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, 0,
                   MPI_COMM_WORLD);
        if (rc != 0) {
            bench_fail(&row, "para_mpi_run: %s: %s", para_err_name(rc),
                       para_runtime_errmsg(cfg->rt));
            ok = 0;
        } else if (g_rank == 0) {
            if (st.disorder != 0)
                bench_fail(&row, "order: %llu items out of order",
                           (unsigned long long)st.disorder);
            else if (st.count != st.n)
                bench_fail(&row, "sink got %llu items, expected %llu",
                           (unsigned long long)st.count,
                           (unsigned long long)st.n);
            else if (st.sum != st.expect)
                bench_fail(&row, "sum %llu, expected %llu",
                           (unsigned long long)st.sum,
                           (unsigned long long)st.expect);
        }
        para_graph_destroy(g);
        /* Rank 0's check decides for everyone. */
        int good = ok && row.ok;
        MPI_Bcast(&good, 1, MPI_INT, 0, MPI_COMM_WORLD);
        ok = good;
    }
    if (t != NULL) {
        qsort(t, cfg->repeat, sizeof *t, cmp_double);
        row.seconds = t[cfg->repeat / 2];
    }
    free(t);
    MPI_Reduce(&cpu, &cpu_all, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&comm, &comm_all, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    /* cpu_seconds: every rank's CPU time per run, summed; on a loaded
     * machine seq's cpu_seconds over it shows the overhead that wall-clock
     * efficiency cannot. */
    snprintf(row.extra, sizeof row.extra,
             "\"ranks\":%d,\"bytes_sent\":%llu,\"cpu_seconds\":%.6f,"
             "\"comm_cpu_seconds\":%.6f",
             g_size, bytes, cpu_all / cfg->repeat, comm_all / cfg->repeat);
    if (g_rank == 0)
        bench_print_row(&row);
    return ok ? 0 : 1;
}

int bench_w11(const bench_cfg_t *cfg)
{
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = 0;
        MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        g_inited_here = 1;
        if (provided < MPI_THREAD_FUNNELED) {
            fprintf(stderr, "para-bench: w11: MPI gives no "
                            "MPI_THREAD_FUNNELED\n");
            return 1;
        }
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    int rc6 = one_shape(cfg, 6);
    int rc2 = one_shape(cfg, 2);
    return rc6 != 0 || rc2 != 0;
}

void bench_mpi_finish(void)
{
    int finalized = 0;
    if (g_inited_here && (MPI_Finalized(&finalized), !finalized))
        MPI_Finalize();
}
