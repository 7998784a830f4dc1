/* The data stage, part 1: volumes in memory, their readers and writers (HDF5, NIfTI, PNG) and the
 * dataset manifest.
 *
 * Axis order. Every volume in memory is a stack of 2D slices in C order (Z, H, W), slowest to
 * fastest: voxel (z, y, x) is data[(z * ny + y) * nx + x]. Training cuts volumes into (H, W)
 * slices, so Z is always the slice axis.
 *
 *   - SSL4MIS HDF5 stores (Z, H, W) already: read as is. A 2D dataset (H, W) becomes Z = 1.
 *   - NIfTI stores voxel (i, j, k) with i fastest on disk. We map k -> Z, j -> H, i -> W, which
 *     is exactly the on-disk byte order read as a C array [k][j][i]: no transpose, and writing
 *     back is the identity too, so a label map written "like" a NIfTI input lines up voxel for
 *     voxel with it under the input's own qform/sform. CHAOS's README calls its files (H, W, Z)
 *     = (256, 256, Z): that is nibabel's (i, j, k) view; in our (Z, H, W) a slice is [k][j][i],
 *     the transpose of nibabel's img[:, :, k]. Segmentation does not care, as long as image and
 *     label go through the same mapping (they do) and the output is written back through it.
 *   - PNG is one (H, W) slice: Z = 1.
 *
 * Spacing is in mm in the same (z, y, x) order: for NIfTI (pixdim[3], pixdim[2], pixdim[1]).
 *
 * Errors follow dacl/error.h: every function returns DACL_OK or a DACL_E* code and records a
 * message that starts with the file's path and says why. On failure an output volume or dataset
 * is left exactly as it was (readers build into a local copy and hand it over at the end), and
 * writers never leave a half-written file under the final name (temporary file + rename). */
#ifndef DACL_DATA_H
#define DACL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "dacl/nn.h" /* DaclRng, DaclPool */

/* ---- formats ---- */

typedef enum {
    DACL_FMT_UNKNOWN = 0,
    DACL_FMT_H5,    /* .h5, .hdf5: SSL4MIS, datasets `image` and `label` in one file */
    DACL_FMT_NIFTI, /* .nii, .nii.gz: NIfTI-1 or -2, image and label in separate files */
    DACL_FMT_PNG    /* .png: one 2D slice */
} DaclFormat;

/* The format a path's extension names (case-insensitive); DACL_FMT_UNKNOWN if none. */
DaclFormat dacl_format_from_path(const char *path);
/* "h5", "nifti", "png" (the manifest's spelling), or "unknown". */
const char *dacl_format_name(DaclFormat fmt);
/* Parse the manifest's spelling; DACL_FMT_UNKNOWN if it is none of them. */
DaclFormat dacl_format_parse(const char *name);

/* ---- volumes ---- */

/* A NIfTI header kept from a file we read, so that a label map written for that file keeps its
 * dimensions' meaning, pixdim, qform/sform, units and NIfTI version. Opaque; owned by the volume
 * that carries it and freed with it. */
typedef struct DaclNiftiHeader DaclNiftiHeader;

/* An image volume: float32 (Z, H, W). Zero-initialise (`DaclVolume v = {0};`) before first use. */
typedef struct {
    int nz, ny, nx;
    float *data;            /* [nz][ny][nx] */
    double spacing[3];      /* voxel size in mm, (z, y, x); meaningful only if has_spacing */
    int has_spacing;
    DaclFormat format;      /* the format it was read from (DACL_FMT_UNKNOWN if built in memory) */
    DaclNiftiHeader *nifti; /* the source header if read from NIfTI, else NULL */
} DaclVolume;

/* A label map of the same geometry: uint8 class indices (Z, H, W). Zero-initialise too. */
typedef struct {
    int nz, ny, nx;
    uint8_t *data; /* [nz][ny][nx] */
    double spacing[3];
    int has_spacing;
    DaclFormat format;
    DaclNiftiHeader *nifti;
} DaclLabelVolume;

/* Allocate a zero-filled volume of (nz, ny, nx) into *v (freed first if it held data). */
int dacl_volume_alloc(DaclVolume *v, int nz, int ny, int nx);
/* Free a volume's data and header and zero it; safe on a zeroed or already-freed volume. */
void dacl_volume_free(DaclVolume *v);
int dacl_label_alloc(DaclLabelVolume *l, int nz, int ny, int nx);
void dacl_label_free(DaclLabelVolume *l);
/* Number of voxels nz*ny*nx. */
size_t dacl_volume_numel(const DaclVolume *v);
size_t dacl_label_numel(const DaclLabelVolume *l);
/* Give `dst` the geometry of `src`: spacing, format and a copy of the NIfTI header (dst's shape
 * must already equal src's). Used to write a prediction "like" its input. */
int dacl_label_copy_geometry(DaclLabelVolume *dst, const DaclVolume *src);
/* DACL_EFORMAT (naming both paths) unless image and label have the same (Z, H, W). */
int dacl_volume_check_pair(const DaclVolume *img, const DaclLabelVolume *lab, const char *img_path,
                           const char *lab_path);

/* Intensity handling, from the manifest: optionally clip to [clip_lo, clip_hi] (CT's HU window),
 * then optionally min-max scale the whole volume to [0, 1] (a constant volume becomes 0). */
typedef struct {
    int clip;
    double clip_lo, clip_hi;
    int minmax;
} DaclIntensity;

/* Apply `in` to v in place. DACL_ENUMERIC if v holds a NaN or infinity. */
int dacl_volume_normalize(DaclVolume *v, const DaclIntensity *in);

/* ---- generic I/O: dispatch on the path's extension ---- */

/* Read the image of a file: HDF5 dataset `image`, a NIfTI volume, or a PNG slice. */
int dacl_volume_load(const char *path, DaclVolume *img);
/* Read a label map: HDF5 dataset `label`, a NIfTI volume or a PNG slice; values must be integers
 * in 0..255. */
int dacl_label_load(const char *path, DaclLabelVolume *lab);

/* A manifest's label remap: stored value -> class value, pairs sorted by `from`. Applied while a
 * label map is read, before the 0..255 check, so stored values may be up to 65535 (MS-CMR stores
 * 200, 500, 600 in uint16); values without a pair are kept. */
typedef struct {
    int32_t from; /* 0..65535 */
    uint8_t to;
} DaclRemapPair;

typedef struct {
    DaclRemapPair *pairs;
    int n;
} DaclLabelRemap;

/* dacl_label_load with a remap (NULL or n = 0: none). */
int dacl_label_load_remap(const char *path, const DaclLabelRemap *remap, DaclLabelVolume *lab);
/* Write a label map in the format of `path`'s extension (or, if it has none we know, of
 * like->format / lab->format). `like` (may be NULL) is the input the labels belong to: NIfTI takes
 * its header (else lab's own, else one built from the spacing); HDF5 copies its data as `image`;
 * PNG needs Z = 1. */
int dacl_label_write(const char *path, const DaclLabelVolume *lab, const DaclVolume *like);

/* ---- HDF5 (SSL4MIS) ---- */

/* Read `image` into img and/or `label` into lab (either may be NULL) from one file. `image` may be
 * any float or integer type (converted to float32); `label` any integer type, or float holding
 * integers, in 0..255. Both must be (Z, H, W) or (H, W); if both are read their shapes must match. */
int dacl_h5_read(const char *path, DaclVolume *img, DaclLabelVolume *lab);
/* Write `image` (float32) and/or `label` (uint8), either may be NULL but not both, same shape;
 * chunked by slice, gzip'd. Replaces `path`. */
int dacl_h5_write(const char *path, const DaclVolume *img, const DaclLabelVolume *lab);

/* ---- NIfTI (libnifti2: NIfTI-1 and -2, .nii and .nii.gz) ---- */

/* Read a 3D (or 2D) NIfTI of any numeric type, applying scl_slope/scl_inter (slope 0 = none).
 * A 4th dimension is accepted only if it is 1. Keeps the header in img->nifti. */
int dacl_nifti_read(const char *path, DaclVolume *img);
/* Read a label map of any numeric type: the values (after scl_slope/scl_inter, as for images)
 * must be integers in 0..255. Keeps the header in lab->nifti. */
int dacl_nifti_read_label(const char *path, DaclLabelVolume *lab);
/* Write lab as uint8. The header is a copy of hdr's (NULL: lab->nifti's; neither: a fresh one
 * with lab's spacing and no orientation), with datatype, scaling and calibration reset; its
 * (i, j, k) dimensions must equal lab's (W, H, Z). gzip if `path` ends in .gz. Header
 * extensions are not copied. */
int dacl_nifti_write_label(const char *path, const DaclLabelVolume *lab, const DaclNiftiHeader *hdr);
/* Write an image as float32, header as for dacl_nifti_write_label (hdr, else img->nifti, else a
 * fresh one with img's spacing), without scaling; intent none. */
int dacl_nifti_write_image(const char *path, const DaclVolume *img, const DaclNiftiHeader *hdr);

/* ---- PNG (libpng) ---- */

/* Read one slice as an image (Z = 1): 8/16-bit grey kept as values 0..255 / 0..65535 (not
 * scaled), 1/2/4-bit grey expanded to 0..255, RGB and palette converted to grey, alpha dropped. */
int dacl_png_read(const char *path, DaclVolume *img);
/* Read one slice as a label map: grey (1..16 bit) values as they are (16-bit ones must be
 * <= 255), palette images as their palette indices. RGB is refused (no class mapping). */
int dacl_png_read_label(const char *path, DaclLabelVolume *lab);
/* Write an 8-bit grey image or label map, px[h][w]. */
int dacl_png_write_gray(const char *path, int w, int h, const uint8_t *px);
/* Write an 8-bit RGB image, rgb[h][w][3] (overlays for the dashboard). */
int dacl_png_write_rgb(const char *path, int w, int h, const uint8_t *rgb);

/* ---- dataset manifest ---- */

/* File names of the manifest in a dataset folder. dacl_dataset_load(dir) reads
 * DACL_MANIFEST_ALT ("dacl-dataset.json") if it exists, else DACL_MANIFEST ("dataset.json").
 * Why two: an nnU-Net raw folder already has its own dataset.json, which we must not destroy and
 * cannot reuse (other schema). dacl_dataset_init writes dacl-dataset.json for nnU-Net folders,
 * leaving theirs untouched, and dataset.json for the other layouts; since our file is looked for
 * first, an nnU-Net folder loads ours, and loading a folder that only has nnU-Net's gives an error
 * that says to run `dacld dataset init`. */
#define DACL_MANIFEST "dataset.json"
#define DACL_MANIFEST_ALT "dacl-dataset.json"

typedef enum { DACL_MRI = 0, DACL_CT } DaclModality;

/* One case: paths are relative to the dataset root (for h5, image == label: one file). */
typedef struct {
    char *id;      /* unique across all splits, e.g. "patient099_frame01" */
    char *patient; /* the unit of the labeled split; "patient099" for ACDC frames, else == id */
    char *image;
    char *label; /* NULL: no label (train: always unlabeled; test: predict only; never in val) */
} DaclCase;

typedef struct {
    DaclCase *cases;
    int n;
} DaclSplit;

typedef struct {
    char *name;
    int value; /* 0..255 */
} DaclLabelName;

/* The manifest as JSON (every field but `name`, `format`, `labels`, `splits` optional):
 *   {"name": "acdc", "modality": "MRI" | "CT", "format": "h5" | "nifti" | "png",
 *    "labels": {"background": 0, "RV": 1, ...},
 *    "label_remap": {"200": 1, "500": 2},       stored value (0..65535) -> class value, on load
 *    "intensity": {"clip": [-75, 275] | null, "minmax": true},
 *                                                default: CT clips to [-75, 275], MRI does not
 *    "spacing": [z, y, x],                       mm, overrides what the files say
 *    "root": "/abs/or/relative/dir",             where case paths start (default: the manifest's
 *                                                folder; relative = to the manifest's folder)
 *    "splits": {"train": [{"id", "patient"?, "image", "label"?}, ...], "val": [...], "test": [...]},
 *    "label_order": ["case id", ...]}            training cases to label first
 * Unknown fields are rejected, naming the field. */
typedef struct {
    char *name;
    DaclModality modality;
    DaclFormat format;
    DaclLabelName *labels; /* sorted by value */
    int n_labels;
    DaclLabelRemap remap; /* n = 0: none */
    DaclIntensity intensity;
    double spacing[3];
    int has_spacing;
    char *root_field; /* "root" as written in the manifest, or NULL */
    char *root;       /* the resolved folder case paths are relative to */
    DaclSplit train, val, test;
    char **label_order; /* case ids of train */
    int n_label_order;
} DaclDataset;

/* Parse and validate manifest text. `manifest_dir` resolves "root" (and is the root without it).
 * `what` names the source in error messages (a path). *ds must be zeroed or freed. */
int dacl_dataset_parse(const char *json, const char *manifest_dir, const char *what, DaclDataset *ds);
/* Load a manifest file, or a dataset folder (see DACL_MANIFEST_ALT above). */
int dacl_dataset_load(const char *path, DaclDataset *ds);
/* The manifest as JSON text (malloc'd; NULL only when out of memory). */
char *dacl_dataset_to_json(const DaclDataset *ds);
/* Write the manifest to `path`; DACL_EEXIST if it exists and !force. */
int dacl_dataset_write(const DaclDataset *ds, const char *path, int force);
void dacl_dataset_free(DaclDataset *ds);

/* Recognise the layout of `dir` and write a manifest for it:
 *   (a) SSL4MIS HDF5: volumes/<id>.h5 with train.list / val.list (/ test.list), one id a line;
 *       label_order = train.list's order; `patient` = the id less a trailing "_frameNN".
 *   (b) nnU-Net raw: imagesTr/<case>_0000.nii.gz + labelsTr/<case>.nii.gz and nnU-Net's own
 *       dataset.json (v1 or v2; labels and modality taken from it); imagesTs -> test, unlabeled.
 *   (c) flat NIfTI: images/<case>.nii[.gz] + labels/<case>.nii[.gz] (CHAOS).
 * For (b) and (c), which have no validation split, every 5th case (sorted by id, the 5th, 10th,
 * ...) goes to val, so val spans the whole range; modality is MRI unless nnU-Net says CT; label
 * names not given by the layout are found by scanning the label files ("class1", ...).
 * The manifest goes to `out_path` if given (a file path; its folder must exist; "root" then points
 * back at `dir`), else into `dir` (DACL_MANIFEST, or DACL_MANIFEST_ALT for nnU-Net). Refuses to
 * overwrite an existing manifest unless `force`, and never overwrites nnU-Net's dataset.json.
 * `out_msg` (may be NULL) receives a one-line human summary or, on failure, the reason. */
int dacl_dataset_init(const char *dir, const char *out_path, int force, char *out_msg, size_t n);

/* Number of distinct patients in the train split. */
int dacl_dataset_train_patients(const DaclDataset *ds);
/* Which training cases are labeled when `n_patients` patients are: all cases (with a label) of the
 * first n_patients patients in label_order (patients in order of first appearance; patients not in
 * label_order follow in train order). labeled[train.n] gets 1/0; *n_cases (may be NULL) the count.
 * DACL_EINVAL if n_patients is negative or exceeds the labeled patients there are. */
int dacl_dataset_labeled(const DaclDataset *ds, int n_patients, uint8_t *labeled, int *n_cases);
/* The case's file path under the dataset root, into buf[n]. */
int dacl_dataset_path(const DaclDataset *ds, const char *rel, char *buf, size_t n);
/* Load one case ready for training: image (and, if lab is not NULL and the case has one, label),
 * same shape checked, label_remap applied and every label value checked against `labels`, the
 * spacing override applied, intensity normalised. lab is left zeroed for an unlabeled case. */
int dacl_dataset_load_case(const DaclDataset *ds, const DaclCase *c, DaclVolume *img,
                           DaclLabelVolume *lab);

/* ---- Slices and augmentation ---- */

/* Training works on 2D slices (method.md §4): every volume of a set of cases is cut along Z into
 * (H, W) slices at their native size, held in memory once, and each sample is augmented and
 * resized to the patch when a batch is drawn, as SSL4MIS's RandomGenerator does. */

/* The label of every pixel of a slice whose case has no label map. It is >= any class count, so
 * dacl_ce_loss ignores it. */
#define DACL_LABEL_NONE 255

typedef struct {
    size_t offset;  /* of the slice's first pixel in DaclSliceSet.image and .label */
    int h, w;       /* native size */
    int case_index; /* the case's index in the split the set was built from */
    int z;          /* the slice's index in its volume */
    int has_label;  /* 0: the case has no label map; its label pixels are DACL_LABEL_NONE */
} DaclSlice;

/* Every slice of a set of cases: images (as dacl_dataset_load_case returns them, normalised) in
 * one float block, labels in one uint8 block, slice after slice, each (h, w) row-major. Zero-
 * initialise before use. 5 bytes a pixel: ACDC's 140 training volumes are 1312 slices of 154x224
 * up to 512x428, 72.1 M pixels, so the labeled and unlabeled sets together take 361 MB. */
typedef struct {
    int n;                     /* slices */
    int max_h, max_w;          /* the largest native H and W */
    size_t numel;              /* pixels, all slices */
    float *image;              /* [numel] */
    uint8_t *label;            /* [numel] */
    DaclSlice *slices;         /* [n] */
    size_t cap_px, cap_slices; /* allocated, for appending */
} DaclSliceSet;

/* Append every Z slice of img and of lab (same shape; NULL: no label map) to the set, tagged
 * case_index. On failure the set is as it was. */
int dacl_slices_add_volume(DaclSliceSet *set, const DaclVolume *img, const DaclLabelVolume *lab,
                           int case_index);
/* Load, with dacl_dataset_load_case, the cases of `split` (one of ds's) whose mask entry equals
 * `select` (mask NULL: every case) and append their slices. The trainer builds two sets from
 * dacl_dataset_labeled's mask: select 1 the labeled cases, select 0 the unlabeled ones. The label
 * maps of unlabeled cases are kept when they exist (1 byte a pixel, for diagnostics such as the
 * accuracy of pseudo-labels); no loss may use them. On failure the set is freed. */
int dacl_slices_load(DaclSliceSet *set, const DaclDataset *ds, const DaclSplit *split,
                     const uint8_t *mask, int select);
void dacl_slices_free(DaclSliceSet *set);

/* Nearest-neighbour resize exactly as scipy.ndimage.zoom(in, (oh/ih, ow/iw), order=0) (scipy
 * 1.10: grid_mode False, mode 'constant'), which SSL4MIS uses in training and inference. Along
 * each axis output index k reads input floor(k*z + 0.5), z = (in-1)/(out-1) in double (1 when
 * out = 1). Where k*z rounds above in-1 (22 -> 154 at k = 153, 256 -> 12 at k = 11) scipy
 * fills the row or column with 0, and so do these. in (ih, iw), out (oh, ow), row-major. */
void dacl_resize_nearest_f32(float *out, int oh, int ow, const float *in, int ih, int iw);
void dacl_resize_nearest_u8(uint8_t *out, int oh, int ow, const uint8_t *in, int ih, int iw);

/* One sample's augmentation (SSL4MIS RandomGenerator), drawn or given. */
typedef enum { DACL_AUG_NONE = 0, DACL_AUG_ROT_FLIP, DACL_AUG_ROTATE } DaclAugKind;
typedef struct {
    int kind;  /* DaclAugKind */
    int k;     /* ROT_FLIP: np.rot90(x, k), k in 0..3, counter-clockwise in (H, W) */
    int axis;  /* ROT_FLIP: then np.flip(x, axis), 0 (H) or 1 (W); -1: no flip (not drawn) */
    int angle; /* ROTATE: degrees in -90..90 (drawn in -20..19) */
} DaclAug;

/* Draw as RandomGenerator: with p = .5 ROT_FLIP (k uniform in 0..3, axis in 0..1), else with
 * p = .5 ROTATE (angle uniform in -20..19), else NONE. */
void dacl_aug_draw(DaclAug *a, DaclRng *r);
/* Augment one slice and resize it to the patch: oimg / olab (ph, pw) from img / lab (h, w);
 * either pair may be NULL. ROT_FLIP is np.flip(np.rot90(x, k), axis); ROTATE is
 * scipy.ndimage.rotate(x, angle, order=0, reshape=False) (about the centre, zero fill); then
 * dacl_resize_nearest from the augmented size (H and W swapped by an odd k) to (ph, pw). Equal
 * bit for bit to SSL4MIS on scipy 1.10 (tests/reference/make_resize_fixtures.py), as one gather
 * with no intermediate image. DACL_EINVAL for a bad draw or size. */
int dacl_aug_apply(const DaclAug *a, float *oimg, uint8_t *olab, int ph, int pw, const float *img,
                   const uint8_t *lab, int h, int w);

/* ---- Sampler ---- */

/* Batches from two streams, SSL4MIS's TwoStreamBatchSampler made checkpointable: a batch is
 * labeled_batch slices of the labeled set followed by batch - labeled_batch slices of the
 * unlabeled set (SSL4MIS: 12 + 12). Each stream walks a random permutation of its slices and
 * takes the next one when it is used up. Permutation e of stream s is a pure function of
 * (seed, s, e), and the augmentation of slot b of batch t one of (seed, t, b), so the whole state
 * is a few counters (DaclSamplerState) and a batch does not depend on the number of threads.
 *
 * Epochs. continuous = 0 follows SSL4MIS: an epoch of the labeled stream is
 * floor(n_labeled / labeled_batch) batches from one permutation, the rest of it dropped; the
 * unlabeled stream runs from permutation to permutation (a batch may span two) and starts a new
 * one with every labeled epoch (SSL4MIS builds both iterators anew per epoch). continuous = 1:
 * both streams run on independently, batches spanning permutations, so every slice appears
 * exactly once in each n consecutive draws of its stream (n = its slices).
 *
 * Without unlabeled slices (fully supervised) labeled_batch must equal batch. */
typedef struct {
    int batch, labeled_batch; /* 1 <= labeled_batch <= batch */
    int ph, pw;               /* patch (SSL4MIS: 256 x 256) */
    uint64_t seed;
    int continuous; /* 0: SSL4MIS epochs (above); 1: streams wrap independently */
    int no_augment; /* 1: resize only */
} DaclSamplerConfig;

#define DACL_SAMPLER_STATE_VERSION 1

/* Everything that changes while sampling, and the configuration it belongs to (checked on
 * restore). Plain data without padding: a checkpoint stores its bytes. */
typedef struct {
    uint32_t version; /* DACL_SAMPLER_STATE_VERSION */
    int32_t continuous, no_augment;
    int32_t batch, labeled_batch, ph, pw;
    int32_t pad_; /* 0 */
    uint64_t seed;
    int64_t n_slices[2]; /* of the labeled, unlabeled set */
    uint64_t iteration;  /* batches drawn so far */
    uint64_t epoch[2];   /* per stream: the permutation being walked */
    uint64_t pos[2];     /* per stream: the next position in it */
} DaclSamplerState;

typedef struct {
    DaclSamplerConfig cfg;
    const DaclSliceSet *set[2]; /* labeled, unlabeled (NULL when batch == labeled_batch) */
    DaclSamplerState st;        /* save: copy it; restore: dacl_sampler_restore */
    int32_t *perm[2];           /* each stream's current permutation, rebuilt from st */
    int32_t *pick;              /* [batch] the slices of the batch being filled */
    DaclPool *pool;             /* may be set by the caller (not owned); NULL: one thread */
} DaclSampler;

/* The sets must outlive the sampler and stay unchanged. unl may be NULL or empty only if
 * labeled_batch == batch. DACL_EINVAL for a bad configuration, a labeled slice without a label,
 * or (continuous = 0) fewer labeled slices than labeled_batch. */
int dacl_sampler_init(DaclSampler *s, const DaclSliceSet *lab, const DaclSliceSet *unl,
                      const DaclSamplerConfig *cfg);
void dacl_sampler_free(DaclSampler *s);
/* Draw the next batch: x [batch, 1, ph, pw], y [batch, ph, pw]; slices (may be NULL) [batch]
 * gets each sample's slice index in its set (the labeled set for b < labeled_batch, else the
 * unlabeled one). The unlabeled part of y holds those cases' own labels when they have any
 * (DACL_LABEL_NONE otherwise), for diagnostics only: the trainer must not use it in a loss. */
int dacl_sampler_next(DaclSampler *s, float *x, uint8_t *y, int32_t *slices);
/* The augmentation of slot b of batch `iteration` under `seed` (what dacl_sampler_next applies;
 * NONE when no_augment). */
void dacl_sampler_aug(uint64_t seed, uint64_t iteration, int slot, DaclAug *a);
/* Continue from a saved state: DACL_EINVAL, naming the field, if it is not one of this
 * sampler's (version, configuration, set sizes, positions); the sampler is unchanged then. */
int dacl_sampler_restore(DaclSampler *s, const DaclSamplerState *st);

/* ---- Phantoms: synthetic datasets that need no download ---- */

/* Two kinds, each with the labels of the dataset it stands in for:
 *   cardiac: short-axis cine-MRI-like stacks (ACDC): 0 background, 1 RV, 2 Myo, 3 LV.
 *   abdomen: axial T2-MRI-like volumes (CHAOS): 0 background, 1 liver, 2 right kidney,
 *            3 left kidney, 4 spleen. */
typedef enum { DACL_PHANTOM_CARDIAC = 0, DACL_PHANTOM_ABDOMEN } DaclPhantomKind;

/* Cases generated for a "phantom:<kind>" dataset path. */
#define DACL_PHANTOM_CASES 20

typedef struct {
    int size;  /* in-plane H = W in pixels, 16..1024; 0: 128. The field of view is fixed in mm, so
                  size sets the resolution (spacing), not the anatomy */
    int force; /* write into a non-empty out_dir, replacing files of the same names */
} DaclPhantomOptions;

/* "cardiac" / "abdomen". */
const char *dacl_phantom_kind_name(DaclPhantomKind kind);
/* 1 and *kind if `name` is a kind's name, else 0. */
int dacl_phantom_kind_parse(const char *name, DaclPhantomKind *kind);
/* Whether a dataset path is a phantom spec: 1 (and *kind) for "phantom:cardiac" or
 * "phantom:abdomen"; 0 if it does not start with "phantom:" (a real path); -1, with an EINVAL
 * message listing the kinds, for "phantom:" followed by anything else. */
int dacl_phantom_parse_spec(const char *path, DaclPhantomKind *kind);

/* Case `index` of a phantom in memory: img float32 MRI magnitudes (Rician noise, integers >= 0,
 * not normalised), lab its labels, both (Z, H, W) with spacing. A pure function of
 * (kind, seed, index, size): case k is the same whatever the number of cases generated. */
int dacl_phantom_case(DaclPhantomKind kind, uint64_t seed, int index, int size, DaclVolume *img,
                      DaclLabelVolume *lab);

/* Write `cases` (>= 2) phantom cases into out_dir (created, with its parents, if missing):
 * images/caseNNN.nii.gz, labels/caseNNN.nii.gz and dataset.json (modality MRI, the last
 * max(1, cases / 5) cases in val, the rest in train, label_order = train order). Refuses
 * (DACL_EEXIST) a non-empty out_dir unless opt->force; never deletes anything. The manifest is
 * written last, so a folder with one is complete. Same arguments, same bytes. opt may be NULL. */
int dacl_phantom_write(const char *out_dir, DaclPhantomKind kind, int cases, uint64_t seed,
                       const DaclPhantomOptions *opt);

#endif
