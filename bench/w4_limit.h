/*
 * para-bench: w4's `limit` in plain OpenCL (w4_limit.c).
 */
#ifndef PARA_BENCH_W4_LIMIT_H
#define PARA_BENCH_W4_LIMIT_H

#include <stdint.h>

#include "bench.h"

/* What w4_limit_plain() computes and on which device. */
typedef struct w4_limit_job {
    unsigned platform_index, device_index; /* as para-info lists them */
    const char *source;                    /* kernels/mandelbrot.cl */
    const uint32_t *pixels;                /* n pixel indices */
    uint32_t n, side;
    uint64_t expect; /* the C reference sum */
} w4_limit_job;

/* Time the plain-OpenCL schedules of w4 on the device and put the fastest
 * into @p row (seconds, "limit_launches"). Returns 0 (row filled, or
 * failed with bench_fail()), or -1 when the device cannot be reached
 * through plain OpenCL (built without it, or no such device): then the
 * caller measures its own way. */
int w4_limit_plain(const bench_cfg_t *cfg, const w4_limit_job *job,
                   bench_row_t *row);

#endif /* PARA_BENCH_W4_LIMIT_H */
