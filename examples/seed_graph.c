/*
 * The seed graph of the original design (workload w3 of BENCHMARKS.md), written
 * with the one-expression builder:
 *
 *   x in [0, N)
 *     +--> pair: x -> (2x, x) --> diff: (x2, x) -> x2 - x --+
 *     |                                                     +--> sum += y
 *     +--> neg:  x -> -x -----------------------------------+
 *
 * Both branches feed one SERIAL sink, so the sum is 0 and the sink sees
 * exactly 2N items; the program exits 1 if either check fails.
 *
 * Usage: seed_graph [N]        (N defaults to 10,000,000)
 * The PARA_* environment variables apply (PARA_WORKERS, PARA_POLICY, ...).
 * Prints the result, the time, the source rate and the statistics table.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "para.h"
#include "seed_graph.h"

static double now_s(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int parse_n(const char *s, uint64_t *n)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v == 0 ||
        v > (unsigned long long)(INT64_MAX / 4))
        return -1;
    *n = v;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t n = 10000000;
    if (argc > 2 || (argc == 2 && parse_n(argv[1], &n) != 0)) {
        fprintf(stderr, "usage: %s [N]   (N > 0, default 10000000)\n", argv[0]);
        return 2;
    }

    para_runtime_t *rt = NULL;
    para_graph_t *g = NULL;
    seed_total_t t = {0};
    int status = 2;

    para_runtime_attr_t attr;
    int rc = para_runtime_attr_init(&attr); /* a bad PARA_* var only warns */
    rc = para_runtime_create(&rt, &attr);
    if (rc != 0) {
        fprintf(stderr, "para_runtime_create: %s\n", para_strerror(rc));
        goto fail;
    }

    rc = PARA_PIPELINE(
        &g, para_pipe_range("x", 0, n),
        PARA_FANOUT(PARA_CHAIN(para_pipe_map("pair", 8, 16, seed_pair, NULL),
                               para_pipe_map("diff", 16, 8, seed_diff, NULL)),
                    para_pipe_map("neg", 8, 8, seed_negate, NULL)),
        para_pipe_sink("sum", 8, seed_add, &t, PARA_NODE_SERIAL));
    if (rc != 0) {
        fprintf(stderr, "building the graph: %s\n", para_strerror(rc));
        goto fail;
    }

    double t0 = now_s();
    rc = para_run(rt, g);
    double secs = now_s() - t0;
    if (rc != 0) {
        fprintf(stderr, "para_run: %s: %s\n", para_err_name(rc),
                para_runtime_errmsg(rt));
        goto fail;
    }

    printf("seed graph: N = %" PRIu64 ", %u workers\n", n,
           para_runtime_workers(rt));
    printf("sum            %" PRId64 " (expected 0)\n", t.sum);
    printf("sink items     %" PRIu64 " (expected %" PRIu64 ")\n", t.count,
           2 * n);
    printf("seconds        %.3f\n", secs);
    printf("source items/s %.3g\n", secs > 0 ? (double)n / secs : 0.0);
    if (para_stats_fprint(stdout, rt, g, PARA_STATS_TABLE) != 0)
        fputs("para_stats_fprint failed\n", stderr);

    status = (t.sum == 0 && t.count == 2 * n) ? 0 : 1;
    if (status != 0)
        fprintf(stderr, "seed graph: check FAILED\n");

fail:
    para_graph_destroy(g);
    if (rt != NULL && para_runtime_destroy(rt) != 0 && status == 0)
        status = 2;
    return status;
}
