/*
 * Tests for runtime/trace.c (the event trace) and tools/ (its JSON reader and
 * the SVG timeline of para-trace).
 *
 * A known run is traced and its file read back with para-trace's own JSON
 * reader: the file is valid JSON, has one lane per worker, every task has
 * its start and end (spans on one worker never overlap), items per node add
 * up to the known count, and event counts equal the runtime's statistics
 * (batches per node, steals, parks). A fused fan-out shows a "fused" span
 * per branch and source batch, side by side, each holding its stage's
 * span. A full lane drops and reports; a device
 * lane (the API a device host thread uses) gets its launches, overlapping
 * ones on separate slots. The SVG drawn from a trace is well-formed XML
 * (checked by a small checker below) with one lane per worker and device.
 * A trace merged over MPI ranks (a process per rank, the same tids in
 * each) reads as a lane per process and worker, named after the process.
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
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "para.h"
#include "timeline.h"
#include "trace_json.h"

#define N 20000u

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

/* ---- helpers ------------------------------------------------------------ */

typedef struct tmp_path {
    char path[64];
} tmp_path;

static tmp_path tmp_file(const char *suffix)
{
    tmp_path t;
    snprintf(t.path, sizeof t.path, "/tmp/para_test_trace_XXXXXX");
    int fd = mkstemp(t.path);
    assert_true(fd >= 0);
    close(fd);
    unlink(t.path);
    strcat(t.path, suffix);
    return t;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(f);
    buf[n < cap ? n : cap - 1] = '\0';
    *len = n;
    return buf;
}

static para__json *parse_file(const char *path)
{
    size_t len;
    char *text = read_all(path, &len);
    char err[200];
    para__json *root = para__json_parse(text, len, err, sizeof err);
    if (root == NULL)
        fail_msg("%s: %s", path, err);
    free(text);
    return root;
}

static para_runtime_t *make_rt(unsigned workers, const char *trace,
                               size_t events, size_t batch)
{
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = workers;
    a.trace = trace;
    a.batch_items = batch;
    if (events != 0)
        a.trace_events = events;
    a.progress = "off";
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    return rt;
}

static int dbl(void *ctx, const void *in, void *out)
{
    (void)ctx;
    *(uint64_t *)out = 2 * *(const uint64_t *)in;
    return 0;
}

static int add(void *ctx, const void *in)
{
    *(uint64_t *)ctx += *(const uint64_t *)in;
    return 0;
}

/* range "src" -> map "dbl" -> serial sink "sum" */
static para_graph_t *small_graph(uint64_t *sum, para_node_t **nodes)
{
    para_graph_t *g = NULL;
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_range(g, "src", 0, N, &nodes[0]), 0);
    assert_int_equal(
        para_graph_add_map(g, "dbl", 8, 8, dbl, NULL, 0, &nodes[1]), 0);
    assert_int_equal(
        para_graph_add_sink(g, "sum", 8, add, sum, PARA_NODE_SERIAL, &nodes[2]),
        0);
    assert_int_equal(para_graph_connect(g, nodes[0], nodes[1]), 0);
    assert_int_equal(para_graph_connect(g, nodes[1], nodes[2]), 0);
    return g;
}

/* ---- a small well-formedness checker for XML ---------------------------- */

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == ':' ||
           c == '.';
}

/* Entity references must be one of XML's five or a character reference. */
static bool check_text(const char *s, const char *end)
{
    for (; s < end; s++) {
        if (*s == '<')
            return false;
        if (*s != '&')
            continue;
        const char *semi = memchr(s, ';', (size_t)(end - s));
        if (semi == NULL)
            return false;
        size_t n = (size_t)(semi - s - 1);
        const char *e = s + 1;
        bool ok = (n == 3 && strncmp(e, "amp", 3) == 0) ||
                  (n == 2 && strncmp(e, "lt", 2) == 0) ||
                  (n == 2 && strncmp(e, "gt", 2) == 0) ||
                  (n == 4 && strncmp(e, "quot", 4) == 0) ||
                  (n == 4 && strncmp(e, "apos", 4) == 0) ||
                  (n >= 2 && e[0] == '#');
        if (!ok)
            return false;
        s = semi;
    }
    return true;
}

/* Returns the number of elements, or -1 (with the offset in *bad) if the
 * document is not well-formed: tags balanced and properly nested, attribute
 * values quoted, no stray '<' or '&', exactly one root element. */
static long xml_check(const char *doc, size_t len, size_t *bad)
{
    const char *s = doc, *end = doc + len;
    char stack[64][48];
    int depth = 0, roots = 0;
    long elements = 0;
#define BAD()                                                                  \
    do {                                                                       \
        *bad = (size_t)(s - doc);                                              \
        return -1;                                                             \
    } while (0)
    while (s < end) {
        const char *lt = memchr(s, '<', (size_t)(end - s));
        const char *text_end = lt != NULL ? lt : end;
        if (!check_text(s, text_end))
            BAD();
        if (depth == 0)
            for (const char *c = s; c < text_end; c++)
                if (*c != ' ' && *c != '\n' && *c != '\t' && *c != '\r')
                    BAD(); /* text outside the root */
        if (lt == NULL)
            break;
        s = lt;
        if (strncmp(s, "<?", 2) == 0) {
            const char *q = strstr(s, "?>");
            if (q == NULL || elements > 0)
                BAD();
            s = q + 2;
            continue;
        }
        if (strncmp(s, "<!--", 4) == 0) {
            const char *q = strstr(s, "-->");
            if (q == NULL)
                BAD();
            s = q + 3;
            continue;
        }
        bool closing = s[1] == '/';
        const char *p = s + (closing ? 2 : 1);
        const char *name = p;
        while (p < end && name_char(*p))
            p++;
        size_t nlen = (size_t)(p - name);
        if (nlen == 0 || nlen >= sizeof stack[0])
            BAD();
        if (closing) {
            while (p < end && *p == ' ')
                p++;
            if (p >= end || *p != '>' || depth == 0 ||
                strlen(stack[depth - 1]) != nlen ||
                strncmp(stack[depth - 1], name, nlen) != 0)
                BAD();
            depth--;
            s = p + 1;
            continue;
        }
        /* Attributes: name="value" or name='value', separated by space. */
        for (;;) {
            const char *ws = p;
            while (p < end && (*p == ' ' || *p == '\n' || *p == '\t'))
                p++;
            if (p >= end)
                BAD();
            if (*p == '>' || (*p == '/' && p + 1 < end && p[1] == '>'))
                break;
            if (p == ws)
                BAD(); /* attributes need whitespace before them */
            const char *an = p;
            while (p < end && name_char(*p))
                p++;
            if (p == an || p >= end || *p != '=')
                BAD();
            p++;
            char quote = *p;
            if (quote != '"' && quote != '\'')
                BAD();
            const char *v = ++p;
            const char *ve = memchr(v, quote, (size_t)(end - v));
            if (ve == NULL || !check_text(v, ve))
                BAD();
            p = ve + 1;
        }
        elements++;
        if (depth == 0 && ++roots > 1)
            BAD();
        if (*p == '/') { /* empty element */
            s = p + 2;
            continue;
        }
        if (depth == (int)(sizeof stack / sizeof stack[0]))
            BAD();
        memcpy(stack[depth], name, nlen);
        stack[depth][nlen] = '\0';
        depth++;
        s = p + 1;
    }
#undef BAD
    if (depth != 0 || roots != 1) {
        *bad = len;
        return -1;
    }
    return elements;
}

static size_t count_str(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* Draw @p trace_path and check the SVG; returns it (caller frees). */
static char *svg_of(const char *trace_path, size_t cpu_lanes,
                    size_t device_lanes)
{
    para__timeline *tl = NULL;
    char err[256];
    if (para__timeline_load(trace_path, &tl, err, sizeof err) != 0)
        fail_msg("timeline: %s", err);
    char *svg = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&svg, &len);
    assert_non_null(f);
    assert_int_equal(para__timeline_svg(tl, f, NULL), 0);
    assert_int_equal(fclose(f), 0);
    para__timeline_free(tl);
    size_t bad = 0;
    long elements = xml_check(svg, len, &bad);
    if (elements < 0)
        fail_msg("SVG not well-formed at byte %zu: %.60s", bad, svg + bad);
    assert_int_equal(count_str(svg, "<g class=\"lane cpu\""), cpu_lanes);
    assert_int_equal(count_str(svg, "<g class=\"lane device\""), device_lanes);
    assert_non_null(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    return svg;
}

/* ---- the XML checker and the JSON reader themselves --------------------- */

static void test_xml_checker(void **state)
{
    (void)state;
    static const char *good[] = {
        "<a/>",
        "<?xml version=\"1.0\"?>\n<a x=\"1\" y='2'><b>t &amp; &#233;</b></a>",
        "<a><!-- c --><b/><c></c></a>\n",
    };
    static const char *bad[] = {
        "<a>",      "<a></b>",      "<a><b></a></b>",
        "<a x=1/>", "<a>x < y</a>", "<a>&nbsp;</a>",
        "<a/><b/>", "text<a/>",     "<a x=\"1\"y=\"2\"/>",
    };
    size_t off;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(xml_check(good[i], strlen(good[i]), &off) > 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (xml_check(bad[i], strlen(bad[i]), &off) >= 0)
            fail_msg("accepted: %s", bad[i]);
}

static void test_json_reader(void **state)
{
    (void)state;
    const char *doc =
        " {\"a\": [1, -2.5e3, 0, true, false, null],"
        " \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\","
        " \"o\": {\"\": {}}, \"e\": []} ";
    char err[128];
    para__json *v = para__json_parse(doc, strlen(doc), err, sizeof err);
    assert_non_null(v);
    const para__json *a = para__json_get(v, "a");
    assert_int_equal(a->type, PARA__JSON_ARRAY);
    assert_int_equal(a->len, 6);
    assert_true(a->items[1]->number == -2500.0);
    assert_int_equal(a->items[3]->type, PARA__JSON_BOOL);
    assert_true(a->items[3]->number == 1);
    assert_int_equal(a->items[5]->type, PARA__JSON_NULL);
    assert_string_equal(para__json_string(para__json_get(v, "s"), ""),
                        "q\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
    assert_non_null(para__json_get(para__json_get(v, "o"), ""));
    assert_int_equal(para__json_get(v, "e")->len, 0);
    assert_null(para__json_get(v, "missing"));
    para__json_free(v);

    static const char *bad[] = {
        "",          "[1,]",      "{\"a\":1,}",  "01",       "1.",
        ".5",        "+1",        "\"abc",       "\"a\tb\"", "[1] x",
        "{a:1}",     "\"\\x\"",   "\"\\ud800\"", "tru",      "[1 2]",
        "{\"a\" 1}", "\"\\u12\"", "-",           "1e",       "nul",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = para__json_parse(bad[i], strlen(bad[i]), err, sizeof err);
        if (v != NULL)
            fail_msg("accepted: %s", bad[i]);
        assert_true(strlen(err) > 0);
    }
    /* Deep nesting is refused, not a stack overflow. */
    char deep[4001];
    memset(deep, '[', 4000);
    deep[4000] = '\0';
    assert_null(para__json_parse(deep, 4000, err, sizeof err));
    assert_non_null(strstr(err, "deep"));
}

/* ---- a known run ----------------------------------------------------------
 */

typedef struct lane_info {
    double tid;
    double index;
    double events; /* from the metadata */
    size_t seen;   /* events with this tid */
} lane_info;

static void test_timeline_processes(void **state)
{
    (void)state;
    const char *doc =
        "{\"traceEvents\":["
        "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,"
        "\"args\":{\"name\":\"para rank 0\"}},"
        "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":2,\"tid\":0,"
        "\"args\":{\"name\":\"para rank 1\"}},"
        "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":2,\"tid\":10,"
        "\"args\":{\"name\":\"para-cpu-0\",\"lane\":\"cpu\",\"index\":0}},"
        "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":10,"
        "\"args\":{\"name\":\"para-cpu-0\",\"lane\":\"cpu\",\"index\":0}},"
        "{\"name\":\"a\",\"cat\":\"task\",\"ph\":\"X\",\"pid\":1,\"tid\":10,"
        "\"ts\":1,\"dur\":2,\"args\":{\"node\":0,\"items\":3}},"
        "{\"name\":\"a\",\"cat\":\"task\",\"ph\":\"X\",\"pid\":2,\"tid\":10,"
        "\"ts\":2,\"dur\":2,\"args\":{\"node\":0,\"items\":4}},"
        "{\"name\":\"a\",\"cat\":\"task\",\"ph\":\"X\",\"pid\":2,\"tid\":10,"
        "\"ts\":5,\"dur\":1,\"args\":{\"node\":0,\"items\":5}}],"
        "\"para\":{\"ranks\":2,\"run_ns\":7000,\"nodes\":[{\"index\":0,"
        "\"name\":\"a\",\"kind\":\"map\"}]}}";
    char err[128];
    para__json *root = para__json_parse(doc, strlen(doc), err, sizeof err);
    assert_non_null(root);
    para__timeline *tl = NULL;
    if (para__timeline_from_json(root, &tl, err, sizeof err) != 0)
        fail_msg("timeline: %s", err);
    assert_int_equal(tl->n_lanes, 2);
    assert_string_equal(tl->lanes[0].name, "para rank 0: para-cpu-0");
    assert_string_equal(tl->lanes[1].name, "para rank 1: para-cpu-0");
    assert_int_equal(tl->lanes[0].n_spans, 1);
    assert_int_equal(tl->lanes[1].n_spans, 2);
    assert_int_equal(tl->lanes[1].spans[1].items, 5);
    para__timeline_free(tl);
    para__json_free(root);
}

static void test_trace_known_run(void **state)
{
    (void)state;
    tmp_path path = tmp_file(".json");
    para_runtime_t *rt = make_rt(2, path.path, 0, 0);
    uint64_t sum = 0;
    para_node_t *nodes[3];
    para_graph_t *g = small_graph(&sum, nodes);
    assert_int_equal(para_run(rt, g), 0);
    assert_int_equal(sum, (uint64_t)N * (N - 1));

    para__json *root = parse_file(path.path);
    const para__json *para = para__json_get(root, "para");
    assert_true(para__json_number(para__json_get(para, "workers"), 0) == 2);
    assert_true(para__json_number(para__json_get(para, "dropped"), -1) == 0);
    double run_us =
        para__json_number(para__json_get(para, "run_ns"), 0) / 1000.0;
    assert_true(run_us > 0);
    const para__json *jn = para__json_get(para, "nodes");
    assert_int_equal(jn->len, 3);
    static const char *names[] = {"src", "dbl", "sum"};
    for (unsigned i = 0; i < 3; i++)
        assert_string_equal(
            para__json_string(para__json_get(jn->items[i], "name"), ""),
            names[i]);

    const para__json *ev = para__json_get(root, "traceEvents");
    assert_non_null(ev);
    assert_int_equal(ev->type, PARA__JSON_ARRAY);

    /* One lane per worker. */
    lane_info lanes[8];
    size_t n_lanes = 0;
    for (size_t i = 0; i < ev->len; i++) {
        const para__json *e = ev->items[i];
        if (strcmp(para__json_string(para__json_get(e, "name"), ""),
                   "thread_name") != 0)
            continue;
        const para__json *args = para__json_get(e, "args");
        assert_string_equal(para__json_string(para__json_get(args, "lane"), ""),
                            "cpu");
        assert_true(n_lanes < 8);
        lanes[n_lanes++] = (lane_info){
            para__json_number(para__json_get(e, "tid"), -1),
            para__json_number(para__json_get(args, "index"), -1),
            para__json_number(para__json_get(args, "events"), -1), 0};
    }
    assert_int_equal(n_lanes, 2);
    assert_true(lanes[0].tid != lanes[1].tid);
    assert_true(lanes[0].index + lanes[1].index == 1); /* workers 0 and 1 */

    /* Every event: on a lane, inside the run; items add up per node. */
    uint64_t items[3] = {0}, out[3] = {0}, spans[3] = {0};
    uint64_t steals = 0, parks = 0, fused = 0, fused_items = 0;
    double last_end[8] = {0}, fused_end[8] = {0};
    for (size_t i = 0; i < ev->len; i++) {
        const para__json *e = ev->items[i];
        const char *ph = para__json_string(para__json_get(e, "ph"), "");
        const char *cat = para__json_string(para__json_get(e, "cat"), "");
        if (strcmp(ph, "M") == 0)
            continue;
        double tid = para__json_number(para__json_get(e, "tid"), -1);
        double ts = para__json_number(para__json_get(e, "ts"), -1);
        if (strcmp(para__json_string(para__json_get(e, "name"), ""),
                   "trace_end") == 0)
            continue;
        size_t l = 0;
        while (l < n_lanes && lanes[l].tid != tid)
            l++;
        assert_true(l < n_lanes);
        lanes[l].seen++;
        assert_true(ts >= 0 && ts <= run_us);
        const para__json *args = para__json_get(e, "args");
        if (strcmp(ph, "i") == 0) {
            assert_string_equal(cat, "steal");
            double victim =
                para__json_number(para__json_get(args, "victim"), -1);
            assert_true(victim >= 0 && victim < 2 && victim != lanes[l].index);
            steals++;
            continue;
        }
        assert_string_equal(ph, "X");
        /* A task's start and end are one event: it has both. */
        const para__json *durv = para__json_get(e, "dur");
        assert_non_null(durv);
        double dur = durv->number;
        assert_true(dur >= 0 && ts + dur <= run_us + 0.001);
        /* Spans of one worker are sequential (events are in order), but a
         * fused task's span (fuse.h) holds its stages' spans. */
        assert_true(ts + 0.0005 >= last_end[l]);
        if (strcmp(cat, "fused") == 0) {
            /* The range fuses into its consumer: the chain dbl..dbl. */
            assert_string_equal(
                para__json_string(para__json_get(e, "name"), ""),
                "fused dbl..dbl");
            assert_true(para__json_number(para__json_get(args, "stages"), 0) ==
                        1);
            fused_items +=
                (uint64_t)para__json_number(para__json_get(args, "items"), 0);
            fused++;
            fused_end[l] = ts + dur;
            last_end[l] = ts;
            continue;
        }
        if (ts < fused_end[l])
            assert_true(ts + dur <= fused_end[l] + 0.001);
        last_end[l] = ts + dur;
        if (strcmp(cat, "park") == 0) {
            parks++;
            continue;
        }
        double node = para__json_number(para__json_get(args, "node"), -1);
        assert_true(node >= 0 && node < 3);
        unsigned k = (unsigned)node;
        assert_string_equal(para__json_string(para__json_get(e, "name"), ""),
                            names[k]);
        assert_string_equal(cat, k == 0 ? "source" : "task");
        items[k] +=
            (uint64_t)para__json_number(para__json_get(args, "items"), 0);
        out[k] += (uint64_t)para__json_number(para__json_get(args, "out"), 0);
        spans[k]++;
    }
    assert_int_equal(items[0], N);     /* pulled from the source */
    assert_int_equal(items[1], N);     /* into the map */
    assert_int_equal(out[1], N);       /* out of the map */
    assert_int_equal(items[2], N);     /* into the sink */
    assert_int_equal(fused, spans[1]); /* every dbl task was fused */
    assert_int_equal(fused_items, N);
    for (size_t l = 0; l < n_lanes; l++)
        assert_true(lanes[l].events == (double)lanes[l].seen);

    /* The trace agrees with the statistics. */
    for (unsigned k = 0; k < 3; k++) {
        para_node_stats_t ns;
        assert_int_equal(para_node_stats(nodes[k], &ns), 0);
        assert_int_equal(spans[k], ns.batches);
    }
    uint64_t ws_steals = 0, ws_parks = 0;
    for (unsigned w = 0; w < 2; w++) {
        para_worker_stats_t ws;
        assert_int_equal(para_worker_stats(rt, w, &ws), 0);
        ws_steals += ws.steals;
        ws_parks += ws.parks;
    }
    assert_int_equal(steals, ws_steals);
    assert_int_equal(parks, ws_parks);
    para__json_free(root);

    char *svg = svg_of(path.path, 2, 0);
    assert_non_null(strstr(svg, "dbl"));
    assert_non_null(strstr(svg, "sum"));
    free(svg);

    /* A second run overwrites the file with that run alone. */
    sum = 0;
    assert_int_equal(para_run(rt, g), 0);
    root = parse_file(path.path);
    para = para__json_get(root, "para");
    assert_true(para__json_number(para__json_get(para, "run"), 0) == 2);
    para__json_free(root);

    /* para_trace_write() writes the same elsewhere. */
    tmp_path other = tmp_file(".json");
    assert_int_equal(para_trace_write(rt, other.path), 0);
    root = parse_file(other.path);
    para__json_free(root);
    assert_true(para_trace_write(rt, "/nonexistent-dir/x.json") < 0);
    assert_int_equal(para_trace_write(rt, NULL), PARA_EINVAL);
    unlink(other.path);

    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
    unlink(path.path);
}

/* ---- full lanes ------------------------------------------------------------
 */

/* A fused fan-out (fuse.h): src feeds the chains dbl and neg, both into
 * the serial sink. Every source batch is one task with a "fused" span per
 * branch, side by side, each holding its stage's task span; spans of a
 * lane never overlap otherwise, and the spans agree with the statistics. */
static int neg_map(void *ctx, const void *in, void *out)
{
    (void)ctx;
    *(uint64_t *)out = 0 - *(const uint64_t *)in;
    return 0;
}

static void test_trace_fan_out(void **state)
{
    (void)state;
    tmp_path path = tmp_file(".json");
    para_runtime_t *rt = make_rt(2, path.path, 0, 0);
    para_graph_t *g = NULL;
    para_node_t *src, *d, *ng, *sum;
    uint64_t total = 0;
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_range(g, "src", 0, N, &src), 0);
    assert_int_equal(para_graph_add_map(g, "dbl", 8, 8, dbl, NULL, 0, &d), 0);
    assert_int_equal(para_graph_add_map(g, "neg", 8, 8, neg_map, NULL, 0, &ng),
                     0);
    assert_int_equal(
        para_graph_add_sink(g, "sum", 8, add, &total, PARA_NODE_SERIAL, &sum),
        0);
    assert_int_equal(para_graph_connect(g, src, d), 0);
    assert_int_equal(para_graph_connect(g, src, ng), 0);
    assert_int_equal(para_graph_connect(g, d, sum), 0);
    assert_int_equal(para_graph_connect(g, ng, sum), 0);
    assert_int_equal(para_run(rt, g), 0);
    assert_int_equal(total, (uint64_t)N * (N - 1) / 2); /* 2x - x, wrapped */

    para__json *root = parse_file(path.path);
    const para__json *ev = para__json_get(root, "traceEvents");
    assert_non_null(ev);
    uint64_t fused[2] = {0}, tasks[2] = {0}, items[2] = {0};
    double last_end[16] = {0}, fused_end[16] = {0}, tids[16];
    size_t n_tids = 0;
    for (size_t i = 0; i < ev->len; i++) {
        const para__json *e = ev->items[i];
        const char *ph = para__json_string(para__json_get(e, "ph"), "");
        const char *cat = para__json_string(para__json_get(e, "cat"), "");
        const char *name = para__json_string(para__json_get(e, "name"), "");
        if (strcmp(ph, "X") != 0)
            continue;
        double tid = para__json_number(para__json_get(e, "tid"), -1);
        size_t l = 0;
        while (l < n_tids && tids[l] != tid)
            l++;
        if (l == n_tids) {
            assert_true(n_tids < 16);
            tids[n_tids++] = tid;
        }
        double ts = para__json_number(para__json_get(e, "ts"), -1);
        double dur = para__json_number(para__json_get(e, "dur"), -1);
        const para__json *args = para__json_get(e, "args");
        /* Sequential per lane, a fused span holding what follows it. */
        assert_true(ts + 0.0005 >= last_end[l]);
        if (strcmp(cat, "fused") == 0) {
            int k = strcmp(name, "fused dbl..dbl") == 0   ? 0
                    : strcmp(name, "fused neg..neg") == 0 ? 1
                                                          : -1;
            if (k < 0)
                fail_msg("unexpected fused span '%s'", name);
            fused[k]++;
            items[k] +=
                (uint64_t)para__json_number(para__json_get(args, "items"), 0);
            fused_end[l] = ts + dur;
            last_end[l] = ts;
            continue;
        }
        if (ts < fused_end[l])
            assert_true(ts + dur <= fused_end[l] + 0.001);
        last_end[l] = ts + dur;
        if (strcmp(cat, "task") == 0) {
            if (strcmp(name, "dbl") == 0)
                tasks[0]++;
            else if (strcmp(name, "neg") == 0)
                tasks[1]++;
        }
    }
    para_node_stats_t sd, sn, ss;
    assert_int_equal(para_node_stats(d, &sd), 0);
    assert_int_equal(para_node_stats(ng, &sn), 0);
    assert_int_equal(para_node_stats(src, &ss), 0);
    assert_true(src->fuse_fan);
    assert_true(ss.batches > 0);
    /* One fused span and one task span per branch and source batch. */
    assert_int_equal(fused[0], ss.batches);
    assert_int_equal(fused[1], ss.batches);
    assert_int_equal(tasks[0], sd.batches);
    assert_int_equal(tasks[1], sn.batches);
    assert_int_equal(sd.batches, ss.batches);
    assert_int_equal(items[0], N);
    assert_int_equal(items[1], N);
    para__json_free(root);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
    remove(path.path);
}

static void test_trace_full_lane(void **state)
{
    (void)state;
    tmp_path path = tmp_file(".json");
    para_runtime_t *rt = make_rt(2, path.path, 8, 16);
    uint64_t sum = 0;
    para_node_t *nodes[3];
    para_graph_t *g = small_graph(&sum, nodes);
    assert_int_equal(para_run(rt, g), 0);
    assert_int_equal(sum, (uint64_t)N * (N - 1));
    para__json *root = parse_file(path.path);
    const para__json *para = para__json_get(root, "para");
    double dropped = para__json_number(para__json_get(para, "dropped"), 0);
    /* N / 16 batches, 3 events each at least, 16 kept. */
    assert_true(dropped >= 3.0 * N / 16 - 16);
    const para__json *ev = para__json_get(root, "traceEvents");
    double lane_dropped = 0;
    for (size_t i = 0; i < ev->len; i++) {
        const para__json *args = para__json_get(ev->items[i], "args");
        if (para__json_get(args, "lane") == NULL)
            continue;
        assert_true(para__json_number(para__json_get(args, "events"), 99) <= 8);
        lane_dropped += para__json_number(para__json_get(args, "dropped"), 0);
    }
    assert_true(lane_dropped == dropped);
    para__json_free(root);
    char *svg = svg_of(path.path, 2, 0);
    assert_non_null(strstr(svg, "dropped"));
    free(svg);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
    unlink(path.path);
}

/* ---- a device lane, used as a device host thread would --------------------
 */

typedef struct fake_device {
    para__trace_lane *lane;
    para__device_counters *counters;
    unsigned node;
    uint64_t sum;
} fake_device;

/* A serial sink stands in for the device host thread: calls are ordered by
 * happens-before, so the lane has one writer at a time, as the contract
 * requires. Each batch is two overlapping launches: all items, then none. */
static int fake_launch(void *ctx, const void *in, size_t n)
{
    fake_device *d = ctx;
    uint64_t a = para__trace_device_launch(d->lane);
    uint64_t b = para__trace_device_launch(d->lane);
    for (size_t i = 0; i < n; i++)
        d->sum += ((const uint64_t *)in)[i];
    para__trace_device_complete(d->lane, a, d->node, n, n * 8);
    para__trace_device_complete(d->lane, b, d->node, 0, 0);
    para__counter_add(&d->counters->c_launches, 2);
    para__counter_add(&d->counters->c_items, n);
    para__counter_add(&d->counters->c_bytes_in, n * 8);
    return 0;
}

static void test_trace_device_lane(void **state)
{
    (void)state;
    tmp_path path = tmp_file(".json");
    para_runtime_t *rt = make_rt(2, path.path, 0, 100);
    fake_device dev = {0};
    dev.lane =
        para__trace_lane_add(rt->trace, PARA__LANE_DEVICE, 0, "para-cl-0");
    assert_non_null(dev.lane);
    dev.counters = para__stats_device_add(rt, "fake device");
    assert_non_null(dev.counters);
    assert_int_equal(para_runtime_device_count(rt), 1);

    para_graph_t *g = NULL;
    para_node_t *src, *sink;
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_range(g, "src", 0, N, &src), 0);
    assert_int_equal(para_graph_add_sink_batch(g, "kernel", 8, fake_launch,
                                               &dev, PARA_NODE_SERIAL, &sink),
                     0);
    assert_int_equal(para_graph_connect(g, src, sink), 0);
    dev.node = 1;
    assert_int_equal(para_run(rt, g), 0);
    assert_int_equal(dev.sum, (uint64_t)N * (N - 1) / 2);

    para_device_stats_t ds;
    assert_int_equal(para_device_stats(rt, 0, &ds), 0);
    assert_string_equal(ds.name, "fake device");
    assert_int_equal(ds.launches, 2 * (N / 100));
    assert_int_equal(ds.items, N);
    assert_int_equal(ds.bytes_in, 8 * N);
    assert_int_equal(para_device_stats(rt, 1, &ds), PARA_ENODEV);

    para__json *root = parse_file(path.path);
    const para__json *ev = para__json_get(root, "traceEvents");
    double device_tids[4];
    size_t n_device = 0, launches = 0;
    uint64_t items = 0, bytes = 0;
    for (size_t i = 0; i < ev->len; i++) {
        const para__json *e = ev->items[i];
        const para__json *args = para__json_get(e, "args");
        if (strcmp(para__json_string(para__json_get(args, "lane"), ""),
                   "device") == 0) {
            assert_true(n_device < 4);
            device_tids[n_device++] =
                para__json_number(para__json_get(e, "tid"), -1);
        }
    }
    /* Overlapping launches: a second slot. */
    assert_int_equal(n_device, 2);
    for (size_t i = 0; i < ev->len; i++) {
        const para__json *e = ev->items[i];
        if (strcmp(para__json_string(para__json_get(e, "cat"), ""), "device") !=
            0)
            continue;
        double tid = para__json_number(para__json_get(e, "tid"), -1);
        assert_true(tid == device_tids[0] || tid == device_tids[1]);
        const para__json *args = para__json_get(e, "args");
        assert_string_equal(para__json_string(para__json_get(e, "name"), ""),
                            "kernel");
        assert_true(para__json_number(para__json_get(args, "device"), -1) == 0);
        items += (uint64_t)para__json_number(para__json_get(args, "items"), 0);
        bytes += (uint64_t)para__json_number(para__json_get(args, "bytes"), 0);
        launches++;
    }
    assert_int_equal(launches, 2 * (N / 100));
    assert_int_equal(items, N);
    assert_int_equal(bytes, 8 * N);
    para__json_free(root);

    char *svg = svg_of(path.path, 2, 1);
    free(svg);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
    unlink(path.path);
}

/* ---- several devices: one lane each ---------------------------------------
 */

static int triple_plus_one(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    const uint64_t *x = in;
    uint64_t *y = out;
    for (size_t i = 0; i < n; i++)
        y[i] = 3 * x[i] + 1;
    return 0;
}

static int sum_sink(void *ctx, const void *in, size_t n)
{
    uint64_t *sum = ctx;
    const uint64_t *y = in;
    for (size_t i = 0; i < n; i++)
        *sum += y[i];
    return 0;
}

/* Two simulated devices run a device-only node: the trace has launches
 * of both, each device on its own lane(s), and the statistics count each
 * device apart. */
static void test_trace_several_devices(void **state)
{
    (void)state;
    tmp_path path = tmp_file(".json");
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = 2;
    a.trace = path.path;
    a.batch_items = 1000;
    a.progress = "off";
    a.device = "sim:20:5M,sim:20:5M";
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);

    static const para_kernel_desc_t kd = {.source = "unused by sim",
                                          .entry = "k"};
    para_node_desc_t nd = {.name = "k",
                           .flags = PARA_NODE_DEVICE_ONLY,
                           .in_size = 8,
                           .out_size = 8,
                           .map_batch = triple_plus_one,
                           .kernel = &kd};
    para_graph_t *g = NULL;
    para_node_t *src, *k, *sink;
    uint64_t sum = 0;
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_range(g, "src", 0, N, &src), 0);
    assert_int_equal(para_graph_add(g, &nd, &k), 0);
    assert_int_equal(para_graph_add_sink_batch(g, "sum", 8, sum_sink, &sum,
                                               PARA_NODE_SERIAL, &sink),
                     0);
    assert_int_equal(para_graph_connect(g, src, k), 0);
    assert_int_equal(para_graph_connect(g, k, sink), 0);
    assert_int_equal(para_run(rt, g), 0);
    assert_int_equal(sum, 3 * ((uint64_t)N * (N - 1) / 2) + N);

    assert_int_equal(para_runtime_device_count(rt), 2);
    uint64_t items[2] = {0, 0};
    for (unsigned i = 0; i < 2; i++) {
        para_device_stats_t ds;
        assert_int_equal(para_device_stats(rt, i, &ds), 0);
        assert_string_equal(ds.name, "sim:20:5M");
        assert_true(ds.items > 0);
    }

    para__json *root = parse_file(path.path);
    const para__json *ev = para__json_get(root, "traceEvents");
    for (size_t i = 0; i < ev->len; i++) {
        const para__json *e = ev->items[i];
        if (strcmp(para__json_string(para__json_get(e, "cat"), ""), "device") !=
            0)
            continue;
        const para__json *args = para__json_get(e, "args");
        double dev = para__json_number(para__json_get(args, "device"), -1);
        assert_true(dev == 0 || dev == 1);
        items[(int)dev] +=
            (uint64_t)para__json_number(para__json_get(args, "items"), 0);
    }
    for (unsigned i = 0; i < 2; i++) {
        para_device_stats_t ds;
        assert_int_equal(para_device_stats(rt, i, &ds), 0);
        assert_int_equal(items[i], ds.items);
    }
    assert_int_equal(items[0] + items[1], N);
    para__json_free(root);
    char *svg = svg_of(path.path, 2, 2);
    free(svg);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
    unlink(path.path);
}

/* ---- off by default; names that need escaping -----------------------------
 */

static void test_trace_off(void **state)
{
    (void)state;
    unsetenv("PARA_TRACE");
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    assert_true(a.trace == NULL || *a.trace == '\0');
    a.workers = 2;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    assert_null(rt->trace);
    for (unsigned i = 0; i < 2; i++)
        assert_null(rt->workers[i].trace);
    assert_null(para__trace_lane_add(rt->trace, PARA__LANE_DEVICE, 0, "x"));
    uint64_t sum = 0;
    para_node_t *nodes[3];
    para_graph_t *g = small_graph(&sum, nodes);
    assert_int_equal(para_run(rt, g), 0);
    assert_int_equal(para_trace_write(rt, "/tmp/never.json"), PARA_EINVAL);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);

    /* PARA_TRACE and PARA_TRACE_EVENTS through the options table. */
    setenv("PARA_TRACE", "/tmp/from-env.json", 1);
    setenv("PARA_TRACE_EVENTS", "4K", 1);
    assert_int_equal(para_runtime_attr_init(&a), 0);
    assert_string_equal(a.trace, "/tmp/from-env.json");
    assert_int_equal(a.trace_events, 4096);
    unsetenv("PARA_TRACE");
    unsetenv("PARA_TRACE_EVENTS");
}

static void test_trace_escaped_names(void **state)
{
    (void)state;
    tmp_path path = tmp_file(".json");
    para_runtime_t *rt = make_rt(2, path.path, 0, 0);
    static const char weird[] = "we\"ird\\ <&> \x01 name";
    para_graph_t *g = NULL;
    para_node_t *src, *m, *k;
    uint64_t sum = 0;
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_range(g, "src", 0, 1000, &src), 0);
    assert_int_equal(para_graph_add_map(g, weird, 8, 8, dbl, NULL, 0, &m), 0);
    assert_int_equal(
        para_graph_add_sink(g, "sum", 8, add, &sum, PARA_NODE_SERIAL, &k), 0);
    assert_int_equal(para_graph_connect(g, src, m), 0);
    assert_int_equal(para_graph_connect(g, m, k), 0);
    assert_int_equal(para_run(rt, g), 0);
    para__json *root = parse_file(path.path);
    const para__json *nodes =
        para__json_get(para__json_get(root, "para"), "nodes");
    assert_string_equal(
        para__json_string(para__json_get(nodes->items[1], "name"), ""), weird);
    para__json_free(root);
    char *svg = svg_of(path.path, 2, 0);
    assert_non_null(strstr(svg, "we&quot;ird\\ &lt;&amp;&gt;"));
    free(svg);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
    unlink(path.path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xml_checker),
        cmocka_unit_test(test_json_reader),
        cmocka_unit_test(test_timeline_processes),
        cmocka_unit_test(test_trace_known_run),
        cmocka_unit_test(test_trace_fan_out),
        cmocka_unit_test(test_trace_full_lane),
        cmocka_unit_test(test_trace_device_lane),
        cmocka_unit_test(test_trace_several_devices),
        cmocka_unit_test(test_trace_off),
        cmocka_unit_test(test_trace_escaped_names),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
