/*
 * control.c - the SS control address (L2) and the PUBREL address (L5).
 *
 * Control operations are rare next to publications, so each one commits
 * the batch itself before it is settled: the gateway's SUBACK/CONNACK
 * follows a durable change, and retained messages for a new subscription
 * are transferred only after its `accepted`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proton/delivery.h>

#include "gw/log.h"
#include "gw/mqtt.h"
#include "subs.h"

static void reject(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv, const char *cond,
                   const char *why)
{
    GW_SVC_INC(svc->malformed);
    GW_LOG_WARN(SUBS_MOD, pn_link_name(sl->link), "control message rejected: %s %s", cond, why);
    gw_amqp_settle(dlv, PN_REJECTED, cond, why);
    pn_link_flow(sl->link, 1);
}

static void accept_now(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv)
{
    subs_batch_commit(svc);
    gw_amqp_settle(dlv, PN_ACCEPTED, NULL, NULL);
    pn_link_flow(sl->link, 1);
}

void subs_control_flush(subs_service_t *svc, subs_session_t *s)
{
    if (s->subs_due && !s->list_wait && s->ctl && s->ctl->link &&
        pn_link_credit(s->ctl->link) > 0 &&
        (pn_link_state(s->ctl->link) & PN_LOCAL_ACTIVE)) {
        gw_spec_entry_t stack[16], *ent = stack;
        if (s->nsubs > 16 && !(ent = malloc(s->nsubs * sizeof *ent))) {
            GW_LOG_ERROR(SUBS_MOD, s->id, "out of memory for AMQP_SUBSCRIPTIONS");
            return;
        }
        size_t n = 0;
        for (subs_sub_t *sub = s->subs; sub && n < GW_SPEC_MAX_ENTRIES; sub = sub->next) {
            ent[n].filter.ptr = sub->filter;
            ent[n].filter.len = sub->len;
            ent[n].qos = sub->qos;
            n++;
        }
        gw_err_t err = gw_spec_encode_session(svc->out, s->present, ent, n);
        if (ent != stack)
            free(ent);
        if (err == GW_OK) {
            err = gw_amqp_send(NULL, s->ctl->link, svc->out, false, NULL);
        }
        if (err != GW_OK) {
            GW_LOG_ERROR(SUBS_MOD, s->id, "cannot send AMQP_SUBSCRIPTIONS: %s", gw_err_str(err));
            return;
        }
        GW_LOG_DEBUG(SUBS_MOD, s->id, "AMQP_SUBSCRIPTIONS sent: %zu filters, session-present=%d",
                     n, (int)s->present);
        s->subs_due = false;
        s->ready = true; /* queued messages only after SUBSCRIPTIONS (spec 4.3) */
    }
    subs_session_pump(svc, s);
}

/* The client id named by the correlation-id ($mqtt.to.<id>.publish). */
static subs_session_t *session_of(subs_service_t *svc, const gw_spec_msg_t *m, char *why,
                                  size_t whylen)
{
    gw_spec_client_addr_t which;
    const char *id;
    size_t len;
    if (gw_spec_addr_parse(&svc->addrs, m->correlation_id.ptr, m->correlation_id.len, &which,
                           &id, &len) != GW_OK ||
        which != GW_SPEC_ADDR_PUBLISH) {
        snprintf(why, whylen, "%s: correlation-id '%.*s' is not a publish address %s<id>.publish",
                 gw_spec_kind_name(m->kind), (int)(m->correlation_id.len > 200 ? 200 : m->correlation_id.len),
                 m->correlation_id.ptr, svc->addrs.to_prefix);
        return NULL;
    }
    subs_session_t *s = subs_session_get(svc, id, len);
    if (!s)
        snprintf(why, whylen, "cannot create session");
    return s;
}

static void do_list(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv, subs_session_t *s,
                    const gw_spec_msg_t *m)
{
    char ctl[1024];
    /* reply-to must be the client's control address */
    if (gw_spec_addr_client(&svc->addrs, GW_SPEC_ADDR_CONTROL, s->id, strlen(s->id), ctl,
                            sizeof ctl) != GW_OK ||
        m->reply_to.len != strlen(ctl) || memcmp(m->reply_to.ptr, ctl, m->reply_to.len) != 0) {
        char why[1600];
        snprintf(why, sizeof why, "AMQP_LIST: reply-to '%.*s' is not %.1024s",
                 (int)(m->reply_to.len > 200 ? 200 : m->reply_to.len), m->reply_to.ptr, ctl);
        reject(svc, sl, dlv, "amqp:invalid-field", why);
        return;
    }
    s->present = s->persistent;
    bool created = !s->persistent;
    if (created) {
        subs_session_set_persistent(svc, s, true);
        gw_err_t err = gw_subs_store_session_put(svc->store, s->id);
        /* Subscriptions made while transient become part of the session. */
        for (subs_sub_t *sub = s->subs; sub && err == GW_OK; sub = sub->next)
            err = gw_subs_store_sub_put(svc->store, s->id, sub->filter, sub->len, sub->qos);
        subs_batch_touch(svc);
        if (err != GW_OK) {
            subs_session_set_persistent(svc, s, false);
            reject(svc, sl, dlv, "amqp:internal-error", "subscription store failure");
            return;
        }
    }
    GW_LOG_INFO(SUBS_MOD, s->id, "AMQP_LIST: persistent session, present=%d subs=%zu queued=%zu",
                (int)s->present, s->nsubs, s->qcount);
    s->subs_due = true;
    s->ready = false;
    /*
     * A new session row must be durable before `accepted` (spec 5.2), but
     * it joins the group commit (one fsync for every LIST, SUBSCRIBE's
     * commit or publication of this loop iteration) instead of a commit of
     * its own: the delivery waits in svc->pending, AMQP_SUBSCRIPTIONS after
     * it (subs_session_synced). A session already persistent wrote nothing:
     * answered at once, no commit. An open batch (other writes) is waited
     * for too, so the reply never reports state younger than the store.
     */
    if ((created || gw_subs_store_in_batch(svc->store)) &&
        subs_session_wait_list(svc, s, created) == GW_OK) {
        if (subs_defer_accept(svc, sl, dlv, false) == GW_OK)
            return;
        /* No room to wait (out of memory): commit and answer now, the
         * SUBSCRIPTIONS after the `accepted` as always. */
        s->list_wait = false;
        s->list_created = false;
        s->subs_due = false;
        accept_now(svc, sl, dlv);
        s->subs_due = true;
    } else {
        accept_now(svc, sl, dlv);
    }
    subs_control_flush(svc, s);
}

static void do_close(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv, subs_session_t *s)
{
    GW_LOG_INFO(SUBS_MOD, s->id, "AMQP_CLOSE: session discarded (had %zu subs, %zu queued)",
                s->nsubs, s->qcount);
    subs_session_clear(svc, s); /* MQTT-3.1.2-6 */
    s->subs_due = false;
    s->ready = true;
    accept_now(svc, sl, dlv);
    /* Nothing attached for it: nothing to keep (its L4 recreates it). */
    if (!s->ctl && !s->out)
        subs_session_destroy(svc, s, false);
}

static void do_subscribe(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv,
                         subs_session_t *s, const gw_spec_msg_t *m)
{
    char why[512];
    for (size_t i = 0; i < m->count; i++) {
        gw_err_t err = gw_topic_filter_validate(NULL, m->entries[i].filter.ptr,
                                                m->entries[i].filter.len);
        if (err != GW_OK || m->entries[i].qos > 2) {
            snprintf(why, sizeof why, "AMQP_SUBSCRIBE: filter '%.*s': %s",
                     (int)(m->entries[i].filter.len > 200 ? 200 : m->entries[i].filter.len),
                     m->entries[i].filter.ptr, gw_err_str(err != GW_OK ? err : GW_ERR_MQTT_REQUESTED_QOS));
            reject(svc, sl, dlv, "amqp:invalid-field", why);
            return;
        }
    }
    for (size_t i = 0; i < m->count; i++) {
        gw_err_t err = subs_session_sub_add(svc, s, m->entries[i].filter.ptr,
                                            m->entries[i].filter.len, m->entries[i].qos, true);
        if (err != GW_OK) {
            snprintf(why, sizeof why, "AMQP_SUBSCRIBE: %s", gw_err_str(err));
            reject(svc, sl, dlv, err == GW_ERR_STORE ? "amqp:internal-error"
                                                     : "amqp:resource-limit-exceeded",
                   why);
            return;
        }
    }
    GW_LOG_DEBUG(SUBS_MOD, s->id, "AMQP_SUBSCRIBE id=%llu: %zu filters",
                 (unsigned long long)m->message_id, m->count);
    accept_now(svc, sl, dlv);
    /* MQTT-3.3.1-6 / 3.8.4-3: retained messages for each new or replaced
     * subscription, to this client only, after the SUBSCRIBE's outcome. */
    for (size_t i = 0; i < m->count; i++)
        subs_retained_deliver(svc, s, m->entries[i].filter.ptr, m->entries[i].filter.len,
                              m->entries[i].qos);
}

static void do_unsubscribe(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv,
                           subs_session_t *s, const gw_spec_msg_t *m)
{
    for (size_t i = 0; i < m->count; i++)
        subs_session_sub_remove(svc, s, m->entries[i].filter.ptr, m->entries[i].filter.len);
    accept_now(svc, sl, dlv);
}

void subs_control_delivery(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv)
{
    gw_spec_msg_t m;
    char why[512] = "";
    unsigned kinds = sl->kind == SL_PUBREL
                         ? GW_SPEC_KIND_BIT(GW_SPEC_PUBREL)
                         : GW_SPEC_KIND_BIT(GW_SPEC_LIST) | GW_SPEC_KIND_BIT(GW_SPEC_CLOSE) |
                               GW_SPEC_KIND_BIT(GW_SPEC_SUBSCRIBE) |
                               GW_SPEC_KIND_BIT(GW_SPEC_UNSUBSCRIBE);
    gw_err_t err = gw_spec_decode_kinds(svc->in, kinds, &m, why, sizeof why);
    if (err != GW_OK) {
        if (!why[0])
            snprintf(why, sizeof why, "%s", gw_err_str(err));
        reject(svc, sl, dlv, gw_err_amqp_condition(err), why);
        return;
    }
    if (sl->kind == SL_PUBREL) {
        subs_session_t *s = subs_session_find(svc, sl->client, strlen(sl->client));
        if (s)
            err = subs_session_release(svc, s, m.message_id);
        if (err != GW_OK)
            reject(svc, sl, dlv, "amqp:internal-error", "subscription store failure");
        else
            accept_now(svc, sl, dlv);
        gw_spec_msg_clear(&m);
        return;
    }
    subs_session_t *s = session_of(svc, &m, why, sizeof why);
    if (!s) {
        reject(svc, sl, dlv, "amqp:invalid-field", why);
        gw_spec_msg_clear(&m);
        return;
    }
    switch (m.kind) {
    case GW_SPEC_LIST:
        do_list(svc, sl, dlv, s, &m);
        break;
    case GW_SPEC_CLOSE:
        do_close(svc, sl, dlv, s);
        break;
    case GW_SPEC_SUBSCRIBE:
        do_subscribe(svc, sl, dlv, s, &m);
        break;
    case GW_SPEC_UNSUBSCRIBE:
        do_unsubscribe(svc, sl, dlv, s, &m);
        break;
    default:
        reject(svc, sl, dlv, "amqp:invalid-field", "unexpected message kind");
        break;
    }
    gw_spec_msg_clear(&m);
}
