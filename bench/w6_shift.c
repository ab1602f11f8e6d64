/*
 * para-bench: workload w6, shifting load (the benchmark contract
 * (BENCHMARKS.md)).
 *
 * Three stages; stage k computes x = spin(x, cost_k(i)) starting from x = i.
 * For i < N/2 the costs are 3000, 300, 300; for i >= N/2 they are 300, 300,
 * 3000. The heavy stage moves from the front to the back halfway through, so
 * a pipeline that binds threads to stages is limited by whichever stage is
 * heavy at the moment (3000 of every 3600 iterations sit in one stage),
 * while a runtime that moves workers to where the work is can keep every
 * core busy all along.
 *
 * Three variants, all checked against the same sum of final x:
 *
 *   seq     a plain loop over i doing the three spin() calls.
 *   para    range i -> stage1 (uint64 -> {i,x}) -> stage2 -> stage3, all
 *           PARALLEL, -> serial sink summing x.
 *   static  the classic hand-written alternative: one pthread per stage
 *           (stage 1's thread also generates i), blocking bounded queues of
 *           W6_QUEUE_CAP items between stages (mutex + two condition
 *           variables), one push and one pop per item; stage 3's thread sums.
 *           It always runs 3 threads, whatever --threads says, and reports
 *           "threads":3 so that its efficiency is per thread it used. Thread
 *           and queue set-up is inside its timed region (tens of
 *           microseconds against seconds of work).
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define W6_ITEMS 400000u
#define W6_QUICK 20000u
#define W6_STAGES 3
#define W6_QUEUE_CAP 1024u

struct w6_item {
    uint64_t i;
    uint64_t x;
};

/* The cost of one stage: cost_lo iterations for i < half, cost_hi after. */
struct w6_stage {
    uint64_t half;
    uint32_t cost_lo;
    uint32_t cost_hi;
};

struct w6_state {
    uint64_t n;
    uint64_t expect; /* set by w6_seq() */
    struct w6_stage stage[W6_STAGES];
    /* the sink of the para and static variants */
    uint64_t sum;
    uint64_t count;
};

static inline uint32_t stage_cost(const struct w6_stage *s, uint64_t i)
{
    return i < s->half ? s->cost_lo : s->cost_hi;
}

static void w6_state_init(struct w6_state *st, uint64_t n)
{
    static const uint32_t cost[W6_STAGES][2] = {
        {3000, 300}, {300, 300}, {300, 3000}};
    memset(st, 0, sizeof *st);
    st->n = n;
    for (int k = 0; k < W6_STAGES; k++) {
        st->stage[k].half = n / 2;
        st->stage[k].cost_lo = cost[k][0];
        st->stage[k].cost_hi = cost[k][1];
    }
}

static void w6_check(void *state, bench_row_t *row)
{
    struct w6_state *st = state;
    if (st->count != st->n)
        bench_fail(row, "sink got %llu items, expected %llu",
                   (unsigned long long)st->count, (unsigned long long)st->n);
    else if (st->sum != st->expect)
        bench_fail(row, "sum %llu, expected %llu", (unsigned long long)st->sum,
                   (unsigned long long)st->expect);
}

/* ---- seq --------------------------------------------------------------- */

static int w6_seq(void *state, bench_row_t *row)
{
    (void)row;
    struct w6_state *st = state;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < st->n; i++) {
        uint64_t x = i;
        for (int k = 0; k < W6_STAGES; k++)
            x = spin(x, stage_cost(&st->stage[k], i));
        sum += x;
    }
    st->expect = sum;
    return 0;
}

/* ---- para -------------------------------------------------------------- */

/* Stage 1 also turns the range's bare index into the {i, x} item, so that
 * later stages still know which half an item belongs to. */
static int w6_first(void *ctx, const void *in, void *out)
{
    const struct w6_stage *s = ctx;
    struct w6_item it;
    memcpy(&it.i, in, sizeof it.i);
    it.x = spin(it.i, stage_cost(s, it.i));
    memcpy(out, &it, sizeof it);
    return 0;
}

static int w6_next(void *ctx, const void *in, void *out)
{
    const struct w6_stage *s = ctx;
    struct w6_item it;
    memcpy(&it, in, sizeof it);
    it.x = spin(it.x, stage_cost(s, it.i));
    memcpy(out, &it, sizeof it);
    return 0;
}

static int w6_sink(void *ctx, const void *in)
{
    struct w6_state *st = ctx;
    struct w6_item it;
    memcpy(&it, in, sizeof it);
    st->sum += it.x;
    st->count++;
    return 0;
}

static int w6_build(para_graph_t *g, void *state)
{
    struct w6_state *st = state;
    st->sum = 0;
    st->count = 0;
    const size_t sz = sizeof(struct w6_item);
    para_node_t *src, *s1, *s2, *s3, *sink;
    int rc;
    if ((rc = para_graph_add_range(g, "i", 0, st->n, &src)) != 0 ||
        (rc = para_graph_add_map(g, "stage1", 8, sz, w6_first, &st->stage[0],
                                 PARA_NODE_PARALLEL, &s1)) != 0 ||
        (rc = para_graph_add_map(g, "stage2", sz, sz, w6_next, &st->stage[1],
                                 PARA_NODE_PARALLEL, &s2)) != 0 ||
        (rc = para_graph_add_map(g, "stage3", sz, sz, w6_next, &st->stage[2],
                                 PARA_NODE_PARALLEL, &s3)) != 0 ||
        (rc = para_graph_add_sink(g, "sum", sz, w6_sink, st, PARA_NODE_SERIAL,
                                  &sink)) != 0 ||
        (rc = para_graph_connect(g, src, s1)) != 0 ||
        (rc = para_graph_connect(g, s1, s2)) != 0 ||
        (rc = para_graph_connect(g, s2, s3)) != 0 ||
        (rc = para_graph_connect(g, s3, sink)) != 0)
        return rc;
    return 0;
}

/* ---- static: one thread per stage -------------------------------------- */

/*
 * A bounded blocking queue with exactly one producer and one consumer. The
 * consumer only waits on an empty queue and the producer only on a full
 * one, so signalling on the empty->non-empty and full->non-full transitions
 * wakes every waiter there can be, without a signal per item.
 */
struct w6_queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    size_t head;  /* index of the oldest item */
    size_t count; /* items in the queue */
    int closed;   /* the producer is done; set under mu */
    struct w6_item buf[W6_QUEUE_CAP];
};

static int queue_init(struct w6_queue *q)
{
    q->head = 0;
    q->count = 0;
    q->closed = 0;
    int rc = pthread_mutex_init(&q->mu, NULL);
    if (rc != 0)
        return rc;
    if ((rc = pthread_cond_init(&q->not_empty, NULL)) != 0)
        goto fail_mu;
    if ((rc = pthread_cond_init(&q->not_full, NULL)) != 0)
        goto fail_not_empty;
    return 0;
fail_not_empty:
    pthread_cond_destroy(&q->not_empty);
fail_mu:
    pthread_mutex_destroy(&q->mu);
    return rc;
}

static void queue_fini(struct w6_queue *q)
{
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    pthread_mutex_destroy(&q->mu);
}

static void queue_push(struct w6_queue *q, const struct w6_item *it)
{
    pthread_mutex_lock(&q->mu);
    while (q->count == W6_QUEUE_CAP)
        pthread_cond_wait(&q->not_full, &q->mu);
    q->buf[(q->head + q->count) % W6_QUEUE_CAP] = *it;
    if (q->count++ == 0)
        pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

/* Returns 1 with the oldest item in *it, or 0 once the queue is closed and
 * drained. */
static int queue_pop(struct w6_queue *q, struct w6_item *it)
{
    pthread_mutex_lock(&q->mu);
    while (q->count == 0 && !q->closed)
        pthread_cond_wait(&q->not_empty, &q->mu);
    if (q->count == 0) {
        pthread_mutex_unlock(&q->mu);
        return 0;
    }
    *it = q->buf[q->head];
    q->head = (q->head + 1) % W6_QUEUE_CAP;
    if (q->count-- == W6_QUEUE_CAP)
        pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->mu);
    return 1;
}

static void queue_close(struct w6_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

struct w6_static {
    struct w6_state *st;
    struct w6_queue q[W6_STAGES - 1]; /* q[k] runs from stage k+1 to k+2 */
};

static void *static_stage1(void *arg)
{
    struct w6_static *p = arg;
    const struct w6_stage *s = &p->st->stage[0];
    for (uint64_t i = 0; i < p->st->n; i++) {
        struct w6_item it = {i, spin(i, stage_cost(s, i))};
        queue_push(&p->q[0], &it);
    }
    queue_close(&p->q[0]);
    return NULL;
}

static void *static_stage2(void *arg)
{
    struct w6_static *p = arg;
    const struct w6_stage *s = &p->st->stage[1];
    struct w6_item it;
    while (queue_pop(&p->q[0], &it)) {
        it.x = spin(it.x, stage_cost(s, it.i));
        queue_push(&p->q[1], &it);
    }
    queue_close(&p->q[1]);
    return NULL;
}

/* The last stage writes the sum; pthread_join() publishes it to the
 * timing thread. */
static void *static_stage3(void *arg)
{
    struct w6_static *p = arg;
    const struct w6_stage *s = &p->st->stage[2];
    uint64_t sum = 0, count = 0;
    struct w6_item it;
    while (queue_pop(&p->q[1], &it)) {
        sum += spin(it.x, stage_cost(s, it.i));
        count++;
    }
    p->st->sum = sum;
    p->st->count = count;
    return NULL;
}

/*
 * Threads start from the end of the pipeline: if creating one fails, the
 * stages already running are downstream of it and waiting on their input
 * queue, so closing that queue lets them drain and exit, and nothing is
 * left blocked on a queue nobody reads.
 */
static int w6_static_run(void *state, bench_row_t *row)
{
    struct w6_state *st = state;
    struct w6_static *p = malloc(sizeof *p);
    if (p == NULL) {
        bench_fail(row, "out of memory");
        return -1;
    }
    p->st = st;
    st->sum = 0;
    st->count = 0;

    int rc, queues = 0, started = 0;
    pthread_t tid[W6_STAGES];
    void *(*const body[W6_STAGES])(void *) = {static_stage1, static_stage2,
                                              static_stage3};
    for (; queues < W6_STAGES - 1; queues++) {
        if ((rc = queue_init(&p->q[queues])) != 0) {
            bench_fail(row, "queue init: %s", strerror(rc));
            goto fail;
        }
    }
    for (int k = W6_STAGES - 1; k >= 0; k--) {
        if ((rc = pthread_create(&tid[k], NULL, body[k], p)) != 0) {
            bench_fail(row, "pthread_create: %s", strerror(rc));
            if (k < W6_STAGES - 1)
                queue_close(&p->q[k]);
            goto fail;
        }
        started++;
    }
fail:
    /* Running threads are tid[W6_STAGES - started .. W6_STAGES - 1]. */
    for (int k = W6_STAGES - started; k < W6_STAGES; k++)
        pthread_join(tid[k], NULL);
    while (queues > 0)
        queue_fini(&p->q[--queues]);
    free(p);
    if (!row->ok)
        return -1;
    w6_check(st, row);
    return row->ok ? 0 : -1;
}

/* ---- the workload ------------------------------------------------------ */

int bench_w6(const bench_cfg_t *cfg)
{
    struct w6_state st;
    w6_state_init(&st, cfg->quick ? W6_QUICK : W6_ITEMS);
    static const bench_graph_ops_t ops = {w6_build, w6_check};
    double seq_seconds = 0.0;
    int failed =
        bench_seq_para(cfg, "w6", st.n, w6_seq, &ops, &st, &seq_seconds);

    bench_row_t row;
    bench_row_init(&row, "w6", "static", st.n, W6_STAGES);
    row.seq_seconds = seq_seconds;
    bench_time(cfg, w6_static_run, &st, &row);
    bench_print_row(&row);
    failed |= bench_policy_rows(cfg, "w6", st.n, &ops, &st, seq_seconds);
    return failed || !row.ok;
}
