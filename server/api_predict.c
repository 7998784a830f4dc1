/* What a job's model does: segment an uploaded volume (predict) and render
 * a validation case as image | ground truth | prediction (samples).
 *
 * Both run inference for the HTTP thread: seconds of CPU, never a wait for
 * training; predict in a child process, since it parses an uploaded file. One at a time per daemon (others get 503 and Retry-After), so a
 * burst of them cannot take every HTTP thread or starve the workers. The
 * model is the job's best checkpoint, else its last one. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "cli.h"
#include "dacl/config.h"
#include "dacl/data.h"
#include "dacl/error.h"
#include "dacl/eval.h"

/* The job's model file into path; answers 409 and returns 0 if it has none yet. */
static int job_checkpoint(Request *r, const StoreJob *j, char *path, size_t n) {
    struct stat st;
    snprintf(path, n, "%s/checkpoint-best.bin", j->work_dir ? j->work_dir : "");
    if (stat(path, &st) == 0) return 1;
    snprintf(path, n, "%s/checkpoint-last.bin", j->work_dir ? j->work_dir : "");
    if (stat(path, &st) == 0) return 1;
    http_error(r, MHD_HTTP_CONFLICT, "no_model", NULL, "job %ld has no checkpoint yet", j->id);
    return 0;
}

static int busy_enter(Server *s, Request *r) {
    int idle = 0;
    if (atomic_compare_exchange_strong(&s->inferring, &idle, 1)) return 1;
    http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", NULL,
               "another prediction is running; retry in a few seconds");
    return 0;
}

static void busy_leave(Server *s) {
    atomic_store(&s->inferring, 0);
}

/* ------------------------------------------------------------ predict -- */

typedef struct {
    const char *ext, *type;
} Format;

/* The upload's format from its first bytes (clients rarely send a useful
 * Content-Type for medical volumes). NULL: not one we read. */
static const Format *sniff(const unsigned char *b, size_t n) {
    static const Format png = {"png", "image/png"}, h5 = {"h5", "application/x-hdf5"},
                        niigz = {"nii.gz", "application/gzip"}, nii = {"nii", "application/octet-stream"};
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return &png;
    if (n >= 8 && !memcmp(b, "\x89HDF\r\n\x1a\n", 8)) return &h5;
    if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) return &niigz;
    unsigned hdr = n >= 4 ? (unsigned)b[0] | (unsigned)b[1] << 8 | (unsigned)b[2] << 16 | (unsigned)b[3] << 24 : 0;
    if (hdr == 348 || hdr == 540) return &nii; /* NIfTI-1 / NIfTI-2 header sizes */
    return NULL;
}

static int write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(p, 1, n, f) == n;
    if (f && fclose(f)) ok = 0;
    return ok ? DACL_OK : DACL_FAIL(DACL_EIO, "%s: cannot write", path);
}

#define PREDICT_TIMEOUT_S 600

/* The last line the child wrote to its stderr file, as the error message. */
static void child_message(const char *err_path, char *msg, size_t n) {
    snprintf(msg, n, "the prediction failed");
    FILE *f = fopen(err_path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        const char *m = strncmp(line, "dacld predict: ", 15) ? line : line + 15;
        if (*m) snprintf(msg, n, "%s", m);
    }
    fclose(f);
}

/* Runs `dacld predict` on the upload in a child process: the readers parse
 * a file from the network, and a malformed HDF5 file can crash libhdf5
 * itself (tests/fuzz found dozens of ways), which must not take the daemon
 * and its training jobs with it. *bad_input: the upload is at fault (status
 * 4, or the reader died). */
static int segment(const char *ckpt, const char *in, const char *out, const char *err_path, int *bad_input) {
    *bad_input = 0;
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return DACL_FAIL(DACL_EIO, "cannot find the dacld binary: %s", strerror(errno));
    exe[len] = '\0';
    char *argv[] = {exe, "predict", "--checkpoint", (char *)ckpt, (char *)in, (char *)out, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dfl;
    sigemptyset(&none);
    sigfillset(&dfl);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawnattr_init(&at);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    extern char **environ;
    int err = posix_spawn(&pid, exe, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (err) return DACL_FAIL(DACL_EIO, "cannot start %s predict: %s", exe, strerror(err));
    int status = 0;
    struct timespec tick = {0, 20 * 1000 * 1000};
    for (long waited = 0;; waited += 20) { /* bounded: a reader that hangs is killed */
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) return DACL_FAIL(DACL_EIO, "predict: waitpid: %s", strerror(errno));
        if (waited > PREDICT_TIMEOUT_S * 1000L) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            *bad_input = 1;
            return DACL_FAIL(DACL_EINVAL, "the volume took more than %d s to read and segment; stopped",
                             PREDICT_TIMEOUT_S);
        }
        nanosleep(&tick, NULL);
    }
    char msg[1024];
    child_message(err_path, msg, sizeof msg);
    if (WIFSIGNALED(status)) {
        *bad_input = 1;
        return DACL_FAIL(DACL_EFORMAT, "the file could not be read: its reader died (signal %d); is it a "
                                       "well-formed NIfTI, HDF5 or PNG file?", WTERMSIG(status));
    }
    if (WEXITSTATUS(status) == 0) return DACL_OK;
    *bad_input = WEXITSTATUS(status) == 4;
    return DACL_FAIL(*bad_input ? DACL_EFORMAT : DACL_EIO, "%s", msg);
}

void api_job_predict(Server *s, Request *r) {
    StoreJob j;
    if (!api_load_job(s, r, &j)) return;
    char ckpt[PATH_MAX + 32], dir[PATH_MAX + 32], in[PATH_MAX + 64], out[PATH_MAX + 64], err[PATH_MAX + 64];
    size_t n;
    const unsigned char *body = (const unsigned char *)http_body(r, &n);
    const Format *f = sniff(body, n);
    if (!job_checkpoint(r, &j, ckpt, sizeof ckpt)) goto done;
    if (!f) {
        http_error(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_format", NULL,
                   "send a NIfTI (.nii, .nii.gz), SSL4MIS HDF5 or PNG file as the body");
        goto done;
    }
    if (!busy_enter(s, r)) goto done;
    snprintf(dir, sizeof dir, "%s/predict-XXXXXX", j.work_dir);
    if (!mkdtemp(dir)) {
        dacl_error_set(DACL_EIO, __FILE__, __LINE__, "%s: cannot create a folder", dir);
        http_internal(r);
        busy_leave(s);
        goto done;
    }
    snprintf(in, sizeof in, "%s/in.%s", dir, f->ext);
    snprintf(out, sizeof out, "%s/prediction.%s", dir, f->ext);
    snprintf(err, sizeof err, "%s/stderr.txt", dir);
    int bad_input = 0;
    int rc = write_file(in, body, n);
    if (rc == DACL_OK) rc = segment(ckpt, in, out, err, &bad_input);
    busy_leave(s);
    if (rc == DACL_OK)
        http_file(r, out, f->type, strrchr(out, '/') + 1); /* the open fd outlives the unlink below */
    else if (bad_input)
        http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_volume", NULL, "%s", dacl_error_message());
    else
        http_internal(r);
    unlink(in);
    unlink(out);
    unlink(err);
    rmdir(dir);
done:
    store_job_clear(&j);
}

/* ------------------------------------------------------------ samples -- */

/* Class colours for overlays: distinct, readable on grey. */
static const uint8_t palette[][3] = {{230, 25, 75},  {60, 180, 75},  {0, 130, 200},  {255, 225, 25},
                                     {145, 30, 180}, {70, 240, 240}, {240, 50, 230}, {245, 130, 48}};
#define NPALETTE ((int)(sizeof palette / sizeof palette[0]))

/* rgb[h][3w]: the slice in grey, then with the truth, then with the prediction blended in. */
static void render(uint8_t *rgb, const float *img, const uint8_t *gt, const uint8_t *pred, int h, int w) {
    float lo = img[0], hi = img[0];
    for (int i = 1; i < h * w; i++) lo = img[i] < lo ? img[i] : lo, hi = img[i] > hi ? img[i] : hi;
    float scale = hi > lo ? 255.0f / (hi - lo) : 0.0f;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int i = y * w + x;
            uint8_t g = (uint8_t)((img[i] - lo) * scale + 0.5f);
            const uint8_t *lab[3] = {NULL, gt, pred};
            for (int p = 0; p < 3; p++) {
                uint8_t *o = rgb + 3 * ((size_t)y * 3 * w + (size_t)p * w + x);
                int c = lab[p] ? lab[p][i] : 0;
                for (int k = 0; k < 3; k++)
                    o[k] = c ? (uint8_t)((g + palette[(c - 1) % NPALETTE][k]) / 2) : g;
            }
        }
}

/* The folder of the job's dataset, as the trainer opens it. */
static void dataset_dir(const Server *s, const StoreJob *j, const DaclJobConfig *cfg, char *dir, size_t n) {
    DaclPhantomKind kind;
    if (dacl_phantom_parse_spec(cfg->dataset.path, &kind) == 1)
        snprintf(dir, n, "%s/phantom-%s", j->work_dir, dacl_phantom_kind_name(kind));
    else
        snprintf(dir, n, "%s/%s", s->cfg.data_root, cfg->dataset.path);
}

/* Validation case k's most foreground slice, rendered by the job's model. */
static int sample_png(const Server *s, const StoreJob *j, long k, const char *ckpt, const char *png,
                      int *missing) {
    DaclJobConfig cfg;
    char field[64], dir[PATH_MAX * 2];
    DACL_TRY(dacl_config_parse(j->config, &cfg, field, sizeof field));
    dataset_dir(s, j, &cfg, dir, sizeof dir);
    DaclDataset ds;
    memset(&ds, 0, sizeof ds);
    DaclVolume img = {0};
    DaclLabelVolume lab = {0}, pred = {0};
    CliModel cm = {0};
    uint8_t *rgb = NULL;
    int rc = dacl_dataset_load(dir, &ds);
    if (rc == DACL_OK && k >= ds.val.n) {
        *missing = 1;
        rc = DACL_FAIL(DACL_ENOTFOUND, "sample %ld: the dataset has %d validation cases", k, ds.val.n);
    }
    if (rc == DACL_OK) rc = dacl_dataset_load_case(&ds, &ds.val.cases[k], &img, &lab);
    if (rc == DACL_OK) rc = cli_model_open(ckpt, img.nz < 4 ? img.nz : 4, 1, &cm);
    if (rc == DACL_OK) rc = dacl_infer_volume(cm.model, &img, NULL, &pred);
    if (rc == DACL_OK && !(rgb = malloc((size_t)img.ny * img.nx * 9))) rc = DACL_FAIL(DACL_ENOMEM, "out of memory");
    if (rc == DACL_OK) {
        size_t plane = (size_t)img.ny * img.nx, best = 0;
        int zb = img.nz / 2;
        for (int z = 0; z < img.nz; z++) {
            size_t fg = 0;
            for (size_t i = 0; i < plane; i++) fg += lab.data[z * plane + i] != 0;
            if (fg > best) best = fg, zb = z;
        }
        render(rgb, img.data + zb * plane, lab.data + zb * plane, pred.data + zb * plane, img.ny, img.nx);
        rc = dacl_png_write_rgb(png, 3 * img.nx, img.ny, rgb);
    }
    free(rgb);
    cli_model_close(&cm);
    dacl_volume_free(&img);
    dacl_label_free(&lab);
    dacl_label_free(&pred);
    dacl_dataset_free(&ds);
    return rc;
}

void api_job_sample(Server *s, Request *r) {
    const char *ks = http_param(r, 1);
    char *end;
    long k = strtol(ks, &end, 10);
    if (end == ks || *end || k < 0 || k > 100000) {
        http_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no sample '%s'; samples are 0.png, 1.png, ...", ks);
        return;
    }
    StoreJob j;
    if (!api_load_job(s, r, &j)) return;
    char ckpt[PATH_MAX + 32], png[PATH_MAX + 32];
    if (job_checkpoint(r, &j, ckpt, sizeof ckpt) && busy_enter(s, r)) {
        snprintf(png, sizeof png, "%s/sample-XXXXXX", j.work_dir);
        int fd = mkstemp(png), missing = 0;
        int rc = fd < 0 ? DACL_FAIL(DACL_EIO, "%s: cannot create", png) : sample_png(s, &j, k, ckpt, png, &missing);
        if (fd >= 0) close(fd);
        busy_leave(s);
        if (rc == DACL_OK)
            http_file(r, png, "image/png", NULL); /* inline: the dashboard shows it */
        else if (missing)
            http_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "%s", dacl_error_message());
        else
            http_internal(r);
        if (fd >= 0) unlink(png);
    }
    store_job_clear(&j);
}
