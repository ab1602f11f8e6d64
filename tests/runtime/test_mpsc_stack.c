/*
 * The MPSC Treiber stack (runtime/mpsc_stack.h): sequential semantics
 * (LIFO take_all, FIFO take_all_fifo, empty tests), then producers against
 * one taker: every item pushed is taken exactly once, with the payload its
 * producer wrote before the push (a wrong memory order shows as a bad
 * payload, or as a race under TSan, where CI runs this file).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "mpsc_stack.h"

struct item {
    struct item *next;
    uint64_t payload; /* plain: written by the producer before the push */
    int taken;        /* plain: written by the taker only */
};

PARA__MPSC_STACK_DEFINE(item_stack, struct item, next)

static void test_sequential(void **state)
{
    (void)state;
    item_stack s;
    item_stack_init(&s);
    assert_true(item_stack_empty(&s));
    assert_true(item_stack_peek_empty(&s));
    assert_null(item_stack_take_all(&s));
    assert_null(item_stack_take_all_fifo(&s));
    struct item it[5];
    for (int i = 0; i < 5; i++) {
        it[i].payload = (uint64_t)i;
        item_stack_push(&s, &it[i]);
    }
    assert_false(item_stack_empty(&s));
    assert_false(item_stack_peek_empty(&s));
    struct item *l = item_stack_take_all(&s);
    assert_true(item_stack_empty(&s));
    for (int i = 4; i >= 0; i--, l = l->next) /* newest first */
        assert_ptr_equal(l, &it[i]);
    assert_null(l);
    for (int i = 0; i < 5; i++)
        item_stack_push(&s, &it[i]);
    l = item_stack_take_all_fifo(&s);
    for (int i = 0; i < 5; i++, l = l->next) /* arrival order */
        assert_ptr_equal(l, &it[i]);
    assert_null(l);
    assert_true(item_stack_empty(&s));
}

#define PRODUCERS 3
#define PER_PRODUCER 100000

struct shared {
    item_stack s;
    struct item *items;
    atomic_int producing;
};

struct producer {
    struct shared *sh;
    int id;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        struct item *it = &p->sh->items[p->id * PER_PRODUCER + i];
        it->payload = ((uint64_t)p->id << 32) | (uint64_t)i;
        item_stack_push(&p->sh->s, it);
    }
    atomic_fetch_sub_explicit(&p->sh->producing, 1, memory_order_release);
    return NULL;
}

static void test_producers_one_taker(void **state)
{
    (void)state;
    struct shared sh;
    item_stack_init(&sh.s);
    size_t n = (size_t)PRODUCERS * PER_PRODUCER;
    sh.items = calloc(n, sizeof *sh.items);
    assert_non_null(sh.items);
    atomic_init(&sh.producing, PRODUCERS);
    pthread_t th[PRODUCERS];
    struct producer pr[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        pr[i] = (struct producer){&sh, i};
        assert_int_equal(pthread_create(&th[i], NULL, produce, &pr[i]), 0);
    }
    size_t got = 0, bad = 0;
    for (;;) {
        bool last =
            atomic_load_explicit(&sh.producing, memory_order_acquire) == 0;
        /* Per producer, items must arrive in push order. */
        for (struct item *l = item_stack_take_all_fifo(&sh.s); l != NULL;
             l = l->next) {
            size_t idx = (size_t)(l - sh.items);
            uint64_t want = ((uint64_t)(idx / PER_PRODUCER) << 32) |
                            (uint64_t)(idx % PER_PRODUCER);
            if (idx >= n || l->payload != want)
                bad++;
            l->taken++;
            got++;
        }
        if (last)
            break;
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(bad, 0);
    assert_int_equal(got, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sh.items[i].taken, 1);
    assert_true(item_stack_empty(&sh.s));
    free(sh.items);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequential),
        cmocka_unit_test(test_producers_one_taker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
