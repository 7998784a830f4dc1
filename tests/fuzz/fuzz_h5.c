/* Fuzz target: the HDF5 reader (dacl_h5_read and the generic loaders that
 * dispatch to it). The input is written to a .h5 file, as the daemon's
 * readers take paths. libhdf5 is not instrumented; a fault inside it is
 * told apart from ours by the stack (see BENCHMARKS.md, Reliability). */
#include "dacl/data.h"
#include "fuzz_util.h"

/* A volume read from `size` bytes holds no more voxels than they can store
 * compressed (core/data/h5.c: 1100 raw bytes per stored byte, plus 1 MiB). */
static void check_size(size_t numel, size_t size) {
    if ((double)numel > 1100.0 * (double)size + (double)(1 << 20)) {
        fprintf(stderr, "%zu voxels from a %zu-byte file\n", numel, size);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[256];
    fuzz_write_file(data, size, ".h5", path, sizeof path);
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    /* image and label together (training), then each alone (predict, dataset init) */
    if (dacl_h5_read(path, &img, &lab) == 0) check_size(dacl_label_numel(&lab), size);
    if (dacl_volume_load(path, &img) == 0) check_size(dacl_volume_numel(&img), size);
    if (dacl_label_load(path, &lab) == 0) check_size(dacl_label_numel(&lab), size);
    dacl_volume_free(&img);
    dacl_label_free(&lab);
    return 0;
}
