/* PNG reader and writers: every colour type and bit depth we accept, what an image and a label
 * map make of each, and broken files (run under ASan, this also checks nothing leaks when libpng
 * longjmps out of a read). Test files of unusual kinds are written with libpng directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <png.h>

#include "test_data_util.h"

/* Write a PNG of any kind: rows already packed as PNG wants them (big-endian 16-bit, 1/2/4-bit
 * samples packed MSB first). */
static void raw_png(const char *path, int w, int h, int depth, int color, int interlace, const uint8_t *px,
                    size_t rowbytes, const png_color *pal, int npal) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_true(png && info);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng failed writing the test file");
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    png_write_info(png, info);
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)px + (size_t)y * rowbytes;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
}

static void test_round_trip(void **state) {
    TmpFx *fx = *state;
    char p[256];
    uint8_t px[3 * 5];
    for (int i = 0; i < 15; i++) px[i] = (uint8_t)(i * 17);
    PATH(p, fx->dir, "g.png");
    assert_int_equal(dacl_png_write_gray(p, 5, 3, px), DACL_OK);
    assert_int_equal(count_entries(fx->dir), 1);
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    assert_int_equal(dacl_volume_load(p, &img), DACL_OK);
    assert_int_equal(img.nz, 1), assert_int_equal(img.ny, 3), assert_int_equal(img.nx, 5);
    assert_int_equal(img.format, DACL_FMT_PNG);
    assert_int_equal(dacl_label_load(p, &lab), DACL_OK);
    for (int i = 0; i < 15; i++) {
        assert_float_equal(img.data[i], px[i], 0);
        assert_int_equal(lab.data[i], px[i]);
    }
    /* the generic writer takes a one-slice label map */
    PATH(p, fx->dir, "l.png");
    assert_int_equal(dacl_label_write(p, &lab, &img), DACL_OK);
    DaclLabelVolume back = {0};
    assert_int_equal(dacl_png_read_label(p, &back), DACL_OK);
    assert_memory_equal(back.data, px, 15);
    DaclLabelVolume deep = {0};
    assert_int_equal(dacl_label_alloc(&deep, 2, 3, 5), DACL_OK);
    assert_fails(dacl_label_write(p, &deep, NULL), DACL_EINVAL, p);
    dacl_volume_free(&img), dacl_label_free(&lab), dacl_label_free(&back), dacl_label_free(&deep);
}

static void test_rgb(void **state) {
    TmpFx *fx = *state;
    char p[256];
    /* grey pixels (r = g = b) stay their value; pure red is mostly dark */
    uint8_t rgb[2 * 2 * 3] = {10, 10, 10, 200, 200, 200, 255, 0, 0, 0, 0, 0};
    PATH(p, fx->dir, "rgb.png");
    assert_int_equal(dacl_png_write_rgb(p, 2, 2, rgb), DACL_OK);
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    assert_int_equal(dacl_png_read(p, &img), DACL_OK);
    assert_float_equal(img.data[0], 10, 1), assert_float_equal(img.data[1], 200, 1);
    assert_true(img.data[2] > 40 && img.data[2] < 80); /* ~0.21 * 255 */
    assert_float_equal(img.data[3], 0, 0);
    assert_fails(dacl_png_read_label(p, &lab), DACL_EFORMAT, p);
    assert_null(lab.data);
    dacl_volume_free(&img);
}

static void test_bit_depths_and_palettes(void **state) {
    TmpFx *fx = *state;
    char p[256];
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};

    /* 16-bit grey: images keep 0..65535, labels must be <= 255 */
    uint8_t g16[2 * 2 * 2] = {0x00, 0x03, 0x01, 0x00, 0xff, 0xff, 0x00, 0xff}; /* 3, 256, 65535, 255 */
    PATH(p, fx->dir, "g16.png");
    raw_png(p, 2, 2, 16, PNG_COLOR_TYPE_GRAY, 0, g16, 4, NULL, 0);
    assert_int_equal(dacl_png_read(p, &img), DACL_OK);
    assert_float_equal(img.data[0], 3, 0), assert_float_equal(img.data[1], 256, 0);
    assert_float_equal(img.data[2], 65535, 0), assert_float_equal(img.data[3], 255, 0);
    assert_fails(dacl_png_read_label(p, &lab), DACL_EFORMAT, "not in 0..255");
    uint8_t l16[2 * 2 * 2] = {0, 0, 0, 1, 0, 2, 0, 255};
    raw_png(p, 2, 2, 16, PNG_COLOR_TYPE_GRAY, 0, l16, 4, NULL, 0);
    assert_int_equal(dacl_png_read_label(p, &lab), DACL_OK);
    assert_int_equal(lab.data[1], 1), assert_int_equal(lab.data[3], 255);

    /* 2-bit grey, interlaced: a label map keeps 0..3, an image scales to 0..255 */
    uint8_t g2[3] = {0x1b, 0xe4, 0x00}; /* rows: 0 1 2 3 | 3 2 1 0 | 0 0 0 0 */
    PATH(p, fx->dir, "g2.png");
    raw_png(p, 4, 3, 2, PNG_COLOR_TYPE_GRAY, 1, g2, 1, NULL, 0);
    assert_int_equal(dacl_png_read_label(p, &lab), DACL_OK);
    const uint8_t want[12] = {0, 1, 2, 3, 3, 2, 1, 0, 0, 0, 0, 0};
    assert_memory_equal(lab.data, want, 12);
    assert_int_equal(dacl_png_read(p, &img), DACL_OK);
    for (int i = 0; i < 12; i++) assert_float_equal(img.data[i], want[i] * 85, 0);

    /* 4-bit palette: a label map is its indices, an image the grey of its colours */
    png_color pal[3] = {{0, 0, 0}, {255, 255, 255}, {100, 100, 100}};
    uint8_t p4[2] = {0x12, 0x00}; /* 1 2 | 0 0 */
    PATH(p, fx->dir, "p4.png");
    raw_png(p, 2, 2, 4, PNG_COLOR_TYPE_PALETTE, 0, p4, 1, pal, 3);
    assert_int_equal(dacl_png_read_label(p, &lab), DACL_OK);
    assert_int_equal(lab.data[0], 1), assert_int_equal(lab.data[1], 2), assert_int_equal(lab.data[2], 0);
    assert_int_equal(dacl_png_read(p, &img), DACL_OK);
    assert_float_equal(img.data[0], 255, 1), assert_float_equal(img.data[1], 100, 1);
    assert_float_equal(img.data[2], 0, 0);

    /* grey + alpha: the alpha is dropped */
    uint8_t ga[2 * 2] = {42, 7, 99, 255};
    PATH(p, fx->dir, "ga.png");
    raw_png(p, 2, 1, 8, PNG_COLOR_TYPE_GRAY_ALPHA, 0, ga, 4, NULL, 0);
    assert_int_equal(dacl_png_read(p, &img), DACL_OK);
    assert_int_equal(img.nx, 2);
    assert_float_equal(img.data[0], 42, 0), assert_float_equal(img.data[1], 99, 0);
    dacl_volume_free(&img), dacl_label_free(&lab);
}

static void test_broken_files(void **state) {
    TmpFx *fx = *state;
    char good[256], p[256];
    uint8_t *px = malloc(64 * 64);
    unsigned x = 1; /* noise, so the compressed data is long enough to cut in the middle */
    for (int i = 0; i < 64 * 64; i++) x = x * 1103515245u + 12345u, px[i] = (uint8_t)(x >> 16);
    PATH(good, fx->dir, "good.png");
    assert_int_equal(dacl_png_write_gray(good, 64, 64, px), DACL_OK);
    free(px);
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    assert_int_equal(dacl_volume_alloc(&img, 1, 2, 2), DACL_OK);
    float *keep = img.data;

    check_junk_files(fx->dir, "png", dacl_png_read, &img);
    /* cut in the header, in the pixel data, just before the end */
    const long cuts[3] = {20, 2000, -10};
    for (int c = 0; c < 3; c++) {
        PATH(p, fx->dir, "cut.png");
        truncate_copy(good, p, cuts[c]);
        assert_fails(dacl_png_read(p, &img), DACL_EFORMAT, p);
        assert_fails(dacl_png_read_label(p, &lab), DACL_EFORMAT, p);
    }
    /* a flipped byte inside the image data: CRC or zlib error */
    size_t n;
    unsigned char *bytes = read_file(good, &n);
    bytes[n / 2] ^= 0x55;
    PATH(p, fx->dir, "flipped.png");
    write_file(p, bytes, n);
    free(bytes);
    assert_fails(dacl_png_read(p, &img), DACL_EFORMAT, p);
    assert_ptr_equal(img.data, keep);
    assert_int_equal(img.ny, 2);
    assert_null(lab.data);

    PATH(p, fx->dir, "no/dir/x.png");
    assert_fails(dacl_png_write_rgb(p, 2, 2, (const uint8_t *)"abcdefghijkl"), DACL_EIO, p);
    PATH(p, fx->dir, "bad.png");
    assert_fails(dacl_png_write_gray(p, 0, 2, (const uint8_t *)"ab"), DACL_EINVAL, p);
    dacl_volume_free(&img);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_rgb, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_bit_depths_and_palettes, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_broken_files, tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
