/*
 * peer-omp: the workloads of the benchmark contract (BENCHMARKS.md) written
 * with OpenMP (libgomp).
 *
 *   w1 w2 w6 w7  the chain table of peer_common.c as a worksharing loop,
 *                schedule(dynamic, 1), over items (omp-item) or chunks of
 *                chain->chunk items (omp-chunk). The loop body makes the
 *                source items and runs the stages in turn: PARALLEL stages
 *                as they are, SERIAL ones inside `omp critical`, ORDERED
 *                ones inside `omp ordered` (the loop then has the ordered
 *                clause), which is how OpenMP writes a pipeline's serial
 *                and in-order stages.
 *   w1           omp-reduce: `parallel for reduction(+)`, schedule(static):
 *                the serial sink becomes a reduction, OpenMP's own idiom.
 *   w3           omp-item / omp-chunk: the loop body runs both branches
 *                (the out-of-line stage functions of peer_common.c) and
 *                hands each result (item or chunk) to the sink in `omp
 *                critical`. No reduction variant: inlined, the graph folds
 *                to an empty loop.
 *   lp           the Taskflow linear pipeline with tasks: one task per item
 *                and stage, `depend(inout: line[i % 8])` so that 8 items
 *                (tokens) are in flight, plus `depend(inout: stage[s])` on
 *                serial stages, which orders them in creation order (in
 *                order); one thread creates the tasks.
 *
 * One-token-per-item variants of w1 and w3 run PEER_ITEM_CAP items.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_common.h"

/* ---- chains ------------------------------------------------------------ */

struct chain_run {
    const peer_chain_t *chain;
    peer_state_t *st;
    size_t per;
};

static int has_ordered(const peer_chain_t *c)
{
    for (int s = 0; s < c->nstages; s++)
        if (c->stage[s].kind == PEER_ORDERED)
            return 1;
    return 0;
}

/* The stages of one chunk; called from inside the loop, so the serial and
 * ordered constructs bind to it. */
static void chunk_body(const peer_chain_t *c, peer_state_t *st,
                       peer_item_t *items, size_t n)
{
    for (int s = 0; s < c->nstages; s++) {
        const peer_stage_t *stg = &c->stage[s];
        if (stg->kind == PEER_PARALLEL) {
            stg->fn(items, n, st);
        } else if (stg->kind == PEER_SERIAL) {
#pragma omp critical(peer_serial)
            stg->fn(items, n, st);
        } else {
#pragma omp ordered
            stg->fn(items, n, st);
        }
    }
}

static int chain_timed(void *p, bench_row_t *row)
{
    struct chain_run *r = p;
    const peer_chain_t *c = r->chain;
    peer_state_t *st = r->st;
    peer_state_reset(st);
    long long chunks = (long long)((st->n + r->per - 1) / r->per);
    size_t per = r->per;
    uint64_t n = st->n;
    if (has_ordered(c)) {
#pragma omp parallel
        {
            peer_item_t *items = malloc(per * sizeof *items);
#pragma omp for schedule(dynamic, 1) ordered
            for (long long k = 0; k < chunks; k++) {
                uint64_t first = (uint64_t)k * per;
                size_t m = n - first < per ? (size_t)(n - first) : per;
                peer_source_fill(items, first, m);
                chunk_body(c, st, items, m);
            }
            free(items);
        }
    } else {
#pragma omp parallel
        {
            peer_item_t *items = malloc(per * sizeof *items);
#pragma omp for schedule(dynamic, 1)
            for (long long k = 0; k < chunks; k++) {
                uint64_t first = (uint64_t)k * per;
                size_t m = n - first < per ? (size_t)(n - first) : per;
                peer_source_fill(items, first, m);
                chunk_body(c, st, items, m);
            }
            free(items);
        }
    }
    peer_state_check(st, row);
    return row->ok ? 0 : 1;
}

static int w1_reduce_timed(void *p, bench_row_t *row)
{
    peer_state_t *st = p;
    peer_state_reset(st);
    uint64_t sum = 0;
    long long n = (long long)st->n;
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (long long i = 0; i < n; i++)
        sum += spin((uint64_t)i, 16);
    st->sum = sum;
    st->count = st->n;
    peer_state_check(st, row);
    return row->ok ? 0 : 1;
}

static int omp_chain(const bench_cfg_t *cfg, const char *id)
{
    const peer_chain_t *c = peer_chain_find(id);
    peer_state_t *st = calloc(1, sizeof *st);
    if (st == NULL)
        return 1;
    uint64_t full = cfg->quick ? c->quick_items : c->items;
    st->n = full;
    double seq = peer_run_seq(cfg, c, st);
    int failed = 0;
    const struct {
        const char *variant;
        size_t per;
    } vs[] = {{"omp-item", 1}, {"omp-chunk", c->chunk}};
    for (size_t v = 0; v < 2; v++) {
        uint64_t n = vs[v].per == 1 ? peer_item_cap(id, full) : full;
        if (n != full) {
            st->n = n;
            c->seq(st);
        }
        bench_row_t row;
        bench_row_init(&row, id, vs[v].variant, n, cfg->threads);
        row.seq_seconds = seq * (double)n / (double)full;
        struct chain_run r = {c, st, vs[v].per};
        bench_time(cfg, chain_timed, &r, &row);
        bench_print_row(&row);
        failed |= !row.ok;
        if (n != full) {
            st->n = full;
            c->seq(st);
        }
    }
    if (strcmp(id, "w1") == 0) {
        bench_row_t row;
        bench_row_init(&row, id, "omp-reduce", full, cfg->threads);
        row.seq_seconds = seq;
        bench_time(cfg, w1_reduce_timed, st, &row);
        bench_print_row(&row);
        failed |= !row.ok;
    }
    free(st);
    return failed;
}

/* ---- w3 ---------------------------------------------------------------- */

struct w3_run {
    uint64_t n;
    size_t per; /* items per loop iteration */
};

static int w3_timed(void *p, bench_row_t *row)
{
    struct w3_run *r = p;
    peer_w3_acc_t acc = {0, 0, 0};
    long long n = (long long)r->n;
    size_t per = r->per;
    long long chunks = (long long)((r->n + per - 1) / per);
#pragma omp parallel
    {
        peer_w3_pair_t *pairs = malloc(per * sizeof *pairs);
        int64_t *a = malloc(per * sizeof *a), *b = malloc(per * sizeof *b);
#pragma omp for schedule(dynamic, 1)
        for (long long k = 0; k < chunks; k++) {
            long long first = k * (long long)per;
            size_t m = n - first < (long long)per ? (size_t)(n - first) : per;
            peer_w3_pair(first, m, pairs);
            peer_w3_diff(pairs, m, a);
            peer_w3_neg(first, m, b);
            /* The serial sink: one branch's output, then the other's. */
#pragma omp critical(peer_w3_sink)
            {
                peer_w3_sink(a, m, &acc);
                peer_w3_sink(b, m, &acc);
            }
        }
        free(pairs);
        free(a);
        free(b);
    }
    peer_w3_check(r->n, &acc, row);
    return row->ok ? 0 : 1;
}

static int omp_w3(const bench_cfg_t *cfg)
{
    uint64_t n = cfg->quick ? PEER_W3_QUICK : PEER_W3_ITEMS;
    const struct {
        const char *variant;
        uint64_t n;
        size_t per;
    } vs[] = {{"omp-item", peer_item_cap("w3", n), 1}, {"omp-chunk", n, 8192}};
    int failed = 0;
    for (size_t v = 0; v < 2; v++) {
        struct w3_run r = {vs[v].n, vs[v].per};
        bench_row_t row;
        bench_row_init(&row, "w3", vs[v].variant, r.n, cfg->threads);
        bench_time(cfg, w3_timed, &r, &row);
        bench_print_row(&row);
        failed |= !row.ok;
    }
    return failed;
}

/* ---- lp: the linear pipeline with task dependences --------------------- */

static int lp_timed(void *p, bench_row_t *row)
{
    const peer_opts_t *o = p;
    uint64_t line[PEER_LP_TOKENS];
    char stage_dep[16], sink_dep = 0;
    uint64_t sum = 0, count = 0, items = o->lp_items;
    unsigned stages = o->lp_stages;
    int parallel = o->lp_parallel;
    /* Only their addresses matter: they name the dependences. */
    (void)stage_dep;
    (void)sink_dep;
#pragma omp parallel
#pragma omp single
    for (uint64_t i = 0; i < items; i++) {
        uint64_t *x = &line[i % PEER_LP_TOKENS];
        for (unsigned s = 0; s < stages; s++) {
            /* Stage 0 makes the item, like TBB's serial input filter. */
            if (s == 0 || !parallel) {
#pragma omp task depend(inout : x[0], stage_dep[s]) firstprivate(i, s)
                *x = spin(s == 0 ? i : *x, PEER_LP_ITERS);
            } else {
#pragma omp task depend(inout : x[0])
                *x = spin(*x, PEER_LP_ITERS);
            }
        }
#pragma omp task depend(inout : x[0], sink_dep)
        {
            sum += *x;
            count++;
        }
    }
    if (count != items)
        bench_fail(row, "sink got %llu items, expected %llu",
                   (unsigned long long)count, (unsigned long long)items);
    else if (sum != o->lp_expect)
        bench_fail(row, "sum %llu, expected %llu", (unsigned long long)sum,
                   (unsigned long long)o->lp_expect);
    return row->ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    peer_opts_t o;
    int rc = peer_parse_args("peer-omp", argc, argv, &o);
    if (rc != 0)
        return rc;
    if (o.selected[4]) {
        fprintf(stderr, "peer-omp: no w4 (a device workload: peer-starpu "
                        "has it)\n");
        return 2;
    }
    omp_set_num_threads((int)o.threads);
    bench_cfg_t cfg = {
        .threads = o.threads, .repeat = o.repeat, .quick = o.quick};
    int failed = 0;
    for (int k = 1; k <= PEER_MAX_WORKLOAD; k++) {
        if (!o.selected[k])
            continue;
        char id[8];
        snprintf(id, sizeof id, "w%d", k);
        failed |= k == 3 ? omp_w3(&cfg) : omp_chain(&cfg, id);
    }
    if (o.selected[0]) {
        bench_row_t row;
        bench_row_init(&row, peer_lp_name(o.lp_stages, o.lp_parallel), "omp",
                       o.lp_items, o.threads);
        bench_time(&cfg, lp_timed, &o, &row);
        bench_print_row(&row);
        failed |= !row.ok;
    }
    return failed ? 1 : 0;
}
