/* Ops on a thread team: see team.h for how work is split. */
#include "team.h"

#include <string.h>

#include "ops_internal.h"

#define BN_MOMENTUM 0.1f
#define BN_EPS 1e-5f

typedef struct {
    Team *t;
    float *y, *dx, *dx2;
    const float *x, *w, *b, *dy;
    const XForm *xf;
    int N, C, H, W, OC, csplit, train, wino, wino_dw;
    size_t nstride, dw, db, n;
    float *rowstats, *mean, *rstd, *scale, *shift, *rmean, *rvar;
    const float *gamma, *beta, *cscale, *cshift;
    float slope, p, lr, momentum, wd;
    uint64_t key;
    uint8_t *idx;
    const uint8_t *cidx;
    float *buf;
    const float *g;
} Job;

static float *member_ws(const Team *t, int tid) { return t->ws + (size_t)tid * t->ws_floats; }
static float *member_grads(const Team *t, int tid) {
    return tid == 0 ? t->grads : t->tgrads + (size_t)(tid - 1) * t->nparams;
}

static void run(Team *t, void (*fn)(void *, int, int), Job *j) {
    j->t = t;
    dacl_pool_run(t->pool, fn, j);
}

/* [i0, i1) of n split in 64 chunks a member, so huge n stays in size_t */
static void split_range(size_t n, int tid, int nt, size_t *i0, size_t *i1) {
    int a, e;
    dacl_split(nt * 64, tid, nt, &a, &e);
    *i0 = n * (size_t)a / ((size_t)nt * 64);
    *i1 = n * (size_t)e / ((size_t)nt * 64);
}

/* The input of image n as the convolution sees it: raw, or xform applied
 * into the member's buffer. */
static const float *conv_input(const Job *j, int tid, int n) {
    const size_t chw = (size_t)j->C * j->H * j->W;
    const float *x = j->x + n * chw;
    const XForm *xf = j->xf;
    if (!xf) return x;
    float *out = j->t->xbuf + (size_t)tid * j->t->xbuf_floats;
    const size_t HW = (size_t)j->H * j->W;
    uint32_t thresh = dacl_dropout_threshold(xf->p);
    float keep_scale = xf->p > 0.0f ? 1.0f / (1.0f - xf->p) : 1.0f;
    const float slope = xf->slope;
    for (int c = 0; c < j->C; c++) {
        const float *restrict s = x + c * HW;
        float *restrict d = out + c * HW;
        const float sc = xf->scale[c], sh = xf->shift[c];
        for (size_t i = 0; i < HW; i++) {
            float z = s[i] * sc + sh;
            d[i] = z > 0.0f ? z : z * slope;
        }
        if (xf->p > 0.0f) {
            size_t base = n * chw + c * HW;
            for (size_t i = 0; i < HW; i++)
                d[i] = dacl_dropout_keep(xf->key, base + i, thresh) ? d[i] * keep_scale : 0.0f;
        }
    }
    return out;
}

/* ------------------------------------------------------- convolutions -- */

static void job_wino_u(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->OC, tid, nt, &a, &e);
    dacl_wino_weights(j->t->wu, j->w, j->C, j->OC, a, e);
}

/* 1 if the layer takes Winograd in this direction and the team's buffers
 * were planned for it; then its weights are transformed into t->wu */
static int wino_prepare(Team *t, const float *w, int C, int H, int W, int OC, int backward) {
    if (!dacl_conv3x3_use_wino(C, H, W, OC, backward)) return 0;
    if (!t->wu || t->wu_floats < dacl_wino_u_floats(C, OC) ||
        t->ws_floats < dacl_wino_scratch_floats(backward ? OC : C))
        return 0;
    Job u = {.w = w, .C = C, .OC = OC};
    run(t, job_wino_u, &u);
    return 1;
}

static void job_conv_fwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->N * j->H, tid, nt, &a, &e);
    const size_t HW = (size_t)j->H * j->W;
    while (a < e) {
        int n = a / j->H, h0 = a % j->H, h1 = e - n * j->H < j->H ? e - n * j->H : j->H;
        float *y = j->y + n * j->OC * HW;
        float *st = j->rowstats ? j->rowstats + (size_t)n * j->OC * j->H * 2 : NULL;
        if (j->wino)
            dacl_conv_image_forward_rows_wino(y, conv_input(j, tid, n), j->t->wu, j->b, j->C, j->H,
                                              j->W, j->OC, h0, h1, member_ws(j->t, tid), st);
        else
            dacl_conv_image_forward_rows_stats(y, conv_input(j, tid, n), j->w, j->b, j->C, j->H,
                                               j->W, j->OC, 3, h0, h1, member_ws(j->t, tid), st);
        a = n * j->H + h1;
    }
}

void team_conv_fwd(Team *t, float *y, const float *x, const XForm *xf, const float *w,
                   const float *b, int N, int C, int H, int W, int OC, float *rowstats) {
    Job j = {.y = y, .x = x, .xf = xf, .w = w, .b = b, .N = N, .C = C, .H = H, .W = W, .OC = OC,
             .rowstats = rowstats};
    j.wino = wino_prepare(t, w, C, H, W, OC, 0);
    run(t, job_conv_fwd, &j);
}

static void job_conv_bwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->N, tid, nt, &a, &e);
    const size_t HW = (size_t)j->H * j->W;
    float *g = member_grads(j->t, tid);
    for (int n = a; n < e; n++) {
        float *dx = j->dx ? j->dx + n * j->csplit * HW : NULL;
        float *dx2 = j->dx2 ? j->dx2 + n * (j->C - j->csplit) * HW : NULL;
        if (j->wino)
            dacl_conv_image_backward_wino(dx, dx2, j->csplit, g + j->dw, g + j->db,
                                          j->dy + n * j->OC * HW, conv_input(j, tid, n), j->t->wu,
                                          j->C, j->H, j->W, j->OC, j->wino_dw, member_ws(j->t, tid));
        else
            dacl_conv_image_backward_split(dx, dx2, j->csplit, g + j->dw, g + j->db,
                                           j->dy + n * j->OC * HW, conv_input(j, tid, n), j->w, j->C,
                                           j->H, j->W, j->OC, member_ws(j->t, tid));
    }
}

void team_conv_bwd(Team *t, float *dx, float *dx2, int csplit, size_t dw, size_t db, const float *dy,
                   const float *x, const XForm *xf, const float *w, int N, int C, int H, int W,
                   int OC) {
    Job j = {.dx = dx, .dx2 = dx2, .csplit = csplit, .dw = dw, .db = db, .dy = dy, .x = x, .xf = xf,
             .w = w, .N = N, .C = C, .H = H, .W = W, .OC = OC};
    j.wino = dx && wino_prepare(t, w, C, H, W, OC, 1);
    j.wino_dw = j.wino && dacl_conv3x3_use_wino_dw(C, H, W, OC) &&
                t->ws_floats >= dacl_wino_dw_scratch_floats(C, OC);
    run(t, job_conv_bwd, &j);
}

static void job_convt_fwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->N, tid, nt, &a, &e);
    const size_t HW = (size_t)j->H * j->W;
    for (int n = a; n < e; n++)
        dacl_convt_image_forward(j->y + n * j->nstride, j->x + n * j->C * HW, j->w, j->b, j->C, j->H,
                                 j->W, j->OC, member_ws(j->t, tid));
}

void team_convt_fwd(Team *t, float *y, size_t y_nstride, const float *x, const float *w,
                    const float *b, int N, int C, int H, int W, int OC) {
    Job j = {.y = y, .nstride = y_nstride, .x = x, .w = w, .b = b, .N = N, .C = C, .H = H, .W = W,
             .OC = OC};
    run(t, job_convt_fwd, &j);
}

static void job_convt_bwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->N, tid, nt, &a, &e);
    const size_t HW = (size_t)j->H * j->W;
    float *g = member_grads(j->t, tid);
    for (int n = a; n < e; n++)
        dacl_convt_image_backward(j->dx ? j->dx + n * j->C * HW : NULL, g + j->dw, g + j->db,
                                  j->dy + n * j->OC * 4 * HW, j->x + n * j->C * HW, j->w, j->C, j->H,
                                  j->W, j->OC, member_ws(j->t, tid));
}

void team_convt_bwd(Team *t, float *dx, size_t dw, size_t db, const float *dy, const float *x,
                    const float *w, int N, int C, int H, int W, int OC) {
    Job j = {.dx = dx, .dw = dw, .db = db, .dy = dy, .x = x, .w = w, .N = N, .C = C, .H = H, .W = W,
             .OC = OC};
    run(t, job_convt_bwd, &j);
}

/* ---------------------------------------------------------- batchnorm -- */

static void job_bn_prepare(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->C, tid, nt, &a, &e);
    if (j->train)
        dacl_bn_prepare_rows(j->mean, j->rstd, j->scale, j->shift, j->rowstats, j->gamma, j->beta,
                             j->rmean, j->rvar, j->N, j->C, j->H, j->W, BN_MOMENTUM, BN_EPS, a, e);
    else
        dacl_bn_prepare_eval(j->scale, j->shift, j->gamma, j->beta, j->rmean, j->rvar, BN_EPS, a, e);
}

void team_bn_prepare(Team *t, int train, float *mean, float *rstd, float *scale, float *shift,
                     const float *rowstats, const float *gamma, const float *beta, float *rmean,
                     float *rvar, int N, int C, int H, int W) {
    Job j = {.train = train, .mean = mean, .rstd = rstd, .scale = scale, .shift = shift,
             .rowstats = (float *)rowstats, .gamma = gamma, .beta = beta, .rmean = rmean,
             .rvar = rvar, .N = N, .C = C, .H = H, .W = W};
    /* per channel the work is a few thousand row merges: not worth a fork */
    j.t = t;
    job_bn_prepare(&j, 0, 1);
}

static void job_bn_apply(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->C, tid, nt, &a, &e);
    dacl_bn_apply(j->y, j->nstride, j->x, j->cscale, j->cshift, j->N, j->C, j->H, j->slope, a, e);
}

void team_bn_apply(Team *t, float *out, size_t out_nstride, const float *in, const float *scale,
                   const float *shift, int N, int C, int HW, float slope) {
    Job j = {.y = out, .nstride = out_nstride, .x = in, .cscale = scale, .cshift = shift, .N = N,
             .C = C, .H = HW, .slope = slope};
    run(t, job_bn_apply, &j);
}

static void job_bn_bwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->C, tid, nt, &a, &e);
    float *g = j->t->grads; /* channels are disjoint: no per-member copy needed */
    dacl_bn_act_backward_ch(j->y, g + j->dw, g + j->db, j->y, j->x, j->beta, j->mean, j->rstd,
                            j->gamma, j->N, j->C, j->H, j->slope, a, e);
}

void team_bn_bwd(Team *t, float *g, size_t dgamma, size_t dbeta, const float *c, const float *beta,
                 const float *mean, const float *rstd, const float *gamma, int N, int C, int HW,
                 float slope) {
    Job j = {.y = g, .dw = dgamma, .db = dbeta, .x = c, .beta = beta, .mean = (float *)mean,
             .rstd = (float *)rstd, .gamma = gamma, .N = N, .C = C, .H = HW, .slope = slope};
    run(t, job_bn_bwd, &j);
}

/* -------------------------------------------------------- element-wise -- */

static void job_dropout(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    size_t i0, i1;
    split_range(j->n, tid, nt, &i0, &i1);
    dacl_dropout_range(j->y, j->x, i0, i1, j->p, j->key);
}

void team_dropout(Team *t, float *y, const float *x, size_t n, float p, uint64_t key) {
    Job j = {.y = y, .x = x, .n = n, .p = p, .key = key};
    run(t, job_dropout, &j);
}

static void job_add(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    size_t i0, i1;
    split_range(j->n, tid, nt, &i0, &i1);
    for (size_t i = i0; i < i1; i++) j->y[i] += j->x[i];
}

void team_add(Team *t, float *y, const float *x, size_t n) {
    Job j = {.y = y, .x = x, .n = n};
    run(t, job_add, &j);
}

static void job_pool_fwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->N, tid, nt, &a, &e);
    size_t out_img = (size_t)j->C * j->H * j->W / 4;
    for (int n = a; n < e; n++)
        dacl_maxpool2x2_forward(j->y + n * out_img, j->idx + n * out_img, j->x + n * j->nstride, 1, j->C,
                                j->H, j->W);
}

void team_pool_fwd(Team *t, float *y, uint8_t *idx, const float *x, size_t x_nstride, int N, int C,
                   int H, int W) {
    Job j = {.y = y, .idx = idx, .x = x, .nstride = x_nstride, .N = N, .C = C, .H = H, .W = W};
    run(t, job_pool_fwd, &j);
}

static void job_pool_bwd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    int a, e;
    dacl_split(j->N * j->C, tid, nt, &a, &e);
    size_t in_plane = (size_t)j->H * j->W, out_plane = in_plane / 4;
    dacl_maxpool2x2_backward(j->dx + a * in_plane, j->dy + a * out_plane, j->cidx + a * out_plane, 1,
                             e - a, j->H, j->W);
}

void team_pool_bwd(Team *t, float *dx, const float *dy, const uint8_t *idx, int N, int C, int H,
                   int W) {
    Job j = {.dx = dx, .dy = dy, .cidx = idx, .N = N, .C = C, .H = H, .W = W};
    run(t, job_pool_bwd, &j);
}

/* ---------------------------------------------------------- optimiser -- */

static void job_reduce(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    const Team *t = j->t;
    size_t i0, i1;
    split_range(t->nparams, tid, nt, &i0, &i1);
    for (int m = 1; m < t->n; m++) {
        float *g = t->tgrads + (size_t)(m - 1) * t->nparams;
        for (size_t i = i0; i < i1; i++) t->grads[i] += g[i], g[i] = 0.0f;
    }
}

void team_reduce_grads(Team *t) {
    if (t->n < 2) return;
    Job j = {0};
    run(t, job_reduce, &j);
}

static void job_sgd(void *ctx, int tid, int nt) {
    const Job *j = ctx;
    size_t i0, i1;
    split_range(j->n, tid, nt, &i0, &i1);
    dacl_sgd_step(j->y + i0, j->g + i0, j->buf + i0, i1 - i0, j->lr, j->momentum, j->wd);
}

void team_sgd(Team *t, float *w, const float *g, float *buf, size_t n, float lr, float momentum,
              float wd) {
    Job j = {.y = w, .g = g, .buf = buf, .n = n, .lr = lr, .momentum = momentum, .wd = wd};
    run(t, job_sgd, &j);
}
