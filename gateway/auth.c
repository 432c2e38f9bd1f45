/*
 * auth.c - authentication and authorisation of MQTT clients (issue 7) on top
 * of gw/auth.h: password file (verified on a per-worker gw_auth_pool, never
 * on the loop), ACL file, certificate identity, SIGHUP reload.
 *
 * Sharing: the password database is reference counted by gw/auth.h; the ACL
 * is wrapped in a gw_acl_ref_t counted here. The process's current ones sit
 * in gw_gateway_t under auth_mu (taken on CONNECT and on reload only). Each
 * worker keeps its own ACL reference and refreshes it when acl_gen moved (one
 * relaxed load per check on the message path; the mutex only after a reload).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

struct gw_acl_ref {
    gw_auth_acl_t *acl;
    int refs; /* __atomic */
};

#define GW_AUTH_CACHE_ENTRIES 4096
#define GW_AUTH_CACHE_TTL_MS (5 * 60 * 1000)
#define GW_AUTH_MAX_PENDING 10000

static gw_acl_ref_t *acl_ref_new(gw_auth_acl_t *acl)
{
    gw_acl_ref_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->acl = acl;
    r->refs = 1;
    return r;
}

static void acl_ref_put(gw_acl_ref_t *r)
{
    if (r && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        gw_auth_acl_free(r->acl);
        free(r);
    }
}

bool gw_auth_allow_anonymous(const gw_gateway_t *gw)
{
    const gw_gateway_config_t *cfg = gw->cfg;
    if (cfg->allow_anonymous == GW_ANON_AUTO)
        return !(cfg->password_file && *cfg->password_file);
    return cfg->allow_anonymous == GW_ANON_TRUE;
}

gw_err_t gw_auth_setup(gw_gateway_t *gw, const gw_gateway_config_t *cfg, char *why, size_t whylen)
{
    char eb[GW_AUTH_ERRBUF] = "";
    gw_err_t err;

    pthread_mutex_init(&gw->auth_mu, NULL);
    gw->auth_mu_init = true;
    if (cfg->password_file && *cfg->password_file) {
        err = gw_auth_passwd_load(cfg->password_file, &gw->passwd, eb);
        if (err != GW_OK) {
            snprintf(why, whylen, "--password-file: %s", eb);
            return err;
        }
        gw->auth_cache = gw_auth_cache_new(GW_AUTH_CACHE_ENTRIES, GW_AUTH_CACHE_TTL_MS);
        if (!gw->auth_cache) {
            snprintf(why, whylen, "out of memory");
            return GW_ERR_NOMEM;
        }
    }
    if (cfg->acl_file && *cfg->acl_file) {
        gw_auth_acl_t *acl = NULL;
        err = gw_auth_acl_load(cfg->acl_file, &acl, eb);
        if (err != GW_OK) {
            snprintf(why, whylen, "--acl-file: %s", eb);
            return err;
        }
        gw->acl = acl_ref_new(acl);
        if (!gw->acl) {
            gw_auth_acl_free(acl);
            snprintf(why, whylen, "out of memory");
            return GW_ERR_NOMEM;
        }
        gw->acl_gen = 1;
        gw->acl_on = true;
    }
    return GW_OK;
}

void gw_auth_reload(gw_gateway_t *gw)
{
    const gw_gateway_config_t *cfg = gw->cfg;
    char eb[GW_AUTH_ERRBUF] = "";

    if (gw->passwd) {
        gw_auth_passwd_t *db = NULL;
        if (gw_auth_passwd_load(cfg->password_file, &db, eb) == GW_OK) {
            pthread_mutex_lock(&gw->auth_mu);
            gw_auth_passwd_t *old = gw->passwd;
            gw->passwd = db;
            pthread_mutex_unlock(&gw->auth_mu);
            gw_auth_passwd_free(old); /* pool jobs hold their own reference */
            GW_LOG_INFO(GW_MOD, NULL, "SIGHUP: reloaded password file %s (%zu users)",
                        cfg->password_file, gw_auth_passwd_count(db));
        } else {
            GW_LOG_ERROR(GW_MOD, NULL, "SIGHUP: password file not reloaded, keeping the old one: %s",
                         eb);
        }
    }
    if (gw->acl_on) {
        gw_auth_acl_t *acl = NULL;
        gw_acl_ref_t *r = NULL;
        if (gw_auth_acl_load(cfg->acl_file, &acl, eb) == GW_OK && (r = acl_ref_new(acl))) {
            pthread_mutex_lock(&gw->auth_mu);
            gw_acl_ref_t *old = gw->acl;
            gw->acl = r;
            __atomic_add_fetch(&gw->acl_gen, 1, __ATOMIC_RELEASE);
            pthread_mutex_unlock(&gw->auth_mu);
            acl_ref_put(old);
            GW_LOG_INFO(GW_MOD, NULL, "SIGHUP: reloaded ACL file %s", cfg->acl_file);
        } else {
            gw_auth_acl_free(acl);
            GW_LOG_ERROR(GW_MOD, NULL, "SIGHUP: ACL file not reloaded, keeping the old one: %s",
                         eb[0] ? eb : "out of memory");
        }
    }
}

void gw_auth_teardown(gw_gateway_t *gw)
{
    gw_auth_passwd_free(gw->passwd);
    gw->passwd = NULL;
    acl_ref_put(gw->acl);
    gw->acl = NULL;
    gw_auth_cache_free(gw->auth_cache);
    gw->auth_cache = NULL;
    if (gw->auth_mu_init)
        pthread_mutex_destroy(&gw->auth_mu);
    gw->auth_mu_init = false;
}

gw_err_t gw_auth_worker_init(gw_worker_t *w)
{
    gw_gateway_t *gw = w->gw;
    if (gw->passwd)
        return gw_auth_pool_new(w->base, (unsigned)gw->cfg->auth_threads, GW_AUTH_MAX_PENDING,
                                gw->auth_cache, &w->auth_pool);
    return GW_OK;
}

void gw_auth_worker_cleanup(gw_worker_t *w)
{
    gw_auth_pool_free(w->auth_pool);
    w->auth_pool = NULL;
    acl_ref_put(w->acl);
    w->acl = NULL;
}

static const gw_auth_acl_t *worker_acl(gw_worker_t *w)
{
    gw_gateway_t *gw = w->gw;
    uint64_t gen = __atomic_load_n(&gw->acl_gen, __ATOMIC_ACQUIRE);
    if (gen != w->acl_gen) {
        pthread_mutex_lock(&gw->auth_mu);
        gw_acl_ref_t *cur = gw->acl;
        if (cur)
            __atomic_add_fetch(&cur->refs, 1, __ATOMIC_RELAXED);
        w->acl_gen = __atomic_load_n(&gw->acl_gen, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&gw->auth_mu);
        acl_ref_put(w->acl);
        w->acl = cur;
    }
    return w->acl ? w->acl->acl : NULL;
}

bool gw_auth_allowed(gw_client_t *c, const char *topic, size_t len, unsigned access,
                     bool is_filter)
{
    /* spec 2.5: topics and filters under the control addresses ($mqtt.
     * by default) are reserved for everyone, ACL or not, so that no MQTT
     * client can forge or read the gateway/service traffic. Same answer as
     * an ACL denial: 0x80 for a filter, ack-and-drop for a PUBLISH,
     * CONNACK 5 for a will. */
    if (gw_spec_addr_reserved(&c->w->gw->addrs, topic, len))
        return false;
    if (!c->w->gw->acl_on)
        return true; /* no ACL configured */
    const gw_auth_acl_t *acl = worker_acl(c->w);
    gw_auth_subject_t s;
    memset(&s, 0, sizeof(s));
    if (c->user) {
        s.user = c->user;
        s.user_len = c->user_len;
        s.tenant_len = gw_auth_user_tenant(c->user, c->user_len, &s.tenant);
    }
    s.client_id = c->id;
    s.client_id_len = c->id_len;
    return gw_auth_acl_check(acl, &s, topic, len, access, is_filter);
}

void gw_auth_log_denied(gw_client_t *c, const char *what, const char *topic, size_t len)
{
    gw_worker_t *w = c->w;
    uint64_t now = gw_now_ms();
    /* INFO, at most one line per second and worker (a flood must not flood the log). */
    if (now - w->acl_log_ms >= 1000 || w->acl_log_ms == 0) {
        GW_LOG_INFO(GW_MOD, gw_client_name(c), "%s to \"%.*s\" denied by the %s (user %s)%s", what,
                    (int)(len > 200 ? 200 : len), topic,
                    gw_spec_addr_reserved(&c->w->gw->addrs, topic, len) ? "reserved-topic rule (spec 2.5)" : "ACL",
                    c->user ? c->user : "anonymous",
                    w->acl_log_suppressed ? " (more denials not logged)" : "");
        w->acl_log_ms = now;
        w->acl_log_suppressed = 0;
    } else {
        w->acl_log_suppressed++;
    }
}

static void auth_done(gw_auth_result_t result, void *arg)
{
    gw_client_t *c = arg;
    c->auth_job = NULL;
    switch (result) {
    case GW_AUTH_OK:
        GW_LOG_DEBUG(GW_MOD, c->id, "user %s authenticated", c->user);
        gw_connect_continue(c);
        break;
    case GW_AUTH_UNKNOWN_USER:
    case GW_AUTH_BAD_PASSWORD:
        GW_LOG_INFO(GW_MOD, c->id, "authentication of user %s failed: %s", c->user,
                    gw_auth_result_name(result));
        gw_limits_auth_failed(c);
        gw_connect_fail(c, GW_MQTT_CONNACK_BAD_CREDENTIALS, "bad user name or password");
        break;
    case GW_AUTH_ERROR:
    default:
        gw_connect_fail(c, GW_MQTT_CONNACK_SERVER_UNAVAILABLE, "password verification failed");
        break;
    }
    gw_client_flush_amqp(c);
}

gw_err_t gw_auth_start(gw_client_t *c, const gw_mqtt_connect_t *p)
{
    gw_gateway_t *gw = c->w->gw;
    pthread_mutex_lock(&gw->auth_mu);
    gw_auth_passwd_t *db = gw_auth_passwd_ref(gw->passwd);
    pthread_mutex_unlock(&gw->auth_mu);
    gw_err_t err = gw_auth_pool_submit(c->w->auth_pool, db, c->user, c->user_len,
                                       p->has_password ? (const void *)p->password.ptr : "",
                                       p->has_password ? p->password.len : 0, auth_done, c,
                                       &c->auth_job);
    gw_auth_passwd_free(db); /* the job took its own reference */
    return err;
}

gw_auth_result_t gw_auth_check_cached(gw_client_t *c, const gw_mqtt_connect_t *p)
{
    gw_gateway_t *gw = c->w->gw;
    pthread_mutex_lock(&gw->auth_mu);
    gw_auth_passwd_t *db = gw_auth_passwd_ref(gw->passwd);
    pthread_mutex_unlock(&gw->auth_mu);
    gw_auth_result_t r = gw_auth_verify_cached(
        db, gw->auth_cache, c->user, c->user_len,
        p->has_password ? (const void *)p->password.ptr : "", p->has_password ? p->password.len : 0,
        gw_auth_now_ms());
    gw_auth_passwd_free(db);
    return r;
}

void gw_auth_cancel(gw_client_t *c)
{
    if (c->auth_job) {
        gw_auth_pool_cancel(c->w->auth_pool, c->auth_job);
        c->auth_job = NULL;
    }
}
