/*
 * Records sources (runtime/records.c): a file (mapped or read), an fd and
 * a FILE* split into slices, compared with a plain split of the same bytes;
 * a file split by several workers at once into a SERIAL sink (a multiset
 * checksum) and into a reduction under every policy and 1..4 workers; in
 * order through a PARALLEL map to an ORDERED sink; a file shrinking during
 * the run; edge cases (empty
 * file, no final newline, CRLF, only newlines, a record longer than a
 * block, records crossing block boundaries, another delimiter), running a
 * graph twice, a stream that cannot be rewound, bad arguments. ASan checks
 * that every block is freed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "para.h"

/* The records as the sink saw them, in order (an ORDERED sink). */
typedef struct seen {
    char **rec;
    size_t *len;
    size_t n, cap;
} seen;

static int collect_sink(void *ctx, const void *in)
{
    seen *s = ctx;
    const para_slice_t *sl = in;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->rec = realloc(s->rec, s->cap * sizeof *s->rec);
        s->len = realloc(s->len, s->cap * sizeof *s->len);
        assert_non_null(s->rec);
        assert_non_null(s->len);
    }
    s->rec[s->n] = malloc(sl->len + 1);
    assert_non_null(s->rec[s->n]);
    memcpy(s->rec[s->n], sl->data, sl->len);
    s->len[s->n] = sl->len;
    s->n++;
    return 0;
}

static void seen_clear(seen *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->rec[i]);
    free(s->rec);
    free(s->len);
    memset(s, 0, sizeof *s);
}

/* The reference: split @p text of @p n bytes as the source must. */
static void check_split(const seen *s, const char *text, size_t n, int delim,
                        bool strip_cr)
{
    size_t k = 0, pos = 0;
    while (pos < n) {
        const char *q = memchr(text + pos, delim, n - pos);
        size_t stop = q != NULL ? (size_t)(q - text) : n;
        size_t len = stop - pos;
        if (strip_cr && len > 0 && text[pos + len - 1] == '\r')
            len--;
        if (k >= s->n)
            fail_msg("record %zu missing (only %zu seen)", k, s->n);
        if (s->len[k] != len || memcmp(s->rec[k], text + pos, len) != 0)
            fail_msg("record %zu: length %zu, want %zu", k, s->len[k], len);
        k++;
        pos = stop + 1;
    }
    if (k != s->n)
        fail_msg("%zu records seen, want %zu", s->n, k);
}

static para_runtime_t *make_rt(unsigned workers)
{
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = workers;
    a.pin = "none";
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    return rt;
}

static char *write_temp(const char *text, size_t n)
{
    char *path = strdup("/tmp/para-records-XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

/* A file (mapped, and read with pread()), an fd, a FILE*. */
enum input { IN_FILE, IN_FILE_PREAD, IN_FD, IN_STREAM };

/* FNV-1a of a record and its length: what a PARALLEL map hands on (a
 * slice itself could not outlive its input batch). */
static uint64_t rec_hash(const char *d, size_t len)
{
    uint64_t h = 1469598103934665603ull ^ len;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)d[i]) * 1099511628211ull;
    return h;
}

/* A multiset checksum of records: what a sink that is not ORDERED can
 * check (a split source hands records out in any order then). */
typedef struct msum {
    uint64_t n, sum, sq;
} msum;

static void msum_add(msum *m, const char *d, size_t len)
{
    uint64_t h = rec_hash(d, len);
    m->n++;
    m->sum += h;
    m->sq += h * h;
}

static int msum_sink(void *ctx, const void *in)
{
    const para_slice_t *sl = in;
    msum_add(ctx, sl->data, sl->len);
    return 0;
}

/* The reference split of @p text into @p m. */
static void msum_text(msum *m, const char *text, size_t n, int delim,
                      bool strip_cr)
{
    memset(m, 0, sizeof *m);
    size_t pos = 0;
    while (pos < n) {
        const char *q = memchr(text + pos, delim, n - pos);
        size_t stop = q != NULL ? (size_t)(q - text) : n;
        size_t len = stop - pos;
        if (strip_cr && len > 0 && text[pos + len - 1] == '\r')
            len--;
        msum_add(m, text + pos, len);
        pos = stop + 1;
    }
}

/* Run path/fd/stream -> ORDERED collect sink over @p text, twice (the
 * graph runs again), and compare with the reference split. */
static void run_text(para_runtime_t *rt, const char *text, size_t n,
                     size_t block, int delim, bool strip_cr, enum input in)
{
    char *path = write_temp(text, n);
    para_records_attr_t ra;
    assert_int_equal(para_records_attr_init(&ra), 0);
    ra.block_size = block;
    ra.delimiter = delim;
    ra.strip_cr = strip_cr;
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src = NULL, *k = NULL;
    int fd = -1;
    FILE *f = NULL;
    ra.map = in != IN_FILE_PREAD;
    if (in == IN_FILE || in == IN_FILE_PREAD) {
        assert_int_equal(
            para_graph_add_records_file(g, "lines", path, &ra, &src), 0);
    } else if (in == IN_FD) {
        fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        assert_int_equal(para_graph_add_records_fd(g, "lines", fd, &ra, &src),
                         0);
    } else {
        f = fopen(path, "rb");
        assert_non_null(f);
        assert_int_equal(
            para_graph_add_records_stream(g, "lines", f, &ra, &src), 0);
    }
    seen s = {0};
    assert_int_equal(para_graph_add_sink(g, "collect", sizeof(para_slice_t),
                                         collect_sink, &s, PARA_NODE_ORDERED,
                                         &k),
                     0);
    assert_int_equal(para_graph_connect(g, src, k), 0);
    for (int rep = 0; rep < 2; rep++) {
        int rc = para_run(rt, g);
        if (rc != 0)
            fail_msg("run %d: %s: %s", rep, para_err_name(rc),
                     para_runtime_errmsg(rt));
        check_split(&s, text, n, delim, strip_cr);
        seen_clear(&s);
    }
    para_graph_destroy(g);
    /* The same input into a SERIAL sink, no ORDERED node downstream: a
     * regular file is split by several workers at once (records in any
     * order), twice. */
    if (in != IN_STREAM) {
        msum want, got;
        msum_text(&want, text, n, delim, strip_cr);
        assert_int_equal(para_graph_create(&g), 0);
        if (in == IN_FD) {
            assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
            assert_int_equal(
                para_graph_add_records_fd(g, "lines", fd, &ra, &src), 0);
        } else {
            assert_int_equal(
                para_graph_add_records_file(g, "lines", path, &ra, &src), 0);
        }
        assert_int_equal(para_graph_add_sink(g, "msum", sizeof(para_slice_t),
                                             msum_sink, &got, PARA_NODE_SERIAL,
                                             &k),
                         0);
        assert_int_equal(para_graph_connect(g, src, k), 0);
        for (int rep = 0; rep < 2; rep++) {
            memset(&got, 0, sizeof got);
            int rc = para_run(rt, g);
            if (rc != 0)
                fail_msg("split run %d: %s: %s", rep, para_err_name(rc),
                         para_runtime_errmsg(rt));
            if (got.n != want.n || got.sum != want.sum || got.sq != want.sq)
                fail_msg("split run %d, block %zu, input %d: %llu records "
                         "(want %llu), checksums %s",
                         rep, block, (int)in, (unsigned long long)got.n,
                         (unsigned long long)want.n,
                         got.sum == want.sum && got.sq == want.sq ? "agree"
                                                                  : "differ");
        }
        para_graph_destroy(g);
    }
    if (fd >= 0)
        close(fd);
    if (f != NULL)
        fclose(f);
    unlink(path);
    free(path);
}

static void run_all_inputs(para_runtime_t *rt, const char *text, size_t n,
                           size_t block)
{
    for (int in = IN_FILE; in <= IN_STREAM; in++)
        run_text(rt, text, n, block, '\n', true, (enum input)in);
}

static void test_edge_cases(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    static const char *cases[] = {
        "",                         /* empty file: no records */
        "one line, no newline",     /* the last record needs no delimiter */
        "a\nbb\nccc\n",             /* ends with the delimiter */
        "\n\n\n\n",                 /* only newlines: four empty records */
        "crlf\r\nlines\r\nend\r\n", /* CRLF: the '\r' is dropped */
        "x\r\n\r\nlast\r",          /* an empty CRLF line, a final '\r' */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_all_inputs(rt, cases[i], strlen(cases[i]), 4096);
        run_all_inputs(rt, cases[i], strlen(cases[i]), 3); /* tiny blocks */
    }
    /* CR kept when asked; another delimiter. */
    const char *t = "a\r\nb\r\n";
    run_text(rt, t, strlen(t), 4, '\n', false, IN_FILE);
    const char *csv = "1;22;;333;";
    run_text(rt, csv, strlen(csv), 4, ';', true, IN_FD);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* Random lines of 0..300 bytes, one in 50 of 2000..7000 bytes, about
 * @p cap bytes; *n set to the length. */
static char *random_text(size_t cap, size_t *out_len)
{
    size_t n = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    uint64_t x = 42;
    while (n < cap - 400) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t len = (size_t)(x % 301);
        if (x % 50 == 0)
            len = 2000 + (size_t)(x % 5000); /* longer than small blocks */
        if (n + len + 1 > cap)
            break;
        for (size_t i = 0; i < len; i++)
            text[n + i] = (char)('a' + (i + x) % 26);
        n += len;
        text[n++] = '\n';
    }
    *out_len = n;
    return text;
}

/* Random text, blocks of 64 bytes to 1 MiB: records cross block (and
 * chunk) boundaries; some lines are longer than the block. */
static void test_random_text(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(3);
    size_t n;
    char *text = random_text(600000, &n);
    const size_t blocks[] = {64, 1000, 4096, (size_t)1 << 20};
    for (size_t b = 0; b < 4; b++)
        run_all_inputs(rt, text, n, blocks[b]);
    free(text);
    /* A record of 300 KiB among short ones, with and without a final
     * delimiter: a mapped chunk maps past its end in growing steps. */
    size_t big = (size_t)300 << 10, m = 0;
    text = malloc(big + 4096);
    assert_non_null(text);
    for (int i = 0; i < 40; i++)
        m += (size_t)sprintf(text + m, "short %d\n", i);
    memset(text + m, 'L', big);
    m += big;
    text[m++] = '\n';
    m += (size_t)sprintf(text + m, "after\nthe end");
    run_all_inputs(rt, text, m, 4096);
    run_all_inputs(rt, text, m, 100000);
    run_all_inputs(rt, text, m - 15, 4096); /* ends inside the long one */
    free(text);
    /* CRLF lines among LF ones and a '\r' inside lines, then ';' as the
     * delimiter: the splitter's 64-byte steps (records.c) with every
     * strip_cr case, records ending anywhere in a step. */
    text = random_text(300000, &n);
    uint64_t x = 7;
    for (size_t i = 1; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (text[i] == '\n' && text[i - 1] != '\n' && x % 3 == 0)
            text[i - 1] = '\r';
        else if (text[i] != '\n' && x % 97 == 0)
            text[i] = '\r';
    }
    const size_t big_blocks[] = {4096, (size_t)1 << 20};
    for (size_t b = 0; b < 2; b++) {
        run_text(rt, text, n, big_blocks[b], '\n', true, IN_FILE);
        run_text(rt, text, n, big_blocks[b], '\n', false, IN_FILE);
        run_text(rt, text, n, big_blocks[b], '\n', true, IN_FILE_PREAD);
    }
    for (size_t i = 0; i < n; i++)
        if (text[i] == '\n')
            text[i] = i % 5 == 0 ? '\n' : ';';
    run_text(rt, text, n, (size_t)1 << 20, ';', true, IN_FILE);
    free(text);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static int hash_map(void *ctx, const void *in, void *out)
{
    (void)ctx;
    const para_slice_t *sl = in;
    uint64_t h = rec_hash(sl->data, sl->len);
    /* Uneven work, so batches finish out of order. */
    volatile uint64_t spin = h % 64 == 0 ? 20000 : 0;
    while (spin > 0)
        spin = spin - 1;
    *(uint64_t *)out = h;
    return 0;
}

typedef struct hashes {
    uint64_t *h;
    size_t n, cap;
} hashes;

static int hash_sink(void *ctx, const void *in)
{
    hashes *s = ctx;
    if (s->n < s->cap)
        s->h[s->n] = *(const uint64_t *)in;
    s->n++;
    return 0;
}

/* records -> PARALLEL map (uneven work) -> ORDERED sink sees every record
 * in file order, for 1..4 workers, small and large blocks, mapped and read
 * (with an ORDERED node downstream the file is read serially: records.c
 * says why). */
static void test_split_order(void **state)
{
    (void)state;
    size_t n;
    char *text = random_text(400000, &n);
    char *path = write_temp(text, n);
    size_t want = 0;
    for (size_t i = 0; i < n; i++)
        want += text[i] == '\n';
    uint64_t *ref = malloc(want * sizeof *ref);
    assert_non_null(ref);
    for (size_t i = 0, pos = 0; i < want; i++) {
        const char *q = memchr(text + pos, '\n', n - pos);
        ref[i] = rec_hash(text + pos, (size_t)(q - (text + pos)));
        pos = (size_t)(q - text) + 1;
    }
    hashes hs = {malloc((want + 1) * sizeof(uint64_t)), 0, want + 1};
    assert_non_null(hs.h);
    const size_t blocks[] = {97, 4096, 65536};
    for (unsigned workers = 1; workers <= 4; workers++) {
        para_runtime_t *rt = make_rt(workers);
        for (size_t b = 0; b < 3; b++) {
            for (int map = 0; map < 2; map++) {
                para_records_attr_t ra;
                assert_int_equal(para_records_attr_init(&ra), 0);
                ra.block_size = blocks[b];
                ra.map = map;
                para_graph_t *g;
                para_node_t *src, *m, *k;
                assert_int_equal(para_graph_create(&g), 0);
                assert_int_equal(
                    para_graph_add_records_file(g, "lines", path, &ra, &src),
                    0);
                assert_int_equal(para_graph_add_map(g, "hash",
                                                    sizeof(para_slice_t), 8,
                                                    hash_map, NULL, 0, &m),
                                 0);
                assert_int_equal(para_graph_add_sink(g, "ordered", 8, hash_sink,
                                                     &hs, PARA_NODE_ORDERED,
                                                     &k),
                                 0);
                assert_int_equal(para_graph_connect(g, src, m), 0);
                assert_int_equal(para_graph_connect(g, m, k), 0);
                hs.n = 0;
                int rc = para_run(rt, g);
                if (rc != 0)
                    fail_msg("%u workers, block %zu: %s: %s", workers,
                             blocks[b], para_err_name(rc),
                             para_runtime_errmsg(rt));
                if (hs.n != want)
                    fail_msg("%u workers, block %zu, map %d: %zu records, "
                             "want %zu",
                             workers, blocks[b], map, hs.n, want);
                for (size_t i = 0; i < want; i++)
                    if (hs.h[i] != ref[i])
                        fail_msg("%u workers, block %zu, map %d: record %zu "
                                 "out of order or wrong",
                                 workers, blocks[b], map, i);
                para_graph_destroy(g);
            }
        }
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
    free(hs.h);
    free(ref);
    unlink(path);
    free(path);
    free(text);
}

/* A reduction over a split file: the count and the sum of the record
 * hashes, folded per worker. */
typedef struct rsum {
    uint64_t count, sum;
} rsum;

static void rs_init(void *ctx, void *st)
{
    (void)ctx;
    memset(st, 0, sizeof(rsum));
}

static int rs_fold(void *ctx, void *st, const void *in, size_t n)
{
    (void)ctx;
    rsum *r = st;
    const para_slice_t *sl = in;
    for (size_t i = 0; i < n; i++) {
        r->count++;
        r->sum += rec_hash(sl[i].data, sl[i].len);
    }
    return 0;
}

static void rs_merge(void *ctx, void *into, const void *from)
{
    (void)ctx;
    rsum *a = into;
    const rsum *b = from;
    a->count += b->count;
    a->sum += b->sum;
}

/* records (split, small chunks) -> reduce: the same result under every
 * policy, for 1..4 workers, and again when the graph runs a second time. */
static void test_split_reduce_every_policy(void **state)
{
    (void)state;
    static const char *const policies[] = {"ws", "memaware", "dhondt", "fifo"};
    size_t n;
    char *text = random_text(300000, &n);
    char *path = write_temp(text, n);
    rsum want = {0, 0};
    for (size_t pos = 0; pos < n;) {
        const char *q = memchr(text + pos, '\n', n - pos);
        want.count++;
        want.sum += rec_hash(text + pos, (size_t)(q - (text + pos)));
        pos = (size_t)(q - text) + 1;
    }
    for (unsigned p = 0; p < 4; p++) {
        for (unsigned workers = 1; workers <= 4; workers++) {
            para_runtime_attr_t a;
            assert_int_equal(para_runtime_attr_init(&a), 0);
            a.workers = workers;
            a.pin = "none";
            a.policy = policies[p];
            para_runtime_t *rt = NULL;
            assert_int_equal(para_runtime_create(&rt, &a), 0);
            para_records_attr_t ra;
            assert_int_equal(para_records_attr_init(&ra), 0);
            ra.block_size = 2048;
            rsum got;
            para_reduce_desc_t d = {.name = "sum",
                                    .in_size = sizeof(para_slice_t),
                                    .state_size = sizeof(rsum),
                                    .init = rs_init,
                                    .fold = rs_fold,
                                    .merge = rs_merge,
                                    .result = &got};
            para_graph_t *g;
            para_node_t *src, *k;
            assert_int_equal(para_graph_create(&g), 0);
            assert_int_equal(
                para_graph_add_records_file(g, "lines", path, &ra, &src), 0);
            assert_int_equal(para_graph_add_reduce(g, &d, &k), 0);
            assert_int_equal(para_graph_connect(g, src, k), 0);
            for (int rep = 0; rep < 2; rep++) {
                memset(&got, 0xab, sizeof got);
                int rc = para_run(rt, g);
                if (rc != 0)
                    fail_msg("%s/%u: %s: %s", policies[p], workers,
                             para_err_name(rc), para_runtime_errmsg(rt));
                if (got.count != want.count || got.sum != want.sum)
                    fail_msg("%s, %u workers, run %d: %llu records (want "
                             "%llu), sums differ: %d",
                             policies[p], workers, rep,
                             (unsigned long long)got.count,
                             (unsigned long long)want.count,
                             got.sum != want.sum);
            }
            para_graph_destroy(g);
            assert_int_equal(para_runtime_destroy(rt), 0);
        }
    }
    unlink(path);
    free(path);
    free(text);
}

/* Read with pread(), a file that shrinks during the run fails it with
 * PARA_ENODE naming the source (one worker: the sink truncates the file
 * after the first batch, before the second chunk is read). */
static int truncating_sink(void *ctx, const void *in)
{
    (void)in;
    const char *path = ctx;
    return truncate(path, 0) == 0 ? 0 : 1;
}

static void test_pread_file_shrinks(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(1);
    char text[400];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = i % 20 == 19 ? '\n' : 'x';
    char *path = write_temp(text, sizeof text);
    para_records_attr_t ra;
    assert_int_equal(para_records_attr_init(&ra), 0);
    ra.block_size = 64;
    ra.map = false;
    para_graph_t *g;
    para_node_t *src, *k;
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(
        para_graph_add_records_file(g, "shrinking", path, &ra, &src), 0);
    assert_int_equal(para_graph_add_sink(g, "truncate", sizeof(para_slice_t),
                                         truncating_sink, path, 0, &k),
                     0);
    assert_int_equal(para_graph_connect(g, src, k), 0);
    assert_int_equal(para_run(rt, g), PARA_ENODE);
    assert_non_null(strstr(para_runtime_errmsg(rt), "shrinking"));
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
    unlink(path);
    free(path);
}

/* Chunks read with pread() go into blocks of the runtime's pool: after a
 * graph is gone its blocks wait there for the next graph's chunks (the
 * same pool, with free blocks), and a bigger block size replaces the pool.
 * A block a sink keeps outlives the graph and the runtime, and is freed
 * with its last reference (ASan and LSan watch). */
static para_block_t *kept_block;
static const char *kept_data; /* the kept slice's bytes, in kept_block */

static int keep_first_sink(void *ctx, const void *in)
{
    (void)ctx;
    const para_slice_t *sl = in;
    if (kept_block == NULL && sl->len > 0 && sl->data[0] == 'a') {
        kept_block = sl->block;
        kept_data = sl->data;
        para_block_retain(kept_block, 1);
    }
    return 0;
}

static void run_pooled(para_runtime_t *rt, const char *path, size_t block,
                       seen *s)
{
    para_records_attr_t ra;
    assert_int_equal(para_records_attr_init(&ra), 0);
    assert_false(ra.map); /* the default: read, not mapped */
    ra.block_size = block;
    para_graph_t *g;
    para_node_t *src, *k;
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_records_file(g, "pooled", path, &ra, &src),
                     0);
    assert_int_equal(
        para_graph_add_sink(g, "collect", sizeof(para_slice_t),
                            s != NULL ? collect_sink : keep_first_sink, s,
                            PARA_NODE_SERIAL, &k),
        0);
    assert_int_equal(para_graph_connect(g, src, k), 0);
    assert_int_equal(para_run(rt, g), 0);
    para_graph_destroy(g);
}

static int cmp_rec(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_pool_between_graphs(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    /* 2,000 records "a0000\n" .. of 6 bytes, unsorted by the workers. */
    size_t n = 2000, len = 6 * n;
    char *text = malloc(len + 1);
    assert_non_null(text);
    for (size_t i = 0; i < n; i++)
        snprintf(text + 6 * i, 7, "a%04zu\n", i);
    char *path = write_temp(text, len);

    for (int round = 0; round < 2; round++) {
        seen s = {0};
        run_pooled(rt, path, 1024, &s);
        assert_int_equal(s.n, n);
        for (size_t i = 0; i < n; i++)
            s.rec[i][s.len[i]] = '\0';
        qsort(s.rec, n, sizeof *s.rec, cmp_rec);
        for (size_t i = 0; i < n; i++)
            assert_memory_equal(s.rec[i], text + 6 * i, 5);
        seen_clear(&s);
        /* The graph is gone; its blocks are in the runtime's pool. */
        assert_non_null(rt->records_pool);
        assert_true(para__records_pool_free_blocks(rt->records_pool) > 0);
    }
    struct para__block_pool *small = rt->records_pool;
    run_pooled(rt, path, 4096, NULL); /* bigger blocks: a new pool */
    assert_ptr_not_equal(rt->records_pool, small);
    assert_non_null(kept_block);
    assert_int_equal(para_runtime_destroy(rt), 0);
    /* The runtime and its pool are closed; the kept block still reads. */
    assert_int_equal(kept_data[0], 'a');
    assert_int_equal(kept_data[5], '\n');
    para_block_release(kept_block, 1);
    kept_block = NULL;
    unlink(path);
    free(path);
    free(text);
}

/* A pipe cannot be rewound: the first run reads it, the second fails with
 * PARA_ENODE naming the source. A missing file fails the same way. */
static void test_stream_runs_once(void **state)
{
    (void)state;
    para_runtime_t *rt = make_rt(2);
    int p[2];
    assert_int_equal(pipe(p), 0);
    const char *text = "p1\np2\np3";
    assert_int_equal(write(p[1], text, strlen(text)), (ssize_t)strlen(text));
    close(p[1]);
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *k;
    assert_int_equal(para_graph_add_records_fd(g, "pipe", p[0], NULL, &src), 0);
    seen s = {0};
    assert_int_equal(para_graph_add_sink(g, "collect", sizeof(para_slice_t),
                                         collect_sink, &s, PARA_NODE_ORDERED,
                                         &k),
                     0);
    assert_int_equal(para_graph_connect(g, src, k), 0);
    assert_int_equal(para_run(rt, g), 0);
    check_split(&s, text, strlen(text), '\n', true);
    seen_clear(&s);
    assert_int_equal(para_run(rt, g), PARA_ENODE);
    assert_non_null(strstr(para_runtime_errmsg(rt), "pipe"));
    para_graph_destroy(g);
    close(p[0]);

    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_graph_add_records_file(
                         g, "missing", "/nonexistent/para-file", NULL, &src),
                     0);
    assert_int_equal(para_graph_add_sink(g, "collect", sizeof(para_slice_t),
                                         collect_sink, &s, PARA_NODE_ORDERED,
                                         &k),
                     0);
    assert_int_equal(para_graph_connect(g, src, k), 0);
    assert_int_equal(para_run(rt, g), PARA_ENODE);
    assert_non_null(strstr(para_runtime_errmsg(rt), "missing"));
    assert_int_equal(s.n, 0);

    /* Bad arguments. */
    para_records_attr_t ra;
    assert_int_equal(para_records_attr_init(&ra), 0);
    ra.block_size = 0;
    assert_int_equal(para_graph_add_records_file(g, "b0", "/tmp", &ra, NULL),
                     PARA_EINVAL);
    ra.block_size = 16;
    ra.delimiter = 300;
    assert_int_equal(para_graph_add_records_file(g, "d", "/tmp", &ra, NULL),
                     PARA_EINVAL);
    assert_int_equal(para_graph_add_records_file(g, "p", NULL, NULL, NULL),
                     PARA_EINVAL);
    assert_int_equal(para_graph_add_records_fd(g, "f", -1, NULL, NULL),
                     PARA_EINVAL);
    assert_int_equal(para_records_attr_init(NULL), PARA_EINVAL);
    para_graph_destroy(g);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

/* Blocks: the last reference frees; slices of one block are released with
 * one call. */
static void test_blocks(void **state)
{
    (void)state;
    para_block_t *b = para_block_create(16);
    assert_non_null(b);
    memcpy(para_block_data(b), "abcdefgh", 8);
    para_block_retain(b, 3);
    para_slice_t sl[3] = {{para_block_data(b), 2, b},
                          {para_block_data(b) + 2, 3, b},
                          {para_block_data(b) + 5, 3, b}};
    assert_int_equal(para_slice_bytes(NULL, &sl[1]), 3);
    para_slices_release(NULL, sl, 3);
    para_block_release(b, 1); /* the last: ASan sees it freed */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_random_text),
        cmocka_unit_test(test_stream_runs_once),
        cmocka_unit_test(test_split_order),
        cmocka_unit_test(test_split_reduce_every_policy),
        cmocka_unit_test(test_pread_file_shrinks),
        cmocka_unit_test(test_pool_between_graphs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
