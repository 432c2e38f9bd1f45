/*
 * delivery_link.c - messages for clients over the shared delivery link
 * (--delivery-link shared, spec 3.12): one receiver L4s per AMQP
 * connection instead of an L4 per client.
 *
 * The Subscription Service keeps each client's window (spec 6.3 rule 7):
 * it counts the client's unsettled deliveries, so here a settlement is the
 * unit of credit given back. Each delivery names its client by the serial
 * registered in AMQP_LIST/AMQP_CLOSE (delivery-annotation
 * x-opt-mqtt-client-serial); the worker finds the client in its serial map.
 *
 * - Client connected: the message goes the usual way (outbound.c).
 * - Client still connecting: an encoded copy is parked until CONNACK is
 *   written (nothing overtakes CONNACK, MQTT-3.2.0-1); at most W of them.
 * - No such client (it went; its AMQP_OFFLINE is on its way): released;
 *   the service ignores outcomes of an offline registration.
 * - Output above the high watermark: settlements are held (rule 3) and
 *   given at the drain.
 * - The client goes: held settlements given (their PUBLISH was written),
 *   unacknowledged ones settled modified(delivery-failed) (the service
 *   sends them again, DUP, at the next connection), parked ones released;
 *   then AMQP_OFFLINE on L2.
 */
#include <stdlib.h>
#include <string.h>

#include <proton/codec.h>
#include <proton/message.h>

#include "gateway.h"

typedef struct gw_parked {
    pn_delivery_t *dlv;
    char *bytes;
    size_t len;
} gw_parked_t;

static void park(gw_client_t *c, pn_delivery_t *dlv)
{
    pn_message_t *msg = c->w->msg;
    size_t cap = 4096;
    char *buf = NULL;
    int rc;
    /* Rare (a persistent session's queue racing its CONNACK): re-encode. */
    for (;;) {
        char *n = realloc(buf, cap);
        if (!n)
            goto fail;
        buf = n;
        size_t len = cap;
        rc = pn_message_encode(msg, buf, &len);
        if (rc == 0) {
            gw_parked_t *p = realloc(c->parked, (c->nparked + 1) * sizeof(*p));
            if (!p)
                goto fail;
            c->parked = p;
            p[c->nparked].dlv = dlv;
            p[c->nparked].bytes = buf;
            p[c->nparked].len = len;
            c->nparked++;
            return;
        }
        if (rc != PN_OVERFLOW || cap > (size_t)c->w->gw->cfg->max_packet_size * 2 + 65536)
            goto fail;
        cap *= 2;
    }
fail:
    free(buf);
    gw_amqp_settle(dlv, PN_RELEASED, NULL, NULL);
}

void gw_dl_on_delivery(gw_dest_t *dest, pn_delivery_t *dlv)
{
    gw_worker_t *w = dest->w;
    pn_link_t *link = pn_delivery_link(dlv);
    uint64_t serial = 0;

    if (pn_delivery_partial(dlv) || !pn_delivery_readable(dlv))
        return;
    gw_err_t err = gw_amqp_recv(dest->conn, dlv, w->msg,
                                (size_t)w->gw->cfg->max_packet_size + 65536u);
    if (err == GW_ERR_AGAIN)
        return;
    /* Keep the link's credit topped up: the windows are the service's. */
    if (pn_link_credit(link) < GW_DL_CREDIT / 2)
        pn_link_flow(link, GW_DL_CREDIT - pn_link_credit(link));
    if (err != GW_OK) {
        GW_LOG_WARN(GW_MOD, NULL, "shared delivery link: message refused: %s", gw_err_name(err));
        gw_amqp_settle(dlv, PN_REJECTED, gw_err_amqp_condition(err), "undecodable message");
        return;
    }
    if (!gw_spec_delivery_serial(w->msg, &serial)) {
        GW_LOG_WARN(GW_MOD, NULL, "shared delivery link: message without "
                    GW_SPEC_ANNO_CLIENT_SERIAL ": rejected");
        gw_amqp_settle(dlv, PN_REJECTED, "amqp:invalid-field",
                       "delivery-annotation " GW_SPEC_ANNO_CLIENT_SERIAL " missing");
        return;
    }
    gw_client_t *c = gw_client_find_serial(w, serial);
    const char *subject = pn_message_get_subject(w->msg);
    if (subject && strcmp(subject, GW_SPEC_SUBJECT_STOLEN) == 0) {
        /* spec 3.12, 4.18: a newer connection of the client took over */
        if (!pn_delivery_settled(dlv))
            gw_amqp_settle(dlv, PN_ACCEPTED, NULL, NULL);
        else
            pn_delivery_settle(dlv);
        if (c && c->state != GW_CLIENT_CLOSING && c->ss_sent) {
            GW_STAT_INC(w, takeovers);
            gw_client_close(c, GW_CLOSE_TAKEOVER, "session taken over by a newer connection");
        }
        return;
    }
    if (subject && strcmp(subject, GW_SPEC_SUBJECT_SUBSCRIPTIONS) == 0) {
        /* The answer to c's AMQP_LIST (spec 3.12), pre-settled */
        gw_spec_msg_t m;
        char why[256] = "";
        gw_err_t derr = gw_spec_decode_kinds(w->msg, GW_SPEC_KIND_BIT(GW_SPEC_SUBSCRIPTIONS), &m,
                                             why, sizeof(why));
        if (pn_delivery_settled(dlv))
            pn_delivery_settle(dlv);
        else
            gw_amqp_settle(dlv, derr == GW_OK ? PN_ACCEPTED : PN_REJECTED,
                           derr == GW_OK ? NULL : gw_err_amqp_condition(derr), why);
        if (derr != GW_OK) {
            GW_LOG_WARN(GW_MOD, c ? c->id : NULL, "AMQP_SUBSCRIPTIONS refused: %s", why);
            if (c && c->state == GW_CLIENT_CONNECTING)
                gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE,
                                "malformed AMQP_SUBSCRIPTIONS");
            return;
        }
        if (c && c->state == GW_CLIENT_CONNECTING && c->ss_sent) {
            gw_connect_on_subscriptions(c, &m);
            gw_connect_progress(c);
        }
        gw_spec_msg_clear(&m);
        return;
    }
    if (!c || c->state == GW_CLIENT_CLOSING || !c->ss_sent || c->l_publish.dest != dest->index) {
        gw_amqp_settle(dlv, PN_RELEASED, NULL, NULL);
        return;
    }
    if (c->state == GW_CLIENT_CONNECTING) {
        park(c, dlv);
        return;
    }
    gw_outbound_process(c, dlv);
}

void gw_dl_connected(gw_client_t *c)
{
    gw_parked_t *p = c->parked;
    uint32_t n = c->nparked;
    c->parked = NULL;
    c->nparked = 0;
    for (uint32_t i = 0; i < n; i++) {
        pn_message_clear(c->w->msg);
        if (c->state == GW_CLIENT_CONNECTED &&
            pn_message_decode(c->w->msg, p[i].bytes, p[i].len) == 0)
            gw_outbound_process(c, p[i].dlv);
        else
            gw_amqp_settle(p[i].dlv, PN_RELEASED, NULL, NULL);
        free(p[i].bytes);
    }
    free(p);
}

void gw_dl_settle_accepted(gw_client_t *c, pn_delivery_t *dlv)
{
    if (!c->blocked_output || !pn_delivery_link(dlv) ||
        c->w->gw->cfg->delivery_link != GW_WILL_LINK_SHARED) {
        gw_amqp_settle(dlv, PN_ACCEPTED, NULL, NULL);
        return;
    }
    if (c->nheld == c->capheld) {
        uint32_t cap = c->capheld ? c->capheld * 2 : 8;
        pn_delivery_t **n = realloc(c->held, cap * sizeof(*n));
        if (!n) {
            gw_amqp_settle(dlv, PN_ACCEPTED, NULL, NULL);
            return;
        }
        c->held = n;
        c->capheld = cap;
    }
    c->held[c->nheld++] = dlv;
}

void gw_dl_release_held(gw_client_t *c)
{
    for (uint32_t i = 0; i < c->nheld; i++)
        gw_amqp_settle(c->held[i], PN_ACCEPTED, NULL, NULL);
    c->nheld = 0;
}

void gw_dl_client_gone(gw_client_t *c)
{
    gw_dest_t *dest = gw_client_dest(c, c->l_publish.dest);
    bool live = dest && dest->ld.pn;

    if (live) {
        gw_dl_release_held(c);
        for (size_t i = 0; i < c->nout; i++) {
            pn_delivery_t *dlv = c->out[i].dlv;
            if (!dlv || c->out[i].owner)
                continue;
            pn_disposition_set_failed(pn_delivery_local(dlv), true);
            gw_amqp_settle(dlv, PN_MODIFIED, NULL, NULL);
            c->out[i].dlv = NULL;
        }
        for (uint32_t i = 0; i < c->nparked; i++)
            gw_amqp_settle(c->parked[i].dlv, PN_RELEASED, NULL, NULL);
    }
    for (uint32_t i = 0; i < c->nparked; i++)
        free(c->parked[i].bytes);
    free(c->parked);
    c->parked = NULL;
    c->nparked = 0;
    free(c->held);
    c->held = NULL;
    c->nheld = c->capheld = 0;
    if (!live || !c->ss_sent || !c->id)
        return;
    /* AMQP_OFFLINE on L2, without waiting for credit: proton keeps it in
     * order behind the client's other control messages (spec 3.12). */
    gw_dest_t *ss = gw_client_dest(c, c->ss_dest);
    /* An L2 the peer detached is attached anew: without AMQP_OFFLINE the
     * service would keep sending this serial's messages here. */
    if (!ss || !gw_ss_link(c, c->ss_dest))
        return;
    gw_err_t err = gw_spec_encode_offline(c->w->msg, &c->w->gw->addrs, c->id, c->id_len,
                                          pn_link_name(dest->ld.pn), c->serial);
    pn_delivery_t *dlv = NULL;
    if (err == GW_OK)
        err = gw_amqp_send_queued(ss->conn, ss->l2.pn, c->w->msg, &dlv);
    if (err != GW_OK)
        GW_LOG_ERROR(GW_MOD, c->id, "cannot send AMQP_OFFLINE: %s", gw_err_name(err));
    gw_amqp_conn_flush(ss->conn);
    if (dest->conn != ss->conn)
        gw_amqp_conn_flush(dest->conn);
}
