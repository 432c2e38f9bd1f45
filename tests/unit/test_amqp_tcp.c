/*
 * test_amqp_tcp.c - gw_amqp_listen + gw_amqp_connect over 127.0.0.1 on
 * ephemeral ports: UP both sides, SASL failure, reconnect with capped
 * exponential back-off (attempt timestamps), back-off reset after UP, and
 * idle time-out against a peer that never answers. All waits are bounded
 * event-loop runs (no sleeps).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <proton/condition.h>

#include "amqp/amqp_internal.h"
#include "amqp_test_util.h"
#include "gw/amqp.h"
#include "gw/log.h"

#define WAIT_MS 10000
#define MAX_ATTEMPTS 64

typedef struct tside {
    gw_amqp_conn_t *conn;
    int up, down, closed;
    char user[64]; /* gw_amqp_conn_user() at UP */
    char cond[128];
    int64_t down_ms[MAX_ATTEMPTS];
    char down_conds[MAX_ATTEMPTS][64];
} tside_t;

typedef struct tctx {
    struct event_base *base;
    tside_t cli;
    tside_t srv; /* the (last) accepted connection */
    int accepted;
} tctx_t;

static void t_state(gw_amqp_conn_t *conn, gw_amqp_state_t st, const char *cond, const char *desc,
                    void *arg)
{
    tside_t *s = arg;
    switch (st) {
    case GW_AMQP_UP: {
        s->up++;
        const char *u = gw_amqp_conn_user(conn);
        snprintf(s->user, sizeof(s->user), "%s", u ? u : "(null)");
        break;
    }
    case GW_AMQP_DOWN:
        if (s->down < MAX_ATTEMPTS) {
            s->down_ms[s->down] = gw_test_now_ms();
            snprintf(s->down_conds[s->down], sizeof(s->down_conds[0]), "%s", cond ? cond : "");
        }
        s->down++;
        snprintf(s->cond, sizeof(s->cond), "%s", cond ? cond : "");
        if (getenv("GW_TEST_VERBOSE"))
            fprintf(stderr, "# DOWN %s %s\n", cond ? cond : "-", desc ? desc : "-");
        break;
    case GW_AMQP_CLOSED:
        s->closed++;
        s->conn = NULL;
        break;
    }
}

static const gw_amqp_handler_t t_handler = {NULL, t_state};

static void t_accept(gw_amqp_listener_t *l, gw_amqp_conn_t *conn, void *arg)
{
    tctx_t *t = arg;
    t->accepted++;
    memset(&t->srv, 0, sizeof(t->srv));
    t->srv.conn = conn;
    gw_amqp_conn_set_handler(conn, &t_handler, &t->srv);
}

static bool both_up(void *arg)
{
    tctx_t *t = arg;
    return t->cli.up > 0 && t->srv.up > 0;
}

static bool both_closed(void *arg)
{
    tctx_t *t = arg;
    return t->cli.conn == NULL && t->srv.conn == NULL;
}

static bool cli_closed(void *arg)
{
    tctx_t *t = arg;
    return t->cli.conn == NULL;
}

static void t_teardown(tctx_t *t)
{
    if (t->cli.conn)
        gw_amqp_conn_close(t->cli.conn, NULL, NULL);
    gw_test_run_until(t->base, both_closed, t, WAIT_MS);
    if (t->cli.conn)
        gw_amqp_conn_destroy(t->cli.conn);
    if (t->srv.conn)
        gw_amqp_conn_destroy(t->srv.conn);
}

static void connect_and_close(const char *host, const char *urlhost)
{
    tctx_t t = {0};
    t.base = event_base_new();
    gw_err_t err;
    gw_amqp_listener_t *l = gw_amqp_listen(t.base, host, 0, NULL, true, t_accept, &t, &err);
    if (!l && strchr(host, ':')) {
        event_base_free(t.base);
        print_message("# IPv6 loopback unavailable, skipped\n");
        return;
    }
    assert_non_null(l);
    uint16_t port = gw_amqp_listener_port(l);
    assert_true(port > 0);
    char url[128];
    snprintf(url, sizeof(url), "amqp://%s:%u", urlhost, port);
    gw_amqp_opts_t o = {.container_id = "tcp-client"};
    t.cli.conn = gw_amqp_connect(t.base, url, &o, &t_handler, &t.cli, &err);
    assert_non_null(t.cli.conn);
    assert_null(gw_amqp_conn_pn(t.cli.conn)); /* connect happens in the loop */
    assert_true(gw_test_run_until(t.base, both_up, &t, WAIT_MS));
    assert_int_equal(t.accepted, 1);
    assert_true(gw_amqp_conn_peer_has_anonymous_relay(t.cli.conn));
    char want[64];
    snprintf(want, sizeof(want), "%s:%u", urlhost, port);
    assert_string_equal(gw_amqp_conn_peer(t.cli.conn), want);
    assert_string_equal(pn_connection_remote_container(gw_amqp_conn_pn(t.srv.conn)), "tcp-client");
    /* graceful close with a condition: the server sees it as its DOWN reason */
    gw_amqp_conn_close(t.cli.conn, "amqp:connection:forced", "test over");
    assert_true(gw_test_run_until(t.base, both_closed, &t, WAIT_MS));
    assert_string_equal(t.srv.cond, "amqp:connection:forced");
    assert_int_equal(t.srv.down, 1);
    assert_int_equal(t.srv.closed, 1);
    assert_int_equal(t.cli.down, 1);
    assert_int_equal(t.cli.closed, 1);
    gw_amqp_listener_free(l);
    event_base_free(t.base);
}

static void test_listen_connect_v4(void **state) { connect_and_close("127.0.0.1", "127.0.0.1"); }
static void test_listen_connect_v6(void **state) { connect_and_close("::1", "[::1]"); }

static void test_sasl_failure(void **state)
{
    tctx_t t = {0};
    t.base = event_base_new();
    gw_err_t err;
    gw_amqp_listener_t *l = gw_amqp_listen(t.base, "127.0.0.1", 0, NULL, false, t_accept, &t, &err);
    assert_non_null(l);
    char url[128];
    /* PLAIN credentials against a listener offering only ANONYMOUS */
    snprintf(url, sizeof(url), "amqp://user:secret@127.0.0.1:%u", gw_amqp_listener_port(l));
    t.cli.conn = gw_amqp_connect(t.base, url, NULL, &t_handler, &t.cli, &err);
    assert_non_null(t.cli.conn);
    assert_true(gw_test_run_until(t.base, cli_closed, &t, WAIT_MS));
    assert_int_equal(t.cli.up, 0);
    assert_int_equal(t.cli.down, 1);
    assert_int_equal(t.cli.closed, 1);
    assert_string_equal(t.cli.cond, "amqp:unauthorized-access");
    t_teardown(&t);
    gw_amqp_listener_free(l);
    event_base_free(t.base);
}

/* A port on 127.0.0.1 that was free a moment ago. */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

typedef struct { tctx_t *t; int n; } downs_t;

static bool cli_downs(void *arg)
{
    downs_t *d = arg;
    return d->t->cli.down >= d->n;
}

static bool cli_up(void *arg)
{
    tctx_t *t = arg;
    return t->cli.up > 0 && t->srv.up > 0;
}

#define RC_MIN 10
#define RC_MAX 80
#define SLACK 60

static void test_reconnect_backoff(void **state)
{
    tctx_t t = {0};
    t.base = event_base_new();
    uint16_t port = free_port();
    char url[64];
    snprintf(url, sizeof(url), "amqp://127.0.0.1:%u", port);
    gw_amqp_opts_t o = {.reconnect = true, .reconnect_min_ms = RC_MIN, .reconnect_max_ms = RC_MAX};
    gw_err_t err;
    t.cli.conn = gw_amqp_connect(t.base, url, &o, &t_handler, &t.cli, &err);
    assert_non_null(t.cli.conn);
    /* nothing listens: attempts fail, each one reports DOWN gw:connect-failed */
    downs_t d = {&t, 10};
    assert_true(gw_test_run_until(t.base, cli_downs, &d, WAIT_MS));
    int maxd = 0, late_max = 0;
    for (int i = 0; i + 1 < t.cli.down && i + 1 < MAX_ATTEMPTS; i++) {
        assert_string_equal(t.cli.down_conds[i], "gw:connect-failed");
        int delay = (int)(t.cli.down_ms[i + 1] - t.cli.down_ms[i]);
        uint32_t ceiling = gw_amqp__backoff_ceiling(RC_MIN, RC_MAX, (unsigned)i);
        if (getenv("GW_TEST_VERBOSE"))
            fprintf(stderr, "# attempt %d delay %d ms (ceiling %u)\n", i + 1, delay, ceiling);
        assert_true(delay <= (int)ceiling + SLACK); /* grows at most x2, capped */
        if (delay > maxd)
            maxd = delay;
        if (i >= 4 && delay > late_max)
            late_max = delay;
    }
    assert_true(maxd <= RC_MAX + SLACK);
    /* the ceiling grew: once capped, delays (uniform in [0, 80]) exceed the first
     * ceiling (10 ms); all five below it has probability (1/8)^5 */
    assert_true(late_max > RC_MIN);
    assert_int_equal(t.cli.closed, 0);
    assert_null(gw_amqp_conn_pn(t.cli.conn));

    /* now listen on that port: the next attempt connects */
    gw_amqp_listener_t *l = gw_amqp_listen(t.base, "127.0.0.1", port, NULL, false, t_accept, &t, &err);
    assert_non_null(l);
    assert_int_equal(gw_amqp_listener_port(l), port);
    assert_true(gw_test_run_until(t.base, cli_up, &t, WAIT_MS));
    assert_true(gw_amqp_conn_is_up(t.cli.conn));

    /* lose the server: the back-off restarts from reconnect_min_ms */
    gw_amqp_listener_free(l);
    int downs = t.cli.down;
    gw_amqp_conn_destroy(t.srv.conn);
    t.srv.conn = NULL;
    d.n = downs + 2; /* DOWN (connection lost), then DOWN (first reconnect failed) */
    assert_true(gw_test_run_until(t.base, cli_downs, &d, WAIT_MS));
    assert_string_equal(t.cli.down_conds[downs], "amqp:connection:framing-error");
    assert_string_equal(t.cli.down_conds[downs + 1], "gw:connect-failed");
    assert_true(t.cli.down_ms[downs + 1] - t.cli.down_ms[downs] <= RC_MIN + SLACK);

    /* close while waiting to reconnect: CLOSED, no more attempts */
    gw_amqp_conn_close(t.cli.conn, NULL, NULL);
    assert_true(gw_test_run_until(t.base, cli_closed, &t, WAIT_MS));
    assert_int_equal(t.cli.closed, 1);
    event_base_free(t.base);
}

static void test_idle_timeout(void **state)
{
    /* a peer that accepts TCP (kernel backlog) but never reads nor answers */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    tctx_t t = {0};
    t.base = event_base_new();
    char url[64];
    snprintf(url, sizeof(url), "amqp://127.0.0.1:%u", ntohs(a.sin_port));
    gw_amqp_opts_t o = {.idle_timeout_ms = 300};
    gw_err_t err;
    int64_t t0 = gw_test_now_ms();
    t.cli.conn = gw_amqp_connect(t.base, url, &o, &t_handler, &t.cli, &err);
    assert_non_null(t.cli.conn);
    assert_true(gw_test_run_until(t.base, cli_closed, &t, WAIT_MS));
    int64_t el = gw_test_now_ms() - t0;
    assert_int_equal(t.cli.down, 1);
    assert_string_equal(t.cli.cond, "amqp:resource-limit-exceeded");
    assert_true(el >= 300);
    assert_true(el < 3000);
    close(lfd);
    event_base_free(t.base);
}

static bool gen_cert(const char *dir, const char *name, const char *cn)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
             "-subj /CN=%s -addext subjectAltName=DNS:%s,IP:127.0.0.1 "
             "-keyout %s/%s-key.pem -out %s/%s.pem 2>/dev/null",
             cn, cn, dir, name, dir, name);
    return system(cmd) == 0;
}

static void test_tls_listener_external(void **state)
{
    char dir[] = "/tmp/gw-amqp-tcp-XXXXXX";
    assert_non_null(mkdtemp(dir));
    if (!gen_cert(dir, "srv", "localhost") || !gen_cert(dir, "cli", "gwclient")) {
        print_message("# openssl CLI failed, skipped\n");
        skip();
    }
    char srv[256], srvkey[256], cli[256], clikey[256];
    snprintf(srv, sizeof(srv), "%s/srv.pem", dir);
    snprintf(srvkey, sizeof(srvkey), "%s/srv-key.pem", dir);
    snprintf(cli, sizeof(cli), "%s/cli.pem", dir);
    snprintf(clikey, sizeof(clikey), "%s/cli-key.pem", dir);

    tctx_t t = {0};
    t.base = event_base_new();
    gw_err_t err;
    /* TLS listener requiring client certificates: offers ANONYMOUS EXTERNAL */
    gw_amqp_opts_t lo = {.tls = true, .tls_cert_file = srv, .tls_key_file = srvkey,
                         .tls_ca_file = cli, .tls_verify_peer = true};
    gw_amqp_listener_t *l = gw_amqp_listen(t.base, "127.0.0.1", 0, &lo, false, t_accept, &t, &err);
    assert_non_null(l);
    char url[128];
    snprintf(url, sizeof(url), "amqps://127.0.0.1:%u", gw_amqp_listener_port(l));
    gw_amqp_opts_t co = {.tls_cert_file = cli, .tls_key_file = clikey, .tls_ca_file = srv,
                         .tls_verify_peer = true, .hostname = "localhost",
                         .sasl_mechs = "EXTERNAL"};
    t.cli.conn = gw_amqp_connect(t.base, url, &co, &t_handler, &t.cli, &err);
    assert_non_null(t.cli.conn);
    assert_true(gw_test_run_until(t.base, both_up, &t, WAIT_MS));
    const char *user = gw_amqp_conn_user(t.srv.conn);
    assert_non_null(user);
    assert_non_null(strstr(user, "CN=gwclient"));
    t_teardown(&t);

    /* no client certificate: the handshake fails on both sides, never UP */
    memset(&t.cli, 0, sizeof(t.cli));
    memset(&t.srv, 0, sizeof(t.srv));
    gw_amqp_opts_t nocert = {.tls_ca_file = srv, .tls_verify_peer = true, .hostname = "localhost"};
    t.cli.conn = gw_amqp_connect(t.base, url, &nocert, &t_handler, &t.cli, &err);
    assert_non_null(t.cli.conn);
    assert_true(gw_test_run_until(t.base, cli_closed, &t, WAIT_MS));
    assert_int_equal(t.cli.up, 0);
    assert_true(t.cli.cond[0] != '\0');
    t_teardown(&t);

    /* a listener without a certificate is a configuration error */
    gw_amqp_opts_t bad = {.tls = true};
    assert_null(gw_amqp_listen(t.base, "127.0.0.1", 0, &bad, false, NULL, NULL, &err));
    assert_int_equal(err, GW_ERR_CONFIG);
    gw_amqp_opts_t missing = {.tls = true, .tls_cert_file = "/nonexistent.pem"};
    assert_null(gw_amqp_listen(t.base, "127.0.0.1", 0, &missing, false, NULL, NULL, &err));
    assert_int_equal(err, GW_ERR_CONFIG);

    gw_amqp_listener_free(l);
    event_base_free(t.base);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static int verify_calls;

static bool verify_cb(const char *user, const char *password, void *ctx)
{
    verify_calls++;
    return strcmp(user, (const char *)ctx) == 0 && strcmp(password, "cb-pass") == 0;
}

static bool up_or_closed(void *arg)
{
    tctx_t *t = arg;
    return both_up(t) || t->cli.conn == NULL;
}

/* One client connection to url; returns after UP (true) or CLOSED (false). */
static bool try_client(tctx_t *t, const char *url, const gw_amqp_opts_t *o)
{
    memset(&t->cli, 0, sizeof(t->cli));
    memset(&t->srv, 0, sizeof(t->srv));
    gw_err_t err;
    t->cli.conn = gw_amqp_connect(t->base, url, o, &t_handler, &t->cli, &err);
    assert_non_null(t->cli.conn);
    assert_true(gw_test_run_until(t->base, up_or_closed, t, WAIT_MS));
    bool up = both_up(t);
    t_teardown(t);
    return up;
}

static void test_plain_server(void **state)
{
    tctx_t t = {0};
    t.base = event_base_new();
    gw_err_t err;
    gw_amqp_opts_t lo = {.sasl_mechs = "PLAIN ANONYMOUS", .username = "gw", .password = "pw"};
    gw_amqp_listener_t *l = gw_amqp_listen(t.base, "127.0.0.1", 0, &lo, false, t_accept, &t, &err);
    assert_non_null(l);
    unsigned port = gw_amqp_listener_port(l);
    char url[128];

    snprintf(url, sizeof(url), "amqp://gw:pw@127.0.0.1:%u", port);
    assert_true(try_client(&t, url, NULL));
    assert_string_equal(t.srv.user, "gw");

    snprintf(url, sizeof(url), "amqp://gw:wrong@127.0.0.1:%u", port);
    assert_false(try_client(&t, url, NULL));
    assert_string_equal(t.cli.cond, "amqp:unauthorized-access");
    snprintf(url, sizeof(url), "amqp://gw:p@127.0.0.1:%u", port); /* a prefix of it */
    assert_false(try_client(&t, url, NULL));
    snprintf(url, sizeof(url), "amqp://other:pw@127.0.0.1:%u", port);
    assert_false(try_client(&t, url, NULL));
    assert_string_equal(t.cli.cond, "amqp:unauthorized-access");

    snprintf(url, sizeof(url), "amqp://127.0.0.1:%u", port);
    gw_amqp_opts_t anon = {.sasl_mechs = "ANONYMOUS"};
    assert_true(try_client(&t, url, &anon));
    assert_string_equal(t.srv.user, "(null)");
    gw_amqp_listener_free(l);

    /* the verifier decides */
    gw_amqp_opts_t vo = {.sasl_mechs = "PLAIN", .sasl_plain_verify = verify_cb,
                         .sasl_plain_verify_ctx = (void *)"cbuser"};
    l = gw_amqp_listen(t.base, "127.0.0.1", 0, &vo, false, t_accept, &t, &err);
    assert_non_null(l);
    port = gw_amqp_listener_port(l);
    verify_calls = 0;
    snprintf(url, sizeof(url), "amqp://cbuser:cb-pass@127.0.0.1:%u", port);
    assert_true(try_client(&t, url, NULL));
    assert_string_equal(t.srv.user, "cbuser");
    snprintf(url, sizeof(url), "amqp://cbuser:nope@127.0.0.1:%u", port);
    assert_false(try_client(&t, url, NULL));
    assert_int_equal(verify_calls, 2);
    /* ANONYMOUS is not offered by this listener */
    snprintf(url, sizeof(url), "amqp://127.0.0.1:%u", port);
    assert_false(try_client(&t, url, &anon));
    assert_int_equal(verify_calls, 2);
    gw_amqp_listener_free(l);
    event_base_free(t.base);
}

static void test_logging_routed(void **state)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    gw_log_set_fd(fds[1]);
    gw_log_set_level(GW_LOG_LEVEL_WARN);

    /* proton's own logger: an SSL error while loading credentials */
    struct event_base *base = event_base_new();
    gw_err_t err;
    gw_amqp_opts_t missing = {.tls = true, .tls_cert_file = "/nonexistent/cert.pem"};
    assert_null(gw_amqp_listen(base, "127.0.0.1", 0, &missing, false, NULL, NULL, &err));
    event_base_free(base);

    /* a transport error is logged once with its condition */
    test_sasl_failure(state);

    gw_log_set_fd(2);
    gw_log_set_level(GW_LOG_LEVEL_ERROR);
    close(fds[1]);
    static char buf[65536];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(buf) - 1 && (n = read(fds[0], buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    close(fds[0]);
    assert_non_null(strstr(buf, "module=proton"));
    assert_non_null(strstr(buf, "SSL_CTX_use_certificate_chain_file"));
    assert_non_null(strstr(buf, "transport error: amqp:unauthorized-access"));
}

int main(void)
{
    gw_log_set_level(GW_LOG_LEVEL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_connect_v4),
        cmocka_unit_test(test_listen_connect_v6),
        cmocka_unit_test(test_sasl_failure),
        cmocka_unit_test(test_reconnect_backoff),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_tls_listener_external),
        cmocka_unit_test(test_plain_server),
        cmocka_unit_test(test_logging_routed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
