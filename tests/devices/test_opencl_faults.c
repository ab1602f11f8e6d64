/*
 * Failure paths of the OpenCL back-end (devices/opencl/opencl.c), with
 * faults injected into a real driver (PoCL in CI) by link-time wrapping:
 * tests/CMakeLists.txt links this test with -Wl,--wrap=clXxx for the entry
 * points below, so the library's calls land in __wrap_clXxx, which fails on
 * demand or forwards to the real function (__real_clXxx).
 *
 * The last tests inject the same faults into kernel nodes in the middle of
 * a graph's run (runtime/device_node.c): the run must end with the error,
 * naming the node and the call, with nothing leaked.
 *
 * Fifteen kinds of fault: for every launch step (buffer creation, input
 * copy or map, kernel arguments, kernel enqueue, output copy or map, flush,
 * a command whose event ends with a negative status, the blocking wait,
 * clFinish while a failed launch drains), kernel creation, and opening a
 * device (context, command queues), the test checks that the call returns
 * PARA_EDEVICE (or PARA_ENOMEM for allocation failures) with the OpenCL
 * call and the CL_* name in the message, that no event, buffer, queue or
 * context is leaked (the wrappers count the ones created and released),
 * and that the device works again for the next launch, also while other
 * launches are in flight. The fifteenth is a launch that never completes
 * (its kernel's event reports CL_RUNNING until released): the runtime's
 * watchdog and para_run_cancel() must end the run anyway. In graphs: a
 * device lost under a MIXED node beside a kernel-only node, and a device
 * out of memory mid-run.
 *
 * The __wrap_ and __real_ names are fixed by the linker; they are the one
 * place where the rule against leading underscores in names gives way.
 * No OpenCL device: exit 77, or fail under PARA_REQUIRE_DEVICE=1.
 */
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "device.h"
#include "opencl/cl_internal.h"
#include "para.h"
#include "para_kernels.h"

#define MSG_LEN 4096

/* ---- injection --------------------------------------------------------- */

/* One injectable entry point: the call number `after` calls from now fails
 * with `code` (after = 0: the next call); after < 0: disarmed. */
typedef struct fault {
    int after;
    cl_int code;
    int hits;
    int sticky; /* once fired, every later call fails too (a lost device) */
} fault;

static fault f_create, f_write, f_read, f_map, f_unmap, f_kernel, f_flush,
    f_event, f_setarg, f_wait, f_finish, f_mkkernel, f_queue, f_context, f_hang;

/* Touched by the test thread, the device's host thread and the workers
 * (a worker dropping the last reader of a device-resident batch releases
 * its buffer and event): atomic, sequentially consistent, as tests may. */
static _Atomic long live_events, live_buffers, live_queues, live_contexts;
static _Atomic(cl_event) hung_event; /* reported running while hang_on */
static _Atomic int hang_on;
static _Atomic(cl_event)
    failing_event; /* the event f_event reports as failed */
static char cache_dir[PATH_MAX];

static void arm(fault *f, int after, cl_int code)
{
    f->after = after;
    f->code = code;
    f->hits = 0;
    f->sticky = 0;
}

/* Stop injecting; an event already chosen to fail keeps failing. */
static void disarm_all(void)
{
    fault *all[] = {&f_create, &f_write,    &f_read,  &f_map,     &f_unmap,
                    &f_kernel, &f_flush,    &f_event, &f_setarg,  &f_wait,
                    &f_finish, &f_mkkernel, &f_queue, &f_context, &f_hang};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        all[i]->after = -1;
    hang_on = 0; /* a hung launch completes now */
}

/* True if this call must fail. */
static int take(fault *f)
{
    if (f->after < 0)
        return 0;
    if (f->after == 0 && f->sticky) {
        f->hits++;
        return 1;
    }
    if (f->after-- == 0) {
        f->hits++;
        return 1;
    }
    return 0;
}

/* Kernels in flight (enqueued, not yet seen complete or released), seen by
 * the kernel enqueue wrapper: the most at once, and the kernels (or the
 * copies that gather their input on the device) enqueued while a kernel
 * they wait for (their producer on the device) was still incomplete. Under
 * flight_lock: the enqueues come from the host thread, releases from any
 * thread. An event leaves the set at its first release, which comes after its
 * launch is over (or drained). */
#define FLIGHT_MAX 64
static pthread_mutex_t flight_lock = PTHREAD_MUTEX_INITIALIZER;
static cl_event flight[FLIGHT_MAX];
static int n_flight, max_flight, chained_ahead;
static bool flight_on;

static void flight_reset(bool on)
{
    pthread_mutex_lock(&flight_lock);
    n_flight = max_flight = chained_ahead = 0;
    flight_on = on;
    pthread_mutex_unlock(&flight_lock);
}

static cl_int real_status(cl_event e);

/* A copy enqueued after waiting on @p wl (the gathering of a kernel's
 * input parts on the device): ahead of its producer if one is
 * incomplete. */
static void copy_ahead(cl_uint nw, const cl_event *wl)
{
    pthread_mutex_lock(&flight_lock);
    for (cl_uint i = 0; flight_on && i < nw; i++) {
        cl_int st = real_status(wl[i]);
        if (st != CL_COMPLETE && st >= 0) {
            chained_ahead++;
            break;
        }
    }
    pthread_mutex_unlock(&flight_lock);
}

/* A kernel enqueued with event @p e after waiting on @p wl. */
static void flight_add(cl_event e, cl_uint nw, const cl_event *wl)
{
    pthread_mutex_lock(&flight_lock);
    if (flight_on) {
        int k = 0;
        for (int i = 0; i < n_flight; i++) {
            cl_int st = real_status(flight[i]);
            if (st != CL_COMPLETE && st >= 0)
                flight[k++] = flight[i];
        }
        n_flight = k;
        for (cl_uint i = 0; i < nw; i++) {
            cl_int st = real_status(wl[i]);
            if (st != CL_COMPLETE && st >= 0) {
                chained_ahead++;
                break;
            }
        }
        if (n_flight < FLIGHT_MAX)
            flight[n_flight++] = e;
        if (n_flight > max_flight)
            max_flight = n_flight;
    }
    pthread_mutex_unlock(&flight_lock);
}

static void flight_drop(cl_event e)
{
    pthread_mutex_lock(&flight_lock);
    for (int i = 0; i < n_flight; i++)
        if (flight[i] == e) {
            flight[i] = flight[--n_flight];
            break;
        }
    pthread_mutex_unlock(&flight_lock);
}

static void count_event(cl_int rc, const cl_event *event)
{
    if (rc == CL_SUCCESS && event != NULL && *event != NULL)
        live_events++;
}

/* Prototypes for -Wmissing-prototypes; the signatures are cl.h's. */
cl_mem __real_clCreateBuffer(cl_context, cl_mem_flags, size_t, void *,
                             cl_int *);
cl_mem __wrap_clCreateBuffer(cl_context, cl_mem_flags, size_t, void *,
                             cl_int *);
cl_int __real_clEnqueueWriteBuffer(cl_command_queue, cl_mem, cl_bool, size_t,
                                   size_t, const void *, cl_uint,
                                   const cl_event *, cl_event *);
cl_int __wrap_clEnqueueWriteBuffer(cl_command_queue, cl_mem, cl_bool, size_t,
                                   size_t, const void *, cl_uint,
                                   const cl_event *, cl_event *);
cl_int __real_clEnqueueReadBuffer(cl_command_queue, cl_mem, cl_bool, size_t,
                                  size_t, void *, cl_uint, const cl_event *,
                                  cl_event *);
cl_int __wrap_clEnqueueReadBuffer(cl_command_queue, cl_mem, cl_bool, size_t,
                                  size_t, void *, cl_uint, const cl_event *,
                                  cl_event *);
void *__real_clEnqueueMapBuffer(cl_command_queue, cl_mem, cl_bool, cl_map_flags,
                                size_t, size_t, cl_uint, const cl_event *,
                                cl_event *, cl_int *);
void *__wrap_clEnqueueMapBuffer(cl_command_queue, cl_mem, cl_bool, cl_map_flags,
                                size_t, size_t, cl_uint, const cl_event *,
                                cl_event *, cl_int *);
cl_int __real_clEnqueueUnmapMemObject(cl_command_queue, cl_mem, void *, cl_uint,
                                      const cl_event *, cl_event *);
cl_int __wrap_clEnqueueUnmapMemObject(cl_command_queue, cl_mem, void *, cl_uint,
                                      const cl_event *, cl_event *);
cl_int __real_clEnqueueNDRangeKernel(cl_command_queue, cl_kernel, cl_uint,
                                     const size_t *, const size_t *,
                                     const size_t *, cl_uint, const cl_event *,
                                     cl_event *);
cl_int __wrap_clEnqueueNDRangeKernel(cl_command_queue, cl_kernel, cl_uint,
                                     const size_t *, const size_t *,
                                     const size_t *, cl_uint, const cl_event *,
                                     cl_event *);
cl_int __real_clFlush(cl_command_queue);
cl_int __wrap_clFlush(cl_command_queue);
cl_int __real_clGetEventInfo(cl_event, cl_event_info, size_t, void *, size_t *);
cl_int __wrap_clGetEventInfo(cl_event, cl_event_info, size_t, void *, size_t *);
cl_int __real_clReleaseEvent(cl_event);
cl_int __wrap_clReleaseEvent(cl_event);
cl_int __real_clReleaseMemObject(cl_mem);
cl_int __wrap_clReleaseMemObject(cl_mem);
cl_int __real_clSetKernelArg(cl_kernel, cl_uint, size_t, const void *);
cl_int __wrap_clSetKernelArg(cl_kernel, cl_uint, size_t, const void *);
cl_int __real_clWaitForEvents(cl_uint, const cl_event *);
cl_int __wrap_clWaitForEvents(cl_uint, const cl_event *);
cl_int __real_clFinish(cl_command_queue);
cl_int __wrap_clFinish(cl_command_queue);
cl_kernel __real_clCreateKernel(cl_program, const char *, cl_int *);
cl_kernel __wrap_clCreateKernel(cl_program, const char *, cl_int *);
cl_command_queue __real_clCreateCommandQueue(cl_context, cl_device_id,
                                             cl_command_queue_properties,
                                             cl_int *);
cl_command_queue __wrap_clCreateCommandQueue(cl_context, cl_device_id,
                                             cl_command_queue_properties,
                                             cl_int *);
cl_int __real_clReleaseCommandQueue(cl_command_queue);
cl_int __wrap_clReleaseCommandQueue(cl_command_queue);
cl_context __real_clCreateContext(
    const cl_context_properties *, cl_uint, const cl_device_id *,
    void(CL_CALLBACK *)(const char *, const void *, size_t, void *), void *,
    cl_int *);
cl_context __wrap_clCreateContext(
    const cl_context_properties *, cl_uint, const cl_device_id *,
    void(CL_CALLBACK *)(const char *, const void *, size_t, void *), void *,
    cl_int *);
cl_int __real_clReleaseContext(cl_context);
cl_int __wrap_clReleaseContext(cl_context);

cl_int __wrap_clSetKernelArg(cl_kernel k, cl_uint i, size_t size,
                             const void *value)
{
    if (take(&f_setarg))
        return f_setarg.code;
    return __real_clSetKernelArg(k, i, size, value);
}

cl_int __wrap_clWaitForEvents(cl_uint n, const cl_event *events)
{
    if (take(&f_wait))
        return f_wait.code;
    return __real_clWaitForEvents(n, events);
}

cl_int __wrap_clFinish(cl_command_queue q)
{
    cl_int rc = __real_clFinish(q); /* the queue drains either way */
    if (take(&f_finish))
        return f_finish.code;
    return rc;
}

cl_kernel __wrap_clCreateKernel(cl_program p, const char *name, cl_int *rc)
{
    if (take(&f_mkkernel)) {
        *rc = f_mkkernel.code;
        return NULL;
    }
    return __real_clCreateKernel(p, name, rc);
}

cl_command_queue __wrap_clCreateCommandQueue(cl_context c, cl_device_id d,
                                             cl_command_queue_properties props,
                                             cl_int *rc)
{
    if (take(&f_queue)) {
        *rc = f_queue.code;
        return NULL;
    }
    cl_command_queue q = __real_clCreateCommandQueue(c, d, props, rc);
    if (q != NULL)
        live_queues++;
    return q;
}

cl_int __wrap_clReleaseCommandQueue(cl_command_queue q)
{
    cl_int rc = __real_clReleaseCommandQueue(q);
    if (rc == CL_SUCCESS)
        live_queues--;
    return rc;
}

cl_context __wrap_clCreateContext(
    const cl_context_properties *props, cl_uint n, const cl_device_id *devs,
    void(CL_CALLBACK *notify)(const char *, const void *, size_t, void *),
    void *arg, cl_int *rc)
{
    if (take(&f_context)) {
        *rc = f_context.code;
        return NULL;
    }
    cl_context c = __real_clCreateContext(props, n, devs, notify, arg, rc);
    if (c != NULL)
        live_contexts++;
    return c;
}

cl_int __wrap_clReleaseContext(cl_context c)
{
    cl_int rc = __real_clReleaseContext(c);
    if (rc == CL_SUCCESS)
        live_contexts--;
    return rc;
}

cl_mem __wrap_clCreateBuffer(cl_context ctx, cl_mem_flags flags, size_t size,
                             void *host, cl_int *rc)
{
    if (take(&f_create)) {
        *rc = f_create.code;
        return NULL;
    }
    cl_mem m = __real_clCreateBuffer(ctx, flags, size, host, rc);
    if (m != NULL)
        live_buffers++;
    return m;
}

cl_int __wrap_clReleaseMemObject(cl_mem m)
{
    cl_int rc = __real_clReleaseMemObject(m);
    if (rc == CL_SUCCESS)
        live_buffers--;
    return rc;
}

cl_int __wrap_clEnqueueWriteBuffer(cl_command_queue q, cl_mem b,
                                   cl_bool blocking, size_t off, size_t size,
                                   const void *p, cl_uint nw,
                                   const cl_event *wl, cl_event *ev)
{
    if (take(&f_write))
        return f_write.code;
    cl_int rc =
        __real_clEnqueueWriteBuffer(q, b, blocking, off, size, p, nw, wl, ev);
    count_event(rc, ev);
    return rc;
}

cl_int __wrap_clEnqueueReadBuffer(cl_command_queue q, cl_mem b,
                                  cl_bool blocking, size_t off, size_t size,
                                  void *p, cl_uint nw, const cl_event *wl,
                                  cl_event *ev)
{
    if (take(&f_read))
        return f_read.code;
    cl_int rc =
        __real_clEnqueueReadBuffer(q, b, blocking, off, size, p, nw, wl, ev);
    count_event(rc, ev);
    return rc;
}

void *__wrap_clEnqueueMapBuffer(cl_command_queue q, cl_mem b, cl_bool blocking,
                                cl_map_flags flags, size_t off, size_t size,
                                cl_uint nw, const cl_event *wl, cl_event *ev,
                                cl_int *rc)
{
    if (take(&f_map)) {
        *rc = f_map.code;
        return NULL;
    }
    void *p = __real_clEnqueueMapBuffer(q, b, blocking, flags, off, size, nw,
                                        wl, ev, rc);
    count_event(*rc, ev);
    return p;
}

cl_int __wrap_clEnqueueUnmapMemObject(cl_command_queue q, cl_mem b, void *p,
                                      cl_uint nw, const cl_event *wl,
                                      cl_event *ev)
{
    if (take(&f_unmap))
        return f_unmap.code;
    cl_int rc = __real_clEnqueueUnmapMemObject(q, b, p, nw, wl, ev);
    count_event(rc, ev);
    return rc;
}

cl_int __wrap_clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k,
                                     cl_uint dim, const size_t *offset,
                                     const size_t *global, const size_t *local,
                                     cl_uint nw, const cl_event *wl,
                                     cl_event *ev)
{
    if (take(&f_kernel))
        return f_kernel.code;
    cl_int rc = __real_clEnqueueNDRangeKernel(q, k, dim, offset, global, local,
                                              nw, wl, ev);
    count_event(rc, ev);
    if (rc == CL_SUCCESS && ev != NULL)
        flight_add(*ev, nw, wl);
    /* f_event: the kernel's event will report a failed command. */
    if (rc == CL_SUCCESS && ev != NULL && take(&f_event))
        failing_event = *ev;
    /* f_hang: it will report running until f_hang is disarmed. */
    if (rc == CL_SUCCESS && ev != NULL && take(&f_hang)) {
        hung_event = *ev;
        hang_on = 1;
    }
    return rc;
}

cl_int __wrap_clFlush(cl_command_queue q)
{
    if (take(&f_flush))
        return f_flush.code;
    return __real_clFlush(q);
}

cl_int __wrap_clGetEventInfo(cl_event e, cl_event_info what, size_t size,
                             void *value, size_t *size_ret)
{
    if (e != NULL && e == failing_event &&
        what == CL_EVENT_COMMAND_EXECUTION_STATUS && size >= sizeof(cl_int)) {
        *(cl_int *)value = f_event.code;
        if (size_ret != NULL)
            *size_ret = sizeof(cl_int);
        return CL_SUCCESS;
    }
    if (e != NULL && e == hung_event && hang_on &&
        what == CL_EVENT_COMMAND_EXECUTION_STATUS && size >= sizeof(cl_int)) {
        *(cl_int *)value = CL_RUNNING;
        if (size_ret != NULL)
            *size_ret = sizeof(cl_int);
        return CL_SUCCESS;
    }
    return __real_clGetEventInfo(e, what, size, value, size_ret);
}

static cl_int real_status(cl_event e)
{
    cl_int st = CL_COMPLETE;
    if (__real_clGetEventInfo(e, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st,
                              &st, NULL) != CL_SUCCESS)
        return CL_COMPLETE;
    return st;
}

cl_int __real_clRetainEvent(cl_event);
cl_int __wrap_clRetainEvent(cl_event);
cl_mem __real_clCreateSubBuffer(cl_mem, cl_mem_flags, cl_buffer_create_type,
                                const void *, cl_int *);
cl_mem __wrap_clCreateSubBuffer(cl_mem, cl_mem_flags, cl_buffer_create_type,
                                const void *, cl_int *);
cl_int __real_clEnqueueCopyBuffer(cl_command_queue, cl_mem, cl_mem, size_t,
                                  size_t, size_t, cl_uint, const cl_event *,
                                  cl_event *);
cl_int __wrap_clEnqueueCopyBuffer(cl_command_queue, cl_mem, cl_mem, size_t,
                                  size_t, size_t, cl_uint, const cl_event *,
                                  cl_event *);

/* Device-resident buffers hold their kernel's event (retained). */
cl_int __wrap_clRetainEvent(cl_event e)
{
    cl_int rc = __real_clRetainEvent(e);
    if (rc == CL_SUCCESS)
        live_events++;
    return rc;
}

cl_mem __wrap_clCreateSubBuffer(cl_mem m, cl_mem_flags flags,
                                cl_buffer_create_type type, const void *info,
                                cl_int *rc)
{
    cl_mem b = __real_clCreateSubBuffer(m, flags, type, info, rc);
    if (b != NULL)
        live_buffers++;
    return b;
}

cl_int __wrap_clEnqueueCopyBuffer(cl_command_queue q, cl_mem from, cl_mem to,
                                  size_t off_from, size_t off_to, size_t size,
                                  cl_uint nw, const cl_event *wl, cl_event *ev)
{
    cl_int rc = __real_clEnqueueCopyBuffer(q, from, to, off_from, off_to, size,
                                           nw, wl, ev);
    count_event(rc, ev);
    if (rc == CL_SUCCESS)
        copy_ahead(nw, wl);
    return rc;
}

cl_int __wrap_clReleaseEvent(cl_event e)
{
    flight_drop(e);
    if (e == failing_event)
        failing_event = NULL;
    if (e == hung_event)
        hung_event = NULL;
    cl_int rc = __real_clReleaseEvent(e);
    if (rc == CL_SUCCESS)
        live_events--;
    return rc;
}

/* ---- helpers ----------------------------------------------------------- */

static int log_count;

static void quiet_log(int level, const char *msg, void *arg)
{
    (void)level;
    (void)msg;
    (void)arg;
    log_count++;
}

typedef struct fixture {
    para__device *dev;
    para__kernel *k; /* axpb_u32: out = in * 3 + 1 */
} fixture;

static uint32_t mul = 3, add = 1;

static int setup(void **state)
{
    disarm_all();
    failing_event = NULL;
    live_events = 0;
    live_buffers = 0;
    fixture *fx = calloc(1, sizeof *fx);
    char msg[MSG_LEN] = "";
    if (fx == NULL || para__cl_open("auto", &fx->dev, msg, sizeof msg) != 0) {
        fprintf(stderr, "setup: %s\n", msg);
        free(fx);
        return -1;
    }
    para__kernel_arg args[2] = {{&mul, 4, PARA_KARG_SCALAR},
                                {&add, 4, PARA_KARG_SCALAR}};
    if (para__cl_kernel_create(fx->dev, para_kernel_copy_src, NULL, "axpb_u32",
                               4, 4, args, 2, &fx->k, msg, sizeof msg) != 0) {
        fprintf(stderr, "setup: %s\n", msg);
        para__cl_close(fx->dev);
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    disarm_all();
    para__cl_kernel_release(fx->k);
    para__cl_close(fx->dev);
    free(fx);
    /* Nothing the back-end created is left behind. */
    if (live_events != 0 || live_buffers != 0) {
        fprintf(stderr, "leaked %ld events, %ld buffers\n", live_events,
                live_buffers);
        return -1;
    }
    return 0;
}

enum { N = 3000 };

typedef struct batch {
    uint32_t in[N], out[N];
    para__launch l;
} batch;

/* New items; the slot (b->l.impl) stays. */
static void batch_init(batch *b, uint32_t seed, size_t n)
{
    void *impl = b->l.impl;
    memset(&b->l, 0, sizeof b->l);
    b->l.impl = impl;
    for (size_t i = 0; i < n; i++) {
        b->in[i] = seed * 65599u + (uint32_t)i;
        b->out[i] = 0;
    }
    b->l.in = b->in;
    b->l.out = b->out;
    b->l.n = n;
}

static void batch_check(const batch *b)
{
    for (size_t i = 0; i < b->l.n; i++)
        if (b->out[i] != b->in[i] * mul + add)
            fail_msg("item %zu: %u != %u", i, b->out[i], b->in[i] * mul + add);
}

/* A normal launch on `b` (its slot may have failed before). */
static void launch_ok(fixture *fx, batch *b)
{
    char msg[MSG_LEN] = "";
    for (size_t i = 0; i < b->l.n; i++)
        b->out[i] = 0;
    int rc = para__cl_launch_begin(fx->k, &b->l, msg, sizeof msg);
    if (rc != 0)
        fail_msg("begin: %s: %s", para_err_name(rc), msg);
    rc = para__cl_launch_wait(fx->k, &b->l, msg, sizeof msg);
    if (rc != 0)
        fail_msg("wait: %s: %s", para_err_name(rc), msg);
    batch_check(b);
}

static void expect_in(const char *msg, const char *a, const char *b)
{
    if (strstr(msg, a) == NULL || strstr(msg, b) == NULL)
        fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", msg, a, b);
}

/* Inject `f` (fails the call after `after` successful ones), launch, and
 * expect `want` from begin with `call` and `name` in the message; then the
 * slot and the device must work again. */
static void begin_fails(fixture *fx, fault *f, int after, cl_int code, int want,
                        const char *call, const char *name)
{
    static batch b;
    batch_init(&b, 7, N);
    launch_ok(fx, &b); /* buffers exist: the next launch reuses them */
    char msg[MSG_LEN] = "";
    para__cl_stats before, st;
    para__cl_get_stats(fx->dev, &before);
    arm(f, after, code);
    int rc = para__cl_launch_begin(fx->k, &b.l, msg, sizeof msg);
    assert_int_equal(f->hits, 1);
    if (rc != want)
        fail_msg("begin: %s (want %s): %s", para_err_name(rc),
                 para_err_name(want), msg);
    expect_in(msg, call, name);
    print_message("  %s\n", msg);
    /* The failed launch is over: poll repeats its error, wait too. */
    assert_int_equal(para__cl_launch_poll(fx->k, &b.l, msg, sizeof msg), want);
    assert_int_equal(para__cl_launch_wait(fx->k, &b.l, msg, sizeof msg), want);
    disarm_all();
    launch_ok(fx, &b);
    para__cl_launch_fini(fx->k, &b.l);
    para__cl_get_stats(fx->dev, &st);
    assert_int_equal(st.launch_failures, before.launch_failures + 1);
}

/* ---- tests ------------------------------------------------------------- */

static void test_write_fails(void **state)
{
    begin_fails(*state, &f_write, 0, CL_OUT_OF_RESOURCES, PARA_EDEVICE,
                "clEnqueueWriteBuffer", "CL_OUT_OF_RESOURCES (-5)");
}

static void test_kernel_enqueue_fails(void **state)
{
    begin_fails(*state, &f_kernel, 0, CL_INVALID_WORK_GROUP_SIZE, PARA_EDEVICE,
                "clEnqueueNDRangeKernel", "CL_INVALID_WORK_GROUP_SIZE (-54)");
}

static void test_read_fails(void **state)
{
    begin_fails(*state, &f_read, 0, CL_INVALID_MEM_OBJECT, PARA_EDEVICE,
                "clEnqueueReadBuffer", "CL_INVALID_MEM_OBJECT (-38)");
}

static void test_flush_fails(void **state)
{
    begin_fails(*state, &f_flush, 0, CL_OUT_OF_RESOURCES, PARA_EDEVICE,
                "clFlush", "CL_OUT_OF_RESOURCES");
}

static void test_alloc_fails(void **state)
{
    fixture *fx = *state;
    char msg[MSG_LEN] = "";
    /* A fresh slot allocates its buffers: the first allocation fails. */
    static batch b;
    batch_init(&b, 3, N);
    arm(&f_create, 0, CL_MEM_OBJECT_ALLOCATION_FAILURE);
    assert_int_equal(para__cl_launch_begin(fx->k, &b.l, msg, sizeof msg),
                     PARA_ENOMEM);
    expect_in(msg, "clCreateBuffer", "CL_MEM_OBJECT_ALLOCATION_FAILURE");
    /* The second one (the output buffer), with a device error. */
    arm(&f_create, 1, CL_OUT_OF_RESOURCES);
    assert_int_equal(para__cl_launch_begin(fx->k, &b.l, msg, sizeof msg),
                     PARA_EDEVICE);
    expect_in(msg, "clCreateBuffer", "CL_OUT_OF_RESOURCES");
    disarm_all();
    launch_ok(fx, &b);
    para__cl_launch_fini(fx->k, &b.l);
}

static void test_grow_fails(void **state)
{
    fixture *fx = *state;
    char msg[MSG_LEN] = "";
    static batch b;
    batch_init(&b, 5, 10);
    launch_ok(fx, &b); /* 40-byte launch: 64-byte buffers */
    b.l.n = N;         /* 12000 bytes: both buffers must grow */
    arm(&f_create, 0, CL_OUT_OF_HOST_MEMORY);
    assert_int_equal(para__cl_launch_begin(fx->k, &b.l, msg, sizeof msg),
                     PARA_ENOMEM);
    expect_in(msg, "clCreateBuffer", "CL_OUT_OF_HOST_MEMORY");
    disarm_all();
    launch_ok(fx, &b);
    b.l.n = 10;
    launch_ok(fx, &b);
    para__cl_launch_fini(fx->k, &b.l);
}

/* A command whose event ends with a negative status: poll reports it. */
static void test_event_fails_poll(void **state)
{
    fixture *fx = *state;
    char msg[MSG_LEN] = "";
    static batch b;
    batch_init(&b, 11, N);
    arm(&f_event, 0, CL_OUT_OF_RESOURCES);
    assert_int_equal(para__cl_launch_begin(fx->k, &b.l, msg, sizeof msg), 0);
    int rc;
    while ((rc = para__cl_launch_poll(fx->k, &b.l, msg, sizeof msg)) == 0)
        usleep(10);
    assert_int_equal(rc, PARA_EDEVICE);
    expect_in(msg, "clEnqueueNDRangeKernel", "CL_OUT_OF_RESOURCES (-5)");
    print_message("  %s\n", msg);
    assert_int_equal(para__cl_launch_poll(fx->k, &b.l, msg, sizeof msg),
                     PARA_EDEVICE);
    launch_ok(fx, &b);
    para__cl_launch_fini(fx->k, &b.l);
}

/* The same through launch_wait. */
static void test_event_fails_wait(void **state)
{
    fixture *fx = *state;
    char msg[MSG_LEN] = "";
    static batch b;
    batch_init(&b, 12, N);
    arm(&f_event, 0, CL_INVALID_COMMAND_QUEUE);
    assert_int_equal(para__cl_launch_begin(fx->k, &b.l, msg, sizeof msg), 0);
    assert_int_equal(para__cl_launch_wait(fx->k, &b.l, msg, sizeof msg),
                     PARA_EDEVICE);
    expect_in(msg, "clEnqueueNDRangeKernel", "CL_INVALID_COMMAND_QUEUE (-36)");
    launch_ok(fx, &b);
    para__cl_launch_fini(fx->k, &b.l);
}

/* An unknown status value is named CL_UNKNOWN(n). */
static void test_event_unknown_status(void **state)
{
    fixture *fx = *state;
    char msg[MSG_LEN] = "";
    static batch b;
    batch_init(&b, 13, 100);
    arm(&f_event, 0, -9999);
    assert_int_equal(para__cl_launch_begin(fx->k, &b.l, msg, sizeof msg), 0);
    assert_int_equal(para__cl_launch_wait(fx->k, &b.l, msg, sizeof msg),
                     PARA_EDEVICE);
    expect_in(msg, "clEnqueueNDRangeKernel", "CL_UNKNOWN(-9999)");
    launch_ok(fx, &b);
    para__cl_launch_fini(fx->k, &b.l);
}

/* Failures in one slot leave the other slots' launches alone. */
static void test_failure_among_in_flight(void **state)
{
    fixture *fx = *state;
    char msg[MSG_LEN] = "";
    enum { SLOTS = 4 };
    static batch b[SLOTS];
    for (int round = 0; round < 3; round++) {
        for (int s = 0; s < SLOTS; s++)
            batch_init(&b[s], (uint32_t)(100 * round + s), N - (size_t)s);
        /* Slot 1 fails at its kernel enqueue (round 0), in its event
         * (round 1), at its read (round 2); the others run normally. */
        for (int s = 0; s < SLOTS; s++) {
            if (s == 1) {
                if (round == 0)
                    arm(&f_kernel, 0, CL_OUT_OF_RESOURCES);
                else if (round == 1)
                    arm(&f_event, 0, CL_OUT_OF_RESOURCES);
                else
                    arm(&f_read, 0, CL_OUT_OF_RESOURCES);
            }
            int rc = para__cl_launch_begin(fx->k, &b[s].l, msg, sizeof msg);
            if (s == 1 && round != 1)
                assert_int_equal(rc, PARA_EDEVICE);
            else
                assert_int_equal(rc, 0);
            disarm_all();
        }
        for (int s = SLOTS - 1; s >= 0; s--) {
            int rc = para__cl_launch_wait(fx->k, &b[s].l, msg, sizeof msg);
            if (s == 1) {
                /* Its failure, reported by begin or now. */
                assert_int_equal(rc, PARA_EDEVICE);
            } else {
                assert_int_equal(rc, 0);
                batch_check(&b[s]);
            }
        }
    }
    for (int s = 0; s < SLOTS; s++) {
        launch_ok(fx, &b[s]);
        para__cl_launch_fini(fx->k, &b[s].l);
    }
}

/* MAP staging: the blocking input map, the input unmap, the output map. */
static void test_map_staging_fails(void **state)
{
    fixture *fx = *state;
    assert_int_equal(para__cl_tune(fx->dev, PARA__CL_STAGING_MAP, 4), 0);
    begin_fails(fx, &f_map, 0, CL_MAP_FAILURE, PARA_EDEVICE,
                "clEnqueueMapBuffer", "CL_MAP_FAILURE (-12)");
    para__cl_stats st;
    begin_fails(fx, &f_unmap, 0, CL_OUT_OF_RESOURCES, PARA_EDEVICE,
                "clEnqueueUnmapMemObject", "CL_OUT_OF_RESOURCES");
    para__cl_get_stats(fx->dev, &st);
    assert_int_equal(st.launch_failures, 2);
    /* The second map is the output's. */
    static batch b;
    batch_init(&b, 21, N);
    launch_ok(fx, &b);
    char msg[MSG_LEN] = "";
    arm(&f_map, 1, CL_OUT_OF_RESOURCES);
    assert_int_equal(para__cl_launch_begin(fx->k, &b.l, msg, sizeof msg),
                     PARA_EDEVICE);
    expect_in(msg, "clEnqueueMapBuffer", "CL_OUT_OF_RESOURCES");
    disarm_all();
    launch_ok(fx, &b);
    /* A failing event of the output map. */
    arm(&f_event, 0, CL_OUT_OF_RESOURCES);
    assert_int_equal(para__cl_launch_begin(fx->k, &b.l, msg, sizeof msg), 0);
    assert_int_equal(para__cl_launch_wait(fx->k, &b.l, msg, sizeof msg),
                     PARA_EDEVICE);
    launch_ok(fx, &b);
    para__cl_launch_fini(fx->k, &b.l);
}

/* clSetKernelArg of a launch fails: the launch fails, the slot works on. */
static void test_setarg_fails(void **state)
{
    begin_fails(*state, &f_setarg, 1, CL_INVALID_MEM_OBJECT, PARA_EDEVICE,
                "clSetKernelArg", "CL_INVALID_MEM_OBJECT (-38)");
}

/* The blocking wait fails: the launch fails with the wait's error. */
static void test_wait_fails(void **state)
{
    fixture *fx = *state;
    char msg[MSG_LEN] = "";
    static batch b;
    batch_init(&b, 17, N);
    assert_int_equal(para__cl_launch_begin(fx->k, &b.l, msg, sizeof msg), 0);
    arm(&f_wait, 0, CL_OUT_OF_RESOURCES);
    assert_int_equal(para__cl_launch_wait(fx->k, &b.l, msg, sizeof msg),
                     PARA_EDEVICE);
    assert_int_equal(f_wait.hits, 1);
    expect_in(msg, "clWaitForEvents", "CL_OUT_OF_RESOURCES");
    disarm_all();
    launch_ok(fx, &b);
    para__cl_launch_fini(fx->k, &b.l);
}

/* clFinish fails while a failed launch drains its queue: the launch still
 * ends (each of its commands is waited for), nothing leaks. */
static void test_finish_fails_while_draining(void **state)
{
    fixture *fx = *state;
    char msg[MSG_LEN] = "";
    static batch b;
    batch_init(&b, 19, N);
    launch_ok(fx, &b);
    arm(&f_read, 0, CL_OUT_OF_RESOURCES);
    arm(&f_finish, 0, CL_OUT_OF_RESOURCES);
    assert_int_equal(para__cl_launch_begin(fx->k, &b.l, msg, sizeof msg),
                     PARA_EDEVICE);
    assert_int_equal(f_finish.hits, 1);
    expect_in(msg, "clEnqueueReadBuffer", "CL_OUT_OF_RESOURCES");
    disarm_all();
    launch_ok(fx, &b);
    para__cl_launch_fini(fx->k, &b.l);
}

/* Kernel creation fails: the error names the call, nothing is left. */
static void test_create_kernel_fails(void **state)
{
    fixture *fx = *state;
    char msg[MSG_LEN] = "";
    para__kernel_arg args[2] = {{&mul, 4, PARA_KARG_SCALAR},
                                {&add, 4, PARA_KARG_SCALAR}};
    para__kernel *k = NULL;
    arm(&f_mkkernel, 0, CL_OUT_OF_HOST_MEMORY);
    assert_int_equal(para__cl_kernel_create(fx->dev, para_kernel_copy_src, NULL,
                                            "axpb_u32", 4, 4, args, 2, &k, msg,
                                            sizeof msg),
                     PARA_ENOMEM);
    expect_in(msg, "clCreateKernel", "CL_OUT_OF_HOST_MEMORY");
    assert_null(k);
    arm(&f_mkkernel, 0, CL_OUT_OF_RESOURCES);
    assert_int_equal(para__cl_kernel_create(fx->dev, para_kernel_copy_src, NULL,
                                            "axpb_u32", 4, 4, args, 2, &k, msg,
                                            sizeof msg),
                     PARA_EDEVICE);
    expect_in(msg, "clCreateKernel", "CL_OUT_OF_RESOURCES");
    disarm_all();
    assert_int_equal(para__cl_kernel_create(fx->dev, para_kernel_copy_src, NULL,
                                            "axpb_u32", 4, 4, args, 2, &k, msg,
                                            sizeof msg),
                     0);
    para__cl_kernel_release(k);
}

/* Opening a device fails at its context or at one of its queues: the
 * error names the call, and no context or queue is left behind. */
static void test_open_fails(void **state)
{
    (void)state;
    struct {
        fault *f;
        int after;
        const char *call;
    } cases[] = {{&f_context, 0, "clCreateContext"},
                 {&f_queue, 0, "clCreateCommandQueue"},
                 {&f_queue, 2, "clCreateCommandQueue"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        live_queues = live_contexts = 0;
        char msg[MSG_LEN] = "";
        para__device *dev = NULL;
        arm(cases[i].f, cases[i].after, CL_OUT_OF_RESOURCES);
        assert_int_equal(para__cl_open("auto", &dev, msg, sizeof msg),
                         PARA_EDEVICE);
        assert_int_equal(cases[i].f->hits, 1);
        expect_in(msg, cases[i].call, "CL_OUT_OF_RESOURCES");
        assert_null(dev);
        assert_int_equal(live_queues, 0);
        assert_int_equal(live_contexts, 0);
        disarm_all();
    }
    para__device *dev = NULL;
    char msg[MSG_LEN] = "";
    assert_int_equal(para__cl_open("auto", &dev, msg, sizeof msg), 0);
    para__cl_close(dev);
    assert_int_equal(live_queues, 0);
    assert_int_equal(live_contexts, 0);
}

/* ---- kernel nodes in a graph -------------------------------------------- */

/* array of uint32 -> kernel node axpb_u32 (device only) -> serial sink that
 * checks and counts. */
enum { GRAPH_ITEMS = 60000 };
static uint32_t graph_in[GRAPH_ITEMS];

typedef struct graph_sink {
    size_t seen;
    size_t wrong;
} graph_sink;

static int graph_sink_fn(void *ctx, const void *in, size_t n)
{
    graph_sink *gs = ctx;
    const uint32_t *y = in;
    for (size_t i = 0; i < n; i++)
        gs->wrong += y[i] % 3 != 1; /* every y is 3 x + 1 */
    gs->seen += n;
    return 0;
}

static int run_graph(para_runtime_t *rt, graph_sink *gs)
{
    para_kernel_arg_t args[2] = {{&mul, 4, PARA_KARG_SCALAR},
                                 {&add, 4, PARA_KARG_SCALAR}};
    para_kernel_desc_t kd = {.source = para_kernel_copy_src,
                             .entry = "axpb_u32",
                             .args = args,
                             .n_args = 2};
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *k, *sink;
    assert_int_equal(
        para_graph_add_array(g, "in", graph_in, GRAPH_ITEMS, 4, &src), 0);
    assert_int_equal(
        para_graph_add_kernel(g, "axpb-node", 4, 4, &kd, NULL, NULL, &k), 0);
    assert_int_equal(para_graph_add_sink_batch(g, "check", 4, graph_sink_fn, gs,
                                               PARA_NODE_SERIAL, &sink),
                     0);
    assert_int_equal(para_graph_connect(g, src, k), 0);
    assert_int_equal(para_graph_connect(g, k, sink), 0);
    memset(gs, 0, sizeof *gs);
    int rc = para_run(rt, g);
    para_graph_destroy(g);
    return rc;
}

/* The sink of run_two(): counts and checks. */
typedef struct two_sink {
    size_t seen, wrong;
    int nodes;
} two_sink;
static para_runtime_t *fault_rt(unsigned timeout_ms, size_t batch_items);
static int run_two(para_runtime_t *rt, bool a_cpu, bool with_b, bool b_cpu,
                   two_sink *ts);
static void reset_counts(void);
static void destroy_expect_clean(para_runtime_t *rt);

/* Fail `f` after `after` good calls in the middle of a graph's run: the run
 * ends with `want` naming the node and the OpenCL call, the sink saw only
 * correct items, nothing leaks, and the runtime runs the graph fine next. */
static void graph_fault(fault *f, int after, cl_int code, int want,
                        const char *call)
{
    for (uint32_t i = 0; i < GRAPH_ITEMS; i++)
        graph_in[i] = i;
    disarm_all();
    failing_event = NULL;
    live_events = 0;
    live_buffers = 0;
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = 2;
    a.device = "auto";
    a.pin = "none";
    a.batch_items = 500; /* 120 batches: launches before and after */
    para_runtime_t *rt;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    graph_sink gs;
    /* Warm: slots have buffers. The kernel object is created in this run
     * and reused by the later ones, so a fault in clCreateKernel is tried
     * on a cold runtime. */
    if (f != &f_mkkernel) {
        assert_int_equal(run_graph(rt, &gs), 0);
        assert_int_equal(gs.seen, GRAPH_ITEMS);
    }

    arm(f, after, code);
    int rc = run_graph(rt, &gs);
    const char *msg = para_runtime_errmsg(rt);
    print_message("  %s -> %s: %s (sink saw %zu)\n", call, para_err_name(rc),
                  msg, gs.seen);
    assert_int_equal(f->hits, 1);
    assert_int_equal(rc, want);
    expect_in(msg, "'axpb-node'", call);
    assert_int_equal(gs.wrong, 0);
    assert_true(gs.seen < GRAPH_ITEMS);

    /* The failed run abandoned its launches still in flight (their events
     * are kept until the device is done with them, so that a hung device
     * cannot hold para_run() back): under load one may still run when
     * para_run() returns, with its events alive. The next run reaps them
     * before it starts, so none is left after it. */
    disarm_all();
    failing_event = NULL;
    assert_int_equal(run_graph(rt, &gs), 0);
    assert_int_equal(gs.seen, GRAPH_ITEMS);
    assert_int_equal(gs.wrong, 0);
    assert_int_equal(live_events, 0);
    destroy_expect_clean(rt);
}

/* axpb_u32 on the CPU (the node's CPU function for the fallback tests),
 * made slow (about 1 us an item) so that the MIXED node prefers the
 * device and the injected fault is reached. */
static int axpb_cpu(void *ctx, const void *in, void *out, size_t n)
{
    (void)ctx;
    const uint32_t *x = in;
    uint32_t *y = out;
    for (size_t i = 0; i < n; i++) {
        volatile uint32_t v = x[i];
        for (int k = 0; k < 300; k++)
            v = v * 1664525u + 1013904223u;
        y[i] = x[i] * mul + add;
    }
    return 0;
}

/* The device is lost for good mid-run, from its first kernel enqueue on: a
 * MIXED node finishes the run on the CPU (fallback on), or the run fails
 * with PARA_EDEVICE (fallback off). The first enqueue is always reached:
 * after the node's first CPU batch, the next batch is the device's probe
 * (device_node.c); a later fault would depend on the node choosing the
 * device over the CPU, which timing decides. */
static void lost_device(int fallback)
{
    for (uint32_t i = 0; i < GRAPH_ITEMS; i++)
        graph_in[i] = i;
    disarm_all();
    live_events = 0;
    live_buffers = 0;
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = 2;
    a.device = "auto";
    a.pin = "none";
    a.batch_items = 500;
    a.device_fallback = fallback;
    para_runtime_t *rt;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    para_kernel_arg_t args[2] = {{&mul, 4, PARA_KARG_SCALAR},
                                 {&add, 4, PARA_KARG_SCALAR}};
    para_kernel_desc_t kd = {.source = para_kernel_copy_src,
                             .entry = "axpb_u32",
                             .args = args,
                             .n_args = 2};
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *k, *sink;
    graph_sink gs;
    memset(&gs, 0, sizeof gs);
    assert_int_equal(
        para_graph_add_array(g, "in", graph_in, GRAPH_ITEMS, 4, &src), 0);
    assert_int_equal(
        para_graph_add_kernel(g, "axpb-mixed", 4, 4, &kd, axpb_cpu, NULL, &k),
        0);
    assert_int_equal(para_graph_add_sink_batch(g, "check", 4, graph_sink_fn,
                                               &gs, PARA_NODE_SERIAL, &sink),
                     0);
    assert_int_equal(para_graph_connect(g, src, k), 0);
    assert_int_equal(para_graph_connect(g, k, sink), 0);
    arm(&f_kernel, 0, CL_DEVICE_NOT_AVAILABLE);
    f_kernel.sticky = 1;
    int rc = para_run(rt, g);
    print_message("  lost device, fallback %s: %s %s (sink saw %zu, "
                  "%d enqueues failed)\n",
                  fallback ? "on" : "off", para_err_name(rc),
                  para_runtime_errmsg(rt), gs.seen, f_kernel.hits);
    assert_true(f_kernel.hits >= 1); /* the device was in use, and lost */
    assert_int_equal(gs.wrong, 0);
    if (fallback) {
        assert_int_equal(rc, 0);
        assert_int_equal(gs.seen, GRAPH_ITEMS);
        para_node_stats_t ns;
        assert_int_equal(para_node_stats(k, &ns), 0);
        assert_int_equal(ns.items_in, GRAPH_ITEMS);
        assert_true(ns.device_items < GRAPH_ITEMS);
    } else {
        assert_int_equal(rc, PARA_EDEVICE);
        expect_in(para_runtime_errmsg(rt), "'axpb-mixed'",
                  "CL_DEVICE_NOT_AVAILABLE");
    }
    disarm_all();
    para_graph_destroy(g);
    destroy_expect_clean(rt);
}

static void test_graph_lost_device_falls_back(void **state)
{
    (void)state;
    lost_device(1);
}

static void test_graph_lost_device_no_fallback(void **state)
{
    (void)state;
    lost_device(0);
}

static void test_graph_kernel_enqueue_fails(void **state)
{
    (void)state;
    graph_fault(&f_kernel, 20, CL_OUT_OF_RESOURCES, PARA_EDEVICE,
                "clEnqueueNDRangeKernel");
}

/* An out-of-memory answer to the input copy is transient: the batch is
 * launched again and the run completes. */
static void test_graph_write_oom_retried(void **state)
{
    (void)state;
    reset_counts();
    para_runtime_t *rt = fault_rt(10000, 500);
    two_sink ts;
    assert_int_equal(run_two(rt, false, false, false, &ts), 0); /* warm */
    arm(&f_write, 20, CL_OUT_OF_HOST_MEMORY);
    assert_int_equal(run_two(rt, false, false, false, &ts), 0);
    assert_int_equal(f_write.hits, 1);
    assert_int_equal(ts.seen, GRAPH_ITEMS);
    assert_int_equal(ts.wrong, 0);
    disarm_all();
    destroy_expect_clean(rt);
}

static void test_graph_read_fails(void **state)
{
    (void)state;
    graph_fault(&f_read, 20, CL_INVALID_MEM_OBJECT, PARA_EDEVICE,
                "clEnqueueReadBuffer");
}

static void test_graph_completion_fails(void **state)
{
    (void)state;
    graph_fault(&f_event, 20, CL_OUT_OF_RESOURCES, PARA_EDEVICE,
                "CL_OUT_OF_RESOURCES");
}

static void test_graph_setarg_fails(void **state)
{
    (void)state;
    graph_fault(&f_setarg, 20, CL_OUT_OF_RESOURCES, PARA_EDEVICE,
                "clSetKernelArg");
}

static void test_graph_create_kernel_fails(void **state)
{
    (void)state;
    graph_fault(&f_mkkernel, 0, CL_OUT_OF_RESOURCES, PARA_EDEVICE,
                "clCreateKernel");
}

/* A runtime creates its kernel objects once: runs after the first never
 * call clCreateKernel (armed to fail at once, it is never reached). */
static void test_graph_kernel_created_once(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < GRAPH_ITEMS; i++)
        graph_in[i] = i;
    disarm_all();
    live_events = 0;
    live_buffers = 0;
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = 2;
    a.device = "auto";
    a.pin = "none";
    a.batch_items = 500;
    para_runtime_t *rt;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    graph_sink gs;
    assert_int_equal(run_graph(rt, &gs), 0);
    arm(&f_mkkernel, 0, CL_OUT_OF_RESOURCES);
    for (int r = 0; r < 3; r++) {
        assert_int_equal(run_graph(rt, &gs), 0);
        assert_int_equal(gs.seen, GRAPH_ITEMS);
        assert_int_equal(gs.wrong, 0);
    }
    assert_int_equal(f_mkkernel.hits, 0);
    disarm_all();
    destroy_expect_clean(rt);
}

/* ---- hung launches, lost devices and OOM with several kernel nodes ------- */

/* in -> A [-> B] -> check, A and B both axpb_u32 (y = 3x + 1), each with
 * or without the CPU function (slow enough that MIXED prefers the
 * device). The sink counts and checks: every y is 3x+1 (one node) or
 * 9x+4 (two). */

static int two_sink_fn(void *ctx, const void *in, size_t n)
{
    two_sink *ts = ctx;
    const uint32_t *y = in;
    for (size_t i = 0; i < n; i++)
        ts->wrong += ts->nodes == 1 ? y[i] % 3 != 1 : y[i] % 9 != 4;
    ts->seen += n;
    return 0;
}

static para_runtime_t *fault_rt(unsigned timeout_ms, size_t batch_items)
{
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = 2;
    a.device = "auto";
    a.pin = "none";
    a.batch_items = batch_items;
    a.device_timeout_ms = timeout_ms;
    para_runtime_t *rt;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    return rt;
}

static int run_two(para_runtime_t *rt, bool a_cpu, bool with_b, bool b_cpu,
                   two_sink *ts)
{
    for (uint32_t i = 0; i < GRAPH_ITEMS; i++)
        graph_in[i] = i;
    para_kernel_arg_t args[2] = {{&mul, 4, PARA_KARG_SCALAR},
                                 {&add, 4, PARA_KARG_SCALAR}};
    para_kernel_desc_t kd = {.source = para_kernel_copy_src,
                             .entry = "axpb_u32",
                             .args = args,
                             .n_args = 2};
    para_graph_t *g;
    assert_int_equal(para_graph_create(&g), 0);
    para_node_t *src, *a, *b = NULL, *sink;
    memset(ts, 0, sizeof *ts);
    ts->nodes = with_b ? 2 : 1;
    assert_int_equal(
        para_graph_add_array(g, "in", graph_in, GRAPH_ITEMS, 4, &src), 0);
    assert_int_equal(para_graph_add_kernel(g, "A", 4, 4, &kd,
                                           a_cpu ? axpb_cpu : NULL, NULL, &a),
                     0);
    if (with_b)
        assert_int_equal(para_graph_add_kernel(g, "B", 4, 4, &kd,
                                               b_cpu ? axpb_cpu : NULL, NULL,
                                               &b),
                         0);
    assert_int_equal(para_graph_add_sink_batch(g, "check", 4, two_sink_fn, ts,
                                               PARA_NODE_SERIAL, &sink),
                     0);
    assert_int_equal(para_graph_connect(g, src, a), 0);
    if (b != NULL) {
        assert_int_equal(para_graph_connect(g, a, b), 0);
        assert_int_equal(para_graph_connect(g, b, sink), 0);
    } else {
        assert_int_equal(para_graph_connect(g, a, sink), 0);
    }
    int rc = para_run(rt, g);
    para_graph_destroy(g);
    return rc;
}

static double secs_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) +
           (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void reset_counts(void)
{
    disarm_all();
    failing_event = NULL;
    hung_event = NULL;
    live_events = 0;
    live_buffers = 0;
}

/* Destroy @p rt and check that nothing it made is left: no event and no
 * buffer by the wrappers' counts, none by para's own (para__cl_live). */
static void destroy_expect_clean(para_runtime_t *rt)
{
    assert_int_equal(para_runtime_destroy(rt), 0);
    assert_int_equal(live_events, 0);
    assert_int_equal(live_buffers, 0);
    long mems = -1, events = -1;
    para__cl_live(&mems, &events);
    assert_int_equal(mems, 0);
    assert_int_equal(events, 0);
}

/* The device is lost for good mid-run under a graph with a MIXED node A
 * and a kernel-only node B: A finishes on the CPU, B cannot, and the run
 * ends with PARA_EDEVICE naming B; no abort, nothing leaked. */
static void test_graph_lost_device_mixed_and_kernel_only(void **state)
{
    (void)state;
    for (int after = 0; after <= 8; after += 4) {
        reset_counts();
        para_runtime_t *rt = fault_rt(10000, 500);
        two_sink ts;
        arm(&f_kernel, after, CL_DEVICE_NOT_AVAILABLE);
        f_kernel.sticky = 1;
        int rc = run_two(rt, true, true, false, &ts);
        print_message("  lost after %d enqueues: %s: %s (sink saw %zu)\n",
                      after, para_err_name(rc), para_runtime_errmsg(rt),
                      ts.seen);
        assert_true(f_kernel.hits >= 1);
        assert_int_equal(rc, PARA_EDEVICE);
        expect_in(para_runtime_errmsg(rt), "kernel node 'B'",
                  "CL_DEVICE_NOT_AVAILABLE");
        assert_int_equal(ts.wrong, 0);
        disarm_all();
        destroy_expect_clean(rt);
    }
}

/* A kernel fails in the middle of a device-resident chain (A and B
 * kernel-only on one device: A's outputs stay on the device for B): at its
 * enqueue, or while it runs (its event reports the failure). The run ends
 * with PARA_EDEVICE, the sink saw only right items, and once the runtime
 * is destroyed no buffer or event is left, neither by the wrappers' count
 * nor by the back-end's own (para__cl_live()). The first run checks that
 * the chain was resident at all. */
static void test_graph_resident_chain_fails(void **state)
{
    (void)state;
    fault *faults[] = {&f_kernel, &f_event};
    for (size_t f = 0; f < 2; f++) {
        for (int after = 1; after <= 9; after += 4) {
            reset_counts();
            para_runtime_t *rt = fault_rt(10000, 500);
            two_sink ts;
            assert_int_equal(run_two(rt, false, true, false, &ts), 0);
            assert_int_equal(ts.seen, GRAPH_ITEMS);
            assert_int_equal(ts.wrong, 0);
            para_device_stats_t ds;
            assert_int_equal(para_device_stats(rt, 0, &ds), 0);
            assert_true(ds.handovers > 0);
            /* Only the source's items go in and B's come out. */
            assert_int_equal(ds.bytes_in, GRAPH_ITEMS * 4);
            assert_int_equal(ds.bytes_out, GRAPH_ITEMS * 4);

            arm(faults[f], after, CL_INVALID_COMMAND_QUEUE);
            int rc = run_two(rt, false, true, false, &ts);
            print_message("  %s fails after %d: %s: %s (sink saw %zu)\n",
                          f == 0 ? "enqueue" : "execution", after,
                          para_err_name(rc), para_runtime_errmsg(rt), ts.seen);
            assert_int_equal(faults[f]->hits, 1);
            assert_int_equal(rc, PARA_EDEVICE);
            assert_int_equal(ts.wrong, 0);
            assert_true(ts.seen < GRAPH_ITEMS);
            disarm_all();
            destroy_expect_clean(rt);
        }
    }
}

/* Launches in flight: in a device-resident chain (A -> B, kernel only) of
 * 500-item batches, the host thread enqueues a node's next launch (its
 * input write and kernel) while the one before is still running, so that
 * the device does not idle between launches: the kernel enqueue wrapper sees
 * at least two kernels in flight at once. It also counts B's kernels
 * enqueued while the A kernel they wait for was still running (printed,
 * not required: launches this short are mostly over before B's batches
 * are back from a worker; test_graph_chain_enqueued_ahead requires it).
 * The results are right and, once the runtime is destroyed, every cl_mem
 * and event is released. */
static void test_graph_launches_in_flight(void **state)
{
    (void)state;
    reset_counts();
    para_runtime_t *rt = fault_rt(10000, 500);
    two_sink ts;
    int most = 0, ahead = 0;
    for (int r = 0; r < 3; r++) {
        flight_reset(true);
        assert_int_equal(run_two(rt, false, true, false, &ts), 0);
        assert_int_equal(ts.seen, GRAPH_ITEMS);
        assert_int_equal(ts.wrong, 0);
        pthread_mutex_lock(&flight_lock);
        most = max_flight > most ? max_flight : most;
        ahead += chained_ahead;
        pthread_mutex_unlock(&flight_lock);
    }
    flight_reset(false);
    para_device_stats_t ds;
    assert_int_equal(para_device_stats(rt, 0, &ds), 0);
    print_message("  %llu launches per run, at most %d kernels in flight, %d "
                  "enqueued ahead of their producer in 3 runs\n",
                  (unsigned long long)ds.launches, most, ahead);
    assert_true(ds.handovers > 0);
    assert_true(most >= 2);
    destroy_expect_clean(rt);
}

/* A slow kernel: y = 3x + 1 after `rounds` steps of a generator the
 * compiler cannot drop (its result decides the output for no input the
 * tests give). */
static const char slow_src[] =
    "__kernel void slow_u32(__global const uint *in, __global uint *out,\n"
    "                       uint n, uint rounds)\n"
    "{\n"
    "    size_t i = get_global_id(0);\n"
    "    if (i >= n) return;\n"
    "    uint x = in[i], v = x;\n"
    "    for (uint k = 0; k < rounds; k++) v = v * 1664525u + 1013904223u;\n"
    "    out[i] = (v == 7u && x == 0xffffffffu) ? 0u : 3u * x + 1u;\n"
    "}\n";

/* Through A and B every item is 3 (3x + 1) + 1 = 9x + 4: 4 modulo 9, and
 * the sum is known. */
typedef struct ahead_sink {
    uint64_t seen, wrong, sum;
} ahead_sink;

static int ahead_sink_fn(void *ctx, const void *in, size_t n)
{
    ahead_sink *a = ctx;
    const uint32_t *y = in;
    for (size_t i = 0; i < n; i++) {
        a->wrong += y[i] % 9u != 4u;
        a->sum += y[i];
    }
    a->seen += n;
    return 0;
}

/* Launches ahead of their producer: in a device-resident chain A -> B of
 * kernel-only nodes (A slow: a few ms a launch, B fast), A's outputs go to
 * B when A's launch begins, so B's launches are enqueued while the A
 * launch they read is still running, waiting for its kernel on the device:
 * the kernel enqueue wrapper sees B kernels whose wait list holds an
 * incomplete A kernel. The results are right and nothing leaks. With
 * @p chain off (PARA_CHAIN=0) the same runs; the count is returned. */
static int chain_ahead(bool chain)
{
    enum { AHEAD_N = 20000 };
    reset_counts();
    static uint32_t xs[AHEAD_N];
    for (uint32_t i = 0; i < AHEAD_N; i++)
        xs[i] = i;
    if (!chain)
        setenv("PARA_CHAIN", "0", 1);
    para_runtime_attr_t at;
    assert_int_equal(para_runtime_attr_init(&at), 0);
    at.workers = 2;
    at.device = "auto";
    at.pin = "none";
    para_runtime_t *rt;
    assert_int_equal(para_runtime_create(&rt, &at), 0);
    uint32_t rounds = 2000;
    para_kernel_arg_t slow_args[1] = {{&rounds, 4, PARA_KARG_SCALAR}};
    para_kernel_desc_t slow = {.source = slow_src,
                               .entry = "slow_u32",
                               .args = slow_args,
                               .n_args = 1};
    para_kernel_arg_t args[2] = {{&mul, 4, PARA_KARG_SCALAR},
                                 {&add, 4, PARA_KARG_SCALAR}};
    para_kernel_desc_t fast = {.source = para_kernel_copy_src,
                               .entry = "axpb_u32",
                               .args = args,
                               .n_args = 2};
    int ahead = 0;
    for (int r = 0; r < 4; r++) {
        para_graph_t *g;
        assert_int_equal(para_graph_create(&g), 0);
        para_node_t *src, *a, *b, *sink;
        ahead_sink as = {0, 0, 0};
        assert_int_equal(para_graph_add_array(g, "in", xs, AHEAD_N, 4, &src),
                         0);
        assert_int_equal(
            para_graph_add_kernel(g, "A", 4, 4, &slow, NULL, NULL, &a), 0);
        assert_int_equal(
            para_graph_add_kernel(g, "B", 4, 4, &fast, NULL, NULL, &b), 0);
        assert_int_equal(para_graph_add_sink_batch(g, "check", 4, ahead_sink_fn,
                                                   &as, PARA_NODE_SERIAL,
                                                   &sink),
                         0);
        assert_int_equal(para_graph_connect(g, src, a), 0);
        assert_int_equal(para_graph_connect(g, a, b), 0);
        assert_int_equal(para_graph_connect(g, b, sink), 0);
        flight_reset(true);
        assert_int_equal(para_run(rt, g), 0);
        pthread_mutex_lock(&flight_lock);
        ahead += chained_ahead;
        pthread_mutex_unlock(&flight_lock);
        flight_reset(false);
        para_node_stats_t bs;
        assert_int_equal(para_node_stats(b, &bs), 0);
        print_message("  run %d: B %llu launches, %d enqueued ahead so far\n",
                      r, (unsigned long long)bs.device_launches, ahead);
        assert_true(bs.device_handovers > 0);
        para_graph_destroy(g);
        assert_int_equal(as.seen, AHEAD_N);
        assert_int_equal(as.wrong, 0);
        assert_int_equal(as.sum, 9 * ((uint64_t)AHEAD_N * (AHEAD_N - 1) / 2) +
                                     4 * AHEAD_N);
    }
    unsetenv("PARA_CHAIN");
    destroy_expect_clean(rt);
    return ahead;
}

/* The above; with PARA_CHAIN=0 the outputs go on when A's launch
 * completes: no B launch waits for an A kernel still running. */
static void test_graph_chain_enqueued_ahead(void **state)
{
    (void)state;
    assert_true(chain_ahead(true) > 0);
    assert_int_equal(chain_ahead(false), 0);
}

/* A launch that never completes (its kernel's event reports running
 * forever): the watchdog loses the device; a kernel-only node fails the
 * run with PARA_EDEVICE, a MIXED node finishes on the CPU. Once the launch
 * completes, the next run uses the device again, and nothing leaks. */
static void hang_watchdog(bool mixed)
{
    reset_counts();
    log_count = 0;
    para_runtime_t *rt = fault_rt(300, 500);
    two_sink ts;
    /* A MIXED node's device probe (its first enqueue) is always reached;
     * later ones depend on the node choosing the device. */
    arm(&f_hang, mixed ? 0 : 3, 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = run_two(rt, mixed, false, false, &ts);
    double sec = secs_since(&t0);
    print_message("  hung launch, %s node: %s %s (%.2f s, sink saw %zu)\n",
                  mixed ? "MIXED" : "kernel-only", para_err_name(rc),
                  para_runtime_errmsg(rt), sec, ts.seen);
    assert_int_equal(f_hang.hits, 1);
    assert_true(sec < 10);
    assert_int_equal(ts.wrong, 0);
    if (mixed) {
        assert_int_equal(rc, 0);
        assert_int_equal(ts.seen, GRAPH_ITEMS);
    } else {
        assert_int_equal(rc, PARA_EDEVICE);
        expect_in(para_runtime_errmsg(rt), "'A'", "did not finish");
    }
    disarm_all(); /* the hung launch completes */
    assert_int_equal(run_two(rt, mixed, false, false, &ts), 0);
    assert_int_equal(ts.seen, GRAPH_ITEMS);
    assert_int_equal(ts.wrong, 0);
    destroy_expect_clean(rt);
}

/* The same in a device-resident chain A -> B of kernel-only nodes, where
 * B's launches are enqueued behind A's running ones (their outputs handed
 * over when A's launch began): a hung launch loses the device, the run
 * ends with PARA_EDEVICE within the watchdog's time, and nothing wrong
 * reaches the sink or leaks; the next run is fine. */
static void test_graph_hang_watchdog_chain(void **state)
{
    (void)state;
    for (int after = 3; after <= 9; after += 6) {
        reset_counts();
        para_runtime_t *rt = fault_rt(300, 500);
        two_sink ts;
        assert_int_equal(run_two(rt, false, true, false, &ts), 0);
        arm(&f_hang, after, 0);
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = run_two(rt, false, true, false, &ts);
        double sec = secs_since(&t0);
        print_message("  hung launch %d in a chain: %s %s (%.2f s, sink saw "
                      "%zu)\n",
                      after, para_err_name(rc), para_runtime_errmsg(rt), sec,
                      ts.seen);
        assert_int_equal(f_hang.hits, 1);
        assert_int_equal(rc, PARA_EDEVICE);
        expect_in(para_runtime_errmsg(rt), "did not finish", "watchdog");
        assert_true(sec < 10);
        assert_int_equal(ts.wrong, 0);
        disarm_all();
        assert_int_equal(run_two(rt, false, true, false, &ts), 0);
        assert_int_equal(ts.seen, GRAPH_ITEMS);
        assert_int_equal(ts.wrong, 0);
        destroy_expect_clean(rt);
    }
}

static void test_graph_hang_watchdog_kernel_only(void **state)
{
    (void)state;
    hang_watchdog(false);
}

static void test_graph_hang_watchdog_mixed(void **state)
{
    (void)state;
    hang_watchdog(true);
}

typedef struct canceller {
    para_runtime_t *rt;
    struct timespec at;
} canceller;

static void *cancel_main(void *arg)
{
    canceller *c = arg;
    struct timespec d = {0, 300000000};
    nanosleep(&d, NULL);
    clock_gettime(CLOCK_MONOTONIC, &c->at);
    assert_int_equal(para_run_cancel(c->rt), 0);
    return NULL;
}

/* A launch that never completes and no watchdog: para_run_cancel() ends
 * the run within 100 ms; the device is fine for the next run once the
 * launch completes; nothing leaks. The run ends 3-10 ms after the cancel
 * on a quiet machine; a loaded one can deschedule the threads involved for
 * longer, so an attempt over 100 ms is repeated (up to three in all) and
 * the best one is judged. Every other check holds on every attempt. */
static void test_graph_hang_cancel(void **state)
{
    (void)state;
    double best = 1e9;
    for (int attempt = 0; attempt < 3 && best >= 0.1; attempt++) {
        reset_counts();
        para_runtime_t *rt = fault_rt(0, 500);
        two_sink ts;
        arm(&f_hang, 3, 0);
        canceller c = {rt, {0, 0}};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, cancel_main, &c), 0);
        int rc = run_two(rt, false, false, false, &ts);
        double after = secs_since(&c.at);
        pthread_join(th, NULL);
        print_message("  hung launch, cancel: %s, returned %.1f ms after it\n",
                      para_err_name(rc), after * 1e3);
        assert_int_equal(f_hang.hits, 1);
        assert_int_equal(rc, PARA_ECANCELED);
        if (after < best)
            best = after;
        disarm_all();
        assert_int_equal(run_two(rt, false, false, false, &ts), 0);
        assert_int_equal(ts.seen, GRAPH_ITEMS);
        destroy_expect_clean(rt);
    }
    assert_true(best < 0.1);
}

/* The device runs out of memory mid-run (one buffer allocation fails):
 * with batches gathered into launches the launch is retried smaller and
 * the run completes; a single batch of a MIXED node runs on the CPU. */
static void test_graph_device_oom(void **state)
{
    (void)state;
    for (int forced = 0; forced <= 1; forced++) {
        reset_counts();
        para_runtime_t *rt = fault_rt(10000, forced ? 500 : 0);
        two_sink ts;
        arm(&f_create, 2, CL_MEM_OBJECT_ALLOCATION_FAILURE);
        int rc = run_two(rt, forced != 0, false, false, &ts);
        print_message("  device OOM (%s): %s %s (sink saw %zu, %d hit)\n",
                      forced ? "one batch a launch, MIXED"
                             : "gathered launches, kernel-only",
                      para_err_name(rc), para_runtime_errmsg(rt), ts.seen,
                      f_create.hits);
        assert_int_equal(f_create.hits, 1);
        assert_int_equal(rc, 0);
        assert_int_equal(ts.seen, GRAPH_ITEMS);
        assert_int_equal(ts.wrong, 0);
        disarm_all();
        destroy_expect_clean(rt);
    }
}

/* ---- main -------------------------------------------------------------- */

int main(void)
{
    para_set_log_fn(quiet_log, NULL);
    disarm_all();
    para__device_info info;
    if (para__cl_list(&info, 1) == 0) {
        const char *req = getenv("PARA_REQUIRE_DEVICE");
        if (req != NULL && strcmp(req, "1") == 0) {
            fprintf(stderr, "test_opencl_faults: no OpenCL device and "
                            "PARA_REQUIRE_DEVICE=1\n");
            return 1;
        }
        printf("test_opencl_faults: skipped, no OpenCL device\n");
        return 77;
    }
    /* A private program cache, removed at the end. */
    const char *tmp = getenv("TMPDIR");
    snprintf(cache_dir, sizeof cache_dir, "%s/para-cl-faults-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(cache_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    setenv("PARA_CACHE_DIR", cache_dir, 1);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kernel_enqueue_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_read_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grow_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_fails_poll, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_fails_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_unknown_status, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failure_among_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_map_staging_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_setarg_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_fails_while_draining, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_create_kernel_fails, setup,
                                        teardown),
        cmocka_unit_test(test_open_fails),
        cmocka_unit_test(test_graph_kernel_enqueue_fails),
        cmocka_unit_test(test_graph_write_oom_retried),
        cmocka_unit_test(test_graph_read_fails),
        cmocka_unit_test(test_graph_completion_fails),
        cmocka_unit_test(test_graph_lost_device_falls_back),
        cmocka_unit_test(test_graph_lost_device_no_fallback),
        cmocka_unit_test(test_graph_setarg_fails),
        cmocka_unit_test(test_graph_create_kernel_fails),
        cmocka_unit_test(test_graph_kernel_created_once),
        cmocka_unit_test(test_graph_lost_device_mixed_and_kernel_only),
        cmocka_unit_test(test_graph_resident_chain_fails),
        cmocka_unit_test(test_graph_launches_in_flight),
        cmocka_unit_test(test_graph_chain_enqueued_ahead),
        cmocka_unit_test(test_graph_hang_watchdog_kernel_only),
        cmocka_unit_test(test_graph_hang_watchdog_chain),
        cmocka_unit_test(test_graph_hang_watchdog_mixed),
        cmocka_unit_test(test_graph_hang_cancel),
        cmocka_unit_test(test_graph_device_oom),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);

    /* Remove the cache files and the directory. */
    DIR *d = opendir(cache_dir);
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        char path[PATH_MAX + 256];
        snprintf(path, sizeof path, "%s/%s", cache_dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(path);
    }
    if (d != NULL)
        closedir(d);
    rmdir(cache_dir);
    para_set_log_fn(NULL, NULL);
    return failed;
}
