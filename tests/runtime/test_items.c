/*
 * The batch-loop macros of para/items.h: PARA_MAP_ITEMS, PARA_SINK_ITEMS and
 * PARA_SINK_ITEMS_STATE apply the item function to every item in order and
 * return the first failure's code; PARA_SINK_ITEMS_STATE writes the state
 * back once per call, on failure too; and in a real run (a range into a
 * parallel map into a serial sink, 2 workers, every policy) each gives the
 * same totals as a plain loop, and a failing item names the node.
 *
 * Blocks (test_blocks): with more items than PARA_ITEMS_BLOCK, a failing
 * map item returns the first failing item's code (also with a second
 * failure later in its block), the items before it are done, and item_fn
 * was called for the rest of its block only; a failing sink item leaves
 * the state the items before it made, whichever block or tail it is in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "para.h"

#define N 100000u

typedef struct totals {
    uint64_t count, sum, sum_sq;
} totals;

static inline int triple(void *ctx, const uint64_t *in, uint64_t *out)
{
    const uint64_t *fail_at = ctx;
    if (fail_at != NULL && *in == *fail_at)
        return 21;
    *out = 3 * *in;
    return 0;
}
PARA_MAP_ITEMS(triple_batch, uint64_t, uint64_t, triple)

/* PARA_SINK_ITEMS: ctx is the totals, updated in place item by item. */
static inline int add_in_place(void *ctx, const uint64_t *in)
{
    totals *t = ctx;
    if (*in == UINT64_MAX)
        return 22;
    t->count++;
    t->sum += *in;
    t->sum_sq += *in * *in;
    return 0;
}
PARA_SINK_ITEMS(add_batch, uint64_t, add_in_place)

/* PARA_SINK_ITEMS_STATE: the same on a local copy of the totals. */
static inline int add_state(totals *t, const uint64_t *in)
{
    return add_in_place(t, in);
}
PARA_SINK_ITEMS_STATE(add_state_batch, uint64_t, totals, add_state)

static totals plain_loop(uint64_t n, uint64_t factor)
{
    totals t = {0};
    for (uint64_t i = 0; i < n; i++) {
        t.count++;
        t.sum += factor * i;
        t.sum_sq += factor * i * factor * i;
    }
    return t;
}

static void test_batch_calls(void **state)
{
    (void)state;
    uint64_t in[6] = {0, 1, 2, 3, 4, 5}, out[6] = {0};
    assert_int_equal(triple_batch(NULL, in, out, 6), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(out[i], 3 * in[i]);
    memset(out, 0, sizeof out);
    uint64_t fail_at = 3;
    assert_int_equal(triple_batch(&fail_at, in, out, 6), 21);
    assert_int_equal(out[2], 6); /* items before the failing one are done */
    assert_int_equal(out[3], 0); /* and nothing from it on */

    totals a = {0}, b = {0};
    assert_int_equal(add_batch(&a, in, 6), 0);
    assert_int_equal(add_state_batch(&b, in, 6), 0);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(b.count, 6);
    assert_int_equal(b.sum, 15);
    assert_int_equal(b.sum_sq, 55);
    assert_int_equal(add_state_batch(&b, in, 0), 0); /* empty: unchanged */
    assert_int_equal(b.count, 6);

    /* A failure writes back what the items before it did. */
    uint64_t bad[4] = {10, 20, UINT64_MAX, 30};
    totals c = {0}, d = {0};
    assert_int_equal(add_batch(&c, bad, 4), 22);
    assert_int_equal(add_state_batch(&d, bad, 4), 22);
    assert_memory_equal(&c, &d, sizeof c);
    assert_int_equal(d.count, 2);
    assert_int_equal(d.sum, 30);
}

/* A map that counts its calls and fails on listed values with a code per
 * value (not a PARALLEL node's function: for direct calls only). */
typedef struct counting {
    size_t calls;
    uint64_t fail_a, fail_b; /* values that fail with 31 and 32 */
} counting;

static inline int count_double(void *ctx, const uint64_t *in, uint64_t *out)
{
    counting *c = ctx;
    c->calls++;
    if (*in == c->fail_a)
        return 31;
    if (*in == c->fail_b)
        return 32;
    *out = 2 * *in;
    return 0;
}
PARA_MAP_ITEMS(count_double_batch, uint64_t, uint64_t, count_double)

#define NB (3 * PARA_ITEMS_BLOCK + 5) /* three blocks and a tail */

static void test_blocks(void **state)
{
    (void)state;
    uint64_t in[NB], out[NB];
    for (size_t i = 0; i < NB; i++)
        in[i] = i + 1;

    /* No failure: every item, once, blocks and tail alike. */
    counting c = {0, UINT64_MAX, UINT64_MAX};
    assert_int_equal(count_double_batch(&c, in, out, NB), 0);
    assert_int_equal(c.calls, NB);
    for (size_t i = 0; i < NB; i++)
        assert_int_equal(out[i], 2 * in[i]);

    /* Failures at every position: the first failing item's code, the items
     * before it done, calls up to the end of its block (or to it, in the
     * tail) and no further. */
    for (size_t f = 0; f < NB; f++) {
        memset(out, 0, sizeof out);
        c = (counting){0, in[f], UINT64_MAX};
        assert_int_equal(count_double_batch(&c, in, out, NB), 31);
        for (size_t i = 0; i < f; i++)
            assert_int_equal(out[i], 2 * in[i]);
        size_t block_end = (f / PARA_ITEMS_BLOCK + 1) * PARA_ITEMS_BLOCK;
        size_t want =
            block_end <= NB - NB % PARA_ITEMS_BLOCK ? block_end : f + 1;
        assert_int_equal(c.calls, want);
    }

    /* Two failures in one block: the earlier one's code, whichever value
     * it has. */
    c = (counting){0, in[PARA_ITEMS_BLOCK + 9], in[PARA_ITEMS_BLOCK + 3]};
    assert_int_equal(count_double_batch(&c, in, out, NB), 32);
    c = (counting){0, in[PARA_ITEMS_BLOCK + 3], in[PARA_ITEMS_BLOCK + 9]};
    assert_int_equal(count_double_batch(&c, in, out, NB), 31);

    /* The state sink: a failure anywhere leaves exactly the items before
     * it in the state, and its code. */
    uint64_t sink_in[NB];
    for (size_t f = 0; f <= NB; f++) {
        for (size_t i = 0; i < NB; i++)
            sink_in[i] = i == f ? UINT64_MAX : i;
        totals want = plain_loop(f < NB ? f : NB, 1);
        totals got = {0};
        assert_int_equal(add_state_batch(&got, sink_in, NB), f < NB ? 22 : 0);
        assert_memory_equal(&got, &want, sizeof want);
    }
}

static para_runtime_t *make_rt(const char *policy)
{
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = 2;
    a.pin = "none";
    a.policy = policy;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    return rt;
}

/* range 0..n -> parallel triple (batch macro) -> serial sink (batch macro
 * @p sink), on @p t. */
static int run_graph(para_runtime_t *rt, para_sink_batch_fn sink, totals *t,
                     uint64_t *fail_at)
{
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *r, *m, *k;
    assert_int_equal(para_graph_add_range(g, "range", 0, N, &r), 0);
    assert_int_equal(para_graph_add_map_batch(g, "triple", 8, 8, triple_batch,
                                              fail_at, PARA_NODE_PARALLEL, &m),
                     0);
    assert_int_equal(para_graph_add_sink_batch(g, "totals", 8, sink, t,
                                               PARA_NODE_SERIAL, &k),
                     0);
    assert_int_equal(para_graph_connect(g, r, m), 0);
    assert_int_equal(para_graph_connect(g, m, k), 0);
    int rc = para_run(rt, g);
    para_graph_destroy(g);
    return rc;
}

static void test_runs_match_plain_loop(void **state)
{
    (void)state;
    static const char *const policies[] = {"ws", "memaware", "dhondt", "fifo"};
    totals want = plain_loop(N, 3);
    for (size_t p = 0; p < sizeof policies / sizeof *policies; p++) {
        para_runtime_t *rt = make_rt(policies[p]);
        totals a = {0}, b = {0};
        assert_int_equal(run_graph(rt, add_batch, &a, NULL), 0);
        assert_int_equal(run_graph(rt, add_state_batch, &b, NULL), 0);
        assert_memory_equal(&a, &want, sizeof want);
        assert_memory_equal(&b, &want, sizeof want);

        uint64_t fail_at = N / 2;
        totals c = {0};
        assert_int_equal(run_graph(rt, add_state_batch, &c, &fail_at),
                         PARA_ENODE);
        assert_non_null(strstr(para_runtime_errmsg(rt), "triple"));
        assert_true(c.count < N);
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_calls),
        cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_runs_match_plain_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
