/*
 * Topology plans (runtime/topology.c) on synthetic hwloc topologies:
 * default worker counts (cores vs PUs), compact placement in logical order,
 * breadth-first PU placement (OS indexes that differ from logical ones, and
 * cores with different PU counts), wraparound with more workers than cores,
 * exact victim orders and level boundaries, the invariants of every row on
 * several topologies, level shuffling, PIN_NONE, disallowed PUs, argument
 * errors, and a soft pinning failure. One test pins threads on the real
 * machine and checks them with sched_getaffinity() (skipped if pinning is
 * refused). Leaks show under ASan.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity, CPU_* */
#endif

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "para/errors.h"
#include "para/runtime.h"
#include "topology.h"

#define NUMA_TOPO "pack:2 numa:2 core:4 pu:2"
#define CACHE_TOPO "pack:1 l3:2 l2:2 core:2 pu:1"

/* ---- helpers ----------------------------------------------------------- */

static hwloc_topology_t synthetic(const char *desc)
{
    hwloc_topology_t t;
    assert_int_equal(hwloc_topology_init(&t), 0);
    assert_int_equal(hwloc_topology_set_synthetic(t, desc), 0);
    assert_int_equal(hwloc_topology_load(t), 0);
    return t;
}

static void make(hwloc_topology_t t, unsigned n, para__pin_mode mode,
                 para__topology_plan *p)
{
    assert_int_equal(para__topology_plan_make(t, n, mode, p), 0);
}

static const unsigned *row_of(const para__topology_plan *p, unsigned w)
{
    return p->victims + (size_t)w * (p->n_workers - 1);
}

static const unsigned *ends_of(const para__topology_plan *p, unsigned w)
{
    return p->level_end + (size_t)w * (p->n_workers - 1);
}

/* Row w must be exactly @p want, and level_end exactly @p want_end. */
static void check_row(const para__topology_plan *p, unsigned w,
                      const unsigned *want, const unsigned *want_end)
{
    unsigned m = p->n_workers - 1;
    for (unsigned k = 0; k < m; k++) {
        if (row_of(p, w)[k] != want[k] || ends_of(p, w)[k] != want_end[k])
            fail_msg("worker %u position %u: victim %u end %u, want %u end %u",
                     w, k, row_of(p, w)[k], ends_of(p, w)[k], want[k],
                     want_end[k]);
    }
}

/* cpuset of worker i must be the cpuset of core L#c. */
static void check_on_core(hwloc_topology_t t, const para__topology_plan *p,
                          unsigned i, unsigned c)
{
    hwloc_obj_t core = hwloc_get_obj_by_type(t, HWLOC_OBJ_CORE, c);
    assert_non_null(core);
    assert_non_null(p->cpuset[i]);
    if (!hwloc_bitmap_isequal(p->cpuset[i], core->cpuset))
        fail_msg("worker %u is not on core L#%u", i, c);
}

/* The invariants of every row (see the top of topology.c), with the distance
 * recomputed independently from the workers' cpusets: the deepest object
 * containing both cpusets. */
static void check_invariants(hwloc_topology_t t, const para__topology_plan *p)
{
    unsigned n = p->n_workers;
    unsigned m = n - 1;
    bool *seen = calloc(n, sizeof *seen);
    assert_non_null(seen);
    hwloc_bitmap_t both = hwloc_bitmap_alloc();
    assert_non_null(both);
    for (unsigned w = 0; w < n; w++) {
        memset(seen, 0, n * sizeof *seen);
        const unsigned *row = row_of(p, w);
        const unsigned *end = ends_of(p, w);
        int prev_depth = INT32_MAX;
        for (unsigned k = 0; k < m; k++) {
            unsigned v = row[k];
            assert_true(v < n);
            assert_true(v != w);
            assert_false(seen[v]);
            seen[v] = true;
            assert_true(end[k] > k);
            assert_true(end[k] <= m);
            bool level_start = k == 0 || end[k - 1] == k;
            if (!level_start) {
                assert_int_equal(end[k], end[k - 1]);
                assert_true(row[k - 1] < v); /* ascending in a level */
            }
            if (p->cpuset[w] == NULL)
                continue;
            hwloc_bitmap_or(both, p->cpuset[w], p->cpuset[v]);
            hwloc_obj_t cover = hwloc_get_obj_covering_cpuset(t, both);
            assert_non_null(cover);
            /* Levels of the tree with a single child (core + L1 + L2)
             * have equal cpusets: compare the topmost one. */
            while (cover->parent != NULL &&
                   hwloc_bitmap_isequal(cover->parent->cpuset, cover->cpuset))
                cover = cover->parent;
            int d = cover->depth;
            if (level_start)
                assert_true(d < prev_depth);
            else
                assert_int_equal(d, prev_depth);
            prev_depth = d;
        }
        assert_int_equal(m == 0 ? 0 : end[m - 1], m);
    }
    hwloc_bitmap_free(both);
    free(seen);
}

static unsigned n_levels(const para__topology_plan *p, unsigned w)
{
    unsigned levels = 0;
    for (unsigned k = 0; k < p->n_workers - 1; k = ends_of(p, w)[k])
        levels++;
    return levels;
}

/* Log capture: count warnings (level 1). */
static void count_log(int level, const char *msg, void *arg)
{
    (void)msg;
    if (level == 1)
        ++*(int *)arg;
}

/* ---- tests -------------------------------------------------------------- */

static void test_bad_args(void **state)
{
    (void)state;
    hwloc_topology_t t = synthetic("core:2 pu:1");
    para__topology_plan p;
    memset(&p, 0xab, sizeof p);
    assert_int_equal(para__topology_plan_make(NULL, 0, PARA__PIN_CORES, &p),
                     PARA_EINVAL);
    /* out is zeroed even on failure, so that free is harmless. */
    assert_int_equal(p.n_workers, 0);
    assert_null(p.victims);
    para__topology_plan_free(&p);
    assert_int_equal(para__topology_plan_make(t, 0, PARA__PIN_CORES, NULL),
                     PARA_EINVAL);
    assert_int_equal(para__topology_plan_make(t, 0, (para__pin_mode)7, &p),
                     PARA_EINVAL);
    assert_int_equal(para__topology_plan_make(t, 0, (para__pin_mode)-1, &p),
                     PARA_EINVAL);
    assert_int_equal(para__topology_plan_make(t, PARA__TOPOLOGY_MAX_WORKERS + 1,
                                              PARA__PIN_CORES, &p),
                     PARA_EINVAL);
    assert_null(p.cpuset);
    para__topology_plan_free(NULL);
    para__topology_plan_free(&p);

    make(t, 2, PARA__PIN_CORES, &p);
    assert_int_equal(para__topology_pin_self(NULL, &p, 0), PARA_EINVAL);
    assert_int_equal(para__topology_pin_self(t, NULL, 0), PARA_EINVAL);
    assert_int_equal(para__topology_pin_self(t, &p, 2), PARA_EINVAL);
    uint64_t rng = 1;
    para__topology_shuffle_levels(NULL, 0, &rng);
    para__topology_shuffle_levels(&p, 0, NULL);
    para__topology_shuffle_levels(&p, 5, &rng); /* out of range: no-op */
    assert_int_equal(row_of(&p, 0)[0], 1);
    para__topology_plan_free(&p);
    para__topology_plan_free(&p); /* twice is harmless */
    hwloc_topology_destroy(t);
}

static void test_default_counts(void **state)
{
    (void)state;
    static const struct {
        const char *desc;
        unsigned cores, pus;
    } cases[] = {
        {NUMA_TOPO, 16, 32},   {CACHE_TOPO, 8, 8},
        {"core:2 pu:1", 2, 2}, {"pack:2 core:3 pu:4", 6, 24},
        {"pu:4", 4, 4}, /* no Core objects: PUs count as cores */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hwloc_topology_t t = synthetic(cases[i].desc);
        para__topology_plan p;
        make(t, 0, PARA__PIN_CORES, &p);
        assert_int_equal(p.n_workers, cases[i].cores);
        para__topology_plan_free(&p);
        make(t, 0, PARA__PIN_PUS, &p);
        assert_int_equal(p.n_workers, cases[i].pus);
        para__topology_plan_free(&p);
        make(t, 0, PARA__PIN_NONE, &p);
        assert_int_equal(p.n_workers, cases[i].cores);
        para__topology_plan_free(&p);
        hwloc_topology_destroy(t);
    }
}

static void test_placement_cores(void **state)
{
    (void)state;
    hwloc_topology_t t = synthetic(NUMA_TOPO);
    para__topology_plan p;
    make(t, 0, PARA__PIN_CORES, &p);
    for (unsigned i = 0; i < 16; i++) {
        check_on_core(t, &p, i, i); /* distinct cores, logical order */
        assert_int_equal(hwloc_bitmap_weight(p.cpuset[i]), 2);
        assert_int_equal(p.os_pu[i], (int)(2 * i));
        assert_int_equal(p.numa[i], (int)(i / 4));
    }
    para__topology_plan_free(&p);

    /* Fewer workers than cores: the first cores, compactly. */
    make(t, 3, PARA__PIN_CORES, &p);
    assert_int_equal(p.n_workers, 3);
    for (unsigned i = 0; i < 3; i++)
        check_on_core(t, &p, i, i);
    assert_int_equal(p.numa[2], 0);
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);
}

/* Larger steals across NUMA nodes: one task from a neighbour on the same
 * node, half the victim's deque (at most PARA__REMOTE_STEAL_MAX) from
 * another node. */
static void test_steal_count_across_numa(void **state)
{
    (void)state;
    hwloc_topology_t t = synthetic(NUMA_TOPO);
    para__topology_plan p;
    make(t, 0, PARA__PIN_CORES, &p); /* workers 0-3 on node 0, 4-7 on 1 */
    assert_int_equal(para__topology_steal_count(&p, 0, 1, 20), 1);
    assert_int_equal(para__topology_steal_count(&p, 0, 3, 1000), 1);
    assert_int_equal(para__topology_steal_count(&p, 0, 4, 0), 1);
    assert_int_equal(para__topology_steal_count(&p, 0, 4, 1), 1);
    assert_int_equal(para__topology_steal_count(&p, 0, 4, 6), 3);
    assert_int_equal(para__topology_steal_count(&p, 5, 2, 10), 5);
    assert_int_equal(para__topology_steal_count(&p, 15, 0, 1000),
                     PARA__REMOTE_STEAL_MAX);
    para__topology_plan_free(&p);
    /* Unpinned workers have no NUMA node: single steals. */
    make(t, 16, PARA__PIN_NONE, &p);
    assert_int_equal(para__topology_steal_count(&p, 0, 15, 1000), 1);
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);
}

/* A whole runtime on a synthetic two-node topology (HWLOC_SYNTHETIC is
 * read by hwloc_topology_load()): workers cannot be pinned there (a warning
 * each), but the plan has NUMA nodes, so steals between the two halves take
 * several tasks. Many small batches, all checked. */
static int add_one(void *ctx, const void *in, void *out)
{
    (void)ctx;
    *(uint64_t *)out = *(const uint64_t *)in + 1;
    return 0;
}

static int sum_into(void *ctx, const void *in)
{
    *(uint64_t *)ctx += *(const uint64_t *)in;
    return 0;
}

static _Atomic int unpinned_warnings;

static void count_log_atomic(int level, const char *msg, void *arg)
{
    (void)msg;
    (void)arg;
    if (level == 1)
        /* relaxed: a count read after the workers stopped. */
        atomic_fetch_add_explicit(&unpinned_warnings, 1, memory_order_relaxed);
}

static void test_runtime_on_two_numa_nodes(void **state)
{
    (void)state;
    if (getenv("HWLOC_SYNTHETIC") != NULL || getenv("HWLOC_XMLFILE") != NULL)
        skip();
    setenv("HWLOC_SYNTHETIC", "numa:2 core:2 pu:1", 1);
    atomic_store_explicit(&unpinned_warnings, 0, memory_order_relaxed);
    para_set_log_fn(count_log_atomic, NULL);
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = 4;
    a.batch_items = 64;
    para_runtime_t *rt = NULL;
    int rc = para_runtime_create(&rt, &a);
    unsetenv("HWLOC_SYNTHETIC");
    assert_int_equal(rc, 0);
    uint64_t total = 0;
    for (int run = 0; run < 5; run++) {
        para_graph_t *g;
        assert_int_equal(para_graph_create(&g), 0);
        para_node_t *r, *m, *sink;
        uint64_t sum = 0;
        assert_int_equal(para_graph_add_range(g, "r", 0, 100000, &r), 0);
        assert_int_equal(
            para_graph_add_map(g, "inc", 8, 8, add_one, NULL, 0, &m), 0);
        assert_int_equal(para_graph_add_sink(g, "sum", 8, sum_into, &sum,
                                             PARA_NODE_SERIAL, &sink),
                         0);
        assert_int_equal(para_graph_connect(g, r, m), 0);
        assert_int_equal(para_graph_connect(g, m, sink), 0);
        assert_int_equal(para_run(rt, g), 0);
        assert_int_equal(sum, 100000ull * 99999ull / 2 + 100000ull);
        total += sum;
        para_graph_destroy(g);
    }
    para_stats_t st;
    assert_int_equal(para_runtime_stats(rt, &st), 0);
    print_message("two synthetic NUMA nodes: %llu steals of %llu tasks\n",
                  (unsigned long long)st.steals, (unsigned long long)st.tasks);
    assert_int_equal(para_runtime_destroy(rt), 0);
    para_set_log_fn(NULL, NULL);
    /* Every worker thread said it runs unpinned: the synthetic topology was
     * used. Worker 0 has no thread: the thread in para_run() is worker 0. */
    assert_true(
        atomic_load_explicit(&unpinned_warnings, memory_order_relaxed) >= 3);
    assert_true(total > 0);
}

/* Worker memory on the worker's NUMA node, on the real machine: a page
 * bound through the plan reads back as bound to that node. */
static void test_bind_memory_real_machine(void **state)
{
    (void)state;
    hwloc_topology_t t;
    assert_int_equal(hwloc_topology_init(&t), 0);
    assert_int_equal(hwloc_topology_load(t), 0);
    para__topology_plan p;
    make(t, 0, PARA__PIN_CORES, &p);
    void *page = aligned_alloc(4096, 4096);
    assert_non_null(page);
    memset(page, 1, 4096); /* touched first here, then migrated */
    int rc = para__topology_bind_memory(t, &p, 0, page, 4096);
    const struct hwloc_topology_support *sup = hwloc_topology_get_support(t);
    /* A container may refuse mbind() even where hwloc supports it: the
     * binding is then skipped (logged), which is never fatal. */
    if (p.numa[0] >= 0 && sup->membind->set_area_membind &&
        sup->membind->bind_membind && rc == 0) {
        hwloc_bitmap_t nodes = hwloc_bitmap_alloc();
        hwloc_membind_policy_t policy;
        assert_int_equal(hwloc_get_area_membind(t, page, 4096, nodes, &policy,
                                                HWLOC_MEMBIND_BYNODESET),
                         0);
        assert_true(hwloc_bitmap_isset(nodes, (unsigned)p.numa[0]));
        print_message("worker 0 memory: NUMA node %d, policy %d\n", p.numa[0],
                      (int)policy);
        hwloc_bitmap_free(nodes);
    } else {
        print_message("no NUMA binding here (rc %d)\n", rc);
    }
    assert_int_equal(para__topology_bind_memory(t, &p, p.n_workers, page, 4096),
                     PARA_EINVAL);
    free(page);
    para__topology_plan_free(&p);
    /* Unpinned plans have no node: nothing to do. */
    make(t, 2, PARA__PIN_NONE, &p);
    page = aligned_alloc(4096, 4096);
    assert_int_equal(para__topology_bind_memory(t, &p, 1, page, 4096), 0);
    free(page);
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);
}

static void test_placement_pus(void **state)
{
    (void)state;
    /* OS indexes as on many Intel machines: the SMT siblings of core L#0
     * are P#0 and P#2. */
    hwloc_topology_t t = synthetic("core:2 pu:2(indexes=0,2,1,3)");
    para__topology_plan p;
    make(t, 0, PARA__PIN_PUS, &p);
    assert_int_equal(p.n_workers, 4);
    /* Breadth-first: first PU of each core, then the second ones. */
    static const int want_pu[] = {0, 1, 2, 3};
    static const unsigned want_core[] = {0, 1, 0, 1};
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(hwloc_bitmap_weight(p.cpuset[i]), 1);
        assert_int_equal(p.os_pu[i], want_pu[i]);
        assert_true(hwloc_bitmap_isset(p.cpuset[i], (unsigned)want_pu[i]));
        hwloc_obj_t core =
            hwloc_get_obj_by_type(t, HWLOC_OBJ_CORE, want_core[i]);
        assert_true(hwloc_bitmap_isincluded(p.cpuset[i], core->cpuset));
        assert_int_equal(p.numa[i], 0);
    }
    /* SMT siblings are each other's only nearest victim. */
    static const unsigned row0[] = {2, 1, 3}, end0[] = {1, 3, 3};
    check_row(&p, 0, row0, end0);
    para__topology_plan_free(&p);

    make(t, 0, PARA__PIN_CORES, &p);
    assert_int_equal(p.n_workers, 2);
    assert_int_equal(p.os_pu[0], 0); /* first PU of {0,2} */
    assert_int_equal(p.os_pu[1], 1); /* first PU of {1,3} */
    assert_true(hwloc_bitmap_isset(p.cpuset[0], 2));
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);

    /* Fewer PU-workers than cores never doubles up on a core. */
    t = synthetic(NUMA_TOPO);
    make(t, 0, PARA__PIN_PUS, &p);
    assert_int_equal(p.n_workers, 32);
    for (unsigned i = 0; i < 32; i++) {
        assert_int_equal(p.os_pu[i], (int)(i < 16 ? 2 * i : 2 * (i - 16) + 1));
        assert_int_equal(p.numa[i], (int)(i % 16 / 4));
    }
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);
}

static void test_placement_uneven_cores(void **state)
{
    (void)state;
    /* Core L#0 loses a PU (as with a hybrid CPU, or a disallowed PU): the
     * second round skips it. */
    hwloc_topology_t t = synthetic("core:3 pu:2");
    hwloc_bitmap_t keep = hwloc_bitmap_alloc();
    hwloc_bitmap_set_range(keep, 0, 5);
    hwloc_bitmap_clr(keep, 1);
    assert_int_equal(hwloc_topology_restrict(t, keep, 0), 0);
    hwloc_bitmap_free(keep);
    para__topology_plan p;
    make(t, 0, PARA__PIN_PUS, &p);
    assert_int_equal(p.n_workers, 5);
    static const int want[] = {0, 2, 4, 3, 5};
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(p.os_pu[i], want[i]);
    check_invariants(t, &p);
    para__topology_plan_free(&p);
    /* Wrapping follows the same list. */
    make(t, 7, PARA__PIN_PUS, &p);
    assert_int_equal(p.os_pu[5], 0);
    assert_int_equal(p.os_pu[6], 2);
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);
}

static void test_wraparound(void **state)
{
    (void)state;
    hwloc_topology_t t = synthetic(NUMA_TOPO);
    para__topology_plan p;
    make(t, 20, PARA__PIN_CORES, &p);
    assert_int_equal(p.n_workers, 20);
    for (unsigned i = 0; i < 20; i++)
        check_on_core(t, &p, i, i % 16);
    /* Worker 16 shares core 0 with worker 0: nearest of all. */
    static const unsigned row0[] = {16, 1, 2, 3,  17, 18, 19, 4,  5, 6,
                                    7,  8, 9, 10, 11, 12, 13, 14, 15};
    static const unsigned end0[] = {1,  7,  7,  7,  7,  7,  7,  11, 11, 11,
                                    11, 19, 19, 19, 19, 19, 19, 19, 19};
    check_row(&p, 0, row0, end0);
    check_invariants(t, &p);
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);

    t = synthetic("core:2 pu:1");
    make(t, 5, PARA__PIN_CORES, &p);
    for (unsigned i = 0; i < 5; i++)
        check_on_core(t, &p, i, i % 2);
    static const unsigned r0[] = {2, 4, 1, 3}, e0[] = {2, 2, 4, 4};
    check_row(&p, 0, r0, e0);
    static const unsigned r3[] = {1, 0, 2, 4}, e3[] = {1, 4, 4, 4};
    check_row(&p, 3, r3, e3);
    check_invariants(t, &p);
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);
}

static void test_victims_numa(void **state)
{
    (void)state;
    hwloc_topology_t t = synthetic(NUMA_TOPO);
    para__topology_plan p;
    make(t, 0, PARA__PIN_CORES, &p);
    /* Same NUMA node, then the other node of the package, then the other
     * package. */
    static const unsigned end[] = {3,  3,  3,  7,  7,  7,  7, 15,
                                   15, 15, 15, 15, 15, 15, 15};
    static const unsigned row0[] = {1, 2,  3,  4,  5,  6,  7, 8,
                                    9, 10, 11, 12, 13, 14, 15};
    static const unsigned row5[] = {4, 6,  7,  0,  1,  2,  3, 8,
                                    9, 10, 11, 12, 13, 14, 15};
    static const unsigned row15[] = {12, 13, 14, 8, 9, 10, 11, 0,
                                     1,  2,  3,  4, 5, 6,  7};
    check_row(&p, 0, row0, end);
    check_row(&p, 5, row5, end);
    check_row(&p, 15, row15, end);
    check_invariants(t, &p);
    para__topology_plan_free(&p);

    /* Per PU: the SMT sibling comes first. */
    make(t, 0, PARA__PIN_PUS, &p);
    static const unsigned prow0[] = {16, 1,  2,  3,  17, 18, 19, 4,  5,  6,  7,
                                     20, 21, 22, 23, 8,  9,  10, 11, 12, 13, 14,
                                     15, 24, 25, 26, 27, 28, 29, 30, 31};
    unsigned pend0[31];
    for (unsigned k = 0; k < 31; k++)
        pend0[k] = k < 1 ? 1 : k < 7 ? 7 : k < 15 ? 15 : 31;
    check_row(&p, 0, prow0, pend0);
    assert_int_equal(n_levels(&p, 0), 4);
    check_invariants(t, &p);
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);
}

static void test_victims_caches(void **state)
{
    (void)state;
    hwloc_topology_t t = synthetic(CACHE_TOPO);
    para__topology_plan p;
    make(t, 0, PARA__PIN_CORES, &p);
    assert_int_equal(p.n_workers, 8);
    /* Same L2, then same L3, then the rest of the package. */
    static const unsigned end[] = {1, 3, 3, 7, 7, 7, 7};
    static const unsigned row0[] = {1, 2, 3, 4, 5, 6, 7};
    static const unsigned row6[] = {7, 4, 5, 0, 1, 2, 3};
    static const unsigned row3[] = {2, 0, 1, 4, 5, 6, 7};
    check_row(&p, 0, row0, end);
    check_row(&p, 6, row6, end);
    check_row(&p, 3, row3, end);
    check_invariants(t, &p);
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);
}

static void test_invariants_many(void **state)
{
    (void)state;
    static const char *const descs[] = {
        NUMA_TOPO,
        CACHE_TOPO,
        "core:2 pu:1",
        "pack:2 core:3 pu:4",
        "pack:4 l3:2 core:2 pu:2",
        "pu:5",
    };
    static const unsigned counts[] = {0, 1, 2, 3, 7, 40};
    for (size_t i = 0; i < sizeof descs / sizeof descs[0]; i++) {
        hwloc_topology_t t = synthetic(descs[i]);
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            for (int mode = PARA__PIN_CORES; mode <= PARA__PIN_NONE; mode++) {
                para__topology_plan p;
                make(t, counts[c], (para__pin_mode)mode, &p);
                check_invariants(t, &p);
                para__topology_plan_free(&p);
            }
        }
        hwloc_topology_destroy(t);
    }
}

static int cmp_unsigned(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return (x > y) - (x < y);
}

static void test_shuffle_levels(void **state)
{
    (void)state;
    hwloc_topology_t t = synthetic(NUMA_TOPO);
    para__topology_plan p, ref;
    make(t, 0, PARA__PIN_PUS, &p);
    make(t, 0, PARA__PIN_PUS, &ref);
    unsigned n = p.n_workers, m = n - 1;
    size_t cells = (size_t)n * m;
    uint64_t rng = 0; /* a zero state must still shuffle */
    unsigned changed = 0;
    /* firsts[v]: times v came first in worker 0's second level. */
    unsigned firsts[32] = {0};
    for (int round = 0; round < 200; round++) {
        unsigned w = (unsigned)round % n;
        para__topology_shuffle_levels(&p, w, &rng);
        assert_memory_equal(p.level_end, ref.level_end,
                            cells * sizeof *p.level_end);
        /* Only row w may change. */
        for (unsigned x = 0; x < n; x++)
            if (x != w)
                assert_memory_equal(row_of(&p, x), row_of(&ref, x),
                                    m * sizeof(unsigned));
        /* Each level holds the same set as before. */
        const unsigned *end = ends_of(&p, w);
        for (unsigned k = 0; k < m; k = end[k]) {
            unsigned len = end[k] - k;
            unsigned got[32];
            memcpy(got, row_of(&p, w) + k, len * sizeof *got);
            qsort(got, len, sizeof *got, cmp_unsigned);
            assert_memory_equal(got, row_of(&ref, w) + k, len * sizeof *got);
        }
        if (memcmp(row_of(&p, w), row_of(&ref, w), m * sizeof(unsigned)))
            changed++;
        if (w == 0)
            firsts[row_of(&p, 0)[1]]++;
        /* Restore, so that the "only row w" check stays exact. */
        memcpy(p.victims + (size_t)w * m, row_of(&ref, w),
               m * sizeof(unsigned));
    }
    assert_int_not_equal(rng, 0);
    assert_true(changed > 190);
    /* Worker 0's second level is {1,2,3,17,18,19}: with 7 shuffles of row 0
     * each has a fair chance to come first; at least 3 distinct did. */
    unsigned distinct = 0;
    for (unsigned v = 0; v < 32; v++)
        distinct += firsts[v] != 0;
    assert_true(distinct >= 3);
    para__topology_plan_free(&ref);
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);
}

static void test_pin_none(void **state)
{
    (void)state;
    hwloc_topology_t t = synthetic(NUMA_TOPO);
    para__topology_plan p;
    make(t, 6, PARA__PIN_NONE, &p);
    assert_int_equal(p.n_workers, 6);
    for (unsigned i = 0; i < 6; i++) {
        assert_null(p.cpuset[i]);
        assert_int_equal(p.os_pu[i], -1);
        assert_int_equal(p.numa[i], -1);
        /* Pinning is a successful no-op. */
        assert_int_equal(para__topology_pin_self(t, &p, i), 0);
    }
    /* One level, in index order. */
    static const unsigned row2[] = {0, 1, 3, 4, 5}, end2[] = {5, 5, 5, 5, 5};
    check_row(&p, 2, row2, end2);
    assert_int_equal(n_levels(&p, 2), 1);
    uint64_t rng = 42;
    para__topology_shuffle_levels(&p, 2, &rng); /* whole row, one level */
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);
}

static void test_single_worker(void **state)
{
    (void)state;
    hwloc_topology_t t = synthetic("core:2 pu:1");
    para__topology_plan p;
    make(t, 1, PARA__PIN_CORES, &p);
    assert_int_equal(p.n_workers, 1);
    assert_non_null(p.victims);
    assert_non_null(p.level_end);
    assert_int_equal(n_levels(&p, 0), 0);
    uint64_t rng = 7;
    para__topology_shuffle_levels(&p, 0, &rng);
    assert_int_equal(rng, 7); /* nothing to shuffle, rng untouched */
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);
}

static void test_disallowed_pus(void **state)
{
    (void)state;
    hwloc_topology_t t;
    assert_int_equal(hwloc_topology_init(&t), 0);
    assert_int_equal(
        hwloc_topology_set_flags(t, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED), 0);
    assert_int_equal(hwloc_topology_set_synthetic(t, "core:4 pu:2"), 0);
    assert_int_equal(hwloc_topology_load(t), 0);
    /* Allow PUs 1-5 only: core 0 keeps P#1, core 3 goes away. */
    hwloc_bitmap_t allow = hwloc_bitmap_alloc();
    hwloc_bitmap_set_range(allow, 1, 5);
    assert_int_equal(
        hwloc_topology_allow(t, allow, NULL, HWLOC_ALLOW_FLAG_CUSTOM), 0);
    para__topology_plan p;
    make(t, 0, PARA__PIN_CORES, &p);
    assert_int_equal(p.n_workers, 3);
    for (unsigned i = 0; i < 3; i++)
        assert_true(hwloc_bitmap_isincluded(p.cpuset[i], allow));
    assert_int_equal(p.os_pu[0], 1);
    assert_int_equal(hwloc_bitmap_weight(p.cpuset[0]), 1);
    assert_int_equal(p.os_pu[1], 2);
    para__topology_plan_free(&p);
    make(t, 0, PARA__PIN_PUS, &p);
    assert_int_equal(p.n_workers, 5);
    static const int want[] = {1, 2, 4, 3, 5};
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(p.os_pu[i], want[i]);
    para__topology_plan_free(&p);

    /* Nothing allowed: no slot. */
    hwloc_bitmap_zero(allow);
    hwloc_bitmap_set(allow, 100);
    if (hwloc_topology_allow(t, allow, NULL, HWLOC_ALLOW_FLAG_CUSTOM) == 0)
        assert_int_equal(para__topology_plan_make(t, 0, PARA__PIN_CORES, &p),
                         PARA_EINVAL);
    hwloc_bitmap_free(allow);
    hwloc_topology_destroy(t);
}

struct pin_job {
    hwloc_topology_t topo;
    const para__topology_plan *plan;
    unsigned w;
    int rc;        /* of para__topology_pin_self */
    bool match;    /* sched_getaffinity == plan->cpuset[w] */
    bool on_cpu;   /* sched_getcpu() inside the cpuset */
    bool affinity; /* sched_getaffinity succeeded */
};

static void *pin_thread(void *arg);

static void test_pin_synthetic_is_soft_failure(void **state)
{
    (void)state;
    /* A synthetic topology does not describe this system; hwloc would
     * "bind" through dummy hooks that do nothing and return success. The
     * module refuses instead: a logged, non-fatal error. Done in a helper
     * thread so that the main thread's affinity can never change. */
    if (getenv("HWLOC_THISSYSTEM") != NULL)
        skip(); /* the environment makes hwloc treat it as this system */
    hwloc_topology_t t = synthetic("core:2 pu:1");
    para__topology_plan p;
    make(t, 0, PARA__PIN_CORES, &p);
    int warnings = 0;
    para_set_log_fn(count_log, &warnings);
    struct pin_job j = {.topo = t, .plan = &p, .w = 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, pin_thread, &j), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    para_set_log_fn(NULL, NULL);
    assert_int_equal(j.rc, PARA_EINVAL);
    assert_int_equal(warnings, 1);
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);
}

/* ---- the real machine --------------------------------------------------- */

static void *pin_thread(void *arg)
{
    struct pin_job *j = arg;
    j->rc = para__topology_pin_self(j->topo, j->plan, j->w);
    if (j->rc != 0)
        return NULL;
    cpu_set_t mask;
    CPU_ZERO(&mask);
    j->affinity = sched_getaffinity(0, sizeof mask, &mask) == 0;
    if (!j->affinity)
        return NULL;
    hwloc_const_bitmap_t want = j->plan->cpuset[j->w];
    j->match = true;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if ((CPU_ISSET(cpu, &mask) != 0) !=
            (hwloc_bitmap_isset(want, (unsigned)cpu) != 0))
            j->match = false;
    int cpu = sched_getcpu();
    j->on_cpu = cpu >= 0 && hwloc_bitmap_isset(want, (unsigned)cpu);
    return NULL;
}

static void pin_all(hwloc_topology_t t, para__pin_mode mode)
{
    para__topology_plan p;
    make(t, 0, mode, &p);
    check_invariants(t, &p);
    int warnings = 0;
    para_set_log_fn(count_log, &warnings);
    for (unsigned w = 0; w < p.n_workers; w++) {
        struct pin_job j = {.topo = t, .plan = &p, .w = w};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, pin_thread, &j), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
        if (j.rc != 0) {
            para_set_log_fn(NULL, NULL);
            assert_int_equal(j.rc, PARA_EINVAL);
            assert_int_equal(warnings, 1);
            para__topology_plan_free(&p);
            hwloc_topology_destroy(t);
            skip(); /* pinning not permitted here */
        }
        assert_true(j.affinity);
        if (!j.match)
            fail_msg("worker %u: affinity differs from its cpuset", w);
        assert_true(j.on_cpu);
    }
    para_set_log_fn(NULL, NULL);
    assert_int_equal(warnings, 0);
    para__topology_plan_free(&p);
}

static void test_real_machine_pin(void **state)
{
    (void)state;
    hwloc_topology_t t;
    assert_int_equal(hwloc_topology_init(&t), 0);
    assert_int_equal(hwloc_topology_load(t), 0);
    /* The main thread's affinity is left alone: pinning happens in helper
     * threads. */
    pin_all(t, PARA__PIN_CORES);
    pin_all(t, PARA__PIN_PUS);
    /* PIN_CORES workers are on distinct cores, in logical order (when the
     * process is not bound to some of them: see test_process_binding). */
    para__topology_plan p;
    make(t, 0, PARA__PIN_CORES, &p);
    int nb_cores = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
    hwloc_bitmap_t bound = hwloc_bitmap_alloc();
    assert_non_null(bound);
    assert_int_equal(hwloc_get_cpubind(t, bound, HWLOC_CPUBIND_PROCESS), 0);
    bool unbound =
        hwloc_bitmap_isincluded(hwloc_topology_get_allowed_cpuset(t), bound);
    hwloc_bitmap_free(bound);
    if (nb_cores > 0 && unbound) {
        assert_int_equal(p.n_workers, (unsigned)nb_cores);
        for (unsigned i = 0; i < p.n_workers; i++)
            check_on_core(t, &p, i, i);
    }
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);
}

/* A process bound to one core (taskset, mpirun --bind-to core) gets its
 * workers pinned there, not onto the machine's first cores. */
static void test_process_binding(void **state)
{
    (void)state;
    hwloc_topology_t t;
    assert_int_equal(hwloc_topology_init(&t), 0);
    assert_int_equal(hwloc_topology_load(t), 0);
    int nb_cores = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
    hwloc_bitmap_t saved = hwloc_bitmap_alloc();
    assert_non_null(saved);
    if (nb_cores < 2 ||
        hwloc_get_cpubind(t, saved, HWLOC_CPUBIND_PROCESS) != 0) {
        hwloc_bitmap_free(saved);
        hwloc_topology_destroy(t);
        skip();
    }
    hwloc_obj_t last =
        hwloc_get_obj_by_type(t, HWLOC_OBJ_CORE, (unsigned)nb_cores - 1);
    if (!hwloc_bitmap_isincluded(last->cpuset, saved) ||
        hwloc_set_cpubind(t, last->cpuset, HWLOC_CPUBIND_PROCESS) != 0) {
        hwloc_bitmap_free(saved);
        hwloc_topology_destroy(t);
        skip();
    }
    para__topology_plan p;
    int rc = para__topology_plan_make(t, 0, PARA__PIN_CORES, &p);
    assert_int_equal(hwloc_set_cpubind(t, saved, HWLOC_CPUBIND_PROCESS), 0);
    assert_int_equal(rc, 0);
    assert_int_equal(p.n_workers, 1);
    check_on_core(t, &p, 0, (unsigned)nb_cores - 1);
    para__topology_plan_free(&p);
    /* Three workers asked for: all on the one core the process may use. */
    assert_int_equal(hwloc_set_cpubind(t, last->cpuset, HWLOC_CPUBIND_PROCESS),
                     0);
    rc = para__topology_plan_make(t, 3, PARA__PIN_CORES, &p);
    assert_int_equal(hwloc_set_cpubind(t, saved, HWLOC_CPUBIND_PROCESS), 0);
    hwloc_bitmap_free(saved);
    assert_int_equal(rc, 0);
    for (unsigned i = 0; i < 3; i++)
        check_on_core(t, &p, i, (unsigned)nb_cores - 1);
    para__topology_plan_free(&p);
    hwloc_topology_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_default_counts),
        cmocka_unit_test(test_placement_cores),
        cmocka_unit_test(test_placement_pus),
        cmocka_unit_test(test_placement_uneven_cores),
        cmocka_unit_test(test_wraparound),
        cmocka_unit_test(test_victims_numa),
        cmocka_unit_test(test_victims_caches),
        cmocka_unit_test(test_invariants_many),
        cmocka_unit_test(test_shuffle_levels),
        cmocka_unit_test(test_pin_none),
        cmocka_unit_test(test_single_worker),
        cmocka_unit_test(test_disallowed_pus),
        cmocka_unit_test(test_steal_count_across_numa),
        cmocka_unit_test(test_runtime_on_two_numa_nodes),
        cmocka_unit_test(test_bind_memory_real_machine),
        cmocka_unit_test(test_pin_synthetic_is_soft_failure),
        cmocka_unit_test(test_real_machine_pin),
        cmocka_unit_test(test_process_binding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
