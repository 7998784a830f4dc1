/* Job config parsing and validation, table-driven: each section is a list of
 * fields with a type, the place it lands in DaclJobConfig and its range. */
#include "dacl/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dacl/error.h"
#include "dacl/nn.h"

typedef enum { F_INT, F_DOUBLE, F_BOOL, F_STRING, F_ENUM, F_KNN, F_PATCH, F_SEED } FieldType;

typedef struct {
    const char *name;
    FieldType type;
    size_t offset;
    double lo, hi;              /* numeric range (inclusive) */
    const char *const *choices; /* F_ENUM: NULL-terminated names, index = value */
} Field;

#define OFF(f) offsetof(DaclJobConfig, f)

static const char *const method_names[] = {"supervised", "cps", "dacl", NULL};
static const char *const schedules[] = {"constant", "ramp", NULL};
static const char *const samplings[] = {"density", "random", NULL};
static const char *const positiveness[] = {"weighted", "none", "literal", NULL};
static const char *const granularities[] = {"pixel", "prototype", NULL};
static const char *const neg_sources[] = {"pixels", "anchors", NULL};
/* index = DACL_FEAT_* value */
static const char *const feature_layers[] = {"bottleneck", "up1", "up2", "up3", NULL};

static const Field top_fields[] = {
    {"name", F_STRING, OFF(name), 0, 0, NULL},
};

static const Field dataset_fields[] = {
    {"path", F_STRING, OFF(dataset.path), 0, 0, NULL},
    {"labeled", F_INT, OFF(dataset.labeled), 1, 100000, NULL},
    {"split_seed", F_INT, OFF(dataset.split_seed), 0, 2147483647, NULL},
};

static const Field method_fields[] = {
    {"name", F_ENUM, OFF(method.name), 0, 0, method_names},
    {"lambda_cross", F_DOUBLE, OFF(method.lambda_cross), 0, 100, NULL},
    {"cross_schedule", F_ENUM, OFF(method.cross_schedule), 0, 0, schedules},
    {"cross_on_labeled", F_BOOL, OFF(method.cross_on_labeled), 0, 0, NULL},
    {"tau", F_DOUBLE, OFF(method.tau), 1e-3, 10, NULL},
    {"anchors", F_INT, OFF(method.anchors), 1, 100000, NULL},
    {"pos_keys", F_INT, OFF(method.pos_keys), 1, 100000, NULL},
    {"neg_keys", F_INT, OFF(method.neg_keys), 1, 100000, NULL},
    {"bank_size", F_INT, OFF(method.bank_size), 1, 1000000, NULL},
    {"bank_insert", F_INT, OFF(method.bank_insert), 1, 100000, NULL},
    {"knn", F_KNN, OFF(method.knn), 1, 4096, NULL},
    {"phi", F_DOUBLE, OFF(method.phi), 0, 0.999999, NULL},
    {"feature_layer", F_ENUM, OFF(method.feature_layer), 0, 0, feature_layers},
    {"proj_dim", F_INT, OFF(method.proj_dim), 2, 4096, NULL},
    {"sampling", F_ENUM, OFF(method.sampling), 0, 0, samplings},
    {"multiscale", F_BOOL, OFF(method.multiscale), 0, 0, NULL},
    {"bank", F_BOOL, OFF(method.bank), 0, 0, NULL},
    {"positiveness", F_ENUM, OFF(method.positiveness), 0, 0, positiveness},
    {"granularity", F_ENUM, OFF(method.granularity), 0, 0, granularities},
    {"neg_source", F_ENUM, OFF(method.neg_source), 0, 0, neg_sources},
    {"cl_warmup", F_INT, OFF(method.cl_warmup), 0, 10000000, NULL},
    {"cl_background", F_BOOL, OFF(method.cl_background), 0, 0, NULL},
    {"max_pixels", F_INT, OFF(method.max_pixels), 1, 10000000, NULL},
    {"lambda_cl", F_DOUBLE, OFF(method.lambda_cl), 0, 100, NULL},
};

static const Field train_fields[] = {
    {"iterations", F_INT, OFF(train.iterations), 1, 10000000, NULL},
    {"batch", F_INT, OFF(train.batch), 1, 1024, NULL},
    {"labeled_batch", F_INT, OFF(train.labeled_batch), 1, 1024, NULL},
    {"patch", F_PATCH, OFF(train.patch), 16, 2048, NULL},
    {"lr", F_DOUBLE, OFF(train.lr), 1e-9, 10, NULL},
    {"momentum", F_DOUBLE, OFF(train.momentum), 0, 0.999999, NULL},
    {"weight_decay", F_DOUBLE, OFF(train.weight_decay), 0, 1, NULL},
    {"seed", F_SEED, OFF(train.seed), 0, 9007199254740991.0, NULL},
    {"threads", F_INT, OFF(train.threads), 1, 1024, NULL},
    {"val_every", F_INT, OFF(train.val_every), 1, 10000000, NULL},
    {"checkpoint_every", F_INT, OFF(train.checkpoint_every), 1, 10000000, NULL},
};

typedef struct {
    const char *name; /* NULL: the top level */
    const Field *fields;
    int nfields;
} Section;

#define NF(a) ((int)(sizeof a / sizeof a[0]))
static const Section sections[] = {
    {NULL, top_fields, NF(top_fields)},
    {"dataset", dataset_fields, NF(dataset_fields)},
    {"method", method_fields, NF(method_fields)},
    {"train", train_fields, NF(train_fields)},
};

void dacl_config_defaults(DaclJobConfig *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "job");
    snprintf(c->dataset.path, sizeof c->dataset.path, "phantom:cardiac");
    c->dataset.labeled = 2;
    c->method.name = DACL_METHOD_DACL;
    c->method.lambda_cross = 1.0;
    c->method.cross_schedule = DACL_SCHED_CONSTANT;
    c->method.tau = 0.4;
    c->method.anchors = 256;
    c->method.pos_keys = 512;
    c->method.neg_keys = 512;
    c->method.bank_size = 1000;
    c->method.bank_insert = 256;
    c->method.knn[0] = 8, c->method.knn[1] = 16, c->method.knn[2] = 32;
    c->method.nknn = 3;
    c->method.phi = 0.8;
    c->method.feature_layer = DACL_FEAT_UP2;
    c->method.proj_dim = 128;
    c->method.sampling = DACL_SAMPLING_DENSITY;
    c->method.multiscale = 1;
    c->method.bank = 1;
    c->method.positiveness = DACL_POS_WEIGHTED;
    c->method.granularity = DACL_GRAN_PIXEL;
    c->method.neg_source = DACL_NEG_PIXELS;
    c->method.cl_warmup = 1000;
    c->method.max_pixels = 10000;
    c->method.lambda_cl = 0.1;
    c->train.iterations = 30000;
    c->train.batch = 24;
    c->train.labeled_batch = 12;
    c->train.patch[0] = c->train.patch[1] = 256;
    c->train.lr = 0.01;
    c->train.momentum = 0.9;
    c->train.weight_decay = 1e-4;
    c->train.seed = 1337;
    c->train.threads = 2;
    c->train.val_every = 200;
    c->train.checkpoint_every = 1000;
}

const char *dacl_method_name(DaclMethodName m) {
    return m >= DACL_METHOD_SUPERVISED && m <= DACL_METHOD_DACL ? method_names[m] : "?";
}

/* ------------------------------------------------------------ parsing -- */

typedef struct {
    char *field;
    size_t n;
} Where;

static int bad(Where *w, const char *path, const char *fmt, const char *detail) {
    if (w->field) snprintf(w->field, w->n, "%s", path);
    return DACL_FAIL(DACL_EINVAL, fmt, path, detail);
}

static int get_int(Where *w, const char *path, const cJSON *v, double lo, double hi, int *out) {
    char buf[96];
    if (!cJSON_IsNumber(v)) return bad(w, path, "%s: expected an integer%s", "");
    double d = v->valuedouble;
    if (d != floor(d)) return bad(w, path, "%s: expected an integer%s", ", not a fraction");
    if (d < lo || d > hi) {
        snprintf(buf, sizeof buf, " %.0f..%.0f, got %.17g", lo, hi, d);
        return bad(w, path, "%s: must be in%s", buf);
    }
    *out = (int)d;
    return DACL_OK;
}

static int set_field(Where *w, const char *path, const Field *f, const cJSON *v, DaclJobConfig *c) {
    char *base = (char *)c + f->offset;
    char buf[200]; /* path (< 160) plus an index or a list of choices */
    switch (f->type) {
    case F_INT: return get_int(w, path, v, f->lo, f->hi, (int *)base);
    case F_SEED:
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < f->lo ||
            v->valuedouble > f->hi)
            return bad(w, path, "%s: expected an integer in 0..2^53%s", "");
        *(uint64_t *)base = (uint64_t)v->valuedouble;
        return DACL_OK;
    case F_DOUBLE:
        if (!cJSON_IsNumber(v)) return bad(w, path, "%s: expected a number%s", "");
        if (!isfinite(v->valuedouble) || v->valuedouble < f->lo || v->valuedouble > f->hi) {
            snprintf(buf, sizeof buf, " [%g, %g], got %.17g", f->lo, f->hi, v->valuedouble);
            return bad(w, path, "%s: must be in%s", buf);
        }
        *(double *)base = v->valuedouble;
        return DACL_OK;
    case F_BOOL:
        if (!cJSON_IsBool(v)) return bad(w, path, "%s: expected true or false%s", "");
        *(int *)base = cJSON_IsTrue(v) ? 1 : 0;
        return DACL_OK;
    case F_STRING: {
        if (!cJSON_IsString(v)) return bad(w, path, "%s: expected a string%s", "");
        size_t len = strlen(v->valuestring);
        if (len == 0 || len >= DACL_CONFIG_STR)
            return bad(w, path, "%s: must be 1 to 255 characters%s", "");
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)v->valuestring[i] < 0x20)
                return bad(w, path, "%s: must not contain control characters%s", "");
        memcpy(base, v->valuestring, len + 1);
        return DACL_OK;
    }
    case F_ENUM: {
        if (!cJSON_IsString(v)) return bad(w, path, "%s: expected a string%s", "");
        for (int i = 0; f->choices[i]; i++)
            if (!strcmp(v->valuestring, f->choices[i])) {
                *(int *)base = i;
                return DACL_OK;
            }
        size_t o = 0;
        buf[0] = '\0';
        for (int i = 0; f->choices[i] && o < sizeof buf; i++)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s", i ? ", " : " ", f->choices[i]);
        return bad(w, path, "%s: must be one of%s", buf);
    }
    case F_KNN: {
        int n = cJSON_GetArraySize(v);
        if (!cJSON_IsArray(v) || n < 1 || n > DACL_MAX_KNN)
            return bad(w, path, "%s: expected a list of 1 to 4 increasing integers%s", "");
        for (int i = 0; i < n; i++) {
            snprintf(buf, sizeof buf, "%s[%d]", path, i);
            DACL_TRY(get_int(w, buf, cJSON_GetArrayItem(v, i), f->lo, f->hi, &c->method.knn[i]));
            if (i && c->method.knn[i] <= c->method.knn[i - 1])
                return bad(w, buf, "%s: the k values must increase%s", "");
        }
        c->method.nknn = n;
        return DACL_OK;
    }
    case F_PATCH: {
        int *p = (int *)base;
        if (cJSON_IsNumber(v)) {
            DACL_TRY(get_int(w, path, v, f->lo, f->hi, &p[0]));
            p[1] = p[0];
        } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2) {
            for (int i = 0; i < 2; i++) {
                snprintf(buf, sizeof buf, "%s[%d]", path, i);
                DACL_TRY(get_int(w, buf, cJSON_GetArrayItem(v, i), f->lo, f->hi, &p[i]));
            }
        } else {
            return bad(w, path, "%s: expected [H, W] or a single size%s", "");
        }
        if (p[0] % 16 || p[1] % 16) return bad(w, path, "%s: must be multiples of 16%s", "");
        return DACL_OK;
    }
    }
    return DACL_FAIL(DACL_EINTERNAL, "unhandled field type");
}

static int parse_section(Where *w, const Section *s, const cJSON *obj, DaclJobConfig *c) {
    char path[96];
    const cJSON *item;
    cJSON_ArrayForEach(item, obj) {
        if (!s->name && (!strcmp(item->string, "dataset") || !strcmp(item->string, "method") ||
                         !strcmp(item->string, "train")))
            continue; /* handled as sections */
        snprintf(path, sizeof path, "%s%s%s", s->name ? s->name : "", s->name ? "." : "", item->string);
        const Field *f = NULL;
        for (int i = 0; i < s->nfields; i++)
            if (!strcmp(s->fields[i].name, item->string)) f = &s->fields[i];
        if (!f) return bad(w, path, "%s: unknown field%s", "");
        DACL_TRY(set_field(w, path, f, item, c));
    }
    return DACL_OK;
}

/* Relations between fields that no single range can express. */
static int cross_check(Where *w, const DaclJobConfig *c) {
    char buf[128];
    if (c->train.labeled_batch > c->train.batch) {
        snprintf(buf, sizeof buf, " (%d > %d)", c->train.labeled_batch, c->train.batch);
        return bad(w, "train.labeled_batch", "%s: cannot exceed train.batch%s", buf);
    }
    if (c->method.name != DACL_METHOD_SUPERVISED && c->train.labeled_batch == c->train.batch)
        return bad(w, "train.labeled_batch",
                   "%s: must be below train.batch so %s has unlabeled images to learn from",
                   c->method.name == DACL_METHOD_CPS ? "cps" : "dacl");
    if (c->method.name == DACL_METHOD_DACL) {
        int kmax = c->method.knn[c->method.nknn - 1];
        if (c->method.bank_size <= kmax) {
            snprintf(buf, sizeof buf, " (%d)", kmax);
            return bad(w, "method.bank_size", "%s: must exceed the largest k in method.knn%s", buf);
        }
        if (c->method.granularity == DACL_GRAN_PROTOTYPE)
            return bad(w, "method.granularity",
                       "%s: \"prototype\" (the paper's Table 3 variant) is not implemented yet%s",
                       "; use \"pixel\", the paper's best row");
    }
    return DACL_OK;
}

int dacl_config_parse(const char *json, DaclJobConfig *cfg, char *field, size_t n) {
    Where w = {field, n};
    if (field && n) field[0] = '\0';
    if (!json) return bad(&w, "", "%sthe job config is empty%s", "");
    cJSON *root = cJSON_Parse(json);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        char near[40] = "";
        if (at) snprintf(near, sizeof near, " near '%.20s'", at);
        return bad(&w, "", "%sthe job config is not valid JSON%s", near);
    }
    DaclJobConfig c;
    dacl_config_defaults(&c);
    int rc = DACL_OK;
    if (!cJSON_IsObject(root)) rc = bad(&w, "", "%sthe job config must be a JSON object%s", "");
    for (int i = 0; rc == DACL_OK && i < NF(sections); i++) {
        const cJSON *obj = root;
        if (sections[i].name) {
            obj = cJSON_GetObjectItemCaseSensitive(root, sections[i].name);
            if (!obj) continue;
            if (!cJSON_IsObject(obj)) {
                rc = bad(&w, sections[i].name, "%s: expected an object%s", "");
                break;
            }
        }
        rc = parse_section(&w, &sections[i], obj, &c);
    }
    if (rc == DACL_OK) rc = cross_check(&w, &c);
    cJSON_Delete(root);
    if (rc == DACL_OK) *cfg = c;
    return rc;
}

/* ---------------------------------------------------------- printing -- */

static void add_field(cJSON *obj, const Field *f, const DaclJobConfig *c) {
    const char *base = (const char *)c + f->offset;
    switch (f->type) {
    case F_INT: cJSON_AddNumberToObject(obj, f->name, *(const int *)base); break;
    case F_SEED: cJSON_AddNumberToObject(obj, f->name, (double)*(const uint64_t *)base); break;
    case F_DOUBLE: cJSON_AddNumberToObject(obj, f->name, *(const double *)base); break;
    case F_BOOL: cJSON_AddBoolToObject(obj, f->name, *(const int *)base); break;
    case F_STRING: cJSON_AddStringToObject(obj, f->name, base); break;
    case F_ENUM: cJSON_AddStringToObject(obj, f->name, f->choices[*(const int *)base]); break;
    case F_KNN: {
        cJSON *a = cJSON_AddArrayToObject(obj, f->name);
        for (int i = 0; i < c->method.nknn; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(c->method.knn[i]));
        break;
    }
    case F_PATCH: {
        cJSON *a = cJSON_AddArrayToObject(obj, f->name);
        cJSON_AddItemToArray(a, cJSON_CreateNumber(c->train.patch[0]));
        cJSON_AddItemToArray(a, cJSON_CreateNumber(c->train.patch[1]));
        break;
    }
    }
}

/* skip: field names left out (for the hash) */
static cJSON *config_json(const DaclJobConfig *c, const char *const *skip) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    for (int s = 0; s < NF(sections); s++) {
        cJSON *obj = sections[s].name ? cJSON_AddObjectToObject(root, sections[s].name) : root;
        for (int i = 0; i < sections[s].nfields; i++) {
            const Field *f = &sections[s].fields[i];
            int skipped = 0;
            for (int k = 0; skip && skip[k]; k++)
                if (!strcmp(skip[k], f->name) && (sections[s].name == NULL || strcmp(f->name, "name")))
                    skipped = 1;
            if (!skipped) add_field(obj, f, c);
        }
    }
    return root;
}

char *dacl_config_to_json(const DaclJobConfig *cfg) {
    cJSON *o = config_json(cfg, NULL);
    char *s = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    return s;
}

void dacl_config_hash(const DaclJobConfig *cfg, char out[17]) {
    /* what does not change the computed weights stays out of the hash */
    static const char *const skip[] = {"name", "threads", "val_every", "checkpoint_every", NULL};
    cJSON *o = config_json(cfg, skip);
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64 of the canonical JSON */
    for (const char *p = s ? s : ""; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    snprintf(out, 17, "%016llx", (unsigned long long)h);
    free(s);
    cJSON_Delete(o);
}
