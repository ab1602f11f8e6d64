/*
 * Internal data structures of the runtime: nodes, batches, tasks, workers,
 * runs. Public API lives in include/; nothing here is visible to users.
 *
 * Vocabulary
 *   batch  A contiguous array of fixed-size items plus the source sequence
 *          range [seq_begin, seq_end) they came from and a path index (see
 *          graph.c). Batches are the unit of scheduling and of memory.
 *   task   "Run node N on batch B", arriving through input port P. A batch
 *          carries one embedded task per successor of the node that produced
 *          it, so delivering a batch never allocates.
 *   unit   One count in run->in_flight: every task not yet finished, and
 *          every source not yet exhausted, holds one. The run ends exactly
 *          when the count reaches zero.
 */
#ifndef PARA_INTERNAL_H
#define PARA_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hwloc.h>

#include "budget.h"
#include "deque.h"
#include "eventcount.h"
#include "mpsc_stack.h"
#include "topology.h"
#include "trace.h"
#include "para.h"
#include "util.h"

struct para__policy;

/* ---- nodes ------------------------------------------------------------- */

typedef enum para__kind {
    PARA__KIND_SOURCE_FN, /* user callback, serial */
    PARA__KIND_RANGE,     /* built-in, splittable */
    PARA__KIND_ARRAY,     /* built-in, splittable */
    PARA__KIND_MAP,
    PARA__KIND_MAP_BATCH,
    PARA__KIND_FILTER,
    PARA__KIND_FLAT_MAP,
    PARA__KIND_FLAT_MAP_BATCH,
    PARA__KIND_KERNEL, /* device only: no CPU function */
    PARA__KIND_SINK,
    PARA__KIND_SINK_BATCH,
    PARA__KIND_COLLECT,
} para__kind;

typedef struct para__batch para__batch;

typedef struct para__task {
    struct para__task *next;  /* inbox / pending list / heap sibling link */
    struct para__task *child; /* ORDERED reorder heap (pairing heap) */
    para__batch *batch;       /* NULL: the node's drain task */
    para_node_t *node;        /* where it runs */
    uint32_t in_port;         /* index into node->preds */
    uint32_t path;            /* path index the output will carry */
} para__task;

/* A stack of tasks any thread pushes and one taker empties (mpsc_stack.h). */
PARA__MPSC_STACK_DEFINE(para__task_stack, para__task, next)

/* Where a kernel node's batches run in the current run (device_node.c). */
typedef enum para__placement {
    PARA__PLACE_CPU = 0, /* every node without a kernel, or no device */
    PARA__PLACE_DEVICE,  /* kernel only */
    PARA__PLACE_MIXED,   /* kernel and CPU function: split by throughput */
} para__placement;

/* A kernel node's device implementation, copied from the desc. */
typedef struct para__kernel_copy {
    char *source, *entry, *options;
    size_t n_args;
    struct para__kernel_arg_copy {
        void *value;
        size_t size;
    } * args;
} para__kernel_copy;

/* Source state word: bit 0 = exhausted, bits 1.. = workers pulling. */
#define PARA__SRC_EXHAUSTED 1u
#define PARA__SRC_PULLER 2u

struct para_node {
    para_graph_t *graph;
    char *name;
    unsigned index;
    para__kind kind;
    unsigned flags;
    int priority;
    size_t in_size, out_size;
    size_t item_bytes; /* owned outside the batch, per output item */
    /* Cross-process placement (para_mpi_place(), runtime/mpi): the rank
     * that runs the node, or -1 for every rank; 0 by default. Read only
     * by runtime/mpi; the single-process runtime ignores it. */
    int mpi_rank;
    void *ctx;
    union {
        para_source_fn source;
        para_map_fn map;
        para_map_batch_fn map_batch;
        para_filter_fn filter;
        para_flat_map_fn flat_map;
        para_flat_map_batch_fn flat_map_batch;
        para_sink_fn sink;
        para_sink_batch_fn sink_batch;
    } fn;
    /* Built-in sources and collect. */
    uint64_t range_begin, range_end;
    const void *array;
    size_t array_count;
    void *collect_array;
    size_t collect_capacity;
    size_t *collect_count;

    /* Edges, in connection order. */
    para_node_t **succs;
    unsigned n_succs, cap_succs;
    para_node_t **preds;
    unsigned n_preds, cap_preds;

    /* Derived by para__graph_prepare(). */
    uint32_t *succ_port;      /* our port index at succs[i] */
    unsigned *succ_order;     /* succ indices by ascending priority */
    uint32_t *in_path_offset; /* per input port */
    uint32_t path_count;      /* P(node): paths from its source */
    bool forward_empty;       /* an ORDERED node is downstream */
    unsigned depth_to_sink;   /* longest path to a sink, in edges */
    bool serial;              /* SERIAL or ORDERED */
    size_t max_batch_items;   /* sources: cap from downstream item sizes */
    unsigned source_slot;     /* sources: index in graph->sources */
    /* FLAT_MAP*: most output items per input item seen, x16 (relaxed);
     * the memory policy's footprint estimate scales by it. */
    _Atomic uint32_t expand_x16;

    /* Run state: serial nodes. The claim flag gives one worker at a time
     * the right to drain the inbox and touch pending/heap/next_*. */
    alignas(PARA_CACHELINE) para__task_stack inbox;
    _Atomic unsigned claimed;
    para__task drain_task;
    para__task *pending_head, *pending_tail; /* claim-owned FIFO */
    para__task *heap_root;                   /* claim-owned, ORDERED */
    uint64_t next_seq;                       /* ORDERED: key expected next */
    uint32_t next_path;
    size_t collect_pos; /* COLLECT: claim-owned */

    /* Kernel nodes: the device implementation (NULL for other nodes) and
     * its run state (device_node.c). placement is written before the run
     * starts and read by workers for every task. */
    para__kernel_copy *kernel;
    para__placement placement;
    /* The CPU's cost estimates (picoseconds per item; 0 = not measured
     * yet; the fastest seen this run) for MIXED nodes; relaxed, read by
     * workers deciding where a batch runs. The devices' own estimates are
     * per device, in device_node.c. */
    _Atomic uint64_t cpu_ps_per_item, cpu_best_ps;

    /* Run state: sources. */
    alignas(PARA_CACHELINE) _Atomic uint64_t src_state;
    _Atomic uint64_t src_cursor; /* splittable: next item index */
    uint64_t src_seq;            /* callback: claim-owned */

    /* Statistics of the last run (relaxed counters, read after the run). */
    alignas(PARA_CACHELINE) _Atomic uint64_t st_items_in;
    _Atomic uint64_t st_items_out;
    _Atomic uint64_t st_batches;
    _Atomic uint64_t st_busy_ns;
    _Atomic uint64_t st_device_items, st_device_launches, st_device_ns;
};

#define PARA__ERRMSG_LEN 1024

struct para_graph {
    para_node_t **nodes;
    unsigned n_nodes, cap_nodes;
    _Atomic int running; /* 1 while a para_run() uses it */
    bool prepared;       /* derived data valid for the current edges */
    para_node_t **sources;
    unsigned n_sources;
    para_node_t **topo; /* every node, in topological order */
    char errmsg[PARA__ERRMSG_LEN];
};

/* Validate and compute derived data. Returns 0 or PARA_E*; the message goes
 * to graph->errmsg. */
int para__graph_prepare(para_graph_t *g);
/* Reset per-run state of every node. */
void para__graph_reset_run_state(para_graph_t *g);
/* Set graph->errmsg (printf-style); returns err for tail calls. */
int para__graph_fail(para_graph_t *g, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline bool para__is_source(const para_node_t *n)
{
    return n->kind <= PARA__KIND_ARRAY;
}
/* "source", "map", "kernel", ... for statistics and traces. */
const char *para__node_kind_name(const para_node_t *n);

static inline bool para__has_cpu_fn(const para_node_t *n)
{
    return n->kind != PARA__KIND_KERNEL;
}
static inline bool para__is_sink(const para_node_t *n)
{
    return n->kind >= PARA__KIND_SINK;
}

/* ---- batches ----------------------------------------------------------- */

struct para__batch {
    _Atomic uint32_t refs; /* readers left; freed at zero */
    uint32_t n_tasks;      /* embedded tasks (successors of the producer) */
    uint32_t path;         /* path index at the producer */
    uint32_t size_class;   /* pool class, or PARA__BATCH_NO_CLASS */
    size_t count;          /* items */
    size_t capacity;       /* bytes available at data */
    uint64_t seq_begin, seq_end;
    unsigned char *data;
    size_t alloc_bytes;     /* the allocation, for run->bytes */
    size_t extra_bytes;     /* owned by the items outside the batch */
    para__family *family;   /* NULL unless the policy is budgeted */
    para__batch *pool_next; /* worker pool free list */
    para__task tasks[];     /* n_tasks, followed by the data */
};

#define PARA__BATCH_NO_CLASS UINT32_MAX
#define PARA__BATCH_CLASSES 12    /* 1 KiB .. 2 MiB total size */
#define PARA__BATCH_POOL_DEPTH 16 /* cached batches per class per worker */

typedef struct para__worker para__worker;
typedef struct para__run para__run;

/* Allocate a batch with @p n_tasks embedded tasks and room for @p bytes of
 * data; counts it live in @p run. @p w may be NULL (no pool). */
para__batch *para__batch_alloc(para__worker *w, para__run *run,
                               uint32_t n_tasks, size_t bytes);
/* Grow @p b to hold at least @p bytes, keeping its contents. Returns the
 * (possibly new) batch or NULL (then @p b is untouched). */
para__batch *para__batch_grow(para__worker *w, para__run *run, para__batch *b,
                              size_t bytes, size_t used);
/* The size of the allocation para__batch_alloc() makes for these. */
size_t para__batch_alloc_size(uint32_t n_tasks, size_t bytes);
/* @p b (new) joins the family of @p from. */
static inline void para__batch_join_family(para__batch *b,
                                           const para__batch *from)
{
    b->family = from->family;
    if (b->family != NULL)
        /* relaxed: the caller holds a reference through `from`, as with a
         * shared pointer copy; the release happens at the unref. */
        atomic_fetch_add_explicit(&b->family->refs, 1, memory_order_relaxed);
}
/* Count @p bytes more (or fewer) in flight in @p run. */
void para__bytes_add(para__run *run, int64_t bytes);
/* Drop one reader; frees the batch when none is left. */
void para__batch_release(para__worker *w, para__run *run, para__batch *b);
/* Free a batch now, whatever its count. */
void para__batch_free(para__worker *w, para__run *run, para__batch *b);
/* Free every batch cached by @p w. */
void para__batch_pool_drain(para__worker *w);

/* ---- emitter (flat-map output) ---------------------------------------- */

struct para_emitter {
    para__worker *worker;
    para__run *run;
    para__batch *batch;
    size_t item_size;
    bool failed; /* an allocation failed */
};

/* ---- workers and runs -------------------------------------------------- */

/* Page-aligned, so that each worker's struct (its deque's indices, which
 * its owner touches on every push and pop, and its counters) can live on
 * the worker's own NUMA node (para__topology_bind_memory()). */
#define PARA__WORKER_ALIGN 4096

struct para__worker {
    alignas(PARA__WORKER_ALIGN) para__deque deque;
    para_runtime_t *rt;
    unsigned id;
    pthread_t thread;
    uint64_t rng;
    /* Batch sizing: this worker's source batch size while it ramps up. */
    size_t ramp_items;
    unsigned next_source; /* round-robin start */
    para__batch *pool[PARA__BATCH_CLASSES];
    unsigned pool_len[PARA__BATCH_CLASSES];
    /* Counters: written by the owner only (relaxed load + store), summed on
     * read by para_runtime_stats(). base_* hold their values at the start of
     * the last run (written by para_run() between runs), for
     * para_worker_stats(). */
#define PARA__WORKER_COUNTER(name, doc) _Atomic uint64_t c_##name;
    PARA_STATS_MAP(PARA__WORKER_COUNTER)
#undef PARA__WORKER_COUNTER
#define PARA__WORKER_BASE(name, doc) uint64_t base_##name;
    PARA_STATS_MAP(PARA__WORKER_BASE)
#undef PARA__WORKER_BASE
    para__trace_lane *trace; /* NULL unless tracing (PARA_TRACE) */
};

static inline void para__counter_add(_Atomic uint64_t *c, uint64_t v)
{
    /* relaxed load + store: owner-only counter, so no lost update; readers
     * only need an untorn value (they read after the run). */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

/* A worker slept from @p t0 until now: count it, and trace it. */
static inline void para__worker_parked(para__worker *w, uint64_t t0)
{
    uint64_t t1 = para__now_ns();
    para__counter_add(&w->c_parked_ns, t1 - t0);
    para__trace_park(w->trace, t0, t1);
}

struct para__run {
    /* Read-mostly: written before the run starts, read by every task; on
     * lines of their own, apart from the counters below that tasks and
     * admissions write. */
    alignas(PARA_CACHELINE) para_graph_t *graph;
    para_runtime_t *rt;
    const struct para__policy *policy;
    void *policy_state;  /* the policy's own (policy.h) */
    int64_t max_batches; /* sources wait while this many live; 0: no limit */
    size_t forced_batch_items;
    uint64_t target_batch_ns;
    /* Units of work in flight; the run ends when it reaches zero. */
    alignas(PARA_CACHELINE) _Atomic int64_t in_flight;
    alignas(PARA_CACHELINE) _Atomic int64_t live_batches;
    _Atomic int64_t peak_batches;
    /* Bytes in flight (real: allocations and item_bytes) and their peak.
     * Relaxed. */
    alignas(PARA_CACHELINE) _Atomic int64_t bytes;
    _Atomic int64_t peak_bytes;
    /* The byte budget of budgeted policies (budget.h; aligned itself). */
    para__budget budget;
    /* Time sources were held back (statistics, relaxed). */
    alignas(PARA_CACHELINE) _Atomic uint64_t held_since, hold_ns;
    alignas(PARA_CACHELINE) _Atomic int status; /* first error, or 0 */
    _Atomic bool aborting;                      /* status != 0 */
    _Atomic bool done;
    /* Batch sizing: work done by non-source tasks and source items pulled
     * (relaxed counters; their ratio estimates the cost of an item). */
    alignas(PARA_CACHELINE) _Atomic uint64_t work_ns;
    _Atomic uint64_t src_items;
    char errmsg[PARA__ERRMSG_LEN]; /* written by the status winner only */
};

typedef struct para__devrt para__devrt; /* device_node.c */
/* Per-device counters (stats.c), the device-side analogue of the workers'
 * counters. Written by the device's host thread only (para__counter_add),
 * summed on read; base_* are their values when the last run started. */
#define PARA__MAX_DEVICES 16
typedef struct para__device_counters {
#define PARA__DEVICE_COUNTER(name, doc) _Atomic uint64_t c_##name;
    PARA_DEVICE_STATS_MAP(PARA__DEVICE_COUNTER)
#undef PARA__DEVICE_COUNTER
#define PARA__DEVICE_BASE(name, doc) uint64_t base_##name;
    PARA_DEVICE_STATS_MAP(PARA__DEVICE_BASE)
#undef PARA__DEVICE_BASE
    char name[64];
} para__device_counters;

/* Progress line state (progress.c); touched only by the thread in
 * para_run(). */
typedef struct para__progress {
    bool enabled;   /* PARA_PROGRESS resolved: on, or auto and a tty */
    bool tty;       /* stderr is a terminal: rewrite one line */
    bool printed;   /* a line is on the screen */
    uint64_t t0;    /* run start */
    uint64_t last;  /* last update */
    uint64_t items; /* sink items at the last update */
} para__progress;

/* Hook for running one graph across processes (runtime/mpi). When
 * rt->remote is set (only while para_mpi_run() drives a run on rt; set and
 * cleared between runs, so workers see it through the run's start under
 * rt->lock), the scheduler calls:
 *   run_begin  in para_run(), after the run is set up and before any worker
 *              sees it: may adjust run->in_flight and source states;
 *   route      in para__deliver() for each successor task, on the worker
 *              (or other thread) delivering it: returns true if it took the
 *              task (with its batch reference and its unit) to run it on
 *              another process, false to run it here as usual. */
typedef struct para__remote para__remote;
struct para__remote {
    void (*run_begin)(para__remote *self, para__run *run);
    bool (*route)(para__remote *self, para__worker *w, para__run *run,
                  para__task *t);
};

struct para_runtime {
    unsigned n_workers;
    para__worker *workers; /* aligned array */
    /* para_run_cancel() was called during the current run. Set and cleared
     * under `lock`; read by workers once per loop (read-mostly line). */
    _Atomic bool cancel;
    para_runtime_attr_t attr;
    char policy[32];
    hwloc_topology_t topology;
    para__topology_plan plan; /* placement and victim order */

    pthread_mutex_t lock;      /* guards the fields below, and parking */
    pthread_cond_t start_cond; /* workers wait for a run or shutdown */
    pthread_cond_t done_cond;  /* para_run waits for workers to leave */
    uint64_t generation;       /* bumped per run */
    para__run *run;            /* current run (lock) */
    unsigned workers_in_run;   /* lock */
    bool shutdown;             /* lock */
    unsigned threads_started;

    _Atomic int busy;      /* a para_run() is in progress */
    para__eventcount park; /* idle workers inside a run sleep here */

    uint64_t runs, last_run_ns, last_peak_batches;
    uint64_t last_peak_bytes, last_budget, last_hold_ns, last_decisions;
    const struct para__policy *policy_ops; /* policy.h */
    char errmsg[PARA__ERRMSG_LEN];

    /* The devices of kernel nodes, opened at the first run that has one
     * (device_node.c). Tasks finished off a worker thread (the device
     * host thread) enter the workers' world through `inject`, a Treiber
     * stack that a worker empties with one exchange. */
    char device_selector[512]; /* a device list */
    int device_state;          /* 0 not tried, 1 open, -1 none (see why) */
    int device_err;            /* why an explicitly chosen device is missing */
    char device_why[256];
    bool device_cpu_logged;
    para__devrt *device;     /* the open devices, NULL if none */
    unsigned helper_threads; /* host threads (one per device) */
    alignas(PARA_CACHELINE) para__task_stack inject;
    para__trace *trace; /* NULL unless tracing (PARA_TRACE) */
    para__device_counters devices[PARA__MAX_DEVICES];
    unsigned n_devices; /* rt->lock */
    para__progress progress;
    para__remote *remote; /* NULL unless para_mpi_run() (see above) */
};

/* Start the worker threads; 0 or PARA_E*. */
int para__scheduler_start(para_runtime_t *rt);
/* Stop and join them. */
void para__scheduler_stop(para_runtime_t *rt);
/* Execute @p run on the workers and wait until it ends. */
void para__scheduler_execute(para_runtime_t *rt, para__run *run);

/* Scheduler services for threads that are not workers (w == NULL) and
 * for device_node.c. para__units_add() touches the run only before the
 * count can reach zero, so a thread outside the run's workers may give
 * back the last unit (runtime/mpi), after which it must not touch the run. */
void para__units_add(para__run *run, int64_t delta);
void para__deliver(para__worker *w, para__run *run, para_node_t *n,
                   para__batch *out, int held);
void para__fail_run(para__worker *w, para__run *run, int err, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));
bool para__aborting(const para__run *run);
/* Hand task @p t (holding its unit) to the workers from any thread. */
void para__inject_task(para__run *run, para__task *t);
/* Hand task @p t (holding its unit) to its node from any thread, as
 * para__deliver() does: through the inbox of a serial or ORDERED node (so
 * its order holds), else to the workers. @p w may be NULL (then the task is
 * injected). Used by runtime/mpi for batches received from other ranks. */
void para__submit_task(para__worker *w, para__run *run, para__task *t);

/* Devices (device_node.c). */
/* Before a run: open the device if the graph has kernel nodes, create
 * their kernels and decide their placement. 0 or PARA_E* (message in
 * msg). */
int para__device_prepare_run(para_runtime_t *rt, para_graph_t *g, char *msg,
                             size_t msg_len);
/* After a run: release the kernels of the run. */
void para__device_finish_run(para_runtime_t *rt, para_graph_t *g);
/* Open the device now if not tried yet; 0 or PARA_E* (msg). */
int para__device_ensure(para_runtime_t *rt, char *msg, size_t msg_len);
/* Worker side: take task @p t of a kernel node if it should run on the
 * device (true), or leave it to the caller's CPU (false). */
bool para__device_route(para__worker *w, para__run *run, para__task *t);
/* Worker side: a MIXED node ran @p items on the CPU in @p ns. */
void para__device_note_cpu(para_node_t *n, size_t items, uint64_t ns);
/* Wake the device host thread (run end, abort). */
void para__device_wake(para_runtime_t *rt);
/* Stop the host thread and close the device (runtime destroy). */
void para__device_shutdown(para_runtime_t *rt);
/* Add the device counters to @p st. */
void para__device_stats(const para_runtime_t *rt, para_stats_t *st);
/* Free a node's kernel copy. */
void para__kernel_copy_free(para__kernel_copy *k);

/* Wake up to @p n parked workers (none sleeping: one atomic RMW). */
void para__notify(para_runtime_t *rt, uint32_t n);
/* Statistics (stats.c): remember the counters at the start of a run, for
 * para_worker_stats() and para_device_stats(). Between runs only. */
void para__stats_run_begin(para_runtime_t *rt);
/* Register a device's counters under @p name; NULL when PARA__MAX_DEVICES
 * are registered. Any thread; the device's host thread then owns the
 * counters (para__counter_add(&d->c_launches, 1), ...). */
para__device_counters *para__stats_device_add(para_runtime_t *rt,
                                              const char *name);

/* Options (options.c): PARA_* variables that do not parse, and attr fields
 * out of range, as PARA_EINVAL with the variable (or field) and its
 * accepted values named in @p msg. */
int para__options_check_env(char *msg, size_t msg_len);
int para__options_check_attr(const para_runtime_attr_t *a, char *msg,
                             size_t msg_len);

/* Progress line (progress.c). */
bool para__progress_mode_valid(const char *mode);
void para__progress_init(para_runtime_t *rt, const char *mode);
void para__progress_begin(para_runtime_t *rt, uint64_t t0);
/* Wait on rt->done_cond (rt->lock held), printing progress while waiting
 * when it is enabled; may drop and retake rt->lock. */
void para__progress_wait(para_runtime_t *rt);
/* Finish the line (with the run's average rate) if one was printed. */
void para__progress_end(para_runtime_t *rt, const para__run *run);

#include "policy.h"

/* Could a source be admitted now? (the policy's hint, policy.h) */
static inline bool para__sources_open(const para__run *run)
{
    return run->policy->sources_open(run->policy_state, run);
}

#endif /* PARA_INTERNAL_H */
