/*
 * test_tls.c - the TLS module against real OpenSSL clients over loopback.
 *
 * Certificates (a CA, a second "rogue" CA, two server certificates, client
 * certificates) are made at test time with the OpenSSL API into a mkdtemp
 * directory. Each test starts a small libevent echo server on 127.0.0.1:0
 * in a second thread, accepting with gw_tls_server_bufferevent(); the
 * server records what it saw after each handshake (identity, verification,
 * failure). The client is plain blocking OpenSSL in the test thread, with
 * socket timeouts so that a broken server fails the test instead of hanging.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "gw/log.h"
#include "gw/tls.h"

/* ------------------------------------------------------------------ */
/* Certificates                                                        */
/* ------------------------------------------------------------------ */

#define SERIAL_A 0x1001
#define SERIAL_B 0x2002
#define SERIAL_SOON 0x3003

static char dir[64];
static char ca_pem[128], rogue_ca_pem[128];
static char srv_a_pem[128], srv_a_key[128], srv_b_pem[128], srv_b_key[128];
static char srv_soon_pem[128];
static char cli_pem[128], cli_key[128], rogue_cli_pem[128], rogue_cli_key[128];
static char live_pem[128], live_key[128]; /* rewritten by the reload tests */

static void path(char *out, const char *name)
{
    snprintf(out, 128, "%s/%s", dir, name);
}

static EVP_PKEY *mkkey(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* issuer NULL: self-signed CA. email may be NULL. */
static X509 *mkcert(const char *cn, const char *email, long serial, EVP_PKEY *key, X509 *issuer,
                    EVP_PKEY *issuer_key, long valid_secs, const char *san)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), valid_secs);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"gw-test", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    if (email)
        X509_NAME_add_entry_by_txt(n, "emailAddress", MBSTRING_UTF8,
                                   (const unsigned char *)email, -1, -1, 0);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509_set_pubkey(x, key);
    if (!issuer) {
        add_ext(x, NULL, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
    }
    if (san)
        add_ext(x, issuer, NID_subject_alt_name, san);
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    X509_NAME_free(n);
    return x;
}

static void write_cert(const char *p, X509 *x)
{
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
}

static void write_key(const char *p, EVP_PKEY *k)
{
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

static void write_text(const char *p, const char *text)
{
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void copy_file(const char *from, const char *to)
{
    char buf[8192];
    FILE *in = fopen(from, "r"), *out = fopen(to, "w");
    size_t n;
    assert_non_null(in);
    assert_non_null(out);
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/gw-test-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    EVP_PKEY *ca_k = mkkey(), *rca_k = mkkey(), *a_k = mkkey(), *b_k = mkkey(),
             *c_k = mkkey(), *rc_k = mkkey();
    X509 *ca = mkcert("Test CA", NULL, 1, ca_k, NULL, NULL, 86400 * 365, NULL);
    X509 *rca = mkcert("Rogue CA", NULL, 1, rca_k, NULL, NULL, 86400 * 365, NULL);
    X509 *a = mkcert("server-a", NULL, SERIAL_A, a_k, ca, ca_k, 86400 * 365,
                     "DNS:localhost,IP:127.0.0.1");
    X509 *b = mkcert("server-b", NULL, SERIAL_B, b_k, ca, ca_k, 86400 * 365,
                     "DNS:localhost,IP:127.0.0.1");
    X509 *soon = mkcert("server-soon", NULL, SERIAL_SOON, a_k, ca, ca_k, 86400 * 10, NULL);
    X509 *c = mkcert("device-42", "d42@example.com", 7, c_k, ca, ca_k, 86400, NULL);
    X509 *rc = mkcert("device-42", NULL, 8, rc_k, rca, rca_k, 86400, NULL);

    path(ca_pem, "ca.pem");
    path(rogue_ca_pem, "rogue-ca.pem");
    path(srv_a_pem, "a.pem");
    path(srv_a_key, "a.key");
    path(srv_b_pem, "b.pem");
    path(srv_b_key, "b.key");
    path(srv_soon_pem, "soon.pem");
    path(cli_pem, "cli.pem");
    path(cli_key, "cli.key");
    path(rogue_cli_pem, "rcli.pem");
    path(rogue_cli_key, "rcli.key");
    path(live_pem, "live.pem");
    path(live_key, "live.key");
    write_cert(ca_pem, ca);
    write_cert(rogue_ca_pem, rca);
    write_cert(srv_a_pem, a);
    write_key(srv_a_key, a_k);
    write_cert(srv_b_pem, b);
    write_key(srv_b_key, b_k);
    write_cert(srv_soon_pem, soon);
    write_cert(cli_pem, c);
    write_key(cli_key, c_k);
    write_cert(rogue_cli_pem, rc);
    write_key(rogue_cli_key, rc_k);

    X509 *xs[] = {ca, rca, a, b, soon, c, rc};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++)
        X509_free(xs[i]);
    EVP_PKEY *ks[] = {ca_k, rca_k, a_k, b_k, c_k, rc_k};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        EVP_PKEY_free(ks[i]);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    const char *files[] = {ca_pem,  rogue_ca_pem, srv_a_pem,     srv_a_key,     srv_b_pem,
                           srv_b_key, srv_soon_pem, cli_pem,     cli_key,       rogue_cli_pem,
                           rogue_cli_key, live_pem, live_key};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(files[i]);
    char p[128];
    path(p, "junk.pem");
    unlink(p);
    rmdir(dir);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Echo server in a second thread                                      */
/* ------------------------------------------------------------------ */

#define MAX_CONNS 64
#define MAX_RECS 64

struct rec {
    bool ok;            /* handshake completed */
    bool verified;      /* gw_tls_peer_verified() */
    gw_err_t cn_err, email_err, issuer_err;
    char cn[64], email[64], issuer[128], desc[160];
    unsigned long ssl_err; /* failure: bufferevent_get_openssl_error() */
};

struct harness;
struct conn {
    struct harness *h;
    struct bufferevent *bev;
    bool recorded;
};

struct harness {
    gw_tls_server_t *tls;
    struct event_base *base;
    struct evconnlistener *lis;
    struct event *stop_ev;
    int stop_pipe[2];
    int port;
    pthread_t thr;
    struct conn conns[MAX_CONNS]; /* server thread only (main after join) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct rec recs[MAX_RECS];
    int nrec;
    int n_eof, n_err; /* closes of established connections, by event */
    bool close_notify; /* on "bye": gw_tls_shutdown() before freeing */
};

static void record(struct conn *c, bool ok)
{
    struct harness *h = c->h;
    struct rec r;
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

    memset(&r, 0, sizeof r);
    r.ok = ok;
    if (ok) {
        r.verified = gw_tls_peer_verified(ssl);
        r.cn_err = gw_tls_peer_identity(ssl, NULL, r.cn, sizeof r.cn, NULL);
        r.email_err = gw_tls_peer_identity(ssl, "emailAddress", r.email, sizeof r.email, NULL);
        r.issuer_err = gw_tls_peer_issuer(ssl, r.issuer, sizeof r.issuer);
        gw_tls_describe(ssl, r.desc, sizeof r.desc);
    } else {
        r.ssl_err = bufferevent_get_openssl_error(c->bev);
    }
    c->recorded = true;
    pthread_mutex_lock(&h->mu);
    if (h->nrec < MAX_RECS)
        h->recs[h->nrec++] = r;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static void conn_close(struct conn *c)
{
    bufferevent_free(c->bev);
    c->bev = NULL;
}

/* Echo; "bye" makes the server close (with gw_tls_shutdown() if the
 * harness says so). */
static void echo_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (evbuffer_get_length(in) == 3 && memcmp(evbuffer_pullup(in, 3), "bye", 3) == 0) {
        if (__atomic_load_n(&c->h->close_notify, __ATOMIC_ACQUIRE))
            gw_tls_shutdown(bufferevent_openssl_get_ssl(bev));
        conn_close(c);
        return;
    }
    evbuffer_add_buffer(bufferevent_get_output(bev), in);
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        record(c, true);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (!c->recorded) {
            record(c, false);
        } else {
            pthread_mutex_lock(&c->h->mu);
            if (what & BEV_EVENT_ERROR)
                c->h->n_err++;
            else
                c->h->n_eof++;
            pthread_cond_broadcast(&c->h->cv);
            pthread_mutex_unlock(&c->h->mu);
        }
        conn_close(c);
    }
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct harness *h = arg;
    struct conn *c = NULL;
    gw_err_t err;
    (void)lis, (void)sa, (void)salen;

    for (int i = 0; i < MAX_CONNS; i++)
        if (!h->conns[i].bev) {
            c = &h->conns[i];
            break;
        }
    if (!c) {
        close(fd);
        return;
    }
    c->h = h;
    c->recorded = false;
    c->bev = gw_tls_server_bufferevent(h->tls, h->base, fd, 0, &err);
    if (!c->bev) {
        close(fd);
        return;
    }
    bufferevent_setcb(c->bev, echo_read, NULL, conn_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* Orderly stop in the server thread: free every connection and the
 * listener, then let the loop run dry so that the bufferevents' deferred
 * callbacks and finalizers run (a loopbreak would leak them). */
static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct harness *h = arg;
    (void)fd, (void)what;
    for (int i = 0; i < MAX_CONNS; i++)
        if (h->conns[i].bev)
            conn_close(&h->conns[i]);
    evconnlistener_free(h->lis);
    h->lis = NULL;
}

static void *server_thread(void *arg)
{
    struct harness *h = arg;
    event_base_dispatch(h->base);
    return NULL;
}

/* Start a server with cfg; the TLS object must load. */
static struct harness *harness_start(const gw_tls_server_config_t *cfg)
{
    struct harness *h = calloc(1, sizeof *h);
    char errbuf[GW_TLS_ERRBUF];
    struct sockaddr_in sin;
    socklen_t slen = sizeof sin;

    assert_non_null(h);
    gw_err_t err = gw_tls_server_new(cfg, &h->tls, errbuf);
    if (err != GW_OK)
        fail_msg("gw_tls_server_new: %s: %s", gw_err_name(err), errbuf);
    h->base = event_base_new();
    assert_non_null(h->base);
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = 0;
    h->lis = evconnlistener_new_bind(h->base, on_accept, h,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                     (struct sockaddr *)&sin, sizeof sin);
    assert_non_null(h->lis);
    assert_int_equal(getsockname(evconnlistener_get_fd(h->lis), (struct sockaddr *)&sin, &slen),
                     0);
    h->port = ntohs(sin.sin_port);
    assert_int_equal(pipe(h->stop_pipe), 0);
    h->stop_ev = event_new(h->base, h->stop_pipe[0], EV_READ, on_stop, h);
    event_add(h->stop_ev, NULL);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    assert_int_equal(pthread_create(&h->thr, NULL, server_thread, h), 0);
    return h;
}

static void harness_stop(struct harness *h)
{
    assert_int_equal(write(h->stop_pipe[1], "x", 1), 1);
    pthread_join(h->thr, NULL);
    event_free(h->stop_ev);
    event_base_free(h->base);
    close(h->stop_pipe[0]);
    close(h->stop_pipe[1]);
    gw_tls_server_free(h->tls);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

/* Wait (up to 5 s) until the server has recorded record number idx. */
static struct rec wait_rec(struct harness *h, int idx)
{
    struct timespec dl;
    struct rec r = {0};
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    pthread_mutex_lock(&h->mu);
    while (h->nrec <= idx)
        if (pthread_cond_timedwait(&h->cv, &h->mu, &dl) == ETIMEDOUT)
            break;
    bool have = h->nrec > idx;
    if (have)
        r = h->recs[idx];
    pthread_mutex_unlock(&h->mu);
    if (!have)
        fail_msg("server recorded no handshake #%d within 5 s", idx);
    return r;
}

/* Wait (up to 5 s) until n_eof + n_err reaches n; returns n_eof. */
static int wait_closes(struct harness *h, int n)
{
    struct timespec dl;
    int eof;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    pthread_mutex_lock(&h->mu);
    while (h->n_eof + h->n_err < n)
        if (pthread_cond_timedwait(&h->cv, &h->mu, &dl) == ETIMEDOUT)
            break;
    bool have = h->n_eof + h->n_err >= n;
    eof = h->n_eof;
    pthread_mutex_unlock(&h->mu);
    if (!have)
        fail_msg("server saw no close #%d within 5 s", n);
    return eof;
}

/* ------------------------------------------------------------------ */
/* Blocking OpenSSL client                                             */
/* ------------------------------------------------------------------ */

/* Verifies the server against ca (if set); presents cert/key if set. */
static SSL_CTX *cli_ctx(const char *ca, const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    if (ca) {
        assert_int_equal(SSL_CTX_load_verify_file(ctx, ca), 1);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (cert) {
        assert_int_equal(SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
    }
    return ctx;
}

static int tcp_connect(int port)
{
    struct sockaddr_in sin;
    struct timeval tv = {5, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)port);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    return fd;
}

/* SSL_connect; NULL on failure with the OpenSSL error code in *err. */
static SSL *cli_connect(SSL_CTX *ctx, int port, SSL_SESSION *resume, unsigned long *err)
{
    int fd = tcp_connect(port);
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    SSL_set_fd(ssl, fd);
    if (resume)
        SSL_set_session(ssl, resume);
    ERR_clear_error();
    *err = 0;
    if (SSL_connect(ssl) != 1) {
        *err = ERR_peek_last_error();
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    return ssl;
}

static void cli_close(SSL *ssl)
{
    int fd;
    if (!ssl)
        return;
    fd = SSL_get_fd(ssl);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
}

/* Write msg, read it back: 0 on success, else -1 with the error in *err. */
static int cli_echo(SSL *ssl, const char *msg, unsigned long *err)
{
    char buf[256];
    size_t len = strlen(msg), got = 0;
    *err = 0;
    ERR_clear_error();
    if (SSL_write(ssl, msg, (int)len) != (int)len)
        goto fail;
    while (got < len) {
        int n = SSL_read(ssl, buf + got, (int)(sizeof buf - got));
        if (n <= 0)
            goto fail;
        got += (size_t)n;
    }
    return (got == len && memcmp(buf, msg, len) == 0) ? 0 : -1;
fail:
    *err = ERR_peek_last_error();
    ERR_clear_error();
    return -1;
}

static long peer_serial(SSL *ssl)
{
    X509 *x = SSL_get0_peer_certificate(ssl);
    assert_non_null(x);
    return ASN1_INTEGER_get(X509_get0_serialNumber(x));
}

static gw_tls_server_config_t base_cfg(void)
{
    gw_tls_server_config_t c;
    memset(&c, 0, sizeof c);
    c.cert_file = srv_a_pem;
    c.key_file = srv_a_key;
    c.name = "test";
    return c;
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

static void test_handshake_ok(void **state)
{
    (void)state;
    gw_tls_server_config_t cfg = base_cfg();
    struct harness *h = harness_start(&cfg);
    SSL_CTX *cc = cli_ctx(ca_pem, NULL, NULL);
    unsigned long e;

    SSL *ssl = cli_connect(cc, h->port, NULL, &e);
    if (!ssl)
        fail_msg("handshake failed: %s", ERR_error_string(e, NULL));
    assert_int_equal(SSL_get_verify_result(ssl), X509_V_OK);
    assert_int_equal(peer_serial(ssl), SERIAL_A);
    assert_int_equal(SSL_version(ssl), TLS1_3_VERSION);
    assert_int_equal(cli_echo(ssl, "hello over tls", &e), 0);
    struct rec r = wait_rec(h, 0);
    assert_true(r.ok);
    assert_false(r.verified);
    assert_int_equal(r.cn_err, GW_ERR_NOT_FOUND);
    assert_string_equal(r.cn, "");
    assert_int_equal(r.issuer_err, GW_ERR_NOT_FOUND);
    assert_non_null(strstr(r.desc, "TLSv1.3"));
    assert_non_null(strstr(r.desc, "alpn=-"));

    /* A TLS 1.2 client with an intermediate-list cipher is fine too. */
    SSL_CTX *c12 = cli_ctx(ca_pem, NULL, NULL);
    SSL_CTX_set_max_proto_version(c12, TLS1_2_VERSION);
    SSL *s12 = cli_connect(c12, h->port, NULL, &e);
    if (!s12)
        fail_msg("TLS 1.2 handshake failed: %s", ERR_error_string(e, NULL));
    assert_string_equal(SSL_get_version(s12), "TLSv1.2");
    assert_non_null(strstr(SSL_get_cipher_name(s12), "GCM"));
    assert_int_equal(cli_echo(s12, "twelve", &e), 0);
    /* A TLS 1.2 client insisting on a non-AEAD CBC cipher is refused. */
    SSL_CTX *ccbc = cli_ctx(ca_pem, NULL, NULL);
    SSL_CTX_set_max_proto_version(ccbc, TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_set_cipher_list(ccbc, "ECDHE-ECDSA-AES128-SHA"), 1);
    SSL *scbc = cli_connect(ccbc, h->port, NULL, &e);
    assert_null(scbc);
    assert_int_equal(ERR_GET_REASON(e), SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE);

    cli_close(s12); /* close_notify */
    assert_int_equal(wait_closes(h, 1), 1);
    /* A device losing power sends no close_notify: still a plain EOF. */
    close(SSL_get_fd(ssl));
    SSL_free(ssl);
    assert_int_equal(wait_closes(h, 2), 2);
    SSL_CTX_free(c12);
    SSL_CTX_free(ccbc);
    SSL_CTX_free(cc);
    harness_stop(h);
}

static void test_old_versions_refused(void **state)
{
    (void)state;
    gw_tls_server_config_t cfg = base_cfg();
    struct harness *h = harness_start(&cfg);
    unsigned long e;

    /* The client is made willing (security level 0) so that it is the
     * server's min version that refuses: protocol_version alert. */
    SSL_CTX *c11 = cli_ctx(ca_pem, NULL, NULL);
    assert_int_equal(SSL_CTX_set_cipher_list(c11, "DEFAULT:@SECLEVEL=0"), 1);
    SSL_CTX_set_min_proto_version(c11, TLS1_1_VERSION);
    SSL_CTX_set_max_proto_version(c11, TLS1_1_VERSION);
    SSL *s = cli_connect(c11, h->port, NULL, &e);
    assert_null(s);
    assert_int_equal(ERR_GET_REASON(e), SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);
    struct rec r = wait_rec(h, 0);
    assert_false(r.ok);
    assert_int_equal(ERR_GET_REASON(r.ssl_err), SSL_R_UNSUPPORTED_PROTOCOL);
    harness_stop(h);

    /* min_version 1.3: a TLS 1.2 client is refused, a 1.3 client is not. */
    cfg.min_version = GW_TLS_VERSION_1_3;
    h = harness_start(&cfg);
    SSL_CTX *c12 = cli_ctx(ca_pem, NULL, NULL);
    SSL_CTX_set_max_proto_version(c12, TLS1_2_VERSION);
    s = cli_connect(c12, h->port, NULL, &e);
    assert_null(s);
    assert_int_equal(ERR_GET_REASON(e), SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);
    SSL_CTX *c13 = cli_ctx(ca_pem, NULL, NULL);
    s = cli_connect(c13, h->port, NULL, &e);
    assert_non_null(s);
    assert_int_equal(cli_echo(s, "x", &e), 0);
    cli_close(s);
    harness_stop(h);
    SSL_CTX_free(c11);
    SSL_CTX_free(c12);
    SSL_CTX_free(c13);

    assert_int_equal(gw_tls_version_parse("1.3"), GW_TLS_VERSION_1_3);
    assert_int_equal(gw_tls_version_parse("TLSv1.2"), GW_TLS_VERSION_1_2);
    assert_int_equal(gw_tls_version_parse("1.1"), -1);
    assert_int_equal(gw_tls_client_cert_parse("Required"), GW_TLS_CLIENT_CERT_REQUIRED);
    assert_int_equal(gw_tls_client_cert_parse("maybe"), -1);
}

/* A client without a certificate (TLS 1.3: the server refuses after the
 * client's Finished, so the client sees it on its first read). */
static void expect_refused(struct harness *h, SSL_CTX *cc, int rec_idx, int client_reason)
{
    unsigned long e = 0;
    SSL *s = cli_connect(cc, h->port, NULL, &e);
    if (s) {
        /* Read, not write: data sent after the server gave up could make its
         * kernel answer RST, which would hide the alert. */
        char c;
        ERR_clear_error();
        assert_true(SSL_read(s, &c, 1) <= 0);
        e = ERR_peek_last_error();
        ERR_clear_error();
        cli_close(s);
    }
    assert_int_equal(ERR_GET_REASON(e), client_reason);
    struct rec r = wait_rec(h, rec_idx);
    assert_false(r.ok);
    assert_int_not_equal(r.ssl_err, 0);
}

static void test_client_cert_required(void **state)
{
    (void)state;
    gw_tls_server_config_t cfg = base_cfg();
    cfg.ca_file = ca_pem;
    cfg.client_cert = GW_TLS_CLIENT_CERT_REQUIRED;
    struct harness *h = harness_start(&cfg);
    unsigned long e;

    SSL_CTX *none = cli_ctx(ca_pem, NULL, NULL);
    expect_refused(h, none, 0, SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED);
    /* Same CN, signed by a CA the listener does not trust. */
    SSL_CTX *rogue = cli_ctx(ca_pem, rogue_cli_pem, rogue_cli_key);
    expect_refused(h, rogue, 1, SSL_R_TLSV1_ALERT_UNKNOWN_CA);

    SSL_CTX *good = cli_ctx(ca_pem, cli_pem, cli_key);
    SSL *s = cli_connect(good, h->port, NULL, &e);
    assert_non_null(s);
    assert_int_equal(cli_echo(s, "identified", &e), 0);
    struct rec r = wait_rec(h, 2);
    assert_true(r.ok);
    assert_true(r.verified);
    assert_int_equal(r.cn_err, GW_OK);
    assert_string_equal(r.cn, "device-42");
    assert_int_equal(r.email_err, GW_OK);
    assert_string_equal(r.email, "d42@example.com");
    assert_int_equal(r.issuer_err, GW_OK);
    assert_string_equal(r.issuer, "CN=Test CA,O=gw-test");

    /* Resumption (session id context set): identity survives. */
    SSL_SESSION *sess = SSL_get1_session(s);
    assert_non_null(sess);
    cli_close(s);
    SSL *s2 = cli_connect(good, h->port, sess, &e);
    assert_non_null(s2);
    assert_int_equal(cli_echo(s2, "resumed", &e), 0);
    assert_int_equal(SSL_session_reused(s2), 1);
    r = wait_rec(h, 3);
    assert_true(r.ok);
    assert_non_null(strstr(r.desc, "resumed=1"));
    assert_string_equal(r.cn, "device-42");
    cli_close(s2);
    SSL_SESSION_free(sess);

    SSL_CTX_free(none);
    SSL_CTX_free(rogue);
    SSL_CTX_free(good);
    harness_stop(h);
}

static void test_client_cert_optional(void **state)
{
    (void)state;
    gw_tls_server_config_t cfg = base_cfg();
    cfg.ca_file = ca_pem;
    cfg.client_cert = GW_TLS_CLIENT_CERT_OPTIONAL;
    struct harness *h = harness_start(&cfg);
    unsigned long e;

    SSL_CTX *none = cli_ctx(ca_pem, NULL, NULL);
    SSL *s = cli_connect(none, h->port, NULL, &e);
    assert_non_null(s);
    assert_int_equal(cli_echo(s, "anonymous", &e), 0);
    struct rec r = wait_rec(h, 0);
    assert_true(r.ok);
    assert_false(r.verified);
    assert_int_equal(r.cn_err, GW_ERR_NOT_FOUND);
    assert_string_equal(r.cn, "");
    cli_close(s);

    SSL_CTX *good = cli_ctx(ca_pem, cli_pem, cli_key);
    s = cli_connect(good, h->port, NULL, &e);
    assert_non_null(s);
    assert_int_equal(cli_echo(s, "identified", &e), 0);
    r = wait_rec(h, 1);
    assert_true(r.ok);
    assert_true(r.verified);
    assert_string_equal(r.cn, "device-42");
    assert_string_equal(r.email, "d42@example.com");
    cli_close(s);

    /* Optional does not mean unverified: a rogue certificate is refused. */
    SSL_CTX *rogue = cli_ctx(ca_pem, rogue_cli_pem, rogue_cli_key);
    expect_refused(h, rogue, 2, SSL_R_TLSV1_ALERT_UNKNOWN_CA);

    SSL_CTX_free(none);
    SSL_CTX_free(good);
    SSL_CTX_free(rogue);
    harness_stop(h);
}

static void expect_load_error(const gw_tls_server_config_t *cfg, gw_err_t want, const char *s1,
                              const char *s2)
{
    char errbuf[GW_TLS_ERRBUF];
    gw_tls_server_t *srv = (gw_tls_server_t *)1;
    gw_err_t err = gw_tls_server_new(cfg, &srv, errbuf);
    if (err != want)
        fail_msg("want %s got %s: %s", gw_err_name(want), gw_err_name(err), errbuf);
    assert_null(srv);
    if (s1 && !strstr(errbuf, s1))
        fail_msg("\"%s\" not in \"%s\"", s1, errbuf);
    if (s2 && !strstr(errbuf, s2))
        fail_msg("\"%s\" not in \"%s\"", s2, errbuf);
}

static void test_load_errors(void **state)
{
    (void)state;
    gw_tls_server_config_t cfg = base_cfg();
    char junk[128], missing[128];
    path(junk, "junk.pem");
    path(missing, "missing.pem");
    write_text(junk, "this is not PEM\n");

    cfg.key_file = srv_b_key; /* B's key, A's certificate */
    expect_load_error(&cfg, GW_ERR_CONFIG, srv_b_key, "key values mismatch");
    cfg = base_cfg();
    cfg.cert_file = missing;
    expect_load_error(&cfg, GW_ERR_IO, missing, "No such file");
    cfg = base_cfg();
    cfg.cert_file = junk;
    expect_load_error(&cfg, GW_ERR_CONFIG, junk, "no start line");
    cfg = base_cfg();
    cfg.key_file = junk;
    expect_load_error(&cfg, GW_ERR_CONFIG, junk, "private key");
    cfg = base_cfg();
    cfg.client_cert = GW_TLS_CLIENT_CERT_REQUIRED;
    expect_load_error(&cfg, GW_ERR_CONFIG, "ca_file", "required");
    cfg.ca_file = junk;
    expect_load_error(&cfg, GW_ERR_CONFIG, junk, "ca_file");
    cfg = base_cfg();
    cfg.ciphers = "NO-SUCH-CIPHER";
    expect_load_error(&cfg, GW_ERR_CONFIG, "NO-SUCH-CIPHER", "no cipher match");
    cfg = base_cfg();
    cfg.alpn = "mqtt,,x";
    expect_load_error(&cfg, GW_ERR_CONFIG, "alpn", NULL);
    cfg = base_cfg();
    cfg.key_file = NULL;
    expect_load_error(&cfg, GW_ERR_CONFIG, "key_file", NULL);
    /* Encrypted key: refused, never a pass phrase prompt. */
    {
        char enc[128];
        path(enc, "enc.key");
        BIO *in = BIO_new_file(srv_a_key, "r");
        EVP_PKEY *k = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
        BIO_free(in);
        assert_non_null(k);
        FILE *f = fopen(enc, "w");
        assert_non_null(f);
        assert_int_equal(PEM_write_PrivateKey(f, k, EVP_aes_128_cbc(), NULL, 0, NULL,
                                              (void *)"secret"),
                         1);
        fclose(f);
        EVP_PKEY_free(k);
        cfg = base_cfg();
        cfg.key_file = enc;
        expect_load_error(&cfg, GW_ERR_CONFIG, enc, "private key");
        unlink(enc);
    }
}

static void test_reload(void **state)
{
    (void)state;
    char errbuf[GW_TLS_ERRBUF], junk[128];
    unsigned long e;

    copy_file(srv_a_pem, live_pem);
    copy_file(srv_a_key, live_key);
    gw_tls_server_config_t cfg = base_cfg();
    cfg.cert_file = live_pem;
    cfg.key_file = live_key;
    struct harness *h = harness_start(&cfg);
    SSL_CTX *cc = cli_ctx(ca_pem, NULL, NULL);
    assert_int_equal(gw_tls_server_generation(h->tls), 1);

    SSL *before = cli_connect(cc, h->port, NULL, &e);
    assert_non_null(before);
    assert_int_equal(peer_serial(before), SERIAL_A);
    assert_int_equal(cli_echo(before, "one", &e), 0);

    /* New certificate and key in the same files. */
    copy_file(srv_b_pem, live_pem);
    copy_file(srv_b_key, live_key);
    gw_err_t err = gw_tls_server_reload(h->tls, errbuf);
    if (err != GW_OK)
        fail_msg("reload: %s", errbuf);
    assert_int_equal(gw_tls_server_generation(h->tls), 2);
    assert_int_equal(cli_echo(before, "still here", &e), 0);
    SSL *after = cli_connect(cc, h->port, NULL, &e);
    assert_non_null(after);
    assert_int_equal(peer_serial(after), SERIAL_B);
    assert_int_equal(cli_echo(after, "two", &e), 0);

    /* Half-written update (new cert, old key): refused, old context kept. */
    copy_file(srv_a_pem, live_pem);
    err = gw_tls_server_reload(h->tls, errbuf);
    assert_int_equal(err, GW_ERR_CONFIG);
    assert_non_null(strstr(errbuf, live_key));
    assert_non_null(strstr(errbuf, "mismatch"));
    path(junk, "junk.pem");
    write_text(junk, "garbage\n");
    copy_file(junk, live_pem);
    assert_int_equal(gw_tls_server_reload(h->tls, errbuf), GW_ERR_CONFIG);
    assert_non_null(strstr(errbuf, live_pem));
    unlink(live_key);
    assert_int_equal(gw_tls_server_reload(h->tls, errbuf), GW_ERR_IO);
    assert_non_null(strstr(errbuf, live_key));
    assert_int_equal(gw_tls_server_generation(h->tls), 2);

    SSL *third = cli_connect(cc, h->port, NULL, &e);
    assert_non_null(third);
    assert_int_equal(peer_serial(third), SERIAL_B);
    assert_int_equal(cli_echo(third, "three", &e), 0);
    assert_int_equal(cli_echo(before, "and still", &e), 0);
    assert_int_equal(cli_echo(after, "and still", &e), 0);

    cli_close(before);
    cli_close(after);
    cli_close(third);
    SSL_CTX_free(cc);
    harness_stop(h);
}

/* Workers create SSLs while the main thread reloads: every SSL gets a
 * complete context (A or B), nothing leaks or crashes under ASan. */
struct churn {
    gw_tls_server_t *tls;
    int stop; /* atomic */
    long made, bad;
};

static void *churn_thread(void *arg)
{
    struct churn *c = arg;
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        SSL *ssl = gw_tls_server_new_ssl(c->tls);
        X509 *x = ssl ? SSL_get_certificate(ssl) : NULL;
        long serial = x ? ASN1_INTEGER_get(X509_get0_serialNumber(x)) : -1;
        if (serial != SERIAL_A && serial != SERIAL_B)
            __atomic_add_fetch(&c->bad, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&c->made, 1, __ATOMIC_RELAXED);
        SSL_free(ssl);
    }
    return NULL;
}

static void test_reload_concurrent(void **state)
{
    (void)state;
    char errbuf[GW_TLS_ERRBUF];
    gw_tls_server_config_t cfg = base_cfg();
    cfg.cert_file = live_pem;
    cfg.key_file = live_key;
    copy_file(srv_a_pem, live_pem);
    copy_file(srv_a_key, live_key);
    struct churn c = {0};
    assert_int_equal(gw_tls_server_new(&cfg, &c.tls, errbuf), GW_OK);
    pthread_t t[2];
    gw_log_set_level(GW_LOG_LEVEL_WARN); /* 40 reloads x 2 INFO lines */
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn_thread, &c), 0);
    for (int i = 0; i < 40; i++) {
        copy_file(i % 2 ? srv_a_pem : srv_b_pem, live_pem);
        copy_file(i % 2 ? srv_a_key : srv_b_key, live_key);
        assert_int_equal(gw_tls_server_reload(c.tls, errbuf), GW_OK);
    }
    __atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    gw_log_set_level(GW_LOG_LEVEL_INFO);
    assert_int_equal(gw_tls_server_generation(c.tls), 41);
    assert_true(c.made > 0);
    assert_int_equal(c.bad, 0);
    SSL *last = gw_tls_server_new_ssl(c.tls);
    assert_int_equal(ASN1_INTEGER_get(X509_get0_serialNumber(SSL_get_certificate(last))),
                     SERIAL_A);
    SSL_free(last);
    gw_tls_server_free(c.tls);
    print_message("  %ld SSL objects created during 40 reloads\n", c.made);
}

static char *capture_load(const gw_tls_server_config_t *cfg)
{
    char errbuf[GW_TLS_ERRBUF], p[128];
    gw_tls_server_t *srv = NULL;
    path(p, "log.txt");
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    gw_log_set_fd(fd);
    gw_err_t err = gw_tls_server_new(cfg, &srv, errbuf);
    gw_log_set_fd(STDERR_FILENO);
    if (err != GW_OK)
        fail_msg("%s", errbuf);
    gw_tls_server_free(srv);
    off_t n = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)n + 1);
    assert_non_null(text);
    assert_int_equal(pread(fd, text, (size_t)n, 0), n);
    close(fd);
    unlink(p);
    return text;
}

/* TLS 1.2 session-id resumption after a server-side close: works only if
 * the server sent close_notify (gw_tls_shutdown), else OpenSSL evicts the
 * session from the server cache. The client ignores the missing
 * close_notify so that only the server side decides. */
static int resumed_after_server_close(bool close_notify)
{
    gw_tls_server_config_t cfg = base_cfg();
    struct harness *h = harness_start(&cfg);
    SSL_CTX *cc = cli_ctx(ca_pem, NULL, NULL);
    unsigned long e;
    char c;

    __atomic_store_n(&h->close_notify, close_notify, __ATOMIC_RELEASE);
    SSL_CTX_set_max_proto_version(cc, TLS1_2_VERSION);
    SSL_CTX_set_options(cc, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL *s = cli_connect(cc, h->port, NULL, &e);
    assert_non_null(s);
    assert_int_equal(cli_echo(s, "hi", &e), 0);
    assert_int_equal(SSL_write(s, "bye", 3), 3);
    assert_int_equal(SSL_read(s, &c, 1), 0); /* closed by the server */
    SSL_SESSION *sess = SSL_get1_session(s);
    cli_close(s);
    SSL *s2 = cli_connect(cc, h->port, sess, &e);
    assert_non_null(s2);
    assert_int_equal(cli_echo(s2, "again", &e), 0);
    int reused = SSL_session_reused(s2);
    cli_close(s2);
    SSL_SESSION_free(sess);
    SSL_CTX_free(cc);
    harness_stop(h);
    return reused;
}

static void test_shutdown_keeps_session(void **state)
{
    (void)state;
    assert_int_equal(resumed_after_server_close(true), 1);
    assert_int_equal(resumed_after_server_close(false), 0);
    gw_tls_shutdown(NULL);
}

static void test_log_expiry(void **state)
{
    (void)state;
    gw_tls_server_config_t cfg = base_cfg();
    cfg.client_cert = GW_TLS_CLIENT_CERT_OPTIONAL;
    cfg.ca_file = ca_pem;
    char *log = capture_load(&cfg);
    assert_non_null(strstr(log, "level=info"));
    assert_non_null(strstr(log, "CN=server-a,O=gw-test"));
    assert_non_null(strstr(log, "serial=1001"));
    assert_non_null(strstr(log, "not_after="));
    assert_non_null(strstr(log, "1 CA certificate(s)"));
    assert_null(strstr(log, "level=warn"));
    assert_null(strstr(log, "PRIVATE KEY"));
    free(log);

    cfg.cert_file = srv_soon_pem; /* same key as A, 10 days left */
    log = capture_load(&cfg);
    assert_non_null(strstr(log, "level=warn"));
    assert_non_null(strstr(log, "expires in"));
    assert_non_null(strstr(log, "server-soon"));
    free(log);
}

static SSL_CTX *alpn_ctx(const char *wire, unsigned len)
{
    SSL_CTX *c = cli_ctx(ca_pem, NULL, NULL);
    if (wire)
        assert_int_equal(SSL_CTX_set_alpn_protos(c, (const unsigned char *)wire, len), 0);
    return c;
}

static void test_alpn(void **state)
{
    (void)state;
    gw_tls_server_config_t cfg = base_cfg();
    cfg.alpn = "mqtt";
    struct harness *h = harness_start(&cfg);
    unsigned long e;
    const unsigned char *sel;
    unsigned sellen;

    SSL_CTX *m = alpn_ctx("\x02h2\x04mqtt", 8);
    SSL *s = cli_connect(m, h->port, NULL, &e);
    assert_non_null(s);
    SSL_get0_alpn_selected(s, &sel, &sellen);
    assert_int_equal(sellen, 4);
    assert_memory_equal(sel, "mqtt", 4);
    assert_int_equal(cli_echo(s, "a", &e), 0);
    assert_non_null(strstr(wait_rec(h, 0).desc, "alpn=mqtt"));
    cli_close(s);

    SSL_CTX *none = alpn_ctx(NULL, 0);
    s = cli_connect(none, h->port, NULL, &e);
    assert_non_null(s);
    assert_int_equal(cli_echo(s, "b", &e), 0);
    cli_close(s);

    SSL_CTX *h2 = alpn_ctx("\x02h2", 3);
    s = cli_connect(h2, h->port, NULL, &e);
    assert_null(s);
    assert_int_equal(ERR_GET_REASON(e), SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL);

    SSL_CTX_free(m);
    SSL_CTX_free(none);
    SSL_CTX_free(h2);
    harness_stop(h);
}

static void test_client_ctx(void **state)
{
    (void)state;
    char errbuf[GW_TLS_ERRBUF];
    gw_tls_server_config_t cfg = base_cfg();
    cfg.ca_file = ca_pem;
    cfg.client_cert = GW_TLS_CLIENT_CERT_REQUIRED;
    struct harness *h = harness_start(&cfg);
    SSL_CTX *cc = NULL;
    unsigned long e;

    assert_int_equal(gw_tls_client_ctx_new(ca_pem, cli_pem, cli_key, GW_TLS_VERSION_DEFAULT,
                                           &cc, errbuf),
                     GW_OK);
    int fd = tcp_connect(h->port);
    SSL *s = SSL_new(cc);
    SSL_set_fd(s, fd);
    SSL_set1_host(s, "localhost");
    SSL_set_tlsext_host_name(s, "localhost");
    assert_int_equal(SSL_connect(s), 1);
    assert_int_equal(cli_echo(s, "client helper", &e), 0);
    assert_string_equal(wait_rec(h, 0).cn, "device-42");
    cli_close(s);

    /* Wrong host name: the helper's context verifies it. */
    fd = tcp_connect(h->port);
    s = SSL_new(cc);
    SSL_set_fd(s, fd);
    SSL_set1_host(s, "evil.example");
    assert_int_not_equal(SSL_connect(s), 1);
    assert_int_equal(SSL_get_verify_result(s), X509_V_ERR_HOSTNAME_MISMATCH);
    ERR_clear_error();
    SSL_free(s);
    close(fd);
    SSL_CTX_free(cc);

    assert_int_equal(gw_tls_client_ctx_new(ca_pem, cli_pem, srv_a_key, GW_TLS_VERSION_DEFAULT,
                                           &cc, errbuf),
                     GW_ERR_CONFIG);
    assert_null(cc);
    assert_non_null(strstr(errbuf, srv_a_key));
    harness_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_ok),
        cmocka_unit_test(test_old_versions_refused),
        cmocka_unit_test(test_client_cert_required),
        cmocka_unit_test(test_client_cert_optional),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_reload_concurrent),
        cmocka_unit_test(test_shutdown_keeps_session),
        cmocka_unit_test(test_log_expiry),
        cmocka_unit_test(test_alpn),
        cmocka_unit_test(test_client_ctx),
    };
    signal(SIGPIPE, SIG_IGN);
    if (getenv("GW_TEST_FILTER"))
        cmocka_set_test_filter(getenv("GW_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
