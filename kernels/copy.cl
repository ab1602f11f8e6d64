/* Trivial kernels for the device tests (tests/devices/test_opencl*.c). */

/* out[i] = in[i] */
__kernel void copy_u32(__global const uint *in, __global uint *out, uint n)
{
    size_t i = get_global_id(0);
    if (i < n)
        out[i] = in[i];
}

/* out[i] = in[i] * mul + add: extra scalar arguments after (in, out, n). */
__kernel void axpb_u32(__global const uint *in, __global uint *out, uint n,
                       uint mul, uint add)
{
    size_t i = get_global_id(0);
    if (i < n)
        out[i] = in[i] * mul + add;
}

/* out[i] = in[i] + i, writes 64-bit items: in and out sizes differ. */
__kernel void widen_u32(__global const uint *in, __global ulong *out, uint n)
{
    size_t i = get_global_id(0);
    if (i < n)
        out[i] = (ulong)in[i] + (ulong)i;
}
