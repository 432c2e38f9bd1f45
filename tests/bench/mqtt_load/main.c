/*
 * main.c - mqtt-load: set up workers (one libevent loop each), run the
 * phases SETUP -> RUN -> DRAIN -> DONE, report.
 *
 * The controller runs on worker 0's 10 ms tick:
 *   SETUP  every client has its CONNACK (subscribers their SUBACK) and every
 *          AMQP link is attached -> RUN (publishing starts only now);
 *          a refusal or --setup-timeout -> DONE (exit 1).
 *   RUN    every publisher used its --messages share, or --duration is over
 *          -> DRAIN. Without publishers: every sink got --messages.
 *   DRAIN  everything sent is acknowledged (QoS 1/2) and every sink has every
 *          message meant for it, or --drain is over -> DONE.
 *   DONE   DISCONNECT everything, wait for the output to flush (2 s at most).
 * Connections mode (--connections N): SETUP opens N idle clients, at most
 * --connect-concurrency at a time; when all have their CONNACK the RSS of
 * --pid is read, --hold is waited, DONE.
 */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/event.h>

#include "gw/log.h"
#include "gw/topic.h"
#include "load.h"

#define TICK_MS 10

uint64_t lt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t get_be64(const uint8_t *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

void lt_record_payload(lt_worker_t *w, lt_sink_t *sink, const uint8_t *p, size_t len,
                       uint64_t now)
{
    lt_stats_t *st = &w->st;
    if (len < LT_HDR_SIZE) {
        st->foreign++;
        return;
    }
    uint32_t pub = get_be32(p);
    uint64_t seq = get_be64(p + 4);
    uint64_t ts = get_be64(p + 12);
    lt_run_t *run = w->run;
    if (run->cfg.publishers > 0 && pub >= (uint64_t)run->cfg.publishers) {
        st->foreign++;
        return;
    }
    lt_pair_t *pair = lt_sink_pair(sink, pub);
    if (!pair) {
        st->foreign++;
        return;
    }
    switch (lt_pair_record(pair, seq)) {
    case LT_SEEN_DUP:
        st->dups++;
        return;
    case LT_SEEN_ERR:
        st->foreign++;
        return;
    case LT_SEEN_OOO:
        st->ooo++;
        /* fall through: a first delivery all the same */
    case LT_SEEN_NEW:
        break;
    }
    LT_INC(st->delivered, 1);
    if (ts >= LT_GET(run->t_measure) && ts != 0) {
        st->delivered_measured++;
        st->t_last_delivery = now;
        lt_hist_record(&st->lat, now > ts ? now - ts : 0);
    }
}

uint64_t lt_rss_bytes(const char *pid)
{
    char path[64], line[256];
    uint64_t kb = 0;
    snprintf(path, sizeof(path), "/proc/%s/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtoull(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

uint64_t lt_rss_total(const lt_cfg_t *cfg)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < cfg->pids.count; i++)
        sum += lt_rss_bytes(cfg->pids.items[i]);
    return sum;
}

/* ---------------------------------------------------------------- */
/* Controller (worker 0)                                             */
/* ---------------------------------------------------------------- */

typedef struct totals {
    uint64_t sent, acked, delivered, ready, pubs_done, setup_errors, open;
} totals_t;

static void sum_totals(lt_run_t *run, totals_t *t)
{
    memset(t, 0, sizeof(*t));
    for (uint32_t i = 0; i < run->nworkers; i++) {
        lt_stats_t *st = &run->workers[i]->st;
        t->sent += LT_GET(st->sent);
        t->acked += LT_GET(st->acked);
        t->delivered += LT_GET(st->delivered);
        t->ready += LT_GET(st->ready);
        t->pubs_done += LT_GET(st->pubs_done);
        t->setup_errors += LT_GET(st->setup_errors);
        t->open += LT_GET(st->open);
    }
}

static uint64_t expected_deliveries(lt_run_t *run)
{
    uint64_t n = 0;
    for (int64_t j = 0; j < run->cfg.publishers; j++)
        n += run->fanout[j] * LT_GET(run->pub_sent[j]);
    return n;
}

static void set_phase(lt_run_t *run, int phase)
{
    atomic_store_explicit(&run->phase, phase, memory_order_release);
}

static void controller(lt_run_t *run, uint64_t now)
{
    const lt_cfg_t *cfg = &run->cfg;
    totals_t t;
    int phase = atomic_load(&run->phase);
    sum_totals(run, &t);
    switch (phase) {
    case LT_SETUP:
        if (t.setup_errors > 0) {
            run->setup_timed_out = false;
            atomic_store(&run->t_end, now);
            set_phase(run, LT_DONE);
        } else if (t.ready >= run->expected_ready) {
            if (cfg->connections > 0) {
                run->rss_after = lt_rss_total(cfg);
                atomic_store(&run->t_pub_end, now); /* all CONNACKs in */
                atomic_store(&run->t_end, now + (uint64_t)cfg->hold_ms * 1000000ull);
                set_phase(run, LT_DRAIN);
                return;
            }
            atomic_store(&run->t_start, now);
            if (cfg->publishers > 0)
                atomic_store(&run->t_measure, now + (uint64_t)cfg->warmup_ms * 1000000ull);
            set_phase(run, LT_RUN);
        } else if (now - LT_GET(run->t_start) > (uint64_t)cfg->setup_timeout_ms * 1000000ull) {
            run->setup_timed_out = true;
            atomic_store(&run->t_end, now);
            set_phase(run, LT_DONE);
        }
        return;
    case LT_RUN: {
        bool over = cfg->duration_ms > 0 &&
                    now - LT_GET(run->t_start) >= (uint64_t)cfg->duration_ms * 1000000ull;
        bool done;
        if (cfg->publishers > 0) {
            done = t.pubs_done >= (uint64_t)cfg->publishers;
        } else {
            uint64_t sinks = (uint64_t)cfg->subscribers +
                             (cfg->amqp_shared ? 1u : (uint64_t)cfg->amqp_receivers);
            done = cfg->messages > 0 && t.delivered >= (uint64_t)cfg->messages * sinks;
        }
        if (over || done) {
            atomic_store(&run->t_pub_end, now);
            set_phase(run, cfg->publishers > 0 ? LT_DRAIN : LT_DONE);
            if (cfg->publishers == 0)
                atomic_store(&run->t_end, now);
        }
        return;
    }
    case LT_DRAIN:
        if (cfg->connections > 0) {
            if (now >= LT_GET(run->t_end))
                set_phase(run, LT_DONE);
            return;
        }
        if (t.acked >= t.sent && t.delivered >= expected_deliveries(run)) {
            atomic_store(&run->t_end, now);
            set_phase(run, LT_DONE);
        } else if (now - LT_GET(run->t_pub_end) >= (uint64_t)cfg->drain_ms * 1000000ull) {
            run->drain_timed_out = true;
            atomic_store(&run->t_end, now);
            set_phase(run, LT_DONE);
        }
        return;
    default:
        return;
    }
}

/* ---------------------------------------------------------------- */
/* Workers                                                           */
/* ---------------------------------------------------------------- */

static int worker_add(lt_worker_t *w, lt_client_t *c)
{
    if (w->nclients == w->cap_clients) {
        uint32_t cap = w->cap_clients ? w->cap_clients * 2 : 16;
        lt_client_t **p = realloc(w->clients, cap * sizeof(*p));
        if (!p)
            return -1;
        w->clients = p;
        w->cap_clients = cap;
    }
    w->clients[w->nclients++] = c;
    return 0;
}

/* Connections mode: keep --connect-concurrency connects in flight. */
void lt_worker_open_more(lt_worker_t *w)
{
    const lt_cfg_t *cfg = &w->run->cfg;
    uint64_t limit = (uint64_t)cfg->connect_concurrency / w->run->nworkers;
    if (limit == 0)
        limit = 1;
    if (atomic_load(&w->run->phase) != LT_SETUP)
        return;
    uint64_t finished = LT_GET(w->st.ready) + LT_GET(w->st.setup_errors);
    while (w->next_connect < w->nclients && w->next_connect - finished < limit) {
        lt_client_t *c = w->clients[w->next_connect++];
        lt_client_connect(c);
    }
}

static void worker_shutdown(lt_worker_t *w)
{
    for (uint32_t i = 0; i < w->nclients; i++)
        lt_client_shutdown(w->clients[i]);
    if (w->id == 0 && w->run->amqp) {
        for (int64_t i = 0; i < w->run->cfg.amqp_receivers; i++)
            lt_amqp_shutdown(w->run->amqp[i]);
    }
}

static void on_pace(evutil_socket_t fd, short what, void *arg)
{
    lt_worker_t *w = arg;
    for (uint32_t i = 0; i < w->nclients; i++) {
        if (w->clients[i]->kind == LT_PUB)
            lt_client_pump(w->clients[i]);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    lt_worker_t *w = arg;
    lt_run_t *run = w->run;
    uint64_t now = lt_now_ns();
    if (w->id == 0)
        controller(run, now);
    int phase = atomic_load_explicit(&run->phase, memory_order_acquire);
    if (phase != w->seen_phase) {
        w->seen_phase = phase;
        if (phase == LT_RUN) {
            for (uint32_t i = 0; i < w->nclients; i++)
                lt_client_pump(w->clients[i]);
            if (w->pace) {
                struct timeval tv = {0, 1000};
                event_add(w->pace, &tv);
            }
        } else if (phase >= LT_DRAIN && w->pace) {
            event_del(w->pace);
        }
        if (phase == LT_DONE) {
            worker_shutdown(w);
            w->shutdown_at = now + 2000000000ull;
        }
    }
    if (phase == LT_SETUP && run->cfg.connections > 0)
        lt_worker_open_more(w);
    if (phase == LT_DONE && (LT_GET(w->st.open) == 0 || now >= w->shutdown_at)) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    if (now - w->last_keepalive_check >= 1000000000ull) {
        w->last_keepalive_check = now;
        for (uint32_t i = 0; i < w->nclients; i++)
            lt_client_keepalive(w->clients[i], now);
    }
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    lt_worker_t *w = arg;
    w->run->interrupted = true;
    if (atomic_load(&w->run->phase) != LT_DONE) {
        atomic_store(&w->run->t_end, lt_now_ns());
        if (!LT_GET(w->run->t_pub_end))
            atomic_store(&w->run->t_pub_end, lt_now_ns());
        set_phase(w->run, LT_DONE);
    } else {
        event_base_loopbreak(w->base);
    }
}

static lt_worker_t *worker_new(lt_run_t *run, uint32_t id)
{
    lt_worker_t *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->run = run;
    w->id = id;
    lt_hist_init(&w->st.lat);
    /* The changelist folds the EV_WRITE add/del that every flush of a
     * bufferevent causes into at most one epoll_ctl per loop iteration. */
    struct event_config *ec = event_config_new();
    if (!ec)
        goto fail;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!w->base)
        goto fail;
    w->tick = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    if (!w->tick)
        goto fail;
    if (run->cfg.rate > 0) {
        w->pace = event_new(w->base, -1, EV_PERSIST, on_pace, w);
        if (!w->pace)
            goto fail;
    }
    if (id == 0) {
        w->sigint = evsignal_new(w->base, SIGINT, on_signal, w);
        w->sigterm = evsignal_new(w->base, SIGTERM, on_signal, w);
        if (!w->sigint || !w->sigterm)
            goto fail;
        event_add(w->sigint, NULL);
        event_add(w->sigterm, NULL);
    }
    struct timeval tv = {0, TICK_MS * 1000};
    event_add(w->tick, &tv);
    return w;
fail:
    if (w->tick)
        event_free(w->tick);
    if (w->pace)
        event_free(w->pace);
    if (w->sigint)
        event_free(w->sigint);
    if (w->sigterm)
        event_free(w->sigterm);
    if (w->base)
        event_base_free(w->base);
    free(w);
    return NULL;
}

static void worker_free(lt_worker_t *w)
{
    if (!w)
        return;
    for (uint32_t i = 0; i < w->nclients; i++)
        lt_client_free(w->clients[i]);
    free(w->clients);
    if (w->tick)
        event_free(w->tick);
    if (w->pace)
        event_free(w->pace);
    if (w->sigint)
        event_free(w->sigint);
    if (w->sigterm)
        event_free(w->sigterm);
    event_base_free(w->base);
    free(w);
}

static void *worker_main(void *arg)
{
    lt_worker_t *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

/* ---------------------------------------------------------------- */
/* Setup                                                             */
/* ---------------------------------------------------------------- */

static int resolve(lt_run_t *run)
{
    struct addrinfo hints, *res = NULL;
    char port[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", (int)run->cfg.port);
    int rc = getaddrinfo(run->cfg.host, port, &hints, &res);
    if (rc != 0 || !res) {
        fprintf(stderr, "mqtt-load: --host %s: %s\n", run->cfg.host, gai_strerror(rc));
        return -1;
    }
    memcpy(&run->addr, res->ai_addr, res->ai_addrlen);
    run->addrlen = (int)res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void raise_nofile(uint64_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < need + 64) {
        rl.rlim_cur = need + 64 < rl.rlim_max ? need + 64 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Which sinks get which publisher's messages: MQTT subscribers by topic
 * matching, AMQP receivers all of them (one copy each, or one in total when
 * they share a queue). */
static int compute_fanout(lt_run_t *run)
{
    const lt_cfg_t *cfg = &run->cfg;
    run->fanout = calloc((size_t)cfg->publishers + 1, sizeof(*run->fanout));
    if (!run->fanout)
        return -1;
    for (int64_t j = 0; j < cfg->publishers; j++) {
        const char *topic = run->pubs[j]->topic;
        uint32_t n = cfg->amqp_shared ? (cfg->amqp_receivers > 0) : (uint32_t)cfg->amqp_receivers;
        for (int64_t i = 0; i < cfg->subscribers; i++) {
            const char *f = run->subs[i]->topic;
            if (gw_topic_matches(f, strlen(f), topic, strlen(topic)))
                n++;
        }
        run->fanout[j] = n;
    }
    return 0;
}

static int setup(lt_run_t *run)
{
    lt_cfg_t *cfg = &run->cfg;
    run->nworkers = (uint32_t)cfg->threads;
    for (uint32_t i = 0; i < run->nworkers; i++) {
        run->workers[i] = worker_new(run, i);
        if (!run->workers[i])
            return -1;
    }
    if (resolve(run) != 0)
        return -1;
    raise_nofile((uint64_t)(cfg->publishers + cfg->subscribers + cfg->connections +
                            cfg->amqp_receivers));
    if (cfg->messages > 0 && cfg->publishers > 0) {
        run->quota_base = (uint64_t)cfg->messages / (uint64_t)cfg->publishers;
        run->quota_extra = (uint64_t)cfg->messages % (uint64_t)cfg->publishers;
    }
    if (cfg->rate > 0 && cfg->publishers > 0)
        run->rate_per_pub = (double)cfg->rate / (double)cfg->publishers;
    run->filler = malloc((size_t)cfg->payload);
    run->pubs = calloc((size_t)cfg->publishers + 1, sizeof(*run->pubs));
    run->subs = calloc((size_t)cfg->subscribers + 1, sizeof(*run->subs));
    run->idle = calloc((size_t)cfg->connections + 1, sizeof(*run->idle));
    run->amqp = calloc((size_t)cfg->amqp_receivers + 1, sizeof(*run->amqp));
    run->pub_sent = calloc((size_t)cfg->publishers + 1, sizeof(*run->pub_sent));
    if (!run->filler || !run->pubs || !run->subs || !run->idle || !run->amqp || !run->pub_sent)
        return -1;
    for (int64_t i = 0; i < cfg->payload; i++)
        run->filler[i] = (uint8_t)('a' + i % 26);
    if (cfg->amqp_shared) {
        run->shared_sink = calloc(1, sizeof(*run->shared_sink));
        if (!run->shared_sink)
            return -1;
    }
    uint32_t rr = 0;
    if (cfg->connections > 0) {
        for (int64_t i = 0; i < cfg->connections; i++) {
            lt_worker_t *w = run->workers[rr++ % run->nworkers];
            lt_client_t *c = lt_client_new(w, LT_IDLE, (uint32_t)i);
            if (!c || worker_add(w, c) != 0) {
                lt_client_free(c);
                return -1;
            }
            run->idle[i] = c;
        }
        run->expected_ready = (uint64_t)cfg->connections;
        run->rss_before = lt_rss_total(cfg);
        return 0;
    }
    for (int64_t i = 0; i < cfg->subscribers; i++) {
        lt_worker_t *w = run->workers[rr++ % run->nworkers];
        lt_client_t *c = lt_client_new(w, LT_SUB, (uint32_t)i);
        if (!c || worker_add(w, c) != 0) {
            lt_client_free(c);
            return -1;
        }
        run->subs[i] = c;
    }
    for (int64_t i = 0; i < cfg->publishers; i++) {
        lt_worker_t *w = run->workers[rr++ % run->nworkers];
        lt_client_t *c = lt_client_new(w, LT_PUB, (uint32_t)i);
        if (!c || worker_add(w, c) != 0) {
            lt_client_free(c);
            return -1;
        }
        run->pubs[i] = c;
    }
    /* All AMQP receivers live on worker 0 (a shared sink needs one thread). */
    for (int64_t i = 0; i < cfg->amqp_receivers; i++) {
        run->amqp[i] = lt_amqp_new(run->workers[0], (uint32_t)i);
        if (!run->amqp[i])
            return -1;
    }
    run->expected_ready = (uint64_t)(cfg->publishers + cfg->subscribers + cfg->amqp_receivers);
    if (compute_fanout(run) != 0)
        return -1;
    for (uint32_t i = 0; i < run->nworkers; i++) {
        lt_worker_t *w = run->workers[i];
        for (uint32_t k = 0; k < w->nclients; k++) {
            if (lt_client_connect(w->clients[k]) != 0)
                return -1;
        }
    }
    for (int64_t i = 0; i < cfg->amqp_receivers; i++) {
        if (lt_amqp_start(run->amqp[i]) != 0)
            return -1;
    }
    return 0;
}

static void teardown(lt_run_t *run)
{
    if (run->amqp) {
        for (int64_t i = 0; i < run->cfg.amqp_receivers; i++)
            lt_amqp_free(run->amqp[i]);
    }
    for (uint32_t i = 0; i < run->nworkers; i++)
        worker_free(run->workers[i]);
    if (run->shared_sink) {
        lt_sink_free(run->shared_sink);
        free(run->shared_sink);
    }
    free(run->amqp);
    free(run->pubs);
    free(run->subs);
    free(run->idle);
    free(run->fanout);
    free((void *)run->pub_sent);
    free(run->filler);
    gw_config_free(&lt_cfg_spec, &run->cfg);
}

int main(int argc, char **argv)
{
    static lt_run_t run; /* large: zeroed, off the stack */
    int status = 1;
    signal(SIGPIPE, SIG_IGN);
    gw_config_result_t r = lt_cfg_load(&run.cfg, argc, argv);
    if (r == GW_CONFIG_EXIT)
        return 0;
    if (r != GW_CONFIG_OK)
        return 2;
    if (run.cfg.publishers == 0 && run.cfg.duration_ms == 0)
        run.cfg.duration_ms = 10000;
    gw_log_set_level(GW_LOG_LEVEL_WARN);
    gw_log_route_libevent();
    atomic_store(&run.t_start, lt_now_ns()); /* setup time-out reference */
    /* With external senders (no publishers) everything after --warmup
     * counts, including what arrives while the links attach. */
    atomic_store(&run.t_measure, run.cfg.publishers > 0
                                     ? UINT64_MAX
                                     : lt_now_ns() + (uint64_t)run.cfg.warmup_ms * 1000000ull);
    if (setup(&run) != 0) {
        fprintf(stderr, "mqtt-load: setup failed\n");
        teardown(&run);
        return 1;
    }
    if (run.cfg.connections > 0) {
        /* The connect rate counts from the first connect. */
        atomic_store(&run.t_start, lt_now_ns());
        for (uint32_t i = 0; i < run.nworkers; i++)
            lt_worker_open_more(run.workers[i]);
    }
    for (uint32_t i = 1; i < run.nworkers; i++) {
        if (pthread_create(&run.workers[i]->thread, NULL, worker_main, run.workers[i]) != 0) {
            fprintf(stderr, "mqtt-load: cannot start thread %u\n", i);
            set_phase(&run, LT_DONE);
            for (uint32_t k = 1; k < i; k++)
                pthread_join(run.workers[k]->thread, NULL);
            run.nworkers = i; /* the others were never started: free them below */
            for (uint32_t k = i; k < (uint32_t)run.cfg.threads; k++)
                worker_free(run.workers[k]);
            teardown(&run);
            return 1;
        }
    }
    worker_main(run.workers[0]);
    for (uint32_t i = 1; i < run.nworkers; i++)
        pthread_join(run.workers[i]->thread, NULL);
    status = lt_report(&run);
    teardown(&run);
    return status;
}
