/* The passes the U-Net's backward fuses into BatchNorm's backward
 * (core/nn/ops_norm.c), against the separate ops they replace, on random
 * data at plane sizes with partial 16-lane blocks and partial mask words:
 *   - the bias gradient of the convolution before a BN, summed as the BN
 *     writes its dx, against that convolution's own bias gradient of dx;
 *   - dropout's keep bits against its per-element decision, and dropout's
 *     backward read through those bits inside BN's backward against
 *     dacl_dropout_range followed by BN's backward: the same bits.
 * BN's dx sums to zero over a channel when mean and rstd are the batch's,
 * which would make any bias sum look right; the tests hand it other
 * statistics, so the sums are far from zero. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../core/nn/ops_internal.h"
#include "dacl/nn.h"

#define SLOPE 0.01f

static float *fnew(size_t n) {
    float *v = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(v);
    return v;
}

static float *frand(DaclRng *r, size_t n, float lo, float hi) {
    float *v = fnew(n);
    for (size_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * dacl_rng_uniform(r);
    return v;
}

/* A BN backward's inputs for [N,C,HW]: the conv output c, the gradient g,
 * and per channel gamma, beta and statistics off the batch's */
typedef struct {
    int N, C, HW;
    float *c, *g, *gamma, *beta, *mean, *rstd;
} BnCase;

static BnCase bn_case(int N, int C, int HW, uint64_t seed) {
    DaclRng r;
    dacl_rng_seed(&r, seed);
    size_t n = (size_t)N * C * HW;
    BnCase k = {.N = N, .C = C, .HW = HW};
    k.c = frand(&r, n, -1.0f, 1.5f), k.g = frand(&r, n, -1.0f, 1.0f);
    /* g leans with c, so mean(dz * xhat) is well away from zero */
    for (size_t i = 0; i < n; i++) k.g[i] += 0.5f * k.c[i];
    k.gamma = frand(&r, C, 0.5f, 1.5f), k.beta = frand(&r, C, -0.3f, 0.3f);
    k.mean = frand(&r, C, -0.6f, -0.3f), k.rstd = frand(&r, C, 0.5f, 2.0f);
    return k;
}

static void bn_case_free(BnCase *k) {
    free(k->c), free(k->g), free(k->gamma), free(k->beta), free(k->mean), free(k->rstd);
}

/* dbias from the fused sum against the convolution's bias gradient of the dx
 * the BN wrote (dacl_conv2d_backward, a 1x1 conv from one input channel
 * that only its db is read of) and against that dx summed in double: equal
 * to float rounding of the terms, which the statistics off the batch keep
 * far below the sums themselves */
static void check_bias_sum(int N, int C, int HW, uint64_t seed) {
    BnCase k = bn_case(N, C, HW, seed);
    size_t n = (size_t)N * C * HW;
    float *dx = fnew(n), *dgamma = fnew(C), *dbeta = fnew(C), *dbias = fnew(C), *ref = fnew(C);
    for (int c = 0; c < C; c++) dgamma[c] = dbeta[c] = 0.0f, dbias[c] = 0.25f * c, ref[c] = 0.25f * c;
    dacl_bn_act_backward_ch(dx, dgamma, dbeta, dbias, k.g, NULL, 0.0f, k.c, k.beta, k.mean, k.rstd, k.gamma, N, C,
                            HW, SLOPE, 0, C);

    float *x1 = fnew((size_t)N * HW), *w1 = fnew(C), *dw1 = fnew(C);
    for (size_t i = 0; i < (size_t)N * HW; i++) x1[i] = 1.0f;
    for (int c = 0; c < C; c++) w1[c] = 0.0f, dw1[c] = 0.0f;
    dacl_conv2d_backward(NULL, dw1, ref, dx, x1, w1, N, 1, HW, 1, C, 1, NULL);

    for (int c = 0; c < C; c++) {
        double s = 0.0, a = 0.0;
        for (int b = 0; b < N; b++)
            for (int i = 0; i < HW; i++) {
                double v = dx[((size_t)b * C + c) * HW + i];
                s += v, a += fabs(v);
            }
        double tol = 1e-5 * a + 1e-6;
        assert_true(fabs(s) > 100 * tol); /* the case tests something */
        assert_true(fabs((double)dbias[c] - 0.25 * c - s) <= tol);
        assert_true(fabs((double)dbias[c] - ref[c]) <= tol);
    }
    free(x1), free(w1), free(dw1);
    free(dx), free(dgamma), free(dbeta), free(dbias), free(ref);
    bn_case_free(&k);
}

static void test_bn_backward_sums_conv_bias(void **state) {
    (void)state;
    check_bias_sum(3, 5, 256, 1);
    check_bias_sum(2, 4, 1000, 2); /* partial 16-lane block */
    check_bias_sum(4, 3, 37, 3);
    check_bias_sum(5, 2, 1, 4);    /* one pixel: no lane block at all */
}

/* dbias NULL: the same dx, dgamma and dbeta bit for bit as with it */
static void test_bn_backward_bias_sum_changes_nothing_else(void **state) {
    (void)state;
    const int N = 3, C = 4, HW = 200;
    BnCase k = bn_case(N, C, HW, 9);
    size_t n = (size_t)N * C * HW;
    float *dx1 = fnew(n), *dx2 = fnew(n), *gs1 = fnew(2 * C), *gs2 = fnew(2 * C), *db = fnew(C);
    memset(gs1, 0, sizeof(float) * 2 * C), memset(gs2, 0, sizeof(float) * 2 * C);
    memset(db, 0, sizeof(float) * C);
    dacl_bn_act_backward_ch(dx1, gs1, gs1 + C, NULL, k.g, NULL, 0.0f, k.c, k.beta, k.mean, k.rstd, k.gamma, N, C,
                            HW, SLOPE, 0, C);
    dacl_bn_act_backward_ch(dx2, gs2, gs2 + C, db, k.g, NULL, 0.0f, k.c, k.beta, k.mean, k.rstd, k.gamma, N, C, HW,
                            SLOPE, 0, C);
    assert_memory_equal(dx1, dx2, n * sizeof(float));
    assert_memory_equal(gs1, gs2, 2 * C * sizeof(float));
    free(dx1), free(dx2), free(gs1), free(gs2), free(db);
    bn_case_free(&k);
}

/* [N,C] planes of HW elements' keep bits, element (n, c, i) at the global
 * index ((n * C + c) * HW + i) as the U-Net draws them */
static uint64_t *mask_planes(int N, int C, int HW, float p, uint64_t key) {
    const size_t mw = dacl_mask_words((size_t)HW);
    uint64_t *mask = malloc(sizeof(uint64_t) * (size_t)N * C * mw);
    assert_non_null(mask);
    for (int q = 0; q < N * C; q++)
        dacl_dropout_bits(mask + q * mw, (size_t)HW, key, (size_t)q * HW, dacl_dropout_threshold(p));
    return mask;
}

/* the bits of planes of every size around the block and word sizes, from
 * global indices that start anywhere, cross a multiple of 2^32 (where the
 * high half of the index changes inside a block) or lie above it */
static void test_dropout_bits(void **state) {
    (void)state;
    const size_t sizes[] = {1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 256, 1000};
    const size_t bases[] = {0, 12345, 0xfffffff0u, 0xffffffffu - 100, 0x1fffffff7ULL, 77ULL << 33};
    const float ps[] = {0.05f, 0.5f, 0.9f};
    for (size_t a = 0; a < sizeof sizes / sizeof *sizes; a++)
        for (size_t q = 0; q < sizeof bases / sizeof *bases; q++)
            for (size_t b = 0; b < sizeof ps / sizeof *ps; b++) {
                const size_t HW = sizes[a], base = bases[q];
                const uint64_t key = 0x9e3779b97f4a7c15ULL * (a + 1) + 31 * q + b;
                const uint32_t th = dacl_dropout_threshold(ps[b]);
                uint64_t bits[16];
                memset(bits, 0xa5, sizeof bits);
                dacl_dropout_bits(bits, HW, key, base, th);
                size_t kept = 0;
                for (size_t i = 0; i < HW; i++) {
                    int bit = (int)(bits[i / 64] >> (i % 64) & 1);
                    assert_int_equal(bit, dacl_dropout_keep(key, base + i, th));
                    kept += (size_t)bit;
                }
                /* the bits past the plane are clear, whatever was there */
                if (HW % 64) assert_true(bits[HW / 64] >> (HW % 64) == 0);
                if (HW >= 256) assert_true(kept > 0 && kept < HW);
            }
}

/* BN backward with the dropout mask against dacl_dropout_range, then BN
 * backward, on g; both in place (dx = g, as the team runs it) and not:
 * dx, dgamma, dbeta and dbias all equal bit for bit */
static void check_dropout_fused(int N, int C, int HW, float p, uint64_t seed) {
    BnCase k = bn_case(N, C, HW, seed);
    const size_t n = (size_t)N * C * HW;
    const uint64_t key = seed * 0x632be59bd9b4e019ULL + 1;
    uint64_t *mask = mask_planes(N, C, HW, p, key);
    float *gd = fnew(n), *dx_ref = fnew(n), *dx = fnew(n), *dx_in = fnew(n);
    float *gr = fnew(4 * C), *gf = fnew(4 * C), *gi = fnew(4 * C);
    for (int c = 0; c < 4 * C; c++) gr[c] = gf[c] = gi[c] = 0.125f * c;

    memcpy(gd, k.g, n * sizeof(float));
    dacl_dropout_range(gd, gd, 0, n, p, key);
    dacl_bn_act_backward_ch(dx_ref, gr, gr + C, gr + 2 * C, gd, NULL, 0.0f, k.c, k.beta, k.mean,
                            k.rstd, k.gamma, N, C, HW, SLOPE, 0, C);
    dacl_bn_act_backward_ch(dx, gf, gf + C, gf + 2 * C, k.g, mask, p, k.c, k.beta, k.mean, k.rstd,
                            k.gamma, N, C, HW, SLOPE, 0, C);
    memcpy(dx_in, k.g, n * sizeof(float));
    /* in place, one channel at a time as the team's chunks are */
    for (int c = 0; c < C; c++)
        dacl_bn_act_backward_ch(dx_in, gi, gi + C, gi + 2 * C, dx_in, mask, p, k.c, k.beta, k.mean,
                                k.rstd, k.gamma, N, C, HW, SLOPE, c, c + 1);
    assert_memory_equal(dx, dx_ref, n * sizeof(float));
    assert_memory_equal(dx_in, dx_ref, n * sizeof(float));
    assert_memory_equal(gf, gr, 4 * C * sizeof(float));
    assert_memory_equal(gi, gr, 4 * C * sizeof(float));
    /* and the mask did something: the same BN backward without it differs */
    dacl_bn_act_backward_ch(dx, gf, gf + C, gf + 2 * C, k.g, NULL, 0.0f, k.c, k.beta, k.mean, k.rstd,
                            k.gamma, N, C, HW, SLOPE, 0, C);
    assert_memory_not_equal(dx, dx_ref, n * sizeof(float));
    free(mask), free(gd), free(dx_ref), free(dx), free(dx_in), free(gr), free(gf), free(gi);
    bn_case_free(&k);
}

static void test_bn_backward_dropout_fused(void **state) {
    (void)state;
    check_dropout_fused(3, 5, 256, 0.3f, 11);
    check_dropout_fused(2, 4, 1000, 0.5f, 12); /* partial lane block and mask word */
    check_dropout_fused(4, 3, 37, 0.05f, 13);
    check_dropout_fused(3, 7, 100, 0.2f, 14);
    check_dropout_fused(8, 6, 1, 0.5f, 15);    /* one pixel a plane, a word each */
}

/* The max-pool backward added into BN2's gradient plane by plane inside the
 * BN backward (dacl_bn_act_backward_pool_ch) against dacl_maxpool2x2_backward
 * on g followed by dacl_bn_act_backward_ch: dx, dgamma, dbeta and dbias the
 * same to the bit; and the pooled gradient changes the result (the case
 * tests something). */
static void check_pool_fused(int N, int C, int H, int W, uint64_t seed) {
    const int HW = H * W, q = HW / 4;
    BnCase k = bn_case(N, C, HW, seed);
    DaclRng r;
    dacl_rng_seed(&r, seed + 100);
    size_t n = (size_t)N * C * HW, nq = (size_t)N * C * q;
    float *pdy = frand(&r, nq, -2.0f, 2.0f), *pooled = fnew(nq);
    uint8_t *idx = malloc(nq ? nq : 1);
    assert_non_null(idx);
    dacl_maxpool2x2_forward(pooled, idx, k.c, N, C, H, W); /* idx from real data */
    float *g1 = fnew(n), *g2 = fnew(n), *g3 = fnew(n);
    memcpy(g1, k.g, n * sizeof(float)), memcpy(g2, k.g, n * sizeof(float));
    memcpy(g3, k.g, n * sizeof(float));
    float *s1 = fnew(3 * C), *s2 = fnew(3 * C), *s3 = fnew(3 * C);
    for (int i = 0; i < 3 * C; i++) s1[i] = s2[i] = s3[i] = 0.125f * i;
    dacl_maxpool2x2_backward(g1, pdy, idx, N, C, H, W);
    dacl_bn_act_backward_ch(g1, s1, s1 + C, s1 + 2 * C, g1, NULL, 0.0f, k.c, k.beta, k.mean, k.rstd,
                            k.gamma, N, C, HW, SLOPE, 0, C);
    /* in two channel ranges, as the team splits it */
    dacl_bn_act_backward_pool_ch(g2, s2, s2 + C, s2 + 2 * C, pdy, idx, k.c, k.beta, k.mean, k.rstd,
                                 k.gamma, N, C, H, W, SLOPE, 0, C / 2);
    dacl_bn_act_backward_pool_ch(g2, s2, s2 + C, s2 + 2 * C, pdy, idx, k.c, k.beta, k.mean, k.rstd,
                                 k.gamma, N, C, H, W, SLOPE, C / 2, C);
    assert_memory_equal(g1, g2, n * sizeof(float));
    assert_memory_equal(s1, s2, 3 * C * sizeof(float));
    dacl_bn_act_backward_ch(g3, s3, s3 + C, s3 + 2 * C, g3, NULL, 0.0f, k.c, k.beta, k.mean, k.rstd,
                            k.gamma, N, C, HW, SLOPE, 0, C);
    assert_memory_not_equal(g1, g3, n * sizeof(float));
    free(pdy), free(pooled), free(idx), free(g1), free(g2), free(g3), free(s1), free(s2), free(s3);
    bn_case_free(&k);
}

static void test_bn_backward_pool_fused(void **state) {
    (void)state;
    check_pool_fused(3, 5, 16, 16, 21);
    check_pool_fused(2, 4, 10, 38, 22); /* planes with partial 16-lane blocks */
    check_pool_fused(4, 3, 2, 2, 23);   /* one pooled pixel a plane */
}

/* dacl_maxpool2x2_backward against the plain scatter (each pooled gradient
 * added to the one input its idx names), to the bit: inputs that are -0.0
 * and not chosen stay -0.0, rows of odd pooled widths (vector tails) */
static void test_pool_backward_bits(void **state) {
    (void)state;
    static const int shapes[][3] = {{3, 4, 38}, {2, 6, 70}, {1, 2, 2}, {5, 8, 256}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int NC = shapes[t][0], H = shapes[t][1], W = shapes[t][2], q = H * W / 4;
        DaclRng r;
        dacl_rng_seed(&r, 40 + t);
        size_t n = (size_t)NC * H * W;
        float *dx = frand(&r, n, -1.0f, 1.0f), *ref = fnew(n), *dy = frand(&r, (size_t)NC * q, -1.0f, 1.0f);
        uint8_t *idx = malloc((size_t)NC * q);
        assert_non_null(idx);
        for (size_t i = 0; i < n; i++)
            if (i % 5 < 2) dx[i] = i % 5 ? 0.0f : -0.0f;
        for (size_t i = 0; i < (size_t)NC * q; i++) idx[i] = (uint8_t)dacl_rng_below(&r, 4);
        memcpy(ref, dx, n * sizeof(float));
        for (int p = 0; p < NC; p++)
            for (int i = 0; i < H / 2; i++)
                for (int j = 0; j < W / 2; j++) {
                    size_t k = (size_t)p * q + (size_t)i * (W / 2) + j;
                    ref[(size_t)p * H * W + (size_t)(2 * i + (idx[k] >> 1)) * W + 2 * j + (idx[k] & 1)] += dy[k];
                }
        dacl_maxpool2x2_backward(dx, dy, idx, NC, 1, H, W);
        assert_memory_equal(dx, ref, n * sizeof(float));
        free(dx), free(ref), free(dy), free(idx);
    }
}

/* BN1's first pass taken by the Winograd input gradient of the conv after
 * it (dacl_wino_backward_data_bn, per image as the team runs it) against
 * the two-pass BN backward on the same gradient: the sums against double
 * sums of the same dz, dx bit for bit as dacl_wino_backward_data writes it,
 * the transformed input it also writes bit for bit as the scalar xform,
 * and dgamma, dbeta, dbias and BN's dx within float rounding of the
 * summation order. Odd heights (a last pair of one row), widths that are
 * not a multiple of 32 (partial vectors) nor of 16 (mask bits across words). */
static void check_wino_bn_sums(int N, int C, int H, int W, int OC, float p, uint64_t seed) {
    const int HW = H * W;
    BnCase k = bn_case(N, C, HW, seed);
    DaclRng r;
    dacl_rng_seed(&r, seed + 7);
    const size_t n = (size_t)N * C * HW, nw = (size_t)OC * C * 9;
    float *dy = frand(&r, (size_t)N * OC * HW, -1.0f, 1.0f), *w = frand(&r, nw, -0.3f, 0.3f);
    float *U = fnew(dacl_wino_u_floats(C, OC)), *scratch = fnew(dacl_wino_bn_scratch_floats(C, OC));
    dacl_wino_weights(U, w, C, OC, 0, OC);
    const uint64_t key = seed * 0x632be59bd9b4e019ULL + 5;
    uint64_t *mask = p > 0.0f ? mask_planes(N, C, HW, p, key) : NULL;
    const size_t mw = dacl_mask_words((size_t)HW);
    const float ks = p > 0.0f ? dacl_dropout_scale(p) : 1.0f;
    float *scale = fnew(C), *shift = fnew(C);
    for (int c = 0; c < C; c++) {
        scale[c] = k.gamma[c] * k.rstd[c];
        shift[c] = k.beta[c] - k.mean[c] * scale[c];
    }
    float *g1 = fnew(n), *g2 = fnew(n), *xo = fnew(n);
    double *sums = malloc(sizeof(double) * (size_t)N * C * 2);
    assert_non_null(sums);
    for (int b = 0; b < N; b++) {
        const size_t o = (size_t)b * C * HW;
        DaclBnSums bs = {.x = k.c + o, .mask = mask ? mask + (size_t)b * C * mw : NULL,
                         .scale = scale, .shift = shift, .mean = k.mean, .ks = ks, .slope = SLOPE,
                         .sums = sums + (size_t)b * C * 2, .xout = xo + o};
        dacl_wino_backward_data(g1 + o, NULL, C, dy + (size_t)b * OC * HW, U, C, H, W, OC, scratch);
        dacl_wino_backward_data_bn(g2 + o, dy + (size_t)b * OC * HW, U, C, H, W, OC, scratch, &bs);
    }
    assert_memory_equal(g1, g2, n * sizeof(float));
    /* xout: the transformed input as team.c's xform_plane writes it, to the bit */
    for (int b = 0; b < N; b++)
        for (int c = 0; c < C; c++) {
            const size_t o = ((size_t)b * C + c) * HW;
            const uint64_t *mb = mask ? mask + ((size_t)b * C + c) * mw : NULL;
            for (int i = 0; i < HW; i++) {
                float z = k.c[o + i] * scale[c] + shift[c];
                float a = z > 0.0f ? z : z * SLOPE;
                if (mb) a = mb[i / 64] >> (i % 64) & 1 ? a * ks : 0.0f;
                assert_memory_equal(&xo[o + i], &a, sizeof(float));
            }
        }
    /* the sums against double sums of dz as the BN backward forms it */
    for (int b = 0; b < N; b++)
        for (int c = 0; c < C; c++) {
            const size_t o = ((size_t)b * C + c) * HW;
            const uint64_t *mb = mask ? mask + ((size_t)b * C + c) * mw : NULL;
            double s1 = 0.0, s2 = 0.0, a1 = 0.0, a2 = 0.0;
            for (int i = 0; i < HW; i++) {
                float g = g1[o + i], x = k.c[o + i];
                if (mb) g = mb[i / 64] >> (i % 64) & 1 ? g * ks : 0.0f;
                float z = x * scale[c] + shift[c];
                double dz = z > 0.0f ? g : g * SLOPE, d2 = dz * ((double)x - k.mean[c]);
                s1 += dz, s2 += d2, a1 += fabs(dz), a2 += fabs(d2);
            }
            const double *sn = sums + ((size_t)b * C + c) * 2;
            assert_true(fabs(sn[0] - s1) <= 1e-5 * a1 + 1e-6);
            assert_true(fabs(sn[1] - s2) <= 1e-5 * a2 + 1e-6);
        }
    /* the BN backward from them against the two-pass one */
    float *gr = fnew(3 * C), *gf = fnew(3 * C);
    for (int c = 0; c < 3 * C; c++) gr[c] = gf[c] = 0.125f * c;
    dacl_bn_act_backward_ch(g1, gr, gr + C, gr + 2 * C, g1, mask, p, k.c, k.beta, k.mean, k.rstd,
                            k.gamma, N, C, HW, SLOPE, 0, C);
    for (int c = 0; c < C; c++) /* a channel at a time, in place, as the team */
        dacl_bn_act_backward_sums_ch(g2, gf, gf + C, gf + 2 * C, g2, mask, p, k.c, k.beta, k.mean,
                                     k.rstd, k.gamma, N, C, HW, SLOPE, sums, c, c + 1);
    double dmax = 0.0, emax = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)g2[i] - g1[i]);
        if (fabs(g1[i]) > dmax) dmax = fabs(g1[i]);
        if (e > emax) emax = e;
    }
    double gmax = 0.0, gerr = 0.0;
    for (int c = 0; c < 3 * C; c++) {
        if (fabs(gr[c]) > gmax) gmax = fabs(gr[c]);
        if (fabs((double)gf[c] - gr[c]) > gerr) gerr = fabs((double)gf[c] - gr[c]);
    }
    printf("  bn sums  N %d  C %2d  %3dx%-3d  p %.2f  dx %.1e  grads %.1e\n", N, C, H, W, p,
           emax / dmax, gerr / gmax);
    assert_true(emax <= 2e-6 * dmax);
    assert_true(gerr <= 2e-6 * gmax);
    free(dy), free(w), free(U), free(scratch), free(mask), free(scale), free(shift);
    free(g1), free(g2), free(xo), free(sums), free(gr), free(gf);
    bn_case_free(&k);
}

static void test_wino_bn_sums(void **state) {
    (void)state;
    if (!dacl_conv3x3_direct_available()) {
        printf("  no AVX-512 on this CPU: Winograd is never used, nothing to check\n");
        skip();
    }
    check_wino_bn_sums(3, 16, 12, 64, 16, 0.3f, 51);
    check_wino_bn_sums(2, 16, 9, 36, 16, 0.05f, 52); /* odd rows; rows off 16-element words */
    check_wino_bn_sums(3, 10, 7, 47, 24, 0.5f, 53);  /* partial channel tiles and vectors */
    check_wino_bn_sums(2, 32, 8, 32, 32, 0.0f, 54);  /* no dropout */
    check_wino_bn_sums(2, 8, 5, 100, 8, 0.2f, 55);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn_backward_sums_conv_bias),
        cmocka_unit_test(test_bn_backward_bias_sum_changes_nothing_else),
        cmocka_unit_test(test_dropout_bits),
        cmocka_unit_test(test_bn_backward_dropout_fused),
        cmocka_unit_test(test_bn_backward_pool_fused),
        cmocka_unit_test(test_pool_backward_bits),
        cmocka_unit_test(test_wino_bn_sums),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
