/*
 * The scheduler: worker threads, task execution, serial and ordered nodes,
 * sources, parking and termination.
 *
 * Workers
 *   One thread per worker, each owning a Chase–Lev deque (deque.h), except
 *   worker 0 when rt->caller_works: the thread in para_run() is worker 0 for
 *   the run (so a short run starts working at once and worker 0's deque,
 *   cache, counters and trace lane still have one owner at a time); the
 *   other workers join the run while it is open. Between runs a worker
 *   spins briefly for the next one before it sleeps on start_cond. A worker
 *   loops: pop its own deque (LIFO: the batch it just produced is hot in its
 *   cache), else steal (FIFO: the oldest, largest pieces of work), else pull
 *   a new batch from a source, else spin a little and park. Consumers come
 *   before sources, so work in flight is finished before new work enters.
 *
 * Tasks and units
 *   A task is (node, batch, input port), embedded in the batch (runctx.h,
 *   batch.h). The task of a fused chain's head (fuse.h) runs every stage of
 *   the chain and delivers the last stage's output: the inner stages never
 *   have tasks of their own, and a fused task is one unit like any other.
 *   A node whose successors are all chain heads (a fused fan-out) hands
 *   each batch to one task, which runs every successor's chain and
 *   delivers one output per branch.
 *   run->in_flight counts units: one per unfinished task and one per source
 *   not yet exhausted. A task that produces a batch for k successors turns
 *   its unit into k (one atomic add of k-1, none when k = 1; k = 1 for a
 *   fused fan-out); a sink's task gives its unit back. A fused fan-out's
 *   task delivers its other branches' outputs first, adding their units,
 *   and gives its own with the last delivery. The run is over exactly when
 *   the count reaches 0: the worker that sees it reach 0 sets run->done
 *   and wakes everyone.
 *
 * Serial and ORDERED nodes
 *   Deliveries to a serial node go to its inbox, a Treiber stack that the
 *   draining worker empties with one exchange (no ABA: nobody pops single
 *   entries). The worker that wins the node's `claimed` flag (CAS 0 -> 1)
 *   pushes the node's drain task; whoever runs it drains until the inbox is
 *   empty, releases the flag, and re-checks the inbox (Dekker pattern with
 *   the pushers, both sides seq_cst) so that no delivery is stranded. No
 *   worker ever blocks on a node. A delivery to a serial tail (fuse.h: an
 *   unordered serial node after a parallel CPU node) first tries the claim
 *   itself; if it wins, the delivering worker runs the task inline and then
 *   drains, as the drain task would (run_inline()), skipping the inbox and
 *   the deque. If the tail is busy, the worker holds the task back (up to
 *   PARA__TAIL_HOLD of them, oldest out to the inbox) and tries the claim
 *   again after each task it runs, running the held tasks itself when it
 *   wins; before it looks for work elsewhere it hands what it still holds
 *   to the inboxes (tail_retry()). So a tail's batches are mostly read by
 *   the core that wrote them, while they are in its cache, instead of
 *   all crossing to whichever worker holds the claim and drains; and a
 *   held task keeps its unit, so the run cannot end under it. An ORDERED
 *   node moves inbox entries into a
 *   pairing heap keyed by (seq_begin, path) and runs only the key it expects
 *   next (see graph.c for why every key arrives).
 *
 * Sources
 *   Range and array sources are splittable: every worker may pull a chunk at
 *   once with one fetch_add on the cursor. Callback sources are serial: the
 *   pull is claimed through the same state word (bit 0 exhausted, the rest
 *   counts pullers), so the source's unit is dropped exactly once, by the
 *   last puller out after exhaustion. A split callback source (src_split:
 *   a records source over a regular file) takes any number of pullers and
 *   gives each batch its own key range. Whether a source may pull, and how
 *   many items, is the policy's decision (policy.h: a batch limit, the byte
 *   budget of budget.h, ...): back-pressure that bounds the memory of a run
 *   and the depth of reorder buffers. Only sources wait, never consumers.
 *
 * Batch sizes
 *   Unless forced (PARA_BATCH), a source batch is sized so that each TASK
 *   carries enough work: every node learns its cost per source item (its busy
 *   time over the source items pulled), and the batch gives the most expensive
 *   node's task its target time (the node's batch_us hint, or target_batch_ns),
 *   so a deep chain of cheap stages gets batches as large as one stage needs,
 *   not 1/depth of that; each worker keeps its own copy of that size, summed
 *   afresh every few pulls. Each worker's size ramps up from 16 items by
 *   doubling, so the estimates settle before batches grow large; a graph run
 *   again on the same runtime starts from the size its last run learned
 *   (graph.h: learned_hint), the ramp from an eighth of it. Bounds:
 *   run->batch_bytes along the widest edge downstream (half an L2, at most 256
 *   KiB: run.c) but at least MIN_CAP_ITEMS items; for a source whose items own
 *   more than a sixteenth of that each, the bytes they own, down to one item
 *   (one item while their size is not known yet); at least the largest
 *   min_batch hint downstream; and near the end of a splittable source at most
 *   1/(2 x workers) of what is left, so every worker has a share, but not under
 *   1/END_SHARE_MIN_FRACTION of the learned size (2 us of work at the default
 *   target): below that a batch's own cost (a pull, a task, the sink's claim:
 *   about 1 us) outweighs the balance it buys, and a run of 500 cheap items
 *   (w12) was cut into 16 batches. Last, the count is trimmed by a header's
 *   worth where that keeps the widest edge's batch in its items' size class
 *   (para__batch_fit_items(): 32,768 items of 8 bytes made 512 KiB batches).
 *   Across processes (runtime/mpi) a node's time on other ranks counts with its
 *   local cost, their workers count with ours, and the ramp waits for a first
 *   estimate (run->ramp_after_learning).
 *
 * Failure
 *   The first failure sets run->status and run->aborting. From then on tasks
 *   are released without running, sources exhaust themselves at their next
 *   pull, and ordered nodes drain in any order. The failing worker claims
 *   every serial node once so that reorder buffers waiting for a key that
 *   will never come are emptied too (a holder releasing its claim re-checks
 *   `aborting`, seq_cst on both sides). para_run_cancel() sets rt->cancel;
 *   the first worker to see it fails the run with PARA_ECANCELED.
 *
 * Parking
 *   rt->wake.park, an eventcount (eventcount.h): a worker announces itself,
 *   re-checks every place work can appear (work_visible()), and sleeps
 *   until a notify. Whoever publishes surplus work notifies (a worker does
 *   not wake anyone for the task it will pop itself next: para__deliver());
 *   a busy runtime pays a fence per notify, no shared write and no system
 *   call. Once every source of the run is exhausted, an idle worker spins
 *   (yielding now and then) for up to RUN_GAP_SPIN_NS before it parks: the
 *   run ends soon, and a worker asleep at its end is woken late for the
 *   next one (a loop of short runs then paid a context switch per run).
 *
 * Statistics
 *   A worker counts a node's statistics in its own slot of the node
 *   (graph.h: para__node_wstat, summed when read) and its own counters
 *   (scheduler.h); batch sizing sums them too, each worker every few of
 *   its pulls (learned_estimate()). The locked instructions
 *   left per task are those that carry correctness: units (only when a
 *   task ends in a sink or fans out), batch references, claims and inboxes
 *   of serial nodes, the deques, the source cursor and state, the budget's
 *   reservation and family references (budgeted policies), and the run's
 *   live batches (a policy gate). Two counters remain shared per batch
 *   without carrying correctness: the run's bytes in flight (the progress
 *   line, the peak statistic; one add per batch allocated and freed) and
 *   the budget's decision count (on the line of the reservation's CAS,
 *   which follows it). A worker wakes a parked one only for surplus work:
 *   tasks beyond the one it runs next, a source with more to pull, bytes
 *   given back while a source waits for them (budget.c).
 *
 * Lock order: rt->lock is never held while running node code or while
 *   taking another lock; the eventcount's own mutex (eventcount.c) and the
 *   device host thread's are leaves.
 *
 * Invariants (debug builds check them with PARA_DEBUG_ASSERT where one
 * thread can see them; the places are named in brackets)
 *   I1 Where a task lives. At any moment a task (a batch's embedded task,
 *      or a serial node's drain task) is in exactly one of: a worker's
 *      deque; a worker's tail hold (owner only); rt->wake.inject; a serial
 *      node's inbox; that node's pending
 *      FIFO or ORDERED heap (claim-owned); the device's incoming stack; a
 *      kernel node's device pending list or a launch slot (device host
 *      thread); or running on one thread. Its `next` (and `child`, in the
 *      heap) belong to the container that holds it: whoever takes a task
 *      out owns `next` until it puts the task into the next container (the
 *      deque keeps tasks in its own slots and leaves `next` alone)
 *      [next_ready(): a task leaving pending or the heap is unlinked].
 *   I2 Units. Every task with a batch holds exactly one unit wherever I1
 *      puts it; drain tasks hold none; every source not yet exhausted holds
 *      one. A delivery to k successors turns the producer's unit into k
 *      before any of them is published, so in_flight never reaches 0 while
 *      work exists, and reaches it exactly once [para__units_add() panics
 *      below 0; a worker leaving a run holds no tail task and finds only
 *      unit-less drain tasks].
 *   I3 Claims. A serial node with claimed == 1 has exactly one drain task
 *      queued (I1) or running, or a worker running it inline
 *      (run_inline(): its serial tail, fuse.h); with claimed == 0, none. Only
 * the claim holder touches pending, heap, next_seq/next_path and collect_pos
 *      [drain() runs with claimed == 1].
 *   I4 Order. An ORDERED node runs the key (seq_begin, path) it expects
 *      next and nothing else unless the run is aborting; every key arrives
 *      (graph.c), so its heap never holds a key below the expected one
 *      [next_ready()].
 *   I5 Batches and families. A batch's refs count its embedded tasks not
 *      yet finished [para__batch_release() never goes below 0]. Each live
 *      batch of a budgeted run holds exactly one reference to its family;
 *      the last free returns the family's reservation [joining needs a live
 *      reference; run end panics unless no batch lives and nothing is
 *      reserved].
 *   I6 The device host thread. A task routed to the device keeps its unit
 *      while it travels incoming -> pending list -> launch slot; at
 *      completion the output is delivered with para__deliver(NULL, ...)
 *      (the unit becomes the successors' units, their tasks go through
 *      rt->wake.inject); on a fallback the task itself goes back through
 *      rt->wake.inject with its unit; on abort it is dropped and its unit
 *      given back. The host thread never runs a task and never touches a
 *      worker's deque [para__deliver(NULL, ...) only injects].
 *
 * Tests: tests/runtime/test_run.c, test_differential.c (random graphs
 * against a sequential reference), test_seed_graph.c; TSan in CI.
 */
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

#include "budget.h"
#include "fuse.h"
#include "owned.h"
#include "policy.h"
#include "reduce_node.h"

#define SPIN_ROUNDS 64        /* idle loop iterations before parking */
#define STEAL_RETRIES 2       /* retries of one victim after a lost race */
#define RAMP_START_ITEMS 16   /* first adaptive batch size */
#define MIN_CAP_ITEMS 16      /* the byte cap leaves a batch this many items */
#define LEARN_REFRESH_PULLS 4 /* pulls per refresh of learned_estimate() */
#define END_SHARE_MIN_FRACTION 50 /* end shares >= learned size / this */
#define RERUN_RAMP_DIVISOR 8      /* a rerun's ramp starts at its hint / this */
/* How long a thread that left a run spins for the next one (workers) or
 * for the others to leave (para_run()'s thread) before it sleeps. */
#define RUN_GAP_SPIN_NS 50000

static void execute(para__worker *w, para__run *run, para__task *t);
static void run_inline(para__worker *w, para__run *run, para__task *t);
static bool tail_hold(para__worker *w, para__run *run, para__task *t);

/* The worker's batch cache, or none for other threads (w == NULL). */
static inline para__batch_cache *cache_of(para__worker *w)
{
    return w != NULL ? &w->cache : NULL;
}

/* ---- units and termination -------------------------------------------- */

/* Local names for the run context's services (runctx.h). */
static inline void notify(para_runtime_t *rt, uint32_t n)
{
    para__notify(&rt->wake, n);
}

static inline void units_add(para__run *run, int64_t delta)
{
    para__units_add(run, delta);
}

static inline bool aborting(const para__run *run)
{
    return para__aborting(run);
}

#define fail_run para__fail_run

/* para_run_cancel() asked this run to stop and nobody acted on it yet. */
static bool cancel_pending(para_runtime_t *rt, para__run *run,
                           memory_order order)
{
    return atomic_load_explicit(&rt->cancel, order) && !aborting(run);
}

/* After a task's node code and before its unit goes: a cancel requested
 * by that code (or while it ran) fails the run now. Otherwise the task
 * that held the run's last unit would end it as a success, against
 * para_run_cancel()'s promise (relaxed: our own request is sequenced
 * before; another thread's is caught here or by the worker loop). */
static void cancel_check(para__worker *w, para__run *run)
{
    if (PARA_UNLIKELY(cancel_pending(w->rt, run, memory_order_relaxed)))
        fail_run(w, run, PARA_ECANCELED, "run canceled by para_run_cancel()");
}

/* ---- deque helpers and the injection stack ------------------------------ */

/* A thread that is not a worker (w == NULL: the device host thread) hands
 * tasks to the workers through rt->wake.inject. */
static void inject_push(para_runtime_t *rt, para__task *t)
{
    para__task_stack_push(&rt->wake.inject, t);
}

static void push_local(para__worker *w, para__run *run, para__task *t)
{
    if (w == NULL) {
        inject_push(run->rt, t);
    } else if (PARA_UNLIKELY(para__deque_owner_push(&w->deque, t) != 0)) {
        /* The deque could not grow: run the task right here instead. */
        execute(w, run, t);
    }
}

/* Take every injected task: run the oldest, queue the rest locally (where
 * other workers may steal them). */
static para__task *take_injected(para__worker *w, para__run *run)
{
    para_runtime_t *rt = w->rt;
    if (para__task_stack_peek_empty(&rt->wake.inject))
        return NULL;
    para__task *oldest = para__task_stack_take_all_fifo(&rt->wake.inject);
    if (oldest == NULL)
        return NULL;
    /* Run the oldest now; queue the others oldest first, so that thieves,
     * who take from the old end of the deque, take the older ones first,
     * and wake one parked worker per task queued. */
    uint32_t queued = 0;
    for (para__task *t = oldest->next; t != NULL; queued++) {
        para__task *next = t->next;
        push_local(w, run, t);
        t = next;
    }
    oldest->next = NULL;
    if (queued > 0)
        notify(rt, queued);
    return oldest;
}

/* ---- serial nodes: claim, inbox, pairing heap --------------------------- */

static bool try_claim(para_node_t *n)
{
    /* seq_cst load, then seq_cst CAS: part of the Dekker pattern between a
     * pusher (push inbox, then claim) and the holder (release claim, then
     * re-check inbox); see drain(). The load avoids a CAS on a busy node. */
    if (atomic_load_explicit(&n->claimed, memory_order_seq_cst) != 0)
        return false;
    unsigned expected = 0;
    return atomic_compare_exchange_strong_explicit(
        &n->claimed, &expected, 1, memory_order_seq_cst, memory_order_relaxed);
}

/* Returns true if it queued the node's drain task (a new runnable task). */
static bool inbox_push(para__worker *w, para__run *run, para_node_t *n,
                       para__task *t)
{
    /* seq_cst push (mpsc_stack.h): publishes the task and takes part in
     * the Dekker pattern with the claim holder's re-check in drain(). */
    para__task_stack_push(&n->inbox, t);
    if (!try_claim(n))
        return false;
    push_local(w, run, &n->drain_task);
    return true;
}

static bool key_less(const para__task *a, const para__task *b)
{
    if (a->batch->seq_begin != b->batch->seq_begin)
        return a->batch->seq_begin < b->batch->seq_begin;
    return a->path < b->path;
}

static para__task *heap_meld(para__task *a, para__task *b)
{
    if (a == NULL)
        return b;
    if (b == NULL)
        return a;
    if (key_less(b, a)) {
        para__task *tmp = a;
        a = b;
        b = tmp;
    }
    b->next = a->child;
    a->child = b;
    return a;
}

/* Pairing heap delete-min: two-pass merge of the root's children. */
static para__task *heap_pop(para_node_t *n)
{
    para__task *root = n->heap_root;
    para__task *pairs = NULL, *c = root->child;
    while (c != NULL) {
        para__task *a = c, *b = c->next;
        c = b != NULL ? b->next : NULL;
        a->next = NULL;
        if (b != NULL)
            b->next = NULL;
        para__task *m = heap_meld(a, b);
        m->next = pairs; /* left-to-right pass, stacked */
        pairs = m;
    }
    para__task *merged = NULL;
    while (pairs != NULL) { /* right-to-left pass */
        para__task *next = pairs->next;
        pairs->next = NULL;
        merged = heap_meld(merged, pairs);
        pairs = next;
    }
    n->heap_root = merged;
    root->child = root->next = NULL;
    return root;
}

/* Claim holder only: move the inbox into pending (FIFO) or the heap. */
static void grab_inbox(para_node_t *n)
{
    para__task *fifo = para__task_stack_take_all_fifo(&n->inbox);
    if (fifo == NULL)
        return;
    if ((n->flags & PARA_NODE_ORDERED) == 0) {
        if (n->pending_tail != NULL)
            n->pending_tail->next = fifo;
        else
            n->pending_head = fifo;
        while (fifo->next != NULL)
            fifo = fifo->next;
        n->pending_tail = fifo;
        return;
    }
    while (fifo != NULL) {
        para__task *next = fifo->next;
        fifo->next = fifo->child = NULL;
        n->heap_root = heap_meld(n->heap_root, fifo);
        fifo = next;
    }
}

/* Claim holder only: the next task the node may run, or NULL. */
static para__task *next_ready(para__run *run, para_node_t *n)
{
    if ((n->flags & PARA_NODE_ORDERED) == 0) {
        para__task *t = n->pending_head;
        if (t != NULL) {
            n->pending_head = t->next;
            if (n->pending_head == NULL)
                n->pending_tail = NULL;
            t->next = NULL; /* I1: it leaves the FIFO */
        }
        return t;
    }
    para__task *top = n->heap_root;
    if (top == NULL)
        return NULL;
    /* I4: no key below the expected one. */
    PARA_DEBUG_ASSERT(
        aborting(run) || top->batch->seq_begin > n->next_seq ||
        (top->batch->seq_begin == n->next_seq && top->path >= n->next_path));
    if (!aborting(run) &&
        (top->batch->seq_begin != n->next_seq || top->path != n->next_path))
        return NULL;
    heap_pop(n);
    if (top->path + 1 < n->path_count) {
        n->next_path = top->path + 1;
    } else {
        n->next_seq = top->batch->seq_end;
        n->next_path = 0;
    }
    return top;
}

static bool holds_leftovers(const para_node_t *n)
{
    return n->heap_root != NULL || n->pending_head != NULL;
}

/* ---- running a node on a batch ------------------------------------------ */

static void sweep_serial_nodes(para__worker *w, para__run *run);

void para__fail_node(para__worker *w, para__run *run, para_node_t *n, int rc)
{
    fail_run(w, run, PARA_ENODE, "node '%s' returned %d (%s)", n->name, rc,
             rc < 0 ? para_err_name(rc) : "user error code");
}

/* A flat-map made @p out items of @p in: keep the largest ratio, x16, for
 * the memory policy's footprints. */
void para__note_expansion(para_node_t *n, size_t in, size_t out)
{
    if (in == 0 || out <= in)
        return;
    uint64_t x16 = ((uint64_t)out * 16 + in - 1) / in;
    /* relaxed load + store: a maximum kept as an estimate; a lost update
     * is corrected by the next batch. */
    if (x16 > atomic_load_explicit(&n->expand_x16, memory_order_relaxed))
        atomic_store_explicit(&n->expand_x16,
                              (uint32_t)PARA_MIN(x16, UINT32_MAX),
                              memory_order_relaxed);
}

/* The input port of the batch the calling thread's node function is
 * working on, for para_input_port(); -1 outside a node call. Plain
 * thread-local state: only the thread itself reads and writes it. */
static _Thread_local int current_input_port PARA_TLS_FAST = -1;

int para_input_port(void)
{
    return current_input_port;
}

void para__set_input_port(int port)
{
    current_input_port = port;
}

/* The input items of the calling thread's node call, for
 * para_item_index(): base == NULL outside a call or when they are not
 * numbered. Thread-local like current_input_port. */
static _Thread_local struct {
    const unsigned char *base;
    size_t count, size;
    uint64_t seq; /* the number of the item at base */
} current_items PARA_TLS_FAST;

void para__item_index_enter(const void *base, size_t count, size_t size,
                            uint64_t seq)
{
    current_items.base = base;
    current_items.count = count;
    current_items.size = size;
    current_items.seq = seq;
}

void para__item_index_leave(void)
{
    current_items.base = NULL;
}

uint64_t para_item_index(const void *item)
{
    const unsigned char *p = item, *base = current_items.base;
    if (base == NULL || p < base || current_items.size == 0)
        return PARA_NO_INDEX;
    size_t k = (size_t)(p - base) / current_items.size;
    if (k >= current_items.count)
        return PARA_NO_INDEX;
    return current_items.seq + k;
}

/* para__filter_items() for items of a size the compiler knows (inlined
 * with a constant @p is): every item is copied to the next free slot,
 * which only a kept item then claims. No branch on the predicate's answer
 * (it mispredicts often when kept and dropped items are mixed, as in w9),
 * and a fixed-size copy is one or two moves instead of a call to memcpy.
 * Larger items keep the branch: copying every one would cost more.
 * @p keep: a batch filter's mask for the @p m items (then @p fn is
 * unused), or NULL to call @p fn per item. */
static inline __attribute__((always_inline)) int
filter_small(para_filter_fn fn, void *ctx, const unsigned char *keep,
             const unsigned char *src, size_t m, const size_t is,
             unsigned char *dst, size_t *done, size_t *kept)
{
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        int yes;
        if (keep != NULL) {
            yes = keep[i] != 0;
        } else {
            yes = fn(ctx, src + i * is);
            if (PARA_UNLIKELY(yes < 0)) {
                *done = i;
                *kept = k;
                return yes;
            }
        }
        memcpy(dst + k * is, src + i * is, is); /* k <= i < m: in room */
        k += yes > 0;
    }
    *done = m;
    *kept = k;
    return 0;
}

static int filter_any(para_filter_fn fn, void *ctx, const unsigned char *keep,
                      const unsigned char *src, size_t m, size_t is,
                      unsigned char *dst, size_t *done, size_t *kept)
{
    switch (is) {
    case 8:
        return filter_small(fn, ctx, keep, src, m, 8, dst, done, kept);
    case 16:
        return filter_small(fn, ctx, keep, src, m, 16, dst, done, kept);
    case 24:
        return filter_small(fn, ctx, keep, src, m, 24, dst, done, kept);
    case 32:
        return filter_small(fn, ctx, keep, src, m, 32, dst, done, kept);
    default:
        break;
    }
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        int yes = keep != NULL ? keep[i] != 0 : fn(ctx, src + i * is);
        if (yes < 0) {
            *done = i;
            *kept = k;
            return yes;
        }
        if (yes > 0)
            memcpy(dst + k++ * is, src + i * is, is);
    }
    *done = m;
    *kept = k;
    return 0;
}

int para__filter_items(const para_node_t *n, const unsigned char *src, size_t m,
                       unsigned char *dst, size_t *done, size_t *kept)
{
    const size_t is = n->in_size;
    if (!n->filter_batched)
        return filter_any(n->fn.filter, n->ctx, NULL, src, m, is, dst, done,
                          kept);
    unsigned char keep[PARA__FILTER_TILE];
    size_t at = 0, k = 0;
    while (at < m) {
        size_t t = PARA_MIN(m - at, (size_t)PARA__FILTER_TILE), d, got;
        int rc = n->fn.filter_batch(n->ctx, src + at * is, t, keep);
        if (rc != 0) {
            *done = at; /* a failing call decides none of its items */
            *kept = k;
            return rc;
        }
        (void)filter_any(NULL, NULL, keep, src + at * is, t, is, dst + k * is,
                         &d, &got);
        k += got;
        at += t;
    }
    *done = m;
    *kept = k;
    return 0;
}

/* Run @p n on @p in; on success *out is the output batch (NULL for sinks).
 * On failure the run is failed, *out is NULL, and nonzero is returned. */
static int process(para__worker *w, para__run *run, para_node_t *n,
                   para__task *t, para__batch **out)
{
    para__batch *in = t->batch;
    const size_t count = in->count;
    const size_t is = n->in_size, os = n->out_size;
    const unsigned char *ip = in->data;
    void *ctx = n->ctx;
    para__batch *o = NULL;
    int rc = 0;

    *out = NULL;
    if (!para__is_sink(n)) {
        o = para__batch_alloc(cache_of(w), run, para__fuse_readers(n),
                              para__mul_sat(count ? count : 1, os));
        if (o == NULL) {
            fail_run(w, run, PARA_ENOMEM,
                     "out of memory for the output of node '%s'", n->name);
            return PARA_ENOMEM;
        }
        o->seq_begin = in->seq_begin;
        o->seq_end = in->seq_end;
        o->path = t->path;
        para__batch_join_family(o, in);
    }

    /* Items of the input this call took or moved (owned.c): for per-item
     * functions those before the one that failed, for batch functions all
     * of them or none. */
    size_t done = count;
    if (o != NULL)
        para__owned_begin_output(n, in, o);
    current_input_port = para__is_source(n) ? -1 : (int)t->in_port;
    if (n->numbered && !para__is_source(n))
        para__item_index_enter(ip, count, is, in->seq_begin);
    switch (n->kind) {
    case PARA__KIND_MAP: {
        para_map_fn fn = n->fn.map;
        unsigned char *op = o->data;
        size_t i = 0;
        for (; i < count; i++)
            if ((rc = fn(ctx, ip + i * is, op + i * os)) != 0)
                break;
        o->count = done = i; /* a failed item's output is not an item */
        break;
    }
    case PARA__KIND_MAP_BATCH:
        rc = n->fn.map_batch(ctx, ip, o->data, count);
        /* A failing batch map releases what it wrote itself (graph.h). */
        o->count = rc == 0 ? count : 0;
        break;
    case PARA__KIND_FILTER: {
        size_t kept = 0;
        if (in->owner == NULL) {
            rc = para__filter_items(n, ip, count, o->data, &done, &kept);
            o->count = kept;
            break;
        }
        /* Owned items: a dropped one is released at once. */
        unsigned char keep[PARA__FILTER_TILE];
        size_t tile_start = 0, tile_end = 0;
        for (done = 0; done < count; done++) {
            int yes;
            if (n->filter_batched) {
                if (done == tile_end) {
                    size_t len =
                        PARA_MIN(count - done, (size_t)PARA__FILTER_TILE);
                    rc = n->fn.filter_batch(ctx, ip + done * is, len, keep);
                    if (rc != 0)
                        break; /* none of the tile decided */
                    tile_start = done;
                    tile_end = done + len;
                }
                yes = keep[done - tile_start] != 0;
            } else {
                yes = n->fn.filter(ctx, ip + done * is);
                if (yes < 0) {
                    rc = yes;
                    break;
                }
            }
            if (yes > 0)
                memcpy(o->data + kept++ * is, ip + done * is, is);
            else
                para__owned_drop(in, done); /* filtered out: released now */
        }
        o->count = kept;
        break;
    }
    case PARA__KIND_FLAT_MAP:
    case PARA__KIND_FLAT_MAP_BATCH: {
        para_emitter_t e = {
            .cache = cache_of(w), .run = run, .batch = o, .item_size = os};
        if (n->kind == PARA__KIND_FLAT_MAP) {
            for (done = 0; done < count && rc == 0; done++)
                rc = n->fn.flat_map(ctx, ip + done * is, &e);
            if (rc != 0)
                done--;
        } else {
            rc = n->fn.flat_map_batch(ctx, ip, count, &e);
        }
        o = e.batch;
        if (e.failed && rc == 0)
            rc = PARA_ENOMEM;
        para__note_expansion(n, count, o->count);
        break;
    }
    case PARA__KIND_SINK: {
        para_sink_fn fn = n->fn.sink;
        for (done = 0; done < count; done++)
            if ((rc = fn(ctx, ip + done * is)) != 0)
                break;
        break;
    }
    case PARA__KIND_SINK_BATCH:
        rc = n->fn.sink_batch(ctx, ip, count);
        break;
    case PARA__KIND_KERNEL:
        /* Only empty batches run here (see para__device_route()); a run
         * without a device never starts with such a node. */
        if (count != 0)
            para__panic("kernel node '%s' ran on the CPU", n->name);
        o->count = 0;
        break;
    case PARA__KIND_REDUCE:
        rc = para__reduce_fold(n, w->id, t, ip, count);
        break;
    case PARA__KIND_COLLECT:
        if (count > n->collect_capacity - n->collect_pos) {
            current_input_port = -1;
            para__item_index_leave();
            fail_run(w, run, PARA_EOVERFLOW,
                     "collect '%s': more than %zu items", n->name,
                     n->collect_capacity);
            return PARA_EOVERFLOW;
        }
        if (count > 0)
            memcpy((unsigned char *)n->collect_array + n->collect_pos * is, ip,
                   count * is);
        n->collect_pos += count;
        break;
    default:
        para__panic("node '%s': kind %d cannot process", n->name, n->kind);
    }
    current_input_port = -1;
    para__item_index_leave();
    if (in->owner != NULL)
        para__owned_input_done(n, in, rc == 0 ? count : done, rc == 0);

    if (rc != 0) {
        if (o != NULL)
            para__batch_free(cache_of(w), run, o);
        para__fail_node(w, run, n, rc);
        return rc;
    }
    *out = o;
    return 0;
}

/* Hand @p out to every successor of @p n. @p held: units the caller gives
 * up (1 for a task, 0 for a source pull). */
void para__deliver(para__worker *w, para__run *run, para_node_t *n,
                   para__batch *out, int held)
{
    if (out->count != 0) {
        uint64_t extra = para__owned_count_bytes(n, out);
        if (PARA_UNLIKELY(extra > (uint64_t)INT64_MAX)) {
            fail_run(w, run, PARA_EOVERFLOW,
                     "node '%s': the bytes its %zu items own overflow the "
                     "byte count",
                     n->name, out->count);
            para__batch_free(cache_of(w), run, out);
            units_add(run, -held);
            return;
        }
        out->extra_bytes = (size_t)extra;
        if (extra != 0)
            para__bytes_add(run, (int64_t)extra);
    }
    if (out->count == 0 && !n->forward_empty) {
        para__batch_free(cache_of(w), run, out);
        units_add(run, -held);
        return;
    }
    /* A fused fan-out (fuse.h) makes one task, of the first successor in
     * delivery order: it runs every successor's chain. */
    unsigned k = para__fuse_readers(n);
    uint32_t queued = 0;     /* runnable tasks this delivery made */
    para__task *here = NULL; /* a serial tail's task, run below */
    units_add(run, (int64_t)k - held);
    para__remote *remote = run->rt->remote;
    for (unsigned j = 0; j < k; j++) {
        unsigned i = n->succ_order[j];
        para_node_t *s = n->succs[i];
        para__task *t = &out->tasks[n->fuse_fan ? 0 : i];
        t->batch = out;
        t->node = s;
        t->in_port = n->succ_port[i];
        t->path = out->path + s->in_path_offset[t->in_port];
        t->next = t->child = NULL;
        if (PARA_UNLIKELY(remote != NULL) && remote->route(remote, w, run, t))
            continue; /* another process runs it (runtime/mpi) */
        if (PARA_UNLIKELY(run->policy->task_queued != NULL))
            run->policy->task_queued(run->policy_state, s, out->count);
        if (!s->serial) {
            push_local(w, run, t);
            queued++;
        } else if (s == n->fuse_tail && w != NULL) {
            if (try_claim(s))
                here = t; /* a free serial tail (fuse.h): run it inline */
            else if (tail_hold(w, run, t))
                queued++;
        } else if (inbox_push(w, run, s, t)) {
            queued++;
        }
    }
    /* Wake a parked worker only for surplus work: a worker delivering the
     * output of a parallel node's task (or of a source pull) goes straight
     * back to its loop and pops the newest of these tasks itself, so one
     * of them needs nobody else. A serial node's drain keeps the worker
     * busy, and other threads (w == NULL) run nothing: every task counts.
     * A parked worker that misses such a task loses nothing: its owner
     * runs it next. (A source with more to pull is surplus work too:
     * source_pull() wakes a worker for it.) */
    if (w != NULL && !n->serial && queued > 0)
        queued--;
    notify(run->rt, queued);
    if (here != NULL)
        run_inline(w, run, here);
}

void para__submit_task(para__worker *w, para__run *run, para__task *t)
{
    if (t->node->serial)
        inbox_push(w, run, t->node, t);
    else
        push_local(w, run, t);
    notify(run->rt, 1);
}

/* Learn @p n's cost per input item from a task of @p items that took @p dt:
 * a moving average that follows faster tasks quickly (halfway) and slower
 * ones slowly (1/8 of the way), and that a task slower than 4x the
 * estimate (a thread preempted in the middle of it, a page fault) raises
 * by 1/8 only, so that one outlier does not shrink every batch after it. */
void para__learn_cost(para_node_t *n, size_t items, uint64_t dt)
{
    if (items == 0)
        return;
    uint64_t x = dt * 1024u / items;
    /* relaxed load + store: an estimate; a lost update is harmless. */
    uint64_t est = atomic_load_explicit(&n->cost_x1024, memory_order_relaxed);
    uint64_t next;
    if (est == 0)
        next = x != 0 ? x : 1;
    else if (x > 4 * est)
        next = est + est / 8;
    else if (x >= est)
        next = est + (x - est) / 8;
    else
        next = est - (est - x) / 2; /* a cold first task: recover fast */
    atomic_store_explicit(&n->cost_x1024, next != 0 ? next : 1,
                          memory_order_relaxed);
}

/* One task: run it (unless aborting), release its input, pass on output. */
static void run_task(para__worker *w, para__run *run, para__task *t)
{
    para_node_t *n = t->node;
    para__batch *in = t->batch;
    para__batch *out = NULL;
    if (PARA_UNLIKELY(run->policy->task_started != NULL))
        run->policy->task_started(run->policy_state, n, in->count);
    if (PARA_UNLIKELY(n->placement != PARA__PLACE_CPU) && !aborting(run) &&
        run->rt->offload.route(w, run, t))
        return; /* the device host thread owns the task and its unit */
    if (para__fuse_task(n, t) && !aborting(run)) {
        /* A fused chain or fan-out (fuse.h): the task runs every stage and
         * counts their statistics; its outputs are the last stages'. */
        para__fuse_out outs[PARA__FUSE_MAX_FAN];
        unsigned n_outs = 0;
        if (para__fuse_run(w, run, t, outs, &n_outs) != 0)
            n_outs = 0;
        para__counter_add(&w->c_tasks, 1);
        cancel_check(w, run);
        para__batch_release(cache_of(w), run, in);
        if (n_outs > 0 && !aborting(run)) {
            /* The task's unit goes with the last delivery: until then the
             * run cannot end under the others. */
            for (unsigned i = 0; i + 1 < n_outs; i++)
                para__deliver(w, run, outs[i].node, outs[i].batch, 0);
            para__deliver(w, run, outs[n_outs - 1].node, outs[n_outs - 1].batch,
                          1);
        } else {
            for (unsigned i = 0; i < n_outs; i++)
                para__batch_free(cache_of(w), run, outs[i].batch);
            units_add(run, -1);
        }
        return;
    }
    if (!aborting(run)) {
        uint64_t t0 = para__now_ns();
        int rc = process(w, run, n, t, &out);
        uint64_t dt = para__now_ns() - t0;
        if (PARA_UNLIKELY(n->placement == PARA__PLACE_MIXED) && rc == 0)
            run->rt->offload.note_cpu(n, in->count, dt);
        /* Statistics and the cost estimate: in this worker's own slot
         * (no locked instruction, no shared line). */
        para__node_wstat *st = para__wstat(w, n);
        para__counter_add(&st->busy_ns, dt);
        para__counter_add(&w->c_busy_ns, dt);
        if (rc == 0) {
            para__learn_cost(n, in->count, dt);
            para__counter_add(&st->items_in, in->count);
            para__counter_add(&st->batches, 1);
            if (out != NULL)
                para__counter_add(&st->items_out, out->count);
        }
        para__trace_task(w->trace, n->index, t0, t0 + dt, in->count,
                         out != NULL ? out->count : 0);
    }
    para__counter_add(&w->c_tasks, 1);
    cancel_check(w, run);
    para__batch_release(cache_of(w), run, in);
    if (out != NULL && !aborting(run))
        para__deliver(w, run, n, out, 1);
    else {
        if (out != NULL)
            para__batch_free(cache_of(w), run, out);
        units_add(run, -1);
    }
}

/* Claim every serial node once so that leftovers are released (abort). */
static void sweep_serial_nodes(para__worker *w, para__run *run)
{
    para_graph_t *g = run->graph;
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        if (n->serial && try_claim(n))
            push_local(w, run, &n->drain_task);
    }
}

/* The drain task of serial node @p n; the caller holds n->claimed. */
static void drain(para__worker *w, para__run *run, para_node_t *n)
{
    /* I3: only the claim holder drains (relaxed: our own claim). */
    PARA_DEBUG_ASSERT(atomic_load_explicit(&n->claimed, memory_order_relaxed) ==
                      1);
    for (;;) {
        for (;;) {
            grab_inbox(n);
            para__task *t = next_ready(run, n);
            if (t == NULL)
                break;
            run_task(w, run, t);
        }
        /* Leftovers are read while we still hold the claim: after the
         * release they belong to the next holder. */
        bool leftovers = holds_leftovers(n);
        /* seq_cst store, then seq_cst loads: the holder's half of the Dekker
         * patterns with inbox_push() (a delivery after our last grab) and
         * with fail_run()'s sweep (an abort after our last check; if the
         * sweep's claim failed because we held it, we see `aborting`). */
        atomic_store_explicit(&n->claimed, 0, memory_order_seq_cst);
        bool again = !para__task_stack_empty(&n->inbox) ||
                     (leftovers && atomic_load_explicit(&run->aborting,
                                                        memory_order_seq_cst));
        if (!again || !try_claim(n))
            return;
    }
}

/* Take held task @p i out of @p w's tail hold (order kept). */
static para__task *tail_take(para__worker *w, unsigned i)
{
    para__task *t = w->tail_held[i];
    w->n_tail_held--;
    for (unsigned k = i; k < w->n_tail_held; k++)
        w->tail_held[k] = w->tail_held[k + 1];
    return t;
}

/* Task @p t of a serial tail whose claim was busy: hold it back, to run it
 * here later (tail_retry()). A full hold hands its oldest task to the
 * tail's inbox; returns true if that queued the tail's drain task. */
static bool tail_hold(para__worker *w, para__run *run, para__task *t)
{
    bool queued = false;
    if (w->n_tail_held == PARA__TAIL_HOLD) {
        para__task *oldest = tail_take(w, 0);
        queued = inbox_push(w, run, oldest->node, oldest);
    }
    w->tail_held[w->n_tail_held++] = t;
    para__counter_add(&para__wstat(w, t->node)->held_batches, 1);
    return queued;
}

/* Task @p t (holding its unit) of a serial tail (fuse.h) whose claim the
 * delivering worker won: it runs here, on the delivering worker, as a
 * drain would run it (same statistics, trace, failure and cancellation),
 * after the tasks of the same tail this worker held back; then the
 * deliveries that came meanwhile are drained and the claim is released as
 * in drain(). Only an unordered node: its batches may run in any order.
 * The claim's CAS (seq_cst) and the previous holder's release (seq_cst)
 * order its calls one after another. A serial node has no tail itself, so
 * nothing here adds to the hold. */
static void run_inline(para__worker *w, para__run *run, para__task *t)
{
    para_node_t *s = t->node;
    PARA_DEBUG_ASSERT((s->flags & PARA_NODE_ORDERED) == 0);
    for (unsigned i = 0; i < w->n_tail_held;) {
        if (w->tail_held[i]->node != s) {
            i++;
            continue;
        }
        para__counter_add(&para__wstat(w, s)->inline_batches, 1);
        run_task(w, run, tail_take(w, i));
    }
    para__counter_add(&para__wstat(w, s)->inline_batches, 1);
    run_task(w, run, t);
    drain(w, run, s);
}

/* Run the held tasks whose tails are free now (run_inline()); with
 * @p flush, hand the others to their tails' inboxes, where the claim
 * holder drains them: the worker is about to look for work elsewhere or
 * to park, and a held task must not wait for it (its unit keeps the run
 * open). */
static void tail_retry(para__worker *w, para__run *run, bool flush)
{
    uint32_t queued = 0;
    const para_node_t *busy = NULL; /* its claim failed on this pass */
    for (unsigned i = 0; i < w->n_tail_held;) {
        para_node_t *s = w->tail_held[i]->node;
        if (s != busy && try_claim(s))
            run_inline(w, run, tail_take(w, i)); /* and s's other tasks */
        else if (!flush) {
            busy = s; /* its other held tasks need not try again */
            i++;      /* kept for the next try */
        } else if (inbox_push(w, run, s, tail_take(w, i)))
            queued++;
    }
    /* This worker runs the last drain task it queued itself. */
    if (queued > 1)
        notify(run->rt, queued - 1);
}

static void execute(para__worker *w, para__run *run, para__task *t)
{
    if (t->batch == NULL)
        drain(w, run, t->node);
    else
        run_task(w, run, t);
}

/* ---- sources ------------------------------------------------------------ */

/* What the nodes learned so far: the source batch size (items) that gives
 * the most expensive node's task its target time (the node's batch_us, or
 * the run's), the cost of a node per source item being its learned cost
 * per input item times its input items over the source items pulled; 0
 * while nothing is measured. Run-wide: in a
 * graph with several sources the estimate mixes them, as work_ns did. */
static size_t learned_items(const para__run *run)
{
    /* Estimates, summed over the workers' slots (stale values only change
     * a batch size): the source items pulled so far. */
    const para_graph_t *g = run->graph;
    uint64_t items = 0;
    para__node_counts c;
    for (unsigned i = 0; i < g->n_sources; i++) {
        para__node_counts_get(g->sources[i], &c);
        items += c.items_out;
    }
    if (items == 0)
        return 0;
    double best = 0.0;
    for (unsigned i = 0; i < g->n_nodes; i++) {
        const para_node_t *k = g->nodes[i];
        if (PARA_UNLIKELY(k->placement != PARA__PLACE_CPU)) {
            /* Kernel nodes: the device side sizes its launches, and a
             * MIXED node's CPU cost says nothing of its device share; keep
             * the graph-wide estimate (work on the CPU per source item). */
            uint64_t work = 0;
            const para_runtime_t *rt = run->rt;
            for (unsigned j = 0; j < rt->n_workers; j++)
                /* relaxed: another worker's counter, an estimate; base_*
                 * was written before the run started. */
                work += atomic_load_explicit(&rt->workers[j].c_busy_ns,
                                             memory_order_relaxed) -
                        rt->workers[j].base_busy_ns;
            if (work == 0)
                return 0;
            best = (double)run->target_batch_ns * (double)items / (double)work;
            break;
        }
        if (para__is_source(k))
            continue;
        uint64_t cost =
            atomic_load_explicit(&k->cost_x1024, memory_order_relaxed);
        uint64_t away =
            atomic_load_explicit(&k->remote_busy_ns, memory_order_relaxed);
        if (cost == 0 && away == 0)
            continue;
        para__node_counts_get(k, &c);
        uint64_t in = c.items_in;
        /* Per source item: cost x (items in / source items), plus the
         * node's time on other processes (runtime/mpi). */
        double busy = (double)cost / 1024.0 * (double)in + (double)away;
        if (busy <= 0.0)
            continue;
        uint64_t target = k->batch_ns != 0 ? k->batch_ns : run->target_batch_ns;
        double want = (double)target * (double)items / busy;
        if (best == 0.0 || want < best)
            best = want;
    }
    if (best == 0.0)
        return 0;
    return best < 1.0                      ? 1
           : best > (double)(SIZE_MAX / 2) ? SIZE_MAX / 2
                                           : (size_t)best;
}

/* learned_items() as this worker last computed it. The sum reads every
 * node's slot of every worker (nodes x workers lines that other workers
 * write), so a pull does it only every LEARN_REFRESH_PULLS pulls once
 * there is an estimate, and at every pull until then. A batch takes about
 * the target time, so the copy is a few of this worker's batches old: the
 * estimate it sums moves slower than that (para__learn_cost()). Plain
 * fields: only the owner reads and writes them (the sum's own loads are
 * relaxed, see there). */
static size_t learned_estimate(para__worker *w, para__run *run)
{
    if (w->learned_pulls > 0) {
        w->learned_pulls--;
        return w->learned_items;
    }
    size_t learned = learned_items(run);
    w->learned_items = learned;
    w->learned_pulls = learned != 0 ? LEARN_REFRESH_PULLS - 1 : 0;
    return learned;
}

static size_t source_batch_items(para__worker *w, para__run *run,
                                 para_node_t *s)
{
    if (run->forced_batch_items != 0)
        return run->forced_batch_items;
    /* The cache bounds a batch (bytes along its widest edge), but never
     * below MIN_CAP_ITEMS items: large items still travel several at a
     * time. Items that each own more than a sixteenth of those bytes
     * (1 MiB blocks of a file to compress: each is a task's work, and
     * sixteen in one batch leave the other workers idle) are bounded by
     * what they own, down to one item; and while their size is unknown (no
     * item_bytes hint, no batch counted yet) a pull takes one item. */
    uint64_t owned = para__owned_item_estimate(s);
    bool unknown = false;
    if (s->owned_bytes != NULL && owned == 0) {
        /* A hint (relaxed sums); a second early pull of one item costs
         * nothing. Summed over the workers' slots only in this case. */
        para__node_counts c;
        para__node_counts_get(s, &c);
        unknown = c.batches == 0;
    }
    size_t cap =
        unknown ? 1
        : owned > run->batch_bytes / MIN_CAP_ITEMS
            ? PARA_MAX((size_t)(run->batch_bytes / (s->widest_item + owned)),
                       (size_t)1)
            : PARA_MAX(run->batch_bytes / s->widest_item,
                       (size_t)MIN_CAP_ITEMS);
    size_t n = PARA_MIN(w->ramp_items, cap);
    size_t learned = learned_estimate(w, run);
    if (learned != 0 && learned < n)
        n = learned;
    if (w->ramp_items < cap && (learned != 0 || !run->ramp_after_learning))
        w->ramp_items = PARA_MIN(cap, w->ramp_items * 2);
    /* A node's min_batch hint (the largest downstream) raises it. */
    n = PARA_MIN(PARA_MAX(n, s->down_min_batch), cap);
    /* A splittable source leaves work for every worker and device near its
     * end: no batch takes more than 1/(2 x places) of what is left (but not
     * less than the ramp's start, or than a min_batch hint); the devices'
     * host threads count as places, so that the last batches are fine
     * enough to spread over the devices by their finish times, and so do
     * the workers of other ranks that take this run's batches
     * (runtime/mpi). */
    unsigned workers =
        run->rt->n_workers + run->rt->helper_threads + run->remote_workers;
    if (s->kind != PARA__KIND_SOURCE_FN && workers > 1) {
        uint64_t total = s->kind == PARA__KIND_RANGE
                             ? s->range_end - s->range_begin
                             : (uint64_t)s->array_count;
        /* relaxed: a hint; the fetch_add in source_fill() decides. */
        uint64_t at =
            atomic_load_explicit(&s->src_cursor, memory_order_relaxed);
        uint64_t share = at < total ? (total - at) / (2u * workers) : 0;
        size_t floor = PARA_MAX((size_t)RAMP_START_ITEMS, s->down_min_batch);
        floor = PARA_MAX(floor, learned / END_SHARE_MIN_FRACTION);
        if ((uint64_t)n > share)
            n = (size_t)PARA_MAX(share, (uint64_t)PARA_MIN(n, floor));
    }
    n = PARA_MAX(n, (size_t)1);
    /* Within the size class of its items, the batch of the widest edge
     * included (batch.h), unless a min_batch hint wants more. */
    size_t fit = para__batch_fit_items(n, s->widest_item);
    return fit >= s->down_min_batch ? fit : n;
}

/* Fill a batch from @p s. Returns the batch; or NULL with *exhausted set
 * when the source has nothing left (or failed), or with *held set when the
 * policy holds the source back. */
static para__batch *source_fill(para__worker *w, para__run *run, para_node_t *s,
                                bool *exhausted, bool *held)
{
    para__family *family = NULL;
    size_t want = run->policy->admit(run->policy_state, w, run, s,
                                     source_batch_items(w, run, s), &family);
    if (want == 0) {
        *held = true;
        return NULL;
    }
    para__batch *b = NULL;
    if (s->kind == PARA__KIND_SOURCE_FN) {
        b = para__batch_alloc(cache_of(w), run, para__fuse_readers(s),
                              para__mul_sat(want, s->out_size));
        if (b == NULL)
            goto nomem;
        b->family = family;
        family = NULL;
        size_t written = 0;
        uint64_t t0 = para__now_ns(), key0 = 0, key1 = 0;
        bool done = false;
        int rc = s->src_split != NULL
                     ? s->src_split(s->ctx, b->data, want, &written, &key0,
                                    &key1, &done)
                     : s->fn.source(s->ctx, b->data, want, &written);
        para__counter_add(&para__wstat(w, s)->busy_ns, para__now_ns() - t0);
        if (rc != 0 || written == 0 || written > want) {
            para__batch_free(cache_of(w), run, b);
            if (rc == 0 && written == 0 && s->src_split != NULL && !done)
                return NULL; /* another puller holds what is left */
            *exhausted = true;
            if (rc != 0)
                para__fail_node(w, run, s, rc);
            else if (written > want)
                fail_run(w, run, PARA_EINVAL,
                         "source '%s' wrote %zu items into room for "
                         "%zu",
                         s->name, written, want);
            return NULL;
        }
        b->count = written;
        para__owned_begin_output(s, NULL, b);
        if (s->src_split != NULL) {
            b->seq_begin = key0;
            b->seq_end = key1;
            *exhausted = done;
            return b;
        }
        b->seq_begin = s->src_seq; /* claim-owned: one puller at a time */
        s->src_seq += written;
        b->seq_end = s->src_seq;
        return b;
    }
    uint64_t total = s->kind == PARA__KIND_RANGE ? s->range_end - s->range_begin
                                                 : (uint64_t)s->array_count;
    /* relaxed: the cursor only hands out disjoint index ranges; the items
     * are published to other workers through the deque. */
    uint64_t first =
        atomic_fetch_add_explicit(&s->src_cursor, want, memory_order_relaxed);
    if (first >= total) {
        *exhausted = true;
        if (family != NULL)
            para__family_unref(run, family);
        return NULL;
    }
    size_t n = (size_t)PARA_MIN((uint64_t)want, total - first);
    if (first + n >= total)
        *exhausted = true;
    /* An array's batches are views of the array, never copies: it is
     * borrowed and read-only while the graph runs (graph.h), and every
     * consumer only reads its input. A fused range (fuse.h) leaves its
     * indices to the chains it feeds (seq_begin..). */
    bool view = s->kind == PARA__KIND_ARRAY || s->src_fused;
    b = para__batch_alloc(cache_of(w), run, para__fuse_readers(s),
                          view ? 0 : para__mul_sat(n, s->out_size));
    if (b == NULL)
        goto nomem;
    b->family = family;
    family = NULL;
    if (s->kind == PARA__KIND_ARRAY) {
        b->data = (unsigned char *)s->array + first * s->out_size;
    } else if (!s->src_fused) {
        uint64_t *out = (uint64_t *)(void *)b->data;
        uint64_t v = s->range_begin + first;
        for (size_t i = 0; i < n; i++)
            out[i] = v + i;
    }
    b->count = n;
    b->seq_begin = first;
    b->seq_end = first + n;
    return b;
nomem:
    if (family != NULL)
        para__family_unref(run, family);
    *exhausted = true;
    fail_run(w, run, PARA_ENOMEM, "out of memory in source '%s'", s->name);
    return NULL;
}

/* Time sources were held back: from the first refused pull to the next
 * admitted one (run-wide). */
static void note_hold(para__run *run, bool refused)
{
    /* relaxed: statistics. */
    if (refused) {
        uint64_t zero = 0;
        if (atomic_load_explicit(&run->held_since, memory_order_relaxed) == 0)
            atomic_compare_exchange_strong_explicit(
                &run->held_since, &zero, para__now_ns(), memory_order_relaxed,
                memory_order_relaxed);
        return;
    }
    if (atomic_load_explicit(&run->held_since, memory_order_relaxed) == 0)
        return;
    uint64_t since =
        atomic_exchange_explicit(&run->held_since, 0, memory_order_relaxed);
    if (since != 0)
        atomic_fetch_add_explicit(&run->hold_ns, para__now_ns() - since,
                                  memory_order_relaxed);
}

/* Pull one batch from @p s. Returns true if a batch was delivered. */
static bool source_pull(para__worker *w, para__run *run, para_node_t *s)
{
    bool serial = para__source_serial(s);
    /* relaxed: a first guess for the CAS. */
    uint64_t st = atomic_load_explicit(&s->src_state, memory_order_relaxed);
    do {
        if ((st & PARA__SRC_EXHAUSTED) != 0 || (serial && st != 0))
            return false;
        /* acquire: for a serial source, see the previous puller's writes
         * (src_seq, the user's context); pairs with the release in the
         * fetch_sub below. */
    } while (!atomic_compare_exchange_weak_explicit(
        &s->src_state, &st, st + PARA__SRC_PULLER, memory_order_acquire,
        memory_order_relaxed));

    uint64_t pulled = para__trace_now(w->trace);
    bool exhausted = aborting(run), held = false;
    para__batch *b =
        exhausted ? NULL : source_fill(w, run, s, &exhausted, &held);
    if (held)
        note_hold(run, true);
    else if (b != NULL)
        note_hold(run, false);
    if (b != NULL) {
        para__counter_add(&w->c_source_batches, 1);
        para__trace_source(w->trace, s->index, pulled, b->count);
        /* Statistics and the cost estimate (learned_items()). */
        para__counter_add(&para__wstat(w, s)->items_out, b->count);
        para__counter_add(&para__wstat(w, s)->batches, 1);
        para__deliver(w, run, s, b, 0);
    }
    if (exhausted) {
        /* relaxed: ordered with the fetch_sub below by being an RMW on the
         * same object (modification order). */
        atomic_fetch_or_explicit(&s->src_state, PARA__SRC_EXHAUSTED,
                                 memory_order_relaxed);
        if (run->budget != NULL)
            para__budget_source_done(run, s->source_slot);
    }
    /* acq_rel: release publishes src_seq to the next serial puller; the
     * last puller out of an exhausted source drops the source's unit. */
    uint64_t prev = atomic_fetch_sub_explicit(&s->src_state, PARA__SRC_PULLER,
                                              memory_order_acq_rel);
    if (prev - PARA__SRC_PULLER == PARA__SRC_EXHAUSTED)
        units_add(run, -1);
    else if (b != NULL && !exhausted)
        /* The source has more: surplus work for a parked worker (this one
         * runs the batch it just pulled; para__deliver() woke nobody for
         * it). After the state's release, so that the woken worker finds
         * a callback source free. */
        notify(w->rt, 1);
    return b != NULL;
}

static bool try_sources(para__worker *w, para__run *run)
{
    para_graph_t *g = run->graph;
    unsigned n = g->n_sources;
    bool abort_now = aborting(run);
    for (unsigned k = 0; k < n; k++) {
        unsigned idx = (w->next_source + k) % n;
        para_node_t *s = g->sources[idx];
        /* relaxed: a hint; source_pull() decides with a CAS. */
        if (atomic_load_explicit(&s->src_state, memory_order_relaxed) &
            PARA__SRC_EXHAUSTED)
            continue;
        if (!abort_now && !para__sources_open(run)) {
            para__counter_add(&w->c_source_holds, 1);
            note_hold(run, true);
            return false;
        }
        if (source_pull(w, run, s)) {
            w->next_source = idx + 1;
            return true;
        }
    }
    return false;
}

/* ---- stealing and parking ---------------------------------------------- */

/* A victim on another NUMA node: take more of its tasks at once (the plan
 * says how many) into our own deque, where we run them next. */
static void steal_more(para__worker *w, para__run *run, unsigned victim,
                       para__deque *q)
{
    uint32_t moved = 0;
    unsigned extra = para__topology_steal_count(&w->rt->plan, w->id, victim,
                                                para__deque_size_estimate(q)) -
                     1;
    for (unsigned i = 0; i < extra; i++) {
        para__counter_add(&w->c_steal_attempts, 1);
        void *t = para__deque_steal(q);
        if (t == PARA__DEQUE_EMPTY || t == PARA__DEQUE_ABORT)
            break;
        para__counter_add(&w->c_steals, 1);
        push_local(w, run, t);
        moved++;
    }
    /* They are stealable again, from our deque: wake as many sleepers. */
    if (moved > 0)
        notify(w->rt, moved);
}

/* Steal nearest first: the victim list comes from the topology plan, each
 * distance level shuffled again after a sweep that found nothing, so that
 * thieves at the same distance do not all hit the same victim. */
static para__task *steal(para__worker *w, para__run *run)
{
    para_runtime_t *rt = w->rt;
    unsigned n = rt->n_workers;
    if (n < 2)
        return NULL;
    const unsigned *victims = &rt->plan.victims[(size_t)w->id * (n - 1)];
    for (unsigned k = 0; k < n - 1; k++) {
        para__deque *q = &rt->workers[victims[k]].deque;
        for (unsigned r = 0; r <= STEAL_RETRIES; r++) {
            para__counter_add(&w->c_steal_attempts, 1);
            void *t = para__deque_steal(q);
            if (t == PARA__DEQUE_EMPTY)
                break;
            if (t != PARA__DEQUE_ABORT) {
                para__counter_add(&w->c_steals, 1);
                para__trace_steal(w->trace, victims[k]);
                steal_more(w, run, victims[k], q);
                return t;
            }
        }
    }
    para__topology_shuffle_levels(&rt->plan, w->id, &w->rng);
    return NULL;
}

static bool work_visible(para__worker *w, para__run *run)
{
    para_runtime_t *rt = w->rt;
    /* seq_cst: pairs with the store in para_run_cancel() (see there). */
    if (cancel_pending(rt, run, memory_order_seq_cst))
        return true;
    for (unsigned i = 0; i < rt->n_workers; i++)
        if (para__deque_size_estimate(&rt->workers[i].deque) > 0)
            return true;
    /* relaxed: ordered after our eventcount prepare (seq_cst RMW); the
     * injector's notify RMW publishes the push (eventcount.h). */
    if (!para__task_stack_peek_empty(&rt->wake.inject))
        return true;
    para_graph_t *g = run->graph;
    /* Heuristic reads; a missed change is caught by notify (a family that
     * gives its bytes back notifies). */
    bool room = aborting(run) || para__sources_open(run);
    for (unsigned i = 0; room && i < g->n_sources; i++) {
        para_node_t *s = g->sources[i];
        uint64_t st = atomic_load_explicit(&s->src_state, memory_order_relaxed);
        /* A splittable source takes any number of pullers at once; a
         * callback source only one. */
        if ((st & PARA__SRC_EXHAUSTED) == 0 &&
            (st == 0 || !para__source_serial(s)))
            return true;
    }
    return false;
}

/* Has every source of @p run given its last batch? Then all that is left
 * is the work in flight, and the run ends soon. A hint (relaxed reads):
 * it only decides whether an idle worker spins a while before it parks. */
static bool sources_exhausted(const para__run *run)
{
    const para_graph_t *g = run->graph;
    for (unsigned i = 0; i < g->n_sources; i++)
        if ((atomic_load_explicit(&g->sources[i]->src_state,
                                  memory_order_relaxed) &
             PARA__SRC_EXHAUSTED) == 0)
            return false;
    return true;
}

static void park(para__worker *w, para__run *run)
{
    para_runtime_t *rt = w->rt;
    uint64_t key = para__eventcount_prepare(&rt->wake.park);
    if (work_visible(w, run)) {
        para__eventcount_cancel(&rt->wake.park);
        return;
    }
    para__counter_add(&w->c_parks, 1);
    uint64_t parked = para__now_ns();
    /* done is published with release by units_add() (acquire in wait). */
    para__eventcount_wait(&rt->wake.park, key, &run->done);
    para__worker_parked(w, parked);
}

/* ---- the worker loop ----------------------------------------------------- */

static void run_loop(para__worker *w, para__run *run)
{
    unsigned idle = 0;
    uint64_t idle_since = 0;
    /* A graph run before on this runtime starts from what that run
     * learned: its estimate for this worker's first pulls, and a ramp from
     * that over RERUN_RAMP_DIVISOR (a run whose items cost more than last
     * time's still starts with tasks of a few tens of us, and this run's
     * estimate takes over after LEARN_REFRESH_PULLS pulls). Short runs of
     * one graph (w12) then need no ramp of tiny batches each time. */
    const para_graph_t *g = run->graph;
    size_t hint = g->learned_on == w->rt ? g->learned_hint : 0;
    w->ramp_items =
        PARA_MAX((size_t)RAMP_START_ITEMS, hint / RERUN_RAMP_DIVISOR);
    w->learned_items = hint;
    w->learned_pulls = hint != 0 ? LEARN_REFRESH_PULLS - 1 : 0;
    /* Family records freed and admitted on this thread while it works the
     * run come from this worker's own free list (budget.h). */
    para__family_cache_bind(&w->cache.families);
    /* acquire: pairs with the release store of done in units_add(), so that
     * a worker leaving the loop sees the finished run. */
    while (!atomic_load_explicit(&run->done, memory_order_acquire)) {
        /* relaxed: a request seen late only delays the abort by one loop;
         * parking re-checks it (work_visible). */
        if (PARA_UNLIKELY(cancel_pending(w->rt, run, memory_order_relaxed)))
            fail_run(w, run, PARA_ECANCELED,
                     "run canceled by para_run_cancel()");
        if (PARA_UNLIKELY(run->policy->produce_first != NULL) &&
            run->policy->produce_first(run->policy_state, w, run) &&
            try_sources(w, run)) {
            idle = 0;
            continue;
        }
        /* Injected tasks first (device outputs hold budget while they
         * wait; the test is one relaxed load), then our own, then others'. */
        para__task *t = take_injected(w, run);
        if (t == NULL)
            t = para__deque_owner_pop(&w->deque);
        if (t == NULL)
            t = steal(w, run);
        if (t != NULL) {
            execute(w, run, t);
            if (w->n_tail_held > 0)
                tail_retry(w, run, false);
            idle = 0;
            continue;
        }
        if (try_sources(w, run)) {
            idle = 0;
            continue;
        }
        if (w->n_tail_held > 0) { /* before looking further: see above */
            tail_retry(w, run, true);
            idle = 0;
            continue;
        }
        if (++idle < SPIN_ROUNDS) {
            para__cpu_relax();
            continue;
        }
        /* A run whose sources are exhausted ends soon: spin for its end
         * (or a last task) as between runs, yielding now and then, rather
         * than sleep, so that a loop of short runs pays no wake-up. */
        if (sources_exhausted(run)) {
            uint64_t now = para__now_ns();
            if (idle == SPIN_ROUNDS)
                idle_since = now;
            if (now - idle_since < RUN_GAP_SPIN_NS) {
                para__cpu_relax();
                if ((idle & 63) == 0)
                    sched_yield();
                continue;
            }
        }
        park(w, run);
        idle = 0;
    }
    para__family_cache_bind(NULL);
}

/* The worker this thread is (NULL on other threads), for
 * para_worker_index(). */
static _Thread_local const para__worker *current_worker PARA_TLS_FAST;

int para_worker_index(void)
{
    return current_worker != NULL ? (int)current_worker->id : -1;
}

/* Only drain tasks of empty nodes can be left in @p w's deque when it leaves
 * a run (claimed by an abort sweep after the last unit was gone); they hold
 * no unit. */
static void leave_run_check(para__worker *w)
{
    if (w->n_tail_held != 0) /* I2: each held a unit */
        para__panic("worker %u left a run holding %u tail tasks", w->id,
                    w->n_tail_held);
    for (para__task *t; (t = para__deque_owner_pop(&w->deque)) != NULL;)
        if (t->batch != NULL)
            para__panic("task of node '%s' outlived its run", t->node->name);
}

/* A thread leaves the run: the last one out signals para_run()'s thread. */
static void leave_run(para_runtime_t *rt)
{
    pthread_mutex_lock(&rt->lock);
    /* release: see workers_in_run (scheduler.h). */
    if (atomic_fetch_sub_explicit(&rt->workers_in_run, 1,
                                  memory_order_release) == 1)
        pthread_cond_signal(&rt->done_cond);
    pthread_mutex_unlock(&rt->lock);
}

/* Between close runs: spin a little for the next one before sleeping on
 * start_cond, so that a loop of short runs pays no wake-up. The spin
 * yields the core now and then: on a core it shares (with para_run()'s
 * thread, unpinned, or another process) a pure spin took the time the
 * next run needed; on a core of its own the yield returns at once. */
static void spin_for_next_run(para_runtime_t *rt, uint64_t seen)
{
    uint64_t t0 = para__now_ns();
    for (unsigned i = 1;; i++) {
        /* relaxed: a hint; the worker re-reads generation under rt->lock.
         * Newer only: the hint may still name the run we just left (its
         * caller stores it after unlocking, maybe after we joined). */
        if (atomic_load_explicit(&rt->generation_hint, memory_order_relaxed) >
            seen)
            return;
        para__cpu_relax();
        if ((i & 63) == 0) {
            if (para__now_ns() - t0 > RUN_GAP_SPIN_NS)
                return;
            sched_yield();
        }
    }
}

/* Stack a task may take below its worker's loop: a fused chain's tile
 * buffers (fuse.h, PARA__FUSE_TILE_BYTES each) and the calls under it. */
#define PREFAULT_STACK_BYTES ((size_t)64 << 10)

/* Fault in the PREFAULT_STACK_BYTES of stack below the caller's frame, so
 * that the first run's tiles do not fault it in a page at a time (10-15 us
 * a page in a virtual machine: para-host-probe's fault_us). */
static __attribute__((noinline)) void prefault_stack(void)
{
    volatile unsigned char pages[PREFAULT_STACK_BYTES];
    for (size_t off = 0; off < sizeof pages; off += 4096)
        pages[off] = 0;
}

static void *worker_main(void *arg)
{
    para__worker *w = arg;
    current_worker = w;
    para_runtime_t *rt = w->rt;
    char name[16];
    snprintf(name, sizeof name, "para-cpu-%u", w->id);
    pthread_setname_np(pthread_self(), name);
    /* A failed pin is logged by the topology module; the worker still runs.
     * Under rt->lock: a run that has already begun may have swapped our
     * slot (keep_caller_core()), and must not bind us meanwhile. Then its
     * own struct moves to its NUMA node (a no-op on one node). */
    pthread_mutex_lock(&rt->lock);
    w->pin_bound = w->pin_want;
    (void)para__topology_pin_self(rt->topology, &rt->plan, w->pin_bound);
    pthread_mutex_unlock(&rt->lock);
    (void)para__topology_bind_memory(rt->topology, &rt->plan, w->id, w,
                                     sizeof *w);
    /* The first run's memory, faulted in now on this worker's core: a slab
     * region for its large batches (slab.h) and the first small ones
     * (batch.h: PARA__BATCH_SMALL_IN_SLAB), and its stack. Small batches
     * are not malloc'd ahead: malloc's memory held from the start of a
     * worker's arena moved the user's own allocations in it so that glibc
     * trimmed the arena's top on nearly every free of w5's 4 KiB buffers, a
     * page fault per item (ten times slower). */
    para__slab_reserve(&w->cache.slab, 1);
    prefault_stack();

    uint64_t seen = 0;
    bool after_run = false;
    for (;;) {
        if (after_run)
            spin_for_next_run(rt, seen);
        pthread_mutex_lock(&rt->lock);
        /* relaxed: generation is written under rt->lock, held here. */
        while (!rt->shutdown &&
               atomic_load_explicit(&rt->generation, memory_order_relaxed) ==
                   seen)
            pthread_cond_wait(&rt->start_cond, &rt->lock);
        if (rt->shutdown) {
            pthread_mutex_unlock(&rt->lock);
            break;
        }
        seen = atomic_load_explicit(&rt->generation, memory_order_relaxed);
        para__run *run = rt->run;
        if (rt->caller_works) {
            /* The caller's run is joined while it is open; one that ended
             * before we came is skipped (the caller did not wait for us),
             * and the next one is spun for as after a run: runs that close
             * before we arrive come in close loops (sleeping here, every
             * next run paid a futex wake). */
            if (!rt->run_open) {
                pthread_mutex_unlock(&rt->lock);
                after_run = true;
                continue;
            }
            /* relaxed: under rt->lock, like every change of the count. */
            atomic_fetch_add_explicit(&rt->workers_in_run, 1,
                                      memory_order_relaxed);
        }
        /* The caller took our core (free_pin) and could not re-bind us
         * itself (keep_caller_core()): bind ourselves. */
        unsigned pin = w->pin_want;
        bool rebind = pin != w->pin_bound;
        w->pin_bound = pin;
        pthread_mutex_unlock(&rt->lock);
        if (rebind)
            (void)para__topology_pin_self(rt->topology, &rt->plan, pin);

        run_loop(w, run);
        leave_run_check(w);
        leave_run(rt);
        after_run = true;
    }
    return NULL;
}

/* ---- emitter ----------------------------------------------------------- */

void *para_emit_reserve(para_emitter_t *e, size_t n)
{
    if (e == NULL || e->failed)
        return NULL;
    para__batch *b = e->batch;
    if (n > (SIZE_MAX / e->item_size) - b->count) {
        e->failed = true;
        return NULL;
    }
    size_t need = (b->count + n) * e->item_size;
    if (need > b->capacity) {
        para__batch *nb = para__batch_grow(e->cache, e->run, b, need,
                                           b->count * e->item_size);
        if (nb == NULL) {
            e->failed = true;
            return NULL;
        }
        e->batch = b = nb;
    }
    void *slot = b->data + b->count * e->item_size;
    b->count += n;
    return slot;
}

int para_emit(para_emitter_t *e, const void *item)
{
    void *slot = para_emit_reserve(e, 1);
    if (slot == NULL)
        return PARA_ENOMEM;
    memcpy(slot, item, e->item_size);
    return 0;
}

/* ---- lifecycle ---------------------------------------------------------- */

int para__scheduler_start(para_runtime_t *rt)
{
    rt->first_thread = rt->caller_works ? 1 : 0;
    rt->free_pin = 0;
    for (unsigned i = 0; i < rt->n_workers; i++)
        rt->workers[i].pin_bound = rt->workers[i].pin_want = i;
    for (unsigned i = rt->first_thread; i < rt->n_workers; i++) {
        para__worker *w = &rt->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            para__scheduler_stop(rt);
            return PARA_EAGAIN;
        }
        rt->threads_started++;
    }
    /* Worker 0's thread is para_run()'s caller: its first run's memory is
     * faulted in here, while the other workers do their own. */
    if (rt->caller_works) {
        para__slab_reserve(&rt->workers[0].cache.slab, 1);
        prefault_stack();
    }
    return 0;
}

void para__scheduler_stop(para_runtime_t *rt)
{
    pthread_mutex_lock(&rt->lock);
    rt->shutdown = true;
    pthread_cond_broadcast(&rt->start_cond);
    pthread_mutex_unlock(&rt->lock);
    for (unsigned i = 0; i < rt->threads_started; i++)
        pthread_join(rt->workers[rt->first_thread + i].thread, NULL);
    rt->threads_started = 0;
}

/* The calling thread works the run on the core it is on: if a worker
 * thread wants that core's cpuset, that thread takes the caller's free one
 * instead (free_pin, scheduler.h). One getcpu (no system call) per run.
 * After a swap the caller re-binds the worker thread at once, before waking
 * it: bound to the caller's core, the woken thread would have to run there
 * to move itself, and waited for the kernel to preempt the caller (0.3-3 ms
 * of a 2-core VM's first 8 ms run). If that fails, the worker binds itself
 * when it joins (worker_main()). Under rt->lock (pin_want, pin_bound). */
static void keep_caller_core(para_runtime_t *rt)
{
    const para__topology_plan *plan = &rt->plan;
    if (!rt->caller_works || rt->n_workers < 2 || plan->cpuset == NULL ||
        plan->cpuset[rt->free_pin] == NULL)
        return;
    int cpu = sched_getcpu();
    if (cpu < 0 || hwloc_bitmap_isset(plan->cpuset[rt->free_pin], cpu))
        return;
    for (unsigned i = rt->first_thread; i < rt->n_workers; i++) {
        para__worker *w = &rt->workers[i];
        if (hwloc_bitmap_isset(plan->cpuset[w->pin_want], cpu)) {
            unsigned taken = w->pin_want;
            w->pin_want = rt->free_pin;
            rt->free_pin = taken;
            if (para__topology_pin_thread(rt->topology, plan, w->pin_want,
                                          w->thread) == 0)
                w->pin_bound = w->pin_want;
            return;
        }
    }
}

void para__scheduler_execute(para_runtime_t *rt, para__run *run,
                             void (*wait)(para_runtime_t *rt))
{
    run->on_abort = sweep_serial_nodes;
    /* Chains (fuse.h), before any worker sees the run. */
    para__fuse_plan(run, rt->fuse && rt->remote == NULL);
    pthread_mutex_lock(&rt->lock);
    keep_caller_core(rt);
    rt->run = run;
    rt->run_open = true;
    /* relaxed: under rt->lock, which every reader of these holds (or
     * re-takes after a relaxed hint). Device host threads join every run
     * with a node off the CPU; worker threads join the caller's run while
     * it is open. */
    bool devices = false;
    for (unsigned i = 0; i < run->graph->n_nodes && !devices; i++)
        devices = run->graph->nodes[i]->placement != PARA__PLACE_CPU;
    if (devices) {
        rt->device_generation++;
        pthread_cond_broadcast(&rt->device_cond);
    }
    atomic_store_explicit(&rt->workers_in_run,
                          (devices ? rt->helper_threads : 0) +
                              (rt->caller_works ? 0 : rt->n_workers),
                          memory_order_relaxed);
    uint64_t gen =
        atomic_load_explicit(&rt->generation, memory_order_relaxed) + 1;
    atomic_store_explicit(&rt->generation, gen, memory_order_relaxed);
    /* No system call unless a thread sleeps on start_cond. */
    pthread_cond_broadcast(&rt->start_cond);
    if (rt->caller_works) {
        pthread_mutex_unlock(&rt->lock);
        /* relaxed: a hint (see generation_hint). */
        atomic_store_explicit(&rt->generation_hint, gen, memory_order_relaxed);
        /* This thread is worker 0 for the run: it has no thread of its own,
         * so its deque, cache, counters and trace lane have one owner. */
        para__worker *w = &rt->workers[0];
        const para__worker *outer = current_worker; /* another runtime's */
        current_worker = w;
        run_loop(w, run);
        current_worker = outer;
        leave_run_check(w);
        /* Close the run to late joiners, then wait for those inside: a
         * short spin first (they leave as soon as they see `done`). */
        pthread_mutex_lock(&rt->lock);
        rt->run_open = false;
        pthread_mutex_unlock(&rt->lock);
        uint64_t t0 = para__now_ns();
        for (unsigned i = 1;; i++) {
            /* acquire: see workers_in_run (scheduler.h). */
            if (atomic_load_explicit(&rt->workers_in_run,
                                     memory_order_acquire) == 0)
                break;
            para__cpu_relax();
            if ((i & 63) == 0 && para__now_ns() - t0 > RUN_GAP_SPIN_NS)
                break;
        }
        pthread_mutex_lock(&rt->lock);
    } else {
        /* relaxed: a hint; the lock is released by wait() below. */
        atomic_store_explicit(&rt->generation_hint, gen, memory_order_relaxed);
    }
    /* acquire: see workers_in_run (scheduler.h). */
    while (atomic_load_explicit(&rt->workers_in_run, memory_order_acquire) > 0)
        wait(rt);
    rt->run = NULL;
    rt->run_open = false;
    /* relaxed: the workers have left (workers_in_run, acquire above). */
    if (atomic_load_explicit(&run->status, memory_order_relaxed) == 0) {
        run->graph->learned_hint = learned_items(run);
        run->graph->learned_on = rt;
    }
    /* Injected tasks left now can only be drain tasks of empty serial nodes
     * (an abort sweep by the device host thread after the last unit). */
    for (para__task *t = para__task_stack_take_all(&rt->wake.inject); t != NULL;
         t = t->next)
        if (t->batch != NULL)
            para__panic("task of node '%s' outlived its run", t->node->name);
    pthread_mutex_unlock(&rt->lock);
}

/* ---- device counters ----------------------------------------------------- */

para__device_counters *para__stats_device_add(para_runtime_t *rt,
                                              const char *name)
{
    pthread_mutex_lock(&rt->lock);
    para__device_counters *d = NULL;
    if (rt->n_devices < PARA__MAX_DEVICES) {
        d = &rt->devices[rt->n_devices++];
        memset(d, 0, sizeof *d);
        snprintf(d->name, sizeof d->name, "%s", name);
    }
    pthread_mutex_unlock(&rt->lock);
    if (d == NULL)
        para__log(1, "stats: more than %d devices; '%s' is not counted",
                  PARA__MAX_DEVICES, name);
    return d;
}
