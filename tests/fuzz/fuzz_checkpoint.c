/* Fuzz target: the checkpoint loader (dacl_checkpoint_read, with models).
 *
 * A checkpoint ends in an FNV-1a 64 checksum of everything before it, so
 * almost every mutation would stop at the checksum test. The harness
 * rewrites the last 8 bytes to the right checksum before writing the file:
 * what is fuzzed is the parser behind the checksum, which is what a crafted
 * (not a damaged) file reaches. tests/unit cover damaged files. Models are
 * planned for one 16 x 16 image, so a plausible header cannot ask for
 * gigabytes of activations. The config inside goes through the config parser
 * as resume does. */
#include <stdlib.h>
#include <string.h>

#include "dacl/config.h"
#include "dacl/nn.h"
#include "dacl/train.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) abort();
    if (size) memcpy(buf, data, size);
    if (size >= 16) {
        uint64_t sum = dacl_fnv1a64(DACL_FNV1A64_INIT, buf, size - 8);
        memcpy(buf + size - 8, &sum, 8);
    }
    char path[256];
    fuzz_write_file(buf, size, ".bin", path, sizeof path);
    free(buf);
    DaclCheckpoint ck;
    DaclUNet *models[DACL_CKPT_MAX_MODELS] = {0};
    if (dacl_checkpoint_read(path, &ck, models, 1, 16, 16) == 0) {
        DaclJobConfig cfg;
        if (ck.config_json) dacl_config_parse(ck.config_json, &cfg, NULL, 0);
        for (int i = 0; i < ck.models; i++) dacl_unet_free(models[i]);
        dacl_checkpoint_free(&ck);
    }
    return 0;
}
