/*
 * test_auth_acl.c - ACL file: table-driven allow/deny for users, tenants,
 * anonymous clients, pattern rules with %u/%c/%t, substitutions holding
 * '/', '+' or '#', deny precedence, default deny, the '$' rule, SUBSCRIBE
 * filter coverage; the two filter relations checked exactly against brute
 * force over a topic universe; malformed files with line numbers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gw/auth.h"
#include "gw/mqtt.h"

static const char acl_text[] =
    "# test ACL\n"
    "anonymous\n"
    "topic read public/#\n"
    "\n"
    "user alice\n"
    "  topic readwrite alice/#\n"
    "\ttopic read shared/+/status\n"
    "topic deny alice/secret/#\n"
    "topic write   spaced topic/x   \n"
    "topic read devices/#\n"
    "topic %u/literal\n" /* '%' is literal outside pattern/tenant sections */
    "\n"
    "user bob@acme\n"
    "topic read acme/bob/#\n"
    "\n"
    "tenant acme\n"
    "topic readwrite %t/common/#\n"
    "topic read %t/devices/%c/#\n"
    "\n"
    "user carol\n"
    "topic read #\n"
    "topic deny secret/#\n"
    "\n"
    "pattern\n"
    "topic write devices/%u/%c/up\n"
    "topic read devices/%c/down\n"
    "topic deny devices/%c/blocked\n"
    "pattern read $SYS/broker/clients/%u\n"
    "topic read everyone/%c-100%/x\n" /* still in the pattern section */
    "user dave\n"
    "topic write dave/out\n";

#define R GW_ACL_READ
#define W GW_ACL_WRITE

struct acl_case {
    const char *user, *tenant, *client;
    const char *topic;
    unsigned access;
    bool filter;
    bool want;
};

static const struct acl_case cases[] = {
    /* anonymous */
    {NULL, NULL, "c1", "public/a", R, false, true},
    {NULL, NULL, "c1", "public/#", R, true, true},
    {NULL, NULL, "c1", "public", R, false, true}, /* "public/#" covers its parent */
    {NULL, NULL, "c1", "public/a", W, false, false},
    {NULL, NULL, "c1", "other", R, false, false},
    {NULL, NULL, "c1", "#", R, true, false},
    {NULL, NULL, "c1", "devices/c1/down", R, false, true},  /* pattern %c */
    {NULL, NULL, "c1", "devices/c2/down", R, false, false},
    {NULL, NULL, "c1", "devices//c1/up", W, false, false},  /* %u absent: rule skipped */
    {NULL, NULL, NULL, "devices/c1/down", R, false, false}, /* no client id */
    {NULL, NULL, "", "devices//down", R, false, false},     /* empty client id = none */
    /* alice: own rules */
    {"alice", NULL, "dev1", "alice/x", W, false, true},
    {"alice", NULL, "dev1", "alice/x", R, false, true},
    {"alice", NULL, "dev1", "alice", R, false, true},
    {"alice", NULL, "dev1", "alice/secret", R, false, false},     /* deny wins */
    {"alice", NULL, "dev1", "alice/secret/x/y", W, false, false},
    {"alice", NULL, "dev1", "alice/public/+", R, true, true},
    {"alice", NULL, "dev1", "alice/#", R, true, false},          /* could deliver alice/secret */
    {"alice", NULL, "dev1", "alice/+", R, true, false},          /* matches alice/secret */
    {"alice", NULL, "dev1", "alice/+/x", R, true, false},        /* matches alice/secret/x */
    {"alice", NULL, "dev1", "alice/x/+", R, true, true},
    {"alice", NULL, "dev1", "shared/x/status", R, false, true},
    {"alice", NULL, "dev1", "shared/+/status", R, true, true},
    {"alice", NULL, "dev1", "shared/#", R, true, false},          /* not covered */
    {"alice", NULL, "dev1", "shared/x/status/y", R, false, false},
    {"alice", NULL, "dev1", "shared/x/status", W, false, false},
    {"alice", NULL, "dev1", "spaced topic/x", W, false, true},
    {"alice", NULL, "dev1", "spaced topic/x", R, false, false},
    {"alice", NULL, "dev1", "%u/literal", R, false, true},
    {"alice", NULL, "dev1", "alice/literal", W, false, true},     /* via alice/# only */
    {"bob", NULL, "dev1", "%u/literal", R, false, false},
    /* alice through patterns */
    {"alice", NULL, "dev1", "devices/alice/dev1/up", W, false, true},
    {"alice", NULL, "dev1", "devices/alice/dev2/up", W, false, false},
    {"alice", NULL, "dev1", "devices/bob/dev1/up", W, false, false},
    {"alice", NULL, "dev1", "devices/dev1/down", R, false, true},
    {"alice", NULL, "dev1", "devices/dev1/blocked", R, false, false}, /* pattern deny beats user allow */
    {"alice", NULL, "dev2", "devices/dev1/blocked", R, false, true},
    {"alice", NULL, "dev1", "devices/+/blocked", R, true, false},
    {"alice", NULL, "dev1", "devices/#", R, true, false},
    {"alice", NULL, "dev1", "$SYS/broker/clients/alice", R, false, true},
    {"alice", NULL, "dev1", "$SYS/broker/clients/bob", R, false, false},
    {"alice", NULL, "dev1", "everyone/dev1-100%/x", R, false, true},
    /* tenants */
    {"bob@acme", "acme", "d7", "acme/bob/x", R, false, true},
    {"bob@acme", "acme", "d7", "acme/common/x", W, false, true},
    {"bob@acme", "acme", "d7", "acme/common/#", R, true, true},
    {"bob@acme", "acme", "d7", "acme/devices/d7/t", R, false, true},
    {"bob@acme", "acme", "d7", "acme/devices/d8/t", R, false, false},
    {"bob@acme", "acme", "d7", "acme/devices/+/t", R, true, false},
    {"bob@acme", NULL, "d7", "acme/common/x", W, false, false},  /* no tenant given */
    {"eve@acme", "acme", "e1", "acme/common/x", R, false, true},  /* tenant section, no user section */
    {"eve@zeta", "zeta", "e1", "zeta/common/x", R, false, false}, /* no section for zeta */
    {"eve@zeta", "zeta", "e1", "acme/common/x", R, false, false},
    /* carol: '#' and a deny */
    {"carol", NULL, "c", "anything/at/all", R, false, true},
    {"carol", NULL, "c", "a/#", R, true, true},
    {"carol", NULL, "c", "#", R, true, false},        /* intersects secret/# */
    {"carol", NULL, "c", "+/x", R, true, false},      /* matches secret/x */
    {"carol", NULL, "c", "+/x/y/z", R, true, false},
    {"carol", NULL, "c", "a/+/x", R, true, true},
    {"carol", NULL, "c", "secret", R, false, false},  /* parent level of secret/# */
    {"carol", NULL, "c", "$SYS/x", R, false, false},  /* MQTT-4.7.2-1 */
    {"carol", NULL, "c", "$SYS/#", R, true, false},
    {"carol", NULL, "c", "anything", W, false, false},
    /* default deny */
    {"zed", NULL, "z", "zed/x", R, false, false},
    {"zed", NULL, "z", "public/a", R, false, false},  /* anonymous rules are not for users */
    {"dave", NULL, "d", "dave/out", W, false, true},
    /* dangerous substitutions never widen an allow rule ... */
    {NULL, NULL, "x/y", "devices/x/y/down", R, false, false},
    {NULL, NULL, "+", "devices/+/down", R, true, false},
    {NULL, NULL, "#", "devices/#/down", R, false, false},
    {"a/b", NULL, "c1", "devices/a/b/c1/up", W, false, false},
    {"bob@acme", "ac/me", "d7", "ac/me/common/x", W, false, false},
    {"bob@acme", "+", "d7", "+/common/x", W, false, false},
    /* ... and a deny rule needing one fails closed */
    {"alice", NULL, "x/y", "alice/x", W, false, false},
    {"alice", NULL, "#", "alice/x", W, false, false},
    /* a topic name with wildcards is refused whatever the rules */
    {"carol", NULL, "c", "a/+", R, false, false},
    /* bad access values */
    {"carol", NULL, "c", "a", 0, false, false},
    {"carol", NULL, "c", "a", R | W, false, false},
};

static gw_auth_acl_t *load(const char *text)
{
    gw_auth_acl_t *acl = NULL;
    char errbuf[GW_AUTH_ERRBUF] = "";
    if (gw_auth_acl_parse(text, strlen(text), "acl", &acl, errbuf) != GW_OK)
        fail_msg("acl parse: %s", errbuf);
    return acl;
}

static gw_auth_subject_t subj(const char *user, const char *tenant, const char *client)
{
    gw_auth_subject_t s = {user, user ? strlen(user) : 0, tenant, tenant ? strlen(tenant) : 0,
                           client, client ? strlen(client) : 0};
    return s;
}

static void test_table(void **state)
{
    gw_auth_acl_t *acl = load(acl_text);
    int failures = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct acl_case *c = &cases[i];
        gw_auth_subject_t s = subj(c->user, c->tenant, c->client);
        bool got = gw_auth_acl_check(acl, &s, c->topic, strlen(c->topic), c->access, c->filter);
        if (got != c->want) {
            print_error("case %zu: user=%s tenant=%s client=%s %s %s '%s': got %s\n", i,
                        c->user ? c->user : "(anon)", c->tenant ? c->tenant : "-",
                        c->client ? c->client : "-", c->access == R ? "read" : "write",
                        c->filter ? "filter" : "topic", c->topic, got ? "allow" : "deny");
            failures++;
        }
    }
    gw_auth_acl_free(acl);
    assert_int_equal(failures, 0);
}

static void test_no_acl_allows(void **state)
{
    gw_auth_subject_t s = subj(NULL, NULL, NULL);
    assert_true(gw_auth_acl_check(NULL, &s, "x", 1, R, false));
    /* an empty ACL file denies everything */
    gw_auth_acl_t *acl = load("# nothing\n");
    assert_false(gw_auth_acl_check(acl, &s, "x", 1, R, false));
    gw_auth_acl_free(acl);
}

static void test_repeated_sections_merge(void **state)
{
    /* anonymous and pattern may appear several times; rules add up. */
    gw_auth_acl_t *acl = load("anonymous\ntopic read a\nuser u\ntopic read u1\n"
                              "anonymous\ntopic read b\npattern write p/%c\n"
                              "pattern\ntopic write q/%c\n");
    gw_auth_subject_t a = subj(NULL, NULL, "k"), u = subj("u", NULL, "k");
    assert_true(gw_auth_acl_check(acl, &a, "a", 1, R, false));
    assert_true(gw_auth_acl_check(acl, &a, "b", 1, R, false));
    assert_true(gw_auth_acl_check(acl, &a, "p/k", 3, W, false));
    assert_true(gw_auth_acl_check(acl, &u, "q/k", 3, W, false));
    assert_true(gw_auth_acl_check(acl, &u, "u1", 2, R, false));
    assert_false(gw_auth_acl_check(acl, &u, "a", 1, R, false));
    gw_auth_acl_free(acl);
}

struct rel_case {
    const char *outer, *inner;
    bool covers, intersects;
};

static void test_relations_table(void **state)
{
    static const struct rel_case rc[] = {
        {"a/#", "a/+/c", true, true},    {"a/+/c", "a/+/c", true, true},
        {"a/b/c", "a/+/c", false, true}, {"#", "a", true, true},
        {"#", "$SYS/a", false, false},   {"+/#", "$SYS/a", false, false},
        {"$SYS/#", "$SYS/a", true, true}, {"a/#", "a", true, true},
        {"a/+", "a", false, false},      {"a/+", "a/#", false, true},
        {"a/#", "a/#", true, true},      {"a/+/#", "a/b/c/d", true, true},
        {"+", "a", true, true},          {"+", "a/b", false, false},
        {"+", "#", false, true},         {"#", "#", true, true},
        {"#", "+", true, true},          {"a/+/b", "a//b", true, true},
        {"a/b", "a/b/c", false, false},  {"+/+", "a/#", false, true},
        {"a/+/c", "a/b/+", false, true}, {"a/+", "b/+", false, false},
        {"$SYS/+", "$SYS/#", false, true}, {"#", "$SYS/#", false, false},
        {"+/a", "$SYS/a", false, false}, {"/", "+/+", false, true},
        {"+/+", "/", true, true},        {"a", "a/", false, false},
        {"+/#", "#", true, true},        {"/+/#", "/#", true, true},
        {"a/+/#", "a/#", false, true},   {"+", "/#", false, false},
    };
    for (size_t i = 0; i < sizeof(rc) / sizeof(rc[0]); i++) {
        const struct rel_case *c = &rc[i];
        bool cov = gw_auth_filter_covers(c->outer, strlen(c->outer), c->inner, strlen(c->inner));
        bool a = gw_auth_filter_intersects(c->outer, strlen(c->outer), c->inner,
                                           strlen(c->inner));
        bool b = gw_auth_filter_intersects(c->inner, strlen(c->inner), c->outer,
                                           strlen(c->outer));
        if (cov != c->covers || a != c->intersects || b != c->intersects)
            fail_msg("case %zu '%s' vs '%s': covers %d intersects %d/%d", i, c->outer, c->inner,
                     cov, a, b);
    }
}

/* Brute force: every filter of up to 3 levels over {a, b, $s, "", +, #}
 * against every topic of up to 4 levels over {a, b, $s, ""}. */
static char **gen(const char *const *alpha, size_t na, int maxdepth, bool filters, size_t *count)
{
    size_t cap = 1, n = 0;
    for (int d = 0; d < maxdepth; d++)
        cap *= na + 1;
    char **out = calloc(cap, sizeof(char *));
    for (int depth = 1; depth <= maxdepth; depth++) {
        size_t combos = 1;
        for (int d = 0; d < depth; d++)
            combos *= na;
        for (size_t k = 0; k < combos; k++) {
            char buf[64] = "";
            size_t x = k;
            for (int d = 0; d < depth; d++) {
                if (d)
                    strcat(buf, "/");
                strcat(buf, alpha[x % na]);
                x /= na;
            }
            size_t len = strlen(buf);
            if (len == 0)
                continue;
            gw_err_t e = filters ? gw_topic_filter_validate(NULL, buf, len)
                                 : gw_topic_name_validate(NULL, buf, len);
            if (e == GW_OK)
                out[n++] = strdup(buf);
        }
    }
    *count = n;
    return out;
}

static void test_relations_brute_force(void **state)
{
    static const char *const falpha[] = {"a", "b", "$s", "", "+", "#"};
    static const char *const talpha[] = {"a", "b", "$s", ""};
    size_t nf, nt;
    char **f = gen(falpha, 6, 3, true, &nf);
    char **t = gen(talpha, 4, 4, false, &nt);
    size_t checked = 0;
    uint8_t *m = calloc(nf * nt, 1);

    assert_true(nf > 100 && nt > 300);
    for (size_t i = 0; i < nf; i++)
        for (size_t j = 0; j < nt; j++) {
            m[i * nt + j] = gw_topic_matches(f[i], strlen(f[i]), t[j], strlen(t[j]));
            /* On a topic name both relations are plain matching. */
            if (gw_auth_filter_covers(f[i], strlen(f[i]), t[j], strlen(t[j])) != m[i * nt + j] ||
                gw_auth_filter_intersects(f[i], strlen(f[i]), t[j], strlen(t[j])) !=
                    m[i * nt + j])
                fail_msg("'%s' vs topic '%s'", f[i], t[j]);
        }
    for (size_t i = 0; i < nf; i++)
        for (size_t k = 0; k < nf; k++) {
            bool inter = false, covered = true;
            for (size_t j = 0; j < nt; j++) {
                inter |= m[i * nt + j] && m[k * nt + j];
                if (m[k * nt + j] && !m[i * nt + j])
                    covered = false;
            }
            bool gi = gw_auth_filter_intersects(f[i], strlen(f[i]), f[k], strlen(f[k]));
            bool gc = gw_auth_filter_covers(f[i], strlen(f[i]), f[k], strlen(f[k]));
            if (gi != inter)
                fail_msg("intersects('%s', '%s') = %d, brute force %d", f[i], f[k], gi, inter);
            if (gc && !covered) /* soundness: never allow what is not covered */
                fail_msg("covers('%s', '%s') but a topic escapes", f[i], f[k]);
            if (gc != covered)
                fail_msg("covers('%s', '%s') = %d, brute force %d", f[i], f[k], gc, covered);
            checked++;
        }
    print_message("filters %zu topics %zu pairs %zu\n", nf, nt, checked);
    for (size_t i = 0; i < nf; i++)
        free(f[i]);
    for (size_t j = 0; j < nt; j++)
        free(t[j]);
    free(f);
    free(t);
    free(m);
}

struct bad_acl {
    const char *text;
    size_t line;
    const char *needle;
};

static void test_malformed(void **state)
{
    static char long_line[5000];
    memset(long_line, 'a', sizeof(long_line) - 1);
    memcpy(long_line, "user x\ntopic ", 13);
    static const struct bad_acl bad[] = {
        {"# c\ntopic read a\n", 2, "outside a section"},
        {"user\n", 1, "missing user name"},
        {"user   \n", 1, "missing user name"},
        {"tenant\n", 1, "missing tenant name"},
        {"user alice\ntopic bogus a/b\n", 2, "unknown access"},
        {"user alice\ntopic read a/#/b\n", 2, "invalid topic filter"},
        {"user alice\ntopic read a+/b\n", 2, "invalid topic filter"},
        {"user alice\ntopic\n", 2, "missing topic filter"},
        {"user alice\n\nfrobnicate x\n", 3, "unknown keyword"},
        {"anonymous foo\n", 1, "takes no argument"},
        {"user a\ntopic a\nuser b\nuser a\n", 4, "duplicate user section (first on line 1)"},
        {"tenant t\ntenant t\n", 2, "duplicate tenant section (first on line 1)"},
        {"user a\ntopic read a\x01\n", 2, "control character"},
        {"user a\ntopic read \xc3\n", 2, "UTF-8"},
        {"pattern readx a/b\n", 1, "unknown access"},
        {long_line, 2, "longer than 4096"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gw_auth_acl_t *acl = (gw_auth_acl_t *)1;
        char errbuf[GW_AUTH_ERRBUF] = "", want[32];
        gw_err_t err = gw_auth_acl_parse(bad[i].text, strlen(bad[i].text), "acl", &acl, errbuf);
        if (err != GW_ERR_CONFIG || acl != NULL)
            fail_msg("case %zu: err %d", i, err);
        snprintf(want, sizeof(want), "acl:%zu: ", bad[i].line);
        if (strncmp(errbuf, want, strlen(want)) != 0 || !strstr(errbuf, bad[i].needle))
            fail_msg("case %zu: got \"%s\", want \"%s...%s\"", i, errbuf, want, bad[i].needle);
    }
    /* single-token rule: the token is the filter, access readwrite */
    gw_auth_acl_t *acl = load("user a\ntopic read\n");
    gw_auth_subject_t s = subj("a", NULL, NULL);
    assert_true(gw_auth_acl_check(acl, &s, "read", 4, W, false));
    gw_auth_acl_free(acl);
}

static void test_load_file(void **state)
{
    char path[] = "/tmp/gw_auth_aclXXXXXX";
    char errbuf[GW_AUTH_ERRBUF];
    gw_auth_acl_t *acl = NULL;
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, acl_text, strlen(acl_text)), (ssize_t)strlen(acl_text));
    close(fd);
    assert_int_equal(gw_auth_acl_load(path, &acl, errbuf), GW_OK);
    gw_auth_subject_t s = subj("alice", NULL, "dev1");
    assert_true(gw_auth_acl_check(acl, &s, "alice/x", 7, W, false));
    gw_auth_acl_free(acl);
    unlink(path);
    assert_int_equal(gw_auth_acl_load(path, &acl, errbuf), GW_ERR_IO);
    assert_null(acl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_no_acl_allows),
        cmocka_unit_test(test_repeated_sections_merge),
        cmocka_unit_test(test_relations_table),
        cmocka_unit_test(test_relations_brute_force),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
