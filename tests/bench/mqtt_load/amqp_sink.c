/*
 * amqp_sink.c - AMQP 1.0 receivers of mqtt-load: one connection, one
 * session and one receiver link per receiver, through gw/amqp.h. Every
 * complete delivery is decoded (gw_amqp_recv), its body's bytes (a data
 * section or an amqp-value binary) accounted like an MQTT payload, then
 * accepted; credit is topped up when half of it is used.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proton/codec.h>

#include "gw/log.h"
#include "load.h"

lt_amqp_t *lt_amqp_new(lt_worker_t *w, uint32_t index)
{
    lt_amqp_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->w = w;
    a->index = index;
    a->msg = pn_message();
    if (!a->msg) {
        free(a);
        return NULL;
    }
    a->sink = w->run->shared_sink ? w->run->shared_sink : &a->own_sink;
    return a;
}

void lt_amqp_free(lt_amqp_t *a)
{
    if (!a)
        return;
    if (a->conn && !a->closed)
        gw_amqp_conn_destroy(a->conn);
    pn_message_free(a->msg);
    lt_sink_free(&a->own_sink);
    free(a);
}

static void on_delivery(lt_amqp_t *a, pn_delivery_t *dlv)
{
    lt_worker_t *w = a->w;
    if (!pn_delivery_readable(dlv) || pn_delivery_partial(dlv))
        return;
    gw_err_t e = gw_amqp_recv(a->conn, dlv, a->msg, 0);
    if (e == GW_ERR_AGAIN)
        return;
    if (e != GW_OK) {
        w->st.protocol_errors++;
        gw_amqp_settle(dlv, PN_REJECTED, "amqp:decode-error", gw_err_str(e));
    } else {
        pn_data_t *body = pn_message_body(a->msg);
        pn_data_rewind(body);
        if (pn_data_next(body) && pn_data_type(body) == PN_BINARY) {
            pn_bytes_t b = pn_data_get_binary(body);
            lt_record_payload(w, a->sink, (const uint8_t *)b.start, b.size, lt_now_ns());
        } else {
            w->st.foreign++;
        }
        gw_amqp_settle(dlv, PN_ACCEPTED, NULL, NULL);
    }
    int credit = (int)w->run->cfg.amqp_credit;
    int have = pn_link_credit(a->link);
    if (have <= credit / 2)
        pn_link_flow(a->link, credit - have);
}

static void on_event(gw_amqp_conn_t *conn, pn_event_t *ev, void *ctx)
{
    lt_amqp_t *a = ctx;
    switch (pn_event_type(ev)) {
    case PN_LINK_REMOTE_OPEN:
        if (pn_event_link(ev) == a->link && !a->ready) {
            if (!pn_terminus_get_address(pn_link_remote_source(a->link))) {
                /* The peer refused the link: a close follows. */
                return;
            }
            a->ready = true;
            LT_INC(a->w->st.ready, 1);
        }
        break;
    case PN_LINK_REMOTE_CLOSE:
        if (pn_event_link(ev) == a->link && !a->closing) {
            pn_condition_t *cond = pn_link_remote_condition(a->link);
            GW_LOG_ERROR("mqtt-load", NULL, "amqp receiver %u: link closed by the peer: %s %s",
                         a->index, pn_condition_get_name(cond) ? pn_condition_get_name(cond) : "",
                         pn_condition_get_description(cond) ? pn_condition_get_description(cond)
                                                            : "");
            if (a->ready)
                LT_INC(a->w->st.errors, 1);
            else
                LT_INC(a->w->st.setup_errors, 1);
            a->closing = true;
            gw_amqp_conn_close(conn, NULL, NULL);
        }
        break;
    case PN_DELIVERY:
        if (pn_event_link(ev) == a->link)
            on_delivery(a, pn_event_delivery(ev));
        break;
    default:
        break;
    }
}

static void on_state(gw_amqp_conn_t *conn, gw_amqp_state_t state, const char *cond,
                     const char *desc, void *ctx)
{
    lt_amqp_t *a = ctx;
    char name[64];
    switch (state) {
    case GW_AMQP_UP: {
        pn_session_t *ssn = pn_session(gw_amqp_conn_pn(conn));
        pn_session_open(ssn);
        snprintf(name, sizeof(name), "mqtt-load-%u", a->index);
        a->link = gw_amqp_receiver_open(ssn, name, a->w->run->cfg.amqp_address, PN_SND_UNSETTLED,
                                        PN_RCV_FIRST, (int)a->w->run->cfg.amqp_credit);
        break;
    }
    case GW_AMQP_DOWN:
        a->link = NULL;
        if (!a->closing) {
            GW_LOG_ERROR("mqtt-load", NULL, "amqp receiver %u: connection down: %s %s", a->index,
                         cond ? cond : "", desc ? desc : "");
            if (a->ready)
                LT_INC(a->w->st.errors, 1);
            else
                LT_INC(a->w->st.setup_errors, 1);
            a->closing = true;
        }
        break;
    case GW_AMQP_CLOSED:
        a->closed = true;
        a->conn = NULL;
        LT_INC(a->w->st.open, (uint64_t)-1);
        break;
    }
}

int lt_amqp_start(lt_amqp_t *a)
{
    static const gw_amqp_handler_t h = {on_event, on_state};
    gw_amqp_opts_t o;
    gw_err_t e = GW_OK;
    char cid[128];
    memset(&o, 0, sizeof(o));
    snprintf(cid, sizeof(cid), "%sa%u", a->w->run->cfg.client_prefix, a->index);
    o.container_id = cid;
    a->conn = gw_amqp_connect(a->w->base, a->w->run->cfg.amqp_url, &o, &h, a, &e);
    if (!a->conn) {
        fprintf(stderr, "mqtt-load: --amqp-url %s: %s\n", a->w->run->cfg.amqp_url, gw_err_str(e));
        return -1;
    }
    LT_INC(a->w->st.open, 1);
    return 0;
}

void lt_amqp_shutdown(lt_amqp_t *a)
{
    if (!a->conn || a->closed || a->closing) {
        return;
    }
    a->closing = true;
    gw_amqp_conn_close(a->conn, NULL, NULL);
}
