/* Fuzz target: the NIfTI-1/-2 reader, as an image and as a label map. The
 * input is written to a .nii.gz file; zlib reads plain and gzip'd bytes
 * alike, so both kinds of seed reach the header parser. */
#include "dacl/data.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[256];
    fuzz_write_file(data, size, ".nii.gz", path, sizeof path);
    DaclVolume img = {0};
    DaclLabelVolume lab = {0};
    dacl_nifti_read(path, &img);
    dacl_nifti_read_label(path, &lab);
    dacl_volume_free(&img);
    dacl_label_free(&lab);
    return 0;
}
