/*
 * test_utf8_topic.c - MQTT-1.5.3 UTF-8 validation, topic name and topic
 * filter syntax (MQTT 4.7), single filter matching incl. the '$' rule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_mqtt_util.h"

struct utf8_case {
    const char *s;
    size_t len;
    gw_err_t want;
    const char *what;
};

#define U(lit, want) {lit, sizeof(lit) - 1, want, #lit}

static const struct utf8_case utf8_cases[] = {
    U("", GW_OK),
    U("a", GW_OK),
    U("plain ascii topic/with/levels and more than 8 bytes", GW_OK),
    U("\x7f", GW_OK),                       /* DEL: control, only a SHOULD NOT */
    U("\x01", GW_OK),                       /* U+0001 likewise */
    U("\xc2\x80", GW_OK),                   /* U+0080 */
    U("\xc3\xa9", GW_OK),                   /* é */
    U("\xdf\xbf", GW_OK),                   /* U+07FF */
    U("\xe0\xa0\x80", GW_OK),               /* U+0800 */
    U("\xe2\x82\xac", GW_OK),               /* € */
    U("\xed\x9f\xbf", GW_OK),               /* U+D7FF, last before surrogates */
    U("\xee\x80\x80", GW_OK),               /* U+E000, first after */
    U("\xef\xbf\xbf", GW_OK),               /* U+FFFF (non-character: accepted) */
    U("\xef\xbb\xbf", GW_OK),               /* BOM U+FEFF, MQTT-1.5.3-3: not stripped */
    U("\xf0\x90\x80\x80", GW_OK),           /* U+10000 */
    U("\xf0\x9f\x98\x80", GW_OK),           /* 😀 */
    U("\xf4\x8f\xbf\xbf", GW_OK),           /* U+10FFFF */
    U("12345678\xc3\xa9" "12345678", GW_OK),/* multi-byte between fast-path blocks */
    U("\x00", GW_ERR_MQTT_UTF8),            /* U+0000, MQTT-1.5.3-2 */
    U("abcdefg\x00", GW_ERR_MQTT_UTF8),     /* U+0000 at the end of an 8-byte block */
    U("abcdefgh\x00ijklmnop", GW_ERR_MQTT_UTF8),
    U("\xc0\x80", GW_ERR_MQTT_UTF8),        /* overlong U+0000 */
    U("\xc1\xbf", GW_ERR_MQTT_UTF8),        /* overlong U+007F */
    U("\xe0\x80\x80", GW_ERR_MQTT_UTF8),    /* overlong 3-byte */
    U("\xe0\x9f\xbf", GW_ERR_MQTT_UTF8),    /* overlong U+07FF */
    U("\xf0\x80\x80\x80", GW_ERR_MQTT_UTF8),/* overlong 4-byte */
    U("\xf0\x8f\xbf\xbf", GW_ERR_MQTT_UTF8),/* overlong U+FFFF */
    U("\xed\xa0\x80", GW_ERR_MQTT_UTF8),    /* U+D800 surrogate, MQTT-1.5.3-1 */
    U("\xed\xbf\xbf", GW_ERR_MQTT_UTF8),    /* U+DFFF */
    U("\xed\xa0\xbd\xed\xb8\x80", GW_ERR_MQTT_UTF8), /* CESU-8 surrogate pair */
    U("\xf4\x90\x80\x80", GW_ERR_MQTT_UTF8),/* U+110000 */
    U("\xf5\x80\x80\x80", GW_ERR_MQTT_UTF8),
    U("\xf8\x88\x80\x80\x80", GW_ERR_MQTT_UTF8), /* 5-byte form */
    U("\xfe", GW_ERR_MQTT_UTF8),
    U("\xff", GW_ERR_MQTT_UTF8),
    U("\x80", GW_ERR_MQTT_UTF8),            /* lone continuation */
    U("a\xbf", GW_ERR_MQTT_UTF8),
    U("\xc3", GW_ERR_MQTT_UTF8),            /* truncated 2-byte */
    U("\xe2\x82", GW_ERR_MQTT_UTF8),        /* truncated 3-byte */
    U("\xf0\x9f\x98", GW_ERR_MQTT_UTF8),    /* truncated 4-byte */
    U("abc\xf0\x9f", GW_ERR_MQTT_UTF8),
    U("\xc3\x28", GW_ERR_MQTT_UTF8),        /* bad continuation */
    U("\xe2\x28\xa1", GW_ERR_MQTT_UTF8),
    U("\xe2\x82\x28", GW_ERR_MQTT_UTF8),
    U("\xf0\x9f\x28\x80", GW_ERR_MQTT_UTF8),
    U("\xf0\x9f\x98\x28", GW_ERR_MQTT_UTF8),
    U("12345678901234\xc0", GW_ERR_MQTT_UTF8),
};

static void test_utf8_table(void **state)
{
    for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
        const struct utf8_case *c = &utf8_cases[i];
        /* a heap copy of the exact length: no read past the end */
        char *copy = malloc(c->len ? c->len : 1);
        assert_non_null(copy);
        memcpy(copy, c->s, c->len);
        gw_err_t got = gw_utf8_validate(copy, c->len);
        if (got != c->want)
            fail_msg("case %zu %s: got %s, expected %s", i, c->what, gw_err_name(got),
                     gw_err_name(c->want));
        free(copy);
    }
}

/* Every valid code point encoded by hand is accepted, and every 2- and
 * 3-byte sequence is accepted iff it is one of those encodings. */
static void test_utf8_exhaustive(void **state)
{
    for (uint32_t cp = 1; cp <= 0x10FFFF; cp++) {
        uint8_t b[4];
        size_t n;
        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        if (cp < 0x80) {
            b[0] = (uint8_t)cp;
            n = 1;
        } else if (cp < 0x800) {
            b[0] = (uint8_t)(0xC0 | cp >> 6);
            b[1] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 2;
        } else if (cp < 0x10000) {
            b[0] = (uint8_t)(0xE0 | cp >> 12);
            b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            b[2] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 3;
        } else {
            b[0] = (uint8_t)(0xF0 | cp >> 18);
            b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
            b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            b[3] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 4;
        }
        if (gw_utf8_validate((const char *)b, n) != GW_OK)
            fail_msg("U+%04X rejected", cp);
    }
    /* every 2-byte sequence: valid iff C2..DF followed by 80..BF */
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned c = 0; c < 256; c++) {
            uint8_t b[2] = {(uint8_t)a, (uint8_t)c};
            bool ascii_ok = a >= 1 && a < 0x80 && c >= 1 && c < 0x80;
            bool two_ok = a >= 0xC2 && a <= 0xDF && c >= 0x80 && c <= 0xBF;
            gw_err_t want = (ascii_ok || two_ok) ? GW_OK : GW_ERR_MQTT_UTF8;
            if (gw_utf8_validate((const char *)b, 2) != want)
                fail_msg("%02X %02X", a, c);
        }
    }
    /* every 3-byte sequence starting E0..EF */
    for (unsigned a = 0xE0; a <= 0xEF; a++) {
        for (unsigned c = 0; c < 256; c++) {
            for (unsigned d = 0; d < 256; d++) {
                uint8_t b[3] = {(uint8_t)a, (uint8_t)c, (uint8_t)d};
                uint32_t cp = (a & 0x0F) << 12 | (c & 0x3F) << 6 | (d & 0x3F);
                bool ok = (c & 0xC0) == 0x80 && (d & 0xC0) == 0x80 && cp >= 0x800 &&
                          !(cp >= 0xD800 && cp <= 0xDFFF);
                if ((gw_utf8_validate((const char *)b, 3) == GW_OK) != ok)
                    fail_msg("%02X %02X %02X", a, c, d);
            }
        }
    }
}

struct topic_case {
    const char *s;
    gw_err_t name; /* as a topic name */
    gw_err_t filter; /* as a topic filter */
};

static const struct topic_case topic_cases[] = {
    {"a", GW_OK, GW_OK},
    {"a/b/c", GW_OK, GW_OK},
    {"/", GW_OK, GW_OK},
    {"//", GW_OK, GW_OK},
    {"/a", GW_OK, GW_OK},
    {"a/", GW_OK, GW_OK},
    {"$SYS/broker", GW_OK, GW_OK},
    {"sport/tennis player1", GW_OK, GW_OK},
    {"caf\xc3\xa9", GW_OK, GW_OK},
    {"", GW_ERR_MQTT_TOPIC_EMPTY, GW_ERR_MQTT_TOPIC_EMPTY},
    {"#", GW_ERR_MQTT_TOPIC_WILDCARD, GW_OK},
    {"+", GW_ERR_MQTT_TOPIC_WILDCARD, GW_OK},
    {"sport/#", GW_ERR_MQTT_TOPIC_WILDCARD, GW_OK},
    {"sport/tennis/#", GW_ERR_MQTT_TOPIC_WILDCARD, GW_OK},
    {"sport/+/player1", GW_ERR_MQTT_TOPIC_WILDCARD, GW_OK},
    {"+/+", GW_ERR_MQTT_TOPIC_WILDCARD, GW_OK},
    {"+/tennis/#", GW_ERR_MQTT_TOPIC_WILDCARD, GW_OK},
    {"/+", GW_ERR_MQTT_TOPIC_WILDCARD, GW_OK},
    {"+/", GW_ERR_MQTT_TOPIC_WILDCARD, GW_OK},
    {"/#", GW_ERR_MQTT_TOPIC_WILDCARD, GW_OK},
    {"$SYS/#", GW_ERR_MQTT_TOPIC_WILDCARD, GW_OK},
    {"sport/tennis#", GW_ERR_MQTT_TOPIC_WILDCARD, GW_ERR_MQTT_TOPIC_FILTER},
    {"sport/tennis/#/ranking", GW_ERR_MQTT_TOPIC_WILDCARD, GW_ERR_MQTT_TOPIC_FILTER},
    {"sport+", GW_ERR_MQTT_TOPIC_WILDCARD, GW_ERR_MQTT_TOPIC_FILTER},
    {"sport/+tennis", GW_ERR_MQTT_TOPIC_WILDCARD, GW_ERR_MQTT_TOPIC_FILTER},
    {"#/", GW_ERR_MQTT_TOPIC_WILDCARD, GW_ERR_MQTT_TOPIC_FILTER},
    {"##", GW_ERR_MQTT_TOPIC_WILDCARD, GW_ERR_MQTT_TOPIC_FILTER},
    {"++", GW_ERR_MQTT_TOPIC_WILDCARD, GW_ERR_MQTT_TOPIC_FILTER},
    {"+#", GW_ERR_MQTT_TOPIC_WILDCARD, GW_ERR_MQTT_TOPIC_FILTER},
    {"a/#b", GW_ERR_MQTT_TOPIC_WILDCARD, GW_ERR_MQTT_TOPIC_FILTER},
    {"\xc0\x80", GW_ERR_MQTT_UTF8, GW_ERR_MQTT_UTF8},
    {"a/\xed\xa0\x80/#", GW_ERR_MQTT_UTF8, GW_ERR_MQTT_UTF8},
};

static void test_topic_table(void **state)
{
    for (size_t i = 0; i < sizeof(topic_cases) / sizeof(topic_cases[0]); i++) {
        const struct topic_case *c = &topic_cases[i];
        size_t len = strlen(c->s);
        gw_err_t n = gw_topic_name_validate(NULL, c->s, len);
        gw_err_t f = gw_topic_filter_validate(NULL, c->s, len);
        if (n != c->name)
            fail_msg("name '%s': got %s, expected %s", c->s, gw_err_name(n), gw_err_name(c->name));
        if (f != c->filter)
            fail_msg("filter '%s': got %s, expected %s", c->s, gw_err_name(f),
                     gw_err_name(c->filter));
    }
    /* embedded U+0000 */
    assert_err(gw_topic_name_validate(NULL, "a\0b", 3), GW_ERR_MQTT_UTF8);
    assert_err(gw_topic_filter_validate(NULL, "a\0b", 3), GW_ERR_MQTT_UTF8);
}

static void test_topic_limits(void **state)
{
    const gw_mqtt_ctx_t c = {4, 10, 3};
    assert_err(gw_topic_name_validate(&c, "0123456789", 10), GW_OK);
    assert_err(gw_topic_name_validate(&c, "0123456789a", 11), GW_ERR_MQTT_TOPIC_TOO_LONG);
    assert_err(gw_topic_filter_validate(&c, "0123456789a", 11), GW_ERR_MQTT_TOPIC_TOO_LONG);
    assert_err(gw_topic_name_validate(&c, "a/b/c", 5), GW_OK);
    assert_err(gw_topic_name_validate(&c, "a/b/c/", 6), GW_ERR_MQTT_TOPIC_TOO_LONG);
    assert_err(gw_topic_filter_validate(&c, "+/+/#", 5), GW_OK);
    assert_err(gw_topic_filter_validate(&c, "+/+/+/#", 7), GW_ERR_MQTT_TOPIC_TOO_LONG);
    /* length is checked before content */
    assert_err(gw_topic_name_validate(&c, "0123456789#", 11), GW_ERR_MQTT_TOPIC_TOO_LONG);
    /* wire limit without a configured one */
    char *big = malloc(70000);
    assert_non_null(big);
    memset(big, 'a', 70000);
    assert_err(gw_topic_name_validate(NULL, big, 65535), GW_OK);
    assert_err(gw_topic_name_validate(NULL, big, 65536), GW_ERR_MQTT_TOPIC_TOO_LONG);
    free(big);
}

struct match_case {
    const char *filter, *topic;
    bool match;
};

static const struct match_case match_cases[] = {
    /* MQTT 4.7.1.2 examples */
    {"sport/tennis/player1/#", "sport/tennis/player1", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
    {"sport/#", "sport", true},
    {"#", "sport", true},
    {"#", "/", true},
    {"#", "a/b/c", true},
    /* MQTT 4.7.1.3 examples */
    {"sport/tennis/+", "sport/tennis/player1", true},
    {"sport/tennis/+", "sport/tennis/player2", true},
    {"sport/tennis/+", "sport/tennis/player1/ranking", false},
    {"sport/+", "sport", false},
    {"sport/+", "sport/", true},
    {"+/+", "/finance", true},
    {"/+", "/finance", true},
    {"+", "/finance", false},
    {"+/tennis/#", "sport/tennis/x", true},
    {"+/x", "/x", true},  /* '+' matches an empty level */
    {"+/x", "x", false},
    {"a/+/c", "a//c", true},
    {"a/+", "a/", true},
    {"a/+/+", "a/", false},
    {"a//b", "a//b", true},
    {"a/b", "a//b", false},
    {"a/", "a/", true},
    {"a/", "a", false},
    {"a", "a/", false},
    {"a/#", "a/", true},
    {"a/b", "a/b", true},
    {"a/b", "a/bc", false},
    {"a/bc", "a/b", false},
    {"a/b", "a", false},
    {"a", "a/b", false},
    {"A", "a", false},
    {"sport/tennis/#", "sport/tennis", true},
    {"sport/tennis/#", "sport/tenni", false},
    {"sport/tennis/#", "sport", false},
    {"+/+/#", "a", false},
    {"+/+/#", "a/b", true},
    {"+/#", "a", true},
    /* MQTT-4.7.2-1: '$' topics and wildcards in the first level */
    {"#", "$SYS/x", false},
    {"+/x", "$SYS/x", false},
    {"+/monitor/Clients", "$SYS/monitor/Clients", false},
    {"$SYS/#", "$SYS/x", true},
    {"$SYS/#", "$SYS", true},
    {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
    {"a/#", "a/$x", true},  /* '$' only matters in the first level */
    {"+/+", "a/$x", true},
    {"#", "$", false},
    {"$", "$", true},
};

static void test_match_table(void **state)
{
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const struct match_case *c = &match_cases[i];
        assert_err(gw_topic_filter_validate(NULL, c->filter, strlen(c->filter)), GW_OK);
        bool got = gw_topic_matches(c->filter, strlen(c->filter), c->topic, strlen(c->topic));
        if (got != c->match)
            fail_msg("'%s' vs '%s': got %d, expected %d", c->filter, c->topic, got, c->match);
        /* A filter without wildcards matches exactly itself. */
        if (!strpbrk(c->filter, "+#")) {
            bool same = strcmp(c->filter, c->topic) == 0;
            assert_int_equal(got, same);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_table),
        cmocka_unit_test(test_utf8_exhaustive),
        cmocka_unit_test(test_topic_table),
        cmocka_unit_test(test_topic_limits),
        cmocka_unit_test(test_match_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
