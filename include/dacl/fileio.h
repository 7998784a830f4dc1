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

/* The whole regular file, malloc'd (at least 1 byte allocated); DACL_ENOTFOUND
 * when it does not exist. */
int dacl_file_read_all(const char *path, unsigned char **buf, size_t *n);

#endif
