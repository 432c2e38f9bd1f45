/*
 * main.c - will-service: MQTT last will and testament over AMQP 1.0.
 *
 * Exit status: 0 after SIGTERM/SIGINT, 2 on a bad configuration, 1 when
 * the service cannot start (store, listener).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "gw/log.h"
#include "will.h"

static void main_on_signal(evutil_socket_t sig, short what, void *arg)
{
    gw_will_service_t *svc = arg;
    GW_LOG_INFO(WILL_MOD, NULL, "signal %d: shutting down", (int)sig);
    gw_will_service_stop(svc);
}

int main(int argc, char **argv)
{
    gw_will_config_t cfg;
    struct event_base *base = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    gw_will_service_t *svc = NULL;
    char why[512];
    int status = 1;

    memset(&cfg, 0, sizeof cfg);
    switch (gw_config_load(&gw_will_config_spec, &cfg, argc, argv, stderr)) {
    case GW_CONFIG_OK:
        break;
    case GW_CONFIG_EXIT:
        status = 0;
        goto cleanup;
    case GW_CONFIG_ERROR:
    default:
        status = 2;
        goto cleanup;
    }
    if (gw_will_config_check(&cfg, why, sizeof why) != GW_OK) {
        fprintf(stderr, "will-service: %s\n", why);
        status = 2;
        goto cleanup;
    }
    gw_log_set_level((gw_log_level_t)cfg.log_level);
    gw_log_set_format((gw_log_format_t)cfg.log_format);
    gw_log_route_libevent();
    signal(SIGPIPE, SIG_IGN);

    base = event_base_new();
    if (!base) {
        GW_LOG_ERROR(WILL_MOD, NULL, "cannot create the event loop");
        goto cleanup;
    }
    gw_err_t err = gw_will_service_start(base, &cfg, &svc);
    if (err != GW_OK) {
        GW_LOG_ERROR(WILL_MOD, NULL, "cannot start: %s", gw_err_str(err));
        goto cleanup;
    }
    sigterm = evsignal_new(base, SIGTERM, main_on_signal, svc);
    sigint = evsignal_new(base, SIGINT, main_on_signal, svc);
    if (!sigterm || !sigint || evsignal_add(sigterm, NULL) || evsignal_add(sigint, NULL)) {
        GW_LOG_ERROR(WILL_MOD, NULL, "cannot install signal handlers");
        goto cleanup;
    }
    GW_LOG_INFO(WILL_MOD, NULL, "will-service ready listen-port=%u address=%s publish-url=%s",
                (unsigned)gw_will_service_port(svc), cfg.address, cfg.publish_url);
    event_base_dispatch(base);
    status = 0;
cleanup:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    gw_will_service_free(svc);
    if (base)
        event_base_free(base);
    gw_config_free(&gw_will_config_spec, &cfg);
    return status;
}
