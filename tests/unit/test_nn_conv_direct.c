/* The direct 3x3 convolution kernels (core/nn/ops_conv_direct.c) against
 * the im2col + sgemm path on random shapes: odd heights and widths (rows
 * ending in a partial vector, rows shorter than one vector), one row, channel
 * counts that leave partial tiles, forward on a subrange of rows, the input
 * gradient split in two buffers (a concat's halves), the weight gradient
 * accumulating, and no input gradient. Their finite-difference checks are in
 * test_nn_grad.c (conv2d at widths that take these kernels). Skipped where
 * the CPU has no AVX-512. */
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
#include "dacl/error.h"
#include "dacl/nn.h"

static float *fnew(size_t n) {
    float *v = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(v);
    return v;
}

static float *frand(DaclRng *r, size_t n) {
    float *v = fnew(n);
    for (size_t i = 0; i < n; i++) v[i] = 2.0f * dacl_rng_uniform(r) - 1.0f;
    return v;
}

/* max |a - b| over max |b|: both paths sum the same products in another
 * order, so they agree to float roundoff of the largest terms */
static double rel_diff(const float *a, const float *b, size_t n) {
    double scale = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs((double)b[i]));
        worst = fmax(worst, fabs((double)a[i] - b[i]));
    }
    return scale > 0.0 ? worst / scale : worst;
}

/* y, filled with 1234 and then given rows [h0, h1): those rows match ref to
 * tol (relative, with a floor of 1), every other value is still 1234 */
static void assert_rows_only(const float *y, const float *ref, int OC, int H, int W, int h0, int h1,
                             double tol) {
    const size_t HW = (size_t)H * W;
    for (int oc = 0; oc < OC; oc++)
        for (int h = 0; h < H; h++)
            for (int q = 0; q < W; q++) {
                size_t i = oc * HW + (size_t)h * W + q;
                if (h < h0 || h >= h1) assert_true(y[i] == 1234.0f);
                else assert_true(fabs((double)y[i] - ref[i]) <= tol * (1.0 + fabs((double)ref[i])));
            }
}

#define TOL 1e-5

static void check_shape(int C, int H, int W, int OC, uint64_t seed) {
    DaclRng r;
    dacl_rng_seed(&r, seed);
    const size_t HW = (size_t)H * W, nw = (size_t)OC * C * 9;
    float *x = frand(&r, C * HW), *w = frand(&r, nw), *b = frand(&r, OC), *dy = frand(&r, OC * HW);
    float *ws = fnew(dacl_conv2d_ws(C, H, W, 3));
    float *y1 = fnew(OC * HW), *y2 = fnew(OC * HW);

    /* forward: every row, then a subrange that leaves the rest untouched */
    dacl_conv3x3_im2col_forward_rows(y1, x, w, b, C, H, W, OC, 0, H, ws);
    dacl_conv3x3_direct_forward_rows(y2, x, w, b, C, H, W, OC, 0, H);
    double ey = rel_diff(y2, y1, OC * HW);
    int h0 = H / 3, h1 = H - H / 4;
    for (size_t i = 0; i < OC * HW; i++) y2[i] = 1234.0f;
    dacl_conv3x3_direct_forward_rows(y2, x, w, b, C, H, W, OC, h0, h1);
    assert_rows_only(y2, y1, OC, H, W, h0, h1, TOL * 10);

    /* backward: dx split at csplit, dw accumulating onto a nonzero start */
    int csplit = C > 1 ? C / 2 + 1 : C;
    float *dxa1 = fnew(csplit * HW), *dxb1 = fnew((C - csplit) * HW + 1);
    float *dxa2 = fnew(csplit * HW), *dxb2 = fnew((C - csplit) * HW + 1);
    float *dw1 = frand(&r, nw), *dw2 = fnew(nw), *dw3 = fnew(nw);
    memcpy(dw2, dw1, nw * sizeof(float));
    memcpy(dw3, dw1, nw * sizeof(float));
    for (size_t i = 0; i < csplit * HW; i++) dxa2[i] = NAN; /* overwritten, never read */
    for (size_t i = 0; i < (C - csplit) * HW; i++) dxb2[i] = NAN;
    dacl_conv3x3_im2col_backward(dxa1, dxb1, csplit, dw1, dy, x, w, C, H, W, OC, ws, 1);
    dacl_conv3x3_direct_backward(dxa2, dxb2, csplit, dw2, dy, x, w, C, H, W, OC, 1);
    dacl_conv3x3_direct_backward(NULL, NULL, C, dw3, dy, x, w, C, H, W, OC, 1);
    double ea = rel_diff(dxa2, dxa1, csplit * HW), eb = rel_diff(dxb2, dxb1, (C - csplit) * HW);
    double ew = rel_diff(dw2, dw1, nw);
    printf("  C %3d  OC %3d  %3dx%-3d  y %.1e  dx %.1e / %.1e  dw %.1e\n", C, OC, H, W, ey, ea, eb,
           ew);
    assert_true(ey <= TOL && ea <= TOL && eb <= TOL && ew <= TOL);
    assert_memory_equal(dw3, dw2, nw * sizeof(float)); /* dx = NULL: the same dw */

    free(x), free(w), free(b), free(dy), free(ws), free(y1), free(y2);
    free(dxa1), free(dxb1), free(dxa2), free(dxb2), free(dw1), free(dw2), free(dw3);
}

static void test_direct_matches_im2col(void **state) {
    (void)state;
    if (!dacl_conv3x3_direct_available()) {
        printf("  no AVX-512 on this CPU: the direct kernels are never used, nothing to check\n");
        skip();
    }
    static const int shapes[][4] = {
        /* C, H, W, OC */
        {1, 5, 67, 5},   {3, 1, 16, 9},   {16, 9, 33, 16}, {7, 4, 3, 3},   {5, 6, 47, 13},
        {32, 7, 64, 32}, {2, 3, 17, 1},   {9, 12, 49, 11}, {16, 2, 1, 4},  {64, 4, 32, 24},
        {1, 16, 16, 16}, {24, 5, 95, 7},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_shape(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], 100 + i);
    /* random shapes on top */
    DaclRng r;
    dacl_rng_seed(&r, 5);
    for (int k = 0; k < 20; k++) {
        int C = 1 + (int)dacl_rng_below(&r, 40), OC = 1 + (int)dacl_rng_below(&r, 40);
        int H = 1 + (int)dacl_rng_below(&r, 12), W = 1 + (int)dacl_rng_below(&r, 90);
        check_shape(C, H, W, OC, 200 + k);
    }
}

/* Winograd F(2x2,3x3) against the direct kernels: forward on every row and
 * on subranges starting and ending on odd rows (blocks straddle them), the
 * input gradient split in two, and the weight gradient. Its error is larger than a reordered sum
 * (the transforms add and subtract inputs before the products), but of the
 * same order as float roundoff of the largest terms. */
#define WINO_TOL 2e-5

static void check_wino(int C, int H, int W, int OC, uint64_t seed) {
    DaclRng r;
    dacl_rng_seed(&r, seed);
    const size_t HW = (size_t)H * W, nw = (size_t)OC * C * 9;
    float *x = frand(&r, C * HW), *w = frand(&r, nw), *b = frand(&r, OC), *dy = frand(&r, OC * HW);
    float *U = fnew(dacl_wino_u_floats(C, OC));
    int cmax = C > OC ? C : OC;
    float *scratch = fnew(dacl_wino_scratch_floats(cmax));
    dacl_wino_weights(U, w, C, OC, 0, OC / 2);
    dacl_wino_weights(U, w, C, OC, OC / 2, OC);
    float *y1 = fnew(OC * HW), *y2 = fnew(OC * HW);
    dacl_conv3x3_direct_forward_rows(y1, x, w, b, C, H, W, OC, 0, H);
    dacl_wino_forward_rows(y2, x, U, b, C, H, W, OC, 0, H, scratch);
    double ey = rel_diff(y2, y1, OC * HW);
    assert_true(ey <= WINO_TOL);
    int bands[][2] = {{H / 3, H - H / 4}, {1, H}, {0, H > 1 ? H - 1 : H}, {H / 2, H / 2 + 1}};
    for (size_t k = 0; k < sizeof bands / sizeof bands[0]; k++) {
        int h0 = bands[k][0], h1 = bands[k][1];
        for (size_t i = 0; i < OC * HW; i++) y2[i] = 1234.0f;
        dacl_wino_forward_rows(y2, x, U, b, C, H, W, OC, h0, h1, scratch);
        assert_rows_only(y2, y1, OC, H, W, h0, h1, WINO_TOL * 10);
    }

    int csplit = C > 1 ? C / 2 + 1 : C;
    float *dxa1 = fnew(csplit * HW), *dxb1 = fnew((C - csplit) * HW + 1);
    float *dxa2 = fnew(csplit * HW), *dxb2 = fnew((C - csplit) * HW + 1);
    float *dw = fnew(nw);
    memset(dw, 0, nw * sizeof(float));
    for (size_t i = 0; i < csplit * HW; i++) dxa2[i] = NAN; /* overwritten, never read */
    for (size_t i = 0; i < (C - csplit) * HW; i++) dxb2[i] = NAN;
    dacl_conv3x3_direct_backward(dxa1, dxb1, csplit, dw, dy, x, w, C, H, W, OC, 1);
    dacl_wino_backward_data(dxa2, dxb2, csplit, dy, U, C, H, W, OC, scratch);
    double ea = rel_diff(dxa2, dxa1, csplit * HW), eb = rel_diff(dxb2, dxb1, (C - csplit) * HW);
    /* the weight gradient accumulates onto what is there */
    float *dw2 = frand(&r, nw), *dw3 = fnew(nw), *dsc = fnew(dacl_wino_dw_scratch_floats(C, OC));
    for (size_t i = 0; i < nw; i++) dw3[i] = dw2[i], dw[i] += dw2[i];
    dacl_wino_backward_weights(dw3, dy, x, C, H, W, OC, dsc, 1);
    double ew = rel_diff(dw3, dw, nw);
    printf("  winograd  C %3d  OC %3d  %3dx%-3d  y %.1e  dx %.1e / %.1e  dw %.1e\n", C, OC, H, W, ey,
           ea, eb, ew);
    assert_true(ea <= WINO_TOL && eb <= WINO_TOL && ew <= WINO_TOL);
    free(dw2), free(dw3), free(dsc);

    free(x), free(w), free(b), free(dy), free(U), free(scratch), free(y1), free(y2);
    free(dxa1), free(dxb1), free(dxa2), free(dxb2), free(dw);
}

static void test_wino_matches_direct(void **state) {
    (void)state;
    if (!dacl_conv3x3_direct_available()) {
        printf("  no AVX-512 on this CPU: Winograd is never used, nothing to check\n");
        skip();
    }
    static const int shapes[][4] = {
        /* C, H, W, OC: odd sizes, partial 32-column groups, partial channel tiles */
        {16, 8, 64, 16}, {1, 5, 67, 5},  {3, 1, 16, 9},   {16, 9, 33, 16}, {7, 4, 3, 3},
        {5, 7, 47, 13},  {32, 6, 96, 32}, {2, 3, 17, 1},  {64, 4, 32, 24}, {24, 5, 95, 7},
        {128, 4, 16, 8}, {8, 13, 200, 16},
        /* the weight gradient in several bands of blocks */
        {64, 20, 96, 40}, {48, 17, 70, 48},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_wino(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], 300 + i);
    DaclRng r;
    dacl_rng_seed(&r, 6);
    for (int k = 0; k < 20; k++) {
        int C = 1 + (int)dacl_rng_below(&r, 40), OC = 1 + (int)dacl_rng_below(&r, 40);
        int H = 1 + (int)dacl_rng_below(&r, 12), W = 1 + (int)dacl_rng_below(&r, 110);
        check_wino(C, H, W, OC, 400 + k);
    }
}

/* One training forward and backward of m on x: logits and gradients into
 * fresh buffers. */
static void unet_pass(DaclUNet *m, const float *x, const uint8_t *y, int N, int S, int NC,
                      float **logits, float **grads) {
    const size_t px = (size_t)N * S * S, np = dacl_unet_num_params(m);
    float *probs = fnew(px * NC), *dl = fnew(px * NC);
    assert_int_equal(dacl_unet_forward(m, x, N, 1, 77), DACL_OK);
    *logits = fnew(px * NC);
    memcpy(*logits, dacl_unet_logits(m), px * NC * sizeof(float));
    dacl_softmax_forward(probs, *logits, N, NC, S * S);
    memset(dl, 0, px * NC * sizeof(float));
    dacl_ce_loss(dl, probs, y, N, NC, S * S, 1.0f);
    dacl_unet_zero_grad(m);
    assert_int_equal(dacl_unet_backward(m, dl, NULL, 0), DACL_OK);
    *grads = fnew(np);
    memcpy(*grads, dacl_unet_grads(m), np * sizeof(float));
    free(probs), free(dl);
}

/* worst over the weight tensors (conv biases before BatchNorm have a zero
 * gradient up to roundoff: left out) of |a - b| / |b| in the L2 norm */
static double worst_weight_grad(const DaclUNet *m, const float *a, const float *b) {
    double worst = 0.0;
    for (int t = 0; t < dacl_unet_num_tensors(m); t++) {
        const DaclParamInfo *ti = dacl_unet_tensor(m, t);
        if (ti->kind == DACL_PARAM_CONV_B) continue;
        double nb = 0.0, nd = 0.0;
        for (size_t i = ti->offset; i < ti->offset + ti->numel; i++) {
            nb += (double)b[i] * b[i];
            nd += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        }
        if (nb > 0.0) worst = fmax(worst, sqrt(nd / nb));
    }
    return worst;
}

/* The U-Net with its default widths at 64x64 takes Winograd at 64x64 and
 * 32x32: the same model, batch and dropout key with it and without give the
 * same logits to float roundoff. Gradients of an untrained net are not that
 * stable: a LeakyReLU or a max-pool that flips on a roundoff-sized change
 * routes a gradient elsewhere, and rounding the input by 1e-6 alone moves
 * the deep layers' gradients by about 1 % (measured here, each run). So the
 * output layer's gradient, which no flip reaches, must agree to roundoff,
 * and every other weight gradient no worse than that input rounding moves it. */
static void test_unet_wino_matches(void **state) {
    (void)state;
    if (!dacl_conv3x3_direct_available()) {
        printf("  no AVX-512 on this CPU: Winograd is never used, nothing to check\n");
        skip();
    }
    const int N = 2, S = 64, NC = 4;
    assert_true(dacl_conv3x3_use_wino(32, S / 2, S / 2, 32, 0) && dacl_conv3x3_use_wino(16, S, S, 16, 1));
    DaclUNetConfig cfg = dacl_unet_default_config(1, NC);
    DaclUNet *m = NULL;
    assert_int_equal(dacl_unet_create(&m, &cfg, N, S, S), DACL_OK);
    DaclRng r;
    dacl_rng_seed(&r, 11);
    dacl_unet_init(m, &r);
    const size_t px = (size_t)N * S * S;
    float *x = frand(&r, px), *xr = fnew(px);
    uint8_t *y = malloc(px);
    assert_non_null(y);
    for (size_t i = 0; i < px; i++) y[i] = (uint8_t)dacl_rng_below(&r, NC);
    for (size_t i = 0; i < px; i++) xr[i] = x[i] * (1.0f + 1e-6f * (dacl_rng_uniform(&r) - 0.5f));

    float *lw, *gw, *ld, *gd, *lr, *gr;
    unet_pass(m, x, y, N, S, NC, &lw, &gw);
    dacl_unet_no_wino(m);
    unet_pass(m, x, y, N, S, NC, &ld, &gd);
    unet_pass(m, xr, y, N, S, NC, &lr, &gr);

    const DaclParamInfo *out = dacl_unet_tensor(m, dacl_unet_num_tensors(m) - 2);
    assert_true(out->kind == DACL_PARAM_CONV_W);
    double el = rel_diff(lw, ld, px * NC);
    double eo = rel_diff(gw + out->offset, gd + out->offset, out->numel);
    double ew = worst_weight_grad(m, gw, gd), er = worst_weight_grad(m, gr, gd);
    printf("  U-Net 64x64, Winograd against direct: logits %.1e, output layer's gradient %.1e,\n"
           "  worst weight gradient %.1e (L2); input rounded by 1e-6 instead: %.1e\n",
           el, eo, ew, er);
    assert_true(el > 0.0); /* it did take another path */
    assert_true(el <= 1e-4 && eo <= 1e-4);
    assert_true(ew <= 3.0 * er + 1e-4 && ew <= 0.05);
    free(x), free(xr), free(y), free(lw), free(gw), free(ld), free(gd), free(lr), free(gr);
    dacl_unet_free(m);
}

/* The U-Net's conv layers go through the dispatch; a batch of one image and
 * of several must give each image the same result (the kernels work image by
 * image, whatever the batch). */
static void test_dispatch_batch(void **state) {
    (void)state;
    const int N = 3, C = 6, H = 8, W = 70, OC = 10;
    const size_t HW = (size_t)H * W;
    DaclRng r;
    dacl_rng_seed(&r, 9);
    float *x = frand(&r, N * C * HW), *w = frand(&r, (size_t)OC * C * 9), *b = frand(&r, OC);
    float *ws = fnew(dacl_conv2d_ws(C, H, W, 3));
    float *yN = fnew(N * OC * HW), *y1 = fnew(OC * HW);
    dacl_conv2d_forward(yN, x, w, b, N, C, H, W, OC, 3, ws);
    for (int n = 0; n < N; n++) {
        dacl_conv2d_forward(y1, x + n * C * HW, w, b, 1, C, H, W, OC, 3, ws);
        assert_memory_equal(y1, yN + n * OC * HW, OC * HW * sizeof(float));
    }
    free(x), free(w), free(b), free(ws), free(yN), free(y1);
}

/* acc 0 (a gradient slot's first image): dw and db overwritten, never read
 * (they start as NaN here), equal to acc 1 onto zeros, and only the first
 * of several row bands overwrites: every weight-gradient path, the bias
 * gradient, and the transposed convolution's. */
static void expect_overwrite(const float *got, const float *ref, size_t n) {
    for (size_t i = 0; i < n; i++) assert_true(got[i] == ref[i]);
}

static void check_acc0(int C, int H, int W, int OC, uint64_t seed) {
    DaclRng r;
    dacl_rng_seed(&r, seed);
    const size_t HW = (size_t)H * W, nw = (size_t)OC * C * 9, nt = (size_t)C * OC * 4;
    float *x = frand(&r, C * HW), *w = frand(&r, nw), *dy = frand(&r, OC * HW);
    float *dyt = frand(&r, OC * 4 * HW), *wt = frand(&r, nt);
    size_t wsn = dacl_conv2d_ws(C, H, W, 3), dws = dacl_wino_dw_scratch_floats(C, OC);
    size_t tws = dacl_convt2x2_ws(OC, H, W);
    if (dws > wsn) wsn = dws;
    if (tws > wsn) wsn = tws;
    float *ws = fnew(wsn), *dx = fnew(C * HW);
    float *a = fnew(nw + OC), *b = fnew(nw + OC);
    const int direct = dacl_conv3x3_direct_available();
    for (int path = 0; path < 6; path++) {
        if (!direct && (path == 1 || path == 2)) continue;
        size_t n = path == 5 ? nt + OC : nw + OC;
        for (size_t i = 0; i < n; i++) a[i] = 0.0f, b[i] = NAN;
        for (int acc = 1; acc >= 0; acc--) {
            float *d = acc ? a : b;
            switch (path) {
            case 0: dacl_conv3x3_im2col_backward(NULL, NULL, C, d, dy, x, w, C, H, W, OC, ws, acc); break;
            case 1: dacl_conv3x3_direct_backward(NULL, NULL, C, d, dy, x, w, C, H, W, OC, acc); break;
            case 2: dacl_wino_backward_weights(d, dy, x, C, H, W, OC, ws, acc); break;
            case 3: dacl_conv_image_backward_split(dx, NULL, C, d, d + nw, dy, x, w, C, H, W, OC, ws, acc); break;
            case 4: dacl_conv3x3_im2col_backward(dx, NULL, C, d, dy, x, w, C, H, W, OC, ws, acc); break;
            default: dacl_convt_image_backward(dx, d, d + nt, dyt, x, wt, C, H, W, OC, ws, acc); break;
            }
        }
        /* the weights, and the bias where the path has one */
        expect_overwrite(b, a, path == 3 || path == 5 ? n : nw);
    }
    free(x), free(w), free(dy), free(dyt), free(wt), free(ws), free(dx), free(a), free(b);
}

static void test_grad_overwrite(void **state) {
    (void)state;
    /* several row bands for im2col (C 16, W 64: 28 rows) and the direct dw
     * (W 64: 31 rows), several bands of blocks for Winograd's, partial tiles */
    static const int shapes[][4] = {{16, 40, 64, 16}, {5, 70, 64, 7}, {3, 5, 17, 9}, {64, 20, 96, 40}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_acc0(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], 700 + i);
}

/* The transposed 2x2 convolution, run in bands of input rows (the GEMM's
 * rows of a band stay in cache), against the sums written out, at shapes of
 * one band and of several with a partial last one */
static void check_convt(int C, int H, int W, int OC, uint64_t seed) {
    DaclRng r;
    dacl_rng_seed(&r, seed);
    const size_t HW = (size_t)H * W, nw = (size_t)C * OC * 4, W2 = 2 * (size_t)W;
    float *x = frand(&r, C * HW), *w = frand(&r, nw), *b = frand(&r, OC), *dy = frand(&r, OC * 4 * HW);
    float *ws = fnew(dacl_convt2x2_ws(OC, H, W)), *y = fnew(OC * 4 * HW), *yr = fnew(OC * 4 * HW);
    float *dx = fnew(C * HW), *dxr = fnew(C * HW), *dw = fnew(nw + OC), *dwr = fnew(nw + OC);
    for (int oc = 0; oc < OC; oc++)
        for (int i = 0; i < 2 * H; i++)
            for (int j = 0; j < 2 * W; j++) {
                double s = b[oc];
                for (int c = 0; c < C; c++)
                    s += (double)w[((size_t)c * OC + oc) * 4 + (i & 1) * 2 + (j & 1)] *
                         x[c * HW + (size_t)(i / 2) * W + j / 2];
                yr[oc * 4 * HW + i * W2 + j] = (float)s;
            }
    for (size_t k = 0; k < nw + OC; k++) dwr[k] = 0.0f;
    for (int c = 0; c < C; c++)
        for (size_t p = 0; p < HW; p++) {
            double s = 0.0;
            for (int oc = 0; oc < OC; oc++)
                for (int q = 0; q < 4; q++) {
                    size_t o = oc * 4 * HW + (2 * (p / W) + q / 2) * W2 + 2 * (p % W) + q % 2;
                    s += (double)w[((size_t)c * OC + oc) * 4 + q] * dy[o];
                    dwr[((size_t)c * OC + oc) * 4 + q] += x[c * HW + p] * dy[o];
                    if (c == 0) dwr[nw + oc] += dy[o];
                }
            dxr[c * HW + p] = (float)s;
        }
    dacl_convt_image_forward(y, x, w, b, C, H, W, OC, ws);
    dacl_convt_image_backward(dx, dw, dw + nw, dy, x, w, C, H, W, OC, ws, 0);
    assert_true(rel_diff(y, yr, OC * 4 * HW) <= TOL);
    assert_true(rel_diff(dx, dxr, C * HW) <= TOL);
    assert_true(rel_diff(dw, dwr, nw) <= 1e-4 && rel_diff(dw + nw, dwr + nw, OC) <= 1e-4);
    free(x), free(w), free(b), free(dy), free(ws), free(y), free(yr), free(dx), free(dxr), free(dw),
        free(dwr);
}

static void test_convt_bands(void **state) {
    (void)state;
    check_convt(3, 5, 7, 2, 800);      /* one band */
    check_convt(8, 37, 64, 16, 801);   /* 32 rows a band: two, the last partial */
    check_convt(4, 20, 128, 64, 802);  /* 4 rows a band: five */
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_direct_matches_im2col),
                                       cmocka_unit_test(test_wino_matches_direct),
                                       cmocka_unit_test(test_unet_wino_matches),
                                       cmocka_unit_test(test_dispatch_batch),
                                       cmocka_unit_test(test_grad_overwrite),
                                       cmocka_unit_test(test_convt_bands)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
