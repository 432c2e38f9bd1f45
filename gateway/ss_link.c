/*
 * ss_link.c - the L2 link toward the Subscription Service, one per AMQP
 * connection and shared by every client on it (spec 2.2 L2).
 *
 * Every control message names its client in correlation-id (spec 3.5,
 * 3.7, 3.8), so one sender serves all clients of a connection: an idle
 * client holds no L2 (~2.1 KB of proton state at each end) and a CONNECT
 * costs no attach/detach round trip for it. The link lives in its own
 * session (client sessions come and go, spec 4.1). A delivery's context is
 * the client's gw_ss_req_t until the outcome arrives; a client that goes
 * earlier sets it to NULL and the outcome is then only settled.
 *
 * Credit is shared: a client that finds none waits in the destination's
 * FIFO and is resumed when a flow arrives, in order, while credit lasts.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proton/condition.h>

#include "gateway.h"

static void waiter_remove(gw_dest_t *dest, gw_client_t *c)
{
    if (!c->l2w_on)
        return;
    if (c->l2w_prev)
        c->l2w_prev->l2w_next = c->l2w_next;
    else
        dest->l2w_head = c->l2w_next;
    if (c->l2w_next)
        c->l2w_next->l2w_prev = c->l2w_prev;
    else
        dest->l2w_tail = c->l2w_prev;
    c->l2w_next = c->l2w_prev = NULL;
    c->l2w_on = false;
}

static void waiter_add(gw_dest_t *dest, gw_client_t *c)
{
    if (c->l2w_on)
        return;
    c->l2w_next = NULL;
    c->l2w_prev = dest->l2w_tail;
    if (dest->l2w_tail)
        dest->l2w_tail->l2w_next = c;
    else
        dest->l2w_head = c;
    dest->l2w_tail = c;
    c->l2w_on = true;
}

pn_link_t *gw_ss_link(gw_client_t *c, size_t d)
{
    gw_dest_t *dest = gw_client_dest(c, d);
    if (!dest || !dest->up || !dest->conn)
        return NULL;
    if (dest->l2)
        return dest->l2;
    pn_connection_t *pc = gw_amqp_conn_pn(dest->conn);
    if (!pc)
        return NULL;
    if (!dest->l2_gl) {
        dest->l2_gl = calloc(1, sizeof(*dest->l2_gl));
        if (!dest->l2_gl)
            return NULL;
        dest->l2_gl->role = GW_LINK_SS;
        dest->l2_gl->dest = (uint8_t)d;
    }
    if (!dest->l2_ssn) {
        dest->l2_ssn = pn_session(pc);
        if (!dest->l2_ssn)
            return NULL;
        pn_session_open(dest->l2_ssn);
    }
    /* Unique per connection and, through a router, per gateway worker. */
    const gw_spec_addrs_t *a = &c->w->gw->addrs;
    const char *cont = pn_connection_get_container(pc);
    char name[1400];
    snprintf(name, sizeof(name), "%s.%s", a->subctrl, cont ? cont : "gateway");
    dest->l2 = gw_amqp_sender_open(dest->l2_ssn, name, a->subctrl, PN_SND_UNSETTLED, PN_RCV_FIRST);
    if (dest->l2) {
        dest->l2_gl->pn = dest->l2;
        pn_link_set_context(dest->l2, dest->l2_gl);
        gw_amqp_conn_flush(dest->conn);
    }
    return dest->l2;
}

bool gw_ss_ready(gw_client_t *c)
{
    gw_dest_t *dest = gw_client_dest(c, c->ss_dest);
    if (!dest || !dest->l2)
        return false;
    if (pn_link_credit(dest->l2) > 0) {
        waiter_remove(dest, c);
        return true;
    }
    waiter_add(dest, c);
    return false;
}

gw_err_t gw_ss_send(gw_client_t *c, gw_ss_req_t *req, unsigned kind)
{
    gw_dest_t *dest = gw_client_dest(c, c->ss_dest);
    pn_delivery_t *dlv = NULL;
    if (!dest || !dest->l2)
        return GW_ERR_AMQP;
    gw_err_t err = gw_amqp_send(dest->conn, dest->l2, c->w->msg, false, &dlv);
    if (err != GW_OK)
        return err;
    req->c = c;
    req->kind = (uint8_t)kind;
    req->dlv = dlv;
    if (dlv)
        pn_delivery_set_context(dlv, req);
    return GW_OK;
}

void gw_ss_client_gone(gw_client_t *c)
{
    gw_dest_t *dest = gw_client_dest(c, c->ss_dest);
    if (dest)
        waiter_remove(dest, c);
    if (c->ss_req.dlv) {
        pn_delivery_set_context(c->ss_req.dlv, NULL);
        c->ss_req.dlv = NULL;
    }
    for (gw_pending_sub_t *ps = c->subs; ps; ps = ps->next)
        if (ps->req.dlv) {
            pn_delivery_set_context(ps->req.dlv, NULL);
            ps->req.dlv = NULL;
        }
}

void gw_ss_on_flow(gw_dest_t *dest)
{
    /* Each resumed client may send (and use credit) or queue again at the
     * tail: stop at the first that does not leave the head. */
    while (dest->l2 && dest->l2w_head && pn_link_credit(dest->l2) > 0) {
        gw_client_t *c = dest->l2w_head;
        waiter_remove(dest, c);
        if (c->state == GW_CLIENT_CONNECTING)
            gw_connect_progress(c);
        else if (c->state == GW_CLIENT_CONNECTED && c->blocked_credit)
            gw_client_resume(c);
        if (dest->l2w_head == c)
            break;
    }
}

void gw_ss_on_delivery(gw_dest_t *dest, pn_delivery_t *dlv)
{
    (void)dest;
    if (!pn_delivery_updated(dlv) && !pn_delivery_settled(dlv))
        return;
    gw_ss_req_t *req = pn_delivery_get_context(dlv);
    uint64_t st = pn_delivery_remote_state(dlv);
    if (st == PN_RECEIVED || (st == 0 && !pn_delivery_settled(dlv)))
        return; /* not terminal yet */
    if (!req) { /* its client is gone */
        pn_delivery_settle(dlv);
        return;
    }
    req->dlv = NULL;
    pn_delivery_set_context(dlv, NULL);
    switch (req->kind) {
    case GW_DK_LIST:
    case GW_DK_CLOSE:
        gw_connect_on_outcome(req->c, dlv, req->kind);
        break;
    case GW_DK_SUBSCRIBE:
    case GW_DK_UNSUBSCRIBE:
        /* req is embedded in the pending SUBSCRIBE/UNSUBSCRIBE */
        gw_subscribe_on_outcome(req->c, dlv,
                                (gw_pending_sub_t *)((char *)req - offsetof(gw_pending_sub_t, req)));
        break;
    default:
        pn_delivery_settle(dlv);
        break;
    }
}

void gw_ss_on_remote_close(gw_dest_t *dest, pn_link_t *link)
{
    /* The Subscription Service (or a router) detached the shared L2: every
     * client with a control message in flight or waiting loses its answer;
     * close them (spec 5.3: as a lost link). Later clients attach anew. */
    pn_condition_t *cond = pn_link_remote_condition(link);
    const char *name = pn_condition_get_name(cond);
    GW_LOG_WARN(GW_MOD, NULL, "worker %zu: shared subscription-service link detached by the peer%s%s",
                dest->w->index, name ? ": " : "", name ? name : "");
    dest->l2 = NULL;
    if (dest->l2_gl)
        dest->l2_gl->pn = NULL;
    gw_worker_t *w = dest->w;
    gw_client_t *list = dest->owner ? dest->owner : w->clients;
    for (gw_client_t *c = list, *next; c; c = next) {
        next = dest->owner ? NULL : c->next;
        if (c->ss_dest != dest->index || c->state == GW_CLIENT_CLOSING)
            continue;
        bool waiting = c->l2w_on || c->ss_req.dlv;
        for (gw_pending_sub_t *ps = c->subs; ps && !waiting; ps = ps->next)
            waiting = ps->req.dlv != NULL;
        if (!waiting && !(c->state == GW_CLIENT_CONNECTING))
            continue;
        if (c->state == GW_CLIENT_CONNECTING)
            gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE,
                            "subscription-service link detached by the peer");
        else
            gw_client_close(c, GW_CLOSE_BRUTE, "subscription-service link detached by the peer");
    }
    dest->l2w_head = dest->l2w_tail = NULL;
    pn_link_set_context(link, NULL);
    if (!(pn_link_state(link) & PN_LOCAL_CLOSED))
        pn_link_close(link);
    /* freed with its session, which stays for the next L2 */
}

void gw_ss_dest_down(gw_dest_t *dest)
{
    for (gw_client_t *c = dest->l2w_head, *n; c; c = n) {
        n = c->l2w_next;
        c->l2w_next = c->l2w_prev = NULL;
        c->l2w_on = false;
    }
    dest->l2w_head = dest->l2w_tail = NULL;
    dest->l2 = NULL;
    dest->l2_ssn = NULL;
    if (dest->l2_gl)
        dest->l2_gl->pn = NULL;
}
