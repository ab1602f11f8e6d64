/*
 * The progress line: items through the sinks, their rate, and the batch
 * bytes in flight, on stderr while a run lasts longer than half a second.
 *
 * Nothing is added to the workers' path. The thread blocked in para_run()
 * normally waits untimed on rt->done_cond; with progress enabled it waits
 * with a timeout instead, and on each timeout reads the sinks' item counters
 * and the run's live byte count (relaxed loads of counters the workers
 * already keep) and prints. On a terminal the line is rewritten in place
 * four times a second and finished with a newline at the end of the run;
 * otherwise (PARA_PROGRESS=on with stderr redirected) a full line is printed
 * once a second.
 *
 * PARA_PROGRESS: auto (default: only when stderr is a terminal), on, off.
 *
 * Tests: tests/runtime/test_stats.c (test_progress_line).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

#define FIRST_NS 500000000ull       /* no line for runs shorter than this */
#define TTY_PERIOD_NS 250000000ull  /* updates on a terminal */
#define LOG_PERIOD_NS 1000000000ull /* updates into a file or pipe */

static int parse_mode(const char *mode)
{
    if (mode == NULL || *mode == '\0' || strcasecmp(mode, "auto") == 0)
        return -1;
    if (strcasecmp(mode, "on") == 0 || strcasecmp(mode, "yes") == 0 ||
        strcmp(mode, "1") == 0)
        return 1;
    if (strcasecmp(mode, "off") == 0 || strcasecmp(mode, "no") == 0 ||
        strcmp(mode, "0") == 0)
        return 0;
    return -2;
}

bool para__progress_mode_valid(const char *mode)
{
    return parse_mode(mode) != -2;
}

void para__progress_init(para_runtime_t *rt, const char *mode)
{
    int m = parse_mode(mode);
    para__progress *p = &rt->progress;
    p->tty = isatty(STDERR_FILENO) == 1;
    p->enabled = m == 1 || (m == -1 && p->tty);
}

void para__progress_begin(para_runtime_t *rt, uint64_t t0)
{
    para__progress *p = &rt->progress;
    p->t0 = t0;
    p->last = t0;
    p->items = 0;
    p->printed = false;
}

static uint64_t sink_items(const para__run *run)
{
    const para_graph_t *g = run->graph;
    uint64_t n = 0;
    for (unsigned i = 0; i < g->n_nodes; i++)
        if (para__is_sink(g->nodes[i])) {
            /* A statistic read while the workers add to it. */
            para__node_counts c;
            para__node_counts_get(g->nodes[i], &c);
            n += c.items_in;
        }
    return n;
}

static void human(char *buf, size_t len, double v, const char *unit)
{
    static const char *const prefix[] = {"", "k", "M", "G", "T"};
    unsigned k = 0;
    while (v >= 1000.0 && k < 4) {
        v /= 1000.0;
        k++;
    }
    snprintf(buf, len, "%.*f %s%s", v < 10 && k > 0 ? 2 : 1, v, prefix[k],
             unit);
}

static void print_line(para__progress *p, const para__run *run, uint64_t now,
                       bool final)
{
    uint64_t items = sink_items(run);
    double dt = (double)(now - p->last) / 1e9;
    double rate = final ? (double)items / ((double)(now - p->t0) / 1e9)
                        : (dt > 0 ? (double)(items - p->items) / dt : 0.0);
    /* relaxed: a statistic read while the workers change it. */
    int64_t bytes =
        atomic_load_explicit(&((para__run *)run)->bytes, memory_order_relaxed);
    char a[32], b[32], c[32];
    human(a, sizeof a, (double)items, "items");
    human(b, sizeof b, rate, "items/s");
    human(c, sizeof c, bytes > 0 ? (double)bytes : 0.0, "B");
    fprintf(stderr,
            "%spara: %.1f s, %s through the sinks, %s%s, %s in flight%s",
            p->tty ? "\r" : "", (double)(now - p->t0) / 1e9, a, b,
            final ? " on average" : "", c,
            p->tty ? (final ? "\033[K\n" : "\033[K") : "\n");
    fflush(stderr);
    p->items = items;
    p->last = now;
    p->printed = true;
}

void para__progress_wait(para_runtime_t *rt)
{
    para__progress *p = &rt->progress;
    if (!p->enabled) {
        pthread_cond_wait(&rt->done_cond, &rt->lock);
        return;
    }
    uint64_t now = para__now_ns();
    uint64_t period = p->tty ? TTY_PERIOD_NS : LOG_PERIOD_NS;
    uint64_t next = p->printed ? p->last + period : p->t0 + FIRST_NS;
    if (now < next) {
        /* done_cond uses the default (realtime) clock. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t wait = next - now;
        ts.tv_sec += (time_t)(wait / 1000000000u);
        ts.tv_nsec += (long)(wait % 1000000000u);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&rt->done_cond, &rt->lock, &ts) != ETIMEDOUT)
            return; /* woken (or spurious): the caller re-checks */
    }
    para__run *run = rt->run;
    /* Print without rt->lock: workers take it to park and to wake others. */
    pthread_mutex_unlock(&rt->lock);
    print_line(p, run, para__now_ns(), false);
    pthread_mutex_lock(&rt->lock);
}

void para__progress_end(para_runtime_t *rt, const para__run *run)
{
    para__progress *p = &rt->progress;
    if (p->enabled && p->printed)
        print_line(p, run, para__now_ns(), true);
}
