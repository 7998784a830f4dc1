/* Supervised and cross-pseudo-supervision terms, and the loss schedules. */
#include "dacl/method.h"

#include <math.h>

#include "dacl/nn.h"

double dacl_sup_loss(float *dlogits, const float *probs, const uint8_t *labels, int N, int NC,
                     int HW, float scale, double *ce, double *dice) {
    double c = dacl_ce_loss(dlogits, probs, labels, N, NC, HW, 0.5f * scale);
    double d = dacl_dice_loss(dlogits, probs, labels, N, NC, HW, 0.5f * scale);
    if (ce) *ce = c;
    if (dice) *dice = d;
    return 0.5 * (c + d);
}

double dacl_cross_loss(float *dlogits, const float *probs, const uint8_t *pseudo, int N, int NC,
                       int HW, float scale) {
    return dacl_ce_loss(dlogits, probs, pseudo, N, NC, HW, scale);
}

double dacl_cross_weight(const DaclJobConfig *cfg, long t) {
    double lam = cfg->method.lambda_cross;
    if (cfg->method.cross_schedule == DACL_SCHED_CONSTANT) return lam;
    /* SSL4MIS: 0.1 * sigmoid_rampup(iter // 150, 200); lambda_cross scales it,
     * so the default (1) is SSL4MIS's schedule exactly */
    double epoch = (double)(t / 150);
    double x = 1.0 - fmin(epoch, 200.0) / 200.0;
    return lam * 0.1 * exp(-5.0 * x * x);
}

double dacl_cl_weight(const DaclJobConfig *cfg, long t) {
    if (t < cfg->method.cl_warmup) return 0.0;
    double x = 1.0 - (double)t / (double)cfg->train.iterations;
    return cfg->method.lambda_cl * exp(-5.0 * x * x);
}
