/* Per-image and per-channel-range kernels behind the public ops, used by the
 * U-Net to split work across a DaclPool. Private to core/nn. */
#ifndef DACL_OPS_INTERNAL_H
#define DACL_OPS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dacl/nn.h"

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
/* dw/db accumulate (acc 1) or are overwritten (acc 0: the first image of a
 * gradient slot, which then needs no zeroing); so for every acc below */
void dacl_convt_image_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, int C, int H, int W, int OC, float *ws, int acc);

/* BatchNorm + activation on channels [c0, c1) of [N,C,HW] */
void dacl_bn_act_forward_train_ch(float *out, float *mean, float *rstd, const float *in,
                                  const float *gamma, const float *beta, float *running_mean,
                                  float *running_var, int N, int C, int HW, float momentum, float eps,
                                  float slope, int c0, int c1);
void dacl_bn_act_forward_eval_ch(float *out, const float *in, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, int N, int C,
                                 int HW, float eps, float slope, int c0, int c1);
/* Training-mode BN on channels [c0, c1) from per-row statistics stats
 * [N,C,H,2] (mean, M2 of each row of W values), merged per channel in a fixed
 * order (Chan et al.) so the result does not depend on threads: writes the
 * batch mean and 1/std, updates the running statistics, and gives the affine
 * scale = gamma*rstd, shift = beta - mean*scale. */
void dacl_bn_prepare_rows(float *mean, float *rstd, float *scale, float *shift, const float *stats,
                          const float *gamma, const float *beta, float *running_mean,
                          float *running_var, int N, int C, int H, int W, float momentum, float eps,
                          int c0, int c1);
/* Eval-mode affine from the running statistics. */
void dacl_bn_prepare_eval(float *scale, float *shift, const float *gamma, const float *beta,
                          const float *running_mean, const float *running_var, float eps, int c0,
                          int c1);
/* out = act(in * scale + shift) on channels [c0, c1); in [N,C,HW], image n of
 * out starts at out + n * out_nstride (so it can land inside a concat). */
void dacl_bn_apply(float *out, size_t out_nstride, const float *in, const float *scale,
                   const float *shift, int N, int C, int HW, float slope, int c0, int c1);
/* backward that takes the activation's derivative from the input and the
 * affine (beta) instead of reading the forward output. dbias (may be NULL)
 * [C] += the sum over the channel of the dx it writes: the bias gradient of
 * the convolution whose output `in` is, so that convolution's backward need
 * not read dx again for it. mask (may be NULL): dy is read through the
 * backward of a dropout of probability p with these keep bits ([N,C] planes,
 * see dacl_mask_words), as dacl_dropout_range would have written it, so dx
 * is the same to the bit without that pass over dy. */
void dacl_bn_act_backward_ch(float *dx, float *dgamma, float *dbeta, float *dbias, const float *dy,
                             const uint64_t *mask, float p, const float *in, const float *beta,
                             const float *mean, const float *rstd, const float *gamma, int N, int C,
                             int HW, float slope, int c0, int c1);

/* BatchNorm backward's per-image sums, taken by the input gradient of the
 * convolution that reads the BN's output (Winograd's, while the rows it
 * writes are in cache): for each channel c of the image the gradient g
 * (that convolution's dx) is read through dropout's backward (mask, ks)
 * and the activation's derivative at z = x * scale + shift as the forward
 * computed z, dz = g * act'(z) (* ks or 0), and sums[2c] = sum of dz,
 * sums[2c+1] = sum of dz * (x - mean) over the plane. */
typedef struct {
    const float *x;             /* [C,H,W] the BN's input (the conv output before it) */
    const uint64_t *mask;       /* [C] planes of dropout keep bits, or NULL */
    const float *scale, *shift; /* [C] the BN's affine, as the forward applied it */
    const float *mean;          /* [C] the batch mean */
    float ks, slope;            /* dropout's scale of the kept, LeakyReLU's slope */
    double *sums;               /* [C][2] out */
    float *xout; /* NULL, or [C,H,W] out: the BN's output as the convolution reads it,
                  * act(z) (* ks or 0), as team.c's xform_plane writes it, to the bit */
} DaclBnSums;

/* dacl_bn_act_backward_ch with the first pass's sums given per image
 * (sums [N][C][2] as DaclBnSums's, in image order): one pass over g */
void dacl_bn_act_backward_sums_ch(float *dx, float *dgamma, float *dbeta, float *dbias,
                                  const float *dy, const uint64_t *mask, float p, const float *in,
                                  const float *beta, const float *mean, const float *rstd,
                                  const float *gamma, int N, int C, int HW, float slope,
                                  const double *sums, int c0, int c1);

/* dacl_bn_act_backward_ch in place on g (no dropout), with g first getting
 * the backward of the 2x2 max-pool of its forward input added (pool_dy,
 * pool_idx [N,C,H/2,W/2] as dacl_maxpool2x2_backward takes them) plane by
 * plane as the sums read it: the same bits as dacl_maxpool2x2_backward on
 * g followed by dacl_bn_act_backward_ch, one pass over g less */
void dacl_bn_act_backward_pool_ch(float *g, float *dgamma, float *dbeta, float *dbias,
                                  const float *pool_dy, const uint8_t *pool_idx, const float *in,
                                  const float *beta, const float *mean, const float *rstd,
                                  const float *gamma, int N, int C, int H, int W, float slope, int c0,
                                  int c1);

/* dropout on elements [i0, i1) of out/in (the mask depends on the global index) */
void dacl_dropout_range(float *out, const float *in, size_t i0, size_t i1, float p, uint64_t key);

/* Dropout's keep decision for element i: a 24-bit hash uniform >= p. The
 * hash is two rounds of a 32-bit integer mixer (lowbias32) keyed by both
 * halves of the key: 32-bit multiplies vectorise with AVX2, where the
 * 64-bit splitmix64 did not and cost a tenth of a training step. */
static inline uint32_t dacl_mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}
static inline uint32_t dacl_dropout_threshold(float p) { return (uint32_t)(p * 16777216.0f); }
static inline int dacl_dropout_keep(uint64_t key, size_t i, uint32_t thresh) {
    uint32_t lo = (uint32_t)i ^ ((uint32_t)(i >> 32) * 0x9e3779b9U);
    uint32_t u = dacl_mix32(dacl_mix32(lo ^ (uint32_t)key) + (uint32_t)(key >> 32));
    return (u >> 8) >= thresh;
}
/* the scale of the elements dropout keeps (dacl_dropout_range's) */
static inline float dacl_dropout_scale(float p) { return 1.0f / (1.0f - p); }

/* Dropout's keep decisions kept as bits, drawn once in the training forward
 * and read by the backward instead of hashing again: a plane of HW elements
 * takes dacl_mask_words(HW) words, element i at bit i % 64 of word i / 64.
 * Planes start on a word, so 16 consecutive elements from a multiple of 16
 * have their bits in one word. */
static inline size_t dacl_mask_words(size_t HW) { return (HW + 63) / 64; }
/* the bits of a plane whose element i has the global index base + i */
void dacl_dropout_bits(uint64_t *bits, size_t HW, uint64_t key, size_t base, uint32_t thresh);

/* one image's conv3x3 backward with the input gradient split by channel:
 * channels [0, csplit) go to dx, [csplit, C) to dx2 (a concat's two parts) */
void dacl_conv_image_backward_split(float *dx, float *dx2, int csplit, float *dw, float *db,
                                    const float *dy, const float *x, const float *w, int C, int H,
                                    int W, int OC, float *ws, int acc);

/* Direct 3x3 convolutions (ops_conv_direct.c): nonzero where this CPU runs
 * them (AVX-512). Same contracts as the im2col path; no workspace. */
int dacl_conv3x3_direct_available(void);
/* 1 if the direct kernels are used for this layer's forward or backward (see ops_conv.c) */
int dacl_conv3x3_use_direct(int C, int H, int W, int OC, int backward);
void dacl_conv3x3_direct_forward_rows(float *y, const float *x, const float *w, const float *b, int C,
                                      int H, int W, int OC, int h0, int h1);
/* dx (may be NULL) channels [0, csplit), dx2 the rest, overwritten; dw accumulates (acc 0: overwritten) */
void dacl_conv3x3_direct_backward(float *dx, float *dx2, int csplit, float *dw, const float *dy,
                                  const float *x, const float *w, int C, int H, int W, int OC,
                                  int acc);
/* Winograd F(2x2,3x3) (ops_conv_wino.c), on the CPUs that run the direct
 * kernels. U: dacl_wino_u_floats(C, OC) floats of transformed weights,
 * written for output channels [oc0, oc1) by dacl_wino_weights and read by
 * both directions; scratch: dacl_wino_scratch_floats(kernel input channels:
 * C forward, OC backward) floats a thread. */
size_t dacl_wino_u_floats(int C, int OC);
size_t dacl_wino_scratch_floats(int CI);
void dacl_wino_weights(float *U, const float *w, int C, int OC, int oc0, int oc1);
/* y rows [h0, h1) of every output channel */
void dacl_wino_forward_rows(float *y, const float *x, const float *U, const float *b, int C, int H,
                            int W, int OC, int h0, int h1, float *scratch);
/* the input gradient, channels [0, csplit) to dx and the rest to dx2, overwritten */
void dacl_wino_backward_data(float *dx, float *dx2, int csplit, const float *dy, const float *U,
                             int C, int H, int W, int OC, float *scratch);
/* the same with every channel to dx, also taking BN's sums of dx (bs: see
 * DaclBnSums) two rows at a time as they are written; scratch:
 * dacl_wino_bn_scratch_floats(C, OC) floats */
size_t dacl_wino_bn_scratch_floats(int C, int OC);
void dacl_wino_backward_data_bn(float *dx, const float *dy, const float *U, int C, int H, int W,
                                int OC, float *scratch, const DaclBnSums *bs);
/* dw [OC,C,3,3] += the weight gradient of one image (acc 0: =), by
 * Winograd; scratch: dacl_wino_dw_scratch_floats(C, OC) floats */
size_t dacl_wino_dw_scratch_floats(int C, int OC);
void dacl_wino_backward_weights(float *dw, const float *dy, const float *x, int C, int H, int W,
                                int OC, float *scratch, int acc);
/* 1 if this layer's forward (backward = 0) or input gradient (1) takes Winograd */
int dacl_conv3x3_use_wino(int C, int H, int W, int OC, int backward);
/* 1 if its weight gradient does (never without its input gradient) */
int dacl_conv3x3_use_wino_dw(int C, int H, int W, int OC);
/* Winograd off for this model from now on (its tests compare the two) */
void dacl_unet_no_wino(DaclUNet *m);
/* dacl_conv_image_forward_rows_stats and dacl_conv_image_backward_split
 * for the layers that take Winograd, from U (whole layer) and a thread's
 * scratch; the backward's ws must also hold the im2col weight gradient's,
 * or Winograd's (wino_dw); bs (may be NULL, then dx2 must be): BN's sums of
 * dx, dacl_wino_backward_data_bn's */
void dacl_conv_image_forward_rows_wino(float *y, const float *x, const float *U, const float *b,
                                       int C, int H, int W, int OC, int h0, int h1, float *scratch,
                                       float *stats);
void dacl_conv_image_backward_wino(float *dx, float *dx2, int csplit, float *dw, float *db,
                                   const float *dy, const float *x, const float *U, int C, int H,
                                   int W, int OC, int wino_dw, float *ws, int acc,
                                   const DaclBnSums *bs);
/* A 3x3 forward's input read through BN + LeakyReLU + dropout (team.h's
 * XForm) without the transformed image ever being stored: the direct and
 * Winograd forwards transform the rows they are about to read into a ring
 * of `rows` rows a channel (ring [C][rows][W]), each row once a call, the
 * same float operations as the transform followed by dacl_dropout_range.
 * lo/hi: the rows the ring holds, [lo, hi) (start a call with both 0). */
typedef struct {
    const float *x;             /* the image's untransformed input [C,H,W] */
    const float *scale, *shift; /* [C]: z = x * scale + shift */
    float slope;                /* a = z > 0 ? z : z * slope */
    float ks;                   /* with mask: kept ? a * ks : 0 */
    const uint64_t *mask;       /* the image's keep bits, [C] planes of dacl_mask_words(H*W); NULL: none */
    float *ring;
    int rows, lo, hi;
} DaclXIn;
/* ring rows the two forwards need: DACL_XIN_ROWS_DIRECT a direct row, and
 * Winograd's DACL_XIN_ROWS_WINO for a tile of three block rows */
#define DACL_XIN_ROWS_DIRECT 4
#define DACL_XIN_ROWS_WINO 8
/* transform rows [a, b) clipped to the image into the ring (those it lacks) */
void dacl_xin_stage(DaclXIn *xin, int C, int H, int W, int a, int b);
/* dacl_conv_image_forward_rows_stats (direct shapes) and _wino from xin */
void dacl_conv_image_forward_rows_xin(float *y, DaclXIn *xin, const float *w, const float *b, int C,
                                      int H, int W, int OC, int h0, int h1, float *stats);
void dacl_conv_image_forward_rows_wino_xin(float *y, DaclXIn *xin, const float *U, const float *b,
                                           int C, int H, int W, int OC, int h0, int h1,
                                           float *scratch, float *stats);
void dacl_conv3x3_direct_forward_rows_xin(float *y, DaclXIn *xin, const float *w, const float *b,
                                          int C, int H, int W, int OC, int h0, int h1);
void dacl_wino_forward_rows_xin(float *y, DaclXIn *xin, const float *U, const float *b, int C,
                                int H, int W, int OC, int h0, int h1, float *scratch);
/* the im2col + sgemm path whatever the shape, for tests and benchmarks */
void dacl_conv3x3_im2col_forward_rows(float *y, const float *x, const float *w, const float *b, int C,
                                      int H, int W, int OC, int h0, int h1, float *ws);
void dacl_conv3x3_im2col_backward(float *dx, float *dx2, int csplit, float *dw, const float *dy,
                                  const float *x, const float *w, int C, int H, int W, int OC,
                                  float *ws, int acc);

#endif
