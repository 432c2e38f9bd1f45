/*
 * test_config.c - the configuration loader: every type from every source,
 * precedence, bounds, every error message (key, value, source, reason),
 * --help / --version / Markdown, host:port and route parsing.
 *
 * Error text is captured with open_memstream and compared exactly; config
 * files are real temporary files (mkstemp); the environment is set with
 * setenv and cleared before every test.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw/config.h"

/* ------------------------------------------------------------------ */
/* the sample table: one option of every type, and a few extra          */

typedef struct tcfg {
    bool verbose;
    int64_t port;
    int64_t timeout;
    int64_t max_size;
    char *name;
    int level;
    gw_config_list_t routes;
    char *nodef;
    gw_config_list_t tags;
    int64_t offset;
} tcfg_t;

static const char *const levels[] = {"error", "warn", "info", "debug", NULL};

static const gw_config_opt_t topts[] = {
    GW_CONFIG_BOOL(tcfg_t, verbose, "verbose", "false", "Log more"),
    GW_CONFIG_INT(tcfg_t, port, "port", 1, 65535, "5672", "TCP port"),
    GW_CONFIG_DURATION(tcfg_t, timeout, "timeout", 10, 3600000, "5s", "Idle timeout"),
    GW_CONFIG_SIZE(tcfg_t, max_size, "max-size", 16, 16 << 20, "64k", "Largest packet"),
    GW_CONFIG_STRING(tcfg_t, name, "name", 8, "gw", "Container id"),
    GW_CONFIG_ENUM(tcfg_t, level, "log-level", levels, "info", "Log level"),
    GW_CONFIG_LIST(tcfg_t, routes, "route", 3, NULL, "PREFIX=URL; a | pipe"),
    GW_CONFIG_STRING(tcfg_t, nodef, "no-default", 0, NULL, "No default"),
    GW_CONFIG_LIST(tcfg_t, tags, "tag", 0, "a, b", "Tags"),
    GW_CONFIG_INT(tcfg_t, offset, "offset", 0, 0, "-3", "Unbounded"),
};

static const gw_config_spec_t tspec = {"test", "A test program", "GWT_", topts,
                                       GW_CONFIG_NOPTS(topts)};

static const char *const tenv[] = {"GWT_VERBOSE", "GWT_PORT",      "GWT_TIMEOUT", "GWT_MAX_SIZE",
                                   "GWT_NAME",    "GWT_LOG_LEVEL", "GWT_ROUTE",   "GWT_NO_DEFAULT",
                                   "GWT_TAG",     "GWT_OFFSET",    "GWT_CONFIG",  NULL};

/* ------------------------------------------------------------------ */
/* helpers                                                             */

typedef struct run {
    gw_config_result_t r;
    char *err; /* everything written to err */
    char *out; /* everything written to out (--help, --version) */
} run_t;

static void run_free(run_t *r)
{
    free(r->err);
    free(r->out);
}

/* Load spec into cfg from argv = {"test", args..., NULL}. */
static run_t vload(const gw_config_spec_t *spec, void *cfg, va_list ap)
{
    char *argv[32];
    int argc = 0;
    size_t elen = 0, olen = 0;
    run_t r = {0};
    FILE *e, *o;
    const char *a;

    argv[argc++] = (char *)"test";
    while ((a = va_arg(ap, const char *)) != NULL && argc < 31)
        argv[argc++] = (char *)a;
    argv[argc] = NULL;
    e = open_memstream(&r.err, &elen);
    o = open_memstream(&r.out, &olen);
    assert_non_null(e);
    assert_non_null(o);
    r.r = gw_config_load_io(spec, cfg, argc, argv, o, e);
    fclose(e);
    fclose(o);
    return r;
}

static run_t load(void *cfg, ...)
{
    va_list ap;
    va_start(ap, cfg);
    run_t r = vload(&tspec, cfg, ap);
    va_end(ap);
    return r;
}

static run_t load_spec(const gw_config_spec_t *spec, void *cfg, ...)
{
    va_list ap;
    va_start(ap, cfg);
    run_t r = vload(spec, cfg, ap);
    va_end(ap);
    return r;
}

/* Expect GW_CONFIG_ERROR with exactly this error text, cfg untouched. */
static void expect_error(const char *expected, ...)
{
    va_list ap;
    tcfg_t cfg;
    tcfg_t zero;
    memset(&cfg, 0, sizeof cfg);
    memset(&zero, 0, sizeof zero);
    va_start(ap, expected);
    run_t r = vload(&tspec, &cfg, ap);
    va_end(ap);
    assert_int_equal(r.r, GW_CONFIG_ERROR);
    assert_string_equal(r.err, expected);
    assert_memory_equal(&cfg, &zero, sizeof cfg);
    run_free(&r);
}

/* Expect success; the caller checks and frees cfg. */
static void expect_ok(tcfg_t *cfg, ...)
{
    va_list ap;
    memset(cfg, 0, sizeof *cfg);
    va_start(ap, cfg);
    run_t r = vload(&tspec, cfg, ap);
    va_end(ap);
    if (r.r != GW_CONFIG_OK)
        fail_msg("load failed: %s", r.err);
    assert_string_equal(r.err, "");
    run_free(&r);
}

typedef struct tmpfile {
    char path[64];
} tmpfile_t;

static void write_tmp(tmpfile_t *t, const char *content)
{
    strcpy(t->path, "/tmp/gwcfgXXXXXX");
    int fd = mkstemp(t->path);
    assert_true(fd >= 0);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    close(fd);
}

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; tenv[i]; i++)
        unsetenv(tenv[i]);
    return 0;
}

static void assert_list(const gw_config_list_t *l, size_t n, ...)
{
    va_list ap;
    assert_int_equal(l->count, n);
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(l->items[i], va_arg(ap, const char *));
    va_end(ap);
}

/* ------------------------------------------------------------------ */
/* defaults and precedence                                             */

static void test_defaults(void **state)
{
    tcfg_t c;
    (void)state;
    expect_ok(&c, NULL);
    assert_false(c.verbose);
    assert_int_equal(c.port, 5672);
    assert_int_equal(c.timeout, 5000);
    assert_int_equal(c.max_size, 65536);
    assert_string_equal(c.name, "gw");
    assert_int_equal(c.level, 2);
    assert_list(&c.routes, 0);
    assert_null(c.routes.items);
    assert_null(c.nodef);
    assert_list(&c.tags, 2, "a", "b");
    assert_int_equal(c.offset, -3);
    gw_config_free(&tspec, &c);
    assert_null(c.name);
    assert_null(c.tags.items);
    assert_int_equal(c.tags.count, 0);
}

/* Every type set by the file, then env over the file, then flags over both. */
static void test_precedence_every_type(void **state)
{
    tmpfile_t f;
    tcfg_t c;
    char cfgflag[80];
    (void)state;

    write_tmp(&f, "{\"verbose\": true, \"port\": 1000, \"timeout\": \"2m\", \"max-size\": 1024,"
                  " \"name\": \"file\", \"log-level\": \"warn\", \"route\": [\"f=amqp://f\"],"
                  " \"no-default\": \"fnd\", \"tag\": [\"x\"], \"offset\": -7}");
    snprintf(cfgflag, sizeof cfgflag, "--config=%s", f.path);

    expect_ok(&c, cfgflag, NULL);
    assert_true(c.verbose);
    assert_int_equal(c.port, 1000);
    assert_int_equal(c.timeout, 120000);
    assert_int_equal(c.max_size, 1024);
    assert_string_equal(c.name, "file");
    assert_int_equal(c.level, 1);
    assert_list(&c.routes, 1, "f=amqp://f");
    assert_string_equal(c.nodef, "fnd");
    assert_list(&c.tags, 1, "x");
    assert_int_equal(c.offset, -7);
    gw_config_free(&tspec, &c);

    setenv("GWT_VERBOSE", "off", 1);
    setenv("GWT_PORT", "2000", 1);
    setenv("GWT_TIMEOUT", "3s", 1);
    setenv("GWT_MAX_SIZE", "2k", 1);
    setenv("GWT_NAME", "env", 1);
    setenv("GWT_LOG_LEVEL", "DEBUG", 1);
    setenv("GWT_ROUTE", "e1=amqp://e1, e2=amqp://e2", 1);
    setenv("GWT_NO_DEFAULT", "end", 1);
    setenv("GWT_TAG", "", 1);
    setenv("GWT_OFFSET", "0", 1);
    expect_ok(&c, cfgflag, NULL);
    assert_false(c.verbose);
    assert_int_equal(c.port, 2000);
    assert_int_equal(c.timeout, 3000);
    assert_int_equal(c.max_size, 2048);
    assert_string_equal(c.name, "env");
    assert_int_equal(c.level, 3);
    assert_list(&c.routes, 2, "e1=amqp://e1", "e2=amqp://e2");
    assert_string_equal(c.nodef, "end");
    assert_list(&c.tags, 0);
    assert_int_equal(c.offset, 0);
    gw_config_free(&tspec, &c);

    expect_ok(&c, "--verbose", "--port", "3000", "--timeout=250ms", "--max-size", "1M",
              "--name=flag", "--log-level", "error", "--route", "r1=a,b", "--route=r2=c",
              "--no-default=", "--tag", "t", cfgflag, "--offset", "-9", NULL);
    assert_true(c.verbose);
    assert_int_equal(c.port, 3000);
    assert_int_equal(c.timeout, 250);
    assert_int_equal(c.max_size, 1 << 20);
    assert_string_equal(c.name, "flag");
    assert_int_equal(c.level, 0);
    assert_list(&c.routes, 2, "r1=a,b", "r2=c"); /* flags are never split at ',' */
    assert_string_equal(c.nodef, "");
    assert_list(&c.tags, 1, "t");
    assert_int_equal(c.offset, -9);
    gw_config_free(&tspec, &c);

    /* the file named by the environment is read too */
    clear_env(NULL);
    setenv("GWT_CONFIG", f.path, 1);
    expect_ok(&c, NULL);
    assert_int_equal(c.port, 1000);
    gw_config_free(&tspec, &c);
    /* ... unless a flag names another one (the last --config wins) */
    tmpfile_t g;
    write_tmp(&g, "{\"port\": 1111}");
    expect_ok(&c, "--config", "/nonexistent", "--config", g.path, NULL);
    assert_int_equal(c.port, 1111);
    gw_config_free(&tspec, &c);
    clear_env(NULL);
    unlink(f.path);
    unlink(g.path);
}

/* A source higher up overrides only what it sets. */
static void test_precedence_partial(void **state)
{
    tmpfile_t f;
    tcfg_t c;
    (void)state;
    write_tmp(&f, "{\"port\": 1000, \"name\": \"file\"}");
    setenv("GWT_CONFIG", f.path, 1);
    setenv("GWT_NAME", "env", 1);
    expect_ok(&c, "--no-verbose", NULL);
    assert_false(c.verbose);
    assert_int_equal(c.port, 1000);
    assert_string_equal(c.name, "env");
    assert_int_equal(c.timeout, 5000);
    gw_config_free(&tspec, &c);
    unlink(f.path);
    write_tmp(&f, "{\"timeout\": 250, \"max-size\": \"1k\", \"verbose\": false}");
    setenv("GWT_CONFIG", f.path, 1);
    setenv("GWT_VERBOSE", "1", 1);
    expect_ok(&c, NULL); /* durations and sizes: a JSON integer or a string */
    assert_int_equal(c.timeout, 250);
    assert_int_equal(c.max_size, 1024);
    assert_true(c.verbose);
    gw_config_free(&tspec, &c);
    expect_ok(&c, "--verbose=yes", "--no-verbose", "--verbose=ON", NULL); /* last flag wins */
    assert_true(c.verbose);
    gw_config_free(&tspec, &c);
    clear_env(NULL);
    unlink(f.path);
}

static void test_lists_replaced(void **state)
{
    tmpfile_t f, empty;
    tcfg_t c;
    char flag[80], flag2[80];
    (void)state;
    write_tmp(&f, "{\"tag\": [\"c\", \"d\"]}");
    write_tmp(&empty, "{\"tag\": []}");
    snprintf(flag, sizeof flag, "--config=%s", f.path);
    snprintf(flag2, sizeof flag2, "--config=%s", empty.path);

    expect_ok(&c, flag, NULL); /* file replaces the default "a, b" */
    assert_list(&c.tags, 2, "c", "d");
    gw_config_free(&tspec, &c);
    expect_ok(&c, flag2, NULL); /* an empty array empties it */
    assert_list(&c.tags, 0);
    gw_config_free(&tspec, &c);
    setenv("GWT_TAG", " e ,,f, ", 1);
    expect_ok(&c, flag, NULL);
    assert_list(&c.tags, 2, "e", "f");
    gw_config_free(&tspec, &c);
    expect_ok(&c, flag, "--tag", "g", "--tag", "h h", "--tag=", NULL);
    assert_list(&c.tags, 3, "g", "h h", "");
    gw_config_free(&tspec, &c);
    clear_env(NULL);
    unlink(f.path);
    unlink(empty.path);
}

/* ------------------------------------------------------------------ */
/* types                                                               */

static void test_bool_values(void **state)
{
    static const char *const t[] = {"true", "1", "yes", "on", "TRUE", "Yes", NULL};
    static const char *const fl[] = {"false", "0", "no", "off", "FALSE", "Off", NULL};
    tcfg_t c;
    (void)state;
    for (size_t i = 0; t[i]; i++) {
        setenv("GWT_VERBOSE", t[i], 1);
        expect_ok(&c, NULL);
        assert_true(c.verbose);
        gw_config_free(&tspec, &c);
        setenv("GWT_VERBOSE", fl[i], 1);
        expect_ok(&c, NULL);
        assert_false(c.verbose);
        gw_config_free(&tspec, &c);
    }
    clear_env(NULL);
    expect_error("test: --verbose: \"maybe\" not a boolean (true/false, yes/no, on/off, 1/0) "
                 "(flag)\n",
                 "--verbose=maybe", NULL);
}

static int64_t load_int(const char *flag, const char *value, const char **err)
{
    tcfg_t c;
    char arg[128];
    int64_t v = 0;
    snprintf(arg, sizeof arg, "--%s=%s", flag, value);
    memset(&c, 0, sizeof c);
    run_t r = load(&c, arg, NULL);
    *err = NULL;
    if (r.r == GW_CONFIG_OK)
        v = strcmp(flag, "timeout") == 0    ? c.timeout
            : strcmp(flag, "max-size") == 0 ? c.max_size
            : strcmp(flag, "port") == 0     ? c.port
                                            : c.offset;
    else
        *err = r.err[0] ? "error" : "silent error";
    gw_config_free(&tspec, &c);
    run_free(&r);
    return v;
}

static void test_durations(void **state)
{
    static const struct {
        const char *in;
        int64_t ms;
    } ok[] = {{"250ms", 250}, {"5s", 5000},     {"2m", 120000},  {"1h", 3600000},
              {"10", 10},     {"0010s", 10000}, {"60m", 3600000}};
    static const char *const bad[] = {"",   "s",   "5 s", " 5s", "5s ",  "5S",   "1.5s", "-5s",
                                      "5x", "5sm", "ms5", "+5",  "5mss", "0x10", NULL};
    const char *err;
    (void)state;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(load_int("timeout", ok[i].in, &err), ok[i].ms);
        assert_null(err);
    }
    for (size_t i = 0; bad[i]; i++) {
        load_int("timeout", bad[i], &err);
        if (!err)
            fail_msg("duration \"%s\" accepted", bad[i]);
    }
    expect_error("test: --timeout: \"1.5s\" not a duration (milliseconds, or a number with ms, "
                 "s, m, h or d) (flag)\n",
                 "--timeout=1.5s", NULL);
    expect_error("test: --timeout: \"99999999999999999999s\" out of range (64-bit "
                 "milliseconds) (flag)\n",
                 "--timeout=99999999999999999999s", NULL);
    /* fits in 64 bits as a number, overflows once multiplied by the unit */
    expect_error("test: --timeout: \"9223372036854775807h\" out of range (64-bit milliseconds) "
                 "(flag)\n",
                 "--timeout", "9223372036854775807h", NULL);
    expect_error("test: --timeout: \"2h\" above maximum 1h (flag)\n", "--timeout=2h", NULL);
    expect_error("test: --timeout: \"9ms\" below minimum 10ms (flag)\n", "--timeout=9ms", NULL);
}

static void test_sizes(void **state)
{
    static const struct {
        const char *in;
        int64_t n;
    } ok[] = {{"64k", 65536}, {"16M", 16 << 20}, {"16m", 16 << 20}, {"1K", 1024}, {"100", 100},
              {"100b", 100},  {"2KiB", 2048},    {"3MB", 3 << 20},  {"16", 16}};
    static const char *const bad[] = {"", "k", "1.5k", "-1k", "1 k", "1kk", "1x", "0x20", NULL};
    const char *err;
    (void)state;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(load_int("max-size", ok[i].in, &err), ok[i].n);
        assert_null(err);
    }
    for (size_t i = 0; bad[i]; i++) {
        load_int("max-size", bad[i], &err);
        if (!err)
            fail_msg("size \"%s\" accepted", bad[i]);
    }
    expect_error("test: --max-size: \"1G\" above maximum 16M (flag)\n", "--max-size=1G", NULL);
    expect_error("test: --max-size: \"99999999999999999999\" out of range (64-bit bytes) "
                 "(flag)\n",
                 "--max-size=99999999999999999999", NULL);
    expect_error("test: --max-size: \"8796093022208T\" out of range (64-bit bytes) (flag)\n",
                 "--max-size=8796093022208T", NULL);
    expect_error("test: --max-size: \"1.5k\" not a size (bytes, or a number with k, M, G or T) "
                 "(flag)\n",
                 "--max-size=1.5k", NULL);
}

static void test_ints(void **state)
{
    const char *err;
    (void)state;
    assert_int_equal(load_int("offset", "-9223372036854775808", &err), INT64_MIN);
    assert_null(err);
    assert_int_equal(load_int("offset", "9223372036854775807", &err), INT64_MAX);
    assert_null(err);
    static const char *const bad[] = {"", "-", "1e3", "0x10", " 1", "1 ", "+-1", "--1", "1k", NULL};
    for (size_t i = 0; bad[i]; i++) {
        load_int("offset", bad[i], &err);
        if (!err)
            fail_msg("int \"%s\" accepted", bad[i]);
    }
    expect_error("test: --offset: \"9223372036854775808\" out of range (64-bit integer) (flag)\n",
                 "--offset=9223372036854775808", NULL);
    expect_error("test: --port: \"12ab\" not a decimal integer (flag)\n", "--port=12ab", NULL);
}

/* min and max themselves are accepted, one step beyond is not. */
static void test_bounds_inclusive(void **state)
{
    const char *err;
    tcfg_t c;
    (void)state;
    assert_int_equal(load_int("port", "1", &err), 1);
    assert_null(err);
    assert_int_equal(load_int("port", "65535", &err), 65535);
    assert_null(err);
    expect_error("test: --port: \"0\" below minimum 1 (flag)\n", "--port=0", NULL);
    expect_error("test: --port: \"65536\" above maximum 65535 (flag)\n", "--port", "65536", NULL);
    assert_int_equal(load_int("timeout", "10ms", &err), 10);
    assert_null(err);
    assert_int_equal(load_int("timeout", "1h", &err), 3600000);
    assert_null(err);
    assert_int_equal(load_int("timeout", "3600001", &err), 0);
    assert_non_null(err);
    assert_int_equal(load_int("max-size", "16", &err), 16);
    assert_null(err);
    assert_int_equal(load_int("max-size", "16M", &err), 16 << 20);
    assert_null(err);
    expect_error("test: --max-size: \"15\" below minimum 16 (flag)\n", "--max-size=15", NULL);
    expect_error("test: --max-size: \"16777217\" above maximum 16M (flag)\n", "--max-size=16777217",
                 NULL);

    expect_ok(&c, "--name=12345678", NULL); /* 8 bytes allowed */
    assert_string_equal(c.name, "12345678");
    gw_config_free(&tspec, &c);
    expect_error("test: --name: \"123456789\" longer than 8 bytes (flag)\n", "--name=123456789",
                 NULL);
    expect_ok(&c, "--route=a", "--route=b", "--route=c", NULL); /* 3 items allowed */
    assert_list(&c.routes, 3, "a", "b", "c");
    gw_config_free(&tspec, &c);
    expect_error("test: --route: \"a,b,c,d\" has 4 items, more than maximum 3 (flag)\n",
                 "--route=a", "--route=b", "--route=c", "--route=d", NULL);
    setenv("GWT_ROUTE", "1,2,3,4", 1);
    expect_error("test: route: \"1,2,3,4\" has 4 items, more than maximum 3 (env GWT_ROUTE)\n",
                 NULL);
    clear_env(NULL);
}

static void test_enum(void **state)
{
    tcfg_t c;
    (void)state;
    expect_ok(&c, "--log-level=Warn", NULL);
    assert_int_equal(c.level, 1);
    gw_config_free(&tspec, &c);
    expect_error("test: --log-level: \"verbose\" not one of: error, warn, info, debug (flag)\n",
                 "--log-level", "verbose", NULL);
}

/* ------------------------------------------------------------------ */
/* every error path names key, value, source and reason                */

static void test_errors_env(void **state)
{
    (void)state;
    setenv("GWT_PORT", "abc", 1);
    expect_error("test: port: \"abc\" not a decimal integer (env GWT_PORT)\n", NULL);
    /* a syntax error is reported even when a flag overrides the value */
    expect_error("test: port: \"abc\" not a decimal integer (env GWT_PORT)\n", "--port=5", NULL);
    setenv("GWT_PORT", "0", 1);
    expect_error("test: port: \"0\" below minimum 1 (env GWT_PORT)\n", NULL);
    clear_env(NULL);
    setenv("GWT_VERBOSE", "2", 1);
    expect_error("test: verbose: \"2\" not a boolean (true/false, yes/no, on/off, 1/0) "
                 "(env GWT_VERBOSE)\n",
                 NULL);
    setenv("GWT_VERBOSE", "a\"b\n", 1); /* echoed escaped, on one line */
    expect_error("test: verbose: \"a\\\"b\\x0a\" not a boolean (true/false, yes/no, on/off, "
                 "1/0) (env GWT_VERBOSE)\n",
                 NULL);
    clear_env(NULL);
    setenv("GWT_LOG_LEVEL", "loud", 1);
    setenv("GWT_TIMEOUT", "1y", 1);
    /* all errors are reported, one line each */
    expect_error("test: timeout: \"1y\" not a duration (milliseconds, or a number with ms, s, m, h "
                 "or d) (env GWT_TIMEOUT)\n"
                 "test: log-level: \"loud\" not one of: error, warn, info, debug (env "
                 "GWT_LOG_LEVEL)\n",
                 NULL);
    clear_env(NULL);
}

static void test_errors_file(void **state)
{
    tmpfile_t f;
    char flag[80], exp[1024];
    (void)state;

#define FILE_CASE(json, fmt)                                                                       \
    do {                                                                                           \
        write_tmp(&f, json);                                                                       \
        snprintf(flag, sizeof flag, "--config=%s", f.path);                                        \
        snprintf(exp, sizeof exp, fmt, f.path);                                                    \
        expect_error(exp, flag, NULL);                                                             \
        unlink(f.path);                                                                            \
    } while (0)

#define JSON_CASE(json, where, detail)                                                             \
    do {                                                                                           \
        tcfg_t c_;                                                                                 \
        memset(&c_, 0, sizeof c_);                                                                 \
        write_tmp(&f, json);                                                                       \
        snprintf(flag, sizeof flag, "--config=%s", f.path);                                        \
        snprintf(exp, sizeof exp, "test: --config: \"%s\" is not valid JSON: %s", f.path, where);  \
        run_t r_ = load(&c_, flag, NULL);                                                          \
        assert_int_equal(r_.r, GW_CONFIG_ERROR);                                                   \
        if (strncmp(r_.err, exp, strlen(exp)) != 0 || !strstr(r_.err, detail) ||                   \
            strcmp(r_.err + strlen(r_.err) - 8, " (flag)\n") != 0 ||                               \
            strchr(r_.err, '\n') != r_.err + strlen(r_.err) - 1)                                   \
            fail_msg("unexpected: %s", r_.err);                                                    \
        run_free(&r_);                                                                             \
        unlink(f.path);                                                                            \
    } while (0)

    FILE_CASE("{\"port\": 0}", "test: port: \"0\" below minimum 1 (file %s)\n");
    FILE_CASE("{\"port\": true}",
              "test: port: \"true\" is a boolean, expected an integer (file %s)\n");
    FILE_CASE("{\"port\": \"80\"}",
              "test: port: \"\\\"80\\\"\" is a string, expected an integer (file %s)\n");
    FILE_CASE("{\"port\": 1.5}",
              "test: port: \"1.5\" is a real number, expected an integer (file %s)\n");
    FILE_CASE("{\"verbose\": \"yes\"}",
              "test: verbose: \"\\\"yes\\\"\" is a string, expected true or false (file %s)\n");
    FILE_CASE("{\"timeout\": null}",
              "test: timeout: \"null\" is null, expected an integer or a string (file %s)\n");
    FILE_CASE("{\"timeout\": -5}", "test: timeout: \"-5\" is negative (file %s)\n");
    FILE_CASE("{\"timeout\": \"2h\"}", "test: timeout: \"2h\" above maximum 1h (file %s)\n");
    FILE_CASE("{\"max-size\": \"lots\"}",
              "test: max-size: \"lots\" not a size (bytes, or a number with k, M, G or T) "
              "(file %s)\n");
    FILE_CASE("{\"name\": 5}", "test: name: \"5\" is an integer, expected a string (file %s)\n");
    FILE_CASE("{\"log-level\": \"loud\"}",
              "test: log-level: \"loud\" not one of: error, warn, info, debug (file %s)\n");
    FILE_CASE("{\"route\": \"a=b\"}",
              "test: route: \"\\\"a=b\\\"\" is a string, expected an array of strings (file "
              "%s)\n");
    FILE_CASE("{\"route\": [\"a=b\", 7]}",
              "test: route[1]: \"7\" is an integer, expected a string (file %s)\n");
    FILE_CASE("{\"route\": [\"1\", \"2\", \"3\", \"4\"]}",
              "test: route: \"1,2,3,4\" has 4 items, more than maximum 3 (file %s)\n");
    FILE_CASE("{\"max-sise\": 5}",
              "test: max-sise: unknown key, did you mean \"max-size\"? (file %s)\n");
    FILE_CASE("{\"zzzzzzzzzz\": 5}", "test: zzzzzzzzzz: unknown key (file %s)\n");
    FILE_CASE("{\"config\": \"/x\"}", "test: config: unknown key (a config file cannot "
                                      "include another) (file %s)\n");

    /* whole-file problems name --config and the path */
    FILE_CASE("[1, 2]", "test: --config: \"%s\" must hold a JSON object, not an array (flag)\n");
    /* jansson words the detail; we own the key, value, position and source */
    JSON_CASE("{\"port\": 1,}", "line 1 column 12: ", "expected");
    JSON_CASE("{\"port\": 1, \"port\": 2}", "line 1 column ", "duplicate object key");
    JSON_CASE("", "line 1 column 0: ", "expected");
    JSON_CASE("{\"name\": \"a\\u0000b\"}", "line 1 column ", "\\u0000");
#undef FILE_CASE
#undef JSON_CASE

    expect_error("test: --config: \"/nonexistent/gw.json\" cannot be opened: No such file or "
                 "directory (flag)\n",
                 "--config", "/nonexistent/gw.json", NULL);
    expect_error("test: --config: missing value (flag)\n", "--config", NULL);
    expect_error("test: --config: \"\" is an empty path (flag)\n", "--config=", NULL);
    setenv("GWT_CONFIG", "/nonexistent/gw.json", 1);
    expect_error("test: config: \"/nonexistent/gw.json\" cannot be opened: No such file or "
                 "directory (env GWT_CONFIG)\n",
                 NULL);
    clear_env(NULL);
}

static void test_errors_flags(void **state)
{
    (void)state;
    expect_error("test: --max-sise: unknown option, did you mean --max-size? (flag)\n",
                 "--max-sise", "5", NULL);
    expect_error("test: --verbos: unknown option, did you mean --verbose? (flag)\n", "--verbos",
                 NULL);
    expect_error("test: --hlep: unknown option, did you mean --help? (flag)\n", "--hlep", NULL);
    expect_error("test: --no-verbos: unknown option, did you mean --verbose? (flag)\n",
                 "--no-verbos", NULL);
    expect_error("test: --completely-different: unknown option (see --help) (flag)\n",
                 "--completely-different=1", NULL);
    expect_error("test: \"-p\" unknown option (options are --name or --name=VALUE) (flag)\n", "-p",
                 NULL);
    expect_error("test: --port: missing value (flag)\n", "--port", NULL);
    expect_error("test: --port: missing value (flag)\n", "--port", "--verbose", NULL);
    expect_error("test: \"extra\" positional arguments are not accepted (flag)\n", "extra", NULL);
    expect_error("test: \"-\" positional arguments are not accepted (flag)\n", "-", NULL);
    /* a bool never eats the next argument */
    expect_error("test: \"false\" positional arguments are not accepted (flag)\n", "--verbose",
                 "false", NULL);
    expect_error("test: \"--port=1\" positional arguments are not accepted (flag)\n", "--",
                 "--port=1", NULL);
    expect_error("test: --no-port: --port is not a boolean option (flag)\n", "--no-port", NULL);
    expect_error("test: --no-verbose: \"1\" not accepted, --no-verbose takes no value (use "
                 "--verbose=VALUE) (flag)\n",
                 "--no-verbose=1", NULL);
    expect_error("test: --help: \"1\" not accepted, --help takes no value (flag)\n", "--help=1",
                 NULL);
    /* several errors, all reported */
    expect_error("test: --port: \"x\" not a decimal integer (flag)\n"
                 "test: --name: \"far too long\" longer than 8 bytes (flag)\n",
                 "--port", "x", "--name", "far too long", NULL);
}

/* Echoed input is bounded: a huge flag name or value stays one short line. */
static void test_errors_bounded(void **state)
{
    char name[300], value[300], exp[512];
    (void)state;
    memset(name, 'x', sizeof name);
    memcpy(name, "--", 2);
    name[sizeof name - 1] = '\0';
    snprintf(exp, sizeof exp, "test: --%.64s...: unknown option (see --help) (flag)\n", name + 2);
    expect_error(exp, name, NULL);
    memset(value, '7', sizeof value);
    memcpy(value, "--port=", 7);
    value[sizeof value - 1] = '\0';
    snprintf(exp, sizeof exp, "test: --port: \"%.80s...\" out of range (64-bit integer) (flag)\n",
             value + 7);
    expect_error(exp, value, NULL);
}

/* Without an environment prefix no variable is read, not even <PREFIX>CONFIG. */
static void test_no_env_prefix(void **state)
{
    static const gw_config_opt_t nopts[] = {
        GW_CONFIG_INT(tcfg_t, port, "port", 1, 65535, "5672", "TCP port"),
    };
    static const gw_config_spec_t nspec = {"noenv", NULL, NULL, nopts, 1};
    tcfg_t c;
    run_t r;
    char *help = NULL;
    size_t len = 0;
    FILE *f;
    (void)state;
    setenv("PORT", "1", 1);
    setenv("CONFIG", "/nonexistent", 1);
    memset(&c, 0, sizeof c);
    r = load_spec(&nspec, &c, NULL);
    unsetenv("PORT");
    unsetenv("CONFIG");
    assert_int_equal(r.r, GW_CONFIG_OK);
    assert_int_equal(c.port, 5672);
    run_free(&r);
    f = open_memstream(&help, &len);
    assert_non_null(f);
    gw_config_print_help(&nspec, f);
    fclose(f);
    assert_non_null(strstr(help, "int; default 5672; 1 .. 65535; env -\n"));
    free(help);
}

/* A value that starts with "--" needs the = form. */
static void test_flag_value_forms(void **state)
{
    tcfg_t c;
    (void)state;
    expect_ok(&c, "--name=--x", "--offset", "-5", "--no-default", "-", NULL);
    assert_string_equal(c.name, "--x");
    assert_int_equal(c.offset, -5);
    assert_string_equal(c.nodef, "-");
    gw_config_free(&tspec, &c);
}

/* ------------------------------------------------------------------ */
/* tables with programming errors                                      */

typedef struct bcfg {
    int64_t size;
    char *s;
    gw_config_list_t l;
    int mode;
} bcfg_t;

static void test_bad_defaults(void **state)
{
    static const gw_config_opt_t bad[] = {
        GW_CONFIG_SIZE(bcfg_t, size, "size", 0, 100, "12q", "bad syntax"),
    };
    static const gw_config_spec_t bspec = {"bad", NULL, "GWT_", bad, 1};
    static const gw_config_opt_t oob[] = {
        GW_CONFIG_SIZE(bcfg_t, size, "size", 0, 100, "1k", "out of bounds"),
    };
    static const gw_config_spec_t ospec = {"bad", NULL, "GWT_", oob, 1};
    static const gw_config_opt_t dup[] = {
        GW_CONFIG_SIZE(bcfg_t, size, "size", 0, 100, "1", "x"),
        GW_CONFIG_STRING(bcfg_t, s, "size", 0, NULL, "x"),
        GW_CONFIG_STRING(bcfg_t, s, "help", 0, NULL, "x"),
        GW_CONFIG_STRING(bcfg_t, s, "Upper", 0, NULL, "x"),
    };
    static const gw_config_spec_t dspec = {"bad", NULL, "GWT_", dup, 4};
    bcfg_t c;
    run_t r;
    (void)state;

    memset(&c, 0, sizeof c);
    r = load_spec(&bspec, &c, NULL);
    assert_int_equal(r.r, GW_CONFIG_ERROR);
    assert_string_equal(r.err, "bad: size: \"12q\" not a size (bytes, or a number with k, M, G "
                               "or T) (default)\n");
    run_free(&r);
    /* out of bounds in the table: reported even when a flag overrides it */
    r = load_spec(&ospec, &c, "--size=5", NULL);
    assert_int_equal(r.r, GW_CONFIG_ERROR);
    assert_string_equal(r.err, "bad: size: \"1k\" above maximum 100 (default)\n");
    run_free(&r);
    r = load_spec(&dspec, &c, NULL);
    assert_int_equal(r.r, GW_CONFIG_ERROR);
    assert_string_equal(r.err, "bad: size: invalid table: duplicate option name (default)\n"
                               "bad: help: invalid table: reserved option name (default)\n"
                               "bad: \"Upper\" invalid table: option names are 1..64 of "
                               "[a-z0-9-] (default)\n");
    run_free(&r);
    assert_null(c.s);

    static const gw_config_opt_t bad2[] = {
        GW_CONFIG_INT(bcfg_t, size, "size", 10, 1, NULL, "min above max"),
        GW_CONFIG_ENUM(bcfg_t, mode, "mode", NULL, NULL, "no values"),
        GW_CONFIG_OPT(bcfg_t, s, char *, "s", GW_CFG_STRING, 5, 2, NULL, NULL, "5..2"),
    };
    static const gw_config_spec_t b2spec = {"bad", NULL, "GWT_", bad2, 3};
    r = load_spec(&b2spec, &c, NULL);
    assert_int_equal(r.r, GW_CONFIG_ERROR);
    assert_string_equal(r.err, "bad: size: invalid table: min 10 > max 1 (default)\n"
                               "bad: mode: invalid table: enum without values (default)\n"
                               "bad: s: invalid table: bad min/max 5/2 (default)\n");
    run_free(&r);
}

static void test_required(void **state)
{
    static const gw_config_opt_t ropts[] = {
        GW_CONFIG_OPT(bcfg_t, s, char *, "router", GW_CFG_STRING, 1, 0, NULL, NULL, "URL"),
        GW_CONFIG_OPT(bcfg_t, l, gw_config_list_t, "peer", GW_CFG_LIST, 2, 0, NULL, NULL, "x"),
    };
    static const gw_config_spec_t rspec = {"req", NULL, "GWT_", ropts, 2};
    bcfg_t c;
    run_t r;
    (void)state;
    memset(&c, 0, sizeof c);
    r = load_spec(&rspec, &c, NULL);
    assert_int_equal(r.r, GW_CONFIG_ERROR);
    assert_string_equal(r.err, "req: router: missing, required (set --router, GWT_ROUTER or "
                               "\"router\" in the config file)\n"
                               "req: peer: missing, required (set --peer, GWT_PEER or \"peer\" "
                               "in the config file)\n");
    run_free(&r);
    r = load_spec(&rspec, &c, "--router=", "--peer=a", NULL);
    assert_int_equal(r.r, GW_CONFIG_ERROR);
    assert_string_equal(r.err, "req: --router: \"\" shorter than 1 bytes (flag)\n"
                               "req: --peer: \"a\" has 1 items, fewer than minimum 2 (flag)\n");
    run_free(&r);
    char *help = NULL;
    size_t hlen = 0;
    FILE *f = open_memstream(&help, &hlen);
    assert_non_null(f);
    gw_config_print_help(&rspec, f);
    fclose(f);
    assert_non_null(strstr(help, "      string; default none; at least 1 bytes; env GWT_ROUTER\n"));
    assert_non_null(strstr(help, "      list; default none; repeatable, at least 2 items; env "
                                 "GWT_PEER\n"));
    free(help);
    r = load_spec(&rspec, &c, "--router=amqp://x", "--peer=a", "--peer=b", NULL);
    assert_int_equal(r.r, GW_CONFIG_OK);
    assert_string_equal(c.s, "amqp://x");
    assert_list(&c.l, 2, "a", "b");
    gw_config_free(&rspec, &c);
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* --help, --version, Markdown                                         */

static void test_help(void **state)
{
    tcfg_t c, zero;
    run_t r;
    (void)state;
    memset(&c, 0, sizeof c);
    memset(&zero, 0, sizeof zero);
    /* --help wins over a broken command line */
    r = load(&c, "--bogus", "--help", "positional", NULL);
    assert_int_equal(r.r, GW_CONFIG_EXIT);
    assert_string_equal(r.err, "");
    assert_memory_equal(&c, &zero, sizeof c);
    assert_non_null(strstr(r.out, "Usage: test [OPTIONS]\nA test program\n"));
    for (size_t i = 0; i < tspec.nopts; i++) {
        char needle[128];
        const char *line;
        snprintf(needle, sizeof needle, "--%s%s", topts[i].type == GW_CFG_BOOL ? "[no-]" : "",
                 topts[i].name);
        line = strstr(r.out, needle);
        if (!line)
            fail_msg("--help lacks %s", needle);
        assert_non_null(strstr(line, topts[i].help));
        snprintf(needle, sizeof needle, "env %s", tenv[i]);
        assert_non_null(strstr(line, needle));
        if (topts[i].def) {
            snprintf(needle, sizeof needle, "default %s", topts[i].def);
            assert_non_null(strstr(line, needle));
        }
    }
    assert_non_null(strstr(r.out, "      size; default 64k; 16 .. 16M; env GWT_MAX_SIZE\n"));
    assert_non_null(strstr(r.out, "      duration; default 5s; 10ms .. 1h; env GWT_TIMEOUT\n"));
    assert_non_null(strstr(r.out, "  --log-level=CHOICE\n      Log level\n      enum; default "
                                  "info; one of error, warn, info, debug; env GWT_LOG_LEVEL\n"));
    assert_non_null(strstr(r.out, "list; default none; repeatable, at most 3 items; env "
                                  "GWT_ROUTE\n"));
    assert_non_null(strstr(r.out, "--config=PATH"));
    assert_non_null(strstr(r.out, "env GWT_CONFIG"));
    assert_non_null(strstr(r.out, "--version"));
    run_free(&r);

    r = load(&c, "-h", NULL);
    assert_int_equal(r.r, GW_CONFIG_EXIT);
    assert_non_null(strstr(r.out, "--max-size=SIZE"));
    run_free(&r);

    r = load(&c, "--port=1", "--version", NULL);
    assert_int_equal(r.r, GW_CONFIG_EXIT);
    assert_string_equal(r.out, "test " GW_VERSION "\n");
    assert_string_equal(r.err, "");
    run_free(&r);

    /* after "--" it is a positional argument, not a request for help */
    r = load(&c, "--", "--help", NULL);
    assert_int_equal(r.r, GW_CONFIG_ERROR);
    assert_string_equal(r.err, "test: \"--help\" positional arguments are not accepted (flag)\n");
    run_free(&r);
}

static void test_markdown(void **state)
{
    char *md = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&md, &len);
    (void)state;
    assert_non_null(f);
    gw_config_print_markdown(&tspec, f);
    fclose(f);
    assert_non_null(strstr(md, "### test\n\nA test program\n\n"));
    assert_non_null(strstr(md, "| Option | Type | Default | Bounds | Environment | Description |\n"
                               "| --- | --- | --- | --- | --- | --- |\n"));
    assert_non_null(strstr(md, "| `--max-size` | size | `64k` | 16 .. 16M | `GWT_MAX_SIZE` | "
                               "Largest packet |\n"));
    assert_non_null(strstr(md, "| `--[no-]verbose` | bool | `false` |  | `GWT_VERBOSE` | Log "
                               "more |\n"));
    assert_non_null(strstr(md, "| `--route` | list |  | repeatable, at most 3 items | "
                               "`GWT_ROUTE` | PREFIX=URL; a \\| pipe |\n"));
    for (size_t i = 0; i < tspec.nopts; i++) {
        char needle[96];
        snprintf(needle, sizeof needle, "%s` |", topts[i].name);
        if (!strstr(md, needle))
            fail_msg("markdown lacks %s", topts[i].name);
    }
    /* one table row per option plus --config, header and separator */
    size_t rows = 0;
    for (const char *p = md; (p = strstr(p, "\n|")); p++)
        rows++;
    assert_int_equal(rows, tspec.nopts + 3);
    free(md);
}

/* ------------------------------------------------------------------ */
/* host:port and routes                                                */

static void test_hostport(void **state)
{
    static const struct {
        const char *in;
        const char *host;
        uint16_t port;
    } ok[] = {
        {"localhost:1883", "localhost", 1883},
        {"127.0.0.1:0", "127.0.0.1", 0},
        {"[::1]:5672", "::1", 5672},
        {"[fe80::1%eth0]:1", "fe80::1%eth0", 1},
        {":65535", "", 65535},
        {"8883", "", 8883},
        {"my-host.example_1:00080", "my-host.example_1", 80},
    };
    static const char *const bad[] = {
        "",        ":",        "host:",        "host:65536", "host:99999999999999999999",
        "host:-1", "host:1x",  "::1:5672",     "[::1]",      "[::1]5672",
        "[]:5",    "[::1]:",   "[hostname]:5", "ho st:5",    "host:5 ",
        "host:+5", "[::1%]:5", "a/b:5",        "65536",      "[::g]:5",
        NULL,
    };
    char host[64];
    uint16_t port;
    (void)state;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        port = 12345;
        if (gw_config_parse_hostport(ok[i].in, host, sizeof host, &port) != GW_OK)
            fail_msg("\"%s\" rejected", ok[i].in);
        assert_string_equal(host, ok[i].host);
        assert_int_equal(port, ok[i].port);
    }
    for (size_t i = 0; bad[i]; i++) {
        strcpy(host, "untouched");
        port = 7;
        if (gw_config_parse_hostport(bad[i], host, sizeof host, &port) != GW_ERR_CONFIG)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_string_equal(host, "untouched");
        assert_int_equal(port, 7);
    }
    assert_int_equal(gw_config_parse_hostport("localhost:1", host, 9, &port), GW_ERR_NOSPACE);
    assert_int_equal(gw_config_parse_hostport("localhost:1", host, 10, &port), GW_OK);
    assert_int_equal(gw_config_parse_hostport(NULL, host, sizeof host, &port), GW_ERR_INVAL);
    assert_int_equal(gw_config_parse_hostport("a:1", NULL, 0, &port), GW_ERR_INVAL);
}

static void test_route(void **state)
{
    char *p = (char *)"x", *u = (char *)"y";
    (void)state;
    assert_int_equal(gw_config_parse_route("sensors/=amqp://127.0.0.1:5672/a?b=c", &p, &u), GW_OK);
    assert_string_equal(p, "sensors/");
    assert_string_equal(u, "amqp://127.0.0.1:5672/a?b=c"); /* split at the first '=' only */
    free(p);
    free(u);
    static const char *const bad[] = {"", "=", "a=", "=b", "ab", "a b=c", "a=b c", "a=\tb", NULL};
    for (size_t i = 0; bad[i]; i++) {
        p = u = (char *)"junk";
        if (gw_config_parse_route(bad[i], &p, &u) != GW_ERR_CONFIG)
            fail_msg("route \"%s\" accepted", bad[i]);
        assert_null(p);
        assert_null(u);
    }
    assert_int_equal(gw_config_parse_route(NULL, &p, &u), GW_ERR_INVAL);
    assert_int_equal(gw_config_parse_route("a=b", NULL, &u), GW_ERR_INVAL);
    assert_string_equal(gw_config_source_name(GW_CFG_SRC_ENV), "env");
}

/* Every line of err: starts with "test: ", at most maxlen bytes; their count. */
static size_t check_lines(const char *err, size_t maxlen)
{
    size_t lines = 0;
    for (const char *l = err; *l;) {
        const char *nl = strchr(l, '\n');
        if (!nl)
            fail_msg("unterminated error line: %s", l);
        if (strncmp(l, "test: ", 6) != 0 || (size_t)(nl - l) > maxlen)
            fail_msg("bad error line (%zu bytes): %.200s", (size_t)(nl - l), l);
        lines++;
        l = nl + 1;
    }
    return lines;
}

/* Keys are input too: JSON keys and unknown flags are echoed escaped and
 * cut like values (tests/fuzz/repro/README.md, section 2). */
static void test_errors_keys_escaped(void **state)
{
    tmpfile_t f;
    char flag[80], exp[1024];
    (void)state;

    write_tmp(&f, "{\"a\\nb\": 1, \"q\\\"\\\\\\u007f\": 2}");
    snprintf(flag, sizeof flag, "--config=%s", f.path);
    snprintf(exp, sizeof exp,
             "test: a\\x0ab: unknown key (file %s)\n"
             "test: q\\\"\\\\\\x7f: unknown key (file %s)\n",
             f.path, f.path);
    expect_error(exp, flag, NULL);
    unlink(f.path);

    expect_error("test: --zz\\x0azzzzzzzz: unknown option (see --help) (flag)\n",
                 "--zz\nzzzzzzzz", NULL);
    expect_error("test: --zz\\x0d\\x1bzzzzzzz: unknown option (see --help) (flag)\n",
                 "--zz\r\033zzzzzzz=1", NULL);

    /* a 100 kB key: one line, the key cut at 80 bytes */
    size_t big = 100 * 1024;
    char *json = malloc(big + 16);
    assert_non_null(json);
    json[0] = '{';
    json[1] = '"';
    memset(json + 2, 'k', big);
    strcpy(json + 2 + big, "\": 1}");
    write_tmp(&f, json);
    free(json);
    snprintf(flag, sizeof flag, "--config=%s", f.path);
    tcfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    run_t r = load(&cfg, flag, NULL);
    assert_int_equal(r.r, GW_CONFIG_ERROR);
    assert_int_equal(check_lines(r.err, 200), 1);
    snprintf(exp, sizeof exp, "test: %.80s...: unknown key (file %s)\n",
             "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
             f.path);
    assert_string_equal(r.err, exp);
    run_free(&r);
    unlink(f.path);
}

/* The config seed corpus of the fuzzer (tests/fuzz/corpus/config/, with
 * its former reproducers): file contents, then NUL-separated arguments.
 * Loaded with our table: every error is one bounded line. */
static void test_fuzz_corpus(void **state)
{
    const char *src = getenv("GW_SOURCE_DIR");
    char dir[1024], path[1024 + 256 + 2];
    static char buf[8192];
    size_t files = 0, errors = 0;
    (void)state;
    if (!src)
        skip(); /* run by ctest, which sets it */
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/config", src);
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char *argv[10];
        int argc = 0;
        tmpfile_t f;
        char flag[80];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *in = fopen(path, "rb");
        assert_non_null(in);
        size_t n = fread(buf, 1, sizeof buf - 1, in);
        fclose(in);
        buf[n] = '\0';
        write_tmp(&f, buf); /* up to the first NUL */
        snprintf(flag, sizeof flag, "--config=%s", f.path);
        argv[argc++] = (char *)"test";
        argv[argc++] = flag;
        for (size_t off = strlen(buf) + 1; off < n && argc < 9; off += strlen(buf + off) + 1) {
            if (!strstr(buf + off, "config"))
                argv[argc++] = buf + off;
        }
        argv[argc] = NULL;
        char *err = NULL, *out = NULL;
        size_t elen = 0, olen = 0;
        FILE *ef = open_memstream(&err, &elen), *of = open_memstream(&out, &olen);
        assert_true(ef && of);
        tcfg_t cfg;
        memset(&cfg, 0, sizeof cfg);
        gw_config_result_t r = gw_config_load_io(&tspec, &cfg, argc, argv, of, ef);
        fclose(ef);
        fclose(of);
        size_t lines = check_lines(err, 400);
        if (r == GW_CONFIG_ERROR) {
            assert_true(lines >= 1);
            errors++;
        } else {
            assert_int_equal(lines, 0);
            if (r == GW_CONFIG_OK)
                gw_config_free(&tspec, &cfg);
        }
        if (strcmp(e->d_name, "config_unknown_key_newline.json") == 0 &&
            !strstr(err, "test: a\\x0ab: unknown key"))
            fail_msg("%s: %s", e->d_name, err);
        if (strcmp(e->d_name, "config_flag_newline.bin") == 0 &&
            !strstr(err, "test: --tag}\\x0a: unknown option"))
            fail_msg("%s: %s", e->d_name, err);
        free(err);
        free(out);
        unlink(f.path);
        files++;
    }
    closedir(d);
    assert_true(files >= 9 && errors >= 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_precedence_every_type, clear_env),
        cmocka_unit_test_setup(test_precedence_partial, clear_env),
        cmocka_unit_test_setup(test_lists_replaced, clear_env),
        cmocka_unit_test_setup(test_bool_values, clear_env),
        cmocka_unit_test_setup(test_durations, clear_env),
        cmocka_unit_test_setup(test_sizes, clear_env),
        cmocka_unit_test_setup(test_ints, clear_env),
        cmocka_unit_test_setup(test_bounds_inclusive, clear_env),
        cmocka_unit_test_setup(test_enum, clear_env),
        cmocka_unit_test_setup(test_errors_env, clear_env),
        cmocka_unit_test_setup(test_errors_file, clear_env),
        cmocka_unit_test_setup(test_errors_flags, clear_env),
        cmocka_unit_test_setup(test_flag_value_forms, clear_env),
        cmocka_unit_test_setup(test_errors_bounded, clear_env),
        cmocka_unit_test_setup(test_no_env_prefix, clear_env),
        cmocka_unit_test_setup(test_bad_defaults, clear_env),
        cmocka_unit_test_setup(test_required, clear_env),
        cmocka_unit_test_setup(test_help, clear_env),
        cmocka_unit_test_setup(test_markdown, clear_env),
        cmocka_unit_test_setup(test_hostport, clear_env),
        cmocka_unit_test_setup(test_route, clear_env),
        cmocka_unit_test_setup(test_errors_keys_escaped, clear_env),
        cmocka_unit_test_setup(test_fuzz_corpus, clear_env),
    };
    return cmocka_run_group_tests(tests, clear_env, NULL);
}
