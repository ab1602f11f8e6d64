/*
 * The demo's Mandelbrot (examples/mandelbrot_demo.c): escape counts in
 * fixed-point integer arithmetic, so that every device computes the very
 * same image (floating point would differ in the last bit of a division
 * between devices, and with it the count of a few pixels).
 *
 * Numbers are Q35.28 in a long. While a point is inside the escape radius,
 * |zr|, |zi| <= 2 and |c| < 2.5, so every product stays below 2^62: no
 * overflow. >> on a negative long shifts in the sign (OpenCL C, and C as
 * implemented by GCC and Clang), the same on both sides.
 *
 * out[i] = escape count of pixel in[i] of a W x H image whose top-left
 * pixel is (x0, y0) and whose pixels are step apart, at most max_iter.
 * examples/mandelbrot_demo.c has the same function in C for the CPU.
 */
#define FRAC 28

__kernel void mandelbrot_fixed(__global const ulong *in, __global uint *out,
                               uint n, uint W, uint max_iter, long x0, long y0,
                               long step)
{
    size_t i = get_global_id(0);
    if (i >= n)
        return;
    ulong p = in[i];
    long cr = x0 + (long)(p % W) * step;
    long ci = y0 + (long)(p / W) * step;
    long zr = 0, zi = 0;
    uint count = 0;
    while (count < max_iter) {
        long zr2 = (zr * zr) >> FRAC;
        long zi2 = (zi * zi) >> FRAC;
        if (zr2 + zi2 > (4L << FRAC))
            break;
        long t = zr2 - zi2 + cr;
        zi = ((zr * zi) >> (FRAC - 1)) + ci;
        zr = t;
        count++;
    }
    out[i] = count;
}
