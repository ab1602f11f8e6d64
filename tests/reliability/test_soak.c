/*
 * Soak: thousands of consecutive runs on one runtime, with no growth of the
 * resident set, of para's live heap blocks or of open file descriptors.
 *
 * Each iteration builds the representative graph of rel_graph.h (fan-out,
 * merge, SERIAL and ORDERED nodes, flat-map, filter, callback / array
 * sources, collect), runs it, checks the answer and destroys it; every
 * 16th iteration also runs a graph that a node cancels and one whose node
 * fails, so the abort path is soaked as well. After a warm-up (pools,
 * allocator arenas) the RSS (/proc/self/statm) and the number of entries in
 * /proc/self/fd are taken, and again at the end.
 *
 * Two runtimes are soaked. With a fixed batch size (64 items) every batch
 * falls in the same size classes, so the per-worker batch caches are full
 * soon and the RSS must stay flat (within 1 MiB). With adaptive batch sizes,
 * batches of new size classes keep arriving for a while and the caches fill
 * up more slowly. Either way para's live blocks (the allocator wrappers of
 * rel_alloc.h, linked in by tests/CMakeLists.txt) outside the workers' batch
 * caches must not change at all, and the caches must stay within their
 * design bound (PARA__BATCH_POOL_DEPTH per class and PARA__BATCH_POOL_BYTES
 * per worker in the pools, PARA__SLAB_KEEP_BYTES of empty slab regions,
 * and CACHED_BLOCKS_MAX in all, with the batches other threads freed back
 * to a worker and it has not taken yet); every
 * block must be back when the runtime is destroyed.
 *
 * PARA_SOAK_RUNS sets the number of iterations per runtime (default 2000);
 * RELIABILITY.md records a longer run. Under sanitizers and valgrind the
 * RSS is printed but not checked; fds and blocks are always checked.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <dirent.h>
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
#include "rel_alloc.h"
#include "rel_graph.h"
#include "rel_util.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

/* RSS is only meaningful natively: ASan's quarantine and valgrind's shadow
 * memory grow by design. Valgrind preloads its vgpreload_*.so. */
static bool rss_checked(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return !UNDER_SANITIZER &&
           (pre == NULL || strstr(pre, "vgpreload") == NULL);
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    assert_non_null(f);
    long size = 0, resident = 0;
    assert_int_equal(fscanf(f, "%ld %ld", &size, &resident), 2);
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own fd */
}

static struct rel_ctx ctx;

/* Batches held in the workers' caches, and their bytes (read between runs:
 * para_run()'s return orders the workers' last cache operations before
 * this). The caches are the only thing a runtime may keep between runs. */
static long pooled_blocks(const para_runtime_t *rt, size_t *bytes)
{
    long n = 0;
    *bytes = 0;
    for (unsigned i = 0; i < rt->n_workers; i++) {
        size_t b = 0;
        for (unsigned c = 0; c < PARA__BATCH_CLASSES; c++) {
            n += rt->workers[i].cache.pool_len[c];
            b += (size_t)rt->workers[i].cache.pool_len[c] << (10 + c);
        }
        assert_int_equal(b, rt->workers[i].cache.pool_bytes);
        assert_true(b <= PARA__BATCH_POOL_BYTES);
        *bytes += b;
        /* Batches other threads freed back to this worker (batch.h), not
         * yet taken into its pools: the runtime is idle, so the stack is
         * read as a plain list. */
        const para__batch *r = atomic_load_explicit(
            &rt->workers[i].cache.returned.head, memory_order_acquire);
        unsigned pinned = 0; /* slab blocks there keep a region in use */
        for (; r != NULL; r = r->pool_next) {
            n++;
            if (r->slab != NULL)
                pinned++;
            else
                *bytes += (size_t)1 << (10 + r->size_class);
        }
        /* Its slab's regions (slab.h), each a record and 2 MiB: between
         * runs every block is back, or on that stack, so the regions in use
         * are at most those blocks', and the empty ones within the keep
         * bound. */
        const para__slab_cache *sc = &rt->workers[i].cache.slab;
        assert_true(sc->n_regions - sc->n_empty <= pinned);
        assert_true(sc->n_empty <=
                    PARA__SLAB_KEEP_BYTES / PARA__SLAB_REGION_BYTES);
        n += (long)sc->n_regions;
        *bytes += (size_t)sc->n_regions * PARA__SLAB_REGION_BYTES;
        /* Free family records (budget.h), bounded by their depth. */
        unsigned f = rt->workers[i].cache.families.len;
        assert_true(f <= PARA__FAMILY_CACHE_DEPTH);
        n += (long)f;
    }
    return n;
}

struct abort_ctx {
    para_runtime_t *rt;
    bool cancel; /* cancel (else fail) at item 100 */
};

static int aborting_sink(void *c, const void *in)
{
    struct abort_ctx *a = c;
    uint64_t x;
    memcpy(&x, in, sizeof x);
    if (x != 100)
        return 0;
    if (!a->cancel)
        return 5;
    return para_run_cancel(a->rt) == 0 ? 0 : 6;
}

static void aborted_run(para_runtime_t *rt, bool cancel)
{
    struct abort_ctx a = {rt, cancel};
    para_graph_t *g = NULL;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *r = NULL, *m = NULL, *k = NULL;
    assert_int_equal(para_graph_add_range(g, "range", 0, 100000, &r), 0);
    assert_int_equal(para_graph_add_map(g, "inc", 8, 8, rel_inc, NULL, 0, &m),
                     0);
    assert_int_equal(para_graph_add_sink(g, "sink", 8, aborting_sink, &a,
                                         PARA_NODE_ORDERED, &k),
                     0);
    assert_int_equal(para_graph_connect(g, r, m), 0);
    assert_int_equal(para_graph_connect(g, m, k), 0);
    int rc = para_run(rt, g);
    if (cancel)
        assert_true(rc == PARA_ECANCELED || rc == 0);
    else
        assert_int_equal(rc, PARA_ENODE);
    para_graph_destroy(g);
}

static void one_iteration(para_runtime_t *rt, long i)
{
    rel_ctx_reset(&ctx, 1000);
    para_graph_t *g = NULL;
    assert_int_equal(rel_graph_build(&g, &ctx), 0);
    int rc = para_run(rt, g);
    if (rc != 0)
        fail_msg("run %ld: %s: %s", i, para_err_name(rc),
                 para_runtime_errmsg(rt));
    if (!rel_ctx_check(&ctx, true))
        fail_msg("run %ld: wrong answer", i);
    para_graph_destroy(g);
    if (i % 16 == 0) {
        aborted_run(rt, true);
        aborted_run(rt, false);
    }
}

/* Soak one runtime; @p rss_bound_kib: the growth allowed after warm-up. */
static void soak(size_t batch_items, long rss_bound_kib, long live_bound)
{
    const char *s = getenv("PARA_SOAK_RUNS");
    long runs = s != NULL ? atol(s) : 2000;
    if (runs < 400)
        runs = 400;
    long live_before = live_now();
    para_runtime_t *rt = rel_runtime(2, batch_items, 0);
    assert_non_null(rt);
    long warmup = 200;
    for (long i = 0; i < warmup; i++)
        one_iteration(rt, i);
    long rss0 = rss_kib();
    int fds0 = open_fds();
    long live0 = live_now();
    size_t pooled_bytes0, pooled_bytes1;
    long pooled0 = pooled_blocks(rt, &pooled_bytes0);
    uint64_t t0 = rel_now_ns();
    long half = warmup + (runs - warmup) / 2;
    for (long i = warmup; i < half; i++)
        one_iteration(rt, i);
    long rss_mid = rss_kib();
    for (long i = half; i < runs; i++)
        one_iteration(rt, i);
    double secs = (double)(rel_now_ns() - t0) / 1e9;
    long rss1 = rss_kib();
    int fds1 = open_fds();
    long live1 = live_now();
    long pooled1 = pooled_blocks(rt, &pooled_bytes1);
    para_stats_t st;
    assert_int_equal(para_runtime_stats(rt, &st), 0);
    assert_int_equal(para_runtime_destroy(rt), 0);
    long live_after = live_now();
    print_message("    batch %s: %ld iterations (%llu runs) in %.1f s: RSS "
                  "%ld KiB after warm-up, %ld KiB at the end (%+ld KiB); "
                  "para's live blocks %ld -> %ld (in batch caches %ld -> "
                  "%ld, %zu -> %zu KiB; others %ld -> %ld), %ld leaked "
                  "after destroy; open fds %d -> %d\n",
                  batch_items ? "64" : "adaptive", runs,
                  (unsigned long long)st.runs, secs, rss0, rss1, rss1 - rss0,
                  live0, live1, pooled0, pooled1, pooled_bytes0 >> 10,
                  pooled_bytes1 >> 10, live0 - pooled0, live1 - pooled1,
                  live_after - live_before, fds0, fds1);
    assert_int_equal(fds1, fds0);
    assert_int_equal(live_after, live_before);
    /* Flat apart from the batch caches, and those within their bounds. */
    assert_int_equal(live1 - pooled1, live0 - pooled0);
    if (pooled1 > live_bound)
        fail_msg("%ld batches cached, more than %ld", pooled1, live_bound);
    /* A leak grows RSS in both halves alike; the allocator taking a new
     * arena for a thread (glibc, under load) is one step in one half, and
     * para's own blocks are counted exactly above. So: fail on steady
     * growth, or on a gross step. */
    long grew1 = rss_mid - rss0, grew2 = rss1 - rss_mid;
    long steady = grew1 < grew2 ? grew1 : grew2;
    if (rss_checked() &&
        (steady > rss_bound_kib / 2 || rss1 - rss0 > 8 * rss_bound_kib))
        fail_msg("RSS grew by %ld KiB then %ld KiB over %ld runs", grew1, grew2,
                 runs - warmup);
}

/* The design bound of the batch caches of a 2-worker runtime: blocks
 * (batches, free family records and slab regions) and KiB (each worker's
 * pools are checked against PARA__BATCH_POOL_BYTES, its empty regions
 * against PARA__SLAB_KEEP_BYTES). */
#define CACHED_BLOCKS_MAX                                                      \
    (2 * (PARA__BATCH_POOL_DEPTH * PARA__BATCH_CLASSES +                       \
          PARA__FAMILY_CACHE_DEPTH +                                           \
          PARA__SLAB_KEEP_BYTES / PARA__SLAB_REGION_BYTES))
#define CACHED_KIB_MAX                                                         \
    (2 * (long)((PARA__BATCH_POOL_BYTES + PARA__SLAB_KEEP_BYTES) >> 10))

static void test_soak_fixed_batches(void **state)
{
    (void)state;
    /* The caches may still take a few batches of the abort runs' sizes. */
    soak(64, 1024, CACHED_BLOCKS_MAX);
}

static void test_soak_adaptive_batches(void **state)
{
    (void)state;
    /* Batches of new size classes fill the caches for a while: RSS may grow
     * by what they may hold, plus 1 MiB. */
    soak(0, CACHED_KIB_MAX + 1024, CACHED_BLOCKS_MAX);
}

/* @p n zeroed workers, whose caches the tests use directly. */
static para__worker *zeroed_workers(size_t n)
{
    para__worker *w = aligned_alloc(PARA__WORKER_ALIGN, n * sizeof *w);
    assert_non_null(w);
    memset(w, 0, n * sizeof *w);
    return w;
}

/* Zero @p w and make its cache a home (para__batch_cache_init_returns()),
 * as a worker's is. */
static void make_home(para__worker *w)
{
    memset(w, 0, sizeof *w);
    para__batch_cache_init_returns(&w->cache);
}

/* The caches' bound, directly: a worker releasing many batches of the
 * largest class keeps PARA__BATCH_POOL_BYTES of them, at most
 * PARA__BATCH_POOL_DEPTH per class, and frees the rest. */
static void test_batch_cache_bound(void **state)
{
    (void)state;
    long live_before = live_now();
    para__worker *w = zeroed_workers(1);
    enum { N = 40 };
    para__batch *b[N];
    for (int k = 0; k < 2; k++) {
        /* k = 0: 2 MiB batches (the largest class); k = 1: 1 KiB ones. */
        size_t bytes = k == 0 ? ((size_t)2 << 20) - 4096 : 256;
        for (int i = 0; i < N; i++) {
            b[i] = para__batch_alloc(&w->cache, NULL, 1, bytes);
            assert_non_null(b[i]);
        }
        for (int i = 0; i < N; i++)
            para__batch_free(&w->cache, NULL, b[i]);
        long cached = 0;
        for (unsigned c = 0; c < PARA__BATCH_CLASSES; c++) {
            assert_true(w->cache.pool_len[c] <= PARA__BATCH_POOL_DEPTH);
            cached += w->cache.pool_len[c];
        }
        assert_true(w->cache.pool_bytes <= PARA__BATCH_POOL_BYTES);
        assert_int_equal(live_now() - live_before, 1 + cached);
        if (k == 0) /* the byte bound is the one that holds here */
            assert_int_equal(w->cache.pool_len[PARA__BATCH_CLASSES - 1],
                             PARA__BATCH_POOL_BYTES >> 21);
        else /* the caches are full of 2 MiB batches: none is kept */
            assert_int_equal(w->cache.pool_len[0], 0);
    }
    para__batch_cache_drain(&w->cache);
    assert_int_equal(w->cache.pool_bytes, 0);
    free(w);
    assert_int_equal(live_now(), live_before);
}

/* Runtimes come and go too: threads and hwloc topologies are released. */
static void test_soak_runtimes(void **state)
{
    (void)state;
    long live_before = live_now();
    for (int i = 0; i < 20; i++) {
        para_runtime_t *rt = rel_runtime(2, 0, 0);
        assert_non_null(rt);
        one_iteration(rt, 1);
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
    long rss0 = rss_kib();
    int fds0 = open_fds();
    for (int i = 0; i < 200; i++) {
        para_runtime_t *rt = rel_runtime((unsigned)(i % 4) + 1, 0, 0);
        assert_non_null(rt);
        one_iteration(rt, 1);
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
    long rss1 = rss_kib();
    int fds1 = open_fds();
    print_message("    200 runtimes created, run and destroyed: RSS %ld -> "
                  "%ld KiB, fds %d -> %d\n",
                  rss0, rss1, fds0, fds1);
    assert_int_equal(fds1, fds0);
    assert_int_equal(live_now(), live_before);
    if (rss_checked() && rss1 - rss0 > 4096)
        fail_msg("RSS grew by %ld KiB over 200 runtimes", rss1 - rss0);
}

/* A batch freed by another worker goes back to the cache that allocated
 * it, which reuses it (no fresh allocation); a cache without returns (the
 * zeroed one) is nobody's home. A home's large batches are slab blocks
 * (and its first ones of 16-32 KiB: test_small_batches_in_slab). A large
 * batch freed into a pool whose
 * bytes small batches hold displaces them; a small one never displaces a
 * large one. */
static void test_batch_returns(void **state)
{
    (void)state;
    long live_before = live_now();
    para__worker *w = zeroed_workers(3);
    _Atomic uint64_t fresh;
    atomic_init(&fresh, 0);
    for (int i = 0; i < 2; i++) {
        w[i].cache.allocated = &fresh;
        para__batch_cache_init_returns(&w[i].cache);
    }
    enum { M = 6 };
    para__batch *b[M];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < M; i++) {
            b[i] = para__batch_alloc(&w[0].cache, NULL, 1, 100000);
            assert_non_null(b[i]);
            assert_ptr_equal(b[i]->home, &w[0].cache);
        }
        for (int i = 0; i < M; i++) /* the other worker frees them */
            para__batch_free(&w[1].cache, NULL, b[i]);
        for (unsigned c = 0; c < PARA__BATCH_CLASSES; c++)
            assert_int_equal(w[1].cache.pool_len[c], 0);
    }
    /* Only the first round allocated. */
    assert_int_equal(atomic_load(&fresh), M);

    /* Large batches of a home are slab blocks (slab.h), the smallest
     * classes never are; each goes back where it came from. */
    para__batch *large = para__batch_alloc(&w[0].cache, NULL, 1, 100000);
    para__batch *little = para__batch_alloc(&w[0].cache, NULL, 1, 100);
    assert_non_null(large->slab);
    assert_null(little->slab);
    para__batch_free(&w[0].cache, NULL, large);
    para__batch_free(&w[0].cache, NULL, little);
    assert_int_equal(w[0].cache.pool_len[0], 1);
    assert_int_equal(w[0].cache.slab.n_regions, 1);

    /* Eviction, in a cache that is nobody's home (its large batches come
     * from malloc and go to its pools): fill the pool with 64 KiB batches
     * up to the byte bound's last 64 KiB, then free a 2 MiB one into it. */
    para__batch_cache *plain = &w[2].cache;
    para__batch *small[PARA__BATCH_POOL_DEPTH], *big;
    for (int i = 0; i < PARA__BATCH_POOL_DEPTH; i++)
        small[i] = para__batch_alloc(plain, NULL, 1, 60000);
    big = para__batch_alloc(plain, NULL, 1, ((size_t)2 << 20) - 4096);
    para__batch *bigs[3];
    for (int i = 0; i < 3; i++)
        bigs[i] = para__batch_alloc(plain, NULL, 1, ((size_t)2 << 20) - 4096);
    for (int i = 0; i < 3; i++) /* 6 MiB of 2 MiB batches */
        para__batch_free(plain, NULL, bigs[i]);
    for (int i = 0; i < PARA__BATCH_POOL_DEPTH; i++) /* 1 MiB of 64 KiB */
        para__batch_free(plain, NULL, small[i]);
    assert_int_equal(plain->pool_len[6], PARA__BATCH_POOL_DEPTH);
    para__batch_free(plain, NULL, big); /* displaces 64 KiB ones */
    assert_int_equal(plain->pool_len[PARA__BATCH_CLASSES - 1], 4);
    assert_int_equal(plain->pool_len[6], 0);
    assert_true(plain->pool_bytes <= PARA__BATCH_POOL_BYTES);
    small[0] = para__batch_alloc(plain, NULL, 1, 60000);
    para__batch_free(plain, NULL, small[0]); /* no room, none made */
    assert_int_equal(plain->pool_len[6], 0);
    assert_int_equal(plain->pool_len[PARA__BATCH_CLASSES - 1], 4);

    /* A returned batch still on the stack is freed by the drain. */
    b[0] = para__batch_alloc(&w[0].cache, NULL, 1, 100);
    para__batch_free(&w[1].cache, NULL, b[0]);
    for (int i = 0; i < 3; i++)
        para__batch_cache_drain(&w[i].cache);
    assert_int_equal(w[0].cache.slab.n_regions, 0);
    free(w);
    assert_int_equal(live_now(), live_before);
}

/* Small batches of 16 and 32 KiB of a home come from 64 KiB blocks of its
 * slab while a region is mapped and has room, at most
 * PARA__BATCH_SMALL_IN_SLAB at once and PARA__BATCH_SMALL_SLAB_USES times
 * per class; otherwise, and for smaller classes, from the pool or
 * malloc(), as before. The slab never maps a region for them. */
static void test_small_batches_in_slab(void **state)
{
    (void)state;
    long live_before = live_now();
    para__worker *w = zeroed_workers(1);
    make_home(w);
    para__batch_cache *c = &w->cache;
    const size_t k16 = 10000; /* with the header: the 16 KiB class */
    /* No region mapped: malloc(), and no region mapped for it. */
    para__batch *b = para__batch_alloc(c, NULL, 1, k16);
    assert_null(b->slab);
    assert_int_equal(c->slab.n_regions, 0);
    unsigned cls16 = b->size_class;
    para__batch_free(c, NULL, b);
    assert_int_equal(c->pool_len[cls16], 1);
    para__batch_cache_drain(c);
    make_home(w);

    /* A reserved region: the bound on those alive at once, over classes;
     * a 1 KiB batch is never a slab block. */
    para__slab_reserve(&c->slab, 1);
    para__batch *tiny = para__batch_alloc(c, NULL, 1, 100);
    assert_null(tiny->slab);
    enum { N = PARA__BATCH_SMALL_IN_SLAB };
    para__batch *s[N + 1];
    for (int i = 0; i <= N; i++) /* classes 16 KiB, 32 KiB, 16 KiB, ... */
        s[i] = para__batch_alloc(c, NULL, 1, k16 << (i & 1));
    for (int i = 0; i < N; i++) {
        assert_non_null(s[i]->slab);
        assert_int_equal(s[i]->alloc_bytes, (size_t)16384 << (i & 1));
        assert_int_equal(s[i]->capacity + ((unsigned char *)s[i]->data -
                                           (unsigned char *)s[i]),
                         (size_t)16384 << (i & 1));
    }
    assert_null(s[N]->slab); /* the bound */
    assert_int_equal(c->small_in_slab, N);
    assert_int_equal(c->slab.n_regions, 1);
    for (int i = 0; i <= N; i++)
        para__batch_free(c, NULL, s[i]);
    para__batch_free(c, NULL, tiny);
    assert_int_equal(c->small_in_slab, 0);
    assert_int_equal(c->slab.n_empty, 1); /* the region is whole again */

    /* The pool comes first; past the uses per class, malloc(). */
    para__batch *pooled = para__batch_alloc(c, NULL, 1, k16);
    assert_null(pooled->slab); /* s[N], pooled when freed */
    for (unsigned i = c->small_slab_uses[cls16];
         i < PARA__BATCH_SMALL_SLAB_USES; i++) {
        b = para__batch_alloc(c, NULL, 1, k16);
        assert_non_null(b->slab);
        para__batch_free(c, NULL, b);
    }
    b = para__batch_alloc(c, NULL, 1, k16);
    assert_null(b->slab);
    para__batch_free(c, NULL, b);
    para__batch_free(c, NULL, pooled);
    assert_int_equal(c->pool_len[cls16], 2);
    para__batch_cache_drain(c);
    free(w);
    assert_int_equal(live_now(), live_before);
}

/* What a worker does when it starts (scheduler.c): one empty slab region,
 * faulted in, and nothing in its pools (small batches are not allocated
 * ahead: worker_main() says why); a run's first large batches, of several
 * sizes, come from that region without another mapping. */
static void test_worker_start_reserve(void **state)
{
    (void)state;
    long live_before = live_now();
    para__worker *w = zeroed_workers(1);
    make_home(w);
    para__slab_reserve(&w->cache.slab, 1);
    assert_int_equal(w->cache.slab.n_regions, 1);
    assert_int_equal(w->cache.slab.n_empty, 1);
    for (unsigned c = 0; c < PARA__BATCH_CLASSES; c++)
        assert_int_equal(w->cache.pool_len[c], 0);
    para__slab_reserve(&w->cache.slab, 1); /* already there */
    assert_int_equal(w->cache.slab.n_regions, 1);
    para__batch *b[3];
    for (int i = 0; i < 3; i++) { /* 64, 128 and 256 KiB */
        b[i] = para__batch_alloc(&w->cache, NULL, 2, ((size_t)48 << 10) << i);
        assert_non_null(b[i]);
        assert_non_null(b[i]->slab);
    }
    assert_int_equal(w->cache.slab.n_regions, 1);
    assert_int_equal(w->cache.slab.n_empty, 0);
    for (int i = 0; i < 3; i++)
        para__batch_free(&w->cache, NULL, b[i]);
    assert_int_equal(w->cache.slab.n_empty, 1);
    para__batch_cache_drain(&w->cache);
    assert_int_equal(w->cache.slab.n_regions, 0);
    free(w);
    assert_int_equal(live_now(), live_before);
}

/* para__batch_fit_items(): a count whose batch would spill a header's
 * worth into the next size class is trimmed back into its items' class (to
 * a multiple of 64), never by more than that; small counts, counts that
 * already fit and items past the classes stay as they are. */
static void test_batch_fit_items(void **state)
{
    (void)state;
    size_t fit = para__batch_fit_items(32768, 8);
    assert_true(fit < 32768 && fit >= 32768 - 64);
    assert_int_equal(fit % 64, 0);
    assert_int_equal(para__batch_alloc_size(PARA__BATCH_FIT_TASKS, fit * 8),
                     (size_t)256 << 10);
    assert_int_equal(para__batch_alloc_size(PARA__BATCH_FIT_TASKS, 32768 * 8),
                     (size_t)512 << 10);
    for (size_t n = 1; n <= 100000; n = n * 3 / 2 + 1)
        for (size_t size = 1; size <= 4096; size *= 4) {
            size_t f = para__batch_fit_items(n, size);
            assert_true(f >= 1 && f <= n);
            /* Never more than a batch's header trimmed (and the rounding
             * down to 64). */
            assert_true((n - f) * size <= 1024 + 64 * size);
            if (f != n)
                assert_true(
                    para__batch_alloc_size(PARA__BATCH_FIT_TASKS, f * size) <
                    para__batch_alloc_size(PARA__BATCH_FIT_TASKS, n * size));
        }
    assert_int_equal(para__batch_fit_items(16, 8), 16);
    assert_int_equal(para__batch_fit_items(1000, 0), 1000);
    assert_int_equal(para__batch_fit_items(3, (size_t)3 << 20), 3);
}

int main(void)
{
    para_set_log_fn(rel_quiet_log, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_soak_fixed_batches),
        cmocka_unit_test(test_soak_adaptive_batches),
        cmocka_unit_test(test_soak_runtimes),
        cmocka_unit_test(test_batch_cache_bound),
        cmocka_unit_test(test_batch_returns),
        cmocka_unit_test(test_worker_start_reserve),
        cmocka_unit_test(test_small_batches_in_slab),
        cmocka_unit_test(test_batch_fit_items),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
