#include "dacl/error.h"

#include <stdio.h>
#include <string.h>

/* errno-style: one message per thread, overwritten by the next failure. */
static _Thread_local char err_msg[1024];
static _Thread_local int err_code;

int dacl_error_set(int code, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    (void)file;
    (void)line;
#ifndef NDEBUG
    if (n >= 0 && (size_t)n < sizeof err_msg - 1) {
        const char *base = strrchr(file, '/');
        snprintf(err_msg + n, sizeof err_msg - (size_t)n, " [%s:%d]", base ? base + 1 : file,
                 line);
    }
#else
    (void)n;
#endif
    err_code = code;
    return code;
}

const char *dacl_error_message(void) { return err_msg; }
int dacl_error_code(void) { return err_code; }

void dacl_error_clear(void) {
    err_msg[0] = '\0';
    err_code = DACL_OK;
}

const char *dacl_strerror(int code) {
    switch (code) {
    case DACL_OK: return "success";
    case DACL_EINVAL: return "invalid argument";
    case DACL_ENOMEM: return "out of memory";
    case DACL_EIO: return "I/O error";
    case DACL_EFORMAT: return "bad file format";
    case DACL_ENOTFOUND: return "not found";
    case DACL_EEXIST: return "already exists";
    case DACL_ENUMERIC: return "numerical error (NaN or infinity)";
    case DACL_ECANCELED: return "canceled";
    case DACL_EINTERNAL: return "internal error";
    case DACL_EBUSY: return "unavailable for now";
    default: return "unknown error";
    }
}
