/* The contrastive module's primitives (method.md §3): multi-scale kNN
 * density (the paper's FDA, Eq. 3-5), the per-class soft density-guided
 * contrastive loss (SDCL, Eq. 9-10) and the class memory bank.
 *
 * Dims: D embedding size, nq query rows, ns = n1 + n2 set rows, K = the
 * largest k of knn, q anchors, j negatives. Embeddings are row-major and
 * unit-norm, so a cosine is a dot product and a block of them one GEMM. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dacl/error.h"
#include "contrast_internal.h"
#include "dacl/method.h"

#define DRB 64  /* query rows per similarity block: DRB x ns floats a member */
#define LRB 256 /* anchors per logit block in the loss */

/* ------------------------------------------------------------ density -- */

size_t dacl_density_ws(int set_rows, int kmax, int threads) {
    return (size_t)threads * ((size_t)DRB * (set_rows > 0 ? set_rows : 1) + (size_t)kmax);
}

static void sift_down(float *h, int n, int i) {
    float v = h[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

/* top [K] = the K largest of v[0..n) but v[skip], descending: a min-heap of
 * the best K so far, so most values cost one compare with its root. */
static void top_k(float *top, const float *v, int n, int skip, int K) {
    int m = 0, j = 0;
    for (; j < n && m < K; j++)
        if (j != skip) top[m++] = v[j];
    for (int i = K / 2 - 1; i >= 0; i--) sift_down(top, K, i);
    for (; j < n; j++) {
        if (v[j] > top[0] && j != skip) {
            top[0] = v[j];
            sift_down(top, K, 0);
        }
    }
    for (int e = K - 1; e > 0; e--) { /* heap sort: the minimum goes last */
        float t = top[0];
        top[0] = top[e];
        top[e] = t;
        sift_down(top, e, 0);
    }
}

typedef struct {
    float *dens, *ws;
    const float *x, *y1, *y2;
    const int *knn;
    int nq, n1, n2, self_at, d, nk;
} DensityJob;

static void job_density(void *ctx, int tid, int nt) {
    DensityJob *j = ctx;
    const int ns = j->n1 + j->n2, K = j->knn[j->nk - 1];
    float *g = j->ws + (size_t)tid * ((size_t)DRB * ns + K), *top = g + (size_t)DRB * ns;
    int b0, b1;
    dacl_split((j->nq + DRB - 1) / DRB, tid, nt, &b0, &b1);
    for (int b = b0; b < b1; b++) {
        int r0 = b * DRB, n = j->nq - r0 < DRB ? j->nq - r0 : DRB;
        const float *xb = j->x + (size_t)r0 * j->d;
        if (j->n1 > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, j->n1, j->d, 1.0f, xb, j->d, j->y1,
                        j->d, 0.0f, g, ns);
        if (j->n2 > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, j->n2, j->d, 1.0f, xb, j->d, j->y2,
                        j->d, 0.0f, g + j->n1, ns);
        for (int i = 0; i < n; i++) {
            top_k(top, g + (size_t)i * ns, ns, j->self_at < 0 ? -1 : j->self_at + r0 + i, K);
            double s = 0.0, d = 0.0;
            int t = 0;
            for (int k = 0; k < j->nk; k++) {
                for (; t < j->knn[k]; t++) s += top[t];
                d += s / j->knn[k];
            }
            j->dens[r0 + i] = (float)(d / j->nk);
        }
    }
}

void dacl_density(float *dens, const float *x, int nq, const float *y1, int n1, const float *y2,
                  int n2, int self_at, int d, const int *knn, int nk, float *ws, DaclPool *pool) {
    if (nq <= 0) return;
    DensityJob j = {.dens = dens, .ws = ws, .x = x, .y1 = y1, .y2 = y2, .knn = knn,
                    .nq = nq, .n1 = n1, .n2 = n2, .self_at = self_at, .d = d, .nk = nk};
    dacl_pool_run(pool, job_density, &j);
}

/* --------------------------------------------------------- class loss -- */

size_t dacl_class_loss_ws(int q, int j) {
    int b = q < LRB ? q : LRB;
    return (size_t)(b > 0 ? b : 1) * (size_t)(j > 0 ? j : 1) + 2 * (size_t)(b > 0 ? b : 1) + (size_t)q;
}

/* Every mode's gradient has the form dm_i = a_i c + b_i sum_j p_ij n_j with
 * p_i. the softmax over the negatives' logits (and the positive's, for NONE
 * and WEIGHTED), so a block of anchors is two GEMMs:
 *   NONE      a_i = (p_i0 - 1) / (q tau)               b_i = 1 / (q tau)
 *   WEIGHTED  a_i = w_i (p_i0 - 1) / tau               b_i = w_i / tau
 *   LITERAL   a_i = (w_i - 1/q) - 1 / (q tau)          b_i = 1 / (q tau)
 * (LITERAL: mean_i of -log q - log w_i - s_i + lse_j(s_ij), with the
 * softmax w not detached, w the softmax of t_i = m_i.c.) */
double dacl_class_loss(float *dm, const float *m, int q, const float *c, const float *neg, int j,
                       int d, double tau, DaclPositiveness mode, float scale, float *ws) {
    if (q <= 0 || j <= 0) return 0.0;
    float *t = ws, *blk = ws + q, *acoef = blk + (size_t)(q < LRB ? q : LRB) * j;
    /* t_i = m_i.c, and the softmax over the anchors (WEIGHTED, LITERAL) */
    double tmax = -INFINITY, z = 0.0;
    for (int i = 0; i < q; i++) {
        double s = 0.0;
        for (int k = 0; k < d; k++) s += (double)m[(size_t)i * d + k] * c[k];
        t[i] = (float)s;
        if (s > tmax) tmax = s;
    }
    for (int i = 0; i < q; i++) z += exp(t[i] - tmax);
    const double logz = tmax + log(z), inv_q = 1.0 / q, inv_tau = 1.0 / tau;
    const int with_pos = mode != DACL_POS_LITERAL;
    double loss = 0.0;
    for (int b0 = 0; b0 < q; b0 += LRB) {
        int n = q - b0 < LRB ? q - b0 : LRB;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, j, d, (float)inv_tau, m + (size_t)b0 * d, d,
                    neg, d, 0.0f, blk, j);
        for (int i = 0; i < n; i++) {
            float *row = blk + (size_t)i * j;
            double si = t[b0 + i] * inv_tau, mx = with_pos ? si : -INFINITY, sum = 0.0;
            for (int k = 0; k < j; k++)
                if (row[k] > mx) mx = row[k];
            for (int k = 0; k < j; k++) sum += exp(row[k] - mx);
            if (with_pos) sum += exp(si - mx);
            double lse = mx + log(sum), w = exp(t[b0 + i] - logz), a, bc;
            if (mode == DACL_POS_NONE) {
                loss += (lse - si) * inv_q;
                a = (exp(si - lse) - 1.0) * inv_q * inv_tau, bc = inv_q * inv_tau;
            } else if (mode == DACL_POS_WEIGHTED) {
                loss += w * (lse - si);
                a = w * (exp(si - lse) - 1.0) * inv_tau, bc = w * inv_tau;
            } else {
                loss += (-log((double)q) - (t[b0 + i] - logz) - si + lse) * inv_q;
                a = (w - inv_q) - inv_q * inv_tau, bc = inv_q * inv_tau;
            }
            if (!dm) continue;
            acoef[i] = (float)(a * scale);
            for (int k = 0; k < j; k++) row[k] = (float)(exp(row[k] - lse) * bc * scale);
        }
        if (!dm) continue;
        float *out = dm + (size_t)b0 * d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, j, 1.0f, blk, j, neg, d, 0.0f, out, d);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < d; k++) out[(size_t)i * d + k] += acoef[i] * c[k];
    }
    return loss;
}

/* --------------------------------------------------------------- bank -- */

struct DaclBank {
    int classes, cap, dim;
    int32_t *count, *pos;
    uint64_t *version;
    float *data, *dens; /* [classes, cap, dim], [classes, cap] */
};

void dacl_bank_free(DaclBank *b) {
    if (!b) return;
    free(b->count), free(b->pos), free(b->version), free(b->data), free(b->dens);
    free(b);
}

int dacl_bank_create(DaclBank **out, int classes, int capacity, int dim) {
    *out = NULL;
    if (classes < 1 || classes > DACL_CL_MAX_CLASSES || capacity < 1 || dim < 1)
        return DACL_FAIL(DACL_EINVAL, "memory bank: bad shape (%d classes of %d x %d)", classes, capacity,
                         dim);
    DaclBank *b = calloc(1, sizeof *b);
    if (!b) return DACL_FAIL(DACL_ENOMEM, "out of memory for the memory bank");
    b->classes = classes, b->cap = capacity, b->dim = dim;
    size_t rows = (size_t)classes * capacity;
    b->count = calloc((size_t)classes, sizeof *b->count);
    b->pos = calloc((size_t)classes, sizeof *b->pos);
    b->version = calloc((size_t)classes, sizeof *b->version);
    b->data = calloc(rows * dim, sizeof(float));
    b->dens = calloc(rows, sizeof(float));
    if (!b->count || !b->pos || !b->version || !b->data || !b->dens) {
        dacl_bank_free(b);
        return DACL_FAIL(DACL_ENOMEM, "out of memory for the memory bank (%zu entries of %d)", rows, dim);
    }
    *out = b;
    return DACL_OK;
}

void dacl_bank_clear(DaclBank *b) {
    size_t rows = (size_t)b->classes * b->cap;
    memset(b->data, 0, rows * b->dim * sizeof(float));
    memset(b->dens, 0, rows * sizeof(float));
    for (int k = 0; k < b->classes; k++) b->count[k] = 0, b->pos[k] = 0, b->version[k]++;
}

void dacl_bank_push(DaclBank *b, int cls, const float *emb, const float *dens, int n) {
    float *data = b->data + (size_t)cls * b->cap * b->dim, *dd = b->dens + (size_t)cls * b->cap;
    for (int i = 0; i < n; i++) {
        int p = b->pos[cls];
        memcpy(data + (size_t)p * b->dim, emb + (size_t)i * b->dim, (size_t)b->dim * sizeof(float));
        dd[p] = dens ? dens[i] : NAN;
        b->pos[cls] = p + 1 == b->cap ? 0 : p + 1;
        if (b->count[cls] < b->cap) b->count[cls]++;
    }
    if (n > 0) b->version[cls]++;
}

int dacl_bank_count(const DaclBank *b, int cls) { return b->count[cls]; }
int dacl_bank_position(const DaclBank *b, int cls) { return b->pos[cls]; }
uint64_t dacl_bank_version(const DaclBank *b, int cls) { return b->version[cls]; }
const float *dacl_bank_data(const DaclBank *b, int cls) {
    return b->data + (size_t)cls * b->cap * b->dim;
}
const float *dacl_bank_density(const DaclBank *b, int cls) { return b->dens + (size_t)cls * b->cap; }
int dacl_bank_capacity(const DaclBank *b) { return b->cap; }

size_t dacl_bank_state_bytes(const DaclBank *b) {
    size_t rows = (size_t)b->classes * b->cap;
    return (size_t)b->classes * 8 + rows * ((size_t)b->dim + 1) * sizeof(float);
}

void dacl_bank_state_write(const DaclBank *b, unsigned char **p) {
    size_t rows = (size_t)b->classes * b->cap;
    for (int k = 0; k < b->classes; k++) {
        le_put_u32(p, (uint32_t)b->count[k]);
        le_put_u32(p, (uint32_t)b->pos[k]);
    }
    le_put_f32s(p, b->data, rows * b->dim);
    le_put_f32s(p, b->dens, rows);
}

int dacl_bank_state_read(DaclBank *b, const unsigned char **p) {
    size_t rows = (size_t)b->classes * b->cap;
    const unsigned char *q = *p;
    for (int k = 0; k < b->classes; k++) {
        int32_t c = (int32_t)le_get_u32(&q), at = (int32_t)le_get_u32(&q);
        /* a ring that is not full has written exactly its count */
        if (c < 0 || c > b->cap || at < 0 || at >= b->cap || (c < b->cap && at != c))
            return DACL_FAIL(DACL_EFORMAT, "memory bank: class %d holds %d entries at slot %d of %d", k,
                             c, at, b->cap);
    }
    for (int k = 0; k < b->classes; k++) {
        b->count[k] = (int32_t)le_get_u32(p);
        b->pos[k] = (int32_t)le_get_u32(p);
        b->version[k]++;
    }
    le_get_f32s(p, b->data, rows * b->dim);
    le_get_f32s(p, b->dens, rows);
    return DACL_OK;
}
