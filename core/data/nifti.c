/* NIfTI-1 and NIfTI-2 volumes (.nii, .nii.gz) through libnifti2.
 *
 * Axis mapping (dacl/data.h): NIfTI voxel (i, j, k), i fastest on disk, is our (z, y, x) =
 * (k, j, i). libnifti hands the data over in disk order, which read as a C array [nz][ny][nx]
 * is already (Z, H, W): no transpose on reading, none on writing, so the mapping is its own
 * inverse and a label map written with the source header lines up with the source.
 *
 * libnifti converts headers (both versions, both byte orders, qform/sform, units) in both
 * directions; the bytes are read and written here, through zlib. Its own file functions guess
 * file names from the path (see nifti_load), say only NULL when they fail, and
 * nifti_image_write returns nothing at all, so it could not report a short write or a full disk. */
#include <errno.h>
#include <math.h>
#include <nifti2_io.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "dacl/error.h"
#include "data_internal.h"

/* The header of a file we read, data unloaded. */
struct DaclNiftiHeader {
    nifti_image *nim;
};

/* libnifti prints its own diagnostics to stderr unless its (process-wide) debug level is 0; set
 * it once. This is the library's option, not state of ours. */
static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;
static void nifti_quiet_init(void) { nifti_set_debug_level(0); }

DaclNiftiHeader *dacl_nifti_header_clone(const DaclNiftiHeader *h) {
    if (!h) return NULL;
    DaclNiftiHeader *c = malloc(sizeof *c);
    if (!c) return NULL;
    c->nim = nifti_copy_nim_info(h->nim);
    if (!c->nim) {
        free(c);
        return NULL;
    }
    return c;
}

void dacl_nifti_header_free(DaclNiftiHeader *h) {
    if (!h) return;
    nifti_image_free(h->nim);
    free(h);
}

/* ---- reading ---- */

/* Copy n voxels of libnifti's type `dt` to dst (float or double), as raw * slope + inter, in
 * double precision so int32/int64 data and the scaling lose nothing before the last rounding. */
#define CONVERT_LOOP(DST, SRC_T)                                                               \
    do {                                                                                       \
        const SRC_T *s_ = (const SRC_T *)src;                                                  \
        for (size_t i_ = 0; i_ < n; i_++) (DST)[i_] = (double)s_[i_] * slope + inter;          \
    } while (0)

#define CONVERT_ALL(DST)                                                                       \
    switch (dt) {                                                                              \
    case DT_UINT8: CONVERT_LOOP(DST, uint8_t); break;                                          \
    case DT_INT8: CONVERT_LOOP(DST, int8_t); break;                                            \
    case DT_UINT16: CONVERT_LOOP(DST, uint16_t); break;                                        \
    case DT_INT16: CONVERT_LOOP(DST, int16_t); break;                                          \
    case DT_UINT32: CONVERT_LOOP(DST, uint32_t); break;                                        \
    case DT_INT32: CONVERT_LOOP(DST, int32_t); break;                                          \
    case DT_UINT64: CONVERT_LOOP(DST, uint64_t); break;                                        \
    case DT_INT64: CONVERT_LOOP(DST, int64_t); break;                                          \
    case DT_FLOAT32: CONVERT_LOOP(DST, float); break;                                          \
    case DT_FLOAT64: CONVERT_LOOP(DST, double); break;                                         \
    default: break;                                                                            \
    }

static void convert_to_float(const void *src, int dt, size_t n, double slope, double inter, float *dst) {
    CONVERT_ALL(dst)
}

static void convert_to_double(const void *src, int dt, size_t n, double slope, double inter, double *dst) {
    CONVERT_ALL(dst)
}

static int supported_type(int dt) {
    switch (dt) {
    case DT_UINT8: case DT_INT8: case DT_UINT16: case DT_INT16: case DT_UINT32: case DT_INT32:
    case DT_UINT64: case DT_INT64: case DT_FLOAT32: case DT_FLOAT64: return 1;
    default: return 0;
    }
}

/* mm per unit of the header's xyz_units; "unknown" is taken as mm, as every tool does. */
static double unit_to_mm(int xyz_units) {
    switch (XYZT_TO_SPACE(xyz_units)) {
    case NIFTI_UNITS_METER: return 1000.0;
    case NIFTI_UNITS_MICRON: return 0.001;
    default: return 1.0;
    }
}

/* The first buffer for gzip'd voxels (nifti_load): it doubles while more data decompresses. */
#define NIFTI_FIRST_READ ((int64_t)64 << 20)

/* Read exactly `n` bytes (in chunks: gzread takes an unsigned count); a short count means the
 * file ends early, -1 a gzip stream that does not decode. */
static int64_t gz_read_all(gzFile g, void *buf, int64_t n) {
    int64_t got = 0;
    while (got < n) {
        unsigned chunk = n - got > (1 << 30) ? 1u << 30 : (unsigned)(n - got);
        int r = gzread(g, (char *)buf + got, chunk);
        if (r < 0) return -1;
        if (r == 0) break;
        got += r;
    }
    return got;
}

/* Parse the header bytes (either version, either byte order) into a nifti_image without data;
 * *swapped says whether the voxels need byte-swapping too. */
static int parse_header(const char *path, unsigned char *buf, int64_t n, nifti_image **out, int *swapped) {
    int32_t size;
    if (n < 4) return DACL_FAIL(DACL_EFORMAT, "%s: too short to be a NIfTI file", path);
    memcpy(&size, buf, 4);
    int32_t swapped_size = (int32_t)__builtin_bswap32((uint32_t)size);
    int version = size == 348 || swapped_size == 348 ? 1 : size == 540 || swapped_size == 540 ? 2 : 0;
    *swapped = size != 348 && size != 540;
    if (!version)
        return DACL_FAIL(DACL_EFORMAT, "%s: not a NIfTI file (header size field is %d)", path, (int)size);
    if (n < (version == 1 ? 348 : 540)) return DACL_FAIL(DACL_EFORMAT, "%s: NIfTI header truncated", path);
    nifti_image *nim = NULL;
    if (version == 1) {
        nifti_1_header h;
        memcpy(&h, buf, sizeof h);
        if (*swapped) swap_nifti_header(&h, 1);
        if (memcmp(h.magic, "n+1", 4) != 0)
            return DACL_FAIL(DACL_EFORMAT, "%s: not a single-file NIfTI-1 (magic \"%.3s\")", path, h.magic);
        nim = nifti_convert_n1hdr2nim(h, path);
    } else {
        nifti_2_header h;
        memcpy(&h, buf, sizeof h);
        if (*swapped) swap_nifti_header(&h, 2);
        if (memcmp(h.magic, "n+2", 4) != 0)
            return DACL_FAIL(DACL_EFORMAT, "%s: not a single-file NIfTI-2 (magic \"%.3s\")", path, h.magic);
        /* libnifti 2.x's converter walks dim[1..dim[0]] of its copy on the stack without checking
         * dim[0] for NIfTI-2 (it does for NIfTI-1): a larger one writes past the array and smashes
         * the stack (tests/fuzz). Checked here first. */
        if (h.dim[0] < 1 || h.dim[0] > 7)
            return DACL_FAIL(DACL_EFORMAT, "%s: bad NIfTI dim[0] = %lld", path, (long long)h.dim[0]);
        nim = nifti_convert_n2hdr2nim(h, path);
    }
    if (!nim) return DACL_FAIL(DACL_EFORMAT, "%s: invalid NIfTI-%d header", path, version);
    /* libnifti marks every single-file image NIFTI1_1; the writer needs the real version */
    nim->nifti_type = version == 2 ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;
    *out = nim;
    return DACL_OK;
}

/* Check that nim is one 2D/3D volume of a numeric type we convert. */
static int check_volume(const char *path, const nifti_image *nim) {
    int64_t extra = 1;
    for (int d = 4; d <= 7; d++) extra *= nim->dim[0] >= d ? nim->dim[d] : 1;
    if (nim->dim[0] < 1 || nim->dim[0] > 7)
        return DACL_FAIL(DACL_EFORMAT, "%s: bad NIfTI dim[0] = %lld", path, (long long)nim->dim[0]);
    if (extra != 1)
        return DACL_FAIL(DACL_EFORMAT, "%s: %lld-dimensional NIfTI with %lld volumes; expected one 3D volume",
                         path, (long long)nim->dim[0], (long long)extra);
    if (!supported_type(nim->datatype))
        return DACL_FAIL(DACL_EFORMAT, "%s: unsupported NIfTI datatype %s (%d)", path,
                         nifti_datatype_string(nim->datatype), nim->datatype);
    return dacl_shape_check(path, nim->nz, nim->ny, nim->nx);
}

/* Read header and voxels of `path` into *out_nim (data loaded, native byte order).
 *
 * The file is read here, through zlib (which reads plain files as they are), rather than by
 * nifti_image_read: that one derives file names from the path and, given "x.nii.gz" next to an
 * "x.nii", has been seen reading the voxels of the wrong one. */
static int nifti_load(const char *path, nifti_image **out_nim) {
    DACL_TRY(dacl_file_check(path));
    pthread_once(&quiet_once, nifti_quiet_init);
    gzFile g = gzopen(path, "rb");
    if (!g) return DACL_FAIL(DACL_EIO, "%s: cannot open: %s", path, strerror(errno));
    gzbuffer(g, 1 << 17);
    unsigned char hbuf[540];
    nifti_image *nim = NULL;
    int swapped = 0, rc;
    int64_t n = gz_read_all(g, hbuf, sizeof hbuf);
    if (n < 0)
        rc = DACL_FAIL(DACL_EFORMAT, "%s: corrupt gzip data", path);
    else if ((rc = parse_header(path, hbuf, n, &nim, &swapped)) == DACL_OK)
        rc = check_volume(path, nim);
    int64_t bytes = rc == DACL_OK ? nim->nvox * nim->nbyper : 0;
    if (rc == DACL_OK && (nim->iname_offset < 0 || gzseek(g, (z_off_t)nim->iname_offset, SEEK_SET) < 0))
        rc = DACL_FAIL(DACL_EFORMAT, "%s: bad voxel offset %lld", path, (long long)nim->iname_offset);
    /* an uncompressed file shows a lying header before we allocate what it claims */
    struct stat st;
    if (rc == DACL_OK && gzdirect(g) && stat(path, &st) == 0 && st.st_size < nim->iname_offset + bytes)
        rc = DACL_FAIL(DACL_EFORMAT, "%s: truncated: %lld voxel bytes expected after offset %lld, the file has %lld",
                       path, (long long)bytes, (long long)nim->iname_offset, (long long)st.st_size);
    /* A gzip'd one cannot: a 63-byte .nii.gz may declare 8 GB (tests/fuzz). Its buffer grows with
     * what actually decompresses, from 64 MiB and doubling, so memory follows the data, not
     * the header. */
    int64_t cap = gzdirect(g) || bytes < NIFTI_FIRST_READ ? bytes : NIFTI_FIRST_READ;
    if (rc == DACL_OK && !(nim->data = malloc((size_t)cap)))
        rc = DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
    int64_t got = 0;
    while (rc == DACL_OK && (n = gz_read_all(g, (char *)nim->data + got, cap - got)) == cap - got && cap < bytes) {
        got = cap;
        cap = cap > bytes / 2 ? bytes : 2 * cap;
        void *grown = realloc(nim->data, (size_t)cap);
        if (!grown)
            rc = DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
        else
            nim->data = grown;
    }
    if (rc == DACL_OK && n >= 0) got += n;
    if (rc == DACL_OK && got != bytes)
        rc = n < 0 ? DACL_FAIL(DACL_EFORMAT, "%s: corrupt gzip data in the voxels", path)
                   : DACL_FAIL(DACL_EFORMAT, "%s: truncated: %lld of %lld voxel bytes", path, (long long)got,
                               (long long)bytes);
    gzclose(g);
    if (rc == DACL_OK && swapped && nim->nbyper > 1) nifti_swap_Nbytes(nim->nvox, nim->nbyper, nim->data);
    if (rc != DACL_OK) {
        nifti_image_free(nim);
        return rc;
    }
    *out_nim = nim;
    return DACL_OK;
}

/* The spacing (z, y, x) in mm; a 2D file's missing slice thickness counts as 1. */
static int nifti_spacing(const nifti_image *nim, double sp[3]) {
    double mm = unit_to_mm(nim->xyz_units);
    double dz = fabs(nim->dz), dy = fabs(nim->dy), dx = fabs(nim->dx);
    if (nim->nz == 1 && !(dz > 0)) dz = 1.0;
    sp[0] = dz * mm, sp[1] = dy * mm, sp[2] = dx * mm;
    return dx > 0 && dy > 0 && dz > 0 && isfinite(dx * dy * dz);
}

/* Give a volume read from `nim` its spacing and format, and keep nim itself (data freed) as its
 * header. On failure nim is still the caller's. */
static int keep_geometry(const char *path, nifti_image *nim, double spacing[3], int *has_spacing,
                         DaclFormat *format, DaclNiftiHeader **hdr) {
    DaclNiftiHeader *h = malloc(sizeof *h);
    if (!h) return DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
    *has_spacing = nifti_spacing(nim, spacing);
    *format = DACL_FMT_NIFTI;
    nifti_image_unload(nim);
    h->nim = nim;
    *hdr = h;
    return DACL_OK;
}

/* The scaling the header asks for: slope 0 (or non-finite) means none. */
static void nifti_scaling(const nifti_image *nim, double *slope, double *inter) {
    int on = nim->scl_slope != 0.0 && isfinite(nim->scl_slope) && isfinite(nim->scl_inter);
    *slope = on ? nim->scl_slope : 1.0;
    *inter = on ? nim->scl_inter : 0.0;
}

int dacl_nifti_read(const char *path, DaclVolume *img) {
    nifti_image *nim = NULL;
    DACL_TRY(nifti_load(path, &nim));
    DaclVolume t = {0};
    int rc = dacl_volume_alloc(&t, (int)nim->nz, (int)nim->ny, (int)nim->nx);
    if (rc == DACL_OK) {
        double slope, inter;
        nifti_scaling(nim, &slope, &inter);
        convert_to_float(nim->data, nim->datatype, dacl_volume_numel(&t), slope, inter, t.data);
        rc = keep_geometry(path, nim, t.spacing, &t.has_spacing, &t.format, &t.nifti);
    }
    if (rc != DACL_OK) {
        nifti_image_free(nim);
        dacl_volume_free(&t);
        return rc;
    }
    dacl_volume_free(img);
    *img = t;
    return DACL_OK;
}

int dacl_nifti_read_label(const char *path, DaclLabelVolume *lab) {
    return dacl_nifti_read_label_remap(path, lab, NULL);
}

int dacl_nifti_read_label_remap(const char *path, DaclLabelVolume *lab, const DaclLabelRemap *rm) {
    nifti_image *nim = NULL;
    DACL_TRY(nifti_load(path, &nim));
    DaclLabelVolume t = {0};
    int rc = dacl_label_alloc(&t, (int)nim->nz, (int)nim->ny, (int)nim->nx);
    size_t n = rc == DACL_OK ? dacl_label_numel(&t) : 0;
    double slope, inter;
    nifti_scaling(nim, &slope, &inter);
    if (rc == DACL_OK && nim->datatype == DT_UINT8 && slope == 1.0 && inter == 0.0) {
        memcpy(t.data, nim->data, n);
        dacl_labels_remap_u8(rm, t.data, n);
    } else if (rc == DACL_OK) {
        /* wider or float types: convert through double and check every value is a label */
        double *tmp = malloc(n * sizeof *tmp);
        if (!tmp) {
            rc = DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
        } else {
            convert_to_double(nim->data, nim->datatype, n, slope, inter, tmp);
            rc = dacl_labels_from_double(path, tmp, n, t.data, rm);
            free(tmp);
        }
    }
    if (rc == DACL_OK) rc = keep_geometry(path, nim, t.spacing, &t.has_spacing, &t.format, &t.nifti);
    if (rc != DACL_OK) {
        nifti_image_free(nim);
        dacl_label_free(&t);
        return rc;
    }
    dacl_label_free(lab);
    *lab = t;
    return DACL_OK;
}

/* ---- writing ---- */

/* What a writer puts on disk: a (Z, H, W) volume of one NIfTI datatype and the geometry it comes
 * with (a header to copy, else its spacing). */
typedef struct {
    int nz, ny, nx;
    const double *spacing; /* (z, y, x) mm, or NULL */
    const nifti_image *src;
    int datatype, nbyper, intent;
    const void *data; /* [nz][ny][nx] of `datatype` */
} OutVolume;

/* The output header: a copy of `src`'s (or a fresh one from the spacing), made of the volume's
 * datatype and shape, in a single-file NIfTI of the same version. */
static int out_header(const char *path, const OutVolume *v, nifti_image **out) {
    nifti_image *nim;
    const nifti_image *src = v->src;
    if (src) {
        /* dimensions past the third count as 1 when 0 (as fresh headers store them) */
        int64_t extra = (src->nt > 0 ? src->nt : 1) * (src->nu > 0 ? src->nu : 1) *
                        (src->nv > 0 ? src->nv : 1) * (src->nw > 0 ? src->nw : 1);
        if (src->nx != v->nx || src->ny != v->ny || src->nz != v->nz || extra != 1)
            return DACL_FAIL(DACL_EINVAL,
                             "%s: volume (%d, %d, %d) does not fit the NIfTI header (i, j, k) = (%lld, %lld, %lld)",
                             path, v->nz, v->ny, v->nx, (long long)src->nx, (long long)src->ny,
                             (long long)src->nz);
        if (!(nim = nifti_copy_nim_info(src))) return DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
        nifti_free_extensions(nim);
    } else {
        const int64_t dims[8] = {3, v->nx, v->ny, v->nz, 1, 1, 1, 1};
        if (!(nim = nifti_make_new_nim(dims, v->datatype, 0)))
            return DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
        if (v->spacing) {
            nim->dx = nim->pixdim[1] = v->spacing[2];
            nim->dy = nim->pixdim[2] = v->spacing[1];
            nim->dz = nim->pixdim[3] = v->spacing[0];
        }
        nim->xyz_units = NIFTI_UNITS_MM;
        nim->qform_code = nim->sform_code = NIFTI_XFORM_UNKNOWN;
        nim->nifti_type = NIFTI_FTYPE_NIFTI1_1;
    }
    nim->datatype = v->datatype;
    nim->nbyper = v->nbyper;
    nim->swapsize = 0;
    nim->nvox = (int64_t)v->nz * v->ny * v->nx;
    nim->scl_slope = 0.0;
    nim->scl_inter = 0.0;
    nim->cal_min = nim->cal_max = 0.0;
    nim->intent_code = v->intent;
    nim->intent_p1 = nim->intent_p2 = nim->intent_p3 = 0.0;
    memset(nim->intent_name, 0, sizeof nim->intent_name);
    /* one file, data right after the header and the 4-byte extension flag */
    int v2 = nim->nifti_type == NIFTI_FTYPE_NIFTI2_1 || nim->nifti_type == NIFTI_FTYPE_NIFTI2_2;
    nim->nifti_type = v2 ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;
    nim->iname_offset = v2 ? (int64_t)sizeof(nifti_2_header) + 4 : (int64_t)sizeof(nifti_1_header) + 4;
    *out = nim;
    return DACL_OK;
}

/* Write n bytes to a plain fd or a gzFile, failing on any short write. */
static int out_write(int fd, gzFile gz, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? 1u << 30 : (unsigned)n;
        long w = gz ? gzwrite(gz, p, chunk) : (long)write(fd, p, chunk);
        if (w <= 0) {
            if (!gz && w < 0 && errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int nifti_write(const char *path, const OutVolume *v) {
    nifti_image *nim = NULL;
    pthread_once(&quiet_once, nifti_quiet_init);
    DACL_TRY(out_header(path, v, &nim));

    /* the raw header, native byte order (readers detect it from sizeof_hdr) */
    nifti_1_header h1;
    nifti_2_header h2;
    const void *hbytes = NULL;
    size_t hsize = 0;
    int rc = DACL_OK;
    if (nim->nifti_type == NIFTI_FTYPE_NIFTI2_1) {
        if (nifti_convert_nim2n2hdr(nim, &h2) == 0) hbytes = &h2, hsize = sizeof h2;
    } else if (nifti_convert_nim2n1hdr(nim, &h1) == 0) {
        hbytes = &h1, hsize = sizeof h1;
    }
    nifti_image_free(nim);
    if (!hbytes) return DACL_FAIL(DACL_EINVAL, "%s: the volume does not fit a NIfTI header", path);

    DaclTmpFile tmp;
    DACL_TRY(dacl_tmp_open(path, &tmp));
    int fd = tmp.fd;
    gzFile gz = NULL;
    if (dacl_has_suffix(path, ".gz") && !(gz = gzdopen(fd, "wb6"))) {
        close(fd);
        return dacl_tmp_finish(&tmp, path, DACL_FAIL(DACL_ENOMEM, "%s: cannot start gzip stream", path), 1);
    }
    static const char no_extensions[4] = {0, 0, 0, 0};
    errno = 0;
    int bad = out_write(fd, gz, hbytes, hsize) || out_write(fd, gz, no_extensions, 4) ||
              out_write(fd, gz, v->data, (size_t)v->nz * v->ny * v->nx * (size_t)v->nbyper);
    int e = errno;
    /* closing flushes the gzip stream: a full disk can show up only here */
    if (gz ? gzclose(gz) != Z_OK : close(fd) != 0) bad = 1, e = e ? e : errno;
    if (bad) rc = DACL_FAIL(DACL_EIO, "%s: write failed: %s", path, e ? strerror(e) : "gzip error");
    return dacl_tmp_finish(&tmp, path, rc, 1);
}

int dacl_nifti_write_label(const char *path, const DaclLabelVolume *lab, const DaclNiftiHeader *hdr) {
    const DaclNiftiHeader *h = hdr ? hdr : lab->nifti;
    OutVolume v = {lab->nz, lab->ny, lab->nx, lab->has_spacing ? lab->spacing : NULL, h ? h->nim : NULL,
                   DT_UINT8, 1, NIFTI_INTENT_LABEL, lab->data};
    return nifti_write(path, &v);
}

int dacl_nifti_write_image(const char *path, const DaclVolume *img, const DaclNiftiHeader *hdr) {
    const DaclNiftiHeader *h = hdr ? hdr : img->nifti;
    OutVolume v = {img->nz, img->ny, img->nx, img->has_spacing ? img->spacing : NULL, h ? h->nim : NULL,
                   DT_FLOAT32, 4, NIFTI_INTENT_NONE, img->data};
    return nifti_write(path, &v);
}
