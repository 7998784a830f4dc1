/* Reader for the reference fixture files written by tests/reference/make_*.py:
 * b"DACLREF1", u32 count, then per tensor: u32 name length, name, u32 ndim,
 * u32 dims[ndim], float32 data. Header-only: tests include it directly. */
#ifndef DACL_TEST_REFLOAD_H
#define DACL_TEST_REFLOAD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[128];
    int ndim;
    int dims[8];
    size_t numel;
    float *data;
} RefTensor;

typedef struct {
    int count;
    RefTensor *t;
} RefFile;

static int ref_u32(FILE *f, uint32_t *v) { return fread(v, 4, 1, f) == 1 ? 0 : -1; }

static void ref_free(RefFile *r) {
    for (int i = 0; i < r->count; i++) free(r->t[i].data);
    free(r->t);
    r->t = NULL;
    r->count = 0;
}

/* 0 on success; -1 if the file is missing or malformed. */
static int ref_load(RefFile *r, const char *path) {
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char magic[8];
    uint32_t count;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "DACLREF1", 8) || ref_u32(f, &count)) goto bad;
    r->t = calloc(count, sizeof *r->t);
    if (!r->t) goto bad;
    for (uint32_t i = 0; i < count; i++) {
        RefTensor *t = &r->t[i];
        uint32_t len, ndim;
        if (ref_u32(f, &len) || len >= sizeof t->name || fread(t->name, 1, len, f) != len) goto bad;
        t->name[len] = '\0';
        if (ref_u32(f, &ndim) || ndim > 8) goto bad;
        t->ndim = (int)ndim;
        t->numel = 1;
        for (uint32_t d = 0; d < ndim; d++) {
            uint32_t v;
            if (ref_u32(f, &v)) goto bad;
            t->dims[d] = (int)v;
            t->numel *= v;
        }
        t->data = malloc(t->numel * sizeof(float) + 1);
        r->count = (int)i + 1;
        if (!t->data || fread(t->data, sizeof(float), t->numel, f) != t->numel) goto bad;
    }
    fclose(f);
    return 0;
bad:
    fclose(f);
    ref_free(r);
    return -1;
}

static const RefTensor *ref_find(const RefFile *r, const char *name) {
    for (int i = 0; i < r->count; i++)
        if (!strcmp(r->t[i].name, name)) return &r->t[i];
    return NULL;
}

#endif
