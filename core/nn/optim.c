/* SGD with momentum and coupled weight decay, and the poly learning rate. */
#include "dacl/nn.h"

#include <math.h>

void dacl_sgd_step(float *w, const float *g, float *buf, size_t n, float lr, float momentum,
                   float wd) {
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        float b = momentum * buf[i] + d;
        buf[i] = b;
        w[i] -= lr * b;
    }
}

double dacl_poly_lr(double base, long t, long t_max, double power) {
    if (t_max <= 0 || t >= t_max) return 0.0;
    return base * pow(1.0 - (double)t / (double)t_max, power);
}
