/*
 * retained.c - retained messages: one per topic, in memory (hash by topic)
 * and in the store. New subscriptions get the matching ones with the
 * retain flag set (MQTT-3.3.1-6); live copies never carry it (MQTT-3.3.1-9).
 */
#include <stdlib.h>
#include <string.h>

#include "gw/log.h"
#include "gw/mqtt.h"
#include "subs.h"

static subs_ret_t **ret_slot(subs_service_t *svc, const char *topic, size_t tlen)
{
    subs_ret_t **pp = &svc->rbuckets[subs_hash(topic, tlen) & (svc->nrbuckets - 1)];
    for (; *pp; pp = &(*pp)->hnext)
        if ((*pp)->msg->topic_len == tlen && memcmp((*pp)->msg->topic, topic, tlen) == 0)
            break;
    return pp;
}

static void ret_grow(subs_service_t *svc)
{
    size_t n = svc->nrbuckets * 2;
    subs_ret_t **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < svc->nrbuckets; i++) {
        subs_ret_t *r = svc->rbuckets[i], *next;
        for (; r; r = next) {
            next = r->hnext;
            size_t k = subs_hash(r->msg->topic, r->msg->topic_len) & (n - 1);
            r->hnext = b[k];
            b[k] = r;
        }
    }
    free(svc->rbuckets);
    svc->rbuckets = b;
    svc->nrbuckets = n;
}

gw_err_t subs_retained_set(subs_service_t *svc, subs_msg_t *msg, bool durable)
{
    gw_err_t err = GW_OK;
    if (durable) {
        err = gw_subs_store_retained_put(svc->store, msg->topic, msg->topic_len, msg->payload,
                                         msg->payload_len, msg->qos);
        subs_batch_touch(svc);
        if (err != GW_OK)
            return err;
    }
    subs_ret_t **pp = ret_slot(svc, msg->topic, msg->topic_len);
    if (*pp) {
        /* MQTT-3.3.1-5/7: the new message replaces the old one. */
        subs_msg_unref(svc, (*pp)->msg);
        (*pp)->msg = msg;
        msg->refs++;
        return GW_OK;
    }
    subs_ret_t *r = malloc(sizeof *r);
    if (!r)
        return GW_ERR_NOMEM;
    r->msg = msg;
    msg->refs++;
    r->hnext = NULL;
    *pp = r;
    GW_SVC_SET(svc->m.retained, (int64_t)svc->nretained + 1);
    if (++svc->nretained > svc->nrbuckets)
        ret_grow(svc);
    return GW_OK;
}

gw_err_t subs_retained_clear(subs_service_t *svc, const char *topic, size_t tlen)
{
    subs_ret_t **pp = ret_slot(svc, topic, tlen);
    if (!*pp)
        return GW_OK;
    gw_err_t err = gw_subs_store_retained_delete(svc->store, topic, tlen);
    subs_batch_touch(svc);
    subs_ret_t *r = *pp;
    *pp = r->hnext;
    svc->nretained--;
    GW_SVC_SET(svc->m.retained, (int64_t)svc->nretained);
    subs_msg_unref(svc, r->msg);
    free(r);
    return err;
}

void subs_retained_deliver(subs_service_t *svc, subs_session_t *s, const char *filter,
                           size_t flen, uint8_t granted)
{
    /* A full scan: subscribing is rare next to publishing, and a trie of
     * retained topics would cost memory on every retained message. */
    for (size_t i = 0; i < svc->nrbuckets; i++) {
        for (subs_ret_t *r = svc->rbuckets[i]; r; r = r->hnext) {
            subs_msg_t *m = r->msg;
            if (!gw_topic_matches(filter, flen, m->topic, m->topic_len))
                continue;
            uint8_t qos = m->qos < granted ? m->qos : granted;
            gw_err_t err = subs_session_enqueue(svc, s, m, qos, true);
            if (err != GW_OK)
                GW_LOG_WARN(SUBS_MOD, s->id, "retained %s not queued: %s", m->topic,
                            gw_err_str(err));
        }
    }
}

void subs_retained_free_all(subs_service_t *svc)
{
    if (!svc->rbuckets)
        return;
    for (size_t i = 0; i < svc->nrbuckets; i++) {
        while (svc->rbuckets[i]) {
            subs_ret_t *r = svc->rbuckets[i];
            svc->rbuckets[i] = r->hnext;
            subs_msg_unref(svc, r->msg);
            free(r);
        }
    }
    free(svc->rbuckets);
    svc->rbuckets = NULL;
    svc->nretained = 0;
    GW_SVC_SET(svc->m.retained, 0);
}
