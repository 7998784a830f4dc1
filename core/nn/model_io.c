/* Model files: one U-Net's configuration, tensor table, weights, BN running
 * statistics and JSON metadata, in the layout nn.h describes ("Model files").
 *
 * Writing builds the whole file in memory (the parameters plus a few hundred
 * bytes of header) so the checksum is one pass and the file is one write.
 * Reading loads the whole file, checks size, magic, version and checksum
 * before looking inside, then parses the section with a bounds-checked
 * cursor: a crafted file whose checksum matches still cannot read past the
 * end, and the model is handed over only when everything has been copied. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dacl/error.h"
#include "dacl/fileio.h"
#include "dacl/nn.h"

#define FILE_MAGIC "DACLMODL"
#define FILE_HEADER 24  /* magic, version, reserved, payload length */
#define FILE_TRAILER 8  /* checksum */
#define NAME_MAX_LEN 63 /* DaclParamInfo.name holds 64 with the NUL */
/* Sanity bounds for a configuration read from a file: far above any real
 * U-Net, low enough that planning one cannot overflow. */
#define MAX_IN_CHANNELS 64
#define MAX_WIDTH 4096
#define MAX_PATCH 4096

uint64_t dacl_fnv1a64(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

uint64_t dacl_unet_weights_hash(DaclUNet *m) {
    uint64_t h = dacl_fnv1a64(DACL_FNV1A64_INIT, dacl_unet_params(m),
                              dacl_unet_num_params(m) * sizeof(float));
    return dacl_fnv1a64(h, dacl_unet_bn_stats(m), dacl_unet_bn_stats_count(m) * sizeof(float));
}

/* Prefix this thread's last error message with `what` (a path), keeping rc.
 * The message is copied first: the recorder formats into the same buffer. */
static int wrap_error(int rc, const char *what) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", dacl_error_message());
    return DACL_FAIL(rc, "%s: %s", what, msg);
}

/* The patch the model was planned for: its last decoder level is full size. */
static void unet_patch(const DaclUNet *m, int *h, int *w) {
    dacl_unet_feature(m, DACL_FEAT_UP4, NULL, h, w);
}

/* -------------------------------------------------- little-endian cursor -- */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define HOST_LE 0
#else
#define HOST_LE 1
#endif

/* A writer that only counts when p is NULL, so sizing and writing share one
 * description of the layout (section_emit). */
typedef struct {
    unsigned char *p;
    size_t at;
} Out;

/* v as k (4 or 8) little-endian bytes */
static void put_le(Out *o, uint64_t v, int k) {
    if (o->p)
        for (int i = 0; i < k; i++) o->p[o->at + i] = (unsigned char)(v >> (8 * i));
    o->at += (size_t)k;
}

static void put_u32(Out *o, uint32_t v) { put_le(o, v, 4); }
static void put_u64(Out *o, uint64_t v) { put_le(o, v, 8); }

static void put_bytes(Out *o, const void *src, size_t n) {
    if (o->p && n) memcpy(o->p + o->at, src, n);
    o->at += n;
}

static void put_f32s(Out *o, const float *src, size_t n) {
    if (o->p && HOST_LE) {
        memcpy(o->p + o->at, src, n * sizeof(float));
        o->at += n * sizeof(float);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        put_u32(o, u);
    }
}

/* A reader over buf[n] that fails (DACL_EFORMAT, naming `what`) instead of
 * reading past the end. */
typedef struct {
    const unsigned char *p;
    size_t n, at;
    const char *what;
} In;

static int need(In *r, size_t k, const char *field) {
    if (k > r->n - r->at)
        return DACL_FAIL(DACL_EFORMAT,
                         "%s: truncated model: %s needs %zu bytes at offset %zu, %zu left",
                         r->what, field, k, r->at, r->n - r->at);
    return DACL_OK;
}

/* The next k (4 or 8) bytes as a little-endian integer. */
static int get_le(In *r, int k, const char *field, uint64_t *v) {
    DACL_TRY(need(r, (size_t)k, field));
    uint64_t x = 0;
    for (int i = 0; i < k; i++) x |= (uint64_t)r->p[r->at + i] << (8 * i);
    r->at += (size_t)k;
    *v = x;
    return DACL_OK;
}

static int get_u32(In *r, const char *field, uint32_t *v) {
    uint64_t x = 0;
    DACL_TRY(get_le(r, 4, field, &x));
    *v = (uint32_t)x;
    return DACL_OK;
}

static int get_i32(In *r, const char *field, int32_t *v) {
    uint32_t u = 0;
    DACL_TRY(get_u32(r, field, &u));
    memcpy(v, &u, 4);
    return DACL_OK;
}

static int get_u64(In *r, const char *field, uint64_t *v) { return get_le(r, 8, field, v); }

static int get_f32s(In *r, const char *field, float *dst, size_t n) {
    if (n > SIZE_MAX / sizeof(float)) return need(r, SIZE_MAX, field);
    DACL_TRY(need(r, n * sizeof(float), field));
    if (HOST_LE) {
        memcpy(dst, r->p + r->at, n * sizeof(float));
        r->at += n * sizeof(float);
        return DACL_OK;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        DACL_TRY(get_u32(r, field, &u));
        memcpy(&dst[i], &u, 4);
    }
    return DACL_OK;
}

/* ------------------------------------------------------------- section -- */

static void section_emit(Out *o, DaclUNet *m, const char *meta, unsigned flags) {
    const DaclUNetConfig *c = dacl_unet_config(m);
    int ph, pw;
    unet_patch(m, &ph, &pw);
    put_u32(o, DACL_MODEL_SECTION_VERSION);
    put_u32(o, flags);
    put_u32(o, (uint32_t)c->in_channels);
    put_u32(o, (uint32_t)c->classes);
    for (int l = 0; l < DACL_UNET_LEVELS; l++) put_u32(o, (uint32_t)c->widths[l]);
    put_f32s(o, c->dropout, DACL_UNET_LEVELS);
    put_u32(o, (uint32_t)ph);
    put_u32(o, (uint32_t)pw);
    int nt = dacl_unet_num_tensors(m);
    put_u32(o, (uint32_t)nt);
    for (int i = 0; i < nt; i++) {
        const DaclParamInfo *t = dacl_unet_tensor(m, i);
        put_u32(o, (uint32_t)t->kind);
        put_u32(o, (uint32_t)t->ndim);
        for (int d = 0; d < 4; d++) put_u32(o, d < t->ndim ? (uint32_t)t->shape[d] : 0);
        size_t len = strlen(t->name);
        put_u32(o, (uint32_t)len);
        put_bytes(o, t->name, len);
    }
    size_t np = dacl_unet_num_params(m), ns = dacl_unet_bn_stats_count(m);
    put_u64(o, np);
    put_u64(o, ns);
    put_f32s(o, dacl_unet_params(m), np);
    if (flags & DACL_MODEL_MOMENTUM) put_f32s(o, dacl_unet_momentum(m), np);
    put_f32s(o, dacl_unet_bn_stats(m), ns);
    size_t mlen = meta ? strlen(meta) : 0;
    put_u32(o, (uint32_t)mlen);
    put_bytes(o, meta, mlen);
}

size_t dacl_unet_section_bytes(DaclUNet *m, const char *json_meta, unsigned flags) {
    Out o = {NULL, 0};
    section_emit(&o, m, json_meta, flags);
    return o.at;
}

int dacl_unet_section_write(DaclUNet *m, const char *json_meta, unsigned flags, void *buf, size_t n) {
    if (flags & ~DACL_MODEL_MOMENTUM)
        return DACL_FAIL(DACL_EINVAL, "model section: unknown flags 0x%x", flags);
    if (json_meta && strlen(json_meta) > UINT32_MAX / 2)
        return DACL_FAIL(DACL_EINVAL, "model section: metadata of %zu bytes is too long",
                         strlen(json_meta));
    size_t need_bytes = dacl_unet_section_bytes(m, json_meta, flags);
    if (n < need_bytes)
        return DACL_FAIL(DACL_EINVAL, "model section needs %zu bytes, buffer has %zu", need_bytes, n);
    Out o = {buf, 0};
    section_emit(&o, m, json_meta, flags);
    return DACL_OK;
}

/* The configuration and patch at the start of a section, range-checked so a
 * corrupt one fails here rather than in an enormous allocation. */
static int read_config(In *r, DaclUNetConfig *c, int *ph, int *pw, uint32_t *flags) {
    uint32_t version;
    DACL_TRY(get_u32(r, "section version", &version));
    if (version != DACL_MODEL_SECTION_VERSION)
        return DACL_FAIL(DACL_EFORMAT,
                         "%s: model section version %u; this build reads version %d", r->what,
                         version, DACL_MODEL_SECTION_VERSION);
    DACL_TRY(get_u32(r, "flags", flags));
    if (*flags & ~DACL_MODEL_MOMENTUM)
        return DACL_FAIL(DACL_EFORMAT, "%s: model section has unknown flags 0x%x", r->what, *flags);
    int32_t v[2 + DACL_UNET_LEVELS + 2];
    DACL_TRY(get_i32(r, "configuration", &v[0]));
    DACL_TRY(get_i32(r, "configuration", &v[1]));
    for (int l = 0; l < DACL_UNET_LEVELS; l++) DACL_TRY(get_i32(r, "configuration", &v[2 + l]));
    DACL_TRY(get_f32s(r, "configuration", c->dropout, DACL_UNET_LEVELS));
    DACL_TRY(get_i32(r, "patch", &v[7]));
    DACL_TRY(get_i32(r, "patch", &v[8]));
    c->in_channels = v[0];
    c->classes = v[1];
    int ok = v[0] >= 1 && v[0] <= MAX_IN_CHANNELS && v[1] >= 2 && v[1] <= 255;
    for (int l = 0; l < DACL_UNET_LEVELS; l++) {
        c->widths[l] = v[2 + l];
        ok = ok && v[2 + l] >= 1 && v[2 + l] <= MAX_WIDTH && isfinite(c->dropout[l]) &&
             c->dropout[l] >= 0.0f && c->dropout[l] < 1.0f;
    }
    ok = ok && v[7] >= 16 && v[8] >= 16 && v[7] <= MAX_PATCH && v[8] <= MAX_PATCH &&
         v[7] % 16 == 0 && v[8] % 16 == 0;
    if (!ok)
        return DACL_FAIL(DACL_EFORMAT,
                         "%s: implausible U-Net configuration (in %d, classes %d, widths "
                         "%d-%d-%d-%d-%d, patch %dx%d)",
                         r->what, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]);
    *ph = v[7];
    *pw = v[8];
    return DACL_OK;
}

/* The stored tensor table must be exactly the one m's configuration builds. */
static int check_tensors(In *r, DaclUNet *m) {
    uint32_t nt;
    DACL_TRY(get_u32(r, "tensor count", &nt));
    if (nt != (uint32_t)dacl_unet_num_tensors(m))
        return DACL_FAIL(DACL_EFORMAT, "%s: %u tensors stored, the configuration has %d", r->what,
                         nt, dacl_unet_num_tensors(m));
    for (uint32_t i = 0; i < nt; i++) {
        const DaclParamInfo *t = dacl_unet_tensor(m, (int)i);
        uint32_t kind, ndim, shape[4], len;
        DACL_TRY(get_u32(r, "tensor table", &kind));
        DACL_TRY(get_u32(r, "tensor table", &ndim));
        for (int d = 0; d < 4; d++) DACL_TRY(get_u32(r, "tensor table", &shape[d]));
        DACL_TRY(get_u32(r, "tensor table", &len));
        if (len > NAME_MAX_LEN)
            return DACL_FAIL(DACL_EFORMAT, "%s: tensor %u has a %u-byte name", r->what, i, len);
        DACL_TRY(need(r, len, "tensor table"));
        char name[NAME_MAX_LEN + 1];
        memcpy(name, r->p + r->at, len);
        name[len] = '\0';
        r->at += len;
        int same = kind == (uint32_t)t->kind && ndim == (uint32_t)t->ndim && !strcmp(name, t->name);
        for (int d = 0; d < 4 && same; d++)
            same = shape[d] == (d < t->ndim ? (uint32_t)t->shape[d] : 0);
        if (!same)
            return DACL_FAIL(DACL_EFORMAT,
                             "%s: tensor %u is '%s' [%u,%u,%u,%u], the configuration builds '%s' "
                             "[%d,%d,%d,%d]",
                             r->what, i, name, shape[0], shape[1], shape[2], shape[3], t->name,
                             t->shape[0], t->ndim > 1 ? t->shape[1] : 0,
                             t->ndim > 2 ? t->shape[2] : 0, t->ndim > 3 ? t->shape[3] : 0);
    }
    return DACL_OK;
}

/* Everything after the configuration, into m; the metadata into *meta. */
static int read_body(In *r, DaclUNet *m, uint32_t flags, char **meta) {
    DACL_TRY(check_tensors(r, m));
    uint64_t np, ns;
    DACL_TRY(get_u64(r, "parameter count", &np));
    DACL_TRY(get_u64(r, "statistics count", &ns));
    if (np != dacl_unet_num_params(m) || ns != dacl_unet_bn_stats_count(m))
        return DACL_FAIL(DACL_EFORMAT,
                         "%s: %llu parameters and %llu BN statistics stored, the configuration "
                         "has %zu and %zu",
                         r->what, (unsigned long long)np, (unsigned long long)ns,
                         dacl_unet_num_params(m), dacl_unet_bn_stats_count(m));
    DACL_TRY(get_f32s(r, "parameters", dacl_unet_params(m), np));
    if (flags & DACL_MODEL_MOMENTUM) DACL_TRY(get_f32s(r, "momentum", dacl_unet_momentum(m), np));
    DACL_TRY(get_f32s(r, "BN statistics", dacl_unet_bn_stats(m), ns));
    uint32_t mlen;
    DACL_TRY(get_u32(r, "metadata length", &mlen));
    DACL_TRY(need(r, mlen, "metadata"));
    const unsigned char *src = r->p + r->at;
    if (mlen && memchr(src, 0, mlen))
        return DACL_FAIL(DACL_EFORMAT, "%s: metadata holds a NUL byte", r->what);
    r->at += mlen;
    if (!meta || mlen == 0) return DACL_OK;
    if (!(*meta = malloc((size_t)mlen + 1)))
        return DACL_FAIL(DACL_ENOMEM, "%s: out of memory for %u bytes of metadata", r->what, mlen);
    memcpy(*meta, src, mlen);
    (*meta)[mlen] = '\0';
    return DACL_OK;
}

int dacl_unet_section_read(const void *buf, size_t n, const char *what, int max_n, int h, int w,
                           DaclUNet **out, char **json_meta_out, size_t *used) {
    In r = {buf, n, 0, what ? what : "model"};
    DaclUNetConfig cfg;
    int ph = 0, pw = 0;
    uint32_t flags = 0;
    DACL_TRY(read_config(&r, &cfg, &ph, &pw, &flags));
    if (h <= 0 && w <= 0) h = ph, w = pw;
    /* Before allocating: the parameters the configuration implies must be
     * in the buffer, so a corrupt count cannot ask for more than it holds. */
    DaclUNetSize sz;
    if (dacl_unet_size(&cfg, 1, 16, 16, &sz)) return wrap_error(DACL_EFORMAT, r.what);
    if (sz.parameters > (r.n - r.at) / sizeof(float))
        return DACL_FAIL(DACL_EFORMAT,
                         "%s: truncated model: its configuration has %zu parameters, %zu bytes left",
                         r.what, sz.parameters, r.n - r.at);
    DaclUNet *m;
    int rc = dacl_unet_create(&m, &cfg, max_n, h, w);
    if (rc) return wrap_error(rc, r.what);
    char *meta = NULL;
    rc = read_body(&r, m, flags, json_meta_out ? &meta : NULL);
    if (rc) {
        dacl_unet_free(m);
        free(meta);
        return rc;
    }
    *out = m;
    if (json_meta_out) *json_meta_out = meta;
    if (used) *used = r.at;
    return DACL_OK;
}

/* ---------------------------------------------------------------- file -- */

int dacl_unet_save(DaclUNet *m, const char *path, const char *json_meta) {
    size_t sec = dacl_unet_section_bytes(m, json_meta, 0);
    size_t total = FILE_HEADER + sec + FILE_TRAILER;
    unsigned char *buf = malloc(total);
    if (!buf) return DACL_FAIL(DACL_ENOMEM, "%s: out of memory for a %zu-byte model", path, total);
    Out o = {buf, 0};
    put_bytes(&o, FILE_MAGIC, 8);
    put_u32(&o, DACL_MODEL_VERSION);
    put_u32(&o, 0);
    put_u64(&o, sec);
    int rc = dacl_unet_section_write(m, json_meta, 0, buf + FILE_HEADER, sec);
    if (rc == DACL_OK) {
        o.at = FILE_HEADER + sec;
        put_u64(&o, dacl_fnv1a64(DACL_FNV1A64_INIT, buf, FILE_HEADER + sec));
        rc = dacl_file_write_atomic(path, buf, total);
    } else {
        rc = wrap_error(rc, path);
    }
    free(buf);
    return rc;
}

/* Header, length and checksum; *payload gets the section's length. */
static int check_file(const char *path, const unsigned char *b, size_t n, size_t *payload) {
    if (n < 8 || memcmp(b, FILE_MAGIC, 8) != 0)
        return DACL_FAIL(DACL_EFORMAT, "%s: not a dacl model file (no \"%s\" magic)", path,
                         FILE_MAGIC);
    In r = {b, n, 8, path};
    uint32_t version, reserved;
    uint64_t len;
    DACL_TRY(get_u32(&r, "version", &version));
    if (version != DACL_MODEL_VERSION)
        return DACL_FAIL(DACL_EFORMAT, "%s: model file version %u; this build reads version %d",
                         path, version, DACL_MODEL_VERSION);
    DACL_TRY(get_u32(&r, "header", &reserved));
    DACL_TRY(get_u64(&r, "header", &len));
    if (len > n - FILE_HEADER || n - FILE_HEADER - len < FILE_TRAILER)
        return DACL_FAIL(DACL_EFORMAT, "%s: truncated model file: %zu bytes, the header says %llu",
                         path, n, (unsigned long long)len + FILE_HEADER + FILE_TRAILER);
    if (n - FILE_HEADER - len != FILE_TRAILER)
        return DACL_FAIL(DACL_EFORMAT, "%s: %llu unexpected bytes after the model", path,
                         (unsigned long long)(n - FILE_HEADER - len - FILE_TRAILER));
    r.at = FILE_HEADER + (size_t)len;
    uint64_t stored;
    DACL_TRY(get_u64(&r, "checksum", &stored));
    if (stored != dacl_fnv1a64(DACL_FNV1A64_INIT, b, FILE_HEADER + (size_t)len))
        return DACL_FAIL(DACL_EFORMAT, "%s: checksum mismatch: the model file is corrupt", path);
    if (reserved != 0)
        return DACL_FAIL(DACL_EFORMAT, "%s: reserved header field is %u, not 0", path, reserved);
    *payload = (size_t)len;
    return DACL_OK;
}

int dacl_unet_load(const char *path, int max_n, int h, int w, DaclUNet **out, char **json_meta_out) {
    unsigned char *b = NULL;
    size_t n = 0, len = 0, used = 0;
    DACL_TRY(dacl_file_read_all(path, &b, &n));
    int rc = check_file(path, b, n, &len);
    DaclUNet *m = NULL;
    char *meta = NULL;
    if (rc == DACL_OK)
        rc = dacl_unet_section_read(b + FILE_HEADER, len, path, max_n, h, w, &m,
                                    json_meta_out ? &meta : NULL, &used);
    if (rc == DACL_OK && used != len)
        rc = DACL_FAIL(DACL_EFORMAT, "%s: %zu unexpected bytes after the model section", path,
                       len - used);
    free(b);
    if (rc) {
        dacl_unet_free(m);
        free(meta);
        return rc;
    }
    *out = m;
    if (json_meta_out) *json_meta_out = meta;
    return DACL_OK;
}
