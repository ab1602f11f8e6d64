/*
 * Chase–Lev work-stealing deque of pointers.
 *
 * Algorithm: D. Chase and Y. Lev, "Dynamic circular work-stealing deque"
 * (SPAA 2005), with the C11 memory orders of N. M. Lê, A. Pop, A. Cohen and
 * F. Zappa Nardelli, "Correct and efficient work-stealing for weak memory
 * models" (PPoPP 2013), figure 1, with one deviation: no standalone fences.
 * Push publishes `bottom` with a release store (instead of a release fence
 * and a relaxed store), and the Dekker step between pop and steal uses
 * seq_cst accesses to bottom and top (instead of seq_cst fences), as the
 * original Chase–Lev paper does. On x86 both compile to the same
 * instructions (mov, xchg), and ThreadSanitizer models them, where it does
 * not model atomic_thread_fence.
 *
 * Contract: exactly one thread, the owner, calls para__deque_owner_push() and
 * para__deque_owner_pop() (bottom end, LIFO). Any thread may call
 * para__deque_steal() (top end, FIFO). The array grows on demand; retired
 * arrays are kept on a list until para__deque_fini(), because a thief may
 * still be reading the old array (no reclamation scheme is needed that way,
 * and the memory is bounded by twice the largest size reached).
 *
 * Invariants: top <= bottom + 1 at all times; the live items are
 * [top, bottom); top only grows (by CAS), bottom is written only by the
 * owner.
 *
 * Tests: tests/runtime/test_deque.c (sequential semantics) and
 * tests/runtime/test_deque_stress.c (owner + thieves, every item taken once;
 * run under TSan in CI).
 */
#ifndef PARA_DEQUE_H
#define PARA_DEQUE_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct para__deque_array {
    size_t mask;                       /* capacity - 1 (power of two) */
    struct para__deque_array *retired; /* older arrays, freed at fini */
    _Atomic(void *) slots[];
} para__deque_array;

typedef struct para__deque {
    /* Thief-visible: top is CASed by thieves and the owner. */
    alignas(PARA_CACHELINE) _Atomic int64_t top;
    /* Owner-written, thief-read. */
    alignas(PARA_CACHELINE) _Atomic int64_t bottom;
    _Atomic(para__deque_array *) array;
} para__deque;

/* Result of para__deque_steal() besides an item pointer. */
#define PARA__DEQUE_EMPTY ((void *)0)
/* Lost a race with the owner or another thief: the deque may be non-empty. */
#define PARA__DEQUE_ABORT ((void *)1)

/* Returns 0 or PARA_ENOMEM. log2_capacity: initial size (>= 1). */
int para__deque_init(para__deque *q, unsigned log2_capacity);
/* Frees every array. No other thread may use the deque any more. */
void para__deque_fini(para__deque *q);

/* Owner only. Returns 0 or PARA_ENOMEM (growth failed; item not pushed). */
int para__deque_owner_push(para__deque *q, void *item);
/* Owner only. Returns the newest item, or NULL if empty. */
void *para__deque_owner_pop(para__deque *q);
/* Any thread. Returns the oldest item, PARA__DEQUE_EMPTY or
 * PARA__DEQUE_ABORT. Items must never be the pointer value 1. */
void *para__deque_steal(para__deque *q);
/* Any thread: a racy estimate of the number of items (for heuristics). */
int64_t para__deque_size_estimate(const para__deque *q);

#endif /* PARA_DEQUE_H */
