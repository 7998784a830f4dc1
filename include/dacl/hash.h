/* SHA-256 (FIPS 180-4), for content hashes a user can compare across runs
 * and machines (weights_sha256 of a checkpoint). */
#ifndef DACL_HASH_H
#define DACL_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t buf[64];
    size_t fill;
} DaclSha256;

void dacl_sha256_init(DaclSha256 *s);
void dacl_sha256_update(DaclSha256 *s, const void *data, size_t n);
void dacl_sha256_final(DaclSha256 *s, uint8_t digest[32]);
/* the digest as 64 lowercase hex digits + NUL */
void dacl_sha256_hex(const uint8_t digest[32], char out[65]);

#endif
