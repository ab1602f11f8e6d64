/*
 * para: the runtime (worker threads) and running graphs.
 *
 * A runtime owns one worker thread per core. Workers sleep while no graph
 * runs, so an idle runtime uses no CPU. para_run() hands a graph to the
 * workers and blocks until every item has passed through it. Runtimes are
 * independent: several may coexist in one process.
 */
#ifndef PARA_RUNTIME_H
#define PARA_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "para/export.h"
#include "para/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct para_runtime para_runtime_t;

/**
 * Runtime configuration. para_runtime_attr_init() fills the defaults and
 * applies the PARA_* environment variables; fields set after it win.
 */
typedef struct para_runtime_attr {
    size_t struct_size;         /**< stamped by para_runtime_attr_init() */
    unsigned workers;           /**< 0 = one per core (PARA_WORKERS) */
    const char *policy;         /**< "memaware" (default), "ws" or "dhondt"
                                     (PARA_POLICY; "help" lists them) */
    size_t batch_items;         /**< 0 = adaptive; N forces source batches of
                                     N items (PARA_BATCH) */
    uint32_t target_batch_us;   /**< adaptive batches aim at this much work,
                                     in microseconds; default 100
                                     (PARA_BATCH_US) */
    unsigned max_batches;       /**< batches alive at once before sources are
                                     held back; 0 = 8 per worker under "ws",
                                     no limit under the budgeted policies
                                     (PARA_MAX_BATCHES) */
    int verbose;                /**< log level 0..3 (PARA_VERBOSE) */
    const char *pin;            /**< "cores" (one worker per core, pinned),
                                     "pus" (per hardware thread), "none" (no
                                     pinning); default "cores" (PARA_PIN) */
    const char *device;         /**< device for kernel nodes: "auto" (the first
                                     GPU, else accelerator, else any OpenCL
                                     device; none is fine), "none", "cpu" (the
                                     built-in back-end that runs kernel nodes'
                                     CPU functions through the launch path),
                                     "P:D" (platform, device index) or part of
                                     a device or platform name; default "auto"
                                     (PARA_DEVICE) */
    bool device_fallback;       /**< true (default): when the device fails
                                     during a run, kernel nodes that have a
                                     CPU function finish on the CPU (logged);
                                     false: the run fails with PARA_EDEVICE
                                     (PARA_DEVICE_FALLBACK) */
    size_t mem_budget;          /**< bytes in flight under "memaware":
                                     batches, reorder buffers,
                                     device staging, and the bytes items own
                                     outside batches (item_bytes); 0 = 1/8 of
                                     the RAM, SIZE_MAX = no budget
                                     (PARA_MEM_BUDGET: 64M, 2G, off) */
    const char *trace;          /**< event trace: after each run, write it as
                                     Chrome trace-event JSON to this path;
                                     NULL or "" = off, the default (PARA_TRACE).
                                     Copied by para_runtime_create(). */
    size_t trace_events;        /**< events kept per worker (and per device
                                     lane) and run; later ones are dropped and
                                     counted; default 256K (PARA_TRACE_EVENTS) */
    const char *progress;       /**< progress line on stderr during runs longer
                                     than half a second: "auto" (when stderr is
                                     a terminal, the default), "on"/"1", or
                                     "off"/"0" (PARA_PROGRESS) */
    unsigned device_timeout_ms; /**< device watchdog: a launch that runs
                                   longer than this, and longer than 20
                                   times its expected time, loses the
                                   device for the run; 0 = no watchdog;
                                   default 10000 (PARA_DEVICE_TIMEOUT) */
} para_runtime_attr_t;

/**
 * @brief Fill @p attr with defaults and environment overrides.
 * @return 0 on success.
 * @return PARA_EINVAL if @p attr is NULL or a PARA_* variable does not parse
 *         (the defaults are kept for it and a warning is logged).
 * @note Any thread.
 */
PARA_API PARA_NODISCARD int para_runtime_attr_init(para_runtime_attr_t *attr);

/**
 * @brief Create a runtime and start its workers.
 * @param[out] out The runtime; destroy it with para_runtime_destroy().
 * @param[in] attr NULL for defaults; borrowed for the call.
 * @return 0 on success.
 * @return PARA_EINVAL if @p out is NULL or @p attr was not initialised by
 *         para_runtime_attr_init().
 * @return PARA_EPOLICY if the policy name is unknown (the message lists the
 *         known ones).
 * @return PARA_ENOMEM / PARA_EAGAIN if memory or threads ran out.
 * @note Any thread.
 */
PARA_API PARA_NODISCARD int
para_runtime_create(para_runtime_t **out, const para_runtime_attr_t *attr);

/**
 * @brief Stop the workers and free the runtime. NULL is a no-op.
 * @return 0 on success.
 * @return PARA_EBUSY if a para_run() on this runtime is in progress; nothing
 *         is freed then.
 * @note Not from inside a node function.
 */
PARA_API PARA_NODISCARD int para_runtime_destroy(para_runtime_t *rt);

/** @brief Number of worker threads. */
PARA_API unsigned para_runtime_workers(const para_runtime_t *rt);

/**
 * @brief Run @p graph to completion on @p rt's workers.
 *
 * Validates the graph first (see para_graph_validate()), then blocks until
 * every source is exhausted and every item has been consumed, or until a node
 * fails. On failure every batch in flight is released before returning.
 *
 * @return 0 when every item went through.
 * @return Any error of para_graph_validate(), with the message copied to the
 *         runtime.
 * @return PARA_ENODE if a node function returned non-zero; the message names
 *         the node and the value.
 * @return PARA_EOVERFLOW if a collect node ran out of room.
 * @return PARA_ENODEV if a kernel node without a CPU function has no device,
 *         or the configured device (not "auto") cannot be opened.
 * @return PARA_EKERNEL_BUILD if a kernel does not build or has no entry
 *         point of the given name; the message holds the node's name and
 *         the build log.
 * @return PARA_ESIZE if a kernel's parameter types do not fit its node
 *         (checked before the run: `in`/`out` element sizes against the
 *         node's item sizes, extra scalars against the values given); the
 *         message names the node, the parameter and both types.
 * @return PARA_EDEVICE if the device failed during the run; the message
 *         names the OpenCL call and its CL_* status.
 * @return PARA_ECANCELED if para_run_cancel() stopped the run.
 * @return PARA_EBUSY if @p rt is already running a graph, or @p graph is
 *         already running.
 * @return PARA_ENOMEM if memory ran out during the run.
 * @return PARA_EINVAL if an argument is NULL.
 * @note One run per runtime at a time. Not from inside a node function.
 */
PARA_API PARA_NODISCARD int para_run(para_runtime_t *rt, para_graph_t *graph);

/**
 * @brief Ask the run in progress on @p rt to stop early.
 *
 * The run ends through the same path as a failing node: no further node
 * function is called (those already running finish their current call),
 * every batch in flight is released, and para_run() returns PARA_ECANCELED
 * with the message "run canceled by para_run_cancel()". A run that had
 * already finished all its work when the request arrived returns its own
 * status. The request applies to the run in progress only: it never carries
 * over to a later para_run().
 *
 * @return 0 if a run was in progress (para_run() had claimed @p rt, possibly
 *         still validating the graph) and has been asked to stop.
 * @return PARA_EAGAIN if no run was in progress; nothing happens.
 * @return PARA_EINVAL if @p rt is NULL.
 * @note Any thread, including a node function running on @p rt (the run then
 *       ends after that function returns). Does not wait for the run to end.
 *       @p rt must stay alive for the call (not concurrent with
 *       para_runtime_destroy()).
 */
PARA_API PARA_NODISCARD int para_run_cancel(para_runtime_t *rt);

/**
 * @brief The index of the worker thread calling, in
 *        [0, para_runtime_workers()), or -1 from any other thread.
 *
 * For node functions that keep their own per-worker state (an array
 * indexed by it): a worker runs one task at a time, so the slot of the
 * calling worker is never touched concurrently. Node functions always run
 * on workers. See para/reduce.h for reductions built on the same idea.
 * @note Any thread.
 */
PARA_API int para_worker_index(void);

/**
 * @brief The input port the batch being processed came from, inside a node
 *        function: 0 for the node's first input, 1 for its second, ... in
 *        the order para_graph_connect() connected them (for PARA_FANOUT(),
 *        the order of the branches). -1 in sources, outside node calls, and
 *        in kernel nodes (their batches are gathered into launches).
 *
 * A node fed by several nodes (a merge) learns with it which one sent the
 * batch, e.g. an ORDERED sink fed by two branches of one source.
 * @note Any thread; the value belongs to the calling thread.
 */
PARA_API int para_input_port(void);

/** para_item_index() when the item has no sequence number. */
#define PARA_NO_INDEX UINT64_MAX

/**
 * @brief The sequence number, in its source's stream, of an input item,
 *        inside a node function: the number the source gave it (item k of
 *        a range or array source is k, the k-th item a callback source
 *        emits is k).
 * @param[in] item A pointer to one of the input items the function was
 *        given: @c in for a per-item function, @c in + k * in_size for
 *        item k of a batch function.
 * @return The number; in a kernel node's CPU function, the same number the
 *         kernel reads through its PARA_KARG_INDEX argument.
 * @return PARA_NO_INDEX outside a node call, in sources, for a pointer
 *         outside the input, or when the node's items are not numbered one
 *         by one (a filter or flat-map upstream drops or adds items).
 * @note Any thread; the answer belongs to the calling thread's node call.
 */
PARA_API uint64_t para_item_index(const void *item);

/**
 * @brief The detailed message of the runtime's last failure ("" if none).
 * @return A copy kept per calling thread: valid until this thread calls
 *         para_runtime_errmsg() again, and never changed by what other
 *         threads do with the runtime meanwhile. The message itself is the
 *         last failure's (para_run() clears it when a run starts).
 * @note Any thread, also while another thread runs a graph on @p rt.
 */
PARA_API const char *para_runtime_errmsg(const para_runtime_t *rt);

/* Runtime statistics, summed over workers. XX(field, description) */
#define PARA_STATS_MAP(XX)                                                     \
    XX(runs, "completed runs")                                                 \
    XX(tasks, "tasks executed (one node on one batch)")                        \
    XX(steals, "tasks taken from another worker")                              \
    XX(steal_attempts, "attempts to steal, successful or not")                 \
    XX(parks, "times a worker went to sleep for lack of work")                 \
    XX(source_batches, "batches pulled from sources")                          \
    XX(source_holds, "source pulls refused because too many batches lived")    \
    XX(batches_allocated, "batches allocated")                                 \
    XX(peak_batches, "most batches alive at once")                             \
    XX(run_ns, "wall time of the last run")                                    \
    XX(peak_bytes, "most bytes in flight at once (last run)")                  \
    XX(mem_budget, "the byte budget of the last run (0: none)")                \
    XX(source_hold_ns, "time sources were held back (last run)")               \
    XX(policy_decisions, "source admissions the policy decided (last run)")    \
    XX(device_launches, "kernel launches")                                     \
    XX(device_items, "items run by kernel launches")                           \
    XX(device_bytes, "bytes copied to and from the device")                    \
    XX(device_busy_ns, "time with at least one launch in flight")              \
    XX(busy_ns, "time workers spent running tasks")                            \
    XX(parked_ns, "time workers spent parked, waiting for work")

#define PARA_STATS_VERSION 3

typedef struct para_stats {
    size_t size;      /**< sizeof(para_stats_t) of the library */
    unsigned version; /**< PARA_STATS_VERSION */
#define PARA_STATS_FIELD(name, doc) uint64_t name;
    PARA_STATS_MAP(PARA_STATS_FIELD)
#undef PARA_STATS_FIELD
} para_stats_t;

/**
 * @brief Runtime counters, cumulative since creation except run_ns,
 *        peak_batches and peak_bytes (last run).
 * @return 0, or PARA_EINVAL if an argument is NULL.
 * @note Not while a run is in progress (the counters would be torn).
 */
PARA_API PARA_NODISCARD int para_runtime_stats(const para_runtime_t *rt,
                                               para_stats_t *stats);

/** Per-worker statistics of the last run (para_worker_stats()). */
typedef struct para_worker_stats_s {
    uint64_t tasks;          /**< tasks executed */
    uint64_t steals;         /**< tasks taken from another worker */
    uint64_t steal_attempts; /**< attempts to steal, successful or not */
    uint64_t parks;          /**< times the worker slept for lack of work */
    uint64_t source_batches; /**< batches pulled from sources */
    uint64_t busy_ns;        /**< time in tasks (node functions and their
                                  bookkeeping; source pulls excluded) */
    uint64_t parked_ns;      /**< time asleep, waiting for work */
    uint64_t idle_ns;        /**< run time minus busy time: looking for
                                  work, stealing, pulling sources, parked */
} para_worker_stats_t;

/**
 * @brief Statistics of worker @p worker (0 .. para_runtime_workers() - 1)
 *        during the last run.
 * @return 0 on success.
 * @return PARA_EINVAL if an argument is NULL or @p worker is out of range.
 * @note Not while a run is in progress.
 */
PARA_API PARA_NODISCARD int para_worker_stats(const para_runtime_t *rt,
                                              unsigned worker,
                                              para_worker_stats_t *stats);

/* Per-device statistics. XX(field, description) */
#define PARA_DEVICE_STATS_MAP(XX)                                              \
    XX(launches, "kernel launches")                                            \
    XX(items, "items processed")                                               \
    XX(bytes_in, "bytes copied host to device")                                \
    XX(bytes_out, "bytes copied device to host")                               \
    XX(busy_ns, "time with at least one launch in flight")

/** Per-device statistics of the last run (para_device_stats()). */
typedef struct para_device_stats_s {
    char name[64]; /**< the device's name */
#define PARA_DEVICE_STATS_FIELD(name, doc) uint64_t name;
    PARA_DEVICE_STATS_MAP(PARA_DEVICE_STATS_FIELD)
#undef PARA_DEVICE_STATS_FIELD
} para_device_stats_t;

/** @brief Number of devices that report statistics (0 without devices). */
PARA_API unsigned para_runtime_device_count(const para_runtime_t *rt);

/**
 * @brief Statistics of device @p device (0 .. para_runtime_device_count()
 *        - 1) during the last run.
 * @return 0 on success.
 * @return PARA_EINVAL if an argument is NULL.
 * @return PARA_ENODEV if @p device is out of range.
 * @note Not while a run is in progress.
 */
PARA_API PARA_NODISCARD int para_device_stats(const para_runtime_t *rt,
                                              unsigned device,
                                              para_device_stats_t *stats);

/**
 * @brief Open the device that kernel nodes run on, if it is not open yet
 *        (otherwise the first run with a kernel node opens it), and return
 *        its name.
 * @return Its name (owned by the runtime), or NULL if there is none or a run
 *         is in progress; then para_runtime_errmsg() says why.
 * @note Any thread; not from inside a node function.
 */
PARA_API const char *para_runtime_open_device(para_runtime_t *rt);
/** Formats of para_stats_fprint(). */
enum para_stats_format {
    PARA_STATS_TABLE = 0, /**< aligned columns for people */
    PARA_STATS_JSON = 1,  /**< one JSON object, for tools */
};

/**
 * @brief Print the statistics of the last run: runtime counters, one row per
 *        worker, per node of @p graph (if not NULL: items in and out,
 *        batches, mean batch size, busy time, share of the workers' time)
 *        and per device.
 *
 * The JSON object has the keys "runtime" (every PARA_STATS_MAP field plus
 * "workers" and "policy"), "workers" (array of para_worker_stats_t objects
 * with "id"), "nodes" (array with "index", "name", "kind", "items_in",
 * "items_out", "batches", "mean_batch", "busy_ns", "share") and "devices"
 * (array of para_device_stats_t objects plus "items_per_launch").
 *
 * @param[in] out Where to print, e.g. stdout or stderr.
 * @param[in] format A value of enum para_stats_format.
 * @return 0 on success.
 * @return PARA_EINVAL if @p out or @p rt is NULL or @p format is unknown.
 * @note Not while a run of @p rt or @p graph is in progress.
 */
PARA_API PARA_NODISCARD int para_stats_fprint(FILE *out,
                                              const para_runtime_t *rt,
                                              const para_graph_t *graph,
                                              int format);

/**
 * @brief Write the event trace of the last run as Chrome trace-event JSON
 *        (Perfetto, chrome://tracing; `para-trace` draws it as SVG).
 *
 * With PARA_TRACE set the runtime already writes this file after each run;
 * this call writes the same content to another path, e.g. one per run.
 *
 * @return 0 on success.
 * @return PARA_EINVAL if an argument is NULL or tracing is off (the runtime
 *         was created without a trace path).
 * @return PARA_ENOMEM if memory ran out.
 * @return A negative errno value if the file could not be written.
 * @note Not while a run is in progress.
 */
PARA_API PARA_NODISCARD int para_trace_write(const para_runtime_t *rt,
                                             const char *path);

/** Log sink: level 0 = error, 1 = warning, 2 = info, 3 = debug. */
typedef void (*para_log_fn)(int level, const char *msg, void *arg);

/**
 * @brief Redirect the library's log (default: stderr). NULL restores it.
 * @note Call before creating runtimes; not thread-safe against logging.
 */
PARA_API void para_set_log_fn(para_log_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* PARA_RUNTIME_H */
