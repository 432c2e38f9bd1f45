/*
 * amqp.h - AMQP 1.0 connections driven by proton's pn_connection_driver
 * from a libevent loop. No proactor, no proton threads: one event loop owns
 * its MQTT sockets and its AMQP connections.
 *
 * I/O path per connection (as proton's c/src/proactor/libuv.c does):
 * read(2) straight into pn_connection_driver_read_buffer(), read_done(),
 * drain pn_connection_driver_next_event() into the handler, write(2) from
 * write_buffer(), write_done(), and one libevent timer armed for
 * pn_transport_tick() (idle time-out and heartbeats).
 *
 * Application code may change proton state (open links, send, settle)
 * inside on_event/on_state, or anywhere else in the same thread followed by
 * gw_amqp_conn_flush(), which schedules one deferred write for all changes
 * made in this loop iteration (many sends, one syscall).
 *
 * Lifetime: proton objects (pn_connection_t, sessions, links, deliveries)
 * belong to the driver. When a connection goes DOWN every one of them is
 * freed right after on_state() returns: drop references there. Outgoing
 * connections with reconnect enabled then come back as a NEW pn_connection_t
 * (new INIT ... events, then on_state UP). A gw_amqp_conn_t itself is freed
 * by the module after on_state(CLOSED) returns, or by gw_amqp_conn_destroy().
 * Threads: a gw_amqp_conn_t is used only from its event_base's thread.
 */
#ifndef GW_AMQP_H
#define GW_AMQP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <proton/connection.h>
#include <proton/delivery.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/message.h>
#include <proton/session.h>

#include "gw/error.h"

typedef struct gw_amqp_conn gw_amqp_conn_t;
typedef struct gw_amqp_listener gw_amqp_listener_t;

typedef struct gw_amqp_opts {
    const char *container_id;  /* NULL: "<program>-<random>" */
    const char *hostname;      /* open.hostname / SNI; NULL: host of the URL */
    /* SASL. Outgoing: mechanisms we allow, space separated ("ANONYMOUS PLAIN
     * EXTERNAL"); NULL = PLAIN when a user name is set, else ANONYMOUS.
     * Incoming: mechanisms we offer; NULL = "ANONYMOUS" (+ "EXTERNAL" with
     * TLS client certificates). Listing PLAIN for incoming connections installs
     * our own server SASL (proton's built-in one cannot verify PLAIN), see
     * sasl_plain_verify. Outgoing PLAIN is allowed without TLS
     * (pn_sasl_set_allow_insecure_mechs). */
    const char *sasl_mechs;
    const char *username;      /* outgoing PLAIN (the URL's user info wins); incoming
                                  PLAIN without sasl_plain_verify: the accepted user */
    const char *password;
    /* TLS: used when the URL scheme is amqps (outgoing) or tls is set (listener). */
    bool tls;
    const char *tls_ca_file;   /* peers verified against it when set */
    const char *tls_cert_file; /* PEM; our certificate (required for listeners) */
    const char *tls_key_file;
    bool tls_verify_peer;      /* outgoing: verify server name; incoming: require client cert */
    uint32_t idle_timeout_ms;  /* local idle time-out; 0 = none (heartbeats follow the peer's) */
    uint32_t max_frame_size;   /* 0 = 262144 (proton's own default is unlimited); else
                                  >= 512 (GW_ERR_CONFIG below). Bounds proton's input
                                  buffer: a larger frame from the peer is a framing error */
    /* Outgoing only: reconnect with exponential back-off and full jitter. */
    bool reconnect;
    uint32_t reconnect_min_ms; /* first delay, default 100 */
    uint32_t reconnect_max_ms; /* cap, default 10000 */
    /* Incoming over gw_amqp_conn_from_fd(server=true) only: offer ANONYMOUS-RELAY
     * (listeners take it as a gw_amqp_listen() argument). */
    bool offer_anonymous_relay;
    /* Incoming PLAIN (when sasl_mechs lists it): credentials are checked by
     * sasl_plain_verify (true = valid; called in the loop thread during the SASL
     * exchange, must not block) or, if NULL, against username/password above
     * (one accepted identity). Neither set: GW_ERR_CONFIG. */
    bool (*sasl_plain_verify)(const char *user, const char *password, void *ctx);
    void *sasl_plain_verify_ctx;
    /* Incoming deliveries: once a partial delivery has more than this many bytes
     * buffered, its link is closed with amqp:link:message-size-exceeded before
     * proton buffers more (AMQP 1.0 2.7.3 max-message-size; also advertised on
     * gw_amqp_receiver_open links). 0 = 16 MiB. Complete oversized deliveries
     * are the application's (gw_amqp_recv max_size). */
    uint64_t max_message_size;
} gw_amqp_opts_t;

typedef enum gw_amqp_state {
    GW_AMQP_UP,     /* both sides opened the connection: create sessions and links now */
    GW_AMQP_DOWN,   /* transport lost or closed; all proton objects go away after the
                       callback; a reconnect follows when enabled */
    GW_AMQP_CLOSED, /* final: the gw_amqp_conn_t is freed after the callback returns */
} gw_amqp_state_t;

typedef struct gw_amqp_handler {
    /** Every proton event of this connection, in order (may be NULL). */
    void (*on_event)(gw_amqp_conn_t *conn, pn_event_t *event, void *ctx);
    /**
     * State changes. cond/desc: the AMQP error condition that caused DOWN
     * (remote close/detach condition, "amqp:unauthorized-access" on SASL
     * failure, "amqp:resource-limit-exceeded"...), or a local reason such as
     * "gw:connect-failed", "gw:io-error", "amqp:connection:framing-error"
     * (proton's transport condition). NULL on a clean close or for UP.
     */
    void (*on_state)(gw_amqp_conn_t *conn, gw_amqp_state_t state, const char *cond,
                     const char *desc, void *ctx);
} gw_amqp_handler_t;

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

/**
 * Start an outgoing connection to url ("amqp://[user[:pass]@]host[:port]",
 * "amqps://..."; default ports 5672/5671). Returns at once; the TCP connect
 * happens in the loop. The connection is opened (pn_connection_open) by this
 * module; on_state(UP) fires when the peer's open arrives. Without reconnect,
 * a failure gives DOWN then CLOSED. With reconnect, every failed attempt
 * (including a failed TCP connect: cond "gw:connect-failed") reports DOWN and
 * schedules the next attempt after a delay uniform in
 * [0, min(reconnect_max_ms, reconnect_min_ms * 2^n)] (n = failures since the
 * last UP). Host names that are not IP literals are resolved with a blocking
 * getaddrinfo() at each attempt. handler is copied; ctx is not owned.
 * Errors: GW_ERR_CONFIG (bad URL, TLS files, options), GW_ERR_NOMEM.
 */
gw_amqp_conn_t *gw_amqp_connect(struct event_base *base, const char *url,
                                const gw_amqp_opts_t *opts, const gw_amqp_handler_t *handler,
                                void *ctx, gw_err_t *err);

/**
 * Drive a connection over an already-connected stream socket (TCP or
 * AF_UNIX, e.g. a socketpair in tests). server: act as the accepting side
 * (answers the peer's open, like a listener's connections); else the client
 * side (opens the connection, SASL per opts). The fd is made non-blocking and
 * owned by the connection on success (closed when it is freed); on failure
 * (NULL) it is left open for the caller. No reconnect. No callback runs before
 * this returns. DOWN is always followed by CLOSED.
 */
gw_amqp_conn_t *gw_amqp_conn_from_fd(struct event_base *base, int fd, bool server,
                                     const gw_amqp_opts_t *opts, const gw_amqp_handler_t *h,
                                     void *ctx, gw_err_t *err);

/** Begin a graceful close (close frame, then wait for the peer up to 2 s). Ends in CLOSED. */
void gw_amqp_conn_close(gw_amqp_conn_t *conn, const char *cond, const char *desc);
/**
 * Free now: socket closed, no callbacks. Safe inside a callback of this conn
 * (the memory is released when the callback returns; no further callback).
 */
void gw_amqp_conn_destroy(gw_amqp_conn_t *conn);
/**
 * Schedule output of proton state changed outside a callback (idempotent,
 * cheap: one event_active(); the events are processed and the output written
 * once in the next loop iteration). gw_amqp_send/settle/link_close/
 * sender_open/receiver_open call it themselves.
 */
void gw_amqp_conn_flush(gw_amqp_conn_t *conn);

/** The live pn_connection_t, or NULL while DOWN / reconnecting. */
pn_connection_t *gw_amqp_conn_pn(gw_amqp_conn_t *conn);
struct event_base *gw_amqp_conn_base(gw_amqp_conn_t *conn);
bool gw_amqp_conn_is_up(const gw_amqp_conn_t *conn);
void gw_amqp_conn_set_handler(gw_amqp_conn_t *conn, const gw_amqp_handler_t *handler, void *ctx);
void *gw_amqp_conn_ctx(const gw_amqp_conn_t *conn);
/** "host:port" of the peer, for logs. */
const char *gw_amqp_conn_peer(const gw_amqp_conn_t *conn);
/** The peer's SASL user name (incoming: authenticated identity; NULL if anonymous). */
const char *gw_amqp_conn_user(const gw_amqp_conn_t *conn);
/** True if the peer offered the ANONYMOUS-RELAY capability in its open. */
bool gw_amqp_conn_peer_has_anonymous_relay(const gw_amqp_conn_t *conn);
/**
 * Copy url into buf with the password of its user info replaced by "***"
 * ("amqp://u:secret@h:5672" -> "amqp://u:***@h:5672"), for logs: secrets
 * never go to a log line. Returns buf (truncated to cap, NUL-terminated).
 */
const char *gw_amqp_url_redact(const char *url, char *buf, size_t cap);
/** Retrieve the gw_amqp_conn_t of a proton connection driven by this module (or NULL). */
gw_amqp_conn_t *gw_amqp_conn_of(pn_connection_t *pn);

/* ------------------------------------------------------------------ */
/* Listener (services accept direct connections)                       */
/* ------------------------------------------------------------------ */

/**
 * Called for each accepted connection before any event; set its handler here.
 * gw_amqp_conn_destroy() here refuses the connection. Accepted connections are
 * independent of the listener (freeing the listener does not close them).
 */
typedef void (*gw_amqp_accept_fn)(gw_amqp_listener_t *lst, gw_amqp_conn_t *conn, void *ctx);

/**
 * Listen on host:port (port 0 = ephemeral; host NULL/"" = all). Incoming
 * connections answer the peer's open automatically (offering
 * ANONYMOUS-RELAY only if offer_anonymous_relay) and report UP; their
 * DOWN is always followed by CLOSED.
 */
gw_amqp_listener_t *gw_amqp_listen(struct event_base *base, const char *host, uint16_t port,
                                   const gw_amqp_opts_t *opts, bool offer_anonymous_relay,
                                   gw_amqp_accept_fn accept, void *ctx, gw_err_t *err);
uint16_t gw_amqp_listener_port(const gw_amqp_listener_t *lst);
void gw_amqp_listener_free(gw_amqp_listener_t *lst);

/* ------------------------------------------------------------------ */
/* Link and message helpers                                            */
/* ------------------------------------------------------------------ */

/*
 * Sessions: pn_session(gw_amqp_conn_pn(c)) + pn_session_open() as usual. A
 * remote close/detach of a session or link that the application did not
 * answer in on_event is answered by the module right after on_event.
 * Closed links/sessions are not freed by the module before DOWN; call
 * pn_link_free() when done with a link on a long-lived connection.
 */

/** Open a sender: name, target address (NULL = anonymous relay), settle modes. */
pn_link_t *gw_amqp_sender_open(pn_session_t *ssn, const char *name, const char *target,
                               pn_snd_settle_mode_t snd, pn_rcv_settle_mode_t rcv);
/** True if a terminus's capabilities (a symbol, or an array or list of
 * symbols, AMQP 1.0 3.5.3/3.5.4) hold cap, e.g. the remote target of an
 * attach: gw_amqp_has_capability(pn_link_remote_target(l), "x"). */
bool gw_amqp_has_capability(pn_terminus_t *t, const char *cap);
/** gw_amqp_sender_open() whose target carries one capability symbol. */
pn_link_t *gw_amqp_sender_open_cap(pn_session_t *ssn, const char *name, const char *target,
                                   pn_snd_settle_mode_t snd, pn_rcv_settle_mode_t rcv,
                                   const char *capability);
/** Open a receiver on source address and grant credit. */
pn_link_t *gw_amqp_receiver_open(pn_session_t *ssn, const char *name, const char *source,
                                 pn_snd_settle_mode_t snd, pn_rcv_settle_mode_t rcv,
                                 int credit);
/** gw_amqp_receiver_open() whose source carries one capability symbol. */
pn_link_t *gw_amqp_receiver_open_cap(pn_session_t *ssn, const char *name, const char *source,
                                     pn_snd_settle_mode_t snd, pn_rcv_settle_mode_t rcv,
                                     int credit, const char *capability);

/**
 * Encode msg and send it as one delivery on sender (needs credit: returns
 * GW_ERR_AGAIN without sending if pn_link_credit() <= 0). Tag: an 8-byte
 * per-link counter. presettled: settle at once (QoS 0). Uses a per-connection
 * encode buffer, so steady-state sends do not allocate. conn may be NULL (found
 * from the link). *out (may be NULL): the unsettled delivery, NULL if presettled.
 * GW_ERR_STATE if the link is closed; GW_ERR_INVAL if msg does not encode.
 */
gw_err_t gw_amqp_send(gw_amqp_conn_t *conn, pn_link_t *sender, pn_message_t *msg,
                      bool presettled, pn_delivery_t **out);
/** gw_amqp_send() of an unsettled delivery whether or not there is credit:
 * proton keeps it, in order, until credit arrives (a client's last control
 * message, which must not wait for the client). */
gw_err_t gw_amqp_send_queued(gw_amqp_conn_t *conn, pn_link_t *sender, pn_message_t *msg,
                             pn_delivery_t **out);

/**
 * Read a complete incoming delivery (pn_delivery_readable, !partial) into msg
 * through a per-connection buffer, advancing the link. msg is cleared first
 * (proton's decode alone keeps old properties). GW_ERR_AGAIN if the
 * delivery is still partial; GW_ERR_SPEC_BODY if it is empty or does not decode;
 * GW_ERR_LIMIT if it is larger than max_size (0 = 16 MiB): checked against
 * the bytes proton holds before anything is copied, so also while partial.
 * On GW_ERR_LIMIT the caller settles the delivery (e.g. rejected with
 * "amqp:link:message-size-exceeded"); a complete oversized delivery has
 * already been advanced past. conn may be NULL (found from the link).
 */
gw_err_t gw_amqp_recv(gw_amqp_conn_t *conn, pn_delivery_t *dlv, pn_message_t *msg,
                      size_t max_size);

/**
 * Settle with a terminal outcome (PN_ACCEPTED, PN_REJECTED, PN_RELEASED,
 * PN_MODIFIED; 0 = settle without outcome), optionally with an error condition
 * (rejected only). The sender sees it as pn_delivery_remote_state() and
 * pn_disposition_condition(pn_delivery_remote()).
 */
void gw_amqp_settle(pn_delivery_t *dlv, uint64_t outcome, const char *cond, const char *desc);

/** Close a link with an error condition (NULL cond: clean detach/close). */
void gw_amqp_link_close(pn_link_t *link, const char *cond, const char *desc);

#endif
