/* Per-image and per-channel-range kernels behind the public ops, used by the
 * U-Net to split work across a DaclPool. Private to core/nn. */
#ifndef DACL_OPS_INTERNAL_H
#define DACL_OPS_INTERNAL_H

#include <stddef.h>

/* Output rows of a band for conv3x3 im2col (see ops_conv.c). */
int dacl_conv_band_rows(int C, int H, int W);

/* one image: y [OC,H,W] rows [h0,h1) from x [C,H,W]; ws as dacl_conv2d_ws */
void dacl_conv_image_forward_rows(float *y, const float *x, const float *w, const float *b, int C,
                                  int H, int W, int OC, int K, int h0, int h1, float *ws);
/* the same, also writing stats [OC,H,2]: each output row's mean and sum of
 * squared deviations (for dacl_bn_act_forward_rows) */
void dacl_conv_image_forward_rows_stats(float *y, const float *x, const float *w, const float *b,
                                        int C, int H, int W, int OC, int K, int h0, int h1, float *ws,
                                        float *stats);
/* one image: dx (may be NULL) overwritten, dw/db accumulate */
void dacl_conv_image_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                              const float *w, int C, int H, int W, int OC, int K, float *ws);
void dacl_convt_image_forward(float *y, const float *x, const float *w, const float *b, int C, int H,
                              int W, int OC, float *ws);
void dacl_convt_image_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, int C, int H, int W, int OC, float *ws);

/* BatchNorm + activation on channels [c0, c1) of [N,C,HW] */
void dacl_bn_act_forward_train_ch(float *out, float *mean, float *rstd, const float *in,
                                  const float *gamma, const float *beta, float *running_mean,
                                  float *running_var, int N, int C, int HW, float momentum, float eps,
                                  float slope, int c0, int c1);
void dacl_bn_act_forward_eval_ch(float *out, const float *in, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, int N, int C,
                                 int HW, float eps, float slope, int c0, int c1);
/* Training-mode BN + activation on channels [c0, c1) from per-row statistics
 * stats [N,C,H,2] (mean, M2 of each row of W values), combined per channel in
 * a fixed order (Chan et al.), so the result does not depend on threads. */
void dacl_bn_act_forward_rows(float *out, float *mean, float *rstd, const float *in,
                              const float *stats, const float *gamma, const float *beta,
                              float *running_mean, float *running_var, int N, int C, int H, int W,
                              float momentum, float eps, float slope, int c0, int c1);
/* backward that takes the activation's derivative from the input and the
 * affine (beta) instead of reading the forward output */
void dacl_bn_act_backward_ch(float *dx, float *dgamma, float *dbeta, const float *dy,
                             const float *in, const float *beta, const float *mean, const float *rstd,
                             const float *gamma, int N, int C, int HW, float slope, int c0, int c1);

/* dropout on elements [i0, i1) of out/in (the mask depends on the global index) */
void dacl_dropout_range(float *out, const float *in, size_t i0, size_t i1, float p, uint64_t key);

#endif
