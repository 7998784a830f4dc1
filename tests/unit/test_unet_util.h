/* A small U-Net for the model-file and inference tests: widths 2-4-8-16-32,
 * random weights and BN statistics away from (0, 1), so every block matters
 * and a forward takes a millisecond. Include after <cmocka.h>. */
#ifndef TEST_UNET_UTIL_H
#define TEST_UNET_UTIL_H

#include <string.h>

#include "dacl/nn.h"

static inline DaclUNet *tiny_unet(uint64_t seed, int in_channels, int classes, int max_n, int h,
                                  int w) {
    DaclUNetConfig cfg = dacl_unet_default_config(in_channels, classes);
    for (int l = 0; l < DACL_UNET_LEVELS; l++) cfg.widths[l] = 2 << l;
    DaclUNet *m = NULL;
    assert_int_equal(dacl_unet_create(&m, &cfg, max_n, h, w), DACL_OK);
    DaclRng rng;
    dacl_rng_seed(&rng, seed);
    dacl_unet_init(m, &rng);
    /* BN layers in tensor order, each mean[C] then var[C]: means near 0 and
     * variances near 1, so activations keep their spread; no output bias,
     * so the argmax follows the input rather than one dominant class */
    float *st = dacl_unet_bn_stats(m);
    for (int t = 0; t < dacl_unet_num_tensors(m); t++) {
        const DaclParamInfo *ti = dacl_unet_tensor(m, t);
        if (ti->kind != DACL_PARAM_BN_W) continue;
        for (size_t c = 0; c < ti->numel; c++) st[c] = 0.4f * dacl_rng_uniform(&rng) - 0.2f;
        for (size_t c = 0; c < ti->numel; c++) st[ti->numel + c] = 0.5f + dacl_rng_uniform(&rng);
        st += 2 * ti->numel;
    }
    assert_true(st == dacl_unet_bn_stats(m) + dacl_unet_bn_stats_count(m));
    const DaclParamInfo *ob = dacl_unet_tensor(m, dacl_unet_num_tensors(m) - 1);
    memset(dacl_unet_params(m) + ob->offset, 0, ob->numel * sizeof(float));
    return m;
}

#endif
