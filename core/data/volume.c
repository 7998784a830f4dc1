/* Volumes in memory (Z, H, W), the helpers every reader and writer shares, and the generic load /
 * write functions that dispatch on a path's extension. See dacl/data.h for the axis order. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dacl/error.h"
#include "data_internal.h"

/* ---- formats ---- */

DaclFormat dacl_format_from_path(const char *path) {
    if (!path) return DACL_FMT_UNKNOWN;
    if (dacl_has_suffix(path, ".h5") || dacl_has_suffix(path, ".hdf5")) return DACL_FMT_H5;
    if (dacl_has_suffix(path, ".nii") || dacl_has_suffix(path, ".nii.gz")) return DACL_FMT_NIFTI;
    if (dacl_has_suffix(path, ".png")) return DACL_FMT_PNG;
    return DACL_FMT_UNKNOWN;
}

const char *dacl_format_name(DaclFormat fmt) {
    switch (fmt) {
    case DACL_FMT_H5: return "h5";
    case DACL_FMT_NIFTI: return "nifti";
    case DACL_FMT_PNG: return "png";
    default: return "unknown";
    }
}

DaclFormat dacl_format_parse(const char *name) {
    if (!name) return DACL_FMT_UNKNOWN;
    if (strcmp(name, "h5") == 0) return DACL_FMT_H5;
    if (strcmp(name, "nifti") == 0) return DACL_FMT_NIFTI;
    if (strcmp(name, "png") == 0) return DACL_FMT_PNG;
    return DACL_FMT_UNKNOWN;
}

/* ---- shared helpers (data_internal.h) ---- */

int dacl_has_suffix(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcasecmp(s + ls - lx, suffix) == 0;
}

int dacl_path_join(char *buf, size_t n, const char *a, const char *b) {
    int len = snprintf(buf, n, "%s/%s", a, b);
    if (len < 0 || (size_t)len >= n) return DACL_FAIL(DACL_EINVAL, "%s/%s: path too long", a, b);
    return DACL_OK;
}

int dacl_file_check(const char *path) {
    struct stat st;
    if (!path || !*path) return DACL_FAIL(DACL_EINVAL, "empty file path");
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return DACL_FAIL(DACL_ENOTFOUND, "%s: no such file", path);
        return DACL_FAIL(DACL_EIO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) return DACL_FAIL(DACL_EFORMAT, "%s: not a regular file", path);
    if (access(path, R_OK) != 0) return DACL_FAIL(DACL_EIO, "%s: %s", path, strerror(errno));
    return DACL_OK;
}

int dacl_shape_check(const char *path, int64_t nz, int64_t ny, int64_t nx) {
    if (nz < 1 || ny < 1 || nx < 1)
        return DACL_FAIL(DACL_EFORMAT, "%s: bad shape (%lld, %lld, %lld)", path, (long long)nz,
                         (long long)ny, (long long)nx);
    if (nx > DACL_MAX_VOXELS / ny || nx * ny > DACL_MAX_VOXELS / nz)
        return DACL_FAIL(DACL_EFORMAT, "%s: shape (%lld, %lld, %lld) is too large", path,
                         (long long)nz, (long long)ny, (long long)nx);
    return DACL_OK;
}

int dacl_label_value(const DaclLabelRemap *rm, double v) {
    /* written so that NaN fails the test too */
    if (!(v >= 0.0 && v <= 65535.0) || v != floor(v)) return -1;
    int iv = (int)v, lo = 0, hi = rm ? rm->n - 1 : -1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (rm->pairs[mid].from == iv) return rm->pairs[mid].to;
        if (rm->pairs[mid].from < iv) lo = mid + 1;
        else hi = mid - 1;
    }
    return iv <= 255 ? iv : -1;
}

int dacl_labels_from_double(const char *path, const double *src, size_t n, uint8_t *dst,
                            const DaclLabelRemap *rm) {
    for (size_t i = 0; i < n; i++) {
        int m = dacl_label_value(rm, src[i]);
        if (m < 0)
            return DACL_FAIL(DACL_EFORMAT, "%s: label value %g at voxel %zu is not an integer in 0..255%s",
                             path, src[i], i, rm && rm->n ? " nor a remapped value" : "");
        dst[i] = (uint8_t)m;
    }
    return DACL_OK;
}

void dacl_labels_remap_u8(const DaclLabelRemap *rm, uint8_t *data, size_t n) {
    if (!rm || rm->n == 0) return;
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = (uint8_t)dacl_label_value(rm, v);
    for (size_t i = 0; i < n; i++) data[i] = lut[data[i]];
}

/* ---- volumes ---- */

/* calloc a (nz, ny, nx) block of `elem`-byte voxels into *data. */
static int shape_alloc(void **data, size_t elem, int nz, int ny, int nx) {
    if (nz < 1 || ny < 1 || nx < 1 || (int64_t)nz * ny * nx > DACL_MAX_VOXELS)
        return DACL_FAIL(DACL_EINVAL, "bad volume shape (%d, %d, %d)", nz, ny, nx);
    void *p = calloc((size_t)nz * (size_t)ny * (size_t)nx, elem);
    if (!p) return DACL_FAIL(DACL_ENOMEM, "volume (%d, %d, %d): out of memory", nz, ny, nx);
    *data = p;
    return DACL_OK;
}

int dacl_volume_alloc(DaclVolume *v, int nz, int ny, int nx) {
    void *p = NULL;
    DACL_TRY(shape_alloc(&p, sizeof(float), nz, ny, nx));
    dacl_volume_free(v);
    v->data = p;
    v->nz = nz, v->ny = ny, v->nx = nx;
    return DACL_OK;
}

void dacl_volume_free(DaclVolume *v) {
    if (!v) return;
    free(v->data);
    dacl_nifti_header_free(v->nifti);
    memset(v, 0, sizeof *v);
}

int dacl_label_alloc(DaclLabelVolume *l, int nz, int ny, int nx) {
    void *p = NULL;
    DACL_TRY(shape_alloc(&p, 1, nz, ny, nx));
    dacl_label_free(l);
    l->data = p;
    l->nz = nz, l->ny = ny, l->nx = nx;
    return DACL_OK;
}

void dacl_label_free(DaclLabelVolume *l) {
    if (!l) return;
    free(l->data);
    dacl_nifti_header_free(l->nifti);
    memset(l, 0, sizeof *l);
}

size_t dacl_volume_numel(const DaclVolume *v) { return (size_t)v->nz * (size_t)v->ny * (size_t)v->nx; }

size_t dacl_label_numel(const DaclLabelVolume *l) {
    return (size_t)l->nz * (size_t)l->ny * (size_t)l->nx;
}

int dacl_label_copy_geometry(DaclLabelVolume *dst, const DaclVolume *src) {
    if (dst->nz != src->nz || dst->ny != src->ny || dst->nx != src->nx)
        return DACL_FAIL(DACL_EINVAL, "label (%d, %d, %d) and image (%d, %d, %d) differ in shape",
                         dst->nz, dst->ny, dst->nx, src->nz, src->ny, src->nx);
    DaclNiftiHeader *h = NULL;
    if (src->nifti && !(h = dacl_nifti_header_clone(src->nifti)))
        return DACL_FAIL(DACL_ENOMEM, "copying a NIfTI header: out of memory");
    dacl_nifti_header_free(dst->nifti);
    dst->nifti = h;
    memcpy(dst->spacing, src->spacing, sizeof dst->spacing);
    dst->has_spacing = src->has_spacing;
    dst->format = src->format;
    return DACL_OK;
}

int dacl_volume_check_pair(const DaclVolume *img, const DaclLabelVolume *lab, const char *img_path,
                           const char *lab_path) {
    if (img->nz == lab->nz && img->ny == lab->ny && img->nx == lab->nx) return DACL_OK;
    return DACL_FAIL(DACL_EFORMAT, "%s: label shape (%d, %d, %d) differs from image %s (%d, %d, %d)",
                     lab_path, lab->nz, lab->ny, lab->nx, img_path, img->nz, img->ny, img->nx);
}

int dacl_volume_normalize(DaclVolume *v, const DaclIntensity *in) {
    size_t n = dacl_volume_numel(v);
    float *x = v->data;
    float lo = in->clip ? (float)in->clip_lo : -INFINITY, hi = in->clip ? (float)in->clip_hi : INFINITY;
    float mn = INFINITY, mx = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        float a = x[i];
        if (!isfinite(a)) return DACL_FAIL(DACL_ENUMERIC, "volume has a non-finite value at voxel %zu", i);
        a = a < lo ? lo : a > hi ? hi : a;
        x[i] = a;
        mn = a < mn ? a : mn;
        mx = a > mx ? a : mx;
    }
    if (!in->minmax || n == 0) return DACL_OK;
    /* a constant volume has no contrast to keep: map it to 0 rather than divide by zero */
    float scale = mx > mn ? 1.0f / (mx - mn) : 0.0f;
    for (size_t i = 0; i < n; i++) x[i] = (x[i] - mn) * scale;
    return DACL_OK;
}

/* ---- generic load / write ---- */

static int unknown_format(const char *path) {
    return DACL_FAIL(DACL_EFORMAT, "%s: unknown file type (expected .h5, .hdf5, .nii, .nii.gz or .png)",
                     path);
}

int dacl_volume_load(const char *path, DaclVolume *img) {
    switch (dacl_format_from_path(path)) {
    case DACL_FMT_H5: return dacl_h5_read(path, img, NULL);
    case DACL_FMT_NIFTI: return dacl_nifti_read(path, img);
    case DACL_FMT_PNG: return dacl_png_read(path, img);
    default: return unknown_format(path);
    }
}

int dacl_label_load_remap(const char *path, const DaclLabelRemap *remap, DaclLabelVolume *lab) {
    switch (dacl_format_from_path(path)) {
    case DACL_FMT_H5: return dacl_h5_read_remap(path, NULL, lab, remap);
    case DACL_FMT_NIFTI: return dacl_nifti_read_label_remap(path, lab, remap);
    case DACL_FMT_PNG: return dacl_png_read_label_remap(path, lab, remap);
    default: return unknown_format(path);
    }
}

int dacl_label_load(const char *path, DaclLabelVolume *lab) { return dacl_label_load_remap(path, NULL, lab); }

int dacl_label_write(const char *path, const DaclLabelVolume *lab, const DaclVolume *like) {
    DaclFormat fmt = dacl_format_from_path(path);
    if (fmt == DACL_FMT_UNKNOWN) fmt = like ? like->format : lab->format;
    if (like && (like->nz != lab->nz || like->ny != lab->ny || like->nx != lab->nx))
        return DACL_FAIL(DACL_EINVAL, "%s: label (%d, %d, %d) and its image (%d, %d, %d) differ in shape",
                         path, lab->nz, lab->ny, lab->nx, like->nz, like->ny, like->nx);
    switch (fmt) {
    case DACL_FMT_H5: return dacl_h5_write(path, like, lab);
    case DACL_FMT_NIFTI:
        if (like && !like->nifti && !lab->nifti && like->has_spacing && !lab->has_spacing) {
            /* no header anywhere: the fresh one takes the input's spacing */
            DaclLabelVolume with = *lab;
            memcpy(with.spacing, like->spacing, sizeof with.spacing);
            with.has_spacing = 1;
            return dacl_nifti_write_label(path, &with, NULL);
        }
        return dacl_nifti_write_label(path, lab, like && like->nifti ? like->nifti : NULL);
    case DACL_FMT_PNG:
        if (lab->nz != 1)
            return DACL_FAIL(DACL_EINVAL, "%s: a PNG holds one slice, the label map has %d", path, lab->nz);
        return dacl_png_write_gray(path, lab->nx, lab->ny, lab->data);
    default: return unknown_format(path);
    }
}
