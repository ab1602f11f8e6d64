/*
 * Fused CPU chains (scheduler layer, fuse.c): a linear chain of CPU stages
 * runs inside one task, tile by tile, and only its last output is
 * materialised.
 *
 * A chain is a path head -> ... -> last of parallel CPU nodes (no kernel,
 * placement CPU) where every stage but the last is a map, a batch map or a
 * filter with exactly one successor, and every stage after the head has
 * exactly one predecessor. The last stage may also be a flat-map, a
 * parallel sink or an unordered reduction. A chain ends before a serial or
 * ORDERED node, at fan-out (but see fused fan-out below) and merges, at
 * kernel nodes, and at nodes whose input or output items own memory
 * (owned.h: their hand-over is per batch). At most PARA__FUSE_MAX_STAGES
 * stages, and items of at most PARA__FUSE_MAX_ITEM bytes on its inner
 * edges.
 *
 * The head's task runs every stage on one tile of its input at a time
 * (PARA__FUSE_TILE_BYTES over the widest inner edge: the tile stays in L1),
 * writing the inner stages' outputs to two per-call tile buffers and the
 * last stage's straight into the output batch, which goes to the last
 * stage's successors. The inner stages never get tasks of their own.
 *
 * Range and array sources whose successors are all chain heads do not
 * materialise their batches: a range batch carries only its index range
 * (the head's tile is filled with the indices it would have read), an
 * array batch points into the user's array (items are only read).
 *
 * What stays as without fusion: every stage sees the same items in the
 * same order (per batch), para_input_port() is the head's port for the
 * head and 0 after it, a failing stage fails the run with PARA_ENODE
 * naming that stage (a failed item's output is not passed on), and an
 * aborting run stops the chain at the next tile; para_item_index() works
 * in every stage that has only maps before it. Statistics: every stage
 * counts its own items in and out and one batch per fused task (and the
 * worker one task per stage, so tasks still add up to batches); the
 * task's time is divided between the stages in proportion to their time
 * on sampled tiles (the first, then every PARA__FUSE_SAMPLE-th), so the
 * clock is read twice per task plus once per stage per sampled tile. The
 * trace shows a "fused" span naming the chain (head..last) with one task
 * span per stage inside it.
 *
 * Fused fan-out. A CPU node (no kernel, items that own nothing) whose
 * successors, two to PARA__FUSE_MAX_FAN of them, are all chain heads
 * delivers each output batch as ONE task, of its first successor in
 * delivery order; that task runs every successor's chain (a branch) over
 * each tile in turn, so a fused range's indices are written once per tile
 * and every other input tile is read from L1 by all the branches after
 * the first, and the branches need no task of their own. The tile is the
 * smallest of the heads' tiles. Each branch's last stage has its own
 * output batch, delivered to its successors as a chain's is (the task's
 * unit goes with the last delivery, so the run cannot end before the
 * others are delivered). What is said above of one chain holds for every
 * branch: statistics, ports (each head sees its own input port), failure
 * naming the failing stage (the other branches' outputs are dropped),
 * cancellation at the next tile, and the trace, where each branch has its
 * "fused" span, one after the other inside the task's time. The batch
 * such a node delivers has one reader (para__fuse_readers()).
 *
 * Batch functions (map_batch, flat_map_batch, sink_batch) in a chain are
 * called once per tile: consecutive pieces of the batch, in order. When
 * the batch size is forced (PARA_BATCH), they are not fused, and see
 * whole batches as documented.
 *
 * Serial tails. A chain's last stage (or any other parallel CPU node but
 * a source) whose only successor is a serial, unordered CPU node (not
 * ORDERED, no kernel) has that node as its tail: when a task of it
 * delivers its output, it tries the tail's claim (the exclusive claim a
 * drain takes, scheduler.c) and, if it wins, runs the tail's task on that
 * batch right there, as the drain would (statistics, trace span, failure
 * naming the tail, cancellation, owned items and the byte budget are the
 * drain's), then drains what arrived meanwhile and releases the claim as
 * a drain does. If the tail is busy, the worker holds the task back and
 * tries again after its next task (scheduler.c: up to 8 tasks; when
 * it finds no more work, what it holds goes to the tail's inbox as
 * without fusion), so that the tail reads the batch on the core that
 * wrote it. The tail's calls stay one at a time, each after the
 * last (claim and release are seq_cst); batches reach it in another
 * order, which an unordered node allows. The output still is a batch:
 * the tail runs on it whole, hot in this worker's cache, not tile by
 * tile.
 *
 * PARA_FUSE=0 turns fusion off (options.c); it is also off while a run is
 * driven across processes (rt->remote), whose routing is per node.
 *
 * Tests: tests/runtime/test_fuse.c (chain boundaries, failure naming,
 * cancellation, statistics, trace; fused fan-out: results, statistics,
 * failure, cancellation; serial tails: calls one at a time, failure,
 * cancellation, statistics, never ORDERED, held batches under a busy tail
 * and a byte budget), test_differential.c (random graphs with fusion on
 * and off; it checks that fused chains, fused fan-outs, serial tails and
 * held batches occur).
 */
#ifndef PARA_FUSE_H
#define PARA_FUSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scheduler.h"

#define PARA__FUSE_MAX_STAGES 8
#define PARA__FUSE_TILE_BYTES 8192
#define PARA__FUSE_MAX_ITEM 1024 /* bytes: at least 8 items per tile */
#define PARA__FUSE_SAMPLE 8      /* a timed tile every this many */
#define PARA__FUSE_MAX_FAN 8     /* branches of a fused fan-out */

/* Before a run, single-threaded (para__scheduler_execute()): set every
 * node's fusion fields (graph.h) for @p run: chains if @p on, none
 * otherwise. */
void para__fuse_plan(para__run *run, bool on);

/* Does task @p t of node @p n run through para__fuse_run()? (A chain of
 * two or more stages, an input batch a fused source did not materialise,
 * or the batch of a fused fan-out: the task runs every branch.) */
static inline bool para__fuse_task(const para_node_t *n, const para__task *t)
{
    const para_node_t *pred = n->preds[t->in_port];
    return n->fuse_next != NULL || pred->src_fused || pred->fuse_fan;
}

/* The readers of a batch node @p n delivers: one task for a fused
 * fan-out, one per successor otherwise. */
static inline uint32_t para__fuse_readers(const para_node_t *n)
{
    return n->fuse_fan ? 1u : n->n_succs;
}

/* Write the @p m indices first, first + 1, ... to @p v (a fused range's
 * tile); with @p wide in 32-byte stores (only where para__fuse_wide_fill()
 * says the CPU has them). */
void para__fuse_fill_indices(uint64_t *v, uint64_t first, size_t m, bool wide);

/* Does this CPU take para__fuse_fill_indices()'s wide stores (x86-64 with
 * AVX2)? */
bool para__fuse_wide_fill(void);

/* One output of a fused task: the batch and the stage that made it. */
typedef struct para__fuse_out {
    para__batch *batch;
    para_node_t *node;
} para__fuse_out;

/* Run task @p t's chain, or every branch of its fused fan-out
 * (statistics, cost estimates and trace included). On success outs[0 ..
 * *n_outs) are the outputs of the branches whose last stage is not a sink
 * (at most PARA__FUSE_MAX_FAN), in delivery order; returns 0. Otherwise
 * the run has failed or is aborting, *n_outs is 0, and nonzero is
 * returned. */
int para__fuse_run(para__worker *w, para__run *run, para__task *t,
                   para__fuse_out *outs, unsigned *n_outs);

#endif /* PARA_FUSE_H */
