/*
 * Concurrent stress test of the Chase-Lev deque (runtime/deque.c): one owner
 * (the main thread) pushes and pops while three thieves steal. Every item is
 * a pointer to a distinct slot of an array; whoever takes an item bumps the
 * slot's counter, so at the end every counter must be exactly 1 (nothing lost,
 * nothing taken twice).
 *
 * Each slot also carries a payload written with plain stores by the owner
 * before the push and read with plain loads by the taker: the deque promises
 * to publish the item's contents, so a wrong memory order shows up as a bad
 * payload here or as a data race under ThreadSanitizer (CI runs this file
 * with PARA_SANITIZE=thread). The taker also writes a plain field, which TSan
 * reports if two threads ever take the same item.
 *
 * The deques start small (log2_capacity = 2) so they grow while thieves are
 * reading the old arrays.
 *
 * Size: 2,000,000 items in the bursty and ping-pong scenarios, 1,000,000 in
 * the flood (about 0.3 s in a normal build on 2 cores, 5 s under TSan).
 * PARA_STRESS_SCALE=<divisor> scales every scenario down (CI uses it under
 * TSan).
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime in util.h, sched_yield */
#endif

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "deque.h"
#include "para/errors.h"

#define N_THIEVES 3
#define PAYLOAD_KEY 0x9E3779B97F4A7C15ull

struct item {
    uint64_t payload;  /* plain: written by the owner before the push */
    int taker;         /* plain: written once by the thread that took it */
    atomic_uint taken; /* times taken; must end at exactly 1 */
};

struct shared {
    para__deque q;
    struct item *items;
    size_t n;
    atomic_bool done; /* owner finished and drained the deque */
    atomic_int ready; /* thieves started (start gate) */
    atomic_ulong bad; /* out-of-range pointers or wrong payloads */
};

struct thief {
    pthread_t thread;
    struct shared *sh;
    int id;
    unsigned long stolen;
    unsigned long aborts;
    void *final; /* result of one steal after the owner finished */
};

static size_t scaled(size_t n)
{
    const char *s = getenv("PARA_STRESS_SCALE");
    unsigned long div = 1;
    if (s != NULL && *s != '\0') {
        char *end;
        div = strtoul(s, &end, 10);
        if (*end != '\0' || div == 0)
            div = 1;
    }
    n /= div;
    return n < 1000 ? 1000 : n;
}

/* Account for one taken item; who: 0 for the owner, 1.. for thieves. */
static void take(struct shared *sh, void *p, int who)
{
    uintptr_t base = (uintptr_t)sh->items;
    uintptr_t u = (uintptr_t)p;
    if (u < base || u >= base + sh->n * sizeof(struct item) ||
        (u - base) % sizeof(struct item) != 0) {
        /* relaxed: a statistic read after the threads are joined. */
        atomic_fetch_add_explicit(&sh->bad, 1, memory_order_relaxed);
        return;
    }
    struct item *it = p;
    size_t idx = (size_t)(it - sh->items);
    if (it->payload != (idx ^ PAYLOAD_KEY))
        atomic_fetch_add_explicit(&sh->bad, 1, memory_order_relaxed);
    it->taker = who;
    /* relaxed: counted only; read after the threads are joined. */
    atomic_fetch_add_explicit(&it->taken, 1, memory_order_relaxed);
}

static void *thief_main(void *arg)
{
    struct thief *t = arg;
    struct shared *sh = t->sh;
    unsigned long empties = 0;
    atomic_fetch_add_explicit(&sh->ready, 1, memory_order_release);
    while (!atomic_load_explicit(&sh->done, memory_order_acquire)) {
        void *p = para__deque_steal(&sh->q);
        if (p == PARA__DEQUE_EMPTY) {
            /* Give the owner the core now and then (2-core CI boxes). */
            if (++empties % 32 == 0)
                sched_yield();
            continue;
        }
        if (p == PARA__DEQUE_ABORT) {
            t->aborts++;
            continue;
        }
        take(sh, p, t->id);
        t->stolen++;
    }
    t->final = para__deque_steal(&sh->q);
    return NULL;
}

struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

enum scenario {
    BURSTY,   /* bursts of pushes, fewer pops: the deque grows */
    PINGPONG, /* push one or two, pop them: races on the last item */
    FLOOD,    /* push everything at once (many growths), then drain */
};

/* No cmocka assertions while the thieves run: a longjmp out of the owner
 * would leave them spinning. Failures are counted and checked after join. */
static void owner_push(struct shared *sh, size_t i, unsigned long *failed)
{
    sh->items[i].payload = i ^ PAYLOAD_KEY;
    if (para__deque_owner_push(&sh->q, &sh->items[i]) != 0) {
        (*failed)++;
        /* Not pushed: account for it here so the totals still add up. */
        sh->items[i].payload = 0;
    }
}

/* Pops one item; returns false if the deque looked empty. */
static bool owner_pop(struct shared *sh, unsigned long *popped)
{
    void *p = para__deque_owner_pop(&sh->q);
    if (p == NULL)
        return false;
    take(sh, p, 0);
    (*popped)++;
    return true;
}

static void run_scenario(enum scenario sc, size_t n, uint64_t seed)
{
    struct shared *sh = malloc(sizeof *sh);
    assert_non_null(sh);
    sh->items = malloc(n * sizeof *sh->items);
    assert_non_null(sh->items);
    sh->n = n;
    for (size_t i = 0; i < n; i++) {
        sh->items[i].payload = 0;
        sh->items[i].taker = -1;
        atomic_init(&sh->items[i].taken, 0);
    }
    atomic_init(&sh->done, false);
    atomic_init(&sh->ready, 0);
    atomic_init(&sh->bad, 0);
    assert_int_equal(para__deque_init(&sh->q, 2), 0);

    struct thief thieves[N_THIEVES];
    for (int k = 0; k < N_THIEVES; k++) {
        thieves[k].sh = sh;
        thieves[k].id = k + 1;
        thieves[k].stolen = 0;
        thieves[k].aborts = 0;
        thieves[k].final = (void *)&thieves[k]; /* not EMPTY */
        assert_int_equal(
            pthread_create(&thieves[k].thread, NULL, thief_main, &thieves[k]),
            0);
    }
    /* acquire: pairs with the thieves' release increments (start gate). */
    while (atomic_load_explicit(&sh->ready, memory_order_acquire) < N_THIEVES)
        sched_yield();

    struct rng r = {seed};
    unsigned long popped = 0, push_failed = 0;
    size_t i = 0;
    switch (sc) {
    case BURSTY:
        while (i < n) {
            uint64_t x = rng_next(&r);
            size_t burst = (x % 97 == 0) ? 2048 + x % 4096 : 1 + x % 64;
            for (size_t k = 0; k < burst && i < n; k++)
                owner_push(sh, i++, &push_failed);
            size_t pops = (size_t)(rng_next(&r) % (burst + 1));
            for (size_t k = 0; k < pops; k++)
                if (!owner_pop(sh, &popped))
                    break;
        }
        break;
    case PINGPONG:
        for (unsigned long iter = 0; i < n; iter++) {
            size_t burst = 1 + (size_t)(rng_next(&r) % 2);
            for (size_t k = 0; k < burst && i < n; k++)
                owner_push(sh, i++, &push_failed);
            /* Now and then let the thieves run with items in the deque, so
             * that they get some even when all threads share one core. */
            if (iter % 512 == 0)
                sched_yield();
            while (owner_pop(sh, &popped)) {
            }
        }
        break;
    case FLOOD:
        while (i < n) {
            size_t burst = n / 4 + 1;
            for (size_t k = 0; k < burst && i < n; k++)
                owner_push(sh, i++, &push_failed);
            /* Pop a third of the burst while the thieves eat the top. */
            for (size_t k = 0; k < burst / 3; k++)
                if (!owner_pop(sh, &popped))
                    break;
        }
        break;
    }
    /* Drain: after an empty pop the deque stays empty (no more pushes). */
    while (owner_pop(sh, &popped)) {
    }
    int64_t left = para__deque_size_estimate(&sh->q);
    /* release: pairs with the thieves' acquire load of done. */
    atomic_store_explicit(&sh->done, true, memory_order_release);

    unsigned long stolen = 0, aborts = 0;
    for (int k = 0; k < N_THIEVES; k++) {
        assert_int_equal(pthread_join(thieves[k].thread, NULL), 0);
        stolen += thieves[k].stolen;
        aborts += thieves[k].aborts;
    }
    assert_int_equal(push_failed, 0);
    assert_int_equal(left, 0);
    for (int k = 0; k < N_THIEVES; k++)
        assert_ptr_equal(thieves[k].final, PARA__DEQUE_EMPTY);
    assert_null(para__deque_owner_pop(&sh->q));

    /* relaxed: the threads are joined. */
    assert_int_equal(atomic_load_explicit(&sh->bad, memory_order_relaxed), 0);
    size_t missing = 0, doubled = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned c =
            atomic_load_explicit(&sh->items[k].taken, memory_order_relaxed);
        if (c == 0)
            missing++;
        else if (c > 1)
            doubled++;
    }
    if (missing != 0 || doubled != 0)
        print_error("%zu items lost, %zu taken more than once (of %zu)\n",
                    missing, doubled, n);
    assert_int_equal(missing, 0);
    assert_int_equal(doubled, 0);
    assert_int_equal(popped + stolen, n);
    /* The thieves really competed with the owner. */
    assert_true(stolen > 0);
    print_message("    n=%zu popped=%lu stolen=%lu aborts=%lu\n", n, popped,
                  stolen, aborts);

    para__deque_fini(&sh->q);
    free(sh->items);
    free(sh);
}

static void test_stress_bursty(void **state)
{
    (void)state;
    run_scenario(BURSTY, scaled(2000000), 0x1234567ull);
}

static void test_stress_pingpong(void **state)
{
    (void)state;
    run_scenario(PINGPONG, scaled(2000000), 0xABCDEFull);
}

static void test_stress_flood(void **state)
{
    (void)state;
    run_scenario(FLOOD, scaled(1000000), 0x5EEDull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress_bursty),
        cmocka_unit_test(test_stress_pingpong),
        cmocka_unit_test(test_stress_flood),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
