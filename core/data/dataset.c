/* The dataset manifest (dataset.json): parse and validate, write, query (which training cases are
 * labeled) and load one case ready for training. The JSON schema is in dacl/data.h; recognising
 * folder layouts and writing a manifest for them is dataset_init.c. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dacl/error.h"
#include "data_internal.h"

/* A manifest bigger than this is not a manifest (a million cases is ~100 MB). */
#define MANIFEST_MAX_BYTES ((long)256 << 20)

/* ---- building (shared with dataset_init.c) ---- */

char *dacl_strdup_or_null(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c) memcpy(c, s, n);
    return c;
}

/* "patient099_frame01" -> "patient099": ACDC keeps the ED and ES frames of one patient as two
 * cases, and the labeled split must take both or neither. Any other id is its own patient. */
char *dacl_patient_of(const char *id) {
    const char *f = strstr(id, "_frame");
    while (f) {
        const char *d = f + 6;
        if (f > id && *d >= '0' && *d <= '9') { /* "_frame2" has no patient part: its own */
            while (*d >= '0' && *d <= '9') d++;
            if (*d == '\0') {
                char *p = malloc((size_t)(f - id) + 1);
                if (p) memcpy(p, id, (size_t)(f - id)), p[f - id] = '\0';
                return p;
            }
        }
        f = strstr(f + 1, "_frame");
    }
    return dacl_strdup_or_null(id);
}

int dacl_split_add(DaclSplit *s, const char *id, const char *patient, const char *image, const char *label) {
    /* grow by doubling: splits reach thousands of cases for PNG slice datasets */
    if ((s->n & (s->n - 1)) == 0) {
        size_t cap = s->n ? (size_t)s->n * 2 : 1;
        DaclCase *c = realloc(s->cases, cap * sizeof *c);
        if (!c) return DACL_FAIL(DACL_ENOMEM, "manifest: out of memory");
        s->cases = c;
    }
    DaclCase *c = &s->cases[s->n];
    memset(c, 0, sizeof *c);
    c->id = dacl_strdup_or_null(id);
    c->patient = patient ? dacl_strdup_or_null(patient) : dacl_patient_of(id);
    c->image = dacl_strdup_or_null(image);
    c->label = dacl_strdup_or_null(label);
    s->n++;
    if (!c->id || !c->patient || !c->image || (label && !c->label))
        return DACL_FAIL(DACL_ENOMEM, "manifest: out of memory");
    return DACL_OK;
}

static void split_free(DaclSplit *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->cases[i].id);
        free(s->cases[i].patient);
        free(s->cases[i].image);
        free(s->cases[i].label);
    }
    free(s->cases);
    s->cases = NULL;
    s->n = 0;
}

void dacl_dataset_free(DaclDataset *ds) {
    if (!ds) return;
    free(ds->name);
    for (int i = 0; i < ds->n_labels; i++) free(ds->labels[i].name);
    free(ds->labels);
    free(ds->remap.pairs);
    free(ds->root_field);
    free(ds->root);
    split_free(&ds->train);
    split_free(&ds->val);
    split_free(&ds->test);
    for (int i = 0; i < ds->n_label_order; i++) free(ds->label_order[i]);
    free(ds->label_order);
    memset(ds, 0, sizeof *ds);
}

void dacl_intensity_default(DaclModality m, DaclIntensity *in) {
    in->clip = m == DACL_CT;
    in->clip_lo = -75.0;
    in->clip_hi = 275.0;
    in->minmax = 1;
}

/* ---- sorted views, to find ids and patients in O(n log n) ---- */

typedef struct {
    const char *key;
    int idx;
} KeyIdx;

static int keyidx_cmp(const void *a, const void *b) {
    const KeyIdx *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

static int keyidx_find(const KeyIdx *k, int n, const char *key) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(k[mid].key, key);
        if (c == 0) return k[mid].idx;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* ---- parsing ---- */

typedef struct {
    const char *what; /* the manifest's path, for messages */
    DaclDataset *ds;
} Parse;

#define BAD(p, ...) bad_field((p)->what, __VA_ARGS__)

__attribute__((format(printf, 2, 3))) static int bad_field(const char *what, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return DACL_FAIL(DACL_EFORMAT, "%s: %s", what, buf);
}

/* Reject members of `obj` not in the NULL-terminated `allowed`, and repeated members. */
static int check_fields(const Parse *p, const cJSON *obj, const char *where, const char *const *allowed) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(*a, it->string) == 0;
        if (!ok) return BAD(p, "unknown field '%s%s%s'", where, *where ? "." : "", it->string);
        for (const cJSON *o = obj->child; o != it; o = o->next)
            if (strcmp(o->string, it->string) == 0)
                return BAD(p, "field '%s%s%s' appears twice", where, *where ? "." : "", it->string);
    }
    return DACL_OK;
}

static int get_string(const Parse *p, const cJSON *v, const char *field, char **out) {
    if (!cJSON_IsString(v) || !v->valuestring[0]) return BAD(p, "'%s' must be a non-empty string", field);
    if (!(*out = dacl_strdup_or_null(v->valuestring))) return DACL_FAIL(DACL_ENOMEM, "manifest: out of memory");
    return DACL_OK;
}

static int get_int(const Parse *p, const cJSON *v, const char *field, int lo, int hi, int *out) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return BAD(p, "'%s' must be an integer in %d..%d", field, lo, hi);
    *out = (int)v->valuedouble;
    return DACL_OK;
}

/* "123" -> 123 for remap keys; -1 unless the whole string is an integer in 0..65535. */
static int parse_u16(const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return (*s >= '0' && *s <= '9' && !*end && !errno && v <= 65535) ? (int)v : -1;
}

static int pair_cmp(const void *a, const void *b) {
    return ((const DaclRemapPair *)a)->from - ((const DaclRemapPair *)b)->from;
}

static int label_value_cmp(const void *a, const void *b) {
    return ((const DaclLabelName *)a)->value - ((const DaclLabelName *)b)->value;
}

static int parse_labels(const Parse *p, const cJSON *v) {
    DaclDataset *ds = p->ds;
    if (!cJSON_IsObject(v) || !v->child) return BAD(p, "'labels' must be a non-empty object {name: value}");
    int n = cJSON_GetArraySize(v);
    if (!(ds->labels = calloc((size_t)n, sizeof *ds->labels))) return DACL_FAIL(DACL_ENOMEM, "manifest: out of memory");
    char field[300];
    for (const cJSON *it = v->child; it; it = it->next) {
        DaclLabelName *l = &ds->labels[ds->n_labels];
        snprintf(field, sizeof field, "labels.%s", it->string);
        DACL_TRY(get_int(p, it, field, 0, 255, &l->value));
        if (!it->string[0]) return BAD(p, "a label name is empty");
        if (!(l->name = dacl_strdup_or_null(it->string))) return DACL_FAIL(DACL_ENOMEM, "manifest: out of memory");
        ds->n_labels++;
        for (int j = 0; j < ds->n_labels - 1; j++) {
            if (strcmp(ds->labels[j].name, l->name) == 0) return BAD(p, "label '%s' appears twice", l->name);
            if (ds->labels[j].value == l->value)
                return BAD(p, "labels '%s' and '%s' have the same value %d", ds->labels[j].name, l->name, l->value);
        }
    }
    qsort(ds->labels, (size_t)n, sizeof *ds->labels, label_value_cmp);
    if (ds->labels[0].value != 0) return BAD(p, "'labels' must give value 0 (background) a name");
    return DACL_OK;
}

static int label_declared(const DaclDataset *ds, int v) {
    for (int i = 0; i < ds->n_labels; i++)
        if (ds->labels[i].value == v) return 1;
    return 0;
}

static int parse_remap(const Parse *p, const cJSON *v) {
    DaclDataset *ds = p->ds;
    if (!cJSON_IsObject(v)) return BAD(p, "'label_remap' must be an object {\"stored value\": class value}");
    int n = cJSON_GetArraySize(v);
    DaclLabelRemap *rm = &ds->remap;
    if (!(rm->pairs = calloc((size_t)(n ? n : 1), sizeof *rm->pairs)))
        return DACL_FAIL(DACL_ENOMEM, "manifest: out of memory");
    char field[300];
    for (const cJSON *it = v->child; it; it = it->next) {
        int from = parse_u16(it->string), to = 0;
        if (from < 0) return BAD(p, "label_remap key '%s' is not an integer in 0..65535", it->string);
        for (int j = 0; j < rm->n; j++)
            if (rm->pairs[j].from == from) return BAD(p, "label_remap key '%s' appears twice", it->string);
        snprintf(field, sizeof field, "label_remap.%s", it->string);
        DACL_TRY(get_int(p, it, field, 0, 255, &to));
        if (!label_declared(ds, to)) return BAD(p, "'%s' maps to %d, which is not in 'labels'", field, to);
        rm->pairs[rm->n].from = from;
        rm->pairs[rm->n].to = (uint8_t)to;
        rm->n++;
    }
    qsort(rm->pairs, (size_t)rm->n, sizeof *rm->pairs, pair_cmp);
    return DACL_OK;
}

static int parse_intensity(const Parse *p, const cJSON *v) {
    DaclIntensity *in = &p->ds->intensity;
    if (!cJSON_IsObject(v)) return BAD(p, "'intensity' must be an object {\"clip\", \"minmax\"}");
    DACL_TRY(check_fields(p, v, "intensity", (const char *const[]){"clip", "minmax", NULL}));
    const cJSON *clip = cJSON_GetObjectItemCaseSensitive(v, "clip");
    const cJSON *mm = cJSON_GetObjectItemCaseSensitive(v, "minmax");
    if (clip && cJSON_IsNull(clip)) {
        in->clip = 0;
    } else if (clip) {
        const cJSON *lo = cJSON_GetArrayItem(clip, 0), *hi = cJSON_GetArrayItem(clip, 1);
        if (!cJSON_IsArray(clip) || cJSON_GetArraySize(clip) != 2 || !cJSON_IsNumber(lo) ||
            !cJSON_IsNumber(hi) || !(lo->valuedouble < hi->valuedouble))
            return BAD(p, "'intensity.clip' must be [low, high] with low < high, or null");
        in->clip = 1, in->clip_lo = lo->valuedouble, in->clip_hi = hi->valuedouble;
    }
    if (mm && !cJSON_IsBool(mm)) return BAD(p, "'intensity.minmax' must be true or false");
    if (mm) in->minmax = cJSON_IsTrue(mm);
    return DACL_OK;
}

static int parse_spacing(const Parse *p, const cJSON *v) {
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3) return BAD(p, "'spacing' must be [z, y, x] in mm");
    for (int i = 0; i < 3; i++) {
        const cJSON *s = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(s) || !(s->valuedouble > 0) || !isfinite(s->valuedouble))
            return BAD(p, "'spacing' must be three positive numbers [z, y, x] in mm");
        p->ds->spacing[i] = s->valuedouble;
    }
    p->ds->has_spacing = 1;
    return DACL_OK;
}

/* Case paths stay inside the dataset root: relative, no "..". */
static int check_rel_path(const Parse *p, const char *field, const char *path) {
    if (path[0] == '/') return BAD(p, "'%s' must be a path relative to the dataset folder", field);
    for (const char *s = path; (s = strstr(s, "..")); s += 2)
        if ((s == path || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
            return BAD(p, "'%s' must not leave the dataset folder ('..')", field);
    if (dacl_format_from_path(path) != p->ds->format)
        return BAD(p, "'%s' (%s) is not a %s file", field, path, dacl_format_name(p->ds->format));
    return DACL_OK;
}

static int parse_split(const Parse *p, const cJSON *v, const char *name, DaclSplit *s) {
    if (!cJSON_IsArray(v)) return BAD(p, "'splits.%s' must be an array of cases", name);
    char where[64], field[96];
    int i = 0;
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        snprintf(where, sizeof where, "splits.%s[%d]", name, i);
        if (!cJSON_IsObject(c)) return BAD(p, "'%s' must be an object {\"id\", \"image\", \"label\"}", where);
        DACL_TRY(check_fields(p, c, where, (const char *const[]){"id", "patient", "image", "label", NULL}));
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(c, "patient");
        const cJSON *img = cJSON_GetObjectItemCaseSensitive(c, "image");
        const cJSON *lab = cJSON_GetObjectItemCaseSensitive(c, "label");
        snprintf(field, sizeof field, "%s.id", where);
        if (!cJSON_IsString(id) || !id->valuestring[0]) return BAD(p, "'%s' must be a non-empty string", field);
        snprintf(field, sizeof field, "%s.patient", where);
        if (pat && (!cJSON_IsString(pat) || !pat->valuestring[0]))
            return BAD(p, "'%s' must be a non-empty string", field);
        snprintf(field, sizeof field, "%s.image", where);
        if (!cJSON_IsString(img) || !img->valuestring[0]) return BAD(p, "'%s' must be a non-empty string", field);
        DACL_TRY(check_rel_path(p, field, img->valuestring));
        snprintf(field, sizeof field, "%s.label", where);
        if (lab && !cJSON_IsNull(lab)) {
            if (!cJSON_IsString(lab) || !lab->valuestring[0]) return BAD(p, "'%s' must be a path or null", field);
            DACL_TRY(check_rel_path(p, field, lab->valuestring));
        } else if (strcmp(name, "val") == 0) {
            return BAD(p, "'%s' is missing: validation cases need a label", field);
        }
        DACL_TRY(dacl_split_add(s, id->valuestring, pat ? pat->valuestring : NULL, img->valuestring,
                                cJSON_IsString(lab) ? lab->valuestring : NULL));
    }
    return DACL_OK;
}

/* Case ids are unique across splits. */
static int check_unique_ids(const Parse *p) {
    const DaclDataset *ds = p->ds;
    int n = ds->train.n + ds->val.n + ds->test.n;
    KeyIdx *k = malloc((size_t)(n ? n : 1) * sizeof *k);
    if (!k) return DACL_FAIL(DACL_ENOMEM, "manifest: out of memory");
    const DaclSplit *sp[3] = {&ds->train, &ds->val, &ds->test};
    int m = 0;
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < sp[s]->n; i++) k[m].key = sp[s]->cases[i].id, k[m].idx = m, m++;
    qsort(k, (size_t)n, sizeof *k, keyidx_cmp);
    int rc = DACL_OK;
    for (int i = 1; i < n && rc == DACL_OK; i++)
        if (strcmp(k[i].key, k[i - 1].key) == 0) rc = BAD(p, "case id '%s' appears twice", k[i].key);
    free(k);
    return rc;
}

/* Train ids sorted, for lookups; *out is malloc'd (caller frees). */
static int train_index(const DaclDataset *ds, KeyIdx **out) {
    KeyIdx *k = malloc((size_t)(ds->train.n ? ds->train.n : 1) * sizeof *k);
    if (!k) return DACL_FAIL(DACL_ENOMEM, "manifest: out of memory");
    for (int i = 0; i < ds->train.n; i++) k[i].key = ds->train.cases[i].id, k[i].idx = i;
    qsort(k, (size_t)ds->train.n, sizeof *k, keyidx_cmp);
    *out = k;
    return DACL_OK;
}

static int parse_label_order(const Parse *p, const cJSON *v) {
    DaclDataset *ds = p->ds;
    if (!cJSON_IsArray(v)) return BAD(p, "'label_order' must be an array of training case ids");
    int n = cJSON_GetArraySize(v);
    if (!(ds->label_order = calloc((size_t)(n ? n : 1), sizeof *ds->label_order)))
        return DACL_FAIL(DACL_ENOMEM, "manifest: out of memory");
    KeyIdx *k = NULL;
    DACL_TRY(train_index(ds, &k));
    uint8_t *seen = calloc((size_t)(ds->train.n ? ds->train.n : 1), 1);
    int rc = seen ? DACL_OK : DACL_FAIL(DACL_ENOMEM, "manifest: out of memory");
    int i = 0;
    for (const cJSON *it = v->child; it && rc == DACL_OK; it = it->next, i++) {
        int idx = cJSON_IsString(it) ? keyidx_find(k, ds->train.n, it->valuestring) : -1;
        if (!cJSON_IsString(it))
            rc = BAD(p, "'label_order[%d]' must be a case id", i);
        else if (idx < 0)
            rc = BAD(p, "'label_order[%d]' = '%s' is not a case of the train split", i, it->valuestring);
        else if (seen[idx])
            rc = BAD(p, "'label_order' lists '%s' twice", it->valuestring);
        else if (!(ds->label_order[i] = dacl_strdup_or_null(it->valuestring)))
            rc = DACL_FAIL(DACL_ENOMEM, "manifest: out of memory");
        else
            seen[idx] = 1, ds->n_label_order++;
    }
    free(seen);
    free(k);
    return rc;
}

static int parse_root(const Parse *p, const cJSON *root) {
    DaclDataset *ds = p->ds;
    DACL_TRY(check_fields(p, root, "",
                          (const char *const[]){"name", "modality", "format", "labels", "label_remap",
                                                "intensity", "spacing", "root", "splits", "label_order",
                                                NULL}));
    const cJSON *v;
    if (!(v = cJSON_GetObjectItemCaseSensitive(root, "name"))) return BAD(p, "'name' is missing");
    DACL_TRY(get_string(p, v, "name", &ds->name));
    ds->modality = DACL_MRI;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "modality"))) {
        if (cJSON_IsString(v) && strcmp(v->valuestring, "MRI") == 0) ds->modality = DACL_MRI;
        else if (cJSON_IsString(v) && strcmp(v->valuestring, "CT") == 0) ds->modality = DACL_CT;
        else return BAD(p, "'modality' must be \"MRI\" or \"CT\"");
    }
    dacl_intensity_default(ds->modality, &ds->intensity);
    if (!(v = cJSON_GetObjectItemCaseSensitive(root, "format"))) return BAD(p, "'format' is missing");
    if (!cJSON_IsString(v) || (ds->format = dacl_format_parse(v->valuestring)) == DACL_FMT_UNKNOWN)
        return BAD(p, "'format' must be \"h5\", \"nifti\" or \"png\"");
    if (!(v = cJSON_GetObjectItemCaseSensitive(root, "labels"))) return BAD(p, "'labels' is missing");
    DACL_TRY(parse_labels(p, v));
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "label_remap"))) DACL_TRY(parse_remap(p, v));
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "intensity"))) DACL_TRY(parse_intensity(p, v));
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "spacing"))) DACL_TRY(parse_spacing(p, v));
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "root"))) DACL_TRY(get_string(p, v, "root", &ds->root_field));
    if (!(v = cJSON_GetObjectItemCaseSensitive(root, "splits"))) return BAD(p, "'splits' is missing");
    if (!cJSON_IsObject(v)) return BAD(p, "'splits' must be an object {\"train\", \"val\", \"test\"}");
    DACL_TRY(check_fields(p, v, "splits", (const char *const[]){"train", "val", "test", NULL}));
    const char *names[3] = {"train", "val", "test"};
    DaclSplit *sp[3] = {&ds->train, &ds->val, &ds->test};
    for (int s = 0; s < 3; s++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(v, names[s]);
        if (a) DACL_TRY(parse_split(p, a, names[s], sp[s]));
    }
    if (ds->train.n + ds->val.n + ds->test.n == 0) return BAD(p, "'splits' has no cases");
    DACL_TRY(check_unique_ids(p));
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "label_order"))) DACL_TRY(parse_label_order(p, v));
    return DACL_OK;
}

/* Where case paths start: "root" (absolute, or relative to the manifest's folder) or the folder. */
static int resolve_root(DaclDataset *ds, const char *manifest_dir) {
    const char *dir = manifest_dir && *manifest_dir ? manifest_dir : ".";
    const char *r = ds->root_field;
    size_t n = strlen(dir) + (r ? strlen(r) : 0) + 2;
    if (!(ds->root = malloc(n))) return DACL_FAIL(DACL_ENOMEM, "manifest: out of memory");
    if (!r) snprintf(ds->root, n, "%s", dir);
    else if (r[0] == '/') snprintf(ds->root, n, "%s", r);
    else snprintf(ds->root, n, "%s/%s", dir, r);
    return DACL_OK;
}

int dacl_dataset_parse(const char *json, const char *manifest_dir, const char *what, DaclDataset *ds) {
    what = what ? what : DACL_MANIFEST;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &end, 1);
    if (!root) {
        int line = 1;
        for (const char *c = json; end && c < end; c++) line += *c == '\n';
        return DACL_FAIL(DACL_EFORMAT, "%s: not valid JSON (line %d)", what, line);
    }
    DaclDataset t = {0};
    Parse p = {.what = what, .ds = &t};
    int rc = cJSON_IsObject(root) ? parse_root(&p, root) : BAD(&p, "the manifest must be a JSON object");
    if (rc == DACL_OK) rc = resolve_root(&t, manifest_dir);
    cJSON_Delete(root);
    if (rc != DACL_OK) {
        dacl_dataset_free(&t);
        return rc;
    }
    dacl_dataset_free(ds);
    *ds = t;
    return DACL_OK;
}

/* ---- loading a manifest file ---- */

int dacl_read_text(const char *path, long max, char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return DACL_FAIL(DACL_ENOTFOUND, "%s: no such file", path);
        return DACL_FAIL(DACL_EIO, "%s: %s", path, strerror(errno));
    }
    char *buf = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    int rc = DACL_OK;
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0)
        rc = DACL_FAIL(DACL_EIO, "%s: cannot read", path);
    else if (size > max)
        rc = DACL_FAIL(DACL_EFORMAT, "%s: too large (%ld bytes)", path, size);
    else if (!(buf = malloc((size_t)size + 1)))
        rc = DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
    else if (fread(buf, 1, (size_t)size, f) != (size_t)size)
        rc = DACL_FAIL(DACL_EIO, "%s: short read", path);
    fclose(f);
    if (rc != DACL_OK) {
        free(buf);
        return rc;
    }
    buf[size] = '\0';
    *out = buf;
    return DACL_OK;
}

/* nnU-Net's dataset.json has these and never our "splits". */
static int looks_like_nnunet(const char *json) {
    cJSON *r = cJSON_Parse(json);
    int yes = r && !cJSON_GetObjectItemCaseSensitive(r, "splits") &&
              (cJSON_GetObjectItemCaseSensitive(r, "channel_names") ||
               cJSON_GetObjectItemCaseSensitive(r, "file_ending") ||
               cJSON_GetObjectItemCaseSensitive(r, "numTraining"));
    cJSON_Delete(r);
    return yes;
}

int dacl_dataset_load(const char *path, DaclDataset *ds) {
    struct stat st;
    if (stat(path, &st) != 0) return DACL_FAIL(DACL_ENOTFOUND, "%s: no such file or folder", path);
    size_t n = strlen(path) + sizeof DACL_MANIFEST_ALT + 2;
    char *file = malloc(n), *dir = malloc(n);
    if (!file || !dir) {
        free(file), free(dir);
        return DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(dir, n, "%s", path);
        snprintf(file, n, "%s/%s", path, DACL_MANIFEST_ALT);
        if (access(file, F_OK) != 0) snprintf(file, n, "%s/%s", path, DACL_MANIFEST);
    } else {
        snprintf(file, n, "%s", path);
        const char *slash = strrchr(path, '/');
        if (slash) snprintf(dir, n, "%.*s", (int)(slash - path) + (slash == path), path);
        else snprintf(dir, n, ".");
    }
    char *text = NULL;
    int rc = dacl_read_text(file, MANIFEST_MAX_BYTES, &text);
    if (rc == DACL_OK && looks_like_nnunet(text))
        rc = DACL_FAIL(DACL_EFORMAT, "%s: this is nnU-Net's dataset.json, not a dacl manifest; run `dacld dataset init %s`",
                       file, dir);
    else if (rc == DACL_OK)
        rc = dacl_dataset_parse(text, dir, file, ds);
    free(text);
    free(file);
    free(dir);
    return rc;
}

/* ---- writing ---- */

/* cJSON_Add* return NULL when out of memory; count the failures instead of testing each. */
static cJSON *add(int *oom, cJSON *obj, const char *key, cJSON *item) {
    if (!item || !cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        (*oom)++;
        return NULL;
    }
    return item;
}

static cJSON *split_json(int *oom, const DaclSplit *s) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < s->n; i++) {
        const DaclCase *c = &s->cases[i];
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            (*oom)++;
            break;
        }
        add(oom, o, "id", cJSON_CreateString(c->id));
        if (strcmp(c->patient, c->id) != 0) add(oom, o, "patient", cJSON_CreateString(c->patient));
        add(oom, o, "image", cJSON_CreateString(c->image));
        add(oom, o, "label", c->label ? cJSON_CreateString(c->label) : cJSON_CreateNull());
    }
    return a;
}

char *dacl_dataset_to_json(const DaclDataset *ds) {
    int oom = 0;
    cJSON *r = cJSON_CreateObject();
    if (!r) return NULL;
    add(&oom, r, "name", cJSON_CreateString(ds->name));
    add(&oom, r, "modality", cJSON_CreateString(ds->modality == DACL_CT ? "CT" : "MRI"));
    add(&oom, r, "format", cJSON_CreateString(dacl_format_name(ds->format)));
    cJSON *labels = add(&oom, r, "labels", cJSON_CreateObject());
    for (int i = 0; labels && i < ds->n_labels; i++)
        add(&oom, labels, ds->labels[i].name, cJSON_CreateNumber(ds->labels[i].value));
    if (ds->remap.n) {
        cJSON *m = add(&oom, r, "label_remap", cJSON_CreateObject());
        char key[16];
        for (int i = 0; m && i < ds->remap.n; i++) {
            snprintf(key, sizeof key, "%d", (int)ds->remap.pairs[i].from);
            add(&oom, m, key, cJSON_CreateNumber(ds->remap.pairs[i].to));
        }
    }
    cJSON *in = add(&oom, r, "intensity", cJSON_CreateObject());
    if (in) {
        double clip[2] = {ds->intensity.clip_lo, ds->intensity.clip_hi};
        add(&oom, in, "clip", ds->intensity.clip ? cJSON_CreateDoubleArray(clip, 2) : cJSON_CreateNull());
        add(&oom, in, "minmax", cJSON_CreateBool(ds->intensity.minmax));
    }
    if (ds->has_spacing) add(&oom, r, "spacing", cJSON_CreateDoubleArray(ds->spacing, 3));
    if (ds->root_field) add(&oom, r, "root", cJSON_CreateString(ds->root_field));
    cJSON *splits = add(&oom, r, "splits", cJSON_CreateObject());
    if (splits) {
        add(&oom, splits, "train", split_json(&oom, &ds->train));
        add(&oom, splits, "val", split_json(&oom, &ds->val));
        add(&oom, splits, "test", split_json(&oom, &ds->test));
    }
    if (ds->n_label_order)
        add(&oom, r, "label_order", cJSON_CreateStringArray((const char *const *)ds->label_order, ds->n_label_order));
    char *text = oom ? NULL : cJSON_Print(r);
    cJSON_Delete(r);
    return text;
}

int dacl_dataset_write(const DaclDataset *ds, const char *path, int force) {
    if (!force && access(path, F_OK) == 0)
        return DACL_FAIL(DACL_EEXIST, "%s: exists; not overwriting it without force", path);
    char *text = dacl_dataset_to_json(ds);
    if (!text) return DACL_FAIL(DACL_ENOMEM, "%s: out of memory", path);
    DaclTmpFile tmp;
    int rc = dacl_tmp_open(path, &tmp);
    if (rc == DACL_OK) {
        size_t len = strlen(text);
        errno = 0;
        int bad = write(tmp.fd, text, len) != (ssize_t)len || write(tmp.fd, "\n", 1) != 1 || fsync(tmp.fd) != 0;
        int e = errno;
        if (close(tmp.fd) != 0 && !bad) bad = 1, e = errno;
        if (bad) rc = DACL_FAIL(DACL_EIO, "%s: write failed: %s", path, e ? strerror(e) : "short write");
        rc = dacl_tmp_finish(&tmp, path, rc, force);
    }
    free(text);
    return rc;
}

/* ---- queries ---- */

/* Group train cases by patient: pid[i] = a number per distinct patient; returns the count. */
static int patient_groups(const DaclDataset *ds, int *pid) {
    int n = ds->train.n;
    KeyIdx *k = malloc((size_t)(n ? n : 1) * sizeof *k);
    if (!k) return -1;
    for (int i = 0; i < n; i++) k[i].key = ds->train.cases[i].patient, k[i].idx = i;
    qsort(k, (size_t)n, sizeof *k, keyidx_cmp);
    int g = -1;
    for (int i = 0; i < n; i++) {
        if (i == 0 || strcmp(k[i].key, k[i - 1].key) != 0) g++;
        pid[k[i].idx] = g;
    }
    free(k);
    return g + 1;
}

int dacl_dataset_train_patients(const DaclDataset *ds) {
    int *pid = malloc((size_t)(ds->train.n ? ds->train.n : 1) * sizeof *pid);
    int n = pid ? patient_groups(ds, pid) : -1;
    free(pid);
    if (n < 0) DACL_FAIL(DACL_ENOMEM, "out of memory");
    return n;
}

int dacl_dataset_labeled(const DaclDataset *ds, int n_patients, uint8_t *labeled, int *n_cases) {
    int n = ds->train.n;
    int *pid = malloc((size_t)(n ? n : 1) * sizeof *pid);
    int *order = malloc((size_t)(n ? n : 1) * sizeof *order); /* patients, labeling order */
    uint8_t *taken = calloc((size_t)(n ? n : 1), 1);          /* per patient */
    KeyIdx *k = NULL;
    int rc = (!pid || !order || !taken) ? DACL_FAIL(DACL_ENOMEM, "out of memory") : train_index(ds, &k);
    int np = 0;
    if (rc == DACL_OK && patient_groups(ds, pid) < 0) rc = DACL_FAIL(DACL_ENOMEM, "out of memory");
    /* patients in order of first appearance: label_order first, then the train split; only
     * patients with at least one labeled case count */
    for (int pass = 0; rc == DACL_OK && pass < 2; pass++) {
        int m = pass == 0 ? ds->n_label_order : n;
        for (int j = 0; j < m; j++) {
            int i = pass == 0 ? keyidx_find(k, n, ds->label_order[j]) : j;
            if (i < 0 || !ds->train.cases[i].label || taken[pid[i]]) continue;
            taken[pid[i]] = 1;
            order[np++] = pid[i];
        }
    }
    if (rc == DACL_OK && (n_patients < 0 || n_patients > np))
        rc = DACL_FAIL(DACL_EINVAL, "%s: asked for %d labeled patients; the train split has %d with labels",
                       ds->name, n_patients, np);
    if (rc == DACL_OK) {
        memset(taken, 0, (size_t)(n ? n : 1));
        for (int j = 0; j < n_patients; j++) taken[order[j]] = 1;
        int count = 0;
        for (int i = 0; i < n; i++) {
            labeled[i] = ds->train.cases[i].label && taken[pid[i]];
            count += labeled[i];
        }
        if (n_cases) *n_cases = count;
    }
    free(pid), free(order), free(taken), free(k);
    return rc;
}

int dacl_dataset_path(const DaclDataset *ds, const char *rel, char *buf, size_t n) {
    return dacl_path_join(buf, n, ds->root, rel);
}

/* Every value of a (remapped) label map must be one the manifest declares. */
static int check_labels(const DaclDataset *ds, const DaclLabelVolume *lab, const char *path) {
    uint8_t ok[256];
    for (int v = 0; v < 256; v++) ok[v] = (uint8_t)label_declared(ds, v);
    size_t n = dacl_label_numel(lab);
    for (size_t i = 0; i < n; i++)
        if (!ok[lab->data[i]])
            return DACL_FAIL(DACL_EFORMAT, "%s: label value %d at voxel %zu is not one of the manifest's labels",
                             path, lab->data[i], i);
    return DACL_OK;
}

int dacl_dataset_load_case(const DaclDataset *ds, const DaclCase *c, DaclVolume *img, DaclLabelVolume *lab) {
    char ip[4096], lp[4096];
    DACL_TRY(dacl_dataset_path(ds, c->image, ip, sizeof ip));
    if (c->label) DACL_TRY(dacl_dataset_path(ds, c->label, lp, sizeof lp));
    DaclVolume ti = {0};
    DaclLabelVolume tl = {0};
    int want_label = lab && c->label;
    int rc;
    if (want_label && ds->format == DACL_FMT_H5 && strcmp(c->image, c->label) == 0) {
        rc = dacl_h5_read_remap(ip, &ti, &tl, &ds->remap); /* one open for both */
    } else {
        rc = dacl_volume_load(ip, &ti);
        if (rc == DACL_OK && want_label) rc = dacl_label_load_remap(lp, &ds->remap, &tl);
        if (rc == DACL_OK && want_label) rc = dacl_volume_check_pair(&ti, &tl, ip, lp);
    }
    if (rc == DACL_OK && want_label) rc = check_labels(ds, &tl, lp);
    if (rc == DACL_OK && ds->has_spacing) {
        memcpy(ti.spacing, ds->spacing, sizeof ti.spacing);
        memcpy(tl.spacing, ds->spacing, sizeof tl.spacing);
        ti.has_spacing = tl.has_spacing = 1;
    }
    if (rc == DACL_OK && (rc = dacl_volume_normalize(&ti, &ds->intensity)) != DACL_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", dacl_error_message());
        rc = DACL_FAIL(rc, "%s: %s", ip, why);
    }
    if (rc != DACL_OK) {
        dacl_volume_free(&ti);
        dacl_label_free(&tl);
        return rc;
    }
    dacl_volume_free(img);
    *img = ti;
    if (lab) {
        dacl_label_free(lab);
        *lab = tl;
    }
    return DACL_OK;
}
