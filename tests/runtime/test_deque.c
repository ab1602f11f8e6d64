/*
 * Sequential semantics of the Chase-Lev deque (runtime/deque.c): LIFO pop at
 * the bottom, FIFO steal at the top, empty results, growth from the smallest
 * capacity (including growth while the live range wraps around the ring),
 * the size estimate, and fini on grown deques (leaks show under ASan).
 * Concurrent behaviour is covered by test_deque_stress.c.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime in util.h */
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "deque.h"
#include "para/errors.h"

/* Items are addresses of distinct array slots (never NULL, never 1). */
#define N_ITEMS 5000
static int slots[N_ITEMS];
#define ITEM(i) ((void *)&slots[(i)])

static void test_init_empty(void **state)
{
    (void)state;
    para__deque q;
    assert_int_equal(para__deque_init(&q, 1), 0);
    assert_int_equal(para__deque_size_estimate(&q), 0);
    assert_null(para__deque_owner_pop(&q));
    assert_ptr_equal(para__deque_steal(&q), PARA__DEQUE_EMPTY);
    /* An empty pop must leave the deque consistent (bottom restored). */
    assert_int_equal(para__deque_size_estimate(&q), 0);
    assert_null(para__deque_owner_pop(&q));
    assert_null(para__deque_owner_pop(&q));
    assert_int_equal(para__deque_size_estimate(&q), 0);
    assert_int_equal(para__deque_owner_push(&q, ITEM(0)), 0);
    assert_int_equal(para__deque_size_estimate(&q), 1);
    assert_ptr_equal(para__deque_owner_pop(&q), ITEM(0));
    para__deque_fini(&q);
}

static void test_empty_constants(void **state)
{
    (void)state;
    assert_ptr_equal(PARA__DEQUE_EMPTY, NULL);
    assert_ptr_not_equal(PARA__DEQUE_ABORT, NULL);
}

static void test_pop_lifo(void **state)
{
    (void)state;
    para__deque q;
    assert_int_equal(para__deque_init(&q, 3), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(para__deque_owner_push(&q, ITEM(i)), 0);
    assert_int_equal(para__deque_size_estimate(&q), 5);
    for (int i = 4; i >= 0; i--) {
        assert_ptr_equal(para__deque_owner_pop(&q), ITEM(i));
        assert_int_equal(para__deque_size_estimate(&q), i);
    }
    assert_null(para__deque_owner_pop(&q));
    assert_ptr_equal(para__deque_steal(&q), PARA__DEQUE_EMPTY);
    para__deque_fini(&q);
}

static void test_steal_fifo(void **state)
{
    (void)state;
    para__deque q;
    assert_int_equal(para__deque_init(&q, 3), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(para__deque_owner_push(&q, ITEM(i)), 0);
    for (int i = 0; i < 6; i++) {
        /* Single-threaded: a steal cannot lose a race. */
        assert_ptr_equal(para__deque_steal(&q), ITEM(i));
        assert_int_equal(para__deque_size_estimate(&q), 5 - i);
    }
    assert_ptr_equal(para__deque_steal(&q), PARA__DEQUE_EMPTY);
    assert_null(para__deque_owner_pop(&q));
    para__deque_fini(&q);
}

static void test_mixed_ends(void **state)
{
    (void)state;
    para__deque q;
    assert_int_equal(para__deque_init(&q, 2), 0);
    for (int i = 1; i <= 5; i++)
        assert_int_equal(para__deque_owner_push(&q, ITEM(i)), 0);
    assert_ptr_equal(para__deque_steal(&q), ITEM(1));
    assert_ptr_equal(para__deque_owner_pop(&q), ITEM(5));
    assert_ptr_equal(para__deque_steal(&q), ITEM(2));
    assert_ptr_equal(para__deque_owner_pop(&q), ITEM(4));
    assert_int_equal(para__deque_size_estimate(&q), 1);
    /* Last item taken by the owner. */
    assert_ptr_equal(para__deque_owner_pop(&q), ITEM(3));
    assert_null(para__deque_owner_pop(&q));
    assert_ptr_equal(para__deque_steal(&q), PARA__DEQUE_EMPTY);

    /* Last item taken by a thief, then the deque is reused. */
    assert_int_equal(para__deque_owner_push(&q, ITEM(6)), 0);
    assert_ptr_equal(para__deque_steal(&q), ITEM(6));
    assert_null(para__deque_owner_pop(&q));
    assert_int_equal(para__deque_size_estimate(&q), 0);
    assert_int_equal(para__deque_owner_push(&q, ITEM(7)), 0);
    assert_int_equal(para__deque_owner_push(&q, ITEM(8)), 0);
    assert_ptr_equal(para__deque_owner_pop(&q), ITEM(8));
    assert_ptr_equal(para__deque_steal(&q), ITEM(7));
    assert_ptr_equal(para__deque_steal(&q), PARA__DEQUE_EMPTY);
    para__deque_fini(&q);
}

static void test_push_pop_one_repeatedly(void **state)
{
    (void)state;
    /* Indices advance past many wraps of a 2-slot ring. */
    para__deque q;
    assert_int_equal(para__deque_init(&q, 1), 0);
    for (int i = 0; i < N_ITEMS; i++) {
        assert_int_equal(para__deque_owner_push(&q, ITEM(i)), 0);
        if (i % 2)
            assert_ptr_equal(para__deque_owner_pop(&q), ITEM(i));
        else
            assert_ptr_equal(para__deque_steal(&q), ITEM(i));
        assert_int_equal(para__deque_size_estimate(&q), 0);
    }
    assert_null(para__deque_owner_pop(&q));
    para__deque_fini(&q);
}

static void test_growth_pop(void **state)
{
    (void)state;
    para__deque q;
    assert_int_equal(para__deque_init(&q, 1), 0); /* capacity 2 */
    for (int i = 0; i < N_ITEMS; i++) {
        assert_int_equal(para__deque_owner_push(&q, ITEM(i)), 0);
        assert_int_equal(para__deque_size_estimate(&q), i + 1);
    }
    for (int i = N_ITEMS - 1; i >= 0; i--)
        assert_ptr_equal(para__deque_owner_pop(&q), ITEM(i));
    assert_null(para__deque_owner_pop(&q));
    assert_ptr_equal(para__deque_steal(&q), PARA__DEQUE_EMPTY);
    para__deque_fini(&q);
}

static void test_growth_steal(void **state)
{
    (void)state;
    para__deque q;
    assert_int_equal(para__deque_init(&q, 1), 0);
    for (int i = 0; i < N_ITEMS; i++)
        assert_int_equal(para__deque_owner_push(&q, ITEM(i)), 0);
    for (int i = 0; i < N_ITEMS; i++)
        assert_ptr_equal(para__deque_steal(&q), ITEM(i));
    assert_ptr_equal(para__deque_steal(&q), PARA__DEQUE_EMPTY);
    assert_null(para__deque_owner_pop(&q));
    para__deque_fini(&q);
}

static void test_growth_wrapped(void **state)
{
    (void)state;
    /* Move top away from 0 so that the live range wraps around the ring when
     * the array grows: the copy must preserve the order. */
    para__deque q;
    assert_int_equal(para__deque_init(&q, 2), 0); /* capacity 4 */
    int next_in = 0, next_out = 0;
    for (int round = 0; round < 7; round++) {
        /* push 3, steal 2: the size grows by one per round with top moving */
        for (int k = 0; k < 3; k++)
            assert_int_equal(para__deque_owner_push(&q, ITEM(next_in++)), 0);
        for (int k = 0; k < 2; k++)
            assert_ptr_equal(para__deque_steal(&q), ITEM(next_out++));
    }
    assert_int_equal(para__deque_size_estimate(&q), next_in - next_out);
    /* Grow several times more with the range wrapped. */
    while (next_in < 1000)
        assert_int_equal(para__deque_owner_push(&q, ITEM(next_in++)), 0);
    assert_int_equal(para__deque_size_estimate(&q), next_in - next_out);
    /* Steal half in FIFO order, pop the rest in LIFO order. */
    int mid = (next_out + next_in) / 2;
    while (next_out < mid)
        assert_ptr_equal(para__deque_steal(&q), ITEM(next_out++));
    for (int i = next_in - 1; i >= mid; i--)
        assert_ptr_equal(para__deque_owner_pop(&q), ITEM(i));
    assert_null(para__deque_owner_pop(&q));
    assert_ptr_equal(para__deque_steal(&q), PARA__DEQUE_EMPTY);
    assert_int_equal(para__deque_size_estimate(&q), 0);
    para__deque_fini(&q);
}

static void test_sawtooth(void **state)
{
    (void)state;
    /* Fill and drain repeatedly from both ends at growing sizes; a model
     * deque (plain array) gives the expected answers. */
    para__deque q;
    assert_int_equal(para__deque_init(&q, 1), 0);
    static int model[N_ITEMS];
    int lo = 0, hi = 0, next = 0;
    unsigned rng = 12345u;
    for (int iter = 0; iter < 20000; iter++) {
        rng = rng * 1103515245u + 12345u;
        unsigned op = (rng >> 16) % 4;
        if (op <= 1 && hi < N_ITEMS) {
            model[hi++] = next;
            assert_int_equal(para__deque_owner_push(&q, ITEM(next)), 0);
            next = (next + 1) % N_ITEMS;
        } else if (op == 2) {
            void *got = para__deque_owner_pop(&q);
            if (hi == lo) {
                assert_null(got);
            } else {
                assert_ptr_equal(got, ITEM(model[--hi]));
            }
        } else {
            void *got = para__deque_steal(&q);
            if (hi == lo) {
                assert_ptr_equal(got, PARA__DEQUE_EMPTY);
            } else {
                assert_ptr_equal(got, ITEM(model[lo++]));
            }
        }
        if (lo == hi)
            lo = hi = 0; /* the model restarts; the deque just continues */
        assert_int_equal(para__deque_size_estimate(&q), hi - lo);
    }
    para__deque_fini(&q);
}

static void test_independent_deques(void **state)
{
    (void)state;
    para__deque a, b;
    assert_int_equal(para__deque_init(&a, 1), 0);
    assert_int_equal(para__deque_init(&b, 4), 0);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(para__deque_owner_push(&a, ITEM(i)), 0);
        assert_int_equal(para__deque_owner_push(&b, ITEM(1000 + i)), 0);
    }
    assert_int_equal(para__deque_size_estimate(&a), 100);
    assert_int_equal(para__deque_size_estimate(&b), 100);
    assert_ptr_equal(para__deque_steal(&a), ITEM(0));
    assert_ptr_equal(para__deque_steal(&b), ITEM(1000));
    assert_ptr_equal(para__deque_owner_pop(&a), ITEM(99));
    assert_ptr_equal(para__deque_owner_pop(&b), ITEM(1099));
    /* fini with items still inside is allowed (the items are not owned). */
    para__deque_fini(&a);
    para__deque_fini(&b);
}

static void test_fini_fresh(void **state)
{
    (void)state;
    for (unsigned lg = 1; lg <= 10; lg++) {
        para__deque q;
        assert_int_equal(para__deque_init(&q, lg), 0);
        para__deque_fini(&q);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_empty),
        cmocka_unit_test(test_empty_constants),
        cmocka_unit_test(test_pop_lifo),
        cmocka_unit_test(test_steal_fifo),
        cmocka_unit_test(test_mixed_ends),
        cmocka_unit_test(test_push_pop_one_repeatedly),
        cmocka_unit_test(test_growth_pop),
        cmocka_unit_test(test_growth_steal),
        cmocka_unit_test(test_growth_wrapped),
        cmocka_unit_test(test_sawtooth),
        cmocka_unit_test(test_independent_deques),
        cmocka_unit_test(test_fini_fresh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
