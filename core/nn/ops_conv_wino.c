/* Winograd F(2x2, 3x3) convolutions (stride 1, pad 1) in AVX-512, for the
 * forward and the input gradient of the 3x3 layers (Lavin and Gray, "Fast
 * Algorithms for Convolutional Neural Networks", 2016). A 2x2 block of
 * outputs from a 4x4 block of input takes 16 multiply-adds per channel pair
 * instead of 36; the transforms of the input and the output are adds,
 * shared by every output and input channel respectively.
 *
 *   U = G g G^T  (weights, once per op: dacl_wino_weights)
 *   V = B^T d B  (each input channel's 4x4 block)
 *   M = sum over input channels of U (.) V, position by position
 *   Y = A^T M A  (2x2 outputs)
 *
 * with G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1], B^T = [1 0 -1 0; 0 1 1 0;
 * 0 -1 1 0; 0 1 0 -1], A^T = [1 1 1 0; 0 1 -1 -1].
 *
 * Vectors hold 16 blocks side by side along a row: the 4 columns of each
 * block are the even and odd lanes of two loads (a permute each). A tile
 * is PV such vectors (each one "entry": a block row t, which makes output
 * rows 2t and 2t+1, and 32 columns from w0) times OB output channels of
 * accumulators, the same register shape as the direct kernel, with the
 * input channel as the inner loop and one position at a time.
 *
 * The input gradient is the same kernel over dy: flipping g rotates G's
 * rows 0 and 3 (G J = P G), so its U is the forward's with positions
 * permuted and the channel roles swapped; no second transform.
 *
 * Dims: C, OC the layer's input and output channels, H, W, HW = H*W;
 * U [16][OC][C]. CI/CO: the kernel's own input and output channels. */
#include <stddef.h>
#include <stdint.h>

#include "ops_internal.h"

/* as in ops_conv_direct.c: the tiles need inlining to live in registers */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__OPTIMIZE__)
#pragma GCC optimize("O2")
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_WINO 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,fma")))
#define TILE static inline __attribute__((always_inline, target("avx512f,fma")))
#else
#define HAVE_WINO 0
#endif

#define OB 8  /* output channels a tile */
#define PVM 3 /* entries (vectors of 16 blocks) a tile */
#define VL 16

size_t dacl_wino_u_floats(int C, int OC) { return (size_t)16 * C * OC; }

/* V: 16 positions x CI channels x PVM vectors; M: 16 positions x OB x PVM
 * vectors; plus room to align both to 64 bytes */
size_t dacl_wino_scratch_floats(int CI) { return (size_t)16 * VL * PVM * ((size_t)CI + OB) + VL; }

void dacl_wino_weights(float *U, const float *w, int C, int OC, int oc0, int oc1) {
    const size_t sp = (size_t)OC * C;
    for (int oc = oc0; oc < oc1; oc++) {
        for (int c = 0; c < C; c++) {
            const float *g = w + ((size_t)oc * C + c) * 9;
            float t[4][3]; /* G g */
            for (int k = 0; k < 3; k++) {
                t[0][k] = g[k];
                t[1][k] = 0.5f * (g[k] + g[3 + k] + g[6 + k]);
                t[2][k] = 0.5f * (g[k] - g[3 + k] + g[6 + k]);
                t[3][k] = g[6 + k];
            }
            float *u = U + (size_t)oc * C + c;
            for (int a = 0; a < 4; a++) { /* (G g) G^T */
                u[(4 * a + 0) * sp] = t[a][0];
                u[(4 * a + 1) * sp] = 0.5f * (t[a][0] + t[a][1] + t[a][2]);
                u[(4 * a + 2) * sp] = 0.5f * (t[a][0] - t[a][1] + t[a][2]);
                u[(4 * a + 3) * sp] = t[a][2];
            }
        }
    }
}

#if HAVE_WINO

typedef struct {
    const float *x;       /* kernel input [CI,H,W] */
    const float *U;       /* the layer's U */
    ptrdiff_t so, si, sp; /* U of position p, kernel output o, input i: U[perm(p)*sp + o*so + i*si] */
    int flip, CI, CO, H, W;
} Wino;

static inline __mmask16 lane_mask(int start, int W) {
    int lo = start < 0 ? -start : 0, hi = W - start;
    if (hi > VL) hi = VL;
    if (hi <= lo) return 0;
    return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

/* position p of the flipped kernel is position perm(p) of U: rows and
 * columns 0 and 3 swap */
static inline int perm_pos(int p, int flip) {
    static const int q[4] = {3, 1, 2, 0};
    return flip ? 4 * q[p >> 2] + q[p & 3] : p;
}

/* V[pos][i][e] for every kernel input channel i: the 4x4 blocks of entry e
 * (block row t, columns from w0) */
TILE void wino_in(float *V, const Wino *d, int t, int w0, int e) {
    const int W = d->W, H = d->H, c0 = w0 - 1;
    const size_t HW = (size_t)H * W;
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __mmask16 m0 = lane_mask(c0, W), m1 = lane_mask(c0 + VL, W), m2 = lane_mask(c0 + 2, W),
                    m3 = lane_mask(c0 + 2 + VL, W);
    const ptrdiff_t vs = (ptrdiff_t)d->CI * PVM * VL; /* one position */
    for (int i = 0; i < d->CI; i++) {
        const float *xi = d->x + i * HW;
        __m512 r[4][4]; /* d B, row by row */
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            int sh = 2 * t - 1 + k;
            if (sh < 0 || sh >= H) {
                r[k][0] = r[k][1] = r[k][2] = r[k][3] = _mm512_setzero_ps();
                continue;
            }
            const float *row = xi + (size_t)sh * W + c0;
            __m512 a0 = _mm512_maskz_loadu_ps(m0, row), a1 = _mm512_maskz_loadu_ps(m1, row + VL);
            __m512 b0 = _mm512_maskz_loadu_ps(m2, row + 2), b1 = _mm512_maskz_loadu_ps(m3, row + 2 + VL);
            __m512 e0 = _mm512_permutex2var_ps(a0, ev, a1), e1 = _mm512_permutex2var_ps(a0, od, a1);
            __m512 e2 = _mm512_permutex2var_ps(b0, ev, b1), e3 = _mm512_permutex2var_ps(b0, od, b1);
            r[k][0] = _mm512_sub_ps(e0, e2);
            r[k][1] = _mm512_add_ps(e1, e2);
            r[k][2] = _mm512_sub_ps(e2, e1);
            r[k][3] = _mm512_sub_ps(e1, e3);
        }
        float *v = V + ((ptrdiff_t)i * PVM + e) * VL;
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            _mm512_store_ps(v + (0 + q) * vs, _mm512_sub_ps(r[0][q], r[2][q]));
            _mm512_store_ps(v + (4 + q) * vs, _mm512_add_ps(r[1][q], r[2][q]));
            _mm512_store_ps(v + (8 + q) * vs, _mm512_sub_ps(r[2][q], r[1][q]));
            _mm512_store_ps(v + (12 + q) * vs, _mm512_sub_ps(r[1][q], r[3][q]));
        }
    }
}

/* M[pos][o][e] = sum over i of U[pos][o0+o][i] V[pos][i][e], o < OB (missing
 * channels repeat the last one) */
TILE void wino_mul(float *M, const float *V, const Wino *d, int o0, int nout, const int PV) {
    const ptrdiff_t vs = (ptrdiff_t)d->CI * PVM * VL;
    for (int pos = 0; pos < 16; pos++) {
        const float *wo[OB];
        const float *up = d->U + perm_pos(pos, d->flip) * d->sp;
#pragma GCC unroll 8
        for (int o = 0; o < OB; o++) wo[o] = up + (o < nout ? o0 + o : o0 + nout - 1) * d->so;
        __m512 acc[OB][PVM];
#pragma GCC unroll 8
        for (int o = 0; o < OB; o++)
#pragma GCC unroll 3
            for (int e = 0; e < PV; e++) acc[o][e] = _mm512_setzero_ps();
        const float *v = V + pos * vs;
        for (int i = 0; i < d->CI; i++) {
            __m512 xv[PVM];
#pragma GCC unroll 3
            for (int e = 0; e < PV; e++) xv[e] = _mm512_load_ps(v + ((ptrdiff_t)i * PVM + e) * VL);
            const ptrdiff_t wi = i * d->si;
#pragma GCC unroll 8
            for (int o = 0; o < OB; o++) {
                __m512 wv = _mm512_set1_ps(wo[o][wi]);
#pragma GCC unroll 3
                for (int e = 0; e < PV; e++) acc[o][e] = _mm512_fmadd_ps(wv, xv[e], acc[o][e]);
            }
        }
        float *m = M + (ptrdiff_t)pos * OB * PVM * VL;
#pragma GCC unroll 8
        for (int o = 0; o < OB; o++)
#pragma GCC unroll 3
            for (int e = 0; e < PV; e++) _mm512_store_ps(m + (o * PVM + e) * VL, acc[o][e]);
    }
}

/* Y = A^T M A of output o, entry e, plus bias; stores the rows of [h0, h1) */
TILE void wino_out(float *y, const float *M, int o, int e, float bias, int t, int w0, int h0,
                   int h1, int W) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const ptrdiff_t ps = OB * PVM * VL;
    const float *m = M + (o * PVM + e) * VL;
    __m512 s[4][2];
#pragma GCC unroll 4
    for (int a = 0; a < 4; a++) {
        __m512 m0 = _mm512_load_ps(m + (4 * a + 0) * ps), m1 = _mm512_load_ps(m + (4 * a + 1) * ps);
        __m512 m2 = _mm512_load_ps(m + (4 * a + 2) * ps), m3 = _mm512_load_ps(m + (4 * a + 3) * ps);
        s[a][0] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
        s[a][1] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
    }
    const __m512 b = _mm512_set1_ps(bias);
    const __mmask16 k0 = lane_mask(w0, W), k1 = lane_mask(w0 + VL, W);
#pragma GCC unroll 2
    for (int r = 0; r < 2; r++) {
        int h = 2 * t + r;
        if (h < h0 || h >= h1) continue;
        __m512 y0, y1;
        if (r == 0) {
            y0 = _mm512_add_ps(_mm512_add_ps(s[0][0], s[1][0]), _mm512_add_ps(s[2][0], b));
            y1 = _mm512_add_ps(_mm512_add_ps(s[0][1], s[1][1]), _mm512_add_ps(s[2][1], b));
        } else {
            y0 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[1][0], s[2][0]), s[3][0]), b);
            y1 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[1][1], s[2][1]), s[3][1]), b);
        }
        float *row = y + (size_t)h * W + w0;
        _mm512_mask_storeu_ps(row, k0, _mm512_permutex2var_ps(y0, lo, y1));
        _mm512_mask_storeu_ps(row + VL, k1, _mm512_permutex2var_ps(y0, hi, y1));
    }
}

/* the entries of a tile: PV consecutive (block row, 32-column group) pairs
 * of the band, in row-major order from entry index k */
typedef struct {
    int t[PVM], w0[PVM];
} Entries;

static AVX512 void wino_block(const Wino *d, float *y, float *y2, int split, const float *bias,
                              int h0, int h1, const Entries *en, const int PV, float *V, float *M) {
    const size_t HW = (size_t)d->H * d->W;
    for (int e = 0; e < PV; e++) wino_in(V, d, en->t[e], en->w0[e], e);
    for (int o0 = 0; o0 < d->CO; o0 += OB) {
        int nout = d->CO - o0 < OB ? d->CO - o0 : OB;
        if (PV == 3)
            wino_mul(M, V, d, o0, nout, 3);
        else if (PV == 2)
            wino_mul(M, V, d, o0, nout, 2);
        else
            wino_mul(M, V, d, o0, nout, 1);
        for (int o = 0; o < nout; o++) {
            int oc = o0 + o;
            float *yo = oc < split ? y + (size_t)oc * HW : y2 + (size_t)(oc - split) * HW;
            float bv = bias ? bias[oc] : 0.0f;
            for (int e = 0; e < PV; e++)
                wino_out(yo, M, o, e, bv, en->t[e], en->w0[e], h0, h1, d->W);
        }
    }
}

/* Rows [h0, h1) of every output channel (channel o at y + o*HW, or at
 * y2 + (o - split)*HW from split on). Blocks cover rows 2t and 2t+1 of the
 * whole image, so a band that starts or ends on an odd row computes a row
 * it does not store. */
static AVX512 void wino_rows(const Wino *d, float *y, float *y2, int split, const float *bias,
                             int h0, int h1, float *scratch) {
    float *V = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *M = V + (size_t)16 * d->CI * PVM * VL;
    const int ng = (d->W + 2 * VL - 1) / (2 * VL), t0 = h0 / 2, t1 = (h1 + 1) / 2;
    const int n = (t1 - t0) * ng;
    for (int k = 0; k < n;) {
        int PV = n - k < PVM ? n - k : PVM;
        Entries en;
        for (int e = 0; e < PV; e++) {
            en.t[e] = t0 + (k + e) / ng;
            en.w0[e] = 2 * VL * ((k + e) % ng);
        }
        wino_block(d, y, y2, split, bias, h0, h1, &en, PV, V, M);
        k += PV;
    }
}

void dacl_wino_forward_rows(float *y, const float *x, const float *U, const float *b, int C, int H,
                            int W, int OC, int h0, int h1, float *scratch) {
    Wino d = {.x = x, .U = U, .so = C, .si = 1, .sp = (ptrdiff_t)OC * C, .flip = 0, .CI = C,
              .CO = OC, .H = H, .W = W};
    wino_rows(&d, y, NULL, OC, b, h0, h1, scratch);
}

void dacl_wino_backward_data(float *dx, float *dx2, int csplit, const float *dy, const float *U,
                             int C, int H, int W, int OC, float *scratch) {
    /* kernel output c, input oc: U[perm(p)][oc][c] */
    Wino d = {.x = dy, .U = U, .so = 1, .si = C, .sp = (ptrdiff_t)OC * C, .flip = 1, .CI = OC,
              .CO = C, .H = H, .W = W};
    wino_rows(&d, dx, dx2, csplit, NULL, 0, H, scratch);
}

#else

void dacl_wino_forward_rows(float *y, const float *x, const float *U, const float *b, int C, int H,
                            int W, int OC, int h0, int h1, float *scratch) {
    (void)y, (void)x, (void)U, (void)b, (void)C, (void)H, (void)W, (void)OC, (void)h0, (void)h1,
        (void)scratch;
}

void dacl_wino_backward_data(float *dx, float *dx2, int csplit, const float *dy, const float *U,
                             int C, int H, int W, int OC, float *scratch) {
    (void)dx, (void)dx2, (void)csplit, (void)dy, (void)U, (void)C, (void)H, (void)W, (void)OC,
        (void)scratch;
}

#endif
