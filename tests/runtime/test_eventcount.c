/*
 * The eventcount (runtime/eventcount.c): a notify with nobody waiting is a
 * no-op that reports 0 waiters; a cancelled prepare leaves no waiter; a
 * notify between prepare and wait keeps the waiter awake; stop wakes a
 * waiter; a timed wait times out without a notify and ends early with
 * one; and a ping-pong of publishers and waiters never loses a wake-up
 * (a lost one hangs the test, which ctest's timeout turns into a failure).
 * CI runs this file under TSan.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "eventcount.h"

static void test_no_waiter(void **state)
{
    (void)state;
    para__eventcount ec;
    assert_int_equal(para__eventcount_init(&ec), 0);
    assert_int_equal(para__eventcount_notify(&ec, 1), 0);
    uint64_t key = para__eventcount_prepare(&ec);
    para__eventcount_cancel(&ec);
    assert_int_equal(para__eventcount_notify(&ec, 1), 0);
    /* A notify after prepare: wait returns at once. */
    key = para__eventcount_prepare(&ec);
    /* Waking nobody does nothing, even with a waiter. */
    assert_int_equal(para__eventcount_notify(&ec, 0), 0);
    assert_int_equal(atomic_load(&ec.epoch), 0);
    assert_int_equal(para__eventcount_notify(&ec, 4), 1);
    para__eventcount_wait(&ec, key, NULL);
    assert_int_equal(para__eventcount_notify(&ec, 1), 0);
    /* stop already set: wait returns at once. */
    _Atomic bool stop;
    atomic_init(&stop, true);
    key = para__eventcount_prepare(&ec);
    para__eventcount_wait(&ec, key, &stop);
    assert_int_equal(para__eventcount_notify(&ec, 1), 0);
    para__eventcount_fini(&ec);
}

#define ROUNDS 20000
#define WAITERS 2

struct shared {
    para__eventcount ec;
    _Atomic uint64_t work;     /* published by the main thread */
    _Atomic uint64_t consumed; /* taken by the waiters */
    _Atomic bool done;
};

static void *waiter(void *arg)
{
    struct shared *sh = arg;
    for (;;) {
        uint64_t w = atomic_load_explicit(&sh->work, memory_order_acquire);
        uint64_t c = atomic_load_explicit(&sh->consumed, memory_order_relaxed);
        if (c < w) {
            atomic_compare_exchange_strong_explicit(&sh->consumed, &c, c + 1,
                                                    memory_order_acq_rel,
                                                    memory_order_relaxed);
            continue;
        }
        if (atomic_load_explicit(&sh->done, memory_order_acquire))
            return NULL;
        uint64_t key = para__eventcount_prepare(&sh->ec);
        if (atomic_load_explicit(&sh->work, memory_order_seq_cst) >
                atomic_load_explicit(&sh->consumed, memory_order_seq_cst) ||
            atomic_load_explicit(&sh->done, memory_order_acquire)) {
            para__eventcount_cancel(&sh->ec);
            continue;
        }
        para__eventcount_wait(&sh->ec, key, &sh->done);
    }
}

static void test_no_lost_wakeup(void **state)
{
    (void)state;
    struct shared sh;
    assert_int_equal(para__eventcount_init(&sh.ec), 0);
    atomic_init(&sh.work, 0);
    atomic_init(&sh.consumed, 0);
    atomic_init(&sh.done, false);
    pthread_t th[WAITERS];
    for (int i = 0; i < WAITERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, waiter, &sh), 0);
    for (uint64_t r = 1; r <= ROUNDS; r++) {
        atomic_store_explicit(&sh.work, r, memory_order_seq_cst);
        para__eventcount_notify(&sh.ec, 1);
        /* Wait until a waiter took it: only a woken waiter can. */
        while (atomic_load_explicit(&sh.consumed, memory_order_acquire) < r)
            ;
    }
    atomic_store_explicit(&sh.done, true, memory_order_release);
    para__eventcount_notify_all(&sh.ec);
    for (int i = 0; i < WAITERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&sh.consumed), ROUNDS);
    para__eventcount_fini(&sh.ec);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct late {
    para__eventcount *ec;
    _Atomic bool *flag;
};

/* Set the flag and notify, 20 ms after starting. */
static void *late_notify(void *arg)
{
    struct late *l = arg;
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    atomic_store_explicit(l->flag, true, memory_order_seq_cst);
    para__eventcount_notify(l->ec, 1);
    return NULL;
}

static void test_timed_wait(void **state)
{
    (void)state;
    para__eventcount ec;
    assert_int_equal(para__eventcount_init(&ec), 0);
    /* Nobody notifies: false, after the timeout, and no waiter left. */
    uint64_t t0 = mono_ns();
    uint64_t key = para__eventcount_prepare(&ec);
    assert_false(para__eventcount_wait_ns(&ec, key, 30000000));
    assert_true(mono_ns() - t0 >= 30000000);
    assert_int_equal(para__eventcount_notify(&ec, 1), 0);
    /* A notify before the wait: true at once. */
    key = para__eventcount_prepare(&ec);
    assert_int_equal(para__eventcount_notify(&ec, 1), 1);
    assert_true(para__eventcount_wait_ns(&ec, key, 60000000000ull));
    /* A notify from another thread ends a 60 s wait early. */
    _Atomic bool flag;
    atomic_init(&flag, false);
    struct late l = {&ec, &flag};
    pthread_t th;
    t0 = mono_ns();
    assert_int_equal(pthread_create(&th, NULL, late_notify, &l), 0);
    bool woken = false;
    while (!atomic_load_explicit(&flag, memory_order_seq_cst)) {
        key = para__eventcount_prepare(&ec);
        if (atomic_load_explicit(&flag, memory_order_seq_cst)) {
            para__eventcount_cancel(&ec);
            break;
        }
        woken = para__eventcount_wait_ns(&ec, key, 60000000000ull);
    }
    pthread_join(th, NULL);
    assert_true(woken || atomic_load(&flag));
    assert_true(mono_ns() - t0 < 30000000000ull);
    assert_int_equal(para__eventcount_notify(&ec, 1), 0);
    para__eventcount_fini(&ec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_waiter),
        cmocka_unit_test(test_no_lost_wakeup),
        cmocka_unit_test(test_timed_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
