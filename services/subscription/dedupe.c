/*
 * dedupe.c - QoS 2 duplicate detection (spec 5.2, publications rule 8).
 *
 * A QoS 2 PUBLISH that the SS took (stored, `accepted` on L7) but whose
 * PUBREC never reached the client (the gateway failed in between) is sent
 * again by the client, DUP set, same packet id, after it reconnects -
 * through another AMQP link, maybe another gateway. Proton's own dedupe
 * (the same delivery on the same link) does not see that. So for every
 * QoS 2 publication carrying x-opt-mqtt-publisher the SS keeps a record
 * (publisher, packet id, digest of topic + payload + flags):
 *
 *  - written in the same batch as the publication (durable with it), in
 *    memory and in the store's qos2 table;
 *  - a delivery with the same publisher and packet id, delivery-count > 0
 *    and the same digest is a resend: `accepted` (after the batch that
 *    holds the record commits) and held like the original, without a
 *    second publication;
 *  - a delivery with the same key but DUP 0 or another digest is a new
 *    publication (the client reuses a packet id only after PUBCOMP); it
 *    replaces the record;
 *  - the record ends when the sender settles a delivery holding it (the
 *    client's PUBREL reached a gateway: the exchange is over), or at
 *    AMQP_CLOSE for the publisher (clean session: the client discards its
 *    state and resends nothing), or when --qos2-dedupe-max records exist
 *    and it is the oldest not held by a delivery.
 *
 * A delivery holding a record has the record as its context; the record's
 * first byte is Q2_TAG, which tells it from the service's marker contexts
 * (static chars that hold 0).
 */
#include <stdlib.h>
#include <string.h>

#include "gw/log.h"
#include "subs.h"

#define Q2_TAG 'Q'

struct subs_q2 {
    char tag; /* Q2_TAG */
    bool in_map;
    uint16_t pid;
    uint32_t holders; /* deliveries whose context is this record */
    uint64_t digest;
    struct subs_q2 *hnext;        /* bucket chain (in_map) */
    struct subs_q2 *prev, *next;  /* age order (in_map), oldest first */
    size_t len;
    char publisher[];
};

static size_t q2_hash(const char *p, size_t len, uint16_t pid)
{
    return subs_hash(p, len) ^ ((size_t)pid * 0x9E3779B97F4A7C15ULL);
}

bool subs_q2_is(const void *ctx) { return ctx && *(const char *)ctx == Q2_TAG; }

uint64_t subs_q2_digest(const gw_spec_publish_t *p)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a over topic, 0, payload, flags */
    for (size_t i = 0; i < p->topic.len; i++)
        h = (h ^ (unsigned char)p->topic.ptr[i]) * 1099511628211ULL;
    h = (h ^ 0) * 1099511628211ULL;
    for (size_t i = 0; i < p->payload.len; i++)
        h = (h ^ (unsigned char)p->payload.ptr[i]) * 1099511628211ULL;
    h = (h ^ (uint64_t)(p->qos | (p->retain ? 4 : 0))) * 1099511628211ULL;
    return h;
}

uint64_t subs_q2_digest_of(const subs_q2_t *r) { return r->digest; }

static gw_err_t q2_grow(subs_service_t *svc)
{
    size_t n = svc->nq2buckets ? svc->nq2buckets * 2 : 1024;
    subs_q2_t **b = calloc(n, sizeof *b);
    if (!b)
        return GW_ERR_NOMEM;
    for (size_t i = 0; i < svc->nq2buckets; i++) {
        subs_q2_t *r = svc->q2buckets[i], *next;
        for (; r; r = next) {
            next = r->hnext;
            size_t h = q2_hash(r->publisher, r->len, r->pid) & (n - 1);
            r->hnext = b[h];
            b[h] = r;
        }
    }
    free(svc->q2buckets);
    svc->q2buckets = b;
    svc->nq2buckets = n;
    return GW_OK;
}

subs_q2_t *subs_q2_find(subs_service_t *svc, const char *pub, size_t len, uint16_t pid)
{
    if (!svc->nq2buckets)
        return NULL;
    subs_q2_t *r = svc->q2buckets[q2_hash(pub, len, pid) & (svc->nq2buckets - 1)];
    while (r && !(r->pid == pid && r->len == len && memcmp(r->publisher, pub, len) == 0))
        r = r->hnext;
    return r;
}

static void q2_free_if_unused(subs_q2_t *r)
{
    if (!r->in_map && r->holders == 0)
        free(r);
}

/* Out of the map and the age list (the store row is the caller's). */
static void q2_unlink(subs_service_t *svc, subs_q2_t *r)
{
    if (!r->in_map)
        return;
    subs_q2_t **pp = &svc->q2buckets[q2_hash(r->publisher, r->len, r->pid) & (svc->nq2buckets - 1)];
    while (*pp && *pp != r)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = r->hnext;
    if (r->prev)
        r->prev->next = r->next;
    else
        svc->q2old = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        svc->q2new = r->prev;
    r->prev = r->next = r->hnext = NULL;
    r->in_map = false;
    svc->nq2--;
    GW_SVC_SET(svc->m.q2_records, (int64_t)svc->nq2);
}

static void q2_link(subs_service_t *svc, subs_q2_t *r)
{
    size_t h = q2_hash(r->publisher, r->len, r->pid) & (svc->nq2buckets - 1);
    r->hnext = svc->q2buckets[h];
    svc->q2buckets[h] = r;
    r->prev = svc->q2new;
    r->next = NULL;
    if (svc->q2new)
        svc->q2new->next = r;
    else
        svc->q2old = r;
    svc->q2new = r;
    r->in_map = true;
    svc->nq2++;
    GW_SVC_SET(svc->m.q2_records, (int64_t)svc->nq2);
}

/* --qos2-dedupe-max: drop the oldest records no delivery holds. */
static void q2_bound(subs_service_t *svc)
{
    size_t max = (size_t)svc->cfg->qos2_dedupe_max;
    subs_q2_t *r = svc->q2old, *next;
    for (; r && svc->nq2 > max; r = next) {
        next = r->next;
        if (r->holders)
            continue;
        gw_subs_store_qos2_delete(svc->store, r->publisher, r->len, r->pid);
        q2_unlink(svc, r);
        q2_free_if_unused(r);
        GW_SVC_INC(svc->m.q2_evicted);
    }
    subs_batch_touch(svc);
}

static subs_q2_t *q2_add(subs_service_t *svc, const char *pub, size_t len, uint16_t pid,
                         uint64_t digest)
{
    if ((svc->nq2 + 1) * 2 > svc->nq2buckets && q2_grow(svc) != GW_OK)
        return NULL;
    subs_q2_t *r = calloc(1, sizeof *r + len);
    if (!r)
        return NULL;
    r->tag = Q2_TAG;
    r->pid = pid;
    r->digest = digest;
    r->len = len;
    memcpy(r->publisher, pub, len);
    q2_link(svc, r);
    return r;
}

subs_q2_t *subs_q2_put(subs_service_t *svc, const char *pub, size_t len, uint16_t pid,
                       uint64_t digest)
{
    subs_q2_t *r = subs_q2_find(svc, pub, len, pid);
    if (r) {
        /* A new publication under a packet id the client reused: move it
         * to the young end with the new digest. */
        q2_unlink(svc, r);
        r->digest = digest;
        q2_link(svc, r);
    } else if (!(r = q2_add(svc, pub, len, pid, digest))) {
        return NULL;
    }
    if (gw_subs_store_qos2_put(svc->store, pub, len, pid, digest) != GW_OK) {
        q2_unlink(svc, r);
        q2_free_if_unused(r);
        return NULL;
    }
    subs_batch_touch(svc);
    r->holders++; /* the caller's delivery; also keeps q2_bound off it */
    if (svc->nq2 > (size_t)svc->cfg->qos2_dedupe_max)
        q2_bound(svc);
    return r;
}

void subs_q2_hold(subs_q2_t *r) { r->holders++; }

void subs_q2_release(subs_service_t *svc, subs_q2_t *r)
{
    (void)svc;
    if (r->holders)
        r->holders--;
    q2_free_if_unused(r);
}

void subs_q2_done(subs_service_t *svc, subs_q2_t *r)
{
    if (r->in_map) {
        if (gw_subs_store_qos2_delete(svc->store, r->publisher, r->len, r->pid) == GW_OK)
            subs_batch_touch(svc);
        q2_unlink(svc, r);
    }
    subs_q2_release(svc, r);
}

void subs_q2_forget(subs_service_t *svc, subs_q2_t *r)
{
    /* Its batch did not commit: the record was never durable, and the
     * publication it describes was released. */
    q2_unlink(svc, r);
}

void subs_q2_forget_publisher(subs_service_t *svc, const char *pub, size_t len)
{
    bool any = false;
    subs_q2_t *r = svc->q2old, *next;
    for (; r; r = next) {
        next = r->next;
        if (r->len == len && memcmp(r->publisher, pub, len) == 0) {
            q2_unlink(svc, r);
            q2_free_if_unused(r);
            any = true;
        }
    }
    if (any && gw_subs_store_qos2_delete(svc->store, pub, len, -1) == GW_OK)
        subs_batch_touch(svc);
}

gw_err_t subs_q2_restore(subs_service_t *svc, const char *pub, size_t len, uint16_t pid,
                         uint64_t digest)
{
    subs_q2_t *r = subs_q2_find(svc, pub, len, pid);
    if (r) {
        r->digest = digest;
        return GW_OK;
    }
    return q2_add(svc, pub, len, pid, digest) ? GW_OK : GW_ERR_NOMEM;
}

void subs_q2_free_all(subs_service_t *svc)
{
    /* At exit: the deliveries that hold records go with their connections. */
    subs_q2_t *r = svc->q2old, *next;
    for (; r; r = next) {
        next = r->next;
        free(r);
    }
    free(svc->q2buckets);
    svc->q2buckets = NULL;
    svc->nq2buckets = svc->nq2 = 0;
    svc->q2old = svc->q2new = NULL;
}
