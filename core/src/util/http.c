#include "gw/http.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw/log.h"

#define GW_HTTP_MAX_COLLECTORS 16

struct gw_metrics_writer {
    struct evbuffer *out;
    const char *last_name; /* HELP/TYPE already written for this name */
};

typedef struct gw_http_collector {
    gw_metrics_collect_fn fn;
    void *arg;
} gw_http_collector_t;

struct gw_http {
    struct event_base *base;
    struct evhttp *http;
    struct event *stop_ev;
    pthread_t thread;
    bool started;
    uint16_t port;
    gw_http_collector_t collectors[GW_HTTP_MAX_COLLECTORS];
    size_t ncollectors;
    gw_ready_fn ready;
    void *ready_arg;
};

static void gw_metrics_header(gw_metrics_writer_t *w, const char *name, const char *help,
                              const char *type)
{
    if (w->last_name != NULL && strcmp(w->last_name, name) == 0)
        return;
    w->last_name = name;
    evbuffer_add_printf(w->out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void gw_metrics_counter(gw_metrics_writer_t *w, const char *name, const char *help,
                        const char *labels, uint64_t value)
{
    gw_metrics_header(w, name, help, "counter");
    if (labels != NULL && labels[0] != '\0')
        evbuffer_add_printf(w->out, "%s{%s} %llu\n", name, labels, (unsigned long long)value);
    else
        evbuffer_add_printf(w->out, "%s %llu\n", name, (unsigned long long)value);
}

void gw_metrics_gauge(gw_metrics_writer_t *w, const char *name, const char *help,
                      const char *labels, double value)
{
    gw_metrics_header(w, name, help, "gauge");
    if (labels != NULL && labels[0] != '\0')
        evbuffer_add_printf(w->out, "%s{%s} %.17g\n", name, labels, value);
    else
        evbuffer_add_printf(w->out, "%s %.17g\n", name, value);
}

void gw_metrics_histogram(gw_metrics_writer_t *w, const char *name, const char *help,
                          size_t n, const double *bounds, const uint64_t *cumulative,
                          double sum, uint64_t count)
{
    gw_metrics_header(w, name, help, "histogram");
    for (size_t i = 0; i < n; i++) {
        if (i + 1 == n)
            evbuffer_add_printf(w->out, "%s_bucket{le=\"+Inf\"} %llu\n", name,
                                (unsigned long long)cumulative[i]);
        else
            evbuffer_add_printf(w->out, "%s_bucket{le=\"%.17g\"} %llu\n", name, bounds[i],
                                (unsigned long long)cumulative[i]);
    }
    evbuffer_add_printf(w->out, "%s_sum %.17g\n%s_count %llu\n", name, sum, name,
                        (unsigned long long)count);
}

const char *gw_metrics_escape(const char *value, char *buf, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return buf;
    for (const char *p = value; *p != '\0' && o + 2 < cap; p++) {
        if (*p == '\\' || *p == '"') {
            buf[o++] = '\\';
            buf[o++] = *p;
        } else if (*p == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            buf[o++] = *p;
        }
    }
    buf[o] = '\0';
    return buf;
}

static void gw_http_reply_text(struct evhttp_request *req, int code, const char *reason,
                               const char *body)
{
    struct evbuffer *out = evbuffer_new();
    if (out == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evbuffer_add(out, body, strlen(body));
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

static void gw_http_handle(struct evhttp_request *req, void *arg)
{
    gw_http_t *h = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_send_error(req, 405, "Method Not Allowed");
        return;
    }
    if (path == NULL)
        path = "/";

    if (strcmp(path, "/healthz") == 0) {
        gw_http_reply_text(req, 200, "OK", "ok\n");
    } else if (strcmp(path, "/readyz") == 0) {
        char why[256] = "not ready";
        if (h->ready == NULL || h->ready(h->ready_arg, why, sizeof why)) {
            gw_http_reply_text(req, 200, "OK", "ready\n");
        } else {
            char body[300];
            snprintf(body, sizeof body, "not ready: %s\n", why);
            gw_http_reply_text(req, 503, "Service Unavailable", body);
        }
    } else if (strcmp(path, "/metrics") == 0) {
        gw_metrics_writer_t w = {.out = evbuffer_new(), .last_name = NULL};
        if (w.out == NULL) {
            evhttp_send_error(req, 500, NULL);
            return;
        }
        for (size_t i = 0; i < h->ncollectors; i++)
            h->collectors[i].fn(&w, h->collectors[i].arg);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(req, 200, "OK", w.out);
        evbuffer_free(w.out);
    } else {
        evhttp_send_error(req, 404, NULL);
    }
}

gw_http_t *gw_http_new(void) { return calloc(1, sizeof(gw_http_t)); }

void gw_http_add_collector(gw_http_t *h, gw_metrics_collect_fn fn, void *arg)
{
    if (h->ncollectors < GW_HTTP_MAX_COLLECTORS) {
        h->collectors[h->ncollectors].fn = fn;
        h->collectors[h->ncollectors].arg = arg;
        h->ncollectors++;
    } else {
        GW_LOG_ERROR("http", NULL, "too many metrics collectors (max %d)",
                     GW_HTTP_MAX_COLLECTORS);
    }
}

void gw_http_set_ready(gw_http_t *h, gw_ready_fn fn, void *arg)
{
    h->ready = fn;
    h->ready_arg = arg;
}

static void *gw_http_thread(void *arg)
{
    gw_http_t *h = arg;
    event_base_dispatch(h->base);
    return NULL;
}

static void gw_http_stop_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_http_t *h = arg;
    (void)fd;
    (void)what;
    event_base_loopbreak(h->base);
}

gw_err_t gw_http_start(gw_http_t *h, const char *host, uint16_t port)
{
    struct evhttp_bound_socket *bound;
    gw_err_t err = GW_ERR_NOMEM;

    /* The stop event is activated from another thread. */
    if (evthread_use_pthreads() != 0)
        return GW_ERR_INVAL;
    h->base = event_base_new();
    if (h->base == NULL)
        goto cleanup;
    h->http = evhttp_new(h->base);
    if (h->http == NULL)
        goto cleanup;
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_max_headers_size(h->http, 8192);
    evhttp_set_max_body_size(h->http, 0);
    evhttp_set_timeout(h->http, 10);
    evhttp_set_gencb(h->http, gw_http_handle, h);
    bound = evhttp_bind_socket_with_handle(h->http, (host && *host) ? host : "0.0.0.0", port);
    if (bound == NULL) {
        GW_LOG_ERROR("http", NULL, "cannot listen on %s:%u", host ? host : "0.0.0.0", port);
        err = GW_ERR_IO;
        goto cleanup;
    }
    {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sl) == 0) {
            if (ss.ss_family == AF_INET)
                h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
            else if (ss.ss_family == AF_INET6)
                h->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    h->stop_ev = event_new(h->base, -1, 0, gw_http_stop_cb, h);
    if (h->stop_ev == NULL)
        goto cleanup;
    if (pthread_create(&h->thread, NULL, gw_http_thread, h) != 0) {
        err = GW_ERR_IO;
        goto cleanup;
    }
    h->started = true;
    GW_LOG_INFO("http", NULL, "health and metrics on %s:%u", (host && *host) ? host : "0.0.0.0",
                h->port);
    return GW_OK;

cleanup:
    if (h->stop_ev)
        event_free(h->stop_ev);
    h->stop_ev = NULL;
    if (h->http)
        evhttp_free(h->http);
    h->http = NULL;
    if (h->base)
        event_base_free(h->base);
    h->base = NULL;
    return err;
}

uint16_t gw_http_port(const gw_http_t *h) { return h->port; }

void gw_http_free(gw_http_t *h)
{
    if (h == NULL)
        return;
    if (h->started) {
        event_active(h->stop_ev, EV_READ, 0);
        pthread_join(h->thread, NULL);
    }
    if (h->stop_ev)
        event_free(h->stop_ev);
    if (h->http)
        evhttp_free(h->http);
    if (h->base)
        event_base_free(h->base);
    free(h);
}
