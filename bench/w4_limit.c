/*
 * para-bench: w4's `limit`, the best plain OpenCL does with the device: no
 * para layer at all (neither the runtime nor the device back-end), only the
 * OpenCL API on the device PARA_DEVICE names. Three schedules of the same
 * work are timed and the fastest is the limit:
 *
 *   one     write all N indices, one kernel launch, read all N counts;
 *   2x4     the N pixels in 4 chunks on 2 in-order queues, alternating,
 *           each chunk write + kernel (global offset) + read, so the copies
 *           of one chunk overlap the kernel of the other (double buffering);
 *   2x16    the same with 16 chunks.
 *
 * On a GPU behind PCIe the chunked schedules can hide the copies; on a CPU
 * device (PoCL) there is nothing to hide and one launch is usually best.
 * The work-group size is the device back-end's rule (128, clamped to the
 * kernel's limit), the build options none.
 */
#define _POSIX_C_SOURCE 200809L

#include "w4_limit.h"

#ifdef PARA_WITH_OPENCL

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#ifndef CL_USE_DEPRECATED_OPENCL_1_2_APIS
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#endif
#include <CL/cl.h>

#define W4L_QUEUES 2

typedef struct w4l {
    const uint32_t *pixels;
    uint32_t n, side;
    uint32_t *out;
    uint64_t expect;
    cl_context ctx;
    cl_command_queue q[W4L_QUEUES];
    cl_program prog;
    cl_kernel kernel;
    cl_mem in_buf, out_buf;
    size_t local;
    unsigned chunks; /* the schedule being timed: 1 = one launch */
} w4l;

static int w4l_check_sum(w4l *s, bench_row_t *row)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < s->n; i++)
        sum += s->out[i];
    double diff =
        sum > s->expect ? (double)(sum - s->expect) : (double)(s->expect - sum);
    if (diff > 0.0001 * (double)s->expect) {
        bench_fail(row, "sum %llu, reference %llu (more than 0.01 %% apart)",
                   (unsigned long long)sum, (unsigned long long)s->expect);
        return 1;
    }
    return 0;
}

/* One timed run of the current schedule. */
static int w4l_run(void *state, bench_row_t *row)
{
    w4l *s = state;
    cl_int rc = CL_SUCCESS;
    unsigned chunks = s->chunks;
    size_t per = ((size_t)s->n + chunks - 1) / chunks;
    per = (per + s->local - 1) / s->local * s->local;
    cl_uint n32 = s->n;
    rc |= clSetKernelArg(s->kernel, 0, sizeof s->in_buf, &s->in_buf);
    rc |= clSetKernelArg(s->kernel, 1, sizeof s->out_buf, &s->out_buf);
    rc |= clSetKernelArg(s->kernel, 2, sizeof n32, &n32);
    rc |= clSetKernelArg(s->kernel, 3, sizeof s->side, &s->side);
    rc |= clSetKernelArg(s->kernel, 4, sizeof s->side, &s->side);
    for (size_t at = 0, c = 0; at < s->n && rc == CL_SUCCESS; at += per, c++) {
        cl_command_queue q = s->q[c % W4L_QUEUES];
        size_t items = at + per <= s->n ? per : s->n - at;
        size_t global = (items + s->local - 1) / s->local * s->local;
        rc = clEnqueueWriteBuffer(q, s->in_buf, CL_FALSE, at * 4, items * 4,
                                  s->pixels + at, 0, NULL, NULL);
        if (rc == CL_SUCCESS)
            rc = clEnqueueNDRangeKernel(q, s->kernel, 1, &at, &global,
                                        &s->local, 0, NULL, NULL);
        if (rc == CL_SUCCESS)
            rc = clEnqueueReadBuffer(q, s->out_buf, CL_FALSE, at * 4, items * 4,
                                     s->out + at, 0, NULL, NULL);
        if (rc == CL_SUCCESS)
            rc = clFlush(q);
    }
    for (unsigned i = 0; i < W4L_QUEUES; i++)
        if (clFinish(s->q[i]) != CL_SUCCESS && rc == CL_SUCCESS)
            rc = CL_INVALID_COMMAND_QUEUE;
    if (rc != CL_SUCCESS) {
        bench_fail(row, "plain OpenCL: a call failed with %d", (int)rc);
        return 1;
    }
    return w4l_check_sum(s, row);
}

static void w4l_release(w4l *s)
{
    if (s->in_buf != NULL)
        clReleaseMemObject(s->in_buf);
    if (s->out_buf != NULL)
        clReleaseMemObject(s->out_buf);
    if (s->kernel != NULL)
        clReleaseKernel(s->kernel);
    if (s->prog != NULL)
        clReleaseProgram(s->prog);
    for (unsigned i = 0; i < W4L_QUEUES; i++)
        if (s->q[i] != NULL)
            clReleaseCommandQueue(s->q[i]);
    if (s->ctx != NULL)
        clReleaseContext(s->ctx);
}

int w4_limit_plain(const bench_cfg_t *cfg, const w4_limit_job *job,
                   bench_row_t *row)
{
    cl_uint np = 0;
    cl_platform_id plats[16];
    if (clGetPlatformIDs(16, plats, &np) != CL_SUCCESS ||
        job->platform_index >= np)
        return -1;
    cl_device_id devs[64];
    cl_uint nd = 0;
    if (clGetDeviceIDs(plats[job->platform_index], CL_DEVICE_TYPE_ALL, 64, devs,
                       &nd) != CL_SUCCESS ||
        job->device_index >= nd)
        return -1;
    cl_device_id dev = devs[job->device_index];
    w4l s = {.pixels = job->pixels,
             .n = job->n,
             .side = job->side,
             .expect = job->expect};
    cl_int rc;
    s.out = malloc((size_t)job->n * 4);
    s.ctx =
        s.out != NULL ? clCreateContext(NULL, 1, &dev, NULL, NULL, &rc) : NULL;
    for (unsigned i = 0; s.ctx != NULL && i < W4L_QUEUES; i++)
        s.q[i] = clCreateCommandQueue(s.ctx, dev, 0, &rc);
    const char *src = job->source;
    size_t len = strlen(src);
    if (s.q[W4L_QUEUES - 1] != NULL)
        s.prog = clCreateProgramWithSource(s.ctx, 1, &src, &len, &rc);
    if (s.prog != NULL &&
        clBuildProgram(s.prog, 1, &dev, "", NULL, NULL) == CL_SUCCESS)
        s.kernel = clCreateKernel(s.prog, "mandelbrot", &rc);
    if (s.kernel != NULL) {
        s.in_buf =
            clCreateBuffer(s.ctx, CL_MEM_READ_ONLY, (size_t)s.n * 4, NULL, &rc);
        s.out_buf = clCreateBuffer(s.ctx, CL_MEM_WRITE_ONLY, (size_t)s.n * 4,
                                   NULL, &rc);
    }
    if (s.in_buf == NULL || s.out_buf == NULL) {
        bench_fail(row, "plain OpenCL: setting up the device failed");
        w4l_release(&s);
        free(s.out);
        return 0;
    }
    size_t max_wg = 0;
    clGetKernelWorkGroupInfo(s.kernel, dev, CL_KERNEL_WORK_GROUP_SIZE,
                             sizeof max_wg, &max_wg, NULL);
    s.local = max_wg != 0 && max_wg < 128 ? max_wg : 128;

    static const unsigned schedules[] = {1, 4, 16};
    double best = 0, best_cpu = 0;
    unsigned best_chunks = 1;
    for (size_t i = 0; i < sizeof schedules / sizeof schedules[0]; i++) {
        s.chunks = schedules[i];
        bench_row_t r;
        bench_row_init(&r, row->workload, row->variant, row->items,
                       row->threads);
        s.chunks = schedules[i];
        w4l_run(&s, &r); /* warm: the first launch may compile */
        bench_time(cfg, w4l_run, &s, &r);
        if (!r.ok) {
            bench_fail(row, "%s", r.check);
            break;
        }
        fprintf(stderr, "w4 limit: %u launch%s on %d queue%s: %.4f s\n",
                schedules[i], schedules[i] > 1 ? "es" : "",
                schedules[i] > 1 ? W4L_QUEUES : 1, schedules[i] > 1 ? "s" : "",
                r.seconds);
        if (best == 0 || r.seconds < best) {
            best = r.seconds;
            best_cpu = r.cpu_seconds;
            best_chunks = schedules[i];
        }
    }
    row->seconds = best;
    row->cpu_seconds = best_cpu;
    snprintf(row->extra, sizeof row->extra, "\"limit_launches\":%u",
             best_chunks);
    w4l_release(&s);
    free(s.out);
    return 0;
}

#else

int w4_limit_plain(const bench_cfg_t *cfg, const w4_limit_job *job,
                   bench_row_t *row)
{
    (void)cfg;
    (void)job;
    (void)row;
    return -1;
}

#endif
