/*
 * Device back-ends: the contract between the runtime and a device.
 *
 * A device runs one kind of work: a kernel applied to a batch of fixed-size
 * input items, producing the same number of fixed-size output items
 *
 *     __kernel void k(__global const IN *in, __global OUT *out, uint n, ...)
 *
 * where "..." are the node's extra arguments: scalars, read-only buffers
 * (uploaded once at kernel_create, i.e. once per run and device, and bound
 * to every launch) and local memory (see para__kernel_arg).
 *
 * What holds for every call below:
 *   - It returns 0 (or 1 where said) or a negative PARA_E* code, and on
 *     failure writes a one-line reason into the caller's message buffer
 *     (msg, msg_len): the failing call and its native error name, or the
 *     build log.
 *   - It never aborts the process and never calls exit().
 *   - Calls on one device object are made by one thread at a time (the
 *     runtime serialises them); different devices are independent.
 *   - Only launch_wait() may block, and never longer than its timeout.
 *
 * Lifecycle: open -> kernel_create -> (launch_begin -> launch_poll /
 * launch_wait)* -> kernel_release -> close. A launch slot is caller-owned
 * memory (para__launch); up to para__device_info.max_in_flight slots may be
 * in flight at once, so copies of one launch overlap the kernel of another.
 * The device may read l->in and write l->out until the launch is reported
 * finished or failed; a launch that never finishes keeps them (the runtime
 * gives such memory to nothing else, see runtime/device_node.c).
 *
 * Back-ends: one file each, and one line in the registry of device.c:
 *   "opencl"  devices/opencl: the ICD loader, any vendor driver; PoCL in CI.
 *   "sim"     devices/sim/sim.c: simulated devices with a given launch
 *             latency and rate; kernels run the node's CPU function.
 *   "cpu"     devices/cpu/cpu.c: a launch runs the node's CPU function on
 *             the calling thread; machines without OpenCL, and tests.
 * The runtime (runtime/device_node.c) only calls through the table and
 * reads what a back-end can do from para__device_info.caps.
 *
 * Tests: tests/devices/test_opencl.c, test_opencl_faults.c (-Wl,--wrap
 * mocks of the OpenCL entry points), test_sim.c; the runtime's device path
 * in tests/runtime/test_device_nodes.c.
 */
#ifndef PARA_DEVICE_H
#define PARA_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hwloc.h>

/* What a back-end can do (para__device_info.caps). */
enum {
    /* Kernels run the node's CPU function (para__kernel_spec.cpu_fn), not
     * its OpenCL C source: a node without one cannot run here. */
    PARA__DEVCAP_CPU_FN = 1u << 0,
    /* The device is the calling host thread itself: splitting a node's
     * batches between it and the CPU workers would split the CPU with
     * itself, so kernel nodes run here only. */
    PARA__DEVCAP_HOST_THREAD = 1u << 1,
    /* Launches can keep their output in device memory (para__launch.keep)
     * and take their input from there (para__launch.in_parts): the buffers of
     * device-resident edges. Without it every launch copies in and out. */
    PARA__DEVCAP_RESIDENT = 1u << 2,
};

/* What a device is, for selection, logs and para-info. */
typedef struct para__device_info {
    char name[128];          /* e.g. CL_DEVICE_NAME */
    char vendor[128];        /* CL_DEVICE_VENDOR */
    char platform[128];      /* CL_PLATFORM_NAME */
    char version[128];       /* CL_DEVICE_VERSION + driver version */
    char type[16];           /* "gpu", "cpu", "accelerator", "sim", "host" */
    unsigned platform_index; /* position in clGetPlatformIDs */
    unsigned device_index;   /* position within its platform */
    bool is_cpu;             /* shares the host cores with the workers */
    unsigned caps;           /* PARA__DEVCAP_* */
    unsigned compute_units;
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes; /* largest buffer; 0 = no limit known */
    size_t max_work_group;
    unsigned max_in_flight; /* launch slots the back-end supports at once */
    size_t base_align;      /* sub-buffer origins: CL_DEVICE_MEM_BASE_ADDR_ALIGN
                               in bytes; 0 = not known */
    /* Host <-> device copies, bytes per second, when the back-end knows it
     * (0 = not known: the runtime's learned cost per item then includes
     * the copies). A launch moves n * in_size bytes in and n * out_size
     * bytes out. */
    uint64_t link_bytes_per_s;
} para__device_info;

/* Part of a launch's input that is already on the device (back-ends with
 * PARA__DEVCAP_RESIDENT): @p count items at byte @p offset of @p buf, a
 * buffer an earlier launch kept (para__launch.out_buf). */
typedef struct para__devseg {
    void *buf;
    size_t offset;
    size_t count;
} para__devseg;

/* One launch, caller-owned. The back-end keeps its state (buffers, event)
 * in `impl`; the caller fills in/in_count and reads out after completion. */
typedef struct para__launch {
    const void *in; /* borrowed until the launch completes */
    size_t n;       /* items */
    void *out;      /* room for n * out_size bytes; written on completion */
    void *impl;     /* back-end state; NULL before the first use */
    uint64_t submit_ns, complete_ns; /* filled by the back-end */
    /* The items' sequence numbers, as n_segs runs of consecutive numbers
     * (one per gathered batch): segs[2k] is run k's first number and
     * segs[2k+1] the position of its first item in the launch (ascending
     * from 0; a run ends where the next begins, the last at n). NULL when
     * the node's items are not numbered. Borrowed like in. Back-ends pass
     * them to the kernel's index arguments (PARA_KARG_INDEX). */
    const uint64_t *segs;
    size_t n_segs;
    /* Device-resident data (PARA__DEVCAP_RESIDENT only; zero otherwise).
     * in_parts: when n_in_parts > 0 the input is these parts, in order,
     * covering the n items (in is unused); the back-end holds the buffers until
     * the launch is over. keep: the output stays on the device, and on
     * completion out_buf is a buffer holding the n outputs from offset 0,
     * with one reference for the caller (buf_release); out may then be
     * NULL (no copy back) or not (the outputs are copied back too). */
    const para__devseg *in_parts;
    size_t n_in_parts;
    bool keep;
    void *out_buf;
    /* keep: from a successful launch_begin on, the buffer that will hold
     * the outputs (out_buf's, before completion), whose buffer event is
     * the launch's kernel: a later launch may take parts of it as input at
     * once and waits for that kernel on the device. Borrowed: the launch's
     * reference is the one out_buf hands over at completion; a caller that
     * keeps the buffer takes references of its own (buf_retain). NULL
     * otherwise. */
    void *out_early;
    /* Filled by launch_begin: whether the kept output's buffer came from
     * the device's pool of free buffers. */
    bool pool_hit;
    /* timed: the caller wants, at completion, when the launch's copy in,
     * kernel and copy out ran on the device, in host time (para__now_ns()
     * clock, [start, end); 0 and 0 for a step the launch did not have, or
     * a back-end that cannot tell). */
    bool timed;
    uint64_t copy_in_ns[2], kernel_ns[2], copy_out_ns[2];
} para__launch;

/* Extra kernel arguments, after (in, out, n): kind is an enum
 * para_kernel_arg_kind (0 = scalar, copied at kernel_create; buffer: a
 * read-only host array of size bytes, uploaded at kernel_create and bound
 * to every launch; local: size bytes of work-group memory, value NULL;
 * index: each item's sequence number, from para__launch.segs, value NULL
 * and size 0). */
typedef struct para__kernel_arg {
    const void *value;
    size_t size;
    unsigned kind;
} para__kernel_arg;

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

/* A back-end: one table per file, listed in device.c's registry. */
typedef struct para__device_ops {
    const char *name;
    /* True if this back-end opens devices named by @p entry (one entry of
     * a device list, see para__device_expand()). */
    bool (*claims)(const char *entry);
    /* Open the device named by @p entry. 0, PARA_ENODEV (nothing matches;
     * msg says what was seen), PARA_EINVAL (the entry does not parse),
     * PARA_EDEVICE or PARA_ENOMEM. */
    int (*open)(const char *entry, void **dev, char *msg, size_t msg_len);
    void (*close)(void *dev);
    const para__device_info *(*info)(const void *dev);
    /* The cores near the device into @p set; 0, or -1 (no locality: the
     * caller does not pin). */
    int (*locality)(const void *dev, hwloc_topology_t topology,
                    hwloc_cpuset_t set);
    /* Build the node's kernel. 0, PARA_EKERNEL_BUILD (msg holds the build
     * log, or says the entry point is missing), PARA_ESIZE (a parameter's
     * type does not fit: in/out element size against the node's item size,
     * an extra scalar against the value's size; msg names the parameter
     * and both), PARA_EINVAL (a signature that does not take (in, out, n)
     * or a wrong count of extras), PARA_ENODEV (the back-end cannot run
     * this node), PARA_EDEVICE or PARA_ENOMEM. Back-ends that know the
     * parameter types check them here, before any launch. */
    int (*kernel_create)(void *dev, const para__kernel_spec *spec, void **out,
                         char *msg, size_t msg_len);
    void (*kernel_release)(void *kernel);
    /* Start a launch of l->n items from l->in into l->out, non-blocking.
     * 0, or PARA_EDEVICE / PARA_ENOMEM (PARA_ENOMEM: an allocation failed,
     * e.g. a buffer over the device's limit; a smaller launch may work),
     * PARA_ENODE (the CPU function failed, back-ends with
     * PARA__DEVCAP_CPU_FN). After a failure the launch is over. */
    int (*launch_begin)(void *kernel, para__launch *l, char *msg,
                        size_t msg_len);
    /* 1 if finished (l->out valid), 0 if still running, or a negative
     * PARA_E* if the launch failed. Never blocks. */
    int (*launch_poll)(void *kernel, para__launch *l, char *msg,
                       size_t msg_len);
    /* As launch_poll(), but waits up to @p timeout_ns for the launch to
     * finish (0 = poll). Returns 0 if it is still running then. */
    int (*launch_wait)(void *kernel, para__launch *l, uint64_t timeout_ns,
                       char *msg, size_t msg_len);
    /* Free the back-end state of a slot; only after it finished or failed
     * (a running launch is waited for). */
    void (*launch_fini)(void *kernel, para__launch *l);
    /* Let launches report when their steps ran (para__launch.timed), or
     * stop (NULL: the back-end cannot, or needs nothing to). Before the
     * first launch; 0 or a PARA_E* code. */
    int (*set_timing)(void *dev, bool on);
    /* Pinned host staging (NULL: the caller stages in its own memory):
     * room for @p in_bytes of input and @p out_bytes of output in host
     * memory the device copies from and to at full speed (OpenCL:
     * CL_MEM_ALLOC_HOST_PTR buffers, mapped once), in *in and *out (NULL
     * for 0 bytes), for the next launch of slot @p l, which may use them as
     * l->in and l->out. Valid until the slot's next stage() or
     * launch_fini(). 0, PARA_ENOMEM or PARA_EDEVICE (msg). */
    int (*stage)(void *kernel, para__launch *l, size_t in_bytes,
                 size_t out_bytes, void **in, void **out, char *msg,
                 size_t msg_len);
    /* Device-resident buffers (PARA__DEVCAP_RESIDENT; NULL otherwise), the
     * out_buf of kept launches. retain adds @p n references, release drops
     * one; the last one returns the buffer to the device's pool. Both may
     * be called from any thread (the back-end locks its pool), unlike the
     * calls above. */
    void (*buf_retain)(void *dev, void *buf, unsigned n);
    void (*buf_release)(void *dev, void *buf);
    /* Copy @p bytes at @p offset of @p buf into @p dst, blocking (after
     * the command that writes the buffer). 0 or PARA_EDEVICE (msg). The
     * device's thread only, as for the calls above. */
    int (*buf_read)(void *dev, void *buf, size_t offset, size_t bytes,
                    void *dst, char *msg, size_t msg_len);
} para__device_ops;

/* Expand a device list (para_runtime_attr_t.device) into its entries:
 * entries separated by ',', where "all" is every OpenCL device, "gpu",
 * "accelerator" and "cpu-cl" every OpenCL device of that type, anything
 * else one entry (opened by the back-end that claims it). Calls @p fn for
 * each; stops at and returns its first nonzero result. PARA_EINVAL for an
 * empty entry; PARA_ENODEV if "all" or a type matches nothing. */
int para__device_expand(const char *list,
                        int (*fn)(void *arg, const char *entry), void *arg,
                        char *msg, size_t msg_len);

/* Open one entry through the back-end that claims it. Returns 0 with *ops
 * and *dev set, or that back-end's open() error; PARA_ENODEV when no
 * back-end claims it (e.g. "P:D" built without OpenCL). */
int para__device_open(const char *entry, const para__device_ops **ops,
                      void **dev, char *msg, size_t msg_len);

/* Every OpenCL device visible (0 without the OpenCL back-end), up to
 * @p cap infos. */
size_t para__device_list(para__device_info *infos, size_t cap);

/* ---- for back-ends that run the node's CPU function (PARA__DEVCAP_CPU_FN) --
 * The "cpu" and "sim" back-ends compute a launch with the node's CPU
 * function on the thread that begins it; what they share is here. */

/* printf into a back-end's message buffer (nothing if @p msg is NULL). */
void para__device_msg(char *msg, size_t msg_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* PARA_ENODEV with a message saying that @p runner (e.g. "the cpu
 * back-end") runs the CPU function in place of the kernel, if the node of
 * @p spec has none; else 0. */
int para__host_fn_check(const para__kernel_spec *spec, const char *runner,
                        char *msg, size_t msg_len);

/* A launch computed on the host: l->impl of such back-ends. */
typedef struct para__host_launch {
    int err;          /* 0, or the launch's failure (PARA_E*) */
    int rc;           /* the CPU function's result when err is PARA_ENODE */
    uint64_t done_ns; /* when the launch counts as finished */
} para__host_launch;

/* Start launch @p l: its host state (allocated at the slot's first use;
 * NULL and PARA_ENOMEM's message on failure), reset, with l->submit_ns now
 * and l->complete_ns 0. */
para__host_launch *para__host_launch_start(para__launch *l, char *msg,
                                           size_t msg_len);

/* Run @p fn over the launch's items (l->in to l->out): s->rc is its
 * result, s->err PARA_ENODE if that is nonzero. */
void para__host_launch_run(para__host_launch *s, const para__launch *l,
                           int (*fn)(void *arg, const void *in, void *out,
                                     size_t n),
                           void *arg);

/* The result of a finished launch, as launch_poll() returns it: 1 with
 * l->complete_ns = s->done_ns, or s->err (PARA_ENODE's message names the
 * CPU function's result; other failures wrote theirs at the start). */
int para__host_launch_result(const para__host_launch *s, para__launch *l,
                             char *msg, size_t msg_len);

/* launch_fini and locality of such back-ends: free the host state; no
 * locality (the launch runs on the calling thread, wherever it is). */
void para__host_launch_fini(void *kernel, para__launch *l);
int para__host_locality(const void *dev, hwloc_topology_t topology,
                        hwloc_cpuset_t set);

#endif /* PARA_DEVICE_H */
