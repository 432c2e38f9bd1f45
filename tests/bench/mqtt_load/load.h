/*
 * load.h - internals of the mqtt-load benchmark tool (tests/bench/mqtt_load).
 *
 * Shape: one process, --threads N workers, each worker one libevent loop that
 * owns its MQTT clients (and worker 0 the AMQP receivers). Workers never
 * touch each other's clients. Coordination is by polling: worker 0 runs the
 * controller on a 10 ms tick and moves lt_run_t.phase forward; every worker
 * sees the phase on its own tick or on its next callback. Counters the
 * controller reads across threads are single-writer atomics (LT_INC).
 *
 * Payload header (big endian, LT_HDR_SIZE bytes, at the start of every
 * payload): publisher id u32, sequence number u64, send time u64 ns of
 * CLOCK_MONOTONIC (publisher and subscriber run on the same host).
 */
#ifndef LT_LOAD_H
#define LT_LOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <pthread.h>

#include "gw/amqp.h"
#include "gw/config.h"
#include "gw/mqtt.h"

#include "hist.h"
#include "track.h"

#define LT_HDR_SIZE 20u
#define LT_MAX_WORKERS 64

/* ------------------------------------------------------------------ */
/* Options (options.c)                                                 */
/* ------------------------------------------------------------------ */

typedef struct lt_cfg {
    char *host;
    int64_t port;
    char *amqp_url;
    char *amqp_address;
    int64_t amqp_receivers;
    int64_t amqp_credit;
    bool amqp_shared;
    int64_t publishers;
    int64_t subscribers;
    int64_t qos;
    int64_t payload;
    int64_t rate;
    int64_t window;
    int64_t messages;
    int64_t duration_ms;
    int64_t warmup_ms;
    int64_t drain_ms;
    int64_t setup_timeout_ms;
    char *topic;
    char *sub_topic;
    bool clean;
    char *client_prefix;
    int64_t keepalive;
    int64_t connections;
    int64_t connect_concurrency;
    int64_t hold_ms;
    bool will;
    bool persistent;
    gw_config_list_t pids;
    bool json;
    char *label;
    int64_t threads;
    int64_t out_buffer;
    int64_t sndbuf;
    bool spread_source;
    int64_t max_packet;
} lt_cfg_t;

extern const gw_config_spec_t lt_cfg_spec;

/** Load and cross-check the options. Returns the gw_config result; on
 *  GW_CONFIG_ERROR the message is already printed. */
gw_config_result_t lt_cfg_load(lt_cfg_t *cfg, int argc, char **argv);
/** Expand %p (publisher index), %s (subscriber index) and %% in pattern.
 *  Returns a new string (caller frees) or NULL on NOMEM / bad escape. */
char *lt_format_topic(const char *pattern, uint32_t index);

/* ------------------------------------------------------------------ */
/* Run state shared by all workers                                     */
/* ------------------------------------------------------------------ */

enum lt_phase { LT_SETUP = 0, LT_RUN = 1, LT_DRAIN = 2, LT_DONE = 3 };

/* Single-writer counter update: the owner thread is the only writer, so a
 * relaxed load + store is enough and costs no locked instruction. */
#define LT_INC(a, n)                                                                        \
    atomic_store_explicit(&(a), atomic_load_explicit(&(a), memory_order_relaxed) + (n),    \
                          memory_order_relaxed)
#define LT_GET(a) atomic_load_explicit(&(a), memory_order_relaxed)

typedef struct lt_client lt_client_t;
typedef struct lt_amqp lt_amqp_t;
typedef struct lt_worker lt_worker_t;

/** Counters of one worker (written by its thread only). */
typedef struct lt_stats {
    _Atomic uint64_t sent, acked, delivered; /* read live by the controller */
    _Atomic uint64_t ready;                  /* clients past CONNACK/SUBACK, AMQP links attached */
    _Atomic uint64_t pubs_done;              /* publishers that used their quota */
    _Atomic uint64_t errors;                 /* connection errors after setup */
    _Atomic uint64_t setup_errors;           /* CONNACK refusals, SUBACK failures, connect errors */
    _Atomic uint64_t open;                   /* connections not yet closed */
    uint64_t sent_measured, acked_measured, delivered_measured;
    uint64_t dups, ooo, foreign, protocol_errors, pings, suback_downgrades;
    uint64_t connack_errors, suback_failures;
    uint64_t t_last_ack, t_last_delivery; /* ns */
    uint64_t t_last_connack;              /* ns, connections mode */
    lt_hist_t lat;                        /* delivery latency, ns */
} lt_stats_t;

typedef struct lt_run {
    lt_cfg_t cfg;
    _Atomic int phase;
    _Atomic uint64_t t_start, t_measure, t_pub_end, t_end; /* ns, CLOCK_MONOTONIC */
    bool setup_timed_out, drain_timed_out, interrupted;
    uint32_t nworkers;
    lt_worker_t *workers[LT_MAX_WORKERS];
    /* Publishers by global index; pub_sent/pub_acked are mirrors written by
     * the owner, read by the controller. */
    lt_client_t **pubs;
    lt_client_t **subs;
    lt_client_t **idle;
    lt_amqp_t **amqp;
    uint32_t *fanout; /* per publisher: number of sinks that should get its messages */
    _Atomic uint64_t *pub_sent;
    lt_sink_t *shared_sink; /* --amqp-shared: one tracker for all AMQP receivers */
    uint64_t expected_ready; /* clients + links that must be ready before RUN */
    double rate_per_pub;     /* msg/s, 0 = unpaced */
    uint64_t quota_base, quota_extra; /* --messages split across publishers */
    uint8_t *filler;         /* payload bytes after the header */
    struct sockaddr_storage addr;
    int addrlen;
    uint64_t rss_before, rss_after;
} lt_run_t;

typedef struct lt_worker {
    lt_run_t *run;
    uint32_t id;
    struct event_base *base;
    struct event *tick;      /* 10 ms: phase changes, keep alive, controller on worker 0 */
    struct event *pace;      /* 1 ms when --rate */
    struct event *sigint, *sigterm;
    pthread_t thread;
    lt_client_t **clients;   /* all clients of this worker */
    uint32_t nclients, cap_clients;
    uint32_t next_connect;   /* connections mode: next idle client to open */
    int seen_phase;
    uint64_t shutdown_at;    /* ns: give up waiting for clean closes */
    uint64_t last_keepalive_check;
    lt_stats_t st;
} lt_worker_t;

/* ------------------------------------------------------------------ */
/* MQTT clients (client.c)                                             */
/* ------------------------------------------------------------------ */

enum lt_kind { LT_PUB, LT_SUB, LT_IDLE };
enum lt_cstate { LT_C_NEW, LT_C_CONNECTING, LT_C_WAIT_CONNACK, LT_C_WAIT_SUBACK, LT_C_READY,
                 LT_C_CLOSING, LT_C_CLOSED };

struct lt_client {
    lt_worker_t *w;
    int kind;
    int state;
    uint32_t index;
    struct bufferevent *bev;
    char *client_id;
    char *topic;      /* publisher topic name, subscriber filter */
    uint64_t last_tx; /* ns */
    bool done;        /* publisher: quota used */
    /* publisher */
    uint64_t next_seq, quota, acked_upto;
    uint8_t *ring;    /* window slot states, indexed by seq % window */
    /* subscriber */
    lt_sink_t sink;
    uint8_t *qos2_ids; /* inbound QoS 2 packet ids awaiting PUBREL (bitmap) */
};

lt_client_t *lt_client_new(lt_worker_t *w, int kind, uint32_t index);
void lt_client_free(lt_client_t *c);
/** Start the TCP connect (the CONNECT follows when it completes). */
int lt_client_connect(lt_client_t *c);
/** Send as many PUBLISHes as rate, window and the output limit allow. */
void lt_client_pump(lt_client_t *c);
/** PINGREQ if nothing was sent for keep alive seconds (MQTT-3.1.2-23). */
void lt_client_keepalive(lt_client_t *c, uint64_t now);
/** DISCONNECT, then close once the output is flushed. */
void lt_client_shutdown(lt_client_t *c);

/* ------------------------------------------------------------------ */
/* AMQP receivers (amqp_sink.c)                                        */
/* ------------------------------------------------------------------ */

struct lt_amqp {
    lt_worker_t *w;
    uint32_t index;
    gw_amqp_conn_t *conn;
    pn_link_t *link;
    pn_message_t *msg;
    lt_sink_t own_sink;
    lt_sink_t *sink;
    bool ready, closing, closed;
};

lt_amqp_t *lt_amqp_new(lt_worker_t *w, uint32_t index);
int lt_amqp_start(lt_amqp_t *a);
void lt_amqp_shutdown(lt_amqp_t *a);
void lt_amqp_free(lt_amqp_t *a);

/* ------------------------------------------------------------------ */
/* Shared helpers (main.c, report.c)                                   */
/* ------------------------------------------------------------------ */

uint64_t lt_now_ns(void);
/** Account one received payload on a sink: tracking, latency, counters. */
void lt_record_payload(lt_worker_t *w, lt_sink_t *sink, const uint8_t *p, size_t len,
                       uint64_t now);
/** Connections mode: start connects up to --connect-concurrency in progress. */
void lt_worker_open_more(lt_worker_t *w);
/** VmRSS of pid in bytes, 0 if unreadable. */
uint64_t lt_rss_bytes(const char *pid);
/** Sum of VmRSS over --pid. */
uint64_t lt_rss_total(const lt_cfg_t *cfg);
/** Print the summary (stderr) and one JSON line (stdout). Returns exit status. */
int lt_report(lt_run_t *run);

#endif
