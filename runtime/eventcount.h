/*
 * Eventcount: lets threads that found no work sleep without missing a
 * wake-up, while a thread that publishes work pays one atomic RMW and no
 * system call when nobody sleeps.
 *
 * Contract (waiter side, any number of waiters):
 *   key = para__eventcount_prepare(ec);   announce: "about to sleep"
 *   if (work is visible)                   re-check every place work can
 *       para__eventcount_cancel(ec);       appear, after prepare()
 *   else
 *       para__eventcount_wait(ec, key, &stop);
 * Publisher side (any thread): publish the work (a release or seq_cst
 * store or RMW), then para__eventcount_notify(ec, n) or _notify_all(ec).
 * A waiter sleeps only while no notify happened since its prepare(), and
 * while *stop (read with acquire) is false.
 *
 * Memory orders, once for every user:
 *   prepare   relaxed load of the epoch (compared again under the lock,
 *             where it is written), then a seq_cst RMW on `waiters`.
 *   notify    seq_cst RMW (fetch_add 0) on `waiters`: both RMWs are in the
 *             counter's single modification order. If the publisher's
 *             comes first, the waiter's RMW reads from it and acquires the
 *             publication, so the waiter's re-check sees the work; if the
 *             waiter's comes first, the publisher reads a non-zero count and
 *             takes the lock to bump the epoch and signal. Either way no
 *             wake-up is lost. The epoch is only written under `lock`, so
 *             it needs nothing stronger than relaxed.
 *   cancel    relaxed decrement: a stale count costs one spurious notify.
 *
 * Tests: tests/runtime/test_eventcount.c (no lost wake-up between a
 * publisher and waiters; notify with nobody waiting takes no lock; timed
 * waits time out, or end early on a notify; run under TSan in CI).
 */
#ifndef PARA_EVENTCOUNT_H
#define PARA_EVENTCOUNT_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

typedef struct para__eventcount {
    alignas(PARA_CACHELINE) _Atomic uint32_t waiters; /* about to / asleep */
    _Atomic uint64_t epoch;                           /* bumped by notify */
    pthread_mutex_t lock;
    pthread_cond_t cond;
} para__eventcount;

/* 0, or an error number of pthread_mutex_init / pthread_cond_init. */
int para__eventcount_init(para__eventcount *ec);
void para__eventcount_fini(para__eventcount *ec);

/* Waiter: announce the intent to sleep; returns the key for wait(). */
uint64_t para__eventcount_prepare(para__eventcount *ec);
/* Waiter: work was found after prepare(); do not sleep. */
void para__eventcount_cancel(para__eventcount *ec);
/* Waiter: sleep until a notify after prepare() returned @p key, or until
 * *@p stop (may be NULL) is true. Returns after undoing prepare(). */
void para__eventcount_wait(para__eventcount *ec, uint64_t key,
                           const _Atomic bool *stop);
/* Waiter: as wait() without a stop flag, but for at most @p timeout_ns
 * (monotonic clock). Returns true if a notify came, false on timeout. */
bool para__eventcount_wait_ns(para__eventcount *ec, uint64_t key,
                              uint64_t timeout_ns);
void para__eventcount_notify_slow(para__eventcount *ec, uint32_t n,
                                  uint32_t waiting);
/* Publisher: wake up to @p n waiters (if any waits; no lock otherwise).
 * Returns the number of waiters seen (0: nothing was done). Inline: the
 * common case, nobody waiting, is one RMW on the hot path. */
static inline uint32_t para__eventcount_notify(para__eventcount *ec, uint32_t n)
{
    uint32_t waiting =
        atomic_fetch_add_explicit(&ec->waiters, 0, memory_order_seq_cst);
    if (waiting != 0 && n != 0)
        para__eventcount_notify_slow(ec, n, waiting);
    return waiting;
}
/* Wake every waiter, unconditionally (run end, cancel, abort). */
void para__eventcount_notify_all(para__eventcount *ec);

#endif /* PARA_EVENTCOUNT_H */
