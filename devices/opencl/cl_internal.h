/*
 * Internals of the OpenCL back-end shared by its .c files and the device
 * tests: the OpenCL headers with the API level we target, the
 * PARA_CL_CHECK error macro, and hooks that tests and
 * measurements use to look inside a device (cache counters, staging mode).
 * The runtime reaches the back-end only through para__cl_ops (device.h);
 * the calls below are the back-end's own, for its files, tests and
 * para-info.
 */
#ifndef PARA_CL_INTERNAL_H
#define PARA_CL_INTERNAL_H

/* The 1.2 API exists in every ICD loader and driver (NVIDIA, AMD, Intel,
 * PoCL, Apple). clCreateCommandQueue is deprecated from 2.0 on but still
 * exported everywhere; asking for the 1.2 API keeps it warning-free. */
#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#ifndef CL_USE_DEPRECATED_OPENCL_1_2_APIS
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#endif
#ifdef __APPLE__
#include <OpenCL/opencl.h>
#else
#include <CL/cl.h>
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device.h"

/* ---- the OpenCL back-end's own calls (opencl.c) ------------------------ */

typedef struct para__device para__device;
typedef struct para__kernel para__kernel;

/* Number of OpenCL devices visible through the ICD loader (0 if none or if
 * no platform answers). Fills up to `cap` infos. Never fails. */
size_t para__cl_list(para__device_info *infos, size_t cap);

/* Open a device chosen by `selector`:
 *   "auto"  the first GPU, else the first accelerator, else the first
 *           device of any type;
 *   "P:D"   platform P, device D (indices as in para__cl_list);
 *   other   the first device whose name or platform name contains it
 *           (case-insensitive).
 * Returns 0, PARA_ENODEV (nothing matches; msg says what was seen), or
 * PARA_EDEVICE (context or queue creation failed). */
int para__cl_open(const char *selector, para__device **out, char *msg,
                  size_t msg_len);
void para__cl_close(para__device *dev);
/* The cores near the device (hwloc's OpenCL helper: the PCI device's local
 * CPUs; the whole machine when the device has no PCI address, e.g. a CPU
 * device). 0, or -1 with errno set. */
int para__cl_locality(const para__device *dev, hwloc_topology_t topology,
                      hwloc_cpuset_t set);
const para__device_info *para__cl_info(const para__device *dev);

/* Build `source` with `options` and create kernel `entry`. Programs are
 * built once per opened device (an in-memory cache keyed by source and
 * options), kernel objects created once per program and entry point and
 * reused by later para__kernels (released at para__cl_close), and program
 * binaries cached on disk under
 * $PARA_CACHE_DIR, else $XDG_CACHE_HOME/para, else ~/.cache/para, keyed by
 * a hash of source, options, device name and driver version; a corrupt or
 * stale cache entry is rebuilt silently. Programs are built with
 * -cl-kernel-arg-info, and the parameter types are checked against the
 * item sizes and extra arguments (OpenCL C built-in scalars and vectors;
 * structs are not checked). Returns 0, PARA_EKERNEL_BUILD (msg holds the
 * build log, or the entry point is missing), PARA_ESIZE (a parameter type
 * does not fit; msg names it and both types), PARA_EINVAL (the signature
 * does not take (in, out, n) and the extras), PARA_EDEVICE or PARA_ENOMEM. */
int para__cl_kernel_create(para__device *dev, const char *source,
                           const char *options, const char *entry,
                           size_t in_size, size_t out_size,
                           const para__kernel_arg *args, size_t n_args,
                           para__kernel **out, char *msg, size_t msg_len);
void para__cl_kernel_release(para__kernel *k);

/* Start a launch: copy l->in (l->n items) to the device, run the kernel
 * with global size rounded up to the work-group multiple (the kernel checks
 * its index against n), and enqueue the read-back into l->out; all
 * non-blocking, then flush. Returns 0 or PARA_EDEVICE / PARA_ENOMEM. */
int para__cl_launch_begin(para__kernel *k, para__launch *l, char *msg,
                          size_t msg_len);
/* 1 if finished (l->out valid), 0 if still running, or a negative
 * PARA_EDEVICE if the launch failed. Never blocks. */
int para__cl_launch_poll(para__kernel *k, para__launch *l, char *msg,
                         size_t msg_len);
/* Block until the launch finishes: 0 or PARA_EDEVICE. */
int para__cl_launch_wait(para__kernel *k, para__launch *l, char *msg,
                         size_t msg_len);
/* Wait at most timeout_ns for the launch (polling its events' status):
 * 1 finished, 0 still running, or a negative PARA_EDEVICE if it failed. */
int para__cl_launch_wait_for(para__kernel *k, para__launch *l,
                             uint64_t timeout_ns, char *msg, size_t msg_len);
/* Free the back-end state of a slot (after it completed or failed). */
void para__cl_launch_fini(para__kernel *k, para__launch *l);

/* Pinned host staging for the next launch of slot @p l (device.h:
 * stage). */
int para__cl_stage(para__kernel *k, para__launch *l, size_t in_bytes,
                   size_t out_bytes, void **in, void **out, char *msg,
                   size_t msg_len);

/* Device-resident buffers (device.h: buf_retain, buf_release, buf_read;
 * the first two from any thread). */
void para__cl_buf_retain(para__device *dev, void *buf, unsigned n);
void para__cl_buf_release(para__device *dev, void *buf);
int para__cl_buf_read(para__device *dev, void *buf, size_t offset, size_t bytes,
                      void *dst, char *msg, size_t msg_len);

/* The CL_* name of an OpenCL status code, "CL_UNKNOWN(-9999)" style for
 * unknown values (buf is used only then). */
const char *para__cl_err_name(int32_t code, char *buf, size_t buf_len);

extern const para__device_ops para__cl_ops;

/* ---- error reporting --------------------------------------------------- */

/* The PARA_E* code for an OpenCL status: out-of-memory codes are
 * PARA_ENOMEM, compiler and linker failures PARA_EKERNEL_BUILD, a wrong
 * kernel name or argument PARA_EINVAL, everything else PARA_EDEVICE. */
int para__cl_to_err(cl_int status);

/* Report a failed OpenCL call: logs "<func> (<file>:<line>): <call> ->
 * CL_NAME (code)" at warning level, writes "<what> -> CL_NAME (code)" into
 * msg (<what> is the call text up to its '(' ), and returns
 * para__cl_to_err(status). Used through PARA_CL_CHECK. */
int para__cl_report(cl_int status, const char *call, const char *func,
                    const char *file, int line, char *msg, size_t msg_len);

/*
 * PARA_CL_CHECK(call): run an OpenCL call that returns a cl_int status; on
 * failure report it (para__cl_report), store the PARA_E* code in the local
 * `err` and jump to the function's single `fail:` label (one cleanup path).
 * The function must have locals `int err`, `char *msg`, `size_t msg_len`.
 *
 * PARA_CL_CHECK_RC(name, rc): the same for calls that return an object and
 * their status through an errcode_ret argument:
 *
 *     buf = clCreateBuffer(ctx, flags, size, NULL, &rc);
 *     PARA_CL_CHECK_RC("clCreateBuffer", rc);
 */
#define PARA_CL_CHECK_RC(name, rc)                                             \
    do {                                                                       \
        cl_int para__cl_rc_ = (rc);                                            \
        if (para__cl_rc_ != CL_SUCCESS) {                                      \
            err = para__cl_report(para__cl_rc_, (name), __func__, __FILE__,    \
                                  __LINE__, msg, msg_len);                     \
            goto fail;                                                         \
        }                                                                      \
    } while (0)

#define PARA_CL_CHECK(call) PARA_CL_CHECK_RC(#call, (call))

/* ---- test and measurement hooks ---------------------------------------- */

/* How a launch moves its items (see the design notes in opencl.c). */
typedef enum para__cl_staging {
    /* clEnqueueWriteBuffer from l->in and clEnqueueReadBuffer into l->out,
     * both non-blocking; device buffers are plain CL_MEM_READ_ONLY /
     * CL_MEM_WRITE_ONLY. The default. */
    PARA__CL_STAGING_WRITE,
    /* CL_MEM_ALLOC_HOST_PTR buffers: map the input, memcpy l->in, unmap;
     * map the output non-blocking and memcpy into l->out on completion. */
    PARA__CL_STAGING_MAP,
} para__cl_staging;

/* Counters of one open device; they start at 0 on every para__cl_open. */
typedef struct para__cl_stats {
    uint64_t builds_from_source; /* clBuildProgram on source */
    uint64_t memory_hits;        /* program found in the in-process cache */
    uint64_t kernels_created;    /* clCreateKernel (once per program+entry) */
    uint64_t kernel_hits;        /* kernel objects reused from the cache */
    uint64_t disk_hits;          /* program built from a cached binary */
    uint64_t disk_writes;        /* binaries written to the disk cache */
    uint64_t disk_rejects;    /* cache files ignored: corrupt, stale, refused */
    uint64_t launches;        /* launch_begin calls that enqueued work */
    uint64_t launch_failures; /* launches that ended with an error */
    uint64_t pool_hits;       /* kept outputs written into a pooled buffer */
    uint64_t pool_misses;     /* kept outputs that needed a new buffer */
    uint64_t running_polls;   /* polls that found a launch still running */
    uint64_t wakeups; /* completion callbacks so far (opencl.c: cl_waker) */
} para__cl_stats;

/* The cl_mem and cl_event objects the back-end holds now, over all
 * devices: 0 and 0 once every runtime and device is closed. */
void para__cl_live(long *mems, long *events);

void para__cl_get_stats(const para__device *dev, para__cl_stats *out);

/* Command queues with profiling on or off (off when opened): on, launches
 * asked to (para__launch.timed) report their steps' device times. Only
 * while no launch slot is bound: PARA_EBUSY otherwise; PARA_EDEVICE if a
 * queue cannot be made (the old ones are kept). */
int para__cl_set_profiling(para__device *dev, bool on);

/* Choose the staging mode and the number of command queues (1..4) launches
 * are spread over. Only while no launch slot is bound to the device
 * (every slot passed to para__cl_launch_fini): PARA_EBUSY otherwise,
 * PARA_EINVAL for values out of range. */
int para__cl_tune(para__device *dev, para__cl_staging staging, unsigned queues);

/* The work-group size launches of `k` use (global sizes are rounded up to a
 * multiple of it). */
size_t para__cl_kernel_local_size(const para__kernel *k);

#endif /* PARA_CL_INTERNAL_H */
