/*
 * OpenCL back-end of the device layer: the functions of devices/device.h.
 *
 * Discovery. Every call that needs the device list asks the ICD loader
 * again (clGetPlatformIDs, then clGetDeviceIDs with CL_DEVICE_TYPE_ALL per
 * platform); nothing is cached in globals. No ICD at all
 * (CL_PLATFORM_NOT_FOUND_KHR, -1001) or a platform without devices
 * (CL_DEVICE_NOT_FOUND) just means fewer devices.
 *
 * Device. One context per opened device, and PARA_CL_QUEUES in-order
 * command queues in it. A launch slot is bound to the least used queue the
 * first time it is launched and keeps it until para__cl_launch_fini(): as
 * long as no more than PARA_CL_QUEUES slots are live, every slot has a
 * queue of its own, so the copies of one launch can overlap the kernel of
 * another on drivers that run queues concurrently (on NVIDIA a queue is a
 * stream), and a blocking map in one slot never waits for another slot's
 * kernel. More slots than queues share queues: still correct, only less
 * overlap.
 *
 * Programs. para__cl_kernel_create() looks for the program in an
 * in-process cache (one list per device, since a cl_program belongs to a
 * context, compared on the full source and options), then on disk, then
 * builds from source. The disk cache holds one file per program,
 * <dir>/<key>.clbin, where key is a 64-bit FNV-1a hash of the source, the
 * options, and the device's name and version, the driver version and the
 * platform's name and version, so a driver update changes the key and old
 * files are simply never read again. The file is a 32-byte header (magic
 * "PARACLB1", key, binary size, FNV-1a of the binary) and the binary from
 * CL_PROGRAM_BINARIES. It is written to a temporary file in the same
 * directory and renamed over the final name, so readers see a complete
 * file or none, also with several processes. A file whose header or
 * checksum does not match, or that the driver refuses, is counted as a
 * reject, ignored, and replaced by a fresh build: never an error.
 * Kernel objects are kept too: one per (program, entry point), created at
 * its first use and released when the device closes, lent to one
 * para__kernel at a time (a cl_kernel holds its argument values; a second
 * node with the same kernel in the same run gets a second object). So a
 * runtime that runs a graph N times builds and creates each kernel once.
 *
 * Launches. A slot (para__launch.impl, a launch_state) keeps a device input
 * and output buffer across launches and only reallocates them, to the next
 * power of two, when a batch no longer fits. A launch enqueues three
 * commands on the slot's queue, all non-blocking, each with an event:
 *
 *   WRITE staging (default):  clEnqueueWriteBuffer(in <- l->in)
 *                             clEnqueueNDRangeKernel
 *                             clEnqueueReadBuffer(out -> l->out)
 *   MAP staging:              map in (blocking, WRITE_INVALIDATE), memcpy
 *                             l->in, clEnqueueUnmapMemObject
 *                             clEnqueueNDRangeKernel
 *                             clEnqueueMapBuffer(out, non-blocking); on
 *                             completion memcpy into l->out and unmap
 *
 * then clFlush. WRITE uses plain CL_MEM_READ_ONLY / CL_MEM_WRITE_ONLY
 * buffers, MAP CL_MEM_ALLOC_HOST_PTR ones. Measured on PoCL 3.1, 2 cores
 * (tests/devices/bench_opencl.c): the empty kernel's round trip is 27 us
 * with WRITE against 59 us with MAP, and Mandelbrot 1024x1024 in 1024-item
 * launches, 4 in flight, takes the same time with both (198 vs 205 ms; one
 * launch of everything: 189 ms). WRITE also leaves the memcpy to the
 * driver instead of the caller's thread, so it is the default, and
 * para__cl_tune() selects MAP for drivers where it wins (discrete GPUs
 * with pinned host memory may be one). Four queues instead of one: 198 vs
 * 218 ms for the same Mandelbrot run.
 *
 * The global size is n rounded up to the kernel's work-group size, which is
 * fixed per kernel (a new local size makes PoCL compile a new work-group
 * function). Polling reads CL_EVENT_COMMAND_EXECUTION_STATUS of the three
 * events; a negative status of any of them fails the launch with the name
 * of the command and of the status. Every failure path waits for the
 * slot's queue to drain (clFinish) before it returns, so the device never
 * touches l->in or l->out after the caller has been told the launch is
 * over; that is the only place where poll may block. On a CPU device a
 * poll that finds the launch running yields the core (sched_yield), since
 * the driver's threads need it: with a caller spinning on poll, 4-in-flight
 * Mandelbrot took 272 ms without and 217 ms with the yield. A bounded wait
 * (para__cl_launch_wait_for(), the runtime's host thread) does not poll in
 * a loop: it sleeps until the launch's last command calls back (cl_waker).
 *
 * Errors: every OpenCL call whose failure fails the operation goes through
 * PARA_CL_CHECK (cl_internal.h), which logs and jumps to the function's
 * single fail: label; info queries and releases on cleanup paths are not
 * checked. PARA_CL_TRACE=1 logs every enqueue and buffer allocation at
 * info level (so they show with PARA_VERBOSE=2 or more).
 *
 * Tests: tests/devices/test_opencl.c (discovery, selection, builds, caches,
 * launches) and tests/devices/test_opencl_faults.c (failing OpenCL calls,
 * injected with -Wl,--wrap).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cl_internal.h"
#include "para/errors.h"
#include "para/graph.h"
#include "util.h"

#include <hwloc/opencl.h>

/* Command queues per device, and launches the scheduler may keep in flight
 * per device (one per queue, so that each slot has its own queue). */
#define PARA_CL_QUEUES 4
#define PARA_CL_MAX_IN_FLIGHT 4

/* Work-group size we aim for, clamped to what the kernel allows: a multiple
 * of every GPU's SIMD width (32, 64) that leaves room for several groups
 * per compute unit; on PoCL, 64..256 measure the same. */
#ifndef PARA_CL_LOCAL_SIZE
#define PARA_CL_LOCAL_SIZE 128
#endif

/* Longest sleep on a launch between checks of its status when the waker
 * is armed (cl_waker): only a driver that never calls back waits this long
 * to be seen complete (the runtime's host thread waits in slices as long). */
#define WAKE_CHECK_NS 10000000u

/* Cache files larger than this are treated as corrupt. */
#define PARA_CL_MAX_BINARY ((uint64_t)256 << 20)

/* Free device-resident buffers a device keeps for reuse (its pool); more
 * are released. */
#define PARA_CL_POOL_KEEP 32

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

typedef struct program_entry {
    struct program_entry *next;
    char *source;
    char *options;
    cl_program program;
} program_entry;

/* A device-resident buffer (para__launch.out_buf): the output of a kept
 * launch, read by later launches until its last reference goes; then it
 * waits in the device's pool for the next kept launch. */
typedef struct pbuf {
    struct pbuf *next; /* in the pool's free list */
    para__device *dev;
    cl_mem mem;
    size_t cap;
    cl_event ev;   /* the kernel that writes it; NULL once free */
    unsigned refs; /* pool_lock */
} pbuf;

/* A kernel object kept for the device's lifetime: created once per
 * (program, entry point), lent to one para__kernel at a time (a cl_kernel
 * holds its argument values, so two nodes of one run never share one) and
 * taken back by para__cl_kernel_release(). */
typedef struct kernel_entry {
    struct kernel_entry *next;
    const program_entry *program;
    char *entry;
    cl_kernel kernel;
    bool lent;
} kernel_entry;

/*
 * Completion wake-ups (para__cl_launch_wait_for()). A launch's last command
 * gets an event callback (clSetEventCallback, CL_COMPLETE: also called
 * when the command ends with an error) that bumps the device's waker
 * generation and wakes its waiters, so the host thread sleeps through a
 * launch instead of polling it: on a CPU device every poll's wake-up takes
 * a core from the driver's threads (polling every 100 us cost w4 about 5 %
 * on PoCL with 2 cores). The callback runs on a driver thread, possibly
 * after clFinish() returned, so it touches only the waker, which is
 * reference-counted: one reference held by the device, one by every
 * registered callback; the last one frees it.
 *
 * Memory orders: gen is read and written under lock (the condition
 * variable's mutex); refs is a reference count, so its decrements are
 * acq_rel (the thread that frees the waker has seen every other holder's
 * last use of it) and its increments relaxed (taken by a holder of a
 * reference, which keeps the waker alive meanwhile); waker_close()'s
 * acquire read of refs only watches the callbacks go, waker_put() decides.
 */
typedef struct cl_waker {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    uint64_t gen;        /* lock: callbacks so far */
    _Atomic unsigned refs;
} cl_waker;

struct para__device {
    para__device_info info;
    cl_platform_id platform;
    cl_device_id id;
    cl_context ctx;
    cl_command_queue queues[PARA_CL_QUEUES];
    cl_command_queue read_q; /* buf_read(): apart from the launches */
    unsigned queue_users[PARA_CL_QUEUES]; /* live slots bound to each */
    unsigned n_queues;                    /* queues slots are spread over */
    para__cl_staging staging;
    bool trace;        /* PARA_CL_TRACE */
    uint64_t key_seed; /* hash of what identifies device and driver */
    program_entry *programs;
    kernel_entry *kernels;
    unsigned live_kernels, live_slots;
    para__cl_stats stats;
    /* The pool of device-resident buffers. Its lock guards pool, pool_n,
     * every pbuf's refs and the pool counters of stats: buffers are
     * released by whichever thread drops a batch's last reference. */
    pthread_mutex_t pool_lock;
    pbuf *pool;
    unsigned pool_n;
    cl_waker *waker; /* NULL: launches are polled (see cl_waker) */
};

struct para__kernel {
    para__device *dev;
    kernel_entry *cached; /* the device's kernel object this one borrows */
    cl_kernel kernel;     /* cached->kernel */
    size_t in_size, out_size;
    size_t local; /* work-group size */
    char entry[64];
    cl_mem *bufs; /* per extra argument: its device copy (buffers), or NULL */
    size_t n_bufs;
    /* Item index arguments (PARA_KARG_INDEX): their parameter numbers, and
     * the kernel that writes the numbers from the launch's runs. */
    cl_uint *index_at;
    size_t n_index;
    kernel_entry *expand;
};

/* The three commands of a launch, in queue order. */
enum { EV_IN, EV_KERNEL, EV_OUT, EV_COUNT };

typedef struct launch_state {
    para__device *dev;
    unsigned queue;
    para__cl_staging staging; /* of in_buf and out_buf */
    cl_mem in_buf, out_buf;
    size_t in_cap, out_cap;  /* bytes */
    cl_mem seg_buf, idx_buf; /* item index: the runs, the numbers */
    size_t seg_cap, idx_cap;
    cl_event ev[EV_COUNT]; /* NULL for a command the launch does not have */
    const char *ev_name[EV_COUNT];
    /* Device-resident launches: the input buffers held until the launch is
     * over, a sub-buffer of one of them, and the kept output. */
    pbuf **held;
    size_t n_held, cap_held;
    cl_mem sub;
    pbuf *out_pb;
    /* Pinned host staging (para__cl_stage()): CL_MEM_ALLOC_HOST_PTR buffers
     * mapped for the slot's life; the caller gathers into them. */
    cl_mem pin[2];
    void *pin_map[2];
    size_t pin_cap[2];
    void *out_map; /* MAP staging: the output while it is mapped */
    size_t out_bytes;
    bool running;
    bool woken;   /* the running launch's last command calls the waker */
    int last_err; /* result of the last launch once it is over */
} launch_state;

static const char *const ev_call[2][EV_COUNT] = {
    [PARA__CL_STAGING_WRITE] = {"clEnqueueWriteBuffer",
                                "clEnqueueNDRangeKernel",
                                "clEnqueueReadBuffer"},
    [PARA__CL_STAGING_MAP] = {"clEnqueueUnmapMemObject",
                              "clEnqueueNDRangeKernel", "clEnqueueMapBuffer"},
};

/* ---- live objects ------------------------------------------------------ */

/* The cl_mem and cl_event objects this back-end holds now, over all
 * devices (para__cl_live()): tests check that a run, failed or not, leaves
 * none behind. relaxed: counters, read when nothing runs. */
static _Atomic long live_mems, live_events;

static void mem_born(void)
{
    atomic_fetch_add_explicit(&live_mems, 1, memory_order_relaxed);
}

/* The size to allocate for @p need bytes: the next power of two from
 * @p least, or exactly @p need where that would pass the device's
 * allocation limit (buffers are reused for later, larger needs). */
static size_t buffer_size(const para__device *dev, size_t need, size_t least)
{
    size_t want = least;
    while (want < need && want <= SIZE_MAX / 2)
        want *= 2;
    return want < need || want > dev->info.max_alloc_bytes ? need : want;
}

static void mem_release(cl_mem m)
{
    if (m == NULL)
        return;
    clReleaseMemObject(m);
    atomic_fetch_sub_explicit(&live_mems, 1, memory_order_relaxed);
}

static void ev_born(const cl_event *e)
{
    if (e != NULL && *e != NULL)
        atomic_fetch_add_explicit(&live_events, 1, memory_order_relaxed);
}

static void ev_release(cl_event *e)
{
    if (*e == NULL)
        return;
    clReleaseEvent(*e);
    *e = NULL;
    atomic_fetch_sub_explicit(&live_events, 1, memory_order_relaxed);
}

void para__cl_live(long *mems, long *events)
{
    *mems = atomic_load_explicit(&live_mems, memory_order_relaxed);
    *events = atomic_load_explicit(&live_events, memory_order_relaxed);
}

/* ---- small helpers ----------------------------------------------------- */

static void set_msg(char *msg, size_t msg_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_msg(char *msg, size_t msg_len, const char *fmt, ...)
{
    if (msg == NULL || msg_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msg_len, fmt, ap);
    va_end(ap);
}

static void trace(const para__device *dev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void trace(const para__device *dev, const char *fmt, ...)
{
    if (!dev->trace)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    para__log(2, "opencl trace: %s: %s", dev->info.name, line);
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Hash a string including its terminating NUL, so that ("ab", "c") and
 * ("a", "bc") differ. */
static uint64_t fnv1a_str(uint64_t h, const char *s)
{
    return fnv1a(h, s, strlen(s) + 1);
}

static bool contains_ci(const char *haystack, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *h = haystack; *h != '\0'; h++) {
        size_t i = 0;
        while (i < n && h[i] != '\0' &&
               tolower((unsigned char)h[i]) ==
                   tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return true;
    }
    return n == 0;
}

/* A string query into a fixed buffer, truncated if longer; "" on error. */
static void device_string(cl_device_id id, cl_device_info what, char *buf,
                          size_t len)
{
    size_t need = 0;
    buf[0] = '\0';
    if (clGetDeviceInfo(id, what, 0, NULL, &need) != CL_SUCCESS || need == 0)
        return;
    if (need <= len) {
        if (clGetDeviceInfo(id, what, len, buf, NULL) != CL_SUCCESS)
            buf[0] = '\0';
        return;
    }
    char *tmp = malloc(need);
    if (tmp == NULL)
        return;
    if (clGetDeviceInfo(id, what, need, tmp, NULL) == CL_SUCCESS)
        snprintf(buf, len, "%s", tmp);
    free(tmp);
}

static void platform_string(cl_platform_id id, cl_platform_info what, char *buf,
                            size_t len)
{
    size_t need = 0;
    buf[0] = '\0';
    if (clGetPlatformInfo(id, what, 0, NULL, &need) != CL_SUCCESS || need == 0)
        return;
    if (need <= len) {
        if (clGetPlatformInfo(id, what, len, buf, NULL) != CL_SUCCESS)
            buf[0] = '\0';
        return;
    }
    char *tmp = malloc(need);
    if (tmp == NULL)
        return;
    if (clGetPlatformInfo(id, what, need, tmp, NULL) == CL_SUCCESS)
        snprintf(buf, len, "%s", tmp);
    free(tmp);
}

/* ---- discovery --------------------------------------------------------- */

typedef struct found_device {
    cl_platform_id platform;
    cl_device_id id;
    cl_device_type type;
    para__device_info info;
} found_device;

static void fill_info(found_device *f, unsigned p, unsigned d)
{
    para__device_info *info = &f->info;
    memset(info, 0, sizeof *info);
    device_string(f->id, CL_DEVICE_NAME, info->name, sizeof info->name);
    device_string(f->id, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    platform_string(f->platform, CL_PLATFORM_NAME, info->platform,
                    sizeof info->platform);
    char version[128], driver[128];
    device_string(f->id, CL_DEVICE_VERSION, version, sizeof version);
    device_string(f->id, CL_DRIVER_VERSION, driver, sizeof driver);
    /* Both fit in practice ("OpenCL 3.0 CUDA", "535.104.05"); the
     * precisions only bound the worst case for the 128 bytes. */
    snprintf(info->version, sizeof info->version, "%.80s, driver %.37s",
             version, driver);
    info->platform_index = p;
    info->device_index = d;

    cl_device_type type = 0;
    cl_uint units = 0;
    cl_ulong global = 0, max_alloc = 0;
    size_t max_wg = 0;
    clGetDeviceInfo(f->id, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    clGetDeviceInfo(f->id, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units,
                    NULL);
    clGetDeviceInfo(f->id, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global,
                    NULL);
    clGetDeviceInfo(f->id, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc,
                    &max_alloc, NULL);
    clGetDeviceInfo(f->id, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg,
                    &max_wg, NULL);
    f->type = type;
    info->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    snprintf(info->type, sizeof info->type, "%s",
             (type & CL_DEVICE_TYPE_GPU)           ? "gpu"
             : (type & CL_DEVICE_TYPE_ACCELERATOR) ? "accelerator"
             : info->is_cpu                        ? "cpu"
                                                   : "custom");
    info->caps = 0;
    info->compute_units = units;
    info->global_mem_bytes = global;
    info->max_alloc_bytes = max_alloc;
    info->max_work_group = max_wg;
    info->max_in_flight = PARA_CL_MAX_IN_FLIGHT;
    cl_uint align_bits = 0;
    clGetDeviceInfo(f->id, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits,
                    &align_bits, NULL);
    info->base_align = align_bits / 8;
}

/* Every device of every platform, in (platform, device) order, into a
 * malloc'ed array (*out, NULL when there is none). When none is found, `why`
 * says what the loader answered. */
static size_t enumerate(found_device **out, char *why, size_t why_len)
{
    cl_platform_id *platforms = NULL;
    found_device *found = NULL;
    size_t n_found = 0, cap = 0;
    cl_uint n_platforms = 0;

    *out = NULL;
    cl_int rc = clGetPlatformIDs(0, NULL, &n_platforms);
    if (rc != CL_SUCCESS || n_platforms == 0) {
        char buf[32];
        if (rc != CL_SUCCESS)
            set_msg(why, why_len, "clGetPlatformIDs -> %s (%d)",
                    para__cl_err_name(rc, buf, sizeof buf), (int)rc);
        else
            set_msg(why, why_len, "no OpenCL platform installed");
        return 0;
    }
    platforms = calloc(n_platforms, sizeof *platforms);
    if (platforms == NULL)
        goto done;
    if (clGetPlatformIDs(n_platforms, platforms, NULL) != CL_SUCCESS)
        goto done;
    for (cl_uint p = 0; p < n_platforms; p++) {
        cl_uint n_devices = 0;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL,
                           &n_devices) != CL_SUCCESS ||
            n_devices == 0)
            continue; /* CL_DEVICE_NOT_FOUND: a platform with no device */
        cl_device_id *ids = calloc(n_devices, sizeof *ids);
        if (ids == NULL)
            goto done;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, n_devices, ids,
                           NULL) != CL_SUCCESS) {
            free(ids);
            continue;
        }
        for (cl_uint d = 0; d < n_devices; d++) {
            if (n_found == cap) {
                size_t new_cap = cap != 0 ? 2 * cap : 4;
                found_device *grown = realloc(found, new_cap * sizeof *found);
                if (grown == NULL) {
                    free(ids);
                    goto done;
                }
                found = grown;
                cap = new_cap;
            }
            found_device *f = &found[n_found++];
            f->platform = platforms[p];
            f->id = ids[d];
            fill_info(f, p, d);
        }
        free(ids);
    }
done:
    free(platforms);
    if (n_found == 0) {
        set_msg(why, why_len, "no platform reported a device");
        free(found);
        found = NULL;
    }
    *out = found;
    return n_found;
}

size_t para__cl_list(para__device_info *infos, size_t cap)
{
    found_device *found;
    char why[128];
    size_t n = enumerate(&found, why, sizeof why);
    for (size_t i = 0; i < n && i < cap; i++)
        infos[i] = found[i].info;
    free(found);
    return n;
}

/* "P:D" with decimal P and D and nothing else. */
static bool parse_index(const char *s, unsigned long *p, unsigned long *d)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return false;
    errno = 0;
    *p = strtoul(s, &end, 10);
    if (errno != 0 || *end != ':' || !isdigit((unsigned char)end[1]))
        return false;
    *d = strtoul(end + 1, &end, 10);
    return errno == 0 && *end == '\0';
}

/* Index into found[] of the device `selector` names, or -1. */
static long select_device(const found_device *found, size_t n,
                          const char *selector)
{
    if (strcmp(selector, "auto") == 0) {
        static const cl_device_type order[] = {CL_DEVICE_TYPE_GPU,
                                               CL_DEVICE_TYPE_ACCELERATOR};
        for (size_t t = 0; t < sizeof order / sizeof order[0]; t++)
            for (size_t i = 0; i < n; i++)
                if (found[i].type & order[t])
                    return (long)i;
        return n > 0 ? 0 : -1;
    }
    unsigned long p, d;
    if (parse_index(selector, &p, &d)) {
        for (size_t i = 0; i < n; i++)
            if (found[i].info.platform_index == p &&
                found[i].info.device_index == d)
                return (long)i;
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (contains_ci(found[i].info.name, selector) ||
            contains_ci(found[i].info.platform, selector))
            return (long)i;
    return -1;
}

/* "no OpenCL device matches "x"; seen: 0:0 "name" (platform), ..." */
static void describe_no_match(const found_device *found, size_t n,
                              const char *selector, const char *why, char *msg,
                              size_t msg_len)
{
    if (msg == NULL || msg_len == 0)
        return;
    if (n == 0) {
        set_msg(msg, msg_len, "no OpenCL device for \"%s\": %s", selector, why);
        return;
    }
    size_t used = (size_t)snprintf(
        msg, msg_len, "no OpenCL device matches \"%s\"; seen:", selector);
    for (size_t i = 0; i < n && used < msg_len; i++)
        used +=
            (size_t)snprintf(msg + used, msg_len - used, "%s %u:%u \"%s\" (%s)",
                             i > 0 ? "," : "", found[i].info.platform_index,
                             found[i].info.device_index, found[i].info.name,
                             found[i].info.platform);
}

/* ---- devices ----------------------------------------------------------- */

/* Asynchronous errors the driver reports for the context (any thread). */
static void CL_CALLBACK context_notify(const char *errinfo,
                                       const void *private_info, size_t cb,
                                       void *user_data)
{
    (void)private_info;
    (void)cb;
    (void)user_data;
    para__log(1, "opencl: context: %s", errinfo);
}

static void release_programs(para__device *dev)
{
    program_entry *pe = dev->programs;
    while (pe != NULL) {
        program_entry *next = pe->next;
        clReleaseProgram(pe->program);
        free(pe->source);
        free(pe->options);
        free(pe);
        pe = next;
    }
    dev->programs = NULL;
}

static void release_kernels(para__device *dev)
{
    kernel_entry *ke = dev->kernels;
    while (ke != NULL) {
        kernel_entry *next = ke->next;
        clReleaseKernel(ke->kernel);
        free(ke->entry);
        free(ke);
        ke = next;
    }
    dev->kernels = NULL;
}

/* ---- completion wake-ups (cl_waker) ---------------------------------- */

static cl_waker *waker_create(void)
{
    cl_waker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc == 0) {
        rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        if (rc == 0)
            rc = pthread_cond_init(&w->cond, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (rc != 0) {
        free(w);
        return NULL;
    }
    pthread_mutex_init(&w->lock, NULL);
    atomic_init(&w->refs, 1);
    return w;
}

static void waker_put(cl_waker *w)
{
    if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

static uint64_t waker_gen(cl_waker *w)
{
    pthread_mutex_lock(&w->lock);
    uint64_t g = w->gen;
    pthread_mutex_unlock(&w->lock);
    return g;
}

static void CL_CALLBACK waker_call(cl_event e, cl_int status, void *arg)
{
    (void)e;
    (void)status; /* the poll that follows reads it */
    cl_waker *w = arg;
    pthread_mutex_lock(&w->lock);
    w->gen++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    waker_put(w);
}

/* Sleep until a callback after generation @p seen, or until @p until_ns
 * (monotonic); true if a callback came. */
static bool waker_wait(cl_waker *w, uint64_t seen, uint64_t until_ns)
{
    struct timespec ts = {
        .tv_sec = (time_t)(until_ns / 1000000000u),
        .tv_nsec = (long)(until_ns % 1000000000u),
    };
    pthread_mutex_lock(&w->lock);
    while (w->gen == seen &&
           pthread_cond_timedwait(&w->cond, &w->lock, &ts) == 0)
        ;
    bool called = w->gen != seen;
    pthread_mutex_unlock(&w->lock);
    return called;
}

/* Let the device's waker be called when launch @p s is over. */
static void waker_arm(launch_state *s)
{
    cl_waker *w = s->dev->waker;
    s->woken = false;
    cl_event *last = NULL;
    for (int i = EV_COUNT - 1; i >= 0 && last == NULL; i--)
        if (s->ev[i] != NULL)
            last = &s->ev[i];
    if (w == NULL || last == NULL)
        return;
    atomic_fetch_add_explicit(&w->refs, 1, memory_order_relaxed);
    if (clSetEventCallback(*last, CL_COMPLETE, waker_call, w) == CL_SUCCESS)
        s->woken = true;
    else
        waker_put(w); /* polled, as without a waker */
}

/* Close time: the device's reference goes. The callbacks of commands that
 * clFinish() saw complete may still be on their way (the driver calls them
 * asynchronously); they are waited for a while, so that a closed device
 * leaves nothing behind, and would otherwise free the waker themselves. */
static void waker_close(cl_waker *w)
{
    if (w == NULL)
        return;
    for (int i = 0;
         i < 1000 && atomic_load_explicit(&w->refs, memory_order_acquire) > 1;
         i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    waker_put(w);
}

static void destroy_device(para__device *dev)
{
    while (dev->pool != NULL) {
        pbuf *b = dev->pool;
        dev->pool = b->next;
        mem_release(b->mem);
        free(b);
    }
    pthread_mutex_destroy(&dev->pool_lock);
    for (unsigned q = 0; q < PARA_CL_QUEUES; q++) {
        if (dev->queues[q] != NULL) {
            clFinish(dev->queues[q]);
            clReleaseCommandQueue(dev->queues[q]);
        }
    }
    if (dev->read_q != NULL)
        clReleaseCommandQueue(dev->read_q);
    waker_close(dev->waker);
    release_kernels(dev);
    release_programs(dev);
    if (dev->ctx != NULL)
        clReleaseContext(dev->ctx);
    free(dev);
}

int para__cl_open(const char *selector, para__device **out, char *msg,
                  size_t msg_len)
{
    found_device *found = NULL;
    para__device *dev = NULL;
    char why[128] = "";
    int err = 0;
    cl_int rc;

    if (out == NULL) {
        set_msg(msg, msg_len, "para__cl_open: out is NULL");
        return PARA_EINVAL;
    }
    *out = NULL;
    if (selector == NULL || selector[0] == '\0')
        selector = "auto";

    size_t n = enumerate(&found, why, sizeof why);
    long idx = select_device(found, n, selector);
    if (idx < 0) {
        describe_no_match(found, n, selector, why, msg, msg_len);
        err = PARA_ENODEV;
        goto fail;
    }
    dev = calloc(1, sizeof *dev);
    if (dev == NULL) {
        set_msg(msg, msg_len, "para__cl_open: out of memory");
        err = PARA_ENOMEM;
        goto fail;
    }
    const found_device *f = &found[idx];
    pthread_mutex_init(&dev->pool_lock, NULL);
    dev->waker = waker_create(); /* NULL: launches are polled */
    dev->info = f->info;
    dev->info.caps |= PARA__DEVCAP_RESIDENT;
    dev->platform = f->platform;
    dev->id = f->id;
    dev->n_queues = PARA_CL_QUEUES;
    dev->staging = PARA__CL_STAGING_WRITE;
    dev->trace = para__option_env_level("CL_TRACE", 0) != 0;

    /* What a cached binary depends on besides source and options. */
    char platform_version[128];
    platform_string(dev->platform, CL_PLATFORM_VERSION, platform_version,
                    sizeof platform_version);
    uint64_t seed = fnv1a_str(FNV_OFFSET, "para-cl-cache-1");
    seed = fnv1a_str(seed, dev->info.name);
    seed = fnv1a_str(seed, dev->info.vendor);
    seed = fnv1a_str(seed, dev->info.version); /* device + driver version */
    seed = fnv1a_str(seed, dev->info.platform);
    dev->key_seed = fnv1a_str(seed, platform_version);

    cl_context_properties props[] = {CL_CONTEXT_PLATFORM,
                                     (cl_context_properties)dev->platform, 0};
    dev->ctx = clCreateContext(props, 1, &dev->id, context_notify, NULL, &rc);
    PARA_CL_CHECK_RC("clCreateContext", rc);
    for (unsigned q = 0; q < PARA_CL_QUEUES; q++) {
        dev->queues[q] = clCreateCommandQueue(dev->ctx, dev->id, 0, &rc);
        PARA_CL_CHECK_RC("clCreateCommandQueue", rc);
    }
    dev->read_q = clCreateCommandQueue(dev->ctx, dev->id, 0, &rc);
    PARA_CL_CHECK_RC("clCreateCommandQueue", rc);
    para__log(2, "opencl: opened %u:%u \"%s\" (%s, %s)",
              dev->info.platform_index, dev->info.device_index, dev->info.name,
              dev->info.platform, dev->info.version);
    free(found);
    *out = dev;
    return 0;

fail:
    if (dev != NULL)
        destroy_device(dev);
    free(found);
    /* The contract: ENODEV, or EDEVICE when the driver fails us. */
    if (err != PARA_ENODEV && err != PARA_ENOMEM)
        err = PARA_EDEVICE;
    return err;
}

void para__cl_close(para__device *dev)
{
    if (dev == NULL)
        return;
    if (dev->live_kernels != 0 || dev->live_slots != 0)
        para__log(1,
                  "opencl: closing \"%s\" with %u kernels and %u launch "
                  "slots still alive (release them first)",
                  dev->info.name, dev->live_kernels, dev->live_slots);
    destroy_device(dev);
}

int para__cl_locality(const para__device *dev, hwloc_topology_t topology,
                      hwloc_cpuset_t set)
{
    /* The PCI device's local CPUs (AMD and NVIDIA extensions, Linux
     * sysfs); the whole machine for devices without a PCI address, such as
     * a CPU device. */
    return hwloc_opencl_get_device_cpuset(topology, dev->id, set);
}

const para__device_info *para__cl_info(const para__device *dev)
{
    return dev != NULL ? &dev->info : NULL;
}

int para__cl_set_profiling(para__device *dev, bool on)
{
    if (dev->live_slots != 0)
        return PARA_EBUSY;
    cl_command_queue fresh[PARA_CL_QUEUES] = {NULL};
    cl_int rc = CL_SUCCESS;
    for (unsigned q = 0; q < PARA_CL_QUEUES && rc == CL_SUCCESS; q++)
        fresh[q] = clCreateCommandQueue(
            dev->ctx, dev->id, on ? CL_QUEUE_PROFILING_ENABLE : 0, &rc);
    if (rc != CL_SUCCESS) {
        for (unsigned q = 0; q < PARA_CL_QUEUES; q++)
            if (fresh[q] != NULL)
                clReleaseCommandQueue(fresh[q]);
        return PARA_EDEVICE;
    }
    for (unsigned q = 0; q < PARA_CL_QUEUES; q++) {
        clFinish(dev->queues[q]);
        clReleaseCommandQueue(dev->queues[q]);
        dev->queues[q] = fresh[q];
    }
    return 0;
}

void para__cl_get_stats(const para__device *dev, para__cl_stats *out)
{
    *out = dev->stats;
    out->wakeups = dev->waker != NULL ? waker_gen(dev->waker) : 0;
}

int para__cl_tune(para__device *dev, para__cl_staging staging, unsigned queues)
{
    if (dev == NULL || queues < 1 || queues > PARA_CL_QUEUES ||
        (staging != PARA__CL_STAGING_WRITE && staging != PARA__CL_STAGING_MAP))
        return PARA_EINVAL;
    if (dev->live_slots != 0)
        return PARA_EBUSY;
    dev->staging = staging;
    dev->n_queues = queues;
    return 0;
}

/* ---- programs: build and caches ---------------------------------------- */

/* Log the whole build log, line by line, and put its interesting part (from
 * the first line that mentions an error) into msg. Returns the PARA_E*. */
static int report_build_failure(para__device *dev, cl_program prog,
                                cl_int status, const char *what, char *msg,
                                size_t msg_len)
{
    char buf[32];
    const char *name = para__cl_err_name(status, buf, sizeof buf);
    size_t len = 0;
    char *log = NULL;
    if (clGetProgramBuildInfo(prog, dev->id, CL_PROGRAM_BUILD_LOG, 0, NULL,
                              &len) == CL_SUCCESS &&
        len > 0 && (log = malloc(len + 1)) != NULL) {
        if (clGetProgramBuildInfo(prog, dev->id, CL_PROGRAM_BUILD_LOG, len, log,
                                  NULL) != CL_SUCCESS)
            len = 0;
        log[len] = '\0';
    }
    para__log(0, "opencl: %s -> %s (%d) on \"%s\"; build log:", what, name,
              (int)status, dev->info.name);
    const char *text = log != NULL ? log : "";
    for (const char *line = text; *line != '\0';) {
        size_t n = strcspn(line, "\n");
        para__log(0, "opencl:   %.*s", (int)n, line);
        line += n;
        if (*line == '\n')
            line++;
    }

    if (msg != NULL && msg_len > 0) {
        /* Skip to the first diagnostic, past warnings and notes. */
        const char *start = text;
        for (const char *line = text; *line != '\0';) {
            size_t n = strcspn(line, "\n");
            bool has_error = false;
            for (size_t i = 0; i + 5 <= n && !has_error; i++)
                has_error = strncmp(line + i, "error", 5) == 0;
            if (has_error) {
                start = line;
                break;
            }
            line += n;
            if (*line == '\n')
                line++;
        }
        size_t used = (size_t)snprintf(msg, msg_len, "%s -> %s (%d): ", what,
                                       name, (int)status);
        /* One line: newlines become " | ", runs of blanks one space. */
        for (const char *c = start; *c != '\0' && used + 1 < msg_len; c++) {
            if (*c == '\n') {
                if (c[1] == '\0')
                    break;
                if (used + 4 >= msg_len)
                    break;
                memcpy(msg + used, " | ", 3);
                used += 3;
            } else if (isspace((unsigned char)*c) && used > 0 &&
                       msg[used - 1] == ' ') {
                continue;
            } else {
                msg[used++] = isspace((unsigned char)*c) ? ' ' : *c;
            }
        }
        if (used < msg_len)
            msg[used] = '\0';
    }
    free(log);
    int err = para__cl_to_err(status);
    return err == PARA_ENOMEM ? err : PARA_EKERNEL_BUILD;
}

static int build_from_source(para__device *dev, const char *source,
                             const char *options, cl_program *out, char *msg,
                             size_t msg_len)
{
    cl_program prog = NULL;
    int err = 0;
    cl_int rc;

    size_t len = strlen(source);
    prog = clCreateProgramWithSource(dev->ctx, 1, &source, &len, &rc);
    PARA_CL_CHECK_RC("clCreateProgramWithSource", rc);
    rc = clBuildProgram(prog, 1, &dev->id, options, NULL, NULL);
    if (rc != CL_SUCCESS) {
        err =
            report_build_failure(dev, prog, rc, "clBuildProgram", msg, msg_len);
        goto fail;
    }
    dev->stats.builds_from_source++;
    *out = prog;
    return 0;

fail:
    if (prog != NULL)
        clReleaseProgram(prog);
    return err;
}

static bool mkdir_p(char *path)
{
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0700);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return false;
    }
    return mkdir(path, 0700) == 0 || errno == EEXIST;
}

/* $PARA_CACHE_DIR, else $XDG_CACHE_HOME/para, else ~/.cache/para; created
 * if missing. False when there is no usable directory. */
static bool cache_file(uint64_t key, char *path, size_t len)
{
    char dir[PATH_MAX];
    const char *env = getenv("PARA_CACHE_DIR");
    int n;
    if (env != NULL && env[0] != '\0') {
        n = snprintf(dir, sizeof dir, "%s", env);
    } else if ((env = getenv("XDG_CACHE_HOME")) != NULL && env[0] == '/') {
        n = snprintf(dir, sizeof dir, "%s/para", env);
    } else if ((env = getenv("HOME")) != NULL && env[0] != '\0') {
        n = snprintf(dir, sizeof dir, "%s/.cache/para", env);
    } else {
        return false;
    }
    if (n < 0 || (size_t)n >= sizeof dir || !mkdir_p(dir))
        return false;
    n = snprintf(path, len, "%s/%016llx.clbin", dir, (unsigned long long)key);
    return n > 0 && (size_t)n < len;
}

enum { HEADER_BYTES = 32 };
static const char cache_magic[8] = {'P', 'A', 'R', 'A', 'C', 'L', 'B', '1'};

/* The program from a cache file, built; NULL if there is no usable file. */
static cl_program load_cached(para__device *dev, uint64_t key, const char *path,
                              const char *options)
{
    unsigned char header[HEADER_BYTES];
    unsigned char *binary = NULL;
    cl_program prog = NULL;
    const char *why = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL; /* not cached yet */

    uint64_t file_key, size, sum;
    if (fread(header, 1, sizeof header, f) != sizeof header) {
        why = "truncated header";
        goto reject;
    }
    memcpy(&file_key, header + 8, 8);
    memcpy(&size, header + 16, 8);
    memcpy(&sum, header + 24, 8);
    if (memcmp(header, cache_magic, 8) != 0 || file_key != key || size == 0 ||
        size > PARA_CL_MAX_BINARY) {
        why = "bad header";
        goto reject;
    }
    binary = malloc((size_t)size + 1);
    if (binary == NULL) {
        why = "out of memory";
        goto reject;
    }
    /* Exactly `size` bytes, then end of file. */
    if (fread(binary, 1, (size_t)size + 1, f) != size) {
        why = "wrong length";
        goto reject;
    }
    if (fnv1a(FNV_OFFSET, binary, (size_t)size) != sum) {
        why = "checksum mismatch";
        goto reject;
    }
    size_t bin_size = (size_t)size;
    const unsigned char *bins[1] = {binary};
    cl_int bin_status = CL_SUCCESS, rc;
    prog = clCreateProgramWithBinary(dev->ctx, 1, &dev->id, &bin_size, bins,
                                     &bin_status, &rc);
    if (rc != CL_SUCCESS || bin_status != CL_SUCCESS) {
        why = "driver refused the binary";
        goto reject;
    }
    if (clBuildProgram(prog, 1, &dev->id, options, NULL, NULL) != CL_SUCCESS) {
        why = "driver could not build the binary";
        goto reject;
    }
    fclose(f);
    free(binary);
    dev->stats.disk_hits++;
    para__log(3, "opencl: program from cache file %s", path);
    return prog;

reject:
    if (prog != NULL)
        clReleaseProgram(prog);
    free(binary);
    fclose(f);
    dev->stats.disk_rejects++;
    para__log(3, "opencl: ignoring cache file %s: %s", path, why);
    return NULL;
}

/* Write the program's binary to the cache, atomically. Best effort: a
 * failure is logged at debug level and otherwise ignored. */
static void store_cached(para__device *dev, uint64_t key, const char *path,
                         cl_program prog)
{
    unsigned char *binary = NULL;
    char tmp[PATH_MAX + 48];
    int fd = -1;
    bool created = false;
    const char *why = NULL;

    size_t size = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof size, &size,
                         NULL) != CL_SUCCESS ||
        size == 0 || size > PARA_CL_MAX_BINARY) {
        why = "no binary";
        goto fail;
    }
    binary = malloc(size);
    if (binary == NULL) {
        why = "out of memory";
        goto fail;
    }
    unsigned char *bins[1] = {binary};
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) !=
        CL_SUCCESS) {
        why = "clGetProgramInfo(CL_PROGRAM_BINARIES) failed";
        goto fail;
    }
    unsigned char header[HEADER_BYTES];
    uint64_t size64 = size, sum = fnv1a(FNV_OFFSET, binary, size);
    memcpy(header, cache_magic, 8);
    memcpy(header + 8, &key, 8);
    memcpy(header + 16, &size64, 8);
    memcpy(header + 24, &sum, 8);

    /* Same directory as the final name, so that rename() is atomic. */
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        why = strerror(errno);
        goto fail;
    }
    created = true;
    const unsigned char *parts[2] = {header, binary};
    size_t lens[2] = {sizeof header, size};
    for (int i = 0; i < 2; i++) {
        for (size_t done = 0; done < lens[i];) {
            ssize_t w = write(fd, parts[i] + done, lens[i] - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                why = "write failed";
                goto fail;
            }
            done += (size_t)w;
        }
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0) {
        why = "close failed";
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        why = strerror(errno);
        goto fail;
    }
    free(binary);
    dev->stats.disk_writes++;
    para__log(3, "opencl: wrote cache file %s (%zu bytes)", path, size);
    return;

fail:
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(tmp);
    free(binary);
    para__log(3, "opencl: not caching %s: %s", path, why);
}

/* The built program for (source, options) on dev, from one of the caches
 * or freshly built. The entry belongs to the device's cache. */
static int get_program(para__device *dev, const char *source,
                       const char *options, program_entry **out, char *msg,
                       size_t msg_len)
{
    for (program_entry *pe = dev->programs; pe != NULL; pe = pe->next) {
        if (strcmp(pe->source, source) == 0 &&
            strcmp(pe->options, options) == 0) {
            dev->stats.memory_hits++;
            *out = pe;
            return 0;
        }
    }

    int err = 0;
    program_entry *pe = calloc(1, sizeof *pe);
    if (pe == NULL || (pe->source = strdup(source)) == NULL ||
        (pe->options = strdup(options)) == NULL) {
        set_msg(msg, msg_len, "para__cl_kernel_create: out of memory");
        err = PARA_ENOMEM;
        goto fail;
    }
    uint64_t key = fnv1a_str(fnv1a_str(dev->key_seed, source), options);
    char path[PATH_MAX + 32];
    bool cacheable = cache_file(key, path, sizeof path);
    if (cacheable)
        pe->program = load_cached(dev, key, path, options);
    if (pe->program == NULL) {
        err =
            build_from_source(dev, source, options, &pe->program, msg, msg_len);
        if (err != 0)
            goto fail;
        if (cacheable)
            store_cached(dev, key, path, pe->program);
    }
    pe->next = dev->programs;
    dev->programs = pe;
    *out = pe;
    return 0;

fail:
    if (pe != NULL) {
        free(pe->source);
        free(pe->options);
        free(pe);
    }
    return err;
}

/* ---- kernels ----------------------------------------------------------- */

/* ---- parameter types ---------------------------------------------------- */

/* Bytes of an OpenCL C built-in type named @p t ("uint", "float4",
 * "double"; a trailing '*' is ignored), 0 when not a built-in (a struct,
 * a typedef the compiler reports by its own name): such a parameter is not
 * checked. A 3-component vector takes the room of 4. */
static size_t cl_type_size(const char *t)
{
    static const struct {
        const char *name;
        size_t size;
    } base[] = {
        {"char", 1},         {"uchar", 1},         {"bool", 1},
        {"short", 2},        {"ushort", 2},        {"half", 2},
        {"int", 4},          {"uint", 4},          {"float", 4},
        {"long", 8},         {"ulong", 8},         {"double", 8},
        {"size_t", 0},       {"unsigned char", 1}, {"unsigned short", 2},
        {"unsigned int", 4}, {"unsigned long", 8}};
    size_t len = strlen(t);
    while (len > 0 && (t[len - 1] == '*' || t[len - 1] == ' '))
        len--;
    size_t digits = 0;
    while (digits < len && isdigit((unsigned char)t[len - 1 - digits]))
        digits++;
    size_t stem = len - digits;
    unsigned long lanes = 1;
    if (digits > 0) {
        lanes = strtoul(t + stem, NULL, 10);
        if (lanes == 3)
            lanes = 4;
        if (lanes != 2 && lanes != 4 && lanes != 8 && lanes != 16)
            return 0;
    }
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) {
        if (strlen(base[i].name) == stem && strncmp(base[i].name, t, stem) == 0)
            return base[i].size * lanes;
    }
    return 0;
}

/* Check the kernel's parameters against the node, with the argument
 * information the program was built with (-cl-kernel-arg-info): in and out
 * must be __global pointers to items of the node's sizes, and every extra
 * scalar must have the size of the value given for it. PARA_ESIZE names
 * the parameter and both types. Without argument information (a driver
 * that keeps none for a cached binary) nothing is checked here and
 * clSetKernelArg's size check is what remains. */
static int check_param_types(para__kernel *k, cl_uint n_params, size_t in_size,
                             size_t out_size, const para__kernel_arg *args,
                             char *msg, size_t msg_len)
{
    for (cl_uint i = 0; i < n_params; i++) {
        char type[128] = "", name[64] = "";
        cl_kernel_arg_address_qualifier aq = 0;
        cl_int rc = clGetKernelArgInfo(k->kernel, i, CL_KERNEL_ARG_TYPE_NAME,
                                       sizeof type, type, NULL);
        if (rc == CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
            return 0;
        if (rc != CL_SUCCESS ||
            clGetKernelArgInfo(k->kernel, i, CL_KERNEL_ARG_ADDRESS_QUALIFIER,
                               sizeof aq, &aq, NULL) != CL_SUCCESS)
            return 0; /* no information: not an error of the node */
        if (clGetKernelArgInfo(k->kernel, i, CL_KERNEL_ARG_NAME, sizeof name,
                               name, NULL) != CL_SUCCESS)
            snprintf(name, sizeof name, "#%u", (unsigned)i);
        type[sizeof type - 1] = '\0';
        name[sizeof name - 1] = '\0';
        bool pointer = strchr(type, '*') != NULL;
        size_t bytes = cl_type_size(type);
        if (i < 2) {
            const char *role = i == 0 ? "in" : "out";
            size_t want = i == 0 ? in_size : out_size;
            if (!pointer ||
                (aq != CL_KERNEL_ARG_ADDRESS_GLOBAL &&
                 !(i == 0 && aq == CL_KERNEL_ARG_ADDRESS_CONSTANT))) {
                set_msg(msg, msg_len,
                        "kernel \"%s\": parameter %u '%s' (%s items) is "
                        "'%s', not a __global pointer",
                        k->entry, (unsigned)i, name, role, type);
                return PARA_EINVAL;
            }
            if (bytes != 0 && bytes != want) {
                set_msg(msg, msg_len,
                        "kernel \"%s\": parameter %u '%s' is '%s' (%zu-byte "
                        "items) but the node's %s items are %zu bytes",
                        k->entry, (unsigned)i, name, type, bytes, role, want);
                return PARA_ESIZE;
            }
        } else if (i >= 3 && args[i - 3].kind == PARA_KARG_INDEX) {
            if (!pointer || (aq != CL_KERNEL_ARG_ADDRESS_GLOBAL &&
                             aq != CL_KERNEL_ARG_ADDRESS_CONSTANT)) {
                set_msg(msg, msg_len,
                        "kernel \"%s\": parameter %u '%s' is '%s'; extra "
                        "argument %u is the item index (needs a __global "
                        "const ulong pointer)",
                        k->entry, (unsigned)i, name, type, (unsigned)(i - 3));
                return PARA_EINVAL;
            }
            if (bytes != 0 && bytes != 8) {
                set_msg(msg, msg_len,
                        "kernel \"%s\": parameter %u '%s' is '%s' (%zu-byte "
                        "elements) but extra argument %u, the item index, "
                        "has 8-byte elements (ulong)",
                        k->entry, (unsigned)i, name, type, bytes,
                        (unsigned)(i - 3));
                return PARA_ESIZE;
            }
        } else if (i >= 3 && args[i - 3].kind != PARA_KARG_SCALAR) {
            const para__kernel_arg *a = &args[i - 3];
            bool local = a->kind == PARA_KARG_LOCAL;
            bool fits =
                pointer && (local ? aq == CL_KERNEL_ARG_ADDRESS_LOCAL
                                  : aq == CL_KERNEL_ARG_ADDRESS_GLOBAL ||
                                        aq == CL_KERNEL_ARG_ADDRESS_CONSTANT);
            if (!fits) {
                set_msg(msg, msg_len,
                        "kernel \"%s\": parameter %u '%s' is '%s'; extra "
                        "argument %u is %s",
                        k->entry, (unsigned)i, name, type, (unsigned)(i - 3),
                        local ? "local memory (needs a __local pointer)"
                              : "a buffer (needs a __global or __constant "
                                "pointer)");
                return PARA_EINVAL;
            }
            if (bytes != 0 && a->size % bytes != 0) {
                set_msg(msg, msg_len,
                        "kernel \"%s\": parameter %u '%s' is '%s' (%zu-byte "
                        "elements) but extra argument %u has %zu bytes, not a "
                        "whole number of them",
                        k->entry, (unsigned)i, name, type, bytes,
                        (unsigned)(i - 3), a->size);
                return PARA_ESIZE;
            }
        } else if (i >= 3) {
            size_t given = args[i - 3].size;
            if (pointer) {
                set_msg(msg, msg_len,
                        "kernel \"%s\": parameter %u '%s' is '%s', a pointer; "
                        "extra arguments are scalars (%zu bytes given)",
                        k->entry, (unsigned)i, name, type, given);
                return PARA_EINVAL;
            }
            if (bytes != 0 && bytes != given) {
                set_msg(msg, msg_len,
                        "kernel \"%s\": parameter %u '%s' is '%s' (%zu "
                        "bytes) but extra argument %u has %zu bytes",
                        k->entry, (unsigned)i, name, type, bytes,
                        (unsigned)(i - 3), given);
                return PARA_ESIZE;
            }
        }
    }
    return 0;
}

/* Work-group size: PARA_CL_LOCAL_SIZE clamped to the kernel's limit and
 * rounded down to its preferred multiple. */
static int choose_local_size(para__kernel *k, char *msg, size_t msg_len)
{
    para__device *dev = k->dev;
    size_t max_wg = 0, multiple = 1, item_sizes[3] = {0, 0, 0};
    int err = 0;

    PARA_CL_CHECK(clGetKernelWorkGroupInfo(k->kernel, dev->id,
                                           CL_KERNEL_WORK_GROUP_SIZE,
                                           sizeof max_wg, &max_wg, NULL));
    PARA_CL_CHECK(clGetKernelWorkGroupInfo(
        k->kernel, dev->id, CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE,
        sizeof multiple, &multiple, NULL));
    if (clGetDeviceInfo(dev->id, CL_DEVICE_MAX_WORK_ITEM_SIZES,
                        sizeof item_sizes, item_sizes, NULL) == CL_SUCCESS &&
        item_sizes[0] != 0)
        max_wg = PARA_MIN(max_wg, item_sizes[0]);
    size_t local = PARA_MIN((size_t)PARA_CL_LOCAL_SIZE, PARA_MAX(max_wg, 1));
    if (multiple > 1 && local >= multiple)
        local -= local % multiple;
    k->local = local;
    return 0;

fail:
    return err;
}

static void release_arg_buffers(para__kernel *k)
{
    for (size_t i = 0; i < k->n_bufs; i++)
        mem_release(k->bufs[i]);
    free(k->bufs);
    k->bufs = NULL;
    k->n_bufs = 0;
}

/* Lend @p k the device's kernel object for (program, entry): a free one
 * created earlier, else a new one (kept until the device closes). A runtime
 * runs the same graph again and again; creating and releasing cl_kernels
 * per run costs driver work each time, and PoCL 3.1 keeps a cache of
 * compiled work-group functions whose release per kernel has raced between
 * its pthread device's threads. PARA_EKERNEL_BUILD when the program has no
 * such entry point. */
static int borrow_kernel(para__device *dev, const program_entry *pe,
                         const char *entry, kernel_entry **out, char *msg,
                         size_t msg_len)
{
    for (kernel_entry *ke = dev->kernels; ke != NULL; ke = ke->next) {
        if (!ke->lent && ke->program == pe && strcmp(ke->entry, entry) == 0) {
            ke->lent = true;
            *out = ke;
            dev->stats.kernel_hits++;
            return 0;
        }
    }
    int err = 0;
    cl_int rc;
    kernel_entry *ke = calloc(1, sizeof *ke);
    if (ke == NULL || (ke->entry = strdup(entry)) == NULL) {
        set_msg(msg, msg_len, "para__cl_kernel_create: out of memory");
        err = PARA_ENOMEM;
        goto fail;
    }
    ke->kernel = clCreateKernel(pe->program, entry, &rc);
    if (rc == CL_INVALID_KERNEL_NAME) {
        set_msg(msg, msg_len,
                "no kernel \"%s\" in the program (clCreateKernel -> "
                "CL_INVALID_KERNEL_NAME (%d))",
                entry, (int)rc);
        err = PARA_EKERNEL_BUILD;
        goto fail;
    }
    PARA_CL_CHECK_RC("clCreateKernel", rc);
    ke->program = pe;
    ke->lent = true;
    ke->next = dev->kernels;
    dev->kernels = ke;
    dev->stats.kernels_created++;
    para__log(3, "opencl: created kernel \"%s\" on \"%s\"", entry,
              dev->info.name);
    *out = ke;
    return 0;

fail:
    if (ke != NULL) {
        if (ke->kernel != NULL)
            clReleaseKernel(ke->kernel);
        free(ke->entry);
        free(ke);
    }
    return err;
}

/* The item index (PARA_KARG_INDEX): a launch gathers batches whose items
 * are numbered consecutively within each batch, so the host sends one run
 * per batch, (first number, position of its first item), 16 bytes, and
 * this kernel writes each item's number into a device buffer that the
 * node's kernel reads: 16 bytes per batch cross the bus instead of 8 per
 * item, and every work-item finds its run by binary search over a few
 * cached words. */
static const char expand_src[] =
    "__kernel void para_expand_index(__global const ulong *runs,\n"
    "                                uint n_runs, uint n,\n"
    "                                __global ulong *idx)\n"
    "{\n"
    "    uint i = get_global_id(0);\n"
    "    if (i >= n)\n"
    "        return;\n"
    "    uint lo = 0, hi = n_runs - 1;\n"
    "    while (lo < hi) {\n"
    "        uint mid = (lo + hi + 1) / 2;\n"
    "        if (runs[2 * mid + 1] <= i)\n"
    "            lo = mid;\n"
    "        else\n"
    "            hi = mid - 1;\n"
    "    }\n"
    "    idx[i] = runs[2 * lo] + (i - runs[2 * lo + 1]);\n"
    "}\n";

/* Give @p k the index-writing kernel (built once per device). */
static int borrow_expand(para__device *dev, para__kernel *k, char *msg,
                         size_t msg_len)
{
    program_entry *pe;
    int err = get_program(dev, expand_src, "", &pe, msg, msg_len);
    if (err == 0)
        err = borrow_kernel(dev, pe, "para_expand_index", &k->expand, msg,
                            msg_len);
    return err;
}

int para__cl_kernel_create(para__device *dev, const char *source,
                           const char *options, const char *entry,
                           size_t in_size, size_t out_size,
                           const para__kernel_arg *args, size_t n_args,
                           para__kernel **out, char *msg, size_t msg_len)
{
    if (out != NULL)
        *out = NULL;
    if (dev == NULL || source == NULL || entry == NULL || out == NULL ||
        in_size == 0 || out_size == 0 || (n_args > 0 && args == NULL)) {
        set_msg(msg, msg_len, "para__cl_kernel_create: invalid argument");
        return PARA_EINVAL;
    }
    for (size_t i = 0; i < n_args; i++) {
        bool index = args[i].kind == PARA_KARG_INDEX;
        if (args[i].kind > PARA_KARG_INDEX ||
            (index ? args[i].value != NULL || args[i].size != 0
                   : (args[i].value == NULL) !=
                             (args[i].kind == PARA_KARG_LOCAL) ||
                         args[i].size == 0)) {
            set_msg(msg, msg_len,
                    "para__cl_kernel_create: extra argument %zu is empty", i);
            return PARA_EINVAL;
        }
    }
    if (options == NULL)
        options = "";
    /* Argument information (types, qualifiers, names) for the checks of
     * check_param_types(); it is part of the options, so of the cache key. */
    static const char arg_info[] = " -cl-kernel-arg-info";
    size_t opt_len = strlen(options);
    char *opts = malloc(opt_len + sizeof arg_info);
    if (opts == NULL) {
        set_msg(msg, msg_len, "para__cl_kernel_create: out of memory");
        return PARA_ENOMEM;
    }
    memcpy(opts, options, opt_len);
    memcpy(opts + opt_len, arg_info, sizeof arg_info);

    program_entry *pe;
    int err = get_program(dev, source, opts, &pe, msg, msg_len);
    free(opts);
    if (err != 0)
        return err; /* the program stays cached on success only */

    cl_int rc;
    para__kernel *k = calloc(1, sizeof *k);
    if (k == NULL) {
        set_msg(msg, msg_len, "para__cl_kernel_create: out of memory");
        err = PARA_ENOMEM;
        goto fail;
    }
    k->dev = dev;
    k->in_size = in_size;
    k->out_size = out_size;
    snprintf(k->entry, sizeof k->entry, "%s", entry);
    if (n_args > 0) {
        k->bufs = calloc(n_args, sizeof *k->bufs);
        if (k->bufs == NULL) {
            set_msg(msg, msg_len, "para__cl_kernel_create: out of memory");
            err = PARA_ENOMEM;
            goto fail;
        }
        k->n_bufs = n_args;
        k->index_at = calloc(n_args, sizeof *k->index_at);
        if (k->index_at == NULL) {
            set_msg(msg, msg_len, "para__cl_kernel_create: out of memory");
            err = PARA_ENOMEM;
            goto fail;
        }
    }

    err = borrow_kernel(dev, pe, entry, &k->cached, msg, msg_len);
    if (err != 0)
        goto fail;
    k->kernel = k->cached->kernel;

    /* The signature: (global in, global out, uint n, extra scalars...).
     * Setting each argument once checks its kind and size now rather than
     * at the first launch; launches overwrite 0..2, and the extra values
     * stay as set here. */
    cl_uint n_params = 0;
    PARA_CL_CHECK(clGetKernelInfo(k->kernel, CL_KERNEL_NUM_ARGS,
                                  sizeof n_params, &n_params, NULL));
    if (n_params < 3 || n_params != 3 + n_args) {
        set_msg(msg, msg_len,
                "kernel \"%s\" takes %u arguments; expected (in, out, n) "
                "and %zu extra",
                entry, (unsigned)n_params, n_args);
        err = PARA_EINVAL;
        goto fail;
    }
    err = check_param_types(k, n_params, in_size, out_size, args, msg, msg_len);
    if (err != 0)
        goto fail;
    static const char *const param_names[3] = {
        "in (a __global pointer)", "out (a __global pointer)", "n (a uint)"};
    cl_mem no_buffer = NULL;
    cl_uint zero = 0;
    for (cl_uint i = 0; i < n_params; i++) {
        if (i < 2)
            rc = clSetKernelArg(k->kernel, i, sizeof no_buffer, &no_buffer);
        else if (i == 2)
            rc = clSetKernelArg(k->kernel, i, sizeof zero, &zero);
        else if (args[i - 3].kind == PARA_KARG_LOCAL)
            rc = clSetKernelArg(k->kernel, i, args[i - 3].size, NULL);
        else if (args[i - 3].kind == PARA_KARG_INDEX) {
            /* Bound to the slot's index buffer at each launch. */
            k->index_at[k->n_index++] = i;
            rc = clSetKernelArg(k->kernel, i, sizeof no_buffer, &no_buffer);
        } else if (args[i - 3].kind == PARA_KARG_BUFFER) {
            /* Uploaded once here, bound to every launch of this kernel. */
            cl_mem b = clCreateBuffer(
                dev->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                args[i - 3].size, (void *)(uintptr_t)args[i - 3].value, &rc);
            if (rc != CL_SUCCESS) {
                char buf[32];
                set_msg(msg, msg_len,
                        "kernel \"%s\": uploading extra argument %u (%zu "
                        "bytes): clCreateBuffer -> %s (%d)",
                        entry, i - 3, args[i - 3].size,
                        para__cl_err_name(rc, buf, sizeof buf), (int)rc);
                err = para__cl_to_err(rc) == PARA_ENOMEM ? PARA_ENOMEM
                                                         : PARA_EDEVICE;
                goto fail;
            }
            mem_born();
            k->bufs[i - 3] = b;
            rc = clSetKernelArg(k->kernel, i, sizeof b, &b);
        } else
            rc = clSetKernelArg(k->kernel, i, args[i - 3].size,
                                args[i - 3].value);
        if (rc != CL_SUCCESS) {
            char buf[32];
            char extra[32];
            snprintf(extra, sizeof extra, "extra argument %u", i - 3);
            set_msg(msg, msg_len,
                    "kernel \"%s\": argument %u, %s, does not fit "
                    "(clSetKernelArg -> %s (%d))",
                    entry, (unsigned)i, i < 3 ? param_names[i] : extra,
                    para__cl_err_name(rc, buf, sizeof buf), (int)rc);
            err = PARA_EINVAL;
            goto fail;
        }
    }
    err = choose_local_size(k, msg, msg_len);
    if (err != 0)
        goto fail;
    if (k->n_index > 0) {
        err = borrow_expand(dev, k, msg, msg_len);
        if (err != 0)
            goto fail;
    }

    dev->live_kernels++;
    para__log(3, "opencl: kernel \"%s\" on \"%s\": work-group %zu", entry,
              dev->info.name, k->local);
    *out = k;
    return 0;

fail:
    if (k != NULL) {
        if (k->cached != NULL)
            k->cached->lent = false; /* a valid kernel: keep it */
        if (k->expand != NULL)
            k->expand->lent = false;
        release_arg_buffers(k);
        free(k->index_at);
        free(k);
    }
    return err;
}

void para__cl_kernel_release(para__kernel *k)
{
    if (k == NULL)
        return;
    k->cached->lent = false; /* kept until the device closes */
    if (k->expand != NULL)
        k->expand->lent = false;
    release_arg_buffers(k);
    free(k->index_at);
    k->dev->live_kernels--;
    free(k);
}

size_t para__cl_kernel_local_size(const para__kernel *k)
{
    return k->local;
}

/* ---- device-resident buffers ------------------------------------------- */

static int launch_error(int err);

/* A buffer of at least @p need bytes for a kept output: a free one of the
 * pool that fits (at most 4x too large), else a new one of the next power
 * of two. NULL with *err and msg set on failure. */
static pbuf *pool_get(para__device *dev, size_t need, bool *hit, int *err,
                      char *msg, size_t msg_len)
{
    pthread_mutex_lock(&dev->pool_lock);
    pbuf **best = NULL;
    for (pbuf **pp = &dev->pool; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->cap >= need && (need == 0 || (*pp)->cap / 4 <= need) &&
            (best == NULL || (*pp)->cap < (*best)->cap))
            best = pp;
    pbuf *b = NULL;
    if (best != NULL) {
        b = *best;
        *best = b->next;
        dev->pool_n--;
        dev->stats.pool_hits++;
    } else {
        dev->stats.pool_misses++;
    }
    pthread_mutex_unlock(&dev->pool_lock);
    *hit = b != NULL;
    if (b == NULL) {
        b = calloc(1, sizeof *b);
        if (b == NULL) {
            set_msg(msg, msg_len, "out of memory for a device buffer");
            *err = PARA_ENOMEM;
            return NULL;
        }
        size_t want = buffer_size(dev, need, 64);
        cl_int rc;
        b->mem = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE, want, NULL, &rc);
        if (rc != CL_SUCCESS) {
            *err = para__cl_report(rc, "clCreateBuffer", __func__, __FILE__,
                                   __LINE__, msg, msg_len);
            free(b);
            return NULL;
        }
        mem_born();
        b->dev = dev;
        b->cap = want;
        trace(dev, "pool: clCreateBuffer %zu bytes", want);
    }
    b->next = NULL;
    b->refs = 1;
    return b;
}

/* Drop @p n references to @p b; the last returns it to the pool. */
static void pbuf_unref(pbuf *b, unsigned n)
{
    para__device *dev = b->dev;
    cl_event ev = NULL;
    pthread_mutex_lock(&dev->pool_lock);
    b->refs -= n;
    bool last = b->refs == 0;
    bool keep = last && dev->pool_n < PARA_CL_POOL_KEEP;
    if (last) {
        /* Taken before the buffer is visible in the pool: the next user
         * sets its own event. Nobody waits on a free buffer. */
        ev = b->ev;
        b->ev = NULL;
    }
    if (keep) {
        b->next = dev->pool;
        dev->pool = b;
        dev->pool_n++;
    }
    pthread_mutex_unlock(&dev->pool_lock);
    if (!last)
        return;
    ev_release(&ev);
    if (!keep) {
        mem_release(b->mem);
        free(b);
    }
}

void para__cl_buf_retain(para__device *dev, void *buf, unsigned n)
{
    (void)dev;
    pbuf *b = buf;
    pthread_mutex_lock(&b->dev->pool_lock);
    b->refs += n;
    pthread_mutex_unlock(&b->dev->pool_lock);
}

void para__cl_buf_release(para__device *dev, void *buf)
{
    (void)dev;
    if (buf != NULL)
        pbuf_unref(buf, 1);
}

int para__cl_buf_read(para__device *dev, void *buf, size_t offset, size_t bytes,
                      void *dst, char *msg, size_t msg_len)
{
    pbuf *b = buf;
    int err = 0;
    if (b == NULL || offset > b->cap || bytes > b->cap - offset) {
        set_msg(msg, msg_len, "para__cl_buf_read: out of the buffer");
        return PARA_EINVAL;
    }
    PARA_CL_CHECK(clEnqueueReadBuffer(dev->read_q, b->mem, CL_TRUE, offset,
                                      bytes, dst, b->ev != NULL ? 1 : 0,
                                      b->ev != NULL ? &b->ev : NULL, NULL));
    return 0;

fail:
    return launch_error(err);
}

/* ---- launches ---------------------------------------------------------- */

static void release_events(launch_state *s)
{
    for (int i = 0; i < EV_COUNT; i++)
        ev_release(&s->ev[i]);
}

/* The device-resident state of a launch that is over: inputs held, the
 * sub-buffer, and the kept output unless it was handed to the caller. */
static void release_resident(launch_state *s)
{
    for (size_t i = 0; i < s->n_held; i++)
        pbuf_unref(s->held[i], 1);
    s->n_held = 0;
    mem_release(s->sub);
    s->sub = NULL;
    if (s->out_pb != NULL)
        pbuf_unref(s->out_pb, 1);
    s->out_pb = NULL;
}

static void release_buffers(launch_state *s)
{
    mem_release(s->in_buf);
    mem_release(s->out_buf);
    mem_release(s->seg_buf);
    mem_release(s->idx_buf);
    s->in_buf = s->out_buf = s->seg_buf = s->idx_buf = NULL;
    s->in_cap = s->out_cap = s->seg_cap = s->idx_cap = 0;
}

/* After a failure, or when a slot is torn down early: wait until the
 * device no longer uses l->in and l->out, unmap what is mapped, drop the
 * events. Blocks; failure paths only. */
static void drain(launch_state *s)
{
    cl_command_queue q = s->dev->queues[s->queue];
    if (clFinish(q) != CL_SUCCESS) {
        /* Then at least this launch's own commands. */
        for (int i = 0; i < EV_COUNT; i++)
            if (s->ev[i] != NULL)
                clWaitForEvents(1, &s->ev[i]);
    }
    if (s->out_map != NULL) {
        clEnqueueUnmapMemObject(q, s->out_buf, s->out_map, 0, NULL, NULL);
        clFinish(q);
        s->out_map = NULL;
    }
    release_events(s);
    release_resident(s);
    s->running = false;
}

/* Bind a fresh slot to the least used queue of dev. */
static launch_state *slot_create(para__device *dev)
{
    launch_state *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    unsigned best = 0;
    for (unsigned q = 1; q < dev->n_queues; q++)
        if (dev->queue_users[q] < dev->queue_users[best])
            best = q;
    s->dev = dev;
    s->queue = best;
    s->staging = dev->staging;
    dev->queue_users[best]++;
    dev->live_slots++;
    return s;
}

/* Unmap and free pinned staging buffer @p i of slot @p s. */
static void release_pin(launch_state *s, int i)
{
    if (s->pin[i] == NULL)
        return;
    cl_command_queue q = s->dev->queues[s->queue];
    if (s->pin_map[i] != NULL) {
        clEnqueueUnmapMemObject(q, s->pin[i], s->pin_map[i], 0, NULL, NULL);
        clFinish(q);
    }
    mem_release(s->pin[i]);
    s->pin[i] = NULL;
    s->pin_map[i] = NULL;
    s->pin_cap[i] = 0;
}

static void slot_destroy(launch_state *s)
{
    if (s->running)
        drain(s);
    release_pin(s, 0);
    release_pin(s, 1);
    release_events(s);
    release_resident(s);
    release_buffers(s);
    free(s->held);
    s->dev->queue_users[s->queue]--;
    s->dev->live_slots--;
    free(s);
}

/* Make *buf hold at least `need` bytes: the next power of two, at most the
 * device's allocation limit. */
static int ensure_buffer(para__device *dev, cl_mem *buf, size_t *cap,
                         size_t need, cl_mem_flags flags, char *msg,
                         size_t msg_len)
{
    if (*buf != NULL && *cap >= need)
        return 0;
    int err = 0;
    cl_int rc;
    size_t want = buffer_size(dev, need, 1);
    mem_release(*buf); /* freed once pending commands finish */
    *buf = NULL;
    *cap = 0;
    cl_mem b = clCreateBuffer(dev->ctx, flags, want, NULL, &rc);
    PARA_CL_CHECK_RC("clCreateBuffer", rc);
    mem_born();
    *buf = b;
    *cap = want;
    trace(dev, "clCreateBuffer %zu bytes", want);
    return 0;

fail:
    return err;
}

/* Launch errors are PARA_EDEVICE or PARA_ENOMEM (the contract). */
static int launch_error(int err)
{
    return err == PARA_ENOMEM ? err : PARA_EDEVICE;
}

/* Make pinned buffer @p i of @p s hold @p need bytes, mapped. */
static int ensure_pin(launch_state *s, int i, size_t need, char *msg,
                      size_t msg_len)
{
    if (need == 0 || (s->pin[i] != NULL && s->pin_cap[i] >= need))
        return 0;
    para__device *dev = s->dev;
    int err = 0;
    cl_int rc;
    release_pin(s, i);
    size_t want = 4096;
    while (want < need && want <= SIZE_MAX / 2)
        want *= 2;
    s->pin[i] =
        clCreateBuffer(dev->ctx, CL_MEM_ALLOC_HOST_PTR, want, NULL, &rc);
    PARA_CL_CHECK_RC("clCreateBuffer", rc);
    mem_born();
    s->pin_cap[i] = want;
    s->pin_map[i] = clEnqueueMapBuffer(dev->queues[s->queue], s->pin[i],
                                       CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0,
                                       want, 0, NULL, NULL, &rc);
    PARA_CL_CHECK_RC("clEnqueueMapBuffer", rc);
    trace(dev, "pinned staging: %zu bytes", want);
    return 0;

fail:
    release_pin(s, i);
    return launch_error(err);
}

int para__cl_stage(para__kernel *k, para__launch *l, size_t in_bytes,
                   size_t out_bytes, void **in, void **out, char *msg,
                   size_t msg_len)
{
    *in = *out = NULL;
    launch_state *s = l->impl;
    if (s != NULL && s->running) {
        set_msg(msg, msg_len, "para__cl_stage: the slot's launch is running");
        return PARA_EBUSY;
    }
    if (s != NULL && (s->dev != k->dev || s->staging != k->dev->staging)) {
        slot_destroy(s);
        l->impl = s = NULL;
    }
    if (s == NULL) {
        s = slot_create(k->dev);
        if (s == NULL) {
            set_msg(msg, msg_len, "para__cl_stage: out of memory");
            return PARA_ENOMEM;
        }
        l->impl = s;
    }
    int err = ensure_pin(s, 0, in_bytes, msg, msg_len);
    if (err == 0)
        err = ensure_pin(s, 1, out_bytes, msg, msg_len);
    if (err != 0)
        return err;
    *in = in_bytes > 0 ? s->pin_map[0] : NULL;
    *out = out_bytes > 0 ? s->pin_map[1] : NULL;
    return 0;
}

/* Hold the distinct buffers of l->in_parts for the launch, and collect the
 * events that write them into @p wait (room for n_in_parts). */
static int hold_segments(launch_state *s, const para__launch *l, cl_event *wait,
                         cl_uint *n_wait)
{
    if (s->cap_held < l->n_in_parts) {
        pbuf **h = realloc(s->held, l->n_in_parts * sizeof *h);
        if (h == NULL)
            return PARA_ENOMEM;
        s->held = h;
        s->cap_held = l->n_in_parts;
    }
    *n_wait = 0;
    for (size_t i = 0; i < l->n_in_parts; i++) {
        pbuf *b = l->in_parts[i].buf;
        bool seen = false;
        for (size_t j = 0; j < s->n_held && !seen; j++)
            seen = s->held[j] == b;
        if (seen)
            continue;
        para__cl_buf_retain(s->dev, b, 1);
        s->held[s->n_held++] = b;
        if (b->ev != NULL)
            wait[(*n_wait)++] = b->ev;
    }
    return 0;
}

/* Item index: copy the launch's runs (l->segs) and enqueue the kernel that
 * writes every item's number into the slot's index buffer, then bind that
 * buffer to the node kernel's index parameters. Same in-order queue as the
 * launch, so the node's kernel sees the numbers; no events of their own (a
 * failure of either shows in the launch's later commands or in drain()). */
static int enqueue_index(para__kernel *k, const para__launch *l,
                         launch_state *s, cl_command_queue q, char *msg,
                         size_t msg_len)
{
    para__device *dev = k->dev;
    int err = 0;
    if (l->segs == NULL || l->n_segs == 0 || l->n_segs > l->n ||
        l->segs[1] != 0) {
        set_msg(msg, msg_len,
                "kernel \"%s\" takes the item index but the launch has no "
                "numbering of its items",
                k->entry);
        return PARA_EINVAL;
    }
    size_t seg_bytes = l->n_segs * 2 * sizeof(cl_ulong);
    err = ensure_buffer(dev, &s->seg_buf, &s->seg_cap, seg_bytes,
                        CL_MEM_READ_ONLY, msg, msg_len);
    if (err != 0)
        goto fail;
    err = ensure_buffer(dev, &s->idx_buf, &s->idx_cap, l->n * sizeof(cl_ulong),
                        CL_MEM_READ_WRITE, msg, msg_len);
    if (err != 0)
        goto fail;
    PARA_CL_CHECK(clEnqueueWriteBuffer(q, s->seg_buf, CL_FALSE, 0, seg_bytes,
                                       l->segs, 0, NULL, NULL));
    cl_uint n_runs = (cl_uint)l->n_segs, n32 = (cl_uint)l->n;
    cl_kernel x = k->expand->kernel;
    PARA_CL_CHECK(clSetKernelArg(x, 0, sizeof s->seg_buf, &s->seg_buf));
    PARA_CL_CHECK(clSetKernelArg(x, 1, sizeof n_runs, &n_runs));
    PARA_CL_CHECK(clSetKernelArg(x, 2, sizeof n32, &n32));
    PARA_CL_CHECK(clSetKernelArg(x, 3, sizeof s->idx_buf, &s->idx_buf));
    size_t global = (l->n + k->local - 1) / k->local * k->local;
    PARA_CL_CHECK(clEnqueueNDRangeKernel(q, x, 1, NULL, &global, &k->local, 0,
                                         NULL, NULL));
    trace(dev, "q%u para_expand_index runs=%zu n=%zu", s->queue, l->n_segs,
          l->n);
    for (size_t j = 0; j < k->n_index; j++)
        PARA_CL_CHECK(clSetKernelArg(k->kernel, k->index_at[j],
                                     sizeof s->idx_buf, &s->idx_buf));
    return 0;

fail:
    return err;
}

int para__cl_launch_begin(para__kernel *k, para__launch *l, char *msg,
                          size_t msg_len)
{
    if (k == NULL || l == NULL ||
        (l->n > 0 && ((l->in == NULL && l->n_in_parts == 0) ||
                      (l->out == NULL && !l->keep)))) {
        set_msg(msg, msg_len, "para__cl_launch_begin: invalid argument");
        return PARA_EINVAL;
    }
    para__device *dev = k->dev;
    launch_state *s = l->impl;
    if (s != NULL && s->running) {
        set_msg(msg, msg_len,
                "para__cl_launch_begin: the slot's previous launch is "
                "still in flight");
        return PARA_EBUSY;
    }
    if (l->n > UINT32_MAX || l->n > SIZE_MAX / k->in_size ||
        l->n > SIZE_MAX / k->out_size) {
        set_msg(msg, msg_len, "para__cl_launch_begin: %zu items is too many",
                l->n);
        return PARA_EINVAL;
    }
    size_t in_bytes = l->n * k->in_size, out_bytes = l->n * k->out_size;
    if (in_bytes > dev->info.max_alloc_bytes ||
        out_bytes > dev->info.max_alloc_bytes) {
        set_msg(msg, msg_len,
                "a batch of %zu items needs %zu + %zu bytes; \"%s\" allocates "
                "at most %llu bytes per buffer",
                l->n, in_bytes, out_bytes, dev->info.name,
                (unsigned long long)dev->info.max_alloc_bytes);
        return PARA_ENOMEM;
    }
    /* A slot moves to another device, or to another staging mode, with
     * fresh buffers. */
    if (s != NULL && (s->dev != dev || s->staging != dev->staging)) {
        slot_destroy(s);
        l->impl = s = NULL;
    }
    if (s == NULL) {
        s = slot_create(dev);
        if (s == NULL) {
            set_msg(msg, msg_len, "para__cl_launch_begin: out of memory");
            return PARA_ENOMEM;
        }
        l->impl = s;
    }

    l->submit_ns = para__now_ns();
    l->complete_ns = 0;
    l->out_buf = NULL;
    l->out_early = NULL;
    l->pool_hit = false;
    if (l->n == 0) {
        s->last_err = 0;
        l->complete_ns = l->submit_ns;
        return 0;
    }

    int err = 0;
    cl_int rc;
    bool enqueued = false;
    void *in_map = NULL; /* MAP staging: the input while it is mapped */
    cl_event *wait = NULL;
    cl_uint n_wait = 0;
    cl_command_queue q = dev->queues[s->queue];
    bool map = s->staging == PARA__CL_STAGING_MAP;
    bool resident = l->n_in_parts > 0;
    cl_mem_flags host = map ? CL_MEM_ALLOC_HOST_PTR : 0;
    cl_mem in_mem = NULL, out_mem = NULL;
    for (int i = 0; i < EV_COUNT; i++)
        s->ev_name[i] = ev_call[s->staging][i];

    if (resident) {
        wait = malloc(l->n_in_parts * sizeof *wait);
        if (wait == NULL || hold_segments(s, l, wait, &n_wait) != 0) {
            set_msg(msg, msg_len, "para__cl_launch_begin: out of memory");
            err = PARA_ENOMEM;
            goto fail;
        }
        const para__devseg *g = &l->in_parts[0];
        pbuf *b0 = g->buf;
        size_t align = dev->info.base_align;
        if (l->n_in_parts == 1 && g->offset == 0) {
            in_mem = b0->mem; /* the producer's buffer itself */
        } else if (l->n_in_parts == 1 && align != 0 && g->offset % align == 0) {
            /* A sub-buffer where the device's alignment allows one. */
            cl_buffer_region region = {g->offset, in_bytes};
            s->sub = clCreateSubBuffer(b0->mem, 0, CL_BUFFER_CREATE_TYPE_REGION,
                                       &region, &rc);
            PARA_CL_CHECK_RC("clCreateSubBuffer", rc);
            mem_born();
            in_mem = s->sub;
            trace(dev, "q%u clCreateSubBuffer at %zu, %zu bytes", s->queue,
                  g->offset, in_bytes);
        } else {
            /* Parts of several buffers, or at an unaligned offset:
             * gathered on the device into the slot's input buffer. */
            err = ensure_buffer(dev, &s->in_buf, &s->in_cap, in_bytes,
                                CL_MEM_READ_WRITE, msg, msg_len);
            if (err != 0)
                goto fail;
            size_t at = 0;
            for (size_t i = 0; i < l->n_in_parts; i++) {
                const para__devseg *p = &l->in_parts[i];
                pbuf *b = p->buf;
                size_t bytes = p->count * k->in_size;
                bool last = i + 1 == l->n_in_parts;
                PARA_CL_CHECK(clEnqueueCopyBuffer(
                    q, b->mem, s->in_buf, p->offset, at, bytes,
                    b->ev != NULL ? 1 : 0, b->ev != NULL ? &b->ev : NULL,
                    last ? &s->ev[EV_IN] : NULL));
                enqueued = true;
                at += bytes;
            }
            ev_born(&s->ev[EV_IN]);
            s->ev_name[EV_IN] = "clEnqueueCopyBuffer";
            trace(dev, "q%u clEnqueueCopyBuffer x%zu, %zu bytes", s->queue,
                  l->n_in_parts, in_bytes);
            in_mem = s->in_buf;
            n_wait = 0; /* the copies waited; the queue is in order */
        }
    } else {
        err = ensure_buffer(dev, &s->in_buf, &s->in_cap, in_bytes,
                            CL_MEM_READ_ONLY | host, msg, msg_len);
        if (err != 0)
            goto fail;
        if (!map) {
            PARA_CL_CHECK(clEnqueueWriteBuffer(q, s->in_buf, CL_FALSE, 0,
                                               in_bytes, l->in, 0, NULL,
                                               &s->ev[EV_IN]));
        } else {
            /* Blocking, but with no more slots than queues the queue is
             * this slot's own, and idle. */
            in_map = clEnqueueMapBuffer(q, s->in_buf, CL_TRUE,
                                        CL_MAP_WRITE_INVALIDATE_REGION, 0,
                                        in_bytes, 0, NULL, NULL, &rc);
            PARA_CL_CHECK_RC("clEnqueueMapBuffer", rc);
            memcpy(in_map, l->in, in_bytes);
            PARA_CL_CHECK(clEnqueueUnmapMemObject(q, s->in_buf, in_map, 0, NULL,
                                                  &s->ev[EV_IN]));
            in_map = NULL;
        }
        ev_born(&s->ev[EV_IN]);
        enqueued = true;
        in_mem = s->in_buf;
        trace(dev, "q%u %s %zu bytes", s->queue, ev_call[s->staging][EV_IN],
              in_bytes);
    }

    if (l->keep) {
        s->out_pb = pool_get(dev, out_bytes, &l->pool_hit, &err, msg, msg_len);
        if (s->out_pb == NULL)
            goto fail;
        out_mem = s->out_pb->mem;
    } else {
        err = ensure_buffer(dev, &s->out_buf, &s->out_cap, out_bytes,
                            CL_MEM_WRITE_ONLY | host, msg, msg_len);
        if (err != 0)
            goto fail;
        out_mem = s->out_buf;
    }

    cl_uint n32 = (cl_uint)l->n;
    if (k->n_index > 0) {
        enqueued = true; /* drain() on failure: it may have enqueued */
        err = enqueue_index(k, l, s, q, msg, msg_len);
        if (err != 0)
            goto fail;
    }
    PARA_CL_CHECK(clSetKernelArg(k->kernel, 0, sizeof in_mem, &in_mem));
    PARA_CL_CHECK(clSetKernelArg(k->kernel, 1, sizeof out_mem, &out_mem));
    PARA_CL_CHECK(clSetKernelArg(k->kernel, 2, sizeof n32, &n32));
    size_t global = (l->n + k->local - 1) / k->local * k->local;
    PARA_CL_CHECK(clEnqueueNDRangeKernel(
        q, k->kernel, 1, NULL, &global, &k->local, n_wait,
        n_wait > 0 ? wait : NULL, &s->ev[EV_KERNEL]));
    ev_born(&s->ev[EV_KERNEL]);
    enqueued = true;
    trace(dev, "q%u clEnqueueNDRangeKernel %s n=%zu global=%zu local=%zu%s",
          s->queue, k->entry, l->n, global, k->local,
          resident ? " (resident input)" : "");
    if (l->keep) {
        /* Later launches reading the buffer wait on its kernel. */
        PARA_CL_CHECK(clRetainEvent(s->ev[EV_KERNEL]));
        s->out_pb->ev = s->ev[EV_KERNEL];
        ev_born(&s->out_pb->ev);
    }

    if (l->out != NULL) {
        if (l->keep || !map) {
            PARA_CL_CHECK(clEnqueueReadBuffer(q, out_mem, CL_FALSE, 0,
                                              out_bytes, l->out, 0, NULL,
                                              &s->ev[EV_OUT]));
            s->ev_name[EV_OUT] = "clEnqueueReadBuffer";
        } else {
            s->out_map =
                clEnqueueMapBuffer(q, s->out_buf, CL_FALSE, CL_MAP_READ, 0,
                                   out_bytes, 0, NULL, &s->ev[EV_OUT], &rc);
            PARA_CL_CHECK_RC("clEnqueueMapBuffer", rc);
        }
        ev_born(&s->ev[EV_OUT]);
        trace(dev, "q%u %s %zu bytes", s->queue, s->ev_name[EV_OUT], out_bytes);
    }
    PARA_CL_CHECK(clFlush(q));

    free(wait);
    waker_arm(s);
    s->out_bytes = out_bytes;
    s->running = true;
    /* Later launches may read the kept output now: they wait on its
     * kernel (out_pb->ev). */
    l->out_early = l->keep ? s->out_pb : NULL;
    dev->stats.launches++;
    return 0;

fail:
    free(wait);
    if (in_map != NULL) {
        /* A mapping pins the buffer in some drivers (PoCL): try again. */
        clEnqueueUnmapMemObject(q, s->in_buf, in_map, 0, NULL, NULL);
        enqueued = true;
    }
    if (enqueued)
        drain(s); /* the device must be done with l->in and l->out */
    else {
        release_events(s);
        release_resident(s);
    }
    s->out_map = NULL;
    s->running = false;
    s->last_err = launch_error(err);
    dev->stats.launch_failures++;
    return s->last_err;
}

/* The device times of a finished launch's commands, in host time: the
 * device clock is mapped by taking its last command's end as now (the
 * launch was seen complete just before, within a poll's delay). */
static void profile(launch_state *s, para__launch *l)
{
    uint64_t *out[EV_COUNT] = {l->copy_in_ns, l->kernel_ns, l->copy_out_ns};
    cl_ulong t[EV_COUNT][2] = {{0}};
    cl_ulong last = 0;
    for (int i = 0; i < EV_COUNT; i++) {
        out[i][0] = out[i][1] = 0;
        if (s->ev[i] == NULL ||
            clGetEventProfilingInfo(s->ev[i], CL_PROFILING_COMMAND_START,
                                    sizeof t[i][0], &t[i][0],
                                    NULL) != CL_SUCCESS ||
            clGetEventProfilingInfo(s->ev[i], CL_PROFILING_COMMAND_END,
                                    sizeof t[i][1], &t[i][1],
                                    NULL) != CL_SUCCESS ||
            t[i][1] < t[i][0]) {
            t[i][0] = t[i][1] = 0;
            continue;
        }
        last = t[i][1] > last ? t[i][1] : last;
    }
    uint64_t now = para__now_ns();
    for (int i = 0; i < EV_COUNT && last != 0; i++) {
        if (t[i][1] == 0 || last - t[i][0] > now)
            continue;
        out[i][0] = now - (last - t[i][0]);
        out[i][1] = now - (last - t[i][1]);
    }
}

/* End a running launch with an error (after drain()). */
static int fail_launch(launch_state *s, int err)
{
    drain(s);
    s->last_err = launch_error(err);
    s->dev->stats.launch_failures++;
    return s->last_err;
}

int para__cl_launch_poll(para__kernel *k, para__launch *l, char *msg,
                         size_t msg_len)
{
    launch_state *s = l != NULL ? l->impl : NULL;
    if (k == NULL || s == NULL) {
        set_msg(msg, msg_len, "para__cl_launch_poll: no launch");
        return PARA_EINVAL;
    }
    if (!s->running)
        return s->last_err < 0 ? s->last_err : 1;

    int err = 0;
    cl_int status[EV_COUNT];
    for (int i = 0; i < EV_COUNT; i++) {
        status[i] = CL_COMPLETE;
        if (s->ev[i] != NULL)
            PARA_CL_CHECK(clGetEventInfo(s->ev[i],
                                         CL_EVENT_COMMAND_EXECUTION_STATUS,
                                         sizeof status[i], &status[i], NULL));
    }
    for (int i = 0; i < EV_COUNT; i++) {
        if (status[i] < 0) {
            char buf[32];
            const char *name = para__cl_err_name(status[i], buf, sizeof buf);
            set_msg(msg, msg_len, "%s -> %s (%d) (command failed on \"%s\")",
                    s->ev_name[i], name, (int)status[i], s->dev->info.name);
            para__log(1, "opencl: launch of %s: %s -> %s (%d)", k->entry,
                      s->ev_name[i], name, (int)status[i]);
            err = PARA_EDEVICE;
            goto fail;
        }
    }
    for (int i = 0; i < EV_COUNT; i++) {
        if (status[i] != CL_COMPLETE) {
            s->dev->stats.running_polls++;
            /* A CPU device runs on the host's cores: a caller that polls in
             * a loop would take one from the driver's threads. Yielding is
             * not blocking, and it made 4-in-flight Mandelbrot with a
             * spinning poller 25 % faster on PoCL with 2 cores. */
            if (s->dev->info.is_cpu)
                sched_yield();
            return 0;
        }
    }

    if (s->out_map != NULL) {
        cl_command_queue q = s->dev->queues[s->queue];
        memcpy(l->out, s->out_map, s->out_bytes);
        void *p = s->out_map;
        s->out_map = NULL;
        PARA_CL_CHECK(clEnqueueUnmapMemObject(q, s->out_buf, p, 0, NULL, NULL));
        PARA_CL_CHECK(clFlush(q));
    }
    if (l->timed)
        profile(s, l);
    release_events(s);
    /* The kept output goes to the caller with the launch's reference. */
    l->out_buf = s->out_pb;
    l->out_early = NULL;
    s->out_pb = NULL;
    release_resident(s);
    s->running = false;
    s->last_err = 0;
    l->complete_ns = para__now_ns();
    return 1;

fail:
    return fail_launch(s, err);
}

/* The last command of the launch in flight. */
static cl_event *last_event(launch_state *s)
{
    for (int i = EV_COUNT - 1; i >= 0; i--)
        if (s->ev[i] != NULL)
            return &s->ev[i];
    return NULL;
}

int para__cl_launch_wait(para__kernel *k, para__launch *l, char *msg,
                         size_t msg_len)
{
    launch_state *s = l != NULL ? l->impl : NULL;
    if (k == NULL || s == NULL) {
        set_msg(msg, msg_len, "para__cl_launch_wait: no launch");
        return PARA_EINVAL;
    }
    if (!s->running)
        return s->last_err < 0 ? s->last_err : 0;

    /* CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST is named precisely by
     * the poll below, from the failed command's event; any other error is
     * the wait's own and fails the launch. */
    cl_int rc = clWaitForEvents(1, last_event(s));
    if (rc != CL_SUCCESS && rc != CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        return fail_launch(s,
                           para__cl_report(rc, "clWaitForEvents", __func__,
                                           __FILE__, __LINE__, msg, msg_len));
    int r = para__cl_launch_poll(k, l, msg, msg_len);
    if (r == 1)
        return 0;
    if (r < 0)
        return r;
    int err = para__cl_report(rc != CL_SUCCESS ? rc : CL_INVALID_EVENT,
                              "clWaitForEvents", __func__, __FILE__, __LINE__,
                              msg, msg_len);
    return fail_launch(s, err);
}

int para__cl_launch_wait_for(para__kernel *k, para__launch *l,
                             uint64_t timeout_ns, char *msg, size_t msg_len)
{
    /* Not clWaitForEvents: it has no timeout, and a hung device would keep
     * the caller (the runtime's host thread) from its watchdog and from
     * cancellation. With the device's waker armed for this launch, sleep
     * until a launch of the device calls it (or WAKE_CHECK_NS passes, a
     * guard against a driver that never calls back), then poll. Without
     * it, poll the events' status, sleeping between polls with a backoff
     * from 5 us to 100 us, which bounds how late a completion is seen
     * against how often the host wakes up. A wake-up whose poll still finds
     * the launch running (another launch's callback, or a driver that calls
     * back before the status reads complete) polls once more after a short
     * sleep before it waits again. */
    launch_state *s = l != NULL ? l->impl : NULL;
    cl_waker *w = s != NULL && s->woken ? s->dev->waker : NULL;
    uint64_t deadline = para__now_ns() + timeout_ns;
    long sleep_ns = 5000;
    bool woke = false;
    for (;;) {
        uint64_t seen = w != NULL ? waker_gen(w) : 0;
        int r = para__cl_launch_poll(k, l, msg, msg_len);
        if (r != 0)
            return r;
        uint64_t now = para__now_ns();
        if (now >= deadline)
            return 0;
        uint64_t left = deadline - now;
        if (w != NULL && !woke) {
            woke = waker_wait(w, seen,
                              now + PARA_MIN(left, (uint64_t)WAKE_CHECK_NS));
            continue;
        }
        woke = false;
        struct timespec ts = {
            .tv_sec = 0,
            .tv_nsec = (long)PARA_MIN((uint64_t)sleep_ns, left),
        };
        nanosleep(&ts, NULL);
        sleep_ns = PARA_MIN(sleep_ns * 2, 100000L);
    }
}

void para__cl_launch_fini(para__kernel *k, para__launch *l)
{
    (void)k; /* the slot knows its device; k may already be released */
    if (l == NULL || l->impl == NULL)
        return;
    slot_destroy(l->impl);
    l->impl = NULL;
}
