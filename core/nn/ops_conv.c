/* Convolutions as im2col + cblas_sgemm (darknet's approach), tiled into
 * bands of output rows so the column matrix of one band stays in cache and
 * the workspace is small; one image at a time. On CPUs with AVX-512 the 3x3
 * layers with rows of 16 pixels or more take the direct kernels of
 * ops_conv_direct.c instead (dacl_conv3x3_use_direct).
 *
 * Dims: N batch, C in channels, OC out channels, H, W spatial, HW = H*W,
 * K kernel (1 or 3), CK = C*K*K rows of the column matrix, R rows a band. */
#include <cblas.h>
#include <string.h>

#include "dacl/nn.h"
#include "ops_internal.h"

/* A band's column matrix is CK x (R*W) floats; aim for about 1 MiB. */
int dacl_conv_band_rows(int C, int H, int W) {
    long ck = (long)C * 9;
    long r = (1L << 18) / (ck * W);
    if (r < 1) r = 1;
    if (r > H) r = H;
    return (int)r;
}

size_t dacl_conv2d_ws(int C, int H, int W, int K) {
    return K == 1 ? 0 : (size_t)C * 9 * dacl_conv_band_rows(C, H, W) * W;
}

/* col [C*9, R*W] for output rows [h0, h0+R): row (c, kh, kw) holds in[c]
 * shifted by (kh-1, kw-1), zero outside. Whole rows are copied. */
static void im2col3x3_band(float *col, const float *in, int C, int H, int W, int h0, int R) {
    const size_t HW = (size_t)H * W, BP = (size_t)R * W;
    for (int c = 0; c < C; c++) {
        const float *src = in + c * HW;
        for (int kh = 0; kh < 3; kh++) {
            for (int kw = 0; kw < 3; kw++) {
                float *dst = col + ((size_t)c * 9 + kh * 3 + kw) * BP;
                int dx = kw - 1;
                for (int r = 0; r < R; r++) {
                    float *d = dst + (size_t)r * W;
                    int sh = h0 + r + kh - 1;
                    if (sh < 0 || sh >= H) {
                        memset(d, 0, sizeof(float) * W);
                        continue;
                    }
                    const float *s = src + (size_t)sh * W;
                    if (dx == 0) {
                        memcpy(d, s, sizeof(float) * W);
                    } else if (dx < 0) { /* d[w] = s[w-1] */
                        d[0] = 0.0f;
                        memcpy(d + 1, s, sizeof(float) * (W - 1));
                    } else { /* d[w] = s[w+1] */
                        memcpy(d, s + 1, sizeof(float) * (W - 1));
                        d[W - 1] = 0.0f;
                    }
                }
            }
        }
    }
}

/* The adjoint of im2col3x3_band: din[c] += the shifted rows of the band;
 * channels from csplit on go to din2 instead. */
static void col2im3x3_band(float *din, float *din2, int csplit, const float *col, int C, int H, int W,
                           int h0, int R) {
    const size_t HW = (size_t)H * W, BP = (size_t)R * W;
    for (int c = 0; c < C; c++) {
        float *dst = c < csplit ? din + c * HW : din2 + (c - csplit) * HW;
        for (int kh = 0; kh < 3; kh++) {
            for (int kw = 0; kw < 3; kw++) {
                const float *src = col + ((size_t)c * 9 + kh * 3 + kw) * BP;
                int dx = kw - 1;
                for (int r = 0; r < R; r++) {
                    int sh = h0 + r + kh - 1;
                    if (sh < 0 || sh >= H) continue;
                    const float *s = src + (size_t)r * W;
                    float *d = dst + (size_t)sh * W;
                    /* col[r, w] came from in[sh, w + dx] */
                    if (dx == 0) {
                        for (int w = 0; w < W; w++) d[w] += s[w];
                    } else if (dx < 0) {
                        for (int w = 1; w < W; w++) d[w - 1] += s[w];
                    } else {
                        for (int w = 0; w < W - 1; w++) d[w + 1] += s[w];
                    }
                }
            }
        }
    }
}

static void add_bias(float *y, const float *b, size_t HW, int W, int OC, int h0, int h1) {
    for (int oc = 0; oc < OC; oc++) {
        float bv = b[oc];
        float *yo = y + oc * HW + (size_t)h0 * W;
        for (size_t i = 0; i < (size_t)(h1 - h0) * W; i++) yo[i] += bv;
    }
}

/* Sums in 16 float lanes, so the compiler vectorises them (one running sum
 * is a chain of dependent adds, and was a twentieth of a training step). */
#define LANES 16

/* The lanes' total as a tree (8 + 8, then 4 + 4, ...): adding them one
 * after the other was 15 dependent adds a row, about a third of the row
 * statistics' time on the U-Net's short rows (16..256 pixels). */
static inline float lane_total(const float acc[LANES]) {
    float h[8], q[4];
    for (int l = 0; l < 8; l++) h[l] = acc[l] + acc[l + 8];
    for (int l = 0; l < 4; l++) q[l] = h[l] + h[l + 4];
    return (q[0] + q[2]) + (q[1] + q[3]);
}

static inline float lane_sum(const float *x, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += x[i + l];
    for (; i < n; i++) acc[0] += x[i];
    return lane_total(acc);
}

static inline float lane_sumsq_centered(const float *x, int n, float mu) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += (x[i + l] - mu) * (x[i + l] - mu);
    for (; i < n; i++) acc[0] += (x[i] - mu) * (x[i] - mu);
    return lane_total(acc);
}

/* db[oc] += sum of dy[oc, :]; acc 0: = */
static void bias_grad(float *db, const float *dy, int OC, int HW, int acc) {
    for (int oc = 0; oc < OC; oc++) {
        float s = lane_sum(dy + (size_t)oc * HW, HW);
        db[oc] = acc ? db[oc] + s : s;
    }
}

/* Per output row and channel: the row's mean and sum of squared deviations,
 * taken while the band is still in cache, for the BatchNorm that follows. */
static void row_stats(float *stats, const float *y, int H, int W, int OC, int h0, int h1) {
    const size_t HW = (size_t)H * W;
    for (int oc = 0; oc < OC; oc++) {
        for (int h = h0; h < h1; h++) {
            const float *r = y + oc * HW + (size_t)h * W;
            float mu = lane_sum(r, W) / (float)W;
            float *st = stats + ((size_t)oc * H + h) * 2;
            st[0] = mu;
            st[1] = lane_sumsq_centered(r, W, mu);
        }
    }
}

void dacl_conv_image_forward_rows(float *y, const float *x, const float *w, const float *b, int C,
                                  int H, int W, int OC, int K, int h0, int h1, float *ws) {
    dacl_conv_image_forward_rows_stats(y, x, w, b, C, H, W, OC, K, h0, h1, ws, NULL);
}

/* Which path a 3x3 layer takes. conv-bench (one thread, CPU time, AVX-512
 * Xeon): the direct forward beats im2col + sgemm at every U-Net shape
 * (1.1x at 16x16, 2.5x at 256x256); its backward wins from 64x64 up and
 * loses below, where a row is one or two vectors and the weight gradient's
 * per-band reductions no longer amortise. */
int dacl_conv3x3_use_direct(int C, int H, int W, int OC, int backward) {
    (void)C, (void)H, (void)OC;
    return W >= (backward ? 64 : 16) && dacl_conv3x3_direct_available();
}

/* Winograd (conv-bench, same machine): the forward gains from rows of 32
 * pixels and 512 channel pairs up (1.1x at 32->16 256x256, 1.8x at 64x64,
 * but 0.9x at 16->16 256x256, where transforming the input costs as much as
 * its 16 output channels' products); the input gradient from 256 channel
 * pairs (1.1x at 16->16 256x256, 1.9x at 64x64, 1.7x at 32x32). At 16x16
 * half of every vector would be padding. */
int dacl_conv3x3_use_wino(int C, int H, int W, int OC, int backward) {
    (void)H;
    return W >= 32 && C * OC >= (backward ? 256 : 512) && dacl_conv3x3_direct_available();
}

/* Its weight gradient: 1.1x the direct one at 32->32 128x128, 1.4x at 64x64,
 * 1.7x at 32x32 (conv-bench), but 0.8x at 16->16 256x256. */
int dacl_conv3x3_use_wino_dw(int C, int H, int W, int OC) {
    (void)H;
    return W >= 32 && C * OC >= 1024 && dacl_conv3x3_direct_available();
}

void dacl_conv3x3_im2col_forward_rows(float *y, const float *x, const float *w, const float *b, int C,
                                      int H, int W, int OC, int h0, int h1, float *ws) {
    const size_t HW = (size_t)H * W;
    const int CK = C * 9, RB = dacl_conv_band_rows(C, H, W);
    for (int r0 = h0; r0 < h1; r0 += RB) {
        int R = h1 - r0 < RB ? h1 - r0 : RB;
        im2col3x3_band(ws, x, C, H, W, r0, R);
        /* y[OC, band] = w[OC, CK] . col[CK, band] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, R * W, CK, 1.0f, w, CK, ws, R * W,
                    0.0f, y + (size_t)r0 * W, (int)HW);
        if (b) add_bias(y, b, HW, W, OC, r0, r0 + R);
    }
}

void dacl_conv_image_forward_rows_stats(float *y, const float *x, const float *w, const float *b,
                                        int C, int H, int W, int OC, int K, int h0, int h1, float *ws,
                                        float *stats) {
    const size_t HW = (size_t)H * W;
    if (K == 1) {
        /* y[OC, rows] = w[OC, C] . x[C, rows] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, (h1 - h0) * W, C, 1.0f, w, C,
                    x + (size_t)h0 * W, (int)HW, 0.0f, y + (size_t)h0 * W, (int)HW);
        if (b) add_bias(y, b, HW, W, OC, h0, h1);
        if (stats) row_stats(stats, y, H, W, OC, h0, h1);
        return;
    }
    if (dacl_conv3x3_use_direct(C, H, W, OC, 0)) {
        /* a few rows at a time, so the statistics read them from cache */
        for (int r0 = h0; r0 < h1; r0 += 4) {
            int r1 = h1 - r0 < 4 ? h1 : r0 + 4;
            dacl_conv3x3_direct_forward_rows(y, x, w, b, C, H, W, OC, r0, r1);
            if (stats) row_stats(stats, y, H, W, OC, r0, r1);
        }
        return;
    }
    const int RB = dacl_conv_band_rows(C, H, W);
    for (int r0 = h0; r0 < h1; r0 += RB) {
        int r1 = h1 - r0 < RB ? h1 : r0 + RB;
        dacl_conv3x3_im2col_forward_rows(y, x, w, b, C, H, W, OC, r0, r1, ws);
        if (stats) row_stats(stats, y, H, W, OC, r0, r1);
    }
}

/* Winograd's forward from x, or through xin where it is not NULL: bands of
 * three block rows (so a tile's three vectors are full at any width),
 * starting on even rows after the first, each read back by the statistics
 * while in cache */
static void wino_bands(float *y, const float *x, DaclXIn *xin, const float *U, const float *b, int C,
                       int H, int W, int OC, int h0, int h1, float *scratch, float *stats) {
    for (int r0 = h0; r0 < h1;) {
        int r1 = (r0 & ~1) + 6;
        if (r1 > h1) r1 = h1;
        if (xin)
            dacl_wino_forward_rows_xin(y, xin, U, b, C, H, W, OC, r0, r1, scratch);
        else
            dacl_wino_forward_rows(y, x, U, b, C, H, W, OC, r0, r1, scratch);
        if (stats) row_stats(stats, y, H, W, OC, r0, r1);
        r0 = r1;
    }
}

void dacl_conv_image_forward_rows_wino(float *y, const float *x, const float *U, const float *b,
                                       int C, int H, int W, int OC, int h0, int h1, float *scratch,
                                       float *stats) {
    wino_bands(y, x, NULL, U, b, C, H, W, OC, h0, h1, scratch, stats);
}

void dacl_conv_image_forward_rows_xin(float *y, DaclXIn *xin, const float *w, const float *b, int C,
                                      int H, int W, int OC, int h0, int h1, float *stats) {
    for (int r0 = h0; r0 < h1; r0 += 4) {
        int r1 = h1 - r0 < 4 ? h1 : r0 + 4;
        dacl_conv3x3_direct_forward_rows_xin(y, xin, w, b, C, H, W, OC, r0, r1);
        if (stats) row_stats(stats, y, H, W, OC, r0, r1);
    }
}

void dacl_conv_image_forward_rows_wino_xin(float *y, DaclXIn *xin, const float *U, const float *b,
                                           int C, int H, int W, int OC, int h0, int h1,
                                           float *scratch, float *stats) {
    wino_bands(y, NULL, xin, U, b, C, H, W, OC, h0, h1, scratch, stats);
}

void dacl_conv_image_backward_wino(float *dx, float *dx2, int csplit, float *dw, float *db,
                                   const float *dy, const float *x, const float *U, int C, int H,
                                   int W, int OC, int wino_dw, float *ws, int acc,
                                   const DaclBnSums *bs) {
    if (db) bias_grad(db, dy, OC, H * W, acc);
    /* with BN's sums the input gradient first: they may write the input the
     * weight gradient reads (bs->xout) */
    if (dx && bs) {
        dacl_wino_backward_data_bn(dx, dy, U, C, H, W, OC, ws, bs);
        if (bs->xout) x = bs->xout;
    }
    /* the weight gradient; ws is free again after */
    if (wino_dw)
        dacl_wino_backward_weights(dw, dy, x, C, H, W, OC, ws, acc);
    else if (dacl_conv3x3_use_direct(C, H, W, OC, 1))
        dacl_conv3x3_direct_backward(NULL, NULL, C, dw, dy, x, NULL, C, H, W, OC, acc);
    else
        dacl_conv3x3_im2col_backward(NULL, NULL, C, dw, dy, x, NULL, C, H, W, OC, ws, acc);
    if (dx && !bs) dacl_wino_backward_data(dx, dx2, csplit, dy, U, C, H, W, OC, ws);
}

void dacl_conv_image_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                              const float *w, int C, int H, int W, int OC, int K, float *ws) {
    if (K == 3) {
        dacl_conv_image_backward_split(dx, NULL, C, dw, db, dy, x, w, C, H, W, OC, ws, 1);
        return;
    }
    const int HW = H * W;
    if (db) bias_grad(db, dy, OC, HW, 1);
    /* K == 1: dw[OC, C] += dy[OC, HW] . x[C, HW]^T ; dx[C, HW] = w^T . dy */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, C, HW, 1.0f, dy, HW, x, HW, 1.0f, dw, C);
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, HW, OC, 1.0f, w, C, dy, HW, 0.0f, dx,
                    HW);
}

void dacl_conv3x3_im2col_backward(float *dx, float *dx2, int csplit, float *dw, const float *dy,
                                  const float *x, const float *w, int C, int H, int W, int OC,
                                  float *ws, int acc) {
    const int HW = H * W;
    const int CK = C * 9, RB = dacl_conv_band_rows(C, H, W);
    if (dx) {
        memset(dx, 0, sizeof(float) * csplit * HW);
        if (csplit < C) memset(dx2, 0, sizeof(float) * (C - csplit) * HW);
    }
    for (int r0 = 0; r0 < H; r0 += RB) {
        int R = H - r0 < RB ? H - r0 : RB;
        im2col3x3_band(ws, x, C, H, W, r0, R);
        /* dw[OC, CK] += dy[OC, band] . col[CK, band]^T (acc 0: the first band's =) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, CK, R * W, 1.0f, dy + (size_t)r0 * W,
                    HW, ws, R * W, acc || r0 > 0 ? 1.0f : 0.0f, dw, CK);
        if (!dx) continue;
        /* dcol[CK, band] = w[OC, CK]^T . dy[OC, band], then scattered back */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CK, R * W, OC, 1.0f, w, CK,
                    dy + (size_t)r0 * W, HW, 0.0f, ws, R * W);
        col2im3x3_band(dx, dx2, csplit, ws, C, H, W, r0, R);
    }
}

void dacl_conv_image_backward_split(float *dx, float *dx2, int csplit, float *dw, float *db,
                                    const float *dy, const float *x, const float *w, int C, int H,
                                    int W, int OC, float *ws, int acc) {
    if (db) bias_grad(db, dy, OC, H * W, acc);
    if (dacl_conv3x3_use_direct(C, H, W, OC, 1))
        dacl_conv3x3_direct_backward(dx, dx2, csplit, dw, dy, x, w, C, H, W, OC, acc);
    else
        dacl_conv3x3_im2col_backward(dx, dx2, csplit, dw, dy, x, w, C, H, W, OC, ws, acc);
}

void dacl_conv2d_forward(float *out, const float *in, const float *w, const float *b, int N, int C,
                         int H, int W, int OC, int K, float *ws) {
    const size_t HW = (size_t)H * W;
    for (int n = 0; n < N; n++)
        dacl_conv_image_forward_rows(out + n * OC * HW, in + n * C * HW, w, b, C, H, W, OC, K, 0, H,
                                     ws);
}

void dacl_conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, int N, int C, int H, int W, int OC, int K, float *ws) {
    const size_t HW = (size_t)H * W;
    for (int n = 0; n < N; n++)
        dacl_conv_image_backward(din ? din + n * C * HW : NULL, dw, db, dout + n * OC * HW,
                                 in + n * C * HW, w, C, H, W, OC, K, ws);
}

/* ------------------------------------------------ transposed conv 2x2/2 -- */

size_t dacl_convt2x2_ws(int OC, int H, int W) { return (size_t)OC * 4 * H * W; }

/* Rows of x a band of the transposed convolution: its OC*4 GEMM rows of
 * band pixels (about 512 KiB) stay in L2 between the GEMM that writes them
 * and the pass that interleaves them into y (or gathers them from dy). */
static int convt_band_rows(int OC, int H, int W) {
    int r = (1 << 17) / (OC * 4 * W);
    return r < 1 ? 1 : r > H ? H : r;
}

void dacl_convt_image_forward(float *y, const float *x, const float *w, const float *b, int C, int H,
                              int W, int OC, float *ws) {
    const int HW = H * W, W2 = 2 * W, RB = convt_band_rows(OC, H, W);
    for (int i0 = 0; i0 < H; i0 += RB) {
        const int i1 = H - i0 < RB ? H : i0 + RB, n = (i1 - i0) * W;
        /* ws[OC*4, n] = w[C, OC*4]^T . x[C, band]; row (oc, a, bb) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC * 4, n, C, 1.0f, w, OC * 4,
                    x + (size_t)i0 * W, HW, 0.0f, ws, n);
        for (int oc = 0; oc < OC; oc++) {
            float bv = b ? b[oc] : 0.0f;
            float *yo = y + (size_t)oc * 4 * HW;
            for (int a = 0; a < 2; a++) {
                const float *r0 = ws + ((size_t)oc * 4 + a * 2) * n;
                const float *r1 = r0 + n;
                for (int i = i0; i < i1; i++) {
                    float *d = yo + (size_t)(2 * i + a) * W2;
                    const float *s0 = r0 + (size_t)(i - i0) * W, *s1 = r1 + (size_t)(i - i0) * W;
                    for (int j = 0; j < W; j++) {
                        d[2 * j] = s0[j] + bv;
                        d[2 * j + 1] = s1[j] + bv;
                    }
                }
            }
        }
    }
}

void dacl_convt_image_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, int C, int H, int W, int OC, float *ws, int acc) {
    const int HW = H * W, W2 = 2 * W, RB = convt_band_rows(OC, H, W);
    for (int i0 = 0; i0 < H; i0 += RB) {
        const int i1 = H - i0 < RB ? H : i0 + RB, n = (i1 - i0) * W, add = acc || i0 > 0;
        /* gather the band of dy into ws[OC*4, n] in the forward's row order;
         * the bias gradient sums an output channel's 4 rows there after, in
         * lanes (one running sum as it gathered was a chain of dependent
         * adds, and kept the gather from vectorising) */
        for (int oc = 0; oc < OC; oc++) {
            const float *g = dy + (size_t)oc * 4 * HW;
            for (int a = 0; a < 2; a++) {
                float *r0 = ws + ((size_t)oc * 4 + a * 2) * n;
                float *r1 = r0 + n;
                for (int i = i0; i < i1; i++) {
                    const float *src = g + (size_t)(2 * i + a) * W2;
                    float *d0 = r0 + (size_t)(i - i0) * W, *d1 = r1 + (size_t)(i - i0) * W;
                    for (int j = 0; j < W; j++) {
                        d0[j] = src[2 * j];
                        d1[j] = src[2 * j + 1];
                    }
                }
            }
            if (db) {
                float s = lane_sum(ws + (size_t)oc * 4 * n, 4 * n);
                db[oc] = add ? db[oc] + s : s;
            }
        }
        /* dw[C, OC*4] += x[C, band] . ws[OC*4, n]^T (the first band's = where acc is 0) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, OC * 4, n, 1.0f, x + (size_t)i0 * W,
                    HW, ws, n, add ? 1.0f : 0.0f, dw, OC * 4);
        /* dx[C, band] = w[C, OC*4] . ws[OC*4, n] */
        if (dx)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, n, OC * 4, 1.0f, w, OC * 4, ws, n,
                        0.0f, dx + (size_t)i0 * W, HW);
    }
}

void dacl_convt2x2_forward(float *out, const float *in, const float *w, const float *b, int N,
                           int C, int H, int W, int OC, float *ws) {
    const size_t HW = (size_t)H * W;
    for (int n = 0; n < N; n++)
        dacl_convt_image_forward(out + n * OC * 4 * HW, in + n * C * HW, w, b, C, H, W, OC, ws);
}

void dacl_convt2x2_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                            const float *w, int N, int C, int H, int W, int OC, float *ws) {
    const size_t HW = (size_t)H * W;
    for (int n = 0; n < N; n++)
        dacl_convt_image_backward(din ? din + n * C * HW : NULL, dw, db, dout + n * OC * 4 * HW,
                                  in + n * C * HW, w, C, H, W, OC, ws, 1);
}

/* ------------------------------------------------ per-pixel linear layer -- */

void dacl_linear_forward(float *out, const float *in, const float *w, const float *b, int N, int C,
                         int HW, int OC) {
    dacl_conv2d_forward(out, in, w, b, N, C, HW, 1, OC, 1, NULL);
}

void dacl_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, int N, int C, int HW, int OC) {
    dacl_conv2d_backward(din, dw, db, dout, in, w, N, C, HW, 1, OC, 1, NULL);
}
