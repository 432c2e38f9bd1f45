/*
 * test_auth_passwd.c - password file: known PBKDF2-HMAC-SHA512 vectors,
 * verification outcomes, malformed files (line numbers), bounds, hashing
 * round trip, the verification cache (hit, miss, expiry, eviction,
 * invalidation by a changed password).
 *
 * Vectors computed at test-writing time with Python's
 * hashlib.pbkdf2_hmac('sha512', pw, b'0123456789abcdef', iters, 64).
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

#define SALT16 "MDEyMzQ1Njc4OWFiY2RlZg=="
#define H_PASSWORD "pbkdf2-sha512$1000$" SALT16 "$38DzhdBT7fPaUGBlsh42VTuuKSFAIYGZJ7l6feCDLIl+K3hdPFgxxu7xuUi4gIuH6cEIoODn18xH9Ig2ryNgUw=="
#define H_HORSE "pbkdf2-sha512$2000$" SALT16 "$3mgstO7RrruaZAKnWUST+xlE1TX2ZzOyL0fYHKSaNEnIm+kZxefd8R2nHbloFcVLkcRoHBxXxAsemUvDdu846Q=="
/* password bytes "\xc3\xa9t\xc3\xa9\x00bin": UTF-8 and an embedded NUL */
#define H_BINARY "pbkdf2-sha512$1000$" SALT16 "$8z/pN2IR0+NVgcwtESTY0EA3CFAEY9BGDllppGnir1EV3wEr+fWuphClODjbE4qD/0Bmy09yOmT4zhCGVx+6lw=="

static const char good_file[] = "# comment\n"
                                "\n"
                                "alice:" H_PASSWORD "\n"
                                "bob@acme:" H_HORSE "\r\n"
                                "carol:" H_BINARY; /* no final newline */

static gw_auth_passwd_t *parse_ok(const char *text)
{
    gw_auth_passwd_t *db = NULL;
    char errbuf[GW_AUTH_ERRBUF] = "";
    gw_err_t err = gw_auth_passwd_parse(text, strlen(text), "t", &db, errbuf);
    if (err != GW_OK)
        fail_msg("parse failed: %s", errbuf);
    assert_non_null(db);
    return db;
}

static void test_known_vectors(void **state)
{
    gw_auth_passwd_t *db = parse_ok(good_file);
    static const char bin[] = "\xc3\xa9t\xc3\xa9\x00" "bin";

    assert_int_equal(gw_auth_passwd_count(db), 3);
    assert_int_equal(gw_auth_passwd_check(db, "alice", 5, "password", 8), GW_AUTH_OK);
    assert_int_equal(gw_auth_passwd_check(db, "bob@acme", 8, "correct horse battery staple", 28),
                     GW_AUTH_OK);
    assert_int_equal(gw_auth_passwd_check(db, "carol", 5, bin, sizeof(bin) - 1), GW_AUTH_OK);
    /* the NUL is part of the password, not its end */
    assert_int_equal(gw_auth_passwd_check(db, "carol", 5, bin, 5), GW_AUTH_BAD_PASSWORD);
    gw_auth_passwd_free(db);
}

static void test_wrong_and_unknown(void **state)
{
    gw_auth_passwd_t *db = parse_ok(good_file);

    assert_int_equal(gw_auth_passwd_check(db, "alice", 5, "Password", 8), GW_AUTH_BAD_PASSWORD);
    assert_int_equal(gw_auth_passwd_check(db, "alice", 5, "password1", 9), GW_AUTH_BAD_PASSWORD);
    assert_int_equal(gw_auth_passwd_check(db, "alice", 5, "", 0), GW_AUTH_BAD_PASSWORD);
    assert_int_equal(gw_auth_passwd_check(db, "alic", 4, "password", 8), GW_AUTH_UNKNOWN_USER);
    assert_int_equal(gw_auth_passwd_check(db, "alice2", 6, "password", 8), GW_AUTH_UNKNOWN_USER);
    assert_int_equal(gw_auth_passwd_check(db, "bob", 3, "correct horse battery staple", 28),
                     GW_AUTH_UNKNOWN_USER);
    /* user name compared with its length, not up to a NUL */
    assert_int_equal(gw_auth_passwd_check(db, "alice\0x", 7, "password", 8),
                     GW_AUTH_UNKNOWN_USER);
    assert_string_equal(gw_auth_result_name(GW_AUTH_BAD_PASSWORD), "bad-password");
    gw_auth_passwd_free(db);
}

static void test_hash_roundtrip(void **state)
{
    char out[GW_AUTH_HASH_STR_MAX], out2[GW_AUTH_HASH_STR_MAX], line[400];
    static const uint8_t salt[16] = "0123456789abcdef";

    assert_int_equal(gw_auth_passwd_hash_salt("password", 8, 1000, salt, out, sizeof(out)),
                     GW_OK);
    assert_string_equal(out, H_PASSWORD);
    assert_int_equal(gw_auth_passwd_hash_salt("password", 8, 1000, salt, out, 100),
                     GW_ERR_NOSPACE);
    assert_int_equal(gw_auth_passwd_hash("s3cret", 6, 999, out, sizeof(out)), GW_ERR_INVAL);
    assert_int_equal(gw_auth_passwd_hash("s3cret", 6, 1500, out, sizeof(out)), GW_OK);
    assert_int_equal(gw_auth_passwd_hash("s3cret", 6, 1500, out2, sizeof(out2)), GW_OK);
    assert_string_not_equal(out, out2); /* fresh random salt each time */
    assert_true(strncmp(out, "pbkdf2-sha512$1500$", 19) == 0);

    snprintf(line, sizeof(line), "dave:%s\n", out);
    gw_auth_passwd_t *db = parse_ok(line);
    assert_int_equal(gw_auth_passwd_check(db, "dave", 4, "s3cret", 6), GW_AUTH_OK);
    assert_int_equal(gw_auth_passwd_check(db, "dave", 4, "s3cre", 5), GW_AUTH_BAD_PASSWORD);
    gw_auth_passwd_free(db);
}

struct bad_case {
    const char *text;
    size_t line;
    const char *needle;
};

static void test_malformed(void **state)
{
    static const struct bad_case cases[] = {
        {"alice\n", 1, "expected user:hash"},
        {"# ok\nalice:" H_PASSWORD "\n:" H_PASSWORD "\n", 3, "empty user name"},
        {"alice:md5$1000$" SALT16 "$x\n", 1, "unknown hash scheme"},
        {"alice:pbkdf2-sha512$999$" SALT16 "$x\n", 1, "iteration count out of range"},
        {"alice:pbkdf2-sha512$100000001$" SALT16 "$x\n", 1, "out of range"},
        {"alice:pbkdf2-sha512$99999999999999999999$x$y\n", 1, "out of range"},
        {"alice:pbkdf2-sha512$$" SALT16 "$x\n", 1, "bad iteration count"},
        {"alice:pbkdf2-sha512$1000x$" SALT16 "$x\n", 1, "bad iteration count"},
        {"alice:pbkdf2-sha512$1000$" SALT16 "\n", 1, "missing hash"},
        {"alice:pbkdf2-sha512$1000$MDEyMzQ1Njc4OWFiY2Rl$x\n", 1, "salt is not 16 bytes"},
        {"alice:pbkdf2-sha512$1000$MDEyMzQ1Njc4OWFiY2RlZg=$x\n", 1, "salt"},
        {"alice:pbkdf2-sha512$1000$MDEyMzQ1Njc4OWFiY2RlZh==$x\n", 1, "salt"}, /* non-canonical */
        {"alice:pbkdf2-sha512$1000$" SALT16 "$AAAA\n", 1, "hash is not 64 bytes"},
        {"alice:" H_PASSWORD " \n", 1, "hash is not 64 bytes"}, /* trailing blank */
        {"alice:" H_PASSWORD "$\n", 1, "hash is not 64 bytes"},
        {"a:b:" H_PASSWORD "\n", 1, "unknown hash scheme"},
        {"al\x01ice:" H_PASSWORD "\n", 1, "control character"},
        {"al\xffice:" H_PASSWORD "\n", 1, "UTF-8"},
        {"alice:" H_PASSWORD "\nbob:" H_HORSE "\nalice:" H_HORSE "\n", 3,
         "duplicate user (first on line 1)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        gw_auth_passwd_t *db = (gw_auth_passwd_t *)1;
        char errbuf[GW_AUTH_ERRBUF] = "", want[32];
        gw_err_t err = gw_auth_passwd_parse(cases[i].text, strlen(cases[i].text), "pw", &db,
                                            errbuf);
        if (err != GW_ERR_CONFIG || db != NULL)
            fail_msg("case %zu: err %d", i, err);
        snprintf(want, sizeof(want), "pw:%zu: ", cases[i].line);
        if (strncmp(errbuf, want, strlen(want)) != 0 || !strstr(errbuf, cases[i].needle))
            fail_msg("case %zu: got \"%s\", want \"%s...%s\"", i, errbuf, want,
                     cases[i].needle);
    }
}

static void test_long_lines(void **state)
{
    /* A 1 MB line: refused with its line number, not read into a hash. */
    size_t big = 1024 * 1024;
    char *text = malloc(big + 256);
    char errbuf[GW_AUTH_ERRBUF];
    gw_auth_passwd_t *db = NULL;
    int n = snprintf(text, 256, "alice:" H_PASSWORD "\n");
    memset(text + n, 'u', big);
    text[n + big] = '\0';
    assert_int_equal(gw_auth_passwd_parse(text, strlen(text), "pw", &db, errbuf), GW_ERR_CONFIG);
    assert_null(db);
    assert_non_null(strstr(errbuf, "pw:2: line longer than 1024 bytes"));

    /* user name of 512 bytes is fine, 513 is not */
    char line[800];
    memset(line, 'x', 513);
    snprintf(line + 512, sizeof(line) - 512, ":%s\n", H_PASSWORD);
    db = parse_ok(line);
    gw_auth_passwd_free(db);
    memset(line, 'x', 513);
    snprintf(line + 513, sizeof(line) - 513, ":%s\n", H_PASSWORD);
    assert_int_equal(gw_auth_passwd_parse(line, strlen(line), "pw", &db, errbuf), GW_ERR_CONFIG);
    assert_non_null(strstr(errbuf, "user name too long"));
    free(text);
}

static void test_load_file(void **state)
{
    char path[] = "/tmp/gw_auth_pwXXXXXX";
    char errbuf[GW_AUTH_ERRBUF];
    gw_auth_passwd_t *db = NULL;
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, good_file, strlen(good_file)), (ssize_t)strlen(good_file));
    close(fd);
    assert_int_equal(gw_auth_passwd_load(path, &db, errbuf), GW_OK);
    assert_int_equal(gw_auth_passwd_count(db), 3);
    /* refcount: a second reference keeps it alive after the first free */
    gw_auth_passwd_t *ref = gw_auth_passwd_ref(db);
    gw_auth_passwd_free(db);
    assert_int_equal(gw_auth_passwd_check(ref, "alice", 5, "password", 8), GW_AUTH_OK);
    gw_auth_passwd_free(ref);
    unlink(path);
    assert_int_equal(gw_auth_passwd_load(path, &db, errbuf), GW_ERR_IO);
    assert_null(db);
    assert_non_null(strstr(errbuf, "No such file"));
    assert_int_equal(gw_auth_passwd_load("/tmp", &db, errbuf), GW_ERR_IO);
    /* empty file: valid, no users; everyone is unknown */
    db = parse_ok("");
    assert_int_equal(gw_auth_passwd_check(db, "alice", 5, "password", 8), GW_AUTH_UNKNOWN_USER);
    gw_auth_passwd_free(db);
}

static void test_user_rules(void **state)
{
    const char *t;
    assert_int_equal(gw_auth_user_validate("bob@acme", 8, NULL), GW_OK);
    assert_int_equal(gw_auth_user_validate("a:b", 3, NULL), GW_ERR_INVAL);
    assert_int_equal(gw_auth_user_validate("#a", 2, NULL), GW_ERR_INVAL);
    assert_int_equal(gw_auth_user_validate("", 0, NULL), GW_ERR_INVAL);
    assert_int_equal(gw_auth_user_tenant("bob@acme", 8, &t), 4);
    assert_memory_equal(t, "acme", 4);
    assert_int_equal(gw_auth_user_tenant("a@b@acme", 8, &t), 4);
    assert_memory_equal(t, "acme", 4);
    assert_int_equal(gw_auth_user_tenant("bob", 3, &t), 0);
    assert_null(t);
    assert_int_equal(gw_auth_user_tenant("bob@", 4, &t), 0);
    assert_null(t);
}

static void test_cache(void **state)
{
    gw_auth_passwd_t *db = parse_ok(good_file);
    gw_auth_cache_t *c = gw_auth_cache_new(16, 1000);
    gw_auth_cache_stats_t st;
    assert_non_null(c);

    /* miss, then hit while fresh */
    assert_int_equal(gw_auth_verify(db, c, "alice", 5, "password", 8, 100), GW_AUTH_OK);
    assert_int_equal(gw_auth_verify(db, c, "alice", 5, "password", 8, 1099), GW_AUTH_OK);
    gw_auth_cache_stats(c, &st);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.inserts, 1);
    /* a wrong password never hits and is never inserted */
    assert_int_equal(gw_auth_verify(db, c, "alice", 5, "passwore", 8, 200),
                     GW_AUTH_BAD_PASSWORD);
    assert_int_equal(gw_auth_verify(db, c, "alice", 5, "passwore", 8, 201),
                     GW_AUTH_BAD_PASSWORD);
    gw_auth_cache_stats(c, &st);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 3);
    assert_int_equal(st.inserts, 1);
    /* expiry: at insert time + ttl the entry is gone */
    assert_int_equal(gw_auth_verify(db, c, "alice", 5, "password", 8, 1100), GW_AUTH_OK);
    gw_auth_cache_stats(c, &st);
    assert_int_equal(st.expired, 1);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.inserts, 2);
    /* unknown users bypass the cache */
    assert_int_equal(gw_auth_verify(db, c, "zed", 3, "password", 8, 1200), GW_AUTH_UNKNOWN_USER);

    /* reload with a changed password: the old entry no longer matches */
    static const char changed[] = "alice:" H_HORSE "\n";
    gw_auth_passwd_t *db2 = parse_ok(changed);
    assert_int_equal(gw_auth_verify(db2, c, "alice", 5, "password", 8, 1300),
                     GW_AUTH_BAD_PASSWORD);
    assert_int_equal(gw_auth_verify(db2, c, "alice", 5, "correct horse battery staple", 28,
                                    1300),
                     GW_AUTH_OK);
    gw_auth_cache_clear(c);
    assert_int_equal(gw_auth_verify(db, c, "alice", 5, "password", 8, 1400), GW_AUTH_OK);
    gw_auth_cache_stats(c, &st);
    assert_int_equal(st.hits, 1); /* cleared: a miss again */
    gw_auth_cache_free(c);
    gw_auth_passwd_free(db);
    gw_auth_passwd_free(db2);
}

/* gw_auth_verify_cached: hits only, never a verification, never an insert. */
static void test_cache_only(void **state)
{
    gw_auth_passwd_t *db = parse_ok(good_file);
    gw_auth_cache_t *c = gw_auth_cache_new(16, 1000);
    gw_auth_cache_stats_t st;
    assert_non_null(c);
    /* right password, not verified yet: a miss is not OK, and inserts nothing */
    assert_int_equal(gw_auth_verify_cached(db, c, "alice", 5, "password", 8, 100),
                     GW_AUTH_BAD_PASSWORD);
    gw_auth_cache_stats(c, &st);
    assert_int_equal(st.inserts, 0);
    assert_int_equal(gw_auth_verify(db, c, "alice", 5, "password", 8, 100), GW_AUTH_OK);
    assert_int_equal(gw_auth_verify_cached(db, c, "alice", 5, "password", 8, 500), GW_AUTH_OK);
    assert_int_equal(gw_auth_verify_cached(db, c, "alice", 5, "passwore", 8, 500),
                     GW_AUTH_BAD_PASSWORD);
    assert_int_equal(gw_auth_verify_cached(db, c, "zed", 3, "password", 8, 500),
                     GW_AUTH_UNKNOWN_USER);
    /* expired: a miss */
    assert_int_equal(gw_auth_verify_cached(db, c, "alice", 5, "password", 8, 1100),
                     GW_AUTH_BAD_PASSWORD);
    assert_int_equal(gw_auth_verify_cached(db, NULL, "alice", 5, "password", 8, 0),
                     GW_AUTH_BAD_PASSWORD);
    gw_auth_cache_free(c);
    gw_auth_passwd_free(db);
}

static void test_cache_bounded(void **state)
{
    /* 40 users through an 8-entry cache: never more than 8 live entries,
     * evictions counted, recently used entries survive in their set. */
    char text[40 * 200];
    size_t off = 0;
    static const uint8_t salt[16] = "0123456789abcdef";
    char h[GW_AUTH_HASH_STR_MAX];
    assert_int_equal(gw_auth_passwd_hash_salt("pw", 2, 1000, salt, h, sizeof(h)), GW_OK);
    for (int i = 0; i < 40; i++)
        off += (size_t)snprintf(text + off, sizeof(text) - off, "u%02d:%s\n", i, h);
    gw_auth_passwd_t *db = parse_ok(text);
    gw_auth_cache_t *c = gw_auth_cache_new(8, 60000);
    gw_auth_cache_stats_t st;
    for (int i = 0; i < 40; i++) {
        char u[4];
        snprintf(u, sizeof(u), "u%02d", i);
        assert_int_equal(gw_auth_verify(db, c, u, 3, "pw", 2, 10), GW_AUTH_OK);
    }
    gw_auth_cache_stats(c, &st);
    assert_int_equal(st.inserts, 40);
    assert_true(st.evictions >= 32);
    uint64_t hits = 0;
    for (int i = 0; i < 40; i++) {
        char u[4];
        snprintf(u, sizeof(u), "u%02d", i);
        gw_auth_verify(db, c, u, 3, "pw", 2, 20);
        gw_auth_cache_stats(c, &st);
        hits = st.hits;
    }
    assert_true(hits <= 8);
    gw_auth_cache_free(c);
    gw_auth_passwd_free(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors),  cmocka_unit_test(test_wrong_and_unknown),
        cmocka_unit_test(test_hash_roundtrip), cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_long_lines),     cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_user_rules),     cmocka_unit_test(test_cache),
        cmocka_unit_test(test_cache_bounded), cmocka_unit_test(test_cache_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
