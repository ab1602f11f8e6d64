/*
 * The OpenCL back-end's para__device_ops table: the functions of
 * opencl.c on opaque handles.
 */
#include "cl_internal.h"

/* Every entry no other back-end claims: "auto", "P:D", part of a name. The
 * registry asks this back-end last. */
static bool ops_claims(const char *entry)
{
    (void)entry;
    return true;
}

static int ops_open(const char *entry, void **dev, char *msg, size_t msg_len)
{
    para__device *d = NULL;
    int rc = para__cl_open(entry, &d, msg, msg_len);
    *dev = d;
    return rc;
}

static void ops_close(void *dev)
{
    para__cl_close(dev);
}

static const para__device_info *ops_info(const void *dev)
{
    return para__cl_info(dev);
}

static int ops_locality(const void *dev, hwloc_topology_t topology,
                        hwloc_cpuset_t set)
{
    return para__cl_locality(dev, topology, set);
}

static int ops_kernel_create(void *dev, const para__kernel_spec *s, void **out,
                             char *msg, size_t msg_len)
{
    para__kernel *k = NULL;
    int rc = para__cl_kernel_create(dev, s->source, s->options, s->entry,
                                    s->in_size, s->out_size, s->args, s->n_args,
                                    &k, msg, msg_len);
    *out = k;
    return rc;
}

static void ops_kernel_release(void *kernel)
{
    para__cl_kernel_release(kernel);
}

static int ops_launch_begin(void *kernel, para__launch *l, char *msg,
                            size_t msg_len)
{
    return para__cl_launch_begin(kernel, l, msg, msg_len);
}

static int ops_launch_poll(void *kernel, para__launch *l, char *msg,
                           size_t msg_len)
{
    return para__cl_launch_poll(kernel, l, msg, msg_len);
}

static int ops_launch_wait(void *kernel, para__launch *l, uint64_t timeout_ns,
                           char *msg, size_t msg_len)
{
    return para__cl_launch_wait_for(kernel, l, timeout_ns, msg, msg_len);
}

static void ops_launch_fini(void *kernel, para__launch *l)
{
    para__cl_launch_fini(kernel, l);
}

static int ops_stage(void *kernel, para__launch *l, size_t in_bytes,
                     size_t out_bytes, void **in, void **out, char *msg,
                     size_t msg_len)
{
    return para__cl_stage(kernel, l, in_bytes, out_bytes, in, out, msg,
                          msg_len);
}

static int ops_set_timing(void *dev, bool on)
{
    return para__cl_set_profiling(dev, on);
}

static void ops_buf_retain(void *dev, void *buf, unsigned n)
{
    para__cl_buf_retain(dev, buf, n);
}

static void ops_buf_release(void *dev, void *buf)
{
    para__cl_buf_release(dev, buf);
}

static int ops_buf_read(void *dev, void *buf, size_t offset, size_t bytes,
                        void *dst, char *msg, size_t msg_len)
{
    return para__cl_buf_read(dev, buf, offset, bytes, dst, msg, msg_len);
}

const para__device_ops para__cl_ops = {
    .name = "opencl",
    .claims = ops_claims,
    .open = ops_open,
    .close = ops_close,
    .info = ops_info,
    .locality = ops_locality,
    .kernel_create = ops_kernel_create,
    .kernel_release = ops_kernel_release,
    .launch_begin = ops_launch_begin,
    .launch_poll = ops_launch_poll,
    .launch_wait = ops_launch_wait,
    .launch_fini = ops_launch_fini,
    .stage = ops_stage,
    .set_timing = ops_set_timing,
    .buf_retain = ops_buf_retain,
    .buf_release = ops_buf_release,
    .buf_read = ops_buf_read,
};
