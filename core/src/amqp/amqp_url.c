/*
 * amqp_url.c - URL parsing, reconnect back-off and randomness for the AMQP
 * module.
 */
#include "amqp/amqp_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Longest URL we accept: far above any real host name + credentials. */
#define GW_AMQP_URL_MAX 2048

static int gw_amqp_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Copy [s, s+n) percent-decoding it; NULL on bad escape, NUL byte or OOM. */
static char *gw_amqp_pct_dup(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = -1, lo = -1;
            if (i + 2 < n) {
                hi = gw_amqp_hexval(s[i + 1]);
                lo = gw_amqp_hexval(s[i + 2]);
            }
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    return out;
}

void gw_amqp__url_clear(gw_amqp_url_t *url)
{
    if (!url)
        return;
    free(url->user);
    free(url->password);
    free(url->host);
    url->user = url->password = url->host = NULL;
}

gw_err_t gw_amqp__url_parse(const char *url, gw_amqp_url_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!url)
        return GW_ERR_INVAL;
    size_t len = strnlen(url, GW_AMQP_URL_MAX + 1);
    if (len > GW_AMQP_URL_MAX)
        return GW_ERR_CONFIG;

    const char *p = url;
    if (strncmp(p, "amqps://", 8) == 0) {
        out->tls = true;
        p += 8;
    } else if (strncmp(p, "amqp://", 7) == 0) {
        p += 7;
    } else if (strstr(p, "://")) {
        return GW_ERR_CONFIG; /* some other scheme */
    }
    /* authority ends at the first '/' (a path is ignored) */
    const char *end = p + strcspn(p, "/?#");
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q; /* the last '@' separates user info */
    gw_err_t rc = GW_ERR_CONFIG;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            out->user = gw_amqp_pct_dup(p, (size_t)(colon - p));
            out->password = gw_amqp_pct_dup(colon + 1, (size_t)(at - colon - 1));
            if (!out->password)
                goto fail;
        } else {
            out->user = gw_amqp_pct_dup(p, (size_t)(at - p));
        }
        if (!out->user)
            goto fail;
        p = at + 1;
    }
    const char *hend;
    const char *portp = NULL;
    if (*p == '[') { /* IPv6 literal */
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb || rb == p + 1)
            goto fail;
        out->host = strndup(p + 1, (size_t)(rb - p - 1));
        hend = rb + 1;
        if (hend < end) {
            if (*hend != ':')
                goto fail;
            portp = hend + 1;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        hend = colon ? colon : end;
        if (hend == p)
            goto fail;
        out->host = strndup(p, (size_t)(hend - p));
        if (colon)
            portp = colon + 1;
    }
    if (!out->host) {
        rc = GW_ERR_NOMEM;
        goto fail;
    }
    if (portp) {
        size_t n = (size_t)(end - portp);
        if (n == 0 || n > 5)
            goto fail;
        unsigned v = 0;
        for (size_t i = 0; i < n; i++) {
            if (portp[i] < '0' || portp[i] > '9')
                goto fail;
            v = v * 10 + (unsigned)(portp[i] - '0');
        }
        if (v == 0 || v > 65535)
            goto fail;
        memcpy(out->port, portp, n);
        out->port[n] = '\0';
    } else {
        strcpy(out->port, out->tls ? "5671" : "5672");
    }
    return GW_OK;

fail:
    gw_amqp__url_clear(out);
    return rc;
}

uint32_t gw_amqp__backoff_ceiling(uint32_t min_ms, uint32_t max_ms, unsigned attempt)
{
    if (min_ms == 0)
        min_ms = 1;
    if (max_ms < min_ms)
        max_ms = min_ms;
    uint64_t c = min_ms;
    for (unsigned i = 0; i < attempt && c < max_ms; i++)
        c <<= 1;
    return c > max_ms ? max_ms : (uint32_t)c;
}

uint32_t gw_amqp__backoff_delay(uint32_t min_ms, uint32_t max_ms, unsigned attempt, uint64_t rnd)
{
    uint32_t c = gw_amqp__backoff_ceiling(min_ms, max_ms, attempt);
    return (uint32_t)(rnd % ((uint64_t)c + 1)); /* full jitter: uniform in [0, c] */
}

uint64_t gw_amqp__random(void)
{
    static _Thread_local uint64_t s; /* one stream per loop thread */
    if (s == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^
            (uint64_t)(uintptr_t)&s;
        if (s == 0)
            s = 0x9e3779b97f4a7c15ULL;
    }
    /* xorshift64* */
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545f4914f6cdd1dULL;
}

const char *gw_amqp_url_redact(const char *url, char *buf, size_t cap)
{
    const char *auth, *end, *at, *colon;
    size_t n;

    if (cap == 0)
        return buf;
    buf[0] = '\0';
    if (url == NULL)
        return buf;
    auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    end = auth + strcspn(auth, "/?#");
    at = NULL;
    for (const char *p = auth; p < end; p++)
        if (*p == '@')
            at = p; /* the last '@' ends the user info */
    colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon == NULL) {
        snprintf(buf, cap, "%s", url);
        return buf;
    }
    n = (size_t)(colon - url) + 1; /* through "user:" */
    snprintf(buf, cap, "%.*s***%s", (int)(n > (size_t)INT32_MAX ? INT32_MAX : n), url, at);
    return buf;
}
