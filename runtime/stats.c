/*
 * Statistics: per-worker and per-device counters (each written by its owner
 * thread only, summed or differenced here), per-node counters (graph.c), and
 * their printing as a table or as JSON.
 *
 * Worker and device counters are cumulative. para_run() copies them into
 * base_* before the workers start (para__stats_run_begin), so "last run"
 * figures are the difference, with no reset racing an owner.
 *
 * Tests: tests/runtime/test_run.c (counters, table), test_stats.c (last-run
 * figures add up; table and JSON).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device_node.h"
#include "graph.h"
#include "stats.h"

int para_runtime_stats(const para_runtime_t *rt, para_stats_t *st)
{
    if (rt == NULL || st == NULL)
        return PARA_EINVAL;
    memset(st, 0, sizeof *st);
    st->size = sizeof *st;
    st->version = PARA_STATS_VERSION;
    for (unsigned i = 0; i < rt->n_workers; i++) {
        para__worker *w = &rt->workers[i];
        /* relaxed: owner-written counters; an untorn value is enough. */
#define PARA_STATS_SUM(name, doc)                                              \
    st->name += atomic_load_explicit(&w->c_##name, memory_order_relaxed);
        PARA_STATS_MAP(PARA_STATS_SUM)
#undef PARA_STATS_SUM
    }
    st->runs = rt->runs;
    st->run_ns = rt->last_run_ns;
    st->peak_batches = rt->last_peak_batches;
    st->peak_bytes = rt->last_peak_bytes;
    st->mem_budget = rt->last_budget;
    st->source_hold_ns = rt->last_hold_ns;
    st->policy_decisions = rt->last_decisions;
    para__device_stats(rt, st);
    return 0;
}

void para__stats_run_begin(para_runtime_t *rt)
{
    /* relaxed: between runs no owner writes; the last run's writes were
     * ordered before us by the workers' exit under rt->lock. */
    for (unsigned i = 0; i < rt->n_workers; i++) {
        para__worker *w = &rt->workers[i];
#define PARA__BASE_SET(name, doc)                                              \
    w->base_##name = atomic_load_explicit(&w->c_##name, memory_order_relaxed);
        PARA_STATS_MAP(PARA__BASE_SET)
#undef PARA__BASE_SET
    }
    pthread_mutex_lock(&rt->lock);
    unsigned n = rt->n_devices;
    pthread_mutex_unlock(&rt->lock);
    for (unsigned i = 0; i < n; i++) {
        para__device_counters *d = &rt->devices[i];
#define PARA__DEV_BASE_SET(name, doc)                                          \
    d->base_##name = atomic_load_explicit(&d->c_##name, memory_order_relaxed);
        PARA_DEVICE_STATS_MAP(PARA__DEV_BASE_SET)
#undef PARA__DEV_BASE_SET
    }
}

int para_worker_stats(const para_runtime_t *rt, unsigned worker,
                      para_worker_stats_t *st)
{
    if (rt == NULL || st == NULL || worker >= rt->n_workers)
        return PARA_EINVAL;
    const para__worker *w = &rt->workers[worker];
    /* relaxed: read after the run (see para_runtime_stats()). */
#define LAST(name)                                                             \
    (atomic_load_explicit(&((para__worker *)w)->c_##name,                      \
                          memory_order_relaxed) -                              \
     w->base_##name)
    st->tasks = LAST(tasks);
    st->steals = LAST(steals);
    st->steal_attempts = LAST(steal_attempts);
    st->parks = LAST(parks);
    st->source_batches = LAST(source_batches);
    st->busy_ns = LAST(busy_ns);
    st->parked_ns = LAST(parked_ns);
#undef LAST
    st->idle_ns =
        rt->last_run_ns > st->busy_ns ? rt->last_run_ns - st->busy_ns : 0;
    return 0;
}

unsigned para_runtime_device_count(const para_runtime_t *rt)
{
    if (rt == NULL)
        return 0;
    para_runtime_t *m = (para_runtime_t *)rt;
    pthread_mutex_lock(&m->lock);
    unsigned n = m->n_devices;
    pthread_mutex_unlock(&m->lock);
    return n;
}

int para_device_stats(const para_runtime_t *rt, unsigned device,
                      para_device_stats_t *st)
{
    if (rt == NULL || st == NULL)
        return PARA_EINVAL;
    if (device >= para_runtime_device_count(rt))
        return PARA_ENODEV;
    para__device_counters *d = &((para_runtime_t *)rt)->devices[device];
    memset(st, 0, sizeof *st);
    snprintf(st->name, sizeof st->name, "%s", d->name);
    /* relaxed: owner-written counters read after the run. */
#define PARA__DEV_LAST(name, doc)                                              \
    st->name = atomic_load_explicit(&d->c_##name, memory_order_relaxed) -      \
               d->base_##name;
    PARA_DEVICE_STATS_MAP(PARA__DEV_LAST)
#undef PARA__DEV_LAST
    return 0;
}

/* ---- printing ------------------------------------------------------------ */

typedef void (*line_fn)(const char *line, void *arg);

static void emit_line(line_fn out_fn, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void emit_line(line_fn out_fn, void *arg, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n < sizeof line) {
        out_fn(line, arg);
        return;
    }
    /* Long lines (JSON with long node names) are never truncated. */
    char *big = malloc((size_t)n + 1);
    if (big == NULL) {
        out_fn(line, arg);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    out_fn(big, arg);
    free(big);
}

/* @p s as a JSON string literal (quotes included), malloc'd; NULL when out
 * of memory. */
static char *json_quote(const char *s)
{
    size_t n = strlen(s);
    char *q = malloc(n * 6 + 3);
    if (q == NULL)
        return NULL;
    char *p = q;
    *p++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            *p++ = '\\';
            *p++ = (char)*c;
        } else if (*c < 0x20) {
            p += sprintf(p, "\\u%04x", *c);
        } else {
            *p++ = (char)*c;
        }
    }
    *p++ = '"';
    *p = '\0';
    return q;
}

static double mean_batch(const para_node_stats_t *ns)
{
    uint64_t items = ns->items_in ? ns->items_in : ns->items_out;
    return ns->batches ? (double)items / (double)ns->batches : 0.0;
}

static double node_share(const para_runtime_t *rt, const para_node_stats_t *ns)
{
    double cap = (double)rt->last_run_ns * (double)rt->n_workers;
    return cap > 0 ? (double)ns->busy_ns / cap : 0.0;
}

static void print_table(const para_runtime_t *rt, const para_graph_t *g,
                        line_fn out_fn, void *arg)
{
    para_stats_t st;
    if (para_runtime_stats(rt, &st) != 0)
        return;
    emit_line(out_fn, arg, "runtime: %u workers, policy %s\n", rt->n_workers,
              rt->policy);
#define PARA_STATS_LINE(name, doc)                                             \
    emit_line(out_fn, arg, "  %-18s %14" PRIu64 "  %s\n", #name, st.name, doc);
    PARA_STATS_MAP(PARA_STATS_LINE)
#undef PARA_STATS_LINE
    double run_ms = (double)rt->last_run_ns / 1e6;
    emit_line(out_fn, arg, "%-8s %9s %8s %9s %7s %10s %10s %10s %6s\n",
              "worker", "tasks", "steals", "attempts", "parks", "busy ms",
              "idle ms", "parked ms", "busy");
    for (unsigned i = 0; i < rt->n_workers; i++) {
        para_worker_stats_t ws;
        if (para_worker_stats(rt, i, &ws) != 0)
            continue;
        emit_line(out_fn, arg,
                  "%-8u %9" PRIu64 " %8" PRIu64 " %9" PRIu64 " %7" PRIu64
                  " %10.2f %10.2f %10.2f %5.1f%%\n",
                  i, ws.tasks, ws.steals, ws.steal_attempts, ws.parks,
                  (double)ws.busy_ns / 1e6, (double)ws.idle_ns / 1e6,
                  (double)ws.parked_ns / 1e6,
                  run_ms > 0 ? 100.0 * (double)ws.busy_ns / 1e6 / run_ms : 0.0);
    }
    if (g != NULL) {
        emit_line(out_fn, arg, "%-20s %12s %12s %9s %10s %9s %7s\n", "node",
                  "items in", "items out", "batches", "mean batch", "busy ms",
                  "share");
        for (unsigned i = 0; i < g->n_nodes; i++) {
            para_node_stats_t ns;
            if (para_node_stats(g->nodes[i], &ns) != 0)
                continue;
            emit_line(out_fn, arg,
                      "%-20.20s %12" PRIu64 " %12" PRIu64 " %9" PRIu64
                      " %10.1f %9.2f %6.1f%%\n",
                      g->nodes[i]->name, ns.items_in, ns.items_out, ns.batches,
                      mean_batch(&ns), (double)ns.busy_ns / 1e6,
                      100.0 * node_share(rt, &ns));
        }
    }
    unsigned nd = para_runtime_device_count(rt);
    if (nd == 0)
        return;
    emit_line(out_fn, arg, "%-20s %9s %12s %10s %12s %12s %9s %9s %9s\n",
              "device", "launches", "items", "per launch", "bytes in",
              "bytes out", "busy ms", "handovers", "pool hits");
    for (unsigned i = 0; i < nd; i++) {
        para_device_stats_t ds;
        if (para_device_stats(rt, i, &ds) != 0)
            continue;
        emit_line(out_fn, arg,
                  "%-20.20s %9" PRIu64 " %12" PRIu64 " %10.1f %12" PRIu64
                  " %12" PRIu64 " %9.2f %9" PRIu64 " %9" PRIu64 "\n",
                  ds.name, ds.launches, ds.items,
                  ds.launches ? (double)ds.items / (double)ds.launches : 0.0,
                  ds.bytes_in, ds.bytes_out, (double)ds.busy_ns / 1e6,
                  ds.handovers, ds.pool_hits);
    }
}

static void print_json(const para_runtime_t *rt, const para_graph_t *g,
                       line_fn out_fn, void *arg)
{
    para_stats_t st;
    if (para_runtime_stats(rt, &st) != 0)
        return;
    char *policy = json_quote(rt->policy);
    emit_line(out_fn, arg, "{\"runtime\":{\"workers\":%u,\"policy\":%s\n",
              rt->n_workers, policy != NULL ? policy : "\"\"");
    free(policy);
#define PARA_STATS_JSON(name, doc)                                             \
    emit_line(out_fn, arg, ",\"%s\":%" PRIu64 "\n", #name, st.name);
    PARA_STATS_MAP(PARA_STATS_JSON)
#undef PARA_STATS_JSON
    emit_line(out_fn, arg, "},\n\"workers\":[\n");
    for (unsigned i = 0; i < rt->n_workers; i++) {
        para_worker_stats_t ws;
        if (para_worker_stats(rt, i, &ws) != 0)
            continue;
        emit_line(out_fn, arg,
                  "%s{\"id\":%u,\"tasks\":%" PRIu64 ",\"steals\":%" PRIu64
                  ",\"steal_attempts\":%" PRIu64 ",\"parks\":%" PRIu64
                  ",\"source_batches\":%" PRIu64 ",\"busy_ns\":%" PRIu64
                  ",\"parked_ns\":%" PRIu64 ",\"idle_ns\":%" PRIu64 "}\n",
                  i ? "," : "", i, ws.tasks, ws.steals, ws.steal_attempts,
                  ws.parks, ws.source_batches, ws.busy_ns, ws.parked_ns,
                  ws.idle_ns);
    }
    emit_line(out_fn, arg, "],\n\"nodes\":[\n");
    for (unsigned i = 0; g != NULL && i < g->n_nodes; i++) {
        para_node_stats_t ns;
        if (para_node_stats(g->nodes[i], &ns) != 0)
            continue;
        char *name = json_quote(g->nodes[i]->name);
        emit_line(
            out_fn, arg,
            "%s{\"index\":%u,\"name\":%s,\"kind\":\"%s\",\"items_in\":%" PRIu64
            ",\"items_out\":%" PRIu64 ",\"batches\":%" PRIu64
            ",\"mean_batch\":%.3f,\"busy_ns\":%" PRIu64 ",\"share\":%.6f}\n",
            i ? "," : "", i, name != NULL ? name : "\"\"",
            para__node_kind_name(g->nodes[i]), ns.items_in, ns.items_out,
            ns.batches, mean_batch(&ns), ns.busy_ns, node_share(rt, &ns));
        free(name);
    }
    emit_line(out_fn, arg, "],\n\"devices\":[\n");
    unsigned nd = para_runtime_device_count(rt);
    for (unsigned i = 0; i < nd; i++) {
        para_device_stats_t ds;
        if (para_device_stats(rt, i, &ds) != 0)
            continue;
        char *name = json_quote(ds.name);
        emit_line(out_fn, arg, "%s{\"id\":%u,\"name\":%s", i ? "," : "", i,
                  name != NULL ? name : "\"\"");
        free(name);
#define PARA_DEVICE_JSON(name, doc)                                            \
    emit_line(out_fn, arg, ",\"%s\":%" PRIu64, #name, ds.name);
        PARA_DEVICE_STATS_MAP(PARA_DEVICE_JSON)
#undef PARA_DEVICE_JSON
        emit_line(out_fn, arg, ",\"items_per_launch\":%.3f}\n",
                  ds.launches ? (double)ds.items / (double)ds.launches : 0.0);
    }
    emit_line(out_fn, arg, "]}\n");
}

static void put_file(const char *line, void *arg)
{
    fputs(line, (FILE *)arg);
}

int para_stats_fprint(FILE *out, const para_runtime_t *rt,
                      const para_graph_t *g, int format)
{
    if (out == NULL || rt == NULL)
        return PARA_EINVAL;
    if (format == PARA_STATS_TABLE)
        print_table(rt, g, put_file, out);
    else if (format == PARA_STATS_JSON)
        print_json(rt, g, put_file, out);
    else
        return PARA_EINVAL;
    return 0;
}
