/* The co-training losses (method.md §2): the supervised term, cross pseudo
 * supervision, and the loss weights' schedules. The contrastive module
 * (method.md §3) joins this header when it lands.
 *
 * Dims: N images, NC classes, HW pixels; logits and probs [N,NC,HW], labels
 * and pseudo-labels [N,HW]. Loss functions return the loss value and
 * *accumulate* scale * dLoss/dlogits into dlogits when it is non-NULL. */
#ifndef DACL_METHOD_H
#define DACL_METHOD_H

#include <stdint.h>

#include "dacl/config.h"

/* 0.5 * (CE + Dice) on a labeled batch; ce and dice (may be NULL) get the terms. */
double dacl_sup_loss(float *dlogits, const float *probs, const uint8_t *labels, int N, int NC,
                     int HW, float scale, double *ce, double *dice);

/* CPS: CE of this model's probs against the other model's detached argmax. */
double dacl_cross_loss(float *dlogits, const float *probs, const uint8_t *pseudo, int N, int NC,
                       int HW, float scale);

/* lambda_cross at iteration t: constant, or SSL4MIS's sigmoid ramp
 * lambda_cross * 0.1 * exp(-5 (1 - min(floor(t/150), 200)/200)^2). */
double dacl_cross_weight(const DaclJobConfig *cfg, long t);

/* lambda_CL(t) = lambda_cl * exp(-5 (1 - t/t_max)^2), exactly 0 before
 * method.cl_warmup iterations. */
double dacl_cl_weight(const DaclJobConfig *cfg, long t);

#endif
