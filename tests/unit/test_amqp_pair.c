/*
 * test_amqp_pair.c - two gw_amqp_conn_t over a socketpair in one event_base:
 * open/UP, links with every settle-mode combination, 1000 messages checked
 * by content, dispositions (accepted, rejected with condition), credit 0,
 * link close with condition, connection loss, destroy inside callbacks,
 * oversized messages, and a throughput figure (GW_AMQP_PAIR_BENCH=N).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <proton/codec.h>
#include <proton/condition.h>
#include <proton/disposition.h>
#include <proton/terminus.h>
#include <proton/transport.h>

#include "amqp/amqp_internal.h"
#include "amqp_test_util.h"
#include "gw/amqp.h"
#include "gw/log.h"

#define WAIT_MS 5000

typedef struct pair pair_t;

typedef struct side {
    pair_t *p;
    gw_amqp_conn_t *conn;
    bool server;
    int up, down, closed;
    int calls_after_destroy;
    bool destroyed;
    bool destroy_on_up;
    char down_cond[128];
    bool down_cond_null;
    pn_session_t *ssn;
    pn_link_t *link; /* client: sender; server: receiver */
    bool link_remote_open;
    char link_close_cond[128];
} side_t;

struct pair {
    struct event_base *base;
    side_t cli, srv;
    int fds[2];
    /* scenario */
    int n;
    pn_snd_settle_mode_t snd;
    pn_rcv_settle_mode_t rcv;
    int credit_window;
    int reject_every;
    size_t max_size;
    int big_index;    /* this message gets a big body (-1: none) */
    size_t big_size;
    int destroy_srv_at;
    bool offer_relay;
    uint32_t srv_idle_ms;
    bool stale_check;
    uint64_t srv_max_msg;
    /* results */
    int sent, received, presettled_rcvd, accepted, rejected, limit_errors, bad_content;
    int send_again, send_errors;
    int expect_disp;
    char reject_cond[128];
    pn_message_t *smsg, *rmsg;
    char *bigbuf;
};

static bool presettled_for(const pair_t *p, int i)
{
    return p->snd == PN_SND_SETTLED || (p->snd == PN_SND_MIXED && (i % 2) == 1);
}

static void build_msg(pair_t *p, int i)
{
    pn_message_clear(p->smsg);
    pn_atom_t id = {.type = PN_ULONG, .u.as_ulong = (uint64_t)i};
    pn_message_set_id(p->smsg, id);
    pn_message_set_address(p->smsg, "q1");
    pn_data_t *body = pn_message_body(p->smsg);
    if (i == p->big_index) {
        pn_data_put_binary(body, pn_bytes(p->big_size, p->bigbuf));
    } else {
        char s[32];
        int n = snprintf(s, sizeof(s), "msg-%d", i);
        pn_data_put_string(body, pn_bytes((size_t)n, s));
    }
}

static void pump(pair_t *p)
{
    side_t *c = &p->cli;
    if (!c->link || c->destroyed)
        return;
    while (p->sent < p->n) {
        build_msg(p, p->sent);
        pn_delivery_t *d = NULL;
        bool pre = presettled_for(p, p->sent);
        gw_err_t rc = gw_amqp_send(c->conn, c->link, p->smsg, pre, &d);
        if (rc == GW_ERR_AGAIN) {
            p->send_again++;
            return;
        }
        if (rc != GW_OK) {
            p->send_errors++;
            return;
        }
        if (pre && d != NULL)
            p->send_errors++; /* presettled must not hand out a delivery */
        p->sent++;
    }
}

static void cli_event(gw_amqp_conn_t *conn, pn_event_t *e, void *ctx)
{
    side_t *c = ctx;
    pair_t *p = c->p;
    if (c->destroyed) {
        c->calls_after_destroy++;
        return;
    }
    switch (pn_event_type(e)) {
    case PN_LINK_REMOTE_OPEN:
        if (pn_event_link(e) == c->link) {
            c->link_remote_open = true;
            pump(p);
        }
        break;
    case PN_LINK_FLOW:
        if (pn_event_link(e) == c->link)
            pump(p);
        break;
    case PN_DELIVERY: {
        pn_delivery_t *d = pn_event_delivery(e);
        uint64_t st = pn_delivery_remote_state(d);
        if (st == 0)
            break;
        if (st == PN_ACCEPTED) {
            p->accepted++;
        } else if (st == PN_REJECTED) {
            p->rejected++;
            pn_condition_t *cn = pn_disposition_condition(pn_delivery_remote(d));
            const char *name = pn_condition_get_name(cn);
            snprintf(p->reject_cond, sizeof(p->reject_cond), "%s", name ? name : "");
        }
        pn_delivery_settle(d);
        break;
    }
    case PN_LINK_REMOTE_CLOSE: {
        const char *name = pn_condition_get_name(pn_link_remote_condition(pn_event_link(e)));
        snprintf(c->link_close_cond, sizeof(c->link_close_cond), "%s", name ? name : "(none)");
        break;
    }
    default:
        break;
    }
}

static void on_state(gw_amqp_conn_t *conn, gw_amqp_state_t st, const char *cond,
                     const char *desc, void *ctx)
{
    side_t *s = ctx;
    pair_t *p = s->p;
    if (s->destroyed) {
        s->calls_after_destroy++;
        return;
    }
    switch (st) {
    case GW_AMQP_UP:
        s->up++;
        if (s->destroy_on_up) {
            gw_amqp_conn_destroy(conn);
            s->destroyed = true;
            s->conn = NULL;
            return;
        }
        if (!s->server) {
            s->ssn = pn_session(gw_amqp_conn_pn(conn));
            pn_session_open(s->ssn);
            s->link = gw_amqp_sender_open(s->ssn, "s1", "q1", p->snd, p->rcv);
        }
        break;
    case GW_AMQP_DOWN:
        s->down++;
        s->down_cond_null = cond == NULL;
        snprintf(s->down_cond, sizeof(s->down_cond), "%s", cond ? cond : "");
        if (getenv("GW_TEST_VERBOSE"))
            fprintf(stderr, "# %s DOWN %s %s\n", s->server ? "srv" : "cli", cond ? cond : "-", desc ? desc : "-");
        s->link = NULL;
        s->ssn = NULL;
        break;
    case GW_AMQP_CLOSED:
        s->closed++;
        s->conn = NULL;
        break;
    }
}

static void srv_delivery(side_t *s, pn_delivery_t *d)
{
    pair_t *p = s->p;
    pn_link_t *l = pn_delivery_link(d);
    if (!pn_delivery_readable(d)) {
        if (pn_delivery_settled(d))
            pn_delivery_settle(d); /* rcv-settle-mode second: sender settled */
        return;
    }
    int idx = p->received + p->limit_errors;
    if (p->stale_check) /* left over from a previous message: must not survive */
        pn_data_put_int(pn_message_properties(p->rmsg), 7);
    gw_err_t rc = gw_amqp_recv(s->conn, d, p->rmsg, p->max_size);
    if (rc == GW_ERR_AGAIN)
        return;
    if (rc == GW_ERR_LIMIT) {
        p->limit_errors++;
        gw_amqp_settle(d, PN_REJECTED, "amqp:link:message-size-exceeded", "too big");
        return;
    }
    if (rc != GW_OK) {
        p->bad_content++;
        gw_amqp_settle(d, PN_REJECTED, "amqp:decode-error", NULL);
        return;
    }
    p->received++;
    /* content: id and body must be those of message idx */
    pn_atom_t id = pn_message_get_id(p->rmsg);
    pn_data_t *body = pn_message_body(p->rmsg);
    pn_data_rewind(body);
    char want[32];
    int wn = snprintf(want, sizeof(want), "msg-%d", idx);
    bool ok = id.type == PN_ULONG && id.u.as_ulong == (uint64_t)idx && pn_data_next(body) &&
              pn_data_type(body) == PN_STRING && pn_data_get_string(body).size == (size_t)wn &&
              memcmp(pn_data_get_string(body).start, want, (size_t)wn) == 0;
    const char *addr = pn_message_get_address(p->rmsg);
    if (p->stale_check && pn_data_size(pn_message_properties(p->rmsg)) != 0)
        ok = false;
    if (!ok || !addr || strcmp(addr, "q1") != 0)
        p->bad_content++;
    if (pn_delivery_settled(d)) {
        p->presettled_rcvd++;
        pn_delivery_settle(d);
    } else if (p->reject_every > 0 && idx % p->reject_every == 0) {
        gw_amqp_settle(d, PN_REJECTED, "amqp:invalid-field", "test reject");
    } else if (p->rcv == PN_RCV_SECOND) {
        pn_delivery_update(d, PN_ACCEPTED); /* settle once the sender has */
    } else {
        gw_amqp_settle(d, PN_ACCEPTED, NULL, NULL);
    }
    if (p->credit_window > 0 && pn_link_credit(l) < p->credit_window / 2)
        pn_link_flow(l, p->credit_window - pn_link_credit(l));
    if (p->destroy_srv_at > 0 && p->received == p->destroy_srv_at) {
        gw_amqp_conn_destroy(s->conn);
        s->destroyed = true;
        s->conn = NULL;
    }
}

static void srv_event(gw_amqp_conn_t *conn, pn_event_t *e, void *ctx)
{
    side_t *s = ctx;
    pair_t *p = s->p;
    if (s->destroyed) {
        s->calls_after_destroy++;
        return;
    }
    switch (pn_event_type(e)) {
    case PN_SESSION_REMOTE_OPEN:
        if (pn_session_state(pn_event_session(e)) & PN_LOCAL_UNINIT)
            pn_session_open(pn_event_session(e));
        break;
    case PN_LINK_REMOTE_OPEN: {
        pn_link_t *l = pn_event_link(e);
        if (pn_link_state(l) & PN_LOCAL_UNINIT) {
            pn_terminus_copy(pn_link_source(l), pn_link_remote_source(l));
            pn_terminus_copy(pn_link_target(l), pn_link_remote_target(l));
            pn_link_set_snd_settle_mode(l, pn_link_remote_snd_settle_mode(l));
            pn_link_set_rcv_settle_mode(l, pn_link_remote_rcv_settle_mode(l));
            pn_link_open(l);
            if (pn_link_is_receiver(l)) {
                s->link = l;
                if (p->credit_window > 0)
                    pn_link_flow(l, p->credit_window);
            }
        }
        break;
    }
    case PN_DELIVERY:
        srv_delivery(s, pn_event_delivery(e));
        break;
    default:
        break;
    }
}

static const gw_amqp_handler_t cli_handler = {cli_event, on_state};
static const gw_amqp_handler_t srv_handler = {srv_event, on_state};

static pair_t *pair_new(void)
{
    pair_t *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->base = event_base_new();
    assert_non_null(p->base);
    p->n = 1000;
    p->snd = PN_SND_UNSETTLED;
    p->rcv = PN_RCV_FIRST;
    p->credit_window = 100;
    p->big_index = -1;
    p->smsg = pn_message();
    p->rmsg = pn_message();
    p->cli.p = p->srv.p = p;
    p->srv.server = true;
    return p;
}

static void pair_start(pair_t *p)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fds), 0);
    gw_err_t err;
    gw_amqp_opts_t so = {.container_id = "srv", .offer_anonymous_relay = p->offer_relay,
                         .idle_timeout_ms = p->srv_idle_ms, .max_message_size = p->srv_max_msg};
    gw_amqp_opts_t co = {.container_id = "cli"};
    p->srv.conn = gw_amqp_conn_from_fd(p->base, p->fds[0], true, &so, &srv_handler, &p->srv, &err);
    assert_non_null(p->srv.conn);
    assert_int_equal(err, GW_OK);
    p->cli.conn = gw_amqp_conn_from_fd(p->base, p->fds[1], false, &co, &cli_handler, &p->cli, &err);
    assert_non_null(p->cli.conn);
    assert_int_equal(err, GW_OK);
}

static bool both_closed(void *arg)
{
    pair_t *p = arg;
    return p->cli.conn == NULL && p->srv.conn == NULL;
}

static void pair_free(pair_t *p)
{
    if (p->cli.conn)
        gw_amqp_conn_close(p->cli.conn, NULL, NULL);
    else if (p->srv.conn)
        gw_amqp_conn_close(p->srv.conn, NULL, NULL);
    gw_test_run_until(p->base, both_closed, p, WAIT_MS);
    if (p->cli.conn)
        gw_amqp_conn_destroy(p->cli.conn);
    if (p->srv.conn)
        gw_amqp_conn_destroy(p->srv.conn);
    assert_int_equal(p->cli.calls_after_destroy, 0);
    assert_int_equal(p->srv.calls_after_destroy, 0);
    pn_message_free(p->smsg);
    pn_message_free(p->rmsg);
    event_base_free(p->base);
    free(p->bigbuf);
    free(p);
}

static bool both_up(void *arg)
{
    pair_t *p = arg;
    return p->cli.up && p->srv.up;
}

static bool cli_link_open(void *arg)
{
    pair_t *p = arg;
    return p->cli.link_remote_open && p->srv.link != NULL;
}

static bool all_done(void *arg)
{
    pair_t *p = arg;
    return p->received + p->limit_errors >= p->n &&
           p->accepted + p->rejected >= p->expect_disp;
}

static void dump(const pair_t *p)
{
    fprintf(stderr, "# sent=%d received=%d presettled=%d accepted=%d rejected=%d limit=%d bad=%d again=%d senderr=%d expect_disp=%d\n",
            p->sent, p->received, p->presettled_rcvd, p->accepted, p->rejected, p->limit_errors,
            p->bad_content, p->send_again, p->send_errors, p->expect_disp);
}

static int expected_dispositions(const pair_t *p)
{
    int n = 0;
    for (int i = 0; i < p->n; i++)
        if (!presettled_for(p, i))
            n++;
    return n;
}

/* ------------------------------------------------------------------ */

static void test_open_up_relay_and_clean_close(void **state)
{
    pair_t *p = pair_new();
    p->offer_relay = true;
    pair_start(p);
    assert_true(gw_test_run_until(p->base, both_up, p, WAIT_MS));
    assert_true(gw_amqp_conn_is_up(p->cli.conn));
    assert_true(gw_amqp_conn_is_up(p->srv.conn));
    assert_true(gw_amqp_conn_peer_has_anonymous_relay(p->cli.conn));
    assert_false(gw_amqp_conn_peer_has_anonymous_relay(p->srv.conn));
    assert_ptr_equal(gw_amqp_conn_of(gw_amqp_conn_pn(p->cli.conn)), p->cli.conn);
    assert_ptr_equal(gw_amqp_conn_of(gw_amqp_conn_pn(p->srv.conn)), p->srv.conn);
    assert_ptr_equal(gw_amqp_conn_ctx(p->srv.conn), &p->srv);
    assert_null(gw_amqp_conn_user(p->srv.conn)); /* ANONYMOUS */
    assert_string_equal(pn_connection_remote_container(gw_amqp_conn_pn(p->srv.conn)), "cli");
    /* clean close from the client: both sides DOWN without condition, then CLOSED */
    gw_amqp_conn_close(p->cli.conn, NULL, NULL);
    assert_true(gw_test_run_until(p->base, both_closed, p, WAIT_MS));
    assert_int_equal(p->cli.down, 1);
    assert_int_equal(p->srv.down, 1);
    assert_true(p->cli.down_cond_null);
    assert_true(p->srv.down_cond_null);
    assert_int_equal(p->cli.closed, 1);
    assert_int_equal(p->srv.closed, 1);
    pair_free(p);
}

static void run_transfer(pn_snd_settle_mode_t snd, pn_rcv_settle_mode_t rcv, int n)
{
    pair_t *p = pair_new();
    p->snd = snd;
    p->rcv = rcv;
    p->n = n;
    p->expect_disp = expected_dispositions(p);
    p->stale_check = true;
    pair_start(p);
    if (!gw_test_run_until(p->base, all_done, p, WAIT_MS))
        dump(p);
    assert_true(all_done(p));
    assert_int_equal(p->sent, n);
    assert_int_equal(p->received, n);
    assert_int_equal(p->bad_content, 0);
    assert_int_equal(p->send_errors, 0);
    assert_int_equal(p->accepted, p->expect_disp);
    assert_int_equal(p->rejected, 0);
    assert_int_equal(p->presettled_rcvd, n - p->expect_disp);
    pair_free(p);
}

static void test_settle_modes(void **state)
{
    run_transfer(PN_SND_UNSETTLED, PN_RCV_FIRST, 1000);
    run_transfer(PN_SND_SETTLED, PN_RCV_FIRST, 1000);
    run_transfer(PN_SND_MIXED, PN_RCV_FIRST, 1000);
    run_transfer(PN_SND_UNSETTLED, PN_RCV_SECOND, 1000);
    run_transfer(PN_SND_MIXED, PN_RCV_SECOND, 1000);
}

static void test_rejected_with_condition(void **state)
{
    pair_t *p = pair_new();
    p->n = 100;
    p->reject_every = 10;
    p->expect_disp = 100;
    pair_start(p);
    if (!gw_test_run_until(p->base, all_done, p, WAIT_MS))
        dump(p);
    assert_true(all_done(p));
    assert_int_equal(p->rejected, 10);
    assert_int_equal(p->accepted, 90);
    assert_string_equal(p->reject_cond, "amqp:invalid-field");
    pair_free(p);
}

static bool got_one(void *arg)
{
    pair_t *p = arg;
    return p->received >= 1;
}

static void test_credit_zero(void **state)
{
    pair_t *p = pair_new();
    p->n = 1;
    p->credit_window = 0;
    pair_start(p);
    assert_true(gw_test_run_until(p->base, cli_link_open, p, WAIT_MS));
    /* no credit yet: the send attempt on remote open was refused */
    assert_true(p->send_again >= 1);
    assert_int_equal(p->sent, 0);
    build_msg(p, 0);
    assert_int_equal(gw_amqp_send(p->cli.conn, p->cli.link, p->smsg, false, NULL), GW_ERR_AGAIN);
    pn_link_flow(p->srv.link, 1);
    gw_amqp_conn_flush(p->srv.conn);
    assert_true(gw_test_run_until(p->base, got_one, p, WAIT_MS));
    assert_int_equal(p->sent, 1);
    assert_int_equal(p->bad_content, 0);
    pair_free(p);
}

static bool cli_link_closed(void *arg)
{
    pair_t *p = arg;
    return p->cli.link_close_cond[0] != '\0';
}

static void test_link_close_condition(void **state)
{
    pair_t *p = pair_new();
    p->n = 0;
    pair_start(p);
    assert_true(gw_test_run_until(p->base, cli_link_open, p, WAIT_MS));
    gw_amqp_link_close(p->srv.link, "amqp:link:stolen", "another client took it");
    assert_true(gw_test_run_until(p->base, cli_link_closed, p, WAIT_MS));
    assert_string_equal(p->cli.link_close_cond, "amqp:link:stolen");
    /* the module answered the close for the client: sending fails cleanly */
    build_msg(p, 0);
    assert_int_equal(gw_amqp_send(p->cli.conn, p->cli.link, p->smsg, false, NULL), GW_ERR_STATE);
    pair_free(p);
}

static bool srv_closed(void *arg)
{
    pair_t *p = arg;
    return p->srv.closed > 0;
}

static void test_connection_loss(void **state)
{
    pair_t *p = pair_new();
    pair_start(p);
    assert_true(gw_test_run_until(p->base, both_up, p, WAIT_MS));
    /* the client vanishes: its socket is closed without a close frame */
    gw_amqp_conn_destroy(p->cli.conn);
    p->cli.conn = NULL;
    assert_true(gw_test_run_until(p->base, srv_closed, p, WAIT_MS));
    assert_int_equal(p->srv.down, 1);
    assert_int_equal(p->srv.closed, 1);
    assert_false(p->srv.down_cond_null);
    assert_string_equal(p->srv.down_cond, "amqp:connection:framing-error");
    assert_int_equal(p->cli.down, 0); /* destroy: no callbacks */
    pair_free(p);
}

static bool cli_closed(void *arg)
{
    pair_t *p = arg;
    return p->cli.closed > 0;
}

static void test_destroy_in_callbacks(void **state)
{
    /* server destroys itself inside on_state(UP) */
    pair_t *p = pair_new();
    p->srv.destroy_on_up = true;
    pair_start(p);
    assert_true(gw_test_run_until(p->base, cli_closed, p, WAIT_MS));
    assert_int_equal(p->srv.up, 1);
    assert_int_equal(p->cli.down, 1);
    assert_int_equal(p->srv.calls_after_destroy, 0);
    pair_free(p);

    /* server destroys itself inside on_event while deliveries are queued */
    p = pair_new();
    p->n = 100;
    p->destroy_srv_at = 10;
    pair_start(p);
    assert_true(gw_test_run_until(p->base, cli_closed, p, WAIT_MS));
    assert_int_equal(p->received, 10);
    assert_int_equal(p->srv.calls_after_destroy, 0);
    assert_int_equal(p->cli.down, 1);
    pair_free(p);
}

static void test_oversized(void **state)
{
    pair_t *p = pair_new();
    p->n = 3;
    p->big_index = 1;
    p->big_size = 1000;
    p->bigbuf = calloc(1, p->big_size);
    p->max_size = 200;
    p->expect_disp = 3;
    pair_start(p);
    if (!gw_test_run_until(p->base, all_done, p, WAIT_MS))
        dump(p);
    assert_true(all_done(p));
    assert_int_equal(p->limit_errors, 1);
    assert_int_equal(p->received, 2);
    assert_int_equal(p->bad_content, 0);
    assert_int_equal(p->accepted, 2);
    assert_int_equal(p->rejected, 1);
    assert_string_equal(p->reject_cond, "amqp:link:message-size-exceeded");
    pair_free(p);
}

static void test_url_and_backoff(void **state)
{
    gw_amqp_url_t u;
    assert_int_equal(gw_amqp__url_parse("amqp://127.0.0.1", &u), GW_OK);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.port, "5672");
    assert_false(u.tls);
    assert_null(u.user);
    gw_amqp__url_clear(&u);
    assert_int_equal(gw_amqp__url_parse("amqps://us%40r:p%3Ass@[::1]:5999", &u), GW_OK);
    assert_true(u.tls);
    assert_string_equal(u.user, "us@r");
    assert_string_equal(u.password, "p:ss");
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.port, "5999");
    gw_amqp__url_clear(&u);
    assert_int_equal(gw_amqp__url_parse("amqps://router", &u), GW_OK);
    assert_string_equal(u.port, "5671");
    gw_amqp__url_clear(&u);
    assert_int_equal(gw_amqp__url_parse("http://x", &u), GW_ERR_CONFIG);
    assert_int_equal(gw_amqp__url_parse("amqp://h:0", &u), GW_ERR_CONFIG);
    assert_int_equal(gw_amqp__url_parse("amqp://h:65536", &u), GW_ERR_CONFIG);
    assert_int_equal(gw_amqp__url_parse("amqp://h:12a", &u), GW_ERR_CONFIG);
    assert_int_equal(gw_amqp__url_parse("amqp://[::1", &u), GW_ERR_CONFIG);
    assert_int_equal(gw_amqp__url_parse("amqp://u:%zz@h", &u), GW_ERR_CONFIG);
    assert_int_equal(gw_amqp__url_parse("amqp://", &u), GW_ERR_CONFIG);

    assert_int_equal(gw_amqp__backoff_ceiling(100, 10000, 0), 100);
    assert_int_equal(gw_amqp__backoff_ceiling(100, 10000, 3), 800);
    assert_int_equal(gw_amqp__backoff_ceiling(100, 10000, 7), 10000);
    assert_int_equal(gw_amqp__backoff_ceiling(100, 10000, 1000), 10000);
    for (unsigned a = 0; a < 20; a++)
        for (int k = 0; k < 100; k++)
            assert_true(gw_amqp__backoff_delay(100, 10000, a, gw_amqp__random()) <=
                        gw_amqp__backoff_ceiling(100, 10000, a));
    assert_int_equal(gw_amqp__backoff_delay(100, 10000, 2, 400), 400);
    assert_int_equal(gw_amqp__backoff_delay(100, 10000, 2, 401), 0);
}

static void test_config_errors(void **state)
{
    struct event_base *base = event_base_new();
    gw_err_t err = GW_OK;
    /* PLAIN offered with nothing to check passwords against */
    gw_amqp_opts_t o = {.sasl_mechs = "ANONYMOUS PLAIN"};
    assert_null(gw_amqp_listen(base, "127.0.0.1", 0, &o, false, NULL, NULL, &err));
    assert_int_equal(err, GW_ERR_CONFIG);
    gw_amqp_opts_t ok = {.sasl_mechs = "ANONYMOUS PLAIN", .username = "u", .password = "p"};
    gw_amqp_listener_t *l = gw_amqp_listen(base, "127.0.0.1", 0, &ok, false, NULL, NULL, &err);
    assert_non_null(l);
    assert_int_equal(err, GW_OK);
    gw_amqp_listener_free(l);
    gw_amqp_opts_t bad_frame = {.max_frame_size = 100};
    assert_null(gw_amqp_connect(base, "amqp://127.0.0.1:1", &bad_frame, NULL, NULL, &err));
    assert_int_equal(err, GW_ERR_CONFIG);
    assert_null(gw_amqp_connect(base, "amqp://[::1", NULL, NULL, NULL, &err));
    assert_int_equal(err, GW_ERR_CONFIG);
    event_base_free(base);
}

static bool got_rejected(void *arg)
{
    pair_t *p = arg;
    return p->rejected > 0;
}

static void test_empty_delivery(void **state)
{
    /* a transfer without payload: refused as undecodable, no crash */
    pair_t *p = pair_new();
    p->n = 0;
    pair_start(p);
    assert_true(gw_test_run_until(p->base, cli_link_open, p, WAIT_MS));
    pn_delivery(p->cli.link, pn_dtag("e", 1));
    pn_link_advance(p->cli.link);
    gw_amqp_conn_flush(p->cli.conn);
    assert_true(gw_test_run_until(p->base, got_rejected, p, WAIT_MS));
    assert_int_equal(p->bad_content, 1);
    assert_string_equal(p->reject_cond, "amqp:decode-error");
    pair_free(p);
}

static void test_max_message_size_link_closed(void **state)
{
    /* 600 kB arrives in several frames (server max frame 256 kB): the partial
     * delivery passes the 1000-byte bound and its link is closed */
    pair_t *p = pair_new();
    p->n = 1;
    p->big_index = 0;
    p->big_size = 600000;
    p->bigbuf = calloc(1, p->big_size);
    p->srv_max_msg = 1000;
    pair_start(p);
    assert_true(gw_test_run_until(p->base, cli_link_closed, p, WAIT_MS));
    assert_string_equal(p->cli.link_close_cond, "amqp:link:message-size-exceeded");
    /* (frames already in the same read may still complete the delivery) */
    assert_int_equal(p->srv.down, 0); /* only the link, not the connection */
    pair_free(p);
}

static bool srv_down(void *arg)
{
    pair_t *p = arg;
    return p->srv.down > 0;
}

static void test_frame_too_large(void **state)
{
    /* a raw peer declares a 16 MB frame: refused at the header (max frame
     * 256 kB by default), not buffered */
    pair_t *p = pair_new();
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fds), 0);
    gw_err_t err;
    p->srv.conn = gw_amqp_conn_from_fd(p->base, p->fds[0], true, NULL, &srv_handler, &p->srv, &err);
    assert_non_null(p->srv.conn);
    static const unsigned char hdr[] = {'A', 'M', 'Q', 'P', 0, 1, 0, 0,
                                        0x01, 0x00, 0x00, 0x00, 2, 0, 0, 0};
    assert_int_equal(write(p->fds[1], hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
    assert_true(gw_test_run_until(p->base, srv_down, p, WAIT_MS));
    assert_string_equal(p->srv.down_cond, "amqp:connection:framing-error");
    close(p->fds[1]);
    pair_free(p);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static void test_heartbeats(void **state)
{
    /* the server demands traffic every 200 ms; an idle client stays up only if
     * its tick timer sends heartbeats (empty frames) in time */
    pair_t *p = pair_new();
    p->n = 0;
    p->srv_idle_ms = 200;
    pair_start(p);
    assert_true(gw_test_run_until(p->base, both_up, p, WAIT_MS));
    int64_t t0 = gw_test_now_ms();
    gw_test_run_until(p->base, never, p, 1200); /* let 1.2 s of idle time pass */
    assert_true(gw_test_now_ms() - t0 >= 1100); /* libevent may use a coarse clock */
    assert_int_equal(p->srv.down, 0);
    assert_int_equal(p->cli.down, 0);
    uint64_t frames = pn_transport_get_frames_input(
        pn_connection_transport(gw_amqp_conn_pn(p->srv.conn)));
    assert_true(frames >= 5); /* open, begin, attach + at least 2 heartbeats */
    pair_free(p);
}

/* Throughput: GW_AMQP_PAIR_BENCH=N (default 20000) small messages each way. */
static void bench_one(pn_snd_settle_mode_t snd, int n)
{
    pair_t *p = pair_new();
    p->snd = snd;
    p->n = n;
    p->credit_window = 1000;
    p->expect_disp = expected_dispositions(p);
    pair_start(p);
    assert_true(gw_test_run_until(p->base, both_up, p, WAIT_MS));
    struct timespec t0, t1, c0, c1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    assert_true(gw_test_run_until(p->base, all_done, p, 120000));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
    assert_int_equal(p->received, n);
    assert_int_equal(p->bad_content, 0);
    /* both ends run in this one thread: CPU time is the cost of sender + receiver */
    printf("# amqp socketpair %s: %d msgs in %.3f s = %.0f msgs/s (%.0f msgs per CPU-second)\n",
           snd == PN_SND_SETTLED ? "presettled" : "unsettled", n, s, (double)n / s,
           cpu > 0 ? (double)n / cpu : 0.0);
    pair_free(p);
}

static void test_throughput(void **state)
{
    const char *env = getenv("GW_AMQP_PAIR_BENCH");
    int n = env ? atoi(env) : 20000;
    if (n <= 0)
        n = 20000;
    bench_one(PN_SND_SETTLED, n);
    bench_one(PN_SND_UNSETTLED, n);
}

int main(void)
{
    gw_log_set_level(GW_LOG_LEVEL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_and_backoff),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_open_up_relay_and_clean_close),
        cmocka_unit_test(test_settle_modes),
        cmocka_unit_test(test_rejected_with_condition),
        cmocka_unit_test(test_credit_zero),
        cmocka_unit_test(test_link_close_condition),
        cmocka_unit_test(test_connection_loss),
        cmocka_unit_test(test_destroy_in_callbacks),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_heartbeats),
        cmocka_unit_test(test_empty_delivery),
        cmocka_unit_test(test_max_message_size_link_closed),
        cmocka_unit_test(test_frame_too_large),
        cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
