/* Helpers shared by the data stage's readers and writers; not part of the public API. */
#ifndef DACL_DATA_INTERNAL_H
#define DACL_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dacl/data.h"
#include "dacl/fileio.h"

/* Largest volume we accept from a file: 2^31 voxels (8 GiB of float32); anything bigger is a
 * corrupt header, not a medical image. */
#define DACL_MAX_VOXELS ((int64_t)1 << 31)

/* 1 if `s` ends with `suffix`, ignoring ASCII case. */
int dacl_has_suffix(const char *s, const char *suffix);

/* buf[n] = "a/b"; DACL_EINVAL if it does not fit. */
int dacl_path_join(char *buf, size_t n, const char *a, const char *b);

/* DACL_OK if `path` names a readable regular file; else DACL_ENOTFOUND / DACL_EIO naming it. */
int dacl_file_check(const char *path);

/* Check a shape read from a file header: every dimension >= 1 and the total within
 * DACL_MAX_VOXELS; DACL_EFORMAT naming `path` otherwise. */
int dacl_shape_check(const char *path, int64_t nz, int64_t ny, int64_t nx);

/* The class value of a stored label value under `rm` (may be NULL): its pair's `to`, else the
 * value itself if it is an integer in 0..255, else -1. */
int dacl_label_value(const DaclLabelRemap *rm, double v);

/* Convert n stored label values held as doubles to class values, refusing (DACL_EFORMAT, naming
 * `path`) any that is not an integer in 0..255 after the remap. */
int dacl_labels_from_double(const char *path, const double *src, size_t n, uint8_t *dst,
                            const DaclLabelRemap *rm);
/* Apply rm in place to labels read as uint8 (nothing to check: every value maps somewhere). */
void dacl_labels_remap_u8(const DaclLabelRemap *rm, uint8_t *data, size_t n);

/* The readers with a label remap (the public ones pass NULL). */
int dacl_h5_read_remap(const char *path, DaclVolume *img, DaclLabelVolume *lab, const DaclLabelRemap *rm);
int dacl_nifti_read_label_remap(const char *path, DaclLabelVolume *lab, const DaclLabelRemap *rm);
int dacl_png_read_label_remap(const char *path, DaclLabelVolume *lab, const DaclLabelRemap *rm);

/* Atomic writes: DaclTmpFile in dacl/fileio.h. */

/* ---- manifest building (dataset.c), shared with dataset_init.c ---- */

/* strdup that passes NULL through (and returns NULL when out of memory). */
char *dacl_strdup_or_null(const char *s);
/* The patient a case id belongs to: the id less a trailing "_frame<digits>" (malloc'd). */
char *dacl_patient_of(const char *id);
/* Append a case (strings copied; patient NULL = dacl_patient_of(id); label may be NULL). */
int dacl_split_add(DaclSplit *s, const char *id, const char *patient, const char *image, const char *label);
/* The intensity handling a modality gets by default: CT clips to [-75, 275] HU; both min-max. */
void dacl_intensity_default(DaclModality m, DaclIntensity *in);
/* Read a whole text file (NUL-terminated, malloc'd) of at most `max` bytes. */
int dacl_read_text(const char *path, long max, char **out);

/* The opaque NIfTI header (nifti.c): copy and free. */
DaclNiftiHeader *dacl_nifti_header_clone(const DaclNiftiHeader *h);
void dacl_nifti_header_free(DaclNiftiHeader *h);

#endif
