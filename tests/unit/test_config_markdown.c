/*
 * test_config_markdown.c - GW_CONFIG_MARKDOWN=1 makes gw_config_load print
 * the option table as Markdown and return GW_CONFIG_EXIT (the hook used by
 * tools/gen_config_docs.sh to build docs/configuration.md).
 *
 * Output is captured with open_memstream (gw_config_load_io) and, for the
 * plain gw_config_load, by pointing file descriptor 1 at a temporary file.
 * The expected Markdown of a small table is spelled out in full, so a
 * change of the format shows up here and in tests/system/test_docs.py.
 */
#include <fcntl.h>
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

typedef struct mcfg {
    bool verbose;
    int64_t port;
    int64_t timeout;
    int64_t max_size;
    char *name;
    int level;
    gw_config_list_t routes;
} mcfg_t;

static const char *const levels[] = {"error", "info", NULL};

static const gw_config_opt_t mopts[] = {
    GW_CONFIG_BOOL(mcfg_t, verbose, "verbose", "false", "Log more"),
    GW_CONFIG_INT(mcfg_t, port, "port", 1, 65535, "5672", "TCP port"),
    GW_CONFIG_DURATION(mcfg_t, timeout, "timeout", 10, 3600000, "5s", "Idle timeout"),
    GW_CONFIG_SIZE(mcfg_t, max_size, "max-size", 16, 16 << 20, "64k", "Largest packet"),
    GW_CONFIG_STRING(mcfg_t, name, "name", 8, "", "Container id"),
    GW_CONFIG_ENUM(mcfg_t, level, "log-level", levels, "info", "Log level"),
    GW_CONFIG_LIST(mcfg_t, routes, "route", 3, NULL, "PREFIX=URL; a | pipe"),
};

static const gw_config_spec_t mspec = {"mdtest", "A test program", "MDT_", mopts,
                                       GW_CONFIG_NOPTS(mopts)};
static const gw_config_spec_t mspec_noenv = {"mdtest", NULL, NULL, mopts, 2};

static const char expected_md[] =
    "### mdtest\n"
    "\n"
    "A test program\n"
    "\n"
    "Precedence: default < config file < environment < flag.\n"
    "\n"
    "| Option | Type | Default | Bounds | Environment | Description |\n"
    "| --- | --- | --- | --- | --- | --- |\n"
    "| `--config` | path | | | `MDT_CONFIG` | JSON file of option values; keys are option "
    "names. |\n"
    "| `--[no-]verbose` | bool | `false` |  | `MDT_VERBOSE` | Log more |\n"
    "| `--port` | int | `5672` | 1 .. 65535 | `MDT_PORT` | TCP port |\n"
    "| `--timeout` | duration | `5s` | 10ms .. 1h | `MDT_TIMEOUT` | Idle timeout |\n"
    "| `--max-size` | size | `64k` | 16 .. 16M | `MDT_MAX_SIZE` | Largest packet |\n"
    "| `--name` | string | \"\" | at most 8 bytes | `MDT_NAME` | Container id |\n"
    "| `--log-level` | enum | `info` | one of error, info | `MDT_LOG_LEVEL` | Log level |\n"
    "| `--route` | list |  | repeatable, at most 3 items | `MDT_ROUTE` | PREFIX=URL; a \\| "
    "pipe |\n";

static const char expected_md_noenv[] =
    "### mdtest\n"
    "\n"
    "Precedence: default < config file < environment < flag.\n"
    "\n"
    "| Option | Type | Default | Bounds | Environment | Description |\n"
    "| --- | --- | --- | --- | --- | --- |\n"
    "| `--config` | path | | | `-` | JSON file of option values; keys are option names. |\n"
    "| `--[no-]verbose` | bool | `false` |  | - | Log more |\n"
    "| `--port` | int | `5672` | 1 .. 65535 | - | TCP port |\n";

typedef struct run {
    gw_config_result_t r;
    char *out;
    char *err;
} run_t;

/* gw_config_load_io(spec, cfg, {"mdtest", args..., NULL}) with out and err
 * captured. */
static run_t load(const gw_config_spec_t *spec, void *cfg, ...)
{
    char *argv[16] = {"mdtest"};
    int argc = 1;
    va_list ap;
    size_t olen = 0, elen = 0;
    run_t r = {0};
    FILE *out = open_memstream(&r.out, &olen);
    FILE *err = open_memstream(&r.err, &elen);

    if (!out || !err)
        fail_msg("open_memstream failed");
    va_start(ap, cfg);
    for (char *a = va_arg(ap, char *); a && argc < 15; a = va_arg(ap, char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    r.r = gw_config_load_io(spec, cfg, argc, argv, out, err);
    fclose(out);
    fclose(err);
    return r;
}

static void run_free(run_t *r)
{
    free(r->out);
    free(r->err);
}

static int clear_env(void **state)
{
    (void)state;
    unsetenv("GW_CONFIG_MARKDOWN");
    unsetenv("MDT_PORT");
    unsetenv("MDT_CONFIG");
    return 0;
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* The table in full, and the struct is left alone. */
static void test_markdown_env_prints_table(void **state)
{
    mcfg_t cfg;
    run_t r;

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    setenv("GW_CONFIG_MARKDOWN", "1", 1);
    r = load(&mspec, &cfg, NULL);
    assert_int_equal(r.r, GW_CONFIG_EXIT);
    assert_string_equal(r.out, expected_md);
    assert_string_equal(r.err, "");
    assert_true(all_zero(&cfg, sizeof cfg));
    run_free(&r);
}

/* It is exactly what gw_config_print_markdown writes. */
static void test_markdown_env_same_as_print(void **state)
{
    mcfg_t cfg;
    run_t r;
    char *direct = NULL;
    size_t dlen = 0;
    FILE *f = open_memstream(&direct, &dlen);

    (void)state;
    assert_non_null(f);
    gw_config_print_markdown(&mspec, f);
    fclose(f);
    memset(&cfg, 0, sizeof cfg);
    setenv("GW_CONFIG_MARKDOWN", "1", 1);
    r = load(&mspec, &cfg, NULL);
    assert_string_equal(r.out, direct);
    free(direct);
    run_free(&r);
}

/* No environment prefix: no variables to name. */
static void test_markdown_env_no_prefix(void **state)
{
    mcfg_t cfg;
    run_t r;

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    setenv("GW_CONFIG_MARKDOWN", "1", 1);
    r = load(&mspec_noenv, &cfg, NULL);
    assert_int_equal(r.r, GW_CONFIG_EXIT);
    assert_string_equal(r.out, expected_md_noenv);
    run_free(&r);
}

/* It wins over --help, --version, bad flags, bad environment values and a
 * missing config file: none of them is even looked at. */
static void test_markdown_env_ignores_sources(void **state)
{
    mcfg_t cfg;
    run_t r;

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    setenv("GW_CONFIG_MARKDOWN", "1", 1);
    setenv("MDT_PORT", "0", 1);
    setenv("MDT_CONFIG", "/nonexistent/mdtest.json", 1);
    r = load(&mspec, &cfg, "--help", NULL);
    assert_int_equal(r.r, GW_CONFIG_EXIT);
    assert_string_equal(r.out, expected_md);
    run_free(&r);
    r = load(&mspec, &cfg, "--version", NULL);
    assert_int_equal(r.r, GW_CONFIG_EXIT);
    assert_string_equal(r.out, expected_md);
    run_free(&r);
    r = load(&mspec, &cfg, "--bogus", "positional", "--port=99999", NULL);
    assert_int_equal(r.r, GW_CONFIG_EXIT);
    assert_string_equal(r.out, expected_md);
    assert_string_equal(r.err, "");
    assert_true(all_zero(&cfg, sizeof cfg));
    run_free(&r);
}

/* Any value other than "1" is a normal load. */
static void test_markdown_env_other_values(void **state)
{
    static const char *const values[] = {"0", "", "yes", "true", "11", " 1", NULL};
    (void)state;
    for (size_t i = 0; values[i]; i++) {
        mcfg_t cfg;
        run_t r;
        memset(&cfg, 0, sizeof cfg);
        setenv("GW_CONFIG_MARKDOWN", values[i], 1);
        r = load(&mspec, &cfg, "--port=1883", NULL);
        if (r.r != GW_CONFIG_OK)
            fail_msg("GW_CONFIG_MARKDOWN=\"%s\": result %d, err %s", values[i], (int)r.r,
                     r.err);
        assert_string_equal(r.out, "");
        assert_int_equal(cfg.port, 1883);
        assert_int_equal(cfg.timeout, 5000);
        gw_config_free(&mspec, &cfg);
        run_free(&r);
    }
}

/* A broken table is reported, not documented. */
static void test_markdown_env_bad_table(void **state)
{
    static const gw_config_opt_t dup[] = {
        GW_CONFIG_INT(mcfg_t, port, "port", 1, 65535, "5672", "TCP port"),
        GW_CONFIG_INT(mcfg_t, port, "port", 1, 65535, "5672", "TCP port again"),
    };
    static const gw_config_spec_t dspec = {"mdtest", NULL, "MDT_", dup, GW_CONFIG_NOPTS(dup)};
    mcfg_t cfg;
    run_t r;

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    setenv("GW_CONFIG_MARKDOWN", "1", 1);
    r = load(&dspec, &cfg, NULL);
    assert_int_equal(r.r, GW_CONFIG_ERROR);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "duplicate option name"));
    run_free(&r);
}

/* gw_config_load (no out stream) writes to stdout: capture fd 1. */
static void test_markdown_env_plain_load_stdout(void **state)
{
    char path[] = "/tmp/test_config_markdown.XXXXXX";
    int fd = mkstemp(path);
    int saved;
    mcfg_t cfg;
    gw_config_result_t r;
    char buf[4096];
    ssize_t n;
    char *argv[] = {"mdtest", NULL};

    (void)state;
    assert_true(fd >= 0);
    unlink(path);
    memset(&cfg, 0, sizeof cfg);
    setenv("GW_CONFIG_MARKDOWN", "1", 1);
    fflush(stdout);
    saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDOUT_FILENO) >= 0);
    r = gw_config_load(&mspec, &cfg, 1, argv, NULL);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    assert_int_equal(r, GW_CONFIG_EXIT);
    n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, expected_md);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_markdown_env_prints_table, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_markdown_env_same_as_print, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_markdown_env_no_prefix, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_markdown_env_ignores_sources, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_markdown_env_other_values, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_markdown_env_bad_table, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_markdown_env_plain_load_stdout, clear_env,
                                        clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
