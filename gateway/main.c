/*
 * main.c - mqtt-gateway entry point: configuration, workers, signals.
 *
 * Exit status: 0 after a clean shutdown (SIGINT/SIGTERM), 1 on a runtime
 * failure at start (e.g. a listening address in use), 2 on a bad option.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/thread.h>

#include "gateway.h"

int main(int argc, char **argv)
{
    gw_gateway_config_t cfg;
    gw_gateway_t gw;
    int rc = 1;
    sigset_t sigs;
    bool cfg_loaded = false;

    memset(&cfg, 0, sizeof(cfg));
    memset(&gw, 0, sizeof(gw));

    gw_config_result_t cr = gw_config_load(&gw_gateway_config_spec, &cfg, argc, argv, stderr);
    cfg_loaded = true;
    if (cr == GW_CONFIG_EXIT) {
        rc = 0;
        goto cleanup;
    }
    if (cr != GW_CONFIG_OK) {
        rc = 2;
        goto cleanup;
    }
    gw_log_set_level((gw_log_level_t)cfg.log_level);
    gw_log_set_format((gw_log_format_t)cfg.log_format);
    gw_log_route_libevent();

    char why[256] = "";
    if (gw_routes_build(&gw.routes, cfg.amqp_url, &cfg.routes, why, sizeof(why)) != GW_OK) {
        fprintf(stderr, "mqtt-gateway: %s\n", why);
        rc = 2;
        goto cleanup;
    }
    if (cfg.mqtt_listen.count == 0) {
        fprintf(stderr, "mqtt-gateway: --mqtt-listen: at least one address is required\n");
        rc = 2;
        goto cleanup;
    }
    for (size_t i = 0; i < cfg.mqtt_listen.count; i++) {
        char host[256];
        uint16_t port;
        if (gw_config_parse_hostport(cfg.mqtt_listen.items[i], host, sizeof(host), &port) !=
            GW_OK) {
            fprintf(stderr, "mqtt-gateway: --mqtt-listen: \"%s\" is not HOST:PORT\n",
                    cfg.mqtt_listen.items[i]);
            rc = 2;
            goto cleanup;
        }
    }
    gw.cfg = &cfg;
    gw.addrs.lwt = cfg.lwt_address;
    gw.addrs.subctrl = cfg.subscription_address;
    gw.addrs.to_prefix = cfg.to_prefix;
    gw.addrs.pubrel_prefix = cfg.pubrel_prefix;
    atomic_init(&gw.next_serial, 1);

    if (evthread_use_pthreads() != 0) {
        GW_LOG_ERROR(GW_MOD, NULL, "libevent has no pthread support");
        goto cleanup;
    }
    gw.registry = gw_registry_new();
    if (!gw.registry)
        goto cleanup;

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    gw.nworkers = cfg.workers > 0 ? (size_t)cfg.workers : (ncpu > 0 ? (size_t)ncpu : 1);
    gw.workers = calloc(gw.nworkers, sizeof(*gw.workers));
    if (!gw.workers)
        goto cleanup;

    /* Workers inherit this mask: only the main thread takes the signals. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (size_t i = 0; i < gw.nworkers; i++) {
        gw_err_t werr = gw_worker_init(&gw.workers[i], &gw, i);
        if (werr != GW_OK) {
            GW_LOG_ERROR(GW_MOD, NULL, "worker %zu: initialisation failed: %s", i,
                         gw_err_str(werr));
            if (werr == GW_ERR_CONFIG)
                rc = 2; /* e.g. a bad AMQP URL */
            goto stop;
        }
    }
    for (size_t i = 0; i < gw.nworkers; i++) {
        if (gw_worker_start(&gw.workers[i]) != GW_OK) {
            GW_LOG_ERROR(GW_MOD, NULL, "worker %zu: cannot start thread", i);
            goto stop;
        }
    }
    GW_LOG_INFO(GW_MOD, NULL, "mqtt-gateway started: %zu worker(s), %zu listener(s), amqp %s",
                gw.nworkers, cfg.mqtt_listen.count, cfg.amqp_url);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    GW_LOG_INFO(GW_MOD, NULL, "signal %d: shutting down", sig);
    rc = 0;

stop:
    for (size_t i = 0; i < gw.nworkers; i++)
        if (gw.workers[i].base)
            gw_worker_request_stop(&gw.workers[i]);
    for (size_t i = 0; i < gw.nworkers; i++)
        gw_worker_join(&gw.workers[i]);
    for (size_t i = 0; i < gw.nworkers; i++)
        gw_worker_cleanup(&gw.workers[i]);
    if (rc == 0)
        GW_LOG_INFO(GW_MOD, NULL, "stopped");

cleanup:
    free(gw.workers);
    gw_registry_free(gw.registry);
    gw_routes_free(&gw.routes);
    if (cfg_loaded)
        gw_config_free(&gw_gateway_config_spec, &cfg);
    return rc;
}
