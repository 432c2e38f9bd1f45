/*
 * tls.c - TLS contexts for the MQTT listeners: load and validate, reload
 * with an atomic swap, SSL bufferevents, peer identity after the handshake.
 * Contract and policy: gw/tls.h; operator view: docs/security.md "TLS".
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "gw/auth.h"
#include "gw/log.h"
#include "gw/tls.h"

#define MOD "tls"
#define ALPN_WIRE_MAX 255 /* total bytes of the ALPN list we accept in config */
#define SESSION_CACHE_SIZE 20480L
#define NAME_STR_MAX 512

struct gw_tls_server {
    pthread_mutex_t lock;        /* guards ctx and generation */
    pthread_mutex_t reload_lock; /* serialises gw_tls_server_reload() */
    SSL_CTX *ctx;                /* current context; one reference owned here */
    uint64_t generation;
    /* copied configuration, immutable after new */
    char *cert_file, *key_file, *ca_file, *crl_file, *ciphers, *ciphersuites, *name;
    unsigned char alpn[ALPN_WIRE_MAX]; /* RFC 7301 wire format; alpn_len 0 = none */
    size_t alpn_len;
    gw_tls_client_cert_t client_cert;
    gw_tls_version_t min_version;
    int verify_depth, session_timeout;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static void set_err(char *errbuf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(char *errbuf, const char *fmt, ...)
{
    va_list ap;
    if (!errbuf)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, GW_TLS_ERRBUF, fmt, ap);
    va_end(ap);
}

/* The earliest error on OpenSSL's queue is the root cause ("no start line",
 * "key values mismatch"); the later ones only say which layer passed it up. */
static const char *ossl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, cap, "unknown OpenSSL error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

/* Never prompt for a pass phrase (a daemon has no terminal): encrypted keys
 * are refused with a clear error instead. */
static int no_password_cb(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* Open-check first so that "cannot open" (GW_ERR_IO, errno text) is told
 * apart from "cannot parse" (GW_ERR_CONFIG, OpenSSL's reason). */
static gw_err_t check_readable(const char *what, const char *path, char *errbuf)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(errbuf, "%s %s: cannot open: %s", what, path, strerror(errno));
        return GW_ERR_IO;
    }
    close(fd);
    return GW_OK;
}

static char *dup_opt(const char *s)
{
    return (s && *s) ? strdup(s) : NULL;
}

/* RFC 2253 form, UTF-8 kept, bounded. */
static void name_str(const X509_NAME *name, char *out, size_t cap)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n;

    snprintf(out, cap, "?");
    if (!bio)
        return;
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        n = BIO_get_mem_data(bio, &data);
        if (n >= 0 && data)
            snprintf(out, cap, "%.*s", (int)n, data);
    }
    BIO_free(bio);
}

static void serial_str(X509 *x, char *out, size_t cap)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    snprintf(out, cap, "%s", hex ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
}

static void time_str(const ASN1_TIME *t, char *out, size_t cap)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1 || strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, cap, "?");
}

/* Logs a WARN for an expired or soon-to-expire certificate; returns 1 if
 * it warned. what: "cert_file /path" or "ca_file /path". */
static int warn_expiry(const char *listener, const char *what, X509 *x)
{
    int days = 0, secs = 0;
    char subj[NAME_STR_MAX], when[32];

    if (!ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)))
        return 0;
    if (days > GW_TLS_EXPIRY_WARN_DAYS ||
        (days == GW_TLS_EXPIRY_WARN_DAYS && secs >= 0))
        return 0;
    name_str(X509_get_subject_name(x), subj, sizeof subj);
    time_str(X509_get0_notAfter(x), when, sizeof when);
    if (days < 0 || secs < 0)
        GW_LOG_WARN(MOD, listener, "%s: certificate \"%s\" EXPIRED not_after=%s", what, subj,
                    when);
    else
        GW_LOG_WARN(MOD, listener, "%s: certificate \"%s\" expires in %d days not_after=%s",
                    what, subj, days, when);
    return 1;
}

/* "mqtt,mqtt-v3" -> RFC 7301 ProtocolNameList (length-prefixed names). */
static gw_err_t alpn_wire(const char *list, unsigned char *out, size_t *outlen, char *errbuf)
{
    size_t n = 0;
    const char *p = list;

    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len > 255 || n + 1 + len > ALPN_WIRE_MAX) {
            set_err(errbuf, "alpn \"%s\": empty or too long protocol name", list);
            return GW_ERR_CONFIG;
        }
        out[n++] = (unsigned char)len;
        memcpy(out + n, p, len);
        n += len;
        p += len;
        if (*p == ',')
            p++;
    }
    if (n == 0) {
        set_err(errbuf, "alpn \"%s\": no protocol", list);
        return GW_ERR_CONFIG;
    }
    *outlen = n;
    return GW_OK;
}

/* ------------------------------------------------------------------ */
/* ALPN: the protocol list lives in the SSL_CTX's ex_data so that an SSL */
/* never points into a gw_tls_server_t that may already be freed.        */
/* ------------------------------------------------------------------ */

static int alpn_idx = -1;
static pthread_once_t alpn_once = PTHREAD_ONCE_INIT;

static void alpn_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    free(ptr);
}

static void alpn_idx_init(void)
{
    alpn_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, alpn_ex_free);
}

struct alpn_data {
    size_t len;
    unsigned char wire[];
};

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)arg;
    const struct alpn_data *a = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), alpn_idx);
    unsigned char *sel = NULL;
    unsigned char sellen = 0;

    if (!a)
        return SSL_TLSEXT_ERR_NOACK;
    /* Server preference order; OPENSSL_NPN_NEGOTIATED only on a real match. */
    if (SSL_select_next_proto(&sel, &sellen, a->wire, (unsigned)a->len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301 s.3.2: no_application_protocol */
    *out = sel;
    *outlen = sellen;
    return SSL_TLSEXT_ERR_OK;
}

/* ------------------------------------------------------------------ */
/* Building a context                                                  */
/* ------------------------------------------------------------------ */

static int proto_version(gw_tls_version_t v)
{
    return v == GW_TLS_VERSION_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

/* Certificate chain and key into ctx, key checked against the certificate. */
static gw_err_t load_cert_key(SSL_CTX *ctx, const char *cert_file, const char *key_file,
                              char *errbuf)
{
    char why[256];
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    gw_err_t err;

    if ((err = check_readable("cert_file", cert_file, errbuf)) != GW_OK ||
        (err = check_readable("key_file", key_file, errbuf)) != GW_OK)
        return err;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        set_err(errbuf, "cert_file %s: cannot load certificate chain (%s)", cert_file,
                ossl_reason(why, sizeof why));
        return GW_ERR_CONFIG;
    }
    bio = BIO_new_file(key_file, "r");
    if (!bio) {
        set_err(errbuf, "key_file %s: cannot open (%s)", key_file, ossl_reason(why, sizeof why));
        return GW_ERR_IO;
    }
    pkey = PEM_read_bio_PrivateKey(bio, NULL, no_password_cb, NULL);
    if (!pkey) {
        set_err(errbuf, "key_file %s: cannot load private key (%s)", key_file,
                ossl_reason(why, sizeof why));
        err = GW_ERR_CONFIG;
        goto cleanup;
    }
    /* use_PrivateKey refuses a key that does not match a certificate of its
     * type; check_private_key catches a key of another type (EC vs RSA). */
    if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        set_err(errbuf, "key_file %s: does not match cert_file %s (%s)", key_file, cert_file,
                ossl_reason(why, sizeof why));
        err = GW_ERR_CONFIG;
        goto cleanup;
    }
    err = GW_OK;
cleanup:
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    return err;
}

static void log_cert(const char *listener, const char *cert_file, X509 *x)
{
    char subj[NAME_STR_MAX], iss[NAME_STR_MAX], serial[80], nb[32], na[32], what[600];

    name_str(X509_get_subject_name(x), subj, sizeof subj);
    name_str(X509_get_issuer_name(x), iss, sizeof iss);
    serial_str(x, serial, sizeof serial);
    time_str(X509_get0_notBefore(x), nb, sizeof nb);
    time_str(X509_get0_notAfter(x), na, sizeof na);
    GW_LOG_INFO(MOD, listener,
                "cert_file %s: subject=\"%s\" issuer=\"%s\" serial=%s not_before=%s "
                "not_after=%s",
                cert_file, subj, iss, serial, nb, na);
    snprintf(what, sizeof what, "cert_file %s", cert_file);
    warn_expiry(listener, what, x);
}

/* CRLs for client certificates: every CRL of the PEM file into the trust
 * store, and revocation checked for the client's own certificate
 * (X509_V_FLAG_CRL_CHECK): its issuer's CRL must be present and current,
 * else the handshake fails (fail closed). */
static gw_err_t load_crl(SSL_CTX *ctx, const char *listener, const char *crl_file,
                         char *errbuf)
{
    char why[256];
    gw_err_t err;
    if ((err = check_readable("crl_file", crl_file, errbuf)) != GW_OK)
        return err;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    X509_LOOKUP *lu = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    ERR_clear_error();
    int n = lu ? X509_load_crl_file(lu, crl_file, X509_FILETYPE_PEM) : 0;
    if (n <= 0) {
        set_err(errbuf, "crl_file %s: no CRL loaded (%s)", crl_file, ossl_reason(why, sizeof why));
        return GW_ERR_CONFIG;
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i));
        if (!crl)
            continue;
        char iss[NAME_STR_MAX] = "?", next[64] = "none";
        X509_NAME_oneline(X509_CRL_get_issuer(crl), iss, sizeof iss);
        const ASN1_TIME *nu = X509_CRL_get0_nextUpdate(crl);
        if (nu)
            time_str(nu, next, sizeof next);
        int expired = nu && X509_cmp_current_time(nu) < 0;
        if (expired)
            GW_LOG_WARN(MOD, listener,
                        "crl_file %s: CRL of \"%s\" expired at %s: every client certificate "
                        "it covers is refused until a current CRL is loaded (SIGHUP)",
                        crl_file, iss, next);
        else
            GW_LOG_INFO(MOD, listener, "crl_file %s: CRL of \"%s\", %d revoked, next update %s",
                        crl_file, iss, sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), next);
    }
    return GW_OK;
}

/* CA bundle for client certificates: trust store + the CA names sent in
 * CertificateRequest (so a client with several certificates picks right). */
static gw_err_t load_client_ca(SSL_CTX *ctx, const char *listener, const char *ca_file,
                               char *errbuf)
{
    char why[256], what[600];
    STACK_OF(X509_NAME) *names;
    gw_err_t err;
    int ncerts = 0;

    if ((err = check_readable("ca_file", ca_file, errbuf)) != GW_OK)
        return err;
    ERR_clear_error();
    if (SSL_CTX_load_verify_file(ctx, ca_file) != 1) {
        set_err(errbuf, "ca_file %s: cannot load CA certificates (%s)", ca_file,
                ossl_reason(why, sizeof why));
        return GW_ERR_CONFIG;
    }
    names = SSL_load_client_CA_file(ca_file);
    if (!names || sk_X509_NAME_num(names) == 0) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        set_err(errbuf, "ca_file %s: no CA certificate in file (%s)", ca_file,
                ossl_reason(why, sizeof why));
        return GW_ERR_CONFIG;
    }
    SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
    snprintf(what, sizeof what, "ca_file %s", ca_file);
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (!x)
            continue;
        ncerts++;
        warn_expiry(listener, what, x);
    }
    GW_LOG_INFO(MOD, listener, "ca_file %s: %d CA certificate(s) for client verification",
                ca_file, ncerts);
    ERR_clear_error();
    return GW_OK;
}

static gw_err_t build_ctx(const gw_tls_server_t *s, SSL_CTX **out, char *errbuf)
{
    static const unsigned char sid_ctx[] = "gw-mqtt";
    char why[256];
    SSL_CTX *ctx;
    gw_err_t err;
    int mode;

    *out = NULL;
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        set_err(errbuf, "SSL_CTX_new: %s", ossl_reason(why, sizeof why));
        return GW_ERR_NOMEM;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_password_cb);
    if (!SSL_CTX_set_min_proto_version(ctx, proto_version(s->min_version))) {
        set_err(errbuf, "min_version: %s", ossl_reason(why, sizeof why));
        err = GW_ERR_CONFIG;
        goto fail;
    }
    if (SSL_CTX_set_cipher_list(ctx, s->ciphers ? s->ciphers : GW_TLS_DEFAULT_CIPHERS) != 1) {
        set_err(errbuf, "ciphers \"%s\": %s", s->ciphers ? s->ciphers : GW_TLS_DEFAULT_CIPHERS,
                ossl_reason(why, sizeof why));
        err = GW_ERR_CONFIG;
        goto fail;
    }
    if (s->ciphersuites && SSL_CTX_set_ciphersuites(ctx, s->ciphersuites) != 1) {
        set_err(errbuf, "ciphersuites \"%s\": %s", s->ciphersuites,
                ossl_reason(why, sizeof why));
        err = GW_ERR_CONFIG;
        goto fail;
    }
    SSL_CTX_set_dh_auto(ctx, 1); /* DHE-RSA suites of the default list */
    /* Renegotiation: a CPU DoS lever and useless for MQTT. Unexpected EOF:
     * MQTT frames its own packets, so a missing close_notify cannot truncate
     * a message undetected; report it as a plain close. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_NO_COMPRESSION);
    /* Idle MQTT connections dominate: free the 34 KiB of record buffers
     * while a connection has nothing in flight. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, SESSION_CACHE_SIZE);
    SSL_CTX_set_timeout(ctx, s->session_timeout);
    SSL_CTX_set_num_tickets(ctx, 1);
    /* Required for resumption as soon as client certificates are verified. */
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);

    if ((err = load_cert_key(ctx, s->cert_file, s->key_file, errbuf)) != GW_OK)
        goto fail;
    log_cert(s->name, s->cert_file, SSL_CTX_get0_certificate(ctx));
    {
        /* Intermediates expire too, and then every client fails alike. */
        STACK_OF(X509) *chain = NULL;
        char what[600];
        snprintf(what, sizeof what, "cert_file %s (chain)", s->cert_file);
        if (SSL_CTX_get0_chain_certs(ctx, &chain) == 1)
            for (int i = 0; i < sk_X509_num(chain); i++)
                warn_expiry(s->name, what, sk_X509_value(chain, i));
    }

    mode = SSL_VERIFY_NONE;
    if (s->client_cert != GW_TLS_CLIENT_CERT_NONE) {
        if ((err = load_client_ca(ctx, s->name, s->ca_file, errbuf)) != GW_OK)
            goto fail;
        if (s->crl_file && (err = load_crl(ctx, s->name, s->crl_file, errbuf)) != GW_OK)
            goto fail;
        mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
        if (s->client_cert == GW_TLS_CLIENT_CERT_REQUIRED)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        if (s->verify_depth > 0)
            SSL_CTX_set_verify_depth(ctx, s->verify_depth);
    }
    SSL_CTX_set_verify(ctx, mode, NULL);

    if (s->alpn_len) {
        struct alpn_data *a = malloc(sizeof *a + s->alpn_len);
        if (!a) {
            err = GW_ERR_NOMEM;
            set_err(errbuf, "out of memory");
            goto fail;
        }
        a->len = s->alpn_len;
        memcpy(a->wire, s->alpn, s->alpn_len);
        if (alpn_idx < 0 || !SSL_CTX_set_ex_data(ctx, alpn_idx, a)) {
            free(a);
            err = GW_ERR_NOMEM;
            set_err(errbuf, "alpn: cannot attach to SSL_CTX");
            goto fail;
        }
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
    }
    ERR_clear_error();
    *out = ctx;
    return GW_OK;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return err;
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */
/* ------------------------------------------------------------------ */

int gw_tls_client_cert_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcasecmp(s, "none"))
        return GW_TLS_CLIENT_CERT_NONE;
    if (!strcasecmp(s, "optional"))
        return GW_TLS_CLIENT_CERT_OPTIONAL;
    if (!strcasecmp(s, "required"))
        return GW_TLS_CLIENT_CERT_REQUIRED;
    return -1;
}

int gw_tls_version_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcasecmp(s, "1.2") || !strcasecmp(s, "TLSv1.2"))
        return GW_TLS_VERSION_1_2;
    if (!strcasecmp(s, "1.3") || !strcasecmp(s, "TLSv1.3"))
        return GW_TLS_VERSION_1_3;
    return -1;
}

static const char *client_cert_name(gw_tls_client_cert_t c)
{
    return c == GW_TLS_CLIENT_CERT_REQUIRED   ? "required"
           : c == GW_TLS_CLIENT_CERT_OPTIONAL ? "optional"
                                              : "none";
}

void gw_tls_server_free(gw_tls_server_t *srv)
{
    if (!srv)
        return;
    SSL_CTX_free(srv->ctx);
    pthread_mutex_destroy(&srv->lock);
    pthread_mutex_destroy(&srv->reload_lock);
    free(srv->cert_file);
    free(srv->key_file);
    free(srv->ca_file);
    free(srv->crl_file);
    free(srv->ciphers);
    free(srv->ciphersuites);
    free(srv->name);
    free(srv);
}

gw_err_t gw_tls_server_new(const gw_tls_server_config_t *cfg, gw_tls_server_t **out,
                           char *errbuf)
{
    gw_tls_server_t *s = NULL;
    gw_err_t err;

    if (errbuf)
        errbuf[0] = '\0';
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!cfg) {
        set_err(errbuf, "no TLS configuration");
        return GW_ERR_INVAL;
    }
    if (!cfg->cert_file || !*cfg->cert_file || !cfg->key_file || !*cfg->key_file) {
        set_err(errbuf, "cert_file and key_file are required");
        return GW_ERR_CONFIG;
    }
    if ((unsigned)cfg->client_cert > GW_TLS_CLIENT_CERT_REQUIRED ||
        (unsigned)cfg->min_version > GW_TLS_VERSION_1_3 || cfg->verify_depth < 0 ||
        cfg->session_timeout < 0) {
        set_err(errbuf, "client_cert, min_version, verify_depth or session_timeout out of range");
        return GW_ERR_CONFIG;
    }
    if (cfg->client_cert != GW_TLS_CLIENT_CERT_NONE && (!cfg->ca_file || !*cfg->ca_file)) {
        set_err(errbuf, "ca_file is required when client_cert is %s",
                client_cert_name(cfg->client_cert));
        return GW_ERR_CONFIG;
    }
    pthread_once(&alpn_once, alpn_idx_init);

    s = calloc(1, sizeof *s);
    if (!s)
        goto nomem;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        s = NULL;
        goto nomem;
    }
    if (pthread_mutex_init(&s->reload_lock, NULL) != 0) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        s = NULL;
        goto nomem;
    }
    s->client_cert = cfg->client_cert;
    s->min_version = cfg->min_version;
    s->verify_depth = cfg->verify_depth;
    s->session_timeout = cfg->session_timeout ? cfg->session_timeout
                                              : GW_TLS_DEFAULT_SESSION_TIMEOUT;
    s->cert_file = strdup(cfg->cert_file);
    s->key_file = strdup(cfg->key_file);
    s->name = strdup(cfg->name ? cfg->name : "mqtts");
    if (!s->cert_file || !s->key_file || !s->name)
        goto nomem;
    if (cfg->client_cert != GW_TLS_CLIENT_CERT_NONE && !(s->ca_file = strdup(cfg->ca_file)))
        goto nomem;
    if (cfg->client_cert != GW_TLS_CLIENT_CERT_NONE && cfg->crl_file && *cfg->crl_file &&
        !(s->crl_file = strdup(cfg->crl_file)))
        goto nomem;
    if ((cfg->ciphers && *cfg->ciphers && !(s->ciphers = dup_opt(cfg->ciphers))) ||
        (cfg->ciphersuites && *cfg->ciphersuites &&
         !(s->ciphersuites = dup_opt(cfg->ciphersuites))))
        goto nomem;
    if (cfg->alpn && *cfg->alpn &&
        (err = alpn_wire(cfg->alpn, s->alpn, &s->alpn_len, errbuf)) != GW_OK)
        goto fail;

    if ((err = build_ctx(s, &s->ctx, errbuf)) != GW_OK)
        goto fail;
    s->generation = 1;
    GW_LOG_INFO(MOD, s->name, "TLS context ready generation=1 min_version=%s client_cert=%s",
                s->min_version == GW_TLS_VERSION_1_3 ? "TLSv1.3" : "TLSv1.2",
                client_cert_name(s->client_cert));
    *out = s;
    return GW_OK;
nomem:
    err = GW_ERR_NOMEM;
    set_err(errbuf, "out of memory");
fail:
    gw_tls_server_free(s);
    return err;
}

gw_err_t gw_tls_server_reload(gw_tls_server_t *srv, char *errbuf)
{
    SSL_CTX *fresh = NULL, *old;
    uint64_t gen;
    gw_err_t err;

    if (errbuf)
        errbuf[0] = '\0';
    if (!srv)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&srv->reload_lock);
    /* Built without the swap lock: workers keep creating SSLs from the old
     * context while the files are read. */
    err = build_ctx(srv, &fresh, errbuf);
    if (err == GW_OK) {
        pthread_mutex_lock(&srv->lock);
        old = srv->ctx;
        srv->ctx = fresh;
        gen = ++srv->generation;
        pthread_mutex_unlock(&srv->lock);
        /* Drops only our reference: SSLs made from it keep it alive. */
        SSL_CTX_free(old);
        GW_LOG_INFO(MOD, srv->name, "TLS context reloaded generation=%llu",
                    (unsigned long long)gen);
    }
    pthread_mutex_unlock(&srv->reload_lock);
    return err;
}

uint64_t gw_tls_server_generation(gw_tls_server_t *srv)
{
    uint64_t g;
    pthread_mutex_lock(&srv->lock);
    g = srv->generation;
    pthread_mutex_unlock(&srv->lock);
    return g;
}

SSL *gw_tls_server_new_ssl(gw_tls_server_t *srv)
{
    SSL_CTX *ctx;
    SSL *ssl;

    if (!srv)
        return NULL;
    /* Take a reference under the lock, build the SSL outside it: the
     * critical section is two loads and an atomic increment. */
    pthread_mutex_lock(&srv->lock);
    ctx = srv->ctx;
    SSL_CTX_up_ref(ctx);
    pthread_mutex_unlock(&srv->lock);
    ssl = SSL_new(ctx); /* takes its own reference */
    SSL_CTX_free(ctx);
    return ssl;
}

struct bufferevent *gw_tls_server_bufferevent(gw_tls_server_t *srv, struct event_base *base,
                                              int fd, int extra_opts, gw_err_t *err)
{
    struct bufferevent *bev;
    SSL *ssl;

    if (err)
        *err = GW_OK;
    if (!srv || !base || fd < 0) {
        if (err)
            *err = GW_ERR_INVAL;
        return NULL;
    }
    ssl = gw_tls_server_new_ssl(srv);
    if (!ssl)
        goto nomem;
    /* libevent wraps fd in a BIO_NOCLOSE socket BIO and closes fd itself
     * on bufferevent_free() when BEV_OPT_CLOSE_ON_FREE is set. */
    bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS |
                                             extra_opts);
    if (!bev) {
        SSL_free(ssl); /* its BIO does not own fd */
        goto nomem;
    }
    /* A peer that just closes the socket is a close, not an error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
nomem:
    ERR_clear_error();
    if (err)
        *err = GW_ERR_NOMEM;
    return NULL;
}

void gw_tls_shutdown(SSL *ssl)
{
    if (!ssl || !SSL_is_init_finished(ssl) || (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
        return;
    /* The fd is non-blocking: if the alert cannot be written now it is not
     * retried (we are about to close); SENT_SHUTDOWN is set either way. */
    (void)SSL_shutdown(ssl);
    ERR_clear_error();
}

X509 *gw_tls_peer_cert(SSL *ssl)
{
    X509 *cert;
    if (!ssl || !SSL_is_init_finished(ssl))
        return NULL;
    cert = SSL_get0_peer_certificate(ssl);
    /* X509_V_OK is also what an unverified session reports; a cert is only
     * trusted when the context asked for verification. */
    if (!cert || SSL_get_verify_result(ssl) != X509_V_OK ||
        !(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
        return NULL;
    return cert;
}

bool gw_tls_peer_verified(SSL *ssl)
{
    return gw_tls_peer_cert(ssl) != NULL;
}

gw_err_t gw_tls_peer_identity(SSL *ssl, const char *field, char *out, size_t cap, size_t *len)
{
    X509 *cert;
    if (len)
        *len = 0;
    if (!out || cap == 0)
        return GW_ERR_INVAL;
    out[0] = '\0';
    cert = gw_tls_peer_cert(ssl);
    if (!cert)
        return GW_ERR_NOT_FOUND;
    return gw_auth_cert_identity(cert, field, out, cap, len);
}

gw_err_t gw_tls_peer_issuer(SSL *ssl, char *out, size_t cap)
{
    X509 *cert;
    if (!out || cap == 0)
        return GW_ERR_INVAL;
    out[0] = '\0';
    cert = gw_tls_peer_cert(ssl);
    if (!cert)
        return GW_ERR_NOT_FOUND;
    return gw_auth_cert_issuer(cert, out, cap);
}

const char *gw_tls_describe(SSL *ssl, char *out, size_t cap)
{
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;

    if (!out || cap == 0)
        return out;
    if (!ssl) {
        snprintf(out, cap, "no-tls");
        return out;
    }
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    snprintf(out, cap, "%s %s alpn=%.*s resumed=%d", SSL_get_version(ssl),
             SSL_get_cipher_name(ssl), alpn ? (int)alpn_len : 1,
             alpn ? (const char *)alpn : "-", SSL_session_reused(ssl));
    return out;
}

gw_err_t gw_tls_client_ctx_new(const char *ca_file, const char *cert_file,
                               const char *key_file, gw_tls_version_t min_version,
                               SSL_CTX **out, char *errbuf)
{
    char why[256];
    SSL_CTX *ctx;
    gw_err_t err;

    if (errbuf)
        errbuf[0] = '\0';
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if ((unsigned)min_version > GW_TLS_VERSION_1_3 || (!cert_file) != (!key_file)) {
        set_err(errbuf, "cert_file and key_file go together; min_version out of range");
        return GW_ERR_CONFIG;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        set_err(errbuf, "SSL_CTX_new: %s", ossl_reason(why, sizeof why));
        return GW_ERR_NOMEM;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_password_cb);
    SSL_CTX_set_min_proto_version(ctx, proto_version(min_version));
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file) {
        if ((err = check_readable("ca_file", ca_file, errbuf)) != GW_OK)
            goto fail;
        if (SSL_CTX_load_verify_file(ctx, ca_file) != 1) {
            set_err(errbuf, "ca_file %s: cannot load CA certificates (%s)", ca_file,
                    ossl_reason(why, sizeof why));
            err = GW_ERR_CONFIG;
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        set_err(errbuf, "system CA store: %s", ossl_reason(why, sizeof why));
        err = GW_ERR_CONFIG;
        goto fail;
    }
    if (cert_file && (err = load_cert_key(ctx, cert_file, key_file, errbuf)) != GW_OK)
        goto fail;
    ERR_clear_error();
    *out = ctx;
    return GW_OK;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return err;
}
