/* A convolution that reads its input through an XForm (BN + LeakyReLU +
 * dropout, core/nn/team.h): on the direct and Winograd kernels the
 * transform is folded into the forward's row loads (DaclXIn) instead of
 * materialised one image at a time into the member's buffer. Both must
 * give the same bits: the output, its row statistics and the dropout bits
 * stored for the backward, in training (bits drawn, or read as the
 * backward does) and in eval mode. At shapes with partial vectors,
 * partial channel tiles and bands of rows cut at the image's borders, with
 * zeros and negative zeros among the inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../core/nn/ops_internal.h"
#include "../../core/nn/team.h"
#include "dacl/nn.h"

static float *frand(DaclRng *r, size_t n, float lo, float hi) {
    float *v = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * dacl_rng_uniform(r);
    return v;
}

static float *falloc(size_t n) {
    float *v = aligned_alloc(64, ((n ? n : 1) * sizeof(float) + 63) / 64 * 64);
    assert_non_null(v);
    return v;
}

/* a team of `threads` members planned for one layer's forward */
static Team team_for(DaclPool *pool, int threads, int C, int H, int W, int OC) {
    size_t ws = dacl_conv2d_ws(C, H, W, 3), sc = dacl_wino_scratch_floats(C);
    size_t sb = dacl_wino_scratch_floats(OC), sd = dacl_wino_dw_scratch_floats(C, OC);
    if (sb > sc) sc = sb;
    if (sd > sc) sc = sd;
    const size_t wlen = (size_t)OC * C * 9 + OC;
    Team t = {.pool = pool, .n = threads, .ws_floats = ws > sc ? ws : sc, .nparams = wlen,
              .gslot_floats = team_grad_slot_floats(wlen, 8),
              .xbuf_floats = (size_t)C * H * W, .xmask_words = C * dacl_mask_words((size_t)H * W),
              .wu_floats = dacl_wino_u_floats(C, OC)};
    t.ws = falloc(t.ws_floats * threads);
    t.xbuf = falloc(t.xbuf_floats * threads);
    t.xmask = malloc(sizeof(uint64_t) * t.xmask_words * threads);
    t.wu = falloc(t.wu_floats);
    t.grads = falloc(t.nparams);
    t.gslots = falloc(t.gslot_floats);
    assert_non_null(t.xmask);
    assert_int_equal(team_alloc_runs(&t), 0);
    return t;
}

static void team_done(Team *t) {
    free(t->ws);
    free(t->xbuf);
    free(t->xmask);
    free(t->wu);
    free(t->grads);
    free(t->gslots);
    team_free_runs(t);
}

/* 1 if the last forward on t folded the transform (it leaves no member
 * buffer holding an image), 0 if it materialised it */
static int folded(const Team *t) {
    for (int m = 0; m < t->n; m++)
        if (t->ximg[m] >= 0) return 0;
    return 1;
}

/* one layer [N,C,H,W] -> OC, folded against materialised; wino: the shape
 * must take Winograd (1) or the direct kernel (0) */
static void check_fold(int N, int C, int H, int W, int OC, float p, int threads, int wino,
                       uint64_t seed) {
    assert_int_equal(dacl_conv3x3_use_wino(C, H, W, OC, 0), wino);
    assert_true(dacl_conv3x3_use_direct(C, H, W, OC, 0));
    DaclRng r;
    dacl_rng_seed(&r, seed);
    const size_t HW = (size_t)H * W, n = (size_t)N * C * HW, ny = (size_t)N * OC * HW;
    const size_t nrs = (size_t)N * OC * H * 2, mw = dacl_mask_words(HW), nm = (size_t)N * C * mw;
    float *x = frand(&r, n, -1.5f, 1.5f), *w = frand(&r, (size_t)OC * C * 9, -0.2f, 0.2f);
    float *b = frand(&r, OC, -0.1f, 0.1f), *sc = frand(&r, C, 0.5f, 2.0f);
    float *sh = frand(&r, C, -0.5f, 0.5f);
    /* channel 0: z = x * sc + (-0) with x = +-0 gives +-0, the LeakyReLU's edge */
    sh[0] = -0.0f;
    for (size_t i = 0; i < HW; i += 3) x[i] = i % 2 ? -0.0f : 0.0f;
    float *y[2], *rs[2];
    uint64_t *mk[2];
    for (int k = 0; k < 2; k++) {
        y[k] = falloc(ny), rs[k] = falloc(nrs);
        mk[k] = malloc(sizeof(uint64_t) * (nm ? nm : 1));
        assert_non_null(mk[k]);
        memset(y[k], 0xff, sizeof(float) * ny);
        memset(mk[k], 0xa5, sizeof(uint64_t) * nm);
    }
    DaclPool *pool = NULL;
    if (threads > 1) assert_int_equal(dacl_pool_create(&pool, threads), 0);
    Team t = team_for(pool, threads, C, H, W, OC);
    /* training: bits drawn (and stored), then read back as the backward reads them */
    for (int ready = 0; ready < 2; ready++) {
        for (int k = 0; k < 2; k++) {
            XForm xf = {.scale = sc, .shift = sh, .slope = 0.01f, .p = p, .key = seed * 31 + 5,
                        .mask = p > 0.0f ? mk[ready ? 0 : k] : NULL, .mask_ready = ready};
            t.no_fold = k;
            team_conv_fwd(&t, y[k], x, &xf, w, b, N, C, H, W, OC, rs[k]);
            assert_int_equal(folded(&t), !k);
        }
        assert_memory_equal(y[0], y[1], sizeof(float) * ny);
        assert_memory_equal(rs[0], rs[1], sizeof(float) * nrs);
        if (p > 0.0f && !ready) assert_memory_equal(mk[0], mk[1], sizeof(uint64_t) * nm);
    }
    /* eval: no dropout, no bits */
    for (int k = 0; k < 2; k++) {
        XForm xf = {.scale = sc, .shift = sh, .slope = 0.01f};
        t.no_fold = k;
        team_conv_fwd(&t, y[k], x, &xf, w, b, N, C, H, W, OC, NULL);
        assert_int_equal(folded(&t), !k);
    }
    assert_memory_equal(y[0], y[1], sizeof(float) * ny);
    team_done(&t);
    dacl_pool_free(pool);
    for (int k = 0; k < 2; k++) free(y[k]), free(rs[k]), free(mk[k]);
    free(x), free(w), free(b), free(sc), free(sh);
}

static void test_fold_direct(void **state) {
    (void)state;
    if (!dacl_conv3x3_direct_available()) {
        print_message("no AVX-512: the fold is not used\n");
        skip();
    }
    check_fold(2, 16, 29, 16, 16, 0.3f, 1, 0, 1); /* one vector a row */
    check_fold(3, 16, 13, 40, 24, 0.5f, 2, 0, 2); /* a partial vector, a partial tile */
    check_fold(2, 8, 26, 80, 8, 0.1f, 2, 0, 3);   /* 3 + 2 vectors a row */
    check_fold(2, 12, 7, 136, 12, 0.2f, 1, 0, 4); /* an unmasked middle tile, partial mask words */
}

static void test_fold_wino(void **state) {
    (void)state;
    if (!dacl_conv3x3_direct_available()) {
        print_message("no AVX-512: the fold is not used\n");
        skip();
    }
    check_fold(2, 32, 14, 32, 32, 0.3f, 1, 1, 5);  /* one column group: tiles of three block rows */
    check_fold(3, 32, 25, 72, 16, 0.5f, 2, 1, 6);  /* a partial group, an odd last row */
    check_fold(2, 24, 13, 48, 40, 0.2f, 2, 1, 7);  /* a partial tile of outputs */
    check_fold(1, 64, 12, 128, 64, 0.1f, 1, 1, 8); /* the U-Net's level-1 row width */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold_direct),
        cmocka_unit_test(test_fold_wino),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
