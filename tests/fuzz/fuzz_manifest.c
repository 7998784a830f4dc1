/* Fuzz target: the dataset manifest parser (dataset.json and
 * dacl-dataset.json, core/data/dataset.c), then what the trainer asks of a
 * manifest that parsed: patients, the labeled split for every count, case
 * paths, and a print that must parse again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dacl/data.h"
#include "dacl/error.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = fuzz_strndup(data, size);
    DaclDataset ds;
    memset(&ds, 0, sizeof ds);
    if (dacl_dataset_parse(json, "/nonexistent-dacl-fuzz/data", "fuzz.json", &ds) == DACL_OK) {
        int patients = dacl_dataset_train_patients(&ds);
        uint8_t *mask = malloc((size_t)ds.train.n + 1);
        if (!mask) abort();
        for (int k = 0; k <= patients + 1 && k < 64; k++) dacl_dataset_labeled(&ds, k, mask, NULL);
        free(mask);
        char buf[512];
        const DaclSplit *splits[3] = {&ds.train, &ds.val, &ds.test};
        for (int s = 0; s < 3; s++)
            for (int i = 0; i < splits[s]->n; i++) {
                dacl_dataset_path(&ds, splits[s]->cases[i].image, buf, sizeof buf);
                if (splits[s]->cases[i].label) dacl_dataset_path(&ds, splits[s]->cases[i].label, buf, sizeof buf);
            }
        char *printed = dacl_dataset_to_json(&ds);
        if (!printed) abort();
        DaclDataset again;
        memset(&again, 0, sizeof again);
        if (dacl_dataset_parse(printed, "/nonexistent-dacl-fuzz/data", "printed.json", &again) != DACL_OK) {
            fprintf(stderr, "a parsed manifest does not parse once printed (%s):\n%s\n", dacl_error_message(),
                    printed);
            abort();
        }
        dacl_dataset_free(&again);
        free(printed);
    }
    dacl_dataset_free(&ds);
    free(json);
    return 0;
}
