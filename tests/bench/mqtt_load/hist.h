/*
 * hist.h - log-bucket latency histogram (HDR-like, fixed memory, no allocation).
 *
 * Values below 64 get one bucket each; above, every power of two [2^e, 2^e+1)
 * is split into LT_HIST_SUB equal buckets, so a bucket is at most 1/32 of its
 * value wide (about 3 %: "1.5 significant digits"). Percentiles report the
 * upper edge of the bucket holding the rank, clamped to the exact maximum.
 */
#ifndef LT_HIST_H
#define LT_HIST_H

#include <stdint.h>

#define LT_HIST_SUB_BITS 5
#define LT_HIST_SUB (1u << LT_HIST_SUB_BITS)
#define LT_HIST_LINEAR (2u * LT_HIST_SUB) /* values 0..63 are exact */
#define LT_HIST_BUCKETS (LT_HIST_LINEAR + (64u - LT_HIST_SUB_BITS - 1u) * LT_HIST_SUB)

typedef struct lt_hist {
    uint64_t count, sum, min, max;
    uint64_t b[LT_HIST_BUCKETS];
} lt_hist_t;

void lt_hist_init(lt_hist_t *h);
void lt_hist_record(lt_hist_t *h, uint64_t v);
/** Add every sample of src to dst. */
void lt_hist_merge(lt_hist_t *dst, const lt_hist_t *src);
/** Value at percentile p (0 < p <= 100); 0 when empty. */
uint64_t lt_hist_percentile(const lt_hist_t *h, double p);
/** Bucket index of v, and the inclusive value range of bucket i (for tests/docs). */
uint32_t lt_hist_index(uint64_t v);
void lt_hist_bucket_range(uint32_t i, uint64_t *lo, uint64_t *hi);

#endif
