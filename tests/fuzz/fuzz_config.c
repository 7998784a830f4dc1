/* Fuzz target: the job-config parser (dacl/config.h), the body of
 * POST /api/v1/jobs and the file `dacld train` reads.
 *
 * Beyond "no crash": a config that parses must print (dacl_config_to_json)
 * to a text that parses again to the same config hash, because the daemon
 * stores the printed form and resumes from it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dacl/config.h"
#include "dacl/error.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = fuzz_strndup(data, size);
    DaclJobConfig cfg, again;
    char field[128];
    if (dacl_config_parse(json, &cfg, field, sizeof field) == DACL_OK) {
        char h1[17], h2[17];
        dacl_config_hash(&cfg, h1);
        char *printed = dacl_config_to_json(&cfg);
        if (!printed) abort();
        if (dacl_config_parse(printed, &again, field, sizeof field) != DACL_OK) {
            fprintf(stderr, "a parsed config does not parse once printed (%s: %s):\n%s\n", field,
                    dacl_error_message(), printed);
            abort();
        }
        dacl_config_hash(&again, h2);
        if (strcmp(h1, h2)) {
            fprintf(stderr, "config hash changed over print and parse: %s -> %s\n%s\n", h1, h2, printed);
            abort();
        }
        free(printed);
    }
    free(json);
    return 0;
}
