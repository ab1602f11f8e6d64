/*
 * The byte budget (runtime/budget.c) on its own, with a synthetic
 * footprint, and the graph's footprints (runtime/footprint.c): footprints
 * match the batch allocator's sizes and saturate instead of wrapping;
 * admission halves a pull until it fits, keeps a forced size whole,
 * refuses while another family holds the bytes, and always admits when
 * nothing is reserved; the sources-open hint agrees with admission (closed
 * after a refusal until the bytes come back, and exhausted sources do not
 * keep it open); a family's release wakes a parked worker only while a
 * source may wait for its bytes. Arrivals from other ranks: refused while
 * they do not fit (and then sources leave them room), admitted when
 * nothing is reserved or when forced; their footprint counts only what
 * they become on this rank.
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

/* ---- the budget, with a synthetic footprint: 100 bytes + 10 per item -- */

static uint64_t linear(const void *ctx, unsigned slot, size_t items)
{
    (void)ctx;
    return 100 * (slot + 1) + 10 * (uint64_t)items;
}

typedef struct fixture {
    para__wake wake;
    para__run run;
} fixture;

static void setup(fixture *f, uint64_t limit, unsigned sources)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(para__eventcount_init(&f->wake.park), 0);
    f->run.wake = &f->wake;
    assert_int_equal(
        para__budget_begin(&f->run, limit, sources, linear, NULL, NULL), 0);
}

static void teardown(fixture *f)
{
    para__budget_end(&f->run);
    assert_null(f->run.budget);
    para__eventcount_fini(&f->wake.park);
}

static uint64_t reserved(const fixture *f)
{
    return atomic_load(&f->run.budget->reserved);
}

static void test_admission(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1000, 1);
    para__family *fam = NULL, *fam2 = NULL;
    assert_true(para__budget_sources_open(&f.run));
    /* 64 items = 740 bytes: fits. */
    assert_int_equal(para__budget_admit(&f.run, 0, 64, false, &fam), 64);
    assert_non_null(fam);
    assert_int_equal(reserved(&f), 740);
    /* 260 left: 16 items (260) fit, 64 halve down to 16. */
    assert_int_equal(para__budget_admit(&f.run, 0, 64, false, &fam2), 16);
    assert_int_equal(reserved(&f), 1000);
    /* Full: refused, and the hint agrees. */
    para__family *fam3 = NULL;
    assert_int_equal(para__budget_admit(&f.run, 0, 1, false, &fam3), 0);
    assert_null(fam3);
    assert_false(para__budget_sources_open(&f.run));
    para__family_unref(&f.run, fam2);
    assert_int_equal(reserved(&f), 740);
    /* 260 free, but a forced 64 (740) is kept whole: refused, closed. */
    assert_int_equal(para__budget_admit(&f.run, 0, 64, true, &fam3), 0);
    assert_false(para__budget_sources_open(&f.run));
    para__family_unref(&f.run, fam);
    assert_int_equal(reserved(&f), 0);
    assert_true(para__budget_sources_open(&f.run));
    assert_int_equal(atomic_load(&f.run.budget->decisions), 4);
    teardown(&f);
}

/* Did a family release between prepare() and here notify the parked
 * worker that prepare() announced? (It bumps the eventcount's epoch.) */
static bool notified_since(fixture *f, uint64_t key)
{
    bool woken = atomic_load(&f->wake.park.epoch) != key;
    para__eventcount_cancel(&f->wake.park);
    return woken;
}

/* A family giving its bytes back wakes a parked worker only when a source
 * may wait for them: a refused pull's need is stored, or the reservations
 * were at the limit (a need reset by a later admission); otherwise no
 * notify, not even with a worker parked. */
static void test_release_wakes_only_held(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1000, 1);
    para__family *fam = NULL, *fam2 = NULL, *fam3 = NULL;
    /* Nothing held: no wake-up. */
    assert_int_equal(para__budget_admit(&f.run, 0, 10, false, &fam), 10);
    uint64_t key = para__eventcount_prepare(&f.wake.park);
    para__family_unref(&f.run, fam);
    assert_false(notified_since(&f, key));
    /* A refused pull stored its need: the release wakes. */
    assert_int_equal(para__budget_admit(&f.run, 0, 64, false, &fam), 64);
    assert_int_equal(para__budget_admit(&f.run, 0, 64, false, &fam2), 16);
    assert_int_equal(para__budget_admit(&f.run, 0, 1, false, &fam3), 0);
    key = para__eventcount_prepare(&f.wake.park);
    para__family_unref(&f.run, fam2);
    assert_true(notified_since(&f, key));
    /* Admitted again (the need is reset) up to the limit: a release from
     * the limit wakes. */
    assert_int_equal(para__budget_admit(&f.run, 0, 16, false, &fam2), 16);
    assert_int_equal(reserved(&f), 1000);
    key = para__eventcount_prepare(&f.wake.park);
    para__family_unref(&f.run, fam2);
    assert_true(notified_since(&f, key));
    /* Below the limit with no need stored: no wake-up. */
    key = para__eventcount_prepare(&f.wake.park);
    para__family_unref(&f.run, fam);
    assert_false(notified_since(&f, key));
    assert_int_equal(reserved(&f), 0);
    teardown(&f);
}

/* Device footprint: 8 bytes an item. */
static uint64_t on_device(const void *ctx, unsigned slot, size_t items)
{
    (void)ctx;
    (void)slot;
    return 8 * (uint64_t)items;
}

static uint64_t dev_reserved(const fixture *f)
{
    return atomic_load(&f->run.budget->dev_reserved);
}

/* The device budget: a pull must fit both; the device alone halves it and
 * holds sources back; a family gives its device bytes back with its host
 * bytes. */
static void test_device_budget(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1 << 20, 1); /* the host budget is no limit here */
    para__budget_set_device(&f.run, 256, on_device);
    para__family *fam = NULL, *fam2 = NULL, *fam3 = NULL;
    /* 64 items = 512 device bytes: halved to 32 (256). */
    assert_int_equal(para__budget_admit(&f.run, 0, 64, false, &fam), 32);
    assert_int_equal(dev_reserved(&f), 256);
    assert_int_equal(reserved(&f), 100 + 320);
    /* The device is full: refused, and the hint agrees. */
    assert_int_equal(para__budget_admit(&f.run, 0, 1, false, &fam2), 0);
    assert_null(fam2);
    assert_int_equal(reserved(&f), 420); /* nothing reserved for it */
    assert_false(para__budget_sources_open(&f.run));
    para__family_unref(&f.run, fam);
    assert_int_equal(dev_reserved(&f), 0);
    assert_int_equal(reserved(&f), 0);
    assert_true(para__budget_sources_open(&f.run));
    /* Nothing reserved on the device: one item always goes. */
    para__budget_set_device(&f.run, 4, on_device);
    assert_int_equal(para__budget_admit(&f.run, 0, 64, false, &fam3), 1);
    assert_int_equal(dev_reserved(&f), 8);
    para__family_unref(&f.run, fam3);
    teardown(&f);
}

/* A bound family cache: a freed record is kept (up to the depth) and the
 * next admission takes it back; unbound threads use malloc and free. */
static void test_family_cache(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1u << 20, 1);
    para__family_cache c = {0};
    para__family_cache_bind(&c);
    para__family *fam = NULL, *again = NULL;
    assert_int_equal(para__budget_admit(&f.run, 0, 8, false, &fam), 8);
    para__family *first = fam;
    para__family_unref(&f.run, fam);
    assert_int_equal(c.len, 1);
    assert_ptr_equal(c.free, first);
    assert_int_equal(para__budget_admit(&f.run, 0, 8, false, &again), 8);
    assert_ptr_equal(again, first); /* reused, not a new allocation */
    assert_int_equal(c.len, 0);
    assert_int_equal(atomic_load(&again->refs), 1);
    assert_int_equal(reserved(&f), again->reserved);
    /* More records than the depth: the excess is freed. */
    para__family *many[PARA__FAMILY_CACHE_DEPTH + 3];
    para__family_unref(&f.run, again);
    for (unsigned i = 0; i < PARA__FAMILY_CACHE_DEPTH + 3; i++)
        assert_int_equal(para__budget_admit(&f.run, 0, 1, false, &many[i]), 1);
    for (unsigned i = 0; i < PARA__FAMILY_CACHE_DEPTH + 3; i++)
        para__family_unref(&f.run, many[i]);
    assert_int_equal(c.len, PARA__FAMILY_CACHE_DEPTH);
    assert_int_equal(reserved(&f), 0);
    para__family_cache_bind(NULL);
    para__family_cache_drain(&c);
    assert_int_equal(c.len, 0);
    assert_null(c.free);
    teardown(&f);
}

static void test_nothing_reserved_admits_one(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1, 2); /* less than any footprint */
    para__family *fam = NULL, *fam2 = NULL;
    /* Nothing reserved: one pull of one item, so runs progress. */
    assert_int_equal(para__budget_admit(&f.run, 0, 64, false, &fam), 1);
    assert_int_equal(para__budget_admit(&f.run, 1, 64, false, &fam2), 0);
    assert_false(para__budget_sources_open(&f.run));
    para__family_unref(&f.run, fam);
    assert_true(para__budget_sources_open(&f.run));
    teardown(&f);
}

static void test_exhausted_source_closes(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1000, 2);
    para__family *fam = NULL;
    assert_int_equal(para__budget_admit(&f.run, 0, 80, false, &fam), 80);
    /* 100 left: source 1 was never refused (need 0): open... */
    assert_true(para__budget_sources_open(&f.run));
    /* ...until it is exhausted; source 0 was not refused either. */
    para__budget_source_done(&f.run, 1);
    assert_true(para__budget_sources_open(&f.run));
    para__budget_source_done(&f.run, 0);
    assert_false(para__budget_sources_open(&f.run));
    para__family_unref(&f.run, fam);
    teardown(&f);
}

/* ---- footprints of a graph ------------------------------------------- */

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

static void test_footprint(void **state)
{
    (void)state;
    para_graph_t *g;
    para_node_t *src, *map, *a, *b;
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_range(g, "r", 0, 1000, &src), 0);
    assert_int_equal(para_graph_add_map(g, "m", 8, 64, copy8, NULL, 0, &map),
                     0);
    assert_int_equal(
        para_graph_add_sink(g, "a", 64, drop, NULL, PARA_NODE_PARALLEL, &a), 0);
    assert_int_equal(
        para_graph_add_sink(g, "b", 64, drop, NULL, PARA_NODE_PARALLEL, &b), 0);
    assert_int_equal(para_graph_connect(g, src, map), 0);
    assert_int_equal(para_graph_connect(g, map, a), 0);
    assert_int_equal(para_graph_connect(g, map, b), 0);
    assert_int_equal(para__graph_prepare(g), 0);
    para__footprints *fp = para__footprints_new(g, false);
    assert_non_null(fp);
    /* The source's batch (one successor) and the map's (two), as batch.c
     * sizes them; the sinks hold nothing of their own. */
    for (size_t items = 1; items <= 4096; items *= 4) {
        uint64_t want = para__batch_alloc_size(1, items * 8) +
                        para__batch_alloc_size(2, items * 64);
        assert_int_equal(para__footprint(fp, src->source_slot, items), want);
    }
    /* More items than any address space: saturates, never wraps. */
    assert_int_equal(para__footprint(fp, src->source_slot, SIZE_MAX / 2),
                     UINT64_MAX);
    para__footprints_free(fp);
    para_graph_destroy(g);
}

static int axpb(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    memcpy(out, in, n * 4);
    return 0;
}

static int drop_batch(void *ctx, const void *in, size_t n)
{
    (void)ctx;
    (void)in;
    (void)n;
    return 0;
}

/* A chain of kernel nodes, array -> A -> B -> C -> sink, A and B kernel only
 * (device-only), C MIXED: without residency every kernel node holds its
 * output batch and stages input and output on the host. With it, A's
 * output stays on the device for B (its batch is a header, no output
 * staging) and B's input is there (no input staging); B's output comes
 * back for C, which may run on the CPU. */
static void test_footprint_resident(void **state)
{
    (void)state;
    static const char src_cl[] =
        "__kernel void k(__global const uint *in, __global uint *out, uint n)"
        "{ size_t i = get_global_id(0); if (i < n) out[i] = in[i]; }";
    static uint32_t data[1000];
    para_kernel_desc_t kd = {.source = src_cl, .entry = "k"};
    para_graph_t *g;
    para_node_t *src, *a, *b, *c, *sink;
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_array(g, "in", data, 1000, 4, &src), 0);
    assert_int_equal(para_graph_add_kernel(g, "A", 4, 4, &kd, NULL, NULL, &a),
                     0);
    assert_int_equal(para_graph_add_kernel(g, "B", 4, 4, &kd, NULL, NULL, &b),
                     0);
    assert_int_equal(para_graph_add_kernel(g, "C", 4, 4, &kd, axpb, NULL, &c),
                     0);
    assert_int_equal(para_graph_add_sink_batch(g, "s", 4, drop_batch, NULL,
                                               PARA_NODE_SERIAL, &sink),
                     0);
    assert_int_equal(para_graph_connect(g, src, a), 0);
    assert_int_equal(para_graph_connect(g, a, b), 0);
    assert_int_equal(para_graph_connect(g, b, c), 0);
    assert_int_equal(para_graph_connect(g, c, sink), 0);
    assert_int_equal(para__graph_prepare(g), 0);
    /* As a run with a device sets them (device_node.c). */
    a->placement = b->placement = PARA__PLACE_DEVICE;
    c->placement = PARA__PLACE_MIXED;
    para__footprints *host = para__footprints_new(g, false);
    para__footprints *res = para__footprints_new(g, true);
    assert_non_null(host);
    assert_non_null(res);
    for (size_t items = 1; items <= 4096; items *= 4) {
        uint64_t batch = para__batch_alloc_size(1, items * 4);
        uint64_t header = para__batch_alloc_size(1, 0);
        uint64_t stage = items * 4;
        /* the source's batch (a view of the array: its header), and 3
         * kernel nodes, each its batch and in + out staging */
        assert_int_equal(para__footprint(host, src->source_slot, items),
                         header + 3 * batch + 3 * 2 * stage);
        /* source; A: header, input staging; B: batch, output staging;
         * C: as without residency */
        assert_int_equal(para__footprint(res, src->source_slot, items),
                         header + (header + stage) + (batch + stage) +
                             (batch + 2 * stage));
        assert_true(para__footprint(res, src->source_slot, items) <
                    para__footprint(host, src->source_slot, items));
    }
    para__footprints_free(host);
    para__footprints_free(res);
    para_graph_destroy(g);
}

/* A batch arriving from another rank: admitted when it fits or nothing is
 * reserved; refused otherwise, and then sources leave it room until it is
 * in; forced, it comes in over the limit and holds the sources back. */
static void test_arrival(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1000, 1);
    para__family *src = NULL, *arr = NULL, *arr2 = NULL, *fam = NULL;
    /* Nothing reserved: even more than the limit comes in. */
    assert_int_equal(para__budget_admit_arrival(&f.run, 5000, false, &arr), 0);
    assert_non_null(arr);
    assert_int_equal(reserved(&f), 5000);
    assert_false(para__budget_sources_open(&f.run));
    para__family_unref(&f.run, arr);
    assert_int_equal(reserved(&f), 0);
    /* A source takes 740; an arrival of 400 does not fit: refused. */
    assert_int_equal(para__budget_admit(&f.run, 0, 64, false, &src), 64);
    assert_int_equal(para__budget_admit_arrival(&f.run, 400, false, &arr),
                     PARA_EAGAIN);
    assert_null(arr);
    assert_int_equal(reserved(&f), 740);
    /* 260 free, but the waiting 400 comes first: sources are closed and a
     * pull that would fit is refused... */
    assert_false(para__budget_sources_open(&f.run));
    assert_int_equal(para__budget_admit(&f.run, 0, 1, false, &fam), 0);
    assert_null(fam);
    /* ...until the bytes come back and the arrival is in. */
    para__family_unref(&f.run, src);
    assert_int_equal(para__budget_admit_arrival(&f.run, 400, false, &arr), 0);
    assert_int_equal(reserved(&f), 400);
    assert_true(para__budget_sources_open(&f.run));
    assert_int_equal(para__budget_admit(&f.run, 0, 64, false, &src), 32);
    assert_int_equal(reserved(&f), 820);
    /* Forced (credit bounded its sender): in over the limit. */
    assert_int_equal(para__budget_admit_arrival(&f.run, 900, true, &arr2), 0);
    assert_int_equal(reserved(&f), 1720);
    assert_false(para__budget_sources_open(&f.run));
    para__family_unref(&f.run, arr2);
    para__family_unref(&f.run, arr);
    para__family_unref(&f.run, src);
    assert_int_equal(reserved(&f), 0);
    assert_true(para__budget_sources_open(&f.run));
    teardown(&f);
}

/* An arrival's footprint: the batch itself, and the batches it becomes at
 * the nodes it reaches on this rank, not at nodes elsewhere. */
static void test_footprint_arrival(void **state)
{
    (void)state;
    para_graph_t *g;
    para_node_t *src, *m1, *m2, *sink;
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_range(g, "r", 0, 1000, &src), 0);
    assert_int_equal(para_graph_add_map(g, "m1", 8, 64, copy8, NULL, 0, &m1),
                     0);
    assert_int_equal(para_graph_add_map(g, "m2", 64, 32, copy8, NULL, 0, &m2),
                     0);
    assert_int_equal(
        para_graph_add_sink(g, "s", 32, drop, NULL, PARA_NODE_PARALLEL, &sink),
        0);
    assert_int_equal(para_graph_connect(g, src, m1), 0);
    assert_int_equal(para_graph_connect(g, m1, m2), 0);
    assert_int_equal(para_graph_connect(g, m2, sink), 0);
    assert_int_equal(para__graph_prepare(g), 0);
    para__footprints *fp = para__footprints_new(g, false);
    assert_non_null(fp);
    bool here[4] = {false, false, false, false};
    here[m1->index] = here[m2->index] = here[sink->index] = true;
    size_t items = 100;
    uint64_t m1_out = para__batch_alloc_size(1, items * 64);
    uint64_t m2_out = para__batch_alloc_size(1, items * 32);
    /* At m1: the batch, m1's output, m2's output; the sink holds none. */
    assert_int_equal(para__footprint_arrival(fp, m1, items, 777, here),
                     777 + m1_out + m2_out);
    /* m2 runs elsewhere: m1's output leaves, nothing more is here. */
    here[m2->index] = false;
    assert_int_equal(para__footprint_arrival(fp, m1, items, 777, here),
                     777 + m1_out);
    /* At the sink: only the batch. */
    assert_int_equal(para__footprint_arrival(fp, sink, items, 777, here), 777);
    para__footprints_free(fp);
    para_graph_destroy(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admission),
        cmocka_unit_test(test_release_wakes_only_held),
        cmocka_unit_test(test_family_cache),
        cmocka_unit_test(test_nothing_reserved_admits_one),
        cmocka_unit_test(test_device_budget),
        cmocka_unit_test(test_exhausted_source_closes),
        cmocka_unit_test(test_footprint),
        cmocka_unit_test(test_footprint_resident),
        cmocka_unit_test(test_arrival),
        cmocka_unit_test(test_footprint_arrival),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
