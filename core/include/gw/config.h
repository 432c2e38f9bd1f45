/*
 * config.h - configuration as a table.
 *
 * Each executable declares a static table of gw_config_opt_t describing the
 * fields of its own config struct (name, type, bounds, default, help). One
 * loader fills the struct from, in increasing precedence:
 *   1. the defaults in the table,
 *   2. a JSON file (--config PATH, or env <PREFIX>CONFIG), keys = option names,
 *   3. environment variables <PREFIX><NAME> (upper case, '-' -> '_'),
 *      e.g. prefix "GW_" and "mqtt-listen" -> GW_MQTT_LISTEN,
 *   4. command-line flags --name VALUE or --name=VALUE (bool: --name alone = true,
 *      --no-name = false).
 * Then a single validation pass checks every bound. A bad value produces a
 * message naming the key and its source ("--max-packet-size: 0 is below the
 * minimum 16 (flag)"), and the caller exits with status 2.
 *
 * List options (GW_CFG_LIST) are repeatable flags (--route a=b --route c=d),
 * JSON arrays of strings, or comma-separated in the environment; a higher
 * source replaces the whole list of a lower one.
 *
 * Ownership: strings and lists in the filled struct belong to it; release
 * them with gw_config_free(). The table is never modified.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gw/error.h"

typedef enum gw_config_type {
    GW_CFG_BOOL,     /* bool field */
    GW_CFG_INT,      /* int64_t field, bounds [min, max] */
    GW_CFG_DURATION, /* int64_t milliseconds; accepts "250ms", "5s", "2m", "1h" or a bare number of ms */
    GW_CFG_SIZE,     /* int64_t bytes; accepts "64k", "16M", "1G" (powers of 1024) or bytes */
    GW_CFG_STRING,   /* char * field (NULL when unset and no default) */
    GW_CFG_ENUM,     /* int field: index into enum_values */
    GW_CFG_LIST,     /* gw_config_list_t field */
} gw_config_type_t;

typedef struct gw_config_list {
    char **items;
    size_t count;
} gw_config_list_t;

typedef struct gw_config_opt {
    const char *name;    /* "max-packet-size"; flag, JSON key and env suffix */
    gw_config_type_t type;
    size_t offset;       /* offsetof(struct my_config, field) */
    int64_t min, max;    /* INT/DURATION/SIZE bounds, inclusive; STRING/LIST: max length/count (0 = none) */
    const char *def;     /* default as text, parsed like any other source; NULL = none */
    const char *const *enum_values; /* ENUM: NULL-terminated */
    const char *help;
} gw_config_opt_t;

typedef enum gw_config_source {
    GW_CFG_SRC_DEFAULT,
    GW_CFG_SRC_FILE,
    GW_CFG_SRC_ENV,
    GW_CFG_SRC_FLAG,
} gw_config_source_t;

typedef struct gw_config_spec {
    const char *program;           /* "mqtt-gateway" for --help */
    const char *summary;           /* one line for --help */
    const char *env_prefix;        /* "GW_" */
    const gw_config_opt_t *opts;
    size_t nopts;
} gw_config_spec_t;

typedef enum gw_config_result {
    GW_CONFIG_OK = 0,   /* cfg filled; run */
    GW_CONFIG_EXIT = 1, /* --help or --version printed; exit 0 */
    GW_CONFIG_ERROR = 2 /* message printed to stderr; exit 2 */
} gw_config_result_t;

/**
 * Fill cfg (a zeroed struct) from defaults, file, environment and argv.
 * On GW_CONFIG_ERROR a message naming key and source was written to err
 * (may be NULL to use stderr). Positional arguments are errors.
 */
gw_config_result_t gw_config_load(const gw_config_spec_t *spec, void *cfg, int argc,
                                  char **argv, FILE *err);
/** Print --help text: every option, its type, bounds, default and help. */
void gw_config_print_help(const gw_config_spec_t *spec, FILE *out);
/** Print the reference as a Markdown table (docs/configuration.md is generated from it). */
void gw_config_print_markdown(const gw_config_spec_t *spec, FILE *out);
/** Free strings and lists owned by cfg. */
void gw_config_free(const gw_config_spec_t *spec, void *cfg);

/** Split "HOST:PORT" / "[v6]:PORT" / ":PORT"; host may be returned empty. */
gw_err_t gw_config_parse_hostport(const char *s, char *host, size_t hostcap, uint16_t *port);

#endif
