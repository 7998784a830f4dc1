/* Direct 3x3 convolutions (stride 1, pad 1) in AVX-512. im2col + sgemm
 * spends much of its time copying, worst in the layers with few channels:
 * the column matrix is 9 copies of the input, OpenBLAS packs it once more,
 * and with 16 or 32 output channels each packed value feeds only 16 or 32
 * multiply-adds. ops_conv.c picks the path per layer.
 *
 * Here the input is read in place. Sixteen pixels of a row are one vector;
 * a tile keeps OB output channels x PV pixel vectors of accumulators in
 * registers and, per input channel and tap, loads PV shifted input vectors
 * and multiplies each by OB weights broadcast from memory. The padding is
 * masked loads at the row ends and skipped rows at the image's top and
 * bottom. The input gradient is the same kernel over dy with the weights
 * transposed and flipped; the weight gradient keeps OB x 9 accumulators
 * per input channel and reduces them once per band of rows.
 *
 * Dims: C input channels, OC output channels, H, W, HW = H*W; weights
 * w [OC,C,3,3]. CI/CO: the kernel's own input and output channels (C/OC
 * forward, OC/C for the input gradient). */
#include <stddef.h>

#include "ops_internal.h"

/* The tiles live in registers only once the compiler has inlined and
 * unrolled them: unoptimised, in CI's Debug + sanitizer build, they took
 * test_nn_train from 24 to 56 CPU seconds (29 with this). GCC optimises this
 * file whatever the build type; clang's sanitizer builds here are -O2. */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__OPTIMIZE__)
#pragma GCC optimize("O2")
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_DIRECT 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,fma")))
#define TILE static inline __attribute__((always_inline, target("avx512f,fma")))
#else
#define HAVE_DIRECT 0
#endif

int dacl_conv3x3_direct_available(void) {
#if HAVE_DIRECT
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

#if HAVE_DIRECT

#include "ops_avx512.h"

#define OB 8 /* output channels a tile */

typedef struct {
    const float *x; /* input [CI,H,W], or a DaclXIn's ring [CI,R,W] */
    const float *w; /* tap k of (output o, input i) at w[o*so + i*si + (flip ? 8-k : k)] */
    ptrdiff_t so, si;
    int flip, CI, CO, H, W;
    int R; /* 0: x is the input; else x is a ring of R rows a channel, row h at h % R */
} Direct;

/* where row sh of a channel starts, from the channel's start */
static inline size_t direct_row(const Direct *d, int sh) {
    return (size_t)(d->R ? sh % d->R : sh) * d->W;
}

/* Row h of output channels [o0, o0+nout) (nout <= OB; missing channels
 * repeat the last one and are not stored), pixel vectors starting at w0.
 * masked = 0 only where every lane of every shifted load is inside the row. */
TILE void fwd_tile(const Direct *d, float *const *yo, const float *bias, int o0, int nout, int h,
                   int w0, const int PV, const int masked) {
    const int W = d->W, H = d->H;
    const size_t cs = d->R ? (size_t)d->R * W : (size_t)H * W;
    __m512 acc[OB][4];
    __mmask16 lm[4][3], sm[4];
    size_t ro[3];
#pragma GCC unroll 3
    for (int kh = 0; kh < 3; kh++) ro[kh] = h + kh - 1 >= 0 ? direct_row(d, h + kh - 1) : 0;
    const float *wo[OB];
#pragma GCC unroll 8
    for (int o = 0; o < OB; o++) {
        int oc = o < nout ? o0 + o : o0 + nout - 1;
        wo[o] = d->w + oc * d->so;
        __m512 b0 = bias ? _mm512_set1_ps(bias[oc]) : _mm512_setzero_ps();
#pragma GCC unroll 4
        for (int p = 0; p < PV; p++) acc[o][p] = b0;
    }
    if (masked) {
#pragma GCC unroll 4
        for (int p = 0; p < PV; p++) {
#pragma GCC unroll 3
            for (int kw = 0; kw < 3; kw++) lm[p][kw] = lane_mask(w0 + VL * p + kw - 1, W);
            sm[p] = lane_mask(w0 + VL * p, W);
        }
    }
    for (int i = 0; i < d->CI; i++) {
        const float *xi = d->x + i * cs;
        const ptrdiff_t wi = i * d->si;
#pragma GCC unroll 3
        for (int kh = 0; kh < 3; kh++) {
            int sh = h + kh - 1;
            if (sh < 0 || sh >= H) continue;
            const float *r = xi + ro[kh] + w0 - 1;
#pragma GCC unroll 3
            for (int kw = 0; kw < 3; kw++) {
                const int k = d->flip ? 8 - (kh * 3 + kw) : kh * 3 + kw;
                __m512 xv[4];
#pragma GCC unroll 4
                for (int p = 0; p < PV; p++)
                    xv[p] = masked ? _mm512_maskz_loadu_ps(lm[p][kw], r + VL * p + kw)
                                   : _mm512_loadu_ps(r + VL * p + kw);
#pragma GCC unroll 8
                for (int o = 0; o < OB; o++) {
                    __m512 wv = _mm512_set1_ps(wo[o][wi + k]);
#pragma GCC unroll 4
                    for (int p = 0; p < PV; p++) acc[o][p] = _mm512_fmadd_ps(wv, xv[p], acc[o][p]);
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int o = 0; o < OB; o++) {
        if (o >= nout) break;
        float *y = yo[o] + (size_t)h * W + w0;
#pragma GCC unroll 4
        for (int p = 0; p < PV; p++) {
            if (masked)
                _mm512_mask_storeu_ps(y + VL * p, sm[p], acc[o][p]);
            else
                _mm512_storeu_ps(y + VL * p, acc[o][p]);
        }
    }
}

/* Rows [h0, h1) of every output channel; channel o at y + o*HW, or at
 * y2 + (o - split)*HW from split on. */
static AVX512 void direct_rows(const Direct *d, float *y, float *y2, int split, const float *bias,
                               int h0, int h1, DaclXIn *xin) {
    const int W = d->W, nv = (W + VL - 1) / VL;
    const size_t HW = (size_t)d->H * W;
    float *yo[OB];
    for (int h = h0; h < h1; h++) {
        if (xin) dacl_xin_stage(xin, d->CI, d->H, W, h - 1, h + 2);
        for (int v = 0; v < nv;) {
            int w0 = VL * v;
            for (int o0 = 0; o0 < d->CO; o0 += OB) {
                int nout = d->CO - o0 < OB ? d->CO - o0 : OB;
                for (int o = 0; o < nout; o++)
                    yo[o] = o0 + o < split ? y + (size_t)(o0 + o) * HW
                                           : y2 + (size_t)(o0 + o - split) * HW;
                if (nv - v >= 3) {
                    if (w0 > 0 && w0 + 3 * VL < W)
                        fwd_tile(d, yo, bias, o0, nout, h, w0, 3, 0);
                    else
                        fwd_tile(d, yo, bias, o0, nout, h, w0, 3, 1);
                } else if (nv - v == 2) {
                    fwd_tile(d, yo, bias, o0, nout, h, w0, 2, 1);
                } else {
                    fwd_tile(d, yo, bias, o0, nout, h, w0, 1, 1);
                }
            }
            v += nv - v >= 3 ? 3 : nv - v;
        }
    }
}

void dacl_conv3x3_direct_forward_rows(float *y, const float *x, const float *w, const float *b, int C,
                                      int H, int W, int OC, int h0, int h1) {
    Direct d = {.x = x, .w = w, .so = (ptrdiff_t)C * 9, .si = 9, .flip = 0, .CI = C, .CO = OC,
                .H = H, .W = W};
    direct_rows(&d, y, NULL, OC, b, h0, h1, NULL);
}

void dacl_conv3x3_direct_forward_rows_xin(float *y, DaclXIn *xin, const float *w, const float *b,
                                          int C, int H, int W, int OC, int h0, int h1) {
    Direct d = {.x = xin->ring, .w = w, .so = (ptrdiff_t)C * 9, .si = 9, .flip = 0, .CI = C,
                .CO = OC, .H = H, .W = W, .R = xin->rows};
    direct_rows(&d, y, NULL, OC, b, h0, h1, xin);
}

/* team.c's xform_plane on rows: z = x * sc + sh, a = z > 0 ? z : z * slope
 * (a blend: -0 and NaN take z * slope as there), then a * ks where kept
 * and +0 where dropped; one multiply and one add, as C11 does not contract */
AVX512 void dacl_xin_stage(DaclXIn *q, int C, int H, int W, int a, int b) {
    if (a < 0) a = 0;
    if (b > H) b = H;
    if (b <= a) return;
    int from = a;
    if (a >= q->lo && a <= q->hi) {
        from = q->hi;
        if (b > q->hi) q->hi = b;
    } else {
        q->lo = a, q->hi = b;
    }
    if (q->hi - q->lo > q->rows) q->lo = q->hi - q->rows;
    const size_t HW = (size_t)H * W, nw = dacl_mask_words(HW);
    const __m512 zero = _mm512_setzero_ps(), slope = _mm512_set1_ps(q->slope),
                 ks = _mm512_set1_ps(q->ks);
    for (int c = 0; c < C; c++) {
        const __m512 sc = _mm512_set1_ps(q->scale[c]), shv = _mm512_set1_ps(q->shift[c]);
        const uint64_t *mb = q->mask ? q->mask + (size_t)c * nw : NULL;
        for (int sh = from; sh < b; sh++) {
            const float *src = q->x + c * HW + (size_t)sh * W;
            float *dst = q->ring + ((size_t)c * q->rows + sh % q->rows) * W;
            for (int j = 0; j < W; j += VL) {
                const __mmask16 lm = lane_mask(j, W);
                __m512 z = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(lm, src + j), sc), shv);
                __mmask16 pos = _mm512_cmp_ps_mask(z, zero, _CMP_GT_OQ);
                __m512 v = _mm512_mask_blend_ps(pos, _mm512_mul_ps(z, slope), z);
                if (mb)
                    v = _mm512_maskz_mul_ps(keep_bits16(mb, (size_t)sh * W + j, nw), v, ks);
                _mm512_mask_storeu_ps(dst + j, lm, v);
            }
        }
    }
}

/* dw[o0+o, i, :] += sum over rows [h0, h1) of dy[o0+o] times x[i] shifted by each tap */
TILE void dw_vec(__m512 acc[][9], const float *dy, const float *xi, size_t HW, int W, int H, int h,
                 int w0, const int NB, const int masked) {
    __m512 g[3];
    __mmask16 lm[3] = {0, 0, 0}, sm = 0;
    if (masked) {
        sm = lane_mask(w0, W);
        for (int kw = 0; kw < 3; kw++) lm[kw] = lane_mask(w0 + kw - 1, W);
    }
#pragma GCC unroll 3
    for (int o = 0; o < NB; o++) {
        const float *s = dy + o * HW + (size_t)h * W + w0;
        g[o] = masked ? _mm512_maskz_loadu_ps(sm, s) : _mm512_loadu_ps(s);
    }
#pragma GCC unroll 3
    for (int kh = 0; kh < 3; kh++) {
        int sh = h + kh - 1;
        if (sh < 0 || sh >= H) continue;
        const float *r = xi + (size_t)sh * W + w0 - 1;
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; kw++) {
            __m512 xv = masked ? _mm512_maskz_loadu_ps(lm[kw], r + kw) : _mm512_loadu_ps(r + kw);
            /* one load in a register, not one folded into each multiply-add:
             * those would be misaligned loads NB times over */
            __asm__("" : "+v"(xv));
#pragma GCC unroll 3
            for (int o = 0; o < NB; o++)
                acc[o][kh * 3 + kw] = _mm512_fmadd_ps(g[o], xv, acc[o][kh * 3 + kw]);
        }
    }
}

#define DW_OB 3 /* output channels a weight-gradient tile: 27 accumulators */

/* add 0: the tile's sums overwrite dw instead of adding to it */
TILE void dw_tile(float *dw, const float *dy, const float *x, int C, int OC, int H, int W, int o0,
                  int i, int h0, int h1, const int NB, int add) {
    const size_t HW = (size_t)H * W;
    const int nv = (W + VL - 1) / VL;
    __m512 acc[DW_OB][9];
#pragma GCC unroll 3
    for (int o = 0; o < NB; o++)
#pragma GCC unroll 9
        for (int k = 0; k < 9; k++) acc[o][k] = _mm512_setzero_ps();
    const float *g = dy + (size_t)o0 * HW, *xi = x + (size_t)i * HW;
    for (int h = h0; h < h1; h++) {
        dw_vec(acc, g, xi, HW, W, H, h, 0, NB, 1);
        int v = 1;
        for (; v < nv && VL * v + VL < W; v++) dw_vec(acc, g, xi, HW, W, H, h, VL * v, NB, 0);
        for (; v < nv; v++) dw_vec(acc, g, xi, HW, W, H, h, VL * v, NB, 1);
    }
#pragma GCC unroll 3
    for (int o = 0; o < NB; o++) {
        float *d = dw + ((size_t)(o0 + o) * C + i) * 9;
#pragma GCC unroll 9
        for (int k = 0; k < 9; k++) {
            float s = _mm512_reduce_add_ps(acc[o][k]);
            d[k] = add ? d[k] + s : s;
        }
    }
    (void)OC;
}

/* Rows a band of the weight gradient: a tile streams DW_OB rows of dy and
 * one row of x (plus its neighbours) per band row, and all of them should
 * stay in L1 (about 32 KiB) while the tile runs over every input channel. */
static int dw_band_rows(int W, int H) {
    int r = (8192 / W - 2) / (DW_OB + 1);
    if (r < 1) r = 1;
    if (r > H) r = H;
    return r;
}

/* acc 0: dw overwritten (by the first band; the others add to it) */
static AVX512 void direct_dw(float *dw, const float *dy, const float *x, int C, int H, int W, int OC,
                             int acc) {
    const int RB = dw_band_rows(W, H);
    for (int h0 = 0; h0 < H; h0 += RB) {
        int h1 = H - h0 < RB ? H : h0 + RB, add = acc || h0 > 0;
        for (int o0 = 0; o0 < OC; o0 += DW_OB) {
            int nb = OC - o0;
            for (int i = 0; i < C; i++) {
                if (nb >= 3)
                    dw_tile(dw, dy, x, C, OC, H, W, o0, i, h0, h1, 3, add);
                else if (nb == 2)
                    dw_tile(dw, dy, x, C, OC, H, W, o0, i, h0, h1, 2, add);
                else
                    dw_tile(dw, dy, x, C, OC, H, W, o0, i, h0, h1, 1, add);
            }
        }
    }
}

void dacl_conv3x3_direct_backward(float *dx, float *dx2, int csplit, float *dw, const float *dy,
                                  const float *x, const float *w, int C, int H, int W, int OC,
                                  int acc) {
    direct_dw(dw, dy, x, C, H, W, OC, acc);
    if (!dx) return;
    /* dx[c] = sum over oc and taps of w[oc, c, 8-k] times dy[oc] shifted by tap k */
    Direct d = {.x = dy, .w = w, .so = 9, .si = (ptrdiff_t)C * 9, .flip = 1, .CI = OC, .CO = C,
                .H = H, .W = W};
    direct_rows(&d, dx, dx2, csplit, NULL, 0, H, NULL);
}

#else

void dacl_conv3x3_direct_forward_rows_xin(float *y, DaclXIn *xin, const float *w, const float *b,
                                          int C, int H, int W, int OC, int h0, int h1) {
    (void)y, (void)xin, (void)w, (void)b, (void)C, (void)H, (void)W, (void)OC, (void)h0, (void)h1;
}

void dacl_xin_stage(DaclXIn *xin, int C, int H, int W, int a, int b) {
    (void)xin, (void)C, (void)H, (void)W, (void)a, (void)b;
}

void dacl_conv3x3_direct_forward_rows(float *y, const float *x, const float *w, const float *b, int C,
                                      int H, int W, int OC, int h0, int h1) {
    (void)y, (void)x, (void)w, (void)b, (void)C, (void)H, (void)W, (void)OC, (void)h0, (void)h1;
}

void dacl_conv3x3_direct_backward(float *dx, float *dx2, int csplit, float *dw, const float *dy,
                                  const float *x, const float *w, int C, int H, int W, int OC,
                                  int acc) {
    (void)dx, (void)dx2, (void)csplit, (void)dw, (void)dy, (void)x, (void)w, (void)C, (void)H,
        (void)W, (void)OC, (void)acc;
}

#endif
