/*
 * route.c - routing table: the longest prefix of a target address picks the
 * AMQP destination; addresses matching no prefix go to --amqp-url.
 *
 * --route PREFIX=URL[;address=TEMPLATE][;relay=auto|never] (issue 6). The
 * template rewrites the address of publications whose topic matches PREFIX
 * (foreign brokers such as RabbitMQ, whose AMQP 1.0 plugin wants
 * /exchange/amq.topic/a.b.c); relay=never keeps per-topic links even when
 * the peer offers ANONYMOUS-RELAY (a Qpid Dispatch Router's relay does not
 * follow link routes). See gateway/README.md "Routes".
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

/* Template tokens (issue 6). Everything else in a template is literal. */
typedef enum { TOK_NONE, TOK_TOPIC, TOK_TOPIC_DOT, TOK_REST, TOK_REST_DOT } tok_t;

static tok_t token_at(const char *s, size_t *toklen)
{
    static const struct {
        const char *text;
        tok_t tok;
    } toks[] = {{"{topic}", TOK_TOPIC}, {"{topic.}", TOK_TOPIC_DOT},
                {"{rest}", TOK_REST},   {"{rest.}", TOK_REST_DOT}};
    for (size_t i = 0; i < sizeof(toks) / sizeof(toks[0]); i++) {
        size_t n = strlen(toks[i].text);
        if (strncmp(s, toks[i].text, n) == 0) {
            *toklen = n;
            return toks[i].tok;
        }
    }
    *toklen = 1;
    return TOK_NONE;
}

#define GW_ROUTE_TEMPLATE_MAX 1024

/* A template must be able to produce a non-empty address for every topic:
 * it needs a literal character or {topic}/{topic.} ({rest} alone is empty
 * for a topic equal to the prefix). */
static bool template_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > GW_ROUTE_TEMPLATE_MAX)
        return false;
    for (size_t i = 0; i < n;) {
        size_t tl;
        tok_t k = token_at(t + i, &tl);
        if (k == TOK_NONE || k == TOK_TOPIC || k == TOK_TOPIC_DOT)
            return true;
        i += tl;
    }
    return false;
}

/* Options after the URL: ";address=TEMPLATE", ";relay=auto|never". */
static gw_err_t parse_options(gw_route_t *r, const char *spec, char *opts, char *why, size_t whylen)
{
    char *save = NULL;
    for (char *o = strtok_r(opts, ";", &save); o; o = strtok_r(NULL, ";", &save)) {
        if (strncmp(o, "address=", 8) == 0) {
            if (r->addr_template || !template_ok(o + 8)) {
                snprintf(why, whylen,
                         "--route: \"%s\": address= must be given once, be at most %d bytes and "
                         "contain a literal character, {topic} or {topic.}",
                         spec, GW_ROUTE_TEMPLATE_MAX);
                return GW_ERR_CONFIG;
            }
            r->addr_template = strdup(o + 8);
            if (!r->addr_template)
                return GW_ERR_NOMEM;
        } else if (strcmp(o, "relay=auto") == 0) {
            r->relay_never = false;
        } else if (strcmp(o, "relay=never") == 0) {
            r->relay_never = true;
        } else {
            snprintf(why, whylen,
                     "--route: \"%s\": unknown option \"%s\" (address=TEMPLATE, relay=auto|never)",
                     spec, o);
            return GW_ERR_CONFIG;
        }
    }
    return GW_OK;
}

gw_err_t gw_routes_build(gw_routes_t *rt, const char *default_url, const gw_config_list_t *specs,
                         char *why, size_t whylen)
{
    gw_err_t err = GW_OK;
    char *url = NULL;
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
        if (!eq || eq == s || eq[1] == '\0' || eq[1] == ';') {
            snprintf(why, whylen, "--route: \"%s\" is not PREFIX=URL[;address=TEMPLATE][;relay=auto|never]", s);
            err = GW_ERR_CONFIG;
            goto cleanup;
        }
        if (strncmp(eq + 1, "amqp://", 7) != 0 && strncmp(eq + 1, "amqps://", 8) != 0) {
            snprintf(why, whylen, "--route: \"%s\": URL must start with amqp:// or amqps://", s);
            err = GW_ERR_CONFIG;
            goto cleanup;
        }
        url = strdup(eq + 1);
        if (!url) {
            err = GW_ERR_NOMEM;
            goto cleanup;
        }
        char *semi = strchr(url, ';');
        if (semi)
            *semi++ = '\0';
        gw_route_t *r = &rt->routes[rt->nroutes];
        r->prefix_len = (size_t)(eq - s);
        r->prefix = strndup(s, r->prefix_len);
        if (!r->prefix) {
            err = GW_ERR_NOMEM;
            goto cleanup;
        }
        rt->nroutes++;
        if (semi && (err = parse_options(r, s, semi, why, whylen)) != GW_OK)
            goto cleanup;
        r->dest = dest_index(rt, url, &err);
        if (err)
            goto cleanup;
        free(url);
        url = NULL;
    }
cleanup:
    free(url);
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

const gw_route_t *gw_routes_match(const gw_routes_t *rt, const char *addr, size_t len)
{
    const gw_route_t *best = NULL;
    for (size_t i = 0; i < rt->nroutes; i++) {
        const gw_route_t *r = &rt->routes[i];
        if (r->prefix_len <= len && (!best || r->prefix_len > best->prefix_len) &&
            memcmp(addr, r->prefix, r->prefix_len) == 0)
            best = r;
    }
    return best;
}

size_t gw_routes_lookup(const gw_routes_t *rt, const char *addr, size_t len)
{
    const gw_route_t *r = gw_routes_match(rt, addr, len);
    return r ? r->dest : 0;
}

/* Append src[0..n) to buf at *pos (as far as it fits), '/' -> '.' if dots. */
static void put(char *buf, size_t cap, size_t *pos, const char *src, size_t n, bool dots)
{
    for (size_t i = 0; i < n; i++, (*pos)++)
        if (*pos < cap)
            buf[*pos] = (dots && src[i] == '/') ? '.' : src[i];
}

size_t gw_route_rewrite(const gw_route_t *r, const char *topic, size_t tlen, char *buf,
                        size_t cap)
{
    size_t pos = 0;
    size_t skip = r->prefix_len <= tlen ? r->prefix_len : tlen;
    for (const char *t = r->addr_template; *t;) {
        size_t tl;
        switch (token_at(t, &tl)) {
        case TOK_TOPIC: put(buf, cap, &pos, topic, tlen, false); break;
        case TOK_TOPIC_DOT: put(buf, cap, &pos, topic, tlen, true); break;
        case TOK_REST: put(buf, cap, &pos, topic + skip, tlen - skip, false); break;
        case TOK_REST_DOT: put(buf, cap, &pos, topic + skip, tlen - skip, true); break;
        case TOK_NONE: put(buf, cap, &pos, t, 1, false); break;
        }
        t += tl;
    }
    if (pos < cap)
        buf[pos] = '\0';
    return pos;
}
