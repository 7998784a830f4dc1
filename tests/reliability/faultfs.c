/* faultfs: an LD_PRELOAD shim that makes file writes fail, for fault tests
 * that need no root (no full disk, no read-only mount, no FUSE).
 *
 *   FAULTFS_PATTERN  fnmatch pattern of the paths to hurt ('*' also matches
 *                    '/'), e.g. '*checkpoint-last.bin*' or '*dacld.db*'
 *   FAULTFS_ERRNO    ENOSPC (default), EROFS or EIO
 *   FAULTFS_OPS      comma list of open,write,fsync,rename,mkdir to fail;
 *                    default "write,fsync" for ENOSPC, all of them otherwise
 *   FAULTFS_TRIGGER  a file: the faults are on only while it exists, so a
 *                    test switches them on and off in the middle of a run
 *   FAULTFS_AFTER    bytes that still get through once on (the write that
 *                    crosses it is short, the next fails), default 0
 *
 * Only what the process calls through the dynamic linker is seen: open,
 * open64, openat, creat, mkstemp/mkostemp, write, pwrite, pwrite64, writev,
 * fsync, fdatasync, ftruncate, rename, renameat, link, mkdir. That covers
 * dacld's own files (DaclTmpFile) and SQLite's (its VFS calls these). A
 * descriptor is hurt when the path it was opened with matches. Test tool
 * state lives in globals here; the daemon's never does. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 65536

enum { OP_OPEN = 1, OP_WRITE = 2, OP_FSYNC = 4, OP_RENAME = 8, OP_MKDIR = 16 };

static unsigned char hurt_fd[MAX_FD]; /* 1: opened with a matching path */
static atomic_long passed_bytes;      /* bytes let through while on */
static atomic_long faults;            /* calls failed, for the summary line */
static atomic_int reported;

/* the next definition of `name` (libc's), looked up once */
#define REAL(name)                          \
    static __typeof__(&name) real_##name;   \
    if (!real_##name) real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

static const char *pattern(void) {
    const char *p = getenv("FAULTFS_PATTERN");
    return p && *p ? p : NULL;
}

static int fault_errno(void) {
    const char *e = getenv("FAULTFS_ERRNO");
    if (e && !strcmp(e, "EROFS")) return EROFS;
    if (e && !strcmp(e, "EIO")) return EIO;
    return ENOSPC;
}

static int ops(void) {
    const char *o = getenv("FAULTFS_OPS");
    if (!o || !*o) return fault_errno() == ENOSPC ? OP_WRITE | OP_FSYNC : 0xff;
    int m = 0;
    if (strstr(o, "open")) m |= OP_OPEN;
    if (strstr(o, "write")) m |= OP_WRITE;
    if (strstr(o, "fsync")) m |= OP_FSYNC;
    if (strstr(o, "rename")) m |= OP_RENAME;
    if (strstr(o, "mkdir")) m |= OP_MKDIR;
    return m;
}

static int matches(const char *path) {
    const char *p = pattern();
    return p && path && fnmatch(p, path, 0) == 0;
}

/* Faults of kind `op` are on: the pattern is set, the op is chosen and the
 * trigger file (if any) exists. */
static int on(int op) {
    if (!pattern() || !(ops() & op)) return 0;
    const char *t = getenv("FAULTFS_TRIGGER");
    if (t && *t) {
        struct stat st;
        if (stat(t, &st) != 0) {
            atomic_store(&passed_bytes, 0); /* each switch-on starts a fresh budget */
            return 0;
        }
    }
    return 1;
}

static int fail(int op, const char *what) {
    atomic_fetch_add(&faults, 1);
    if (!atomic_exchange(&reported, 1)) {
        char msg[160];
        int n = snprintf(msg, sizeof msg, "faultfs: failing %s (op %d) with %s\n", what, op, strerror(fault_errno()));
        REAL(write);
        if (real_write && n > 0) (void)!real_write(2, msg, (size_t)n);
    }
    errno = fault_errno();
    return -1;
}

static void mark(int fd, const char *path) {
    if (fd >= 0 && fd < MAX_FD) hurt_fd[fd] = (unsigned char)matches(path);
}

static int fd_hurt(int fd) {
    return fd >= 0 && fd < MAX_FD && hurt_fd[fd];
}

static int writes(int flags) {
    return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC));
}

static int open_common(const char *which, const char *path, int flags, mode_t mode) {
    if (writes(flags) && matches(path) && on(OP_OPEN)) return fail(OP_OPEN, path);
    int fd;
    if (!strcmp(which, "open64")) {
        REAL(open64);
        fd = real_open64(path, flags, mode);
    } else {
        REAL(open);
        fd = real_open(path, flags, mode);
    }
    mark(fd, path);
    return fd;
}

int open(const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    return open_common("open", path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    return open_common("open64", path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (writes(flags) && matches(path) && on(OP_OPEN)) return fail(OP_OPEN, path);
    REAL(openat);
    int fd = real_openat(dirfd, path, flags, mode);
    mark(fd, path);
    return fd;
}

int creat(const char *path, mode_t mode) {
    return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

/* mkstemp opens inside libc, out of our sight: wrap it whole */
int mkstemp(char *tmpl) {
    if (matches(tmpl) && on(OP_OPEN)) return fail(OP_OPEN, tmpl);
    REAL(mkstemp);
    int fd = real_mkstemp(tmpl);
    mark(fd, tmpl);
    return fd;
}

int mkostemp(char *tmpl, int flags) {
    if (matches(tmpl) && on(OP_OPEN)) return fail(OP_OPEN, tmpl);
    REAL(mkostemp);
    int fd = real_mkostemp(tmpl, flags);
    mark(fd, tmpl);
    return fd;
}

int close(int fd) {
    if (fd >= 0 && fd < MAX_FD) hurt_fd[fd] = 0;
    REAL(close);
    return real_close(fd);
}

/* How many of n bytes may go through on a hurt descriptor: n while off,
 * what is left of FAULTFS_AFTER while on. */
static size_t allowed(int fd, size_t n) {
    if (!fd_hurt(fd) || !on(OP_WRITE)) return n;
    const char *a = getenv("FAULTFS_AFTER");
    long budget = a ? atol(a) : 0;
    long used = atomic_fetch_add(&passed_bytes, (long)n);
    if (used >= budget) return 0;
    return (size_t)(budget - used) < n ? (size_t)(budget - used) : n;
}

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(write);
    size_t k = n ? allowed(fd, n) : 0;
    if (n && !k) return fail(OP_WRITE, "write");
    return real_write(fd, buf, k);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite);
    size_t k = n ? allowed(fd, n) : 0;
    if (n && !k) return fail(OP_WRITE, "pwrite");
    return real_pwrite(fd, buf, k, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite64);
    size_t k = n ? allowed(fd, n) : 0;
    if (n && !k) return fail(OP_WRITE, "pwrite64");
    return real_pwrite64(fd, buf, k, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    REAL(writev);
    if (fd_hurt(fd) && on(OP_WRITE)) return fail(OP_WRITE, "writev");
    return real_writev(fd, iov, cnt);
}

int fsync(int fd) {
    REAL(fsync);
    if (fd_hurt(fd) && on(OP_FSYNC)) return fail(OP_FSYNC, "fsync");
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    if (fd_hurt(fd) && on(OP_FSYNC)) return fail(OP_FSYNC, "fdatasync");
    return real_fdatasync(fd);
}

int ftruncate(int fd, off_t len) {
    REAL(ftruncate);
    if (fd_hurt(fd) && on(OP_WRITE)) return fail(OP_WRITE, "ftruncate");
    return real_ftruncate(fd, len);
}

int rename(const char *from, const char *to) {
    REAL(rename);
    if ((matches(from) || matches(to)) && on(OP_RENAME)) return fail(OP_RENAME, to);
    return real_rename(from, to);
}

int renameat(int fd1, const char *from, int fd2, const char *to) {
    REAL(renameat);
    if ((matches(from) || matches(to)) && on(OP_RENAME)) return fail(OP_RENAME, to);
    return real_renameat(fd1, from, fd2, to);
}

int link(const char *from, const char *to) {
    REAL(link);
    if (matches(to) && on(OP_RENAME)) return fail(OP_RENAME, to);
    return real_link(from, to);
}

int mkdir(const char *path, mode_t mode) {
    REAL(mkdir);
    if (matches(path) && on(OP_MKDIR)) return fail(OP_MKDIR, path);
    return real_mkdir(path, mode);
}
