/* The dashboard: files of the web root (web/ in the source tree, or where it
 * was installed) served as they are, no build step.
 *
 * Only the files the routes name are reachable: GET / (index.html), GET
 * /{file} and GET /vendor/{lib}/{file}. Every segment must be a plain name
 * (letters, digits, '-', '_', '.', not starting with '.'), the extension
 * must be one of the table below, and the file, symlinks resolved, must still
 * lie inside the web root; anything else is a 404 in the one error shape. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"

/* extension -> media type; text is UTF-8 */
static const struct {
    const char *ext, *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".json", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
    {".md", "text/plain; charset=utf-8"},
    {".ico", "image/x-icon"},
};

/* The dashboard's own code must be revalidated (it changes with the daemon);
 * vendored libraries carry their version in the folder's README and change
 * only with an upgrade, so a day's caching is harmless. Revalidation is cheap:
 * the ETag (mtime and size) answers 304 when nothing changed. */
#define CACHE_APP "no-cache"
#define CACHE_VENDOR "public, max-age=86400"
/* the page loads nothing from elsewhere; uPlot sets inline styles */
#define CSP "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; " \
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

static const char *type_of(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return NULL;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(dot, types[i].ext)) return types[i].type;
    return NULL;
}

/* a file or folder name we are willing to look up: no '/', no leading '.' */
static int plain_name(const char *s) {
    if (!s[0] || s[0] == '.') return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            return 0;
    return 1;
}

static void not_found(Request *r, const char *rel) {
    http_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no dashboard file '%s'", rel);
}

/* Serves rel (segments already checked) from the web root. */
static void serve(Server *s, Request *r, const char *rel, const char *cache) {
    const char *type = type_of(rel);
    if (!type) {
        not_found(r, rel);
        return;
    }
    if (!s->web_root_real[0]) {
        http_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL,
                   "the dashboard is not installed: web root '%s' does not exist (see --web-root)",
                   s->cfg.web_root);
        return;
    }
    char joined[PATH_MAX * 2], real[PATH_MAX];
    snprintf(joined, sizeof joined, "%s/%s", s->web_root_real, rel);
    size_t rl = strlen(s->web_root_real);
    /* symlinks are followed, then the file must still be inside the root */
    if (!realpath(joined, real) || strncmp(real, s->web_root_real, rl) || real[rl] != '/') {
        not_found(r, rel);
        return;
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        not_found(r, rel);
        return;
    }
    char etag[64];
    snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)st.st_mtime, (unsigned long long)st.st_size);
    const char *inm = http_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH);
    struct MHD_Response *resp;
    unsigned status = MHD_HTTP_OK;
    if (inm && !strcmp(inm, etag)) {
        close(fd);
        status = MHD_HTTP_NOT_MODIFIED;
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
        if (!resp) close(fd);
    }
    if (resp) {
        if (status == MHD_HTTP_OK) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cache);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        if (!strncmp(type, "text/html", 9)) MHD_add_response_header(resp, "Content-Security-Policy", CSP);
    }
    http_respond(r, status, resp);
}

void api_web_index(Server *s, Request *r) {
    serve(s, r, "index.html", CACHE_APP);
}

void api_web_file(Server *s, Request *r) {
    const char *f = http_param(r, 0);
    if (!plain_name(f)) {
        not_found(r, f);
        return;
    }
    serve(s, r, f, CACHE_APP);
}

void api_web_vendor(Server *s, Request *r) {
    const char *lib = http_param(r, 0), *f = http_param(r, 1);
    char rel[2 * 128 + 16];
    snprintf(rel, sizeof rel, "vendor/%s/%s", lib, f);
    if (!plain_name(lib) || !plain_name(f)) {
        not_found(r, rel);
        return;
    }
    serve(s, r, rel, CACHE_VENDOR);
}

/* ---------------------------------------------------------- web root -- */

/* The folder, when it holds an index.html: realpath into out. */
static int usable(const char *dir, char out[PATH_MAX]) {
    char index[PATH_MAX + 16];
    struct stat st;
    snprintf(index, sizeof index, "%s/index.html", dir);
    return stat(index, &st) == 0 && S_ISREG(st.st_mode) && realpath(dir, out) != NULL;
}

void api_web_root_resolve(Server *s) {
    s->web_root_real[0] = '\0';
    if (s->cfg.web_root[0]) { /* set by a flag, the environment or the config file: that one only */
        if (!usable(s->cfg.web_root, s->web_root_real)) s->web_root_real[0] = '\0';
        return;
    }
    /* The default: a dacld run from its build tree serves the source tree's
     * web/ (edits show on reload); an installed one serves the copy installed
     * beside it (<bin>/../share/dacld/web, so `cmake --install --prefix P`
     * and a moved installation work), else the configured prefix's. The
     * others are the fallbacks, in that order. */
    char exe[PATH_MAX], build[PATH_MAX], beside[PATH_MAX + 32];
    const char *order[3] = {beside, DACL_WEB_INSTALL, DACL_WEB_ROOT};
    beside[0] = '\0';
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(beside, sizeof beside, "%s/../share/dacld/web", exe);
            *slash = '/';
        }
        size_t bl = realpath(DACL_BUILD_DIR, build) ? strlen(build) : 0;
        if (bl && !strncmp(exe, build, bl) && exe[bl] == '/') order[0] = DACL_WEB_ROOT, order[2] = beside;
    }
    snprintf(s->cfg.web_root, sizeof s->cfg.web_root, "%s", order[0][0] ? order[0] : order[1]);
    for (int i = 0; i < 3; i++)
        if (order[i][0] && usable(order[i], s->web_root_real)) {
            snprintf(s->cfg.web_root, sizeof s->cfg.web_root, "%s", s->web_root_real);
            return;
        }
    s->web_root_real[0] = '\0';
}
