/*
 * para: dataflow graphs.
 *
 * A graph is a DAG of nodes. Sources produce items, maps / filters /
 * flat-maps transform them, sinks consume them. An edge carries items of one
 * fixed size from a node's output to another node's input; one output may feed
 * several nodes (fan-out: every successor sees every item, shared read-only
 * and without copies) and one input may be fed by several nodes (merge).
 *
 * Functions come in two shapes. Per-item functions ("map", "filter", "sink",
 * ...) are called once per item; the runtime still moves items in batches and
 * calls them in a tight loop, so per-item code runs at batched speed. Batch
 * functions ("map_batch", "sink_batch", ...) receive a whole batch at once;
 * in a fused chain (a run of parallel maps and filters that one task runs
 * tile by tile, PARA_FUSE) a batch reaches them as consecutive tiles of a
 * few KiB, each one call, unless the batch size is forced (PARA_BATCH).
 *
 * Every node function returns 0 on success. Any other value aborts the run:
 * para_run() returns PARA_ENODE and the runtime's message names the node and
 * the value it returned.
 *
 * Items that own memory. An item may point to memory outside its batch (a
 * line, a compressed block, an image). The node that makes such items says
 * how to release them (para_node_desc_t.release), and the runtime then owns
 * them until they are released, exactly once, on every path:
 *
 *   - Consumers borrow. A map, sink or kernel reads an input item during its
 *     call; the item is released when every successor that received the
 *     batch is done with it (after the call, or when the batch is dropped
 *     because the run failed or was cancelled, or when the device finished
 *     with it).
 *   - Fan-out shares. Every successor sees the same item, read-only; it is
 *     released once, after the last of them is done. A node that takes or
 *     filters owned items (below) needs them to itself, so it must be the
 *     only successor of the node it reads them from: para_graph_validate()
 *     refuses the graph otherwise (PARA_EINVAL, naming both nodes).
 *   - A filter moves: kept items leave with its output (still owned by the
 *     runtime, released as that output's items), dropped items are released
 *     as soon as the filter has decided on them.
 *   - A node flagged PARA_NODE_TAKES takes its input items: after a
 *     per-item call that returned 0 the item is the node's (it frees it or
 *     keeps it); a batch call that returned 0 takes the whole batch. A
 *     failing call takes nothing. A collect takes what it stores: the
 *     caller's array then owns those items.
 *   - A node's own output: after a per-item map call returned 0, or once a
 *     flat-map emitted it, the item is the runtime's (a failing node's
 *     finished outputs are released). A batch map or a source that fails
 *     must release what it wrote itself.
 *
 * Threading: a graph is built by one thread at a time and must not be
 * modified while para_run() runs it. Node functions of PARALLEL nodes are
 * called concurrently from several workers; SERIAL and ORDERED nodes are
 * called by one worker at a time (the calls are ordered by happens-before, so
 * their context needs no locks).
 */
#ifndef PARA_GRAPH_H
#define PARA_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "para/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct para_graph para_graph_t;
typedef struct para_node para_node_t;
typedef struct para_emitter para_emitter_t;

/**
 * Node flags (para_node_desc_t.flags).
 *
 * In a para_node_desc_t, flags 0 means PARALLEL. The per-item convenience
 * sinks para_graph_add_sink() and para_pipe_sink() are the exception: there
 * flags 0 means SERIAL, because a sink that adds into its context races when
 * several workers call it at once. Pass PARA_NODE_PARALLEL to them to ask
 * for a parallel sink.
 */
enum para_node_flags {
    /**
     * Stateless: any number of workers may run the node at once. The default
     * of a desc (flags 0); to be named explicitly where a convenience call
     * defaults to SERIAL (para_graph_add_sink(), para_pipe_sink()).
     */
    PARA_NODE_PARALLEL = 1u << 3,
    /** Stateful: one worker at a time, batches in arrival order. */
    PARA_NODE_SERIAL = 1u << 0,
    /**
     * Serial, and batches in source order. On each input the node sees items
     * in the order the (single) upstream source produced them; batches from
     * different inputs are interleaved by sequence range, ties broken by input
     * order. An ORDERED node must be fed by exactly one source (PARA_EORDER).
     */
    PARA_NODE_ORDERED = 1u << 1,
    /**
     * Kernel nodes only: run every batch on the devices, even when the node
     * has a CPU function too (which then serves simulated devices, batches
     * too large for a device, and the fallback when no device is left).
     */
    PARA_NODE_DEVICE_ONLY = 1u << 2,
    /**
     * The node takes the owned input items it is called on (see "Items
     * that own memory" above): the runtime no longer releases them. Not for
     * sources, filters or kernel nodes.
     */
    PARA_NODE_TAKES = 1u << 4,
    /**
     * Kernel nodes with a CPU function only: run every batch through the
     * CPU function, never on a device (the counterpart of
     * PARA_NODE_DEVICE_ONLY; without either, a node with both
     * implementations is split between them by measured speed).
     */
    PARA_NODE_CPU_ONLY = 1u << 5,
    /**
     * Kernel nodes only: build the kernel for results that match a C
     * implementation bit for bit: no contraction of a*b+c into an FMA
     * (`#pragma OPENCL FP_CONTRACT OFF` before the source) and correctly
     * rounded single-precision division and square root
     * (-cl-fp32-correctly-rounded-divide-sqrt, where the device supports
     * it). Without it, a device may contract and round division
     * differently from the CPU, so a split (MIXED) node's results can
     * differ by an ulp from run to run, depending on where each batch ran.
     * The C side must not contract either: compile the CPU function with
     * -ffp-contract=off (GCC contracts by default outside ISO C modes) and
     * without -ffast-math.
     */
    PARA_NODE_FP_STRICT = 1u << 6,
};

/**
 * Source: write at most @p cap items into @p out and set *@p n_written.
 * Writing 0 items ends the source. Called by one worker at a time.
 */
typedef int (*para_source_fn)(void *ctx, void *out, size_t cap,
                              size_t *n_written);
/**
 * Source open hook: called at the start of every run of the graph, before
 * the source's first pull, by the thread in para_run(). Rewind the source
 * here (reopen a file, reset a counter). A non-zero return fails the run
 * with PARA_ENODE naming the source; nothing is pulled then.
 */
typedef int (*para_source_open_fn)(void *ctx);
/**
 * Release @p n consecutive output items at @p items (para_node_desc_t.
 * release). Called exactly once per owned item, from any worker or the
 * device host thread, possibly concurrently for different items; ctx is the
 * node's ctx. Items that come in a run are often released together, so that
 * items sharing one buffer can give it back with one operation.
 */
typedef void (*para_items_release_fn)(void *ctx, void *items, size_t n);
/**
 * Bytes that the output item @p item owns outside its batch
 * (para_node_desc_t.owned_bytes), read when the item is handed on; counted
 * in the memory budget until it is released.
 */
typedef size_t (*para_item_bytes_fn)(void *ctx, const void *item);
/** 1:1 map, one item: read @p in, write exactly one item to @p out. */
typedef int (*para_map_fn)(void *ctx, const void *in, void *out);
/**
 * 1:1 map, whole batch: @p n items from @p in to @p n items in @p out.
 * @p out never overlaps @p in (the runtime guarantees it on every path:
 * batches, fused tiles, device staging), so an implementation may read and
 * write them through restrict pointers.
 */
typedef int (*para_map_batch_fn)(void *ctx, const void *in, void *out,
                                 size_t n);
/** Filter: return 1 to keep the item, 0 to drop it, negative on error. */
typedef int (*para_filter_fn)(void *ctx, const void *in);
/**
 * Filter, whole batch: set keep[i] to 1 to keep item i of @p n, 0 to drop
 * it. Return 0, or non-zero to fail the run (then none of the @p n is
 * decided). Called on consecutive pieces of a batch, in order. items.h's
 * PARA_FILTER_ITEMS writes one from a per-item predicate.
 */
typedef int (*para_filter_batch_fn)(void *ctx, const void *in, size_t n,
                                    unsigned char *keep);
/** Flat-map, one item: emit zero or more items with para_emit(). */
typedef int (*para_flat_map_fn)(void *ctx, const void *in, para_emitter_t *out);
/** Flat-map, whole batch: emit zero or more items for @p n inputs. */
typedef int (*para_flat_map_batch_fn)(void *ctx, const void *in, size_t n,
                                      para_emitter_t *out);
/** Sink, one item. */
typedef int (*para_sink_fn)(void *ctx, const void *in);
/** Sink, whole batch of @p n items. */
typedef int (*para_sink_batch_fn)(void *ctx, const void *in, size_t n);

/** What an extra kernel argument is (para_kernel_arg_t.kind). */
enum para_kernel_arg_kind {
    /** A scalar of @c size bytes; the value is copied when the node is
     *  added. */
    PARA_KARG_SCALAR = 0,
    /** A read-only array for a `__global const T *` (or `__constant T *`)
     *  parameter: @c value points to @c size bytes, borrowed, not copied.
     *  It is uploaded once per run and device, before the first launch,
     *  and shared by every launch of the run; keep it valid and unchanged
     *  while a run uses it (a change between runs is picked up by the next
     *  run). The node's CPU function reads the same array through its own
     *  ctx. */
    PARA_KARG_BUFFER = 1,
    /** `__local` memory of @c size bytes per work-group; @c value is
     *  NULL. */
    PARA_KARG_LOCAL = 2,
    /** Each item's sequence number in its source's stream, for a
     *  `__global const ulong *` parameter: element i is the number of item
     *  i of the launch (one launch gathers many batches, so the numbers
     *  need not be consecutive). @c value is NULL and @c size 0. The node's
     *  items must be numbered one by one: every node between the source
     *  and this one is a map or another kernel node (a filter or flat-map
     *  upstream fails the run with PARA_EINVAL before it starts). The
     *  node's CPU function reads the same number with para_item_index().
     *  The numbers are made on the device from a few bytes per gathered
     *  batch (one 16-byte run per batch is copied, not 8 bytes per item). */
    PARA_KARG_INDEX = 3,
};

/** One extra kernel argument. Zero-initialised fields make a scalar. */
typedef struct para_kernel_arg {
    const void *value;
    size_t size;
    unsigned kind; /**< enum para_kernel_arg_kind; default 0 = scalar */
} para_kernel_arg_t;

/**
 * The device implementation of a node: an OpenCL C kernel with the contract
 *
 *     __kernel void entry(__global const IN *in, __global OUT *out, uint n,
 *                         ...extra arguments (para_kernel_arg_t)...)
 *
 * that writes out[i] from in[i] for every i < n (the global size may be
 * rounded up: check the index). One launch covers many batches, so the
 * kernel must treat items independently, like a 1:1 map.
 */
typedef struct para_kernel_desc {
    const char *source;            /**< OpenCL C source; copied */
    const char *entry;             /**< kernel function name; copied */
    const char *options;           /**< build options, or NULL; copied */
    const para_kernel_arg_t *args; /**< extra arguments after (in, out, n) */
    size_t n_args;
} para_kernel_desc_t;

/**
 * Describes one node. Set exactly one function pointer; it decides the kind
 * of node. Zero-initialise the rest (designated initialisers do).
 *
 * Device nodes set @c kernel, alone or together with @c map or @c map_batch
 * (a CPU implementation with the same meaning). Where the runtime has a
 * device, the node's batches are gathered into kernel launches; a node with
 * both implementations is split between the device and the CPU workers by
 * measured throughput. Without a device, a node with a CPU implementation
 * runs on the CPU (logged once) and one without fails the run with
 * PARA_ENODEV before it starts. Device nodes are PARALLEL.
 */
typedef struct para_node_desc {
    const char *name; /**< required; copied. Used in every error message. */
    unsigned flags;   /**< enum para_node_flags; default 0 = PARALLEL */
    int priority;     /**< higher runs first among ready work; default 0 */
    size_t in_size;   /**< bytes per input item (not for sources) */
    size_t out_size;  /**< bytes per output item (not for sinks) */
    void *ctx;        /**< passed to the function; borrowed for the run */
    para_source_fn source;
    para_map_fn map;
    para_map_batch_fn map_batch;
    para_filter_fn filter; /**< out_size must equal in_size (or be 0) */
    para_flat_map_fn flat_map;
    para_flat_map_batch_fn flat_map_batch;
    para_sink_fn sink;
    para_sink_batch_fn sink_batch;
    const para_kernel_desc_t *kernel; /**< device implementation; copied */
    /**
     * Sources only: called at the start of every run (see
     * para_source_open_fn). A callback source without it runs once per
     * graph: running the graph again fails with PARA_EINVAL, since the
     * source would resume where it ended (usually: produce nothing).
     */
    para_source_open_fn open;
    /**
     * Bytes each output item owns outside its batch (a buffer the item
     * points to, freed downstream), for the memory budget; default 0.
     * owned_bytes, if set, counts each item instead, and this stays the
     * estimate until the first batch is counted. A source's batches are
     * bounded by what its items own: items owning large blocks (1 MiB of a
     * file to compress) travel one per batch, and a source whose item size
     * is not known yet (owned_bytes, no item_bytes) hands out one item
     * first.
     */
    size_t item_bytes;
    /**
     * The output items own memory; release them with this (see "Items that
     * own memory" at the top). Not for sinks or kernel nodes.
     */
    para_items_release_fn release;
    /**
     * Bytes one output item owns outside its batch, per item (compressed
     * blocks, lines, images of varying size). The memory budget counts what
     * it says; its estimate of a node's next batch uses the largest per-item
     * figure seen so far in the run.
     */
    para_item_bytes_fn owned_bytes;
    /**
     * Batch hints; 0 means the runtime's default. @c min_batch: the fewest
     * items a task of this node should get (an expensive serial stage, a
     * function with a large fixed cost per call): the sources upstream pull
     * at least that many items per batch while they have them, within the
     * runtime's byte cap per batch. @c batch_us: the time a task of this
     * node should take, in microseconds, instead of the runtime-wide
     * PARA_BATCH_US. PARA_BATCH, when set, overrides both.
     */
    size_t min_batch;
    unsigned batch_us;
    /** A filter by batches (para_filter_batch_fn): set it instead of
     *  @c filter; out_size as for @c filter. */
    para_filter_batch_fn filter_batch;
} para_node_desc_t;

/**
 * @brief Create an empty graph.
 * @param[out] out The new graph; owned by the caller, para_graph_destroy().
 * @return 0 on success.
 * @return PARA_EINVAL if @p out is NULL.
 * @return PARA_ENOMEM if allocation failed.
 * @note Any thread.
 */
PARA_API PARA_NODISCARD int para_graph_create(para_graph_t **out);

/**
 * @brief Destroy a graph and all its nodes. NULL is a no-op.
 * @note Must not be called while para_run() runs the graph.
 */
PARA_API void para_graph_destroy(para_graph_t *graph);

/**
 * @brief Add a node described by @p desc.
 * @param[in,out] graph The graph that will own the node.
 * @param[in] desc Borrowed for the call; the name is copied.
 * @param[out] out The node handle, owned by @p graph (may be NULL).
 * @return 0 on success.
 * @return PARA_EINVAL if an argument is NULL, the name is missing, not exactly
 *         one function is set, an item size is 0 where one is needed, or the
 *         flags are unknown. para_graph_errmsg() says which.
 * @return PARA_ENOMEM if allocation failed.
 * @return PARA_EBUSY if the graph is running.
 */
PARA_API PARA_NODISCARD int para_graph_add(para_graph_t *graph,
                                           const para_node_desc_t *desc,
                                           para_node_t **out);

/**
 * @brief Add a splittable source emitting the uint64_t values
 *        [@p begin, @p end) in order. All workers pull from it at once.
 * @return As para_graph_add(); PARA_EINVAL also if @p end < @p begin.
 */
PARA_API PARA_NODISCARD int para_graph_add_range(para_graph_t *graph,
                                                 const char *name,
                                                 uint64_t begin, uint64_t end,
                                                 para_node_t **out);

/**
 * @brief Add a splittable source emitting @p count items of @p item_size
 *        bytes from @p items, in order. All workers pull from it at once.
 * @param[in] items Borrowed until every run of the graph has returned.
 * @return As para_graph_add().
 */
PARA_API PARA_NODISCARD int
para_graph_add_array(para_graph_t *graph, const char *name, const void *items,
                     size_t count, size_t item_size, para_node_t **out);

/**
 * @brief Add a sink that stores its input, in source order, into @p array.
 * @param[out] array Room for @p capacity items; borrowed until the runs end.
 * @param[out] count Set by every run to the number of items stored.
 * @return As para_graph_add(). A run that would store more than @p capacity
 *         items fails with PARA_EOVERFLOW.
 * @note The node is ORDERED, so it must be fed by exactly one source.
 */
PARA_API PARA_NODISCARD int
para_graph_add_collect(para_graph_t *graph, const char *name, size_t item_size,
                       void *array, size_t capacity, size_t *count,
                       para_node_t **out);

/**
 * Convenience wrappers over para_graph_add(); flags as in the desc, except
 * for para_graph_add_sink() (below). para_graph_add_source() adds a source
 * without an open hook: it runs once per graph (see para_node_desc_t.open).
 */
PARA_API PARA_NODISCARD int
para_graph_add_source(para_graph_t *graph, const char *name, size_t out_size,
                      para_source_fn fn, void *ctx, para_node_t **out);
/**
 * @brief Add a callback source with an open hook @p open, called at the
 *        start of every run (see para_source_open_fn), so the graph can run
 *        again.
 * @return As para_graph_add(); PARA_EINVAL also if @p open is NULL.
 */
PARA_API PARA_NODISCARD int para_graph_add_source_with_open(
    para_graph_t *graph, const char *name, size_t out_size, para_source_fn fn,
    para_source_open_fn open, void *ctx, para_node_t **out);
PARA_API PARA_NODISCARD int para_graph_add_map(para_graph_t *graph,
                                               const char *name, size_t in_size,
                                               size_t out_size, para_map_fn fn,
                                               void *ctx, unsigned flags,
                                               para_node_t **out);
PARA_API PARA_NODISCARD int
para_graph_add_map_batch(para_graph_t *graph, const char *name, size_t in_size,
                         size_t out_size, para_map_batch_fn fn, void *ctx,
                         unsigned flags, para_node_t **out);
PARA_API PARA_NODISCARD int
para_graph_add_filter(para_graph_t *graph, const char *name, size_t item_size,
                      para_filter_fn fn, void *ctx, unsigned flags,
                      para_node_t **out);
/**
 * @brief Add a filter that decides a piece of a batch per call (see
 *        para_filter_batch_fn): what para_graph_add_filter() does without
 *        a call per item. Owned items are moved or released as by any
 *        filter.
 */
PARA_API PARA_NODISCARD int
para_graph_add_filter_batch(para_graph_t *graph, const char *name,
                            size_t item_size, para_filter_batch_fn fn,
                            void *ctx, unsigned flags, para_node_t **out);
/**
 * @brief Add a per-item sink.
 *
 * **flags 0 means SERIAL here**, unlike everywhere else: one worker at a
 * time calls @p fn, so a sink that accumulates into @p ctx is correct as
 * written. Pass PARA_NODE_PARALLEL to have several workers call it at once
 * (then @p fn must be thread-safe), or PARA_NODE_ORDERED for source order.
 * @return As para_graph_add().
 */
PARA_API PARA_NODISCARD int para_graph_add_sink(para_graph_t *graph,
                                                const char *name,
                                                size_t in_size, para_sink_fn fn,
                                                void *ctx, unsigned flags,
                                                para_node_t **out);
PARA_API PARA_NODISCARD int
para_graph_add_sink_batch(para_graph_t *graph, const char *name, size_t in_size,
                          para_sink_batch_fn fn, void *ctx, unsigned flags,
                          para_node_t **out);

/**
 * @brief Add a device node (see para_kernel_desc_t) with an optional CPU
 *        implementation @p cpu_fn (NULL: device only).
 * @return As para_graph_add(); PARA_EINVAL also if the kernel description
 *         lacks a source or an entry point, or an argument has no value.
 */
PARA_API PARA_NODISCARD int
para_graph_add_kernel(para_graph_t *graph, const char *name, size_t in_size,
                      size_t out_size, const para_kernel_desc_t *kernel,
                      para_map_batch_fn cpu_fn, void *ctx, para_node_t **out);

/**
 * @brief The OpenCL C source of a kernel shipped with para (kernels/NAME.cl,
 *        embedded at build time), e.g. "mandelbrot".
 * @return The NUL-terminated source, or NULL if there is no such kernel.
 */
PARA_API const char *para_kernel_source(const char *name);

/**
 * @brief Connect @p from's output to @p to's input.
 * @return 0 on success.
 * @return PARA_EINVAL if an argument is NULL, @p from is a sink, @p to is a
 *         source, or the edge already exists.
 * @return PARA_EFOREIGN if a node belongs to another graph than @p graph.
 * @return PARA_ESIZE if @p from's output item size differs from @p to's
 *         input item size.
 * @return PARA_ENOMEM if allocation failed.
 * @return PARA_EBUSY if the graph is running.
 * @note Cycles are reported by para_graph_validate() / para_run().
 */
PARA_API PARA_NODISCARD int
para_graph_connect(para_graph_t *graph, para_node_t *from, para_node_t *to);

/**
 * @brief Check the graph as para_run() would, without running it.
 * @return 0 if the graph can run.
 * @return PARA_ENOSOURCE if it has no source.
 * @return PARA_EUNCONNECTED if a non-source node has no input or a non-sink
 *         node has no output.
 * @return PARA_ECYCLE if the edges form a cycle.
 * @return PARA_EORDER if an ORDERED node is reachable from several sources.
 * @return PARA_ENOMEM if allocation failed.
 * @note para_graph_errmsg() names the offending node.
 */
PARA_API PARA_NODISCARD int para_graph_validate(para_graph_t *graph);

/**
 * @brief The message of the last failed call on this graph ("" if none).
 * @return A copy kept per calling thread: valid until this thread calls
 *         para_graph_errmsg() again, and never changed by what other threads
 *         do with the graph meanwhile.
 * @note Any thread.
 */
PARA_API const char *para_graph_errmsg(const para_graph_t *graph);

/** @brief Number of nodes in the graph. */
PARA_API size_t para_graph_node_count(const para_graph_t *graph);

/** @brief The node's name, owned by its graph. */
PARA_API const char *para_node_name(const para_node_t *node);

/**
 * @brief Change the node's scheduling priority (higher runs first).
 * @return 0, PARA_EINVAL if @p node is NULL, PARA_EBUSY while running.
 */
PARA_API PARA_NODISCARD int para_node_set_priority(para_node_t *node,
                                                   int priority);

/**
 * @brief Append one item to a flat-map's output.
 * @param[in] item out_size bytes, copied.
 * @return 0, or PARA_ENOMEM (return it from the node function).
 * @note Only inside the flat-map function that received @p out.
 */
PARA_API PARA_NODISCARD int para_emit(para_emitter_t *out, const void *item);

/**
 * @brief Room for @p n more items at the end of a flat-map's output; fill
 *        them before the next call on @p out.
 * @return A pointer to n * out_size bytes, or NULL if allocation failed.
 */
PARA_API void *para_emit_reserve(para_emitter_t *out, size_t n);

/** Per-node statistics of the graph's last run. */
typedef struct para_node_stats_s {
    uint64_t items_in;        /**< items consumed (for sources: 0) */
    uint64_t items_out;       /**< items produced (for sinks: 0) */
    uint64_t batches;         /**< batches processed (for sources: produced) */
    uint64_t busy_ns;         /**< time spent in the node's function */
    uint64_t device_items;    /**< items of items_in run on the device */
    uint64_t device_launches; /**< kernel launches */
    uint64_t device_ns;       /**< device time of those launches */
    /** Bytes of items copied host to device and back by those launches:
     *  none for input batches already on the device (device_handovers)
     *  and none for outputs that only kernel nodes on the same device
     *  read (device-resident edges, PARA_RESIDENT). */
    uint64_t device_bytes_in, device_bytes_out;
    /** Input batches taken from a kernel node before it on the device,
     *  without a copy. */
    uint64_t device_handovers;
} para_node_stats_t;

/**
 * @brief Statistics of @p node for the last completed run of its graph.
 * @return 0, or PARA_EINVAL if an argument is NULL.
 */
PARA_API PARA_NODISCARD int para_node_stats(const para_node_t *node,
                                            para_node_stats_t *stats);

#ifdef __cplusplus
}
#endif

#endif /* PARA_GRAPH_H */
