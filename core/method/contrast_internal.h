/* Shared by the contrastive module's files (private to core/method): the
 * bank's checkpoint bytes and a little-endian cursor for them. */
#ifndef DACL_CONTRAST_INTERNAL_H
#define DACL_CONTRAST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dacl/method.h"

/* v as 4 little-endian bytes at *p, which advances */
static inline void le_put_u32(unsigned char **p, uint32_t v) {
    for (int i = 0; i < 4; i++) (*p)[i] = (unsigned char)(v >> (8 * i));
    *p += 4;
}

static inline uint32_t le_get_u32(const unsigned char **p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)(*p)[i] << (8 * i);
    *p += 4;
    return v;
}

static inline void le_put_f32s(unsigned char **p, const float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        le_put_u32(p, u);
    }
}

static inline void le_get_f32s(const unsigned char **p, float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = le_get_u32(p);
        memcpy(&v[i], &u, 4);
    }
}

/* The bank's state: per class i32 count, i32 next position, then f32 data
 * [classes, capacity, dim] and f32 densities [classes, capacity]. read
 * checks the counters (DACL_EFORMAT) before it changes anything. */
size_t dacl_bank_state_bytes(const DaclBank *b);
void dacl_bank_state_write(const DaclBank *b, unsigned char **p);
int dacl_bank_state_read(DaclBank *b, const unsigned char **p);

#endif
