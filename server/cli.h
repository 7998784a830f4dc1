/* Shared helpers for the subcommands' option parsing. */
#ifndef DACLD_CLI_H
#define DACLD_CLI_H

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} DaclCommand;

/* Parses an integer option value in [lo, hi]; prints an error naming the
 * option and returns 2 (usage) on failure, 0 on success. */
int cli_parse_long(const char *opt, const char *val, long lo, long hi, long *out);
/* "256" or "256x192" (H x W), each a positive multiple of 16. */
int cli_parse_patch(const char *opt, const char *val, long *h, long *w);

/* The subcommands (server/cmd_<name>.c): argv[0] is the command name;
 * return 0 on success, 1 on failure, 2 on a usage error. */
int cmd_info(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_ablation(int argc, char **argv);
int cmd_phantom(int argc, char **argv);
int cmd_dataset(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* A model file opened for inference (cmd_predict.c; evaluate uses it too):
 * planned for batches of `batch` slices at its saved patch, on a team of
 * `threads`. Returns a DACL_* code (message in dacl_error_message()). */
typedef struct {
    struct DaclUNet *model;
    struct DaclPool *pool; /* NULL for one thread */
    char *meta;            /* its JSON metadata, or NULL */
} CliModel;
int cli_model_open(const char *path, int batch, int threads, CliModel *cm);
void cli_model_close(CliModel *cm);

#endif
