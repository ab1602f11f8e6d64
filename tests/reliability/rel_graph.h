/*
 * A representative graph for the reliability tests (allocation failure
 * sweep, soak): every node shape the runtime schedules differently, with
 * answers computed sequentially.
 *
 *   range [0, n) --+--> inc (map, PARALLEL) ----------+--> tag (map, SERIAL,
 *                  |                                  |    merge) --> osum
 *                  +--> dup (flat-map: 0, 1 or 2) ----+    (sink, ORDERED)
 *
 *   counter (callback source, n items) --> even (filter) --> bsum
 *                                                  (sink_batch, SERIAL)
 *
 *   array (n items) --> twice (map_batch) --> collect (ORDERED, in order)
 *
 * rel_graph_build() uses the explicit API; rel_graph_build_pipeline() builds
 * the first part with PARA_PIPELINE so that the builder's own allocations
 * are covered too; rel_graph_build_kernel() makes inc and twice kernel
 * nodes with their CPU functions (MIXED on a device, e.g. the `cpu`
 * back-end), with the same answers. Both return 0 or the first PARA_E* error,
 * with the graph destroyed on error.
 */
#ifndef REL_GRAPH_H
#define REL_GRAPH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "para.h"

#define REL_MAX_N 4096u

struct rel_ctx {
    uint64_t n;
    /* osum: ORDERED sink (plain: its calls are ordered). */
    uint64_t o_count, o_sum;
    /* counter source: claim-owned state. */
    uint64_t next;
    /* bsum: SERIAL batch sink. */
    uint64_t b_count, b_sum;
    /* array source and collect. */
    uint64_t in[REL_MAX_N];
    uint64_t out[REL_MAX_N];
    size_t out_count;
    /* The owned-items graph (rel_graph_build_owned()). */
    uint64_t own_next, own_count, own_sum, own_seen;
};

/* An item that owns a malloc'd buffer holding its id. */
typedef struct rel_owned {
    uint64_t id;
    uint64_t *buf;
} rel_owned;

static inline void rel_owned_release(void *ctx, void *items, size_t n)
{
    (void)ctx;
    rel_owned *o = items;
    for (size_t i = 0; i < n; i++)
        free(o[i].buf);
}

static inline int rel_owned_open(void *ctx)
{
    ((struct rel_ctx *)ctx)->own_next = 0;
    return 0;
}

static inline int rel_owned_source(void *ctx, void *out, size_t cap, size_t *n)
{
    struct rel_ctx *c = ctx;
    rel_owned *o = out;
    size_t k = 0;
    while (k < cap && c->own_next < c->n) {
        uint64_t *buf = malloc(sizeof *buf);
        if (buf == NULL) {
            rel_owned_release(NULL, o, k); /* a failing source frees */
            return PARA_ENOMEM;
        }
        *buf = c->own_next;
        o[k++] = (rel_owned){c->own_next++, buf};
    }
    *n = k;
    return 0;
}

static inline int rel_owned_keep(void *ctx, const void *in)
{
    (void)ctx;
    return ((const rel_owned *)in)->id % 3 != 0;
}

static inline int rel_owned_read(void *ctx, const void *in, void *out)
{
    (void)ctx;
    const rel_owned *o = in;
    uint64_t v = *o->buf * 2;
    memcpy(out, &v, sizeof v);
    return 0;
}

static inline int rel_owned_sum(void *ctx, const void *in)
{
    struct rel_ctx *c = ctx;
    uint64_t v;
    memcpy(&v, in, sizeof v);
    c->own_sum += v;
    c->own_count++;
    return 0;
}

static inline int rel_owned_seen(void *ctx, const void *in)
{
    struct rel_ctx *c = ctx;
    if (*((const rel_owned *)in)->buf != ((const rel_owned *)in)->id)
        return -1;
    c->own_seen++;
    return 0;
}

static inline int rel_inc(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t x;
    memcpy(&x, in, sizeof x);
    x += 1;
    memcpy(out, &x, sizeof x);
    return 0;
}

/* Emits x twice when x % 3 == 0, nothing when x % 5 == 0, else once. */
static inline int rel_dup(void *ctx, const void *in, para_emitter_t *e)
{
    (void)ctx;
    uint64_t x;
    memcpy(&x, in, sizeof x);
    if (x % 5 == 0)
        return 0;
    int rc = para_emit(e, &x);
    if (rc == 0 && x % 3 == 0)
        rc = para_emit(e, &x);
    return rc;
}

static inline int rel_tag(void *ctx, const void *in, void *out)
{
    (void)ctx;
    uint64_t x;
    memcpy(&x, in, sizeof x);
    x *= 3;
    memcpy(out, &x, sizeof x);
    return 0;
}

static inline int rel_osum(void *ctx, const void *in)
{
    struct rel_ctx *c = ctx;
    uint64_t x;
    memcpy(&x, in, sizeof x);
    c->o_count++;
    c->o_sum += x;
    return 0;
}

static inline int rel_counter_open(void *ctx)
{
    ((struct rel_ctx *)ctx)->next = 0;
    return 0;
}

static inline int rel_counter(void *ctx, void *out, size_t cap, size_t *n)
{
    struct rel_ctx *c = ctx;
    size_t k = 0;
    uint64_t *o = out;
    while (k < cap && c->next < c->n)
        o[k++] = c->next++;
    *n = k;
    return 0;
}

static inline int rel_even(void *ctx, const void *in)
{
    (void)ctx;
    uint64_t x;
    memcpy(&x, in, sizeof x);
    return x % 2 == 0;
}

static inline int rel_bsum(void *ctx, const void *in, size_t n)
{
    struct rel_ctx *c = ctx;
    const uint64_t *v = in;
    for (size_t i = 0; i < n; i++)
        c->b_sum += v[i];
    c->b_count += n;
    return 0;
}

static inline int rel_twice(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    const uint64_t *a = in;
    uint64_t *b = out;
    for (size_t i = 0; i < n; i++)
        b[i] = 2 * a[i];
    return 0;
}

/* Reset the per-run state; call before every run. */
static inline void rel_ctx_reset(struct rel_ctx *c, uint64_t n)
{
    c->n = n;
    c->o_count = c->o_sum = 0;
    c->next = 0;
    c->b_count = c->b_sum = 0;
    for (uint64_t i = 0; i < n; i++)
        c->in[i] = i * 7 + 1;
    memset(c->out, 0, sizeof c->out);
    c->out_count = 0;
    c->own_next = c->own_count = c->own_sum = c->own_seen = 0;
}

/* Items that own memory: owned source -> filter (moves the kept items) ->
 * fan-out to a borrowing map -> sum and a borrowing sink. Returns 0 or the
 * first PARA_E* error, with the graph destroyed on error. */
static inline int rel_graph_build_owned(para_graph_t **out, struct rel_ctx *c)
{
    para_graph_t *g = NULL;
    *out = NULL;
    int rc = para_graph_create(&g);
    if (rc != 0)
        return rc;
    para_node_desc_t sd = {.name = "owned",
                           .out_size = sizeof(rel_owned),
                           .ctx = c,
                           .source = rel_owned_source,
                           .open = rel_owned_open,
                           .release = rel_owned_release};
    para_node_t *s, *f, *r, *k1, *k2;
    if ((rc = para_graph_add(g, &sd, &s)) != 0 ||
        (rc = para_graph_add_filter(g, "keep", sizeof(rel_owned),
                                    rel_owned_keep, NULL, 0, &f)) != 0 ||
        (rc = para_graph_add_map(g, "read", sizeof(rel_owned), 8,
                                 rel_owned_read, NULL, 0, &r)) != 0 ||
        (rc = para_graph_add_sink(g, "sum", 8, rel_owned_sum, c,
                                  PARA_NODE_SERIAL, &k1)) != 0 ||
        (rc = para_graph_add_sink(g, "seen", sizeof(rel_owned), rel_owned_seen,
                                  c, PARA_NODE_ORDERED, &k2)) != 0 ||
        (rc = para_graph_connect(g, s, f)) != 0 ||
        (rc = para_graph_connect(g, f, r)) != 0 ||
        (rc = para_graph_connect(g, f, k2)) != 0 ||
        (rc = para_graph_connect(g, r, k1)) != 0) {
        para_graph_destroy(g);
        return rc;
    }
    *out = g;
    return 0;
}

/* Does the context hold the answer of a complete run of the owned graph? */
static inline bool rel_owned_check(const struct rel_ctx *c)
{
    uint64_t count = 0, sum = 0;
    for (uint64_t x = 0; x < c->n; x++)
        if (x % 3 != 0) {
            count++;
            sum += 2 * x;
        }
    return c->own_count == count && c->own_sum == sum && c->own_seen == count;
}

/* Does the context hold the answer of a complete run? @p full: the graph
 * of rel_graph_build() (else that of rel_graph_build_pipeline()). */
static inline bool rel_ctx_check(const struct rel_ctx *c, bool full)
{
    uint64_t oc = 0, os = 0, bc = 0, bs = 0;
    for (uint64_t x = 0; x < c->n; x++) {
        oc++; /* inc */
        os += 3 * (x + 1);
        if (x % 5 != 0) {
            uint64_t k = x % 3 == 0 ? 2 : 1;
            oc += k;
            os += k * 3 * x;
        }
        if (x % 2 == 0) {
            bc++;
            bs += x;
        }
    }
    if (!full)
        return c->o_count == oc && c->o_sum == os;
    if (c->o_count != oc || c->o_sum != os || c->b_count != bc ||
        c->b_sum != bs || c->out_count != c->n)
        return false;
    for (uint64_t i = 0; i < c->n; i++)
        if (c->out[i] != 2 * c->in[i])
            return false;
    return true;
}

static inline int rel_inc_batch(void *ctx, const void *in, void *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rel_inc(ctx, (const uint64_t *)in + i, (uint64_t *)out + i);
    return 0;
}

/* The OpenCL versions of rel_inc and rel_twice. */
static const char rel_kernel_src[] =
    "__kernel void inc(__global const ulong *in, __global ulong *out, uint n)"
    "{ size_t i = get_global_id(0); if (i < n) out[i] = in[i] + 1; }\n"
    "__kernel void twice(__global const ulong *in, __global ulong *out, "
    "uint n)"
    "{ size_t i = get_global_id(0); if (i < n) out[i] = 2 * in[i]; }\n";

static inline int rel_add_tail_k(para_graph_t *g, struct rel_ctx *c,
                                 para_node_t *mid_from_a,
                                 para_node_t *mid_from_b, bool kernels)
{
    para_node_t *tag = NULL, *osum = NULL, *cnt = NULL, *even = NULL,
                *bsum = NULL, *arr = NULL, *twice = NULL, *col = NULL;
    int rc;
    if ((rc = para_graph_add_map(g, "tag", 8, 8, rel_tag, NULL,
                                 PARA_NODE_SERIAL, &tag)) != 0 ||
        (rc = para_graph_add_sink(g, "osum", 8, rel_osum, c, PARA_NODE_ORDERED,
                                  &osum)) != 0 ||
        (rc = para_graph_connect(g, mid_from_a, tag)) != 0 ||
        (rc = para_graph_connect(g, mid_from_b, tag)) != 0 ||
        (rc = para_graph_connect(g, tag, osum)) != 0)
        return rc;
    if ((rc = para_graph_add_source_with_open(
             g, "counter", 8, rel_counter, rel_counter_open, c, &cnt)) != 0 ||
        (rc = para_graph_add_filter(g, "even", 8, rel_even, NULL, 0, &even)) !=
            0 ||
        (rc = para_graph_add_sink_batch(g, "bsum", 8, rel_bsum, c,
                                        PARA_NODE_SERIAL, &bsum)) != 0 ||
        (rc = para_graph_connect(g, cnt, even)) != 0 ||
        (rc = para_graph_connect(g, even, bsum)) != 0)
        return rc;
    if ((rc = para_graph_add_array(g, "array", c->in, (size_t)c->n, 8, &arr)) !=
            0 ||
        (rc = kernels ? para_graph_add_kernel(
                            g, "twice", 8, 8,
                            &(para_kernel_desc_t){.source = rel_kernel_src,
                                                  .entry = "twice"},
                            rel_twice, NULL, &twice)
                      : para_graph_add_map_batch(g, "twice", 8, 8, rel_twice,
                                                 NULL, 0, &twice)) != 0 ||
        (rc = para_graph_add_collect(g, "collect", 8, c->out, REL_MAX_N,
                                     &c->out_count, &col)) != 0 ||
        (rc = para_graph_connect(g, arr, twice)) != 0 ||
        (rc = para_graph_connect(g, twice, col)) != 0)
        return rc;
    return 0;
}

static inline int rel_add_tail(para_graph_t *g, struct rel_ctx *c,
                               para_node_t *mid_from_a, para_node_t *mid_from_b)
{
    return rel_add_tail_k(g, c, mid_from_a, mid_from_b, false);
}

/* The whole graph with the explicit API, inc and twice as kernel nodes if
 * @p kernels. @p c must be reset first (the array source reads c->in and
 * c->n). */
static inline int rel_graph_build_k(para_graph_t **out, struct rel_ctx *c,
                                    bool kernels)
{
    para_graph_t *g = NULL;
    *out = NULL;
    int rc = para_graph_create(&g);
    if (rc != 0)
        return rc;
    para_node_t *r = NULL, *inc = NULL, *dup = NULL;
    para_node_desc_t d = {
        .name = "dup", .in_size = 8, .out_size = 8, .flat_map = rel_dup};
    if ((rc = para_graph_add_range(g, "range", 0, c->n, &r)) != 0 ||
        (rc = kernels ? para_graph_add_kernel(
                            g, "inc", 8, 8,
                            &(para_kernel_desc_t){.source = rel_kernel_src,
                                                  .entry = "inc"},
                            rel_inc_batch, NULL, &inc)
                      : para_graph_add_map(g, "inc", 8, 8, rel_inc, NULL, 0,
                                           &inc)) != 0 ||
        (rc = para_graph_add(g, &d, &dup)) != 0 ||
        (rc = para_graph_connect(g, r, inc)) != 0 ||
        (rc = para_graph_connect(g, r, dup)) != 0 ||
        (rc = rel_add_tail_k(g, c, inc, dup, kernels)) != 0) {
        para_graph_destroy(g);
        return rc;
    }
    *out = g;
    return 0;
}

static inline int rel_graph_build(para_graph_t **out, struct rel_ctx *c)
{
    return rel_graph_build_k(out, c, false);
}

static inline int rel_graph_build_kernel(para_graph_t **out, struct rel_ctx *c)
{
    return rel_graph_build_k(out, c, true);
}

/* The same graph, its first part built by PARA_PIPELINE. */
static inline int rel_graph_build_pipeline(para_graph_t **out,
                                           struct rel_ctx *c)
{
    /* range -> fan-out(inc, dup) -> tag -> osum, with one builder call. */
    para_node_desc_t dd = {
        .name = "dup", .in_size = 8, .out_size = 8, .flat_map = rel_dup};
    para_node_desc_t td = {.name = "tag",
                           .flags = PARA_NODE_SERIAL,
                           .in_size = 8,
                           .out_size = 8,
                           .map = rel_tag};
    para_graph_t *g = NULL;
    *out = NULL;
    int rc = PARA_PIPELINE(
        &g, para_pipe_range("range", 0, c->n),
        PARA_FANOUT(para_pipe_map("inc", 8, 8, rel_inc, NULL),
                    para_pipe_node(&dd)),
        para_pipe_node(&td),
        para_pipe_sink("osum", 8, rel_osum, c, PARA_NODE_ORDERED));
    if (rc != 0)
        return rc;
    *out = g;
    return 0;
}

#endif /* REL_GRAPH_H */
