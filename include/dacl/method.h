/* The co-training losses (method.md §2): the supervised term, cross pseudo
 * supervision, and the loss weights' schedules. The contrastive module
 * (method.md §3) follows them.
 *
 * Dims: N images, NC classes, HW pixels; logits and probs [N,NC,HW], labels
 * and pseudo-labels [N,HW]. Loss functions return the loss value and
 * *accumulate* scale * dLoss/dlogits into dlogits when it is non-NULL. */
#ifndef DACL_METHOD_H
#define DACL_METHOD_H

#include <stdint.h>

#include "dacl/config.h"
#include "dacl/nn.h"

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

/* ------------------------------------------- the contrastive module (§3) --
 *
 * Dims: N images, Cf feature channels, h x w feature map (HW = h*w), P = N*HW
 * feature pixels, HID = 256 hidden units, D = proj_dim, R rows = the pixels
 * embedded this iteration (grouped by class), K classes (NC of the dataset).
 * Embeddings are row-major [rows, D] and L2-normalised.
 *
 * A trainer iteration, after both U-Nets' forwards (softmax in probs[m]):
 *   per model m:
 *     dacl_contrast_classes(cls, y, L, probs[1-m], B, NC, H, W, fh, fw, phi, background);
 *     dacl_contrast_loss(cl, m, dacl_unet_feature(net[m], layer, ...), cls, B, iter,
 *                        lambda_cl(iter), &st[m]);    (0 in the warm-up: no gradient,
 *                                                      but the bank still fills)
 *   total += lambda_cl(iter) * st[m].loss; then, if every term is finite, per model:
 *     dacl_unet_backward(net[m], dlogits[m], dacl_contrast_dfeat(cl, m), layer);
 *     dacl_unet_sgd_step(...);
 *   and once: dacl_contrast_sgd_step(cl, lr, momentum, wd); dacl_contrast_bank_update(cl, iter);
 * dacl_contrast_loss zeroes its head's gradient itself (one loss per model
 * per iteration) and updates the head's BN running statistics: a trainer
 * that undoes a non-finite iteration restores dacl_head_bn_stats too and
 * skips the bank update. State for checkpoints: dacl_contrast_state_*. */

#define DACL_HEAD_HIDDEN 256
#define DACL_CL_MAX_CLASSES 256

/* The projection head, per pixel: Linear(Cf, HID) -> BatchNorm -> ReLU ->
 * Linear(HID, D) -> L2 normalisation. Parameters in PyTorch's
 * nn.Sequential(Linear, BatchNorm, ReLU, Linear) order: W1 [HID,Cf], b1 [HID],
 * gamma [HID], beta [HID], W2 [D,HID], b2 [D]; BN running statistics mean
 * [HID] then var [HID]. Training mode normalises with the statistics of all
 * P pixels of the batch (as a 1x1-conv head over the whole map), yet only the
 * rows asked for are embedded: the statistics come from the features' mean
 * and covariance (mean(z) = W1 mean(x) + b1, var(z_c) = w_c' Cov(x) w_c). */
typedef struct DaclHead DaclHead;

/* Planned once: batches of up to max_n images of hw pixels, up to max_rows
 * embedded rows, up to max_back rows with gradient, `threads` pool members. */
int dacl_head_create(DaclHead **out, int cf, int proj_dim, int max_n, int hw, int max_rows,
                     int max_back, int threads);
void dacl_head_free(DaclHead *h);
/* PyTorch defaults: W, b ~ U(+-1/sqrt(fan_in)) drawn in parameter order,
 * gamma 1, beta 0, running mean 0, var 1; gradients and momentum zeroed. */
void dacl_head_init(DaclHead *h, DaclRng *rng);
size_t dacl_head_num_params(const DaclHead *h);
float *dacl_head_params(DaclHead *h);
float *dacl_head_grads(DaclHead *h);
float *dacl_head_momentum(DaclHead *h);
float *dacl_head_bn_stats(DaclHead *h);           /* running mean [HID], var [HID] */
size_t dacl_head_bn_stats_count(const DaclHead *h); /* 2 * HID */
void dacl_head_zero_grad(DaclHead *h);
void dacl_head_sgd_step(DaclHead *h, float lr, float momentum, float wd);

/* Embeds rows[0..nrows) (pixel index n*HW + i) of feat [N,Cf,HW] into
 * dacl_head_embeddings [nrows, D]. train: BN batch statistics over all N*HW
 * pixels (running statistics updated); else the running statistics. feat and
 * rows must stay unchanged until dacl_head_backward. */
int dacl_head_forward(DaclHead *h, const float *feat, int N, int HW, const int32_t *rows, int nrows,
                      int train, DaclPool *pool);
const float *dacl_head_embeddings(const DaclHead *h);
/* Backward of the last (training) forward for a loss whose gradient is
 * demb [nb, D] on the embedded rows which[0..nb) (indices into that
 * forward's rows) and zero on the others. dfeat [N,Cf,HW] is overwritten:
 * every pixel gets gradient through the batch statistics. Parameter
 * gradients accumulate (b1's is exactly zero behind a training BN). */
int dacl_head_backward(DaclHead *h, float *dfeat, const int32_t *which, const float *demb, int nb,
                       DaclPool *pool);

/* Density (Eq. 3-5) of each query row x[i] (nq x D) against the set
 * [y1 (n1 x D); y2 (n2 x D)]: per k in knn[0..nk) (ascending) the mean of
 * the k largest dot products (cosines: rows are unit-norm), averaged over the
 * scales. Query i is the set's row self_at + i and is left out (self_at < 0:
 * none); the set must keep at least knn[nk-1] other rows. ws: floats from
 * dacl_density_ws for the pool's member count. */
size_t dacl_density_ws(int set_rows, int kmax, int threads);
void dacl_density(float *dens, const float *x, int nq, const float *y1, int n1, const float *y2,
                  int n2, int self_at, int d, const int *knn, int nk, float *ws, DaclPool *pool);

/* The loss of one class (method.md §3) for anchors m [q, D], the centre c [D]
 * and negatives neg [j, D] (j >= 1), temperature tau: s_i = m_i.c/tau,
 * s_ij = m_i.n_j/tau, every log-sum-exp max-subtracted.
 *   NONE:     mean_i -log(e^s_i / (e^s_i + sum_j e^s_ij))
 *   WEIGHTED: sum_i w_i * (the same), w = softmax_i(m_i.c) detached
 *   LITERAL:  mean_i -log(w_i e^s_i / sum_j e^s_ij), w_i = q softmax_i(m_i.c)
 * Returns the loss; dm (may be NULL) [q, D] is overwritten with
 * scale * dLoss/dm (c and neg detached). ws: dacl_class_loss_ws(q, j) floats. */
size_t dacl_class_loss_ws(int q, int j);
double dacl_class_loss(float *dm, const float *m, int q, const float *c, const float *neg, int j,
                       int d, double tau, DaclPositiveness mode, float scale, float *ws);

/* The class memory bank: per class a FIFO ring of `capacity` embeddings of
 * dim floats with their densities (NaN where undefined). Its state (counts,
 * next write positions, data, densities) is part of dacl_contrast_state_*. */
typedef struct DaclBank DaclBank;
int dacl_bank_create(DaclBank **out, int classes, int capacity, int dim);
void dacl_bank_free(DaclBank *b);
void dacl_bank_clear(DaclBank *b);
/* Appends emb [n, dim] (dens [n] may be NULL: NaN) to class cls; the oldest
 * entries fall out once it holds capacity. */
void dacl_bank_push(DaclBank *b, int cls, const float *emb, const float *dens, int n);
int dacl_bank_count(const DaclBank *b, int cls);
/* [capacity, dim] ring storage: rows [0, count) are the entries (ring order) */
const float *dacl_bank_data(const DaclBank *b, int cls);
const float *dacl_bank_density(const DaclBank *b, int cls);
/* the slot the next push writes */
int dacl_bank_position(const DaclBank *b, int cls);
int dacl_bank_capacity(const DaclBank *b);
/* changes whenever class cls changes (push, clear, restore): a key for
 * caching what is derived from its entries */
uint64_t dacl_bank_version(const DaclBank *b, int cls);

/* Per-pixel classes at feature resolution, [N, fh*fw]: nearest down-sampling
 * (source index floor(i * H / fh), PyTorch's mode 'nearest'); images n < L
 * take the label (>= NC: ignored), the others the argmax of the other model's
 * probs [N,NC,H,W], kept where its max probability exceeds phi. Ignored pixels
 * and, unless background, class 0 get 255. labels [L,H,W]. */
void dacl_contrast_classes(uint8_t *cls, const uint8_t *labels, int L, const float *probs_other, int N,
                           int NC, int H, int W, int fh, int fw, double phi, int background);

/* What a user watches, per model and iteration. */
typedef struct {
    double loss;           /* L_CL: mean over the classes that contributed (0: none did) */
    int classes_used;      /* classes that contributed */
    double anchor_density; /* mean density of the anchors (0 when not computed: sampling random) */
    double key_density;    /* mean density of the positive keys (batch and bank) */
    int pixels[DACL_CL_MAX_CLASSES];    /* class pixels in the batch at feature resolution */
    int anchors[DACL_CL_MAX_CLASSES];   /* anchors used (0: the class contributed nothing) */
    int bank_fill[DACL_CL_MAX_CLASSES]; /* bank entries when the loss was computed */
} DaclContrastStats;

typedef struct DaclContrast DaclContrast;

/* The feature map the head reads for `layer` (DACL_FEAT_*): channels and size. */
int dacl_contrast_feature_shape(const DaclUNetConfig *net, int layer, int H, int W, int *c, int *h,
                                int *w);
/* The method fields this module cannot run with (granularity = prototype, for
 * now) as DACL_EINVAL naming the field; 0 otherwise. */
int dacl_contrast_check_config(const DaclJobConfig *cfg);
/* One head per model (models = 1 or 2), one shared bank, every buffer planned
 * for batches of max_n images of feature maps feat_c x fh x fw and `classes`
 * classes; pool (may be NULL) is used by every call. */
int dacl_contrast_create(DaclContrast **out, const DaclJobConfig *cfg, int models, int classes,
                         int feat_c, int max_n, int fh, int fw, DaclPool *pool);
void dacl_contrast_free(DaclContrast *c);
/* Initialises the heads in model order from rng and empties the bank. */
void dacl_contrast_init(DaclContrast *c, DaclRng *rng);
DaclHead *dacl_contrast_head(DaclContrast *c, int m);
DaclBank *dacl_contrast_bank(DaclContrast *c);

/* Model m's loss at iteration iter (randomness keyed by train.seed, iter, m
 * and the class, so a resumed run draws the same): feat [N,Cf,fh,fw] is the
 * U-Net's feature map, cls from dacl_contrast_classes. Zeroes then
 * accumulates scale * dL/dparams into the head's gradient and writes
 * scale * dL/dfeat for dacl_contrast_dfeat (scale = 0: no backward). st may
 * be NULL. */
int dacl_contrast_loss(DaclContrast *c, int m, const float *feat, const uint8_t *cls, int N, long iter,
                       float scale, DaclContrastStats *st);
/* [N,Cf,fh,fw] gradient for dacl_unet_backward, or NULL when the last loss
 * of m had scale 0 or no class contributed. */
const float *dacl_contrast_dfeat(const DaclContrast *c, int m);
/* SGD on every head (dacl_sgd_step). */
void dacl_contrast_sgd_step(DaclContrast *c, float lr, float momentum, float wd);
/* Pushes, per class, at most bank_insert embeddings drawn at random from this
 * iteration's batches of every model whose loss ran, then forgets them. */
void dacl_contrast_bank_update(DaclContrast *c, long iter);

/* Checkpoint state (heads: parameters, momentum, BN statistics; the bank),
 * little-endian:
 *   u32 version (1) | u32 models, classes, capacity, dim, feat_c | u64 head params, bn stats
 *   | per model: f32 params | f32 momentum | f32 bn stats
 *   | per class: i32 count, i32 position | f32 data [classes, capacity, dim]
 *   | f32 densities [classes, capacity]
 * read refuses a state whose shapes differ (DACL_EFORMAT). */
#define DACL_CONTRAST_STATE_VERSION 1
size_t dacl_contrast_state_bytes(const DaclContrast *c);
int dacl_contrast_state_write(DaclContrast *c, void *buf, size_t n);
int dacl_contrast_state_read(DaclContrast *c, const void *buf, size_t n);

/* Inspection of model m's last loss, for tests and tools. Rows are the
 * embedded pixels grouped by class: class k owns rows [row0, row0 + nrows). */
typedef struct {
    int active;                 /* contributed to the loss */
    int row0, nrows;            /* its rows */
    const int32_t *anchors;     /* [nanchors] rows, ascending density (density sampling) */
    int nanchors;
    const int32_t *keys;        /* [nkeys] rows, descending density */
    int nkeys;
    const int32_t *bank_keys;   /* [nbank_keys] bank slots, descending bank density */
    int nbank_keys;
    const float *bank_density;  /* [bank count] against the bank's current entries (NULL: not computed) */
    const float *centre;        /* [D] */
    const int32_t *negatives;   /* [nneg] rows of other classes */
    int nneg;
    double loss;
} DaclContrastClass;
const int32_t *dacl_contrast_rows(const DaclContrast *c, int m, int *nrows); /* [R] pixel indices */
const float *dacl_contrast_embeddings(const DaclContrast *c, int m);        /* [R, D] */
const float *dacl_contrast_densities(const DaclContrast *c, int m);        /* [R] (NaN: none) */
int dacl_contrast_class_info(const DaclContrast *c, int m, int cls, DaclContrastClass *out);

#endif
