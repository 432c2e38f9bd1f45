/*
 * handle_connect.c - CONNECT: validation, takeover, the AMQP handshake with
 * the Will Service and the Subscription Service, CONNACK.
 *
 * Order (spec decisions): attach the will sender (if a will) and send
 * AMQP_WILL; attach $mqtt.to.<id>.control (credit 1) and
 * $mqtt.to.<id>.publish (credit 0) and the subscription-service sender;
 * send AMQP_CLOSE (clean session) or AMQP_LIST (persistent). CONNACK 0 once
 * the will is accepted and CLOSE is accepted / LIST is accepted and
 * AMQP_SUBSCRIPTIONS arrived; only then is credit granted on the publish
 * link. Anything else within connect-timeout: CONNACK 3.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>


#include <event2/bufferevent_ssl.h>

#include "gw/tls.h"

#include "gateway.h"

static void write_connack(gw_client_t *c, uint8_t rc, bool session_present)
{
    uint8_t b[4] = {0x20, 0x02, session_present ? 0x01 : 0x00, rc};
    gw_client_write_first(c, b, sizeof(b));
}

static void connect_refuse(gw_client_t *c, uint8_t rc, const char *reason, bool quiet)
{
    if (c->state == GW_CLIENT_CLOSING)
        return;
    if (quiet)
        GW_LOG_DEBUG(GW_MOD, gw_client_name(c), "CONNECT refused (CONNACK %u): %s", rc, reason);
    else
        GW_LOG_WARN(GW_MOD, gw_client_name(c), "CONNECT refused (CONNACK %u): %s", rc, reason);
    if (rc < 6)
        GW_STAT_INC(c->w, connack_refused[rc]);
    write_connack(c, rc, false);
    gw_client_close_after_flush(c, GW_CLOSE_REFUSED, reason);
}

void gw_connect_fail(gw_client_t *c, uint8_t rc, const char *reason)
{
    connect_refuse(c, rc, reason, false);
}

void gw_connect_on_timeout(gw_client_t *c)
{
    gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE,
                    "no answer from the AMQP side within connect-timeout");
}

/* Copy the client id (generated for an empty id with clean session). */
static gw_err_t set_client_id(gw_client_t *c, const gw_mqtt_connect_t *p)
{
    if (p->client_id.len == 0) {
        uint8_t rnd[8];
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            memset(rnd, 0, sizeof(rnd));
        c->id = malloc(40);
        if (!c->id)
            return GW_ERR_NOMEM;
        int n = snprintf(c->id, 40, "gw-%llx-", (unsigned long long)c->serial);
        for (size_t i = 0; i < sizeof(rnd) && n < 38; i++)
            n += snprintf(c->id + n, (size_t)(40 - n), "%02x", rnd[i]);
        c->id_len = (size_t)n;
        return GW_OK;
    }
    c->id = malloc((size_t)p->client_id.len + 1);
    if (!c->id)
        return GW_ERR_NOMEM;
    memcpy(c->id, p->client_id.ptr, p->client_id.len);
    c->id[p->client_id.len] = '\0';
    c->id_len = p->client_id.len;
    return GW_OK;
}

static gw_err_t copy_will(gw_client_t *c, const gw_mqtt_connect_t *p)
{
    size_t tl = p->will_topic.len, pl = p->will_payload.len;
    c->will_buf = malloc(tl + pl + 1);
    if (!c->will_buf)
        return GW_ERR_NOMEM;
    memcpy(c->will_buf, p->will_topic.ptr, tl);
    if (pl)
        memcpy(c->will_buf + tl, p->will_payload.ptr, pl);
    memset(&c->will, 0, sizeof(c->will));
    c->will.topic.ptr = c->will_buf;
    c->will.topic.len = tl;
    c->will.payload.ptr = c->will_buf + tl;
    c->will.payload.len = pl;
    c->will.qos = p->will_qos;
    c->will.retain = p->will_retain;
    c->will.durable = p->will_qos > 0;
    c->has_will = true;
    return GW_OK;
}

static size_t route_of(gw_client_t *c, const char *addr)
{
    return gw_routes_lookup(&c->w->gw->routes, addr, strlen(addr));
}

static bool dest_up(gw_client_t *c, const char *addr)
{
    gw_dest_t *d = gw_client_dest(c, route_of(c, addr));
    return d && d->up;
}

static void glink_init(gw_glink_t *gl, gw_client_t *c, gw_link_role_t role, size_t dest,
                       pn_link_t *pn)
{
    gl->client = c;
    gl->role = (uint8_t)role;
    gl->dest = (uint8_t)dest;
    gl->pn = pn;
    if (pn)
        pn_link_set_context(pn, gl);
}

static gw_err_t attach_links(gw_client_t *c)
{
    const gw_spec_addrs_t *a = &c->w->gw->addrs;
    char ctl[1024], pub[1024];
    size_t d;
    pn_session_t *ssn;

    if (gw_spec_addr_client(a, GW_SPEC_ADDR_CONTROL, c->id, c->id_len, ctl, sizeof(ctl)) ||
        gw_spec_addr_client(a, GW_SPEC_ADDR_PUBLISH, c->id, c->id_len, pub, sizeof(pub)))
        return GW_ERR_MQTT_CLIENT_ID;
    if (c->has_will && c->w->gw->cfg->will_link == GW_WILL_LINK_SHARED) {
        /* The connection's L1s: wills named by correlation-id (spec 3.4a). */
        d = route_of(c, a->lwt);
        glink_init(&c->l_will, c, GW_LINK_WILL, d, NULL);
        if (!gw_wl_link(c, d))
            return GW_ERR_AMQP;
    } else if (c->has_will) {
        d = route_of(c, a->lwt);
        if (!(ssn = gw_client_session(c, d)))
            return GW_ERR_AMQP;
        /* The will link's name is the client id: the key of the will. */
        glink_init(&c->l_will, c, GW_LINK_WILL, d,
                   gw_amqp_sender_open(ssn, c->id, a->lwt, PN_SND_UNSETTLED, PN_RCV_FIRST));
    }
    /* L3 only carries AMQP_SUBSCRIPTIONS, the answer to AMQP_LIST: a clean
     * session never attaches it, a persistent one detaches it at CONNACK
     * (spec 2.2 L3). */
    bool shared_dl = c->w->gw->cfg->delivery_link == GW_WILL_LINK_SHARED;
    if (!c->clean_session && !shared_dl) {
        d = route_of(c, ctl);
        if (!(ssn = gw_client_session(c, d)))
            return GW_ERR_AMQP;
        glink_init(&c->l_control, c, GW_LINK_CONTROL, d,
                   gw_amqp_receiver_open(ssn, ctl, ctl, PN_SND_MIXED, PN_RCV_FIRST, 1));
    }
    d = route_of(c, pub);
    if (shared_dl) {
        /* The connection's L4s; the window travels in AMQP_LIST/CLOSE. */
        glink_init(&c->l_publish, c, GW_LINK_PUBLISH, d, NULL);
        if (!gw_dl_link(c, d))
            return GW_ERR_AMQP;
    } else {
        if (!(ssn = gw_client_session(c, d)))
            return GW_ERR_AMQP;
        glink_init(&c->l_publish, c, GW_LINK_PUBLISH, d,
                   gw_amqp_receiver_open(ssn, pub, pub, PN_SND_MIXED, PN_RCV_FIRST, 0));
    }
    /* L2 is the connection's, shared by its clients (ss_link.c). */
    c->ss_dest = route_of(c, a->subctrl);
    if ((c->has_will && !c->l_will.pn && c->w->gw->cfg->will_link != GW_WILL_LINK_SHARED) ||
        (!c->clean_session && !shared_dl && !c->l_control.pn) ||
        (!shared_dl && !c->l_publish.pn) ||
        !gw_ss_link(c, c->ss_dest))
        return GW_ERR_AMQP;
    return GW_OK;
}

gw_err_t gw_handle_connect(gw_client_t *c, const gw_mqtt_connect_t *p)
{
    gw_worker_t *w = c->w;
    const gw_gateway_config_t *cfg = w->gw->cfg;
    const gw_spec_addrs_t *a = &w->gw->addrs;
    char ctl[1024], pub[1024];

    c->mctx.protocol_level = p->protocol_level;
    if (p->client_id.len == 0 && !p->clean_session) {
        /* MQTT-3.1.3-8: empty client id requires clean session */
        gw_connect_fail(c, GW_MQTT_CONNACK_ID_REJECTED, "empty client id with clean session 0");
        return GW_OK;
    }
    if (gw_spec_addr_reserved(a, p->client_id.ptr, p->client_id.len)) {
        /* spec 2.3: no link name derived from one client id may equal the
         * will link name of another (MQTT-3.1.3-9 allows refusing ids). */
        gw_connect_fail(c, GW_MQTT_CONNACK_ID_REJECTED, "client id starts with a reserved prefix");
        return GW_OK;
    }
    if (p->client_id.len > cfg->max_client_id_len) {
        gw_connect_fail(c, GW_MQTT_CONNACK_ID_REJECTED, "client id longer than max-client-id-len");
        return GW_OK;
    }
    if (set_client_id(c, p) != GW_OK)
        return GW_ERR_NOMEM;
    if (gw_spec_addr_client(a, GW_SPEC_ADDR_CONTROL, c->id, c->id_len, ctl, sizeof(ctl)) ||
        gw_spec_addr_client(a, GW_SPEC_ADDR_PUBLISH, c->id, c->id_len, pub, sizeof(pub))) {
        gw_connect_fail(c, GW_MQTT_CONNACK_ID_REJECTED, "client id too long for an address");
        return GW_OK;
    }
    if (cfg->keepalive_max > 0 && (p->keep_alive == 0 || p->keep_alive > cfg->keepalive_max)) {
        /* MQTT 3.1.1 cannot tell a client which keep alive to use (MQTT 5's
         * Server Keep Alive): refuse it, as mosquitto's max_keepalive does.
         * 0 means never time out, which is above any maximum. */
        GW_STAT_INC(w, keepalive_refused);
        gw_connect_fail(c, GW_MQTT_CONNACK_ID_REJECTED,
                        p->keep_alive == 0 ? "keep alive 0 while keepalive-max is set"
                                           : "keep alive above keepalive-max");
        return GW_OK;
    }
    c->clean_session = p->clean_session;
    c->keep_alive = p->keep_alive;
    if (p->will_flag && copy_will(c, p) != GW_OK)
        return GW_ERR_NOMEM;
    if (p->has_username) {
        c->has_credentials = true;
        c->user = strndup(p->username.ptr, p->username.len);
        if (!c->user)
            return GW_ERR_NOMEM;
        c->user_len = p->username.len;
    }
    if (cfg->connection_mode == GW_MODE_PER_CLIENT && p->has_username) {
        /* SASL PLAIN toward the router with the CONNECT credentials. */
        c->username = strndup(p->username.ptr, p->username.len);
        if (!c->username)
            return GW_ERR_NOMEM;
        if (p->has_password) {
            c->password = strndup((const char *)p->password.ptr, p->password.len);
            if (!c->password)
                return GW_ERR_NOMEM;
        }
    }

    /* Authentication. A verified client certificate authenticates by
     * itself: its identity becomes the user name, or must equal the one
     * given. Otherwise a user name is checked against --password-file (on
     * the pool, answered later), and no user name needs --allow-anonymous. */
    bool cert_auth = false;
    if (c->lst_kind == GW_LST_TLS && cfg->tls_client_cert != GW_TLS_CLIENT_CERT_NONE) {
        char ident[GW_AUTH_USER_MAX + 1];
        size_t ilen = 0;
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        gw_err_t ierr =
            gw_tls_peer_identity(ssl, cfg->cert_identity_field, ident, sizeof(ident), &ilen);
        if (ierr == GW_OK &&
            (c->iot ? gw_iot_issuer_map_on(w->gw) : gw_tls_issuer_map_on(w->gw))) {
            /* The issuer names the tenant, the identity is the user (IoT:
             * the device id, docs/iot-mode.md): <identity>@<tenant>, which
             * ACL tenant sections and %t see. An issuer not in the map is
             * refused. */
            char *full = NULL;
            size_t flen = 0;
            gw_err_t merr = gw_iot_cert_user(w->gw, c->iot, gw_tls_peer_cert(ssl), ident, ilen,
                                             &full, &flen);
            if (merr == GW_ERR_NOMEM)
                return GW_ERR_NOMEM;
            if (merr != GW_OK) {
                gw_connect_fail(c, GW_MQTT_CONNACK_NOT_AUTHORIZED,
                                c->iot ? "client certificate issuer not in --iot-issuer-tenant-map"
                                       : "client certificate issuer not in --tls-issuer-tenant-map");
                return GW_OK;
            }
            if (c->user && !(c->user_len == ilen && memcmp(c->user, ident, ilen) == 0) &&
                !(c->user_len == flen && memcmp(c->user, full, flen) == 0)) {
                free(full);
                gw_connect_fail(c, GW_MQTT_CONNACK_NOT_AUTHORIZED,
                                "user name does not match the client certificate");
                return GW_OK;
            }
            free(c->user);
            c->user = full;
            c->user_len = flen;
            cert_auth = true;
        } else if (ierr == GW_OK) {
            if (c->user && (c->user_len != ilen || memcmp(c->user, ident, ilen) != 0)) {
                gw_connect_fail(c, GW_MQTT_CONNACK_NOT_AUTHORIZED,
                                "user name does not match the client certificate");
                return GW_OK;
            }
            if (!c->user) {
                c->user = strndup(ident, ilen);
                if (!c->user)
                    return GW_ERR_NOMEM;
                c->user_len = ilen;
            }
            cert_auth = true;
        }
    }
    /* IoT devices without credentials: gw_iot_connect decides. */
    if (!cert_auth && !c->user && !gw_auth_allow_anonymous(w->gw) && !c->iot) {
        gw_connect_fail(c, GW_MQTT_CONNACK_NOT_AUTHORIZED, "anonymous clients are not allowed");
        return GW_OK;
    }
    if (!cert_auth && c->user && w->auth_pool && gw_limits_auth_blocked(c)) {
        /* --auth-fail-limit: no password verification for this address
         * until its window ends; credentials verified recently still pass. */
        if (gw_auth_check_cached(c, p) != GW_AUTH_OK) {
            /* Counted, not logged one by one: the block was logged once
             * (limits.c) and a brute-force run must not flood the log. */
            GW_STAT_INC(w, auth_blocked);
            connect_refuse(c, GW_MQTT_CONNACK_NOT_AUTHORIZED,
                           "address blocked after failed logins (auth-fail-limit)", true);
            return GW_OK;
        }
    } else if (!cert_auth && c->user && w->auth_pool) {
        gw_err_t aerr = gw_auth_start(c, p);
        if (aerr != GW_OK) {
            gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE,
                            aerr == GW_ERR_LIMIT ? "too many password verifications pending"
                                                 : "cannot verify the password");
            return GW_OK;
        }
        c->state = GW_CLIENT_CONNECTING; /* not read until CONNACK; connect timer runs */
        gw_client_update_read(c);
        return GW_OK;
    }
    gw_connect_continue(c);
    return GW_OK;
}

void gw_connect_continue(gw_client_t *c)
{
    gw_worker_t *w = c->w;
    const gw_gateway_config_t *cfg = w->gw->cfg;
    const gw_spec_addrs_t *a = &w->gw->addrs;
    char ctl[1024], pub[1024];
    size_t old_worker = 0;
    uint64_t old_serial = 0;

    if (c->iot) {
        /* IoT device: identity from auth-id@tenant; no will, no session. */
        uint8_t rc = GW_MQTT_CONNACK_NOT_AUTHORIZED;
        const char *why = "refused";
        if (!gw_iot_connect(c, &rc, &why)) {
            gw_connect_fail(c, rc, why);
            return;
        }
    }

    if (c->has_will &&
        !gw_auth_allowed(c, c->will.topic.ptr, c->will.topic.len, GW_ACL_WRITE, false)) {
        GW_STAT_INC(w, acl_denied[GW_ACLD_WILL]);
        gw_auth_log_denied(c, "will", c->will.topic.ptr, c->will.topic.len);
        gw_connect_fail(c, GW_MQTT_CONNACK_NOT_AUTHORIZED, "will topic denied by the ACL");
        return;
    }
    if (gw_spec_addr_client(a, GW_SPEC_ADDR_CONTROL, c->id, c->id_len, ctl, sizeof(ctl)) ||
        gw_spec_addr_client(a, GW_SPEC_ADDR_PUBLISH, c->id, c->id_len, pub, sizeof(pub))) {
        gw_connect_fail(c, GW_MQTT_CONNACK_ID_REJECTED, "client id too long for an address");
        return;
    }
    bool per_client = cfg->connection_mode == GW_MODE_PER_CLIENT;
    /* While an AMQP destination this client needs is down: CONNACK 3. */
    if (!per_client && !c->iot &&
        ((c->has_will && !dest_up(c, a->lwt)) || !dest_up(c, a->subctrl) || !dest_up(c, ctl) ||
         !dest_up(c, pub))) {
        gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE, "AMQP connection is down");
        return;
    }

    /* MQTT-3.1.4-2: the newest connection for a client id wins. */
    if (gw_registry_claim(w->gw->registry, c->id, c->id_len, w->index, c->serial, &old_worker,
                          &old_serial)) {
        if (old_worker == w->index) {
            /* Same worker, same AMQP connection: close the old links first so
             * that the new ones with the same names follow their detach. */
            gw_client_t *old = gw_client_find_serial(w, old_serial);
            if (old && old->state != GW_CLIENT_CLOSING) {
                GW_STAT_INC(w, takeovers);
                gw_client_close(old, GW_CLOSE_TAKEOVER, "taken over by a new connection");
            }
        } else {
            gw_worker_request_kill(&w->gw->workers[old_worker], old_serial);
        }
    }
    c->registered = true;
    c->state = GW_CLIENT_CONNECTING;
    GW_LOG_DEBUG(GW_MOD, c->id, "CONNECT from %s clean=%d keepalive=%u will=%d", c->peer,
                 (int)c->clean_session, (unsigned)c->keep_alive, (int)c->has_will);
    if (c->iot) {
        /* No Subscription Service: CONNACK 0, session-present 0 at once. */
        c->ss_sent = c->ss_done = c->subs_done = true;
        gw_connect_progress(c);
        return;
    }
    if (per_client) {
        /* Links are attached once all of the client's connections are UP. */
        if (gw_client_open_conns(c) != GW_OK)
            gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE, "cannot open AMQP connections");
        return;
    }
    if (attach_links(c) != GW_OK) {
        gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE, "cannot attach AMQP links");
        return;
    }
    gw_connect_progress(c);
}

void gw_connect_on_conn_up(gw_client_t *c)
{
    for (size_t d = 0; d < c->w->gw->routes.ndest; d++)
        if (c->dests[d].conn && !c->dests[d].up)
            return;
    if (attach_links(c) != GW_OK) {
        gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE, "cannot attach AMQP links");
        return;
    }
    gw_connect_progress(c);
}

static gw_err_t send_on(gw_client_t *c, gw_glink_t *gl, int kind)
{
    gw_dest_t *dest = gw_client_dest(c, gl->dest);
    pn_delivery_t *dlv = NULL;
    gw_err_t err = gw_amqp_send(dest->conn, gl->pn, c->w->msg, false, &dlv);
    if (err == GW_OK && dlv)
        pn_delivery_set_context(dlv, GW_DTAG(kind, 0));
    return err;
}

void gw_connect_progress(gw_client_t *c)
{
    gw_worker_t *w = c->w;
    gw_err_t err;

    if (c->state != GW_CLIENT_CONNECTING)
        return;
    bool shared_will = w->gw->cfg->will_link == GW_WILL_LINK_SHARED;
    if (c->has_will && !c->will_sent &&
        (shared_will ? gw_wl_ready(c) : c->l_will.pn && pn_link_credit(c->l_will.pn) > 0)) {
        if (shared_will) {
            err = gw_wl_send_will(c);
        } else {
            err = gw_spec_encode_will(w->msg, &c->will);
            if (err == GW_OK)
                err = send_on(c, &c->l_will, GW_DK_WILL);
        }
        if (err != GW_OK) {
            gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE, "cannot send AMQP_WILL");
            return;
        }
        c->will_sent = true;
        free(c->will_buf); /* proton copied it */
        c->will_buf = NULL;
        memset(&c->will, 0, sizeof(c->will));
    }
    /* AMQP_LIST/CLOSE once the SS (or the router) has attached L4 and L3:
     * a link-routed attach and a message on the shared L2 take different
     * paths (spec 4.2 step 11). */
    bool shared_dl = w->gw->cfg->delivery_link == GW_WILL_LINK_SHARED;
    if (!c->ss_sent &&
        (shared_dl ? gw_dl_ready(c)
                   : c->l_publish.pn && (pn_link_state(c->l_publish.pn) & PN_REMOTE_ACTIVE)) &&
        (!c->l_control.pn || (pn_link_state(c->l_control.pn) & PN_REMOTE_ACTIVE)) &&
        gw_ss_ready(c)) {
        if (c->clean_session)
            err = gw_spec_encode_close(w->msg, &w->gw->addrs, c->id, c->id_len);
        else
            err = gw_spec_encode_list(w->msg, &w->gw->addrs, c->id, c->id_len);
        if (err == GW_OK && shared_dl) {
            gw_dest_t *dd = gw_client_dest(c, c->l_publish.dest);
            const char *l4s = pn_link_name(dd->ld.pn);
            err = gw_spec_add_delivery(w->msg, l4s, (uint32_t)w->gw->cfg->inflight_window,
                                       c->serial);
            /* AMQP_SUBSCRIPTIONS comes back on the L4s: no L3 (spec 3.12) */
            if (err == GW_OK && !c->clean_session && pn_message_set_reply_to(w->msg, l4s))
                err = GW_ERR_NOMEM;
        }
        if (err == GW_OK)
            err = gw_ss_send(c, &c->ss_req, c->clean_session ? GW_DK_CLOSE : GW_DK_LIST);
        if (err != GW_OK) {
            gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE, "cannot send AMQP_LIST/CLOSE");
            return;
        }
        c->ss_sent = true;
    }
    if ((c->has_will && !c->will_done) || !c->ss_done || (!c->clean_session && !c->subs_done))
        return;

    bool sp = !c->clean_session && c->session_present;
    write_connack(c, GW_MQTT_CONNACK_ACCEPTED, sp);
    c->state = GW_CLIENT_CONNECTED;
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0); /* packets of any size again */
    GW_LOG_INFO(GW_MOD, c->id, "connected from %s clean=%d session-present=%d keepalive=%u",
                c->peer, (int)c->clean_session, (int)sp, (unsigned)c->keep_alive);
    gw_client_start_keepalive(c);
    /* AMQP_SUBSCRIPTIONS was the only message for L3: an idle client holds
     * two links fewer (here and in the Subscription Service). */
    if (c->l_control.pn) {
        gw_link_release(c, c->l_control.pn, NULL, NULL);
        c->l_control.pn = NULL;
    }
    /* Only now may the Subscription Service send messages for this client. */
    gw_client_replenish(c, (uint32_t)w->gw->cfg->inflight_window);
    if (c->nparked)
        gw_dl_connected(c); /* L4s: what arrived before CONNACK */
    gw_client_flush_amqp(c);
    gw_client_resume(c);
}

static const char *outcome_name(uint64_t st)
{
    switch (st) {
    case PN_ACCEPTED:
        return "accepted";
    case PN_REJECTED:
        return "rejected";
    case PN_RELEASED:
        return "released";
    case PN_MODIFIED:
        return "modified";
    case PN_RECEIVED:
        return "received";
    default:
        return "none";
    }
}

void gw_connect_on_outcome(gw_client_t *c, pn_delivery_t *dlv, unsigned kind)
{
    uint64_t st = pn_delivery_remote_state(dlv);
    char why[256];

    if (st == PN_RECEIVED || (st == 0 && !pn_delivery_settled(dlv)))
        return; /* not terminal yet */
    pn_delivery_settle(dlv);
    if (c->state != GW_CLIENT_CONNECTING || (kind != GW_DK_WILL && kind != GW_DK_CLOSE &&
                                             kind != GW_DK_LIST))
        return;
    if (st != PN_ACCEPTED) {
        snprintf(why, sizeof(why), "%s %s by the %s",
                 kind == GW_DK_WILL ? "AMQP_WILL" : kind == GW_DK_LIST ? "AMQP_LIST" : "AMQP_CLOSE",
                 outcome_name(st), kind == GW_DK_WILL ? "Will Service" : "Subscription Service");
        gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE, why);
        return;
    }
    if (kind == GW_DK_WILL)
        c->will_done = true;
    else
        c->ss_done = true;
    gw_connect_progress(c);
}

void gw_connect_on_subscriptions(gw_client_t *c, const gw_spec_msg_t *m)
{
    if (c->state == GW_CLIENT_CONNECTING && !c->subs_done) {
        /* x-opt-session-present (absent: the decoder derives it) */
        c->session_present = m->session_present;
        c->subs_done = true;
        /* The session's filters count toward --max-subscriptions-per-client. */
        for (size_t i = 0; i < m->count; i++)
            gw_subset_add(c, m->entries[i].filter.ptr, m->entries[i].filter.len);
    }
}

void gw_connect_on_control(gw_client_t *c, pn_delivery_t *dlv)
{
    gw_worker_t *w = c->w;
    gw_dest_t *dest = gw_client_dest(c, c->l_control.dest);
    gw_spec_msg_t m;
    char why[256] = "";

    if (pn_delivery_partial(dlv) || !pn_delivery_readable(dlv))
        return;
    memset(&m, 0, sizeof(m));
    gw_err_t err = gw_amqp_recv(dest->conn, dlv, w->msg, 1u << 20);
    if (err == GW_ERR_AGAIN)
        return;
    if (err == GW_OK)
        err = gw_spec_decode(w->msg, &m, why, sizeof(why));
    if (err == GW_OK && m.kind != GW_SPEC_SUBSCRIPTIONS) {
        err = GW_ERR_SPEC_SUBJECT;
        snprintf(why, sizeof(why), "unexpected %s on the control link", gw_spec_kind_name(m.kind));
    }
    if (err != GW_OK) {
        GW_LOG_WARN(GW_MOD, c->id, "control link: message refused: %s %s", gw_err_name(err), why);
        gw_amqp_settle(dlv, PN_REJECTED, gw_err_amqp_condition(err), why[0] ? why : NULL);
    } else {
        gw_amqp_settle(dlv, PN_ACCEPTED, NULL, NULL);
        gw_connect_on_subscriptions(c, &m);
    }
    gw_spec_msg_clear(&m);
    if (c->l_control.pn)
        pn_link_flow(c->l_control.pn, 1);
    gw_connect_progress(c);
}
