/*
 * Items that own memory (runtime/owned.c): every owned item is released
 * exactly once on every path, and the budget counts per-item bytes.
 *
 * Items are {id, buf, len}: the source mallocs buf (filled with the id's
 * low byte) and the release hook checks the bytes, frees buf and counts
 * the id. After each run every id the source produced must have been
 * released exactly once (by the runtime or by a node that took it), and no
 * other; ASan reports a double free or a leak on its own.
 *
 * Paths: consumed (borrowed by a map and a sink), filtered (dropped items
 * released by the runtime, kept ones taken by a sink), fan-out (shared,
 * released after both readers), a failing node (owned input and owned
 * output of the failing node), cancellation, an ORDERED reorder buffer at
 * abort, device staging on the cpu back-end, validation of takers after a
 * fan-out, a flat-map whose output batch grows while it emits owned items;
 * and the byte budget with items of 1 KiB to 4 MiB.
 */
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

#define N_ITEMS 20000u

typedef struct own_item {
    uint64_t id;
    unsigned char *buf;
    size_t len;
} own_item;

typedef struct tracker {
    uint64_t n;    /* ids in [0, n) */
    uint64_t next; /* source cursor (claim-owned) */
    size_t len_min, len_max;
    atomic_uint *made;     /* per id: items made */
    atomic_uint *released; /* per id: items released (runtime or taker) */
    atomic_uint_fast64_t live_bytes;
    /* Where nodes fail or cancel (UINT64_MAX: never). */
    uint64_t make_fail_at, read_fail_at, sink_fail_at, cancel_at;
    para_runtime_t *rt;
    atomic_uint_fast64_t sum; /* readers add ids here */
} tracker;

static void tracker_init(tracker *t, uint64_t n, size_t len_min, size_t len_max)
{
    memset(t, 0, sizeof *t);
    t->n = n;
    t->len_min = len_min;
    t->len_max = len_max;
    t->make_fail_at = t->read_fail_at = UINT64_MAX;
    t->sink_fail_at = t->cancel_at = UINT64_MAX;
    t->made = calloc(n, sizeof *t->made);
    t->released = calloc(n, sizeof *t->released);
    assert_non_null(t->made);
    assert_non_null(t->released);
    atomic_init(&t->live_bytes, 0);
    atomic_init(&t->sum, 0);
}

static void tracker_rearm(tracker *t)
{
    memset(t->made, 0, t->n * sizeof *t->made);
    memset(t->released, 0, t->n * sizeof *t->released);
    atomic_store(&t->sum, 0);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static void make_item(tracker *t, uint64_t id, own_item *it)
{
    size_t span = t->len_max - t->len_min + 1;
    it->id = id;
    it->len = t->len_min + (size_t)(mix(id + 1) % span);
    it->buf = malloc(it->len);
    assert_non_null(it->buf);
    memset(it->buf, (int)(id & 0xff), it->len);
    /* relaxed: totals read after the run. */
    atomic_fetch_add_explicit(&t->live_bytes, it->len, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->made[id], 1, memory_order_relaxed);
}

/* Free one item and count it; used by the runtime and by takers. */
static void free_item(tracker *t, own_item *it)
{
    if (it->buf[0] != (unsigned char)(it->id & 0xff) ||
        it->buf[it->len - 1] != (unsigned char)(it->id & 0xff))
        fail_msg("item %llu corrupted before its release",
                 (unsigned long long)it->id);
    free(it->buf);
    it->buf = NULL;
    /* relaxed: counts read after the run. */
    atomic_fetch_sub_explicit(&t->live_bytes, it->len, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->released[it->id], 1, memory_order_relaxed);
}

static void own_release(void *ctx, void *items, size_t n)
{
    own_item *it = items;
    for (size_t i = 0; i < n; i++)
        free_item(ctx, &it[i]);
}

static size_t own_bytes(void *ctx, const void *item)
{
    (void)ctx;
    return ((const own_item *)item)->len;
}

static int own_open(void *ctx)
{
    tracker *t = ctx;
    t->next = 0;
    return 0;
}

static int own_source(void *ctx, void *out, size_t cap, size_t *n)
{
    tracker *t = ctx;
    own_item *o = out;
    size_t k = 0;
    while (k < cap && t->next < t->n)
        make_item(t, t->next++, &o[k++]);
    *n = k;
    return 0;
}

/* Every item made was released exactly once; nothing owns bytes any more.
 * With @p all, every id was made. */
static void check_released(tracker *t, const char *what, bool all)
{
    for (uint64_t i = 0; i < t->n; i++) {
        unsigned m = atomic_load(&t->made[i]);
        unsigned r = atomic_load(&t->released[i]);
        if (m > 1 || r != m || (all && m != 1))
            fail_msg("%s: item %llu made %u times, released %u times", what,
                     (unsigned long long)i, m, r);
    }
    assert_int_equal(atomic_load(&t->live_bytes), 0);
}

static void tracker_fini(tracker *t)
{
    free(t->made);
    free(t->released);
}

static para_runtime_t *make_rt(unsigned workers, const char *policy,
                               const char *device, size_t batch, size_t budget)
{
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = workers;
    a.pin = "none";
    if (policy != NULL)
        a.policy = policy;
    a.device = device;
    a.batch_items = batch;
    if (budget != 0)
        a.mem_budget = budget;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    return rt;
}

static para_node_t *add_source(para_graph_t *g, tracker *t)
{
    para_node_desc_t d = {.name = "src",
                          .out_size = sizeof(own_item),
                          .ctx = t,
                          .source = own_source,
                          .open = own_open,
                          .release = own_release,
                          .owned_bytes = own_bytes};
    para_node_t *n = NULL;
    assert_int_equal(para_graph_add(g, &d, &n), 0);
    return n;
}

/* range "ids" -> "make" (a map making owned items, failing at
 * make_fail_at). */
static int make_owned(void *ctx, const void *in, void *out)
{
    tracker *t = ctx;
    uint64_t id;
    memcpy(&id, in, sizeof id);
    if (id == t->make_fail_at)
        return 31;
    if (id % 97 == 0) { /* jitter: batches finish out of order */
        volatile uint64_t x = 0;
        for (int i = 0; i < 20000; i++)
            x += (uint64_t)i;
    }
    make_item(t, id, out);
    return 0;
}

static para_node_t *add_maker(para_graph_t *g, tracker *t)
{
    para_node_t *r = NULL, *m = NULL;
    assert_int_equal(para_graph_add_range(g, "ids", 0, t->n, &r), 0);
    para_node_desc_t d = {.name = "make",
                          .in_size = 8,
                          .out_size = sizeof(own_item),
                          .ctx = t,
                          .map = make_owned,
                          .release = own_release,
                          .owned_bytes = own_bytes};
    assert_int_equal(para_graph_add(g, &d, &m), 0);
    assert_int_equal(para_graph_connect(g, r, m), 0);
    return m;
}

static void conn(para_graph_t *g, para_node_t *a, para_node_t *b)
{
    assert_int_equal(para_graph_connect(g, a, b), 0);
}

/* ---- node functions ------------------------------------------------------ */

/* Borrow: read the item (its bytes must still be there), emit its id. */
static int read_id(void *ctx, const void *in, void *out)
{
    tracker *t = ctx;
    const own_item *it = in;
    if (it->buf == NULL || it->buf[it->len / 2] != (unsigned char)(it->id))
        return -1;
    if (it->id == t->read_fail_at)
        return 4242;
    if (it->id == t->cancel_at && para_run_cancel(t->rt) != 0)
        return -3;
    memcpy(out, &it->id, sizeof it->id);
    return 0;
}

static int sum_ids(void *ctx, const void *in)
{
    tracker *t = ctx;
    uint64_t v;
    memcpy(&v, in, sizeof v);
    /* relaxed: read after the run. */
    atomic_fetch_add_explicit(&t->sum, v, memory_order_relaxed);
    return 0;
}

/* A borrowing sink of owned items. */
static int borrow_sink(void *ctx, const void *in)
{
    tracker *t = ctx;
    const own_item *it = in;
    if (it->buf[0] != (unsigned char)it->id)
        return -2;
    if (it->id == t->sink_fail_at)
        return 77;
    /* relaxed: read after the run. */
    atomic_fetch_add_explicit(&t->sum, it->id, memory_order_relaxed);
    return 0;
}

/* A taking sink: frees what it is given, except the item it fails on. */
static int taking_sink(void *ctx, const void *in)
{
    tracker *t = ctx;
    own_item it;
    memcpy(&it, in, sizeof it);
    if (it.id == t->sink_fail_at)
        return 99;
    /* relaxed: read after the run. */
    atomic_fetch_add_explicit(&t->sum, it.id, memory_order_relaxed);
    free_item(t, &it);
    return 0;
}

static int keep_even(void *ctx, const void *in)
{
    tracker *t = ctx;
    const own_item *it = in;
    if (it->id == t->read_fail_at)
        return -5;
    return (it->id % 2) == 0;
}

/* The same predicate as a batch filter (items.h). */
PARA_FILTER_ITEMS(keep_even_batch, own_item, keep_even)

static uint64_t sum_to(uint64_t n)
{
    return n * (n - 1) / 2;
}

/* @p from -> "read" (read_id) -> "sum" (sum_ids, @p sink_flags), both on
 * @p t. */
static void add_read_sum(para_graph_t *g, tracker *t, para_node_t *from,
                         unsigned sink_flags)
{
    para_node_t *m, *k;
    assert_int_equal(
        para_graph_add_map(g, "read", sizeof(own_item), 8, read_id, t, 0, &m),
        0);
    assert_int_equal(
        para_graph_add_sink(g, "sum", 8, sum_ids, t, sink_flags, &k), 0);
    conn(g, from, m);
    conn(g, m, k);
}

/* ---- paths ----------------------------------------------------------------
 */

static void test_consumed_every_policy(void **state)
{
    (void)state;
    const char *policies[] = {"ws", "memaware", "dhondt", "fifo"};
    for (unsigned p = 0; p < 4; p++) {
        para_runtime_t *rt = make_rt(3, policies[p], "none", 0, 0);
        tracker t;
        tracker_init(&t, N_ITEMS, 1, 300);
        para_graph_t *g;
        assert_int_equal(para_graph_create(&g), 0);
        add_read_sum(g, &t, add_source(g, &t), PARA_NODE_PARALLEL);
        for (int rep = 0; rep < 2; rep++) { /* the graph runs again */
            tracker_rearm(&t);
            assert_int_equal(para_run(rt, g), 0);
            assert_int_equal(atomic_load(&t.sum), sum_to(N_ITEMS));
            check_released(&t, policies[p], true);
        }
        para_graph_destroy(g);
        tracker_fini(&t);
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
}

/* src -> filter(even) -> taking sink: odd ids released by the runtime as
 * the filter drops them, even ones freed by the sink; then the filter
 * fails, then the sink. */
static void test_filtered_and_taken(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2, NULL, "none", 0, 0);
    for (int fail = 0; fail < 6; fail++) {
        const bool batched = fail >= 3; /* the same, by batches */
        tracker t;
        tracker_init(&t, N_ITEMS, 1, 64);
        if (fail % 3 == 1)
            t.read_fail_at = 7001; /* the filter */
        if (fail % 3 == 2)
            t.sink_fail_at = 9000;
        para_graph_t *g;
        assert_int_equal(para_graph_create(&g), 0);
        para_node_t *s = add_source(g, &t), *f, *k;
        assert_int_equal(
            batched ? para_graph_add_filter_batch(g, "even", sizeof(own_item),
                                                  keep_even_batch, &t, 0, &f)
                    : para_graph_add_filter(g, "even", sizeof(own_item),
                                            keep_even, &t, 0, &f),
            0);
        para_node_desc_t kd = {.name = "take",
                               .flags = PARA_NODE_TAKES | PARA_NODE_SERIAL,
                               .in_size = sizeof(own_item),
                               .ctx = &t,
                               .sink = taking_sink};
        assert_int_equal(para_graph_add(g, &kd, &k), 0);
        conn(g, s, f);
        conn(g, f, k);
        int rc = para_run(rt, g);
        if (fail % 3 == 0) {
            assert_int_equal(rc, 0);
            assert_int_equal(atomic_load(&t.sum), 2 * sum_to(N_ITEMS / 2));
        } else {
            assert_int_equal(rc, PARA_ENODE);
            assert_non_null(strstr(para_runtime_errmsg(rt),
                                   fail % 3 == 1 ? "even" : "take"));
        }
        check_released(&t, batched ? "filtered by batches" : "filtered",
                       fail % 3 == 0);
        para_graph_destroy(g);
        tracker_fini(&t);
    }
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* src -> {read -> sum, borrow sink}: both read every item; each is released
 * once, after both. A taker or a filter after the fan-out is refused. */
static void test_fanout_shares(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(3, NULL, "none", 0, 0);
    tracker t;
    tracker_init(&t, N_ITEMS, 1, 64);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *s = add_source(g, &t), *k2;
    add_read_sum(g, &t, s, PARA_NODE_PARALLEL);
    assert_int_equal(para_graph_add_sink(g, "borrow", sizeof(own_item),
                                         borrow_sink, &t, PARA_NODE_PARALLEL,
                                         &k2),
                     0);
    conn(g, s, k2);
    assert_int_equal(para_run(rt, g), 0);
    assert_int_equal(atomic_load(&t.sum), 2 * sum_to(N_ITEMS));
    check_released(&t, "fan-out", true);

    /* A filter as a third branch: refused, naming both nodes. */
    para_node_t *f, *k3;
    assert_int_equal(para_graph_add_filter(g, "even", sizeof(own_item),
                                           keep_even, &t, 0, &f),
                     0);
    para_node_desc_t kd = {.name = "take",
                           .flags = PARA_NODE_TAKES,
                           .in_size = sizeof(own_item),
                           .ctx = &t,
                           .sink = taking_sink};
    assert_int_equal(para_graph_add(g, &kd, &k3), 0);
    conn(g, s, f);
    conn(g, f, k3);
    assert_int_equal(para_graph_validate(g), PARA_EINVAL);
    assert_non_null(strstr(para_graph_errmsg(g), "'even'"));
    assert_non_null(strstr(para_graph_errmsg(g), "'src'"));
    para_graph_destroy(g);

    /* Misuse is caught when the node is added. */
    assert_int_equal(para_graph_create(&g), 0);
    para_node_desc_t bad = {
        .name = "bad", .in_size = 8, .sink = sum_ids, .release = own_release};
    assert_int_equal(para_graph_add(g, &bad, NULL), PARA_EINVAL);
    para_node_desc_t bad2 = {.name = "bad2",
                             .flags = PARA_NODE_TAKES,
                             .in_size = 8,
                             .filter = keep_even};
    assert_int_equal(para_graph_add(g, &bad2, NULL), PARA_EINVAL);
    para_graph_destroy(g);
    tracker_fini(&t);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* ids -> make (owned) -> read -> sum, with (0) the maker failing mid-batch:
 * its finished outputs are released; (1) the reader failing; (2) the run
 * cancelled from inside the reader. */
static void test_failing_and_canceled(void **state)
{
    (void)state;
    for (unsigned workers = 1; workers <= 4; workers *= 2) {
        para_runtime_t *rt = make_rt(workers, NULL, "none", 0, 0);
        for (int mode = 0; mode < 3; mode++) {
            tracker t;
            tracker_init(&t, N_ITEMS, 1, 128);
            t.rt = rt;
            if (mode == 0)
                t.make_fail_at = 12345;
            else if (mode == 1)
                t.read_fail_at = 12345;
            else
                t.cancel_at = 5000;
            para_graph_t *g;
            assert_int_equal(para_graph_create(&g), 0);
            add_read_sum(g, &t, add_maker(g, &t), PARA_NODE_PARALLEL);
            int rc = para_run(rt, g);
            assert_int_equal(rc, mode == 2 ? PARA_ECANCELED : PARA_ENODE);
            if (mode < 2)
                assert_non_null(strstr(para_runtime_errmsg(rt),
                                       mode == 0 ? "make" : "read"));
            check_released(&t,
                           mode == 0   ? "maker fails"
                           : mode == 1 ? "reader fails"
                                       : "canceled",
                           false);
            para_graph_destroy(g);
            tracker_fini(&t);
        }
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
}

/* ids -> make (parallel, jitter) -> ORDERED borrowing sink, failing: at the
 * failure the reorder buffer holds batches of owned items. */
static void test_ordered_reorder_buffer(void **state)
{
    (void)state;
    for (int fail = 0; fail < 2; fail++) {
        para_runtime_t *rt = make_rt(3, NULL, "none", 16, 0);
        tracker t;
        tracker_init(&t, N_ITEMS, 1, 64);
        if (fail)
            t.sink_fail_at = 15000;
        para_graph_t *g;
        assert_int_equal(para_graph_create(&g), 0);
        para_node_t *m = add_maker(g, &t), *k;
        assert_int_equal(para_graph_add_sink(g, "ordered", sizeof(own_item),
                                             borrow_sink, &t, PARA_NODE_ORDERED,
                                             &k),
                         0);
        conn(g, m, k);
        int rc = para_run(rt, g);
        assert_int_equal(rc, fail ? PARA_ENODE : 0);
        if (!fail)
            assert_int_equal(atomic_load(&t.sum), sum_to(N_ITEMS));
        check_released(&t, "ordered", !fail);
        para_graph_destroy(g);
        tracker_fini(&t);
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
}
/* ---- device staging (cpu back-end) ----------------------------------------
 */

/* Items are uint32 handles into a table of owned buffers, so a kernel can
 * copy them; the release frees the buffer behind the handle. */
typedef struct handles {
    tracker t;
    own_item *table;
    uint32_t fail_sink_at;
    atomic_uint_fast64_t sum;
} handles;

static void h_release(void *ctx, void *items, size_t n)
{
    handles *h = ctx;
    const uint32_t *id = items;
    for (size_t i = 0; i < n; i++)
        free_item(&h->t, &h->table[id[i]]);
}

static int h_open(void *ctx)
{
    ((handles *)ctx)->t.next = 0;
    return 0;
}

static int h_source(void *ctx, void *out, size_t cap, size_t *n)
{
    handles *h = ctx;
    uint32_t *o = out;
    size_t k = 0;
    while (k < cap && h->t.next < h->t.n) {
        uint64_t id = h->t.next++;
        make_item(&h->t, id, &h->table[id]);
        o[k++] = (uint32_t)id;
    }
    *n = k;
    return 0;
}

static int h_sink(void *ctx, const void *in)
{
    handles *h = ctx;
    uint32_t v;
    memcpy(&v, in, sizeof v);
    if (v == h->fail_sink_at)
        return 55;
    /* relaxed: read after the run. */
    atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
    return 0;
}

/* The cpu back-end runs the kernel's CPU twin in place of the kernel. */
static int copy_cpu(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    memcpy(out, in, n * sizeof(uint32_t));
    return 0;
}

static void test_device_staging(void **state)
{
    (void)state;
    for (int fail = 0; fail < 2; fail++) {
        para_runtime_t *rt = make_rt(2, NULL, "cpu", 64, 0);
        handles h;
        tracker_init(&h.t, N_ITEMS, 1, 32);
        h.table = calloc(N_ITEMS, sizeof *h.table);
        assert_non_null(h.table);
        h.fail_sink_at = fail ? 9000 : UINT32_MAX;
        atomic_init(&h.sum, 0);
        para_graph_t *g;
        assert_int_equal(para_graph_create(&g), 0);
        para_node_desc_t sd = {.name = "handles",
                               .out_size = 4,
                               .ctx = &h,
                               .source = h_source,
                               .open = h_open,
                               .release = h_release};
        para_node_t *s, *k, *out;
        assert_int_equal(para_graph_add(g, &sd, &s), 0);
        para_kernel_desc_t kd = {.source = para_kernel_source("copy"),
                                 .entry = "copy_u32"};
        assert_int_equal(
            para_graph_add_kernel(g, "copy", 4, 4, &kd, copy_cpu, NULL, &k), 0);
        assert_int_equal(para_graph_add_sink(g, "sum", 4, h_sink, &h,
                                             PARA_NODE_PARALLEL, &out),
                         0);
        conn(g, s, k);
        conn(g, k, out);
        int rc = para_run(rt, g);
        assert_int_equal(rc, fail ? PARA_ENODE : 0);
        if (!fail) {
            assert_int_equal(atomic_load(&h.sum), sum_to(N_ITEMS));
            para_node_stats_t ks;
            assert_int_equal(para_node_stats(k, &ks), 0);
            assert_true(ks.device_items > 0); /* staged through the device */
        }
        check_released(&h.t, "device", !fail);
        para_graph_destroy(g);
        tracker_fini(&h.t);
        free(h.table);
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
}

/* ---- source batches sized by owned bytes ------------------------------------
 */

/* A source whose items own 5 MiB each (more than a sixteenth of any batch
 * byte cap) hands them out one per batch, the first pull included, though
 * nothing told it their size in advance; items owning 64 bytes still
 * travel many at a time. */
static void run_sized(size_t len, uint64_t n, uint64_t *batches)
{
    para_runtime_t *rt = make_rt(2, NULL, "none", 0, 0);
    tracker t;
    tracker_init(&t, n, len, len);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *s = add_source(g, &t), *m, *k;
    assert_int_equal(
        para_graph_add_map(g, "read", sizeof(own_item), 8, read_id, &t, 0, &m),
        0);
    assert_int_equal(
        para_graph_add_sink(g, "sum", 8, sum_ids, &t, PARA_NODE_SERIAL, &k), 0);
    conn(g, s, m);
    conn(g, m, k);
    assert_int_equal(para_run(rt, g), 0);
    check_released(&t, "sized", true);
    para_node_stats_t st;
    assert_int_equal(para_node_stats(s, &st), 0);
    assert_int_equal(st.items_out, n);
    *batches = st.batches;
    para_graph_destroy(g);
    tracker_fini(&t);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_source_batches_by_owned_bytes(void **state)
{
    (void)state;
    uint64_t batches;
    run_sized((size_t)5 << 20, 24, &batches);
    assert_int_equal(batches, 24);
    run_sized(64, 20000, &batches);
    if (batches * 16 > 20000)
        fail_msg("64-byte items: %llu batches for 20000 items",
                 (unsigned long long)batches);
}

/* ---- the budget with per-item bytes ----------------------------------------
 */

/* Items of 1 KiB to 4 MiB, mixed; a forced batch of 4 items. The memory
 * policy reserves each source batch's footprint with the largest per-item
 * bytes seen, so the peak stays within the budget plus one batch per
 * worker (the batches pulled before a larger item was seen). */
/* range -> flat-map emitting FANOUT owned items per input (its output
 * batch grows several times) -> borrowing sink: every item released once
 * (a grown batch must carry its items' owner along). */
#define FANOUT 50

static int emit_owned(void *ctx, const void *in, para_emitter_t *out)
{
    tracker *t = ctx;
    uint64_t v;
    memcpy(&v, in, sizeof v);
    for (uint64_t j = 0; j < FANOUT; j++) {
        own_item it;
        make_item(t, v * FANOUT + j, &it);
        if (para_emit(out, &it) != 0) {
            free_item(t, &it);
            return -1;
        }
    }
    return 0;
}

static void test_flat_map_grows(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2, NULL, "none", 0, 0);
    tracker t;
    tracker_init(&t, N_ITEMS, 1, 40);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *r, *f, *k;
    assert_int_equal(para_graph_add_range(g, "ids", 0, N_ITEMS / FANOUT, &r),
                     0);
    para_node_desc_t d = {.name = "explode",
                          .in_size = 8,
                          .out_size = sizeof(own_item),
                          .ctx = &t,
                          .flat_map = emit_owned,
                          .release = own_release,
                          .owned_bytes = own_bytes};
    assert_int_equal(para_graph_add(g, &d, &f), 0);
    assert_int_equal(para_graph_add_sink(g, "sum", sizeof(own_item),
                                         borrow_sink, &t, PARA_NODE_PARALLEL,
                                         &k),
                     0);
    conn(g, r, f);
    conn(g, f, k);
    assert_int_equal(para_run(rt, g), 0);
    assert_int_equal(atomic_load(&t.sum), sum_to(N_ITEMS));
    check_released(&t, "flat-map", true);
    para_graph_destroy(g);
    tracker_fini(&t);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_budget_per_item_bytes(void **state)
{
    (void)state;
    const size_t budget = (size_t)32 << 20, batch = 4;
    const size_t max_len = (size_t)4 << 20;
    const unsigned workers = 2;
    para_runtime_t *rt = make_rt(workers, "memaware", "none", batch, budget);
    tracker t;
    tracker_init(&t, 160, 1024, max_len);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    add_read_sum(g, &t, add_source(g, &t), PARA_NODE_SERIAL);
    assert_int_equal(para_run(rt, g), 0);
    check_released(&t, "budget", true);
    para_stats_t st;
    assert_int_equal(para_runtime_stats(rt, &st), 0);
    uint64_t one_batch = batch * max_len + ((uint64_t)64 << 10);
    uint64_t bound = budget + workers * one_batch;
    printf("peak %.1f MiB, budget %.1f MiB, bound %.1f MiB\n",
           (double)st.peak_bytes / 1048576.0, (double)budget / 1048576.0,
           (double)bound / 1048576.0);
    if (st.peak_bytes > bound)
        fail_msg("peak %llu bytes > budget + one batch per worker (%llu)",
                 (unsigned long long)st.peak_bytes, (unsigned long long)bound);
    /* The items' bytes were counted at all: far more than the batches. */
    assert_true(st.peak_bytes > (uint64_t)(1 << 20));
    para_graph_destroy(g);
    tracker_fini(&t);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consumed_every_policy),
        cmocka_unit_test(test_filtered_and_taken),
        cmocka_unit_test(test_fanout_shares),
        cmocka_unit_test(test_failing_and_canceled),
        cmocka_unit_test(test_ordered_reorder_buffer),
        cmocka_unit_test(test_device_staging),
        cmocka_unit_test(test_flat_map_grows),
        cmocka_unit_test(test_budget_per_item_bytes),
        cmocka_unit_test(test_source_batches_by_owned_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
