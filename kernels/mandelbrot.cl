/*
 * w4 Mandelbrot (BENCH_SPEC.md): out[i] = mandel_count(in[i], W, H), the
 * escape count of pixel in[i] of a W x H image, computed with exactly the
 * single-precision operations of the C reference, in the same order:
 *
 *     cr = -2.0f + ((2.5f * (float)px) / (float)W)
 *
 * Contraction of a * b + c into fma() is switched off so that every product
 * and sum rounds as it does in C (C11 with -ffp-contract=off, the default
 * for -std=c11). Division is correctly rounded only where the device has
 * CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT and the program is built with
 * -cl-fp32-correctly-rounded-divide-sqrt; otherwise OpenCL allows 2.5 ulp,
 * which is why the benchmark tolerates a 0.1 % difference in the sum.
 */
#pragma OPENCL FP_CONTRACT OFF

__kernel void mandelbrot(__global const uint *in, __global uint *out, uint n,
                         uint W, uint H)
{
    size_t i = get_global_id(0);
    if (i >= n)
        return;
    uint p = in[i];
    uint px = p % W, py = p / W;
    float cr = -2.0f + 2.5f * (float)px / (float)W;
    float ci = -1.25f + 2.5f * (float)py / (float)H;
    float zr = 0.0f, zi = 0.0f;
    uint count = 0;
    while (count < 256 && zr * zr + zi * zi <= 4.0f) {
        float t = zr * zr - zi * zi + cr;
        zi = 2.0f * zr * zi + ci;
        zr = t;
        count++;
    }
    out[i] = count;
}
