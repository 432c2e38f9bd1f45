/*
 * handle_subscribe.c - SUBSCRIBE / UNSUBSCRIBE -> AMQP_SUBSCRIBE /
 * AMQP_UNSUBSCRIBE on the shared subscription-service link (ss_link.c); SUBACK / UNSUBACK from
 * the disposition. Filters were validated by the decoder (MQTT-4.7.1).
 *
 * accepted -> SUBACK grants the requested QoS for every filter; any other
 * outcome -> 0x80 for every filter. UNSUBACK after any terminal outcome.
 */
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

/* SUBACK with one return code per filter (MQTT-3.8.4-1, 3.9.3). */
static void write_suback(gw_client_t *c, uint16_t pid, const uint8_t *codes, size_t count)
{
    gw_mqtt_packet_t pkt;
    uint8_t stack_buf[64];
    uint8_t *buf = stack_buf;
    size_t need, written = 0;

    memset(&pkt, 0, sizeof(pkt));
    pkt.type = GW_MQTT_SUBACK;
    pkt.u.suback.packet_id = pid;
    pkt.u.suback.codes = codes;
    pkt.u.suback.count = count;
    need = gw_mqtt_encoded_size(&c->mctx, &pkt);
    if (need > sizeof(stack_buf))
        buf = malloc(need);
    if (buf && need && gw_mqtt_encode(&c->mctx, &pkt, buf, need, &written) == GW_OK)
        gw_client_write(c, buf, written);
    else
        gw_client_close(c, GW_CLOSE_BRUTE, "cannot encode SUBACK");
    if (buf != stack_buf)
        free(buf);
}

static gw_err_t send_request(gw_client_t *c, const gw_mqtt_topics_t *topics, uint16_t pid,
                             bool unsub)
{
    gw_worker_t *w = c->w;
    gw_spec_entry_t stack_entries[32];
    gw_spec_entry_t *entries = stack_entries;
    gw_pending_sub_t *ps = NULL;
    gw_err_t err = GW_OK;
    gw_mqtt_topics_iter_t it;
    gw_mqtt_str_t f;
    uint8_t qos;
    size_t n = 0, nf = 0;

    if (!gw_ss_link(c, c->ss_dest)) {
        gw_client_close(c, GW_CLOSE_BRUTE, "subscription-service link is gone");
        return GW_OK;
    }
    if (!gw_ss_ready(c))
        return GW_ERR_AGAIN; /* resumed by gw_ss_on_flow */
    if (topics->count > sizeof(stack_entries) / sizeof(stack_entries[0])) {
        entries = calloc(topics->count, sizeof(*entries));
        if (!entries)
            return GW_ERR_NOMEM;
    }
    ps = calloc(1, sizeof(*ps) + topics->count);
    if (!ps) {
        err = GW_ERR_NOMEM;
        goto cleanup;
    }
    gw_mqtt_topics_iter_init(&it, topics);
    while (nf < topics->count && gw_mqtt_topics_next(&it, &f, &qos)) {
        /* ACL: a denied filter gets 0x80 and is not sent to the SS. */
        if (!unsub && !gw_auth_allowed(c, f.ptr, f.len, GW_ACL_READ, true)) {
            GW_STAT_INC(c->w, acl_denied[GW_ACLD_SUBSCRIBE]);
            gw_auth_log_denied(c, "SUBSCRIBE", f.ptr, f.len);
            ps->qos[nf++] = GW_MQTT_SUBACK_FAILURE;
            continue;
        }
        if (!unsub && !gw_limits_subscribe_ok(c, f.ptr, f.len)) {
            ps->qos[nf++] = GW_MQTT_SUBACK_FAILURE;
            continue;
        }
        if (unsub)
            gw_subset_remove(c, f.ptr, f.len);
        entries[n].filter.ptr = f.ptr;
        entries[n].filter.len = f.len;
        entries[n].qos = unsub ? 0 : qos;
        ps->qos[nf++] = qos;
        n++;
    }
    ps->pid = pid;
    ps->unsub = unsub;
    ps->count = (uint16_t)nf;
    if (!unsub && n == 0) {
        write_suback(c, pid, ps->qos, nf); /* every filter denied: nothing for the SS */
        goto cleanup;
    }
    if (unsub)
        err = gw_spec_encode_unsubscribe(w->msg, &w->gw->addrs, c->id, c->id_len, pid, entries, n);
    else
        err = gw_spec_encode_subscribe(w->msg, &w->gw->addrs, c->id, c->id_len, pid, entries, n);
    if (err != GW_OK)
        goto cleanup;
    err = gw_ss_send(c, &ps->req, unsub ? GW_DK_UNSUBSCRIBE : GW_DK_SUBSCRIBE);
    if (err != GW_OK)
        goto cleanup;
    ps->next = c->subs;
    c->subs = ps;
    ps = NULL;
cleanup:
    free(ps);
    if (entries != stack_entries)
        free(entries);
    if (err != GW_OK && err != GW_ERR_AGAIN && err != GW_ERR_NOMEM) {
        GW_LOG_WARN(GW_MOD, c->id, "cannot forward %s: %s", unsub ? "UNSUBSCRIBE" : "SUBSCRIBE",
                    gw_err_str(err));
        gw_client_close(c, GW_CLOSE_BRUTE, "cannot forward SUBSCRIBE/UNSUBSCRIBE");
        err = GW_OK;
    }
    return err;
}

gw_err_t gw_handle_subscribe(gw_client_t *c, const gw_mqtt_subscribe_t *p)
{
    if (c->iot)
        return gw_iot_subscribe(c, p); /* command subscriptions (iot.c) */
    return send_request(c, &p->topics, p->packet_id, false);
}

gw_err_t gw_handle_unsubscribe(gw_client_t *c, const gw_mqtt_unsubscribe_t *p)
{
    if (c->iot)
        return gw_iot_unsubscribe(c, p);
    return send_request(c, &p->topics, p->packet_id, true);
}

void gw_subscribe_on_outcome(gw_client_t *c, pn_delivery_t *dlv, gw_pending_sub_t *ps)
{
    uint64_t st = pn_delivery_remote_state(dlv);
    gw_pending_sub_t **pp = &c->subs;
    bool unsub = ps->unsub;
    uint16_t pid = ps->pid;

    pn_delivery_settle(dlv);
    while (*pp && *pp != ps)
        pp = &(*pp)->next;
    if (!*pp)
        return;
    *pp = ps->next;
    if (unsub) {
        gw_client_write_ack(c, GW_MQTT_UNSUBACK, pid); /* MQTT-3.10.4-4 */
    } else {
        if (st != PN_ACCEPTED) {
            GW_LOG_INFO(GW_MOD, c->id, "SUBSCRIBE %u refused by the Subscription Service",
                        (unsigned)pid);
            memset(ps->qos, GW_MQTT_SUBACK_FAILURE, ps->count);
        }
        write_suback(c, pid, ps->qos, ps->count);
    }
    free(ps);
}
