/* dacld migrate: bring a state folder's database to this binary's schema
 * without starting the daemon (serve does the same at start-up), e.g. before
 * a rollout or to check that a backup opens. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dacl/error.h"
#include "store.h"

static void migrate_usage(FILE *f) {
    fprintf(f,
            "usage: dacld migrate [--state DIR]\n"
            "\n"
            "Creates DIR/dacld.db if needed and applies every migration it lacks, in one\n"
            "transaction (a failure leaves it unchanged). Prints the schema version.\n"
            "\n"
            "  --state DIR  the daemon's state folder (default: ./var)\n");
}

int cmd_migrate(int argc, char **argv) {
    const char *state = "./var";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            migrate_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--state") && v) {
            state = v, i++;
        } else {
            fprintf(stderr, "dacld migrate: unknown option or missing value: %s\n", a);
            migrate_usage(stderr);
            return 2;
        }
    }
    Store *s;
    int applied = 0, version = 0;
    if (store_open_state(&s, state, 1, &applied) || store_schema_version(s, &version)) {
        fprintf(stderr, "dacld migrate: %s\n", dacl_error_message());
        return 1;
    }
    store_close(s);
    printf("%s/dacld.db: schema version %d (%d migration%s applied now)\n", state, version, applied,
           applied == 1 ? "" : "s");
    return 0;
}
