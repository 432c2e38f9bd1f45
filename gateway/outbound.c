/*
 * outbound.c - messages for the client ($mqtt.to.<id>.publish -> PUBLISH)
 * and their acknowledgements (PUBACK, PUBREC, PUBCOMP from the client).
 *
 * QoS 0: PUBLISH written, delivery settled accepted at once. QoS 1: settled
 * accepted on PUBACK. QoS 2: PUBREC -> AMQP_PUBREL(message-id) on
 * $mqtt.<id>.pubrel; its `accepted` -> PUBREL to the client; PUBCOMP ->
 * the original delivery settled accepted. A `pubrel` message on the publish
 * link (the SS resending the release phase) -> PUBREL(message-id), settled
 * on PUBCOMP. Each unsettled delivery holds one unit of credit; credit is
 * replenished as deliveries are settled (gw_client_replenish).
 *
 * Packet ids: the SS's message-id when it is a free 1..65535 id, else the
 * next free one from a per-client bitmap (allocated on first use).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "gateway.h"

/* ------------------------------------------------------------------ */
/* Packet ids                                                          */
/* ------------------------------------------------------------------ */

static bool pid_used(const gw_client_t *c, uint16_t pid)
{
    return (c->pid_bitmap[pid >> 6] >> (pid & 63)) & 1u;
}

uint16_t gw_pktid_take(gw_client_t *c, uint64_t preferred, bool has_preferred)
{
    if (!c->pid_bitmap) {
        c->pid_bitmap = calloc(65536 / 64, sizeof(uint64_t));
        if (!c->pid_bitmap)
            return 0;
    }
    uint16_t pid = 0;
    if (has_preferred && preferred >= 1 && preferred <= 65535 && !pid_used(c, (uint16_t)preferred)) {
        pid = (uint16_t)preferred;
    } else {
        for (uint32_t i = 0; i < 65535; i++) {
            uint16_t cand = (uint16_t)(c->next_pid % 65535u + 1u); /* 1..65535 */
            c->next_pid = cand;
            if (!pid_used(c, cand)) {
                pid = cand;
                break;
            }
        }
        if (!pid)
            return 0;
    }
    c->pid_bitmap[pid >> 6] |= (uint64_t)1 << (pid & 63);
    return pid;
}

void gw_pktid_release(gw_client_t *c, uint16_t pid)
{
    if (c->pid_bitmap)
        c->pid_bitmap[pid >> 6] &= ~((uint64_t)1 << (pid & 63));
}

/* ------------------------------------------------------------------ */
/* In-flight table                                                     */
/* ------------------------------------------------------------------ */

static gw_out_msg_t *out_find(gw_client_t *c, uint16_t pid)
{
    for (size_t i = 0; i < c->nout; i++)
        if (c->out[i].pid == pid)
            return &c->out[i];
    return NULL;
}

static gw_out_msg_t *out_add(gw_client_t *c)
{
    if (c->nout == c->capout) {
        size_t cap = c->capout ? c->capout * 2 : 16;
        gw_out_msg_t *n = realloc(c->out, cap * sizeof(*n));
        if (!n)
            return NULL;
        c->out = n;
        c->capout = cap;
    }
    gw_out_msg_t *m = &c->out[c->nout++];
    memset(m, 0, sizeof(*m));
    return m;
}

static void out_remove(gw_client_t *c, gw_out_msg_t *m)
{
    gw_pktid_release(c, m->pid);
    *m = c->out[--c->nout];
}

void gw_outbound_free(gw_client_t *c)
{
    /* Unsettled deliveries stay unsettled: the SS redelivers them. */
    free(c->out);
    c->out = NULL;
    c->nout = c->capout = 0;
    free(c->pid_bitmap);
    c->pid_bitmap = NULL;
}

gw_err_t gw_outbound_track(gw_client_t *c, pn_delivery_t *dlv, void *owner, uint16_t *pid)
{
    *pid = gw_pktid_take(c, 0, false);
    if (!*pid)
        return c->pid_bitmap ? GW_ERR_LIMIT : GW_ERR_NOMEM;
    gw_out_msg_t *o = out_add(c);
    if (!o) {
        gw_pktid_release(c, *pid);
        *pid = 0;
        return GW_ERR_NOMEM;
    }
    o->dlv = dlv;
    o->owner = owner;
    o->pid = *pid;
    o->qos = 1;
    o->state = GW_OUT_WAIT_PUBACK;
    return GW_OK;
}

void gw_outbound_untrack(gw_client_t *c, uint16_t pid)
{
    gw_out_msg_t *o = out_find(c, pid);
    if (o)
        out_remove(c, o);
}

void gw_outbound_drop_owner(gw_client_t *c, void *owner, uint64_t outcome)
{
    for (size_t i = 0; i < c->nout;) {
        gw_out_msg_t *o = &c->out[i];
        if (o->owner != owner) {
            i++;
            continue;
        }
        if (outcome == PN_MODIFIED) /* the device may have seen it: count the attempt */
            pn_disposition_set_failed(pn_delivery_local(o->dlv), true);
        if (outcome)
            gw_amqp_settle(o->dlv, outcome, NULL, NULL);
        out_remove(c, o); /* the last entry moved to i: look at i again */
    }
}

/* ------------------------------------------------------------------ */
/* AMQP -> MQTT                                                        */
/* ------------------------------------------------------------------ */

static gw_err_t write_publish(gw_client_t *c, const gw_spec_publish_t *sp, uint8_t qos,
                              uint16_t pid)
{
    uint8_t stack_buf[512];
    uint8_t *buf = stack_buf;
    size_t cap = GW_MQTT_PUBLISH_HEADER_MAX(sp->topic.len), written = 0;
    gw_mqtt_publish_t mp;
    gw_err_t err;

    if (sp->topic.len > 65535 || sp->payload.len > GW_MQTT_MAX_REMAINING_LENGTH)
        return GW_ERR_LIMIT;
    if (cap > sizeof(stack_buf)) {
        buf = malloc(cap);
        if (!buf)
            return GW_ERR_NOMEM;
    } else {
        cap = sizeof(stack_buf);
    }
    memset(&mp, 0, sizeof(mp));
    mp.dup = sp->delivery_count > 0 && qos > 0; /* MQTT-3.3.1-2: DUP 0 for QoS 0 */
    mp.qos = qos;
    mp.retain = sp->retain;
    mp.topic.ptr = sp->topic.ptr;
    mp.topic.len = (uint16_t)sp->topic.len;
    mp.packet_id = pid;
    err = gw_mqtt_encode_publish_header(&mp, (uint32_t)sp->payload.len, buf, cap, &written);
    if (err == GW_OK) {
        struct evbuffer *out = bufferevent_get_output(c->bev);
        evbuffer_add(out, buf, written);
        if (sp->payload.len)
            evbuffer_add(out, sp->payload.ptr, sp->payload.len);
        gw_client_want_write(c);
        GW_STAT_INC(c->w, msgs_out[qos > 2 ? 2 : qos]);
        GW_STAT_ADD(c->w, bytes_out, written + sp->payload.len);
        gw_client_check_output(c);
    }
    if (buf != stack_buf)
        free(buf);
    return err;
}

static void refuse(gw_client_t *c, pn_delivery_t *dlv, gw_err_t err, const char *why)
{
    GW_LOG_WARN(GW_MOD, c->id, "message for the client refused: %s %s", gw_err_name(err), why);
    gw_amqp_settle(dlv, PN_REJECTED, gw_err_amqp_condition(err), why[0] ? why : NULL);
    gw_client_replenish(c, 1);
}

void gw_outbound_on_delivery(gw_client_t *c, pn_delivery_t *dlv)
{
    gw_worker_t *w = c->w;
    gw_dest_t *dest = gw_client_dest(c, c->l_publish.dest);

    if (pn_delivery_partial(dlv) || !pn_delivery_readable(dlv))
        return;
    if (c->state != GW_CLIENT_CONNECTED) {
        /* Cannot happen: no credit before CONNACK. Leave it to the SS. */
        gw_amqp_settle(dlv, PN_RELEASED, NULL, NULL);
        return;
    }
    gw_err_t err = gw_amqp_recv(dest->conn, dlv, w->msg,
                                (size_t)w->gw->cfg->max_packet_size + 65536u);
    if (err == GW_ERR_AGAIN)
        return;
    if (err != GW_OK) {
        refuse(c, dlv, err, "");
        return;
    }
    gw_outbound_process(c, dlv);
}

void gw_outbound_process(gw_client_t *c, pn_delivery_t *dlv)
{
    gw_worker_t *w = c->w;
    gw_spec_msg_t m;
    char why[256] = "";
    gw_err_t err;

    memset(&m, 0, sizeof(m));
    err = gw_spec_decode(w->msg, &m, why, sizeof(why));
    if (err != GW_OK) {
        refuse(c, dlv, err, why);
        goto cleanup;
    }
    bool presettled = pn_delivery_settled(dlv);
    if (m.kind == GW_SPEC_PUBLISH) {
        /* A pre-settled delivery cannot be acknowledged: deliver it at QoS 0. */
        uint8_t qos = presettled ? 0 : m.publish.qos;
        if (qos == 0) {
            err = write_publish(c, &m.publish, 0, 0);
            if (presettled)
                pn_delivery_settle(dlv);
            else if (err == GW_OK)
                gw_dl_settle_accepted(c, dlv); /* held above the watermark (L4s) */
            else
                gw_amqp_settle(dlv, PN_REJECTED, gw_err_amqp_condition(err), NULL);
            gw_client_replenish(c, 1);
            goto cleanup;
        }
        uint16_t pid = gw_pktid_take(c, m.publish.message_id, m.publish.has_message_id);
        gw_out_msg_t *o = pid ? out_add(c) : NULL;
        if (!o) {
            if (pid)
                gw_pktid_release(c, pid);
            gw_amqp_settle(dlv, PN_RELEASED, NULL, NULL);
            gw_client_replenish(c, 1);
            goto cleanup;
        }
        o->dlv = dlv;
        o->pid = pid;
        o->qos = qos;
        o->amqp_id = m.publish.has_message_id ? m.publish.message_id : pid;
        o->state = qos == 1 ? GW_OUT_WAIT_PUBACK : GW_OUT_WAIT_PUBREC;
        err = write_publish(c, &m.publish, qos, pid);
        if (err != GW_OK) {
            out_remove(c, o);
            snprintf(why, sizeof(why), "cannot encode PUBLISH");
            refuse(c, dlv, err, why);
        }
    } else if (m.kind == GW_SPEC_PUBREL) {
        /* The SS resends the release phase of a QoS 2 message after a reconnect. */
        gw_out_msg_t *o = NULL;
        if (presettled || !m.has_message_id || m.message_id < 1 || m.message_id > 65535) {
            snprintf(why, sizeof(why), "pubrel needs an unsettled delivery and a message-id 1..65535");
            refuse(c, dlv, GW_ERR_SPEC_FIELD, why);
            goto cleanup;
        }
        uint16_t pid = gw_pktid_take(c, m.message_id, true);
        if (pid != m.message_id) {
            if (pid)
                gw_pktid_release(c, pid);
            snprintf(why, sizeof(why), "packet id %llu is in use",
                     (unsigned long long)m.message_id);
            refuse(c, dlv, GW_ERR_SPEC_FIELD, why);
            goto cleanup;
        }
        o = out_add(c);
        if (!o) {
            gw_pktid_release(c, pid);
            gw_amqp_settle(dlv, PN_RELEASED, NULL, NULL);
            gw_client_replenish(c, 1);
            goto cleanup;
        }
        o->dlv = dlv;
        o->pid = pid;
        o->qos = 2;
        o->amqp_id = m.message_id;
        o->state = GW_OUT_WAIT_PUBCOMP;
        gw_client_write_ack(c, GW_MQTT_PUBREL, pid);
    } else {
        snprintf(why, sizeof(why), "unexpected %s on the publish link", gw_spec_kind_name(m.kind));
        refuse(c, dlv, GW_ERR_SPEC_SUBJECT, why);
    }
cleanup:
    gw_spec_msg_clear(&m);
}

/* ------------------------------------------------------------------ */
/* Client acknowledgements                                             */
/* ------------------------------------------------------------------ */

static void complete(gw_client_t *c, gw_out_msg_t *o)
{
    gw_dl_settle_accepted(c, o->dlv);
    out_remove(c, o);
    gw_client_replenish(c, 1);
    gw_client_flush_amqp(c);
}

gw_err_t gw_handle_puback(gw_client_t *c, uint16_t pid)
{
    gw_out_msg_t *o = out_find(c, pid);
    if (o && o->state == GW_OUT_WAIT_PUBACK && o->owner) {
        pn_delivery_t *dlv = o->dlv;
        void *owner = o->owner;
        out_remove(c, o);
        gw_iot_on_puback(c, dlv, owner);
        gw_client_flush_amqp(c);
    } else if (o && o->state == GW_OUT_WAIT_PUBACK)
        complete(c, o);
    else
        GW_LOG_DEBUG(GW_MOD, c->id, "PUBACK %u for no QoS 1 message: ignored", (unsigned)pid);
    return GW_OK;
}

static bool open_pubrel_link(gw_client_t *c)
{
    char addr[1100];
    if (c->l_pubrel.pn)
        return true;
    if (gw_spec_addr_client(&c->w->gw->addrs, GW_SPEC_ADDR_PUBREL, c->id, c->id_len, addr,
                            sizeof(addr)) != GW_OK)
        return false;
    size_t d = gw_routes_lookup(&c->w->gw->routes, addr, strlen(addr));
    pn_session_t *ssn = gw_client_session(c, d);
    if (!ssn)
        return false;
    pn_link_t *l = gw_amqp_sender_open(ssn, addr, addr, PN_SND_UNSETTLED, PN_RCV_FIRST);
    if (!l)
        return false;
    c->l_pubrel.client = c;
    c->l_pubrel.role = GW_LINK_PUBREL;
    c->l_pubrel.dest = (uint8_t)d;
    c->l_pubrel.pn = l;
    pn_link_set_context(l, &c->l_pubrel);
    return true;
}

void gw_outbound_send_pending_pubrels(gw_client_t *c)
{
    gw_worker_t *w = c->w;
    if (c->state != GW_CLIENT_CONNECTED || !c->l_pubrel.pn)
        return;
    for (size_t i = 0; i < c->nout && pn_link_credit(c->l_pubrel.pn) > 0; i++) {
        gw_out_msg_t *o = &c->out[i];
        if (o->state != GW_OUT_PUBREL_PENDING)
            continue;
        pn_delivery_t *dlv = NULL;
        if (gw_spec_encode_pubrel(w->msg, o->amqp_id) != GW_OK ||
            gw_amqp_send(gw_client_dest(c, c->l_pubrel.dest)->conn, c->l_pubrel.pn, w->msg,
                         false, &dlv) != GW_OK)
            break;
        if (dlv)
            pn_delivery_set_context(dlv, GW_DTAG(GW_DK_PUBREL, o->pid));
        o->state = GW_OUT_PUBREL_SENT;
    }
}

gw_err_t gw_handle_pubrec(gw_client_t *c, uint16_t pid)
{
    gw_out_msg_t *o = out_find(c, pid);
    if (!o || o->qos != 2) {
        GW_LOG_DEBUG(GW_MOD, c->id, "PUBREC %u for no QoS 2 message: ignored", (unsigned)pid);
        return GW_OK;
    }
    if (o->state == GW_OUT_WAIT_PUBCOMP) {
        gw_client_write_ack(c, GW_MQTT_PUBREL, pid); /* duplicate PUBREC */
        return GW_OK;
    }
    if (o->state != GW_OUT_WAIT_PUBREC)
        return GW_OK;
    o->state = GW_OUT_PUBREL_PENDING;
    if (!open_pubrel_link(c)) {
        gw_client_close(c, GW_CLOSE_BRUTE, "cannot attach the pubrel link");
        return GW_OK;
    }
    gw_outbound_send_pending_pubrels(c);
    return GW_OK;
}

void gw_outbound_on_pubrel_outcome(gw_client_t *c, pn_delivery_t *dlv)
{
    uint16_t pid = GW_DTAG_PID(pn_delivery_get_context(dlv));
    uint64_t st = pn_delivery_remote_state(dlv);
    if (st == PN_RECEIVED || (st == 0 && !pn_delivery_settled(dlv)))
        return;
    pn_delivery_settle(dlv);
    gw_out_msg_t *o = out_find(c, pid);
    if (!o || o->state != GW_OUT_PUBREL_SENT)
        return;
    if (st == PN_ACCEPTED) {
        o->state = GW_OUT_WAIT_PUBCOMP;
        gw_client_write_ack(c, GW_MQTT_PUBREL, pid);
    } else {
        /* Retried on the next credit of the pubrel link. */
        GW_LOG_WARN(GW_MOD, c->id, "AMQP_PUBREL for packet %u not accepted", (unsigned)pid);
        o->state = GW_OUT_PUBREL_PENDING;
    }
}

gw_err_t gw_handle_pubcomp(gw_client_t *c, uint16_t pid)
{
    gw_out_msg_t *o = out_find(c, pid);
    if (o && o->state == GW_OUT_WAIT_PUBCOMP)
        complete(c, o);
    else
        GW_LOG_DEBUG(GW_MOD, c->id, "PUBCOMP %u unexpected: ignored", (unsigned)pid);
    return GW_OK;
}
