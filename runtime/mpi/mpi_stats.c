/*
 * Statistics across ranks: para_mpi_stats_gather() collects every rank's
 * para_mpi_stats_t, runtime and worker counters on one rank,
 * para_mpi_stats_fprint()
 * prints them on rank 0 with each node's share per rank. Both are
 * collective calls made after para_mpi_run(), by the thread that calls MPI.
 *
 * Every rank runs the same program (SPMD), so the structs travel as bytes.
 *
 * Tests: tests/mpi/test_mpi.c (stats).
 */
#include <stdlib.h>
#include <string.h>

#include "mpi_internal.h"

/* Agree on an argument check: every rank returns PARA_EINVAL if one
 * failed, after the same collective. */
static int agree_ok(bool ok, MPI_Comm comm)
{
    int mine = ok ? 1 : 0, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm);
    return all ? 0 : PARA_EINVAL;
}

int para_mpi_stats_gather(const para_runtime_t *rt,
                          const para_mpi_stats_t *mine,
                          para_mpi_rank_stats_t *all, int root, MPI_Comm comm)
{
    int rank = 0, size = 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    para_mpi_rank_stats_t one;
    memset(&one, 0, sizeof one);
    bool ok = rt != NULL && mine != NULL && root >= 0 && root < size &&
              (rank != root || all != NULL);
    if (ok) {
        one.mpi = *mine;
        ok = para_runtime_stats(rt, &one.runtime) == 0;
        one.n_workers = para_runtime_workers(rt);
        for (unsigned w = 0; ok && w < one.n_workers; w++) {
            para_worker_stats_t ws;
            ok = para_worker_stats(rt, w, &ws) == 0;
            one.workers.tasks += ws.tasks;
            one.workers.steals += ws.steals;
            one.workers.steal_attempts += ws.steal_attempts;
            one.workers.parks += ws.parks;
            one.workers.source_batches += ws.source_batches;
            one.workers.busy_ns += ws.busy_ns;
            one.workers.parked_ns += ws.parked_ns;
            one.workers.idle_ns += ws.idle_ns;
        }
    }
    int rc = agree_ok(ok, comm);
    if (rc != 0)
        return rc;
    MPI_Gather(&one, sizeof one, MPI_BYTE, all, sizeof one, MPI_BYTE, root,
               comm);
    return 0;
}

int para_mpi_edge_stats(const para_node_t *from, const para_node_t *to,
                        para_mpi_edge_stats_t *out)
{
    if (from == NULL || to == NULL || out == NULL)
        return PARA_EINVAL;
    memset(out, 0, sizeof *out);
    bool found = false;
    for (unsigned p = 0; p < to->n_preds; p++) {
        if (to->preds[p] != from)
            continue;
        found = true;
        if (p >= to->mpi_traffic_ports)
            continue;
        const uint64_t *v = to->mpi_traffic + 4 * (size_t)p;
        out->batches_sent += v[0];
        out->bytes_sent += v[1];
        out->batches_received += v[2];
        out->bytes_received += v[3];
    }
    return found ? 0 : PARA_EINVAL;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

int para_mpi_stats_fprint(FILE *out, const para_runtime_t *rt,
                          const para_graph_t *graph,
                          const para_mpi_stats_t *mine, MPI_Comm comm)
{
    int rank = 0, size = 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    unsigned nodes = graph != NULL ? graph->n_nodes : 0;
    /* Each rank: per node, items in and busy time. */
    uint64_t *mine_nodes = calloc(2 * (size_t)nodes + 1, sizeof *mine_nodes);
    uint64_t *all_nodes = NULL;
    para_mpi_rank_stats_t *all = NULL;
    if (rank == 0) {
        all_nodes =
            calloc((2 * (size_t)nodes + 1) * (size_t)size, sizeof *all_nodes);
        all = calloc((size_t)size, sizeof *all);
    }
    bool ok = graph != NULL && mine_nodes != NULL &&
              (rank != 0 || (out != NULL && all_nodes != NULL && all != NULL));
    /* Every rank must have built the same graph. */
    int span[2] = {(int)nodes, -(int)nodes}, both[2] = {0, 0};
    MPI_Allreduce(span, both, 2, MPI_INT, MPI_MAX, comm);
    ok = ok && both[0] == -both[1];
    int rc = agree_ok(ok, comm);
    if (rc == 0)
        rc = para_mpi_stats_gather(rt, mine, all, 0, comm);
    if (rc == 0) {
        for (unsigned i = 0; i < nodes; i++) {
            para_node_stats_t ns;
            if (para_node_stats(graph->nodes[i], &ns) == 0) {
                mine_nodes[2 * i] = ns.items_in;
                mine_nodes[2 * i + 1] = ns.busy_ns;
            }
        }
        int n = 2 * (int)nodes + 1;
        MPI_Gather(mine_nodes, n, MPI_UINT64_T, all_nodes, n, MPI_UINT64_T, 0,
                   comm);
    }
    /* Each edge (input port): batches and bytes sent, all ranks. */
    size_t ports = 0;
    for (unsigned i = 0; i < nodes; i++)
        ports += graph->nodes[i]->n_preds;
    uint64_t *edges = calloc(2 * ports + 1, sizeof *edges);
    uint64_t *edges_all = calloc(2 * ports + 1, sizeof *edges_all);
    if (rc == 0)
        rc = agree_ok(edges != NULL && edges_all != NULL, comm);
    if (rc == 0) {
        size_t k = 0;
        for (unsigned i = 0; i < nodes; i++) {
            const para_node_t *n = graph->nodes[i];
            for (unsigned p = 0; p < n->n_preds; p++, k++)
                if (p < n->mpi_traffic_ports) {
                    edges[2 * k] = n->mpi_traffic[4 * (size_t)p];
                    edges[2 * k + 1] = n->mpi_traffic[4 * (size_t)p + 1];
                }
        }
        MPI_Reduce(edges, edges_all, (int)(2 * ports + 1), MPI_UINT64_T,
                   MPI_SUM, 0, comm);
    }
    if (rc == 0 && rank == 0) {
        fprintf(out,
                "mpi: %d ranks\n"
                "rank  batches_sent    bytes_sent  batches_recv    "
                "bytes_recv  credit_waits   tasks   busy_ms parked_ms "
                "peak_bytes  comm_cpu_ms  budget_waits\n",
                size);
        for (int r = 0; r < size; r++) {
            const para_mpi_rank_stats_t *s = &all[r];
            fprintf(out,
                    "%-4d %13llu %13llu %13llu %13llu %13llu %7llu %9.2f "
                    "%9.2f %10llu %12.2f %13llu\n",
                    s->mpi.rank, (unsigned long long)s->mpi.batches_sent,
                    (unsigned long long)s->mpi.bytes_sent,
                    (unsigned long long)s->mpi.batches_received,
                    (unsigned long long)s->mpi.bytes_received,
                    (unsigned long long)s->mpi.credit_waits,
                    (unsigned long long)s->workers.tasks,
                    ms(s->workers.busy_ns), ms(s->workers.parked_ns),
                    (unsigned long long)s->runtime.peak_bytes,
                    ms(s->mpi.comm_cpu_ns),
                    (unsigned long long)s->mpi.arrival_waits);
        }
        fprintf(out, "node                 items in (busy ms) per rank\n");
        size_t stride = 2 * (size_t)nodes + 1;
        for (unsigned i = 0; i < nodes; i++) {
            fprintf(out, "%-20s", graph->nodes[i]->name);
            for (int r = 0; r < size; r++) {
                const uint64_t *v = all_nodes + (size_t)r * stride;
                fprintf(out, " %d: %llu (%.2f)", r,
                        (unsigned long long)v[2 * i], ms(v[2 * i + 1]));
            }
            fputc('\n', out);
        }
        size_t k = 0;
        for (unsigned i = 0; i < nodes; i++) {
            const para_node_t *n = graph->nodes[i];
            for (unsigned p = 0; p < n->n_preds; p++, k++)
                if (edges_all[2 * k] != 0)
                    fprintf(out,
                            "edge '%s' -> '%s': %llu batches, %llu bytes "
                            "across ranks\n",
                            n->preds[p]->name, n->name,
                            (unsigned long long)edges_all[2 * k],
                            (unsigned long long)edges_all[2 * k + 1]);
        }
    }
    free(edges);
    free(edges_all);
    free(mine_nodes);
    free(all_nodes);
    free(all);
    return rc;
}
