/*
 * topic.h - subscription index: which (filter, subscriber) pairs match a topic.
 *
 * A trie over topic levels with hashed children, '+' and '#' as dedicated
 * edges, so a match costs O(levels x matching branches), not O(filters).
 * Holds millions of filters. Filters starting with a wildcard do not match
 * topics starting with '$' (MQTT-4.7.2-1). A subscriber that has several
 * overlapping filters matching one topic is reported once per filter; the
 * caller folds them per client (highest QoS wins, MQTT-3.3.5-1).
 *
 * Filters passed in must already be validated (gw_topic_filter_validate()).
 * The index copies what it keeps; subscriber pointers are opaque and never
 * dereferenced. Not thread-safe: one index per event loop (match() only
 * reads, so concurrent matches without a concurrent writer are safe).
 *
 * Levels are split on '/', empty levels are real levels ("a//b" has three,
 * "/a" has "" then "a"). The index itself re-checks only the structure it
 * relies on (non-empty, at most 65535 bytes, '#' last and alone in its level,
 * '+' alone in its level) and returns the matching GW_ERR_MQTT_TOPIC_* error;
 * UTF-8 and configured limits are the caller's.
 *
 * Memory: about 70 bytes per filter with a million distinct filters
 * (67-73 measured by tests/bench/bench_topic.c, incl. allocator overhead). Nodes come from a per-index slab that is
 * released only when the index becomes empty; gw_topic_index_stats() tells
 * live from reserved bytes.
 */
#ifndef GW_TOPIC_H
#define GW_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw/error.h"

typedef struct gw_topic_index gw_topic_index_t;

/**
 * Called once per matching (filter, subscriber); return false to stop early.
 * It must not add to or remove from the index it is called from.
 */
typedef bool (*gw_topic_match_fn)(void *subscriber, uint8_t qos, void *arg);

/** New empty index, NULL on allocation failure. Free with gw_topic_index_free(). */
gw_topic_index_t *gw_topic_index_new(void);
/** Frees the index and everything it copied (never the subscribers). NULL is ignored. */
void gw_topic_index_free(gw_topic_index_t *idx);

/**
 * Add or update (same filter + subscriber: QoS replaced). *added set true if
 * new (added may be NULL). GW_ERR_INVAL for NULL arguments or qos > 2,
 * GW_ERR_MQTT_TOPIC_EMPTY / _FILTER / _TOO_LONG for a malformed filter,
 * GW_ERR_NOMEM or GW_ERR_LIMIT (2^31 children or entries on one node); on
 * error the index holds the same filters as before.
 */
gw_err_t gw_topic_index_add(gw_topic_index_t *idx, const char *filter, size_t len,
                            void *subscriber, uint8_t qos, bool *added);
/**
 * GW_ERR_NOT_FOUND if that (filter, subscriber) was not present. Nodes left
 * without filters or children are freed at once.
 */
gw_err_t gw_topic_index_remove(gw_topic_index_t *idx, const char *filter, size_t len,
                               void *subscriber);
/**
 * Visit every match for a topic name; returns the number of callbacks made
 * (including one that returned false). Each (filter, subscriber) is visited
 * once, in no particular order. No allocation unless a filter deeper than 62
 * levels was ever added. A zero-length topic matches nothing.
 */
size_t gw_topic_index_match(const gw_topic_index_t *idx, const char *topic, size_t len,
                            gw_topic_match_fn fn, void *arg);
/** Number of (filter, subscriber) entries. */
size_t gw_topic_index_count(const gw_topic_index_t *idx);
/** Approximate heap bytes used (for metrics and the benchmark). */
size_t gw_topic_index_memory(const gw_topic_index_t *idx);

typedef struct gw_topic_index_stats {
    size_t entries;        /* == gw_topic_index_count() */
    size_t nodes;          /* trie nodes, root excluded */
    size_t max_depth;      /* deepest filter ever added, in levels ('#' excluded) */
    size_t bytes_live;     /* bytes in live nodes, child tables and entry blocks */
    size_t bytes_reserved; /* == gw_topic_index_memory(): live + slab kept for reuse */
} gw_topic_index_stats_t;

/** Fill *out (zeroed for a NULL idx). */
void gw_topic_index_stats(const gw_topic_index_t *idx, gw_topic_index_stats_t *out);

#endif
