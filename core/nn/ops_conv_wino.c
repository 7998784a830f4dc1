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
 * The weight gradient is the forward's transpose: dg = G^T S G with
 * S = sum over blocks of (A^T' dY A') (.) V, A' = A^T transposed, i.e.
 * per position a product of the transformed dy [OC x blocks] and the
 * transformed input [C x blocks]^T: over bands of blocks that stay in L2,
 * tiles of 4 x 4 channel pairs keep 16-lane partial sums in registers and
 * fold them once per band.
 *
 * Dims: C, OC the layer's input and output channels, H, W, HW = H*W;
 * U [16][OC][C]. CI/CO: the kernel's own input and output channels. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ops_internal.h"

/* as in ops_conv_direct.c: the tiles need inlining to live in registers */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__OPTIMIZE__)
#pragma GCC optimize("O2")
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_WINO 1
#include <immintrin.h>

#include "ops_avx512.h"
#define AVX512 __attribute__((target("avx512f,fma")))
#define TILE static inline __attribute__((always_inline, target("avx512f,fma")))
#else
#define HAVE_WINO 0
#endif

#define OB 8  /* output channels a tile */
#define PVM 3 /* entries (vectors of 16 blocks) a tile */
#ifndef VL
#define VL 16 /* floats a vector, as in ops_avx512.h */
#endif

size_t dacl_wino_u_floats(int C, int OC) { return (size_t)16 * C * OC; }

/* V: 16 positions x CI channels x PVM vectors; M: 16 positions x OB x PVM
 * vectors; plus room to align both to 64 bytes */
size_t dacl_wino_scratch_floats(int CI) { return (size_t)16 * VL * PVM * ((size_t)CI + OB) + VL; }

/* the same plus BN's 16-lane partial sums (wino_rows) of C channels */
size_t dacl_wino_bn_scratch_floats(int C, int OC) {
    return dacl_wino_scratch_floats(OC) + (size_t)2 * VL * C;
}

/* entries (vectors of 16 blocks) a band of the weight gradient: its
 * transformed input and dy, 256 floats an entry and channel, in about
 * 1.5 MiB of L2; at least 4 so the tiles' reductions amortise */
static int wino_dw_entries(int C, int OC) {
    int e = 1536 / (C + OC);
    return e < 4 ? 4 : e > 64 ? 64 : e;
}

size_t dacl_wino_dw_scratch_floats(int C, int OC) {
    size_t tiles = (size_t)((OC + 3) / 4) * ((C + 3) / 4);
    return (size_t)256 * wino_dw_entries(C, OC) * ((size_t)C + OC) + (size_t)256 * tiles + VL;
}

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
    int R; /* 0: x is the input; else x is a DaclXIn's ring of R rows a channel, row h at h % R */
} Wino;

/* position p of the flipped kernel is position perm(p) of U: rows and
 * columns 0 and 3 swap */
static inline int perm_pos(int p, int flip) {
    static const int q[4] = {3, 1, 2, 0};
    return flip ? 4 * q[p >> 2] + q[p & 3] : p;
}

/* V[pos][i][e] for every kernel input channel i: the 4x4 blocks of entry e
 * (block row t, columns from w0) */
TILE void wino_in(float *V, const Wino *d, int t, int w0, int e, int ne) {
    const int W = d->W, H = d->H, c0 = w0 - 1;
    const size_t cs = d->R ? (size_t)d->R * W : (size_t)H * W;
    size_t ro[4]; /* where the block's rows start in a channel */
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        int sh = 2 * t - 1 + k;
        ro[k] = sh < 0 ? 0 : (size_t)(d->R ? sh % d->R : sh) * W;
    }
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __mmask16 m0 = lane_mask(c0, W), m1 = lane_mask(c0 + VL, W), m2 = lane_mask(c0 + 2, W),
                    m3 = lane_mask(c0 + 2 + VL, W);
    const ptrdiff_t vs = (ptrdiff_t)d->CI * ne * VL; /* one position */
    for (int i = 0; i < d->CI; i++) {
        const float *xi = d->x + i * cs;
        __m512 r[4][4]; /* d B, row by row */
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            int sh = 2 * t - 1 + k;
            if (sh < 0 || sh >= H) {
                r[k][0] = r[k][1] = r[k][2] = r[k][3] = _mm512_setzero_ps();
                continue;
            }
            const float *row = xi + ro[k] + c0;
            __m512 a0 = _mm512_maskz_loadu_ps(m0, row), a1 = _mm512_maskz_loadu_ps(m1, row + VL);
            __m512 b0 = _mm512_maskz_loadu_ps(m2, row + 2), b1 = _mm512_maskz_loadu_ps(m3, row + 2 + VL);
            __m512 e0 = _mm512_permutex2var_ps(a0, ev, a1), e1 = _mm512_permutex2var_ps(a0, od, a1);
            __m512 e2 = _mm512_permutex2var_ps(b0, ev, b1), e3 = _mm512_permutex2var_ps(b0, od, b1);
            r[k][0] = _mm512_sub_ps(e0, e2);
            r[k][1] = _mm512_add_ps(e1, e2);
            r[k][2] = _mm512_sub_ps(e2, e1);
            r[k][3] = _mm512_sub_ps(e1, e3);
        }
        float *v = V + ((ptrdiff_t)i * ne + e) * VL;
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            _mm512_store_ps(v + (0 + q) * vs, _mm512_sub_ps(r[0][q], r[2][q]));
            _mm512_store_ps(v + (4 + q) * vs, _mm512_add_ps(r[1][q], r[2][q]));
            _mm512_store_ps(v + (8 + q) * vs, _mm512_sub_ps(r[2][q], r[1][q]));
            _mm512_store_ps(v + (12 + q) * vs, _mm512_sub_ps(r[1][q], r[3][q]));
        }
    }
}

/* The cache lines of BN's input x (DaclBnSums) that the input gradient's
 * products prefetch into L2 a few at a time, so the loads overlap them:
 * block row after block row (rows 2t, 2t+1), channel after channel, up to
 * block row tmax (exclusive: one row ahead of the sums) */
typedef struct {
    const char *x;
    size_t plane, row; /* bytes a plane, a row */
    int C, H, t, c, per, tmax;
    size_t off; /* of the next line in the plane */
} PfCursor;

static inline void pf_line(const char *a) { __asm__ volatile("prefetcht1 %0" : : "m"(*a)); }

static inline size_t pf_end(const PfCursor *p) {
    return (size_t)(2 * p->t + 2 < p->H ? 2 * p->t + 2 : p->H) * p->row;
}

static inline void pf_step(PfCursor *p) {
    for (int k = 0; k < p->per && p->t < p->tmax; k++) {
        pf_line(p->x + (size_t)p->c * p->plane + p->off);
        p->off += 64;
        if (p->off < pf_end(p)) continue;
        if (++p->c == p->C) p->c = 0, p->t++;
        p->off = (size_t)2 * p->t * p->row & ~(size_t)63;
    }
}

/* M[pos][o][e] = sum over i of U[pos][o0+o][i] V[pos][i][e], o < OB (missing
 * channels repeat the last one) */
TILE void wino_mul(float *M, const float *V, const Wino *d, int o0, int nout, const int PV,
                   PfCursor *pf) {
    const ptrdiff_t vs = (ptrdiff_t)d->CI * PVM * VL;
    for (int pos = 0; pos < 16; pos++) {
        if (pf) pf_step(pf);
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
                              int h0, int h1, const Entries *en, const int PV, float *V, float *M,
                              PfCursor *pf) {
    const size_t HW = (size_t)d->H * d->W;
    for (int e = 0; e < PV; e++) wino_in(V, d, en->t[e], en->w0[e], e, PVM);
    for (int o0 = 0; o0 < d->CO; o0 += OB) {
        int nout = d->CO - o0 < OB ? d->CO - o0 : OB;
        if (PV == 3)
            wino_mul(M, V, d, o0, nout, 3, pf);
        else if (PV == 2)
            wino_mul(M, V, d, o0, nout, 2, pf);
        else
            wino_mul(M, V, d, o0, nout, 1, pf);
        for (int o = 0; o < nout; o++) {
            int oc = o0 + o;
            float *yo = oc < split ? y + (size_t)oc * HW : y2 + (size_t)(oc - split) * HW;
            float bv = bias ? bias[oc] : 0.0f;
            for (int e = 0; e < PV; e++)
                wino_out(yo, M, o, e, bv, en->t[e], en->w0[e], h0, h1, d->W);
        }
    }
}

/* BN's input x of the rows of block row t into L2 (the sums read them
 * next, as the entries of that row are computed) */
static AVX512 void bn_sums_prefetch(const DaclBnSums *bs, int CO, int H, int W, int t) {
    if (2 * t >= H) return;
    const size_t HW = (size_t)H * W;
    const size_t i0 = (size_t)2 * t * W, i1 = (size_t)(2 * t + 2 < H ? 2 * t + 2 : H) * W;
    for (int c = 0; c < CO; c++) {
        const char *x = (const char *)(bs->x + (size_t)c * HW);
        for (size_t b = i0 * sizeof(float) & ~(size_t)63; b < i1 * sizeof(float); b += 64)
            pf_line(x + b);
    }
}

/* BN's sums (DaclBnSums) over rows 2t and 2t+1 of every channel of y (just
 * written: in L1 or L2), into 16-lane partial sums acc [CO][2][VL]: dz as
 * ops_norm.c's dz_at computes it, z by a multiply and an add as the
 * forward's (so the sign is the same) */
static AVX512 void bn_sums_rows(float *acc, const float *y, const DaclBnSums *bs, int CO, int H,
                                int W, int t) {
    float *xo = bs->xout;
    const size_t HW = (size_t)H * W, mw = dacl_mask_words(HW);
    const size_t i0 = (size_t)2 * t * W, i1 = (size_t)(2 * t + 2 < H ? 2 * t + 2 : H) * W;
    const __m512 ks = _mm512_set1_ps(bs->ks), slope = _mm512_set1_ps(bs->slope);
    for (int c = 0; c < CO; c++) {
        const float *g = y + (size_t)c * HW, *x = bs->x + (size_t)c * HW;
        const uint64_t *mb = bs->mask ? bs->mask + (size_t)c * mw : NULL;
        const __m512 sc = _mm512_set1_ps(bs->scale[c]), sh = _mm512_set1_ps(bs->shift[c]);
        const __m512 mu = _mm512_set1_ps(bs->mean[c]);
        __m512 a1 = _mm512_load_ps(acc + (size_t)2 * c * VL);
        __m512 a2 = _mm512_load_ps(acc + (size_t)(2 * c + 1) * VL);
        for (size_t i = i0; i < i1; i += VL) {
            const __mmask16 k = i1 - i >= VL ? (__mmask16)0xFFFF : (__mmask16)((1u << (i1 - i)) - 1);
            __m512 gv = _mm512_maskz_loadu_ps(k, g + i), xv = _mm512_maskz_loadu_ps(k, x + i);
            const __mmask16 keep = mb ? keep_bits16(mb, i, mw) : (__mmask16)0xFFFF;
            if (mb) gv = _mm512_maskz_mul_ps(keep, gv, ks);
            __m512 z = _mm512_add_ps(_mm512_mul_ps(xv, sc), sh);
            __mmask16 pos = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GT_OQ);
            __m512 dz = _mm512_mask_mov_ps(_mm512_mul_ps(gv, slope), pos, gv);
            if (xo) {
                __m512 a = _mm512_mask_mov_ps(_mm512_mul_ps(z, slope), pos, z);
                if (mb) a = _mm512_maskz_mul_ps(keep, a, ks);
                _mm512_mask_storeu_ps(xo + (size_t)c * HW + i, k, a);
            }
            a1 = _mm512_add_ps(a1, dz);
            a2 = _mm512_fmadd_ps(dz, _mm512_sub_ps(xv, mu), a2);
        }
        _mm512_store_ps(acc + (size_t)2 * c * VL, a1);
        _mm512_store_ps(acc + (size_t)(2 * c + 1) * VL, a2);
    }
}

/* Rows [h0, h1) of every output channel (channel o at y + o*HW, or at
 * y2 + (o - split)*HW from split on). Blocks cover rows 2t and 2t+1 of the
 * whole image, so a band that starts or ends on an odd row computes a row
 * it does not store. bs (whole image, no y2 only; else NULL): BN's sums,
 * each pair of rows summed once its last entry is written; acc: 16-lane
 * partial sums, 2 CO vectors after M */
static AVX512 void wino_rows(const Wino *d, float *y, float *y2, int split, const float *bias,
                             int h0, int h1, float *scratch, const DaclBnSums *bs,
                             DaclXIn *xin) {
    float *V = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *M = V + (size_t)16 * d->CI * PVM * VL;
    float *acc = M + (size_t)16 * OB * PVM * VL;
    const int ng = (d->W + 2 * VL - 1) / (2 * VL), t0 = h0 / 2, t1 = (h1 + 1) / 2;
    const int n = (t1 - t0) * ng;
    PfCursor pf = {0};
    if (bs) {
        memset(acc, 0, sizeof(float) * 2 * (size_t)d->CO * VL);
        bn_sums_prefetch(bs, d->CO, d->H, d->W, t0);
        /* the lines of a block row over the product steps of its entries */
        const size_t row = (size_t)d->W * sizeof(float);
        const int lines = d->CO * (int)((2 * row + 63) / 64 + 1);
        const int steps = ng * ((d->CO + OB - 1) / OB) * 16 / PVM;
        pf = (PfCursor){.x = (const char *)bs->x, .plane = (size_t)d->H * row, .row = row,
                        .C = d->CO, .H = d->H, .t = t0 + 1, .c = 0,
                        .per = steps > 0 ? (lines + steps - 1) / steps : lines,
                        .tmax = t0 + 2 < t1 ? t0 + 2 : t1,
                        .off = (size_t)2 * (t0 + 1) * row & ~(size_t)63};
    }
    int ts = t0; /* the next block row to sum */
    for (int k = 0; k < n;) {
        int PV = n - k < PVM ? n - k : PVM;
        Entries en;
        for (int e = 0; e < PV; e++) {
            en.t[e] = t0 + (k + e) / ng;
            en.w0[e] = 2 * VL * ((k + e) % ng);
        }
        /* the tile's input rows (at most three block rows: 8) */
        if (xin) dacl_xin_stage(xin, d->CI, d->H, d->W, 2 * en.t[0] - 1, 2 * en.t[PV - 1] + 3);
        wino_block(d, y, y2, split, bias, h0, h1, &en, PV, V, M, bs ? &pf : NULL);
        k += PV;
        for (; bs && ts < t1 && k >= (ts - t0 + 1) * ng; ts++) {
            bn_sums_rows(acc, y, bs, d->CO, d->H, d->W, ts);
            pf.tmax = ts + 3 < t1 ? ts + 3 : t1;
            if (pf.t < ts + 1) /* fallen behind: from the row being computed on */
                pf.t = ts + 1, pf.c = 0, pf.off = (size_t)2 * pf.t * pf.row & ~(size_t)63;
        }
    }
    if (!bs) return;
    for (int c = 0; c < d->CO; c++) {
        double s1 = 0.0, s2 = 0.0;
        for (int l = 0; l < VL; l++)
            s1 += acc[(size_t)2 * c * VL + l], s2 += acc[(size_t)(2 * c + 1) * VL + l];
        bs->sums[2 * c] = s1;
        bs->sums[2 * c + 1] = s2;
    }
}

void dacl_wino_forward_rows(float *y, const float *x, const float *U, const float *b, int C, int H,
                            int W, int OC, int h0, int h1, float *scratch) {
    Wino d = {.x = x, .U = U, .so = C, .si = 1, .sp = (ptrdiff_t)OC * C, .flip = 0, .CI = C,
              .CO = OC, .H = H, .W = W};
    wino_rows(&d, y, NULL, OC, b, h0, h1, scratch, NULL, NULL);
}

void dacl_wino_forward_rows_xin(float *y, DaclXIn *xin, const float *U, const float *b, int C,
                                int H, int W, int OC, int h0, int h1, float *scratch) {
    Wino d = {.x = xin->ring, .U = U, .so = C, .si = 1, .sp = (ptrdiff_t)OC * C, .flip = 0, .CI = C,
              .CO = OC, .H = H, .W = W, .R = xin->rows};
    wino_rows(&d, y, NULL, OC, b, h0, h1, scratch, NULL, xin);
}

void dacl_wino_backward_data(float *dx, float *dx2, int csplit, const float *dy, const float *U,
                             int C, int H, int W, int OC, float *scratch) {
    /* kernel output c, input oc: U[perm(p)][oc][c] */
    Wino d = {.x = dy, .U = U, .so = 1, .si = C, .sp = (ptrdiff_t)OC * C, .flip = 1, .CI = OC,
              .CO = C, .H = H, .W = W};
    wino_rows(&d, dx, dx2, csplit, NULL, 0, H, scratch, NULL, NULL);
}

void dacl_wino_backward_data_bn(float *dx, const float *dy, const float *U, int C, int H, int W,
                                int OC, float *scratch, const DaclBnSums *bs) {
    Wino d = {.x = dy, .U = U, .so = 1, .si = C, .sp = (ptrdiff_t)OC * C, .flip = 1, .CI = OC,
              .CO = C, .H = H, .W = W};
    wino_rows(&d, dx, NULL, C, NULL, 0, H, scratch, bs, NULL);
}

/* Yh[pos][o][e] for every output channel o: A dY A^T of the 2x2 blocks of
 * dy of entry e (rows 2t, 2t+1, columns from w0), A = [1 0; 1 1; 1 -1; 0 -1] */
TILE void wino_dy_in(float *Yh, const float *dy, int OC, int H, int W, int t, int w0, int e,
                     int ne) {
    const size_t HW = (size_t)H * W;
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __mmask16 m0 = lane_mask(w0, W), m1 = lane_mask(w0 + VL, W);
    const ptrdiff_t vs = (ptrdiff_t)OC * ne * VL;
    for (int o = 0; o < OC; o++) {
        __m512 r[2][4]; /* dY A^T, row by row */
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++) {
            int h = 2 * t + k;
            if (h >= H) {
                r[k][0] = r[k][1] = r[k][2] = r[k][3] = _mm512_setzero_ps();
                continue;
            }
            const float *row = dy + o * HW + (size_t)h * W + w0;
            __m512 a0 = _mm512_maskz_loadu_ps(m0, row), a1 = _mm512_maskz_loadu_ps(m1, row + VL);
            __m512 d0 = _mm512_permutex2var_ps(a0, ev, a1), d1 = _mm512_permutex2var_ps(a0, od, a1);
            r[k][0] = d0;
            r[k][1] = _mm512_add_ps(d0, d1);
            r[k][2] = _mm512_sub_ps(d0, d1);
            r[k][3] = _mm512_sub_ps(_mm512_setzero_ps(), d1);
        }
        float *v = Yh + ((ptrdiff_t)o * ne + e) * VL;
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            _mm512_store_ps(v + (0 + q) * vs, r[0][q]);
            _mm512_store_ps(v + (4 + q) * vs, _mm512_add_ps(r[0][q], r[1][q]));
            _mm512_store_ps(v + (8 + q) * vs, _mm512_sub_ps(r[0][q], r[1][q]));
            _mm512_store_ps(v + (12 + q) * vs, _mm512_sub_ps(_mm512_setzero_ps(), r[1][q]));
        }
    }
}

/* The 16 sums of 16 vectors in one vector: halves, quarters, pairs, then
 * single lanes folded in four rounds of shuffles (45 instructions instead
 * of 16 full reductions). Which lane holds which sum: wino_hsum_lanes. */
TILE __m512 hsum16(const __m512 a[16]) {
    __m512 b[8], c[4], d[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++)
        d[i] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * i], c[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(c[2 * i], c[2 * i + 1], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD));
}

/* lane[k]: the lane of hsum16's result that holds the sum of a[k], found by
 * summing vectors that are k everywhere (exact in float) */
static AVX512 void wino_hsum_lanes(int lane[16]) {
    __m512 a[16];
    float out[16];
    for (int k = 0; k < 16; k++) a[k] = _mm512_set1_ps((float)k);
    _mm512_storeu_ps(out, hsum16(a));
    for (int l = 0; l < 16; l++) lane[(int)out[l] / 16] = l;
}

#define DW_B 4 /* output and input channels a weight-gradient tile: 16 accumulators */

/* S16[16] += sums over the band's blocks of Yh[pos][o0+j] * V[pos][c0+k]
 * (16 accumulators, j, k < 4, in hsum16's lane order; channels past the
 * last repeat it and are not read back); add 0: = */
TILE void dw_tile(float *S16, const float *V, const float *Yh, int C, int OC, int ne, int pos, int o0,
                  int c0, int add) {
    const float *yp[DW_B], *vp[DW_B];
#pragma GCC unroll 4
    for (int j = 0; j < DW_B; j++) {
        int o = o0 + j < OC ? o0 + j : OC - 1, c = c0 + j < C ? c0 + j : C - 1;
        yp[j] = Yh + ((ptrdiff_t)pos * OC + o) * ne * VL;
        vp[j] = V + ((ptrdiff_t)pos * C + c) * ne * VL;
    }
    __m512 acc[DW_B * DW_B];
#pragma GCC unroll 16
    for (int k = 0; k < DW_B * DW_B; k++) acc[k] = _mm512_setzero_ps();
    for (int e = 0; e < ne; e++) {
        __m512 y[DW_B], v[DW_B];
#pragma GCC unroll 4
        for (int j = 0; j < DW_B; j++) {
            y[j] = _mm512_load_ps(yp[j] + e * VL);
            v[j] = _mm512_load_ps(vp[j] + e * VL);
        }
#pragma GCC unroll 4
        for (int j = 0; j < DW_B; j++)
#pragma GCC unroll 4
            for (int k = 0; k < DW_B; k++)
                acc[j * DW_B + k] = _mm512_fmadd_ps(y[j], v[k], acc[j * DW_B + k]);
    }
    const __m512 s = hsum16(acc);
    _mm512_storeu_ps(S16, add ? _mm512_add_ps(_mm512_loadu_ps(S16), s) : s);
}

static AVX512 void wino_dw_band(float *V, float *Yh, float *S, const Wino *d, const float *dy,
                                int OC, int k0, int ne, int ng) {
    for (int e = 0; e < ne; e++) {
        int t = (k0 + e) / ng, w0 = 2 * VL * ((k0 + e) % ng);
        wino_in(V, d, t, w0, e, ne);
        wino_dy_in(Yh, dy, OC, d->H, d->W, t, w0, e, ne);
    }
    const int C = d->CI, ob = (OC + DW_B - 1) / DW_B, cb = (C + DW_B - 1) / DW_B;
    for (int pos = 0; pos < 16; pos++)
        for (int o = 0; o < ob; o++)
            for (int c = 0; c < cb; c++)
                dw_tile(S + (((size_t)pos * ob + o) * cb + c) * VL, V, Yh, C, OC, ne, pos, o * DW_B,
                        c * DW_B, k0 > 0);
}

void dacl_wino_backward_weights(float *dw, const float *dy, const float *x, int C, int H, int W,
                                int OC, float *scratch, int acc) {
    const int E = wino_dw_entries(C, OC), ng = (W + 2 * VL - 1) / (2 * VL);
    const int ob = (OC + DW_B - 1) / DW_B, cb = (C + DW_B - 1) / DW_B;
    float *V = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *Yh = V + (size_t)16 * VL * E * C, *S = Yh + (size_t)16 * VL * E * OC;
    /* S is not zeroed: the first band writes it (16 floats a channel pair) */
    Wino d = {.x = x, .CI = C, .H = H, .W = W};
    const int n = (H + 1) / 2 * ng;
    for (int k = 0; k < n; k += E) wino_dw_band(V, Yh, S, &d, dy, OC, k, n - k < E ? n - k : E, ng);
    /* dw += G^T S G, or dw = G^T S G (acc 0) */
    int lane[16];
    wino_hsum_lanes(lane);
    for (int oc = 0; oc < OC; oc++)
        for (int c = 0; c < C; c++) {
            const float *s16 = S + ((size_t)(oc / DW_B) * cb + c / DW_B) * VL;
            const int l = lane[(oc % DW_B) * DW_B + c % DW_B];
            const size_t sp = (size_t)ob * cb * VL; /* one position */
            float s[4][4], t[3][4];
            for (int p = 0; p < 16; p++) s[p >> 2][p & 3] = s16[p * sp + l];
            for (int b = 0; b < 4; b++) {
                t[0][b] = s[0][b] + 0.5f * (s[1][b] + s[2][b]);
                t[1][b] = 0.5f * (s[1][b] - s[2][b]);
                t[2][b] = 0.5f * (s[1][b] + s[2][b]) + s[3][b];
            }
            float *g = dw + ((size_t)oc * C + c) * 9;
            for (int k = 0; k < 3; k++) {
                float r[3] = {t[k][0] + 0.5f * (t[k][1] + t[k][2]), 0.5f * (t[k][1] - t[k][2]),
                              0.5f * (t[k][1] + t[k][2]) + t[k][3]};
                for (int q = 0; q < 3; q++) g[k * 3 + q] = acc ? g[k * 3 + q] + r[q] : r[q];
            }
        }
}

#else

void dacl_wino_forward_rows_xin(float *y, DaclXIn *xin, const float *U, const float *b, int C,
                                int H, int W, int OC, int h0, int h1, float *scratch) {
    (void)y, (void)xin, (void)U, (void)b, (void)C, (void)H, (void)W, (void)OC, (void)h0, (void)h1,
        (void)scratch;
}

void dacl_wino_backward_weights(float *dw, const float *dy, const float *x, int C, int H, int W,
                                int OC, float *scratch, int acc) {
    (void)dw, (void)dy, (void)x, (void)C, (void)H, (void)W, (void)OC, (void)scratch, (void)acc;
}

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

void dacl_wino_backward_data_bn(float *dx, const float *dy, const float *U, int C, int H, int W,
                                int OC, float *scratch, const DaclBnSums *bs) {
    (void)dx, (void)dy, (void)U, (void)C, (void)H, (void)W, (void)OC, (void)scratch, (void)bs;
}

#endif
