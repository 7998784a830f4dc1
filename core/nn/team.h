/* Ops run on a thread team (private to core/nn).
 *
 * Every op is cut into chunks that write disjoint memory: convolutions by
 * image and band of rows (forward) or by group of images (backward), BN by
 * channel, element-wise ops by range. Each member owns an equal run of the
 * chunks and takes them from its front; a member that runs out takes the
 * last chunk left in another member's run. So a member that the system
 * preempts (an HTTP answer, another process) does not hold the others up at
 * the end of every op, and which member runs a chunk never changes a bit.
 *
 * Weight gradients of convolutions go to one slot per group of consecutive
 * images (as many groups as the batch has images, fewer for layers so large
 * that 16 MiB of slots would not hold them: a number fixed by the layer and
 * the batch) and are summed into the model's gradient in group order after
 * the op: results depend on neither the thread count nor timing. The fork-
 * join does not wait for a member that has not started when the others are
 * done (dacl_pool_run_dynamic).
 *
 * An XForm lets a convolution read act(x * scale + shift) (BN + LeakyReLU,
 * optionally followed by dropout) computed one image at a time into a
 * per-member buffer, so that tensor never has to be stored for the batch;
 * only dropout's keep decisions are, as bits, drawn once in the forward.
 * The forwards that take the direct or Winograd kernels do not even store
 * the image: the kernel transforms the few rows it is about to read into
 * a ring at the start of that buffer (DaclXIn), from the keep bits drawn
 * for the whole layer first.
 *
 * Layers that take Winograd (dacl_conv3x3_use_wino) have their weights
 * transformed once per op into the shared wu, split by output channel,
 * before the op itself runs; its per-member scratch is the workspace. */
#ifndef DACL_TEAM_H
#define DACL_TEAM_H

#include <stddef.h>
#include <stdint.h>

#include "dacl/nn.h"

typedef struct {
    DaclPool *pool; /* NULL: the calling thread alone */
    int n;          /* members */
    float *ws;      /* n workspaces of ws_floats (im2col, convT) */
    size_t ws_floats;
    float *xbuf;    /* n transformed-input images of xbuf_floats */
    size_t xbuf_floats;
    uint64_t *xmask; /* n: the dropout bits of the image in the member's xbuf (xmask_words) */
    size_t xmask_words;
    float *wu;      /* Winograd weights of the layer at hand, shared (wu_floats) */
    size_t wu_floats;
    float *grads;   /* the model's gradient block */
    size_t nparams;
    float *gslots;  /* weight-gradient slots of the layer at hand (gslot_floats) */
    size_t gslot_floats;
    struct TeamRun *runs; /* n members' runs of chunks (team.c) */
    int *ximg;      /* n: which image each member's xbuf holds, -1 none */
    int no_fold;    /* 1: forwards materialise an XForm's input in xbuf (tests compare) */
} Team;

/* Floats of the gradient slots for a layer of `len` parameters at batch N:
 * size a Team's gslots for the largest layer and batch. */
size_t team_grad_slot_floats(size_t len, int N);
/* Allocate / free the per-member run and image bookkeeping (n members). */
int team_alloc_runs(Team *t);
void team_free_runs(Team *t);

typedef struct {
    const float *scale, *shift; /* [C] */
    float slope;                /* LeakyReLU slope */
    float p;                    /* dropout probability, 0 = none */
    uint64_t key;               /* dropout key; element index is global in [N,C,HW] */
    /* with p > 0: the keep bits, [N,C] planes of dacl_mask_words(H*W) words
     * (ops_internal.h). A forward (mask_ready 0) draws them from key and
     * stores them here (NULL: does not); a backward (mask_ready 1) reads
     * them instead of drawing them again. */
    uint64_t *mask;
    int mask_ready;
} XForm;

/* y [N,OC,H,W] = conv3x3(x or xform(x)); rowstats [N,OC,H,2] when non-NULL */
void team_conv_fwd(Team *t, float *y, const float *x, const XForm *xf, const float *w,
                   const float *b, int N, int C, int H, int W, int OC, float *rowstats);
/* db for a convolution whose bias gradient another op sums (team_bn_bwd's
 * dbias, for the convolutions a BatchNorm follows) */
#define TEAM_BIAS_DONE ((size_t)-1)

/* dw/db: offsets of the weight and bias in the gradient block (db may be
 * TEAM_BIAS_DONE). dx (may be NULL) gets channels [0, csplit), dx2 channels
 * [csplit, C) (csplit = C: all to dx). x as given to the forward, with the
 * same xform. */
void team_conv_bwd(Team *t, float *dx, float *dx2, int csplit, size_t dw, size_t db, const float *dy,
                   const float *x, const XForm *xf, const float *w, int N, int C, int H, int W, int OC);
/* team_conv_bwd with every channel to dx, where xf is the BN (and
 * LeakyReLU, and dropout with its mask_ready bits) whose backward reads dx
 * next: if the layer's input gradient takes Winograd, it also writes that
 * BN's per-image sums (DaclBnSums, from x and the batch mean `mean`) to
 * sums [N][C][2], each image's by whichever member runs it, and returns 1
 * (team_bn_bwd then skips its first pass); else 0, sums untouched. With
 * the sums, an image's input gradient runs before its weight gradient and
 * writes xform(x) for it as it reads x (no separate pass over x). */
int team_conv_bwd_bnsums(Team *t, float *dx, size_t dw, size_t db, const float *dy, const float *x,
                         const XForm *xf, const float *w, int N, int C, int H, int W, int OC,
                         double *sums, const float *mean);
/* y image n at y + n * y_nstride, [OC,2H,2W] */
void team_convt_fwd(Team *t, float *y, size_t y_nstride, const float *x, const float *w,
                    const float *b, int N, int C, int H, int W, int OC);
void team_convt_bwd(Team *t, float *dx, size_t dw, size_t db, const float *dy, const float *x,
                    const float *w, int N, int C, int H, int W, int OC);

/* BN statistics and affine (train: from rowstats, updating running stats) */
void team_bn_prepare(Team *t, int train, float *mean, float *rstd, float *scale, float *shift,
                     const float *rowstats, const float *gamma, const float *beta, float *rmean,
                     float *rvar, int N, int C, int H, int W);
/* pool (may be NULL) [N,C,H/2,W/2] and idx (its argmax, as
 * dacl_maxpool2x2_forward's): also out's 2x2 max-pool, each plane pooled
 * right after it is written, while it is in cache */
void team_bn_apply(Team *t, float *out, size_t out_nstride, const float *in, const float *scale,
                   const float *shift, int N, int C, int H, int W, float slope, float *pool,
                   uint8_t *idx);
/* in place on g; dgamma/dbeta/dbias: offsets in the gradient block, dbias
 * (TEAM_BIAS_DONE: none) that of the bias of the convolution that produced
 * c, which gets the sum of the gradient written to g. mask (may be NULL):
 * g is the gradient of a dropout of probability p with these keep bits
 * (XForm's), whose backward is applied to g as it is read. pool_dy (may be
 * NULL; then mask must be): g first gets the backward of a 2x2 max-pool of
 * c's BN output added, pool_dy and pool_idx as team_pool_bwd's dy and idx,
 * rows of W, each plane as the BN reads it (team_pool_bwd fused in). sums
 * (may be NULL; not with pool_dy): the first pass's per-image sums, as
 * team_conv_bwd_bnsums wrote them, summed in image order instead. */
void team_bn_bwd(Team *t, float *g, size_t dgamma, size_t dbeta, size_t dbias, const uint64_t *mask,
                 float p, const float *c, const float *beta, const float *mean, const float *rstd,
                 const float *gamma, int N, int C, int HW, float slope, const float *pool_dy,
                 const uint8_t *pool_idx, int W, const double *sums);

void team_add(Team *t, float *y, const float *x, size_t n);

void team_sgd(Team *t, float *w, const float *g, float *buf, size_t n, float lr, float momentum,
              float wd);

#endif
