/*
 * The byte budget; see budget.h for what a family reserves and why the
 * bound holds.
 */
#include "budget.h"

#include <stdlib.h>

#include "internal.h"

/* Saturating arithmetic: a footprint that does not fit in 64 bits is
 * "more than any budget", never a wrapped-around small number. */
static uint64_t add_sat(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

int para__budget_begin(para__run *run, uint64_t limit)
{
    para__budget *bu = &run->budget;
    para_graph_t *g = run->graph;
    bu->limit = limit;
    atomic_init(&bu->reserved, 0);
    atomic_init(&bu->decisions, 0);
    size_t cells = (size_t)g->n_sources * g->n_nodes;
    bu->path_mult = calloc(cells ? cells : 1, sizeof *bu->path_mult);
    bu->need = calloc(g->n_sources ? g->n_sources : 1, sizeof *bu->need);
    if (bu->path_mult == NULL || bu->need == NULL)
        return PARA_ENOMEM;
    for (unsigned k = 0; k < g->n_sources; k++) {
        para_node_t *src = g->sources[k];
        atomic_init(&bu->need[k], 0);
        src->source_slot = k;
        uint32_t *mult = &bu->path_mult[(size_t)k * g->n_nodes];
        for (unsigned t = 0; t < g->n_nodes; t++) {
            para_node_t *n = g->topo[t];
            uint64_t paths = n == src ? 1 : 0;
            for (unsigned j = 0; j < n->n_preds; j++)
                paths += mult[n->preds[j]->index];
            mult[n->index] = (uint32_t)PARA_MIN(paths, UINT32_MAX);
        }
    }
    return 0;
}

void para__budget_end(para__run *run)
{
    free(run->budget.path_mult);
    free((void *)run->budget.need);
    run->budget.path_mult = NULL;
    run->budget.need = NULL;
}

uint64_t para__budget_footprint(const para__run *run, const para_node_t *s,
                                size_t items)
{
    const para_graph_t *g = run->graph;
    const uint32_t *mult =
        &run->budget.path_mult[(size_t)s->source_slot * g->n_nodes];
    uint64_t total = 0;
    for (unsigned i = 0; i < g->n_nodes; i++) {
        const para_node_t *n = g->nodes[i];
        uint32_t m = mult[i];
        if (m == 0 || para__is_sink(n))
            continue;
        uint64_t out_items = items;
        if (n->kind == PARA__KIND_FLAT_MAP ||
            n->kind == PARA__KIND_FLAT_MAP_BATCH) {
            /* relaxed: an estimate. */
            uint32_t x16 = atomic_load_explicit(&((para_node_t *)n)->expand_x16,
                                                memory_order_relaxed);
            out_items = add_sat(mul_sat(items, PARA_MAX(x16, 16u)) / 16, 1);
        }
        uint64_t out_bytes = mul_sat(out_items, n->out_size);
        uint64_t one =
            out_bytes >= SIZE_MAX
                ? UINT64_MAX
                : add_sat(para__batch_alloc_size(n->n_succs, (size_t)out_bytes),
                          mul_sat(out_items, para__owned_item_estimate(n)));
        if (n->placement != PARA__PLACE_CPU) /* device staging */
            one =
                add_sat(one, mul_sat(items, add_sat(n->in_size, n->out_size)));
        total = add_sat(total, mul_sat(m, one));
    }
    return total;
}

bool para__batches_below_limit(const para__run *run)
{
    /* relaxed: a heuristic gate; a stale count moves one pull. */
    return run->max_batches == 0 ||
           atomic_load_explicit(&((para__run *)run)->live_batches,
                                memory_order_relaxed) < run->max_batches;
}

size_t para__budget_admit(para__run *run, para_node_t *s, size_t want,
                          para__family **family)
{
    para__budget *bu = &run->budget;
    *family = NULL;
    /* relaxed: statistics. */
    atomic_fetch_add_explicit(&bu->decisions, 1, memory_order_relaxed);
    if (!para__batches_below_limit(run))
        return 0;
    uint64_t limit = bu->limit;
    /* relaxed: the CAS below decides; reservations order nothing else (the
     * batches themselves are published through the deques). */
    uint64_t r = atomic_load_explicit(&bu->reserved, memory_order_relaxed);
    size_t n;
    uint64_t f;
    do {
        n = want;
        f = para__budget_footprint(run, s, n);
        /* A forced batch size (PARA_BATCH) is kept: the source waits. */
        while (n > 1 && run->forced_batch_items == 0 &&
               (f > limit || r > limit - f)) {
            n /= 2;
            f = para__budget_footprint(run, s, n);
        }
        if (r != 0 && (f > limit || r > limit - f)) {
            /* Held back until a family gives bytes back; remember what it
             * would take, so that the sources-open test agrees (relaxed: a
             * hint for parking; a stale value costs one extra try). */
            atomic_store_explicit(&bu->need[s->source_slot], f,
                                  memory_order_relaxed);
            return 0;
        }
        /* relaxed: see above. */
    } while (!atomic_compare_exchange_weak_explicit(
        &bu->reserved, &r, r + f, memory_order_relaxed, memory_order_relaxed));
    /* relaxed: as above; the load avoids writing a shared line per pull. */
    if (atomic_load_explicit(&bu->need[s->source_slot], memory_order_relaxed))
        atomic_store_explicit(&bu->need[s->source_slot], 0,
                              memory_order_relaxed);
    para__family *fam = malloc(sizeof *fam);
    if (fam == NULL) {
        /* relaxed: as above. */
        atomic_fetch_sub_explicit(&bu->reserved, f, memory_order_relaxed);
        para__fail_run(NULL, run, PARA_ENOMEM,
                       "out of memory in the memory budget");
        return 0;
    }
    atomic_init(&fam->refs, 1); /* the source batch */
    fam->reserved = f;
    *family = fam;
    return n;
}

bool para__budget_sources_open(const para__run *run)
{
    const para__budget *bu = &run->budget;
    if (!para__batches_below_limit(run))
        return false;
    /* relaxed: a hint (parking re-checks after announcing itself, and a
     * family that gives bytes back notifies). */
    uint64_t r = atomic_load_explicit(&((para__budget *)bu)->reserved,
                                      memory_order_relaxed);
    if (r == 0)
        return true;
    if (r >= bu->limit)
        return false;
    const para_graph_t *g = run->graph;
    for (unsigned k = 0; k < g->n_sources; k++) {
        para_node_t *s = g->sources[k];
        /* relaxed: hints, as above. */
        if (atomic_load_explicit(&s->src_state, memory_order_relaxed) &
            PARA__SRC_EXHAUSTED)
            continue;
        uint64_t need = atomic_load_explicit(&((para__budget *)bu)->need[k],
                                             memory_order_relaxed);
        if (need <= bu->limit - r)
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
    /* relaxed: the reservation gates sources only. */
    atomic_fetch_sub_explicit(&run->budget.reserved, f->reserved,
                              memory_order_relaxed);
    free(f);
    para__notify(run->rt, 1); /* a held source may run now */
}
