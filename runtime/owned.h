/*
 * Items that own memory (owned.c): who releases an output item, and what
 * the budget counts for it. Graph layer: it reads nodes and sets the owner
 * fields of batches, which batch.c uses to release the items when a batch
 * is freed.
 */
#ifndef PARA_OWNED_H
#define PARA_OWNED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "graph.h"

/* Validation at prepare (topological @p order): who owns which output, and
 * no node that takes or moves owned items shares them with another
 * successor. 0 or PARA_EINVAL (graph->errmsg). */
int para__owned_check(para_graph_t *g, para_node_t *const *order);
/* @p o (new output of @p n, reading @p in; NULL for a source) owns its
 * items if @p n releases them, or if @p n filters owned items. */
void para__owned_begin_output(const para_node_t *n, const para__batch *in,
                              para__batch *o);
/* A filter dropped owned input item @p i of @p in: release it now. */
void para__owned_drop(para__batch *in, size_t i);
/* @p n ran on owned @p in: the first @p done items were decided (the
 * whole batch if @p ok); what it took or moved is no longer @p in's. */
void para__owned_input_done(const para_node_t *n, para__batch *in, size_t done,
                            bool ok);
/* The bytes @p out's items own outside it, as @p n hands it on
 * (UINT64_MAX if the sum overflows). */
uint64_t para__owned_count_bytes(para_node_t *n, const para__batch *out);
/* Bytes per output item of @p n for footprints: item_bytes, or the largest
 * per-item figure seen this run. */
uint64_t para__owned_item_estimate(const para_node_t *n);

#endif /* PARA_OWNED_H */
