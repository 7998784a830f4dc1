/* dacld: the command-line tool and daemon. One table of subcommands; each
 * parses its own options and returns an exit status (0 ok, 1 failure, 2 usage). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dacl/version.h"

/* One line per subcommand; each lives in server/cmd_<name>.c. */
static const DaclCommand commands[] = {
    {"info", "print a model's size and memory plan, or a checkpoint's contents, as JSON", cmd_info},
    {"train", "train a job in the foreground (supervised, CPS, DACL)", cmd_train},
    {"ablation", "write (and run) the paper's ablation ladder, rows I-VI, as six jobs", cmd_ablation},
    {"phantom", "write a synthetic cardiac or abdominal MRI dataset", cmd_phantom},
    {"dataset", "write a manifest for a dataset folder (init) or summarise one (show)", cmd_dataset},
    {"metrics", "Dice, Jaccard, HD95 and ASD of a label map against the ground truth", cmd_metrics},
    {"predict", "segment a volume or slice with a model file", cmd_predict},
    {"evaluate", "score a model on a dataset split (Dice, Jaccard, HD95, ASD)", cmd_evaluate},
    {"serve", "run the REST daemon: a job queue, workers and SQLite state", cmd_serve},
    {"migrate", "create or upgrade the daemon's database in a state folder", cmd_migrate},
};
#define NCOMMANDS ((int)(sizeof commands / sizeof commands[0]))

static void usage(FILE *f) {
    fprintf(f,
            "dacld %s: semi-supervised medical image segmentation (DACL, AAAI 2025)\n"
            "\n"
            "usage: dacld <command> [options]\n"
            "       dacld --version | --help\n"
            "\n"
            "commands:\n",
            DACL_VERSION);
    for (int i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'dacld <command> --help' describes a command's options.\n");
}

/* ------------------------------------------------------------- main -- */

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *c = argv[1];
    if (!strcmp(c, "--version") || !strcmp(c, "-V") || !strcmp(c, "version")) {
        printf("dacld %s\n", DACL_VERSION);
        return 0;
    }
    if (!strcmp(c, "--help") || !strcmp(c, "-h") || !strcmp(c, "help")) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < NCOMMANDS; i++)
        if (!strcmp(c, commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "dacld: unknown command '%s'\n\n", c);
    usage(stderr);
    return 2;
}
