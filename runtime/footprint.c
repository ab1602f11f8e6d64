/*
 * Footprints; see footprint.h.
 */
#include "footprint.h"

#include <stdlib.h>

#include "batch.h"
#include "owned.h"

struct para__footprints {
    const para_graph_t *graph;
    bool resident;       /* see para__footprints_new() */
    uint32_t *path_mult; /* [slot * n_nodes + node]: batches a source batch
                            becomes at each node */
    uint32_t *scratch;   /* [node]: para__footprint_arrival()'s paths */
};

/* Saturating arithmetic: see footprint.h. */
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

para__footprints *para__footprints_new(const para_graph_t *g, bool resident)
{
    para__footprints *fp = malloc(sizeof *fp);
    if (fp == NULL)
        return NULL;
    fp->graph = g;
    fp->resident = resident;
    size_t cells = (size_t)g->n_sources * g->n_nodes;
    fp->path_mult = calloc(cells ? cells : 1, sizeof *fp->path_mult);
    fp->scratch = calloc(g->n_nodes ? g->n_nodes : 1, sizeof *fp->scratch);
    if (fp->path_mult == NULL || fp->scratch == NULL) {
        free(fp->path_mult);
        free(fp->scratch);
        free(fp);
        return NULL;
    }
    for (unsigned k = 0; k < g->n_sources; k++) {
        para_node_t *src = g->sources[k];
        src->source_slot = k;
        uint32_t *mult = &fp->path_mult[(size_t)k * g->n_nodes];
        for (unsigned t = 0; t < g->n_nodes; t++) {
            para_node_t *n = g->topo[t];
            uint64_t paths = n == src ? 1 : 0;
            for (unsigned j = 0; j < n->n_preds; j++)
                paths += mult[n->preds[j]->index];
            mult[n->index] = (uint32_t)PARA_MIN(paths, UINT32_MAX);
        }
    }
    return fp;
}

uint64_t para__footprint_device(const void *ctx, unsigned slot, size_t items)
{
    const para__footprints *fp = ctx;
    const para_graph_t *g = fp->graph;
    const uint32_t *mult = &fp->path_mult[(size_t)slot * g->n_nodes];
    uint64_t total = 0;
    for (unsigned i = 0; i < g->n_nodes; i++) {
        const para_node_t *n = g->nodes[i];
        if (mult[i] == 0 || n->kernel == NULL ||
            n->placement == PARA__PLACE_CPU)
            continue;
        /* Its output may stay on the device for a kernel node after it. */
        bool kept = false;
        for (unsigned j = 0; j < n->n_succs; j++)
            kept |= n->succs[j]->kernel != NULL &&
                    n->succs[j]->placement != PARA__PLACE_CPU;
        if (kept)
            total =
                add_sat(total, mul_sat(mult[i], mul_sat(items, n->out_size)));
    }
    return total;
}

void para__footprints_free(void *fp)
{
    if (fp == NULL)
        return;
    free(((para__footprints *)fp)->path_mult);
    free(((para__footprints *)fp)->scratch);
    free(fp);
}

/* A node whose launches all run on the device (kernel only). */
static bool device_only(const para_node_t *n)
{
    return n->kernel != NULL && n->placement == PARA__PLACE_DEVICE;
}

/* Are all @p n of @p nodes device-only (and is there one at least)? */
static bool all_device_only(para_node_t *const *nodes, unsigned n)
{
    for (unsigned j = 0; j < n; j++)
        if (!device_only(nodes[j]))
            return false;
    return n > 0;
}

/* With residency: @p n's outputs stay on the device only (every successor
 * is device-only; device_node.c's out_plan() then copies nothing back). */
static bool output_on_device(const para__footprints *fp, const para_node_t *n)
{
    return fp->resident && device_only(n) &&
           all_device_only(n->succs, n->n_succs);
}

/* With residency: @p n's inputs are on the device already (every
 * predecessor is device-only and keeps its output for @p n). */
static bool input_on_device(const para__footprints *fp, const para_node_t *n)
{
    return fp->resident && device_only(n) &&
           all_device_only(n->preds, n->n_preds);
}

/* The most bytes node @p n holds for one batch of @p items that reaches it:
 * its output batch (scaled for a flat-map), what the output's items own,
 * and device staging for a kernel node. Sinks hold nothing of their own. */
static uint64_t node_footprint(const para__footprints *fp, para_node_t *n,
                               size_t items)
{
    if (para__is_sink(n))
        return 0;
    uint64_t out_items = items;
    if (n->kind == PARA__KIND_FLAT_MAP ||
        n->kind == PARA__KIND_FLAT_MAP_BATCH) {
        /* relaxed: an estimate. */
        uint32_t x16 =
            atomic_load_explicit(&n->expand_x16, memory_order_relaxed);
        out_items = add_sat(mul_sat(items, PARA_MAX(x16, 16u)) / 16, 1);
    }
    bool out_dev = output_on_device(fp, n);
    /* An array source's batches are views of the array (no item bytes). */
    uint64_t out_bytes = out_dev || n->kind == PARA__KIND_ARRAY
                             ? 0
                             : mul_sat(out_items, n->out_size);
    uint64_t one =
        out_bytes > SIZE_MAX / 2
            ? UINT64_MAX
            : add_sat(para__batch_alloc_size(n->n_succs, (size_t)out_bytes),
                      mul_sat(out_items, para__owned_item_estimate(n)));
    if (n->placement != PARA__PLACE_CPU) /* device staging */
        one = add_sat(
            one, mul_sat(items, add_sat(input_on_device(fp, n) ? 0 : n->in_size,
                                        out_dev ? 0 : n->out_size)));
    return one;
}

uint64_t para__footprint(const void *ctx, unsigned slot, size_t items)
{
    const para__footprints *fp = ctx;
    const para_graph_t *g = fp->graph;
    const uint32_t *mult = &fp->path_mult[(size_t)slot * g->n_nodes];
    uint64_t total = 0;
    for (unsigned i = 0; i < g->n_nodes; i++)
        if (mult[i] != 0)
            total =
                add_sat(total, mul_sat(mult[i],
                                       node_footprint(fp, g->nodes[i], items)));
    return total;
}

uint64_t para__footprint_arrival(void *ctx, para_node_t *n, size_t items,
                                 uint64_t batch_bytes, const bool *here)
{
    para__footprints *fp = ctx;
    const para_graph_t *g = fp->graph;
    uint32_t *mult = fp->scratch;
    uint64_t total = batch_bytes;
    for (unsigned t = 0; t < g->n_nodes; t++) {
        para_node_t *m = g->topo[t];
        uint64_t paths = m == n ? 1 : 0;
        if (paths == 0 && here[m->index])
            for (unsigned j = 0; j < m->n_preds; j++)
                paths += mult[m->preds[j]->index];
        mult[m->index] = (uint32_t)PARA_MIN(paths, UINT32_MAX);
        if (paths != 0)
            total =
                add_sat(total, mul_sat(paths, node_footprint(fp, m, items)));
    }
    return total;
}
