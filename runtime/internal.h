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

#include "deque.h"
#include "topology.h"
#include "para.h"
#include "util.h"

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
    bool serial;              /* SERIAL or ORDERED */
    size_t max_batch_items;   /* sources: cap from downstream item sizes */

    /* Run state: serial nodes. The claim flag gives one worker at a time
     * the right to drain the inbox and touch pending/heap/next_*. */
    alignas(PARA_CACHELINE) _Atomic(para__task *) inbox;
    _Atomic unsigned claimed;
    para__task drain_task;
    para__task *pending_head, *pending_tail; /* claim-owned FIFO */
    para__task *heap_root;                   /* claim-owned, ORDERED */
    uint64_t next_seq;                       /* ORDERED: key expected next */
    uint32_t next_path;
    size_t collect_pos; /* COLLECT: claim-owned */

    /* Run state: sources. */
    alignas(PARA_CACHELINE) _Atomic uint64_t src_state;
    _Atomic uint64_t src_cursor; /* splittable: next item index */
    uint64_t src_seq;            /* callback: claim-owned */

    /* Statistics of the last run (relaxed counters, read after the run). */
    alignas(PARA_CACHELINE) _Atomic uint64_t st_items_in;
    _Atomic uint64_t st_items_out;
    _Atomic uint64_t st_batches;
    _Atomic uint64_t st_busy_ns;
};

#define PARA__ERRMSG_LEN 1024

struct para_graph {
    para_node_t **nodes;
    unsigned n_nodes, cap_nodes;
    _Atomic int running; /* 1 while a para_run() uses it */
    bool prepared;       /* derived data valid for the current edges */
    para_node_t **sources;
    unsigned n_sources;
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
para__batch *para__batch_grow(para__worker *w, para__batch *b, size_t bytes,
                              size_t used);
/* Drop one reader; frees the batch when none is left. */
void para__batch_release(para__worker *w, para__run *run, para__batch *b);
/* Free a batch now, whatever its count. */
void para__batch_free(para__worker *w, para__run *run, para__batch *b);
/* Free every batch cached by @p w. */
void para__batch_pool_drain(para__worker *w);

/* ---- emitter (flat-map output) ---------------------------------------- */

struct para_emitter {
    para__worker *worker;
    para__batch *batch;
    size_t item_size;
    bool failed; /* an allocation failed */
};

/* ---- workers and runs -------------------------------------------------- */

struct para__worker {
    alignas(PARA_CACHELINE) para__deque deque;
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
     * read by para_runtime_stats(). */
#define PARA__WORKER_COUNTER(name, doc) _Atomic uint64_t c_##name;
    PARA_STATS_MAP(PARA__WORKER_COUNTER)
#undef PARA__WORKER_COUNTER
};

static inline void para__counter_add(_Atomic uint64_t *c, uint64_t v)
{
    /* relaxed load + store: owner-only counter, so no lost update; readers
     * only need an untorn value (they read after the run). */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

struct para__run {
    para_graph_t *graph;
    para_runtime_t *rt;
    /* Units of work in flight; the run ends when it reaches zero. */
    alignas(PARA_CACHELINE) _Atomic int64_t in_flight;
    alignas(PARA_CACHELINE) _Atomic int64_t live_batches;
    _Atomic int64_t peak_batches;
    alignas(PARA_CACHELINE) _Atomic int status; /* first error, or 0 */
    _Atomic bool aborting;                      /* status != 0 */
    _Atomic bool done;
    /* Batch sizing: work done by non-source tasks and source items pulled
     * (relaxed counters; their ratio estimates the cost of an item). */
    alignas(PARA_CACHELINE) _Atomic uint64_t work_ns;
    _Atomic uint64_t src_items;
    int64_t max_batches;
    size_t forced_batch_items;
    uint64_t target_batch_ns;
    char errmsg[PARA__ERRMSG_LEN]; /* written by the status winner only */
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
    pthread_cond_t park_cond;  /* idle workers inside a run */
    uint64_t generation;       /* bumped per run */
    para__run *run;            /* current run (lock) */
    unsigned workers_in_run;   /* lock */
    bool shutdown;             /* lock */
    unsigned threads_started;

    _Atomic int busy;            /* a para_run() is in progress */
    _Atomic uint32_t sleepers;   /* workers parked or about to park */
    _Atomic uint64_t wake_epoch; /* bumped by every wake-up */

    uint64_t runs, last_run_ns, last_peak_batches;
    char errmsg[PARA__ERRMSG_LEN];
};

/* Start the worker threads; 0 or PARA_E*. */
int para__scheduler_start(para_runtime_t *rt);
/* Stop and join them. */
void para__scheduler_stop(para_runtime_t *rt);
/* Execute @p run on the workers and wait until it ends. */
void para__scheduler_execute(para_runtime_t *rt, para__run *run);

/* Options (options.c). */
int para__attr_validate_policy(const char *name, char *msg, size_t msg_len);

#endif /* PARA_INTERNAL_H */
