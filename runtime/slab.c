/*
 * Slab: 2 MiB regions carved into large blocks; see slab.h.
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
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static uint32_t blocks_per_region(uint32_t shift)
{
    return (uint32_t)1 << (PARA__SLAB_REGION_SHIFT - shift);
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

/* A region to carve blocks of 2^shift bytes from: an empty one, of this
 * size if there is one (its blocks are ready as they were), or a new one.
 * NULL if none can be mapped. */
static para__slab *take_region(para__slab_cache *c, uint32_t shift)
{
    para__slab *s = c->empty;
    while (s != NULL && s->shift != shift)
        s = s->next;
    if (s == NULL)
        s = c->empty;
    if (s != NULL) {
        list_remove(&c->empty, s);
        c->n_empty--;
        if (s->shift == shift) {
            s->partial = true;
            list_push(&c->partial[shift - PARA__SLAB_MIN_SHIFT], s);
            return s;
        }
    } else if ((s = new_region(c)) == NULL) {
        return NULL;
    }
    s->free = NULL;
    s->shift = shift;
    s->carved = 0;
    s->in_use = 0;
    s->partial = true;
    list_push(&c->partial[shift - PARA__SLAB_MIN_SHIFT], s);
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
        s->free = NULL;
        s->shift = 0; /* no size yet: take_region() gives it one */
        s->carved = s->in_use = 0;
        s->partial = false;
        list_push(&c->empty, s);
        c->n_empty++;
    }
}

bool para__slab_needs_fresh(const para__slab_cache *c, uint32_t shift)
{
    const para__slab *s = c->partial[shift - PARA__SLAB_MIN_SHIFT];
    return s == NULL || s->free == NULL;
}

void *para__slab_alloc(para__slab_cache *c, uint32_t shift, para__slab **region,
                       bool *fresh)
{
    PARA_DEBUG_ASSERT(para__slab_serves(shift));
    para__slab **list = &c->partial[shift - PARA__SLAB_MIN_SHIFT];
    para__slab *s = *list;
    if (s == NULL && (s = take_region(c, shift)) == NULL)
        return NULL;
    void *block;
    /* The head has a block given back, or room to carve (the list holds
     * only such regions); a given-back block first: it was in use last. */
    if (s->free != NULL) {
        block = s->free;
        UNPOISON(block, (size_t)1 << shift);
        s->free = *(void **)block;
        *fresh = false;
    } else {
        block = s->base + ((size_t)s->carved++ << shift);
        UNPOISON(block, (size_t)1 << shift); /* after another size's use */
        *fresh = true;
    }
    s->in_use++;
    if (s->free == NULL && s->carved == blocks_per_region(shift)) {
        list_remove(list, s); /* full */
        s->partial = false;
    }
    *region = s;
    return block;
}

void para__slab_free(para__slab_cache *c, para__slab *s, void *block)
{
    para__slab **list = &c->partial[s->shift - PARA__SLAB_MIN_SHIFT];
    PARA_DEBUG_ASSERT(s->in_use > 0);
    PARA_DEBUG_ASSERT((unsigned char *)block >= s->base &&
                      (unsigned char *)block <
                          s->base + PARA__SLAB_REGION_BYTES);
    *(void **)block = s->free;
    s->free = block;
    POISON(block, (size_t)1 << s->shift);
    /* To the head of its list: the next allocation of this size takes the
     * block just given back. */
    if (s->partial)
        list_remove(list, s);
    if (--s->in_use > 0) {
        list_push(list, s);
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
            para__panic("%u blocks of %zu bytes still in use when their "
                        "cache was drained (a batch was never freed)",
                        (unsigned)s->in_use, (size_t)1 << s->shift);
        unmap_region(c, s);
    }
    for (unsigned k = 0; k < PARA__SLAB_SIZES; k++)
        c->partial[k] = NULL;
    c->empty = NULL;
    c->n_empty = 0;
}
