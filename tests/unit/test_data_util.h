/* Helpers for the data-stage tests: temporary folders, file surgery (truncate, garbage) and the
 * "fails with this code and names this file" assertion. Include after <cmocka.h>. */
#ifndef TEST_DATA_UTIL_H
#define TEST_DATA_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dacl/data.h"
#include "dacl/error.h"

/* A fresh folder under /tmp, removed by rm_tree. */
static inline void tmp_dir(char *buf, size_t n) {
    snprintf(buf, n, "/tmp/dacl-test-XXXXXX");
    assert_non_null(mkdtemp(buf));
}

static inline void rm_tree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        char sub[4096];
        for (struct dirent *e; (e = readdir(d));) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) < (int)sizeof sub) rm_tree(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* The usual cmocka fixture: each test gets a fresh temporary folder, removed afterwards. */
typedef struct {
    char dir[64];
} TmpFx;

static inline int tmp_setup(void **state) {
    TmpFx *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    tmp_dir(fx->dir, sizeof fx->dir);
    *state = fx;
    return 0;
}

static inline int tmp_teardown(void **state) {
    TmpFx *fx = *state;
    rm_tree(fx->dir);
    free(fx);
    return 0;
}

/* Number of entries in a folder (to check writers leave no temporary files behind). */
static inline int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

static inline void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* The whole file, malloc'd; *n its size. */
static inline unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return buf;
}

/* dst = the first `keep` bytes of src (keep < 0: all but -keep bytes). */
static inline void truncate_copy(const char *src, const char *dst, long keep) {
    size_t n;
    unsigned char *buf = read_file(src, &n);
    size_t k = keep >= 0 ? (size_t)keep : n - (size_t)(-keep);
    assert_true(k <= n);
    write_file(dst, buf, k);
    free(buf);
}

/* A file of pseudo-random bytes (fixed seed: the same garbage every run). */
static inline void garbage_file(const char *path, size_t n) {
    unsigned char *buf = malloc(n);
    assert_non_null(buf);
    unsigned x = 12345;
    for (size_t i = 0; i < n; i++) x = x * 1103515245u + 12345u, buf[i] = (unsigned char)(x >> 16);
    write_file(path, buf, n);
    free(buf);
}

/* rc is `code` and the recorded message contains `needle` (the file's path, a field name...). */
#define assert_fails(rc, code, needle)                                                            \
    do {                                                                                          \
        int rc_ = (rc);                                                                           \
        if (rc_ != (code) || !strstr(dacl_error_message(), (needle)))                             \
            fail_msg("expected %s naming '%s', got %d: %s", dacl_strerror(code), (needle), rc_,    \
                     dacl_error_message());                                                       \
    } while (0)

#define PATH(buf, dir, name) assert_true(snprintf((buf), sizeof(buf), "%s/%s", (dir), (name)) < (int)sizeof(buf))

/* A missing, an empty and a garbage "junk.<ext>" file each fail (ENOTFOUND, EFORMAT, EFORMAT)
 * with a message naming the file, and leave *v as it was. */
static inline void check_junk_files(const char *dir, const char *ext, int (*read)(const char *, DaclVolume *),
                                    DaclVolume *v) {
    char p[256];
    DaclVolume before = *v;
    assert_true(snprintf(p, sizeof p, "%s/missing.%s", dir, ext) < (int)sizeof p);
    assert_fails(read(p, v), DACL_ENOTFOUND, p);
    assert_true(snprintf(p, sizeof p, "%s/empty.%s", dir, ext) < (int)sizeof p);
    write_file(p, "", 0);
    assert_fails(read(p, v), DACL_EFORMAT, p);
    assert_true(snprintf(p, sizeof p, "%s/garbage.%s", dir, ext) < (int)sizeof p);
    garbage_file(p, 5000);
    assert_fails(read(p, v), DACL_EFORMAT, p);
    assert_memory_equal(v, &before, sizeof before);
}

/* A small labeled volume with distinct values everywhere, for round trips. */
static inline void make_pair(DaclVolume *img, DaclLabelVolume *lab, int nz, int ny, int nx) {
    assert_int_equal(dacl_volume_alloc(img, nz, ny, nx), DACL_OK);
    assert_int_equal(dacl_label_alloc(lab, nz, ny, nx), DACL_OK);
    for (size_t i = 0; i < dacl_volume_numel(img); i++) {
        img->data[i] = (float)i * 0.25f - 3.0f;
        lab->data[i] = (uint8_t)(i % 4);
    }
}

#endif
