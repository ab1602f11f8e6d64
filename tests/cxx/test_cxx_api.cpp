/*
 * The public headers as C++: built with -std=c++17 -Wall -Wextra -Werror
 * (tests/CMakeLists.txt), this file checks that para.h compiles as C++, that
 * the pipeline macros (PARA_PIPELINE, PARA_CHAIN, PARA_FANOUT) build the same
 * graphs there as in C, that para/items.h's loops expand as C++, and that
 * a graph built from C++ runs.
 */
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
// cmocka.h needs these first
#include <csetjmp>
#include <cstdarg>

// cmocka.h (1.1) declares its functions without extern "C".
extern "C" {
#include <cmocka.h>
}

#include "para.h"

namespace
{

struct acc {
    std::uint64_t sum[2];
    std::uint64_t count[2];
    int bad_port;
};

int times2(void *, const void *in, void *out)
{
    std::uint64_t v;
    std::memcpy(&v, in, sizeof v);
    v *= 2;
    std::memcpy(out, &v, sizeof v);
    return 0;
}

int plus1(void *, const void *in, void *out)
{
    std::uint64_t v;
    std::memcpy(&v, in, sizeof v);
    v += 1;
    std::memcpy(out, &v, sizeof v);
    return 0;
}

int add_by_port(void *ctx, const void *in)
{
    acc *a = static_cast<acc *>(ctx);
    int port = para_input_port();
    if (port != 0 && port != 1) {
        a->bad_port++;
        return 0;
    }
    std::uint64_t v;
    std::memcpy(&v, in, sizeof v);
    a->sum[port] += v;
    a->count[port]++;
    return 0;
}

std::uint64_t tri(std::uint64_t n)
{
    return n * (n - 1) / 2;
}

void run_graph(para_graph_t *g)
{
    para_runtime_attr_t attr;
    assert_int_equal(para_runtime_attr_init(&attr), 0);
    attr.workers = 2;
    para_runtime_t *rt = nullptr;
    assert_int_equal(para_runtime_create(&rt, &attr), 0);
    int rc = para_run(rt, g);
    if (rc != 0)
        std::fprintf(stderr, "para_run: %s: %s\n", para_err_name(rc),
                     para_runtime_errmsg(rt));
    assert_int_equal(rc, 0);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* x -> FANOUT(CHAIN(+1, *2), *2) -> ORDERED sink, written with the macros. */
void test_pipeline_macros(void **)
{
    const std::uint64_t n = 10000;
    acc a{};
    para_graph_t *g = nullptr;
    int rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, n),
        PARA_FANOUT(PARA_CHAIN(para_pipe_map("plus1", 8, 8, plus1, nullptr),
                               para_pipe_map("x2a", 8, 8, times2, nullptr)),
                    para_pipe_map("x2b", 8, 8, times2, nullptr)),
        para_pipe_sink("sum", 8, add_by_port, &a, PARA_NODE_ORDERED));
    assert_int_equal(rc, 0);
    assert_int_equal(para_graph_node_count(g), 5);
    run_graph(g);
    assert_int_equal(a.bad_port, 0);
    assert_int_equal(a.count[0], n);
    assert_int_equal(a.count[1], n);
    assert_int_equal(a.sum[0], 2 * (tri(n) + n));
    assert_int_equal(a.sum[1], 2 * tri(n));
    para_graph_destroy(g);
}

/* A node from a desc (no designated initialisers before C++20). */
void test_node_desc(void **)
{
    para_graph_t *g = nullptr;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src = nullptr, *map = nullptr, *sink = nullptr;
    assert_int_equal(para_graph_add_range(g, "x", 0, 100, &src), 0);
    para_node_desc_t d{};
    d.name = "x2";
    d.in_size = 8;
    d.out_size = 8;
    d.map = times2;
    assert_int_equal(para_graph_add(g, &d, &map), 0);
    acc a{};
    assert_int_equal(
        para_graph_add_sink(g, "sum", 8, add_by_port, &a, 0, &sink), 0);
    assert_int_equal(para_graph_connect(g, src, map), 0);
    assert_int_equal(para_graph_connect(g, map, sink), 0);
    run_graph(g);
    assert_int_equal(a.count[0], 100);
    assert_int_equal(a.sum[0], 2 * tri(100));
    assert_string_equal(para_err_name(PARA_ECYCLE), "PARA_ECYCLE");
    para_graph_destroy(g);
}

/* para/items.h's block loops expand as C++ too, and run. */
struct sums {
    std::uint64_t sum, count;
};

inline int triple_item(void *, const std::uint64_t *in, std::uint64_t *out)
{
    *out = 3 * *in;
    return 0;
}
PARA_MAP_ITEMS(triple_batch, std::uint64_t, std::uint64_t, triple_item)

inline int sum_item(sums *s, const std::uint64_t *in)
{
    s->sum += *in;
    s->count++;
    return 0;
}
PARA_SINK_ITEMS_STATE(sum_batch, std::uint64_t, sums, sum_item)

void test_items_macros(void **)
{
    const std::uint64_t n = 10000;
    para_graph_t *g = nullptr;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src = nullptr, *map = nullptr, *sink = nullptr;
    sums s{};
    assert_int_equal(para_graph_add_range(g, "x", 0, n, &src), 0);
    assert_int_equal(
        para_graph_add_map_batch(g, "x3", 8, 8, triple_batch, nullptr, 0, &map),
        0);
    assert_int_equal(para_graph_add_sink_batch(g, "sum", 8, sum_batch, &s,
                                               PARA_NODE_SERIAL, &sink),
                     0);
    assert_int_equal(para_graph_connect(g, src, map), 0);
    assert_int_equal(para_graph_connect(g, map, sink), 0);
    run_graph(g);
    assert_int_equal(s.count, n);
    assert_int_equal(s.sum, 3 * tri(n));
    para_graph_destroy(g);
}

} // namespace

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline_macros),
        cmocka_unit_test(test_node_desc),
        cmocka_unit_test(test_items_macros),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
