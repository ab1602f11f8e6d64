/*
 * log_stats: variable-length records, parsed item by item, filtered and
 * aggregated by a reduction, on para's public API.
 *
 *     lines (records of a file) -> parse (line -> struct) -> filter
 *         (status >= 500 or latency > 1000 ms) -> stats (reduce)
 *
 * The source hands out each line as a para_slice_t pointing into a shared,
 * reference-counted block (no copy per line); the parse map reads it and
 * writes a fixed-size struct, one item at a time (PARA_MAP_ITEMS: batch
 * speed); the reduce node keeps one partial aggregate per worker and
 * merges them when the run ends. Lines are released by the runtime once
 * parsed. The same file is then aggregated by a plain sequential loop, and
 * the two results must be identical.
 *
 * Usage: log_stats [LINES [FILE]]   (default 200000 lines in a temporary
 * file; an existing FILE is read, not generated, when LINES is 0)
 * Exit status 0 when para and the loop agree.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <para.h>

#include "loggen.h"

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* CPU time of the whole process (every worker), for the cost of para's
 * parallel run beside the loop's, whatever else runs on the machine. */
static double cpu_now(void)
{
    return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

/* parse: one line (a slice) -> one record. */
static inline int parse_line(void *ctx, const para_slice_t *in, log_rec *out)
{
    (void)ctx;
    if (loggen_parse(in->data, in->len, out) != 0)
        return 1; /* a malformed line fails the run, naming "parse" */
    return 0;
}
PARA_MAP_ITEMS(parse_batch, para_slice_t, log_rec, parse_line)

static int keep(void *ctx, const void *in)
{
    (void)ctx;
    return loggen_keep(in);
}

/* The reduction: init, fold a batch, merge two partials. */
static void stats_init(void *ctx, void *state)
{
    (void)ctx;
    memset(state, 0, sizeof(log_stats));
}

static int stats_fold(void *ctx, void *state, const void *items, size_t n)
{
    (void)ctx;
    const log_rec *r = items;
    for (size_t i = 0; i < n; i++)
        loggen_add(state, &r[i]);
    return 0;
}

static void stats_merge(void *ctx, void *into, const void *from)
{
    (void)ctx;
    loggen_merge(into, from);
}

int main(int argc, char **argv)
{
    unsigned long long lines = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
    char tmp[] = "/tmp/log_stats-XXXXXX";
    const char *path = argc > 2 ? argv[2] : NULL;
    if (path == NULL) {
        int fd = mkstemp(tmp);
        if (fd < 0)
            return 1;
        close(fd);
        path = tmp;
    }
    if (lines > 0) {
        FILE *f = fopen(path, "wb");
        if (f == NULL || loggen_write(f, lines) != 0) {
            perror(path);
            return 1;
        }
        fclose(f);
    }

    para_runtime_t *rt = NULL;
    para_graph_t *g = NULL;
    int rc = para_runtime_create(&rt, NULL);
    if (rc == 0)
        rc = para_graph_create(&g);
    log_stats par;
    para_node_t *src, *parse, *filter, *stats;
    para_reduce_desc_t rd = {.name = "stats",
                             .in_size = sizeof(log_rec),
                             .state_size = sizeof(log_stats),
                             .init = stats_init,
                             .fold = stats_fold,
                             .merge = stats_merge,
                             .result = &par};
    if (rc == 0)
        rc = para_graph_add_records_file(g, "lines", path, NULL, &src);
    if (rc == 0)
        rc = para_graph_add_map_batch(g, "parse", sizeof(para_slice_t),
                                      sizeof(log_rec), parse_batch, NULL, 0,
                                      &parse);
    if (rc == 0)
        rc = para_graph_add_filter(g, "errors_or_slow", sizeof(log_rec), keep,
                                   NULL, 0, &filter);
    if (rc == 0)
        rc = para_graph_add_reduce(g, &rd, &stats);
    if (rc == 0)
        rc = para_graph_connect(g, src, parse);
    if (rc == 0)
        rc = para_graph_connect(g, parse, filter);
    if (rc == 0)
        rc = para_graph_connect(g, filter, stats);
    double t0 = now(), c0 = cpu_now();
    if (rc == 0)
        rc = para_run(rt, g);
    double t_para = now() - t0, c_para = cpu_now() - c0;
    if (rc != 0) {
        fprintf(stderr, "log_stats: %s: %s\n", para_err_name(rc),
                rt != NULL ? para_runtime_errmsg(rt) : "");
        para_graph_destroy(g);
        if (rt != NULL && para_runtime_destroy(rt) != 0)
            fprintf(stderr, "log_stats: runtime still busy\n");
        return 1;
    }
    unsigned workers = para_runtime_workers(rt);
    para_graph_destroy(g);
    if (para_runtime_destroy(rt) != 0)
        return 1;

    log_stats seq;
    t0 = now();
    c0 = cpu_now();
    int srs = loggen_seq_file(path, &seq);
    double t_seq = now() - t0, c_seq = cpu_now() - c0;
    if (path == tmp)
        unlink(tmp);
    if (srs != 0) {
        fprintf(stderr, "log_stats: the sequential loop failed\n");
        return 1;
    }
    printf("%llu kept lines of the log: 200 %llu, 201 %llu, 404 %llu, "
           "500 %llu, 503 %llu\n",
           (unsigned long long)par.lines, (unsigned long long)par.by_status[0],
           (unsigned long long)par.by_status[1],
           (unsigned long long)par.by_status[2],
           (unsigned long long)par.by_status[3],
           (unsigned long long)par.by_status[4]);
    printf("para %.3f s on %u workers (%.3f s CPU), sequential loop %.3f s "
           "(%.3f s CPU)\n",
           t_para, workers, c_para, t_seq, c_seq);
    if (memcmp(&par, &seq, sizeof par) != 0) {
        fprintf(stderr, "log_stats: para and the loop DIFFER\n");
        return 1;
    }
    printf("identical to the sequential loop\n");
    return 0;
}
