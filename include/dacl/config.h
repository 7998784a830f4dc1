/* The job config: the body of POST /api/v1/jobs and the file `dacld train`
 * reads. Every field has a default (the paper's value, method.md); unknown
 * fields, wrong types and out-of-range values are rejected with a message
 * that names the field ("method.tau: must be in (0, 10], got -1"). */
#ifndef DACL_CONFIG_H
#define DACL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define DACL_MAX_KNN 4
#define DACL_CONFIG_STR 256

typedef enum { DACL_METHOD_SUPERVISED, DACL_METHOD_CPS, DACL_METHOD_DACL } DaclMethodName;
typedef enum { DACL_SCHED_CONSTANT, DACL_SCHED_RAMP } DaclCrossSchedule;
typedef enum { DACL_SAMPLING_DENSITY, DACL_SAMPLING_RANDOM } DaclSampling;
typedef enum { DACL_POS_WEIGHTED, DACL_POS_NONE, DACL_POS_LITERAL } DaclPositiveness;
typedef enum { DACL_GRAN_PIXEL, DACL_GRAN_PROTOTYPE } DaclGranularity;
typedef enum { DACL_NEG_PIXELS, DACL_NEG_ANCHORS } DaclNegSource;

typedef struct {
    char name[DACL_CONFIG_STR];
    struct {
        char path[DACL_CONFIG_STR]; /* a folder under the data root, or phantom:cardiac|abdomen */
        int labeled;                /* labeled patients (cases for datasets without patients) */
        int split_seed;             /* reserved for random labeled splits; 0 = the manifest's order */
    } dataset;
    struct {
        DaclMethodName name;
        double lambda_cross;
        DaclCrossSchedule cross_schedule;
        int cross_on_labeled;
        double tau;
        int anchors, pos_keys, neg_keys, bank_size, bank_insert;
        int knn[DACL_MAX_KNN];
        int nknn;
        double phi;
        int feature_layer; /* DACL_FEAT_* of nn.h */
        int proj_dim;
        DaclSampling sampling;
        int multiscale, bank;
        DaclPositiveness positiveness;
        DaclGranularity granularity;
        DaclNegSource neg_source;
        int cl_warmup;
        int cl_background;
        int max_pixels;
        double lambda_cl; /* the peak of the Gaussian warm-up, 0.1 in the paper */
    } method;
    struct {
        int iterations, batch, labeled_batch;
        int patch[2]; /* H, W */
        double lr, momentum, weight_decay;
        uint64_t seed;
        int threads;
        int val_every, checkpoint_every;
    } train;
} DaclJobConfig;

/* The defaults (the paper's values; dataset phantom:cardiac with 2 labeled). */
void dacl_config_defaults(DaclJobConfig *cfg);

/* Parses and validates a JSON job config. On failure returns DACL_EINVAL
 * and, when field is non-NULL, writes the dotted path of the offending field
 * ("train.patch") into field (n bytes); the message is in dacl_error_message(). */
int dacl_config_parse(const char *json, DaclJobConfig *cfg, char *field, size_t n);

/* The full config (every field, defaults filled in) as JSON; caller frees. */
char *dacl_config_to_json(const DaclJobConfig *cfg);

/* A hash of everything that changes what training computes (all fields but
 * name, threads, val_every and checkpoint_every), as 16 hex digits + NUL. */
void dacl_config_hash(const DaclJobConfig *cfg, char out[17]);

const char *dacl_method_name(DaclMethodName m);

#endif
