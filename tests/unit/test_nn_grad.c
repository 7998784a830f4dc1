/* Finite-difference gradient checks for every op of include/dacl/nn.h and for
 * the whole U-Net, and the statistics of the dropout mask.
 *
 * Method (ggml's test-backend-ops): a scalar loss L = sum(out * R) for a fixed
 * random R, so the op's backward called with dout = R gives dL/dx. The numeric
 * gradient is the central difference (L(x+h) - L(x-h)) / ((x+h) - (x-h)) with
 * both steps taken as the float32 values actually stored, and L summed in
 * double: only the op's own forward is float32. Per coordinate the error is
 *     |a - n| / max(|a| + |n|, floor),
 * floor = a fraction of the tensor's largest |a|: L's float32 roundoff divided
 * by 2h is an absolute noise, so a component far below the tensor's scale can
 * only be shown to be small, not resolved relatively.
 *
 * Piecewise-linear ops are checked away from their kinks: LeakyReLU and maxpool
 * by the choice of inputs; BN+act by a hash of the output signs, which skips
 * (and counts) a coordinate whose +h and -h evaluations straddle a kink. The
 * whole U-Net, where that is impossible, has its own criterion (see there). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dacl/nn.h"

#define MAX_COORDS 300

/* ------------------------------------------------------------- helpers -- */

static float *fnew(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    return p;
}

static float *fzero(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static float *fdup(const float *v, size_t n) {
    float *p = fnew(n);
    memcpy(p, v, n * sizeof(float));
    return p;
}

static void fill_uniform(DaclRng *r, float *v, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * dacl_rng_uniform(r);
}

/* a din that the backward must overwrite, not read */
static void fill_nan(float *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = NAN;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* FNV-1a over the signs: any single flipped sign changes the hash */
static uint64_t sign_hash(uint64_t h, const float *v, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (uint64_t)(v[i] > 0.0f)) * 0x100000001b3ULL;
    return h;
}

/* max |a - b| / max(|b|, tiny): for the same quantity computed twice */
static double max_rel_diff(const float *a, const float *b, size_t n) {
    double w = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(fabs((double)b[i]), 1e-30);
        if (d > w) w = d;
    }
    return w;
}

/* ------------------------------------------------ the finite differences -- */

/* Runs the forward at the current inputs and returns L; *pattern gets a hash
 * of every sign the output's derivative depends on (0 for smooth ops). */
typedef double (*LossFn)(void *ctx, uint64_t *pattern);

typedef struct {
    LossFn f;
    void *ctx;
    double h;          /* central-difference step */
    double floor_frac; /* floor = floor_frac * max|a| of the tensor */
    size_t coords;     /* coordinates checked per tensor (all when fewer) */
    size_t max_skip;   /* coordinates straddling a kink that may be skipped */
    DaclRng rng;
} Fd;

/* The central difference of L along x[i] (x[i] restored); *kink is set when
 * the two evaluations see different sign patterns. */
static double fd_numeric(Fd *fd, float *x, size_t i, double h, int *kink) {
    float x0 = x[i], xp = x0 + (float)h, xm = x0 - (float)h;
    uint64_t pp, pm;
    x[i] = xp;
    double lp = fd->f(fd->ctx, &pp);
    x[i] = xm;
    double lm = fd->f(fd->ctx, &pm);
    x[i] = x0;
    if (kink) *kink = pp != pm;
    return (lp - lm) / ((double)xp - (double)xm);
}

/* Checks the analytic gradient a [n] of L with respect to x [n], prints the
 * worst relative error and asserts it is <= tol. */
static double fd_check(Fd *fd, const char *name, float *x, const float *a, size_t n, double tol) {
    double amax = 0.0;
    for (size_t i = 0; i < n; i++) amax = fmax(amax, fabs((double)a[i]));
    double floor = fd->floor_frac * amax;
    if (floor <= 0.0) floor = 1e-30; /* an all-zero gradient must be matched exactly */
    size_t count = n <= fd->coords ? n : fd->coords, skipped = 0, worst_at = 0;
    double worst = 0.0, worst_a = 0.0, worst_n = 0.0;
    for (size_t k = 0; k < count; k++) {
        size_t i = n <= fd->coords ? k : dacl_rng_below(&fd->rng, (uint32_t)n);
        int kink;
        double num = fd_numeric(fd, x, i, fd->h, &kink);
        if (kink) {
            skipped++;
            continue;
        }
        double err = fabs(a[i] - num) / fmax(fabs(a[i]) + fabs(num), floor);
        if (err > worst) worst = err, worst_at = i, worst_a = a[i], worst_n = num;
    }
    printf("  %-30s worst %.2e  tol %.0e  (%zu of %zu coords", name, worst, tol, count - skipped,
           n);
    if (skipped) printf(", %zu straddling a kink skipped", skipped);
    printf(")\n");
    if (worst > tol)
        fprintf(stderr, "FD MISMATCH %s[%zu]: analytic %.9g numeric %.9g (floor %.3g)\n", name,
                worst_at, worst_a, worst_n, floor);
    assert_true(worst <= tol);
    assert_true(skipped <= fd->max_skip);
    return worst;
}

static Fd fd_make(LossFn f, void *ctx, double h, double floor_frac, uint64_t seed) {
    Fd fd = {.f = f, .ctx = ctx, .h = h, .floor_frac = floor_frac, .coords = MAX_COORDS};
    dacl_rng_seed(&fd.rng, seed);
    return fd;
}

/* Steps and tolerances. Ops linear in the perturbed coordinate (conv, convT
 * and linear in x and in w, concat, dropout, LeakyReLU and maxpool away from
 * their kinks) have no truncation error, so the step can be large, h = 0.1:
 * what is left is the float32 roundoff of the few outputs the coordinate
 * touches, ~4e-6 absolute, i.e. ~6e-5 relative at the floor and ~1e-6 for the
 * large components; checked at 5e-4. The nonlinear ops (BN+act, softmax+CE,
 * softmax+Dice) use h = 3e-2: their error is roundoff, falling as 1/h (worst
 * 1.7e-3 at h = 1e-2, 4e-3 at 3e-3) while the O(h^2) truncation stays below
 * it (worst ~5e-4 at 3e-2); checked at 2e-3. A wrong, missing or mis-scaled
 * term is an O(1) relative error, far above either tolerance. */
#define FLOOR_FRAC 1e-2
#define H_LIN 0.1
#define TOL_LIN 5e-4
#define H_NL 3e-2
#define TOL_NL 2e-3

/* --------------------------------------------------------------- conv2d -- */

typedef struct {
    int N, C, H, W, OC, K;
    float *in, *w, *b, *out, *R, *ws;
} ConvCtx;

static double conv_loss(void *p, uint64_t *pat) {
    ConvCtx *c = p;
    *pat = 0;
    dacl_conv2d_forward(c->out, c->in, c->w, c->b, c->N, c->C, c->H, c->W, c->OC, c->K, c->ws);
    return dot(c->out, c->R, (size_t)c->N * c->OC * c->H * c->W);
}

static void check_conv(int N, int C, int H, int W, int OC, int K, uint64_t seed) {
    ConvCtx c = {.N = N, .C = C, .H = H, .W = W, .OC = OC, .K = K};
    size_t nin = (size_t)N * C * H * W, nw = (size_t)OC * C * K * K, nout = (size_t)N * OC * H * W;
    DaclRng r;
    dacl_rng_seed(&r, seed);
    c.in = fnew(nin), c.w = fnew(nw), c.b = fnew(OC), c.out = fnew(nout), c.R = fnew(nout);
    c.ws = fnew(dacl_conv2d_ws(C, H, W, K));
    fill_uniform(&r, c.in, nin, -1, 1);
    fill_uniform(&r, c.w, nw, -1, 1);
    fill_uniform(&r, c.b, OC, -1, 1);
    fill_uniform(&r, c.R, nout, -1, 1);
    float *din = fnew(nin), *dw = fzero(nw), *db = fzero(OC);
    fill_nan(din, nin);
    dacl_conv2d_forward(c.out, c.in, c.w, c.b, N, C, H, W, OC, K, c.ws);
    dacl_conv2d_backward(din, dw, db, c.R, c.in, c.w, N, C, H, W, OC, K, c.ws);

    char name[80];
    Fd fd = fd_make(conv_loss, &c, H_LIN, FLOOR_FRAC, seed + 1);
    snprintf(name, sizeof name, "conv2d K=%d %dx%d din", K, H, W);
    fd_check(&fd, name, c.in, din, nin, TOL_LIN);
    snprintf(name, sizeof name, "conv2d K=%d %dx%d dw", K, H, W);
    fd_check(&fd, name, c.w, dw, nw, TOL_LIN);
    snprintf(name, sizeof name, "conv2d K=%d %dx%d db", K, H, W);
    fd_check(&fd, name, c.b, db, OC, TOL_LIN);

    /* din = NULL is allowed and leaves dw, db the same; a second call adds */
    float *dw2 = fzero(nw), *db2 = fzero(OC);
    dacl_conv2d_backward(NULL, dw2, db2, c.R, c.in, c.w, N, C, H, W, OC, K, c.ws);
    assert_true(max_rel_diff(dw2, dw, nw) < 1e-6 && max_rel_diff(db2, db, OC) < 1e-6);
    dacl_conv2d_backward(NULL, dw2, db2, c.R, c.in, c.w, N, C, H, W, OC, K, c.ws);
    for (size_t i = 0; i < nw; i++) dw2[i] *= 0.5f;
    for (int i = 0; i < OC; i++) db2[i] *= 0.5f;
    assert_true(max_rel_diff(dw2, dw, nw) < 1e-5 && max_rel_diff(db2, db, OC) < 1e-5);

    free(c.in), free(c.w), free(c.b), free(c.out), free(c.R), free(c.ws);
    free(din), free(dw), free(db), free(dw2), free(db2);
}

static void test_conv2d(void **state) {
    (void)state;
    check_conv(2, 3, 6, 7, 4, 3, 11);
    check_conv(1, 2, 1, 5, 3, 3, 12); /* one row: every tap but the centre row is padding */
    check_conv(2, 5, 4, 3, 3, 1, 13);
    /* rows of 16 pixels and more take the direct AVX-512 kernels where the
     * CPU has them (forward from W = 16, backward from W = 64): odd widths
     * end in a partial vector, and 5 or 11 output channels leave a partial
     * tile (test_nn_conv_direct.c compares them with im2col + sgemm) */
    check_conv(1, 3, 5, 67, 5, 3, 14);
    check_conv(2, 9, 3, 20, 11, 3, 15);
}

/* ------------------------------------------------------ transposed conv -- */

typedef struct {
    int N, C, H, W, OC;
    float *in, *w, *b, *out, *R, *ws;
} ConvTCtx;

static double convt_loss(void *p, uint64_t *pat) {
    ConvTCtx *c = p;
    *pat = 0;
    dacl_convt2x2_forward(c->out, c->in, c->w, c->b, c->N, c->C, c->H, c->W, c->OC, c->ws);
    return dot(c->out, c->R, (size_t)c->N * c->OC * 4 * c->H * c->W);
}

static void test_convt2x2(void **state) {
    (void)state;
    ConvTCtx c = {.N = 2, .C = 3, .H = 4, .W = 5, .OC = 4};
    size_t nin = (size_t)c.N * c.C * c.H * c.W, nw = (size_t)c.C * c.OC * 4;
    size_t nout = (size_t)c.N * c.OC * 4 * c.H * c.W;
    DaclRng r;
    dacl_rng_seed(&r, 21);
    c.in = fnew(nin), c.w = fnew(nw), c.b = fnew(c.OC), c.out = fnew(nout), c.R = fnew(nout);
    c.ws = fnew(dacl_convt2x2_ws(c.OC, c.H, c.W));
    fill_uniform(&r, c.in, nin, -1, 1);
    fill_uniform(&r, c.w, nw, -1, 1);
    fill_uniform(&r, c.b, c.OC, -1, 1);
    fill_uniform(&r, c.R, nout, -1, 1);
    float *din = fnew(nin), *dw = fzero(nw), *db = fzero(c.OC);
    fill_nan(din, nin);
    dacl_convt2x2_backward(din, dw, db, c.R, c.in, c.w, c.N, c.C, c.H, c.W, c.OC, c.ws);

    Fd fd = fd_make(convt_loss, &c, H_LIN, FLOOR_FRAC, 22);
    fd_check(&fd, "convt2x2 din", c.in, din, nin, TOL_LIN);
    fd_check(&fd, "convt2x2 dw", c.w, dw, nw, TOL_LIN);
    fd_check(&fd, "convt2x2 db", c.b, db, c.OC, TOL_LIN);

    free(c.in), free(c.w), free(c.b), free(c.out), free(c.R), free(c.ws);
    free(din), free(dw), free(db);
}

/* ------------------------------------------------------------- linear -- */

typedef struct {
    int N, C, HW, OC;
    float *in, *w, *b, *out, *R;
} LinCtx;

static double linear_loss(void *p, uint64_t *pat) {
    LinCtx *c = p;
    *pat = 0;
    dacl_linear_forward(c->out, c->in, c->w, c->b, c->N, c->C, c->HW, c->OC);
    return dot(c->out, c->R, (size_t)c->N * c->OC * c->HW);
}

static void test_linear(void **state) {
    (void)state;
    LinCtx c = {.N = 3, .C = 5, .HW = 7, .OC = 4};
    size_t nin = (size_t)c.N * c.C * c.HW, nw = (size_t)c.OC * c.C, nout = (size_t)c.N * c.OC * c.HW;
    DaclRng r;
    dacl_rng_seed(&r, 31);
    c.in = fnew(nin), c.w = fnew(nw), c.b = fnew(c.OC), c.out = fnew(nout), c.R = fnew(nout);
    fill_uniform(&r, c.in, nin, -1, 1);
    fill_uniform(&r, c.w, nw, -1, 1);
    fill_uniform(&r, c.b, c.OC, -1, 1);
    fill_uniform(&r, c.R, nout, -1, 1);
    float *din = fnew(nin), *dw = fzero(nw), *db = fzero(c.OC);
    fill_nan(din, nin);
    dacl_linear_backward(din, dw, db, c.R, c.in, c.w, c.N, c.C, c.HW, c.OC);

    Fd fd = fd_make(linear_loss, &c, H_LIN, FLOOR_FRAC, 32);
    fd_check(&fd, "linear din", c.in, din, nin, TOL_LIN);
    fd_check(&fd, "linear dw", c.w, dw, nw, TOL_LIN);
    fd_check(&fd, "linear db", c.b, db, c.OC, TOL_LIN);

    free(c.in), free(c.w), free(c.b), free(c.out), free(c.R);
    free(din), free(dw), free(db);
}

/* ------------------------------------------------------------- BN + act -- */

typedef struct {
    int N, C, HW;
    float slope;
    float *in, *gamma, *beta, *out, *mean, *rstd, *R;
} BnCtx;

#define BN_EPS 1e-5f

static double bn_loss(void *p, uint64_t *pat) {
    BnCtx *c = p;
    size_t n = (size_t)c->N * c->C * c->HW;
    /* NULL running statistics: a check must not move them */
    dacl_bn_act_forward_train(c->out, c->mean, c->rstd, c->in, c->gamma, c->beta, NULL, NULL, c->N,
                              c->C, c->HW, 0.1f, BN_EPS, c->slope);
    *pat = c->slope == 1.0f ? 0 : sign_hash(0xcbf29ce484222325ULL, c->out, n);
    return dot(c->out, c->R, n);
}

static void check_bn(float slope, uint64_t seed) {
    BnCtx c = {.N = 3, .C = 4, .HW = 10, .slope = slope};
    size_t n = (size_t)c.N * c.C * c.HW;
    DaclRng r;
    dacl_rng_seed(&r, seed);
    c.in = fnew(n), c.out = fnew(n), c.R = fnew(n);
    c.gamma = fnew(c.C), c.beta = fnew(c.C), c.mean = fnew(c.C), c.rstd = fnew(c.C);
    /* each channel its own offset and spread, so the normalisation matters */
    for (int ch = 0; ch < c.C; ch++) {
        float mu = 2.0f * dacl_rng_uniform(&r) - 1.0f, s = 0.5f + 1.5f * dacl_rng_uniform(&r);
        for (int b = 0; b < c.N; b++)
            for (int i = 0; i < c.HW; i++)
                c.in[((size_t)b * c.C + ch) * c.HW + i] = mu + s * (float)dacl_rng_normal(&r);
    }
    fill_uniform(&r, c.gamma, c.C, 0.5f, 1.5f);
    fill_uniform(&r, c.beta, c.C, -0.5f, 0.5f);
    fill_uniform(&r, c.R, n, -1, 1);
    float *dx = fnew(n), *dg = fzero(c.C), *dbt = fzero(c.C);
    fill_nan(dx, n);
    uint64_t pat;
    bn_loss(&c, &pat);
    dacl_bn_act_backward(dx, dg, dbt, c.R, c.out, c.in, c.mean, c.rstd, c.gamma, c.N, c.C, c.HW,
                         slope);

    char name[80];
    Fd fd = fd_make(bn_loss, &c, H_NL, FLOOR_FRAC, seed + 1);
    fd.max_skip = n / 10; /* ~1% of the outputs lie within a step of the kink */
    snprintf(name, sizeof name, "bn+act slope %g dx", slope);
    fd_check(&fd, name, c.in, dx, n, TOL_NL);
    snprintf(name, sizeof name, "bn+act slope %g dgamma", slope);
    fd_check(&fd, name, c.gamma, dg, c.C, TOL_NL);
    snprintf(name, sizeof name, "bn+act slope %g dbeta", slope);
    fd_check(&fd, name, c.beta, dbt, c.C, TOL_NL);

    /* in place (dx aliasing dy) gives the same bits */
    float *g = fdup(c.R, n), *dg2 = fzero(c.C), *db2 = fzero(c.C);
    bn_loss(&c, &pat);
    dacl_bn_act_backward(g, dg2, db2, g, c.out, c.in, c.mean, c.rstd, c.gamma, c.N, c.C, c.HW, slope);
    assert_memory_equal(g, dx, n * sizeof(float));

    free(c.in), free(c.out), free(c.R), free(c.gamma), free(c.beta), free(c.mean), free(c.rstd);
    free(dx), free(dg), free(dbt), free(g), free(dg2), free(db2);
}

static void test_bn_act(void **state) {
    (void)state;
    check_bn(0.01f, 41);
    check_bn(1.0f, 42);
}

/* ---------------------------------------------------------- leaky relu -- */

typedef struct {
    size_t n;
    float slope;
    float *in, *out, *R;
} ActCtx;

static double act_loss(void *p, uint64_t *pat) {
    ActCtx *c = p;
    *pat = 0;
    dacl_leaky_relu_forward(c->out, c->in, c->n, c->slope);
    return dot(c->out, c->R, c->n);
}

static void test_leaky_relu(void **state) {
    (void)state;
    DaclRng r;
    dacl_rng_seed(&r, 51);
    const float slopes[] = {0.01f, 0.0f, 0.2f};
    for (int s = 0; s < 3; s++) {
        ActCtx c = {.n = 200, .slope = slopes[s]};
        c.in = fnew(c.n), c.out = fnew(c.n), c.R = fnew(c.n);
        /* |x| >= 0.2 > h: no input is within a step of the kink */
        for (size_t i = 0; i < c.n; i++)
            c.in[i] = (dacl_rng_uniform(&r) < 0.5f ? -1.0f : 1.0f) * (0.2f + dacl_rng_uniform(&r));
        fill_uniform(&r, c.R, c.n, -1, 1);
        float *dx = fnew(c.n);
        fill_nan(dx, c.n);
        dacl_leaky_relu_forward(c.out, c.in, c.n, c.slope);
        dacl_leaky_relu_backward(dx, c.R, c.out, c.n, c.slope);
        char name[64];
        snprintf(name, sizeof name, "leaky_relu slope %g dx", c.slope);
        Fd fd = fd_make(act_loss, &c, H_LIN, FLOOR_FRAC, 52 + s);
        fd_check(&fd, name, c.in, dx, c.n, TOL_LIN);
        float *g = fdup(c.R, c.n);
        dacl_leaky_relu_backward(g, g, c.out, c.n, c.slope);
        assert_memory_equal(g, dx, c.n * sizeof(float));
        free(c.in), free(c.out), free(c.R), free(dx), free(g);
    }
}

/* ------------------------------------------------------------- dropout -- */

typedef struct {
    size_t n;
    float p;
    uint64_t key;
    float *in, *out, *R;
} DropCtx;

static double drop_loss(void *p, uint64_t *pat) {
    DropCtx *c = p;
    *pat = 0;
    dacl_dropout_forward(c->out, c->in, c->n, c->p, c->key);
    return dot(c->out, c->R, c->n);
}

static void test_dropout_grad(void **state) {
    (void)state;
    DaclRng r;
    dacl_rng_seed(&r, 61);
    const float ps[] = {0.3f, 0.0f};
    for (int s = 0; s < 2; s++) {
        /* fixed key: the mask is a pure function of (key, i), so L is exactly linear */
        DropCtx c = {.n = 500, .p = ps[s], .key = 0x5eed0000ULL + s};
        c.in = fnew(c.n), c.out = fnew(c.n), c.R = fnew(c.n);
        fill_uniform(&r, c.in, c.n, -1, 1);
        fill_uniform(&r, c.R, c.n, -1, 1);
        float *dx = fnew(c.n);
        fill_nan(dx, c.n);
        dacl_dropout_backward(dx, c.R, c.n, c.p, c.key);
        char name[64];
        snprintf(name, sizeof name, "dropout p %g dx", c.p);
        Fd fd = fd_make(drop_loss, &c, H_LIN, FLOOR_FRAC, 62 + s);
        fd.coords = c.n;
        fd_check(&fd, name, c.in, dx, c.n, TOL_LIN);
        free(c.in), free(c.out), free(c.R), free(dx);
    }
}

/* ------------------------------------------------------------- maxpool -- */

typedef struct {
    int N, C, H, W;
    float *in, *out, *R;
    uint8_t *idx;
} PoolCtx;

static double pool_loss(void *p, uint64_t *pat) {
    PoolCtx *c = p;
    size_t no = (size_t)c->N * c->C * (c->H / 2) * (c->W / 2);
    dacl_maxpool2x2_forward(c->out, c->idx, c->in, c->N, c->C, c->H, c->W);
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < no; i++) h = (h ^ c->idx[i]) * 0x100000001b3ULL;
    *pat = h;
    return dot(c->out, c->R, no);
}

static void test_maxpool(void **state) {
    (void)state;
    PoolCtx c = {.N = 2, .C = 3, .H = 6, .W = 8};
    size_t nin = (size_t)c.N * c.C * c.H * c.W, no = nin / 4;
    DaclRng r;
    dacl_rng_seed(&r, 71);
    c.in = fnew(nin), c.out = fnew(no), c.R = fnew(no);
    c.idx = malloc(no);
    assert_non_null(c.idx);
    /* each window holds base + 0.5 * (a permutation of 0..3) + jitter < 0.25:
     * no ties and gaps > 2h, so no step moves the argmax */
    for (size_t nc = 0; nc < (size_t)c.N * c.C; nc++)
        for (int i = 0; i < c.H / 2; i++)
            for (int j = 0; j < c.W / 2; j++) {
                int perm[4] = {0, 1, 2, 3};
                for (int k = 3; k > 0; k--) {
                    int s = (int)dacl_rng_below(&r, (uint32_t)k + 1), t = perm[k];
                    perm[k] = perm[s], perm[s] = t;
                }
                float base = 2.0f * dacl_rng_uniform(&r) - 1.0f;
                for (int k = 0; k < 4; k++)
                    c.in[nc * c.H * c.W + (size_t)(2 * i + k / 2) * c.W + 2 * j + k % 2] =
                        base + 0.5f * perm[k] + 0.25f * dacl_rng_uniform(&r);
            }
    fill_uniform(&r, c.R, no, -1, 1);
    uint64_t pat;
    pool_loss(&c, &pat);
    float *din = fzero(nin);
    dacl_maxpool2x2_backward(din, c.R, c.idx, c.N, c.C, c.H, c.W);
    Fd fd = fd_make(pool_loss, &c, H_LIN, FLOOR_FRAC, 72);
    fd_check(&fd, "maxpool2x2 din", c.in, din, nin, TOL_LIN);
    /* backward accumulates: a second call doubles din exactly */
    pool_loss(&c, &pat);
    float *twice = fdup(din, nin);
    dacl_maxpool2x2_backward(twice, c.R, c.idx, c.N, c.C, c.H, c.W);
    for (size_t i = 0; i < nin; i++) assert_true(twice[i] == 2.0f * din[i]);
    free(c.in), free(c.out), free(c.R), free(c.idx), free(din), free(twice);
}

/* -------------------------------------------------------------- concat -- */

typedef struct {
    int N, CA, CB, HW;
    float *a, *b, *out, *R;
} CatCtx;

static double cat_loss(void *p, uint64_t *pat) {
    CatCtx *c = p;
    *pat = 0;
    dacl_concat_forward(c->out, c->a, c->b, c->N, c->CA, c->CB, c->HW);
    return dot(c->out, c->R, (size_t)c->N * (c->CA + c->CB) * c->HW);
}

static void test_concat(void **state) {
    (void)state;
    CatCtx c = {.N = 2, .CA = 3, .CB = 2, .HW = 5};
    size_t na = (size_t)c.N * c.CA * c.HW, nb = (size_t)c.N * c.CB * c.HW, no = na + nb;
    DaclRng r;
    dacl_rng_seed(&r, 81);
    c.a = fnew(na), c.b = fnew(nb), c.out = fnew(no), c.R = fnew(no);
    fill_uniform(&r, c.a, na, -1, 1);
    fill_uniform(&r, c.b, nb, -1, 1);
    fill_uniform(&r, c.R, no, -1, 1);
    float *da = fnew(na), *db = fnew(nb);
    fill_nan(da, na);
    fill_nan(db, nb);
    dacl_concat_backward(da, db, c.R, c.N, c.CA, c.CB, c.HW);
    Fd fd = fd_make(cat_loss, &c, H_LIN, FLOOR_FRAC, 82);
    fd_check(&fd, "concat da", c.a, da, na, TOL_LIN);
    fd_check(&fd, "concat db", c.b, db, nb, TOL_LIN);
    /* either gradient may be skipped */
    float *da2 = fnew(na), *db2 = fnew(nb);
    dacl_concat_backward(da2, NULL, c.R, c.N, c.CA, c.CB, c.HW);
    dacl_concat_backward(NULL, db2, c.R, c.N, c.CA, c.CB, c.HW);
    assert_memory_equal(da2, da, na * sizeof(float));
    assert_memory_equal(db2, db, nb * sizeof(float));
    free(c.a), free(c.b), free(c.out), free(c.R), free(da), free(db), free(da2), free(db2);
}

/* ------------------------------------------------------ softmax + losses -- */

typedef struct {
    int N, NC, HW, dice;
    float *logits, *probs;
    uint8_t *labels;
} LossCtx;

static double sm_loss(void *p, uint64_t *pat) {
    LossCtx *c = p;
    *pat = 0;
    dacl_softmax_forward(c->probs, c->logits, c->N, c->NC, c->HW);
    return c->dice ? dacl_dice_loss(NULL, c->probs, c->labels, c->N, c->NC, c->HW, 1.0f)
                   : dacl_ce_loss(NULL, c->probs, c->labels, c->N, c->NC, c->HW, 1.0f);
}

static void check_softmax_loss(int dice, uint64_t seed) {
    LossCtx c = {.N = 2, .NC = 4, .HW = 30, .dice = dice};
    size_t n = (size_t)c.N * c.NC * c.HW, np = (size_t)c.N * c.HW;
    DaclRng r;
    dacl_rng_seed(&r, seed);
    c.logits = fnew(n), c.probs = fnew(n);
    c.labels = malloc(np);
    assert_non_null(c.labels);
    fill_uniform(&r, c.logits, n, -3, 3);
    for (size_t i = 0; i < np; i++) {
        if (dice) {
            c.labels[i] = (uint8_t)dacl_rng_below(&r, 3); /* class 3 absent: sum(t) = 0 */
        } else {
            uint32_t u = dacl_rng_below(&r, 10); /* ~20% ignored, as 255 and as NC itself */
            c.labels[i] = u == 8 ? 255 : u == 9 ? (uint8_t)c.NC : (uint8_t)(u % c.NC);
        }
    }
    uint64_t pat;
    sm_loss(&c, &pat);
    float *d = fzero(n);
    if (dice)
        dacl_dice_loss(d, c.probs, c.labels, c.N, c.NC, c.HW, 1.0f);
    else
        dacl_ce_loss(d, c.probs, c.labels, c.N, c.NC, c.HW, 1.0f);
    Fd fd = fd_make(sm_loss, &c, H_NL, FLOOR_FRAC, seed + 1);
    fd_check(&fd, dice ? "softmax+dice dlogits" : "softmax+ce dlogits", c.logits, d, n, TOL_NL);
    if (!dice) /* ignored pixels get no gradient at all */
        for (int b = 0; b < c.N; b++)
            for (int i = 0; i < c.HW; i++)
                if (c.labels[b * c.HW + i] >= c.NC)
                    for (int k = 0; k < c.NC; k++)
                        assert_true(d[((size_t)b * c.NC + k) * c.HW + i] == 0.0f);
    /* `scale` scales and the gradient accumulates: 0.5 on top of 1 gives 1.5 */
    sm_loss(&c, &pat); /* the probabilities of the unperturbed logits again */
    float *d2 = fdup(d, n);
    if (dice)
        dacl_dice_loss(d2, c.probs, c.labels, c.N, c.NC, c.HW, 0.5f);
    else
        dacl_ce_loss(d2, c.probs, c.labels, c.N, c.NC, c.HW, 0.5f);
    for (size_t i = 0; i < n; i++) assert_true(fabs(d2[i] - 1.5 * d[i]) <= 1e-6 * fabs(d[i]) + 1e-12);
    free(c.logits), free(c.probs), free(c.labels), free(d), free(d2);
}

static void test_softmax_losses(void **state) {
    (void)state;
    check_softmax_loss(0, 91);
    check_softmax_loss(1, 93);
    /* every pixel ignored: CE is 0 and touches nothing */
    float probs[2 * 3] = {0.2f, 0.3f, 0.3f, 0.3f, 0.5f, 0.4f}, d[6] = {0};
    uint8_t lab[2] = {255, 3};
    assert_true(dacl_ce_loss(d, probs, lab, 1, 3, 2, 1.0f) == 0.0);
    for (int i = 0; i < 6; i++) assert_true(d[i] == 0.0f);
}

/* The ops walk blocks of pixels, class rows inside; against per-pixel loops
 * in double on a size with several blocks and a ragged tail (HW = 203), ignored
 * labels (255 and NC), pixels whose labelled probability underflows (CE's
 * 1e-30 clamp), argmax ties, and gradients accumulated onto nonzero values. */
static void test_losses_match_plain_loops(void **state) {
    (void)state;
    enum { LN = 3, LNC = 5, LHW = 203 };
    const size_t n = (size_t)LN * LNC * LHW, np = (size_t)LN * LHW;
    DaclRng r;
    dacl_rng_seed(&r, 97);
    float *z = fnew(n), *p = fnew(n), *d0 = fnew(n);
    double *pr = malloc(n * sizeof(double)), *want = malloc(n * sizeof(double));
    uint8_t *y = malloc(np), *am = malloc(np);
    assert_non_null(pr), assert_non_null(want), assert_non_null(y), assert_non_null(am);
    fill_uniform(&r, z, n, -4, 4);
    fill_uniform(&r, d0, n, -1e-3f, 1e-3f);
    for (size_t i = 0; i < np; i++) {
        uint32_t u = dacl_rng_below(&r, 20);
        y[i] = u == 18 ? 255 : u == 19 ? (uint8_t)LNC : (uint8_t)(u % LNC);
    }
#define AT(b, k, i) (((size_t)(b) * LNC + (k)) * LHW + (i))
    for (size_t i = 0; i < np; i++) /* -0 + 0 would be +0: an ignored pixel must stay untouched */
        if (y[i] >= LNC) d0[AT(i / LHW, 0, i % LHW)] = -0.0f;
    for (int i = 0; i < 6; i++) { /* hopeless: the label's logit 120 below the rest */
        int b = i % LN, px = 17 + 31 * i;
        y[(size_t)b * LHW + px] = 2;
        z[AT(b, 2, px)] = -120.0f;
    }
    for (int i = 0; i < 5; i++) /* ties for argmax: the first class wins */
        z[AT(1, 4, 9 + 40 * i)] = z[AT(1, 1, 9 + 40 * i)] = 9.0f;

    dacl_softmax_forward(p, z, LN, LNC, LHW);
    for (int i = 0; i < 6; i++) assert_true(p[AT(i % LN, 2, 17 + 31 * i)] < 1e-30f);
    dacl_argmax(am, z, LN, LNC, LHW);
    for (int b = 0; b < LN; b++)
        for (int i = 0; i < LHW; i++) {
            double m = z[AT(b, 0, i)], s = 0.0;
            int best = 0;
            for (int k = 1; k < LNC; k++) {
                if (z[AT(b, k, i)] > m) m = z[AT(b, k, i)], best = k;
            }
            for (int k = 0; k < LNC; k++) s += exp((double)z[AT(b, k, i)] - m);
            for (int k = 0; k < LNC; k++) {
                pr[AT(b, k, i)] = exp((double)z[AT(b, k, i)] - m) / s;
                assert_true(fabs(p[AT(b, k, i)] - pr[AT(b, k, i)]) <= 1e-6 * pr[AT(b, k, i)] + 1e-30);
            }
            assert_int_equal(am[(size_t)b * LHW + i], best);
        }

    /* CE, from the float probabilities it is given */
    const float scale = 0.7f;
    float *d = fdup(d0, n);
    double ce = dacl_ce_loss(d, p, y, LN, LNC, LHW, scale), ref = 0.0;
    size_t count = 0;
    for (size_t i = 0; i < np; i++) count += y[i] < LNC;
    for (int b = 0; b < LN; b++)
        for (int i = 0; i < LHW; i++) {
            int t = y[(size_t)b * LHW + i];
            for (int k = 0; k < LNC; k++)
                want[AT(b, k, i)] = t < LNC ? d0[AT(b, k, i)] + scale / (double)count * (p[AT(b, k, i)] - (t == k))
                                            : d0[AT(b, k, i)];
            if (t < LNC) ref -= log(fmax((double)p[AT(b, t, i)], 1e-30));
        }
    ref /= (double)count;
    assert_true(fabs(ce - ref) <= 1e-7 * ref);
    for (size_t i = 0; i < n; i++) {
        if (y[(i / (LNC * LHW)) * LHW + i % LHW] >= LNC)
            assert_true(memcmp(&d[i], &d0[i], sizeof(float)) == 0); /* untouched */
        else
            assert_true(fabs(d[i] - want[i]) <= 1e-6 * fabs(want[i]) + 1e-10);
    }
    assert_true(dacl_ce_loss(NULL, p, y, LN, LNC, LHW, scale) == ce);

    /* a NaN probability: through CE at a labelled pixel, unseen at an ignored one */
    size_t ign = 0, lab = 0;
    while (y[ign] < LNC) ign++;
    while (y[lab] >= LNC) lab++;
    float *pn = fdup(p, n);
    pn[AT(ign / LHW, 0, ign % LHW)] = NAN;
    assert_true(dacl_ce_loss(NULL, pn, y, LN, LNC, LHW, 1.0f) == ce);
    pn[AT(lab / LHW, y[lab], lab % LHW)] = NAN;
    assert_true(isnan(dacl_ce_loss(NULL, pn, y, LN, LNC, LHW, 1.0f)));

    /* Dice: per class over the batch, then through the softmax */
    memcpy(d, d0, n * sizeof(float));
    double dice = dacl_dice_loss(d, p, y, LN, LNC, LHW, scale), dref = 0.0, gmax = 0.0;
    double I[LNC] = {0}, D[LNC] = {0};
    for (int b = 0; b < LN; b++)
        for (int k = 0; k < LNC; k++)
            for (int i = 0; i < LHW; i++) {
                double pv = p[AT(b, k, i)];
                int t = y[(size_t)b * LHW + i] == k;
                I[k] += pv * t, D[k] += pv * pv + t;
            }
    for (int k = 0; k < LNC; k++) D[k] += 1e-5, dref += (1.0 - (2.0 * I[k] + 1e-5) / D[k]) / LNC;
    assert_true(fabs(dice - dref) <= 1e-9 * dref);
    for (int b = 0; b < LN; b++)
        for (int i = 0; i < LHW; i++) {
            double g[LNC], dot = 0.0;
            for (int k = 0; k < LNC; k++) {
                double pv = p[AT(b, k, i)];
                int t = y[(size_t)b * LHW + i] == k;
                g[k] = -(2.0 * t * D[k] - 2.0 * pv * (2.0 * I[k] + 1e-5)) / (LNC * D[k] * D[k]);
                dot += pv * g[k];
            }
            for (int k = 0; k < LNC; k++) {
                double gz = scale * p[AT(b, k, i)] * (g[k] - dot);
                want[AT(b, k, i)] = gz;
                gmax = fmax(gmax, fabs(gz));
            }
        }
    for (size_t i = 0; i < n; i++) assert_true(fabs(d[i] - d0[i] - want[i]) <= 1e-4 * gmax);
#undef AT
    free(z), free(p), free(d0), free(d), free(pn), free(pr), free(want), free(y), free(am);
}

/* -------------------------------------------------------------- U-Net -- */

/* The whole network: widths 2-4-8-16-32 at 32x32, batch 2 (planned for 3),
 * dropout on with a fixed key, BN gamma in [0.5, 1.5] and beta in [-0.3, 0.3].
 * L = sum(logits * R1) [+ sum(feature * R2)], so dlogits = R1, dfeat = R2.
 *
 * Why no worst-case bound here: a parameter step moves the ~30k LeakyReLU
 * inputs and ~2k maxpool windows downstream of it, and each one that crosses
 * its kink inside the stencil bends the central difference. That error grows
 * like sqrt(h) while float32 roundoff grows like 1/h; measured on this net no
 * step brings the worst coordinate under ~0.1 (h = 1e-2: kinks, worst ~1;
 * h = 3e-5: roundoff, worst ~1), nor does moving every BN output away from
 * zero (the zero-padded borders then dominate the statistics and the deep
 * gradients drown in roundoff). So the criterion is statistical, and its
 * power is shown on two deliberately wrong gradients:
 * - the noise delta is measured: the bias of a conv that feeds train-mode BN
 *   cannot change L (BN subtracts it again), so the central difference along
 *   it is pure roundoff; delta = the largest of those seen;
 * - a coordinate passes when |a - n| <= max(UNET_TAU (|a| + |n|), 3 delta),
 *   i.e. relative error with floor 3 delta / UNET_TAU at most UNET_TAU;
 * - at least UNET_PASS of the coordinates pass and the median error is at
 *   most UNET_TAU / 4. Measured: 90-98% pass, median 1-4e-3. A wiring bug
 *   is wrong on most coordinates of the tensors it touches: a backward
 *   through another dropout key's masks passes 5-7%, one that drops dfeat of
 *   up4 8-10% (dropping the bottleneck's, which only the encoder's half of
 *   the tensors feed, passes ~55%). */
#define UNET_H 3e-4
#define UNET_TAU 2e-2
#define UNET_PASS 0.80
#define UNET_COORDS 6

typedef struct {
    DaclUNet *m;
    const float *x;
    int n;
    uint64_t key;
    const float *R1, *R2; /* R2 NULL: no feature term */
    int feat;
    size_t nlogits, nfeat;
} UNetCtx;

static double unet_loss(void *p, uint64_t *pat) {
    UNetCtx *u = p;
    *pat = 0;
    assert_int_equal(dacl_unet_forward(u->m, u->x, u->n, 1, u->key), 0);
    double L = dot(dacl_unet_logits(u->m), u->R1, u->nlogits);
    if (u->R2) L += dot(dacl_unet_feature(u->m, u->feat, NULL, NULL, NULL), u->R2, u->nfeat);
    return L;
}

/* a conv bias whose output goes straight into train-mode BN */
static int is_null_direction(const DaclParamInfo *t) {
    return t->kind == DACL_PARAM_CONV_B && strstr(t->name, "conv_conv") != NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double delta, null_a, gmax; /* noise, largest |a| along a null direction, largest |a| */
    double worst, median, p90, pass;
    size_t count;
    char worst_name[96];
} UNetStats;

/* Compares the analytic gradient g (all parameters) with central differences
 * at UNET_COORDS random coordinates of every tensor. */
static UNetStats unet_compare(UNetCtx *u, const float *g, uint64_t seed) {
    DaclUNet *m = u->m;
    float *P = dacl_unet_params(m);
    const int nt = dacl_unet_num_tensors(m);
    Fd fd = fd_make(unet_loss, u, UNET_H, 0.0, seed);
    UNetStats st = {0};
    for (size_t i = 0; i < dacl_unet_num_params(m); i++) st.gmax = fmax(st.gmax, fabs(g[i]));
    for (int t = 0; t < nt; t++) {
        const DaclParamInfo *ti = dacl_unet_tensor(m, t);
        if (!is_null_direction(ti)) continue;
        for (size_t i = 0; i < ti->numel && i < 4; i++) {
            st.delta = fmax(st.delta, fabs(fd_numeric(&fd, P + ti->offset, i, UNET_H, NULL)));
            st.null_a = fmax(st.null_a, fabs(g[ti->offset + i]));
        }
    }
    double floor = 3.0 * st.delta / UNET_TAU, *err = malloc(nt * UNET_COORDS * sizeof(double));
    assert_non_null(err);
    size_t pass = 0;
    for (int t = 0; t < nt; t++) {
        const DaclParamInfo *ti = dacl_unet_tensor(m, t);
        if (is_null_direction(ti)) continue;
        size_t count = ti->numel < UNET_COORDS ? ti->numel : UNET_COORDS;
        for (size_t k = 0; k < count; k++) {
            size_t i = ti->numel <= UNET_COORDS ? k : dacl_rng_below(&fd.rng, (uint32_t)ti->numel);
            double a = g[ti->offset + i], num = fd_numeric(&fd, P + ti->offset, i, UNET_H, NULL);
            double e = fabs(a - num) / fmax(fabs(a) + fabs(num), floor);
            pass += e <= UNET_TAU;
            if (e > st.worst) {
                st.worst = e;
                snprintf(st.worst_name, sizeof st.worst_name, "%s[%zu]", ti->name, i);
            }
            err[st.count++] = e;
        }
    }
    qsort(err, st.count, sizeof(double), cmp_double);
    st.median = err[st.count / 2];
    st.p90 = err[st.count * 9 / 10];
    st.pass = (double)pass / st.count;
    free(err);
    return st;
}

static const char *feat_name(int f) {
    static const char *names[] = {"+ bottleneck", "+ up1", "+ up2", "+ up3", "+ up4"};
    return f < 0 ? "logits" : names[f];
}

/* Zeroes the gradients, runs forward on `fwd_key`, backward with R2 into
 * `feat` (none when R2 is NULL), and returns a copy of the gradients. */
static float *unet_grad(UNetCtx *u, uint64_t fwd_key, const float *R2) {
    dacl_unet_zero_grad(u->m);
    assert_int_equal(dacl_unet_forward(u->m, u->x, u->n, 1, fwd_key), 0);
    assert_int_equal(dacl_unet_backward(u->m, u->R1, R2, u->feat < 0 ? 0 : u->feat), 0);
    return fdup(dacl_unet_grads(u->m), dacl_unet_num_params(u->m));
}

#define UNET_N 2
#define UNET_HW 32

/* The checked net, its parameters, input and R1 all drawn from seed 101; on a
 * team of `threads` members (1: no team). */
static DaclUNet *unet_make(int threads, DaclPool **pool, float **x, float **R1, DaclRng *r) {
    DaclUNetConfig cfg = {.in_channels = 2, .classes = 3, .widths = {2, 4, 8, 16, 32},
                          .dropout = {0.05f, 0.1f, 0.2f, 0.3f, 0.5f}};
    DaclUNet *m;
    /* planned for 3 images, run with 2: the activations of a short batch */
    assert_int_equal(dacl_unet_create(&m, &cfg, UNET_N + 1, UNET_HW, UNET_HW), 0);
    *pool = NULL;
    if (threads > 1) {
        assert_int_equal(dacl_pool_create(pool, threads), 0);
        assert_int_equal(dacl_unet_set_pool(m, *pool), 0);
    }
    dacl_rng_seed(r, 101);
    dacl_unet_init(m, r);
    float *P = dacl_unet_params(m);
    for (int t = 0; t < dacl_unet_num_tensors(m); t++) {
        const DaclParamInfo *ti = dacl_unet_tensor(m, t);
        if (ti->kind == DACL_PARAM_BN_W) fill_uniform(r, P + ti->offset, ti->numel, 0.5f, 1.5f);
        if (ti->kind == DACL_PARAM_BN_B) fill_uniform(r, P + ti->offset, ti->numel, -0.3f, 0.3f);
    }
    size_t nx = (size_t)UNET_N * cfg.in_channels * UNET_HW * UNET_HW;
    size_t nl = (size_t)UNET_N * cfg.classes * UNET_HW * UNET_HW;
    *x = fnew(nx), *R1 = fnew(nl);
    fill_uniform(r, *x, nx, -1, 1);
    fill_uniform(r, *R1, nl, -1, 1);
    return m;
}

/* Variant v (-1: logits only, else DACL_FEAT_*): fills the context, drawing
 * R2 from r; returns R2 (NULL for v = -1). */
static float *unet_variant(UNetCtx *u, DaclUNet *m, const float *x, const float *R1, int v,
                           DaclRng *r) {
    *u = (UNetCtx){.m = m, .x = x, .n = UNET_N, .key = 0xd20b0a7ULL, .R1 = R1, .feat = v,
                   .nlogits = (size_t)UNET_N * dacl_unet_config(m)->classes * UNET_HW * UNET_HW};
    if (v < 0) return NULL;
    int c, fh, fw;
    assert_non_null(dacl_unet_feature(m, v, &c, &fh, &fw));
    u->nfeat = (size_t)UNET_N * c * fh * fw;
    float *R2 = fnew(u->nfeat);
    fill_uniform(r, R2, u->nfeat, -1, 1);
    u->R2 = R2;
    return R2;
}

static void test_unet(void **state) {
    (void)state;
    DaclRng r;
    DaclPool *pool;
    float *x, *R1;
    DaclUNet *m = unet_make(1, &pool, &x, &R1, &r);
    for (int v = -1; v <= DACL_FEAT_UP4; v++) {
        UNetCtx u;
        float *R2 = unet_variant(&u, m, x, R1, v, &r);
        float *g = unet_grad(&u, u.key, R2);
        UNetStats st = unet_compare(&u, g, 200 + v);
        printf("  unet %-14s %3zu coords: worst %.2e (%s), median %.1e, p90 %.1e, %.0f%% within "
               "%.0e (noise %.1e)\n",
               feat_name(v), st.count, st.worst, st.worst_name, st.median, st.p90, 100 * st.pass,
               UNET_TAU, st.delta);
        assert_true(st.pass >= UNET_PASS);
        assert_true(st.median <= UNET_TAU / 4);
        /* the biases in front of BN have no gradient (roundoff only) */
        assert_true(st.null_a <= 1e-5 * st.gmax);

        /* negative controls: the same criterion must reject a wrong gradient */
        if (v < 0) { /* backward through the masks of another dropout key */
            float *bad = unet_grad(&u, u.key + 1, R2);
            UNetStats sb = unet_compare(&u, bad, 300);
            printf("  unet (control: other dropout key) %.0f%% within %.0e\n", 100 * sb.pass,
                   UNET_TAU);
            assert_true(sb.pass < 0.5);
            free(bad);
        }
        if (v == DACL_FEAT_UP4) { /* dfeat dropped */
            float *bad = unet_grad(&u, u.key, NULL);
            UNetStats sb = unet_compare(&u, bad, 301);
            printf("  unet (control: dfeat dropped)     %.0f%% within %.0e\n", 100 * sb.pass,
                   UNET_TAU);
            assert_true(sb.pass < 0.5);
            free(bad);
        }
        free(g);
        free(R2);
    }
    free(x), free(R1);
    dacl_unet_free(m);
}

/* The team splits the batch between members and sums their gradient blocks in
 * member order: the gradients must be the single thread's up to that order of
 * summation, with 2 members and with 3 (one idle on a batch of 2), and a
 * second backward without zero_grad must add to the first. */
static void test_unet_team(void **state) {
    (void)state;
    const int threads[] = {1, 2, 3};
    DaclUNet *m[3];
    DaclPool *pool[3];
    float *x[3], *R1[3];
    DaclRng r[3];
    for (int k = 0; k < 3; k++) m[k] = unet_make(threads[k], &pool[k], &x[k], &R1[k], &r[k]);
    const size_t np = dacl_unet_num_params(m[0]);
    for (int v = -1; v <= DACL_FEAT_UP4; v++) {
        float *g[3], *R2[3];
        UNetCtx u[3];
        for (int k = 0; k < 3; k++) {
            R2[k] = unet_variant(&u[k], m[k], x[k], R1[k], v, &r[k]);
            g[k] = unet_grad(&u[k], u[k].key, R2[k]);
        }
        double gmax = 0.0;
        for (size_t i = 0; i < np; i++) gmax = fmax(gmax, fabs(g[0][i]));
        for (int k = 1; k < 3; k++) {
            double d = 0.0;
            for (size_t i = 0; i < np; i++) d = fmax(d, fabs((double)g[k][i] - g[0][i]));
            printf("  %-14s %d threads: max |g - g(1 thread)| = %.1e of max |g| %.1f\n",
                   feat_name(v), threads[k], d, gmax);
            assert_true(d <= 1e-5 * gmax);
        }
        /* accumulation: forward + backward again without zero_grad doubles */
        for (int k = 0; k < 3 && v < 0; k++) {
            assert_int_equal(dacl_unet_forward(m[k], x[k], UNET_N, 1, u[k].key), 0);
            assert_int_equal(dacl_unet_backward(m[k], R1[k], NULL, 0), 0);
            const float *acc = dacl_unet_grads(m[k]);
            double d = 0.0;
            for (size_t i = 0; i < np; i++) d = fmax(d, fabs(acc[i] - 2.0 * g[k][i]));
            printf("  second backward, %d thread%s: max |g2 - 2 g1| = %.1e\n", threads[k],
                   threads[k] > 1 ? "s" : "", d);
            assert_true(d <= 1e-6 * gmax);
        }
        for (int k = 0; k < 3; k++) free(g[k]), free(R2[k]);
    }
    for (int k = 0; k < 3; k++) {
        free(x[k]), free(R1[k]);
        dacl_unet_free(m[k]);
        dacl_pool_free(pool[k]);
    }
}

/* ---------------------------------------------------- dropout statistics -- */

/* |x - mu| within 5 sigma */
static void assert_5sigma(const char *what, double x, double mu, double sigma) {
    printf("  %-44s %.6f, expected %.6f (%+.1f sigma)\n", what, x, mu, (x - mu) / sigma);
    assert_true(fabs(x - mu) <= 5.0 * sigma);
}

static void check_dropout_stats(float p) {
    const size_t n = 1000000;
    const uint64_t key = 0x0123456789abcdefULL;
    DaclRng r;
    dacl_rng_seed(&r, 400 + (uint64_t)(p * 100));
    float *in = fnew(n), *out = fnew(n), *again = fnew(n), *other = fnew(n);
    fill_uniform(&r, in, n, 0.5f, 1.5f); /* never 0: a 0 out means dropped */
    dacl_dropout_forward(out, in, n, p, key);
    printf(" p = %g over %zu elements\n", p, n);

    /* kept fraction ~ Binomial(n, 1-p)/n; kept values scaled by exactly 1/(1-p) */
    const double q = 1.0 - p, scale = 1.0 / (1.0 - (double)p);
    size_t kept = 0, pairs = 0;
    double mean_in = 0.0, mean_out = 0.0, var_mean = 0.0;
    for (size_t i = 0; i < n; i++) {
        mean_in += in[i];
        mean_out += out[i];
        var_mean += (double)in[i] * in[i];
        if (out[i] != 0.0f) {
            kept++;
            assert_true(fabs(out[i] / in[i] - scale) <= 1e-6 * scale);
            if (i + 1 < n && out[i + 1] != 0.0f) pairs++;
        }
    }
    assert_5sigma("kept fraction", (double)kept / n, q, sqrt(p * q / n));
    /* E[out_i] = in_i, Var[out_i] = in_i^2 p / (1-p), independently */
    assert_5sigma("mean(out) - mean(in)", (mean_out - mean_in) / n, 0.0,
                  sqrt(var_mean * p / q) / n);
    /* neighbours independent: both kept with probability (1-p)^2 */
    assert_5sigma("neighbours both kept", (double)pairs / (n - 1), q * q,
                  sqrt(q * q * (1 - q * q) / (n - 1)));

    /* the same key gives the same mask, in place too */
    dacl_dropout_forward(again, in, n, p, key);
    assert_memory_equal(again, out, n * sizeof(float));
    memcpy(again, in, n * sizeof(float));
    dacl_dropout_forward(again, again, n, p, key);
    assert_memory_equal(again, out, n * sizeof(float));

    /* nearby keys (the U-Net derives one per block) give independent masks */
    const uint64_t others[] = {key + 1, key ^ 0x8000000000000000ULL, 1};
    for (int k = 0; k < 3; k++) {
        dacl_dropout_forward(other, in, n, p, others[k]);
        size_t both = 0;
        for (size_t i = 0; i < n; i++) both += out[i] != 0.0f && other[i] != 0.0f;
        assert_true(memcmp(other, out, n * sizeof(float)) != 0);
        char what[64];
        snprintf(what, sizeof what, "kept under key and key #%d", k + 1);
        assert_5sigma(what, (double)both / n, q * q, sqrt(q * q * (1 - q * q) / n));
    }

    /* backward applies the same mask and scale to the gradient */
    float *dy = other;
    fill_uniform(&r, dy, n, -1.5f, -0.5f);
    float *dx = again;
    dacl_dropout_backward(dx, dy, n, p, key);
    for (size_t i = 0; i < n; i++) {
        assert_true((dx[i] != 0.0f) == (out[i] != 0.0f));
        if (dx[i] != 0.0f) assert_true(fabs(dx[i] / dy[i] - scale) <= 1e-6 * scale);
    }
    free(in), free(out), free(again), free(other);
}

static void test_dropout_statistics(void **state) {
    (void)state;
    check_dropout_stats(0.1f);
    check_dropout_stats(0.5f);
    /* p = 0 copies exactly */
    float in[5] = {1, -2, 3, -4, 5}, out[5];
    dacl_dropout_forward(out, in, 5, 0.0f, 7);
    assert_memory_equal(out, in, sizeof in);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),        cmocka_unit_test(test_convt2x2),
        cmocka_unit_test(test_linear),        cmocka_unit_test(test_bn_act),
        cmocka_unit_test(test_leaky_relu),    cmocka_unit_test(test_dropout_grad),
        cmocka_unit_test(test_maxpool),       cmocka_unit_test(test_concat),
        cmocka_unit_test(test_softmax_losses), cmocka_unit_test(test_losses_match_plain_loops),
        cmocka_unit_test(test_unet),
        cmocka_unit_test(test_unet_team),
        cmocka_unit_test(test_dropout_statistics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
