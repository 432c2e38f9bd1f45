/*
 * route.c - routing table: the longest prefix of a target address picks the
 * AMQP destination; addresses matching no prefix go to --amqp-url.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

static size_t dest_index(gw_routes_t *rt, const char *url, gw_err_t *err)
{
    for (size_t i = 0; i < rt->ndest; i++)
        if (strcmp(rt->dest_urls[i], url) == 0)
            return i;
    char **n = realloc(rt->dest_urls, (rt->ndest + 1) * sizeof(*n));
    if (!n) {
        *err = GW_ERR_NOMEM;
        return 0;
    }
    rt->dest_urls = n;
    rt->dest_urls[rt->ndest] = strdup(url);
    if (!rt->dest_urls[rt->ndest]) {
        *err = GW_ERR_NOMEM;
        return 0;
    }
    return rt->ndest++;
}

gw_err_t gw_routes_build(gw_routes_t *rt, const char *default_url, const gw_config_list_t *specs,
                         char *why, size_t whylen)
{
    gw_err_t err = GW_OK;
    memset(rt, 0, sizeof(*rt));
    dest_index(rt, default_url, &err);
    if (err)
        goto cleanup;
    if (specs->count) {
        rt->routes = calloc(specs->count, sizeof(*rt->routes));
        if (!rt->routes) {
            err = GW_ERR_NOMEM;
            goto cleanup;
        }
    }
    for (size_t i = 0; i < specs->count; i++) {
        const char *s = specs->items[i];
        const char *eq = strchr(s, '=');
        if (!eq || eq == s || eq[1] == '\0') {
            snprintf(why, whylen, "--route: \"%s\" is not PREFIX=URL", s);
            err = GW_ERR_CONFIG;
            goto cleanup;
        }
        if (strncmp(eq + 1, "amqp://", 7) != 0 && strncmp(eq + 1, "amqps://", 8) != 0) {
            snprintf(why, whylen, "--route: \"%s\": URL must start with amqp:// or amqps://", s);
            err = GW_ERR_CONFIG;
            goto cleanup;
        }
        gw_route_t *r = &rt->routes[rt->nroutes];
        r->prefix_len = (size_t)(eq - s);
        r->prefix = strndup(s, r->prefix_len);
        if (!r->prefix) {
            err = GW_ERR_NOMEM;
            goto cleanup;
        }
        rt->nroutes++;
        r->dest = dest_index(rt, eq + 1, &err);
        if (err)
            goto cleanup;
    }
cleanup:
    if (err == GW_ERR_NOMEM)
        snprintf(why, whylen, "out of memory");
    return err;
}

void gw_routes_free(gw_routes_t *rt)
{
    for (size_t i = 0; i < rt->ndest; i++)
        free(rt->dest_urls[i]);
    free(rt->dest_urls);
    for (size_t i = 0; i < rt->nroutes; i++) {
        free(rt->routes[i].prefix);
        free(rt->routes[i].addr_template);
    }
    free(rt->routes);
    memset(rt, 0, sizeof(*rt));
}

size_t gw_routes_lookup(const gw_routes_t *rt, const char *addr, size_t len)
{
    size_t best = 0, best_len = 0;
    bool found = false;
    for (size_t i = 0; i < rt->nroutes; i++) {
        const gw_route_t *r = &rt->routes[i];
        if (r->prefix_len <= len && (!found || r->prefix_len > best_len) &&
            memcmp(addr, r->prefix, r->prefix_len) == 0) {
            best = r->dest;
            best_len = r->prefix_len;
            found = true;
        }
    }
    return found ? best : 0;
}
