/* Helpers shared by the fuzz targets (tests/fuzz/fuzz_*.c).
 *
 * Every target defines LLVMFuzzerTestOneInput. Built with clang and
 * -fsanitize=fuzzer it is a libFuzzer binary; built with replay.c (any
 * compiler) it replays files, which is how ctest keeps the corpus and every
 * regression input passing in the default build.
 *
 * The readers take paths, so the file targets write each input to a file in
 * a private folder (in $DACL_FUZZ_TMP, else /dev/shm when there is one: no
 * disk I/O) made once per process and removed at a normal exit. */
#ifndef DACL_FUZZ_UTIL_H
#define DACL_FUZZ_UTIL_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir_[64];

/* the folder holds only files we wrote (and the readers' temporaries, if any) */
static void fuzz_dir_remove(void) {
    DIR *d = fuzz_dir_[0] ? opendir(fuzz_dir_) : NULL;
    if (!d) return;
    struct dirent *e;
    char p[sizeof fuzz_dir_ + 256];
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' || (e->d_name[1] && strcmp(e->d_name, ".."))) {
            snprintf(p, sizeof p, "%s/%s", fuzz_dir_, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(fuzz_dir_);
}

/* data[size] written to <private folder>/input<suffix>; the path goes to
 * path[n]. Aborts when it cannot: a harness that cannot write has nothing to test. */
static inline void fuzz_write_file(const uint8_t *data, size_t size, const char *suffix, char *path, size_t n) {
    if (!fuzz_dir_[0]) {
        /* libFuzzer leaves with _Exit (no atexit) when its time is up or an input crashes:
         * run.sh hands a folder it removes afterwards in DACL_FUZZ_TMP */
        const char *base = getenv("DACL_FUZZ_TMP")            ? getenv("DACL_FUZZ_TMP")
                           : access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                           : getenv("TMPDIR")              ? getenv("TMPDIR")
                                                           : "/tmp";
        snprintf(fuzz_dir_, sizeof fuzz_dir_, "%s/dacl-fuzz-XXXXXX", base);
        if (!mkdtemp(fuzz_dir_)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_dir_remove);
    }
    snprintf(path, n, "%s/input%s", fuzz_dir_, suffix);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror("fuzz: writing the input");
        abort();
    }
}

/* data[size] as a NUL-terminated string (malloc'd; caller frees). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    if (size) memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
