/* data-bench: the data stage's speed figures for BENCHMARKS.md.
 *   data-bench [ACDC_DIR]   (default ../shared/data/acdc)
 * 1. init a manifest for the SSL4MIS HDF5 folder (into /tmp) and load every
 *    volume of every split through it, normalised as training does;
 * 2. HD95 and ASD of a 256x256x20 volume pair (random ellipsoids), best of 5. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dacl/data.h"
#include "dacl/error.h"
#include "dacl/eval.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int load_all(const char *dir) {
    char manifest[] = "/tmp/data-bench-XXXXXX";
    int fd = mkstemp(manifest);
    if (fd < 0) return 1;
    close(fd);
    char msg[512];
    double t0 = now();
    if (dacl_dataset_init(dir, manifest, 1, msg, sizeof msg)) {
        fprintf(stderr, "data-bench: %s\n", msg);
        unlink(manifest);
        return 1;
    }
    double t1 = now();
    DaclDataset ds = {0};
    if (dacl_dataset_load(manifest, &ds)) {
        fprintf(stderr, "data-bench: %s\n", dacl_error_message());
        unlink(manifest);
        return 1;
    }
    size_t voxels = 0;
    int n = 0;
    const DaclSplit *splits[3] = {&ds.train, &ds.val, &ds.test};
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < splits[s]->n; i++) {
            DaclVolume img = {0};
            DaclLabelVolume lab = {0};
            if (dacl_dataset_load_case(&ds, &splits[s]->cases[i], &img, &lab)) {
                fprintf(stderr, "data-bench: %s\n", dacl_error_message());
                return 1;
            }
            voxels += dacl_volume_numel(&img);
            n++;
            dacl_volume_free(&img);
            dacl_label_free(&lab);
        }
    double t2 = now();
    printf("{\"bench\": \"load\", \"dataset\": \"%s\", \"volumes\": %d, \"voxels\": %zu, "
           "\"init_s\": %.3f, \"load_s\": %.3f}\n",
           dir, n, voxels, t1 - t0, t2 - t1);
    dacl_dataset_free(&ds);
    unlink(manifest);
    return 0;
}

static void ellipsoid(uint8_t *v, int nz, int ny, int nx, double cz, double cy, double cx, double rz,
                      double ry, double rx, uint8_t label) {
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                double a = (z - cz) / rz, b = (y - cy) / ry, c = (x - cx) / rx;
                if (a * a + b * b + c * c <= 1.0) v[((size_t)z * ny + y) * nx + x] = label;
            }
}

static int hd95_bench(void) {
    const int nz = 20, ny = 256, nx = 256;
    size_t n = (size_t)nz * ny * nx;
    uint8_t *a = calloc(n, 1), *b = calloc(n, 1);
    if (!a || !b) return 1;
    ellipsoid(a, nz, ny, nx, 10, 128, 128, 8, 60, 50, 1);
    ellipsoid(b, nz, ny, nx, 10.5, 131, 125, 7.5, 57, 54, 1);
    DaclClassMetrics m;
    const double spacing[3] = {10.0, 1.5, 1.5};
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        if (dacl_metrics_volume(a, b, nz, ny, nx, spacing, 2, &m)) return 1;
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("{\"bench\": \"hd95\", \"shape\": [%d, %d, %d], \"hd95_mm\": %.4f, \"asd_mm\": %.4f, "
           "\"best_of_5_ms\": %.1f}\n",
           nz, ny, nx, m.hd95, m.asd, best * 1e3);
    free(a);
    free(b);
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "../shared/data/acdc";
    int rc = access(dir, R_OK) == 0 ? load_all(dir) : (fprintf(stderr, "data-bench: %s absent, skipping the load figure\n", dir), 0);
    return rc | hd95_bench();
}
