/*
 * Reduce nodes (reduce.c): the scheduler's entry point. Graph layer.
 */
#ifndef PARA_REDUCE_NODE_H
#define PARA_REDUCE_NODE_H

#include <stdbool.h>
#include <stddef.h>

#include "graph.h"
#include "runctx.h"

/* A reduce node folds @p n items of task @p t on worker @p worker. */
int para__reduce_fold(para_node_t *node, unsigned worker, const para__task *t,
                      const void *items, size_t n);
/* May a task's items be folded in several calls (fuse.h)? True unless the
 * reduction is ORDERED (one partial per batch key). */
bool para__reduce_tileable(const para_node_t *node);

#endif /* PARA_REDUCE_NODE_H */
