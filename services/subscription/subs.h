/*
 * subs.h - internals of subscription-service (not a public API).
 *
 * Module map:
 *   config.c       option table (env prefix SUBS_) and checks
 *   service.c      connections, link attach/detach, event dispatch, group commit
 *   control.c      AMQP_LIST / CLOSE / SUBSCRIBE / UNSUBSCRIBE / PUBREL
 *   fabric.c       publication intake: retain, matching, fan-out
 *   session.c      sessions, per-client queues, packet ids, delivery on L4/L4s/L9
 *   shared.c       shared delivery links (L4s, spec 3.12): attach, loss, AMQP_STOLEN,
 *                  credit turns among the sessions online on one
 *   retained.c     retained messages (memory map + store)
 *   store_sqlite.c durable state (store.h)
 *
 * Ownership: a subs_msg_t (one publication) is stored once and reference
 * counted by every queue entry and the retained map that holds it; no
 * subscriber copies its payload. Everything runs on one event loop.
 */
#ifndef GW_SUBS_H
#define GW_SUBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "gw/amqp.h"
#include "gw/config.h"
#include "gw/error.h"
#include "gw/service.h"
#include "gw/spec.h"
#include "gw/topic.h"
#include "store.h"

#define SUBS_MOD "subs"

/* ---------------- configuration ---------------- */

enum { SUBS_OVERFLOW_DROP_NEW = 0, SUBS_OVERFLOW_DROP_OLDEST = 1 };

typedef struct subs_config {
    gw_svc_config_t common; /* --listen, --connect, TLS/SASL, --http-listen, logging */
    char *store;
    int store_sync; /* 0 normal, 1 full */
    int64_t store_cache; /* bytes: SQLite page cache bound */
    int64_t max_queued_messages;
    int64_t max_queued_bytes;
    bool queue_qos0;
    int overflow_policy;
    int64_t link_credit;
    int64_t max_message_size;
    int64_t batch_max;
    char *control_address;
    char *to_prefix;
    char *pubrel_prefix;
    int64_t transient_timeout; /* ms: a transient session with no link attached is dropped */
    int64_t session_expiry;    /* ms: a persistent session offline this long is deleted (0 = never) */
    int64_t qos2_dedupe_max;   /* QoS 2 duplicate-detection records kept (0 = off) */
    int64_t online_hwm;        /* back-pressure: online queue high watermark (messages) */
    int64_t online_hwm_bytes;  /* back-pressure: online queue high watermark (payload bytes) */
    int64_t bp_stall;          /* ms without progress of a queue above the mark: give credit once */
} subs_config_t;

extern const gw_config_spec_t subs_config_spec;
gw_err_t subs_config_check(const subs_config_t *cfg, char *why, size_t whylen);

/* ---------------- objects ---------------- */

typedef struct subs_service subs_service_t;
typedef struct subs_conn subs_conn_t;
typedef struct subs_session subs_session_t;
typedef struct subs_shared subs_shared_t;
typedef struct subs_q2 subs_q2_t;

typedef struct subs_msg {
    uint32_t refs;         /* holders: queue entries, the retained map */
    uint32_t durable_refs; /* stored queue rows pointing at store_id */
    int64_t store_id;      /* row in msgs, 0 = not stored */
    uint8_t qos;           /* as published */
    size_t topic_len, payload_len;
    char *topic;   /* NUL-terminated, in data[] */
    char *payload; /* in data[] */
    char data[];
} subs_msg_t;

typedef struct subs_qentry {
    struct subs_qentry *prev, *next;
    subs_msg_t *msg;
    int64_t seq;      /* queue row, 0 = in memory only */
    uint16_t pkt_id;  /* 0 for QoS 0 */
    uint8_t qos;      /* delivery QoS = min(published, granted) */
    bool retain;      /* sent because of a new subscription */
    uint8_t state;    /* GW_SUBS_Q_* */
    bool unsynced;    /* packet id written to the open batch: send after its commit */
    uint32_t dcount;  /* transfers so far (delivery-count of the next one) */
    pn_delivery_t *dlv; /* in flight on the session's current out link */
    /* Its session: an outcome on an L4s (shared by many sessions) finds it
     * through the delivery's context, the entry. (48 -> 56 bytes: the same
     * 64-byte malloc chunk.) */
    subs_session_t *owner;
} subs_qentry_t;

typedef struct subs_sub {
    struct subs_sub *next;
    uint8_t qos;
    size_t len;
    char filter[];
} subs_sub_t;

typedef enum subs_link_kind {
    SL_CONTROL,  /* peer sends to $mqtt.subscriptionservice */
    SL_PUBREL,   /* peer sends to $mqtt.<id>.pubrel */
    SL_TOPIC,    /* peer sends to a topic (or anonymous relay: topic NULL) */
    SL_OUT_CTL,  /* we send $mqtt.to.<id>.control */
    SL_OUT_PUB,  /* we send $mqtt.to.<id>.publish */
    SL_OUT_NATIVE, /* we send to a native receiver on a filter */
    SL_OUT_SHARED, /* we send on a shared delivery link (L4s, spec 3.12) */
} subs_link_kind_t;

typedef struct subs_link {
    subs_link_kind_t kind;
    subs_conn_t *sc;
    pn_link_t *link;
    subs_session_t *session; /* OUT_*: the session it serves (NULL once stolen) */
    char *topic;             /* SL_TOPIC: target address (NULL: anonymous relay) */
    union {
        char *client;          /* SL_PUBREL: client id (owned) */
        subs_shared_t *shared; /* SL_OUT_SHARED: the L4s state (owned) */
    };
    /* SL_TOPIC under back-pressure: credit withheld, given back on resume. */
    uint32_t owed;
    bool owing;
    /* SL_TOPIC: over_id of the queue above the high watermark that its
     * latest such publication reached (0 = none): its credit is withheld
     * while that queue stays above the mark (spec 6.3 rule 4). */
    uint64_t held_by;
    struct subs_link *onext, *oprev; /* svc->owing list */
    /* The links of one pn_session (its context is the head): a session's
     * end touches its own links, not every link of the connection. */
    struct subs_link *snext, *sprev;
} subs_link_t;

/* Field order: pointers and sizes first, the small flags packed at the end
 * (an idle connected session is ~150 bytes + its id; scenario 6 holds
 * tens of thousands). */
struct subs_session {
    struct subs_session *hnext;
    subs_service_t *svc;
    subs_sub_t *subs;
    size_t nsubs;
    subs_qentry_t *qhead, *qtail;
    /* The pump starts after qsent: every entry up to it has a delivery in
     * flight (NULL = start at qhead). Without it each pump walked the whole
     * unsettled window first (18 % of the service in a 1 000-credit flow). */
    subs_qentry_t *qsent;
    size_t qcount, qbytes;
    subs_link_t *ctl;  /* $mqtt.to.<id>.control sender */
    subs_link_t *out;  /* $mqtt.to.<id>.publish sender (or the native link) */
    /* Online on a shared delivery link (spec 3.12), NULL otherwise. Never
     * set together with out: registering on one first takes the session
     * off the other (takeover). Allocated only while online there, so an
     * offline session pays one pointer. */
    struct subs_reg *reg;
    uint64_t match_gen;
    union {                  /* packet ids in use (session.c); NULL when none */
        uint16_t *pid_small; /* !pid_big: up to 32, unsorted */
        uint8_t *pid_map;    /* pid_big: 65536 bits */
    };
    uint64_t drops;
    int64_t orphan_ms; /* transient, no link attached: first seen so by the sweep (0 = no) */
    int64_t offline_wall_ms; /* persistent, offline: since when (epoch ms, stored); 0 = online */
    uint32_t npids;    /* packet ids in use */
    uint32_t nunsynced; /* entries with unsynced set */
    uint16_t next_pid;
    uint8_t match_qos;
    bool persistent; /* durable: LIST seen, no CLOSE since */
    bool native;     /* a native receiver's subscription (not in the hash) */
    bool subs_due;     /* AMQP_SUBSCRIPTIONS to send on ctl */
    bool present;      /* its x-opt-session-present */
    bool ready;        /* SUBSCRIPTIONS sent (or native): deliveries may flow */
    bool syncwait;     /* in svc->syncwait: pump after the next commit */
    bool over;         /* online and above the high watermark: counted in svc->nover */
    bool pid_big;      /* pid_map, not pid_small */
    /* AMQP_LIST accepted once the batch with its session row commits (spec
     * 5.2): AMQP_SUBSCRIPTIONS waits for that commit (in svc->syncwait). */
    bool list_wait;
    bool list_created; /* that LIST made the session persistent (undone if the commit fails) */
    bool offline_stored; /* offline_wall_ms is in the store (to be cleared once online) */
    char id[];
};

/*
 * A session online on an L4s (spec 3.12): what a per-client L4's attach,
 * credit and detach carried. 56 bytes, no proton object: the per-client
 * window is counted here, the L4s's link credit is shared.
 */
typedef struct subs_reg {
    subs_shared_t *sh;
    subs_session_t *prev, *next;   /* the sessions online on sh */
    subs_session_t *wprev, *wnext; /* sh's queue of sessions waiting for link credit */
    uint64_t serial;               /* x-opt-mqtt-client-serial of the registration */
    uint16_t window;               /* x-opt-mqtt-window W, 1..65535 */
    uint16_t unsettled;            /* deliveries in flight on sh, at most window */
    bool waiting;                  /* in sh's wait queue */
    /* AMQP_LIST's reply-to named the L4s: AMQP_SUBSCRIPTIONS goes there,
     * pre-settled, before any delivery (spec 3.12), not on an L3. */
    bool subs_on_l4s;
} subs_reg_t;

/* An attached L4s (context of its subs_link_t, kind SL_OUT_SHARED). */
struct subs_shared {
    subs_link_t *sl;
    subs_shared_t *prev, *next; /* svc->shared: lookup by link name */
    subs_session_t *sessions;   /* online on it (reg->next) */
    size_t nsessions;
    /* Sessions that have something to send and window left, but found no
     * link credit: pumped in turn (FIFO) on the next flow. */
    subs_session_t *whead, *wtail;
    size_t nwaiting;
    /* AMQP_STOLEN serials that found no link credit: sent first on the next flow. */
    uint64_t *stolen;
    size_t nstolen, capstolen;
};

struct subs_conn {
    gw_svc_conn_t base; /* first: list of the service's connections, conn, outgoing */
    subs_service_t *svc;
};

/* Metrics: the loop thread writes with GW_SVC_SET/INC/ADD, the HTTP thread
 * reads with GW_SVC_GET (gw/service.h). */
enum { SUBS_DROP_NEW = 0, SUBS_DROP_OLDEST = 1, SUBS_DROP_NO_PKT_ID = 2, SUBS_DROP_N = 3 };
typedef struct subs_metrics {
    int listening, store_open;
    int64_t sessions_persistent; /* among nsessions */
    int64_t sessions;            /* = nsessions (MQTT client sessions, natives excluded) */
    int64_t subscriptions;       /* all sessions, native receivers included */
    int64_t retained;
    int64_t queued, queued_bytes; /* queue entries (queued or in flight) and payload bytes */
    uint64_t in_qos[3], out_qos[3];
    uint64_t drops[SUBS_DROP_N];
    uint64_t expired; /* transient sessions without links dropped by the sweep */
    uint64_t expired_persistent; /* persistent sessions deleted by --session-expiry */
    int64_t q2_records;          /* QoS 2 duplicate-detection records */
    uint64_t q2_dups;            /* QoS 2 resends recognised and not published again */
    uint64_t q2_evicted;         /* records dropped by --qos2-dedupe-max */
    int64_t online_l4, online_shared; /* MQTT sessions online on a per-client L4 / an L4s */
    int64_t shared_links;             /* attached L4s */
    uint64_t shared_stolen;           /* AMQP_STOLEN sent */
    gw_svc_hist_t commit_lat;
} subs_metrics_t;

/* A delivery to settle once the batch is committed. */
typedef struct subs_pending {
    pn_delivery_t *dlv;
    subs_link_t *sl;
    bool keep_open; /* rcv-settle second: update to accepted, settle when the sender does */
    subs_q2_t *q2;  /* keep_open: the QoS 2 record it holds (dedupe.c), or NULL */
} subs_pending_t;

typedef struct subs_ret {
    struct subs_ret *hnext;
    subs_msg_t *msg;
} subs_ret_t;

struct subs_service {
    struct event_base *base;
    const subs_config_t *cfg;
    gw_spec_addrs_t addrs;
    gw_subs_store_t *store;
    gw_topic_index_t *index;
    gw_amqp_listener_t *lst;
    gw_svc_conns_t conns;
    subs_session_t **buckets; /* sessions by client id */
    size_t nbuckets, nsessions;
    subs_ret_t **rbuckets; /* retained by topic */
    size_t nrbuckets, nretained;
    pn_message_t *in, *out;
    subs_pending_t *pending; /* settle after commit */
    size_t npending, cappending;
    size_t batch_msgs;
    struct event *commit_ev;
    struct event *sweep_timer; /* transient sessions without links */
    subs_session_t **match; /* fan-out scratch */
    size_t nmatch, capmatch;
    uint64_t gen;
    bool stopping;
    /* Back-pressure (spec 6): while nover > 0 no credit is given back on
     * publisher (SL_TOPIC) links; what is owed waits on the owing list. */
    size_t nover;
    subs_link_t *owing;
    uint64_t pub_fed_over; /* set by subs_session_enqueue: over_id of a queue above the mark the publication reached */
    uint64_t over_seq;     /* last over_id given */
    struct subs_over { subs_session_t *s; uint64_t id; } *over_ids; /* the queues above the mark (nover) */
    size_t capover_ids;
    uint64_t throttles, stall_leaks;
    int64_t bp_progress_ms;    /* last progress of a queue above the mark */
    struct event *stall_timer; /* runs while nover > 0 */
    /* Sessions whose new packet ids wait for the batch commit. */
    subs_session_t **syncwait;
    size_t nsyncwait, capsyncwait;
    subs_shared_t *shared; /* attached L4s, newest first */
    /* QoS 2 duplicate detection (dedupe.c) */
    subs_q2_t **q2buckets;
    size_t nq2buckets, nq2;
    subs_q2_t *q2old, *q2new; /* age order */
    uint64_t drops_unlogged;
    int64_t last_drop_log_ms;
    /* counters (logged at exit) */
    uint64_t published, delivered, dropped, malformed, stolen, commits;
    subs_metrics_t m;
};

/* ---------------- dedupe.c: QoS 2 resends (spec 5.2 rule 8) ---------------- */
bool subs_q2_is(const void *ctx); /* a delivery context that is a record */
uint64_t subs_q2_digest(const gw_spec_publish_t *p);
uint64_t subs_q2_digest_of(const subs_q2_t *r);
subs_q2_t *subs_q2_find(subs_service_t *svc, const char *pub, size_t len, uint16_t pid);
/* Record a new publication (store write in the open batch), held by the
 * caller's delivery (as subs_q2_hold); NULL: none kept. */
subs_q2_t *subs_q2_put(subs_service_t *svc, const char *pub, size_t len, uint16_t pid,
                       uint64_t digest);
void subs_q2_hold(subs_q2_t *r);                        /* a delivery holds it */
void subs_q2_release(subs_service_t *svc, subs_q2_t *r); /* that delivery is gone */
void subs_q2_done(subs_service_t *svc, subs_q2_t *r);    /* the sender settled it: end */
void subs_q2_forget(subs_service_t *svc, subs_q2_t *r);  /* its batch failed */
void subs_q2_forget_publisher(subs_service_t *svc, const char *pub, size_t len);
gw_err_t subs_q2_restore(subs_service_t *svc, const char *pub, size_t len, uint16_t pid,
                         uint64_t digest);
void subs_q2_free_all(subs_service_t *svc);

/* ---------------- service.c ---------------- */
gw_err_t subs_service_start(struct event_base *base, const subs_config_t *cfg,
                            subs_service_t **out);
uint16_t subs_service_port(const subs_service_t *svc);
void subs_service_stop(subs_service_t *svc);
void subs_service_free(subs_service_t *svc);
/** /readyz (gw_ready_fn, HTTP thread): store open, and a listener or a router connection up. */
bool subs_service_ready(void *svc, char *why, size_t whylen);
/** /metrics (gw_metrics_collect_fn, HTTP thread). */
void subs_service_collect(gw_metrics_writer_t *w, void *svc);
/** Make sure the batch is committed at the end of this loop iteration. */
void subs_batch_touch(subs_service_t *svc);
/** Commit the batch now and settle every delivery waiting for it. */
void subs_batch_commit(subs_service_t *svc);
/** Settle dlv accepted once the current batch is committed. */
/** Give n units of credit back to sl, or owe them while back-pressure is on. */
void subs_credit_return(subs_service_t *svc, subs_link_t *sl, int n);
/** Back-pressure starts (nover went 0 -> 1): arm the stall timer. */
void subs_backpressure_start(subs_service_t *svc);
/** Queue over_id left the high watermark: give back what its publishers are owed. */
void subs_credit_release(subs_service_t *svc, uint64_t over_id);
/** Is queue over_id above the mark? */
bool subs_over_has(const subs_service_t *svc, uint64_t over_id);
/** Back-pressure ended: give every owed credit back. */
void subs_credit_resume(subs_service_t *svc);
gw_err_t subs_defer_accept(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv,
                           bool keep_open);

/* ---------------- session.c ---------------- */
subs_session_t *subs_session_find(subs_service_t *svc, const char *id, size_t len);
subs_session_t *subs_session_get(subs_service_t *svc, const char *id, size_t len);
subs_session_t *subs_session_new_native(subs_service_t *svc);
/** Remove from the hash and the index, drop its queue (durably if stored), free. */
void subs_session_destroy(subs_service_t *svc, subs_session_t *s, bool durable);
/** Discard subscriptions and queue (durably for a persistent session). */
void subs_session_clear(subs_service_t *svc, subs_session_t *s);
subs_sub_t *subs_session_sub_find(subs_session_t *s, const char *f, size_t len);
gw_err_t subs_session_sub_add(subs_service_t *svc, subs_session_t *s, const char *f,
                              size_t len, uint8_t qos, bool durable);
void subs_session_sub_remove(subs_service_t *svc, subs_session_t *s, const char *f, size_t len);
/** Queue one copy of msg for s at qos (already min(published, granted)). */
gw_err_t subs_session_enqueue(subs_service_t *svc, subs_session_t *s, subs_msg_t *msg,
                              uint8_t qos, bool retain);
/** Restore a stored queue row (start-up). */
gw_err_t subs_session_restore(subs_service_t *svc, subs_session_t *s, subs_msg_t *msg,
                              int64_t seq, uint8_t qos, uint16_t pkt_id, bool retain, int state);
/** Send what the out link's credit allows. */
void subs_session_pump(subs_service_t *svc, subs_session_t *s);
/** The out link is gone: in-flight copies become unacknowledged (DUP next time). */
void subs_session_out_lost(subs_service_t *svc, subs_session_t *s);
/** Make s online on the L4s sh with that serial and window (spec 3.12); s
 *  must be offline (neither out nor reg). GW_ERR_NOMEM: left offline. */
gw_err_t subs_session_register(subs_service_t *svc, subs_session_t *s, subs_shared_t *sh,
                               uint64_t serial, uint32_t window);
/**
 * s's registration on its L4s ends (AMQP_OFFLINE, takeover, the L4s lost),
 * handled as the detach of a per-client L4 (spec 4.14 step 6): in-flight
 * copies become unacknowledged (QoS 0 ones are dropped), later outcomes
 * for them are ignored. link_gone: the L4s is being freed, its deliveries
 * with it. A transient session is destroyed, or only emptied if keep (a
 * takeover continues with it). Returns false if s was destroyed.
 */
bool subs_session_offline(subs_service_t *svc, subs_session_t *s, bool link_gone, bool keep);
/** The first session of sh's credit wait queue, taken off it (NULL if none). */
subs_session_t *subs_session_wait_pop(subs_shared_t *sh);
/** s (online on an L4s) found no credit there: wait for the next flow, in turn. */
void subs_session_wait_credit(subs_session_t *s);
/** A disposition arrived for a delivery on an out link. */
void subs_session_outcome(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv);
/** AMQP_PUBREL for pkt_id: mark released (durably). */
gw_err_t subs_session_release(subs_service_t *svc, subs_session_t *s, uint64_t pkt_id);
bool subs_session_online(const subs_session_t *s);
/** Re-evaluate s against the online high/low watermarks (back-pressure). */
void subs_session_watermark(subs_service_t *svc, subs_session_t *s);
/** The batch committed (ok) or was rolled back: packet ids written in it
 *  are durable, send; LISTs waiting for it get their AMQP_SUBSCRIPTIONS. */
void subs_session_synced(subs_service_t *svc, bool ok);
/** A LIST for s is settled after the batch commits (created: it wrote the
 *  session row): hold AMQP_SUBSCRIPTIONS until subs_session_synced().
 *  GW_ERR_NOMEM: not registered, the caller commits and answers at once. */
gw_err_t subs_session_wait_list(subs_service_t *svc, subs_session_t *s, bool created);
/** Set s->persistent, keeping the metrics in step. */
void subs_session_set_persistent(subs_service_t *svc, subs_session_t *s, bool persistent);
/** Drop transient sessions that have had no link attached for --transient-timeout. */
void subs_session_sweep(subs_service_t *svc);

subs_msg_t *subs_msg_new(const char *topic, size_t tlen, const void *payload, size_t plen,
                         uint8_t qos);
void subs_msg_unref(subs_service_t *svc, subs_msg_t *m);

/* ---------------- shared.c ---------------- */
/** A sender link whose remote source has the capability mqtt-shared-delivery. */
bool subs_shared_is_l4s(pn_link_t *link);
/** sl (kind SL_OUT_SHARED, just made for the peer's attach) is an L4s:
 *  index it by link name and open it. GW_ERR_NOMEM: nothing done. */
gw_err_t subs_shared_attach(subs_service_t *svc, subs_link_t *sl);
/** The attached L4s named name[0..len), NULL if none. */
subs_shared_t *subs_shared_find(subs_service_t *svc, const char *name, size_t len);
/** The L4s is gone (detached or its connection lost): every session on it goes offline. */
void subs_shared_lost(subs_service_t *svc, subs_shared_t *sh);
/** Credit arrived on the L4s: pending AMQP_STOLEN first, then the waiting
 *  sessions in turn (their AMQP_SUBSCRIPTIONS, then deliveries). */
void subs_shared_flow(subs_service_t *svc, subs_shared_t *sh);
/** AMQP_STOLEN for serial on sh (pre-settled; queued if no credit). */
void subs_shared_stolen(subs_service_t *svc, subs_shared_t *sh, uint64_t serial);
/**
 * X's session is about to be registered online (AMQP_LIST/CLOSE naming sh,
 * serial; or a per-client L4 attaching: sh NULL). If it is online anywhere
 * else, the older registration is stolen (AMQP_STOLEN, or the per-client L4
 * detached with amqp:link:stolen) and handled as AMQP_OFFLINE; a transient
 * session is emptied but kept for the newcomer. Returns true if s is
 * already registered with exactly (sh, serial).
 */
bool subs_shared_takeover(subs_service_t *svc, subs_session_t *s, subs_shared_t *sh,
                          uint64_t serial);

/* ---------------- retained.c ---------------- */
gw_err_t subs_retained_set(subs_service_t *svc, subs_msg_t *msg, bool durable);
gw_err_t subs_retained_clear(subs_service_t *svc, const char *topic, size_t tlen);
/** Queue the retained messages matching filter to s (retain flag set). */
void subs_retained_deliver(subs_service_t *svc, subs_session_t *s, const char *filter,
                           size_t flen, uint8_t granted);
void subs_retained_free_all(subs_service_t *svc);

/* ---------------- fabric.c ---------------- */
/** Take one publication: retain, match, fan out. */
gw_err_t subs_fabric_publish(subs_service_t *svc, const gw_spec_publish_t *p);

/* ---------------- control.c ---------------- */
/** A complete message on an SL_CONTROL or SL_PUBREL link (decoded from svc->in). */
void subs_control_delivery(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv);
/** Send AMQP_SUBSCRIPTIONS if due and possible; then start deliveries. */
void subs_control_flush(subs_service_t *svc, subs_session_t *s);

/* ---------------- util ---------------- */
int64_t subs_now_ms(void);
size_t subs_hash(const char *s, size_t len);
#endif
