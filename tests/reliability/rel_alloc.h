/*
 * Allocator wrappers for tests linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,
 * --wrap=aligned_alloc,--wrap=free (see tests/CMakeLists.txt). para is a
 * static library, so only calls from para's object files and from the test
 * itself land here; hwloc, libc and cmocka keep the real allocator.
 *
 * The wrappers keep a count of live blocks (a leak shows up as a count that
 * does not return to its value before the code under test ran), and when
 * armed they count allocations and make the target one fail (single mode)
 * or the target one and every later one (persistent mode).
 *
 * Include in exactly one file of a test executable. The __wrap_ and __real_
 * names are fixed by the linker; they are the one place where the rule
 * against leading underscores in names has to give way.
 */
#ifndef REL_ALLOC_H
#define REL_ALLOC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);
void *__real_aligned_alloc(size_t align, size_t size);
void __real_free(void *p);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
char *__wrap_strdup(const char *s);
void *__wrap_aligned_alloc(size_t align, size_t size);
void __wrap_free(void *p);

/* Armed: allocations are counted, and the target one fails. */
static atomic_bool armed;
static atomic_bool persistent; /* fail every allocation from the target on */
static atomic_long target;     /* 1-based index of the allocation to fail */
static atomic_long calls;      /* allocations counted while armed */
static atomic_long injected;   /* failures injected */
static atomic_long live;       /* blocks from the wrappers not yet freed */

static inline bool inject(void)
{
    /* relaxed: the test thread arms before starting work that allocates
     * (thread creation and para_run() order it before the workers' calls);
     * the counters are RMWs, so each allocation gets a distinct index. */
    if (!atomic_load_explicit(&armed, memory_order_relaxed))
        return false;
    long k = atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed) + 1;
    long t = atomic_load_explicit(&target, memory_order_relaxed);
    bool fail = k == t || (k > t && atomic_load_explicit(&persistent,
                                                         memory_order_relaxed));
    if (fail)
        /* relaxed: read by the test thread after the run (joined). */
        atomic_fetch_add_explicit(&injected, 1, memory_order_relaxed);
    return fail;
}

static inline void *counted(void *p)
{
    if (p != NULL)
        /* relaxed: a counter read after every thread that touched it has
         * been joined or synchronised with (para_run() returned). */
        atomic_fetch_add_explicit(&live, 1, memory_order_relaxed);
    return p;
}

void *__wrap_malloc(size_t size)
{
    return inject() ? NULL : counted(__real_malloc(size));
}

void *__wrap_calloc(size_t n, size_t size)
{
    return inject() ? NULL : counted(__real_calloc(n, size));
}

void *__wrap_realloc(void *p, size_t size)
{
    if (inject())
        return NULL; /* p stays valid, as with a real failure */
    void *q = __real_realloc(p, size);
    if (p == NULL)
        return counted(q);
    return q;
}

char *__wrap_strdup(const char *s)
{
    return inject() ? NULL : counted(__real_strdup(s));
}

void *__wrap_aligned_alloc(size_t align, size_t size)
{
    return inject() ? NULL : counted(__real_aligned_alloc(align, size));
}

void __wrap_free(void *p)
{
    if (p != NULL)
        /* relaxed: see counted(). */
        atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
    __real_free(p);
}

static inline void arm(long k, bool persist)
{
    /* relaxed: see inject(). */
    atomic_store_explicit(&calls, 0, memory_order_relaxed);
    atomic_store_explicit(&injected, 0, memory_order_relaxed);
    atomic_store_explicit(&target, k, memory_order_relaxed);
    atomic_store_explicit(&persistent, persist, memory_order_relaxed);
    atomic_store_explicit(&armed, true, memory_order_relaxed);
}

static inline void disarm(void)
{
    /* relaxed: see inject(). */
    atomic_store_explicit(&armed, false, memory_order_relaxed);
}

static inline long live_now(void)
{
    /* relaxed: see counted(). */
    return atomic_load_explicit(&live, memory_order_relaxed);
}

#endif /* REL_ALLOC_H */
