/*
 * session.c - sessions, their queues, packet ids and delivery on L4 / L4s / L9.
 *
 * A session's queue holds, in order, every copy owed to the client: copies
 * in flight on the out link (dlv set), copies waiting for credit, and (QoS
 * 2) copies whose AMQP_PUBREL was accepted. A persistent session's QoS 1/2
 * copies (and QoS 0 ones with --queue-qos0) have a queue row in the store;
 * the payload is one msgs row shared by every queue row.
 *
 * A session is online on at most one out link: its per-client L4 (s->out),
 * or a shared delivery link L4s (s->reg, spec 3.12), where the SS keeps
 * the client's in-flight window W itself: at most W deliveries unsettled,
 * each carrying the registration's serial as a delivery annotation.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <proton/delivery.h>
#include <proton/disposition.h>

#include "gw/log.h"
#include "subs.h"

int64_t subs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t subs_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return (size_t)h;
}

/* ------------------------------------------------------------------ */
/* Messages                                                            */
/* ------------------------------------------------------------------ */

subs_msg_t *subs_msg_new(const char *topic, size_t tlen, const void *payload, size_t plen,
                         uint8_t qos)
{
    subs_msg_t *m = malloc(sizeof *m + tlen + 1 + plen);
    if (!m)
        return NULL;
    m->refs = 0;
    m->durable_refs = 0;
    m->store_id = 0;
    m->qos = qos;
    m->topic_len = tlen;
    m->payload_len = plen;
    m->topic = m->data;
    memcpy(m->topic, topic, tlen);
    m->topic[tlen] = '\0';
    m->payload = m->data + tlen + 1;
    if (plen)
        memcpy(m->payload, payload, plen);
    return m;
}

void subs_msg_unref(subs_service_t *svc, subs_msg_t *m)
{
    if (!m || --m->refs > 0)
        return;
    free(m);
}

/* ------------------------------------------------------------------ */
/* Session table                                                       */
/* ------------------------------------------------------------------ */

subs_session_t *subs_session_find(subs_service_t *svc, const char *id, size_t len)
{
    subs_session_t *s = svc->buckets[subs_hash(id, len) & (svc->nbuckets - 1)];
    for (; s; s = s->hnext)
        if (strlen(s->id) == len && memcmp(s->id, id, len) == 0)
            return s;
    return NULL;
}

static void session_grow(subs_service_t *svc)
{
    size_t n = svc->nbuckets * 2;
    subs_session_t **b = calloc(n, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < svc->nbuckets; i++) {
        subs_session_t *s = svc->buckets[i], *next;
        for (; s; s = next) {
            next = s->hnext;
            size_t k = subs_hash(s->id, strlen(s->id)) & (n - 1);
            s->hnext = b[k];
            b[k] = s;
        }
    }
    free(svc->buckets);
    svc->buckets = b;
    svc->nbuckets = n;
}

static subs_session_t *session_alloc(subs_service_t *svc, const char *id, size_t len)
{
    subs_session_t *s = calloc(1, sizeof *s + len + 1);
    if (!s)
        return NULL;
    memcpy(s->id, id, len);
    s->id[len] = '\0';
    s->svc = svc;
    s->next_pid = 1;
    return s;
}

subs_session_t *subs_session_get(subs_service_t *svc, const char *id, size_t len)
{
    subs_session_t *s = subs_session_find(svc, id, len);
    if (s)
        return s;
    if (memchr(id, '\0', len))
        return NULL;
    s = session_alloc(svc, id, len);
    if (!s)
        return NULL;
    if (svc->nsessions >= svc->nbuckets)
        session_grow(svc);
    size_t k = subs_hash(id, len) & (svc->nbuckets - 1);
    s->hnext = svc->buckets[k];
    svc->buckets[k] = s;
    svc->nsessions++;
    GW_SVC_SET(svc->m.sessions, (int64_t)svc->nsessions);
    return s;
}

subs_session_t *subs_session_new_native(subs_service_t *svc)
{
    subs_session_t *s = session_alloc(svc, "", 0);
    if (s) {
        s->native = true;
        s->ready = true;
    }
    return s;
}

bool subs_session_online(const subs_session_t *s) { return s->out != NULL || s->reg != NULL; }

/* ------------------------------------------------------------------ */
/* Registrations on a shared delivery link (L4s, spec 3.12)            */
/* ------------------------------------------------------------------ */

/* s found no credit on its L4s: queue it for the next flow (FIFO). */
static void wait_add(subs_session_t *s)
{
    subs_reg_t *r = s->reg;
    subs_shared_t *sh = r->sh;
    if (r->waiting)
        return;
    r->waiting = true;
    r->wnext = NULL;
    r->wprev = sh->wtail;
    if (sh->wtail)
        sh->wtail->reg->wnext = s;
    else
        sh->whead = s;
    sh->wtail = s;
    sh->nwaiting++;
}

static void wait_remove(subs_session_t *s)
{
    subs_reg_t *r = s->reg;
    subs_shared_t *sh = r->sh;
    if (!r->waiting)
        return;
    if (r->wprev)
        r->wprev->reg->wnext = r->wnext;
    else
        sh->whead = r->wnext;
    if (r->wnext)
        r->wnext->reg->wprev = r->wprev;
    else
        sh->wtail = r->wprev;
    r->wprev = r->wnext = NULL;
    r->waiting = false;
    sh->nwaiting--;
}

void subs_session_wait_credit(subs_session_t *s)
{
    if (s->reg)
        wait_add(s);
}

subs_session_t *subs_session_wait_pop(subs_shared_t *sh)
{
    subs_session_t *s = sh->whead;
    if (s)
        wait_remove(s);
    return s;
}

/* Take s off its L4s (lists, counters) and free the registration. */
static void reg_drop(subs_service_t *svc, subs_session_t *s)
{
    subs_reg_t *r = s->reg;
    if (!r)
        return;
    subs_shared_t *sh = r->sh;
    wait_remove(s);
    if (r->prev)
        r->prev->reg->next = r->next;
    else
        sh->sessions = r->next;
    if (r->next)
        r->next->reg->prev = r->prev;
    sh->nsessions--;
    free(r);
    s->reg = NULL;
    GW_SVC_ADD(svc->m.online_shared, -1);
}

/* ------------------------------------------------------------------ */
/* Packet ids                                                          */
/* ------------------------------------------------------------------ */

/*
 * The packet ids in use: up to SUBS_PID_SMALL in a small unsorted array
 * (64 bytes), beyond that a 65536-bit map (8 KiB). Both are freed as soon
 * as no id is in use, so an idle session, online or not, holds neither: a
 * client that now and then gets one message costs 64 bytes while it is in
 * flight, not 8 KiB for as long as it stays connected.
 */
#define SUBS_PID_SMALL 32

static bool pid_test(const subs_session_t *s, uint16_t pid)
{
    if (s->pid_big)
        return s->pid_map[pid >> 3] & (1u << (pid & 7));
    for (uint32_t i = 0; s->pid_small && i < s->npids; i++)
        if (s->pid_small[i] == pid)
            return true;
    return false;
}

static gw_err_t pid_mark(subs_session_t *s, uint16_t pid)
{
    if (pid_test(s, pid))
        return GW_OK;
    if (!s->pid_big && s->npids < SUBS_PID_SMALL) {
        if (!s->pid_small && !(s->pid_small = malloc(SUBS_PID_SMALL * sizeof *s->pid_small)))
            return GW_ERR_NOMEM;
        s->pid_small[s->npids++] = pid;
        return GW_OK;
    }
    if (!s->pid_big) {
        uint8_t *map = calloc(65536 / 8, 1);
        if (!map)
            return GW_ERR_NOMEM;
        for (uint32_t i = 0; i < s->npids; i++)
            map[s->pid_small[i] >> 3] |= (uint8_t)(1u << (s->pid_small[i] & 7));
        free(s->pid_small);
        s->pid_map = map;
        s->pid_big = true;
    }
    s->pid_map[pid >> 3] |= (uint8_t)(1u << (pid & 7));
    s->npids++;
    return GW_OK;
}

static void pid_free(subs_session_t *s, uint16_t pid)
{
    if (!pid || !pid_test(s, pid))
        return;
    if (s->pid_big) {
        s->pid_map[pid >> 3] &= (uint8_t)~(1u << (pid & 7));
    } else {
        for (uint32_t i = 0; i < s->npids; i++)
            if (s->pid_small[i] == pid) {
                s->pid_small[i] = s->pid_small[s->npids - 1];
                break;
            }
    }
    s->npids--;
}

/* No packet id in use: keep no set (a busy flow allocates one per burst). */
static void pid_map_trim(subs_session_t *s)
{
    if (!s->npids) {
        free(s->pid_small); /* or pid_map: the same pointer */
        s->pid_small = NULL;
        s->pid_big = false;
    }
}

/* A packet id unique among the session's unacknowledged copies (1..65535).
 * Assigned when a copy is first transferred, so only copies in flight (at
 * most the out link's credit) or released (QoS 2, waiting for PUBCOMP) hold
 * one: the queue itself may be far longer than 65535. */
static uint16_t pid_alloc(subs_session_t *s)
{
    for (uint32_t i = 0; i < 65535; i++) {
        uint16_t pid = s->next_pid;
        s->next_pid = (uint16_t)(pid == 65535 ? 1 : pid + 1);
        if (!pid_test(s, pid))
            return pid_mark(s, pid) == GW_OK ? pid : 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Queue                                                               */
/* ------------------------------------------------------------------ */

static void q_append(subs_service_t *svc, subs_session_t *s, subs_qentry_t *e)
{
    GW_SVC_INC(svc->m.queued);
    GW_SVC_ADD(svc->m.queued_bytes, (int64_t)e->msg->payload_len);
    e->next = NULL;
    e->prev = s->qtail;
    if (s->qtail)
        s->qtail->next = e;
    else
        s->qhead = e;
    s->qtail = e;
    s->qcount++;
    s->qbytes += e->msg->payload_len;
    if (!s->over && subs_session_online(s))
        subs_session_watermark(svc, s);
}

/* Unlink and free e; durable: delete its store rows. */
static void q_remove(subs_service_t *svc, subs_session_t *s, subs_qentry_t *e, bool durable)
{
    if (s->qsent == e)
        s->qsent = e->prev; /* the prefix before it still has deliveries */
    if (e->prev)
        e->prev->next = e->next;
    else
        s->qhead = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->qtail = e->prev;
    s->qcount--;
    s->qbytes -= e->msg->payload_len;
    GW_SVC_ADD(svc->m.queued, -1);
    GW_SVC_ADD(svc->m.queued_bytes, -(int64_t)e->msg->payload_len);
    pid_free(s, e->pkt_id);
    if (e->unsynced)
        s->nunsynced--;
    if (e->dlv) {
        /* Its outcome, if any comes, is ignored; on an L4s the unit of the
         * window is given back now (the entry is gone either way). */
        pn_delivery_set_context(e->dlv, NULL);
        e->dlv = NULL;
        if (s->reg && s->reg->unsettled)
            s->reg->unsettled--;
    }
    if (e->seq) {
        subs_msg_t *m = e->msg;
        if (durable) {
            gw_subs_store_queue_delete(svc->store, e->seq);
            subs_batch_touch(svc);
        }
        if (m->durable_refs && --m->durable_refs == 0 && m->store_id) {
            if (durable)
                gw_subs_store_msg_delete(svc->store, m->store_id);
            m->store_id = 0;
        }
    }
    subs_msg_unref(svc, e->msg);
    free(e);
    if (s->over) {
        svc->bp_progress_ms = subs_now_ms(); /* it drains: not a stall */
        subs_session_watermark(svc, s);
    }
    pid_map_trim(s);
}

/*
 * Back-pressure (spec 6). An online session's queue is never cut short:
 * when it passes the high watermark (--online-high-watermark messages or
 * --online-high-watermark-bytes), credit stops being given back on every
 * publisher link, until every online queue is at or below half of both
 * marks. Publishers then wait for credit (a gateway stops reading their
 * sockets) instead of being accepted and their message dropped.
 */
void subs_session_watermark(subs_service_t *svc, subs_session_t *s)
{
    const subs_config_t *c = svc->cfg;
    if (!s->over) {
        if (subs_session_online(s) && (s->qcount >= (size_t)c->online_hwm ||
                       s->qbytes >= (size_t)c->online_hwm_bytes)) {
            if (svc->nover == svc->capover_ids) {
                size_t cap = svc->capover_ids ? svc->capover_ids * 2 : 16;
                struct subs_over *ids = realloc(svc->over_ids, cap * sizeof *ids);
                if (!ids)
                    return; /* not counted as over: its publishers keep credit */
                svc->over_ids = ids;
                svc->capover_ids = cap;
            }
            s->over = true;
            svc->over_ids[svc->nover].s = s;
            svc->over_ids[svc->nover].id = ++svc->over_seq;
            if (svc->nover++ == 0) {
                svc->throttles++;
                subs_backpressure_start(svc);
                GW_LOG_DEBUG(SUBS_MOD, s->id[0] ? s->id : "(native)",
                             "queue %zu messages / %zu bytes above the high watermark: "
                             "publisher credit withheld", s->qcount, s->qbytes);
            }
        }
        return;
    }
    if (subs_session_online(s) && (s->qcount > (size_t)c->online_hwm / 2 ||
                   s->qbytes > (size_t)c->online_hwm_bytes / 2))
        return;
    s->over = false;
    uint64_t id = 0;
    for (size_t i = 0; i < svc->nover; i++)
        if (svc->over_ids[i].s == s) {
            id = svc->over_ids[i].id;
            svc->over_ids[i] = svc->over_ids[svc->nover - 1];
            break;
        }
    if (--svc->nover == 0)
        subs_credit_resume(svc);
    else
        subs_credit_release(svc, id);
}

static bool syncwait_add(subs_service_t *svc, subs_session_t *s)
{
    if (s->syncwait)
        return true;
    if (svc->nsyncwait == svc->capsyncwait) {
        size_t cap = svc->capsyncwait ? svc->capsyncwait * 2 : 16;
        subs_session_t **a = realloc(svc->syncwait, cap * sizeof *a);
        if (!a)
            return false; /* sent at the next commit that finds room; the entry stays unsynced */
        svc->syncwait = a;
        svc->capsyncwait = cap;
    }
    svc->syncwait[svc->nsyncwait++] = s;
    s->syncwait = true;
    return true;
}

static void syncwait_remove(subs_service_t *svc, subs_session_t *s)
{
    if (!s->syncwait)
        return;
    for (size_t i = 0; i < svc->nsyncwait; i++)
        if (svc->syncwait[i] == s)
            svc->syncwait[i] = NULL;
    s->syncwait = false;
}

gw_err_t subs_session_wait_list(subs_service_t *svc, subs_session_t *s, bool created)
{
    if (!syncwait_add(svc, s))
        return GW_ERR_NOMEM;
    s->list_wait = true;
    s->list_created = s->list_created || created;
    return GW_OK;
}

void subs_session_synced(subs_service_t *svc, bool ok)
{
    /* pump may add sessions again (their next packet ids): take the list. */
    size_t n = svc->nsyncwait, cap = svc->capsyncwait;
    subs_session_t **list = svc->syncwait;
    svc->syncwait = NULL;
    svc->nsyncwait = svc->capsyncwait = 0;
    for (size_t i = 0; i < n; i++) {
        subs_session_t *s = list[i];
        if (!s)
            continue;
        s->syncwait = false;
        for (subs_qentry_t *e = s->qhead; e && s->nunsynced; e = e->next)
            if (e->unsynced) {
                e->unsynced = false;
                s->nunsynced--;
            }
        if (s->list_wait) {
            s->list_wait = false;
            if (!ok) {
                /* The LIST was released (spec 3.11), its session row rolled
                 * back: a retried LIST must write it again. No SUBSCRIPTIONS. */
                if (s->list_created)
                    subs_session_set_persistent(svc, s, false);
                s->subs_due = false;
            }
            s->list_created = false;
        }
    }
    /* subs_control_flush: AMQP_SUBSCRIPTIONS of a LIST whose session row
     * just committed (after its `accepted`, settled first), then the pump. */
    for (size_t i = 0; i < n; i++)
        if (list[i] && !list[i]->syncwait)
            subs_control_flush(svc, list[i]);
    if (!svc->syncwait) { /* keep the array for the next commit */
        svc->syncwait = list;
        svc->capsyncwait = cap;
    } else {
        free(list);
    }
}

static void drop_log(subs_service_t *svc, subs_session_t *s, int reason)
{
    GW_SVC_INC(svc->m.drops[reason]);
    GW_SVC_INC(svc->dropped);
    s->drops++;
    svc->drops_unlogged++;
    int64_t now = subs_now_ms();
    /* At most one WARN line per second: a flood of drops stays readable. */
    if (now - svc->last_drop_log_ms >= 1000) {
        GW_LOG_WARN(SUBS_MOD, s->id[0] ? s->id : "(native)",
                    "queue full (max-queued-messages=%lld max-queued-bytes=%lld policy=%s): "
                    "%llu messages dropped since last report, %llu total",
                    (long long)svc->cfg->max_queued_messages,
                    (long long)svc->cfg->max_queued_bytes,
                    svc->cfg->overflow_policy == SUBS_OVERFLOW_DROP_OLDEST ? "drop-oldest"
                                                                           : "drop-new",
                    (unsigned long long)svc->drops_unlogged, (unsigned long long)svc->dropped);
        svc->last_drop_log_ms = now;
        svc->drops_unlogged = 0;
    }
}

static bool q_full(subs_service_t *svc, subs_session_t *s, size_t add)
{
    return s->qcount >= (size_t)svc->cfg->max_queued_messages ||
           s->qbytes + add > (size_t)svc->cfg->max_queued_bytes;
}

gw_err_t subs_session_enqueue(subs_service_t *svc, subs_session_t *s, subs_msg_t *msg,
                              uint8_t qos, bool retain)
{
    bool online = subs_session_online(s) || s->native;
    if (qos == 0 && !online && !svc->cfg->queue_qos0)
        return GW_OK; /* MQTT-3.1.2-5: QoS 0 MAY be dropped for offline clients */
    /* The bound applies to offline sessions only: an online one is never
     * cut short, back-pressure holds its publishers instead (spec 6). */
    while (!online && q_full(svc, s, msg->payload_len)) {
        subs_qentry_t *victim = NULL;
        if (svc->cfg->overflow_policy == SUBS_OVERFLOW_DROP_OLDEST)
            for (victim = s->qhead; victim && (victim->dlv || victim->state != GW_SUBS_Q_QUEUED);
                 victim = victim->next)
                ;
        drop_log(svc, s, svc->cfg->overflow_policy == SUBS_OVERFLOW_DROP_OLDEST && victim
                             ? SUBS_DROP_OLDEST
                             : SUBS_DROP_NEW);
        if (!victim)
            return GW_OK; /* drop-new (or nothing droppable) */
        q_remove(svc, s, victim, true);
    }
    subs_qentry_t *e = calloc(1, sizeof *e);
    if (!e)
        return GW_ERR_NOMEM;
    e->msg = msg;
    e->owner = s;
    e->qos = qos;
    e->retain = retain;
    e->state = GW_SUBS_Q_QUEUED; /* packet id: at the first transfer */
    /* Durable: the persistent session's copy must survive a crash before
     * the publisher hears `accepted` (spec 5.2 step 6). */
    if (s->persistent && !s->native && (qos > 0 || svc->cfg->queue_qos0)) {
        gw_err_t err = GW_OK;
        if (!msg->store_id)
            err = gw_subs_store_msg_put(svc->store, msg->topic, msg->topic_len, msg->payload,
                                        msg->payload_len, msg->qos, &msg->store_id);
        if (err == GW_OK)
            err = gw_subs_store_queue_put(svc->store, s->id, msg->store_id, qos, e->pkt_id,
                                          retain, GW_SUBS_Q_QUEUED, &e->seq);
        subs_batch_touch(svc);
        if (err != GW_OK) {
            free(e);
            return err;
        }
        msg->durable_refs++;
    }
    msg->refs++;
    q_append(svc, s, e);
    subs_session_pump(svc, s);
    if (s->over) /* its publisher link is held back (spec 6.3 rule 4) */
        for (size_t i = 0; i < svc->nover; i++)
            if (svc->over_ids[i].s == s)
                svc->pub_fed_over = svc->over_ids[i].id;
    return GW_OK;
}

gw_err_t subs_session_restore(subs_service_t *svc, subs_session_t *s, subs_msg_t *msg,
                              int64_t seq, uint8_t qos, uint16_t pkt_id, bool retain, int state)
{
    subs_qentry_t *e = calloc(1, sizeof *e);
    if (!e)
        return GW_ERR_NOMEM;
    e->msg = msg;
    e->owner = s;
    e->seq = seq;
    e->qos = qos;
    e->retain = retain;
    e->pkt_id = pkt_id;
    e->state = (uint8_t)(state == GW_SUBS_Q_RELEASED ? GW_SUBS_Q_RELEASED
                         : state == GW_SUBS_Q_SENT  ? GW_SUBS_Q_SENT
                                                    : GW_SUBS_Q_QUEUED);
    /* Sent before the restart: the next transfer is a redelivery (DUP). */
    e->dcount = e->state != GW_SUBS_Q_QUEUED ? 1 : 0;
    /* A copy never sent may have no packet id (0): it gets one at its first
     * transfer. Rows of older stores carry one from the enqueue: kept. */
    if (pkt_id && pid_mark(s, pkt_id) != GW_OK) {
        free(e);
        return GW_ERR_NOMEM;
    }
    msg->refs++;
    msg->durable_refs++;
    q_append(svc, s, e);
    return GW_OK;
}

static void session_clear_queue(subs_service_t *svc, subs_session_t *s, bool durable)
{
    while (s->qhead)
        q_remove(svc, s, s->qhead, durable);
}

static void session_clear_subs(subs_service_t *svc, subs_session_t *s)
{
    while (s->subs) {
        subs_sub_t *sub = s->subs;
        s->subs = sub->next;
        gw_topic_index_remove(svc->index, sub->filter, sub->len, s);
        free(sub);
    }
    GW_SVC_ADD(svc->m.subscriptions, -(int64_t)s->nsubs);
    s->nsubs = 0;
}

void subs_session_clear(subs_service_t *svc, subs_session_t *s)
{
    session_clear_subs(svc, s);
    session_clear_queue(svc, s, s->persistent);
    if (s->persistent) {
        gw_subs_store_session_delete(svc->store, s->id);
        subs_batch_touch(svc);
    }
    subs_session_set_persistent(svc, s, false);
    s->npids = 0;
    pid_map_trim(s);
    s->next_pid = 1;
}

void subs_session_destroy(subs_service_t *svc, subs_session_t *s, bool durable)
{
    if (!s)
        return;
    if (!s->native) {
        subs_session_t **pp = &svc->buckets[subs_hash(s->id, strlen(s->id)) & (svc->nbuckets - 1)];
        while (*pp && *pp != s)
            pp = &(*pp)->hnext;
        if (*pp) {
            *pp = s->hnext;
            svc->nsessions--;
            GW_SVC_SET(svc->m.sessions, (int64_t)svc->nsessions);
        }
        subs_session_set_persistent(svc, s, false);
    }
    if (s->ctl)
        s->ctl->session = NULL;
    if (s->out) {
        s->out->session = NULL;
        if (!s->native)
            GW_SVC_ADD(svc->m.online_l4, -1);
    }
    session_clear_subs(svc, s);
    s->out = NULL;
    /* Still registered on an L4s (service exit, out of memory paths):
     * its in-flight deliveries are forgotten by q_remove below. */
    session_clear_queue(svc, s, durable);
    reg_drop(svc, s);
    if (s->over)
        subs_session_watermark(svc, s); /* offline now: leaves the count */
    syncwait_remove(svc, s);
    free(s->pid_small); /* or pid_map */
    free(s);
}

/* ------------------------------------------------------------------ */
/* Subscriptions                                                       */
/* ------------------------------------------------------------------ */

subs_sub_t *subs_session_sub_find(subs_session_t *s, const char *f, size_t len)
{
    for (subs_sub_t *sub = s->subs; sub; sub = sub->next)
        if (sub->len == len && memcmp(sub->filter, f, len) == 0)
            return sub;
    return NULL;
}

gw_err_t subs_session_sub_add(subs_service_t *svc, subs_session_t *s, const char *f,
                              size_t len, uint8_t qos, bool durable)
{
    subs_sub_t *sub = subs_session_sub_find(s, f, len);
    gw_err_t err = gw_topic_index_add(svc->index, f, len, s, qos, NULL);
    if (err != GW_OK)
        return err;
    if (!sub) {
        sub = malloc(sizeof *sub + len + 1);
        if (!sub) {
            gw_topic_index_remove(svc->index, f, len, s);
            return GW_ERR_NOMEM;
        }
        memcpy(sub->filter, f, len);
        sub->filter[len] = '\0';
        sub->len = len;
        sub->next = s->subs;
        s->subs = sub;
        s->nsubs++;
        GW_SVC_INC(svc->m.subscriptions);
    }
    sub->qos = qos; /* MQTT-3.8.4-3: replaces the existing subscription */
    if (durable && s->persistent) {
        err = gw_subs_store_sub_put(svc->store, s->id, f, len, qos);
        subs_batch_touch(svc);
    }
    return err;
}

void subs_session_sub_remove(subs_service_t *svc, subs_session_t *s, const char *f, size_t len)
{
    for (subs_sub_t **pp = &s->subs; *pp; pp = &(*pp)->next) {
        subs_sub_t *sub = *pp;
        if (sub->len == len && memcmp(sub->filter, f, len) == 0) {
            *pp = sub->next;
            gw_topic_index_remove(svc->index, f, len, s);
            if (s->persistent) {
                gw_subs_store_sub_delete(svc->store, s->id, f, len);
                subs_batch_touch(svc);
            }
            free(sub);
            s->nsubs--;
            GW_SVC_ADD(svc->m.subscriptions, -1);
            return;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Delivery                                                            */
/* ------------------------------------------------------------------ */


static gw_err_t send_entry(subs_service_t *svc, subs_session_t *s, subs_qentry_t *e,
                           pn_link_t *link, bool *done)
{
    gw_err_t err;
    pn_delivery_t *dlv = NULL;
    *done = false;
    if (e->state == GW_SUBS_Q_RELEASED) {
        /* Release resend (spec 3.10): subject pubrel, the client's packet id. */
        err = gw_spec_encode_pubrel(svc->out, e->pkt_id);
    } else {
        gw_spec_publish_t p = {
            .topic = {e->msg->topic, e->msg->topic_len},
            .payload = {e->msg->payload, e->msg->payload_len},
            .qos = e->qos,
            .retain = e->retain,
            .delivery_count = e->dcount,
            .has_message_id = e->pkt_id != 0,
            .message_id = e->pkt_id,
        };
        err = gw_spec_encode_publish(svc->out, &p);
    }
    if (err == GW_OK && s->reg)
        err = gw_spec_set_delivery_serial(svc->out, s->reg->serial);
    if (err != GW_OK)
        return err;
    /* QoS 0 goes pre-settled where the receiver allows it (mixed/settled).
     * Never on an L4s: its link is unsettled, every delivery holds a unit
     * of the client's window (spec 3.12). */
    bool presettled = e->qos == 0 && e->state != GW_SUBS_Q_RELEASED && !s->reg &&
                      pn_link_snd_settle_mode(link) != PN_SND_UNSETTLED;
    err = gw_amqp_send(NULL, link, svc->out, presettled, &dlv);
    if (err != GW_OK)
        return err;
    GW_SVC_INC(svc->delivered);
    GW_SVC_INC(svc->m.out_qos[e->qos > 2 ? 2 : e->qos]);
    e->dcount++;
    if (presettled) {
        *done = true;
        return GW_OK;
    }
    e->dlv = dlv;
    pn_delivery_set_context(dlv, e);
    if (s->reg)
        s->reg->unsettled++;
    if (e->seq && e->state == GW_SUBS_Q_QUEUED) {
        /* Remember it was transferred: after a crash it goes out with DUP. */
        e->state = GW_SUBS_Q_SENT;
        gw_subs_store_queue_state(svc->store, e->seq, GW_SUBS_Q_SENT);
        subs_batch_touch(svc);
    } else if (e->state == GW_SUBS_Q_QUEUED) {
        e->state = GW_SUBS_Q_SENT;
    }
    return GW_OK;
}

/* The link s sends on and how many transfers it may start now: the out
 * link's credit, or on an L4s the smaller of the link's credit (shared by
 * every session on it) and what is left of the client's window. NULL:
 * nothing can go out. *credit_bound: the link credit is the limit. */
static pn_link_t *pump_link(subs_session_t *s, int *budget, bool *credit_bound)
{
    subs_link_t *sl = s->reg ? s->reg->sh->sl : s->out;
    *credit_bound = false;
    if (!s->ready || !sl || !sl->link)
        return NULL;
    pn_link_t *link = sl->link;
    if (!(pn_link_state(link) & PN_LOCAL_ACTIVE) || !(pn_link_state(link) & PN_REMOTE_ACTIVE))
        return NULL;
    int credit = pn_link_credit(link);
    if (!s->reg) {
        /* Copies whose packet id waits for the commit will use credit too. */
        *budget = credit - (int)s->nunsynced;
        return link;
    }
    /* Those copies hold window units already (6.3 rule 7: W per client). */
    int room = (int)s->reg->window - (int)s->reg->unsettled - (int)s->nunsynced;
    *credit_bound = credit < room;
    *budget = *credit_bound ? credit : room;
    return link;
}

void subs_session_pump(subs_service_t *svc, subs_session_t *s)
{
    int budget;
    bool credit_bound;
    pn_link_t *link = pump_link(s, &budget, &credit_bound);
    if (!link)
        return;
    /* Entries up to s->qsent all have a delivery in flight: skip them. */
    subs_qentry_t *e = s->qsent ? s->qsent->next : s->qhead, *next;
    subs_qentry_t *prefix = s->qsent; /* last entry of that all-in-flight prefix */
    bool in_prefix = true;
    bool hold = false; /* a copy ahead waits for the commit: keep the order */
    bool stuck = false; /* stopped for another reason than the budget */
    for (; e && budget > 0; e = next) {
        next = e->next;
        if (e->dlv) {
            if (in_prefix)
                prefix = e;
            continue;
        }
        /* Not in flight: the prefix ends here unless it is sent below. */
        bool was_prefix = in_prefix;
        in_prefix = false;
        if (e->unsynced) {
            hold = true;
            continue;
        }
        if (e->qos > 0 && !e->pkt_id && !s->native && e->state != GW_SUBS_Q_RELEASED) {
            e->pkt_id = pid_alloc(s);
            if (!e->pkt_id) {
                /* 65535 in flight or released: cannot happen with a credit
                 * window below that; nothing is dropped, delivery waits. */
                GW_LOG_WARN(SUBS_MOD, s->id, "no free packet id: delivery paused");
                stuck = true;
                break;
            }
            if (e->seq) {
                /* The id and state `sent` join the batch: after a crash the
                 * copy is resent with DUP and this same id. QoS 2 (exactly
                 * once) waits for the commit before the transfer goes out.
                 * QoS 1 goes out now: if the process dies before the commit
                 * it is resent without DUP under a new id, which at least
                 * once allows, and the drain does not wait for an fsync per
                 * window. */
                gw_err_t err = gw_subs_store_queue_sent(svc->store, e->seq, e->pkt_id,
                                                        GW_SUBS_Q_SENT);
                subs_batch_touch(svc);
                if (err != GW_OK) {
                    pid_free(s, e->pkt_id);
                    e->pkt_id = 0;
                    GW_LOG_WARN(SUBS_MOD, s->id, "cannot store packet id: %s",
                                gw_err_str(err));
                    stuck = true;
                    break;
                }
                e->state = GW_SUBS_Q_SENT;
                if (e->qos == 2) {
                    e->unsynced = true;
                    s->nunsynced++;
                    (void)syncwait_add(svc, s); /* on failure: sent at a later commit */
                    budget--;
                    hold = true;
                    continue;
                }
            }
        }
        budget--;
        if (hold)
            continue; /* sent after the commit, behind the copies ahead of it */
        bool done;
        gw_err_t err = send_entry(svc, s, e, link, &done);
        if (err != GW_OK) {
            GW_LOG_WARN(SUBS_MOD, s->id, "cannot send to %s: %s", pn_link_name(link),
                        gw_err_str(err));
            stuck = true;
            break;
        }
        if (done) {
            q_remove(svc, s, e, true); /* pre-settled: gone */
            in_prefix = was_prefix;
        } else if (was_prefix) {
            prefix = e;
            in_prefix = true;
        }
    }
    s->qsent = prefix;
    /* L4s: the shared link's credit ran out with copies left and window
     * to spare: wait for the next flow, behind the sessions already
     * waiting (round robin among the clients of the link). */
    if (s->reg && credit_bound && !stuck && budget <= 0 && e && !hold)
        wait_add(s);
}

/* Copies in flight on the out link become unacknowledged: redelivered
 * (delivery-count already + 1, same packet id) at the next connection;
 * QoS 0 ones are dropped (at most once). clear_ctx: the link stays, so
 * the deliveries' contexts are cleared and their outcomes ignored. */
static void inflight_abandon(subs_service_t *svc, subs_session_t *s, bool clear_ctx)
{
    subs_qentry_t *e = s->qhead, *next;
    s->qsent = NULL; /* nothing is in flight any more */
    for (; e; e = next) {
        next = e->next;
        if (!e->dlv)
            continue;
        if (clear_ctx)
            pn_delivery_set_context(e->dlv, NULL);
        e->dlv = NULL; /* freed with the link (or settled when its outcome comes) */
        if (e->qos == 0)
            q_remove(svc, s, e, true); /* at most once: never redelivered */
    }
    s->ready = s->native;
    pid_map_trim(s);
}

void subs_session_out_lost(subs_service_t *svc, subs_session_t *s)
{
    inflight_abandon(svc, s, false);
    if (s->out && !s->native)
        GW_SVC_ADD(svc->m.online_l4, -1);
    s->out = NULL;
    if (s->over)
        subs_session_watermark(svc, s); /* offline: no longer holds publishers */
}

gw_err_t subs_session_register(subs_service_t *svc, subs_session_t *s, subs_shared_t *sh,
                               uint64_t serial, uint32_t window)
{
    subs_reg_t *r = calloc(1, sizeof *r);
    if (!r)
        return GW_ERR_NOMEM;
    r->sh = sh;
    r->serial = serial;
    r->window = (uint16_t)(window > 65535 ? 65535 : window ? window : 1);
    r->next = sh->sessions;
    if (sh->sessions)
        sh->sessions->reg->prev = s;
    sh->sessions = s;
    sh->nsessions++;
    s->reg = r;
    s->orphan_ms = 0;
    GW_SVC_ADD(svc->m.online_shared, 1);
    /* Online now: its queue counts against the high watermark again. */
    if (!s->over)
        subs_session_watermark(svc, s);
    return GW_OK;
}

bool subs_session_offline(subs_service_t *svc, subs_session_t *s, bool link_gone, bool keep)
{
    if (!s->reg)
        return true;
    if (s->reg->subs_on_l4s)
        s->subs_due = false; /* its answer had nowhere else to go */
    inflight_abandon(svc, s, !link_gone);
    reg_drop(svc, s);
    if (s->over)
        subs_session_watermark(svc, s); /* offline: no longer holds publishers */
    if (s->persistent)
        return true;
    /* Transient: the session ends with the connection (MQTT-3.1.2-6). */
    if (keep) {
        subs_session_clear(svc, s);
        return true;
    }
    GW_LOG_DEBUG(SUBS_MOD, s->id, "transient session ended");
    subs_session_destroy(svc, s, false);
    return false;
}

void subs_session_outcome(subs_service_t *svc, subs_link_t *sl, pn_delivery_t *dlv)
{
    subs_qentry_t *e = pn_delivery_get_context(dlv);
    uint64_t state = pn_delivery_remote_state(dlv);
    bool settled = pn_delivery_settled(dlv);
    /* On an L4s the entry names its session; a delivery whose session went
     * offline (or was stolen) has no context any more: ignored. */
    subs_session_t *s = sl->kind == SL_OUT_SHARED ? (e ? e->owner : NULL) : sl->session;

    if (!state && !settled)
        return; /* non-terminal update */
    if (!e || !s) {
        if (settled || state)
            pn_delivery_settle(dlv);
        return;
    }
    e->dlv = NULL;
    pn_delivery_set_context(dlv, NULL);
    pn_delivery_settle(dlv);
    if (s->reg && s->reg->unsettled)
        s->reg->unsettled--; /* a unit of the client's window back */
    switch (state) {
    case PN_RELEASED:
    case PN_MODIFIED:
        /* Not processed: send again later (delivery-count already + 1).
         * It may sit in the in-flight prefix: the next pump starts over. */
        s->qsent = NULL;
        break;
    case PN_REJECTED:
        GW_LOG_WARN(SUBS_MOD, s->id, "delivery of packet id %u rejected by the receiver: "
                    "dropped", (unsigned)e->pkt_id);
        q_remove(svc, s, e, true);
        break;
    default: /* accepted, or settled without outcome: the client has it */
        q_remove(svc, s, e, true);
        break;
    }
    subs_session_pump(svc, s);
}

gw_err_t subs_session_release(subs_service_t *svc, subs_session_t *s, uint64_t pkt_id)
{
    for (subs_qentry_t *e = s->qhead; e && pkt_id; e = e->next) {
        if (e->pkt_id == pkt_id && e->qos == 2) {
            if (e->state == GW_SUBS_Q_RELEASED)
                return GW_OK;
            e->state = GW_SUBS_Q_RELEASED;
            if (e->seq) {
                subs_batch_touch(svc);
                return gw_subs_store_queue_state(svc->store, e->seq, GW_SUBS_Q_RELEASED);
            }
            return GW_OK;
        }
    }
    return GW_OK; /* a repeat after a failure (spec 5.2): accept */
}

void subs_session_set_persistent(subs_service_t *svc, subs_session_t *s, bool persistent)
{
    if (s->persistent == persistent)
        return;
    s->persistent = persistent;
    if (!s->native)
        GW_SVC_ADD(svc->m.sessions_persistent, persistent ? 1 : -1);
}

/*
 * A transient session lives as long as its links (spec 5.2 Delivery 3: it
 * ends with its L4). A control message (AMQP_SUBSCRIBE, AMQP_UNSUBSCRIBE)
 * for a client that never attaches them would otherwise create a session
 * that stays until exit. Each sweep marks the transient sessions without
 * links; those still without links --transient-timeout later are dropped
 * (nothing durable to delete: a transient session is never stored).
 */
static int64_t wall_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * --session-expiry: the sweep notes when a persistent session is first seen
 * offline, in the store too (wall clock, so that the time counts across a
 * restart), clears it once the session is online again, and deletes a
 * session offline for longer than the expiry. These writes join the open
 * batch and nothing waits for them: the CONNECT path writes nothing more.
 * Returns false if s was deleted.
 */
static bool persistent_sweep(subs_service_t *svc, subs_session_t *s, int64_t wall)
{
    if (s->ctl || subs_session_online(s) || s->list_wait) {
        if (s->offline_wall_ms) {
            s->offline_wall_ms = 0;
            if (s->offline_stored && gw_subs_store_session_offline(svc->store, s->id, 0) == GW_OK)
                subs_batch_touch(svc);
            s->offline_stored = false;
        }
        return true;
    }
    if (!s->offline_wall_ms) {
        s->offline_wall_ms = wall;
        if (gw_subs_store_session_offline(svc->store, s->id, wall) == GW_OK) {
            s->offline_stored = true;
            subs_batch_touch(svc);
        }
        return true;
    }
    int64_t exp = svc->cfg->session_expiry;
    if (exp <= 0 || wall - s->offline_wall_ms < exp)
        return true;
    GW_LOG_INFO(SUBS_MOD, s->id,
                "persistent session offline for %lld s: expired (%zu subs, %zu queued dropped)",
                (long long)((wall - s->offline_wall_ms) / 1000), s->nsubs, s->qcount);
    GW_SVC_INC(svc->m.expired_persistent);
    subs_session_clear(svc, s); /* deletes its rows in the open batch */
    subs_session_destroy(svc, s, false);
    return false;
}

void subs_session_sweep(subs_service_t *svc)
{
    int64_t now = subs_now_ms();
    int64_t wall = svc->cfg->session_expiry > 0 ? wall_now_ms() : 0;
    for (size_t i = 0; i < svc->nbuckets; i++) {
        subs_session_t *next;
        for (subs_session_t *s = svc->buckets[i]; s; s = next) {
            next = s->hnext;
            if (s->persistent) {
                s->orphan_ms = 0;
                if (wall)
                    persistent_sweep(svc, s, wall);
                continue;
            }
            if (s->ctl || subs_session_online(s)) {
                s->orphan_ms = 0;
                continue;
            }
            if (!s->orphan_ms) {
                s->orphan_ms = now;
                continue;
            }
            if (now - s->orphan_ms >= svc->cfg->transient_timeout) {
                GW_LOG_INFO(SUBS_MOD, s->id,
                            "transient session without links for %lld ms: dropped (%zu subs)",
                            (long long)(now - s->orphan_ms), s->nsubs);
                GW_SVC_INC(svc->m.expired);
                subs_session_destroy(svc, s, false);
            }
        }
    }
}
