/*
 * test_amqp_python.c - our AMQP client against a REAL python3-qpid-proton
 * peer (tests/unit/amqp_peer.py, found via GW_SOURCE_DIR): messages sent,
 * checked and echoed back, accepted/rejected dispositions with conditions,
 * SASL ANONYMOUS against proton's SASL server, SASL PLAIN (good and bad
 * password) against a hand-written SASL server (proton's built-in SASL cannot
 * verify PLAIN), and TLS with a certificate generated here by openssl.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <proton/codec.h>
#include <proton/condition.h>
#include <proton/disposition.h>

#include "amqp_test_util.h"
#include "gw/amqp.h"
#include "gw/log.h"

#define WAIT_MS 20000

/* ------------------------------------------------------------------ */
/* The python peer process                                              */
/* ------------------------------------------------------------------ */

typedef struct peer {
    pid_t pid;
    int out; /* its stdout */
    char buf[4096];
    size_t len;
    int port;
} peer_t;

/* Read one line from the peer within timeout_ms (poll, no sleep). */
static bool peer_line(peer_t *p, char *line, size_t cap, int timeout_ms)
{
    int64_t deadline = gw_test_now_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(p->buf, '\n', p->len);
        if (nl) {
            size_t n = (size_t)(nl - p->buf);
            snprintf(line, cap, "%.*s", (int)n, p->buf);
            memmove(p->buf, nl + 1, p->len - n - 1);
            p->len -= n + 1;
            return true;
        }
        int64_t left = deadline - gw_test_now_ms();
        if (left <= 0 || p->len == sizeof(p->buf))
            return false;
        struct pollfd pfd = {.fd = p->out, .events = POLLIN};
        int rc = poll(&pfd, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return false;
        ssize_t n = read(p->out, p->buf + p->len, sizeof(p->buf) - p->len);
        if (n <= 0)
            return false;
        p->len += (size_t)n;
    }
}

static void peer_spawn(peer_t *p, const char *const *args, bool want_port)
{
    const char *src = getenv("GW_SOURCE_DIR");
    char script[1024];
    snprintf(script, sizeof(script), "%s/tests/unit/amqp_peer.py", src ? src : ".");
    const char *argv[16] = {"/usr/bin/python3", script};
    int i = 2;
    for (; args[i - 2] && i < 15; i++)
        argv[i] = args[i - 2];
    argv[i] = NULL;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    memset(p, 0, sizeof(*p));
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    p->out = fds[0];
    if (!want_port)
        return;
    char line[256];
    assert_true(peer_line(p, line, sizeof(line), WAIT_MS));
    assert_int_equal(sscanf(line, "PORT %d", &p->port), 1);
    assert_true(p->port > 0 && p->port < 65536);
}

static void peer_start(peer_t *p, const char *const *args) { peer_spawn(p, args, true); }

/* Wait for the RESULT line and the exit of the peer. */
static void peer_finish(peer_t *p, char *result, size_t cap)
{
    result[0] = '\0';
    char line[512];
    while (peer_line(p, line, sizeof(line), WAIT_MS)) {
        if (strncmp(line, "RESULT ", 7) == 0) {
            snprintf(result, cap, "%s", line + 7);
            break;
        }
    }
    /* the peer exits right after RESULT: wait (bounded) for EOF on its stdout */
    while (peer_line(p, line, sizeof(line), WAIT_MS))
        ;
    int st = 0;
    if (waitpid(p->pid, &st, WNOHANG) == 0) {
        kill(p->pid, SIGKILL); /* stuck or still exiting: our own child */
        waitpid(p->pid, &st, 0);
    }
    close(p->out);
    fprintf(stderr, "# peer: %s\n", result);
}

/* ------------------------------------------------------------------ */
/* Our client                                                           */
/* ------------------------------------------------------------------ */

typedef struct pyc {
    struct event_base *base;
    gw_amqp_conn_t *conn;
    int up, down, closed;
    char cond[128];
    pn_session_t *ssn;
    pn_link_t *snd, *rcv;
    int n; /* good messages; one more with subject "reject-me" follows */
    int sent, accepted, rejected, echoed, bad_echo;
    char reject_cond[64];
    pn_message_t *m, *r;
} pyc_t;

static void build(pyc_t *c, int i)
{
    pn_message_clear(c->m);
    pn_atom_t id = {.type = PN_ULONG, .u.as_ulong = (uint64_t)i};
    pn_message_set_id(c->m, id);
    pn_message_set_subject(c->m, i < c->n ? "test" : "reject-me");
    char s[32];
    int len = snprintf(s, sizeof(s), "msg-%d", i);
    pn_data_put_string(pn_message_body(c->m), pn_bytes((size_t)len, s));
    pn_data_t *props = pn_message_properties(c->m);
    pn_data_put_map(props);
    pn_data_enter(props);
    pn_data_put_string(props, pn_bytes(1, "n"));
    pn_data_put_long(props, i);
    pn_data_exit(props);
}

static void pump(pyc_t *c)
{
    while (c->snd && c->sent <= c->n) {
        build(c, c->sent);
        gw_err_t rc = gw_amqp_send(c->conn, c->snd, c->m, false, NULL);
        if (rc != GW_OK)
            return;
        c->sent++;
    }
}

static void c_event(gw_amqp_conn_t *conn, pn_event_t *e, void *ctx)
{
    pyc_t *c = ctx;
    switch (pn_event_type(e)) {
    case PN_LINK_FLOW:
    case PN_LINK_REMOTE_OPEN:
        if (pn_event_link(e) == c->snd)
            pump(c);
        break;
    case PN_DELIVERY: {
        pn_delivery_t *d = pn_event_delivery(e);
        pn_link_t *l = pn_delivery_link(d);
        if (l == c->snd) {
            uint64_t st = pn_delivery_remote_state(d);
            if (st == PN_ACCEPTED)
                c->accepted++;
            else if (st == PN_REJECTED) {
                c->rejected++;
                const char *nm = pn_condition_get_name(pn_disposition_condition(pn_delivery_remote(d)));
                snprintf(c->reject_cond, sizeof(c->reject_cond), "%s", nm ? nm : "");
            }
            if (st)
                pn_delivery_settle(d);
        } else if (l == c->rcv && pn_delivery_readable(d) && !pn_delivery_partial(d)) {
            if (gw_amqp_recv(conn, d, c->r, 0) != GW_OK) {
                c->bad_echo++;
                gw_amqp_settle(d, PN_REJECTED, "amqp:decode-error", NULL);
                break;
            }
            pn_atom_t id = pn_message_get_id(c->r);
            pn_data_t *b = pn_message_body(c->r);
            pn_data_rewind(b);
            char want[32];
            int wl = snprintf(want, sizeof(want), "msg-%d", c->echoed);
            const char *subj = pn_message_get_subject(c->r);
            bool ok = id.type == PN_ULONG && id.u.as_ulong == (uint64_t)c->echoed &&
                      subj && strcmp(subj, "echo") == 0 && pn_data_next(b) &&
                      pn_data_type(b) == PN_STRING && pn_data_get_string(b).size == (size_t)wl &&
                      memcmp(pn_data_get_string(b).start, want, (size_t)wl) == 0;
            if (!ok)
                c->bad_echo++;
            c->echoed++;
            gw_amqp_settle(d, PN_ACCEPTED, NULL, NULL);
            if (pn_link_credit(l) < 50)
                pn_link_flow(l, 100 - pn_link_credit(l));
        }
        break;
    }
    default:
        break;
    }
}

static void c_state(gw_amqp_conn_t *conn, gw_amqp_state_t st, const char *cond, const char *desc,
                    void *ctx)
{
    pyc_t *c = ctx;
    switch (st) {
    case GW_AMQP_UP:
        c->up++;
        c->ssn = pn_session(gw_amqp_conn_pn(conn));
        pn_session_open(c->ssn);
        c->snd = gw_amqp_sender_open(c->ssn, "to-echo", "echo", PN_SND_UNSETTLED, PN_RCV_FIRST);
        c->rcv = gw_amqp_receiver_open(c->ssn, "from-echo", "echo", PN_SND_UNSETTLED,
                                       PN_RCV_FIRST, 100);
        break;
    case GW_AMQP_DOWN:
        c->down++;
        snprintf(c->cond, sizeof(c->cond), "%s", cond ? cond : "");
        if (getenv("GW_TEST_VERBOSE"))
            fprintf(stderr, "# DOWN %s %s\n", cond ? cond : "-", desc ? desc : "-");
        c->snd = c->rcv = NULL;
        c->ssn = NULL;
        break;
    case GW_AMQP_CLOSED:
        c->closed++;
        c->conn = NULL;
        break;
    }
}

static const gw_amqp_handler_t c_handler = {c_event, c_state};

static bool echo_done(void *arg)
{
    pyc_t *c = arg;
    return (c->accepted == c->n && c->rejected == 1 && c->echoed == c->n) || c->conn == NULL;
}

static bool closed(void *arg)
{
    pyc_t *c = arg;
    return c->conn == NULL;
}

static void pyc_init(pyc_t *c, int n)
{
    memset(c, 0, sizeof(*c));
    c->base = event_base_new();
    c->n = n;
    c->m = pn_message();
    c->r = pn_message();
}

static void pyc_free(pyc_t *c)
{
    if (c->conn) {
        gw_amqp_conn_close(c->conn, NULL, NULL);
        gw_test_run_until(c->base, closed, c, WAIT_MS);
        if (c->conn)
            gw_amqp_conn_destroy(c->conn);
    }
    pn_message_free(c->m);
    pn_message_free(c->r);
    event_base_free(c->base);
}

/* Connect to the peer, echo n messages + one rejected, close; return RESULT. */
static void run_echo(peer_t *p, const char *scheme, const gw_amqp_opts_t *o, int n,
                     char *result, size_t cap)
{
    pyc_t c;
    pyc_init(&c, n);
    char url[128];
    snprintf(url, sizeof(url), "%s://127.0.0.1:%d", scheme, p->port);
    gw_err_t err;
    c.conn = gw_amqp_connect(c.base, url, o, &c_handler, &c, &err);
    assert_non_null(c.conn);
    assert_true(gw_test_run_until(c.base, echo_done, &c, WAIT_MS));
    assert_non_null(c.conn);
    assert_int_equal(c.up, 1);
    assert_int_equal(c.accepted, n);
    assert_int_equal(c.rejected, 1);
    assert_string_equal(c.reject_cond, "amqp:not-allowed");
    assert_int_equal(c.echoed, n);
    assert_int_equal(c.bad_echo, 0);
    gw_amqp_conn_close(c.conn, NULL, NULL);
    assert_true(gw_test_run_until(c.base, closed, &c, WAIT_MS));
    assert_int_equal(c.closed, 1);
    pyc_free(&c);
    peer_finish(p, result, cap);
}

static void test_echo_anonymous(void **state)
{
    peer_t p;
    const char *args[] = {"echo", "--mechs", "ANONYMOUS", NULL};
    peer_start(&p, args);
    gw_amqp_opts_t o = {.container_id = "c-echo", .sasl_mechs = "ANONYMOUS"};
    char res[512];
    run_echo(&p, "amqp", &o, 500, res, sizeof(res));
    assert_non_null(strstr(res, "end=closed "));
    assert_non_null(strstr(res, " received=501 bad=0 rejected=1 echoed=500 "));
    assert_non_null(strstr(res, " mech=ANONYMOUS "));
    assert_non_null(strstr(res, " container=c-echo"));
}

/* One connection attempt that is expected to end without UP; returns cond. */
static void run_fail(peer_t *p, const char *url, const gw_amqp_opts_t *o, char *cond, size_t cap)
{
    pyc_t c;
    pyc_init(&c, 0);
    gw_err_t err;
    c.conn = gw_amqp_connect(c.base, url, o, &c_handler, &c, &err);
    assert_non_null(c.conn);
    assert_true(gw_test_run_until(c.base, closed, &c, WAIT_MS));
    assert_int_equal(c.up, 0);
    assert_int_equal(c.down, 1);
    snprintf(cond, cap, "%s", c.cond);
    pyc_free(&c);
}

static bool up_or_closed(void *arg)
{
    pyc_t *c = arg;
    return c->up > 0 || c->conn == NULL;
}

static void test_sasl_plain(void **state)
{
    /* good credentials: the peer sees PLAIN user/secret, then the AMQP header */
    peer_t p;
    const char *args[] = {"plain", "gwuser", "s3cret", NULL};
    peer_start(&p, args);
    pyc_t c;
    pyc_init(&c, 0);
    char url[128];
    snprintf(url, sizeof(url), "amqp://127.0.0.1:%d", p.port);
    gw_amqp_opts_t o = {.username = "gwuser", .password = "s3cret"};
    gw_err_t err;
    c.conn = gw_amqp_connect(c.base, url, &o, &c_handler, &c, &err);
    assert_non_null(c.conn);
    assert_true(gw_test_run_until(c.base, up_or_closed, &c, WAIT_MS));
    /* the hand-written peer closes after the header: never UP, not an auth failure */
    assert_true(gw_test_run_until(c.base, closed, &c, WAIT_MS));
    assert_int_equal(c.up, 0);
    assert_string_not_equal(c.cond, "amqp:unauthorized-access");
    pyc_free(&c);
    char res[512];
    peer_finish(&p, res, sizeof(res));
    assert_string_equal(res, "plain=ok user=gwuser amqp_header=1");

    /* wrong password (credentials in the URL, percent-encoded): unauthorized */
    peer_start(&p, args);
    snprintf(url, sizeof(url), "amqp://gwuser:wr%%6Fng@127.0.0.1:%d", p.port);
    char cond[128];
    run_fail(&p, url, NULL, cond, sizeof(cond));
    assert_string_equal(cond, "amqp:unauthorized-access");
    peer_finish(&p, res, sizeof(res));
    assert_string_equal(res, "plain=bad user=gwuser amqp_header=0");
}

static void test_sasl_plain_refused_by_proton(void **state)
{
    /* proton's own SASL server offering only ANONYMOUS refuses our PLAIN */
    peer_t p;
    const char *args[] = {"echo", "--mechs", "ANONYMOUS", NULL};
    peer_start(&p, args);
    char url[128], cond[128], res[512];
    snprintf(url, sizeof(url), "amqp://u:p@127.0.0.1:%d", p.port);
    run_fail(&p, url, NULL, cond, sizeof(cond));
    assert_string_equal(cond, "amqp:unauthorized-access");
    peer_finish(&p, res, sizeof(res));
    assert_non_null(strstr(res, "received=0 "));
}

static void test_tls(void **state)
{
    char dir[] = "/tmp/gw-amqp-tls-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[2048], cert[256], key[256], other[256], okey[256];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(other, sizeof(other), "%s/other.pem", dir);
    snprintf(okey, sizeof(okey), "%s/okey.pem", dir);
    const char *req = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                      "-days 1 -subj /CN=localhost "
                      "-addext subjectAltName=DNS:localhost,IP:127.0.0.1";
    snprintf(cmd, sizeof(cmd), "%s -keyout %s -out %s 2>/dev/null && %s -keyout %s -out %s 2>/dev/null",
             req, key, cert, req, okey, other);
    if (system(cmd) != 0) {
        print_message("# openssl CLI failed, TLS test skipped\n");
        skip();
    }

    peer_t p;
    const char *args[] = {"echo", "--tls", cert, key, NULL};
    peer_start(&p, args);
    gw_amqp_opts_t o = {.tls_ca_file = cert, .tls_verify_peer = true, .hostname = "localhost"};
    char res[512];
    run_echo(&p, "amqps", &o, 50, res, sizeof(res));
    assert_non_null(strstr(res, " received=51 bad=0 rejected=1 echoed=50 "));

    /* a server certificate we do not trust: no UP, a TLS condition */
    peer_start(&p, args);
    gw_amqp_opts_t bad = {.tls_ca_file = other, .tls_verify_peer = true, .hostname = "localhost"};
    char url[128], cond[128];
    snprintf(url, sizeof(url), "amqps://127.0.0.1:%d", p.port);
    run_fail(&p, url, &bad, cond, sizeof(cond));
    assert_true(cond[0] != '\0');
    peer_finish(&p, res, sizeof(res));
    assert_non_null(strstr(res, "received=0 "));

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* python proton client -> our listener offering PLAIN (amqp_sasl.c) */
typedef struct lst {
    gw_amqp_conn_t *conn;
    int accepted, up, closed;
    char user[64];
} lst_t;

static void l_state(gw_amqp_conn_t *conn, gw_amqp_state_t st, const char *cond, const char *desc,
                    void *ctx)
{
    lst_t *l = ctx;
    if (st == GW_AMQP_UP) {
        l->up++;
        const char *u = gw_amqp_conn_user(conn);
        snprintf(l->user, sizeof(l->user), "%s", u ? u : "(null)");
    } else if (st == GW_AMQP_CLOSED) {
        l->closed++;
        l->conn = NULL;
    }
}

static const gw_amqp_handler_t l_handler = {NULL, l_state};

static void l_accept(gw_amqp_listener_t *lst, gw_amqp_conn_t *conn, void *ctx)
{
    lst_t *l = ctx;
    l->accepted++;
    l->conn = conn;
    gw_amqp_conn_set_handler(conn, &l_handler, l);
}

static bool l_closed(void *arg)
{
    lst_t *l = arg;
    return l->accepted > 0 && l->closed > 0;
}

static void python_client(struct event_base *base, unsigned port, const char *user,
                          const char *pass, lst_t *l, char *res, size_t cap)
{
    memset(l, 0, sizeof(*l));
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%u", port);
    const char *args[] = {"client", portstr, user, pass, NULL};
    peer_t p;
    peer_spawn(&p, args, false);
    assert_true(gw_test_run_until(base, l_closed, l, WAIT_MS));
    peer_finish(&p, res, cap);
}

static void test_python_client_plain(void **state)
{
    struct event_base *base = event_base_new();
    lst_t l;
    gw_err_t err;
    gw_amqp_opts_t o = {.sasl_mechs = "PLAIN", .username = "pyuser", .password = "pypass"};
    gw_amqp_listener_t *lst = gw_amqp_listen(base, "127.0.0.1", 0, &o, false, l_accept, &l, &err);
    assert_non_null(lst);
    unsigned port = gw_amqp_listener_port(lst);
    char res[256];
    python_client(base, port, "pyuser", "pypass", &l, res, sizeof(res));
    assert_string_equal(res, "end=closed opened=1 cond=-");
    assert_int_equal(l.up, 1);
    assert_string_equal(l.user, "pyuser");
    python_client(base, port, "pyuser", "bad", &l, res, sizeof(res));
    assert_string_equal(res, "end=closed opened=0 cond=amqp:unauthorized-access");
    assert_int_equal(l.up, 0);
    gw_amqp_listener_free(lst);
    event_base_free(base);
}

int main(void)
{
    gw_log_set_level(GW_LOG_LEVEL_ERROR);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_anonymous),
        cmocka_unit_test(test_sasl_plain),
        cmocka_unit_test(test_sasl_plain_refused_by_proton),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_python_client_plain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
