/*
 * http.h - health, readiness and Prometheus metrics over HTTP (libevent evhttp).
 *
 * Each process starts one gw_http_t on --http-listen. It runs on its OWN
 * thread with its own event_base, so a scrape never stalls a worker loop and
 * a stuck worker cannot hide from /healthz. Endpoints:
 *   GET /healthz  200 "ok" while the process runs (liveness)
 *   GET /readyz   200 "ready" when the ready callback says so, else 503 + reason
 *   GET /metrics  Prometheus text format 0.0.4 from the registered collectors
 * Anything else: 404; methods other than GET/HEAD: 405.
 *
 * Collectors and the ready callback run on the HTTP thread: they must only
 * read state that is safe to read concurrently (relaxed atomics, or values
 * published under a lock). Per-worker counters summed at scrape time are the
 * intended pattern: the message path pays one non-atomic increment on its
 * own cache line and nothing else.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw/error.h"

typedef struct gw_http gw_http_t;
typedef struct gw_metrics_writer gw_metrics_writer_t;

/** Append metrics to w (called on the HTTP thread for every scrape). */
typedef void (*gw_metrics_collect_fn)(gw_metrics_writer_t *w, void *arg);
/** Return true when ready; otherwise write a short reason into why. */
typedef bool (*gw_ready_fn)(void *arg, char *why, size_t whylen);

/**
 * Start serving on host:port (port 0 = ephemeral, see gw_http_port()).
 * Collectors and the ready callback must be registered before start.
 */
gw_http_t *gw_http_new(void);
void gw_http_add_collector(gw_http_t *http, gw_metrics_collect_fn fn, void *arg);
void gw_http_set_ready(gw_http_t *http, gw_ready_fn fn, void *arg);
gw_err_t gw_http_start(gw_http_t *http, const char *host, uint16_t port);
uint16_t gw_http_port(const gw_http_t *http);
/** Stop the thread (if started) and free everything. NULL is fine. */
void gw_http_free(gw_http_t *http);

/*
 * Writer. Samples of one metric name must be written consecutively; HELP and
 * TYPE lines are emitted once per name. labels is the text inside {} (e.g.
 * "qos=\"1\""), or NULL; label values must already be escaped (use
 * gw_metrics_escape for values that come from outside).
 */
void gw_metrics_counter(gw_metrics_writer_t *w, const char *name, const char *help,
                        const char *labels, uint64_t value);
void gw_metrics_gauge(gw_metrics_writer_t *w, const char *name, const char *help,
                      const char *labels, double value);
/**
 * A histogram: one "# TYPE name histogram", then name_bucket{le="..."} for
 * each of the n cumulative counts (le = bounds[i], the last one "+Inf"),
 * name_sum and name_count. bounds has n - 1 entries.
 */
void gw_metrics_histogram(gw_metrics_writer_t *w, const char *name, const char *help,
                          size_t n, const double *bounds, const uint64_t *cumulative,
                          double sum, uint64_t count);
/** Escape a label value (\\, \", \n) into buf; returns buf. Truncates to cap. */
const char *gw_metrics_escape(const char *value, char *buf, size_t cap);

#endif
