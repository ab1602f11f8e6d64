/*
 * The C reference of kernels/mandelbrot.cl (the benchmark contract
 * (BENCHMARKS.md) w4, verbatim): the escape count of pixel i of a W x H image,
 * in single precision, the same operations in the same order as the kernel.
 * Shared by the w4 benchmark and the device tests, which compare the kernel
 * against it.
 */
#ifndef PARA_MANDELBROT_REF_H
#define PARA_MANDELBROT_REF_H

#include <stdint.h>

static inline uint32_t para_mandelbrot_ref(uint32_t i, uint32_t W, uint32_t H)
{
    uint32_t px = i % W, py = i / W;
    float cr = -2.0f + 2.5f * (float)px / (float)W;
    float ci = -1.25f + 2.5f * (float)py / (float)H;
    float zr = 0.0f, zi = 0.0f;
    uint32_t count = 0;
    while (count < 256 && zr * zr + zi * zi <= 4.0f) {
        float t = zr * zr - zi * zi + cr;
        zi = 2.0f * zr * zi + ci;
        zr = t;
        count++;
    }
    return count;
}

#endif /* PARA_MANDELBROT_REF_H */
