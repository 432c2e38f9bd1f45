/* Health, readiness and metrics endpoint over a real loopback socket. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw/http.h"

static volatile int ready_flag;

static bool test_ready(void *arg, char *why, size_t whylen)
{
    (void)arg;
    if (!ready_flag)
        snprintf(why, whylen, "amqp link down");
    return ready_flag != 0;
}

static void test_collect(gw_metrics_writer_t *w, void *arg)
{
    char esc[64];
    char labels[96];
    (void)arg;
    gw_metrics_counter(w, "gw_messages_in_total", "Messages received.", "qos=\"0\"", 5);
    gw_metrics_counter(w, "gw_messages_in_total", "Messages received.", "qos=\"1\"", 7);
    snprintf(labels, sizeof labels, "id=\"%s\"", gw_metrics_escape("a\"b\\c\nd", esc, sizeof esc));
    gw_metrics_gauge(w, "gw_connections", "Open connections.", labels, 3);
    gw_metrics_gauge(w, "gw_up", "Always 1.", NULL, 1);
    {
        const double bounds[2] = {0.001, 0.5};
        const uint64_t cum[3] = {2, 5, 6};
        gw_metrics_histogram(w, "gw_lat_seconds", "Latency.", 3, bounds, cum, 1.25, 6);
    }
}

/* One HTTP/1.0 request; returns the status code and the whole response. */
static int http_get(uint16_t port, const char *method, const char *path, char *resp, size_t cap)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    char req[256];
    size_t n = 0;
    int code = -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
    assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    for (;;) {
        ssize_t r = read(fd, resp + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap - 1)
            break;
    }
    resp[n] = '\0';
    close(fd);
    sscanf(resp, "HTTP/1.%*d %d", &code);
    return code;
}

static void test_endpoints(void **state)
{
    char resp[8192];
    gw_http_t *h = gw_http_new();
    (void)state;

    assert_non_null(h);
    gw_http_add_collector(h, test_collect, NULL);
    gw_http_set_ready(h, test_ready, NULL);
    assert_int_equal(gw_http_start(h, "127.0.0.1", 0), GW_OK);
    uint16_t port = gw_http_port(h);
    assert_true(port > 0);

    assert_int_equal(http_get(port, "GET", "/healthz", resp, sizeof resp), 200);
    assert_non_null(strstr(resp, "\r\n\r\nok\n"));

    ready_flag = 0;
    assert_int_equal(http_get(port, "GET", "/readyz", resp, sizeof resp), 503);
    assert_non_null(strstr(resp, "not ready: amqp link down"));
    ready_flag = 1;
    assert_int_equal(http_get(port, "GET", "/readyz", resp, sizeof resp), 200);

    assert_int_equal(http_get(port, "GET", "/metrics", resp, sizeof resp), 200);
    assert_non_null(strstr(resp, "text/plain; version=0.0.4"));
    /* HELP/TYPE once per name, samples consecutive. */
    const char *expect = "# HELP gw_messages_in_total Messages received.\n"
                         "# TYPE gw_messages_in_total counter\n"
                         "gw_messages_in_total{qos=\"0\"} 5\n"
                         "gw_messages_in_total{qos=\"1\"} 7\n"
                         "# HELP gw_connections Open connections.\n"
                         "# TYPE gw_connections gauge\n"
                         "gw_connections{id=\"a\\\"b\\\\c\\nd\"} 3\n"
                         "# HELP gw_up Always 1.\n"
                         "# TYPE gw_up gauge\n"
                         "gw_up 1\n"
                         "# HELP gw_lat_seconds Latency.\n"
                         "# TYPE gw_lat_seconds histogram\n"
                         "gw_lat_seconds_bucket{le=\"0.001\"} 2\n"
                         "gw_lat_seconds_bucket{le=\"0.5\"} 5\n"
                         "gw_lat_seconds_bucket{le=\"+Inf\"} 6\n"
                         "gw_lat_seconds_sum 1.25\n"
                         "gw_lat_seconds_count 6\n";
    assert_non_null(strstr(resp, expect));

    assert_int_equal(http_get(port, "GET", "/nope", resp, sizeof resp), 404);
    assert_int_equal(http_get(port, "DELETE", "/metrics", resp, sizeof resp), 405);
    gw_http_free(h);
}

static void test_bind_conflict(void **state)
{
    gw_http_t *a = gw_http_new();
    gw_http_t *b = gw_http_new();
    (void)state;
    assert_int_equal(gw_http_start(a, "127.0.0.1", 0), GW_OK);
    assert_int_equal(gw_http_start(b, "127.0.0.1", gw_http_port(a)), GW_ERR_IO);
    gw_http_free(b);
    gw_http_free(a);
    gw_http_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_bind_conflict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
