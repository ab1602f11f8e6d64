/*
 * Chase–Lev deque; see deque.h for the algorithm, its references and the
 * owner/thief contract. Memory orders follow Lê et al. 2013, figure 1; each
 * is justified where it is used.
 */
#include "deque.h"

#include <stdlib.h>

#include "para/errors.h"

static para__deque_array *array_new(size_t capacity)
{
    para__deque_array *a =
        malloc(sizeof *a + capacity * sizeof(_Atomic(void *)));
    if (a == NULL)
        return NULL;
    a->mask = capacity - 1;
    a->retired = NULL;
    for (size_t i = 0; i < capacity; i++)
        atomic_init(&a->slots[i], NULL);
    return a;
}

int para__deque_init(para__deque *q, unsigned log2_capacity)
{
    para__deque_array *a = array_new((size_t)1 << log2_capacity);
    if (a == NULL)
        return PARA_ENOMEM;
    atomic_init(&q->top, 0);
    atomic_init(&q->bottom, 0);
    atomic_init(&q->array, a);
    return 0;
}

void para__deque_fini(para__deque *q)
{
    /* relaxed: fini's caller guarantees no concurrent user (joined threads). */
    para__deque_array *a =
        atomic_load_explicit(&q->array, memory_order_relaxed);
    while (a != NULL) {
        para__deque_array *older = a->retired;
        free(a);
        a = older;
    }
}

/* Owner only: copy the live range [t, b) into an array twice the size. */
static para__deque_array *grow(para__deque *q, para__deque_array *a, int64_t t,
                               int64_t b)
{
    para__deque_array *bigger = array_new((a->mask + 1) * 2);
    if (bigger == NULL)
        return NULL;
    for (int64_t i = t; i < b; i++) {
        /* relaxed: slots are only published through bottom / array below. */
        void *item = atomic_load_explicit(&a->slots[i & (int64_t)a->mask],
                                          memory_order_relaxed);
        atomic_store_explicit(&bigger->slots[i & (int64_t)bigger->mask], item,
                              memory_order_relaxed);
    }
    bigger->retired = a;
    /* release: publish the copied slots before thieves can load the new
     * array; pairs with the acquire load of array in para__deque_steal(). */
    atomic_store_explicit(&q->array, bigger, memory_order_release);
    return bigger;
}

int para__deque_owner_push(para__deque *q, void *item)
{
    /* relaxed: bottom is owner-written, and we are the owner. */
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed);
    /* acquire: see thieves' progress on top so that we never overwrite a slot
     * a thief is about to take; pairs with the CAS on top in steal. */
    int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);
    /* relaxed: array is owner-written. */
    para__deque_array *a =
        atomic_load_explicit(&q->array, memory_order_relaxed);
    if (b - t > (int64_t)a->mask) {
        a = grow(q, a, t, b);
        if (a == NULL)
            return PARA_ENOMEM;
    }
    /* relaxed: the slot is published by the release store of bottom. */
    atomic_store_explicit(&a->slots[b & (int64_t)a->mask], item,
                          memory_order_relaxed);
    /* release: publish the slot (and the item's contents) before the new
     * bottom; pairs with the acquire load of bottom in para__deque_steal(). */
    atomic_store_explicit(&q->bottom, b + 1, memory_order_release);
    return 0;
}

void *para__deque_owner_pop(para__deque *q)
{
    /* relaxed: owner-written fields read by the owner. */
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed) - 1;
    para__deque_array *a =
        atomic_load_explicit(&q->array, memory_order_relaxed);
    /* seq_cst store, then seq_cst load of top: the owner's half of the
     * Dekker pattern that decides who gets the last item; pairs with the
     * seq_cst loads of top then bottom in para__deque_steal(). (Lê et al.
     * use a relaxed store and a seq_cst fence; the seq_cst store compiles to
     * the same xchg on x86 and is modelled by ThreadSanitizer.) */
    atomic_store_explicit(&q->bottom, b, memory_order_seq_cst);
    int64_t t = atomic_load_explicit(&q->top, memory_order_seq_cst);
    if (t > b) {
        /* Empty: restore bottom (relaxed: no item is published). */
        atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
        return NULL;
    }
    /* relaxed: we own slot b unless t == b, settled by the CAS below. */
    void *item = atomic_load_explicit(&a->slots[b & (int64_t)a->mask],
                                      memory_order_relaxed);
    if (t == b) {
        /* Last item: race the thieves for it. seq_cst on success orders it
         * with the thieves' CAS; relaxed on failure, we just lost. */
        if (!atomic_compare_exchange_strong_explicit(
                &q->top, &t, t + 1, memory_order_seq_cst, memory_order_relaxed))
            item = NULL;
        /* relaxed: the deque is empty either way; nothing to publish. */
        atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
    }
    return item;
}

void *para__deque_steal(para__deque *q)
{
    /* seq_cst loads, top before bottom: the thief's half of the Dekker
     * pattern with para__deque_owner_pop() (seq_cst store of bottom, then
     * load of top). The load of bottom also acquires: it pairs with the
     * release store in para__deque_owner_push(), making the slot and the
     * item visible. */
    int64_t t = atomic_load_explicit(&q->top, memory_order_seq_cst);
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_seq_cst);
    if (t >= b)
        return PARA__DEQUE_EMPTY;
    /* acquire: pairs with the release store of array in grow(). */
    para__deque_array *a =
        atomic_load_explicit(&q->array, memory_order_acquire);
    /* relaxed: the slot was published by the acquire of bottom (or array);
     * if the owner overwrote it since, the CAS below fails. */
    void *item = atomic_load_explicit(&a->slots[t & (int64_t)a->mask],
                                      memory_order_relaxed);
    /* seq_cst on success: orders this take with the owner's CAS in pop;
     * relaxed on failure: we lost, the value is discarded. */
    if (!atomic_compare_exchange_strong_explicit(
            &q->top, &t, t + 1, memory_order_seq_cst, memory_order_relaxed))
        return PARA__DEQUE_ABORT;
    return item;
}

int64_t para__deque_size_estimate(const para__deque *q)
{
    /* relaxed: a heuristic snapshot; callers tolerate any stale value. */
    int64_t b =
        atomic_load_explicit(&((para__deque *)q)->bottom, memory_order_relaxed);
    int64_t t =
        atomic_load_explicit(&((para__deque *)q)->top, memory_order_relaxed);
    return b > t ? b - t : 0;
}
