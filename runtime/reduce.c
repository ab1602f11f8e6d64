/*
 * Reduce nodes: a parallel sink with per-worker partial states.
 *
 * Unordered: the run begins with one partial per worker, each on its own
 * cache lines, set by init(). A worker folds every batch it runs into its
 * own partial (para__reduce_fold() gets the worker's index from the
 * scheduler), so folds never share state and need no lock. At the end of a
 * successful run the thread in para_run() merges the partials, in worker
 * order, into a fresh init() state and copies it to the result; the
 * workers' last writes are ordered before by the run's termination (the
 * unit count's acq_rel chain and the runtime lock).
 *
 * ORDERED: each batch is folded into a partial of its own, kept in the
 * folding worker's list with the batch's key (seq_begin, path: the key
 * ORDERED nodes run in). At the end all partials are sorted by key and
 * merged in that order, so the result does not depend on which worker
 * folded what, only on the batch boundaries.
 *
 * Tests: tests/runtime/test_reduce.c.
 */
#include "para/reduce.h"

#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "graph.h"
#include "reduce_node.h"

typedef struct partial {
    uint64_t seq;
    uint32_t path;
    unsigned char *state;
} partial;

typedef struct worker_parts { /* ORDERED: owned by one worker */
    partial *v;
    size_t n, cap;
    size_t next; /* merge cursor */
} worker_parts;

typedef struct reduce {
    para_reduce_desc_t d;
    size_t stride; /* per-worker partial, rounded to cache lines */
    unsigned workers;
    unsigned char *acc; /* the merge's accumulator, made at run begin */
    unsigned char *slots;
    worker_parts *parts;
} reduce;

static void reduce_free_run(reduce *r)
{
    if (r->parts != NULL)
        for (unsigned w = 0; w < r->workers; w++) {
            for (size_t i = 0; i < r->parts[w].n; i++)
                free(r->parts[w].v[i].state);
            free(r->parts[w].v);
        }
    free(r->parts);
    free(r->slots);
    free(r->acc);
    r->parts = NULL;
    r->slots = NULL;
    r->acc = NULL;
}

static void reduce_ctx_free(void *ctx)
{
    reduce *r = ctx;
    reduce_free_run(r);
    free(r);
}

static int reduce_begin(para_node_t *n, unsigned workers)
{
    reduce *r = n->ctx;
    r->workers = workers;
    r->acc = malloc(r->d.state_size);
    if (r->acc == NULL)
        return PARA_ENOMEM;
    if (r->d.flags & PARA_REDUCE_ORDERED) {
        r->parts = calloc(workers, sizeof *r->parts);
        if (r->parts != NULL)
            return 0;
        reduce_free_run(r);
        return PARA_ENOMEM;
    }
    r->slots = aligned_alloc(PARA_CACHELINE, r->stride * workers);
    if (r->slots == NULL) {
        reduce_free_run(r);
        return PARA_ENOMEM;
    }
    for (unsigned w = 0; w < workers; w++)
        r->d.init(r->d.ctx, r->slots + (size_t)w * r->stride);
    return 0;
}

static int key_cmp(const void *a, const void *b)
{
    const partial *x = a, *y = b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->path < y->path ? -1 : x->path > y->path;
}

static void reduce_end(para_node_t *n, int status)
{
    reduce *r = n->ctx;
    if (status != 0) {
        reduce_free_run(r);
        return;
    }
    unsigned char *acc = r->acc;
    r->d.init(r->d.ctx, acc);
    if (r->slots != NULL) {
        for (unsigned w = 0; w < r->workers; w++)
            r->d.merge(r->d.ctx, acc, r->slots + (size_t)w * r->stride);
    } else {
        /* Each worker's list is sorted (it folds batches in whatever order
         * it got them), then merged by always taking the smallest head. */
        for (unsigned w = 0; w < r->workers; w++)
            if (r->parts[w].n > 1)
                qsort(r->parts[w].v, r->parts[w].n, sizeof(partial), key_cmp);
        for (;;) {
            worker_parts *best = NULL;
            for (unsigned w = 0; w < r->workers; w++) {
                worker_parts *wp = &r->parts[w];
                if (wp->next < wp->n &&
                    (best == NULL ||
                     key_cmp(&wp->v[wp->next], &best->v[best->next]) < 0))
                    best = wp;
            }
            if (best == NULL)
                break;
            r->d.merge(r->d.ctx, acc, best->v[best->next++].state);
        }
    }
    memcpy(r->d.result, acc, r->d.state_size);
    reduce_free_run(r);
}

bool para__reduce_tileable(const para_node_t *n)
{
    const reduce *r = n->ctx;
    return (r->d.flags & PARA_REDUCE_ORDERED) == 0;
}

int para__reduce_fold(para_node_t *n, unsigned worker, const para__task *t,
                      const void *items, size_t count)
{
    reduce *r = n->ctx;
    if (r->slots != NULL)
        return r->d.fold(r->d.ctx, r->slots + (size_t)worker * r->stride, items,
                         count);
    worker_parts *wp = &r->parts[worker];
    if (wp->n == wp->cap) {
        size_t cap = wp->cap ? wp->cap * 2 : 64;
        partial *v = realloc(wp->v, cap * sizeof *v);
        if (v == NULL)
            return PARA_ENOMEM;
        wp->v = v;
        wp->cap = cap;
    }
    unsigned char *st = malloc(r->d.state_size);
    if (st == NULL)
        return PARA_ENOMEM;
    r->d.init(r->d.ctx, st);
    int rc = r->d.fold(r->d.ctx, st, items, count);
    wp->v[wp->n++] = (partial){t->batch->seq_begin, t->path, st};
    return rc;
}

int para_graph_add_reduce(para_graph_t *g, const para_reduce_desc_t *d,
                          para_node_t **out)
{
    if (g == NULL)
        return PARA_EINVAL;
    if (d == NULL)
        return para__graph_fail(g, PARA_EINVAL, "reduce: desc is NULL");
    const char *name = d->name != NULL ? d->name : "(null)";
    if (d->init == NULL || d->fold == NULL || d->merge == NULL ||
        d->result == NULL || d->state_size == 0 || d->in_size == 0)
        return para__graph_fail(g, PARA_EINVAL,
                                "reduce '%s': init, fold, merge, result, "
                                "state_size and in_size are required",
                                name);
    if ((d->flags & ~(unsigned)PARA_REDUCE_ORDERED) != 0)
        return para__graph_fail(
            g, PARA_EINVAL, "reduce '%s': unknown flags 0x%x", name, d->flags);
    reduce *r = calloc(1, sizeof *r);
    if (r == NULL)
        return para__graph_fail(g, PARA_ENOMEM, "out of memory adding '%s'",
                                name);
    r->d = *d;
    r->stride =
        (d->state_size + PARA_CACHELINE - 1) & ~(size_t)(PARA_CACHELINE - 1);
    para_node_desc_t nd = {.name = d->name, .in_size = d->in_size, .ctx = r};
    para_node_t *n = NULL;
    int rc = para__graph_add_kind(g, &nd, PARA__KIND_REDUCE, &n);
    if (rc != 0) {
        free(r);
        return rc;
    }
    para__node_set_ctx_free(n, reduce_ctx_free);
    para__node_set_run_hooks(n, reduce_begin, reduce_end);
    if (out != NULL)
        *out = n;
    return 0;
}
