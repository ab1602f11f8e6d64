/*
 * Batch memory; see batch.h for the layout, the caches and the counts.
 */
#include <stdlib.h>
#include <string.h>

#include "batch.h"

#define MIN_CLASS_SHIFT 10 /* 1 KiB */

static size_t header_bytes(uint32_t n_tasks)
{
    size_t h = sizeof(para__batch) + (size_t)n_tasks * sizeof(para__task);
    return (h + PARA_CACHELINE - 1) & ~(size_t)(PARA_CACHELINE - 1);
}

static uint32_t class_of(size_t total)
{
    uint32_t c = 0;
    while (((size_t)1 << (MIN_CLASS_SHIFT + c)) < total) {
        if (++c == PARA__BATCH_CLASSES)
            return PARA__BATCH_NO_CLASS;
    }
    return c;
}

void para__bytes_add(para__run *run, int64_t bytes)
{
    /* relaxed: a gate hint and a statistic; nothing is published. */
    int64_t now =
        atomic_fetch_add_explicit(&run->bytes, bytes, memory_order_relaxed) +
        bytes;
    if (bytes > 0) {
        int64_t peak =
            atomic_load_explicit(&run->peak_bytes, memory_order_relaxed);
        /* relaxed CAS: a running maximum. */
        while (now > peak && !atomic_compare_exchange_weak_explicit(
                                 &run->peak_bytes, &peak, now,
                                 memory_order_relaxed, memory_order_relaxed))
            ;
    }
}

size_t para__batch_alloc_size(uint32_t n_tasks, size_t bytes)
{
    size_t total = header_bytes(n_tasks) + bytes;
    uint32_t cls = class_of(total);
    if (cls != PARA__BATCH_NO_CLASS)
        total = (size_t)1 << (MIN_CLASS_SHIFT + cls);
    return (total + PARA_CACHELINE - 1) & ~(size_t)(PARA_CACHELINE - 1);
}

size_t para__batch_fit_items(size_t n, size_t item_bytes)
{
    size_t head = header_bytes(PARA__BATCH_FIT_TASKS);
    if (item_bytes == 0 || n > (SIZE_MAX / 2) / item_bytes)
        return n;
    size_t bytes = n * item_bytes;
    uint32_t cls = class_of(bytes);
    if (cls == PARA__BATCH_NO_CLASS || bytes < 4 * head)
        return n;
    size_t room = (size_t)1 << (MIN_CLASS_SHIFT + cls);
    if (bytes + head <= room)
        return n;
    size_t fit = (room - head) / item_bytes;
    /* A multiple of 64 where that costs little: device kernels launch
     * work-groups of such sizes. */
    if (fit >= 256)
        fit &= ~(size_t)63;
    return fit > 0 ? fit : n;
}

static void count_live(para__run *run, int64_t delta)
{
    if (run == NULL)
        return;
    /* relaxed: the count is a heuristic gate for sources and a statistic;
     * no data is published through it. */
    int64_t now = atomic_fetch_add_explicit(&run->live_batches, delta,
                                            memory_order_relaxed) +
                  delta;
    if (delta > 0) {
        int64_t peak =
            atomic_load_explicit(&run->peak_batches, memory_order_relaxed);
        /* relaxed CAS: a running maximum, ordering is irrelevant. */
        while (now > peak && !atomic_compare_exchange_weak_explicit(
                                 &run->peak_batches, &peak, now,
                                 memory_order_relaxed, memory_order_relaxed))
            ;
    }
}

void para__batch_cache_init_returns(para__batch_cache *c)
{
    c->takes_returns = true;
    para__batch_stack_init(&c->returned);
}

/* Give @p b, a block of @p c's slab, back to it. */
static void slab_give_back(para__batch_cache *c, para__batch *b)
{
    if (!para__slab_serves(MIN_CLASS_SHIFT + b->size_class))
        c->small_in_slab--;
    para__slab_free(&c->slab, b->slab, b);
}

/* Put @p b (of class @p cls) in @p c's pool if the pool has room, making
 * room by freeing cached batches of smaller classes, the largest first (a
 * run's batches grow from small to large classes, and the small ones left
 * from its start would otherwise hold the bytes the large ones need; a
 * small batch never displaces a larger one); free it otherwise. Owner
 * only. */
static void pool_or_free(para__batch_cache *c, para__batch *b, uint32_t cls)
{
    if (b->slab != NULL) { /* c is its home (slab.h) */
        slab_give_back(c, b);
        return;
    }
    size_t size = (size_t)1 << (MIN_CLASS_SHIFT + cls);
    for (uint32_t k = cls; k-- > 0 &&
                           c->pool_len[cls] < PARA__BATCH_POOL_DEPTH &&
                           size > PARA__BATCH_POOL_BYTES - c->pool_bytes;) {
        while (c->pool[k] != NULL &&
               size > PARA__BATCH_POOL_BYTES - c->pool_bytes) {
            para__batch *old = c->pool[k];
            c->pool[k] = old->pool_next;
            c->pool_len[k]--;
            c->pool_bytes -= (size_t)1 << (MIN_CLASS_SHIFT + k);
            free(old);
        }
    }
    if (c->pool_len[cls] < PARA__BATCH_POOL_DEPTH &&
        size <= PARA__BATCH_POOL_BYTES - c->pool_bytes) {
        b->pool_next = c->pool[cls];
        c->pool[cls] = b;
        c->pool_len[cls]++;
        c->pool_bytes += size;
        return;
    }
    free(b);
}

/* The owner of @p c takes the batches other threads freed back to it. */
static void take_returns(para__batch_cache *c)
{
    para__batch *b = para__batch_stack_take_all(&c->returned);
    while (b != NULL) {
        para__batch *next = b->pool_next;
        pool_or_free(c, b, b->size_class);
        b = next;
    }
}

para__batch *para__batch_alloc(para__batch_cache *c, para__run *run,
                               uint32_t n_tasks, size_t bytes)
{
    size_t head = header_bytes(n_tasks);
    /* No room for the header and the rounding below: no such allocation
     * can succeed, and the sum would wrap around to a short buffer. */
    if (bytes > SIZE_MAX - head - PARA_CACHELINE)
        return NULL;
    size_t total = head + bytes;
    uint32_t cls = class_of(total);
    para__batch *b = NULL;
    para__slab *region = NULL;
    uint32_t shift = MIN_CLASS_SHIFT + cls;
    if (cls != PARA__BATCH_NO_CLASS && c != NULL && c->takes_returns &&
        para__slab_serves(shift)) {
        total = (size_t)1 << shift;
        /* Batches freed elsewhere come home first: their blocks are the
         * ones to reuse (and merge with their buddies), rather than
         * memory they would keep from use. */
        if (!para__batch_stack_peek_empty(&c->returned))
            take_returns(c);
        bool fresh;
        b = para__slab_alloc(&c->slab, shift, &region, &fresh);
        if (b == NULL)
            return NULL;
        if (fresh && c->allocated != NULL)
            para__counter_add(c->allocated, 1);
    } else if (cls != PARA__BATCH_NO_CLASS) {
        total = (size_t)1 << shift;
        if (c != NULL && c->pool[cls] == NULL && c->takes_returns &&
            !para__batch_stack_peek_empty(&c->returned))
            take_returns(c);
        if (c != NULL && c->pool[cls] != NULL) {
            b = c->pool[cls];
            c->pool[cls] = b->pool_next;
            c->pool_len[cls]--;
            c->pool_bytes -= total;
        } else if (c != NULL && c->takes_returns &&
                   shift >= PARA__BATCH_SMALL_SLAB_MIN_SHIFT &&
                   c->small_in_slab < PARA__BATCH_SMALL_IN_SLAB &&
                   c->small_slab_uses[cls] < PARA__BATCH_SMALL_SLAB_USES) {
            /* A block of memory the home has faulted in already, rather
             * than fresh pages from malloc() (see PARA__BATCH_SMALL_IN_SLAB).
             */
            bool fresh;
            b = para__slab_alloc_small(&c->slab, total, &region, &fresh);
            if (b != NULL) {
                c->small_in_slab++;
                c->small_slab_uses[cls]++;
                if (fresh && c->allocated != NULL)
                    para__counter_add(c->allocated, 1);
            }
        }
    }
    if (b == NULL) {
        b = aligned_alloc(PARA_CACHELINE, (total + PARA_CACHELINE - 1) &
                                              ~(size_t)(PARA_CACHELINE - 1));
        if (b == NULL)
            return NULL;
        if (c != NULL && c->allocated != NULL)
            para__counter_add(c->allocated, 1);
    }
    atomic_init(&b->refs, n_tasks);
    b->n_tasks = n_tasks;
    b->path = 0;
    b->size_class = cls;
    b->count = 0;
    b->capacity = total - head;
    b->seq_begin = b->seq_end = 0;
    b->data = (unsigned char *)b + head;
    b->pool_next = NULL;
    b->slab = region;
    b->home =
        c != NULL && c->takes_returns && cls != PARA__BATCH_NO_CLASS ? c : NULL;
    b->alloc_bytes =
        (total + PARA_CACHELINE - 1) & ~(size_t)(PARA_CACHELINE - 1);
    b->extra_bytes = 0;
    b->family = NULL;
    b->dres = NULL;
    b->dev_buf = NULL;
    b->dev_offset = b->dev_bytes = 0;
    b->host_valid = true;
    b->host_copy = NULL;
    b->owner = NULL;
    b->owned_begin = 0;
    count_live(run, 1);
    if (run != NULL)
        para__bytes_add(run, (int64_t)b->alloc_bytes);
    return b;
}

para__batch *para__batch_grow(para__batch_cache *c, para__run *run,
                              para__batch *b, size_t bytes, size_t used)
{
    if (bytes <= b->capacity)
        return b;
    size_t want = b->capacity * 2;
    if (want < bytes)
        want = bytes;
    para__batch *nb = para__batch_alloc(c, NULL, b->n_tasks, want);
    if (nb == NULL)
        return NULL;
    /* relaxed: the batch is still private to the producing worker. */
    atomic_store_explicit(&nb->refs,
                          atomic_load_explicit(&b->refs, memory_order_relaxed),
                          memory_order_relaxed);
    nb->path = b->path;
    nb->count = b->count;
    /* The items (and what they own) move to the new batch. */
    nb->owner = b->owner;
    nb->own_release = b->own_release;
    nb->own_ctx = b->own_ctx;
    nb->own_size = b->own_size;
    nb->owned_begin = b->owned_begin;
    b->owner = NULL;
    para__batch_join_family(nb, b);
    nb->seq_begin = b->seq_begin;
    nb->seq_end = b->seq_end;
    memcpy(nb->data, b->data, used);
    /* The old batch's live count and bytes transfer to the new one; only
     * the difference in size is new. */
    para__bytes_add(run, (int64_t)nb->alloc_bytes - (int64_t)b->alloc_bytes);
    para__batch_free(c, NULL, b);
    return nb;
}

void para__batch_free(para__batch_cache *c, para__run *run, para__batch *b)
{
    if (b->owner != NULL && b->owned_begin < b->count)
        /* Items that own memory: released with their batch (owned.c). */
        b->own_release(b->own_ctx, b->data + b->owned_begin * b->own_size,
                       b->count - b->owned_begin);
    b->owner = NULL;
    if (b->dres != NULL) {
        /* Its device buffer goes back once no batch refers to it. */
        b->dres->buf_release(b->dres->dev, b->dev_buf);
        /* relaxed: see para__devres.bytes. */
        atomic_fetch_sub_explicit(&b->dres->bytes, (int64_t)b->dev_bytes,
                                  memory_order_relaxed);
        b->dres = NULL;
        b->dev_buf = NULL;
    }
    free(b->host_copy);
    b->host_copy = NULL;
    count_live(run, -1);
    if (run != NULL)
        para__bytes_add(run, -(int64_t)(b->alloc_bytes + b->extra_bytes));
    if (b->family != NULL)
        para__family_unref(run, b->family);
    uint32_t cls = b->size_class;
    if (b->home != NULL && b->home != c) {
        para__batch_stack_push(&b->home->returned, b); /* home, see batch.h */
        return;
    }
    if (c != NULL && cls != PARA__BATCH_NO_CLASS) {
        pool_or_free(c, b, cls);
        return;
    }
    free(b);
}

void para__batch_release(para__batch_cache *c, para__run *run, para__batch *b)
{
    /* acq_rel: release makes our reads of the batch happen before its reuse
     * by the last reader; acquire (for the last reader) sees every other
     * reader's release before freeing. */
    uint32_t before =
        atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel);
    PARA_DEBUG_ASSERT(before > 0); /* I5 */
    if (before == 1)
        para__batch_free(c, run, b);
}

void para__batch_cache_drain(para__batch_cache *c)
{
    if (c->takes_returns) {
        para__batch *b = para__batch_stack_take_all(&c->returned);
        while (b != NULL) {
            para__batch *next = b->pool_next;
            if (b->slab != NULL)
                slab_give_back(c, b);
            else
                free(b);
            b = next;
        }
    }
    for (unsigned k = 0; k < PARA__BATCH_CLASSES; k++) {
        while (c->pool[k] != NULL) {
            para__batch *b = c->pool[k];
            c->pool[k] = b->pool_next;
            free(b);
        }
        c->pool_len[k] = 0;
    }
    c->pool_bytes = 0;
    para__slab_cache_drain(&c->slab);
    para__family_cache_drain(&c->families);
}
