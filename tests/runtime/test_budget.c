/*
 * The byte budget (runtime/budget.c) on its own: footprints match the
 * batch allocator's sizes and saturate instead of wrapping; admission
 * halves a pull until it fits, refuses while another family holds the
 * bytes, and always admits when nothing is reserved; the sources-open hint
 * agrees with admission (closed after a refusal until the bytes come back).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

static int copy8(void *ctx, const void *in, void *out)
{
    (void)ctx;
    memcpy(out, in, 8);
    return 0;
}

static int drop(void *ctx, const void *in)
{
    (void)ctx;
    (void)in;
    return 0;
}

typedef struct fixture {
    para_runtime_t *rt;
    para_graph_t *g;
    para_node_t *src, *map, *sink;
    para__run run;
} fixture;

/* range (8 B) -> map (8 B -> out_size) -> sink, prepared, with a run. */
static void setup(fixture *f, size_t out_size, uint64_t limit)
{
    memset(f, 0, sizeof *f);
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = 1;
    a.pin = "none";
    assert_int_equal(para_runtime_create(&f->rt, &a), 0);
    assert_int_equal(para_graph_create(&f->g), 0);
    assert_int_equal(para_graph_add_range(f->g, "r", 0, 1000, &f->src), 0);
    assert_int_equal(
        para_graph_add_map(f->g, "m", 8, out_size, copy8, NULL, 0, &f->map), 0);
    assert_int_equal(para_graph_add_sink(f->g, "s", out_size, drop, NULL,
                                         PARA_NODE_PARALLEL, &f->sink),
                     0);
    assert_int_equal(para_graph_connect(f->g, f->src, f->map), 0);
    assert_int_equal(para_graph_connect(f->g, f->map, f->sink), 0);
    assert_int_equal(para__graph_prepare(f->g), 0);
    f->run.graph = f->g;
    f->run.rt = f->rt;
    assert_int_equal(para__budget_begin(&f->run, limit), 0);
}

static void teardown(fixture *f)
{
    para__budget_end(&f->run);
    para_graph_destroy(f->g);
    assert_int_equal(para_runtime_destroy(f->rt), 0);
}

static void test_footprint(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 64, UINT64_MAX);
    /* The source's batch and the map's, as batch.c sizes them; the sink
     * holds nothing of its own. */
    for (size_t items = 1; items <= 4096; items *= 4) {
        uint64_t want = para__batch_alloc_size(1, items * 8) +
                        para__batch_alloc_size(1, items * 64);
        assert_int_equal(para__budget_footprint(&f.run, f.src, items), want);
    }
    /* More items than any address space: saturates, never wraps. */
    assert_int_equal(para__budget_footprint(&f.run, f.src, SIZE_MAX / 2),
                     UINT64_MAX);
    teardown(&f);
}

static void test_admission(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 8, UINT64_MAX);
    uint64_t one = para__budget_footprint(&f.run, f.src, 64);
    teardown(&f);
    setup(&f, 8, one + one / 2); /* one such batch fits, two do not */
    para__family *fam = NULL, *fam2 = NULL;
    assert_true(para__budget_sources_open(&f.run));
    assert_int_equal(para__budget_admit(&f.run, f.src, 64, &fam), 64);
    assert_non_null(fam);
    assert_int_equal(atomic_load(&f.run.budget.reserved), one);
    /* A second family does not fit, however small: refused, and the hint
     * agrees until the first gives its bytes back. */
    assert_int_equal(para__budget_admit(&f.run, f.src, 64, &fam2), 0);
    assert_null(fam2);
    assert_false(para__budget_sources_open(&f.run));
    para__family_unref(&f.run, fam);
    assert_int_equal(atomic_load(&f.run.budget.reserved), 0);
    assert_true(para__budget_sources_open(&f.run));
    /* A pull larger than the budget is halved until it fits. */
    size_t n = para__budget_admit(&f.run, f.src, 1 << 20, &fam);
    assert_true(n >= 1 && n < (1 << 20));
    assert_true(para__budget_footprint(&f.run, f.src, n) <= one + one / 2);
    para__family_unref(&f.run, fam);
    assert_true(atomic_load(&f.run.budget.decisions) >= 3);
    teardown(&f);
}

static void test_tiny_budget_admits_one(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 8, 1); /* less than any batch */
    para__family *fam = NULL, *fam2 = NULL;
    /* Nothing reserved: one batch of one item, so runs progress. */
    assert_int_equal(para__budget_admit(&f.run, f.src, 64, &fam), 1);
    assert_int_equal(para__budget_admit(&f.run, f.src, 64, &fam2), 0);
    assert_false(para__budget_sources_open(&f.run));
    para__family_unref(&f.run, fam);
    assert_true(para__budget_sources_open(&f.run));
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_footprint),
        cmocka_unit_test(test_admission),
        cmocka_unit_test(test_tiny_budget_admits_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
