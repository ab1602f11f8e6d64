/*
 * para_mpi_run(): one graph across the ranks of an MPI communicator.
 *
 * Shape
 *   Every rank runs the whole graph with its own runtime (para_run() on a
 *   helper thread), so every rank derives the same sequence paths and the
 *   same ORDERED keys. The scheduler's remote hook (para__remote,
 *   internal.h) decides per delivered task whether it runs here; a task
 *   for a node on another rank is pushed, with its batch reference and its
 *   unit, onto the outbox of that rank: one task stack (mpsc_stack.h) per
 *   destination, pushed by workers, taken whole by the communication
 *   thread, as the workers' injection stack is.
 *
 *   The communication thread is the caller of para_mpi_run(): it alone
 *   calls MPI (MPI_THREAD_FUNNELED is enough). It sends each outbox task as
 *   a header (node, input port, path, sequence range, item count) and the
 *   items, then releases the batch and the unit once the send completed.
 *   Items that own memory (batch->owner) go packed instead, by the owner
 *   node's pack function (pack_batch()), and the batch is released at once;
 *   the receiver unpacks them into a batch that owns them as if the owner
 *   had made them on its rank (unpack_batch(), owned.h). A
 *   received header becomes a batch and a task that enters the scheduler
 *   through para__submit_task(): a serial or ORDERED node's inbox, so its
 *   reorder buffer sees the same keys as in one process.
 *
 * Credit
 *   Batches for a replicated node are dealt (deal()): another rank (in
 *   turn) takes it while it has credit, this rank takes the rest (it never
 *   waits: a worker must not block). Credit is AHEAD batches
 *   (PARA_MPI_AHEAD) and `window` bytes that each rank grants every other
 *   rank (exchanged at the start), whichever runs out first: enough ahead
 *   to cover the round trip of the credit, so no rank runs dry while the
 *   producing rank is busy, and each rank takes work at the pace it gets
 *   through it. (Filling the whole byte window instead sent nearly every
 *   batch of w11 to rank 1.) A sender charges a batch's bytes (what its
 *   items take there as a batch, in the budget's units, and what they own)
 *   plus a header allowance and one batch to the receiver's credit; the
 *   receiver keeps a second reference to the batch, sees its task finish
 *   when the count drops back to 1, and returns the charge (sent in the
 *   header) in a credit message, deferred while its own unsent output
 *   (in the same units) exceeds its window (so a rank whose consumer is
 *   slow stops taking new work). Batches for single-rank nodes need no
 *   credit: their receiver admits them into its own budget
 *   (admit_arrival()), and one that does not fit waits at its sender,
 *   announced by its header, so that a rank's sources and what other ranks
 *   send it stay within its budget together.
 *
 * Batch sizes
 *   A run that deals raises the batches' target time to DEALT_BATCH_US
 *   (PARA_MPI_BATCH_US), so that a message, its credit and a wake-up of
 *   the communication threads are small beside the work a batch carries.
 *   The source's rank may run none of a replicated stage itself; it
 *   learns the stage's cost from the waves (below), which carry each
 *   node's busy time on every rank into node->remote_busy_ns, and its
 *   first batches stay small until some cost is known
 *   (run->ramp_after_learning). The other ranks' workers count for the
 *   share a splittable source leaves each worker at its end.
 *
 * Communication thread
 *   Between rounds of work it sleeps on c->wake, an eventcount that a
 *   worker notifies when it fills an outbox, for at most a period that
 *   adapts to the traffic (idle_wait()): MPI has no wait for "a message
 *   or a worker's push" that does not spin, and a spinning thread would
 *   take a core from the workers on a machine with as many ranks as cores.
 *
 * Termination and failure
 *   A rank's run holds one extra unit for the communication thread, so its
 *   workers stay in the run while other ranks may still send. The threads
 *   run waves of non-blocking allreduces of (messages sent, messages
 *   received, busy ranks, failed ranks). A rank is idle when its run holds
 *   only that unit and it has no send, tracked batch or credit left. Two
 *   consecutive waves with every rank idle, the same counts, and as many
 *   messages received as sent, mean no message is in transit and none can
 *   be produced (each rank stayed idle between its two contributions, as
 *   its receive count did not move): then each rank drops its unit and its
 *   run ends. A wave that reports a failure aborts every rank's run that is
 *   still going (remote abort, below); the waves then go on until every
 *   rank has drained. Finally the ranks agree on the lowest failing rank,
 *   which broadcasts its code and message.
 *
 * Observability
 *   para_mpi_stats_t per rank, gathered on rank 0 by mpi_stats.c
 *   (PARA_MPI_STATS prints them after the run). A run traced on rank 0
 *   aligns the ranks' clocks at a barrier first (trace_begin()) and ends
 *   with rank 0 writing every rank's lanes into one file (trace_merge()).
 *
 * Memory orders: the outbox stacks are mpsc_stack.h's (push publishes
 *   the task and its batch, take_all acquires them), and c->wake is an
 *   eventcount (eventcount.h: its notify after the push, the sleeper's
 *   re-check of the outboxes after prepare); credit counters, cost
 *   estimates and
 *   statistics are relaxed (gates and counts, nothing published through
 *   them); the run
 *   pointer is published by the run_begin hook with release and read with
 *   acquire; the tracked batches' reference count is read with acquire so
 *   that the worker's last use happens before the batch is freed.
 *
 * Tests: tests/mpi/test_mpi.c under mpirun (ctest label mpi).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eventcount.h"
#include "mpi_internal.h"
#include "owned.h"

enum {
    TAG_HDR = 1,    /* wire_hdr */
    TAG_DATA = 2,   /* the items, right after their header */
    TAG_CREDIT = 3, /* uint64_t credit given back (CREDIT_*) */
    TAG_TRACE = 4,  /* a rank's part of the merged trace, after the run */
};

#define HDR_CREDITED 1u     /* a dealt batch: give its credit back */
#define HDR_PACKED 2u       /* owned items, packed (wire_hdr) */
#define HDR_ALLOWANCE 64    /* bytes charged per batch besides its items */
#define DEALT_BATCH_US 1000 /* work per source batch when dealing */
#define POLL_MIN_NS 20000   /* idle_wait() periods */
#define POLL_MAX_NS 1000000
#define AHEAD 8              /* dealt batches outstanding at each other rank */
#define WAVE_BUSY_NS 5000000 /* between waves while this rank is busy */
#define ARRIVAL_WAIT_MAX_NS 200000000 /* admit_arrival() */
#define REMOTE_ABORT "run aborted: another rank failed"

/* A batch's header. bytes: its data message (the items, or with
 * HDR_PACKED, each item's packed length as a uint64_t then the packed
 * items, made by the pack function of node `owner`); credit: what the
 * sender charged for it (HDR_CREDITED), given back as it is. */
typedef struct wire_hdr {
    uint32_t node, port, path, flags, owner, reserved;
    uint64_t seq_begin, seq_end, count, bytes, credit;
} wire_hdr;

typedef struct send_slot {
    MPI_Request req[2];
    wire_hdr hdr;
    uint64_t credit;    /* TAG_CREDIT payload */
    para__batch *batch; /* released when the send completes, or NULL */
    void *packed;       /* freed when the send completes, or NULL */
    bool unit;          /* a unit of the run to drop then */
    uint64_t charge;    /* its share of send_bytes */
} send_slot;

typedef struct tracked {
    para__batch *batch;
    int src;
    uint64_t cost;
} tracked;

/* A batch announced by its header and not yet received: it waits for room
 * in this rank's budget (admit_arrival()), its data still at the sender. */
typedef struct arrival {
    wire_hdr h;
    bool waiting;
    uint64_t since_ns; /* first refused, or 0 */
    uint64_t need;     /* its footprint on this rank, or 0: not known yet */
} arrival;

typedef struct outbox {
    alignas(PARA_CACHELINE) para__task_stack tasks;
} outbox;

typedef struct mpi_ctx {
    para__remote hook; /* first: the scheduler hands us &hook */
    para_runtime_t *rt;
    para_graph_t *graph;
    MPI_Comm comm;
    int rank, size;
    int *place;       /* per node index */
    uint64_t *window; /* credit granted to us by each rank */
    uint64_t my_window;
    uint64_t ahead;                /* AHEAD, or PARA_MPI_AHEAD */
    uint64_t batch_ns;             /* DEALT_BATCH_US, or PARA_MPI_BATCH_US */
    bool deals;                    /* a replicated node has a single-rank
                                      predecessor */
    _Atomic uint64_t *credit_used; /* charged to each rank (CREDIT_*) */
    _Atomic uint32_t deal_next;    /* round-robin start */
    _Atomic uint64_t credit_waits;
    outbox *outboxes;                 /* one per destination rank */
    unsigned others_workers;          /* workers of the other ranks */
    long long *wave_send, *wave_recv; /* W_N + nodes each */
    unsigned *port_base;   /* per node: its first port in traffic[] */
    uint64_t *traffic;     /* 4 per input port (para_node_t.mpi_traffic) */
    para__eventcount wake; /* workers -> communication thread */

    /* Published by the run_begin hook (helper thread). */
    _Atomic(para__run *) run;
    _Atomic bool helper_done;
    int helper_rc;
    pthread_t helper;

    /* Communication thread only. */
    send_slot **sends;
    size_t n_sends, cap_sends;
    uint64_t send_bytes; /* posted sends, in budget_bytes() */
    tracked *tracked;
    size_t n_tracked, cap_tracked;
    uint64_t *owed;     /* credit to give back, per rank */
    arrival *arrivals;  /* per source rank */
    unsigned n_waiting; /* arrivals waiting */
    bool *here;         /* per node index: runs on this rank */
    uint64_t msgs_sent, msgs_recvd;
    bool failed_own, propagated;
    para_mpi_stats_t stats;
} mpi_ctx;

/* ---- worker side: routing ------------------------------------------------ */

/* Credit is counted in one word per rank: bytes in the low CREDIT_SHIFT
 * bits, batches above them, so that one compare-and-swap checks and takes
 * both. */
#define CREDIT_SHIFT 48
#define CREDIT_BATCH ((uint64_t)1 << CREDIT_SHIFT)
#define CREDIT_BYTES(w) ((w) & (CREDIT_BATCH - 1))
#define CREDIT_BATCHES(w) ((w) >> CREDIT_SHIFT)

/* What @p bytes of items cost a rank's budget once they are a batch there:
 * the batch's allocation (a size class, up to twice the items' bytes),
 * which is what the budget counts; past any budget (2^48 - 1, what a
 * credit word holds) for sizes no allocation could have. Credit, unsent
 * output and the admission of an arrival (admit_arrival()) are measured
 * in these units, so that a window that is a share of the budget stays
 * that share whatever the batches' sizes. */
static uint64_t budget_bytes(uint64_t bytes)
{
    return bytes > SIZE_MAX / 2 ? CREDIT_BATCH - 1
                                : para__batch_alloc_size(1, (size_t)bytes);
}

/* The credit a dealt batch of task @p t takes: its items as a batch there
 * (budget_bytes()), the bytes they own, a header allowance, and one
 * batch. */
static uint64_t batch_cost(const para__task *t)
{
    return budget_bytes((uint64_t)t->batch->count * t->node->in_size) +
           t->batch->extra_bytes + HDR_ALLOWANCE + CREDIT_BATCH;
}

/* Charge @p cost to rank @p q if it then has at most c->ahead batches
 * outstanding and its bytes stay within its window (a batch larger than
 * the window still goes when nothing is outstanding there). */
static bool take_credit(mpi_ctx *c, int q, uint64_t cost)
{
    /* relaxed: a credit gate; the bytes it stands for are published by
     * the send itself. */
    uint64_t used =
        atomic_load_explicit(&c->credit_used[q], memory_order_relaxed);
    for (;;) {
        if (CREDIT_BATCHES(used) >= c->ahead ||
            (used != 0 &&
             CREDIT_BYTES(used) + CREDIT_BYTES(cost) > c->window[q]))
            return false;
        if (atomic_compare_exchange_weak_explicit(
                &c->credit_used[q], &used, used + cost, memory_order_relaxed,
                memory_order_relaxed))
            return true;
    }
}

/* The rank that gets a batch of a replicated node: another rank (in turn)
 * with credit left, else this rank. Credit caps each other rank at
 * c->ahead batches outstanding (and its byte window), and comes back as it
 * finishes them, so each rank takes work at the pace it gets through it
 * and the producing rank keeps the rest for itself (a worker never waits).
 * A few batches ahead cover the round trip of the credit; more would only
 * leave the other ranks with a longer tail of work at the end. */
static int deal(mpi_ctx *c, uint64_t cost)
{
    /* relaxed: spreads the choice only. */
    uint32_t start =
        atomic_fetch_add_explicit(&c->deal_next, 1, memory_order_relaxed);
    for (int k = 0; k < c->size; k++) {
        int q = (int)((start + (uint32_t)k) % (uint32_t)c->size);
        if (q != c->rank && take_credit(c, q, cost))
            return q;
    }
    if (c->size > 1)
        /* relaxed: a statistic. */
        atomic_fetch_add_explicit(&c->credit_waits, 1, memory_order_relaxed);
    return c->rank;
}

static bool route(para__remote *self, para__worker *w, para__run *run,
                  para__task *t)
{
    (void)run;
    (void)w;
    mpi_ctx *c = (mpi_ctx *)self;
    const para_node_t *s = t->node;
    int p = c->place[s->index];
    if (p == c->rank)
        return false;
    int dst = p;
    if (p == PARA_MPI_ALL_RANKS) {
        const para_node_t *from = s->preds[t->in_port];
        if (c->place[from->index] == PARA_MPI_ALL_RANKS)
            return false; /* replicated -> replicated: stay here */
        dst = deal(c, batch_cost(t));
        if (dst == c->rank)
            return false;
    }
    para__task_stack_push(&c->outboxes[dst].tasks, t);
    /* Wake the communication thread if it sleeps (one RMW if not). */
    para__eventcount_notify(&c->wake, 1);
    return true;
}

/* Before any worker sees the run: hold the communication thread's unit,
 * retire the sources of other ranks, publish the run. */
static void run_begin(para__remote *self, para__run *run)
{
    mpi_ctx *c = (mpi_ctx *)self;
    int64_t units = 1;
    para_graph_t *g = run->graph;
    for (unsigned i = 0; i < g->n_sources; i++) {
        para_node_t *s = g->sources[i];
        if (c->place[s->index] != c->rank) {
            /* relaxed: no worker runs yet; they see it through the run's
             * start under rt->lock. */
            atomic_store_explicit(&s->src_state, PARA__SRC_EXHAUSTED,
                                  memory_order_relaxed);
            units--;
        }
    }
    /* relaxed: as above. */
    atomic_fetch_add_explicit(&run->in_flight, units, memory_order_relaxed);
    /* Batches dealt to other ranks carry at least DEALT_BATCH_US of work,
     * so that a message and its credit are small beside the work. */
    if (c->deals) {
        if (run->target_batch_ns < c->batch_ns)
            run->target_batch_ns = c->batch_ns;
        /* Nothing is learned here while other ranks run the first
         * batches; and their workers share a source's last batches. */
        run->ramp_after_learning = true;
        run->remote_workers = c->others_workers;
    }
    /* release: the communication thread reads the run's fields. */
    atomic_store_explicit(&c->run, run, memory_order_release);
}

/* ---- communication thread ------------------------------------------------ */

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need)
        n *= 2;
    void *p = realloc(*arr, n * elem);
    if (p == NULL)
        return PARA_ENOMEM;
    *arr = p;
    *cap = n;
    return 0;
}

_Noreturn static void fatal(mpi_ctx *c, const char *what)
{
    para__log(0, "para_mpi_run: rank %d: %s; aborting the MPI job", c->rank,
              what);
    MPI_Abort(c->comm, 70);
    abort();
}

static send_slot *new_slot(mpi_ctx *c)
{
    send_slot *s = calloc(1, sizeof *s);
    if (s == NULL || grow((void **)&c->sends, &c->cap_sends, c->n_sends + 1,
                          sizeof *c->sends) != 0)
        fatal(c, "out of memory for a send");
    s->req[0] = s->req[1] = MPI_REQUEST_NULL;
    c->sends[c->n_sends++] = s;
    return s;
}

static void release_task(para__run *run, para__task *t)
{
    para__batch_release(NULL, run, t->batch);
    para__units_add(run, -1);
}

static bool run_aborting(const para__run *run)
{
    return para__aborting(run);
}

/* One batch of @p bytes over input @p port of @p n: sent (@p at 0) or
 * received (2). */
static void count_traffic(mpi_ctx *c, const para_node_t *n, unsigned port,
                          unsigned at, uint64_t bytes)
{
    uint64_t *v = c->traffic + 4 * ((size_t)c->port_base[n->index] + port);
    v[at]++;
    v[at + 1] += bytes;
}

/* Fail @p run (para__fail_run() from this thread) and give @p err. */
#define FAIL_RUN(run, err, ...)                                                \
    (para__fail_run(NULL, (run), (err), __VA_ARGS__), (err))

/* Pack the owned items of @p t's batch (HDR_PACKED layout) into a new
 * buffer for rank @p q: 0 and *@p out, *@p len; or the failure, already
 * reported to the run. Called by the communication thread only. */
static int pack_batch(mpi_ctx *c, para__run *run, const para__task *t, int q,
                      void **out, uint64_t *len)
{
    const para__batch *b = t->batch;
    const para_node_t *ow = b->owner;
    size_t n = b->count, size = b->own_size;
    (void)c;
    if (b->owned_begin != 0) /* para__owned_check() rules this out */
        return FAIL_RUN(run, PARA_EINVAL,
                        "a batch for node '%s' lost some of its owned "
                        "items before it was sent to rank %d",
                        t->node->name, q);
    uint64_t *lens = malloc(PARA_MAX(n, (size_t)1) * sizeof *lens);
    if (lens == NULL)
        return FAIL_RUN(run, PARA_ENOMEM,
                        "out of memory packing a batch for rank %d", q);
    uint64_t total = (uint64_t)n * sizeof *lens;
    for (size_t i = 0; i < n; i++) {
        size_t want = ow->mpi_pack(ow->ctx, b->data + i * size, NULL, 0);
        lens[i] = want;
        if (want == SIZE_MAX || want > (uint64_t)INT_MAX - total) {
            free(lens);
            if (want == SIZE_MAX)
                return FAIL_RUN(run, PARA_ENODE,
                                "node '%s': its pack function failed "
                                "on an item for rank %d",
                                ow->name, q);
            return FAIL_RUN(run, PARA_EOVERFLOW,
                            "a batch of packed items of '%s' for node "
                            "'%s' is too large to send to rank %d (at "
                            "most %d bytes)",
                            ow->name, t->node->name, q, INT_MAX);
        }
        total += want;
    }
    unsigned char *buf = realloc(lens, PARA_MAX((size_t)total, (size_t)1));
    if (buf == NULL) {
        free(lens);
        return FAIL_RUN(run, PARA_ENOMEM,
                        "out of memory packing a batch for rank %d", q);
    }
    unsigned char *at = buf + n * sizeof *lens;
    for (size_t i = 0; i < n; i++) {
        uint64_t want;
        memcpy(&want, buf + i * sizeof want, sizeof want);
        size_t got = ow->mpi_pack(ow->ctx, b->data + i * size, at, want);
        if (got != want) {
            free(buf);
            return FAIL_RUN(run, PARA_ENODE,
                            "node '%s': its pack function asked for "
                            "%llu bytes, then wrote %zu",
                            ow->name, (unsigned long long)want, got);
        }
        at += want;
    }
    *out = buf;
    *len = total;
    return 0;
}

/* Post every task waiting in the outboxes (or drop them when aborting). */
static bool post_outboxes(mpi_ctx *c, para__run *run)
{
    bool did = false;
    for (int q = 0; q < c->size; q++) {
        outbox *o = &c->outboxes[q];
        if (para__task_stack_peek_empty(&o->tasks))
            continue;
        para__task *fifo = para__task_stack_take_all_fifo(&o->tasks);
        for (para__task *t = fifo, *next; t != NULL; t = next) {
            next = t->next;
            did = true;
            bool credited = c->place[t->node->index] == PARA_MPI_ALL_RANKS;
            uint64_t cost = credited ? batch_cost(t) : 0;
            para__batch *b = t->batch;
            bool packed = b->owner != NULL && b->owned_begin < b->count;
            void *buf = NULL;
            uint64_t bytes = (uint64_t)b->count * t->node->in_size;
            int rc = 0;
            if (!run_aborting(run)) {
                if (packed)
                    rc = pack_batch(c, run, t, q, &buf, &bytes);
                else if (bytes > INT_MAX) /* MPI counts are int */
                    rc = FAIL_RUN(run, PARA_EOVERFLOW,
                                  "a batch of %llu bytes for node '%s' "
                                  "is too large to send to rank %d (at "
                                  "most %d)",
                                  (unsigned long long)bytes, t->node->name, q,
                                  INT_MAX);
            }
            if (run_aborting(run) || rc != 0) {
                if (credited)
                    /* relaxed: see deal(). */
                    atomic_fetch_sub_explicit(&c->credit_used[q], cost,
                                              memory_order_relaxed);
                release_task(run, t);
                continue;
            }
            send_slot *s = new_slot(c);
            s->unit = true;
            s->charge = budget_bytes(bytes);
            s->hdr = (wire_hdr){.node = t->node->index,
                                .port = t->in_port,
                                .path = t->path,
                                .flags = (credited ? HDR_CREDITED : 0) |
                                         (packed ? HDR_PACKED : 0),
                                .owner = packed ? b->owner->index : UINT32_MAX,
                                .seq_begin = b->seq_begin,
                                .seq_end = b->seq_end,
                                .count = b->count,
                                .bytes = bytes,
                                .credit = cost};
            /* t lives in b: count it before b may go. */
            count_traffic(c, t->node, t->in_port, 0, bytes);
            if (packed) {
                /* The packed copy travels; this rank's items go now. */
                s->packed = buf;
                para__batch_release(NULL, run, b);
            } else {
                s->batch = b;
                buf = b->data;
            }
            MPI_Isend(&s->hdr, sizeof s->hdr, MPI_BYTE, q, TAG_HDR, c->comm,
                      &s->req[0]);
            if (bytes > 0)
                MPI_Isend(buf, (int)bytes, MPI_BYTE, q, TAG_DATA, c->comm,
                          &s->req[1]);
            c->send_bytes += s->charge;
            c->msgs_sent++;
            c->stats.batches_sent++;
            c->stats.bytes_sent += bytes;
            /* The unit goes when the send completes (test_sends()). */
        }
    }
    return did;
}

static bool test_sends(mpi_ctx *c, para__run *run)
{
    bool did = false;
    for (size_t i = 0; i < c->n_sends;) {
        send_slot *s = c->sends[i];
        int done = 0;
        MPI_Testall(2, s->req, &done, MPI_STATUSES_IGNORE);
        if (!done) {
            i++;
            continue;
        }
        did = true;
        /* Batches are sent only while a run is live; an early failure
         * (run == NULL) has only control messages in flight. */
        if (s->unit && run != NULL) {
            c->send_bytes -= s->charge;
            if (s->batch != NULL)
                para__batch_release(NULL, run, s->batch);
            para__units_add(run, -1);
        }
        free(s->packed);
        free(s);
        c->sends[i] = c->sends[--c->n_sends];
    }
    return did;
}

static void send_credit(mpi_ctx *c, int q, uint64_t bytes)
{
    send_slot *s = new_slot(c);
    s->credit = bytes;
    MPI_Isend(&s->credit, sizeof s->credit, MPI_BYTE, q, TAG_CREDIT, c->comm,
              &s->req[0]);
    c->msgs_sent++;
}

/* Unpack the HDR_PACKED data @p buf (@p len bytes, from rank @p src) of
 * a batch for node @p n into @p b, owned by node @p ow, whose release hook
 * frees the items with the batch. 0, or the failure, reported to the run
 * (the items unpacked so far released). */
static int unpack_batch(para__run *run, para_node_t *n, para_node_t *ow,
                        para__batch *b, const unsigned char *buf, uint64_t len,
                        size_t count, int src)
{
    if (ow->mpi_unpack == NULL || ow->out_size != n->in_size)
        return FAIL_RUN(run, PARA_EINVAL,
                        "rank %d sent packed items of '%s' for node '%s', "
                        "which this rank cannot unpack (the ranks built "
                        "different graphs?)",
                        src, ow->name, n->name);
    uint64_t at = (uint64_t)count * sizeof(uint64_t);
    if (count > len / sizeof(uint64_t))
        at = UINT64_MAX;
    size_t i = 0;
    int rc = 0;
    for (; i < count && at <= len; i++) {
        uint64_t l;
        memcpy(&l, buf + i * sizeof l, sizeof l);
        if (l > len - at)
            break;
        rc = ow->mpi_unpack(ow->ctx, buf + at, (size_t)l,
                            b->data + i * n->in_size);
        if (rc != 0)
            break;
        at += l;
    }
    if (i == count && at == len)
        return 0;
    if (i > 0)
        ow->release(ow->ctx, b->data, i); /* the ones unpacked */
    if (rc != 0)
        return FAIL_RUN(run, PARA_ENODE,
                        "node '%s': its unpack function returned %d for an "
                        "item from rank %d",
                        ow->name, rc, src);
    return FAIL_RUN(run, PARA_EINVAL,
                    "a batch of packed items of '%s' from rank %d does not "
                    "add up (%llu bytes)",
                    ow->name, src, (unsigned long long)len);
}

/* Receive the batch announced by @p h from @p src, into the budget family
 * @p fam that admit_arrival() reserved for it (or NULL). */
static void recv_batch(mpi_ctx *c, para__run *run, int src, wire_hdr h,
                       para__family *fam)
{
    bool packed = (h.flags & HDR_PACKED) != 0;
    bool keep = run != NULL && !run_aborting(run) &&
                h.node < c->graph->n_nodes &&
                (!packed || h.owner < c->graph->n_nodes);
    para_node_t *n = keep ? c->graph->nodes[h.node] : NULL;
    para__batch *b = NULL;
    void *scratch = NULL;
    if (keep) {
        size_t bytes = packed ? (size_t)h.count * n->in_size : (size_t)h.bytes;
        b = para__batch_alloc(NULL, run, 1, bytes);
        if (b != NULL) {
            b->family = fam;
            fam = NULL;
        } else {
            para__fail_run(NULL, run, PARA_ENOMEM,
                           "out of memory receiving a batch for node '%s'",
                           n->name);
            keep = false;
        }
    }
    if (h.bytes > 0) {
        /* Packed items and dropped batches land in a scratch buffer. */
        if ((b == NULL || packed) &&
            (scratch = malloc((size_t)h.bytes)) == NULL)
            fatal(c, "out of memory receiving a batch");
        MPI_Recv(scratch != NULL ? scratch : (void *)b->data, (int)h.bytes,
                 MPI_BYTE, src, TAG_DATA, c->comm, MPI_STATUS_IGNORE);
    }
    c->stats.batches_received++;
    c->stats.bytes_received += h.bytes;
    if (h.node < c->graph->n_nodes && h.port < c->graph->nodes[h.node]->n_preds)
        count_traffic(c, c->graph->nodes[h.node], h.port, 2, h.bytes);
    if (keep && packed) {
        para_node_t *ow = c->graph->nodes[h.owner];
        if (unpack_batch(run, n, ow, b, scratch, h.bytes, (size_t)h.count,
                         src) != 0) {
            keep = false;
        } else {
            /* The items are this rank's now: owned by the batch as if
             * ow had made them here, their bytes in the budget. */
            b->count = (size_t)h.count;
            para__owned_begin_output(ow, NULL, b);
            uint64_t extra = para__owned_count_bytes(ow, b);
            b->extra_bytes = extra > (uint64_t)INT64_MAX ? 0 : (size_t)extra;
            para__bytes_add(run, (int64_t)b->extra_bytes);
        }
    }
    free(scratch);
    if (fam != NULL)
        para__family_unref(run, fam); /* the batch was dropped */
    uint64_t cost = h.credit;         /* what the sender charged */
    if (!keep) {
        if (b != NULL)
            para__batch_free(NULL, run, b);
        if (h.flags & HDR_CREDITED)
            c->owed[src] += cost;
        return;
    }
    b->count = (size_t)h.count;
    b->seq_begin = h.seq_begin;
    b->seq_end = h.seq_end;
    b->path = h.path;
    para__task *t = &b->tasks[0];
    t->batch = b;
    t->node = n;
    t->in_port = h.port;
    t->path = h.path;
    t->next = t->child = NULL;
    if (h.flags & HDR_CREDITED) {
        if (grow((void **)&c->tracked, &c->cap_tracked, c->n_tracked + 1,
                 sizeof *c->tracked) != 0)
            fatal(c, "out of memory tracking a batch");
        /* relaxed: the batch is still private to this thread. */
        atomic_store_explicit(&b->refs, 2, memory_order_relaxed);
        c->tracked[c->n_tracked++] = (tracked){b, src, cost};
    }
    para__units_add(run, 1);
    para__submit_task(NULL, run, t);
}

/* Room in this rank's budget for the batch @p a announces? Its footprint
 * here (the batch, and what it becomes on this rank) is reserved as a
 * family of its own, so that a rank's sources and the batches that other
 * ranks send it stay within its budget together. A batch that may not come
 * in yet stays at its sender (the rendezvous protocol keeps large messages
 * there until they are received), and this rank's sources leave it room
 * (budget.h): what is further down the graph comes first. A dealt batch
 * always comes in: its sender was bounded by the credit this rank granted,
 * and holding it back could close a cycle of ranks waiting on each other.
 * Nor does any batch wait longer than ARRIVAL_WAIT_MAX_NS: a rank whose
 * budget stays full that long waits on other ranks itself; it then takes
 * the batch over its budget (counted: budget_overruns) rather than hang.
 * *@p fam: the family, or NULL without a budget. */
static bool admit_arrival(mpi_ctx *c, para__run *run, arrival *a,
                          para__family **fam)
{
    *fam = NULL;
    const wire_hdr *h = &a->h;
    if (run == NULL || run->budget == NULL || run_aborting(run) ||
        h->node >= c->graph->n_nodes)
        return true; /* recv_batch() drops it or keeps it unbudgeted */
    para_node_t *n = c->graph->nodes[h->node];
    if (a->need == 0) { /* once per batch, not at every poll while it waits */
        bool packed = (h->flags & HDR_PACKED) != 0;
        uint64_t bytes = packed ? h->count * n->in_size : h->bytes;
        uint64_t own = packed ? h->bytes : 0;       /* about what items own */
        uint64_t batch = budget_bytes(bytes) + own; /* as credit counts it */
        a->need =
            PARA_MAX(para__footprint_arrival(run->budget->footprint_ctx, n,
                                             (size_t)h->count, batch, c->here),
                     (uint64_t)1);
    }
    uint64_t need = a->need;
    uint64_t now = para__now_ns();
    bool overdue = a->since_ns != 0 && now - a->since_ns > ARRIVAL_WAIT_MAX_NS;
    bool forced = (h->flags & HDR_CREDITED) != 0 || overdue;
    int rc = para__budget_admit_arrival(run, need, forced, fam);
    if (rc == PARA_EAGAIN) {
        if (a->since_ns == 0) {
            a->since_ns = now;
            c->stats.arrival_waits++;
        }
        return false;
    }
    if (rc != 0)
        para__fail_run(NULL, run, PARA_ENOMEM,
                       "out of memory admitting a batch for node '%s'",
                       n->name);
    else if (overdue && (h->flags & HDR_CREDITED) == 0)
        c->stats.budget_overruns++;
    return true;
}

/* Take in the batch that waits from @p src when admit_arrival() lets it. */
static bool take_arrival(mpi_ctx *c, para__run *run, int src)
{
    arrival *a = &c->arrivals[src];
    para__family *fam;
    if (!admit_arrival(c, run, a, &fam))
        return false;
    a->waiting = false;
    c->n_waiting--;
    recv_batch(c, run, src, a->h, fam);
    return true;
}

/* The next header from @p src: its batch comes in now or waits. */
static void recv_header(mpi_ctx *c, para__run *run, int src)
{
    arrival *a = &c->arrivals[src];
    MPI_Recv(&a->h, sizeof a->h, MPI_BYTE, src, TAG_HDR, c->comm,
             MPI_STATUS_IGNORE);
    c->msgs_recvd++;
    a->waiting = true;
    a->since_ns = 0;
    a->need = 0;
    c->n_waiting++;
    take_arrival(c, run, src);
}

/* A header from a rank with no batch waiting: its source, or -1. */
static int probe_header(mpi_ctx *c)
{
    int flag = 0;
    MPI_Status st;
    if (c->n_waiting == 0) {
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_HDR, c->comm, &flag, &st);
        return flag ? st.MPI_SOURCE : -1;
    }
    for (int q = 0; q < c->size; q++) {
        if (c->arrivals[q].waiting)
            continue;
        MPI_Iprobe(q, TAG_HDR, c->comm, &flag, MPI_STATUS_IGNORE);
        if (flag)
            return q;
    }
    return -1;
}

static bool poll_recv(mpi_ctx *c, para__run *run)
{
    bool did = false;
    for (int round = 0; round < 64; round++) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_CREDIT, c->comm, &flag, &st);
        if (flag) {
            uint64_t bytes;
            MPI_Recv(&bytes, sizeof bytes, MPI_BYTE, st.MPI_SOURCE, TAG_CREDIT,
                     c->comm, MPI_STATUS_IGNORE);
            c->msgs_recvd++;
            /* relaxed: see deal(). */
            atomic_fetch_sub_explicit(&c->credit_used[st.MPI_SOURCE], bytes,
                                      memory_order_relaxed);
            did = true;
            continue;
        }
        int src = probe_header(c);
        if (src < 0)
            break;
        recv_header(c, run, src);
        did = true;
    }
    for (int q = 0; q < c->size && c->n_waiting > 0; q++)
        if (c->arrivals[q].waiting && take_arrival(c, run, q))
            did = true;
    return did;
}

/* Tracked batches whose task is done: free them, owe their credit; give
 * owed credit back unless our own output is backed up. */
static bool poll_tracked(mpi_ctx *c, para__run *run)
{
    bool did = false;
    for (size_t i = 0; i < c->n_tracked;) {
        tracked *tr = &c->tracked[i];
        /* acquire: the worker's release in para__batch_release() makes its
         * use of the batch happen before our free. */
        if (atomic_load_explicit(&tr->batch->refs, memory_order_acquire) != 1) {
            i++;
            continue;
        }
        para__batch_release(NULL, run, tr->batch);
        c->owed[tr->src] += tr->cost;
        c->tracked[i] = c->tracked[--c->n_tracked];
        did = true;
    }
    if (c->send_bytes <= c->my_window)
        for (int q = 0; q < c->size; q++)
            if (c->owed[q] != 0) {
                send_credit(c, q, c->owed[q]);
                c->owed[q] = 0;
                did = true;
            }
    return did;
}

static bool owes_credit(const mpi_ctx *c)
{
    for (int q = 0; q < c->size; q++)
        if (c->owed[q] != 0)
            return true;
    return false;
}

static void *helper_main(void *arg)
{
    mpi_ctx *c = arg;
    c->helper_rc = para_run(c->rt, c->graph);
    /* release: publishes helper_rc and the runtime's message. */
    atomic_store_explicit(&c->helper_done, true, memory_order_release);
    para__eventcount_notify(&c->wake, 1);
    return NULL;
}

static bool outboxes_empty(mpi_ctx *c)
{
    for (int q = 0; q < c->size; q++)
        if (!para__task_stack_peek_empty(&c->outboxes[q].tasks))
            return false;
    return true;
}

/* Nothing to do: sleep until a worker fills an outbox or the helper ends
 * (both notify c->wake), or for *@p period_ns at most, to poll MPI and
 * the tracked batches again (MPI offers no wait for "a message or a
 * worker's push" that does not spin). The period adapts to the traffic:
 * it halves when the last sleep was followed by something from MPI or a
 * tracked batch finishing, and doubles when not, between POLL_MIN_NS and
 * POLL_MAX_NS. So the thread wakes about as often as messages come, and
 * takes no core from the workers while they compute
 * (para_mpi_stats_t.comm_cpu_ns, .comm_sleeps). */
static void idle_wait(mpi_ctx *c, bool remote_seen, bool watch_helper,
                      uint64_t *period_ns)
{
    *period_ns = remote_seen ? PARA_MAX(*period_ns / 2, (uint64_t)POLL_MIN_NS)
                             : PARA_MIN(*period_ns * 2, (uint64_t)POLL_MAX_NS);
    uint64_t key = para__eventcount_prepare(&c->wake);
    /* acquire: pairs with helper_main(). @p watch_helper: the loop still
     * waits for the run or for the helper's early end. */
    if (!outboxes_empty(c) ||
        (watch_helper &&
         atomic_load_explicit(&c->helper_done, memory_order_acquire))) {
        para__eventcount_cancel(&c->wake);
        return;
    }
    c->stats.comm_sleeps++;
    para__eventcount_wait_ns(&c->wake, key, *period_ns);
}

enum { W_SENT, W_RECVD, W_BUSY, W_FAILED, W_N };

/* Has the scheduler handed @p run to the workers? It finishes setting the
 * run up (its abort hook, which para__fail_run() calls) after run_begin()
 * published it to us, and then publishes it to the workers under rt->lock:
 * seeing rt->run there orders those writes before our use of the run. The
 * run cannot end (rt->run cleared) while we hold our unit. */
static bool run_started(para_runtime_t *rt, const para__run *run)
{
    pthread_mutex_lock(&rt->lock);
    bool started = rt->run == run;
    pthread_mutex_unlock(&rt->lock);
    return started;
}

/* A wave came back: each node's time on the other ranks goes to its
 * remote_busy_ns, which sizes this rank's source batches (scheduler.c)
 * when other ranks run the node. */
static void share_costs(mpi_ctx *c, const long long *mine, const long long *all)
{
    for (unsigned i = 0; i < c->graph->n_nodes; i++) {
        long long away = all[W_N + i] - mine[W_N + i];
        /* relaxed: an estimate (see graph.h). */
        atomic_store_explicit(&c->graph->nodes[i]->remote_busy_ns,
                              away > 0 ? (uint64_t)away : 0,
                              memory_order_relaxed);
    }
}

/* Drive the run until every rank is done. */
static void comm_loop(mpi_ctx *c)
{
    /* A wave's vector: W_N counts, then each node's busy time here (the
     * sum tells every rank the node's time everywhere). */
    long long *wsend = c->wave_send, *wrecv = c->wave_recv, prev[W_N] = {0};
    unsigned nodes = c->graph->n_nodes;
    bool prev_valid = false, wave = false;
    MPI_Request wreq = MPI_REQUEST_NULL;
    uint64_t wave_t0 = 0, last_wave = 0;
    uint64_t timeout_ns = (uint64_t)(para__mpi_timeout_s() * 1e9);
    uint64_t period = POLL_MIN_NS;
    bool remote_seen = false; /* since the last sleep */
    para__run *run = NULL;
    bool early_fail = false; /* para_run() returned before the run began */

    for (;;) {
        bool did = false;
        if (run == NULL && !early_fail) {
            /* acquire: pairs with run_begin() / helper_main(). */
            run = atomic_load_explicit(&c->run, memory_order_acquire);
            if (run != NULL && !run_started(c->rt, run))
                run = NULL; /* not yet: look again next round */
            if (run == NULL &&
                atomic_load_explicit(&c->helper_done, memory_order_acquire)) {
                early_fail = true;
                c->failed_own = true;
            }
        }
        if (run != NULL) {
            did |= post_outboxes(c, run);
            bool remote = test_sends(c, run);
            remote |= poll_recv(c, run);
            remote |= poll_tracked(c, run);
            /* A batch waiting for room: poll again soon. */
            remote_seen |= remote || c->n_waiting > 0;
            did |= remote;
            /* relaxed: status is read again after the run ends. */
            if (!c->failed_own && !c->propagated &&
                atomic_load_explicit(&run->status, memory_order_relaxed) != 0)
                c->failed_own = true;
        } else if (early_fail) {
            bool remote = poll_recv(c, NULL);
            remote |= poll_tracked(c, NULL);
            remote |= test_sends(c, NULL);
            remote_seen |= remote;
            did |= remote;
        }

        uint64_t now = para__now_ns();
        if (!wave) {
            bool busy;
            if (run != NULL)
                /* acquire: pairs with the units' acq_rel RMWs, so the
                 * work that brought the count down is visible; idle means
                 * this unit is the last (see the file comment). */
                busy = atomic_load_explicit(&run->in_flight,
                                            memory_order_acquire) > 1 ||
                       c->n_sends > 0 || c->n_tracked > 0 || c->n_waiting > 0 ||
                       owes_credit(c);
            else
                busy = !early_fail || c->n_sends > 0 || c->n_waiting > 0 ||
                       owes_credit(c);
            /* Waves back to back while idle (termination comes fast);
             * every few milliseconds while busy (failures travel). A wave
             * alone does not count as traffic for idle_wait(), else its
             * period would never grow. */
            if (!busy || now - last_wave >= WAVE_BUSY_NS) {
                wsend[W_SENT] = (long long)c->msgs_sent;
                wsend[W_RECVD] = (long long)c->msgs_recvd;
                wsend[W_BUSY] = busy;
                wsend[W_FAILED] = c->failed_own;
                for (unsigned i = 0; i < nodes; i++) {
                    /* A statistic, summed over the workers' slots
                     * (graph.h). */
                    para__node_counts nc = {0, 0, 0, 0};
                    if (run != NULL)
                        para__node_counts_get(c->graph->nodes[i], &nc);
                    wsend[W_N + i] = (long long)nc.busy_ns;
                }
                MPI_Iallreduce(wsend, wrecv, (int)(W_N + nodes), MPI_LONG_LONG,
                               MPI_SUM, c->comm, &wreq);
                wave = true;
                wave_t0 = now;
            }
        } else {
            int done = 0;
            MPI_Test(&wreq, &done, MPI_STATUS_IGNORE);
            if (done) {
                wave = false;
                last_wave = now;
                did = wrecv[W_BUSY] == 0; /* ending: the next wave now */
                if (run != NULL)
                    share_costs(c, wsend, wrecv);
                if (wrecv[W_FAILED] > 0 && run != NULL && !c->failed_own &&
                    !c->propagated) {
                    did = true;
                    c->propagated = true;
                    para__fail_run(NULL, run, PARA_ECANCELED, REMOTE_ABORT);
                }
                if (prev_valid && prev[W_BUSY] == 0 && wrecv[W_BUSY] == 0 &&
                    prev[W_SENT] == wrecv[W_SENT] &&
                    prev[W_RECVD] == wrecv[W_RECVD] &&
                    wrecv[W_SENT] == wrecv[W_RECVD])
                    break;
                memcpy(prev, wrecv, sizeof prev);
                prev_valid = true;
            } else if (now - wave_t0 > timeout_ns) {
                char what[128];
                snprintf(what, sizeof what,
                         "no answer from the other ranks for %.0f s "
                         "(PARA_MPI_TIMEOUT)",
                         para__mpi_timeout_s());
                fatal(c, what);
            }
        }
        if (!did) {
            idle_wait(c, remote_seen, run == NULL && !early_fail, &period);
            remote_seen = false;
        }
    }
    if (run != NULL)
        para__units_add(run, -1); /* the run ends on this rank */
}

/* The ranks agree on one outcome: the lowest rank whose own code is not 0
 * broadcasts it and its message. Collective. */
static int agree(MPI_Comm comm, int rank, int size, int code, char *msg,
                 size_t len)
{
    int mine = code != 0 ? rank : size, winner = size;
    MPI_Allreduce(&mine, &winner, 1, MPI_INT, MPI_MIN, comm);
    if (winner == size)
        return 0;
    struct {
        int code;
        char msg[PARA__ERRMSG_LEN];
    } out;
    memset(&out, 0, sizeof out);
    if (rank == winner) {
        out.code = code;
        snprintf(out.msg, sizeof out.msg, "%s", msg);
    }
    MPI_Bcast(&out, sizeof out, MPI_BYTE, winner, comm);
    /* "rank N: " then as much of the message as fits. */
    int head = snprintf(msg, len, "rank %d: ", winner);
    if (head > 0 && (size_t)head < len)
        memcpy(
            msg + head, out.msg,
            PARA_MIN(strnlen(out.msg, sizeof out.msg) + 1, len - (size_t)head));
    msg[len - 1] = '\0';
    return out.code;
}

/* Tracing: rank 0's PARA_TRACE (or attr.trace) decides for every rank.
 * The ranks align their clocks on rank 0's at a barrier (on one machine
 * they agree anyway; across machines the barrier's exit skew, a few
 * microseconds on a fast network, bounds the error), and para_run() must
 * not write each rank's own file meanwhile. Collective. Returns whether
 * the run is traced; *@p offset is what to add to this rank's clock to
 * read rank 0's, *@p saved the path taken from the trace (restore it). */
static bool trace_begin(mpi_ctx *c, para_runtime_t *rt, int64_t *offset,
                        char **saved)
{
    int on = rt->trace != NULL && rt->trace->path != NULL;
    MPI_Bcast(&on, 1, MPI_INT, 0, c->comm);
    *offset = 0;
    *saved = NULL;
    if (!on)
        return false;
    MPI_Barrier(c->comm);
    uint64_t mine = para__now_ns(), root = mine;
    MPI_Bcast(&root, 1, MPI_UINT64_T, 0, c->comm);
    *offset = (int64_t)root - (int64_t)mine;
    if (rt->trace != NULL) {
        *saved = rt->trace->path;
        rt->trace->path = NULL;
    }
    return true;
}

/* Write one trace of the run to rank 0's path: each rank's lanes as the
 * process "para rank R" (pid R + 1), times since rank 0's run start on
 * rank 0's clock. Ranks without a trace add nothing. Collective. */
static void trace_merge(mpi_ctx *c, para_runtime_t *rt, int64_t offset,
                        const char *path)
{
    uint64_t t0 = 0, t1 = 0;
    if (rt->trace != NULL)
        para__trace_run_times(rt->trace, &t0, &t1);
    uint64_t origin = t0;
    MPI_Bcast(&origin, 1, MPI_UINT64_T, 0, c->comm);
    char *part = NULL;
    size_t len = 0;
    if (rt->trace != NULL) {
        FILE *f = open_memstream(&part, &len);
        char name[32];
        snprintf(name, sizeof name, "para rank %d", c->rank);
        int rc = f == NULL ? PARA_ENOMEM
                           : para__trace_write_part(rt->trace, f,
                                                    (unsigned)c->rank + 1, name,
                                                    (int64_t)origin - offset);
        if (f != NULL && fclose(f) != 0 && rc == 0)
            rc = PARA_ENOMEM;
        if (rc != 0 || len > INT_MAX) {
            para__log(1, "trace: rank %d: its part of the trace is lost (%s)",
                      c->rank, rc != 0 ? "cannot write it" : "over 2 GiB");
            len = 0;
        }
    }
    if (c->rank != 0) {
        int n = (int)len;
        MPI_Send(&n, 1, MPI_INT, 0, TAG_TRACE, c->comm);
        if (n > 0)
            MPI_Send(part, n, MPI_CHAR, 0, TAG_TRACE, c->comm);
        free(part);
        return;
    }
    FILE *f = fopen(path, "w");
    if (f == NULL)
        para__log(1, "trace: cannot write '%s': %s", path, strerror(errno));
    int rc = f != NULL ? para__trace_write_head(f) : 0;
    if (f != NULL && len > 0 && fwrite(part, 1, len, f) != len)
        rc = -EIO;
    free(part);
    for (int r = 1; r < c->size; r++) {
        int n = 0;
        MPI_Recv(&n, 1, MPI_INT, r, TAG_TRACE, c->comm, MPI_STATUS_IGNORE);
        if (n <= 0)
            continue;
        char *buf = malloc((size_t)n);
        if (buf == NULL)
            fatal(c, "out of memory merging the trace");
        MPI_Recv(buf, n, MPI_CHAR, r, TAG_TRACE, c->comm, MPI_STATUS_IGNORE);
        if (f != NULL && fwrite(buf, 1, (size_t)n, f) != (size_t)n)
            rc = -EIO;
        free(buf);
    }
    if (f == NULL)
        return;
    if (rc == 0)
        rc = para__trace_write_tail(rt->trace, f, t1 - t0, (unsigned)c->size);
    if (fclose(f) != 0 && rc == 0)
        rc = -EIO;
    if (rc != 0)
        para__log(1, "trace: writing '%s' failed", path);
}

/* Each node keeps this run's traffic over its inputs
 * (para_mpi_edge_stats()). */
static void keep_traffic(mpi_ctx *c)
{
    for (unsigned i = 0; i < c->graph->n_nodes; i++) {
        para_node_t *n = c->graph->nodes[i];
        if (n->n_preds == 0)
            continue;
        if (n->mpi_traffic_ports != n->n_preds) {
            uint64_t *v = realloc(n->mpi_traffic,
                                  (4 * (size_t)n->n_preds + 1) * sizeof *v);
            if (v == NULL) {
                n->mpi_traffic_ports = 0;
                continue;
            }
            n->mpi_traffic = v;
            n->mpi_traffic_ports = n->n_preds;
        }
        memcpy(n->mpi_traffic, c->traffic + 4 * (size_t)c->port_base[i],
               4 * (size_t)n->n_preds * sizeof *n->mpi_traffic);
    }
}

static void ctx_free(mpi_ctx *c)
{
    free(c->place);
    free(c->window);
    free(c->credit_used);
    free(c->outboxes);
    free(c->sends);
    free(c->tracked);
    free(c->owed);
    free(c->arrivals);
    free(c->here);
    free(c->wave_send);
    free(c->wave_recv);
    free(c->port_base);
    free(c->traffic);
}

int para_mpi_run(para_runtime_t *rt, para_graph_t *graph, MPI_Comm comm,
                 para_mpi_stats_t *stats)
{
    if (rt == NULL || graph == NULL)
        return PARA_EINVAL;
    int inited = 0, level = 0, is_main = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        para__errmsg_set(&rt->errmsg, "para_mpi_run: MPI is not initialised");
        return PARA_EINVAL;
    }
    MPI_Query_thread(&level);
    MPI_Is_thread_main(&is_main);
    if (level < MPI_THREAD_FUNNELED ||
        (level == MPI_THREAD_FUNNELED && !is_main)) {
        para__errmsg_set(
            &rt->errmsg,
            "para_mpi_run: MPI must be initialised with at least "
            "MPI_THREAD_FUNNELED and called from its main thread, or "
            "MPI_THREAD_SERIALIZED");
        return PARA_EINVAL;
    }

    mpi_ctx c;
    memset(&c, 0, sizeof c);
    c.hook.run_begin = run_begin;
    c.hook.route = route;
    c.rt = rt;
    c.graph = graph;
    MPI_Comm_dup(comm, &c.comm);
    MPI_Comm_rank(c.comm, &c.rank);
    MPI_Comm_size(c.comm, &c.size);
    atomic_init(&c.run, NULL);
    atomic_init(&c.helper_done, false);
    atomic_init(&c.deal_next, (uint32_t)c.rank);
    atomic_init(&c.credit_waits, 0);
    bool wake_ok = para__eventcount_init(&c.wake) == 0;

    /* Same graph everywhere? Then the placement, checked on every rank. */
    char msg[PARA__ERRMSG_LEN] = "";
    int rc = 0;
    unsigned nodes = graph->n_nodes;
    int span[2] = {(int)nodes, -(int)nodes}, all[2];
    MPI_Allreduce(span, all, 2, MPI_INT, MPI_MAX, c.comm);
    if (all[0] != -all[1])
        rc = PARA_EINVAL, snprintf(msg, sizeof msg,
                                   "the ranks built different graphs (%d to "
                                   "%d nodes)",
                                   -all[1], all[0]);
    c.place = calloc(nodes + 1, sizeof *c.place);
    c.window = calloc((size_t)c.size, sizeof *c.window);
    c.credit_used = calloc((size_t)c.size, sizeof *c.credit_used);
    c.owed = calloc((size_t)c.size, sizeof *c.owed);
    c.arrivals = calloc((size_t)c.size, sizeof *c.arrivals);
    c.here = calloc(nodes + 1, sizeof *c.here);
    c.outboxes = aligned_alloc(PARA_CACHELINE, (size_t)c.size * sizeof(outbox));
    size_t ports = 0;
    for (unsigned i = 0; i < nodes; i++)
        ports += graph->nodes[i]->n_preds;
    c.port_base = calloc((size_t)nodes + 1, sizeof *c.port_base);
    c.traffic = calloc(4 * ports + 1, sizeof *c.traffic);
    for (unsigned i = 0, at = 0; c.port_base != NULL && i < nodes; i++) {
        c.port_base[i] = at;
        at += graph->nodes[i]->n_preds;
    }
    c.wave_send = calloc(W_N + (size_t)nodes, sizeof *c.wave_send);
    c.wave_recv = calloc(W_N + (size_t)nodes, sizeof *c.wave_recv);
    if (rc == 0 &&
        (!wake_ok || c.place == NULL || c.window == NULL ||
         c.credit_used == NULL || c.owed == NULL || c.outboxes == NULL ||
         c.arrivals == NULL || c.here == NULL || c.wave_send == NULL ||
         c.wave_recv == NULL || c.port_base == NULL || c.traffic == NULL))
        rc = PARA_ENOMEM, snprintf(msg, sizeof msg, "out of memory");
    if (rc == 0) {
        for (int q = 0; q < c.size; q++) {
            atomic_init(&c.credit_used[q], 0);
            para__task_stack_init(&c.outboxes[q].tasks);
        }
        rc = para_graph_validate(graph);
        if (rc != 0)
            snprintf(msg, sizeof msg, "%s", para_graph_errmsg(graph));
        else
            rc = para__mpi_placement(graph, c.size, c.place, msg, sizeof msg);
    }
    rc = agree(c.comm, c.rank, c.size, rc, msg, sizeof msg);
    c.stats.rank = c.rank;
    c.stats.ranks = c.size;
    if (rc != 0) {
        para__errmsg_set(&rt->errmsg, "%s", msg);
        goto out;
    }

    for (unsigned i = 0; i < nodes; i++)
        c.here[i] = c.place[i] == c.rank || c.place[i] == PARA_MPI_ALL_RANKS;
    c.my_window = para__mpi_window(rt, c.size);
    c.ahead = para__mpi_env_uint("PARA_MPI_AHEAD", AHEAD, 1, 1u << 20);
    c.batch_ns = 1000u * para__mpi_env_uint("PARA_MPI_BATCH_US", DEALT_BATCH_US,
                                            1, 10000000);
    for (unsigned i = 0; i < nodes && c.size > 1; i++) {
        const para_node_t *n = graph->nodes[i];
        if (c.place[i] == PARA_MPI_ALL_RANKS)
            for (unsigned k = 0; k < n->n_preds; k++)
                if (c.place[n->preds[k]->index] != PARA_MPI_ALL_RANKS)
                    c.deals = true;
    }
    MPI_Allgather(&c.my_window, 1, MPI_UINT64_T, c.window, 1, MPI_UINT64_T,
                  c.comm);
    unsigned mine = rt->n_workers, all_workers = 0;
    MPI_Allreduce(&mine, &all_workers, 1, MPI_UNSIGNED, MPI_SUM, c.comm);
    c.others_workers = all_workers - mine;
    c.stats.window = c.my_window;

    int64_t clock_offset;
    char *trace_path;
    bool traced = trace_begin(&c, rt, &clock_offset, &trace_path);

    struct timespec cpu0, cpu1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
    rt->remote = &c.hook;
    if (pthread_create(&c.helper, NULL, helper_main, &c) != 0) {
        rt->remote = NULL;
        /* This rank cannot run: still take part in the protocol. */
        c.helper_rc = PARA_EAGAIN;
        para__errmsg_set(&rt->errmsg, "para_mpi_run: cannot start a thread");
        atomic_store_explicit(&c.helper_done, true, memory_order_relaxed);
        comm_loop(&c);
    } else {
        comm_loop(&c);
        pthread_join(c.helper, NULL);
        rt->remote = NULL;
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
    c.stats.comm_cpu_ns =
        (uint64_t)((cpu1.tv_sec - cpu0.tv_sec) * 1000000000ll +
                   (cpu1.tv_nsec - cpu0.tv_nsec));
    rc = c.helper_rc;
    snprintf(msg, sizeof msg, "%s", para__errmsg_text(&rt->errmsg));
    /* A run aborted only because another rank failed is no failure of
     * ours; the failing rank's code and message win. */
    if (rc != 0 && strcmp(msg, REMOTE_ABORT) == 0)
        rc = 0;
    rc = agree(c.comm, c.rank, c.size, rc, msg, sizeof msg);
    para__errmsg_set(&rt->errmsg, "%s", rc != 0 ? msg : "");
    c.stats.credit_waits =
        atomic_load_explicit(&c.credit_waits, memory_order_relaxed);
    keep_traffic(&c);
    {
        /* PARA_MPI_STATS on any rank: rank 0 prints every rank's figures
         * (collective, so every rank must take part). */
        const char *e = getenv("PARA_MPI_STATS");
        int want = e != NULL && *e != '\0' && strcmp(e, "0") != 0, any = 0;
        MPI_Allreduce(&want, &any, 1, MPI_INT, MPI_MAX, c.comm);
        if (any &&
            para_mpi_stats_fprint(stderr, rt, graph, &c.stats, c.comm) != 0)
            para__log(1, "PARA_MPI_STATS: cannot print the statistics");
    }
    if (traced) {
        if (rt->trace != NULL)
            rt->trace->path = trace_path;
        trace_merge(&c, rt, clock_offset, trace_path);
    }
out:
    if (stats != NULL)
        *stats = c.stats;
    MPI_Comm_free(&c.comm);
    if (wake_ok)
        para__eventcount_fini(&c.wake);
    ctx_free(&c);
    return rc;
}
