/*
 * para-lp: the Taskflow linear-pipeline protocol with para's public API.
 *
 * A range source of items x = i, then S maps x = spin(x, PEER_LP_ITERS)
 * (~10 us each), then a serial sink summing x. The peers (peer-tbb,
 * peer-omp) run the same protocol; stage by stage the flags match theirs:
 *
 *   --lp-mode serial    every stage in order, one at a time: the variant
 *                       "para" uses PARA_NODE_ORDERED (= TBB's
 *                       serial_in_order), "para-serial" PARA_NODE_SERIAL
 *                       (one at a time, any order = serial_out_of_order).
 *   --lp-mode parallel  stage 1 ORDERED / SERIAL as above (the peers' first
 *                       stage is their serial input filter), stages 2..S
 *                       PARA_NODE_PARALLEL.
 *
 * The peers get 8 tokens in flight; para uses its defaults (adaptive
 * batches, 8 live batches per worker), as an application would.
 * Prints the rows of para-bench (bench_util.c); checks count and sum
 * against --lp-expect (or a seq loop when it is not given).
 */
#include <stdio.h>
#include <string.h>

#include "peer_common.h"

static inline int lp_item(void *ctx, const uint64_t *in, uint64_t *out)
{
    (void)ctx;
    *out = spin(*in, PEER_LP_ITERS);
    return 0;
}
PARA_MAP_ITEMS(lp_stage, uint64_t, uint64_t, lp_item)

struct lp_state {
    const peer_opts_t *o;
    unsigned serial_flag; /* PARA_NODE_ORDERED or PARA_NODE_SERIAL */
    uint64_t sum, count;
};

static inline int lp_sum_item(void *ctx, const uint64_t *in)
{
    struct lp_state *st = ctx;
    st->sum += *in;
    st->count++;
    return 0;
}
PARA_SINK_ITEMS(lp_sum, uint64_t, lp_sum_item)

static int lp_build(para_graph_t *g, void *state)
{
    struct lp_state *st = state;
    const peer_opts_t *o = st->o;
    st->sum = 0;
    st->count = 0;
    para_node_t *prev, *node;
    int rc = para_graph_add_range(g, "i", 0, o->lp_items, &prev);
    if (rc != 0)
        return rc;
    for (unsigned s = 0; s < o->lp_stages; s++) {
        char name[16];
        snprintf(name, sizeof name, "stage%u", s + 1);
        unsigned flags =
            s == 0 || !o->lp_parallel ? st->serial_flag : PARA_NODE_PARALLEL;
        if ((rc = para_graph_add_map_batch(g, name, 8, 8, lp_stage, NULL, flags,
                                           &node)) != 0 ||
            (rc = para_graph_connect(g, prev, node)) != 0)
            return rc;
        prev = node;
    }
    if ((rc = para_graph_add_sink_batch(g, "sum", 8, lp_sum, st,
                                        PARA_NODE_SERIAL, &node)) != 0 ||
        (rc = para_graph_connect(g, prev, node)) != 0)
        return rc;
    return 0;
}

static void lp_check(void *state, bench_row_t *row)
{
    struct lp_state *st = state;
    if (st->count != st->o->lp_items)
        bench_fail(row, "sink got %llu items, expected %llu",
                   (unsigned long long)st->count,
                   (unsigned long long)st->o->lp_items);
    else if (st->sum != st->o->lp_expect)
        bench_fail(row, "sum %llu, expected %llu", (unsigned long long)st->sum,
                   (unsigned long long)st->o->lp_expect);
}

int main(int argc, char **argv)
{
    peer_opts_t o;
    int rc = peer_parse_args("para-lp", argc, argv, &o);
    if (rc != 0)
        return rc;
    if (!o.selected[0]) {
        fprintf(stderr, "para-lp: only --workload lp (para-bench runs the "
                        "others)\n");
        return 2;
    }
    if (o.lp_print_reference) {
        printf("%llu\n", (unsigned long long)o.lp_expect);
        return 0;
    }
    para_runtime_attr_t attr;
    if (para_runtime_attr_init(&attr) != 0)
        fprintf(stderr, "para-lp: a PARA_* variable did not parse\n");
    attr.workers = o.threads;
    para_runtime_t *rt = NULL;
    if ((rc = para_runtime_create(&rt, &attr)) != 0) {
        fprintf(stderr, "para-lp: para_runtime_create: %s\n",
                para_err_name(rc));
        return 1;
    }
    bench_cfg_t cfg = {.rt = rt,
                       .threads = para_runtime_workers(rt),
                       .repeat = o.repeat,
                       .quick = o.quick};
    static const bench_graph_ops_t ops = {lp_build, lp_check};
    const struct {
        const char *variant;
        unsigned flag;
    } vs[] = {{"para", PARA_NODE_ORDERED}, {"para-serial", PARA_NODE_SERIAL}};
    int failed = 0;
    for (size_t v = 0; v < 2; v++) {
        struct lp_state st = {&o, vs[v].flag, 0, 0};
        bench_row_t row;
        bench_row_init(&row, peer_lp_name(o.lp_stages, o.lp_parallel),
                       vs[v].variant, o.lp_items, cfg.threads);
        bench_time_graph(&cfg, &ops, &st, &row);
        bench_print_row(&row);
        failed |= !row.ok;
    }
    if ((rc = para_runtime_destroy(rt)) != 0) {
        fprintf(stderr, "para-lp: para_runtime_destroy: %s\n",
                para_err_name(rc));
        failed = 1;
    }
    return failed ? 1 : 0;
}
