/*
 * Eventcount; see eventcount.h for the contract and the memory orders.
 */
#include <time.h>

#include "eventcount.h"

int para__eventcount_init(para__eventcount *ec)
{
    atomic_init(&ec->waiters, 0);
    atomic_init(&ec->epoch, 0);
    int rc = pthread_mutex_init(&ec->lock, NULL);
    if (rc != 0)
        return rc;
    /* Timed waits count on the monotonic clock (a clock step must not
     * stretch or cut them). */
    pthread_condattr_t attr;
    rc = pthread_condattr_init(&attr);
    if (rc == 0) {
        rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (rc == 0)
            rc = pthread_cond_init(&ec->cond, &attr);
        pthread_condattr_destroy(&attr);
    }
    if (rc != 0)
        pthread_mutex_destroy(&ec->lock);
    return rc;
}

void para__eventcount_fini(para__eventcount *ec)
{
    pthread_cond_destroy(&ec->cond);
    pthread_mutex_destroy(&ec->lock);
}

uint64_t para__eventcount_prepare(para__eventcount *ec)
{
    uint64_t key = atomic_load_explicit(&ec->epoch, memory_order_relaxed);
    atomic_fetch_add_explicit(&ec->waiters, 1, memory_order_seq_cst);
#if PARA__EC_FENCES
    /* seq_cst: the waiter's fence of the pattern in eventcount.h. */
    atomic_thread_fence(memory_order_seq_cst);
#endif
    return key;
}

void para__eventcount_cancel(para__eventcount *ec)
{
    atomic_fetch_sub_explicit(&ec->waiters, 1, memory_order_relaxed);
}

void para__eventcount_wait(para__eventcount *ec, uint64_t key,
                           const _Atomic bool *stop)
{
    pthread_mutex_lock(&ec->lock);
    while (atomic_load_explicit(&ec->epoch, memory_order_relaxed) == key &&
           (stop == NULL ||
            !atomic_load_explicit((_Atomic bool *)stop, memory_order_acquire)))
        pthread_cond_wait(&ec->cond, &ec->lock);
    pthread_mutex_unlock(&ec->lock);
    para__eventcount_cancel(ec);
}

bool para__eventcount_wait_ns(para__eventcount *ec, uint64_t key,
                              uint64_t timeout_ns)
{
    struct timespec at;
    clock_gettime(CLOCK_MONOTONIC, &at);
    uint64_t ns = (uint64_t)at.tv_nsec + timeout_ns % 1000000000u;
    at.tv_sec += (time_t)(timeout_ns / 1000000000u + ns / 1000000000u);
    at.tv_nsec = (long)(ns % 1000000000u);
    bool woken;
    pthread_mutex_lock(&ec->lock);
    for (;;) {
        woken = atomic_load_explicit(&ec->epoch, memory_order_relaxed) != key;
        if (woken || pthread_cond_timedwait(&ec->cond, &ec->lock, &at) != 0)
            break;
    }
    if (!woken)
        woken = atomic_load_explicit(&ec->epoch, memory_order_relaxed) != key;
    pthread_mutex_unlock(&ec->lock);
    para__eventcount_cancel(ec);
    return woken;
}

void para__eventcount_notify_slow(para__eventcount *ec, uint32_t n,
                                  uint32_t waiting)
{
    pthread_mutex_lock(&ec->lock);
    atomic_fetch_add_explicit(&ec->epoch, 1, memory_order_relaxed);
    if (n >= waiting)
        pthread_cond_broadcast(&ec->cond);
    else
        for (uint32_t i = 0; i < n; i++)
            pthread_cond_signal(&ec->cond);
    pthread_mutex_unlock(&ec->lock);
}

void para__eventcount_notify_all(para__eventcount *ec)
{
    pthread_mutex_lock(&ec->lock);
    atomic_fetch_add_explicit(&ec->epoch, 1, memory_order_relaxed);
    pthread_cond_broadcast(&ec->cond);
    pthread_mutex_unlock(&ec->lock);
}
