/* Training checkpoints: everything a run needs to continue bit-exactly.
 *
 * Little-endian layout:
 *   "DACLCKPT" | u32 version | u32 models
 *   | u64 iteration | i64 best_iteration | f64 best_dice | i32 best_model | u32 0
 *   | 16 bytes config hash (hex) | u32 L | L bytes of the job config (JSON)
 *   | u32 S | S bytes of DaclSamplerState
 *   | per model: u64 P | P bytes of the model section (nn.h, with momentum)
 *   | u64 C | C bytes of the contrastive module's state (method.h; 0 unless
 *     method = dacl; absent in version 1 files, which are still read)
 *   | u64 FNV-1a 64 of every byte before it
 *
 * The sampler's state is a few counters (its permutations and augmentations
 * are pure functions of them) and dropout masks are keyed by (seed,
 * iteration, model), so these bytes are the whole state of a run. Written
 * with dacl_file_write_atomic: a crash leaves the previous checkpoint. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dacl/error.h"
#include "dacl/fileio.h"
#include "dacl/hash.h"
#include "dacl/nn.h"
#include "dacl/train.h"

#define MAGIC "DACLCKPT"
#define HEADER_FIXED (8 + 4 + 4 + 8 + 8 + 8 + 4 + 4 + 16)

typedef struct {
    unsigned char *p;
    size_t at;
} Out;

static void put(Out *o, const void *v, size_t n) {
    memcpy(o->p + o->at, v, n);
    o->at += n;
}
static void put_u32(Out *o, uint32_t v) { put(o, &v, 4); }
static void put_u64(Out *o, uint64_t v) { put(o, &v, 8); }

int dacl_checkpoint_write(const char *path, const DaclCheckpoint *ck, DaclUNet *const *models) {
    size_t cfg_len = ck->config_json ? strlen(ck->config_json) : 0;
    size_t total = HEADER_FIXED + 4 + cfg_len + 4 + sizeof(DaclSamplerState) + 8 + 8 +
                   ck->contrast_bytes;
    size_t sec[DACL_CKPT_MAX_MODELS];
    if (ck->models < 1 || ck->models > DACL_CKPT_MAX_MODELS)
        return DACL_FAIL(DACL_EINVAL, "%s: a checkpoint holds 1..%d models, not %d", path,
                         DACL_CKPT_MAX_MODELS, ck->models);
    for (int i = 0; i < ck->models; i++) {
        sec[i] = dacl_unet_section_bytes(models[i], NULL, DACL_MODEL_MOMENTUM);
        total += 8 + sec[i];
    }
    unsigned char *buf = malloc(total);
    if (!buf) return DACL_FAIL(DACL_ENOMEM, "%s: out of memory for a %zu-byte checkpoint", path, total);
    Out o = {buf, 0};
    put(&o, MAGIC, 8);
    put_u32(&o, DACL_CHECKPOINT_VERSION);
    put_u32(&o, (uint32_t)ck->models);
    put_u64(&o, (uint64_t)ck->iteration);
    int64_t bi = ck->best_iteration;
    put(&o, &bi, 8);
    put(&o, &ck->best_dice, 8);
    int32_t bm = ck->best_model;
    put(&o, &bm, 4);
    put_u32(&o, 0);
    put(&o, ck->config_hash, 16);
    put_u32(&o, (uint32_t)cfg_len);
    put(&o, ck->config_json, cfg_len);
    put_u32(&o, (uint32_t)sizeof(DaclSamplerState));
    put(&o, &ck->sampler, sizeof(DaclSamplerState));
    int rc = DACL_OK;
    for (int i = 0; i < ck->models && rc == DACL_OK; i++) {
        put_u64(&o, sec[i]);
        rc = dacl_unet_section_write(models[i], NULL, DACL_MODEL_MOMENTUM, buf + o.at, sec[i]);
        o.at += sec[i];
    }
    if (rc == DACL_OK) {
        put_u64(&o, ck->contrast_bytes);
        if (ck->contrast_bytes) put(&o, ck->contrast, ck->contrast_bytes);
        put_u64(&o, dacl_fnv1a64(DACL_FNV1A64_INIT, buf, o.at));
        rc = dacl_file_write_atomic(path, buf, o.at);
    }
    free(buf);
    return rc;
}

typedef struct {
    const unsigned char *p;
    size_t n, at;
    const char *path;
} In;

static int get(In *r, void *v, size_t k, const char *what) {
    if (r->n - r->at < k)
        return DACL_FAIL(DACL_EFORMAT, "%s: truncated checkpoint (cut inside the %s)", r->path, what);
    memcpy(v, r->p + r->at, k);
    r->at += k;
    return DACL_OK;
}

void dacl_checkpoint_free(DaclCheckpoint *ck) {
    free(ck->config_json);
    free(ck->contrast);
    ck->config_json = NULL;
    ck->contrast = NULL;
    ck->contrast_bytes = 0;
}

int dacl_checkpoint_read(const char *path, DaclCheckpoint *out, DaclUNet **models, int max_n, int h,
                         int w) {
    unsigned char *buf;
    size_t n;
    DACL_TRY(dacl_file_read_all(path, &buf, &n));
    In r = {buf, n, 0, path};
    DaclCheckpoint ck;
    memset(&ck, 0, sizeof ck);
    DaclUNet *loaded[DACL_CKPT_MAX_MODELS] = {0};
    int rc = DACL_OK;
    char magic[8];
    uint32_t version = 0, nmodels = 0, cfg_len = 0, st_len = 0, pad = 0;
    uint64_t it = 0, sum = 0;
    if (n < 8 || memcmp(buf, MAGIC, 8)) {
        rc = DACL_FAIL(DACL_EFORMAT, "%s: not a dacld checkpoint (no \"%s\" magic)", path, MAGIC);
        goto done;
    }
    if (n < HEADER_FIXED + 8) {
        rc = DACL_FAIL(DACL_EFORMAT, "%s: truncated checkpoint (%zu bytes)", path, n);
        goto done;
    }
    memcpy(&sum, buf + n - 8, 8);
    if (dacl_fnv1a64(DACL_FNV1A64_INIT, buf, n - 8) != sum) {
        rc = DACL_FAIL(DACL_EFORMAT, "%s: checkpoint is corrupt or truncated (checksum mismatch)", path);
        goto done;
    }
    r.n = n - 8;
    if ((rc = get(&r, magic, 8, "header")) || (rc = get(&r, &version, 4, "header"))) goto done;
    if (version < 1 || version > DACL_CHECKPOINT_VERSION) {
        rc = DACL_FAIL(DACL_EFORMAT, "%s: checkpoint version %u, this dacld reads versions 1 to %d", path,
                       version, DACL_CHECKPOINT_VERSION);
        goto done;
    }
    int64_t bi = -1;
    int32_t bm = 0;
    if ((rc = get(&r, &nmodels, 4, "header")) || (rc = get(&r, &it, 8, "header")) ||
        (rc = get(&r, &bi, 8, "header")) || (rc = get(&r, &ck.best_dice, 8, "header")) ||
        (rc = get(&r, &bm, 4, "header")) || (rc = get(&r, &pad, 4, "header")) ||
        (rc = get(&r, ck.config_hash, 16, "header")) || (rc = get(&r, &cfg_len, 4, "config")))
        goto done;
    if (nmodels < 1 || nmodels > DACL_CKPT_MAX_MODELS || cfg_len > r.n - r.at) {
        rc = DACL_FAIL(DACL_EFORMAT, "%s: malformed checkpoint header", path);
        goto done;
    }
    ck.models = (int)nmodels;
    ck.iteration = (long)it;
    ck.best_iteration = (long)bi;
    ck.best_model = bm;
    ck.config_hash[16] = '\0';
    ck.config_json = malloc(cfg_len + 1);
    if (!ck.config_json) {
        rc = DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((rc = get(&r, ck.config_json, cfg_len, "config"))) goto done;
    ck.config_json[cfg_len] = '\0';
    if ((rc = get(&r, &st_len, 4, "sampler state"))) goto done;
    if (st_len != sizeof(DaclSamplerState)) {
        rc = DACL_FAIL(DACL_EFORMAT, "%s: sampler state of %u bytes, expected %zu", path, st_len,
                       sizeof(DaclSamplerState));
        goto done;
    }
    if ((rc = get(&r, &ck.sampler, st_len, "sampler state"))) goto done;
    for (uint32_t i = 0; i < nmodels; i++) {
        uint64_t len;
        if ((rc = get(&r, &len, 8, "model section"))) goto done;
        if (len > r.n - r.at) {
            rc = DACL_FAIL(DACL_EFORMAT, "%s: truncated checkpoint (model %u)", path, i);
            goto done;
        }
        if (models && (rc = dacl_unet_section_read(r.p + r.at, len, path, max_n, h, w, &loaded[i], NULL,
                                                   NULL)))
            goto done;
        r.at += len;
    }
    if (version >= 2) {
        uint64_t clen;
        if ((rc = get(&r, &clen, 8, "contrastive state"))) goto done;
        if (clen > r.n - r.at) {
            rc = DACL_FAIL(DACL_EFORMAT, "%s: truncated checkpoint (contrastive state)", path);
            goto done;
        }
        if (clen) {
            ck.contrast = malloc(clen);
            if (!ck.contrast) {
                rc = DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
                goto done;
            }
            memcpy(ck.contrast, r.p + r.at, clen);
            ck.contrast_bytes = clen;
            r.at += clen;
        }
    }
    if (r.at != r.n) rc = DACL_FAIL(DACL_EFORMAT, "%s: %zu unexpected bytes at the end", path, r.n - r.at);
done:
    free(buf);
    if (rc) {
        for (int i = 0; i < DACL_CKPT_MAX_MODELS; i++) dacl_unet_free(loaded[i]);
        dacl_checkpoint_free(&ck);
        return rc;
    }
    if (models)
        for (int i = 0; i < ck.models; i++) models[i] = loaded[i];
    *out = ck;
    return DACL_OK;
}

int dacl_checkpoint_weights_sha256(DaclUNet *const *models, int n, char out[65]) {
    DaclSha256 s;
    dacl_sha256_init(&s);
    for (int i = 0; i < n; i++) {
        dacl_sha256_update(&s, dacl_unet_params(models[i]), dacl_unet_num_params(models[i]) * sizeof(float));
        dacl_sha256_update(&s, dacl_unet_bn_stats(models[i]),
                           dacl_unet_bn_stats_count(models[i]) * sizeof(float));
    }
    uint8_t d[32];
    dacl_sha256_final(&s, d);
    dacl_sha256_hex(d, out);
    return DACL_OK;
}
