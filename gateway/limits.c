/*
 * limits.c - resource limits that protect the gateway and the other clients
 * (issue 7): connection counts (global, per source IP) and the per-client
 * PUBLISH rate. Each refusal is counted (metrics) and logged (rate-limited).
 *
 * Connection counts are shared by the workers: the global one is an atomic,
 * the per-IP one a small hash table under a mutex, touched only on accept
 * and on free (never on the message path).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "gateway.h"

#define GW_IP_BUCKETS 4096

typedef struct gw_ip_count {
    struct gw_ip_count *next;
    uint32_t n;
    char ip[48];
} gw_ip_count_t;

static size_t ip_hash(const char *s)
{
    size_t h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h % GW_IP_BUCKETS;
}

/*
 * --auth-fail-limit: failed logins per source address in a fixed window. A
 * set-associative table of GW_AF_SETS x GW_AF_WAYS entries under one mutex
 * (touched only by CONNECTs that carry a user name): its memory is bounded
 * whatever the number of addresses; a new address takes an empty or
 * expired way, else the way whose window started first. IPv6 addresses
 * count by /64 (one host usually holds a whole /64).
 */
#define GW_AF_SETS 1024
#define GW_AF_WAYS 4

typedef struct gw_af_entry {
    uint64_t start_ms; /* window start; 0 = empty */
    uint32_t fails;
    bool logged; /* the block was logged */
    char key[64];
} gw_af_entry_t;

struct gw_authfail {
    pthread_mutex_t mu;
    gw_af_entry_t e[GW_AF_SETS][GW_AF_WAYS];
};

static void af_key(const gw_client_t *c, char *key, size_t keylen)
{
    struct in6_addr a6;
    char buf[INET6_ADDRSTRLEN];
    size_t n = strlen(c->ip);
    if (n > 2 && c->ip[0] == '[' && n - 2 < sizeof(buf)) {
        memcpy(buf, c->ip + 1, n - 2);
        buf[n - 2] = '\0';
        if (inet_pton(AF_INET6, buf, &a6) == 1) {
            memset(a6.s6_addr + 8, 0, 8);
            if (inet_ntop(AF_INET6, &a6, buf, sizeof(buf))) {
                snprintf(key, keylen, "%s/64", buf);
                return;
            }
        }
    }
    snprintf(key, keylen, "%s", c->ip);
}

/* The entry of key (created if create), under af->mu. */
static gw_af_entry_t *af_find(struct gw_authfail *af, const char *key, uint64_t now,
                              uint64_t window, bool create)
{
    size_t h = 5381;
    for (const char *p = key; *p; p++)
        h = h * 33 + (unsigned char)*p;
    gw_af_entry_t *set = af->e[h % GW_AF_SETS], *victim = NULL;
    for (int i = 0; i < GW_AF_WAYS; i++) {
        gw_af_entry_t *e = &set[i];
        bool live = e->start_ms && now - e->start_ms < window;
        if (live && strcmp(e->key, key) == 0)
            return e;
        if (!live) {
            if (!victim || victim->start_ms)
                victim = e; /* an empty or expired way */
        } else if (!victim || (victim->start_ms && e->start_ms < victim->start_ms)) {
            victim = e;
        }
    }
    if (!create)
        return NULL;
    memset(victim, 0, sizeof(*victim));
    snprintf(victim->key, sizeof(victim->key), "%s", key);
    victim->start_ms = now ? now : 1;
    return victim;
}

bool gw_limits_auth_blocked(gw_client_t *c)
{
    gw_gateway_t *gw = c->w->gw;
    struct gw_authfail *af = gw->authfail;
    char key[sizeof(((gw_af_entry_t *)0)->key)];
    if (!af)
        return false;
    af_key(c, key, sizeof(key));
    pthread_mutex_lock(&af->mu);
    gw_af_entry_t *e = af_find(af, key, gw_now_ms(), (uint64_t)gw->cfg->auth_fail_window_ms,
                               false);
    bool blocked = e && e->fails >= (uint64_t)gw->cfg->auth_fail_limit;
    pthread_mutex_unlock(&af->mu);
    return blocked;
}

void gw_limits_auth_failed(gw_client_t *c)
{
    gw_gateway_t *gw = c->w->gw;
    struct gw_authfail *af = gw->authfail;
    char key[sizeof(((gw_af_entry_t *)0)->key)];
    GW_STAT_INC(c->w, auth_failed);
    if (!af)
        return;
    af_key(c, key, sizeof(key));
    uint64_t now = gw_now_ms();
    pthread_mutex_lock(&af->mu);
    gw_af_entry_t *e =
        af_find(af, key, now, (uint64_t)gw->cfg->auth_fail_window_ms, true);
    e->fails++;
    bool log = e->fails >= (uint64_t)gw->cfg->auth_fail_limit && !e->logged;
    uint64_t left = e->start_ms + (uint64_t)gw->cfg->auth_fail_window_ms - now;
    if (log)
        e->logged = true;
    pthread_mutex_unlock(&af->mu);
    if (log)
        GW_LOG_WARN(GW_MOD, key,
                    "%lld failed logins: CONNECTs from this address refused (CONNACK 5) "
                    "for %llu ms, except with credentials verified recently",
                    (long long)gw->cfg->auth_fail_limit, (unsigned long long)left);
}

gw_err_t gw_limits_init(gw_gateway_t *gw)
{
    pthread_mutex_init(&gw->ip_mu, NULL);
    if (gw->cfg->auth_fail_limit > 0 && gw->cfg->password_file && *gw->cfg->password_file) {
        gw->authfail = calloc(1, sizeof(*gw->authfail));
        if (!gw->authfail)
            return GW_ERR_NOMEM;
        pthread_mutex_init(&gw->authfail->mu, NULL);
    }
    if (gw->cfg->max_connections_per_ip > 0) {
        gw->ip_tab = calloc(GW_IP_BUCKETS, sizeof(*gw->ip_tab));
        if (!gw->ip_tab)
            return GW_ERR_NOMEM;
    }
    return GW_OK;
}

void gw_limits_cleanup(gw_gateway_t *gw)
{
    if (gw->authfail) {
        pthread_mutex_destroy(&gw->authfail->mu);
        free(gw->authfail);
        gw->authfail = NULL;
    }
    if (gw->ip_tab) {
        for (size_t i = 0; i < GW_IP_BUCKETS; i++) {
            gw_ip_count_t *e = gw->ip_tab[i];
            while (e) {
                gw_ip_count_t *n = e->next;
                free(e);
                e = n;
            }
        }
        free(gw->ip_tab);
        gw->ip_tab = NULL;
    }
    pthread_mutex_destroy(&gw->ip_mu);
}

static void log_refusal(gw_client_t *c, const char *why)
{
    static __thread uint64_t last_ms;
    uint64_t now = gw_now_ms();
    if (last_ms == 0 || now - last_ms >= 1000) {
        GW_LOG_WARN(GW_MOD, c->peer, "connection refused: %s (further refusals within 1 s not logged)",
                    why);
        last_ms = now;
    }
}

bool gw_limits_conn_take(gw_client_t *c)
{
    gw_gateway_t *gw = c->w->gw;
    const gw_gateway_config_t *cfg = gw->cfg;

    uint64_t n = __atomic_add_fetch(&gw->nconn, 1, __ATOMIC_RELAXED);
    if (cfg->max_connections > 0 && n > (uint64_t)cfg->max_connections) {
        __atomic_sub_fetch(&gw->nconn, 1, __ATOMIC_RELAXED);
        GW_STAT_INC(c->w, conn_refused[GW_LIM_MAX_CONN]);
        log_refusal(c, "max-connections reached");
        return false;
    }
    if (gw->ip_tab) {
        bool ok = true;
        size_t h = ip_hash(c->ip);
        pthread_mutex_lock(&gw->ip_mu);
        gw_ip_count_t *e = gw->ip_tab[h];
        while (e && strcmp(e->ip, c->ip) != 0)
            e = e->next;
        if (!e && (e = calloc(1, sizeof(*e)))) {
            snprintf(e->ip, sizeof(e->ip), "%s", c->ip);
            e->next = gw->ip_tab[h];
            gw->ip_tab[h] = e;
        }
        if (!e || e->n >= (uint64_t)cfg->max_connections_per_ip)
            ok = false;
        else
            e->n++;
        pthread_mutex_unlock(&gw->ip_mu);
        if (!ok) {
            __atomic_sub_fetch(&gw->nconn, 1, __ATOMIC_RELAXED);
            GW_STAT_INC(c->w, conn_refused[GW_LIM_PER_IP]);
            log_refusal(c, "max-connections-per-ip reached");
            return false;
        }
    }
    c->counted_conn = true;
    return true;
}

void gw_limits_conn_release(gw_client_t *c)
{
    gw_gateway_t *gw = c->w->gw;
    if (!c->counted_conn)
        return;
    c->counted_conn = false;
    __atomic_sub_fetch(&gw->nconn, 1, __ATOMIC_RELAXED);
    if (!gw->ip_tab)
        return;
    size_t h = ip_hash(c->ip);
    pthread_mutex_lock(&gw->ip_mu);
    gw_ip_count_t **pp = &gw->ip_tab[h];
    while (*pp && strcmp((*pp)->ip, c->ip) != 0)
        pp = &(*pp)->next;
    if (*pp && --(*pp)->n == 0) {
        gw_ip_count_t *e = *pp;
        *pp = e->next;
        free(e);
    }
    pthread_mutex_unlock(&gw->ip_mu);
}

static void rate_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_client_t *c = arg;
    c->blocked_rate = false;
    gw_client_resume(c);
}

bool gw_limits_publish_token(gw_client_t *c)
{
    const gw_gateway_config_t *cfg = c->w->gw->cfg;
    if (cfg->publish_rate <= 0)
        return true;
    double rate = (double)cfg->publish_rate;
    double burst = cfg->publish_burst > 0 ? (double)cfg->publish_burst : rate;
    uint64_t now = gw_now_ms();
    if (c->tokens_ms == 0) {
        c->tokens = burst;
    } else {
        c->tokens += (double)(now - c->tokens_ms) * rate / 1000.0;
        if (c->tokens > burst)
            c->tokens = burst;
    }
    c->tokens_ms = now;
    if (c->tokens >= 1.0) {
        c->tokens -= 1.0;
        return true;
    }
    /* Back-pressure, not a disconnect: stop reading until one token is back. */
    if (!c->rate_ev && !(c->rate_ev = evtimer_new(c->w->base, rate_cb, c)))
        return true; /* cannot pause: let it through rather than stall forever */
    uint64_t wait_ms = (uint64_t)((1.0 - c->tokens) * 1000.0 / rate) + 1;
    struct timeval tv = {(time_t)(wait_ms / 1000), (suseconds_t)((wait_ms % 1000) * 1000)};
    evtimer_add(c->rate_ev, &tv);
    c->blocked_rate = true;
    GW_STAT_INC(c->w, rate_limited);
    return false;
}

void gw_limits_pause(gw_client_t *c, uint64_t wait_ms)
{
    if (!c->rate_ev && !(c->rate_ev = evtimer_new(c->w->base, rate_cb, c)))
        return; /* cannot pause: the caller's GW_ERR_AGAIN resumes on the next event */
    struct timeval tv = {(time_t)(wait_ms / 1000), (suseconds_t)((wait_ms % 1000) * 1000)};
    evtimer_add(c->rate_ev, &tv);
    c->blocked_rate = true;
    GW_STAT_INC(c->w, rate_limited);
}

void gw_limits_publish_refund(gw_client_t *c)
{
    if (c->w->gw->cfg->publish_rate > 0)
        c->tokens += 1.0;
}

/* ------------------------------------------------------------------ */
/* Subscription set: sorted array of the client's filters (owned copies) */
/* ------------------------------------------------------------------ */

static int cmp_filter(const char *s, const char *f, size_t len)
{
    size_t sl = strlen(s);
    int r = memcmp(s, f, sl < len ? sl : len);
    return r ? r : (sl < len ? -1 : sl > len ? 1 : 0);
}

/* Index of f, or where it would be inserted (*found false). */
static size_t subset_find(const gw_client_t *c, const char *f, size_t len, bool *found)
{
    size_t lo = 0, hi = c->nsubset;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = cmp_filter(c->subset[mid], f, len);
        if (r == 0) {
            *found = true;
            return mid;
        }
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

bool gw_subset_has(const gw_client_t *c, const char *f, size_t len)
{
    bool found;
    subset_find(c, f, len, &found);
    return found;
}

gw_err_t gw_subset_add(gw_client_t *c, const char *f, size_t len)
{
    bool found;
    size_t i = subset_find(c, f, len, &found);
    if (found)
        return GW_OK;
    if (c->nsubset == c->capsubset) {
        size_t cap = c->capsubset ? c->capsubset * 2 : 8;
        char **n = realloc(c->subset, cap * sizeof(*n));
        if (!n)
            return GW_ERR_NOMEM;
        c->subset = n;
        c->capsubset = cap;
    }
    char *s = strndup(f, len);
    if (!s)
        return GW_ERR_NOMEM;
    memmove(&c->subset[i + 1], &c->subset[i], (c->nsubset - i) * sizeof(*c->subset));
    c->subset[i] = s;
    c->nsubset++;
    return GW_OK;
}

void gw_subset_remove(gw_client_t *c, const char *f, size_t len)
{
    bool found;
    size_t i = subset_find(c, f, len, &found);
    if (!found)
        return;
    free(c->subset[i]);
    memmove(&c->subset[i], &c->subset[i + 1], (c->nsubset - i - 1) * sizeof(*c->subset));
    c->nsubset--;
}

void gw_subset_free(gw_client_t *c)
{
    for (size_t i = 0; i < c->nsubset; i++)
        free(c->subset[i]);
    free(c->subset);
    c->subset = NULL;
    c->nsubset = c->capsubset = 0;
}

bool gw_limits_subscribe_ok(gw_client_t *c, const char *f, size_t len)
{
    int64_t max = c->w->gw->cfg->max_subscriptions;
    if (gw_subset_has(c, f, len))
        return true; /* a re-subscription replaces the old one (MQTT-3.8.4-3) */
    if (max > 0 && c->nsubset >= (size_t)max) {
        GW_STAT_INC(c->w, subs_limited);
        if (!c->subs_limit_logged) {
            /* once per client: a flood must not flood the log (the counter counts all) */
            c->subs_limit_logged = true;
            GW_LOG_INFO(GW_MOD, gw_client_name(c),
                        "SUBSCRIBE \"%.*s\" refused: max-subscriptions-per-client (%lld) reached",
                        (int)(len > 200 ? 200 : len), f, (long long)max);
        }
        return false;
    }
    return gw_subset_add(c, f, len) == GW_OK;
}
