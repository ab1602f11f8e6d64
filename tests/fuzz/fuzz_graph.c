/*
 * libFuzzer target: random graphs and runtime configurations from bytes.
 *
 * Each input decodes into a runtime configuration (1-4 workers, forced
 * batch size 0 = adaptive, 1, 7 or 64K items (sizes above 16M are refused
 * by para_runtime_create(), tested in test_misuse),
 * max_batches 0, 1 or 3, no device or the `cpu` device back-end) and a
 * graph of up to MAX_NODES nodes of every kind (range, array and callback
 * sources; map, map_batch, filter, flat_map, flat_map_batch, kernel nodes
 * with a CPU function, which the `cpu` back-end launches; sink, sink_batch,
 * collect), with PARALLEL / SERIAL / ORDERED flags, edges
 * mostly forward (a DAG) and now and then backward (cycles), item sizes
 * that sometimes mismatch, nodes that fail on a given item, nodes that call
 * para_run_cancel() on a given item, and collects that may overflow. Inputs
 * are tiny (at most MAX_ITEMS items per source).
 *
 * Oracle:
 *   - building calls return 0 or one of their documented errors;
 *   - if para_graph_validate() fails, para_run() fails with the same code;
 *   - otherwise a sequential reference pushes every item through the DAG
 *     and says which outcomes are allowed: 0 (then every sink's count, sum
 *     and hash and every collect's count and sum must match the reference
 *     exactly), PARA_ENODE if a failing node sees its item, PARA_ECANCELED
 *     if a canceling node sees its item, PARA_EOVERFLOW if a collect gets
 *     more than its capacity; never PARA_ENOMEM;
 *   - after a successful run, every ORDERED node and every collect fed by
 *     a chain from its source (no merge on the way, where the interleaving
 *     of two inputs depends on batch boundaries) saw exactly the sequence
 *     the sequential reference makes, item by item;
 *   - a successful graph is run a second time, with the same answer.
 * Any other outcome, a crash, a hang (libFuzzer's -timeout), a sanitizer
 * report or a leak is a finding.
 *
 * Runtimes are cached per configuration (creating one loads the hwloc
 * topology, which would dominate), so they also live through thousands of
 * runs of different graphs.
 *
 * Build: cmake -DPARA_BUILD_FUZZ=ON -DCMAKE_C_COMPILER=clang
 *        -DPARA_SANITIZE=address,undefined; run: scripts/reliability.sh.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "para.h"

#define MAX_NODES 8
#define CFG_CPU_DEVICE 0x40 /* configuration byte: the `cpu` back-end */
#define MAX_ITEMS 48
#define MAX_REF (MAX_ITEMS * 64) /* items per node in the reference */

enum kind {
    K_RANGE,
    K_ARRAY,
    K_SOURCE,
    K_MAP,
    K_MAP_BATCH,
    K_FILTER,
    K_FLAT_MAP,
    K_FLAT_MAP_BATCH,
    K_KERNEL,
    K_SINK,
    K_SINK_BATCH,
    K_COLLECT,
    N_KINDS
};

struct fnode {
    enum kind kind;
    unsigned flags;
    size_t in_size, out_size; /* 8, or 16 for a deliberate mismatch */
    uint64_t a, b;            /* parameters of the function */
    uint64_t n;               /* sources: items */
    bool fails, cancels;
    uint64_t fail_at, cancel_at; /* input value (sources: item index) */
    para_node_t *h;
    int preds[MAX_NODES];
    int n_preds;
    /* Run state. */
    uint64_t src_next; /* callback source: claim-owned */
    uint64_t values[MAX_ITEMS];
    atomic_ullong count, sum, hash;
    uint64_t *collect;
    size_t collect_cap, collect_count;
    /* ORDERED nodes: the items seen, in the order the node saw them (the
     * node runs on one worker at a time, ordered by happens-before). */
    uint64_t seen[MAX_REF];
    size_t n_seen;
};

static struct fnode nodes[MAX_NODES];
static int n_nodes;
static para_runtime_t *cur_rt;

/* ---- the byte reader ------------------------------------------------------
 */

struct reader {
    const uint8_t *p;
    size_t n;
};

static unsigned byte(struct reader *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

/* ---- node functions -------------------------------------------------------
 */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static uint64_t rd(const void *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof x);
    return x;
}

static uint64_t map_value(const struct fnode *f, uint64_t x)
{
    return x * f->a + f->b;
}

static bool filter_keeps(const struct fnode *f, uint64_t x)
{
    return (x ^ f->a) % 3 != 0;
}

static unsigned flat_copies(uint64_t x)
{
    return (unsigned)(x % 3);
}

/* 0, or the error the node must return for @p x (and the cancel it makes). */
static int visit(struct fnode *f, uint64_t x)
{
    if ((f->flags & PARA_NODE_ORDERED) != 0 && f->n_seen < MAX_REF)
        f->seen[f->n_seen++] = x;
    if (f->cancels && x == f->cancel_at) {
        int rc = para_run_cancel(cur_rt);
        if (rc != 0)
            abort(); /* inside a run: must be accepted */
    }
    if (f->fails && x == f->fail_at)
        return 77;
    return 0;
}

/* The source's open hook: every run starts from item 0. */
static int fn_source_open(void *ctx)
{
    ((struct fnode *)ctx)->src_next = 0;
    return 0;
}

static int fn_source(void *ctx, void *out, size_t cap, size_t *n)
{
    struct fnode *f = ctx;
    size_t k = 0;
    while (k < cap && f->src_next < f->n) {
        int rc = visit(f, f->src_next);
        if (rc != 0)
            return rc;
        uint64_t v = f->src_next * f->a;
        memcpy((char *)out + 8 * k, &v, 8);
        f->src_next++;
        k++;
    }
    *n = k;
    return 0;
}

static int fn_map(void *ctx, const void *in, void *out)
{
    struct fnode *f = ctx;
    uint64_t x = rd(in);
    int rc = visit(f, x);
    uint64_t y = map_value(f, x);
    memcpy(out, &y, 8);
    return rc;
}

static int fn_map_batch(void *ctx, const void *in, void *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = fn_map(ctx, (const char *)in + 8 * i, (char *)out + 8 * i);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int fn_filter(void *ctx, const void *in)
{
    struct fnode *f = ctx;
    uint64_t x = rd(in);
    int rc = visit(f, x);
    if (rc != 0)
        return -rc;
    return filter_keeps(f, x);
}

static int fn_flat_map(void *ctx, const void *in, para_emitter_t *e)
{
    struct fnode *f = ctx;
    uint64_t x = rd(in);
    int rc = visit(f, x);
    if (rc != 0)
        return rc;
    uint64_t y = x + f->b;
    for (unsigned c = 0; c < flat_copies(x); c++)
        if ((rc = para_emit(e, &y)) != 0)
            return rc;
    return 0;
}

static int fn_flat_map_batch(void *ctx, const void *in, size_t n,
                             para_emitter_t *e)
{
    for (size_t i = 0; i < n; i++) {
        int rc = fn_flat_map(ctx, (const char *)in + 8 * i, e);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void account(struct fnode *f, uint64_t x)
{
    /* relaxed: sums read after para_run() returned. */
    atomic_fetch_add_explicit(&f->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&f->sum, x, memory_order_relaxed);
    atomic_fetch_xor_explicit(&f->hash, mix(x), memory_order_relaxed);
}

static int fn_sink(void *ctx, const void *in)
{
    struct fnode *f = ctx;
    uint64_t x = rd(in);
    int rc = visit(f, x);
    if (rc == 0)
        account(f, x);
    return rc;
}

static int fn_sink_batch(void *ctx, const void *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = fn_sink(ctx, (const char *)in + 8 * i);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- the sequential reference -------------------------------------------- */

struct ref {
    uint64_t *out[MAX_NODES]; /* each node's output items */
    size_t n_out[MAX_NODES];
    uint64_t *in[MAX_NODES]; /* each node's input items, in sequence */
    size_t n_in[MAX_NODES];
    bool chain[MAX_NODES]; /* fed by a chain from one source, no merge */
    uint64_t count[MAX_NODES], sum[MAX_NODES], hash[MAX_NODES];
    bool fails, cancels, overflows;
};

static uint64_t ref_buf[MAX_NODES][MAX_REF];
static uint64_t ref_in[MAX_NODES][MAX_REF];

/* Items reaching node i, gathered from its predecessors. Returns false if
 * the reference would need more room (the input is then skipped). */
static bool reference(struct ref *r)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < n_nodes; i++) {
        struct fnode *f = &nodes[i];
        r->out[i] = ref_buf[i];
        r->in[i] = ref_in[i];
        size_t no = 0;
        uint64_t *in = ref_in[i];
        size_t n_in = 0;
        r->chain[i] =
            f->kind <= K_SOURCE || (f->n_preds == 1 && r->chain[f->preds[0]]);
        if (f->kind <= K_SOURCE) {
            for (uint64_t k = 0; k < f->n; k++)
                in[n_in++] = f->kind == K_RANGE   ? f->b + k
                             : f->kind == K_ARRAY ? f->values[k]
                                                  : k * f->a;
        }
        for (int p = 0; p < f->n_preds; p++) {
            int j = f->preds[p];
            if (n_in + r->n_out[j] > MAX_REF)
                return false;
            memcpy(in + n_in, r->out[j], r->n_out[j] * 8);
            n_in += r->n_out[j];
        }
        for (size_t k = 0; k < n_in; k++) {
            uint64_t x = in[k];
            uint64_t key = f->kind == K_SOURCE ? k : x;
            if (f->cancels && key == f->cancel_at)
                r->cancels = true;
            if (f->fails && key == f->fail_at)
                r->fails = true;
            switch (f->kind) {
            case K_RANGE:
            case K_ARRAY:
            case K_SOURCE:
                r->out[i][no++] = x;
                break;
            case K_MAP:
            case K_MAP_BATCH:
            case K_KERNEL:
                r->out[i][no++] = map_value(f, x);
                break;
            case K_FILTER:
                if (filter_keeps(f, x))
                    r->out[i][no++] = x;
                break;
            case K_FLAT_MAP:
            case K_FLAT_MAP_BATCH:
                for (unsigned c = 0; c < flat_copies(x); c++) {
                    if (no == MAX_REF)
                        return false;
                    r->out[i][no++] = x + f->b;
                }
                break;
            default: /* sinks and collect */
                r->count[i]++;
                r->sum[i] += x;
                r->hash[i] ^= mix(x);
            }
        }
        if (f->kind == K_COLLECT && r->count[i] > f->collect_cap)
            r->overflows = true;
        r->n_out[i] = no;
        r->n_in[i] = n_in;
    }
    return true;
}

/* ---- building ------------------------------------------------------------ */

static para_runtime_t *runtimes[4][4][3][2];

static para_runtime_t *get_runtime(unsigned w, unsigned bi, unsigned mi,
                                   unsigned dev)
{
    para_runtime_t **rt = &runtimes[w][bi][mi][dev];
    if (*rt != NULL)
        return *rt;
    static const size_t batch[4] = {0, 1, 7, (size_t)1 << 16};
    static const unsigned maxb[3] = {0, 1, 3};
    para_runtime_attr_t a;
    if (para_runtime_attr_init(&a) != 0)
        abort();
    a.workers = w + 1;
    a.batch_items = batch[bi];
    a.max_batches = maxb[mi];
    a.pin = "none";
    a.device = dev != 0 ? "cpu" : "none";
    if (para_runtime_create(rt, &a) != 0)
        abort();
    return *rt;
}

/* Any text: the `cpu` back-end runs the node's CPU function. */
static const char kernel_src[] =
    "__kernel void fz(__global const ulong *in, __global ulong *out, uint n)"
    " { size_t i = get_global_id(0); if (i < n) out[i] = in[i]; }";

/* Outcome counts, printed at exit with PARA_FUZZ_STATS=1 (so that a run
 * shows how many inputs reached the reference, not only how many ran). */
static unsigned long st_invalid, st_checked, st_failed, st_unchecked;
static unsigned long st_order_checked, st_kernel_runs;

static void print_stats(void)
{
    fprintf(stderr,
            "fuzz_graph: %lu invalid graphs (same error from run), %lu runs "
            "checked against the reference, %lu runs ended by an allowed "
            "error, %lu runs without reference; %lu ORDERED nodes or "
            "collects checked item by item; %lu checked runs on the cpu "
            "device with kernel nodes\n",
            st_invalid, st_checked, st_failed, st_unchecked, st_order_checked,
            st_kernel_runs);
}

static void quiet(int level, const char *msg, void *arg)
{
    (void)level;
    (void)msg;
    (void)arg;
}

static int add_node(para_graph_t *g, struct fnode *f, int i)
{
    char name[16];
    snprintf(name, sizeof name, "n%d", i);
    switch (f->kind) {
    case K_RANGE:
        return para_graph_add_range(g, name, f->b, f->b + f->n, &f->h);
    case K_ARRAY:
        return para_graph_add_array(g, name, f->values, (size_t)f->n, 8, &f->h);
    case K_COLLECT:
        return para_graph_add_collect(g, name, f->in_size, f->collect,
                                      f->collect_cap, &f->collect_count, &f->h);
    case K_KERNEL: {
        para_kernel_desc_t k = {.source = kernel_src, .entry = "fz"};
        return para_graph_add_kernel(g, name, f->in_size, f->out_size, &k,
                                     fn_map_batch, f, &f->h);
    }
    default:
        break;
    }
    para_node_desc_t d = {.name = name,
                          .flags = f->flags,
                          .in_size = f->in_size,
                          .out_size = f->out_size,
                          .ctx = f};
    switch (f->kind) {
    case K_SOURCE:
        d.source = fn_source;
        d.open = fn_source_open;
        d.flags = 0;
        d.in_size = 0;
        break;
    case K_MAP:
        d.map = fn_map;
        break;
    case K_MAP_BATCH:
        d.map_batch = fn_map_batch;
        break;
    case K_FILTER:
        d.filter = fn_filter;
        d.out_size = d.in_size;
        break;
    case K_FLAT_MAP:
        d.flat_map = fn_flat_map;
        break;
    case K_FLAT_MAP_BATCH:
        d.flat_map_batch = fn_flat_map_batch;
        break;
    case K_SINK:
        d.sink = fn_sink;
        d.out_size = 0;
        break;
    case K_SINK_BATCH:
        d.sink_batch = fn_sink_batch;
        d.out_size = 0;
        break;
    default:
        abort();
    }
    return para_graph_add(g, &d, &f->h);
}

static bool is_source(enum kind k)
{
    return k <= K_SOURCE;
}

static bool is_sink(enum kind k)
{
    return k >= K_SINK;
}

static void reset_run_state(void)
{
    for (int i = 0; i < n_nodes; i++) {
        struct fnode *f = &nodes[i];
        /* src_next is rewound by the source's open hook. */
        /* relaxed: no run is in progress. */
        atomic_store_explicit(&f->count, 0, memory_order_relaxed);
        atomic_store_explicit(&f->sum, 0, memory_order_relaxed);
        atomic_store_explicit(&f->hash, 0, memory_order_relaxed);
        f->collect_count = 0;
        f->n_seen = 0;
    }
}

/* @p got[0..n) must be the reference's sequence into node @p i. */
static void check_order(const struct ref *r, int i, const char *what,
                        const uint64_t *got, size_t n)
{
    if (n != r->n_in[i]) {
        fprintf(stderr, "%s n%d saw %zu items, expected %zu\n", what, i, n,
                r->n_in[i]);
        abort();
    }
    for (size_t k = 0; k < n; k++)
        if (got[k] != r->in[i][k]) {
            fprintf(stderr,
                    "%s n%d: item %zu is %llu, the sequential order has "
                    "%llu\n",
                    what, i, k, (unsigned long long)got[k],
                    (unsigned long long)r->in[i][k]);
            abort();
        }
    st_order_checked++;
}

static void check_results(const struct ref *r)
{
    for (int i = 0; i < n_nodes; i++) {
        struct fnode *f = &nodes[i];
        if (f->kind == K_COLLECT && r->chain[i])
            check_order(r, i, "collect", f->collect, f->collect_count);
        else if ((f->flags & PARA_NODE_ORDERED) != 0 && r->chain[i])
            check_order(r, i, "ORDERED node", f->seen, f->n_seen);
        if (f->kind == K_COLLECT) {
            uint64_t s = 0, h = 0;
            for (size_t k = 0; k < f->collect_count; k++) {
                s += f->collect[k];
                h ^= mix(f->collect[k]);
            }
            if (f->collect_count != r->count[i] || s != r->sum[i] ||
                h != r->hash[i]) {
                fprintf(stderr, "collect n%d: %zu items, expected %llu\n", i,
                        f->collect_count, (unsigned long long)r->count[i]);
                abort();
            }
        } else if (is_sink(f->kind)) {
            /* relaxed: para_run() returned, the workers' writes are
             * ordered before it. */
            if (atomic_load_explicit(&f->count, memory_order_relaxed) !=
                    r->count[i] ||
                atomic_load_explicit(&f->sum, memory_order_relaxed) !=
                    r->sum[i] ||
                atomic_load_explicit(&f->hash, memory_order_relaxed) !=
                    r->hash[i]) {
                fprintf(stderr, "sink n%d: %llu items, expected %llu\n", i,
                        (unsigned long long)atomic_load_explicit(
                            &f->count, memory_order_relaxed),
                        (unsigned long long)r->count[i]);
                abort();
            }
        }
    }
}

static bool allowed(int rc, const struct ref *r)
{
    if (rc == PARA_ENODE)
        return r->fails;
    if (rc == PARA_ECANCELED)
        return r->cancels;
    if (rc == PARA_EOVERFLOW)
        return r->overflows;
    if (rc == 0)
        return !r->fails && !r->overflows;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        para_set_log_fn(quiet, NULL);
        if (getenv("PARA_FUZZ_STATS") != NULL)
            atexit(print_stats);
        init = true;
    }
    struct reader rd_ = {data, size};
    struct reader *in = &rd_;
    unsigned cfg = byte(in);
    unsigned w = cfg & 3, bi = (cfg >> 2) & 3, mi = ((cfg >> 4) & 3) % 3;
    bool cpu_device = (cfg & CFG_CPU_DEVICE) != 0;
    cur_rt = get_runtime(w, bi, mi, cpu_device);

    n_nodes = 1 + (int)(byte(in) % MAX_NODES);
    memset(nodes, 0, sizeof nodes);
    static uint64_t collect_room[MAX_NODES][MAX_REF];
    for (int i = 0; i < n_nodes; i++) {
        struct fnode *f = &nodes[i];
        unsigned k = byte(in);
        /* The first node is a source more often than not. */
        f->kind =
            (enum kind)((i == 0 && (k & 0x80) == 0) ? k % 3 : k % N_KINDS);
        unsigned fl = byte(in);
        f->flags = (fl & 3) == 3   ? PARA_NODE_ORDERED
                   : (fl & 3) == 2 ? PARA_NODE_SERIAL
                                   : 0;
        f->in_size = f->out_size = 8;
        if ((fl & 0x1c) == 0x1c) /* 1 in 8: a size that mismatches */
            f->out_size = 16;
        f->a = (uint64_t)byte(in) * 2 + 1;
        f->b = byte(in);
        f->n = byte(in) % (MAX_ITEMS + 1);
        unsigned e = byte(in);
        f->fails = (e & 0x7) == 1;
        f->cancels = (e & 0x38) == 0x08;
        f->fail_at = byte(in) % 64;
        f->cancel_at = byte(in) % 64;
        if (f->kind == K_RANGE || f->kind == K_ARRAY || f->kind == K_COLLECT)
            f->fails = f->cancels = false; /* built-ins call no function */
        if (f->kind == K_KERNEL || is_source(f->kind))
            f->flags = 0; /* kernel nodes are PARALLEL; sources take none */
        for (uint64_t v = 0; v < f->n; v++)
            f->values[v] = v * 3 + f->b;
        f->collect = collect_room[i];
        f->collect_cap = (fl & 0x60) == 0x60 ? byte(in) % 16 : MAX_REF;
        atomic_init(&f->count, 0);
        atomic_init(&f->sum, 0);
        atomic_init(&f->hash, 0);
    }

    para_graph_t *g = NULL;
    if (para_graph_create(&g) != 0)
        abort();
    for (int i = 0; i < n_nodes; i++) {
        int rc = add_node(g, &nodes[i], i);
        /* Only a filter whose sizes disagree is a documented refusal. */
        if (rc != 0 && !(rc == PARA_EINVAL && nodes[i].kind == K_FILTER))
            abort();
        if (rc != 0) {
            nodes[i].kind = K_MAP; /* placeholder: retry as a map */
            if (add_node(g, &nodes[i], i) != 0)
                abort();
        }
    }
    /* Edges: node j feeds node i (j < i) when bit j of a byte is set; a
     * rare extra byte adds a backward edge, which may close a cycle. */
    bool backward = false;
    for (int i = 1; i < n_nodes; i++) {
        unsigned mask = byte(in);
        for (int j = 0; j < i; j++) {
            if ((mask & (1u << j)) == 0)
                continue;
            int rc = para_graph_connect(g, nodes[j].h, nodes[i].h);
            if (rc == 0) {
                nodes[i].preds[nodes[i].n_preds++] = j;
            } else if (rc != PARA_ESIZE && rc != PARA_EINVAL) {
                abort();
            } else if (rc == PARA_EINVAL && !is_sink(nodes[j].kind) &&
                       !is_source(nodes[i].kind)) {
                abort(); /* EINVAL only for a sink's output or a source's
                            input (edges are not repeated here) */
            } else if (rc == PARA_ESIZE &&
                       nodes[j].out_size == nodes[i].in_size) {
                abort();
            }
        }
    }
    unsigned back = byte(in);
    if ((back & 0xf0) == 0xf0 && n_nodes > 1) {
        int from = (int)(back % (unsigned)n_nodes);
        int to = (int)((back >> 2) % (unsigned)n_nodes);
        if (para_graph_connect(g, nodes[from].h, nodes[to].h) == 0)
            backward = true;
    }

    int vrc = para_graph_validate(g);
    reset_run_state();
    int rc = para_run(cur_rt, g);
    if (vrc != 0) {
        if (rc != vrc) {
            fprintf(stderr, "validate %s but run %s\n", para_err_name(vrc),
                    para_err_name(rc));
            abort();
        }
        st_invalid++;
        para_graph_destroy(g);
        return 0;
    }
    if (backward) { /* a valid graph with a backward edge: no reference */
        st_unchecked++;
        para_graph_destroy(g);
        return 0;
    }
    struct ref r;
    if (reference(&r)) {
        if (!allowed(rc, &r)) {
            fprintf(stderr,
                    "run returned %s (%s); fails %d cancels %d "
                    "overflows %d\n",
                    para_err_name(rc), para_runtime_errmsg(cur_rt), r.fails,
                    r.cancels, r.overflows);
            abort();
        }
        if (rc != 0)
            st_failed++;
        else
            st_checked++;
        if (rc == 0 && cpu_device)
            for (int i = 0; i < n_nodes; i++)
                if (nodes[i].kind == K_KERNEL) {
                    st_kernel_runs++;
                    break;
                }
        if (rc == 0) {
            check_results(&r);
            /* Run it again: same answer. */
            reset_run_state();
            int rc2 = para_run(cur_rt, g);
            if (!allowed(rc2, &r))
                abort();
            if (rc2 == 0)
                check_results(&r);
        }
    } else {
        st_unchecked++;
    }
    para_graph_destroy(g);
    return 0;
}
