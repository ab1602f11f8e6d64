/*
 * para: one graph across MPI processes (optional part, library para_mpi,
 * built when CMake finds MPI; PARA_MPI).
 *
 * Every rank builds the same graph (SPMD) and calls para_mpi_run() with its
 * own runtime. Each node runs on one rank, or on every rank (a PARALLEL
 * stage replicated for throughput); by default everything runs on rank 0.
 * Sources and SERIAL / ORDERED nodes run on one rank.
 *
 * What crosses ranks: a batch whose consumer runs on another rank travels
 * there with its sequence range, so an ORDERED node sees the same order as
 * in one process, wherever its inputs were computed. A batch for a
 * replicated node goes to another rank (in turn) that has credit left, or
 * else stays on the rank that made it: each rank grants every other rank
 * a few batches (PARA_MPI_AHEAD) and a window of bytes (PARA_MPI_WINDOW),
 * given back as it finishes the batches, so each rank takes work at the
 * pace it gets through it, a slow rank never makes another buffer without
 * bound, and the memory budget holds on every rank: a batch sent to a
 * single-rank node waits at its sender until the receiver's budget has
 * room for it (and the receiver's sources leave it room), and dealt
 * batches are bounded by the credit, a quarter of the budget by default. An
 * edge from a replicated node to another replicated node stays on its rank.
 * Batches that are dealt carry more work than in one process
 * (PARA_MPI_BATCH_US), sized from the stages' costs on every rank.
 *
 * Threads: the thread that calls para_mpi_run() is the rank's one
 * communication thread and makes every MPI call of the run; the workers
 * never call MPI. MPI must be initialised with at least
 * MPI_THREAD_FUNNELED (call from the thread that initialised MPI) or
 * MPI_THREAD_SERIALIZED (any thread, while no other thread calls MPI).
 * MPI_THREAD_MULTIPLE is not needed.
 *
 * Failure: a node failing, or para_run_cancel(), on any rank ends the run on
 * every rank, and every rank returns the same code with the same message,
 * prefixed with the failing rank ("rank 1: node 'parse' returned 7 ...").
 * When several ranks fail, the lowest rank's failure is reported. A rank
 * that hears nothing from the others for PARA_MPI_TIMEOUT seconds (default
 * 60) while it waits for them logs an error and calls MPI_Abort(): MPI
 * cannot recover a communicator that lost a member, and a failure is better
 * than a hang. A rank that dies ends the job through mpirun; MPI errors go
 * to the communicator's error handler (MPI_ERRORS_ARE_FATAL by default).
 *
 * Environment (read by every para_mpi_run()):
 *   PARA_MPI_PLACE   placement override for experiments, applied over
 *                    para_mpi_place(): "name=RANK" or "name=all", separated
 *                    by commas, e.g. "parse=all,count=1". Set the same
 *                    value on every rank (mpirun -x PARA_MPI_PLACE).
 *   PARA_MPI_WINDOW  bytes of credit each rank grants each other rank
 *                    (K/M/G suffixes); default: the rank's memory budget
 *                    divided by 4 × (ranks - 1), at most 64M, at least 64K.
 *   PARA_MPI_AHEAD   batches of a replicated node outstanding at each
 *                    other rank at most (default 8).
 *   PARA_MPI_BATCH_US target work of a batch, in microseconds, in a run
 *                    that deals batches (default 1000; PARA_BATCH_US if
 *                    larger).
 *   PARA_MPI_TIMEOUT seconds (see Failure).
 *   PARA_MPI_STATS   1: rank 0 prints every rank's figures to stderr after
 *                    each run (para_mpi_stats_fprint()).
 *   PARA_TRACE       as for para_run(), but rank 0's decides: every rank
 *                    with a trace records, and rank 0 writes one trace of
 *                    the run to its path, a process per rank ("para rank
 *                    R"), times on rank 0's clock (aligned at a barrier
 *                    when the run starts).
 *
 * Items that own memory outside their batch (para_node_desc_t.release;
 * a filter forwarding such items too) cross ranks through a pack/unpack
 * pair on the node that releases them (para_mpi_node_codec()): the
 * sending rank packs each item into bytes and releases its own copy with
 * the batch, the receiving rank unpacks the bytes into a fresh item that
 * its copy of the node releases. An edge that would carry owned items
 * without such a pair to another rank (also items that declare
 * owned_bytes or item_bytes but no release hook) fails validation with
 * PARA_EINVAL naming the edge.
 */
#ifndef PARA_MPI_H
#define PARA_MPI_H

#include <stdint.h>
#include <stdio.h>

#include <mpi.h>

#include "para/export.h"
#include "para/graph.h"
#include "para/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/** para_mpi_place(): run the node on every rank (a replicated stage). */
#define PARA_MPI_ALL_RANKS (-1)

/**
 * @brief Place @p node on rank @p rank of the communicator given to
 *        para_mpi_run(), or on every rank (PARA_MPI_ALL_RANKS).
 *
 * The default is rank 0. Only PARALLEL nodes other than sources may be
 * placed on every rank. Checked (against the communicator's size) when the
 * run starts; para_run() without MPI ignores placement.
 *
 * @return 0 on success.
 * @return PARA_EINVAL if @p node is NULL or @p rank < PARA_MPI_ALL_RANKS.
 * @return PARA_EBUSY if the node's graph is running.
 * @note Like the other graph calls: one thread at a time per graph.
 */
PARA_API PARA_NODISCARD int para_mpi_place(para_node_t *node, int rank);

/** @brief The node's placement (a rank, or PARA_MPI_ALL_RANKS). */
PARA_API int para_mpi_node_rank(const para_node_t *node);

/**
 * Pack one owned output item for another rank: the bytes from which
 * para_mpi_unpack_fn rebuilds it there (the item's fields and the memory
 * it owns; pointers mean nothing on another rank). Return the number of
 * bytes the packed item takes, and write them to @p buf only if that is at
 * most @p cap: it is called with @p buf NULL and @p cap 0 first, to size
 * the message, then with room for exactly that many, and must give the
 * same size both times. Return SIZE_MAX to fail the run. The item stays
 * the sending rank's, released with its batch.
 */
typedef size_t (*para_mpi_pack_fn)(void *ctx, const void *item, void *buf,
                                   size_t cap);
/**
 * Rebuild an item from the @p len bytes at @p buf that para_mpi_pack_fn
 * wrote on another rank: write the item (the node's out_size bytes) to
 * @p item, with memory of its own that the node's release hook frees on
 * this rank. Return 0, or non-zero to fail the run (nothing of the item
 * must remain then).
 */
typedef int (*para_mpi_unpack_fn)(void *ctx, const void *buf, size_t len,
                                  void *item);

/**
 * @brief Let the owned output items of @p node cross ranks: @p pack and
 *        @p unpack (both, or both NULL to remove them) are called with the
 *        node's ctx on the sending and on the receiving rank.
 *
 * They run on the communication thread (the caller of para_mpi_run()),
 * possibly while workers run the node's functions: they must be safe
 * alongside them. The items also cross as a filter's output downstream of
 * @p node. para_run() without MPI never calls them.
 *
 * @return 0 on success.
 * @return PARA_EINVAL if @p node is NULL, only one of @p pack and
 *         @p unpack is NULL, or the node has no release hook
 *         (para_node_desc_t.release: its items own nothing to pack, and the
 *         unpacked items would have no one to free them).
 * @return PARA_EBUSY if the node's graph is running.
 */
PARA_API PARA_NODISCARD int para_mpi_node_codec(para_node_t *node,
                                                para_mpi_pack_fn pack,
                                                para_mpi_unpack_fn unpack);

/** Traffic of one rank in its last para_mpi_run(). */
typedef struct para_mpi_stats {
    int rank;                  /**< this rank in the communicator */
    int ranks;                 /**< the communicator's size */
    uint64_t batches_sent;     /**< batches sent to other ranks */
    uint64_t bytes_sent;       /**< their item bytes */
    uint64_t batches_received; /**< batches received from other ranks */
    uint64_t bytes_received;   /**< their item bytes */
    uint64_t credit_waits;     /**< batches of a replicated node that a
                                    rank without credit did not get */
    uint64_t window;           /**< credit this rank granted each other
                                    rank, in bytes */
    uint64_t comm_cpu_ns;      /**< CPU time of the communication thread
                                    (the caller's) during the run */
    uint64_t comm_sleeps;      /**< times it slept for want of work */
    uint64_t arrival_waits;    /**< batches for this rank that waited at
                                    their sender for room in its budget */
    uint64_t budget_overruns;  /**< of those, taken over the budget after
                                    waiting 200 ms (other ranks held it) */
} para_mpi_stats_t;

/** Traffic of one rank over one edge (para_mpi_edge_stats()). */
typedef struct para_mpi_edge_stats {
    uint64_t batches_sent, bytes_sent;         /**< from this rank */
    uint64_t batches_received, bytes_received; /**< to this rank */
} para_mpi_edge_stats_t;

/**
 * @brief This rank's traffic over the edge @p from -> @p to in the last
 *        para_mpi_run() of their graph (zero where the edge did not cross
 *        ranks; summed over parallel edges).
 * @return 0, or PARA_EINVAL if an argument is NULL or there is no such
 *         edge.
 * @note Not while the graph runs.
 */
PARA_API PARA_NODISCARD int para_mpi_edge_stats(const para_node_t *from,
                                                const para_node_t *to,
                                                para_mpi_edge_stats_t *out);

/** One rank's figures, as gathered by para_mpi_stats_gather(). */
typedef struct para_mpi_rank_stats {
    para_mpi_stats_t mpi; /**< its traffic (mpi.rank says whose) */
    para_stats_t runtime; /**< its runtime's counters (para_runtime_stats():
                               cumulative, except the last run's peaks) */
    para_worker_stats_t workers; /**< its workers' figures of the last run,
                                      summed (para_worker_stats()) */
    unsigned n_workers;          /**< its workers */
} para_mpi_rank_stats_t;

/**
 * @brief Gather every rank's figures of its last para_mpi_run() on rank
 *        @p root of @p comm; a collective call.
 *
 * @param[in] mine This rank's para_mpi_stats_t, as para_mpi_run() filled it.
 * @param[out] all On @p root: room for one para_mpi_rank_stats_t per rank,
 *             filled in rank order; ignored on the other ranks (may be
 *             NULL there).
 * @return 0 on success (on every rank).
 * @return PARA_EINVAL if @p rt or @p mine is NULL, or @p all is NULL on
 *         @p root (every rank then returns it, after the collective).
 * @note Not while @p rt runs a graph.
 */
PARA_API PARA_NODISCARD int para_mpi_stats_gather(const para_runtime_t *rt,
                                                  const para_mpi_stats_t *mine,
                                                  para_mpi_rank_stats_t *all,
                                                  int root, MPI_Comm comm);

/**
 * @brief Print every rank's figures of the last para_mpi_run() of
 *        @p graph on rank 0 of @p comm; a collective call.
 *
 * Rank 0 prints, to @p out: one line per rank (traffic, tasks, busy and
 * parked time, peak bytes, the communication thread's CPU time), one line
 * per node with its items and busy time on each rank, and one line per
 * edge that carried batches across ranks (batches and bytes, all ranks
 * together). The other ranks
 * print nothing (@p out may be NULL there). PARA_MPI_STATS=1 makes
 * para_mpi_run() print this to stderr after every run.
 *
 * @return 0 on success; PARA_EINVAL if an argument is NULL (or @p out on
 *         rank 0), on every rank.
 * @note Not while @p rt runs a graph.
 */
PARA_API PARA_NODISCARD int para_mpi_stats_fprint(FILE *out,
                                                  const para_runtime_t *rt,
                                                  const para_graph_t *graph,
                                                  const para_mpi_stats_t *mine,
                                                  MPI_Comm comm);

/**
 * @brief Run @p graph on every rank of @p comm; a collective call.
 *
 * Every rank of @p comm calls it with the same graph (built the same way,
 * same placement) and its own runtime, and all return together. Validates
 * the graph and the placement on every rank first: an invalid placement
 * (a rank outside @p comm, a source or a SERIAL / ORDERED node on every
 * rank, an edge that cannot cross ranks) fails every rank with PARA_EINVAL
 * and a message naming the node or the edge.
 *
 * @param[in] stats NULL, or filled with this rank's traffic (also on
 *            failure).
 * @return 0 when every item went through on every rank.
 * @return The codes of para_run(), the same on every rank; the message
 *         (para_runtime_errmsg()) names the failing rank first.
 * @return PARA_EINVAL if an argument is NULL, MPI is not initialised with
 *         at least MPI_THREAD_FUNNELED, or it is FUNNELED and this is not
 *         the thread that initialised it.
 * @note Not from inside a node function. @p rt must not run another graph
 *       meanwhile. Nodes' statistics count this rank's share only; a
 *       collect node fills its array on its own rank only.
 */
PARA_API PARA_NODISCARD int para_mpi_run(para_runtime_t *rt,
                                         para_graph_t *graph, MPI_Comm comm,
                                         para_mpi_stats_t *stats);

#ifdef __cplusplus
}
#endif

#endif /* PARA_MPI_H */
