/*
 * Peers of para-bench: the chains of w1, w2, w6 and w7, their seq loops and
 * checks, w3's check, the linear-pipeline reference and the command line.
 * See peer_common.h. The stage functions and seq loops are the para-bench
 * ones (bench/workloads.c, bench/w6_shift.c) with the same spin() counts;
 * this file is compiled with the same flags (-O2,
 * -Wa,-mbranches-within-32B-boundaries) so spin() runs at the same speed.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peer_common.h"

/* ---- w1: source i -> parallel spin(i,16) -> serial sink sum ------------ */

static void w1_map(peer_item_t *it, size_t n, peer_state_t *st)
{
    (void)st;
    for (size_t k = 0; k < n; k++)
        it[k].v = spin(it[k].i, 16);
}

static void sum_sink(peer_item_t *it, size_t n, peer_state_t *st)
{
    uint64_t sum = st->sum;
    for (size_t k = 0; k < n; k++)
        sum += it[k].v;
    st->sum = sum;
    st->count += n;
}

static void w1_seq(peer_state_t *st)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < st->n; i++)
        sum += spin(i, 16);
    st->expect = sum;
}

/* ---- w2: a = spin(i,200) -> b = spin(a,2000) -> ordered sink ----------- */

static void w2_a(peer_item_t *it, size_t n, peer_state_t *st)
{
    (void)st;
    for (size_t k = 0; k < n; k++)
        it[k].v = spin(it[k].v, 200);
}

static void w2_b(peer_item_t *it, size_t n, peer_state_t *st)
{
    (void)st;
    for (size_t k = 0; k < n; k++)
        it[k].v = spin(it[k].v, 2000);
}

/* The sink checks the order itself rather than trusting the peer, and
 * resynchronises on the item seen (as para-bench's w2_sink). */
static void ordered_sink(peer_item_t *it, size_t n, peer_state_t *st)
{
    for (size_t k = 0; k < n; k++) {
        if (it[k].i != st->expected && st->out_of_order++ == 0) {
            st->bad_expected = st->expected;
            st->bad_got = it[k].i;
        }
        st->expected = it[k].i + 1;
        st->sum += it[k].v;
    }
    st->count += n;
}

static void w2_seq(peer_state_t *st)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < st->n; i++)
        sum += spin(spin(i, 200), 2000);
    st->expect = sum;
}

/* ---- w6: three stages whose costs shift at N/2 ------------------------- */

static const uint32_t w6_cost[3][2] = {{3000, 300}, {300, 300}, {300, 3000}};

static inline uint32_t w6_stage_cost(int k, uint64_t i, uint64_t n)
{
    return i < n / 2 ? w6_cost[k][0] : w6_cost[k][1];
}

static void w6_stage(int k, peer_item_t *it, size_t n, peer_state_t *st)
{
    for (size_t j = 0; j < n; j++)
        it[j].v = spin(it[j].v, w6_stage_cost(k, it[j].i, st->n));
}

static void w6_s1(peer_item_t *it, size_t n, peer_state_t *st)
{
    w6_stage(0, it, n, st);
}
static void w6_s2(peer_item_t *it, size_t n, peer_state_t *st)
{
    w6_stage(1, it, n, st);
}
static void w6_s3(peer_item_t *it, size_t n, peer_state_t *st)
{
    w6_stage(2, it, n, st);
}

static void w6_seq(peer_state_t *st)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < st->n; i++) {
        uint64_t x = i;
        for (int k = 0; k < 3; k++)
            x = spin(x, w6_stage_cost(k, i, st->n));
        sum += x;
    }
    st->expect = sum;
}

/* ---- w7: y = spin(i,300) -> stateful hist[y&1023]++, spin(y,50) -> sum - */

static void w7_y(peer_item_t *it, size_t n, peer_state_t *st)
{
    (void)st;
    for (size_t k = 0; k < n; k++)
        it[k].v = spin(it[k].i, 300);
}

/* Stateful: the histogram has no lock; the peer runs this stage serially. */
static void w7_hist(peer_item_t *it, size_t n, peer_state_t *st)
{
    for (size_t k = 0; k < n; k++) {
        st->hist[it[k].v & (PEER_W7_BINS - 1)]++;
        it[k].v = spin(it[k].v, 50);
    }
}

static void w7_seq(peer_state_t *st)
{
    memset(st->seq_hist, 0, sizeof st->seq_hist);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < st->n; i++) {
        uint64_t y = spin(i, 300);
        st->seq_hist[y & (PEER_W7_BINS - 1)]++;
        sum += spin(y, 50);
    }
    st->expect = sum;
}

/* ---- w14: 16 maps x = spin(x,25) -> sum ---------------------------------- */

static void w14_map(peer_item_t *it, size_t n, peer_state_t *st)
{
    (void)st;
    for (size_t k = 0; k < n; k++)
        it[k].v = spin(it[k].v, 25);
}

static void w14_seq(peer_state_t *st)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < st->n; i++) {
        uint64_t x = i;
        for (unsigned s = 0; s < PEER_W14_STAGES; s++)
            x = spin(x, 25);
        sum += x;
    }
    st->expect = sum;
}

#define W14_STAGE(k)                                                           \
    {                                                                          \
        "spin25-" #k, w14_map, PEER_PARALLEL                                   \
    }

/*
 * Chunk sizes aim at ~100 us of work per chunk, para's adaptive batch
 * target (PARA_BATCH_US), measured on the development VM at ~0.7 ns per
 * spin iteration: w1 16 it, w2 2200, w6 3600, w7 350; w14 16 x 25 = 400
 * per item, in chunks of 1024 as the oneTBB baseline used. para finds
 * its batch size by itself; the peers get theirs tuned by hand.
 */
static const peer_chain_t chains[] = {
    {"w1",
     PEER_W1_ITEMS,
     PEER_W1_QUICK,
     8192,
     2,
     {{"spin16", w1_map, PEER_PARALLEL}, {"sum", sum_sink, PEER_SERIAL}},
     0,
     w1_seq},
    {"w2",
     PEER_W2_ITEMS,
     PEER_W2_QUICK,
     64,
     3,
     {{"spin200", w2_a, PEER_PARALLEL},
      {"spin2000", w2_b, PEER_PARALLEL},
      {"ordered_sum", ordered_sink, PEER_ORDERED}},
     0,
     w2_seq},
    {"w6",
     PEER_W6_ITEMS,
     PEER_W6_QUICK,
     32,
     4,
     {{"stage1", w6_s1, PEER_PARALLEL},
      {"stage2", w6_s2, PEER_PARALLEL},
      {"stage3", w6_s3, PEER_PARALLEL},
      {"sum", sum_sink, PEER_SERIAL}},
     0,
     w6_seq},
    {"w7",
     PEER_W7_ITEMS,
     PEER_W7_QUICK,
     512,
     3,
     {{"spin300", w7_y, PEER_PARALLEL},
      {"hist", w7_hist, PEER_SERIAL},
      {"sum", sum_sink, PEER_SERIAL}},
     1,
     w7_seq},
    {"w14",
     PEER_W14_ITEMS,
     PEER_W14_QUICK,
     1024,
     PEER_W14_STAGES + 1,
     {W14_STAGE(1),
      W14_STAGE(2),
      W14_STAGE(3),
      W14_STAGE(4),
      W14_STAGE(5),
      W14_STAGE(6),
      W14_STAGE(7),
      W14_STAGE(8),
      W14_STAGE(9),
      W14_STAGE(10),
      W14_STAGE(11),
      W14_STAGE(12),
      W14_STAGE(13),
      W14_STAGE(14),
      W14_STAGE(15),
      W14_STAGE(16),
      {"sum", sum_sink, PEER_SERIAL}},
     0,
     w14_seq},
};

const peer_chain_t *peer_chain_find(const char *workload)
{
    for (size_t k = 0; k < sizeof chains / sizeof chains[0]; k++)
        if (strcmp(chains[k].workload, workload) == 0)
            return &chains[k];
    return NULL;
}

void peer_state_reset(peer_state_t *st)
{
    memset(st->hist, 0, sizeof st->hist);
    st->sum = 0;
    st->count = 0;
    st->expected = 0;
    st->out_of_order = 0;
    st->bad_expected = 0;
    st->bad_got = 0;
}

void peer_state_check(const peer_state_t *st, bench_row_t *row)
{
    if (st->out_of_order != 0) {
        bench_fail(row,
                   "order: %llu items out of order, first: expected index "
                   "%llu, got %llu",
                   (unsigned long long)st->out_of_order,
                   (unsigned long long)st->bad_expected,
                   (unsigned long long)st->bad_got);
        return;
    }
    if (st->chain != NULL && st->chain->check_hist) {
        uint64_t total = 0;
        for (unsigned b = 0; b < PEER_W7_BINS; b++)
            total += st->hist[b];
        if (total != st->n) {
            bench_fail(row, "histogram total %llu, expected %llu",
                       (unsigned long long)total, (unsigned long long)st->n);
            return;
        }
        for (unsigned b = 0; b < PEER_W7_BINS; b++) {
            if (st->hist[b] != st->seq_hist[b]) {
                bench_fail(row, "histogram bin %u: %llu, expected %llu", b,
                           (unsigned long long)st->hist[b],
                           (unsigned long long)st->seq_hist[b]);
                return;
            }
        }
    }
    if (st->count != st->n)
        bench_fail(row, "sink got %llu items, expected %llu",
                   (unsigned long long)st->count, (unsigned long long)st->n);
    else if (st->sum != st->expect)
        bench_fail(row, "sum %llu, expected %llu", (unsigned long long)st->sum,
                   (unsigned long long)st->expect);
}

static int seq_timed(void *state, bench_row_t *row)
{
    (void)row;
    peer_state_t *st = state;
    st->chain->seq(st);
    return 0;
}

double peer_run_seq(const bench_cfg_t *cfg, const peer_chain_t *chain,
                    peer_state_t *st)
{
    st->chain = chain;
    bench_row_t s;
    bench_row_init(&s, chain->workload, "seq", st->n, 1);
    bench_time(cfg, seq_timed, st, &s);
    s.seq_seconds = s.seconds;
    bench_print_row(&s);
    return s.seconds;
}

void peer_w3_pair(int64_t first, size_t n, peer_w3_pair_t *out)
{
    for (size_t k = 0; k < n; k++) {
        int64_t x = first + (int64_t)k;
        out[k].x2 = 2 * x;
        out[k].x = x;
    }
}

void peer_w3_diff(const peer_w3_pair_t *in, size_t n, int64_t *out)
{
    for (size_t k = 0; k < n; k++)
        out[k] = in[k].x2 - in[k].x;
}

void peer_w3_neg(int64_t first, size_t n, int64_t *out)
{
    for (size_t k = 0; k < n; k++)
        out[k] = -(first + (int64_t)k);
}

void peer_w3_sink(const int64_t *in, size_t n, peer_w3_acc_t *acc)
{
    uint64_t s = acc->sum, q = acc->sq;
    for (size_t k = 0; k < n; k++) {
        uint64_t y = (uint64_t)in[k];
        s += y;
        q += y * y;
    }
    acc->sum = s;
    acc->sq = q;
    acc->count += n;
}

void peer_w3_check(uint64_t n, const peer_w3_acc_t *acc, bench_row_t *row)
{
    uint64_t sq = 0;
    for (uint64_t x = 0; x < n; x++)
        sq += x * x;
    if (acc->count != 2 * n)
        bench_fail(row, "sink got %llu items, expected %llu",
                   (unsigned long long)acc->count, (unsigned long long)(2 * n));
    else if (acc->sum != 0)
        bench_fail(row, "sum %lld, expected 0", (long long)acc->sum);
    else if (acc->sq != 2 * sq)
        bench_fail(row, "sum of squares %llu, expected %llu",
                   (unsigned long long)acc->sq, (unsigned long long)(2 * sq));
}

/* ---- linear pipeline ---------------------------------------------------- */

uint64_t peer_lp_reference(uint64_t items, unsigned stages)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < items; i++) {
        uint64_t x = i;
        for (unsigned s = 0; s < stages; s++)
            x = spin(x, PEER_LP_ITERS);
        sum += x;
    }
    return sum;
}

const char *peer_lp_name(unsigned stages, int parallel)
{
    static const char *const names[2][2] = {{"lp8s", "lp8p"},
                                            {"lp16s", "lp16p"}};
    return names[stages == 16][parallel != 0];
}

/* ---- command line ------------------------------------------------------- */

static unsigned long long parse_count(const char *s, unsigned long long max)
{
    if (s == NULL || *s < '0' || *s > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return 0;
    return v;
}

static const char *value_of(int argc, char **argv, int *i)
{
    return *i + 1 < argc ? argv[++*i] : NULL;
}

int peer_parse_args(const char *prog, int argc, char **argv, peer_opts_t *o)
{
    memset(o, 0, sizeof *o);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = online > 0 ? (unsigned)online : 1;
    o->repeat = 1;
    o->lp_stages = 8;
    o->lp_items = 1024;
    int any = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strcmp(a, "--quick") == 0) {
            o->quick = 1;
        } else if (strcmp(a, "--workload") == 0 &&
                   (v = value_of(argc, argv, &i)) != NULL) {
            any = 1;
            char buf[128];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                if (strcmp(t, "all") == 0) {
                    o->selected[1] = o->selected[2] = o->selected[3] = 1;
                    o->selected[6] = o->selected[7] = o->selected[14] = 1;
                } else if (strcmp(t, "lp") == 0) {
                    o->selected[0] = 1;
                } else if (t[0] == 'w' && strchr("123467", t[1]) && t[1] &&
                           t[2] == '\0') {
                    o->selected[t[1] - '0'] = 1;
                } else if (strcmp(t, "w14") == 0) {
                    o->selected[14] = 1;
                } else {
                    fprintf(stderr, "%s: unknown workload '%s'\n", prog, t);
                    return 2;
                }
            }
        } else if (strcmp(a, "--threads") == 0 &&
                   (v = value_of(argc, argv, &i)) != NULL) {
            if ((o->threads = (unsigned)parse_count(v, 1024)) == 0)
                goto bad;
        } else if (strcmp(a, "--repeat") == 0 &&
                   (v = value_of(argc, argv, &i)) != NULL) {
            if ((o->repeat = (unsigned)parse_count(v, 1000000)) == 0)
                goto bad;
        } else if (strcmp(a, "--lp-stages") == 0 &&
                   (v = value_of(argc, argv, &i)) != NULL) {
            o->lp_stages = (unsigned)parse_count(v, 16);
            if (o->lp_stages != 8 && o->lp_stages != 16)
                goto bad;
        } else if (strcmp(a, "--lp-mode") == 0 &&
                   (v = value_of(argc, argv, &i)) != NULL) {
            if (strcmp(v, "serial") == 0)
                o->lp_parallel = 0;
            else if (strcmp(v, "parallel") == 0)
                o->lp_parallel = 1;
            else
                goto bad;
        } else if (strcmp(a, "--lp-items") == 0 &&
                   (v = value_of(argc, argv, &i)) != NULL) {
            if ((o->lp_items = parse_count(v, 1ull << 24)) == 0)
                goto bad;
        } else if (strcmp(a, "--lp-reference") == 0) {
            o->lp_print_reference = 1;
            o->selected[0] = 1;
            any = 1;
        } else if (strcmp(a, "--lp-expect") == 0 &&
                   (v = value_of(argc, argv, &i)) != NULL) {
            char *end;
            errno = 0;
            o->lp_expect = strtoull(v, &end, 10);
            if (errno != 0 || *end != '\0')
                goto bad;
            o->lp_have_expect = 1;
        } else {
            fprintf(stderr,
                    "usage: %s [--workload w1,w2,w3,w4,w6,w7,w14|all|lp] "
                    "[--threads N] [--quick] [--repeat R]\n"
                    "       [--lp-stages 8|16] [--lp-mode serial|parallel] "
                    "[--lp-items N] [--lp-expect SUM]\n"
                    "       [--lp-reference]\n",
                    prog);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "%s: bad value '%s' for %s\n", prog, v, a);
        return 2;
    }
    if (!any) {
        o->selected[1] = o->selected[2] = o->selected[3] = 1;
        o->selected[6] = o->selected[7] = o->selected[14] = 1;
    }
    if (o->selected[0] && !o->lp_have_expect)
        o->lp_expect = peer_lp_reference(o->lp_items, o->lp_stages);
    return 0;
}
