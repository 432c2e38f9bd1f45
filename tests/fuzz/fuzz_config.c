/*
 * fuzz_config.c - libFuzzer target for the configuration loader
 * (core/src/util/config.c).
 *
 * The input is the contents of a JSON config file, optionally followed by
 * NUL-separated command-line arguments (at most FUZZ_MAX_ARGS; arguments
 * naming "config" are dropped so that no input can point the loader at
 * another file). The file is a memfd rewritten for every input and given
 * as --config /proc/self/fd/N. The table below has one option of every
 * type, with bounds, defaults, a required string and an enum; no
 * environment prefix, so the environment plays no part.
 *
 * Checks (abort() on failure):
 *  - GW_CONFIG_OK: every field lies within its bounds, strings and list
 *    items are within their length/count limits, the enum index is valid;
 *    gw_config_free() zeroes the strings and lists;
 *  - GW_CONFIG_ERROR: the struct is untouched (all zero) and at least one
 *    line was written to err, every line "fuzz-config: ..." and at most
 *    MAX_LINE bytes (config.h: one line per problem);
 *  - GW_CONFIG_EXIT only for --help / -h / --version;
 *  - loading the same input twice gives the same result, fields and
 *    error text.
 */
#define _GNU_SOURCE /* memfd_create */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gw/config.h"

#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "fuzz_config: check failed at %s:%d: %s\n", __FILE__, \
                    __LINE__, #cond);                                             \
            abort();                                                              \
        }                                                                         \
    } while (0)

#define FUZZ_MAX_ARGS 6
#define ERR_CAP (256 * 1024)
#define PROGRAM "fuzz-config"
/* Longest error line: key and value cut at 80 bytes (up to 4 bytes each
 * escaped), a reason of our own, the source. */
#define MAX_LINE 1024

struct fcfg {
    bool flag;
    int64_t count;
    int64_t any;
    int64_t timeout;
    int64_t max_size;
    char *name;
    char *token;
    int level;
    gw_config_list_t routes;
    gw_config_list_t tags;
};

static const char *const levels[] = {"error", "warn", "info", "debug", NULL};

static const gw_config_opt_t opts[] = {
    GW_CONFIG_BOOL(struct fcfg, flag, "flag", "false", "A bool"),
    GW_CONFIG_INT(struct fcfg, count, "count", -5, 1000, "10", "A bounded int"),
    GW_CONFIG_INT(struct fcfg, any, "any-int", 0, 0, NULL, "An int without bounds"),
    GW_CONFIG_DURATION(struct fcfg, timeout, "timeout", 10, 3600000, "5s", "A duration"),
    GW_CONFIG_SIZE(struct fcfg, max_size, "max-size", 16, 256 << 20, "64k", "A size"),
    GW_CONFIG_STRING(struct fcfg, name, "name", 32, "gw", "A string of at most 32 bytes"),
    /* required: at least 2 bytes, at most 8 */
    GW_CONFIG_OPT(struct fcfg, token, char *, "token", GW_CFG_STRING, 2, 8, "ab", NULL,
                  "A required string"),
    GW_CONFIG_ENUM(struct fcfg, level, "log-level", levels, "info", "An enum"),
    GW_CONFIG_LIST(struct fcfg, routes, "route", 4, NULL, "At most 4 items"),
    GW_CONFIG_LIST(struct fcfg, tags, "tag", 0, NULL, "Any number of items"),
};

static const gw_config_spec_t spec = {PROGRAM, "fuzz target", NULL, opts,
                                      GW_CONFIG_NOPTS(opts)};

static int g_fd = -1;
static char g_path[64];
static FILE *g_null;
static bool g_verbose; /* env FUZZ_CONFIG_VERBOSE: print each result */
static char g_err1[ERR_CAP], g_err2[ERR_CAP];

static bool in(int64_t v, int64_t lo, int64_t hi)
{
    return v >= lo && v <= hi;
}

static void check_list(const gw_config_list_t *l, size_t max)
{
    CHECK(max == 0 || l->count <= max);
    CHECK(l->count == 0 || l->items != NULL);
    for (size_t i = 0; i < l->count; i++)
        CHECK(l->items[i] != NULL);
}

static bool str_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool list_same(const gw_config_list_t *a, const gw_config_list_t *b)
{
    if (a->count != b->count)
        return false;
    for (size_t i = 0; i < a->count; i++) {
        if (strcmp(a->items[i], b->items[i]) != 0)
            return false;
    }
    return true;
}

static bool cfg_same(const struct fcfg *a, const struct fcfg *b)
{
    return a->flag == b->flag && a->count == b->count && a->any == b->any &&
           a->timeout == b->timeout && a->max_size == b->max_size && str_same(a->name, b->name) &&
           str_same(a->token, b->token) && a->level == b->level &&
           list_same(&a->routes, &b->routes) && list_same(&a->tags, &b->tags);
}

/* Every error line names the program and is bounded: echoed keys and
 * values are escaped and cut (a newline in a key once split a line). */
static void check_err_text(const char *buf, size_t len)
{
    CHECK(len > sizeof(PROGRAM ": ") - 1);
    CHECK(memcmp(buf, PROGRAM ": ", sizeof(PROGRAM ": ") - 1) == 0);
    size_t off = 0;
    while (off < len) {
        const char *nl = memchr(buf + off, '\n', len - off);
        if (!nl)
            break; /* a line cut by the buffer's end */
        CHECK((size_t)(nl - (buf + off)) > sizeof(PROGRAM ": ") - 1);
        CHECK((size_t)(nl - (buf + off)) <= MAX_LINE);
        CHECK(memcmp(buf + off, PROGRAM ": ", sizeof(PROGRAM ": ") - 1) == 0);
        off = (size_t)(nl - buf) + 1;
    }
}

static gw_config_result_t load(int argc, char **argv, struct fcfg *cfg, char *errbuf,
                               size_t *errlen)
{
    FILE *err = fmemopen(errbuf, ERR_CAP, "w");
    gw_config_result_t r;
    long pos;

    CHECK(err != NULL);
    memset(cfg, 0, sizeof(*cfg));
    r = gw_config_load_io(&spec, cfg, argc, argv, g_null, err);
    fflush(err);
    pos = ftell(err);
    fclose(err);
    *errlen = pos < 0 ? 0 : (size_t)pos > ERR_CAP - 1 ? ERR_CAP - 1 : (size_t)pos;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct fcfg zero;
    char *argv[3 + FUZZ_MAX_ARGS + 1];
    char *args = NULL;
    int argc = 0;
    bool info = false;
    size_t json_len, elen1, elen2;
    struct fcfg cfg, cfg2;
    gw_config_result_t r, r2;

    if (g_fd < 0) {
        g_fd = memfd_create("fuzz_config", 0);
        CHECK(g_fd >= 0);
        snprintf(g_path, sizeof(g_path), "/proc/self/fd/%d", g_fd);
        g_null = fopen("/dev/null", "w");
        CHECK(g_null != NULL);
        g_verbose = getenv("FUZZ_CONFIG_VERBOSE") != NULL;
    }

    /* file contents up to the first NUL, then the arguments */
    const uint8_t *nul = memchr(data, '\0', size);
    json_len = nul ? (size_t)(nul - data) : size;
    CHECK(ftruncate(g_fd, 0) == 0);
    CHECK(json_len == 0 || pwrite(g_fd, data, json_len, 0) == (ssize_t)json_len);

    argv[argc++] = (char *)PROGRAM;
    argv[argc++] = (char *)"--config";
    argv[argc++] = g_path;
    if (nul) {
        size_t rest = size - json_len - 1;
        args = malloc(rest + 1);
        CHECK(args != NULL);
        memcpy(args, nul + 1, rest);
        args[rest] = '\0';
        for (char *a = args; a <= args + rest && argc < 3 + FUZZ_MAX_ARGS; a += strlen(a) + 1) {
            if (strstr(a, "config"))
                continue;
            argv[argc++] = a;
        }
    }
    argv[argc] = NULL;
    /* --help / -h / --version win unless "--" came first (config.h) */
    for (int k = 3; k < argc; k++) {
        if (strcmp(argv[k], "--") == 0)
            break;
        if (!strcmp(argv[k], "--help") || !strcmp(argv[k], "-h") || !strcmp(argv[k], "--version")) {
            info = true;
            break;
        }
    }

    r = load(argc, argv, &cfg, g_err1, &elen1);
    if (g_verbose)
        fprintf(stderr, "fuzz_config: result %d, count %" PRId64 ", %zu route(s)\n%.*s", (int)r,
                cfg.count, cfg.routes.count, (int)elen1, g_err1);
    switch (r) {
    case GW_CONFIG_OK:
        CHECK(!info);
        CHECK(in(cfg.count, -5, 1000));
        CHECK(in(cfg.timeout, 10, 3600000));
        CHECK(in(cfg.max_size, 16, 256 << 20));
        CHECK(cfg.name && strlen(cfg.name) <= 32);
        CHECK(cfg.token && in((int64_t)strlen(cfg.token), 2, 8));
        CHECK(in(cfg.level, 0, 3));
        check_list(&cfg.routes, 4);
        check_list(&cfg.tags, 0);
        break;
    case GW_CONFIG_ERROR:
        CHECK(!info);
        CHECK(memcmp(&cfg, &zero, sizeof(cfg)) == 0);
        check_err_text(g_err1, elen1);
        break;
    case GW_CONFIG_EXIT:
        CHECK(info);
        CHECK(memcmp(&cfg, &zero, sizeof(cfg)) == 0);
        break;
    default:
        CHECK(!"unknown result");
    }

    /* the same input again: same outcome */
    r2 = load(argc, argv, &cfg2, g_err2, &elen2);
    CHECK(r2 == r);
    CHECK(elen2 == elen1 && memcmp(g_err1, g_err2, elen1) == 0);
    CHECK(cfg_same(&cfg, &cfg2));

    gw_config_free(&spec, &cfg);
    gw_config_free(&spec, &cfg2);
    CHECK(cfg.name == NULL && cfg.token == NULL && cfg.routes.items == NULL &&
          cfg.routes.count == 0 && cfg.tags.items == NULL && cfg.tags.count == 0);
    free(args);
    return 0;
}
