/*
 * test_hono.c - the Hono mapping layer: every topic form, property bags,
 * identity decisions, every field of each north-bound message read back
 * with the raw proton API (and through encode + gw_spec_message_decode),
 * commands both ways, response status validation, the request table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <proton/codec.h>
#include <proton/message.h>

#include "gw/hono.h"
#include "gw/mqtt.h"
#include "gw/spec.h"

#define S(lit) ((gw_hono_str_t){(lit), sizeof(lit) - 1})
#define NONE ((gw_hono_str_t){"", 0})

static void assert_str(gw_hono_str_t s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.ptr, want, s.len);
}

static gw_err_t parse(const char *topic, gw_hono_topic_t *t, gw_hono_reason_t *r)
{
    return gw_hono_topic_parse(topic, strlen(topic), t, r);
}

/* ------------------------------------------------------------------ */
/* topics                                                              */
/* ------------------------------------------------------------------ */

static void test_topic_telemetry_event_forms(void **state)
{
    static const struct {
        const char *topic;
        gw_hono_kind_t kind;
        bool short_form;
        const char *tenant, *device;
    } cases[] = {
        {"telemetry", GW_HONO_TELEMETRY, false, "", ""},
        {"t", GW_HONO_TELEMETRY, true, "", ""},
        {"telemetry/", GW_HONO_TELEMETRY, false, "", ""},
        {"telemetry//", GW_HONO_TELEMETRY, false, "", ""},
        {"t/DEFAULT_TENANT/4711", GW_HONO_TELEMETRY, true, "DEFAULT_TENANT", "4711"},
        {"telemetry//4712", GW_HONO_TELEMETRY, false, "", "4712"},
        {"telemetry/DEFAULT_TENANT", GW_HONO_TELEMETRY, false, "DEFAULT_TENANT", ""},
        {"event", GW_HONO_EVENT, false, "", ""},
        {"e", GW_HONO_EVENT, true, "", ""},
        {"e//4712", GW_HONO_EVENT, true, "", "4712"},
        {"event/T/D", GW_HONO_EVENT, false, "T", "D"},
        {"e/?hono-ttl=10", GW_HONO_EVENT, true, "", ""},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_hono_topic_t t;
        gw_hono_reason_t r = GW_HONO_R__COUNT;
        assert_int_equal(parse(cases[i].topic, &t, &r), GW_OK);
        assert_int_equal(r, GW_HONO_R_NONE);
        assert_int_equal(t.kind, cases[i].kind);
        assert_int_equal(t.short_form, cases[i].short_form);
        assert_str(t.tenant, cases[i].tenant);
        assert_str(t.device, cases[i].device);
    }
}

static void test_topic_command_response_forms(void **state)
{
    gw_hono_topic_t t;
    (void)state;
    assert_int_equal(parse("command///res/0123456789abcdef/200", &t, NULL), GW_OK);
    assert_int_equal(t.kind, GW_HONO_COMMAND_RESPONSE);
    assert_false(t.short_form);
    assert_str(t.tenant, "");
    assert_str(t.device, "");
    assert_str(t.req_id, "0123456789abcdef");
    assert_int_equal(t.status, 200);

    assert_int_equal(parse("c///s/r1/503", &t, NULL), GW_OK);
    assert_true(t.short_form);
    assert_int_equal(t.status, 503);
    /* gateway form: device of the gateway's device */
    assert_int_equal(parse("command//4711/res/r2/204", &t, NULL), GW_OK);
    assert_str(t.device, "4711");
    assert_str(t.req_id, "r2");
    /* unauthenticated form with a bag, mixed spellings */
    assert_int_equal(parse("c/T/D/res/r3/599/?content-type=text%2Fplain&x=1", &t, NULL), GW_OK);
    assert_str(t.tenant, "T");
    assert_str(t.device, "D");
    assert_int_equal(t.status, 599);
    assert_true(t.has_content_type);
    assert_str(t.content_type, "text/plain");
    assert_int_equal(t.prop_count, 1);
    assert_str(t.path, "c/T/D/res/r3/599");
}

static void test_topic_errors(void **state)
{
    static const struct {
        const char *topic;
        gw_err_t err;
        gw_hono_reason_t reason;
    } cases[] = {
        {"foo/bar", GW_ERR_NOT_FOUND, GW_HONO_R_NOT_HONO},
        {"telemetry?x=1", GW_ERR_NOT_FOUND, GW_HONO_R_NOT_HONO},
        {"Telemetry", GW_ERR_NOT_FOUND, GW_HONO_R_NOT_HONO},
        {"/telemetry", GW_ERR_NOT_FOUND, GW_HONO_R_NOT_HONO},
        {"/?a=b", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_EMPTY_PATH},
        {"telemetry/T/D/x", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_LEVELS},
        {"telemetry/T/D/", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_LEVELS},
        {"e/a/b/c/d/e/f/g/h", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_LEVELS},
        {"command///req/x/200", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_RESPONSE_LEVEL},
        {"c///q//name", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_RESPONSE_LEVEL},
        {"c///s/r", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_LEVELS},
        {"c///s/r/200/x", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_LEVELS},
        {"c", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_LEVELS},
        {"c///s//200", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_REQ_ID_EMPTY},
        {"c///s/r/199", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_STATUS},
        {"c///s/r/600", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_STATUS},
        {"c///s/r/99", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_STATUS},
        {"c///s/r/2000", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_STATUS},
        {"c///s/r/2x0", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_STATUS},
        {"c///s/r/+20", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_STATUS},
        {"c///s/r/", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_STATUS},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_hono_topic_t t;
        gw_hono_reason_t r = GW_HONO_R_NONE;
        gw_err_t err = parse(cases[i].topic, &t, &r);
        if (err != cases[i].err || r != cases[i].reason)
            fail_msg("%s: got %s/%s, want %s/%s", cases[i].topic, gw_err_name(err),
                     gw_hono_reason_name(r), gw_err_name(cases[i].err),
                     gw_hono_reason_name(cases[i].reason));
    }
    gw_hono_topic_t t;
    assert_int_equal(gw_hono_topic_parse("", 0, &t, NULL), GW_ERR_MQTT_TOPIC_EMPTY);
    assert_int_equal(gw_hono_topic_parse(NULL, 1, &t, NULL), GW_ERR_INVAL);
}

static void test_topic_id_bounds(void **state)
{
    char topic[GW_HONO_MAX_ID * 2 + 64];
    char id[GW_HONO_MAX_ID + 2];
    gw_hono_topic_t t;
    gw_hono_reason_t r;
    (void)state;
    memset(id, 'x', GW_HONO_MAX_ID);
    id[GW_HONO_MAX_ID] = '\0';
    snprintf(topic, sizeof topic, "t/%s/%s", id, id);
    assert_int_equal(parse(topic, &t, &r), GW_OK);
    assert_int_equal(t.device.len, GW_HONO_MAX_ID);
    id[GW_HONO_MAX_ID] = 'x';
    id[GW_HONO_MAX_ID + 1] = '\0';
    snprintf(topic, sizeof topic, "t/T/%s", id);
    assert_int_equal(parse(topic, &t, &r), GW_ERR_LIMIT);
    assert_int_equal(r, GW_HONO_R_ID_TOO_LONG);
    snprintf(topic, sizeof topic, "c///s/%s/200", id);
    assert_int_equal(parse(topic, &t, &r), GW_ERR_LIMIT);
    assert_int_equal(r, GW_HONO_R_ID_TOO_LONG);
}

/* ------------------------------------------------------------------ */
/* property bags                                                       */
/* ------------------------------------------------------------------ */

static void test_bag_good(void **state)
{
    gw_hono_topic_t t;
    (void)state;
    assert_int_equal(parse("event/T/D/?content-type=application%2Fjson&hono-ttl=30&seqNo=10034"
                           "&importance=%22high%22&a%20b=c+d&caf%C3%A9=%e2%82%ac",
                           &t, NULL),
                     GW_OK);
    assert_str(t.path, "event/T/D");
    assert_true(t.has_content_type);
    assert_str(t.content_type, "application/json");
    assert_true(t.has_ttl);
    assert_int_equal(t.ttl_s, 30);
    assert_int_equal(t.prop_count, 4);
    assert_str(t.props[0].name, "seqNo");
    assert_str(t.props[0].value, "10034");
    assert_str(t.props[1].value, "\"high\"");
    assert_str(t.props[2].name, "a b");
    assert_str(t.props[2].value, "c d");
    assert_str(t.props[3].name, "caf\xc3\xa9");
    assert_str(t.props[3].value, "\xe2\x82\xac");
    /* decoded strings are NUL-terminated */
    assert_int_equal(t.props[3].value.ptr[t.props[3].value.len], '\0');

    /* names are case-insensitive for the two the adapter reads */
    assert_int_equal(parse("t/?Content-Type=text%2Fplain&HONO-TTL=5", &t, NULL), GW_OK);
    assert_str(t.content_type, "text/plain");
    assert_int_equal(t.ttl_s, 5);
    assert_int_equal(t.prop_count, 0);

    /* empty values, a name without '=', empty pairs skipped, '=' in a value */
    assert_int_equal(parse("t/?a=&b&&c=x=y&", &t, NULL), GW_OK);
    assert_int_equal(t.prop_count, 3);
    assert_str(t.props[0].name, "a");
    assert_str(t.props[0].value, "");
    assert_str(t.props[1].name, "b");
    assert_str(t.props[1].value, "");
    assert_str(t.props[2].value, "x=y");
    /* an empty bag */
    assert_int_equal(parse("telemetry/?", &t, NULL), GW_OK);
    assert_int_equal(t.prop_count, 0);
    assert_false(t.has_content_type);
    assert_false(t.has_ttl);
    /* the LAST "/?" starts the bag */
    assert_int_equal(parse("t/?x=1/?y=2", &t, NULL), GW_OK);
    assert_str(t.tenant, "?x=1"); /* as Hono: authorization then refuses that tenant */
    assert_str(t.props[0].name, "y");
    assert_int_equal(parse("t/T/D/?y=%2F%3F", &t, NULL), GW_OK);
    assert_str(t.props[0].value, "/?");
    /* hono-ttl bounds */
    assert_int_equal(parse("e/?hono-ttl=4294967", &t, NULL), GW_OK);
    assert_int_equal(t.ttl_s, 4294967u);
    assert_int_equal(parse("e/?hono-ttl=0", &t, NULL), GW_OK);
    assert_int_equal(t.ttl_s, 0);
    /* content-type present but empty */
    assert_int_equal(parse("e/?content-type=", &t, NULL), GW_OK);
    assert_true(t.has_content_type);
    assert_int_equal(t.content_type.len, 0);
}

static void test_bag_counts_and_lengths(void **state)
{
    char topic[GW_HONO_MAX_BAG + 64];
    gw_hono_topic_t t;
    gw_hono_reason_t r;
    size_t n;
    (void)state;

    /* exactly GW_HONO_MAX_PROPS entries (the two special ones count too) */
    n = (size_t)snprintf(topic, sizeof topic, "t/?content-type=a%%2Fb");
    for (int i = 1; i < GW_HONO_MAX_PROPS; i++)
        n += (size_t)snprintf(topic + n, sizeof topic - n, "&p%d=%d", i, i);
    assert_int_equal(parse(topic, &t, &r), GW_OK);
    assert_int_equal(t.prop_count, GW_HONO_MAX_PROPS - 1);
    assert_str(t.props[GW_HONO_MAX_PROPS - 2].name, "p15");
    /* one more */
    snprintf(topic + n, sizeof topic - n, "&x=1");
    assert_int_equal(parse(topic, &t, &r), GW_ERR_LIMIT);
    assert_int_equal(r, GW_HONO_R_BAG_TOO_MANY);

    /* raw bag of exactly GW_HONO_MAX_BAG bytes, then one more */
    memcpy(topic, "t/?v=", 5);
    memset(topic + 5, 'a', GW_HONO_MAX_BAG - 2);
    topic[3 + GW_HONO_MAX_BAG] = '\0';
    assert_int_equal(parse(topic, &t, &r), GW_OK);
    assert_int_equal(t.props[0].value.len, GW_HONO_MAX_BAG - 2);
    topic[3 + GW_HONO_MAX_BAG] = 'a';
    topic[4 + GW_HONO_MAX_BAG] = '\0';
    assert_int_equal(parse(topic, &t, &r), GW_ERR_LIMIT);
    assert_int_equal(r, GW_HONO_R_BAG_TOO_LONG);

    /* the worst case for the decode buffer: 16 names without values */
    n = (size_t)snprintf(topic, sizeof topic, "t/?");
    for (int i = 0; i < GW_HONO_MAX_PROPS; i++)
        n += (size_t)snprintf(topic + n, sizeof topic - n, "%s%c", i ? "&" : "", 'a' + i);
    assert_int_equal(parse(topic, &t, &r), GW_OK);
    assert_int_equal(t.prop_count, GW_HONO_MAX_PROPS);
}

static void test_bag_errors(void **state)
{
    static const struct {
        const char *topic;
        gw_err_t err;
        gw_hono_reason_t reason;
    } cases[] = {
        {"t/?a=%zz", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_ESCAPE},
        {"t/?a=%4", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_ESCAPE},
        {"t/?a=%", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_ESCAPE},
        {"t/?a%=1", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_ESCAPE},
        {"t/?a=%4g", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_ESCAPE},
        {"t/?=x", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_EMPTY_NAME},
        {"t/?a=1&=", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_EMPTY_NAME},
        {"t/?a=1&A=2", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_DUPLICATE},
        {"t/?content-type=a&CONTENT-TYPE=b", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_DUPLICATE},
        {"t/?x=1&%78=2", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_DUPLICATE},
        {"t/?device_id=other", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_RESERVED},
        {"t/?Tenant_Id=other", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_RESERVED},
        {"t/?orig_adapter=x", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_RESERVED},
        {"t/?qos=2", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_RESERVED},
        {"c///s/r/200/?status=500", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_RESERVED},
        {"e/?ttd=-1", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_BAG_RESERVED},
        {"t/?a=%00", GW_ERR_MQTT_UTF8, GW_HONO_R_BAG_UTF8},
        {"t/?a=%C3", GW_ERR_MQTT_UTF8, GW_HONO_R_BAG_UTF8},
        {"t/?a=%ED%A0%80", GW_ERR_MQTT_UTF8, GW_HONO_R_BAG_UTF8},
        {"t/?%FF=1", GW_ERR_MQTT_UTF8, GW_HONO_R_BAG_UTF8},
        {"e/?hono-ttl=abc", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_TTL},
        {"e/?hono-ttl=-1", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_TTL},
        {"e/?hono-ttl=", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_TTL},
        {"e/?hono-ttl=4294968", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_TTL},
        {"e/?hono-ttl=99999999999", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_TTL},
        {"e/?hono-ttl=1.5", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_TTL},
        {"e/?content-type=caf%C3%A9", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_CONTENT_TYPE},
        {"e/?content-type=a%0Ab", GW_ERR_MQTT_PROTOCOL, GW_HONO_R_CONTENT_TYPE},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_hono_topic_t t;
        gw_hono_reason_t r = GW_HONO_R_NONE;
        gw_err_t err = parse(cases[i].topic, &t, &r);
        if (err != cases[i].err || r != cases[i].reason)
            fail_msg("%s: got %s/%s, want %s/%s", cases[i].topic, gw_err_name(err),
                     gw_hono_reason_name(r), gw_err_name(cases[i].err),
                     gw_hono_reason_name(cases[i].reason));
    }
}

/* ------------------------------------------------------------------ */
/* command filters                                                     */
/* ------------------------------------------------------------------ */

static gw_err_t fparse(const char *f, gw_hono_cmd_filter_t *out, gw_hono_reason_t *r)
{
    return gw_hono_cmd_filter_parse(f, strlen(f), out, r);
}

static void test_cmd_filter(void **state)
{
    gw_hono_cmd_filter_t f;
    gw_hono_reason_t r;
    (void)state;
    assert_int_equal(fparse("command///req/#", &f, &r), GW_OK);
    assert_false(f.short_command);
    assert_false(f.short_req);
    assert_int_equal(f.tenant.len, 0);
    assert_int_equal(f.device.len, 0);
    assert_false(f.all_devices);

    assert_int_equal(fparse("c///q/#", &f, &r), GW_OK);
    assert_true(f.short_command);
    assert_true(f.short_req);

    assert_int_equal(fparse("command//+/req/#", &f, &r), GW_OK);
    assert_true(f.all_devices);
    assert_int_equal(f.device.len, 0);

    assert_int_equal(fparse("c/DEFAULT_TENANT/+/q/#", &f, &r), GW_OK);
    assert_str(f.tenant, "DEFAULT_TENANT");
    assert_true(f.all_devices);

    assert_int_equal(fparse("command/T/4711/req/#", &f, &r), GW_OK);
    assert_str(f.tenant, "T");
    assert_str(f.device, "4711");
    assert_false(f.all_devices);

    /* Hono 1.x authenticated form */
    assert_int_equal(fparse("command/+/+/req/#", &f, &r), GW_OK);
    assert_int_equal(f.tenant.len, 0);
    assert_true(f.all_devices);

    assert_int_equal(fparse("command//4711/q/#", &f, &r), GW_OK);
    assert_false(f.short_command);
    assert_true(f.short_req);

    static const char *const bad[] = {"command///req/+", "command///res/#", "command//req/#",
                                      "c///q/x/#", "c///q", "c///#", "command///req/#/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = GW_HONO_R_NONE;
        if (fparse(bad[i], &f, &r) != GW_ERR_MQTT_PROTOCOL || r != GW_HONO_R_FILTER)
            fail_msg("%s accepted or wrong reason %s", bad[i], gw_hono_reason_name(r));
    }
    assert_int_equal(fparse("telemetry/#", &f, &r), GW_ERR_NOT_FOUND);
    assert_int_equal(r, GW_HONO_R_NOT_HONO);
    assert_int_equal(fparse("#", &f, &r), GW_ERR_NOT_FOUND);
}

static void test_username_split(void **state)
{
    gw_hono_str_t a, t;
    (void)state;
    assert_int_equal(gw_hono_username_split("sensor1@DEFAULT_TENANT", 22, &a, &t), GW_OK);
    assert_str(a, "sensor1");
    assert_str(t, "DEFAULT_TENANT");
    assert_int_equal(gw_hono_username_split("me@example.com@T", 16, &a, &t), GW_OK);
    assert_str(a, "me@example.com");
    assert_str(t, "T");
    assert_int_equal(gw_hono_username_split("sensor1", 7, &a, &t), GW_ERR_NOT_FOUND);
    assert_int_equal(gw_hono_username_split("@T", 2, &a, &t), GW_ERR_NOT_FOUND);
    assert_int_equal(gw_hono_username_split("s@", 2, &a, &t), GW_ERR_NOT_FOUND);
}

/* ------------------------------------------------------------------ */
/* identity                                                            */
/* ------------------------------------------------------------------ */

static int calls;

static bool deny_all(void *arg, gw_hono_str_t tenant, gw_hono_str_t gateway,
                     gw_hono_str_t device)
{
    (void)arg;
    (void)tenant;
    (void)gateway;
    (void)device;
    calls++;
    return false;
}

static void test_authorize(void **state)
{
    gw_hono_gateways_t *g = gw_hono_gateways_new();
    gw_hono_identity_t dev = {S("T"), S("4711")};
    gw_hono_identity_t gw = {S("T"), S("gw-1")};
    gw_hono_identity_t any_gw = {S("T"), S("gw-any")};
    gw_hono_identity_t other_tenant_gw = {S("U"), S("gw-1")};
    gw_hono_policy_t pol = {false, gw_hono_gateways_allows, g};
    gw_hono_target_t tg;
    (void)state;

    assert_non_null(g);
    assert_int_equal(gw_hono_gateways_add(g, "T", "gw-1", "4712"), GW_OK);
    assert_int_equal(gw_hono_gateways_add(g, "T", "gw-1", "4712"), GW_OK); /* idempotent */
    assert_int_equal(gw_hono_gateways_add(g, "T", "gw-any", "*"), GW_OK);
    assert_int_equal(gw_hono_gateways_add(g, "U", "gw-1", "*"), GW_OK);
    assert_int_equal(gw_hono_gateways_add(g, "T", "", "x"), GW_ERR_INVAL);

    /* own device: no ids, tenant only, own ids */
    assert_int_equal(gw_hono_authorize(&pol, &dev, NONE, NONE, &tg), GW_HONO_ALLOWED);
    assert_str(tg.tenant, "T");
    assert_str(tg.device, "4711");
    assert_false(tg.via_gateway);
    assert_int_equal(gw_hono_authorize(&pol, &dev, S("T"), NONE, &tg), GW_HONO_ALLOWED);
    assert_str(tg.device, "4711");
    assert_int_equal(gw_hono_authorize(&pol, &dev, S("T"), S("4711"), &tg), GW_HONO_ALLOWED);
    assert_int_equal(gw_hono_authorize(&pol, &dev, NONE, S("4711"), &tg), GW_HONO_ALLOWED);
    /* another device: not a gateway */
    assert_int_equal(gw_hono_authorize(&pol, &dev, NONE, S("4712"), &tg), GW_HONO_DENIED_DEVICE);
    /* gateway, allowed for 4712 only */
    assert_int_equal(gw_hono_authorize(&pol, &gw, NONE, S("4712"), &tg), GW_HONO_ALLOWED);
    assert_str(tg.tenant, "T");
    assert_str(tg.device, "4712");
    assert_true(tg.via_gateway);
    assert_str(tg.gateway, "gw-1");
    assert_int_equal(gw_hono_authorize(&pol, &gw, S("T"), S("4712"), &tg), GW_HONO_ALLOWED);
    assert_int_equal(gw_hono_authorize(&pol, &gw, NONE, S("4713"), &tg), GW_HONO_DENIED_DEVICE);
    /* "*" gateway: any device of its tenant */
    assert_int_equal(gw_hono_authorize(&pol, &any_gw, NONE, S("4713"), &tg), GW_HONO_ALLOWED);
    assert_str(tg.device, "4713");
    /* cross-tenant: always denied, even for a "*" gateway, even own device id */
    assert_int_equal(gw_hono_authorize(&pol, &any_gw, S("U"), S("4713"), &tg),
                     GW_HONO_DENIED_TENANT);
    assert_int_equal(gw_hono_authorize(&pol, &dev, S("U"), S("4711"), &tg),
                     GW_HONO_DENIED_TENANT);
    assert_int_equal(gw_hono_authorize(&pol, &dev, S("U"), NONE, &tg), GW_HONO_DENIED_TENANT);
    assert_int_equal(gw_hono_authorize(&pol, &other_tenant_gw, S("T"), S("4712"), &tg),
                     GW_HONO_DENIED_TENANT);
    /* U/gw-1 has "*" in U, which does not reach T/gw-1's devices */
    assert_true(gw_hono_gateways_allows(g, S("U"), S("gw-1"), S("anything")));
    assert_false(gw_hono_gateways_allows(g, S("T"), S("gw-1"), S("anything")));
    /* tenant/gateway/device boundaries are not ambiguous */
    assert_false(gw_hono_gateways_allows(g, S("Tg"), S("w-1"), S("4712")));

    /* unauthenticated */
    assert_int_equal(gw_hono_authorize(&pol, NULL, S("T"), S("4711"), &tg),
                     GW_HONO_DENIED_AUTH_REQUIRED);
    pol.allow_unauthenticated = true;
    assert_int_equal(gw_hono_authorize(&pol, NULL, S("T"), S("4711"), &tg), GW_HONO_ALLOWED);
    assert_str(tg.tenant, "T");
    assert_str(tg.device, "4711");
    assert_int_equal(gw_hono_authorize(&pol, NULL, NONE, S("4711"), &tg),
                     GW_HONO_DENIED_IDS_MISSING);
    assert_int_equal(gw_hono_authorize(&pol, NULL, S("T"), NONE, &tg),
                     GW_HONO_DENIED_IDS_MISSING);
    assert_int_equal(gw_hono_authorize(NULL, NULL, S("T"), S("D"), &tg),
                     GW_HONO_DENIED_AUTH_REQUIRED);

    /* callback form; never consulted for own device or another tenant */
    gw_hono_policy_t cb = {false, deny_all, NULL};
    calls = 0;
    assert_int_equal(gw_hono_authorize(&cb, &gw, NONE, S("gw-1"), &tg), GW_HONO_ALLOWED);
    assert_int_equal(gw_hono_authorize(&cb, &gw, S("U"), S("x"), &tg), GW_HONO_DENIED_TENANT);
    assert_int_equal(calls, 0);
    assert_int_equal(gw_hono_authorize(&cb, &gw, NONE, S("x"), &tg), GW_HONO_DENIED_DEVICE);
    assert_int_equal(calls, 1);
    /* no callback: nobody is a gateway */
    gw_hono_policy_t none = {false, NULL, NULL};
    assert_int_equal(gw_hono_authorize(&none, &gw, NONE, S("4712"), &tg), GW_HONO_DENIED_DEVICE);
    assert_string_equal(gw_hono_access_name(GW_HONO_DENIED_TENANT), "tenant-mismatch");
    gw_hono_gateways_free(g);
}

static void test_gateways_many(void **state)
{
    gw_hono_gateways_t *g = gw_hono_gateways_new();
    char dev[32];
    (void)state;
    for (int i = 0; i < 5000; i++) {
        snprintf(dev, sizeof dev, "d%d", i);
        assert_int_equal(gw_hono_gateways_add(g, "T", "gw", dev), GW_OK);
    }
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(dev, sizeof dev, "d%d", i);
        assert_true(gw_hono_gateways_allows(g, S("T"), S("gw"), (gw_hono_str_t){dev, (size_t)n}));
    }
    assert_false(gw_hono_gateways_allows(g, S("T"), S("gw"), S("d5000")));
    gw_hono_gateways_free(g);
}

/* ------------------------------------------------------------------ */
/* north-bound messages, read with the raw proton API                  */
/* ------------------------------------------------------------------ */

static int setup(void **state)
{
    *state = pn_message();
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    pn_message_free(*state);
    return 0;
}

/* Application properties in order, as "key=type:value" lines. */
static void props_dump(pn_message_t *m, char *buf, size_t cap)
{
    pn_data_t *p = pn_message_properties(m);
    size_t n = 0;
    buf[0] = '\0';
    pn_data_rewind(p);
    if (!pn_data_next(p))
        return;
    assert_int_equal(pn_data_type(p), PN_MAP);
    pn_data_enter(p);
    while (pn_data_next(p)) {
        assert_int_equal(pn_data_type(p), PN_STRING); /* keys are strings */
        pn_bytes_t k = pn_data_get_string(p);
        assert_true(pn_data_next(p));
        switch (pn_data_type(p)) {
        case PN_STRING: {
            pn_bytes_t v = pn_data_get_string(p);
            n += (size_t)snprintf(buf + n, cap - n, "%.*s=s:%.*s;", (int)k.size, k.start,
                                  (int)v.size, v.start);
            break;
        }
        case PN_INT:
            n += (size_t)snprintf(buf + n, cap - n, "%.*s=i:%d;", (int)k.size, k.start,
                                  pn_data_get_int(p));
            break;
        default:
            fail_msg("property %.*s has type %d", (int)k.size, k.start, pn_data_type(p));
        }
    }
    pn_data_exit(p);
    pn_data_rewind(p);
}

static bool body_binary(pn_message_t *m, const char *want, size_t len)
{
    pn_data_t *b = pn_message_body(m);
    bool ok;
    pn_data_rewind(b);
    if (!pn_data_next(b))
        return len == 0 && want == NULL;
    /* a Data section: binary body of an inferred message */
    ok = pn_message_is_inferred(m) && pn_data_type(b) == PN_BINARY &&
         pn_data_get_binary(b).size == len &&
         memcmp(pn_data_get_binary(b).start, want, len) == 0 && !pn_data_next(b);
    pn_data_rewind(b);
    return ok;
}

/* Encode, then decode into a fresh message as a receiver would. */
static pn_message_t *wire(pn_message_t *m)
{
    char buf[8192];
    size_t size = sizeof buf;
    pn_message_t *r = pn_message();
    char why[200];
    assert_int_equal(pn_message_encode(m, buf, &size), 0);
    assert_int_equal(gw_spec_message_decode(r, buf, size, why, sizeof why), GW_OK);
    return r;
}

static void test_build_event(void **state)
{
    pn_message_t *m = *state;
    gw_hono_topic_t t;
    char props[1024];
    static const char topic[] = "e//4712/?content-type=application%2Fjson&hono-ttl=30&seqNo=7";
    assert_int_equal(parse(topic, &t, NULL), GW_OK);
    gw_hono_upload_t u = {
        .kind = GW_HONO_EVENT,
        .tenant = S("DEFAULT_TENANT"),
        .device = t.device,
        .topic = &t,
        .orig_address = {topic, sizeof topic - 1},
        .qos = 1,
        .retain = true,
        .payload = (const uint8_t *)"{\"alarm\":1}",
        .payload_len = 11,
        .now_ms = 1700000000123ull,
    };
    gw_hono_reason_t r;
    assert_int_equal(gw_hono_build_upload(m, &u, &r), GW_OK);

    for (int pass = 0; pass < 2; pass++) {
        pn_message_t *x = pass == 0 ? m : wire(m);
        assert_string_equal(pn_message_get_address(x), "event/DEFAULT_TENANT");
        assert_true(pn_message_is_durable(x));
        assert_string_equal(pn_message_get_content_type(x), "application/json");
        assert_int_equal(pn_message_get_creation_time(x), 1700000000123ll);
        assert_int_equal(pn_message_get_ttl(x), 30000);
        assert_null(pn_message_get_subject(x));
        props_dump(x, props, sizeof props);
        assert_string_equal(props, "device_id=s:4712;tenant_id=s:DEFAULT_TENANT;"
                                   "orig_adapter=s:hono-mqtt;"
                                   "orig_address=s:e//4712/?content-type=application%2Fjson&"
                                   "hono-ttl=30&seqNo=7;qos=i:1;seqNo=s:7;");
        pn_data_t *a = pn_message_annotations(x);
        pn_data_rewind(a);
        assert_true(pn_data_next(a));
        assert_int_equal(pn_data_type(a), PN_MAP);
        assert_int_equal(pn_data_get_map(a), 2);
        pn_data_enter(a);
        assert_true(pn_data_next(a));
        assert_int_equal(pn_data_type(a), PN_SYMBOL);
        assert_memory_equal(pn_data_get_symbol(a).start, "x-opt-retain", 12);
        assert_true(pn_data_next(a));
        assert_int_equal(pn_data_type(a), PN_BOOL);
        assert_true(pn_data_get_bool(a));
        pn_data_exit(a);
        assert_true(body_binary(x, "{\"alarm\":1}", 11));
        if (x != m)
            pn_message_free(x);
    }
}

static void test_build_telemetry(void **state)
{
    pn_message_t *m = *state;
    gw_hono_topic_t t;
    char props[1024];
    assert_int_equal(parse("t/?hono-ttl=30", &t, NULL), GW_OK);
    gw_hono_upload_t u = {
        .kind = GW_HONO_TELEMETRY,
        .tenant = S("T"),
        .device = S("4711"),
        .topic = &t,
        .qos = 0,
        .payload = (const uint8_t *)"\x00\x01\x02",
        .payload_len = 3,
        .now_ms = 42,
    };
    assert_int_equal(gw_hono_build_upload(m, &u, NULL), GW_OK);
    assert_string_equal(pn_message_get_address(m), "telemetry/T");
    assert_false(pn_message_is_durable(m));
    assert_string_equal(pn_message_get_content_type(m), GW_HONO_CT_OCTET_STREAM);
    assert_int_equal(pn_message_get_ttl(m), 0); /* hono-ttl is for events only */
    assert_int_equal(pn_message_get_creation_time(m), 42);
    props_dump(m, props, sizeof props);
    assert_string_equal(props, "device_id=s:4711;tenant_id=s:T;orig_adapter=s:hono-mqtt;qos=i:0;");
    pn_data_rewind(pn_message_annotations(m));
    assert_false(pn_data_next(pn_message_annotations(m))); /* no retain, no annotations */
    assert_true(body_binary(m, "\x00\x01\x02", 3));

    /* no topic at all: defaults */
    u.topic = NULL;
    u.qos = 2;
    assert_int_equal(gw_hono_build_upload(m, &u, NULL), GW_OK);
    props_dump(m, props, sizeof props);
    assert_string_equal(props, "device_id=s:4711;tenant_id=s:T;orig_adapter=s:hono-mqtt;qos=i:2;");
    /* caller bugs */
    u.qos = 3;
    assert_int_equal(gw_hono_build_upload(m, &u, NULL), GW_ERR_INVAL);
    u.qos = 0;
    u.kind = GW_HONO_COMMAND_RESPONSE;
    assert_int_equal(gw_hono_build_upload(m, &u, NULL), GW_ERR_INVAL);
    u.kind = GW_HONO_TELEMETRY;
    u.tenant = NONE;
    assert_int_equal(gw_hono_build_upload(m, &u, NULL), GW_ERR_INVAL);
    assert_null(pn_message_get_address(m)); /* left cleared */
}

static void test_build_upload_content_type_rules(void **state)
{
    pn_message_t *m = *state;
    gw_hono_topic_t t;
    gw_hono_reason_t r;
    gw_hono_upload_t u = {.kind = GW_HONO_TELEMETRY, .tenant = S("T"), .device = S("D"),
                          .topic = NULL, .payload = NULL, .payload_len = 0};
    /* empty payload without content-type */
    assert_int_equal(gw_hono_build_upload(m, &u, &r), GW_ERR_SPEC_BODY);
    assert_int_equal(r, GW_HONO_R_EMPTY_NO_CONTENT_TYPE);
    assert_null(pn_message_get_address(m));
    assert_int_equal(parse("t/?content-type=", &t, NULL), GW_OK);
    u.topic = &t;
    assert_int_equal(gw_hono_build_upload(m, &u, &r), GW_ERR_SPEC_BODY);
    assert_int_equal(r, GW_HONO_R_EMPTY_NO_CONTENT_TYPE);
    /* empty payload with a type: fine, no body section */
    assert_int_equal(parse("t/?content-type=text%2Fplain", &t, NULL), GW_OK);
    assert_int_equal(gw_hono_build_upload(m, &u, &r), GW_OK);
    assert_string_equal(pn_message_get_content_type(m), "text/plain");
    assert_true(body_binary(m, NULL, 0));
    /* device-sent empty notification */
    assert_int_equal(
        parse("e/?content-type=application%2Fvnd.eclipse-hono-empty-notification", &t, NULL),
        GW_OK);
    u.kind = GW_HONO_EVENT;
    assert_int_equal(gw_hono_build_upload(m, &u, &r), GW_OK);
    assert_string_equal(pn_message_get_content_type(m), GW_HONO_CT_EMPTY_NOTIFICATION);
    u.payload = (const uint8_t *)"x";
    u.payload_len = 1;
    assert_int_equal(gw_hono_build_upload(m, &u, &r), GW_ERR_SPEC_BODY);
    assert_int_equal(r, GW_HONO_R_NOTIFICATION_PAYLOAD);
}

static void test_build_ttd(void **state)
{
    pn_message_t *m = *state;
    char props[512];
    for (int ttd = -1; ttd <= 0; ttd++) {
        assert_int_equal(gw_hono_build_ttd(m, S("T"), S("4711"), ttd, 99), GW_OK);
        pn_message_t *x = wire(m);
        assert_string_equal(pn_message_get_address(x), "event/T");
        assert_true(pn_message_is_durable(x));
        assert_string_equal(pn_message_get_content_type(x), GW_HONO_CT_EMPTY_NOTIFICATION);
        assert_int_equal(pn_message_get_creation_time(x), 99);
        props_dump(x, props, sizeof props);
        char want[200];
        snprintf(want, sizeof want,
                 "device_id=s:4711;tenant_id=s:T;orig_adapter=s:hono-mqtt;ttd=i:%d;", ttd);
        assert_string_equal(props, want);
        assert_true(body_binary(x, NULL, 0));
        pn_message_free(x);
    }
    assert_int_equal(gw_hono_build_ttd(m, S("T"), S("4711"), -2, 0), GW_ERR_INVAL);
    assert_int_equal(gw_hono_build_ttd(m, NONE, S("4711"), -1, 0), GW_ERR_INVAL);
}

/* ------------------------------------------------------------------ */
/* commands                                                            */
/* ------------------------------------------------------------------ */

static void make_command(pn_message_t *m, const char *to, const char *subject,
                         const char *reply_to, const char *corr, const char *body)
{
    pn_message_clear(m);
    if (to)
        pn_message_set_address(m, to);
    if (subject)
        pn_message_set_subject(m, subject);
    if (reply_to)
        pn_message_set_reply_to(m, reply_to);
    if (corr) {
        pn_msgid_t id = {.type = PN_STRING};
        id.u.as_bytes = pn_bytes(strlen(corr), corr);
        pn_message_set_correlation_id(m, id);
    }
    if (body)
        pn_data_put_binary(pn_message_body(m), pn_bytes(strlen(body), body));
}

static void test_command_decode(void **state)
{
    pn_message_t *m = *state;
    gw_hono_command_t c;
    gw_hono_reason_t r;

    make_command(m, "command/T/4711", "setBrightness", "command_response/T/app-1", "corr-1",
                 "{\"brightness\":79}");
    pn_message_set_content_type(m, "application/json");
    assert_int_equal(gw_hono_command_decode(m, &c, &r), GW_OK);
    assert_str(c.tenant, "T");
    assert_str(c.device, "4711");
    assert_str(c.name, "setBrightness");
    assert_false(c.one_way);
    assert_str(c.reply_to, "command_response/T/app-1");
    assert_str(c.reply_id, "app-1");
    assert_int_equal(c.correlation_id.type, PN_STRING);
    assert_int_equal(c.correlation_id.u.as_bytes.size, 6);
    assert_memory_equal(c.correlation_id.u.as_bytes.start, "corr-1", 6);
    assert_str(c.content_type, "application/json");
    assert_int_equal(c.payload_len, 17);
    assert_memory_equal(c.payload, "{\"brightness\":79}", 17);

    /* message-id (ulong) when there is no correlation-id */
    make_command(m, "command/T/4711", "get", "command_response/T/a/b", NULL, NULL);
    pn_msgid_t mid = {.type = PN_ULONG, .u.as_ulong = 77};
    pn_message_set_id(m, mid);
    assert_int_equal(gw_hono_command_decode(m, &c, &r), GW_OK);
    assert_int_equal(c.correlation_id.type, PN_ULONG);
    assert_int_equal(c.correlation_id.u.as_ulong, 77);
    assert_str(c.reply_id, "a/b");
    assert_int_equal(c.payload_len, 0);

    /* one-way: no reply-to, no ids needed */
    make_command(m, "command/T/4711", "switchOn", NULL, NULL, "1");
    assert_int_equal(gw_hono_command_decode(m, &c, &r), GW_OK);
    assert_true(c.one_way);
    assert_int_equal(c.correlation_id.type, PN_NULL);

    /* AmqpValue string body */
    make_command(m, "command/T/4711", "say", NULL, NULL, NULL);
    pn_data_put_string(pn_message_body(m), pn_bytes(2, "hi"));
    pn_message_set_inferred(m, false);
    assert_int_equal(gw_hono_command_decode(m, &c, &r), GW_OK);
    assert_int_equal(c.payload_len, 2);

    static const struct {
        const char *to, *subject, *reply_to, *corr;
        gw_err_t err;
        gw_hono_reason_t reason;
    } bad[] = {
        {NULL, "x", NULL, NULL, GW_ERR_SPEC_FIELD, GW_HONO_R_CMD_ADDRESS},
        {"telemetry/T/D", "x", NULL, NULL, GW_ERR_SPEC_FIELD, GW_HONO_R_CMD_ADDRESS},
        {"command/T", "x", NULL, NULL, GW_ERR_SPEC_FIELD, GW_HONO_R_CMD_ADDRESS},
        {"command//D", "x", NULL, NULL, GW_ERR_SPEC_FIELD, GW_HONO_R_CMD_ADDRESS},
        {"command/T/", "x", NULL, NULL, GW_ERR_SPEC_FIELD, GW_HONO_R_CMD_ADDRESS},
        {"command/T/D/x", "x", NULL, NULL, GW_ERR_SPEC_FIELD, GW_HONO_R_CMD_ADDRESS},
        {"command/T/D+", "x", NULL, NULL, GW_ERR_SPEC_FIELD, GW_HONO_R_CMD_ADDRESS},
        {"command/T/D", NULL, NULL, NULL, GW_ERR_SPEC_FIELD, GW_HONO_R_CMD_SUBJECT},
        {"command/T/D", "", NULL, NULL, GW_ERR_SPEC_FIELD, GW_HONO_R_CMD_SUBJECT},
        {"command/T/D", "a#", NULL, NULL, GW_ERR_SPEC_FIELD, GW_HONO_R_CMD_SUBJECT},
        {"command/T/D", "a+b", NULL, NULL, GW_ERR_SPEC_FIELD, GW_HONO_R_CMD_SUBJECT},
        {"command/T/D", "x", "command_response/U/app", "c", GW_ERR_SPEC_FIELD,
         GW_HONO_R_CMD_REPLY_TO},
        {"command/T/D", "x", "command_response/T/", "c", GW_ERR_SPEC_FIELD,
         GW_HONO_R_CMD_REPLY_TO},
        {"command/T/D", "x", "command_response/TT/a", "c", GW_ERR_SPEC_FIELD,
         GW_HONO_R_CMD_REPLY_TO},
        {"command/T/D", "x", "reply/T/a", "c", GW_ERR_SPEC_FIELD, GW_HONO_R_CMD_REPLY_TO},
        {"command/T/D", "x", "command_response/T/a", NULL, GW_ERR_SPEC_FIELD,
         GW_HONO_R_CMD_CORRELATION},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        make_command(m, bad[i].to, bad[i].subject, bad[i].reply_to, bad[i].corr, NULL);
        r = GW_HONO_R_NONE;
        gw_err_t err = gw_hono_command_decode(m, &c, &r);
        if (err != bad[i].err || r != bad[i].reason)
            fail_msg("case %zu: got %s/%s", i, gw_err_name(err), gw_hono_reason_name(r));
    }
    /* a list body (AmqpSequence / AmqpValue list) is not a payload */
    make_command(m, "command/T/D", "x", NULL, NULL, NULL);
    pn_data_put_list(pn_message_body(m));
    assert_int_equal(gw_hono_command_decode(m, &c, &r), GW_ERR_SPEC_BODY);
    assert_int_equal(r, GW_HONO_R_CMD_BODY);
}

static void topic_for(const char *filter, const char *subscriber, gw_hono_command_t *c,
                      const char *req_id, const char *want)
{
    gw_hono_cmd_filter_t f;
    char buf[512];
    size_t n;
    assert_int_equal(fparse(filter, &f, NULL), GW_OK);
    assert_int_equal(gw_hono_command_topic(&f, (gw_hono_str_t){subscriber, strlen(subscriber)}, c,
                                           (gw_hono_str_t){req_id, strlen(req_id)}, buf,
                                           sizeof buf, &n),
                     GW_OK);
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
    /* what we publish is a valid topic that the device's filter matches */
    assert_int_equal(gw_topic_name_validate(NULL, buf, n), GW_OK);
    assert_true(gw_topic_matches(filter, strlen(filter), buf, n));
}

static void test_command_topic(void **state)
{
    gw_hono_command_t c = {.tenant = S("T"), .device = S("4711"), .name = S("setBrightness")};
    gw_hono_cmd_filter_t f;
    char small[8];
    size_t n;
    (void)state;
    /* authenticated device */
    topic_for("command///req/#", "4711", &c, "0123456789abcdef",
              "command///req/0123456789abcdef/setBrightness");
    topic_for("c///q/#", "4711", &c, "", "c///q//setBrightness"); /* one-way */
    topic_for("command/T//req/#", "4711", &c, "r", "command/T//req/r/setBrightness");
    topic_for("command/+/+/req/#", "4711", &c, "r", "command///req/r/setBrightness");
    /* unauthenticated device */
    topic_for("command/T/4711/req/#", "4711", &c, "r", "command/T/4711/req/r/setBrightness");
    topic_for("c/T/4711/q/#", "4711", &c, "", "c/T/4711/q//setBrightness");
    /* gateway gw-1: all its devices, a specific one, commands for itself */
    topic_for("command//+/req/#", "gw-1", &c, "r", "command//4711/req/r/setBrightness");
    topic_for("c/T/+/q/#", "gw-1", &c, "", "c/T/4711/q//setBrightness");
    topic_for("c//4711/q/#", "gw-1", &c, "", "c//4711/q//setBrightness");
    gw_hono_command_t self = {.tenant = S("T"), .device = S("gw-1"), .name = S("reboot")};
    topic_for("command//+/req/#", "gw-1", &self, "r", "command///req/r/reboot");
    /* too small a buffer: how much is needed */
    assert_int_equal(fparse("c///q/#", &f, NULL), GW_OK);
    assert_int_equal(gw_hono_command_topic(&f, S("4711"), &c, NONE, small, sizeof small, &n),
                     GW_ERR_NOSPACE);
    assert_int_equal(n, strlen("c///q//setBrightness"));
}

/* ------------------------------------------------------------------ */
/* request table and responses                                         */
/* ------------------------------------------------------------------ */

static void test_reqtab(void **state)
{
    pn_message_t *m = *state;
    gw_hono_reqtab_t *tab = gw_hono_reqtab_new(2, 1000);
    gw_hono_command_t c;
    gw_hono_request_t *req;
    gw_hono_reason_t r;
    char id1[GW_HONO_REQ_ID_LEN + 1], id2[GW_HONO_REQ_ID_LEN + 1], id3[GW_HONO_REQ_ID_LEN + 1];

    assert_non_null(tab);
    assert_null(gw_hono_reqtab_new(0, 1000));
    assert_null(gw_hono_reqtab_new(GW_HONO_REQTAB_MAX + 1, 1000));
    assert_null(gw_hono_reqtab_new(1, 0));

    make_command(m, "command/T/4711", "get", "command_response/T/app", "corr-1", NULL);
    assert_int_equal(gw_hono_command_decode(m, &c, NULL), GW_OK);
    assert_int_equal(gw_hono_reqtab_add(tab, 0, &c, id1, &r), GW_OK);
    assert_int_equal(strlen(id1), GW_HONO_REQ_ID_LEN);
    assert_int_equal(strspn(id1, "0123456789abcdef"), GW_HONO_REQ_ID_LEN);
    make_command(m, "command/T/4711", "get", "command_response/T/app", "corr-2", NULL);
    assert_int_equal(gw_hono_command_decode(m, &c, NULL), GW_OK);
    assert_int_equal(gw_hono_reqtab_add(tab, 500, &c, id2, &r), GW_OK);
    assert_string_not_equal(id1, id2);
    /* full: refuse, never evict a live request */
    assert_int_equal(gw_hono_reqtab_add(tab, 999, &c, id3, &r), GW_ERR_LIMIT);
    assert_int_equal(r, GW_HONO_R_TABLE_FULL);
    assert_int_equal(gw_hono_reqtab_count(tab), 2);
    /* the message the command came in is gone: the table keeps copies */
    pn_message_clear(m);

    /* another device, another tenant: refused, entry kept */
    assert_int_equal(gw_hono_reqtab_take(tab, 999, (gw_hono_str_t){id1, 16}, S("T"), S("4712"),
                                         &req, &r),
                     GW_ERR_NOT_FOUND);
    assert_int_equal(r, GW_HONO_R_REQ_ID_WRONG_DEVICE);
    assert_null(req);
    assert_int_equal(gw_hono_reqtab_take(tab, 999, (gw_hono_str_t){id1, 16}, S("U"), S("4711"),
                                         &req, &r),
                     GW_ERR_NOT_FOUND);
    assert_int_equal(gw_hono_reqtab_count(tab), 2);
    /* malformed tokens */
    char upper[17];
    memcpy(upper, id1, 17);
    for (int i = 0; i < 16; i++)
        if (upper[i] >= 'a')
            upper[i] = (char)(upper[i] - 32);
    if (strcmp(upper, id1) != 0) {
        assert_int_equal(gw_hono_reqtab_take(tab, 999, (gw_hono_str_t){upper, 16}, S("T"),
                                             S("4711"), &req, &r),
                         GW_ERR_NOT_FOUND);
        assert_int_equal(r, GW_HONO_R_REQ_ID_UNKNOWN);
    }
    assert_int_equal(gw_hono_reqtab_take(tab, 999, (gw_hono_str_t){id1, 15}, S("T"), S("4711"),
                                         &req, &r),
                     GW_ERR_NOT_FOUND);
    assert_int_equal(gw_hono_reqtab_take(tab, 999, S("zzzzzzzzzzzzzzzz"), S("T"), S("4711"), &req,
                                         &r),
                     GW_ERR_NOT_FOUND);
    assert_int_equal(r, GW_HONO_R_REQ_ID_UNKNOWN);

    /* the right device: taken exactly once */
    assert_int_equal(gw_hono_reqtab_take(tab, 999, (gw_hono_str_t){id1, 16}, S("T"), S("4711"),
                                         &req, &r),
                     GW_OK);
    assert_non_null(req);
    assert_str(req->tenant, "T");
    assert_str(req->device, "4711");
    assert_str(req->reply_to, "command_response/T/app");
    assert_int_equal(req->correlation_id.type, PN_STRING);
    assert_int_equal(req->correlation_id.u.as_bytes.size, 6);
    assert_memory_equal(req->correlation_id.u.as_bytes.start, "corr-1", 6);
    gw_hono_request_free(req);
    assert_int_equal(gw_hono_reqtab_take(tab, 999, (gw_hono_str_t){id1, 16}, S("T"), S("4711"),
                                         &req, &r),
                     GW_ERR_NOT_FOUND);
    assert_int_equal(r, GW_HONO_R_REQ_ID_UNKNOWN);
    assert_int_equal(gw_hono_reqtab_count(tab), 1);

    /* expiry: id2 was added at 500 with ttl 1000 */
    assert_int_equal(gw_hono_reqtab_expire(tab, 1499), 0);
    assert_int_equal(gw_hono_reqtab_take(tab, 1500, (gw_hono_str_t){id2, 16}, S("T"), S("4711"),
                                         &req, &r),
                     GW_ERR_NOT_FOUND);
    assert_int_equal(r, GW_HONO_R_REQ_ID_UNKNOWN);
    assert_int_equal(gw_hono_reqtab_count(tab), 0);

    /* one-way commands are not remembered */
    make_command(m, "command/T/4711", "go", NULL, NULL, NULL);
    assert_int_equal(gw_hono_command_decode(m, &c, NULL), GW_OK);
    assert_int_equal(gw_hono_reqtab_add(tab, 0, &c, id3, &r), GW_ERR_INVAL);
    gw_hono_reqtab_free(tab);
}

static void test_reqtab_expiry_frees_room(void **state)
{
    pn_message_t *m = *state;
    gw_hono_reqtab_t *tab = gw_hono_reqtab_new(100, 1000);
    gw_hono_command_t c;
    char id[GW_HONO_REQ_ID_LEN + 1];
    char ids[100][GW_HONO_REQ_ID_LEN + 1];
    pn_msgid_t uuid = {.type = PN_UUID};
    for (int i = 0; i < 16; i++)
        uuid.u.as_uuid.bytes[i] = (char)i;

    make_command(m, "command/T/D", "n", "command_response/T/r", NULL, NULL);
    pn_message_set_correlation_id(m, uuid);
    assert_int_equal(gw_hono_command_decode(m, &c, NULL), GW_OK);
    for (int i = 0; i < 100; i++)
        assert_int_equal(gw_hono_reqtab_add(tab, (uint64_t)i, &c, ids[i], NULL), GW_OK);
    assert_int_equal(gw_hono_reqtab_add(tab, 999, &c, id, NULL), GW_ERR_LIMIT);
    /* at 1000 the first one (added at 0) expires: exactly one slot */
    assert_int_equal(gw_hono_reqtab_add(tab, 1000, &c, id, NULL), GW_OK);
    assert_int_equal(gw_hono_reqtab_count(tab), 100);
    assert_int_equal(gw_hono_reqtab_add(tab, 1000, &c, id, NULL), GW_ERR_LIMIT);
    /* all distinct */
    for (int i = 0; i < 100; i++)
        for (int j = i + 1; j < 100; j++)
            assert_string_not_equal(ids[i], ids[j]);
    gw_hono_request_t *req;
    assert_int_equal(
        gw_hono_reqtab_take(tab, 1010, (gw_hono_str_t){ids[20], 16}, S("T"), S("D"), &req, NULL),
        GW_OK);
    assert_int_equal(req->correlation_id.type, PN_UUID);
    assert_memory_equal(req->correlation_id.u.as_uuid.bytes, uuid.u.as_uuid.bytes, 16);
    gw_hono_request_free(req);
    /* the take at 1010 expired ids[1..10]; left: ids[11..99] but 20, and id */
    assert_int_equal(gw_hono_reqtab_count(tab), 89);
    assert_int_equal(gw_hono_reqtab_expire(tab, 1999), 88);
    assert_int_equal(gw_hono_reqtab_expire(tab, 2000), 1);
    assert_int_equal(gw_hono_reqtab_count(tab), 0);
    gw_hono_reqtab_free(tab); /* frees a table that still holds entries too: */
    tab = gw_hono_reqtab_new(4, 10);
    assert_int_equal(gw_hono_reqtab_add(tab, 0, &c, id, NULL), GW_OK);
    gw_hono_reqtab_free(tab);
}

/* The whole request/response path, as the gateway will run it. */
static void test_command_round_trip(void **state)
{
    pn_message_t *m = *state;
    gw_hono_reqtab_t *tab = gw_hono_reqtab_new(8, 60000);
    gw_hono_cmd_filter_t f;
    gw_hono_command_t c;
    gw_hono_topic_t t;
    gw_hono_request_t *req;
    gw_hono_target_t tg;
    gw_hono_identity_t gw = {S("T"), S("gw-1")};
    gw_hono_gateways_t *g = gw_hono_gateways_new();
    gw_hono_policy_t pol = {false, gw_hono_gateways_allows, g};
    char id[GW_HONO_REQ_ID_LEN + 1], topic[256], resp[256], props[512];
    size_t n;

    assert_int_equal(gw_hono_gateways_add(g, "T", "gw-1", "4711"), GW_OK);
    /* gateway subscribes for all its devices */
    assert_int_equal(fparse("c//+/q/#", &f, NULL), GW_OK);
    assert_int_equal(gw_hono_authorize(&pol, &gw, f.tenant, f.device, &tg), GW_HONO_ALLOWED);
    /* application sends a command for 4711 */
    make_command(m, "command/T/4711", "getReading", "command_response/T/app-7", "c-42", "q");
    assert_int_equal(gw_hono_command_decode(m, &c, NULL), GW_OK);
    /* the gateway may receive it for 4711 */
    assert_int_equal(gw_hono_authorize(&pol, &gw, c.tenant, c.device, &tg), GW_HONO_ALLOWED);
    assert_int_equal(gw_hono_reqtab_add(tab, 1000, &c, id, NULL), GW_OK);
    assert_int_equal(gw_hono_command_topic(&f, gw.device, &c, (gw_hono_str_t){id, 16}, topic,
                                           sizeof topic, &n),
                     GW_OK);
    char want[128];
    snprintf(want, sizeof want, "c//4711/q/%s/getReading", id);
    assert_string_equal(topic, want);
    pn_message_clear(m);

    /* the gateway answers for 4711 */
    snprintf(resp, sizeof resp, "c//4711/s/%s/200/?content-type=application%%2Fjson&unit=lx", id);
    assert_int_equal(parse(resp, &t, NULL), GW_OK);
    assert_int_equal(gw_hono_authorize(&pol, &gw, t.tenant, t.device, &tg), GW_HONO_ALLOWED);
    assert_int_equal(
        gw_hono_reqtab_take(tab, 2000, t.req_id, tg.tenant, tg.device, &req, NULL), GW_OK);
    assert_int_equal(gw_hono_build_command_response(m, req, t.status, &t,
                                                    (const uint8_t *)"{\"lumen\":200}", 13, 2001),
                     GW_OK);
    pn_message_t *x = wire(m);
    assert_string_equal(pn_message_get_address(x), "command_response/T/app-7");
    pn_msgid_t cid = pn_message_get_correlation_id(x);
    assert_int_equal(cid.type, PN_STRING);
    assert_int_equal(cid.u.as_bytes.size, 4);
    assert_memory_equal(cid.u.as_bytes.start, "c-42", 4);
    assert_int_equal(pn_message_get_creation_time(x), 2001);
    assert_string_equal(pn_message_get_content_type(x), "application/json");
    props_dump(x, props, sizeof props);
    assert_string_equal(props, "status=i:200;device_id=s:4711;tenant_id=s:T;"
                               "orig_adapter=s:hono-mqtt;unit=s:lx;");
    assert_true(body_binary(x, "{\"lumen\":200}", 13));
    pn_message_free(x);

    /* status is validated once more by the builder */
    assert_int_equal(gw_hono_build_command_response(m, req, 199, NULL, NULL, 0, 0), GW_ERR_INVAL);
    assert_int_equal(gw_hono_build_command_response(m, req, 600, NULL, NULL, 0, 0), GW_ERR_INVAL);
    /* empty response: no body, no content-type */
    assert_int_equal(gw_hono_build_command_response(m, req, 204, NULL, NULL, 0, 0), GW_OK);
    assert_null(pn_message_get_content_type(m));
    assert_true(body_binary(m, NULL, 0));
    props_dump(m, props, sizeof props);
    assert_string_equal(props,
                        "status=i:204;device_id=s:4711;tenant_id=s:T;orig_adapter=s:hono-mqtt;");
    gw_hono_request_free(req);

    /* a second response to the same request is refused */
    assert_int_equal(
        gw_hono_reqtab_take(tab, 2000, t.req_id, tg.tenant, tg.device, &req, NULL),
        GW_ERR_NOT_FOUND);
    gw_hono_reqtab_free(tab);
    gw_hono_gateways_free(g);
}

static void test_check_qos(void **state)
{
    gw_hono_reason_t r = GW_HONO_R_NONE;
    (void)state;
    for (uint8_t q = 0; q <= 2; q++) {
        assert_int_equal(gw_hono_check_qos(GW_HONO_TELEMETRY, q, &r), GW_OK);
        assert_int_equal(gw_hono_check_qos(GW_HONO_COMMAND_RESPONSE, q, &r), GW_OK);
    }
    assert_int_equal(gw_hono_check_qos(GW_HONO_EVENT, 0, &r), GW_ERR_MQTT_QOS);
    assert_int_equal(r, GW_HONO_R_QOS);
    assert_int_equal(gw_hono_check_qos(GW_HONO_EVENT, 1, &r), GW_OK);
    assert_int_equal(r, GW_HONO_R_NONE);
    assert_int_equal(gw_hono_check_qos(GW_HONO_EVENT, 2, &r), GW_OK);
    assert_int_equal(gw_hono_check_qos(GW_HONO_EVENT, 3, &r), GW_ERR_INVAL);
    assert_int_equal(gw_hono_check_qos((gw_hono_kind_t)0, 1, &r), GW_ERR_INVAL);
}

static void test_reason_names(void **state)
{
    (void)state;
    for (int i = 0; i < GW_HONO_R__COUNT; i++)
        assert_string_not_equal(gw_hono_reason_name((gw_hono_reason_t)i), "unknown");
    assert_string_equal(gw_hono_reason_name(GW_HONO_R__COUNT), "unknown");
    assert_string_equal(gw_hono_reason_name(GW_HONO_R_BAG_ESCAPE), "bag-escape");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topic_telemetry_event_forms),
        cmocka_unit_test(test_topic_command_response_forms),
        cmocka_unit_test(test_topic_errors),
        cmocka_unit_test(test_topic_id_bounds),
        cmocka_unit_test(test_bag_good),
        cmocka_unit_test(test_bag_counts_and_lengths),
        cmocka_unit_test(test_bag_errors),
        cmocka_unit_test(test_cmd_filter),
        cmocka_unit_test(test_username_split),
        cmocka_unit_test(test_authorize),
        cmocka_unit_test(test_gateways_many),
        cmocka_unit_test_setup_teardown(test_build_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_telemetry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_upload_content_type_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_ttd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_decode, setup, teardown),
        cmocka_unit_test(test_command_topic),
        cmocka_unit_test_setup_teardown(test_reqtab, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reqtab_expiry_frees_room, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_round_trip, setup, teardown),
        cmocka_unit_test(test_check_qos),
        cmocka_unit_test(test_reason_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
