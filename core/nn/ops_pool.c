/* maxpool 2x2 and channel concatenation.
 * Dims: N batch, C channels, H, W input spatial (even), HW pixels. */
#include "dacl/nn.h"

#include <string.h>

void dacl_maxpool2x2_forward(float *out, uint8_t *idx, const float *in, int N, int C, int H, int W) {
    const int Ho = H / 2, Wo = W / 2;
    for (size_t nc = 0; nc < (size_t)N * C; nc++) {
        const float *x = in + nc * H * W;
        float *y = out + nc * Ho * Wo;
        uint8_t *k = idx + nc * Ho * Wo;
        for (int i = 0; i < Ho; i++) {
            const float *r0 = x + (size_t)(2 * i) * W, *r1 = r0 + W;
            for (int j = 0; j < Wo; j++) {
                /* first maximum wins on ties, as PyTorch */
                float m = r0[2 * j];
                uint8_t a = 0;
                if (r0[2 * j + 1] > m) m = r0[2 * j + 1], a = 1;
                if (r1[2 * j] > m) m = r1[2 * j], a = 2;
                if (r1[2 * j + 1] > m) m = r1[2 * j + 1], a = 3;
                y[i * Wo + j] = m;
                k[i * Wo + j] = a;
            }
        }
    }
}

/* Each pooled gradient goes to the one input its idx names: the other
 * three of the 2x2 block get -0.0 added, which leaves every float as it is
 * (-0 included), so the same bits as adding to the chosen one alone; as
 * adds of selected values the loop vectorises, where the store through the
 * index (a quarter of the time of BN's backward) did not. */
static void pool_bwd_rows(float *restrict r0, float *restrict r1, const float *restrict g,
                          const uint8_t *restrict a, int Wo) {
    for (int j = 0; j < Wo; j++) {
        float v = g[j];
        int s = a[j];
        float m0 = s == 0 ? v : -0.0f, m1 = s == 1 ? v : -0.0f, m2 = s == 2 ? v : -0.0f,
              m3 = s == 3 ? v : -0.0f;
        r0[2 * j] += m0;
        r0[2 * j + 1] += m1;
        r1[2 * j] += m2;
        r1[2 * j + 1] += m3;
    }
}

void dacl_maxpool2x2_backward(float *din, const float *dout, const uint8_t *idx, int N, int C,
                              int H, int W) {
    const int Ho = H / 2, Wo = W / 2;
    for (size_t nc = 0; nc < (size_t)N * C; nc++) {
        float *dx = din + nc * H * W;
        const float *dy = dout + nc * Ho * Wo;
        const uint8_t *k = idx + nc * Ho * Wo;
        for (int i = 0; i < Ho; i++)
            pool_bwd_rows(dx + (size_t)(2 * i) * W, dx + (size_t)(2 * i + 1) * W, dy + (size_t)i * Wo,
                          k + (size_t)i * Wo, Wo);
    }
}

void dacl_concat_forward(float *out, const float *a, const float *b, int N, int CA, int CB, int HW) {
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * (CA + CB) * HW;
        memcpy(o, a + (size_t)n * CA * HW, sizeof(float) * CA * HW);
        memcpy(o + (size_t)CA * HW, b + (size_t)n * CB * HW, sizeof(float) * CB * HW);
    }
}

void dacl_concat_backward(float *da, float *db, const float *dout, int N, int CA, int CB, int HW) {
    for (int n = 0; n < N; n++) {
        const float *g = dout + (size_t)n * (CA + CB) * HW;
        if (da) memcpy(da + (size_t)n * CA * HW, g, sizeof(float) * CA * HW);
        if (db) memcpy(db + (size_t)n * CB * HW, g + (size_t)CA * HW, sizeof(float) * CB * HW);
    }
}
