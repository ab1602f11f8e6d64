/*
 * para: the one-expression pipeline builder.
 *
 * Reads like the original `pipeline!` example: a source, then stages, where a
 * stage may be a fan-out of chains whose ends merge into the next stage.
 *
 *     para_graph_t *g;
 *     int rc = PARA_PIPELINE(&g,
 *         para_pipe_range("x", 0, n),
 *         PARA_FANOUT(
 *             PARA_CHAIN(para_pipe_map("pair", 8, 16, pair, NULL),
 *                        para_pipe_map("diff", 16, 8, diff, NULL)),
 *             para_pipe_map("neg", 8, 8, negate, NULL)),
 *         para_pipe_sink("sum", 8, add, &sum, PARA_NODE_SERIAL));
 *
 * Fragments (para_pipe_t) are consumed by the call they are passed to, on
 * success and on failure alike. A fragment constructor that runs out of
 * memory returns NULL; the builder then fails with PARA_ENOMEM and frees the
 * rest, so no error check is needed until the final call.
 */
#ifndef PARA_PIPELINE_H
#define PARA_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "para/export.h"
#include "para/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct para_pipe para_pipe_t;

/** @brief One node; @p desc is copied (and its name). NULL on ENOMEM. */
PARA_API para_pipe_t *para_pipe_node(const para_node_desc_t *desc);
/** @brief A range source (see para_graph_add_range()). */
PARA_API para_pipe_t *para_pipe_range(const char *name, uint64_t begin,
                                      uint64_t end);
/** @brief A parallel 1:1 per-item map. */
PARA_API para_pipe_t *para_pipe_map(const char *name, size_t in_size,
                                    size_t out_size, para_map_fn fn, void *ctx);
/**
 * @brief A per-item sink with @p flags. **flags 0 means SERIAL** (as in
 *        para_graph_add_sink()): pass PARA_NODE_PARALLEL for a sink that
 *        several workers may call at once.
 */
PARA_API para_pipe_t *para_pipe_sink(const char *name, size_t in_size,
                                     para_sink_fn fn, void *ctx,
                                     unsigned flags);

/** @brief Stages in sequence. Consumes @p parts. */
PARA_API para_pipe_t *para_pipe_chain_v(para_pipe_t *const *parts, size_t n);
/** @brief Branches fed by the same output; their ends all feed the next
 *         stage. Consumes @p branches. */
PARA_API para_pipe_t *para_pipe_fanout_v(para_pipe_t *const *branches,
                                         size_t n);

/**
 * @brief Build a graph from a sequence of stages (the first must start with
 *        a source). Consumes @p parts.
 * @param[out] out The new graph, owned by the caller.
 * @return 0 on success.
 * @return PARA_ENOMEM if a fragment was NULL or allocation failed.
 * @return PARA_EINVAL if @p out is NULL, @p n is 0, or a fragment is misused
 *         (e.g. a source in the middle).
 * @return Any error of para_graph_add() / para_graph_connect() /
 *         para_graph_validate(); the graph is destroyed then and the message
 *         is logged at warning level.
 */
PARA_API PARA_NODISCARD int
para_pipeline_v(para_graph_t **out, para_pipe_t *const *parts, size_t n);

/** @brief Free a fragment that was never passed to a builder. NULL is ok. */
PARA_API void para_pipe_free(para_pipe_t *pipe);

#ifdef __cplusplus
} /* extern "C" */

/*
 * C++ has no compound literals (g++ accepts them as an extension but refuses
 * to take the address of the temporary array), so the macros pass the parts
 * as an initializer list there; its array lives until the end of the full
 * expression, which outlasts the call.
 */
#include <initializer_list>

namespace para_detail
{
inline para_pipe_t *chain(std::initializer_list<para_pipe_t *> parts)
{
    return para_pipe_chain_v(parts.begin(), parts.size());
}
inline para_pipe_t *fanout(std::initializer_list<para_pipe_t *> branches)
{
    return para_pipe_fanout_v(branches.begin(), branches.size());
}
inline int pipeline(para_graph_t **out,
                    std::initializer_list<para_pipe_t *> parts)
{
    return para_pipeline_v(out, parts.begin(), parts.size());
}
} // namespace para_detail

/** Stages in sequence: PARA_CHAIN(a, b, c). */
#define PARA_CHAIN(...) ::para_detail::chain({__VA_ARGS__})
/** Fan-out of branches: PARA_FANOUT(branch_a, branch_b). */
#define PARA_FANOUT(...) ::para_detail::fanout({__VA_ARGS__})
/** Build: PARA_PIPELINE(&graph, source, stage, ..., sink). */
#define PARA_PIPELINE(out, ...) ::para_detail::pipeline((out), {__VA_ARGS__})

#else /* C */

#define PARA_PIPE_ARGS_(...)                                                   \
    ((para_pipe_t *const[]){__VA_ARGS__}),                                     \
        (sizeof((para_pipe_t *const[]){__VA_ARGS__}) / sizeof(para_pipe_t *))
/** Stages in sequence: PARA_CHAIN(a, b, c). */
#define PARA_CHAIN(...) para_pipe_chain_v(PARA_PIPE_ARGS_(__VA_ARGS__))
/** Fan-out of branches: PARA_FANOUT(branch_a, branch_b). */
#define PARA_FANOUT(...) para_pipe_fanout_v(PARA_PIPE_ARGS_(__VA_ARGS__))
/** Build: PARA_PIPELINE(&graph, source, stage, ..., sink). */
#define PARA_PIPELINE(out, ...)                                                \
    para_pipeline_v((out), PARA_PIPE_ARGS_(__VA_ARGS__))

#endif /* __cplusplus */

#endif /* PARA_PIPELINE_H */
