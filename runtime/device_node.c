/*
 * Kernel nodes on a device: routing, gathering batches into launches,
 * completion, and the split of MIXED nodes between device and CPU.
 *
 * The device
 *   A runtime opens one device (para_runtime_attr_t.device, PARA_DEVICE)
 *   at the first run whose graph has a kernel node, through the back-end
 *   table of devices/device.h ("opencl", or "cpu"). With "auto" and no
 *   device, kernel nodes that have a CPU function run on the workers
 *   (logged once); a node without one fails the run before it starts.
 *
 * The host thread
 *   Each open device has one host thread, which takes part in every run
 *   like a worker (rt->helper_threads) but never runs tasks. Workers hand
 *   it the tasks of kernel nodes through `incoming`, a Treiber stack; the
 *   host thread gathers them per node, launches, waits, and hands each
 *   finished input batch's output to the successors through the runtime's
 *   injection stack (rt->inject), so no worker ever waits on the device.
 *   The host thread blocks (in the driver's wait, or on its condition
 *   variable), never spins: on a CPU device (PoCL) the driver's threads
 *   need every core. It runs on the cores near the device (hwloc's OpenCL
 *   helper: a PCI GPU's local CPUs); a CPU device is near all of them.
 *
 * When to launch
 *   A launch costs a fixed latency L plus c per item. The host thread
 *   estimates L as the shortest launch seen and c (per node) as an average
 *   of (launch time - L) / items, and launches a node's pending items when
 *     - they reach the cap of one launch (LAUNCH_MAX_BYTES, and once c is
 *       known LAUNCH_MAX_NS of device time or 38 L, whichever is longer:
 *       launches short enough that the stages downstream start early and
 *       overlap the device), or
 *     - they reach 19 L / c items, so that L is at most 5 % of the launch, or
 *     - the device is idle and either nothing upstream can send more (every
 *       unit of the run is held here, or the sources are held back by the
 *       batch gate) or the oldest pending item has waited GATHER_WINDOW L.
 *   While a launch runs, new work gathers behind it, so a busy device gets
 *   larger launches by itself; MAX_IN_FLIGHT launches at once let the copies
 *   of one overlap the kernel of another. With a forced batch size
 *   (PARA_BATCH) every batch is launched alone.
 *   One launch covers many batches: inputs are copied side by side into a
 *   staging buffer (a single batch is launched in place), and the output is
 *   split back per input batch with its sequence range and path, so ORDERED
 *   nodes downstream see order.
 *
 * MIXED nodes
 *   A worker holding a batch of a node with both implementations estimates
 *   when each would finish it: the CPU in items * cpu_cost, the device
 *   after its backlog, in (backlog + items) * c. It keeps the batch if the
 *   CPU is sooner. A CPU device shares the workers' cores, so there a batch
 *   goes to whichever implementation does more per core, judged on the
 *   fastest cost per item each side has shown (each is measured while the
 *   other competes for the cores; the minimum is the uncontended speed). Until
 * a cost is measured, batches explore: the CPU first, then one batch at a time
 * on the device until a launch has been timed (not the first of the run, which
 * may carry the kernel's compilation); the device is probed again with one
 * batch whenever it has had none for REPROBE_NS. Decisions use the device's
 * cost per item with the launch latency included. PARA_MIXED=device (or
 * cpu) overrides the split: every batch goes to the device (or stays on the
 * workers), for tests that compare the two implementations.
 *
 * Failures
 *   A failing launch ends the run with PARA_EDEVICE naming the node and the
 *   OpenCL call, unless the node has a CPU function and
 *   attr.device_fallback is on (the default): then the device is given up
 *   for MIXED nodes for the rest of the run, and their tasks (the failed
 *   launch's, the waiting ones, and any routed here later) go back to the
 *   workers, which run them on the CPU.
 *
 * Synchronisation
 *   incoming: multi-producer stack (seq_cst CAS push), emptied by the host
 *   thread with one exchange (acquire). sleeping/incoming form a Dekker
 *   pair (both sides seq_cst) so a push never misses a sleeping host
 *   thread; the signal itself goes under d->lock. Everything else of the
 *   host thread (pending lists, slots, estimates of L) is its own.
 *
 * Tests: tests/runtime/test_device_nodes.c (cpu and OpenCL back-ends).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "device.h"
#include "internal.h"

#define MAX_IN_FLIGHT 2 /* launches queued on the device at once */
#define SLOTS 4         /* >= MAX_IN_FLIGHT */
#define LAUNCH_MAX_BYTES ((size_t)32 << 20) /* input + output per launch */
#define LAUNCH_MAX_NS 2000000 /* device time per launch, once measured */
#define LATENCY_SHARE 19      /* launch >= 19 L: L is at most 5 % of it */
#define GATHER_WINDOW 2       /* an idle device waits at most 2 L for more */
#define GATHER_MIN_NS 20000
#define REPROBE_NS 5000000 /* MIXED: try the device again after 5 ms */

typedef struct slot {
    para__launch l;
    para_node_t *node;
    para__task *tasks, *tasks_tail; /* the launch's inputs, in order */
    size_t n_tasks, items;
    para__batch *direct_out; /* one task: the kernel writes here */
    size_t staged_bytes;     /* counted in run->bytes while in flight */
    uint64_t trace_t0;       /* para__trace_device_launch() */
    unsigned char *in_stage, *out_stage;
    size_t in_cap, out_cap;
} slot;

struct para__devrt {
    para_runtime_t *rt;
    const para__device_ops *ops;
    void *dev;
    const para__device_info *info;
    pthread_t thread;
    bool thread_started;
    uint64_t start_generation; /* runs before the thread existed */
    bool shares_cores;         /* a CPU device using all cores */

    alignas(PARA_CACHELINE) _Atomic(para__task *) incoming;
    _Atomic unsigned sleeping;
    _Atomic bool failed; /* given up for this run (fallback) */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */

    /* Host thread only (and the run's setup, before the run starts). */
    alignas(PARA_CACHELINE) slot slots[SLOTS];
    unsigned head, n_inflight;
    para_node_t **knodes; /* kernel nodes of the current run */
    unsigned n_knodes, cap_knodes, next_knode;
    int64_t held;        /* tasks (units) held here */
    uint64_t latency_ns; /* shortest launch seen, 0 = none yet */
    uint64_t last_complete_ns;
    uint64_t busy_since;
    char msg[PARA__ERRMSG_LEN];

    /* Statistics (stats.c) and the trace lane (trace.h, NULL when tracing
     * is off), both written by the host thread only. */
    para__device_counters *counters;
    para__trace_lane *lane;
};

/* ---- worker side --------------------------------------------------------- */

static void host_wake(para__devrt *d)
{
    pthread_mutex_lock(&d->lock);
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

void para__device_wake(para_runtime_t *rt)
{
    if (rt->device != NULL)
        host_wake(rt->device);
}

static bool prefer_device(const para__devrt *d, para_node_t *n, size_t items)
{
    /* relaxed: estimates; a stale one only moves one batch elsewhere. */
    uint64_t cpu =
        atomic_load_explicit(&n->cpu_ps_per_item, memory_order_relaxed);
    uint64_t dev =
        atomic_load_explicit(&n->dev_total_ps_per_item, memory_order_relaxed);
    uint64_t backlog =
        atomic_load_explicit(&n->dev_backlog_items, memory_order_relaxed);
    if (cpu == 0)
        return false; /* measure the CPU first */
    if (backlog == 0) {
        /* Probe the device with one batch: until it is measured, and again
         * when it has not been tried for a while (a first launch may carry
         * a compilation, and loads change). */
        uint64_t last =
            atomic_load_explicit(&n->dev_probe_ns, memory_order_relaxed);
        if (dev == 0 || para__now_ns() - last > REPROBE_NS)
            return true;
    }
    if (dev == 0)
        return false; /* the probe is still out */
    if (d->shares_cores) {
        /* relaxed: as above. */
        uint64_t cpu_best =
            atomic_load_explicit(&n->cpu_best_ps, memory_order_relaxed);
        uint64_t dev_best =
            atomic_load_explicit(&n->dev_best_ps, memory_order_relaxed);
        return (double)dev_best * (double)d->rt->n_workers <= (double)cpu_best;
    }
    return (double)(backlog + items) * (double)dev <= (double)items * cpu;
}

bool para__device_route(para__worker *w, para__run *run, para__task *t)
{
    (void)w;
    para_node_t *n = t->node;
    para__devrt *d = run->rt->device;
    size_t items = t->batch->count;
    /* relaxed: see fall_back(). */
    if (items == 0 || d == NULL ||
        atomic_load_explicit(&d->failed, memory_order_relaxed))
        return false; /* process() forwards an empty batch */
    if (n->placement == PARA__PLACE_MIXED &&
        (run->rt->mixed == PARA__MIXED_CPU ||
         (run->rt->mixed == PARA__MIXED_AUTO && !prefer_device(d, n, items))))
        return false;
    /* relaxed: estimates for prefer_device(). */
    atomic_fetch_add_explicit(&n->dev_backlog_items, items,
                              memory_order_relaxed);
    atomic_store_explicit(&n->dev_probe_ns, para__now_ns(),
                          memory_order_relaxed);
    /* relaxed: first guess for the CAS. */
    para__task *head = atomic_load_explicit(&d->incoming, memory_order_relaxed);
    do {
        t->next = head;
        /* seq_cst: publishes the task (release) and is the pusher's half
         * of the Dekker pair with the host thread's sleeping flag. */
    } while (!atomic_compare_exchange_weak_explicit(
        &d->incoming, &head, t, memory_order_seq_cst, memory_order_relaxed));
    /* seq_cst: see host_sleep(); the signal goes under d->lock. */
    if (atomic_load_explicit(&d->sleeping, memory_order_seq_cst) != 0)
        host_wake(d);
    return true;
}

/* Lower *best to @p ps if it is lower (0 = none yet). */
static void keep_min(_Atomic uint64_t *best, uint64_t ps)
{
    /* relaxed: a running minimum, ordering is irrelevant. */
    uint64_t cur = atomic_load_explicit(best, memory_order_relaxed);
    /* relaxed CAS: as above. */
    while ((cur == 0 || ps < cur) &&
           !atomic_compare_exchange_weak_explicit(
               best, &cur, ps, memory_order_relaxed, memory_order_relaxed))
        ;
}

void para__device_note_cpu(para_node_t *n, size_t items, uint64_t ns)
{
    if (items == 0)
        return;
    uint64_t ps = ns * 1000 / items;
    if (ps == 0)
        ps = 1;
    keep_min(&n->cpu_best_ps, ps);
    /* relaxed load + store: a running average; concurrent updates may lose
     * a sample, which an estimate can afford. */
    uint64_t old =
        atomic_load_explicit(&n->cpu_ps_per_item, memory_order_relaxed);
    atomic_store_explicit(&n->cpu_ps_per_item,
                          old == 0 ? ps : (3 * old + ps) / 4,
                          memory_order_relaxed);
}

/* ---- host thread: tasks in, batches out ---------------------------------- */

static void pending_push(para_node_t *n, para__task *t)
{
    t->next = NULL;
    if (n->dev_pending_tail != NULL)
        n->dev_pending_tail->next = t;
    else {
        n->dev_pending_head = t;
        n->dev_pending_since = para__now_ns();
    }
    n->dev_pending_tail = t;
    n->dev_pending_items += t->batch->count;
}

static void take_incoming(para__devrt *d)
{
    /* relaxed: cheap test; the exchange acquires. */
    if (atomic_load_explicit(&d->incoming, memory_order_relaxed) == NULL)
        return;
    /* acquire: see the tasks' contents; pairs with the seq_cst CAS in
     * para__device_route(). */
    para__task *list =
        atomic_exchange_explicit(&d->incoming, NULL, memory_order_acquire);
    para__task *fifo = NULL; /* reverse into arrival order */
    while (list != NULL) {
        para__task *next = list->next;
        list->next = fifo;
        fifo = list;
        list = next;
    }
    while (fifo != NULL) {
        para__task *next = fifo->next;
        pending_push(fifo->node, fifo);
        d->held++;
        fifo = next;
    }
}

/* Give up a task without running it (abort, or its launch failed). */
static void drop_task(para__devrt *d, para__run *run, para__task *t)
{
    /* relaxed: an estimate. */
    atomic_fetch_sub_explicit(&t->node->dev_backlog_items, t->batch->count,
                              memory_order_relaxed);
    para__batch_release(NULL, run, t->batch);
    d->held--;
    para__units_add(run, -1);
}

static void drop_pending(para__devrt *d, para__run *run)
{
    for (unsigned i = 0; i < d->n_knodes; i++) {
        para_node_t *n = d->knodes[i];
        para__task *t = n->dev_pending_head;
        n->dev_pending_head = n->dev_pending_tail = NULL;
        n->dev_pending_items = 0;
        while (t != NULL) {
            para__task *next = t->next;
            drop_task(d, run, t);
            t = next;
        }
    }
}

static void drop_slot_tasks(para__devrt *d, para__run *run, slot *s)
{
    para__task *t = s->tasks;
    while (t != NULL) {
        para__task *next = t->next;
        drop_task(d, run, t);
        t = next;
    }
    s->tasks = s->tasks_tail = NULL;
    if (s->direct_out != NULL) {
        para__batch_free(NULL, run, s->direct_out);
        s->direct_out = NULL;
    }
}

/* The device failed under a launch of @p n. Where the node has a CPU
 * function and fallback is on, the device is given up for the rest of the
 * run: the launch's tasks, and every task that comes or waits here, go back
 * to the workers, which run them on the CPU (para__device_route() says no
 * from now on). True if so. */
static bool fall_back(para__devrt *d, para__run *run, para_node_t *n, int rc)
{
    if (rc == PARA_ENODE || n->placement != PARA__PLACE_MIXED ||
        !d->rt->attr.device_fallback || para__aborting(run))
        return false;
    /* relaxed: workers read it as a hint; a task routed here after it is
     * sent back by the host thread. */
    if (!atomic_exchange_explicit(&d->failed, true, memory_order_relaxed))
        para__log(1,
                  "device \"%s\" failed (%s): kernel nodes with a CPU "
                  "function finish this run on the CPU",
                  d->info->name, d->msg);
    return true;
}

/* Hand a task back to the workers for the CPU (fallback). */
static void give_back(para__devrt *d, para__run *run, para__task *t)
{
    /* relaxed: an estimate. */
    atomic_fetch_sub_explicit(&t->node->dev_backlog_items, t->batch->count,
                              memory_order_relaxed);
    d->held--;
    para__inject_task(run, t); /* the unit goes with it */
}

static void fail_launch(para__devrt *d, para__run *run, para_node_t *n, int rc);

/* A launch in slot @p s failed with @p rc: fall back to the CPU, or fail
 * the run; either way the slot is empty afterwards. */
static void launch_failed(para__devrt *d, para__run *run, slot *s, int rc)
{
    if (!fall_back(d, run, s->node, rc)) {
        fail_launch(d, run, s->node, rc);
        drop_slot_tasks(d, run, s);
        return;
    }
    if (s->direct_out != NULL) {
        para__batch_free(NULL, run, s->direct_out);
        s->direct_out = NULL;
    }
    para__task *t = s->tasks;
    s->tasks = s->tasks_tail = NULL;
    while (t != NULL) {
        para__task *next = t->next;
        give_back(d, run, t);
        t = next;
    }
}

/* After a fallback: MIXED nodes' waiting tasks go back to the workers. */
static void give_back_pending(para__devrt *d, para__run *run)
{
    for (unsigned i = 0; i < d->n_knodes; i++) {
        para_node_t *n = d->knodes[i];
        if (n->placement != PARA__PLACE_MIXED)
            continue;
        para__task *t = n->dev_pending_head;
        n->dev_pending_head = n->dev_pending_tail = NULL;
        n->dev_pending_items = 0;
        while (t != NULL) {
            para__task *next = t->next;
            give_back(d, run, t);
            t = next;
        }
    }
}

static void fail_launch(para__devrt *d, para__run *run, para_node_t *n, int rc)
{
    if (rc == PARA_ENODE)
        para__fail_run(NULL, run, PARA_ENODE, "node '%s' %s", n->name, d->msg);
    else
        para__fail_run(NULL, run, rc, "node '%s' on device \"%s\": %s", n->name,
                       d->info->name, d->msg);
}

/* Learn L and the node's c from a finished launch of @p items. */
static uint64_t ewma(uint64_t old, uint64_t sample)
{
    return old == 0 ? sample : (3 * old + sample) / 4;
}

/* Learn L, the node's marginal cost c and its cost per item all included,
 * from a finished launch of @p items. A node's first launch of a run is
 * not learnt from: it may carry the driver's compilation of the kernel. */
static void learn(para__devrt *d, para_node_t *n, uint64_t ns, size_t items)
{
    if (n->dev_launches_run++ == 0)
        return;
    if (d->latency_ns == 0 || ns < d->latency_ns)
        d->latency_ns = ns;
    uint64_t marginal = (ns - d->latency_ns) * 1000 / items;
    uint64_t total = ns * 1000 / items;
    /* relaxed load + store: read by workers as estimates; only this thread
     * writes them. */
    uint64_t c =
        atomic_load_explicit(&n->dev_ps_per_item, memory_order_relaxed);
    atomic_store_explicit(&n->dev_ps_per_item,
                          ewma(c, PARA_MAX(marginal, (uint64_t)1)),
                          memory_order_relaxed);
    keep_min(&n->dev_best_ps, PARA_MAX(total, (uint64_t)1));
    uint64_t t =
        atomic_load_explicit(&n->dev_total_ps_per_item, memory_order_relaxed);
    atomic_store_explicit(&n->dev_total_ps_per_item,
                          ewma(t, PARA_MAX(total, (uint64_t)1)),
                          memory_order_relaxed);
}

static void unstage(para__run *run, slot *s)
{
    if (s->staged_bytes != 0)
        para__bytes_add(run, -(int64_t)s->staged_bytes);
    s->staged_bytes = 0;
}

static void complete(para__devrt *d, para__run *run, slot *s, int rc)
{
    para_node_t *n = s->node;
    unstage(run, s);
    d->head = (d->head + 1) % SLOTS;
    if (--d->n_inflight == 0 && d->counters != NULL)
        para__counter_add(&d->counters->c_busy_ns,
                          para__now_ns() - d->busy_since);
    if (rc < 0) {
        launch_failed(d, run, s, rc);
        return;
    }
    /* The launch started when the device was done with the one before. */
    uint64_t start = PARA_MAX(s->l.submit_ns, d->last_complete_ns);
    uint64_t ns = s->l.complete_ns > start ? s->l.complete_ns - start : 1;
    d->last_complete_ns = s->l.complete_ns;
    learn(d, n, ns, s->items);

    const size_t is = n->in_size, os = n->out_size;
    /* relaxed: statistics, read after the run. */
    atomic_fetch_add_explicit(&n->st_device_launches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&n->st_device_ns, ns, memory_order_relaxed);
    if (d->counters != NULL) {
        para__counter_add(&d->counters->c_launches, 1);
        para__counter_add(&d->counters->c_items, s->items);
        para__counter_add(&d->counters->c_bytes_in, s->items * is);
        para__counter_add(&d->counters->c_bytes_out, s->items * os);
    }
    para__trace_device_complete(d->lane, s->trace_t0, n->index, s->items,
                                s->items * (is + os));

    size_t offset = 0;
    para__task *t = s->tasks;
    s->tasks = s->tasks_tail = NULL;
    while (t != NULL) {
        para__task *next = t->next;
        para__batch *in = t->batch;
        size_t count = in->count;
        para__batch *o = s->direct_out;
        s->direct_out = NULL;
        if (o == NULL && !para__aborting(run)) {
            o = para__batch_alloc(NULL, run, n->n_succs, count * os);
            if (o != NULL)
                para__batch_join_family(o, in);
            if (o == NULL)
                para__fail_run(NULL, run, PARA_ENOMEM,
                               "out of memory for the output of node '%s'",
                               n->name);
            else
                memcpy(o->data, s->out_stage + offset * os, count * os);
        }
        offset += count;
        if (o == NULL || para__aborting(run)) {
            if (o != NULL)
                para__batch_free(NULL, run, o);
            drop_task(d, run, t);
            t = next;
            continue;
        }
        o->count = count;
        o->seq_begin = in->seq_begin;
        o->seq_end = in->seq_end;
        o->path = t->path;
        /* relaxed: statistics and an estimate. */
        atomic_fetch_add_explicit(&n->st_items_in, count, memory_order_relaxed);
        atomic_fetch_add_explicit(&n->st_items_out, count,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&n->st_device_items, count,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&n->st_batches, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&n->dev_backlog_items, count,
                                  memory_order_relaxed);
        para__batch_release(NULL, run, in);
        d->held--;
        para__deliver(NULL, run, n, o, 1); /* our unit goes with it */
        t = next;
    }
}

/* Complete the finished launches, oldest first, without blocking. */
static void complete_ready(para__devrt *d, para__run *run)
{
    while (d->n_inflight > 0) {
        slot *s = &d->slots[d->head];
        int r = d->ops->launch_poll(s->node->dev_kernel, &s->l, d->msg,
                                    sizeof d->msg);
        if (r == 0)
            return;
        complete(d, run, s, r < 0 ? r : 0);
    }
}

static void wait_oldest(para__devrt *d, para__run *run)
{
    slot *s = &d->slots[d->head];
    int r =
        d->ops->launch_wait(s->node->dev_kernel, &s->l, d->msg, sizeof d->msg);
    complete(d, run, s, r);
}

/* ---- host thread: launching ---------------------------------------------- */

static size_t launch_cap(const para__devrt *d, const para_node_t *n)
{
    size_t bytes = LAUNCH_MAX_BYTES;
    uint64_t max_alloc = d->info->max_alloc_bytes;
    size_t widest = PARA_MAX(n->in_size, n->out_size);
    size_t cap = bytes / (n->in_size + n->out_size);
    if (max_alloc > 0 && max_alloc / widest < cap)
        cap = (size_t)(max_alloc / widest);
    /* And at most LAUNCH_MAX_NS of device time (but never below the
     * latency rule), so that the stages downstream get the first outputs
     * early and work beside the device instead of after it. */
    /* relaxed: only this thread writes it. */
    uint64_t c_ps = atomic_load_explicit(&((para_node_t *)n)->dev_ps_per_item,
                                         memory_order_relaxed);
    if (c_ps != 0) {
        double t = PARA_MAX((double)LAUNCH_MAX_NS,
                            2.0 * LATENCY_SHARE * (double)d->latency_ns);
        double timed = t * 1000.0 / (double)c_ps;
        if (timed < (double)cap)
            cap = (size_t)timed;
    }
    return PARA_MAX(cap, 1);
}

static bool upstream_stalled(const para__devrt *d, para__run *run)
{
    /* relaxed: heuristics; the gather window bounds the cost of a miss. */
    return atomic_load_explicit(&run->in_flight, memory_order_relaxed) <=
               d->held ||
           !run->policy->sources_open(run);
}

static uint64_t gather_window_ns(const para__devrt *d)
{
    return PARA_MAX(GATHER_WINDOW * d->latency_ns, (uint64_t)GATHER_MIN_NS);
}

static bool should_launch(const para__devrt *d, para__run *run,
                          const para_node_t *n, uint64_t now)
{
    if (run->forced_batch_items != 0)
        return true; /* one batch per launch */
    size_t cap = launch_cap(d, n);
    if (n->dev_pending_items >= cap)
        return true;
    /* relaxed: only we write it. */
    uint64_t c_ps = atomic_load_explicit(&((para_node_t *)n)->dev_ps_per_item,
                                         memory_order_relaxed);
    if (d->latency_ns == 0 || c_ps == 0)
        return d->n_inflight == 0; /* no estimate yet: measure */
    double want =
        (double)LATENCY_SHARE * (double)d->latency_ns * 1000.0 / (double)c_ps;
    if ((double)n->dev_pending_items >= PARA_MIN(want, (double)cap))
        return true;
    if (d->n_inflight > 0)
        return false; /* gather behind the running launch */
    return upstream_stalled(d, run) ||
           now >= n->dev_pending_since + gather_window_ns(d);
}

static int ensure_stage(unsigned char **buf, size_t *cap, size_t bytes)
{
    if (bytes <= *cap)
        return 0;
    size_t want = PARA_MAX(bytes, *cap * 2);
    unsigned char *p = realloc(*buf, want);
    if (p == NULL)
        return PARA_ENOMEM;
    *buf = p;
    *cap = want;
    return 0;
}

/* Launch the oldest pending batches of @p n, up to one launch's cap. */
static void launch(para__devrt *d, para__run *run, para_node_t *n)
{
    slot *s = &d->slots[(d->head + d->n_inflight) % SLOTS];
    const size_t is = n->in_size, os = n->out_size;
    size_t cap = run->forced_batch_items != 0 ? 1 : launch_cap(d, n);
    s->node = n;
    s->tasks = s->tasks_tail = NULL;
    s->n_tasks = s->items = 0;
    while (n->dev_pending_head != NULL) {
        para__task *t = n->dev_pending_head;
        size_t count = t->batch->count;
        if (s->n_tasks > 0 && s->items + count > cap)
            break;
        n->dev_pending_head = t->next;
        n->dev_pending_items -= count;
        t->next = NULL;
        if (s->tasks_tail != NULL)
            s->tasks_tail->next = t;
        else
            s->tasks = t;
        s->tasks_tail = t;
        s->n_tasks++;
        s->items += count;
    }
    if (n->dev_pending_head == NULL)
        n->dev_pending_tail = NULL;
    else
        n->dev_pending_since = para__now_ns();

    int rc = 0;
    d->msg[0] = '\0';
    if (s->n_tasks == 1) {
        /* In place: the kernel reads the batch and writes the output. */
        s->direct_out = para__batch_alloc(NULL, run, n->n_succs, s->items * os);
        if (s->direct_out == NULL) {
            rc = PARA_ENOMEM;
        } else {
            para__batch_join_family(s->direct_out, s->tasks->batch);
            s->l.in = s->tasks->batch->data;
            s->l.out = s->direct_out->data;
        }
    } else if (ensure_stage(&s->in_stage, &s->in_cap, s->items * is) != 0 ||
               ensure_stage(&s->out_stage, &s->out_cap, s->items * os) != 0) {
        rc = PARA_ENOMEM;
    } else {
        size_t offset = 0;
        for (para__task *t = s->tasks; t != NULL; t = t->next) {
            memcpy(s->in_stage + offset * is, t->batch->data,
                   t->batch->count * is);
            offset += t->batch->count;
        }
        s->l.in = s->in_stage;
        s->l.out = s->out_stage;
        /* Staging counts as bytes in flight while the launch runs. */
        s->staged_bytes = s->items * (is + os);
        para__bytes_add(run, (int64_t)s->staged_bytes);
    }
    if (rc == PARA_ENOMEM)
        snprintf(d->msg, sizeof d->msg, "out of memory staging %zu items",
                 s->items);
    s->l.n = s->items;
    s->trace_t0 = para__trace_device_launch(d->lane);
    if (rc == 0)
        rc = d->ops->launch_begin(n->dev_kernel, &s->l, d->msg, sizeof d->msg);
    if (rc != 0) {
        unstage(run, s);
        launch_failed(d, run, s, rc);
        return;
    }
    if (d->n_inflight++ == 0)
        d->busy_since = para__now_ns();
}

/* Start every launch that should start now; true if one did. */
static bool launch_ready(para__devrt *d, para__run *run)
{
    bool launched = false;
    uint64_t now = para__now_ns();
    for (unsigned k = 0; k < d->n_knodes; k++) {
        para_node_t *n = d->knodes[(d->next_knode + k) % d->n_knodes];
        while (n->dev_pending_head != NULL && d->n_inflight < MAX_IN_FLIGHT &&
               !para__aborting(run) && should_launch(d, run, n, now)) {
            launch(d, run, n);
            launched = true;
        }
    }
    d->next_knode = d->n_knodes > 0 ? (d->next_knode + 1) % d->n_knodes : 0;
    return launched;
}

static bool has_pending(const para__devrt *d)
{
    for (unsigned i = 0; i < d->n_knodes; i++)
        if (d->knodes[i]->dev_pending_head != NULL)
            return true;
    return false;
}

static uint64_t earliest_deadline(const para__devrt *d)
{
    uint64_t first = UINT64_MAX;
    for (unsigned i = 0; i < d->n_knodes; i++) {
        const para_node_t *n = d->knodes[i];
        if (n->dev_pending_head != NULL)
            first = PARA_MIN(first, n->dev_pending_since);
    }
    return first == UINT64_MAX ? 0 : first + gather_window_ns(d);
}

/* Sleep until a task arrives, the run ends or aborts, or @p deadline_ns
 * (monotonic; 0 = none) passes. */
static void host_sleep(para__devrt *d, para__run *run, uint64_t deadline_ns)
{
    pthread_mutex_lock(&d->lock);
    /* seq_cst store, then seq_cst load: the host thread's half of the
     * Dekker pair with para__device_route() (push, then read sleeping). */
    atomic_store_explicit(&d->sleeping, 1, memory_order_seq_cst);
    /* acquire on done: pairs with the release store in units_add(). */
    if (atomic_load_explicit(&d->incoming, memory_order_seq_cst) == NULL &&
        !atomic_load_explicit(&run->done, memory_order_acquire) &&
        !(para__aborting(run) && has_pending(d))) {
        if (deadline_ns == 0) {
            pthread_cond_wait(&d->cond, &d->lock);
        } else {
            struct timespec ts = {
                .tv_sec = (time_t)(deadline_ns / 1000000000u),
                .tv_nsec = (long)(deadline_ns % 1000000000u),
            };
            pthread_cond_timedwait(&d->cond, &d->lock, &ts);
        }
    }
    /* relaxed: only this thread reads it as its own; pushers that see a
     * stale 1 only signal once too often. */
    atomic_store_explicit(&d->sleeping, 0, memory_order_relaxed);
    pthread_mutex_unlock(&d->lock);
}

static void host_run(para__devrt *d, para__run *run)
{
    d->held = 0;
    d->last_complete_ns = 0;
    for (;;) {
        take_incoming(d);
        complete_ready(d, run);
        if (para__aborting(run))
            drop_pending(d, run);
        /* relaxed: only this thread sets it. */
        else if (atomic_load_explicit(&d->failed, memory_order_relaxed))
            give_back_pending(d, run);
        if (d->n_inflight == 0 && !has_pending(d)) {
            /* acquire: pairs with the release store in units_add(). */
            if (atomic_load_explicit(&run->done, memory_order_acquire))
                return;
            host_sleep(d, run, 0);
            continue;
        }
        if (launch_ready(d, run))
            continue;
        if (d->n_inflight > 0) {
            wait_oldest(d, run);
            continue;
        }
        host_sleep(d, run, earliest_deadline(d));
    }
}

/* Keep the host thread (launching, completions, splitting outputs) on the
 * cores near the device, when the device is nearer some cores than others
 * (a PCI GPU on one socket); a CPU device is near every core: no pinning. */
static void pin_near_device(para__devrt *d)
{
    para_runtime_t *rt = d->rt;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (set == NULL)
        return;
    if (d->ops->locality(d->dev, rt->topology, set) == 0 &&
        !hwloc_bitmap_iszero(set) &&
        !hwloc_bitmap_isincluded(
            hwloc_topology_get_topology_cpuset(rt->topology), set)) {
        char *list = NULL;
        hwloc_bitmap_list_asprintf(&list, set);
        if (hwloc_set_cpubind(rt->topology, set, HWLOC_CPUBIND_THREAD) == 0)
            para__log(2, "device %s: host thread on PUs %s, near it",
                      d->info->name, list != NULL ? list : "?");
        else
            para__log(1, "device %s: cannot bind the host thread to PUs %s",
                      d->info->name, list != NULL ? list : "?");
        free(list);
    }
    hwloc_bitmap_free(set);
}

static void *host_main(void *arg)
{
    para__devrt *d = arg;
    para_runtime_t *rt = d->rt;
    pthread_setname_np(pthread_self(), "para-device");
    pin_near_device(d);
    pthread_mutex_lock(&rt->lock);
    uint64_t seen = d->start_generation;
    for (;;) {
        while (!rt->shutdown && rt->generation == seen)
            pthread_cond_wait(&rt->start_cond, &rt->lock);
        if (rt->shutdown)
            break;
        seen = rt->generation;
        para__run *run = rt->run;
        pthread_mutex_unlock(&rt->lock);

        host_run(d, run);

        pthread_mutex_lock(&rt->lock);
        if (--rt->workers_in_run == 0)
            pthread_cond_signal(&rt->done_cond);
    }
    pthread_mutex_unlock(&rt->lock);
    return NULL;
}

/* ---- opening, runs, shutdown --------------------------------------------- */

static void devrt_free(para__devrt *d)
{
    for (unsigned i = 0; i < SLOTS; i++) {
        d->ops->launch_fini(NULL, &d->slots[i].l);
        free(d->slots[i].in_stage);
        free(d->slots[i].out_stage);
    }
    d->ops->close(d->dev);
    free(d->knodes);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static int devrt_open(para_runtime_t *rt, char *msg, size_t msg_len)
{
    const para__device_ops *ops = NULL;
    void *dev = NULL;
    int rc = para__device_open(rt->device_selector, &ops, &dev, msg, msg_len);
    if (rc != 0)
        return rc;
    para__devrt *d =
        aligned_alloc(PARA_CACHELINE, (sizeof *d + PARA_CACHELINE - 1) &
                                          ~(size_t)(PARA_CACHELINE - 1));
    if (d == NULL) {
        ops->close(dev);
        snprintf(msg, msg_len, "out of memory opening the device");
        return PARA_ENOMEM;
    }
    memset(d, 0, sizeof *d);
    d->rt = rt;
    d->ops = ops;
    d->dev = dev;
    d->info = ops->info(dev);
    d->shares_cores = d->info->is_cpu && d->info->compute_units > 1;
    atomic_init(&d->incoming, NULL);
    atomic_init(&d->sleeping, 0);
    atomic_init(&d->failed, false);
    d->counters = para__stats_device_add(rt, d->info->name);
    d->lane =
        para__trace_lane_add(rt->trace, PARA__LANE_DEVICE, 0, "para-device-0");
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cond, &ca);
    pthread_condattr_destroy(&ca);

    pthread_mutex_lock(&rt->lock);
    d->start_generation = rt->generation;
    pthread_mutex_unlock(&rt->lock);
    if (pthread_create(&d->thread, NULL, host_main, d) != 0) {
        devrt_free(d);
        snprintf(msg, msg_len, "cannot start the device host thread");
        return PARA_EAGAIN;
    }
    d->thread_started = true;
    pthread_mutex_lock(&rt->lock);
    rt->device = d;
    rt->helper_threads = 1;
    pthread_mutex_unlock(&rt->lock);
    para__log(2, "device: %s (%s, %s back-end)", d->info->name,
              d->info->platform, ops->name);
    return 0;
}

int para__device_ensure(para_runtime_t *rt, char *msg, size_t msg_len)
{
    if (rt->device_state == 0) {
        rt->device_state = -1;
        if (strcmp(rt->device_selector, "none") == 0) {
            snprintf(rt->device_why, sizeof rt->device_why,
                     "the device is \"none\"");
            return 0;
        }
        char why[sizeof rt->device_why];
        int rc = devrt_open(rt, why, sizeof why);
        if (rc == 0) {
            rt->device_state = 1;
        } else if (rc == PARA_ENOMEM || rc == PARA_EAGAIN) {
            /* Out of memory or threads: this run fails (or, with "auto",
             * goes without the device), and the next run tries again. */
            rt->device_state = 0;
            snprintf(rt->device_why, sizeof rt->device_why, "%s", why);
            snprintf(msg, msg_len, "device \"%s\": %s", rt->device_selector,
                     why);
            if (strcmp(rt->device_selector, "auto") == 0) {
                para__log(1, "device: %s; this run goes without it", why);
                return 0;
            }
            return rc;
        } else {
            snprintf(rt->device_why, sizeof rt->device_why, "%s", why);
            /* "auto" asks for a device if there is one: none is fine. */
            rt->device_err = strcmp(rt->device_selector, "auto") == 0 ? 0 : rc;
        }
    }
    if (rt->device_err != 0)
        snprintf(msg, msg_len, "device \"%s\": %s", rt->device_selector,
                 rt->device_why);
    return rt->device_err;
}

/* The CPU implementation of a kernel node, for the cpu back-end. */
static int node_cpu_batch(void *arg, const void *in, void *out, size_t count)
{
    para_node_t *n = arg;
    if (n->kind == PARA__KIND_MAP_BATCH)
        return n->fn.map_batch(n->ctx, in, out, count);
    const unsigned char *ip = in;
    unsigned char *op = out;
    for (size_t i = 0; i < count; i++) {
        int rc = n->fn.map(n->ctx, ip + i * n->in_size, op + i * n->out_size);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void para__device_finish_run(para_runtime_t *rt, para_graph_t *g)
{
    para__devrt *d = rt->device;
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        if (n->dev_kernel != NULL)
            d->ops->kernel_release(n->dev_kernel);
        n->dev_kernel = NULL;
        n->placement = PARA__PLACE_CPU;
    }
    if (d != NULL)
        d->n_knodes = 0;
}

int para__device_prepare_run(para_runtime_t *rt, para_graph_t *g, char *msg,
                             size_t msg_len)
{
    unsigned count = 0;
    for (unsigned i = 0; i < g->n_nodes; i++)
        count += g->nodes[i]->kernel != NULL;
    if (count == 0)
        return 0;
    int rc = para__device_ensure(rt, msg, msg_len);
    if (rc != 0)
        return rc;
    para__devrt *d = rt->device;
    if (d != NULL)
        /* relaxed: published to the host thread and the workers with the
         * run (rt->lock). */
        atomic_store_explicit(&d->failed, false, memory_order_relaxed);
    if (d != NULL && d->cap_knodes < count) {
        para_node_t **k = realloc(d->knodes, count * sizeof *k);
        if (k == NULL) {
            snprintf(msg, msg_len, "out of memory preparing kernel nodes");
            return PARA_ENOMEM;
        }
        d->knodes = k;
        d->cap_knodes = count;
    }
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        if (n->kernel == NULL)
            continue;
        if (d == NULL) {
            if (!para__has_cpu_fn(n)) {
                snprintf(msg, msg_len,
                         "kernel node '%s' has no CPU function and there "
                         "is no device: %s",
                         n->name, rt->device_why);
                return PARA_ENODEV;
            }
            /* Asked for no device ("none"): info, not a warning. */
            if (!rt->device_cpu_logged)
                para__log(strcmp(rt->device_selector, "none") == 0 ? 2 : 1,
                          "no device (%s): kernel nodes run their CPU "
                          "functions",
                          rt->device_why);
            rt->device_cpu_logged = true;
            continue;
        }
        para__kernel_arg args[n->kernel->n_args + 1];
        for (size_t a = 0; a < n->kernel->n_args; a++) {
            args[a].value = n->kernel->args[a].value;
            args[a].size = n->kernel->args[a].size;
        }
        para__kernel_spec spec = {
            .name = n->name,
            .source = n->kernel->source,
            .options = n->kernel->options,
            .entry = n->kernel->entry,
            .in_size = n->in_size,
            .out_size = n->out_size,
            .args = args,
            .n_args = n->kernel->n_args,
            .cpu_fn = para__has_cpu_fn(n) ? node_cpu_batch : NULL,
            .cpu_arg = n,
        };
        char why[PARA__ERRMSG_LEN - 64];
        why[0] = '\0';
        rc = d->ops->kernel_create(d->dev, &spec, &n->dev_kernel, why,
                                   sizeof why);
        if (rc != 0) {
            n->dev_kernel = NULL;
            para__device_finish_run(rt, g);
            snprintf(msg, msg_len, "kernel node '%s': %s", n->name, why);
            return rc;
        }
        /* The cpu back-end runs the CPU function itself: splitting would
         * only split it with itself. */
        n->placement = para__has_cpu_fn(n) && d->ops != &para__cpu_ops
                           ? PARA__PLACE_MIXED
                           : PARA__PLACE_DEVICE;
        d->knodes[d->n_knodes++] = n;
    }
    return 0;
}

void para__device_shutdown(para_runtime_t *rt)
{
    para__devrt *d = rt->device;
    if (d == NULL)
        return;
    /* The scheduler has set rt->shutdown and woken start_cond. */
    if (d->thread_started)
        pthread_join(d->thread, NULL);
    rt->device = NULL;
    devrt_free(d);
}

void para__device_stats(const para_runtime_t *rt, para_stats_t *st)
{
    para__devrt *d = rt->device;
    if (d == NULL || d->counters == NULL)
        return;
    const para__device_counters *c = d->counters;
    /* relaxed: host-thread counters, read after runs. */
    st->device_launches +=
        atomic_load_explicit(&c->c_launches, memory_order_relaxed);
    st->device_items += atomic_load_explicit(&c->c_items, memory_order_relaxed);
    st->device_bytes +=
        atomic_load_explicit(&c->c_bytes_in, memory_order_relaxed) +
        atomic_load_explicit(&c->c_bytes_out, memory_order_relaxed);
    st->device_busy_ns +=
        atomic_load_explicit(&c->c_busy_ns, memory_order_relaxed);
}

const char *para_runtime_device(para_runtime_t *rt)
{
    if (rt == NULL)
        return NULL;
    /* acquire: pairs with the release store at the end of para_run(). */
    if (atomic_load_explicit(&rt->busy, memory_order_acquire) != 0)
        return NULL;
    char msg[PARA__ERRMSG_LEN];
    if (para__device_ensure(rt, msg, sizeof msg) != 0) {
        snprintf(rt->errmsg, sizeof rt->errmsg, "%s", msg);
        return NULL;
    }
    if (rt->device == NULL) {
        snprintf(rt->errmsg, sizeof rt->errmsg, "no device: %s",
                 rt->device_why);
        return NULL;
    }
    return rt->device->info->name;
}
