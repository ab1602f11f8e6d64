/*
 * Scheduling policies: which ready task a worker takes first, whether a
 * source may run now, and how large its next batch is (internal.h,
 * para__policy).
 *
 *   ws        plain work stealing: consumers before sources, successors
 *             by priority, sources held back while run->max_batches
 *             batches live (8 per worker by default).
 *   memaware  (default) a byte budget. Every source batch starts a
 *             *family*: the batches it becomes downstream. At the pull the
 *             family reserves its footprint, the most bytes it can hold at
 *             once: at every node its batch (the allocation size, as
 *             batch.c rounds it) times the number of paths that reach the
 *             node (fan-out makes one batch per path), plus the bytes its
 *             items own outside batches (item_bytes), plus device staging
 *             for kernel nodes; a flat-map's output is scaled by the largest
 *             expansion seen so far. A pull is admitted, with as many items
 *             as fit (a forced batch size is kept whole), while the
 *             reservations stay within the budget; the
 *             reservation is given back when the family's last batch is
 *             freed. So the bytes in flight stay under the budget (a
 *             flat-map expanding beyond anything seen before can overshoot
 *             by its excess), and when nothing is reserved one source batch
 *             is always admitted, however small the budget: runs always
 *             progress. Only sources wait: consumers never do, so the batch
 *             an ORDERED node waits for can always move.
 *             Between ready tasks, a worker takes first the higher
 *             priority, then serial (stateful) nodes, then nodes nearer the
 *             sinks: consumers free memory, stateful nodes cannot be
 *             parallelised and must not starve.
 *   dhondt    memaware, plus workers given to stages by D'Hondt on backlog
 *             x cost (below): a producer owed workers runs before queued
 *             work.
 *
 * Tests: tests/runtime/test_policy.c, and test_differential.c (random
 * graphs under every policy, budgets down to one batch per node).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ---- successor order ----------------------------------------------------- */

/* Successors are pushed in succ_order and popped LIFO: the last is taken
 * first. */
static void order_successors(para_graph_t *g, bool memaware)
{
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        for (unsigned s = 0; s < n->n_succs; s++) {
            para_node_t *succ = n->succs[s];
            unsigned at = s;
            while (at > 0) {
                const para_node_t *prev = n->succs[n->succ_order[at - 1]];
                bool after = prev->priority > succ->priority;
                if (memaware && prev->priority == succ->priority)
                    after = prev->serial != succ->serial
                                ? prev->serial
                                : prev->depth_to_sink < succ->depth_to_sink;
                if (!after)
                    break;
                n->succ_order[at] = n->succ_order[at - 1];
                at--;
            }
            n->succ_order[at] = s;
        }
    }
}

/* ---- ws ------------------------------------------------------------------ */

static int ws_run_begin(para__run *run)
{
    order_successors(run->graph, false);
    return 0;
}

static bool batches_below_limit(const para__run *run)
{
    /* relaxed: a heuristic gate; a stale count moves one pull. */
    return atomic_load_explicit(&((para__run *)run)->live_batches,
                                memory_order_relaxed) < run->max_batches;
}

static size_t ws_admit(para__worker *w, para__run *run, para_node_t *s,
                       size_t want, para__family **family)
{
    (void)w;
    (void)s;
    *family = NULL;
    return batches_below_limit(run) ? want : 0;
}

static bool ws_sources_open(const para__run *run)
{
    return batches_below_limit(run);
}

/* ---- memaware ------------------------------------------------------------ */

static int memaware_run_begin(para__run *run)
{
    para_graph_t *g = run->graph;
    order_successors(g, true);
    size_t cells = (size_t)g->n_sources * g->n_nodes;
    run->path_mult = calloc(cells ? cells : 1, sizeof *run->path_mult);
    if (run->path_mult == NULL)
        return PARA_ENOMEM;
    for (unsigned k = 0; k < g->n_sources; k++) {
        para_node_t *src = g->sources[k];
        src->source_slot = k;
        uint32_t *mult = &run->path_mult[(size_t)k * g->n_nodes];
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

/* The most bytes a batch of @p items from source @p s can hold at once,
 * over all the batches it becomes. */
static uint64_t footprint(const para__run *run, const para_node_t *s,
                          size_t items)
{
    const para_graph_t *g = run->graph;
    const uint32_t *mult = &run->path_mult[(size_t)s->source_slot * g->n_nodes];
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
            out_items = (uint64_t)items * PARA_MAX(x16, 16u) / 16 + 1;
        }
        uint64_t one =
            para__batch_alloc_size(n->n_succs, out_items * n->out_size) +
            out_items * n->item_bytes;
        if (n->placement != PARA__PLACE_CPU) /* device staging */
            one += (uint64_t)items * (n->in_size + n->out_size);
        total += m * one;
    }
    return total;
}

static size_t memaware_admit(para__worker *w, para__run *run, para_node_t *s,
                             size_t want, para__family **family)
{
    (void)w;
    *family = NULL;
    /* relaxed: statistics. */
    atomic_fetch_add_explicit(&run->decisions, 1, memory_order_relaxed);
    uint64_t budget = run->budget;
    if (run->max_batches > 0 && !batches_below_limit(run))
        return 0;
    /* relaxed: the CAS below decides; reservations order nothing else. */
    uint64_t r = atomic_load_explicit(&run->reserved, memory_order_relaxed);
    size_t n;
    uint64_t f;
    do {
        n = want;
        f = footprint(run, s, n);
        /* A forced batch size (PARA_BATCH) is kept: the source waits. */
        while (n > 1 && run->forced_batch_items == 0 &&
               (f > budget || r > budget - f)) {
            n /= 2;
            f = footprint(run, s, n);
        }
        if (r != 0 && (f > budget || r > budget - f))
            return 0; /* held back until a family gives bytes back */
        /* relaxed: see above. */
    } while (!atomic_compare_exchange_weak_explicit(
        &run->reserved, &r, r + f, memory_order_relaxed, memory_order_relaxed));
    para__family *fam = malloc(sizeof *fam);
    if (fam == NULL) {
        /* relaxed: as above. */
        atomic_fetch_sub_explicit(&run->reserved, f, memory_order_relaxed);
        para__fail_run(NULL, run, PARA_ENOMEM,
                       "out of memory in the memory policy");
        return 0;
    }
    atomic_init(&fam->refs, 1); /* the source batch */
    fam->reserved = f;
    *family = fam;
    return n;
}

static bool memaware_sources_open(const para__run *run)
{
    if (run->max_batches > 0 && !batches_below_limit(run))
        return false;
    /* relaxed: a hint. */
    uint64_t r = atomic_load_explicit(&((para__run *)run)->reserved,
                                      memory_order_relaxed);
    return r == 0 || r < run->budget;
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
    atomic_fetch_sub_explicit(&run->reserved, f->reserved,
                              memory_order_relaxed);
    free(f);
    para__notify_one(run->rt); /* a held source may run now */
}

/* ---- dhondt -------------------------------------------------------------- */

/* Workers are given to stages by the D'Hondt (Jefferson) method: stage v
 * has load L_v = items waiting x ns per item, and the objective
 * sum_v L_v / (seats_v + 1) is convex and separable, so handing out the W
 * seats one by one, each to the stage with the largest marginal gain
 * L_v / ((s_v + 1)(s_v + 2)), is optimal (O(W log S) with a heap). A stage
 * gets no more seats than it has batches waiting (a batch is not split),
 * a serial stage at most one. A source's waiting work is one batch per
 * worker (what it would produce to feed everyone). Workers still take any
 * ready task (work stealing); what the allocation adds is production: a
 * worker pulls a source before its own queued tasks when the source holds
 * more seats than it has pullers, so an expensive producer stage gets the
 * cores it is owed instead of only the idle ones. Budget and order are
 * memaware's. */

#define DHONDT_PERIOD_NS 500000 /* allocate again every 0.5 ms */
#define DHONDT_MAX_STAGES 64    /* stages considered per allocation */

typedef struct seat_claim {
    double load;
    uint32_t seats, cap;
    para_node_t *node;
} seat_claim;

static double marginal_gain(const seat_claim *c)
{
    return c->load / (((double)c->seats + 1.0) * ((double)c->seats + 2.0));
}

static void sift_down(seat_claim **h, unsigned n, unsigned i)
{
    for (;;) {
        unsigned l = 2 * i + 1, r = l + 1, best = i;
        if (l < n && marginal_gain(h[l]) > marginal_gain(h[best]))
            best = l;
        if (r < n && marginal_gain(h[r]) > marginal_gain(h[best]))
            best = r;
        if (best == i)
            return;
        seat_claim *tmp = h[i];
        h[i] = h[best];
        h[best] = tmp;
        i = best;
    }
}

/* ns per item and items per batch of @p n so far (1 ns and 16 items when
 * not measured yet, so that every stage counts). */
static void stage_rates(para_node_t *n, bool source, double *ns_per_item,
                        double *batch_items)
{
    /* relaxed: statistics read as estimates. */
    uint64_t busy = atomic_load_explicit(&n->st_busy_ns, memory_order_relaxed);
    uint64_t batches =
        atomic_load_explicit(&n->st_batches, memory_order_relaxed);
    uint64_t items = atomic_load_explicit(
        source ? &n->st_items_out : &n->st_items_in, memory_order_relaxed);
    *ns_per_item = items > 0 && busy > 0 ? (double)busy / (double)items : 1.0;
    *batch_items =
        batches > 0 && items > 0 ? (double)items / (double)batches : 16.0;
}

static void dhondt_allocate(para__run *run)
{
    para_graph_t *g = run->graph;
    unsigned workers = run->rt->n_workers;
    seat_claim claims[DHONDT_MAX_STAGES], *heap[DHONDT_MAX_STAGES];
    unsigned n = 0;
    for (unsigned i = 0; i < g->n_nodes && n < DHONDT_MAX_STAGES; i++) {
        para_node_t *v = g->nodes[i];
        /* relaxed: read as a hint by produce_first. */
        atomic_store_explicit(&v->dh_seats, 0, memory_order_relaxed);
        bool source = para__is_source(v);
        double cost, batch, waiting;
        stage_rates(v, source, &cost, &batch);
        uint32_t cap;
        if (source) {
            /* relaxed: a hint. */
            if (atomic_load_explicit(&v->src_state, memory_order_relaxed) &
                PARA__SRC_EXHAUSTED)
                continue;
            waiting = batch * workers;
            cap = v->kind == PARA__KIND_SOURCE_FN ? 1 : workers;
        } else {
            /* relaxed: a hint. */
            int64_t b =
                atomic_load_explicit(&v->dh_backlog, memory_order_relaxed);
            if (b <= 0)
                continue;
            waiting = (double)b;
            double batches = (double)b / batch + 1.0;
            cap = v->serial ? 1 : (uint32_t)PARA_MIN((double)workers, batches);
        }
        claims[n] = (seat_claim){waiting * cost, 0, cap, v};
        heap[n] = &claims[n];
        n++;
    }
    unsigned live = n;
    for (unsigned i = live / 2; i-- > 0;)
        sift_down(heap, live, i);
    for (unsigned seat = 0; seat < workers && live > 0; seat++) {
        seat_claim *top = heap[0];
        top->seats++;
        if (top->seats >= top->cap)
            heap[0] = heap[--live]; /* full: leaves the heap */
        sift_down(heap, live, 0);
    }
    for (unsigned i = 0; i < n; i++)
        /* relaxed: as above. */
        atomic_store_explicit(&claims[i].node->dh_seats, claims[i].seats,
                              memory_order_relaxed);
}

static bool dhondt_produce_first(para__worker *w, para__run *run)
{
    (void)w;
    if (para__aborting(run))
        return false;
    uint64_t now = para__now_ns();
    /* relaxed: whoever wins the CAS allocates; the others use the last
     * allocation, at most one period old. */
    uint64_t next =
        atomic_load_explicit(&run->dh_next_ns, memory_order_relaxed);
    if (now >= next && atomic_compare_exchange_strong_explicit(
                           &run->dh_next_ns, &next, now + DHONDT_PERIOD_NS,
                           memory_order_relaxed, memory_order_relaxed))
        dhondt_allocate(run);
    para_graph_t *g = run->graph;
    for (unsigned k = 0; k < g->n_sources; k++) {
        para_node_t *s = g->sources[k];
        /* relaxed: hints; source_pull() decides. */
        uint32_t seats =
            atomic_load_explicit(&s->dh_seats, memory_order_relaxed);
        uint64_t st = atomic_load_explicit(&s->src_state, memory_order_relaxed);
        if ((st & PARA__SRC_EXHAUSTED) == 0 && seats > st / PARA__SRC_PULLER)
            return true;
    }
    return false;
}

/* ---- the table ----------------------------------------------------------- */

static const para__policy policies[] = {
    {"memaware",
     "a byte budget: sources wait while the bytes reserved by batches in "
     "flight would pass it; consumers, stateful nodes and nodes nearer the "
     "sinks first",
     true, memaware_run_begin, memaware_admit, memaware_sources_open, NULL,
     false},
    {"ws", "work stealing: local LIFO, steal FIFO, consumers before sources",
     false, ws_run_begin, ws_admit, ws_sources_open, NULL, false},
    {"dhondt",
     "memaware, and workers given to stages by D'Hondt on backlog x cost: "
     "a producer owed workers runs before queued work",
     true, memaware_run_begin, memaware_admit, memaware_sources_open,
     dhondt_produce_first, true},
};

const para__policy *para__policy_find(const char *name, char *msg,
                                      size_t msg_len)
{
    size_t n = sizeof policies / sizeof policies[0];
    for (size_t i = 0; i < n; i++)
        if (name != NULL && strcmp(name, policies[i].name) == 0)
            return &policies[i];
    int len = snprintf(msg, msg_len, "unknown policy '%s'; known policies:",
                       name != NULL ? name : "(null)");
    for (size_t i = 0; i < n && len >= 0 && (size_t)len < msg_len; i++)
        len += snprintf(msg + len, msg_len - (size_t)len, " %s (%s)%s",
                        policies[i].name, policies[i].description,
                        i + 1 < n ? "," : "");
    return NULL;
}

void para__policy_run_end(para__run *run)
{
    free(run->path_mult);
    run->path_mult = NULL;
}
