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
 * parameters, gradients, momentum, BN statistics, activations and the
 * workspaces are then one allocation each, carved by offsets. Per block only
 * the two conv outputs (c1, c2) and the block output y are kept: the middle
 * activation act(bn(c1)) (and its dropout) is recomputed one image at a time
 * where a convolution reads it, from the dropout mask kept as bits (drawn
 * once in the training forward); an encoder block's y is written straight
 * into the decoder's concat, and so is the transposed conv's output. */
#include "dacl/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dacl/error.h"
#include "ops_internal.h"
#include "team.h"

#define NBLOCKS 9 /* E0..E4, D0..D3 */
#define LRELU 0.01f

typedef struct {
    int cin, cout, H, W; /* input and output channels, spatial size */
    float p;             /* dropout after the first activation */
    int t0;              /* index of conv1.weight; conv1.b, bn1.w, bn1.b, conv2.w/b, bn2.w/b follow */
    size_t bn0;          /* offset of this block's first BN running mean in the stats block */
    const float *x;      /* input of the last forward [N,cin,H,W] */
    float *c1, *c2;      /* conv outputs before BN [N,cout,H,W] */
    float *y;            /* block output, image n at y + n * ystride */
    size_t ystride;
    float *m1, *r1, *m2, *r2;         /* [cout] batch mean and 1/std of each BN */
    float *sc1, *sh1, *sc2, *sh2;     /* [cout] each BN's affine (scale, shift) */
    uint64_t *mask;      /* p > 0: dropout keep bits of the last training forward (XForm.mask) */
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
    float *rowstats;                          /* [N,C,H,2] row statistics for the next BN */
    uint64_t *masks;                          /* every block's dropout bits, one block */
    Team team;                                /* workspaces and per-member gradients */
    Block blk[NBLOCKS];
    int t_up[4], t_out;      /* tensor index of each ConvT weight and the output conv weight */
    float *pool[5];          /* pool[l] = maxpool(E[l-1].y), l = 1..4 */
    uint8_t *idx[5];         /* argmax of pool[l] */
    float *cat[4];           /* decoder d's input [E_l.y, u], [N, 2 w_l, H_l, W_l] */
    float *logits;           /* [N,classes,H,W] */
    float *s0, *s1;          /* backward scratch, N * w0 * H * W each */
    float *dskip[4];         /* gradient of E[l].y, l = 0..3 */
    int last_n, last_train;
    uint64_t last_key;       /* dropout key of the last forward */
    size_t act_floats, idx_bytes, ws_floats, xbuf_floats, scratch_floats, rowstat_floats;
    size_t mask_words;       /* of masks */
    size_t xmask_words;      /* a member's bits of one image (team.h) */
    size_t wu_floats;        /* Winograd weights of the largest layer that takes it */
    size_t gslot_floats;     /* weight-gradient slots of the largest layer (team.h) */
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
    if (max_n < 1) return DACL_FAIL(DACL_EINVAL, "U-Net batch must be at least 1, got %d", max_n);
    if (H < 16 || W < 16 || H % 16 || W % 16)
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
    const size_t N = (size_t)max_n;
    size_t a = 0, ix = 0, ws = 0, xb = 0, sc = 0, rs = 0, wu = 0, mk = 0, xmk = 0;
    for (int i = 0; i < NBLOCKS; i++) {
        Block *b = &m->blk[i];
        size_t t = N * b->cout * b->H * b->W;
        a += 2 * t + 8 * (size_t)b->cout;          /* c1, c2, statistics and affines */
        if (i == 4 || i >= 5) a += t;              /* y (E0..E3 live in the concats) */
        if (b->p > 0.0f) {                         /* dropout bits: the batch's, an image's */
            size_t img_words = (size_t)b->cout * dacl_mask_words((size_t)b->H * b->W);
            mk += N * img_words;
            if (img_words > xmk) xmk = img_words;
        }
        /* conv1 reads cin channels, conv2 cout; the band height shrinks as
         * channels grow, so neither size bounds the other */
        size_t cws = dacl_conv2d_ws(b->cin, b->H, b->W, 3), cws2 = dacl_conv2d_ws(b->cout, b->H, b->W, 3);
        if (cws2 > cws) cws = cws2;
        if (cws > ws) ws = cws;
        /* Winograd's transformed weights (shared) and scratch (a member's
         * workspace), for each of the block's two convolutions that take it */
        const int cin[2] = {b->cin, b->cout};
        for (int k = 0; k < 2; k++)
            for (int bwd = 0; bwd < 2; bwd++) {
                if (!dacl_conv3x3_use_wino(cin[k], b->H, b->W, b->cout, bwd)) continue;
                size_t u = dacl_wino_u_floats(cin[k], b->cout);
                /* conv2's backward also takes BN1's sums (wino_rows) */
                size_t sc = bwd && k == 1 ? dacl_wino_bn_scratch_floats(b->cout, b->cout)
                                          : dacl_wino_scratch_floats(bwd ? b->cout : cin[k]);
                if (u > wu) wu = u;
                if (sc > ws) ws = sc;
            }
        for (int k = 0; k < 2; k++)
            if (dacl_conv3x3_use_wino_dw(cin[k], b->H, b->W, b->cout)) {
                size_t sc = dacl_wino_dw_scratch_floats(cin[k], b->cout);
                if (sc > ws) ws = sc;
            }
        size_t img = (size_t)b->cout * b->H * b->W;
        if (img > xb) xb = img;
        if (t > sc) sc = t;
        if (N * b->cout * b->H * 2 > rs) rs = N * b->cout * b->H * 2;
    }
    for (int l = 1; l < 5; l++) {
        size_t t = N * w[l - 1] * (H >> l) * (W >> l);
        a += t;  /* pool[l] */
        ix += t; /* its argmax */
    }
    for (int d = 0; d < 4; d++) {
        int l = 3 - d;
        size_t t = N * w[l] * (H >> l) * (W >> l);
        a += 2 * t; /* cat */
        a += t;     /* dskip[l] */
        size_t tws = dacl_convt2x2_ws(w[l], H >> (l + 1), W >> (l + 1));
        if (tws > ws) ws = tws;
    }
    a += N * cfg->classes * H * W;
    m->act_floats = a + 2 * sc;
    m->idx_bytes = ix;
    m->ws_floats = ws;
    m->wu_floats = wu;
    m->xbuf_floats = xb;
    m->scratch_floats = sc;
    m->rowstat_floats = rs;
    m->mask_words = mk;
    m->xmask_words = xmk;
    /* every convolution's weight and bias gradient goes through the slots */
    size_t gs = 0;
    for (int t = 0; t + 1 < m->ntensors; t++) {
        if (m->tensors[t].kind != DACL_PARAM_CONV_W) continue;
        size_t g = team_grad_slot_floats(m->tensors[t].numel + m->tensors[t + 1].numel, max_n);
        if (g > gs) gs = g;
    }
    m->gslot_floats = gs;
    return DACL_OK;
}

/* Bytes of the team's per-member buffers for `threads` members. */
static size_t team_bytes(const DaclUNet *m, int threads) {
    return sizeof(float) * ((m->ws_floats + m->xbuf_floats) * (size_t)threads + m->wu_floats +
                            m->gslot_floats) +
           sizeof(uint64_t) * m->xmask_words * (size_t)threads;
}

int dacl_unet_size(const DaclUNetConfig *cfg, int max_n, int h, int w, DaclUNetSize *out) {
    DaclUNet *m = malloc(sizeof *m);
    if (!m) return DACL_FAIL(DACL_ENOMEM, "out of memory planning the U-Net");
    int rc = plan(m, cfg, max_n, h, w);
    if (rc == DACL_OK) {
        out->parameters = m->nparams;
        out->param_bytes = sizeof(float) * (3 * m->nparams + m->nstats);
        out->act_bytes = sizeof(float) * (m->act_floats + m->rowstat_floats) + m->idx_bytes +
                         sizeof(uint64_t) * m->mask_words;
        out->ws_bytes = team_bytes(m, 1);
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
    for (int d = 0; d < 4; d++) {
        int l = 3 - d;
        size_t t = N * w[l] * (m->H >> l) * (m->W >> l);
        m->cat[d] = TAKE(2 * t);
        m->dskip[l] = TAKE(t);
    }
    for (int i = 0; i < NBLOCKS; i++) {
        Block *b = &m->blk[i];
        size_t img = (size_t)b->cout * b->H * b->W, t = N * img;
        b->c1 = TAKE(t);
        b->c2 = TAKE(t);
        if (i < 4) { /* E_l.y is the first half of decoder (3 - l)'s concat */
            b->y = m->cat[3 - i];
            b->ystride = 2 * img;
        } else {
            b->y = TAKE(t);
            b->ystride = img;
        }
        float *v = TAKE(8 * (size_t)b->cout);
        b->m1 = v, b->r1 = v + b->cout, b->m2 = v + 2 * b->cout, b->r2 = v + 3 * b->cout;
        b->sc1 = v + 4 * b->cout, b->sh1 = v + 5 * b->cout;
        b->sc2 = v + 6 * b->cout, b->sh2 = v + 7 * b->cout;
    }
    uint64_t *mk = m->masks;
    for (int i = 0; i < NBLOCKS; i++) {
        Block *b = &m->blk[i];
        if (!(b->p > 0.0f)) continue;
        b->mask = mk;
        mk += N * b->cout * dacl_mask_words((size_t)b->H * b->W);
    }
    for (int l = 1; l < 5; l++) {
        size_t t = N * w[l - 1] * (m->H >> l) * (m->W >> l);
        m->pool[l] = TAKE(t);
        m->idx[l] = ix;
        ix += t;
    }
    m->logits = TAKE(N * m->cfg.classes * m->H * m->W);
    m->s0 = TAKE(m->scratch_floats);
    m->s1 = TAKE(m->scratch_floats);
#undef TAKE
}

/* n floats on a 64-byte boundary (free() releases them). glibc's large
 * blocks start 16 bytes past a page, so every vector load and store of the
 * direct convolutions split two cache lines: on 64-byte rows the weight
 * gradient runs 10-18 % faster (conv-bench --misalign). Every tensor carved
 * from these blocks is a multiple of 16 floats for the U-Net's shapes, so
 * they all stay aligned. */
static float *alloc_aligned(size_t n) {
    size_t bytes = (n ? n : 1) * sizeof(float);
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
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
    m->acts = alloc_aligned(m->act_floats);
    m->pool_idx = malloc(m->idx_bytes ? m->idx_bytes : 1);
    m->rowstats = malloc(m->rowstat_floats * sizeof(float));
    m->masks = malloc(sizeof(uint64_t) * (m->mask_words ? m->mask_words : 1));
    int trc = dacl_unet_set_pool(m, NULL);
    if (!m->params || !m->grads || !m->momentum || !m->stats || !m->acts || !m->pool_idx ||
        !m->rowstats || !m->masks || trc) {
        size_t mb = m->act_floats * sizeof(float) >> 20;
        dacl_unet_free(m);
        return DACL_FAIL(DACL_ENOMEM,
                         "out of memory allocating the U-Net for batch %d at %dx%d (%zu MiB of "
                         "activations)",
                         max_n, h, w, mb);
    }
    point_activations(m);
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
    free(m->rowstats);
    free(m->masks);
    free(m->team.ws);
    free(m->team.xbuf);
    free(m->team.xmask);
    free(m->team.gslots);
    team_free_runs(&m->team);
    free(m->team.wu);
    free(m);
}

int dacl_unet_set_pool(DaclUNet *m, DaclPool *pool) {
    int nt = dacl_pool_threads(pool);
    Team t = {.pool = pool, .n = nt, .ws_floats = m->ws_floats, .xbuf_floats = m->xbuf_floats,
              .xmask_words = m->xmask_words, .grads = m->grads, .nparams = m->nparams,
              .gslot_floats = m->gslot_floats};
    t.ws = malloc(sizeof(float) * (m->ws_floats ? m->ws_floats : 1) * nt);
    t.xbuf = alloc_aligned(m->xbuf_floats * nt);
    t.xmask = malloc(sizeof(uint64_t) * (m->xmask_words ? m->xmask_words : 1) * nt);
    t.gslots = alloc_aligned(m->gslot_floats);
    t.wu_floats = m->wu_floats;
    t.wu = m->wu_floats ? malloc(sizeof(float) * m->wu_floats) : NULL;
    int runs = team_alloc_runs(&t);
    if (!t.ws || !t.xbuf || !t.xmask || !t.gslots || runs || (m->wu_floats && !t.wu)) {
        free(t.ws);
        free(t.xbuf);
        free(t.xmask);
        free(t.gslots);
        team_free_runs(&t);
        free(t.wu);
        return DACL_FAIL(DACL_ENOMEM, "out of memory for %d threads' workspaces", nt);
    }
    free(m->team.ws);
    free(m->team.xbuf);
    free(m->team.xmask);
    free(m->team.gslots);
    team_free_runs(&m->team);
    free(m->team.wu);
    m->team = t;
    return DACL_OK;
}

void dacl_unet_no_wino(DaclUNet *m) {
    free(m->team.wu);
    m->team.wu = NULL;
    m->team.wu_floats = 0;
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

void dacl_unet_sgd_step(DaclUNet *m, float lr, float momentum, float wd) {
    team_sgd(&m->team, m->params, m->grads, m->momentum, m->nparams, lr, momentum, wd);
}

/* ----------------------------------------------------------- forward -- */

#define P(m, t) ((m)->params + (m)->tensors[t].offset)
#define OFF(m, t) ((m)->tensors[t].offset)

/* The transform that turns c1 into conv2's input: BN1 + LeakyReLU + dropout,
 * whose bits a training forward stores in b->mask and the backward reads. */
static XForm block_xform(const Block *b, int train, uint64_t key, int mask_ready) {
    XForm xf = {.scale = b->sc1, .shift = b->sh1, .slope = LRELU,
                .p = train ? b->p : 0.0f, .key = key, .mask = b->mask, .mask_ready = mask_ready};
    return xf;
}

/* pool, idx (may be NULL): where the block output's 2x2 max-pool goes */
static void block_forward(DaclUNet *m, Block *b, const float *x, int N, int train, uint64_t key,
                          float *pool, uint8_t *idx) {
    const int C = b->cout, t = b->t0;
    float *rs1 = m->stats + b->bn0, *rs2 = rs1 + 2 * C;
    float *rows = train ? m->rowstats : NULL;
    b->x = x;
    team_conv_fwd(&m->team, b->c1, x, NULL, P(m, t), P(m, t + 1), N, b->cin, b->H, b->W, C, rows);
    team_bn_prepare(&m->team, train, b->m1, b->r1, b->sc1, b->sh1, rows, P(m, t + 2), P(m, t + 3),
                    rs1, rs1 + C, N, C, b->H, b->W);
    XForm xf = block_xform(b, train, key, 0);
    team_conv_fwd(&m->team, b->c2, b->c1, &xf, P(m, t + 4), P(m, t + 5), N, C, b->H, b->W, C, rows);
    team_bn_prepare(&m->team, train, b->m2, b->r2, b->sc2, b->sh2, rows, P(m, t + 6), P(m, t + 7),
                    rs2, rs2 + C, N, C, b->H, b->W);
    team_bn_apply(&m->team, b->y, b->ystride, b->c2, b->sc2, b->sh2, N, C, b->H, b->W, LRELU, pool,
                  idx);
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
    /* each encoder block but the last also pools its output for the next */
    for (int l = 0; l < 5; l++) {
        block_forward(m, &m->blk[l], in, n, train, block_key(dropout_key, l),
                      l < 4 ? m->pool[l + 1] : NULL, l < 4 ? m->idx[l + 1] : NULL);
        if (l < 4) in = m->pool[l + 1];
    }
    const float *prev = m->blk[4].y;
    for (int d = 0; d < 4; d++) {
        int l = 3 - d;
        int h = m->H >> (l + 1), wd = m->W >> (l + 1);
        size_t img = (size_t)w[l] * 4 * h * wd;
        /* the transposed conv writes the second half of the concat */
        team_convt_fwd(&m->team, m->cat[d] + img, 2 * img, prev, P(m, m->t_up[d]),
                       P(m, m->t_up[d] + 1), n, w[l + 1], h, wd, w[l]);
        block_forward(m, &m->blk[5 + d], m->cat[d], n, train, 0, NULL, NULL);
        prev = m->blk[5 + d].y;
    }
    team_conv_fwd(&m->team, m->logits, prev, NULL, P(m, m->t_out), P(m, m->t_out + 1), n, w[0], m->H,
                  m->W, m->cfg.classes, NULL);
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

/* dy in g (overwritten); tmp is scratch. The input gradient goes to dx
 * (channels [0, csplit)) and dx2 (the rest); dx NULL: not needed. Each BN's
 * backward also sums the bias gradient of the convolution before it, and
 * BN1's takes the dropout's backward on the fly (from the forward's bits).
 * pool_dy (may be NULL): the gradient of the max-pool of b's output
 * (indices pool_idx), added to g by BN2's backward as it reads it. */
static void block_backward(DaclUNet *m, Block *b, int N, float *g, float *tmp, float *dx, float *dx2,
                           int csplit, uint64_t key, const float *pool_dy, const uint8_t *pool_idx) {
    const int HW = b->H * b->W, C = b->cout, t = b->t0;
    team_bn_bwd(&m->team, g, OFF(m, t + 6), OFF(m, t + 7), OFF(m, t + 5), NULL, 0.0f, b->c2,
                P(m, t + 7), b->m2, b->r2, P(m, t + 6), N, C, HW, LRELU, pool_dy, pool_idx, b->W,
                NULL);
    XForm xf = block_xform(b, 1, key, 1);
    /* conv2's input gradient also sums BN1's first pass per image as it
     * writes tmp, reading c1 once for those sums and for its own weight
     * gradient's input (where it takes Winograd), into the row statistics'
     * block, free in the backward ([N,C,H,2] floats hold [N,C,2] doubles) */
    double *sums = (size_t)N * C * 4 <= m->rowstat_floats ? (double *)(void *)m->rowstats : NULL;
    if (!sums)
        team_conv_bwd(&m->team, tmp, NULL, C, OFF(m, t + 4), TEAM_BIAS_DONE, g, b->c1, &xf,
                      P(m, t + 4), N, C, b->H, b->W, C);
    else if (!team_conv_bwd_bnsums(&m->team, tmp, OFF(m, t + 4), TEAM_BIAS_DONE, g, b->c1, &xf,
                                   P(m, t + 4), N, C, b->H, b->W, C, sums, b->m1))
        sums = NULL; /* not Winograd's: BN1 makes its first pass */
    team_bn_bwd(&m->team, tmp, OFF(m, t + 2), OFF(m, t + 3), OFF(m, t + 1),
                b->p > 0.0f ? b->mask : NULL, b->p, b->c1, P(m, t + 3), b->m1, b->r1, P(m, t + 2), N,
                C, HW, LRELU, NULL, NULL, b->W, sums);
    team_conv_bwd(&m->team, dx, dx2, csplit, OFF(m, t), TEAM_BIAS_DONE, tmp, b->x, NULL, P(m, t), N,
                  b->cin, b->H, b->W, C);
}

int dacl_unet_backward(DaclUNet *m, const float *dlogits, const float *dfeat, int feat_which) {
    if (!m->last_train || m->last_n < 1)
        return DACL_FAIL(DACL_EINVAL, "U-Net backward without a training forward");
    const int N = m->last_n;
    const int *w = m->cfg.widths;
    uint64_t key = m->last_key;
    Team *t = &m->team;
    t->grads = m->grads;
    team_conv_bwd(t, m->s0, NULL, w[0], OFF(m, m->t_out), OFF(m, m->t_out + 1), dlogits, m->blk[8].y,
                  NULL, P(m, m->t_out), N, w[0], m->H, m->W, m->cfg.classes);
    /* decoder, last block first; g holds the gradient of D_d.y */
    float *g = m->s0, *o = m->s1;
    for (int d = 3; d >= 0; d--) {
        int l = 3 - d;
        Block *b = &m->blk[5 + d];
        int h = m->H >> (l + 1), wd = m->W >> (l + 1);
        if (dfeat && feat_which == DACL_FEAT_UP1 + d)
            team_add(t, g, dfeat, (size_t)N * b->cout * b->H * b->W);
        /* d cat: the skip half to dskip[l], the upsampled half to g (free by then) */
        block_backward(m, b, N, g, o, m->dskip[l], g, w[l], 0, NULL, NULL);
        const float *prev = d ? m->blk[5 + d - 1].y : m->blk[4].y;
        team_convt_bwd(t, o, OFF(m, m->t_up[d]), OFF(m, m->t_up[d] + 1), g, prev, P(m, m->t_up[d]), N,
                       w[l + 1], h, wd, w[l]);
        float *s = g;
        g = o, o = s;
    }
    /* encoder, bottleneck first */
    if (dfeat && feat_which == DACL_FEAT_BOTTLENECK)
        team_add(t, g, dfeat, (size_t)N * w[4] * m->blk[4].H * m->blk[4].W);
    /* block l's input gradient is that of the max-pool of block l-1's
     * output: block l-1's BN2 backward adds it into dskip as it reads it */
    const float *pool_dy = NULL;
    const uint8_t *pool_idx = NULL;
    for (int l = 4; l >= 0; l--) {
        Block *b = &m->blk[l];
        float *tmp = g == m->s0 ? m->s1 : m->s0;
        block_backward(m, b, N, g, tmp, l > 0 ? g : NULL, NULL, b->cin, block_key(key, l), pool_dy,
                       pool_idx);
        if (l == 0) break;
        pool_dy = g, pool_idx = m->idx[l];
        g = m->dskip[l - 1];
    }
    return DACL_OK;
}
