/* `dacld dataset init`: recognise a dataset folder's layout and write a manifest for it.
 * The layouts, the choice of validation cases and where the manifest goes are described at
 * dacl_dataset_init in dacl/data.h. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dacl/error.h"
#include "data_internal.h"

/* ---- small helpers ---- */

typedef struct {
    char **v;
    int n;
} Names;

static void names_free(Names *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static int names_add(Names *s, const char *str, size_t len) {
    if ((s->n & (s->n - 1)) == 0) {
        char **v = realloc(s->v, (size_t)(s->n ? s->n * 2 : 1) * sizeof *v);
        if (!v) return DACL_FAIL(DACL_ENOMEM, "out of memory");
        s->v = v;
    }
    char *c = malloc(len + 1);
    if (!c) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    memcpy(c, str, len);
    c[len] = '\0';
    s->v[s->n++] = c;
    return DACL_OK;
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_dir(const char *dir, const char *sub) {
    char p[PATH_MAX];
    struct stat st;
    return dacl_path_join(p, sizeof p, dir, sub) == DACL_OK && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int file_exists(const char *dir, const char *rel) {
    char p[PATH_MAX];
    struct stat st;
    return dacl_path_join(p, sizeof p, dir, rel) == DACL_OK && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The visible entries of dir/sub, sorted (so the manifest does not depend on readdir order). */
static int list_dir(const char *dir, const char *sub, Names *out) {
    char p[PATH_MAX];
    DACL_TRY(dacl_path_join(p, sizeof p, dir, sub));
    DIR *d = opendir(p);
    if (!d) return DACL_FAIL(DACL_EIO, "%s: cannot list: %s", p, strerror(errno));
    int rc = DACL_OK;
    for (struct dirent *e; rc == DACL_OK && (e = readdir(d));)
        if (e->d_name[0] != '.') rc = names_add(out, e->d_name, strlen(e->d_name));
    closedir(d);
    if (rc == DACL_OK) qsort(out->v, (size_t)out->n, sizeof *out->v, str_cmp);
    return rc;
}

/* One case id per line, "\r" and a ".h5" suffix dropped; a blank line is kept as "" so that
 * out->v[i] is line i + 1 (for messages). */
static int read_list(const char *dir, const char *name, Names *out) {
    char p[PATH_MAX];
    DACL_TRY(dacl_path_join(p, sizeof p, dir, name));
    char *text = NULL;
    DACL_TRY(dacl_read_text(p, (long)64 << 20, &text));
    int rc = DACL_OK;
    for (char *line = text; rc == DACL_OK && *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t')) len--;
        if (len > 3 && strncmp(line + len - 3, ".h5", 3) == 0) len -= 3;
        rc = names_add(out, line, len);
        line = end ? end + 1 : line + strlen(line);
    }
    free(text);
    return rc;
}

/* If `name` ends with `suffix`, its length less the suffix; else -1. */
static long stem_len(const char *name, const char *suffix) {
    size_t n = strlen(name), s = strlen(suffix);
    return n > s && strcmp(name + n - s, suffix) == 0 ? (long)(n - s) : -1;
}

/* ---- labels ---- */

/* Mark every value that occurs in the label files of all splits. */
static int scan_labels(const char *dir, const DaclDataset *ds, uint8_t present[256]) {
    const DaclSplit *sp[3] = {&ds->train, &ds->val, &ds->test};
    char p[PATH_MAX];
    DaclLabelVolume lab = {0};
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < sp[s]->n; i++) {
            if (!sp[s]->cases[i].label) continue;
            DACL_TRY(dacl_path_join(p, sizeof p, dir, sp[s]->cases[i].label));
            DACL_TRY(dacl_label_load(p, &lab));
            size_t n = dacl_label_numel(&lab);
            for (size_t k = 0; k < n; k++) present[lab.data[k]] = 1;
            dacl_label_free(&lab);
        }
    return DACL_OK;
}

static int set_label(DaclDataset *ds, const char *name, int value) {
    DaclLabelName *l = realloc(ds->labels, (size_t)(ds->n_labels + 1) * sizeof *l);
    if (!l) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    ds->labels = l;
    l[ds->n_labels].value = value;
    if (!(l[ds->n_labels].name = dacl_strdup_or_null(name))) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    ds->n_labels++;
    return DACL_OK;
}

/* ACDC's four classes, when the case ids and label values say this is ACDC. */
static int looks_like_acdc(const DaclDataset *ds, const uint8_t present[256]) {
    for (int v = 4; v < 256; v++)
        if (present[v]) return 0;
    const DaclSplit *sp[2] = {&ds->train, &ds->val};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < sp[s]->n; i++) {
            unsigned a, b;
            char tail;
            if (sscanf(sp[s]->cases[i].id, "patient%3u_frame%2u%c", &a, &b, &tail) != 2) return 0;
        }
    return ds->train.n > 0;
}

/* Labels from the values found in the files: 0 "background", v "class<v>". */
static int labels_from_scan(const char *dir, DaclDataset *ds, int acdc_names) {
    uint8_t present[256] = {1};
    DACL_TRY(scan_labels(dir, ds, present));
    if (acdc_names && looks_like_acdc(ds, present)) {
        static const char *const acdc[4] = {"background", "RV", "Myo", "LV"};
        for (int v = 0; v < 4; v++) DACL_TRY(set_label(ds, acdc[v], v));
        return DACL_OK;
    }
    char name[16];
    for (int v = 0; v < 256; v++) {
        if (!present[v]) continue;
        if (v == 0) snprintf(name, sizeof name, "background");
        else snprintf(name, sizeof name, "class%d", v);
        DACL_TRY(set_label(ds, name, v));
    }
    return DACL_OK;
}

/* ---- the layouts ---- */

/* (a) SSL4MIS: volumes/<id>.h5 listed in train.list, val.list and optionally test.list. */
static int init_ssl4mis(const char *dir, DaclDataset *ds) {
    static const char *const lists[3] = {"train.list", "val.list", "test.list"};
    DaclSplit *sp[3] = {&ds->train, &ds->val, &ds->test};
    char rel[PATH_MAX], p[PATH_MAX];
    ds->format = DACL_FMT_H5;
    for (int s = 0; s < 3; s++) {
        if (s == 2 && !file_exists(dir, lists[s])) break;
        Names ids = {0};
        int rc = read_list(dir, lists[s], &ids);
        for (int i = 0; rc == DACL_OK && i < ids.n; i++) {
            if (!ids.v[i][0]) continue;
            if (snprintf(rel, sizeof rel, "volumes/%s.h5", ids.v[i]) >= (int)sizeof rel ||
                (rc = dacl_path_join(p, sizeof p, dir, rel)) != DACL_OK)
                rc = DACL_FAIL(DACL_EINVAL, "%s/%s line %d: name too long", dir, lists[s], i + 1);
            else if ((rc = dacl_file_check(p)) != DACL_OK)
                rc = DACL_FAIL(rc, "%s/%s line %d: '%s' has no file %s", dir, lists[s], i + 1, ids.v[i], rel);
            else
                rc = dacl_split_add(sp[s], ids.v[i], NULL, rel, rel);
        }
        names_free(&ids);
        DACL_TRY(rc);
    }
    if (ds->train.n == 0) return DACL_FAIL(DACL_EFORMAT, "%s/train.list: no cases", dir);
    /* train.list's order is SSL4MIS's labeling order (its first 3 / 7 patients are the 5 % / 10 %
     * labeled sets): keep it */
    if (!(ds->label_order = calloc((size_t)ds->train.n, sizeof *ds->label_order)))
        return DACL_FAIL(DACL_ENOMEM, "out of memory");
    for (int i = 0; i < ds->train.n; i++) {
        if (!(ds->label_order[i] = dacl_strdup_or_null(ds->train.cases[i].id)))
            return DACL_FAIL(DACL_ENOMEM, "out of memory");
        ds->n_label_order++;
    }
    return labels_from_scan(dir, ds, 1);
}

/* Cases of a flat folder pair: <img_dir>/<id><img_suffix> with <lab_dir>/<id><lab_suffix> if it
 * exists. Labeled cases go to train, except every 5th (sorted by id) to val; unlabeled ones to
 * `unlabeled_to` (train for training folders, test for nnU-Net's imagesTs). */
static int add_folder_cases(const char *dir, const char *img_dir, const char *img_suffix, const char *lab_dir,
                            const char *lab_suffix, DaclDataset *ds, DaclSplit *unlabeled_to, int pick_val) {
    Names files = {0};
    DACL_TRY(list_dir(dir, img_dir, &files));
    char id[NAME_MAX + 1], img[PATH_MAX], lab[PATH_MAX];
    int rc = DACL_OK, labeled = 0;
    for (int i = 0; rc == DACL_OK && i < files.n; i++) {
        long len = stem_len(files.v[i], img_suffix);
        if (len <= 0 || len > NAME_MAX) continue;
        snprintf(id, sizeof id, "%.*s", (int)len, files.v[i]);
        snprintf(img, sizeof img, "%s/%s", img_dir, files.v[i]);
        snprintf(lab, sizeof lab, "%s/%s%s", lab_dir, id, lab_suffix);
        if (!file_exists(dir, lab))
            rc = dacl_split_add(unlabeled_to, id, NULL, img, NULL);
        else if (pick_val && labeled++ % 5 == 4)
            rc = dacl_split_add(&ds->val, id, NULL, img, lab);
        else
            rc = dacl_split_add(&ds->train, id, NULL, img, lab);
    }
    names_free(&files);
    return rc;
}

/* Labels and modality from nnU-Net's dataset.json (v2: "labels" {name: value}, "channel_names";
 * v1: "labels" {"value": name}, "modality"). *file_ending gets its "file_ending" (v1: .nii.gz). */
static int read_nnunet_json(const char *dir, DaclDataset *ds, char *file_ending, size_t n) {
    char p[PATH_MAX];
    DACL_TRY(dacl_path_join(p, sizeof p, dir, DACL_MANIFEST));
    snprintf(file_ending, n, ".nii.gz");
    if (access(p, F_OK) != 0) return DACL_OK;
    char *text = NULL;
    DACL_TRY(dacl_read_text(p, (long)64 << 20, &text));
    cJSON *r = cJSON_Parse(text);
    free(text);
    if (!r || !cJSON_IsObject(r)) {
        cJSON_Delete(r);
        return DACL_FAIL(DACL_EFORMAT, "%s: not valid JSON", p);
    }
    int rc = DACL_OK;
    const cJSON *fe = cJSON_GetObjectItemCaseSensitive(r, "file_ending");
    if (cJSON_IsString(fe)) snprintf(file_ending, n, "%s", fe->valuestring);
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(r, "channel_names");
    if (!ch) ch = cJSON_GetObjectItemCaseSensitive(r, "modality");
    if (ch && cJSON_GetArraySize(ch) > 1)
        rc = DACL_FAIL(DACL_EFORMAT, "%s: %d input channels; only single-channel datasets are supported", p,
                       cJSON_GetArraySize(ch));
    if (ch && ch->child && cJSON_IsString(ch->child) && strcasecmp(ch->child->valuestring, "CT") == 0)
        ds->modality = DACL_CT;
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(r, "labels");
    for (const cJSON *l = labels ? labels->child : NULL; rc == DACL_OK && l; l = l->next) {
        /* v2 {name: value}, v1 {"value": name} */
        char *end = NULL;
        long v = cJSON_IsNumber(l) ? (long)l->valuedouble : strtol(l->string, &end, 10);
        const char *name = cJSON_IsNumber(l) ? l->string : cJSON_IsString(l) ? l->valuestring : NULL;
        if (!name || v < 0 || v > 255 || (cJSON_IsNumber(l) && l->valuedouble != (double)v) ||
            (end && (end == l->string || *end)))
            rc = DACL_FAIL(DACL_EFORMAT, "%s: label '%s' is not a plain class value (region-based labels are not supported)",
                           p, l->string);
        else
            rc = set_label(ds, name, (int)v);
    }
    cJSON_Delete(r);
    return rc;
}

/* (b) nnU-Net raw: imagesTr/<case>_0000<ending>, labelsTr/<case><ending>, imagesTs for test. */
static int init_nnunet(const char *dir, DaclDataset *ds) {
    char ending[64], suffix[80], second[80];
    DACL_TRY(read_nnunet_json(dir, ds, ending, sizeof ending));
    ds->format = dacl_format_from_path(ending);
    if (ds->format != DACL_FMT_NIFTI && ds->format != DACL_FMT_PNG)
        return DACL_FAIL(DACL_EFORMAT, "%s: file_ending '%s' is not a format we read", dir, ending);
    snprintf(suffix, sizeof suffix, "_0000%s", ending);
    snprintf(second, sizeof second, "_0001%s", ending);
    Names files = {0};
    DACL_TRY(list_dir(dir, "imagesTr", &files));
    int multi = 0;
    for (int i = 0; i < files.n; i++) multi |= stem_len(files.v[i], second) > 0;
    names_free(&files);
    if (multi) return DACL_FAIL(DACL_EFORMAT, "%s/imagesTr: several channels per case (_0001); only one is supported", dir);
    DACL_TRY(add_folder_cases(dir, "imagesTr", suffix, "labelsTr", ending, ds, &ds->train, 1));
    if (is_dir(dir, "imagesTs"))
        DACL_TRY(add_folder_cases(dir, "imagesTs", suffix, "labelsTs", ending, ds, &ds->test, 0));
    if (ds->n_labels == 0) DACL_TRY(labels_from_scan(dir, ds, 0));
    return DACL_OK;
}

/* (c) flat NIfTI: images/<case>.nii[.gz] + labels/<case>.nii[.gz] (the same file name). */
static int init_flat(const char *dir, DaclDataset *ds) {
    ds->format = DACL_FMT_NIFTI;
    DACL_TRY(add_folder_cases(dir, "images", ".nii.gz", "labels", ".nii.gz", ds, &ds->train, 1));
    DACL_TRY(add_folder_cases(dir, "images", ".nii", "labels", ".nii", ds, &ds->train, 1));
    return labels_from_scan(dir, ds, 0);
}

/* ---- dacl_dataset_init ---- */

static int label_cmp(const void *a, const void *b) {
    return ((const DaclLabelName *)a)->value - ((const DaclLabelName *)b)->value;
}

/* Where the manifest goes, and the "root" it then needs (NULL when it sits in the dataset). */
static int output_path(const char *real_dir, const char *out_path, int nnunet, char *out, size_t n,
                       char **root_field) {
    char odir[PATH_MAX], real_odir[PATH_MAX];
    if (!out_path) {
        return dacl_path_join(out, n, real_dir, nnunet ? DACL_MANIFEST_ALT : DACL_MANIFEST);
    }
    if (snprintf(out, n, "%s", out_path) >= (int)n) return DACL_FAIL(DACL_EINVAL, "%s: path too long", out_path);
    const char *slash = strrchr(out_path, '/');
    const char *base = slash ? slash + 1 : out_path;
    if (!*base) return DACL_FAIL(DACL_EINVAL, "%s: the output must be a file path", out_path);
    if (slash) snprintf(odir, sizeof odir, "%.*s", (int)(slash - out_path) + (slash == out_path), out_path);
    else snprintf(odir, sizeof odir, ".");
    if (!realpath(odir, real_odir)) return DACL_FAIL(DACL_ENOTFOUND, "%s: no such folder", odir);
    int same = strcmp(real_odir, real_dir) == 0;
    if (same && nnunet && strcmp(base, DACL_MANIFEST) == 0)
        return DACL_FAIL(DACL_EEXIST, "%s: that is nnU-Net's own manifest; ours goes to %s", out_path,
                         DACL_MANIFEST_ALT);
    if (!same && !(*root_field = dacl_strdup_or_null(real_dir))) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    return DACL_OK;
}

static int init_into(const char *dir, const char *out_path, int force, DaclDataset *ds, char *out, size_t on,
                     const char **layout) {
    char real_dir[PATH_MAX];
    if (!realpath(dir, real_dir) || !is_dir(real_dir, "."))
        return DACL_FAIL(DACL_ENOTFOUND, "%s: no such folder", dir);
    int nnunet = 0;
    int rc;
    if (is_dir(real_dir, "volumes") && file_exists(real_dir, "train.list")) {
        *layout = "SSL4MIS HDF5";
        rc = init_ssl4mis(real_dir, ds);
    } else if (is_dir(real_dir, "imagesTr") && is_dir(real_dir, "labelsTr")) {
        *layout = "nnU-Net raw";
        nnunet = 1;
        rc = init_nnunet(real_dir, ds);
    } else if (is_dir(real_dir, "images") && is_dir(real_dir, "labels")) {
        *layout = "flat NIfTI images/ + labels/";
        rc = init_flat(real_dir, ds);
    } else {
        return DACL_FAIL(DACL_EFORMAT,
                         "%s: unrecognised layout; expected volumes/ + train.list (SSL4MIS), imagesTr/ + labelsTr/ "
                         "(nnU-Net) or images/ + labels/ (NIfTI)", dir);
    }
    DACL_TRY(rc);
    if (ds->train.n + ds->val.n + ds->test.n == 0) return DACL_FAIL(DACL_EFORMAT, "%s: no cases found", dir);
    const char *base = strrchr(real_dir, '/');
    if (!(ds->name = dacl_strdup_or_null(base && base[1] ? base + 1 : real_dir)))
        return DACL_FAIL(DACL_ENOMEM, "out of memory");
    qsort(ds->labels, (size_t)ds->n_labels, sizeof *ds->labels, label_cmp);
    dacl_intensity_default(ds->modality, &ds->intensity);
    DACL_TRY(output_path(real_dir, out_path, nnunet, out, on, &ds->root_field));

    /* what we write must load: parse it back before it replaces anything */
    char *text = dacl_dataset_to_json(ds);
    if (!text) return DACL_FAIL(DACL_ENOMEM, "out of memory");
    DaclDataset check = {0};
    rc = dacl_dataset_parse(text, real_dir, out, &check);
    free(text);
    dacl_dataset_free(&check);
    DACL_TRY(rc);
    return dacl_dataset_write(ds, out, force);
}

int dacl_dataset_init(const char *dir, const char *out_path, int force, char *out_msg, size_t n) {
    DaclDataset ds = {0};
    char out[PATH_MAX];
    const char *layout = "";
    int rc = init_into(dir, out_path, force, &ds, out, sizeof out, &layout);
    if (out_msg && n) {
        if (rc != DACL_OK) {
            snprintf(out_msg, n, "%s", dacl_error_message());
        } else {
            int len = snprintf(out_msg, n, "wrote %s: %s, %s, %d train / %d val / %d test cases, %d training patients, labels",
                               out, layout, ds.modality == DACL_CT ? "CT" : "MRI", ds.train.n, ds.val.n,
                               ds.test.n, dacl_dataset_train_patients(&ds));
            for (int i = 0; i < ds.n_labels && len >= 0 && (size_t)len < n; i++)
                len += snprintf(out_msg + len, n - (size_t)len, " %s=%d", ds.labels[i].name, ds.labels[i].value);
        }
    }
    dacl_dataset_free(&ds);
    return rc;
}
