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
 *      --no-name = false, --name=true|false).
 * Then a single validation pass checks every bound. A bad value produces one
 * line naming the program, the key, the value, the reason and the source:
 *
 *   mqtt-gateway: --max-packet-size: "0" below minimum 16 (flag)
 *   mqtt-gateway: max-packet-size: "0" below minimum 16 (env GW_MAX_PACKET_SIZE)
 *   mqtt-gateway: max-packet-size: "0" below minimum 16 (file /etc/gw.json)
 *
 * and the caller exits with status 2. All errors are reported, not only the
 * first. Syntax errors (a value that is not a number, a wrong JSON type) are
 * errors in whichever source they appear, even if a higher source overrides
 * the option; bounds are checked on the final value. Defaults are parsed and
 * checked exactly like any other source: a bad default is reported with the
 * source "(default)" (a programming error in the table).
 *
 * Value syntax per type:
 *   BOOL      true/false, 1/0, yes/no, on/off (any case); JSON true/false
 *   INT       decimal, optional '-'; JSON integer
 *   DURATION  "250ms" "5s" "2m" "1h" "1d" or a bare number of ms; JSON integer
 *             (ms) or string. Never negative.
 *   SIZE      "64k" "16M" "1G" "1T" (powers of 1024, optional "b"/"ib"
 *             suffix, any case) or a bare number of bytes; JSON integer or
 *             string. Never negative.
 *   STRING    any text; JSON string
 *   ENUM      one of enum_values (any case); JSON string
 *   LIST      repeatable flag (--route a=b --route c=d; no splitting), JSON
 *             array of strings, or comma-separated in the environment (items
 *             trimmed of blanks, empty items dropped).
 * A higher source replaces the whole list of a lower one.
 *
 * Reserved names: "config", "help" and "version" cannot be table entries.
 * --help / -h and --version win over every other argument. A flag value that
 * begins with "--" must be written --name=VALUE. "--" ends the flags; any
 * positional argument is an error.
 *
 * Ownership: strings and lists in the filled struct belong to it; release
 * them with gw_config_free(). The table is never modified. On any result
 * other than GW_CONFIG_OK the struct is left untouched (nothing to free).
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gw/error.h"

#ifndef GW_VERSION
#define GW_VERSION "0.1.0"
#endif

typedef enum gw_config_type {
    GW_CFG_BOOL,     /* bool field */
    GW_CFG_INT,      /* int64_t field, bounds [min, max] */
    GW_CFG_DURATION, /* int64_t milliseconds; accepts "250ms", "5s", "2m", "1h" or a bare number of ms */
    GW_CFG_SIZE,     /* int64_t bytes; accepts "64k", "16M", "1G" (powers of 1024) or bytes */
    GW_CFG_STRING,   /* char * field (NULL when unset and no default) */
    GW_CFG_ENUM,     /* int field: index into enum_values (0 when unset and no default) */
    GW_CFG_LIST,     /* gw_config_list_t field */
} gw_config_type_t;

typedef struct gw_config_list {
    char **items;
    size_t count;
} gw_config_list_t;

typedef struct gw_config_opt {
    const char *name;    /* "max-packet-size": flag, JSON key, env suffix; [a-z0-9-]{1,64} */
    gw_config_type_t type;
    size_t offset;       /* offsetof(struct my_config, field) */
    /* INT/DURATION/SIZE: bounds, inclusive (min == max == 0: no bounds).
     * STRING: max length in bytes, LIST: max item count (0 = none);
     * STRING/LIST: min > 0 makes the option required with at least min
     * bytes/items. */
    int64_t min, max;
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
    const char *env_prefix;        /* "GW_"; NULL = no environment variables at all */
    const gw_config_opt_t *opts;
    size_t nopts;
} gw_config_spec_t;

typedef enum gw_config_result {
    GW_CONFIG_OK = 0,   /* cfg filled; run */
    GW_CONFIG_EXIT = 1, /* --help or --version printed; exit 0 */
    GW_CONFIG_ERROR = 2 /* message printed to stderr; exit 2 */
} gw_config_result_t;

/*
 * Terse, type-checked table entries. The field's type is checked at compile
 * time (bool, int64_t, char *, int, gw_config_list_t), e.g.
 *
 *   static const char *const levels[] = {"error", "warn", "info", NULL};
 *   static const gw_config_opt_t opts[] = {
 *       GW_CONFIG_SIZE(struct gw_cfg, max_packet, "max-packet-size", 16, 256 << 20, "256k",
 *                      "Largest MQTT packet accepted"),
 *       GW_CONFIG_ENUM(struct gw_cfg, log_level, "log-level", levels, "info", "Log level"),
 *       GW_CONFIG_LIST(struct gw_cfg, routes, "route", 0, NULL, "PREFIX=URL route"),
 *   };
 *   static const gw_config_spec_t spec = {"mqtt-gateway", "MQTT to AMQP gateway", "GW_",
 *                                         opts, GW_CONFIG_NOPTS(opts)};
 */
#define GW_CONFIG_FIELD_(st, field, ctype)                                                     \
    (offsetof(st, field) + 0 * sizeof(_Generic(((st *)0)->field, ctype: 1)))

#define GW_CONFIG_OPT(st, field, ctype, name_, type_, min_, max_, def_, enums_, help_)         \
    {                                                                                          \
        .name = (name_), .type = (type_), .offset = GW_CONFIG_FIELD_(st, field, ctype),        \
        .min = (min_), .max = (max_), .def = (def_), .enum_values = (enums_), .help = (help_)  \
    }

#define GW_CONFIG_BOOL(st, field, name, def, help)                                             \
    GW_CONFIG_OPT(st, field, bool, name, GW_CFG_BOOL, 0, 0, def, NULL, help)
#define GW_CONFIG_INT(st, field, name, min, max, def, help)                                    \
    GW_CONFIG_OPT(st, field, int64_t, name, GW_CFG_INT, min, max, def, NULL, help)
#define GW_CONFIG_DURATION(st, field, name, min_ms, max_ms, def, help)                         \
    GW_CONFIG_OPT(st, field, int64_t, name, GW_CFG_DURATION, min_ms, max_ms, def, NULL, help)
#define GW_CONFIG_SIZE(st, field, name, min, max, def, help)                                   \
    GW_CONFIG_OPT(st, field, int64_t, name, GW_CFG_SIZE, min, max, def, NULL, help)
#define GW_CONFIG_STRING(st, field, name, maxlen, def, help)                                   \
    GW_CONFIG_OPT(st, field, char *, name, GW_CFG_STRING, 0, maxlen, def, NULL, help)
#define GW_CONFIG_ENUM(st, field, name, values, def, help)                                     \
    GW_CONFIG_OPT(st, field, int, name, GW_CFG_ENUM, 0, 0, def, values, help)
#define GW_CONFIG_LIST(st, field, name, maxcount, def, help)                                   \
    GW_CONFIG_OPT(st, field, gw_config_list_t, name, GW_CFG_LIST, 0, maxcount, def, NULL, help)
#define GW_CONFIG_NOPTS(opts) (sizeof(opts) / sizeof((opts)[0]))

/**
 * Fill cfg (a zeroed struct) from defaults, file, environment and argv.
 * On GW_CONFIG_ERROR one line per problem, naming key, value and source, was
 * written to err (may be NULL to use stderr). --help / --version text goes to
 * stdout. Positional arguments are errors. argv[0] is the program and skipped.
 */
gw_config_result_t gw_config_load(const gw_config_spec_t *spec, void *cfg, int argc,
                                  char **argv, FILE *err);
/** As gw_config_load(), with --help / --version written to out (NULL = stdout). */
gw_config_result_t gw_config_load_io(const gw_config_spec_t *spec, void *cfg, int argc,
                                     char **argv, FILE *out, FILE *err);
/** Print --help text: every option, its type, bounds, default, env var and help. */
void gw_config_print_help(const gw_config_spec_t *spec, FILE *out);
/** Print the reference as a Markdown table (docs/configuration.md is generated from it). */
void gw_config_print_markdown(const gw_config_spec_t *spec, FILE *out);
/** Free strings and lists owned by cfg and zero those fields. */
void gw_config_free(const gw_config_spec_t *spec, void *cfg);

/** "default", "file", "env" or "flag". */
const char *gw_config_source_name(gw_config_source_t src);

/**
 * Split "HOST:PORT" / "[v6]:PORT" / ":PORT" / "PORT"; host is returned
 * without brackets and may be empty (":PORT", "PORT": any address). Port is
 * 0..65535 (0 = ephemeral). Returns GW_ERR_CONFIG for junk (empty port,
 * non-digits, port > 65535, unbracketed IPv6, spaces), GW_ERR_NOSPACE if the
 * host does not fit in hostcap bytes with its NUL, GW_ERR_INVAL for NULL
 * arguments. host/port are written only on GW_OK.
 */
gw_err_t gw_config_parse_hostport(const char *s, char *host, size_t hostcap, uint16_t *port);

/**
 * Split a route "PREFIX=URL" at the first '='. Both parts must be non-empty
 * and free of blanks and control characters. On GW_OK *prefix and *url are
 * new strings the caller frees with free(); otherwise both are set to NULL
 * and GW_ERR_CONFIG (junk), GW_ERR_NOMEM or GW_ERR_INVAL (NULL argument) is
 * returned.
 */
gw_err_t gw_config_parse_route(const char *s, char **prefix, char **url);

#endif
