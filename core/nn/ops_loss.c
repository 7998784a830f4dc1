/* softmax, cross-entropy and the SSL4MIS soft Dice loss.
 * Dims: N batch, NC classes, HW pixels; probs and logits [N,NC,HW],
 * labels [N,HW] (uint8 class indices). */
#include "dacl/nn.h"

#include <math.h>
#include <stdlib.h>

void dacl_softmax_forward(float *probs, const float *logits, int N, int NC, int HW) {
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * NC * HW;
        float *p = probs + (size_t)n * NC * HW;
        for (int i = 0; i < HW; i++) {
            float m = z[i];
            for (int k = 1; k < NC; k++) m = fmaxf(m, z[(size_t)k * HW + i]);
            float s = 0.0f;
            for (int k = 0; k < NC; k++) {
                float e = expf(z[(size_t)k * HW + i] - m);
                p[(size_t)k * HW + i] = e;
                s += e;
            }
            float inv = 1.0f / s;
            for (int k = 0; k < NC; k++) p[(size_t)k * HW + i] *= inv;
        }
    }
}

double dacl_ce_loss(float *dlogits, const float *probs, const uint8_t *labels, int N, int NC,
                    int HW, float scale) {
    size_t count = 0;
    double loss = 0.0;
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * NC * HW;
        const uint8_t *t = labels + (size_t)n * HW;
        for (int i = 0; i < HW; i++) {
            if (t[i] >= NC) continue;
            /* probabilities underflow to 0 only for hopeless pixels; clamp so
             * the loss stays finite (PyTorch uses log_softmax, same limit),
             * but let a NaN through: fmax would hide it */
            double pv = p[(size_t)t[i] * HW + i];
            loss -= log(isnan(pv) ? pv : fmax(pv, 1e-30));
            count++;
        }
    }
    if (count == 0) return 0.0;
    if (dlogits) {
        float g = scale / (float)count;
        for (int n = 0; n < N; n++) {
            const float *p = probs + (size_t)n * NC * HW;
            float *d = dlogits + (size_t)n * NC * HW;
            const uint8_t *t = labels + (size_t)n * HW;
            for (int i = 0; i < HW; i++) {
                if (t[i] >= NC) continue;
                for (int k = 0; k < NC; k++)
                    d[(size_t)k * HW + i] += g * (p[(size_t)k * HW + i] - (t[i] == k ? 1.0f : 0.0f));
            }
        }
    }
    return loss / (double)count;
}

double dacl_dice_loss(float *dlogits, const float *probs, const uint8_t *labels, int N, int NC,
                      int HW, float scale) {
    const double smooth = 1e-5;
    /* per class: sum pt, sum p^2, sum t, then the two gradient coefficients */
    double *acc = calloc((size_t)NC * 5, sizeof(double));
    if (!acc) return NAN;
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * NC * HW;
        const uint8_t *t = labels + (size_t)n * HW;
        for (int k = 0; k < NC; k++) {
            const float *pk = p + (size_t)k * HW;
            double pt = 0.0, pp = 0.0, tt = 0.0;
            for (int i = 0; i < HW; i++) {
                pp += (double)pk[i] * pk[i];
                if (t[i] == k) {
                    pt += pk[i];
                    tt += 1.0;
                }
            }
            acc[k * 3] += pt;
            acc[k * 3 + 1] += pp;
            acc[k * 3 + 2] += tt;
        }
    }
    double loss = 0.0;
    for (int k = 0; k < NC; k++)
        loss += 1.0 - (2.0 * acc[k * 3] + smooth) / (acc[k * 3 + 1] + acc[k * 3 + 2] + smooth);
    loss /= NC;
    if (dlogits) {
        /* dL/dp_k(x) = -(1/NC) * (2 t_k(x) D - 2 p_k(x) (2I + s)) / D^2, D = Z+Y+s;
         * then through the softmax: dz_k = p_k (g_k - sum_j p_j g_j). */
        float *ca = (float *)(acc + (size_t)NC * 3); /* 2*NC floats fit in 2*NC doubles */
        for (int k = 0; k < NC; k++) {
            double I = acc[k * 3], D = acc[k * 3 + 1] + acc[k * 3 + 2] + smooth;
            float a = (float)(-2.0 / (NC * D)), b = (float)(2.0 * (2.0 * I + smooth) / (NC * D * D));
            ca[k * 2] = a;     /* coefficient of t_k */
            ca[k * 2 + 1] = b; /* coefficient of p_k */
        }
        for (int n = 0; n < N; n++) {
            const float *p = probs + (size_t)n * NC * HW;
            float *d = dlogits + (size_t)n * NC * HW;
            const uint8_t *t = labels + (size_t)n * HW;
            for (int i = 0; i < HW; i++) {
                float g[256], dot = 0.0f;
                for (int k = 0; k < NC; k++) {
                    float pk = p[(size_t)k * HW + i];
                    g[k] = (t[i] == k ? ca[k * 2] : 0.0f) + ca[k * 2 + 1] * pk;
                    dot += pk * g[k];
                }
                for (int k = 0; k < NC; k++) {
                    float pk = p[(size_t)k * HW + i];
                    d[(size_t)k * HW + i] += scale * pk * (g[k] - dot);
                }
            }
        }
    }
    free(acc);
    return loss;
}

void dacl_argmax(uint8_t *pseudo, const float *logits, int N, int NC, int HW) {
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * NC * HW;
        uint8_t *p = pseudo + (size_t)n * HW;
        for (int i = 0; i < HW; i++) {
            float best = z[i];
            int k = 0;
            for (int c = 1; c < NC; c++)
                if (z[(size_t)c * HW + i] > best) best = z[(size_t)c * HW + i], k = c;
            p[i] = (uint8_t)k;
        }
    }
}
