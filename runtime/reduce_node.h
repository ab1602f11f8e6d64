/*
 * Reduce nodes (reduce.c): the scheduler's entry point. Graph layer.
 */
#ifndef PARA_REDUCE_NODE_H
#define PARA_REDUCE_NODE_H

#include <stddef.h>

#include "graph.h"
#include "runctx.h"

/* A reduce node folds @p n items of task @p t on worker @p worker. */
int para__reduce_fold(para_node_t *node, unsigned worker, const para__task *t,
                      const void *items, size_t n);

#endif /* PARA_REDUCE_NODE_H */
