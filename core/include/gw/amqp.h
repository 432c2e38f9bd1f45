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
     * TLS client certificates). */
    const char *sasl_mechs;
    const char *username;      /* outgoing PLAIN; the URL's user info wins */
    const char *password;
    /* TLS: used when the URL scheme is amqps (outgoing) or tls is set (listener). */
    bool tls;
    const char *tls_ca_file;   /* peers verified against it when set */
    const char *tls_cert_file; /* PEM; our certificate (required for listeners) */
    const char *tls_key_file;
    bool tls_verify_peer;      /* outgoing: verify server name; incoming: require client cert */
    uint32_t idle_timeout_ms;  /* local idle time-out; 0 = none (heartbeats follow the peer's) */
    uint32_t max_frame_size;   /* 0 = proton default */
    /* Outgoing only: reconnect with exponential back-off and full jitter. */
    bool reconnect;
    uint32_t reconnect_min_ms; /* first delay, default 100 */
    uint32_t reconnect_max_ms; /* cap, default 10000 */
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
 * a failure gives DOWN then CLOSED. handler is copied; ctx is not owned.
 */
gw_amqp_conn_t *gw_amqp_connect(struct event_base *base, const char *url,
                                const gw_amqp_opts_t *opts, const gw_amqp_handler_t *handler,
                                void *ctx, gw_err_t *err);

/** Begin a graceful close (close frame, then wait for the peer up to 2 s). Ends in CLOSED. */
void gw_amqp_conn_close(gw_amqp_conn_t *conn, const char *cond, const char *desc);
/** Free now: socket closed, no callbacks. Safe inside a callback of this conn. */
void gw_amqp_conn_destroy(gw_amqp_conn_t *conn);
/** Schedule output of proton state changed outside a callback (idempotent, cheap). */
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
/** Retrieve the gw_amqp_conn_t of a proton connection driven by this module (or NULL). */
gw_amqp_conn_t *gw_amqp_conn_of(pn_connection_t *pn);

/* ------------------------------------------------------------------ */
/* Listener (services accept direct connections)                       */
/* ------------------------------------------------------------------ */

/** Called for each accepted connection before any event; set its handler here. */
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

/** Open a sender: name, target address (NULL = anonymous relay), settle modes. */
pn_link_t *gw_amqp_sender_open(pn_session_t *ssn, const char *name, const char *target,
                               pn_snd_settle_mode_t snd, pn_rcv_settle_mode_t rcv);
/** Open a receiver on source address and grant credit. */
pn_link_t *gw_amqp_receiver_open(pn_session_t *ssn, const char *name, const char *source,
                                 pn_snd_settle_mode_t snd, pn_rcv_settle_mode_t rcv,
                                 int credit);

/**
 * Encode msg and send it as one delivery on sender (needs credit: returns
 * GW_ERR_AGAIN without sending if pn_link_credit() <= 0). Tag: an 8-byte
 * per-link counter. presettled: settle at once (QoS 0). Uses a per-connection
 * encode buffer, so steady-state sends do not allocate.
 */
gw_err_t gw_amqp_send(gw_amqp_conn_t *conn, pn_link_t *sender, pn_message_t *msg,
                      bool presettled, pn_delivery_t **out);

/**
 * Read a complete incoming delivery (pn_delivery_readable, !partial) into msg
 * through a per-connection buffer, advancing the link. GW_ERR_AGAIN if the
 * delivery is still partial; GW_ERR_SPEC_BODY if it does not decode;
 * GW_ERR_LIMIT if it is larger than max_size (0 = 16 MiB).
 */
gw_err_t gw_amqp_recv(gw_amqp_conn_t *conn, pn_delivery_t *dlv, pn_message_t *msg,
                      size_t max_size);

/** Settle with a terminal outcome, optionally with an error condition (rejected). */
void gw_amqp_settle(pn_delivery_t *dlv, uint64_t outcome, const char *cond, const char *desc);

/** Close a link with an error condition (NULL cond: clean detach/close). */
void gw_amqp_link_close(pn_link_t *link, const char *cond, const char *desc);

#endif
