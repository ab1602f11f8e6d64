/*
 * Measurements behind the design choices of devices/opencl/opencl.c; not a
 * test and not part of para-bench (it drives the internal device layer
 * directly). Built with the benchmarks when OpenCL is on:
 *
 *   cmake --build build --target para-cl-launch
 *   ./build/bench/para-cl-launch [selector]
 *
 * It prints, for each staging mode (write/read vs. map) and queue count:
 *   - the round trip of the empty kernel with one item, begin + wait and
 *     begin + polling, median and 90th percentile of 200 launches;
 *   - Mandelbrot 1024x1024 (workload w4 of BENCHMARKS.md) in one launch, and in
 * 1024-item launches with 4 slots in flight, polled round robin; both checked
 *     against the reference sum 70,743,018.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "opencl/cl_internal.h"
#include "para.h"
#include "para_kernels.h"
#include "util.h"

#define MSG_LEN 4096

static void die(const char *what, int rc, const char *msg)
{
    fprintf(stderr, "%s: %s: %s\n", what, para_err_name(rc), msg);
    exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void round_trip(para__device *dev, const char *label)
{
    char msg[MSG_LEN];
    para__kernel *k;
    int rc = para__cl_kernel_create(dev, para_kernel_empty_src, "", "empty", 4,
                                    4, NULL, 0, &k, msg, sizeof msg);
    if (rc != 0)
        die("kernel_create", rc, msg);
    enum { RUNS = 200 };
    uint64_t wait_ns[RUNS], poll_ns[RUNS];
    uint32_t in = 1, out = 0;
    para__launch l = {.in = &in, .n = 1, .out = &out};
    for (int i = 0; i < 20; i++) { /* warm-up */
        if ((rc = para__cl_launch_begin(k, &l, msg, sizeof msg)) != 0 ||
            (rc = para__cl_launch_wait(k, &l, msg, sizeof msg)) != 0)
            die("warm-up", rc, msg);
    }
    for (int i = 0; i < RUNS; i++) {
        uint64_t t0 = para__now_ns();
        if ((rc = para__cl_launch_begin(k, &l, msg, sizeof msg)) != 0 ||
            (rc = para__cl_launch_wait(k, &l, msg, sizeof msg)) != 0)
            die("launch", rc, msg);
        wait_ns[i] = para__now_ns() - t0;
    }
    for (int i = 0; i < RUNS; i++) {
        uint64_t t0 = para__now_ns();
        if ((rc = para__cl_launch_begin(k, &l, msg, sizeof msg)) != 0)
            die("launch", rc, msg);
        while ((rc = para__cl_launch_poll(k, &l, msg, sizeof msg)) == 0)
            para__cpu_relax();
        if (rc < 0)
            die("poll", rc, msg);
        poll_ns[i] = para__now_ns() - t0;
    }
    qsort(wait_ns, RUNS, sizeof wait_ns[0], cmp_u64);
    qsort(poll_ns, RUNS, sizeof poll_ns[0], cmp_u64);
    printf("%-14s empty kernel round trip: wait median %.1f us (p90 %.1f), "
           "poll median %.1f us (p90 %.1f)\n",
           label, wait_ns[RUNS / 2] / 1e3, wait_ns[RUNS * 9 / 10] / 1e3,
           poll_ns[RUNS / 2] / 1e3, poll_ns[RUNS * 9 / 10] / 1e3);
    para__cl_launch_fini(k, &l);
    para__cl_kernel_release(k);
}

/* Mandelbrot 1024x1024 in launches of `batch` items on `slots` slots. With
 * spin, the host polls all slots round robin without pause (a scheduler
 * thread with nothing else to do); otherwise it refills every free slot,
 * then waits for the oldest launch (a dedicated device thread). */
static double mandel(para__device *dev, size_t batch, int slots, int spin,
                     uint64_t *sum_out)
{
    char msg[MSG_LEN];
    uint32_t W = 1024, H = 1024;
    para__kernel_arg args[2] = {{&W, 4, PARA_KARG_SCALAR},
                                {&H, 4, PARA_KARG_SCALAR}};
    para__kernel *k;
    int rc = para__cl_kernel_create(dev, para_kernel_mandelbrot_src, "",
                                    "mandelbrot", 4, 4, args, 2, &k, msg,
                                    sizeof msg);
    if (rc != 0)
        die("kernel_create", rc, msg);
    size_t n = (size_t)W * H;
    uint32_t *in = malloc(n * 4), *out = malloc(n * 4);
    for (size_t i = 0; i < n; i++)
        in[i] = (uint32_t)i;
    para__launch l[8];
    memset(l, 0, sizeof l);

    uint64_t t0 = para__now_ns();
    size_t next = 0, done = 0;
    int busy[8] = {0};
    int oldest = 0; /* slots are filled and finish in round-robin order */
    while (done < n) {
        for (int s = 0; s < slots; s++) {
            if (busy[s] && spin) {
                rc = para__cl_launch_poll(k, &l[s], msg, sizeof msg);
                if (rc < 0)
                    die("poll", rc, msg);
                if (rc == 1) {
                    busy[s] = 0;
                    done += l[s].n;
                }
            }
            if (!busy[s] && next < n) {
                l[s].in = in + next;
                l[s].out = out + next;
                l[s].n = PARA_MIN(batch, n - next);
                next += l[s].n;
                if ((rc = para__cl_launch_begin(k, &l[s], msg, sizeof msg)) !=
                    0)
                    die("begin", rc, msg);
                busy[s] = 1;
            }
        }
        if (!spin && busy[oldest]) {
            rc = para__cl_launch_wait(k, &l[oldest], msg, sizeof msg);
            if (rc != 0)
                die("wait", rc, msg);
            busy[oldest] = 0;
            done += l[oldest].n;
            oldest = (oldest + 1) % slots;
        }
    }
    double s = (double)(para__now_ns() - t0) / 1e9;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += out[i];
    *sum_out = sum;
    for (int i = 0; i < slots; i++)
        para__cl_launch_fini(k, &l[i]);
    para__cl_kernel_release(k);
    free(in);
    free(out);
    return s;
}

static double median3(double a, double b, double c)
{
    return a > b ? (b > c ? b : (a > c ? c : a))
                 : (a > c ? a : (b > c ? c : b));
}

/* Time para__cl_kernel_create of Mandelbrot with fresh options: from
 * source on one device, then from the disk cache on a second device, then
 * from the first device's in-process cache. */
static void build_times(const char *selector)
{
    char msg[MSG_LEN], opts[64];
    snprintf(opts, sizeof opts, "-DPARA_BENCH_NONCE=%llu",
             (unsigned long long)para__now_ns());
    uint32_t W = 1024;
    para__kernel_arg args[2] = {{&W, 4, PARA_KARG_SCALAR},
                                {&W, 4, PARA_KARG_SCALAR}};
    para__device *a, *b;
    para__kernel *k1, *k2, *k3;
    int rc;
    if ((rc = para__cl_open(selector, &a, msg, sizeof msg)) != 0 ||
        (rc = para__cl_open(selector, &b, msg, sizeof msg)) != 0)
        die("open", rc, msg);
    uint64_t t0 = para__now_ns();
    rc = para__cl_kernel_create(a, para_kernel_mandelbrot_src, opts,
                                "mandelbrot", 4, 4, args, 2, &k1, msg,
                                sizeof msg);
    uint64_t t1 = para__now_ns();
    if (rc == 0)
        rc = para__cl_kernel_create(b, para_kernel_mandelbrot_src, opts,
                                    "mandelbrot", 4, 4, args, 2, &k2, msg,
                                    sizeof msg);
    uint64_t t2 = para__now_ns();
    if (rc == 0)
        rc = para__cl_kernel_create(a, para_kernel_mandelbrot_src, opts,
                                    "mandelbrot", 4, 4, args, 2, &k3, msg,
                                    sizeof msg);
    uint64_t t3 = para__now_ns();
    if (rc != 0)
        die("kernel_create", rc, msg);
    para__cl_stats sb;
    para__cl_get_stats(b, &sb);
    printf("build mandelbrot: from source %.1f ms, from disk cache %.1f ms "
           "(disk hits %llu), in-process cache %.3f ms\n",
           (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6,
           (unsigned long long)sb.disk_hits, (double)(t3 - t2) / 1e6);
    para__cl_kernel_release(k1);
    para__cl_kernel_release(k2);
    para__cl_kernel_release(k3);
    para__cl_close(a);
    para__cl_close(b);
}

int main(int argc, char **argv)
{
    const char *selector = argc > 1 ? argv[1] : "auto";
    char msg[MSG_LEN];
    build_times(selector);
    static const struct {
        const char *label;
        para__cl_staging staging;
        unsigned queues;
    } modes[] = {
        {"write/4 queues", PARA__CL_STAGING_WRITE, 4},
        {"write/1 queue", PARA__CL_STAGING_WRITE, 1},
        {"map/4 queues", PARA__CL_STAGING_MAP, 4},
        {"map/1 queue", PARA__CL_STAGING_MAP, 1},
    };
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        para__device *dev;
        int rc = para__cl_open(selector, &dev, msg, sizeof msg);
        if (rc != 0)
            die("open", rc, msg);
        if (m == 0)
            printf("device: %s (%s)\n", para__cl_info(dev)->name,
                   para__cl_info(dev)->version);
        para__cl_tune(dev, modes[m].staging, modes[m].queues);
        round_trip(dev, modes[m].label);
        double one[3], waited[3], spun[3], one_slot[3];
        uint64_t sum;
        for (int r = 0; r < 3; r++) {
            one[r] = mandel(dev, (size_t)1 << 20, 1, 0, &sum);
            if (sum != 70743018)
                printf("  sum %llu differs\n", (unsigned long long)sum);
            waited[r] = mandel(dev, 1024, 4, 0, &sum);
            if (sum != 70743018)
                printf("  sum %llu differs\n", (unsigned long long)sum);
            spun[r] = mandel(dev, 1024, 4, 1, &sum);
            if (sum != 70743018)
                printf("  sum %llu differs\n", (unsigned long long)sum);
            one_slot[r] = mandel(dev, 1024, 1, 0, &sum);
            if (sum != 70743018)
                printf("  sum %llu differs\n", (unsigned long long)sum);
        }
        double a = median3(one[0], one[1], one[2]);
        double b = median3(waited[0], waited[1], waited[2]);
        double c = median3(spun[0], spun[1], spun[2]);
        double d = median3(one_slot[0], one_slot[1], one_slot[2]);
        printf("%-14s mandelbrot 1024x1024: one launch %.0f ms; 1024-item "
               "launches: 4 in flight, wait oldest %.0f ms, 4 in flight, "
               "spin-poll %.0f ms, 1 in flight %.0f ms\n",
               modes[m].label, a * 1e3, b * 1e3, c * 1e3, d * 1e3);
        para__cl_close(dev);
    }
    return 0;
}
