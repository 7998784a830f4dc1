/* The training loop: supervised (one U-Net) and CPS co-training (two),
 * method.md §2 and §4, with validation, checkpoints and exact resume.
 *
 * One iteration: draw a batch (labeled_batch labeled + the rest unlabeled),
 * forward every model, losses, one backward per model, one SGD step each
 * (poly learning rate), then events. Everything that changes is in the
 * models (parameters, momentum, BN statistics), the sampler's counters and
 * the iteration number; dropout masks are keyed by (seed, iteration, model).
 * That is what a checkpoint stores, so a resumed run is bit-identical. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dacl/error.h"
#include "dacl/eval.h"
#include "dacl/method.h"
#include "dacl/train.h"

/* per iteration: 11 co-training scalars, 7 contrastive ones, and per
 * foreground class the anchors of each model and the bank's fill */
#define BASE_METRICS 20

struct DaclTrainer {
    DaclJobConfig cfg;
    char config_hash[17];
    char *config_json;
    char work_dir[4096];
    DaclDataset ds;
    DaclSliceSet lab, unl;
    DaclSampler sampler;
    DaclPool *pool;     /* all the job's threads: the sampler, the contrastive module */
    /* Two models train side by side when the threads split evenly: each on
     * its own half of them (mpool), the pair running one model's forward and
     * backward on each half, and the half done first lending its pair thread
     * to the other model's ops until both are done. A member delayed by
     * another process then holds up only its own model's op, and the other
     * half takes over its chunks; NULL when the models share `pool` op by op. */
    DaclPool *pair, *mpool[2];
    int nmodels, classes, B, L, ph, pw;
    DaclUNet *net[2];
    float *x, *probs[2], *dlogits[2];
    uint8_t *y, *pseudo[2];
    float *bn_saved[2]; /* BN statistics before a forward, to undo a non-finite step */
    /* DACL (method.md §3): the contrastive module on feature map cl_layer
     * (cl_c x cl_h x cl_w), per-pixel classes at that size, head BN statistics
     * before the loss (undone with the U-Nets' on a non-finite step) */
    DaclContrast *cl;
    int cl_layer, cl_c, cl_h, cl_w;
    uint8_t *cl_cls;
    float *cl_saved[2];
    char (*cl_names)[64]; /* per-class metric names: [3 * classes] */
    DaclTiming tm; /* where this process's time went */
    /* one iteration's metrics, sized at set-up */
    int metrics_cap;
    const char **metric_names;
    double *metric_values;
    long iter;
    double best_dice;
    long best_iter;
    int best_model;
    int nval;
    DaclVolume *val_img;
    DaclLabelVolume *val_lab;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void sink_log(const DaclSink *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sink_log(const DaclSink *s, const char *fmt, ...) {
    if (!s || !s->log) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    s->log(s->ctx, buf);
}

/* ------------------------------------------------------------ set-up -- */

static int make_dir(const char *path) {
    if (mkdir(path, 0755) == 0 || errno == EEXIST) return DACL_OK;
    return DACL_FAIL(DACL_EIO, "%s: cannot create the folder: %s", path, strerror(errno));
}

/* A folder with a manifest, or a phantom generated once into work_dir. */
static int open_dataset(DaclTrainer *t, const char *data_root) {
    const char *path = t->cfg.dataset.path;
    DaclPhantomKind kind;
    int ph = dacl_phantom_parse_spec(path, &kind);
    if (ph < 0) return dacl_error_code();
    char dir[4096 + 64];
    if (ph == 1) {
        snprintf(dir, sizeof dir, "%s/phantom-%s", t->work_dir, dacl_phantom_kind_name(kind));
        char manifest[sizeof dir + 32];
        snprintf(manifest, sizeof manifest, "%s/%s", dir, DACL_MANIFEST);
        struct stat st;
        if (stat(manifest, &st) != 0) {
            /* the same phantom for every job, so runs on it compare */
            DaclPhantomOptions opt = {.size = 128, .force = 1};
            DACL_TRY(dacl_phantom_write(dir, kind, DACL_PHANTOM_CASES,
                                        1000 + (uint64_t)t->cfg.dataset.split_seed, &opt));
        }
    } else if (path[0] == '/' || !data_root) {
        snprintf(dir, sizeof dir, "%s", path);
    } else {
        snprintf(dir, sizeof dir, "%s/%s", data_root, path);
    }
    return dacl_dataset_load(dir, &t->ds);
}

static int load_data(DaclTrainer *t) {
    const DaclDataset *ds = &t->ds;
    uint8_t *mask = calloc((size_t)ds->train.n + 1, 1);
    if (!mask) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    int ncases = 0;
    int rc = dacl_dataset_labeled(ds, t->cfg.dataset.labeled, mask, &ncases);
    if (rc == DACL_OK) rc = dacl_slices_load(&t->lab, ds, &ds->train, mask, 1);
    if (rc == DACL_OK && t->nmodels == 2) {
        rc = dacl_slices_load(&t->unl, ds, &ds->train, mask, 0);
        if (rc == DACL_OK && t->unl.n == 0)
            rc = DACL_FAIL(DACL_EINVAL,
                           "dataset.labeled: all %d training patients are labeled, so %s has no "
                           "unlabeled data; label fewer or use method.name = supervised",
                           dacl_dataset_train_patients(ds), dacl_method_name(t->cfg.method.name));
    }
    free(mask);
    DACL_TRY(rc);
    if (ds->val.n == 0) return DACL_FAIL(DACL_EINVAL, "%s: the dataset has no validation cases", ds->name);
    t->nval = ds->val.n;
    t->val_img = calloc((size_t)t->nval, sizeof *t->val_img);
    t->val_lab = calloc((size_t)t->nval, sizeof *t->val_lab);
    if (!t->val_img || !t->val_lab) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    for (int i = 0; i < t->nval; i++)
        DACL_TRY(dacl_dataset_load_case(ds, &ds->val.cases[i], &t->val_img[i], &t->val_lab[i]));
    return DACL_OK;
}

static int alloc_buffers(DaclTrainer *t) {
    size_t px = (size_t)t->B * t->ph * t->pw;
    t->x = malloc(px * sizeof(float));
    t->y = malloc(px);
    if (!t->x || !t->y) return DACL_FAIL(DACL_ENOMEM, "out of memory for the batch");
    for (int m = 0; m < t->nmodels; m++) {
        t->probs[m] = malloc(px * t->classes * sizeof(float));
        t->dlogits[m] = malloc(px * t->classes * sizeof(float));
        t->pseudo[m] = malloc(px);
        t->bn_saved[m] = malloc(dacl_unet_bn_stats_count(t->net[m]) * sizeof(float));
        if (!t->probs[m] || !t->dlogits[m] || !t->pseudo[m] || !t->bn_saved[m])
            return DACL_FAIL(DACL_ENOMEM, "out of memory for the batch");
    }
    return DACL_OK;
}

/* A metric-name-safe form of a label name ("right kidney" -> "right_kidney"). */
static void metric_label(char *dst, size_t n, const char *name) {
    size_t i = 0;
    for (; name[i] && i + 1 < n; i++) {
        char ch = name[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '_' || ch == '-';
        dst[i] = ok ? ch : '_';
    }
    dst[i] = '\0';
}

/* The contrastive module of method = dacl: two heads on feature map
 * method.feature_layer, one bank, initialised from their own seed. */
static int setup_contrast(DaclTrainer *t, const DaclUNetConfig *uc) {
    const DaclJobConfig *c = &t->cfg;
    DACL_TRY(dacl_contrast_check_config(c));
    t->cl_layer = c->method.feature_layer;
    DACL_TRY(dacl_contrast_feature_shape(uc, t->cl_layer, t->ph, t->pw, &t->cl_c, &t->cl_h, &t->cl_w));
    if (t->cl_h < 1 || t->cl_w < 1)
        return DACL_FAIL(DACL_EINVAL, "method.feature_layer: a %dx%d patch has no pixels at that layer",
                         t->ph, t->pw);
    DACL_TRY(dacl_contrast_create(&t->cl, c, 2, t->classes, t->cl_c, t->B, t->cl_h, t->cl_w, t->pool));
    DaclRng rng;
    dacl_rng_seed(&rng, dacl_hash64(c->train.seed * 2 + 2));
    dacl_contrast_init(t->cl, &rng);
    t->cl_cls = malloc((size_t)t->B * t->cl_h * t->cl_w);
    t->cl_names = calloc((size_t)3 * t->classes, sizeof *t->cl_names);
    if (!t->cl_cls || !t->cl_names) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    for (int m = 0; m < 2; m++) {
        t->cl_saved[m] = malloc(dacl_head_bn_stats_count(dacl_contrast_head(t->cl, m)) * sizeof(float));
        if (!t->cl_saved[m]) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    }
    for (int k = 0; k < t->classes; k++) {
        char label[48];
        snprintf(label, sizeof label, "%d", k);
        for (int i = 0; i < t->ds.n_labels; i++)
            if (t->ds.labels[i].value == k) metric_label(label, sizeof label, t->ds.labels[i].name);
        snprintf(t->cl_names[3 * k], sizeof t->cl_names[0], "cl_anchors_a.%s", label);
        snprintf(t->cl_names[3 * k + 1], sizeof t->cl_names[0], "cl_anchors_b.%s", label);
        snprintf(t->cl_names[3 * k + 2], sizeof t->cl_names[0], "cl_bank.%s", label);
    }
    return DACL_OK;
}

/* The threads model m runs on. */
static DaclPool *model_pool(const DaclTrainer *t, int m) { return t->pair ? t->mpool[m] : t->pool; }

static int trainer_setup(DaclTrainer *t, const char *data_root) {
    const DaclJobConfig *c = &t->cfg;
    DACL_TRY(make_dir(t->work_dir));
    t->nmodels = c->method.name == DACL_METHOD_SUPERVISED ? 1 : 2;
    t->L = c->train.labeled_batch;
    t->B = t->nmodels == 1 ? t->L : c->train.batch; /* supervised draws labeled images only */
    t->ph = c->train.patch[0];
    t->pw = c->train.patch[1];
    t->best_dice = -1.0;
    t->best_iter = -1;
    DACL_TRY(open_dataset(t, data_root));
    if (t->ds.n_labels < 2) return DACL_FAIL(DACL_EINVAL, "%s: fewer than 2 labels", t->ds.name);
    t->classes = t->ds.labels[t->ds.n_labels - 1].value + 1;
    DACL_TRY(load_data(t));
    DACL_TRY(dacl_pool_create(&t->pool, c->train.threads));
    if (t->nmodels == 2 && c->train.threads >= 2 && c->train.threads % 2 == 0) {
        DACL_TRY(dacl_pool_create(&t->pair, 2));
        for (int m = 0; m < 2; m++) DACL_TRY(dacl_pool_create_lent(&t->mpool[m], c->train.threads / 2, 1));
    }
    DaclSamplerConfig sc = {.batch = t->B, .labeled_batch = t->L, .ph = t->ph, .pw = t->pw,
                            .seed = c->train.seed};
    DACL_TRY(dacl_sampler_init(&t->sampler, &t->lab, t->nmodels == 2 ? &t->unl : NULL, &sc));
    t->sampler.pool = t->pool;
    DaclUNetConfig uc = dacl_unet_default_config(1, t->classes);
    for (int m = 0; m < t->nmodels; m++) {
        DACL_TRY(dacl_unet_create(&t->net[m], &uc, t->B, t->ph, t->pw));
        DACL_TRY(dacl_unet_set_pool(t->net[m], model_pool(t, m)));
        DaclRng rng; /* the two models start from different seeds (CPS) */
        dacl_rng_seed(&rng, dacl_hash64(c->train.seed * 2 + (uint64_t)m));
        dacl_unet_init(t->net[m], &rng);
    }
    DACL_TRY(alloc_buffers(t));
    if (c->method.name == DACL_METHOD_DACL) DACL_TRY(setup_contrast(t, &uc));
    t->metrics_cap = BASE_METRICS + 3 * t->classes;
    t->metric_names = calloc((size_t)t->metrics_cap, sizeof *t->metric_names);
    t->metric_values = calloc((size_t)t->metrics_cap, sizeof *t->metric_values);
    if (!t->metric_names || !t->metric_values) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    return DACL_OK;
}

int dacl_trainer_create(DaclTrainer **out, const DaclJobConfig *cfg, const char *data_root,
                        const char *work_dir) {
    *out = NULL;
    DaclTrainer *t = calloc(1, sizeof *t);
    if (!t) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    t->cfg = *cfg;
    dacl_config_hash(cfg, t->config_hash);
    t->config_json = dacl_config_to_json(cfg);
    if (snprintf(t->work_dir, sizeof t->work_dir, "%s", work_dir) >= (int)sizeof t->work_dir) {
        free(t->config_json);
        free(t);
        return DACL_FAIL(DACL_EINVAL, "work folder path too long");
    }
    int rc = t->config_json ? trainer_setup(t, data_root) : DACL_FAIL(DACL_ENOMEM, "out of memory");
    if (rc) {
        dacl_trainer_free(t);
        return rc;
    }
    *out = t;
    return DACL_OK;
}

void dacl_trainer_free(DaclTrainer *t) {
    if (!t) return;
    for (int m = 0; m < 2; m++) {
        dacl_unet_free(t->net[m]);
        free(t->probs[m]);
        free(t->dlogits[m]);
        free(t->pseudo[m]);
        free(t->bn_saved[m]);
        free(t->cl_saved[m]);
    }
    dacl_contrast_free(t->cl);
    free(t->cl_cls);
    free(t->cl_names);
    free(t->metric_names);
    free(t->metric_values);
    for (int i = 0; i < t->nval; i++) {
        if (t->val_img) dacl_volume_free(&t->val_img[i]);
        if (t->val_lab) dacl_label_free(&t->val_lab[i]);
    }
    free(t->val_img);
    free(t->val_lab);
    dacl_sampler_free(&t->sampler);
    dacl_slices_free(&t->lab);
    dacl_slices_free(&t->unl);
    dacl_dataset_free(&t->ds);
    dacl_pool_free(t->pool);
    dacl_pool_free(t->pair);
    for (int m = 0; m < 2; m++) dacl_pool_free(t->mpool[m]);
    free(t->x);
    free(t->y);
    free(t->config_json);
    free(t);
}

long dacl_trainer_iteration(const DaclTrainer *t) { return t->iter; }

void dacl_trainer_timing(const DaclTrainer *t, DaclTiming *out) { *out = t->tm; }

DaclUNet *dacl_trainer_model(DaclTrainer *t, int m) {
    return m >= 0 && m < t->nmodels ? t->net[m] : NULL;
}

/* -------------------------------------------------------- checkpoints -- */

static int save(DaclTrainer *t, const char *name) {
    char path[sizeof t->work_dir + 32];
    snprintf(path, sizeof path, "%s/%s", t->work_dir, name);
    DaclCheckpoint ck = {.models = t->nmodels, .iteration = t->iter, .best_iteration = t->best_iter,
                         .best_dice = t->best_dice, .best_model = t->best_model,
                         .config_json = t->config_json, .sampler = t->sampler.st};
    memcpy(ck.config_hash, t->config_hash, sizeof ck.config_hash);
    if (t->cl) {
        ck.contrast_bytes = dacl_contrast_state_bytes(t->cl);
        ck.contrast = malloc(ck.contrast_bytes);
        if (!ck.contrast) return DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
        int rc = dacl_contrast_state_write(t->cl, ck.contrast, ck.contrast_bytes);
        if (rc) {
            free(ck.contrast);
            return rc;
        }
    }
    int rc = dacl_checkpoint_write(path, &ck, t->net);
    free(ck.contrast);
    return rc;
}

/* A new contrastive module holding the checkpoint's state. */
static int stage_contrast(DaclTrainer *t, const DaclCheckpoint *ck, DaclContrast **out) {
    DACL_TRY(dacl_contrast_create(out, &t->cfg, 2, t->classes, t->cl_c, t->B, t->cl_h, t->cl_w, t->pool));
    int rc = dacl_contrast_state_read(*out, ck->contrast, ck->contrast_bytes);
    if (rc) {
        dacl_contrast_free(*out);
        *out = NULL;
    }
    return rc;
}

int dacl_trainer_resume(DaclTrainer *t, const char *path) {
    DaclCheckpoint ck;
    DaclUNet *loaded[DACL_CKPT_MAX_MODELS] = {0};
    DACL_TRY(dacl_checkpoint_read(path, &ck, loaded, t->B, t->ph, t->pw));
    int rc = DACL_OK;
    if (strcmp(ck.config_hash, t->config_hash))
        rc = DACL_FAIL(DACL_EINVAL,
                       "%s: the checkpoint belongs to another job config (hash %s, this job %s)",
                       path, ck.config_hash, t->config_hash);
    else if (ck.models != t->nmodels)
        rc = DACL_FAIL(DACL_EFORMAT, "%s: %d models, the job trains %d", path, ck.models, t->nmodels);
    else if (!t->cl != !ck.contrast)
        rc = DACL_FAIL(DACL_EFORMAT, "%s: %s the contrastive module's state, the job %s", path,
                       ck.contrast ? "has" : "lacks", t->cl ? "needs it" : "has none");
    /* the contrastive state is read into a new module, swapped in with the models */
    DaclContrast *staged = NULL;
    if (rc == DACL_OK && t->cl) rc = stage_contrast(t, &ck, &staged);
    for (int m = 0; rc == DACL_OK && m < t->nmodels; m++)
        rc = dacl_unet_set_pool(loaded[m], model_pool(t, m));
    if (rc == DACL_OK) rc = dacl_sampler_restore(&t->sampler, &ck.sampler);
    if (rc) {
        dacl_contrast_free(staged);
        for (int m = 0; m < DACL_CKPT_MAX_MODELS; m++) dacl_unet_free(loaded[m]);
        dacl_checkpoint_free(&ck);
        return rc;
    }
    for (int m = 0; m < t->nmodels; m++) {
        dacl_unet_free(t->net[m]);
        t->net[m] = loaded[m];
    }
    if (staged) {
        dacl_contrast_free(t->cl);
        t->cl = staged;
    }
    t->iter = ck.iteration;
    t->best_dice = ck.best_dice;
    t->best_iter = ck.best_iteration;
    t->best_model = ck.best_model;
    dacl_checkpoint_free(&ck);
    return DACL_OK;
}

/* ------------------------------------------------------------- a step -- */

typedef struct {
    int n, cap;
    const char **names;
    double *values;
} Metrics;

static void add_metric(Metrics *mt, const char *name, double v) {
    if (mt->n < mt->cap) mt->names[mt->n] = name, mt->values[mt->n++] = v;
}

static const char *const M_SUP[2] = {"loss_sup_a", "loss_sup_b"};
static const char *const M_CE[2] = {"loss_ce_a", "loss_ce_b"};
static const char *const M_DICE[2] = {"loss_dice_a", "loss_dice_b"};
static const char *const M_CROSS[2] = {"loss_cross_a", "loss_cross_b"};
static const char *const M_CL[2] = {"loss_cl_a", "loss_cl_b"};
static const char *const M_ADENS[2] = {"cl_anchor_density_a", "cl_anchor_density_b"};
static const char *const M_KDENS[2] = {"cl_key_density_a", "cl_key_density_b"};

/* The first term whose value is not finite (the total, "loss", last), or NULL. */
static const char *nonfinite(const Metrics *mt) {
    for (int i = 1; i < mt->n; i++)
        if (!isfinite(mt->values[i])) return mt->names[i];
    return isfinite(mt->values[0]) ? NULL : mt->names[0];
}

/* Puts back the BN running statistics of before this iteration's forwards:
 * the U-Nets', and the first `heads` projection heads'. */
static void undo_bn(DaclTrainer *t, int heads) {
    for (int m = 0; m < t->nmodels; m++)
        memcpy(dacl_unet_bn_stats(t->net[m]), t->bn_saved[m],
               dacl_unet_bn_stats_count(t->net[m]) * sizeof(float));
    for (int m = 0; m < heads; m++) {
        DaclHead *h = dacl_contrast_head(t->cl, m);
        memcpy(dacl_head_bn_stats(h), t->cl_saved[m], dacl_head_bn_stats_count(h) * sizeof(float));
    }
}

/* ------------------------------------------------------ side by side -- */

/* fn(t, m, arg) for every model m, and what failed */
typedef struct {
    DaclTrainer *t;
    int (*fn)(DaclTrainer *t, int m, void *arg);
    void *arg;
    int rc[2];
    char msg[2][1024]; /* the failure's message, copied from the thread that had it */
    atomic_int done[2];
} Side;

static void side_job(void *ctx, int tid, int nt) {
    Side *s = ctx;
    DaclTrainer *t = s->t;
    if (nt == 2) { /* the pair: model tid here, then help the other one finish */
        s->rc[tid] = s->fn(t, tid, s->arg);
        if (s->rc[tid]) snprintf(s->msg[tid], sizeof s->msg[tid], "%s", dacl_error_message());
        atomic_store(&s->done[tid], 1);
        dacl_pool_wake(t->mpool[tid]); /* the other thread stops helping this model */
        dacl_pool_help(t->mpool[1 - tid], dacl_pool_threads(t->mpool[1 - tid]) - 1, &s->done[1 - tid]);
        return;
    }
    for (int m = tid; m < s->t->nmodels; m += nt) {
        s->rc[m] = s->fn(s->t, m, s->arg);
        if (s->rc[m]) {
            snprintf(s->msg[m], sizeof s->msg[m], "%s", dacl_error_message());
            if (nt == 1) break; /* in turn: the next model need not run */
        }
    }
}

/* fn for every model: side by side when the job has the pair, else one after
 * the other. Each model's result is the same either way: a model's ops give
 * the same bits on any number of threads. Returns the first failure. */
static int each_model(DaclTrainer *t, int (*fn)(DaclTrainer *, int, void *), void *arg) {
    Side s = {.t = t, .fn = fn, .arg = arg};
    if (t->pair)
        dacl_pool_run(t->pair, side_job, &s);
    else
        side_job(&s, 0, 1);
    for (int m = 0; m < t->nmodels; m++)
        if (s.rc[m]) return dacl_error_set(s.rc[m], __FILE__, __LINE__, "%s", s.msg[m]);
    return DACL_OK;
}

typedef struct {
    double ce, dice, sup;
} SupLoss;

/* Model m's forward on the batch, its probabilities, its supervised loss
 * (gradient into dlogits[m], zeroed first) and its pseudo-labels; arg: the
 * models' SupLoss. */
static int forward_model(DaclTrainer *t, int m, void *arg) {
    SupLoss *sl = (SupLoss *)arg + m;
    const int B = t->B, NC = t->classes, HW = t->ph * t->pw;
    memcpy(t->bn_saved[m], dacl_unet_bn_stats(t->net[m]), dacl_unet_bn_stats_count(t->net[m]) * sizeof(float));
    uint64_t key = dacl_hash64(t->cfg.train.seed ^ dacl_hash64((uint64_t)t->iter * 2 + (uint64_t)m));
    DACL_TRY(dacl_unet_forward(t->net[m], t->x, B, 1, key));
    dacl_softmax_forward(t->probs[m], dacl_unet_logits(t->net[m]), B, NC, HW);
    memset(t->dlogits[m], 0, (size_t)B * NC * HW * sizeof(float));
    sl->sup = dacl_sup_loss(t->dlogits[m], t->probs[m], t->y, t->L, NC, HW, 1.0f, &sl->ce, &sl->dice);
    if (t->nmodels == 2) dacl_argmax(t->pseudo[m], dacl_unet_logits(t->net[m]), B, NC, HW);
    return DACL_OK;
}

/* Model m's backward from dlogits[m] (and the contrastive loss's feature
 * gradient) and its SGD step; arg: the learning rate (float). */
static int backward_model(DaclTrainer *t, int m, void *arg) {
    const DaclJobConfig *c = &t->cfg;
    dacl_unet_zero_grad(t->net[m]);
    const float *dfeat = t->cl ? dacl_contrast_dfeat(t->cl, m) : NULL;
    DACL_TRY(dacl_unet_backward(t->net[m], t->dlogits[m], dfeat, t->cl_layer));
    dacl_unet_sgd_step(t->net[m], *(const float *)arg, (float)c->train.momentum, (float)c->train.weight_decay);
    return DACL_OK;
}

static int step(DaclTrainer *t, Metrics *mt) {
    const DaclJobConfig *c = &t->cfg;
    const int B = t->B, L = t->L, NC = t->classes, HW = t->ph * t->pw;
    const long it = t->iter;
    DaclSamplerState before = t->sampler.st;
    double t0 = now_s();
    DACL_TRY(dacl_sampler_next(&t->sampler, t->x, t->y, NULL));
    double t1 = now_s();
    t->tm.data += t1 - t0;
    SupLoss sl[2];
    DACL_TRY(each_model(t, forward_model, sl));
    double t2 = now_s();
    t->tm.forward += t2 - t1;
    double total = 0.0, lc = dacl_cross_weight(c, it);
    mt->n = 0;
    add_metric(mt, "loss", 0.0);
    for (int m = 0; m < t->nmodels; m++) {
        add_metric(mt, M_CE[m], sl[m].ce); /* the parts first: a NaN is reported by its part */
        add_metric(mt, M_DICE[m], sl[m].dice);
        add_metric(mt, M_SUP[m], sl[m].sup);
        total += sl[m].sup;
    }
    if (t->nmodels == 2) {
        int from = c->method.cross_on_labeled ? 0 : L;
        for (int m = 0; m < 2; m++) {
            size_t o = (size_t)from * NC * HW;
            double cross = dacl_cross_loss(t->dlogits[m] + o, t->probs[m] + o,
                                           t->pseudo[1 - m] + (size_t)from * HW, B - from, NC, HW,
                                           (float)lc);
            add_metric(mt, M_CROSS[m], cross);
            total += lc * cross;
        }
        add_metric(mt, "lambda_cross", lc);
    }
    double t3 = now_s();
    t->tm.losses += t3 - t2;
    if (t->cl) {
        /* each model's embeddings, classed by the labels and the other model's
         * confident predictions; in the warm-up (lambda 0) the bank still fills */
        double lcl = dacl_cl_weight(c, it);
        DaclContrastStats st[2];
        for (int m = 0; m < 2; m++) {
            DaclHead *h = dacl_contrast_head(t->cl, m);
            memcpy(t->cl_saved[m], dacl_head_bn_stats(h), dacl_head_bn_stats_count(h) * sizeof(float));
            dacl_contrast_classes(t->cl_cls, t->y, L, t->probs[1 - m], B, NC, t->ph, t->pw, t->cl_h,
                                  t->cl_w, c->method.phi, c->method.cl_background);
            int fc, fh, fw;
            const float *feat = dacl_unet_feature(t->net[m], t->cl_layer, &fc, &fh, &fw);
            DACL_TRY(dacl_contrast_loss(t->cl, m, feat, t->cl_cls, B, it, (float)lcl, &st[m]));
            add_metric(mt, M_CL[m], st[m].loss);
            total += lcl * st[m].loss;
        }
        add_metric(mt, "lambda_cl", lcl);
        for (int m = 0; m < 2; m++) {
            add_metric(mt, M_ADENS[m], st[m].anchor_density);
            add_metric(mt, M_KDENS[m], st[m].key_density);
        }
        for (int k = c->method.cl_background ? 0 : 1; k < NC; k++) {
            add_metric(mt, t->cl_names[3 * k], st[0].anchors[k]);
            add_metric(mt, t->cl_names[3 * k + 1], st[1].anchors[k]);
            add_metric(mt, t->cl_names[3 * k + 2], st[1].bank_fill[k]);
        }
    }
    double t4 = now_s();
    t->tm.contrast += t4 - t3;
    mt->values[0] = total;
    double lr = dacl_poly_lr(c->train.lr, it, c->train.iterations, 0.9);
    add_metric(mt, "lr", lr);
    const char *bad = nonfinite(mt);
    if (bad) {
        /* undo this iteration's side effects: the state is the last good one */
        t->sampler.st = before;
        DACL_TRY(dacl_sampler_restore(&t->sampler, &before));
        undo_bn(t, t->cl ? 2 : 0);
        return DACL_FAIL(DACL_ENUMERIC,
                         "iteration %ld: the %s term became NaN or infinite; stopped with the "
                         "weights of iteration %ld (lower train.lr?)",
                         it + 1, bad, it);
    }
    float flr = (float)lr;
    DACL_TRY(each_model(t, backward_model, &flr));
    double t5 = now_s();
    t->tm.backward += t5 - t4;
    if (t->cl) {
        dacl_contrast_sgd_step(t->cl, (float)lr, (float)c->train.momentum, (float)c->train.weight_decay);
        dacl_contrast_bank_update(t->cl, it);
        t->tm.contrast += now_s() - t5;
    }
    t->tm.iterations++;
    t->iter++;
    return DACL_OK;
}

/* --------------------------------------------------------- validation -- */

/* A validation round's per-model results: model m's dice, jaccard, hd95 and
 * asd [case][class], then their means per class, at buf + m * per_model. */
typedef struct {
    double *buf;
    size_t per_model;
    DaclClassMetrics *cm; /* K per model */
    DaclLabelVolume pred[2];
} ValRound;

/* Model m's predictions and metrics on every validation case. */
static int validate_model(DaclTrainer *t, int m, void *arg) {
    ValRound *v = arg;
    const int K = t->classes - 1, N = t->nval;
    const size_t cells = (size_t)N * K;
    double *dice = v->buf + m * v->per_model, *jac = dice + cells, *hd = dice + 2 * cells,
           *asd = dice + 3 * cells;
    DaclClassMetrics *cm = v->cm + (size_t)m * K;
    DaclLabelVolume *pred = &v->pred[m];
    for (int i = 0; i < N; i++) {
        DACL_TRY(dacl_infer_volume(t->net[m], &t->val_img[i], NULL, pred));
        DACL_TRY(dacl_metrics_volume(pred->data, t->val_lab[i].data, pred->nz, pred->ny, pred->nx, NULL,
                                     t->classes, cm));
        for (int k = 0; k < K; k++) {
            dice[i * K + k] = cm[k].dice;
            jac[i * K + k] = cm[k].jaccard;
            hd[i * K + k] = cm[k].distances_defined ? cm[k].hd95 : NAN;
            asd[i * K + k] = cm[k].distances_defined ? cm[k].asd : NAN;
        }
    }
    return DACL_OK;
}

int dacl_trainer_validate(DaclTrainer *t, const DaclSink *sink) {
    const int K = t->classes - 1, N = t->nval;
    size_t cells = (size_t)N * K;
    ValRound v;
    memset(&v, 0, sizeof v);
    v.per_model = 4 * cells + 4 * (size_t)K;
    v.buf = malloc(sizeof(double) * v.per_model * (size_t)t->nmodels);
    v.cm = malloc(sizeof *v.cm * (size_t)K * (size_t)t->nmodels);
    const char **names = malloc(sizeof *names * (size_t)K);
    const char **ids = malloc(sizeof *ids * (size_t)N);
    int rc = (!v.buf || !v.cm || !names || !ids) ? DACL_FAIL(DACL_ENOMEM, "out of memory") : DACL_OK;
    for (int k = 0; rc == DACL_OK && k < K; k++) {
        names[k] = "?";
        for (int i = 0; i < t->ds.n_labels; i++)
            if (t->ds.labels[i].value == k + 1) names[k] = t->ds.labels[i].name;
    }
    for (int i = 0; rc == DACL_OK && i < N; i++) ids[i] = t->ds.val.cases[i].id;
    if (rc == DACL_OK) rc = each_model(t, validate_model, &v);
    for (int m = 0; rc == DACL_OK && m < t->nmodels; m++) {
        double *buf = v.buf + m * v.per_model;
        double *dice = buf, *jac = buf + cells, *hd = buf + 2 * cells, *asd = buf + 3 * cells;
        double *mean = buf + 4 * cells; /* dice, jaccard, hd95, asd means per class */
        double fg = 0.0;
        for (int k = 0; k < K; k++) {
            double s[4] = {0}, cnt[4] = {0};
            for (int i = 0; i < N; i++) {
                const double v[4] = {dice[i * K + k], jac[i * K + k], hd[i * K + k], asd[i * K + k]};
                for (int q = 0; q < 4; q++)
                    if (!isnan(v[q])) s[q] += v[q], cnt[q] += 1;
            }
            for (int q = 0; q < 4; q++) mean[q * K + k] = cnt[q] > 0 ? s[q] / cnt[q] : NAN;
            fg += mean[k];
        }
        fg /= K;
        int best = fg > t->best_dice;
        if (best) {
            t->best_dice = fg;
            t->best_iter = t->iter;
            t->best_model = m;
            rc = save(t, "checkpoint-best.bin");
        }
        DaclEvalRound r = {.iteration = t->iter, .model = m, .classes = K, .class_names = names,
                           .cases = N, .case_ids = ids, .dice = dice, .jaccard = jac, .hd95 = hd,
                           .asd = asd, .mean_dice = mean, .mean_jaccard = mean + K,
                           .mean_hd95 = mean + 2 * K, .mean_asd = mean + 3 * K, .mean_fg_dice = fg,
                           .is_best = best};
        if (sink && sink->evaluation) sink->evaluation(sink->ctx, &r);
    }
    for (int m = 0; m < 2; m++) dacl_label_free(&v.pred[m]);
    free(v.buf);
    free(v.cm);
    free(names);
    free(ids);
    return rc;
}

/* ---------------------------------------------------------------- run -- */

/* The sink makes what it was given durable before checkpoint-last.bin moves
 * past it: a resumed run repeats only the iterations after the checkpoint. */
static int sink_checkpoint(const DaclSink *s, long iteration) {
    return s && s->checkpoint ? s->checkpoint(s->ctx, iteration) : DACL_OK;
}

int dacl_trainer_run(DaclTrainer *t, long stop_at, const atomic_int *cancel, const DaclSink *sink) {
    const DaclJobConfig *c = &t->cfg;
    const long end = stop_at > 0 && stop_at < c->train.iterations ? stop_at : c->train.iterations;
    if (t->iter > 0) sink_log(sink, "resuming at iteration %ld of %d", t->iter, c->train.iterations);
    double t0 = now_s();
    long it0 = t->iter;
    int rc = DACL_OK;
    while (t->iter < end) {
        if (cancel && atomic_load(cancel)) {
            rc = DACL_ECANCELED;
            break;
        }
        Metrics mt = {0, t->metrics_cap, t->metric_names, t->metric_values};
        rc = step(t, &mt);
        if (rc) break;
        if (sink && sink->metrics) sink->metrics(sink->ctx, t->iter, mt.n, mt.names, mt.values);
        double tn = now_s();
        if (sink && sink->progress) {
            double ips = (double)(t->iter - it0) * t->B / (tn - t0 > 1e-9 ? tn - t0 : 1e-9);
            DaclProgress p = {t->iter, c->train.iterations, ips,
                              ips > 0 ? (double)(c->train.iterations - t->iter) * t->B / ips : 0};
            sink->progress(sink->ctx, &p);
        }
        if (t->iter % c->train.val_every == 0 || t->iter == c->train.iterations)
            if ((rc = dacl_trainer_validate(t, sink))) break;
        if (t->iter % c->train.checkpoint_every == 0 && t->iter < end) {
            if ((rc = sink_checkpoint(sink, t->iter)) || (rc = save(t, "checkpoint-last.bin"))) break;
            sink_log(sink, "checkpoint at iteration %ld", t->iter);
        }
    }
    /* the state is consistent after every completed iteration: keep it, also
     * when stopping for an error (a non-finite loss undid its own iteration) */
    if (rc == DACL_OK || rc == DACL_ECANCELED || rc == DACL_ENUMERIC) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", dacl_error_message());
        int src = sink_checkpoint(sink, t->iter);
        if (src == DACL_OK) src = save(t, "checkpoint-last.bin");
        if (src) return src;
        if (rc) dacl_error_set(rc, __FILE__, __LINE__, "%s", msg); /* keep the original reason */
        sink_log(sink, "checkpoint at iteration %ld", t->iter);
    }
    return rc;
}
