/*
 * Reduce nodes (runtime/reduce.c) and para_worker_index(): the same result
 * under every policy and worker counts 1..4 (integers exactly, with adaptive
 * batches; floating point bit for bit with PARA_REDUCE_ORDERED and a fixed
 * batch size, equal to folding the batches in source order), a graph run
 * twice, a failing fold, bad descriptions.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "para.h"

#define N 200000u
#define BINS 16

static const char *const policies[] = {"ws", "memaware", "dhondt", "fifo"};

typedef struct totals {
    uint64_t count, sum, sum_sq;
    uint64_t hist[BINS];
} totals;

static void t_init(void *ctx, void *s)
{
    (void)ctx;
    memset(s, 0, sizeof(totals));
}

static int t_fold(void *ctx, void *s, const void *in, size_t n)
{
    uint64_t *fail_at = ctx;
    totals *t = s;
    const uint64_t *v = in;
    for (size_t i = 0; i < n; i++) {
        if (fail_at != NULL && v[i] == *fail_at)
            return 17;
        t->count++;
        t->sum += v[i];
        t->sum_sq += v[i] * v[i];
        t->hist[v[i] % BINS]++;
    }
    return 0;
}

static void t_merge(void *ctx, void *into, const void *from)
{
    (void)ctx;
    totals *a = into;
    const totals *b = from;
    a->count += b->count;
    a->sum += b->sum;
    a->sum_sq += b->sum_sq;
    for (int i = 0; i < BINS; i++)
        a->hist[i] += b->hist[i];
}

/* Worker indices seen by the map (a bitmask). */
static atomic_uint_fast64_t seen_workers;
static atomic_int bad_index;

static int x3p1(void *ctx, const void *in, void *out)
{
    unsigned workers = *(const unsigned *)ctx;
    int w = para_worker_index();
    if (w < 0 || (unsigned)w >= workers)
        atomic_store(&bad_index, 1);
    else
        atomic_fetch_or(&seen_workers, (uint64_t)1 << w);
    uint64_t x;
    memcpy(&x, in, 8);
    x = x * 3 + 1;
    memcpy(out, &x, 8);
    return 0;
}

static para_runtime_t *make_rt(unsigned workers, const char *policy,
                               size_t batch)
{
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = workers;
    a.pin = "none";
    if (policy != NULL)
        a.policy = policy;
    a.batch_items = batch;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    return rt;
}

static void expected_totals(totals *t)
{
    memset(t, 0, sizeof *t);
    for (uint64_t i = 0; i < N; i++) {
        uint64_t v = i * 3 + 1;
        t->count++;
        t->sum += v;
        t->sum_sq += v * v;
        t->hist[v % BINS]++;
    }
}

/* range [0, N) -> "x3p1" (ctx @p workers) -> the reduce node @p d. */
static para_graph_t *x3p1_graph(const para_reduce_desc_t *d, unsigned *workers)
{
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *r, *m, *k;
    assert_int_equal(para_graph_add_range(g, "r", 0, N, &r), 0);
    assert_int_equal(para_graph_add_map(g, "x3p1", 8, 8, x3p1, workers, 0, &m),
                     0);
    assert_int_equal(para_graph_add_reduce(g, d, &k), 0);
    assert_int_equal(para_graph_connect(g, r, m), 0);
    assert_int_equal(para_graph_connect(g, m, k), 0);
    return g;
}

static void test_integers_every_policy(void **state)
{
    (void)state;
    totals want;
    expected_totals(&want);
    assert_int_equal(para_worker_index(), -1); /* not a worker */
    for (unsigned p = 0; p < 4; p++) {
        for (unsigned workers = 1; workers <= 4; workers++) {
            para_runtime_t *rt = make_rt(workers, policies[p], 0);
            totals got;
            para_reduce_desc_t d = {.name = "totals",
                                    .in_size = 8,
                                    .state_size = sizeof(totals),
                                    .init = t_init,
                                    .fold = t_fold,
                                    .merge = t_merge,
                                    .result = &got};
            para_graph_t *g = x3p1_graph(&d, &workers);
            atomic_store(&seen_workers, 0);
            atomic_store(&bad_index, 0);
            for (int rep = 0; rep < 2; rep++) { /* runs again, same result */
                memset(&got, 0xab, sizeof got);
                int rc = para_run(rt, g);
                if (rc != 0)
                    fail_msg("%s/%u: %s", policies[p], workers,
                             para_runtime_errmsg(rt));
                if (memcmp(&got, &want, sizeof got) != 0)
                    fail_msg("%s, %u workers: count %llu sum %llu (want "
                             "%llu, %llu)",
                             policies[p], workers,
                             (unsigned long long)got.count,
                             (unsigned long long)got.sum,
                             (unsigned long long)want.count,
                             (unsigned long long)want.sum);
            }
            assert_int_equal(atomic_load(&bad_index), 0);
            assert_true(atomic_load(&seen_workers) != 0);
            para_graph_destroy(g);
            assert_int_equal(para_runtime_destroy(rt), 0);
        }
    }
}

/* Floating point: sum of 1/(x+1), with terms of very different sizes so
 * that the grouping changes the bits. */
static void d_init(void *ctx, void *s)
{
    (void)ctx;
    *(double *)s = 0.0;
}

static int d_fold(void *ctx, void *s, const void *in, size_t n)
{
    (void)ctx;
    const uint64_t *v = in;
    double acc = *(double *)s;
    for (size_t i = 0; i < n; i++)
        acc += 1.0 / (double)(v[i] + 1) + (v[i] % 7 == 0 ? 1e8 : 0.0);
    *(double *)s = acc;
    return 0;
}

static void d_merge(void *ctx, void *into, const void *from)
{
    (void)ctx;
    *(double *)into += *(const double *)from;
}

static void test_float_ordered_is_reproducible(void **state)
{
    (void)state;
    const size_t batch = 100;
    /* The reference: fold each batch of `batch` items in source order, then
     * merge the partials in order. */
    double want = 0.0;
    for (uint64_t b = 0; b < N; b += batch) {
        uint64_t v[100];
        size_t n = 0;
        for (uint64_t i = b; i < b + batch && i < N; i++)
            v[n++] = i * 3 + 1;
        double part = 0.0;
        d_fold(NULL, &part, v, n);
        want += part;
    }
    for (unsigned p = 0; p < 4; p++) {
        for (unsigned workers = 1; workers <= 4; workers++) {
            para_runtime_t *rt = make_rt(workers, policies[p], batch);
            double got = -1.0;
            para_reduce_desc_t d = {.name = "sum",
                                    .flags = PARA_REDUCE_ORDERED,
                                    .in_size = 8,
                                    .state_size = sizeof(double),
                                    .init = d_init,
                                    .fold = d_fold,
                                    .merge = d_merge,
                                    .result = &got};
            para_graph_t *g = x3p1_graph(&d, &workers);
            assert_int_equal(para_run(rt, g), 0);
            if (memcmp(&got, &want, sizeof got) != 0)
                fail_msg("%s, %u workers: %.17g, want %.17g", policies[p],
                         workers, got, want);
            para_graph_destroy(g);
            assert_int_equal(para_runtime_destroy(rt), 0);
        }
    }
}

static void test_fold_failure_and_misuse(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2, NULL, 0);
    for (unsigned flags = 0; flags <= PARA_REDUCE_ORDERED; flags++) {
        para_graph_t *g;
        assert_int_equal(para_graph_create(&g), 0);
        para_node_t *r, *k;
        assert_int_equal(para_graph_add_range(g, "r", 0, N, &r), 0);
        uint64_t fail_at = N / 2;
        totals got;
        memset(&got, 0x5a, sizeof got);
        totals before = got;
        para_reduce_desc_t d = {.name = "failing_reduce",
                                .flags = flags,
                                .in_size = 8,
                                .state_size = sizeof(totals),
                                .ctx = &fail_at,
                                .init = t_init,
                                .fold = t_fold,
                                .merge = t_merge,
                                .result = &got};
        assert_int_equal(para_graph_add_reduce(g, &d, &k), 0);
        assert_int_equal(para_graph_connect(g, r, k), 0);
        assert_int_equal(para_run(rt, g), PARA_ENODE);
        assert_non_null(strstr(para_runtime_errmsg(rt), "failing_reduce"));
        assert_memory_equal(&got, &before, sizeof got); /* unchanged */
        para_graph_destroy(g);
    }
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    totals got;
    para_reduce_desc_t d = {.name = "bad",
                            .in_size = 8,
                            .state_size = sizeof(totals),
                            .init = t_init,
                            .fold = t_fold,
                            .result = &got};
    assert_int_equal(para_graph_add_reduce(g, &d, NULL), PARA_EINVAL);
    d.merge = t_merge;
    d.flags = 0x80;
    assert_int_equal(para_graph_add_reduce(g, &d, NULL), PARA_EINVAL);
    assert_int_equal(para_graph_add_reduce(g, NULL, NULL), PARA_EINVAL);
    assert_int_equal(para_graph_add_reduce(NULL, &d, NULL), PARA_EINVAL);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integers_every_policy),
        cmocka_unit_test(test_float_ordered_is_reproducible),
        cmocka_unit_test(test_fold_failure_and_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
