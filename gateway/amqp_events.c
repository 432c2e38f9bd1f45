/*
 * amqp_events.c - proton events of a worker's shared AMQP connections,
 * routed to the client that owns the link or session (its context).
 * Links and sessions of closed clients have a NULL context: their events
 * are ignored, and their sessions are freed once both ends are closed.
 */
#include <stdio.h>
#include <string.h>

#include <proton/condition.h>

#include "gateway.h"

static void on_session_remote_close(gw_ssn_slot_t *slot);

/* The destination of a connection-level link (the shared L2). */
static gw_dest_t *ctx_dest(gw_amqp_conn_t *conn, gw_glink_t *gl)
{
    (void)gl;
    return gw_amqp_conn_ctx(conn);
}

static void on_link_flow(gw_glink_t *gl)
{
    gw_client_t *c = gl->client;
    if (!pn_link_is_sender(gl->pn))
        return;
    switch (gl->role) {
    case GW_LINK_WILL:
        gw_connect_progress(c);
        break;
    case GW_LINK_PUBREL:
        gw_outbound_send_pending_pubrels(c);
        break;
    default:
        break;
    }
    if (c->state == GW_CLIENT_CONNECTED && c->iot && gl->role == GW_LINK_TOPIC)
        gw_iot_on_flow(c); /* ttd notifications waiting for credit */
    if (c->state == GW_CLIENT_CONNECTED && gl->role == GW_LINK_TOPIC && c->nin > 0 &&
        pn_link_credit(gl->pn) > 0)
        gw_publish_retry(c);
    if (c->state == GW_CLIENT_CONNECTED && c->blocked_credit && pn_link_credit(gl->pn) > 0)
        gw_client_resume(c);
}

static void on_sender_delivery(gw_glink_t *gl, pn_delivery_t *dlv)
{
    gw_client_t *c = gl->client;
    if (!pn_delivery_updated(dlv) && !pn_delivery_settled(dlv))
        return;
    unsigned kind = GW_DTAG_KIND(pn_delivery_get_context(dlv));
    switch (kind) {
    case GW_DK_WILL:
        gw_connect_on_outcome(c, dlv, kind);
        break;
    case GW_DK_PUB1:
    case GW_DK_PUB2:
        gw_publish_on_outcome(c, gl, dlv);
        break;
    case GW_DK_PUBREL:
        gw_outbound_on_pubrel_outcome(c, dlv);
        break;
    default:
        if (pn_delivery_settled(dlv) || pn_delivery_remote_state(dlv))
            pn_delivery_settle(dlv);
        break;
    }
}

static void on_link_remote_close(gw_glink_t *gl, pn_link_t *link)
{
    gw_client_t *c = gl->client;
    pn_condition_t *cond = pn_link_remote_condition(link);
    const char *name = pn_condition_get_name(cond);
    const char *desc = pn_condition_get_description(cond);
    char why[512];

    if (name && strcmp(name, GW_SPEC_COND_STOLEN) == 0) {
        /* Another gateway took the client over: no will on our side. */
        GW_STAT_INC(c->w, takeovers);
        gw_client_close(c, GW_CLOSE_TAKEOVER, "link stolen by a newer connection");
        return;
    }
    snprintf(why, sizeof(why), "AMQP link %s detached by the peer%s%s%s%s", pn_link_name(link),
             name ? ": " : "", name ? name : "", desc ? " " : "", desc ? desc : "");
    if (c->state == GW_CLIENT_CONNECTING)
        gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE, why);
    else
        gw_client_close(c, GW_CLOSE_BRUTE, why);
}

void gw_amqp_events_on_event(gw_amqp_conn_t *conn, pn_event_t *event, void *ctx)
{
    switch (pn_event_type(event)) {
    case PN_LINK_FLOW: {
        gw_glink_t *gl = gw_glink_of(pn_event_link(event));
        if (gl && !gl->client)
            gw_ss_on_flow(ctx_dest(conn, gl), gl);
        else if (gl && gl->client->state != GW_CLIENT_CLOSING)
            on_link_flow(gl);
        break;
    }
    case PN_DELIVERY: {
        pn_delivery_t *dlv = pn_event_delivery(event);
        pn_link_t *link = pn_delivery_link(dlv);
        gw_glink_t *gl = gw_glink_of(link);
        if (gl && !gl->client) {
            if (gl->role == GW_LINK_DELIVERY)
                gw_dl_on_delivery(ctx_dest(conn, gl), dlv);
            else
                gw_ss_on_delivery(ctx_dest(conn, gl), dlv);
            break;
        }
        if (!gl || gl->client->state == GW_CLIENT_CLOSING)
            break; /* link of a closed client: left unsettled for the peer */
        if (pn_link_is_receiver(link)) {
            if (gl->role == GW_LINK_CONTROL)
                gw_connect_on_control(gl->client, dlv);
            else if (gl->role == GW_LINK_PUBLISH)
                gw_outbound_on_delivery(gl->client, dlv);
            else if (gl->role == GW_LINK_COMMAND)
                gw_iot_on_command(gl->client, gl, dlv);
        } else {
            on_sender_delivery(gl, dlv);
        }
        break;
    }
    case PN_LINK_REMOTE_OPEN: {
        /* IoT: an attached link without credit means "no consumer": QoS 0
         * telemetry waiting for that link is now dropped (iot.c). */
        gw_glink_t *gl = gw_glink_of(pn_event_link(event));
        if (gl && !gl->client && gl->role == GW_LINK_DELIVERY)
            gw_dl_on_remote_open(ctx_dest(conn, gl));
        if (!gl || !gl->client)
            break;
        if (gl->client->iot && gl->client->state == GW_CLIENT_CONNECTED &&
            gl->client->blocked_credit)
            gw_client_resume(gl->client);
        /* AMQP_LIST/CLOSE wait for the peer's attach of L3/L4 (spec 4.2 step 11) */
        if (gl->client->state == GW_CLIENT_CONNECTING &&
            (gl->role == GW_LINK_CONTROL || gl->role == GW_LINK_PUBLISH))
            gw_connect_progress(gl->client);
        break;
    }
    case PN_LINK_REMOTE_DETACH:
    case PN_LINK_REMOTE_CLOSE: {
        pn_link_t *link = pn_event_link(event);
        gw_glink_t *gl = gw_glink_of(link);
        if (gl && !gl->client) {
            gw_ss_on_remote_close(ctx_dest(conn, gl), link);
        } else if (gl && gl->client->state != GW_CLIENT_CLOSING) {
            on_link_remote_close(gl, link);
        } else if (!pn_link_get_context(link)) {
            gw_link_free_released(link); /* released by us (gw_link_release) */
        }
        break;
    }
    case PN_SESSION_REMOTE_CLOSE: {
        pn_session_t *ssn = pn_event_session(event);
        gw_ssn_slot_t *slot = pn_session_get_context(ssn);
        if (slot)
            on_session_remote_close(slot);
        /* Both ends closed and nobody refers to it: release it now. */
        if (!pn_session_get_context(ssn) && (pn_session_state(ssn) & PN_LOCAL_CLOSED))
            pn_session_free(ssn);
        break;
    }
    default:
        break;
    }
}

/* Drop every proton pointer of destination d: its connection went DOWN
 * (proton frees everything) or the peer ended the client's session (its
 * links end with it; their contexts are cleared). Returns true if the
 * client used it. */
static bool forget_dest(gw_client_t *c, size_t d)
{
    bool used = c->ssn[d] != NULL;
    gw_glink_t *fixed[] = {&c->l_will, &c->l_control, &c->l_publish, &c->l_pubrel};
    c->ssn[d] = NULL;
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (fixed[i]->pn && fixed[i]->dest == d) {
            pn_link_set_context(fixed[i]->pn, NULL);
            fixed[i]->pn = NULL;
        }
    for (gw_glink_t *gl = c->topic_links; gl; gl = gl->next)
        if (gl->dest == d && gl->pn) {
            pn_link_set_context(gl->pn, NULL);
            gl->pn = NULL;
        }
    if (c->iot)
        gw_iot_forget_dest(c, d);
    return used;
}

/* The peer ended a shared session (the services never do; a router may):
 * the clients in it lose their links there, as if their connection had
 * dropped; the other sessions of the connection are untouched. */
static void on_session_remote_close(gw_ssn_slot_t *slot)
{
    gw_dest_t *dest = slot->dest;
    size_t d = dest->index;
    gw_client_t *list = dest->owner ? dest->owner : dest->w->clients;

    for (gw_client_t *c = list, *next; c; c = next) {
        next = dest->owner ? NULL : c->next;
        if (c->ssn[d] != slot)
            continue;
        forget_dest(c, d);
        if (c->state == GW_CLIENT_CONNECTING)
            gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE, "AMQP session ended by the peer");
        else if (c->state == GW_CLIENT_CONNECTED)
            gw_client_close(c, GW_CLOSE_BRUTE, "AMQP session ended by the peer");
    }
    gw_ssn_slot_end(slot);
}

/* Per-client mode: the connection belongs to one client. */
static void on_client_conn_state(gw_dest_t *dest, gw_amqp_state_t state, const char *cond,
                                 const char *desc)
{
    gw_client_t *c = dest->owner;
    char why[300];

    switch (state) {
    case GW_AMQP_UP:
        dest->up = true;
        if (c->state == GW_CLIENT_CONNECTING)
            gw_connect_on_conn_up(c);
        else if (c->state == GW_CLIENT_CONNECTED && c->blocked_credit)
            gw_client_resume(c);
        break;
    case GW_AMQP_DOWN:
        dest->up = false;
        gw_ss_dest_down(dest);
        forget_dest(c, dest->index);
        gw_dest_forget_slots(dest);
        gw_worker_reap_forget(c->w, gw_amqp_conn_pn(dest->conn));
        snprintf(why, sizeof(why), "AMQP connection lost: %s %s", cond ? cond : "closed",
                 desc ? desc : "");
        if (c->state == GW_CLIENT_CONNECTING) {
            if (cond && strcmp(cond, "amqp:unauthorized-access") == 0)
                gw_connect_fail(c, c->has_credentials ? GW_MQTT_CONNACK_BAD_CREDENTIALS
                                                      : GW_MQTT_CONNACK_NOT_AUTHORIZED, why);
            else
                gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE, why);
        } else if (c->state == GW_CLIENT_CONNECTED) {
            gw_client_close(c, GW_CLOSE_BRUTE, why);
        }
        break;
    case GW_AMQP_CLOSED:
        gw_client_on_conn_closed(c, dest);
        break;
    }
}

void gw_amqp_events_on_state(gw_amqp_conn_t *conn, gw_amqp_state_t state, const char *cond,
                             const char *desc, void *ctx)
{
    gw_dest_t *dest = ctx;
    gw_worker_t *w = dest->w;
    char url_buf[512]; /* logged: password redacted */
    const char *url = gw_amqp_url_redact(w->gw->routes.dest_urls[dest->index], url_buf, sizeof url_buf);

    if (dest->owner) {
        on_client_conn_state(dest, state, cond, desc);
        return;
    }

    switch (state) {
    case GW_AMQP_UP:
        dest->up = true;
        __atomic_store_n(&dest->up_pub, true, __ATOMIC_RELAXED);
        if (dest->ever_up)
            GW_STAT_INC(w, amqp_reconnects);
        dest->ever_up = true;
        GW_LOG_INFO(GW_MOD, NULL, "worker %zu: AMQP connection to %s up", w->index, url);
        break;
    case GW_AMQP_DOWN: {
        bool was_up = dest->up;
        dest->up = false;
        __atomic_store_n(&dest->up_pub, false, __ATOMIC_RELAXED);
        if (was_up && w->stopping)
            GW_LOG_DEBUG(GW_MOD, NULL, "worker %zu: AMQP connection to %s closed", w->index, url);
        else if (was_up)
            GW_LOG_WARN(GW_MOD, NULL, "worker %zu: AMQP connection to %s down: %s %s", w->index,
                        url, cond ? cond : "closed", desc ? desc : "");
        /* Every proton object of this connection goes away after this
         * callback: forget them, then close the clients that used it (a
         * client whose will went over the lost L1s too: the Will Service
         * publishes it, spec 5.1 rule 14). */
        gw_ss_dest_down(dest);
        for (gw_client_t *c = w->clients; c; c = c->next) {
            bool used = forget_dest(c, dest->index) || gw_ss_dest_used(c, dest);
            if (used && c->state != GW_CLIENT_CLOSING) {
                if (c->state == GW_CLIENT_CONNECTING)
                    gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE, "AMQP connection lost");
                else
                    gw_client_close(c, GW_CLOSE_BRUTE, "AMQP connection lost");
            }
        }
        gw_dest_forget_slots(dest);
        gw_worker_reap_forget(w, gw_amqp_conn_pn(conn));
        break;
    }
    case GW_AMQP_CLOSED:
        dest->up = false;
        __atomic_store_n(&dest->up_pub, false, __ATOMIC_RELAXED);
        dest->conn = NULL;
        gw_worker_maybe_exit(w);
        break;
    }
}
