/*
 * para: reductions with per-worker partial state.
 *
 * A reduce node is a sink that aggregates without a lock and without
 * serialising the workers (the shape of oneTBB's combinable and Rayon's
 * fold + reduce): each worker folds the batches it runs into its own
 * partial state; when the run ends the partials are merged into the
 * caller's result.
 *
 *     typedef struct { uint64_t count, sum; } totals;
 *     static void init(void *ctx, void *s) { memset(s, 0, sizeof(totals)); }
 *     static int fold(void *ctx, void *s, const void *in, size_t n) { ... }
 *     static void merge(void *ctx, void *into, const void *from) { ... }
 *     totals result;
 *     para_reduce_desc_t d = {.name = "totals", .in_size = 8,
 *                             .state_size = sizeof(totals), .init = init,
 *                             .fold = fold, .merge = merge,
 *                             .result = &result};
 *     para_graph_add_reduce(g, &d, &node);
 *
 * With PARA_REDUCE_ORDERED each batch is folded into a partial of its own,
 * and the partials are merged in source order: the result then does not
 * depend on which worker ran what, on the policy or on the number of
 * workers, only on how the stream was cut into batches, which a fixed batch
 * size (para_runtime_attr_t.batch_items, PARA_BATCH) fixes too. Use it for
 * floating-point sums that must be reproducible; it keeps one partial per
 * batch until the end of the run, and like an ORDERED node it should be fed
 * by a single source (batches of different sources have no order between
 * them).
 */
#ifndef PARA_REDUCE_H
#define PARA_REDUCE_H

#include <stddef.h>

#include "para/export.h"
#include "para/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/** para_reduce_desc_t.flags */
enum para_reduce_flags {
    /** Merge per-batch partials in source order (see above). */
    PARA_REDUCE_ORDERED = 1u << 0,
};

/** Set a fresh partial state (state_size bytes). */
typedef void (*para_reduce_init_fn)(void *ctx, void *state);
/** Fold @p n input items into @p state; non-zero fails the run (PARA_ENODE).
 *  Called concurrently on different states. */
typedef int (*para_reduce_fold_fn)(void *ctx, void *state, const void *items,
                                   size_t n);
/** Merge partial @p from into @p into (by the thread in para_run()). */
typedef void (*para_reduce_merge_fn)(void *ctx, void *into, const void *from);

/** Describes a reduce node; zero-initialise what you do not set. */
typedef struct para_reduce_desc {
    const char *name;  /**< required; copied */
    unsigned flags;    /**< 0 or PARA_REDUCE_ORDERED */
    size_t in_size;    /**< bytes per input item */
    size_t state_size; /**< bytes of a partial state (and of the result) */
    void *ctx;         /**< passed to the functions; borrowed for the runs */
    para_reduce_init_fn init;
    para_reduce_fold_fn fold;
    para_reduce_merge_fn merge;
    /**
     * state_size bytes, borrowed until the runs end: after every run that
     * returns 0 it holds init() merged with every partial. Left unchanged
     * by a failed run.
     */
    void *result;
} para_reduce_desc_t;

/**
 * @brief Add a reduce node (a parallel sink; see the top of this file).
 * @return As para_graph_add(); PARA_EINVAL also if a function, the result
 *         or a size is missing, or the flags are unknown.
 */
PARA_API PARA_NODISCARD int
para_graph_add_reduce(para_graph_t *graph, const para_reduce_desc_t *desc,
                      para_node_t **out);

#ifdef __cplusplus
}
#endif

#endif /* PARA_REDUCE_H */
