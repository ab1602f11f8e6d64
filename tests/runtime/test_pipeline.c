/*
 * Tests of the one-expression pipeline builder (runtime/pipeline.c).
 *
 * Graphs built with PARA_PIPELINE are run on a real runtime and checked by
 * their sums and item counts (the sinks are SERIAL, so their contexts need no
 * locks). The error paths check the code, that *out is NULL, and, under ASan
 * (CI), that every fragment was freed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "para.h"
#include "seed_graph.h"

#define WORKERS 2

/* ---- node functions ------------------------------------------------------ */

struct acc {
    uint64_t sum;
    uint64_t count;
};

static int add_u64(void *ctx, const void *in)
{
    struct acc *a = ctx;
    uint64_t v;
    memcpy(&v, in, sizeof v);
    a->sum += v;
    a->count++;
    return 0;
}

static int times3(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t v;
    memcpy(&v, in, sizeof v);
    v *= 3;
    memcpy(out, &v, sizeof v);
    return 0;
}

static int times2(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t v;
    memcpy(&v, in, sizeof v);
    v *= 2;
    memcpy(out, &v, sizeof v);
    return 0;
}

static int plus1(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t v;
    memcpy(&v, in, sizeof v);
    v += 1;
    memcpy(out, &v, sizeof v);
    return 0;
}

static int ident(void *ctx, const void *in, void *out)
{
    (void)ctx;
    memcpy(out, in, sizeof(uint64_t));
    return 0;
}

/* The seed graph's functions (workload w3 of BENCHMARKS.md). */
struct isum {
    int64_t sum;
    uint64_t count;
};

static int add_i64(void *ctx, const void *in)
{
    struct isum *s = ctx;
    int64_t v;
    memcpy(&v, in, sizeof v);
    s->sum += v;
    s->count++;
    return 0;
}

static int dummy_source(void *ctx, void *out, size_t cap, size_t *n_written)
{
    (void)ctx;
    (void)out;
    (void)cap;
    *n_written = 0;
    return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static void run_graph(para_graph_t *g)
{
    para_runtime_attr_t attr;
    assert_int_equal(para_runtime_attr_init(&attr), 0);
    attr.workers = WORKERS;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &attr), 0);
    int rc = para_run(rt, g);
    if (rc != 0)
        print_error("para_run: %s: %s\n", para_err_name(rc),
                    para_runtime_errmsg(rt));
    assert_int_equal(rc, 0);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* Sum of [0, n). */
static uint64_t tri(uint64_t n)
{
    return n * (n - 1) / 2;
}

/* Captures warnings logged by the library. */
struct log_capture {
    int warnings;
    char last[512];
};

static void capture_log(int level, const char *msg, void *arg)
{
    struct log_capture *c = arg;
    if (level <= 1) {
        c->warnings++;
        snprintf(c->last, sizeof c->last, "%s", msg);
    }
}

/* ---- successful builds --------------------------------------------------- */

static void test_simple_chain(void **state)
{
    (void)state;
    const uint64_t n = 1000;
    struct acc acc = {0};
    para_graph_t *g = NULL;
    int rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, n), para_pipe_map("x3", 8, 8, times3, NULL),
        para_pipe_map("plus1", 8, 8, plus1, NULL),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, 0);
    assert_non_null(g);
    assert_int_equal(para_graph_node_count(g), 4);
    run_graph(g);
    assert_int_equal(acc.count, n);
    assert_int_equal(acc.sum, 3 * tri(n) + n);
    para_graph_destroy(g);
}

/* The seed graph (workload w3 of BENCHMARKS.md), written as in the header's
 * example. */
static void test_w3_shape(void **state)
{
    (void)state;
    const uint64_t n = 100000;
    struct isum s = {0};
    para_graph_t *g = NULL;
    int rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, n),
        PARA_FANOUT(PARA_CHAIN(para_pipe_map("pair", 8, 16, seed_pair, NULL),
                               para_pipe_map("diff", 16, 8, seed_diff, NULL)),
                    para_pipe_map("neg", 8, 8, seed_negate, NULL)),
        para_pipe_sink("sum", 8, add_i64, &s, PARA_NODE_SERIAL));
    assert_int_equal(rc, 0);
    assert_int_equal(para_graph_node_count(g), 5);
    run_graph(g);
    assert_int_equal(s.sum, 0);
    assert_int_equal(s.count, 2 * n);
    para_graph_destroy(g);
}

/* x -> FANOUT(CHAIN(+1, FANOUT(*2, *3)), id) -> sum: the inner fan-out's two
 * exits and the outer branch's exit all feed the sink. */
static void test_nested_fanout(void **state)
{
    (void)state;
    const uint64_t n = 10000;
    struct acc acc = {0};
    para_graph_t *g = NULL;
    int rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, n),
        PARA_FANOUT(
            PARA_CHAIN(para_pipe_map("plus1", 8, 8, plus1, NULL),
                       PARA_FANOUT(para_pipe_map("x2", 8, 8, times2, NULL),
                                   para_pipe_map("x3", 8, 8, times3, NULL))),
            para_pipe_map("id", 8, 8, ident, NULL)),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, 0);
    assert_int_equal(para_graph_node_count(g), 6);
    run_graph(g);
    uint64_t plus1_sum = tri(n) + n;
    assert_int_equal(acc.count, 3 * n);
    assert_int_equal(acc.sum, 2 * plus1_sum + 3 * plus1_sum + tri(n));
    para_graph_destroy(g);
}

/* A fan-out as the last stage: two sinks, each sees every item. */
static void test_fanout_into_sinks(void **state)
{
    (void)state;
    const uint64_t n = 5000;
    struct acc a = {0}, b = {0};
    para_graph_t *g = NULL;
    int rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, n),
        para_pipe_map("plus1", 8, 8, plus1, NULL),
        PARA_FANOUT(para_pipe_sink("a", 8, add_u64, &a, PARA_NODE_SERIAL),
                    para_pipe_sink("b", 8, add_u64, &b, PARA_NODE_SERIAL)));
    assert_int_equal(rc, 0);
    run_graph(g);
    assert_int_equal(a.count, n);
    assert_int_equal(b.count, n);
    assert_int_equal(a.sum, tri(n) + n);
    assert_int_equal(b.sum, tri(n) + n);
    para_graph_destroy(g);
}

/* A fan-out at the head merges several sources; a chain at the head may
 * start with the source. */
static void test_sources_at_head(void **state)
{
    (void)state;
    struct acc acc = {0};
    para_graph_t *g = NULL;
    int rc = PARA_PIPELINE(
        &g,
        PARA_FANOUT(para_pipe_range("lo", 0, 100),
                    para_pipe_range("hi", 100, 200)),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, 0);
    run_graph(g);
    assert_int_equal(acc.count, 200);
    assert_int_equal(acc.sum, tri(200));
    para_graph_destroy(g);

    struct acc acc2 = {0};
    rc = PARA_PIPELINE(
        &g,
        PARA_CHAIN(para_pipe_range("x", 0, 100),
                   para_pipe_map("x2", 8, 8, times2, NULL)),
        para_pipe_sink("sum", 8, add_u64, &acc2, PARA_NODE_SERIAL));
    assert_int_equal(rc, 0);
    run_graph(g);
    assert_int_equal(acc2.count, 100);
    assert_int_equal(acc2.sum, 2 * tri(100));
    para_graph_destroy(g);
}

/* para_pipe_node() copies the descriptor and its name. */
static void test_node_desc_copied(void **state)
{
    (void)state;
    struct acc acc = {0};
    char name[16];
    para_node_desc_t desc = {.in_size = 8, .out_size = 8, .map = times3};
    snprintf(name, sizeof name, "%s", "triple");
    desc.name = name;
    para_pipe_t *map = para_pipe_node(&desc);
    assert_non_null(map);
    memset(name, 0, sizeof name);
    memset(&desc, 0, sizeof desc);

    para_graph_t *g = NULL;
    int rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, 100), map,
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, 0);
    run_graph(g);
    assert_int_equal(acc.sum, 3 * tri(100));
    para_graph_destroy(g);
}

/* ---- failures ------------------------------------------------------------ */

static void test_null_fragment(void **state)
{
    (void)state;
    para_graph_t *g = (para_graph_t *)&g; /* must be reset to NULL */
    struct acc acc = {0};

    /* At the top level. */
    int rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, 10), NULL,
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, PARA_ENOMEM);
    assert_null(g);

    /* Nested: the chain frees its map and returns NULL, then the fan-out
     * frees its other branch and returns NULL. */
    para_pipe_t *chain =
        PARA_CHAIN(para_pipe_map("a", 8, 8, ident, NULL), NULL);
    assert_null(chain);
    rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, 10),
        PARA_FANOUT(PARA_CHAIN(para_pipe_map("a", 8, 8, ident, NULL), NULL),
                    para_pipe_map("b", 8, 8, ident, NULL)),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, PARA_ENOMEM);
    assert_null(g);

    /* The first part. */
    rc = PARA_PIPELINE(
        &g, NULL, para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, PARA_ENOMEM);
    assert_null(g);
    assert_int_equal(acc.count, 0);
}

static void test_source_in_middle(void **state)
{
    (void)state;
    struct log_capture cap = {0};
    para_set_log_fn(capture_log, &cap);
    para_graph_t *g = NULL;
    struct acc acc = {0};

    int rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, 10), para_pipe_range("y", 0, 10),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, PARA_EINVAL);
    assert_null(g);
    assert_int_equal(cap.warnings, 1);
    assert_non_null(strstr(cap.last, "'y'"));

    /* Nested in a fan-out after the head, and a custom source node. */
    rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, 10),
        PARA_FANOUT(para_pipe_map("a", 8, 8, ident, NULL),
                    para_pipe_node(&(para_node_desc_t){
                        .name = "src", .out_size = 8, .source = dummy_source})),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, PARA_EINVAL);
    assert_null(g);
    assert_non_null(strstr(cap.last, "'src'"));

    /* The second part of a chain at the head is not at the head. */
    rc = PARA_PIPELINE(
        &g,
        PARA_CHAIN(para_pipe_range("x", 0, 10), para_pipe_range("y", 0, 10)),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, PARA_EINVAL);
    assert_null(g);
    para_set_log_fn(NULL, NULL);
}

static void test_no_source_first(void **state)
{
    (void)state;
    struct log_capture cap = {0};
    para_set_log_fn(capture_log, &cap);
    para_graph_t *g = NULL;
    struct acc acc = {0};
    int rc = PARA_PIPELINE(
        &g, para_pipe_map("a", 8, 8, ident, NULL),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, PARA_EINVAL);
    assert_null(g);
    assert_non_null(strstr(cap.last, "'a'"));
    para_set_log_fn(NULL, NULL);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    para_graph_t *g = NULL;

    /* n == 0 consumes nothing. */
    assert_int_equal(para_pipeline_v(&g, NULL, 0), PARA_EINVAL);
    assert_null(g);
    para_pipe_t *parts[1] = {para_pipe_range("x", 0, 10)};
    assert_non_null(parts[0]);
    assert_int_equal(para_pipeline_v(&g, parts, 0), PARA_EINVAL);
    assert_null(g);
    para_pipe_free(parts[0]);

    /* out == NULL still consumes the fragments. */
    struct acc acc = {0};
    int rc = PARA_PIPELINE(
        NULL, para_pipe_range("x", 0, 10),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, PARA_EINVAL);

    /* Empty chains and fan-outs would cut the pipeline. */
    struct log_capture cap = {0};
    para_set_log_fn(capture_log, &cap);
    rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, 10), para_pipe_chain_v(NULL, 0),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, PARA_EINVAL);
    assert_null(g);
    rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, 10), para_pipe_fanout_v(NULL, 0),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, PARA_EINVAL);
    assert_null(g);
    assert_int_equal(cap.warnings, 2);
    para_set_log_fn(NULL, NULL);
}

/* Errors of the graph API come back unchanged, logged at warning level. */
static void test_graph_errors(void **state)
{
    (void)state;
    struct log_capture cap = {0};
    para_set_log_fn(capture_log, &cap);
    para_graph_t *g = NULL;
    struct acc acc = {0};

    /* para_graph_connect: item sizes differ (8 -> 16). */
    int rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, 10),
        para_pipe_map("wide", 16, 8, ident, NULL),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, PARA_ESIZE);
    assert_null(g);
    assert_int_equal(cap.warnings, 1);
    assert_true(strlen(cap.last) > 0);

    /* para_graph_connect: a sink in the middle has no output. */
    rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, 10),
        para_pipe_sink("early", 8, add_u64, &acc, PARA_NODE_SERIAL),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, PARA_EINVAL);
    assert_null(g);
    assert_int_equal(cap.warnings, 2);

    /* para_graph_add: no name. */
    rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, 10), para_pipe_map(NULL, 8, 8, ident, NULL),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, PARA_EINVAL);
    assert_null(g);
    assert_int_equal(cap.warnings, 3);

    /* para_graph_add_range: end < begin. */
    rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 10, 0),
        para_pipe_sink("sum", 8, add_u64, &acc, PARA_NODE_SERIAL));
    assert_int_equal(rc, PARA_EINVAL);
    assert_null(g);
    assert_int_equal(cap.warnings, 4);

    /* para_graph_validate: a lone source has no output. */
    rc = PARA_PIPELINE(&g, para_pipe_range("x", 0, 10));
    assert_int_equal(rc, PARA_EUNCONNECTED);
    assert_null(g);
    assert_int_equal(cap.warnings, 5);

    para_set_log_fn(NULL, NULL);
    assert_int_equal(acc.count, 0);
}

/* Per input port of an ORDERED sink: how many items, whether each port saw
 * its items in source order, and what the map stages saw as their port. */
struct by_port {
    uint64_t count[2];
    uint64_t next[2]; /* the source index expected next on each port */
    int out_of_order;
    int bad_port;
    int swapped; /* port 0 is fed by x3, port 1 by x2 */
};

static int port_sink(void *ctx, const void *in)
{
    struct by_port *p = ctx;
    int port = para_input_port();
    if (port != 0 && port != 1) {
        p->bad_port++;
        return 0;
    }
    uint64_t v;
    memcpy(&v, in, sizeof v);
    /* port 0 is fed by x2 (v = 2i), port 1 by x3 (v = 3i), unless swapped */
    uint64_t mul = (port == 0) != (p->swapped != 0) ? 2 : 3;
    if (v % mul != 0 || v / mul != p->next[port])
        p->out_of_order++;
    p->next[port] = v / mul + 1;
    p->count[port]++;
    return 0;
}

/* A map with one input always sees port 0. */
static int times2_port0(void *ctx, const void *in, void *out)
{
    if (para_input_port() != 0)
        return -1;
    return times2(ctx, in, out);
}

/* x -> FANOUT(x2, x3) -> ORDERED sink: the sink tells the branches apart by
 * para_input_port(), in branch order, each in source order; outside node
 * calls the port is -1. */
static void test_input_port(void **state)
{
    (void)state;
    const uint64_t n = 20000;
    struct by_port p = {0};
    para_graph_t *g = NULL;
    int rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, n),
        PARA_FANOUT(para_pipe_map("x2", 8, 8, times2_port0, NULL),
                    para_pipe_map("x3", 8, 8, times3, NULL)),
        para_pipe_sink("by_port", 8, port_sink, &p, PARA_NODE_ORDERED));
    assert_int_equal(rc, 0);
    assert_int_equal(para_input_port(), -1);
    run_graph(g);
    assert_int_equal(para_input_port(), -1);
    assert_int_equal(p.bad_port, 0);
    assert_int_equal(p.out_of_order, 0);
    assert_int_equal(p.count[0], n);
    assert_int_equal(p.count[1], n);
    para_graph_destroy(g);
}

/* The same with para_graph_connect(), x3 connected first: ports follow the
 * order of the connections. */
static void test_input_port_connect_order(void **state)
{
    (void)state;
    const uint64_t n = 5000;
    struct by_port p = {.swapped = 1};
    para_graph_t *g = NULL;
    para_node_t *src, *x2, *x3, *sink;
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_range(g, "x", 0, n, &src), 0);
    assert_int_equal(para_graph_add_map(g, "x2", 8, 8, times2, NULL, 0, &x2),
                     0);
    assert_int_equal(para_graph_add_map(g, "x3", 8, 8, times3, NULL, 0, &x3),
                     0);
    assert_int_equal(para_graph_add_sink(g, "by_port", 8, port_sink, &p,
                                         PARA_NODE_ORDERED, &sink),
                     0);
    assert_int_equal(para_graph_connect(g, src, x2), 0);
    assert_int_equal(para_graph_connect(g, src, x3), 0);
    assert_int_equal(para_graph_connect(g, x3, sink), 0); /* port 0 */
    assert_int_equal(para_graph_connect(g, x2, sink), 0); /* port 1 */
    run_graph(g);
    assert_int_equal(p.bad_port, 0);
    assert_int_equal(p.out_of_order, 0);
    assert_int_equal(p.count[0], n);
    assert_int_equal(p.count[1], n);
    para_graph_destroy(g);
}

static void test_pipe_free(void **state)
{
    (void)state;
    para_pipe_free(NULL);
    para_pipe_free(para_pipe_range("x", 0, 10));
    para_pipe_free(para_pipe_sink("s", 8, add_u64, NULL, PARA_NODE_SERIAL));
    para_pipe_free(
        PARA_FANOUT(PARA_CHAIN(para_pipe_map("a", 8, 8, ident, NULL),
                               para_pipe_map("b", 8, 8, ident, NULL)),
                    para_pipe_map("c", 8, 8, ident, NULL)));
    para_pipe_free(para_pipe_chain_v(NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_chain),
        cmocka_unit_test(test_w3_shape),
        cmocka_unit_test(test_nested_fanout),
        cmocka_unit_test(test_fanout_into_sinks),
        cmocka_unit_test(test_sources_at_head),
        cmocka_unit_test(test_node_desc_copied),
        cmocka_unit_test(test_null_fragment),
        cmocka_unit_test(test_source_in_middle),
        cmocka_unit_test(test_no_source_first),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_graph_errors),
        cmocka_unit_test(test_pipe_free),
        cmocka_unit_test(test_input_port),
        cmocka_unit_test(test_input_port_connect_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
