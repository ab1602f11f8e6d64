/*
 * para-bench: the workloads of the benchmark contract (BENCHMARKS.md).
 *
 * Usage:
 *   para-bench [--workload LIST] [--threads N] [--quick] [--repeat R]
 *
 *   --workload LIST  comma-separated workload ids w1..w14, or "all" (the
 *                    default). "all" runs every one (w11, across MPI ranks,
 *                    only when started by mpirun: see w11_mpi.c).
 *   --threads N      runtime workers; default: the number of online CPUs.
 *   --quick          the small sizes (seconds, not minutes).
 *   --repeat R       time every variant R times, report the median (1).
 *   --min-seconds S  make every timing last at least S seconds by running
 *                    a short variant back to back and taking the mean per
 *                    run (default 0: one run per timing). A quick w1 run is
 *                    about a millisecond, where waking threads, not the
 *                    workload, decides the figure; the perf guard uses this.
 *   --handicap K     do every para_run() of a timing K times (each run is
 *                    checked): a stand-in for a runtime K times slower, to
 *                    prove that the perf guard catches one. Default 1.
 *   --trace FILE     also time w1, w2, w6 and w7 on a second runtime with
 *                    the event trace on (written to FILE after each run):
 *                    rows "para-traced", runs interleaved with "para".
 *
 * Output: one JSON object per line, per workload and variant, e.g.
 *
 *   {"workload":"w2","variant":"para","items":200000,"threads":2,
 *    "seconds":0.412000,"items_per_s":485437,"efficiency":0.970,
 *    "peak_rss_mb":12.5,"check":"ok"}
 *
 * (one line in the real output). efficiency = seq_seconds / (threads *
 * seconds), with the seq median measured earlier in the same process; seq
 * rows report threads 1 and efficiency 1.0, and rows without a baseline
 * report null. Diagnostics go to stderr.
 *
 * Exit status: 0 if every check passed, 1 if one failed (its row says why
 * in "check") or the runtime could not be created, 2 for a usage error.
 *
 * One runtime is created with attr.workers = threads and reused by every
 * run, as an application would; each run builds a fresh graph, and only
 * para_run() is timed. Workloads run in id order whatever the order on the
 * command line, so that peak_rss_mb (a process-wide high-water mark) grows
 * the same way in every invocation.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

struct workload {
    const char *id;
    int (*run)(const bench_cfg_t *cfg);
    const char *missing; /* why it is not implemented yet; NULL if it is */
};

static const struct workload workloads[] = {
    {"w1", bench_w1, NULL},   {"w2", bench_w2, NULL},
    {"w3", bench_w3, NULL},   {"w4", bench_w4, NULL},
    {"w5", bench_w5, NULL},   {"w6", bench_w6, NULL},
    {"w7", bench_w7, NULL},   {"w8", bench_w8, NULL},
    {"w9", bench_w9, NULL},   {"w10", bench_w10, NULL},
#ifdef PARA_BENCH_MPI
    {"w11", bench_w11, NULL},
#else
    {"w11", NULL, "built without MPI (PARA_MPI)"},
#endif
    {"w12", bench_w12, NULL}, {"w13", bench_w13, NULL},
    {"w14", bench_w14, NULL},
};

#define N_WORKLOADS (sizeof workloads / sizeof workloads[0])

static void usage(FILE *out)
{
    fputs("usage: para-bench [--workload w1..w14|all[,...]] [--threads N]\n"
          "                  [--quick] [--repeat R] [--min-seconds S]\n"
          "                  [--handicap K] [--trace FILE]\n",
          out);
}

/* Parse a positive decimal count; 0 on anything else. */
static unsigned long parse_count(const char *s)
{
    if (s == NULL || *s < '0' || *s > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > 1000000ul)
        return 0;
    return v;
}

/*
 * Mark the workloads named in the comma-separated @p list in @p selected.
 * Returns 0, or 2 after printing why the list is not acceptable.
 */
static int parse_workloads(const char *list, int *selected)
{
    const char *p = list;
    for (;;) {
        size_t len = strcspn(p, ",");
        int found = 0;
        if (len == 3 && strncmp(p, "all", 3) == 0) {
            /* w11 needs mpirun: in "all" only when started by one. */
            int under_mpi = getenv("OMPI_COMM_WORLD_SIZE") != NULL ||
                            getenv("PMI_SIZE") != NULL ||
                            getenv("PMIX_RANK") != NULL;
            for (size_t k = 0; k < N_WORKLOADS; k++)
                if (workloads[k].missing == NULL &&
                    (under_mpi || strcmp(workloads[k].id, "w11") != 0))
                    selected[k] = 1;
            found = 1;
        }
        for (size_t k = 0; k < N_WORKLOADS && !found; k++) {
            if (strlen(workloads[k].id) == len &&
                strncmp(p, workloads[k].id, len) == 0) {
                if (workloads[k].missing != NULL) {
                    fprintf(stderr,
                            "para-bench: %s: not implemented yet (%s)\n",
                            workloads[k].id, workloads[k].missing);
                    return 2;
                }
                selected[k] = 1;
                found = 1;
            }
        }
        if (!found) {
            fprintf(stderr,
                    "para-bench: unknown workload '%.*s' "
                    "(expected w1..w14 or all)\n",
                    (int)len, p);
            return 2;
        }
        if (p[len] == '\0')
            return 0;
        p += len + 1;
    }
}

/* The value of option @p name at argv[*i]: "--name=value" or "--name value".
 * NULL if argv[*i] is not that option; *missing set if the value is. */
static const char *option_value(int argc, char **argv, int *i, const char *name,
                                int *missing)
{
    size_t len = strlen(name);
    const char *arg = argv[*i];
    if (strncmp(arg, name, len) != 0)
        return NULL;
    if (arg[len] == '=')
        return arg + len + 1;
    if (arg[len] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

int main(int argc, char **argv)
{
    int selected[N_WORKLOADS] = {0};
    int any_selected = 0;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned long threads = online > 0 ? (unsigned long)online : 1;
    unsigned long repeat = 1;
    unsigned long handicap = 1;
    double min_seconds = 0.0;
    int quick = 0;
    const char *trace = NULL;

    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else if ((v = option_value(argc, argv, &i, "--workload", &missing)) !=
                   NULL) {
            int rc = parse_workloads(v, selected);
            if (rc != 0)
                return rc;
            any_selected = 1;
        } else if ((v = option_value(argc, argv, &i, "--threads", &missing)) !=
                   NULL) {
            if ((threads = parse_count(v)) == 0) {
                fprintf(stderr,
                        "para-bench: --threads wants a count >= 1, "
                        "not '%s'\n",
                        v);
                return 2;
            }
        } else if ((v = option_value(argc, argv, &i, "--repeat", &missing)) !=
                   NULL) {
            if ((repeat = parse_count(v)) == 0) {
                fprintf(stderr,
                        "para-bench: --repeat wants a count >= 1, "
                        "not '%s'\n",
                        v);
                return 2;
            }
        } else if ((v = option_value(argc, argv, &i, "--handicap", &missing)) !=
                   NULL) {
            if ((handicap = parse_count(v)) == 0 || handicap > 16) {
                fprintf(stderr,
                        "para-bench: --handicap wants a count 1..16, "
                        "not '%s'\n",
                        v);
                return 2;
            }
        } else if ((v = option_value(argc, argv, &i, "--min-seconds",
                                     &missing)) != NULL) {
            char *end;
            errno = 0;
            min_seconds = strtod(v, &end);
            if (errno != 0 || end == v || *end != '\0' || !(min_seconds >= 0) ||
                min_seconds > 60) {
                fprintf(stderr,
                        "para-bench: --min-seconds wants seconds in "
                        "0..60, not '%s'\n",
                        v);
                return 2;
            }
        } else if ((v = option_value(argc, argv, &i, "--trace", &missing)) !=
                   NULL) {
            trace = v;
        } else {
            if (missing)
                fprintf(stderr, "para-bench: %s needs a value\n", argv[i]);
            else
                fprintf(stderr, "para-bench: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!any_selected) {
        int rc = parse_workloads("all", selected);
        if (rc != 0)
            return rc;
    }

    para_runtime_attr_t attr;
    int rc = para_runtime_attr_init(&attr);
    if (rc != 0) {
        /* Only a PARA_* variable that does not parse; its default is kept,
         * and the library has logged which one. */
        fprintf(stderr,
                "para-bench: para_runtime_attr_init: %s (going on "
                "with the defaults)\n",
                para_err_name(rc));
    }
    attr.workers = (unsigned)threads;
    if (trace != NULL)
        attr.trace = NULL; /* the untraced runtime, whatever PARA_TRACE says */
    para_runtime_t *rt = NULL;
    rc = para_runtime_create(&rt, &attr);
    if (rc != 0) {
        fprintf(stderr, "para-bench: para_runtime_create: %s: %s\n",
                para_err_name(rc), para_strerror(rc));
        return 1;
    }

    para_runtime_t *rt_traced = NULL;
    if (trace != NULL) {
        attr.trace = trace;
        rc = para_runtime_create(&rt_traced, &attr);
        if (rc != 0) {
            fprintf(stderr, "para-bench: para_runtime_create (traced): %s\n",
                    para_err_name(rc));
            if (para_runtime_destroy(rt) != 0)
                fprintf(stderr, "para-bench: para_runtime_destroy failed\n");
            return 1;
        }
    }

    bench_cfg_t cfg = {
        .rt = rt,
        .rt_traced = rt_traced,
        .threads = para_runtime_workers(rt),
        .repeat = (unsigned)repeat,
        .quick = quick,
        .min_seconds = min_seconds,
        .handicap = (unsigned)handicap,
    };
    /* Efficiency divides by the workers that really ran. */
    if (cfg.threads != threads)
        fprintf(stderr,
                "para-bench: asked for %lu workers, the runtime "
                "has %u\n",
                threads, cfg.threads);

    int failed = 0;
    for (size_t k = 0; k < N_WORKLOADS; k++)
        if (selected[k] && workloads[k].run(&cfg) != 0)
            failed = 1;

    rc = para_runtime_destroy(rt);
    if (rc == 0)
        rc = para_runtime_destroy(rt_traced);
    if (rc != 0) {
        fprintf(stderr, "para-bench: para_runtime_destroy: %s\n",
                para_err_name(rc));
        failed = 1;
    }
#ifdef PARA_BENCH_MPI
    bench_mpi_finish(); /* w11 initialised MPI: finalise it */
#endif
    return failed ? 1 : 0;
}
