/* Whole-file reads and crash-safe writes (see fileio.h). */
#include "dacl/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dacl/error.h"

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* fsync the folder holding `path`, so the rename itself survives a crash. */
static void sync_parent(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 0;
    if (len >= sizeof dir) return;
    if (slash && len == 0) len = 1; /* "/file": the root */
    memcpy(dir, slash ? path : ".", slash ? len : 1);
    dir[slash ? len : 1] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    fsync(fd);
    close(fd);
}

int dacl_file_write_atomic(const char *path, const void *buf, size_t n) {
    size_t len = strlen(path) + 8;
    char *tmp = malloc(len);
    if (!tmp) return DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
    snprintf(tmp, len, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return DACL_FAIL(DACL_EIO, "%s: cannot create a temporary file: %s", path, strerror(e));
    }
    int rc = DACL_OK;
    /* mkstemp makes 0600; outputs are shared like any other file */
    if (fchmod(fd, 0644) != 0 || write_all(fd, buf, n) != 0 || fsync(fd) != 0)
        rc = DACL_FAIL(DACL_EIO, "%s: cannot write: %s", path, strerror(errno));
    if (close(fd) != 0 && rc == DACL_OK)
        rc = DACL_FAIL(DACL_EIO, "%s: cannot write: %s", path, strerror(errno));
    if (rc == DACL_OK && rename(tmp, path) != 0)
        rc = DACL_FAIL(DACL_EIO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (rc != DACL_OK) unlink(tmp);
    free(tmp);
    if (rc == DACL_OK) sync_parent(path);
    return rc;
}

int dacl_file_read_all(const char *path, unsigned char **buf, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return DACL_FAIL(errno == ENOENT ? DACL_ENOTFOUND : DACL_EIO, "%s: cannot open: %s", path,
                         strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return DACL_FAIL(DACL_EIO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    unsigned char *b = malloc(size ? size : 1);
    if (!b) {
        fclose(f);
        return DACL_FAIL(DACL_ENOMEM, "%s: out of memory for %zu bytes", path, size);
    }
    size_t got = fread(b, 1, size, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != size) {
        free(b);
        return DACL_FAIL(DACL_EIO, "%s: read %zu of %zu bytes", path, got, size);
    }
    *buf = b;
    *n = size;
    return DACL_OK;
}
