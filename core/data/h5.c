/* SSL4MIS HDF5 volumes: datasets `image` (Z, H, W) float32 and `label` (Z, H, W) uint8 in one
 * file; a 2D dataset (H, W) is one slice, Z = 1.
 *
 * HDF5 prints its error stack to stderr by default; a daemon must not, so every entry point turns
 * that off for the calling thread (the library is built thread-safe: the setting and the error
 * stack are per thread) and reports the innermost HDF5 reason in our own message instead. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dacl/error.h"
#include "data_internal.h"

/* the most raw bytes a dataset may declare per byte it stores, plus a slack (h5_open_var) */
#define H5_MAX_RATIO 1100.0
#define H5_SLACK_BYTES (double)(1 << 20)

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* The most specific description on this thread's HDF5 error stack ("truncated file: eof = ...",
 * "file signature not found"), or "" if none. Call right after the failing H5 call: the next
 * call clears the stack. */
static herr_t walk_first(unsigned n, const H5E_error2_t *err, void *data) {
    if (n == 0 && err->desc) snprintf((char *)data, 256, "%s", err->desc);
    return 0;
}

static const char *h5_reason(char buf[256]) {
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_first, buf);
    return buf;
}

/* Close whatever kind of HDF5 object each id is (-1 = none) and mark it closed. */
static void h5_close_all(hid_t *ids, int n) {
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0) continue;
        switch (H5Iget_type(ids[i])) {
        case H5I_DATASET: H5Dclose(ids[i]); break;
        case H5I_DATATYPE: H5Tclose(ids[i]); break;
        case H5I_DATASPACE: H5Sclose(ids[i]); break;
        case H5I_GENPROP_LST: H5Pclose(ids[i]); break;
        default: H5Idec_ref(ids[i]); break;
        }
        ids[i] = -1;
    }
}

/* One dataset as (nz, ny, nx) plus its type class and element size; DACL_EFORMAT naming the file
 * and dataset if it is missing, not numeric or not 2D/3D. */
typedef struct {
    hid_t ds;
    int64_t dims[3];
    H5T_class_t cls;
    size_t size;
    H5T_sign_t sign;
} H5Var;

static int h5_open_var(hid_t f, const char *path, const char *name, H5Var *v) {
    char why[256];
    hid_t ids[2] = {-1, -1}; /* type, space */
    v->ds = -1;
    htri_t ex = H5Lexists(f, name, H5P_DEFAULT);
    if (ex <= 0) return DACL_FAIL(DACL_EFORMAT, "%s: no dataset '%s'", path, name);
    if ((v->ds = H5Dopen2(f, name, H5P_DEFAULT)) < 0)
        return DACL_FAIL(DACL_EFORMAT, "%s: cannot open dataset '%s' (%s)", path, name, h5_reason(why));
    int rc = DACL_OK;
    if ((ids[0] = H5Dget_type(v->ds)) < 0 || (ids[1] = H5Dget_space(v->ds)) < 0) {
        rc = DACL_FAIL(DACL_EFORMAT, "%s: dataset '%s': %s", path, name, h5_reason(why));
        goto done;
    }
    v->cls = H5Tget_class(ids[0]);
    v->size = H5Tget_size(ids[0]);
    v->sign = v->cls == H5T_INTEGER ? H5Tget_sign(ids[0]) : H5T_SGN_ERROR;
    if (v->cls != H5T_FLOAT && v->cls != H5T_INTEGER) {
        rc = DACL_FAIL(DACL_EFORMAT, "%s: dataset '%s' is not numeric (HDF5 type class %d)", path,
                       name, (int)v->cls);
        goto done;
    }
    if (v->size == 0 || v->size > 16) { /* a corrupt type message; 0 would pass the size check below */
        rc = DACL_FAIL(DACL_EFORMAT, "%s: dataset '%s' has %zu-byte elements", path, name, v->size);
        goto done;
    }
    int nd = H5Sget_simple_extent_ndims(ids[1]);
    hsize_t d[H5S_MAX_RANK];
    if (nd < 2 || nd > 3 || H5Sget_simple_extent_dims(ids[1], d, NULL) != nd) {
        rc = DACL_FAIL(DACL_EFORMAT, "%s: dataset '%s' has %d dimensions, expected (Z, H, W) or (H, W)",
                       path, name, nd);
        goto done;
    }
    v->dims[0] = nd == 3 ? (int64_t)d[0] : 1;
    v->dims[1] = (int64_t)d[nd - 2];
    v->dims[2] = (int64_t)d[nd - 1];
    if ((rc = dacl_shape_check(path, v->dims[0], v->dims[1], v->dims[2])) != DACL_OK) goto done;
    /* A few kilobytes of header may declare gigabytes, which we (and libhdf5's type conversion)
     * would allocate before finding out the data is not there: what a dataset declares must be
     * stored in the file, or compressible into what is (deflate tops out near 1032:1). The slack
     * lets small datasets that are all fill value through. What the header says is stored is
     * itself a claim: libhdf5 reads past the end of a file as zeros, so a contiguous dataset can
     * "store" megabytes in a file of a few kilobytes. Nothing stores more than the file holds. */
    double declared = (double)v->dims[0] * (double)v->dims[1] * (double)v->dims[2] * (double)v->size;
    double stored = (double)H5Dget_storage_size(v->ds);
    struct stat st;
    if (stat(path, &st) == 0 && (double)st.st_size < stored) stored = (double)st.st_size;
    if (declared > H5_MAX_RATIO * stored + H5_SLACK_BYTES)
        rc = DACL_FAIL(DACL_EFORMAT,
                       "%s: dataset '%s' declares %.0f bytes of data but the file stores %.0f for it",
                       path, name, declared, stored);
done:
    h5_close_all(ids, 2);
    if (rc != DACL_OK) {
        H5Dclose(v->ds);
        v->ds = -1;
    }
    return rc;
}

static int h5_read_image(const char *path, const H5Var *v, DaclVolume *out) {
    char why[256];
    DaclVolume t = {0};
    DACL_TRY(dacl_volume_alloc(&t, (int)v->dims[0], (int)v->dims[1], (int)v->dims[2]));
    /* HDF5 converts any integer or float type to native float on the way in */
    if (H5Dread(v->ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data) < 0) {
        int rc = DACL_FAIL(DACL_EFORMAT, "%s: cannot read dataset 'image' (%s)", path, h5_reason(why));
        dacl_volume_free(&t);
        return rc;
    }
    t.format = DACL_FMT_H5;
    *out = t;
    return DACL_OK;
}

static int h5_read_label(const char *path, const H5Var *v, DaclLabelVolume *out, const DaclLabelRemap *rm) {
    char why[256];
    DaclLabelVolume t = {0};
    DACL_TRY(dacl_label_alloc(&t, (int)v->dims[0], (int)v->dims[1], (int)v->dims[2]));
    size_t n = dacl_label_numel(&t);
    int rc = DACL_OK;
    if (v->cls == H5T_INTEGER && v->size == 1 && v->sign == H5T_SGN_NONE) {
        if (H5Dread(v->ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data) < 0)
            rc = DACL_FAIL(DACL_EFORMAT, "%s: cannot read dataset 'label' (%s)", path, h5_reason(why));
        else
            dacl_labels_remap_u8(rm, t.data, n);
    } else {
        /* HDF5 would clamp out-of-range values silently when converting to uint8: go through
         * double (exact for every integer a label can hold) and check each value */
        double *tmp = malloc(n * sizeof *tmp);
        if (!tmp)
            rc = DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
        else if (H5Dread(v->ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0)
            rc = DACL_FAIL(DACL_EFORMAT, "%s: cannot read dataset 'label' (%s)", path, h5_reason(why));
        else
            rc = dacl_labels_from_double(path, tmp, n, t.data, rm);
        free(tmp);
    }
    if (rc != DACL_OK) {
        dacl_label_free(&t);
        return rc;
    }
    t.format = DACL_FMT_H5;
    *out = t;
    return DACL_OK;
}

int dacl_h5_read(const char *path, DaclVolume *img, DaclLabelVolume *lab) {
    return dacl_h5_read_remap(path, img, lab, NULL);
}

int dacl_h5_read_remap(const char *path, DaclVolume *img, DaclLabelVolume *lab, const DaclLabelRemap *rm) {
    char why[256];
    if (!img && !lab) return DACL_FAIL(DACL_EINVAL, "%s: nothing to read", path);
    DACL_TRY(dacl_file_check(path));
    h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return DACL_FAIL(DACL_EFORMAT, "%s: not a readable HDF5 file (%s)", path, h5_reason(why));
    H5Var vi = {.ds = -1}, vl = {.ds = -1};
    DaclVolume ti = {0};
    DaclLabelVolume tl = {0};
    int rc = DACL_OK;
    if (img && (rc = h5_open_var(f, path, "image", &vi)) != DACL_OK) goto done;
    if (lab && (rc = h5_open_var(f, path, "label", &vl)) != DACL_OK) goto done;
    if (img && lab && memcmp(vi.dims, vl.dims, sizeof vi.dims) != 0) {
        rc = DACL_FAIL(DACL_EFORMAT,
                       "%s: dataset 'label' (%lld, %lld, %lld) and 'image' (%lld, %lld, %lld) differ in shape",
                       path, (long long)vl.dims[0], (long long)vl.dims[1], (long long)vl.dims[2],
                       (long long)vi.dims[0], (long long)vi.dims[1], (long long)vi.dims[2]);
        goto done;
    }
    if (img && (rc = h5_read_image(path, &vi, &ti)) != DACL_OK) goto done;
    if (lab && (rc = h5_read_label(path, &vl, &tl, rm)) != DACL_OK) goto done;
done:
    if (vi.ds >= 0) H5Dclose(vi.ds);
    if (vl.ds >= 0) H5Dclose(vl.ds);
    H5Fclose(f);
    if (rc != DACL_OK) {
        dacl_volume_free(&ti);
        dacl_label_free(&tl);
        return rc;
    }
    if (img) {
        dacl_volume_free(img);
        *img = ti;
    }
    if (lab) {
        dacl_label_free(lab);
        *lab = tl;
    }
    return DACL_OK;
}

/* Write one (nz, ny, nx) dataset, chunked by slice (the unit training reads) and gzip'd. */
static int h5_write_var(hid_t f, const char *path, const char *name, hid_t type, int nz, int ny,
                        int nx, const void *data) {
    char why[256];
    hsize_t dims[3] = {(hsize_t)nz, (hsize_t)ny, (hsize_t)nx};
    hsize_t chunk[3] = {1, (hsize_t)ny, (hsize_t)nx};
    hid_t ids[3] = {-1, -1, -1}; /* space, plist, dataset */
    int rc = DACL_OK;
    if ((ids[0] = H5Screate_simple(3, dims, NULL)) < 0 || (ids[1] = H5Pcreate(H5P_DATASET_CREATE)) < 0 ||
        H5Pset_chunk(ids[1], 3, chunk) < 0 || H5Pset_deflate(ids[1], 4) < 0 ||
        (ids[2] = H5Dcreate2(f, name, type, ids[0], H5P_DEFAULT, ids[1], H5P_DEFAULT)) < 0 ||
        H5Dwrite(ids[2], type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = DACL_FAIL(DACL_EIO, "%s: cannot write dataset '%s' (%s)", path, name, h5_reason(why));
    h5_close_all(ids, 3);
    return rc;
}

int dacl_h5_write(const char *path, const DaclVolume *img, const DaclLabelVolume *lab) {
    char why[256];
    if (!img && !lab) return DACL_FAIL(DACL_EINVAL, "%s: nothing to write", path);
    if (img && lab && (img->nz != lab->nz || img->ny != lab->ny || img->nx != lab->nx))
        return DACL_FAIL(DACL_EINVAL, "%s: image (%d, %d, %d) and label (%d, %d, %d) differ in shape",
                         path, img->nz, img->ny, img->nx, lab->nz, lab->ny, lab->nx);
    DaclTmpFile tmp;
    DACL_TRY(dacl_tmp_open(path, &tmp));
    close(tmp.fd); /* HDF5 opens the file itself; the name is reserved */
    h5_quiet();
    int rc = DACL_OK;
    hid_t f = H5Fcreate(tmp.name, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        rc = DACL_FAIL(DACL_EIO, "%s: cannot create HDF5 file (%s)", path, h5_reason(why));
    } else {
        if (img)
            rc = h5_write_var(f, path, "image", H5T_NATIVE_FLOAT, img->nz, img->ny, img->nx, img->data);
        if (rc == DACL_OK && lab)
            rc = h5_write_var(f, path, "label", H5T_NATIVE_UINT8, lab->nz, lab->ny, lab->nx, lab->data);
        /* closing flushes: a full disk shows up here */
        if (H5Fclose(f) < 0 && rc == DACL_OK)
            rc = DACL_FAIL(DACL_EIO, "%s: cannot finish HDF5 file (%s)", path, h5_reason(why));
    }
    return dacl_tmp_finish(&tmp, path, rc, 1);
}
