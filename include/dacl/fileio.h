/* Whole-file reads and crash-safe writes, shared by every stage that writes
 * artefacts a user must be able to trust after a crash (models,
 * checkpoints). */
#ifndef DACL_FILEIO_H
#define DACL_FILEIO_H

#include <stddef.h>

/* buf[n] to `path` through a temporary file in the same folder: write, fsync,
 * rename, fsync the folder. `path` is never half-written: it holds the old
 * content or the new one. ENOSPC and friends come back as DACL_EIO naming
 * the path; the temporary file is removed. */
int dacl_file_write_atomic(const char *path, const void *buf, size_t n);

/* Temporary files for writers that produce a file themselves (through zlib,
 * libpng, HDF5): open a temporary file next to `path` (same folder, so the
 * rename is atomic), write it and close its fd, then finish: if rc is DACL_OK
 * the file is fsynced and takes the name `path` (replacing it, or with
 * replace = 0 failing with DACL_EEXIST if it exists), else it is removed.
 * dacl_tmp_finish frees the name and returns rc or the failure to rename. */
typedef struct {
    char *name; /* "<path>." followed by mkstemp's six random characters */
    int fd;     /* open, mode 0644 */
} DaclTmpFile;

int dacl_tmp_open(const char *path, DaclTmpFile *t);
int dacl_tmp_finish(DaclTmpFile *t, const char *path, int rc, int replace);

/* The whole regular file, malloc'd (at least 1 byte allocated); DACL_ENOTFOUND
 * when it does not exist. */
int dacl_file_read_all(const char *path, unsigned char **buf, size_t *n);

#endif
