/*
 * Event trace: per-lane rings of fixed-size events, exported as Chrome
 * trace-event JSON (see trace.c for the format and the design).
 *
 * A lane is one thread's timeline: a CPU worker ("para-cpu-3") or a device
 * host thread ("para-cl-0"). Each lane has exactly one writer, its owner
 * thread, so recording takes no lock and no read-modify-write: write the
 * event, then publish it with a release store of the lane's length.
 *
 * Disabled tracing costs one predictable branch per hook: a lane pointer
 * that is NULL when tracing is off (every hook below starts with that test).
 *
 * When a lane is full, recording stops and later events are only counted
 * (lane->dropped). Stopping rather than overwriting keeps every recorded
 * event immutable once published, so an export may read a lane while its
 * owner is still writing, and the trace shows a run from its beginning.
 *
 * Using a lane from a device host thread (the whole contract):
 *
 *   // once, when the device's host thread is set up (any thread, before the
 *   // owner records; returns NULL when tracing is off: keep it anyway)
 *   lane = para__trace_lane_add(rt->trace, PARA__LANE_DEVICE, dev_index,
 *                               "para-cl-0");
 *   // owner thread only, while a run is in progress:
 *   uint64_t t = para__trace_device_launch(lane);   // just before enqueue
 *   ...                                              // kernel runs
 *   para__trace_device_complete(lane, t, node->index, items, bytes);
 *   // record the completion before handing the finished batch back to the
 *   // workers, so that it happens before the run ends and is exported.
 *
 * Launches may overlap (several in flight): the exporter puts overlapping
 * launches of one lane on sub-tracks ("slots").
 */
#ifndef PARA_TRACE_H
#define PARA_TRACE_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "para/graph.h"
#include "util.h"

/* Event kinds. */
enum {
    PARA__TEV_TASK = 1, /* [t0, t1): node ran on a batch; items in, aux out */
    PARA__TEV_SOURCE,   /* [t0, t1): a pull from source node; items out */
    PARA__TEV_STEAL,    /* t0: took a task from worker aux */
    PARA__TEV_PARK,     /* [t0, t1): parked, waiting for work */
    PARA__TEV_DEVICE,   /* [t0, t1): device launch to completion (or the
                           kernel alone, when the back-end times it); items,
                           aux = bytes moved */
    PARA__TEV_COPY_IN,  /* [t0, t1): a launch's copy host to device; aux =
                           bytes */
    PARA__TEV_COPY_OUT, /* [t0, t1): a launch's copy device to host; aux =
                           bytes */
    PARA__TEV_FUSED,    /* [t0, t1): a fused chain's task (fuse.h) from its
                           head node to the last node (aux bits 8..31) of
                           aux & 255 stages; items in (the stages' own
                           TASK spans lie inside it) */
};

/* Node index meaning "no node" (e.g. a device launch of runtime work). */
#define PARA__TRACE_NO_NODE 0xFFFFFFu

typedef struct para__trace_event {
    uint64_t t0, t1;    /* para__now_ns(); t1 == t0 for instants */
    uint64_t aux;       /* per kind, see above */
    uint32_t items;     /* items in the batch (saturates) */
    unsigned node : 24; /* node index in the graph, or PARA__TRACE_NO_NODE */
    unsigned kind : 8;  /* PARA__TEV_* */
} para__trace_event;

typedef enum para__lane_kind {
    PARA__LANE_CPU,
    PARA__LANE_DEVICE,
} para__lane_kind;

typedef struct para__trace_lane {
    /* Events published so far. Owner: relaxed load, release store; readers:
     * acquire load, then read events [0, len). */
    alignas(PARA_CACHELINE) _Atomic uint64_t len;
    _Atomic uint64_t dropped; /* owner-written counter (relaxed) */
    uint64_t cap;             /* immutable */
    para__trace_event *ev;    /* cap events, immutable pointer */
    para__lane_kind kind;     /* immutable from here on */
    unsigned index;           /* worker id or device index */
    char name[32];
} para__trace_lane;

#define PARA__TRACE_MAX_LANES 256

typedef struct para__trace_node {
    char *name;
    const char *kind; /* "source", "map", ... (static string) */
} para__trace_node;

typedef struct para__trace {
    char *path;           /* written after each run; NULL = only on demand */
    size_t cap;           /* events per lane */
    pthread_mutex_t lock; /* lane registration, run snapshot, export */
    para__trace_lane *lanes[PARA__TRACE_MAX_LANES];
    _Atomic unsigned n_lanes; /* published with release after the slot */
    /* Snapshot of the last run (lock). */
    uint64_t run_t0, run_t1, runs;
    unsigned workers;
    para__trace_node *nodes;
    unsigned n_nodes;
} para__trace;

/* Create a trace with @p cap events per lane; @p path may be NULL. Returns 0
 * or PARA_ENOMEM. Creation thread only. */
int para__trace_create(para__trace **out, const char *path, size_t cap);
/* Free the trace and its lanes. NULL is a no-op. No writer may be left. */
void para__trace_destroy(para__trace *tr);

/*
 * Add a lane owned by one thread. Returns NULL when @p tr is NULL (tracing
 * off), when PARA__TRACE_MAX_LANES lanes exist or memory ran out (a warning
 * is logged); every hook accepts NULL. Any thread; the lane's owner may
 * record once this returned (pass the pointer to it with any
 * synchronisation, e.g. pthread_create).
 */
para__trace_lane *para__trace_lane_add(para__trace *tr, para__lane_kind kind,
                                       unsigned index, const char *name);

/* Start of a run: empty every lane and stamp the start time. Called by
 * para_run() while no lane owner records (workers wait for the run; device
 * threads record only during runs). */
void para__trace_run_begin(para__trace *tr, unsigned workers);
/* End of a run: stamp the end and keep @p g's node names for the export.
 * Returns 0 or PARA_ENOMEM. */
int para__trace_run_end(para__trace *tr, const para_graph_t *g);
/* Write the last run as Chrome trace-event JSON. 0, or a negative errno
 * (PARA_E*) if the file could not be written. */
int para__trace_write_file(para__trace *tr, const char *path);
int para__trace_write(para__trace *tr, FILE *f);
/* Pieces of one trace merged from several processes (runtime/mpi): the
 * head, then each process's part (its last run's lanes and events as
 * process @p pid named @p name, a timestamp being the event's
 * para__now_ns() minus @p base, clamped at 0; each element followed by
 * ",\n"), then the tail (@p tr's nodes and figures, the end at @p end_ns,
 * "ranks": @p ranks). 0 or a negative errno. */
int para__trace_write_head(FILE *f);
int para__trace_write_part(para__trace *tr, FILE *f, unsigned pid,
                           const char *name, int64_t base);
int para__trace_write_tail(para__trace *tr, FILE *f, uint64_t end_ns,
                           unsigned ranks);
/* Start and end of the last run (para__now_ns()). */
void para__trace_run_times(para__trace *tr, uint64_t *t0, uint64_t *t1);

/* ---- recording (owner thread only) ------------------------------------- */

static inline void para__trace_put(para__trace_lane *l, unsigned kind,
                                   unsigned node, uint64_t t0, uint64_t t1,
                                   uint64_t items, uint64_t aux)
{
    /* relaxed: owner-only writer; no other thread stores len during a run. */
    uint64_t n = atomic_load_explicit(&l->len, memory_order_relaxed);
    if (PARA_UNLIKELY(n >= l->cap)) {
        /* relaxed load + store: owner-only counter, read after the run. */
        atomic_store_explicit(
            &l->dropped,
            atomic_load_explicit(&l->dropped, memory_order_relaxed) + 1,
            memory_order_relaxed);
        return;
    }
    para__trace_event *e = &l->ev[n];
    e->t0 = t0;
    e->t1 = t1;
    e->aux = aux;
    e->items = items > UINT32_MAX ? UINT32_MAX : (uint32_t)items;
    e->node = node & PARA__TRACE_NO_NODE;
    e->kind = kind;
    /* release: publish the event before the length; pairs with the acquire
     * load of len in the exporter (trace.c). */
    atomic_store_explicit(&l->len, n + 1, memory_order_release);
}

/* A timestamp for a span that a later hook closes; 0 when tracing is off. */
static inline uint64_t para__trace_now(const para__trace_lane *l)
{
    return PARA_UNLIKELY(l != NULL) ? para__now_ns() : 0;
}

/* A task of @p node ran over [t0, t1) on @p items_in items, producing
 * @p items_out. */
static inline void para__trace_task(para__trace_lane *l, unsigned node,
                                    uint64_t t0, uint64_t t1, size_t items_in,
                                    size_t items_out)
{
    if (PARA_UNLIKELY(l != NULL))
        para__trace_put(l, PARA__TEV_TASK, node, t0, t1, items_in, items_out);
}

/* A fused task ran the chain @p head .. @p last (@p stages nodes) over
 * [t0, t1) on @p items_in items (its output: @p items_out, not kept). */
static inline void para__trace_fused(para__trace_lane *l, unsigned head,
                                     unsigned last, unsigned stages,
                                     uint64_t t0, uint64_t t1, size_t items_in,
                                     size_t items_out)
{
    (void)items_out;
    if (PARA_UNLIKELY(l != NULL))
        para__trace_put(l, PARA__TEV_FUSED, head, t0, t1, items_in,
                        ((uint64_t)(last & PARA__TRACE_NO_NODE) << 8) |
                            (stages & 255u));
}
/* A pull from source @p node, started at @p t0 (para__trace_now()), gave
 * @p items items. */
static inline void para__trace_source(para__trace_lane *l, unsigned node,
                                      uint64_t t0, size_t items)
{
    if (PARA_UNLIKELY(l != NULL))
        para__trace_put(l, PARA__TEV_SOURCE, node, t0, para__now_ns(), items,
                        0);
}

/* A task was stolen from worker @p victim. */
static inline void para__trace_steal(para__trace_lane *l, unsigned victim)
{
    if (PARA_UNLIKELY(l != NULL)) {
        uint64_t t = para__now_ns();
        para__trace_put(l, PARA__TEV_STEAL, PARA__TRACE_NO_NODE, t, t, 0,
                        victim);
    }
}

/* The owner was parked over [t0, t1). */
static inline void para__trace_park(para__trace_lane *l, uint64_t t0,
                                    uint64_t t1)
{
    if (PARA_UNLIKELY(l != NULL))
        para__trace_put(l, PARA__TEV_PARK, PARA__TRACE_NO_NODE, t0, t1, 0, 0);
}

/* Device host thread: a launch is about to be enqueued. Returns its start
 * time for para__trace_device_complete(), 0 when tracing is off. */
static inline uint64_t para__trace_device_launch(const para__trace_lane *l)
{
    return para__trace_now(l);
}

/* Device host thread: the launch started at @p launched (from
 * para__trace_device_launch()) completed; it ran @p node (or
 * PARA__TRACE_NO_NODE) on @p items items and moved @p bytes bytes between
 * host and device. */
static inline void para__trace_device_complete(para__trace_lane *l,
                                               uint64_t launched, unsigned node,
                                               size_t items, uint64_t bytes)
{
    if (PARA_UNLIKELY(l != NULL))
        para__trace_put(l, PARA__TEV_DEVICE, node, launched, para__now_ns(),
                        items, bytes);
}

/* Device host thread: a launch's copy to the device (@p out false) or back
 * (true) for @p node ran over [t0, t1) and moved @p bytes. */
static inline void para__trace_device_copy(para__trace_lane *l, bool out,
                                           unsigned node, uint64_t t0,
                                           uint64_t t1, uint64_t bytes)
{
    if (PARA_UNLIKELY(l != NULL))
        para__trace_put(l, out ? PARA__TEV_COPY_OUT : PARA__TEV_COPY_IN, node,
                        t0, t1, 0, bytes);
}

#endif /* PARA_TRACE_H */
