/*
 * The simulated device back-end (devices/sim/sim.c) on its own: the entry
 * syntax, launch timing (a launch of n items completes no earlier than
 * max(submit, previous completion) + L + n / R), results computed by the
 * node's CPU function, the link (link=: + n * (in + out) / B), and the
 * injected failures (fail=, hang=, oom=, maxalloc=). The runtime on simulated
 * devices is tested in tests/runtime/test_device_nodes.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "device.h"
#include "para.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int calls;

static int triple_plus_one(void *arg, const void *in, void *out, size_t n)
{
    (void)arg;
    const uint32_t *x = in;
    uint32_t *y = out;
    for (size_t i = 0; i < n; i++)
        y[i] = 3 * x[i] + 1;
    calls++;
    return 0;
}

static int fails(void *arg, const void *in, void *out, size_t n)
{
    (void)arg;
    (void)in;
    (void)out;
    (void)n;
    return 7;
}

typedef struct sim {
    const para__device_ops *ops;
    void *dev;
    void *k;
} sim;

static void sim_open(sim *s, const char *entry,
                     int (*fn)(void *, const void *, void *, size_t))
{
    char msg[256] = "";
    int rc = para__device_open(entry, &s->ops, &s->dev, msg, sizeof msg);
    if (rc != 0)
        fail_msg("%s: %s", entry, msg);
    assert_string_equal(s->ops->name, "sim");
    const para__device_info *info = s->ops->info(s->dev);
    assert_true((info->caps & PARA__DEVCAP_CPU_FN) != 0);
    assert_true((info->caps & PARA__DEVCAP_HOST_THREAD) == 0);
    assert_string_equal(info->type, "sim");
    para__kernel_spec spec = {.name = "t",
                              .source = "",
                              .entry = "t",
                              .in_size = 4,
                              .out_size = 4,
                              .cpu_fn = fn};
    assert_int_equal(
        s->ops->kernel_create(s->dev, &spec, &s->k, msg, sizeof msg), 0);
}

static void sim_close(sim *s, para__launch *l, size_t n_l)
{
    for (size_t i = 0; i < n_l; i++)
        s->ops->launch_fini(s->k, &l[i]);
    s->ops->kernel_release(s->k);
    s->ops->close(s->dev);
}

enum { N = 1000 };
static uint32_t in[N], out[N];

static void setup_items(para__launch *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        in[i] = (uint32_t)i;
        out[i] = 0;
    }
    l->in = in;
    l->out = out;
    l->n = n;
}

static void test_timing(void **state)
{
    (void)state;
    sim s;
    sim_open(&s, "sim:2000:1M", triple_plus_one); /* L 2 ms, 1 us an item */
    para__launch l[2];
    memset(l, 0, sizeof l);
    char msg[256];
    setup_items(&l[0], N);
    uint64_t t0 = now_ns();
    assert_int_equal(s.ops->launch_begin(s.k, &l[0], msg, sizeof msg), 0);
    /* Computed at once, reported only when a device would be done. */
    assert_int_equal(out[N - 1], 3 * (N - 1) + 1);
    assert_int_equal(s.ops->launch_poll(s.k, &l[0], msg, sizeof msg), 0);
    l[1] = l[0];
    l[1].impl = NULL;
    assert_int_equal(s.ops->launch_begin(s.k, &l[1], msg, sizeof msg), 0);
    /* A short wait returns 0 while it runs: checked when the test thread
     * got here well within the 2 ms latency (a loaded machine may have
     * descheduled it for longer, and then the launch is rightly done). */
    uint64_t before_wait = now_ns();
    int early = s.ops->launch_wait(s.k, &l[0], 100000, msg, sizeof msg);
    if (now_ns() - before_wait < 1000000 && before_wait - t0 < 1000000)
        assert_int_equal(early, 0);
    assert_int_equal(
        s.ops->launch_wait(s.k, &l[0], 1000000000u, msg, sizeof msg), 1);
    uint64_t t1 = now_ns();
    assert_int_equal(
        s.ops->launch_wait(s.k, &l[1], 1000000000u, msg, sizeof msg), 1);
    uint64_t t2 = now_ns();
    /* L + n / R = 2 ms + 1 ms each, one after the other. */
    print_message("first %.2f ms, second %.2f ms after start\n",
                  (double)(t1 - t0) / 1e6, (double)(t2 - t0) / 1e6);
    assert_true(t1 - t0 >= 3000000);
    assert_true(t2 - t0 >= 6000000);
    assert_true(l[0].complete_ns - l[0].submit_ns >= 3000000);
    assert_true(l[1].complete_ns >= l[0].complete_ns + 3000000);
    sim_close(&s, l, 2);
}

static void test_fail_hang_oom(void **state)
{
    (void)state;
    char msg[256];
    para__launch l;
    memset(&l, 0, sizeof l);
    setup_items(&l, 10);

    sim s;
    sim_open(&s, "sim:1:1G:fail=2", triple_plus_one);
    assert_int_equal(s.ops->launch_begin(s.k, &l, msg, sizeof msg), 0);
    assert_int_equal(s.ops->launch_wait(s.k, &l, 1000000000u, msg, sizeof msg),
                     1);
    /* Launch 2 and every later one fail: a lost device. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(s.ops->launch_begin(s.k, &l, msg, sizeof msg),
                         PARA_EDEVICE);
        assert_non_null(strstr(msg, "device lost"));
        assert_int_equal(s.ops->launch_poll(s.k, &l, msg, sizeof msg),
                         PARA_EDEVICE);
    }
    sim_close(&s, &l, 1);

    sim_open(&s, "sim:1:1G:hang=1", triple_plus_one);
    assert_int_equal(s.ops->launch_begin(s.k, &l, msg, sizeof msg), 0);
    uint64_t t0 = now_ns();
    assert_int_equal(s.ops->launch_wait(s.k, &l, 20000000, msg, sizeof msg), 0);
    assert_true(now_ns() - t0 >= 20000000); /* waited its timeout, no more */
    assert_true(now_ns() - t0 < 1000000000);
    assert_int_equal(s.ops->launch_poll(s.k, &l, msg, sizeof msg), 0);
    sim_close(&s, &l, 1); /* a hung launch can be freed */

    sim_open(&s, "sim:1:1G:oom=1", triple_plus_one);
    assert_int_equal(s.ops->launch_begin(s.k, &l, msg, sizeof msg),
                     PARA_ENOMEM);
    assert_int_equal(s.ops->launch_begin(s.k, &l, msg, sizeof msg), 0);
    assert_int_equal(s.ops->launch_wait(s.k, &l, 1000000000u, msg, sizeof msg),
                     1);
    sim_close(&s, &l, 1);

    sim_open(&s, "sim:1:1G:maxalloc=40", triple_plus_one);
    assert_int_equal(s.ops->launch_begin(s.k, &l, msg, sizeof msg), 0);
    assert_int_equal(s.ops->launch_wait(s.k, &l, 1000000000u, msg, sizeof msg),
                     1);
    setup_items(&l, 11); /* 44 bytes */
    assert_int_equal(s.ops->launch_begin(s.k, &l, msg, sizeof msg),
                     PARA_ENOMEM);
    assert_non_null(strstr(msg, "at most"));
    sim_close(&s, &l, 1);

    sim_open(&s, "sim:1:1G", fails);
    setup_items(&l, 10);
    assert_int_equal(s.ops->launch_begin(s.k, &l, msg, sizeof msg), 0);
    assert_int_equal(s.ops->launch_wait(s.k, &l, 1000000000u, msg, sizeof msg),
                     PARA_ENODE);
    assert_non_null(strstr(msg, "returned 7"));
    sim_close(&s, &l, 1);
}

static void test_needs_cpu_fn(void **state)
{
    (void)state;
    const para__device_ops *ops;
    void *dev, *k = NULL;
    char msg[256];
    assert_int_equal(
        para__device_open("sim:10:1M", &ops, &dev, msg, sizeof msg), 0);
    para__kernel_spec spec = {
        .name = "kernel-only", .in_size = 4, .out_size = 4};
    assert_int_equal(ops->kernel_create(dev, &spec, &k, msg, sizeof msg),
                     PARA_ENODEV);
    assert_non_null(strstr(msg, "'kernel-only'"));
    ops->close(dev);
}

/* link=B: a launch also moves n * (in + out) bytes at B bytes/s, and the
 * device reports B; without it the link is unknown (0) and free. */
static void test_link(void **state)
{
    (void)state;
    sim s;
    sim_open(&s, "sim:0:1G:link=4M", triple_plus_one); /* 2 us an item */
    assert_int_equal(s.ops->info(s.dev)->link_bytes_per_s, 4000000);
    para__launch l;
    memset(&l, 0, sizeof l);
    char msg[256];
    setup_items(&l, N);
    assert_int_equal(s.ops->launch_begin(s.k, &l, msg, sizeof msg), 0);
    assert_int_equal(s.ops->launch_wait(s.k, &l, 1000000000u, msg, sizeof msg),
                     1);
    /* 1000 items of 4 + 4 bytes over 4 MB/s: 2 ms (the items: 1 us). */
    uint64_t took = l.complete_ns - l.submit_ns;
    print_message("link: %.3f ms\n", (double)took / 1e6);
    assert_true(took >= 2000000 && took < 2100000);
    sim_close(&s, &l, 1);
    sim_open(&s, "sim:0:1G", triple_plus_one);
    assert_int_equal(s.ops->info(s.dev)->link_bytes_per_s, 0);
    sim_close(&s, NULL, 0);
}

static void test_bad_entries(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "sim",
        "sim:",
        "sim:50",
        "sim:50:",
        "sim:50:0",
        "sim:x:1M",
        "sim:50:1Mx",
        "sim:-1:1M",
        "sim:50:1M:",
        "sim:50:1M:fail=0",
        "sim:50:1M:hang=1.5",
        "sim:50:1M:bogus=1",
        "sim:50:-3",
        "sim:1e9:1M",
        "sim:50:1M:oom=",
        "sim:50:1M:link=0",
        "sim:50:1M:link=",
        "sim:50:1M:link=1e30",
        "sim:50:1M:link=5X",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const para__device_ops *ops = NULL;
        void *dev = NULL;
        char msg[256] = "";
        int rc = para__device_open(bad[i], &ops, &dev, msg, sizeof msg);
        if (rc != PARA_EINVAL)
            fail_msg("\"%s\": %s, want PARA_EINVAL", bad[i], para_err_name(rc));
        assert_non_null(strstr(msg, "does not parse"));
        assert_non_null(strstr(msg, bad[i]));
    }
    /* And good ones. */
    static const char *const good[] = {"sim:0:1", "sim:50:20M", "sim:2.5:1.5G",
                                       "sim:200:40M:fail=3:hang=9:oom=2",
                                       "sim:10:1G:link=8G:oom=4"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const para__device_ops *ops = NULL;
        void *dev = NULL;
        char msg[256] = "";
        if (para__device_open(good[i], &ops, &dev, msg, sizeof msg) != 0)
            fail_msg("\"%s\": %s", good[i], msg);
        ops->close(dev);
    }
}

static int count_entry(void *arg, const char *entry)
{
    (void)entry;
    (*(int *)arg)++;
    return 0;
}

static void test_lists(void **state)
{
    (void)state;
    char msg[256];
    int n = 0;
    assert_int_equal(para__device_expand("sim:1:1M,cpu,sim:2:2M", count_entry,
                                         &n, msg, sizeof msg),
                     0);
    assert_int_equal(n, 3);
    static const char *const bad[] = {"", ",", "cpu,", ",cpu", "cpu,,cpu"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = 0;
        assert_int_equal(
            para__device_expand(bad[i], count_entry, &n, msg, sizeof msg),
            PARA_EINVAL);
        assert_non_null(strstr(msg, "entry"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timing),
        cmocka_unit_test(test_link),
        cmocka_unit_test(test_fail_hang_oom),
        cmocka_unit_test(test_needs_cpu_fn),
        cmocka_unit_test(test_bad_entries),
        cmocka_unit_test(test_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
