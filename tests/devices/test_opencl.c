/*
 * Tests for the OpenCL back-end (devices/opencl/opencl.c, cl_error.c)
 * against a real driver (PoCL in CI): discovery and selectors, the
 * Mandelbrot kernel against the C reference of the benchmark contract
 * (BENCHMARKS.md), several launches in flight, odd batch sizes, build errors
 * and bad entry points, the in-process and on-disk program caches (including a
 * corrupt cache file), both staging modes, tracing, and the CL status names.
 *
 * Without any OpenCL device the test exits 77 (skipped), unless
 * PARA_REQUIRE_DEVICE=1, in which case that is a failure: CI sets it so that
 * the device tests never skip silently.
 *
 * The whole process uses a private disk cache (PARA_CACHE_DIR = a fresh
 * temporary directory, removed at exit), so runs never read or pollute
 * ~/.cache/para. The log goes to a capture buffer: expected failures stay
 * quiet, and tests can look for trace lines and build logs in it.
 */
#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "device.h"
#include "mandelbrot_ref.h"
#include "opencl/cl_internal.h"
#include "para.h"
#include "para_kernels.h"
#include "util.h"

#define MSG_LEN 4096

/* ---- helpers ----------------------------------------------------------- */

static char cache_dir[PATH_MAX];

/* Log capture: every message, concatenated (bounded), and the count of
 * messages at error level. */
static char log_text[1 << 16];
static size_t log_used;
static int log_errors;

static void capture_log(int level, const char *msg, void *arg)
{
    (void)arg;
    if (level == 0)
        log_errors++;
    int n =
        snprintf(log_text + log_used, sizeof log_text - log_used, "%s\n", msg);
    if (n > 0 && log_used + (size_t)n < sizeof log_text)
        log_used += (size_t)n;
}

static void clear_log(void)
{
    log_used = 0;
    log_text[0] = '\0';
    log_errors = 0;
}

static int setup(void **state)
{
    (void)state;
    clear_log();
    return 0;
}

static para__device *open_auto(void)
{
    char msg[MSG_LEN] = "";
    para__device *dev = NULL;
    int rc = para__cl_open("auto", &dev, msg, sizeof msg);
    if (rc != 0)
        fail_msg("para__cl_open(auto): %s: %s", para_err_name(rc), msg);
    assert_non_null(dev);
    return dev;
}

static para__kernel *build(para__device *dev, const char *src,
                           const char *entry, size_t in_size, size_t out_size,
                           const para__kernel_arg *args, size_t n_args)
{
    char msg[MSG_LEN] = "";
    para__kernel *k = NULL;
    int rc = para__cl_kernel_create(dev, src, "", entry, in_size, out_size,
                                    args, n_args, &k, msg, sizeof msg);
    if (rc != 0)
        fail_msg("kernel_create(%s): %s: %s", entry, para_err_name(rc), msg);
    assert_non_null(k);
    return k;
}

/* Launch and wait; the launch must succeed. */
static void run_launch(para__kernel *k, para__launch *l)
{
    char msg[MSG_LEN] = "";
    int rc = para__cl_launch_begin(k, l, msg, sizeof msg);
    if (rc != 0)
        fail_msg("launch_begin: %s: %s", para_err_name(rc), msg);
    rc = para__cl_launch_wait(k, l, msg, sizeof msg);
    if (rc != 0)
        fail_msg("launch_wait: %s: %s", para_err_name(rc), msg);
    assert_true(l->complete_ns >= l->submit_ns);
}

/* Poll until done; the launch must succeed. */
static void poll_until_done(para__kernel *k, para__launch *l)
{
    char msg[MSG_LEN] = "";
    for (;;) {
        int rc = para__cl_launch_poll(k, l, msg, sizeof msg);
        if (rc < 0)
            fail_msg("launch_poll: %s: %s", para_err_name(rc), msg);
        if (rc == 1)
            return;
        usleep(50);
    }
}

static size_t count_cache_files(void)
{
    size_t n = 0;
    DIR *d = opendir(cache_dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len > 6 && strcmp(e->d_name + len - 6, ".clbin") == 0)
            n++;
    }
    closedir(d);
    return n;
}

/* Path of the only cache file (the test's builds use fresh directories). */
static void only_cache_file(char *path, size_t len)
{
    DIR *d = opendir(cache_dir);
    assert_non_null(d);
    int found = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name);
        if (n > 6 && strcmp(e->d_name + n - 6, ".clbin") == 0) {
            snprintf(path, len, "%s/%s", cache_dir, e->d_name);
            found++;
        }
    }
    closedir(d);
    assert_int_equal(found, 1);
}

static void empty_cache_dir(void)
{
    DIR *d = opendir(cache_dir);
    if (d == NULL)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[PATH_MAX + 256];
        snprintf(path, sizeof path, "%s/%s", cache_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

/* ---- CL status names --------------------------------------------------- */

static void test_err_names(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(para__cl_err_name(CL_SUCCESS, buf, sizeof buf),
                        "CL_SUCCESS");
    assert_string_equal(para__cl_err_name(-54, buf, sizeof buf),
                        "CL_INVALID_WORK_GROUP_SIZE");
    assert_string_equal(para__cl_err_name(CL_OUT_OF_RESOURCES, buf, 32),
                        "CL_OUT_OF_RESOURCES");
    assert_string_equal(para__cl_err_name(CL_INVALID_KERNEL_NAME, buf, 32),
                        "CL_INVALID_KERNEL_NAME");
    assert_string_equal(para__cl_err_name(-14, buf, sizeof buf),
                        "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST");
    /* 2.x codes, hidden by CL_TARGET_OPENCL_VERSION 120 in the headers. */
    assert_string_equal(para__cl_err_name(-69, buf, sizeof buf),
                        "CL_INVALID_PIPE_SIZE");
    assert_string_equal(para__cl_err_name(-72, buf, sizeof buf),
                        "CL_MAX_SIZE_RESTRICTION_EXCEEDED");
    assert_string_equal(para__cl_err_name(-1001, buf, sizeof buf),
                        "CL_PLATFORM_NOT_FOUND_KHR");
    /* Every core code from 0 to -72 outside the gap has a real name. */
    for (int32_t c = 0; c >= -72; c--) {
        const char *name = para__cl_err_name(c, buf, sizeof buf);
        if (c < -19 && c > -30)
            assert_true(strncmp(name, "CL_UNKNOWN(", 11) == 0);
        else
            assert_true(strncmp(name, "CL_UNKNOWN", 10) != 0);
        assert_true(strncmp(name, "CL_", 3) == 0);
    }
    /* Unknown values. */
    assert_string_equal(para__cl_err_name(-9999, buf, sizeof buf),
                        "CL_UNKNOWN(-9999)");
    assert_string_equal(para__cl_err_name(-25, buf, sizeof buf),
                        "CL_UNKNOWN(-25)");
    assert_string_equal(para__cl_err_name(7, buf, sizeof buf), "CL_UNKNOWN(7)");
    assert_string_equal(para__cl_err_name(INT32_MIN, buf, sizeof buf),
                        "CL_UNKNOWN(-2147483648)");
    assert_string_equal(para__cl_err_name(-9999, NULL, 0), "CL_UNKNOWN");

    /* The PARA_E* mapping. */
    assert_int_equal(para__cl_to_err(CL_SUCCESS), 0);
    assert_int_equal(para__cl_to_err(CL_OUT_OF_HOST_MEMORY), PARA_ENOMEM);
    assert_int_equal(para__cl_to_err(CL_MEM_OBJECT_ALLOCATION_FAILURE),
                     PARA_ENOMEM);
    assert_int_equal(para__cl_to_err(CL_BUILD_PROGRAM_FAILURE),
                     PARA_EKERNEL_BUILD);
    assert_int_equal(para__cl_to_err(CL_INVALID_KERNEL_NAME), PARA_EINVAL);
    assert_int_equal(para__cl_to_err(CL_INVALID_WORK_GROUP_SIZE), PARA_EDEVICE);
    assert_int_equal(para__cl_to_err(-9999), PARA_EDEVICE);
}

/* Stands in for an OpenCL call that returns `status`. */
static cl_int clFakeCall_for_test(cl_int status)
{
    return status;
}

/* PARA_CL_CHECK: logs, fills msg with "call -> NAME (code)", maps, jumps. */
static int check_macro_user(cl_int status, char *msg, size_t msg_len)
{
    int err = 0;
    PARA_CL_CHECK(clFakeCall_for_test(status));
    return 0;
fail:
    return err;
}

static void test_check_macro(void **state)
{
    (void)state;
    char msg[MSG_LEN];
    assert_int_equal(check_macro_user(CL_SUCCESS, msg, sizeof msg), 0);
    assert_int_equal(
        check_macro_user(CL_INVALID_WORK_GROUP_SIZE, msg, sizeof msg),
        PARA_EDEVICE);
    assert_string_equal(msg,
                        "clFakeCall_for_test -> CL_INVALID_WORK_GROUP_SIZE "
                        "(-54)");
    /* The log names our function, file:line and the whole call. */
    assert_non_null(strstr(log_text, "check_macro_user (test_opencl.c:"));
    assert_non_null(strstr(log_text, "clFakeCall_for_test(status) -> "
                                     "CL_INVALID_WORK_GROUP_SIZE (-54)"));
    assert_int_equal(check_macro_user(CL_OUT_OF_HOST_MEMORY, msg, sizeof msg),
                     PARA_ENOMEM);
    /* A tiny buffer is truncated, never overrun. */
    char tiny[8];
    check_macro_user(-54, tiny, sizeof tiny);
    assert_int_equal(strlen(tiny), 7);
}

/* ---- discovery and selection ------------------------------------------- */

static void test_list(void **state)
{
    (void)state;
    para__device_info infos[16];
    size_t n = para__cl_list(infos, 16);
    assert_true(n >= 1);
    assert_int_equal(para__cl_list(NULL, 0), n);
    for (size_t i = 0; i < n && i < 16; i++) {
        const para__device_info *d = &infos[i];
        assert_true(d->name[0] != '\0');
        assert_true(d->platform[0] != '\0');
        assert_non_null(strstr(d->version, "driver"));
        assert_true(d->compute_units >= 1);
        assert_true(d->global_mem_bytes > 0);
        assert_true(d->max_alloc_bytes > 0);
        assert_true(d->max_work_group >= 1);
        assert_true(d->max_in_flight >= 1);
        print_message("device %u:%u \"%s\" (%s; %s) %s, %u units\n",
                      d->platform_index, d->device_index, d->name, d->platform,
                      d->version, d->is_cpu ? "cpu" : "not cpu",
                      d->compute_units);
    }
    /* A short array gets the first entries only. */
    para__device_info one;
    assert_int_equal(para__cl_list(&one, 1), n);
    assert_string_equal(one.name, infos[0].name);
}

static void expect_open(const char *selector, const para__device_info *want)
{
    char msg[MSG_LEN] = "";
    para__device *dev = NULL;
    int rc = para__cl_open(selector, &dev, msg, sizeof msg);
    if (rc != 0)
        fail_msg("open(%s): %s: %s", selector ? selector : "NULL",
                 para_err_name(rc), msg);
    const para__device_info *info = para__cl_info(dev);
    assert_non_null(info);
    if (want != NULL) {
        assert_string_equal(info->name, want->name);
        assert_int_equal(info->platform_index, want->platform_index);
        assert_int_equal(info->device_index, want->device_index);
    }
    para__cl_close(dev);
}

static void test_open_selectors(void **state)
{
    (void)state;
    para__device_info infos[16];
    size_t n = para__cl_list(infos, 16);
    assert_true(n >= 1);

    /* "auto": the first GPU, else accelerator, else the first device. */
    const para__device_info *want = &infos[0];
    for (size_t i = 0; i < n && i < 16; i++)
        if (!infos[i].is_cpu) {
            want = NULL; /* GPUs and accelerators: order not checked here */
            break;
        }
    expect_open("auto", want);
    expect_open(NULL, want);
    expect_open("", want);

    char sel[64];
    snprintf(sel, sizeof sel, "%u:%u", infos[0].platform_index,
             infos[0].device_index);
    expect_open(sel, &infos[0]);
    expect_open("0:0", NULL);

    /* A substring of the name, in another case. */
    char sub[16] = "";
    size_t len = strlen(infos[0].name);
    size_t from = len > 8 ? 2 : 0, take = len > 8 ? 5 : len;
    for (size_t i = 0; i < take; i++) {
        char c = infos[0].name[from + i];
        sub[i] = (char)(c >= 'a' && c <= 'z'   ? c - 'a' + 'A'
                        : c >= 'A' && c <= 'Z' ? c - 'A' + 'a'
                                               : c);
    }
    para__device *dev = NULL;
    char msg[MSG_LEN] = "";
    assert_int_equal(para__cl_open(sub, &dev, msg, sizeof msg), 0);
    assert_non_null(strcasestr(para__cl_info(dev)->name, sub));
    para__cl_close(dev);

    /* The platform name works as well ("portable" finds PoCL). */
    char plat[8] = "";
    snprintf(plat, sizeof plat, "%.7s", infos[0].platform);
    dev = NULL;
    assert_int_equal(para__cl_open(plat, &dev, msg, sizeof msg), 0);
    para__cl_close(dev);

    /* Nothing matches: ENODEV, and the message lists what was seen. */
    dev = (para__device *)&dev; /* must be reset to NULL */
    msg[0] = '\0';
    assert_int_equal(para__cl_open("nonexistent", &dev, msg, sizeof msg),
                     PARA_ENODEV);
    assert_null(dev);
    assert_non_null(strstr(msg, "nonexistent"));
    assert_non_null(strstr(msg, infos[0].name));
    assert_non_null(strstr(msg, "0:0"));
    print_message("ENODEV message: %s\n", msg);

    assert_int_equal(para__cl_open("99:0", &dev, msg, sizeof msg), PARA_ENODEV);
    assert_int_equal(para__cl_open("0:99", &dev, msg, sizeof msg), PARA_ENODEV);
    /* A short message buffer is truncated, not overrun. */
    char tiny[12];
    assert_int_equal(para__cl_open("nonexistent", &dev, tiny, sizeof tiny),
                     PARA_ENODEV);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
    assert_int_equal(para__cl_open("auto", NULL, msg, sizeof msg), PARA_EINVAL);

    /* Two devices open at once are independent. */
    para__device *a = open_auto(), *b = open_auto();
    para__kernel *ka =
        build(a, para_kernel_copy_src, "copy_u32", 4, 4, NULL, 0);
    para__cl_close(b);
    uint32_t in[3] = {1, 2, 3}, out[3] = {0};
    para__launch l = {.in = in, .n = 3, .out = out};
    run_launch(ka, &l);
    assert_memory_equal(in, out, sizeof in);
    para__cl_launch_fini(ka, &l);
    para__cl_kernel_release(ka);
    para__cl_close(a);
    para__cl_close(NULL);
}

/* ---- Mandelbrot -------------------------------------------------------- */

static void check_mandelbrot(para__device *dev, uint32_t W, uint32_t H,
                             uint64_t expect_sum)
{
    para__kernel_arg args[2] = {{&W, sizeof W, PARA_KARG_SCALAR},
                                {&H, sizeof H, PARA_KARG_SCALAR}};
    para__kernel *k =
        build(dev, para_kernel_mandelbrot_src, "mandelbrot", 4, 4, args, 2);
    size_t n = (size_t)W * H;
    uint32_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    assert_non_null(in);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        in[i] = (uint32_t)i;
        out[i] = UINT32_MAX;
    }
    para__launch l = {.in = in, .n = n, .out = out};
    run_launch(k, &l);

    uint64_t sum = 0, ref = 0;
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = para_mandelbrot_ref((uint32_t)i, W, H);
        ref += c;
        sum += out[i];
        differ += out[i] != c;
        assert_true(out[i] <= 256);
    }
    if (expect_sum != 0)
        assert_int_equal(ref, expect_sum); /* the C reference itself */
    double rel = (double)(sum > ref ? sum - ref : ref - sum) / (double)ref;
    print_message("mandelbrot %ux%u: device sum %llu, C sum %llu, %zu pixels "
                  "differ, relative error %.2g, %.3f ms\n",
                  W, H, (unsigned long long)sum, (unsigned long long)ref,
                  differ, rel, (double)(l.complete_ns - l.submit_ns) / 1e6);
    assert_true(rel <= 0.001);
    para__cl_launch_fini(k, &l);
    para__cl_kernel_release(k);
    free(in);
    free(out);
}

/* A bounded wait on a long launch sleeps until the driver calls back, instead
 * of polling the launch's status every 100 us: every launch calls back once,
 * and the polls that find one still running are at most one per 10 ms check
 * (WAKE_CHECK_NS) and a few for other wake-ups, where polling would make
 * about one per 100 us. Then the same with several launches in flight, each
 * waited in turn. */
static void test_wait_sleeps(void **state)
{
    (void)state;
    para__device *dev = open_auto();
    uint32_t W = 1024, H = 512;
    para__kernel_arg args[2] = {{&W, sizeof W, PARA_KARG_SCALAR},
                                {&H, sizeof H, PARA_KARG_SCALAR}};
    para__kernel *k =
        build(dev, para_kernel_mandelbrot_src, "mandelbrot", 4, 4, args, 2);
    enum { N = 1024 * 512, PARTS = 3 };
    uint32_t *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
    assert_non_null(in);
    assert_non_null(out);
    for (uint32_t i = 0; i < N; i++)
        in[i] = i;
    char msg[MSG_LEN] = "";
    for (int parts = 1; parts <= PARTS; parts += PARTS - 1) {
        para__launch l[PARTS];
        memset(l, 0, sizeof l);
        size_t per = N / (size_t)parts;
        para__cl_stats before, after;
        para__cl_get_stats(dev, &before);
        uint64_t t0 = para__now_ns();
        for (int p = 0; p < parts; p++) {
            l[p].in = in + (size_t)p * per;
            l[p].out = out + (size_t)p * per;
            l[p].n = p + 1 < parts ? per : N - (size_t)p * per;
            if (para__cl_launch_begin(k, &l[p], msg, sizeof msg) != 0)
                fail_msg("begin: %s", msg);
        }
        for (int p = 0; p < parts; p++) {
            int rc = 0;
            while (rc == 0)
                rc = para__cl_launch_wait_for(k, &l[p], 10000000000u, msg,
                                              sizeof msg);
            if (rc != 1)
                fail_msg("wait_for: %d: %s", rc, msg);
        }
        uint64_t ns = para__now_ns() - t0;
        para__cl_get_stats(dev, &after);
        uint64_t polls = after.running_polls - before.running_polls;
        print_message("%d launch(es) of %u pixels in %.1f ms: %llu polls "
                      "found one running, %llu callbacks\n",
                      parts, (unsigned)N, (double)ns / 1e6,
                      (unsigned long long)polls,
                      (unsigned long long)(after.wakeups - before.wakeups));
        assert_true(polls <= ns / 10000000u + 4u * (unsigned)parts);
        assert_true(after.wakeups - before.wakeups >= (uint64_t)parts);
        uint64_t sum = 0, ref = 0;
        for (uint32_t i = 0; i < N; i += 97) {
            sum += out[i];
            ref += para_mandelbrot_ref(i, W, H);
        }
        assert_true(sum >= ref - ref / 1000 && sum <= ref + ref / 1000);
        for (int p = 0; p < parts; p++)
            para__cl_launch_fini(k, &l[p]);
    }
    para__cl_kernel_release(k);
    free(in);
    free(out);
    para__cl_close(dev);
}

/* Device locality: a CPU device (PoCL) has no PCI address and is near
 * every core; a GPU gets its PCI device's local CPUs, never an empty set. */
static void test_locality(void **state)
{
    (void)state;
    para__device *dev = open_auto();
    hwloc_topology_t topo;
    assert_int_equal(hwloc_topology_init(&topo), 0);
    assert_int_equal(hwloc_topology_load(topo), 0);
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    assert_non_null(set);
    assert_int_equal(para__cl_locality(dev, topo, set), 0);
    assert_false(hwloc_bitmap_iszero(set));
    char *list = NULL;
    hwloc_bitmap_list_asprintf(&list, set);
    print_message("%s is near PUs %s\n", para__cl_info(dev)->name, list);
    free(list);
    if (para__cl_info(dev)->is_cpu)
        assert_true(hwloc_bitmap_isequal(
            set, hwloc_topology_get_complete_cpuset(topo)));
    hwloc_bitmap_free(set);
    hwloc_topology_destroy(topo);
    para__cl_close(dev);
}

static void test_mandelbrot(void **state)
{
    (void)state;
    para__device *dev = open_auto();
    check_mandelbrot(dev, 256, 256, 0);
    check_mandelbrot(dev, 1024, 1024, 70743018);
    para__cl_close(dev);
}

/* Launches on 4 slots in flight at once, in rounds, with sizes that grow
 * and shrink (buffers are reused and regrown), polled in no fixed order. */
static void in_flight_rounds(para__device *dev)
{
    uint32_t mul = 3, add = 11;
    para__kernel_arg args[2] = {{&mul, sizeof mul, PARA_KARG_SCALAR},
                                {&add, sizeof add, PARA_KARG_SCALAR}};
    para__kernel *k =
        build(dev, para_kernel_copy_src, "axpb_u32", 4, 4, args, 2);
    enum { SLOTS = 4, MAX_N = 5000 };
    assert_true(para__cl_info(dev)->max_in_flight >= 1);
    static uint32_t in[SLOTS][MAX_N], out[SLOTS][MAX_N];
    para__launch l[SLOTS];
    memset(l, 0, sizeof l);
    static const size_t sizes[] = {1000, 4999, 17, 5000, 1, 333};
    char msg[MSG_LEN] = "";

    for (size_t round = 0; round < 6; round++) {
        for (int s = 0; s < SLOTS; s++) {
            size_t n = sizes[(round + (size_t)s) % 6];
            for (size_t i = 0; i < n; i++) {
                in[s][i] =
                    (uint32_t)(i * 7919u + (size_t)s * 1000003u + round * 31u);
                out[s][i] = 0xdeadbeef;
            }
            l[s].in = in[s];
            l[s].out = out[s];
            l[s].n = n;
            int rc = para__cl_launch_begin(k, &l[s], msg, sizeof msg);
            if (rc != 0)
                fail_msg("begin: %s", msg);
        }
        /* A second begin on a running slot is refused. */
        if (para__cl_launch_poll(k, &l[0], msg, sizeof msg) == 0)
            assert_int_equal(para__cl_launch_begin(k, &l[0], msg, sizeof msg),
                             PARA_EBUSY);
        /* Reap the slots last-first. */
        for (int s = SLOTS - 1; s >= 0; s--)
            poll_until_done(k, &l[s]);
        for (int s = 0; s < SLOTS; s++)
            for (size_t i = 0; i < l[s].n; i++)
                if (out[s][i] != in[s][i] * mul + add)
                    fail_msg("round %zu slot %d item %zu: %u != %u", round, s,
                             i, out[s][i], in[s][i] * mul + add);
        /* Polling a finished launch again still says finished. */
        assert_int_equal(para__cl_launch_poll(k, &l[1], msg, sizeof msg), 1);
        assert_int_equal(para__cl_launch_wait(k, &l[1], msg, sizeof msg), 0);
    }
    for (int s = 0; s < SLOTS; s++)
        para__cl_launch_fini(k, &l[s]);
    para__cl_launch_fini(k, &l[0]); /* twice is harmless */
    para__cl_kernel_release(k);
}

static void test_in_flight(void **state)
{
    (void)state;
    para__device *dev = open_auto();
    in_flight_rounds(dev);
    /* The same with one queue shared by all slots, and with mapped
     * staging buffers. */
    assert_int_equal(para__cl_tune(dev, PARA__CL_STAGING_WRITE, 1), 0);
    in_flight_rounds(dev);
    assert_int_equal(para__cl_tune(dev, PARA__CL_STAGING_MAP, 4), 0);
    in_flight_rounds(dev);
    assert_int_equal(para__cl_tune(dev, PARA__CL_STAGING_MAP, 2), 0);
    in_flight_rounds(dev);
    assert_int_equal(para__cl_tune(dev, PARA__CL_STAGING_MAP, 0), PARA_EINVAL);
    assert_int_equal(para__cl_tune(dev, PARA__CL_STAGING_MAP, 5), PARA_EINVAL);

    /* Tuning is refused while a slot is bound. */
    para__kernel *k =
        build(dev, para_kernel_copy_src, "copy_u32", 4, 4, NULL, 0);
    uint32_t v = 5, w = 0;
    para__launch l = {.in = &v, .n = 1, .out = &w};
    run_launch(k, &l);
    assert_int_equal(para__cl_tune(dev, PARA__CL_STAGING_WRITE, 4), PARA_EBUSY);
    para__cl_launch_fini(k, &l);
    assert_int_equal(para__cl_tune(dev, PARA__CL_STAGING_WRITE, 4), 0);
    para__cl_kernel_release(k);
    para__cl_close(dev);
}

/* ---- batch sizes, item sizes, slots ------------------------------------ */

static void test_sizes(void **state)
{
    (void)state;
    para__device *dev = open_auto();
    para__kernel *k =
        build(dev, para_kernel_copy_src, "copy_u32", 4, 4, NULL, 0);
    size_t local = para__cl_kernel_local_size(k);
    assert_true(local >= 1);
    assert_true(local <= para__cl_info(dev)->max_work_group);
    print_message("copy_u32 work-group size %zu\n", local);

    const size_t sizes[] = {1,         2,         local - 1,     local,
                            local + 1, 3 * local, 7 * local + 3, 100003};
    para__launch l = {0};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        size_t n = sizes[t];
        if (n == 0)
            continue;
        /* One extra item past n that must stay untouched. */
        uint32_t *in = malloc((n + 1) * 4), *out = malloc((n + 1) * 4);
        assert_non_null(in);
        assert_non_null(out);
        for (size_t i = 0; i <= n; i++) {
            in[i] = (uint32_t)(i ^ 0x5a5a5a5a);
            out[i] = 0xcafef00d;
        }
        l.in = in;
        l.out = out;
        l.n = n;
        run_launch(k, &l);
        assert_memory_equal(in, out, n * 4);
        assert_int_equal(out[n], 0xcafef00d);
        free(in);
        free(out);
    }

    /* n = 0: nothing to do, finished at once. */
    char msg[MSG_LEN];
    l.in = NULL;
    l.out = NULL;
    l.n = 0;
    assert_int_equal(para__cl_launch_begin(k, &l, msg, sizeof msg), 0);
    assert_int_equal(para__cl_launch_poll(k, &l, msg, sizeof msg), 1);
    assert_int_equal(para__cl_launch_wait(k, &l, msg, sizeof msg), 0);

    /* Bad arguments. */
    l.n = 4;
    assert_int_equal(para__cl_launch_begin(k, &l, msg, sizeof msg),
                     PARA_EINVAL);
    para__launch fresh = {0};
    assert_int_equal(para__cl_launch_poll(k, &fresh, msg, sizeof msg),
                     PARA_EINVAL);
    assert_int_equal(para__cl_launch_wait(k, &fresh, msg, sizeof msg),
                     PARA_EINVAL);
    para__cl_launch_fini(k, &fresh);
    para__cl_launch_fini(k, NULL);
    para__cl_launch_fini(k, &l);

    /* A batch larger than one device allocation: ENOMEM up front. */
    uint32_t dummy = 0;
    size_t huge = (size_t)(para__cl_info(dev)->max_alloc_bytes / 4) + 1;
    if (huge <= UINT32_MAX) {
        para__launch big = {.in = &dummy, .n = huge, .out = &dummy};
        assert_int_equal(para__cl_launch_begin(k, &big, msg, sizeof msg),
                         PARA_ENOMEM);
        print_message("too big: %s\n", msg);
        para__cl_launch_fini(k, &big);
    }
    para__cl_kernel_release(k);

    /* Items of different sizes in and out (uint -> ulong), and one slot
     * used by two kernels in turn. */
    para__kernel *wide =
        build(dev, para_kernel_copy_src, "widen_u32", 4, 8, NULL, 0);
    para__kernel *copy =
        build(dev, para_kernel_copy_src, "copy_u32", 4, 4, NULL, 0);
    enum { N = 777 };
    uint32_t in[N], out32[N];
    uint64_t out64[N];
    for (uint32_t i = 0; i < N; i++)
        in[i] = UINT32_MAX - i;
    para__launch s = {.in = in, .n = N, .out = out64};
    run_launch(wide, &s);
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(out64[i], (uint64_t)in[i] + i);
    s.out = out32;
    run_launch(copy, &s);
    assert_memory_equal(in, out32, sizeof in);
    para__cl_launch_fini(copy, &s);
    para__cl_kernel_release(wide);
    para__cl_kernel_release(copy);
    para__cl_close(dev);
}

/* ---- build errors and bad kernels -------------------------------------- */

static void test_build_error(void **state)
{
    (void)state;
    para__device *dev = open_auto();
    static const char broken[] =
        "__kernel void broken(__global const uint *in, __global uint *out,\n"
        "                     uint n)\n"
        "{\n"
        "    out[0] = in[0] + para_no_such_identifier;\n"
        "}\n";
    char msg[MSG_LEN] = "";
    para__kernel *k = (para__kernel *)&k;
    int rc = para__cl_kernel_create(dev, broken, NULL, "broken", 4, 4, NULL, 0,
                                    &k, msg, sizeof msg);
    assert_int_equal(rc, PARA_EKERNEL_BUILD);
    assert_null(k);
    print_message("build error message: %s\n", msg);
    assert_non_null(strstr(msg, "clBuildProgram -> CL_BUILD_PROGRAM_FAILURE"));
    assert_non_null(strstr(msg, "para_no_such_identifier"));
    assert_null(strchr(msg, '\n'));
    /* The whole build log went to the log, at error level. */
    assert_true(log_errors >= 2);
    assert_non_null(strstr(log_text, "build log"));
    assert_non_null(strstr(log_text, "para_no_such_identifier"));

    /* A failed build is not cached: it fails again, and the device still
     * builds good programs. */
    para__cl_stats st;
    para__cl_get_stats(dev, &st);
    assert_int_equal(para__cl_kernel_create(dev, broken, NULL, "broken", 4, 4,
                                            NULL, 0, &k, msg, sizeof msg),
                     PARA_EKERNEL_BUILD);
    para__cl_stats st2;
    para__cl_get_stats(dev, &st2);
    assert_int_equal(st2.memory_hits, st.memory_hits);

    /* Options the compiler rejects are a build failure too. */
    rc = para__cl_kernel_create(dev, para_kernel_copy_src, "-cl-no-such-option",
                                "copy_u32", 4, 4, NULL, 0, &k, msg, sizeof msg);
    assert_int_equal(rc, PARA_EKERNEL_BUILD);
    print_message("bad option message: %s\n", msg);

    k = build(dev, para_kernel_copy_src, "copy_u32", 4, 4, NULL, 0);
    para__cl_kernel_release(k);
    para__cl_close(dev);
}

static void test_bad_kernels(void **state)
{
    (void)state;
    para__device *dev = open_auto();
    char msg[MSG_LEN] = "";
    para__kernel *k = NULL;

    /* No such entry point. */
    int rc =
        para__cl_kernel_create(dev, para_kernel_copy_src, "", "no_such_kernel",
                               4, 4, NULL, 0, &k, msg, sizeof msg);
    assert_int_equal(rc, PARA_EKERNEL_BUILD);
    assert_null(k);
    print_message("missing entry: %s\n", msg);
    assert_non_null(strstr(msg, "no_such_kernel"));
    assert_non_null(strstr(msg, "CL_INVALID_KERNEL_NAME"));

    /* Signatures that are not (in, out, n, extras...). */
    static const char odd[] =
        "__kernel void two(__global uint *out, uint n) { out[0] = n; }\n"
        "__kernel void scalar_in(uint in, __global uint *out, uint n)\n"
        "{ out[0] = in + n; }\n"
        "__kernel void ptr_n(__global const uint *in, __global uint *out,\n"
        "                    __global uint *n) { out[0] = in[0] + n[0]; }\n"
        "__kernel void wide_n(__global const uint *in, __global uint *out,\n"
        "                     ulong n) { out[0] = in[0] + (uint)n; }\n";
    static const char *const bad[] = {"two", "scalar_in", "ptr_n", "wide_n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = para__cl_kernel_create(dev, odd, "", bad[i], 4, 4, NULL, 0, &k,
                                    msg, sizeof msg);
        if (rc != PARA_EINVAL)
            fail_msg("%s: %s: %s", bad[i], para_err_name(rc), msg);
        print_message("%s: %s\n", bad[i], msg);
    }

    /* Extra arguments: missing, too many, wrong size. */
    uint32_t W = 256;
    uint64_t wide = 256;
    para__kernel_arg one[1] = {{&W, sizeof W, PARA_KARG_SCALAR}};
    para__kernel_arg three[3] = {{&W, 4, PARA_KARG_SCALAR},
                                 {&W, 4, PARA_KARG_SCALAR},
                                 {&W, 4, PARA_KARG_SCALAR}};
    para__kernel_arg sized[2] = {{&W, 4, PARA_KARG_SCALAR},
                                 {&wide, 8, PARA_KARG_SCALAR}};
    assert_int_equal(para__cl_kernel_create(dev, para_kernel_mandelbrot_src, "",
                                            "mandelbrot", 4, 4, NULL, 0, &k,
                                            msg, sizeof msg),
                     PARA_EINVAL);
    assert_int_equal(para__cl_kernel_create(dev, para_kernel_mandelbrot_src, "",
                                            "mandelbrot", 4, 4, one, 1, &k, msg,
                                            sizeof msg),
                     PARA_EINVAL);
    assert_int_equal(para__cl_kernel_create(dev, para_kernel_mandelbrot_src, "",
                                            "mandelbrot", 4, 4, three, 3, &k,
                                            msg, sizeof msg),
                     PARA_EINVAL);
    assert_int_equal(para__cl_kernel_create(dev, para_kernel_mandelbrot_src, "",
                                            "mandelbrot", 4, 4, sized, 2, &k,
                                            msg, sizeof msg),
                     PARA_ESIZE);
    print_message("wrong extra size: %s\n", msg);
    assert_non_null(strstr(msg, "'H'"));
    assert_non_null(strstr(msg, "'uint'"));
    assert_non_null(strstr(msg, "8 bytes"));

    /* Argument checks before any OpenCL call. */
    assert_int_equal(para__cl_kernel_create(NULL, odd, "", "two", 4, 4, NULL, 0,
                                            &k, msg, sizeof msg),
                     PARA_EINVAL);
    assert_int_equal(para__cl_kernel_create(dev, odd, "", "two", 0, 4, NULL, 0,
                                            &k, msg, sizeof msg),
                     PARA_EINVAL);
    assert_int_equal(para__cl_kernel_create(dev, odd, "", "two", 4, 4, NULL, 1,
                                            &k, msg, sizeof msg),
                     PARA_EINVAL);
    para__kernel_arg empty[1] = {{NULL, 4, PARA_KARG_SCALAR}};
    assert_int_equal(para__cl_kernel_create(dev, para_kernel_mandelbrot_src, "",
                                            "mandelbrot", 4, 4, empty, 1, &k,
                                            msg, sizeof msg),
                     PARA_EINVAL);
    assert_null(k);
    para__cl_kernel_release(NULL);
    para__cl_close(dev);
}

/* Parameter types against the node's item sizes and extra arguments, from
 * the argument information the kernels are built with. */
static void test_param_types(void **state)
{
    (void)state;
    para__device *dev = open_auto();
    char msg[MSG_LEN] = "";
    para__kernel *k = NULL;
    static const char src[] =
        "typedef struct { uint a, b, c; } trio;\n"
        "__kernel void f32(__global const float *in, __global float *out,\n"
        "                  uint n) { size_t i = get_global_id(0);\n"
        "  if (i < n) out[i] = in[i] * 2.0f; }\n"
        "__kernel void f4(__global const float4 *in, __global float3 *out,\n"
        "                 uint n) { size_t i = get_global_id(0);\n"
        "  if (i < n) out[i] = in[i].xyz; }\n"
        "__kernel void tr(__global const trio *in, __global trio *out,\n"
        "                 uint n) { size_t i = get_global_id(0);\n"
        "  if (i < n) out[i] = in[i]; }\n"
        "__kernel void cin(__constant uint *in, __global uint *out,\n"
        "                  uint n) { size_t i = get_global_id(0);\n"
        "  if (i < n) out[i] = in[i]; }\n"
        "__kernel void loc(__local uint *in, __global uint *out,\n"
        "                  uint n) { out[0] = n; }\n"
        "__kernel void ptr_extra(__global const uint *in,\n"
        "                        __global uint *out, uint n,\n"
        "                        __global const uint *b)\n"
        "{ size_t i = get_global_id(0); if (i < n) out[i] = in[i] + b[i]; }\n";

    /* 2-byte items on a uint kernel: refused before any launch. */
    int rc = para__cl_kernel_create(dev, para_kernel_copy_src, "", "copy_u32",
                                    2, 2, NULL, 0, &k, msg, sizeof msg);
    assert_int_equal(rc, PARA_ESIZE);
    assert_null(k);
    print_message("2-byte items on uint: %s\n", msg);
    assert_non_null(strstr(msg, "'uint*'"));
    assert_non_null(strstr(msg, "2 bytes"));
    assert_non_null(strstr(msg, "'in'"));

    /* double items on a float kernel. */
    rc = para__cl_kernel_create(dev, src, "", "f32", 8, 8, NULL, 0, &k, msg,
                                sizeof msg);
    assert_int_equal(rc, PARA_ESIZE);
    print_message("double items on float: %s\n", msg);
    assert_non_null(strstr(msg, "'float*'"));
    assert_non_null(strstr(msg, "8 bytes"));

    /* Only the output differs: widen_u32 writes ulong. */
    rc = para__cl_kernel_create(dev, para_kernel_copy_src, "", "widen_u32", 4,
                                4, NULL, 0, &k, msg, sizeof msg);
    assert_int_equal(rc, PARA_ESIZE);
    print_message("narrow out: %s\n", msg);
    assert_non_null(strstr(msg, "'out'"));
    assert_non_null(strstr(msg, "'ulong*'"));

    /* Vectors (a 3-vector takes the room of 4), structs (not checked) and
     * a __constant input are accepted. */
    k = build(dev, src, "f4", 16, 16, NULL, 0);
    para__cl_kernel_release(k);
    rc = para__cl_kernel_create(dev, src, "", "f4", 16, 12, NULL, 0, &k, msg,
                                sizeof msg);
    assert_int_equal(rc, PARA_ESIZE);
    k = build(dev, src, "tr", 12, 12, NULL, 0);
    para__cl_kernel_release(k);
    k = build(dev, src, "cin", 4, 4, NULL, 0);
    para__cl_kernel_release(k);

    /* A __local input, and a pointer where a scalar extra is given. */
    rc = para__cl_kernel_create(dev, src, "", "loc", 4, 4, NULL, 0, &k, msg,
                                sizeof msg);
    assert_int_equal(rc, PARA_EINVAL);
    print_message("local in: %s\n", msg);
    uint32_t B = 7;
    para__kernel_arg b[1] = {{&B, sizeof B, PARA_KARG_SCALAR}};
    rc = para__cl_kernel_create(dev, src, "", "ptr_extra", 4, 4, b, 1, &k, msg,
                                sizeof msg);
    assert_int_equal(rc, PARA_EINVAL);
    print_message("pointer extra: %s\n", msg);
    assert_non_null(strstr(msg, "'b'"));
    assert_null(k);

    /* Buffer and local-memory arguments: the wrong kind of parameter, a
     * buffer that is not a whole number of elements, then one that runs. */
    uint32_t tab[4] = {10, 20, 30, 40};
    para__kernel_arg as_buf[1] = {{tab, sizeof tab, PARA_KARG_BUFFER}};
    para__kernel_arg as_local[1] = {{NULL, 16, PARA_KARG_LOCAL}};
    para__kernel_arg odd_buf[1] = {{tab, 6, PARA_KARG_BUFFER}};
    rc = para__cl_kernel_create(dev, para_kernel_copy_src, "", "axpb_u32", 4, 4,
                                (para__kernel_arg[2]){as_buf[0], as_buf[0]}, 2,
                                &k, msg, sizeof msg);
    assert_int_equal(rc, PARA_EINVAL);
    print_message("buffer on a scalar: %s\n", msg);
    assert_non_null(strstr(msg, "a buffer"));
    rc = para__cl_kernel_create(dev, src, "", "ptr_extra", 4, 4, as_local, 1,
                                &k, msg, sizeof msg);
    assert_int_equal(rc, PARA_EINVAL);
    print_message("local on a global: %s\n", msg);
    rc = para__cl_kernel_create(dev, src, "", "ptr_extra", 4, 4, odd_buf, 1, &k,
                                msg, sizeof msg);
    assert_int_equal(rc, PARA_ESIZE);
    print_message("odd buffer: %s\n", msg);
    assert_null(k);
    k = build(dev, src, "ptr_extra", 4, 4, as_buf, 1);
    {
        uint32_t x[4] = {1, 2, 3, 4}, y[4] = {0};
        para__launch l = {.in = x, .n = 4, .out = y};
        run_launch(k, &l);
        for (unsigned i = 0; i < 4; i++)
            assert_int_equal(y[i], x[i] + tab[i]);
        para__cl_launch_fini(k, &l);
        /* A second launch of the same kernel uses the same buffer. */
        para__launch l2 = {.in = y, .n = 4, .out = x};
        run_launch(k, &l2);
        for (unsigned i = 0; i < 4; i++)
            assert_int_equal(x[i], y[i] + tab[i]);
        para__cl_launch_fini(k, &l2);
    }
    para__cl_kernel_release(k);

    /* The right sizes still run: copy_u32 with 4-byte items. */
    k = build(dev, para_kernel_copy_src, "copy_u32", 4, 4, NULL, 0);
    uint32_t in[5] = {1, 2, 3, 4, 5}, out[5] = {0};
    para__launch l = {.in = in, .n = 5, .out = out};
    run_launch(k, &l);
    assert_memory_equal(in, out, sizeof in);
    para__cl_launch_fini(k, &l);
    para__cl_kernel_release(k);
    para__cl_close(dev);
}

/* ---- program caches ---------------------------------------------------- */

static void test_memory_cache(void **state)
{
    (void)state;
    para__device *dev = open_auto();
    para__cl_stats st;
    para__kernel *a =
        build(dev, para_kernel_copy_src, "copy_u32", 4, 4, NULL, 0);
    para__cl_get_stats(dev, &st);
    assert_int_equal(st.memory_hits, 0);
    uint64_t built = st.builds_from_source + st.disk_hits;
    assert_int_equal(built, 1);

    /* The same program, another entry point: no new build. */
    uint32_t m = 2, c = 1;
    para__kernel_arg args[2] = {{&m, 4, PARA_KARG_SCALAR},
                                {&c, 4, PARA_KARG_SCALAR}};
    para__kernel *b =
        build(dev, para_kernel_copy_src, "axpb_u32", 4, 4, args, 2);
    para__cl_get_stats(dev, &st);
    assert_int_equal(st.memory_hits, 1);
    assert_int_equal(st.builds_from_source + st.disk_hits, built);

    /* Other options are another program. */
    char msg[MSG_LEN];
    para__kernel *d = NULL;
    assert_int_equal(para__cl_kernel_create(dev, para_kernel_copy_src,
                                            "-DPARA_TEST_OPTION=1", "copy_u32",
                                            4, 4, NULL, 0, &d, msg, sizeof msg),
                     0);
    para__cl_get_stats(dev, &st);
    assert_int_equal(st.memory_hits, 1);
    assert_int_equal(st.builds_from_source + st.disk_hits, built + 1);

    uint32_t in[2] = {10, 20}, out[2];
    para__launch l = {.in = in, .n = 2, .out = out};
    run_launch(b, &l);
    assert_int_equal(out[0], 21);
    assert_int_equal(out[1], 41);
    para__cl_launch_fini(b, &l);
    para__cl_kernel_release(a);
    para__cl_kernel_release(b);
    para__cl_kernel_release(d);
    para__cl_close(dev);
}

/* The item index from explicit runs: out of order, of odd lengths, with
 * numbers past 2^32; a launch without runs is refused. */
static void test_item_index_runs(void **state)
{
    (void)state;
    static const char src[] =
        "__kernel void ix(__global const uint *in, __global ulong *out,\n"
        "                 uint n, __global const ulong *idx)\n"
        "{\n"
        "    size_t i = get_global_id(0);\n"
        "    if (i < n) out[i] = idx[i] + in[i];\n"
        "}\n";
    para__device *dev = open_auto();
    para__kernel_arg args[1] = {{NULL, 0, PARA_KARG_INDEX}};
    para__kernel *k = build(dev, src, "ix", 4, 8, args, 1);
    enum { N = 1000 };
    uint32_t in[N];
    uint64_t out[N], want[N];
    /* Runs: 300 items from 5e9, 1 item from 7, 699 items from 1000. */
    uint64_t segs[6] = {5000000000ull, 0, 7, 300, 1000, 301};
    for (uint32_t i = 0; i < N; i++) {
        in[i] = i % 3;
        uint64_t seq = i < 300    ? 5000000000ull + i
                       : i == 300 ? 7
                                  : 1000 + (i - 301);
        want[i] = seq + in[i];
    }
    para__launch l = {.in = in, .n = N, .out = out, .segs = segs, .n_segs = 3};
    run_launch(k, &l);
    assert_memory_equal(out, want, sizeof want);
    /* One run for everything. */
    uint64_t one[2] = {42, 0};
    l.segs = one;
    l.n_segs = 1;
    run_launch(k, &l);
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(out[i], 42 + i + in[i]);
    para__cl_launch_fini(k, &l);
    char msg[MSG_LEN] = "";
    para__launch none = {.in = in, .n = N, .out = out};
    assert_true(para__cl_launch_begin(k, &none, msg, sizeof msg) < 0);
    assert_non_null(strstr(msg, "item index"));
    para__cl_launch_fini(k, &none);
    para__cl_kernel_release(k);
    para__cl_close(dev);
}

/* Kernel objects are created once per program and entry point and lent
 * again after release; two live at once are two objects. */
static void test_kernel_cache(void **state)
{
    (void)state;
    para__device *dev = open_auto();
    para__cl_stats st;
    uint32_t in[3] = {1, 2, 3}, out[3];
    for (uint32_t r = 0; r < 5; r++) {
        uint32_t m = r + 1, c = r;
        para__kernel_arg args[2] = {{&m, 4, PARA_KARG_SCALAR},
                                    {&c, 4, PARA_KARG_SCALAR}};
        para__kernel *k =
            build(dev, para_kernel_copy_src, "axpb_u32", 4, 4, args, 2);
        para__launch l = {.in = in, .n = 3, .out = out};
        run_launch(k, &l);
        for (int i = 0; i < 3; i++) /* this kernel's own scalars */
            assert_int_equal(out[i], in[i] * m + c);
        para__cl_launch_fini(k, &l);
        para__cl_kernel_release(k);
    }
    para__cl_get_stats(dev, &st);
    assert_int_equal(st.builds_from_source + st.disk_hits, 1);
    assert_int_equal(st.kernels_created, 1);
    assert_int_equal(st.kernel_hits, 4);

    /* Two at once: the second needs its own object (its own arguments). */
    uint32_t m1 = 2, c1 = 0, m2 = 3, c2 = 1;
    para__kernel_arg a1[2] = {{&m1, 4, PARA_KARG_SCALAR},
                              {&c1, 4, PARA_KARG_SCALAR}};
    para__kernel_arg a2[2] = {{&m2, 4, PARA_KARG_SCALAR},
                              {&c2, 4, PARA_KARG_SCALAR}};
    para__kernel *k1 =
        build(dev, para_kernel_copy_src, "axpb_u32", 4, 4, a1, 2);
    para__kernel *k2 =
        build(dev, para_kernel_copy_src, "axpb_u32", 4, 4, a2, 2);
    para__cl_get_stats(dev, &st);
    assert_int_equal(st.kernels_created, 2);
    uint32_t out2[3];
    para__launch l1 = {.in = in, .n = 3, .out = out};
    para__launch l2 = {.in = in, .n = 3, .out = out2};
    run_launch(k1, &l1);
    run_launch(k2, &l2);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(out[i], in[i] * 2);
        assert_int_equal(out2[i], in[i] * 3 + 1);
    }
    para__cl_launch_fini(k1, &l1);
    para__cl_launch_fini(k2, &l2);
    para__cl_kernel_release(k1);
    para__cl_kernel_release(k2);

    /* A missing entry point is a build error, and is not cached. */
    char msg[MSG_LEN] = "";
    para__kernel *bad = NULL;
    assert_int_equal(para__cl_kernel_create(dev, para_kernel_copy_src, "",
                                            "no_such_entry", 4, 4, NULL, 0,
                                            &bad, msg, sizeof msg),
                     PARA_EKERNEL_BUILD);
    assert_null(bad);
    assert_non_null(strstr(msg, "no_such_entry"));
    para__cl_get_stats(dev, &st);
    assert_int_equal(st.kernels_created, 2);
    para__cl_close(dev); /* releases the cached kernels (ASan: no leak) */
}

/* Build copy.cl with options unique to this test on a freshly opened
 * device, check the result of one launch, and return the device's stats. */
static para__cl_stats build_fresh(const char *options)
{
    para__device *dev = open_auto();
    char msg[MSG_LEN] = "";
    para__kernel *k = NULL;
    int rc =
        para__cl_kernel_create(dev, para_kernel_copy_src, options, "copy_u32",
                               4, 4, NULL, 0, &k, msg, sizeof msg);
    if (rc != 0)
        fail_msg("build: %s", msg);
    uint32_t in[5] = {5, 4, 3, 2, 1}, out[5] = {0};
    para__launch l = {.in = in, .n = 5, .out = out};
    run_launch(k, &l);
    assert_memory_equal(in, out, sizeof in);
    para__cl_launch_fini(k, &l);
    para__cl_kernel_release(k);
    para__cl_stats st;
    para__cl_get_stats(dev, &st);
    para__cl_close(dev);
    return st;
}

static void overwrite(const char *path, long offset, const void *data,
                      size_t len)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, offset, SEEK_SET), 0);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void test_disk_cache(void **state)
{
    (void)state;
    empty_cache_dir();
    const char *opts = "-DPARA_TEST_DISK_CACHE=1";

    /* First build: from source, written to the cache. */
    para__cl_stats st = build_fresh(opts);
    assert_int_equal(st.builds_from_source, 1);
    assert_int_equal(st.disk_hits, 0);
    assert_int_equal(st.disk_writes, 1);
    assert_int_equal(count_cache_files(), 1);
    char path[PATH_MAX + 256];
    only_cache_file(path, sizeof path);
    print_message("cache file %s\n", path);

    /* A new device in the same process: from the disk cache. */
    st = build_fresh(opts);
    assert_int_equal(st.builds_from_source, 0);
    assert_int_equal(st.disk_hits, 1);
    assert_int_equal(st.disk_writes, 0);
    assert_int_equal(st.disk_rejects, 0);

    /* A flipped byte in the binary: rejected, rebuilt, rewritten. */
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    assert_true(size > 40);
    unsigned char junk = 0xA5;
    overwrite(path, size / 2 + 16, &junk, 1);
    overwrite(path, size / 2 + 17, &junk, 1);
    st = build_fresh(opts);
    assert_int_equal(st.disk_rejects, 1);
    assert_int_equal(st.builds_from_source, 1);
    assert_int_equal(st.disk_writes, 1);
    st = build_fresh(opts);
    assert_int_equal(st.disk_hits, 1);

    /* A corrupt header (the format's magic). */
    overwrite(path, 0, "NOTMAGIC", 8);
    st = build_fresh(opts);
    assert_int_equal(st.disk_rejects, 1);
    assert_int_equal(st.builds_from_source, 1);

    /* A truncated file. */
    assert_int_equal(truncate(path, 20), 0);
    st = build_fresh(opts);
    assert_int_equal(st.disk_rejects, 1);
    assert_int_equal(st.builds_from_source, 1);
    assert_int_equal(truncate(path, size - 1), 0);
    st = build_fresh(opts);
    assert_int_equal(st.disk_rejects, 1);

    /* Extra bytes after the binary. */
    f = fopen(path, "ab");
    assert_non_null(f);
    fputs("trailing", f);
    fclose(f);
    st = build_fresh(opts);
    assert_int_equal(st.disk_rejects, 1);
    st = build_fresh(opts);
    assert_int_equal(st.disk_hits, 1);

    /* Another program gets another file. No temporary files remain. */
    st = build_fresh("-DPARA_TEST_DISK_CACHE=2");
    assert_int_equal(st.disk_writes, 1);
    assert_int_equal(count_cache_files(), 2);
    DIR *d = opendir(cache_dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            assert_non_null(strstr(e->d_name, ".clbin"));
    closedir(d);

    /* An unusable cache directory only costs the caching. */
    char saved[PATH_MAX];
    snprintf(saved, sizeof saved, "%s", cache_dir);
    setenv("PARA_CACHE_DIR", "/proc/para-no-such-dir/x", 1);
    st = build_fresh(opts);
    assert_int_equal(st.builds_from_source, 1);
    assert_int_equal(st.disk_writes, 0);
    setenv("PARA_CACHE_DIR", saved, 1);
    empty_cache_dir();
}

/* ---- tracing ----------------------------------------------------------- */

static void test_trace(void **state)
{
    (void)state;
    setenv("PARA_CL_TRACE", "1", 1);
    para__log_set_level(2);
    para__device *dev = open_auto();
    unsetenv("PARA_CL_TRACE");
    para__kernel *k = build(dev, para_kernel_empty_src, "empty", 4, 4, NULL, 0);
    uint32_t v = 1, w = 0;
    para__launch l = {.in = &v, .n = 1, .out = &w};
    clear_log();
    run_launch(k, &l);
    para__log_set_level(0);
    assert_non_null(strstr(log_text, "opencl trace"));
    assert_non_null(strstr(log_text, "clEnqueueWriteBuffer"));
    assert_non_null(strstr(log_text, "clEnqueueNDRangeKernel empty n=1"));
    assert_non_null(strstr(log_text, "clEnqueueReadBuffer"));
    para__cl_launch_fini(k, &l);
    para__cl_kernel_release(k);
    para__cl_close(dev);

    /* Off by default. */
    dev = open_auto();
    k = build(dev, para_kernel_empty_src, "empty", 4, 4, NULL, 0);
    clear_log();
    setenv("PARA_VERBOSE", "3", 1);
    run_launch(k, &l);
    para__log_set_level(0);
    assert_null(strstr(log_text, "opencl trace"));
    para__cl_launch_fini(k, &l);
    para__cl_kernel_release(k);
    para__cl_close(dev);
}

/* ---- main -------------------------------------------------------------- */

/* Device-resident buffers, launch by launch: kept outputs (without and
 * with a copy back), inputs from them as one whole buffer, a sub-buffer at
 * the device's alignment, parts of two buffers gathered on the device,
 * a blocking read back, the pool reusing a freed buffer, and nothing live
 * once everything is released. */
static void test_resident_buffers(void **state)
{
    (void)state;
    static const char src[] =
        "__kernel void inc(__global const uint *in, __global uint *out,\n"
        "                  uint n)\n"
        "{ size_t i = get_global_id(0); if (i < n) out[i] = in[i] + 1; }\n";
    enum { N = 1000 };
    para__device *dev = open_auto();
    const para__device_info *info = para__cl_info(dev);
    assert_true(info->caps & PARA__DEVCAP_RESIDENT);
    para__kernel *k = build(dev, src, "inc", 4, 4, NULL, 0);
    static uint32_t in[N], out[2 * N];
    for (uint32_t i = 0; i < N; i++)
        in[i] = i * 10;
    char msg[MSG_LEN];

    /* Step times, for the trace: queues with profiling, before any slot. */
    assert_int_equal(para__cl_set_profiling(dev, true), 0);
    /* a = in + 1, kept only; b = in + 1, kept and copied back. */
    para__launch la = {.in = in, .n = N, .keep = true, .timed = true};
    run_launch(k, &la);
    assert_true(la.copy_in_ns[0] > 0 && la.copy_in_ns[1] >= la.copy_in_ns[0]);
    assert_true(la.kernel_ns[0] >= la.copy_in_ns[0]);
    assert_true(la.kernel_ns[1] >= la.kernel_ns[0]);
    assert_int_equal(la.copy_out_ns[1], 0); /* kept: no copy back */
    assert_int_equal(para__cl_set_profiling(dev, false), PARA_EBUSY);
    assert_non_null(la.out_buf);
    assert_false(la.pool_hit);
    para__launch lb = {.in = in, .n = N, .out = out, .keep = true};
    run_launch(k, &lb);
    assert_non_null(lb.out_buf);
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(out[i], in[i] + 1);

    /* Parts of both, at an unaligned offset: gathered on the device. */
    para__devseg two[2] = {{la.out_buf, 3 * 4, 5}, {lb.out_buf, 0, N}};
    para__launch lc = {
        .n = N + 5, .out = out, .in_parts = two, .n_in_parts = 2};
    memset(out, 0, sizeof out);
    run_launch(k, &lc);
    for (uint32_t i = 0; i < N + 5; i++)
        assert_int_equal(out[i], (i < 5 ? in[i + 3] : in[i - 5]) + 2);

    /* One part at the device's alignment: a sub-buffer. */
    size_t align = info->base_align;
    print_message("base address alignment: %zu bytes\n", align);
    if (align != 0 && align % 4 == 0 && align / 4 + 100 <= N) {
        para__devseg one = {la.out_buf, align, 100};
        para__launch ld = {
            .n = 100, .out = out, .in_parts = &one, .n_in_parts = 1};
        run_launch(k, &ld);
        for (uint32_t i = 0; i < 100; i++)
            assert_int_equal(out[i], in[i + align / 4] + 2);
        para__cl_launch_fini(k, &ld);
    }

    /* The whole of a: its buffer itself; kept again, then read back. */
    para__devseg whole = {la.out_buf, 0, N};
    para__launch le = {
        .n = N, .in_parts = &whole, .n_in_parts = 1, .keep = true};
    run_launch(k, &le);
    assert_non_null(le.out_buf);
    memset(out, 0, sizeof out);
    assert_int_equal(
        para__cl_buf_read(dev, le.out_buf, 40, 400, out, msg, sizeof msg), 0);
    for (uint32_t i = 0; i < 100; i++)
        assert_int_equal(out[i], in[i + 10] + 2);
    assert_int_equal(para__cl_buf_read(dev, le.out_buf, 0, (size_t)1 << 40, out,
                                       msg, sizeof msg),
                     PARA_EINVAL);

    /* References: a buffer lives until its last one goes; then the pool
     * gives it to the next kept launch. */
    para__cl_buf_retain(dev, la.out_buf, 2);
    para__cl_buf_release(dev, la.out_buf);
    para__cl_buf_release(dev, la.out_buf);
    para__cl_buf_release(dev, la.out_buf);
    para__cl_buf_release(dev, lb.out_buf);
    para__cl_buf_release(dev, le.out_buf);
    para__launch lf = {.in = in, .n = N, .keep = true};
    run_launch(k, &lf);
    assert_true(lf.pool_hit);
    para__cl_stats st;
    para__cl_get_stats(dev, &st);
    assert_true(st.pool_hits >= 1);
    para__cl_buf_release(dev, lf.out_buf);

    para__launch *all[] = {&la, &lb, &lc, &le, &lf};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        para__cl_launch_fini(k, all[i]);
    para__cl_kernel_release(k);
    para__cl_close(dev);
    long mems = -1, events = -1;
    para__cl_live(&mems, &events);
    assert_int_equal(mems, 0);
    assert_int_equal(events, 0);
}

int main(void)
{
    para_set_log_fn(capture_log, NULL);
    para__device_info info;
    if (para__cl_list(&info, 1) == 0) {
        const char *req = getenv("PARA_REQUIRE_DEVICE");
        char msg[MSG_LEN] = "";
        para__device *dev = NULL;
        para__cl_open("auto", &dev, msg, sizeof msg);
        if (req != NULL && strcmp(req, "1") == 0) {
            fprintf(stderr,
                    "test_opencl: no OpenCL device and "
                    "PARA_REQUIRE_DEVICE=1: %s\n",
                    msg);
            return 1;
        }
        printf("test_opencl: skipped, no OpenCL device (%s)\n", msg);
        return 77;
    }

    const char *tmp = getenv("TMPDIR");
    snprintf(cache_dir, sizeof cache_dir, "%s/para-cl-test-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(cache_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    setenv("PARA_CACHE_DIR", cache_dir, 1);
    unsetenv("PARA_CL_TRACE");

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_err_names, setup),
        cmocka_unit_test_setup(test_check_macro, setup),
        cmocka_unit_test_setup(test_list, setup),
        cmocka_unit_test_setup(test_open_selectors, setup),
        cmocka_unit_test_setup(test_locality, setup),
        cmocka_unit_test_setup(test_mandelbrot, setup),
        cmocka_unit_test_setup(test_in_flight, setup),
        cmocka_unit_test_setup(test_wait_sleeps, setup),
        cmocka_unit_test_setup(test_sizes, setup),
        cmocka_unit_test_setup(test_build_error, setup),
        cmocka_unit_test_setup(test_bad_kernels, setup),
        cmocka_unit_test_setup(test_param_types, setup),
        cmocka_unit_test_setup(test_memory_cache, setup),
        cmocka_unit_test_setup(test_kernel_cache, setup),
        cmocka_unit_test_setup(test_item_index_runs, setup),
        cmocka_unit_test_setup(test_disk_cache, setup),
        cmocka_unit_test_setup(test_trace, setup),
        cmocka_unit_test_setup(test_resident_buffers, setup),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    empty_cache_dir();
    rmdir(cache_dir);
    para_set_log_fn(NULL, NULL);
    return failed;
}
