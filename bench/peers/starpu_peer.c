/*
 * peer-starpu: the workloads of the benchmark contract (BENCHMARKS.md) written
 * with StarPU 1.3 (CPU codelets; the default scheduler, --threads CPU workers,
 * no CUDA or OpenCL workers).
 *
 *   w1 w2 w6 w7  the chain table of peer_common.c. Each chunk of items
 *                (one item: starpu-item; chain->chunk items: starpu-chunk)
 *                lives in one of R = 8 x threads slots, each a registered
 *                vector handle reused round robin, so StarPU's sequential
 *                data consistency turns the slots into tokens: chunk c+R's
 *                source task waits until chunk c's last task released the
 *                slot. Per chunk: a source task (W slot) fills {i, i}, then
 *                one task per stage (RW slot). A SERIAL stage also takes
 *                RW|COMMUTE on that stage's token handle (one at a time,
 *                any order); an ORDERED stage takes plain RW on it, which
 *                StarPU runs in submission order: the in-order sink of w2.
 *   w3           the fan-out per chunk: pair (W pairs), diff (R pairs,
 *                W a), neg (W b), and two sink tasks (R a / R b,
 *                RW|COMMUTE on the sink's token), slots as above.
 *
 *   w4           Mandelbrot offload, OpenCL only (w4_opencl() below): a
 *                StarPU of its own with no CPU worker and one OpenCL
 *                worker on the device (PoCL here), the kernel source of
 *                para-bench's w4 (kernels/mandelbrot.cl), tasks of
 *                STARPU_W4_TASK pixels.
 *
 * The main thread only submits (StarPU's model); the workers run every
 * task, sources included. starpu-item rows run at most STARPU_ITEM_CAP
 * items (per-task costs are microseconds; the row's "items" says how many).
 */
#define _POSIX_C_SOURCE 200809L

#include <starpu.h>
#include <starpu_opencl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mandelbrot_ref.h"
#include "peer_common.h"

#define STARPU_ITEM_CAP 65536u

/* What every chain task needs, copied into the task (STARPU_VALUE). */
struct task_arg {
    const peer_stage_t *stage; /* NULL for the source task */
    peer_state_t *st;
    uint64_t first; /* index of the chunk's first item */
    size_t n;       /* items in the chunk (the slot may hold more) */
};

static void chain_task(void *buffers[], void *cl_arg)
{
    struct task_arg a;
    starpu_codelet_unpack_args(cl_arg, &a);
    peer_item_t *items = (peer_item_t *)STARPU_VECTOR_GET_PTR(buffers[0]);
    if (a.stage == NULL)
        peer_source_fill(items, a.first, a.n);
    else
        a.stage->fn(items, a.n, a.st);
}

/* Access modes come from each task (STARPU_VARIABLE_NBUFFERS), since the
 * same function runs with and without a token handle. */
static struct starpu_codelet chain_cl = {
    .cpu_funcs = {chain_task},
    .nbuffers = STARPU_VARIABLE_NBUFFERS,
    .name = "peer_chain",
};

struct chain_run {
    const peer_chain_t *chain;
    peer_state_t *st;
    size_t per;
    unsigned slots;
};

static int chain_timed(void *p, bench_row_t *row)
{
    struct chain_run *r = p;
    const peer_chain_t *c = r->chain;
    peer_state_t *st = r->st;
    peer_state_reset(st);
    unsigned slots = r->slots;
    peer_item_t *mem = malloc((size_t)slots * r->per * sizeof *mem);
    starpu_data_handle_t *slot = calloc(slots, sizeof *slot);
    starpu_data_handle_t token[PEER_MAX_STAGES];
    uint64_t token_mem[PEER_MAX_STAGES];
    if (mem == NULL || slot == NULL) {
        free(mem);
        free(slot);
        bench_fail(row, "out of memory");
        return 1;
    }
    for (unsigned k = 0; k < slots; k++)
        starpu_vector_data_register(&slot[k], STARPU_MAIN_RAM,
                                    (uintptr_t)(mem + (size_t)k * r->per),
                                    (uint32_t)r->per, sizeof *mem);
    for (int s = 0; s < c->nstages; s++)
        starpu_variable_data_register(&token[s], STARPU_MAIN_RAM,
                                      (uintptr_t)&token_mem[s],
                                      sizeof token_mem[s]);
    int rc = 0;
    uint64_t chunk = 0;
    for (uint64_t first = 0; first < st->n && rc == 0; first += r->per) {
        starpu_data_handle_t h = slot[chunk++ % slots];
        struct task_arg a = {NULL, st, first,
                             st->n - first < r->per ? (size_t)(st->n - first)
                                                    : r->per};
        rc = starpu_task_insert(&chain_cl, STARPU_W, h, STARPU_VALUE, &a,
                                sizeof a, 0);
        for (int s = 0; s < c->nstages && rc == 0; s++) {
            a.stage = &c->stage[s];
            if (a.stage->kind == PEER_PARALLEL)
                rc = starpu_task_insert(&chain_cl, STARPU_RW, h, STARPU_VALUE,
                                        &a, sizeof a, 0);
            else
                rc = starpu_task_insert(
                    &chain_cl, STARPU_RW, h,
                    a.stage->kind == PEER_SERIAL ? STARPU_RW | STARPU_COMMUTE
                                                 : STARPU_RW,
                    token[s], STARPU_VALUE, &a, sizeof a, 0);
        }
    }
    starpu_task_wait_for_all();
    for (unsigned k = 0; k < slots; k++)
        starpu_data_unregister(slot[k]);
    for (int s = 0; s < c->nstages; s++)
        starpu_data_unregister(token[s]);
    free(slot);
    free(mem);
    if (rc != 0) {
        bench_fail(row, "starpu_task_insert: %d", rc);
        return 1;
    }
    peer_state_check(st, row);
    return row->ok ? 0 : 1;
}

/*
 * A chain workload's references, made before starpu_init(): StarPU's idle
 * workers poll for tasks, and a seq loop sharing the cores with them runs
 * up to 3x slower (measured), which would skew every efficiency.
 */
struct chain_refs {
    const peer_chain_t *chain;
    peer_state_t full; /* the workload's size */
    peer_state_t item; /* the starpu-item size (capped) */
    double seq;        /* seq median at full size */
};

static void chain_refs_init(const bench_cfg_t *cfg, const char *id,
                            struct chain_refs *refs)
{
    const peer_chain_t *c = peer_chain_find(id);
    refs->chain = c;
    refs->full.n = cfg->quick ? c->quick_items : c->items;
    refs->seq = peer_run_seq(cfg, c, &refs->full);
    refs->item.chain = c;
    refs->item.n =
        refs->full.n > STARPU_ITEM_CAP ? STARPU_ITEM_CAP : refs->full.n;
    c->seq(&refs->item); /* w6's costs depend on n: its own reference */
}

static int starpu_chain(const bench_cfg_t *cfg, struct chain_refs *refs)
{
    const peer_chain_t *c = refs->chain;
    int failed = 0;
    const struct {
        const char *variant;
        size_t per;
        peer_state_t *st;
    } vs[] = {{"starpu-item", 1, &refs->item},
              {"starpu-chunk", c->chunk, &refs->full}};
    for (size_t v = 0; v < 2; v++) {
        bench_row_t row;
        bench_row_init(&row, c->workload, vs[v].variant, vs[v].st->n,
                       cfg->threads);
        row.seq_seconds =
            refs->seq * (double)vs[v].st->n / (double)refs->full.n;
        struct chain_run r = {c, vs[v].st, vs[v].per, 8 * cfg->threads};
        bench_time(cfg, chain_timed, &r, &row);
        bench_print_row(&row);
        failed |= !row.ok;
    }
    return failed;
}

/* ---- w3 ---------------------------------------------------------------- */

struct w3_arg {
    int64_t first;
    size_t n;
    peer_w3_acc_t *sink;
};

static void w3_pair_task(void *buffers[], void *cl_arg)
{
    struct w3_arg a;
    starpu_codelet_unpack_args(cl_arg, &a);
    peer_w3_pair(a.first, a.n,
                 (peer_w3_pair_t *)STARPU_VECTOR_GET_PTR(buffers[0]));
}

static void w3_diff_task(void *buffers[], void *cl_arg)
{
    struct w3_arg a;
    starpu_codelet_unpack_args(cl_arg, &a);
    peer_w3_diff((const peer_w3_pair_t *)STARPU_VECTOR_GET_PTR(buffers[0]), a.n,
                 (int64_t *)STARPU_VECTOR_GET_PTR(buffers[1]));
}

static void w3_neg_task(void *buffers[], void *cl_arg)
{
    struct w3_arg a;
    starpu_codelet_unpack_args(cl_arg, &a);
    peer_w3_neg(a.first, a.n, (int64_t *)STARPU_VECTOR_GET_PTR(buffers[0]));
}

static void w3_sink_task(void *buffers[], void *cl_arg)
{
    struct w3_arg a;
    starpu_codelet_unpack_args(cl_arg, &a);
    peer_w3_sink((const int64_t *)STARPU_VECTOR_GET_PTR(buffers[0]), a.n,
                 a.sink);
}

static struct starpu_codelet w3_pair_cl = {.cpu_funcs = {w3_pair_task},
                                           .nbuffers = 1,
                                           .modes = {STARPU_W},
                                           .name = "w3_pair"};
static struct starpu_codelet w3_diff_cl = {.cpu_funcs = {w3_diff_task},
                                           .nbuffers = 2,
                                           .modes = {STARPU_R, STARPU_W},
                                           .name = "w3_diff"};
static struct starpu_codelet w3_neg_cl = {.cpu_funcs = {w3_neg_task},
                                          .nbuffers = 1,
                                          .modes = {STARPU_W},
                                          .name = "w3_neg"};
static struct starpu_codelet w3_sink_cl = {.cpu_funcs = {w3_sink_task},
                                           .nbuffers = STARPU_VARIABLE_NBUFFERS,
                                           .name = "w3_sink"};

struct w3_run {
    uint64_t n;
    size_t per;
    unsigned slots;
};

static int w3_timed(void *p, bench_row_t *row)
{
    struct w3_run *r = p;
    size_t per = r->per;
    unsigned slots = r->slots;
    peer_w3_pair_t *pairs = malloc((size_t)slots * per * sizeof *pairs);
    int64_t *a = malloc((size_t)slots * per * sizeof *a);
    int64_t *b = malloc((size_t)slots * per * sizeof *b);
    starpu_data_handle_t(*h)[3] = calloc(slots, sizeof *h);
    peer_w3_acc_t sink = {0, 0, 0};
    uint64_t token_mem = 0;
    starpu_data_handle_t token;
    if (pairs == NULL || a == NULL || b == NULL || h == NULL) {
        bench_fail(row, "out of memory");
        free(pairs);
        free(a);
        free(b);
        free(h);
        return 1;
    }
    for (unsigned k = 0; k < slots; k++) {
        starpu_vector_data_register(&h[k][0], STARPU_MAIN_RAM,
                                    (uintptr_t)(pairs + (size_t)k * per),
                                    (uint32_t)per, sizeof *pairs);
        starpu_vector_data_register(&h[k][1], STARPU_MAIN_RAM,
                                    (uintptr_t)(a + (size_t)k * per),
                                    (uint32_t)per, sizeof *a);
        starpu_vector_data_register(&h[k][2], STARPU_MAIN_RAM,
                                    (uintptr_t)(b + (size_t)k * per),
                                    (uint32_t)per, sizeof *b);
    }
    starpu_variable_data_register(&token, STARPU_MAIN_RAM,
                                  (uintptr_t)&token_mem, sizeof token_mem);
    int rc = 0;
    uint64_t chunk = 0;
    for (uint64_t first = 0; first < r->n && rc == 0; first += per) {
        starpu_data_handle_t *s = h[chunk++ % slots];
        struct w3_arg arg = {(int64_t)first,
                             r->n - first < per ? (size_t)(r->n - first) : per,
                             &sink};
        if ((rc = starpu_task_insert(&w3_pair_cl, STARPU_W, s[0], STARPU_VALUE,
                                     &arg, sizeof arg, 0)) != 0 ||
            (rc =
                 starpu_task_insert(&w3_diff_cl, STARPU_R, s[0], STARPU_W, s[1],
                                    STARPU_VALUE, &arg, sizeof arg, 0)) != 0 ||
            (rc = starpu_task_insert(&w3_neg_cl, STARPU_W, s[2], STARPU_VALUE,
                                     &arg, sizeof arg, 0)) != 0 ||
            (rc = starpu_task_insert(&w3_sink_cl, STARPU_R, s[1],
                                     STARPU_RW | STARPU_COMMUTE, token,
                                     STARPU_VALUE, &arg, sizeof arg, 0)) != 0 ||
            (rc = starpu_task_insert(&w3_sink_cl, STARPU_R, s[2],
                                     STARPU_RW | STARPU_COMMUTE, token,
                                     STARPU_VALUE, &arg, sizeof arg, 0)) != 0)
            break;
    }
    starpu_task_wait_for_all();
    for (unsigned k = 0; k < slots; k++)
        for (int j = 0; j < 3; j++)
            starpu_data_unregister(h[k][j]);
    starpu_data_unregister(token);
    free(h);
    free(pairs);
    free(a);
    free(b);
    if (rc != 0) {
        bench_fail(row, "starpu_task_insert: %d", rc);
        return 1;
    }
    peer_w3_check(r->n, &sink, row);
    return row->ok ? 0 : 1;
}

static int starpu_w3(const bench_cfg_t *cfg)
{
    uint64_t n = cfg->quick ? PEER_W3_QUICK : PEER_W3_ITEMS;
    const struct {
        const char *variant;
        uint64_t n;
        size_t per;
    } vs[] = {{"starpu-item", n < STARPU_ITEM_CAP ? n : STARPU_ITEM_CAP, 1},
              {"starpu-chunk", n, 8192}};
    int failed = 0;
    for (size_t v = 0; v < 2; v++) {
        struct w3_run r = {vs[v].n, vs[v].per, 8 * cfg->threads};
        bench_row_t row;
        bench_row_init(&row, "w3", vs[v].variant, r.n, cfg->threads);
        bench_time(cfg, w3_timed, &r, &row);
        bench_print_row(&row);
        failed |= !row.ok;
    }
    return failed;
}

/* ---- w4: Mandelbrot on the OpenCL device ------------------------------- */

/*
 * The same work as para-bench's w4 (bench/w4_offload.c): pixel i of a
 * 1024 x 1024 image (--quick 256 x 256) gets its escape count from the
 * kernel of kernels/mandelbrot.cl; the counts are summed. The pixel indices
 * and the counts are host arrays registered as vectors of STARPU_W4_TASK
 * pixels each; one task per vector pair (R pixels, W counts). StarPU copies
 * each input to the device, runs the kernel, and brings the counts home when
 * the handles are unregistered (in the timed run, as para's sink gets them).
 *
 * Two codelets, both OpenCL only: starpu-ocl ends its function with
 * clFinish() (StarPU's examples), starpu-ocl-async enqueues on StarPU's
 * queue and returns (STARPU_OPENCL_ASYNC), so StarPU overlaps the next
 * task's copy with the kernel. Checks as para-bench's: every pixel counted
 * exactly once (an unwritten count stays UINT32_MAX), the sum within
 * 0.01 % of the C reference.
 */
#define STARPU_W4_SIDE 1024u
#define STARPU_W4_QUICK_SIDE 256u
#define STARPU_W4_TASK 65536u
#define STARPU_W4_LOCAL 128u

static struct starpu_opencl_program w4_program;
static atomic_int w4_error; /* the first OpenCL error of a run, 0 = none */
static uint32_t w4_side;

static void w4_note(cl_int err)
{
    int none = 0;
    if (err != CL_SUCCESS)
        atomic_compare_exchange_strong_explicit(&w4_error, &none, (int)err,
                                                memory_order_relaxed,
                                                memory_order_relaxed);
}

static void w4_enqueue(void *buffers[], int finish)
{
    uint32_t n = (uint32_t)STARPU_VECTOR_GET_NX(buffers[0]);
    if (STARPU_VECTOR_GET_OFFSET(buffers[0]) != 0 ||
        STARPU_VECTOR_GET_OFFSET(buffers[1]) != 0) {
        w4_note(CL_INVALID_VALUE); /* whole registered vectors: never */
        return;
    }
    cl_mem in = (cl_mem)STARPU_VECTOR_GET_DEV_HANDLE(buffers[0]);
    cl_mem out = (cl_mem)STARPU_VECTOR_GET_DEV_HANDLE(buffers[1]);
    int devid = starpu_worker_get_devid(starpu_worker_get_id_check());
    cl_kernel k;
    cl_command_queue q;
    cl_int err =
        starpu_opencl_load_kernel(&k, &q, &w4_program, "mandelbrot", devid);
    if (err != CL_SUCCESS) {
        w4_note(err);
        return;
    }
    err = clSetKernelArg(k, 0, sizeof in, &in);
    err |= clSetKernelArg(k, 1, sizeof out, &out);
    err |= clSetKernelArg(k, 2, sizeof n, &n);
    err |= clSetKernelArg(k, 3, sizeof w4_side, &w4_side);
    err |= clSetKernelArg(k, 4, sizeof w4_side, &w4_side);
    size_t local = STARPU_W4_LOCAL;
    size_t global = ((size_t)n + local - 1) / local * local;
    if (err == CL_SUCCESS)
        err = clEnqueueNDRangeKernel(q, k, 1, NULL, &global, &local, 0, NULL,
                                     NULL);
    if (err == CL_SUCCESS && finish)
        err = clFinish(q);
    w4_note(err);
    starpu_opencl_release_kernel(k);
}

static void w4_ocl_sync(void *buffers[], void *cl_arg)
{
    (void)cl_arg;
    w4_enqueue(buffers, 1);
}

static void w4_ocl_async(void *buffers[], void *cl_arg)
{
    (void)cl_arg;
    w4_enqueue(buffers, 0);
}

static struct starpu_codelet w4_sync_cl = {
    .opencl_funcs = {w4_ocl_sync},
    .nbuffers = 2,
    .modes = {STARPU_R, STARPU_W},
    .name = "w4_mandelbrot",
};
static struct starpu_codelet w4_async_cl = {
    .opencl_funcs = {w4_ocl_async},
    .opencl_flags = {STARPU_OPENCL_ASYNC},
    .nbuffers = 2,
    .modes = {STARPU_R, STARPU_W},
    .name = "w4_mandelbrot_async",
};

struct w4_run {
    struct starpu_codelet *cl;
    uint32_t n;
    const uint32_t *pixels;
    uint32_t *out;
    uint64_t expect;
};

static int w4_timed(void *p, bench_row_t *row)
{
    struct w4_run *r = p;
    unsigned tasks = (r->n + STARPU_W4_TASK - 1) / STARPU_W4_TASK;
    starpu_data_handle_t(*h)[2] = calloc(tasks, sizeof *h);
    if (h == NULL) {
        bench_fail(row, "out of memory");
        return 1;
    }
    atomic_store_explicit(&w4_error, 0, memory_order_relaxed);
    for (unsigned t = 0; t < tasks; t++) {
        size_t at = (size_t)t * STARPU_W4_TASK;
        uint32_t len =
            r->n - at < STARPU_W4_TASK ? (uint32_t)(r->n - at) : STARPU_W4_TASK;
        starpu_vector_data_register(&h[t][0], STARPU_MAIN_RAM,
                                    (uintptr_t)(r->pixels + at), len, 4);
        starpu_vector_data_register(&h[t][1], STARPU_MAIN_RAM,
                                    (uintptr_t)(r->out + at), len, 4);
    }
    int rc = 0;
    for (unsigned t = 0; t < tasks && rc == 0; t++)
        rc = starpu_task_insert(r->cl, STARPU_R, h[t][0], STARPU_W, h[t][1], 0);
    starpu_task_wait_for_all();
    for (unsigned t = 0; t < tasks; t++) {
        starpu_data_unregister(h[t][0]);
        starpu_data_unregister(h[t][1]); /* the counts come home */
    }
    free(h);
    int err = atomic_load_explicit(&w4_error, memory_order_relaxed);
    if (rc != 0 || err != 0) {
        bench_fail(row, "starpu_task_insert: %d, OpenCL: %d", rc, err);
        return 1;
    }
    /* The sink: sum the counts, count the pixels written, and reset them
     * for the next run (read and written in one pass). */
    uint64_t sum = 0, count = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        uint32_t c = r->out[i];
        count += c <= 256;
        sum += c;
        r->out[i] = UINT32_MAX;
    }
    if (count != r->n)
        bench_fail(row, "%llu of %u pixels computed", (unsigned long long)count,
                   r->n);
    double diff =
        sum > r->expect ? (double)(sum - r->expect) : (double)(r->expect - sum);
    if (diff > 0.0001 * (double)r->expect)
        bench_fail(row, "sum %llu, reference %llu (more than 0.01 %% apart)",
                   (unsigned long long)sum, (unsigned long long)r->expect);
    return row->ok ? 0 : 1;
}

/* w4 with a StarPU of its own: no CPU worker, the OpenCL device only (a CPU
 * device too: STARPU_OPENCL_ON_CPUS, since PoCL is one). Run after every
 * other workload's StarPU has shut down. */
static int starpu_w4(const bench_cfg_t *cfg)
{
    uint32_t side = cfg->quick ? STARPU_W4_QUICK_SIDE : STARPU_W4_SIDE;
    uint32_t n = side * side;
    uint32_t *pixels = malloc((size_t)n * 4), *out = malloc((size_t)n * 4);
    if (pixels == NULL || out == NULL) {
        fprintf(stderr, "peer-starpu: w4: out of memory\n");
        free(pixels);
        free(out);
        return 1;
    }
    uint64_t expect = 0;
    for (uint32_t i = 0; i < n; i++) {
        pixels[i] = i;
        out[i] = UINT32_MAX;
        expect += para_mandelbrot_ref(i, side, side);
    }
    w4_side = side;
    setenv("STARPU_OPENCL_ON_CPUS", "1", 1);
    struct starpu_conf conf;
    starpu_conf_init(&conf);
    conf.ncpus = 0;
    conf.ncuda = 0;
    conf.nopencl = 1;
    conf.nmic = 0;
    conf.nmpi_ms = 0;
    int failed = 0, rc = starpu_init(&conf), up = rc == 0;
    if (rc != 0) {
        fprintf(stderr,
                "peer-starpu: w4: starpu_init: %d (no OpenCL "
                "device?)\n",
                rc);
        failed = 1;
    } else if (starpu_opencl_worker_get_count() != 1) {
        fprintf(stderr, "peer-starpu: w4: %u OpenCL workers, wanted 1\n",
                starpu_opencl_worker_get_count());
        failed = 1;
    } else if ((rc = starpu_opencl_load_opencl_from_string(
                    para_kernel_source("mandelbrot"), &w4_program, "")) != 0) {
        fprintf(stderr, "peer-starpu: w4: kernel build: %d\n", rc);
        failed = 1;
    } else {
        static const struct {
            const char *variant;
            struct starpu_codelet *cl;
        } vs[] = {{"starpu-ocl", &w4_sync_cl},
                  {"starpu-ocl-async", &w4_async_cl}};
        for (size_t v = 0; v < 2; v++) {
            struct w4_run r = {vs[v].cl, n, pixels, out, expect};
            bench_row_t row;
            bench_row_init(&row, "w4", vs[v].variant, n, cfg->threads);
            w4_timed(&r, &row); /* warm: the first launch compiles */
            if (row.ok)
                bench_time(cfg, w4_timed, &r, &row);
            snprintf(row.extra, sizeof row.extra, "\"task_pixels\":%u",
                     STARPU_W4_TASK);
            bench_print_row(&row);
            failed |= !row.ok;
        }
        starpu_opencl_unload_opencl(&w4_program);
    }
    if (up)
        starpu_shutdown();
    free(pixels);
    free(out);
    return failed;
}

int main(int argc, char **argv)
{
    peer_opts_t o;
    int rc = peer_parse_args("peer-starpu", argc, argv, &o);
    if (rc != 0)
        return rc;
    if (o.selected[0]) {
        fprintf(stderr, "peer-starpu: no lp (the protocol compares para, "
                        "oneTBB and OpenMP)\n");
        return 2;
    }
    bench_cfg_t cfg = {
        .threads = o.threads, .repeat = o.repeat, .quick = o.quick};
    struct chain_refs *refs = calloc(PEER_MAX_WORKLOAD + 1, sizeof *refs);
    if (refs == NULL)
        return 1;
    for (int k = 1; k <= PEER_MAX_WORKLOAD; k++) {
        char id[8];
        snprintf(id, sizeof id, "w%d", k);
        if (o.selected[k] && k != 3 && k != 4)
            chain_refs_init(&cfg, id, &refs[k]);
    }

    int cpu_work = 0, failed = 0;
    for (int k = 1; k <= PEER_MAX_WORKLOAD; k++)
        cpu_work |= k != 4 && o.selected[k];
    if (cpu_work) {
        struct starpu_conf conf;
        starpu_conf_init(&conf);
        conf.ncpus = (int)o.threads;
        conf.ncuda = 0;
        conf.nopencl = 0;
        conf.nmic = 0;
        conf.nmpi_ms = 0;
        if ((rc = starpu_init(&conf)) != 0) {
            fprintf(stderr, "peer-starpu: starpu_init: %d\n", rc);
            free(refs);
            return 1;
        }
        for (int k = 1; k <= PEER_MAX_WORKLOAD; k++) {
            if (!o.selected[k] || k == 4)
                continue;
            failed |= k == 3 ? starpu_w3(&cfg) : starpu_chain(&cfg, &refs[k]);
        }
        starpu_shutdown();
    }
    if (o.selected[4])
        failed |= starpu_w4(&cfg);
    free(refs);
    return failed ? 1 : 0;
}
