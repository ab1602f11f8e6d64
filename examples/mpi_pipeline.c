/*
 * One pipeline across MPI processes (README "Across machines").
 *
 *   mpirun -np 4 ./build/examples/mpi_pipeline [N]
 *   mpirun --hostfile hosts -np 8 ./build/examples/mpi_pipeline 10000000
 *
 * Every rank builds the same graph:
 *
 *   lines (source, rank 0) -> parse (every rank) -> slow (every rank)
 *         -> report (ORDERED sink, rank 0)
 *
 * "lines" makes N log-like records {id, status, latency}; "parse" and
 * "slow" are PARALLEL stages replicated on every rank, so their batches are
 * dealt to the ranks (by credit: a slow or busy rank gets fewer); "report"
 * runs on rank 0 and receives the records in source order, whatever rank
 * computed them, which it checks. Each rank prints what it ran and sent.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "para.h"
#include "para/mpi.h"

typedef struct record {
    uint64_t id;
    uint32_t status;  /* 200, 404, 500 */
    uint32_t latency; /* ms */
    uint64_t score;
} record;

static int parse(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t id = *(const uint64_t *)in;
    uint64_t h = id * 0x9E3779B97F4A7C15ull;
    record *r = out;
    r->id = id;
    r->status = (uint32_t[]){200, 200, 200, 404, 500}[(h >> 40) % 5];
    r->latency = (uint32_t)((h >> 20) % 3000);
    r->score = 0;
    return 0;
}

/* Some real work per record: the part worth spreading over machines. */
static int slow(void *ctx, const void *in, void *out)
{
    (void)ctx;
    record r = *(const record *)in;
    uint64_t x = r.id;
    for (int i = 0; i < 2000; i++) {
        x ^= x >> 31;
        x *= 0x9E3779B97F4A7C15ull;
    }
    r.score = x;
    *(record *)out = r;
    return 0;
}

typedef struct report {
    uint64_t next, errors, slow_ms, score;
} report;

static int report_fn(void *ctx, const void *in)
{
    report *rep = ctx;
    const record *r = in;
    if (r->id != rep->next)
        return 1; /* out of order: fails the run on every rank */
    rep->next++;
    rep->errors += r->status >= 500;
    rep->slow_ms += r->latency > 2000;
    rep->score ^= r->score;
    return 0;
}

static int check(int rc, const char *what, para_runtime_t *rt)
{
    if (rc != 0)
        fprintf(stderr, "%s: %s: %s\n", what, para_err_name(rc),
                rt != NULL ? para_runtime_errmsg(rt) : "");
    return rc;
}

int main(int argc, char **argv)
{
    int provided = 0, rank = 0, ranks = 1;
    /* FUNNELED: only this thread calls MPI (para_mpi_run() does, from
     * here); para's workers never do. */
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;

    para_runtime_t *rt = NULL;
    para_graph_t *g = NULL;
    para_node_t *lines, *p, *s, *rep_node;
    report rep = {0};
    int rc = check(para_runtime_create(&rt, NULL), "runtime", NULL);
    if (rc == 0)
        rc = check(para_graph_create(&g), "graph", rt);
    if (rc == 0 &&
        ((rc = para_graph_add_range(g, "lines", 0, n, &lines)) != 0 ||
         (rc = para_graph_add_map(g, "parse", 8, sizeof(record), parse, NULL,
                                  PARA_NODE_PARALLEL, &p)) != 0 ||
         (rc = para_graph_add_map(g, "slow", sizeof(record), sizeof(record),
                                  slow, NULL, PARA_NODE_PARALLEL, &s)) != 0 ||
         (rc = para_graph_add_sink(g, "report", sizeof(record), report_fn, &rep,
                                   PARA_NODE_ORDERED, &rep_node)) != 0 ||
         (rc = para_graph_connect(g, lines, p)) != 0 ||
         (rc = para_graph_connect(g, p, s)) != 0 ||
         (rc = para_graph_connect(g, s, rep_node)) != 0 ||
         /* lines and report stay on rank 0, the default. */
         (rc = para_mpi_place(p, PARA_MPI_ALL_RANKS)) != 0 ||
         (rc = para_mpi_place(s, PARA_MPI_ALL_RANKS)) != 0))
        check(rc, "building the graph", rt);

    para_mpi_stats_t st = {0};
    double t0 = MPI_Wtime();
    if (rc == 0)
        rc =
            check(para_mpi_run(rt, g, MPI_COMM_WORLD, &st), "para_mpi_run", rt);
    double seconds = MPI_Wtime() - t0;
    if (rc == 0) {
        para_node_stats_t ns;
        if (para_node_stats(s, &ns) == 0)
            printf("rank %d/%d: 'slow' ran %llu records; sent %llu batches "
                   "(%llu bytes), received %llu\n",
                   rank, ranks, (unsigned long long)ns.items_in,
                   (unsigned long long)st.batches_sent,
                   (unsigned long long)st.bytes_sent,
                   (unsigned long long)st.batches_received);
        fflush(stdout);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rc == 0 && rank == 0)
        printf("%llu records in order in %.3f s on %d ranks: %llu errors, "
               "%llu slow, score %016llx\n",
               (unsigned long long)rep.next, seconds, ranks,
               (unsigned long long)rep.errors, (unsigned long long)rep.slow_ms,
               (unsigned long long)rep.score);
    para_graph_destroy(g);
    if (rt != NULL && para_runtime_destroy(rt) != 0)
        rc = 1;
    MPI_Finalize();
    return rc == 0 && (rank != 0 || rep.next == n) ? 0 : 1;
}
