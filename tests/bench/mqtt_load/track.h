/*
 * track.h - per (sink, publisher) sequence tracking.
 *
 * A pair remembers the next expected sequence number and the gaps below it
 * (sorted ranges of sequence numbers skipped so far). In-order traffic costs
 * one compare; memory grows only with the number of open gaps, which is
 * capped (LT_MAX_GAPS: the oldest gap is then forgotten and counted in
 * forgotten; a late arrival inside it would be reported as a duplicate).
 */
#ifndef LT_TRACK_H
#define LT_TRACK_H

#include <stddef.h>
#include <stdint.h>

#define LT_MAX_GAPS 65536u
#define LT_MAX_PUBLISHER_ID (1u << 20)

typedef struct lt_gap {
    uint64_t lo, hi; /* [lo, hi) not received */
} lt_gap_t;

typedef struct lt_pair {
    uint64_t next;
    lt_gap_t *gaps;
    uint32_t ngaps, capgaps;
    uint64_t forgotten;
} lt_pair_t;

typedef enum lt_seen {
    LT_SEEN_NEW = 0, /* first time, in order or after a gap */
    LT_SEEN_OOO = 1, /* first time, below the expected sequence (fills a gap) */
    LT_SEEN_DUP = 2, /* seen before */
    LT_SEEN_ERR = 3, /* out of memory: not tracked */
} lt_seen_t;

/** One receiving end (an MQTT subscriber or an AMQP receiver): pairs by publisher id. */
typedef struct lt_sink {
    lt_pair_t **pairs; /* owned, indexed by publisher id, NULL until first message */
    uint32_t npairs;
} lt_sink_t;

lt_seen_t lt_pair_record(lt_pair_t *p, uint64_t seq);
/** Sequence numbers below limit never received. */
uint64_t lt_pair_missing_below(const lt_pair_t *p, uint64_t limit);

/** The pair for publisher id (created on first use); NULL if id is out of range or NOMEM. */
lt_pair_t *lt_sink_pair(lt_sink_t *s, uint32_t pub);
/** Missing messages of publisher pub below limit (all of them if never heard from). */
uint64_t lt_sink_missing_below(const lt_sink_t *s, uint32_t pub, uint64_t limit);
void lt_sink_free(lt_sink_t *s);

#endif
