/*
 * shared.c - shared delivery links (L4s, spec 2.2 and 3.12).
 *
 * A gateway with --delivery-link shared attaches ONE receiver per AMQP
 * connection (source capability mqtt-shared-delivery) instead of an L4 per
 * client. The attach, credit and detach of a per-client L4 become messages:
 * AMQP_LIST / AMQP_CLOSE naming the L4s register a session online on it
 * with a window W and a serial (control.c), AMQP_OFFLINE ends that
 * registration, and the SS keeps each client's window itself (session.c:
 * at most W deliveries unsettled per session). The link's own credit is
 * the gateway's bulk grant, shared by every session on the link: sessions
 * that find none wait in a FIFO and are pumped in turn on the next flow.
 *
 * Per online session this costs a subs_reg_t (56 bytes) and no proton
 * object; the L4s itself is one link per gateway connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proton/codec.h>
#include <proton/message.h>
#include <proton/terminus.h>

#include "gw/log.h"
#include "subs.h"

bool subs_shared_is_l4s(pn_link_t *link)
{
    return gw_amqp_has_capability(pn_link_remote_source(link), GW_SPEC_CAP_SHARED_DELIVERY);
}

gw_err_t subs_shared_attach(subs_service_t *svc, subs_link_t *sl)
{
    pn_link_t *link = sl->link;
    subs_shared_t *sh = calloc(1, sizeof *sh);
    if (!sh)
        return GW_ERR_NOMEM;
    sh->sl = sl;
    sl->shared = sh;
    /* Newest first: a gateway that reconnected with the same container id
     * registers its clients on its new link while the old one may still
     * be on its way out. */
    sh->next = svc->shared;
    if (svc->shared)
        svc->shared->prev = sh;
    svc->shared = sh;
    GW_SVC_ADD(svc->m.shared_links, 1);

    pn_terminus_copy(pn_link_source(link), pn_link_remote_source(link));
    pn_terminus_copy(pn_link_target(link), pn_link_remote_target(link));
    /* Every delivery unsettled, QoS 0 too: each holds a unit of its
     * client's window until the gateway settles it (spec 3.12). */
    pn_link_set_snd_settle_mode(link, PN_SND_UNSETTLED);
    pn_link_set_rcv_settle_mode(link, PN_RCV_FIRST);
    pn_link_open(link);
    GW_LOG_INFO(SUBS_MOD, pn_link_name(link), "shared delivery link attached peer=%s",
                gw_amqp_conn_peer(sl->sc->base.conn));
    return GW_OK;
}

subs_shared_t *subs_shared_find(subs_service_t *svc, const char *name, size_t len)
{
    for (subs_shared_t *sh = svc->shared; sh; sh = sh->next) {
        const char *n = pn_link_name(sh->sl->link);
        if (n && strlen(n) == len && memcmp(n, name, len) == 0 &&
            !(pn_link_state(sh->sl->link) & PN_LOCAL_CLOSED))
            return sh;
    }
    return NULL;
}

void subs_shared_lost(subs_service_t *svc, subs_shared_t *sh)
{
    size_t n = sh->nsessions;
    /* Spec 3.12 "Loss": every session online on it goes offline as by
     * AMQP_OFFLINE; O(sessions on this link). Its deliveries die with it. */
    while (sh->sessions)
        (void)subs_session_offline(svc, sh->sessions, true, false);
    if (sh->prev)
        sh->prev->next = sh->next;
    else
        svc->shared = sh->next;
    if (sh->next)
        sh->next->prev = sh->prev;
    GW_SVC_ADD(svc->m.shared_links, -1);
    GW_LOG_INFO(SUBS_MOD, sh->sl->link ? pn_link_name(sh->sl->link) : NULL,
                "shared delivery link gone: %zu sessions offline", n);
    sh->sl->shared = NULL;
    free(sh->stolen);
    free(sh);
}

/* AMQP_STOLEN (spec 3.12): subject stolen, pre-settled, no body, the old
 * registration's serial as delivery annotation. */
static gw_err_t stolen_send(subs_service_t *svc, subs_shared_t *sh, uint64_t serial)
{
    pn_message_t *m = svc->out;
    pn_message_clear(m);
    if (pn_message_set_subject(m, GW_SPEC_SUBJECT_STOLEN) != 0 ||
        gw_spec_set_delivery_serial(m, serial) != GW_OK)
        return GW_ERR_NOMEM;
    gw_err_t err = gw_amqp_send(NULL, sh->sl->link, m, true, NULL);
    if (err == GW_OK)
        GW_SVC_INC(svc->m.shared_stolen);
    return err;
}

void subs_shared_stolen(subs_service_t *svc, subs_shared_t *sh, uint64_t serial)
{
    if (!sh->nstolen) {
        gw_err_t err = stolen_send(svc, sh, serial);
        if (err == GW_OK) {
            gw_amqp_conn_flush(sh->sl->sc->base.conn);
            return;
        }
        if (err != GW_ERR_AGAIN) {
            GW_LOG_WARN(SUBS_MOD, pn_link_name(sh->sl->link),
                        "cannot send AMQP_STOLEN for serial %llu: %s",
                        (unsigned long long)serial, gw_err_str(err));
            return;
        }
    }
    /* No credit (or older ones still waiting: keep their order). */
    if (sh->nstolen == sh->capstolen) {
        size_t cap = sh->capstolen ? sh->capstolen * 2 : 8;
        uint64_t *a = realloc(sh->stolen, cap * sizeof *a);
        if (!a) {
            GW_LOG_WARN(SUBS_MOD, pn_link_name(sh->sl->link),
                        "out of memory: AMQP_STOLEN for serial %llu not sent",
                        (unsigned long long)serial);
            return;
        }
        sh->stolen = a;
        sh->capstolen = cap;
    }
    sh->stolen[sh->nstolen++] = serial;
}

void subs_shared_flow(subs_service_t *svc, subs_shared_t *sh)
{
    pn_link_t *link = sh->sl->link;
    size_t i = 0;
    for (; i < sh->nstolen && pn_link_credit(link) > 0; i++)
        if (stolen_send(svc, sh, sh->stolen[i]) != GW_OK)
            break;
    if (i) {
        memmove(sh->stolen, sh->stolen + i, (sh->nstolen - i) * sizeof *sh->stolen);
        sh->nstolen -= i;
    }
    if (sh->nstolen)
        return;
    /* One turn each for the sessions waiting now, oldest first; one that
     * runs out of credit again goes to the back of the queue (round robin:
     * the first session of the link does not take every flow). */
    for (size_t turns = sh->nwaiting; turns && pn_link_credit(link) > 0; turns--) {
        subs_session_t *s = subs_session_wait_pop(sh);
        if (!s)
            break;
        subs_control_flush(svc, s); /* AMQP_SUBSCRIPTIONS if due, then deliveries */
    }
}

bool subs_shared_takeover(subs_service_t *svc, subs_session_t *s, subs_shared_t *sh,
                          uint64_t serial)
{
    if (s->reg) {
        subs_shared_t *old = s->reg->sh;
        if (sh && old == sh && s->reg->serial == serial)
            return true; /* the same registration again */
        GW_SVC_INC(svc->stolen);
        GW_LOG_INFO(SUBS_MOD, s->id, "serial %llu on %s stolen by a newer connection",
                    (unsigned long long)s->reg->serial, pn_link_name(old->sl->link));
        subs_shared_stolen(svc, old, s->reg->serial);
        (void)subs_session_offline(svc, s, false, true);
    } else if (sh && s->out) {
        /* Online on a per-client L4: detached with amqp:link:stolen, as a
         * newer L4 attaching would (spec 5.2 Delivery 4), then offline. */
        subs_link_t *l4 = s->out;
        GW_SVC_INC(svc->stolen);
        GW_LOG_INFO(SUBS_MOD, s->id, "%s stolen by a registration on %s", pn_link_name(l4->link),
                    pn_link_name(sh->sl->link));
        subs_session_out_lost(svc, s);
        l4->session = NULL;
        gw_amqp_link_close(l4->link, GW_SPEC_COND_STOLEN,
                           "the client id registered on a shared delivery link");
        gw_amqp_conn_flush(l4->sc->base.conn);
        /* Transient: that connection's session ends (MQTT-3.1.2-6). */
        if (!s->persistent)
            subs_session_clear(svc, s);
    }
    return false;
}
