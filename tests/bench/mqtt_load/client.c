/*
 * client.c - one MQTT 3.1.1 client connection of mqtt-load (publisher,
 * subscriber or idle client), on a libevent bufferevent.
 *
 * Input: packets are framed in place in the bufferevent's input evbuffer
 * (gw_mqtt_frame_header on the first bytes; evbuffer_pullup only when a
 * packet straddles two chunks), decoded with gw_mqtt_decode, drained.
 * Output: PUBLISH is encoded straight into space reserved in the output
 * evbuffer (header by gw_mqtt_encode_publish_header, then the payload), so
 * a message costs no allocation and no intermediate copy; many packets of
 * one loop iteration leave in one write.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>

#include "gw/log.h"
#include "gw/topic.h"
#include "load.h"

/* Window slot states of a publisher's in-flight message. */
enum { SLOT_FREE = 0, SLOT_WAIT_ACK, SLOT_WAIT_REC, SLOT_WAIT_COMP, SLOT_DONE };

#define LT_MAX_SINGLE_IO (256 * 1024)

static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

static const char *kind_name(int kind)
{
    return kind == LT_PUB ? "pub" : kind == LT_SUB ? "sub" : "idle";
}

lt_client_t *lt_client_new(lt_worker_t *w, int kind, uint32_t index)
{
    lt_run_t *run = w->run;
    const lt_cfg_t *cfg = &run->cfg;
    lt_client_t *c = calloc(1, sizeof(*c));
    char id[256];
    if (!c)
        return NULL;
    c->w = w;
    c->kind = kind;
    c->index = index;
    snprintf(id, sizeof(id), "%s%s%u", cfg->client_prefix,
             kind == LT_PUB ? "p" : kind == LT_SUB ? "s" : "c", index);
    c->client_id = strdup(id);
    if (!c->client_id)
        goto fail;
    if (kind == LT_PUB) {
        c->topic = lt_format_topic(cfg->topic, index);
        c->quota = UINT64_MAX;
        if (cfg->messages > 0)
            c->quota = run->quota_base + (index < run->quota_extra ? 1 : 0);
        if (cfg->qos > 0)
            c->ring = calloc((size_t)cfg->window, 1);
        if (!c->topic || (cfg->qos > 0 && !c->ring))
            goto fail;
    } else if (kind == LT_SUB) {
        c->topic = lt_format_topic(cfg->sub_topic, index);
        c->qos2_ids = calloc(65536 / 8, 1);
        if (!c->topic || !c->qos2_ids)
            goto fail;
    }
    return c;
fail:
    lt_client_free(c);
    return NULL;
}

void lt_client_free(lt_client_t *c)
{
    if (!c)
        return;
    if (c->bev)
        bufferevent_free(c->bev);
    free(c->client_id);
    free(c->topic);
    free(c->ring);
    free(c->qos2_ids);
    lt_sink_free(&c->sink);
    free(c);
}

static void set_closed(lt_client_t *c)
{
    if (c->state == LT_C_CLOSED)
        return;
    c->state = LT_C_CLOSED;
    LT_INC(c->w->st.open, (uint64_t)-1);
    if (c->kind == LT_PUB && !c->done) {
        c->done = true; /* publishes no more: do not hold up the end of RUN */
        LT_INC(c->w->st.pubs_done, 1);
    }
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
}

/* A failure: during setup it fails the run, afterwards it is counted. */
static void fail(lt_client_t *c, const char *what)
{
    int phase = atomic_load(&c->w->run->phase);
    if (c->state == LT_C_CLOSING || c->state == LT_C_CLOSED) {
        set_closed(c);
        return;
    }
    if (c->state != LT_C_READY)
        LT_INC(c->w->st.setup_errors, 1);
    else if (phase < LT_DONE)
        LT_INC(c->w->st.errors, 1);
    GW_LOG_ERROR("mqtt-load", c->client_id, "%s client: %s", kind_name(c->kind), what);
    set_closed(c);
}

static int send_bytes(lt_client_t *c, const void *p, size_t n)
{
    c->last_tx = lt_now_ns();
    return evbuffer_add(bufferevent_get_output(c->bev), p, n);
}

/* Control packets (CONNECT, SUBSCRIBE): not on the message path, so a
 * long topic may cost one allocation. */
static int send_packet(lt_client_t *c, const gw_mqtt_packet_t *pkt)
{
    uint8_t stackbuf[512];
    size_t need = gw_mqtt_encoded_size(NULL, pkt), n = 0;
    uint8_t *buf = need <= sizeof(stackbuf) ? stackbuf : malloc(need);
    int rc = -1;
    if (need == 0 || !buf)
        goto cleanup;
    gw_err_t e = gw_mqtt_encode(NULL, pkt, buf, need, &n);
    if (e != GW_OK) {
        GW_LOG_ERROR("mqtt-load", c->client_id, "cannot encode %s: %s",
                     gw_mqtt_type_name(pkt->type), gw_err_str(e));
        goto cleanup;
    }
    rc = send_bytes(c, buf, n);
cleanup:
    if (buf && buf != stackbuf)
        free(buf);
    return rc;
}

static void send_ack(lt_client_t *c, gw_mqtt_type_t type, uint16_t id)
{
    uint8_t b[4];
    gw_mqtt_encode_ack(type, id, b);
    send_bytes(c, b, 4);
}

/* A non-blocking socket bound to 127.0.0.(2 + index % 253), port chosen at
 * connect() (IP_BIND_ADDRESS_NO_PORT: the 4-tuple, not the source port
 * alone, must be unique); -1 to let connect() pick as usual. */
static evutil_socket_t spread_socket(const lt_run_t *run, uint32_t index)
{
    const struct sockaddr_in *to = (const struct sockaddr_in *)&run->addr;
    if (!run->cfg.spread_source || to->sin_family != AF_INET ||
        (ntohl(to->sin_addr.s_addr) >> 24) != 127)
        return -1;
    evutil_socket_t fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    struct sockaddr_in from;
    memset(&from, 0, sizeof(from));
    from.sin_family = AF_INET;
    from.sin_addr.s_addr = htonl((127u << 24) | (2u + index % 253u));
#ifdef IP_BIND_ADDRESS_NO_PORT
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
#endif
    if (bind(fd, (struct sockaddr *)&from, sizeof(from)) != 0) {
        evutil_closesocket(fd);
        return -1;
    }
    return fd;
}

int lt_client_connect(lt_client_t *c)
{
    lt_run_t *run = c->w->run;
    evutil_socket_t sfd = spread_socket(run, c->index);
    c->bev = bufferevent_socket_new(c->w->base, sfd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        if (sfd >= 0)
            evutil_closesocket(sfd);
        return -1;
    }
    LT_INC(c->w->st.open, 1);
    c->state = LT_C_CONNECTING;
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_set_max_single_read(c->bev, LT_MAX_SINGLE_IO);
    bufferevent_set_max_single_write(c->bev, LT_MAX_SINGLE_IO);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&run->addr, run->addrlen) != 0) {
        fail(c, "connect failed");
        return -1;
    }
    int one = 1;
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (fd >= 0) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (run->cfg.sndbuf > 0) {
            int sz = (int)run->cfg.sndbuf;
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        }
    }
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    return 0;
}

static void send_connect(lt_client_t *c)
{
    const lt_cfg_t *cfg = &c->w->run->cfg;
    gw_mqtt_packet_t pkt;
    char will_topic[300];
    memset(&pkt, 0, sizeof(pkt));
    pkt.type = GW_MQTT_CONNECT;
    gw_mqtt_connect_t *cn = &pkt.u.connect;
    cn->protocol_level = GW_MQTT_PROTOCOL_V311;
    cn->clean_session = c->kind == LT_IDLE ? !cfg->persistent : cfg->clean;
    cn->keep_alive = (uint16_t)cfg->keepalive;
    cn->client_id.ptr = c->client_id;
    cn->client_id.len = (uint16_t)strlen(c->client_id);
    if (c->kind == LT_IDLE && cfg->will) {
        int n = snprintf(will_topic, sizeof(will_topic), "%swill/%u", cfg->client_prefix, c->index);
        cn->will_flag = true;
        cn->will_qos = 1;
        cn->will_topic.ptr = will_topic;
        cn->will_topic.len = (uint16_t)n;
        cn->will_payload.ptr = (const uint8_t *)"gone";
        cn->will_payload.len = 4;
    }
    c->state = LT_C_WAIT_CONNACK;
    if (send_packet(c, &pkt) != 0)
        fail(c, "CONNECT not sent");
}

static void send_subscribe(lt_client_t *c)
{
    size_t flen = strlen(c->topic);
    uint8_t *topics_buf = malloc(flen + 3);
    gw_mqtt_str_t f = {c->topic, (uint16_t)flen};
    uint8_t qos = (uint8_t)c->w->run->cfg.qos;
    gw_mqtt_packet_t pkt;
    size_t n;
    memset(&pkt, 0, sizeof(pkt));
    pkt.type = GW_MQTT_SUBSCRIBE;
    pkt.u.subscribe.packet_id = 1;
    if (!topics_buf || flen > 65535 ||
        gw_mqtt_topics_build(&f, &qos, 1, topics_buf, flen + 3, &pkt.u.subscribe.topics, &n) !=
            GW_OK ||
        send_packet(c, &pkt) != 0) {
        free(topics_buf);
        fail(c, "SUBSCRIBE not sent");
        return;
    }
    free(topics_buf);
    c->state = LT_C_WAIT_SUBACK;
}

static void became_ready(lt_client_t *c)
{
    c->state = LT_C_READY;
    LT_INC(c->w->st.ready, 1);
    if (c->kind == LT_IDLE) {
        c->w->st.t_last_connack = lt_now_ns();
        lt_worker_open_more(c->w); /* keep --connect-concurrency connects going */
    }
}

/* ---------------------------------------------------------------- */
/* Publisher                                                          */
/* ---------------------------------------------------------------- */

static inline void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static inline uint16_t seq_pid(uint64_t seq)
{
    return (uint16_t)(seq % 65535u + 1u);
}

static int send_publish(lt_client_t *c, struct evbuffer *out, uint64_t now)
{
    lt_run_t *run = c->w->run;
    const lt_cfg_t *cfg = &run->cfg;
    uint32_t plen = (uint32_t)cfg->payload;
    uint64_t seq = c->next_seq;
    gw_mqtt_publish_t pub;
    struct evbuffer_iovec v;
    size_t tlen = strlen(c->topic), hlen = 0;
    size_t need = GW_MQTT_PUBLISH_HEADER_MAX(tlen) + plen;

    memset(&pub, 0, sizeof(pub));
    pub.qos = (uint8_t)cfg->qos;
    pub.topic.ptr = c->topic;
    pub.topic.len = (uint16_t)tlen;
    pub.packet_id = cfg->qos > 0 ? seq_pid(seq) : 0;
    if (evbuffer_reserve_space(out, (ev_ssize_t)need, &v, 1) < 1)
        return -1;
    uint8_t *p = v.iov_base;
    if (gw_mqtt_encode_publish_header(&pub, plen, p, need, &hlen) != GW_OK)
        return -1;
    put_be32(p + hlen, c->index);
    put_be64(p + hlen + 4, seq);
    put_be64(p + hlen + 12, now);
    memcpy(p + hlen + LT_HDR_SIZE, run->filler, plen - LT_HDR_SIZE);
    v.iov_len = hlen + plen;
    if (evbuffer_commit_space(out, &v, 1) != 0)
        return -1;
    if (cfg->qos > 0)
        c->ring[seq % (uint64_t)cfg->window] = cfg->qos == 1 ? SLOT_WAIT_ACK : SLOT_WAIT_REC;
    c->next_seq = seq + 1;
    c->last_tx = now;
    lt_stats_t *st = &c->w->st;
    LT_INC(st->sent, 1);
    atomic_store_explicit(&run->pub_sent[c->index], c->next_seq, memory_order_relaxed);
    if (now >= LT_GET(run->t_measure)) {
        st->sent_measured++;
        if (cfg->qos == 0) {
            st->acked_measured++;
            st->t_last_ack = now;
        }
    }
    if (cfg->qos == 0) {
        c->acked_upto = c->next_seq;
        LT_INC(st->acked, 1);
    }
    return 0;
}

void lt_client_pump(lt_client_t *c)
{
    lt_run_t *run = c->w->run;
    const lt_cfg_t *cfg = &run->cfg;
    if (c->kind != LT_PUB || c->state != LT_C_READY || c->done ||
        atomic_load_explicit(&run->phase, memory_order_acquire) != LT_RUN)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    uint64_t now = lt_now_ns();
    uint64_t target = UINT64_MAX;
    if (run->rate_per_pub > 0) {
        double el = (double)(now - LT_GET(run->t_start)) / 1e9;
        target = (uint64_t)(run->rate_per_pub * el) + 1;
    }
    if (target > c->quota)
        target = c->quota;
    size_t limit = (size_t)cfg->out_buffer;
    uint64_t window = (uint64_t)cfg->window;
    while (c->next_seq < target) {
        if (cfg->qos > 0 && c->next_seq - c->acked_upto >= window)
            break;
        if (evbuffer_get_length(out) >= limit)
            break;
        if (send_publish(c, out, now) != 0) {
            fail(c, "PUBLISH not queued (out of memory)");
            return;
        }
        now = lt_now_ns();
    }
    if (c->next_seq >= c->quota && !c->done) {
        c->done = true;
        LT_INC(c->w->st.pubs_done, 1);
    }
}

/* The in-flight message whose packet id is pid, or UINT64_MAX. The window
 * never spans more than 65535 sequence numbers, so the id is unambiguous. */
static uint64_t seq_of_pid(const lt_client_t *c, uint16_t pid)
{
    uint64_t base = c->acked_upto;
    uint64_t off = ((uint64_t)(pid - 1u) + 65535u - base % 65535u) % 65535u;
    uint64_t seq = base + off;
    return seq < c->next_seq ? seq : UINT64_MAX;
}

static void pub_ack(lt_client_t *c, gw_mqtt_type_t type, uint16_t pid)
{
    const lt_cfg_t *cfg = &c->w->run->cfg;
    lt_stats_t *st = &c->w->st;
    uint64_t seq = seq_of_pid(c, pid);
    uint64_t window = (uint64_t)cfg->window;
    uint8_t *slot = seq == UINT64_MAX ? NULL : &c->ring[seq % window];
    uint8_t want = type == GW_MQTT_PUBACK ? SLOT_WAIT_ACK
                 : type == GW_MQTT_PUBREC ? SLOT_WAIT_REC
                                          : SLOT_WAIT_COMP;
    if (type == GW_MQTT_PUBREC && slot && *slot == SLOT_WAIT_COMP) {
        /* A repeated PUBREC: answer it again (MQTT-4.3.3). */
        send_ack(c, GW_MQTT_PUBREL, pid);
        return;
    }
    if (!slot || *slot != want) {
        st->protocol_errors++;
        GW_LOG_WARN("mqtt-load", c->client_id, "unexpected %s id=%u", gw_mqtt_type_name(type),
                    pid);
        return;
    }
    if (type == GW_MQTT_PUBREC) {
        *slot = SLOT_WAIT_COMP;
        send_ack(c, GW_MQTT_PUBREL, pid); /* MQTT-4.3.3-1 */
        return;
    }
    *slot = SLOT_DONE;
    uint64_t now = lt_now_ns();
    LT_INC(st->acked, 1);
    if (now >= LT_GET(c->w->run->t_measure)) {
        st->acked_measured++;
        st->t_last_ack = now;
    }
    while (c->acked_upto < c->next_seq && c->ring[c->acked_upto % window] == SLOT_DONE) {
        c->ring[c->acked_upto % window] = SLOT_FREE;
        c->acked_upto++;
    }
}

/* ---------------------------------------------------------------- */
/* Subscriber                                                         */
/* ---------------------------------------------------------------- */

static void sub_publish(lt_client_t *c, const gw_mqtt_publish_t *p)
{
    uint16_t id = p->packet_id;
    if (p->qos == 2) {
        uint8_t bit = (uint8_t)(1u << (id & 7));
        uint8_t *byte = &c->qos2_ids[id >> 3];
        /* Method B of MQTT-4.3.3: a PUBLISH whose id awaits PUBREL is the
         * same message again; acknowledge it without delivering twice. */
        if (!(*byte & bit)) {
            *byte |= bit;
            lt_record_payload(c->w, &c->sink, p->payload.ptr, p->payload.len, lt_now_ns());
        }
        send_ack(c, GW_MQTT_PUBREC, id);
        return;
    }
    lt_record_payload(c->w, &c->sink, p->payload.ptr, p->payload.len, lt_now_ns());
    if (p->qos == 1)
        send_ack(c, GW_MQTT_PUBACK, id);
}

static void sub_pubrel(lt_client_t *c, uint16_t id)
{
    c->qos2_ids[id >> 3] &= (uint8_t)~(1u << (id & 7));
    send_ack(c, GW_MQTT_PUBCOMP, id);
}

/* ---------------------------------------------------------------- */
/* Dispatch                                                           */
/* ---------------------------------------------------------------- */

static int handle(lt_client_t *c, const gw_mqtt_packet_t *pkt)
{
    char why[160];
    switch (pkt->type) {
    case GW_MQTT_CONNACK:
        if (c->state != LT_C_WAIT_CONNACK) {
            fail(c, "unexpected CONNACK");
            return -1;
        }
        if (pkt->u.connack.return_code != GW_MQTT_CONNACK_ACCEPTED) {
            c->w->st.connack_errors++;
            snprintf(why, sizeof(why), "CONNACK refused: return code %u",
                     pkt->u.connack.return_code);
            fail(c, why);
            return -1;
        }
        if (c->kind == LT_SUB)
            send_subscribe(c);
        else
            became_ready(c);
        return 0;
    case GW_MQTT_SUBACK:
        if (c->state != LT_C_WAIT_SUBACK || pkt->u.suback.count != 1) {
            fail(c, "unexpected SUBACK");
            return -1;
        }
        if (pkt->u.suback.codes[0] == GW_MQTT_SUBACK_FAILURE) {
            c->w->st.suback_failures++;
            fail(c, "SUBACK: subscription refused (0x80)");
            return -1;
        }
        if (pkt->u.suback.codes[0] < c->w->run->cfg.qos) {
            c->w->st.suback_downgrades++;
            GW_LOG_WARN("mqtt-load", c->client_id, "SUBACK granted QoS %u < %d",
                        pkt->u.suback.codes[0], (int)c->w->run->cfg.qos);
        }
        became_ready(c);
        return 0;
    case GW_MQTT_PUBLISH:
        if (c->kind == LT_SUB && c->state == LT_C_READY)
            sub_publish(c, &pkt->u.publish);
        else
            c->w->st.foreign++;
        return 0;
    case GW_MQTT_PUBACK:
    case GW_MQTT_PUBREC:
    case GW_MQTT_PUBCOMP:
        if (c->kind == LT_PUB && c->ring)
            pub_ack(c, pkt->type, pkt->u.ack.packet_id);
        else
            c->w->st.protocol_errors++;
        return 0;
    case GW_MQTT_PUBREL:
        if (c->kind == LT_SUB)
            sub_pubrel(c, pkt->u.ack.packet_id);
        else
            c->w->st.protocol_errors++;
        return 0;
    case GW_MQTT_PINGRESP:
    case GW_MQTT_UNSUBACK:
        return 0;
    default:
        snprintf(why, sizeof(why), "unexpected %s from the server", gw_mqtt_type_name(pkt->type));
        fail(c, why);
        return -1;
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    lt_client_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    uint32_t max = (uint32_t)c->w->run->cfg.max_packet;
    for (;;) {
        size_t have = evbuffer_get_length(in);
        if (have < 2)
            break;
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        const uint8_t *data = v.iov_base;
        size_t avail = v.iov_len;
        uint8_t header;
        size_t hlen;
        uint32_t rem;
        gw_err_t e = gw_mqtt_frame_header(data, avail, max, &header, &hlen, &rem);
        if (e == GW_ERR_AGAIN && avail < have) {
            data = evbuffer_pullup(in, have < 5 ? (ev_ssize_t)have : 5);
            avail = have < 5 ? have : 5;
            e = gw_mqtt_frame_header(data, avail, max, &header, &hlen, &rem);
        }
        if (e == GW_ERR_AGAIN)
            break;
        if (e != GW_OK) {
            fail(c, gw_err_str(e));
            return;
        }
        size_t total = hlen + rem;
        if (have < total)
            break;
        if (avail < total) {
            data = evbuffer_pullup(in, (ev_ssize_t)total); /* straddles chunks: one copy */
            if (!data) {
                fail(c, "out of memory");
                return;
            }
        }
        gw_mqtt_frame_t fr = {header, rem ? data + hlen : NULL, rem};
        gw_mqtt_packet_t pkt;
        e = gw_mqtt_decode(NULL, &fr, &pkt);
        if (e != GW_OK) {
            char why[128];
            snprintf(why, sizeof(why), "bad packet from the server: %s", gw_err_str(e));
            fail(c, why);
            return;
        }
        int r = handle(c, &pkt);
        if (c->state == LT_C_CLOSED)
            return; /* bev is gone */
        evbuffer_drain(in, total);
        if (r != 0)
            return;
    }
    if (c->kind == LT_PUB)
        lt_client_pump(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    lt_client_t *c = arg;
    if (c->state == LT_C_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            set_closed(c);
        return;
    }
    if (c->kind == LT_PUB)
        lt_client_pump(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    lt_client_t *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* Wake on_write when the output drops to a quarter of the limit. */
        bufferevent_setwatermark(bev, EV_WRITE, (size_t)c->w->run->cfg.out_buffer / 4, 0);
        send_connect(c);
        return;
    }
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
        char why[160];
        int err = EVUTIL_SOCKET_ERROR();
        if (what & BEV_EVENT_EOF)
            snprintf(why, sizeof(why), "connection closed by the server");
        else
            snprintf(why, sizeof(why), "connection error: %s", evutil_socket_error_to_string(err));
        fail(c, why);
    }
}

void lt_client_keepalive(lt_client_t *c, uint64_t now)
{
    uint64_t ka = (uint64_t)c->w->run->cfg.keepalive;
    if (ka == 0 || c->state < LT_C_WAIT_SUBACK || c->state > LT_C_READY)
        return;
    /* MQTT-3.1.2-23: a control packet at least every keep alive seconds. */
    if (now - c->last_tx >= ka * 1000000000ull * 3 / 4) {
        static const uint8_t ping[2] = {0xC0, 0x00};
        send_bytes(c, ping, 2);
        c->w->st.pings++;
    }
}

void lt_client_shutdown(lt_client_t *c)
{
    if (c->state == LT_C_CLOSED || c->state == LT_C_CLOSING)
        return;
    if (c->state == LT_C_NEW) {
        c->state = LT_C_CLOSED;
        return;
    }
    if (c->state == LT_C_CONNECTING) {
        set_closed(c);
        return;
    }
    static const uint8_t disc[2] = {0xE0, 0x00};
    send_bytes(c, disc, 2);
    c->state = LT_C_CLOSING;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        set_closed(c);
}
