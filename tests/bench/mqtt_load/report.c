/*
 * report.c - end-of-run accounting: losses per (sink, publisher), rates,
 * latency percentiles; a human summary on stderr and one JSON line on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gw/topic.h"
#include "load.h"

typedef struct loss {
    uint64_t lost, unacked_missing, missing;
} loss_t;

static void sink_loss(const lt_run_t *run, const lt_sink_t *sink, const char *filter, loss_t *l)
{
    const lt_cfg_t *cfg = &run->cfg;
    if (cfg->publishers == 0) {
        /* External senders: only gaps below the highest number seen are known. */
        for (uint32_t j = 0; j < sink->npairs; j++) {
            if (sink->pairs[j])
                l->missing += lt_pair_missing_below(sink->pairs[j], sink->pairs[j]->next);
        }
        return;
    }
    for (int64_t j = 0; j < cfg->publishers; j++) {
        const lt_client_t *p = run->pubs[j];
        if (filter && !gw_topic_matches(filter, strlen(filter), p->topic, strlen(p->topic)))
            continue;
        uint64_t all = lt_sink_missing_below(sink, (uint32_t)j, p->next_seq);
        if (cfg->qos == 0) {
            l->missing += all;
        } else {
            uint64_t acked = lt_sink_missing_below(sink, (uint32_t)j, p->acked_upto);
            l->lost += acked;
            l->unacked_missing += all - acked;
        }
    }
}

static double rate(uint64_t n, uint64_t from, uint64_t to)
{
    if (to <= from || n == 0)
        return 0.0;
    return (double)n * 1e9 / (double)(to - from);
}

static int report_connections(lt_run_t *run)
{
    const lt_cfg_t *cfg = &run->cfg;
    uint64_t connected = 0, errors = 0, connack_errors = 0, last = 0;
    for (uint32_t i = 0; i < run->nworkers; i++) {
        lt_stats_t *st = &run->workers[i]->st;
        errors += LT_GET(st->setup_errors) + LT_GET(st->errors);
        connack_errors += st->connack_errors;
        if (st->t_last_connack > last)
            last = st->t_last_connack;
    }
    /* CONNACKs counted by the ready counters (clients are closed by now). */
    for (uint32_t i = 0; i < run->nworkers; i++)
        connected += LT_GET(run->workers[i]->st.ready);
    uint64_t t0 = LT_GET(run->t_start);
    double secs = last > t0 ? (double)(last - t0) / 1e9 : 0.0;
    double crate = rate(connected, t0, last);
    bool complete = connected == (uint64_t)cfg->connections && !run->interrupted;
    int64_t rss_delta = (int64_t)run->rss_after - (int64_t)run->rss_before;
    double per_conn = connected ? (double)rss_delta / (double)connected : 0.0;

    if (!cfg->json) {
        fprintf(stderr, "mqtt-load%s%s: %llu/%lld connections in %.3f s = %.0f conn/s%s%s\n",
                cfg->label ? " " : "", cfg->label ? cfg->label : "",
                (unsigned long long)connected, (long long)cfg->connections, secs, crate,
                cfg->will ? " (with will)" : "", cfg->persistent ? " (persistent)" : "");
        if (connack_errors || errors)
            fprintf(stderr, "  errors: %llu (CONNACK refusals %llu)\n",
                    (unsigned long long)errors, (unsigned long long)connack_errors);
        if (cfg->pids.count)
            fprintf(stderr, "  RSS of --pid: %llu -> %llu bytes: %.0f bytes/connection\n",
                    (unsigned long long)run->rss_before, (unsigned long long)run->rss_after,
                    per_conn);
    }
    json_t *o = json_object();
    json_t *pids = json_array();
    for (size_t i = 0; i < cfg->pids.count; i++)
        json_array_append_new(pids, json_string(cfg->pids.items[i]));
    json_object_set_new(o, "label", cfg->label ? json_string(cfg->label) : json_null());
    json_object_set_new(o, "mode", json_string("connections"));
    json_object_set_new(o, "connections", json_integer(cfg->connections));
    json_object_set_new(o, "connected", json_integer((json_int_t)connected));
    json_object_set_new(o, "will", json_boolean(cfg->will));
    json_object_set_new(o, "persistent", json_boolean(cfg->persistent));
    json_object_set_new(o, "connect_s", json_real(secs));
    json_object_set_new(o, "connect_rate", json_real(crate));
    json_object_set_new(o, "errors", json_integer((json_int_t)errors));
    json_object_set_new(o, "connack_errors", json_integer((json_int_t)connack_errors));
    json_object_set_new(o, "setup_timed_out", json_boolean(run->setup_timed_out));
    json_object_set_new(o, "pids", pids);
    json_object_set_new(o, "rss_before_bytes", json_integer((json_int_t)run->rss_before));
    json_object_set_new(o, "rss_after_bytes", json_integer((json_int_t)run->rss_after));
    json_object_set_new(o, "rss_per_conn_bytes", json_real(per_conn));
    json_object_set_new(o, "complete", json_boolean(complete));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s)
        printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(o);
    return complete ? 0 : 1;
}

static json_t *lat_json(const lt_hist_t *h)
{
    json_t *o = json_object();
    json_object_set_new(o, "count", json_integer((json_int_t)h->count));
    json_object_set_new(o, "min", json_real(h->count ? (double)h->min / 1e3 : 0.0));
    json_object_set_new(o, "mean", json_real(h->count ? (double)h->sum / (double)h->count / 1e3
                                                      : 0.0));
    json_object_set_new(o, "p50", json_real((double)lt_hist_percentile(h, 50) / 1e3));
    json_object_set_new(o, "p90", json_real((double)lt_hist_percentile(h, 90) / 1e3));
    json_object_set_new(o, "p99", json_real((double)lt_hist_percentile(h, 99) / 1e3));
    json_object_set_new(o, "p999", json_real((double)lt_hist_percentile(h, 99.9) / 1e3));
    json_object_set_new(o, "max", json_real(h->count ? (double)h->max / 1e3 : 0.0));
    return o;
}

int lt_report(lt_run_t *run)
{
    const lt_cfg_t *cfg = &run->cfg;
    if (cfg->connections > 0)
        return report_connections(run);

    uint64_t sent = 0, acked = 0, delivered = 0, sm = 0, am = 0, dm = 0, dups = 0, ooo = 0;
    uint64_t foreign = 0, errors = 0, setup_errors = 0, perr = 0, connack_errors = 0;
    uint64_t suback_failures = 0, downgrades = 0, last_ack = 0, last_dlv = 0;
    lt_hist_t *lat = malloc(sizeof(*lat));
    if (!lat)
        return 1;
    lt_hist_init(lat);
    for (uint32_t i = 0; i < run->nworkers; i++) {
        lt_stats_t *st = &run->workers[i]->st;
        sent += LT_GET(st->sent);
        acked += LT_GET(st->acked);
        delivered += LT_GET(st->delivered);
        sm += st->sent_measured;
        am += st->acked_measured;
        dm += st->delivered_measured;
        dups += st->dups;
        ooo += st->ooo;
        foreign += st->foreign;
        errors += LT_GET(st->errors);
        setup_errors += LT_GET(st->setup_errors);
        perr += st->protocol_errors;
        connack_errors += st->connack_errors;
        suback_failures += st->suback_failures;
        downgrades += st->suback_downgrades;
        if (st->t_last_ack > last_ack)
            last_ack = st->t_last_ack;
        if (st->t_last_delivery > last_dlv)
            last_dlv = st->t_last_delivery;
        lt_hist_merge(lat, &st->lat);
    }
    loss_t l = {0, 0, 0};
    for (int64_t i = 0; i < cfg->subscribers; i++)
        sink_loss(run, &run->subs[i]->sink, run->subs[i]->topic, &l);
    if (run->shared_sink) {
        sink_loss(run, run->shared_sink, NULL, &l);
    } else {
        for (int64_t i = 0; i < cfg->amqp_receivers; i++)
            sink_loss(run, &run->amqp[i]->own_sink, NULL, &l);
    }
    uint64_t expected = 0;
    for (int64_t j = 0; j < cfg->publishers; j++)
        expected += run->fanout[j] * run->pubs[j]->next_seq;

    uint64_t t_meas = LT_GET(run->t_measure), t_pub_end = LT_GET(run->t_pub_end);
    bool started = t_meas != UINT64_MAX && LT_GET(run->phase) >= LT_RUN;
    if (!started)
        t_meas = t_pub_end = 0;
    double pub_s = t_pub_end > t_meas ? (double)(t_pub_end - t_meas) / 1e9 : 0.0;
    double pub_rate = rate(sm, t_meas, t_pub_end);
    double ack_rate = rate(am, t_meas, last_ack);
    double dlv_rate = rate(dm, t_meas, last_dlv);
    bool complete = started && !run->setup_timed_out && setup_errors == 0 && errors == 0 &&
                    !run->interrupted && !run->drain_timed_out;

    if (!cfg->json) {
        fprintf(stderr,
                "mqtt-load%s%s: qos %lld, %lld pub -> %lld sub + %lld amqp, payload %lld B, "
                "rate %s, window %lld\n",
                cfg->label ? " " : "", cfg->label ? cfg->label : "", (long long)cfg->qos,
                (long long)cfg->publishers, (long long)cfg->subscribers,
                (long long)cfg->amqp_receivers, (long long)cfg->payload,
                cfg->rate ? "fixed" : "max", (long long)cfg->window);
        if (run->setup_timed_out)
            fprintf(stderr, "  SETUP TIMED OUT (see errors above)\n");
        fprintf(stderr, "  sent      %llu in %.3f s: %.0f msg/s (acked %llu: %.0f msg/s)\n",
                (unsigned long long)sent, pub_s, pub_rate, (unsigned long long)acked, ack_rate);
        fprintf(stderr, "  delivered %llu of %llu expected: %.0f msg/s%s\n",
                (unsigned long long)delivered, (unsigned long long)expected, dlv_rate,
                run->drain_timed_out ? " (drain timed out)" : "");
        fprintf(stderr, "  lost %llu, unacked-missing %llu, missing(qos0) %llu, dups %llu, "
                        "ooo %llu, foreign %llu\n",
                (unsigned long long)l.lost, (unsigned long long)l.unacked_missing,
                (unsigned long long)l.missing, (unsigned long long)dups,
                (unsigned long long)ooo, (unsigned long long)foreign);
        if (errors || setup_errors || perr)
            fprintf(stderr, "  errors: connection %llu, setup %llu (CONNACK %llu, SUBACK %llu), "
                            "protocol %llu\n",
                    (unsigned long long)errors, (unsigned long long)setup_errors,
                    (unsigned long long)connack_errors, (unsigned long long)suback_failures,
                    (unsigned long long)perr);
        fprintf(stderr,
                "  latency us (%llu samples): p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
                (unsigned long long)lat->count, (double)lt_hist_percentile(lat, 50) / 1e3,
                (double)lt_hist_percentile(lat, 90) / 1e3,
                (double)lt_hist_percentile(lat, 99) / 1e3,
                (double)lt_hist_percentile(lat, 99.9) / 1e3,
                lat->count ? (double)lat->max / 1e3 : 0.0);
    }

    json_t *o = json_object();
    json_object_set_new(o, "label", cfg->label ? json_string(cfg->label) : json_null());
    json_object_set_new(o, "mode", json_string("pubsub"));
    json_object_set_new(o, "qos", json_integer(cfg->qos));
    json_object_set_new(o, "publishers", json_integer(cfg->publishers));
    json_object_set_new(o, "subscribers", json_integer(cfg->subscribers));
    json_object_set_new(o, "amqp_receivers", json_integer(cfg->amqp_receivers));
    json_object_set_new(o, "payload", json_integer(cfg->payload));
    json_object_set_new(o, "rate_target", json_integer(cfg->rate));
    json_object_set_new(o, "window", json_integer(cfg->window));
    json_object_set_new(o, "threads", json_integer(cfg->threads));
    json_object_set_new(o, "publish_s", json_real(pub_s));
    json_object_set_new(o, "sent", json_integer((json_int_t)sent));
    json_object_set_new(o, "acked", json_integer((json_int_t)acked));
    json_object_set_new(o, "expected", json_integer((json_int_t)expected));
    json_object_set_new(o, "delivered", json_integer((json_int_t)delivered));
    json_object_set_new(o, "lost", json_integer((json_int_t)l.lost));
    json_object_set_new(o, "unacked_missing", json_integer((json_int_t)l.unacked_missing));
    json_object_set_new(o, "missing", json_integer((json_int_t)l.missing));
    json_object_set_new(o, "dups", json_integer((json_int_t)dups));
    json_object_set_new(o, "ooo", json_integer((json_int_t)ooo));
    json_object_set_new(o, "foreign", json_integer((json_int_t)foreign));
    json_object_set_new(o, "publish_rate", json_real(pub_rate));
    json_object_set_new(o, "acked_rate", json_real(ack_rate));
    json_object_set_new(o, "delivered_rate", json_real(dlv_rate));
    json_object_set_new(o, "sent_measured", json_integer((json_int_t)sm));
    json_object_set_new(o, "delivered_measured", json_integer((json_int_t)dm));
    json_object_set_new(o, "latency_us", lat_json(lat));
    json_object_set_new(o, "errors", json_integer((json_int_t)errors));
    json_object_set_new(o, "setup_errors", json_integer((json_int_t)setup_errors));
    json_object_set_new(o, "connack_errors", json_integer((json_int_t)connack_errors));
    json_object_set_new(o, "suback_failures", json_integer((json_int_t)suback_failures));
    json_object_set_new(o, "suback_downgrades", json_integer((json_int_t)downgrades));
    json_object_set_new(o, "protocol_errors", json_integer((json_int_t)perr));
    json_object_set_new(o, "setup_timed_out", json_boolean(run->setup_timed_out));
    json_object_set_new(o, "drain_timed_out", json_boolean(run->drain_timed_out));
    json_object_set_new(o, "interrupted", json_boolean(run->interrupted));
    json_object_set_new(o, "complete", json_boolean(complete));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s)
        printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(o);
    free(lat);
    return started && !run->setup_timed_out && setup_errors == 0 ? 0 : 1;
}
