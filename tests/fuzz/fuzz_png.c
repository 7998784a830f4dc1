/* Fuzz target: the PNG reader, as an image and as a label map. */
#include "dacl/data.h"
#include "fuzz_util.h"

/* A slice read from `size` bytes holds no more pixels than they can store compressed
 * (core/data/png.c: 1100 raw bytes per byte of IDAT, plus 1 MiB). */
static void check_size(size_t numel, size_t size) {
    if ((double)numel > 1100.0 * (double)size + (double)(1 << 20)) {
        fprintf(stderr, "%zu pixels from a %zu-byte file\n", numel, size);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[256];
    fuzz_write_file(data, size, ".png", path, sizeof path);
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    if (dacl_png_read(path, &img) == 0) check_size(dacl_volume_numel(&img), size);
    if (dacl_png_read_label(path, &lab) == 0) check_size(dacl_label_numel(&lab), size);
    dacl_volume_free(&img);
    dacl_label_free(&lab);
    return 0;
}
