/*
 * The "cpu" device back-end: a launch runs the node's CPU implementation
 * on the thread that begins it, so the launch is complete when
 * launch_begin() returns. It has no OpenCL in it on purpose: it lets the
 * runtime's device path (gathering batches into launches, splitting the
 * outputs, completion, failures) run and be tested on any machine, and it
 * is what PARA_DEVICE=cpu selects.
 *
 * Contract: devices/device.h. A node without a CPU implementation cannot
 * run here: kernel_create() fails with PARA_ENODEV. A CPU function that
 * returns nonzero fails the launch with PARA_ENODE, its value in the
 * message.
 *
 * Tests: tests/runtime/test_device_nodes.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "para/errors.h"
#include "util.h"

typedef struct cpu_kernel {
    int (*fn)(void *arg, const void *in, void *out, size_t n);
    void *arg;
} cpu_kernel;

static bool cpu_claims(const char *entry)
{
    return strcmp(entry, "cpu") == 0;
}

static int cpu_open(const char *entry, void **out, char *msg, size_t msg_len)
{
    (void)entry;
    para__device_info *info = calloc(1, sizeof *info);
    if (info == NULL) {
        para__device_msg(msg, msg_len,
                         "out of memory opening the cpu back-end");
        return PARA_ENOMEM;
    }
    snprintf(info->name, sizeof info->name, "para cpu back-end");
    snprintf(info->vendor, sizeof info->vendor, "para");
    snprintf(info->platform, sizeof info->platform, "para");
    snprintf(info->version, sizeof info->version, "1");
    snprintf(info->type, sizeof info->type, "host");
    info->is_cpu = true;
    info->caps = PARA__DEVCAP_CPU_FN | PARA__DEVCAP_HOST_THREAD;
    info->compute_units = 1; /* a launch runs on one thread */
    info->global_mem_bytes = UINT64_MAX;
    info->max_alloc_bytes = UINT64_MAX;
    info->max_work_group = 1;
    info->max_in_flight = 4;
    *out = info;
    return 0;
}

static void cpu_close(void *dev)
{
    free(dev);
}

static const para__device_info *cpu_info(const void *dev)
{
    return dev;
}

static int cpu_kernel_create(void *dev, const para__kernel_spec *spec,
                             void **out, char *msg, size_t msg_len)
{
    (void)dev;
    int rc = para__host_fn_check(spec, "the cpu back-end", msg, msg_len);
    if (rc != 0)
        return rc;
    cpu_kernel *k = malloc(sizeof *k);
    if (k == NULL) {
        para__device_msg(msg, msg_len, "out of memory");
        return PARA_ENOMEM;
    }
    k->fn = spec->cpu_fn;
    k->arg = spec->cpu_arg;
    *out = k;
    return 0;
}

static void cpu_kernel_release(void *kernel)
{
    free(kernel);
}

static int cpu_launch_begin(void *kernel, para__launch *l, char *msg,
                            size_t msg_len)
{
    cpu_kernel *k = kernel;
    para__host_launch *s = para__host_launch_start(l, msg, msg_len);
    if (s == NULL)
        return PARA_ENOMEM;
    para__host_launch_run(s, l, k->fn, k->arg);
    s->done_ns = para__now_ns();
    return 0;
}

static int cpu_launch_poll(void *kernel, para__launch *l, char *msg,
                           size_t msg_len)
{
    (void)kernel;
    return para__host_launch_result(l->impl, l, msg, msg_len);
}

static int cpu_launch_wait(void *kernel, para__launch *l, uint64_t timeout_ns,
                           char *msg, size_t msg_len)
{
    (void)timeout_ns; /* a launch is over when launch_begin() returns */
    return cpu_launch_poll(kernel, l, msg, msg_len);
}

const para__device_ops para__cpu_ops = {
    .name = "cpu",
    .claims = cpu_claims,
    .open = cpu_open,
    .close = cpu_close,
    .info = cpu_info,
    .locality = para__host_locality,
    .kernel_create = cpu_kernel_create,
    .kernel_release = cpu_kernel_release,
    .launch_begin = cpu_launch_begin,
    .launch_poll = cpu_launch_poll,
    .launch_wait = cpu_launch_wait,
    .launch_fini = para__host_launch_fini,
};
