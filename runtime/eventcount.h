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
 *             where it is written), then a seq_cst RMW on `waiters`, then a
 *             seq_cst fence before the caller's re-check.
 *   notify    a seq_cst fence after the publication, then a relaxed load of
 *             `waiters` (no store: a busy runtime's publishers do not bounce
 *             the counter's line between cores). The two fences are in the
 *             single total order S. If the waiter's comes first, its
 *             increment (sequenced before it) is what the publisher's load
 *             (sequenced after its fence) reads or later: it sees a waiter
 *             and takes the lock to bump the epoch and signal. If the
 *             publisher's comes first, the waiter's re-check (after its
 *             fence) sees the publication. Either way no wake-up is lost
 *             (the store-buffering pattern, closed by fences on both
 *             sides). The epoch is only written under `lock`, so it needs
 *             nothing stronger than relaxed.
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

/* ThreadSanitizer does not model standalone fences (GCC refuses them under
 * -fsanitize=thread): there both halves use the older form, a seq_cst RMW
 * on `waiters` (fetch_add 0 on the publisher's side), whose single
 * modification order gives the same guarantee (see eventcount.c). */
#if defined(__SANITIZE_THREAD__)
#define PARA__EC_FENCES 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PARA__EC_FENCES 0
#endif
#endif
#ifndef PARA__EC_FENCES
#define PARA__EC_FENCES 1
#endif

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
 * Returns the number of waiters seen (0: nothing was done; also when
 * @p n is 0, which does nothing at all). Inline: the common case, nobody
 * waiting, is a fence and a load of a line nobody writes. */
static inline uint32_t para__eventcount_notify(para__eventcount *ec, uint32_t n)
{
    if (n == 0)
        return 0;
#if PARA__EC_FENCES
    /* seq_cst fence, relaxed load: see the memory orders above. */
    atomic_thread_fence(memory_order_seq_cst);
    uint32_t waiting = atomic_load_explicit(&ec->waiters, memory_order_relaxed);
#else
    /* seq_cst RMW: both RMWs are in the counter's single modification
     * order; whichever comes second reads (acquires) the other. */
    uint32_t waiting =
        atomic_fetch_add_explicit(&ec->waiters, 0, memory_order_seq_cst);
#endif
    if (waiting != 0)
        para__eventcount_notify_slow(ec, n, waiting);
    return waiting;
}
/* Wake every waiter, unconditionally (run end, cancel, abort). */
void para__eventcount_notify_all(para__eventcount *ec);

#endif /* PARA_EVENTCOUNT_H */
