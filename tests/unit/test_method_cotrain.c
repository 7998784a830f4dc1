/* Co-training terms: argmax pseudo-labels, the supervised and cross losses
 * against the ops they are built from, and the schedules' values. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dacl/config.h"
#include "dacl/method.h"
#include "dacl/nn.h"

#define N 2
#define NC 3
#define HW 5

static void test_argmax_first_on_ties(void **state) {
    (void)state;
    float z[N * NC * HW] = {0};
    /* image 0 pixel 0: class 2 wins; pixel 1: tie 0/1 -> 0; image 1 pixel 4: class 1 */
    z[2 * HW + 0] = 3.0f;
    z[0 * HW + 1] = 1.0f, z[1 * HW + 1] = 1.0f;
    z[NC * HW + 1 * HW + 4] = 0.5f;
    uint8_t p[N * HW];
    dacl_argmax(p, z, N, NC, HW);
    assert_int_equal(p[0], 2);
    assert_int_equal(p[1], 0);
    assert_int_equal(p[2], 0);
    assert_int_equal(p[HW + 4], 1);
}

static void test_losses_match_their_parts(void **state) {
    (void)state;
    DaclRng r;
    dacl_rng_seed(&r, 3);
    float z[N * NC * HW], probs[N * NC * HW], g1[N * NC * HW] = {0}, g2[N * NC * HW] = {0};
    uint8_t y[N * HW];
    for (int i = 0; i < N * NC * HW; i++) z[i] = 2.0f * dacl_rng_uniform(&r) - 1.0f;
    for (int i = 0; i < N * HW; i++) y[i] = (uint8_t)dacl_rng_below(&r, NC);
    dacl_softmax_forward(probs, z, N, NC, HW);
    double ce, dice;
    double l = dacl_sup_loss(g1, probs, y, N, NC, HW, 2.0f, &ce, &dice);
    assert_true(fabs(l - 0.5 * (ce + dice)) < 1e-12);
    assert_true(fabs(ce - dacl_ce_loss(NULL, probs, y, N, NC, HW, 1.0f)) < 1e-12);
    dacl_ce_loss(g2, probs, y, N, NC, HW, 1.0f);
    dacl_dice_loss(g2, probs, y, N, NC, HW, 1.0f);
    for (int i = 0; i < N * NC * HW; i++) assert_true(fabsf(g1[i] - g2[i]) < 1e-6f);
    /* the cross term is plain CE against the pseudo-labels */
    uint8_t pseudo[N * HW];
    dacl_argmax(pseudo, z, N, NC, HW);
    double cross = dacl_cross_loss(NULL, probs, pseudo, N, NC, HW, 1.0f);
    assert_true(fabs(cross - dacl_ce_loss(NULL, probs, pseudo, N, NC, HW, 1.0f)) < 1e-12);
    /* against its own argmax CE is below log(NC): every pixel's max p >= 1/NC */
    assert_true(cross < log((double)NC));
}

static void test_schedules(void **state) {
    (void)state;
    DaclJobConfig c;
    dacl_config_defaults(&c);
    assert_true(dacl_cross_weight(&c, 0) == 1.0);
    c.method.cross_schedule = DACL_SCHED_RAMP;
    assert_true(fabs(dacl_cross_weight(&c, 0) - 0.1 * exp(-5.0)) < 1e-15);
    assert_true(fabs(dacl_cross_weight(&c, 149) - 0.1 * exp(-5.0)) < 1e-15); /* floor(t/150) */
    assert_true(fabs(dacl_cross_weight(&c, 15000) - 0.1 * exp(-5.0 * 0.25)) < 1e-15);
    assert_true(fabs(dacl_cross_weight(&c, 30000) - 0.1) < 1e-15);
    assert_true(fabs(dacl_cross_weight(&c, 90000) - 0.1) < 1e-15);
    /* lambda_CL: zero through the warm-up, then the Gaussian ramp to 0.1 */
    assert_true(dacl_cl_weight(&c, 0) == 0.0);
    assert_true(dacl_cl_weight(&c, 999) == 0.0);
    assert_true(fabs(dacl_cl_weight(&c, 1000) - 0.1 * exp(-5.0 * pow(1 - 1000.0 / 30000, 2))) < 1e-15);
    assert_true(fabs(dacl_cl_weight(&c, 30000) - 0.1) < 1e-15);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argmax_first_on_ties),
        cmocka_unit_test(test_losses_match_their_parts),
        cmocka_unit_test(test_schedules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
