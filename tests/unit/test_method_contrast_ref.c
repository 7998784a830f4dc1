/* The DACL contrastive module against PyTorch: every value and gradient of
 * one loss per positiveness mode (tests/reference/make_contrast_fixtures.py
 * wrote tests/reference/contrast_ref.bin), and a timing at the paper's
 * protocol when DACL_CONTRAST_BENCH is set ("all", or the foreground pixels
 * a class and image): 24 images of 64 x 64 x 64 features, bank 1000, 256
 * anchors, 512 + 512 keys, both models, 2 threads. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dacl/config.h"
#include "dacl/error.h"
#include "dacl/method.h"
#include "dacl/nn.h"
#include "refload.h"
#include "test_contrast_util.h"

/* ------------------------------------------------- PyTorch reference -- */

static const RefTensor *need(const RefFile *f, const char *name) {
    const RefTensor *t = ref_find(f, name);
    if (!t) fprintf(stderr, "fixture tensor %s missing\n", name);
    assert_non_null(t);
    return t;
}

/* max |got - ref| / max |ref| over the tensor, printed and checked */
static void expect_close(const char *name, const float *got, const RefTensor *ref, size_t n, double tol) {
    assert_int_equal(ref->numel, n);
    double scale = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref->data[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)got[i] - ref->data[i]));
    worst /= fmax(scale, 1e-30);
    printf("  %-22s worst %.2e of max |ref| %.3g\n", name, worst, scale);
    assert_true(worst <= tol);
}

static void expect_rows(const char *name, const int32_t *got, int n, const RefTensor *ref) {
    assert_int_equal((int)ref->numel, n);
    for (int i = 0; i < n; i++)
        if (got[i] != (int32_t)ref->data[i]) {
            fprintf(stderr, "%s[%d]: %d, PyTorch %d\n", name, i, got[i], (int)ref->data[i]);
            fail();
        }
}

static void test_pytorch_reference(void **state) {
    (void)state;
    RefFile f;
    if (ref_load(&f, DACL_SOURCE_DIR "/tests/reference/contrast_ref.bin")) {
        fprintf(stderr, "contrast_ref.bin missing: run tests/reference/make_contrast_fixtures.py\n");
        fail();
    }
    static const char *const modes[3] = {"weighted", "none", "literal"};
    const char *const params[6] = {"w1", "b1", "gamma", "beta", "w2", "b2"};
    uint8_t cls[MN * MHW];
    const RefTensor *rc = need(&f, "cls");
    for (int p = 0; p < MN * MHW; p++) cls[p] = (uint8_t)rc->data[p];
    for (int mode = 0; mode < 3; mode++) {
        printf(" positiveness = %s\n", modes[mode]);
        DaclJobConfig cfg = small_config(mode);
        DaclContrast *c;
        assert_int_equal(dacl_contrast_create(&c, &cfg, 1, MK, MCF, MN, MFH, MFW, NULL), DACL_OK);
        DaclRng r;
        dacl_rng_seed(&r, 1);
        dacl_contrast_init(c, &r);
        DaclHead *h = dacl_contrast_head(c, 0);
        float *p = dacl_head_params(h);
        for (int i = 0; i < 6; i++) {
            const RefTensor *t = need(&f, params[i]);
            memcpy(p, t->data, t->numel * sizeof(float));
            p += t->numel;
        }
        assert_true(p == dacl_head_params(h) + dacl_head_num_params(h));
        dacl_bank_push(dacl_contrast_bank(c), 1, need(&f, "bank_1")->data, NULL, 7);
        dacl_bank_push(dacl_contrast_bank(c), 2, need(&f, "bank_2")->data, NULL, 3);
        DaclContrastStats st;
        assert_int_equal(dacl_contrast_loss(c, 0, need(&f, "feat")->data, cls, MN, 0, 1.0f, &st), DACL_OK);
        int nrows;
        dacl_contrast_rows(c, 0, &nrows);
        if (mode == 0) {
            expect_close("embeddings", dacl_contrast_embeddings(c, 0), need(&f, "embeddings"), (size_t)nrows * 8, 1e-5);
            expect_close("densities", dacl_contrast_densities(c, 0), need(&f, "densities"), nrows, 1e-5);
            expect_close("BN running mean", dacl_head_bn_stats(h), need(&f, "running_mean"), HID, 1e-5);
            expect_close("BN running var", dacl_head_bn_stats(h) + HID, need(&f, "running_var"), HID, 1e-5);
            for (int k = 1; k < MK; k++) {
                DaclContrastClass ci;
                char name[64];
                dacl_contrast_class_info(c, 0, k, &ci);
                snprintf(name, sizeof name, "anchors_%d", k);
                expect_rows(name, ci.anchors, ci.nanchors, need(&f, name));
                snprintf(name, sizeof name, "keys_%d", k);
                expect_rows(name, ci.keys, ci.nkeys, need(&f, name));
                snprintf(name, sizeof name, "bank_keys_%d", k);
                expect_rows(name, ci.bank_keys, ci.nbank_keys, need(&f, name));
                snprintf(name, sizeof name, "centre_%d", k);
                expect_close(name, ci.centre, need(&f, name), 8, 1e-5);
                if (k == 1) expect_close("bank_density_1", ci.bank_density, need(&f, "bank_density_1"), 7, 1e-5);
            }
        }
        char name[64];
        for (int k = 1; k < MK; k++) {
            DaclContrastClass ci;
            dacl_contrast_class_info(c, 0, k, &ci);
            float l = (float)ci.loss;
            snprintf(name, sizeof name, "%s/loss_%d", modes[mode], k);
            expect_close(name, &l, need(&f, name), 1, 1e-5);
        }
        float l = (float)st.loss;
        snprintf(name, sizeof name, "%s/loss", modes[mode]);
        expect_close(name, &l, need(&f, name), 1, 1e-5);
        snprintf(name, sizeof name, "%s/dfeat", modes[mode]);
        expect_close(name, dacl_contrast_dfeat(c, 0), need(&f, name), MN * MCF * MHW, 1e-4);
        const float *g = dacl_head_grads(h);
        for (int i = 0; i < 6; i++) {
            const RefTensor *t;
            snprintf(name, sizeof name, "%s/d%s", modes[mode], params[i]);
            t = need(&f, name);
            if (i == 1) { /* b1: exactly 0 here, roundoff in PyTorch */
                for (size_t j = 0; j < t->numel; j++) assert_true(g[j] == 0.0f && fabs(t->data[j]) < 1e-9);
            } else {
                expect_close(name, g, t, t->numel, 1e-4);
            }
            g += t->numel;
        }
        dacl_contrast_free(c);
    }
    ref_free(&f);
}

/* ------------------------------------------------------------ bench -- */

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* The paper's protocol: 24 images, up2 features (64 ch at 64 x 64), 4 classes,
 * bank 1000 (filled), 256 anchors, 512 + 512 keys, both models, 2 threads.
 * per_class: foreground pixels a class and image (10000 a class is the cap). */
static void bench_one(int per_class) {
    enum { N = 24, CF = 64, FH = 64, HW = FH * FH, K = 4 };
    DaclJobConfig cfg;
    dacl_config_defaults(&cfg);
    DaclPool *pool;
    assert_int_equal(dacl_pool_create(&pool, 2), DACL_OK);
    DaclContrast *c;
    assert_int_equal(dacl_contrast_create(&c, &cfg, 2, K, CF, N, FH, FH, pool), DACL_OK);
    DaclRng r;
    dacl_rng_seed(&r, 1);
    dacl_contrast_init(c, &r);
    float *feat = fnew((size_t)N * CF * HW);
    fill_normal(&r, feat, (size_t)N * CF * HW, 1.0);
    uint8_t *cls = malloc((size_t)N * HW);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < HW; i++) cls[n * HW + i] = (uint8_t)(i < 3 * per_class ? 1 + i / per_class : 0);
    /* wall and CPU time (on a loaded machine the wall time is inflated;
     * the CPU time over the members is what two idle cores would take) */
    double wall = 0.0, cpu = 0.0;
    int timed = 0;
    for (long it = 0; it < 7; it++) {
        double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        for (int m = 0; m < 2; m++) assert_int_equal(dacl_contrast_loss(c, m, feat, cls, N, it, 1.0f, NULL), DACL_OK);
        dacl_contrast_sgd_step(c, 0.01f, 0.9f, 1e-4f);
        dacl_contrast_bank_update(c, it);
        if (it >= 4) /* the bank is full from iteration 4 */
            wall += clock_s(CLOCK_MONOTONIC) - w0, cpu += clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0, timed++;
    }
    printf("  %5d px/class/image (%5d a class in the batch): an iteration for both models: wall %.0f ms, "
           "CPU %.0f ms (%.0f ms on 2 idle cores = %.1f %% of a 6 s CPS iteration)\n",
           per_class, per_class * N < 10000 ? per_class * N : 10000, 1e3 * wall / timed, 1e3 * cpu / timed,
           1e3 * cpu / timed / 2, 100.0 * cpu / timed / 2 / 6.0);
    dacl_contrast_free(c);
    dacl_pool_free(pool);
    free(feat), free(cls);
}

static void test_bench(void **state) {
    (void)state;
    const char *only = getenv("DACL_CONTRAST_BENCH");
    if (!only) skip();
    int px = atoi(only);
    if (px > 0) {
        bench_one(px);
        return;
    }
    bench_one(100);  /* ACDC-like: a heart's classes at 1/4 resolution */
    bench_one(400);
    bench_one(1365); /* every pixel foreground: each class at the 10000 cap */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pytorch_reference),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
