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

#endif
