/*
 * service.c - connections, links and deliveries of subscription-service,
 * start-up recovery and the group commit.
 *
 * Links (spec 2.2), by what the peer attaches:
 *   sender   -> target $mqtt.subscriptionservice    SL_CONTROL (L2)
 *   sender   -> target $mqtt.<id>.pubrel            SL_PUBREL  (L5)
 *   sender   -> target <topic> / null (relay)       SL_TOPIC   (L6, L7, L8, L10)
 *   receiver <- source $mqtt.to.<id>.control        SL_OUT_CTL (L3)
 *   receiver <- source $mqtt.to.<id>.publish        SL_OUT_PUB (L4)
 *   receiver <- source with capability              SL_OUT_SHARED (L4s, shared.c)
 *               mqtt-shared-delivery
 *   receiver <- source <topic filter>               SL_OUT_NATIVE (L9)
 *
 * Group commit: a publication's store writes go into the open batch
 * transaction; its delivery waits in svc->pending and is settled
 * `accepted` right after the batch commits, which happens once per loop
 * iteration (commit_ev is activated by the first write) or as soon as
 * --batch-max deliveries wait. Credit on a topic link is given back one
 * unit per settled delivery, so a publisher never has more than
 * --link-credit deliveries waiting for the store: that is the
 * back-pressure toward gateways when the disk is slow.
 *
 * QoS 2 publications (L7, rcv-settle-mode second): after the commit the
 * delivery is updated to `accepted` without settling and kept (context =
 * held_marker) until the sender settles it; then settled.
 * Dedupe key: the delivery itself (proton matches a resumed transfer to
 * the same delivery tag on the same link, which stays unsettled here), so
 * a duplicate transfer of an unsettled delivery is never processed twice.
 * A resend on a NEW link (gateway failure) is recognised by dedupe.c
 * (spec 5.2 publications rule 8): the delivery then holds the record as
 * its context instead of held_marker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proton/condition.h>
#include <proton/delivery.h>
#include <proton/disposition.h>
#include <proton/terminus.h>

#include "gw/log.h"
#include "gw/mqtt.h"
#include "subs.h"

/* Marks an incoming QoS 2 delivery that is accepted and waits for the sender's settle. */
static char held_marker;
/* Marks an incoming delivery refused while partial (too large): drain, then reject. */
static char oversize_marker;

/* ------------------------------------------------------------------ */
/* Group commit                                                        */
/* ------------------------------------------------------------------ */

static void commit_cb(evutil_socket_t fd, short what, void *arg) { subs_batch_commit(arg); }

static void sweep_cb(evutil_socket_t fd, short what, void *arg) { subs_session_sweep(arg); }

void subs_batch_touch(subs_service_t *svc)
{
    if (svc->commit_ev && !event_pending(svc->commit_ev, EV_TIMEOUT, NULL))
        event_active(svc->commit_ev, EV_TIMEOUT, 0);
}

void subs_batch_commit(subs_service_t *svc)
{
    gw_err_t err = GW_OK;
    if (gw_subs_store_in_batch(svc->store)) {
        uint64_t t0 = gw_svc_now_us();
        err = gw_subs_store_commit(svc->store);
        gw_svc_hist_observe(&svc->m.commit_lat, gw_svc_now_us() - t0);
        GW_SVC_INC(svc->commits);
    }
    if (err != GW_OK)
        GW_LOG_ERROR(SUBS_MOD, NULL, "store commit failed: %zu publications released",
                     svc->npending);
    for (size_t i = 0; i < svc->npending; i++) {
        subs_pending_t *p = &svc->pending[i];
        if (err != GW_OK) {
            /* Not durable: "not processed", the sender may retry (spec 3.11). */
            if (p->q2) {
                subs_q2_forget(svc, p->q2); /* its record was in the failed batch */
                subs_q2_release(svc, p->q2);
            }
            gw_amqp_settle(p->dlv, PN_RELEASED, NULL, NULL);
            subs_credit_return(svc, p->sl, 1);
        } else if (p->keep_open) {
            pn_delivery_update(p->dlv, PN_ACCEPTED);
            pn_delivery_set_context(p->dlv, p->q2 ? (void *)p->q2 : &held_marker);
            if (pn_delivery_settled(p->dlv)) { /* the sender settled meanwhile */
                if (p->q2)
                    subs_q2_done(svc, p->q2);
                pn_delivery_settle(p->dlv);
                subs_credit_return(svc, p->sl, 1);
            }
            gw_amqp_conn_flush(p->sl->sc->base.conn);
        } else {
            gw_amqp_settle(p->dlv, PN_ACCEPTED, NULL, NULL);
            subs_credit_return(svc, p->sl, 1);
        }
    }
    svc->npending = 0;
    svc->batch_msgs = 0;
    /* Packet ids written in this batch are durable: those copies may go out. */
    if (svc->nsyncwait)
        subs_session_synced(svc, err == GW_OK);
}

/*
 * Back-pressure (spec 6): credit on publisher links is given back one unit
 * per settled delivery, except while an online session's queue is above
 * its high watermark (svc->nover > 0): then it is owed, and all of it is
 * given back when the last such queue has drained to the low watermark.
 */
void subs_credit_return(subs_service_t *svc, subs_link_t *sl, int n)
{
    if (sl->kind != SL_TOPIC || !svc->nover || !sl->held_by ||
        !subs_over_has(svc, sl->held_by)) {
        /* Only a link whose publications reached a queue that is still
         * above the mark is held back (spec 6.3 rule 4): a publisher whose
         * messages go elsewhere keeps its credit while one subscriber is
         * slow. */
        sl->held_by = 0;
        pn_link_flow(sl->link, n);
        return;
    }
    sl->owed += (uint32_t)n;
    if (!sl->owing) {
        sl->owing = true;
        sl->oprev = NULL;
        sl->onext = svc->owing;
        if (svc->owing)
            svc->owing->oprev = sl;
        svc->owing = sl;
    }
}

static void owing_remove(subs_service_t *svc, subs_link_t *sl)
{
    if (!sl->owing)
        return;
    if (sl->oprev)
        sl->oprev->onext = sl->onext;
    else
        svc->owing = sl->onext;
    if (sl->onext)
        sl->onext->oprev = sl->oprev;
    sl->owing = false;
    sl->onext = sl->oprev = NULL;
}
bool subs_over_has(const subs_service_t *svc, uint64_t over_id)
{
    for (size_t i = 0; i < svc->nover; i++)
        if (svc->over_ids[i].id == over_id)
            return true;
    return false;
}

static void give_back(subs_link_t *sl)
{
    uint32_t n = sl->owed;
    sl->owed = 0;
    sl->held_by = 0;
    if (n && sl->link && !(pn_link_state(sl->link) & PN_LOCAL_CLOSED)) {
        pn_link_flow(sl->link, (int)n);
        gw_amqp_conn_flush(sl->sc->base.conn);
    }
}

void subs_credit_release(subs_service_t *svc, uint64_t over_id)
{
    subs_link_t *sl = svc->owing, *next;
    for (; sl; sl = next) {
        next = sl->onext;
        if (sl->held_by == over_id || !subs_over_has(svc, sl->held_by)) {
            owing_remove(svc, sl);
            give_back(sl);
        }
    }
}

/* Give every publisher link the credit withheld from it. */
static void owed_give_back(subs_service_t *svc)
{
    while (svc->owing) {
        subs_link_t *sl = svc->owing;
        owing_remove(svc, sl);
        give_back(sl);
    }
}


/*
 * A gateway that has no credit for a client stops reading that client's
 * socket (spec 6.2 rule 1), PUBACKs included. If the client whose queue is
 * above the mark also publishes, its queue cannot drain while its gateway
 * waits for our credit: a deadlock. So when no queue above the mark has
 * made progress for --backpressure-stall, the owed credit is given back
 * once (each publisher link gets at most one credit window through per
 * stall period; nothing is dropped, the queues grow by that much).
 */
static void stall_cb(evutil_socket_t fd, short what, void *arg)
{
    subs_service_t *svc = arg;
    (void)fd;
    (void)what;
    if (!svc->nover || !svc->owing)
        return;
    int64_t now = subs_now_ms();
    if (now - svc->bp_progress_ms < svc->cfg->bp_stall)
        return;
    svc->stall_leaks++;
    svc->bp_progress_ms = now;
    GW_LOG_WARN(SUBS_MOD, NULL,
                "back-pressure: no progress of %zu queue(s) above the high watermark for "
                "%lld ms: publisher credit given back once (%llu times so far)",
                svc->nover, (long long)svc->cfg->bp_stall,
                (unsigned long long)svc->stall_leaks);
    owed_give_back(svc);
}

void subs_backpressure_start(subs_service_t *svc)
{
    svc->bp_progress_ms = subs_now_ms();
    int64_t period = svc->cfg->bp_stall / 4 ? svc->cfg->bp_stall / 4 : 1;
    struct timeval tv = {.tv_sec = period / 1000, .tv_usec = (period % 1000) * 1000};
    if (svc->stall_timer && !svc->stopping)
        evtimer_add(svc->stall_timer, &tv);
}

void subs_credit_resume(subs_service_t *svc)
{
    if (svc->stall_timer)
        evtimer_del(svc->stall_timer);
    owed_give_back(svc);
}

static gw_err_t defer_accept(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv,
                             bool keep_open, subs_q2_t *q2);

gw_err_t subs_defer_accept(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv,
                           bool keep_open)
{
    return defer_accept(svc, sl, dlv, keep_open, NULL);
}

static gw_err_t defer_accept(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv,
                             bool keep_open, subs_q2_t *q2)
{
    if (svc->npending == svc->cappending) {
        size_t cap = svc->cappending ? svc->cappending * 2 : 256;
        subs_pending_t *p = realloc(svc->pending, cap * sizeof *p);
        if (!p)
            return GW_ERR_NOMEM;
        svc->pending = p;
        svc->cappending = cap;
    }
    svc->pending[svc->npending++] = (subs_pending_t){dlv, sl, keep_open, q2};
    pn_delivery_set_context(dlv, NULL);
    subs_batch_touch(svc);
    if (svc->npending >= (size_t)svc->cfg->batch_max)
        subs_batch_commit(svc);
    return GW_OK;
}

/* Drop waiting settlements of a link that is going away (its deliveries die with it). */
static void pending_purge(subs_service_t *svc, subs_link_t *sl)
{
    size_t j = 0;
    for (size_t i = 0; i < svc->npending; i++)
        if (svc->pending[i].sl != sl)
            svc->pending[j++] = svc->pending[i];
        else if (svc->pending[i].q2)
            subs_q2_release(svc, svc->pending[i].q2); /* the record stays: it is stored */
    svc->npending = j;
}

/* ------------------------------------------------------------------ */
/* Links                                                               */
/* ------------------------------------------------------------------ */

static void link_refuse(pn_link_t *link, const char *cond, const char *desc)
{
    pn_terminus_copy(pn_link_source(link), pn_link_remote_source(link));
    pn_terminus_copy(pn_link_target(link), pn_link_remote_target(link));
    pn_link_open(link);
    gw_amqp_link_close(link, cond, desc);
    GW_LOG_INFO(SUBS_MOD, pn_link_name(link), "link refused: %s %s", cond, desc);
}

static subs_link_t *link_new(subs_conn_t *sc, pn_link_t *link, subs_link_kind_t kind)
{
    subs_link_t *sl = calloc(1, sizeof *sl);
    if (!sl)
        return NULL;
    sl->kind = kind;
    sl->sc = sc;
    sl->link = link;
    pn_link_set_context(link, sl);
    pn_session_t *ssn = pn_link_session(link);
    sl->snext = pn_session_get_context(ssn);
    if (sl->snext)
        sl->snext->sprev = sl;
    pn_session_set_context(ssn, sl);
    return sl;
}

/* The link is gone (detached, closed, its session ended or the connection
 * lost): detach it from its session; free our context. */
static void link_lost(subs_service_t *svc, subs_link_t *sl)
{
    subs_session_t *s = sl->session;
    switch (sl->kind) {
    case SL_OUT_PUB:
        if (s && s->out == sl) {
            subs_session_out_lost(svc, s);
            /* A transient session ends with its L4 (spec 5.2 Delivery 3). */
            if (!s->persistent) {
                GW_LOG_DEBUG(SUBS_MOD, s->id, "transient session ended");
                subs_session_destroy(svc, s, false);
            }
        }
        break;
    case SL_OUT_CTL:
        if (s && s->ctl == sl) {
            s->ctl = NULL;
            /* A transient session without its L4 (or L4s) has nobody left. */
            if (!s->persistent && !subs_session_online(s))
                subs_session_destroy(svc, s, false);
        }
        break;
    case SL_OUT_SHARED:
        if (sl->shared)
            subs_shared_lost(svc, sl->shared); /* spec 3.12 "Loss" */
        break;
    case SL_OUT_NATIVE:
        if (s)
            subs_session_destroy(svc, s, false);
        break;
    default:
        pending_purge(svc, sl);
        owing_remove(svc, sl);
        /* QoS 2 deliveries held (accepted, unsettled): their records stay,
         * so that the client's resend through another link is recognised. */
        if (sl->link)
            for (pn_delivery_t *d = pn_unsettled_head(sl->link); d; d = pn_unsettled_next(d))
                if (subs_q2_is(pn_delivery_get_context(d))) {
                    subs_q2_release(svc, pn_delivery_get_context(d));
                    pn_delivery_set_context(d, NULL);
                }
        break;
    }
    if (sl->link) {
        pn_link_set_context(sl->link, NULL);
        if (sl->sprev)
            sl->sprev->snext = sl->snext;
        else
            pn_session_set_context(pn_link_session(sl->link), sl->snext);
        if (sl->snext)
            sl->snext->sprev = sl->sprev;
    }
    free(sl->topic);
    free(sl->client);
    free(sl);
}

static bool addr_reserved(subs_service_t *svc, const char *a)
{
    return strncmp(a, svc->addrs.subctrl, strlen(svc->addrs.subctrl)) == 0 ||
           strncmp(a, svc->addrs.to_prefix, strlen(svc->addrs.to_prefix)) == 0 ||
           strcmp(a, svc->addrs.lwt) == 0;
}

/* The peer sends to us. */
static void attach_incoming(subs_conn_t *sc, pn_link_t *link)
{
    subs_service_t *svc = sc->svc;
    const char *t = pn_terminus_get_address(pn_link_remote_target(link));
    subs_link_kind_t kind = SL_TOPIC;
    gw_spec_client_addr_t which;
    const char *id = NULL;
    size_t idlen = 0;
    int64_t credit = svc->cfg->link_credit;

    if (t && strcmp(t, svc->addrs.subctrl) == 0) {
        /* Spec 2.2 (L2): one control link may carry every client of a
         * gateway connection, so it gets the topic links' window: a connect
         * storm's LISTs then share group commits instead of queueing
         * behind a small credit. */
        kind = SL_CONTROL;
    } else if (t && gw_spec_addr_parse(&svc->addrs, t, strlen(t), &which, &id, &idlen) == GW_OK &&
               which == GW_SPEC_ADDR_PUBREL) {
        kind = SL_PUBREL;
        credit = 100;
    } else if (t) {
        gw_err_t err = gw_topic_name_validate(NULL, t, strlen(t));
        if (err != GW_OK) {
            char why[256];
            snprintf(why, sizeof why, "target '%.100s' is not a topic name: %s", t,
                     gw_err_str(err));
            link_refuse(link, "amqp:invalid-field", why);
            return;
        }
    }
    subs_link_t *sl = link_new(sc, link, kind);
    if (!sl || (kind == SL_TOPIC && t && !(sl->topic = strdup(t))) ||
        (kind == SL_PUBREL && !(sl->client = strndup(id, idlen)))) {
        if (sl)
            link_lost(svc, sl);
        link_refuse(link, "amqp:resource-limit-exceeded", "out of memory");
        return;
    }
    pn_terminus_copy(pn_link_source(link), pn_link_remote_source(link));
    pn_terminus_copy(pn_link_target(link), pn_link_remote_target(link));
    pn_link_set_snd_settle_mode(link, pn_link_remote_snd_settle_mode(link));
    /* QoS 2 publishers ask for rcv-settle-mode second (L7); honour it. */
    pn_link_set_rcv_settle_mode(link, kind == SL_TOPIC &&
                                              pn_link_remote_rcv_settle_mode(link) == PN_RCV_SECOND
                                          ? PN_RCV_SECOND
                                          : PN_RCV_FIRST);
    pn_link_set_max_message_size(link, (uint64_t)svc->cfg->max_message_size);
    pn_link_open(link);
    subs_credit_return(svc, sl, (int)credit);
}

/* The peer receives from us. */
static void attach_outgoing(subs_conn_t *sc, pn_link_t *link)
{
    subs_service_t *svc = sc->svc;
    const char *src = pn_terminus_get_address(pn_link_remote_source(link));
    gw_spec_client_addr_t which;
    const char *id;
    size_t idlen;

    if (subs_shared_is_l4s(link)) {
        /* Spec 2.2 L4s: by its capability, whatever its address; its name
         * is what registrations refer to (spec 3.12), no client id in it. */
        subs_link_t *sl = link_new(sc, link, SL_OUT_SHARED);
        if (!sl || subs_shared_attach(svc, sl) != GW_OK) {
            if (sl)
                link_lost(svc, sl);
            link_refuse(link, "amqp:resource-limit-exceeded", "out of memory");
        }
        return;
    }
    if (!src) {
        link_refuse(link, "amqp:invalid-field", "a receiver needs a source address");
        return;
    }
    if (gw_spec_addr_parse(&svc->addrs, src, strlen(src), &which, &id, &idlen) == GW_OK &&
        which != GW_SPEC_ADDR_PUBREL) {
        subs_session_t *s = subs_session_get(svc, id, idlen);
        subs_link_t *sl = s ? link_new(sc, link, which == GW_SPEC_ADDR_CONTROL ? SL_OUT_CTL
                                                                               : SL_OUT_PUB)
                            : NULL;
        if (!sl) {
            link_refuse(link, "amqp:resource-limit-exceeded", "out of memory");
            return;
        }
        subs_link_t **slot = which == GW_SPEC_ADDR_CONTROL ? &s->ctl : &s->out;
        /* Online on an L4s: AMQP_STOLEN there, then offline (spec 3.12). */
        if (which == GW_SPEC_ADDR_PUBLISH && s->reg)
            (void)subs_shared_takeover(svc, s, NULL, 0);
        if (*slot) {
            /* One session per client id across all gateways: the newest
             * link wins (MQTT-3.1.4-2, spec 5.2 Delivery 4). */
            subs_link_t *old = *slot;
            GW_SVC_INC(svc->stolen);
            GW_LOG_INFO(SUBS_MOD, s->id, "%s stolen by a newer link (peer %s)", src,
                        gw_amqp_conn_peer(sc->base.conn));
            if (which == GW_SPEC_ADDR_PUBLISH)
                subs_session_out_lost(svc, s);
            old->session = NULL;
            *slot = NULL;
            gw_amqp_link_close(old->link, GW_SPEC_COND_STOLEN,
                               "a newer link for this client id attached");
            if (old->sc != sc)
                gw_amqp_conn_flush(old->sc->base.conn);
        }
        sl->session = s;
        *slot = sl;
        s->orphan_ms = 0;
        if (which == GW_SPEC_ADDR_PUBLISH)
            GW_SVC_ADD(svc->m.online_l4, 1);
        pn_terminus_copy(pn_link_source(link), pn_link_remote_source(link));
        pn_terminus_copy(pn_link_target(link), pn_link_remote_target(link));
        pn_link_set_snd_settle_mode(link, pn_link_remote_snd_settle_mode(link) == PN_SND_SETTLED
                                              ? PN_SND_MIXED
                                              : pn_link_remote_snd_settle_mode(link));
        pn_link_set_rcv_settle_mode(link, PN_RCV_FIRST);
        pn_link_open(link);
        GW_LOG_DEBUG(SUBS_MOD, s->id, "%s attached peer=%s", src, gw_amqp_conn_peer(sc->base.conn));
        return;
    }
    /* A native receiver on a topic filter (spec 2.6, L9). */
    gw_err_t err = gw_topic_filter_validate(NULL, src, strlen(src));
    if (err != GW_OK) {
        char why[256];
        snprintf(why, sizeof why, "source '%.100s' is not a topic filter: %s", src,
                 gw_err_str(err));
        link_refuse(link, "amqp:invalid-field", why);
        return;
    }
    if (addr_reserved(svc, src)) {
        link_refuse(link, "amqp:not-found", "reserved address");
        return;
    }
    bool settled = pn_link_remote_snd_settle_mode(link) == PN_SND_SETTLED;
    subs_session_t *s = subs_session_new_native(svc);
    subs_link_t *sl = s ? link_new(sc, link, SL_OUT_NATIVE) : NULL;
    if (!sl || subs_session_sub_add(svc, s, src, strlen(src), settled ? 0 : 1, false) != GW_OK) {
        if (sl)
            link_lost(svc, sl);
        else
            subs_session_destroy(svc, s, false);
        link_refuse(link, "amqp:resource-limit-exceeded", "out of memory");
        return;
    }
    sl->session = s;
    s->out = sl;
    pn_terminus_copy(pn_link_source(link), pn_link_remote_source(link));
    pn_terminus_copy(pn_link_target(link), pn_link_remote_target(link));
    pn_link_set_snd_settle_mode(link, settled ? PN_SND_SETTLED : PN_SND_UNSETTLED);
    pn_link_set_rcv_settle_mode(link, PN_RCV_FIRST);
    pn_link_open(link);
    /* Retained messages matching the filter first (spec 2.6). */
    subs_retained_deliver(svc, s, src, strlen(src), settled ? 0 : 1);
}

static void on_link_end(subs_conn_t *sc, pn_link_t *link, bool closed)
{
    subs_link_t *sl = pn_link_get_context(link);
    if (sl)
        link_lost(sc->svc, sl);
    if (!(pn_link_state(link) & PN_LOCAL_CLOSED)) {
        if (closed)
            pn_link_close(link);
        else
            pn_link_detach(link);
    }
    pn_link_free(link);
}

/* ------------------------------------------------------------------ */
/* Deliveries                                                          */
/* ------------------------------------------------------------------ */

static void publication(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv,
                        bool presettled)
{
    gw_spec_msg_t m;
    char why[512] = "";
    /* spec 2.6: on a topic address the link target is the topic, and any
     * subject is a publication. */
    pn_message_set_subject(svc->in, NULL);
    if (sl->topic)
        pn_message_set_address(svc->in, sl->topic);
    gw_err_t err = gw_spec_decode_kinds(svc->in, GW_SPEC_KIND_BIT(GW_SPEC_PUBLISH), &m, why,
                                        sizeof why);
    if (err != GW_OK) {
        GW_SVC_INC(svc->malformed);
        if (!why[0])
            snprintf(why, sizeof why, "%s", gw_err_str(err));
        GW_LOG_WARN(SUBS_MOD, pn_link_name(sl->link), "publication refused: %s", why);
        if (presettled)
            pn_delivery_settle(dlv);
        else
            gw_amqp_settle(dlv, PN_REJECTED, gw_err_amqp_condition(err), why);
        subs_credit_return(svc, sl, 1);
        return;
    }
    if (addr_reserved(svc, m.publish.topic.ptr)) {
        gw_spec_msg_clear(&m);
        if (presettled)
            pn_delivery_settle(dlv);
        else
            gw_amqp_settle(dlv, PN_REJECTED, "amqp:not-found", "reserved topic");
        subs_credit_return(svc, sl, 1);
        return;
    }
    bool keep_open = pn_link_rcv_settle_mode(sl->link) == PN_RCV_SECOND;
    subs_q2_t *q2 = NULL;
    bool resend = false;
    if (keep_open && !presettled && m.publish.publisher.len && m.publish.has_message_id &&
        m.publish.message_id >= 1 && m.publish.message_id <= 65535 &&
        svc->cfg->qos2_dedupe_max > 0) {
        /* spec 5.2 publications rule 8: a resend (DUP) of a QoS 2
         * publication already taken is accepted and not published again. */
        const gw_spec_publish_t *pp = &m.publish;
        uint16_t pid = (uint16_t)pp->message_id;
        uint64_t dg = subs_q2_digest(pp);
        q2 = subs_q2_find(svc, pp->publisher.ptr, pp->publisher.len, pid);
        if (q2 && subs_q2_digest_of(q2) == dg && pp->delivery_count > 0) {
            resend = true;
            subs_q2_hold(q2);
            GW_SVC_INC(svc->m.q2_dups);
            GW_LOG_INFO(SUBS_MOD, pn_link_name(sl->link),
                        "QoS 2 resend from %.*s (packet id %u) already taken: not published again",
                        (int)(pp->publisher.len > 200 ? 200 : pp->publisher.len),
                        pp->publisher.ptr, (unsigned)pid);
        } else {
            q2 = subs_q2_put(svc, pp->publisher.ptr, pp->publisher.len, pid, dg);
        }
    }
    svc->pub_fed_over = 0;
    err = resend ? GW_OK : subs_fabric_publish(svc, &m.publish);
    if (svc->pub_fed_over && sl->kind == SL_TOPIC)
        sl->held_by = svc->pub_fed_over;
    gw_spec_msg_clear(&m);
    if (err != GW_OK && q2) {
        if (!resend)
            subs_q2_forget(svc, q2);
        subs_q2_release(svc, q2);
        q2 = NULL;
    }
    if (presettled) {
        pn_delivery_settle(dlv);
        subs_credit_return(svc, sl, 1);
        return;
    }
    if (err != GW_OK) {
        gw_amqp_settle(dlv, err == GW_ERR_NOMEM ? PN_RELEASED : PN_REJECTED,
                       err == GW_ERR_NOMEM ? NULL : "amqp:internal-error", gw_err_str(err));
        subs_credit_return(svc, sl, 1);
        return;
    }
    if (gw_subs_store_in_batch(svc->store) || keep_open) {
        if (defer_accept(svc, sl, dlv, keep_open, q2) == GW_OK)
            return;
        subs_batch_commit(svc);
        if (keep_open) {
            pn_delivery_update(dlv, PN_ACCEPTED);
            pn_delivery_set_context(dlv, q2 ? (void *)q2 : &held_marker);
            return;
        }
    }
    gw_amqp_settle(dlv, PN_ACCEPTED, NULL, NULL);
    subs_credit_return(svc, sl, 1);
}

static void incoming_delivery(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv)
{
    pn_link_t *link = sl->link;
    void *ctx = pn_delivery_get_context(dlv);

    if (ctx == &held_marker || subs_q2_is(ctx)) {
        /* QoS 2: accepted earlier; the sender's settle ends it (the client's
         * PUBREL reached a gateway: the exchange is over, so is its record). */
        if (pn_delivery_settled(dlv)) {
            if (subs_q2_is(ctx))
                subs_q2_done(svc, ctx);
            pn_delivery_settle(dlv);
            subs_credit_return(svc, sl, 1);
        }
        return;
    }
    if (!pn_delivery_readable(dlv) && !pn_delivery_partial(dlv))
        return;
    if (pn_delivery_aborted(dlv)) {
        if (pn_link_current(link) == dlv)
            pn_link_advance(link);
        pn_delivery_settle(dlv);
        subs_credit_return(svc, sl, 1);
        return;
    }
    size_t max = (size_t)svc->cfg->max_message_size;
    if (ctx == &oversize_marker || pn_delivery_pending(dlv) > max) {
        /* Discard what arrives (memory stays bounded), refuse once complete. */
        char scratch[4096];
        while (pn_link_recv(link, scratch, sizeof scratch) > 0)
            ;
        if (pn_delivery_partial(dlv)) {
            pn_delivery_set_context(dlv, &oversize_marker);
            return;
        }
        pn_link_advance(link);
        GW_SVC_INC(svc->malformed);
        char why[128];
        snprintf(why, sizeof why, "message exceeds max-message-size %zu bytes", max);
        if (pn_delivery_settled(dlv))
            pn_delivery_settle(dlv);
        else
            gw_amqp_settle(dlv, PN_REJECTED, "amqp:link:message-size-exceeded", why);
        subs_credit_return(svc, sl, 1);
        return;
    }
    if (pn_delivery_partial(dlv))
        return;
    gw_err_t err = gw_amqp_recv(sl->sc->base.conn, dlv, svc->in, max);
    if (err == GW_ERR_AGAIN)
        return;
    if (pn_link_current(link) == dlv)
        pn_link_advance(link);
    bool presettled = pn_delivery_settled(dlv);
    if (err != GW_OK) {
        GW_SVC_INC(svc->malformed);
        GW_LOG_WARN(SUBS_MOD, pn_link_name(link), "message refused: %s", gw_err_str(err));
        if (presettled)
            pn_delivery_settle(dlv);
        else
            gw_amqp_settle(dlv, PN_REJECTED,
                           err == GW_ERR_LIMIT ? "amqp:link:message-size-exceeded"
                                               : gw_err_amqp_condition(err),
                           gw_err_str(err));
        subs_credit_return(svc, sl, 1);
        return;
    }
    if (sl->kind == SL_TOPIC) {
        publication(svc, sl, dlv, presettled);
    } else if (presettled) {
        /* Control messages need an outcome: a pre-settled one cannot be answered. */
        GW_SVC_INC(svc->malformed);
        GW_LOG_WARN(SUBS_MOD, pn_link_name(link), "pre-settled control message dropped");
        pn_delivery_settle(dlv);
        subs_credit_return(svc, sl, 1);
    } else {
        subs_control_delivery(svc, sl, dlv);
    }
}

static void on_delivery(subs_conn_t *sc, pn_delivery_t *dlv)
{
    subs_service_t *svc = sc->svc;
    pn_link_t *link = pn_delivery_link(dlv);
    subs_link_t *sl = pn_link_get_context(link);
    if (!sl) {
        /* A link we refused or no longer track. */
        if (pn_link_is_receiver(link) && pn_delivery_readable(dlv) && !pn_delivery_partial(dlv)) {
            if (pn_link_current(link) == dlv)
                pn_link_advance(link);
            gw_amqp_settle(dlv, PN_RELEASED, NULL, NULL);
        } else if (pn_delivery_settled(dlv) || pn_delivery_remote_state(dlv)) {
            pn_delivery_settle(dlv);
        }
        return;
    }
    switch (sl->kind) {
    case SL_OUT_PUB:
    case SL_OUT_NATIVE:
    case SL_OUT_SHARED:
        subs_session_outcome(svc, sl, dlv);
        break;
    case SL_OUT_CTL:
        if (pn_delivery_settled(dlv) || pn_delivery_remote_state(dlv))
            pn_delivery_settle(dlv);
        break;
    default:
        incoming_delivery(svc, sl, dlv);
        break;
    }
}

static void on_flow(subs_conn_t *sc, pn_link_t *link)
{
    subs_link_t *sl = pn_link_get_context(link);
    if (sl && sl->kind == SL_OUT_SHARED) {
        if (sl->shared)
            subs_shared_flow(sc->svc, sl->shared);
        return;
    }
    if (!sl || !sl->session || !pn_link_is_sender(link))
        return;
    if (sl->kind == SL_OUT_CTL)
        subs_control_flush(sc->svc, sl->session);
    else
        subs_session_pump(sc->svc, sl->session);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

/* Every link of pn (or only those of ssn) is gone. A session's own list,
 * not a walk of the connection's links: with one session per client that
 * walk made every disconnect O(clients on the connection). */
static void links_lost(subs_service_t *svc, pn_connection_t *pn, pn_session_t *ssn)
{
    if (ssn) {
        subs_link_t *sl = pn_session_get_context(ssn), *next;
        for (; sl; sl = next) {
            next = sl->snext;
            link_lost(svc, sl);
        }
        return;
    }
    if (!pn)
        return;
    for (pn_link_t *l = pn_link_head(pn, 0); l; l = pn_link_next(l, 0)) {
        subs_link_t *sl = pn_link_get_context(l);
        if (sl)
            link_lost(svc, sl);
    }
}

static void svc_on_event(gw_amqp_conn_t *conn, pn_event_t *ev, void *ctx)
{
    subs_conn_t *sc = ctx;
    switch (pn_event_type(ev)) {
    case PN_SESSION_REMOTE_OPEN: {
        pn_session_t *ssn = pn_event_session(ev);
        if (pn_session_state(ssn) & PN_LOCAL_UNINIT)
            pn_session_open(ssn);
        break;
    }
    case PN_SESSION_REMOTE_CLOSE: {
        pn_session_t *ssn = pn_event_session(ev);
        links_lost(sc->svc, pn_session_connection(ssn), ssn);
        if (!(pn_session_state(ssn) & PN_LOCAL_CLOSED))
            pn_session_close(ssn);
        break;
    }
    case PN_LINK_REMOTE_OPEN: {
        pn_link_t *link = pn_event_link(ev);
        if (!(pn_link_state(link) & PN_LOCAL_UNINIT))
            break;
        if (sc->svc->stopping)
            link_refuse(link, "amqp:connection:forced", "subscription service stopping");
        else if (pn_link_is_receiver(link))
            attach_incoming(sc, link);
        else
            attach_outgoing(sc, link);
        break;
    }
    case PN_LINK_REMOTE_CLOSE:
        on_link_end(sc, pn_event_link(ev), true);
        break;
    case PN_LINK_REMOTE_DETACH:
        on_link_end(sc, pn_event_link(ev), false);
        break;
    case PN_LINK_FLOW:
        on_flow(sc, pn_event_link(ev));
        break;
    case PN_DELIVERY:
        on_delivery(sc, pn_event_delivery(ev));
        break;
    default:
        break;
    }
}

static void svc_maybe_done(subs_service_t *svc)
{
    if (svc->stopping && !svc->conns.head)
        event_base_loopbreak(svc->base);
}

static void svc_on_state(gw_amqp_conn_t *conn, gw_amqp_state_t st, const char *cond,
                         const char *desc, void *ctx)
{
    subs_conn_t *sc = ctx;
    subs_service_t *svc = sc->svc;
    switch (st) {
    case GW_AMQP_UP:
        GW_LOG_INFO(SUBS_MOD, NULL, "connection up peer=%s%s", gw_amqp_conn_peer(conn),
                    sc->base.outgoing ? " (router)" : "");
        gw_svc_conns_state(&svc->conns, &sc->base, st);
        break;
    case GW_AMQP_DOWN:
        gw_svc_conns_state(&svc->conns, &sc->base, st);
        GW_LOG_INFO(SUBS_MOD, NULL, "connection down peer=%s: %s %s", gw_amqp_conn_peer(conn),
                    cond ? cond : "closed", desc ? desc : "");
        links_lost(svc, gw_amqp_conn_pn(conn), NULL);
        break;
    case GW_AMQP_CLOSED:
        links_lost(svc, gw_amqp_conn_pn(conn), NULL);
        gw_svc_conns_remove(&svc->conns, &sc->base);
        free(sc);
        svc_maybe_done(svc);
        break;
    }
}

static const gw_amqp_handler_t svc_handler = {svc_on_event, svc_on_state};

static subs_conn_t *conn_new(subs_service_t *svc, bool outgoing)
{
    subs_conn_t *sc = calloc(1, sizeof *sc);
    if (!sc)
        return NULL;
    sc->svc = svc;
    gw_svc_conns_insert(&svc->conns, &sc->base, outgoing);
    return sc;
}

static void svc_accept(gw_amqp_listener_t *lst, gw_amqp_conn_t *conn, void *ctx)
{
    subs_service_t *svc = ctx;
    subs_conn_t *sc = svc->stopping ? NULL : conn_new(svc, false);
    if (!sc) {
        gw_amqp_conn_destroy(conn);
        return;
    }
    sc->base.conn = conn;
    gw_amqp_conn_set_handler(conn, &svc_handler, sc);
}

/* ------------------------------------------------------------------ */
/* Recovery                                                            */
/* ------------------------------------------------------------------ */

typedef struct load_state {
    subs_service_t *svc;
    subs_msg_t **msgs; /* by ascending store id */
    int64_t *ids;
    size_t nmsgs, cap;
    size_t nsessions, nsubs, nretained, nqueued;
} load_state_t;

static gw_err_t load_session(const char *id, int64_t offline_ms, void *ctx)
{
    load_state_t *ls = ctx;
    subs_session_t *s = subs_session_get(ls->svc, id, strlen(id));
    if (!s)
        return GW_ERR_NOMEM;
    subs_session_set_persistent(ls->svc, s, true);
    /* Offline since then (--session-expiry); unknown (online at the last
     * stop, or a store from before offline_at): from now, set by the sweep. */
    s->offline_wall_ms = offline_ms;
    s->offline_stored = offline_ms != 0;
    ls->nsessions++;
    return GW_OK;
}

static gw_err_t load_sub(const char *id, const char *f, size_t flen, uint8_t qos, void *ctx)
{
    load_state_t *ls = ctx;
    subs_session_t *s = subs_session_find(ls->svc, id, strlen(id));
    if (!s || gw_topic_filter_validate(NULL, f, flen) != GW_OK)
        return GW_OK; /* orphan or corrupt row: ignored */
    ls->nsubs++;
    return subs_session_sub_add(ls->svc, s, f, flen, qos, false);
}

static gw_err_t load_retained(const char *t, size_t tlen, const void *p, size_t plen,
                              uint8_t qos, void *ctx)
{
    load_state_t *ls = ctx;
    subs_msg_t *m = subs_msg_new(t, tlen, p, plen, qos);
    if (!m)
        return GW_ERR_NOMEM;
    m->refs = 1;
    gw_err_t err = subs_retained_set(ls->svc, m, false);
    subs_msg_unref(ls->svc, m);
    ls->nretained++;
    return err;
}

static gw_err_t load_msg(int64_t id, const char *t, size_t tlen, const void *p, size_t plen,
                         uint8_t qos, void *ctx)
{
    load_state_t *ls = ctx;
    if (ls->nmsgs == ls->cap) {
        size_t cap = ls->cap ? ls->cap * 2 : 256;
        subs_msg_t **m = realloc(ls->msgs, cap * sizeof *m);
        if (!m)
            return GW_ERR_NOMEM;
        ls->msgs = m;
        int64_t *ids = realloc(ls->ids, cap * sizeof *ids);
        if (!ids)
            return GW_ERR_NOMEM;
        ls->ids = ids;
        ls->cap = cap;
    }
    subs_msg_t *m = subs_msg_new(t, tlen, p, plen, qos);
    if (!m)
        return GW_ERR_NOMEM;
    m->refs = 1; /* the loader's, dropped after the queue is loaded */
    m->store_id = id;
    ls->msgs[ls->nmsgs] = m;
    ls->ids[ls->nmsgs++] = id;
    return GW_OK;
}

static gw_err_t load_queue(int64_t seq, const char *id, int64_t msg_id, uint8_t qos,
                           uint16_t pkt_id, bool retain, int state, void *ctx)
{
    load_state_t *ls = ctx;
    subs_session_t *s = subs_session_find(ls->svc, id, strlen(id));
    size_t lo = 0, hi = ls->nmsgs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ls->ids[mid] < msg_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* A copy never sent has no packet id yet (given at its first transfer). */
    if (!s || lo >= ls->nmsgs || ls->ids[lo] != msg_id ||
        (qos > 0 && !pkt_id && state != GW_SUBS_Q_QUEUED))
        return GW_OK;
    ls->nqueued++;
    return subs_session_restore(ls->svc, s, ls->msgs[lo], seq, qos, pkt_id, retain, state);
}

static gw_err_t load_qos2(const char *pub, size_t len, uint16_t pid, uint64_t digest, void *ctx)
{
    return subs_q2_restore(ctx, pub, len, pid, digest);
}

static gw_err_t svc_recover(subs_service_t *svc)
{
    load_state_t ls = {.svc = svc};
    gw_err_t err = gw_subs_store_load(svc->store, load_session, load_sub, load_retained,
                                      load_msg, load_queue, &ls);
    if (err == GW_OK)
        err = gw_subs_store_load_qos2(svc->store, load_qos2, svc);
    for (size_t i = 0; i < ls.nmsgs; i++)
        subs_msg_unref(svc, ls.msgs[i]);
    free(ls.msgs);
    free(ls.ids);
    if (err == GW_OK)
        GW_LOG_INFO(SUBS_MOD, NULL,
                    "recovered sessions=%zu subscriptions=%zu retained=%zu queued=%zu qos2=%zu",
                    ls.nsessions, ls.nsubs, ls.nretained, ls.nqueued, svc->nq2);
    return err;
}

/* ------------------------------------------------------------------ */
/* Start and stop                                                      */
/* ------------------------------------------------------------------ */

gw_err_t subs_service_start(struct event_base *base, const subs_config_t *cfg,
                            subs_service_t **out)
{
    gw_err_t err;
    subs_service_t *svc = calloc(1, sizeof *svc);

    *out = NULL;
    if (!svc)
        return GW_ERR_NOMEM;
    svc->base = base;
    svc->cfg = cfg;
    svc->addrs = gw_spec_default_addrs;
    svc->addrs.subctrl = cfg->control_address;
    svc->addrs.to_prefix = cfg->to_prefix;
    svc->addrs.pubrel_prefix = cfg->pubrel_prefix;
    svc->nbuckets = 64;
    svc->buckets = calloc(svc->nbuckets, sizeof *svc->buckets);
    svc->nrbuckets = 64;
    svc->rbuckets = calloc(svc->nrbuckets, sizeof *svc->rbuckets);
    svc->index = gw_topic_index_new();
    svc->in = pn_message();
    svc->out = pn_message();
    svc->commit_ev = event_new(base, -1, 0, commit_cb, svc);
    svc->sweep_timer = event_new(base, -1, EV_PERSIST, sweep_cb, svc);
    svc->stall_timer = event_new(base, -1, EV_PERSIST, stall_cb, svc);
    if (!svc->buckets || !svc->rbuckets || !svc->index || !svc->in || !svc->out ||
        !svc->commit_ev || !svc->sweep_timer || !svc->stall_timer) {
        err = GW_ERR_NOMEM;
        goto cleanup;
    }
    err = gw_subs_store_open(cfg->store, cfg->store_sync == 1, &svc->store);
    if (err == GW_OK)
        err = gw_subs_store_set_cache_size(svc->store, cfg->store_cache);
    if (err != GW_OK)
        goto cleanup;
    GW_SVC_SET(svc->m.store_open, 1);
    err = svc_recover(svc);
    if (err != GW_OK)
        goto cleanup;
    {
        /* A session is dropped between 1x and 1.25x the timeout after its
         * last link went (or since it was created without one); the same
         * for --session-expiry. */
        int64_t t = cfg->transient_timeout;
        if (cfg->session_expiry > 0 && cfg->session_expiry < t)
            t = cfg->session_expiry;
        int64_t period = t / 4 ? t / 4 : 1;
        struct timeval tv = {.tv_sec = period / 1000, .tv_usec = (period % 1000) * 1000};
        evtimer_add(svc->sweep_timer, &tv);
    }
    err = gw_svc_listen(base, &cfg->common, SUBS_MOD, true, svc_accept, svc, &svc->lst);
    if (err != GW_OK)
        goto cleanup;
    GW_SVC_SET(svc->m.listening, svc->lst != NULL);
    if (cfg->common.connect) {
        subs_conn_t *sc = conn_new(svc, true);
        if (!sc) {
            err = GW_ERR_NOMEM;
            goto cleanup;
        }
        sc->base.conn = gw_svc_connect(base, &cfg->common, SUBS_MOD, NULL, &svc_handler, sc, &err);
        if (!sc->base.conn)
            goto cleanup;
    }
    *out = svc;
    svc = NULL;
    err = GW_OK;
cleanup:
    subs_service_free(svc);
    return err;
}

uint16_t subs_service_port(const subs_service_t *svc)
{
    return svc->lst ? gw_amqp_listener_port(svc->lst) : 0;
}

void subs_service_stop(subs_service_t *svc)
{
    if (svc->stopping)
        return;
    svc->stopping = true;
    subs_batch_commit(svc);
    GW_LOG_INFO(SUBS_MOD, NULL, "stopping: state committed");
    if (svc->lst) {
        gw_amqp_listener_free(svc->lst);
        svc->lst = NULL;
        GW_SVC_SET(svc->m.listening, 0);
    }
    gw_svc_conns_close_all(&svc->conns);
    /* gw_svc_main breaks the loop after its stop bound (3 s) if peers linger. */
    svc_maybe_done(svc);
}

void subs_service_free(subs_service_t *svc)
{
    if (!svc)
        return;
    svc->stopping = true;
    if (svc->lst)
        gw_amqp_listener_free(svc->lst);
    while (svc->conns.head) {
        subs_conn_t *sc = (subs_conn_t *)svc->conns.head;
        gw_svc_conns_remove(&svc->conns, &sc->base);
        if (sc->base.conn) {
            links_lost(svc, gw_amqp_conn_pn(sc->base.conn), NULL);
            gw_amqp_conn_destroy(sc->base.conn);
        }
        free(sc);
    }
    if (svc->store)
        subs_batch_commit(svc);
    if (svc->buckets) {
        for (size_t i = 0; i < svc->nbuckets; i++)
            while (svc->buckets[i])
                subs_session_destroy(svc, svc->buckets[i], false);
        free(svc->buckets);
    }
    subs_retained_free_all(svc);
    subs_q2_free_all(svc);
    gw_topic_index_free(svc->index);
    if (svc->commit_ev)
        event_free(svc->commit_ev);
    if (svc->sweep_timer)
        event_free(svc->sweep_timer);
    if (svc->stall_timer)
        event_free(svc->stall_timer);
    if (svc->in)
        pn_message_free(svc->in);
    if (svc->out)
        pn_message_free(svc->out);
    free(svc->pending);
    free(svc->over_ids);
    free(svc->match);
    free(svc->syncwait);
    GW_LOG_INFO(SUBS_MOD, NULL,
                "stats published=%llu delivered=%llu dropped=%llu malformed=%llu stolen=%llu "
                "commits=%llu backpressure=%llu stall_leaks=%llu",
                (unsigned long long)svc->published, (unsigned long long)svc->delivered,
                (unsigned long long)svc->dropped, (unsigned long long)svc->malformed,
                (unsigned long long)svc->stolen, (unsigned long long)svc->commits,
                (unsigned long long)svc->throttles, (unsigned long long)svc->stall_leaks);
    gw_subs_store_close(svc->store);
    free(svc);
}

/* ------------------------------------------------------------------ */
/* Health and metrics (HTTP thread: GW_SVC_GET only)                   */
/* ------------------------------------------------------------------ */

bool subs_service_ready(void *arg, char *why, size_t whylen)
{
    subs_service_t *svc = arg;
    if (!GW_SVC_GET(svc->m.store_open)) {
        snprintf(why, whylen, "store not open");
        return false;
    }
    if (!GW_SVC_GET(svc->m.listening) && GW_SVC_GET(svc->conns.routers_up) <= 0) {
        snprintf(why, whylen, "no listener and no router connection");
        return false;
    }
    return true;
}

void subs_service_collect(gw_metrics_writer_t *w, void *arg)
{
    subs_service_t *svc = arg;
    const subs_metrics_t *m = &svc->m;
    static const char *const qos_labels[3] = {"qos=\"0\"", "qos=\"1\"", "qos=\"2\""};
    static const char *const drop_labels[SUBS_DROP_N] = {
        "reason=\"drop-new\"", "reason=\"drop-oldest\"", "reason=\"no-packet-id\""};
    int64_t sessions = GW_SVC_GET(m->sessions), persistent = GW_SVC_GET(m->sessions_persistent);

    gw_metrics_gauge(w, "gw_subs_sessions", "MQTT client sessions", "kind=\"persistent\"",
                     (double)persistent);
    gw_metrics_gauge(w, "gw_subs_sessions", "MQTT client sessions", "kind=\"transient\"",
                     (double)(sessions > persistent ? sessions - persistent : 0));
    gw_metrics_gauge(w, "gw_subs_online_sessions",
                     "MQTT client sessions online, by delivery link", "link=\"per-client\"",
                     (double)GW_SVC_GET(m->online_l4));
    gw_metrics_gauge(w, "gw_subs_online_sessions",
                     "MQTT client sessions online, by delivery link", "link=\"shared\"",
                     (double)GW_SVC_GET(m->online_shared));
    gw_metrics_gauge(w, "gw_subs_shared_delivery_links",
                     "shared delivery links (L4s) attached", NULL,
                     (double)GW_SVC_GET(m->shared_links));
    gw_metrics_gauge(w, "gw_subs_subscriptions", "subscriptions (native receivers included)",
                     NULL, (double)GW_SVC_GET(m->subscriptions));
    gw_metrics_gauge(w, "gw_subs_retained_messages", "retained messages", NULL,
                     (double)GW_SVC_GET(m->retained));
    gw_metrics_gauge(w, "gw_subs_queued_messages", "messages queued or in flight", NULL,
                     (double)GW_SVC_GET(m->queued));
    gw_metrics_gauge(w, "gw_subs_queued_bytes", "payload bytes queued or in flight", NULL,
                     (double)GW_SVC_GET(m->queued_bytes));
    for (int q = 0; q < 3; q++)
        gw_metrics_counter(w, "gw_subs_messages_in_total", "publications received, by QoS",
                           qos_labels[q], GW_SVC_GET(m->in_qos[q]));
    for (int q = 0; q < 3; q++)
        gw_metrics_counter(w, "gw_subs_messages_out_total",
                           "transfers to subscribers, by delivery QoS", qos_labels[q],
                           GW_SVC_GET(m->out_qos[q]));
    for (int d = 0; d < SUBS_DROP_N; d++)
        gw_metrics_counter(w, "gw_subs_drops_total", "messages dropped from full session queues",
                           drop_labels[d], GW_SVC_GET(m->drops[d]));
    gw_metrics_counter(w, "gw_subs_malformed_total", "control or publish messages rejected",
                       NULL, GW_SVC_GET(svc->malformed));
    gw_metrics_counter(w, "gw_subs_stolen_links_total",
                       "links detached with amqp:link:stolen, and registrations on shared "
                       "delivery links taken over", NULL, GW_SVC_GET(svc->stolen));
    gw_metrics_counter(w, "gw_subs_shared_stolen_total",
                       "AMQP_STOLEN sent on shared delivery links (takeovers)", NULL,
                       GW_SVC_GET(m->shared_stolen));
    gw_metrics_gauge(w, "gw_subs_qos2_records",
                     "QoS 2 publications remembered for duplicate detection", NULL,
                     GW_SVC_GET(m->q2_records));
    gw_metrics_counter(w, "gw_subs_qos2_resends_dropped_total",
                       "QoS 2 resends of a publication already taken, not published again", NULL,
                       GW_SVC_GET(m->q2_dups));
    gw_metrics_counter(w, "gw_subs_qos2_evicted_total",
                       "QoS 2 records forgotten at --qos2-dedupe-max", NULL,
                       GW_SVC_GET(m->q2_evicted));
    gw_metrics_counter(w, "gw_subs_sessions_expired_total",
                       "persistent sessions deleted after --session-expiry offline", NULL,
                       GW_SVC_GET(m->expired_persistent));
    gw_metrics_counter(w, "gw_subs_transient_expired_total",
                       "transient sessions without links dropped after --transient-timeout",
                       NULL, GW_SVC_GET(m->expired));
    gw_metrics_counter(w, "gw_subs_commits_total", "store group commits", NULL,
                       GW_SVC_GET(svc->commits));
    GW_SVC_HIST_WRITE(w, "gw_subs_commit_seconds", "latency of store group commits",
                      &m->commit_lat);
    gw_metrics_gauge(w, "gw_subs_router_connections_up", "router connections up", NULL,
                     (double)GW_SVC_GET(svc->conns.routers_up));
}
