/* The DACL projection head (method.md §1, §3): per pixel Linear(Cf, HID) ->
 * BatchNorm -> ReLU -> Linear(HID, D) -> L2 normalisation.
 *
 * Dims: N images, Cf feature channels, HW pixels per image, P = N*HW,
 * HID = 256 hidden units, D = proj_dim, R embedded rows, B rows with gradient.
 *
 * Why it never runs on all P pixels: the loss reads at most max_pixels
 * pixels per class, and only the anchors carry gradient. Training-mode BN
 * still normalises with the statistics of all P pixels (as a 1x1-conv head
 * over the map would), but those are affine images of the features' mean
 * xbar [Cf] and covariance S [Cf,Cf]:
 *     mean(z) = W1 xbar + b1,  var(z_c) = w_c' S w_c   (z = W1 x + b1),
 * so the forward costs one Cf x Cf covariance pass over the map plus the MLP
 * on the R rows. Backward, every pixel p gets gradient through the statistics,
 *     dz_p = k * du_p [p has gradient] + alpha + beta' * (W1 (x_p - xbar)),
 *     k = gamma*rstd, alpha = -k*mean(du), beta' = -k*rstd*mean(du*xhat),
 * which is a Cf x Cf matrix applied to every pixel (dfeat = W1' dz) plus the
 * B rows' own terms: again no HID-wide pass over P. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dacl/error.h"
#include "dacl/method.h"

#define HID DACL_HEAD_HIDDEN
#define CHUNK 128 /* rows per forward block: X, Z and Y of a block stay in cache */
#define BN_EPS 1e-5
#define BN_MOMENTUM 0.1
#define NORM_EPS 1e-12f /* F.normalize's */

struct DaclHead {
    int cf, d, max_n, hw, max_rows, max_back, threads;
    size_t nparams;
    float *params, *grads, *momentum, *bn; /* bn: running mean [HID], var [HID] */
    /* the forward's state, for the backward */
    int train, N, HW, nrows;
    const float *feat;
    const int32_t *rows;
    double *xbar;      /* [Cf] */
    double *cov;       /* [Cf,Cf] biased covariance of the features */
    double *w1cov;     /* [HID,Cf] W1 S */
    float *mean, *rstd; /* [HID] of z = W1 x + b1 (training) */
    float *scale, *shift; /* [HID] u = z_nobias * scale + shift */
    float *emb;        /* [max_rows, D] */
    float *ynorm;      /* [max_rows] |y| before normalisation */
    /* scratch */
    double *img_sum;   /* [max_n, Cf] */
    float *img_cov;    /* [max_n, Cf, Cf] (upper triangle) */
    float *tws;        /* threads x tws_floats */
    size_t tws_floats;
    float *bx, *bz, *ba, *bdy; /* backward: [B,Cf], [B,HID], [B,HID], [B,D] */
    float *bw, *dense; /* backward: [HID,Cf]; [Cf,Cf] + [Cf] */
};

/* parameter offsets, PyTorch order */
static size_t off_b1(const DaclHead *h) { return (size_t)HID * h->cf; }
static size_t off_gamma(const DaclHead *h) { return off_b1(h) + HID; }
static size_t off_beta(const DaclHead *h) { return off_gamma(h) + HID; }
static size_t off_w2(const DaclHead *h) { return off_beta(h) + HID; }
static size_t off_b2(const DaclHead *h) { return off_w2(h) + (size_t)h->d * HID; }

void dacl_head_free(DaclHead *h) {
    if (!h) return;
    free(h->params), free(h->grads), free(h->momentum), free(h->bn);
    free(h->xbar), free(h->cov), free(h->w1cov);
    free(h->mean), free(h->rstd), free(h->scale), free(h->shift);
    free(h->emb), free(h->ynorm), free(h->img_sum), free(h->img_cov), free(h->tws);
    free(h->bx), free(h->bz), free(h->ba), free(h->bdy), free(h->bw), free(h->dense);
    free(h);
}

int dacl_head_create(DaclHead **out, int cf, int proj_dim, int max_n, int hw, int max_rows,
                     int max_back, int threads) {
    *out = NULL;
    if (cf < 1 || proj_dim < 1 || max_n < 1 || hw < 1 || max_rows < 1 || max_back < 1 || threads < 1)
        return DACL_FAIL(DACL_EINVAL, "projection head: bad plan (Cf %d, D %d, N %d, HW %d, rows %d, %d)",
                         cf, proj_dim, max_n, hw, max_rows, max_back);
    DaclHead *h = calloc(1, sizeof *h);
    if (!h) return DACL_FAIL(DACL_ENOMEM, "out of memory for the projection head");
    h->cf = cf, h->d = proj_dim, h->max_n = max_n, h->hw = hw;
    h->max_rows = max_rows, h->max_back = max_back, h->threads = threads;
    h->nparams = off_b2(h) + (size_t)proj_dim;
    size_t chunk = (size_t)CHUNK * ((size_t)cf + HID + (size_t)proj_dim);
    size_t img = (size_t)cf * hw;
    h->tws_floats = chunk > img ? chunk : img;
    size_t B = (size_t)max_back;
    h->params = calloc(h->nparams, sizeof(float));
    h->grads = calloc(h->nparams, sizeof(float));
    h->momentum = calloc(h->nparams, sizeof(float));
    h->bn = calloc(2 * HID, sizeof(float));
    h->xbar = calloc((size_t)cf, sizeof(double));
    h->cov = calloc((size_t)cf * cf, sizeof(double));
    h->w1cov = calloc((size_t)HID * cf, sizeof(double));
    h->mean = calloc(HID, sizeof(float));
    h->rstd = calloc(HID, sizeof(float));
    h->scale = calloc(HID, sizeof(float));
    h->shift = calloc(HID, sizeof(float));
    h->emb = malloc((size_t)max_rows * proj_dim * sizeof(float));
    h->ynorm = malloc((size_t)max_rows * sizeof(float));
    h->img_sum = malloc((size_t)max_n * cf * sizeof(double));
    h->img_cov = malloc((size_t)max_n * cf * cf * sizeof(float));
    h->tws = malloc((size_t)threads * h->tws_floats * sizeof(float));
    h->bx = malloc(B * cf * sizeof(float));
    h->bz = malloc(B * HID * sizeof(float));
    h->ba = malloc(B * HID * sizeof(float));
    h->bdy = malloc(B * proj_dim * sizeof(float));
    h->bw = malloc((size_t)HID * cf * sizeof(float));
    h->dense = malloc(((size_t)cf * cf + cf) * sizeof(float));
    if (!h->params || !h->grads || !h->momentum || !h->bn || !h->xbar || !h->cov || !h->w1cov ||
        !h->mean || !h->rstd || !h->scale || !h->shift || !h->emb || !h->ynorm || !h->img_sum ||
        !h->img_cov || !h->tws || !h->bx || !h->bz || !h->ba || !h->bdy || !h->bw || !h->dense) {
        dacl_head_free(h);
        return DACL_FAIL(DACL_ENOMEM, "out of memory for the projection head (%d rows of %d)",
                         max_rows, proj_dim);
    }
    *out = h;
    return DACL_OK;
}

void dacl_head_init(DaclHead *h, DaclRng *rng) {
    float *p = h->params;
    /* Linear's kaiming_uniform(a = sqrt 5) and bias rule: both U(+-1/sqrt(fan_in)) */
    float b1 = 1.0f / sqrtf((float)h->cf), b2 = 1.0f / sqrtf((float)HID);
    for (size_t i = 0; i < off_gamma(h); i++) p[i] = (2.0f * dacl_rng_uniform(rng) - 1.0f) * b1;
    for (size_t i = off_gamma(h); i < off_beta(h); i++) p[i] = 1.0f;
    for (size_t i = off_beta(h); i < off_w2(h); i++) p[i] = 0.0f;
    for (size_t i = off_w2(h); i < h->nparams; i++) p[i] = (2.0f * dacl_rng_uniform(rng) - 1.0f) * b2;
    for (int c = 0; c < HID; c++) h->bn[c] = 0.0f, h->bn[HID + c] = 1.0f;
    memset(h->grads, 0, h->nparams * sizeof(float));
    memset(h->momentum, 0, h->nparams * sizeof(float));
}

size_t dacl_head_num_params(const DaclHead *h) { return h->nparams; }
float *dacl_head_params(DaclHead *h) { return h->params; }
float *dacl_head_grads(DaclHead *h) { return h->grads; }
float *dacl_head_momentum(DaclHead *h) { return h->momentum; }
float *dacl_head_bn_stats(DaclHead *h) { return h->bn; }
size_t dacl_head_bn_stats_count(const DaclHead *h) { (void)h; return 2 * HID; }
const float *dacl_head_embeddings(const DaclHead *h) { return h->emb; }
void dacl_head_zero_grad(DaclHead *h) { memset(h->grads, 0, h->nparams * sizeof(float)); }

void dacl_head_sgd_step(DaclHead *h, float lr, float momentum, float wd) {
    dacl_sgd_step(h->params, h->grads, h->momentum, h->nparams, lr, momentum, wd);
}

/* ------------------------------------------------------------ forward -- */

typedef struct {
    DaclHead *h;
    const float *src; /* [N,Cf,HW] features, or the gradient matrix for dense_grad */
    float *dst;
    const float *mat, *vec;
} Job;

/* Per image: channel sums, in double. */
static void job_sums(void *ctx, int tid, int nt) {
    Job *j = ctx;
    DaclHead *h = j->h;
    int a, e;
    dacl_split(h->N, tid, nt, &a, &e);
    for (int n = a; n < e; n++)
        for (int c = 0; c < h->cf; c++) {
            const float *x = j->src + ((size_t)n * h->cf + c) * h->HW;
            double s = 0.0;
            for (int i = 0; i < h->HW; i++) s += x[i];
            h->img_sum[(size_t)n * h->cf + c] = s;
        }
}

/* Per image: (X - xbar)(X - xbar)' [Cf,Cf] (upper triangle), centred on the
 * batch mean first so the covariance does not cancel. */
static void job_cov(void *ctx, int tid, int nt) {
    Job *j = ctx;
    DaclHead *h = j->h;
    const int cf = h->cf, HW = h->HW;
    float *xc = h->tws + (size_t)tid * h->tws_floats; /* [Cf,HW] */
    int a, e;
    dacl_split(h->N, tid, nt, &a, &e);
    for (int n = a; n < e; n++) {
        for (int c = 0; c < cf; c++) {
            const float *x = j->src + ((size_t)n * cf + c) * HW;
            float mu = (float)h->xbar[c], *d = xc + (size_t)c * HW;
            for (int i = 0; i < HW; i++) d[i] = x[i] - mu;
        }
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, cf, HW, 1.0f, xc, HW, 0.0f,
                    h->img_cov + (size_t)n * cf * cf, cf);
    }
}

/* The batch statistics of z = W1 x + b1 from the features' mean and
 * covariance, and the running statistics' update (PyTorch: unbiased var). */
static void batch_stats(DaclHead *h, DaclPool *pool) {
    const int cf = h->cf, N = h->N;
    const double P = (double)N * h->HW;
    Job j = {.h = h, .src = h->feat};
    dacl_pool_run(pool, job_sums, &j);
    for (int c = 0; c < cf; c++) {
        double s = 0.0;
        for (int n = 0; n < N; n++) s += h->img_sum[(size_t)n * cf + c];
        h->xbar[c] = s / P;
    }
    dacl_pool_run(pool, job_cov, &j);
    for (int r = 0; r < cf; r++)
        for (int c = r; c < cf; c++) {
            double s = 0.0;
            for (int n = 0; n < N; n++) s += h->img_cov[((size_t)n * cf + r) * cf + c];
            h->cov[(size_t)r * cf + c] = h->cov[(size_t)c * cf + r] = s / P;
        }
    const float *w1 = h->params, *b1 = h->params + off_b1(h);
    const float *gamma = h->params + off_gamma(h), *beta = h->params + off_beta(h);
    for (int o = 0; o < HID; o++) {
        const float *w = w1 + (size_t)o * cf;
        double *t = h->w1cov + (size_t)o * cf;
        double mu = b1[o], var = 0.0;
        for (int k = 0; k < cf; k++) {
            const double *srow = h->cov + (size_t)k * cf;
            double acc = 0.0;
            for (int l = 0; l < cf; l++) acc += srow[l] * w[l];
            t[k] = acc;
            mu += (double)w[k] * h->xbar[k];
            var += (double)w[k] * acc;
        }
        if (var < 0.0) var = 0.0; /* roundoff of a rank-deficient covariance */
        double r = 1.0 / sqrt(var + BN_EPS);
        h->mean[o] = (float)mu;
        h->rstd[o] = (float)r;
        /* u = gamma (z - mu) r + beta with z = zn + b1, zn from the GEMM */
        h->scale[o] = (float)(gamma[o] * r);
        h->shift[o] = (float)(beta[o] + (b1[o] - mu) * gamma[o] * r);
        double unbiased = P > 1 ? var * P / (P - 1) : var;
        h->bn[o] = (float)((1.0 - BN_MOMENTUM) * h->bn[o] + BN_MOMENTUM * mu);
        h->bn[HID + o] = (float)((1.0 - BN_MOMENTUM) * h->bn[HID + o] + BN_MOMENTUM * unbiased);
    }
}

static void eval_stats(DaclHead *h) {
    const float *b1 = h->params + off_b1(h);
    const float *gamma = h->params + off_gamma(h), *beta = h->params + off_beta(h);
    for (int o = 0; o < HID; o++) {
        float r = 1.0f / sqrtf(h->bn[HID + o] + (float)BN_EPS);
        h->scale[o] = gamma[o] * r;
        h->shift[o] = beta[o] + (b1[o] - h->bn[o]) * gamma[o] * r;
    }
}

/* x [n, Cf] = the features of rows[0..n) */
static void gather_rows(float *x, const DaclHead *h, const int32_t *rows, int n) {
    const int cf = h->cf, HW = h->HW;
    for (int r = 0; r < n; r++) {
        int p = rows[r], img = p / HW, i = p % HW;
        const float *s = h->feat + (size_t)img * cf * HW + i;
        float *d = x + (size_t)r * cf;
        for (int c = 0; c < cf; c++) d[c] = s[(size_t)c * HW];
    }
}

/* a [n, HID] = relu(x W1' * scale + shift): the hidden layer */
static void hidden(const DaclHead *h, float *a, const float *x, int n) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, HID, h->cf, 1.0f, x, h->cf, h->params,
                h->cf, 0.0f, a, HID);
    for (int r = 0; r < n; r++) {
        float *u = a + (size_t)r * HID;
        for (int o = 0; o < HID; o++) {
            float v = u[o] * h->scale[o] + h->shift[o];
            u[o] = v > 0.0f ? v : 0.0f;
        }
    }
}

static void job_rows(void *ctx, int tid, int nt) {
    Job *j = ctx;
    DaclHead *h = j->h;
    const int cf = h->cf, D = h->d;
    const float *w2 = h->params + off_w2(h), *b2 = h->params + off_b2(h);
    float *x = h->tws + (size_t)tid * h->tws_floats, *a = x + (size_t)CHUNK * cf;
    float *y = a + (size_t)CHUNK * HID;
    int nchunks = (h->nrows + CHUNK - 1) / CHUNK, c0, c1;
    dacl_split(nchunks, tid, nt, &c0, &c1);
    for (int ch = c0; ch < c1; ch++) {
        int r0 = ch * CHUNK, n = h->nrows - r0 < CHUNK ? h->nrows - r0 : CHUNK;
        gather_rows(x, h, h->rows + r0, n);
        hidden(h, a, x, n);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, D, HID, 1.0f, a, HID, w2, HID, 0.0f,
                    y, D);
        for (int r = 0; r < n; r++) {
            float *yr = y + (size_t)r * D, *e = h->emb + (size_t)(r0 + r) * D;
            double ss = 0.0;
            for (int k = 0; k < D; k++) {
                yr[k] += b2[k];
                ss += (double)yr[k] * yr[k];
            }
            float nrm = (float)sqrt(ss), inv = 1.0f / (nrm > NORM_EPS ? nrm : NORM_EPS);
            for (int k = 0; k < D; k++) e[k] = yr[k] * inv;
            h->ynorm[r0 + r] = nrm;
        }
    }
}

int dacl_head_forward(DaclHead *h, const float *feat, int N, int HW, const int32_t *rows, int nrows,
                      int train, DaclPool *pool) {
    if (N < 1 || N > h->max_n || HW < 1 || HW > h->hw || nrows < 0 || nrows > h->max_rows)
        return DACL_FAIL(DACL_EINVAL, "projection head: %d images of %d pixels, %d rows exceed the plan "
                         "(%d, %d, %d)", N, HW, nrows, h->max_n, h->hw, h->max_rows);
    if (dacl_pool_threads(pool) > h->threads)
        return DACL_FAIL(DACL_EINVAL, "projection head: planned for %d threads, the pool has %d",
                         h->threads, dacl_pool_threads(pool));
    for (int r = 0; r < nrows; r++)
        if (rows[r] < 0 || rows[r] >= N * HW)
            return DACL_FAIL(DACL_EINVAL, "projection head: row %d is pixel %d of %d", r, rows[r], N * HW);
    h->feat = feat, h->rows = rows, h->nrows = nrows, h->N = N, h->HW = HW, h->train = train;
    if (train)
        batch_stats(h, pool);
    else
        eval_stats(h);
    Job j = {.h = h};
    dacl_pool_run(pool, job_rows, &j);
    return DACL_OK;
}

/* ----------------------------------------------------------- backward -- */

/* dfeat image n [Cf,HW] = mat [Cf,Cf] X_n + vec: the statistics' gradient */
static void job_dense(void *ctx, int tid, int nt) {
    Job *j = ctx;
    DaclHead *h = j->h;
    const int cf = h->cf, HW = h->HW;
    int a, e;
    dacl_split(h->N, tid, nt, &a, &e);
    for (int n = a; n < e; n++) {
        float *d = j->dst + (size_t)n * cf * HW;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cf, HW, cf, 1.0f, j->mat, cf,
                    h->feat + (size_t)n * cf * HW, HW, 0.0f, d, HW);
        for (int c = 0; c < cf; c++) {
            float v = j->vec[c], *dc = d + (size_t)c * HW;
            for (int i = 0; i < HW; i++) dc[i] += v;
        }
    }
}

int dacl_head_backward(DaclHead *h, float *dfeat, const int32_t *which, const float *demb, int nb,
                       DaclPool *pool) {
    if (!h->train) return DACL_FAIL(DACL_EINVAL, "projection head: backward needs a training forward");
    if (nb < 0 || nb > h->max_back)
        return DACL_FAIL(DACL_EINVAL, "projection head: %d rows with gradient, planned for %d", nb,
                         h->max_back);
    for (int r = 0; r < nb; r++)
        if (which[r] < 0 || which[r] >= h->nrows)
            return DACL_FAIL(DACL_EINVAL, "projection head: gradient row %d is %d of %d", r, which[r],
                             h->nrows);
    const int cf = h->cf, D = h->d, HW = h->HW;
    const double P = (double)h->N * HW;
    const float *w1 = h->params, *b1 = h->params + off_b1(h), *gamma = h->params + off_gamma(h);
    const float *w2 = h->params + off_w2(h);
    float *gw1 = h->grads, *ggamma = h->grads + off_gamma(h), *gbeta = h->grads + off_beta(h);
    float *gw2 = h->grads + off_w2(h), *gb2 = h->grads + off_b2(h);
    float *x = h->bx, *z = h->bz, *a = h->ba, *dy = h->bdy;
    double sdu[HID] = {0}, sdux[HID] = {0};
    if (nb > 0) {
        for (int r = 0; r < nb; r++) {
            int32_t p = h->rows[which[r]];
            gather_rows(x + (size_t)r * cf, h, &p, 1);
        }
        /* the hidden layer again (the forward keeps only the embeddings) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, HID, cf, 1.0f, x, cf, w1, cf, 0.0f,
                    z, HID);
        for (size_t i = 0; i < (size_t)nb * HID; i++) {
            float v = z[i] * h->scale[i % HID] + h->shift[i % HID];
            a[i] = v > 0.0f ? v : 0.0f;
        }
        /* through the normalisation: dy = (de - e (e.de)) / |y| */
        for (int r = 0; r < nb; r++) {
            const float *e = h->emb + (size_t)which[r] * D, *g = demb + (size_t)r * D;
            float *o = dy + (size_t)r * D;
            double eg = 0.0;
            for (int k = 0; k < D; k++) eg += (double)e[k] * g[k];
            float nrm = h->ynorm[which[r]], inv = 1.0f / (nrm > NORM_EPS ? nrm : NORM_EPS);
            for (int k = 0; k < D; k++) {
                o[k] = (g[k] - e[k] * (float)eg) * inv;
                gb2[k] += o[k];
            }
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, HID, nb, 1.0f, dy, D, a, HID, 1.0f,
                    gw2, HID);
        /* da [B,HID] = dy W2 (into a), then through ReLU and BN's own rows:
         * du, the sums of du and du*xhat, and k*du (in place) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, HID, D, 1.0f, dy, D, w2, HID, 0.0f,
                    a, HID);
        for (int r = 0; r < nb; r++) {
            float *g = a + (size_t)r * HID;
            const float *zr = z + (size_t)r * HID;
            for (int o = 0; o < HID; o++) {
                float du = zr[o] * h->scale[o] + h->shift[o] > 0.0f ? g[o] : 0.0f;
                float xh = (zr[o] + b1[o] - h->mean[o]) * h->rstd[o];
                sdu[o] += du;
                sdux[o] += (double)du * xh;
                g[o] = du * gamma[o] * h->rstd[o];
            }
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, HID, cf, nb, 1.0f, a, HID, x, cf, 1.0f,
                    gw1, cf);
        /* the rows' own input gradient k*du W1 [B,Cf] (into x), added below */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, cf, HID, 1.0f, a, HID, w1, cf, 0.0f,
                    x, cf);
    }
    /* alpha, beta' of the header comment; dW1's dense part
     * P alpha xbar' + diag(P beta') W1 S; bw = diag(beta') W1 */
    double alpha[HID];
    float *bw = h->bw;
    for (int o = 0; o < HID; o++) {
        double k = (double)gamma[o] * h->rstd[o], bp = -k * h->rstd[o] * sdux[o] / P;
        ggamma[o] += (float)sdux[o];
        gbeta[o] += (float)sdu[o];
        alpha[o] = -k * sdu[o] / P;
        float *gw = gw1 + (size_t)o * cf, *b = bw + (size_t)o * cf;
        const float *w = w1 + (size_t)o * cf;
        const double *t = h->w1cov + (size_t)o * cf;
        for (int c = 0; c < cf; c++) {
            gw[c] += (float)(P * (alpha[o] * h->xbar[c] + bp * t[c]));
            b[c] = (float)(bp * w[c]);
        }
    }
    /* every pixel: dfeat_p = mat x_p + vec, mat = W1' diag(beta') W1,
     * vec = W1' alpha - mat xbar */
    float *mat = h->dense, *vec = mat + (size_t)cf * cf;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cf, cf, HID, 1.0f, w1, cf, bw, cf, 0.0f, mat,
                cf);
    for (int c = 0; c < cf; c++) {
        double s = 0.0;
        for (int o = 0; o < HID; o++) s += alpha[o] * w1[(size_t)o * cf + c];
        for (int k = 0; k < cf; k++) s -= (double)mat[(size_t)c * cf + k] * h->xbar[k];
        vec[c] = (float)s;
    }
    Job j = {.h = h, .dst = dfeat, .mat = mat, .vec = vec};
    dacl_pool_run(pool, job_dense, &j);
    for (int r = 0; r < nb; r++) {
        int p = h->rows[which[r]], img = p / HW, i = p % HW;
        float *d = dfeat + (size_t)img * cf * HW + i;
        const float *g = x + (size_t)r * cf;
        for (int c = 0; c < cf; c++) d[(size_t)c * HW] += g[c];
    }
    return DACL_OK;
}
