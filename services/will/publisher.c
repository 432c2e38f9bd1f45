/*
 * publisher.c - publication of wills (AMQP_PUBLISH) to --publish-url.
 *
 * One outgoing connection with reconnect. One session; the anonymous relay
 * sender when the peer offers ANONYMOUS-RELAY, else one sender per topic in
 * a small LRU cache. QoS 0 goes pre-settled and its store row is deleted
 * once handed to the connection; QoS 1/2 go unsettled (durable) and the row
 * is deleted only on `accepted`. released/modified, a lost link or a lost
 * connection: sent again after a back-off. rejected: retried the same way up
 * to --max-rejects times, then dropped with an ERROR log.
 *
 * Each publication is in exactly one of two lists: `ready` (waiting for a
 * link with credit) or `busy` (in flight, or waiting for its back-off timer).
 */
#include <stdlib.h>
#include <string.h>

#include <proton/condition.h>
#include <proton/disposition.h>

#include "gw/log.h"
#include "gw/spec.h"
#include "will.h"

#define PUB_MOD "will-pub"
#define PUB_CACHE 16

typedef enum pub_state { PUB_READY, PUB_INFLIGHT, PUB_WAIT } pub_state_t;

typedef struct will_pub {
    struct will_pub *prev, *next;
    gw_will_publisher_t *owner;
    gw_will_rec_t *rec;
    pub_state_t state;
    pn_delivery_t *dlv; /* PUB_INFLIGHT, QoS > 0 */
    pn_link_t *link;    /* link dlv went on */
    uint32_t attempts;  /* sends so far (delivery-count of the next send) */
    uint32_t rejects;
    struct event *timer; /* back-off, created on first use */
} will_pub_t;

typedef struct pub_list {
    will_pub_t *head, *tail;
} pub_list_t;

typedef struct pub_sender {
    char *topic;
    pn_link_t *link;
    uint64_t used;
} pub_sender_t;

struct gw_will_publisher {
    struct event_base *base;
    const gw_will_config_t *cfg;
    gw_will_store_t *store;
    gw_amqp_conn_t *conn;
    bool closing;
    pn_session_t *ssn;
    pn_link_t *anon;
    pub_sender_t cache[PUB_CACHE];
    uint64_t use_clock;
    uint64_t link_seq;
    pub_list_t ready, busy;
    pn_message_t *msg;
    gw_will_pub_stats_t stats;
    void (*on_closed)(void *);
    void *on_closed_ctx;
    void (*on_write)(void *); /* before each store write (group commit) */
    void *on_write_ctx;
};

static void pub_list_push(pub_list_t *l, will_pub_t *p)
{
    p->next = NULL;
    p->prev = l->tail;
    if (l->tail)
        l->tail->next = p;
    else
        l->head = p;
    l->tail = p;
}

static void pub_list_remove(pub_list_t *l, will_pub_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        l->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        l->tail = p->prev;
    p->prev = p->next = NULL;
}

static pub_list_t *pub_list_of(gw_will_publisher_t *pb, will_pub_t *p)
{
    return p->state == PUB_READY ? &pb->ready : &pb->busy;
}

static void pub_free(will_pub_t *p)
{
    if (p->timer)
        event_free(p->timer);
    gw_will_rec_free(p->rec);
    free(p);
}

/* The publication is complete (or given up): forget it durably. */
static void pub_done(gw_will_publisher_t *pb, will_pub_t *p)
{
    if (pb->on_write)
        pb->on_write(pb->on_write_ctx);
    gw_err_t err = gw_will_store_published(pb->store, p->rec->id);
    if (err != GW_OK && err != GW_ERR_NOT_FOUND)
        GW_LOG_ERROR(PUB_MOD, p->rec->name, "cannot delete published will id=%lld: %s",
                     (long long)p->rec->id, gw_err_str(err));
    pub_list_remove(pub_list_of(pb, p), p);
    pub_free(p);
    GW_SVC_SET(pb->stats.pending, GW_SVC_GET(pb->stats.pending) - 1);
}

static void pub_pump(gw_will_publisher_t *pb);

static void pub_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    will_pub_t *p = arg;
    gw_will_publisher_t *pb = p->owner;
    pub_list_remove(&pb->busy, p);
    p->state = PUB_READY;
    pub_list_push(&pb->ready, p);
    pub_pump(pb);
}

/* Exponential back-off from the number of sends so far, capped. */
static void pub_retry_later(gw_will_publisher_t *pb, will_pub_t *p)
{
    int64_t delay = pb->cfg->retry_min;
    for (uint32_t i = 1; i < p->attempts && delay < pb->cfg->retry_max; i++)
        delay *= 2;
    if (delay > pb->cfg->retry_max)
        delay = pb->cfg->retry_max;
    pub_list_remove(pub_list_of(pb, p), p);
    p->state = PUB_WAIT;
    p->dlv = NULL;
    p->link = NULL;
    pub_list_push(&pb->busy, p);
    GW_SVC_INC(pb->stats.retried);
    if (!p->timer)
        p->timer = evtimer_new(pb->base, pub_timer_cb, p);
    if (!p->timer) {
        /* No memory for a timer: back to the queue for the next pump. */
        pub_list_remove(&pb->busy, p);
        p->state = PUB_READY;
        pub_list_push(&pb->ready, p);
        return;
    }
    struct timeval tv = {.tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000};
    evtimer_add(p->timer, &tv);
}

/* The sender for topic: the anonymous relay, or a cached per-topic link.
 * NULL when the cache is full of links with unsettled deliveries. */
static pn_link_t *pub_sender(gw_will_publisher_t *pb, const char *topic)
{
    pub_sender_t *victim = NULL;
    char name[64];

    if (pb->anon)
        return pb->anon;
    for (int i = 0; i < PUB_CACHE; i++) {
        pub_sender_t *s = &pb->cache[i];
        if (s->link && strcmp(s->topic, topic) == 0) {
            s->used = ++pb->use_clock;
            return s->link;
        }
    }
    for (int i = 0; i < PUB_CACHE; i++) {
        pub_sender_t *s = &pb->cache[i];
        if (!s->link) {
            victim = s;
            break;
        }
        /* Never evict a link still attaching (it would thrash when more
         * topics than slots are queued) or one with unsettled deliveries. */
        if (!(pn_link_state(s->link) & PN_REMOTE_UNINIT) && pn_link_unsettled(s->link) == 0 &&
            (!victim || s->used < victim->used))
            victim = s;
    }
    if (!victim)
        return NULL;
    char *copy = strdup(topic);
    if (!copy)
        return NULL;
    if (victim->link)
        gw_amqp_link_close(victim->link, NULL, NULL);
    free(victim->topic);
    snprintf(name, sizeof name, "will-service-%llu", (unsigned long long)++pb->link_seq);
    victim->topic = copy;
    /* Mixed: QoS 0 pre-settled, QoS 1/2 unsettled. The receiver settles first. */
    victim->link = gw_amqp_sender_open(pb->ssn, name, topic, PN_SND_MIXED, PN_RCV_FIRST);
    victim->used = ++pb->use_clock;
    return victim->link;
}

static void pub_send(gw_will_publisher_t *pb, will_pub_t *p, pn_link_t *link)
{
    gw_will_rec_t *r = p->rec;
    gw_spec_publish_t sp = {
        .topic = {r->topic, r->topic_len},
        .payload = {(const char *)r->payload, r->payload_len},
        .qos = r->qos,
        .retain = r->retain,
        .durable = r->qos > 0,
        /* > 0 marks a possible duplicate (MQTT DUP): a previous send may
         * have arrived (retry, or a restart during a publication). */
        .delivery_count = p->attempts,
    };
    pn_delivery_t *dlv = NULL;
    gw_err_t err = gw_spec_encode_publish(pb->msg, &sp);
    if (err == GW_OK)
        err = gw_amqp_send(pb->conn, link, pb->msg, r->qos == 0, &dlv);
    if (err != GW_OK) {
        GW_LOG_ERROR(PUB_MOD, r->name, "cannot send will to '%s': %s", r->topic,
                     gw_err_str(err));
        p->attempts++;
        pub_retry_later(pb, p);
        return;
    }
    p->attempts++;
    GW_LOG_INFO(PUB_MOD, r->name, "will sent topic=%s qos=%u retain=%d attempt=%u", r->topic,
                (unsigned)r->qos, (int)r->retain, (unsigned)p->attempts);
    if (r->qos == 0) {
        /* QoS 0: at most once. Done once handed to the connection. */
        GW_SVC_INC(pb->stats.published);
        GW_SVC_INC(pb->stats.published_qos[0]);
        pub_done(pb, p);
        return;
    }
    pub_list_remove(&pb->ready, p);
    p->state = PUB_INFLIGHT;
    p->dlv = dlv;
    p->link = link;
    pub_list_push(&pb->busy, p);
}

static void pub_pump(gw_will_publisher_t *pb)
{
    if (!pb->ssn || pb->closing || !gw_amqp_conn_is_up(pb->conn))
        return;
    will_pub_t *next;
    for (will_pub_t *p = pb->ready.head; p; p = next) {
        next = p->next;
        pn_link_t *link = pub_sender(pb, p->rec->topic);
        if (!link || pn_link_credit(link) <= 0)
            continue; /* wait for credit (PN_LINK_FLOW) or a settled delivery */
        pub_send(pb, p, link);
    }
    gw_amqp_conn_flush(pb->conn);
}

static will_pub_t *pub_find_dlv(gw_will_publisher_t *pb, pn_delivery_t *dlv)
{
    for (will_pub_t *p = pb->busy.head; p; p = p->next)
        if (p->state == PUB_INFLIGHT && p->dlv == dlv)
            return p;
    return NULL;
}

static void pub_outcome(gw_will_publisher_t *pb, pn_delivery_t *dlv)
{
    will_pub_t *p = pub_find_dlv(pb, dlv);
    uint64_t state = pn_delivery_remote_state(dlv);
    if (!p) {
        if (pn_delivery_settled(dlv))
            pn_delivery_settle(dlv);
        return;
    }
    if (state == PN_RECEIVED || (state == 0 && !pn_delivery_settled(dlv)))
        return; /* not terminal yet */
    const char *name = p->rec->name;
    if (state == PN_ACCEPTED) {
        pn_delivery_settle(dlv);
        GW_SVC_INC(pb->stats.published);
        GW_SVC_INC(pb->stats.published_qos[p->rec->qos > 2 ? 2 : p->rec->qos]);
        GW_LOG_INFO(PUB_MOD, name, "will published topic=%s", p->rec->topic);
        pub_done(pb, p);
    } else if (state == PN_REJECTED) {
        pn_condition_t *c = pn_disposition_condition(pn_delivery_remote(dlv));
        GW_SVC_INC(pb->stats.rejected);
        p->rejects++;
        GW_LOG_WARN(PUB_MOD, name, "will publication rejected topic=%s cond=%s desc=%s (%u/%lld)",
                    p->rec->topic, pn_condition_get_name(c) ? pn_condition_get_name(c) : "-",
                    pn_condition_get_description(c) ? pn_condition_get_description(c) : "-",
                    (unsigned)p->rejects, (long long)pb->cfg->max_rejects);
        pn_delivery_settle(dlv);
        if ((int64_t)p->rejects >= pb->cfg->max_rejects) {
            GW_SVC_INC(pb->stats.dropped);
            GW_LOG_ERROR(PUB_MOD, name,
                         "will dropped after %u rejections topic=%s qos=%u",
                         (unsigned)p->rejects, p->rec->topic, (unsigned)p->rec->qos);
            pub_done(pb, p);
        } else {
            pub_retry_later(pb, p);
        }
    } else {
        /* released, modified, or settled without outcome: not delivered. */
        GW_LOG_DEBUG(PUB_MOD, name, "will publication not delivered (%s), retrying",
                     pn_disposition_type_name(state));
        pn_delivery_settle(dlv);
        pub_retry_later(pb, p);
    }
}

/* A sender went away: its unsettled publications are retried. */
static void pub_link_lost(gw_will_publisher_t *pb, pn_link_t *link)
{
    will_pub_t *next;
    for (will_pub_t *p = pb->busy.head; p; p = next) {
        next = p->next;
        if (p->state == PUB_INFLIGHT && p->link == link)
            pub_retry_later(pb, p);
    }
    if (pb->anon == link)
        pb->anon = NULL;
    for (int i = 0; i < PUB_CACHE; i++) {
        if (pb->cache[i].link == link) {
            pb->cache[i].link = NULL;
            free(pb->cache[i].topic);
            pb->cache[i].topic = NULL;
        }
    }
}

static void pub_forget_links(gw_will_publisher_t *pb)
{
    pb->ssn = NULL;
    pb->anon = NULL;
    for (int i = 0; i < PUB_CACHE; i++) {
        pb->cache[i].link = NULL;
        free(pb->cache[i].topic);
        pb->cache[i].topic = NULL;
    }
}

static void pub_on_event(gw_amqp_conn_t *conn, pn_event_t *e, void *ctx)
{
    gw_will_publisher_t *pb = ctx;
    switch (pn_event_type(e)) {
    case PN_LINK_FLOW:
        pub_pump(pb);
        break;
    case PN_DELIVERY: {
        pn_delivery_t *dlv = pn_event_delivery(e);
        if (pn_link_is_sender(pn_delivery_link(dlv)) && pn_delivery_updated(dlv)) {
            pub_outcome(pb, dlv);
            pub_pump(pb); /* an LRU slot may have become free */
        }
        break;
    }
    case PN_LINK_REMOTE_CLOSE:
    case PN_LINK_REMOTE_DETACH: {
        pn_link_t *link = pn_event_link(e);
        pn_condition_t *c = pn_link_remote_condition(link);
        if (pn_condition_is_set(c))
            GW_LOG_WARN(PUB_MOD, NULL, "publish link to '%s' detached: %s %s",
                        pn_terminus_get_address(pn_link_target(link))
                            ? pn_terminus_get_address(pn_link_target(link))
                            : "(anonymous)",
                        pn_condition_get_name(c),
                        pn_condition_get_description(c) ? pn_condition_get_description(c)
                                                        : "");
        pub_link_lost(pb, link);
        if (!(pn_link_state(link) & PN_LOCAL_CLOSED))
            pn_link_close(link);
        pn_link_free(link);
        break;
    }
    default:
        break;
    }
}

static void pub_on_state(gw_amqp_conn_t *conn, gw_amqp_state_t st, const char *cond,
                         const char *desc, void *ctx)
{
    gw_will_publisher_t *pb = ctx;
    switch (st) {
    case GW_AMQP_UP: {
        pn_connection_t *pn = gw_amqp_conn_pn(conn);
        GW_LOG_INFO(PUB_MOD, NULL, "publish connection up peer=%s anonymous-relay=%d",
                    gw_amqp_conn_peer(conn), (int)gw_amqp_conn_peer_has_anonymous_relay(conn));
        if (pb->closing || !pn)
            break;
        GW_SVC_SET(pb->stats.up, 1);
        pb->ssn = pn_session(pn);
        if (!pb->ssn)
            break;
        pn_session_open(pb->ssn);
        if (gw_amqp_conn_peer_has_anonymous_relay(conn))
            pb->anon = gw_amqp_sender_open(pb->ssn, "will-service-relay", NULL, PN_SND_MIXED,
                                           PN_RCV_FIRST);
        pub_pump(pb);
        break;
    }
    case GW_AMQP_DOWN: {
        GW_SVC_SET(pb->stats.up, 0);
        if (pb->closing)
            GW_LOG_INFO(PUB_MOD, NULL, "publish connection closed");
        else
            GW_LOG_WARN(PUB_MOD, NULL, "publish connection down: %s %s",
                        cond ? cond : "closed", desc ? desc : "");
        /* Proton objects go away after this callback: unsent or unsettled
         * publications go back to the queue, to be sent again (attempt > 0
         * marks them as possible duplicates). */
        will_pub_t *next;
        for (will_pub_t *p = pb->busy.head; p; p = next) {
            next = p->next;
            if (p->state == PUB_INFLIGHT) {
                pub_list_remove(&pb->busy, p);
                p->state = PUB_READY;
                p->dlv = NULL;
                p->link = NULL;
                pub_list_push(&pb->ready, p);
            }
        }
        pub_forget_links(pb);
        break;
    }
    case GW_AMQP_CLOSED:
        pb->conn = NULL;
        pub_forget_links(pb);
        if (pb->on_closed)
            pb->on_closed(pb->on_closed_ctx);
        break;
    }
}

gw_err_t gw_will_publisher_new(struct event_base *base, const gw_will_config_t *cfg,
                               gw_will_store_t *store, gw_will_publisher_t **out)
{
    gw_err_t err = GW_OK;
    gw_amqp_opts_t opts;
    gw_will_publisher_t *pb = calloc(1, sizeof *pb);
    static const gw_amqp_handler_t handler = {pub_on_event, pub_on_state};

    *out = NULL;
    if (!pb)
        return GW_ERR_NOMEM;
    pb->base = base;
    pb->cfg = cfg;
    pb->store = store;
    pb->msg = pn_message();
    if (!pb->msg) {
        err = GW_ERR_NOMEM;
        goto cleanup;
    }
    gw_will_config_amqp_opts(cfg, false, &opts);
    pb->conn = gw_amqp_connect(base, cfg->publish_url, &opts, &handler, pb, &err);
    if (!pb->conn) {
        char ub[512];
        GW_LOG_ERROR(PUB_MOD, NULL, "cannot connect to %s: %s",
                     gw_amqp_url_redact(cfg->publish_url, ub, sizeof ub), gw_err_str(err));
        if (err == GW_OK)
            err = GW_ERR_AMQP;
        goto cleanup;
    }
    *out = pb;
    pb = NULL;
cleanup:
    gw_will_publisher_free(pb);
    return err;
}

void gw_will_publisher_enqueue(gw_will_publisher_t *pb, gw_will_rec_t *rec, bool maybe_sent)
{
    will_pub_t *p = calloc(1, sizeof *p);
    if (!p) {
        /* The row stays in the publishing set: republished at the next start. */
        GW_LOG_ERROR(PUB_MOD, rec->name, "out of memory: will id=%lld deferred to restart",
                     (long long)rec->id);
        gw_will_rec_free(rec);
        return;
    }
    p->owner = pb;
    p->rec = rec;
    p->state = PUB_READY;
    /* A record read back at start-up may have been sent before the crash:
     * its first send already carries delivery-count 1 (DUP). */
    p->attempts = maybe_sent ? 1 : 0;
    pub_list_push(&pb->ready, p);
    GW_SVC_INC(pb->stats.pending);
    pub_pump(pb);
}

void gw_will_publisher_close(gw_will_publisher_t *pb)
{
    if (!pb || pb->closing)
        return;
    pb->closing = true;
    if (pb->conn)
        gw_amqp_conn_close(pb->conn, NULL, NULL);
}

bool gw_will_publisher_closed(const gw_will_publisher_t *pb) { return !pb || !pb->conn; }

void gw_will_publisher_on_closed(gw_will_publisher_t *pb, void (*fn)(void *), void *ctx)
{
    pb->on_closed = fn;
    pb->on_closed_ctx = ctx;
}

void gw_will_publisher_on_write(gw_will_publisher_t *pb, void (*fn)(void *), void *ctx)
{
    pb->on_write = fn;
    pb->on_write_ctx = ctx;
}

gw_will_pub_stats_t gw_will_publisher_stats(const gw_will_publisher_t *pb) { return pb->stats; }

const gw_will_pub_stats_t *gw_will_publisher_stats_ref(const gw_will_publisher_t *pb)
{
    return &pb->stats;
}

void gw_will_publisher_free(gw_will_publisher_t *pb)
{
    if (!pb)
        return;
    if (pb->conn)
        gw_amqp_conn_destroy(pb->conn);
    pb->conn = NULL;
    pub_forget_links(pb);
    pub_list_t *lists[2] = {&pb->ready, &pb->busy};
    for (int i = 0; i < 2; i++) {
        while (lists[i]->head) {
            will_pub_t *p = lists[i]->head;
            pub_list_remove(lists[i], p);
            pub_free(p);
        }
    }
    if (pb->msg)
        pn_message_free(pb->msg);
    free(pb);
}
