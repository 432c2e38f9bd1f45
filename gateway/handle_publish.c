/*
 * handle_publish.c - PUBLISH and PUBREL from the client (client -> AMQP).
 *
 * QoS 0: pre-settled on a rcv-settle-first link. QoS 1: unsettled on the
 * same link, PUBACK only once the receiver says `accepted`. QoS 2: on a
 * separate rcv-settle-second link; `accepted` (still unsettled) -> PUBREC;
 * the client's PUBREL -> we settle -> PUBCOMP. No credit: GW_ERR_AGAIN (the
 * packet stays in the input buffer and the socket is not read).
 *
 * Sender links: with an ANONYMOUS-RELAY peer one link per destination and
 * settle mode (`to` per message); otherwise one link per topic, cached up to
 * max-topic-links per client, least recently used idle links closed first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

static gw_in_msg_t *in_find(gw_client_t *c, uint16_t pid)
{
    for (size_t i = 0; i < c->nin; i++)
        if (c->in[i].pid == pid)
            return &c->in[i];
    return NULL;
}

static void in_remove(gw_client_t *c, gw_in_msg_t *m)
{
    free(m->data);
    *m = c->in[--c->nin];
}

static gw_in_msg_t *in_add(gw_client_t *c, const gw_mqtt_publish_t *p)
{
    if (c->nin == c->capin) {
        size_t cap = c->capin ? c->capin * 2 : 8;
        gw_in_msg_t *n = realloc(c->in, cap * sizeof(*n));
        if (!n)
            return NULL;
        c->in = n;
        c->capin = cap;
    }
    char *data = malloc((size_t)p->topic.len + p->payload.len + 1);
    if (!data)
        return NULL;
    memcpy(data, p->topic.ptr, p->topic.len);
    if (p->payload.len)
        memcpy(data + p->topic.len, p->payload.ptr, p->payload.len);
    gw_in_msg_t *m = &c->in[c->nin++];
    memset(m, 0, sizeof(*m));
    m->data = data;
    m->tlen = p->topic.len;
    m->plen = p->payload.len;
    m->pid = p->packet_id;
    m->qos = p->qos;
    m->retain = p->retain;
    return m;
}

gw_err_t gw_publish_track_iot(gw_client_t *c, const gw_mqtt_publish_t *p, pn_delivery_t *dlv)
{
    if (c->nin == c->capin) {
        size_t cap = c->capin ? c->capin * 2 : 8;
        gw_in_msg_t *n = realloc(c->in, cap * sizeof(*n));
        if (!n)
            return GW_ERR_NOMEM;
        c->in = n;
        c->capin = cap;
    }
    gw_in_msg_t *m = &c->in[c->nin++];
    memset(m, 0, sizeof(*m));
    m->dlv = dlv;
    m->pid = p->packet_id;
    m->qos = p->qos;
    m->retain = p->retain;
    m->iot = true;
    return GW_OK;
}

void gw_publish_free(gw_client_t *c)
{
    for (size_t i = 0; i < c->nin; i++)
        free(c->in[i].data);
    free(c->in);
    c->in = NULL;
    c->nin = c->capin = 0;
    if (c->retry_ev)
        event_del(c->retry_ev);
}

static void topic_link_drop(gw_client_t *c, gw_glink_t *victim)
{
    gw_glink_t **pp = &c->topic_links;
    while (*pp && *pp != victim)
        pp = &(*pp)->next;
    if (!*pp)
        return;
    *pp = victim->next;
    c->ntopic_links--;
    if (victim->pn)
        gw_link_release(c, victim->pn, NULL, NULL);
    free(victim->topic);
    free(victim);
}

/* Find or attach the sender for (destination, topic, QoS 2 or not). NULL with
 * *err = GW_ERR_AGAIN when the cache is full of busy links. */
gw_glink_t *gw_publish_sender(gw_client_t *c, size_t d, const char *topic, size_t tlen,
                              bool qos2, bool relay_ok, gw_err_t *err)
{
    gw_dest_t *dest = gw_client_dest(c, d);
    bool anon = relay_ok && gw_amqp_conn_peer_has_anonymous_relay(dest->conn);
    size_t n_on_dest = 0;
    gw_glink_t *lru = NULL, *glru = NULL; /* idle LRU on this destination / on any */
    *err = GW_OK;
    for (gw_glink_t *gl = c->topic_links; gl; gl = gl->next) {
        if (gl->pn && pn_link_unsettled(gl->pn) == 0 && (!glru || gl->last_use < glru->last_use))
            glru = gl;
        if (gl->dest != d)
            continue;
        if (gl->qos2 == qos2 &&
            (anon ? gl->topic == NULL
                  : (gl->topic && strlen(gl->topic) == tlen && memcmp(gl->topic, topic, tlen) == 0))) {
            gl->last_use = ++c->use_clock;
            return gl;
        }
        n_on_dest++;
        if (gl->pn && pn_link_unsettled(gl->pn) == 0 && (!lru || gl->last_use < lru->last_use))
            lru = gl;
    }
    if (!anon && n_on_dest >= (size_t)c->w->gw->cfg->max_topic_links) {
        if (!lru) {
            *err = GW_ERR_AGAIN; /* resumes when a disposition arrives */
            return NULL;
        }
        topic_link_drop(c, lru);
        if (glru == lru)
            glru = NULL;
    }
    /* --max-links-per-client: all destinations together (issue 7). */
    if (c->ntopic_links >= (size_t)c->w->gw->cfg->max_links_per_client) {
        if (!glru) {
            *err = GW_ERR_AGAIN; /* every link busy: resumes on a disposition */
            return NULL;
        }
        topic_link_drop(c, glru);
    }
    pn_session_t *ssn = gw_client_session(c, d);
    if (!ssn) {
        *err = GW_ERR_AMQP;
        return NULL;
    }
    gw_glink_t *gl = calloc(1, sizeof(*gl));
    if (!gl) {
        *err = GW_ERR_NOMEM;
        return NULL;
    }
    if (!anon) {
        gl->topic = strndup(topic, tlen);
        if (!gl->topic) {
            free(gl);
            *err = GW_ERR_NOMEM;
            return NULL;
        }
    }
    /* Spec 2.3: `$mqtt.from.<id>.q01` / `.q2`, `.<address>` appended for
     * per-address senders. Unique on the connection: one client holds one
     * link per (destination, QoS class[, address]); an evicted link and the
     * links of a client taken over on this worker are detached (flushed by
     * gw_amqp_link_close) before a link with the same name is attached
     * (spec 2.2 rule 3). Built at its exact size: a truncated name could
     * collide for long addresses. Not on the message path (links are cached). */
    int nlen = snprintf(NULL, 0, "$mqtt.from.%s.%s%s%.*s", c->id, qos2 ? "q2" : "q01",
                        anon ? "" : ".", anon ? 0 : (int)tlen, anon ? "" : topic);
    char *name = nlen >= 0 ? malloc((size_t)nlen + 1) : NULL;
    if (!name) {
        free(gl->topic);
        free(gl);
        *err = GW_ERR_NOMEM;
        return NULL;
    }
    snprintf(name, (size_t)nlen + 1, "$mqtt.from.%s.%s%s%.*s", c->id, qos2 ? "q2" : "q01",
             anon ? "" : ".", anon ? 0 : (int)tlen, anon ? "" : topic);
    /* QoS 0/1: rcv-settle first, mixed (QoS 0 pre-settled). QoS 2: rcv-settle second. */
    gl->pn = gw_amqp_sender_open(ssn, name, gl->topic, qos2 ? PN_SND_UNSETTLED : PN_SND_MIXED,
                                 qos2 ? PN_RCV_SECOND : PN_RCV_FIRST);
    free(name);
    if (!gl->pn) {
        free(gl->topic);
        free(gl);
        *err = GW_ERR_AMQP;
        return NULL;
    }
    gl->client = c;
    gl->role = GW_LINK_TOPIC;
    gl->dest = (uint8_t)d;
    gl->qos2 = qos2;
    gl->last_use = ++c->use_clock;
    pn_link_set_context(gl->pn, gl);
    gl->next = c->topic_links;
    c->topic_links = gl;
    c->ntopic_links++;
    return gl;
}

/* Forward one PUBLISH. GW_ERR_AGAIN: no link credit yet (nothing sent). */
static gw_err_t forward(gw_client_t *c, const gw_mqtt_publish_t *p, pn_delivery_t **out)
{
    gw_worker_t *w = c->w;
    gw_err_t err;

    *out = NULL;
    const gw_route_t *route = gw_routes_match(&w->gw->routes, p->topic.ptr, p->topic.len);
    size_t d = route ? route->dest : 0;
    gw_dest_t *dest = gw_client_dest(c, d);
    if (c->dests && dest && !dest->conn) {
        /* Per-client mode: first message to this destination; wait for UP. */
        if (gw_client_open_dest(c, d) == GW_OK)
            return GW_ERR_AGAIN;
    } else if (c->dests && dest && !dest->up) {
        return GW_ERR_AGAIN;
    }
    if (!dest || !dest->up)
        return GW_ERR_AMQP;
    /* The AMQP address: the topic itself, or its rewrite by the route's
     * template (foreign brokers, issue 6), built in the worker's scratch
     * buffer (grown once, no allocation per message in steady state). */
    const char *addr = p->topic.ptr;
    size_t alen = p->topic.len;
    if (route && route->addr_template) {
        alen = gw_route_rewrite(route, p->topic.ptr, p->topic.len, w->addr_buf, w->addr_cap);
        if (alen >= w->addr_cap) {
            char *nb = realloc(w->addr_buf, alen + 1);
            if (!nb)
                return GW_ERR_NOMEM;
            w->addr_buf = nb;
            w->addr_cap = alen + 1;
            gw_route_rewrite(route, p->topic.ptr, p->topic.len, w->addr_buf, w->addr_cap);
        }
        addr = w->addr_buf;
    }
    /* A template needs the rewritten address as link target: no relay. */
    bool relay_ok = !route || (!route->addr_template && !route->relay_never);
    gw_glink_t *gl = gw_publish_sender(c, d, addr, alen, p->qos == 2, relay_ok, &err);
    if (!gl)
        return err;
    if (pn_link_credit(gl->pn) <= 0)
        return GW_ERR_AGAIN; /* back-pressure: resume on PN_LINK_FLOW */

    gw_spec_publish_t sp;
    memset(&sp, 0, sizeof(sp));
    sp.topic.ptr = addr;
    sp.topic.len = alen;
    sp.payload.ptr = (const char *)p->payload.ptr;
    sp.payload.len = p->payload.len;
    sp.qos = p->qos;
    sp.retain = p->retain;
    sp.durable = p->qos > 0;
    sp.delivery_count = p->dup ? 1 : 0;
    sp.has_message_id = p->qos > 0;
    sp.message_id = p->packet_id;
    if (p->qos == 2) {
        /* spec 3.9: (publisher, message-id) lets the SS drop the resend of
         * a QoS 2 PUBLISH it already took, after a gateway failure. */
        sp.publisher.ptr = c->id;
        sp.publisher.len = c->id_len;
    }
    err = gw_spec_encode_publish(w->msg, &sp);
    if (err == GW_OK)
        err = gw_amqp_send(dest->conn, gl->pn, w->msg, p->qos == 0, out);
    if (err == GW_OK) {
        if (*out)
            pn_delivery_set_context(*out, GW_DTAG(p->qos == 1 ? GW_DK_PUB1 : GW_DK_PUB2,
                                                  p->packet_id));
    }
    return err;
}

static void forward_failed(gw_client_t *c, const gw_mqtt_publish_t *p, gw_err_t err)
{
    GW_LOG_WARN(GW_MOD, c->id, "cannot forward PUBLISH to %.*s: %s", (int)p->topic.len,
                p->topic.ptr, gw_err_str(err));
    gw_client_close(c, GW_CLOSE_BRUTE, "cannot forward PUBLISH to AMQP");
}

gw_err_t gw_handle_publish(gw_client_t *c, const gw_mqtt_publish_t *p)
{
    pn_delivery_t *dlv = NULL;
    gw_err_t err;

    if (!gw_limits_publish_token(c))
        return GW_ERR_AGAIN; /* --publish-rate: paused, resumed by the rate timer */
    if (c->iot) {
        /* IoT device (iot.c): Hono topics; identity checks replace the ACL. */
        gw_in_msg_t *m = p->qos > 0 ? in_find(c, p->packet_id) : NULL;
        if (m) {
            if (m->qos == 2 && m->accepted)
                gw_client_write_ack(c, GW_MQTT_PUBREC, p->packet_id);
            return GW_OK;
        }
        err = gw_iot_publish(c, p);
        if (err == GW_ERR_AGAIN)
            gw_limits_publish_refund(c);
        return err;
    }
    if (!gw_auth_allowed(c, p->topic.ptr, p->topic.len, GW_ACL_WRITE, false)) {
        /* Not forwarded. MQTT 3.1.1 has no negative ack: acknowledge and
         * drop (QoS 1 PUBACK, QoS 2 PUBREC; the PUBREL of an id we do not
         * hold is answered PUBCOMP), as brokers usually do, so that the
         * client does not resend it forever. */
        GW_STAT_INC(c->w, acl_denied[GW_ACLD_PUBLISH]);
        gw_auth_log_denied(c, "PUBLISH", p->topic.ptr, p->topic.len);
        if (p->qos == 1)
            gw_client_write_ack(c, GW_MQTT_PUBACK, p->packet_id);
        else if (p->qos == 2 && !in_find(c, p->packet_id))
            gw_client_write_ack(c, GW_MQTT_PUBREC, p->packet_id);
        return GW_OK;
    }
    if (p->qos > 0) {
        gw_in_msg_t *m = in_find(c, p->packet_id);
        if (m) {
            /* Resent before we acknowledged it: it is already on its way
             * (MQTT-4.3.3-2 for QoS 2: not forwarded again, PUBREC again). */
            if (m->qos == 2 && m->accepted)
                gw_client_write_ack(c, GW_MQTT_PUBREC, p->packet_id);
            return GW_OK;
        }
    }
    err = forward(c, p, &dlv);
    if (err == GW_ERR_AGAIN) {
        gw_limits_publish_refund(c); /* the packet is read again later */
        return GW_ERR_AGAIN; /* the packet stays in the input buffer */
    }
    if (err != GW_OK) {
        forward_failed(c, p, err);
        return GW_OK;
    }
    GW_STAT_INC(c->w, msgs_in[p->qos]);
    if (p->qos > 0) {
        gw_in_msg_t *m = in_add(c, p);
        if (!m) {
            /* cannot track it: no ack will be sent, the client resends later */
            if (dlv)
                pn_delivery_set_context(dlv, GW_DTAG(GW_DK_NONE, 0));
            return GW_ERR_NOMEM;
        }
        m->dlv = dlv;
    }
    return GW_OK;
}

static void arm_retry(gw_client_t *c);

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_client_t *c = arg;
    gw_publish_retry(c);
    gw_client_flush_amqp(c);
}

static void arm_retry(gw_client_t *c)
{
    uint64_t now = gw_now_ms(), next = UINT64_MAX;
    for (size_t i = 0; i < c->nin; i++)
        if (!c->in[i].dlv && c->in[i].due_ms < next)
            next = c->in[i].due_ms;
    if (next == UINT64_MAX)
        return;
    if (!c->retry_ev && !(c->retry_ev = evtimer_new(c->w->base, retry_cb, c)))
        return;
    uint64_t delay = next > now ? next - now : 0;
    struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)((delay % 1000) * 1000)};
    evtimer_add(c->retry_ev, &tv);
}

void gw_publish_retry(gw_client_t *c)
{
    uint64_t now = gw_now_ms();
    if (c->state != GW_CLIENT_CONNECTED)
        return;
    for (size_t i = 0; i < c->nin; i++) {
        gw_in_msg_t *m = &c->in[i];
        if (m->dlv || m->due_ms > now || m->iot)
            continue;
        gw_mqtt_publish_t p;
        memset(&p, 0, sizeof(p));
        p.dup = true; /* delivery-count > 0 */
        p.qos = m->qos;
        p.retain = m->retain;
        p.topic.ptr = m->data;
        p.topic.len = m->tlen;
        p.packet_id = m->pid;
        p.payload.ptr = (const uint8_t *)m->data + m->tlen;
        p.payload.len = m->plen;
        pn_delivery_t *dlv = NULL;
        gw_err_t err = forward(c, &p, &dlv);
        if (err == GW_ERR_AGAIN)
            continue; /* no credit: the next PN_LINK_FLOW retries */
        if (err != GW_OK) {
            forward_failed(c, &p, err);
            return;
        }
        m->dlv = dlv;
    }
    arm_retry(c);
}

void gw_publish_on_outcome(gw_client_t *c, gw_glink_t *gl, pn_delivery_t *dlv)
{
    void *tag = pn_delivery_get_context(dlv);
    unsigned kind = GW_DTAG_KIND(tag);
    uint16_t pid = GW_DTAG_PID(tag);
    uint64_t st = pn_delivery_remote_state(dlv);

    if (st == PN_RECEIVED || (st == 0 && !pn_delivery_settled(dlv)))
        return;
    gw_in_msg_t *m = in_find(c, pid);
    if (!m || m->dlv != dlv || (kind != GW_DK_PUB1 && kind != GW_DK_PUB2)) {
        pn_delivery_settle(dlv);
        return;
    }
    if (m->accepted)
        return; /* QoS 2: the receiver settling; we settle on PUBREL */
    if (st == PN_ACCEPTED) {
        if (m->qos == 2) {
            m->accepted = true;
            gw_client_write_ack(c, GW_MQTT_PUBREC, pid);
            return; /* still unsettled: settled on PUBREL */
        }
        gw_client_write_ack(c, GW_MQTT_PUBACK, pid);
        in_remove(c, m);
    } else if ((st == PN_RELEASED || st == PN_MODIFIED) && !m->iot &&
               m->attempts < GW_PUBLISH_MAX_RETRIES) {
        /* Not processed by the receiver: resend after a back-off. */
        m->dlv = NULL;
        m->due_ms = gw_now_ms() + ((uint64_t)GW_PUBLISH_RETRY_BASE_MS << m->attempts);
        m->attempts++;
        GW_LOG_DEBUG(GW_MOD, c->id, "PUBLISH packet %u %s: retry %u", (unsigned)pid,
                     st == PN_RELEASED ? "released" : "modified", (unsigned)m->attempts);
        arm_retry(c);
    } else {
        /* MQTT 3.1.1 has no negative ack: no PUBACK/PUBREC; the client
         * resends after reconnecting. */
        pn_condition_t *cond = pn_disposition_condition(pn_delivery_remote(dlv));
        GW_STAT_INC(c->w, withheld[st == PN_RELEASED   ? GW_WH_RELEASED
                                   : st == PN_MODIFIED ? GW_WH_MODIFIED
                                                       : GW_WH_REJECTED]);
        GW_LOG_WARN(GW_MOD, c->id, "PUBLISH packet %u refused by AMQP (%s%s%s): not acknowledged",
                    (unsigned)pid,
                    st == PN_REJECTED ? "rejected" : st == PN_RELEASED ? "released" : "modified",
                    pn_condition_get_name(cond) ? " " : "",
                    pn_condition_get_name(cond) ? pn_condition_get_name(cond) : "");
        bool iot = m->iot;
        in_remove(c, m);
        if (iot) {
            /* Telemetry/Event API: not resent; MQTT 3.1.1 has no negative
             * ack, so the device learns it by the disconnect (as Hono). */
            pn_delivery_settle(dlv);
            gw_client_close(c, GW_CLOSE_BRUTE, "IoT message not accepted by the AMQP network");
            return;
        }
    }
    pn_delivery_settle(dlv);
    if (c->blocked_credit)
        gw_client_resume(c); /* a busy topic link may have become idle */
}

gw_err_t gw_handle_pubrel(gw_client_t *c, uint16_t pid)
{
    gw_in_msg_t *m = in_find(c, pid);
    if (m && (m->qos != 2 || !m->accepted)) {
        GW_LOG_DEBUG(GW_MOD, c->id, "PUBREL %u before PUBREC: ignored", (unsigned)pid);
        return GW_OK;
    }
    if (m) {
        pn_delivery_update(m->dlv, PN_ACCEPTED);
        pn_delivery_settle(m->dlv);
        in_remove(c, m);
        gw_client_flush_amqp(c);
    }
    /* MQTT-4.3.3-1: PUBCOMP also for an id we no longer know (already released). */
    gw_client_write_ack(c, GW_MQTT_PUBCOMP, pid);
    return GW_OK;
}
