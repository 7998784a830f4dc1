/* The SSL4MIS 2D U-Net (networks/unet.py, bilinear = False).
 *
 *   level l = 0..4 has width w[l] and spatial size (H >> l) x (W >> l).
 *   encoder: E0 = ConvBlock(in, w0, p0); El = maxpool -> ConvBlock(w[l-1], w[l], p[l])
 *   decoder d = 0..3 at level l = 3-d: u = ConvT2x2(prev, w[l]); cat = [E_l.y, u];
 *            D_d = ConvBlock(2 w[l], w[l], 0)
 *   logits = conv3x3(D3.y, classes)
 *   ConvBlock = conv3x3 -> BN -> LeakyReLU(.01) -> Dropout(p) -> conv3x3 -> BN -> LeakyReLU
 *
 * Memory: a planning pass computes every tensor's size for (max_n, H, W);
 * parameters, gradients, momentum, BN statistics, activations and the im2col
 * workspace are then one allocation each, carved by offsets. */
#include "dacl/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dacl/error.h"
#include "ops_internal.h"

#define NBLOCKS 9 /* E0..E4, D0..D3 */
#define LRELU 0.01f
#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f

typedef struct {
    int cin, cout, H, W; /* input and output channels, spatial size */
    float p;             /* dropout after the first activation */
    int t0;              /* index of conv1.weight; conv1.b, bn1.w, bn1.b, conv2.w/b, bn2.w/b follow */
    size_t bn0;          /* offset of this block's first BN running mean in the stats block */
    const float *x;      /* input of the last forward [N,cin,H,W] */
    float *c1, *a1, *d1, *c2, *y;        /* [N,cout,H,W]; d1 == a1 when p == 0 */
    float *m1, *r1, *m2, *r2;            /* [cout] batch mean and 1/std of each BN */
} Block;

struct DaclUNet {
    DaclUNetConfig cfg;
    int max_n, H, W;
    int ntensors;
    DaclParamInfo tensors[DACL_UNET_MAX_TENSORS];
    size_t nparams, nstats;
    float *params, *grads, *momentum, *stats; /* the parameter-sized blocks */
    float *acts;                              /* every activation, one block */
    uint8_t *pool_idx;                        /* maxpool argmax, one block */
    float *ws;                                /* im2col / convT workspace, one per thread */
    DaclPool *team;                           /* NULL: single-threaded */
    int nthreads;
    float *tgrads;                            /* gradients of members 1.., reduced after backward */
    float *rowstats;                          /* [N,C,H,2] row statistics of the last conv for BN */
    Block blk[NBLOCKS];
    int t_up[4], t_out;      /* tensor index of each ConvT weight and the output conv weight */
    float *pool[5];          /* pool[l] = maxpool(E[l-1].y), l = 1..4 */
    uint8_t *idx[5];         /* argmax of pool[l] */
    float *up[4], *cat[4];   /* convT output and concat of decoder d */
    float *logits;           /* [N,classes,H,W] */
    float *s0, *s1;          /* backward scratch, the size of the largest gradient */
    float *dskip[4];         /* gradient of E[l].y, l = 0..3 */
    int last_n, last_train;
    uint64_t last_key;       /* dropout key of the last forward */
    size_t act_floats, idx_bytes, ws_floats, scratch_floats;
};

DaclUNetConfig dacl_unet_default_config(int in_channels, int classes) {
    DaclUNetConfig c = {.in_channels = in_channels,
                        .classes = classes,
                        .widths = {16, 32, 64, 128, 256},
                        .dropout = {0.05f, 0.1f, 0.2f, 0.3f, 0.5f}};
    return c;
}

/* ---------------------------------------------------------- planning -- */

static void add_tensor(DaclUNet *m, const char *prefix, const char *suffix, int kind, int ndim,
                       int s0, int s1, int s2, int s3, int fan_in) {
    DaclParamInfo *t = &m->tensors[m->ntensors++];
    snprintf(t->name, sizeof t->name, "%s%s", prefix, suffix);
    t->kind = kind;
    t->ndim = ndim;
    t->shape[0] = s0, t->shape[1] = s1, t->shape[2] = s2, t->shape[3] = s3;
    t->numel = (size_t)s0 * (ndim > 1 ? s1 : 1) * (ndim > 2 ? s2 : 1) * (ndim > 3 ? s3 : 1);
    t->offset = m->nparams;
    t->fan_in = fan_in;
    m->nparams += t->numel;
}

/* The eight tensors of a ConvBlock, under PyTorch's names "<prefix>conv_conv.{0,1,4,5}". */
static void add_block(DaclUNet *m, Block *b, const char *prefix) {
    char p[48];
    b->t0 = m->ntensors;
    b->bn0 = m->nstats;
    for (int half = 0; half < 2; half++) {
        int cin = half ? b->cout : b->cin;
        snprintf(p, sizeof p, "%sconv_conv.%d.", prefix, half ? 4 : 0);
        add_tensor(m, p, "weight", DACL_PARAM_CONV_W, 4, b->cout, cin, 3, 3, cin * 9);
        add_tensor(m, p, "bias", DACL_PARAM_CONV_B, 1, b->cout, 0, 0, 0, cin * 9);
        snprintf(p, sizeof p, "%sconv_conv.%d.", prefix, half ? 5 : 1);
        add_tensor(m, p, "weight", DACL_PARAM_BN_W, 1, b->cout, 0, 0, 0, 0);
        add_tensor(m, p, "bias", DACL_PARAM_BN_B, 1, b->cout, 0, 0, 0, 0);
        m->nstats += 2 * (size_t)b->cout;
    }
}

/* Builds the tensor table and the block geometry (no allocation). */
static int plan(DaclUNet *m, const DaclUNetConfig *cfg, int max_n, int H, int W) {
    if (cfg->in_channels < 1 || cfg->classes < 2 || cfg->classes > 255)
        return DACL_FAIL(DACL_EINVAL, "U-Net needs >= 1 input channel and 2..255 classes");
    if (max_n < 1 || H < 16 || W < 16 || H % 16 || W % 16)
        return DACL_FAIL(DACL_EINVAL, "U-Net patch %dx%d must be a positive multiple of 16", H, W);
    for (int l = 0; l < DACL_UNET_LEVELS; l++)
        if (cfg->widths[l] < 1 || (l > 0 && cfg->widths[l] < cfg->widths[l - 1]) || cfg->dropout[l] < 0.0f || cfg->dropout[l] >= 1.0f)
            return DACL_FAIL(DACL_EINVAL, "U-Net widths must be positive and non-decreasing, dropout in [0, 1): level %d", l);
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->max_n = max_n, m->H = H, m->W = W;
    const int *w = cfg->widths;
    char p[48];
    for (int l = 0; l < 5; l++) {
        Block *b = &m->blk[l];
        b->cin = l ? w[l - 1] : cfg->in_channels;
        b->cout = w[l];
        b->H = H >> l, b->W = W >> l;
        b->p = cfg->dropout[l];
        if (l == 0)
            snprintf(p, sizeof p, "encoder.in_conv.");
        else
            snprintf(p, sizeof p, "encoder.down%d.maxpool_conv.1.", l);
        add_block(m, b, p);
    }
    for (int d = 0; d < 4; d++) {
        int l = 3 - d;
        Block *b = &m->blk[5 + d];
        b->cin = 2 * w[l];
        b->cout = w[l];
        b->H = H >> l, b->W = W >> l;
        b->p = 0.0f;
        snprintf(p, sizeof p, "decoder.up%d.", d + 1);
        m->t_up[d] = m->ntensors;
        /* ConvTranspose2d weight [in, out, 2, 2]; PyTorch's fan_in is size(1)*k*k */
        add_tensor(m, p, "up.weight", DACL_PARAM_CONV_W, 4, w[l + 1], w[l], 2, 2, w[l] * 4);
        add_tensor(m, p, "up.bias", DACL_PARAM_CONV_B, 1, w[l], 0, 0, 0, w[l] * 4);
        snprintf(p, sizeof p, "decoder.up%d.conv.", d + 1);
        add_block(m, b, p);
    }
    m->t_out = m->ntensors;
    add_tensor(m, "decoder.out_conv.", "weight", DACL_PARAM_CONV_W, 4, cfg->classes, w[0], 3, 3,
               w[0] * 9);
    add_tensor(m, "decoder.out_conv.", "bias", DACL_PARAM_CONV_B, 1, cfg->classes, 0, 0, 0, w[0] * 9);

    /* activations, counted in floats for a batch of max_n */
    size_t a = 0, ix = 0, ws = 0, sc = 0;
    const size_t N = (size_t)max_n;
    for (int i = 0; i < NBLOCKS; i++) {
        Block *b = &m->blk[i];
        size_t t = N * b->cout * b->H * b->W;
        a += t * (b->p > 0.0f ? 5 : 4) + 4 * (size_t)b->cout;
        size_t cws = dacl_conv2d_ws(b->cin, b->H, b->W, 3);
        if (cws > ws) ws = cws;
        size_t g = N * (b->cin > b->cout ? b->cin : b->cout) * b->H * b->W;
        if (g > sc) sc = g;
    }
    for (int l = 1; l < 5; l++) {
        size_t t = N * w[l - 1] * (H >> l) * (W >> l);
        a += t;
        ix += t;
    }
    for (int d = 0; d < 4; d++) {
        int l = 3 - d;
        size_t t = N * w[l] * (H >> l) * (W >> l);
        a += 3 * t; /* up, cat (2t) */
        a += t;     /* dskip[l] */
        size_t tws = dacl_convt2x2_ws(w[l], H >> (l + 1), W >> (l + 1));
        if (tws > ws) ws = tws;
    }
    a += N * cfg->classes * H * W;
    {
        size_t ows = dacl_conv2d_ws(w[0], H, W, 3);
        if (ows > ws) ws = ows;
    }
    m->act_floats = a + 2 * sc;
    m->idx_bytes = ix;
    m->ws_floats = ws;
    m->scratch_floats = sc;
    return DACL_OK;
}

int dacl_unet_size(const DaclUNetConfig *cfg, int max_n, int h, int w, DaclUNetSize *out) {
    DaclUNet *m = malloc(sizeof *m);
    if (!m) return DACL_FAIL(DACL_ENOMEM, "out of memory planning the U-Net");
    int rc = plan(m, cfg, max_n, h, w);
    if (rc == DACL_OK) {
        out->parameters = m->nparams;
        out->param_bytes = sizeof(float) * (3 * m->nparams + m->nstats);
        out->act_bytes = sizeof(float) * m->act_floats + m->idx_bytes;
        out->ws_bytes = sizeof(float) * m->ws_floats;
        out->total_bytes = out->param_bytes + out->act_bytes + out->ws_bytes + sizeof *m;
    }
    free(m);
    return rc;
}

/* Carves the activation block into the per-layer pointers. */
static void point_activations(DaclUNet *m) {
    float *a = m->acts;
    uint8_t *ix = m->pool_idx;
    const size_t N = (size_t)m->max_n;
    const int *w = m->cfg.widths;
#define TAKE(n) (a += (n), a - (n))
    for (int i = 0; i < NBLOCKS; i++) {
        Block *b = &m->blk[i];
        size_t t = N * b->cout * b->H * b->W;
        b->c1 = TAKE(t);
        b->a1 = TAKE(t);
        b->d1 = b->p > 0.0f ? TAKE(t) : b->a1;
        b->c2 = TAKE(t);
        b->y = TAKE(t);
        b->m1 = TAKE((size_t)b->cout);
        b->r1 = TAKE((size_t)b->cout);
        b->m2 = TAKE((size_t)b->cout);
        b->r2 = TAKE((size_t)b->cout);
    }
    for (int l = 1; l < 5; l++) {
        size_t t = N * w[l - 1] * (m->H >> l) * (m->W >> l);
        m->pool[l] = TAKE(t);
        m->idx[l] = ix;
        ix += t;
    }
    for (int d = 0; d < 4; d++) {
        int l = 3 - d;
        size_t t = N * w[l] * (m->H >> l) * (m->W >> l);
        m->up[d] = TAKE(t);
        m->cat[d] = TAKE(2 * t);
        m->dskip[l] = TAKE(t);
    }
    m->logits = TAKE(N * m->cfg.classes * m->H * m->W);
    m->s0 = TAKE(m->scratch_floats);
    m->s1 = TAKE(m->scratch_floats);
#undef TAKE
}

int dacl_unet_create(DaclUNet **out, const DaclUNetConfig *cfg, int max_n, int h, int w) {
    *out = NULL;
    DaclUNet *m = calloc(1, sizeof *m);
    if (!m) return DACL_FAIL(DACL_ENOMEM, "out of memory creating the U-Net");
    int rc = plan(m, cfg, max_n, h, w);
    if (rc) {
        free(m);
        return rc;
    }
    m->params = calloc(m->nparams, sizeof(float));
    m->grads = calloc(m->nparams, sizeof(float));
    m->momentum = calloc(m->nparams, sizeof(float));
    m->stats = calloc(m->nstats, sizeof(float));
    /* malloc, not calloc: every activation is written before it is read */
    m->acts = malloc(m->act_floats * sizeof(float));
    m->pool_idx = malloc(m->idx_bytes ? m->idx_bytes : 1);
    m->nthreads = 1;
    m->rowstats = malloc(sizeof(float) * 2 * (size_t)max_n * m->cfg.widths[0] * h);
    m->ws = malloc((m->ws_floats ? m->ws_floats : 1) * sizeof(float));
    if (!m->params || !m->grads || !m->momentum || !m->stats || !m->acts || !m->pool_idx || !m->ws ||
        !m->rowstats) {
        size_t mb = m->act_floats * sizeof(float) >> 20;
        dacl_unet_free(m);
        return DACL_FAIL(DACL_ENOMEM,
                         "out of memory allocating the U-Net for batch %d at %dx%d (%zu MiB of "
                         "activations)",
                         max_n, h, w, mb);
    }
    point_activations(m);
    for (size_t i = 0; i < m->nstats; i++) m->stats[i] = 0.0f;
    *out = m;
    return DACL_OK;
}

void dacl_unet_free(DaclUNet *m) {
    if (!m) return;
    free(m->params);
    free(m->grads);
    free(m->momentum);
    free(m->stats);
    free(m->acts);
    free(m->pool_idx);
    free(m->ws);
    free(m->tgrads);
    free(m->rowstats);
    free(m);
}

int dacl_unet_set_pool(DaclUNet *m, DaclPool *pool) {
    int nt = dacl_pool_threads(pool);
    float *ws = malloc((m->ws_floats ? m->ws_floats : 1) * sizeof(float) * nt);
    float *tg = nt > 1 ? calloc(m->nparams * (size_t)(nt - 1), sizeof(float)) : NULL;
    if (!ws || (nt > 1 && !tg)) {
        free(ws);
        free(tg);
        return DACL_FAIL(DACL_ENOMEM, "out of memory for %d threads' workspaces", nt);
    }
    free(m->ws);
    free(m->tgrads);
    m->ws = ws;
    m->tgrads = tg;
    m->team = pool;
    m->nthreads = nt;
    return DACL_OK;
}

void dacl_unet_init(DaclUNet *m, DaclRng *rng) {
    for (int i = 0; i < m->ntensors; i++) {
        const DaclParamInfo *t = &m->tensors[i];
        float *p = m->params + t->offset;
        if (t->kind == DACL_PARAM_BN_W || t->kind == DACL_PARAM_BN_B) {
            float v = t->kind == DACL_PARAM_BN_W ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->numel; j++) p[j] = v;
        } else {
            /* kaiming_uniform(a = sqrt 5) and the bias rule both give U(+-1/sqrt(fan_in)) */
            float bound = 1.0f / sqrtf((float)t->fan_in);
            for (size_t j = 0; j < t->numel; j++)
                p[j] = (2.0f * dacl_rng_uniform(rng) - 1.0f) * bound;
        }
    }
    /* running mean 0, running var 1 for each BN layer (mean[C] then var[C]) */
    for (int i = 0; i < NBLOCKS; i++) {
        const Block *b = &m->blk[i];
        for (int half = 0; half < 2; half++) {
            float *s = m->stats + b->bn0 + (size_t)half * 2 * b->cout;
            for (int c = 0; c < b->cout; c++) s[c] = 0.0f, s[b->cout + c] = 1.0f;
        }
    }
    memset(m->momentum, 0, m->nparams * sizeof(float));
    memset(m->grads, 0, m->nparams * sizeof(float));
}

size_t dacl_unet_num_params(const DaclUNet *m) { return m->nparams; }
int dacl_unet_num_tensors(const DaclUNet *m) { return m->ntensors; }
const DaclParamInfo *dacl_unet_tensor(const DaclUNet *m, int i) { return &m->tensors[i]; }
float *dacl_unet_params(DaclUNet *m) { return m->params; }
float *dacl_unet_grads(DaclUNet *m) { return m->grads; }
float *dacl_unet_momentum(DaclUNet *m) { return m->momentum; }
float *dacl_unet_bn_stats(DaclUNet *m) { return m->stats; }
size_t dacl_unet_bn_stats_count(const DaclUNet *m) { return m->nstats; }
const DaclUNetConfig *dacl_unet_config(const DaclUNet *m) { return &m->cfg; }
int dacl_unet_max_batch(const DaclUNet *m) { return m->max_n; }
const float *dacl_unet_logits(const DaclUNet *m) { return m->logits; }

void dacl_unet_zero_grad(DaclUNet *m) { memset(m->grads, 0, m->nparams * sizeof(float)); }

/* ---------------------------------------------------- parallel kernels -- */
/* Each op is split so that members never write the same memory: convolutions
 * by image (and rows), BN by channel, element-wise ops by range. Parameter
 * gradients of convolutions go to a per-member block (member 0: the model's
 * own), summed in member order after backward, so results depend on the
 * thread count but never on timing. */

static float *tws(const DaclUNet *m, int tid) { return m->ws + (size_t)tid * m->ws_floats; }
static float *tgrad(const DaclUNet *m, int tid) {
    return tid == 0 ? m->grads : m->tgrads + (size_t)(tid - 1) * m->nparams;
}

typedef struct {
    DaclUNet *m;
    float *y;
    const float *x, *w, *b, *dy;
    float *dx;
    int N, C, H, W, OC, K, t; /* t: tensor index of the weight (bias at t + 1) */
    float slope, p;
    uint64_t key;
    float *mean, *rstd, *rm, *rv;
    const float *gamma, *beta, *out;
    const uint8_t *cidx;
    uint8_t *idx;
    size_t n;
    int CB;
    float lr, momentum, wd;
} Job;

static void job_conv_fwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->N * j->H, tid, nt, &a, &e);
    const size_t HW = (size_t)j->H * j->W;
    while (a < e) {
        int n = a / j->H, h0 = a % j->H, h1 = (e - n * j->H) < j->H ? e - n * j->H : j->H;
        dacl_conv_image_forward_rows_stats(j->y + n * j->OC * HW, j->x + n * j->C * HW, j->w, j->b, j->C,
                                           j->H, j->W, j->OC, j->K, h0, h1, tws(j->m, tid),
                                           j->rm ? j->rm + (size_t)n * j->OC * j->H * 2 : NULL);
        a = n * j->H + h1;
    }
}

static void job_conv_bwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->N, tid, nt, &a, &e);
    const size_t HW = (size_t)j->H * j->W;
    float *g = tgrad(j->m, tid);
    float *dw = g + j->m->tensors[j->t].offset, *db = g + j->m->tensors[j->t + 1].offset;
    for (int n = a; n < e; n++)
        dacl_conv_image_backward(j->dx ? j->dx + n * j->C * HW : NULL, dw, db, j->dy + n * j->OC * HW,
                                 j->x + n * j->C * HW, j->w, j->C, j->H, j->W, j->OC, j->K,
                                 tws(j->m, tid));
}

static void job_convt_fwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->N, tid, nt, &a, &e);
    const size_t HW = (size_t)j->H * j->W;
    for (int n = a; n < e; n++)
        dacl_convt_image_forward(j->y + n * j->OC * 4 * HW, j->x + n * j->C * HW, j->w, j->b, j->C, j->H,
                                 j->W, j->OC, tws(j->m, tid));
}

static void job_convt_bwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->N, tid, nt, &a, &e);
    const size_t HW = (size_t)j->H * j->W;
    float *g = tgrad(j->m, tid);
    float *dw = g + j->m->tensors[j->t].offset, *db = g + j->m->tensors[j->t + 1].offset;
    for (int n = a; n < e; n++)
        dacl_convt_image_backward(j->dx ? j->dx + n * j->C * HW : NULL, dw, db,
                                  j->dy + n * j->OC * 4 * HW, j->x + n * j->C * HW, j->w, j->C, j->H,
                                  j->W, j->OC, tws(j->m, tid));
}

static void job_bn_train(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->C, tid, nt, &a, &e);
    dacl_bn_act_forward_rows(j->y, j->mean, j->rstd, j->x, j->m->rowstats, j->gamma, j->beta, j->rm,
                             j->rv, j->N, j->C, j->H, j->W, BN_MOMENTUM, BN_EPS, j->slope, a, e);
}

static void job_bn_eval(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->C, tid, nt, &a, &e);
    dacl_bn_act_forward_eval_ch(j->y, j->x, j->gamma, j->beta, j->rm, j->rv, j->N, j->C, j->H * j->W,
                                BN_EPS, j->slope, a, e);
}

static void job_bn_bwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->C, tid, nt, &a, &e);
    float *g = j->m->grads; /* channels are disjoint: no per-member copy needed */
    dacl_bn_act_backward_ch(j->dx, g + j->m->tensors[j->t].offset, g + j->m->tensors[j->t + 1].offset,
                            j->dy, j->x, j->beta, j->mean, j->rstd, j->gamma, j->N, j->C, j->H * j->W,
                            j->slope, a, e);
}

static void job_dropout(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(nt * 64, tid, nt, &a, &e); /* 64 chunks a member keeps indices in size_t */
    size_t i0 = j->n * (size_t)a / ((size_t)nt * 64), i1 = j->n * (size_t)e / ((size_t)nt * 64);
    dacl_dropout_range(j->y, j->x, i0, i1, j->p, j->key);
}

static void job_add(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(nt * 64, tid, nt, &a, &e);
    size_t i0 = j->n * (size_t)a / ((size_t)nt * 64), i1 = j->n * (size_t)e / ((size_t)nt * 64);
    for (size_t i = i0; i < i1; i++) j->y[i] += j->x[i];
}

static void job_pool_fwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->N * j->C, tid, nt, &a, &e);
    size_t in_plane = (size_t)j->H * j->W, out_plane = in_plane / 4;
    dacl_maxpool2x2_forward(j->y + a * out_plane, j->idx + a * out_plane, j->x + a * in_plane, 1, e - a,
                            j->H, j->W);
}

static void job_pool_bwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->N * j->C, tid, nt, &a, &e);
    size_t in_plane = (size_t)j->H * j->W, out_plane = in_plane / 4;
    dacl_maxpool2x2_backward(j->dx + a * in_plane, j->dy + a * out_plane, j->cidx + a * out_plane, 1,
                             e - a, j->H, j->W);
}

static void job_concat_fwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->N, tid, nt, &a, &e);
    size_t HW = (size_t)j->H * j->W;
    dacl_concat_forward(j->y + a * (j->C + j->CB) * HW, j->x + a * j->C * HW, j->b + a * j->CB * HW,
                        e - a, j->C, j->CB, (int)HW);
}

static void job_concat_bwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->N, tid, nt, &a, &e);
    size_t HW = (size_t)j->H * j->W;
    dacl_concat_backward(j->dx + a * j->C * HW, j->y + a * j->CB * HW, j->dy + a * (j->C + j->CB) * HW,
                         e - a, j->C, j->CB, (int)HW);
}

static void run(DaclUNet *m, void (*fn)(void *, int, int), Job *j) {
    j->m = m;
    dacl_pool_run(m->team, fn, j);
}

/* stats: also collect row statistics for a training-mode BN that follows */
static void conv_fwd(DaclUNet *m, float *y, const float *x, int t, int N, int C, int H, int W, int OC,
                     int stats) {
    Job j = {.y = y, .x = x, .w = m->params + m->tensors[t].offset,
             .b = m->params + m->tensors[t + 1].offset, .N = N, .C = C, .H = H, .W = W, .OC = OC, .K = 3,
             .rm = stats ? m->rowstats : NULL};
    run(m, job_conv_fwd, &j);
}

static void conv_bwd(DaclUNet *m, float *dx, const float *dy, const float *x, int t, int N, int C, int H,
                     int W, int OC) {
    Job j = {.dx = dx, .dy = dy, .x = x, .w = m->params + m->tensors[t].offset, .t = t, .N = N, .C = C,
             .H = H, .W = W, .OC = OC, .K = 3};
    run(m, job_conv_bwd, &j);
}

static void add_into(DaclUNet *m, float *dst, const float *src, size_t n) {
    Job j = {.y = dst, .x = src, .n = n};
    run(m, job_add, &j);
}

static void job_reduce(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    const DaclUNet *m = j->m;
    int a, e;
    dacl_split(nt * 64, tid, nt, &a, &e);
    size_t i0 = m->nparams * (size_t)a / ((size_t)nt * 64), i1 = m->nparams * (size_t)e / ((size_t)nt * 64);
    for (int t = 1; t < m->nthreads; t++) {
        float *g = m->tgrads + (size_t)(t - 1) * m->nparams;
        for (size_t i = i0; i < i1; i++) m->grads[i] += g[i], g[i] = 0.0f;
    }
}

static void job_sgd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    DaclUNet *m = j->m;
    int a, e;
    dacl_split(nt * 64, tid, nt, &a, &e);
    size_t i0 = m->nparams * (size_t)a / ((size_t)nt * 64), i1 = m->nparams * (size_t)e / ((size_t)nt * 64);
    dacl_sgd_step(m->params + i0, m->grads + i0, m->momentum + i0, i1 - i0, j->lr, j->momentum, j->wd);
}

void dacl_unet_sgd_step(DaclUNet *m, float lr, float momentum, float wd) {
    Job j = {.lr = lr, .momentum = momentum, .wd = wd};
    run(m, job_sgd, &j);
}

/* ----------------------------------------------------------- forward -- */

#define P(m, t) ((m)->params + (m)->tensors[t].offset)

static void bn_fwd(DaclUNet *m, float *y, float *mean, float *rstd, const float *c, int t, float *rs,
                   int N, int C, int H, int W, int train) {
    Job j = {.y = y, .mean = mean, .rstd = rstd, .x = c, .gamma = P(m, t), .beta = P(m, t + 1),
             .rm = rs, .rv = rs + C, .N = N, .C = C, .H = H, .W = W, .slope = LRELU};
    run(m, train ? job_bn_train : job_bn_eval, &j);
}

static void block_forward(DaclUNet *m, Block *b, const float *x, int N, int train, uint64_t key) {
    const int HW = b->H * b->W, C = b->cout, t = b->t0;
    float *rs1 = m->stats + b->bn0, *rs2 = rs1 + 2 * C;
    b->x = x;
    conv_fwd(m, b->c1, x, t, N, b->cin, b->H, b->W, C, train);
    bn_fwd(m, b->a1, b->m1, b->r1, b->c1, t + 2, rs1, N, C, b->H, b->W, train);
    const float *in2 = b->a1;
    if (train && b->p > 0.0f) {
        Job j = {.y = b->d1, .x = b->a1, .n = (size_t)N * C * HW, .p = b->p, .key = key};
        run(m, job_dropout, &j);
        in2 = b->d1;
    }
    conv_fwd(m, b->c2, in2, t + 4, N, C, b->H, b->W, C, train);
    bn_fwd(m, b->y, b->m2, b->r2, b->c2, t + 6, rs2, N, C, b->H, b->W, train);
}

/* each encoder block draws its dropout mask from its own key */
static uint64_t block_key(uint64_t key, int i) {
    return dacl_hash64(key + 0x632be59bd9b4e019ULL * (uint64_t)(i + 1));
}

int dacl_unet_forward(DaclUNet *m, const float *x, int n, int train, uint64_t dropout_key) {
    if (n < 1 || n > m->max_n)
        return DACL_FAIL(DACL_EINVAL, "batch of %d images, the model was planned for 1..%d", n,
                         m->max_n);
    const int *w = m->cfg.widths;
    const float *in = x;
    for (int l = 0; l < 5; l++) {
        if (l > 0) {
            Block *prev = &m->blk[l - 1];
            Job j = {.y = m->pool[l], .idx = m->idx[l], .x = prev->y, .N = n, .C = prev->cout,
                     .H = prev->H, .W = prev->W};
            run(m, job_pool_fwd, &j);
            in = m->pool[l];
        }
        block_forward(m, &m->blk[l], in, n, train, block_key(dropout_key, l));
    }
    const float *prev = m->blk[4].y;
    for (int d = 0; d < 4; d++) {
        int l = 3 - d;
        int h = m->H >> (l + 1), wd = m->W >> (l + 1);
        Job jt = {.y = m->up[d], .x = prev, .w = P(m, m->t_up[d]), .b = P(m, m->t_up[d] + 1), .N = n,
                  .C = w[l + 1], .H = h, .W = wd, .OC = w[l]};
        run(m, job_convt_fwd, &jt);
        Job jc = {.y = m->cat[d], .x = m->blk[l].y, .b = m->up[d], .N = n, .C = w[l], .CB = w[l],
                  .H = 2 * h, .W = 2 * wd};
        run(m, job_concat_fwd, &jc);
        block_forward(m, &m->blk[5 + d], m->cat[d], n, train, 0);
        prev = m->blk[5 + d].y;
    }
    conv_fwd(m, m->logits, prev, m->t_out, n, w[0], m->H, m->W, m->cfg.classes, 0);
    m->last_n = n;
    m->last_train = train;
    m->last_key = dropout_key;
    return DACL_OK;
}

const float *dacl_unet_feature(const DaclUNet *m, int which, int *c, int *h, int *w) {
    if (which < DACL_FEAT_BOTTLENECK || which > DACL_FEAT_UP4) return NULL;
    const Block *b = which == DACL_FEAT_BOTTLENECK ? &m->blk[4] : &m->blk[5 + which - DACL_FEAT_UP1];
    if (c) *c = b->cout;
    if (h) *h = b->H;
    if (w) *w = b->W;
    return b->y;
}

/* ---------------------------------------------------------- backward -- */

static void bn_bwd(DaclUNet *m, float *g, const float *c, const float *mean, const float *rstd, int t,
                   int N, int C, int HW) {
    Job j = {.dx = g, .dy = g, .x = c, .mean = (float *)mean, .rstd = (float *)rstd, .gamma = P(m, t),
             .beta = P(m, t + 1), .t = t, .N = N, .C = C, .H = HW, .W = 1, .slope = LRELU};
    run(m, job_bn_bwd, &j);
}

/* dy in g (overwritten); tmp is scratch; the input gradient lands in g when
 * want_dx. Both buffers must hold N * max(cin, cout) * H * W floats. */
static void block_backward(DaclUNet *m, Block *b, int N, float *g, float *tmp, int want_dx,
                           uint64_t key) {
    const int HW = b->H * b->W, C = b->cout, t = b->t0;
    bn_bwd(m, g, b->c2, b->m2, b->r2, t + 6, N, C, HW);
    const float *in2 = b->p > 0.0f ? b->d1 : b->a1;
    conv_bwd(m, tmp, g, in2, t + 4, N, C, b->H, b->W, C);
    if (b->p > 0.0f) {
        Job j = {.y = tmp, .x = tmp, .n = (size_t)N * C * HW, .p = b->p, .key = key};
        run(m, job_dropout, &j);
    }
    bn_bwd(m, tmp, b->c1, b->m1, b->r1, t + 2, N, C, HW);
    conv_bwd(m, want_dx ? g : NULL, tmp, b->x, t, N, b->cin, b->H, b->W, C);
}

int dacl_unet_backward(DaclUNet *m, const float *dlogits, const float *dfeat, int feat_which) {
    if (!m->last_train || m->last_n < 1)
        return DACL_FAIL(DACL_EINVAL, "U-Net backward without a training forward");
    const int N = m->last_n;
    const int *w = m->cfg.widths;
    uint64_t key = m->last_key;
    conv_bwd(m, m->s0, dlogits, m->blk[8].y, m->t_out, N, w[0], m->H, m->W, m->cfg.classes);
    /* decoder, last block first; the gradient of D_d.y is in s0 */
    for (int d = 3; d >= 0; d--) {
        int l = 3 - d;
        Block *b = &m->blk[5 + d];
        int h = m->H >> (l + 1), wd = m->W >> (l + 1);
        if (dfeat && feat_which == DACL_FEAT_UP1 + d)
            add_into(m, m->s0, dfeat, (size_t)N * b->cout * b->H * b->W);
        block_backward(m, b, N, m->s0, m->s1, 1, 0);
        /* s0 = d cat -> dskip[l] (first writer) and the convT output's gradient in s1 */
        Job jc = {.dx = m->dskip[l], .y = m->s1, .dy = m->s0, .N = N, .C = w[l], .CB = w[l],
                  .H = 2 * h, .W = 2 * wd};
        run(m, job_concat_bwd, &jc);
        const float *prev = d ? m->blk[5 + d - 1].y : m->blk[4].y;
        Job jt = {.dx = m->s0, .dy = m->s1, .x = prev, .w = P(m, m->t_up[d]), .t = m->t_up[d], .N = N,
                  .C = w[l + 1], .H = h, .W = wd, .OC = w[l]};
        run(m, job_convt_bwd, &jt);
    }
    /* encoder, bottleneck first; the gradient of E4.y is in s0 */
    float *g = m->s0;
    if (dfeat && feat_which == DACL_FEAT_BOTTLENECK)
        add_into(m, g, dfeat, (size_t)N * w[4] * m->blk[4].H * m->blk[4].W);
    for (int l = 4; l >= 0; l--) {
        Block *b = &m->blk[l];
        float *tmp = g == m->s0 ? m->s1 : m->s0;
        block_backward(m, b, N, g, tmp, l > 0, block_key(key, l));
        if (l == 0) break;
        Block *prev = &m->blk[l - 1];
        Job jp = {.dx = m->dskip[l - 1], .dy = g, .cidx = m->idx[l], .N = N, .C = prev->cout,
                  .H = prev->H, .W = prev->W};
        run(m, job_pool_bwd, &jp);
        g = m->dskip[l - 1];
    }
    if (m->nthreads > 1) {
        Job jr = {0};
        run(m, job_reduce, &jr);
    }
    return DACL_OK;
}
