/*
 * service.c - will links on $mqtt.lwtservice and the life of each will.
 *
 * One entry per link name (= MQTT client id) that is attached, waits for
 * its will delay, or is an orphan of a restart. The will itself lives only
 * in the store; the entry says who owns it and what happens when the owner
 * goes away:
 *
 *   detach/close without error          -> delete the will, publish nothing
 *   detach with amqp:link:stolen        -> nothing (a newer link owns it)
 *   detach with any other error,
 *   session ended, connection lost      -> publish after --will-delay unless
 *                                          the name re-attaches meanwhile
 *   newer link with the same name       -> older detached with amqp:link:stolen;
 *                                          the will stays, owned by the newer link
 *   restart                             -> every held will is an orphan for
 *                                          --grace-seconds, then published
 *
 * Incoming links are accepted on any connection: accepted ones (--listen)
 * and the outgoing one to a router (--connect), where link-routed attaches
 * arrive.
 *
 * Group commit (as in subscription-service): the first store write of a
 * loop iteration (AMQP_WILL put, AMQP_WILL_CLEAR or clean-detach delete)
 * opens a batch transaction and activates commit_ev; the writes that follow
 * go into the same transaction, in the order the events arrive, so a put
 * and a delete of one name end in the right state. The deliveries wait in
 * svc->pending and are settled `accepted` only right after the COMMIT
 * (spec "Will Service": a will is acknowledged once durably stored);
 * commit_ev runs once the events already queued in this iteration are
 * handled, or sooner when --batch-max writes wait. A failed commit rolls the
 * whole batch back and settles its deliveries `rejected` (as a failed write
 * did before). Moving a will to the publishing set is its own transaction:
 * the open batch is committed first (svc_batch_commit), so a will stored in
 * it is durable and acknowledged before it is moved, and published once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proton/condition.h>
#include <proton/disposition.h>
#include <proton/terminus.h>

#include "gw/log.h"
#include "gw/spec.h"
#include "will.h"

typedef struct will_conn will_conn_t;

typedef enum entry_state {
    WE_ATTACHED, /* owned by an attached link */
    WE_DELAY,    /* owner lost; publication after the will delay */
    WE_ORPHAN,   /* found in the store at start-up; grace period */
} entry_state_t;

typedef struct will_entry {
    struct will_entry *hnext;         /* hash chain */
    struct will_entry *cprev, *cnext; /* links of the same connection */
    will_conn_t *wc;                  /* WE_ATTACHED only */
    pn_link_t *link;                  /* WE_ATTACHED only */
    entry_state_t state;
    struct event *timer; /* will delay */
    gw_will_service_t *svc;
    char name[];
} will_entry_t;

/* A delivery settled once the batch holding its write is committed. */
typedef struct will_pending {
    pn_delivery_t *dlv;
    pn_link_t *link;
    will_conn_t *wc;
} will_pending_t;

struct will_conn {
    gw_svc_conn_t base; /* first: list of the service's connections, conn, outgoing */
    gw_will_service_t *svc;
    will_entry_t *entries; /* attached entries on this connection */
};

struct gw_will_service {
    struct event_base *base;
    const gw_will_config_t *cfg;
    gw_will_store_t *store;
    gw_will_publisher_t *pub;
    gw_amqp_listener_t *lst;
    gw_svc_conns_t conns;
    will_entry_t **buckets;
    size_t nbuckets, nentries;
    struct event *grace_timer;
    pn_message_t *msg;
    bool stopping;
    /* Group commit */
    struct event *commit_ev;  /* activated by the first write of a batch */
    will_pending_t *pending;  /* settled after the commit */
    size_t npending, cappending;
    size_t batch_writes;      /* writes in the open batch (bound: --batch-max) */
    uint64_t batch_stored, batch_cleared; /* counted once the batch is committed */
    /* Metrics: written by the loop thread with GW_SVC_SET/INC, read by the
     * HTTP thread with GW_SVC_GET. */
    uint64_t stored, cleared, malformed, stolen;
    uint64_t commits; /* store commits (batches and single transactions) */
    int64_t held;     /* wills held in the store (gauge) */
    int listening;
    gw_svc_hist_t store_lat; /* one per batch commit */
};

/* Refresh the gauge of held wills (cheap: the store keeps the counts). */
static void svc_count_wills(gw_will_service_t *svc)
{
    int64_t held = 0, publishing = 0;
    if (gw_will_store_count(svc->store, &held, &publishing) == GW_OK)
        GW_SVC_SET(svc->held, held);
    GW_SVC_SET(svc->commits, gw_will_store_commits(svc->store));
}

/* ------------------------------------------------------------------ */
/* Group commit                                                        */
/* ------------------------------------------------------------------ */

static void svc_reply(pn_link_t *link, pn_delivery_t *dlv, uint64_t outcome, gw_err_t err,
                      const char *desc)
{
    gw_amqp_settle(dlv, outcome, outcome == PN_REJECTED ? gw_err_amqp_condition(err) : NULL,
                   outcome == PN_REJECTED ? desc : NULL);
    pn_link_flow(link, 1);
}

/*
 * Commit the open batch, then settle every delivery that waited for it:
 * `accepted` only now that its write is durable; `rejected` if the commit
 * failed (the batch is rolled back: none of its wills is stored, and none
 * is acknowledged).
 */
static gw_err_t svc_batch_commit(gw_will_service_t *svc)
{
    gw_err_t err = GW_OK;
    if (gw_will_store_in_batch(svc->store)) {
        uint64_t t0 = gw_svc_now_us();
        err = gw_will_store_commit(svc->store);
        gw_svc_hist_observe(&svc->store_lat, gw_svc_now_us() - t0);
        if (err != GW_OK)
            GW_LOG_ERROR(WILL_MOD, NULL,
                         "will store commit failed: %zu writes rolled back, %zu wills rejected",
                         svc->batch_writes, svc->npending);
    }
    for (size_t i = 0; i < svc->npending; i++) {
        will_pending_t *p = &svc->pending[i];
        if (err != GW_OK)
            svc_reply(p->link, p->dlv, PN_REJECTED, err, "will store failure");
        else
            svc_reply(p->link, p->dlv, PN_ACCEPTED, GW_OK, NULL);
    }
    if (err == GW_OK) {
        GW_SVC_ADD(svc->stored, svc->batch_stored);
        GW_SVC_ADD(svc->cleared, svc->batch_cleared);
    }
    svc->npending = 0;
    svc->batch_writes = 0;
    svc->batch_stored = svc->batch_cleared = 0;
    svc_count_wills(svc);
    return err;
}

static void svc_commit_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)svc_batch_commit(arg);
}

/* Open the batch (if needed) for one write; commit_ev commits it at the
 * end of this loop iteration. */
static gw_err_t svc_batch_begin(gw_will_service_t *svc)
{
    gw_err_t err = gw_will_store_begin(svc->store);
    if (err != GW_OK)
        return err;
    if (!event_pending(svc->commit_ev, EV_TIMEOUT, NULL))
        event_active(svc->commit_ev, EV_TIMEOUT, 0);
    return GW_OK;
}

/* One write was made into the batch (dlv: its delivery, NULL if it needs
 * no acknowledgement; stored: an AMQP_WILL put, cleared: an AMQP_WILL_CLEAR).
 * Commits now when --batch-max writes wait. */
static void svc_batch_wrote(gw_will_service_t *svc, will_conn_t *wc, pn_delivery_t *dlv,
                            bool stored, bool cleared)
{
    svc->batch_stored += stored;
    svc->batch_cleared += cleared;
    if (dlv && svc->npending == svc->cappending) {
        size_t cap = svc->cappending ? svc->cappending * 2 : 64;
        will_pending_t *p = realloc(svc->pending, cap * sizeof *p);
        if (!p) {
            /* Cannot wait: make it durable now, then settle. */
            gw_err_t err = svc_batch_commit(svc);
            svc_reply(pn_delivery_link(dlv), dlv, err == GW_OK ? PN_ACCEPTED : PN_REJECTED, err,
                      "will store failure");
            return;
        }
        svc->pending = p;
        svc->cappending = cap;
    }
    if (dlv)
        svc->pending[svc->npending++] =
            (will_pending_t){.dlv = dlv, .link = pn_delivery_link(dlv), .wc = wc};
    svc->batch_writes++;
    if (svc->batch_writes >= (size_t)svc->cfg->batch_max)
        (void)svc_batch_commit(svc);
}

/* Forget waiting settlements of deliveries that proton is about to free
 * (their link, or all links of wc when link is NULL). Their writes stay in
 * the batch: the stream of changes keeps its order; only the outcome has
 * nobody to go to. */
static void svc_pending_purge(gw_will_service_t *svc, will_conn_t *wc, pn_link_t *link)
{
    size_t j = 0;
    for (size_t i = 0; i < svc->npending; i++) {
        will_pending_t *p = &svc->pending[i];
        if (link ? p->link == link : p->wc == wc)
            continue;
        svc->pending[j++] = *p;
    }
    svc->npending = j;
}

/* ------------------------------------------------------------------ */
/* Entries by name                                                     */
/* ------------------------------------------------------------------ */

static size_t svc_hash_n(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return (size_t)h;
}

static size_t svc_hash(const char *s) { return svc_hash_n(s, strlen(s)); }

static will_entry_t *svc_find_n(gw_will_service_t *svc, const char *name, size_t len)
{
    for (will_entry_t *e = svc->buckets[svc_hash_n(name, len) & (svc->nbuckets - 1)]; e;
         e = e->hnext)
        if (strncmp(e->name, name, len) == 0 && e->name[len] == '\0')
            return e;
    return NULL;
}

static void svc_grow(gw_will_service_t *svc)
{
    size_t n = svc->nbuckets * 2;
    will_entry_t **b = calloc(n, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < svc->nbuckets; i++) {
        will_entry_t *e = svc->buckets[i], *next;
        for (; e; e = next) {
            next = e->hnext;
            size_t k = svc_hash(e->name) & (n - 1);
            e->hnext = b[k];
            b[k] = e;
        }
    }
    free(svc->buckets);
    svc->buckets = b;
    svc->nbuckets = n;
}

static will_entry_t *svc_add_n(gw_will_service_t *svc, const char *name, size_t len,
                               entry_state_t state)
{
    will_entry_t *e = calloc(1, sizeof *e + len + 1);
    if (!e)
        return NULL;
    memcpy(e->name, name, len);
    e->name[len] = '\0';
    e->svc = svc;
    e->state = state;
    if (svc->nentries >= svc->nbuckets)
        svc_grow(svc);
    size_t k = svc_hash_n(name, len) & (svc->nbuckets - 1);
    e->hnext = svc->buckets[k];
    svc->buckets[k] = e;
    svc->nentries++;
    return e;
}

static will_entry_t *svc_add(gw_will_service_t *svc, const char *name, entry_state_t state)
{
    return svc_add_n(svc, name, strlen(name), state);
}

/*
 * The key of a will is the MQTT client id = the link name the gateway
 * chose. A Qpid Dispatch Router forwarding a link-routed attach renames the
 * link to "<name>@<container id of the attaching connection>" (qpid-dispatch
 * lookup_client.c disambiguated_link_name(), used by forwarder.c
 * qdr_forward_link_direct_CT), so that links from different connections
 * never collide on its one connection to us. On router connections the key
 * is therefore the name up to its LAST '@' (a client id may contain '@'; a
 * container id, generated by the gateway, does not). Direct connections
 * keep the name as is.
 */
static size_t svc_key_len(const will_conn_t *wc, const char *name)
{
    size_t len = strlen(name);
    if (wc->base.outgoing) {
        const char *at = strrchr(name, '@');
        if (at && at != name)
            len = (size_t)(at - name);
    }
    return len;
}

static void conn_unlink_entry(will_entry_t *e)
{
    if (!e->wc)
        return;
    if (e->cprev)
        e->cprev->cnext = e->cnext;
    else
        e->wc->entries = e->cnext;
    if (e->cnext)
        e->cnext->cprev = e->cprev;
    e->cprev = e->cnext = NULL;
    e->wc = NULL;
    e->link = NULL;
}

static void conn_link_entry(will_conn_t *wc, will_entry_t *e, pn_link_t *link)
{
    conn_unlink_entry(e);
    e->wc = wc;
    e->link = link;
    e->cprev = NULL;
    e->cnext = wc->entries;
    if (wc->entries)
        wc->entries->cprev = e;
    wc->entries = e;
}

static void svc_remove(gw_will_service_t *svc, will_entry_t *e)
{
    will_entry_t **pp = &svc->buckets[svc_hash(e->name) & (svc->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    svc->nentries--;
    conn_unlink_entry(e);
    if (e->timer)
        event_free(e->timer);
    free(e);
}

/* ------------------------------------------------------------------ */
/* Publication decisions                                               */
/* ------------------------------------------------------------------ */

/* The owner is gone for good: move the will to the publishing set (so that
 * it is published exactly once by this process, and again after a crash
 * only if its outcome was not recorded) and hand it to the publisher. */
static void svc_publish(gw_will_service_t *svc, will_entry_t *e)
{
    gw_will_rec_t *rec = NULL;
    /* A put of this will may still be in the open batch: commit it (and
     * acknowledge it) first; the move then finds it, or finds nothing if
     * the commit failed (and the will was rejected). */
    (void)svc_batch_commit(svc);
    gw_err_t err = gw_will_store_mark_publishing(svc->store, e->name, &rec);
    if (err == GW_OK) {
        GW_LOG_INFO(WILL_MOD, e->name, "publishing will topic=%s qos=%u retain=%d", rec->topic,
                    (unsigned)rec->qos, (int)rec->retain);
        gw_will_publisher_enqueue(svc->pub, rec, false);
        svc_count_wills(svc);
    } else if (err == GW_ERR_NOT_FOUND) {
        GW_LOG_DEBUG(WILL_MOD, e->name, "link lost, no will stored");
    } else {
        /* Still held in the store: treated as an orphan at the next start. */
        GW_LOG_ERROR(WILL_MOD, e->name, "cannot mark will for publication: %s",
                     gw_err_str(err));
    }
    svc_remove(svc, e);
}

static void svc_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    will_entry_t *e = arg;
    svc_publish(e->svc, e);
}

/* The owner of e was lost abnormally. */
static void svc_owner_lost(gw_will_service_t *svc, will_entry_t *e, const char *why)
{
    conn_unlink_entry(e);
    if (svc->stopping) {
        /* Our own shutdown is not the client's failure: the will stays
         * held and gets the grace period after the restart. */
        svc_remove(svc, e);
        return;
    }
    GW_LOG_INFO(WILL_MOD, e->name, "will link lost: %s", why);
    if (svc->cfg->will_delay > 0) {
        if (!e->timer)
            e->timer = evtimer_new(svc->base, svc_delay_cb, e);
        if (e->timer) {
            struct timeval tv = {.tv_sec = svc->cfg->will_delay / 1000,
                                 .tv_usec = (svc->cfg->will_delay % 1000) * 1000};
            e->state = WE_DELAY;
            evtimer_add(e->timer, &tv);
            return;
        }
    }
    svc_publish(svc, e);
}

static void svc_grace_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_will_service_t *svc = arg;
    size_t n = 0;
    for (size_t i = 0; i < svc->nbuckets; i++) {
        will_entry_t *e = svc->buckets[i], *next;
        for (; e; e = next) {
            next = e->hnext;
            if (e->state == WE_ORPHAN) {
                n++;
                svc_publish(svc, e); /* removes e only: next stays valid */
            }
        }
    }
    if (n)
        GW_LOG_INFO(WILL_MOD, NULL, "grace period over: %zu orphaned wills published", n);
}

/* ------------------------------------------------------------------ */
/* Links                                                               */
/* ------------------------------------------------------------------ */

static void svc_link_opened(will_conn_t *wc, pn_link_t *link)
{
    gw_will_service_t *svc = wc->svc;
    const char *name = pn_link_name(link);
    const char *addr = pn_terminus_get_address(pn_link_remote_target(link));

    if (pn_link_is_sender(link) || !addr || strcmp(addr, svc->cfg->address) != 0) {
        /* Only senders to our address make sense here. */
        pn_terminus_copy(pn_link_source(link), pn_link_remote_source(link));
        pn_terminus_copy(pn_link_target(link), pn_link_remote_target(link));
        pn_link_open(link);
        gw_amqp_link_close(link, "amqp:not-found", "only senders to the will service address");
        return;
    }
    if (svc->stopping) {
        pn_link_open(link);
        gw_amqp_link_close(link, "amqp:connection:forced", "will service stopping");
        return;
    }
    pn_terminus_copy(pn_link_source(link), pn_link_remote_source(link));
    pn_terminus_copy(pn_link_target(link), pn_link_remote_target(link));
    pn_link_set_snd_settle_mode(link, pn_link_remote_snd_settle_mode(link));
    pn_link_set_rcv_settle_mode(link, PN_RCV_FIRST);
    pn_link_set_max_message_size(link, (uint64_t)svc->cfg->max_will_size);

    size_t klen = svc_key_len(wc, name);
    will_entry_t *e = svc_find_n(svc, name, klen);
    if (e && e->state == WE_ATTACHED) {
        /* Takeover across gateways: the newest link wins; no will published. */
        will_conn_t *old = e->wc;
        GW_SVC_INC(svc->stolen);
        GW_LOG_INFO(WILL_MOD, name, "will link stolen by a newer link (peer %s)",
                    gw_amqp_conn_peer(wc->base.conn));
        gw_amqp_link_close(e->link, GW_SPEC_COND_STOLEN,
                           "a newer link with the same name attached");
        conn_unlink_entry(e);
        if (old && old != wc)
            gw_amqp_conn_flush(old->base.conn);
    } else if (e) {
        /* Re-attached within the will delay or the grace period. */
        GW_LOG_INFO(WILL_MOD, name, "will link re-attached (%s): will kept",
                    e->state == WE_DELAY ? "within the will delay" : "within the grace period");
        if (e->timer)
            evtimer_del(e->timer);
    } else {
        e = svc_add_n(svc, name, klen, WE_ATTACHED);
        if (!e) {
            pn_link_open(link);
            gw_amqp_link_close(link, "amqp:resource-limit-exceeded", "out of memory");
            return;
        }
    }
    e->state = WE_ATTACHED;
    conn_link_entry(wc, e, link);
    pn_link_open(link);
    pn_link_flow(link, (int)svc->cfg->credit);
    GW_LOG_DEBUG(WILL_MOD, name, "will link attached peer=%s", gw_amqp_conn_peer(wc->base.conn));
}

/* The entry owned by this very link, or NULL (stolen, refused, unknown). */
static will_entry_t *svc_entry_of(will_conn_t *wc, pn_link_t *link)
{
    const char *name = pn_link_name(link);
    will_entry_t *e = svc_find_n(wc->svc, name, svc_key_len(wc, name));
    return e && e->state == WE_ATTACHED && e->link == link ? e : NULL;
}

static void svc_link_closed(will_conn_t *wc, pn_link_t *link, bool closed)
{
    gw_will_service_t *svc = wc->svc;
    will_entry_t *e = pn_link_is_receiver(link) ? svc_entry_of(wc, link) : NULL;
    pn_condition_t *c = pn_link_remote_condition(link);

    /* proton frees the link's deliveries with it: no outcome can go out. */
    svc_pending_purge(svc, wc, link);
    if (e) {
        if (!pn_condition_is_set(c)) {
            /* Clean DISCONNECT: the client's will must not be published.
             * The delete goes into the batch (no acknowledgement to wait
             * for), after any put of this link in the same batch. */
            gw_err_t err = svc_batch_begin(svc);
            if (err == GW_OK)
                err = gw_will_store_delete(svc->store, e->name);
            if (err == GW_OK)
                svc_batch_wrote(svc, wc, NULL, false, false);
            else if (err != GW_ERR_NOT_FOUND)
                GW_LOG_ERROR(WILL_MOD, e->name, "cannot delete will: %s", gw_err_str(err));
            GW_LOG_DEBUG(WILL_MOD, e->name, "will link closed cleanly: will discarded");
            svc_remove(svc, e);
        } else if (strcmp(pn_condition_get_name(c), GW_SPEC_COND_STOLEN) == 0) {
            /* A peer (router, gateway) says a newer link owns the name: the
             * will stays in the store for it. */
            GW_LOG_INFO(WILL_MOD, e->name, "will link detached as stolen: will kept");
            svc_remove(svc, e);
        } else {
            char why[512];
            snprintf(why, sizeof why, "%s %s", pn_condition_get_name(c),
                     pn_condition_get_description(c) ? pn_condition_get_description(c) : "");
            svc_owner_lost(svc, e, why);
        }
    }
    if (!(pn_link_state(link) & PN_LOCAL_CLOSED)) {
        if (closed)
            pn_link_close(link);
        else
            pn_link_detach(link);
    }
    pn_link_free(link);
}

static void svc_delivery(will_conn_t *wc, pn_delivery_t *dlv)
{
    gw_will_service_t *svc = wc->svc;
    pn_link_t *link = pn_delivery_link(dlv);
    gw_spec_msg_t m;
    char why[256] = "";
    gw_err_t err;

    if (!pn_link_is_receiver(link) || !pn_delivery_readable(dlv))
        return;
    if (pn_delivery_aborted(dlv)) {
        if (pn_link_current(link) == dlv)
            pn_link_advance(link);
        pn_delivery_settle(dlv);
        pn_link_flow(link, 1);
        return;
    }
    will_entry_t *e = svc_entry_of(wc, link);
    if (pn_delivery_get_context(dlv) == svc ||
        pn_delivery_pending(dlv) > (size_t)svc->cfg->max_will_size) {
        /* Too large: discard what arrived (memory stays bounded), remember
         * the verdict on the delivery, refuse it once complete. */
        char scratch[4096];
        while (pn_link_recv(link, scratch, sizeof scratch) > 0)
            ;
        if (pn_delivery_partial(dlv)) {
            pn_delivery_set_context(dlv, svc);
            return;
        }
        pn_link_advance(link);
        GW_SVC_INC(svc->malformed);
        snprintf(why, sizeof why, "will message larger than max-will-size (%lld bytes)",
                 (long long)svc->cfg->max_will_size);
        GW_LOG_WARN(WILL_MOD, pn_link_name(link), "will message refused: %s", why);
        svc_reply(link, dlv, PN_REJECTED, GW_ERR_LIMIT, why);
        return;
    }
    if (pn_delivery_partial(dlv))
        return; /* the rest comes in later frames */
    /* pn_message_decode() does not clear: no field of a previous message
     * may survive into this one. */
    pn_message_clear(svc->msg);
    err = gw_amqp_recv(wc->base.conn, dlv, svc->msg, (size_t)svc->cfg->max_will_size);
    if (err == GW_ERR_AGAIN)
        return;
    if (pn_link_current(link) == dlv)
        pn_link_advance(link);
    if (!e) {
        /* A link that lost its name to a newer one: its messages no longer count. */
        svc_reply(link, dlv, PN_RELEASED, GW_OK, NULL);
        return;
    }
    if (err != GW_OK) {
        GW_SVC_INC(svc->malformed);
        snprintf(why, sizeof why, "%s", gw_err_str(err));
        GW_LOG_WARN(WILL_MOD, e->name, "will message refused: %s", why);
        svc_reply(link, dlv, PN_REJECTED, err, why);
        return;
    }
    err = gw_spec_decode_kinds(svc->msg,
                               GW_SPEC_KIND_BIT(GW_SPEC_WILL) |
                                   GW_SPEC_KIND_BIT(GW_SPEC_WILL_CLEAR),
                               &m, why, sizeof why);
    if (err != GW_OK) {
        GW_SVC_INC(svc->malformed);
        if (!why[0])
            snprintf(why, sizeof why, "%s", gw_err_str(err));
        GW_LOG_WARN(WILL_MOD, e->name, "will message refused: %s", why);
        svc_reply(link, dlv, PN_REJECTED, err, why);
        return;
    }
    if (m.kind == GW_SPEC_WILL) {
        gw_will_t w = {.topic = m.publish.topic.ptr,
                       .topic_len = m.publish.topic.len,
                       .payload = m.publish.payload.ptr,
                       .payload_len = m.publish.payload.len,
                       .qos = m.publish.qos,
                       .retain = m.publish.retain};
        /* Accepted only once durably stored: after the batch commit. */
        err = svc_batch_begin(svc);
        if (err == GW_OK)
            err = gw_will_store_put(svc->store, e->name, &w);
        if (err == GW_OK)
            GW_LOG_DEBUG(WILL_MOD, e->name, "will stored topic=%.*s qos=%u retain=%d",
                         (int)w.topic_len, w.topic, (unsigned)w.qos, (int)w.retain);
    } else {
        err = svc_batch_begin(svc);
        if (err == GW_OK)
            err = gw_will_store_delete(svc->store, e->name);
        if (err == GW_ERR_NOT_FOUND)
            err = GW_OK;
        if (err == GW_OK)
            GW_LOG_DEBUG(WILL_MOD, e->name, "will cleared");
    }
    bool clear = m.kind != GW_SPEC_WILL;
    gw_spec_msg_clear(&m);
    if (err == GW_OK)
        svc_batch_wrote(svc, wc, dlv, !clear, clear);
    else
        svc_reply(link, dlv, PN_REJECTED, err, "will store failure");
}

/* A session ended while some of its links were still attached: those
 * owners are lost (AMQP 1.0 2.7.6: end implies detach). */
static void svc_session_closed(will_conn_t *wc, pn_session_t *ssn)
{
    will_entry_t *next;
    for (will_entry_t *e = wc->entries; e; e = next) {
        next = e->cnext;
        if (pn_link_session(e->link) == ssn)
            svc_owner_lost(wc->svc, e, "session ended with the link attached");
    }
    if (!(pn_session_state(ssn) & PN_LOCAL_CLOSED))
        pn_session_close(ssn);
}

static void svc_on_event(gw_amqp_conn_t *conn, pn_event_t *ev, void *ctx)
{
    will_conn_t *wc = ctx;
    switch (pn_event_type(ev)) {
    case PN_SESSION_REMOTE_OPEN: {
        pn_session_t *ssn = pn_event_session(ev);
        if (pn_session_state(ssn) & PN_LOCAL_UNINIT)
            pn_session_open(ssn);
        break;
    }
    case PN_SESSION_REMOTE_CLOSE:
        svc_session_closed(wc, pn_event_session(ev));
        break;
    case PN_LINK_REMOTE_OPEN: {
        pn_link_t *link = pn_event_link(ev);
        if (pn_link_state(link) & PN_LOCAL_UNINIT)
            svc_link_opened(wc, link);
        break;
    }
    case PN_LINK_REMOTE_CLOSE:
        svc_link_closed(wc, pn_event_link(ev), true);
        break;
    case PN_LINK_REMOTE_DETACH:
        svc_link_closed(wc, pn_event_link(ev), false);
        break;
    case PN_DELIVERY:
        svc_delivery(wc, pn_event_delivery(ev));
        break;
    default:
        break;
    }
}

static void svc_maybe_done(gw_will_service_t *svc)
{
    if (svc->stopping && !svc->conns.head && gw_will_publisher_closed(svc->pub))
        event_base_loopbreak(svc->base);
}

static void svc_on_state(gw_amqp_conn_t *conn, gw_amqp_state_t st, const char *cond,
                         const char *desc, void *ctx)
{
    will_conn_t *wc = ctx;
    gw_will_service_t *svc = wc->svc;
    switch (st) {
    case GW_AMQP_UP:
        GW_LOG_INFO(WILL_MOD, NULL, "connection up peer=%s%s", gw_amqp_conn_peer(conn),
                    wc->base.outgoing ? " (router)" : "");
        gw_svc_conns_state(&svc->conns, &wc->base, st);
        break;
    case GW_AMQP_DOWN: {
        char why[512];
        gw_svc_conns_state(&svc->conns, &wc->base, st);
        snprintf(why, sizeof why, "connection lost: %s %s", cond ? cond : "closed",
                 desc ? desc : "");
        GW_LOG_INFO(WILL_MOD, NULL, "connection down peer=%s: %s %s", gw_amqp_conn_peer(conn),
                    cond ? cond : "closed", desc ? desc : "");
        /* Every link of the connection is gone (and freed after we return);
         * their writes stay in the batch, their outcomes are dropped. */
        svc_pending_purge(svc, wc, NULL);
        while (wc->entries)
            svc_owner_lost(svc, wc->entries, why);
        break;
    }
    case GW_AMQP_CLOSED:
        svc_pending_purge(svc, wc, NULL);
        while (wc->entries)
            svc_owner_lost(svc, wc->entries, "connection closed");
        gw_svc_conns_remove(&svc->conns, &wc->base);
        free(wc);
        svc_maybe_done(svc);
        break;
    }
}

static const gw_amqp_handler_t svc_handler = {svc_on_event, svc_on_state};

static will_conn_t *svc_conn_new(gw_will_service_t *svc, bool outgoing)
{
    will_conn_t *wc = calloc(1, sizeof *wc);
    if (!wc)
        return NULL;
    wc->svc = svc;
    gw_svc_conns_insert(&svc->conns, &wc->base, outgoing);
    return wc;
}

static void svc_accept(gw_amqp_listener_t *lst, gw_amqp_conn_t *conn, void *ctx)
{
    gw_will_service_t *svc = ctx;
    will_conn_t *wc = svc_conn_new(svc, false);
    if (!wc) {
        gw_amqp_conn_destroy(conn);
        return;
    }
    wc->base.conn = conn;
    gw_amqp_conn_set_handler(conn, &svc_handler, wc);
}

/* ------------------------------------------------------------------ */
/* Start and stop                                                      */
/* ------------------------------------------------------------------ */

static gw_err_t svc_load_publishing(gw_will_rec_t *rec, void *ctx)
{
    gw_will_service_t *svc = ctx;
    GW_LOG_INFO(WILL_MOD, rec->name, "resuming publication of will id=%lld topic=%s",
                (long long)rec->id, rec->topic);
    gw_will_publisher_enqueue(svc->pub, rec, true);
    return GW_OK;
}

static gw_err_t svc_load_held(gw_will_rec_t *rec, void *ctx)
{
    gw_will_service_t *svc = ctx;
    will_entry_t *e = svc_add(svc, rec->name, WE_ORPHAN);
    gw_will_rec_free(rec);
    return e ? GW_OK : GW_ERR_NOMEM;
}

static void svc_publisher_closed(void *ctx) { svc_maybe_done(ctx); }

gw_err_t gw_will_service_start(struct event_base *base, const gw_will_config_t *cfg,
                               gw_will_service_t **out)
{
    gw_err_t err;
    gw_amqp_opts_t opts;
    gw_will_service_t *svc = calloc(1, sizeof *svc);

    *out = NULL;
    if (!svc)
        return GW_ERR_NOMEM;
    svc->base = base;
    svc->cfg = cfg;
    svc->nbuckets = 64;
    svc->buckets = calloc(svc->nbuckets, sizeof *svc->buckets);
    svc->msg = pn_message();
    svc->grace_timer = evtimer_new(base, svc_grace_cb, svc);
    svc->commit_ev = event_new(base, -1, 0, svc_commit_cb, svc);
    if (!svc->buckets || !svc->msg || !svc->grace_timer || !svc->commit_ev) {
        err = GW_ERR_NOMEM;
        goto cleanup;
    }
    err = gw_will_store_open(cfg->store, (gw_will_sync_t)cfg->store_sync, &svc->store);
    if (err != GW_OK)
        goto cleanup;
    err = gw_will_publisher_new(base, cfg, svc->store, &svc->pub);
    if (err != GW_OK)
        goto cleanup;
    gw_will_publisher_on_closed(svc->pub, svc_publisher_closed, svc);

    /* Publications decided before a stop or crash resume at once; held
     * wills wait for their owners during the grace period. */
    err = gw_will_store_list_publishing(svc->store, svc_load_publishing, svc);
    if (err == GW_OK)
        err = gw_will_store_list(svc->store, svc_load_held, svc);
    if (err != GW_OK)
        goto cleanup;
    if (svc->nentries) {
        struct timeval tv = {.tv_sec = cfg->grace_seconds};
        GW_LOG_INFO(WILL_MOD, NULL, "%zu stored wills wait %llds for their links",
                    svc->nentries, (long long)cfg->grace_seconds);
        evtimer_add(svc->grace_timer, &tv);
    }

    svc_count_wills(svc);
    err = gw_svc_listen(base, &cfg->common, WILL_MOD, false, svc_accept, svc, &svc->lst);
    if (err != GW_OK)
        goto cleanup;
    GW_SVC_SET(svc->listening, svc->lst != NULL);
    if (cfg->common.connect) {
        will_conn_t *wc = svc_conn_new(svc, true);
        if (!wc) {
            err = GW_ERR_NOMEM;
            goto cleanup;
        }
        gw_will_config_amqp_opts(cfg, false, &opts);
        wc->base.conn = gw_svc_connect(base, &cfg->common, WILL_MOD, &opts, &svc_handler, wc, &err);
        if (!wc->base.conn)
            goto cleanup;
    }
    *out = svc;
    svc = NULL;
    err = GW_OK;
cleanup:
    gw_will_service_free(svc);
    return err;
}

uint16_t gw_will_service_port(const gw_will_service_t *svc)
{
    return svc->lst ? gw_amqp_listener_port(svc->lst) : 0;
}

void gw_will_service_stop(gw_will_service_t *svc)
{
    if (svc->stopping)
        return;
    svc->stopping = true;
    /* Wills waiting for the commit are acknowledged before the close. */
    (void)svc_batch_commit(svc);
    GW_LOG_INFO(WILL_MOD, NULL, "stopping: stored wills are kept");
    if (svc->lst) {
        gw_amqp_listener_free(svc->lst);
        svc->lst = NULL;
        GW_SVC_SET(svc->listening, 0);
    }
    evtimer_del(svc->grace_timer);
    gw_svc_conns_close_all(&svc->conns);
    gw_will_publisher_close(svc->pub);
    /* gw_svc_main breaks the loop after its stop bound (3 s) if peers linger. */
    svc_maybe_done(svc);
}

void gw_will_service_free(gw_will_service_t *svc)
{
    if (!svc)
        return;
    svc->stopping = true; /* nothing is published from here on */
    if (svc->store)
        (void)svc_batch_commit(svc); /* durable; the outcomes go nowhere now */
    if (svc->lst)
        gw_amqp_listener_free(svc->lst);
    while (svc->conns.head) {
        will_conn_t *wc = (will_conn_t *)svc->conns.head;
        gw_svc_conns_remove(&svc->conns, &wc->base);
        while (wc->entries)
            conn_unlink_entry(wc->entries);
        if (wc->base.conn)
            gw_amqp_conn_destroy(wc->base.conn);
        free(wc);
    }
    gw_will_publisher_free(svc->pub);
    if (svc->buckets) {
        for (size_t i = 0; i < svc->nbuckets; i++) {
            while (svc->buckets[i]) {
                will_entry_t *e = svc->buckets[i];
                svc->buckets[i] = e->hnext;
                if (e->timer)
                    event_free(e->timer);
                free(e);
            }
        }
        free(svc->buckets);
    }
    if (svc->grace_timer)
        event_free(svc->grace_timer);
    if (svc->commit_ev)
        event_free(svc->commit_ev);
    free(svc->pending);
    if (svc->msg)
        pn_message_free(svc->msg);
    GW_LOG_INFO(WILL_MOD, NULL,
                "stats stored=%llu cleared=%llu malformed=%llu stolen=%llu commits=%llu",
                (unsigned long long)svc->stored, (unsigned long long)svc->cleared,
                (unsigned long long)svc->malformed, (unsigned long long)svc->stolen,
                (unsigned long long)svc->commits);
    gw_will_store_close(svc->store);
    free(svc);
}

/* ------------------------------------------------------------------ */
/* Health and metrics (HTTP thread: GW_SVC_GET only)                   */
/* ------------------------------------------------------------------ */

bool gw_will_service_ready(void *arg, char *why, size_t whylen)
{
    gw_will_service_t *svc = arg;
    if (!GW_SVC_GET(svc->listening) && GW_SVC_GET(svc->conns.routers_up) <= 0) {
        snprintf(why, whylen, "no listener and no router connection");
        return false;
    }
    if (!GW_SVC_GET(gw_will_publisher_stats_ref(svc->pub)->up)) {
        snprintf(why, whylen, "publisher connection to --publish-url is down");
        return false;
    }
    return true;
}

void gw_will_service_collect(gw_metrics_writer_t *w, void *arg)
{
    gw_will_service_t *svc = arg;
    const gw_will_pub_stats_t *ps = gw_will_publisher_stats_ref(svc->pub);
    static const char *const qos_labels[3] = {"qos=\"0\"", "qos=\"1\"", "qos=\"2\""};

    gw_metrics_gauge(w, "gw_will_wills", "wills in the store", "state=\"held\"",
                     (double)GW_SVC_GET(svc->held));
    gw_metrics_gauge(w, "gw_will_wills", "wills in the store", "state=\"publishing\"",
                     (double)GW_SVC_GET(ps->pending));
    gw_metrics_counter(w, "gw_will_stored_total", "AMQP_WILL messages stored", NULL,
                       GW_SVC_GET(svc->stored));
    gw_metrics_counter(w, "gw_will_cleared_total", "AMQP_WILL_CLEAR messages handled", NULL,
                       GW_SVC_GET(svc->cleared));
    gw_metrics_counter(w, "gw_will_rejects_total",
                       "will messages rejected (malformed or too large)", NULL,
                       GW_SVC_GET(svc->malformed));
    gw_metrics_counter(w, "gw_will_stolen_total", "will links detached with amqp:link:stolen",
                       NULL, GW_SVC_GET(svc->stolen));
    for (int q = 0; q < 3; q++)
        gw_metrics_counter(w, "gw_will_published_total",
                           "wills published (QoS 0 sent, QoS 1/2 accepted)", qos_labels[q],
                           GW_SVC_GET(ps->published_qos[q]));
    gw_metrics_counter(w, "gw_will_publish_retries_total", "will publications sent again", NULL,
                       GW_SVC_GET(ps->retried));
    gw_metrics_counter(w, "gw_will_publish_rejected_total",
                       "will publications rejected by the peer", NULL,
                       GW_SVC_GET(ps->rejected));
    gw_metrics_counter(w, "gw_will_publish_dropped_total",
                       "will publications given up after --max-rejects", NULL,
                       GW_SVC_GET(ps->dropped));
    gw_metrics_gauge(w, "gw_will_publisher_up", "publisher connection up", NULL,
                     (double)GW_SVC_GET(ps->up));
    gw_metrics_gauge(w, "gw_will_router_connections_up", "router connections up", NULL,
                     (double)GW_SVC_GET(svc->conns.routers_up));
    gw_metrics_counter(w, "gw_will_store_commits_total",
                       "will store transactions committed (one per group commit of "
                       "AMQP_WILL/AMQP_WILL_CLEAR/clean-detach writes, one per will moved "
                       "to publishing or published outside a batch)",
                       NULL, GW_SVC_GET(svc->commits));
    GW_SVC_HIST_WRITE(w, "gw_will_store_seconds",
                      "latency of will store group commits (one observation per batch "
                      "commit, not per will)",
                      &svc->store_lat);
}
