/*
 * Small helpers shared by the reliability tests: runtimes with a given
 * configuration, a monotonic clock, and the time bounds the tests allow
 * (scaled by PARA_TEST_TIMEOUT_MULT, as the ctest timeouts are, so that
 * sanitizer and valgrind runs get more room).
 */
#ifndef REL_UTIL_H
#define REL_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "para.h"

static inline uint64_t rel_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* @p ms milliseconds, times PARA_TEST_TIMEOUT_MULT (default 1). */
static inline uint64_t rel_bound_ns(uint64_t ms)
{
    const char *m = getenv("PARA_TEST_TIMEOUT_MULT");
    long mult = m != NULL ? atol(m) : 1;
    if (mult < 1)
        mult = 1;
    return ms * 1000000u * (uint64_t)mult;
}

static inline void rel_quiet_log(int level, const char *msg, void *arg)
{
    (void)level;
    (void)msg;
    (void)arg;
}

/* A runtime with @p workers workers, unpinned (the tests share the machine
 * with others); NULL on failure. */
static inline para_runtime_t *rel_runtime(unsigned workers, size_t batch_items,
                                          unsigned max_batches)
{
    para_runtime_attr_t a;
    if (para_runtime_attr_init(&a) != 0)
        return NULL;
    a.workers = workers;
    a.batch_items = batch_items;
    a.max_batches = max_batches;
    a.pin = "none";
    para_runtime_t *rt = NULL;
    if (para_runtime_create(&rt, &a) != 0)
        return NULL;
    return rt;
}

#endif /* REL_UTIL_H */
