/*
 * The graph (graph layer): nodes, edges, and what para__graph_prepare()
 * derives from them. The description is immutable during a run; the
 * per-run state of a node (its serial claim and inbox, its source cursor,
 * its device queue, its statistics) sits in the node, reset by
 * para__graph_reset_run_state() before each run and owned by the run
 * while it lasts.
 *
 * Tests: tests/runtime/test_graph.c, test_pipeline.c, test_seed_graph.c.
 */
#ifndef PARA_RT_GRAPH_H
#define PARA_RT_GRAPH_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "para.h"
#include "runctx.h"
#include "util.h"

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
    PARA__KIND_REDUCE, /* reduce.c */
    PARA__KIND_COLLECT,
} para__kind;

/* Where a kernel node's batches run in the current run (decided by
 * device_node.c before the run). */
typedef enum para__placement {
    PARA__PLACE_CPU = 0, /* every node without a kernel, or no device */
    PARA__PLACE_DEVICE,  /* kernel only */
    PARA__PLACE_MIXED,   /* kernel and CPU function: split by throughput */
} para__placement;

/* A kernel node's device implementation, copied from the desc. */
/* One worker's statistics of one node: written by that worker only
 * (para__counter_add: relaxed load + store, no locked instruction), read by
 * anyone (relaxed) and summed over the workers on read
 * (para__node_counts()). A cache line each, so that no two workers write
 * the same line for a task. */
typedef struct para__node_wstat {
    alignas(PARA_CACHELINE) _Atomic uint64_t items_in;
    _Atomic uint64_t items_out;
    _Atomic uint64_t batches;
    _Atomic uint64_t busy_ns;
    /* Serial tails (fuse.h): batches this worker ran inline, and batches
     * it held back while the tail was busy (scheduler.c, tail_hold()). */
    _Atomic uint64_t inline_batches;
    _Atomic uint64_t held_batches;
} para__node_wstat;

/* A node's statistics so far, summed (para__node_counts()). */
typedef struct para__node_counts {
    uint64_t items_in, items_out, batches, busy_ns;
} para__node_counts;

typedef struct para__kernel_copy {
    char *source, *entry, *options;
    size_t n_args;
    bool wants_index; /* a PARA_KARG_INDEX argument */
    struct para__kernel_arg_copy {
        void *value; /* owned for scalars; borrowed for buffers; NULL local */
        size_t size;
        unsigned kind; /* enum para_kernel_arg_kind */
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
    para_items_release_fn release;  /* output items own memory (owned.c) */
    para_item_bytes_fn owned_bytes; /* their bytes, per item */
    bool owned_out;                 /* derived: its output batches own items */
    /* Largest owned bytes per output item seen this run (relaxed: an
     * estimate for footprints, like expand_x16). */
    _Atomic uint64_t owned_max;
    /* Cross-process placement (para_mpi_place(), runtime/mpi): the rank
     * that runs the node, or -1 for every rank; 0 by default. Read only
     * by runtime/mpi; the single-process runtime ignores it. */
    int mpi_rank;
    /* Its owned output items across ranks (para_mpi_node_codec(); the
     * signatures of para_mpi_pack_fn and para_mpi_unpack_fn). NULL: they
     * cannot cross. */
    size_t (*mpi_pack)(void *ctx, const void *item, void *buf, size_t cap);
    int (*mpi_unpack)(void *ctx, const void *buf, size_t len, void *item);
    /* This rank's traffic into the node over each input port in its last
     * run across ranks (4 per port: batches and bytes sent, batches and
     * bytes received), kept for para_mpi_edge_stats(); freed with it. */
    uint64_t *mpi_traffic;
    unsigned mpi_traffic_ports;
    void *ctx;
    union {
        para_source_fn source;
        para_map_fn map;
        para_map_batch_fn map_batch;
        para_filter_fn filter;
        para_filter_batch_fn filter_batch; /* filter_batched */
        para_flat_map_fn flat_map;
        para_flat_map_batch_fn flat_map_batch;
        para_sink_fn sink;
        para_sink_batch_fn sink_batch;
    } fn;
    bool filter_batched; /* a FILTER with fn.filter_batch */
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
    /* Its input items are numbered one by one (item k of a batch is
     * seq_begin + k): only sources and maps upstream (para_item_index()). */
    bool numbered;
    unsigned depth_to_sink; /* longest path to a sink, in edges */
    bool serial;            /* SERIAL or ORDERED */
    /* Batch hints (para_node_desc_t), and over this node and everything
     * downstream of it: the largest min_batch, the smallest batch_us (in
     * ns; 0 none), and the widest item (bytes), which bound a source's
     * batches (scheduler.c, source_batch_items()). */
    size_t min_batch;
    uint64_t batch_ns;
    size_t down_min_batch;
    uint64_t down_batch_ns;
    size_t widest_item;
    /* Learned cost of one input item, in 1/1024 ns (scheduler.c,
     * learn_cost()); kept across runs. relaxed: an estimate. */
    _Atomic uint64_t cost_x1024;
    unsigned source_slot; /* sources: index in graph->sources */
    /* Fusion (fuse.h), set by para__fuse_plan() before each run: the next
     * stage of this node's chain (NULL: the chain ends here); whether it
     * runs inside its predecessor's tasks; for a chain's head, its stages
     * and tile (items); for a range or array source, whether its batches
     * are left unmaterialised for the heads it feeds; the serial node this
     * node's tasks may run inline after it (fuse.h: a serial tail);
     * whether its successors are all chain heads run together by one task
     * per output batch (fuse.h: fused fan-out). */
    para_node_t *fuse_next;
    para_node_t *fuse_tail;
    bool fuse_inner;
    bool src_fused;
    bool fuse_fan;
    unsigned fuse_stages;
    size_t fuse_tile;
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
    _Atomic uint64_t src_cursor;  /* splittable: next item index */
    uint64_t src_seq;             /* callback: claim-owned */
    para_source_open_fn src_open; /* callback: NULL = runs once per graph */
    /* A callback source that several workers may pull at once this run
     * (records.c sets it from its open hook, before the run; NULL: the
     * source is serial). It fills up to cap items and gives the batch's
     * ordering key range [*seq_begin, *seq_end): keys of consecutive
     * batches in source order must meet, starting at 0. No item and
     * *done false means "nothing to hand out right now" (another puller
     * holds the rest); *done true means exhausted. 0 or an error code. */
    int (*src_split)(void *ctx, void *out, size_t cap, size_t *n,
                     uint64_t *seq_begin, uint64_t *seq_end, bool *done);
    uint64_t src_runs;           /* runs started (thread in para_run()) */
    void (*ctx_free)(void *ctx); /* built on the API (records.c): frees
                                    ctx with the graph */
    int (*run_begin)(para_node_t *n, unsigned workers); /* reduce.c */
    void (*run_end)(para_node_t *n, int status);

    /* Statistics of the last run. Workers count in their own slot of
     * wst (para__graph_stats_begin() sizes it for the run's workers); other
     * threads (the device host thread) add to the st_* atomics (relaxed
     * RMW). Readers sum both: para__node_counts(). */
    para__node_wstat *wst;
    unsigned n_wst;
    alignas(PARA_CACHELINE) _Atomic uint64_t st_items_in;
    _Atomic uint64_t st_items_out;
    _Atomic uint64_t st_batches;
    _Atomic uint64_t st_busy_ns;
    /* Time the node spent on other processes during this run, as far as
     * runtime/mpi has heard (relaxed; written by its communication
     * thread): source batch sizing counts it with the local cost. */
    _Atomic uint64_t remote_busy_ns;
    _Atomic uint64_t st_device_items, st_device_launches, st_device_ns;
    _Atomic uint64_t st_device_bytes_in, st_device_bytes_out;
    _Atomic uint64_t st_device_handovers;
};

struct para_graph {
    para_node_t **nodes;
    unsigned n_nodes, cap_nodes;
    _Atomic int running; /* 1 while a para_run() uses it */
    bool prepared;       /* derived data valid for the current edges */
    para_node_t **sources;
    unsigned n_sources;
    para_node_t **topo;  /* every node, in topological order */
    para__errmsg errmsg; /* errmsg.h */
    /* The batch size the last successful run of this graph learned
     * (scheduler.c: learned_items()) on runtime learned_on, where the next
     * run's batches start from; 0 when none, or since the edges changed.
     * Plain fields: para_run()'s thread writes them under the runtime's
     * lock once every worker has left the run, and the next run's workers
     * read them after joining it under that lock (a graph runs once at a
     * time: `running`). */
    size_t learned_hint;
    const para_runtime_t *learned_on;
    /* The runtime of the run in progress (set by para_run() before the
     * open hooks, NULL between runs): what a library-made source may keep
     * there between graphs (records.c). */
    para_runtime_t *runtime;
};

/* Validate and compute derived data. Returns 0 or PARA_E*; the message goes
 * to graph->errmsg. */
int para__graph_prepare(para_graph_t *g);
/* Before a run (after prepare): refuse a callback source without an open
 * hook that already ran, call the open hooks. 0 or PARA_E* (errmsg). */
int para__graph_open_sources(para_graph_t *g);
/* Reset per-run state of every node. */
void para__graph_reset_run_state(para_graph_t *g);
/* Before a run, after para__graph_reset_run_state(): one statistics slot
 * per worker in every node, zeroed. 0 or PARA_ENOMEM (graph->errmsg). */
int para__graph_stats_begin(para_graph_t *g, unsigned workers);
/* @p n's statistics so far: its st_* counters plus every worker's slot
 * (relaxed loads: estimates while a run goes on, exact after it). */
void para__node_counts_get(const para_node_t *n, para__node_counts *c);
/* Add a node of internal kind @p kind (reduce.c): the checks and fields of
 * para_graph_add(), no function pointer. */
int para__graph_add_kind(para_graph_t *g, const para_node_desc_t *d,
                         para__kind kind, para_node_t **out);
/* Per-run hooks of library-made nodes: run_begin (after the sources are
 * opened; 0 or PARA_E* with graph->errmsg) and run_end (with the run's
 * status; frees what run_begin made). */
void para__node_set_run_hooks(para_node_t *n,
                              int (*begin)(para_node_t *n, unsigned workers),
                              void (*end)(para_node_t *n, int status));
int para__graph_nodes_begin(para_graph_t *g, unsigned workers);
void para__graph_nodes_end(para_graph_t *g, int status);
/* A node made by the library on top of the public API (records.c, reduce.c)
 * owns its ctx: @p fn frees it when the graph is destroyed. */
void para__node_set_ctx_free(para_node_t *n, void (*fn)(void *ctx));
/* Set graph->errmsg (printf-style); returns err for tail calls. */
int para__graph_fail(para_graph_t *g, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline bool para__is_source(const para_node_t *n)
{
    return n->kind <= PARA__KIND_ARRAY;
}
/* A source that only one worker at a time may pull (a callback source
 * that is not split this run). */
static inline bool para__source_serial(const para_node_t *n)
{
    return n->kind == PARA__KIND_SOURCE_FN && n->src_split == NULL;
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

/* Free a node's kernel copy. */
void para__kernel_copy_free(para__kernel_copy *k);

#endif /* PARA_RT_GRAPH_H */
