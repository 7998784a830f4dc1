/* softmax, cross-entropy and the SSL4MIS soft Dice loss.
 * Dims: N batch, NC classes, HW pixels; probs and logits [N,NC,HW],
 * labels [N,HW] (uint8 class indices).
 *
 * Every loop walks a block of BLK pixels at a time and, inside it, one pass
 * per class over that class's contiguous row, pixel index innermost: that
 * vectorises (the class at stride HW, the old layout, does not), and the
 * block's NC rows stay in L1 between the passes, so each function reads its
 * inputs from memory once per pass it needs. The labels of a block are
 * widened to int32 once, so compares against them are as wide as the floats
 * they select. */
#include "dacl/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* pixels per block. Small: with HW a power of two every class row starts at
 * the same cache set, and 64 measured fastest at 256x256 (x1.5 over 512) */
#define BLK 64
#define LANES 8 /* partial sums per double accumulator (see lane_sum) */

/* exp(x) for x <= 0 (softmax's z - max), inlined so the loop vectorises:
 * glibc's expf is a call, and its vector form needs -ffast-math. Cephes'
 * expf: x = n ln2 + r, |r| <= ln2/2, exp(r) a degree-6 polynomial (about
 * 1 ulp), 2^n built in the exponent bits: within 1 ulp of glibc's expf on
 * [-87, 0]. Below -87, where expf < 2e-38, it gives 0: no loss here sees the
 * difference (CE clamps at 1e-30). A NaN stays NaN. */
static inline float exp_nonpos(float x) {
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float xc = x < -87.0f ? -87.0f : x;
    float t = xc * 1.44269504f + magic;
    float n = t - magic;
    float r = xc - n * 0.693359375f; /* ln 2 in two parts: n * hi is exact */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    /* t's low mantissa bits hold n; n + 127 in [1, 127] is 2^n's exponent */
    uint32_t tb, sb;
    float s;
    memcpy(&tb, &t, sizeof tb);
    sb = (tb - 0x4B400000u + 127u) << 23;
    memcpy(&s, &sb, sizeof s);
    return x < -87.0f ? 0.0f : p * s;
}

/* log(x) for a positive normal float x (CE's clamped p), inlined so the
 * loop vectorises, where glibc's log is a call: x = 2^e m with m in
 * [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172,
 * by its series to s^9 (the rest < 3e-9 relative). log m is float math and
 * e ln 2, the large part for small p, double: within 7e-8 of log((double)x)
 * on all of [1e-30, 1], about what p's own rounding (6e-8) puts into log p.
 * Worth it: the double call cost as much as the rest of CE. */
static inline double log_pos(float x) {
    uint32_t b, mb;
    float m;
    memcpy(&b, &x, sizeof b);
    mb = (b & 0x007FFFFFu) | 0x3F800000u; /* m in [1, 2) */
    memcpy(&m, &mb, sizeof m);
    int big = m > 1.41421356f;
    m = big ? m * 0.5f : m; /* exact */
    float s = (m - 1.0f) / (m + 1.0f), s2 = s * s; /* m - 1 exact */
    float q = 2.0f / 9;
    q = q * s2 + 2.0f / 7;
    q = q * s2 + 2.0f / 5;
    q = q * s2 + 2.0f / 3;
    q = q * s2 + 2.0f;
    return (double)((int32_t)(b >> 23) - 127 + big) * 0.69314718055994531 + (double)(s * q);
}

/* acc[j % LANES] += v[j] for j < len, in that order: a double sum that
 * vectorises without -ffast-math (the lanes are independent) and is still
 * one fixed order, so deterministic. */
static inline void lane_sum(double acc[LANES], const double *v, int len) {
    int j = 0;
    for (; j + LANES <= len; j += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += v[j + l];
    for (int l = 0; j < len; j++, l++) acc[l] += v[j];
}

static inline double lanes_total(const double acc[LANES]) {
    double s = 0.0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

/* labels of one block as int32; a label >= NC stays >= NC */
static inline void widen(int32_t *tl, const uint8_t *t, int len) {
    for (int j = 0; j < len; j++) tl[j] = t[j];
}

void dacl_softmax_forward(float *probs, const float *logits, int N, int NC, int HW) {
    float m[BLK], s[BLK];
    for (int n = 0; n < N; n++) {
        for (int i0 = 0; i0 < HW; i0 += BLK) {
            const int len = HW - i0 < BLK ? HW - i0 : BLK;
            const float *restrict z = logits + (size_t)n * NC * HW + i0;
            float *restrict p = probs + (size_t)n * NC * HW + i0;
            /* max with compares, not fmaxf (which x86 cannot vectorise): they
             * differ on NaN only, and a NaN logit makes the pixel NaN anyway */
            for (int j = 0; j < len; j++) m[j] = z[j];
            for (int k = 1; k < NC; k++) {
                const float *zk = z + (size_t)k * HW;
                for (int j = 0; j < len; j++) m[j] = zk[j] > m[j] ? zk[j] : m[j];
            }
            for (int j = 0; j < len; j++) s[j] = 0.0f;
            for (int k = 0; k < NC; k++) {
                const float *zk = z + (size_t)k * HW;
                float *pk = p + (size_t)k * HW;
                for (int j = 0; j < len; j++) {
                    float e = exp_nonpos(zk[j] - m[j]);
                    pk[j] = e;
                    s[j] += e;
                }
            }
            for (int j = 0; j < len; j++) s[j] = 1.0f / s[j];
            for (int k = 0; k < NC; k++) {
                float *pk = p + (size_t)k * HW;
                for (int j = 0; j < len; j++) pk[j] *= s[j];
            }
        }
    }
}

double dacl_ce_loss(float *dlogits, const float *probs, const uint8_t *labels, int N, int NC,
                    int HW, float scale) {
    /* the count first (labels only): the gradient's factor needs it, and then
     * loss and gradient are one pass over probs */
    size_t count = 0;
    for (size_t i = 0; i < (size_t)N * HW; i++) count += labels[i] < NC;
    if (count == 0) return 0.0;
    const float g = scale / (float)count;
    double lsum[LANES] = {0}, lg[BLK];
    int32_t tl[BLK];
    float pt[BLK];
    for (int n = 0; n < N; n++) {
        for (int i0 = 0; i0 < HW; i0 += BLK) {
            const int len = HW - i0 < BLK ? HW - i0 : BLK;
            const float *restrict p = probs + (size_t)n * NC * HW + i0;
            widen(tl, labels + (size_t)n * HW + i0, len);
            /* p[label] by selects, one class row at a time; an ignored pixel
             * keeps 1, whose log is 0 */
            for (int j = 0; j < len; j++) pt[j] = 1.0f;
            for (int k = 0; k < NC; k++) {
                const float *pk = p + (size_t)k * HW;
                for (int j = 0; j < len; j++) pt[j] = tl[j] == k ? pk[j] : pt[j];
            }
            /* probabilities underflow to 0 only for hopeless pixels; clamp so
             * the loss stays finite (PyTorch uses log_softmax, same limit),
             * but let a NaN through (both compares are false for it) */
            for (int j = 0; j < len; j++) {
                float x = pt[j];
                int tiny = (double)x < 1e-30, bad = isnan(x);
                double l = log_pos(tiny || bad ? 1.0f : x);
                lg[j] = bad ? (double)x : tiny ? -69.077552789821371 /* log 1e-30 */ : l;
            }
            lane_sum(lsum, lg, len);
            if (!dlogits) continue;
            float *restrict d = dlogits + (size_t)n * NC * HW + i0;
            for (int k = 0; k < NC; k++) {
                const float *pk = p + (size_t)k * HW;
                float *dk = d + (size_t)k * HW;
                /* a select, not += 0: an ignored pixel's gradient is untouched */
                for (int j = 0; j < len; j++) {
                    float v = g * (pk[j] - (tl[j] == k ? 1.0f : 0.0f));
                    dk[j] = tl[j] < NC ? dk[j] + v : dk[j];
                }
            }
        }
    }
    return -lanes_total(lsum) / (double)count;
}

double dacl_dice_loss(float *dlogits, const float *probs, const uint8_t *labels, int N, int NC,
                      int HW, float scale) {
    const double smooth = 1e-5;
    /* per class: LANES partial sums of p*t and of p^2, the count of t; then
     * the two gradient coefficients */
    double *acc = calloc((size_t)NC * 2 * LANES, sizeof(double));
    size_t *tt = calloc((size_t)NC, sizeof(size_t));
    float *ca = malloc((size_t)NC * 2 * sizeof(float));
    if (!acc || !tt || !ca) {
        free(acc), free(tt), free(ca);
        return NAN;
    }
    int32_t tl[BLK];
    double vt[BLK], vp[BLK];
    for (int n = 0; n < N; n++) {
        for (int i0 = 0; i0 < HW; i0 += BLK) {
            const int len = HW - i0 < BLK ? HW - i0 : BLK;
            const float *restrict p = probs + (size_t)n * NC * HW + i0;
            widen(tl, labels + (size_t)n * HW + i0, len);
            for (int k = 0; k < NC; k++) {
                const float *pk = p + (size_t)k * HW;
                int hits = 0;
                for (int j = 0; j < len; j++) {
                    double pv = pk[j];
                    vt[j] = tl[j] == k ? pv : 0.0;
                    vp[j] = pv * pv; /* exact in double */
                    hits += tl[j] == k;
                }
                lane_sum(acc + (size_t)k * 2 * LANES, vt, len);
                lane_sum(acc + (size_t)k * 2 * LANES + LANES, vp, len);
                tt[k] += (size_t)hits;
            }
        }
    }
    double loss = 0.0;
    for (int k = 0; k < NC; k++) {
        double I = lanes_total(acc + (size_t)k * 2 * LANES);
        double D = lanes_total(acc + (size_t)k * 2 * LANES + LANES) + (double)tt[k] + smooth;
        loss += 1.0 - (2.0 * I + smooth) / D;
        /* dL/dp_k(x) = -(1/NC) * (2 t_k(x) D - 2 p_k(x) (2I + s)) / D^2, D = Z+Y+s;
         * then through the softmax: dz_k = p_k (g_k - sum_j p_j g_j). */
        ca[k * 2] = (float)(-2.0 / (NC * D));                            /* coefficient of t_k */
        ca[k * 2 + 1] = (float)(2.0 * (2.0 * I + smooth) / (NC * D * D)); /* of p_k */
    }
    loss /= NC;
    if (dlogits) {
        float dot[BLK];
        for (int n = 0; n < N; n++) {
            for (int i0 = 0; i0 < HW; i0 += BLK) {
                const int len = HW - i0 < BLK ? HW - i0 : BLK;
                const float *restrict p = probs + (size_t)n * NC * HW + i0;
                float *restrict d = dlogits + (size_t)n * NC * HW + i0;
                widen(tl, labels + (size_t)n * HW + i0, len);
                /* g_k = a_k t_k + b_k p_k is cheap: computed in both passes */
                for (int j = 0; j < len; j++) dot[j] = 0.0f;
                for (int k = 0; k < NC; k++) {
                    const float *pk = p + (size_t)k * HW;
                    const float a = ca[k * 2], b = ca[k * 2 + 1];
                    for (int j = 0; j < len; j++)
                        dot[j] += pk[j] * ((tl[j] == k ? a : 0.0f) + b * pk[j]);
                }
                for (int k = 0; k < NC; k++) {
                    const float *pk = p + (size_t)k * HW;
                    float *dk = d + (size_t)k * HW;
                    const float a = ca[k * 2], b = ca[k * 2 + 1];
                    for (int j = 0; j < len; j++) {
                        float gk = (tl[j] == k ? a : 0.0f) + b * pk[j];
                        dk[j] += scale * pk[j] * (gk - dot[j]);
                    }
                }
            }
        }
    }
    free(acc), free(tt), free(ca);
    return loss;
}

void dacl_argmax(uint8_t *pseudo, const float *logits, int N, int NC, int HW) {
    float best[BLK];
    int32_t arg[BLK];
    for (int n = 0; n < N; n++) {
        for (int i0 = 0; i0 < HW; i0 += BLK) {
            const int len = HW - i0 < BLK ? HW - i0 : BLK;
            const float *restrict z = logits + (size_t)n * NC * HW + i0;
            uint8_t *restrict out = pseudo + (size_t)n * HW + i0;
            for (int j = 0; j < len; j++) best[j] = z[j], arg[j] = 0;
            /* strictly greater: the first class wins ties, and a NaN never wins */
            for (int c = 1; c < NC; c++) {
                const float *zc = z + (size_t)c * HW;
                for (int j = 0; j < len; j++) {
                    int w = zc[j] > best[j];
                    best[j] = w ? zc[j] : best[j];
                    arg[j] = w ? c : arg[j];
                }
            }
            for (int j = 0; j < len; j++) out[j] = (uint8_t)arg[j];
        }
    }
}
