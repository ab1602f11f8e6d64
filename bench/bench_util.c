/*
 * para-bench: clocks, medians, peak RSS, JSON rows and the timing loops.
 *
 * Every workload measures each variant the same way: cfg->repeat timings,
 * each with CLOCK_MONOTONIC and each at least cfg->min_seconds long (short
 * runs are repeated back to back and averaged), the median reported (the
 * median, not the mean, because one run disturbed by the OS would otherwise
 * move the figure). For para variants only para_run() is inside the timed
 * region; the graph is rebuilt before each run so that no state of a previous
 * run can leak into the next, and building it is not what the benchmark
 * compares.
 *
 * A failed check does not abort the process: the row still prints, with the
 * message in "check", and main() turns it into a non-zero exit status.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench.h"

void bench_row_init(bench_row_t *row, const char *workload, const char *variant,
                    uint64_t items, unsigned threads)
{
    memset(row, 0, sizeof *row);
    row->workload = workload;
    row->variant = variant;
    row->items = items;
    row->threads = threads;
    row->ok = 1;
    strcpy(row->check, "ok");
}

void bench_fail(bench_row_t *row, const char *fmt, ...)
{
    char msg[sizeof row->check];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "para-bench: %s/%s: %s\n", row->workload, row->variant,
            msg);
    /* Keep the first failure: later ones are usually its consequences. */
    if (row->ok) {
        row->ok = 0;
        memcpy(row->check, msg, sizeof msg);
    }
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of @p n values (sorted in place); 0 when there are none. With an
 * even count it is the mean of the middle two, as usual. */
static double median(double *v, size_t n)
{
    if (n == 0)
        return 0.0;
    qsort(v, n, sizeof *v, cmp_double);
    if (n % 2)
        return v[n / 2];
    return 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Linux reports ru_maxrss in KiB. It is the process-wide high-water mark, so
 * a row shows the peak of everything run before it too. */
static double peak_rss_mb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double)ru.ru_maxrss / 1024.0;
}

/* Print @p s as a JSON string: quotes, backslashes and control characters
 * escaped, since check messages quote runtime messages verbatim. */
static void print_json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

void bench_print_row(const bench_row_t *row)
{
    printf("{\"workload\":\"%s\",\"variant\":\"%s\",\"items\":%llu,"
           "\"threads\":%u,\"seconds\":%.6f,",
           row->workload, row->variant, (unsigned long long)row->items,
           row->threads, row->seconds);
    /* A variant that never completed a run has no rate: null, not inf. */
    if (row->seconds > 0.0)
        printf("\"items_per_s\":%.0f,", (double)row->items / row->seconds);
    else
        printf("\"items_per_s\":null,");
    if (row->seconds > 0.0 && row->seq_seconds > 0.0)
        printf("\"efficiency\":%.3f,",
               row->seq_seconds / ((double)row->threads * row->seconds));
    else
        printf("\"efficiency\":null,");
    if (row->cpu_seconds > 0.0)
        printf("\"cpu_s\":%.6f,", row->cpu_seconds);
    if (row->extra[0] != '\0')
        printf("%s,", row->extra);
    printf("\"peak_rss_mb\":%.1f,\"check\":", peak_rss_mb());
    print_json_string(row->check);
    printf("}\n");
    /* Rows come one by one over a long run; make each visible at once. */
    fflush(stdout);
}

static double cpu_now(void);

void bench_time(const bench_cfg_t *cfg, bench_timed_fn fn, void *state,
                bench_row_t *row)
{
    double *t = calloc(2 * (size_t)cfg->repeat, sizeof *t);
    if (t == NULL) {
        bench_fail(row, "out of memory");
        return;
    }
    double *c = t + cfg->repeat;
    size_t n = 0;
    for (unsigned r = 0; r < cfg->repeat; r++) {
        /* Back-to-back runs until the timing lasts min_seconds: a run of a
         * millisecond or two says more about waking threads than about the
         * workload. */
        double spent = 0.0, cpu = 0.0;
        unsigned runs = 0;
        int rc = 0;
        do {
            double c0 = cpu_now(), t0 = bench_now();
            rc = fn(state, row);
            spent += bench_now() - t0;
            cpu += cpu_now() - c0;
            runs++;
        } while (rc == 0 && spent < cfg->min_seconds);
        if (rc != 0)
            break;
        c[n] = cpu / runs;
        t[n++] = spent / runs;
    }
    row->seconds = median(t, n);
    row->cpu_seconds = median(c, n);
    free(t);
}

struct split_slice {
    bench_range_fn fn;
    uint64_t begin, end, sum;
};

static void *split_thread(void *arg)
{
    struct split_slice *s = arg;
    s->sum = s->fn(s->begin, s->end);
    return NULL;
}

int bench_static_split(unsigned threads, uint64_t n, bench_range_fn fn,
                       uint64_t *sum, bench_row_t *row)
{
    struct split_slice slices[64];
    pthread_t tids[64];
    unsigned t = threads == 0 ? 1 : threads < 64 ? threads : 64;
    for (unsigned k = 0; k < t; k++) {
        slices[k] = (struct split_slice){fn, n * k / t, n * (k + 1) / t, 0};
        if (pthread_create(&tids[k], NULL, split_thread, &slices[k]) != 0) {
            bench_fail(row, "pthread_create failed");
            for (unsigned j = 0; j < k; j++)
                pthread_join(tids[j], NULL);
            return 1;
        }
    }
    uint64_t total = 0;
    for (unsigned k = 0; k < t; k++) {
        pthread_join(tids[k], NULL);
        total += slices[k].sum;
    }
    *sum = total;
    return 0;
}

struct ideal_run {
    unsigned threads;
    uint64_t n, expect;
    bench_range_fn fn;
};

static int ideal_run(void *state, bench_row_t *row)
{
    const struct ideal_run *id = state;
    uint64_t sum = 0;
    if (bench_static_split(id->threads, id->n, id->fn, &sum, row) != 0)
        return 1;
    if (sum != id->expect) {
        bench_fail(row, "sum %llu, expected %llu", (unsigned long long)sum,
                   (unsigned long long)id->expect);
        return 1;
    }
    return 0;
}

int bench_ideal_row(const bench_cfg_t *cfg, const char *workload, uint64_t n,
                    bench_range_fn fn, uint64_t expect, double seq_seconds)
{
    struct ideal_run id = {cfg->threads, n, expect, fn};
    bench_row_t row;
    bench_row_init(&row, workload, "ideal", n, cfg->threads);
    row.seq_seconds = seq_seconds;
    if (seq_seconds > 0.0)
        bench_time(cfg, ideal_run, &id, &row);
    else
        bench_fail(&row, "not run: the seq reference failed");
    bench_print_row(&row);
    return !row.ok;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One timed para_run() of a fresh graph on @p rt; 0 and *secs (wall) and
 * *cpu (process CPU time: the workers' time, as the caller's thread only
 * waits), or non-zero after bench_fail() on @p row. */
static int time_one_graph(para_runtime_t *rt, const bench_graph_ops_t *ops,
                          void *state, bench_row_t *row, double *secs,
                          double *cpu, double *run)
{
    para_graph_t *g = NULL;
    int rc = para_graph_create(&g);
    if (rc != 0) {
        bench_fail(row, "para_graph_create: %s", para_err_name(rc));
        return 1;
    }
    rc = ops->build(g, state);
    if (rc != 0) {
        bench_fail(row, "building the graph: %s: %s", para_err_name(rc),
                   para_graph_errmsg(g));
        para_graph_destroy(g);
        return 1;
    }
    double c0 = cpu_now();
    double t0 = bench_now();
    rc = para_run(rt, g);
    double t1 = bench_now();
    double c1 = cpu_now();
    if (rc != 0) {
        bench_fail(row, "para_run: %s: %s", para_err_name(rc),
                   para_runtime_errmsg(rt));
        para_graph_destroy(g);
        return 1;
    }
    *secs = t1 - t0;
    *cpu = c1 - c0;
    /* The run alone, as the runtime timed it: without the trace export
     * that para_run() does after the workers are done. */
    para_stats_t st;
    *run = para_runtime_stats(rt, &st) == 0 ? 1e-9 * (double)st.run_ns : 0;
    ops->check(state, row);
    para_graph_destroy(g);
    return 0;
}

/*
 * One timing of a para variant: cfg->handicap runs count as one (each is
 * checked), repeated back to back until the timing lasts cfg->min_seconds;
 * the sums divided by the runs counted. 0, or non-zero after bench_fail().
 */
static int time_graph_runs(const bench_cfg_t *cfg, para_runtime_t *rt,
                           const bench_graph_ops_t *ops, void *state,
                           bench_row_t *row, double *secs, double *cpu,
                           double *run)
{
    unsigned handicap = cfg->handicap > 0 ? cfg->handicap : 1;
    double s = 0.0, c = 0.0, u = 0.0;
    unsigned counted = 0;
    do {
        for (unsigned k = 0; k < handicap; k++) {
            double s1, c1, u1;
            if (time_one_graph(rt, ops, state, row, &s1, &c1, &u1) != 0)
                return 1;
            s += s1;
            c += c1;
            u += u1;
        }
        counted++;
    } while (s < cfg->min_seconds && row->ok);
    *secs = s / counted;
    *cpu = c / counted;
    *run = u / counted;
    return 0;
}

void bench_time_graph(const bench_cfg_t *cfg, const bench_graph_ops_t *ops,
                      void *state, bench_row_t *row)
{
    bench_time_graph_pair(cfg, ops, state, row, NULL);
}

void bench_time_graph_pair(const bench_cfg_t *cfg, const bench_graph_ops_t *ops,
                           void *state, bench_row_t *row, bench_row_t *traced)
{
    size_t rep = cfg->repeat;
    double *t = calloc(6 * rep, sizeof *t);
    if (t == NULL) {
        bench_fail(row, "out of memory");
        return;
    }
    double *tt = t + rep, *c = t + 2 * rep, *ct = t + 3 * rep;
    double *u = t + 4 * rep, *ut = t + 5 * rep;
    size_t n = 0, nt = 0;
    for (unsigned r = 0; r < cfg->repeat && row->ok; r++) {
        if (time_graph_runs(cfg, cfg->rt, ops, state, row, &t[n], &c[n],
                            &u[n]) != 0)
            break;
        n++;
        /* Interleaved, so both variants see the same noise. */
        if (traced != NULL && traced->ok &&
            time_graph_runs(cfg, cfg->rt_traced, ops, state, traced, &tt[nt],
                            &ct[nt], &ut[nt]) == 0)
            nt++;
    }
    row->seconds = median(t, n);
    row->cpu_seconds = median(c, n);
    if (traced != NULL && nt > 0) {
        traced->cpu_seconds = median(ct, nt);
        traced->seconds = median(tt, nt);
        /* CPU time is less disturbed than wall time by other processes on
         * a shared machine; a diagnostic, not part of the rows' format. */
        double cp = median(c, n), cpt = median(ct, nt);
        double up = median(u, n), upt = median(ut, nt);
        fprintf(stderr,
                "para-bench: %s median per run, untraced -> traced: "
                "para_run wall %.4f -> %.4f s (%+.1f %%), CPU %.4f -> %.4f s "
                "(%+.1f %%); run without the export %.4f -> %.4f s "
                "(%+.1f %%)\n",
                row->workload, row->seconds, traced->seconds,
                100.0 * (traced->seconds / row->seconds - 1), cp, cpt,
                100.0 * (cpt / cp - 1), up, upt, 100.0 * (upt / up - 1));
    }
    free(t);
}

int bench_seq_para(const bench_cfg_t *cfg, const char *workload, uint64_t items,
                   bench_timed_fn seq, const bench_graph_ops_t *ops,
                   void *state, double *seq_seconds)
{
    bench_row_t s;
    bench_row_init(&s, workload, "seq", items, 1);
    bench_time(cfg, seq, state, &s);
    /* The seq row is its own baseline: efficiency 1.0 on one thread. */
    s.seq_seconds = s.seconds;
    bench_print_row(&s);

    bench_row_t p, pt;
    bench_row_init(&p, workload, "para", items, cfg->threads);
    bench_row_init(&pt, workload, "para-traced", items, cfg->threads);
    p.seq_seconds = pt.seq_seconds = s.seconds;
    if (s.ok)
        bench_time_graph_pair(cfg, ops, state, &p,
                              cfg->rt_traced != NULL ? &pt : NULL);
    else
        bench_fail(&p, "not run: the seq reference failed");
    bench_print_row(&p);
    if (cfg->rt_traced != NULL && s.ok)
        bench_print_row(&pt);

    if (seq_seconds != NULL)
        *seq_seconds = s.seconds;
    return s.ok && p.ok && pt.ok ? 0 : 1;
}

int bench_policy_rows(const bench_cfg_t *cfg, const char *workload,
                      uint64_t items, const bench_graph_ops_t *ops, void *state,
                      double seq_seconds)
{
    static const char *const policies[] = {"ws", "memaware", "dhondt"};
    int failed = 0;
    for (size_t k = 0; k < sizeof policies / sizeof policies[0]; k++) {
        char variant[32];
        snprintf(variant, sizeof variant, "para-%s", policies[k]);
        bench_row_t row;
        bench_row_init(&row, workload, variant, items, cfg->threads);
        row.seq_seconds = seq_seconds;
        para_runtime_attr_t a;
        if (para_runtime_attr_init(&a) != 0)
            fprintf(stderr, "para-bench: a PARA_* variable does not parse\n");
        a.workers = cfg->threads;
        a.policy = policies[k];
        bench_cfg_t c = *cfg;
        if (para_runtime_create(&c.rt, &a) != 0) {
            bench_fail(&row, "cannot create a runtime with policy %s",
                       policies[k]);
        } else {
            bench_time_graph(&c, ops, state, &row);
            if (para_runtime_destroy(c.rt) != 0)
                bench_fail(&row, "runtime destroy failed");
        }
        bench_print_row(&row);
        failed |= !row.ok;
    }
    return failed;
}
