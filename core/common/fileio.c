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

int dacl_tmp_open(const char *path, DaclTmpFile *t) {
    size_t n = strlen(path) + 8;
    if (!(t->name = malloc(n))) return DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
    snprintf(t->name, n, "%s.XXXXXX", path);
    t->fd = mkstemp(t->name);
    int e = errno;
    /* mkstemp makes 0600; outputs are meant to be shared like any other file we write */
    if (t->fd >= 0 && fchmod(t->fd, 0644) != 0) {
        e = errno;
        close(t->fd);
        unlink(t->name);
        t->fd = -1;
    }
    if (t->fd < 0) {
        free(t->name);
        t->name = NULL;
        return DACL_FAIL(DACL_EIO, "%s: cannot create a temporary file: %s", path, strerror(e));
    }
    return DACL_OK;
}

/* fsync a closed file by name, so its bytes are on disk before it is renamed */
static int sync_file(const char *name) {
    int fd = open(name, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int dacl_tmp_finish(DaclTmpFile *t, const char *path, int rc, int replace) {
    if (rc == DACL_OK && sync_file(t->name) != 0)
        rc = DACL_FAIL(DACL_EIO, "%s: cannot write: %s", path, strerror(errno));
    if (rc == DACL_OK && replace && rename(t->name, path) != 0)
        rc = DACL_FAIL(DACL_EIO, "%s: cannot rename into place: %s", path, strerror(errno));
    /* link() fails if the name exists, even if it appeared a moment ago: never overwrite */
    if (rc == DACL_OK && !replace && link(t->name, path) != 0)
        rc = errno == EEXIST ? DACL_FAIL(DACL_EEXIST, "%s: exists; not overwriting it", path)
                             : DACL_FAIL(DACL_EIO, "%s: %s", path, strerror(errno));
    if (rc != DACL_OK || !replace) unlink(t->name);
    free(t->name);
    t->name = NULL;
    if (rc == DACL_OK) sync_parent(path);
    return rc;
}

int dacl_file_write_atomic(const char *path, const void *buf, size_t n) {
    DaclTmpFile t;
    DACL_TRY(dacl_tmp_open(path, &t));
    int rc = DACL_OK;
    if (write_all(t.fd, buf, n) != 0) rc = DACL_FAIL(DACL_EIO, "%s: cannot write: %s", path, strerror(errno));
    if (close(t.fd) != 0 && rc == DACL_OK)
        rc = DACL_FAIL(DACL_EIO, "%s: cannot write: %s", path, strerror(errno));
    return dacl_tmp_finish(&t, path, rc, 1);
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
