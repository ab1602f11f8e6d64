/*
 * Failure injection for the system calls para makes besides allocation:
 * pthread_create() and the hwloc calls that can fail (topology init and
 * load, bitmap allocation and operations, CPU and memory binding, bitmap
 * printing). tests/CMakeLists.txt links test_alloc_faults with
 * -Wl,--wrap=pthread_create,--wrap=hwloc_... so that para's calls (para is a
 * static library) land here; hwloc's own internal calls do not.
 *
 * When armed, the calls are counted and the target one fails (single mode)
 * or the target one and every later one (persistent mode), the way the
 * real call reports failure (pthread_create: EAGAIN; hwloc: -1 or NULL).
 *
 * Include in exactly one file of a test executable, after rel_alloc.h.
 */
#ifndef REL_SYSFAULT_H
#define REL_SYSFAULT_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <hwloc.h>

static atomic_bool sys_armed;
static atomic_bool sys_persistent;
static atomic_long sys_target, sys_calls, sys_injected;

static inline bool sys_inject(void)
{
    /* relaxed: as inject() in rel_alloc.h (armed before the threads that
     * call start, read after they are joined or synchronised with). */
    if (!atomic_load_explicit(&sys_armed, memory_order_relaxed))
        return false;
    long k = atomic_fetch_add_explicit(&sys_calls, 1, memory_order_relaxed) + 1;
    long t = atomic_load_explicit(&sys_target, memory_order_relaxed);
    bool fail = k == t || (k > t && atomic_load_explicit(&sys_persistent,
                                                         memory_order_relaxed));
    if (fail)
        atomic_fetch_add_explicit(&sys_injected, 1, memory_order_relaxed);
    return fail;
}

static inline void sys_arm(long k, bool persist)
{
    /* relaxed: see sys_inject(). */
    atomic_store_explicit(&sys_calls, 0, memory_order_relaxed);
    atomic_store_explicit(&sys_injected, 0, memory_order_relaxed);
    atomic_store_explicit(&sys_target, k, memory_order_relaxed);
    atomic_store_explicit(&sys_persistent, persist, memory_order_relaxed);
    atomic_store_explicit(&sys_armed, true, memory_order_relaxed);
}

static inline void sys_disarm(void)
{
    /* relaxed: see sys_inject(). */
    atomic_store_explicit(&sys_armed, false, memory_order_relaxed);
}

int __real_pthread_create(pthread_t *t, const pthread_attr_t *a,
                          void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a,
                          void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a,
                          void *(*fn)(void *), void *arg)
{
    return sys_inject() ? EAGAIN : __real_pthread_create(t, a, fn, arg);
}

/* One wrapper per hwloc call: its real name, arguments and failure value. */
#define REL_HWLOC_WRAP(ret, name, fail, params, args)                          \
    ret __real_##name params;                                                  \
    ret __wrap_##name params;                                                  \
    ret __wrap_##name params                                                   \
    {                                                                          \
        if (sys_inject()) {                                                    \
            errno = ENOMEM;                                                    \
            return fail;                                                       \
        }                                                                      \
        return __real_##name args;                                             \
    }

REL_HWLOC_WRAP(int, hwloc_topology_init, -1, (hwloc_topology_t * t), (t))
REL_HWLOC_WRAP(int, hwloc_topology_load, -1, (hwloc_topology_t t), (t))
REL_HWLOC_WRAP(hwloc_bitmap_t, hwloc_bitmap_alloc, NULL, (void), ())
REL_HWLOC_WRAP(hwloc_bitmap_t, hwloc_bitmap_dup, NULL, (hwloc_const_bitmap_t b),
               (b))
REL_HWLOC_WRAP(int, hwloc_bitmap_and, -1,
               (hwloc_bitmap_t r, hwloc_const_bitmap_t a,
                hwloc_const_bitmap_t b),
               (r, a, b))
REL_HWLOC_WRAP(int, hwloc_bitmap_only, -1, (hwloc_bitmap_t b, unsigned i),
               (b, i))
REL_HWLOC_WRAP(int, hwloc_set_cpubind, -1,
               (hwloc_topology_t t, hwloc_const_cpuset_t s, int f), (t, s, f))
REL_HWLOC_WRAP(int, hwloc_set_area_membind, -1,
               (hwloc_topology_t t, const void *p, size_t n,
                hwloc_const_bitmap_t s, hwloc_membind_policy_t pol, int f),
               (t, p, n, s, pol, f))
REL_HWLOC_WRAP(int, hwloc_bitmap_list_asprintf, -1,
               (char **s, hwloc_const_bitmap_t b), (s, b))

#endif /* REL_SYSFAULT_H */
