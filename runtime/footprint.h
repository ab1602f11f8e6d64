/*
 * Footprints (graph layer): the most bytes a batch of n items from one
 * source can hold at once, over all the batches it becomes downstream. At
 * every node its batch (the allocation size, as batch.c rounds it) times
 * the number of paths from the source that reach the node (fan-out makes
 * one batch per path), plus the bytes its items own outside batches
 * (item_bytes), plus device staging for kernel nodes (without what stays
 * on the device: para__footprints_new()); a flat-map's output
 * is scaled by the largest expansion seen so far (node->expand_x16). Sinks
 * hold nothing of their own. The arithmetic saturates: a footprint that
 * does not fit in 64 bits is UINT64_MAX ("more than any budget").
 *
 * The byte budget (budget.h) calls para__footprint() through a pointer, so
 * the memory layer does not depend on the graph.
 *
 * Tests: tests/runtime/test_budget.c.
 */
#ifndef PARA_FOOTPRINT_H
#define PARA_FOOTPRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph.h"

typedef struct para__footprints para__footprints;

/* Per-run tables for @p g (prepared); sets every source's source_slot.
 * NULL when out of memory. Free with para__footprints_free().
 * @p resident: the run keeps kernel outputs on the device for kernel-only
 * successors (para__device_keeps_outputs()); then a device-only node
 * (kernel only) whose successors are all device-only nodes holds no host
 * bytes for its output but its batch header and no output staging, and
 * one whose predecessors are all device-only nodes no input staging: that
 * data is on the device budget only (para__footprint_device()). */
para__footprints *para__footprints_new(const para_graph_t *g, bool resident);
void para__footprints_free(void *fp);
/* A para__footprint_fn (budget.h): @p fp is a para__footprints. */
uint64_t para__footprint(const void *fp, unsigned slot, size_t items);
/* The same for device memory (the device budget, budget.h): the bytes a
 * batch of n items from source @p slot may keep on devices at once, at
 * every kernel node whose output may stay on the device for a kernel node
 * after it (device-resident edges), times its paths. */
/* The most bytes a batch that arrives at node @p n from elsewhere (another
 * rank: runtime/mpi) can hold at once here: @p batch_bytes for itself, and
 * the footprint of @p items at @p n and at every node reachable from it
 * through nodes that @p here marks (per node index; a path that leaves
 * this place ends there, its batch counted where it was made). Uses
 * scratch space in @p fp: one caller at a time. */
uint64_t para__footprint_arrival(void *fp, para_node_t *n, size_t items,
                                 uint64_t batch_bytes, const bool *here);
uint64_t para__footprint_device(const void *fp, unsigned slot, size_t items);

#endif /* PARA_FOOTPRINT_H */
