/* The passes the U-Net's backward fuses into BatchNorm's backward
 * (core/nn/ops_norm.c), against the separate ops they replace, on random
 * data at plane sizes with partial 16-lane blocks:
 *   - the bias gradient of the convolution before a BN, summed as the BN
 *     writes its dx, against that convolution's own bias gradient of dx.
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
    dacl_bn_act_backward_ch(dx, dgamma, dbeta, dbias, k.g, k.c, k.beta, k.mean, k.rstd, k.gamma, N, C,
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
    dacl_bn_act_backward_ch(dx1, gs1, gs1 + C, NULL, k.g, k.c, k.beta, k.mean, k.rstd, k.gamma, N, C,
                            HW, SLOPE, 0, C);
    dacl_bn_act_backward_ch(dx2, gs2, gs2 + C, db, k.g, k.c, k.beta, k.mean, k.rstd, k.gamma, N, C, HW,
                            SLOPE, 0, C);
    assert_memory_equal(dx1, dx2, n * sizeof(float));
    assert_memory_equal(gs1, gs2, 2 * C * sizeof(float));
    free(dx1), free(dx2), free(gs1), free(gs2), free(db);
    bn_case_free(&k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn_backward_sums_conv_bias),
        cmocka_unit_test(test_bn_backward_bias_sum_changes_nothing_else),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
