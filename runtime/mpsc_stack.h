/*
 * Intrusive multi-producer, single-taker Treiber stack: any thread pushes
 * one item; a consumer takes the whole stack at once. Used for the workers'
 * injection stack, the inboxes of serial nodes and the device host
 * thread's incoming tasks.
 *
 * Contract (the "mpsc" in the name): push() from any number of threads;
 * take_all() from any thread, but entries are never popped one by one, so
 * there is no ABA problem and no reclamation scheme: a pushed item belongs
 * to the stack until a take_all() hands the whole list to one thread.
 * take_all() returns newest first; take_all_fifo() reverses it into arrival
 * order. The list is linked through the item's own `next` field, which the
 * stack owns from push() until take_all().
 *
 * Memory orders, once for every user:
 *   push      seq_cst CAS. Its release half publishes the item (and what it
 *             points to) to the taker. Its seq_cst half lets the pusher take
 *             part in a Dekker pattern: push, then a seq_cst load or RMW of
 *             a flag (a serial node's `claimed`, the device thread's
 *             `sleeping`), against the taker's seq_cst store of that flag
 *             followed by a seq_cst load of the stack (empty()). On x86 and
 *             AArch64 a seq_cst CAS costs what a release CAS does (lock
 *             cmpxchg; casal), so users without the pattern pay nothing.
 *   take_all  acquire exchange: pairs with the push's release, so the
 *             taker sees each item's contents.
 *   empty     seq_cst load: the taker's half of the Dekker pattern above;
 *             a plain "is there anything" test costs the same on x86.
 *   peek_empty relaxed: a cheap hint before take_all(), decides nothing.
 *
 * PARA__MPSC_STACK_DEFINE(prefix, type, next) defines, for items of `type`
 * linked through their field `next` (of type `type *`):
 *   typedef struct { _Atomic(type *) head; } prefix;
 *   void  prefix_init(prefix *s);
 *   void  prefix_push(prefix *s, type *item);
 *   type *prefix_take_all(prefix *s);        newest first
 *   type *prefix_take_all_fifo(prefix *s);   oldest first
 *   bool  prefix_empty(prefix *s);           seq_cst (Dekker)
 *   bool  prefix_peek_empty(prefix *s);      relaxed (hint)
 *
 * Tests: tests/runtime/test_mpsc_stack.c (sequential semantics; producers
 * against a taker, every item taken exactly once; run under TSan in CI).
 */
#ifndef PARA_MPSC_STACK_H
#define PARA_MPSC_STACK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define PARA__MPSC_STACK_DEFINE(prefix, type, next)                            \
    typedef struct prefix {                                                    \
        _Atomic(type *) head;                                                  \
    } prefix;                                                                  \
    static inline void prefix##_init(prefix *s)                                \
    {                                                                          \
        atomic_init(&s->head, NULL);                                           \
    }                                                                          \
    static inline void prefix##_push(prefix *s, type *item)                    \
    {                                                                          \
        type *head = atomic_load_explicit(&s->head, memory_order_relaxed);     \
        do {                                                                   \
            item->next = head;                                                 \
        } while (!atomic_compare_exchange_weak_explicit(                       \
            &s->head, &head, item, memory_order_seq_cst,                       \
            memory_order_relaxed));                                            \
    }                                                                          \
    static inline type *prefix##_take_all(prefix *s)                           \
    {                                                                          \
        return atomic_exchange_explicit(&s->head, NULL, memory_order_acquire); \
    }                                                                          \
    static inline type *prefix##_take_all_fifo(prefix *s)                      \
    {                                                                          \
        type *list = prefix##_take_all(s), *fifo = NULL;                       \
        while (list != NULL) {                                                 \
            type *after = list->next;                                          \
            list->next = fifo;                                                 \
            fifo = list;                                                       \
            list = after;                                                      \
        }                                                                      \
        return fifo;                                                           \
    }                                                                          \
    static inline bool prefix##_empty(prefix *s)                               \
    {                                                                          \
        return atomic_load_explicit(&s->head, memory_order_seq_cst) == NULL;   \
    }                                                                          \
    static inline bool prefix##_peek_empty(const prefix *s)                    \
    {                                                                          \
        return atomic_load_explicit(&((prefix *)s)->head,                      \
                                    memory_order_relaxed) == NULL;             \
    }

#endif /* PARA_MPSC_STACK_H */
