/*
 * Policy "dhondt": memaware's budget and order, plus workers given to
 * stages by D'Hondt on backlog x cost: a producer owed workers runs before
 * stealing, while its consumers are short of work.
 *
 * Workers are given to stages by the D'Hondt (Jefferson) method: stage v
 * has load L_v = items waiting x ns per item, and the objective
 * sum_v L_v / (seats_v + 1) is convex and separable, so handing out the W
 * seats one by one, each to the stage with the largest marginal gain
 * L_v / ((s_v + 1)(s_v + 2)), is optimal (O(W log S) with a heap). A stage
 * gets no more seats than it has batches waiting (a batch is not split),
 * a serial stage at most one. A source's waiting work is one batch per
 * worker (what it would produce to feed everyone). Workers still take any
 * ready task (work stealing); what the allocation adds is production: a
 * worker with no queued task of its own pulls a source before it steals
 * when the source holds more seats than it has pullers and no consumer
 * has a feed (one source batch per worker) waiting, so an expensive
 * producer stage gets the cores it is owed instead of only the idle ones,
 * and a cheap one does not run ahead of its consumers (consumers_hungry()).
 *
 * State (this file's own, per run): per node, the items queued for it
 * (tasks delivered, not started), its seats in the last allocation and, for
 * a source, its feed; when to allocate again. All relaxed: heuristics.
 */
#include <stdlib.h>

#include "graph.h"
#include "policy.h"
#include "scheduler.h"

#define DHONDT_PERIOD_NS 500000 /* allocate again every 0.5 ms */
#define DHONDT_MAX_STAGES 64    /* stages considered per allocation */

typedef struct dhondt_node {
    /* Own cache line per node: every delivery and task start writes it. */
    alignas(PARA_CACHELINE) _Atomic int64_t backlog;
    _Atomic uint32_t seats;
    /* A source's feed: the items its successors may have queued before a
     * worker owed to it stops producing first (one batch per worker). */
    _Atomic int64_t feed;
} dhondt_node;

typedef struct dhondt_state {
    _Atomic uint64_t next_ns; /* when to allocate again */
    dhondt_node *nodes;       /* [node->index] */
} dhondt_state;

typedef struct seat_claim {
    double load;
    uint32_t seats, cap;
    para_node_t *node;
} seat_claim;

static int dhondt_run_begin(para__run *run, void **state)
{
    para_graph_t *g = run->graph;
    para__policy_order_successors(g, true);
    dhondt_state *st = calloc(1, sizeof *st);
    *state = st;
    if (st == NULL)
        return PARA_ENOMEM;
    size_t bytes = (size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof(dhondt_node);
    st->nodes = aligned_alloc(PARA_CACHELINE, bytes);
    if (st->nodes == NULL)
        return PARA_ENOMEM;
    atomic_init(&st->next_ns, 0);
    for (unsigned i = 0; i < g->n_nodes; i++) {
        atomic_init(&st->nodes[i].backlog, 0);
        atomic_init(&st->nodes[i].seats, 0);
        atomic_init(&st->nodes[i].feed, 0);
    }
    return 0;
}

static void dhondt_run_end(para__run *run, void *state)
{
    (void)run;
    dhondt_state *st = state;
    if (st != NULL)
        free(st->nodes);
    free(st);
}

static void dhondt_task_queued(void *state, const para_node_t *n, size_t items)
{
    dhondt_state *st = state;
    /* relaxed: a heuristic for the allocation of workers. */
    atomic_fetch_add_explicit(&st->nodes[n->index].backlog, (int64_t)items,
                              memory_order_relaxed);
}

static void dhondt_task_started(void *state, const para_node_t *n, size_t items)
{
    dhondt_state *st = state;
    /* relaxed: as above. */
    atomic_fetch_sub_explicit(&st->nodes[n->index].backlog, (int64_t)items,
                              memory_order_relaxed);
}

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
    /* Statistics read as estimates (summed over the workers). */
    para__node_counts c;
    para__node_counts_get(n, &c);
    uint64_t busy = c.busy_ns, batches = c.batches;
    uint64_t items = source ? c.items_out : c.items_in;
    *ns_per_item = items > 0 && busy > 0 ? (double)busy / (double)items : 1.0;
    *batch_items =
        batches > 0 && items > 0 ? (double)items / (double)batches : 16.0;
}

static void dhondt_allocate(dhondt_state *st, para__run *run)
{
    para_graph_t *g = run->graph;
    unsigned workers = run->rt->n_workers;
    seat_claim claims[DHONDT_MAX_STAGES], *heap[DHONDT_MAX_STAGES];
    unsigned n = 0;
    for (unsigned i = 0; i < g->n_nodes && n < DHONDT_MAX_STAGES; i++) {
        para_node_t *v = g->nodes[i];
        dhondt_node *dv = &st->nodes[v->index];
        /* relaxed: read as a hint by produce_first. */
        atomic_store_explicit(&dv->seats, 0, memory_order_relaxed);
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
            cap = para__source_serial(v) ? 1 : workers;
            /* relaxed: as above. */
            atomic_store_explicit(&dv->feed, (int64_t)waiting,
                                  memory_order_relaxed);
        } else {
            /* relaxed: a hint. */
            int64_t b =
                atomic_load_explicit(&dv->backlog, memory_order_relaxed);
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
        atomic_store_explicit(&st->nodes[claims[i].node->index].seats,
                              claims[i].seats, memory_order_relaxed);
}

/* Consumers first, as in memaware: a worker owed to a source pulls it
 * before queued work only while (a) its own deque is empty (the newest task
 * there consumes what it produced last: a serial sink's drain task sits
 * below every batch pulled after it, so producing on top of it starves the
 * sink that frees the memory) and (b) no stage below a source has a feed's
 * worth (one source batch per worker) of items waiting. Past that the
 * workers have enough to do and producing more only holds memory (and,
 * where the source allocates buffers, touches memory no longer in cache).
 * A producer that is the bottleneck is not slowed: its consumers never
 * build up a backlog. Without this, a cheap source given a whole seat
 * (seats are whole workers: a fifth of a core's worth of demand rounds up
 * to one of two cores) ran ahead of its consumers, up to the byte budget. */
static bool consumers_hungry(dhondt_state *st, const para_graph_t *g,
                             const para_node_t *s)
{
    /* relaxed: hints, as above. */
    int64_t feed =
        atomic_load_explicit(&st->nodes[s->index].feed, memory_order_relaxed);
    for (unsigned i = 0; i < g->n_nodes; i++) {
        if (para__is_source(g->nodes[i]))
            continue;
        int64_t b =
            atomic_load_explicit(&st->nodes[i].backlog, memory_order_relaxed);
        if (b >= feed)
            return false;
    }
    return true;
}

static bool dhondt_produce_first(void *state, para__worker *w, para__run *run)
{
    dhondt_state *st = state;
    /* (a) of consumers_hungry(), first: it is one load, and while every
     * worker has queued work no allocation is needed. */
    if (para__aborting(run) || para__deque_size_estimate(&w->deque) > 0)
        return false;
    uint64_t now = para__now_ns();
    /* relaxed: whoever wins the CAS allocates; the others use the last
     * allocation, at most one period old. */
    uint64_t next = atomic_load_explicit(&st->next_ns, memory_order_relaxed);
    if (now >= next && atomic_compare_exchange_strong_explicit(
                           &st->next_ns, &next, now + DHONDT_PERIOD_NS,
                           memory_order_relaxed, memory_order_relaxed))
        dhondt_allocate(st, run);
    para_graph_t *g = run->graph;
    for (unsigned k = 0; k < g->n_sources; k++) {
        para_node_t *s = g->sources[k];
        /* relaxed: hints; the source pull decides. */
        uint32_t seats = atomic_load_explicit(&st->nodes[s->index].seats,
                                              memory_order_relaxed);
        uint64_t src =
            atomic_load_explicit(&s->src_state, memory_order_relaxed);
        if ((src & PARA__SRC_EXHAUSTED) == 0 &&
            seats > src / PARA__SRC_PULLER && consumers_hungry(st, g, s))
            return true;
    }
    return false;
}

static size_t dhondt_admit(void *state, para__worker *w, para__run *run,
                           para_node_t *s, size_t want, para__family **family)
{
    (void)state;
    (void)w;
    return para__budget_admit(run, s->source_slot, want,
                              run->forced_batch_items != 0, family);
}

static bool dhondt_sources_open(void *state, const para__run *run)
{
    (void)state;
    return para__budget_sources_open(run);
}

const para__policy para__policy_dhondt = {
    .name = "dhondt",
    .description =
        "memaware, and workers given to stages by D'Hondt on backlog x cost: "
        "a producer owed workers is pulled before stealing, while its "
        "consumers are short of work",
    .budgeted = true,
    .run_begin = dhondt_run_begin,
    .run_end = dhondt_run_end,
    .admit = dhondt_admit,
    .sources_open = dhondt_sources_open,
    .produce_first = dhondt_produce_first,
    .task_queued = dhondt_task_queued,
    .task_started = dhondt_task_started,
};
