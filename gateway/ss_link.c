/*
 * ss_link.c - the links of an AMQP connection that all its clients share
 * (spec 2.2): L2 toward the Subscription Service and, with --will-link
 * shared, L1s toward the Will Service.
 *
 * Every message on them names its client in correlation-id (spec 3.4a,
 * 3.5, 3.7, 3.8), so one sender serves all clients of a connection: an
 * idle client holds no link there (~2.1 KB of proton state at each end)
 * and a CONNECT costs no attach/detach round trip. Both live in the
 * connection's control session (client sessions come and go, spec 4.1).
 * A delivery's context is the client's gw_ss_req_t until the outcome
 * arrives; a client that goes earlier sets it to NULL and the outcome is
 * then only settled.
 *
 * Credit is shared: a client that finds none waits in the link's FIFO and
 * is resumed when a flow arrives, in order, while credit lasts. The last
 * message of a client on L1s (AMQP_WILL_CLEAR / AMQP_WILL_PUBLISH) does not
 * wait: proton keeps it until credit comes, in order after the client's
 * AMQP_WILL (spec 5.1 "Order").
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proton/condition.h>

#include "gateway.h"

static gw_shared_t *shared_of(gw_dest_t *dest, gw_link_role_t role)
{
    return role == GW_LINK_WILL ? &dest->lw : role == GW_LINK_DELIVERY ? &dest->ld : &dest->l2;
}

static void waiter_remove(gw_client_t *c)
{
    gw_shared_t *sh = c->sw_on;
    if (!sh)
        return;
    if (c->sw_prev)
        c->sw_prev->sw_next = c->sw_next;
    else
        sh->wait_head = c->sw_next;
    if (c->sw_next)
        c->sw_next->sw_prev = c->sw_prev;
    else
        sh->wait_tail = c->sw_prev;
    c->sw_next = c->sw_prev = NULL;
    c->sw_on = NULL;
}

static void waiter_add(gw_shared_t *sh, gw_client_t *c)
{
    if (c->sw_on == sh)
        return;
    waiter_remove(c);
    c->sw_next = NULL;
    c->sw_prev = sh->wait_tail;
    if (sh->wait_tail)
        sh->wait_tail->sw_next = c;
    else
        sh->wait_head = c;
    sh->wait_tail = c;
    c->sw_on = sh;
}

static pn_link_t *shared_open(gw_client_t *c, size_t d, gw_link_role_t role)
{
    gw_dest_t *dest = gw_client_dest(c, d);
    if (!dest || !dest->up || !dest->conn)
        return NULL;
    gw_shared_t *sh = shared_of(dest, role);
    if (sh->pn)
        return sh->pn;
    pn_connection_t *pc = gw_amqp_conn_pn(dest->conn);
    if (!pc)
        return NULL;
    if (!sh->gl) {
        sh->gl = calloc(1, sizeof(*sh->gl));
        if (!sh->gl)
            return NULL;
        sh->gl->role = (uint8_t)role;
        sh->gl->dest = (uint8_t)d;
    }
    if (!dest->ctl_ssn) {
        dest->ctl_ssn = pn_session(pc);
        if (!dest->ctl_ssn)
            return NULL;
        pn_session_open(dest->ctl_ssn);
    }
    /* Unique per connection and, through a router, per gateway worker. */
    const gw_spec_addrs_t *a = &c->w->gw->addrs;
    const char *cont = pn_connection_get_container(pc);
    char name[1400];
    pn_link_t *l;
    if (role == GW_LINK_DELIVERY) {
        /* $mqtt.to.$mqtt.delivery.<container>: no client id starts with
         * $mqtt. (spec 2.5), so it is nobody's publish address. */
        snprintf(name, sizeof(name), "%s$mqtt.delivery.%s", a->to_prefix,
                 cont ? cont : "gateway");
        l = gw_amqp_receiver_open_cap(dest->ctl_ssn, name, name, PN_SND_UNSETTLED, PN_RCV_FIRST,
                                      GW_DL_CREDIT, GW_SPEC_CAP_SHARED_DELIVERY);
    } else {
        const char *addr = role == GW_LINK_WILL ? a->lwt : a->subctrl;
        snprintf(name, sizeof(name), "%s.%s", addr, cont ? cont : "gateway");
        l = gw_amqp_sender_open_cap(dest->ctl_ssn, name, addr, PN_SND_UNSETTLED, PN_RCV_FIRST,
                                    role == GW_LINK_WILL ? GW_SPEC_CAP_SHARED_WILL : NULL);
    }
    if (!l)
        return NULL;
    sh->pn = l;
    sh->gl->pn = l;
    pn_link_set_context(l, sh->gl);
    return l;
}

pn_link_t *gw_ss_link(gw_client_t *c, size_t d)
{
    return shared_open(c, d, GW_LINK_SS);
}

pn_link_t *gw_wl_link(gw_client_t *c, size_t d)
{
    return shared_open(c, d, GW_LINK_WILL);
}

pn_link_t *gw_dl_link(gw_client_t *c, size_t d)
{
    return shared_open(c, d, GW_LINK_DELIVERY);
}

bool gw_dl_ready(gw_client_t *c)
{
    gw_dest_t *dest = gw_client_dest(c, c->l_publish.dest);
    return dest && dest->ld.pn && (pn_link_state(dest->ld.pn) & PN_REMOTE_ACTIVE);
}

void gw_dl_on_remote_open(gw_dest_t *dest)
{
    gw_client_t *list = dest->owner ? dest->owner : dest->w->clients;
    for (gw_client_t *c = list, *next; c; c = next) {
        next = dest->owner ? NULL : c->next;
        if (c->state == GW_CLIENT_CONNECTING && !c->ss_sent && c->l_publish.dest == dest->index)
            gw_connect_progress(c);
    }
}

static bool shared_ready(gw_client_t *c, size_t d, gw_link_role_t role)
{
    gw_dest_t *dest = gw_client_dest(c, d);
    if (!dest)
        return false;
    gw_shared_t *sh = shared_of(dest, role);
    if (!sh->pn)
        return false;
    if (pn_link_credit(sh->pn) > 0) {
        if (c->sw_on == sh)
            waiter_remove(c);
        return true;
    }
    waiter_add(sh, c);
    return false;
}

bool gw_ss_ready(gw_client_t *c)
{
    return shared_ready(c, c->ss_dest, GW_LINK_SS);
}

bool gw_wl_ready(gw_client_t *c)
{
    return shared_ready(c, c->l_will.dest, GW_LINK_WILL);
}

static gw_err_t shared_send(gw_client_t *c, size_t d, gw_link_role_t role, gw_ss_req_t *req,
                            unsigned kind)
{
    gw_dest_t *dest = gw_client_dest(c, d);
    pn_delivery_t *dlv = NULL;
    if (!dest || !shared_of(dest, role)->pn)
        return GW_ERR_AMQP;
    /* With req: the caller waited for credit. Without: a last message. */
    pn_link_t *l = shared_of(dest, role)->pn;
    gw_err_t err = req ? gw_amqp_send(dest->conn, l, c->w->msg, false, &dlv)
                       : gw_amqp_send_queued(dest->conn, l, c->w->msg, &dlv);
    if (err != GW_OK)
        return err;
    if (!req)
        return GW_OK; /* outcome only settled (gw_ss_on_delivery) */
    req->c = c;
    req->kind = (uint8_t)kind;
    req->dlv = dlv;
    if (dlv)
        pn_delivery_set_context(dlv, req);
    return GW_OK;
}

gw_err_t gw_ss_send(gw_client_t *c, gw_ss_req_t *req, unsigned kind)
{
    return shared_send(c, c->ss_dest, GW_LINK_SS, req, kind);
}

gw_err_t gw_wl_send_will(gw_client_t *c)
{
    gw_err_t err = gw_spec_encode_will(c->w->msg, &c->will);
    if (err == GW_OK)
        err = gw_spec_set_correlation_id(c->w->msg, c->id, c->id_len);
    if (err == GW_OK)
        err = shared_send(c, c->l_will.dest, GW_LINK_WILL, &c->will_req, GW_DK_WILL);
    return err;
}

void gw_wl_client_gone(gw_client_t *c, gw_close_how_t how, const char *reason)
{
    if (c->will_req.dlv) {
        pn_delivery_set_context(c->will_req.dlv, NULL);
        c->will_req.dlv = NULL;
    }
    if (!c->will_sent)
        return; /* the Will Service never heard of this client's will */
    gw_dest_t *dest = gw_client_dest(c, c->l_will.dest);
    if (!dest || !dest->lw.pn)
        return; /* L1s lost: the WS publishes what it owned (spec 5.1 rule 14) */
    gw_err_t err = how == GW_CLOSE_BRUTE ? gw_spec_encode_will_publish(c->w->msg, reason)
                                         : gw_spec_encode_will_clear(c->w->msg);
    if (err == GW_OK)
        err = gw_spec_set_correlation_id(c->w->msg, c->id, c->id_len);
    if (err == GW_OK)
        err = shared_send(c, c->l_will.dest, GW_LINK_WILL, NULL, GW_DK_NONE);
    if (err != GW_OK)
        GW_LOG_ERROR(GW_MOD, c->id, "cannot send %s on the shared will link: %s",
                     how == GW_CLOSE_BRUTE ? "AMQP_WILL_PUBLISH" : "AMQP_WILL_CLEAR",
                     gw_err_name(err));
    else
        gw_amqp_conn_flush(dest->conn);
}

void gw_ss_client_gone(gw_client_t *c)
{
    waiter_remove(c);
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

void gw_ss_on_flow(gw_dest_t *dest, gw_glink_t *gl)
{
    gw_shared_t *sh = shared_of(dest, gl->role);
    /* Each resumed client may send (and use credit) or queue again at the
     * tail: stop at the first that does not leave the head. */
    while (sh->pn && sh->wait_head && pn_link_credit(sh->pn) > 0) {
        gw_client_t *c = sh->wait_head;
        waiter_remove(c);
        if (c->state == GW_CLIENT_CONNECTING)
            gw_connect_progress(c);
        else if (c->state == GW_CLIENT_CONNECTED && c->blocked_credit)
            gw_client_resume(c);
        if (sh->wait_head == c)
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
    if (!req) { /* its client is gone, or nobody waits for it */
        if (st != PN_ACCEPTED && st != 0)
            GW_LOG_WARN(GW_MOD, NULL, "shared link %s: a last message of a client was not "
                        "accepted (state %llu)", pn_link_name(pn_delivery_link(dlv)),
                        (unsigned long long)st);
        pn_delivery_settle(dlv);
        return;
    }
    req->dlv = NULL;
    pn_delivery_set_context(dlv, NULL);
    switch (req->kind) {
    case GW_DK_WILL:
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

/* Does c depend on the shared link role of dest? */
static bool uses_shared(gw_client_t *c, gw_dest_t *dest, gw_link_role_t role)
{
    if (role == GW_LINK_DELIVERY)
        return !c->iot && c->w->gw->cfg->delivery_link == GW_WILL_LINK_SHARED &&
               c->l_publish.dest == dest->index &&
               (c->state == GW_CLIENT_CONNECTING || c->state == GW_CLIENT_CONNECTED);
    if (role == GW_LINK_WILL)
        return c->has_will && c->w->gw->cfg->will_link == GW_WILL_LINK_SHARED &&
               c->l_will.dest == dest->index;
    if (c->ss_dest != dest->index)
        return false;
    if (c->sw_on == &dest->l2 || c->ss_req.dlv || c->state == GW_CLIENT_CONNECTING)
        return true;
    for (gw_pending_sub_t *ps = c->subs; ps; ps = ps->next)
        if (ps->req.dlv)
            return true;
    return false;
}

void gw_ss_on_remote_close(gw_dest_t *dest, pn_link_t *link)
{
    gw_glink_t *gl = pn_link_get_context(link);
    gw_link_role_t role = gl ? (gw_link_role_t)gl->role : GW_LINK_SS;
    gw_shared_t *sh = shared_of(dest, role);
    bool will = role == GW_LINK_WILL;
    bool dl = role == GW_LINK_DELIVERY;
    /* L2: every client with a control message in flight or waiting loses
     * its answer (spec 5.3: as a lost link). L1s: the Will Service publishes
     * the wills the link owned (spec 5.1 rule 14), so each of those clients
     * is disconnected too (spec 4.15): none stays connected after its will.
     * Later clients attach anew. */
    pn_condition_t *cond = pn_link_remote_condition(link);
    const char *name = pn_condition_get_name(cond);
    const char *what = will ? "shared will-service link"
                       : dl ? "shared delivery link" : "shared subscription-service link";
    char why[128];
    GW_LOG_WARN(GW_MOD, NULL, "worker %zu: %s detached by the peer%s%s", dest->w->index, what,
                name ? ": " : "", name ? name : "");
    snprintf(why, sizeof(why), "%s detached by the peer", what);
    sh->pn = NULL;
    if (sh->gl)
        sh->gl->pn = NULL;
    gw_worker_t *w = dest->w;
    gw_client_t *list = dest->owner ? dest->owner : w->clients;
    for (gw_client_t *c = list, *next; c; c = next) {
        next = dest->owner ? NULL : c->next;
        if (c->state == GW_CLIENT_CLOSING || !uses_shared(c, dest, role))
            continue;
        if (c->state == GW_CLIENT_CONNECTING)
            gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE, why);
        else
            gw_client_close(c, GW_CLOSE_BRUTE, why);
    }
    for (gw_client_t *c = sh->wait_head, *n; c; c = n) {
        n = c->sw_next;
        c->sw_next = c->sw_prev = NULL;
        c->sw_on = NULL;
    }
    sh->wait_head = sh->wait_tail = NULL;
    pn_link_set_context(link, NULL);
    if (!(pn_link_state(link) & PN_LOCAL_CLOSED))
        pn_link_close(link);
    /* freed with its session, which stays for the next shared link */
}

bool gw_ss_dest_used(gw_client_t *c, gw_dest_t *dest)
{
    return uses_shared(c, dest, GW_LINK_WILL) || uses_shared(c, dest, GW_LINK_DELIVERY);
}

void gw_ss_dest_down(gw_dest_t *dest)
{
    gw_shared_t *all[] = {&dest->l2, &dest->lw, &dest->ld};
    for (size_t i = 0; i < 3; i++) {
        gw_shared_t *sh = all[i];
        for (gw_client_t *c = sh->wait_head, *n; c; c = n) {
            n = c->sw_next;
            c->sw_next = c->sw_prev = NULL;
            c->sw_on = NULL;
        }
        sh->wait_head = sh->wait_tail = NULL;
        sh->pn = NULL;
        if (sh->gl)
            sh->gl->pn = NULL;
    }
    dest->ctl_ssn = NULL;
}

void gw_ss_dest_free(gw_dest_t *dest)
{
    free(dest->l2.gl);
    free(dest->lw.gl);
    free(dest->ld.gl);
    dest->l2.gl = dest->lw.gl = dest->ld.gl = NULL;
}
