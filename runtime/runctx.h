/*
 * The run context: what every module of a run shares, below memory, the
 * graph and the scheduler. Units and termination, failure and abort, and
 * wake-ups of parked workers.
 *
 * Vocabulary
 *   batch  A contiguous array of fixed-size items plus the source sequence
 *          range [seq_begin, seq_end) they came from and a path index (see
 *          graph.c). Batches are the unit of scheduling and of memory
 *          (batch.h).
 *   task   "Run node N on batch B", arriving through input port P. A batch
 *          carries one embedded task per successor of the node that produced
 *          it, so delivering a batch never allocates.
 *   unit   One count in run->in_flight: every task not yet finished, and
 *          every source not yet exhausted, holds one. The run ends exactly
 *          when the count reaches zero.
 *
 * Memory orders of the run's flags, once:
 *   in_flight  acq_rel RMW: the release half publishes everything a thread
 *              did (sink effects, statistics) to the thread that brings the
 *              count to zero; the acquire half lets that thread see every
 *              other thread's release.
 *   done       release store by the thread that brought in_flight to 0;
 *              acquire loads by workers (loop, parking) and the device host
 *              thread, which so see the finished run.
 *   status     acq_rel CAS: the winner's message is published with it; the
 *              run's end (in_flight) orders both before para_run() reads.
 *   aborting   seq_cst store, then the abort hook (the scheduler claims
 *              every serial node): the aborter's half of a Dekker pattern
 *              with a claim holder's release-then-recheck; relaxed loads
 *              elsewhere (a hint to skip work).
 *
 * Tests: through tests/runtime/test_run.c, test_node_failure.c,
 * test_cancel.c (failure and cancellation), test_eventcount.c and
 * test_mpsc_stack.c (the primitives it is made of).
 */
#ifndef PARA_RUNCTX_H
#define PARA_RUNCTX_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errmsg.h"
#include "eventcount.h"
#include "mpsc_stack.h"
#include "para/graph.h"
#include "para/runtime.h"
#include "util.h"

typedef struct para__batch para__batch;
typedef struct para__worker para__worker;
typedef struct para__run para__run;
typedef struct para__budget para__budget;
struct para__policy;

typedef struct para__task {
    struct para__task *next;  /* the one container it is in (scheduler.c) */
    struct para__task *child; /* ORDERED reorder heap (pairing heap) */
    para__batch *batch;       /* NULL: the node's drain task */
    para_node_t *node;        /* where it runs */
    uint32_t in_port;         /* index into node->preds */
    uint32_t path;            /* path index the output will carry */
} para__task;

/* A stack of tasks any thread pushes and one taker empties (mpsc_stack.h). */
PARA__MPSC_STACK_DEFINE(para__task_stack, para__task, next)

/* Where idle workers sleep, and how tasks finished off a worker thread
 * (the device host thread) reach them. One per runtime, shared by its
 * runs. */
typedef struct para__wake {
    para__eventcount park; /* idle workers inside a run sleep here */
    /* Tasks handed to the workers by other threads; a worker empties it
     * with one exchange. */
    alignas(PARA_CACHELINE) para__task_stack inject;
    /* Also woken by para__notify_all() (the device host thread), or NULL;
     * set before any run. */
    void (*also)(void *arg);
    void *also_arg;
} para__wake;

struct para__run {
    /* Read-mostly: written before the run starts, read by every task; on
     * lines of their own, apart from the counters below that tasks and
     * admissions write. */
    alignas(PARA_CACHELINE) para_graph_t *graph;
    para_runtime_t *rt;
    para__wake *wake;
    const struct para__policy *policy;
    void *policy_state;   /* the policy's own (policy.h) */
    para__budget *budget; /* budgeted policies (budget.h), else NULL */
    int64_t max_batches;  /* sources wait while this many live; 0: no limit */
    size_t forced_batch_items;
    bool wide_fill; /* fused ranges' tiles in 32-byte stores (fuse.c) */
    uint64_t target_batch_ns;
    /* Source batches grow past their first size only once some cost was
     * learned (set by runtime/mpi, whose other ranks may run every task
     * at first: nothing is learned here until they report). */
    bool ramp_after_learning;
    /* Workers of other processes that take this run's batches (set by
     * runtime/mpi): a splittable source leaves them a share at its end. */
    unsigned remote_workers;
    /* Bytes a batch may hold along its widest edge (follows the cache:
     * run.c), unless that leaves fewer than a minimum of items. */
    size_t batch_bytes;
    /* Called by para__fail_run() after `aborting` is set (the scheduler:
     * claim every serial node so that reorder buffers are emptied). */
    void (*on_abort)(para__worker *w, para__run *run);
    /* Units of work in flight; the run ends when it reaches zero. */
    alignas(PARA_CACHELINE) _Atomic int64_t in_flight;
    alignas(PARA_CACHELINE) _Atomic int64_t live_batches;
    _Atomic int64_t peak_batches;
    /* Bytes in flight (real: allocations and item_bytes) and their peak.
     * Relaxed. */
    alignas(PARA_CACHELINE) _Atomic int64_t bytes;
    _Atomic int64_t peak_bytes;
    /* Time sources were held back (statistics, relaxed). */
    alignas(PARA_CACHELINE) _Atomic uint64_t held_since, hold_ns;
    alignas(PARA_CACHELINE) _Atomic int status; /* first error, or 0 */
    _Atomic bool aborting;                      /* status != 0 */
    _Atomic bool done;
    /* (Batch sizing reads the work done and the source items pulled from
     * the workers' counters and the nodes' statistics: no shared counter
     * is written per task.) */
    char errmsg[PARA__ERRMSG_LEN]; /* written by the status winner only */
};

/* The last unit is gone: mark the run done and wake everyone. */
void para__run_finish(para__run *run);

/* Add @p delta units (negative: give them back). Touches the run only
 * until the count reaches zero (see para__run_finish()), so a thread that
 * is not one of the run's workers may give back the last unit, after which
 * it must not touch the run. */
static inline void para__units_add(para__run *run, int64_t delta)
{
    if (delta == 0)
        return;
    /* acq_rel: see the top of this file. */
    int64_t left = atomic_fetch_add_explicit(&run->in_flight, delta,
                                             memory_order_acq_rel) +
                   delta;
    if (left == 0)
        para__run_finish(run);
    else if (PARA_UNLIKELY(left < 0))
        para__panic("run unit count went negative (%lld)", (long long)left);
}

/* Record the first failure of a run (later ones are dropped), switch the
 * run to aborting, call its on_abort hook and wake everyone. @p w: the
 * calling worker, or NULL (another thread). */
void para__fail_run(para__worker *w, para__run *run, int err, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));

/* The run is failing: skip work (relaxed: a hint; the status itself is read
 * after the run through the units' acq_rel chain). */
static inline bool para__aborting(const para__run *run)
{
    return atomic_load_explicit(&((para__run *)run)->aborting,
                                memory_order_relaxed);
}

/* Wake up to @p n parked workers (none sleeping: one atomic RMW). */
static inline void para__notify(para__wake *wk, uint32_t n)
{
    para__eventcount_notify(&wk->park, n);
}
/* Wake every parked worker, and the `also` thread. */
void para__notify_all(para__wake *wk);

/* Hand task @p t (holding its unit) to the workers from any thread. */
void para__inject_task(para__run *run, para__task *t);

#endif /* PARA_RUNCTX_H */
