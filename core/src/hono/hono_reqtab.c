/*
 * hono_reqtab.c - outstanding request/response commands: opaque req-id
 * token -> (tenant, device, correlation-id, reply-to), bounded, expiring.
 *
 * Every entry gets the same ttl, so insertion order is expiry order: a FIFO
 * list gives O(1) expiry, a chained hash keyed by the 64-bit token gives
 * O(1) lookup. One allocation per entry (struct + strings).
 */
#include "gw/hono.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "hono/hono_internal.h"

typedef struct gw_req_entry {
    struct gw_req_entry *hnext;          /* hash chain */
    struct gw_req_entry *prev, *next;    /* FIFO (oldest first) */
    uint64_t token;
    uint64_t expires_ms;
    gw_hono_request_t req;               /* strings point into data[] */
    char data[];
} gw_req_entry_t;

struct gw_hono_reqtab {
    gw_req_entry_t **buckets;
    size_t nbuckets;  /* power of two >= max */
    size_t max;
    size_t count;
    uint32_t ttl_ms;
    uint64_t next_token;
    gw_req_entry_t *head, *tail;
};

static gw_err_t fail(gw_hono_reason_t *reason, gw_hono_reason_t r, gw_err_t err)
{
    if (reason)
        *reason = r;
    return err;
}

gw_hono_reqtab_t *gw_hono_reqtab_new(size_t max_entries, uint32_t ttl_ms)
{
    gw_hono_reqtab_t *t;
    size_t nb = 1;

    if (max_entries == 0 || max_entries > GW_HONO_REQTAB_MAX || ttl_ms == 0)
        return NULL;
    while (nb < max_entries)
        nb <<= 1;
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->buckets = calloc(nb, sizeof *t->buckets);
    if (t->buckets == NULL) {
        free(t);
        return NULL;
    }
    t->nbuckets = nb;
    t->max = max_entries;
    t->ttl_ms = ttl_ms;
    /* random start: tokens of a previous process are not ours */
    if (RAND_bytes((unsigned char *)&t->next_token, sizeof t->next_token) != 1)
        t->next_token = (uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ull;
    return t;
}

static void unlink_entry(gw_hono_reqtab_t *t, gw_req_entry_t *e)
{
    gw_req_entry_t **pp = &t->buckets[e->token & (t->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->prev)
        e->prev->next = e->next;
    else
        t->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        t->tail = e->prev;
    t->count--;
}

void gw_hono_reqtab_free(gw_hono_reqtab_t *t)
{
    if (t == NULL)
        return;
    gw_req_entry_t *e = t->head;
    while (e) {
        gw_req_entry_t *next = e->next;
        free(e);
        e = next;
    }
    free(t->buckets);
    free(t);
}

size_t gw_hono_reqtab_expire(gw_hono_reqtab_t *t, uint64_t now_ms)
{
    size_t n = 0;
    if (t == NULL)
        return 0;
    while (t->head && t->head->expires_ms <= now_ms) {
        gw_req_entry_t *e = t->head;
        unlink_entry(t, e);
        free(e);
        n++;
    }
    return n;
}

size_t gw_hono_reqtab_count(const gw_hono_reqtab_t *t)
{
    return t ? t->count : 0;
}

static char *put(char *dst, gw_hono_str_t s, gw_hono_str_t *out)
{
    memcpy(dst, s.ptr, s.len);
    dst[s.len] = '\0';
    out->ptr = dst;
    out->len = s.len;
    return dst + s.len + 1;
}

static gw_req_entry_t *lookup(const gw_hono_reqtab_t *t, uint64_t token)
{
    for (gw_req_entry_t *e = t->buckets[token & (t->nbuckets - 1)]; e; e = e->hnext)
        if (e->token == token)
            return e;
    return NULL;
}

gw_err_t gw_hono_reqtab_add(gw_hono_reqtab_t *t, uint64_t now_ms, const gw_hono_command_t *cmd,
                            char req_id[GW_HONO_REQ_ID_LEN + 1], gw_hono_reason_t *reason)
{
    gw_hono_str_t corr = {"", 0};
    gw_req_entry_t *e;
    size_t size;
    char *p;

    if (reason)
        *reason = GW_HONO_R_NONE;
    if (t == NULL || cmd == NULL || req_id == NULL || cmd->one_way || cmd->reply_to.len == 0)
        return GW_ERR_INVAL;
    if (cmd->correlation_id.type == PN_STRING || cmd->correlation_id.type == PN_BINARY)
        corr = (gw_hono_str_t){cmd->correlation_id.u.as_bytes.start,
                               cmd->correlation_id.u.as_bytes.size};
    else if (cmd->correlation_id.type != PN_ULONG && cmd->correlation_id.type != PN_UUID)
        return GW_ERR_INVAL;
    /* bounded by the command decoder; checked again: this copies them */
    if (cmd->tenant.len > GW_HONO_MAX_ID || cmd->device.len > GW_HONO_MAX_ID ||
        cmd->reply_to.len > 2 * GW_HONO_MAX_ID + 32 || corr.len > 65535)
        return fail(reason, GW_HONO_R_ID_TOO_LONG, GW_ERR_LIMIT);

    gw_hono_reqtab_expire(t, now_ms);
    if (t->count >= t->max)
        return fail(reason, GW_HONO_R_TABLE_FULL, GW_ERR_LIMIT);

    size = sizeof *e + cmd->tenant.len + cmd->device.len + cmd->reply_to.len + corr.len + 4;
    e = malloc(size);
    if (e == NULL)
        return GW_ERR_NOMEM;
    p = e->data;
    p = put(p, cmd->tenant, &e->req.tenant);
    p = put(p, cmd->device, &e->req.device);
    p = put(p, cmd->reply_to, &e->req.reply_to);
    e->req.correlation_id = cmd->correlation_id;
    if (corr.len > 0 || cmd->correlation_id.type == PN_STRING ||
        cmd->correlation_id.type == PN_BINARY) {
        gw_hono_str_t c;
        put(p, corr, &c);
        e->req.correlation_id.u.as_bytes = pn_bytes(c.len, c.ptr);
    }
    /* skip a token still in use (only after 2^64 adds, but cheap to check) */
    do {
        e->token = t->next_token++;
    } while (lookup(t, e->token) != NULL);
    e->expires_ms = now_ms + t->ttl_ms;
    e->hnext = t->buckets[e->token & (t->nbuckets - 1)];
    t->buckets[e->token & (t->nbuckets - 1)] = e;
    e->next = NULL;
    e->prev = t->tail;
    if (t->tail)
        t->tail->next = e;
    else
        t->head = e;
    t->tail = e;
    t->count++;
    snprintf(req_id, GW_HONO_REQ_ID_LEN + 1, "%016llx", (unsigned long long)e->token);
    return GW_OK;
}

static bool parse_token(gw_hono_str_t s, uint64_t *out)
{
    uint64_t v = 0;
    if (s.len != GW_HONO_REQ_ID_LEN)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false; /* we only ever hand out lowercase */
        v = v << 4 | d;
    }
    *out = v;
    return true;
}

gw_err_t gw_hono_reqtab_take(gw_hono_reqtab_t *t, uint64_t now_ms, gw_hono_str_t req_id,
                             gw_hono_str_t tenant, gw_hono_str_t device,
                             gw_hono_request_t **out, gw_hono_reason_t *reason)
{
    gw_req_entry_t *e;
    uint64_t token;

    if (reason)
        *reason = GW_HONO_R_NONE;
    if (t == NULL || out == NULL)
        return GW_ERR_INVAL;
    *out = NULL;
    gw_hono_reqtab_expire(t, now_ms);
    if (!parse_token(req_id, &token) || (e = lookup(t, token)) == NULL)
        return fail(reason, GW_HONO_R_REQ_ID_UNKNOWN, GW_ERR_NOT_FOUND);
    /* only the device the command went to may answer it */
    if (!gw_hono__str_eq(tenant, e->req.tenant) || !gw_hono__str_eq(device, e->req.device))
        return fail(reason, GW_HONO_R_REQ_ID_WRONG_DEVICE, GW_ERR_NOT_FOUND);
    unlink_entry(t, e);
    /* the entry starts with nothing the caller needs but req: hand it over
     * whole; gw_hono_request_free() finds the entry from req's address */
    *out = &e->req;
    return GW_OK;
}

void gw_hono_request_free(gw_hono_request_t *r)
{
    if (r == NULL)
        return;
    free((char *)r - offsetof(gw_req_entry_t, req));
}
