/*
 * fabric.c - publication intake: retain, match, one copy per subscriber.
 */
#include <stdlib.h>
#include <string.h>

#include "gw/log.h"
#include "subs.h"

/* Fold the index's (filter, subscriber) matches into one entry per
 * session with the highest granted QoS (MQTT 3.1.1 section 3.3.5). */
static bool fabric_collect(void *subscriber, uint8_t qos, void *arg)
{
    subs_service_t *svc = arg;
    subs_session_t *s = subscriber;
    if (s->match_gen == svc->gen) {
        if (qos > s->match_qos)
            s->match_qos = qos;
        return true;
    }
    if (svc->nmatch == svc->capmatch) {
        size_t cap = svc->capmatch ? svc->capmatch * 2 : 64;
        subs_session_t **m = realloc(svc->match, cap * sizeof *m);
        if (!m)
            return false; /* reported as an allocation failure below */
        svc->match = m;
        svc->capmatch = cap;
    }
    s->match_gen = svc->gen;
    s->match_qos = qos;
    svc->match[svc->nmatch++] = s;
    return true;
}

gw_err_t subs_fabric_publish(subs_service_t *svc, const gw_spec_publish_t *p)
{
    gw_err_t err = GW_OK;
    subs_msg_t *msg = subs_msg_new(p->topic.ptr, p->topic.len, p->payload.ptr, p->payload.len,
                                   p->qos);
    if (!msg)
        return GW_ERR_NOMEM;
    msg->refs = 1; /* ours until the end of this function */
    GW_SVC_INC(svc->published);
    GW_SVC_INC(svc->m.in_qos[p->qos > 2 ? 2 : p->qos]);

    if (p->retain) {
        if (p->payload.len == 0)
            err = subs_retained_clear(svc, p->topic.ptr, p->topic.len); /* MQTT-3.3.1-10/11 */
        else
            err = subs_retained_set(svc, msg, true); /* MQTT-3.3.1-5 */
        if (err != GW_OK)
            goto cleanup;
    }

    svc->gen++;
    svc->nmatch = 0;
    size_t visits = gw_topic_index_match(svc->index, p->topic.ptr, p->topic.len, fabric_collect,
                                         svc);
    if (visits && !svc->nmatch) {
        err = GW_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t i = 0; i < svc->nmatch; i++) {
        subs_session_t *s = svc->match[i];
        uint8_t qos = p->qos < s->match_qos ? p->qos : s->match_qos; /* MQTT-3.8.4-6 */
        gw_err_t e2 = subs_session_enqueue(svc, s, msg, qos, false); /* MQTT-3.3.1-9 */
        if (e2 != GW_OK) {
            GW_LOG_ERROR(SUBS_MOD, s->id, "cannot queue %s: %s", msg->topic, gw_err_str(e2));
            err = e2;
        }
    }
cleanup:
    subs_msg_unref(svc, msg);
    return err;
}
