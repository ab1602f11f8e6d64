/*
 * The byte budget (memory layer): families, reservations, admission.
 *
 * Every source batch admitted under a budget starts a *family*: the
 * batches it becomes downstream. At the pull the family reserves its
 * footprint, the most bytes it can hold at once: at every node its batch
 * (the allocation size, as batch.c rounds it) times the number of paths
 * that reach the node (fan-out makes one batch per path), plus the bytes
 * its items own outside batches (item_bytes), plus device staging for
 * kernel nodes; a flat-map's output is scaled by the largest expansion
 * seen so far. A pull is admitted, with as many items as fit (a forced
 * batch size is kept whole), while the reservations stay within the
 * budget; the reservation is given back when the family's last batch is
 * freed. So the bytes in flight stay under the budget (a flat-map
 * expanding beyond anything seen before can overshoot by its excess), and
 * when nothing is reserved one source batch is always admitted, however
 * small the budget: runs always progress.
 *
 * Which policy uses the budget is the policy's business (policy.h,
 * `budgeted`); this module knows no policy.
 *
 * The budget knows no graph: what a pull reserves comes from a footprint
 * function (footprint.h computes it from the graph).
 *
 * Tests: tests/runtime/test_budget.c (footprints, admission, refusal and
 * the sources-open test agreeing), test_policy.c (bounds on whole runs).
 */
#ifndef PARA_BUDGET_H
#define PARA_BUDGET_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runctx.h"
#include "util.h"

/* Every batch descended from one source batch: the bytes reserved for them
 * at the source pull, given back when the last of them is freed. */
typedef struct para__family {
    _Atomic uint32_t refs; /* live batches of the family */
    uint64_t reserved;
    uint64_t dev_reserved;     /* device bytes (the device budget), or 0 */
    struct para__family *next; /* in a free list (para__family_cache) */
} para__family;

/* Free family records of one worker (kept in its batch cache, batch.h):
 * a family freed on a worker thread goes to that worker's list, and its
 * next admission takes one from there, so a busy run does not call
 * malloc() and free() per source batch. Touched by its owner only; at
 * most PARA__FAMILY_CACHE_DEPTH records. */
#define PARA__FAMILY_CACHE_DEPTH 64
typedef struct para__family_cache {
    para__family *free;
    unsigned len;
} para__family_cache;
/* The calling thread's family cache from now on (a worker binds its own
 * for the time it works a run), or NULL: plain malloc() and free(). */
void para__family_cache_bind(para__family_cache *c);
/* Free every record cached in @p c. */
void para__family_cache_drain(para__family_cache *c);

/* What a batch of @p items from source slot @p slot can hold at most, over
 * every batch it becomes (the graph knows: footprint.h); UINT64_MAX when it
 * does not fit in 64 bits. */
typedef uint64_t (*para__footprint_fn)(const void *ctx, unsigned slot,
                                       size_t items);

/* Per-run budget state (run->budget). The first fields are written before
 * the run and only read during it; the counters every admission writes are
 * on their own cache line. */
struct para__budget {
    alignas(PARA_CACHELINE) uint64_t limit; /* bytes */
    unsigned n_sources;
    para__footprint_fn footprint;
    void *footprint_ctx;
    void (*footprint_free)(void *ctx);
    _Atomic uint64_t *need; /* [slot]: footprint of the smallest pull
                               refused since the last admission (0 none,
                               UINT64_MAX: the source is exhausted) */
    /* The device budget (para__budget_set_device(); dev_limit 0: none):
     * the device bytes a family may keep on devices, reserved the same way
     * against dev_limit, so that a full device holds sources back as a full
     * host budget does. */
    uint64_t dev_limit;
    para__footprint_fn dev_footprint;
    alignas(PARA_CACHELINE) _Atomic uint64_t reserved; /* by live families */
    _Atomic uint64_t decisions;                        /* admissions decided */
    _Atomic uint64_t dev_reserved; /* device bytes, by live families */
    _Atomic uint64_t dev_need;     /* device footprint of the last pull the
                                      device budget refused (0: none) */
    _Atomic uint64_t arrival_need; /* bytes of an arrival waiting for room
                                      (para__budget_admit_arrival(); 0: none):
                                      sources leave it room */
};

/* Before a run whose policy is budgeted: run->budget. The budget owns
 * @p ctx from here on (freed with @p ctx_free, also on failure). 0 or
 * PARA_ENOMEM. */
int para__budget_begin(para__run *run, uint64_t limit, unsigned n_sources,
                       para__footprint_fn footprint, void *ctx,
                       void (*ctx_free)(void *ctx));
/* Add a device budget of @p limit bytes (0: none): @p footprint gives the
 * device bytes a pull of n items may keep on devices (same ctx as the byte
 * footprint). Before the run starts. */
void para__budget_set_device(para__run *run, uint64_t limit,
                             para__footprint_fn footprint);
/* After the run (also after a failed begin; NULL budget: nothing). */
void para__budget_end(para__run *run);
/* May source slot @p slot pull now, and how many items (at most @p want)?
 * 0 holds it back. On admission *family is the new batch's family (one
 * reference). @p forced: the size may not be halved. */
size_t para__budget_admit(para__run *run, unsigned slot, size_t want,
                          bool forced, para__family **family);
/* May a batch that arrives from elsewhere (another rank) come in now,
 * reserving @p bytes (its footprint here)? It comes in when the bytes fit
 * next to the reservations, when nothing is reserved, or when @p forced
 * (its sender was bounded by other means: credit); then *family is its
 * family (one reference) and the result 0. Else the result is PARA_EAGAIN:
 * the bytes are remembered, sources leave them room from now on (arrivals
 * are consumers' work and come first), and the caller asks again later.
 * PARA_ENOMEM: out of memory for the record (nothing reserved). */
int para__budget_admit_arrival(para__run *run, uint64_t bytes, bool forced,
                               para__family **family);
/* Source slot @p slot is exhausted: it no longer keeps sources open. */
void para__budget_source_done(para__run *run, unsigned slot);
/* Could some source be admitted now? Agrees with para__budget_admit(): a
 * source refused at some reservation level stays closed until the
 * reservations drop far enough for the pull that was refused. */
bool para__budget_sources_open(const para__run *run);
/* Fewer batches live than run->max_batches (0: no limit)? A relaxed,
 * possibly stale gate for sources. */
bool para__batches_below_limit(const para__run *run);
/* Give up one reference to @p f; the last one releases its bytes and,
 * when a source may be waiting for them (a refused pull's need is stored,
 * or a batch limit or device budget gates the sources), wakes a parked
 * worker. */
void para__family_unref(para__run *run, para__family *f);

#endif /* PARA_BUDGET_H */
