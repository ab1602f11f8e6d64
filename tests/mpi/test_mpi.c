/*
 * Tests of para_mpi_run() (runtime/mpi), run by ctest under mpirun with 2
 * and 4 ranks (label mpi). Every rank runs every test; graphs are built the
 * same way on every rank (same seeds).
 *
 *   placement      invalid placements fail every rank with the same message
 *                  naming the node or the edge (PARA_MPI_PLACE included);
 *   differential   random DAGs (maps, filters, flat-maps, merges, fan-out)
 *                  with random placements (a rank, or every rank for
 *                  PARALLEL nodes) and forced batch sizes, against a
 *                  sequential reference of the exact batch structure: each
 *                  ORDERED collect sink must hold the reference items in
 *                  the reference order, on the rank it was placed on;
 *   order          source on rank 0, a replicated map, the ORDERED sink on
 *                  the last rank: source order across ranks, adaptive
 *                  batches;
 *   failure        a node failing on the last rank: every rank returns
 *                  PARA_ENODE and the same message naming node and rank;
 *   cancel         para_run_cancel() from a node function on rank 0: every
 *                  rank returns PARA_ECANCELED naming rank 0;
 *   owned          strings of 0-299 bytes that own their memory cross ranks
 *                  packed (para_mpi_node_codec()): source on rank 0 ->
 *                  filter on the last rank -> replicated map making new
 *                  strings -> ORDERED sink on rank 0 that checks every
 *                  string and the order; every rank releases all it
 *                  allocated; an unpack that fails fails every rank with
 *                  the same message and leaks nothing;
 *   stats          every rank's figures gathered on rank 0 (batches sent
 *                  and received add up, each rank's workers ran tasks) and
 *                  printed there with a line per rank, per node and per
 *                  edge; each edge's traffic adds up to the rank's;
 *   trace          rank 0's trace path makes one trace of every rank: a
 *                  process per rank ("para rank R", pid R + 1), every
 *                  rank's tasks within the run's span on rank 0's clock;
 *   budget         a replicated stage that is slow on rank 1, 25 MB of
 *                  items from rank 0 and a 2 MiB budget: no rank's bytes in
 *                  flight exceed the budget (without credit rank 1 would
 *                  buffer most of the stream), and the slow rank ran less
 *                  than an equal share.
 *
 * With --die or --stop (tests/mpi/dead_rank.sh), the last rank exits or
 * stops itself during a run instead: the job must end promptly, not hang.
 *
 * PARA_MPI_TEST_SEED sets the differential seed (default fixed, printed).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <mpi.h>

#include "para.h"
#include "para/mpi.h"

static int g_rank, g_size;

static para_runtime_t *make_rt(unsigned workers, size_t batch_items,
                               size_t budget)
{
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = workers;
    a.batch_items = batch_items;
    if (budget != 0)
        a.mem_budget = budget;
    a.progress = "off";
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    return rt;
}

/* Every rank got the same message. */
static void assert_same_everywhere(const char *msg)
{
    char mine[1024] = {0}, root[1024] = {0};
    snprintf(mine, sizeof mine, "%s", msg);
    memcpy(root, mine, sizeof root);
    MPI_Bcast(root, sizeof root, MPI_CHAR, 0, MPI_COMM_WORLD);
    assert_string_equal(mine, root);
}

/* ---- placement ---------------------------------------------------------- */

static int map_inc(void *ctx, const void *in, void *out)
{
    (void)ctx;
    *(uint64_t *)out = *(const uint64_t *)in + 1;
    return 0;
}

static int sink_nop(void *ctx, const void *in)
{
    (void)ctx;
    (void)in;
    return 0;
}

static void release_nop(void *ctx, void *items, size_t n)
{
    (void)ctx;
    (void)items;
    (void)n;
}

static int filter_all(void *ctx, const void *in)
{
    (void)ctx;
    (void)in;
    return 1;
}

static void expect_invalid(para_runtime_t *rt, para_graph_t *g,
                           const char *needle)
{
    int rc = para_mpi_run(rt, g, MPI_COMM_WORLD, NULL);
    assert_int_equal(rc, PARA_EINVAL);
    const char *msg = para_runtime_errmsg(rt);
    if (strstr(msg, needle) == NULL)
        fail_msg("message '%s' lacks '%s'", msg, needle);
    assert_same_everywhere(msg);
}

static void test_placement(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(1, 0, 0);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *m, *s;
    assert_int_equal(para_graph_add_range(g, "src", 0, 100, &src), 0);
    assert_int_equal(para_graph_add_map(g, "inc", 8, 8, map_inc, NULL, 0, &m),
                     0);
    assert_int_equal(
        para_graph_add_sink(g, "sink", 8, sink_nop, NULL, PARA_NODE_SERIAL, &s),
        0);
    assert_int_equal(para_graph_connect(g, src, m), 0);
    assert_int_equal(para_graph_connect(g, m, s), 0);

    assert_int_equal(para_mpi_place(NULL, 0), PARA_EINVAL);
    assert_int_equal(para_mpi_place(m, -2), PARA_EINVAL);
    assert_int_equal(para_mpi_node_rank(m), 0);

    assert_int_equal(para_mpi_place(m, g_size), 0);
    expect_invalid(rt, g, "node 'inc' is placed on rank");
    assert_int_equal(para_mpi_place(m, PARA_MPI_ALL_RANKS), 0);
    assert_int_equal(para_mpi_node_rank(m), PARA_MPI_ALL_RANKS);

    assert_int_equal(para_mpi_place(src, PARA_MPI_ALL_RANKS), 0);
    expect_invalid(rt, g, "node 'src' is a source");
    assert_int_equal(para_mpi_place(src, 0), 0);

    assert_int_equal(para_mpi_place(s, PARA_MPI_ALL_RANKS), 0);
    expect_invalid(rt, g, "node 'sink' is SERIAL or ORDERED");
    assert_int_equal(para_mpi_place(s, g_size - 1), 0);

    setenv("PARA_MPI_PLACE", "nosuch=1", 1);
    expect_invalid(rt, g, "no node named 'nosuch'");
    setenv("PARA_MPI_PLACE", "inc=lots", 1);
    expect_invalid(rt, g, "bad rank 'lots'");
    setenv("PARA_MPI_PLACE", "sink=all", 1);
    expect_invalid(rt, g, "node 'sink' is SERIAL or ORDERED");
    unsetenv("PARA_MPI_PLACE");

    /* Now valid: it runs. */
    para_mpi_stats_t st;
    assert_int_equal(para_mpi_run(rt, g, MPI_COMM_WORLD, &st), 0);
    assert_int_equal(st.rank, g_rank);
    assert_int_equal(st.ranks, g_size);

    /* Items that own memory cannot cross ranks. */
    para_graph_t *g2;
    assert_int_equal(para_graph_create(&g2), 0);
    para_node_t *a, *b, *c;
    assert_int_equal(para_graph_add_range(g2, "src", 0, 10, &a), 0);
    para_node_desc_t d = {.name = "owner",
                          .in_size = 8,
                          .out_size = 8,
                          .map = map_inc,
                          .item_bytes = 32};
    assert_int_equal(para_graph_add(g2, &d, &b), 0);
    assert_int_equal(para_graph_add_sink(g2, "eat", 8, sink_nop, NULL, 0, &c),
                     0);
    assert_int_equal(para_graph_connect(g2, a, b), 0);
    assert_int_equal(para_graph_connect(g2, b, c), 0);
    assert_int_equal(para_mpi_place(c, g_size - 1), 0);
    expect_invalid(rt, g2, "edge 'owner' -> 'eat' crosses ranks");
    para_graph_destroy(g2);

    /* Items with a release function, and a filter that forwards them. */
    assert_int_equal(para_graph_create(&g2), 0);
    para_node_t *f;
    para_node_desc_t rd = {.name = "boxes",
                           .in_size = 8,
                           .out_size = 8,
                           .map = map_inc,
                           .release = release_nop};
    assert_int_equal(para_graph_add_range(g2, "src", 0, 10, &a), 0);
    assert_int_equal(para_graph_add(g2, &rd, &b), 0);
    assert_int_equal(
        para_graph_add_filter(g2, "keep", 8, filter_all, NULL, 0, &f), 0);
    assert_int_equal(para_graph_add_sink(g2, "eat", 8, sink_nop, NULL, 0, &c),
                     0);
    assert_int_equal(para_graph_connect(g2, a, b), 0);
    assert_int_equal(para_graph_connect(g2, b, f), 0);
    assert_int_equal(para_graph_connect(g2, f, c), 0);
    assert_int_equal(para_mpi_place(f, g_size - 1), 0);
    assert_int_equal(para_mpi_place(c, g_size - 1), 0);
    expect_invalid(rt, g2, "edge 'boxes' -> 'keep' crosses ranks");
    assert_int_equal(para_mpi_place(f, 0), 0);
    expect_invalid(rt, g2, "edge 'keep' -> 'eat' crosses ranks");
    /* All on one rank: it runs. */
    assert_int_equal(para_mpi_place(c, 0), 0);
    assert_int_equal(para_mpi_run(rt, g2, MPI_COMM_WORLD, NULL), 0);
    para_graph_destroy(g2);

    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* ---- differential -------------------------------------------------------- */

typedef struct vec {
    uint64_t *v;
    size_t n, cap;
} vec;

static void vec_push(vec *x, uint64_t v)
{
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 16;
        x->v = realloc(x->v, x->cap * sizeof *x->v);
        assert_non_null(x->v);
    }
    x->v[x->n++] = v;
}

enum kind { K_SOURCE, K_MAP, K_FILTER, K_FLAT, K_COLLECT };

#define MAX_NODES 24
#define MAX_PREDS 2

typedef struct dnode {
    enum kind kind;
    uint64_t salt;
    int preds[MAX_PREDS];
    int n_preds;
    int n_succs;
    int place;
    para_node_t *node;
    /* Reference: the batches of the current chunk, one per path. */
    vec *batches;
    size_t n_batches;
    vec collected; /* K_COLLECT: reference output */
    uint64_t *out;
    size_t out_count;
} dnode;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static int fn_map(void *ctx, const void *in, void *out)
{
    const dnode *d = ctx;
    *(uint64_t *)out = mix(*(const uint64_t *)in ^ d->salt) >> 8;
    return 0;
}

static int fn_filter(void *ctx, const void *in)
{
    const dnode *d = ctx;
    return (mix(*(const uint64_t *)in + d->salt) & 3) != 0;
}

static int fn_flat(void *ctx, const void *in, para_emitter_t *out)
{
    const dnode *d = ctx;
    uint64_t x = *(const uint64_t *)in;
    unsigned k = (unsigned)(mix(x ^ d->salt) % 3); /* 0, 1 or 2 items */
    for (unsigned i = 0; i < k; i++) {
        uint64_t y = x * 31 + i + d->salt;
        int rc = para_emit(out, &y);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Reference for one node on one input batch. */
static void apply(const dnode *d, const vec *in, vec *out)
{
    for (size_t i = 0; i < in->n; i++) {
        uint64_t x = in->v[i], y;
        switch (d->kind) {
        case K_MAP:
            fn_map((void *)d, &x, &y);
            vec_push(out, y);
            break;
        case K_FILTER:
            if (fn_filter((void *)d, &x))
                vec_push(out, x);
            break;
        case K_FLAT: {
            unsigned k = (unsigned)(mix(x ^ d->salt) % 3);
            for (unsigned j = 0; j < k; j++)
                vec_push(out, x * 31 + j + d->salt);
            break;
        }
        default:
            vec_push(out, x);
        }
    }
}

static void run_differential(uint64_t seed, unsigned graph_no)
{
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + graph_no + 1;
#define RND(n) ((unsigned)((rng = mix(rng + 0x632BE59BD9B4E019ull)) % (n)))
    dnode d[MAX_NODES];
    memset(d, 0, sizeof d);
    int n = 0;
    uint64_t items = 200 + RND(3000);
    size_t batch = (size_t[]){1, 3, 16, 100}[RND(4)];
    d[n++] = (dnode){.kind = K_SOURCE, .place = (int)RND((unsigned)g_size)};
    int inner = 1 + (int)RND(8);
    for (int i = 0; i < inner; i++) {
        dnode *x = &d[n];
        x->kind = (enum kind[]){K_MAP, K_FILTER, K_FLAT}[RND(3)];
        x->salt = RND(1000000);
        x->n_preds = 1 + (RND(3) == 0 && n > 1);
        x->preds[0] = (int)RND((unsigned)n);
        if (x->n_preds == 2) {
            x->preds[1] = (int)RND((unsigned)n);
            if (x->preds[1] == x->preds[0])
                x->n_preds = 1;
        }
        x->place =
            RND(3) == 0 ? PARA_MPI_ALL_RANKS : (int)RND((unsigned)g_size);
        for (int k = 0; k < x->n_preds; k++)
            d[x->preds[k]].n_succs++;
        n++;
    }
    int last_inner = n;
    for (int i = 0; i < last_inner && n < MAX_NODES; i++) {
        if (d[i].n_succs > 0 && RND(3) != 0)
            continue;
        d[n] = (dnode){.kind = K_COLLECT,
                       .n_preds = 1,
                       .preds = {i},
                       .place = (int)RND((unsigned)g_size)};
        d[i].n_succs++;
        n++;
    }

    /* Reference: chunk by chunk, node by node (creation order is a
     * topological order). */
    for (uint64_t c0 = 0; c0 < items; c0 += batch) {
        uint64_t c1 = c0 + batch < items ? c0 + batch : items;
        for (int i = 0; i < n; i++) {
            dnode *x = &d[i];
            for (size_t b = 0; b < x->n_batches; b++)
                free(x->batches[b].v);
            free(x->batches);
            x->batches = NULL;
            x->n_batches = 0;
            if (x->kind == K_SOURCE) {
                x->batches = calloc(1, sizeof *x->batches);
                x->n_batches = 1;
                for (uint64_t v = c0; v < c1; v++)
                    vec_push(&x->batches[0], v);
                continue;
            }
            size_t paths = 0;
            for (int k = 0; k < x->n_preds; k++)
                paths += d[x->preds[k]].n_batches;
            x->batches = calloc(paths, sizeof *x->batches);
            for (int k = 0; k < x->n_preds; k++) {
                const dnode *p = &d[x->preds[k]];
                for (size_t b = 0; b < p->n_batches; b++)
                    apply(x, &p->batches[b], &x->batches[x->n_batches++]);
            }
            if (x->kind == K_COLLECT)
                for (size_t b = 0; b < x->n_batches; b++)
                    for (size_t j = 0; j < x->batches[b].n; j++)
                        vec_push(&x->collected, x->batches[b].v[j]);
        }
    }

    /* The para graph. */
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    for (int i = 0; i < n; i++) {
        dnode *x = &d[i];
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        switch (x->kind) {
        case K_SOURCE:
            assert_int_equal(para_graph_add_range(g, name, 0, items, &x->node),
                             0);
            break;
        case K_MAP:
            assert_int_equal(
                para_graph_add_map(g, name, 8, 8, fn_map, x, 0, &x->node), 0);
            break;
        case K_FILTER:
            assert_int_equal(
                para_graph_add_filter(g, name, 8, fn_filter, x, 0, &x->node),
                0);
            break;
        case K_FLAT: {
            para_node_desc_t desc = {.name = name,
                                     .in_size = 8,
                                     .out_size = 8,
                                     .ctx = x,
                                     .flat_map = fn_flat};
            assert_int_equal(para_graph_add(g, &desc, &x->node), 0);
            break;
        }
        case K_COLLECT:
            x->out = calloc(x->collected.n + 16, 8);
            assert_int_equal(para_graph_add_collect(g, name, 8, x->out,
                                                    x->collected.n + 16,
                                                    &x->out_count, &x->node),
                             0);
            break;
        }
        assert_int_equal(para_mpi_place(x->node, x->place), 0);
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < d[i].n_preds; k++)
            assert_int_equal(
                para_graph_connect(g, d[d[i].preds[k]].node, d[i].node), 0);

    para_runtime_t *rt = make_rt(1 + RND(2), batch, 0);
    para_mpi_stats_t st;
    int rc = para_mpi_run(rt, g, MPI_COMM_WORLD, &st);
    if (rc != 0)
        fail_msg("graph %u (seed %llu): %s: %s", graph_no,
                 (unsigned long long)seed, para_err_name(rc),
                 para_runtime_errmsg(rt));
    for (int i = 0; i < n; i++) {
        dnode *x = &d[i];
        if (x->kind == K_COLLECT && x->place == g_rank) {
            if (x->out_count != x->collected.n)
                fail_msg("graph %u (seed %llu) rank %d: collect n%d holds %zu "
                         "items, the reference %zu",
                         graph_no, (unsigned long long)seed, g_rank, i,
                         x->out_count, x->collected.n);
            for (size_t j = 0; j < x->out_count; j++)
                if (x->out[j] != x->collected.v[j])
                    fail_msg("graph %u (seed %llu) rank %d: collect n%d item "
                             "%zu is %llu, the reference %llu",
                             graph_no, (unsigned long long)seed, g_rank, i, j,
                             (unsigned long long)x->out[j],
                             (unsigned long long)x->collected.v[j]);
        }
    }
    assert_int_equal(para_runtime_destroy(rt), 0);
    para_graph_destroy(g);
    for (int i = 0; i < n; i++) {
        for (size_t b = 0; b < d[i].n_batches; b++)
            free(d[i].batches[b].v);
        free(d[i].batches);
        free(d[i].collected.v);
        free(d[i].out);
    }
#undef RND
}

static void test_differential(void **state)
{
    (void)state;
    uint64_t seed = 42;
    const char *env = getenv("PARA_MPI_TEST_SEED");
    if (env != NULL)
        seed = strtoull(env, NULL, 10);
    if (g_rank == 0)
        printf("differential: seed %llu, %d ranks\n", (unsigned long long)seed,
               g_size);
    for (unsigned i = 0; i < 40; i++)
        run_differential(seed, i);
}

/* ---- order across ranks ---------------------------------------------------
 */

static int map_slow_square(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    const uint64_t *a = in;
    uint64_t *b = out;
    for (size_t i = 0; i < n; i++) {
        uint64_t x = a[i];
        for (int k = 0; k < 50; k++)
            x = mix(x);
        b[i] = a[i] * a[i] + (x & 0);
    }
    return 0;
}

static void test_order(void **state)
{
    (void)state;
    const uint64_t n = 100000;
    para_runtime_t *rt = make_rt(2, 0, 0);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *m, *col;
    uint64_t *out = calloc(n, 8);
    size_t count = 0;
    assert_int_equal(para_graph_add_range(g, "src", 0, n, &src), 0);
    assert_int_equal(para_graph_add_map_batch(g, "square", 8, 8,
                                              map_slow_square, NULL, 0, &m),
                     0);
    assert_int_equal(
        para_graph_add_collect(g, "collect", 8, out, n, &count, &col), 0);
    assert_int_equal(para_graph_connect(g, src, m), 0);
    assert_int_equal(para_graph_connect(g, m, col), 0);
    assert_int_equal(para_mpi_place(m, PARA_MPI_ALL_RANKS), 0);
    assert_int_equal(para_mpi_place(col, g_size - 1), 0);
    para_mpi_stats_t st;
    int rc = para_mpi_run(rt, g, MPI_COMM_WORLD, &st);
    if (rc != 0)
        fail_msg("%s: %s", para_err_name(rc), para_runtime_errmsg(rt));
    if (g_rank == g_size - 1) {
        assert_int_equal(count, n);
        for (uint64_t i = 0; i < n; i++)
            if (out[i] != i * i)
                fail_msg("item %llu is %llu", (unsigned long long)i,
                         (unsigned long long)out[i]);
    }
    /* The replicated stage ran on more than one rank. */
    para_node_stats_t ns;
    assert_int_equal(para_node_stats(m, &ns), 0);
    unsigned long long mine = ns.items_in, total = 0;
    int ran = ns.items_in > 0, ranks_ran = 0;
    MPI_Allreduce(&mine, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM,
                  MPI_COMM_WORLD);
    MPI_Allreduce(&ran, &ranks_ran, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    assert_int_equal(total, n);
    assert_true(ranks_ran >= 2);
    free(out);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* ---- items that own memory across ranks ---------------------------------- */

typedef struct str_item {
    uint64_t id;
    char *s; /* malloc'd, len bytes (NULL when len is 0) */
    size_t len;
} str_item;

typedef struct str_ctx {
    uint64_t n, next;
    uint64_t fail_unpack_at; /* UINT64_MAX: never */
    _Atomic long long live;  /* strings allocated and not yet released */
    uint64_t expect_next, checked, bad;
} str_ctx;

static size_t str_len(uint64_t id)
{
    return (size_t)(mix(id + 7) % 300);
}

static char str_char(uint64_t id, size_t k)
{
    return (char)('a' + (id + k) % 26);
}

static char *str_alloc(str_ctx *c, size_t len)
{
    char *p = len != 0 ? malloc(len) : NULL;
    if (len != 0 && p == NULL)
        return NULL;
    /* relaxed: a count read after the run. */
    atomic_fetch_add_explicit(&c->live, 1, memory_order_relaxed);
    return p;
}

static void str_release(void *ctx, void *items, size_t n)
{
    str_ctx *c = ctx;
    str_item *it = items;
    for (size_t i = 0; i < n; i++) {
        free(it[i].s);
        it[i].s = NULL;
        atomic_fetch_sub_explicit(&c->live, 1, memory_order_relaxed);
    }
}

static size_t str_bytes(void *ctx, const void *item)
{
    (void)ctx;
    return ((const str_item *)item)->len;
}

/* Packed: id, len, then the bytes. */
static size_t str_pack(void *ctx, const void *item, void *buf, size_t cap)
{
    (void)ctx;
    const str_item *it = item;
    size_t need = 16 + it->len;
    if (buf != NULL && cap >= need) {
        uint64_t len = it->len;
        memcpy(buf, &it->id, 8);
        memcpy((char *)buf + 8, &len, 8);
        if (it->len != 0)
            memcpy((char *)buf + 16, it->s, it->len);
    }
    return need;
}

static int str_unpack(void *ctx, const void *buf, size_t len, void *item)
{
    str_ctx *c = ctx;
    str_item it;
    uint64_t l;
    if (len < 16)
        return 5;
    memcpy(&it.id, buf, 8);
    memcpy(&l, (const char *)buf + 8, 8);
    if (l != len - 16)
        return 6;
    if (it.id == c->fail_unpack_at)
        return 9;
    it.len = (size_t)l;
    it.s = str_alloc(c, it.len);
    if (it.len != 0 && it.s == NULL)
        return 8;
    if (it.len != 0)
        memcpy(it.s, (const char *)buf + 16, it.len);
    memcpy(item, &it, sizeof it);
    return 0;
}

static int str_open(void *ctx)
{
    ((str_ctx *)ctx)->next = 0;
    return 0;
}

static int str_source(void *ctx, void *out, size_t cap, size_t *n)
{
    str_ctx *c = ctx;
    size_t k = 0;
    for (; k < cap && c->next < c->n; k++, c->next++) {
        str_item it = {c->next, NULL, str_len(c->next)};
        it.s = str_alloc(c, it.len);
        if (it.len != 0 && it.s == NULL) {
            str_release(c, out, k);
            return 12;
        }
        for (size_t j = 0; j < it.len; j++)
            it.s[j] = str_char(it.id, j);
        memcpy((str_item *)out + k, &it, sizeof it);
    }
    *n = k;
    return 0;
}

static int str_keep(void *ctx, const void *in)
{
    (void)ctx;
    return ((const str_item *)in)->id % 3 != 0;
}

/* A new string: the input reversed. */
static int str_reverse(void *ctx, const void *in, void *out)
{
    str_ctx *c = ctx;
    const str_item *a = in;
    str_item b = {a->id, str_alloc(c, a->len), a->len};
    if (b.len != 0 && b.s == NULL)
        return 12;
    for (size_t j = 0; j < a->len; j++)
        b.s[j] = a->s[a->len - 1 - j];
    memcpy(out, &b, sizeof b);
    return 0;
}

static int str_check(void *ctx, const void *in)
{
    str_ctx *c = ctx;
    const str_item *it = in;
    uint64_t want = c->expect_next;
    while (want % 3 == 0)
        want++;
    bool ok = it->id == want && it->len == str_len(it->id);
    for (size_t j = 0; ok && j < it->len; j++)
        ok = it->s[j] == str_char(it->id, it->len - 1 - j);
    if (!ok)
        c->bad++;
    c->expect_next = it->id + 1;
    c->checked++;
    return 0;
}

/* Build strs -> keep -> reverse -> check; the string nodes share @p c. */
static para_graph_t *build_strings(str_ctx *c, para_node_t **src_out)
{
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *f, *m, *k;
    para_node_desc_t sd = {.name = "strs",
                           .out_size = sizeof(str_item),
                           .ctx = c,
                           .source = str_source,
                           .open = str_open,
                           .release = str_release,
                           .owned_bytes = str_bytes};
    para_node_desc_t md = {.name = "reverse",
                           .in_size = sizeof(str_item),
                           .out_size = sizeof(str_item),
                           .ctx = c,
                           .map = str_reverse,
                           .release = str_release,
                           .owned_bytes = str_bytes};
    assert_int_equal(para_graph_add(g, &sd, &src), 0);
    assert_int_equal(para_graph_add_filter(g, "keep", sizeof(str_item),
                                           str_keep, NULL, 0, &f),
                     0);
    assert_int_equal(para_graph_add(g, &md, &m), 0);
    assert_int_equal(para_graph_add_sink(g, "check", sizeof(str_item),
                                         str_check, c, PARA_NODE_ORDERED, &k),
                     0);
    assert_int_equal(para_graph_connect(g, src, f), 0);
    assert_int_equal(para_graph_connect(g, f, m), 0);
    assert_int_equal(para_graph_connect(g, m, k), 0);
    assert_int_equal(para_mpi_place(f, g_size - 1), 0);
    assert_int_equal(para_mpi_place(m, PARA_MPI_ALL_RANKS), 0);
    *src_out = src;
    /* Without a codec on 'strs' its items cannot reach 'keep'. */
    para_runtime_t *rt = make_rt(1, 0, 0);
    expect_invalid(rt, g, "edge 'strs' -> 'keep' crosses ranks");
    assert_int_equal(para_mpi_node_codec(src, str_pack, str_unpack), 0);
    /* ... nor, without one on 'reverse', its items 'check'. */
    expect_invalid(rt, g, "edge 'reverse' -> 'check' crosses ranks");
    assert_int_equal(para_mpi_node_codec(m, str_pack, str_unpack), 0);
    assert_int_equal(para_runtime_destroy(rt), 0);
    return g;
}

static void test_owned(void **state)
{
    (void)state;
    /* The codec's own argument checks. */
    para_graph_t *g0;
    assert_int_equal(para_graph_create(&g0), 0);
    para_node_t *plain;
    assert_int_equal(
        para_graph_add_map(g0, "plain", 8, 8, map_inc, NULL, 0, &plain), 0);
    assert_int_equal(para_mpi_node_codec(NULL, str_pack, str_unpack),
                     PARA_EINVAL);
    assert_int_equal(para_mpi_node_codec(plain, str_pack, str_unpack),
                     PARA_EINVAL); /* no release hook */
    assert_int_equal(para_mpi_node_codec(plain, NULL, NULL), 0);
    para_graph_destroy(g0);

    str_ctx c = {.n = 30000, .fail_unpack_at = UINT64_MAX};
    atomic_init(&c.live, 0);
    para_node_t *src;
    para_graph_t *g = build_strings(&c, &src);
    assert_int_equal(para_mpi_node_codec(src, str_pack, NULL), PARA_EINVAL);
    para_runtime_t *rt = make_rt(2, 0, 0);
    for (int rep = 0; rep < 2; rep++) { /* runs again */
        c.expect_next = c.checked = c.bad = 0;
        para_mpi_stats_t st;
        int rc = para_mpi_run(rt, g, MPI_COMM_WORLD, &st);
        if (rc != 0)
            fail_msg("%s: %s", para_err_name(rc), para_runtime_errmsg(rt));
        if (g_rank == 0) {
            assert_int_equal(c.bad, 0);
            assert_int_equal(c.checked, c.n - (c.n + 2) / 3);
        }
        assert_int_equal(atomic_load(&c.live), 0);
        /* Every rank received items (the filter's and the sink's inputs
         * come from other ranks). */
        assert_true(st.batches_received > 0 || g_rank != 0);
    }

    /* An unpack that fails fails every rank, and nothing leaks. */
    c.fail_unpack_at = 7777;
    int rc = para_mpi_run(rt, g, MPI_COMM_WORLD, NULL);
    assert_int_equal(rc, PARA_ENODE);
    const char *msg = para_runtime_errmsg(rt);
    if (strstr(msg, "its unpack function returned 9") == NULL)
        fail_msg("message '%s'", msg);
    assert_same_everywhere(msg);
    assert_int_equal(atomic_load(&c.live), 0);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* ---- statistics gathered on rank 0 --------------------------------------- */

static int sink_sum(void *ctx, const void *in);

/* A graph range [0, n) -> "square" (on every rank) -> "sum" into *sum. */
static void make_square_sum(para_graph_t **g, uint64_t n, uint64_t *sum,
                            para_node_t **src, para_node_t **m, para_node_t **k)
{
    assert_int_equal(para_graph_create(g), 0);
    assert_int_equal(para_graph_add_range(*g, "src", 0, n, src), 0);
    assert_int_equal(para_graph_add_map_batch(*g, "square", 8, 8,
                                              map_slow_square, NULL, 0, m),
                     0);
    assert_int_equal(
        para_graph_add_sink(*g, "sum", 8, sink_sum, sum, PARA_NODE_SERIAL, k),
        0);
    assert_int_equal(para_graph_connect(*g, *src, *m), 0);
    assert_int_equal(para_graph_connect(*g, *m, *k), 0);
    assert_int_equal(para_mpi_place(*m, PARA_MPI_ALL_RANKS), 0);
}

static void test_stats(void **state)
{
    (void)state;
    const uint64_t n = 50000;
    para_runtime_t *rt = make_rt(2, 0, 0);
    para_graph_t *g;
    para_node_t *src, *m, *k;
    uint64_t sum = 0;
    make_square_sum(&g, n, &sum, &src, &m, &k);
    para_mpi_stats_t st;
    assert_int_equal(para_mpi_run(rt, g, MPI_COMM_WORLD, &st), 0);

    /* Bad arguments fail every rank alike. */
    assert_int_equal(para_mpi_stats_gather(NULL, &st, NULL, 0, MPI_COMM_WORLD),
                     PARA_EINVAL);
    assert_int_equal(
        para_mpi_stats_gather(rt, &st, NULL, g_size, MPI_COMM_WORLD),
        PARA_EINVAL);

    /* Per edge: this rank's traffic is its two edges' together, and every
     * batch sent over an edge was received over it. */
    para_mpi_edge_stats_t e1, e2;
    assert_int_equal(para_mpi_edge_stats(src, m, &e1), 0);
    assert_int_equal(para_mpi_edge_stats(m, k, &e2), 0);
    assert_int_equal(para_mpi_edge_stats(k, src, &e2), PARA_EINVAL);
    assert_int_equal(para_mpi_edge_stats(NULL, src, &e2), PARA_EINVAL);
    assert_int_equal(para_mpi_edge_stats(m, k, &e2), 0);
    assert_int_equal(e1.batches_sent + e2.batches_sent, st.batches_sent);
    assert_int_equal(e1.bytes_sent + e2.bytes_sent, st.bytes_sent);
    assert_int_equal(e1.batches_received + e2.batches_received,
                     st.batches_received);
    unsigned long long mine[4] = {e1.batches_sent, e1.batches_received,
                                  e2.batches_sent, e2.batches_received},
                       tot[4];
    MPI_Allreduce(mine, tot, 4, MPI_UNSIGNED_LONG_LONG, MPI_SUM,
                  MPI_COMM_WORLD);
    assert_int_equal(tot[0], tot[1]);
    assert_int_equal(tot[2], tot[3]);
    assert_true(tot[0] > 0 && tot[2] > 0);

    para_mpi_rank_stats_t *all =
        g_rank == 0 ? calloc((size_t)g_size, sizeof *all) : NULL;
    assert_int_equal(para_mpi_stats_gather(rt, &st, all, 0, MPI_COMM_WORLD), 0);
    if (g_rank == 0) {
        uint64_t sent = 0, recvd = 0, items = 0;
        for (int r = 0; r < g_size; r++) {
            assert_int_equal(all[r].mpi.rank, r);
            assert_int_equal(all[r].mpi.ranks, g_size);
            assert_int_equal(all[r].n_workers, 2);
            assert_true(all[r].workers.busy_ns <= all[r].runtime.busy_ns);
            sent += all[r].mpi.batches_sent;
            recvd += all[r].mpi.batches_received;
            items += all[r].workers.tasks;
        }
        assert_int_equal(sent, recvd);
        assert_true(sent > 0);
        assert_true(items > 0);
        assert_int_equal(sum, (n - 1) * n * (2 * n - 1) / 6);
    }
    free(all);

    /* Printed on rank 0: a line per rank, a line per node. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = g_rank == 0 ? open_memstream(&text, &len) : NULL;
    assert_int_equal(para_mpi_stats_fprint(f, rt, g, &st, MPI_COMM_WORLD), 0);
    if (g_rank == 0) {
        fclose(f);
        char want[64];
        snprintf(want, sizeof want, "mpi: %d ranks\n", g_size);
        assert_non_null(strstr(text, want));
        for (int r = 0; r < g_size; r++) {
            snprintf(want, sizeof want, "\n%-4d ", r);
            if (strstr(text, want) == NULL)
                fail_msg("no line for rank %d in:\n%s", r, text);
        }
        const char *line = strstr(text, "\nsquare ");
        assert_non_null(line);
        snprintf(want, sizeof want, " %d: ", g_size - 1);
        assert_non_null(strstr(line, want));
        snprintf(want, sizeof want, "edge 'src' -> 'square': %llu batches,",
                 tot[0]);
        if (strstr(text, want) == NULL)
            fail_msg("no '%s' in:\n%s", want, text);
        free(text);
    }
    /* A NULL stream on rank 0 fails every rank. */
    assert_int_equal(para_mpi_stats_fprint(NULL, rt, g, &st, MPI_COMM_WORLD),
                     PARA_EINVAL);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* ---- one trace merged over the ranks ------------------------------------- */

static void test_trace(void **state)
{
    (void)state;
    char path[64] = "/tmp/para_mpi_trace_XXXXXX";
    if (g_rank == 0) {
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
    }
    MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = 2;
    a.progress = "off";
    a.trace = path;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    const uint64_t n = 50000;
    para_graph_t *g;
    para_node_t *src, *m, *k;
    uint64_t sum = 0;
    make_square_sum(&g, n, &sum, &src, &m, &k);
    assert_int_equal(para_mpi_run(rt, g, MPI_COMM_WORLD, NULL), 0);
    if (g_rank == 0) {
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        static char text[16 << 20];
        size_t len = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[len] = '\0';
        assert_true(len > 0 && len < sizeof text - 1);
        assert_memory_equal(text, "{\"traceEvents\":[\n", 16);
        assert_string_equal(text + len - 4, "]}}\n");
        char want[64];
        snprintf(want, sizeof want, "\"ranks\":%d,", g_size);
        assert_non_null(strstr(text, want));
        /* The run's span, from the closing event. */
        const char *end = strstr(text, "\"name\":\"trace_end\"");
        assert_non_null(end);
        double span = -1;
        assert_int_equal(sscanf(strstr(end, "\"ts\":"), "\"ts\":%lf", &span),
                         1);
        assert_true(span > 0);
        int ranks_with_tasks = 0;
        for (int r = 0; r < g_size; r++) {
            snprintf(want, sizeof want,
                     "\"pid\":%d,\"tid\":0,\"args\":{\"name\":\"para rank "
                     "%d\"}",
                     r + 1, r);
            if (strstr(text, want) == NULL)
                fail_msg("no process for rank %d", r);
            /* Every task of rank r lies within the run on rank 0's clock
             * (1 ms of slack for the clocks' alignment). */
            snprintf(want, sizeof want,
                     "\"cat\":\"task\",\"ph\":\"X\",\"pid\":%d,", r + 1);
            unsigned tasks = 0;
            for (const char *p = strstr(text, want); p != NULL;
                 p = strstr(p + 1, want)) {
                double ts = -1, dur = -1;
                const char *t = strstr(p, "\"ts\":");
                assert_non_null(t);
                assert_int_equal(sscanf(t, "\"ts\":%lf,\"dur\":%lf", &ts, &dur),
                                 2);
                if (ts < 0 || ts + dur > span + 1000)
                    fail_msg("rank %d: a task at %.3f us lasting %.3f us, "
                             "the run spans %.3f us",
                             r, ts, dur, span);
                tasks++;
            }
            ranks_with_tasks += tasks > 0;
        }
        assert_true(ranks_with_tasks >= 2);
        unlink(path);
    }
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* ---- failure and cancellation -------------------------------------------- */

static int map_boom(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t x = *(const uint64_t *)in;
    *(uint64_t *)out = x;
    return x == 5000 ? 7 : 0;
}

static void test_failure(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(1, 0, 0);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *m, *b, *s;
    assert_int_equal(para_graph_add_range(g, "src", 0, 200000, &src), 0);
    assert_int_equal(para_graph_add_map(g, "inc", 8, 8, map_inc, NULL, 0, &m),
                     0);
    assert_int_equal(para_graph_add_map(g, "boom", 8, 8, map_boom, NULL, 0, &b),
                     0);
    assert_int_equal(para_graph_add_sink(g, "sink", 8, sink_nop, NULL, 0, &s),
                     0);
    assert_int_equal(para_graph_connect(g, src, m), 0);
    assert_int_equal(para_graph_connect(g, m, b), 0);
    assert_int_equal(para_graph_connect(g, b, s), 0);
    assert_int_equal(para_mpi_place(m, PARA_MPI_ALL_RANKS), 0);
    assert_int_equal(para_mpi_place(b, g_size - 1), 0);
    int rc = para_mpi_run(rt, g, MPI_COMM_WORLD, NULL);
    assert_int_equal(rc, PARA_ENODE);
    char want[128];
    snprintf(want, sizeof want, "rank %d: node 'boom' returned 7", g_size - 1);
    const char *msg = para_runtime_errmsg(rt);
    if (strncmp(msg, want, strlen(want)) != 0)
        fail_msg("message '%s', expected '%s...'", msg, want);
    assert_same_everywhere(msg);
    /* The runtime and the graph still work: without the failing item. */
    para_graph_destroy(g);
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_range(g, "src", 0, 1000, &src), 0);
    assert_int_equal(para_graph_add_map(g, "boom", 8, 8, map_boom, NULL, 0, &b),
                     0);
    assert_int_equal(para_graph_add_sink(g, "sink", 8, sink_nop, NULL, 0, &s),
                     0);
    assert_int_equal(para_graph_connect(g, src, b), 0);
    assert_int_equal(para_graph_connect(g, b, s), 0);
    assert_int_equal(para_mpi_place(b, PARA_MPI_ALL_RANKS), 0);
    assert_int_equal(para_mpi_run(rt, g, MPI_COMM_WORLD, NULL), 0);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

typedef struct cancel_src {
    para_runtime_t *rt;
    uint64_t next;
} cancel_src;

static int src_cancel(void *ctx, void *out, size_t cap, size_t *n)
{
    cancel_src *c = ctx;
    uint64_t *o = out;
    for (size_t i = 0; i < cap; i++)
        o[i] = c->next++;
    *n = cap;
    if (c->next >= 20000 && para_run_cancel(c->rt) != 0)
        return 99; /* the run is in progress: cannot happen */
    return 0;      /* endless otherwise: only the cancel ends the run */
}

static void test_cancel(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(1, 0, 0);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    cancel_src cs = {.rt = rt};
    para_node_t *src, *m, *s;
    assert_int_equal(
        para_graph_add_source(g, "endless", 8, src_cancel, &cs, &src), 0);
    assert_int_equal(para_graph_add_map(g, "inc", 8, 8, map_inc, NULL, 0, &m),
                     0);
    assert_int_equal(para_graph_add_sink(g, "sink", 8, sink_nop, NULL, 0, &s),
                     0);
    assert_int_equal(para_graph_connect(g, src, m), 0);
    assert_int_equal(para_graph_connect(g, m, s), 0);
    assert_int_equal(para_mpi_place(m, PARA_MPI_ALL_RANKS), 0);
    assert_int_equal(para_mpi_place(s, g_size - 1), 0);
    int rc = para_mpi_run(rt, g, MPI_COMM_WORLD, NULL);
    assert_int_equal(rc, PARA_ECANCELED);
    const char *msg = para_runtime_errmsg(rt);
    assert_string_equal(msg, "rank 0: run canceled by para_run_cancel()");
    assert_same_everywhere(msg);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* ---- budget with a slow rank ----------------------------------------------
 */

#define BIG 512

static int map_widen(void *ctx, const void *in, void *out)
{
    (void)ctx;
    memset(out, 0, BIG);
    memcpy(out, in, 8);
    return 0;
}

static int map_slow_on_1(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    if (g_rank == 1) {
        struct timespec ts = {0, (long)(n * 4000)}; /* 4 us per item */
        nanosleep(&ts, NULL);
    }
    memcpy(out, in, n * BIG);
    return 0;
}

static int sink_sum(void *ctx, const void *in)
{
    *(uint64_t *)ctx += *(const uint64_t *)in;
    return 0;
}

static void test_budget(void **state)
{
    (void)state;
    const uint64_t n = 50000; /* 25 MB of items through the slow stage */
    const size_t budget = 2u << 20;
    para_runtime_t *rt = make_rt(1, 0, budget);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    uint64_t sum = 0;
    para_node_t *src, *w, *m, *s;
    assert_int_equal(para_graph_add_range(g, "src", 0, n, &src), 0);
    assert_int_equal(
        para_graph_add_map(g, "widen", 8, BIG, map_widen, NULL, 0, &w), 0);
    assert_int_equal(para_graph_add_map_batch(g, "slow", BIG, BIG,
                                              map_slow_on_1, NULL, 0, &m),
                     0);
    assert_int_equal(para_graph_add_sink(g, "sum", BIG, sink_sum, &sum,
                                         PARA_NODE_SERIAL, &s),
                     0);
    assert_int_equal(para_graph_connect(g, src, w), 0);
    assert_int_equal(para_graph_connect(g, w, m), 0);
    assert_int_equal(para_graph_connect(g, m, s), 0);
    assert_int_equal(para_mpi_place(m, PARA_MPI_ALL_RANKS), 0);
    para_mpi_stats_t st;
    int rc = para_mpi_run(rt, g, MPI_COMM_WORLD, &st);
    if (rc != 0)
        fail_msg("%s: %s", para_err_name(rc), para_runtime_errmsg(rt));
    if (g_rank == 0)
        assert_int_equal(sum, n * (n - 1) / 2);
    para_stats_t rs;
    assert_int_equal(para_runtime_stats(rt, &rs), 0);
    para_node_stats_t ns;
    assert_int_equal(para_node_stats(m, &ns), 0);
    printf("budget: rank %d peak %llu bytes (budget %zu), window %llu, "
           "slow stage %llu items, credit waits %llu, budget waits %llu\n",
           g_rank, (unsigned long long)rs.peak_bytes, budget,
           (unsigned long long)st.window, (unsigned long long)ns.items_in,
           (unsigned long long)st.credit_waits,
           (unsigned long long)st.arrival_waits);
    if (rs.peak_bytes > budget)
        fail_msg("rank %d: %llu bytes in flight, budget %zu", g_rank,
                 (unsigned long long)rs.peak_bytes, budget);
    /* Held-back batches came in within the budget, never past it. */
    if (st.budget_overruns != 0)
        fail_msg("rank %d: %llu batches taken over the budget", g_rank,
                 (unsigned long long)st.budget_overruns);
    /* The slow rank got less than an equal share: the others took over. */
    if (g_rank == 1 && ns.items_in >= n / (uint64_t)g_size)
        fail_msg("the slow rank ran %llu of %llu items",
                 (unsigned long long)ns.items_in, (unsigned long long)n);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* ---- a rank that dies or stops (run by tests/mpi/dead_rank.sh) ---------- */

static int g_fate; /* 1: the last rank exits, 2: it stops (SIGSTOP) */

static int map_fate(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t x = *(const uint64_t *)in;
    *(uint64_t *)out = x;
    if (g_rank == g_size - 1 && x > 1000) {
        if (g_fate == 1)
            _exit(3);
        raise(SIGSTOP);
    }
    return 0;
}

/* Never returns normally when the protocol works: the job ends with the
 * rank's death (mpirun aborts it) or, for a stopped rank, with the others'
 * MPI_Abort after PARA_MPI_TIMEOUT. */
static int run_fate(void)
{
    para_runtime_t *rt = make_rt(1, 0, 0);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *m, *s;
    assert_int_equal(para_graph_add_range(g, "src", 0, 10000000, &src), 0);
    assert_int_equal(para_graph_add_map(g, "fate", 8, 8, map_fate, NULL, 0, &m),
                     0);
    assert_int_equal(para_graph_add_sink(g, "sink", 8, sink_nop, NULL, 0, &s),
                     0);
    assert_int_equal(para_graph_connect(g, src, m), 0);
    assert_int_equal(para_graph_connect(g, m, s), 0);
    assert_int_equal(para_mpi_place(m, g_size - 1), 0);
    int rc = para_mpi_run(rt, g, MPI_COMM_WORLD, NULL);
    fprintf(stderr, "rank %d: para_mpi_run returned %s\n", g_rank,
            para_err_name(rc));
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
    MPI_Finalize();
    return 0; /* reaching here is the failure the script detects */
}

int main(int argc, char **argv)
{
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    if (provided < MPI_THREAD_FUNNELED) {
        fprintf(stderr, "MPI gives no MPI_THREAD_FUNNELED\n");
        MPI_Finalize();
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (argc > 1 &&
        (strcmp(argv[1], "--die") == 0 || strcmp(argv[1], "--stop") == 0)) {
        g_fate = strcmp(argv[1], "--die") == 0 ? 1 : 2;
        return run_fate();
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placement), cmocka_unit_test(test_differential),
        cmocka_unit_test(test_order),     cmocka_unit_test(test_failure),
        cmocka_unit_test(test_cancel),    cmocka_unit_test(test_owned),
        cmocka_unit_test(test_stats),     cmocka_unit_test(test_trace),
        cmocka_unit_test(test_budget),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    int any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any != 0;
}
