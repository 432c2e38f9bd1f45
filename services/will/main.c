/*
 * main.c - will-service: MQTT last will and testament over AMQP 1.0.
 *
 * The process skeleton (configuration, event loop, signals, HTTP health and
 * metrics, exit codes 0/1/2) is gw_svc_main() in gw/service.h.
 */
#include <stddef.h>

#include "gw/log.h"
#include "gw/service.h"
#include "will.h"

static gw_err_t main_check(const void *cfg, char *why, size_t whylen)
{
    return gw_will_config_check(cfg, why, whylen);
}

static gw_err_t main_start(struct event_base *base, const void *cfg, void **svc)
{
    gw_will_service_t *s = NULL;
    gw_err_t err = gw_will_service_start(base, cfg, &s);
    *svc = s;
    return err;
}

static void main_stop(void *svc) { gw_will_service_stop(svc); }
static void main_free(void *svc) { gw_will_service_free(svc); }

static void main_log_ready(void *svc, const void *c)
{
    const gw_will_config_t *cfg = c;
    char ub[512];
    GW_LOG_INFO(WILL_MOD, NULL, "will-service ready listen-port=%u address=%s publish-url=%s",
                (unsigned)gw_will_service_port(svc), cfg->address,
                gw_amqp_url_redact(cfg->publish_url, ub, sizeof ub));
}

static const gw_svc_def_t main_def = {
    .module = WILL_MOD,
    .spec = &gw_will_config_spec,
    .cfg_size = sizeof(gw_will_config_t),
    .common_offset = offsetof(gw_will_config_t, common),
    .check = main_check,
    .start = main_start,
    .stop = main_stop,
    .free = main_free,
    .log_ready = main_log_ready,
    .ready = gw_will_service_ready,
    .stop_bound_ms = 3000, /* peers get 3 s to close, then the loop ends */
    .collect = gw_will_service_collect,
};

int main(int argc, char **argv) { return gw_svc_main(&main_def, argc, argv); }
