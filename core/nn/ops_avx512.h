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

/* the 16 dropout keep bits of a plane (nw words, dacl_mask_words) from
 * element i on, as a lane mask (bits past the plane's last word are 0) */
static inline __mmask16 keep_bits16(const uint64_t *mb, size_t i, size_t nw) {
    const size_t q = i >> 6;
    const unsigned s = (unsigned)(i & 63);
    uint64_t v = mb[q] >> s;
    if (s > 48 && q + 1 < nw) v |= mb[q + 1] << (64 - s);
    return (__mmask16)(v & 0xffffu);
}

#endif
