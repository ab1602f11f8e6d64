/*
 * Topology plan: where each worker runs and in which order it steals.
 *
 * A plan is a pure function of an hwloc topology, a worker count and a pin
 * mode (para__topology_plan_make()); it never looks at the machine itself, so
 * tests build it from synthetic topologies. Only para__topology_pin_thread()
 * (and its wrapper para__topology_pin_self()) touches the OS. The placement
 * rules, the distance and the victim order are explained at the top of
 * topology.c.
 *
 * Layout of the victim tables (m = n_workers - 1 entries per worker):
 *
 *   victims[w * m + k], k = 0..m-1   the other workers, nearest first
 *   level_end[w * m + k]             end (exclusive, an index k' in 0..m of
 *                                    the same row) of the distance level
 *                                    that contains position k
 *
 * A level is a maximal run of victims at the same distance from w; levels
 * partition the row, and a scheduler walks them with
 *
 *     for (unsigned k = 0; k < m; k = level_end[w * m + k])
 *         ... victims[w * m + k .. w * m + level_end[w * m + k]) ...
 *
 * picking at random inside a level but never across one.
 * para__topology_shuffle_levels() reorders victims inside levels and leaves
 * level_end unchanged, so the same walk stays valid after it.
 */
#ifndef PARA_TOPOLOGY_H
#define PARA_TOPOLOGY_H

#include <pthread.h>
#include <stdint.h>

#include <hwloc.h>

#include "para/errors.h"
#include "para/export.h"

/** How workers are bound to processing units. */
typedef enum para__pin_mode {
    /** One worker per core, bound to all PUs (hardware threads) of it. */
    PARA__PIN_CORES,
    /** One worker per PU, bound to that PU alone; the cores are filled
     * breadth-first (first PU of every core, then the second, ...). */
    PARA__PIN_PUS,
    /** Workers are not bound: NULL cpusets, no locality, one victim level. */
    PARA__PIN_NONE
} para__pin_mode;

/** Upper bound on n_workers (the victim tables hold n^2 entries). */
#define PARA__TOPOLOGY_MAX_WORKERS 65536u

/**
 * A placement and steal-order plan for n_workers workers.
 *
 * Every array is allocated by para__topology_plan_make() and owned by the
 * plan until para__topology_plan_free(). Arrays are never NULL after a
 * successful make (the victim tables have at least one slot even when
 * n_workers is 1). After make the plan is read-only and may be read by any
 * thread, except that para__topology_shuffle_levels() rewrites the row of
 * worker w, which only w's owner may read or shuffle.
 */
typedef struct para__topology_plan {
    unsigned n_workers;
    /** Per worker: the cpuset to pin to (NULL entries with PIN_NONE).
     * Owned; OS-indexed like every hwloc bitmap. */
    hwloc_bitmap_t *cpuset;
    /** Per worker: the OS index of the first PU of its cpuset, or -1 with
     * PIN_NONE (for logs and para-info). */
    int *os_pu;
    /** Victim order, n_workers * (n_workers - 1) entries; see the top of
     * this header. */
    unsigned *victims;
    /** Level boundaries, same shape as victims; see the top of this
     * header. */
    unsigned *level_end;
    /** Per worker: the OS index of its local NUMA node, or -1 with
     * PIN_NONE or when no NUMA node covers its cpuset. */
    int *numa;
} para__topology_plan;

/**
 * @brief Plan the placement and the steal order of the workers.
 *
 * Cores (PIN_CORES, PIN_NONE) or PUs (PIN_PUS) are taken in hwloc logical
 * order, restricted to the topology's allowed cpuset; worker i gets slot
 * i % n_slots, so extra workers wrap around onto cores already used.
 *
 * @param[in] topo A loaded topology; borrowed for the call only (the plan
 *            keeps no pointer into it).
 * @param[in] n_workers Number of workers, or 0 for one per core
 *            (PIN_CORES, PIN_NONE) or one per PU (PIN_PUS). At most
 *            PARA__TOPOLOGY_MAX_WORKERS.
 * @param[in] mode Pinning mode.
 * @param[out] out The plan; zeroed first, so that on failure it holds
 *             nothing and para__topology_plan_free() on it is harmless.
 * @return 0 on success.
 * @return PARA_EINVAL if topo or out is NULL, mode is not a
 *         para__pin_mode, n_workers exceeds PARA__TOPOLOGY_MAX_WORKERS, or
 *         the topology has no allowed PU.
 * @return PARA_ENOMEM if an allocation failed (nothing is leaked).
 * @note Any thread; does not touch the machine, only @p topo (which hwloc
 *       allows to be read by several threads at once).
 */
PARA_NODISCARD int para__topology_plan_make(hwloc_topology_t topo,
                                            unsigned n_workers,
                                            para__pin_mode mode,
                                            para__topology_plan *out);

/**
 * @brief Free everything a plan owns and zero it.
 * @param[in,out] plan A plan from para__topology_plan_make(), a zeroed one,
 *                or NULL (no-op). Calling it twice is harmless.
 * @note No other thread may use the plan any more.
 */
void para__topology_plan_free(para__topology_plan *plan);

/**
 * @brief Shuffle every distance level of worker @p w's victim row in place.
 *
 * Fisher-Yates inside each level with para__rand(); the set of victims in
 * each level and level_end are unchanged. Does nothing if plan or rng is
 * NULL or w is out of range.
 *
 * @param[in,out] plan The plan; only row @p w is written.
 * @param[in] w The worker whose row is shuffled.
 * @param[in,out] rng xorshift64* state (para__rand()); a zero state, which
 *                xorshift never leaves, is replaced by a fixed non-zero one.
 * @note Owner-only: call it from worker @p w's thread (or before the
 *       workers start); no other thread may read row @p w meanwhile.
 */
void para__topology_shuffle_levels(para__topology_plan *plan, unsigned w,
                                   uint64_t *rng);

/**
 * @brief Bind @p thread to plan->cpuset[w].
 *
 * A NULL cpuset (PIN_NONE) is a successful no-op. A refusal by the OS is
 * logged as a warning (level 1) and reported, but the thread keeps running
 * unbound: failing to pin must never be fatal to the caller.
 *
 * @param[in] topo The topology the plan was made from; it must describe
 *            this system (hwloc_topology_is_thissystem()): with a synthetic
 *            or XML topology hwloc's binding silently does nothing, so it is
 *            refused here.
 * @param[in] plan The plan.
 * @param[in] w The plan slot whose cpuset @p thread gets.
 * @param[in] thread The thread: the caller itself, or a worker thread
 *            the caller re-binds before waking it (a thread pinned to a
 *            busy core would first have to run there to move itself).
 * @return 0 on success or when there is nothing to bind.
 * @return PARA_EINVAL if topo or plan is NULL, or w >= plan->n_workers.
 * @return PARA_EINVAL too, with a warning saying why, if the binding could
 *         not be done: topology not of this system, binding not supported,
 *         not permitted, or a PU not available to the process.
 * @note Any thread; several may call it at once, for different threads.
 */
int para__topology_pin_thread(hwloc_topology_t topo,
                              const para__topology_plan *plan, unsigned w,
                              pthread_t thread);

/** para__topology_pin_thread() for the calling thread. */
static inline int para__topology_pin_self(hwloc_topology_t topo,
                                          const para__topology_plan *plan,
                                          unsigned w)
{
    return para__topology_pin_thread(topo, plan, w, pthread_self());
}

/**
 * @brief Place [addr, addr + len) on worker @p w's NUMA node (whole pages:
 *        pass page-aligned memory that holds nothing of other workers).
 *
 * Pages already touched are migrated. Nothing happens when the worker has
 * no NUMA node (PIN_NONE), the machine has only one, or the topology is
 * not this system.
 * @return 0 on success or when there is nothing to do; PARA_EINVAL if an
 *         argument is wrong or the OS refused (logged at debug level: the
 *         memory stays where it is, which is never fatal).
 * @note Any thread.
 */
int para__topology_bind_memory(hwloc_topology_t topo,
                               const para__topology_plan *plan, unsigned w,
                               void *addr, size_t len);

/** Most tasks one steal takes from a worker on another NUMA node. */
#define PARA__REMOTE_STEAL_MAX 8u

/**
 * @brief How many tasks thief @p thief should take from @p victim, whose
 *        deque holds about @p victim_size tasks.
 *
 * One from a worker on the same NUMA node (or when either node is
 * unknown): the next steal is cheap. From another NUMA node, half of what
 * the victim holds, at most PARA__REMOTE_STEAL_MAX: work moves between
 * nodes in larger pieces, so a thief does not cross the interconnect for
 * every task and the batches it takes are processed where they now are.
 * @note Any thread; reads only the plan's numa array.
 */
static inline unsigned
para__topology_steal_count(const para__topology_plan *plan, unsigned thief,
                           unsigned victim, size_t victim_size)
{
    int a = plan->numa[thief], b = plan->numa[victim];
    if (a < 0 || b < 0 || a == b || victim_size < 2)
        return 1;
    size_t half = victim_size / 2;
    return half < PARA__REMOTE_STEAL_MAX ? (unsigned)half
                                         : PARA__REMOTE_STEAL_MAX;
}

#endif /* PARA_TOPOLOGY_H */
