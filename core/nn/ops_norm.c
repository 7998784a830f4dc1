/* BatchNorm (fused with the LeakyReLU that always follows it in the U-Net),
 * LeakyReLU alone, and dropout.
 *
 * Dims: N batch, C channels, HW pixels per channel; M = N*HW values per
 * channel for the batch statistics. Sums run in float across 16 lanes (so
 * the compiler vectorises them) and are gathered per plane into double. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "dacl/nn.h"
#include "ops_internal.h"

#define LANES 16

static inline float act(float z, float slope) { return z > 0.0f ? z : z * slope; }

static double sum_plane(const float *x, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += x[i + l];
    double s = 0.0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    for (; i < n; i++) s += x[i];
    return s;
}

static double sumsq_centered(const float *x, int n, float mu) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            float d = x[i + l] - mu;
            acc[l] += d * d;
        }
    double s = 0.0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    for (; i < n; i++) s += (double)(x[i] - mu) * (x[i] - mu);
    return s;
}

/* Channel c's batch mean and 1/std from count M, mean mu and the sum of
 * squared deviations m2 (biased variance, as PyTorch normalises with), and
 * the running statistics' update (unbiased variance, as PyTorch keeps).
 * Returns 1/std. */
static float finish_stats(int c, double M, double mu, double m2, float *mean, float *rstd,
                          float *running_mean, float *running_var, float momentum, float eps) {
    double var = m2 / M;
    float r = (float)(1.0 / sqrt(var + eps));
    mean[c] = (float)mu;
    rstd[c] = r;
    if (running_mean) {
        double unbiased = M > 1 ? m2 / (M - 1) : var;
        running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mu);
        running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
    }
    return r;
}

/* the backward recomputes z exactly so (C11 mode: no FMA contraction), so both agree on its sign */
static void affine_act(float *y, const float *x, int n, float scale, float shift, float slope) {
    for (int i = 0; i < n; i++) y[i] = act(x[i] * scale + shift, slope);
}

void dacl_bn_act_forward_train_ch(float *out, float *mean, float *rstd, const float *in,
                                  const float *gamma, const float *beta, float *running_mean,
                                  float *running_var, int N, int C, int HW, float momentum, float eps,
                                  float slope, int c0, int c1) {
    const double M = (double)N * HW;
    for (int c = c0; c < c1; c++) {
        /* two passes: the mean first, then the centred squares, so the
         * variance does not cancel catastrophically */
        double s = 0.0;
        for (int n = 0; n < N; n++) s += sum_plane(in + ((size_t)n * C + c) * HW, HW);
        double mu = s / M, ss = 0.0;
        for (int n = 0; n < N; n++) ss += sumsq_centered(in + ((size_t)n * C + c) * HW, HW, (float)mu);
        float r = finish_stats(c, M, mu, ss, mean, rstd, running_mean, running_var, momentum, eps);
        float scale = gamma[c] * r, shift = beta[c] - (float)mu * scale;
        for (int n = 0; n < N; n++) {
            size_t o = ((size_t)n * C + c) * HW;
            affine_act(out + o, in + o, HW, scale, shift, slope);
        }
    }
}

void dacl_bn_prepare_rows(float *mean, float *rstd, float *scale, float *shift, const float *stats,
                          const float *gamma, const float *beta, float *running_mean,
                          float *running_var, int N, int C, int H, int W, float momentum, float eps,
                          int c0, int c1) {
    for (int c = c0; c < c1; c++) {
        /* Chan's pairwise update: merge rows of W values one at a time */
        double cnt = 0.0, mu = 0.0, m2 = 0.0;
        for (int n = 0; n < N; n++) {
            const float *st = stats + ((size_t)n * C + c) * H * 2;
            for (int h = 0; h < H; h++) {
                double rm = st[2 * h], rq = st[2 * h + 1], tot = cnt + W;
                double d = rm - mu;
                mu += d * W / tot;
                m2 += rq + d * d * cnt * W / tot;
                cnt = tot;
            }
        }
        float r = finish_stats(c, cnt, mu, m2, mean, rstd, running_mean, running_var, momentum, eps);
        scale[c] = gamma[c] * r;
        shift[c] = beta[c] - mean[c] * scale[c];
    }
}

void dacl_bn_prepare_eval(float *scale, float *shift, const float *gamma, const float *beta,
                          const float *running_mean, const float *running_var, float eps, int c0,
                          int c1) {
    for (int c = c0; c < c1; c++) {
        scale[c] = gamma[c] / sqrtf(running_var[c] + eps);
        shift[c] = beta[c] - running_mean[c] * scale[c];
    }
}

void dacl_bn_apply(float *out, size_t out_nstride, const float *in, const float *scale,
                   const float *shift, int N, int C, int HW, float slope, int c0, int c1) {
    for (int n = 0; n < N; n++)
        for (int c = c0; c < c1; c++)
            affine_act(out + n * out_nstride + (size_t)c * HW, in + ((size_t)n * C + c) * HW, HW,
                       scale[c], shift[c], slope);
}

void dacl_bn_act_forward_eval_ch(float *out, const float *in, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, int N, int C,
                                 int HW, float eps, float slope, int c0, int c1) {
    for (int c = c0; c < c1; c++) {
        float scale = gamma[c] / sqrtf(running_var[c] + eps);
        float shift = beta[c] - running_mean[c] * scale;
        for (int n = 0; n < N; n++) {
            size_t o = ((size_t)n * C + c) * HW;
            affine_act(out + o, in + o, HW, scale, shift, slope);
        }
    }
}

/* The activation's derivative at z: from the forward output's sign when
 * `out` is given, else from z = fma(x, scale, shift) recomputed as the
 * forward did (one stream less to read). */
static inline float dz_of(float g, const float *out, float x, float scale, float shift, size_t i,
                          float slope) {
    int pos = out ? out[i] > 0.0f : x * scale + shift > 0.0f;
    return pos ? g : g * slope;
}

/* The gradient element i of a plane as dropout's backward leaves it: g
 * where there is no mask (mb NULL), else g * ks where bit l of mk (the
 * plane's bits from i - l on) is set and 0 where not. */
static inline float undrop(float g, const uint64_t *mb, uint32_t mk, int l, float ks) {
    return !mb ? g : mk >> l & 1 ? g * ks : 0.0f;
}

/* the bits of plane elements from i on (to the end of i's 64-bit word) in
 * the low bits; i a multiple of 16 gives at least 16 */
static inline uint32_t mask16(const uint64_t *mb, int i) {
    return mb ? (uint32_t)(mb[i >> 6] >> (i & 63)) : 0;
}

/* dz at element i + l of a plane: g undropped (mk: mask16(mb, i)) times
 * the activation's derivative */
static inline float dz_at(const float *g, const float *y, const float *x, const uint64_t *mb,
                          uint32_t mk, int i, int l, float ks, float scale, float shift,
                          float slope) {
    float gl = undrop(g[i + l], mb, mk, l, ks);
    return dz_of(gl, y, x[i + l], scale, shift, (size_t)(i + l), slope);
}

/* pool_dy (may be NULL): dx = dy in place, and each plane of it gets the
 * backward of a 2x2 max-pool (pool_dy, pool_idx: planes of HW/4, rows of
 * W) added right before the sums read it, so they read it from cache */
static inline void bn_act_backward_core(float *dx, float *dgamma, float *dbeta, float *dbias,
                                        const float *dy, const uint64_t *mask, float p,
                                        const float *out, const float *in, const float *beta,
                                        const float *mean, const float *rstd, const float *gamma,
                                        int N, int C, int HW, float slope, int c0, int c1,
                                        const float *pool_dy, const uint8_t *pool_idx, int W,
                                        const double *sums) {
    const double M = (double)N * HW;
    const size_t mw = dacl_mask_words((size_t)HW);
    const float ks = mask ? dacl_dropout_scale(p) : 1.0f;
    for (int c = c0; c < c1; c++) {
        float mu = mean[c], r = rstd[c];
        float scale = gamma[c] * r, shift = beta ? beta[c] - mu * scale : 0.0f;
        /* dz = dy * act'(z); sums of dz and dz * xhat over the channel */
        double sdz = 0.0, sdzx = 0.0;
        /* given per image (DaclBnSums, taken as dy was written): no first pass */
        for (int n = 0; sums && n < N; n++) {
            const double *sn = sums + ((size_t)n * C + c) * 2;
            sdz += sn[0], sdzx += sn[1] * r;
        }
        for (int n = 0; !sums && n < N; n++) {
            size_t o = ((size_t)n * C + c) * HW;
            const float *g = dy + o, *y = out ? out + o : NULL, *x = in + o;
            const uint64_t *mb = mask ? mask + ((size_t)n * C + c) * mw : NULL;
            if (pool_dy) {
                const size_t q = ((size_t)n * C + c) * (size_t)(HW / 4);
                dacl_maxpool2x2_backward(dx + o, pool_dy + q, pool_idx + q, 1, 1, HW / W, W);
            }
            float a1[LANES] = {0}, a2[LANES] = {0};
            int i = 0;
            for (; i + LANES <= HW; i += LANES) {
                const uint32_t mk = mask16(mb, i);
                for (int l = 0; l < LANES; l++) {
                    float dz = dz_at(g, y, x, mb, mk, i, l, ks, scale, shift, slope);
                    a1[l] += dz;
                    a2[l] += dz * (x[i + l] - mu);
                }
            }
            for (; i < HW; i++) {
                float dz = dz_at(g, y, x, mb, mask16(mb, i), i, 0, ks, scale, shift, slope);
                a1[0] += dz;
                a2[0] += dz * (x[i] - mu);
            }
            for (int l = 0; l < LANES; l++) sdz += a1[l], sdzx += (double)a2[l] * r;
        }
        dgamma[c] += (float)sdzx;
        dbeta[c] += (float)sdz;
        /* dx = gamma * rstd * (dz - mean(dz) - xhat * mean(dz * xhat)); its
         * sum over the channel is the bias gradient of the convolution that
         * produced `in`, taken here while dx is in registers */
        float k = gamma[c] * r, mdz = (float)(sdz / M), mdzx = (float)(sdzx / M) * r;
        double sdx = 0.0;
        for (int n = 0; n < N; n++) {
            size_t o = ((size_t)n * C + c) * HW;
            const float *g = dy + o, *y = out ? out + o : NULL, *x = in + o;
            const uint64_t *mb = mask ? mask + ((size_t)n * C + c) * mw : NULL;
            float *d = dx + o;
            float a3[LANES] = {0};
            int i = 0;
            for (; i + LANES <= HW; i += LANES) {
                const uint32_t mk = mask16(mb, i);
                for (int l = 0; l < LANES; l++) {
                    float dz = dz_at(g, y, x, mb, mk, i, l, ks, scale, shift, slope);
                    float v = k * (dz - mdz - (x[i + l] - mu) * mdzx);
                    d[i + l] = v;
                    a3[l] += v;
                }
            }
            for (; i < HW; i++) {
                float dz = dz_at(g, y, x, mb, mask16(mb, i), i, 0, ks, scale, shift, slope);
                float v = k * (dz - mdz - (x[i] - mu) * mdzx);
                d[i] = v;
                a3[0] += v;
            }
            for (int l = 0; l < LANES; l++) sdx += a3[l];
        }
        if (dbias) dbias[c] += (float)sdx;
    }
}

void dacl_bn_act_backward_ch(float *dx, float *dgamma, float *dbeta, float *dbias, const float *dy,
                             const uint64_t *mask, float p, const float *in, const float *beta,
                             const float *mean, const float *rstd, const float *gamma, int N, int C,
                             int HW, float slope, int c0, int c1) {
    dacl_bn_act_backward_sums_ch(dx, dgamma, dbeta, dbias, dy, mask, p, in, beta, mean, rstd, gamma,
                                 N, C, HW, slope, NULL, c0, c1);
}

void dacl_bn_act_backward_sums_ch(float *dx, float *dgamma, float *dbeta, float *dbias,
                                  const float *dy, const uint64_t *mask, float p, const float *in,
                                  const float *beta, const float *mean, const float *rstd,
                                  const float *gamma, int N, int C, int HW, float slope,
                                  const double *sums, int c0, int c1) {
    /* two calls, so each inlined copy has the mask test folded out of its loops */
    if (mask)
        bn_act_backward_core(dx, dgamma, dbeta, dbias, dy, mask, p, NULL, in, beta, mean, rstd, gamma,
                             N, C, HW, slope, c0, c1, NULL, NULL, 1, sums);
    else
        bn_act_backward_core(dx, dgamma, dbeta, dbias, dy, NULL, 0.0f, NULL, in, beta, mean, rstd,
                             gamma, N, C, HW, slope, c0, c1, NULL, NULL, 1, sums);
}

void dacl_bn_act_backward_pool_ch(float *g, float *dgamma, float *dbeta, float *dbias,
                                  const float *pool_dy, const uint8_t *pool_idx, const float *in,
                                  const float *beta, const float *mean, const float *rstd,
                                  const float *gamma, int N, int C, int H, int W, float slope, int c0,
                                  int c1) {
    bn_act_backward_core(g, dgamma, dbeta, dbias, g, NULL, 0.0f, NULL, in, beta, mean, rstd, gamma, N,
                         C, H * W, slope, c0, c1, pool_dy, pool_idx, W, NULL);
}

void dacl_bn_act_forward_train(float *out, float *mean, float *rstd, const float *in,
                               const float *gamma, const float *beta, float *running_mean,
                               float *running_var, int N, int C, int HW, float momentum, float eps,
                               float slope) {
    dacl_bn_act_forward_train_ch(out, mean, rstd, in, gamma, beta, running_mean, running_var, N, C, HW,
                                 momentum, eps, slope, 0, C);
}

void dacl_bn_act_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                              const float *running_mean, const float *running_var, int N, int C,
                              int HW, float eps, float slope) {
    dacl_bn_act_forward_eval_ch(out, in, gamma, beta, running_mean, running_var, N, C, HW, eps, slope,
                                0, C);
}

void dacl_bn_act_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                          const float *out, const float *in, const float *mean, const float *rstd,
                          const float *gamma, int N, int C, int HW, float slope) {
    bn_act_backward_core(dx, dgamma, dbeta, NULL, dy, NULL, 0.0f, out, in, NULL, mean, rstd, gamma, N,
                         C, HW, slope, 0, C, NULL, NULL, 1, NULL);
}

void dacl_leaky_relu_forward(float *out, const float *in, size_t n, float slope) {
    for (size_t i = 0; i < n; i++) out[i] = act(in[i], slope);
}

void dacl_leaky_relu_backward(float *dx, const float *dy, const float *out, size_t n, float slope) {
    for (size_t i = 0; i < n; i++) dx[i] = out[i] > 0.0f ? dy[i] : dy[i] * slope;
}


void dacl_dropout_range(float *out, const float *in, size_t i0, size_t i1, float p, uint64_t key) {
    if (p <= 0.0f) {
        if (out != in) memmove(out + i0, in + i0, (i1 - i0) * sizeof(float));
        return;
    }
    uint32_t thresh = dacl_dropout_threshold(p);
    float scale = dacl_dropout_scale(p);
    for (size_t i = i0; i < i1; i++) out[i] = dacl_dropout_keep(key, i, thresh) ? in[i] * scale : 0.0f;
}

/* 32 decisions at a time into 32-bit lanes, so the hash vectorises. Where
 * the 32 indices share their high half (all but a block that crosses a
 * multiple of 2^32) that half's term of dacl_dropout_keep is hoisted and
 * the lanes hash in 32-bit arithmetic, the same values as it gives: a
 * third of the time, where the 64-bit indices took lanes of their own. */
#if defined(__GNUC__) || defined(__clang__)
#define INLINE_ALWAYS static inline __attribute__((always_inline))
#else
#define INLINE_ALWAYS static inline
#endif

INLINE_ALWAYS void dropout_bits_body(uint64_t *bits, size_t HW, uint64_t key, size_t base,
                                     uint32_t thresh) {
    for (size_t i0 = 0; i0 < HW; i0 += 32) {
        const size_t a = base + i0;
        const uint32_t lo = (uint32_t)a, hi = (uint32_t)(a >> 32) * 0x9e3779b9U;
        uint32_t m = 0;
        if (HW - i0 >= 32 && lo <= UINT32_MAX - 31) {
            for (uint32_t l = 0; l < 32; l++) {
                uint32_t u = dacl_mix32(dacl_mix32(((lo + l) ^ hi) ^ (uint32_t)key) +
                                        (uint32_t)(key >> 32));
                m |= (uint32_t)((u >> 8) >= thresh) << l;
            }
        } else {
            for (uint32_t l = 0; l < 32 && i0 + l < HW; l++)
                m |= (uint32_t)dacl_dropout_keep(key, a + l, thresh) << l;
        }
        if (i0 % 64 == 0) bits[i0 / 64] = 0;
        bits[i0 / 64] |= (uint64_t)m << (i0 % 64);
    }
}

static void dropout_bits_generic(uint64_t *bits, size_t HW, uint64_t key, size_t base,
                                 uint32_t thresh) {
    dropout_bits_body(bits, HW, key, base, thresh);
}

/* the same code in 16 lanes where the CPU has AVX-512 (0.35 against 0.48
 * ns an element) */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_BITS_AVX512 1
__attribute__((target("avx512f"))) static void dropout_bits_avx512(uint64_t *bits, size_t HW,
                                                                   uint64_t key, size_t base,
                                                                   uint32_t thresh) {
    dropout_bits_body(bits, HW, key, base, thresh);
}
#else
#define HAVE_BITS_AVX512 0
#endif

void dacl_dropout_bits(uint64_t *bits, size_t HW, uint64_t key, size_t base, uint32_t thresh) {
#if HAVE_BITS_AVX512
    if (dacl_conv3x3_direct_available()) {
        dropout_bits_avx512(bits, HW, key, base, thresh);
        return;
    }
#endif
    dropout_bits_generic(bits, HW, key, base, thresh);
}

void dacl_dropout_forward(float *out, const float *in, size_t n, float p, uint64_t key) {
    dacl_dropout_range(out, in, 0, n, p, key);
}

void dacl_dropout_backward(float *dx, const float *dy, size_t n, float p, uint64_t key) {
    dacl_dropout_forward(dx, dy, n, p, key); /* the mask is its own adjoint */
}
