/* Fuzz target: the PNG reader, as an image and as a label map. */
#include "dacl/data.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[256];
    fuzz_write_file(data, size, ".png", path, sizeof path);
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    dacl_png_read(path, &img);
    dacl_png_read_label(path, &lab);
    dacl_volume_free(&img);
    dacl_label_free(&lab);
    return 0;
}
