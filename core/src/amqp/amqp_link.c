/*
 * amqp_link.c - link and message helpers: open senders/receivers, send and
 * receive whole messages through per-connection buffers, settle, close.
 */
#include "amqp/amqp_internal.h"
#include "gw/amqp.h"
#include "gw/spec.h"
#include "gw/log.h"

#include <string.h>

#include <proton/condition.h>
#include <proton/disposition.h>
#include <proton/object.h>
#include <proton/terminus.h>

#define GW_AMQP_RECV_MAX_DEFAULT ((size_t)16 * 1024 * 1024)

/* Key of the per-link delivery-tag counter in pn_link_attachments(). */
static const char gw_amqp_tag_key = 0;

static gw_amqp_conn_t *gw_amqp_conn_of_link(pn_link_t *l)
{
    return gw_amqp_conn_of(pn_session_connection(pn_link_session(l)));
}

static void gw_amqp_link_setup(pn_link_t *l, const char *addr, bool is_sender,
                               pn_snd_settle_mode_t snd, pn_rcv_settle_mode_t rcv)
{
    if (addr)
        pn_terminus_set_address(is_sender ? pn_link_target(l) : pn_link_source(l), addr);
    /* the other terminus names the same address so peers can log it */
    if (addr)
        pn_terminus_set_address(is_sender ? pn_link_source(l) : pn_link_target(l), addr);
    pn_link_set_snd_settle_mode(l, snd);
    pn_link_set_rcv_settle_mode(l, rcv);
}

static bool symbol_is(pn_data_t *d, const char *cap, size_t len)
{
    if (pn_data_type(d) != PN_SYMBOL)
        return false;
    pn_bytes_t b = pn_data_get_symbol(d);
    return b.size == len && memcmp(b.start, cap, len) == 0;
}

bool gw_amqp_has_capability(pn_terminus_t *t, const char *cap)
{
    pn_data_t *d = t ? pn_terminus_capabilities(t) : NULL;
    size_t len = cap ? strlen(cap) : 0;
    bool found = false;
    if (!d || !cap)
        return false;
    pn_data_rewind(d);
    if (pn_data_next(d)) {
        pn_type_t type = pn_data_type(d);
        if (type == PN_SYMBOL) {
            found = symbol_is(d, cap, len);
        } else if ((type == PN_ARRAY || type == PN_LIST) && pn_data_enter(d)) {
            while (!found && pn_data_next(d))
                found = symbol_is(d, cap, len);
            pn_data_exit(d);
        }
    }
    pn_data_rewind(d);
    return found;
}

pn_link_t *gw_amqp_sender_open(pn_session_t *ssn, const char *name, const char *target,
                               pn_snd_settle_mode_t snd, pn_rcv_settle_mode_t rcv)
{
    return gw_amqp_sender_open_cap(ssn, name, target, snd, rcv, NULL);
}

pn_link_t *gw_amqp_sender_open_cap(pn_session_t *ssn, const char *name, const char *target,
                                   pn_snd_settle_mode_t snd, pn_rcv_settle_mode_t rcv,
                                   const char *capability)
{
    if (!ssn || !name)
        return NULL;
    pn_link_t *l = pn_sender(ssn, name);
    if (!l)
        return NULL;
    gw_amqp_link_setup(l, target, true, snd, rcv);
    if (capability &&
        pn_data_put_symbol(pn_terminus_capabilities(pn_link_target(l)),
                           pn_bytes(strlen(capability), capability)) != 0) {
        pn_link_free(l);
        return NULL;
    }
    pn_link_open(l);
    gw_amqp_conn_flush(gw_amqp_conn_of_link(l));
    return l;
}

pn_link_t *gw_amqp_receiver_open(pn_session_t *ssn, const char *name, const char *source,
                                 pn_snd_settle_mode_t snd, pn_rcv_settle_mode_t rcv,
                                 int credit)
{
    return gw_amqp_receiver_open_cap(ssn, name, source, snd, rcv, credit, NULL);
}

pn_link_t *gw_amqp_receiver_open_cap(pn_session_t *ssn, const char *name, const char *source,
                                     pn_snd_settle_mode_t snd, pn_rcv_settle_mode_t rcv,
                                     int credit, const char *capability)
{
    if (!ssn || !name)
        return NULL;
    pn_link_t *l = pn_receiver(ssn, name);
    if (!l)
        return NULL;
    gw_amqp_link_setup(l, source, false, snd, rcv);
    if (capability &&
        pn_data_put_symbol(pn_terminus_capabilities(pn_link_source(l)),
                           pn_bytes(strlen(capability), capability)) != 0) {
        pn_link_free(l);
        return NULL;
    }
    gw_amqp_conn_t *c = gw_amqp_conn_of_link(l);
    if (c)
        pn_link_set_max_message_size(l, gw_amqp__max_message_size(c));
    pn_link_open(l);
    if (credit > 0)
        pn_link_flow(l, credit);
    gw_amqp_conn_flush(c);
    return l;
}

static gw_err_t amqp_send(gw_amqp_conn_t *conn, pn_link_t *sender, pn_message_t *msg,
                          bool presettled, pn_delivery_t **out, bool need_credit);

gw_err_t gw_amqp_send(gw_amqp_conn_t *conn, pn_link_t *sender, pn_message_t *msg,
                      bool presettled, pn_delivery_t **out)
{
    return amqp_send(conn, sender, msg, presettled, out, true);
}

gw_err_t gw_amqp_send_queued(gw_amqp_conn_t *conn, pn_link_t *sender, pn_message_t *msg,
                             pn_delivery_t **out)
{
    return amqp_send(conn, sender, msg, false, out, false);
}

static gw_err_t amqp_send(gw_amqp_conn_t *conn, pn_link_t *sender, pn_message_t *msg,
                          bool presettled, pn_delivery_t **out, bool need_credit)
{
    if (out)
        *out = NULL;
    if (!sender || !msg || !pn_link_is_sender(sender))
        return GW_ERR_INVAL;
    if (!conn)
        conn = gw_amqp_conn_of_link(sender);
    if (!conn)
        return GW_ERR_INVAL;
    if (pn_link_state(sender) & (PN_LOCAL_CLOSED | PN_REMOTE_CLOSED))
        return GW_ERR_STATE;
    if (need_credit && pn_link_credit(sender) <= 0)
        return GW_ERR_AGAIN;
    pn_rwbytes_t *buf = gw_amqp__conn_encbuf(conn);
    ssize_t n = pn_message_encode2(msg, buf);
    if (n < 0) {
        GW_LOG_WARN("amqp", gw_amqp_conn_peer(conn), "message encode failed: %s",
                    pn_error_text(pn_message_error(msg)));
        return n == PN_OUT_OF_MEMORY ? GW_ERR_NOMEM : GW_ERR_INVAL;
    }
    /* 8-byte tag (AMQP 1.0 2.8.7: at most 32 bytes, unique per link among
     * unsettled deliveries) from a per-link counter kept in the link's record */
    pn_record_t *rec = pn_link_attachments(sender);
    pn_record_def(rec, &gw_amqp_tag_key, PN_VOID);
    uintptr_t tag = (uintptr_t)pn_record_get(rec, &gw_amqp_tag_key);
    pn_record_set(rec, &gw_amqp_tag_key, (void *)(tag + 1));
    uint64_t tag64 = (uint64_t)tag;
    pn_delivery_t *d = pn_delivery(sender, pn_dtag((const char *)&tag64, sizeof(tag64)));
    if (!d)
        return GW_ERR_NOMEM;
    if (pn_link_send(sender, buf->start, (size_t)n) != n) {
        pn_delivery_settle(d);
        return GW_ERR_AMQP;
    }
    pn_link_advance(sender);
    if (presettled)
        pn_delivery_settle(d);
    else if (out)
        *out = d;
    gw_amqp_conn_flush(conn);
    return GW_OK;
}

gw_err_t gw_amqp_recv(gw_amqp_conn_t *conn, pn_delivery_t *dlv, pn_message_t *msg,
                      size_t max_size)
{
    if (!dlv || !msg)
        return GW_ERR_INVAL;
    pn_link_t *l = pn_delivery_link(dlv);
    if (!conn)
        conn = gw_amqp_conn_of_link(l);
    if (!conn)
        return GW_ERR_INVAL;
    if (max_size == 0)
        max_size = GW_AMQP_RECV_MAX_DEFAULT;
    /* bound before buffering anything of ours: pending is what proton holds now */
    size_t pending = pn_delivery_pending(dlv);
    if (pending > max_size) {
        if (!pn_delivery_partial(dlv))
            pn_link_advance(l); /* the next delivery becomes readable; settle this one */
        return GW_ERR_LIMIT;
    }
    if (pn_delivery_partial(dlv))
        return GW_ERR_AGAIN;
    if (!pn_delivery_readable(dlv))
        return GW_ERR_STATE;
    char *buf = gw_amqp__conn_recvbuf(conn, pending ? pending : 1);
    if (!buf)
        return GW_ERR_NOMEM;
    size_t len = 0;
    while (len < pending) {
        ssize_t n = pn_link_recv(l, buf + len, pending - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    pn_link_advance(l);
    /* proton 0.37's pn_message_decode() keeps the previous message's
     * fields, keeps only the last of several Data sections, truncates large
     * maps and drops integer message-ids; gw_spec_message_decode() clears
     * first and fixes those. An empty transfer is valid on the wire but no
     * message (and proton asserts size != 0). */
    if (len == 0) {
        pn_message_clear(msg);
        return GW_ERR_SPEC_BODY;
    }
    if (gw_spec_message_decode(msg, buf, len, NULL, 0) != GW_OK)
        return GW_ERR_SPEC_BODY;
    return GW_OK;
}

void gw_amqp_settle(pn_delivery_t *dlv, uint64_t outcome, const char *cond, const char *desc)
{
    if (!dlv)
        return;
    gw_amqp_conn_t *c = gw_amqp_conn_of_link(pn_delivery_link(dlv));
    if (outcome) {
        if (cond && outcome == PN_REJECTED) {
            pn_condition_t *cn = pn_disposition_condition(pn_delivery_local(dlv));
            pn_condition_set_name(cn, cond);
            if (desc)
                pn_condition_set_description(cn, desc);
        }
        pn_delivery_update(dlv, outcome);
    }
    pn_delivery_settle(dlv);
    gw_amqp_conn_flush(c);
}

void gw_amqp_link_close(pn_link_t *link, const char *cond, const char *desc)
{
    if (!link)
        return;
    if (cond) {
        pn_condition_t *cn = pn_link_condition(link);
        pn_condition_set_name(cn, cond);
        if (desc)
            pn_condition_set_description(cn, desc);
    }
    pn_link_close(link);
    gw_amqp_conn_flush(gw_amqp_conn_of_link(link));
}
