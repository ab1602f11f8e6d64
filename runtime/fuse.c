/*
 * Fused CPU chains; see fuse.h for what a chain is and what stays as
 * without fusion.
 */
#include "fuse.h"

#include <limits.h>
#include <stdalign.h>
#include <string.h>

#include "batch.h"
#include "reduce_node.h"

/* ---- the plan ------------------------------------------------------------ */

/* May @p n be a stage of a chain at all? @p forced: the run's batch size
 * is forced (PARA_BATCH), and batch functions then see whole batches. */
static bool stage_ok(const para_node_t *n, bool forced)
{
    if (forced && (n->kind == PARA__KIND_MAP_BATCH ||
                   n->kind == PARA__KIND_FLAT_MAP_BATCH ||
                   n->kind == PARA__KIND_SINK_BATCH))
        return false;
    if (n->serial || n->placement != PARA__PLACE_CPU || n->kernel != NULL ||
        n->owned_out)
        return false;
    for (unsigned i = 0; i < n->n_preds; i++)
        if (n->preds[i]->owned_out)
            return false; /* owned items are handed over per batch */
    switch (n->kind) {
    case PARA__KIND_MAP:
    case PARA__KIND_MAP_BATCH:
    case PARA__KIND_FILTER:
    case PARA__KIND_FLAT_MAP:
    case PARA__KIND_FLAT_MAP_BATCH:
    case PARA__KIND_SINK:
    case PARA__KIND_SINK_BATCH:
        return true;
    case PARA__KIND_REDUCE:
        /* An ORDERED reduction keeps one partial per batch key: folding a
         * batch in tiles would make several. */
        return para__reduce_tileable(n);
    default:
        return false;
    }
}

/* May @p n pass its output on to a next stage in tiles? */
static bool passes_tiles(const para_node_t *n)
{
    return n->kind == PARA__KIND_MAP || n->kind == PARA__KIND_MAP_BATCH ||
           n->kind == PARA__KIND_FILTER;
}

/* May @p n's tasks run its only successor @p s inline, when s is free
 * (scheduler.c, para__deliver())? */
static bool tail_ok(const para_node_t *n, const para_node_t *s)
{
    if (para__is_source(n) || n->serial || n->placement != PARA__PLACE_CPU ||
        n->kernel != NULL)
        return false;
    /* Never an ORDERED node: it runs its batches in key order only. */
    return s->serial && (s->flags & PARA_NODE_ORDERED) == 0 &&
           s->placement == PARA__PLACE_CPU && s->kernel == NULL &&
           !para__is_source(s);
}

void para__fuse_plan(para__run *run, bool on)
{
    para_graph_t *g = run->graph;
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        n->fuse_next = NULL;
        n->fuse_tail = NULL;
        n->fuse_inner = false;
        n->src_fused = false;
        n->fuse_fan = false;
        n->fuse_tile = 0;
        n->fuse_stages = 0;
    }
    run->wide_fill = para__fuse_wide_fill(); /* once, not per task */
    if (!on)
        return;
    const bool forced = run->forced_batch_items != 0;
    /* Topological order: a chain is walked from its head, before any of
     * its inner stages is visited. */
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *head = g->topo[i];
        if (head->fuse_inner || para__is_source(head) ||
            !stage_ok(head, forced))
            continue;
        size_t widest = 8; /* a fused range's indices */
        unsigned stages = 1;
        para_node_t *cur = head;
        while (stages < PARA__FUSE_MAX_STAGES && passes_tiles(cur) &&
               cur->n_succs == 1 && cur->out_size <= PARA__FUSE_MAX_ITEM &&
               cur->succs[0]->n_preds == 1 && stage_ok(cur->succs[0], forced)) {
            para_node_t *next = cur->succs[0];
            widest = PARA_MAX(widest, cur->out_size);
            cur->fuse_next = next;
            next->fuse_inner = true;
            cur = next;
            stages++;
        }
        if (head->in_size <= PARA__FUSE_MAX_ITEM)
            widest = PARA_MAX(widest, head->in_size);
        head->fuse_stages = stages;
        head->fuse_tile = PARA_MAX(PARA__FUSE_TILE_BYTES / widest, (size_t)1);
    }
    /* Range and array sources whose successors are all chain heads that
     * can take a tile of their items: nothing to materialise. */
    for (unsigned i = 0; i < g->n_sources; i++) {
        para_node_t *s = g->sources[i];
        if (s->kind != PARA__KIND_RANGE && s->kind != PARA__KIND_ARRAY)
            continue;
        bool all = s->n_succs > 0 && s->out_size <= PARA__FUSE_MAX_ITEM;
        for (unsigned k = 0; all && k < s->n_succs; k++) {
            const para_node_t *h = s->succs[k];
            all = h->fuse_stages > 0;
        }
        s->src_fused = all;
    }
    /* Fused fan-out: a CPU node (no kernel, items that own nothing)
     * whose successors, two to PARA__FUSE_MAX_FAN of them, are all chain
     * heads. */
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        bool all = n->n_succs >= 2 && n->n_succs <= PARA__FUSE_MAX_FAN &&
                   n->placement == PARA__PLACE_CPU && n->kernel == NULL &&
                   !n->owned_out && !para__is_sink(n);
        for (unsigned k = 0; all && k < n->n_succs; k++)
            all = n->succs[k]->fuse_stages > 0;
        n->fuse_fan = all;
    }
    /* Serial tails: a parallel CPU node that delivers to one serial,
     * unordered CPU node only. A chain's last stage is such a node when
     * it is an inner stage too: it delivers the chain's output (a stage
     * before it hands its tiles to a parallel successor, which tail_ok()
     * turns down). */
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        if (n->n_succs == 1 && tail_ok(n, n->succs[0]))
            n->fuse_tail = n->succs[0];
    }
}

/* ---- running a chain ----------------------------------------------------- */

/* Run stage @p n on @p m items at @p src, writing to @p dst (its output
 * items; for a flat-map the emitter @p e; nothing for sinks). Returns 0 and
 * *produced, or the node's error (*done: the items it took before). */
static int stage(para__worker *w, para_node_t *n, const para__task *t,
                 const unsigned char *src, size_t m, unsigned char *dst,
                 para_emitter_t *e, size_t *produced)
{
    void *ctx = n->ctx;
    const size_t is = n->in_size, os = n->out_size;
    int rc = 0;
    *produced = 0;
    switch (n->kind) {
    case PARA__KIND_MAP: {
        para_map_fn fn = n->fn.map;
        for (size_t i = 0; i < m; i++)
            if ((rc = fn(ctx, src + i * is, dst + i * os)) != 0) {
                *produced = i; /* a failed item's output is not an item */
                return rc;
            }
        *produced = m;
        return 0;
    }
    case PARA__KIND_MAP_BATCH:
        rc = n->fn.map_batch(ctx, src, dst, m);
        *produced = rc == 0 ? m : 0;
        return rc;
    case PARA__KIND_FILTER: {
        size_t done;
        return para__filter_items(n, src, m, dst, &done, produced);
    }
    case PARA__KIND_FLAT_MAP: {
        size_t before = e->batch->count;
        for (size_t i = 0; i < m && rc == 0; i++)
            rc = n->fn.flat_map(ctx, src + i * is, e);
        if (e->failed && rc == 0)
            rc = PARA_ENOMEM;
        *produced = e->batch->count - before;
        return rc;
    }
    case PARA__KIND_FLAT_MAP_BATCH: {
        size_t before = e->batch->count;
        rc = n->fn.flat_map_batch(ctx, src, m, e);
        if (e->failed && rc == 0)
            rc = PARA_ENOMEM;
        *produced = e->batch->count - before;
        return rc;
    }
    case PARA__KIND_SINK: {
        para_sink_fn fn = n->fn.sink;
        for (size_t i = 0; i < m; i++)
            if ((rc = fn(ctx, src + i * is)) != 0)
                return rc;
        return 0;
    }
    case PARA__KIND_SINK_BATCH:
        return n->fn.sink_batch(ctx, src, m);
    case PARA__KIND_REDUCE:
        return para__reduce_fold(n, w->id, t, src, m);
    default:
        para__panic("node '%s': kind %d cannot be fused", n->name, n->kind);
    }
}

/* A fused range's tile: @p m indices from @p first. The loop is
 * store-bound, and -O2 does not vectorise it by itself: 16-byte stores
 * (two indices each) everywhere, or with @p wide (x86-64 with AVX2) two
 * 32-byte stores an iteration, on two running vectors so that the adds do
 * not chain: 0.07 ns an index against 0.14 on the development VM's Zen 4,
 * 3-4 % of w3's work. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PARA_FUSE_WIDE_FILL 1
__attribute__((target("avx2"))) static size_t
fill_indices_avx2(uint64_t *v, uint64_t first, size_t m)
{
    typedef uint64_t u64x4 __attribute__((vector_size(32)));
    u64x4 x = {first, first + 1, first + 2, first + 3};
    u64x4 y = x + 4;
    const u64x4 eight = {8, 8, 8, 8};
    size_t i = 0;
    for (; i + 8 <= m; i += 8) {
        memcpy(v + i, &x, sizeof x);
        memcpy(v + i + 4, &y, sizeof y);
        x += eight;
        y += eight;
    }
    return i;
}
#else
#define PARA_FUSE_WIDE_FILL 0
#endif

void para__fuse_fill_indices(uint64_t *v, uint64_t first, size_t m, bool wide)
{
    size_t i = 0;
#if PARA_FUSE_WIDE_FILL
    if (wide)
        i = fill_indices_avx2(v, first, m);
#else
    (void)wide;
#endif
    typedef uint64_t u64x2 __attribute__((vector_size(16)));
    u64x2 x = {first + i, first + i + 1};
    const u64x2 two = {2, 2};
    for (; i + 2 <= m; i += 2) {
        memcpy(v + i, &x, sizeof x);
        x += two;
    }
    for (; i < m; i++)
        v[i] = first + i;
}

bool para__fuse_wide_fill(void)
{
#if PARA_FUSE_WIDE_FILL
    return __builtin_cpu_supports("avx2") != 0;
#else
    return false;
#endif
}

/* Per-stage accounting of one fused task. */
typedef struct stage_acc {
    size_t in, out;
    uint64_t sampled_ns;
} stage_acc;

/* One branch of a fused task: a chain, the input port of its head, and
 * the last stage's output (NULL for a sink) with its emitter. */
typedef struct branch {
    para_node_t *stage[PARA__FUSE_MAX_STAGES];
    unsigned k;     /* stages */
    unsigned first; /* its first stage's entry in the task's acc[] */
    unsigned port;
    uint32_t path;
    para__batch *o;
    para_emitter_t e;
} branch;

/* Collect the branches of task @p t: one, the head's chain, or with a
 * fused fan-out upstream every successor's chain, in delivery order. */
static unsigned collect_branches(para__task *t, branch *br)
{
    para_node_t *head = t->node;
    const para_node_t *pred = head->preds[t->in_port];
    unsigned nb = 0, at = 0;
    unsigned heads = pred->fuse_fan ? pred->n_succs : 1;
    for (unsigned h = 0; h < heads; h++) {
        branch *b = &br[nb++];
        if (pred->fuse_fan) {
            unsigned i = pred->succ_order[h];
            b->stage[0] = pred->succs[i];
            b->port = pred->succ_port[i];
            b->path = t->batch->path + b->stage[0]->in_path_offset[b->port];
        } else {
            b->stage[0] = head;
            b->port = t->in_port;
            b->path = t->path;
        }
        b->k = 0;
        for (para_node_t *n = b->stage[0]; n != NULL; n = n->fuse_next)
            b->stage[b->k++] = n;
        b->first = at;
        at += b->k;
        b->o = NULL;
    }
    return nb;
}

int para__fuse_run(para__worker *w, para__run *run, para__task *t,
                   para__fuse_out *outs, unsigned *n_outs)
{
    para__batch *in = t->batch;
    const para_node_t *pred = t->node->preds[t->in_port];
    const size_t count = in->count;
    branch br[PARA__FUSE_MAX_FAN];
    stage_acc acc[PARA__FUSE_MAX_FAN * PARA__FUSE_MAX_STAGES];
    const unsigned nb = collect_branches(t, br);
    const unsigned k = br[nb - 1].first + br[nb - 1].k; /* all stages */
    size_t tile = SIZE_MAX;
    for (unsigned b = 0; b < nb; b++)
        tile = PARA_MIN(tile, br[b].stage[0]->fuse_tile);
    memset(acc, 0, k * sizeof acc[0]);
    *n_outs = 0;

    uint64_t t0 = para__now_ns();
    int rc = 0;
    para_node_t *failed = NULL;
    for (unsigned b = 0; b < nb; b++) {
        const para_node_t *last = br[b].stage[br[b].k - 1];
        br[b].e = (para_emitter_t){
            .cache = &w->cache, .run = run, .batch = NULL, .item_size = 0};
        if (para__is_sink(last))
            continue;
        para__batch *o =
            para__batch_alloc(&w->cache, run, para__fuse_readers(last),
                              para__mul_sat(count ? count : 1, last->out_size));
        if (o == NULL) {
            para__fail_run(w, run, PARA_ENOMEM,
                           "out of memory for the output of node '%s'",
                           last->name);
            rc = PARA_ENOMEM;
            goto fail;
        }
        o->seq_begin = in->seq_begin;
        o->seq_end = in->seq_end;
        o->path = br[b].path; /* inner stages have one input: same path */
        para__batch_join_family(o, in);
        br[b].o = o;
        br[b].e.batch = o;
        br[b].e.item_size = last->out_size;
    }

    /* A fused range's indices go in their own tile buffer (every branch
     * reads them); two more for the inner edges of each branch. */
    alignas(PARA_CACHELINE) unsigned char buf[2][PARA__FUSE_TILE_BYTES];
    alignas(PARA_CACHELINE) uint64_t idx[PARA__FUSE_TILE_BYTES / 8];
    const bool gen_range = pred->src_fused && pred->kind == PARA__KIND_RANGE;
    const uint64_t first_value =
        gen_range ? pred->range_begin + in->seq_begin : 0;
    /* The thread's input port and item numbers (para_input_port(),
     * para_item_index()) are set only when they change: the same port
     * for every tile's stages, and numbers left in place from one
     * numbered stage to the next. */
    int port_now = INT_MIN; /* unknown: the first stage sets it */
    bool indexed = false;
    size_t tiles = 0;
    for (size_t at = 0; at < count; at += tile, tiles++) {
        if (PARA_UNLIKELY(para__aborting(run))) {
            rc = PARA_ECANCELED; /* someone else failed the run */
            break;
        }
        const size_t tile_m = PARA_MIN(tile, count - at);
        const unsigned char *tile_src;
        if (gen_range) {
            para__fuse_fill_indices(idx, first_value + at, tile_m,
                                    run->wide_fill);
            tile_src = (const unsigned char *)idx;
        } else {
            tile_src = in->data + at * br[0].stage[0]->in_size;
        }
        bool timed = tiles % PARA__FUSE_SAMPLE == 0;
        uint64_t ts = timed ? para__now_ns() : 0;
        for (unsigned b = 0; b < nb && failed == NULL; b++) {
            branch *B = &br[b];
            const unsigned char *src = tile_src;
            size_t m = tile_m;
            int cur = -1; /* the tile buffer src is in, or -1 */
            for (unsigned j = 0; j < B->k && m > 0; j++) {
                para_node_t *n = B->stage[j];
                para__batch *o = B->o;
                unsigned char *dst;
                if (j + 1 < B->k) {
                    cur = cur == 0 ? 1 : 0;
                    dst = buf[cur];
                } else {
                    dst = o != NULL && n->kind != PARA__KIND_FLAT_MAP &&
                                  n->kind != PARA__KIND_FLAT_MAP_BATCH
                              ? o->data + o->count * n->out_size
                              : NULL;
                }
                int port = j == 0 ? (int)B->port : 0;
                if (port != port_now) {
                    para__set_input_port(port);
                    port_now = port;
                }
                /* para_item_index(): a numbered stage has only maps before
                 * it (graph.c), so the tile's items are the batch's from
                 * `at`. */
                if (n->numbered) {
                    para__item_index_enter(src, m, n->in_size,
                                           in->seq_begin + at);
                    indexed = true;
                } else if (indexed) {
                    para__item_index_leave();
                    indexed = false;
                }
                size_t produced = 0;
                rc = stage(w, n, t, src, m, dst, &B->e, &produced);
                stage_acc *a = &acc[B->first + j];
                a->in += m;
                a->out += produced;
                if (rc != 0) {
                    failed = n;
                    break;
                }
                if (j + 1 == B->k && o != NULL) {
                    if (B->e.batch != o) /* a flat-map grew it */
                        B->o = B->e.batch;
                    else if (dst != NULL)
                        o->count += produced;
                }
                if (timed) {
                    uint64_t now = para__now_ns();
                    a->sampled_ns += now - ts;
                    ts = now;
                }
                src = dst;
                m = produced;
            }
        }
        if (failed != NULL)
            break;
    }
    para__set_input_port(-1);
    if (indexed)
        para__item_index_leave();
    for (unsigned b = 0; b < nb; b++)
        if (br[b].e.batch != NULL)
            br[b].o = br[b].e.batch;
    uint64_t dt = para__now_ns() - t0;
    para__counter_add(&w->c_busy_ns, dt);
    /* A fused task counts as one task per stage, as each stage counts one
     * batch (the caller counts the first). */
    para__counter_add(&w->c_tasks, k - 1);

    /* Statistics: each stage in this worker's slot; the task's time split
     * by the sampled shares. */
    uint64_t sampled = 0;
    for (unsigned j = 0; j < k; j++)
        sampled += acc[j].sampled_ns;
    uint64_t share[PARA__FUSE_MAX_FAN * PARA__FUSE_MAX_STAGES];
    uint64_t left = dt;
    for (unsigned j = 0; j < k; j++) {
        uint64_t sh;
        if (j + 1 == k)
            sh = left; /* the shares add up to the task's time */
        else if (sampled != 0)
            sh = (uint64_t)((double)dt * (double)acc[j].sampled_ns /
                            (double)sampled);
        else
            sh = dt / k;
        share[j] = PARA_MIN(sh, left);
        left -= share[j];
    }
    uint64_t at_ns = t0;
    for (unsigned b = 0; b < nb; b++) {
        const branch *B = &br[b];
        uint64_t span = 0;
        for (unsigned j = 0; j < B->k; j++)
            span += share[B->first + j];
        /* The branch's span first: its stages' spans lie inside it. */
        para__trace_fused(w->trace, B->stage[0]->index,
                          B->stage[B->k - 1]->index, B->k, at_ns, at_ns + span,
                          count, B->o != NULL ? B->o->count : 0);
        for (unsigned j = 0; j < B->k; j++) {
            para_node_t *n = B->stage[j];
            const stage_acc *a = &acc[B->first + j];
            uint64_t sh = share[B->first + j];
            para__node_wstat *st = para__wstat(w, n);
            para__counter_add(&st->busy_ns, sh);
            if (rc == 0) {
                para__learn_cost(n, a->in, sh);
                para__counter_add(&st->items_in, a->in);
                para__counter_add(&st->batches, 1);
                if (!para__is_sink(n))
                    para__counter_add(&st->items_out, a->out);
                if (n->kind == PARA__KIND_FLAT_MAP ||
                    n->kind == PARA__KIND_FLAT_MAP_BATCH)
                    para__note_expansion(n, a->in, a->out);
            }
            para__trace_task(w->trace, n->index, at_ns, at_ns + sh, a->in,
                             para__is_sink(n) ? 0 : a->out);
            at_ns += sh;
        }
    }

    if (rc != 0)
        goto fail;
    for (unsigned b = 0; b < nb; b++)
        if (br[b].o != NULL)
            outs[(*n_outs)++] =
                (para__fuse_out){br[b].o, br[b].stage[br[b].k - 1]};
    return 0;

fail:
    for (unsigned b = 0; b < nb; b++)
        if (br[b].o != NULL)
            para__batch_free(&w->cache, run, br[b].o);
    if (failed != NULL)
        para__fail_node(w, run, failed, rc);
    return rc;
}
