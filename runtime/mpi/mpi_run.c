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
 *   items, then releases the batch and the unit once the send completed. A
 *   received header becomes a batch and a task that enters the scheduler
 *   through para__submit_task(): a serial or ORDERED node's inbox, so its
 *   reorder buffer sees the same keys as in one process.
 *
 * Credit
 *   Batches for a replicated node are dealt (deal()): each other rank is
 *   kept supplied with a few batches ahead (so that it never runs dry
 *   while the producing rank is busy), this rank takes the rest unless its
 *   worker has a backlog, and then other ranks take more up to their
 *   credit; this rank takes what no rank with credit can (it never waits:
 *   a worker must not block). Each rank grants every other rank `window`
 *   bytes (exchanged at the start). A sender charges a batch's item bytes
 *   plus a header allowance to the receiver's credit; the receiver keeps a
 *   second reference to the batch, sees its task finish when the count
 *   drops back to 1, and returns the bytes in a credit message, deferred
 *   while its own unsent output exceeds its window (so a rank whose
 *   consumer is slow stops taking new work). Batches for single-rank nodes
 *   need no credit: their senders are bounded by the credit they received
 *   or by the source's memory budget on their rank.
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
 * Memory orders: the outbox stacks are mpsc_stack.h's (push publishes
 *   the task and its batch, take_all acquires them); credit counters and
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

#include "mpi_internal.h"

enum {
    TAG_HDR = 1,    /* wire_hdr */
    TAG_DATA = 2,   /* the items, right after their header */
    TAG_CREDIT = 3, /* uint64_t bytes given back */
};

#define HDR_CREDITED 1u  /* a dealt batch: give its credit back */
#define HDR_ALLOWANCE 64 /* bytes charged per batch besides its items */
#define LOCAL_BACKLOG 4  /* queued tasks that make a worker pass a batch on */
#define PREFETCH 16      /* dealt batches kept outstanding at each rank */
#define WAVE_BUSY_NS 5000000 /* between waves while this rank is busy */
#define REMOTE_ABORT "run aborted: another rank failed"

typedef struct wire_hdr {
    uint32_t node, port, path, flags;
    uint64_t seq_begin, seq_end, count, bytes;
} wire_hdr;

typedef struct send_slot {
    MPI_Request req[2];
    wire_hdr hdr;
    uint64_t credit;    /* TAG_CREDIT payload */
    para__batch *batch; /* NULL for a credit message */
    uint64_t bytes;     /* item bytes in flight */
} send_slot;

typedef struct tracked {
    para__batch *batch;
    int src;
    uint64_t cost;
} tracked;

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
    _Atomic uint64_t *credit_used; /* bytes charged to each rank */
    _Atomic uint32_t deal_next;    /* round-robin start */
    _Atomic uint64_t credit_waits;
    outbox *outboxes; /* one per destination rank */

    /* Published by the run_begin hook (helper thread). */
    _Atomic(para__run *) run;
    _Atomic bool helper_done;
    int helper_rc;
    pthread_t helper;

    /* Communication thread only. */
    send_slot **sends;
    size_t n_sends, cap_sends;
    uint64_t send_bytes; /* item bytes in posted sends */
    tracked *tracked;
    size_t n_tracked, cap_tracked;
    uint64_t *owed; /* credit to give back, per rank */
    uint64_t msgs_sent, msgs_recvd;
    bool failed_own, propagated;
    para_mpi_stats_t stats;
} mpi_ctx;

/* ---- worker side: routing ------------------------------------------------ */

static uint64_t batch_cost(const para__task *t)
{
    return (uint64_t)t->batch->count * t->node->in_size + HDR_ALLOWANCE;
}

/* Charge @p cost to rank @p q if its credit stays within @p limit (or
 * nothing is outstanding there: a batch larger than the window still
 * goes, alone). */
static bool take_credit(mpi_ctx *c, int q, uint64_t cost, uint64_t limit)
{
    /* relaxed: a credit gate; the bytes it stands for are published by
     * the send itself. */
    uint64_t used =
        atomic_load_explicit(&c->credit_used[q], memory_order_relaxed);
    while (used == 0 || used + cost <= limit) {
        if (atomic_compare_exchange_weak_explicit(
                &c->credit_used[q], &used, used + cost, memory_order_relaxed,
                memory_order_relaxed))
            return true;
    }
    return false;
}

/* The rank that gets a batch of a replicated node. First a remote rank
 * (in turn) that has fewer than PREFETCH such batches outstanding, so that
 * no rank runs dry while the producer is busy; else this rank, unless its
 * worker already has a backlog; else a remote rank with credit left in its
 * window; else this rank (a worker never waits). */
static int deal(mpi_ctx *c, const para__worker *w, uint64_t cost)
{
    /* relaxed: spreads the choice only. */
    uint32_t start =
        atomic_fetch_add_explicit(&c->deal_next, 1, memory_order_relaxed);
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < c->size; k++) {
            int q = (int)((start + (uint32_t)k) % (uint32_t)c->size);
            if (q == c->rank)
                continue;
            uint64_t limit = pass == 0 ? PARA_MIN(c->window[q], PREFETCH * cost)
                                       : c->window[q];
            if (take_credit(c, q, cost, limit))
                return q;
        }
        if (pass == 0 && (w == NULL || para__deque_size_estimate(&w->deque) <=
                                           LOCAL_BACKLOG))
            return c->rank;
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
        dst = deal(c, w, batch_cost(t));
        if (dst == c->rank)
            return false;
    }
    para__task_stack_push(&c->outboxes[dst].tasks, t);
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
            if (run_aborting(run)) {
                if (credited)
                    /* relaxed: see deal(). */
                    atomic_fetch_sub_explicit(&c->credit_used[q], batch_cost(t),
                                              memory_order_relaxed);
                release_task(run, t);
                continue;
            }
            uint64_t item_bytes = (uint64_t)t->batch->count * t->node->in_size;
            if (item_bytes > INT_MAX) { /* MPI counts are int */
                para__fail_run(NULL, run, PARA_EOVERFLOW,
                               "a batch of %llu bytes for node '%s' is too "
                               "large to send to rank %d (at most %d)",
                               (unsigned long long)item_bytes, t->node->name, q,
                               INT_MAX);
                if (credited)
                    /* relaxed: see deal(). */
                    atomic_fetch_sub_explicit(&c->credit_used[q], batch_cost(t),
                                              memory_order_relaxed);
                release_task(run, t);
                continue;
            }
            send_slot *s = new_slot(c);
            para__batch *b = t->batch;
            s->batch = b;
            s->bytes = (uint64_t)b->count * t->node->in_size;
            s->hdr = (wire_hdr){.node = t->node->index,
                                .port = t->in_port,
                                .path = t->path,
                                .flags = credited ? HDR_CREDITED : 0,
                                .seq_begin = b->seq_begin,
                                .seq_end = b->seq_end,
                                .count = b->count,
                                .bytes = s->bytes};
            MPI_Isend(&s->hdr, sizeof s->hdr, MPI_BYTE, q, TAG_HDR, c->comm,
                      &s->req[0]);
            if (s->bytes > 0)
                MPI_Isend(b->data, (int)s->bytes, MPI_BYTE, q, TAG_DATA,
                          c->comm, &s->req[1]);
            c->send_bytes += s->bytes;
            c->msgs_sent++;
            c->stats.batches_sent++;
            c->stats.bytes_sent += s->bytes;
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
        if (s->batch != NULL && run != NULL) {
            c->send_bytes -= s->bytes;
            para__batch_release(NULL, run, s->batch);
            para__units_add(run, -1);
        }
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

/* Receive one batch whose header came from @p src. */
static void recv_batch(mpi_ctx *c, para__run *run, int src)
{
    wire_hdr h;
    MPI_Recv(&h, sizeof h, MPI_BYTE, src, TAG_HDR, c->comm, MPI_STATUS_IGNORE);
    c->msgs_recvd++;
    bool keep = run != NULL && !run_aborting(run) && h.node < c->graph->n_nodes;
    para__batch *b = NULL;
    void *scratch = NULL;
    if (keep) {
        b = para__batch_alloc(NULL, run, 1, (size_t)h.bytes);
        if (b == NULL) {
            para__fail_run(NULL, run, PARA_ENOMEM,
                           "out of memory receiving a batch for node '%s'",
                           c->graph->nodes[h.node]->name);
            keep = false;
        }
    }
    if (h.bytes > 0) {
        if (b == NULL && (scratch = malloc((size_t)h.bytes)) == NULL)
            fatal(c, "out of memory dropping a batch");
        MPI_Recv(b != NULL ? (void *)b->data : scratch, (int)h.bytes, MPI_BYTE,
                 src, TAG_DATA, c->comm, MPI_STATUS_IGNORE);
    }
    free(scratch);
    c->stats.batches_received++;
    c->stats.bytes_received += h.bytes;
    uint64_t cost = h.bytes + HDR_ALLOWANCE;
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
    t->node = c->graph->nodes[h.node];
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
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_HDR, c->comm, &flag, &st);
        if (!flag)
            break;
        recv_batch(c, run, st.MPI_SOURCE);
        did = true;
    }
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
    return NULL;
}

/* Nothing happened for @p rounds loops: sleep, 10 us at first, doubling
 * every 4 idle rounds up to 2 ms, or 0.5 ms while a batch of ours is in
 * flight (@p watching: sends or tracked batches, whose completion must be
 * noticed quickly to give credit back). MPI offers no wait for "a message
 * or a worker's push", so the thread polls; the backoff keeps its CPU time
 * small beside the workers' (para_mpi_stats_t.comm_cpu_ns). */
static void idle_wait(unsigned rounds, bool watching)
{
    unsigned shift = PARA_MIN(rounds / 4, 8u);
    long us = PARA_MIN(10l << shift, watching ? 500l : 2000l);
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
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

/* Drive the run until every rank is done. */
static void comm_loop(mpi_ctx *c)
{
    long long wsend[W_N] = {0}, wrecv[W_N] = {0}, prev[W_N] = {0};
    bool prev_valid = false, wave = false;
    MPI_Request wreq = MPI_REQUEST_NULL;
    uint64_t wave_t0 = 0, last_wave = 0;
    uint64_t timeout_ns = (uint64_t)(para__mpi_timeout_s() * 1e9);
    unsigned idle = 0;
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
            did |= test_sends(c, run);
            did |= poll_recv(c, run);
            did |= poll_tracked(c, run);
            /* relaxed: status is read again after the run ends. */
            if (!c->failed_own && !c->propagated &&
                atomic_load_explicit(&run->status, memory_order_relaxed) != 0)
                c->failed_own = true;
        } else if (early_fail) {
            did |= poll_recv(c, NULL);
            did |= poll_tracked(c, NULL);
            did |= test_sends(c, NULL);
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
                       c->n_sends > 0 || c->n_tracked > 0 || owes_credit(c);
            else
                busy = !early_fail || c->n_sends > 0 || owes_credit(c);
            /* Waves back to back while idle (termination comes fast);
             * every few milliseconds while busy (failures travel). A wave
             * alone does not count as activity for idle_wait(), else its
             * backoff would never grow. */
            if (!busy || now - last_wave >= WAVE_BUSY_NS) {
                wsend[W_SENT] = (long long)c->msgs_sent;
                wsend[W_RECVD] = (long long)c->msgs_recvd;
                wsend[W_BUSY] = busy;
                wsend[W_FAILED] = c->failed_own;
                MPI_Iallreduce(wsend, wrecv, W_N, MPI_LONG_LONG, MPI_SUM,
                               c->comm, &wreq);
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
        if (did)
            idle = 0;
        else
            idle_wait(++idle, c->n_sends > 0 || c->n_tracked > 0);
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

static void ctx_free(mpi_ctx *c)
{
    free(c->place);
    free(c->window);
    free(c->credit_used);
    free(c->outboxes);
    free(c->sends);
    free(c->tracked);
    free(c->owed);
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
    c.outboxes = aligned_alloc(PARA_CACHELINE, (size_t)c.size * sizeof(outbox));
    if (rc == 0 &&
        (c.place == NULL || c.window == NULL || c.credit_used == NULL ||
         c.owed == NULL || c.outboxes == NULL))
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

    c.my_window = para__mpi_window(rt, c.size);
    MPI_Allgather(&c.my_window, 1, MPI_UINT64_T, c.window, 1, MPI_UINT64_T,
                  c.comm);
    c.stats.window = c.my_window;

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
out:
    if (stats != NULL)
        *stats = c.stats;
    MPI_Comm_free(&c.comm);
    ctx_free(&c);
    return rc;
}
