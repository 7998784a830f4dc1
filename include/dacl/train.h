/* The training loop (supervised, CPS and later DACL co-training), its event
 * sink, and checkpoints with exact resume.
 *
 * The engine knows nothing of files beyond its dataset and checkpoints, and
 * nothing of HTTP or SQL: everything a user watches arrives through a
 * DaclSink, called on the training thread between iterations. */
#ifndef DACL_TRAIN_H
#define DACL_TRAIN_H

#include <stdatomic.h>
#include <stddef.h>

#include "dacl/config.h"
#include "dacl/data.h"
#include "dacl/nn.h"

typedef struct {
    long iteration;  /* iterations completed */
    long total;      /* train.iterations */
    double img_per_s; /* over the last interval */
    double eta_s;    /* seconds to the end at that rate */
} DaclProgress;

/* One validation round: per model, per case, per foreground class. */
typedef struct {
    long iteration;
    int model;          /* 0 = model a, 1 = model b */
    int classes;        /* foreground classes = classes - 1 */
    const char *const *class_names; /* [classes] */
    int cases;
    const char *const *case_ids;    /* [cases] */
    const double *dice, *jaccard, *hd95, *asd; /* [cases][classes]; NaN = undefined */
    const double *mean_dice, *mean_jaccard, *mean_hd95, *mean_asd; /* [classes], over cases */
    double mean_fg_dice; /* over classes and cases: what "best" is decided by */
    int is_best;
} DaclEvalRound;

typedef struct {
    void *ctx;
    /* each may be NULL */
    void (*progress)(void *ctx, const DaclProgress *p);
    /* scalar metrics of one iteration: names[i] = values[i] */
    void (*metrics)(void *ctx, long iteration, int n, const char *const *names, const double *values);
    void (*evaluation)(void *ctx, const DaclEvalRound *r);
    /* human-readable notes: "resumed from iteration 500", "checkpoint written" */
    void (*log)(void *ctx, const char *msg);
    /* before checkpoint-last.bin is written at `iteration`: make every metric
     * and evaluation given so far durable, since a run resumed from that
     * checkpoint never repeats them. Non-zero (an error code, with the error
     * set) stops the run with that error, and the previous checkpoint stays. */
    int (*checkpoint)(void *ctx, long iteration);
} DaclSink;

typedef struct DaclTrainer DaclTrainer;

/* Loads the dataset (a folder with a manifest, or phantom:cardiac|abdomen,
 * generated into work_dir/phantom), builds the models and the sampler.
 * work_dir receives checkpoints. */
int dacl_trainer_create(DaclTrainer **out, const DaclJobConfig *cfg, const char *data_root,
                        const char *work_dir);
void dacl_trainer_free(DaclTrainer *t);

/* Restores every piece of state from a checkpoint written by this config
 * (a different config hash is refused). */
int dacl_trainer_resume(DaclTrainer *t, const char *checkpoint);

/* Trains until train.iterations, or until iteration stop_at (> 0) is done,
 * or until *cancel becomes non-zero (checked between iterations). Writes
 * work_dir/checkpoint-last.bin every checkpoint_every iterations and when it
 * stops, checkpoint-best.bin when validation improves. Returns DACL_OK when
 * it reached its end or stop_at, DACL_ECANCELED on cancel, DACL_ENUMERIC
 * when a loss became NaN or infinite (after saving the last good state). */
int dacl_trainer_run(DaclTrainer *t, long stop_at, const atomic_int *cancel, const DaclSink *sink);

long dacl_trainer_iteration(const DaclTrainer *t);

/* Where this trainer's iterations spent their time (wall seconds, summed
 * over the iterations this process ran): drawing batches, the U-Nets'
 * forwards with each one's supervised loss (they run side by side when two
 * models split an even thread count), the cross losses, the contrastive module (its
 * loss with the heads' backward, the heads' step and the bank), the U-Nets'
 * backward and SGD. */
typedef struct {
    double data, forward, losses, contrast, backward;
    long iterations;
} DaclTiming;
void dacl_trainer_timing(const DaclTrainer *t, DaclTiming *out);
/* Model m (0: a, 1: b) as it is now, e.g. to render samples; NULL if absent. */
DaclUNet *dacl_trainer_model(DaclTrainer *t, int m);
/* Validation on every model now (also run by dacl_trainer_run). */
int dacl_trainer_validate(DaclTrainer *t, const DaclSink *sink);

/* ------------------------------------------------------- checkpoints -- */

#define DACL_CHECKPOINT_VERSION 2 /* 2 adds the contrastive state; 1 is still read */
#define DACL_CKPT_MAX_MODELS 2

typedef struct {
    int models;            /* 1 (supervised) or 2 (cps, dacl) */
    long iteration;        /* iterations completed */
    long best_iteration;   /* of the best validation so far, -1: none */
    double best_dice;      /* its mean foreground Dice */
    int best_model;        /* which model scored it */
    char config_hash[17];  /* dacl_config_hash of the job */
    char *config_json;     /* the job config (malloc'd when read) */
    DaclSamplerState sampler;
    /* method = dacl: the contrastive module's state (dacl_contrast_state_*),
     * caller-owned when written, malloc'd when read; NULL/0 otherwise */
    unsigned char *contrast;
    size_t contrast_bytes;
} DaclCheckpoint;

/* Writes the run state and every model (parameters, momentum, BN statistics)
 * to path atomically (temporary file, fsync, rename). */
int dacl_checkpoint_write(const char *path, const DaclCheckpoint *ck, DaclUNet *const *models);
/* Reads a checkpoint; models (may be NULL: header only) receive ck->models new
 * U-Nets planned for max_n images of h x w (0, 0: the saved patch). Truncated,
 * corrupt, foreign or newer files are DACL_EFORMAT naming the path; nothing
 * is returned half-read. */
int dacl_checkpoint_read(const char *path, DaclCheckpoint *ck, DaclUNet **models, int max_n, int h,
                         int w);
void dacl_checkpoint_free(DaclCheckpoint *ck);
/* SHA-256 over every model's parameters then BN statistics, in order. */
int dacl_checkpoint_weights_sha256(DaclUNet *const *models, int n, char out[65]);

#endif
