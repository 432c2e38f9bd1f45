/*
 * hono_identity.c - who may publish or subscribe for which device, and the
 * gateway rule table (tenant, gateway) -> devices | "*".
 */
#include "gw/hono.h"

#include <stdlib.h>
#include <string.h>

#include "hono/hono_internal.h"

const char *gw_hono_access_name(gw_hono_access_t a)
{
    switch (a) {
    case GW_HONO_ALLOWED:
        return "allowed";
    case GW_HONO_DENIED_AUTH_REQUIRED:
        return "auth-required";
    case GW_HONO_DENIED_IDS_MISSING:
        return "ids-missing";
    case GW_HONO_DENIED_TENANT:
        return "tenant-mismatch";
    case GW_HONO_DENIED_DEVICE:
        return "not-a-gateway-for-device";
    }
    return "unknown";
}

gw_hono_access_t gw_hono_authorize(const gw_hono_policy_t *policy, const gw_hono_identity_t *who,
                                   gw_hono_str_t tenant, gw_hono_str_t device,
                                   gw_hono_target_t *out)
{
    gw_hono_target_t t = {0};

    if (who == NULL) {
        /* unauthenticated: only when configured, and the topic must say
         * exactly which device of which tenant it is */
        if (policy == NULL || !policy->allow_unauthenticated)
            return GW_HONO_DENIED_AUTH_REQUIRED;
        if (tenant.len == 0 || device.len == 0)
            return GW_HONO_DENIED_IDS_MISSING;
        t.tenant = tenant;
        t.device = device;
    } else {
        /* tenants never see each other's traffic, gateway rules or not */
        if (tenant.len != 0 && !gw_hono__str_eq(tenant, who->tenant))
            return GW_HONO_DENIED_TENANT;
        t.tenant = who->tenant;
        if (device.len == 0 || gw_hono__str_eq(device, who->device)) {
            t.device = who->device;
        } else {
            if (policy == NULL || policy->may_act_for == NULL ||
                !policy->may_act_for(policy->arg, who->tenant, who->device, device))
                return GW_HONO_DENIED_DEVICE;
            t.device = device;
            t.via_gateway = true;
            t.gateway = who->device;
        }
    }
    if (out)
        *out = t;
    return GW_HONO_ALLOWED;
}

/* ------------------------------------------------------------------ */
/* Gateway rule table: chained hash over "tenant\0gateway\0device".     */
/* ------------------------------------------------------------------ */

typedef struct gw_rule {
    struct gw_rule *next;
    uint64_t hash;
    size_t len;      /* of key, NULs included */
    char key[];      /* tenant \0 gateway \0 device */
} gw_rule_t;

struct gw_hono_gateways {
    gw_rule_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
};

static uint64_t fnv1a(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t rule_hash(gw_hono_str_t tenant, gw_hono_str_t gw, gw_hono_str_t dev)
{
    uint64_t h = 14695981039346656037ull;
    h = fnv1a(h, tenant.ptr, tenant.len);
    h = fnv1a(h, "", 1);
    h = fnv1a(h, gw.ptr, gw.len);
    h = fnv1a(h, "", 1);
    return fnv1a(h, dev.ptr, dev.len);
}

static bool rule_is(const gw_rule_t *r, gw_hono_str_t tenant, gw_hono_str_t gw,
                    gw_hono_str_t dev)
{
    const char *k = r->key;
    if (r->len != tenant.len + gw.len + dev.len + 3)
        return false;
    if (memcmp(k, tenant.ptr, tenant.len) != 0 || k[tenant.len] != '\0')
        return false;
    k += tenant.len + 1;
    if (memcmp(k, gw.ptr, gw.len) != 0 || k[gw.len] != '\0')
        return false;
    k += gw.len + 1;
    return memcmp(k, dev.ptr, dev.len) == 0 && k[dev.len] == '\0';
}

static bool lookup(const gw_hono_gateways_t *g, gw_hono_str_t tenant, gw_hono_str_t gw,
                   gw_hono_str_t dev)
{
    uint64_t h = rule_hash(tenant, gw, dev);
    for (const gw_rule_t *r = g->buckets[h & (g->nbuckets - 1)]; r; r = r->next)
        if (r->hash == h && rule_is(r, tenant, gw, dev))
            return true;
    return false;
}

gw_hono_gateways_t *gw_hono_gateways_new(void)
{
    gw_hono_gateways_t *g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    g->nbuckets = 16;
    g->buckets = calloc(g->nbuckets, sizeof *g->buckets);
    if (g->buckets == NULL) {
        free(g);
        return NULL;
    }
    return g;
}

void gw_hono_gateways_free(gw_hono_gateways_t *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < g->nbuckets; i++) {
        gw_rule_t *r = g->buckets[i];
        while (r) {
            gw_rule_t *next = r->next;
            free(r);
            r = next;
        }
    }
    free(g->buckets);
    free(g);
}

static gw_err_t grow(gw_hono_gateways_t *g)
{
    size_t nb = g->nbuckets * 2;
    gw_rule_t **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return GW_ERR_NOMEM;
    for (size_t i = 0; i < g->nbuckets; i++) {
        gw_rule_t *r = g->buckets[i];
        while (r) {
            gw_rule_t *next = r->next;
            r->next = b[r->hash & (nb - 1)];
            b[r->hash & (nb - 1)] = r;
            r = next;
        }
    }
    free(g->buckets);
    g->buckets = b;
    g->nbuckets = nb;
    return GW_OK;
}

gw_err_t gw_hono_gateways_add(gw_hono_gateways_t *g, const char *tenant, const char *gateway,
                              const char *device)
{
    if (g == NULL || tenant == NULL || gateway == NULL || device == NULL || !*tenant ||
        !*gateway || !*device)
        return GW_ERR_INVAL;
    gw_hono_str_t t = {tenant, strlen(tenant)}, gw = {gateway, strlen(gateway)},
                  d = {device, strlen(device)};
    if (t.len > GW_HONO_MAX_ID || gw.len > GW_HONO_MAX_ID || d.len > GW_HONO_MAX_ID)
        return GW_ERR_LIMIT;
    if (lookup(g, t, gw, d))
        return GW_OK;
    if (g->count >= g->nbuckets && grow(g) != GW_OK)
        return GW_ERR_NOMEM;
    size_t klen = t.len + gw.len + d.len + 3;
    gw_rule_t *r = malloc(sizeof *r + klen);
    if (r == NULL)
        return GW_ERR_NOMEM;
    r->hash = rule_hash(t, gw, d);
    r->len = klen;
    memcpy(r->key, t.ptr, t.len + 1);
    memcpy(r->key + t.len + 1, gw.ptr, gw.len + 1);
    memcpy(r->key + t.len + gw.len + 2, d.ptr, d.len + 1);
    r->next = g->buckets[r->hash & (g->nbuckets - 1)];
    g->buckets[r->hash & (g->nbuckets - 1)] = r;
    g->count++;
    return GW_OK;
}

bool gw_hono_gateways_allows(void *arg, gw_hono_str_t tenant, gw_hono_str_t gateway,
                             gw_hono_str_t device)
{
    const gw_hono_gateways_t *g = arg;
    if (g == NULL || tenant.len == 0 || gateway.len == 0 || device.len == 0)
        return false;
    return lookup(g, tenant, gateway, device) ||
           lookup(g, tenant, gateway, (gw_hono_str_t){"*", 1});
}
