/*
 * service.c - will links on $mqtt.lwtservice and the life of each will.
 *
 * One entry per client id (= the key of a will, spec 2.2 rule 2) that has
 * an owner, waits for its will delay, or is an orphan of a restart. The
 * will itself lives only in the store; the entry says who owns it and what
 * happens when the owner goes away. Two kinds of owner (spec 5.1):
 *
 *  - a per-client link (L1), whose NAME is the client id:
 *
 *   detach/close without error          -> delete the will, publish nothing
 *   detach with amqp:link:stolen        -> nothing (a newer link owns it)
 *   detach with any other error,
 *   session ended, connection lost      -> publish after --will-delay unless
 *                                          the name re-attaches meanwhile
 *   newer link with the same name       -> older detached with amqp:link:stolen;
 *                                          the will stays, owned by the newer link
 *
 *  - a shared will link (L1s: target capability mqtt-shared-will), one per
 *    gateway connection, whose messages name their client in the
 *    correlation-id (spec 3.4a, 5.1 rules 11-16). Its name is no key. It
 *    owns the wills its AMQP_WILLs stored; AMQP_WILL_CLEAR deletes and
 *    AMQP_WILL_PUBLISH publishes (after --will-delay) a will only while the
 *    link still owns it; a newer AMQP_WILL for that client on another link,
 *    or a per-client L1 of that name, takes the will over silently. The
 *    L1s detached (with or without an error) or lost with its connection:
 *    every will it still owns is published.
 *
 *   restart                             -> every held will is an orphan for
 *                                          --grace-seconds, then published
 *
 * Memory: an idle client with a will on an L1s costs one entry (about 48
 * bytes + its id) and no proton link; the entries an L1s owns are on a list
 * of that link, so its loss visits only them. Entries waiting for the will
 * delay are on one FIFO (every delay has the same length) under one timer.
 *
 * Incoming links are accepted on any connection: accepted ones (--listen)
 * and the outgoing one to a router (--connect), where link-routed attaches
 * arrive.
 *
 * Group commit (as in subscription-service): the first store write of a
 * loop iteration (AMQP_WILL put, AMQP_WILL_CLEAR or clean-detach delete,
 * the move of a will to the publishing set) opens a batch transaction and
 * activates commit_ev; the writes that follow go into the same
 * transaction, in the order the events arrive, so a put and a delete of one
 * name end in the right state. The deliveries wait in svc->pending and are
 * settled `accepted` only right after the COMMIT (spec "Will Service": a
 * will is acknowledged once durably stored); commit_ev runs once the events
 * already queued in this iteration are handled, or sooner when --batch-max
 * writes wait. A failed commit rolls the whole batch back and settles its
 * deliveries `rejected` (as a failed write did before). Wills moved to the
 * publishing set in a batch are handed to the publisher only after its
 * commit: a will stored earlier in the same batch is durable and
 * acknowledged before it is published, and it is published once.
 *
 * Order of outcomes on an L1s: its messages are processed in order, and
 * their outcomes are settled in that order (a message that needs no write
 * waits behind the earlier ones of its link that wait for the commit; a
 * refusal commits the batch first).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proton/codec.h>
#include <proton/condition.h>
#include <proton/disposition.h>
#include <proton/terminus.h>
#include <proton/transport.h>

#include "gw/log.h"
#include "gw/mqtt.h"
#include "gw/spec.h"
#include "will.h"

/* spec 2.2 (L1s), 3.4a */
#define WILL_CAP_SHARED GW_SPEC_CAP_SHARED_WILL
#define WILL_SUBJECT_PUBLISH "will-publish"
#define WILL_REASON_MAX 200 /* bytes of an AMQP_WILL_PUBLISH reason kept for the log */

typedef struct will_conn will_conn_t;
typedef struct will_shared will_shared_t;

typedef enum entry_state {
    WE_NONE,     /* between two states (never seen outside one call) */
    WE_ATTACHED, /* owned by an attached per-client link (L1) */
    WE_SHARED,   /* owned by a shared will link (L1s) */
    WE_DELAY,    /* owner lost; publication after the will delay */
    WE_ORPHAN,   /* found in the store at start-up; grace period */
} entry_state_t;

typedef struct will_entry {
    struct will_entry *hnext; /* hash chain */
    /* The list the entry is on: its owner's (WE_ATTACHED: wc->entries,
     * WE_SHARED: sl->entries) or the delay FIFO (WE_DELAY). */
    struct will_entry *cprev, *cnext;
    union {
        struct {
            will_conn_t *wc; /* WE_ATTACHED */
            pn_link_t *link; /* WE_ATTACHED */
        };
        will_shared_t *sl; /* WE_SHARED */
        uint64_t due_us;   /* WE_DELAY: publish at (gw_svc_now_us) */
    };
    uint8_t state; /* entry_state_t */
    char name[];   /* the client id (key) */
} will_entry_t;

/* A delivery settled once the batch holding its write is committed. */
typedef struct will_pending {
    pn_delivery_t *dlv;
    pn_link_t *link;
    will_conn_t *wc;
    bool accept; /* needs no write (L1s, kept in order): accepted even if the commit fails */
} will_pending_t;

/* A shared will link (L1s). pn_link_get_context() of its link points here. */
struct will_shared {
    struct will_shared *prev, *next; /* wc->shared */
    will_conn_t *wc;
    pn_link_t *link;
    will_entry_t *entries; /* the wills this link owns (WE_SHARED) */
    uint64_t batch;        /* == svc->batch_seq: outcomes of this link wait in svc->pending */
};

struct will_conn {
    gw_svc_conn_t base; /* first: list of the service's connections, conn, outgoing */
    gw_will_service_t *svc;
    will_entry_t *entries;  /* attached per-client entries on this connection */
    will_shared_t *shared;  /* shared will links on this connection */
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
    struct event *delay_timer;            /* head of the delay FIFO */
    will_entry_t *delay_head, *delay_tail; /* WE_DELAY entries, oldest first */
    pn_message_t *msg;
    bool stopping;
    /* Group commit */
    struct event *commit_ev;  /* activated by the first write of a batch */
    will_pending_t *pending;  /* settled after the commit */
    size_t npending, cappending;
    gw_will_rec_t **moved;    /* moved to publishing in the open batch: published after it */
    size_t nmoved, capmoved;
    size_t batch_writes;      /* writes in the open batch (bound: --batch-max) */
    uint64_t batch_seq;       /* incremented by every svc_batch_commit */
    uint64_t batch_stored, batch_cleared; /* counted once the batch is committed */
    /* Metrics: written by the loop thread with GW_SVC_SET/INC, read by the
     * HTTP thread with GW_SVC_GET. */
    uint64_t stored, cleared, malformed, stolen;
    uint64_t publish_requests; /* AMQP_WILL_PUBLISH received */
    uint64_t commits; /* store commits (batches and single transactions) */
    int64_t held;     /* wills held in the store (gauge) */
    int64_t shared_links;  /* attached L1s (gauge) */
    int64_t shared_owned;  /* wills owned by an L1s (gauge) */
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

/* The L1s a link is, or NULL (per-client links have no context). */
static will_shared_t *svc_shared_of(pn_link_t *link)
{
    return link ? pn_link_get_context(link) : NULL;
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
 * is acknowledged). Then hand the wills moved to publishing in the batch
 * to the publisher (or, if the commit failed, leave them held: published
 * after the next restart's grace period).
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
                         "will store commit failed: %zu writes rolled back, %zu wills rejected, "
                         "%zu publications left held",
                         svc->batch_writes, svc->npending, svc->nmoved);
    }
    for (size_t i = 0; i < svc->npending; i++) {
        will_pending_t *p = &svc->pending[i];
        if (err != GW_OK && !p->accept)
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
    svc->batch_seq++;
    /* The publisher may open the next batch (its deletes, on_write), never
     * move a will: nothing is added to moved while it is walked. */
    size_t nmoved = svc->nmoved;
    svc->nmoved = 0;
    for (size_t i = 0; i < nmoved; i++) {
        if (err == GW_OK)
            gw_will_publisher_enqueue(svc->pub, svc->moved[i], false);
        else
            gw_will_rec_free(svc->moved[i]);
        svc->moved[i] = NULL;
    }
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

/* Publisher hook: its deletes of finished publications join the batch. */
static void svc_publisher_write(void *ctx) { (void)svc_batch_begin(ctx); }

/* Queue dlv's settlement behind the open batch. False if out of memory. */
static bool svc_pending_push(gw_will_service_t *svc, will_conn_t *wc, pn_delivery_t *dlv,
                             bool accept)
{
    if (svc->npending == svc->cappending) {
        size_t cap = svc->cappending ? svc->cappending * 2 : 64;
        will_pending_t *p = realloc(svc->pending, cap * sizeof *p);
        if (!p)
            return false;
        svc->pending = p;
        svc->cappending = cap;
    }
    pn_link_t *link = pn_delivery_link(dlv);
    svc->pending[svc->npending++] =
        (will_pending_t){.dlv = dlv, .link = link, .wc = wc, .accept = accept};
    will_shared_t *sl = svc_shared_of(link);
    if (sl)
        sl->batch = svc->batch_seq;
    return true;
}

/* One write was made into the batch (dlv: its delivery, NULL if it needs
 * no acknowledgement; stored: an AMQP_WILL put, cleared: an AMQP_WILL_CLEAR).
 * Commits now when --batch-max writes wait. */
static void svc_batch_wrote(gw_will_service_t *svc, will_conn_t *wc, pn_delivery_t *dlv,
                            bool stored, bool cleared)
{
    svc->batch_stored += stored;
    svc->batch_cleared += cleared;
    if (dlv && !svc_pending_push(svc, wc, dlv, false)) {
        /* Cannot wait: make it durable now, then settle. */
        gw_err_t err = svc_batch_commit(svc);
        svc_reply(pn_delivery_link(dlv), dlv, err == GW_OK ? PN_ACCEPTED : PN_REJECTED, err,
                  "will store failure");
        return;
    }
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

/*
 * Settle a delivery of an L1s in the order its link's messages were
 * processed: behind those of the link still waiting for the commit.
 * `accepted` waits in the queue; a refusal commits the batch first (rare:
 * malformed messages, store failures).
 */
static void svc_shared_reply(gw_will_service_t *svc, will_conn_t *wc, will_shared_t *sl,
                             pn_delivery_t *dlv, uint64_t outcome, gw_err_t err,
                             const char *desc)
{
    if (sl->batch == svc->batch_seq) {
        if (outcome == PN_ACCEPTED && svc_pending_push(svc, wc, dlv, true))
            return;
        (void)svc_batch_commit(svc);
        /* proton batches `accepted` dispositions into ranges that go out at
         * the end of an output pass, but writes any other outcome at once:
         * end a pass now so that the earlier outcomes precede this one on
         * the wire too. (Output is only encoded here; the connection
         * writes it as usual.) */
        pn_transport_t *t =
            pn_connection_transport(pn_session_connection(pn_link_session(sl->link)));
        if (t)
            (void)pn_transport_pending(t);
    }
    svc_reply(sl->link, dlv, outcome, err, desc);
}

/* Settle a delivery at once, in order on an L1s (see svc_shared_reply). */
static void svc_refuse(gw_will_service_t *svc, will_conn_t *wc, pn_delivery_t *dlv,
                       uint64_t outcome, gw_err_t err, const char *desc)
{
    pn_link_t *link = pn_delivery_link(dlv);
    will_shared_t *sl = svc_shared_of(link);
    if (sl)
        svc_shared_reply(svc, wc, sl, dlv, outcome, err, desc);
    else
        svc_reply(link, dlv, outcome, err, desc);
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

/* A new entry in state WE_NONE (the caller gives it a state at once).
 * name: len bytes, no NUL among them. */
static will_entry_t *svc_add_n(gw_will_service_t *svc, const char *name, size_t len)
{
    will_entry_t *e = calloc(1, sizeof *e + len + 1);
    if (!e)
        return NULL;
    memcpy(e->name, name, len);
    e->name[len] = '\0';
    e->state = WE_NONE;
    if (svc->nentries >= svc->nbuckets)
        svc_grow(svc);
    size_t k = svc_hash_n(name, len) & (svc->nbuckets - 1);
    e->hnext = svc->buckets[k];
    svc->buckets[k] = e;
    svc->nentries++;
    return e;
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
 * keep the name as is. (On an L1s the key is the correlation-id, which no
 * router changes.)
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

/* Doubly linked lists of entries through cprev/cnext (tail may be NULL). */
static void list_unlink(will_entry_t **head, will_entry_t **tail, will_entry_t *e)
{
    if (e->cprev)
        e->cprev->cnext = e->cnext;
    else
        *head = e->cnext;
    if (e->cnext)
        e->cnext->cprev = e->cprev;
    else if (tail)
        *tail = e->cprev;
    e->cprev = e->cnext = NULL;
}

static void list_push_front(will_entry_t **head, will_entry_t *e)
{
    e->cprev = NULL;
    e->cnext = *head;
    if (*head)
        (*head)->cprev = e;
    *head = e;
}

/* Take e from its owner or the delay FIFO: state WE_NONE, on no list. */
static void svc_disown(gw_will_service_t *svc, will_entry_t *e)
{
    switch ((entry_state_t)e->state) {
    case WE_ATTACHED:
        if (e->wc)
            list_unlink(&e->wc->entries, NULL, e);
        break;
    case WE_SHARED:
        if (e->sl) {
            list_unlink(&e->sl->entries, NULL, e);
            GW_SVC_SET(svc->shared_owned, GW_SVC_GET(svc->shared_owned) - 1);
        }
        break;
    case WE_DELAY:
        list_unlink(&svc->delay_head, &svc->delay_tail, e);
        break;
    case WE_NONE:
    case WE_ORPHAN:
        break;
    }
    e->wc = NULL;
    e->link = NULL;
    e->state = WE_NONE;
}

/* e (WE_NONE) is now owned by the per-client link `link` of wc. */
static void svc_own_link(will_conn_t *wc, will_entry_t *e, pn_link_t *link)
{
    e->state = WE_ATTACHED;
    e->wc = wc;
    e->link = link;
    list_push_front(&wc->entries, e);
}

/* e (WE_NONE) is now owned by the L1s sl. */
static void svc_own_shared(gw_will_service_t *svc, will_shared_t *sl, will_entry_t *e)
{
    e->state = WE_SHARED;
    e->sl = sl;
    list_push_front(&sl->entries, e);
    GW_SVC_INC(svc->shared_owned);
}

static void svc_remove(gw_will_service_t *svc, will_entry_t *e)
{
    will_entry_t **pp = &svc->buckets[svc_hash(e->name) & (svc->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    svc->nentries--;
    svc_disown(svc, e);
    free(e);
}

/* ------------------------------------------------------------------ */
/* Publication decisions                                               */
/* ------------------------------------------------------------------ */

/* The owner is gone for good: move the will to the publishing set, in the
 * batch (so that it is published exactly once by this process, and again
 * after a crash only if its outcome was not recorded), and hand it to the
 * publisher once that batch is committed. Removes e. */
static void svc_publish(gw_will_service_t *svc, will_entry_t *e)
{
    gw_will_rec_t *rec = NULL;
    /* A put of this will may be earlier in the open batch: the move, in
     * the same transaction, finds it; if the commit fails both are undone
     * (the will was rejected, nothing is published). */
    gw_err_t err = svc_batch_begin(svc);
    if (err == GW_OK)
        err = gw_will_store_move_publishing(svc->store, e->name, &rec);
    if (err == GW_OK) {
        GW_LOG_INFO(WILL_MOD, e->name, "publishing will topic=%s qos=%u retain=%d", rec->topic,
                    (unsigned)rec->qos, (int)rec->retain);
    } else if (err == GW_ERR_NOT_FOUND) {
        GW_LOG_DEBUG(WILL_MOD, e->name, "link lost, no will stored");
    } else {
        /* Still held in the store: treated as an orphan at the next start. */
        GW_LOG_ERROR(WILL_MOD, e->name, "cannot mark will for publication: %s",
                     gw_err_str(err));
    }
    svc_remove(svc, e);
    if (err != GW_OK)
        return;
    if (svc->nmoved == svc->capmoved) {
        size_t cap = svc->capmoved ? svc->capmoved * 2 : 64;
        gw_will_rec_t **m = realloc(svc->moved, cap * sizeof *m);
        if (!m) {
            /* Cannot wait for the batch: commit it now. */
            if (svc_batch_commit(svc) == GW_OK)
                gw_will_publisher_enqueue(svc->pub, rec, false);
            else
                gw_will_rec_free(rec);
            return;
        }
        svc->moved = m;
        svc->capmoved = cap;
    }
    svc->moved[svc->nmoved++] = rec;
    svc_batch_wrote(svc, NULL, NULL, false, false);
}

/* Arm the delay timer for the head of the FIFO (if not armed). */
static void svc_delay_arm(gw_will_service_t *svc)
{
    if (!svc->delay_head || evtimer_pending(svc->delay_timer, NULL))
        return;
    uint64_t now = gw_svc_now_us(), due = svc->delay_head->due_us;
    uint64_t us = due > now ? due - now : 0;
    struct timeval tv = {.tv_sec = (time_t)(us / 1000000u),
                         .tv_usec = (suseconds_t)(us % 1000000u)};
    evtimer_add(svc->delay_timer, &tv);
}

static void svc_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_will_service_t *svc = arg;
    /* 1 ms of slack: libevent may fire a little early on a coarse clock. */
    uint64_t now = gw_svc_now_us() + 1000;
    while (svc->delay_head && svc->delay_head->due_us <= now)
        svc_publish(svc, svc->delay_head); /* removes the head */
    svc_delay_arm(svc);
}

/* The owner of e was lost abnormally (why: for the log). */
static void svc_owner_lost(gw_will_service_t *svc, will_entry_t *e, const char *why)
{
    svc_disown(svc, e);
    if (svc->stopping) {
        /* Our own shutdown is not the client's failure: the will stays
         * held and gets the grace period after the restart. */
        svc_remove(svc, e);
        return;
    }
    GW_LOG_INFO(WILL_MOD, e->name, "will link lost: %s", why);
    if (svc->cfg->will_delay > 0) {
        e->state = WE_DELAY;
        e->due_us = gw_svc_now_us() + (uint64_t)svc->cfg->will_delay * 1000u;
        /* Every delay has the same length: the FIFO is in deadline order. */
        e->cnext = NULL;
        e->cprev = svc->delay_tail;
        if (svc->delay_tail)
            svc->delay_tail->cnext = e;
        else
            svc->delay_head = e;
        svc->delay_tail = e;
        svc_delay_arm(svc);
        return;
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

/* The per-client link owning e is replaced (spec 5.1 rules 6, 11): detach
 * it with amqp:link:stolen. e is disowned. */
static void svc_steal(gw_will_service_t *svc, will_entry_t *e, will_conn_t *by, const char *who)
{
    will_conn_t *old = e->wc;
    GW_SVC_INC(svc->stolen);
    GW_LOG_INFO(WILL_MOD, e->name, "will link stolen by %s (peer %s)", who,
                gw_amqp_conn_peer(by->base.conn));
    gw_amqp_link_close(e->link, GW_SPEC_COND_STOLEN, who);
    svc_disown(svc, e);
    if (old && old != by)
        gw_amqp_conn_flush(old->base.conn);
}

/* spec 2.2 L1s: the target capabilities (a symbol or an array of symbols)
 * hold mqtt-shared-will. */
static bool svc_is_shared(pn_link_t *link)
{
    return gw_amqp_has_capability(pn_link_remote_target(link), WILL_CAP_SHARED);
}

/* An L1s attached (its termini are copied already). */
static void svc_shared_opened(will_conn_t *wc, pn_link_t *link)
{
    gw_will_service_t *svc = wc->svc;
    will_shared_t *sl = calloc(1, sizeof *sl);
    if (!sl) {
        pn_link_open(link);
        gw_amqp_link_close(link, "amqp:resource-limit-exceeded", "out of memory");
        return;
    }
    sl->wc = wc;
    sl->link = link;
    sl->next = wc->shared;
    if (wc->shared)
        wc->shared->prev = sl;
    wc->shared = sl;
    pn_link_set_context(link, sl);
    GW_SVC_INC(svc->shared_links);
    pn_link_open(link);
    /* A window of at least one group commit (spec 2.2 L1s): the gateway
     * can send a whole batch of wills before the first outcome. */
    int64_t credit = svc->cfg->batch_max > svc->cfg->credit ? svc->cfg->batch_max
                                                           : svc->cfg->credit;
    pn_link_flow(link, (int)credit);
    GW_LOG_INFO(WILL_MOD, NULL, "shared will link attached name=%s peer=%s credit=%lld",
                pn_link_name(link), gw_amqp_conn_peer(wc->base.conn), (long long)credit);
}

/* spec 5.1 rule 14: the L1s is gone (detached with or without an error,
 * session ended, connection lost): every will it still owns is published
 * (after the will delay). Frees sl; the link stays to the caller. */
static void svc_shared_lost(gw_will_service_t *svc, will_shared_t *sl, const char *why)
{
    will_conn_t *wc = sl->wc;
    size_t n = 0;
    if (sl->prev)
        sl->prev->next = sl->next;
    else
        wc->shared = sl->next;
    if (sl->next)
        sl->next->prev = sl->prev;
    pn_link_set_context(sl->link, NULL);
    GW_SVC_SET(svc->shared_links, GW_SVC_GET(svc->shared_links) - 1);
    while (sl->entries) {
        n++;
        svc_owner_lost(svc, sl->entries, why); /* disowns the head */
    }
    GW_LOG_INFO(WILL_MOD, NULL, "shared will link %s gone (%s): %zu wills %s",
                pn_link_name(sl->link), why, n, svc->stopping ? "kept" : "to publish");
    free(sl);
}

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

    if (svc_is_shared(link)) {
        /* spec 5.1 "Shared will links": the name is no key, no steal. */
        svc_shared_opened(wc, link);
        return;
    }

    size_t klen = svc_key_len(wc, name);
    will_entry_t *e = svc_find_n(svc, name, klen);
    if (e && e->state == WE_ATTACHED) {
        /* Takeover across gateways: the newest link wins; no will published. */
        svc_steal(svc, e, wc, "a newer link with the same name attached");
    } else if (e && e->state == WE_SHARED) {
        /* spec 5.1 rule 15: the per-client link takes the will over; the
         * L1s stays attached (it serves other clients). */
        GW_LOG_INFO(WILL_MOD, name, "will taken over from shared link %s by a per-client link",
                    pn_link_name(e->sl->link));
        svc_disown(svc, e);
    } else if (e) {
        /* Re-attached within the will delay or the grace period. */
        GW_LOG_INFO(WILL_MOD, name, "will link re-attached (%s): will kept",
                    e->state == WE_DELAY ? "within the will delay" : "within the grace period");
        svc_disown(svc, e);
    } else {
        e = svc_add_n(svc, name, klen);
        if (!e) {
            pn_link_open(link);
            gw_amqp_link_close(link, "amqp:resource-limit-exceeded", "out of memory");
            return;
        }
    }
    svc_own_link(wc, e, link);
    pn_link_open(link);
    pn_link_flow(link, (int)svc->cfg->credit);
    GW_LOG_DEBUG(WILL_MOD, name, "will link attached peer=%s", gw_amqp_conn_peer(wc->base.conn));
}

/* The entry owned by this very per-client link, or NULL (stolen, refused, unknown). */
static will_entry_t *svc_entry_of(will_conn_t *wc, pn_link_t *link)
{
    const char *name = pn_link_name(link);
    will_entry_t *e = svc_find_n(wc->svc, name, svc_key_len(wc, name));
    return e && e->state == WE_ATTACHED && e->link == link ? e : NULL;
}

static void svc_link_closed(will_conn_t *wc, pn_link_t *link, bool closed)
{
    gw_will_service_t *svc = wc->svc;
    will_shared_t *sl = pn_link_is_receiver(link) ? svc_shared_of(link) : NULL;
    will_entry_t *e = pn_link_is_receiver(link) && !sl ? svc_entry_of(wc, link) : NULL;
    pn_condition_t *c = pn_link_remote_condition(link);

    /* proton frees the link's deliveries with it: no outcome can go out. */
    svc_pending_purge(svc, wc, link);
    if (sl) {
        char why[512];
        if (pn_condition_is_set(c))
            snprintf(why, sizeof why, "detached: %s %s", pn_condition_get_name(c),
                     pn_condition_get_description(c) ? pn_condition_get_description(c) : "");
        else
            snprintf(why, sizeof why, "detached without error");
        svc_shared_lost(svc, sl, why);
    } else if (e) {
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

/* ------------------------------------------------------------------ */
/* Messages on a shared will link (spec 3.4a, 5.1 rules 11-16)         */
/* ------------------------------------------------------------------ */

/* The application property "reason" of an AMQP_WILL_PUBLISH, if it is a
 * string: copied into buf for the log (cut at a character boundary, control
 * characters replaced). NULL if absent or not a string (it is only logged:
 * a wrong type does not refuse the message). */
static const char *svc_reason(pn_message_t *msg, char *buf, size_t cap)
{
    pn_data_t *d = pn_message_properties(msg);
    const char *out = NULL;
    if (!d || cap == 0)
        return NULL;
    pn_data_rewind(d);
    if (pn_data_next(d) && pn_data_type(d) == PN_MAP && pn_data_enter(d)) {
        while (!out && pn_data_next(d)) {
            pn_type_t kt = pn_data_type(d);
            pn_bytes_t k = kt == PN_STRING   ? pn_data_get_string(d)
                           : kt == PN_SYMBOL ? pn_data_get_symbol(d)
                                             : pn_bytes(0, NULL);
            if (!pn_data_next(d))
                break;
            if (k.size != 6 || memcmp(k.start, "reason", 6) != 0 ||
                pn_data_type(d) != PN_STRING)
                continue;
            pn_bytes_t v = pn_data_get_string(d);
            size_t n = v.size;
            if (n > cap - 1) {
                n = cap - 1;
                while (n > 0 && ((unsigned char)v.start[n] & 0xC0) == 0x80)
                    n--;
            }
            for (size_t i = 0; i < n; i++)
                buf[i] = (unsigned char)v.start[i] < 0x20 ? '?' : v.start[i];
            buf[n] = '\0';
            out = buf;
        }
        pn_data_exit(d);
    }
    pn_data_rewind(d);
    return out;
}

/* The entry of cid if sl owns it (rules 12, 13, 16), else NULL. */
static will_entry_t *svc_owned_by(gw_will_service_t *svc, will_shared_t *sl, gw_spec_str_t cid)
{
    will_entry_t *e = svc_find_n(svc, cid.ptr, cid.len);
    return e && e->state == WE_SHARED && e->sl == sl ? e : NULL;
}

/* Rule 11: AMQP_WILL for cid on sl. */
static void svc_shared_will(will_conn_t *wc, will_shared_t *sl, pn_delivery_t *dlv,
                            gw_spec_str_t cid, const gw_spec_msg_t *m)
{
    gw_will_service_t *svc = wc->svc;
    gw_will_t w = {.topic = m->publish.topic.ptr,
                   .topic_len = m->publish.topic.len,
                   .payload = m->publish.payload.ptr,
                   .payload_len = m->publish.payload.len,
                   .qos = m->publish.qos,
                   .retain = m->publish.retain};
    will_entry_t *e = svc_find_n(svc, cid.ptr, cid.len);
    bool created = false;
    if (!e) {
        e = svc_add_n(svc, cid.ptr, cid.len);
        if (!e) {
            svc_shared_reply(svc, wc, sl, dlv, PN_REJECTED, GW_ERR_LIMIT, "out of memory");
            return;
        }
        created = true;
    }
    /* Accepted only once durably stored: after the batch commit. */
    gw_err_t err = svc_batch_begin(svc);
    if (err == GW_OK)
        err = gw_will_store_put(svc->store, e->name, &w);
    if (err != GW_OK) {
        if (created)
            svc_remove(svc, e);
        svc_shared_reply(svc, wc, sl, dlv, PN_REJECTED, err, "will store failure");
        return;
    }
    switch ((entry_state_t)e->state) {
    case WE_SHARED:
        if (e->sl != sl)
            /* The client came back on another gateway connection: the old
             * link loses the will silently (it serves other clients). */
            GW_LOG_DEBUG(WILL_MOD, e->name, "will taken over from shared link %s",
                         pn_link_name(e->sl->link));
        break;
    case WE_ATTACHED:
        svc_steal(svc, e, wc, "AMQP_WILL for this client id on a shared will link");
        break;
    case WE_DELAY:
    case WE_ORPHAN:
        GW_LOG_INFO(WILL_MOD, e->name, "pending publication cancelled (%s): new will",
                    e->state == WE_DELAY ? "will delay" : "grace period");
        break;
    case WE_NONE:
        break;
    }
    if (e->state != WE_SHARED || e->sl != sl) {
        svc_disown(svc, e);
        svc_own_shared(svc, sl, e);
    }
    GW_LOG_DEBUG(WILL_MOD, e->name, "will stored (shared link) topic=%.*s qos=%u retain=%d",
                 (int)w.topic_len, w.topic, (unsigned)w.qos, (int)w.retain);
    svc_batch_wrote(svc, wc, dlv, true, false);
}

/* Rule 12: AMQP_WILL_CLEAR for cid on sl. */
static void svc_shared_clear(will_conn_t *wc, will_shared_t *sl, pn_delivery_t *dlv,
                             gw_spec_str_t cid)
{
    gw_will_service_t *svc = wc->svc;
    will_entry_t *e = svc_owned_by(svc, sl, cid);
    if (!e) {
        /* A newer connection of the client owns the will, or it is gone. */
        GW_SVC_INC(svc->cleared);
        svc_shared_reply(svc, wc, sl, dlv, PN_ACCEPTED, GW_OK, NULL);
        return;
    }
    gw_err_t err = svc_batch_begin(svc);
    if (err == GW_OK)
        err = gw_will_store_delete(svc->store, e->name);
    if (err == GW_ERR_NOT_FOUND)
        err = GW_OK;
    if (err != GW_OK) {
        svc_shared_reply(svc, wc, sl, dlv, PN_REJECTED, err, "will store failure");
        return;
    }
    GW_LOG_DEBUG(WILL_MOD, e->name, "will cleared (shared link)");
    svc_remove(svc, e);
    svc_batch_wrote(svc, wc, dlv, false, true);
}

/* Rule 13: AMQP_WILL_PUBLISH for cid on sl: accepted at once (the will
 * is durable already), in order. */
static void svc_shared_publish(will_conn_t *wc, will_shared_t *sl, pn_delivery_t *dlv,
                               gw_spec_str_t cid)
{
    gw_will_service_t *svc = wc->svc;
    char reason[WILL_REASON_MAX + 1];
    will_entry_t *e = svc_owned_by(svc, sl, cid);
    GW_SVC_INC(svc->publish_requests);
    if (e) {
        char why[WILL_REASON_MAX + 64];
        const char *r = svc_reason(svc->msg, reason, sizeof reason);
        snprintf(why, sizeof why, "AMQP_WILL_PUBLISH: %s", r ? r : "no reason given");
        svc_owner_lost(svc, e, why);
    } else {
        GW_LOG_DEBUG(WILL_MOD, NULL, "AMQP_WILL_PUBLISH for %.*s ignored: link %s owns no will",
                     (int)(cid.len > 256 ? 256 : cid.len), cid.ptr, pn_link_name(sl->link));
    }
    svc_shared_reply(svc, wc, sl, dlv, PN_ACCEPTED, GW_OK, NULL);
}

/* A complete message on an L1s, read into svc->msg (err: gw_amqp_recv's). */
static void svc_shared_message(will_conn_t *wc, will_shared_t *sl, pn_delivery_t *dlv,
                               gw_err_t err)
{
    gw_will_service_t *svc = wc->svc;
    gw_spec_msg_t m;
    gw_spec_str_t cid = {NULL, 0};
    char why[256] = "";
    const char *kind = "AMQP_WILL_PUBLISH";
    bool publish = false, decoded = false;

    if (err == GW_OK) {
        const char *subject = pn_message_get_subject(svc->msg);
        publish = subject && strcmp(subject, WILL_SUBJECT_PUBLISH) == 0;
        if (!publish) {
            err = gw_spec_decode_kinds(svc->msg,
                                       GW_SPEC_KIND_BIT(GW_SPEC_WILL) |
                                           GW_SPEC_KIND_BIT(GW_SPEC_WILL_CLEAR),
                                       &m, why, sizeof why);
            decoded = err == GW_OK;
            if (decoded)
                kind = gw_spec_kind_name(m.kind);
        }
    }
    if (err == GW_OK)
        err = gw_spec_client_id(svc->msg, kind, &cid, why, sizeof why);
    if (err != GW_OK) {
        GW_SVC_INC(svc->malformed);
        if (!why[0])
            snprintf(why, sizeof why, "%s", gw_err_str(err));
        GW_LOG_WARN(WILL_MOD, NULL, "will message refused on shared link %s: %s",
                    pn_link_name(sl->link), why);
        svc_shared_reply(svc, wc, sl, dlv, PN_REJECTED, err, why);
    } else if (publish) {
        svc_shared_publish(wc, sl, dlv, cid);
    } else if (m.kind == GW_SPEC_WILL) {
        svc_shared_will(wc, sl, dlv, cid, &m);
    } else {
        svc_shared_clear(wc, sl, dlv, cid);
    }
    if (decoded)
        gw_spec_msg_clear(&m);
}

/* ------------------------------------------------------------------ */
/* Deliveries                                                          */
/* ------------------------------------------------------------------ */

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
        svc_refuse(svc, wc, dlv, PN_REJECTED, GW_ERR_LIMIT, why);
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
    will_shared_t *sl = svc_shared_of(link);
    if (sl) {
        svc_shared_message(wc, sl, dlv, err);
        return;
    }
    will_entry_t *e = svc_entry_of(wc, link);
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
    will_shared_t *sl, *snext;
    for (sl = wc->shared; sl; sl = snext) {
        snext = sl->next;
        if (pn_link_session(sl->link) == ssn)
            svc_shared_lost(wc->svc, sl, "session ended with the link attached");
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

/* Every owner on wc is gone (connection down or closed). */
static void svc_conn_lost(gw_will_service_t *svc, will_conn_t *wc, const char *why)
{
    /* Every link of the connection is gone (and freed after we return);
     * their writes stay in the batch, their outcomes are dropped. */
    svc_pending_purge(svc, wc, NULL);
    while (wc->entries)
        svc_owner_lost(svc, wc->entries, why);
    while (wc->shared)
        svc_shared_lost(svc, wc->shared, why);
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
        svc_conn_lost(svc, wc, why);
        break;
    }
    case GW_AMQP_CLOSED:
        svc_conn_lost(svc, wc, "connection closed");
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
    will_entry_t *e = svc_add_n(svc, rec->name, strlen(rec->name));
    gw_will_rec_free(rec);
    if (!e)
        return GW_ERR_NOMEM;
    e->state = WE_ORPHAN;
    return GW_OK;
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
    svc->delay_timer = evtimer_new(base, svc_delay_cb, svc);
    svc->commit_ev = event_new(base, -1, 0, svc_commit_cb, svc);
    svc->batch_seq = 1; /* a new L1s (batch 0) has no outcome waiting */
    if (!svc->buckets || !svc->msg || !svc->grace_timer || !svc->delay_timer ||
        !svc->commit_ev) {
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
    gw_will_publisher_on_write(svc->pub, svc_publisher_write, svc);

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
    evtimer_del(svc->delay_timer); /* wills waiting for their delay stay held */
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
        /* Entries are freed below, from the hash table. */
        while (wc->shared) {
            will_shared_t *sl = wc->shared;
            wc->shared = sl->next;
            free(sl);
        }
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
                free(e);
            }
        }
        free(svc->buckets);
    }
    if (svc->grace_timer)
        event_free(svc->grace_timer);
    if (svc->delay_timer)
        event_free(svc->delay_timer);
    if (svc->commit_ev)
        event_free(svc->commit_ev);
    free(svc->pending);
    for (size_t i = 0; i < svc->nmoved; i++)
        gw_will_rec_free(svc->moved[i]); /* durable in publishing: resumed at the next start */
    free(svc->moved);
    if (svc->msg)
        pn_message_free(svc->msg);
    GW_LOG_INFO(WILL_MOD, NULL,
                "stats stored=%llu cleared=%llu malformed=%llu stolen=%llu will-publish=%llu "
                "commits=%llu",
                (unsigned long long)svc->stored, (unsigned long long)svc->cleared,
                (unsigned long long)svc->malformed, (unsigned long long)svc->stolen,
                (unsigned long long)svc->publish_requests, (unsigned long long)svc->commits);
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
    gw_metrics_gauge(w, "gw_will_shared_links", "shared will links (L1s) attached", NULL,
                     (double)GW_SVC_GET(svc->shared_links));
    gw_metrics_gauge(w, "gw_will_shared_owned",
                     "held wills owned by a shared will link (counted in gw_will_wills "
                     "state=held too)",
                     NULL, (double)GW_SVC_GET(svc->shared_owned));
    gw_metrics_counter(w, "gw_will_publish_requests_total",
                       "AMQP_WILL_PUBLISH messages received on shared will links", NULL,
                       GW_SVC_GET(svc->publish_requests));
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
                       "AMQP_WILL/AMQP_WILL_CLEAR/clean-detach writes and moves to "
                       "publishing, one per will published outside a batch)",
                       NULL, GW_SVC_GET(svc->commits));
    GW_SVC_HIST_WRITE(w, "gw_will_store_seconds",
                      "latency of will store group commits (one observation per batch "
                      "commit, not per will)",
                      &svc->store_lat);
}
