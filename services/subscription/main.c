/*
 * main.c - subscription-service: MQTT sessions, subscriptions, retained
 * messages and offline queues over AMQP 1.0, durable in SQLite.
 *
 * Exit status: 0 after SIGTERM/SIGINT, 2 on a bad configuration, 1 when
 * the service cannot start (store, listener).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "gw/log.h"
#include "subs.h"

static void main_on_signal(evutil_socket_t sig, short what, void *arg)
{
    subs_service_t *svc = arg;
    GW_LOG_INFO(SUBS_MOD, NULL, "signal %d: shutting down", (int)sig);
    subs_service_stop(svc);
}

int main(int argc, char **argv)
{
    subs_config_t cfg;
    struct event_base *base = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    subs_service_t *svc = NULL;
    char why[512];
    int status = 1;

    memset(&cfg, 0, sizeof cfg);
    switch (gw_config_load(&subs_config_spec, &cfg, argc, argv, stderr)) {
    case GW_CONFIG_OK:
        break;
    case GW_CONFIG_EXIT:
        return 0;
    case GW_CONFIG_ERROR:
    default:
        return 2;
    }
    if (subs_config_check(&cfg, why, sizeof why) != GW_OK) {
        fprintf(stderr, "subscription-service: %s\n", why);
        status = 2;
        goto cleanup;
    }
    gw_log_set_level((gw_log_level_t)cfg.log_level);
    gw_log_set_format((gw_log_format_t)cfg.log_format);
    gw_log_route_libevent();
    signal(SIGPIPE, SIG_IGN);

    base = event_base_new();
    if (!base) {
        GW_LOG_ERROR(SUBS_MOD, NULL, "cannot create the event loop");
        goto cleanup;
    }
    gw_err_t err = subs_service_start(base, &cfg, &svc);
    if (err != GW_OK) {
        GW_LOG_ERROR(SUBS_MOD, NULL, "cannot start: %s", gw_err_str(err));
        goto cleanup;
    }
    sigterm = evsignal_new(base, SIGTERM, main_on_signal, svc);
    sigint = evsignal_new(base, SIGINT, main_on_signal, svc);
    if (!sigterm || !sigint || evsignal_add(sigterm, NULL) || evsignal_add(sigint, NULL)) {
        GW_LOG_ERROR(SUBS_MOD, NULL, "cannot install signal handlers");
        goto cleanup;
    }
    GW_LOG_INFO(SUBS_MOD, NULL, "subscription-service ready listen-port=%u store=%s",
                (unsigned)subs_service_port(svc), cfg.store);
    event_base_dispatch(base);
    status = 0;
cleanup:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    subs_service_free(svc);
    if (base)
        event_base_free(base);
    gw_config_free(&subs_config_spec, &cfg);
    return status;
}
