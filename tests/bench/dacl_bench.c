/* dacl-bench: images/s of one U-Net forward (eval) or training step
 * (forward, 0.5*(CE+Dice), backward, SGD) at a given batch, patch and
 * thread count. Prints one JSON line on stdout (the same keys as
 * torch_peer.py) and a per-phase breakdown on stderr.
 *
 *   dacl-bench --mode forward|train --batch N --patch P --threads T --iters K --warmup W */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "dacl/error.h"
#include "dacl/nn.h"

#define CLASSES 4
#define FWD_GFLOP_256 5.90 /* per image at 256x256, the figure torch_peer.py uses */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* CPU seconds of the whole process (all threads): on a shared machine wall
 * time includes the waits for a core, CPU time mostly does not */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int arg_int(int argc, char **argv, const char *name, int def) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return atoi(argv[i + 1]);
    return def;
}

static const char *arg_str(int argc, char **argv, const char *name, const char *def) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return def;
}

int main(int argc, char **argv) {
    const char *mode = arg_str(argc, argv, "--mode", "train");
    int batch = arg_int(argc, argv, "--batch", 8), patch = arg_int(argc, argv, "--patch", 256);
    int threads = arg_int(argc, argv, "--threads", 2), iters = arg_int(argc, argv, "--iters", 3);
    int warmup = arg_int(argc, argv, "--warmup", 1);
    int train = !strcmp(mode, "train");
    if (!train && strcmp(mode, "forward")) {
        fprintf(stderr, "dacl-bench: --mode is forward or train\n");
        return 2;
    }

    DaclUNetConfig cfg = dacl_unet_default_config(1, CLASSES);
    DaclUNet *m;
    if (dacl_unet_create(&m, &cfg, batch, patch, patch)) {
        fprintf(stderr, "dacl-bench: %s\n", dacl_error_message());
        return 1;
    }
    DaclPool *pool;
    if (dacl_pool_create(&pool, threads) || dacl_unet_set_pool(m, pool)) {
        fprintf(stderr, "dacl-bench: %s\n", dacl_error_message());
        return 1;
    }
    DaclRng rng;
    dacl_rng_seed(&rng, 42);
    dacl_unet_init(m, &rng);
    size_t px = (size_t)batch * patch * patch;
    float *x = malloc(px * sizeof(float));
    uint8_t *y = malloc(px);
    float *probs = malloc(px * CLASSES * sizeof(float));
    float *dlogits = malloc(px * CLASSES * sizeof(float));
    if (!x || !y || !probs || !dlogits) return 1;
    for (size_t i = 0; i < px; i++) {
        x[i] = dacl_rng_uniform(&rng);
        y[i] = (uint8_t)dacl_rng_below(&rng, CLASSES);
    }

    double t_fwd = 0, t_loss = 0, t_bwd = 0, t_sgd = 0, t0 = 0, c0 = 0;
    for (int it = 0; it < warmup + iters; it++) {
        if (it == warmup) t_fwd = t_loss = t_bwd = t_sgd = 0, t0 = now(), c0 = cpu_now();
        double a = now();
        if (dacl_unet_forward(m, x, batch, train, (uint64_t)it)) return 1;
        double b = now();
        t_fwd += b - a;
        if (!train) continue;
        memset(dlogits, 0, px * CLASSES * sizeof(float));
        dacl_softmax_forward(probs, dacl_unet_logits(m), batch, CLASSES, patch * patch);
        dacl_ce_loss(dlogits, probs, y, batch, CLASSES, patch * patch, 0.5f);
        dacl_dice_loss(dlogits, probs, y, batch, CLASSES, patch * patch, 0.5f);
        double c = now();
        t_loss += c - b;
        dacl_unet_zero_grad(m);
        if (dacl_unet_backward(m, dlogits, NULL, 0)) return 1;
        double d = now();
        t_bwd += d - c;
        dacl_unet_sgd_step(m, 0.01f, 0.9f, 1e-4f);
        t_sgd += now() - d;
    }
    double sec = (now() - t0) / iters, cpu = (cpu_now() - c0) / iters;
    double ips = batch / sec;
    double gflop = FWD_GFLOP_256 * ((double)patch * patch / (256.0 * 256.0)) * (train ? 3 : 1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "dacl-bench: per iteration forward %.3f s, loss %.3f s, backward %.3f s, sgd %.3f s\n",
            t_fwd / iters, t_loss / iters, t_bwd / iters, t_sgd / iters);
    printf("{\"impl\": \"dacld\", \"allocator\": \"planned\", \"mode\": \"%s\", \"batch\": %d, "
           "\"patch\": %d, \"threads\": %d, \"iters\": %d, \"seconds_per_iter\": %.4f, "
           "\"img_per_s\": %.3f, \"gflops\": %.1f, \"peak_rss_mb\": %.1f, \"cpu_s_per_iter\": %.4f}\n",
           mode, batch, patch, threads, iters, sec, ips, ips * gflop, ru.ru_maxrss / 1024.0, cpu);
    free(x);
    free(y);
    free(probs);
    free(dlogits);
    dacl_unet_free(m);
    dacl_pool_free(pool);
    return 0;
}
