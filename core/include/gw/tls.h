/*
 * tls.h - TLS for the MQTT listeners (OpenSSL 3 + libevent bufferevent_openssl).
 *
 * A gw_tls_server_t holds the configuration (file names, policy) and the
 * current SSL_CTX built from it. gw_tls_server_reload() (the gateway calls
 * it on SIGHUP; this module installs no signal handler) builds a NEW SSL_CTX
 * from the same files; on success it replaces the current one for NEW
 * connections only. Connections already accepted keep the SSL_CTX they were
 * created with: every SSL holds a reference on its SSL_CTX (OpenSSL
 * refcount), which is freed with the last SSL. On failure the old context
 * stays in place and the error is returned; nothing is dropped either way.
 *
 * Threading: gw_tls_server_new_ssl(), gw_tls_server_bufferevent() and
 * gw_tls_server_generation() may be called from any number of threads
 * concurrently with one another and with gw_tls_server_reload(). The lock
 * is held only to take a reference on the current SSL_CTX (or to swap it),
 * never while a file is read or an SSL is built. Reloads themselves are
 * serialised. gw_tls_server_free() must not race with anything.
 *
 * Loading logs (module "tls", INFO) the subject, issuer, serial and notAfter
 * of the server certificate and the number of CA certificates; a WARN when
 * any of them expires within GW_TLS_EXPIRY_WARN_DAYS or has expired (the
 * load still succeeds: refusing would only keep an even older certificate).
 * Key material is never logged. Errors are not logged here: they are
 * returned in errbuf for the caller to log with its own context.
 *
 * Policy (docs/security.md, section TLS): TLS 1.2 minimum (1.0/1.1 are not
 * configurable), Mozilla "intermediate" TLS 1.2 ciphers, OpenSSL's TLS 1.3
 * suites, renegotiation off, session cache + tickets on (ticket keys are
 * random per SSL_CTX, so a reload rotates them), SSL_MODE_RELEASE_BUFFERS
 * (idle MQTT connections cost ~34 KiB less each), unexpected EOF treated as
 * a close (MQTT frames its own packets).
 */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "gw/error.h"

struct event_base;
struct bufferevent;

/* Size of the errbuf that gw_tls_server_new() / _reload() write into. */
#define GW_TLS_ERRBUF 1024
/* Certificates expiring within this many days are logged at WARN. */
#define GW_TLS_EXPIRY_WARN_DAYS 30
/* Mozilla "intermediate" (v5.7) TLS 1.2 cipher list: ECDHE/DHE + AEAD only. */
#define GW_TLS_DEFAULT_CIPHERS                                                                 \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                              \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                              \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                              \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
/* Default lifetime of cached sessions and tickets, seconds. */
#define GW_TLS_DEFAULT_SESSION_TIMEOUT 3600

/** Client certificate policy of a listener. */
typedef enum gw_tls_client_cert {
    GW_TLS_CLIENT_CERT_NONE = 0, /* not requested */
    GW_TLS_CLIENT_CERT_OPTIONAL, /* requested; if sent it must verify against ca_file */
    GW_TLS_CLIENT_CERT_REQUIRED, /* handshake fails without a verified certificate */
} gw_tls_client_cert_t;

/** Lowest protocol version accepted. */
typedef enum gw_tls_version {
    GW_TLS_VERSION_DEFAULT = 0, /* = GW_TLS_VERSION_1_2 */
    GW_TLS_VERSION_1_2,
    GW_TLS_VERSION_1_3,
} gw_tls_version_t;

/** "none" | "optional" | "required" -> value, -1 if unknown (config parsing). */
int gw_tls_client_cert_parse(const char *s);
/** "1.2" | "1.3" (also "TLSv1.2", "TLSv1.3") -> value, -1 if unknown. */
int gw_tls_version_parse(const char *s);

/**
 * Listener configuration. Strings are copied by gw_tls_server_new(); the
 * struct and its strings may be freed afterwards.
 */
typedef struct gw_tls_server_config {
    const char *cert_file;     /* PEM: server certificate first, then intermediates; required */
    const char *key_file;      /* PEM private key (unencrypted) matching cert_file; required */
    const char *ca_file;       /* PEM CA bundle for client certificates; required unless
                                * client_cert is NONE (then ignored) */
    const char *crl_file;      /* PEM CRLs of the CAs in ca_file; NULL/"" = no revocation
                                * check. With one, a client certificate verifies only if
                                * its issuer's CRL is there, current (nextUpdate not
                                * passed) and does not list it. Reloaded with the rest. */
    gw_tls_client_cert_t client_cert;
    gw_tls_version_t min_version;
    const char *ciphers;       /* TLS 1.2 cipher list; NULL/"" = GW_TLS_DEFAULT_CIPHERS */
    const char *ciphersuites;  /* TLS 1.3 suites; NULL/"" = OpenSSL's default */
    const char *alpn;          /* comma-separated ALPN protocols ("mqtt"); NULL/"" = no ALPN.
                                * A client offering ALPN without any of them is refused
                                * (no_application_protocol, RFC 7301 s.3.2); a client
                                * offering none is accepted. */
    int verify_depth;          /* client chain depth; 0 = OpenSSL's default (100) */
    int session_timeout;       /* seconds; 0 = GW_TLS_DEFAULT_SESSION_TIMEOUT */
    const char *name;          /* listener name for log lines; NULL = "mqtts" */
} gw_tls_server_config_t;

typedef struct gw_tls_server gw_tls_server_t;

/**
 * Validate cfg, load the files and build the first SSL_CTX. On GW_OK *out
 * is a new server (free with gw_tls_server_free()). On failure *out is NULL
 * and errbuf (GW_TLS_ERRBUF bytes, may be NULL) names the option, the file
 * and OpenSSL's reason, e.g.
 *   "key_file /etc/gw/key.pem: does not match cert_file /etc/gw/cert.pem
 *    (error:05800074:x509 certificate routines::key values mismatch)".
 * GW_ERR_IO: a file cannot be opened (errno text in errbuf);
 * GW_ERR_CONFIG: bad content, mismatch, bad cipher list or ALPN, missing
 * required option; GW_ERR_NOMEM.
 */
gw_err_t gw_tls_server_new(const gw_tls_server_config_t *cfg, gw_tls_server_t **out,
                           char *errbuf);

/**
 * Rebuild the SSL_CTX from the same files and options; on success new
 * connections use it at once, existing ones are untouched. On failure the
 * current context is kept and the error returned as for gw_tls_server_new().
 */
gw_err_t gw_tls_server_reload(gw_tls_server_t *srv, char *errbuf);

/** Free the server. SSLs created from it stay valid (they own their SSL_CTX). */
void gw_tls_server_free(gw_tls_server_t *srv);

/** Number of successful loads (1 after new, +1 per successful reload). */
uint64_t gw_tls_server_generation(gw_tls_server_t *srv);

/**
 * New server-side SSL from the current context, or NULL (out of memory).
 * The caller owns it (SSL_free() or hand it to a bufferevent).
 */
SSL *gw_tls_server_new_ssl(gw_tls_server_t *srv);

/**
 * New server-side SSL bufferevent for an accepted socket fd (non-blocking):
 * BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS | extra_opts, state
 * BUFFEREVENT_SSL_ACCEPTING, dirty shutdown allowed. The handshake runs
 * when the bufferevent is enabled; the event callback gets
 * BEV_EVENT_CONNECTED when it is done or BEV_EVENT_ERROR if it failed
 * (bufferevent_get_openssl_error() has the reason). On success the
 * bufferevent owns the SSL and the fd (both released by bufferevent_free()).
 * On failure (NULL; *err = GW_ERR_NOMEM, err may be NULL) nothing was
 * taken: the fd is still open and the caller's.
 */
struct bufferevent *gw_tls_server_bufferevent(gw_tls_server_t *srv, struct event_base *base,
                                              int fd, int extra_opts, gw_err_t *err);

/**
 * Orderly close: send close_notify (best effort, non-blocking, at most
 * once). Call it when the bufferevent's output has drained, just before
 * bufferevent_free(). Besides telling the client the close is deliberate,
 * it keeps the session resumable: OpenSSL drops a session from the server
 * cache when an SSL is freed without having sent close_notify. Harmless
 * after a failed handshake or a fatal error (then it does nothing). NULL
 * ignored.
 */
void gw_tls_shutdown(SSL *ssl);

/* ------------------------------------------------------------------ */
/* After the handshake                                                 */
/* ------------------------------------------------------------------ */

/**
 * The client's certificate if one was presented AND its chain verified
 * (borrowed; valid as long as ssl), else NULL. Use it with
 * gw_auth_certmap_tenant() and friends.
 */
X509 *gw_tls_peer_cert(SSL *ssl);

/** True if the client presented a certificate that verified. */
bool gw_tls_peer_verified(SSL *ssl);

/**
 * Identity of the verified client certificate: field as in
 * gw_auth_cert_identity() ("CN" when NULL, "emailAddress", "UID", ...).
 * GW_ERR_NOT_FOUND when there is no verified certificate (client_cert none,
 * or optional and not sent) or the field is absent; the other errors of
 * gw_auth_cert_identity(). out is "" on any error.
 */
gw_err_t gw_tls_peer_identity(SSL *ssl, const char *field, char *out, size_t cap, size_t *len);

/** Issuer DN (RFC 2253) of the verified client certificate; GW_ERR_NOT_FOUND without one. */
gw_err_t gw_tls_peer_issuer(SSL *ssl, char *out, size_t cap);

/**
 * One line for logs: "TLSv1.3 TLS_AES_128_GCM_SHA256 alpn=mqtt resumed=0"
 * into out[0..cap) (truncated if needed). Returns out.
 */
const char *gw_tls_describe(SSL *ssl, char *out, size_t cap);

/* ------------------------------------------------------------------ */
/* Client side (outgoing TLS that is not AMQP: proton's pn_ssl does that) */
/* ------------------------------------------------------------------ */

/**
 * A client SSL_CTX: peer verification against ca_file (NULL = the system
 * store), optional client certificate (cert_file + key_file, both or
 * neither), min_version as above. The caller sets the host name to verify
 * on each SSL with SSL_set1_host() and SNI with SSL_set_tlsext_host_name().
 * Free with SSL_CTX_free(). Errors as for gw_tls_server_new().
 */
gw_err_t gw_tls_client_ctx_new(const char *ca_file, const char *cert_file,
                               const char *key_file, gw_tls_version_t min_version,
                               SSL_CTX **out, char *errbuf);

#endif
