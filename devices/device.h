/*
 * Device back-ends: the contract between the scheduler and a device.
 *
 * A device runs one kind of work: a kernel applied to a batch of fixed-size
 * input items, producing the same number of fixed-size output items
 *
 *     __kernel void k(__global const IN *in, __global OUT *out, uint n, ...)
 *
 * where "..." are the node's extra scalar arguments (copied at launch).
 *
 * What holds for every call below (prim.h style):
 *   - It returns 0 or a negative PARA_E* code, and on failure writes a
 *     one-line reason into the caller's message buffer (msg, msg_len): the
 *     failing call and its CL_* name, or the build log.
 *   - It never aborts the process and never calls exit().
 *   - Calls on one device object are made by one thread at a time (the
 *     scheduler serialises them); different devices are independent.
 *   - Only launch_wait() may block; every other call returns promptly.
 *
 * Lifecycle: open -> build -> (launch_begin -> launch_poll/launch_wait)* ->
 * kernel_release -> close. A launch slot is caller-owned memory
 * (para__launch); up to para__device_info.max_in_flight slots may be in
 * flight at once, so copies of one launch overlap the kernel of another.
 *
 * Back-ends, each a para__device_ops table (at the end of this file):
 *   "opencl"  devices/opencl: the ICD loader, any vendor driver; PoCL in CI.
 *   "cpu"     devices/cpu: a launch runs the node's CPU implementation on
 *             the calling thread. It exercises the runtime's gathering,
 *             launching and splitting of batches without OpenCL, and serves
 *             machines without an OpenCL driver.
 * The runtime (runtime/device_node.c) only calls through the table.
 *
 * Tests: tests/devices/test_opencl.c (and test_opencl_faults.c, with
 * -Wl,--wrap mocks of the OpenCL entry points).
 */
#ifndef PARA_DEVICE_H
#define PARA_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hwloc.h>

typedef struct para__device para__device;
typedef struct para__kernel para__kernel;

/* What a device is, for selection, logs and para-info. */
typedef struct para__device_info {
    char name[128];          /* CL_DEVICE_NAME */
    char vendor[128];        /* CL_DEVICE_VENDOR */
    char platform[128];      /* CL_PLATFORM_NAME */
    char version[128];       /* CL_DEVICE_VERSION + driver version */
    unsigned platform_index; /* position in clGetPlatformIDs */
    unsigned device_index;   /* position within its platform */
    bool is_cpu;             /* CL_DEVICE_TYPE_CPU: shares the host cores */
    unsigned compute_units;
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes;
    size_t max_work_group;
    unsigned max_in_flight; /* launch slots the back-end supports at once */
} para__device_info;

/* One launch, caller-owned. The back-end keeps its state (buffers, event)
 * in `impl`; the caller fills in/in_count and reads out after completion. */
typedef struct para__launch {
    const void *in; /* borrowed until the launch completes */
    size_t n;       /* items */
    void *out;      /* room for n * out_size bytes; written on completion */
    void *impl;     /* back-end state; NULL before the first use */
    uint64_t submit_ns, complete_ns; /* filled by the back-end */
} para__launch;

/* Extra scalar kernel arguments, after (in, out, n). */
typedef struct para__kernel_arg {
    const void *value;
    size_t size;
} para__kernel_arg;

/* ---- OpenCL back-end (devices/opencl/opencl.c) ------------------------- */

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
 * built once per device per process (an in-memory cache keyed by source,
 * options and device) and their binaries cached on disk under
 * $PARA_CACHE_DIR, else $XDG_CACHE_HOME/para, else ~/.cache/para, keyed by
 * a hash of source, options, device name and driver version; a corrupt or
 * stale cache entry is rebuilt silently. Returns 0, PARA_EKERNEL_BUILD (msg
 * holds the build log), PARA_EINVAL (no such entry point, or its signature
 * does not take at least (in, out, n)), PARA_EDEVICE or PARA_ENOMEM. */
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
/* Free the back-end state of a slot (after it completed or failed). */
void para__cl_launch_fini(para__kernel *k, para__launch *l);

/* The CL_* name of an OpenCL status code, "CL_UNKNOWN(-9999)" style for
 * unknown values (buf is used only then). */
const char *para__cl_err_name(int32_t code, char *buf, size_t buf_len);

/* ---- the back-end table ----------------------------------------------- */

/* Everything a back-end needs to create the kernel of one node. */
typedef struct para__kernel_spec {
    const char *name; /* the node, for messages */
    const char *source, *options, *entry;
    size_t in_size, out_size;
    const para__kernel_arg *args;
    size_t n_args;
    /* The CPU implementation, NULL if the node has none: n items from in to
     * out, 0 or the node function's nonzero result. */
    int (*cpu_fn)(void *cpu_arg, const void *in, void *out, size_t n);
    void *cpu_arg;
} para__kernel_spec;

/* The calls above, on opaque handles (para__device / para__kernel for
 * "opencl"). Contracts as documented for the OpenCL functions. */
typedef struct para__device_ops {
    const char *name;
    void (*close)(void *dev);
    const para__device_info *(*info)(const void *dev);
    /* The cores near the device into @p set; 0, or -1 (no locality: the
     * caller does not pin). */
    int (*locality)(const void *dev, hwloc_topology_t topology,
                    hwloc_cpuset_t set);
    int (*kernel_create)(void *dev, const para__kernel_spec *spec, void **out,
                         char *msg, size_t msg_len);
    void (*kernel_release)(void *kernel);
    int (*launch_begin)(void *kernel, para__launch *l, char *msg,
                        size_t msg_len);
    int (*launch_poll)(void *kernel, para__launch *l, char *msg,
                       size_t msg_len);
    int (*launch_wait)(void *kernel, para__launch *l, char *msg,
                       size_t msg_len);
    void (*launch_fini)(void *kernel, para__launch *l);
} para__device_ops;

#ifdef PARA_WITH_OPENCL
extern const para__device_ops para__cl_ops;
#endif
extern const para__device_ops para__cpu_ops;

/* The "cpu" back-end's open: never fails but for memory (PARA_ENOMEM). */
int para__cpu_open(void **out, char *msg, size_t msg_len);

/* Open the device named by `selector` (see para_runtime_attr_t.device):
 * "cpu" is the cpu back-end, anything else goes to para__cl_open().
 * Returns 0 with *ops and *dev set, or para__cl_open()'s errors; without
 * the OpenCL back-end every selector but "cpu" is PARA_ENODEV. */
int para__device_open(const char *selector, const para__device_ops **ops,
                      void **dev, char *msg, size_t msg_len);

#endif /* PARA_DEVICE_H */
