/* The C U-Net against PyTorch: logits, loss, every parameter gradient, BN
 * running statistics and 5 SGD steps, from tests/reference/unet_ref.bin
 * (written by tests/reference/make_fixtures.py; read its docstring for the
 * closed-form weights and input that both sides compute). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dacl/nn.h"
#include "refload.h"

#define N 2
#define H 64
#define W 64
#define NC 4
#define REL_TOL 1e-4
#define ABS_FLOOR 1e-5

static double worst_overall = 0.0;
static char worst_name[160];

/* Every element must satisfy |a - b| <= max(REL_TOL * |b|, ABS_FLOOR).
 * Returns the worst ratio of the error to its allowance (<= 1 passes). */
static double compare(const char *what, const float *got, const RefTensor *ref, size_t numel) {
    assert_non_null(ref);
    assert_int_equal(ref->numel, numel);
    double worst = 0.0, worst_abs = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < numel; i++) {
        double b = ref->data[i], d = fabs((double)got[i] - b);
        double allow = fmax(REL_TOL * fabs(b), ABS_FLOOR);
        if (d / allow > worst) worst = d / allow, worst_abs = d, at = i;
    }
    if (worst > worst_overall) {
        worst_overall = worst;
        snprintf(worst_name, sizeof worst_name, "%s[%zu]", what, at);
    }
    if (worst > 1.0)
        fprintf(stderr, "MISMATCH %s[%zu]: got %.8g want %.8g (|diff| %.3g, %.2fx the tolerance)\n",
                what, at, got[at], ref->data[at], worst_abs, worst);
    return worst;
}

/* The fixture's closed-form parameters (see make_fixtures.py). */
static void formula_init(DaclUNet *m) {
    float *p = dacl_unet_params(m);
    for (int t = 0; t < dacl_unet_num_tensors(m); t++) {
        const DaclParamInfo *ti = dacl_unet_tensor(m, t);
        for (size_t i = 0; i < ti->numel; i++) {
            double v, x = (double)i;
            if (ti->kind == DACL_PARAM_BN_W)
                v = 1.0 + 0.1 * sin(0.5 * x + t);
            else if (ti->kind == DACL_PARAM_BN_B)
                v = 0.1 * cos(0.3 * x + t);
            else
                v = sin(0.7 * x + 1.3 * t + 0.1) / sqrt((double)ti->fan_in);
            p[ti->offset + i] = (float)v;
        }
    }
}

static void formula_input(float *x, uint8_t *y) {
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++) {
                size_t i = ((size_t)n * H + h) * W + w;
                x[i] = (float)(0.5 + 0.5 * sin(0.11 * h + 0.07 * w + 1.7 * n) * cos(0.05 * w - 0.03 * h));
                double r = sqrt(pow(h - (32 + 4 * n), 2) + pow(w - (30 - 3 * n), 2));
                y[i] = r < 8 ? 3 : r < 16 ? 2 : r < 24 ? 1 : 0;
            }
}

/* 0.5 * (CE + Dice) and its gradient into dlogits (overwritten). */
static double loss_and_grad(const float *logits, const uint8_t *y, float *probs, float *dlogits) {
    size_t n = (size_t)N * NC * H * W;
    memset(dlogits, 0, n * sizeof(float));
    dacl_softmax_forward(probs, logits, N, NC, H * W);
    double ce = dacl_ce_loss(dlogits, probs, y, N, NC, H * W, 0.5f);
    double dice = dacl_dice_loss(dlogits, probs, y, N, NC, H * W, 0.5f);
    return 0.5 * (ce + dice);
}

static void check_against_pytorch(int threads) {
    RefFile ref;
    assert_int_equal(ref_load(&ref, DACL_SOURCE_DIR "/tests/reference/unet_ref.bin"), 0);

    DaclUNetConfig cfg = {.in_channels = 1, .classes = NC, .widths = {4, 8, 16, 32, 64}};
    DaclUNet *m;
    assert_int_equal(dacl_unet_create(&m, &cfg, N, H, W), 0);
    DaclPool *pool = NULL;
    if (threads > 1) {
        assert_int_equal(dacl_pool_create(&pool, threads), 0);
        assert_int_equal(dacl_unet_set_pool(m, pool), 0);
    }
    DaclRng rng;
    dacl_rng_seed(&rng, 1);
    dacl_unet_init(m, &rng); /* BN stats and momentum; parameters replaced below */
    formula_init(m);

    float *x = malloc(sizeof(float) * N * H * W);
    uint8_t *y = malloc((size_t)N * H * W);
    float *probs = malloc(sizeof(float) * N * NC * H * W);
    float *dlogits = malloc(sizeof(float) * N * NC * H * W);
    formula_input(x, y);

    float step_losses[5];
    for (int k = 0; k < 5; k++) {
        dacl_unet_zero_grad(m);
        assert_int_equal(dacl_unet_forward(m, x, N, 1, 0), 0);
        float loss = (float)loss_and_grad(dacl_unet_logits(m), y, probs, dlogits);
        assert_int_equal(dacl_unet_backward(m, dlogits, NULL, 0), 0);
        step_losses[k] = loss;
        if (k == 0) {
            double w = 0.0, c;
            c = compare("logits", dacl_unet_logits(m), ref_find(&ref, "logits"), (size_t)N * NC * H * W);
            w = fmax(w, c);
            w = fmax(w, compare("loss", &loss, ref_find(&ref, "loss"), 1));
            char name[160];
            for (int t = 0; t < dacl_unet_num_tensors(m); t++) {
                const DaclParamInfo *ti = dacl_unet_tensor(m, t);
                snprintf(name, sizeof name, "grad.%s", ti->name);
                w = fmax(w, compare(name, dacl_unet_grads(m) + ti->offset, ref_find(&ref, name),
                                    ti->numel));
            }
            /* BN buffers: ours are mean[C], var[C] per BN layer in module order;
             * the fixture names them bn.<module>.running_mean / running_var */
            const float *st = dacl_unet_bn_stats(m);
            for (int t = 0; t < dacl_unet_num_tensors(m); t++) {
                const DaclParamInfo *ti = dacl_unet_tensor(m, t);
                if (ti->kind != DACL_PARAM_BN_W) continue;
                char mod[64];
                snprintf(mod, sizeof mod, "%.*s", (int)(strlen(ti->name) - strlen(".weight")), ti->name);
                snprintf(name, sizeof name, "bn.%s.running_mean", mod);
                w = fmax(w, compare(name, st, ref_find(&ref, name), ti->numel));
                snprintf(name, sizeof name, "bn.%s.running_var", mod);
                w = fmax(w, compare(name, st + ti->numel, ref_find(&ref, name), ti->numel));
                st += 2 * ti->numel;
            }
            assert_true(st == dacl_unet_bn_stats(m) + dacl_unet_bn_stats_count(m));
            assert_true(w <= 1.0);
        }
        float lr = (float)dacl_poly_lr(0.01, k, 10, 0.9);
        dacl_unet_sgd_step(m, lr, 0.9f, 1e-4f);
    }
    assert_true(compare("step_losses", step_losses, ref_find(&ref, "step_losses"), 5) <= 1.0);
    double w = 0.0;
    char name[160];
    for (int t = 0; t < dacl_unet_num_tensors(m); t++) {
        const DaclParamInfo *ti = dacl_unet_tensor(m, t);
        snprintf(name, sizeof name, "final.%s", ti->name);
        w = fmax(w, compare(name, dacl_unet_params(m) + ti->offset, ref_find(&ref, name), ti->numel));
    }
    assert_true(w <= 1.0);
    printf("%d thread(s): worst difference: %.3f of the tolerance (|d| <= max(%g |ref|, %g)) at %s\n",
           threads, worst_overall, REL_TOL, ABS_FLOOR, worst_name);
    worst_overall = 0.0;

    free(x);
    free(y);
    free(probs);
    free(dlogits);
    dacl_unet_free(m);
    dacl_pool_free(pool);
    ref_free(&ref);
}

/* the single-threaded path and the team path (per-member gradients, split ops) */
static void test_unet_matches_pytorch_1_thread(void **state) {
    (void)state;
    check_against_pytorch(1);
}

static void test_unet_matches_pytorch_3_threads(void **state) {
    (void)state;
    check_against_pytorch(3);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_unet_matches_pytorch_1_thread),
                                       cmocka_unit_test(test_unet_matches_pytorch_3_threads)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
