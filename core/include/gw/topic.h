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
 * dereferenced. Not thread-safe: one index per event loop.
 */
#ifndef GW_TOPIC_H
#define GW_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw/error.h"

typedef struct gw_topic_index gw_topic_index_t;

/** Called once per matching (filter, subscriber); return false to stop early. */
typedef bool (*gw_topic_match_fn)(void *subscriber, uint8_t qos, void *arg);

gw_topic_index_t *gw_topic_index_new(void);
void gw_topic_index_free(gw_topic_index_t *idx);

/** Add or update (same filter + subscriber: QoS replaced). *added set true if new. */
gw_err_t gw_topic_index_add(gw_topic_index_t *idx, const char *filter, size_t len,
                            void *subscriber, uint8_t qos, bool *added);
/** GW_ERR_NOT_FOUND if that (filter, subscriber) was not present. */
gw_err_t gw_topic_index_remove(gw_topic_index_t *idx, const char *filter, size_t len,
                               void *subscriber);
/** Visit every match for a topic name; returns the number of callbacks made. */
size_t gw_topic_index_match(const gw_topic_index_t *idx, const char *topic, size_t len,
                            gw_topic_match_fn fn, void *arg);
/** Number of (filter, subscriber) entries. */
size_t gw_topic_index_count(const gw_topic_index_t *idx);
/** Approximate heap bytes used (for metrics and the benchmark). */
size_t gw_topic_index_memory(const gw_topic_index_t *idx);

#endif
