/*
 * Kernel nodes on devices: routing, gathering batches into launches,
 * completion, the watchdog, and failures.
 *
 * The devices
 *   A runtime opens its devices (para_runtime_attr_t.device, PARA_DEVICE:
 *   one entry, or a list such as "0:0,0:1", "all", "gpu", or simulated
 *   devices "sim:L:R,...") at the first run whose graph has a kernel node,
 *   through the back-ends of devices/device.h. With "auto" and no device,
 *   kernel nodes that have a CPU function run on the workers (logged once);
 *   a node without one fails the run before it starts.
 *
 * The host threads
 *   Each open device has one host thread, which takes part in every run
 *   like a worker (rt->helper_threads) but never runs tasks. Workers hand
 *   it the tasks of kernel nodes through its `incoming` Treiber stack; the
 *   host thread gathers them per node, launches, waits, and hands each
 *   finished input batch's output to the successors through the runtime's
 *   injection stack (rt->wake.inject), so no worker ever waits on a device. The
 *   host thread blocks (in the back-end's bounded wait, or on its condition
 *   variable), never spins: on a CPU device (PoCL) the driver's threads
 *   need every core. It runs on the cores near its device (hwloc's OpenCL
 *   helper: a PCI GPU's local CPUs); a CPU device is near all of them.
 *
 * Where a batch runs (para__device_route(), on the worker holding it)
 *   By earliest expected finish over the devices that have the node's
 *   kernel and are not lost in this run (finish_ns()): on device k a batch
 *   of `items` finishes after
 *       busy_k + L_k + (queued_k + items) * c_k * (1 + L_k / launch) + move_k
 *   where busy_k is what k still has in flight (free_at_ns: each launch's
 *   L + items * c from when the one before it ends, set again at each
 *   completion, so a device half-way through a long launch is not charged
 *   all of it), c_k the node's learned cost per item on k, L_k its launch
 *   latency, queued_k the node's items routed to k and not launched yet,
 *   and move_k the time to move the data over k's link (when the back-end
 *   knows its bandwidth): the queue's and this batch's inputs and outputs,
 *   without the inputs of a batch already resident on k (so a resident
 *   batch prefers its device; para__batch_resident_device() says where a
 *   batch is). With a known link, c_k is learnt with
 *   the copies taken out. A MIXED node (kernel and CPU function) also
 *   weighs the worker's own CPU, items * cpu_cost, and keeps the batch when
 *   that is sooner and no device would run out of work meanwhile (a worker
 *   busy with a batch feeds no device). Until a cost is measured, batches
 *   explore: a MIXED node measures the CPU first; each device gets one
 *   batch at a time until a launch has been timed (not the node's first
 *   launch on it, which may carry a compilation); a device is probed again
 *   with one batch whenever it has had none for REPROBE_NS. What a node's
 *   launches taught a device is kept for the next run of the same kernel
 *   (fit_memo): that run starts from it, without exploring, and goes on
 *   learning. A CPU device
 *   shares the workers' cores, so there a MIXED batch goes to whichever
 *   side does more per core, judged on the fastest cost per item each side
 *   showed (each is measured while the other competes for the cores).
 *   PARA_MIXED=device (or cpu) overrides the split of MIXED nodes: every
 *   batch goes to the devices (or stays on the workers), for tests that
 *   compare the two implementations.
 *
 * When to launch (per device, per node)
 *   A launch costs a fixed latency L plus c per item. The host thread
 *   fits L and c to the times of its launches (learn()). A node's launches
 *   follow one of two regimes:
 *     - Time-capped, when a consumer downstream would wait for the outputs
 *       (its CPU work per item is at least 1/19 of the device's), or the
 *       node's work is shared (several devices, a MIXED node): a launch
 *       takes at most LAUNCH_MAX_NS of device time or 38 L, whichever is
 *       longer, so that the stages downstream start early and overlap the
 *       device, and starts as soon as 19 L / c items are pending (L at
 *       most 5 % of the launch).
 *     - Uncapped, when nothing waits for the outputs: launches grow with
 *       the work gathered. Two are kept in flight (GATHER_IN_FLIGHT): while
 *       one runs, the host gathers and copies in the next, so the device
 *       does not wait for the host between them. A launch starts once as
 *       much is pending as a time-capped launch would take, and takes at
 *       most half of what is pending (launch_size()): the half left over
 *       is the launch that follows it, and launches at the end of the work
 *       shrink geometrically down to that length, so that the last one is
 *       short and the outputs of the long ones are delivered while the
 *       device still runs, not all after it. (Not from L alone: fitted
 *       over items of different cost, L can come out as 0.)
 *   In both, launches also keep to LAUNCH_MAX_BYTES and the device's
 *   largest allocation, and the first EXPLORE_LAUNCHES launches of a node
 *   without estimates take 1, 4, 16, 64 batches, so that no launch is
 *   blind and L and c can be told apart. A device with nothing in flight
 *   launches what is pending when nothing upstream can send more (every
 *   unit of the run is held by devices, or the sources are held back) or
 *   the oldest pending item has waited GATHER_WINDOW L. While a launch
 *   runs, new work gathers behind it, so a busy device gets larger
 *   launches by itself; up to the back-end's max_in_flight launches at
 *   once let the copies of one overlap the kernel of another. With a
 *   forced batch size (PARA_BATCH) every batch is launched alone. Inputs
 *   are copied side by side into the slot's staging buffer and the output
 *   is split back per input batch with its sequence range and path, so
 *   ORDERED nodes downstream see order. When the node's items are numbered
 *   (graph.h: only maps upstream), the launch also carries one run (first
 *   sequence number, position) per batch, stored after the inputs in the
 *   staging buffer: an OpenCL kernel's PARA_KARG_INDEX argument is made
 *   from it on the device, and back-ends that run the CPU function call it
 *   once per run (node_cpu_batch()) so that para_item_index() answers as
 *   on a worker. The device only ever reads and
 *   writes the slot's own staging memory, never a batch: a launch that has
 *   to be abandoned (see below) keeps its memory, and batches still go
 *   back to the run.
 *
 * Device-resident edges
 *   On a back-end with PARA__DEVCAP_RESIDENT (OpenCL) a launch may keep its
 *   output in a device buffer (from the back-end's pool) instead of, or
 *   besides, copying it back: out_plan() keeps it when a successor is a
 *   kernel node with a kernel on this device, and copies it back when any
 *   successor may run on the CPU (a CPU node, a sink, a MIXED node), once
 *   for all of them. Each output batch then refers to its part of the
 *   buffer (batch.h: dres, dev_buf, dev_offset; one buffer reference per
 *   batch, dropped when the batch is freed, from any thread). A launch
 *   takes either batches that are all resident here or all on the host:
 *   resident parts go to the back-end as segments (adjacent parts of one
 *   buffer joined, so the batches of one earlier launch are one part, passed
 *   as the buffer itself), and the kernel waits on the event of the kernel
 *   that wrote them, with no copy and no clFinish. With several devices
 *   every output also comes back, so any device or the CPU can take it;
 *   a task that leaves the device (fallback, a batch too large for it)
 *   brings its batch back with a blocking read first. PARA_RESIDENT=0 turns
 *   this off (every launch copies in and out), for comparisons.
 *   A launch whose outputs all stay here (every successor a device-only
 *   kernel node with a kernel here, nothing copied back) hands them to the
 *   successors when it begins, not when it completes (early_ok()): the
 *   output batches refer to the buffer the kernel is writing, whose event
 *   is that kernel, so a successor's launch can be enqueued while it runs
 *   and the device goes from one kernel to the next without waiting for
 *   the host. Such a successor launches behind the running producer as
 *   soon as that launch's outputs are pending for it (chains_behind()),
 *   instead of gathering until the device is idle. Since a launch that
 *   fails after its outputs went on cannot be run again elsewhere, this is
 *   done only where a loss of the device ends the run anyway (no fallback,
 *   or neither the node nor its successors have a CPU function), and a
 *   device lost with such a launch in flight ends the run. PARA_CHAIN=0
 *   hands outputs on at completion only, for comparisons.
 *
 * The watchdog
 *   The oldest launch in flight must finish by a deadline: from when it
 *   could start (its submission, or the completion of the launch before
 *   it), TIMEOUT_FACTOR times its expected time (L + items * c), at least
 *   attr.device_timeout_ms (PARA_DEVICE_TIMEOUT; 0 = no watchdog). The host
 *   thread waits on a launch in slices of at most WAIT_SLICE_NS, so it sees
 *   an abort (a failed node, para_run_cancel()) within one slice even while
 *   a launch hangs. A launch past its deadline means the device is lost.
 *
 * Failures
 *   A failing launch whose node function failed (PARA_ENODE) fails the run. A
 *   transient allocation failure (PARA_ENOMEM: a staging buffer, a buffer
 *   over the device's largest allocation) retries with launches of half the
 *   items, down to one batch, which is tried OOM_RETRIES times; a single
 *   batch that still does not fit is computed by the host thread with the
 *   node's CPU function, or fails the run with PARA_ENOMEM for a node without
 *   one. Any other failure, or the watchdog, loses the device for the rest of
 *   the run: with attr.device_fallback off the run fails with PARA_EDEVICE
 *   naming the node and the failing call. With it on (the default), the
 *   device's launches in flight are abandoned (their memory kept until the
 *   device is done with it: reclaimed when the device answers again, at the
 *   next run, or when the runtime is destroyed, which waits for the driver),
 *   and every task it held goes back to the workers, which route it again: to
 *   another device, else to the CPU for a node with a CPU function, else the
 *   run fails with PARA_EDEVICE naming the node and why each device was lost.
 *   A device that still has abandoned launches in flight at the next run sits
 *   that run out. A run that aborts abandons its launches the same way.
 *
 * Synchronisation
 *   incoming: a multi-producer task stack (mpsc_stack.h: seq_cst push),
 *   emptied by the host thread at once. sleeping/incoming form a Dekker
 *   pair (both sides seq_cst) so a push never misses a sleeping host
 *   thread; the signal itself goes under d->lock. `lost` is set by the host
 *   thread with release after its `why` is written, and read by workers
 *   with acquire before they read `why`. The estimates workers read (per
 *   device and node: cost, latency, backlog, items in flight, when the
 *   launches in flight end, probe time) are relaxed: a stale one only
 *   sends one batch to a worse place. The fit memo is the runtime
 *   thread's, between runs; what it seeds is published with the run. Everything
 * else of a host thread (pending lists, slots, L) is its own.
 *
 * Tests: tests/runtime/test_device_nodes.c (cpu, sim and OpenCL back-ends),
 * tests/devices/test_opencl_faults.c (injected OpenCL failures and hangs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "device.h"
#include "device_node.h"
#include "policy.h"

#define SLOTS 4 /* launch slots per device; in flight: min(this, back-end) */
#define LAUNCH_MAX_BYTES ((size_t)32 << 20) /* input + output per launch */
#define LAUNCH_MAX_NS 2000000 /* device time per launch, once measured */
#define LATENCY_SHARE 19      /* launch >= 19 L: L is at most 5 % of it */
#define GATHER_WINDOW 2       /* an idle device waits at most 2 L for more */
#define GATHER_MIN_NS 20000
#define GATHER_IN_FLIGHT 2 /* launches in flight while gathering long ones */
#define DOWN_DEPTH 4       /* nodes downstream whose work may wait */
#define REPROBE_NS 5000000 /* try an idle device again after 5 ms */
#define WAIT_SLICE_NS 10000000 /* longest wait on a launch: aborts seen */
#define TIMEOUT_FACTOR 20      /* a launch may take 20x its expected time */
#define OOM_RETRIES 3          /* a one-batch launch out of memory, again */

/* One kernel node on one device, for the current run. */
typedef struct dnode {
    para_node_t *node; /* NULL for nodes without a kernel */
    void *kernel;      /* back-end kernel; NULL if it has none here */
    /* Host thread only. */
    para__task *pending_head, *pending_tail;
    size_t pending_items;
    uint64_t pending_since;
    uint32_t launches_run; /* finished (learnt from, but the first) */
    uint64_t memo_key;     /* the kernel's identity (memo_key()) */
    bool warm;             /* estimates carried over from a run before */
    double down_memo_ps;   /* downstream_ps() at the end of a run before; -1 */
    uint32_t begun;        /* launches started this run */
    double sw, sx, sy, sxx, sxy; /* decayed sums of (items, ns) */
    size_t split_cap;    /* items per launch after ENOMEM; 0 = no limit */
    unsigned oom_streak; /* launches failed with ENOMEM since one worked */
    /* The launch being begun, for node_cpu_batch() (back-ends that run
     * the CPU function inside launch_begin()); NULL otherwise. */
    const para__launch *launching;
    /* Estimates (picoseconds per item; 0 = not measured yet), written by
     * the host thread, read by workers routing a batch. */
    _Atomic uint64_t ps_per_item;    /* marginal cost c */
    _Atomic uint64_t total_ps;       /* cost per item with latency included */
    _Atomic uint64_t best_ps;        /* fastest total seen */
    _Atomic uint64_t backlog_items;  /* routed here, not finished */
    _Atomic uint64_t launched_items; /* of those, in launches in flight */
    _Atomic uint64_t probe_ns;       /* last batch routed here */
} dnode;

typedef struct slot {
    para__launch l;
    dnode *dn;
    para__task *tasks, *tasks_tail; /* the launch's inputs, in order */
    size_t n_tasks, items;
    size_t staged_bytes; /* counted in run->bytes while in flight */
    uint64_t trace_t0;   /* para__trace_device_launch() */
    unsigned char *in_stage, *out_stage;
    size_t in_cap, out_cap;
    /* The current launch's host staging: in_stage/out_stage, or the
     * back-end's pinned memory (ops->stage). */
    unsigned char *in_ptr, *out_ptr;
    /* Device-resident edges: the input parts on the device (res_in), and
     * where the output goes: kept on the device (keep), copied back
     * (back), or both. */
    para__devseg *segs;
    size_t cap_segs;
    bool res_in, keep, back;
    /* The outputs went to the successors when the launch began
     * (early_ok(), launch()): the slot has no tasks left. */
    bool early;
} slot;

/* What a kernel node's launches taught a device, kept for the next run of
 * the same kernel (same node name, source, entry, options, item sizes,
 * scalar arguments and CPU function): that run starts from these
 * estimates instead of exploring, and goes on learning from its own
 * launches. The runtime's thread writes and reads them between runs. */
#define MEMO_SLOTS 16

typedef struct fit_memo {
    uint64_t key; /* 0 = empty */
    double sw, sx, sy, sxx, sxy;
    uint64_t ps_per_item, total_ps, best_ps;
    double down_ps; /* downstream_ps() at the run's end; -1 not known */
} fit_memo;

/* A launch given up while the device may still use its memory. */
typedef struct lost_launch {
    struct lost_launch *next;
    para__launch l;
    void *kernel;
    unsigned char *in_stage, *out_stage;
} lost_launch;

typedef struct devctx {
    para_runtime_t *rt;
    unsigned index; /* in the runtime's device list */
    const para__device_ops *ops;
    void *dev;
    const para__device_info *info;
    para__devres res; /* batches resident in its memory */
    int64_t res_peak; /* most of res.bytes this run (host thread) */
    bool resident;    /* PARA__DEVCAP_RESIDENT and PARA_RESIDENT on */
    bool chain;       /* and PARA_CHAIN on: early hand-over (early_ok()) */
    bool pinned;      /* host staging in the back-end's pinned memory */
    pthread_t thread;
    bool thread_started;
    bool quit;                 /* rt->lock: leave now (opening failed) */
    uint64_t start_generation; /* runs before the thread existed */
    bool shares_cores;         /* a CPU device using all cores */
    unsigned max_in_flight;

    alignas(PARA_CACHELINE) para__task_stack incoming;
    _Atomic unsigned sleeping;
    _Atomic bool lost; /* given up for this run; `why` says why */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    char why[512];       /* written before `lost` is set */

    /* Host thread only (and the run's setup, before the run starts). */
    alignas(PARA_CACHELINE) slot slots[SLOTS];
    unsigned head, n_inflight;
    dnode *dn; /* by node index */
    unsigned cap_dn;
    unsigned *knodes; /* node indices with a kernel here */
    unsigned n_knodes, next_knode;
    int64_t held; /* tasks (units) held here */
    /* Launch latency L (0 = not known yet): written by the host thread,
     * read by workers routing a batch (relaxed, an estimate). */
    _Atomic uint64_t latency_ns;
    /* When the launches in flight should all be done (monotonic ns, an
     * estimate from L and c; 0 = none in flight): written by the host
     * thread at each launch and completion, read by workers (relaxed). */
    _Atomic uint64_t free_at_ns;
    uint64_t last_complete_ns;
    /* The shortest launch learnt from (learn()), in ns; 0 = none yet: no
     * launch's fixed latency exceeds it. Host thread only. */
    double shortest_ns;
    uint64_t busy_since;
    uint64_t head_since; /* when the oldest launch in flight could start */
    lost_launch *lost_list;
    fit_memo memo[MEMO_SLOTS]; /* between runs only (the runtime's thread) */
    unsigned memo_next;
    void **zombies; /* kernels whose release waits for lost launches */
    unsigned n_zombies, cap_zombies;
    char msg[PARA__ERRMSG_LEN];

    /* Free batches the host thread keeps for itself (batch.h): the inputs
     * it releases after a launch become the outputs of the next. Host
     * thread only; drained when the device closes. */
    para__batch_cache cache;

    /* Statistics (stats.c) and the trace lane (trace.h, NULL when tracing
     * is off), both written by the host thread only. */
    para__device_counters *counters;
    para__trace_lane *lane;
} devctx;

struct para__devrt {
    unsigned n;
    devctx *dev[PARA__MAX_DEVICES];
};

static void fail_run(devctx *d, para__run *run, para_node_t *n, int rc);

static uint64_t lat_of(const devctx *d)
{
    /* relaxed: an estimate (see latency_ns). */
    return atomic_load_explicit(&((devctx *)d)->latency_ns,
                                memory_order_relaxed);
}

/* Launches learnt from before a node's launches on a device follow the
 * regular caps: the first EXPLORE_LAUNCHES grow 4x each from one batch, so
 * that the fit of time against items sees different sizes. */
#define EXPLORE_LAUNCHES 4

/* Nanoseconds to move @p bytes over device @p d's link (0 when the
 * back-end does not know its link: the copies are then part of the
 * learned cost per item). */
static double move_ns(const devctx *d, double bytes)
{
    uint64_t bw = d->info->link_bytes_per_s;
    return bw != 0 ? bytes * 1e9 / (double)bw : 0.0;
}

/* Picoseconds per item of a launch of @p dn on @p d (its inputs and
 * outputs go through the slot's staging memory, over the link): the
 * learned cost and the copies; 0 if not measured yet. */
static double launch_item_ps(const devctx *d, const dnode *dn)
{
    /* relaxed: an estimate, written by the host thread. */
    uint64_t c =
        atomic_load_explicit(&((dnode *)dn)->ps_per_item, memory_order_relaxed);
    if (c == 0)
        return 0;
    double io = (double)(dn->node->in_size + dn->node->out_size);
    return (double)c + 1e3 * move_ns(d, io);
}

/* The expected time of the launch in slot @p s, in ns. */
static double slot_expect_ns(const devctx *d, const slot *s)
{
    return (double)lat_of(d) +
           (double)s->items * launch_item_ps(d, s->dn) / 1e3;
}

/* When device @p d would finish @p items more of @p dn's items, in ns from
 * now: first what it has in flight (free_at_ns, every node's launches),
 * then a latency, and per item of the node's queue (routed, not launched)
 * and the new ones, the marginal cost plus the share of latency of each
 * further launch (launches of about launch_ns) and the time to move the
 * data over its link (the queue's inputs and outputs from the host, and
 * @p moved bytes for the new items). -1 if not measured yet. */
static double finish_ns(const devctx *d, dnode *dn, double items, double moved,
                        uint64_t now)
{
    /* relaxed: estimates; a stale one only moves one batch elsewhere. */
    uint64_t c = atomic_load_explicit(&dn->ps_per_item, memory_order_relaxed);
    if (c == 0)
        return -1;
    double lat = (double)lat_of(d);
    uint64_t backlog =
        atomic_load_explicit(&dn->backlog_items, memory_order_relaxed);
    uint64_t launched =
        atomic_load_explicit(&dn->launched_items, memory_order_relaxed);
    double queued = backlog > launched ? (double)(backlog - launched) : 0.0;
    uint64_t free_at =
        atomic_load_explicit(&((devctx *)d)->free_at_ns, memory_order_relaxed);
    double busy = free_at > now ? (double)(free_at - now) : 0.0;
    double launch_ns =
        PARA_MAX((double)LAUNCH_MAX_NS, 2.0 * LATENCY_SHARE * lat);
    double work = (queued + items) * (double)c / 1e3;
    double io = (double)(dn->node->in_size + dn->node->out_size);
    return busy + lat + work * (1.0 + lat / launch_ns) +
           move_ns(d, queued * io + moved);
}

/* The bytes a batch of @p items of @p n resident on device @p where (-1:
 * the host) moves over device @p k's link if it runs there: its inputs
 * unless they are already there, and its outputs, which go back to the
 * host. An input on another device also comes down over that device's
 * link first, which is counted in its time on @p k as bytes over k's link
 * scaled by the ratio of the two links. */
static double moved_bytes(para__devrt *set, unsigned k, int where,
                          const para_node_t *n, double items)
{
    double in = items * (double)n->in_size, out = items * (double)n->out_size;
    if (where == (int)k)
        return out;
    double bytes = in + out;
    if (where >= 0 && (unsigned)where < set->n) {
        uint64_t bw_k = set->dev[k]->info->link_bytes_per_s;
        uint64_t bw_w = set->dev[where]->info->link_bytes_per_s;
        if (bw_k != 0 && bw_w != 0)
            bytes += in * (double)bw_k / (double)bw_w;
    }
    return bytes;
}

/* ---- worker side --------------------------------------------------------- */

static void host_wake(devctx *d)
{
    pthread_mutex_lock(&d->lock);
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

void para__device_wake(para_runtime_t *rt)
{
    para__devrt *set = rt->device;
    for (unsigned i = 0; set != NULL && i < set->n; i++)
        host_wake(set->dev[i]);
}

static bool usable(const devctx *d, const dnode *dn)
{
    /* relaxed: a hint; a task routed to a device lost meanwhile is sent
     * back by its host thread. */
    return dn->kernel != NULL &&
           !atomic_load_explicit(&d->lost, memory_order_relaxed);
}

/* The place for batch @p b of @p n: a device index, or -1 for the
 * worker's CPU (MIXED nodes only), or -2 when no place is left. */
static int choose(para__devrt *set, para_node_t *n, const para__batch *b)
{
    size_t items = b->count;
    bool mixed = n->placement == PARA__PLACE_MIXED;
    /* PARA_MIXED: the CPU always, or the devices as for a device-only
     * node (while one is left; then the CPU). */
    para__mixed_mode force =
        set->n > 0 ? set->dev[0]->rt->mixed : PARA__MIXED_AUTO;
    if (mixed && force == PARA__MIXED_CPU)
        return -1;
    if (mixed && force == PARA__MIXED_DEVICE) {
        for (unsigned k = 0; k < set->n; k++)
            if (usable(set->dev[k], &set->dev[k]->dn[n->index]))
                mixed = false;
        if (mixed)
            return -1;
    }
    /* relaxed: estimates; a stale one only moves one batch elsewhere. */
    uint64_t cpu =
        atomic_load_explicit(&n->cpu_ps_per_item, memory_order_relaxed);
    bool any = false;
    for (unsigned k = 0; k < set->n; k++)
        any |= usable(set->dev[k], &set->dev[k]->dn[n->index]);
    if (!any)
        return mixed ? -1 : -2;
    if (mixed && cpu == 0)
        return -1; /* measure the CPU first */
    uint64_t now = para__now_ns();
    /* Where the batch's data is: a device it is resident on runs it
     * without moving its inputs (moved_bytes()). */
    int resident = para__batch_resident_device(b);
    double cpu_finish = (double)items * (double)cpu;
    if (resident >= 0 && (unsigned)resident < set->n)
        cpu_finish += 1e3 * move_ns(set->dev[resident],
                                    (double)items * (double)n->in_size);
    double best = -1.0; /* the devices' earliest finish */
    int where = -1;
    int idle_unmeasured = -1;
    bool starving = false; /* a device would run dry during the CPU batch */
    uint64_t least_backlog = UINT64_MAX;
    int least = -1;
    for (unsigned k = 0; k < set->n; k++) {
        devctx *d = set->dev[k];
        dnode *dn = &d->dn[n->index];
        if (!usable(d, dn))
            continue;
        uint64_t total =
            atomic_load_explicit(&dn->ps_per_item, memory_order_relaxed);
        uint64_t backlog =
            atomic_load_explicit(&dn->backlog_items, memory_order_relaxed);
        if (backlog < least_backlog) {
            least_backlog = backlog;
            least = (int)k;
        }
        if (backlog == 0) {
            /* Probe: until it is measured, and again when it has not been
             * tried for a while (loads change). */
            uint64_t last =
                atomic_load_explicit(&dn->probe_ns, memory_order_relaxed);
            if ((total == 0 || now - last > REPROBE_NS) && idle_unmeasured < 0)
                idle_unmeasured = (int)k;
        }
        if (total == 0)
            continue; /* its probe is still out */
        if (mixed && d->shares_cores && set->n == 1) {
            uint64_t cpu_best =
                atomic_load_explicit(&n->cpu_best_ps, memory_order_relaxed);
            uint64_t dev_best =
                atomic_load_explicit(&dn->best_ps, memory_order_relaxed);
            if ((double)dev_best * (double)d->rt->n_workers <= (double)cpu_best)
                return (int)k;
            continue;
        }
        if (finish_ns(d, dn, 0, 0, now) * 1e3 < cpu_finish)
            starving = true;
        double moved = moved_bytes(set, k, resident, n, (double)items);
        double finish =
            finish_ns(d, dn, (double)items, moved, now) * 1e3; /* ps */
        if (best < 0 || finish <= best) {
            best = finish;
            where = (int)k;
        }
    }
    if (idle_unmeasured >= 0)
        return idle_unmeasured;
    if (!mixed) {
        /* least: nothing measured yet. Neither: every device was lost
         * after the check above (a failing launch on the host thread
         * meanwhile); a device-only node then has no place left. */
        if (where >= 0)
            return where;
        return least >= 0 ? least : -2;
    }
    /* A worker that keeps a batch also stops feeding the devices while it
     * runs it: it keeps one only when that is sooner than on any device
     * and no device would run out of work meanwhile. */
    if (where >= 0 && (starving || best <= cpu_finish))
        return where;
    return -1;
}

/* Why no device is left for @p n, into @p buf. */
static void lost_reasons(para__devrt *set, para_node_t *n, char *buf,
                         size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (unsigned k = 0; k < set->n && used + 1 < len; k++) {
        devctx *d = set->dev[k];
        const char *why = "it has no kernel for the node";
        /* acquire: pairs with the release store in lose(); `why` is
         * written before. */
        if (atomic_load_explicit(&d->lost, memory_order_acquire))
            why = d->why;
        else if (d->dn[n->index].kernel != NULL)
            continue;
        int w = snprintf(buf + used, len - used, "%sdevice \"%s\": %s",
                         used > 0 ? "; " : "", d->info->name, why);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

bool para__device_route(para__worker *w, para__run *run, para__task *t)
{
    (void)w;
    para_node_t *n = t->node;
    para__devrt *set = run->rt->device;
    size_t items = t->batch->count;
    if (items == 0 || set == NULL)
        return false; /* process() forwards an empty batch */
    int k = choose(set, n, t->batch);
    if (k == -1)
        return false;
    if (k == -2) {
        char why[PARA__ERRMSG_LEN / 2];
        lost_reasons(set, n, why, sizeof why);
        para__fail_run(NULL, run, PARA_EDEVICE,
                       "kernel node '%s': no device left to run it (%s)",
                       n->name, why);
        para__batch_release(NULL, run, t->batch);
        para__units_add(run, -1);
        return true;
    }
    devctx *d = set->dev[k];
    dnode *dn = &d->dn[n->index];
    /* relaxed: estimates for choose(). */
    atomic_fetch_add_explicit(&dn->backlog_items, items, memory_order_relaxed);
    atomic_store_explicit(&dn->probe_ns, para__now_ns(), memory_order_relaxed);
    /* seq_cst push (mpsc_stack.h): the pusher's half of the Dekker pair
     * with the host thread's sleeping flag. */
    para__task_stack_push(&d->incoming, t);
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

/* ---- host thread: tasks in and out --------------------------------------- */

static void pending_push(dnode *dn, para__task *t)
{
    t->next = NULL;
    if (dn->pending_tail != NULL)
        dn->pending_tail->next = t;
    else {
        dn->pending_head = t;
        dn->pending_since = para__now_ns();
    }
    dn->pending_tail = t;
    dn->pending_items += t->batch->count;
}

/* Put a chain of tasks back at the front of the node's pending list. */
static void pending_unshift(dnode *dn, para__task *first, para__task *last,
                            size_t items)
{
    last->next = dn->pending_head;
    if (dn->pending_head == NULL)
        dn->pending_tail = last;
    dn->pending_head = first;
    dn->pending_items += items;
}

static void take_incoming(devctx *d)
{
    if (para__task_stack_peek_empty(&d->incoming))
        return;
    para__task *fifo = para__task_stack_take_all_fifo(&d->incoming);
    while (fifo != NULL) {
        para__task *next = fifo->next;
        pending_push(&d->dn[fifo->node->index], fifo);
        d->held++;
        fifo = next;
    }
}

/* The task leaves this device: its backlog goes. */
static void unhold(devctx *d, para__task *t)
{
    /* relaxed: an estimate. */
    atomic_fetch_sub_explicit(&d->dn[t->node->index].backlog_items,
                              t->batch->count, memory_order_relaxed);
    d->held--;
}

/* Give up a task without running it (abort, or the run failed). */
static void drop_task(devctx *d, para__run *run, para__task *t)
{
    unhold(d, t);
    para__batch_release(&d->cache, run, t->batch);
    para__units_add(run, -1);
}

/* Bring a batch whose items are only in this device's memory back to the
 * host (blocking), for a task that leaves the device. False if that
 * failed: the run has failed then. */
static bool materialize(devctx *d, para__run *run, para__task *t)
{
    para__batch *b = t->batch;
    if (para__batch_on_host(b))
        return true;
    char msg[PARA__ERRMSG_LEN / 2];
    if (b->capacity < b->dev_bytes && b->host_copy == NULL) {
        /* A device-only batch has no room for its items (deliver_outputs()):
         * they come back into a buffer of their own, on the host budget
         * from now on. */
        b->host_copy = malloc(b->dev_bytes);
        if (b->host_copy == NULL) {
            para__fail_run(NULL, run, PARA_ENOMEM,
                           "node '%s': out of memory bringing %zu bytes of "
                           "its input back from device \"%s\"",
                           t->node->name, b->dev_bytes, d->info->name);
            return false;
        }
        b->data = b->host_copy;
        b->alloc_bytes += b->dev_bytes;
        para__bytes_add(run, (int64_t)b->dev_bytes);
    }
    int rc = d->ops->buf_read(d->dev, b->dev_buf, b->dev_offset, b->dev_bytes,
                              b->data, msg, sizeof msg);
    if (rc != 0) {
        para__fail_run(NULL, run, rc,
                       "node '%s': its input is on device \"%s\", which "
                       "cannot give it back: %s",
                       t->node->name, d->info->name, msg);
        return false;
    }
    if (d->counters != NULL)
        para__counter_add(&d->counters->c_bytes_out, b->dev_bytes);
    /* Plain store: the other tasks of this batch are on this device, and
     * reach a worker through para__inject_task() after it. */
    b->host_valid = true;
    return true;
}

/* Hand a task back to the workers, which route it again (fallback). */
static void hand_back(devctx *d, para__run *run, para__task *t)
{
    if (!materialize(d, run, t)) {
        drop_task(d, run, t);
        return;
    }
    unhold(d, t);
    para__inject_task(run, t); /* the unit goes with it */
}

static void for_chain(devctx *d, para__run *run, para__task *t,
                      void (*fn)(devctx *, para__run *, para__task *))
{
    while (t != NULL) {
        para__task *next = t->next;
        fn(d, run, t);
        t = next;
    }
}

/* Every pending task of the device to @p fn (drop_task or hand_back). */
static void flush_pending(devctx *d, para__run *run,
                          void (*fn)(devctx *, para__run *, para__task *))
{
    for (unsigned i = 0; i < d->n_knodes; i++) {
        dnode *dn = &d->dn[d->knodes[i]];
        para__task *t = dn->pending_head;
        dn->pending_head = dn->pending_tail = NULL;
        dn->pending_items = 0;
        for_chain(d, run, t, fn);
    }
}

static void unstage(para__run *run, slot *s)
{
    if (s->staged_bytes != 0)
        para__bytes_add(run, -(int64_t)s->staged_bytes);
    s->staged_bytes = 0;
}

/* Leave the oldest slot in flight. */
static void retire_head(devctx *d)
{
    slot *s = &d->slots[d->head];
    /* relaxed: an estimate for choose(). */
    atomic_fetch_sub_explicit(&s->dn->launched_items, s->items,
                              memory_order_relaxed);
    d->head = (d->head + 1) % SLOTS;
    if (--d->n_inflight == 0 && d->counters != NULL)
        para__counter_add(&d->counters->c_busy_ns,
                          para__now_ns() - d->busy_since);
    d->head_since = para__now_ns();
    /* The launches left in flight run from now on, one after another. */
    double left = 0;
    for (unsigned i = 0; i < d->n_inflight; i++)
        left += slot_expect_ns(d, &d->slots[(d->head + i) % SLOTS]);
    atomic_store_explicit(
        &d->free_at_ns, d->n_inflight > 0 ? d->head_since + (uint64_t)left : 0,
        memory_order_relaxed);
}

/* Give up the launch of the oldest slot without waiting for it: the
 * device may still use its memory, which moves to the lost list; its
 * tasks go to @p fn. */
static void abandon_head(devctx *d, para__run *run,
                         void (*fn)(devctx *, para__run *, para__task *))
{
    slot *s = &d->slots[d->head];
    lost_launch *x = calloc(1, sizeof *x);
    if (x == NULL) {
        /* No memory to keep the launch aside: wait for it instead (it is
         * bounded by the device only; a last resort). */
        while (d->ops->launch_wait(s->dn->kernel, &s->l, WAIT_SLICE_NS, d->msg,
                                   sizeof d->msg) == 0)
            ;
    } else {
        x->l = s->l;
        x->kernel = s->dn->kernel;
        x->in_stage = s->in_stage;
        x->out_stage = s->out_stage;
        x->next = d->lost_list;
        d->lost_list = x;
        memset(&s->l, 0, sizeof s->l);
        s->in_stage = s->out_stage = NULL;
        s->in_cap = s->out_cap = 0;
    }
    unstage(run, s);
    para__task *t = s->tasks;
    s->tasks = s->tasks_tail = NULL;
    s->early = false;
    retire_head(d);
    for_chain(d, run, t, fn);
}

/* Reclaim lost launches the device has finished with; wait up to
 * @p wait_ns for each. True if none is left. */
static bool reap_lost(devctx *d, uint64_t wait_ns)
{
    lost_launch **pp = &d->lost_list;
    while (*pp != NULL) {
        lost_launch *x = *pp;
        char msg[256];
        if (d->ops->launch_wait(x->kernel, &x->l, wait_ns, msg, sizeof msg) ==
            0) {
            pp = &x->next;
            continue;
        }
        if (x->l.out_buf != NULL)
            d->ops->buf_release(d->dev, x->l.out_buf);
        x->l.out_buf = NULL;
        d->ops->launch_fini(x->kernel, &x->l);
        free(x->in_stage);
        free(x->out_stage);
        *pp = x->next;
        free(x);
    }
    if (d->lost_list != NULL)
        return false;
    for (unsigned i = 0; i < d->n_zombies; i++)
        d->ops->kernel_release(d->zombies[i]);
    d->n_zombies = 0;
    return true;
}

/* The device is lost for this run (rc and d->msg say why, under a launch
 * of @p n): with fallback on, its launches and tasks go back to the
 * workers; else the run fails. */
static bool early_in_flight(const devctx *d);

static void lose(devctx *d, para__run *run, para_node_t *n, int rc)
{
    /* With outputs handed over early by a launch still in flight, the
     * launches downstream have nothing to read: the run ends (early_ok()
     * allows it only where it would anyway). */
    bool fallback = d->rt->attr.device_fallback && !para__aborting(run) &&
                    !early_in_flight(d);
    if (!fallback && !para__aborting(run))
        fail_run(d, run, n, rc);
    /* relaxed: only this thread sets it. */
    if (!atomic_load_explicit(&d->lost, memory_order_relaxed)) {
        /* Written once: workers read it once they see `lost`. */
        snprintf(d->why, sizeof d->why, "failed under node '%.60s': %.400s",
                 n->name, d->msg);
        /* release: `why` above is read by workers after they see it. */
        atomic_store_explicit(&d->lost, true, memory_order_release);
        if (fallback)
            para__log(1,
                      "device \"%s\" lost for this run (%s): its work goes "
                      "to the other devices or the CPU",
                      d->info->name, d->why);
    }
    void (*fn)(devctx *, para__run *, para__task *) =
        fallback ? hand_back : drop_task;
    while (d->n_inflight > 0)
        abandon_head(d, run, fn);
    flush_pending(d, run, fn);
}

static void fail_run(devctx *d, para__run *run, para_node_t *n, int rc)
{
    if (rc == PARA_ENODE)
        para__fail_run(NULL, run, PARA_ENODE, "node '%s' %s", n->name, d->msg);
    else
        para__fail_run(NULL, run, rc, "node '%s' on device \"%s\": %s", n->name,
                       d->info->name, d->msg);
}

/* Learn L and the node's costs from a finished launch of @p items, by a
 * least-squares line through the recent launches (sums decayed by
 * LEARN_DECAY per launch): time = L + c * items. While the launches are
 * too alike in size to tell L from c, L stays as it was (0 at first, so
 * c includes it: launches are then capped by time, the safe side); the
 * fit's L is at most the shortest launch learnt from (shortest_ns). A
 * node's first launch of a run is not learnt from: it may carry the
 * driver's compilation of the kernel. */
#define LEARN_DECAY 0.9

static uint64_t ewma(uint64_t old, uint64_t sample)
{
    return old == 0 ? sample : (3 * old + sample) / 4;
}

static void learn(devctx *d, dnode *dn, uint64_t ns, size_t items)
{
    if (dn->launches_run++ == 0)
        return;
    /* The copies over a known link are not part of c: finish_ns() adds
     * them per batch, by where its data is. */
    double io = (double)(dn->node->in_size + dn->node->out_size);
    double x = (double)items;
    double y = PARA_MAX((double)ns - move_ns(d, x * io), 1.0);
    if (d->shortest_ns == 0 || y < d->shortest_ns)
        d->shortest_ns = y;
    dn->sw = dn->sw * LEARN_DECAY + 1;
    dn->sx = dn->sx * LEARN_DECAY + x;
    dn->sy = dn->sy * LEARN_DECAY + y;
    dn->sxx = dn->sxx * LEARN_DECAY + x * x;
    dn->sxy = dn->sxy * LEARN_DECAY + x * y;
    double mx = dn->sx / dn->sw, my = dn->sy / dn->sw;
    double vx = dn->sxx / dn->sw - mx * mx;
    double cov = dn->sxy / dn->sw - mx * my;
    double lat = (double)lat_of(d), c;
    if (vx > 0.01 * mx * mx && cov > 0) {
        c = cov / vx;
        lat = my - c * mx;
        if (lat < 0) {
            lat = 0;
            c = my / mx;
        } else if (lat > d->shortest_ns) {
            /* Items of different cost (a Mandelbrot row outside the set
             * costs a tenth of one inside) can tilt the fit: L is no more
             * than the shortest launch took. */
            lat = d->shortest_ns;
            c = (my - lat) / mx;
        }
        atomic_store_explicit(&d->latency_ns, (uint64_t)lat,
                              memory_order_relaxed);
    } else {
        c = my > lat ? (my - lat) / mx : my / mx;
    }
    uint64_t c_ps = PARA_MAX((uint64_t)(c * 1000.0), (uint64_t)1);
    uint64_t total = PARA_MAX((uint64_t)(y * 1000.0 / x), (uint64_t)1);
    /* relaxed: read by workers as estimates; only this thread writes. */
    atomic_store_explicit(&dn->ps_per_item, c_ps, memory_order_relaxed);
    keep_min(&dn->best_ps, total);
    uint64_t t = atomic_load_explicit(&dn->total_ps, memory_order_relaxed);
    atomic_store_explicit(&dn->total_ps, ewma(t, total), memory_order_relaxed);
}

/* Hand the outputs of the launch in slot @p s to the successors: those
 * kept in device buffer @p kept (NULL: none), those copied back in the
 * slot's host staging (s->back). The caller's reference to @p kept stays
 * the caller's; each output batch takes one of its own. */
static void deliver_batches(devctx *d, para__run *run, slot *s, void *kept)
{
    para_node_t *n = s->dn->node;
    const size_t os = n->out_size;
    size_t offset = 0;
    para__task *t = s->tasks;
    s->tasks = s->tasks_tail = NULL;
    while (t != NULL) {
        para__task *next = t->next;
        para__batch *in = t->batch;
        size_t count = in->count;
        para__batch *o = NULL;
        if (!para__aborting(run)) {
            /* Outputs that stay on the device only take no host room: the
             * batch is a header (host budget) and a part of the device
             * buffer (device budget). */
            o = para__batch_alloc(&d->cache, run, n->n_succs,
                                  kept != NULL && !s->back ? 0 : count * os);
            if (o == NULL)
                para__fail_run(NULL, run, PARA_ENOMEM,
                               "out of memory for the output of node '%s'",
                               n->name);
        }
        if (o == NULL || para__aborting(run)) {
            if (o != NULL)
                para__batch_free(&d->cache, run, o);
            drop_task(d, run, t);
            offset += count;
            t = next;
            continue;
        }
        para__batch_join_family(o, in);
        if (s->back)
            memcpy(o->data, s->out_ptr + offset * os, count * os);
        if (kept != NULL) {
            /* Resident: the successors on this device read it there. */
            d->ops->buf_retain(d->dev, kept, 1);
            o->dres = &d->res;
            o->dev_buf = kept;
            o->dev_offset = offset * os;
            o->dev_bytes = count * os;
            o->host_valid = s->back;
            /* relaxed: see para__devres.bytes. */
            int64_t now =
                atomic_fetch_add_explicit(&d->res.bytes, (int64_t)o->dev_bytes,
                                          memory_order_relaxed) +
                (int64_t)o->dev_bytes;
            /* The run's peak, as the counter's growth since the run began
             * (stats.c subtracts the value at the start). */
            if (now > d->res_peak) {
                if (d->counters != NULL)
                    para__counter_add(&d->counters->c_resident_peak,
                                      (uint64_t)(now - d->res_peak));
                d->res_peak = now;
            }
        }
        offset += count;
        o->count = count;
        o->seq_begin = in->seq_begin;
        o->seq_end = in->seq_end;
        o->path = t->path;
        /* relaxed: statistics. */
        atomic_fetch_add_explicit(&n->st_items_in, count, memory_order_relaxed);
        atomic_fetch_add_explicit(&n->st_items_out, count,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&n->st_device_items, count,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&n->st_batches, 1, memory_order_relaxed);
        unhold(d, t);
        para__batch_release(&d->cache, run, in);
        para__deliver(NULL, run, n, o, 1); /* our unit goes with it */
        t = next;
    }
}

/* Hand the outputs of a finished launch to the successors (or, for a
 * launch that handed them over when it began, only drop its reference to
 * the buffer). */
static void deliver_outputs(devctx *d, para__run *run, slot *s)
{
    void *kept = s->l.out_buf; /* the launch's reference, dropped below */
    s->l.out_buf = NULL;
    if (!s->early)
        deliver_batches(d, run, s, kept);
    s->early = false;
    if (kept != NULL)
        d->ops->buf_release(d->dev, kept);
}

/* Whether the launch in slot @p s, just begun, hands its outputs to the
 * successors now instead of at its completion: they all stay on this
 * device (kept, none copied back: every successor is a device-only kernel
 * node with a kernel here), so the successors' launches can be enqueued
 * while it runs, waiting for its kernel on the device. Only where a loss of
 * the device ends the run anyway (no fallback, or neither the node nor a
 * successor has a CPU function to fall back to): a launch that fails
 * after its outputs went on cannot be run again elsewhere. */
static bool early_ok(const devctx *d, const para__run *run, const slot *s)
{
    if (!d->chain || !s->keep || s->back || s->l.out_early == NULL ||
        para__aborting((para__run *)run))
        return false;
    const para_node_t *n = s->dn->node;
    if (!d->rt->attr.device_fallback)
        return true;
    if (para__has_cpu_fn(n))
        return false;
    for (unsigned i = 0; i < n->n_succs; i++)
        if (para__has_cpu_fn(n->succs[i]))
            return false;
    return true;
}

/* Whether a launch in flight has handed its outputs over early. */
static bool early_in_flight(const devctx *d)
{
    for (unsigned i = 0; i < d->n_inflight; i++)
        if (d->slots[(d->head + i) % SLOTS].early)
            return true;
    return false;
}

static void launch_failed(devctx *d, para__run *run, slot *s, int rc);

/* The oldest slot's launch is over with @p r (1 done, < 0 failed). */
static void complete(devctx *d, para__run *run, int r)
{
    slot *s = &d->slots[d->head];
    dnode *dn = s->dn;
    para_node_t *n = dn->node;
    unstage(run, s);
    if (r < 0) {
        /* The slot stays the head until launch_failed() has its tasks. */
        launch_failed(d, run, s, r);
        return;
    }
    retire_head(d);
    dn->oom_streak = 0;
    /* The launch started when the device was done with the one before. */
    uint64_t start = PARA_MAX(s->l.submit_ns, d->last_complete_ns);
    uint64_t ns = s->l.complete_ns > start ? s->l.complete_ns - start : 1;
    d->last_complete_ns = s->l.complete_ns;
    learn(d, dn, ns, s->items);

    /* Bytes the launch copied: none for inputs already on the device and
     * outputs that stay there. */
    size_t h2d = s->res_in ? 0 : s->items * n->in_size;
    size_t d2h = s->back ? s->items * n->out_size : 0;
    size_t handed = s->res_in ? s->n_tasks : 0;
    /* relaxed: statistics, read after the run. */
    atomic_fetch_add_explicit(&n->st_device_launches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&n->st_device_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&n->st_device_bytes_in, h2d,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&n->st_device_bytes_out, d2h,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&n->st_device_handovers, handed,
                              memory_order_relaxed);
    if (d->counters != NULL) {
        para__counter_add(&d->counters->c_launches, 1);
        para__counter_add(&d->counters->c_items, s->items);
        para__counter_add(&d->counters->c_bytes_in, h2d);
        para__counter_add(&d->counters->c_bytes_out, d2h);
        para__counter_add(&d->counters->c_handovers, handed);
        para__counter_add(&d->counters->c_pool_hits, s->l.pool_hit ? 1 : 0);
    }
    if (d->lane != NULL && s->l.kernel_ns[1] != 0) {
        /* The back-end timed the steps: copies and kernel apart. */
        if (s->l.copy_in_ns[1] != 0 && h2d != 0)
            para__trace_device_copy(d->lane, false, n->index,
                                    s->l.copy_in_ns[0], s->l.copy_in_ns[1],
                                    h2d);
        para__trace_put(d->lane, PARA__TEV_DEVICE, n->index, s->l.kernel_ns[0],
                        s->l.kernel_ns[1], s->items, h2d + d2h);
        if (s->l.copy_out_ns[1] != 0 && d2h != 0)
            para__trace_device_copy(d->lane, true, n->index,
                                    s->l.copy_out_ns[0], s->l.copy_out_ns[1],
                                    d2h);
    } else {
        para__trace_device_complete(d->lane, s->trace_t0, n->index, s->items,
                                    h2d + d2h);
    }
    deliver_outputs(d, run, s);
}

/* Complete the finished launches, oldest first, without blocking. */
static void complete_ready(devctx *d, para__run *run)
{
    while (d->n_inflight > 0) {
        slot *s = &d->slots[d->head];
        int r =
            d->ops->launch_poll(s->dn->kernel, &s->l, d->msg, sizeof d->msg);
        if (r == 0)
            return;
        complete(d, run, r);
    }
}

/* The deadline of the oldest launch in flight (0: no watchdog). */
static uint64_t head_deadline(const devctx *d)
{
    uint64_t floor_ns = (uint64_t)d->rt->attr.device_timeout_ms * 1000000u;
    if (floor_ns == 0)
        return 0;
    const slot *s = &d->slots[d->head];
    double expect =
        (double)lat_of(d) + (double)s->items * launch_item_ps(d, s->dn) / 1e3;
    double budget = PARA_MAX((double)floor_ns, TIMEOUT_FACTOR * expect);
    uint64_t start = PARA_MAX(d->head_since, s->l.submit_ns);
    return start + (uint64_t)budget;
}

/* Wait a while for the oldest launch: until it finishes, one slice, or
 * its deadline; past the deadline the device is lost. */
static void wait_oldest(devctx *d, para__run *run)
{
    slot *s = &d->slots[d->head];
    uint64_t now = para__now_ns();
    uint64_t deadline = head_deadline(d);
    uint64_t wait = WAIT_SLICE_NS;
    if (deadline != 0)
        wait = deadline > now ? PARA_MIN(wait, deadline - now) : 0;
    int r =
        d->ops->launch_wait(s->dn->kernel, &s->l, wait, d->msg, sizeof d->msg);
    if (r != 0) {
        complete(d, run, r);
        return;
    }
    if (deadline != 0 && para__now_ns() >= deadline) {
        snprintf(d->msg, sizeof d->msg,
                 "a launch of %zu items did not finish within %.3f s "
                 "(watchdog, PARA_DEVICE_TIMEOUT=%u ms)",
                 s->items,
                 (double)(deadline - PARA_MAX(d->head_since, s->l.submit_ns)) /
                     1e9,
                 d->rt->attr.device_timeout_ms);
        para_node_t *n = s->dn->node;
        para__log(1, "device \"%s\": %s", d->info->name, d->msg);
        lose(d, run, n, PARA_EDEVICE);
    }
}

/* ---- host thread: launching ---------------------------------------------- */

/* The CPU work, in picoseconds per item, that the outputs of @p n cause
 * in the nodes downstream of it, DOWN_DEPTH nodes deep: each node's
 * measured cost per item, shared by the workers that can run it at once.
 * Kernel nodes on the devices are skipped (no CPU work; their own launches
 * pace them). -1 when a node there has seen no item yet (unknown). */
static double downstream_ps(const para_runtime_t *rt, const para_node_t *n,
                            unsigned depth)
{
    double sum = 0;
    for (unsigned i = 0; i < n->n_succs; i++) {
        const para_node_t *s = n->succs[i];
        if (s->kernel != NULL && s->placement == PARA__PLACE_DEVICE)
            continue;
        /* Statistics, read as estimates (summed over the workers' slots:
         * graph.h). */
        para__node_counts c;
        para__node_counts_get(s, &c);
        uint64_t items = c.items_in, busy = c.busy_ns;
        if (items == 0)
            return -1;
        double per = (double)busy * 1000.0 / (double)items;
        if (!s->serial)
            per /= (double)PARA_MAX(rt->n_workers, 1u);
        sum += per;
        if (depth > 1) {
            double more = downstream_ps(rt, s, depth - 1);
            if (more < 0)
                return -1;
            sum += more;
        }
    }
    return sum;
}

/* Whether a consumer downstream of @p dn would sit idle during a long
 * launch and work after it, instead of beside the device: the CPU work
 * the node's outputs cause downstream (downstream_ps()) is at least
 * 1/LATENCY_SHARE of the device's own cost per item @p c_ps, or not known
 * yet. Until the consumers have run in this run, the figure the kernel's
 * last run ended with stands in for it (fit_memo), so that a run of a
 * kernel seen before does not start with short launches. Below that, the
 * outputs of a long launch wait for nobody that matters: running them
 * after the launch costs at most about 5 % of it, as the latency rule
 * allows. (Whether a worker happens to be idle at the moment a launch
 * starts says little: the consumer may be busy with the previous launch's
 * outputs and idle through the whole next one.) */
static bool consumer_waiting(const para_runtime_t *rt, const dnode *dn,
                             uint64_t c_ps)
{
    double down_ps = downstream_ps(rt, dn->node, DOWN_DEPTH);
    if (down_ps < 0)
        down_ps = dn->down_memo_ps; /* a run before (memo), until measured */
    return down_ps < 0 || down_ps * LATENCY_SHARE >= (double)c_ps;
}

/* Whether launches of @p dn keep to the time cap: while a consumer
 * waits (above), and whenever the node's work is shared with other places
 * (several devices, or the workers of a MIXED node): a long launch is work
 * that can no longer go where it would finish earlier. */
static bool time_capped(const devctx *d, const dnode *dn, uint64_t c_ps)
{
    if (d->rt->device->n > 1 || dn->node->placement == PARA__PLACE_MIXED)
        return true;
    return consumer_waiting(d->rt, dn, c_ps);
}

static size_t launch_cap(const devctx *d, const dnode *dn)
{
    const para_node_t *n = dn->node;
    uint64_t max_alloc = d->info->max_alloc_bytes;
    size_t widest = PARA_MAX(n->in_size, n->out_size);
    size_t cap = LAUNCH_MAX_BYTES / (n->in_size + n->out_size);
    if (max_alloc > 0 && max_alloc / widest < cap)
        cap = (size_t)(max_alloc / widest);
    if (dn->split_cap != 0 && dn->split_cap < cap)
        cap = dn->split_cap;
    /* And, while a consumer downstream waits for outputs, at most
     * LAUNCH_MAX_NS of device time (but never below the latency rule), so
     * that it gets the first outputs early and works beside the device
     * instead of after it. */
    double c_ps = launch_item_ps(d, dn);
    if (c_ps != 0 && time_capped(d, dn, (uint64_t)c_ps)) {
        double t = PARA_MAX((double)LAUNCH_MAX_NS,
                            2.0 * LATENCY_SHARE * (double)lat_of(d));
        double timed = t * 1000.0 / c_ps;
        if (timed < (double)cap)
            cap = (size_t)timed;
    }
    if ((!dn->warm && dn->begun < EXPLORE_LAUNCHES) || c_ps == 0) {
        /* Exploring: 1, 4, 16, 64 batches (as many as are pending, within
         * the caps above). */
        size_t first =
            dn->pending_head != NULL ? dn->pending_head->batch->count : 1;
        size_t explore = first << (2 * PARA_MIN(dn->begun, 3u));
        cap = PARA_MIN(explore, cap);
    }
    return PARA_MAX(cap, 1);
}

/* The items of @p dn that make a launch at least LATENCY_SHARE times as
 * long as the latency L (L at most 5 % of it); 0 when L or c is not
 * known. */
static double latency_items(const devctx *d, const dnode *dn)
{
    double c_ps = launch_item_ps(d, dn);
    if (c_ps == 0 || lat_of(d) == 0)
        return 0;
    return (double)LATENCY_SHARE * (double)lat_of(d) * 1000.0 / c_ps;
}

/* Where no time cap applies, the shortest launch worth starting while
 * another runs: as long as a time-capped launch (LAUNCH_MAX_NS, or 38 L),
 * in items of @p dn (c known). Not from L alone: L is fitted from launches
 * of items whose cost differs (a Mandelbrot row outside the set costs a
 * tenth of one inside), and the fit may say 0. */
static double long_items(const devctx *d, const dnode *dn, double c_ps)
{
    double t = PARA_MAX((double)LAUNCH_MAX_NS,
                        2.0 * LATENCY_SHARE * (double)lat_of(d));
    return t * 1000.0 / c_ps;
}

/* The items of the next launch of @p dn: launch_cap(), and, where no time
 * cap applies (nobody downstream waits: launches grow with the work
 * gathered), at most half of what is pending, but not below long_items().
 * Half leaves a second launch to follow it at once (gathered and copied in
 * while this one runs, so that the device does not wait for the host
 * between them), and makes the launches at the end of the work shrink
 * geometrically to a short last one: the device stays busy until shortly
 * before the end, and the outputs of the long launches are handled while
 * it runs instead of all at the end, after one long launch. */
static size_t launch_size(const devctx *d, const dnode *dn)
{
    size_t cap = launch_cap(d, dn);
    double c_ps = launch_item_ps(d, dn);
    if (c_ps == 0 || (!dn->warm && dn->begun < EXPLORE_LAUNCHES) ||
        time_capped(d, dn, (uint64_t)c_ps))
        return cap;
    double least = long_items(d, dn, c_ps);
    size_t half = (dn->pending_items + 1) / 2;
    if ((double)half < least)
        half = least < (double)cap ? (size_t)least + 1 : cap;
    return PARA_MAX(PARA_MIN(half, cap), (size_t)1);
}

static bool upstream_stalled(const devctx *d, para__run *run)
{
    /* relaxed: heuristics; the gather window bounds the cost of a miss.
     * With several devices, units held by the others count as upstream. */
    int64_t held = d->held;
    para__devrt *set = d->rt->device;
    if (set->n > 1)
        return !para__sources_open(run);
    return atomic_load_explicit(&run->in_flight, memory_order_relaxed) <=
               held ||
           !para__sources_open(run);
}

static uint64_t gather_window_ns(const devctx *d)
{
    return PARA_MAX(GATHER_WINDOW * lat_of(d), (uint64_t)GATHER_MIN_NS);
}

/* Whether @p dn's pending batches should be launched behind the newest
 * launch in flight, which handed its outputs to @p dn early
 * (hand-over at launch: deliver_batches() from launch()) and whose outputs
 * have reached the pending list (the newest pending batch is in its
 * buffer): enqueued now, the launch waits for that kernel on the device and
 * follows it without a round trip through the host; gathered until the
 * device is idle, it would start only after the host saw the producer
 * complete. */
static bool chains_behind(const devctx *d, const dnode *dn)
{
    const slot *newest = &d->slots[(d->head + d->n_inflight - 1) % SLOTS];
    if (!newest->early || newest->l.out_early == NULL ||
        dn->pending_tail == NULL)
        return false;
    const para__batch *b = dn->pending_tail->batch;
    return b->dres == &d->res && b->dev_buf == newest->l.out_early;
}

static bool should_launch(const devctx *d, para__run *run, const dnode *dn,
                          uint64_t now)
{
    if (run->forced_batch_items != 0)
        return true; /* one batch per launch */
    double c_ps = launch_item_ps(d, dn);
    /* Not measured yet: one (exploring) launch at a time, so that the
     * device takes on no more before its speed is known and the rest can
     * still go elsewhere. */
    if (c_ps == 0)
        return d->n_inflight == 0;
    size_t cap = launch_cap(d, dn);
    if (dn->pending_items >= cap || (d->n_inflight > 0 && chains_behind(d, dn)))
        return true;
    if (!time_capped(d, dn, (uint64_t)c_ps)) {
        /* Nobody waits downstream: launches grow with the work gathered.
         * Two in flight keep the device busy (one's copies and the host's
         * gathering of the next overlap the other's kernel); more would
         * only cut the work gathering behind them into smaller launches. */
        if ((double)dn->pending_items >=
            PARA_MIN(long_items(d, dn, c_ps), (double)cap))
            return d->n_inflight < GATHER_IN_FLIGHT;
    } else {
        if (lat_of(d) == 0)
            return d->n_inflight == 0; /* no estimate yet: measure */
        /* Enough for the latency rule: launch (launch_cap() keeps it
         * short, so that the consumer starts early). */
        if ((double)dn->pending_items >=
            PARA_MIN(latency_items(d, dn), (double)cap))
            return true;
    }
    if (d->n_inflight > 0)
        return false; /* gather behind the running launch */
    return upstream_stalled(d, run) ||
           now >= dn->pending_since + gather_window_ns(d);
}

static int ensure_stage(unsigned char **buf, size_t *cap, size_t bytes)
{
    if (bytes <= *cap && *buf != NULL)
        return 0;
    size_t want = PARA_MAX(bytes, *cap * 2);
    want = PARA_MAX(want, (size_t)64);
    unsigned char *p = realloc(*buf, want);
    if (p == NULL)
        return PARA_ENOMEM;
    *buf = p;
    *cap = want;
    return 0;
}

/* The CPU function of node @p n over @p count items. */
static int node_cpu_run(para_node_t *n, const void *in, void *out, size_t count)
{
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

/* The CPU function of a kernel node (@p arg: its dnode) over a launch of
 * @p count items, for back-ends that run it in launch_begin(): called once
 * per gathered batch when the items are numbered, so that
 * para_item_index() answers as on a worker. */
static int node_cpu_batch(void *arg, const void *in, void *out, size_t count)
{
    const dnode *dn = arg;
    para_node_t *n = dn->node;
    const para__launch *l = dn->launching;
    if (l == NULL || l->segs == NULL || l->in != in)
        return node_cpu_run(n, in, out, count);
    const unsigned char *ip = in;
    unsigned char *op = out;
    for (size_t k = 0; k < l->n_segs; k++) {
        size_t at = (size_t)l->segs[2 * k + 1];
        size_t end = k + 1 < l->n_segs ? (size_t)l->segs[2 * k + 3] : count;
        para__item_index_enter(ip + at * n->in_size, end - at, n->in_size,
                               l->segs[2 * k]);
        int rc = node_cpu_run(n, ip + at * n->in_size, op + at * n->out_size,
                              end - at);
        para__item_index_leave();
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* A single batch the device cannot take (out of memory even alone): the
 * host thread computes it with the node's CPU function. */
static void run_on_host(devctx *d, para__run *run, para__task *t)
{
    para_node_t *n = t->node;
    para__batch *in = t->batch;
    if (!materialize(d, run, t)) {
        drop_task(d, run, t);
        return;
    }
    para__batch *o =
        para__batch_alloc(&d->cache, run, n->n_succs, in->count * n->out_size);
    if (o == NULL) {
        para__fail_run(NULL, run, PARA_ENOMEM,
                       "out of memory for the output of node '%s'", n->name);
        drop_task(d, run, t);
        return;
    }
    if (n->numbered)
        para__item_index_enter(in->data, in->count, n->in_size, in->seq_begin);
    int rc = node_cpu_run(n, in->data, o->data, in->count);
    para__item_index_leave();
    if (rc != 0) {
        para__batch_free(&d->cache, run, o);
        para__fail_run(NULL, run, PARA_ENODE, "node '%s' returned %d (%s)",
                       n->name, rc,
                       rc < 0 ? para_err_name(rc) : "user error code");
        drop_task(d, run, t);
        return;
    }
    para__batch_join_family(o, in);
    o->count = in->count;
    o->seq_begin = in->seq_begin;
    o->seq_end = in->seq_end;
    o->path = t->path;
    /* relaxed: statistics. */
    atomic_fetch_add_explicit(&n->st_items_in, in->count, memory_order_relaxed);
    atomic_fetch_add_explicit(&n->st_items_out, in->count,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&n->st_batches, 1, memory_order_relaxed);
    unhold(d, t);
    para__batch_release(&d->cache, run, in);
    para__deliver(NULL, run, n, o, 1);
}

/* The launch in slot @p s (the head if it was in flight, else not yet
 * counted) failed with @p rc; the slot is empty afterwards. */
static void launch_failed(devctx *d, para__run *run, slot *s, int rc)
{
    bool inflight = d->n_inflight > 0 && s == &d->slots[d->head];
    dnode *dn = s->dn;
    para_node_t *n = dn->node;
    if (inflight)
        retire_head(d);
    if (s->early) {
        /* Its outputs are already downstream: nothing can run it again
         * (early_ok()), and the launches that read them fail too. */
        s->early = false;
        if (s->l.out_buf != NULL)
            d->ops->buf_release(d->dev, s->l.out_buf);
        s->l.out_buf = NULL;
        if (!para__aborting(run))
            fail_run(d, run, n, rc == PARA_ENODE ? rc : PARA_EDEVICE);
        lose(d, run, n, rc);
        return;
    }
    para__task *first = s->tasks, *last = s->tasks_tail;
    size_t items = s->items, n_tasks = s->n_tasks;
    s->tasks = s->tasks_tail = NULL;
    if (rc == PARA_ENODE || para__aborting(run)) {
        if (rc == PARA_ENODE)
            fail_run(d, run, n, rc);
        for_chain(d, run, first, drop_task);
        return;
    }
    if (rc == PARA_ENOMEM) {
        /* Transient: smaller launches, down to one batch; one batch that
         * still does not fit runs on the host's CPU, or fails. */
        if (n_tasks > 1 || ++dn->oom_streak < OOM_RETRIES) {
            dn->split_cap = PARA_MAX(items / 2, (size_t)1);
            para__log(2,
                      "device \"%s\": %s; launches of node '%s' now take "
                      "at most %zu items",
                      d->info->name, d->msg, n->name, dn->split_cap);
            pending_unshift(dn, first, last, items);
            return;
        }
        dn->oom_streak = 0;
        if (para__has_cpu_fn(n) && d->rt->attr.device_fallback) {
            para__log(2,
                      "device \"%s\": %s; node '%s' runs that batch on "
                      "the CPU",
                      d->info->name, d->msg, n->name);
            run_on_host(d, run, first);
            return;
        }
        fail_run(d, run, n, rc);
        for_chain(d, run, first, drop_task);
        return;
    }
    /* The device failed: put the tasks back where lose() finds them. */
    if (first != NULL)
        pending_unshift(dn, first, last, items);
    lose(d, run, n, rc);
}

/* True if @p b's items are in this device's memory. */
static bool resident_here(const devctx *d, const para__batch *b)
{
    return b->dres == &d->res;
}

/* Where the outputs of @p n's launches on @p d go: kept on the device
 * (keep) for successors that are kernel nodes with a kernel here, and
 * copied back (back) for every other successor (a CPU node, a sink, a
 * MIXED node, which may choose the CPU), for a node without successors,
 * and whenever residency is off (PARA_RESIDENT=0, a back-end without it,
 * a run across processes). With several devices every output comes back
 * too, so that a batch may go to any device or the CPU; one copy back
 * serves every successor that needs it. */
static void out_plan(const devctx *d, const para__run *run,
                     const para_node_t *n, bool *keep, bool *back)
{
    *keep = false;
    *back = true;
    if (!d->resident || run->rt->remote != NULL || n->n_succs == 0)
        return;
    bool several = d->rt->device->n > 1;
    *back = false;
    for (unsigned i = 0; i < n->n_succs; i++) {
        const para_node_t *m = n->succs[i];
        bool here = m->kernel != NULL && m->placement != PARA__PLACE_CPU &&
                    d->dn[m->index].kernel != NULL;
        *keep |= here;
        *back |= !here || m->placement != PARA__PLACE_DEVICE || several;
    }
}

static int ensure_segs(slot *s)
{
    if (s->n_tasks <= s->cap_segs)
        return 0;
    para__devseg *g = realloc(s->segs, s->n_tasks * sizeof *g);
    if (g == NULL)
        return PARA_ENOMEM;
    s->segs = g;
    s->cap_segs = s->n_tasks;
    return 0;
}

/* Launch the oldest pending batches of @p dn, up to one launch's cap. */
static void launch(devctx *d, para__run *run, dnode *dn)
{
    slot *s = &d->slots[(d->head + d->n_inflight) % SLOTS];
    para_node_t *n = dn->node;
    const size_t is = n->in_size, os = n->out_size;
    size_t cap = run->forced_batch_items != 0 ? 1 : launch_size(d, dn);
    s->dn = dn;
    s->early = false;
    s->tasks = s->tasks_tail = NULL;
    s->n_tasks = s->items = 0;
    /* A launch takes inputs that are all on this device, or all on the
     * host: whichever the oldest pending batch is. */
    s->res_in = resident_here(d, dn->pending_head->batch);
    while (dn->pending_head != NULL) {
        para__task *t = dn->pending_head;
        size_t count = t->batch->count;
        if (s->n_tasks > 0 &&
            (s->items + count > cap || resident_here(d, t->batch) != s->res_in))
            break;
        dn->pending_head = t->next;
        dn->pending_items -= count;
        t->next = NULL;
        if (s->tasks_tail != NULL)
            s->tasks_tail->next = t;
        else
            s->tasks = t;
        s->tasks_tail = t;
        s->n_tasks++;
        s->items += count;
    }
    if (dn->pending_head == NULL)
        dn->pending_tail = NULL;
    else
        dn->pending_since = para__now_ns();

    int rc = 0;
    d->msg[0] = '\0';
    out_plan(d, run, n, &s->keep, &s->back);
    s->l.keep = s->keep;
    s->l.in_parts = NULL;
    s->l.n_in_parts = 0;
    s->l.in = NULL;
    s->l.out = NULL;
    size_t host_in = s->res_in ? 0 : s->items * is;
    size_t out_bytes = s->back ? s->items * os : 0;
    /* The input goes to in_stage unless it is on the device or staged in
     * pinned memory. Numbered items: one run (first number, position) per
     * batch, kept in in_stage after the items, if any (so it lives as long
     * as they do, also in an abandoned launch). */
    bool own_in = host_in > 0 && !d->pinned;
    size_t runs_at = own_in ? (host_in + 7) & ~(size_t)7 : 0;
    size_t stage_bytes = n->numbered
                             ? runs_at + s->n_tasks * 2 * sizeof(uint64_t)
                             : (own_in ? host_in : 0);
    s->in_ptr = s->in_stage;
    s->out_ptr = s->out_stage;
    if (d->pinned) {
        /* The back-end's pinned host memory: batches are gathered straight
         * into it, and outputs split straight out of it. */
        void *ip = NULL, *op = NULL;
        rc = d->ops->stage(dn->kernel, &s->l, host_in, out_bytes, &ip, &op,
                           d->msg, sizeof d->msg);
        s->in_ptr = ip;
        s->out_ptr = op;
    } else if (out_bytes > 0 &&
               ensure_stage(&s->out_stage, &s->out_cap, out_bytes) != 0) {
        rc = PARA_ENOMEM;
    }
    if (rc == 0 && stage_bytes > 0 &&
        ensure_stage(&s->in_stage, &s->in_cap, stage_bytes) != 0)
        rc = PARA_ENOMEM;
    if (rc == 0 && !d->pinned) {
        s->in_ptr = s->in_stage;
        s->out_ptr = s->out_stage;
    }
    if (rc == 0 && s->res_in && ensure_segs(s) != 0)
        rc = PARA_ENOMEM;
    if (rc != 0) {
        if (d->msg[0] == '\0' || rc == PARA_ENOMEM)
            snprintf(d->msg, sizeof d->msg, "out of memory staging %zu items",
                     s->items);
    } else {
        size_t offset = 0, k = 0, n_parts = 0;
        uint64_t *runs =
            n->numbered ? (uint64_t *)(void *)(s->in_stage + runs_at) : NULL;
        for (para__task *t = s->tasks; t != NULL; t = t->next) {
            para__batch *b = t->batch;
            if (s->res_in) {
                /* The parts on the device, adjacent ones joined: the
                 * batches of one earlier launch, in order, are one part. */
                para__devseg *last = n_parts > 0 ? &s->segs[n_parts - 1] : NULL;
                if (last != NULL && last->buf == b->dev_buf &&
                    last->offset + last->count * is == b->dev_offset)
                    last->count += b->count;
                else
                    s->segs[n_parts++] =
                        (para__devseg){b->dev_buf, b->dev_offset, b->count};
            } else {
                memcpy(s->in_ptr + offset * is, b->data, b->count * is);
            }
            /* A batch that continues the previous run's numbers extends
             * it (batches of one source often arrive in order). */
            if (runs != NULL && b->count > 0 &&
                (k == 0 || runs[2 * (k - 1)] + (offset - runs[2 * k - 1]) !=
                               b->seq_begin)) {
                runs[2 * k] = b->seq_begin;
                runs[2 * k + 1] = offset;
                k++;
            }
            offset += b->count;
        }
        s->l.segs = k > 0 ? runs : NULL;
        s->l.n_segs = k;
        if (s->res_in) {
            s->l.in_parts = s->segs;
            s->l.n_in_parts = n_parts;
        } else {
            s->l.in = s->in_ptr;
        }
        if (s->back)
            s->l.out = s->out_ptr;
        /* Host staging counts as bytes in flight while the launch runs. */
        s->staged_bytes = host_in + out_bytes;
        para__bytes_add(run, (int64_t)s->staged_bytes);
    }
    s->l.n = s->items;
    s->l.timed = d->lane != NULL;
    s->trace_t0 = para__trace_device_launch(d->lane);
    if (rc == 0) {
        dn->launching = &s->l;
        rc = d->ops->launch_begin(dn->kernel, &s->l, d->msg, sizeof d->msg);
        dn->launching = NULL;
    }
    if (rc != 0) {
        unstage(run, s);
        launch_failed(d, run, s, rc);
        return;
    }
    dn->begun++;
    /* relaxed: estimates for choose() (see free_at_ns). */
    atomic_fetch_add_explicit(&dn->launched_items, s->items,
                              memory_order_relaxed);
    uint64_t now = para__now_ns();
    uint64_t free_at =
        atomic_load_explicit(&d->free_at_ns, memory_order_relaxed);
    atomic_store_explicit(
        &d->free_at_ns, PARA_MAX(now, free_at) + (uint64_t)slot_expect_ns(d, s),
        memory_order_relaxed);
    if (d->n_inflight++ == 0) {
        d->busy_since = para__now_ns();
        d->head_since = s->l.submit_ns;
    }
    s->early = early_ok(d, run, s);
    if (s->early)
        deliver_batches(d, run, s, s->l.out_early);
}

/* Start every launch that should start now; true if one did. */
static bool launch_ready(devctx *d, para__run *run)
{
    bool launched = false;
    uint64_t now = para__now_ns();
    for (unsigned k = 0; k < d->n_knodes; k++) {
        dnode *dn = &d->dn[d->knodes[(d->next_knode + k) % d->n_knodes]];
        while (dn->pending_head != NULL && d->n_inflight < d->max_in_flight &&
               !para__aborting(run) &&
               /* relaxed: only this thread sets it. */
               !atomic_load_explicit(&d->lost, memory_order_relaxed) &&
               should_launch(d, run, dn, now)) {
            launch(d, run, dn);
            launched = true;
        }
    }
    d->next_knode = d->n_knodes > 0 ? (d->next_knode + 1) % d->n_knodes : 0;
    return launched;
}

static bool has_pending(const devctx *d)
{
    for (unsigned i = 0; i < d->n_knodes; i++)
        if (d->dn[d->knodes[i]].pending_head != NULL)
            return true;
    return false;
}

static uint64_t earliest_deadline(const devctx *d)
{
    uint64_t first = UINT64_MAX;
    for (unsigned i = 0; i < d->n_knodes; i++) {
        const dnode *dn = &d->dn[d->knodes[i]];
        if (dn->pending_head != NULL)
            first = PARA_MIN(first, dn->pending_since);
    }
    return first == UINT64_MAX ? 0 : first + gather_window_ns(d);
}

/* Batches are routed when they are made, on estimates that may be
 * missing (at the start of a run, before each device has been timed) or
 * stale, and in whole batches, which near the end of a run are coarse
 * beside the time left. After each completion (and before the next
 * launch), a device looks at its newest pending batches of each node, one
 * by one from the newest: a batch that another device would finish sooner
 * than this one finishes its queue, by at least REBALANCE_SHARE of the time
 * this one has left and two of its launch latencies (so that estimates'
 * noise does not move batches to and fro), goes back to the workers, which
 * route it again on current estimates. A batch too large to move is
 * skipped, not the end of the look: the smaller batches made near a
 * source's end are what evens out the devices' last launches. Only between
 * devices: the CPU has no backlog to compare. */
#define REBALANCE_SHARE 0.02
#define REBALANCE_LOOK 64 /* newest pending batches considered */

static void rebalance(devctx *d, para__run *run)
{
    para__devrt *set = d->rt->device;
    uint64_t now = para__now_ns();
    for (unsigned i = 0; i < d->n_knodes; i++) {
        unsigned ni = d->knodes[i];
        dnode *dn = &d->dn[ni];
        double mine = finish_ns(d, dn, 0, 0, now);
        if (dn->pending_head == NULL || mine < 0)
            continue;
        /* Per item, all included: what one more item adds to the finish
         * (pending batches are in host memory: they have not moved). */
        double io = (double)(dn->node->in_size + dn->node->out_size);
        double mine_per = finish_ns(d, dn, 1, io, now) - mine;
        double f[PARA__MAX_DEVICES], per[PARA__MAX_DEVICES];
        unsigned others = 0;
        for (unsigned k = 0; k < set->n; k++) {
            devctx *o = set->dev[k];
            dnode *odn = &o->dn[ni];
            if (o == d || !usable(o, odn))
                continue;
            double fo = finish_ns(o, odn, 0, 0, now);
            if (fo < 0)
                continue;
            f[others] = fo;
            per[others++] = finish_ns(o, odn, 1, io, now) - fo;
        }
        if (others == 0 || mine_per <= 0)
            continue;
        double margin =
            PARA_MAX(REBALANCE_SHARE * mine, 2.0 * (double)lat_of(d));
        /* The newest REBALANCE_LOOK pending tasks, in ring order. */
        para__task *ring[REBALANCE_LOOK];
        bool go[REBALANCE_LOOK];
        unsigned seen = 0;
        for (para__task *t = dn->pending_head; t != NULL; t = t->next)
            ring[seen++ % REBALANCE_LOOK] = t;
        unsigned n_look = PARA_MIN(seen, (unsigned)REBALANCE_LOOK);
        unsigned moved = 0;
        for (unsigned j = 0; j < n_look; j++) {
            unsigned at = (seen - 1 - j) % REBALANCE_LOOK;
            double b = (double)ring[at]->batch->count;
            unsigned to = others;
            for (unsigned o = 0; o < others; o++)
                if (f[o] + b * per[o] + margin <= mine &&
                    (to == others || f[o] + b * per[o] < f[to] + b * per[to]))
                    to = o;
            go[at] = to < others;
            if (!go[at])
                continue; /* a smaller one before it may still fit */
            f[to] += b * per[to];
            mine -= b * mine_per;
            moved++;
        }
        if (moved == 0)
            continue;
        /* Unlink the tasks that go, in their order. */
        para__task *first_moved = NULL, *last_moved = NULL, *prev = NULL;
        para__task *t = dn->pending_head;
        for (unsigned at = 0; t != NULL; at++) {
            para__task *next = t->next;
            if (at + n_look >= seen && go[at % REBALANCE_LOOK]) {
                if (prev != NULL)
                    prev->next = next;
                else
                    dn->pending_head = next;
                dn->pending_items -= t->batch->count;
                t->next = NULL;
                if (last_moved != NULL)
                    last_moved->next = t;
                else
                    first_moved = t;
                last_moved = t;
            } else {
                prev = t;
            }
            t = next;
        }
        dn->pending_tail = prev;
        for_chain(d, run, first_moved, hand_back);
    }
}

/* Sleep until a task arrives, the run ends or aborts, or @p deadline_ns
 * (monotonic; 0 = none) passes. */
static void host_sleep(devctx *d, para__run *run, uint64_t deadline_ns)
{
    pthread_mutex_lock(&d->lock);
    /* seq_cst store, then seq_cst load: the host thread's half of the
     * Dekker pair with para__device_route() (push, then read sleeping). */
    atomic_store_explicit(&d->sleeping, 1, memory_order_seq_cst);
    /* acquire on done: pairs with the release store in units_add(). */
    if (para__task_stack_empty(&d->incoming) &&
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

static void host_run(devctx *d, para__run *run)
{
    d->held = 0;
    d->res_peak = 0;
    d->last_complete_ns = 0;
    bool several = d->rt->device->n > 1;
    for (;;) {
        take_incoming(d);
        unsigned inflight = d->n_inflight;
        complete_ready(d, run);
        if (several && d->n_inflight < inflight && !para__aborting(run))
            rebalance(d, run);
        if (para__aborting(run)) {
            /* Nothing of an aborting run waits for a launch. */
            while (d->n_inflight > 0)
                abandon_head(d, run, drop_task);
            flush_pending(d, run, drop_task);
        } else if (atomic_load_explicit(&d->lost, memory_order_relaxed)) {
            /* relaxed: only this thread sets it. Tasks routed here before
             * the workers saw the loss go back. */
            flush_pending(d, run, hand_back);
        }
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
            inflight = d->n_inflight;
            wait_oldest(d, run);
            if (several && d->n_inflight < inflight && !para__aborting(run))
                rebalance(d, run);
            continue;
        }
        host_sleep(d, run, earliest_deadline(d));
    }
}

/* Keep the host thread (launching, completions, splitting outputs) on the
 * cores near the device, when the device is nearer some cores than others
 * (a PCI GPU on one socket); a CPU device is near every core: no pinning. */
static void pin_near_device(devctx *d)
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
    devctx *d = arg;
    para_runtime_t *rt = d->rt;
    char name[16];
    snprintf(name, sizeof name, "para-device-%u", d->index);
    pthread_setname_np(pthread_self(), name);
#ifdef PR_SET_TIMERSLACK
    /* The host thread sleeps in short slices while a launch runs (the
     * back-ends' bounded waits): without this, Linux stretches each sleep
     * by its default 50 us timer slack, longer than a whole launch of a
     * small kernel. */
    prctl(PR_SET_TIMERSLACK, 1000ul, 0, 0, 0);
#endif
    pin_near_device(d);
    pthread_mutex_lock(&rt->lock);
    uint64_t seen = d->start_generation;
    for (;;) {
        /* relaxed: written under rt->lock, held here (scheduler.h). */
        while (!rt->shutdown && !d->quit && rt->device_generation == seen)
            pthread_cond_wait(&rt->device_cond, &rt->lock);
        if (rt->shutdown || d->quit)
            break;
        seen = rt->device_generation;
        para__run *run = rt->run;
        pthread_mutex_unlock(&rt->lock);

        host_run(d, run);

        pthread_mutex_lock(&rt->lock);
        /* release: see workers_in_run (scheduler.h). */
        if (atomic_fetch_sub_explicit(&rt->workers_in_run, 1,
                                      memory_order_release) == 1)
            pthread_cond_signal(&rt->done_cond);
    }
    pthread_mutex_unlock(&rt->lock);
    return NULL;
}

/* ---- opening, runs, shutdown --------------------------------------------- */

static void devctx_free(devctx *d)
{
    /* Abandoned launches: the back-end waits for the device to be done
     * with their memory (launch_fini). */
    while (d->lost_list != NULL) {
        lost_launch *x = d->lost_list;
        d->lost_list = x->next;
        d->ops->launch_fini(x->kernel, &x->l);
        free(x->in_stage);
        free(x->out_stage);
        free(x);
    }
    for (unsigned i = 0; i < d->n_zombies; i++)
        d->ops->kernel_release(d->zombies[i]);
    for (unsigned i = 0; i < SLOTS; i++) {
        d->ops->launch_fini(NULL, &d->slots[i].l);
        free(d->slots[i].in_stage);
        free(d->slots[i].out_stage);
        free(d->slots[i].segs);
    }
    d->ops->close(d->dev);
    para__batch_cache_drain(&d->cache);
    free(d->zombies);
    free(d->dn);
    free(d->knodes);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

typedef struct open_ctx {
    para_runtime_t *rt;
    para__devrt *set;
    char *msg;
    size_t msg_len;
} open_ctx;

/* Open one entry of the device list and start its host thread. */
static int open_one(void *arg, const char *entry)
{
    open_ctx *oc = arg;
    para_runtime_t *rt = oc->rt;
    para__devrt *set = oc->set;
    if (set->n == PARA__MAX_DEVICES) {
        snprintf(oc->msg, oc->msg_len, "more than %d devices",
                 PARA__MAX_DEVICES);
        return PARA_EINVAL;
    }
    const para__device_ops *ops = NULL;
    void *dev = NULL;
    int rc = para__device_open(entry, &ops, &dev, oc->msg, oc->msg_len);
    if (rc != 0)
        return rc;
    devctx *d =
        aligned_alloc(PARA_CACHELINE, (sizeof *d + PARA_CACHELINE - 1) &
                                          ~(size_t)(PARA_CACHELINE - 1));
    if (d == NULL) {
        ops->close(dev);
        snprintf(oc->msg, oc->msg_len, "out of memory opening the device");
        return PARA_ENOMEM;
    }
    memset(d, 0, sizeof *d);
    /* The output batches this thread makes are freed by workers: they come
     * back to its cache (batch.h), so that runs reuse them instead of
     * faulting in fresh memory each time. */
    para__batch_cache_init_returns(&d->cache);
    d->rt = rt;
    d->index = set->n;
    d->ops = ops;
    d->dev = dev;
    d->info = ops->info(dev);
    d->res.buf_release = ops->buf_release;
    d->res.dev = dev;
    d->res.index = d->index;
    atomic_init(&d->res.bytes, 0);
    d->resident = (d->info->caps & PARA__DEVCAP_RESIDENT) != 0 &&
                  ops->buf_retain != NULL && ops->buf_release != NULL &&
                  ops->buf_read != NULL &&
                  para__option_env_level("RESIDENT", 1) != 0;
    d->chain = d->resident && para__option_env_level("CHAIN", 1) != 0;
    /* PARA_PINNED: auto (pinned staging for devices that are not the
     * host's CPU, where a DMA from pageable memory takes an extra copy),
     * on or off. */
    int pin = rt->pinned;
    d->pinned = ops->stage != NULL && (pin < 0 ? !d->info->is_cpu : pin != 0);
    d->shares_cores = d->info->is_cpu && d->info->compute_units > 1;
    d->max_in_flight = PARA_MAX(PARA_MIN(d->info->max_in_flight, SLOTS), 1u);
    para__task_stack_init(&d->incoming);
    atomic_init(&d->sleeping, 0);
    atomic_init(&d->lost, false);
    char lane[32];
    snprintf(lane, sizeof lane, "para-device-%u", d->index);
    d->counters = para__stats_device_add(rt, d->info->name);
    d->lane =
        para__trace_lane_add(rt->trace, PARA__LANE_DEVICE, d->index, lane);
    /* Step times (copies apart from kernels) only for the trace: timing
     * costs the driver something on every command. */
    if (d->lane != NULL && ops->set_timing != NULL &&
        ops->set_timing(dev, true) != 0)
        para__log(1,
                  "device \"%s\": launches cannot be timed; the trace "
                  "shows them whole",
                  d->info->name);
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cond, &ca);
    pthread_condattr_destroy(&ca);

    pthread_mutex_lock(&rt->lock);
    /* relaxed: under rt->lock (scheduler.h). */
    d->start_generation = rt->device_generation;
    pthread_mutex_unlock(&rt->lock);
    if (pthread_create(&d->thread, NULL, host_main, d) != 0) {
        devctx_free(d);
        snprintf(oc->msg, oc->msg_len,
                 "cannot start the host thread of device \"%s\"", entry);
        return PARA_EAGAIN;
    }
    d->thread_started = true;
    set->dev[set->n++] = d;
    para__log(2, "device %u: %s (%s, %s back-end)", d->index, d->info->name,
              d->info->platform, ops->name);
    return 0;
}

/* Stop the host threads still running (they wait for a run) and free
 * the devices. */
static void set_close(para_runtime_t *rt, para__devrt *set)
{
    pthread_mutex_lock(&rt->lock);
    for (unsigned i = 0; i < set->n; i++)
        set->dev[i]->quit = true;
    pthread_cond_broadcast(&rt->device_cond);
    pthread_mutex_unlock(&rt->lock);
    for (unsigned i = 0; i < set->n; i++) {
        if (set->dev[i]->thread_started)
            pthread_join(set->dev[i]->thread, NULL);
        set->dev[i]->thread_started = false;
    }
    for (unsigned i = 0; i < set->n; i++)
        devctx_free(set->dev[i]);
    free(set);
}

static int devrt_open(para_runtime_t *rt, char *msg, size_t msg_len)
{
    para__devrt *set = calloc(1, sizeof *set);
    if (set == NULL) {
        snprintf(msg, msg_len, "out of memory opening the devices");
        return PARA_ENOMEM;
    }
    open_ctx oc = {rt, set, msg, msg_len};
    int rc =
        para__device_expand(rt->device_selector, open_one, &oc, msg, msg_len);
    if (rc != 0) {
        /* Host threads already started wait for a run: stop them. */
        set_close(rt, set);
        return rc;
    }
    pthread_mutex_lock(&rt->lock);
    rt->device = set;
    rt->helper_threads = set->n;
    pthread_mutex_unlock(&rt->lock);
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
        why[0] = '\0';
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

static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < len; i++)
        h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

static uint64_t fnv_str(uint64_t h, const char *s)
{
    return s != NULL ? fnv(h, s, strlen(s) + 1) : fnv(h, "", 1);
}

/* The identity of node @p n's kernel for the memo: never 0. */
static uint64_t memo_key(const para_node_t *n)
{
    uint64_t h = 14695981039346656037ull;
    h = fnv_str(h, n->name);
    h = fnv_str(h, n->kernel->source);
    h = fnv_str(h, n->kernel->entry);
    h = fnv_str(h, n->kernel->options);
    h = fnv(h, &n->in_size, sizeof n->in_size);
    h = fnv(h, &n->out_size, sizeof n->out_size);
    h = fnv(h, &n->kind, sizeof n->kind);
    h = fnv(h, &n->fn, sizeof n->fn);
    for (size_t a = 0; a < n->kernel->n_args; a++)
        if (n->kernel->args[a].kind == PARA_KARG_SCALAR &&
            n->kernel->args[a].value != NULL)
            h = fnv(h, n->kernel->args[a].value, n->kernel->args[a].size);
    return h != 0 ? h : 1;
}

/* Start @p dn from what an earlier run of its kernel taught @p d. */
static void memo_seed(devctx *d, dnode *dn)
{
    dn->memo_key = memo_key(dn->node);
    dn->down_memo_ps = -1;
    for (unsigned i = 0; i < MEMO_SLOTS; i++) {
        const fit_memo *m = &d->memo[i];
        if (m->key != dn->memo_key)
            continue;
        dn->sw = m->sw;
        dn->sx = m->sx;
        dn->sy = m->sy;
        dn->sxx = m->sxx;
        dn->sxy = m->sxy;
        /* relaxed: before the run starts (published with it). */
        atomic_store_explicit(&dn->ps_per_item, m->ps_per_item,
                              memory_order_relaxed);
        atomic_store_explicit(&dn->total_ps, m->total_ps, memory_order_relaxed);
        atomic_store_explicit(&dn->best_ps, m->best_ps, memory_order_relaxed);
        dn->down_memo_ps = m->down_ps;
        dn->warm = true;
        return;
    }
}

/* Keep what @p dn learnt on @p d this run for the next one. */
static void memo_keep(devctx *d, const dnode *dn)
{
    /* relaxed: the run is over; the host thread's writes are visible
     * through the run's end (workers_in_run). */
    uint64_t c =
        atomic_load_explicit(&((dnode *)dn)->ps_per_item, memory_order_relaxed);
    if (dn->memo_key == 0 || c == 0 || dn->sw == 0)
        return;
    fit_memo *m = NULL;
    for (unsigned i = 0; i < MEMO_SLOTS && m == NULL; i++)
        if (d->memo[i].key == dn->memo_key)
            m = &d->memo[i];
    if (m == NULL) {
        m = &d->memo[d->memo_next];
        d->memo_next = (d->memo_next + 1) % MEMO_SLOTS;
    }
    m->key = dn->memo_key;
    m->sw = dn->sw;
    m->sx = dn->sx;
    m->sy = dn->sy;
    m->sxx = dn->sxx;
    m->sxy = dn->sxy;
    m->ps_per_item = c;
    m->total_ps =
        atomic_load_explicit(&((dnode *)dn)->total_ps, memory_order_relaxed);
    m->best_ps =
        atomic_load_explicit(&((dnode *)dn)->best_ps, memory_order_relaxed);
    m->down_ps = downstream_ps(d->rt, dn->node, DOWN_DEPTH);
}

void para__device_finish_run(para_runtime_t *rt, para_graph_t *g)
{
    para__devrt *set = rt->device;
    for (unsigned k = 0; set != NULL && k < set->n; k++) {
        devctx *d = set->dev[k];
        bool clean = reap_lost(d, 0);
        for (unsigned i = 0; i < d->n_knodes; i++) {
            dnode *dn = &d->dn[d->knodes[i]];
            if (dn->kernel == NULL)
                continue;
            /* relaxed: only the host thread sets it, and it is done. */
            if (!atomic_load_explicit(&d->lost, memory_order_relaxed))
                memo_keep(d, dn);
            /* What the spreading believed (a simulated device's true L and
             * rate are in its name). relaxed: estimates, the run is over. */
            para__log(2,
                      "device \"%s\": node '%s': learnt latency %.1f us, "
                      "%.3f ns an item (%.3f M items/s), %u launches",
                      d->info->name, dn->node->name, (double)lat_of(d) / 1e3,
                      (double)atomic_load_explicit(&dn->ps_per_item,
                                                   memory_order_relaxed) /
                          1e3,
                      1e6 / (double)PARA_MAX(
                                atomic_load_explicit(&dn->ps_per_item,
                                                     memory_order_relaxed),
                                (uint64_t)1),
                      dn->begun);
            if (clean) {
                d->ops->kernel_release(dn->kernel);
            } else if (d->n_zombies < d->cap_zombies ||
                       (d->zombies =
                            realloc(d->zombies,
                                    (d->cap_zombies = d->cap_zombies * 2 + 4) *
                                        sizeof *d->zombies)) != NULL) {
                /* A lost launch may still use it. */
                d->zombies[d->n_zombies++] = dn->kernel;
            } else {
                d->cap_zombies = 0;
                d->ops->kernel_release(dn->kernel);
            }
            dn->kernel = NULL;
        }
        d->n_knodes = 0;
    }
    for (unsigned i = 0; i < g->n_nodes; i++)
        g->nodes[i]->placement = PARA__PLACE_CPU;
}

static para__kernel_spec node_spec(para_node_t *n, para__kernel_arg *args)
{
    for (size_t a = 0; a < n->kernel->n_args; a++) {
        args[a].value = n->kernel->args[a].value;
        args[a].size = n->kernel->args[a].size;
        args[a].kind = n->kernel->args[a].kind;
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
        .cpu_arg = NULL, /* its dnode on each device */
    };
    return spec;
}

/* Per-run state of device @p d for graph @p g. */
static int devctx_prepare(devctx *d, para_graph_t *g, char *msg, size_t msg_len)
{
    if (d->cap_dn < g->n_nodes) {
        dnode *dn = realloc(d->dn, g->n_nodes * sizeof *dn);
        unsigned *kn =
            dn != NULL ? realloc(d->knodes, g->n_nodes * sizeof *kn) : NULL;
        if (dn != NULL)
            d->dn = dn;
        if (kn == NULL) {
            snprintf(msg, msg_len, "out of memory preparing kernel nodes");
            return PARA_ENOMEM;
        }
        d->knodes = kn;
        d->cap_dn = g->n_nodes;
    }
    for (unsigned i = 0; i < g->n_nodes; i++) {
        dnode *dn = &d->dn[i];
        dn->node = g->nodes[i]->kernel != NULL ? g->nodes[i] : NULL;
        dn->kernel = NULL;
        dn->pending_head = dn->pending_tail = NULL;
        dn->pending_items = 0;
        dn->pending_since = 0;
        dn->launches_run = 0;
        dn->begun = 0;
        dn->memo_key = 0;
        dn->warm = false;
        dn->sw = dn->sx = dn->sy = dn->sxx = dn->sxy = 0;
        dn->split_cap = 0;
        dn->oom_streak = 0;
        atomic_init(&dn->ps_per_item, 0);
        atomic_init(&dn->total_ps, 0);
        atomic_init(&dn->best_ps, 0);
        atomic_init(&dn->backlog_items, 0);
        atomic_init(&dn->launched_items, 0);
        atomic_init(&dn->probe_ns, 0);
    }
    d->n_knodes = 0;
    d->head = d->n_inflight = 0;
    atomic_store_explicit(&d->free_at_ns, 0, memory_order_relaxed);
    d->why[0] = '\0';
    /* relaxed: published to the host thread and the workers with the run
     * (rt->lock). */
    atomic_store_explicit(&d->lost, false, memory_order_relaxed);
    /* A device that has not finished launches abandoned in an earlier run
     * (within 100 ms, or the watchdog's floor if shorter) sits this one
     * out. */
    uint64_t wait_ns = (uint64_t)WAIT_SLICE_NS * 10;
    uint64_t floor_ns = (uint64_t)d->rt->attr.device_timeout_ms * 1000000u;
    if (floor_ns != 0 && floor_ns < wait_ns)
        wait_ns = floor_ns;
    if (!reap_lost(d, wait_ns)) {
        snprintf(d->why, sizeof d->why,
                 "a launch abandoned in an earlier run has not finished");
        atomic_store_explicit(&d->lost, true, memory_order_relaxed);
        para__log(1, "device \"%s\": %s; it sits this run out", d->info->name,
                  d->why);
    }
    return 0;
}

int para__device_prepare_run(para_runtime_t *rt, para_graph_t *g, char *msg,
                             size_t msg_len)
{
    unsigned count = 0;
    for (unsigned i = 0; i < g->n_nodes; i++)
        count += g->nodes[i]->kernel != NULL &&
                 !(g->nodes[i]->flags & PARA_NODE_CPU_ONLY);
    if (count == 0)
        return 0;
    int rc = para__device_ensure(rt, msg, msg_len);
    if (rc != 0)
        return rc;
    para__devrt *set = rt->device;
    for (unsigned k = 0; set != NULL && k < set->n; k++) {
        rc = devctx_prepare(set->dev[k], g, msg, msg_len);
        if (rc != 0)
            return rc;
    }
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        if (n->kernel == NULL || (n->flags & PARA_NODE_CPU_ONLY) != 0)
            continue; /* CPU_ONLY: placement stays PARA__PLACE_CPU */
        if (set == NULL) {
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
        para__kernel_arg *args = calloc(n->kernel->n_args + 1, sizeof *args);
        if (args == NULL) {
            para__device_finish_run(rt, g);
            snprintf(msg, msg_len, "out of memory preparing kernel nodes");
            return PARA_ENOMEM;
        }
        para__kernel_spec spec = node_spec(n, args);
        bool everywhere_host = true; /* every device is the host thread */
        unsigned made = 0;
        for (unsigned k = 0; k < set->n; k++) {
            devctx *d = set->dev[k];
            char why[PARA__ERRMSG_LEN - 96];
            why[0] = '\0';
            spec.cpu_arg = &d->dn[i];
            d->dn[i].launching = NULL;
            rc = d->ops->kernel_create(d->dev, &spec, &d->dn[i].kernel, why,
                                       sizeof why);
            if (rc != 0) {
                d->dn[i].kernel = NULL;
                /* With several devices, one that cannot run this node
                 * (a simulated device and a node without a CPU
                 * function) leaves it to the others. */
                if (rc == PARA_ENODEV && set->n > 1)
                    continue;
                free(args);
                para__device_finish_run(rt, g);
                snprintf(msg, msg_len, "kernel node '%s' on device \"%s\": %s",
                         n->name, d->info->name, why);
                return rc;
            }
            made++;
            d->knodes[d->n_knodes++] = i;
            memo_seed(d, &d->dn[i]);
            everywhere_host &= (d->info->caps & PARA__DEVCAP_HOST_THREAD) != 0;
        }
        free(args);
        if (made == 0) {
            para__device_finish_run(rt, g);
            snprintf(msg, msg_len,
                     "kernel node '%s': none of the %u devices can run it "
                     "(simulated devices need a CPU function)",
                     n->name, set->n);
            return PARA_ENODEV;
        }
        /* The host-thread back-end runs the CPU function itself: splitting
         * would only split it with itself. */
        n->placement = para__has_cpu_fn(n) && !everywhere_host &&
                               !(n->flags & PARA_NODE_DEVICE_ONLY)
                           ? PARA__PLACE_MIXED
                           : PARA__PLACE_DEVICE;
    }
    return 0;
}

void para__device_shutdown(para_runtime_t *rt)
{
    para__devrt *set = rt->device;
    if (set == NULL)
        return;
    /* The scheduler has set rt->shutdown; set_close() wakes device_cond. */
    rt->device = NULL;
    set_close(rt, set);
}

uint64_t para__device_budget(const para_runtime_t *rt)
{
    para__devrt *set = rt->device;
    uint64_t limit = 0;
    uint64_t configured = para__option_env_bytes("DEVICE_BUDGET", 0);
    for (unsigned k = 0; set != NULL && k < set->n; k++) {
        const devctx *d = set->dev[k];
        if (!d->resident)
            continue;
        uint64_t mine =
            configured != 0
                ? configured
                : PARA_MAX(d->info->global_mem_bytes / 2, (uint64_t)1);
        if (limit == 0 || mine < limit)
            limit = mine;
    }
    return limit == UINT64_MAX ? 0 : limit;
}

bool para__device_keeps_outputs(const para_runtime_t *rt)
{
    const para__devrt *set = rt->device;
    /* As out_plan(): with several devices every output comes back. */
    return set != NULL && set->n == 1 && set->dev[0]->resident &&
           rt->remote == NULL;
}

void para__device_stats(const para_runtime_t *rt, para_stats_t *st)
{
    para__devrt *set = rt->device;
    for (unsigned k = 0; set != NULL && k < set->n; k++) {
        const para__device_counters *c = set->dev[k]->counters;
        if (c == NULL)
            continue;
        /* relaxed: host-thread counters, read after runs. */
        st->device_launches +=
            atomic_load_explicit(&c->c_launches, memory_order_relaxed);
        st->device_items +=
            atomic_load_explicit(&c->c_items, memory_order_relaxed);
        st->device_bytes +=
            atomic_load_explicit(&c->c_bytes_in, memory_order_relaxed) +
            atomic_load_explicit(&c->c_bytes_out, memory_order_relaxed);
        st->device_busy_ns +=
            atomic_load_explicit(&c->c_busy_ns, memory_order_relaxed);
    }
}

const char *para_runtime_open_device(para_runtime_t *rt)
{
    if (rt == NULL)
        return NULL;
    /* Claim the runtime as para_run() does, so that no run starts while the
     * device opens. acquire: see the previous run's writes; relaxed on
     * failure: we only report. */
    int zero = 0;
    if (!atomic_compare_exchange_strong_explicit(
            &rt->busy, &zero, 1, memory_order_acquire, memory_order_relaxed)) {
        para__errmsg_set(&rt->errmsg, "%s",
                         "para_runtime_open_device(): a run is in progress");
        return NULL;
    }
    const char *name = NULL;
    char msg[PARA__ERRMSG_LEN];
    if (para__device_ensure(rt, msg, sizeof msg) != 0)
        para__errmsg_set(&rt->errmsg, "%s", msg);
    else if (rt->device == NULL)
        para__errmsg_set(&rt->errmsg, "no device: %s", rt->device_why);
    else
        name = rt->device->dev[0]->info->name;
    /* release: hand the runtime back with the device state written. */
    atomic_store_explicit(&rt->busy, 0, memory_order_release);
    return name;
}
