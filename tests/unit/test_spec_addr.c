/*
 * test_spec_addr.c - per-client address build/parse and kind names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gw/spec.h"

static void build(const gw_spec_addrs_t *a, gw_spec_client_addr_t w, const char *id,
                  const char *want)
{
    char buf[128];
    assert_int_equal(gw_spec_addr_client(a, w, id, strlen(id), buf, sizeof buf), GW_OK);
    assert_string_equal(buf, want);
}

static void parse(const gw_spec_addrs_t *a, const char *addr, gw_spec_client_addr_t want_w,
                  const char *want_id)
{
    gw_spec_client_addr_t w = (gw_spec_client_addr_t)99;
    const char *id = NULL;
    size_t len = 0;
    assert_int_equal(gw_spec_addr_parse(a, addr, strlen(addr), &w, &id, &len), GW_OK);
    assert_int_equal(w, want_w);
    assert_int_equal(len, strlen(want_id));
    assert_memory_equal(id, want_id, len);
    assert_ptr_equal(id, addr + (id - addr)); /* points into addr */
    assert_true(id > addr && id + len < addr + strlen(addr));
}

static void not_found(const gw_spec_addrs_t *a, const char *addr)
{
    gw_spec_client_addr_t w;
    const char *id;
    size_t len;
    if (gw_spec_addr_parse(a, addr, strlen(addr), &w, &id, &len) != GW_ERR_NOT_FOUND)
        fail_msg("\"%s\" was recognised", addr);
}

static void test_defaults(void **state)
{
    assert_string_equal(gw_spec_default_addrs.lwt, "$mqtt.lwtservice");
    assert_string_equal(gw_spec_default_addrs.subctrl, "$mqtt.subscriptionservice");
    build(NULL, GW_SPEC_ADDR_CONTROL, "c1", "$mqtt.to.c1.control");
    build(&gw_spec_default_addrs, GW_SPEC_ADDR_PUBLISH, "c1", "$mqtt.to.c1.publish");
    build(NULL, GW_SPEC_ADDR_PUBREL, "c1", "$mqtt.c1.pubrel");
    parse(NULL, "$mqtt.to.c1.control", GW_SPEC_ADDR_CONTROL, "c1");
    parse(NULL, "$mqtt.to.c1.publish", GW_SPEC_ADDR_PUBLISH, "c1");
    parse(NULL, "$mqtt.c1.pubrel", GW_SPEC_ADDR_PUBREL, "c1");
}

static void test_ids_with_dots(void **state)
{
    static const char *ids[] = {"a.b", "a.control", ".", "..", "x.publish.control",
                                "to.x", "$mqtt.to.y", "dev/1 é"};
    static const gw_spec_client_addr_t kinds[] = {GW_SPEC_ADDR_CONTROL, GW_SPEC_ADDR_PUBLISH,
                                                  GW_SPEC_ADDR_PUBREL};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        for (size_t k = 0; k < 3; k++) {
            char buf[128];
            assert_int_equal(gw_spec_addr_client(NULL, kinds[k], ids[i], strlen(ids[i]), buf,
                                                 sizeof buf),
                             GW_OK);
            parse(NULL, buf, kinds[k], ids[i]);
        }
    }
    build(NULL, GW_SPEC_ADDR_CONTROL, "a.control", "$mqtt.to.a.control.control");
    parse(NULL, "$mqtt.to.a.control.control", GW_SPEC_ADDR_CONTROL, "a.control");
    /* "$mqtt." + "to.x" + ".pubrel": the PUBREL address of client "to.x" */
    parse(NULL, "$mqtt.to.x.pubrel", GW_SPEC_ADDR_PUBREL, "to.x");
}

static void test_custom_plan(void **state)
{
    gw_spec_addrs_t a = {"lwt", "subs", "mqtt/to/", "rel/"};
    build(&a, GW_SPEC_ADDR_CONTROL, "c.1", "mqtt/to/c.1.control");
    build(&a, GW_SPEC_ADDR_PUBREL, "c.1", "rel/c.1.pubrel");
    parse(&a, "mqtt/to/c.1.publish", GW_SPEC_ADDR_PUBLISH, "c.1");
    parse(&a, "rel/c.1.pubrel", GW_SPEC_ADDR_PUBREL, "c.1");
    not_found(&a, "$mqtt.to.c.1.publish");
    a.pubrel_prefix = NULL; /* a plan without PUBREL addresses */
    not_found(&a, "rel/c.1.pubrel");
    char buf[64];
    assert_int_equal(gw_spec_addr_client(&a, GW_SPEC_ADDR_PUBREL, "c", 1, buf, sizeof buf),
                     GW_ERR_INVAL);
}

static void test_not_found(void **state)
{
    not_found(NULL, "$mqtt.lwtservice");
    not_found(NULL, "$mqtt.subscriptionservice");
    not_found(NULL, "$mqtt.to.c1.other");
    not_found(NULL, "$mqtt.to.c1.Control");
    not_found(NULL, "c1.control");
    not_found(NULL, "");
    not_found(NULL, "$mqtt.to.control"); /* prefix and suffix overlap */
    not_found(NULL, "$mqtt.to..control"); /* empty id */
    not_found(NULL, "$mqtt.to..publish");
    not_found(NULL, "$mqtt..pubrel");
    not_found(NULL, "$mqtt.pubrel");
    not_found(NULL, "$mqtt.to.c1.control.x");
    /* the length is what counts, not a NUL */
    const char *s = "$mqtt.to.c1.controlXYZ";
    gw_spec_client_addr_t w;
    const char *id;
    size_t len;
    assert_int_equal(gw_spec_addr_parse(NULL, s, strlen(s), &w, &id, &len), GW_ERR_NOT_FOUND);
    assert_int_equal(gw_spec_addr_parse(NULL, s, strlen(s) - 3, &w, &id, &len), GW_OK);
    assert_int_equal(w, GW_SPEC_ADDR_CONTROL);
    assert_int_equal(len, 2);
    assert_int_equal(gw_spec_addr_parse(NULL, NULL, 0, &w, &id, &len), GW_ERR_INVAL);
}

static void test_empty_id_and_nospace(void **state)
{
    char buf[32];
    assert_int_equal(gw_spec_addr_client(NULL, GW_SPEC_ADDR_CONTROL, "", 0, buf, sizeof buf),
                     GW_ERR_INVAL);
    /* "$mqtt.to.abc.control" is 20 chars: needs 21 bytes */
    assert_int_equal(gw_spec_addr_client(NULL, GW_SPEC_ADDR_CONTROL, "abc", 3, buf, 21), GW_OK);
    assert_string_equal(buf, "$mqtt.to.abc.control");
    memset(buf, 'Z', sizeof buf);
    assert_int_equal(gw_spec_addr_client(NULL, GW_SPEC_ADDR_CONTROL, "abc", 3, buf, 20),
                     GW_ERR_NOSPACE);
    assert_int_equal(buf[0], 'Z'); /* nothing written */
    assert_int_equal(gw_spec_addr_client(NULL, GW_SPEC_ADDR_CONTROL, "abc", 3, buf, 0),
                     GW_ERR_NOSPACE);
    /* an absurd id length is refused before anything is read */
    assert_int_equal(gw_spec_addr_client(NULL, GW_SPEC_ADDR_PUBREL, "x", SIZE_MAX, buf, sizeof buf),
                     GW_ERR_NOSPACE);
    assert_int_equal(gw_spec_addr_client(NULL, GW_SPEC_ADDR_PUBREL, "x", SIZE_MAX - 5, buf, SIZE_MAX),
                     GW_ERR_NOSPACE);
    /* "$mqtt.x.pubrel" is 14 chars */
    assert_int_equal(gw_spec_addr_client(NULL, GW_SPEC_ADDR_PUBREL, "x", 1, buf, 15), GW_OK);
    assert_int_equal(gw_spec_addr_client(NULL, GW_SPEC_ADDR_PUBREL, "x", 1, buf, 14),
                     GW_ERR_NOSPACE);
}

static void test_kind_names(void **state)
{
    static const char *want[] = {"AMQP_PUBLISH", "AMQP_WILL", "AMQP_WILL_CLEAR",
                                 "AMQP_LIST", "AMQP_SUBSCRIPTIONS", "AMQP_CLOSE",
                                 "AMQP_SUBSCRIBE", "AMQP_UNSUBSCRIBE", "AMQP_PUBREL",
                                 "AMQP_WILL_PUBLISH", "AMQP_OFFLINE", "AMQP_STOLEN"};
    for (int k = GW_SPEC_PUBLISH; k <= GW_SPEC_STOLEN; k++) {
        assert_string_equal(gw_spec_kind_name((gw_spec_kind_t)k), want[k]);
        assert_true(GW_SPEC_KIND_ALL & GW_SPEC_KIND_BIT(k));
    }
    assert_string_equal(gw_spec_kind_name((gw_spec_kind_t)42), "AMQP_UNKNOWN");
    assert_int_equal(GW_SPEC_KIND_ALL >> (GW_SPEC_STOLEN + 1), 0);
}

static void test_reserved(void **state)
{
    (void)state;
    /* Defaults: everything under "$mqtt." is reserved (the pubrel prefix). */
    assert_true(gw_spec_addr_reserved(NULL, "$mqtt.lwtservice", 16));
    assert_true(gw_spec_addr_reserved(NULL, "$mqtt.to.c1.publish", 19));
    assert_true(gw_spec_addr_reserved(NULL, "$mqtt.subscriptionservice/x", 27));
    assert_true(gw_spec_addr_reserved(NULL, "$mqtt.x", 7));
    assert_false(gw_spec_addr_reserved(NULL, "$mqtt", 5));    /* shorter than any prefix */
    assert_false(gw_spec_addr_reserved(NULL, "$mqttx.a", 8));
    assert_false(gw_spec_addr_reserved(NULL, "a/$mqtt.to.", 11));
    assert_false(gw_spec_addr_reserved(NULL, "$SYS/x", 6));
    assert_false(gw_spec_addr_reserved(NULL, "", 0));
    /* Not NUL-terminated: only len bytes count. */
    assert_false(gw_spec_addr_reserved(NULL, "$mqtt.to.", 5));
    /* A custom plan: only its own prefixes; empty ones are ignored. */
    gw_spec_addrs_t plan = {.lwt = "ctl/will", .subctrl = "ctl/subs", .to_prefix = "out/",
                            .pubrel_prefix = ""};
    assert_true(gw_spec_addr_reserved(&plan, "ctl/will", 8));
    assert_true(gw_spec_addr_reserved(&plan, "out/c1.publish", 14));
    assert_false(gw_spec_addr_reserved(&plan, "$mqtt.lwtservice", 16));
    assert_false(gw_spec_addr_reserved(&plan, "ctl/wil", 7));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),         cmocka_unit_test(test_ids_with_dots),
        cmocka_unit_test(test_custom_plan),      cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_empty_id_and_nospace), cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_reserved),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
