/*
 * Runtime lifecycle and para_run().
 *
 * para_runtime_create() discovers the machine with hwloc and plans the
 * workers' placement and steal order (topology.c: one worker per physical
 * core, pinned, unless told otherwise), allocates the workers and starts
 * their threads, each of which pins itself; they sleep on rt->start_cond until
 * a run is published. Worker 0 has no thread of its own unless a progress
 * line is printed: the thread in para_run() works as worker 0 during its run
 * (scheduler.c). para_run() validates the graph, resets its per-run state,
 * hands a para__run to the scheduler and returns once every thread in the
 * run has left it, so that everything the run touched is released first.
 *
 * One run per runtime at a time (rt->busy) and per graph (graph->running);
 * both are claimed with a CAS and refused with PARA_EBUSY.
 *
 * Tests: tests/runtime/test_run.c, tests/runtime/test_errors.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static void set_errmsg(para_runtime_t *rt, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_errmsg(para_runtime_t *rt, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    para__errmsg_vset(&rt->errmsg, fmt, ap);
    va_end(ap);
}

static int parse_pin(const char *pin, para__pin_mode *mode)
{
    if (pin == NULL || strcmp(pin, "cores") == 0)
        *mode = PARA__PIN_CORES;
    else if (strcmp(pin, "pus") == 0)
        *mode = PARA__PIN_PUS;
    else if (strcmp(pin, "none") == 0)
        *mode = PARA__PIN_NONE;
    else
        return PARA_EINVAL;
    return 0;
}

/* The byte budget: the configured one, or 1/8 of the RAM; SIZE_MAX means
 * none. Computed once per runtime (the RAM size is a system call). */
static uint64_t default_budget(size_t configured);

/* rt->wake.also: the device host thread sleeps apart from the workers. */
static void wake_device(void *rt)
{
    para__device_wake(rt);
}

/* The byte budget of a budgeted policy's run: footprints from the graph. */
static int begin_budget(para_runtime_t *rt, para__run *run)
{
    para__footprints *fp =
        para__footprints_new(run->graph, para__device_keeps_outputs(rt));
    if (fp == NULL)
        return PARA_ENOMEM;
    int rc = para__budget_begin(run, rt->default_budget, run->graph->n_sources,
                                para__footprint, fp, para__footprints_free);
    if (rc == 0)
        para__budget_set_device(run, para__device_budget(rt),
                                para__footprint_device);
    return rc;
}

static uint64_t default_budget(size_t configured)
{
    if (configured == SIZE_MAX)
        return UINT64_MAX;
    if (configured != 0)
        return configured;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0)
        return (uint64_t)1 << 30;
    return (uint64_t)pages * (uint64_t)page / 8;
}

/* The byte cap of a batch: half a core's L2 cache, within [128 KiB,
 * 256 KiB]; 128 KiB if hwloc knows no L2. A batch is not alone in that
 * cache: the task that reads it writes an output per branch of a fused
 * fan-out, and a worker holds up to PARA__TAIL_HOLD outputs back for a
 * busy serial tail (scheduler.c) to read them later, hot, on the core
 * that wrote them. Half of a 512 KiB L2 suits that; half of a 2 MiB one
 * does not: there w3's 1 MiB batches ran 15-25 % slower than 256 KiB ones
 * (first runs up to 2x; 128, 192, 384 and 512 KiB were slower than 256
 * too), and holding one task instead of eight brought 1 MiB batches back
 * to 256 KiB's time: the held outputs were what no longer fit. w1, w9
 * and w13 were level (BENCHMARKS.md, session 14). Items that cost more
 * are sized by their learned cost long before this cap. */
static size_t batch_bytes(hwloc_topology_t topo)
{
    const size_t lo = (size_t)128 << 10, hi = (size_t)256 << 10;
    hwloc_obj_t l2 = hwloc_get_obj_by_type(topo, HWLOC_OBJ_L2CACHE, 0);
    if (l2 == NULL || l2->attr == NULL || l2->attr->cache.size == 0)
        return lo;
    size_t half = (size_t)(l2->attr->cache.size / 2);
    return half < lo ? lo : half > hi ? hi : half;
}

static void runtime_free(para_runtime_t *rt)
{
    if (rt->workers != NULL) {
        for (unsigned i = 0; i < rt->n_workers; i++) {
            para__batch_cache_drain(&rt->workers[i].cache);
            para__deque_fini(&rt->workers[i].deque);
        }
        free(rt->workers);
    }
    para__records_pool_close(rt);
    para__trace_destroy(rt->trace);
    para__topology_plan_free(&rt->plan);
    if (rt->topology != NULL)
        hwloc_topology_destroy(rt->topology);
    para__eventcount_fini(&rt->wake.park);
    pthread_cond_destroy(&rt->done_cond);
    pthread_cond_destroy(&rt->device_cond);
    pthread_cond_destroy(&rt->start_cond);
    pthread_mutex_destroy(&rt->lock);
    para__errmsg_destroy(&rt->errmsg);
    free(rt);
}

int para_runtime_create(para_runtime_t **out, const para_runtime_attr_t *attr)
{
    if (out == NULL)
        return PARA_EINVAL;
    *out = NULL;
    para_runtime_attr_t defaults;
    char msg[1024];
    if (attr == NULL) {
        /* A bad PARA_* variable is logged there, named. */
        if (para_runtime_attr_init(&defaults) != 0)
            return PARA_EINVAL;
        attr = &defaults;
    }
    if (attr->struct_size != sizeof *attr) {
        para__log(0, "para_runtime_create: attr not initialised by "
                     "para_runtime_attr_init()");
        return PARA_EINVAL;
    }
    if (para__options_check_env(msg, sizeof msg) != 0 ||
        para__options_check_attr(attr, msg, sizeof msg) != 0) {
        para__log(0, "para_runtime_create: %s", msg);
        return PARA_EINVAL;
    }
    para__pin_mode pin;
    if (parse_pin(attr->pin, &pin) != 0) {
        para__log(0, "unknown pin mode '%s'; known: cores, pus, none",
                  attr->pin);
        return PARA_EINVAL;
    }
    if (!para__progress_mode_valid(attr->progress)) {
        para__log(0, "unknown progress mode '%s'; known: auto, on, off",
                  attr->progress);
        return PARA_EINVAL;
    }
    const para__policy *policy =
        para__policy_find(attr->policy, msg, sizeof msg);
    if (policy == NULL) {
        para__log(0, "%s", msg);
        return PARA_EPOLICY;
    }

    para_runtime_t *rt = calloc(1, sizeof *rt);
    if (rt == NULL)
        return PARA_ENOMEM;
    rt->attr = *attr;
    rt->policy_ops = policy;
    snprintf(rt->policy, sizeof rt->policy, "%s", attr->policy);
    rt->attr.policy = rt->policy;
    rt->attr.pin = NULL; /* the caller's strings are not kept */
    rt->attr.trace = NULL;
    rt->attr.progress = NULL;
    para__progress_init(rt, attr->progress);
    snprintf(rt->device_selector, sizeof rt->device_selector, "%s",
             attr->device != NULL && attr->device[0] != '\0' ? attr->device
                                                             : "auto");
    rt->attr.device = rt->device_selector;
    rt->mixed = para__options_mixed();
    rt->pinned = para__options_pinned();
    rt->fuse = para__option_env_level("FUSE", 1) != 0; /* checked above */
    para__task_stack_init(&rt->wake.inject);
    rt->wake.also = wake_device;
    rt->wake.also_arg = rt;
    rt->offload.route = para__device_route;
    rt->offload.note_cpu = para__device_note_cpu;
    atomic_init(&rt->busy, 0);
    atomic_init(&rt->cancel, false);
    pthread_mutex_init(&rt->lock, NULL);
    para__errmsg_init(&rt->errmsg);
    pthread_cond_init(&rt->start_cond, NULL);
    pthread_cond_init(&rt->done_cond, NULL);
    pthread_cond_init(&rt->device_cond, NULL);
    para__eventcount_init(&rt->wake.park);

    int rc = PARA_ENOMEM;
    if (hwloc_topology_init(&rt->topology) != 0) {
        rt->topology = NULL;
        goto fail;
    }
    if (hwloc_topology_load(rt->topology) != 0)
        goto fail;
    rc = para__topology_plan_make(rt->topology, attr->workers, pin, &rt->plan);
    if (rc != 0)
        goto fail;
    rc = PARA_ENOMEM;
    rt->n_workers = rt->plan.n_workers;
    size_t bytes = rt->n_workers * sizeof *rt->workers;
    rt->workers = aligned_alloc(PARA__WORKER_ALIGN, bytes);
    if (rt->workers == NULL)
        goto fail;
    memset(rt->workers, 0, bytes);
    for (unsigned i = 0; i < rt->n_workers; i++) {
        para__worker *w = &rt->workers[i];
        w->rt = rt;
        w->id = i;
        w->cache.allocated = &w->c_batches_allocated;
        para__batch_cache_init_returns(&w->cache);
        w->rng = 0x9E3779B97F4A7C15ull * (i + 1);
        para__topology_shuffle_levels(&rt->plan, i, &w->rng);
        if (para__deque_init(&w->deque, 8) != 0) {
            /* Workers before i are initialised; mark the rest empty. */
            rt->n_workers = i;
            goto fail;
        }
    }
    if (attr->trace != NULL && *attr->trace != '\0') {
        rc = para__trace_create(&rt->trace, attr->trace, attr->trace_events);
        if (rc != 0)
            goto fail;
        for (unsigned i = 0; i < rt->n_workers; i++) {
            char name[24];
            snprintf(name, sizeof name, "para-cpu-%u", i);
            rt->workers[i].trace =
                para__trace_lane_add(rt->trace, PARA__LANE_CPU, i, name);
        }
    }
    /* The thread in para_run() works as worker 0 unless it has to print
     * the progress line while it waits. */
    rt->caller_works = !rt->progress.enabled;
    rt->default_budget = default_budget(rt->attr.mem_budget);
    rt->batch_bytes = batch_bytes(rt->topology);
    rc = para__scheduler_start(rt);
    if (rc != 0)
        goto fail;
    para__log_set_level(attr->verbose);
    para__log(2, "runtime: %u workers, policy %s", rt->n_workers, rt->policy);
    *out = rt;
    return 0;
fail:
    runtime_free(rt);
    return rc;
}

int para_runtime_destroy(para_runtime_t *rt)
{
    if (rt == NULL)
        return 0;
    /* acquire: pairs with the release store at the end of para_run(). */
    if (atomic_load_explicit(&rt->busy, memory_order_acquire) != 0)
        return PARA_EBUSY;
    para__scheduler_stop(rt);
    para__device_shutdown(rt);
    runtime_free(rt);
    return 0;
}

unsigned para_runtime_workers(const para_runtime_t *rt)
{
    return rt != NULL ? rt->n_workers : 0;
}

const char *para_runtime_errmsg(const para_runtime_t *rt)
{
    /* A copy per calling thread (errmsg.h): valid until this thread's next
     * call, whatever other threads do with the runtime meanwhile. */
    static _Thread_local char copy[PARA__ERRMSG_LEN];
    if (rt == NULL)
        return "runtime is NULL";
    /* para__errmsg_copy() locks; the box itself is not changed. */
    return para__errmsg_copy((para__errmsg *)&rt->errmsg, copy, sizeof copy);
}

int para_run(para_runtime_t *rt, para_graph_t *g)
{
    if (rt == NULL || g == NULL)
        return PARA_EINVAL;
    int zero = 0;
    /* acquire: see the previous run's writes; pairs with the release store
     * below. relaxed on failure: we only report EBUSY. */
    if (!atomic_compare_exchange_strong_explicit(
            &rt->busy, &zero, 1, memory_order_acquire, memory_order_relaxed))
        return PARA_EBUSY;
    zero = 0;
    if (!atomic_compare_exchange_strong_explicit(&g->running, &zero, 1,
                                                 memory_order_acquire,
                                                 memory_order_relaxed)) {
        set_errmsg(rt, "the graph is already running");
        /* release: hand the runtime back. */
        atomic_store_explicit(&rt->busy, 0, memory_order_release);
        return PARA_EBUSY;
    }
    set_errmsg(rt, "%s", "");

    int rc = para__graph_prepare(g);
    if (rc != 0) {
        set_errmsg(rt, "%s", para__errmsg_text(&g->errmsg));
        goto out;
    }
    g->runtime = rt;
    rc = para__graph_open_sources(g);
    if (rc != 0) {
        set_errmsg(rt, "%s", para__errmsg_text(&g->errmsg));
        goto out;
    }
    para__graph_reset_run_state(g);
    rc = para__graph_stats_begin(g, rt->n_workers);
    if (rc != 0) {
        set_errmsg(rt, "%s", para__errmsg_text(&g->errmsg));
        goto out;
    }
    char msg[PARA__ERRMSG_LEN];
    rc = para__device_prepare_run(rt, g, msg, sizeof msg);
    if (rc != 0) {
        set_errmsg(rt, "%s", msg);
        goto out;
    }

    para__run *run =
        aligned_alloc(PARA_CACHELINE, (sizeof *run + PARA_CACHELINE - 1) &
                                          ~(size_t)(PARA_CACHELINE - 1));
    if (run == NULL) {
        rc = PARA_ENOMEM;
        set_errmsg(rt, "out of memory starting the run");
        para__device_finish_run(rt, g);
        goto out;
    }
    memset(run, 0, sizeof *run);
    run->graph = g;
    run->rt = rt;
    atomic_init(&run->in_flight, (int64_t)g->n_sources);
    atomic_init(&run->live_batches, 0);
    atomic_init(&run->peak_batches, 0);
    atomic_init(&run->status, 0);
    atomic_init(&run->aborting, false);
    atomic_init(&run->done, false);
    run->policy = rt->policy_ops;
    bool budgeted = run->policy->budgeted;
    run->max_batches = rt->attr.max_batches ? (int64_t)rt->attr.max_batches
                       : budgeted           ? 0
                                            : 8 * (int64_t)rt->n_workers;
    atomic_init(&run->bytes, 0);
    atomic_init(&run->peak_bytes, 0);
    atomic_init(&run->held_since, 0);
    atomic_init(&run->hold_ns, 0);
    run->wake = &rt->wake;
    run->forced_batch_items = rt->attr.batch_items;
    run->batch_bytes = rt->batch_bytes;
    run->target_batch_ns = (uint64_t)rt->attr.target_batch_us * 1000u;
    if (run->target_batch_ns == 0)
        run->target_batch_ns = 1000;
    run->budget = NULL;
    if ((budgeted && begin_budget(rt, run) != 0) ||
        run->policy->run_begin(run, &run->policy_state) != 0) {
        rc = PARA_ENOMEM;
        set_errmsg(rt, "out of memory starting the run");
        run->policy->run_end(run, run->policy_state);
        para__budget_end(run);
        free(run);
        para__device_finish_run(rt, g);
        goto out;
    }
    rc = para__graph_nodes_begin(g, rt->n_workers);
    if (rc != 0) {
        set_errmsg(rt, "%s", para__errmsg_text(&g->errmsg));
        run->policy->run_end(run, run->policy_state);
        para__budget_end(run);
        free(run);
        para__device_finish_run(rt, g);
        goto out;
    }

    if (rt->remote != NULL) /* runtime/mpi: see para__remote */
        rt->remote->run_begin(rt->remote, run);
    para__stats_run_begin(rt);
    para__trace_run_begin(rt->trace, rt->n_workers);
    uint64_t t0 = para__now_ns();
    para__progress_begin(rt, t0);
    para__scheduler_execute(rt, run, para__progress_wait);
    rt->last_run_ns = para__now_ns() - t0;
    para__progress_end(rt, run);

    /* relaxed: the workers' exit was synchronised through rt->lock. */
    rc = atomic_load_explicit(&run->status, memory_order_relaxed);
    if (rc != 0)
        set_errmsg(rt, "%s", run->errmsg);
    para__graph_nodes_end(g, rc); /* reductions merge (reduce.c) */
    int64_t live =
        atomic_load_explicit(&run->live_batches, memory_order_relaxed);
    if (live != 0)
        para__panic("run ended with %lld batches alive", (long long)live);
    rt->last_peak_batches = (uint64_t)atomic_load_explicit(
        &run->peak_batches, memory_order_relaxed);
    int64_t bytes = atomic_load_explicit(&run->bytes, memory_order_relaxed);
    uint64_t reserved = run->budget == NULL
                            ? 0
                            : atomic_load_explicit(&run->budget->reserved,
                                                   memory_order_relaxed);
    if (bytes != 0 || reserved != 0)
        para__panic("run ended with %lld bytes in flight, %llu reserved",
                    (long long)bytes, (unsigned long long)reserved);
    rt->last_peak_bytes =
        (uint64_t)atomic_load_explicit(&run->peak_bytes, memory_order_relaxed);
    rt->last_budget = run->budget == NULL || run->budget->limit == UINT64_MAX
                          ? 0
                          : run->budget->limit;
    rt->last_hold_ns =
        atomic_load_explicit(&run->hold_ns, memory_order_relaxed);
    rt->last_decisions = run->budget == NULL
                             ? 0
                             : atomic_load_explicit(&run->budget->decisions,
                                                    memory_order_relaxed);
    run->policy->run_end(run, run->policy_state);
    para__budget_end(run);
    rt->runs++;
    /* A trace that cannot be written is logged; the run itself succeeded. */
    if (para__trace_run_end(rt->trace, g) == 0 && rt->trace != NULL &&
        rt->trace->path != NULL)
        (void)para__trace_write_file(rt->trace, rt->trace->path);
    for (unsigned i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->kind == PARA__KIND_COLLECT)
            *g->nodes[i]->collect_count = g->nodes[i]->collect_pos;
    free(run);
    para__device_finish_run(rt, g);
out:
    /* A cancel request belongs to this run only. Cleared under the lock
     * before busy drops, so a para_run_cancel() that saw busy set never
     * leaves a request behind for the next run. */
    g->runtime = NULL;
    /* release: publish the run's effects to the next builder call / run. */
    atomic_store_explicit(&g->running, 0, memory_order_release);
    pthread_mutex_lock(&rt->lock);
    /* relaxed: set and cleared under rt->lock; no worker is in a run. */
    atomic_store_explicit(&rt->cancel, false, memory_order_relaxed);
    /* release: publish the run's effects to the next run. Under the lock
     * so that para_run_cancel() sees busy and the request change together. */
    atomic_store_explicit(&rt->busy, 0, memory_order_release);
    pthread_mutex_unlock(&rt->lock);
    return rc;
}

int para_run_cancel(para_runtime_t *rt)
{
    if (rt == NULL)
        return PARA_EINVAL;
    int rc = PARA_EAGAIN;
    pthread_mutex_lock(&rt->lock);
    /* relaxed: busy drops only under rt->lock, held here, together with
     * the request being cleared, so a request is never left for the next
     * run; a 0 read while another thread is claiming the runtime just
     * means that the run had not started. */
    if (atomic_load_explicit(&rt->busy, memory_order_relaxed) != 0) {
        /* seq_cst: pairs with the seq_cst load in the scheduler's
         * work_visible() (after a worker announced it parks), and comes
         * before the wake-up below: a worker about to park either sees
         * the request or is woken (eventcount.h). */
        atomic_store_explicit(&rt->cancel, true, memory_order_seq_cst);
        para__eventcount_notify_all(&rt->wake.park);
        rc = 0;
    }
    pthread_mutex_unlock(&rt->lock);
    return rc;
}
