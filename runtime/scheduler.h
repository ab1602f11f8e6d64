/*
 * The scheduler layer: workers, the runtime that owns them, and the
 * scheduler's services for the modules above it (policies, the device host
 * side, observation). See scheduler.c for the workers' loop, tasks, serial
 * and ordered nodes, sources and parking, and its numbered invariants.
 */
#ifndef PARA_SCHEDULER_H
#define PARA_SCHEDULER_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hwloc.h>

#include "batch.h"
#include "deque.h"
#include "graph.h"
#include "runctx.h"
#include "topology.h"
#include "trace.h"
#include "util.h"

/* ---- workers ------------------------------------------------------------ */

/* Page-aligned, so that each worker's struct (its deque's indices, which
 * its owner touches on every push and pop, and its counters) can live on
 * the worker's own NUMA node (para__topology_bind_memory()). */
#define PARA__WORKER_ALIGN 4096

/* Tasks a worker holds back for busy serial tails (tail_held below). A
 * full hold hands its oldest task to the inbox, where the claim holder
 * reads the batch on its own core, and this worker's next batch written
 * into that memory must take the lines back from there: on the
 * development VM 6 us more per 227 KiB batch than memory last read here,
 * and 75 us in the host's state where cache lines cross slowly. A longer
 * hold keeps more batches in flight, waiting longer for the claim. On w3
 * (two batches a task), against a hold of 4, a run takes 2 % longer with
 * 8 in the host's normal state and 14 % less in the slow one; with 16, 6 %
 * longer and 16 % less (BENCHMARKS.md, session 10). */
#define PARA__TAIL_HOLD 8

struct para__worker {
    alignas(PARA__WORKER_ALIGN) para__deque deque;
    para_runtime_t *rt;
    unsigned id;
    pthread_t thread;
    uint64_t rng;
    /* Batch sizing: this worker's source batch size while it ramps up,
     * and its copy of the nodes' estimate (learned_estimate() in
     * scheduler.c), refreshed every few pulls. Owner only. */
    size_t ramp_items;
    size_t learned_items;
    unsigned learned_pulls;  /* pulls left before the next refresh */
    unsigned next_source;    /* round-robin start */
    para__batch_cache cache; /* free batches (batch.h); owner only */
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
    /* Pinned workers with caller_works (see free_pin below): the plan slot
     * whose cpuset this worker's thread is bound to, or is being bound to
     * by that thread itself, and the one it is to be bound to (the caller
     * re-binds it when it swaps the two: keep_caller_core()). rt->lock. */
    unsigned pin_bound;
    unsigned pin_want;
    /* Serial tails (fuse.h) whose claim was busy when this worker delivered
     * to them: the tasks it holds back, each with its unit, oldest first,
     * to run itself while their batches are still in its cache (see
     * "Serial tails" in scheduler.c). Owner only. */
    para__task *tail_held[PARA__TAIL_HOLD];
    unsigned n_tail_held;
};

/* A worker slept from @p t0 until now: count it, and trace it. */
static inline void para__worker_parked(para__worker *w, uint64_t t0)
{
    uint64_t t1 = para__now_ns();
    para__counter_add(&w->c_parked_ns, t1 - t0);
    para__trace_park(w->trace, t0, t1);
}

/* ---- the runtime -------------------------------------------------------- */

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

/* How MIXED kernel nodes split their batches (PARA_MIXED): by the measured
 * costs (auto), all on the device, or all on the workers. */
typedef enum {
    PARA__MIXED_AUTO,
    PARA__MIXED_DEVICE,
    PARA__MIXED_CPU
} para__mixed_mode;

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

/* What the scheduler asks of the device host side (device_node.h). A
 * table, so that the scheduler, a layer below, calls it without depending
 * on it; every entry is set (para_runtime_create()). */
typedef struct para__offload {
    /* Worker side: take task @p t of a kernel node if it should run on the
     * device (true), or leave it to the caller's CPU (false). */
    bool (*route)(para__worker *w, para__run *run, para__task *t);
    /* Worker side: a MIXED node ran @p items on the CPU in @p ns. */
    void (*note_cpu)(para_node_t *n, size_t items, uint64_t ns);
} para__offload;

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

    /* The records source's chunk blocks, kept between graphs (records.c;
     * under `lock`). */
    struct para__block_pool *records_pool;

    pthread_mutex_t lock;      /* guards the fields below, and parking */
    pthread_cond_t start_cond; /* workers wait for a run or shutdown */
    pthread_cond_t done_cond;  /* para_run waits for workers to leave */
    /* Bumped per run, under `lock` (atomic: read relaxed as a hint). */
    _Atomic uint64_t generation;
    /* generation again, stored by para_run()'s thread once it has released
     * `lock` (relaxed: a hint, re-read under `lock`): a thread that just
     * left a run spins on it before it sleeps on start_cond, so that close
     * runs cost no wake-up. Spinning on generation itself, it reached for
     * `lock` while that thread still held it, slept in the kernel, and
     * the unlock had to wake it: a futex round trip in short runs. */
    _Atomic uint64_t generation_hint;
    /* Bumped per run that has a node off the CPU, under `lock`: the
     * device host threads join those runs only (a run without one does
     * not wait for them to wake up). */
    uint64_t device_generation;
    pthread_cond_t device_cond; /* device host threads wait for such a run */
    para__run *run;             /* current run (lock) */
    /* Threads still in the current run: decremented under `lock` with
     * release (the leaver's writes to the run), read with acquire by
     * para_run()'s thread, which may spin on it before it sleeps on
     * done_cond (a leaver that makes it 0 signals under `lock`). */
    _Atomic unsigned workers_in_run;
    bool shutdown; /* lock */
    /* Worker threads may still join the current run (caller_works: the
     * caller closes it when it is done; device host threads always join,
     * and read `run` until they leave). lock. */
    bool run_open;
    /* The thread calling para_run() works the run as worker 0 (it has no
     * thread of its own); false when a progress line is printed, which
     * needs that thread waiting (progress.c). Set at creation. */
    bool caller_works;
    /* With caller_works and pinned workers: the plan slot (topology.h)
     * whose cpuset no worker thread wants, the caller's. A para_run() whose
     * thread sits on the cpuset a worker thread wants swaps the two (the
     * worker re-binds itself when it joins): without it the two shared
     * that core until the kernel moved the caller, 1.4-4.9 ms of a 2-core
     * VM's first 10 ms run (the idle core is not woken to pull it). lock. */
    unsigned free_pin;
    unsigned first_thread; /* first worker with a thread: caller_works */
    unsigned threads_started;

    _Atomic int busy; /* a para_run() is in progress */
    /* Parked workers, and tasks injected by other threads (runctx.h). */
    para__wake wake;
    /* The device host side, for the scheduler (set by para_run's module
     * before any run; the scheduler does not depend on it). */
    para__offload offload;

    uint64_t runs, last_run_ns, last_peak_batches;
    uint64_t last_peak_bytes, last_budget, last_hold_ns, last_decisions;
    const struct para__policy *policy_ops; /* policy.h */
    para__errmsg errmsg;                   /* errmsg.h */

    /* The devices of kernel nodes, opened at the first run that has one
     * (device_node.c). Tasks finished off a worker thread (the device
     * host thread) enter the workers' world through wake.inject. */
    char device_selector[512]; /* a device list */
    int device_state;          /* 0 not tried, 1 open, -1 none (see why) */
    int device_err;            /* why an explicitly chosen device is missing */
    char device_why[256];
    bool device_cpu_logged;
    para__mixed_mode mixed; /* MIXED kernel nodes' split (PARA_MIXED) */
    int pinned;          /* PARA_PINNED: -1 auto, 1 on, 0 off (device_node.c) */
    bool fuse;           /* fused CPU chains (PARA_FUSE, fuse.h) */
    para__devrt *device; /* the open devices, NULL if none */
    unsigned helper_threads; /* host threads (one per device) */
    para__trace *trace;      /* NULL unless tracing (PARA_TRACE) */
    para__device_counters devices[PARA__MAX_DEVICES];
    unsigned n_devices; /* rt->lock */
    para__progress progress;
    para__remote *remote;    /* NULL unless para_mpi_run() (see above) */
    uint64_t default_budget; /* memaware's budget (run.c), set at creation */
    size_t batch_bytes;      /* a batch's byte cap (run.c), set at creation */
};

/* Start the worker threads; 0 or PARA_E*. */
int para__scheduler_start(para_runtime_t *rt);
/* Stop and join them. */
void para__scheduler_stop(para_runtime_t *rt);
/* Execute @p run on the workers and wait until it ends: @p wait is called
 * with rt->lock held until the workers have left the run; it waits on
 * rt->done_cond (it may drop and retake the lock, e.g. to print progress). */
void para__scheduler_execute(para_runtime_t *rt, para__run *run,
                             void (*wait)(para_runtime_t *rt));

/* Hand @p out, made by @p n, to every successor of @p n. @p held: units the
 * caller gives up (1 for a task, 0 for a source pull). @p w may be NULL (a
 * thread that is not a worker: the tasks go through wake.inject). */
void para__deliver(para__worker *w, para__run *run, para_node_t *n,
                   para__batch *out, int held);
/* Hand task @p t (holding its unit) to its node from any thread, as
 * para__deliver() does: through the inbox of a serial or ORDERED node (so
 * its order holds), else to the workers. @p w may be NULL (then the task is
 * injected). Used by runtime/mpi for batches received from other ranks. */
void para__submit_task(para__worker *w, para__run *run, para__task *t);

/* ---- for fuse.c (same layer): what a task does around its node ---------- */

/* Worker @p w's statistics slot of node @p n (graph.h): only @p w writes
 * it, so counting a task there is a plain load and store. */
static inline para__node_wstat *para__wstat(para__worker *w, para_node_t *n)
{
    return &n->wst[w->id];
}
/* Learn @p n's cost per input item from @p items that took @p dt ns. */
void para__learn_cost(para_node_t *n, size_t items, uint64_t dt);
/* A flat-map made @p out items of @p in: keep its largest expansion. */
void para__note_expansion(para_node_t *n, size_t in, size_t out);
/* What para_input_port() returns on this thread (-1: no node call). */
void para__set_input_port(int port);
/* Fail the run: node @p n returned @p rc. */
void para__fail_node(para__worker *w, para__run *run, para_node_t *n, int rc);
/* Filter @p n's loop over @p m of its input items at @p src, items that
 * own nothing: copies the kept ones to @p dst (room for @p m items, not
 * overlapping @p src). Returns 0, or the node's error (a per-item filter's
 * negative value, a batch filter's non-zero one); *done: the items decided
 * (all m on success), *kept: those copied. */
int para__filter_items(const para_node_t *n, const unsigned char *src, size_t m,
                       unsigned char *dst, size_t *done, size_t *kept);
/* A batch filter (filter_batched) is called on at most this many items at
 * a time, with a keep mask on the stack. */
#define PARA__FILTER_TILE 512

/* For para_item_index() in the node function the calling thread is about
 * to call: @p count items of @p size bytes at @p base, numbered from
 * @p seq; leave() when the call returns. Thread-local: any thread, for its
 * own calls (workers, and device host threads running a CPU function). */
void para__item_index_enter(const void *base, size_t count, size_t size,
                            uint64_t seq);
void para__item_index_leave(void);

/* Register a device's counters under @p name; NULL when PARA__MAX_DEVICES
 * are registered. Any thread; the device's host thread then owns the
 * counters (para__counter_add(&d->c_launches, 1), ...). */
para__device_counters *para__stats_device_add(para_runtime_t *rt,
                                              const char *name);

#endif /* PARA_SCHEDULER_H */
