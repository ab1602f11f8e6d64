/*
 * w9, text lines: a generated web-server log (examples/loggen.h: xorshift64
 * seeded with 42, 40-450 bytes a line), one item per line.
 *
 *   seq   one loop: read a block, split lines, parse, filter, aggregate.
 *   para  records source (one para_slice_t per line, no copy) -> parallel
 *         parse, item by item (PARA_MAP_ITEMS) -> filter (status >= 500 or
 *         latency > 1000 ms) -> reduce (count per status, 64-bin latency
 *         histogram, per-worker partials merged at the end).
 *
 * Both do the same parse, filter and aggregate per line (loggen.h). They
 * read the file each the way its user would: seq with fread() into one
 * 1 MiB buffer, para through the records source, which splits the file by
 * byte ranges over the workers and maps it rather than copying it (the
 * copy is about 15% of seq's time). The para side pays what seq does not:
 * three stages instead of one loop (a batch of slices, then of parsed
 * records, a keep mask per tile from the filter), the owned-item
 * bookkeeping and the merge of the partials. The parse and the filter are
 * written item by item and inlined into their batch functions
 * (PARA_MAP_ITEMS, PARA_FILTER_ITEMS), as a user after speed would.
 *
 * The text is written once to a temporary file before timing; the timed
 * runs read it from the page cache. Check: para's aggregate is identical to
 * seq's (counts, histogram, and a checksum of the parsed paths).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "loggen.h"

#define W9_BYTES ((uint64_t)200 << 20)
#define W9_QUICK ((uint64_t)10 << 20)

struct w9_state {
    char path[64];
    uint64_t lines;
    log_stats expect, got;
};

static int w9_seq(void *state, bench_row_t *row)
{
    struct w9_state *st = state;
    if (loggen_seq_file(st->path, &st->expect) != 0) {
        bench_fail(row, "seq: cannot read %s", st->path);
        return 1;
    }
    return 0;
}

static inline int w9_parse(void *ctx, const para_slice_t *in, log_rec *out)
{
    (void)ctx;
    return loggen_parse(in->data, in->len, out) != 0;
}
PARA_MAP_ITEMS(w9_parse_batch, para_slice_t, log_rec, w9_parse)

static inline int w9_keep(void *ctx, const log_rec *in)
{
    (void)ctx;
    return loggen_keep(in);
}
PARA_FILTER_ITEMS(w9_keep_batch, log_rec, w9_keep)

static void w9_init(void *ctx, void *state)
{
    (void)ctx;
    memset(state, 0, sizeof(log_stats));
}

static int w9_fold(void *ctx, void *state, const void *items, size_t n)
{
    (void)ctx;
    const log_rec *r = items;
    for (size_t i = 0; i < n; i++)
        loggen_add(state, &r[i]);
    return 0;
}

static void w9_merge(void *ctx, void *into, const void *from)
{
    (void)ctx;
    loggen_merge(into, from);
}

static int w9_build(para_graph_t *g, void *state)
{
    struct w9_state *st = state;
    memset(&st->got, 0xff, sizeof st->got);
    para_reduce_desc_t rd = {.name = "stats",
                             .in_size = sizeof(log_rec),
                             .state_size = sizeof(log_stats),
                             .init = w9_init,
                             .fold = w9_fold,
                             .merge = w9_merge,
                             .result = &st->got};
    para_node_t *src, *parse, *filter, *stats;
    int rc;
    if ((rc = para_graph_add_records_file(g, "lines", st->path, NULL, &src)) !=
            0 ||
        (rc = para_graph_add_map_batch(g, "parse", sizeof(para_slice_t),
                                       sizeof(log_rec), w9_parse_batch, NULL,
                                       PARA_NODE_PARALLEL, &parse)) != 0 ||
        (rc = para_graph_add_filter_batch(g, "errors_or_slow", sizeof(log_rec),
                                          w9_keep_batch, NULL,
                                          PARA_NODE_PARALLEL, &filter)) != 0 ||
        (rc = para_graph_add_reduce(g, &rd, &stats)) != 0 ||
        (rc = para_graph_connect(g, src, parse)) != 0 ||
        (rc = para_graph_connect(g, parse, filter)) != 0 ||
        (rc = para_graph_connect(g, filter, stats)) != 0)
        return rc;
    return 0;
}

static void w9_check(void *state, bench_row_t *row)
{
    struct w9_state *st = state;
    if (memcmp(&st->got, &st->expect, sizeof st->got) != 0)
        bench_fail(row,
                   "aggregate differs from seq (%llu kept lines, seq "
                   "%llu)",
                   (unsigned long long)st->got.lines,
                   (unsigned long long)st->expect.lines);
}

int bench_w9(const bench_cfg_t *cfg)
{
    struct w9_state st;
    memset(&st, 0, sizeof st);
    snprintf(st.path, sizeof st.path, "/tmp/para-bench-w9-XXXXXX");
    int fd = mkstemp(st.path);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (f == NULL) {
        bench_row_t row;
        bench_row_init(&row, "w9", "para", 0, cfg->threads);
        bench_fail(&row, "cannot create a temporary file");
        bench_print_row(&row);
        return 1;
    }
    uint64_t target = cfg->quick ? W9_QUICK : W9_BYTES, bytes = 0, rng = 42;
    char buf[LOGGEN_MAX_LINE];
    while (bytes < target) {
        size_t n = loggen_line(&rng, st.lines++, buf);
        if (fwrite(buf, 1, n, f) != n)
            break;
        bytes += n;
    }
    int bad = fclose(f) != 0 || bytes < target;
    static const bench_graph_ops_t ops = {w9_build, w9_check};
    int rc =
        bad ? 1 : bench_seq_para(cfg, "w9", st.lines, w9_seq, &ops, &st, NULL);
    unlink(st.path);
    return rc;
}
