/* The neural-network engine: random numbers, ops as forward/backward pairs,
 * the SSL4MIS 2D U-Net and SGD.
 *
 * Dims legend used throughout: N batch, C input channels, OC output
 * channels, H height, W width, HW = H*W, K kernel size, NC classes.
 * Every tensor is float32 in NCHW order (W fastest).
 *
 * Conventions (llm.c style):
 * - forward writes its output; backward *accumulates* (+=) into parameter
 *   gradients (dw, db, dgamma, dbeta). Input gradients (din) are overwritten
 *   unless the function says "accumulates".
 * - any pointer may alias nothing else unless the function says so.
 * - workspaces are caller-owned; sizes come from the matching *_ws function. */
#ifndef DACL_NN_H
#define DACL_NN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ RNG -- */

/* xoshiro256** seeded through splitmix64: fast, 2^256 period, and its whole
 * state is four words, so checkpoints can store it exactly. */
typedef struct {
    uint64_t s[4];
} DaclRng;

void dacl_rng_seed(DaclRng *r, uint64_t seed);
uint64_t dacl_rng_next(DaclRng *r);
/* uniform in [0, 1) with 24 (float) or 53 (double) random bits */
float dacl_rng_uniform(DaclRng *r);
double dacl_rng_uniform_double(DaclRng *r);
/* uniform integer in [0, n), unbiased (Lemire) */
uint32_t dacl_rng_below(DaclRng *r, uint32_t n);
/* standard normal (Box-Muller on two draws) */
double dacl_rng_normal(DaclRng *r);
/* splitmix64 finaliser: a counter-based generator for dropout masks, so a
 * mask is a pure function of (key, index) and needs no storage. */
uint64_t dacl_hash64(uint64_t x);

/* -------------------------------------------------------------- threads -- */

/* A fork-join team: dacl_pool_run calls fn(ctx, tid, nthreads) on every
 * member (tid 0 is the caller) and returns when all are done. Creating one
 * sets OpenBLAS to a single thread: the engine parallelises above BLAS. */
typedef struct DaclPool DaclPool;
int dacl_pool_create(DaclPool **out, int threads);
void dacl_pool_free(DaclPool *p);
int dacl_pool_threads(const DaclPool *p); /* 1 for NULL */
void dacl_pool_run(DaclPool *p, void (*fn)(void *ctx, int tid, int nthreads), void *ctx);
/* The same for an fn whose members share its work out among themselves as
 * they come (any member may end up doing all of it): returns once fn has
 * returned on the caller and on every member that started it; a member the
 * system has not run by then skips the job instead of being waited for. */
void dacl_pool_run_dynamic(DaclPool *p, void (*fn)(void *ctx, int tid, int nthreads), void *ctx);
/* A pool of `threads` (the caller and threads - 1 of its own) plus `lent`
 * members [threads, threads + lent) that are other threads lending
 * themselves while they have nothing else to do (dacl_pool_help): a dynamic
 * job's work is shared with whoever is lent at the time; a static job runs
 * the lent members' shares on the caller. */
int dacl_pool_create_lent(DaclPool **out, int threads, int lent);
/* Runs p's dynamic jobs as lent member tid until *stop is set (then wake
 * p with dacl_pool_wake): returns between jobs, never inside one. */
void dacl_pool_help(DaclPool *p, int tid, const atomic_int *stop);
void dacl_pool_wake(DaclPool *p);
/* The contiguous share [begin, end) of `total` items for member tid. */
void dacl_split(int total, int tid, int nthreads, int *begin, int *end);

/* ------------------------------------------------------------------ ops -- */

/* conv2d, K x K (K = 1 or 3), stride 1, padding K/2, with bias.
 * in [N,C,H,W], w [OC,C,K,K], b [OC], out [N,OC,H,W].
 * ws: conv2d_ws(C,H,W,K) floats (the im2col matrix of one image). */
size_t dacl_conv2d_ws(int C, int H, int W, int K);
void dacl_conv2d_forward(float *out, const float *in, const float *w, const float *b, int N, int C,
                         int H, int W, int OC, int K, float *ws);
/* din (may be NULL: not needed) [N,C,H,W] overwritten; dw, db accumulate. */
void dacl_conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, int N, int C, int H, int W, int OC, int K, float *ws);

/* transposed conv, kernel 2, stride 2 (PyTorch ConvTranspose2d(C, OC, 2, 2)).
 * in [N,C,H,W], w [C,OC,2,2], b [OC], out [N,OC,2H,2W]; ws: convt2x2_ws floats. */
size_t dacl_convt2x2_ws(int OC, int H, int W);
void dacl_convt2x2_forward(float *out, const float *in, const float *w, const float *b, int N,
                           int C, int H, int W, int OC, float *ws);
void dacl_convt2x2_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                            const float *w, int N, int C, int H, int W, int OC, float *ws);

/* BatchNorm2d over [N,C,HW] followed by LeakyReLU(slope) (slope 1 = no
 * activation). Training mode: batch statistics (biased variance), saves
 * mean[C] and rstd[C], updates running_mean/var (unbiased variance) with
 * `momentum` when they are non-NULL. Eval mode uses the running statistics. */
void dacl_bn_act_forward_train(float *out, float *mean, float *rstd, const float *in,
                               const float *gamma, const float *beta, float *running_mean,
                               float *running_var, int N, int C, int HW, float momentum, float eps,
                               float slope);
void dacl_bn_act_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                              const float *running_mean, const float *running_var, int N, int C,
                              int HW, float eps, float slope);
/* dx may alias dy (in place). `out` is the forward output (its sign gives
 * the LeakyReLU derivative); `in` the forward input. */
void dacl_bn_act_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                          const float *out, const float *in, const float *mean, const float *rstd,
                          const float *gamma, int N, int C, int HW, float slope);

/* LeakyReLU alone (the projection head uses ReLU = slope 0). dx may alias dy. */
void dacl_leaky_relu_forward(float *out, const float *in, size_t n, float slope);
void dacl_leaky_relu_backward(float *dx, const float *dy, const float *out, size_t n, float slope);

/* Dropout, element-wise, inverted scaling: out = in * keep / (1-p), where
 * keep = hash(key, i) >= p. Nothing is stored: backward regenerates the mask
 * from the same key. p = 0 copies. out/dx may alias in/dy. */
void dacl_dropout_forward(float *out, const float *in, size_t n, float p, uint64_t key);
void dacl_dropout_backward(float *dx, const float *dy, size_t n, float p, uint64_t key);

/* maxpool 2x2 stride 2. in [N,C,H,W] (H, W even), out [N,C,H/2,W/2], idx the
 * argmax (0..3) per output. Backward *accumulates* into din. */
void dacl_maxpool2x2_forward(float *out, uint8_t *idx, const float *in, int N, int C, int H, int W);
void dacl_maxpool2x2_backward(float *din, const float *dout, const uint8_t *idx, int N, int C,
                              int H, int W);

/* channel concat: out [N,CA+CB,HW] = [a [N,CA,HW], b [N,CB,HW]]; backward
 * overwrites da and db (either may be NULL). */
void dacl_concat_forward(float *out, const float *a, const float *b, int N, int CA, int CB, int HW);
void dacl_concat_backward(float *da, float *db, const float *dout, int N, int CA, int CB, int HW);

/* per-pixel linear layer = 1x1 convolution: in [N,C,HW], w [OC,C], out [N,OC,HW] */
void dacl_linear_forward(float *out, const float *in, const float *w, const float *b, int N, int C,
                         int HW, int OC);
void dacl_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, int N, int C, int HW, int OC);

/* out[n, i] = the class maximising logits[n, :, i] (the first on ties): the
 * prediction, and CPS's pseudo-labels. out [N,HW] */
void dacl_argmax(uint8_t *out, const float *logits, int N, int NC, int HW);

/* softmax over the class axis: logits, probs [N,NC,HW] */
void dacl_softmax_forward(float *probs, const float *logits, int N, int NC, int HW);

/* Mean cross-entropy over the pixels whose label is < NC (a label >= NC,
 * e.g. 255, is ignored). Returns the loss; when dlogits is non-NULL it
 * *accumulates* scale * dLoss/dlogits. probs are softmax(logits). */
double dacl_ce_loss(float *dlogits, const float *probs, const uint8_t *labels, int N, int NC,
                    int HW, float scale);
/* SSL4MIS soft Dice loss on softmax probabilities against one-hot labels,
 * per class over the whole batch (background included), averaged over
 * classes: 1 - (2*sum(p*t) + 1e-5) / (sum(p^2) + sum(t) + 1e-5).
 * Accumulates scale * dLoss/dlogits (through the softmax) when non-NULL. */
double dacl_dice_loss(float *dlogits, const float *probs, const uint8_t *labels, int N, int NC,
                      int HW, float scale);

/* ---------------------------------------------------------------- U-Net -- */

#define DACL_UNET_LEVELS 5
#define DACL_UNET_MAX_TENSORS 96

enum { DACL_PARAM_CONV_W, DACL_PARAM_CONV_B, DACL_PARAM_BN_W, DACL_PARAM_BN_B };

/* One parameter tensor, named as PyTorch names it in the SSL4MIS U-Net. */
typedef struct {
    char name[64];
    int kind;       /* DACL_PARAM_* */
    int ndim;
    int shape[4];
    size_t numel;
    size_t offset;  /* into the parameter block */
    int fan_in;     /* for PyTorch's default initialisation */
} DaclParamInfo;

typedef struct {
    int in_channels;
    int classes;
    int widths[DACL_UNET_LEVELS];    /* 16 32 64 128 256 in the paper */
    float dropout[DACL_UNET_LEVELS]; /* .05 .1 .2 .3 .5 */
} DaclUNetConfig;

/* Feature maps a caller (the contrastive head) can read and send gradient into. */
enum { DACL_FEAT_BOTTLENECK, DACL_FEAT_UP1, DACL_FEAT_UP2, DACL_FEAT_UP3, DACL_FEAT_UP4 };

/* Everything the network owns, in five blocks: parameters, gradients,
 * momentum, BN running statistics, and the per-step activations sized by
 * dacl_unet_plan for a batch of up to max_n images of h x w. */
typedef struct DaclUNet DaclUNet;

/* Memory a model needs, in bytes, for a batch and patch (planning only). */
typedef struct {
    size_t parameters;    /* number of trainable scalars */
    size_t param_bytes;   /* parameters, gradients, momentum, running stats */
    size_t act_bytes;     /* activations + activation gradients */
    size_t ws_bytes;      /* im2col workspace */
    size_t total_bytes;
} DaclUNetSize;

DaclUNetConfig dacl_unet_default_config(int in_channels, int classes);
int dacl_unet_size(const DaclUNetConfig *cfg, int max_n, int h, int w, DaclUNetSize *out);
/* Allocates every block once; h, w must be multiples of 16. */
int dacl_unet_create(DaclUNet **out, const DaclUNetConfig *cfg, int max_n, int h, int w);
void dacl_unet_free(DaclUNet *m);

/* Run the model's ops on a thread team (NULL: on the calling thread alone);
 * allocates a workspace and a gradient block per extra member. Results are
 * bit-identical for the same thread count. */
int dacl_unet_set_pool(DaclUNet *m, DaclPool *pool);
/* dacl_sgd_step over the whole model, on its thread team. */
void dacl_unet_sgd_step(DaclUNet *m, float lr, float momentum, float wd);

/* PyTorch's default initialisation: weights and biases ~ U(+-1/sqrt(fan_in)),
 * BN gamma 1, beta 0, running mean 0, var 1; momentum zeroed. */
void dacl_unet_init(DaclUNet *m, DaclRng *rng);

size_t dacl_unet_num_params(const DaclUNet *m);
int dacl_unet_num_tensors(const DaclUNet *m);
const DaclParamInfo *dacl_unet_tensor(const DaclUNet *m, int i);
float *dacl_unet_params(DaclUNet *m);
float *dacl_unet_grads(DaclUNet *m);
float *dacl_unet_momentum(DaclUNet *m);
/* BN running statistics: for each BN layer in order, mean[C] then var[C]. */
float *dacl_unet_bn_stats(DaclUNet *m);
size_t dacl_unet_bn_stats_count(const DaclUNet *m);
const DaclUNetConfig *dacl_unet_config(const DaclUNet *m);
int dacl_unet_max_batch(const DaclUNet *m);

/* x [N,in,H,W] -> logits [N,classes,H,W] (owned by the model, valid until the
 * next forward). train != 0: BN batch statistics (running stats updated) and
 * dropout with masks derived from dropout_key; train == 0: eval mode. */
int dacl_unet_forward(DaclUNet *m, const float *x, int n, int train, uint64_t dropout_key);
const float *dacl_unet_logits(const DaclUNet *m);
/* The feature map `which` (DACL_FEAT_*) of the last forward, [N,C,h,w]. */
const float *dacl_unet_feature(const DaclUNet *m, int which, int *c, int *h, int *w);
/* Accumulates parameter gradients for dlogits [N,classes,H,W] of the last
 * training forward; dfeat (may be NULL) [N,C,h,w] is extra gradient flowing
 * into feature map `feat_which`. */
int dacl_unet_backward(DaclUNet *m, const float *dlogits, const float *dfeat, int feat_which);
void dacl_unet_zero_grad(DaclUNet *m);

/* ------------------------------------------------------------ optimiser -- */

/* SGD with momentum and coupled weight decay, as torch.optim.SGD:
 * g += wd*w; buf = momentum*buf + g; w -= lr*buf. */
void dacl_sgd_step(float *w, const float *g, float *buf, size_t n, float lr, float momentum,
                   float wd);
/* poly schedule: base * (1 - t/t_max)^power */
double dacl_poly_lr(double base, long t, long t_max, double power);

/* ---------------------------------------------------------- model files -- */

/* A model file holds one U-Net: configuration, tensor table, parameters, BN
 * running statistics and optional JSON metadata. Little-endian throughout:
 *
 *   file     "DACLMODL" | u32 version (1) | u32 0 | u64 P | model section (P bytes)
 *            | u64 FNV-1a 64 of every byte before it
 *   section  u32 section version (1) | u32 flags (bit 0: momentum stored)
 *            | i32 in_channels, classes, widths[5] | f32 dropout[5]
 *            | i32 patch h, w (the plan it was saved from)
 *            | u32 tensors | per tensor: u32 kind, ndim, shape[4] (unused 0), name length L, name
 *            | u64 parameters, BN statistics
 *            | f32 parameters | f32 momentum (if flagged) | f32 BN statistics
 *            | u32 M | M bytes of JSON metadata (M = 0: none)
 *
 * The section is what a training checkpoint embeds (once per model), so it
 * has its own version and can carry the momentum; a model file is the
 * section alone under a header and a checksum. The tensor table is stored
 * to refuse a file whose architecture differs from the one its
 * configuration builds, naming the first tensor that differs. */

#define DACL_MODEL_VERSION 1
#define DACL_MODEL_SECTION_VERSION 1
#define DACL_MODEL_MOMENTUM 1u /* section flag: the momentum block follows the parameters */

/* FNV-1a, 64-bit, continuing from h (start with DACL_FNV1A64_INIT). */
#define DACL_FNV1A64_INIT 0xcbf29ce484222325ULL
uint64_t dacl_fnv1a64(uint64_t h, const void *data, size_t n);
/* FNV-1a 64 of the parameters then the BN statistics as stored in memory:
 * equal hashes mean bit-identical weights (for tests and logs). */
uint64_t dacl_unet_weights_hash(DaclUNet *m);

/* Bytes of m's model section with `json_meta` (may be NULL) and `flags`. */
size_t dacl_unet_section_bytes(DaclUNet *m, const char *json_meta, unsigned flags);
/* Write the section into buf[n] (n >= dacl_unet_section_bytes). */
int dacl_unet_section_write(DaclUNet *m, const char *json_meta, unsigned flags, void *buf, size_t n);
/* Build a model from the section at the start of buf[n]: planned for batches
 * of max_n at h x w (h = w = 0: the patch it was saved with). `what` names
 * the source in errors (a path). *used (may be NULL) gets the section's
 * length; *json_meta_out (may be NULL) a malloc'd NUL-terminated copy of the
 * metadata, or NULL if there is none. Outputs are set only on success. */
int dacl_unet_section_read(const void *buf, size_t n, const char *what, int max_n, int h, int w,
                           DaclUNet **out, char **json_meta_out, size_t *used);

/* Save m (no momentum) to `path`: written to a temporary file in the same
 * folder, fsynced and renamed, so `path` is never half-written. */
int dacl_unet_save(DaclUNet *m, const char *path, const char *json_meta);
/* Load a model file (see dacl_unet_section_read for max_n, h, w and the
 * outputs). A truncated, corrupt (checksum), foreign (magic) or newer
 * (version) file is DACL_EFORMAT with a message naming it. */
int dacl_unet_load(const char *path, int max_n, int h, int w, DaclUNet **out, char **json_meta_out);

#endif
