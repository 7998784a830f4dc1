/* Error codes and the per-thread error message.
 *
 * Every engine function returns 0 (DACL_OK) or one of the codes below and
 * records a human-readable message with the file and line where it arose.
 * The message lives in thread-local storage, like errno: it is the last
 * failure of *this* thread, never shared job state. */
#ifndef DACL_ERROR_H
#define DACL_ERROR_H

#include <stdarg.h>

enum {
    DACL_OK = 0,
    DACL_EINVAL,    /* a bad argument or configuration value */
    DACL_ENOMEM,    /* an allocation failed */
    DACL_EIO,       /* a read or write failed (errno text in the message) */
    DACL_EFORMAT,   /* a file is corrupt, truncated or of the wrong kind */
    DACL_ENOTFOUND, /* a file, key or object does not exist */
    DACL_EEXIST,    /* refusing to overwrite something that exists */
    DACL_ENUMERIC,  /* a NaN or infinity appeared */
    DACL_ECANCELED, /* stopped on request */
    DACL_EINTERNAL, /* an invariant of ours failed */
    DACL_EBUSY      /* a resource refuses for now (a database locked past its timeout, a full
                       or read-only disk): the same request may succeed later */
};

/* Record a failure (printf-style message) and return `code`. */
int dacl_error_set(int code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The message of this thread's last recorded failure ("" if none). */
const char *dacl_error_message(void);
/* The last failure's code on this thread (DACL_OK if none). */
int dacl_error_code(void);
/* Forget this thread's last failure. */
void dacl_error_clear(void);
/* A short name for a code: "invalid argument", "I/O error", ... */
const char *dacl_strerror(int code);

#define DACL_FAIL(code, ...) dacl_error_set((code), __FILE__, __LINE__, __VA_ARGS__)

/* Propagate a non-zero return code to the caller. */
#define DACL_TRY(expr)                                                                   \
    do {                                                                                 \
        int dacl_rc_ = (expr);                                                           \
        if (dacl_rc_ != DACL_OK) return dacl_rc_;                                        \
    } while (0)

#endif
