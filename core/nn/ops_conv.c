/* Convolutions as im2col + cblas_sgemm (darknet's approach), one image at a
 * time so the workspace is one image's column matrix.
 *
 * Dims: N batch, C in channels, OC out channels, H, W spatial, HW = H*W,
 * K kernel (1 or 3), CK = C*K*K rows of the column matrix. */
#include "dacl/nn.h"

#include <cblas.h>
#include <string.h>

size_t dacl_conv2d_ws(int C, int H, int W, int K) {
    return K == 1 ? 0 : (size_t)C * K * K * H * W;
}

/* col [C*9, HW]: row (c, kh, kw) holds in[c] shifted by (kh-1, kw-1), zero
 * outside. Whole rows are copied; only the border column is special. */
static void im2col3x3(float *col, const float *in, int C, int H, int W) {
    const size_t HW = (size_t)H * W;
    for (int c = 0; c < C; c++) {
        const float *src = in + c * HW;
        for (int kh = 0; kh < 3; kh++) {
            for (int kw = 0; kw < 3; kw++) {
                float *dst = col + ((size_t)c * 9 + kh * 3 + kw) * HW;
                int dy = kh - 1, dx = kw - 1;
                for (int h = 0; h < H; h++) {
                    float *d = dst + (size_t)h * W;
                    int sh = h + dy;
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

/* The adjoint of im2col3x3: din[c] = sum over (kh, kw) of the shifted rows. */
static void col2im3x3(float *din, const float *col, int C, int H, int W) {
    const size_t HW = (size_t)H * W;
    for (int c = 0; c < C; c++) {
        float *dst = din + c * HW;
        memset(dst, 0, sizeof(float) * HW);
        for (int kh = 0; kh < 3; kh++) {
            for (int kw = 0; kw < 3; kw++) {
                const float *src = col + ((size_t)c * 9 + kh * 3 + kw) * HW;
                int dy = kh - 1, dx = kw - 1;
                for (int h = 0; h < H; h++) {
                    int sh = h + dy;
                    if (sh < 0 || sh >= H) continue;
                    const float *s = src + (size_t)h * W;
                    float *d = dst + (size_t)sh * W;
                    /* col[h, w] came from in[sh, w + dx] */
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

void dacl_conv2d_forward(float *out, const float *in, const float *w, const float *b, int N, int C,
                         int H, int W, int OC, int K, float *ws) {
    const int HW = H * W, CK = C * K * K;
    for (int n = 0; n < N; n++) {
        const float *x = in + (size_t)n * C * HW;
        float *y = out + (size_t)n * OC * HW;
        const float *col = x;
        if (K == 3) {
            im2col3x3(ws, x, C, H, W);
            col = ws;
        }
        /* y[OC, HW] = w[OC, CK] . col[CK, HW] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, HW, CK, 1.0f, w, CK, col, HW,
                    0.0f, y, HW);
        if (b) {
            for (int oc = 0; oc < OC; oc++) {
                float bv = b[oc];
                float *yo = y + (size_t)oc * HW;
                for (int i = 0; i < HW; i++) yo[i] += bv;
            }
        }
    }
}

void dacl_conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, int N, int C, int H, int W, int OC, int K, float *ws) {
    const int HW = H * W, CK = C * K * K;
    for (int n = 0; n < N; n++) {
        const float *x = in + (size_t)n * C * HW;
        const float *dy = dout + (size_t)n * OC * HW;
        if (db) {
            for (int oc = 0; oc < OC; oc++) {
                const float *d = dy + (size_t)oc * HW;
                float s = 0.0f;
                for (int i = 0; i < HW; i++) s += d[i];
                db[oc] += s;
            }
        }
        const float *col = x;
        if (K == 3) {
            im2col3x3(ws, x, C, H, W);
            col = ws;
        }
        /* dw[OC, CK] += dy[OC, HW] . col[CK, HW]^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, CK, HW, 1.0f, dy, HW, col, HW, 1.0f,
                    dw, CK);
        if (!din) continue;
        float *dx = din + (size_t)n * C * HW;
        /* dcol[CK, HW] = w[OC, CK]^T . dy[OC, HW]; for K = 1 that is dx itself */
        float *dcol = K == 3 ? ws : dx;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CK, HW, OC, 1.0f, w, CK, dy, HW, 0.0f,
                    dcol, HW);
        if (K == 3) col2im3x3(dx, dcol, C, H, W);
    }
}

/* ------------------------------------------------ transposed conv 2x2/2 -- */

size_t dacl_convt2x2_ws(int OC, int H, int W) { return (size_t)OC * 4 * H * W; }

void dacl_convt2x2_forward(float *out, const float *in, const float *w, const float *b, int N,
                           int C, int H, int W, int OC, float *ws) {
    const int HW = H * W, W2 = 2 * W;
    for (int n = 0; n < N; n++) {
        const float *x = in + (size_t)n * C * HW;
        float *y = out + (size_t)n * OC * 4 * HW;
        /* ws[OC*4, HW] = w[C, OC*4]^T . x[C, HW]; row (oc, a, bb) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC * 4, HW, C, 1.0f, w, OC * 4, x, HW,
                    0.0f, ws, HW);
        for (int oc = 0; oc < OC; oc++) {
            float bv = b ? b[oc] : 0.0f;
            float *yo = y + (size_t)oc * 4 * HW;
            for (int a = 0; a < 2; a++) {
                const float *r0 = ws + ((size_t)oc * 4 + a * 2) * HW;
                const float *r1 = r0 + HW;
                for (int i = 0; i < H; i++) {
                    float *d = yo + (size_t)(2 * i + a) * W2;
                    const float *s0 = r0 + (size_t)i * W, *s1 = r1 + (size_t)i * W;
                    for (int j = 0; j < W; j++) {
                        d[2 * j] = s0[j] + bv;
                        d[2 * j + 1] = s1[j] + bv;
                    }
                }
            }
        }
    }
}

void dacl_convt2x2_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                            const float *w, int N, int C, int H, int W, int OC, float *ws) {
    const int HW = H * W, W2 = 2 * W;
    for (int n = 0; n < N; n++) {
        const float *x = in + (size_t)n * C * HW;
        const float *dy = dout + (size_t)n * OC * 4 * HW;
        /* gather dy into ws[OC*4, HW] in the forward's row order */
        for (int oc = 0; oc < OC; oc++) {
            const float *g = dy + (size_t)oc * 4 * HW;
            float s = 0.0f;
            for (int a = 0; a < 2; a++) {
                float *r0 = ws + ((size_t)oc * 4 + a * 2) * HW;
                float *r1 = r0 + HW;
                for (int i = 0; i < H; i++) {
                    const float *src = g + (size_t)(2 * i + a) * W2;
                    float *d0 = r0 + (size_t)i * W, *d1 = r1 + (size_t)i * W;
                    for (int j = 0; j < W; j++) {
                        d0[j] = src[2 * j];
                        d1[j] = src[2 * j + 1];
                        s += src[2 * j] + src[2 * j + 1];
                    }
                }
            }
            if (db) db[oc] += s;
        }
        /* dw[C, OC*4] += x[C, HW] . ws[OC*4, HW]^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, OC * 4, HW, 1.0f, x, HW, ws, HW, 1.0f,
                    dw, OC * 4);
        if (din) {
            /* dx[C, HW] = w[C, OC*4] . ws[OC*4, HW] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, HW, OC * 4, 1.0f, w, OC * 4, ws,
                        HW, 0.0f, din + (size_t)n * C * HW, HW);
        }
    }
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
