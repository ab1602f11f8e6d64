/*
 * The seed graph of the original design (workload w3 of BENCHMARKS.md) as a
 * test:
 *
 *   x in [0, N)
 *     +--> pair: x -> (2x, x) --> diff: (x2, x) -> x2 - x --+
 *     |                                                     +--> sum += y
 *     +--> neg:  x -> -x -----------------------------------+
 *
 * The sum must be 0 and the sink must see exactly 2N items, for 1, 2 and 3
 * workers (3 oversubscribes the 2-core CI machines on purpose). The graph is
 * built twice: with PARA_PIPELINE (as the example does), and with the
 * explicit graph API, which hands out the node handles needed to check every
 * node's para_node_stats() (the builder does not expose its nodes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "para.h"
#include "seed_graph.h"

#define N 1000000u

static para_runtime_t *make_runtime(unsigned workers)
{
    para_runtime_attr_t attr;
    assert_int_equal(para_runtime_attr_init(&attr), 0);
    attr.workers = workers;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &attr), 0);
    assert_int_equal(para_runtime_workers(rt), workers);
    return rt;
}

static void run_ok(para_runtime_t *rt, para_graph_t *g)
{
    int rc = para_run(rt, g);
    if (rc != 0)
        print_error("para_run: %s: %s\n", para_err_name(rc),
                    para_runtime_errmsg(rt));
    assert_int_equal(rc, 0);
}

static void check_stats(const para_node_t *node, uint64_t in, uint64_t out)
{
    para_node_stats_t st;
    assert_int_equal(para_node_stats(node, &st), 0);
    if (st.items_in != in || st.items_out != out)
        print_error("node %s: items_in %llu (want %llu), items_out %llu "
                    "(want %llu)\n",
                    para_node_name(node), (unsigned long long)st.items_in,
                    (unsigned long long)in, (unsigned long long)st.items_out,
                    (unsigned long long)out);
    assert_int_equal(st.items_in, in);
    assert_int_equal(st.items_out, out);
    assert_true(st.batches > 0);
}

static void seed_pipeline(unsigned workers)
{
    seed_total_t t = {0};
    para_graph_t *g = NULL;
    int rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, N),
        PARA_FANOUT(PARA_CHAIN(para_pipe_map("pair", 8, 16, seed_pair, NULL),
                               para_pipe_map("diff", 16, 8, seed_diff, NULL)),
                    para_pipe_map("neg", 8, 8, seed_negate, NULL)),
        para_pipe_sink("sum", 8, seed_add, &t, PARA_NODE_SERIAL));
    assert_int_equal(rc, 0);

    para_runtime_t *rt = make_runtime(workers);
    run_ok(rt, g);
    assert_int_equal(t.sum, 0);
    assert_int_equal(t.count, 2 * (uint64_t)N);

    /* A second run of the same graph gives the same result. */
    t = (seed_total_t){0};
    run_ok(rt, g);
    assert_int_equal(t.sum, 0);
    assert_int_equal(t.count, 2 * (uint64_t)N);

    assert_int_equal(para_runtime_destroy(rt), 0);
    para_graph_destroy(g);
}

static void seed_explicit(unsigned workers)
{
    seed_total_t t = {0};
    para_graph_t *g = NULL;
    para_node_t *x, *p, *d, *neg, *sum;
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_range(g, "x", 0, N, &x), 0);
    assert_int_equal(para_graph_add_map(g, "pair", 8, 16, seed_pair, NULL,
                                        PARA_NODE_PARALLEL, &p),
                     0);
    assert_int_equal(para_graph_add_map(g, "diff", 16, 8, seed_diff, NULL,
                                        PARA_NODE_PARALLEL, &d),
                     0);
    assert_int_equal(para_graph_add_map(g, "neg", 8, 8, seed_negate, NULL,
                                        PARA_NODE_PARALLEL, &neg),
                     0);
    assert_int_equal(
        para_graph_add_sink(g, "sum", 8, seed_add, &t, PARA_NODE_SERIAL, &sum),
        0);
    assert_int_equal(para_graph_connect(g, x, p), 0);
    assert_int_equal(para_graph_connect(g, p, d), 0);
    assert_int_equal(para_graph_connect(g, x, neg), 0);
    assert_int_equal(para_graph_connect(g, d, sum), 0);
    assert_int_equal(para_graph_connect(g, neg, sum), 0);

    para_runtime_t *rt = make_runtime(workers);
    run_ok(rt, g);
    assert_int_equal(t.sum, 0);
    assert_int_equal(t.count, 2 * (uint64_t)N);

    check_stats(x, 0, N);
    check_stats(p, N, N);
    check_stats(d, N, N);
    check_stats(neg, N, N);
    check_stats(sum, 2 * (uint64_t)N, 0);

    assert_int_equal(para_runtime_destroy(rt), 0);
    para_graph_destroy(g);
}

static void test_pipeline_1(void **state)
{
    (void)state;
    seed_pipeline(1);
}

static void test_pipeline_2(void **state)
{
    (void)state;
    seed_pipeline(2);
}

static void test_pipeline_3(void **state)
{
    (void)state;
    seed_pipeline(3);
}

static void test_explicit_1(void **state)
{
    (void)state;
    seed_explicit(1);
}

static void test_explicit_2(void **state)
{
    (void)state;
    seed_explicit(2);
}

static void test_explicit_3(void **state)
{
    (void)state;
    seed_explicit(3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline_1), cmocka_unit_test(test_pipeline_2),
        cmocka_unit_test(test_pipeline_3), cmocka_unit_test(test_explicit_1),
        cmocka_unit_test(test_explicit_2), cmocka_unit_test(test_explicit_3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
