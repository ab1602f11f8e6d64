/*
 * The "sim" device back-end: simulated devices with a known speed, for
 * tests and benchmarks of the runtime's device scheduling on any machine.
 *
 * A simulated device computes a kernel's result with the node's CPU
 * function, on the thread that begins the launch (the runtime's host
 * thread of that device), but reports the launch finished only when a
 * real device with launch latency L and rate R would have finished it: a
 * launch of n items completes at
 *
 *     max(submit time, completion of the previous launch) + L + n / R
 *
 * so launches on one device run one after the other, as on one queue.
 * With a link bandwidth B (link=B) the launch also moves its input and
 * output over the link, n * (in_size + out_size) / B more.
 * Since the result is computed before the launch is reported finished,
 * l->out is valid at completion, as the contract wants.
 *
 * Entry syntax (one entry of a device list, e.g. PARA_DEVICE):
 *
 *     sim:L:R[:key=value]...
 *
 *   L        launch latency in microseconds (a decimal number, >= 0)
 *   R        rate in items per second (a decimal number > 0, with an
 *            optional suffix k, M or G for 1e3, 1e6, 1e9)
 *   fail=K   launch K (1 = the first since the device was opened) and every
 *            later one fail with PARA_EDEVICE: the device is lost
 *   hang=K   launch K never completes (until the device is closed)
 *   oom=K    launch K fails with PARA_ENOMEM at its start (a transient
 *            allocation failure; later launches work)
 *   maxalloc=B  buffers of at most B bytes: a launch whose input or output
 *            is larger fails with PARA_ENOMEM (as over OpenCL's
 *            CL_DEVICE_MAX_MEM_ALLOC_SIZE)
 *   link=B   host <-> device copies at B bytes per second (k, M or G
 *            suffix); reported in para__device_info.link_bytes_per_s.
 *            Without it copies are free.
 *
 * e.g. "sim:50:20M,sim:50:10M,sim:200:40M" is three devices, and
 * "sim:10:100M:link=100M" a fast device behind a slow link. Anything that
 * does not parse is PARA_EINVAL with the entry and the expected form in
 * the message. A node without a CPU function cannot run here
 * (kernel_create: PARA_ENODEV); a CPU function that returns nonzero fails
 * the launch with PARA_ENODE.
 *
 * Tests: tests/devices/test_sim.c; the runtime on simulated devices in
 * tests/runtime/test_device_nodes.c.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "device.h"
#include "para/errors.h"
#include "util.h"

/* Launches queued at once: four, as deep as the runtime goes (SLOTS in
 * runtime/device_node.c), so that a host thread the machine's load keeps
 * off a core for a while finds its device still busy when it is back. */
#define SIM_IN_FLIGHT 4

typedef struct sim_device {
    para__device_info info;
    uint64_t latency_ns;
    double ns_per_item;
    double ns_per_byte;                /* over the link; 0 = free */
    uint64_t fail_at, hang_at, oom_at; /* launch numbers, 0 = never */
    uint64_t launches;                 /* begun since open */
    uint64_t free_ns;                  /* when the device is next idle */
} sim_device;

typedef struct sim_kernel {
    sim_device *dev;
    int (*fn)(void *arg, const void *in, void *out, size_t n);
    void *arg;
    size_t in_size, out_size;
} sim_kernel;

static bool sim_claims(const char *entry)
{
    return strncmp(entry, "sim:", 4) == 0 || strcmp(entry, "sim") == 0;
}

/* A decimal number from *p up to the next ':' or the end, with an optional
 * k/M/G suffix when @p suffix. False if it does not parse. */
static bool parse_number(const char **p, bool suffix, double *out)
{
    const char *s = *p;
    char *end = NULL;
    if (*s == '\0' || *s == ':' || *s == '-' || *s == '+')
        return false;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno != 0 || !isfinite(v) || v < 0)
        return false;
    if (suffix && (*end == 'k' || *end == 'M' || *end == 'G')) {
        v *= *end == 'k' ? 1e3 : *end == 'M' ? 1e6 : 1e9;
        end++;
    }
    if (*end != '\0' && *end != ':')
        return false;
    *p = end;
    *out = v;
    return true;
}

static bool parse_count(const char **p, uint64_t *out)
{
    double v;
    if (!parse_number(p, false, &v) || v < 1 || v > 1e15 || v != floor(v))
        return false;
    *out = (uint64_t)v;
    return true;
}

static int sim_open(const char *entry, void **out, char *msg, size_t msg_len)
{
    static const char form[] =
        "expected sim:L:R[:fail=K][:hang=K][:oom=K][:maxalloc=B][:link=B] (L "
        "latency in us, R items/s and link B bytes/s with optional k/M/G)";
    double lat_us = 0, rate = 0, link = 0;
    uint64_t fail_at = 0, hang_at = 0, oom_at = 0, maxalloc = 0;
    const char *p = entry + 3;
    if (*p++ != ':' || !parse_number(&p, false, &lat_us) || *p++ != ':' ||
        !parse_number(&p, true, &rate) || rate <= 0 || lat_us > 60e6)
        goto bad;
    while (*p == ':') {
        p++;
        uint64_t *dst = NULL;
        if (strncmp(p, "link=", 5) == 0) {
            p += 5;
            if (!parse_number(&p, true, &link) || link < 1 || link > 1e15)
                goto bad;
            continue;
        }
        if (strncmp(p, "fail=", 5) == 0)
            dst = &fail_at, p += 5;
        else if (strncmp(p, "hang=", 5) == 0)
            dst = &hang_at, p += 5;
        else if (strncmp(p, "oom=", 4) == 0)
            dst = &oom_at, p += 4;
        else if (strncmp(p, "maxalloc=", 9) == 0)
            dst = &maxalloc, p += 9;
        if (dst == NULL || !parse_count(&p, dst))
            goto bad;
    }
    if (*p != '\0')
        goto bad;

    sim_device *d = calloc(1, sizeof *d);
    if (d == NULL) {
        para__device_msg(msg, msg_len, "out of memory opening \"%s\"", entry);
        return PARA_ENOMEM;
    }
    para__device_info *info = &d->info;
    snprintf(info->name, sizeof info->name, "%.100s", entry);
    snprintf(info->vendor, sizeof info->vendor, "para");
    snprintf(info->platform, sizeof info->platform, "para sim");
    snprintf(info->version, sizeof info->version, "1");
    snprintf(info->type, sizeof info->type, "sim");
    info->caps = PARA__DEVCAP_CPU_FN;
    info->is_cpu = false; /* its own simulated time, not the workers' cores */
    info->compute_units = 1;
    info->global_mem_bytes = UINT64_MAX;
    info->max_alloc_bytes = maxalloc != 0 ? maxalloc : UINT64_MAX;
    info->max_work_group = 1;
    info->max_in_flight = SIM_IN_FLIGHT;
    d->latency_ns = (uint64_t)(lat_us * 1e3 + 0.5);
    d->ns_per_item = 1e9 / rate;
    d->ns_per_byte = link > 0 ? 1e9 / link : 0;
    info->link_bytes_per_s = (uint64_t)link;
    d->fail_at = fail_at;
    d->hang_at = hang_at;
    d->oom_at = oom_at;
    *out = d;
    return 0;

bad:
    para__device_msg(msg, msg_len, "device \"%s\" does not parse: %s", entry,
                     form);
    return PARA_EINVAL;
}

static void sim_close(void *dev)
{
    free(dev);
}

static const para__device_info *sim_info(const void *dev)
{
    return &((const sim_device *)dev)->info;
}

static int sim_kernel_create(void *dev, const para__kernel_spec *spec,
                             void **out, char *msg, size_t msg_len)
{
    int rc = para__host_fn_check(spec, "a simulated device", msg, msg_len);
    if (rc != 0)
        return rc;
    sim_kernel *k = malloc(sizeof *k);
    if (k == NULL) {
        para__device_msg(msg, msg_len, "out of memory");
        return PARA_ENOMEM;
    }
    k->dev = dev;
    k->fn = spec->cpu_fn;
    k->arg = spec->cpu_arg;
    k->in_size = spec->in_size;
    k->out_size = spec->out_size;
    *out = k;
    return 0;
}

static void sim_kernel_release(void *kernel)
{
    free(kernel);
}

static int sim_launch_begin(void *kernel, para__launch *l, char *msg,
                            size_t msg_len)
{
    sim_kernel *k = kernel;
    sim_device *d = k->dev;
    para__host_launch *s = para__host_launch_start(l, msg, msg_len);
    if (s == NULL)
        return PARA_ENOMEM;
    uint64_t no = ++d->launches;
    uint64_t now = l->submit_ns;
    if (d->oom_at == no) {
        s->err = PARA_ENOMEM;
        para__device_msg(msg, msg_len, "%s: launch %llu: out of device memory",
                         d->info.name, (unsigned long long)no);
        return s->err;
    }
    if (l->n > d->info.max_alloc_bytes / PARA_MAX(k->in_size, k->out_size)) {
        s->err = PARA_ENOMEM;
        para__device_msg(
            msg, msg_len,
            "a launch of %zu items needs buffers over the %llu bytes "
            "\"%s\" allocates at most",
            l->n, (unsigned long long)d->info.max_alloc_bytes, d->info.name);
        return s->err;
    }
    if (d->fail_at != 0 && no >= d->fail_at) {
        s->err = PARA_EDEVICE;
        para__device_msg(msg, msg_len,
                         "%s: launch %llu: device lost (injected)",
                         d->info.name, (unsigned long long)no);
        return s->err;
    }
    para__host_launch_run(s, l, k->fn, k->arg);
    uint64_t start = PARA_MAX(now, d->free_ns);
    double bytes = (double)l->n * (double)(k->in_size + k->out_size);
    s->done_ns = start + d->latency_ns +
                 (uint64_t)((double)l->n * d->ns_per_item +
                            bytes * d->ns_per_byte + 0.5);
    if (d->hang_at == no)
        s->done_ns = UINT64_MAX;
    else
        d->free_ns = s->done_ns;
    return 0;
}

static int sim_launch_poll(void *kernel, para__launch *l, char *msg,
                           size_t msg_len)
{
    (void)kernel;
    const para__host_launch *s = l->impl;
    if (s != NULL && s->err == 0 && para__now_ns() < s->done_ns)
        return 0;
    return para__host_launch_result(s, l, msg, msg_len);
}

static int sim_launch_wait(void *kernel, para__launch *l, uint64_t timeout_ns,
                           char *msg, size_t msg_len)
{
    const para__host_launch *s = l->impl;
    if (s != NULL && s->err == 0) {
        uint64_t now = para__now_ns();
        uint64_t until = PARA_MIN(s->done_ns, now + timeout_ns);
        if (until > now) {
            /* CLOCK_MONOTONIC is para__now_ns()'s clock. */
            struct timespec ts = {
                .tv_sec = (time_t)(until / 1000000000u),
                .tv_nsec = (long)(until % 1000000000u),
            };
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
                   EINTR)
                ;
        }
    }
    return sim_launch_poll(kernel, l, msg, msg_len);
}

const para__device_ops para__sim_ops = {
    .name = "sim",
    .claims = sim_claims,
    .open = sim_open,
    .close = sim_close,
    .info = sim_info,
    .locality = para__host_locality,
    .kernel_create = sim_kernel_create,
    .kernel_release = sim_kernel_release,
    .launch_begin = sim_launch_begin,
    .launch_poll = sim_launch_poll,
    .launch_wait = sim_launch_wait,
    .launch_fini = para__host_launch_fini,
};
