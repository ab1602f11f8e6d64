/*
 * Items that own memory: who releases an item, and when.
 *
 * A node that declares a release hook (para_node_desc_t.release) makes
 * output batches that own their items. Ownership follows the batch:
 *
 *   batch->owner        the node whose hook releases the items (NULL: the
 *                       items own nothing), with that node's ctx and
 *                       out_size;
 *   batch->owned_begin  items [owned_begin, count) are still the batch's;
 *                       the ones before it were taken by a consumer
 *                       (PARA_NODE_TAKES, a collect) or decided by a filter
 *                       (moved to its output, or released at once).
 *
 * para__batch_free() releases what the batch still owns (batch.c keeps a
 * copy of the owner's hook, ctx and item size), whichever way the
 * batch ends: read by every successor, dropped by an aborted or cancelled
 * run, left in a reorder buffer, handed back by a device, or freed as the
 * output of a failing node. Since a batch is freed exactly once, every item
 * is released exactly once. Fan-out shares one batch among successors by
 * reference count, so a fanned-out item is released once, after the last
 * reader; that is why a node that takes or moves items must be its
 * producer's only successor (para__owned_check(): it would otherwise take
 * an item that another successor still reads).
 *
 * A filter's output batch owns the kept items under the same owner as its
 * input (the filter moves them; its items are the same bytes). The budget
 * counts each owned item's bytes as the batch is handed on (owned_bytes, or
 * the constant item_bytes), and footprints use the largest per-item figure
 * seen in the run, so after a node's first batch the reservation is an
 * upper bound again.
 *
 * Tests: tests/runtime/test_owned.c (every path under ASan, the budget
 * with per-item bytes).
 */
#include <stddef.h>
#include <string.h>

#include "owned.h"
#include "para/records.h"

static bool is_batch_kind(const para_node_t *n)
{
    return n->kind == PARA__KIND_MAP_BATCH ||
           n->kind == PARA__KIND_FLAT_MAP_BATCH ||
           n->kind == PARA__KIND_SINK_BATCH;
}

/* Does @p n take or move the items of its input batches? */
static bool takes_input(const para_node_t *n)
{
    return (n->flags & PARA_NODE_TAKES) != 0 || n->kind == PARA__KIND_FILTER ||
           n->kind == PARA__KIND_COLLECT;
}

int para__owned_check(para_graph_t *g, para_node_t *const *order)
{
    for (unsigned t = 0; t < g->n_nodes; t++) {
        para_node_t *n = order[t];
        n->owned_out = n->release != NULL;
        if (n->kind == PARA__KIND_FILTER)
            for (unsigned j = 0; j < n->n_preds; j++)
                n->owned_out |= n->preds[j]->owned_out;
        if (!takes_input(n))
            continue;
        for (unsigned j = 0; j < n->n_preds; j++) {
            const para_node_t *p = n->preds[j];
            if (p->owned_out && p->n_succs > 1)
                return para__graph_fail(
                    g, PARA_EINVAL,
                    "node '%s' %s the owned items of '%s', which fans out to "
                    "%u nodes: a fanned-out item is shared read-only until "
                    "the last of them is done, so no successor may take it",
                    n->name, n->kind == PARA__KIND_FILTER ? "filters" : "takes",
                    p->name, p->n_succs);
        }
    }
    return 0;
}

void para__owned_begin_output(const para_node_t *n, const para__batch *in,
                              para__batch *o)
{
    const para_node_t *ow = NULL;
    if (n->release != NULL)
        ow = n;
    else if (n->kind == PARA__KIND_FILTER && in != NULL)
        ow = in->owner;
    o->owner = ow;
    o->owned_begin = 0;
    if (ow != NULL) {
        o->own_release = ow->release;
        o->own_ctx = ow->ctx;
        o->own_size = ow->out_size;
    }
}

void para__owned_drop(para__batch *in, size_t i)
{
    const para_node_t *ow = in->owner;
    ow->release(ow->ctx, in->data + i * ow->out_size, 1);
}

void para__owned_input_done(const para_node_t *n, para__batch *in, size_t done,
                            bool ok)
{
    if (!takes_input(n))
        return;
    size_t taken;
    if (ok)
        taken = in->count;
    else if (n->kind == PARA__KIND_FILTER)
        taken = done; /* decided ones moved or released already */
    else if (n->kind == PARA__KIND_COLLECT || is_batch_kind(n))
        taken = 0; /* a failing batch call takes nothing */
    else
        taken = done; /* per-item calls that returned 0 */
    if (taken > in->owned_begin)
        in->owned_begin = taken;
}

/* Here rather than in records.c: para__owned_count_bytes() knows it by
 * its address (and the graph layer calls nothing above it). */
size_t para_slice_bytes(void *ctx, const void *item)
{
    (void)ctx;
    return ((const para_slice_t *)item)->len;
}

uint64_t para__owned_count_bytes(para_node_t *n, const para__batch *out)
{
    /* A filter hands on its input's owned items: count them as their
     * owner does. UINT64_MAX when the count overflows. */
    const para_node_t *ow = out->owner != NULL ? out->owner : n;
    if (ow->owned_bytes == NULL) {
        uint64_t extra;
        if (__builtin_mul_overflow((uint64_t)(out->count - out->owned_begin),
                                   (uint64_t)ow->item_bytes, &extra))
            return UINT64_MAX;
        return extra;
    }
    uint64_t total = 0, most = 0;
    if (ow->owned_bytes == para_slice_bytes) {
        bool over = false;
        /* What para_slice_bytes() returns (the length of the slice an item
         * starts with), read in place: a batch of records is thousands of
         * lines, and a call per line is a sixth of this loop's cost. */
        const size_t size = ow->out_size;
        for (size_t i = out->owned_begin; i < out->count; i++) {
            size_t b;
            memcpy(&b, out->data + i * size + offsetof(para_slice_t, len),
                   sizeof b);
            over |= __builtin_add_overflow(total, (uint64_t)b, &total);
            most = PARA_MAX(most, (uint64_t)b);
        }
        if (over)
            return UINT64_MAX;
    } else {
        for (size_t i = out->owned_begin; i < out->count; i++) {
            size_t b = ow->owned_bytes(ow->ctx, out->data + i * ow->out_size);
            if (__builtin_add_overflow(total, (uint64_t)b, &total))
                return UINT64_MAX;
            most = PARA_MAX(most, (uint64_t)b);
        }
    }
    para_node_t *est = (para_node_t *)ow;
    /* relaxed load + store: a maximum kept as an estimate (as
     * note_expansion() does); a lost update is corrected by a later batch. */
    if (most > atomic_load_explicit(&est->owned_max, memory_order_relaxed))
        atomic_store_explicit(&est->owned_max, most, memory_order_relaxed);
    return total;
}

uint64_t para__owned_item_estimate(const para_node_t *n)
{
    if (n->owned_bytes == NULL)
        return n->item_bytes;
    /* relaxed: an estimate. */
    uint64_t seen = atomic_load_explicit(&((para_node_t *)n)->owned_max,
                                         memory_order_relaxed);
    return PARA_MAX(seen, (uint64_t)n->item_bytes);
}
