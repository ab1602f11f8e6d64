/*
 * The byte budget; see budget.h for what a family reserves and why the
 * bound holds.
 */
#include "budget.h"

#include <stdlib.h>

#include "para/errors.h"

/* The calling thread's family cache, or NULL (budget.h). Plain
 * thread-local state: only its own thread reads and writes it. */
static _Thread_local para__family_cache *family_cache PARA_TLS_FAST;

void para__family_cache_bind(para__family_cache *c)
{
    family_cache = c;
}

void para__family_cache_drain(para__family_cache *c)
{
    while (c->free != NULL) {
        para__family *f = c->free;
        c->free = f->next;
        free(f);
    }
    c->len = 0;
}

static para__family *family_new(void)
{
    para__family_cache *c = family_cache;
    if (c != NULL && c->free != NULL) {
        para__family *f = c->free;
        c->free = f->next;
        c->len--;
        return f;
    }
    return malloc(sizeof(para__family));
}

static void family_free(para__family *f)
{
    para__family_cache *c = family_cache;
    if (c != NULL && c->len < PARA__FAMILY_CACHE_DEPTH) {
        f->next = c->free;
        c->free = f;
        c->len++;
        return;
    }
    free(f);
}

int para__budget_begin(para__run *run, uint64_t limit, unsigned n_sources,
                       para__footprint_fn footprint, void *ctx,
                       void (*ctx_free)(void *ctx))
{
    para__budget *bu = aligned_alloc(PARA_CACHELINE, sizeof *bu);
    if (bu == NULL) {
        if (ctx_free != NULL)
            ctx_free(ctx);
        return PARA_ENOMEM;
    }
    bu->limit = limit;
    bu->n_sources = n_sources;
    bu->footprint = footprint;
    bu->footprint_ctx = ctx;
    bu->footprint_free = ctx_free;
    atomic_init(&bu->reserved, 0);
    atomic_init(&bu->decisions, 0);
    bu->dev_limit = 0;
    bu->dev_footprint = NULL;
    atomic_init(&bu->dev_reserved, 0);
    atomic_init(&bu->dev_need, 0);
    atomic_init(&bu->arrival_need, 0);
    run->budget = bu;
    bu->need = calloc(n_sources ? n_sources : 1, sizeof *bu->need);
    if (bu->need == NULL)
        return PARA_ENOMEM;
    for (unsigned k = 0; k < n_sources; k++)
        atomic_init(&bu->need[k], 0);
    return 0;
}

void para__budget_set_device(para__run *run, uint64_t limit,
                             para__footprint_fn footprint)
{
    run->budget->dev_limit = footprint != NULL ? limit : 0;
    run->budget->dev_footprint = footprint;
}

void para__budget_end(para__run *run)
{
    para__budget *bu = run->budget;
    if (bu == NULL)
        return;
    if (bu->footprint_free != NULL)
        bu->footprint_free(bu->footprint_ctx);
    free((void *)bu->need);
    free(bu);
    run->budget = NULL;
}

bool para__batches_below_limit(const para__run *run)
{
    /* relaxed: a heuristic gate; a stale count moves one pull. */
    return run->max_batches == 0 ||
           atomic_load_explicit(&((para__run *)run)->live_batches,
                                memory_order_relaxed) < run->max_batches;
}

/* f does not fit next to r reserved bytes under limit. */
static bool over(uint64_t r, uint64_t f, uint64_t limit)
{
    return f > limit || r > limit - f;
}

size_t para__budget_admit(para__run *run, unsigned slot, size_t want,
                          bool forced, para__family **family)
{
    para__budget *bu = run->budget;
    *family = NULL;
    /* relaxed: statistics. */
    atomic_fetch_add_explicit(&bu->decisions, 1, memory_order_relaxed);
    if (!para__batches_below_limit(run))
        return 0;
    uint64_t limit = bu->limit, dlimit = bu->dev_limit;
    /* relaxed: the CASes below decide; reservations order nothing else (the
     * batches themselves are published through the deques). */
    uint64_t r = atomic_load_explicit(&bu->reserved, memory_order_relaxed);
    /* relaxed: a hint; an arrival's own compare-and-swap keeps the bound. */
    uint64_t an = atomic_load_explicit(&bu->arrival_need, memory_order_relaxed);
    size_t n;
    uint64_t f, fd = 0;
    for (;;) {
        /* Room left for a waiting arrival (saturating). */
        uint64_t ra = r + an < r ? UINT64_MAX : r + an;
        /* relaxed: as above. */
        uint64_t rd = dlimit != 0 ? atomic_load_explicit(&bu->dev_reserved,
                                                         memory_order_relaxed)
                                  : 0;
        n = want;
        f = bu->footprint(bu->footprint_ctx, slot, n);
        fd = dlimit != 0 ? bu->dev_footprint(bu->footprint_ctx, slot, n) : 0;
        /* A forced batch size (PARA_BATCH) is kept: the source waits. */
        while (n > 1 && !forced &&
               (over(ra, f, limit) || (dlimit != 0 && over(rd, fd, dlimit)))) {
            n /= 2;
            f = bu->footprint(bu->footprint_ctx, slot, n);
            if (dlimit != 0)
                fd = bu->dev_footprint(bu->footprint_ctx, slot, n);
        }
        if (ra != 0 && over(ra, f, limit)) {
            /* Held back until a family gives bytes back; remember what it
             * would take, so that the sources-open test agrees (seq_cst:
             * the holder's half of the pattern in sources_waiting(); only
             * on this path). */
            atomic_store_explicit(&bu->need[slot], f, memory_order_seq_cst);
            return 0;
        }
        if (dlimit != 0 && rd != 0 && over(rd, fd, dlimit)) {
            /* The device is full: the same, for the device budget. */
            atomic_store_explicit(&bu->dev_need, fd, memory_order_relaxed);
            return 0;
        }
        /* relaxed: see above. */
        if (!atomic_compare_exchange_weak_explicit(&bu->reserved, &r, r + f,
                                                   memory_order_relaxed,
                                                   memory_order_relaxed))
            continue;
        /* Then the device's share; if it moved meanwhile, give the bytes
         * back and decide again (relaxed: as above). */
        if (dlimit == 0 || atomic_compare_exchange_strong_explicit(
                               &bu->dev_reserved, &rd, rd + fd,
                               memory_order_relaxed, memory_order_relaxed))
            break;
        r = atomic_fetch_sub_explicit(&bu->reserved, f, memory_order_relaxed) -
            f;
    }
    if (dlimit != 0 &&
        atomic_load_explicit(&bu->dev_need, memory_order_relaxed) != 0)
        atomic_store_explicit(&bu->dev_need, 0, memory_order_relaxed);
    /* relaxed: as above; the load avoids writing a shared line per pull. */
    if (atomic_load_explicit(&bu->need[slot], memory_order_relaxed) != 0)
        atomic_store_explicit(&bu->need[slot], 0, memory_order_relaxed);
    para__family *fam = family_new();
    if (fam == NULL) {
        /* relaxed: as above. */
        atomic_fetch_sub_explicit(&bu->reserved, f, memory_order_relaxed);
        atomic_fetch_sub_explicit(&bu->dev_reserved, fd, memory_order_relaxed);
        para__fail_run(NULL, run, PARA_ENOMEM,
                       "out of memory in the memory budget");
        return 0;
    }
    atomic_init(&fam->refs, 1); /* the source batch */
    fam->reserved = f;
    fam->dev_reserved = fd;
    *family = fam;
    return n;
}

int para__budget_admit_arrival(para__run *run, uint64_t bytes, bool forced,
                               para__family **family)
{
    para__budget *bu = run->budget;
    *family = NULL;
    para__family *fam = family_new();
    if (fam == NULL)
        return PARA_ENOMEM;
    bytes = PARA_MIN(bytes, UINT64_MAX - bu->limit); /* no wrap-around */
    /* relaxed: the compare-and-swap decides, as in para__budget_admit(). */
    uint64_t r = atomic_load_explicit(&bu->reserved, memory_order_relaxed);
    do {
        if (!forced && r != 0 && over(r, bytes, bu->limit)) {
            family_free(fam);
            /* relaxed: a hint for the sources (see the struct). */
            atomic_store_explicit(&bu->arrival_need, bytes,
                                  memory_order_relaxed);
            return PARA_EAGAIN;
        }
    } while (!atomic_compare_exchange_weak_explicit(
        &bu->reserved, &r, r + bytes, memory_order_relaxed,
        memory_order_relaxed));
    /* relaxed: as above. */
    if (atomic_load_explicit(&bu->arrival_need, memory_order_relaxed) != 0)
        atomic_store_explicit(&bu->arrival_need, 0, memory_order_relaxed);
    atomic_init(&fam->refs, 1); /* the arriving batch */
    fam->reserved = bytes;
    fam->dev_reserved = 0;
    *family = fam;
    return 0;
}

void para__budget_source_done(para__run *run, unsigned slot)
{
    /* relaxed: a hint, as need always is. */
    atomic_store_explicit(&run->budget->need[slot], UINT64_MAX,
                          memory_order_relaxed);
}

bool para__budget_sources_open(const para__run *run)
{
    para__budget *bu = run->budget;
    if (!para__batches_below_limit(run))
        return false;
    /* relaxed: a hint (parking re-checks after announcing itself, and a
     * family that gives bytes back notifies). */
    if (bu->dev_limit != 0) {
        /* relaxed: as below. A full device holds every source. */
        uint64_t rd =
            atomic_load_explicit(&bu->dev_reserved, memory_order_relaxed);
        uint64_t dn = atomic_load_explicit(&bu->dev_need, memory_order_relaxed);
        if (rd != 0 && dn != 0 && over(rd, dn, bu->dev_limit))
            return false;
    }
    /* seq_cst: the holder's re-check in the pattern of sources_waiting()
     * (a plain load on x86). */
    uint64_t r = atomic_load_explicit(&bu->reserved, memory_order_seq_cst);
    /* relaxed: as in para__budget_admit(): room left for a waiting arrival. */
    uint64_t an = atomic_load_explicit(&bu->arrival_need, memory_order_relaxed);
    if (r == 0 && an == 0)
        return true;
    r = r + an < r ? UINT64_MAX : r + an;
    if (r >= bu->limit)
        return false;
    for (unsigned k = 0; k < bu->n_sources; k++) {
        /* relaxed: as above. */
        uint64_t need =
            atomic_load_explicit(&bu->need[k], memory_order_relaxed);
        if (need != UINT64_MAX && need <= bu->limit - r)
            return true;
    }
    return false;
}

/* After a family gave its bytes back (@p before: the reservations it found,
 * its own included): may a source wait for them? A wake-up only then: a
 * busy run (no source held) pays no fence per family, and a worker parked
 * at the end of a run is not woken for nothing.
 *
 * A worker parks (scheduler.c) only after para__budget_sources_open()
 * said no, re-checked after it announced itself to the eventcount. With
 * the host budget that no is either "the reservations are at the limit"
 * or "no source's stored need fits next to them" (a refused pull stores
 * its need before it returns). Both are store-buffering patterns between
 * the holder and the releaser, closed with seq_cst on both sides so that
 * every access involved is in the single total order S:
 *  - at the limit: the holder loads `reserved` (seq_cst) after its
 *    eventcount fence; no pull adds bytes at the limit, so the first
 *    release after that load finds at least what the holder saw: that
 *    releaser notifies;
 *  - needs: the holder stores its need (seq_cst) and then loads
 *    `reserved`; the releaser subtracts (seq_cst RMW) and then loads
 *    need[] (seq_cst). If the holder's load comes before the RMW in S,
 *    the releaser's load comes after the holder's store and sees the
 *    need (a need reset to 0 by a later admission leaves the source open,
 *    or at the limit, the case above).
 * Either way the notify's own fence then sees the announced waiter
 * (eventcount.h). Gates that store no need (a batch limit, the device
 * budget) keep a wake-up per family. */
static bool sources_waiting(para__run *run, uint64_t before)
{
    const para__budget *bu = run->budget;
    if (run->max_batches != 0 || bu->dev_limit != 0 || before >= bu->limit)
        return true;
    for (unsigned k = 0; k < bu->n_sources; k++) {
        /* seq_cst: see above. */
        uint64_t need =
            atomic_load_explicit(&bu->need[k], memory_order_seq_cst);
        if (need != 0 && need != UINT64_MAX)
            return true;
    }
    return false;
}

void para__family_unref(para__run *run, para__family *f)
{
    /* acq_rel: the last reference sees every other holder's use of the
     * family before freeing it, as with a shared pointer. */
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (run == NULL)
        para__panic("a batch family outlived its run");
    para__budget *bu = run->budget;
    /* seq_cst: the releaser's half of the pattern in sources_waiting(); on
     * x86 as cheap as relaxed (a locked instruction either way). */
    uint64_t before = atomic_fetch_sub_explicit(&bu->reserved, f->reserved,
                                                memory_order_seq_cst);
    if (f->dev_reserved != 0)
        /* relaxed: the device reservation gates sources only; a run with
         * a device budget always notifies below. */
        atomic_fetch_sub_explicit(&bu->dev_reserved, f->dev_reserved,
                                  memory_order_relaxed);
    family_free(f);
    if (sources_waiting(run, before))
        para__notify(run->wake, 1); /* a held source may run now */
}
