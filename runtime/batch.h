/*
 * Batch memory (memory layer): the batch, its allocation from per-worker
 * caches, and the run's counts of live batches and bytes.
 *
 * A batch is one allocation: header, the embedded tasks (one per successor
 * of the producing node), then the item data, cache-line aligned. Sizes are
 * rounded up to power-of-two classes from 1 KiB to 2 MiB. The classes of
 * 64 KiB and more, in a cache that is a home (below), are blocks of that
 * cache's slab (slab.h: 2 MiB regions, huge pages where the kernel has
 * them, kept mapped while in use, at most PARA__SLAB_KEEP_BYTES of empty
 * ones between runs), and so are a home's first small batches
 * (PARA__BATCH_SMALL_IN_SLAB). For the smaller classes, and in other caches,
 * each worker keeps a small LIFO cache per class (PARA__BATCH_POOL_DEPTH
 * batches, and PARA__BATCH_POOL_BYTES over all classes, a larger batch
 * displacing smaller ones when the bytes are short: a long-lived runtime holds
 * at most that much per worker in its pools between runs, however its batch
 * sizes wander; the rest go back to free()). Only its owner touches a
 * cache's pools, so
 * they need no locks. A batch another thread frees goes back to the cache
 * that allocated it (its home), through the home's `returned` stack (an
 * MPSC stack, mpsc_stack.h: push from any thread, the owner takes the
 * whole stack), which the owner moves into its pools when a pool it
 * allocates from is empty: without it, a flow where one worker produces
 * batches and another consumes them would malloc every batch on the first
 * and free it on the second, touching fresh pages each time (a pipeline
 * into a serial sink). Only caches set up with
 * para__batch_cache_init_returns() (the workers') are homes; batches of
 * other caches, larger batches, and batches released outside a worker go
 * to the freeing thread's cache or straight to free(). A worker allocates
 * afresh only when both its pool of the class and its returned stack are
 * empty, so its batches (in its pools, on its stack, or alive) never
 * outnumber its pools' bound plus the most it had alive at once, and the
 * stack alone holds no more than that between runs.
 *
 * Tests: tests/reliability/test_soak.c (the caches' bounds; returns,
 * reuse and displacement, test_batch_returns).
 *
 * Every batch is counted in run->live_batches from allocation to free (the
 * gate of the policies that limit batches). Its allocation, plus the bytes
 * its items own outside it (item_bytes, added at delivery), is counted in
 * run->bytes the same way: the peak bytes in flight, the progress line.
 * Under a budgeted policy a batch also holds a reference to its family
 * (budget.h).
 *
 * Also tested through tests/runtime/test_run.c and test_differential.c
 * (ASan checks that every batch is freed), test_budget.c (allocation
 * sizes).
 */
#ifndef PARA_BATCH_H
#define PARA_BATCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "budget.h"
#include "mpsc_stack.h"
#include "runctx.h"
#include "slab.h"

/* A device that can hold batches' items in its own memory (device-resident
 * edges, runtime/device_node.c): how to drop a batch's buffer, and the
 * device bytes batches hold there now (the memory-aware policy's device
 * budget). One per open device, living as long as the runtime. */
typedef struct para__devres {
    /* The back-end's buf_release (devices/device.h), given here so that
     * this layer frees a batch without knowing the device contract. */
    void (*buf_release)(void *dev, void *buf);
    void *dev;
    unsigned index; /* the device's index in the runtime */
    /* relaxed: a count read as an estimate by the policy; batches add at
     * creation and subtract when freed. */
    _Atomic int64_t bytes;
} para__devres;

struct para__batch {
    _Atomic uint32_t refs; /* readers left; freed at zero */
    uint32_t n_tasks;      /* embedded tasks (successors of the producer) */
    uint32_t path;         /* path index at the producer */
    uint32_t size_class;   /* pool class, or PARA__BATCH_NO_CLASS */
    size_t count;          /* items */
    size_t capacity;       /* bytes available at data */
    uint64_t seq_begin, seq_end;
    unsigned char *data;
    size_t alloc_bytes;   /* the allocation, for run->bytes */
    size_t extra_bytes;   /* owned by the items outside the batch */
    para__family *family; /* NULL unless the policy is budgeted */
    /* Items that own memory (owned.c sets these): the node whose items
     * they are (NULL: they own nothing), its release hook, ctx and item
     * size (so that freeing needs no graph), and the first item still
     * owned by this batch (those before were taken or moved on). */
    const para_node_t *owner;
    para_items_release_fn own_release;
    void *own_ctx;
    size_t own_size;
    size_t owned_begin;
    /* Device-resident items: the buffer on device dres (NULL: the items
     * are in data only) holding them at dev_offset, dev_bytes long, with
     * one reference of this batch; host_valid: data holds them too. */
    para__devres *dres;
    void *dev_buf;
    size_t dev_offset, dev_bytes;
    bool host_valid;
    /* A batch whose items live only on a device has no room for them in
     * its own allocation (only its header counts against the host budget);
     * when they are brought back (device_node.c: materialize()), data
     * points to this separate buffer, counted in alloc_bytes, freed with
     * the batch. NULL otherwise. */
    unsigned char *host_copy;
    para__batch *pool_next; /* pool free list, or the returned stack */
    /* The cache that allocated it, if that cache takes returns (NULL
     * otherwise): where another thread frees it to. */
    struct para__batch_cache *home;
    /* The slab region it was carved from (slab.h), in its home's slab;
     * NULL if it came from malloc. */
    para__slab *slab;
    para__task tasks[]; /* n_tasks, followed by the data */
};

#define PARA__BATCH_NO_CLASS UINT32_MAX
#define PARA__BATCH_CLASSES 12    /* 1 KiB .. 2 MiB total size */
#define PARA__BATCH_POOL_DEPTH 16 /* cached batches per class per worker */
/* Bytes of cached batches per worker (all classes): with the depth, what a
 * runtime keeps between runs is bounded by design, whatever sizes its
 * batches take (tests/reliability/test_soak.c checks both bounds). */
#define PARA__BATCH_POOL_BYTES ((size_t)8 << 20)
/* Small batches from the slab. A run's first batches are small (the
 * ramp), and from malloc() each took pages never touched before: 74-92
 * page faults in a process's first w3 run, at about 11 us each on the
 * development VM, nearly a millisecond, about half of them in the 16 and 32
 * KiB classes. So when its pool of such a class is empty, a home takes the
 * batch from a 64 KiB block of its slab, in a region already mapped (and
 * faulted in when the worker started; the slab never maps one for them),
 * and gives it back to the slab when it is freed, not to a pool. Bounds:
 * PARA__BATCH_SMALL_IN_SLAB at once, so that small batches take at most a
 * quarter of a region from the large ones; PARA__BATCH_SMALL_SLAB_USES per
 * class over the cache's life, after which the class comes from its pool
 * or malloc() as before; and no class under
 * PARA__BATCH_SMALL_SLAB_MIN_SHIFT. The last two keep small batches
 * flowing through the worker's malloc arena: without them, a source that
 * mallocs its items' memory there (w5) had glibc trim the arena's top on
 * its frees and fault the pages in again (54k faults in a quick w5 at no
 * bound, 1.5-2x base's from 4 KiB up with 8 uses; level from 16 KiB). The
 * size and the bytes counted for such a batch stay its class's. */
#define PARA__BATCH_SMALL_IN_SLAB 8
#define PARA__BATCH_SMALL_SLAB_USES 8
#define PARA__BATCH_SMALL_SLAB_MIN_SHIFT 14 /* 16 KiB */

/* Batches freed by other threads on their way home (mpsc_stack.h: its
 * memory orders; push's release publishes the freeing thread's last
 * accesses to the batch, take_all's acquire makes them happen before the
 * owner reuses it). */
PARA__MPSC_STACK_DEFINE(para__batch_stack, para__batch, pool_next)

/* One worker's cache of free batches; touched by its owner only, but for
 * `returned`. */
typedef struct para__batch_cache {
    para__batch *pool[PARA__BATCH_CLASSES];
    unsigned pool_len[PARA__BATCH_CLASSES];
    size_t pool_bytes;           /* in all classes, <= PARA__BATCH_POOL_BYTES */
    _Atomic uint64_t *allocated; /* owner's counter of fresh allocations */
    para__family_cache families; /* free family records (budget.h) */
    bool takes_returns;          /* batches allocated here have it as home */
    para__batch_stack returned;  /* any thread pushes; the owner takes */
    para__slab_cache slab;       /* large batches of a home (slab.h) */
    unsigned small_in_slab;      /* small ones in its blocks, now */
    uint32_t small_slab_uses[PARA__BATCH_CLASSES]; /* and ever, per class */
} para__batch_cache;

/* Make @p c (zeroed, or drained) the home of the batches it allocates:
 * other threads free them back to it. Before any thread uses it. */
void para__batch_cache_init_returns(para__batch_cache *c);

/* Allocate a batch with @p n_tasks embedded tasks and room for @p bytes of
 * data; counts it live in @p run. @p c may be NULL (no cache). */
para__batch *para__batch_alloc(para__batch_cache *c, para__run *run,
                               uint32_t n_tasks, size_t bytes);
/* Grow @p b to hold at least @p bytes, keeping its contents. Returns the
 * (possibly new) batch or NULL (then @p b is untouched). */
para__batch *para__batch_grow(para__batch_cache *c, para__run *run,
                              para__batch *b, size_t bytes, size_t used);
/* The size of the allocation para__batch_alloc() makes for these. */
size_t para__batch_alloc_size(uint32_t n_tasks, size_t bytes);

/* Successors a batch header is sized for by para__batch_fit_items(). */
#define PARA__BATCH_FIT_TASKS 4

/* @p n items of @p item_bytes, trimmed (by at most the header's bytes) so
 * that a batch of them with PARA__BATCH_FIT_TASKS tasks takes the size
 * class the items alone take: a power-of-two count of items would
 * otherwise spill a header's worth into a class twice the size (32,768
 * items of 8 bytes: 256 KiB of items, a 512 KiB batch), doubling the
 * memory and the bytes in flight the budget counts. The trimmed count is
 * a multiple of 64 from 256 items up; counts whose items are not large
 * beside a header (under four headers' bytes) stay as they are. */
size_t para__batch_fit_items(size_t n, size_t item_bytes);
/* @p b (new) joins the family of @p from. */
static inline void para__batch_join_family(para__batch *b,
                                           const para__batch *from)
{
    b->family = from->family;
    /* I5: `from` holds a live reference (relaxed: a debug check). */
    PARA_DEBUG_ASSERT(
        b->family == NULL ||
        atomic_load_explicit(&b->family->refs, memory_order_relaxed) > 0);
    if (b->family != NULL)
        /* relaxed: the caller holds a reference through `from`, as with a
         * shared pointer copy; the release happens at the unref. */
        atomic_fetch_add_explicit(&b->family->refs, 1, memory_order_relaxed);
}
/* Count @p bytes more (or fewer) in flight in @p run. */
void para__bytes_add(para__run *run, int64_t bytes);
/* Drop one reader; frees the batch when none is left. */
void para__batch_release(para__batch_cache *c, para__run *run, para__batch *b);
/* Free a batch now, whatever its count. */
void para__batch_free(para__batch_cache *c, para__run *run, para__batch *b);
/* Where a batch's items are, for routing (device_node.c): the index of
 * the device whose memory holds them (in the runtime's device list), or -1
 * if they are on the host only. A batch resident on device k runs there
 * with no copy in; on another device or the CPU it needs the host copy.
 * para__batch_on_host() says whether that copy exists: a batch that is not
 * on the host must go to its device (only outputs read by nothing but
 * kernel nodes of one single device are kept so, see out_plan() in
 * device_node.c). */
static inline int para__batch_resident_device(const para__batch *b)
{
    return b->dres != NULL ? (int)b->dres->index : -1;
}
/* True if @p b's items can be read in b->data (not only on a device). */
static inline bool para__batch_on_host(const para__batch *b)
{
    return b->dres == NULL || b->host_valid;
}

/* Free every batch (and family record) cached in @p c. */
void para__batch_cache_drain(para__batch_cache *c);

/* Output of a flat-map node: the batch it writes, grown on demand. */
struct para_emitter {
    para__batch_cache *cache;
    para__run *run;
    para__batch *batch;
    size_t item_size;
    bool failed; /* an allocation failed */
};

#endif /* PARA_BATCH_H */
