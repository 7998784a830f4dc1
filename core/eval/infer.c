/* Volume inference (SSL4MIS test_single_volume) and the model metadata that
 * tells it how the training data was normalised.
 *
 * Dims: a volume is (Z, H, W); the model's patch is (PH, PW), P = PH * PW;
 * NC classes; a batch holds B <= dacl_unet_max_batch slices. Per batch:
 *   x      [B, 1, PH, PW]  slices resized to the patch (dacl_resize_nearest_f32: scipy's zoom)
 *   logits [B, NC, PH, PW] eval-mode forward
 *   lab    [PH, PW]        argmax of one slice, resized back into pred [Z, H, W] */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dacl/error.h"
#include "dacl/eval.h"

/* ----------------------------------------------------------- inference -- */

/* Predict src (already normalised) into the zeroed label volume out. */
static int infer_slices(DaclUNet *m, const DaclVolume *src, DaclLabelVolume *out) {
    const DaclUNetConfig *cfg = dacl_unet_config(m);
    int ph, pw;
    dacl_unet_feature(m, DACL_FEAT_UP4, NULL, &ph, &pw); /* full size: the model's patch */
    const size_t P = (size_t)ph * pw, HW = (size_t)src->ny * src->nx;
    const int B = dacl_unet_max_batch(m);
    float *x = malloc((size_t)B * P * sizeof(float));
    uint8_t *lab = malloc(P);
    int rc = DACL_OK;
    if (!x || !lab)
        rc = DACL_FAIL(DACL_ENOMEM, "inference: out of memory for a batch of %d %dx%d slices", B,
                       ph, pw);
    for (int z0 = 0; rc == DACL_OK && z0 < src->nz; z0 += B) {
        int n = src->nz - z0 < B ? src->nz - z0 : B;
        for (int i = 0; i < n; i++)
            dacl_resize_nearest_f32(x + i * P, ph, pw, src->data + (size_t)(z0 + i) * HW,
                                    src->ny, src->nx);
        rc = dacl_unet_forward(m, x, n, 0, 0);
        const float *logits = dacl_unet_logits(m);
        for (int i = 0; rc == DACL_OK && i < n; i++) {
            dacl_argmax(lab, logits + (size_t)i * cfg->classes * P, 1, cfg->classes, (int)P);
            dacl_resize_nearest_u8(out->data + (size_t)(z0 + i) * HW, src->ny, src->nx, lab, ph,
                                   pw);
        }
    }
    free(x);
    free(lab);
    return rc;
}

int dacl_infer_volume(DaclUNet *m, const DaclVolume *img, const DaclIntensity *in,
                      DaclLabelVolume *pred) {
    if (!m || !img || !img->data || !pred)
        return DACL_FAIL(DACL_EINVAL, "inference: no model, image or output");
    if (dacl_unet_config(m)->in_channels != 1)
        return DACL_FAIL(DACL_EINVAL, "inference: the model takes %d input channels, a volume has 1",
                         dacl_unet_config(m)->in_channels);
    DaclVolume norm = {0};
    const DaclVolume *src = img;
    if (in) {
        /* normalise a copy: the caller's image stays as read (it is also
         * what an HDF5 prediction is written next to) */
        DACL_TRY(dacl_volume_alloc(&norm, img->nz, img->ny, img->nx));
        memcpy(norm.data, img->data, dacl_volume_numel(img) * sizeof(float));
        int rc = dacl_volume_normalize(&norm, in);
        if (rc) {
            dacl_volume_free(&norm);
            return rc;
        }
        src = &norm;
    }
    DaclLabelVolume out = {0};
    int rc = dacl_label_alloc(&out, img->nz, img->ny, img->nx);
    if (rc == DACL_OK) rc = infer_slices(m, src, &out);
    if (rc == DACL_OK) rc = dacl_label_copy_geometry(&out, img);
    dacl_volume_free(&norm);
    if (rc) {
        dacl_label_free(&out);
        return rc;
    }
    dacl_label_free(pred);
    *pred = out;
    return DACL_OK;
}

int dacl_eval_case(DaclUNet *m, const DaclDataset *ds, const DaclCase *c, int mm,
                   DaclClassMetrics *out, DaclLabelVolume *pred) {
    if (!c->label)
        return DACL_FAIL(DACL_EINVAL, "case %s has no label to evaluate against", c->id);
    DaclVolume img = {0};
    DaclLabelVolume gt = {0}, p = {0};
    int rc = dacl_dataset_load_case(ds, c, &img, &gt);
    const double *spacing = NULL;
    if (rc == DACL_OK && mm) {
        if (img.has_spacing || gt.has_spacing)
            spacing = img.has_spacing ? img.spacing : gt.spacing;
        else
            rc = DACL_FAIL(DACL_EINVAL,
                           "case %s has no voxel spacing (its files and the manifest give none); "
                           "evaluate in voxels",
                           c->id);
    }
    if (rc == DACL_OK) rc = dacl_infer_volume(m, &img, NULL, &p);
    if (rc == DACL_OK)
        rc = dacl_metrics_volume(p.data, gt.data, gt.nz, gt.ny, gt.nx, spacing,
                                 dacl_unet_config(m)->classes, out);
    if (rc == DACL_OK && pred) {
        dacl_label_free(pred);
        *pred = p;
        p = (DaclLabelVolume){0};
    }
    dacl_volume_free(&img);
    dacl_label_free(&gt);
    dacl_label_free(&p);
    return rc;
}

/* ------------------------------------------------------------ metadata -- */

int dacl_model_meta_from_dataset(const DaclDataset *ds, char **json) {
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    if (ok && ds->name) ok = cJSON_AddStringToObject(o, "dataset", ds->name) != NULL;
    if (ok)
        ok = cJSON_AddStringToObject(o, "modality", ds->modality == DACL_CT ? "CT" : "MRI") != NULL;
    cJSON *labels = ok ? cJSON_AddObjectToObject(o, "labels") : NULL;
    ok = labels != NULL;
    for (int i = 0; ok && i < ds->n_labels; i++)
        ok = cJSON_AddNumberToObject(labels, ds->labels[i].name, ds->labels[i].value) != NULL;
    cJSON *in = ok ? cJSON_AddObjectToObject(o, "intensity") : NULL;
    ok = in != NULL;
    if (ok && ds->intensity.clip) {
        double clip[2] = {ds->intensity.clip_lo, ds->intensity.clip_hi};
        cJSON *a = cJSON_CreateDoubleArray(clip, 2);
        ok = a && cJSON_AddItemToObject(in, "clip", a);
        if (a && !ok) cJSON_Delete(a);
    } else if (ok) {
        ok = cJSON_AddNullToObject(in, "clip") != NULL;
    }
    if (ok) ok = cJSON_AddBoolToObject(in, "minmax", ds->intensity.minmax) != NULL;
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) return DACL_FAIL(DACL_ENOMEM, "model metadata: out of memory");
    *json = s;
    return DACL_OK;
}

int dacl_model_meta_intensity(const char *json, const char *what, DaclIntensity *out) {
    DaclIntensity r = {.clip = 0, .clip_lo = 0.0, .clip_hi = 0.0, .minmax = 1};
    if (!json) {
        *out = r;
        return DACL_OK;
    }
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return DACL_FAIL(DACL_EFORMAT, "%s: the model's metadata is not a JSON object", what);
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "intensity");
    const cJSON *clip = cJSON_GetObjectItemCaseSensitive(in, "clip");
    const cJSON *mm = cJSON_GetObjectItemCaseSensitive(in, "minmax");
    const cJSON *lo = cJSON_GetArrayItem(clip, 0), *hi = cJSON_GetArrayItem(clip, 1);
    int ok = !in || cJSON_IsObject(in);
    if (ok && clip && !cJSON_IsNull(clip)) {
        ok = cJSON_IsArray(clip) && cJSON_GetArraySize(clip) == 2 && cJSON_IsNumber(lo) &&
             cJSON_IsNumber(hi) && lo->valuedouble < hi->valuedouble;
        r.clip = 1, r.clip_lo = ok ? lo->valuedouble : 0.0, r.clip_hi = ok ? hi->valuedouble : 0.0;
    }
    if (ok && mm) {
        ok = cJSON_IsBool(mm);
        r.minmax = cJSON_IsTrue(mm);
    }
    cJSON_Delete(root);
    if (!ok)
        return DACL_FAIL(DACL_EFORMAT,
                         "%s: metadata 'intensity' must be {\"clip\": [low, high] | null, "
                         "\"minmax\": true | false}",
                         what);
    *out = r;
    return DACL_OK;
}
