/* conv-bench: the U-Net's 3x3 convolutions one image at a time on one
 * thread, im2col + sgemm against the direct kernels and Winograd F(2x2,3x3):
 * GFLOP/s of forward and of backward (weight and input gradients; the input
 * gradient alone for direct and Winograd), best of --reps by the thread's
 * CPU time (robust on a shared machine), and the worst relative difference
 * between the paths' outputs. Winograd's figures count the direct
 * convolution's FLOPs (what it computes, not what it spends), with its weight
 * transform done once outside the timing (the U-Net does it once per op for
 * the whole batch).
 *
 *   conv-bench [--patch 256] [--reps 5] [--misalign K]
 *
 * Buffers start on a 64-byte boundary, as the U-Net's blocks do; --misalign 4
 * shifts them by 16 bytes, where glibc's malloc puts large blocks. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/nn/ops_internal.h"
#include "dacl/nn.h"

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* n floats starting `off` floats past a 64-byte boundary (malloc's large
 * blocks sit 16 bytes past a page: off = 4); ffree with the same off */
static float *falloc(size_t n, int off) {
    char *p = aligned_alloc(64, ((n + 16) * sizeof(float) + 63) / 64 * 64);
    if (!p) exit(1);
    return (float *)p + off;
}

static void ffree(float *v, int off) { free(v - off); }

static float *frand(DaclRng *r, size_t n, int off) {
    float *v = falloc(n, off);
    for (size_t i = 0; i < n; i++) v[i] = 2.0f * dacl_rng_uniform(r) - 1.0f;
    return v;
}

static double max_rel(const float *a, const float *b, size_t n) {
    double scale = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(a[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]));
    return scale > 0.0 ? worst / scale : worst;
}

int main(int argc, char **argv) {
    int patch = 256, reps = 5, misalign = 0;
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--patch")) patch = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--misalign")) misalign = atoi(argv[i + 1]);
    }
    openblas_set_num_threads(1);
    if (!dacl_conv3x3_direct_available()) {
        printf("conv-bench: no AVX-512 on this CPU, the direct kernels are not used\n");
        return 0;
    }
    /* (C, OC, level) of every 3x3 conv in the default U-Net, 1 in, 4 classes */
    static const int shapes[][3] = {{1, 16, 0},   {16, 16, 0},   {16, 32, 1},  {32, 32, 1},
                                    {32, 64, 2},  {64, 64, 2},   {64, 128, 3}, {128, 128, 3},
                                    {128, 256, 4}, {256, 256, 4}, {256, 128, 3}, {128, 64, 2},
                                    {64, 32, 1},  {32, 16, 0},   {16, 4, 0}};
    DaclRng rng;
    dacl_rng_seed(&rng, 7);
    printf("%5s %5s %5s | %25s | %18s | %13s | %13s | %9s %9s %9s %9s %9s %9s\n", "C", "OC", "HxW",
           "fwd GF/s im2col dir wino", "bwd GF/s im2col dir", "dw dir wino", "dx dir wino", "rel y",
           "rel dx", "rel dw", "wino y", "wino dx", "wino dw");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int C = shapes[s][0], OC = shapes[s][1], H = patch >> shapes[s][2], W = H;
        size_t HW = (size_t)H * W;
        const int m = misalign;
        float *x = frand(&rng, C * HW, m), *w = frand(&rng, (size_t)OC * C * 9, m);
        float *b = frand(&rng, OC, m), *dy = frand(&rng, OC * HW, m);
        float *y1 = falloc(OC * HW, m), *y2 = falloc(OC * HW, m);
        float *dx1 = falloc(C * HW, m), *dx2 = falloc(C * HW, m);
        float *dw1 = falloc((size_t)OC * C * 9, m), *dw2 = falloc((size_t)OC * C * 9, m);
        float *ws = falloc(dacl_conv2d_ws(C, H, W, 3), m);
        float *U = falloc(dacl_wino_u_floats(C, OC), 0);
        float *sc = falloc(dacl_wino_scratch_floats(C > OC ? C : OC), 0);
        float *scw = falloc(dacl_wino_dw_scratch_floats(C, OC), 0);
        float *dw3 = falloc((size_t)OC * C * 9, m);
        float *y3 = falloc(OC * HW, m), *dx3 = falloc(C * HW, m);
        dacl_wino_weights(U, w, C, OC, 0, OC);
        double best[8] = {1e30, 1e30, 1e30, 1e30, 1e30, 1e30, 1e30, 1e30};
        for (int r = 0; r < reps; r++) {
            double t = cpu_now();
            dacl_conv3x3_im2col_forward_rows(y1, x, w, b, C, H, W, OC, 0, H, ws);
            double t1 = cpu_now();
            dacl_conv3x3_direct_forward_rows(y2, x, w, b, C, H, W, OC, 0, H);
            double t2 = cpu_now();
            memset(dw1, 0, (size_t)OC * C * 9 * 4);
            memset(dw2, 0, (size_t)OC * C * 9 * 4);
            double t3 = cpu_now();
            dacl_conv3x3_im2col_backward(dx1, dx1, C, dw1, dy, x, w, C, H, W, OC, ws, 1);
            double t4 = cpu_now();
            dacl_conv3x3_direct_backward(dx2, dx2, C, dw2, dy, x, w, C, H, W, OC, 1);
            double t5 = cpu_now();
            dacl_conv3x3_direct_backward(NULL, NULL, C, dw2, dy, x, w, C, H, W, OC, 1);
            double t6 = cpu_now();
            memset(dw2, 0, (size_t)OC * C * 9 * 4);
            dacl_conv3x3_direct_backward(dx2, dx2, C, dw2, dy, x, w, C, H, W, OC, 1);
            best[4] = fmin(best[4], t6 - t5);
            double t7 = cpu_now();
            dacl_wino_forward_rows(y3, x, U, b, C, H, W, OC, 0, H, sc);
            double t8 = cpu_now();
            dacl_wino_backward_data(dx3, dx3, C, dy, U, C, H, W, OC, sc);
            double t9 = cpu_now();
            best[5] = fmin(best[5], t8 - t7), best[6] = fmin(best[6], t9 - t8);
            memset(dw3, 0, (size_t)OC * C * 9 * 4);
            double t10 = cpu_now();
            dacl_wino_backward_weights(dw3, dy, x, C, H, W, OC, scw, 1);
            best[7] = fmin(best[7], cpu_now() - t10);
            best[0] = fmin(best[0], t1 - t), best[1] = fmin(best[1], t2 - t1);
            best[2] = fmin(best[2], t4 - t3), best[3] = fmin(best[3], t5 - t4);
        }
        double gf = 2.0 * HW * C * OC * 9 * 1e-9;
        double dxdir = best[3] - best[4]; /* direct backward minus its weight gradient */
        printf("%5d %5d %5d | %8.1f %7.1f %7.1f | %8.1f %9.1f | %6.1f %6.1f | %6.1f %6.1f | %9.2e "
               "%9.2e %9.2e %9.2e %9.2e %9.2e\n",
               C, OC, H, gf / best[0], gf / best[1], gf / best[5], 2 * gf / best[2], 2 * gf / best[3],
               gf / best[4], gf / best[7], gf / dxdir, gf / best[6], max_rel(y1, y2, OC * HW),
               max_rel(dx1, dx2, C * HW), max_rel(dw1, dw2, (size_t)OC * C * 9),
               max_rel(y2, y3, OC * HW), max_rel(dx2, dx3, C * HW),
               max_rel(dw2, dw3, (size_t)OC * C * 9));
        float *bufs[] = {x, w, b, dy, y1, y2, dx1, dx2, dw1, dw2, ws, y3, dx3, dw3};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) ffree(bufs[i], m);
        ffree(U, 0), ffree(sc, 0), ffree(scw, 0);
    }
    return 0;
}
