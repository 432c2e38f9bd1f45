/*
 * amqp_internal.h - internals of the AMQP module shared with its unit tests
 * (tests/unit has core/src on its include path). Not part of the public API.
 */
#ifndef GW_AMQP_INTERNAL_H
#define GW_AMQP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <stddef.h>

#include <proton/types.h>

#include "gw/amqp.h"
#include "gw/error.h"

/** A parsed amqp[s]://[user[:pass]@]host[:port] URL. Strings owned by the struct. */
typedef struct gw_amqp_url {
    bool tls;        /* scheme amqps */
    char *user;      /* NULL if absent; percent-decoded */
    char *password;  /* NULL if absent; percent-decoded */
    char *host;      /* without IPv6 brackets */
    char port[8];    /* decimal; default 5672 / 5671 */
} gw_amqp_url_t;

/** Parse url into *out (zeroed first). GW_ERR_CONFIG on a malformed URL. */
gw_err_t gw_amqp__url_parse(const char *url, gw_amqp_url_t *out);
/** Free the strings of a parsed URL (the struct itself is not freed). */
void gw_amqp__url_clear(gw_amqp_url_t *url);

/**
 * Reconnect back-off with full jitter: the delay before attempt number
 * `attempt` (0 = first retry) is uniform in [0, min(max_ms, min_ms * 2^attempt)]
 * (rnd supplies the randomness). gw_amqp__backoff_ceiling() is that upper bound.
 */
uint32_t gw_amqp__backoff_ceiling(uint32_t min_ms, uint32_t max_ms, unsigned attempt);
uint32_t gw_amqp__backoff_delay(uint32_t min_ms, uint32_t max_ms, unsigned attempt, uint64_t rnd);

/** A 64-bit pseudo random number (xorshift, seeded once from time and pid). */
uint64_t gw_amqp__random(void);

/** Server side: check PLAIN credentials with the connection's configuration. */
bool gw_amqp__plain_verify(gw_amqp_conn_t *c, const char *user, const char *password);
/** Install our server SASL implementation (ANONYMOUS, EXTERNAL, PLAIN) on t. */
void gw_amqp__sasl_install_plain_server(pn_transport_t *t);

/** The connection's max_message_size option (default applied). */
uint64_t gw_amqp__max_message_size(const gw_amqp_conn_t *c);

/** The per-connection encode buffer (malloc'd by pn_message_encode2, freed with the conn). */
pn_rwbytes_t *gw_amqp__conn_encbuf(gw_amqp_conn_t *c);
/** The per-connection receive buffer grown to at least need bytes; NULL on OOM. */
char *gw_amqp__conn_recvbuf(gw_amqp_conn_t *c, size_t need);

#endif
