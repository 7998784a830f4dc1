/* What the AVX-512 kernels (ops_conv_direct.c, ops_conv_wino.c) share.
 * Include after <immintrin.h>, where HAVE_DIRECT / HAVE_WINO hold. */
#ifndef DACL_OPS_AVX512_H
#define DACL_OPS_AVX512_H

#define VL 16 /* floats a vector */

/* lanes l of a vector whose element l is x[start + l]: those with 0 <= start + l < W */
static inline __mmask16 lane_mask(int start, int W) {
    int lo = start < 0 ? -start : 0, hi = W - start;
    if (hi > VL) hi = VL;
    if (hi <= lo) return 0;
    return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

#endif
