/*
 * fuzz_session.c - libFuzzer target over a whole mqtt-gateway session.
 *
 * One gateway worker (gateway/ sources, main.c excepted) runs in-process,
 * single-threaded: this file drives its event_base with EVLOOP_NONBLOCK, and
 * next to it an in-process AMQP peer (gw_amqp_listen on 127.0.0.1:0, own
 * event_base, pumped in the same loop) that plays the router and the
 * services: it opens every link the gateway attaches, grants credit,
 * accepts every delivery, answers AMQP_LIST with AMQP_SUBSCRIPTIONS (spec
 * 3.6) and sends one AMQP_PUBLISH on the client's publish link for every
 * AMQP_SUBSCRIBE, so CONNECT, SUBSCRIBE and PUBLISH flow end to end.
 *
 * Per input: a socketpair, one end handed to gw_client_accept() (as a
 * listener would); input byte 0 selects "raw from the start" (bit 0..1 == 0)
 * or a fixed valid CONNECT prefix first; byte 1 seeds the chunk sizes; the
 * rest is written in chunks (1 .. 2^(1 + bits 2..4 of byte 0) bytes),
 * pumping both loops after each until neither the MQTT output nor the peer
 * shows activity. Everything the gateway writes back must frame and decode
 * as MQTT, be a server-to-client type, and start with exactly one CONNACK
 * (abort() otherwise: the gateway must only send valid MQTT). Then the socket
 * is closed and the loops pumped until the worker freed the client (abort()
 * if it has not within 5 s). The gateway and the peer live across inputs;
 * libFuzzer's -detect_leaks checks per-input state.
 * Env FUZZ_SESSION_DEBUG=1: debug logs and every packet the gateway sends.
 * Seeds: tests/fuzz/gen_session_corpus.py -> corpus/session/.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <proton/event.h>
#include <proton/terminus.h>

#include "gateway.h"

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "fuzz_session: check failed at %s:%d: %s\n", __FILE__,   \
                    __LINE__, #cond);                                                 \
            abort();                                                                  \
        }                                                                             \
    } while (0)

static gw_gateway_config_t g_cfg;
static gw_gateway_t g_gw;
static gw_worker_t *g_w;
static struct event_base *g_peer_base;
static gw_amqp_listener_t *g_lst;
static pn_message_t *g_peer_msg;
static uint64_t g_peer_msgid;
static uint64_t g_peer_events; /* activity of the peer, for idle detection */
static bool g_debug; /* env FUZZ_SESSION_DEBUG: print the packets the gateway sends */

/* ------------------------------------------------------------------ */
/* In-process AMQP peer                                                */
/* ------------------------------------------------------------------ */

/* Our sender whose source address is addr (the gateway's receiver on it). */
static pn_link_t *peer_sender_for(pn_connection_t *pc, const char *addr, size_t len)
{
    for (pn_link_t *l = pn_link_head(pc, PN_LOCAL_ACTIVE); l;
         l = pn_link_next(l, PN_LOCAL_ACTIVE)) {
        if (!pn_link_is_sender(l) || (pn_link_state(l) & PN_REMOTE_ACTIVE) == 0)
            continue;
        const char *a = pn_terminus_get_address(pn_link_source(l));
        if (a && strlen(a) == len && memcmp(a, addr, len) == 0)
            return l;
    }
    return NULL;
}

static void peer_on_message(gw_amqp_conn_t *conn, pn_link_t *rcv, const gw_spec_msg_t *m)
{
    pn_connection_t *pc = pn_link_session(rcv) ? pn_session_connection(pn_link_session(rcv))
                                               : NULL;
    pn_link_t *snd;

    if (!pc)
        return;
    if (m->kind == GW_SPEC_LIST) {
        snd = peer_sender_for(pc, m->reply_to.ptr, m->reply_to.len);
        if (snd && pn_link_credit(snd) > 0 &&
            gw_spec_encode_session(g_peer_msg, (g_peer_msgid & 1) != 0, NULL, 0) == GW_OK)
            (void)gw_amqp_send(conn, snd, g_peer_msg, false, NULL);
    } else if (m->kind == GW_SPEC_SUBSCRIBE && m->count > 0) {
        snd = peer_sender_for(pc, m->correlation_id.ptr, m->correlation_id.len);
        if (snd && pn_link_credit(snd) > 0) {
            gw_spec_publish_t p;
            memset(&p, 0, sizeof(p));
            p.topic.ptr = "fz/out";
            p.topic.len = 6;
            p.payload.ptr = "payload";
            p.payload.len = 7;
            p.qos = m->entries[0].qos;
            p.has_message_id = true;
            p.message_id = (g_peer_msgid++ % 65535u) + 1u;
            if (gw_spec_encode_publish(g_peer_msg, &p) == GW_OK)
                (void)gw_amqp_send(conn, snd, g_peer_msg, p.qos == 0, NULL);
        }
    }
}

static void peer_on_event(gw_amqp_conn_t *conn, pn_event_t *ev, void *ctx)
{
    (void)ctx;
    g_peer_events++;
    switch (pn_event_type(ev)) {
    case PN_SESSION_REMOTE_OPEN: {
        pn_session_t *s = pn_event_session(ev);
        if (pn_session_state(s) & PN_LOCAL_UNINIT)
            pn_session_open(s);
        break;
    }
    case PN_LINK_REMOTE_OPEN: {
        pn_link_t *l = pn_event_link(ev);
        if (pn_link_state(l) & PN_LOCAL_UNINIT) {
            pn_terminus_copy(pn_link_source(l), pn_link_remote_source(l));
            pn_terminus_copy(pn_link_target(l), pn_link_remote_target(l));
            pn_link_set_snd_settle_mode(l, pn_link_remote_snd_settle_mode(l));
            pn_link_set_rcv_settle_mode(l, pn_link_remote_rcv_settle_mode(l));
            pn_link_open(l);
            if (pn_link_is_receiver(l))
                pn_link_flow(l, 64);
        }
        break;
    }
    /* Release what the gateway closed: the peer's connection lives across
     * inputs, and proton keeps closed links/sessions until freed (amqp.h). */
    case PN_LINK_REMOTE_CLOSE:
    case PN_LINK_REMOTE_DETACH: {
        pn_link_t *l = pn_event_link(ev);
        if (pn_link_state(l) & PN_LOCAL_ACTIVE)
            pn_link_close(l);
        pn_link_free(l);
        break;
    }
    case PN_SESSION_REMOTE_CLOSE: {
        pn_session_t *s = pn_event_session(ev);
        if (pn_session_state(s) & PN_LOCAL_ACTIVE)
            pn_session_close(s);
        pn_session_free(s);
        break;
    }
    case PN_DELIVERY: {
        pn_delivery_t *d = pn_event_delivery(ev);
        pn_link_t *l = pn_delivery_link(d);
        if (pn_link_is_sender(l)) {
            /* Outcome of something we sent: settle once the gateway did. */
            if (pn_delivery_remote_state(d) != 0 || pn_delivery_settled(d))
                pn_delivery_settle(d);
            break;
        }
        if (pn_delivery_readable(d) && !pn_delivery_partial(d) &&
            pn_delivery_local_state(d) == 0) {
            gw_spec_msg_t m;
            memset(&m, 0, sizeof(m));
            gw_err_t err = gw_amqp_recv(conn, d, g_peer_msg, 0);
            if (err == GW_ERR_AGAIN)
                break;
            if (err == GW_OK && gw_spec_decode(g_peer_msg, &m, NULL, 0) == GW_OK) {
                peer_on_message(conn, l, &m);
                gw_spec_msg_clear(&m);
            }
            if (pn_link_rcv_settle_mode(l) == PN_RCV_SECOND && !pn_delivery_settled(d))
                pn_delivery_update(d, PN_ACCEPTED); /* settled when the gateway settles */
            else
                gw_amqp_settle(d, PN_ACCEPTED, NULL, NULL);
            if (pn_link_credit(l) < 32)
                pn_link_flow(l, 64 - pn_link_credit(l));
        } else if (pn_delivery_settled(d) && pn_delivery_local_state(d) != 0) {
            pn_delivery_settle(d);
        }
        break;
    }
    default:
        break;
    }
}

static void peer_on_state(gw_amqp_conn_t *conn, gw_amqp_state_t st, const char *cond,
                          const char *desc, void *ctx)
{
    (void)conn, (void)st, (void)cond, (void)desc, (void)ctx;
}

static void peer_accept(gw_amqp_listener_t *lst, gw_amqp_conn_t *conn, void *ctx)
{
    gw_amqp_handler_t h = {peer_on_event, peer_on_state};
    (void)lst, (void)ctx;
    gw_amqp_conn_set_handler(conn, &h, NULL);
}

/* ------------------------------------------------------------------ */
/* Loop driving and gateway output checking                            */
/* ------------------------------------------------------------------ */

static void pump_once(void)
{
    event_base_loop(g_w->base, EVLOOP_NONBLOCK);
    event_base_loop(g_peer_base, EVLOOP_NONBLOCK);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

typedef struct session_out {
    int fd;
    gw_mqtt_framer_t fr;
    gw_mqtt_ctx_t ctx;
    size_t npackets; /* packets received from the gateway so far */
} session_out_t;

/* Read and check what the gateway sent; returns bytes read. */
static size_t drain_output(session_out_t *so)
{
    uint8_t buf[16384];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(so->fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        total += (size_t)n;
        size_t off = 0;
        while (off < (size_t)n) {
            size_t used = 0;
            gw_mqtt_frame_t fr;
            gw_mqtt_packet_t pkt;
            gw_err_t err = gw_mqtt_framer_feed(&so->fr, buf + off, (size_t)n - off, &used, &fr);
            if (err == GW_ERR_AGAIN)
                break;
            if (err != GW_OK) {
                fprintf(stderr, "fuzz_session: gateway output does not frame: %s\n",
                        gw_err_name(err));
                abort();
            }
            off += used;
            if (g_debug)
                fprintf(stderr, "fuzz_session: <- 0x%02x (%u bytes)\n", fr.header,
                        (unsigned)fr.body_len);
            err = gw_mqtt_decode(&so->ctx, &fr, &pkt);
            if (err != GW_OK) {
                fprintf(stderr, "fuzz_session: gateway sent undecodable packet 0x%02x: %s\n",
                        fr.header, gw_err_name(err));
                abort();
            }
            /* Only server-to-client packet types; CONNACK first and only once
             * (MQTT-3.2.0-1, MQTT-3.1.0-2). */
            unsigned type = fr.header >> 4;
            CHECK(type != GW_MQTT_CONNECT && type != GW_MQTT_SUBSCRIBE &&
                  type != GW_MQTT_UNSUBSCRIBE && type != GW_MQTT_PINGREQ &&
                  type != GW_MQTT_DISCONNECT);
            CHECK((type == GW_MQTT_CONNACK) == (so->npackets == 0));
            so->npackets++;
        }
    }
    return total;
}

/* Pump until neither the gateway's MQTT output nor the AMQP peer showed
 * activity for a few rounds (bounded). */
static void pump_idle(session_out_t *so, int max_rounds)
{
    int quiet = 0;
    for (int i = 0; i < max_rounds && quiet < 4; i++) {
        uint64_t ev0 = g_peer_events;
        pump_once();
        if (drain_output(so) > 0 || g_peer_events != ev0)
            quiet = 0;
        else
            quiet++;
    }
}

static void write_all(session_out_t *so, const uint8_t *p, size_t len)
{
    int spins = 0;
    while (len > 0 && spins < 1000) {
        ssize_t n = write(so->fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            spins = 0;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return; /* the gateway closed the connection */
        pump_once();
        drain_output(so);
        spins++;
    }
}

/* ------------------------------------------------------------------ */
/* libFuzzer entry points                                              */
/* ------------------------------------------------------------------ */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char url[64];
    gw_err_t err;
    char why[256] = "";
    (void)argc, (void)argv;

    signal(SIGPIPE, SIG_IGN);
    g_debug = getenv("FUZZ_SESSION_DEBUG") != NULL;
    g_peer_base = event_base_new();
    g_peer_msg = pn_message();
    CHECK(g_peer_base && g_peer_msg);
    gw_amqp_opts_t po;
    memset(&po, 0, sizeof(po));
    po.container_id = "fuzz-peer";
    g_lst = gw_amqp_listen(g_peer_base, "127.0.0.1", 0, &po, false, peer_accept, NULL, &err);
    CHECK(g_lst != NULL);
    snprintf(url, sizeof(url), "amqp://127.0.0.1:%u", (unsigned)gw_amqp_listener_port(g_lst));

    char *args[] = {"mqtt-gateway", "--workers", "1", "--mqtt-listen", "127.0.0.1:0",
                    "--amqp-url", url, "--log-level", getenv("FUZZ_SESSION_DEBUG") ? "debug" : "error", "--connect-timeout", "10s",
                    NULL};
    int nargs = (int)(sizeof(args) / sizeof(args[0])) - 1;
    memset(&g_cfg, 0, sizeof(g_cfg));
    memset(&g_gw, 0, sizeof(g_gw));
    CHECK(gw_config_load(&gw_gateway_config_spec, &g_cfg, nargs, args, stderr) == GW_CONFIG_OK);
    gw_log_set_level((gw_log_level_t)g_cfg.log_level);
    CHECK(gw_routes_build(&g_gw.routes, g_cfg.amqp_url, &g_cfg.routes, why, sizeof(why)) ==
          GW_OK);
    CHECK(gw_auth_setup(&g_gw, &g_cfg, why, sizeof(why)) == GW_OK);
    g_gw.cfg = &g_cfg;
    CHECK(gw_limits_init(&g_gw) == GW_OK);
    CHECK(gw_iot_setup(&g_gw, why, sizeof(why)) == GW_OK);
    g_gw.addrs.lwt = g_cfg.lwt_address;
    g_gw.addrs.subctrl = g_cfg.subscription_address;
    g_gw.addrs.to_prefix = g_cfg.to_prefix;
    g_gw.addrs.pubrel_prefix = g_cfg.pubrel_prefix;
    atomic_init(&g_gw.next_serial, 1);
    g_gw.registry = gw_registry_new();
    g_gw.nworkers = 1;
    g_gw.workers = calloc(1, sizeof(*g_gw.workers));
    CHECK(g_gw.registry && g_gw.workers);
    g_w = &g_gw.workers[0];
    CHECK(gw_worker_init(g_w, &g_gw, 0) == GW_OK);

    /* Wait (polling, bounded) until the worker's AMQP connection is up. */
    uint64_t deadline = now_ms() + 10000;
    while (!g_w->dests[0].up && now_ms() < deadline)
        pump_once();
    CHECK(g_w->dests[0].up);
    return 0;
}

/* MQTT 3.1.1 CONNECT, clean session, keep alive 0, client id "fz". */
static const uint8_t connect_prefix[] = {0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'T',
                                         0x04, 0x02, 0x00, 0x00, 0x00, 0x02, 'f', 'z'};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    session_out_t so;
    struct sockaddr_un sun;

    if (size < 2)
        return 0;
    uint8_t mode = data[0];
    uint32_t seed = data[1] * 2654435761u + 1u;
    data += 2;
    size -= 2;

    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
    memset(&so, 0, sizeof(so));
    so.fd = sv[1];
    so.ctx.protocol_level = 4;
    gw_mqtt_framer_init(&so.fr, GW_MQTT_MAX_REMAINING_LENGTH);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    size_t before = g_w->nclients;
    gw_client_accept(g_w, sv[0], (struct sockaddr *)&sun, (int)sizeof(sun), GW_LST_TCP);

    if ((mode & 3) != 0) {
        write_all(&so, connect_prefix, sizeof(connect_prefix));
        pump_idle(&so, 200);
    }
    /* Chunk sizes: 1 .. 2^(mode bits 2..4 + 1), from an LCG seeded by byte 1. */
    size_t maxchunk = (size_t)1 << (((mode >> 2) & 7) + 1);
    while (size > 0) {
        seed = seed * 1103515245u + 12345u;
        size_t n = 1 + (seed >> 16) % maxchunk;
        if (n > size)
            n = size;
        write_all(&so, data, n);
        data += n;
        size -= n;
        pump_idle(&so, 64);
    }
    pump_idle(&so, 200);
    close(sv[1]);
    so.fd = -1;

    /* The worker must free the client (bounded in time: close timers). */
    uint64_t deadline = now_ms() + 5000;
    while (g_w->nclients > before && now_ms() < deadline)
        pump_once();
    if (g_w->nclients > before) {
        fprintf(stderr, "fuzz_session: client not freed 5 s after the socket closed\n");
        abort();
    }
    gw_mqtt_framer_cleanup(&so.fr);
    return 0;
}
