/* The slice store (every volume of a set of cases cut into 2D slices, held once) and the two-
 * stream batch sampler on top of it (SSL4MIS TwoStreamBatchSampler + RandomGenerator), whose
 * state is a handful of counters so that a checkpoint resumes it exactly. See dacl/data.h.
 *
 * Dims: B batch, L labeled part of it, (ph, pw) patch, (h, w) a slice's native size. */
#include <stdlib.h>
#include <string.h>

#include "dacl/data.h"
#include "dacl/error.h"

/* ---- slice store ---- */

/* Make room for `px` more pixels and `ns` more slices (geometric growth: loading appends volume
 * after volume; glibc grows big blocks with mremap, without copying). */
static int slices_reserve(DaclSliceSet *set, size_t px, size_t ns) {
    if (set->numel + px > set->cap_px) {
        size_t cap = set->cap_px ? set->cap_px : 1 << 20;
        while (cap < set->numel + px) cap *= 2;
        float *im = realloc(set->image, cap * sizeof *im);
        if (!im) return DACL_FAIL(DACL_ENOMEM, "out of memory for %zu slice pixels", cap);
        set->image = im;
        uint8_t *lb = realloc(set->label, cap);
        if (!lb) return DACL_FAIL(DACL_ENOMEM, "out of memory for %zu slice pixels", cap);
        set->label = lb;
        set->cap_px = cap;
    }
    if ((size_t)set->n + ns > set->cap_slices) {
        size_t cap = set->cap_slices ? set->cap_slices : 256;
        while (cap < (size_t)set->n + ns) cap *= 2;
        DaclSlice *sl = realloc(set->slices, cap * sizeof *sl);
        if (!sl) return DACL_FAIL(DACL_ENOMEM, "out of memory for %zu slices", cap);
        set->slices = sl;
        set->cap_slices = cap;
    }
    return DACL_OK;
}

int dacl_slices_add_volume(DaclSliceSet *set, const DaclVolume *img, const DaclLabelVolume *lab,
                           int case_index) {
    if (!img->data || img->nz < 1 || img->ny < 1 || img->nx < 1)
        return DACL_FAIL(DACL_EINVAL, "case %d: empty image volume", case_index);
    if (lab && (lab->nz != img->nz || lab->ny != img->ny || lab->nx != img->nx || !lab->data))
        return DACL_FAIL(DACL_EINVAL, "case %d: label (%d, %d, %d) and image (%d, %d, %d) differ in shape",
                         case_index, lab->nz, lab->ny, lab->nx, img->nz, img->ny, img->nx);
    if (set->n > INT32_MAX - img->nz) return DACL_FAIL(DACL_EINVAL, "case %d: too many slices", case_index);
    size_t plane = (size_t)img->ny * img->nx, px = plane * img->nz;
    DACL_TRY(slices_reserve(set, px, (size_t)img->nz));
    memcpy(set->image + set->numel, img->data, px * sizeof(float));
    if (lab) memcpy(set->label + set->numel, lab->data, px);
    else memset(set->label + set->numel, DACL_LABEL_NONE, px);
    for (int z = 0; z < img->nz; z++) {
        set->slices[set->n++] = (DaclSlice){.offset = set->numel + (size_t)z * plane,
                                            .h = img->ny,
                                            .w = img->nx,
                                            .case_index = case_index,
                                            .z = z,
                                            .has_label = lab != NULL};
    }
    set->numel += px;
    if (img->ny > set->max_h) set->max_h = img->ny;
    if (img->nx > set->max_w) set->max_w = img->nx;
    return DACL_OK;
}

void dacl_slices_free(DaclSliceSet *set) {
    free(set->image);
    free(set->label);
    free(set->slices);
    memset(set, 0, sizeof *set);
}

int dacl_slices_load(DaclSliceSet *set, const DaclDataset *ds, const DaclSplit *split,
                     const uint8_t *mask, int select) {
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    int rc = DACL_OK;
    for (int i = 0; i < split->n && rc == DACL_OK; i++) {
        if (mask && mask[i] != select) continue;
        rc = dacl_dataset_load_case(ds, &split->cases[i], &img, &lab);
        if (rc == DACL_OK) rc = dacl_slices_add_volume(set, &img, lab.data ? &lab : NULL, i);
        dacl_volume_free(&img);
        dacl_label_free(&lab);
    }
    if (rc != DACL_OK) {
        dacl_slices_free(set);
        return rc;
    }
    /* hand back what the geometric growth over-allocated */
    if (set->numel && set->numel < set->cap_px) {
        float *im = realloc(set->image, set->numel * sizeof *im);
        uint8_t *lb = realloc(set->label, set->numel);
        if (im) set->image = im;
        if (lb) set->label = lb;
        if (im || lb) set->cap_px = set->numel; /* the capacity is the smaller block's */
    }
    return DACL_OK;
}

/* ---- sampler ---- */

/* Domain tags for the counter-based keys: permutations and augmentations never share a stream. */
#define TAG_PERM 0x7065726d75746174ULL
#define TAG_AUG 0x6175676d656e7461ULL

static uint64_t key3(uint64_t seed, uint64_t tag, uint64_t a, uint64_t b) {
    return dacl_hash64(dacl_hash64(dacl_hash64(seed ^ tag) ^ a) ^ b);
}

void dacl_sampler_aug(uint64_t seed, uint64_t iteration, int slot, DaclAug *a) {
    DaclRng r;
    dacl_rng_seed(&r, key3(seed, TAG_AUG, iteration, (uint64_t)slot));
    dacl_aug_draw(a, &r);
}

static int64_t stream_n(const DaclSampler *s, int k) { return s->set[k] ? s->set[k]->n : 0; }

/* perm[k] = permutation st.epoch[k] of stream k (Fisher-Yates). */
static void stream_shuffle(DaclSampler *s, int k) {
    int32_t n = (int32_t)stream_n(s, k), *p = s->perm[k];
    DaclRng r;
    dacl_rng_seed(&r, key3(s->st.seed, TAG_PERM, (uint64_t)k, s->st.epoch[k]));
    for (int32_t i = 0; i < n; i++) p[i] = i;
    for (int32_t i = n - 1; i > 0; i--) {
        int32_t j = (int32_t)dacl_rng_below(&r, (uint32_t)i + 1), t = p[i];
        p[i] = p[j], p[j] = t;
    }
}

static void stream_new_epoch(DaclSampler *s, int k) {
    s->st.epoch[k]++;
    s->st.pos[k] = 0;
    stream_shuffle(s, k);
}

static int32_t stream_take(DaclSampler *s, int k) {
    if (s->st.pos[k] == (uint64_t)stream_n(s, k)) stream_new_epoch(s, k);
    return s->perm[k][s->st.pos[k]++];
}

void dacl_sampler_free(DaclSampler *s) {
    free(s->perm[0]);
    free(s->perm[1]);
    free(s->pick);
    memset(s, 0, sizeof *s);
}

int dacl_sampler_init(DaclSampler *s, const DaclSliceSet *lab, const DaclSliceSet *unl,
                      const DaclSamplerConfig *cfg) {
    memset(s, 0, sizeof *s);
    const DaclSamplerConfig *c = cfg;
    if (c->batch < 1 || c->labeled_batch < 1 || c->labeled_batch > c->batch)
        return DACL_FAIL(DACL_EINVAL, "sampler: need 1 <= labeled_batch (%d) <= batch (%d)", c->labeled_batch,
                         c->batch);
    if (c->ph < 1 || c->pw < 1) return DACL_FAIL(DACL_EINVAL, "sampler: patch %dx%d", c->ph, c->pw);
    if (!lab || lab->n < 1) return DACL_FAIL(DACL_EINVAL, "sampler: the labeled set has no slices");
    if (c->batch > c->labeled_batch && (!unl || unl->n < 1))
        return DACL_FAIL(DACL_EINVAL,
                         "sampler: %d unlabeled samples a batch but the unlabeled set has no slices "
                         "(fully supervised training takes labeled_batch = batch)",
                         c->batch - c->labeled_batch);
    if (!c->continuous && lab->n < c->labeled_batch)
        return DACL_FAIL(DACL_EINVAL, "sampler: %d labeled slices cannot fill one labeled batch of %d", lab->n,
                         c->labeled_batch);
    for (int i = 0; i < lab->n; i++)
        if (!lab->slices[i].has_label)
            return DACL_FAIL(DACL_EINVAL, "sampler: labeled slice %d (case %d, z %d) has no label", i,
                             lab->slices[i].case_index, lab->slices[i].z);
    s->cfg = *c;
    s->set[0] = lab;
    s->set[1] = c->batch > c->labeled_batch ? unl : NULL;
    s->st = (DaclSamplerState){.version = DACL_SAMPLER_STATE_VERSION,
                               .continuous = c->continuous != 0,
                               .no_augment = c->no_augment != 0,
                               .batch = c->batch,
                               .labeled_batch = c->labeled_batch,
                               .ph = c->ph,
                               .pw = c->pw,
                               .seed = c->seed,
                               .n_slices = {stream_n(s, 0), stream_n(s, 1)}};
    s->pick = malloc((size_t)c->batch * sizeof *s->pick);
    for (int k = 0; k < 2; k++) s->perm[k] = malloc(((size_t)stream_n(s, k) + 1) * sizeof(int32_t));
    if (!s->pick || !s->perm[0] || !s->perm[1]) {
        dacl_sampler_free(s);
        return DACL_FAIL(DACL_ENOMEM, "sampler: out of memory");
    }
    stream_shuffle(s, 0);
    stream_shuffle(s, 1);
    return DACL_OK;
}

static int same_field(const char *name, uint64_t saved, uint64_t mine) {
    if (saved == mine) return DACL_OK;
    return DACL_FAIL(DACL_EINVAL, "sampler state: %s is %llu, this sampler's is %llu", name,
                     (unsigned long long)saved, (unsigned long long)mine);
}

int dacl_sampler_restore(DaclSampler *s, const DaclSamplerState *st) {
    const DaclSamplerState *me = &s->st;
    DACL_TRY(same_field("version", st->version, me->version));
    DACL_TRY(same_field("continuous", (uint64_t)st->continuous, (uint64_t)me->continuous));
    DACL_TRY(same_field("no_augment", (uint64_t)st->no_augment, (uint64_t)me->no_augment));
    DACL_TRY(same_field("batch", (uint64_t)st->batch, (uint64_t)me->batch));
    DACL_TRY(same_field("labeled_batch", (uint64_t)st->labeled_batch, (uint64_t)me->labeled_batch));
    DACL_TRY(same_field("ph", (uint64_t)st->ph, (uint64_t)me->ph));
    DACL_TRY(same_field("pw", (uint64_t)st->pw, (uint64_t)me->pw));
    DACL_TRY(same_field("seed", st->seed, me->seed));
    DACL_TRY(same_field("labeled slices", (uint64_t)st->n_slices[0], (uint64_t)me->n_slices[0]));
    DACL_TRY(same_field("unlabeled slices", (uint64_t)st->n_slices[1], (uint64_t)me->n_slices[1]));
    for (int k = 0; k < 2; k++)
        if (st->pos[k] > (uint64_t)st->n_slices[k])
            return DACL_FAIL(DACL_EINVAL, "sampler state: position %llu beyond the %lld slices of stream %d",
                             (unsigned long long)st->pos[k], (long long)st->n_slices[k], k);
    s->st = *st;
    stream_shuffle(s, 0);
    stream_shuffle(s, 1);
    return DACL_OK;
}

typedef struct {
    const DaclSampler *s;
    float *x;
    uint8_t *y;
} Fill;

/* Samples [b0, b1) of the batch; each depends only on its slice and (seed, iteration, slot). */
static void fill_part(void *ctx, int tid, int nthreads) {
    const Fill *f = ctx;
    const DaclSampler *s = f->s;
    const DaclSamplerConfig *c = &s->cfg;
    size_t patch = (size_t)c->ph * c->pw;
    int b0, b1;
    dacl_split(c->batch, tid, nthreads, &b0, &b1);
    for (int b = b0; b < b1; b++) {
        const DaclSliceSet *set = s->set[b >= c->labeled_batch];
        const DaclSlice *sl = &set->slices[s->pick[b]];
        DaclAug a = {DACL_AUG_NONE, 0, 0, 0};
        if (!c->no_augment) dacl_sampler_aug(c->seed, s->st.iteration, b, &a);
        /* a drawn augmentation and sizes checked at init cannot fail */
        (void)dacl_aug_apply(&a, f->x + b * patch, f->y + b * patch, c->ph, c->pw, set->image + sl->offset,
                             set->label + sl->offset, sl->h, sl->w);
        if (!sl->has_label) memset(f->y + b * patch, DACL_LABEL_NONE, patch);
    }
}

int dacl_sampler_next(DaclSampler *s, float *x, uint8_t *y, int32_t *slices) {
    const DaclSamplerConfig *c = &s->cfg;
    if (!x || !y) return DACL_FAIL(DACL_EINVAL, "sampler: no batch buffers");
    /* SSL4MIS: a labeled epoch ends when its permutation cannot fill a labeled batch, and both
     * iterators are made anew */
    if (!c->continuous && s->st.pos[0] + (uint64_t)c->labeled_batch > (uint64_t)stream_n(s, 0)) {
        stream_new_epoch(s, 0);
        if (s->set[1]) stream_new_epoch(s, 1);
    }
    for (int b = 0; b < c->batch; b++) s->pick[b] = stream_take(s, b >= c->labeled_batch);
    Fill f = {s, x, y};
    dacl_pool_run(s->pool, fill_part, &f);
    if (slices) memcpy(slices, s->pick, (size_t)c->batch * sizeof *slices);
    s->st.iteration++;
    return DACL_OK;
}
