/*
 * Topology plan: which PUs each worker runs on, and in which order it looks
 * for work to steal.
 *
 * Slots and placement
 *   The plan first lists the slots workers can be placed on, then gives
 *   worker i slot i % n_slots, so workers beyond the number of slots wrap
 *   around onto slots already used (worker i and i + n_slots share a slot).
 *   - PIN_CORES: one slot per core, in hwloc logical order; the cpuset is the
 *     whole core (all its hardware threads), so the OS picks the thread.
 *   - PIN_PUS: one slot per PU, filled breadth-first over the cores in
 *     logical order: the first PU of every core, then the second PU of every
 *     core that has one, and so on. Worker i therefore sits on core
 *     i % n_cores, exactly as with PIN_CORES, while i < n_cores; SMT siblings
 *     are only used once every core has a worker, and worker i and
 *     i + n_cores are siblings (each other's nearest victim). Plain PU order
 *     would put workers 0 and 1 on one core and leave cores idle whenever
 *     fewer workers than PUs are asked for. Cores with fewer PUs (hybrid
 *     CPUs, partly disallowed cores) simply drop out of the later rounds.
 *   - PIN_NONE: slots are counted as for PIN_CORES (for the default worker
 *     count) but nobody is bound: NULL cpusets, os_pu and numa -1, and every
 *     other worker is at the same distance (one level, index order). An
 *     unbound thread moves wherever the OS puts it, so any locality order
 *     would be a guess; random stealing over one level is the honest plan.
 *   Slots and cpusets are restricted to hwloc_topology_get_allowed_cpuset(),
 *   and to the process's CPU binding when it has one (taskset, mpirun
 *   --bind-to), so that processes bound to different cores pin their
 *   workers there.
 *   With the default load flags hwloc already drops disallowed PUs (cgroup
 *   cpusets); the restriction matters for a topology loaded with
 *   HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED, where we must not pin onto PUs
 *   the OS would refuse. A topology without Core objects uses its PUs as
 *   cores.
 *
 * Compact, not spread
 *   Consecutive workers land on neighbouring cores (logical order follows
 *   the tree), so they share L2/L3 and, as long as there are fewer workers
 *   than cores in a NUMA node, all of them share one memory controller. In
 *   a pipeline, a batch produced by one worker is consumed by itself (LIFO
 *   pop) or by a thief, and the nearest thief should find it in a shared
 *   cache; memory first-touched by one worker is then local to all. Spreading
 *   across packages first (what hwloc_distrib() does) doubles the memory
 *   bandwidth and L3 available to a few memory-bound workers, at the price of
 *   cross-package hand-offs. With the default worker count (every core) both
 *   give the same set of cores; the choice only matters when fewer workers
 *   are asked for, and there compact is the better default. A spread mode
 *   would be a separate para__pin_mode, not a change of this one.
 *
 * Distance and victim order
 *   The distance between workers a and b is the depth of the deepest common
 *   ancestor of their slot objects in the hwloc tree: deeper means nearer
 *   (same core, then same L2, L3, NUMA node, package, machine; levels the
 *   topology lacks simply do not occur). In hwloc 2 NUMA nodes are memory
 *   children, not ancestors, but hwloc inserts a Group object (or reuses a
 *   cache or package with the same cpuset) for every NUMA node that covers
 *   part of its parent, so "same NUMA node" is still a deeper common
 *   ancestor. Each worker's row lists every other worker, deepest common
 *   ancestor first, ties by ascending worker index; a bucket pass over the
 *   depths (O(n * depth) per row) keeps it stable without qsort_r. Levels
 *   are the maximal runs of equal depth; level_end[k] is where the level of
 *   position k ends, which lets the scheduler randomise inside a level
 *   (para__topology_shuffle_levels()) so that thieves do not all hit the
 *   same victim first, without ever trying a farther victim before a nearer
 *   one. This is the hierarchical victim selection of J.-N. Quintin and
 *   F. Wagner, "Hierarchical work-stealing" (Euro-Par 2010), and of the
 *   Qthreads scheduler (S. Olivier et al., "OpenMP task scheduling strategies
 *   for multicore NUMA systems", IJHPCA 2012), flattened into one ordered
 *   list per worker.
 *
 * Invariants (checked by the tests)
 *   - row w is a permutation of the workers other than w;
 *   - distance is non-increasing along a row and level_end marks exactly the
 *     positions where it drops (level_end is constant within a level,
 *     strictly greater than the position, and the last level ends at m);
 *   - within a level, before shuffling, indices ascend.
 *
 * The plan is pure: only para__topology_pin_thread() talks to the OS, and it
 * refuses a topology that is not this system's (hwloc would "bind" through
 * dummy hooks that report success). A pinning failure is a warning, never
 * fatal: the worker runs unbound and the plan's order is still valid.
 *
 * Tests: tests/runtime/test_topology.c (synthetic topologies, plus pinning
 * on the real machine checked with sched_getaffinity).
 */
#include "topology.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Fixed seed for a zero xorshift state (the golden-ratio constant). */
#define ZERO_STATE_SEED 0x9E3779B97F4A7C15ull

static bool pin_mode_valid(para__pin_mode mode)
{
    switch (mode) {
    case PARA__PIN_CORES:
    case PARA__PIN_PUS:
    case PARA__PIN_NONE:
        return true;
    }
    return false;
}

/* Next PU after @p prev (NULL: the first) inside @p core that is allowed. */
static hwloc_obj_t next_allowed_pu(hwloc_topology_t topo, hwloc_obj_t core,
                                   hwloc_const_cpuset_t allowed,
                                   hwloc_obj_t prev)
{
    hwloc_obj_t pu = prev;
    do
        pu = hwloc_get_next_obj_inside_cpuset_by_type(topo, core->cpuset,
                                                      HWLOC_OBJ_PU, pu);
    while (pu != NULL && !hwloc_bitmap_isset(allowed, pu->os_index));
    return pu;
}

/*
 * Fill @p slots with the objects workers are placed on, in placement order
 * (see the top of the file). @p slots, @p cores and @p cursor each have room
 * for every PU of the topology; an allowed core holds at least one allowed
 * PU of its own, so there are never more allowed cores than PUs. Returns the
 * number of slots; 0 means that no PU is allowed.
 */
static unsigned list_slots(hwloc_topology_t topo, para__pin_mode mode,
                           hwloc_const_cpuset_t allowed, hwloc_obj_t *slots,
                           hwloc_obj_t *cores, hwloc_obj_t *cursor)
{
    unsigned n_cores = 0;
    int nb_cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    for (int i = 0; i < nb_cores; i++) {
        hwloc_obj_t core =
            hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE, (unsigned)i);
        if (core != NULL && hwloc_bitmap_intersects(core->cpuset, allowed))
            cores[n_cores++] = core;
    }
    if (n_cores == 0) {
        /* No Core objects (or none allowed): every PU is a core. */
        int nb_pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
        unsigned n = 0;
        for (int i = 0; i < nb_pus; i++) {
            hwloc_obj_t pu =
                hwloc_get_obj_by_type(topo, HWLOC_OBJ_PU, (unsigned)i);
            if (pu != NULL && hwloc_bitmap_isset(allowed, pu->os_index))
                slots[n++] = pu;
        }
        return n;
    }
    if (mode != PARA__PIN_PUS) {
        memcpy(slots, cores, n_cores * sizeof *slots);
        return n_cores;
    }

    /* Breadth-first: round r takes the r-th allowed PU of every core that
     * still has one. cursor[c] is the PU core c gave last (NULL: none yet);
     * cores[c] becomes NULL once core c has no PU left. */
    for (unsigned c = 0; c < n_cores; c++)
        cursor[c] = NULL;
    unsigned n = 0;
    for (bool any = true; any;) {
        any = false;
        for (unsigned c = 0; c < n_cores; c++) {
            if (cores[c] == NULL)
                continue;
            hwloc_obj_t pu =
                next_allowed_pu(topo, cores[c], allowed, cursor[c]);
            if (pu == NULL) {
                cores[c] = NULL;
                continue;
            }
            cursor[c] = pu;
            slots[n++] = pu;
            any = true;
        }
    }
    return n;
}

/* OS index of the NUMA node nearest to @p set: among the nodes whose cpuset
 * contains it, the one with the smallest cpuset (the first in logical order
 * on ties, usually DRAM before HBM or CXL memory). -1 if there is none. */
static int local_numa(hwloc_topology_t topo, hwloc_const_cpuset_t set)
{
    int best = -1;
    int best_weight = 0;
    bool found = false;
    hwloc_obj_t node = NULL;
    while ((node = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE,
                                              node)) != NULL) {
        if (node->cpuset == NULL || hwloc_bitmap_iszero(node->cpuset) ||
            !hwloc_bitmap_isincluded(set, node->cpuset))
            continue;
        int weight = hwloc_bitmap_weight(node->cpuset);
        if (!found || (weight >= 0 && weight < best_weight)) {
            found = true;
            best = (int)node->os_index;
            best_weight = weight;
        }
    }
    return best;
}

/*
 * Fill row @p w of the victim tables: bucket the other workers by the depth
 * of their common ancestor with w, deepest bucket first, ascending index
 * within a bucket; every non-empty bucket is one level. @p depth is scratch
 * room for n_workers ints. With PIN_NONE every depth is 0: one level.
 */
static void build_row(hwloc_topology_t topo, para__topology_plan *plan,
                      para__pin_mode mode, hwloc_obj_t const *slots,
                      unsigned n_slots, unsigned w, int *depth)
{
    unsigned n = plan->n_workers;
    unsigned m = n - 1;
    hwloc_obj_t self = slots[w % n_slots];
    int max_depth = 0;
    for (unsigned v = 0; v < n; v++) {
        depth[v] = 0;
        if (v == w || mode == PARA__PIN_NONE)
            continue;
        hwloc_obj_t common =
            hwloc_get_common_ancestor_obj(topo, self, slots[v % n_slots]);
        depth[v] = common->depth;
        max_depth = PARA_MAX(max_depth, depth[v]);
    }
    unsigned *row = plan->victims + (size_t)w * m;
    unsigned *end = plan->level_end + (size_t)w * m;
    unsigned k = 0;
    for (int d = max_depth; d >= 0; d--) {
        unsigned begin = k;
        for (unsigned v = 0; v < n; v++)
            if (v != w && depth[v] == d)
                row[k++] = v;
        for (unsigned j = begin; j < k; j++)
            end[j] = k;
    }
    if (k != m)
        para__panic("topology: row %u has %u victims, expected %u", w, k, m);
}

static void log_plan(const para__topology_plan *plan, para__pin_mode mode)
{
    static const char *const mode_names[] = {"cores", "pus", "none"};
    unsigned n = plan->n_workers;
    para__log(3, "topology: %u workers, pin %s", n, mode_names[mode]);
    if (mode == PARA__PIN_NONE)
        return;
    for (unsigned w = 0; w < n; w++) {
        char set[128];
        hwloc_bitmap_list_snprintf(set, sizeof set, plan->cpuset[w]);
        unsigned levels = 0;
        for (unsigned k = 0; k < n - 1;
             k = plan->level_end[(size_t)w * (n - 1) + k])
            levels++;
        para__log(3, "topology: worker %u on PU %s (NUMA %d), %u victim levels",
                  w, set, plan->numa[w], levels);
    }
}

/* The allowed PUs within the process's CPU binding, or NULL when the
 * topology is not this machine's, the binding is unknown, or it leaves no
 * allowed PU (then the binding is ignored). */
static hwloc_bitmap_t process_binding(hwloc_topology_t topo,
                                      hwloc_const_cpuset_t allowed)
{
    if (!hwloc_topology_is_thissystem(topo))
        return NULL;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (set == NULL)
        return NULL;
    if (hwloc_get_cpubind(topo, set, HWLOC_CPUBIND_PROCESS) != 0 ||
        hwloc_bitmap_and(set, set, allowed) != 0 || hwloc_bitmap_iszero(set) ||
        hwloc_bitmap_isequal(set, allowed)) {
        hwloc_bitmap_free(set);
        return NULL;
    }
    return set;
}

int para__topology_plan_make(hwloc_topology_t topo, unsigned n_workers,
                             para__pin_mode mode, para__topology_plan *out)
{
    if (out == NULL)
        return PARA_EINVAL;
    memset(out, 0, sizeof *out);
    if (topo == NULL || !pin_mode_valid(mode) ||
        n_workers > PARA__TOPOLOGY_MAX_WORKERS)
        return PARA_EINVAL;
    int nb_pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    hwloc_const_cpuset_t allowed = hwloc_topology_get_allowed_cpuset(topo);
    if (nb_pus <= 0 || allowed == NULL)
        return PARA_EINVAL;

    int rc = PARA_ENOMEM;
    int *depth = NULL;
    /* Restricted to the process's binding too, when it has one (taskset,
     * mpirun --bind-to): processes bound to different cores must not all
     * pin their workers onto the first cores of the machine. */
    hwloc_bitmap_t bound = process_binding(topo, allowed);
    if (bound != NULL)
        allowed = bound;
    /* slots, then scratch for list_slots(): cores and cursors. */
    hwloc_obj_t *slots = malloc(3 * (size_t)nb_pus * sizeof *slots);
    if (slots == NULL)
        goto fail;
    unsigned n_slots = list_slots(topo, mode, allowed, slots, slots + nb_pus,
                                  slots + 2 * (size_t)nb_pus);
    if (n_slots == 0) {
        rc = PARA_EINVAL;
        goto fail;
    }
    if (n_workers == 0)
        n_workers = PARA_MIN(n_slots, PARA__TOPOLOGY_MAX_WORKERS);

    size_t n = n_workers;
    /* n * (n - 1) fits: n <= 2^16. One cell at least, so that the tables
     * are never NULL (malloc(0) may return NULL). */
    size_t cells = PARA_MAX(n * (n - 1), (size_t)1);
    out->n_workers = n_workers;
    out->cpuset = calloc(n, sizeof *out->cpuset);
    out->os_pu = malloc(n * sizeof *out->os_pu);
    out->numa = malloc(n * sizeof *out->numa);
    out->victims = malloc(cells * sizeof *out->victims);
    out->level_end = malloc(cells * sizeof *out->level_end);
    depth = malloc(n * sizeof *depth);
    if (out->cpuset == NULL || out->os_pu == NULL || out->numa == NULL ||
        out->victims == NULL || out->level_end == NULL || depth == NULL)
        goto fail;

    for (unsigned i = 0; i < n_workers; i++) {
        out->os_pu[i] = -1;
        out->numa[i] = -1;
        if (mode == PARA__PIN_NONE)
            continue;
        hwloc_bitmap_t set = hwloc_bitmap_dup(slots[i % n_slots]->cpuset);
        if (set == NULL)
            goto fail;
        out->cpuset[i] = set;
        if (hwloc_bitmap_and(set, set, allowed) != 0)
            goto fail;
        out->os_pu[i] = hwloc_bitmap_first(set);
        out->numa[i] = local_numa(topo, set);
    }
    for (unsigned w = 0; w < n_workers; w++)
        build_row(topo, out, mode, slots, n_slots, w, depth);

    free(depth);
    free(slots);
    hwloc_bitmap_free(bound);
    log_plan(out, mode);
    return 0;
fail:
    free(depth);
    free(slots);
    hwloc_bitmap_free(bound);
    para__topology_plan_free(out);
    return rc;
}

void para__topology_plan_free(para__topology_plan *plan)
{
    if (plan == NULL)
        return;
    if (plan->cpuset != NULL)
        for (unsigned i = 0; i < plan->n_workers; i++)
            hwloc_bitmap_free(plan->cpuset[i]); /* NULL is a no-op */
    free(plan->cpuset);
    free(plan->os_pu);
    free(plan->victims);
    free(plan->level_end);
    free(plan->numa);
    memset(plan, 0, sizeof *plan);
}

void para__topology_shuffle_levels(para__topology_plan *plan, unsigned w,
                                   uint64_t *rng)
{
    if (plan == NULL || rng == NULL || w >= plan->n_workers ||
        plan->n_workers < 2)
        return;
    if (*rng == 0)
        *rng = ZERO_STATE_SEED;
    unsigned m = plan->n_workers - 1;
    unsigned *row = plan->victims + (size_t)w * m;
    const unsigned *end = plan->level_end + (size_t)w * m;
    for (unsigned k = 0; k < m; k = end[k]) {
        /* Fisher-Yates on [k, end[k]). The modulo bias is below 2^-32 for
         * any level that fits in an unsigned, harmless for victim order. */
        for (unsigned i = end[k] - 1; i > k; i--) {
            unsigned j = k + (unsigned)(para__rand(rng) % (i - k + 1));
            unsigned t = row[i];
            row[i] = row[j];
            row[j] = t;
        }
    }
}

static const char *bind_error_text(int err)
{
    switch (err) {
    case ENOSYS:
        return "binding not supported here, or the topology does not "
               "describe this system";
    case EXDEV:
        return "the binding cannot be enforced";
    case EPERM:
        return "not permitted";
    case EINVAL:
        return "a PU is not available to this process";
    default:
        return "refused by the OS";
    }
}

int para__topology_pin_thread(hwloc_topology_t topo,
                              const para__topology_plan *plan, unsigned w,
                              pthread_t thread)
{
    if (topo == NULL || plan == NULL || w >= plan->n_workers)
        return PARA_EINVAL;
    if (plan->cpuset == NULL || plan->cpuset[w] == NULL)
        return 0;
    /* hwloc binds through dummy hooks that do nothing and report success
     * when the topology is not this system's (synthetic, XML): refuse
     * rather than pretend. */
    int err = ENOSYS;
    if (hwloc_topology_is_thissystem(topo)) {
        if (hwloc_set_thread_cpubind(topo, thread, plan->cpuset[w], 0) == 0)
            return 0;
        err = errno;
    }
    char set[128];
    hwloc_bitmap_list_snprintf(set, sizeof set, plan->cpuset[w]);
    para__log(1,
              "topology: cannot pin worker %u to PU %s: %s (errno %d); it "
              "runs unpinned",
              w, set, bind_error_text(err), err);
    return PARA_EINVAL;
}

int para__topology_bind_memory(hwloc_topology_t topo,
                               const para__topology_plan *plan, unsigned w,
                               void *addr, size_t len)
{
    if (topo == NULL || plan == NULL || w >= plan->n_workers || addr == NULL)
        return PARA_EINVAL;
    if (plan->numa == NULL || plan->numa[w] < 0 ||
        !hwloc_topology_is_thissystem(topo))
        return 0; /* no node to bind to, or not this machine */
    /* One node: the memory is on it already. mbind() with MIGRATE is not
     * free even then: Linux drains every CPU's page lists first and waits
     * for an expedited RCU grace period (IPIs to every CPU; a worker
     * starting under SCHED_FIFO waited there until the RT throttle let the
     * other CPU go, most of a second). */
    if (hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE) <= 1)
        return 0;
    hwloc_bitmap_t nodes = hwloc_bitmap_alloc();
    if (nodes == NULL)
        return PARA_ENOMEM;
    hwloc_bitmap_only(nodes, (unsigned)plan->numa[w]);
    int rc =
        hwloc_set_area_membind(topo, addr, len, nodes, HWLOC_MEMBIND_BIND,
                               HWLOC_MEMBIND_MIGRATE | HWLOC_MEMBIND_BYNODESET);
    int err = errno;
    hwloc_bitmap_free(nodes);
    if (rc == 0)
        return 0;
    para__log(3,
              "topology: cannot bind worker %u's memory to NUMA node %d: "
              "%s (errno %d)",
              w, plan->numa[w], bind_error_text(err), err);
    return PARA_EINVAL;
}
