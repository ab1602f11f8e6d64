/*
 * Tests for runtime/stats.c and runtime/progress.c: the statistics of a run
 * add up (items in = items out per map node, sinks saw every item, worker
 * tasks = node batches, worker busy time = node busy time), last-run figures
 * are per run, the table and the JSON (read back with para-trace's JSON
 * reader) carry the same numbers, device statistics are empty without
 * devices, and the progress line appears when asked and only then.
 *
 * CI also runs this file under ThreadSanitizer.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "para.h"
#include "trace_json.h"

#define N 50000u

static void quiet_log(int level, const char *msg, void *arg)
{
    (void)level;
    (void)msg;
    (void)arg;
}

static int group_setup(void **state)
{
    (void)state;
    para_set_log_fn(quiet_log, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    para_set_log_fn(NULL, NULL);
    return 0;
}

static para_runtime_t *make_rt(unsigned workers, size_t batch,
                               const char *progress)
{
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = workers;
    a.batch_items = batch;
    a.progress = progress;
    a.trace = NULL;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    return rt;
}

static int inc(void *ctx, const void *in, void *out)
{
    (void)ctx;
    *(uint64_t *)out = *(const uint64_t *)in + 1;
    return 0;
}

static int even(void *ctx, const void *in)
{
    (void)ctx;
    return (*(const uint64_t *)in & 1) == 0;
}

static int twice(void *ctx, const void *in, para_emitter_t *out)
{
    (void)ctx;
    int rc = para_emit(out, in);
    return rc != 0 ? rc : para_emit(out, in);
}

static int add(void *ctx, const void *in)
{
    *(uint64_t *)ctx += *(const uint64_t *)in;
    return 0;
}

static int count_parallel(void *ctx, const void *in, size_t n)
{
    (void)in;
    /* relaxed: a counter read after the run. */
    atomic_fetch_add_explicit((_Atomic uint64_t *)ctx, n, memory_order_relaxed);
    return 0;
}

enum { SRC, INC, EVEN, TWICE, SUM, COUNT, N_NODES };
static const char *const names[N_NODES] = {"src",   "inc", "even",
                                           "twice", "sum", "count"};

typedef struct mixed {
    para_graph_t *g;
    para_node_t *n[N_NODES];
    uint64_t sum;
    _Atomic uint64_t count;
} mixed;

/* src -> inc -> {even -> twice -> sum (serial), count (parallel)} */
static void mixed_graph(mixed *m)
{
    memset(m, 0, sizeof *m);
    atomic_init(&m->count, 0);
    assert_int_equal(para_graph_create(&m->g), 0);
    para_graph_t *g = m->g;
    assert_int_equal(para_graph_add_range(g, names[SRC], 0, N, &m->n[SRC]), 0);
    assert_int_equal(
        para_graph_add_map(g, names[INC], 8, 8, inc, NULL, 0, &m->n[INC]), 0);
    assert_int_equal(
        para_graph_add_filter(g, names[EVEN], 8, even, NULL, 0, &m->n[EVEN]),
        0);
    para_node_desc_t d = {
        .name = names[TWICE], .in_size = 8, .out_size = 8, .flat_map = twice};
    assert_int_equal(para_graph_add(g, &d, &m->n[TWICE]), 0);
    assert_int_equal(para_graph_add_sink(g, names[SUM], 8, add, &m->sum,
                                         PARA_NODE_SERIAL, &m->n[SUM]),
                     0);
    assert_int_equal(para_graph_add_sink_batch(g, names[COUNT], 8,
                                               count_parallel, &m->count, 0,
                                               &m->n[COUNT]),
                     0);
    assert_int_equal(para_graph_connect(g, m->n[SRC], m->n[INC]), 0);
    assert_int_equal(para_graph_connect(g, m->n[INC], m->n[EVEN]), 0);
    assert_int_equal(para_graph_connect(g, m->n[EVEN], m->n[TWICE]), 0);
    assert_int_equal(para_graph_connect(g, m->n[TWICE], m->n[SUM]), 0);
    assert_int_equal(para_graph_connect(g, m->n[INC], m->n[COUNT]), 0);
}

/* Checks that hold after every run of the mixed graph. */
static void check_mixed(para_runtime_t *rt, mixed *m)
{
    para_node_stats_t s[N_NODES];
    for (int i = 0; i < N_NODES; i++)
        assert_int_equal(para_node_stats(m->n[i], &s[i]), 0);
    assert_int_equal(s[SRC].items_out, N);
    assert_int_equal(s[INC].items_in, N); /* a map: in = out */
    assert_int_equal(s[INC].items_out, N);
    assert_int_equal(s[EVEN].items_in, N);
    assert_int_equal(s[EVEN].items_out, N / 2);
    assert_int_equal(s[TWICE].items_in, N / 2);
    assert_int_equal(s[TWICE].items_out, N);
    assert_int_equal(s[SUM].items_in, N); /* sinks saw every item */
    assert_int_equal(s[COUNT].items_in, N);
    assert_int_equal(s[SUM].items_out, 0);
    /* inc 1..N; even keeps 2, 4, ..., N; twice doubles. */
    assert_int_equal(m->sum, 2 * (uint64_t)(N / 2) * (N / 2 + 1));
    /* relaxed: read after the run. */
    assert_int_equal(atomic_load_explicit(&m->count, memory_order_relaxed), N);
    /* Every task ran one node on one batch; every edge carried them all. */
    assert_int_equal(s[INC].batches, s[SRC].batches);
    assert_int_equal(s[EVEN].batches, s[INC].batches);
    assert_int_equal(s[COUNT].batches, s[INC].batches);

    para_stats_t st;
    assert_int_equal(para_runtime_stats(rt, &st), 0);
    assert_int_equal(st.version, PARA_STATS_VERSION);
    assert_true(st.peak_bytes >= 8); /* at least one batch of one item */
    uint64_t tasks = 0, pulls = 0, busy = 0, node_busy = 0;
    for (unsigned w = 0; w < para_runtime_workers(rt); w++) {
        para_worker_stats_t ws;
        assert_int_equal(para_worker_stats(rt, w, &ws), 0);
        tasks += ws.tasks;
        pulls += ws.source_batches;
        busy += ws.busy_ns;
        assert_true(ws.busy_ns <= st.run_ns);
        assert_int_equal(ws.idle_ns, st.run_ns - ws.busy_ns);
        assert_true(ws.parked_ns <= ws.idle_ns);
        assert_true(ws.steals <= ws.steal_attempts);
    }
    uint64_t batches = 0;
    for (int i = INC; i < N_NODES; i++) {
        batches += s[i].batches;
        node_busy += s[i].busy_ns;
    }
    assert_int_equal(tasks, batches);
    assert_int_equal(pulls, s[SRC].batches);
    assert_int_equal(busy, node_busy); /* the same durations, summed twice */
}

static void test_stats_add_up(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2, 0, "off");
    mixed m;
    mixed_graph(&m);
    assert_int_equal(para_run(rt, m.g), 0);
    check_mixed(rt, &m);
    /* A second run with forced small batches: last-run figures are of that
     * run alone, cumulative counters grow. */
    para_stats_t st1;
    assert_int_equal(para_runtime_stats(rt, &st1), 0);
    m.sum = 0;
    atomic_store_explicit(&m.count, 0, memory_order_relaxed);
    assert_int_equal(para_run(rt, m.g), 0);
    check_mixed(rt, &m);
    para_stats_t st2;
    assert_int_equal(para_runtime_stats(rt, &st2), 0);
    assert_true(st2.tasks > st1.tasks);
    assert_int_equal(st2.runs, 2);
    para_graph_destroy(m.g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static char *print_to_string(para_runtime_t *rt, para_graph_t *g, int format,
                             size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    assert_non_null(f);
    assert_int_equal(para_stats_fprint(f, rt, g, format), 0);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void test_stats_print_formats(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2, 0, "off");
    mixed m;
    mixed_graph(&m);
    assert_int_equal(para_run(rt, m.g), 0);

    size_t len;
    char *table = print_to_string(rt, m.g, PARA_STATS_TABLE, &len);
    assert_non_null(strstr(table, "worker"));
    assert_non_null(strstr(table, "mean batch"));
    for (int i = 0; i < N_NODES; i++)
        assert_non_null(strstr(table, names[i]));
    /* No devices, no device table (the runtime counters do name device_*
     * fields; the table's header line starts with "device"). */
    assert_null(strstr(table, "\ndevice "));
    free(table);

    char *json = print_to_string(rt, m.g, PARA_STATS_JSON, &len);
    char err[200];
    para__json *root = para__json_parse(json, len, err, sizeof err);
    if (root == NULL)
        fail_msg("stats JSON: %s\n%s", err, json);
    free(json);
    const para__json *runtime = para__json_get(root, "runtime");
    assert_true(para__json_number(para__json_get(runtime, "workers"), 0) == 2);
    assert_string_equal(
        para__json_string(para__json_get(runtime, "policy"), ""), "memaware");
    para_stats_t st;
    assert_int_equal(para_runtime_stats(rt, &st), 0);
    assert_true(para__json_number(para__json_get(runtime, "tasks"), 0) ==
                (double)st.tasks);
    assert_true(para__json_number(para__json_get(runtime, "peak_bytes"), 0) ==
                (double)st.peak_bytes);
    const para__json *workers = para__json_get(root, "workers");
    assert_int_equal(workers->len, 2);
    double tasks = 0;
    for (size_t i = 0; i < workers->len; i++)
        tasks +=
            para__json_number(para__json_get(workers->items[i], "tasks"), 0);
    assert_true(tasks == (double)st.tasks);
    const para__json *nodes = para__json_get(root, "nodes");
    assert_int_equal(nodes->len, N_NODES);
    for (int i = 0; i < N_NODES; i++) {
        const para__json *n = nodes->items[i];
        para_node_stats_t ns;
        assert_int_equal(para_node_stats(m.n[i], &ns), 0);
        assert_string_equal(para__json_string(para__json_get(n, "name"), ""),
                            names[i]);
        assert_true(para__json_number(para__json_get(n, "items_in"), -1) ==
                    (double)ns.items_in);
        assert_true(para__json_number(para__json_get(n, "items_out"), -1) ==
                    (double)ns.items_out);
        assert_true(para__json_number(para__json_get(n, "batches"), -1) ==
                    (double)ns.batches);
        double share = para__json_number(para__json_get(n, "share"), -1);
        assert_true(share >= 0 && share <= 1.0);
    }
    assert_string_equal(
        para__json_string(para__json_get(nodes->items[TWICE], "kind"), ""),
        "flat_map");
    assert_int_equal(para__json_get(root, "devices")->len, 0);
    para__json_free(root);

    /* Without a graph: no nodes. Bad arguments. */
    json = print_to_string(rt, NULL, PARA_STATS_JSON, &len);
    root = para__json_parse(json, len, err, sizeof err);
    assert_non_null(root);
    assert_int_equal(para__json_get(root, "nodes")->len, 0);
    para__json_free(root);
    free(json);
    assert_int_equal(para_stats_fprint(stdout, rt, m.g, 7), PARA_EINVAL);
    assert_int_equal(para_stats_fprint(NULL, rt, m.g, 0), PARA_EINVAL);
    assert_int_equal(para_stats_fprint(stdout, NULL, m.g, 0), PARA_EINVAL);

    para_worker_stats_t ws;
    assert_int_equal(para_worker_stats(rt, 2, &ws), PARA_EINVAL);
    assert_int_equal(para_worker_stats(rt, 0, NULL), PARA_EINVAL);
    para_device_stats_t ds;
    assert_int_equal(para_runtime_device_count(rt), 0);
    assert_int_equal(para_device_stats(rt, 0, &ds), PARA_ENODEV);
    assert_int_equal(para_device_stats(NULL, 0, &ds), PARA_EINVAL);

    para_graph_destroy(m.g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* ---- progress -------------------------------------------------------------
 */

static int slow(void *ctx, const void *in, void *out)
{
    (void)ctx;
    struct timespec nap = {.tv_sec = 0, .tv_nsec = 8 * 1000 * 1000};
    nanosleep(&nap, NULL);
    *(uint64_t *)out = *(const uint64_t *)in;
    return 0;
}

/* Run a ~0.8 s graph with stderr redirected to a file; return what it got. */
static char *run_capturing_stderr(const char *progress)
{
    para_runtime_t *rt = make_rt(2, 1, progress);
    para_graph_t *g = NULL;
    para_node_t *src, *m, *k;
    uint64_t sum = 0;
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_range(g, "src", 0, 200, &src), 0);
    assert_int_equal(para_graph_add_map(g, "slow", 8, 8, slow, NULL, 0, &m), 0);
    assert_int_equal(
        para_graph_add_sink(g, "sum", 8, add, &sum, PARA_NODE_SERIAL, &k), 0);
    assert_int_equal(para_graph_connect(g, src, m), 0);
    assert_int_equal(para_graph_connect(g, m, k), 0);

    FILE *cap = tmpfile();
    assert_non_null(cap);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(cap), STDERR_FILENO) >= 0);
    int rc = para_run(rt, g);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    assert_int_equal(rc, 0);
    assert_int_equal(sum, 199 * 200 / 2);

    long len = ftell(cap);
    assert_true(len >= 0);
    rewind(cap);
    char *text = calloc(1, (size_t)len + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)len, cap), (size_t)len);
    fclose(cap);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
    return text;
}

static void test_progress_line(void **state)
{
    (void)state;
    char *on = run_capturing_stderr("on");
    assert_non_null(strstr(on, "through the sinks"));
    assert_non_null(strstr(on, "in flight"));
    assert_non_null(strstr(on, "on average")); /* the final line */
    assert_null(strchr(on, '\r'));             /* not a terminal */
    free(on);
    char *off = run_capturing_stderr("off");
    assert_string_equal(off, "");
    free(off);
    /* auto: stderr is a file here, so nothing. */
    char *aut = run_capturing_stderr("auto");
    assert_string_equal(aut, "");
    free(aut);

    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.progress = "sometimes";
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), PARA_EINVAL);
    assert_null(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_add_up),
        cmocka_unit_test(test_stats_print_formats),
        cmocka_unit_test(test_progress_line),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
