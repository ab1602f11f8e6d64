/*
 * Slab: 2 MiB regions split into large blocks, buddy style; see slab.h.
 */
#define _DEFAULT_SOURCE /* MADV_HUGEPAGE, MAP_ANONYMOUS */
#include <stdlib.h>
#include <sys/mman.h>

#include "slab.h"
#include "util.h"

#if defined(__SANITIZE_ADDRESS__)
#define SLAB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLAB_ASAN 1
#endif
#endif
#ifdef SLAB_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
/* The leak checker scans the heap, stacks and globals for pointers, not
 * our own mappings; but a batch in a region can hold the only pointer to a
 * heap batch (a home's stack of returned batches runs through both kinds),
 * so a region is one of its roots while it is mapped. */
#define LEAK_ROOT_ADD(p, n) __lsan_register_root_region(p, n)
#define LEAK_ROOT_REMOVE(p, n) __lsan_unregister_root_region(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#define LEAK_ROOT_ADD(p, n) ((void)(p), (void)(n))
#define LEAK_ROOT_REMOVE(p, n) ((void)(p), (void)(n))
#endif

#define GRANULE_SHIFT PARA__SLAB_MIN_SHIFT
#define TOP_ORDER (PARA__SLAB_SIZES - 1) /* a whole region */

/* The granules a block of order @p k at granule @p g covers. */
static uint32_t span(uint32_t g, uint32_t k)
{
    uint32_t n = (uint32_t)1 << k;
    return (n == 32 ? UINT32_MAX : (((uint32_t)1 << n) - 1)) << g;
}

/* Region @p s as one free block, nothing in use. */
static void reset_region(para__slab *s)
{
    for (uint32_t k = 0; k < PARA__SLAB_SIZES; k++)
        s->free[k] = 0;
    s->free[TOP_ORDER] = 1;
    s->in_use = 0;
    s->partial = false;
}

/* The smallest order >= @p k with a free block in @p s, or
 * PARA__SLAB_SIZES if none. */
static uint32_t room_for(const para__slab *s, uint32_t k)
{
    while (k < PARA__SLAB_SIZES && s->free[k] == 0)
        k++;
    return k;
}

static void list_push(para__slab **head, para__slab *s)
{
    s->prev = NULL;
    s->next = *head;
    if (*head != NULL)
        (*head)->prev = s;
    *head = s;
}

static void list_remove(para__slab **head, para__slab *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        *head = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

/* A 2 MiB-aligned anonymous mapping, asked for huge pages; NULL if the
 * kernel refuses. mmap() aligns to pages only, so map twice the size and
 * unmap what lies outside the aligned 2 MiB. */
static unsigned char *map_region(void)
{
    size_t len = 2 * PARA__SLAB_REGION_BYTES;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uintptr_t mask = PARA__SLAB_REGION_BYTES - 1;
    unsigned char *base =
        (unsigned char *)(((uintptr_t)p + mask) & ~(uintptr_t)mask);
    size_t head = (size_t)(base - p);
    if (head > 0)
        munmap(p, head);
    munmap(base + PARA__SLAB_REGION_BYTES, PARA__SLAB_REGION_BYTES - head);
#ifdef MADV_HUGEPAGE
    /* A hint: where huge pages are off or short, the kernel uses 4 KiB
     * pages and nothing else changes. */
    (void)madvise(base, PARA__SLAB_REGION_BYTES, MADV_HUGEPAGE);
#endif
    LEAK_ROOT_ADD(base, PARA__SLAB_REGION_BYTES);
    return base;
}

/* A newly mapped region, in the cache's list of all regions and in no
 * other; NULL if it cannot be mapped. */
static para__slab *new_region(para__slab_cache *c)
{
    para__slab *s = malloc(sizeof *s);
    if (s == NULL)
        return NULL;
    if ((s->base = map_region()) == NULL) {
        free(s);
        return NULL;
    }
    s->all_prev = NULL;
    s->all_next = c->all;
    if (c->all != NULL)
        c->all->all_prev = s;
    c->all = s;
    c->n_regions++;
    return s;
}

/* An empty region for a block, now in the partial list: a kept one, or a
 * new one. NULL if none can be mapped. */
static para__slab *take_region(para__slab_cache *c)
{
    para__slab *s = c->empty;
    if (s != NULL) {
        list_remove(&c->empty, s);
        c->n_empty--;
    } else if ((s = new_region(c)) == NULL) {
        return NULL;
    } else {
        s->touched = 0;
        reset_region(s);
    }
    s->partial = true;
    list_push(&c->partial, s);
    return s;
}

/* Unmap @p s, which is in no partial or empty list. */
static void unmap_region(para__slab_cache *c, para__slab *s)
{
    if (s->all_prev != NULL)
        s->all_prev->all_next = s->all_next;
    else
        c->all = s->all_next;
    if (s->all_next != NULL)
        s->all_next->all_prev = s->all_prev;
    UNPOISON(s->base, PARA__SLAB_REGION_BYTES);
    LEAK_ROOT_REMOVE(s->base, PARA__SLAB_REGION_BYTES);
    munmap(s->base, PARA__SLAB_REGION_BYTES);
    free(s);
    c->n_regions--;
}

void para__slab_reserve(para__slab_cache *c, unsigned regions)
{
    while (c->n_empty < regions &&
           c->n_empty < PARA__SLAB_KEEP_BYTES / PARA__SLAB_REGION_BYTES) {
        para__slab *s = new_region(c);
        if (s == NULL)
            return;
        /* One write per 4 KiB page: with a huge page the first faults it
         * in whole and the rest cost nothing. */
        for (size_t off = 0; off < PARA__SLAB_REGION_BYTES; off += 4096)
            ((volatile unsigned char *)s->base)[off] = 0;
        s->touched = 0;
        reset_region(s);
        list_push(&c->empty, s);
        c->n_empty++;
    }
}

/* A block of 2^@p shift bytes; with @p may_map false, NULL rather than a
 * region mapped for it. */
static void *alloc_block(para__slab_cache *c, uint32_t shift,
                         para__slab **region, bool *fresh, bool may_map)
{
    PARA_DEBUG_ASSERT(para__slab_serves(shift));
    uint32_t k = shift - PARA__SLAB_MIN_SHIFT;
    /* A free block of this size in the region that took a block back last
     * (warm), else a larger one to split in the first region with one,
     * else an empty region. */
    para__slab *s = c->partial;
    while (s != NULL && s->free[k] == 0)
        s = s->next;
    if (s == NULL) {
        s = c->partial;
        while (s != NULL && room_for(s, k) == PARA__SLAB_SIZES)
            s = s->next;
    }
    if (s == NULL && !may_map && c->empty == NULL)
        return NULL;
    if (s == NULL && (s = take_region(c)) == NULL)
        return NULL;
    uint32_t j = room_for(s, k);
    PARA_DEBUG_ASSERT(j < PARA__SLAB_SIZES);
    /* The lowest free block of order j; split down to order k, the upper
     * halves staying free. */
    uint32_t g = (uint32_t)__builtin_ctz(s->free[j]);
    s->free[j] &= ~((uint32_t)1 << g);
    while (j > k) {
        j--;
        s->free[j] |= (uint32_t)1 << (g + ((uint32_t)1 << j));
    }
    s->order[g] = (uint8_t)k;
    s->in_use++;
    uint32_t cover = span(g, k);
    *fresh = (s->touched & cover) != cover;
    s->touched |= cover;
    if (room_for(s, 0) == PARA__SLAB_SIZES) {
        list_remove(&c->partial, s); /* full */
        s->partial = false;
    }
    *region = s;
    return s->base + ((size_t)g << GRANULE_SHIFT);
}

void *para__slab_alloc(para__slab_cache *c, uint32_t shift, para__slab **region,
                       bool *fresh)
{
    void *block = alloc_block(c, shift, region, fresh, true);
    if (block != NULL)
        UNPOISON(block, (size_t)1 << shift);
    return block;
}

void *para__slab_alloc_small(para__slab_cache *c, size_t bytes,
                             para__slab **region, bool *fresh)
{
    PARA_DEBUG_ASSERT(bytes <= ((size_t)1 << PARA__SLAB_MIN_SHIFT));
    void *block = alloc_block(c, PARA__SLAB_MIN_SHIFT, region, fresh, false);
    if (block != NULL)
        UNPOISON(block, bytes); /* the rest stays poisoned */
    return block;
}

void para__slab_free(para__slab_cache *c, para__slab *s, void *block)
{
    PARA_DEBUG_ASSERT(s->in_use > 0);
    PARA_DEBUG_ASSERT((unsigned char *)block >= s->base &&
                      (unsigned char *)block <
                          s->base + PARA__SLAB_REGION_BYTES);
    uint32_t g =
        (uint32_t)(((unsigned char *)block - s->base) >> GRANULE_SHIFT);
    uint32_t k = s->order[g];
    POISON(block, (size_t)1 << (PARA__SLAB_MIN_SHIFT + k));
    /* Merge with the buddy while it is free. */
    while (k < TOP_ORDER) {
        uint32_t buddy = g ^ ((uint32_t)1 << k);
        if ((s->free[k] & ((uint32_t)1 << buddy)) == 0)
            break;
        s->free[k] &= ~((uint32_t)1 << buddy);
        g &= ~((uint32_t)1 << k); /* the lower of the two */
        k++;
    }
    s->free[k] |= (uint32_t)1 << g;
    /* To the head of the partial list: the next request takes the block
     * just given back. */
    if (s->partial)
        list_remove(&c->partial, s);
    if (--s->in_use > 0) {
        list_push(&c->partial, s);
        s->partial = true;
        return;
    }
    s->partial = false;
    if (c->n_empty < PARA__SLAB_KEEP_BYTES / PARA__SLAB_REGION_BYTES) {
        list_push(&c->empty, s);
        c->n_empty++;
        return;
    }
    unmap_region(c, s);
}

void para__slab_cache_drain(para__slab_cache *c)
{
    while (c->all != NULL) {
        para__slab *s = c->all;
        if (s->in_use > 0)
            para__panic("%u slab blocks still in use when their cache was "
                        "drained (a batch was never freed)",
                        (unsigned)s->in_use);
        unmap_region(c, s);
    }
    c->partial = NULL;
    c->empty = NULL;
    c->n_empty = 0;
}
