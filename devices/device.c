/*
 * The registry of device back-ends, and device lists.
 *
 * A back-end is one file with one para__device_ops table and one line in
 * `backends` below; entries are offered to the back-ends in this order and
 * the first that claims an entry opens it ("opencl" claims everything, so
 * it comes last). Below them, what the back-ends that compute with the
 * node's CPU function ("cpu", "sim") share.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "para/errors.h"
#include "util.h"

extern const para__device_ops para__cpu_ops, para__sim_ops;
#ifdef PARA_WITH_OPENCL
extern const para__device_ops para__cl_ops;
size_t para__cl_list(para__device_info *infos, size_t cap);
#endif

static const para__device_ops *const backends[] = {
    &para__cpu_ops,
    &para__sim_ops,
#ifdef PARA_WITH_OPENCL
    &para__cl_ops,
#endif
};

int para__device_open(const char *entry, const para__device_ops **ops,
                      void **dev, char *msg, size_t msg_len)
{
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        if (!backends[i]->claims(entry))
            continue;
        void *d = NULL;
        int rc = backends[i]->open(entry, &d, msg, msg_len);
        if (rc == 0) {
            *ops = backends[i];
            *dev = d;
        }
        return rc;
    }
    snprintf(msg, msg_len,
             "no device matches \"%s\": para was built without OpenCL "
             "(\"cpu\" and \"sim:...\" are available)",
             entry);
    return PARA_ENODEV;
}

size_t para__device_list(para__device_info *infos, size_t cap)
{
#ifdef PARA_WITH_OPENCL
    return para__cl_list(infos, cap);
#else
    (void)infos;
    (void)cap;
    return 0;
#endif
}

#define LIST_MAX 64

/* "all" or a type: every OpenCL device that matches, as "P:D" entries. */
static int expand_class(const char *cls, int (*fn)(void *, const char *),
                        void *arg, char *msg, size_t msg_len)
{
    para__device_info *infos = calloc(LIST_MAX, sizeof *infos);
    if (infos == NULL) {
        snprintf(msg, msg_len, "out of memory listing devices");
        return PARA_ENOMEM;
    }
    size_t n = para__device_list(infos, LIST_MAX);
    if (n > LIST_MAX)
        n = LIST_MAX;
    const char *type = strcmp(cls, "cpu-cl") == 0 ? "cpu" : cls;
    int rc = 0, matched = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (strcmp(cls, "all") != 0 && strcmp(infos[i].type, type) != 0)
            continue;
        char entry[32];
        snprintf(entry, sizeof entry, "%u:%u", infos[i].platform_index,
                 infos[i].device_index);
        matched++;
        rc = fn(arg, entry);
    }
    free(infos);
    if (rc == 0 && matched == 0) {
        snprintf(msg, msg_len,
                 "\"%s\": no OpenCL device of that kind (%zu "
                 "OpenCL devices seen)",
                 cls, n);
        return PARA_ENODEV;
    }
    return rc;
}

int para__device_expand(const char *list,
                        int (*fn)(void *arg, const char *entry), void *arg,
                        char *msg, size_t msg_len)
{
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        char entry[128];
        if (len == 0 || len >= sizeof entry) {
            snprintf(msg, msg_len,
                     "device list \"%s\": %s entry (entries are separated "
                     "by ',')",
                     list, len == 0 ? "an empty" : "a too long");
            return PARA_EINVAL;
        }
        memcpy(entry, p, len);
        entry[len] = '\0';
        int rc;
        if (strcmp(entry, "all") == 0 || strcmp(entry, "gpu") == 0 ||
            strcmp(entry, "accelerator") == 0 || strcmp(entry, "cpu-cl") == 0)
            rc = expand_class(entry, fn, arg, msg, msg_len);
        else
            rc = fn(arg, entry);
        if (rc != 0)
            return rc;
        if (end == NULL)
            return 0;
        p = end + 1;
    }
}

/* ---- back-ends that run the node's CPU function -------------------------- */

void para__device_msg(char *msg, size_t msg_len, const char *fmt, ...)
{
    if (msg == NULL || msg_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msg_len, fmt, ap);
    va_end(ap);
}

int para__host_fn_check(const para__kernel_spec *spec, const char *runner,
                        char *msg, size_t msg_len)
{
    if (spec->cpu_fn != NULL)
        return 0;
    para__device_msg(msg, msg_len,
                     "node '%s' has no CPU function, which %s runs in place "
                     "of the kernel",
                     spec->name, runner);
    return PARA_ENODEV;
}

para__host_launch *para__host_launch_start(para__launch *l, char *msg,
                                           size_t msg_len)
{
    para__host_launch *s = l->impl;
    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL) {
            para__device_msg(msg, msg_len, "out of memory for a launch slot");
            return NULL;
        }
        l->impl = s;
    }
    s->err = s->rc = 0;
    s->done_ns = 0;
    l->submit_ns = para__now_ns();
    l->complete_ns = 0;
    return s;
}

void para__host_launch_run(para__host_launch *s, const para__launch *l,
                           int (*fn)(void *arg, const void *in, void *out,
                                     size_t n),
                           void *arg)
{
    s->rc = fn(arg, l->in, l->out, l->n);
    s->err = s->rc != 0 ? PARA_ENODE : 0;
}

int para__host_launch_result(const para__host_launch *s, para__launch *l,
                             char *msg, size_t msg_len)
{
    if (s == NULL) {
        para__device_msg(msg, msg_len, "no launch in this slot");
        return PARA_EINVAL;
    }
    if (s->err == PARA_ENODE) {
        para__device_msg(msg, msg_len, "returned %d (%s)", s->rc,
                         s->rc < 0 ? para_err_name(s->rc) : "user error code");
        return PARA_ENODE;
    }
    if (s->err != 0)
        return s->err;
    l->complete_ns = s->done_ns;
    return 1;
}

void para__host_launch_fini(void *kernel, para__launch *l)
{
    (void)kernel;
    free(l->impl);
    l->impl = NULL;
}

int para__host_locality(const void *dev, hwloc_topology_t topology,
                        hwloc_cpuset_t set)
{
    (void)dev;
    (void)topology;
    (void)set;
    return -1;
}
