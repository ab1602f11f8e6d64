/*
 * Tests for runtime/graph.c: building graphs (para_graph_add and its
 * wrappers, para_graph_connect) and validating them (para_graph_validate and
 * the validation done by para_run). Every error case asserts the exact code,
 * that para_graph_errmsg() is non-empty, and that it names the node involved.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "para.h"

/* ---- node functions (never called: these graphs are not run, except the
 * valid ones in the para_run tests) -------------------------------------- */

static int src_fn(void *ctx, void *out, size_t cap, size_t *n_written)
{
    (void)ctx;
    (void)out;
    (void)cap;
    *n_written = 0;
    return 0;
}

static int map_fn(void *ctx, const void *in, void *out)
{
    (void)ctx;
    memcpy(out, in, 8);
    return 0;
}

static int map_batch_fn(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    memcpy(out, in, n * 8);
    return 0;
}

static int filter_fn(void *ctx, const void *in)
{
    (void)ctx;
    (void)in;
    return 1;
}

static int sink_fn(void *ctx, const void *in)
{
    (void)ctx;
    (void)in;
    return 0;
}

static int sink_batch_fn(void *ctx, const void *in, size_t n)
{
    (void)ctx;
    (void)in;
    (void)n;
    return 0;
}

/* ---- helpers ----------------------------------------------------------- */

static void quiet_log(int level, const char *msg, void *arg)
{
    (void)level;
    (void)msg;
    (void)arg;
}

static int setup(void **state)
{
    para_set_log_fn(quiet_log, NULL);
    para_graph_t *g = NULL;
    if (para_graph_create(&g) != 0 || g == NULL)
        return -1;
    *state = g;
    return 0;
}

static int teardown(void **state)
{
    para_graph_destroy(*state);
    para_set_log_fn(NULL, NULL);
    return 0;
}

/* The graph's message is non-empty and, if @p name is given, mentions it. */
static void check_msg(const para_graph_t *g, const char *name)
{
    const char *msg = para_graph_errmsg(g);
    assert_non_null(msg);
    if (msg[0] == '\0')
        fail_msg("para_graph_errmsg() is empty");
    if (name != NULL && strstr(msg, name) == NULL)
        fail_msg("para_graph_errmsg() \"%s\" does not mention \"%s\"", msg,
                 name);
}

/* As check_msg(), with either of two names. */
static void check_msg2(const para_graph_t *g, const char *a, const char *b)
{
    const char *msg = para_graph_errmsg(g);
    assert_non_null(msg);
    if (msg[0] == '\0')
        fail_msg("para_graph_errmsg() is empty");
    if (strstr(msg, a) == NULL && strstr(msg, b) == NULL)
        fail_msg("para_graph_errmsg() \"%s\" mentions neither \"%s\" nor "
                 "\"%s\"",
                 msg, a, b);
}

static para_node_t *add_src(para_graph_t *g, const char *name)
{
    para_node_t *n = NULL;
    assert_int_equal(para_graph_add_source(g, name, 8, src_fn, NULL, &n), 0);
    assert_non_null(n);
    return n;
}

static para_node_t *add_map(para_graph_t *g, const char *name)
{
    para_node_t *n = NULL;
    assert_int_equal(
        para_graph_add_map(g, name, 8, 8, map_fn, NULL, PARA_NODE_PARALLEL, &n),
        0);
    assert_non_null(n);
    return n;
}

static para_node_t *add_sink(para_graph_t *g, const char *name, unsigned flags)
{
    para_node_t *n = NULL;
    assert_int_equal(para_graph_add_sink(g, name, 8, sink_fn, NULL, flags, &n),
                     0);
    assert_non_null(n);
    return n;
}

static void connect_ok(para_graph_t *g, para_node_t *a, para_node_t *b)
{
    assert_int_equal(para_graph_connect(g, a, b), 0);
}

/* ---- creation ---------------------------------------------------------- */

static void test_create_destroy(void **state)
{
    (void)state;
    assert_int_equal(para_graph_create(NULL), PARA_EINVAL);
    para_graph_t *g = NULL;
    assert_int_equal(para_graph_create(&g), 0);
    assert_non_null(g);
    assert_int_equal(para_graph_node_count(g), 0);
    assert_string_equal(para_graph_errmsg(g), "");
    para_graph_destroy(g);
    para_graph_destroy(NULL);
}

static void test_add_null_args(void **state)
{
    para_graph_t *g = *state;
    para_node_desc_t d = {
        .name = "m", .in_size = 8, .out_size = 8, .map = map_fn};
    para_node_t *n = NULL;
    assert_int_equal(para_graph_add(NULL, &d, &n), PARA_EINVAL);
    assert_int_equal(para_graph_add(g, NULL, &n), PARA_EINVAL);
    check_msg(g, NULL);
    assert_int_equal(para_graph_add_range(NULL, "r", 0, 10, &n), PARA_EINVAL);
    assert_int_equal(para_graph_add_map(NULL, "m", 8, 8, map_fn, NULL, 0, &n),
                     PARA_EINVAL);
    assert_int_equal(para_graph_add_map(g, "m", 8, 8, NULL, NULL, 0, &n),
                     PARA_EINVAL);
    check_msg(g, "m");
    assert_int_equal(para_graph_add_sink(g, "s", 8, NULL, NULL, 0, &n),
                     PARA_EINVAL);
    check_msg(g, "s");
    assert_int_equal(para_graph_add_source(g, "src", 8, NULL, NULL, &n),
                     PARA_EINVAL);
    check_msg(g, "src");
    assert_int_equal(para_graph_add_array(g, "arr", NULL, 4, 8, &n),
                     PARA_EINVAL);
    check_msg(g, "arr");
    size_t count = 0;
    uint64_t buf[4];
    assert_int_equal(para_graph_add_collect(g, "col", 8, NULL, 4, &count, &n),
                     PARA_EINVAL);
    check_msg(g, "col");
    assert_int_equal(para_graph_add_collect(g, "col", 8, buf, 4, NULL, &n),
                     PARA_EINVAL);
    check_msg(g, "col");
    assert_int_equal(para_graph_node_count(g), 0);

    /* out may be NULL. */
    assert_int_equal(para_graph_add(g, &d, NULL), 0);
    assert_int_equal(para_graph_node_count(g), 1);
}

static void test_add_no_function(void **state)
{
    para_graph_t *g = *state;
    para_node_desc_t d = {.name = "nofn", .in_size = 8, .out_size = 8};
    para_node_t *n = NULL;
    assert_int_equal(para_graph_add(g, &d, &n), PARA_EINVAL);
    check_msg(g, "nofn");
    assert_int_equal(para_graph_node_count(g), 0);
}

static void test_add_two_functions(void **state)
{
    para_graph_t *g = *state;
    para_node_t *n = NULL;
    para_node_desc_t d = {.name = "twofn",
                          .in_size = 8,
                          .out_size = 8,
                          .map = map_fn,
                          .sink = sink_fn};
    assert_int_equal(para_graph_add(g, &d, &n), PARA_EINVAL);
    check_msg(g, "twofn");
    para_node_desc_t d2 = {.name = "twomaps",
                           .in_size = 8,
                           .out_size = 8,
                           .map = map_fn,
                           .map_batch = map_batch_fn};
    assert_int_equal(para_graph_add(g, &d2, &n), PARA_EINVAL);
    check_msg(g, "twomaps");
    para_node_desc_t d3 = {.name = "srcsink",
                           .in_size = 8,
                           .out_size = 8,
                           .source = src_fn,
                           .sink_batch = sink_batch_fn};
    assert_int_equal(para_graph_add(g, &d3, &n), PARA_EINVAL);
    check_msg(g, "srcsink");
    assert_int_equal(para_graph_node_count(g), 0);
}

static void test_add_missing_name(void **state)
{
    para_graph_t *g = *state;
    para_node_t *n = NULL;
    para_node_desc_t d = {.in_size = 8, .out_size = 8, .map = map_fn};
    assert_int_equal(para_graph_add(g, &d, &n), PARA_EINVAL);
    check_msg(g, NULL);
    assert_int_equal(para_graph_add_range(g, NULL, 0, 10, &n), PARA_EINVAL);
    check_msg(g, NULL);
    assert_int_equal(para_graph_add_sink(g, NULL, 8, sink_fn, NULL, 0, &n),
                     PARA_EINVAL);
    check_msg(g, NULL);
    assert_int_equal(para_graph_node_count(g), 0);
}

static void test_add_zero_sizes(void **state)
{
    para_graph_t *g = *state;
    para_node_t *n = NULL;
    para_node_desc_t d = {
        .name = "map0in", .in_size = 0, .out_size = 8, .map = map_fn};
    assert_int_equal(para_graph_add(g, &d, &n), PARA_EINVAL);
    check_msg(g, "map0in");
    d.name = "map0out";
    d.in_size = 8;
    d.out_size = 0;
    assert_int_equal(para_graph_add(g, &d, &n), PARA_EINVAL);
    check_msg(g, "map0out");
    assert_int_equal(para_graph_add_map(g, "wrap0", 0, 8, map_fn, NULL, 0, &n),
                     PARA_EINVAL);
    check_msg(g, "wrap0");
    assert_int_equal(para_graph_add_source(g, "src0", 0, src_fn, NULL, &n),
                     PARA_EINVAL);
    check_msg(g, "src0");
    assert_int_equal(para_graph_add_sink(g, "sink0", 0, sink_fn, NULL, 0, &n),
                     PARA_EINVAL);
    check_msg(g, "sink0");
    assert_int_equal(
        para_graph_add_filter(g, "filter0", 0, filter_fn, NULL, 0, &n),
        PARA_EINVAL);
    check_msg(g, "filter0");
    assert_int_equal(para_graph_node_count(g), 0);

    /* A filter's out_size may be 0 (it means in_size), and a sink needs no
     * out_size, nor a source an in_size. */
    para_node_desc_t f = {.name = "f", .in_size = 8, .filter = filter_fn};
    assert_int_equal(para_graph_add(g, &f, &n), 0);
    para_node_desc_t s = {.name = "s", .in_size = 8, .sink = sink_fn};
    assert_int_equal(para_graph_add(g, &s, &n), 0);
    para_node_desc_t src = {.name = "src", .out_size = 8, .source = src_fn};
    assert_int_equal(para_graph_add(g, &src, &n), 0);
    assert_int_equal(para_graph_node_count(g), 3);
}

static void test_add_unknown_flags(void **state)
{
    para_graph_t *g = *state;
    para_node_t *n = NULL;
    para_node_desc_t d = {.name = "badflags",
                          .flags = 1u << 7,
                          .in_size = 8,
                          .out_size = 8,
                          .map = map_fn};
    assert_int_equal(para_graph_add(g, &d, &n), PARA_EINVAL);
    check_msg(g, "badflags");
    assert_int_equal(
        para_graph_add_sink(g, "badsink", 8, sink_fn, NULL, 0x80000000u, &n),
        PARA_EINVAL);
    check_msg(g, "badsink");
    assert_int_equal(para_graph_node_count(g), 0);

    /* The known flags are accepted. */
    d.name = "serial";
    d.flags = PARA_NODE_SERIAL;
    assert_int_equal(para_graph_add(g, &d, &n), 0);
    d.name = "ordered";
    d.flags = PARA_NODE_ORDERED;
    assert_int_equal(para_graph_add(g, &d, &n), 0);
    assert_int_equal(para_graph_node_count(g), 2);
}

static void test_add_range_bad(void **state)
{
    para_graph_t *g = *state;
    para_node_t *n = NULL;
    assert_int_equal(para_graph_add_range(g, "backwards", 10, 5, &n),
                     PARA_EINVAL);
    check_msg(g, "backwards");
    assert_int_equal(para_graph_node_count(g), 0);
    /* Empty ranges are fine. */
    assert_int_equal(para_graph_add_range(g, "empty", 5, 5, &n), 0);
    assert_int_equal(para_graph_node_count(g), 1);
}

static void test_node_name_and_count(void **state)
{
    para_graph_t *g = *state;
    char name[16] = "first";
    para_node_t *a = NULL, *b = NULL;
    assert_int_equal(para_graph_add_range(g, name, 0, 10, &a), 0);
    /* The name is copied. */
    memcpy(name, "XXXXX", 6);
    assert_string_equal(para_node_name(a), "first");
    assert_int_equal(para_graph_node_count(g), 1);
    b = add_sink(g, "second", PARA_NODE_SERIAL);
    assert_string_equal(para_node_name(b), "second");
    assert_int_equal(para_graph_node_count(g), 2);
    /* Failed adds do not count. */
    para_node_t *c = NULL;
    assert_int_equal(para_graph_add_sink(g, "bad", 0, sink_fn, NULL, 0, &c),
                     PARA_EINVAL);
    assert_int_equal(para_graph_node_count(g), 2);
    assert_string_equal(para_node_name(a), "first");
    /* Many nodes (storage growth keeps the handles valid). */
    para_node_t *nodes[200];
    for (int i = 0; i < 200; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "n%d", i);
        nodes[i] = add_map(g, nm);
    }
    assert_int_equal(para_graph_node_count(g), 202);
    for (int i = 0; i < 200; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "n%d", i);
        assert_string_equal(para_node_name(nodes[i]), nm);
    }
    assert_string_equal(para_node_name(a), "first");
    assert_string_equal(para_node_name(b), "second");
}

static void test_set_priority(void **state)
{
    para_graph_t *g = *state;
    para_node_t *m = add_map(g, "m");
    assert_int_equal(para_node_set_priority(NULL, 3), PARA_EINVAL);
    assert_int_equal(para_node_set_priority(m, 5), 0);
    assert_int_equal(para_node_set_priority(m, -5), 0);
    assert_int_equal(para_node_set_priority(m, 0), 0);
}

static void test_node_stats_args(void **state)
{
    para_graph_t *g = *state;
    para_node_t *m = add_map(g, "m");
    para_node_stats_t st;
    assert_int_equal(para_node_stats(NULL, &st), PARA_EINVAL);
    assert_int_equal(para_node_stats(m, NULL), PARA_EINVAL);
    /* Never run: all zero. */
    memset(&st, 0xff, sizeof st);
    assert_int_equal(para_node_stats(m, &st), 0);
    assert_int_equal(st.items_in, 0);
    assert_int_equal(st.items_out, 0);
    assert_int_equal(st.batches, 0);
}

/* ---- connect ----------------------------------------------------------- */

static void test_connect_null(void **state)
{
    para_graph_t *g = *state;
    para_node_t *s = add_src(g, "src");
    para_node_t *k = add_sink(g, "snk", 0);
    assert_int_equal(para_graph_connect(NULL, s, k), PARA_EINVAL);
    assert_int_equal(para_graph_connect(g, NULL, k), PARA_EINVAL);
    check_msg(g, NULL);
    assert_int_equal(para_graph_connect(g, s, NULL), PARA_EINVAL);
    check_msg(g, NULL);
    connect_ok(g, s, k);
}

static void test_connect_foreign(void **state)
{
    para_graph_t *g = *state;
    para_graph_t *other = NULL;
    assert_int_equal(para_graph_create(&other), 0);
    para_node_t *s = add_src(g, "home_src");
    para_node_t *k = add_sink(other, "away_sink", 0);
    para_node_t *s2 = add_src(other, "away_src");
    assert_int_equal(para_graph_connect(g, s, k), PARA_EFOREIGN);
    check_msg(g, "away_sink");
    /* Both nodes foreign to the graph passed. */
    assert_int_equal(para_graph_connect(g, s2, k), PARA_EFOREIGN);
    check_msg2(g, "away_src", "away_sink");
    /* Right nodes, wrong graph. */
    para_node_t *m = add_map(g, "home_map");
    assert_int_equal(para_graph_connect(other, s, m), PARA_EFOREIGN);
    check_msg2(other, "home_src", "home_map");
    /* The other graph is still usable. */
    connect_ok(other, s2, k);
    assert_int_equal(para_graph_validate(other), 0);
    para_graph_destroy(other);
}

static void test_connect_size_mismatch(void **state)
{
    para_graph_t *g = *state;
    para_node_t *s = add_src(g, "src8");
    para_node_t *k = NULL;
    assert_int_equal(para_graph_add_sink(g, "sink16", 16, sink_fn, NULL,
                                         PARA_NODE_SERIAL, &k),
                     0);
    assert_int_equal(para_graph_connect(g, s, k), PARA_ESIZE);
    check_msg2(g, "src8", "sink16");
    /* A map widening 8 -> 16 fits between them. */
    para_node_t *m = NULL;
    assert_int_equal(para_graph_add_map(g, "widen", 8, 16, map_fn, NULL, 0, &m),
                     0);
    connect_ok(g, s, m);
    connect_ok(g, m, k);
    assert_int_equal(para_graph_validate(g), 0);
}

static void test_connect_into_source(void **state)
{
    para_graph_t *g = *state;
    para_node_t *s1 = add_src(g, "upstream");
    para_node_t *s2 = add_src(g, "target_src");
    para_node_t *m = add_map(g, "mid");
    assert_int_equal(para_graph_connect(g, s1, s2), PARA_EINVAL);
    check_msg(g, "target_src");
    assert_int_equal(para_graph_connect(g, m, s2), PARA_EINVAL);
    check_msg(g, "target_src");
}

static void test_connect_out_of_sink(void **state)
{
    para_graph_t *g = *state;
    para_node_t *k = add_sink(g, "the_sink", 0);
    para_node_t *m = add_map(g, "after");
    para_node_t *k2 = add_sink(g, "sink2", 0);
    assert_int_equal(para_graph_connect(g, k, m), PARA_EINVAL);
    check_msg(g, "the_sink");
    assert_int_equal(para_graph_connect(g, k, k2), PARA_EINVAL);
    check_msg(g, "the_sink");
}

static void test_connect_duplicate(void **state)
{
    para_graph_t *g = *state;
    para_node_t *s = add_src(g, "dup_src");
    para_node_t *k = add_sink(g, "dup_sink", 0);
    connect_ok(g, s, k);
    assert_int_equal(para_graph_connect(g, s, k), PARA_EINVAL);
    check_msg2(g, "dup_src", "dup_sink");
    /* The duplicate was not added: the graph is still valid. */
    assert_int_equal(para_graph_validate(g), 0);
}

/* ---- validate ---------------------------------------------------------- */

static void test_validate_null(void **state)
{
    (void)state;
    assert_int_equal(para_graph_validate(NULL), PARA_EINVAL);
}

static void test_validate_empty(void **state)
{
    para_graph_t *g = *state;
    assert_int_equal(para_graph_validate(g), PARA_ENOSOURCE);
    check_msg(g, NULL);
}

static void test_validate_map_no_input(void **state)
{
    para_graph_t *g = *state;
    para_node_t *s = add_src(g, "src");
    para_node_t *k = add_sink(g, "sink", PARA_NODE_SERIAL);
    para_node_t *m = add_map(g, "lonely_map");
    connect_ok(g, s, k);
    connect_ok(g, m, k);
    assert_int_equal(para_graph_validate(g), PARA_EUNCONNECTED);
    check_msg(g, "lonely_map");
}

static void test_validate_sink_no_input(void **state)
{
    para_graph_t *g = *state;
    para_node_t *s = add_src(g, "src");
    para_node_t *k = add_sink(g, "sink", PARA_NODE_SERIAL);
    connect_ok(g, s, k);
    (void)add_sink(g, "orphan_sink", 0);
    assert_int_equal(para_graph_validate(g), PARA_EUNCONNECTED);
    check_msg(g, "orphan_sink");
}

static void test_validate_source_no_output(void **state)
{
    para_graph_t *g = *state;
    (void)add_src(g, "dry_src");
    assert_int_equal(para_graph_validate(g), PARA_EUNCONNECTED);
    check_msg(g, "dry_src");

    /* Also next to a valid part. */
    para_graph_t *g2 = NULL;
    assert_int_equal(para_graph_create(&g2), 0);
    para_node_t *s = add_src(g2, "src");
    para_node_t *k = add_sink(g2, "sink", 0);
    connect_ok(g2, s, k);
    para_node_t *r = NULL;
    assert_int_equal(para_graph_add_range(g2, "dry_range", 0, 4, &r), 0);
    assert_int_equal(para_graph_validate(g2), PARA_EUNCONNECTED);
    check_msg(g2, "dry_range");
    para_graph_destroy(g2);
}

static void test_validate_map_no_output(void **state)
{
    para_graph_t *g = *state;
    para_node_t *s = add_src(g, "src");
    para_node_t *k = add_sink(g, "sink", 0);
    para_node_t *m = add_map(g, "dead_end");
    connect_ok(g, s, k);
    connect_ok(g, s, m);
    assert_int_equal(para_graph_validate(g), PARA_EUNCONNECTED);
    check_msg(g, "dead_end");
}

static void test_validate_cycle(void **state)
{
    para_graph_t *g = *state;
    para_node_t *s = add_src(g, "src");
    para_node_t *m1 = add_map(g, "loop_a");
    para_node_t *m2 = add_map(g, "loop_b");
    para_node_t *k = add_sink(g, "sink", 0);
    connect_ok(g, s, m1);
    connect_ok(g, m1, m2);
    connect_ok(g, m2, m1); /* cycles are found by validate, not connect */
    connect_ok(g, m2, k);
    assert_int_equal(para_graph_validate(g), PARA_ECYCLE);
    check_msg2(g, "loop_a", "loop_b");
}

static void test_validate_cycle_unreachable(void **state)
{
    /* A cycle that no source reaches: every node still has an input and an
     * output, so only the cycle check can reject it. */
    para_graph_t *g = *state;
    para_node_t *s = add_src(g, "src");
    para_node_t *k = add_sink(g, "sink", 0);
    connect_ok(g, s, k);
    para_node_t *a = add_map(g, "ring_a");
    para_node_t *b = add_map(g, "ring_b");
    para_node_t *c = add_map(g, "ring_c");
    connect_ok(g, a, b);
    connect_ok(g, b, c);
    connect_ok(g, c, a);
    connect_ok(g, c, k);
    int rc = para_graph_validate(g);
    assert_int_equal(rc, PARA_ECYCLE);
    const char *msg = para_graph_errmsg(g);
    assert_true(strstr(msg, "ring_a") != NULL ||
                strstr(msg, "ring_b") != NULL || strstr(msg, "ring_c") != NULL);
}

/* A node feeding itself is refused at para_graph_connect(), by name; the
 * graph is unchanged and still valid. */
static void test_connect_self_loop(void **state)
{
    para_graph_t *g = *state;
    para_node_t *s = add_src(g, "src");
    para_node_t *m = add_map(g, "selfie");
    para_node_t *k = add_sink(g, "sink", 0);
    connect_ok(g, s, m);
    assert_int_equal(para_graph_connect(g, m, m), PARA_EINVAL);
    check_msg(g, "'selfie' -> 'selfie'");
    check_msg(g, "itself");
    connect_ok(g, m, k);
    assert_int_equal(para_graph_validate(g), 0);
}

/* Two nodes of one name are refused, whatever their kinds; the message
 * names the node; a different name is then fine. */
static void test_add_duplicate_name(void **state)
{
    para_graph_t *g = *state;
    add_src(g, "twin");
    para_node_t *n = NULL;
    assert_int_equal(para_graph_add_map(g, "twin", 8, 8, map_fn, NULL, 0, &n),
                     PARA_EINVAL);
    assert_null(n);
    check_msg(g, "'twin'");
    assert_int_equal(para_graph_add_range(g, "twin", 0, 10, &n), PARA_EINVAL);
    check_msg(g, "'twin'");
    uint64_t out[4];
    assert_int_equal(para_graph_add_collect(g, "twin", 8, out, 4, NULL, &n),
                     PARA_EINVAL);
    check_msg(g, "'twin'");
    assert_int_equal(para_graph_add_map(g, "twin2", 8, 8, map_fn, NULL, 0, &n),
                     0);
    assert_non_null(n);
}

static void test_validate_ordered_two_sources(void **state)
{
    para_graph_t *g = *state;
    para_node_t *s1 = add_src(g, "src_one");
    para_node_t *s2 = NULL;
    assert_int_equal(para_graph_add_range(g, "src_two", 0, 10, &s2), 0);
    para_node_t *k = add_sink(g, "in_order", PARA_NODE_ORDERED);
    connect_ok(g, s1, k);
    connect_ok(g, s2, k);
    assert_int_equal(para_graph_validate(g), PARA_EORDER);
    check_msg(g, "in_order");
}

static void test_validate_ordered_after_merge(void **state)
{
    /* The two sources meet upstream of the ORDERED node. */
    para_graph_t *g = *state;
    para_node_t *s1 = add_src(g, "src_one");
    para_node_t *s2 = add_src(g, "src_two");
    para_node_t *m = add_map(g, "merge");
    para_node_t *o = NULL;
    assert_int_equal(para_graph_add_map(g, "ordered_map", 8, 8, map_fn, NULL,
                                        PARA_NODE_ORDERED, &o),
                     0);
    para_node_t *k = add_sink(g, "sink", 0);
    connect_ok(g, s1, m);
    connect_ok(g, s2, m);
    connect_ok(g, m, o);
    connect_ok(g, o, k);
    assert_int_equal(para_graph_validate(g), PARA_EORDER);
    check_msg(g, "ordered_map");
}

static void test_validate_ordered_diamond_ok(void **state)
{
    /* One source, fanned out and merged again: ORDERED is fine. */
    para_graph_t *g = *state;
    para_node_t *s = add_src(g, "src");
    para_node_t *a = add_map(g, "left");
    para_node_t *b = add_map(g, "right");
    para_node_t *k = add_sink(g, "ordered_sink", PARA_NODE_ORDERED);
    connect_ok(g, s, a);
    connect_ok(g, s, b);
    connect_ok(g, a, k);
    connect_ok(g, b, k);
    assert_int_equal(para_graph_validate(g), 0);
}

static void test_validate_collect_two_sources(void **state)
{
    /* para_graph_add_collect() makes an ORDERED node. */
    para_graph_t *g = *state;
    uint64_t buf[8];
    size_t count = 0;
    para_node_t *s1 = add_src(g, "src_one");
    para_node_t *s2 = add_src(g, "src_two");
    para_node_t *c = NULL;
    assert_int_equal(
        para_graph_add_collect(g, "collector", 8, buf, 8, &count, &c), 0);
    connect_ok(g, s1, c);
    connect_ok(g, s2, c);
    assert_int_equal(para_graph_validate(g), PARA_EORDER);
    check_msg(g, "collector");
}

static void test_validate_valid(void **state)
{
    para_graph_t *g = *state;
    para_node_t *r = NULL, *f = NULL, *k2 = NULL;
    assert_int_equal(para_graph_add_range(g, "range", 0, 100, &r), 0);
    para_node_t *m = add_map(g, "map");
    assert_int_equal(
        para_graph_add_filter(g, "filter", 8, filter_fn, NULL, 0, &f), 0);
    para_node_t *k = add_sink(g, "sink", PARA_NODE_SERIAL);
    para_node_desc_t d = {
        .name = "bsink", .in_size = 8, .sink_batch = sink_batch_fn};
    assert_int_equal(para_graph_add(g, &d, &k2), 0);
    connect_ok(g, r, m);
    connect_ok(g, m, f);
    connect_ok(g, f, k);
    connect_ok(g, r, k2); /* fan-out */
    connect_ok(g, m, k2); /* merge */
    assert_int_equal(para_graph_validate(g), 0);
    assert_string_equal(para_graph_errmsg(g), "");
    assert_int_equal(para_graph_node_count(g), 5);
    /* Validation is repeatable. */
    assert_int_equal(para_graph_validate(g), 0);
}

/* ---- para_run on invalid graphs ---------------------------------------- */

static para_runtime_t *make_rt(void)
{
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = 2;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    assert_non_null(rt);
    return rt;
}

static void check_rt_msg(const para_runtime_t *rt, const char *name)
{
    const char *msg = para_runtime_errmsg(rt);
    assert_non_null(msg);
    if (msg[0] == '\0')
        fail_msg("para_runtime_errmsg() is empty");
    if (name != NULL && strstr(msg, name) == NULL)
        fail_msg("para_runtime_errmsg() \"%s\" does not mention \"%s\"", msg,
                 name);
}

static void test_run_invalid(void **state)
{
    para_graph_t *g = *state;
    para_runtime_t *rt = make_rt();

    /* Empty graph. */
    assert_int_equal(para_run(rt, g), PARA_ENOSOURCE);
    check_rt_msg(rt, NULL);

    /* Cycle. */
    para_node_t *s = add_src(g, "src");
    para_node_t *m1 = add_map(g, "cyc_a");
    para_node_t *m2 = add_map(g, "cyc_b");
    para_node_t *k = add_sink(g, "sink", 0);
    connect_ok(g, s, m1);
    connect_ok(g, m1, m2);
    connect_ok(g, m2, m1);
    connect_ok(g, m2, k);
    assert_int_equal(para_graph_validate(g), PARA_ECYCLE);
    assert_int_equal(para_run(rt, g), PARA_ECYCLE);
    const char *msg = para_runtime_errmsg(rt);
    assert_non_null(msg);
    assert_true(msg[0] != '\0');
    assert_true(strstr(msg, "cyc_a") != NULL || strstr(msg, "cyc_b") != NULL);

    /* Unconnected. */
    para_graph_t *g2 = NULL;
    assert_int_equal(para_graph_create(&g2), 0);
    para_node_t *s2 = add_src(g2, "src");
    para_node_t *k2 = add_sink(g2, "sink", 0);
    connect_ok(g2, s2, k2);
    (void)add_map(g2, "floating");
    assert_int_equal(para_run(rt, g2), PARA_EUNCONNECTED);
    check_rt_msg(rt, "floating");

    /* EORDER. */
    para_graph_t *g3 = NULL;
    assert_int_equal(para_graph_create(&g3), 0);
    para_node_t *a = add_src(g3, "a");
    para_node_t *b = add_src(g3, "b");
    para_node_t *o = add_sink(g3, "ordered_one", PARA_NODE_ORDERED);
    connect_ok(g3, a, o);
    connect_ok(g3, b, o);
    assert_int_equal(para_run(rt, g3), PARA_EORDER);
    check_rt_msg(rt, "ordered_one");

    /* The runtime still runs a valid graph afterwards. */
    para_graph_t *g4 = NULL;
    assert_int_equal(para_graph_create(&g4), 0);
    para_node_t *r = NULL;
    assert_int_equal(para_graph_add_range(g4, "r", 0, 1000, &r), 0);
    para_node_t *k4 = add_sink(g4, "k", PARA_NODE_SERIAL);
    connect_ok(g4, r, k4);
    assert_int_equal(para_run(rt, g4), 0);

    para_graph_destroy(g2);
    para_graph_destroy(g3);
    para_graph_destroy(g4);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_destroy),
        T(test_add_null_args),
        T(test_add_no_function),
        T(test_add_two_functions),
        T(test_add_missing_name),
        T(test_add_zero_sizes),
        T(test_add_unknown_flags),
        T(test_add_range_bad),
        T(test_node_name_and_count),
        T(test_set_priority),
        T(test_node_stats_args),
        T(test_connect_null),
        T(test_connect_foreign),
        T(test_connect_size_mismatch),
        T(test_connect_into_source),
        T(test_connect_out_of_sink),
        T(test_connect_duplicate),
        T(test_validate_null),
        T(test_validate_empty),
        T(test_validate_map_no_input),
        T(test_validate_sink_no_input),
        T(test_validate_source_no_output),
        T(test_validate_map_no_output),
        T(test_validate_cycle),
        T(test_validate_cycle_unreachable),
        T(test_connect_self_loop),
        T(test_add_duplicate_name),
        T(test_validate_ordered_two_sources),
        T(test_validate_ordered_after_merge),
        T(test_validate_ordered_diamond_ok),
        T(test_validate_collect_two_sources),
        T(test_validate_valid),
        T(test_run_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
