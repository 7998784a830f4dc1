/* PNG slices through libpng: one (H, W) slice = a volume with Z = 1.
 *
 * libpng reports errors by longjmp. Everything a read or write owns (FILE, libpng structs, pixel
 * buffer, row pointers) lives in a context struct in the *caller's* frame, the function holding
 * the setjmp only fills it, and the caller frees whatever is set whichever way it returned: so
 * nothing leaks on a longjmp and no local needs to be volatile. */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dacl/error.h"
#include "data_internal.h"

typedef struct {
    jmp_buf jb;
    char msg[200];
} PngErr;

static void png_on_error(png_structp png, png_const_charp msg) {
    PngErr *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jb, 1);
}

/* Warnings (bad CRC in an ancillary chunk, odd sRGB profile...) do not stop a read; stay quiet. */
static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

/* ---- reading ---- */

typedef struct {
    const char *path;
    int label;          /* read as a label map (indices) rather than an image (grey levels) */
    FILE *f;
    png_structp png;
    png_infop info;
    PngErr err;
    unsigned char *px;  /* [h][rowbytes] */
    png_bytep *rows;    /* [h] */
    int w, h, depth;    /* depth 8 or 16 after the transforms; one channel */
    uint64_t idat;      /* compressed pixel bytes in the file (every IDAT chunk) */
} PngRead;

/* The most pixel bytes (filter bytes included) an image may declare per byte of IDAT, plus a
 * slack: deflate tops out near 1032:1. Checked before the pixel buffer is allocated. */
#define PNG_MAX_RATIO 1100.0
#define PNG_SLACK_BYTES (double)(1 << 20)

/* The bytes of f's IDAT chunks that are really in the file (a length field may claim more than
 * follows it), counted with f just after the signature; f is put back there. Stops at IEND or at
 * the end of the file: libpng reports what is wrong with the chunks. */
static uint64_t png_idat_bytes(FILE *f) {
    struct stat st;
    if (fstat(fileno(f), &st) != 0) return 0;
    uint64_t size = (uint64_t)st.st_size, at = 8, total = 0;
    unsigned char hdr[8];
    while (at + 8 <= size && fread(hdr, 1, 8, f) == 8) {
        at += 8;
        uint64_t len = (uint64_t)hdr[0] << 24 | (uint64_t)hdr[1] << 16 | (uint64_t)hdr[2] << 8 | hdr[3];
        uint64_t left = size - at;
        if (!memcmp(hdr + 4, "IDAT", 4)) total += len < left ? len : left;
        if (!memcmp(hdr + 4, "IEND", 4) || len + 4 > left) break;
        at += len + 4; /* data and CRC */
        if (fseek(f, (long)at, SEEK_SET) != 0) break;
    }
    clearerr(f);
    fseek(f, 8, SEEK_SET);
    return total;
}

static void png_read_release(PngRead *r) {
    if (r->png) png_destroy_read_struct(&r->png, r->info ? &r->info : NULL, NULL);
    if (r->f) fclose(r->f);
    free(r->rows);
    free(r->px);
    r->png = NULL, r->info = NULL, r->f = NULL, r->rows = NULL, r->px = NULL;
}

/* Set up the transforms that leave one channel of 8 or 16 bits: grey levels for an image, indices
 * for a label map. */
static int png_setup_transforms(PngRead *r, int color, int depth) {
    png_structp png = r->png;
    if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (r->label) {
        if (color & PNG_COLOR_MASK_COLOR && color != PNG_COLOR_TYPE_PALETTE)
            return DACL_FAIL(DACL_EFORMAT, "%s: an RGB PNG is not a label map (use grey or palette indices)",
                             r->path);
        if (depth < 8) png_set_packing(png); /* one byte per index, values unchanged */
    } else {
        if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
        if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
        if (color & PNG_COLOR_MASK_COLOR) png_set_rgb_to_gray_fixed(png, 1, -1, -1);
    }
    png_set_interlace_handling(png);
    return DACL_OK;
}

/* The part that may longjmp: header, transforms, pixels into r. */
static int png_read_into(PngRead *r) {
    if (setjmp(r->err.jb))
        return DACL_FAIL(DACL_EFORMAT, "%s: corrupt PNG (%s)", r->path, r->err.msg);
    png_init_io(r->png, r->f);
    png_set_sig_bytes(r->png, 8);
    png_read_info(r->png, r->info);
    png_uint_32 w, h;
    int depth, color, interlace;
    png_get_IHDR(r->png, r->info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    DACL_TRY(dacl_shape_check(r->path, 1, h, w));
    /* a 70-byte file may declare 46000 x 46000 16-bit pixels: 4 GB we would allocate (and 8 more
     * for the float volume) before libpng finds the data missing (tests/fuzz) */
    double declared = (double)h * ((double)w * png_get_channels(r->png, r->info) * depth / 8.0 + 1.0);
    if (declared > PNG_MAX_RATIO * (double)r->idat + PNG_SLACK_BYTES)
        return DACL_FAIL(DACL_EFORMAT, "%s: a %u x %u PNG needs %.0f bytes of pixels, the file holds %llu compressed",
                         r->path, (unsigned)w, (unsigned)h, declared, (unsigned long long)r->idat);
    DACL_TRY(png_setup_transforms(r, color, depth));
    png_read_update_info(r->png, r->info);
    if (png_get_channels(r->png, r->info) != 1)
        return DACL_FAIL(DACL_EINTERNAL, "%s: PNG transforms left %d channels", r->path,
                         png_get_channels(r->png, r->info));
    size_t rowbytes = png_get_rowbytes(r->png, r->info);
    r->px = malloc((size_t)h * rowbytes);
    r->rows = malloc((size_t)h * sizeof *r->rows);
    if (!r->px || !r->rows) return DACL_FAIL(DACL_ENOMEM, "%s: out of memory", r->path);
    for (png_uint_32 y = 0; y < h; y++) r->rows[y] = r->px + (size_t)y * rowbytes;
    png_read_image(r->png, r->rows);
    png_read_end(r->png, NULL);
    r->w = (int)w, r->h = (int)h;
    r->depth = png_get_bit_depth(r->png, r->info);
    return DACL_OK;
}

/* Open, check the signature, read: pixels in r->px, one channel of r->depth bits. */
static int png_read_common(PngRead *r) {
    DACL_TRY(dacl_file_check(r->path));
    unsigned char sig[8];
    if (!(r->f = fopen(r->path, "rb"))) return DACL_FAIL(DACL_EIO, "%s: cannot open", r->path);
    if (fread(sig, 1, 8, r->f) != 8 || png_sig_cmp(sig, 0, 8) != 0)
        return DACL_FAIL(DACL_EFORMAT, "%s: not a PNG file", r->path);
    r->idat = png_idat_bytes(r->f);
    r->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r->err, png_on_error, png_on_warning);
    if (!r->png || !(r->info = png_create_info_struct(r->png)))
        return DACL_FAIL(DACL_ENOMEM, "%s: out of memory", r->path);
    return png_read_into(r);
}

/* Sample i of a one-channel row buffer of 8 or 16 bits (PNG stores 16-bit big-endian). */
static unsigned png_sample(const unsigned char *px, int depth, size_t i) {
    return depth == 16 ? (unsigned)px[2 * i] << 8 | px[2 * i + 1] : px[i];
}

int dacl_png_read(const char *path, DaclVolume *img) {
    PngRead r = {.path = path, .label = 0};
    DaclVolume t = {0};
    int rc = png_read_common(&r);
    if (rc == DACL_OK) rc = dacl_volume_alloc(&t, 1, r.h, r.w);
    if (rc == DACL_OK) {
        size_t rowbytes = (size_t)r.w * (size_t)(r.depth / 8);
        for (int y = 0; y < r.h; y++)
            for (int x = 0; x < r.w; x++)
                t.data[(size_t)y * r.w + x] = (float)png_sample(r.px + y * rowbytes, r.depth, (size_t)x);
        t.format = DACL_FMT_PNG;
    }
    png_read_release(&r);
    if (rc != DACL_OK) return rc;
    dacl_volume_free(img);
    *img = t;
    return DACL_OK;
}

int dacl_png_read_label(const char *path, DaclLabelVolume *lab) { return dacl_png_read_label_remap(path, lab, NULL); }

int dacl_png_read_label_remap(const char *path, DaclLabelVolume *lab, const DaclLabelRemap *rm) {
    PngRead r = {.path = path, .label = 1};
    DaclLabelVolume t = {0};
    int rc = png_read_common(&r);
    if (rc == DACL_OK) rc = dacl_label_alloc(&t, 1, r.h, r.w);
    size_t rowbytes = (size_t)r.w * (size_t)(r.depth / 8);
    for (int y = 0; rc == DACL_OK && y < r.h; y++)
        for (int x = 0; x < r.w; x++) {
            unsigned v = png_sample(r.px + y * rowbytes, r.depth, (size_t)x);
            int m = dacl_label_value(rm, v);
            if (m < 0) {
                rc = DACL_FAIL(DACL_EFORMAT, "%s: label value %u at (%d, %d) is not in 0..255%s", path, v, y, x,
                               rm && rm->n ? " nor a remapped value" : "");
                break;
            }
            t.data[(size_t)y * r.w + x] = (uint8_t)m;
        }
    png_read_release(&r);
    if (rc != DACL_OK) {
        dacl_label_free(&t);
        return rc;
    }
    t.format = DACL_FMT_PNG;
    dacl_label_free(lab);
    *lab = t;
    return DACL_OK;
}

/* ---- writing ---- */

typedef struct {
    const char *path;
    FILE *f;
    png_structp png;
    png_infop info;
    PngErr err;
} PngWrite;

/* The part that may longjmp: write h rows of w pixels of `channels` bytes. */
static int png_write_into(PngWrite *wr, int w, int h, int channels, const uint8_t *px) {
    if (setjmp(wr->err.jb)) return DACL_FAIL(DACL_EIO, "%s: PNG write failed (%s)", wr->path, wr->err.msg);
    png_init_io(wr->png, wr->f);
    png_set_IHDR(wr->png, wr->info, (png_uint_32)w, (png_uint_32)h, 8,
                 channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(wr->png, wr->info);
    for (int y = 0; y < h; y++) png_write_row(wr->png, px + (size_t)y * (size_t)w * (size_t)channels);
    png_write_end(wr->png, NULL);
    return DACL_OK;
}

static int png_write_common(const char *path, int w, int h, int channels, const uint8_t *px) {
    if (w < 1 || h < 1 || (int64_t)w * h > DACL_MAX_VOXELS || !px)
        return DACL_FAIL(DACL_EINVAL, "%s: bad PNG size %d x %d", path, w, h);
    PngWrite wr = {.path = path};
    DaclTmpFile tmp;
    DACL_TRY(dacl_tmp_open(path, &tmp));
    int rc = DACL_OK;
    if (!(wr.f = fdopen(tmp.fd, "wb"))) {
        close(tmp.fd);
        rc = DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
    } else if (!(wr.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &wr.err, png_on_error,
                                                  png_on_warning)) ||
               !(wr.info = png_create_info_struct(wr.png))) {
        rc = DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
    } else {
        rc = png_write_into(&wr, w, h, channels, px);
    }
    if (wr.png) png_destroy_write_struct(&wr.png, wr.info ? &wr.info : NULL);
    /* fclose flushes: a full disk shows up here */
    if (wr.f && fclose(wr.f) != 0 && rc == DACL_OK) rc = DACL_FAIL(DACL_EIO, "%s: write failed", path);
    return dacl_tmp_finish(&tmp, path, rc, 1);
}

int dacl_png_write_gray(const char *path, int w, int h, const uint8_t *px) {
    return png_write_common(path, w, h, 1, px);
}

int dacl_png_write_rgb(const char *path, int w, int h, const uint8_t *rgb) {
    return png_write_common(path, w, h, 3, rgb);
}
