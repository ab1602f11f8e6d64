/*
 * Graph building and validation.
 *
 * Nodes are owned by their graph; edges are kept on both ends in connection
 * order (the order defines input port numbers). para__graph_prepare() checks
 * the graph (sources exist, every port connected, no cycle, ORDERED nodes fed
 * by one source) and derives what the scheduler needs:
 *
 *   path_count / in_path_offset
 *       A batch flows from its source along every path of the DAG. Give each
 *       path into node v a dense index in [0, P(v)): P(source) = 1,
 *       P(v) = sum of P(u) over v's inputs u_0..u_k-1, and a batch arriving
 *       at v through input j with index p leaves v with index
 *       offset_j + p, offset_j = sum_{i<j} P(u_i). Every source batch reaches
 *       an ORDERED node once per path, so the node can process keys
 *       (seq_begin, path) in lexicographic order and know which key comes
 *       next: (s, p+1) while p+1 < P(v), else (seq_end, 0).
 *   forward_empty
 *       Set when an ORDERED node is downstream: then even empty batches
 *       (everything filtered out) must be forwarded, so the ordered node
 *       never waits for a key that would not come.
 *   succ_order
 *       Successor indices by ascending priority: pushed in that order onto
 *       a LIFO deque, the highest priority runs first.
 *
 * Tests: tests/runtime/test_graph.c (every validation error),
 * tests/runtime/test_differential.c (path semantics against a reference).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

#include "owned.h"

int para__graph_fail(para_graph_t *g, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    para__errmsg_vset(&g->errmsg, fmt, ap);
    va_end(ap);
    return err;
}

int para_graph_create(para_graph_t **out)
{
    if (out == NULL)
        return PARA_EINVAL;
    para_graph_t *g = calloc(1, sizeof *g);
    if (g == NULL)
        return PARA_ENOMEM;
    atomic_init(&g->running, 0);
    para__errmsg_init(&g->errmsg);
    *out = g;
    return 0;
}

static void free_derived(para_node_t *n)
{
    free(n->succ_port);
    free(n->succ_order);
    free(n->in_path_offset);
    n->succ_port = NULL;
    n->succ_order = NULL;
    n->in_path_offset = NULL;
}

void para__kernel_copy_free(para__kernel_copy *k)
{
    if (k == NULL)
        return;
    for (size_t i = 0; i < k->n_args; i++)
        if (k->args[i].kind == PARA_KARG_SCALAR)
            free(k->args[i].value);
    free(k->args);
    free(k->source);
    free(k->entry);
    free(k->options);
    free(k);
}

static char *strdup_or_null(const char *s, bool *failed)
{
    if (s == NULL)
        return NULL;
    char *c = strdup(s);
    if (c == NULL)
        *failed = true;
    return c;
}

static char *concat(const char *a, const char *b, bool *failed)
{
    size_t la = strlen(a), lb = strlen(b);
    char *c = malloc(la + lb + 1);
    if (c == NULL) {
        *failed = true;
        return NULL;
    }
    memcpy(c, a, la);
    memcpy(c + la, b, lb + 1);
    return c;
}

/* Check and copy a kernel description; NULL with *err set on failure. */
static para__kernel_copy *kernel_copy(para_graph_t *g, const char *name,
                                      const para_kernel_desc_t *kd,
                                      unsigned flags, int *err)
{
    *err = 0;
    if (kd->source == NULL || kd->entry == NULL || kd->entry[0] == '\0' ||
        (kd->n_args > 0 && kd->args == NULL)) {
        *err = para__graph_fail(g, PARA_EINVAL,
                                "kernel node '%s': the kernel needs a source "
                                "and an entry point",
                                name);
        return NULL;
    }
    for (size_t i = 0; i < kd->n_args; i++) {
        const para_kernel_arg_t *a = &kd->args[i];
        const char *why = NULL;
        if (a->kind > PARA_KARG_INDEX)
            why = "has an unknown kind";
        else if (a->kind == PARA_KARG_INDEX) {
            if (a->value != NULL || a->size != 0)
                why = "is the item index but has a value or a size";
        } else if (a->size == 0)
            why = "has size 0";
        else if (a->kind == PARA_KARG_LOCAL && a->value != NULL)
            why = "is local memory but has a value";
        else if (a->kind != PARA_KARG_LOCAL && a->value == NULL)
            why = "has no value";
        if (why != NULL) {
            *err = para__graph_fail(g, PARA_EINVAL,
                                    "kernel node '%s': argument %zu %s", name,
                                    i, why);
            return NULL;
        }
    }
    para__kernel_copy *k = calloc(1, sizeof *k);
    bool failed = k == NULL;
    if (k != NULL) {
        k->entry = strdup_or_null(kd->entry, &failed);
        if ((flags & PARA_NODE_FP_STRICT) != 0) {
            /* Bit-identical to C: no FMA contraction, correctly rounded
             * division and square root (see PARA_NODE_FP_STRICT). */
            k->source =
                concat("#pragma OPENCL FP_CONTRACT OFF\n", kd->source, &failed);
            k->options =
                concat(kd->options != NULL ? kd->options : "",
                       " -cl-fp32-correctly-rounded-divide-sqrt", &failed);
        } else {
            k->source = strdup_or_null(kd->source, &failed);
            k->options = strdup_or_null(kd->options, &failed);
        }
        if (kd->n_args > 0 && !failed) {
            k->args = calloc(kd->n_args, sizeof *k->args);
            failed = k->args == NULL;
        }
        for (size_t i = 0; !failed && i < kd->n_args; i++) {
            k->args[i].kind = kd->args[i].kind;
            k->args[i].size = kd->args[i].size;
            if (kd->args[i].kind == PARA_KARG_INDEX)
                k->wants_index = true;
            if (kd->args[i].kind == PARA_KARG_SCALAR) {
                k->args[i].value = malloc(kd->args[i].size);
                if (k->args[i].value == NULL) {
                    failed = true;
                    break;
                }
                memcpy(k->args[i].value, kd->args[i].value, kd->args[i].size);
            } else {
                /* Borrowed (buffers) or none (local memory). */
                k->args[i].value = (void *)(uintptr_t)kd->args[i].value;
            }
            k->n_args = i + 1;
        }
    }
    if (failed) {
        para__kernel_copy_free(k);
        *err =
            para__graph_fail(g, PARA_ENOMEM, "out of memory adding '%s'", name);
        return NULL;
    }
    return k;
}

static void node_free(para_node_t *n)
{
    if (n->ctx_free != NULL)
        n->ctx_free(n->ctx);
    para__kernel_copy_free(n->kernel);
    free(n->wst);
    free_derived(n);
    free(n->succs);
    free(n->preds);
    free(n->mpi_traffic);
    free(n->name);
    free(n);
}

void para_graph_destroy(para_graph_t *g)
{
    if (g == NULL)
        return;
    for (unsigned i = 0; i < g->n_nodes; i++)
        node_free(g->nodes[i]);
    free(g->nodes);
    free(g->sources);
    free(g->topo);
    para__errmsg_destroy(&g->errmsg);
    free(g);
}

const char *para_graph_errmsg(const para_graph_t *g)
{
    /* A copy per calling thread (errmsg.h): valid until this thread's next
     * call, whatever other threads do with the graph meanwhile. */
    static _Thread_local char copy[PARA__ERRMSG_LEN];
    if (g == NULL)
        return "graph is NULL";
    /* para__errmsg_copy() locks; the box itself is not changed. */
    return para__errmsg_copy((para__errmsg *)&g->errmsg, copy, sizeof copy);
}

size_t para_graph_node_count(const para_graph_t *g)
{
    return g != NULL ? g->n_nodes : 0;
}

const char *para__node_kind_name(const para_node_t *n)
{
    if (para__is_source(n))
        return "source";
    if (n->kernel != NULL)
        return "kernel";
    switch (n->kind) {
    case PARA__KIND_MAP:
    case PARA__KIND_MAP_BATCH:
        return "map";
    case PARA__KIND_FILTER:
        return "filter";
    case PARA__KIND_FLAT_MAP:
    case PARA__KIND_FLAT_MAP_BATCH:
        return "flat_map";
    case PARA__KIND_COLLECT:
        return "collect";
    case PARA__KIND_REDUCE:
        return "reduce";
    default:
        return "sink";
    }
}

const char *para_node_name(const para_node_t *n)
{
    return n != NULL ? n->name : NULL;
}

static bool graph_running(para_graph_t *g)
{
    /* acquire: pairs with the release store at the end of para_run(), so a
     * builder call after a run sees the run's writes to the graph. */
    return atomic_load_explicit(&g->running, memory_order_acquire) != 0;
}

int para_node_set_priority(para_node_t *n, int priority)
{
    if (n == NULL)
        return PARA_EINVAL;
    if (graph_running(n->graph))
        return PARA_EBUSY;
    n->priority = priority;
    n->graph->prepared = false;
    return 0;
}

/* Pick the node kind from the one function set in the desc. */
static int desc_kind(const para_node_desc_t *d, para__kind *kind)
{
    int set = 0;
#define PARA_KIND_IF(field, k)                                                 \
    if (d->field != NULL) {                                                    \
        *kind = (k);                                                           \
        set++;                                                                 \
    }
    PARA_KIND_IF(source, PARA__KIND_SOURCE_FN)
    PARA_KIND_IF(map, PARA__KIND_MAP)
    PARA_KIND_IF(map_batch, PARA__KIND_MAP_BATCH)
    PARA_KIND_IF(filter, PARA__KIND_FILTER)
    PARA_KIND_IF(filter_batch, PARA__KIND_FILTER)
    PARA_KIND_IF(flat_map, PARA__KIND_FLAT_MAP)
    PARA_KIND_IF(flat_map_batch, PARA__KIND_FLAT_MAP_BATCH)
    PARA_KIND_IF(sink, PARA__KIND_SINK)
    PARA_KIND_IF(sink_batch, PARA__KIND_SINK_BATCH)
#undef PARA_KIND_IF
    return set;
}

static int grow_array(void **arr, unsigned *cap, unsigned need, size_t elem)
{
    if (need <= *cap)
        return 0;
    unsigned ncap = *cap ? *cap * 2 : 4;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (p == NULL)
        return PARA_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* Create and append a node of a given kind; the caller fills the rest. */
static int node_new(para_graph_t *g, const para_node_desc_t *d, para__kind kind,
                    para_node_t **out)
{
    if (grow_array((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1,
                   sizeof *g->nodes) != 0)
        return para__graph_fail(g, PARA_ENOMEM, "out of memory adding '%s'",
                                d->name);
    para_node_t *n = calloc(1, sizeof *n);
    if (n == NULL)
        return para__graph_fail(g, PARA_ENOMEM, "out of memory adding '%s'",
                                d->name);
    n->name = strdup(d->name);
    if (n->name == NULL) {
        free(n);
        return para__graph_fail(g, PARA_ENOMEM, "out of memory adding '%s'",
                                d->name);
    }
    n->graph = g;
    n->index = g->n_nodes;
    n->kind = kind;
    n->flags = d->flags;
    n->priority = d->priority;
    n->in_size = d->in_size;
    n->out_size = d->out_size;
    n->item_bytes = d->item_bytes;
    atomic_init(&n->cost_x1024, 0);
    n->min_batch = d->min_batch;
    n->batch_ns = (uint64_t)d->batch_us * 1000u;
    n->release = d->release;
    n->owned_bytes = d->owned_bytes;
    atomic_init(&n->owned_max, 0);
    n->ctx = d->ctx;
    n->serial = (d->flags & (PARA_NODE_SERIAL | PARA_NODE_ORDERED)) != 0;
    switch (kind) {
    case PARA__KIND_SOURCE_FN:
        n->fn.source = d->source;
        n->src_open = d->open;
        break;
    case PARA__KIND_MAP:
        n->fn.map = d->map;
        break;
    case PARA__KIND_MAP_BATCH:
        n->fn.map_batch = d->map_batch;
        break;
    case PARA__KIND_FILTER:
        n->filter_batched = d->filter_batch != NULL;
        if (n->filter_batched)
            n->fn.filter_batch = d->filter_batch;
        else
            n->fn.filter = d->filter;
        break;
    case PARA__KIND_FLAT_MAP:
        n->fn.flat_map = d->flat_map;
        break;
    case PARA__KIND_FLAT_MAP_BATCH:
        n->fn.flat_map_batch = d->flat_map_batch;
        break;
    case PARA__KIND_SINK:
        n->fn.sink = d->sink;
        break;
    case PARA__KIND_SINK_BATCH:
        n->fn.sink_batch = d->sink_batch;
        break;
    case PARA__KIND_RANGE:
    case PARA__KIND_ARRAY:
    case PARA__KIND_COLLECT:
    case PARA__KIND_REDUCE:
    case PARA__KIND_KERNEL:
        break;
    }
    para__task_stack_init(&n->inbox);
    atomic_init(&n->claimed, 0);
    atomic_init(&n->src_state, 0);
    atomic_init(&n->src_cursor, 0);
    atomic_init(&n->st_items_in, 0);
    atomic_init(&n->st_items_out, 0);
    atomic_init(&n->st_batches, 0);
    atomic_init(&n->st_busy_ns, 0);
    atomic_init(&n->remote_busy_ns, 0);
    atomic_init(&n->st_device_items, 0);
    atomic_init(&n->st_device_launches, 0);
    atomic_init(&n->st_device_bytes_in, 0);
    atomic_init(&n->st_device_bytes_out, 0);
    atomic_init(&n->st_device_handovers, 0);
    atomic_init(&n->st_device_ns, 0);
    atomic_init(&n->expand_x16, 0);
    atomic_init(&n->cpu_ps_per_item, 0);
    atomic_init(&n->cpu_best_ps, 0);
    n->drain_task.node = n;
    g->nodes[g->n_nodes++] = n;
    g->prepared = false;
    if (out != NULL)
        *out = n;
    return 0;
}

static int check_common(para_graph_t *g, const para_node_desc_t *d)
{
    if (d->name == NULL || d->name[0] == '\0')
        return para__graph_fail(g, PARA_EINVAL, "node without a name");
    if (graph_running(g))
        return para__graph_fail(
            g, PARA_EBUSY, "cannot add '%s': the graph is running", d->name);
    const unsigned known = PARA_NODE_PARALLEL | PARA_NODE_SERIAL |
                           PARA_NODE_ORDERED | PARA_NODE_DEVICE_ONLY |
                           PARA_NODE_TAKES | PARA_NODE_CPU_ONLY |
                           PARA_NODE_FP_STRICT;
    if ((d->flags & ~known) != 0)
        return para__graph_fail(g, PARA_EINVAL, "node '%s': unknown flags 0x%x",
                                d->name, d->flags);
    if ((d->flags & PARA_NODE_PARALLEL) != 0 &&
        (d->flags & (PARA_NODE_SERIAL | PARA_NODE_ORDERED)) != 0)
        return para__graph_fail(g, PARA_EINVAL,
                                "node '%s': PARALLEL together with SERIAL or "
                                "ORDERED",
                                d->name);
    /* Names are how every message, trace and statistic tells nodes apart. */
    for (unsigned i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i]->name, d->name) == 0)
            return para__graph_fail(g, PARA_EINVAL,
                                    "cannot add '%s': the graph has a node of "
                                    "that name",
                                    d->name);
    return 0;
}

int para_graph_add(para_graph_t *g, const para_node_desc_t *d,
                   para_node_t **out)
{
    if (g == NULL)
        return PARA_EINVAL;
    if (d == NULL)
        return para__graph_fail(g, PARA_EINVAL, "node description is NULL");
    int rc = check_common(g, d);
    if (rc != 0)
        return rc;
    para__kind kind = PARA__KIND_MAP;
    int set = desc_kind(d, &kind);
    if (d->kernel != NULL) {
        if (set == 0)
            kind = PARA__KIND_KERNEL;
        else if (set != 1 ||
                 (kind != PARA__KIND_MAP && kind != PARA__KIND_MAP_BATCH))
            return para__graph_fail(g, PARA_EINVAL,
                                    "kernel node '%s': its CPU function, if "
                                    "any, must be one map or map_batch",
                                    d->name);
        if ((d->flags &
             ~(unsigned)(PARA_NODE_PARALLEL | PARA_NODE_DEVICE_ONLY |
                         PARA_NODE_CPU_ONLY | PARA_NODE_FP_STRICT)) != 0)
            return para__graph_fail(
                g, PARA_EINVAL, "kernel node '%s' must be PARALLEL", d->name);
        if ((d->flags & PARA_NODE_CPU_ONLY) != 0 &&
            (d->flags & PARA_NODE_DEVICE_ONLY) != 0)
            return para__graph_fail(g, PARA_EINVAL,
                                    "kernel node '%s': CPU_ONLY together "
                                    "with DEVICE_ONLY",
                                    d->name);
        if ((d->flags & PARA_NODE_CPU_ONLY) != 0 && set == 0)
            return para__graph_fail(g, PARA_EINVAL,
                                    "kernel node '%s': CPU_ONLY without a "
                                    "CPU function",
                                    d->name);
    } else if ((d->flags & (PARA_NODE_DEVICE_ONLY | PARA_NODE_CPU_ONLY |
                            PARA_NODE_FP_STRICT)) != 0) {
        return para__graph_fail(g, PARA_EINVAL,
                                "node '%s': DEVICE_ONLY, CPU_ONLY and "
                                "FP_STRICT are for kernel nodes",
                                d->name);
    } else if (set != 1) {
        return para__graph_fail(g, PARA_EINVAL,
                                "node '%s': exactly one function must be set "
                                "(found %d)",
                                d->name, set);
    }
    bool source = kind == PARA__KIND_SOURCE_FN;
    bool sink = kind == PARA__KIND_SINK || kind == PARA__KIND_SINK_BATCH;
    if (d->release != NULL && (sink || d->kernel != NULL))
        return para__graph_fail(g, PARA_EINVAL,
                                "node '%s': a %s has no output items to "
                                "release",
                                d->name, sink ? "sink" : "kernel node");
    if ((d->flags & PARA_NODE_TAKES) != 0 &&
        (source || kind == PARA__KIND_FILTER || d->kernel != NULL))
        return para__graph_fail(g, PARA_EINVAL,
                                "node '%s': PARA_NODE_TAKES is for maps, "
                                "flat-maps and sinks",
                                d->name);
    if (d->open != NULL && !source)
        return para__graph_fail(g, PARA_EINVAL,
                                "node '%s': only a source has an open hook",
                                d->name);
    if (!source && d->in_size == 0)
        return para__graph_fail(g, PARA_EINVAL, "node '%s': in_size is 0",
                                d->name);
    para_node_desc_t copy = *d;
    if (kind == PARA__KIND_FILTER) {
        if (copy.out_size == 0)
            copy.out_size = copy.in_size;
        if (copy.out_size != copy.in_size)
            return para__graph_fail(g, PARA_EINVAL,
                                    "filter '%s': out_size %zu differs from "
                                    "in_size %zu",
                                    d->name, copy.out_size, copy.in_size);
    }
    if (sink)
        copy.out_size = 0;
    else if (copy.out_size == 0)
        return para__graph_fail(g, PARA_EINVAL, "node '%s': out_size is 0",
                                d->name);
    if (source)
        copy.in_size = 0;
    if (d->kernel == NULL)
        return node_new(g, &copy, kind, out);
    para__kernel_copy *k = kernel_copy(g, d->name, d->kernel, d->flags, &rc);
    if (k == NULL)
        return rc;
    para_node_t *n = NULL;
    rc = node_new(g, &copy, kind, &n);
    if (rc != 0) {
        para__kernel_copy_free(k);
        return rc;
    }
    n->kernel = k;
    if (out != NULL)
        *out = n;
    return 0;
}

int para_graph_add_kernel(para_graph_t *g, const char *name, size_t in_size,
                          size_t out_size, const para_kernel_desc_t *kernel,
                          para_map_batch_fn cpu_fn, void *ctx,
                          para_node_t **out)
{
    if (g == NULL)
        return PARA_EINVAL;
    if (kernel == NULL)
        return para__graph_fail(g, PARA_EINVAL,
                                "kernel node '%s': kernel "
                                "is NULL",
                                name != NULL ? name : "(null)");
    para_node_desc_t d = {.name = name,
                          .in_size = in_size,
                          .out_size = out_size,
                          .ctx = ctx,
                          .map_batch = cpu_fn,
                          .kernel = kernel};
    return para_graph_add(g, &d, out);
}

int para_graph_add_range(para_graph_t *g, const char *name, uint64_t begin,
                         uint64_t end, para_node_t **out)
{
    if (g == NULL)
        return PARA_EINVAL;
    para_node_desc_t d = {.name = name, .out_size = sizeof(uint64_t)};
    int rc = check_common(g, &d);
    if (rc != 0)
        return rc;
    if (end < begin)
        return para__graph_fail(
            g, PARA_EINVAL, "range '%s': end %llu before begin %llu", name,
            (unsigned long long)end, (unsigned long long)begin);
    para_node_t *n;
    rc = node_new(g, &d, PARA__KIND_RANGE, &n);
    if (rc != 0)
        return rc;
    n->range_begin = begin;
    n->range_end = end;
    if (out != NULL)
        *out = n;
    return 0;
}

int para_graph_add_array(para_graph_t *g, const char *name, const void *items,
                         size_t count, size_t item_size, para_node_t **out)
{
    if (g == NULL)
        return PARA_EINVAL;
    para_node_desc_t d = {.name = name, .out_size = item_size};
    int rc = check_common(g, &d);
    if (rc != 0)
        return rc;
    if (item_size == 0 || (items == NULL && count > 0))
        return para__graph_fail(g, PARA_EINVAL, "array '%s': %s", name,
                                item_size == 0 ? "item_size is 0"
                                               : "items is NULL");
    para_node_t *n;
    rc = node_new(g, &d, PARA__KIND_ARRAY, &n);
    if (rc != 0)
        return rc;
    n->array = items;
    n->array_count = count;
    if (out != NULL)
        *out = n;
    return 0;
}

int para_graph_add_collect(para_graph_t *g, const char *name, size_t item_size,
                           void *array, size_t capacity, size_t *count,
                           para_node_t **out)
{
    if (g == NULL)
        return PARA_EINVAL;
    para_node_desc_t d = {
        .name = name, .in_size = item_size, .flags = PARA_NODE_ORDERED};
    int rc = check_common(g, &d);
    if (rc != 0)
        return rc;
    if (item_size == 0 || count == NULL || (array == NULL && capacity > 0))
        return para__graph_fail(
            g, PARA_EINVAL, "collect '%s': item_size 0 or NULL pointer", name);
    para_node_t *n;
    rc = node_new(g, &d, PARA__KIND_COLLECT, &n);
    if (rc != 0)
        return rc;
    n->collect_array = array;
    n->collect_capacity = capacity;
    n->collect_count = count;
    if (out != NULL)
        *out = n;
    return 0;
}

int para_graph_add_source(para_graph_t *g, const char *name, size_t out_size,
                          para_source_fn fn, void *ctx, para_node_t **out)
{
    para_node_desc_t d = {
        .name = name, .out_size = out_size, .ctx = ctx, .source = fn};
    return para_graph_add(g, &d, out);
}

int para_graph_add_source_with_open(para_graph_t *g, const char *name,
                                    size_t out_size, para_source_fn fn,
                                    para_source_open_fn open, void *ctx,
                                    para_node_t **out)
{
    if (g == NULL)
        return PARA_EINVAL;
    if (open == NULL)
        return para__graph_fail(g, PARA_EINVAL, "source '%s': open is NULL",
                                name != NULL ? name : "(null)");
    para_node_desc_t d = {.name = name,
                          .out_size = out_size,
                          .ctx = ctx,
                          .source = fn,
                          .open = open};
    return para_graph_add(g, &d, out);
}

int para_graph_add_map(para_graph_t *g, const char *name, size_t in_size,
                       size_t out_size, para_map_fn fn, void *ctx,
                       unsigned flags, para_node_t **out)
{
    para_node_desc_t d = {.name = name,
                          .in_size = in_size,
                          .out_size = out_size,
                          .ctx = ctx,
                          .flags = flags,
                          .map = fn};
    return para_graph_add(g, &d, out);
}

int para_graph_add_map_batch(para_graph_t *g, const char *name, size_t in_size,
                             size_t out_size, para_map_batch_fn fn, void *ctx,
                             unsigned flags, para_node_t **out)
{
    para_node_desc_t d = {.name = name,
                          .in_size = in_size,
                          .out_size = out_size,
                          .ctx = ctx,
                          .flags = flags,
                          .map_batch = fn};
    return para_graph_add(g, &d, out);
}

int para_graph_add_sink_batch(para_graph_t *g, const char *name, size_t in_size,
                              para_sink_batch_fn fn, void *ctx, unsigned flags,
                              para_node_t **out)
{
    para_node_desc_t d = {.name = name,
                          .in_size = in_size,
                          .ctx = ctx,
                          .flags = flags,
                          .sink_batch = fn};
    return para_graph_add(g, &d, out);
}

int para_graph_add_filter(para_graph_t *g, const char *name, size_t item_size,
                          para_filter_fn fn, void *ctx, unsigned flags,
                          para_node_t **out)
{
    para_node_desc_t d = {.name = name,
                          .in_size = item_size,
                          .out_size = item_size,
                          .ctx = ctx,
                          .flags = flags,
                          .filter = fn};
    return para_graph_add(g, &d, out);
}

int para_graph_add_filter_batch(para_graph_t *g, const char *name,
                                size_t item_size, para_filter_batch_fn fn,
                                void *ctx, unsigned flags, para_node_t **out)
{
    para_node_desc_t d = {.name = name,
                          .in_size = item_size,
                          .out_size = item_size,
                          .ctx = ctx,
                          .flags = flags,
                          .filter_batch = fn};
    return para_graph_add(g, &d, out);
}

int para_graph_add_sink(para_graph_t *g, const char *name, size_t in_size,
                        para_sink_fn fn, void *ctx, unsigned flags,
                        para_node_t **out)
{
    /* flags 0 means SERIAL for this convenience call (graph.h says why). */
    para_node_desc_t d = {.name = name,
                          .in_size = in_size,
                          .ctx = ctx,
                          .flags = flags != 0 ? flags : PARA_NODE_SERIAL,
                          .sink = fn};
    return para_graph_add(g, &d, out);
}

int para_graph_connect(para_graph_t *g, para_node_t *from, para_node_t *to)
{
    if (g == NULL)
        return PARA_EINVAL;
    if (from == NULL || to == NULL)
        return para__graph_fail(g, PARA_EINVAL, "connect: node is NULL");
    if (from->graph != g || to->graph != g)
        return para__graph_fail(g, PARA_EFOREIGN,
                                "connect '%s' -> '%s': '%s' belongs to "
                                "another graph",
                                from->name, to->name,
                                from->graph != g ? from->name : to->name);
    if (graph_running(g))
        return para__graph_fail(g, PARA_EBUSY,
                                "connect '%s' -> '%s': the graph is running",
                                from->name, to->name);
    if (from == to)
        return para__graph_fail(g, PARA_EINVAL,
                                "connect '%s' -> '%s': a node cannot feed "
                                "itself",
                                from->name, to->name);
    if (para__is_sink(from))
        return para__graph_fail(g, PARA_EINVAL,
                                "connect '%s' -> '%s': '%s' is a sink",
                                from->name, to->name, from->name);
    if (para__is_source(to))
        return para__graph_fail(g, PARA_EINVAL,
                                "connect '%s' -> '%s': '%s' is a source",
                                from->name, to->name, to->name);
    if (from->out_size != to->in_size)
        return para__graph_fail(g, PARA_ESIZE,
                                "connect '%s' -> '%s': '%s' emits %zu-byte "
                                "items, '%s' takes %zu-byte items",
                                from->name, to->name, from->name,
                                from->out_size, to->name, to->in_size);
    for (unsigned i = 0; i < from->n_succs; i++)
        if (from->succs[i] == to)
            return para__graph_fail(g, PARA_EINVAL,
                                    "connect '%s' -> '%s': edge exists",
                                    from->name, to->name);
    if (grow_array((void **)&from->succs, &from->cap_succs, from->n_succs + 1,
                   sizeof *from->succs) != 0 ||
        grow_array((void **)&to->preds, &to->cap_preds, to->n_preds + 1,
                   sizeof *to->preds) != 0)
        return para__graph_fail(g, PARA_ENOMEM,
                                "connect '%s' -> '%s': out of memory",
                                from->name, to->name);
    from->succs[from->n_succs++] = to;
    to->preds[to->n_preds++] = from;
    g->prepared = false;
    return 0;
}

int para_graph_validate(para_graph_t *g)
{
    if (g == NULL)
        return PARA_EINVAL;
    if (graph_running(g))
        return para__graph_fail(g, PARA_EBUSY, "the graph is running");
    return para__graph_prepare(g);
}

/* ---- preparation ------------------------------------------------------- */

#define NO_SOURCE UINT32_MAX
#define MANY_SOURCES (UINT32_MAX - 1)

static int alloc_derived(para_graph_t *g)
{
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        free_derived(n);
        n->succ_port = calloc(n->n_succs + 1, sizeof *n->succ_port);
        n->succ_order = calloc(n->n_succs + 1, sizeof *n->succ_order);
        n->in_path_offset = calloc(n->n_preds + 1, sizeof *n->in_path_offset);
        if (n->succ_port == NULL || n->succ_order == NULL ||
            n->in_path_offset == NULL)
            return para__graph_fail(g, PARA_ENOMEM,
                                    "out of memory preparing the graph");
    }
    return 0;
}

/* Kahn's algorithm; order[] receives the nodes. Returns 0 or PARA_ECYCLE. */
static int topo_sort(para_graph_t *g, para_node_t **order, unsigned *indeg)
{
    unsigned head = 0, tail = 0;
    for (unsigned i = 0; i < g->n_nodes; i++) {
        indeg[i] = g->nodes[i]->n_preds;
        if (indeg[i] == 0)
            order[tail++] = g->nodes[i];
    }
    while (head < tail) {
        para_node_t *n = order[head++];
        for (unsigned s = 0; s < n->n_succs; s++)
            if (--indeg[n->succs[s]->index] == 0)
                order[tail++] = n->succs[s];
    }
    if (tail == g->n_nodes)
        return 0;
    /* Leftover nodes are on a cycle or downstream of one. Every leftover
     * node has a leftover predecessor, so walking to one n times from any
     * leftover node must end on a cycle. */
    para_node_t *n = NULL;
    for (unsigned i = 0; i < g->n_nodes && n == NULL; i++)
        if (indeg[i] != 0)
            n = g->nodes[i];
    for (unsigned step = 0; step < g->n_nodes; step++)
        for (unsigned j = 0; j < n->n_preds; j++)
            if (indeg[n->preds[j]->index] != 0) {
                n = n->preds[j];
                break;
            }
    return para__graph_fail(g, PARA_ECYCLE, "node '%s' is on a cycle", n->name);
}

static int derive(para_graph_t *g, para_node_t **order, uint32_t *src_of,
                  size_t *widest)
{
    /* Forward pass: source identity, path counts and offsets. */
    for (unsigned k = 0; k < g->n_nodes; k++) {
        para_node_t *n = order[k];
        if (para__is_source(n)) {
            src_of[n->index] = n->index;
            n->path_count = 1;
            n->numbered = true;
            continue;
        }
        uint32_t src = NO_SOURCE;
        uint64_t paths = 0;
        n->numbered = true;
        for (unsigned j = 0; j < n->n_preds; j++) {
            para_node_t *p = n->preds[j];
            /* A map keeps its input's numbering item for item. */
            if (!p->numbered ||
                !(para__is_source(p) || p->kind == PARA__KIND_MAP ||
                  p->kind == PARA__KIND_MAP_BATCH ||
                  p->kind == PARA__KIND_KERNEL)) {
                if (n->numbered && n->kernel != NULL && n->kernel->wants_index)
                    return para__graph_fail(
                        g, PARA_EINVAL,
                        "kernel node '%s' takes the item index, but its "
                        "input '%s' is not numbered one by one (a filter "
                        "or flat-map at or before it drops or adds items)",
                        n->name, p->name);
                n->numbered = false;
            }
            uint32_t ps = src_of[p->index];
            src = src == NO_SOURCE ? ps : (src == ps ? src : MANY_SOURCES);
            n->in_path_offset[j] = (uint32_t)PARA_MIN(paths, UINT32_MAX);
            paths += p->path_count;
        }
        src_of[n->index] = src;
        n->path_count = (uint32_t)PARA_MIN(paths, UINT32_MAX);
        if ((n->flags & PARA_NODE_ORDERED) != 0) {
            if (src == MANY_SOURCES)
                return para__graph_fail(g, PARA_EORDER,
                                        "ordered node '%s' is fed by more "
                                        "than one source",
                                        n->name);
            if (paths >= UINT32_MAX)
                return para__graph_fail(g, PARA_EORDER,
                                        "ordered node '%s' is reached by "
                                        "too many paths",
                                        n->name);
        }
    }
    /* Backward pass: forward_empty and the widest item downstream. */
    for (unsigned k = g->n_nodes; k-- > 0;) {
        para_node_t *n = order[k];
        n->forward_empty = false;
        n->depth_to_sink = 0;
        n->down_min_batch = n->min_batch;
        n->down_batch_ns = n->batch_ns;
        widest[n->index] = PARA_MAX(n->in_size, n->out_size);
        for (unsigned s = 0; s < n->n_succs; s++) {
            para_node_t *succ = n->succs[s];
            n->depth_to_sink =
                PARA_MAX(n->depth_to_sink, succ->depth_to_sink + 1);
            if ((succ->flags & PARA_NODE_ORDERED) != 0 || succ->forward_empty)
                n->forward_empty = true;
            widest[n->index] = PARA_MAX(widest[n->index], widest[succ->index]);
            n->down_min_batch =
                PARA_MAX(n->down_min_batch, succ->down_min_batch);
            if (succ->down_batch_ns != 0 &&
                (n->down_batch_ns == 0 ||
                 succ->down_batch_ns < n->down_batch_ns))
                n->down_batch_ns = succ->down_batch_ns;
        }
        n->widest_item = PARA_MAX(1, widest[n->index]);
    }
    /* Ports and priority order of successors. */
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        for (unsigned s = 0; s < n->n_succs; s++) {
            para_node_t *succ = n->succs[s];
            for (unsigned j = 0; j < succ->n_preds; j++)
                if (succ->preds[j] == n)
                    n->succ_port[s] = j;
            /* Insertion sort by ascending priority (stable). */
            unsigned at = s;
            while (at > 0 &&
                   n->succs[n->succ_order[at - 1]]->priority > succ->priority) {
                n->succ_order[at] = n->succ_order[at - 1];
                at--;
            }
            n->succ_order[at] = s;
        }
    }
    return 0;
}

int para__graph_prepare(para_graph_t *g)
{
    para__errmsg_set(&g->errmsg, "%s", "");
    if (g->prepared)
        return 0;
    unsigned n_sources = 0;
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        if (para__is_source(n))
            n_sources++;
        else if (n->n_preds == 0)
            return para__graph_fail(g, PARA_EUNCONNECTED,
                                    "node '%s' has no input", n->name);
        if (!para__is_sink(n) && n->n_succs == 0)
            return para__graph_fail(g, PARA_EUNCONNECTED,
                                    "the output of node '%s' is not "
                                    "connected",
                                    n->name);
    }
    if (n_sources == 0)
        return para__graph_fail(g, PARA_ENOSOURCE,
                                g->n_nodes == 0 ? "the graph is empty"
                                                : "the graph has no source");

    int rc = alloc_derived(g);
    para_node_t **order = malloc(g->n_nodes * sizeof *order);
    unsigned *scratch = malloc(g->n_nodes * sizeof *scratch);
    size_t *widest = malloc(g->n_nodes * sizeof *widest);
    para_node_t **sources = malloc(n_sources * sizeof *sources);
    if (rc == 0 &&
        (order == NULL || scratch == NULL || widest == NULL || sources == NULL))
        rc = para__graph_fail(g, PARA_ENOMEM,
                              "out of memory preparing the graph");
    if (rc != 0)
        goto fail;
    rc = topo_sort(g, order, scratch);
    if (rc != 0)
        goto fail;
    rc = derive(g, order, scratch, widest);
    if (rc != 0)
        goto fail;
    rc = para__owned_check(g, order);
    if (rc != 0)
        goto fail;

    n_sources = 0;
    for (unsigned i = 0; i < g->n_nodes; i++)
        if (para__is_source(g->nodes[i]))
            sources[n_sources++] = g->nodes[i];
    free(g->sources);
    g->sources = sources;
    g->n_sources = n_sources;
    sources = NULL;
    free(g->topo);
    g->topo = order;
    order = NULL;
    g->learned_hint = 0; /* learned on other edges */
    g->prepared = true;
fail:
    free(sources);
    free(widest);
    free(scratch);
    free(order);
    return rc;
}

void para__graph_reset_run_state(para_graph_t *g)
{
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        /* relaxed: no worker runs this graph yet; the run is published to
         * the workers under the runtime mutex afterwards. */
        para__task_stack_init(&n->inbox);
        atomic_store_explicit(&n->claimed, 0, memory_order_relaxed);
        atomic_store_explicit(&n->src_state, 0, memory_order_relaxed);
        atomic_store_explicit(&n->src_cursor, 0, memory_order_relaxed);
        atomic_store_explicit(&n->st_items_in, 0, memory_order_relaxed);
        atomic_store_explicit(&n->st_items_out, 0, memory_order_relaxed);
        atomic_store_explicit(&n->st_batches, 0, memory_order_relaxed);
        atomic_store_explicit(&n->st_busy_ns, 0, memory_order_relaxed);
        atomic_store_explicit(&n->remote_busy_ns, 0, memory_order_relaxed);
        atomic_store_explicit(&n->st_device_items, 0, memory_order_relaxed);
        atomic_store_explicit(&n->st_device_launches, 0, memory_order_relaxed);
        atomic_store_explicit(&n->st_device_ns, 0, memory_order_relaxed);
        atomic_store_explicit(&n->st_device_bytes_in, 0, memory_order_relaxed);
        atomic_store_explicit(&n->st_device_bytes_out, 0, memory_order_relaxed);
        atomic_store_explicit(&n->st_device_handovers, 0, memory_order_relaxed);
        atomic_store_explicit(&n->cpu_ps_per_item, 0, memory_order_relaxed);
        atomic_store_explicit(&n->cpu_best_ps, 0, memory_order_relaxed);
        atomic_store_explicit(&n->owned_max, 0, memory_order_relaxed);
        n->placement = PARA__PLACE_CPU;
        n->pending_head = n->pending_tail = NULL;
        n->heap_root = NULL;
        n->next_seq = 0;
        n->next_path = 0;
        n->collect_pos = 0;
        n->src_seq = 0;
    }
}

int para__graph_stats_begin(para_graph_t *g, unsigned workers)
{
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        if (n->n_wst != workers) {
            free(n->wst);
            n->n_wst = 0;
            n->wst =
                aligned_alloc(PARA_CACHELINE, (size_t)workers * sizeof *n->wst);
            if (n->wst == NULL)
                return para__graph_fail(g, PARA_ENOMEM,
                                        "out of memory for the statistics "
                                        "of node '%s'",
                                        n->name);
            n->n_wst = workers;
        }
        /* relaxed: no worker runs this graph yet (as in
         * para__graph_reset_run_state()). */
        for (unsigned k = 0; k < workers; k++) {
            atomic_store_explicit(&n->wst[k].items_in, 0, memory_order_relaxed);
            atomic_store_explicit(&n->wst[k].items_out, 0,
                                  memory_order_relaxed);
            atomic_store_explicit(&n->wst[k].batches, 0, memory_order_relaxed);
            atomic_store_explicit(&n->wst[k].busy_ns, 0, memory_order_relaxed);
            atomic_store_explicit(&n->wst[k].inline_batches, 0,
                                  memory_order_relaxed);
            atomic_store_explicit(&n->wst[k].held_batches, 0,
                                  memory_order_relaxed);
        }
    }
    return 0;
}

void para__node_counts_get(const para_node_t *n, para__node_counts *c)
{
    para_node_t *m = (para_node_t *)n;
    /* relaxed: statistics; exact once the run's end synchronised them. */
    c->items_in = atomic_load_explicit(&m->st_items_in, memory_order_relaxed);
    c->items_out = atomic_load_explicit(&m->st_items_out, memory_order_relaxed);
    c->batches = atomic_load_explicit(&m->st_batches, memory_order_relaxed);
    c->busy_ns = atomic_load_explicit(&m->st_busy_ns, memory_order_relaxed);
    for (unsigned k = 0; k < m->n_wst; k++) {
        para__node_wstat *s = &m->wst[k];
        c->items_in += atomic_load_explicit(&s->items_in, memory_order_relaxed);
        c->items_out +=
            atomic_load_explicit(&s->items_out, memory_order_relaxed);
        c->batches += atomic_load_explicit(&s->batches, memory_order_relaxed);
        c->busy_ns += atomic_load_explicit(&s->busy_ns, memory_order_relaxed);
    }
}

int para__graph_add_kind(para_graph_t *g, const para_node_desc_t *d,
                         para__kind kind, para_node_t **out)
{
    int rc = check_common(g, d);
    return rc != 0 ? rc : node_new(g, d, kind, out);
}

void para__node_set_run_hooks(para_node_t *n,
                              int (*begin)(para_node_t *n, unsigned workers),
                              void (*end)(para_node_t *n, int status))
{
    n->run_begin = begin;
    n->run_end = end;
}

int para__graph_nodes_begin(para_graph_t *g, unsigned workers)
{
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        int rc = n->run_begin != NULL ? n->run_begin(n, workers) : 0;
        if (rc != 0) {
            while (i-- > 0)
                if (g->nodes[i]->run_end != NULL)
                    g->nodes[i]->run_end(g->nodes[i], rc);
            return para__graph_fail(g, rc, "node '%s': %s starting the run",
                                    n->name, para_strerror(rc));
        }
    }
    return 0;
}

void para__graph_nodes_end(para_graph_t *g, int status)
{
    for (unsigned i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->run_end != NULL)
            g->nodes[i]->run_end(g->nodes[i], status);
}

void para__node_set_ctx_free(para_node_t *n, void (*fn)(void *ctx))
{
    n->ctx_free = fn;
}

int para__graph_open_sources(para_graph_t *g)
{
    for (unsigned i = 0; i < g->n_sources; i++) {
        para_node_t *s = g->sources[i];
        if (s->kind != PARA__KIND_SOURCE_FN)
            continue;
        if (s->src_open == NULL && s->src_runs > 0)
            return para__graph_fail(
                g, PARA_EINVAL,
                "source '%s' already ran and has no open hook to rewind it "
                "(para_node_desc_t.open): a callback source without one runs "
                "once per graph",
                s->name);
    }
    for (unsigned i = 0; i < g->n_sources; i++) {
        para_node_t *s = g->sources[i];
        if (s->kind != PARA__KIND_SOURCE_FN || s->src_open == NULL)
            continue;
        int rc = s->src_open(s->ctx);
        if (rc != 0)
            return para__graph_fail(
                g, PARA_ENODE, "source '%s': open hook returned %d (%s)",
                s->name, rc, rc < 0 ? para_err_name(rc) : "user error code");
    }
    for (unsigned i = 0; i < g->n_sources; i++)
        g->sources[i]->src_runs++;
    return 0;
}

int para_node_stats(const para_node_t *n, para_node_stats_t *st)
{
    if (n == NULL || st == NULL)
        return PARA_EINVAL;
    para_node_t *m = (para_node_t *)n;
    /* relaxed: statistics are read after the run, which the caller observed
     * ending through para_run()'s synchronisation. */
    para__node_counts c;
    para__node_counts_get(m, &c);
    st->items_in = c.items_in;
    st->items_out = c.items_out;
    st->batches = c.batches;
    st->busy_ns = c.busy_ns;
    st->device_items =
        atomic_load_explicit(&m->st_device_items, memory_order_relaxed);
    st->device_launches =
        atomic_load_explicit(&m->st_device_launches, memory_order_relaxed);
    st->device_ns =
        atomic_load_explicit(&m->st_device_ns, memory_order_relaxed);
    st->device_bytes_in =
        atomic_load_explicit(&m->st_device_bytes_in, memory_order_relaxed);
    st->device_bytes_out =
        atomic_load_explicit(&m->st_device_bytes_out, memory_order_relaxed);
    st->device_handovers =
        atomic_load_explicit(&m->st_device_handovers, memory_order_relaxed);
    return 0;
}
