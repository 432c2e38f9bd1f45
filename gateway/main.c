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

#include "gw/tls.h"

#include "gateway.h"

/*
 * SIGHUP: load the configuration again (file, environment, flags: same
 * precedence as at start) and apply what can change at run time: log level
 * and format. Everything else needs a restart (listeners, routes, workers).
 */
static void reload(gw_gateway_t *gw, int argc, char **argv)
{
    gw_gateway_config_t n;
    memset(&n, 0, sizeof(n));
    if (gw_config_load(&gw_gateway_config_spec, &n, argc, argv, stderr) != GW_CONFIG_OK) {
        GW_LOG_ERROR(GW_MOD, NULL, "SIGHUP: configuration invalid, nothing reloaded");
        return;
    }
    gw_log_set_level((gw_log_level_t)n.log_level);
    gw_log_set_format((gw_log_format_t)n.log_format);
    GW_LOG_INFO(GW_MOD, NULL, "SIGHUP: reloaded log-level %s, log-format %s",
                gw_log_level_name((gw_log_level_t)n.log_level),
                n.log_format ? "json" : "text");
    gw_config_free(&gw_gateway_config_spec, &n);
    gw_auth_reload(gw);
    gw_iot_reload(gw);
    if (gw->tls) {
        /* Same files: new connections get the new certificate, open ones keep theirs. */
        char eb[GW_TLS_ERRBUF] = "";
        if (gw_tls_server_reload(gw->tls, eb) == GW_OK)
            GW_LOG_INFO(GW_MOD, NULL, "SIGHUP: reloaded TLS certificates (generation %llu)",
                        (unsigned long long)gw_tls_server_generation(gw->tls));
        else
            GW_LOG_ERROR(GW_MOD, NULL, "SIGHUP: TLS reload failed, keeping the old certificates: %s",
                         eb);
    }
}

/* --mqtts-listen: one TLS context shared by every worker (gw/tls.h). */
static gw_err_t tls_setup(gw_gateway_t *gw, const gw_gateway_config_t *cfg)
{
    gw_tls_server_config_t tc;
    char eb[GW_TLS_ERRBUF] = "";

    if (cfg->mqtts_listen.count == 0 && cfg->iots_listen.count == 0)
        return GW_OK;
    if (!cfg->tls_cert || !cfg->tls_key) {
        fprintf(stderr, "mqtt-gateway: --mqtts-listen needs --tls-cert and --tls-key\n");
        return GW_ERR_CONFIG;
    }
    if (cfg->tls_crl && *cfg->tls_crl && cfg->tls_client_cert == GW_TLS_CLIENT_CERT_NONE) {
        fprintf(stderr, "mqtt-gateway: --tls-crl needs --tls-client-cert optional|required\n");
        return GW_ERR_CONFIG;
    }
    if (cfg->tls_issuer_tenant_map && *cfg->tls_issuer_tenant_map &&
        cfg->tls_client_cert == GW_TLS_CLIENT_CERT_NONE) {
        fprintf(stderr, "mqtt-gateway: --tls-issuer-tenant-map needs --tls-client-cert "
                        "optional|required\n");
        return GW_ERR_CONFIG;
    }
    if (cfg->tls_client_cert != GW_TLS_CLIENT_CERT_NONE && !cfg->tls_ca) {
        fprintf(stderr, "mqtt-gateway: --tls-client-cert optional|required needs --tls-ca\n");
        return GW_ERR_CONFIG;
    }
    memset(&tc, 0, sizeof(tc));
    tc.cert_file = cfg->tls_cert;
    tc.key_file = cfg->tls_key;
    tc.ca_file = cfg->tls_ca;
    tc.crl_file = cfg->tls_crl;
    tc.client_cert = (gw_tls_client_cert_t)cfg->tls_client_cert;
    tc.min_version = cfg->tls_min_version == 1 ? GW_TLS_VERSION_1_3 : GW_TLS_VERSION_1_2;
    tc.ciphers = cfg->tls_ciphers;
    tc.name = "mqtts";
    gw_err_t err = gw_tls_server_new(&tc, &gw->tls, eb);
    if (err != GW_OK) {
        fprintf(stderr, "mqtt-gateway: TLS: %s\n", eb);
        return err == GW_ERR_NOMEM ? err : GW_ERR_CONFIG;
    }
    return GW_OK;
}

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
    if (cfg.mqtt_listen.count == 0 && cfg.mqtts_listen.count == 0 && cfg.iot_listen.count == 0 &&
        cfg.iots_listen.count == 0) {
        fprintf(stderr, "mqtt-gateway: --mqtt-listen/--mqtts-listen/--iot-listen: at least one address is required\n");
        rc = 2;
        goto cleanup;
    }
    if (cfg.http_listen && *cfg.http_listen) {
        char host[256];
        uint16_t port;
        if (gw_config_parse_hostport(cfg.http_listen, host, sizeof(host), &port) != GW_OK) {
            fprintf(stderr, "mqtt-gateway: --http-listen: \"%s\" is not HOST:PORT\n",
                    cfg.http_listen);
            rc = 2;
            goto cleanup;
        }
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
    for (size_t i = 0; i < cfg.mqtts_listen.count; i++) {
        char host[256];
        uint16_t port;
        if (gw_config_parse_hostport(cfg.mqtts_listen.items[i], host, sizeof(host), &port) !=
            GW_OK) {
            fprintf(stderr, "mqtt-gateway: --mqtts-listen: \"%s\" is not HOST:PORT\n",
                    cfg.mqtts_listen.items[i]);
            rc = 2;
            goto cleanup;
        }
    }
    if (tls_setup(&gw, &cfg) != GW_OK) {
        rc = 2;
        goto cleanup;
    }
    if (gw_auth_setup(&gw, &cfg, why, sizeof(why)) != GW_OK) {
        fprintf(stderr, "mqtt-gateway: %s\n", why);
        rc = 2;
        goto cleanup;
    }
    gw.cfg = &cfg;
    if (gw_limits_init(&gw) != GW_OK)
        goto cleanup;
    if (gw_iot_setup(&gw, why, sizeof(why)) != GW_OK) {
        fprintf(stderr, "mqtt-gateway: %s\n", why);
        rc = 2;
        goto cleanup;
    }
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
    sigaddset(&sigs, SIGHUP);
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
    if (gw_metrics_start(&gw) != GW_OK)
        goto stop;
    {
        char ub[512];
        GW_LOG_INFO(GW_MOD, NULL, "mqtt-gateway started: %zu worker(s), %zu listener(s), amqp %s",
                    gw.nworkers, cfg.mqtt_listen.count,
                    gw_amqp_url_redact(cfg.amqp_url, ub, sizeof ub));
    }

    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            reload(&gw, argc, argv);
            continue;
        }
        GW_LOG_INFO(GW_MOD, NULL, "signal %d: shutting down", sig);
        break;
    }
    rc = 0;

stop:
    /* The HTTP thread reads the workers: stop it before they go away. */
    gw_metrics_stop(&gw);
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
    gw_tls_server_free(gw.tls); /* after the workers: their SSLs hold their own SSL_CTX refs */
    gw_auth_teardown(&gw);
    gw_iot_teardown(&gw);
    if (gw.cfg)
        gw_limits_cleanup(&gw);
    if (cfg_loaded)
        gw_config_free(&gw_gateway_config_spec, &cfg);
    return rc;
}
