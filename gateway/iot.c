/*
 * iot.c - IoT platform mode (issue 9): clients of --iot-listen/--iots-listen
 * are devices that follow Eclipse Hono's MQTT adapter conventions; the
 * mapping itself is the pure module gw/hono.h (docs/iot-mode.md).
 *
 *  PUBLISH telemetry|t|event|e -> gw_hono_build_upload -> telemetry/<tenant>
 *      or event/<tenant> through the routing table (sender links cached as
 *      for plain MQTT: handle_publish.c). QoS 0 pre-settled; QoS 1/2
 *      unsettled, PUBACK/PUBREC only on `accepted`; never resent.
 *  PUBLISH command///res/<req-id>/<status> -> gw_hono_reqtab_take ->
 *      command_response/<tenant>/<reply-id>.
 *  SUBSCRIBE command///req/# (and spellings) -> receiver on
 *      command/<tenant>/<device> + ttd=-1 on event/<tenant>; UNSUBSCRIBE and
 *      disconnect -> detach + ttd=0.
 *  Commands -> PUBLISH command///req/<req-id>/<name> at the granted QoS;
 *      QoS 1: delivery settled accepted on PUBACK (outbound.c in-flight
 *      table), modified if the device goes first. Gateways' `+` filters:
 *      one receiver per device listed in --iot-gateway-map.
 *  Client certificates: --iot-issuer-tenant-map, issuer DN -> tenant.
 *
 * No Subscription Service and no Will Service: no session, no will.
 * Everything runs on the client's worker thread; the per-tenant counters
 * are per worker and summed by the HTTP thread (gw_iot_metrics).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw/http.h"

#include "gateway.h"

#define GW_IOT_REQTAB_MAX 256       /* outstanding request/response commands per connection */
#define GW_IOT_REQ_TTL_MS 60000u    /* a response must come within this */
#define GW_IOT_CMD_CREDIT 16        /* commands in flight per command link */
#define GW_IOT_CMD_MAX_SIZE (1u << 20)
#define GW_IOT_MAX_GW_DEVICES 1024  /* receivers one '+' subscription may open */

/* ------------------------------------------------------------------ */
/* Per-tenant counters                                                 */
/* ------------------------------------------------------------------ */

enum { GW_IOT_K_TELEMETRY = 0, GW_IOT_K_EVENT, GW_IOT_K_COMMAND, GW_IOT_K_RESPONSE,
       GW_IOT_K__COUNT };
static const char *const kind_names[GW_IOT_K__COUNT] = {"telemetry", "event", "command",
                                                        "command_response"};

/* Written by the worker only (relaxed atomics); the name is immutable once
 * the slot is published through gw_iot_tenants_t.n (release/acquire). */
typedef struct gw_iot_tstat {
    char name[GW_HONO_MAX_ID + 1];
    uint64_t msgs[GW_IOT_K__COUNT];
    uint64_t dropped;
    uint64_t conns; /* up and down: net per worker */
    /* --iot-tenant-rate / --iot-tenant-byte-rate buckets (worker only) */
    double msg_tokens, byte_tokens;
    uint64_t tokens_ms;
} gw_iot_tstat_t;

typedef struct gw_iot_tenants {
    gw_iot_tstat_t *slots; /* cap named slots, then "other" at [cap] */
    size_t cap;
    size_t n;              /* __atomic: slots [0, n) are published */
    uint32_t *index;       /* open addressing: slot + 1, 0 = empty (worker only) */
    size_t index_mask;
} gw_iot_tenants_t;

#define T_ADD(f, v) __atomic_store_n(&(f), __atomic_load_n(&(f), __ATOMIC_RELAXED) + (v),        \
                                     __ATOMIC_RELAXED)

static uint64_t fnv(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

/* The counters of tenant (len bytes) on this worker; bounded by
 * --iot-max-tenants, then the shared "other" slot. NULL without memory. */
static gw_iot_tstat_t *tstat_get(gw_worker_t *w, const char *tenant, size_t len)
{
    gw_iot_tenants_t *t = w->iot_tenants;
    if (!t) {
        size_t cap = (size_t)w->gw->cfg->iot_max_tenants, isz = 16;
        while (isz < 2 * cap)
            isz *= 2;
        t = calloc(1, sizeof(*t));
        if (!t)
            return NULL;
        t->slots = calloc(cap + 1, sizeof(*t->slots));
        t->index = calloc(isz, sizeof(*t->index));
        if (!t->slots || !t->index) {
            free(t->slots);
            free(t->index);
            free(t);
            return NULL;
        }
        t->cap = cap;
        t->index_mask = isz - 1;
        snprintf(t->slots[cap].name, sizeof(t->slots[cap].name), "other");
        __atomic_store_n(&w->iot_tenants, t, __ATOMIC_RELEASE);
    }
    if (len > GW_HONO_MAX_ID)
        return &t->slots[t->cap];
    for (size_t i = fnv(tenant, len) & t->index_mask;; i = (i + 1) & t->index_mask) {
        uint32_t s = t->index[i];
        if (s == 0) {
            if (t->n >= t->cap)
                return &t->slots[t->cap];
            gw_iot_tstat_t *e = &t->slots[t->n];
            memcpy(e->name, tenant, len);
            e->name[len] = '\0';
            t->index[i] = (uint32_t)t->n + 1;
            __atomic_store_n(&t->n, t->n + 1, __ATOMIC_RELEASE);
            return e;
        }
        gw_iot_tstat_t *e = &t->slots[s - 1];
        if (strlen(e->name) == len && memcmp(e->name, tenant, len) == 0)
            return e;
    }
}

static void count_msg(gw_client_t *c, gw_hono_str_t tenant, int kind)
{
    gw_iot_tstat_t *e = tstat_get(c->w, tenant.ptr, tenant.len);
    if (e)
        T_ADD(e->msgs[kind], 1u);
}

/* Per-tenant token buckets (per worker; burst = one second of the rate).
 * Bytes may go into debt so that a message larger than the burst passes
 * once the balance is positive. false: *wait_ms until it can go. The
 * shared "other" slot is not limited (raise --iot-max-tenants). */
static bool tenant_take(gw_worker_t *w, gw_iot_tstat_t *e, size_t bytes, uint64_t *wait_ms)
{
    const gw_gateway_config_t *cfg = w->gw->cfg;
    double mr = (double)cfg->iot_tenant_rate, br = (double)cfg->iot_tenant_byte_rate;
    gw_iot_tenants_t *t = w->iot_tenants;
    if ((mr <= 0 && br <= 0) || !e || e == &t->slots[t->cap])
        return true;
    uint64_t now = gw_now_ms();
    if (e->tokens_ms == 0) {
        e->msg_tokens = mr;
        e->byte_tokens = br;
    } else {
        double dt = (double)(now - e->tokens_ms) / 1000.0;
        e->msg_tokens = e->msg_tokens + dt * mr > mr ? mr : e->msg_tokens + dt * mr;
        e->byte_tokens = e->byte_tokens + dt * br > br ? br : e->byte_tokens + dt * br;
    }
    e->tokens_ms = now;
    double wait = 0;
    if (mr > 0 && e->msg_tokens < 1.0)
        wait = (1.0 - e->msg_tokens) / mr;
    if (br > 0 && e->byte_tokens < 0.0 && -e->byte_tokens / br > wait)
        wait = -e->byte_tokens / br;
    if (wait > 0) {
        *wait_ms = (uint64_t)(wait * 1000.0) + 1;
        return false;
    }
    if (mr > 0)
        e->msg_tokens -= 1.0;
    if (br > 0)
        e->byte_tokens -= (double)bytes;
    return true;
}

static void tenant_refund(gw_worker_t *w, gw_iot_tstat_t *e, size_t bytes)
{
    const gw_gateway_config_t *cfg = w->gw->cfg;
    if (!e)
        return;
    if (cfg->iot_tenant_rate > 0)
        e->msg_tokens += 1.0;
    if (cfg->iot_tenant_byte_rate > 0)
        e->byte_tokens += (double)bytes;
}

void gw_iot_worker_cleanup(gw_worker_t *w)
{
    gw_iot_tenants_t *t = w->iot_tenants;
    if (!t)
        return;
    free(t->slots);
    free(t->index);
    free(t);
    w->iot_tenants = NULL;
}

/* One merged row of the scrape. */
typedef struct mrow {
    const char *name;
    uint64_t msgs[GW_IOT_K__COUNT];
    uint64_t dropped, conns;
} mrow_t;

void gw_iot_metrics(gw_gateway_t *gw, struct gw_metrics_writer *mw)
{
    size_t total = 0, nrows = 0;
    for (size_t i = 0; i < gw->nworkers; i++) {
        gw_iot_tenants_t *t = __atomic_load_n(&gw->workers[i].iot_tenants, __ATOMIC_ACQUIRE);
        if (t)
            total += __atomic_load_n(&t->n, __ATOMIC_ACQUIRE) + 1;
    }
    if (total == 0)
        return;
    mrow_t *rows = calloc(total, sizeof(*rows));
    if (!rows)
        return;
    /* Merge by tenant name (O(rows^2) on the HTTP thread, bounded by the
     * tenant cap; the workers are never stopped). */
    for (size_t i = 0; i < gw->nworkers; i++) {
        gw_iot_tenants_t *t = __atomic_load_n(&gw->workers[i].iot_tenants, __ATOMIC_ACQUIRE);
        if (!t)
            continue;
        size_t n = __atomic_load_n(&t->n, __ATOMIC_ACQUIRE);
        for (size_t k = 0; k <= n; k++) {
            gw_iot_tstat_t *e = &t->slots[k == n ? t->cap : k];
            size_t r = 0;
            while (r < nrows && strcmp(rows[r].name, e->name) != 0)
                r++;
            if (r == nrows)
                rows[nrows++].name = e->name;
            for (int q = 0; q < GW_IOT_K__COUNT; q++)
                rows[r].msgs[q] += __atomic_load_n(&e->msgs[q], __ATOMIC_RELAXED);
            rows[r].dropped += __atomic_load_n(&e->dropped, __ATOMIC_RELAXED);
            rows[r].conns += __atomic_load_n(&e->conns, __ATOMIC_RELAXED);
        }
    }
    char esc[2 * GW_HONO_MAX_ID + 8], lb[sizeof(esc) + 64];
    for (size_t r = 0; r < nrows; r++) {
        gw_metrics_escape(rows[r].name, esc, sizeof(esc));
        for (int q = 0; q < GW_IOT_K__COUNT; q++) {
            snprintf(lb, sizeof(lb), "tenant=\"%s\",kind=\"%s\"", esc, kind_names[q]);
            gw_metrics_counter(mw, "mqtt_gateway_iot_messages_total",
                               "IoT messages forwarded, by tenant and kind", lb, rows[r].msgs[q]);
        }
    }
    for (size_t r = 0; r < nrows; r++) {
        snprintf(lb, sizeof(lb), "tenant=\"%s\"", gw_metrics_escape(rows[r].name, esc, sizeof(esc)));
        gw_metrics_counter(mw, "mqtt_gateway_iot_dropped_total",
                           "IoT QoS 0 telemetry dropped for lack of AMQP credit, by tenant", lb,
                           rows[r].dropped);
    }
    for (size_t r = 0; r < nrows; r++) {
        snprintf(lb, sizeof(lb), "tenant=\"%s\"", gw_metrics_escape(rows[r].name, esc, sizeof(esc)));
        gw_metrics_gauge(mw, "mqtt_gateway_iot_connections", "IoT devices connected, by tenant",
                         lb, (double)(int64_t)rows[r].conns);
    }
    free(rows);
}

/* ------------------------------------------------------------------ */
/* Setup: gateway map                                                  */
/* ------------------------------------------------------------------ */

/* --iot-gateway-map: lines `tenant gateway-device device|*`, '#' comments. */
static gw_err_t load_gateway_map(gw_gateway_t *gw, const char *path, char *why, size_t whylen)
{
    FILE *f = fopen(path, "r");
    char line[3 * GW_HONO_MAX_ID + 16];
    unsigned lineno = 0;
    gw_err_t err = GW_OK;

    if (!f) {
        snprintf(why, whylen, "--iot-gateway-map %s: cannot open", path);
        return GW_ERR_CONFIG;
    }
    gw->iot_gateways = gw_hono_gateways_new();
    if (!gw->iot_gateways) {
        err = GW_ERR_NOMEM;
        goto cleanup;
    }
    while (fgets(line, sizeof(line), f)) {
        char t[GW_HONO_MAX_ID + 2], g[GW_HONO_MAX_ID + 2], d[GW_HONO_MAX_ID + 2], extra[2];
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(why, whylen, "--iot-gateway-map %s:%u: line too long", path, lineno);
            err = GW_ERR_CONFIG;
            goto cleanup;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        int n = sscanf(line, "%257s %257s %257s %1s", t, g, d, extra);
        if (n <= 0)
            continue;
        if (n != 3 || gw_hono_gateways_add(gw->iot_gateways, t, g, d) != GW_OK) {
            snprintf(why, whylen, "--iot-gateway-map %s:%u: expected `tenant gateway device|*`",
                     path, lineno);
            err = GW_ERR_CONFIG;
            goto cleanup;
        }
        /* Kept for '+' subscriptions, which need the listed devices. */
        if (gw->iot_ngwrules % 64 == 0) {
            gw_iot_gwrule_t *nr =
                realloc(gw->iot_gwrules, (gw->iot_ngwrules + 64) * sizeof(*nr));
            if (!nr) {
                err = GW_ERR_NOMEM;
                goto cleanup;
            }
            gw->iot_gwrules = nr;
        }
        gw_iot_gwrule_t *r = &gw->iot_gwrules[gw->iot_ngwrules];
        r->tenant = strdup(t);
        r->gateway = strdup(g);
        r->device = strdup(d);
        gw->iot_ngwrules++; /* counted first: teardown frees partial entries */
        if (!r->tenant || !r->gateway || !r->device) {
            err = GW_ERR_NOMEM;
            goto cleanup;
        }
    }
cleanup:
    fclose(f);
    return err;
}

/* --iot-issuer-tenant-map: lines `<issuer DN> <tenant>` (the tenant is the
 * last word: DNs hold spaces, tenants cannot). Rewritten line for line into
 * gw_auth_certmap's `<tenant> <issuer DN>` form so that its parser (UTF-8,
 * tenant syntax, duplicates, line numbers) and its lookup are reused. */
#define GW_IOT_ISSUER_MAP_MAX (1u << 20)

static gw_err_t load_issuer_map(const char *opt, const char *path, gw_auth_certmap_t **out,
                                char *why, size_t whylen)
{
    char eb[GW_AUTH_ERRBUF] = "";
    char *text = NULL, *conv = NULL;
    size_t len = 0, o = 0;
    gw_err_t err = GW_ERR_CONFIG;
    FILE *f = fopen(path, "r");

    *out = NULL;
    if (!f) {
        snprintf(why, whylen, "--%s %s: cannot open", opt, path);
        return GW_ERR_CONFIG;
    }
    /* Bounded before allocating: the file is read into a buffer of the cap. */
    text = malloc(GW_IOT_ISSUER_MAP_MAX + 1);
    if (!text) {
        err = GW_ERR_NOMEM;
        goto cleanup;
    }
    len = fread(text, 1, GW_IOT_ISSUER_MAP_MAX + 1, f);
    if (ferror(f) || len > GW_IOT_ISSUER_MAP_MAX) {
        snprintf(why, whylen, "--%s %s: %s", opt, path,
                 ferror(f) ? "read error" : "file too large");
        goto cleanup;
    }
    conv = malloc(len + 2);
    if (!conv) {
        err = GW_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t ls = 0; ls < len;) {
        const char *nl = memchr(text + ls, '\n', len - ls);
        size_t le = nl ? (size_t)(nl - text) : len, b = ls, e = le;
        while (b < e && (text[b] == ' ' || text[b] == '\t'))
            b++;
        while (e > b && (text[e - 1] == ' ' || text[e - 1] == '\t' || text[e - 1] == '\r'))
            e--;
        if (b < e && text[b] != '#') {
            size_t sp = e;
            while (sp > b && text[sp - 1] != ' ' && text[sp - 1] != '\t')
                sp--;
            /* A tenant with '=' or ',' is the end of a DN: the tenant is missing. */
            if (sp == b || memchr(text + sp, '=', e - sp) || memchr(text + sp, ',', e - sp)) {
                snprintf(why, whylen, "--%s %s: expected `<issuer DN> <tenant>`"
                         " (line \"%.*s\")", opt, path, (int)(e - b > 60 ? 60 : e - b), text + b);
                goto cleanup;
            }
            /* "<tenant> <DN>" is as long as "<DN> <tenant>". */
            memcpy(conv + o, text + sp, e - sp);
            o += e - sp;
            conv[o++] = ' ';
            memcpy(conv + o, text + b, sp - 1 - b);
            o += sp - 1 - b;
        }
        conv[o++] = '\n'; /* one output line per input line: same line numbers */
        ls = le + 1;
    }
    err = gw_auth_certmap_parse(conv, o, path, out, eb);
    if (err != GW_OK)
        snprintf(why, whylen, "--%s: %s", opt, eb);
cleanup:
    if (err == GW_ERR_NOMEM)
        snprintf(why, whylen, "--%s %s: out of memory", opt, path);
    fclose(f);
    free(text);
    free(conv);
    return err;
}

bool gw_iot_issuer_map_on(const gw_gateway_t *gw)
{
    const gw_gateway_config_t *cfg = gw->cfg;
    return cfg->iot_issuer_tenant_map && *cfg->iot_issuer_tenant_map;
}

bool gw_tls_issuer_map_on(const gw_gateway_t *gw)
{
    const gw_gateway_config_t *cfg = gw->cfg;
    return cfg->tls_issuer_tenant_map && *cfg->tls_issuer_tenant_map;
}

gw_err_t gw_iot_cert_user(gw_gateway_t *gw, bool iot, X509 *cert, const char *ident, size_t ilen,
                          char **out, size_t *outlen)
{
    gw_err_t err = GW_ERR_NOT_FOUND;

    *out = NULL;
    *outlen = 0;
    pthread_mutex_lock(&gw->auth_mu);
    const char *tenant = gw_auth_certmap_tenant(iot ? gw->iot_certmap : gw->tls_certmap,
                                                cert); /* borrowed: under the lock */
    if (tenant) {
        size_t tl = strlen(tenant);
        char *u = malloc(ilen + 1 + tl + 1);
        if (!u) {
            err = GW_ERR_NOMEM;
        } else {
            memcpy(u, ident, ilen);
            u[ilen] = '@';
            memcpy(u + ilen + 1, tenant, tl + 1);
            *out = u;
            *outlen = ilen + 1 + tl;
            err = GW_OK;
        }
    }
    pthread_mutex_unlock(&gw->auth_mu);
    return err;
}

void gw_iot_reload(gw_gateway_t *gw)
{
    char why[512] = "";
    gw_auth_certmap_t *map = NULL;

    for (int iot = 1; iot >= 0; iot--) {
        const char *path = iot ? gw->cfg->iot_issuer_tenant_map : gw->cfg->tls_issuer_tenant_map;
        if (!(iot ? gw_iot_issuer_map_on(gw) : gw_tls_issuer_map_on(gw)))
            continue;
        if (load_issuer_map(iot ? "iot-issuer-tenant-map" : "tls-issuer-tenant-map", path, &map,
                            why, sizeof(why)) != GW_OK) {
            GW_LOG_ERROR(GW_MOD, NULL,
                         "SIGHUP: issuer tenant map not reloaded, keeping the old one: %s", why);
            continue;
        }
        pthread_mutex_lock(&gw->auth_mu);
        gw_auth_certmap_t **slot = iot ? &gw->iot_certmap : &gw->tls_certmap;
        gw_auth_certmap_t *old = *slot;
        *slot = map;
        pthread_mutex_unlock(&gw->auth_mu);
        gw_auth_certmap_free(old);
        map = NULL;
        GW_LOG_INFO(GW_MOD, NULL, "SIGHUP: reloaded issuer tenant map %s", path);
    }
}

gw_err_t gw_iot_setup(gw_gateway_t *gw, char *why, size_t whylen)
{
    const gw_gateway_config_t *cfg = gw->cfg;
    memset(&gw->iot_policy, 0, sizeof(gw->iot_policy));
    gw->iot_policy.allow_unauthenticated = cfg->iot_allow_unauthenticated;
    if ((cfg->iot_listen.count || cfg->iots_listen.count) &&
        cfg->connection_mode != GW_MODE_SHARED) {
        snprintf(why, whylen, "--iot-listen/--iots-listen need --connection-mode shared");
        return GW_ERR_CONFIG;
    }
    if (cfg->iot_gateway_map && *cfg->iot_gateway_map) {
        gw_err_t err = load_gateway_map(gw, cfg->iot_gateway_map, why, whylen);
        if (err != GW_OK)
            return err;
        gw->iot_policy.may_act_for = gw_hono_gateways_allows;
        gw->iot_policy.arg = gw->iot_gateways;
    }
    if (gw_iot_issuer_map_on(gw)) {
        gw_err_t err = load_issuer_map("iot-issuer-tenant-map", cfg->iot_issuer_tenant_map,
                                       &gw->iot_certmap, why, whylen);
        if (err != GW_OK)
            return err;
    }
    if (gw_tls_issuer_map_on(gw)) {
        gw_err_t err = load_issuer_map("tls-issuer-tenant-map", cfg->tls_issuer_tenant_map,
                                       &gw->tls_certmap, why, whylen);
        if (err != GW_OK)
            return err;
    }
    return GW_OK;
}

void gw_iot_teardown(gw_gateway_t *gw)
{
    gw_hono_gateways_free(gw->iot_gateways);
    gw->iot_gateways = NULL;
    for (size_t i = 0; i < gw->iot_ngwrules; i++) {
        free(gw->iot_gwrules[i].tenant);
        free(gw->iot_gwrules[i].gateway);
        free(gw->iot_gwrules[i].device);
    }
    free(gw->iot_gwrules);
    gw->iot_gwrules = NULL;
    gw->iot_ngwrules = 0;
    gw_auth_certmap_free(gw->iot_certmap);
    gw->iot_certmap = NULL;
    gw_auth_certmap_free(gw->tls_certmap);
    gw->tls_certmap = NULL;
}

/* ------------------------------------------------------------------ */
/* CONNECT                                                             */
/* ------------------------------------------------------------------ */

/* creation-time is wall-clock time (AMQP timestamp: ms since the epoch);
 * gw_now_ms() is monotonic and only for time-outs and the request table. */
static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static gw_hono_str_t hstr(const char *p)
{
    gw_hono_str_t s = {p, p ? strlen(p) : 0};
    return s;
}

static const gw_hono_identity_t *who_of(const gw_client_t *c, gw_hono_identity_t *buf)
{
    if (!c->iot_tenant)
        return NULL;
    buf->tenant = hstr(c->iot_tenant);
    buf->device = hstr(c->iot_device);
    return buf;
}

bool gw_iot_connect(gw_client_t *c, uint8_t *rc, const char **why)
{
    const gw_gateway_config_t *cfg = c->w->gw->cfg;
    gw_hono_str_t auth_id, tenant;

    /* Hono has neither sessions nor wills: the will is ignored, the session
     * is always clean (CONNACK session-present 0). */
    if (c->has_will) {
        GW_LOG_DEBUG(GW_MOD, c->id, "IoT device: will ignored");
        free(c->will_buf);
        c->will_buf = NULL;
        memset(&c->will, 0, sizeof(c->will));
        c->has_will = false;
    }
    c->clean_session = true;
    if (!c->user) {
        if (!cfg->iot_allow_unauthenticated) {
            *rc = GW_MQTT_CONNACK_NOT_AUTHORIZED;
            *why = "IoT device without credentials (--iot-allow-unauthenticated is off)";
            return false;
        }
        return true; /* topics name tenant and device */
    }
    if (gw_hono_username_split(c->user, c->user_len, &auth_id, &tenant) != GW_OK) {
        *rc = GW_MQTT_CONNACK_BAD_CREDENTIALS;
        *why = "IoT device user name is not auth-id@tenant";
        return false;
    }
    c->iot_tenant = strndup(tenant.ptr, tenant.len);
    c->iot_device = strndup(auth_id.ptr, auth_id.len);
    if (!c->iot_tenant || !c->iot_device) {
        *rc = GW_MQTT_CONNACK_SERVER_UNAVAILABLE;
        *why = "out of memory";
        return false;
    }
    gw_iot_tstat_t *e = tstat_get(c->w, tenant.ptr, tenant.len);
    if (e && cfg->iot_tenant_max_connections > 0 &&
        __atomic_load_n(&e->conns, __ATOMIC_RELAXED) >= (uint64_t)cfg->iot_tenant_max_connections &&
        e != &c->w->iot_tenants->slots[c->w->iot_tenants->cap]) {
        *rc = GW_MQTT_CONNACK_SERVER_UNAVAILABLE;
        *why = "tenant at --iot-tenant-max-connections (per worker)";
        return false;
    }
    c->iot_tstat = e;
    if (e)
        T_ADD(e->conns, 1u);
    GW_LOG_DEBUG(GW_MOD, c->id, "IoT device %s of tenant %s", c->iot_device, c->iot_tenant);
    return true;
}

/* ------------------------------------------------------------------ */
/* North-bound sending                                                 */
/* ------------------------------------------------------------------ */

/* Send w->msg (already built, `to` set) to addr. GW_ERR_AGAIN: no credit
 * yet (nothing sent). drop_ok: QoS 0 telemetry is dropped (*dropped) when
 * the attached link has no credit, instead of waiting. */
static gw_err_t iot_send(gw_client_t *c, const char *addr, size_t alen, uint8_t qos,
                         bool drop_ok, pn_delivery_t **out, bool *dropped)
{
    gw_worker_t *w = c->w;
    gw_err_t err;

    *out = NULL;
    if (dropped)
        *dropped = false;
    const gw_route_t *route = gw_routes_match(&w->gw->routes, addr, alen);
    size_t d = route ? route->dest : 0;
    gw_dest_t *dest = gw_client_dest(c, d);
    if (!dest || !dest->up)
        return GW_ERR_AMQP;
    /* Address templates are not applied to Hono addresses: the consumers
     * expect telemetry/<tenant> etc. as is. */
    bool relay_ok = !route || !route->relay_never;
    gw_glink_t *gl = gw_publish_sender(c, d, addr, alen, qos == 2, relay_ok, &err);
    if (!gl)
        return err;
    if (pn_link_credit(gl->pn) <= 0) {
        /* A link the peer has not answered yet gets its first credit soon:
         * wait. An attached link without credit: no consumer (issue 9). */
        if (drop_ok && (pn_link_state(gl->pn) & PN_REMOTE_ACTIVE)) {
            *dropped = true;
            return GW_OK;
        }
        return GW_ERR_AGAIN;
    }
    return gw_amqp_send(dest->conn, gl->pn, w->msg, qos == 0, out);
}

/* Hono closes the connection of a device that breaks its conventions
 * (without an error subscription, which we do not offer). */
static gw_err_t refuse_publish(gw_client_t *c, const gw_mqtt_publish_t *p, const char *what,
                               const char *detail)
{
    char why[256];
    snprintf(why, sizeof(why), "IoT PUBLISH to %.*s refused: %s %s", (int)(p->topic.len > 128 ? 128 : p->topic.len),
             p->topic.ptr, what, detail);
    GW_LOG_WARN(GW_MOD, c->id, "%s", why);
    gw_client_close(c, GW_CLOSE_BRUTE, why);
    return GW_OK;
}

static gw_err_t after_send(gw_client_t *c, const gw_mqtt_publish_t *p, gw_err_t err,
                           pn_delivery_t *dlv)
{
    if (err == GW_ERR_AGAIN)
        return GW_ERR_AGAIN;
    if (err != GW_OK)
        return refuse_publish(c, p, "cannot forward:", gw_err_str(err));
    GW_STAT_INC(c->w, msgs_in[p->qos]);
    if (p->qos > 0) {
        if (dlv)
            pn_delivery_set_context(dlv, GW_DTAG(p->qos == 1 ? GW_DK_PUB1 : GW_DK_PUB2,
                                                 p->packet_id));
        if (gw_publish_track_iot(c, p, dlv) != GW_OK) {
            if (dlv)
                pn_delivery_set_context(dlv, GW_DTAG(GW_DK_NONE, 0));
            return GW_ERR_NOMEM;
        }
    }
    return GW_OK;
}

static gw_err_t publish_response(gw_client_t *c, const gw_mqtt_publish_t *p,
                                 const gw_hono_topic_t *t, const gw_hono_target_t *tgt)
{
    gw_worker_t *w = c->w;
    gw_hono_request_t *req = NULL;
    gw_hono_reason_t reason = GW_HONO_R_NONE;
    pn_delivery_t *dlv = NULL;
    gw_err_t err;

    if (c->iot_held_req && t->req_id.len == strlen(c->iot_held_id) &&
        memcmp(t->req_id.ptr, c->iot_held_id, t->req_id.len) == 0 &&
        c->iot_held_req->tenant.len == tgt->tenant.len &&
        memcmp(c->iot_held_req->tenant.ptr, tgt->tenant.ptr, tgt->tenant.len) == 0 &&
        c->iot_held_req->device.len == tgt->device.len &&
        memcmp(c->iot_held_req->device.ptr, tgt->device.ptr, tgt->device.len) == 0) {
        /* The same PUBLISH read again after waiting for credit. */
        req = c->iot_held_req;
        c->iot_held_req = NULL;
    } else if (!c->iot_reqtab ||
        gw_hono_reqtab_take(c->iot_reqtab, gw_now_ms(), t->req_id, tgt->tenant, tgt->device, &req,
                            &reason) != GW_OK) {
        /* Late (expired), duplicate or foreign response: acknowledged and
         * dropped, the device cannot do better (docs/iot-mode.md). */
        if (reason == GW_HONO_R_NONE)
            reason = GW_HONO_R_REQ_ID_UNKNOWN;
        GW_LOG_INFO(GW_MOD, c->id, "command response %.*s dropped: %s", (int)t->req_id.len,
                    t->req_id.ptr, gw_hono_reason_name(reason));
        if (p->qos == 1)
            gw_client_write_ack(c, GW_MQTT_PUBACK, p->packet_id);
        else if (p->qos == 2)
            gw_client_write_ack(c, GW_MQTT_PUBREC, p->packet_id);
        return GW_OK;
    }
    err = gw_hono_build_command_response(w->msg, req, t->status, t, p->payload.ptr,
                                         p->payload.len, wall_ms());
    if (err == GW_OK)
        err = iot_send(c, req->reply_to.ptr, req->reply_to.len, p->qos, false, &dlv, NULL);
    if (err == GW_ERR_AGAIN && t->req_id.len <= GW_HONO_REQ_ID_LEN) {
        /* The PUBLISH stays in the input and is read again once credit
         * arrives: hold the request taken out of the table until then. */
        gw_hono_request_free(c->iot_held_req);
        c->iot_held_req = req;
        memcpy(c->iot_held_id, t->req_id.ptr, t->req_id.len);
        c->iot_held_id[t->req_id.len] = '\0';
        return GW_ERR_AGAIN;
    }
    if (err == GW_ERR_AGAIN)
        err = GW_ERR_LIMIT;
    if (err == GW_OK)
        count_msg(c, tgt->tenant, GW_IOT_K_RESPONSE);
    gw_hono_request_free(req);
    return after_send(c, p, err, dlv);
}

gw_err_t gw_iot_publish(gw_client_t *c, const gw_mqtt_publish_t *p)
{
    gw_worker_t *w = c->w;
    gw_hono_topic_t *t = NULL;
    gw_hono_reason_t reason = GW_HONO_R_NONE;
    gw_hono_identity_t idbuf;
    gw_hono_target_t tgt;
    pn_delivery_t *dlv = NULL;
    char addr[GW_HONO_MAX_ID + 16];
    gw_err_t err;

    /* gw_hono_topic_t holds the decoded bag (~1.1 KiB): per worker scratch
     * would do, the stack is fine on our threads. */
    gw_hono_topic_t tbuf;
    t = &tbuf;
    err = gw_hono_topic_parse((const char *)p->topic.ptr, p->topic.len, t, &reason);
    if (err != GW_OK)
        return refuse_publish(c, p, "invalid topic:", gw_hono_reason_name(reason));
    err = gw_hono_check_qos(t->kind, p->qos, &reason);
    if (err != GW_OK)
        return refuse_publish(c, p, "QoS:", gw_hono_reason_name(reason));
    gw_hono_access_t acc =
        gw_hono_authorize(&w->gw->iot_policy, who_of(c, &idbuf), t->tenant, t->device, &tgt);
    if (acc != GW_HONO_ALLOWED)
        return refuse_publish(c, p, "not authorised:", gw_hono_access_name(acc));
    if (t->kind == GW_HONO_COMMAND_RESPONSE)
        return publish_response(c, p, t, &tgt);

    gw_hono_upload_t u;
    memset(&u, 0, sizeof(u));
    u.kind = t->kind;
    u.tenant = tgt.tenant;
    u.device = tgt.device;
    u.topic = t;
    u.orig_address.ptr = (const char *)p->topic.ptr;
    u.orig_address.len = p->topic.len;
    u.qos = p->qos;
    u.retain = p->retain;
    u.payload = p->payload.ptr;
    u.payload_len = p->payload.len;
    u.now_ms = wall_ms();
    err = gw_hono_build_upload(w->msg, &u, &reason);
    if (err != GW_OK)
        return refuse_publish(c, p, "invalid message:", gw_hono_reason_name(reason));
    int alen = snprintf(addr, sizeof(addr), "%s/%.*s",
                        t->kind == GW_HONO_EVENT ? "event" : "telemetry", (int)tgt.tenant.len,
                        tgt.tenant.ptr);
    gw_iot_tstat_t *ts = tstat_get(w, tgt.tenant.ptr, tgt.tenant.len);
    uint64_t wait_ms = 0;
    if (!tenant_take(w, ts, p->payload.len, &wait_ms)) {
        /* Back-pressure as for --publish-rate: the PUBLISH is read again. */
        gw_limits_pause(c, wait_ms);
        return GW_ERR_AGAIN;
    }
    bool dropped = false;
    err = iot_send(c, addr, (size_t)alen, p->qos, t->kind == GW_HONO_TELEMETRY && p->qos == 0,
                   &dlv, &dropped);
    if (err == GW_ERR_AGAIN)
        tenant_refund(w, ts, p->payload.len);
    if (err == GW_OK && dropped) {
        /* Issue 9: QoS 0 telemetry without a consumer is dropped and counted. */
        if (ts)
            T_ADD(ts->dropped, 1u);
        return GW_OK;
    }
    if (err == GW_OK)
        count_msg(c, tgt.tenant, t->kind == GW_HONO_EVENT ? GW_IOT_K_EVENT : GW_IOT_K_TELEMETRY);
    return after_send(c, p, err, dlv);
}

/* ------------------------------------------------------------------ */
/* Commands                                                            */
/* ------------------------------------------------------------------ */

typedef struct gw_iot_cmdsub {
    struct gw_iot_cmdsub *next;
    char *filter;          /* as subscribed (owned): the spelling of command topics */
    size_t flen;
    char *tenant, *device; /* the target (owned) */
    gw_glink_t gl;         /* receiver on command/<tenant>/<device>; gl.topic = address */
    bool ttd_pending;      /* ttd -1 not sent yet (no credit on event/<tenant>) */
    uint8_t qos;           /* granted: 0, or 1 = commands as QoS 1, settled on PUBACK */
} gw_iot_cmdsub_t;

static gw_iot_cmdsub_t *sub_of(gw_glink_t *gl)
{
    return (gw_iot_cmdsub_t *)(void *)((char *)gl - offsetof(gw_iot_cmdsub_t, gl));
}

/* ttd notification (Event API empty notification) on event/<tenant>.
 * GW_ERR_AGAIN: no credit yet. Sent unsettled; the outcome is not waited for. */
static gw_err_t send_ttd(gw_client_t *c, const gw_iot_cmdsub_t *s, int32_t ttd)
{
    char addr[GW_HONO_MAX_ID + 16];
    pn_delivery_t *dlv = NULL;
    gw_err_t err = gw_hono_build_ttd(c->w->msg, hstr(s->tenant), hstr(s->device), ttd,
                                     wall_ms());
    if (err != GW_OK)
        return err;
    int alen = snprintf(addr, sizeof(addr), "event/%s", s->tenant);
    err = iot_send(c, addr, (size_t)alen, 1, false, &dlv, NULL);
    if (err == GW_OK && dlv)
        pn_delivery_set_context(dlv, GW_DTAG(GW_DK_NONE, 0));
    return err;
}

void gw_iot_on_flow(gw_client_t *c)
{
    for (gw_iot_cmdsub_t *s = c->iot_cmds; s; s = s->next) {
        if (!s->ttd_pending)
            continue;
        gw_err_t err = send_ttd(c, s, -1);
        if (err == GW_ERR_AGAIN)
            continue;
        s->ttd_pending = false;
        if (err != GW_OK)
            GW_LOG_WARN(GW_MOD, c->id, "ttd notification for %s/%s: %s", s->tenant, s->device,
                        gw_err_str(err));
    }
}

static void sub_free(gw_client_t *c, gw_iot_cmdsub_t *s, bool notify)
{
    /* QoS 1 commands the device has not acknowledged go back to the sender
     * as modified (delivery-failed): it may redeliver them (docs/iot-mode.md). */
    gw_outbound_drop_owner(c, &s->gl, s->gl.pn ? PN_MODIFIED : 0);
    if (s->gl.pn) {
        gw_link_release(c, s->gl.pn, NULL, NULL);
        s->gl.pn = NULL;
        /* ttd=0 only after a ttd=-1 went out; best effort (no credit: skipped). */
        if (notify && !s->ttd_pending && send_ttd(c, s, 0) != GW_OK)
            GW_LOG_DEBUG(GW_MOD, c->id, "ttd=0 for %s/%s not sent", s->tenant, s->device);
    }
    free(s->gl.topic);
    free(s->filter);
    free(s->tenant);
    free(s->device);
    free(s);
}

static void write_suback(gw_client_t *c, uint16_t pid, const uint8_t *codes, size_t count)
{
    gw_mqtt_packet_t pkt;
    uint8_t stack_buf[64];
    uint8_t *buf = stack_buf;
    size_t need, written = 0;

    memset(&pkt, 0, sizeof(pkt));
    pkt.type = GW_MQTT_SUBACK;
    pkt.u.suback.packet_id = pid;
    pkt.u.suback.codes = codes;
    pkt.u.suback.count = (uint16_t)count;
    need = gw_mqtt_encoded_size(&c->mctx, &pkt);
    if (need > sizeof(stack_buf))
        buf = malloc(need);
    if (buf && need && gw_mqtt_encode(&c->mctx, &pkt, buf, need, &written) == GW_OK)
        gw_client_write(c, buf, written);
    else
        gw_client_close(c, GW_CLOSE_BRUTE, "cannot encode SUBACK");
    if (buf != stack_buf)
        free(buf);
}

static uint8_t attach_target(gw_client_t *c, const char *f, size_t flen, gw_hono_target_t tgt,
                             uint8_t granted);

/* A gateway's `command//+/req/#`: one receiver for itself and one for each
 * device its --iot-gateway-map rules LIST (command/<tenant>/<device> each,
 * so the router needs no gateway knowledge and commands stay per device).
 * A `*` rule cannot be enumerated: such a `+` filter is refused (0x80); the
 * gateway subscribes per device instead (docs/iot-mode.md). */
static uint8_t subscribe_all(gw_client_t *c, const char *f, size_t flen, gw_hono_target_t self,
                             uint8_t granted)
{
    const gw_gateway_t *gw = c->w->gw;
    size_t n = 0;

    if (!c->iot_device) {
        GW_LOG_INFO(GW_MOD, c->id, "IoT SUBSCRIBE %.*s refused: '+' needs an authenticated gateway",
                    (int)flen, f);
        return 0x80;
    }
    for (size_t i = 0; i < gw->iot_ngwrules; i++) {
        const gw_iot_gwrule_t *r = &gw->iot_gwrules[i];
        if (strcmp(r->tenant, c->iot_tenant) || strcmp(r->gateway, c->iot_device))
            continue;
        if (!strcmp(r->device, "*")) {
            GW_LOG_INFO(GW_MOD, c->id, "IoT SUBSCRIBE %.*s refused: '+' with a `*` gateway rule "
                        "(subscribe per device)", (int)flen, f);
            return 0x80;
        }
        n++;
    }
    if (n > GW_IOT_MAX_GW_DEVICES) {
        GW_LOG_INFO(GW_MOD, c->id, "IoT SUBSCRIBE %.*s refused: more than %d devices",
                    (int)flen, f, GW_IOT_MAX_GW_DEVICES);
        return 0x80;
    }
    if (attach_target(c, f, flen, self, granted) == 0x80)
        return 0x80;
    for (size_t i = 0; i < gw->iot_ngwrules; i++) {
        const gw_iot_gwrule_t *r = &gw->iot_gwrules[i];
        if (strcmp(r->tenant, c->iot_tenant) || strcmp(r->gateway, c->iot_device) ||
            !strcmp(r->device, c->iot_device))
            continue;
        gw_hono_target_t t = self;
        t.device = hstr(r->device);
        t.via_gateway = true;
        t.gateway = self.device;
        if (attach_target(c, f, flen, t, granted) == 0x80)
            GW_LOG_WARN(GW_MOD, c->id, "IoT SUBSCRIBE %.*s: no receiver for device %s",
                        (int)flen, f, r->device);
    }
    return granted;
}

/* One SUBSCRIBE filter: granted QoS (0 or 1) or 0x80. */
static uint8_t subscribe_one(gw_client_t *c, const char *f, size_t flen, uint8_t req_qos)
{
    uint8_t granted = req_qos > 1 ? 1 : req_qos; /* MQTT-3.9.3: may grant less than asked */
    gw_worker_t *w = c->w;
    gw_hono_cmd_filter_t cf;
    gw_hono_reason_t reason = GW_HONO_R_NONE;
    gw_hono_identity_t idbuf;
    gw_hono_target_t tgt;

    if (gw_hono_cmd_filter_parse(f, flen, &cf, &reason) != GW_OK) {
        GW_LOG_INFO(GW_MOD, c->id, "IoT SUBSCRIBE %.*s refused: %s", (int)(flen > 128 ? 128 : flen), f,
                    gw_hono_reason_name(reason ? reason : GW_HONO_R_FILTER));
        return 0x80;
    }
    gw_hono_access_t acc =
        gw_hono_authorize(&w->gw->iot_policy, who_of(c, &idbuf), cf.tenant, cf.device, &tgt);
    if (acc != GW_HONO_ALLOWED) {
        GW_LOG_INFO(GW_MOD, c->id, "IoT SUBSCRIBE %.*s refused: %s", (int)flen, f,
                    gw_hono_access_name(acc));
        return 0x80;
    }
    if (cf.all_devices)
        return subscribe_all(c, f, flen, tgt, granted);
    return attach_target(c, f, flen, tgt, granted);
}

/* One receiver per target device: a second spelling replaces the first. */
static uint8_t attach_target(gw_client_t *c, const char *f, size_t flen, gw_hono_target_t tgt,
                             uint8_t granted)
{
    gw_worker_t *w = c->w;
    char name[1400];
    gw_iot_cmdsub_t *s = NULL;
    for (s = c->iot_cmds; s; s = s->next) {
        if (strlen(s->tenant) == tgt.tenant.len && !memcmp(s->tenant, tgt.tenant.ptr, tgt.tenant.len) &&
            strlen(s->device) == tgt.device.len && !memcmp(s->device, tgt.device.ptr, tgt.device.len)) {
            char *nf = strndup(f, flen);
            if (!nf)
                return 0x80;
            free(s->filter);
            s->filter = nf;
            s->flen = flen;
            s->qos = granted;
            return granted;
        }
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return 0x80;
    s->filter = strndup(f, flen);
    s->flen = flen;
    s->qos = granted;
    s->tenant = strndup(tgt.tenant.ptr, tgt.tenant.len);
    s->device = strndup(tgt.device.ptr, tgt.device.len);
    size_t alen = 9 + tgt.tenant.len + tgt.device.len;
    s->gl.topic = malloc(alen + 1);
    if (!s->filter || !s->tenant || !s->device || !s->gl.topic)
        goto fail;
    snprintf(s->gl.topic, alen + 1, "command/%s/%s", s->tenant, s->device);
    size_t d = gw_routes_lookup(&w->gw->routes, s->gl.topic, alen);
    pn_session_t *ssn = gw_client_session(c, d);
    if (!ssn)
        goto fail;
    /* Unique on the connection: client ids are unique in this process. */
    if ((size_t)snprintf(name, sizeof(name), "$mqtt.cmd.%s.%s", c->id, s->gl.topic) >=
        sizeof(name))
        goto fail; /* a truncated name could collide: very long client id */
    s->gl.pn = gw_amqp_receiver_open(ssn, name, s->gl.topic, PN_SND_MIXED, PN_RCV_FIRST,
                                     GW_IOT_CMD_CREDIT);
    if (!s->gl.pn)
        goto fail;
    s->gl.client = c;
    s->gl.role = GW_LINK_COMMAND;
    s->gl.dest = (uint8_t)d;
    pn_link_set_context(s->gl.pn, &s->gl);
    s->next = c->iot_cmds;
    c->iot_cmds = s;
    gw_err_t err = send_ttd(c, s, -1);
    s->ttd_pending = err == GW_ERR_AGAIN;
    if (err != GW_OK && err != GW_ERR_AGAIN)
        GW_LOG_WARN(GW_MOD, c->id, "ttd notification: %s", gw_err_str(err));
    return granted;
fail:
    sub_free(c, s, false);
    return 0x80;
}

gw_err_t gw_iot_subscribe(gw_client_t *c, const gw_mqtt_subscribe_t *p)
{
    gw_mqtt_topics_iter_t it;
    gw_mqtt_str_t f;
    uint8_t qos, stack_codes[32], *codes = stack_codes;
    size_t n = 0;

    if (p->topics.count > sizeof(stack_codes)) {
        codes = malloc(p->topics.count);
        if (!codes)
            return GW_ERR_NOMEM;
    }
    gw_mqtt_topics_iter_init(&it, &p->topics);
    /* Commands go to the device at the granted QoS (0 or 1). */
    while (gw_mqtt_topics_next(&it, &f, &qos))
        codes[n++] = subscribe_one(c, (const char *)f.ptr, f.len, qos);
    write_suback(c, p->packet_id, codes, n);
    gw_client_flush_amqp(c);
    if (codes != stack_codes)
        free(codes);
    return GW_OK;
}

gw_err_t gw_iot_unsubscribe(gw_client_t *c, const gw_mqtt_unsubscribe_t *p)
{
    gw_mqtt_topics_iter_t it;
    gw_mqtt_str_t f;
    uint8_t qos;

    gw_mqtt_topics_iter_init(&it, &p->topics);
    while (gw_mqtt_topics_next(&it, &f, &qos)) {
        /* A gateway's '+' filter has one receiver per device: all go. */
        for (gw_iot_cmdsub_t **pp = &c->iot_cmds; *pp;) {
            gw_iot_cmdsub_t *s = *pp;
            if (s->flen == f.len && memcmp(s->filter, f.ptr, f.len) == 0) {
                *pp = s->next;
                sub_free(c, s, true);
            } else {
                pp = &s->next;
            }
        }
    }
    gw_client_write_ack(c, GW_MQTT_UNSUBACK, p->packet_id);
    gw_client_flush_amqp(c);
    return GW_OK;
}

static void cmd_refuse(gw_glink_t *gl, pn_delivery_t *dlv, gw_err_t err, const char *why)
{
    gw_client_t *c = gl->client;
    GW_LOG_WARN(GW_MOD, c->id, "command on %s refused: %s %s", gl->topic, gw_err_name(err), why);
    gw_amqp_settle(dlv, PN_REJECTED,
                   err == GW_ERR_LIMIT ? "amqp:link:message-size-exceeded"
                                       : gw_err_amqp_condition(err),
                   why);
}

void gw_iot_on_command(gw_client_t *c, gw_glink_t *gl, pn_delivery_t *dlv)
{
    gw_worker_t *w = c->w;
    gw_iot_cmdsub_t *s = sub_of(gl);
    gw_hono_command_t cmd;
    gw_hono_cmd_filter_t cf;
    gw_hono_reason_t reason = GW_HONO_R_NONE;
    char req_id[GW_HONO_REQ_ID_LEN + 1] = "";
    char stack_topic[512], *topic = stack_topic;
    uint8_t hdr[GW_MQTT_PUBLISH_HEADER_MAX(sizeof(stack_topic))]; /* no allocation usually */
    size_t tlen = 0;
    bool took_req = false, hold = false;
    uint16_t pid = 0;

    if (pn_delivery_partial(dlv) || !pn_delivery_readable(dlv))
        return;
    gw_err_t err = gw_amqp_recv(NULL, dlv, w->msg, GW_IOT_CMD_MAX_SIZE);
    if (err == GW_ERR_AGAIN)
        return;
    if (err != GW_OK) {
        cmd_refuse(gl, dlv, err, gw_err_str(err));
        goto credit;
    }
    err = gw_hono_command_decode(w->msg, &cmd, &reason);
    if (err != GW_OK) {
        cmd_refuse(gl, dlv, err, gw_hono_reason_name(reason));
        goto credit;
    }
    if (cmd.tenant.len != strlen(s->tenant) || memcmp(cmd.tenant.ptr, s->tenant, cmd.tenant.len) ||
        cmd.device.len != strlen(s->device) || memcmp(cmd.device.ptr, s->device, cmd.device.len)) {
        /* Tenant isolation: only commands addressed to this link's device. */
        cmd_refuse(gl, dlv, GW_ERR_SPEC_FIELD, gw_hono_reason_name(GW_HONO_R_CMD_ADDRESS));
        goto credit;
    }
    if (!cmd.one_way) {
        if (!c->iot_reqtab &&
            !(c->iot_reqtab = gw_hono_reqtab_new(GW_IOT_REQTAB_MAX, GW_IOT_REQ_TTL_MS))) {
            gw_amqp_settle(dlv, PN_RELEASED, NULL, NULL);
            goto credit;
        }
        err = gw_hono_reqtab_add(c->iot_reqtab, gw_now_ms(), &cmd, req_id, &reason);
        if (err != GW_OK) {
            GW_LOG_WARN(GW_MOD, c->id, "command released: %s", gw_hono_reason_name(reason));
            gw_amqp_settle(dlv, PN_RELEASED, NULL, NULL);
            goto credit;
        }
        took_req = true;
    }
    if (gw_hono_cmd_filter_parse(s->filter, s->flen, &cf, &reason) != GW_OK) {
        gw_amqp_settle(dlv, PN_RELEASED, NULL, NULL);
        goto credit;
    }
    gw_hono_str_t rid = {req_id, strlen(req_id)};
    gw_hono_str_t me = c->iot_device ? hstr(c->iot_device) : hstr(s->device);
    err = gw_hono_command_topic(&cf, me, &cmd, rid, stack_topic, sizeof(stack_topic), &tlen);
    if (err == GW_ERR_NOSPACE && tlen <= 65535) {
        topic = malloc(tlen + 1);
        err = topic ? gw_hono_command_topic(&cf, me, &cmd, rid, topic, tlen + 1, &tlen)
                    : GW_ERR_NOMEM;
    }
    if (err == GW_OK && (tlen > 65535 || cmd.payload_len > GW_MQTT_MAX_REMAINING_LENGTH - tlen - 2))
        err = GW_ERR_LIMIT;
    if (err != GW_OK) {
        cmd_refuse(gl, dlv, err, "command topic");
        if (took_req) {
            gw_hono_request_t *r = NULL;
            if (gw_hono_reqtab_take(c->iot_reqtab, gw_now_ms(), rid, cmd.tenant, cmd.device, &r,
                                    NULL) == GW_OK)
                gw_hono_request_free(r);
        }
        goto credit;
    }
    /* PUBLISH at the granted QoS: header, then the payload straight from
     * proton's buffer. QoS 1: the delivery stays unsettled (holding one unit
     * of the link's credit) until the device's PUBACK; a pre-settled
     * command cannot be acknowledged and goes at QoS 0. */
    gw_mqtt_publish_t mp;
    size_t hlen = 0;
    memset(&mp, 0, sizeof(mp));
    mp.topic.ptr = topic;
    mp.topic.len = (uint16_t)tlen;
    if (s->qos && !pn_delivery_settled(dlv)) {
        err = gw_outbound_track(c, dlv, gl, &pid);
        if (err != GW_OK) {
            GW_LOG_WARN(GW_MOD, c->id, "command released: %s", gw_err_str(err));
            gw_amqp_settle(dlv, PN_RELEASED, NULL, NULL);
            goto credit_free;
        }
        mp.qos = 1;
        mp.packet_id = pid;
    }
    uint8_t *hb = hdr;
    size_t hcap = GW_MQTT_PUBLISH_HEADER_MAX(tlen);
    uint8_t *heap = NULL;
    if (hcap > sizeof(hdr)) {
        heap = malloc(hcap);
        hb = heap;
    } else {
        hcap = sizeof(hdr);
    }
    if (!hb || gw_mqtt_encode_publish_header(&mp, (uint32_t)cmd.payload_len, hb, hcap, &hlen) !=
                   GW_OK) {
        free(heap);
        if (pid)
            gw_outbound_untrack(c, pid);
        gw_amqp_settle(dlv, PN_RELEASED, NULL, NULL);
        goto credit_free;
    }
    gw_client_write(c, hb, hlen);
    if (cmd.payload_len)
        gw_client_write(c, cmd.payload, cmd.payload_len);
    free(heap);
    GW_STAT_INC(w, msgs_out[mp.qos]);
    count_msg(c, cmd.tenant, GW_IOT_K_COMMAND);
    if (pid)
        hold = true; /* settled accepted and credit given back on PUBACK */
    else
        gw_amqp_settle(dlv, PN_ACCEPTED, NULL, NULL);
credit_free:
    if (topic != stack_topic)
        free(topic);
credit:
    if (gl->pn && !hold)
        pn_link_flow(gl->pn, 1);
}

void gw_iot_on_puback(gw_client_t *c, pn_delivery_t *dlv, void *owner)
{
    gw_glink_t *gl = owner;
    (void)c;
    gw_amqp_settle(dlv, PN_ACCEPTED, NULL, NULL);
    if (gl->pn)
        pn_link_flow(gl->pn, 1);
}

/* ------------------------------------------------------------------ */
/* Close                                                               */
/* ------------------------------------------------------------------ */

void gw_iot_forget_dest(gw_client_t *c, size_t d)
{
    for (gw_iot_cmdsub_t *s = c->iot_cmds; s; s = s->next)
        if (s->gl.pn && s->gl.dest == d) {
            gw_outbound_drop_owner(c, &s->gl, 0); /* gone with the connection */
            pn_link_set_context(s->gl.pn, NULL);
            s->gl.pn = NULL;
        }
}

void gw_iot_close(gw_client_t *c)
{
    while (c->iot_cmds) {
        gw_iot_cmdsub_t *s = c->iot_cmds;
        c->iot_cmds = s->next;
        sub_free(c, s, true);
    }
    gw_hono_reqtab_free(c->iot_reqtab);
    c->iot_reqtab = NULL;
    gw_hono_request_free(c->iot_held_req);
    c->iot_held_req = NULL;
    if (c->iot_tstat)
        T_ADD(c->iot_tstat->conns, (uint64_t)-1);
    c->iot_tstat = NULL;
    free(c->iot_tenant);
    free(c->iot_device);
    c->iot_tenant = c->iot_device = NULL;
}
