/*
 * Slab (memory layer): large blocks carved from 2 MiB regions that one
 * thread owns, for the batches of 64 KiB and more (and, in 64 KiB blocks,
 * a home's first batches of 16 and 32 KiB: batch.h).
 *
 * Why. A batch that big, freed past its worker's pool, went back to
 * free(); the C library returns such memory to the kernel (munmap, or a
 * trim of its heap) and the next allocation faults it in again, a page at
 * a time. A page fault costs 1-2 us on bare metal and about 15 us in the
 * virtual machines CI runs on: a worker that churned a few hundred pages a
 * run lost milliseconds to the kernel, and a process's first run, which
 * touches all of its batch memory fresh, ran twice as long as the next.
 * Regions are mapped 2 MiB-aligned and marked MADV_HUGEPAGE, so where
 * transparent huge pages are on ("madvise" or "always") a region costs
 * one fault instead of 512; and they stay mapped while the owner uses
 * them, whatever the C library's thresholds.
 *
 * How. A region holds blocks of any of those sizes at once, as a buddy
 * allocator does: a block of 2^k bytes sits at an offset that is a
 * multiple of 2^k; a request takes a free block of its size, or splits
 * the smallest larger one in halves down to it (the other halves stay
 * free), and a block given back merges with its buddy (the other half of
 * the block they were split from) while that is free too, so a region
 * whose blocks have all come back is one free 2 MiB block again. Batches
 * of several sizes (a run's ramp, the outputs of stages with items of
 * different widths) share a region rather than taking one each: fewer
 * regions, and fewer first faults of huge pages. The free blocks are
 * bitmasks over the region's 64 KiB granules, one mask per size, so
 * nothing is written into a free block (it stays cold, and poisoned
 * under ASan). A cache keeps its partial regions in a list, the one that
 * last took a block back first, and serves a request from the first
 * region with a free block of that size (recently used memory, warm in
 * this core's cache), else by a split in the first region that has room,
 * else from an empty region. An empty region joins the empty list,
 * unless PARA__SLAB_KEEP_BYTES of empty regions are already kept; then it
 * is unmapped. So between runs, when every block is back, a cache holds
 * at most PARA__SLAB_KEEP_BYTES, and during a run at most one partially
 * used region per live block, plus that.
 *
 * One thread only: every call on a cache comes from its owner (a worker or
 * a device lane); batch.c brings blocks freed elsewhere home first (its
 * `returned` stack). No atomics here.
 *
 * Under AddressSanitizer a block is poisoned while given back, so a batch
 * used after its free is reported as with malloc's memory, and a mapped
 * region is one of LeakSanitizer's roots: a batch in it can hold the only
 * pointer to a heap batch (a home's stack of returned batches).
 *
 * Tests: tests/runtime/test_slab.c (carving, reuse order, the keep bound,
 * a random sequence against a model); tests/reliability/test_soak.c (the
 * caches' bounds between runs, through the batch caches).
 */
#ifndef PARA_SLAB_H
#define PARA_SLAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PARA__SLAB_REGION_SHIFT 21 /* 2 MiB regions */
#define PARA__SLAB_REGION_BYTES ((size_t)1 << PARA__SLAB_REGION_SHIFT)
#define PARA__SLAB_MIN_SHIFT 16 /* blocks of 64 KiB .. 2 MiB */
#define PARA__SLAB_SIZES (PARA__SLAB_REGION_SHIFT - PARA__SLAB_MIN_SHIFT + 1)
/* Empty regions a cache keeps mapped for later carving (4 regions). */
#define PARA__SLAB_KEEP_BYTES ((size_t)8 << 20)

#define PARA__SLAB_GRANULES ((uint32_t)1 << (PARA__SLAB_SIZES - 1)) /* 32 */

/* One region; blocks carry a pointer to theirs (the batch header's
 * `slab`), so freeing needs no lookup. Granule g is the 64 KiB at
 * base + g * 64 KiB. */
typedef struct para__slab {
    struct para__slab *prev, *next; /* in the partial list, or the empty one */
    struct para__slab *all_prev, *all_next; /* every region of the cache */
    unsigned char *base;                    /* 2 MiB-aligned */
    /* free[k]: bit g set if a free block of 2^(16+k) bytes starts at
     * granule g. */
    uint32_t free[PARA__SLAB_SIZES];
    uint32_t touched; /* granules some block has covered since mapped */
    uint32_t in_use;  /* blocks handed out and not given back */
    uint8_t order[PARA__SLAB_GRANULES]; /* a block in use at g: its k */
    bool partial;                       /* in the partial list */
} para__slab;

typedef struct para__slab_cache {
    para__slab *partial; /* some blocks in use, some room; last freed first */
    para__slab *empty;   /* regions with no block in use */
    para__slab *all;     /* every region, to unmap them at the end */
    unsigned n_empty;
    unsigned n_regions; /* mapped now, empty or not */
} para__slab_cache;

/* True if blocks of 2^@p shift bytes come from the slab. */
static inline bool para__slab_serves(uint32_t shift)
{
    return shift >= PARA__SLAB_MIN_SHIFT && shift <= PARA__SLAB_REGION_SHIFT;
}

/* A block of 2^@p shift bytes (para__slab_serves(shift)), aligned to its
 * size, and its region in @p *region; @p *fresh says whether it covers
 * memory no block had covered since the region was mapped. NULL if a
 * region could not be mapped. */
void *para__slab_alloc(para__slab_cache *c, uint32_t shift, para__slab **region,
                       bool *fresh);

/* A smallest block (64 KiB) for @p bytes (at most that) from a region
 * already mapped, NULL if none has room: small batches use it to take
 * memory already faulted in (a worker's reserve) instead of fresh pages
 * from malloc(), without ever mapping a region for themselves. Given back
 * with para__slab_free(). Under ASan only @p bytes are usable. */
void *para__slab_alloc_small(para__slab_cache *c, size_t bytes,
                             para__slab **region, bool *fresh);
/* Map @p regions empty regions (within the keep bound) and fault them in
 * now, from the calling thread (the owner: its NUMA node gets the pages).
 * A worker does it when it starts, so that its first run does not: a huge
 * page's first fault usually costs 0.1-0.2 ms, and now and then several
 * milliseconds when the kernel compacts memory to find one (seen at 3.9
 * ms on the development VM), and without huge pages a region is 512
 * faults. Best effort: a region that cannot be mapped is left for later. */
void para__slab_reserve(para__slab_cache *c, unsigned regions);

/* Give back @p block of @p region (from para__slab_alloc() on @p c). */
void para__slab_free(para__slab_cache *c, para__slab *region, void *block);

/* Unmap every region. Every block must have been given back: a block
 * still in use is a batch the runtime lost, and the drain panics (it would
 * otherwise vanish with its region, unseen by a leak checker). */
void para__slab_cache_drain(para__slab_cache *c);

#endif
