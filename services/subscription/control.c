/*
 * control.c - the SS control address (L2) and the PUBREL address (L5).
 *
 * With a shared delivery link (spec 3.12) AMQP_LIST / AMQP_CLOSE also
 * register the session online on the L4s they name (window, serial), and
 * AMQP_OFFLINE ends such a registration.
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

/* Where AMQP_SUBSCRIPTIONS goes: the L3, or the L4s when the LIST asked
 * for it there (spec 3.12). NULL: not attached. */
static pn_link_t *subs_target(subs_session_t *s)
{
    subs_link_t *sl = s->reg && s->reg->subs_on_l4s ? s->reg->sh->sl : s->ctl;
    if (!sl || !sl->link || !(pn_link_state(sl->link) & PN_LOCAL_ACTIVE))
        return NULL;
    return sl->link;
}

void subs_control_flush(subs_service_t *svc, subs_session_t *s)
{
    pn_link_t *target = s->subs_due && !s->list_wait ? subs_target(s) : NULL;
    bool on_l4s = s->reg && s->reg->subs_on_l4s;
    if (target && pn_link_credit(target) <= 0) {
        /* The L3's flow event flushes again; an L4s serves its waiting
         * sessions in turn when credit comes. */
        if (on_l4s)
            subs_session_wait_credit(s);
        target = NULL;
    }
    if (target) {
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
        /* On the L4s: pre-settled, outside the window, named by the serial. */
        if (err == GW_OK && on_l4s)
            err = gw_spec_set_delivery_serial(svc->out, s->reg->serial);
        if (err == GW_OK)
            err = gw_amqp_send(NULL, target, svc->out, on_l4s, NULL);
        if (err != GW_OK) {
            GW_LOG_ERROR(SUBS_MOD, s->id, "cannot send AMQP_SUBSCRIPTIONS: %s", gw_err_str(err));
            return;
        }
        GW_LOG_DEBUG(SUBS_MOD, s->id,
                     "AMQP_SUBSCRIPTIONS sent%s: %zu filters, session-present=%d",
                     on_l4s ? " on the shared delivery link" : "", n, (int)s->present);
        s->subs_due = false;
        s->ready = true; /* queued messages only after SUBSCRIPTIONS (spec 4.3) */
    }
    subs_session_pump(svc, s);
}

/* The client id named by the correlation-id ($mqtt.to.<id>.publish). */
static bool client_of(subs_service_t *svc, const gw_spec_msg_t *m, const char **id, size_t *len,
                      char *why, size_t whylen)
{
    gw_spec_client_addr_t which;
    if (gw_spec_addr_parse(&svc->addrs, m->correlation_id.ptr, m->correlation_id.len, &which,
                           id, len) != GW_OK ||
        which != GW_SPEC_ADDR_PUBLISH) {
        snprintf(why, whylen, "%s: correlation-id '%.*s' is not a publish address %s<id>.publish",
                 gw_spec_kind_name(m->kind), (int)(m->correlation_id.len > 200 ? 200 : m->correlation_id.len),
                 m->correlation_id.ptr, svc->addrs.to_prefix);
        return false;
    }
    return true;
}

static subs_session_t *session_of(subs_service_t *svc, const gw_spec_msg_t *m, char *why,
                                  size_t whylen)
{
    const char *id;
    size_t len;
    if (!client_of(svc, m, &id, &len, why, whylen))
        return NULL;
    subs_session_t *s = subs_session_get(svc, id, len);
    if (!s)
        snprintf(why, whylen, "cannot create session");
    return s;
}

/* Spec 3.12: the L4s an AMQP_LIST / AMQP_CLOSE registers on, checked
 * before anything changes. false: rejected (the L4s is not attached). */
static bool delivery_link_of(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv,
                             const gw_spec_msg_t *m, subs_shared_t **sh)
{
    *sh = NULL;
    if (!m->has_delivery)
        return true;
    *sh = subs_shared_find(svc, m->delivery_link.ptr, m->delivery_link.len);
    if (*sh)
        return true;
    char why[512];
    snprintf(why, sizeof why, "%s: delivery link not attached: '%.*s'",
             gw_spec_kind_name(m->kind),
             (int)(m->delivery_link.len > 200 ? 200 : m->delivery_link.len), m->delivery_link.ptr);
    reject(svc, sl, dlv, "amqp:invalid-field", why);
    return false;
}

/* Spec 3.12: after the LIST/CLOSE's own handling, s goes online on sh. */
static void go_online(subs_service_t *svc, subs_session_t *s, subs_shared_t *sh,
                      const gw_spec_msg_t *m, bool same)
{
    if (same) {
        s->reg->window = (uint16_t)m->window; /* the same connection again: W may change */
        return;
    }
    if (subs_session_register(svc, s, sh, m->client_serial, m->window) != GW_OK) {
        /* Not online: deliveries wait (persistent) until a registration
         * succeeds; the gateway's client sees no messages, nothing is lost. */
        GW_LOG_ERROR(SUBS_MOD, s->id, "out of memory: not registered on %s",
                     pn_link_name(sh->sl->link));
        return;
    }
    GW_LOG_DEBUG(SUBS_MOD, s->id, "online on %s serial=%llu window=%u",
                 pn_link_name(sh->sl->link), (unsigned long long)m->client_serial,
                 (unsigned)m->window);
}

static void do_list(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv, subs_session_t *s,
                    const gw_spec_msg_t *m, subs_shared_t *sh)
{
    char ctl[1024];
    /* reply-to must be the client's control address, or (spec 3.12) the
     * L4s of the registration: AMQP_SUBSCRIPTIONS then goes there. */
    bool on_l4s = sh && m->reply_to.len == m->delivery_link.len &&
                  memcmp(m->reply_to.ptr, m->delivery_link.ptr, m->reply_to.len) == 0;
    if (!on_l4s &&
        (gw_spec_addr_client(&svc->addrs, GW_SPEC_ADDR_CONTROL, s->id, strlen(s->id), ctl,
                             sizeof ctl) != GW_OK ||
         m->reply_to.len != strlen(ctl) || memcmp(m->reply_to.ptr, ctl, m->reply_to.len) != 0)) {
        char why[1600];
        snprintf(why, sizeof why, "AMQP_LIST: reply-to '%.*s' is not %.1024s",
                 (int)(m->reply_to.len > 200 ? 200 : m->reply_to.len), m->reply_to.ptr, ctl);
        reject(svc, sl, dlv, "amqp:invalid-field", why);
        return;
    }
    /* Spec 3.12 Takeover: the older registration is stolen and goes
     * offline before this LIST looks at the session. */
    bool same = sh && subs_shared_takeover(svc, s, sh, m->client_serial);
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
    if (sh)
        go_online(svc, s, sh, m, same);
    if (s->reg)
        s->reg->subs_on_l4s = on_l4s;
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

static void do_close(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv, subs_session_t *s,
                     const gw_spec_msg_t *m, subs_shared_t *sh)
{
    bool same = sh && subs_shared_takeover(svc, s, sh, m->client_serial);
    GW_LOG_INFO(SUBS_MOD, s->id, "AMQP_CLOSE: session discarded (had %zu subs, %zu queued)",
                s->nsubs, s->qcount);
    subs_session_clear(svc, s); /* MQTT-3.1.2-6 */
    /* A clean-session client discards its state: it resends no QoS 2
     * PUBLISH, so its duplicate-detection records go too (spec 5.2). */
    subs_q2_forget_publisher(svc, s->id, strlen(s->id));
    s->subs_due = false;
    s->ready = true;
    if (sh)
        go_online(svc, s, sh, m, same);
    accept_now(svc, sl, dlv);
    /* Nothing attached for it: nothing to keep (its L4 recreates it). */
    if (!s->ctl && !subs_session_online(s))
        subs_session_destroy(svc, s, false);
}

/*
 * AMQP_OFFLINE (spec 3.12): the client's network connection `serial`
 * ended. Only the registration it names goes offline, as the detach of a
 * per-client L4 would (spec 4.14 step 6); a newer one (takeover) is left
 * alone. Always `accepted`, after the group commit when the batch is open
 * (it may have written: a QoS 0 copy stored with --queue-qos0 dropped).
 */
static void do_offline(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv,
                       const gw_spec_msg_t *m)
{
    char why[512];
    const char *id;
    size_t len;
    if (!client_of(svc, m, &id, &len, why, sizeof why)) {
        reject(svc, sl, dlv, "amqp:invalid-field", why);
        return;
    }
    subs_session_t *s = subs_session_find(svc, id, len);
    if (s && s->reg && s->reg->serial == m->client_serial) {
        const char *name = pn_link_name(s->reg->sh->sl->link);
        if (name && strlen(name) == m->delivery_link.len &&
            memcmp(name, m->delivery_link.ptr, m->delivery_link.len) == 0) {
            GW_LOG_DEBUG(SUBS_MOD, s->id, "AMQP_OFFLINE serial=%llu: offline (%s, %zu queued)",
                         (unsigned long long)m->client_serial,
                         s->persistent ? "persistent" : "transient", s->qcount);
            (void)subs_session_offline(svc, s, false, false);
        }
    }
    if (gw_subs_store_in_batch(svc->store) && subs_defer_accept(svc, sl, dlv, false) == GW_OK)
        return;
    subs_batch_commit(svc);
    gw_amqp_settle(dlv, PN_ACCEPTED, NULL, NULL);
    pn_link_flow(sl->link, 1);
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
                               GW_SPEC_KIND_BIT(GW_SPEC_UNSUBSCRIBE) |
                               GW_SPEC_KIND_BIT(GW_SPEC_OFFLINE);
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
    if (m.kind == GW_SPEC_OFFLINE) {
        do_offline(svc, sl, dlv, &m); /* never creates a session */
        gw_spec_msg_clear(&m);
        return;
    }
    /* Spec 3.12: a registration naming no attached L4s is refused before
     * anything changes (no session is created for it). */
    subs_shared_t *sh = NULL;
    if ((m.kind == GW_SPEC_LIST || m.kind == GW_SPEC_CLOSE) &&
        !delivery_link_of(svc, sl, dlv, &m, &sh)) {
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
        do_list(svc, sl, dlv, s, &m, sh);
        break;
    case GW_SPEC_CLOSE:
        do_close(svc, sl, dlv, s, &m, sh);
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
