/* The DACL contrastive module (method.md §3): hand-made examples with their
 * answers worked out here, finite-difference gradients, selections checked
 * against brute force, exact resume, and the PyTorch fixture
 * (tests/reference/make_contrast_fixtures.py).
 *
 * Finite differences (see test_nn_grad.c for the method): central
 * differences of a loss summed in double; the error of a coordinate is
 * |a - n| / max(|a| + |n|, floor), floor a fraction of the tensor's largest
 * |a|. Where the loss has ReLU kinks (through the head), a coordinate whose
 * +h and -h evaluations see different hidden-unit signs is skipped.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dacl/config.h"
#include "dacl/error.h"
#include "dacl/method.h"
#include "dacl/nn.h"
#include "test_contrast_util.h"

/* ------------------------------------------------------------- helpers -- */

static double ddot(const float *a, const float *b, int d) {
    double s = 0.0;
    for (int k = 0; k < d; k++) s += (double)a[k] * b[k];
    return s;
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* brute-force density of v against set[0..n) without row `self` (-1: none) */
static double brute_density(const float *v, const float *set, int n, int self, int d, const int *knn,
                            int nk) {
    double *s = malloc(sizeof(double) * (size_t)n);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (i != self) s[m++] = ddot(v, set + (size_t)i * d, d);
    qsort(s, (size_t)m, sizeof(double), cmp_desc);
    double out = 0.0;
    for (int k = 0; k < nk; k++) {
        double t = 0.0;
        for (int i = 0; i < knn[k]; i++) t += s[i];
        out += t / knn[k];
    }
    free(s);
    return out / nk;
}

/* ------------------------------------------------ finite differences -- */

typedef double (*LossFn)(void *ctx, uint64_t *pattern);

typedef struct {
    LossFn f;
    void *ctx;
    double h, floor_frac;
    size_t coords, max_skip;
    DaclRng rng;
} Fd;

static double fd_check(Fd *fd, const char *name, float *x, const float *a, size_t n, double tol) {
    double amax = 0.0;
    for (size_t i = 0; i < n; i++) amax = fmax(amax, fabs((double)a[i]));
    double floor = fmax(fd->floor_frac * amax, 1e-30);
    size_t count = n < fd->coords ? n : fd->coords, skipped = 0;
    double worst = 0.0;
    for (size_t k = 0; k < count; k++) {
        size_t i = n <= fd->coords ? k : dacl_rng_below(&fd->rng, (uint32_t)n);
        float x0 = x[i], xp = x0 + (float)fd->h, xm = x0 - (float)fd->h;
        uint64_t pp, pm;
        x[i] = xp;
        double lp = fd->f(fd->ctx, &pp);
        x[i] = xm;
        double lm = fd->f(fd->ctx, &pm);
        x[i] = x0;
        if (pp != pm) {
            skipped++;
            continue;
        }
        double num = (lp - lm) / ((double)xp - (double)xm);
        double err = fabs(a[i] - num) / fmax(fabs(a[i]) + fabs(num), floor);
        if (err > worst) worst = err;
        if (err > tol) fprintf(stderr, "FD MISMATCH %s[%zu]: analytic %.9g numeric %.9g\n", name, i, a[i], num);
    }
    printf("  %-34s worst %.2e  tol %.0e  (%zu of %zu coords, %zu at a kink)\n", name, worst, tol,
           count - skipped, n, skipped);
    assert_true(worst <= tol);
    assert_true(skipped <= fd->max_skip);
    return worst;
}

/* The class loss alone, float32 forward: h = 1e-2 (its logits move by
 * h/tau), worst ~4e-4, checked at test_nn_grad.c's nonlinear budget 2e-3.
 * Through the head, a float32 forward's roundoff (~1e-7 of a loss ~3)
 * swamps the small per-pixel gradients at any h (measured: 2e-3 at h = 0.1
 * growing to 1e-1 at 3e-3), so the loss differentiated there is the test's
 * double forward (brute_head, equal to the C forward to ~2e-7, and its
 * value is checked against the C loss): at h = 1e-3 truncation is ~1e-6,
 * ReLU kinks are rare (a few coordinates skipped), and what remains is
 * the float32 analytic gradient's own error, worst 1.5e-4, checked at 1e-3. */
#define TOL_NL 2e-3
#define FLOOR_FRAC 1e-2
#define H_D 1e-3
#define TOL_D 1e-3

/* --------------------------------------------------------- classes -- */

static void test_classes(void **state) {
    (void)state;
    enum { N = 2, NC = 3, H = 4, W = 4 };
    uint8_t labels[H * W];
    float probs[N * NC * H * W];
    for (int i = 0; i < H * W; i++) labels[i] = 2; /* not read: only (0,0) (0,2) (2,0) (2,2) are */
    labels[0] = 1, labels[2] = 2, labels[8] = 0, labels[10] = 7; /* 7 >= NC: ignored */
    float *p1 = probs + NC * H * W;
    for (int i = 0; i < H * W; i++) p1[i] = 0.0f, p1[H * W + i] = 0.0f, p1[2 * H * W + i] = 1.0f;
    const float at[4][NC] = {{0.1f, 0.85f, 0.05f}, {0.5f, 0.3f, 0.2f}, {0.05f, 0.05f, 0.9f}, {0.9f, 0.05f, 0.05f}};
    const int px[4] = {0, 2, 8, 10};
    for (int s = 0; s < 4; s++)
        for (int c = 0; c < NC; c++) p1[c * H * W + px[s]] = at[s][c];
    uint8_t cls[N * 4];
    dacl_contrast_classes(cls, labels, 1, probs, N, NC, H, W, 2, 2, 0.8, 0);
    const uint8_t want[N * 4] = {1, 2, 255, 255, /* labels: 0 is background, 7 ignored */
                                 1, 255, 2, 255}; /* 0.5 <= phi; argmax 0 is background */
    assert_memory_equal(cls, want, sizeof want);
    dacl_contrast_classes(cls, labels, 1, probs, N, NC, H, W, 2, 2, 0.8, 1);
    const uint8_t want_bg[N * 4] = {1, 2, 0, 255, 1, 255, 2, 0};
    assert_memory_equal(cls, want_bg, sizeof want_bg);

    /* a ratio that is not whole: 5 -> 3 reads rows and columns floor(i*5/3) = 0, 1, 3 */
    uint8_t lab5[25], c3[9];
    for (int i = 0; i < 25; i++) lab5[i] = (uint8_t)(i % 3);
    dacl_contrast_classes(c3, lab5, 1, NULL, 1, 3, 5, 5, 3, 3, 0.8, 1);
    const int src[3] = {0, 1, 3};
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 3; x++) assert_int_equal(c3[y * 3 + x], lab5[src[y] * 5 + src[x]]);
}

/* --------------------------------------------------------- density -- */

static void test_density_hand_example(void **state) {
    (void)state;
    /* unit vectors on a circle: a batch at angles 0, .1, .2 and 1.5 (far),
     * one bank entry at .05; knn {1, 2} */
    const double ang[5] = {0.05, 0.0, 0.1, 0.2, 1.5};
    float set[5 * 2];
    for (int i = 0; i < 5; i++) set[2 * i] = (float)cos(ang[i]), set[2 * i + 1] = (float)sin(ang[i]);
    const int knn[2] = {1, 2};
    float dens[4], *ws = fnew(dacl_density_ws(5, 4, 1));
    dacl_density(dens, set + 2, 4, set, 1, set + 2, 4, 1, 2, knn, 2, ws, NULL);
    /* the nearest neighbours (cos of the angle gaps), self excluded */
    const double want[4] = {
        (cos(.05) + (cos(.05) + cos(.1)) / 2) / 2, /* 0: bank .05, then .1 */
        (cos(.05) + (cos(.05) + cos(.1)) / 2) / 2, /* .1: bank .05 and 0 (and .2) at .05/.1/.1 */
        (cos(.1) + (cos(.1) + cos(.15)) / 2) / 2,  /* .2: .1, then bank .05 */
        (cos(1.3) + (cos(1.3) + cos(1.4)) / 2) / 2 /* 1.5: .2, then .1 */
    };
    for (int i = 0; i < 4; i++) assert_true(fabs(dens[i] - want[i]) < 1e-6);
    /* the far point is the sparsest, the middle of the cluster the densest */
    assert_true(dens[3] < dens[0] && dens[3] < dens[2] && dens[1] >= dens[0]);
    /* a query outside the set keeps every member: its nearest is itself here */
    dacl_density(dens, set, 1, set, 5, NULL, 0, -1, 2, knn, 2, ws, NULL);
    assert_true(fabs(dens[0] - (1.0 + (1.0 + cos(.05)) / 2) / 2) < 1e-6);
    /* k = every other member: the mean cosine to all of them */
    const int all[1] = {4};
    dacl_density(dens, set + 2 * 4, 1, set, 1, set + 2, 4, 4, 2, all, 1, ws, NULL);
    assert_true(fabs(dens[0] - (cos(1.45) + cos(1.5) + cos(1.4) + cos(1.3)) / 4) < 1e-6);
    free(ws);
}

static void test_density_matches_brute_force(void **state) {
    (void)state;
    enum { D = 16, NB = 37, NV = 1300 }; /* several set tiles (1024 rows) and row blocks (128) */
    DaclRng r;
    dacl_rng_seed(&r, 5);
    float *set = fnew((size_t)(NB + NV) * D), dens[NV], dens2[NV];
    random_units(&r, set, NB + NV, D);
    const int knn[4] = {1, 5, 16, 40};
    DaclPool *pool;
    assert_int_equal(dacl_pool_create(&pool, 2), DACL_OK);
    float *ws = fnew(dacl_density_ws(NB + NV, 40, 2));
    dacl_density(dens, set + NB * D, NV, set, NB, set + NB * D, NV, NB, D, knn, 4, ws, NULL);
    dacl_density(dens2, set + NB * D, NV, set, NB, set + NB * D, NV, NB, D, knn, 4, ws, pool);
    double worst = 0.0;
    for (int i = 0; i < NV; i++) {
        double b = brute_density(set + (NB + i) * D, set, NB + NV, NB + i, D, knn, 4);
        worst = fmax(worst, fabs(dens[i] - b));
        assert_true(dens2[i] == dens[i]); /* a row's value never depends on the split */
    }
    printf("  density vs brute force: worst abs %.2e\n", worst);
    assert_true(worst < 1e-6);
    dacl_pool_free(pool);
    free(ws), free(set);
}

/* ------------------------------------------------------------ bank -- */

static void test_bank_fifo(void **state) {
    (void)state;
    DaclBank *b;
    assert_int_equal(dacl_bank_create(&b, 2, 3, 2), DACL_OK);
    float rows[9][2];
    for (int i = 0; i < 9; i++) rows[i][0] = (float)i, rows[i][1] = (float)-i;
    uint64_t v0 = dacl_bank_version(b, 1);
    float d = 0.5f;
    for (int i = 0; i < 5; i++) dacl_bank_push(b, 1, rows[i], &d, 1);
    assert_true(dacl_bank_version(b, 1) != v0);
    assert_int_equal(dacl_bank_count(b, 1), 3);
    assert_int_equal(dacl_bank_count(b, 0), 0);
    assert_int_equal(dacl_bank_position(b, 1), 2);
    const float *g = dacl_bank_data(b, 1);
    /* 0, 1, 2 filled slots 0..2; 3 and 4 replaced the oldest, 0 and 1 */
    assert_true(g[0] == 3.0f && g[2] == 4.0f && g[4] == 2.0f && g[5] == -2.0f);
    assert_true(dacl_bank_density(b, 1)[0] == 0.5f);
    /* four at once into a ring of three: slots 2, 0, 1, 2; the last three remain */
    dacl_bank_push(b, 1, rows[5][0] == 5.0f ? &rows[5][0] : NULL, NULL, 4);
    assert_true(g[0] == 6.0f && g[2] == 7.0f && g[4] == 8.0f);
    assert_int_equal(dacl_bank_position(b, 1), 0);
    assert_true(isnan(dacl_bank_density(b, 1)[1]));
    dacl_bank_clear(b);
    assert_int_equal(dacl_bank_count(b, 1), 0);
    dacl_bank_free(b);
}

/* ------------------------------------------------------ class loss -- */

static void test_class_loss_hand_example(void **state) {
    (void)state;
    /* c = (1,0); anchors (1,0), (0,1); negatives (0,1), (-1,0); tau 1/2:
     * t = (1, 0), s_pos = (2, 0), s_neg = ((0, -2), (2, 0)) */
    const float m[4] = {1, 0, 0, 1}, c[2] = {1, 0}, neg[4] = {0, 1, -1, 0};
    float ws[64], dm[4];
    const double e = exp(1.0);
    double l1 = log(exp(2) + 1 + exp(-2)) - 2, l2 = log(1 + exp(2) + 1);
    double w1 = e / (e + 1), w2 = 1 / (e + 1);
    double want_none = (l1 + l2) / 2, want_weighted = w1 * l1 + w2 * l2;
    double want_literal = (-log(2 * w1) - 2 + log(1 + exp(-2)) + -log(2 * w2) + log(exp(2) + 1)) / 2;
    assert_true(dacl_class_loss_ws(2, 2) <= 64);
    double got[3] = {dacl_class_loss(dm, m, 2, c, neg, 2, 2, 0.5, DACL_POS_NONE, 1.0f, ws),
                     dacl_class_loss(dm, m, 2, c, neg, 2, 2, 0.5, DACL_POS_WEIGHTED, 1.0f, ws),
                     dacl_class_loss(NULL, m, 2, c, neg, 2, 2, 0.5, DACL_POS_LITERAL, 1.0f, ws)};
    printf("  none %.6f weighted %.6f literal %.6f\n", got[0], got[1], got[2]);
    assert_true(fabs(got[0] - want_none) < 1e-6);
    assert_true(fabs(got[1] - want_weighted) < 1e-6);
    assert_true(fabs(got[2] - want_literal) < 1e-6);
    /* weighted's gradient is w_i times none's, anchor by anchor */
    float dn[4];
    dacl_class_loss(dn, m, 2, c, neg, 2, 2, 0.5, DACL_POS_NONE, 1.0f, ws);
    dacl_class_loss(dm, m, 2, c, neg, 2, 2, 0.5, DACL_POS_WEIGHTED, 1.0f, ws);
    for (int k = 0; k < 2; k++) {
        assert_true(fabs(dm[k] - 2 * w1 * dn[k]) < 1e-6);
        assert_true(fabs(dm[2 + k] - 2 * w2 * dn[2 + k]) < 1e-6);
    }
}

typedef struct {
    float *m, *c, *neg, *ws;
    double w[16];
    int q, j, d;
    DaclPositiveness mode;
} ClassCtx;

/* WEIGHTED's weights are detached: its loss is sum_i w_i l_i with w held at
 * the first evaluation's values (l_i = NONE's loss of anchor i alone). */
static double class_loss_fn(void *p, uint64_t *pat) {
    ClassCtx *x = p;
    *pat = 0;
    if (x->mode != DACL_POS_WEIGHTED)
        return dacl_class_loss(NULL, x->m, x->q, x->c, x->neg, x->j, x->d, 0.4, x->mode, 1.0f, x->ws);
    double l = 0.0;
    for (int i = 0; i < x->q; i++)
        l += x->w[i] * dacl_class_loss(NULL, x->m + i * x->d, 1, x->c, x->neg, x->j, x->d, 0.4,
                                       DACL_POS_NONE, 1.0f, x->ws);
    return l;
}

static void test_class_loss_gradients(void **state) {
    (void)state;
    enum { Q = 7, J = 11, D = 5 };
    static const char *const names[3] = {"class loss dm (weighted)", "class loss dm (none)",
                                         "class loss dm (literal)"};
    for (int mode = 0; mode < 3; mode++) {
        DaclRng r;
        dacl_rng_seed(&r, 100 + mode);
        ClassCtx x = {.m = fnew(Q * D), .c = fnew(D), .neg = fnew(J * D), .q = Q, .j = J, .d = D, .mode = mode};
        x.ws = fnew(dacl_class_loss_ws(Q, J));
        random_units(&r, x.m, Q, D);
        random_units(&r, x.c, 1, D);
        random_units(&r, x.neg, J, D);
        float *dm = fnew(Q * D);
        dacl_class_loss(dm, x.m, Q, x.c, x.neg, J, D, 0.4, mode, 1.0f, x.ws);
        double z = 0.0;
        for (int i = 0; i < Q; i++) z += x.w[i] = exp(ddot(x.m + i * D, x.c, D));
        for (int i = 0; i < Q; i++) x.w[i] /= z;
        Fd fd = {.f = class_loss_fn, .ctx = &x, .h = 1e-2, .floor_frac = FLOOR_FRAC, .coords = 300};
        dacl_rng_seed(&fd.rng, 7);
        fd_check(&fd, names[mode], x.m, dm, Q * D, TOL_NL);
        /* scale scales the gradient, not the loss */
        float *d3 = fnew(Q * D);
        double l1 = dacl_class_loss(d3, x.m, Q, x.c, x.neg, J, D, 0.4, mode, 3.0f, x.ws);
        assert_true(fabs(l1 - class_loss_fn(&x, &(uint64_t){0})) < 1e-6);
        for (int i = 0; i < Q * D; i++) assert_true(fabsf(d3[i] - 3.0f * dm[i]) <= 1e-5f);
        free(x.m), free(x.c), free(x.neg), free(x.ws), free(dm), free(d3);
    }
}

/* ------------------------------------------------------------ head -- */

/* The head in double over every pixel, as PyTorch computes it: embeddings of
 * rows[0..n) into e, the hidden signs of those rows hashed into *pat. */
static void brute_head(double *e, uint64_t *pat, const float *prm, const float *feat, int N, int cf,
                       int HW, int D, const int32_t *rows, int n, const float *running) {
    const int P = N * HW;
    const float *w1 = prm, *b1 = w1 + HID * cf, *g = b1 + HID, *bt = g + HID, *w2 = bt + HID, *b2 = w2 + D * HID;
    double *z = malloc(sizeof(double) * (size_t)P * HID), mu[HID], var[HID];
    for (int p = 0; p < P; p++)
        for (int o = 0; o < HID; o++) {
            double s = b1[o];
            for (int c = 0; c < cf; c++) s += (double)w1[o * cf + c] * feat[((size_t)(p / HW) * cf + c) * HW + p % HW];
            z[(size_t)p * HID + o] = s;
        }
    for (int o = 0; o < HID; o++) {
        double s = 0.0, q = 0.0;
        for (int p = 0; p < P; p++) s += z[(size_t)p * HID + o];
        mu[o] = running ? running[o] : s / P;
        for (int p = 0; p < P; p++) q += (z[(size_t)p * HID + o] - mu[o]) * (z[(size_t)p * HID + o] - mu[o]);
        var[o] = running ? running[HID + o] : q / P;
    }
    uint64_t h = 1469598103934665603ULL;
    for (int r = 0; r < n; r++) {
        double a[HID], y[64] = {0}, ss = 0.0;
        for (int o = 0; o < HID; o++) {
            double u = (z[(size_t)rows[r] * HID + o] - mu[o]) / sqrt(var[o] + 1e-5) * g[o] + bt[o];
            a[o] = u > 0 ? u : 0;
            h = (h ^ (uint64_t)(u > 0)) * 0x100000001b3ULL;
        }
        if (!e) continue;
        for (int k = 0; k < D; k++) {
            y[k] = b2[k];
            for (int o = 0; o < HID; o++) y[k] += w2[k * HID + o] * a[o];
            ss += y[k] * y[k];
        }
        for (int k = 0; k < D; k++) e[(size_t)r * D + k] = y[k] / sqrt(ss);
    }
    if (pat) *pat = h;
    free(z);
}

/* random head parameters with gamma and beta away from 1 and 0 */
static void random_head(DaclHead *h, int cf, uint64_t seed) {
    DaclRng r;
    dacl_rng_seed(&r, seed);
    dacl_head_init(h, &r);
    float *g = dacl_head_params(h) + (size_t)HID * cf + HID, *b = g + HID;
    for (int o = 0; o < HID; o++) g[o] = 0.5f + dacl_rng_uniform(&r), b[o] = 0.3f * (2 * dacl_rng_uniform(&r) - 1);
}

typedef struct {
    DaclHead *h;
    DaclPool *pool;
    float *feat, *R;
    const int32_t *rows, *which;
    int N, cf, HW, D, nrows, nb;
} HeadCtx;

/* L = sum over the `which` rows of R . e, e from the double forward (the
 * C forward matches it to 2e-7); pattern: their hidden signs */
static double head_loss(void *p, uint64_t *pat) {
    HeadCtx *x = p;
    int32_t sel[64];
    double e[64 * 8];
    for (int b = 0; b < x->nb; b++) sel[b] = x->rows[x->which[b]];
    brute_head(e, pat, dacl_head_params(x->h), x->feat, x->N, x->cf, x->HW, x->D, sel, x->nb, NULL);
    double l = 0.0;
    for (int i = 0; i < x->nb * x->D; i++) l += e[i] * x->R[i];
    return l;
}

static void test_head_forward(void **state) {
    (void)state;
    enum { N = 2, CF = 5, HW = 12, D = 6, NR = 7 };
    DaclHead *h;
    DaclPool *pool;
    assert_int_equal(dacl_head_create(&h, CF, D, N, HW, 32, 8, 2), DACL_OK);
    assert_int_equal(dacl_pool_create(&pool, 2), DACL_OK);
    random_head(h, CF, 3);
    DaclRng r;
    dacl_rng_seed(&r, 4);
    float *feat = fnew(N * CF * HW);
    fill_normal(&r, feat, N * CF * HW, 1.0);
    for (int i = 0; i < N * CF * HW; i++) feat[i] += 0.5f; /* a mean the statistics must remove */
    const int32_t rows[NR] = {0, 3, 11, 12, 13, 20, 23};
    double want[NR * D];
    assert_int_equal(dacl_head_forward(h, feat, N, HW, rows, NR, 1, NULL), DACL_OK);
    brute_head(want, NULL, dacl_head_params(h), feat, N, CF, HW, D, rows, NR, NULL);
    float got[NR * D];
    memcpy(got, dacl_head_embeddings(h), sizeof got);
    double worst = 0.0;
    for (int i = 0; i < NR * D; i++) worst = fmax(worst, fabs(got[i] - want[i]));
    printf("  head (training BN over all %d pixels) vs double: worst abs %.2e\n", N * HW, worst);
    assert_true(worst < 2e-6);
    /* running statistics: one update from mean 0, var 1 with momentum 0.1 */
    const float *bn = dacl_head_bn_stats(h);
    assert_int_equal(dacl_head_bn_stats_count(h), 2 * HID);
    for (int o = 0; o < HID; o += 37) assert_true(bn[HID + o] != 1.0f && bn[o] != 0.0f);
    /* a pool of two gives the same rows */
    assert_int_equal(dacl_head_forward(h, feat, N, HW, rows, NR, 1, pool), DACL_OK);
    for (int i = 0; i < NR * D; i++) assert_true(fabsf(dacl_head_embeddings(h)[i] - got[i]) < 1e-6f);
    /* eval mode reads the running statistics */
    float run[2 * HID];
    memcpy(run, bn, sizeof run);
    assert_int_equal(dacl_head_forward(h, feat, N, HW, rows, NR, 0, NULL), DACL_OK);
    brute_head(want, NULL, dacl_head_params(h), feat, N, CF, HW, D, rows, NR, run);
    for (int i = 0; i < NR * D; i++) assert_true(fabs(dacl_head_embeddings(h)[i] - want[i]) < 2e-6);
    assert_memory_equal(run, bn, sizeof run); /* and leaves them alone */
    assert_int_equal(dacl_head_backward(h, feat, NULL, NULL, 0, NULL), DACL_EINVAL);
    dacl_pool_free(pool);
    dacl_head_free(h);
    free(feat);
}

static void test_head_gradients(void **state) {
    (void)state;
    enum { N = 2, CF = 4, HW = 9, D = 5, NR = 10, NB = 4 };
    HeadCtx x = {.N = N, .cf = CF, .HW = HW, .D = D, .nrows = NR, .nb = NB};
    assert_int_equal(dacl_head_create(&x.h, CF, D, N, HW, NR, NB, 1), DACL_OK);
    random_head(x.h, CF, 9);
    DaclRng r;
    dacl_rng_seed(&r, 10);
    x.feat = fnew(N * CF * HW), x.R = fnew(NB * D);
    fill_normal(&r, x.feat, N * CF * HW, 1.0);
    fill_normal(&r, x.R, NB * D, 1.0);
    const int32_t rows[NR] = {1, 2, 4, 5, 8, 9, 10, 12, 15, 17}, which[NB] = {0, 3, 6, 9};
    x.rows = rows, x.which = which;
    assert_int_equal(dacl_head_forward(x.h, x.feat, N, HW, rows, NR, 1, NULL), DACL_OK);
    float *dfeat = fnew(N * CF * HW);
    for (int i = 0; i < N * CF * HW; i++) dfeat[i] = NAN; /* overwritten, never read */
    dacl_head_zero_grad(x.h);
    assert_int_equal(dacl_head_backward(x.h, dfeat, which, x.R, NB, NULL), DACL_OK);
    size_t np = dacl_head_num_params(x.h);
    float *g = fnew(np), *p = dacl_head_params(x.h);
    memcpy(g, dacl_head_grads(x.h), np * sizeof(float));
    /* BN makes b1's gradient vanish exactly */
    for (int o = 0; o < HID; o++) assert_true(g[HID * CF + o] == 0.0f);
    Fd fd = {.f = head_loss, .ctx = &x, .h = H_D, .floor_frac = FLOOR_FRAC, .coords = 200, .max_skip = 20};
    dacl_rng_seed(&fd.rng, 11);
    /* every pixel, with gradient or not, moves the loss through the statistics */
    fd_check(&fd, "head dfeat", x.feat, dfeat, N * CF * HW, TOL_D);
    size_t o1 = (size_t)HID * CF, og = o1 + HID, ob = og + HID, o2 = ob + HID, ob2 = o2 + (size_t)D * HID;
    fd_check(&fd, "head dW1", p, g, o1, TOL_D);
    fd_check(&fd, "head dgamma", p + og, g + og, HID, TOL_D);
    fd_check(&fd, "head dbeta", p + ob, g + ob, HID, TOL_D);
    fd_check(&fd, "head dW2", p + o2, g + o2, (size_t)D * HID, TOL_D);
    fd_check(&fd, "head db2", p + ob2, g + ob2, D, TOL_D);
    dacl_head_free(x.h);
    free(x.feat), free(x.R), free(dfeat), free(g);
}

/* ------------------------------------------------------ the module -- */


/* A module on random features and classes {0 (ignored), 1, 2, 255} with a
 * bank of 7 class-1 and 3 class-2 entries (so class 2 takes no bank keys). */
static DaclContrast *small_module(DaclPositiveness mode, float *feat, uint8_t *cls, uint64_t seed) {
    DaclJobConfig cfg = small_config(mode);
    DaclContrast *c;
    assert_int_equal(dacl_contrast_create(&c, &cfg, 1, MK, MCF, MN, MFH, MFW, NULL), DACL_OK);
    DaclRng r;
    dacl_rng_seed(&r, seed);
    dacl_contrast_init(c, &r);
    random_head(dacl_contrast_head(c, 0), MCF, seed + 1);
    fill_normal(&r, feat, MN * MCF * MHW, 1.0);
    static const uint8_t pick[6] = {0, 1, 1, 2, 2, 255};
    for (int p = 0; p < MN * MHW; p++) cls[p] = pick[dacl_rng_below(&r, 6)];
    float bank[7 * 8];
    random_units(&r, bank, 7, 8);
    dacl_bank_push(dacl_contrast_bank(c), 1, bank, NULL, 7);
    random_units(&r, bank, 3, 8);
    dacl_bank_push(dacl_contrast_bank(c), 2, bank, NULL, 3);
    return c;
}

typedef struct {
    DaclContrast *c;
    float *feat;
    const int32_t *rows;
    int nrows, nactive, na[MK];
    int32_t anc[MK][64];
    float ctr[MK][8], *neg[MK];
    double w[MK][64]; /* WEIGHTED's detached weights */
    int nneg[MK];
    DaclPositiveness mode;
} PipeCtx;

/* One class's loss in double (method.md §3), w: WEIGHTED's detached weights. */
static double class_loss_d(const double *m, int q, const float *c, const float *neg, int j, int d,
                           DaclPositiveness mode, const double *w) {
    const double tau = 0.4;
    double t[64], tmax = -INFINITY, z = 0.0, l = 0.0;
    for (int i = 0; i < q; i++) {
        t[i] = 0.0;
        for (int k = 0; k < d; k++) t[i] += m[i * d + k] * c[k];
        tmax = fmax(tmax, t[i]);
    }
    for (int i = 0; i < q; i++) z += exp(t[i] - tmax);
    double logz = tmax + log(z);
    for (int i = 0; i < q; i++) {
        double s = t[i] / tau, sneg = 0.0, spos;
        for (int n = 0; n < j; n++) {
            double v = 0.0;
            for (int k = 0; k < d; k++) v += m[i * d + k] * neg[n * d + k];
            sneg += exp(v / tau); /* |v / tau| <= 2.5: no overflow to guard */
        }
        spos = sneg + exp(s);
        if (mode == DACL_POS_NONE) l += (log(spos) - s) / q;
        if (mode == DACL_POS_WEIGHTED) l += w[i] * (log(spos) - s);
        if (mode == DACL_POS_LITERAL) l += (-log((double)q) - (t[i] - logz) - s + log(sneg)) / q;
    }
    return l;
}

/* The loss with the keys, centre and negatives held at their first values
 * (what "detached" means), the anchors recomputed through the head in
 * double; pattern: the anchors' hidden signs. */
static double pipe_loss(void *p, uint64_t *pat) {
    PipeCtx *x = p;
    DaclHead *h = dacl_contrast_head(x->c, 0);
    int32_t px[2 * 64];
    int n = 0;
    for (int k = 0; k < MK; k++)
        for (int i = 0; i < x->na[k]; i++) px[n++] = x->rows[x->anc[k][i]];
    double e[2 * 64 * 8], l = 0.0;
    brute_head(e, pat, dacl_head_params(h), x->feat, MN, MCF, MHW, 8, px, n, NULL);
    n = 0;
    for (int k = 0; k < MK; k++) {
        if (!x->na[k]) continue;
        l += class_loss_d(e + n * 8, x->na[k], x->ctr[k], x->neg[k], x->nneg[k], 8, x->mode, x->w[k]);
        n += x->na[k];
    }
    return l / x->nactive;
}

static void test_loss_gradients_through_head(void **state) {
    (void)state;
    static const char *const tag[3] = {"weighted", "none", "literal"};
    for (int mode = 0; mode < 3; mode++) {
        PipeCtx x = {.mode = mode, .feat = fnew(MN * MCF * MHW)};
        uint8_t cls[MN * MHW];
        x.c = small_module(mode, x.feat, cls, 20 + mode);
        DaclContrastStats st;
        assert_int_equal(dacl_contrast_loss(x.c, 0, x.feat, cls, MN, 3, 1.0f, &st), DACL_OK);
        assert_int_equal(st.classes_used, 2);
        const float *dfeat = dacl_contrast_dfeat(x.c, 0);
        assert_non_null(dfeat);
        float *df = fnew(MN * MCF * MHW);
        memcpy(df, dfeat, MN * MCF * MHW * sizeof(float));
        DaclHead *h = dacl_contrast_head(x.c, 0);
        size_t np = dacl_head_num_params(h);
        float *g = fnew(np), *prm = dacl_head_params(h);
        memcpy(g, dacl_head_grads(h), np * sizeof(float));
        x.rows = dacl_contrast_rows(x.c, 0, &x.nrows);
        const float *e = dacl_contrast_embeddings(x.c, 0);
        for (int k = 1; k < MK; k++) {
            DaclContrastClass ci;
            assert_int_equal(dacl_contrast_class_info(x.c, 0, k, &ci), DACL_OK);
            assert_true(ci.active);
            x.na[k] = ci.nanchors;
            memcpy(x.anc[k], ci.anchors, ci.nanchors * sizeof(int32_t));
            memcpy(x.ctr[k], ci.centre, sizeof x.ctr[k]);
            x.nneg[k] = ci.nneg;
            x.neg[k] = fnew((size_t)ci.nneg * 8);
            for (int j = 0; j < ci.nneg; j++) memcpy(x.neg[k] + j * 8, e + ci.negatives[j] * 8, 8 * sizeof(float));
            double z = 0.0;
            for (int i = 0; i < ci.nanchors; i++) z += x.w[k][i] = exp(ddot(e + ci.anchors[i] * 8, ci.centre, 8));
            for (int i = 0; i < ci.nanchors; i++) x.w[k][i] /= z;
            x.nactive++;
        }
        uint64_t pat;
        assert_true(fabs(pipe_loss(&x, &pat) - st.loss) < 1e-5 * fmax(1.0, fabs(st.loss)));
        Fd fd = {.f = pipe_loss, .ctx = &x, .h = H_D, .floor_frac = FLOOR_FRAC, .coords = 150, .max_skip = 15};
        dacl_rng_seed(&fd.rng, 30 + mode);
        char name[64];
        snprintf(name, sizeof name, "CL %s: dfeat", tag[mode]);
        fd_check(&fd, name, x.feat, df, MN * MCF * MHW, TOL_D);
        size_t o1 = (size_t)HID * MCF, og = o1 + HID, o2 = og + 2 * HID;
        snprintf(name, sizeof name, "CL %s: dW1", tag[mode]);
        fd_check(&fd, name, prm, g, o1, TOL_D);
        snprintf(name, sizeof name, "CL %s: dgamma", tag[mode]);
        fd_check(&fd, name, prm + og, g + og, HID, TOL_D);
        snprintf(name, sizeof name, "CL %s: dW2", tag[mode]);
        fd_check(&fd, name, prm + o2, g + o2, (size_t)8 * HID, TOL_D);
        for (int k = 1; k < MK; k++) free(x.neg[k]);
        free(x.feat), free(df), free(g);
        dacl_contrast_free(x.c);
    }
}

/* Selections against brute force on densities recomputed here, with
 * max_pixels sampling, a bank and random negatives. */
static void test_selection_matches_brute_force(void **state) {
    (void)state;
    enum { N = 2, CF = 5, FH = 12, HW = FH * FH, K = 4, D = 8 };
    DaclJobConfig cfg = small_config(DACL_POS_WEIGHTED);
    cfg.method.max_pixels = 60, cfg.method.neg_keys = 20, cfg.method.bank_size = 20;
    DaclContrast *c;
    assert_int_equal(dacl_contrast_create(&c, &cfg, 1, K, CF, N, FH, FH, NULL), DACL_OK);
    DaclRng r;
    dacl_rng_seed(&r, 50);
    dacl_contrast_init(c, &r);
    float *feat = fnew(N * CF * HW), bank[12 * D];
    fill_normal(&r, feat, N * CF * HW, 1.0);
    uint8_t cls[N * HW];
    /* class 3, the last, is over max_pixels: its rows must be drawn, not overflow */
    static const uint8_t pick[8] = {3, 3, 3, 3, 2, 1, 0, 255};
    for (int p = 0; p < N * HW; p++) cls[p] = pick[dacl_rng_below(&r, 8)];
    random_units(&r, bank, 12, D);
    DaclBank *bk = dacl_contrast_bank(c);
    dacl_bank_push(bk, 3, bank, NULL, 12);
    dacl_bank_push(bk, 2, bank, NULL, 3);
    DaclContrastStats st;
    assert_int_equal(dacl_contrast_loss(c, 0, feat, cls, N, 9, 1.0f, &st), DACL_OK);
    int nrows;
    const int32_t *rows = dacl_contrast_rows(c, 0, &nrows);
    const float *e = dacl_contrast_embeddings(c, 0), *dens = dacl_contrast_densities(c, 0);
    const int knn[2] = {2, 4};
    double asum = 0.0;
    int acount = 0;
    for (int k = 1; k < K; k++) {
        DaclContrastClass ci;
        assert_int_equal(dacl_contrast_class_info(c, 0, k, &ci), DACL_OK);
        int npix = 0;
        for (int p = 0; p < N * HW; p++) npix += cls[p] == k;
        assert_int_equal(st.pixels[k], npix);
        assert_int_equal(ci.nrows, npix < 60 ? npix : 60);
        for (int i = 0; i < ci.nrows; i++) {
            assert_int_equal(cls[rows[ci.row0 + i]], k);
            if (i) assert_true(rows[ci.row0 + i] > rows[ci.row0 + i - 1]);
        }
        /* densities against [bank; class rows] */
        int L = dacl_bank_count(bk, k), ns = L + ci.nrows;
        float *set = fnew((size_t)ns * D);
        memcpy(set, dacl_bank_data(bk, k), (size_t)L * D * sizeof(float));
        memcpy(set + L * D, e + ci.row0 * D, (size_t)ci.nrows * D * sizeof(float));
        for (int i = 0; i < ci.nrows; i++)
            assert_true(fabs(dens[ci.row0 + i] - brute_density(set + (L + i) * D, set, ns, L + i, D, knn, 2)) < 1e-6);
        /* anchors: the lowest densities, ascending; keys: the highest, descending */
        assert_int_equal(ci.nanchors, ci.nrows < 5 ? ci.nrows : 5);
        assert_int_equal(ci.nkeys, ci.nrows < 3 ? ci.nrows : 3);
        for (int i = 0; i < ci.nrows; i++) {
            int below = 0, above = 0, rr = ci.row0 + i;
            for (int t = 0; t < ci.nrows; t++) {
                below += dens[ci.row0 + t] < dens[rr];
                above += dens[ci.row0 + t] > dens[rr];
            }
            if (below < ci.nanchors) assert_int_equal(ci.anchors[below], rr);
            if (above < ci.nkeys) assert_int_equal(ci.keys[above], rr);
        }
        /* bank keys only where the bank alone defines densities (L > max k) */
        assert_int_equal(ci.nbank_keys, L > 4 ? 3 : 0);
        double ctr[D] = {0};
        for (int i = 0; i < ci.nkeys; i++)
            for (int t = 0; t < D; t++) ctr[t] += e[ci.keys[i] * D + t];
        if (ci.nbank_keys) {
            assert_non_null(ci.bank_density);
            const float *g = dacl_bank_data(bk, k);
            for (int i = 0; i < L; i++)
                assert_true(fabs(ci.bank_density[i] - brute_density(g + i * D, g, L, i, D, knn, 2)) < 1e-6);
            for (int i = 0; i < ci.nbank_keys; i++) {
                int above = 0;
                for (int t = 0; t < L; t++) above += ci.bank_density[t] > ci.bank_density[ci.bank_keys[i]];
                assert_int_equal(above, i);
                for (int t = 0; t < D; t++) ctr[t] += g[ci.bank_keys[i] * D + t];
            }
        }
        double nrm = 0.0;
        for (int t = 0; t < D; t++) nrm += ctr[t] * ctr[t];
        for (int t = 0; t < D; t++) assert_true(fabs(ci.centre[t] - ctr[t] / sqrt(nrm)) < 1e-6);
        /* negatives: distinct rows of the other classes, neg_keys of them */
        int pool = nrows - ci.nrows;
        assert_int_equal(ci.nneg, pool < 20 ? pool : 20);
        for (int j = 0; j < ci.nneg; j++) {
            assert_true(ci.negatives[j] < ci.row0 || ci.negatives[j] >= ci.row0 + ci.nrows);
            for (int t = 0; t < j; t++) assert_true(ci.negatives[t] != ci.negatives[j]);
        }
        assert_int_equal(ci.active, 1);
        assert_int_equal(st.anchors[k], ci.nanchors);
        assert_int_equal(st.bank_fill[k], L);
        for (int i = 0; i < ci.nanchors; i++) asum += dens[ci.anchors[i]], acount++;
        free(set);
    }
    assert_true(fabs(st.anchor_density - asum / acount) < 1e-9);
    /* the draws are a function of the iteration: the same again, another differs */
    int32_t first[60];
    DaclContrastClass c1;
    dacl_contrast_class_info(c, 0, 3, &c1);
    assert_int_equal(c1.nrows, 60);
    memcpy(first, rows + c1.row0, 60 * sizeof(int32_t));
    assert_int_equal(dacl_contrast_loss(c, 0, feat, cls, N, 9, 1.0f, NULL), DACL_OK);
    assert_memory_equal(first, rows + c1.row0, 60 * sizeof(int32_t));
    assert_int_equal(dacl_contrast_loss(c, 0, feat, cls, N, 10, 1.0f, NULL), DACL_OK);
    assert_true(memcmp(first, rows + c1.row0, 60 * sizeof(int32_t)) != 0);
    dacl_contrast_free(c);
    free(feat);
}

/* Random sampling, negatives from anchors, a class too small for its
 * densities, scale 0, and the bank update from two models. */
static void test_sampling_variants(void **state) {
    (void)state;
    float *feat = fnew(MN * MCF * MHW);
    uint8_t cls[MN * MHW];
    DaclJobConfig cfg = small_config(DACL_POS_WEIGHTED);
    cfg.method.sampling = DACL_SAMPLING_RANDOM;
    cfg.method.neg_source = DACL_NEG_ANCHORS;
    DaclContrast *c;
    assert_int_equal(dacl_contrast_create(&c, &cfg, 2, MK, MCF, MN, MFH, MFW, NULL), DACL_OK);
    DaclRng r;
    dacl_rng_seed(&r, 60);
    dacl_contrast_init(c, &r);
    fill_normal(&r, feat, MN * MCF * MHW, 1.0);
    for (int p = 0; p < MN * MHW; p++) cls[p] = (uint8_t)(1 + p % 2);
    DaclContrastStats st;
    assert_int_equal(dacl_contrast_loss(c, 0, feat, cls, MN, 0, 1.0f, &st), DACL_OK);
    assert_int_equal(st.classes_used, 2);
    assert_true(st.anchor_density == 0.0); /* not computed when sampling at random */
    for (int k = 1; k < MK; k++) {
        DaclContrastClass ci, co;
        dacl_contrast_class_info(c, 0, k, &ci);
        dacl_contrast_class_info(c, 0, 3 - k, &co);
        assert_int_equal(ci.nanchors, 5);
        assert_int_equal(ci.nkeys, 3);
        assert_int_equal(ci.nbank_keys, 0); /* the bank is empty */
        for (int i = 0; i < 5; i++) {
            assert_true(ci.anchors[i] >= ci.row0 && ci.anchors[i] < ci.row0 + ci.nrows);
            for (int t = 0; t < i; t++) assert_true(ci.anchors[t] != ci.anchors[i]);
        }
        /* the negatives are the other class's anchors (all five) */
        assert_int_equal(ci.nneg, 5);
        for (int j = 0; j < 5; j++) {
            int found = 0;
            for (int t = 0; t < 5; t++) found |= ci.negatives[j] == co.anchors[t];
            assert_true(found);
        }
    }
    /* scale 0 (the warm-up): no gradient, the SGD step leaves the head alone */
    assert_int_equal(dacl_contrast_loss(c, 1, feat, cls, MN, 0, 0.0f, NULL), DACL_OK);
    assert_null(dacl_contrast_dfeat(c, 1));
    assert_non_null(dacl_contrast_dfeat(c, 0));
    size_t np = dacl_head_num_params(dacl_contrast_head(c, 1));
    float *before = fnew(np);
    memcpy(before, dacl_head_params(dacl_contrast_head(c, 1)), np * sizeof(float));
    dacl_contrast_sgd_step(c, 0.1f, 0.9f, 1e-4f);
    assert_memory_equal(before, dacl_head_params(dacl_contrast_head(c, 1)), np * sizeof(float));
    /* both models' rows feed the bank: bank_insert (4) a class, drawn from 2 x 36 */
    dacl_contrast_bank_update(c, 0);
    DaclBank *bk = dacl_contrast_bank(c);
    assert_int_equal(dacl_bank_count(bk, 1), 4);
    assert_int_equal(dacl_bank_count(bk, 0), 0);
    for (int i = 0; i < 4; i++) {
        const float *g = dacl_bank_data(bk, 1) + i * 8;
        int found = 0;
        for (int m = 0; m < 2; m++) {
            int n;
            dacl_contrast_rows(c, m, &n);
            for (int row = 0; row < n; row++)
                found |= !memcmp(g, dacl_contrast_embeddings(c, m) + row * 8, 8 * sizeof(float));
        }
        assert_true(found);
    }
    dacl_contrast_bank_update(c, 1); /* nothing pending: nothing pushed */
    assert_int_equal(dacl_bank_count(bk, 1), 4);
    dacl_contrast_free(c);

    /* density sampling: one class alone has no negatives, so nothing contributes */
    cfg = small_config(DACL_POS_WEIGHTED);
    assert_int_equal(dacl_contrast_create(&c, &cfg, 1, MK, MCF, MN, MFH, MFW, NULL), DACL_OK);
    dacl_contrast_init(c, &r);
    memset(cls, 1, sizeof cls);
    assert_int_equal(dacl_contrast_loss(c, 0, feat, cls, MN, 0, 1.0f, &st), DACL_OK);
    assert_int_equal(st.classes_used, 0);
    assert_true(st.loss == 0.0);
    assert_null(dacl_contrast_dfeat(c, 0));
    /* a class with |bank| + pixels <= max k sits out, yet serves as negatives */
    for (int p = 0; p < 4; p++) cls[p] = 2;
    assert_int_equal(dacl_contrast_loss(c, 0, feat, cls, MN, 0, 1.0f, &st), DACL_OK);
    assert_int_equal(st.classes_used, 1);
    assert_int_equal(st.anchors[2], 0);
    assert_int_equal(st.anchors[1], 5);
    int nrows;
    dacl_contrast_rows(c, 0, &nrows);
    assert_true(isnan(dacl_contrast_densities(c, 0)[nrows - 1]));
    DaclContrastClass c1;
    dacl_contrast_class_info(c, 0, 1, &c1);
    assert_int_equal(c1.nneg, 4);
    dacl_contrast_free(c);
    free(feat), free(before);
}

/* --------------------------------------------------- state and resume -- */

static void resume_iter(DaclContrast *c, long it) {
    DaclRng r;
    dacl_rng_seed(&r, 1000 + (uint64_t)it); /* the data of iteration it */
    float feat[MN * MCF * MHW];
    uint8_t cls[MN * MHW];
    for (int m = 0; m < 2; m++) {
        fill_normal(&r, feat, MN * MCF * MHW, 1.0);
        for (int p = 0; p < MN * MHW; p++) cls[p] = (uint8_t)dacl_rng_below(&r, MK);
        assert_int_equal(dacl_contrast_loss(c, m, feat, cls, MN, it, 1.0f, NULL), DACL_OK);
    }
    dacl_contrast_sgd_step(c, 0.05f, 0.9f, 1e-4f);
    dacl_contrast_bank_update(c, it);
}

static void test_state_and_exact_resume(void **state) {
    (void)state;
    DaclJobConfig cfg = small_config(DACL_POS_WEIGHTED);
    cfg.method.neg_keys = 7, cfg.method.bank_insert = 5; /* random draws in play */
    DaclContrast *a, *b, *other;
    assert_int_equal(dacl_contrast_create(&a, &cfg, 2, MK, MCF, MN, MFH, MFW, NULL), DACL_OK);
    assert_int_equal(dacl_contrast_create(&b, &cfg, 2, MK, MCF, MN, MFH, MFW, NULL), DACL_OK);
    DaclRng r;
    dacl_rng_seed(&r, 1);
    dacl_contrast_init(a, &r);
    dacl_rng_seed(&r, 2);
    dacl_contrast_init(b, &r);
    size_t n = dacl_contrast_state_bytes(a);
    unsigned char *sa = malloc(n), *sb = malloc(n);
    for (long it = 0; it < 3; it++) resume_iter(a, it);
    assert_int_equal(dacl_contrast_state_write(a, sa, n), DACL_OK);
    assert_int_equal(dacl_contrast_state_read(b, sa, n), DACL_OK);
    for (long it = 3; it < 6; it++) resume_iter(a, it), resume_iter(b, it);
    assert_int_equal(dacl_contrast_state_write(a, sa, n), DACL_OK);
    assert_int_equal(dacl_contrast_state_write(b, sb, n), DACL_OK);
    assert_memory_equal(sa, sb, n); /* heads, momentum, BN statistics and bank, bit for bit */
    assert_int_equal(dacl_bank_count(dacl_contrast_bank(a), 1), 10);
    /* refusals: short, another shape, a broken ring */
    assert_int_equal(dacl_contrast_state_read(b, sa, n - 1), DACL_EFORMAT);
    assert_int_equal(dacl_contrast_state_write(a, sa, n - 1), DACL_EINVAL);
    assert_int_equal(dacl_contrast_create(&other, &cfg, 2, MK + 1, MCF, MN, MFH, MFW, NULL), DACL_OK);
    assert_int_equal(dacl_contrast_state_read(other, sa, n), DACL_EFORMAT);
    assert_non_null(strstr(dacl_error_message(), "classes"));
    size_t bank_at = n - (size_t)MK * 10 * 9 * 4 - (size_t)MK * 8;
    sa[bank_at + 8] = 11; /* class 1 holding 11 of 10 */
    assert_int_equal(dacl_contrast_state_read(b, sa, n), DACL_EFORMAT);
    dacl_contrast_free(a), dacl_contrast_free(b), dacl_contrast_free(other);
    free(sa), free(sb);
}

static void test_config_and_shapes(void **state) {
    (void)state;
    DaclJobConfig cfg = small_config(DACL_POS_WEIGHTED);
    cfg.method.granularity = DACL_GRAN_PROTOTYPE;
    DaclContrast *c;
    assert_int_equal(dacl_contrast_check_config(&cfg), DACL_EINVAL);
    assert_non_null(strstr(dacl_error_message(), "method.granularity"));
    assert_int_equal(dacl_contrast_create(&c, &cfg, 2, MK, MCF, MN, MFH, MFW, NULL), DACL_EINVAL);
    cfg.method.name = DACL_METHOD_CPS; /* only DACL reads these fields */
    assert_int_equal(dacl_contrast_check_config(&cfg), DACL_OK);
    /* the feature shapes the U-Net really produces */
    DaclUNetConfig nc = dacl_unet_default_config(1, 4);
    DaclUNet *net;
    assert_int_equal(dacl_unet_create(&net, &nc, 1, 32, 48), DACL_OK);
    for (int l = DACL_FEAT_BOTTLENECK; l <= DACL_FEAT_UP4; l++) {
        int c0, h0, w0, c1, h1, w1;
        dacl_unet_feature(net, l, &c0, &h0, &w0);
        assert_int_equal(dacl_contrast_feature_shape(&nc, l, 32, 48, &c1, &h1, &w1), DACL_OK);
        assert_true(c0 == c1 && h0 == h1 && w0 == w1);
    }
    dacl_unet_free(net);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_density_hand_example),
        cmocka_unit_test(test_density_matches_brute_force),
        cmocka_unit_test(test_bank_fifo),
        cmocka_unit_test(test_class_loss_hand_example),
        cmocka_unit_test(test_class_loss_gradients),
        cmocka_unit_test(test_head_forward),
        cmocka_unit_test(test_head_gradients),
        cmocka_unit_test(test_loss_gradients_through_head),
        cmocka_unit_test(test_selection_matches_brute_force),
        cmocka_unit_test(test_sampling_variants),
        cmocka_unit_test(test_state_and_exact_resume),
        cmocka_unit_test(test_config_and_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
