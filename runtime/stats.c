/*
 * Statistics: per-worker counters (owner-written, summed here) and the
 * per-node table printed by para_stats_print().
 *
 * Tests: tests/runtime/test_run.c.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

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

static void emit_line(void (*out_fn)(const char *, void *), void *arg,
                      const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void emit_line(void (*out_fn)(const char *, void *), void *arg,
                      const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    out_fn(line, arg);
}

void para_stats_print(const para_runtime_t *rt, const para_graph_t *g,
                      void (*out_fn)(const char *line, void *arg), void *arg)
{
    if (rt == NULL || out_fn == NULL)
        return;
    para_stats_t st;
    if (para_runtime_stats(rt, &st) != 0)
        return;
    emit_line(out_fn, arg, "runtime: %u workers, policy %s\n", rt->n_workers,
              rt->policy);
#define PARA_STATS_LINE(name, doc)                                             \
    emit_line(out_fn, arg, "  %-18s %14" PRIu64 "  %s\n", #name, st.name, doc);
    PARA_STATS_MAP(PARA_STATS_LINE)
#undef PARA_STATS_LINE
    if (g == NULL)
        return;
    double run_ns = st.run_ns ? (double)st.run_ns : 1.0;
    emit_line(out_fn, arg, "%-20s %12s %12s %9s %10s %9s %7s\n", "node",
              "items in", "items out", "batches", "mean batch", "busy ms",
              "share");
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_stats_t ns;
        if (para_node_stats(g->nodes[i], &ns) != 0)
            continue;
        uint64_t items = ns.items_in ? ns.items_in : ns.items_out;
        emit_line(out_fn, arg,
                  "%-20.20s %12" PRIu64 " %12" PRIu64 " %9" PRIu64
                  " %10.1f %9.2f %6.1f%%\n",
                  g->nodes[i]->name, ns.items_in, ns.items_out, ns.batches,
                  ns.batches ? (double)items / (double)ns.batches : 0.0,
                  (double)ns.busy_ns / 1e6,
                  100.0 * (double)ns.busy_ns /
                      (run_ns * (double)rt->n_workers));
    }
}
