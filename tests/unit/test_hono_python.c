/*
 * test_hono_python.c - the Hono mapping against a real AMQP application
 * library: python3-qpid-proton (the peer script below, written to a
 * temporary file) builds commands the way a Hono business application does,
 * and decodes the telemetry, event, empty-notification and command-response
 * messages we build, reporting every field as JSON.
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

#include <jansson.h>
#include <proton/codec.h>
#include <proton/message.h>

#include "gw/hono.h"
#include "gw/spec.h"

#define S(lit) ((gw_hono_str_t){(lit), sizeof(lit) - 1})
#define PY "/usr/bin/python3"

static const char peer_src[] =
    "#!/usr/bin/python3\n"
    "\"\"\"hono_peer.py - the application side of the Hono APIs, played by\n"
    "python3-qpid-proton, for tests/unit/test_hono_python.c.\n"
    "\n"
    "  hono_peer.py command   print hex-encoded command messages, one per line,\n"
    "                         built the way a Hono business application builds them\n"
    "  hono_peer.py decode H  decode hex-encoded message H and print its fields\n"
    "                         as one line of JSON (types kept visible)\n"
    "\"\"\"\n"
    "import json\n"
    "import sys\n"
    "import uuid\n"
    "\n"
    "from proton import Message, symbol\n"
    "\n"
    "\n"
    "def commands():\n"
    "    # request/response, Data body (Hono's Java client sends Data sections)\n"
    "    m = Message(address=\"command/DEFAULT_TENANT/4711\", subject=\"setBrightness\",\n"
    "                reply_to=\"command_response/DEFAULT_TENANT/app-1\",\n"
    "                correlation_id=\"corr-7\", content_type=\"application/json\",\n"
    "                body=b'{\"brightness\":79}')\n"
    "    m.inferred = True\n"
    "    yield m\n"
    "    # request/response, message-id only (a uuid), AmqpValue string body\n"
    "    m = Message(address=\"command/DEFAULT_TENANT/4711\", subject=\"getReading\",\n"
    "                reply_to=\"command_response/DEFAULT_TENANT/app-2\",\n"
    "                id=uuid.UUID(\"01234567-89ab-cdef-0123-456789abcdef\"), body=\"now\")\n"
    "    yield m\n"
    "    # one-way, no body\n"
    "    yield Message(address=\"command/DEFAULT_TENANT/4711\", subject=\"switchOn\")\n"
    "    # malformed: no subject\n"
    "    yield Message(address=\"command/DEFAULT_TENANT/4711\", body=b\"x\")\n"
    "\n"
    "\n"
    "def value(v):\n"
    "    if isinstance(v, bool):\n"
    "        return [\"bool\", v]\n"
    "    if isinstance(v, int):\n"
    "        return [\"int\", v]\n"
    "    if isinstance(v, bytes):\n"
    "        return [\"binary\", v.decode(\"latin-1\")]\n"
    "    if isinstance(v, uuid.UUID):\n"
    "        return [\"uuid\", str(v)]\n"
    "    if isinstance(v, symbol):\n"
    "        return [\"symbol\", str(v)]\n"
    "    if isinstance(v, str):\n"
    "        return [\"string\", v]\n"
    "    if v is None:\n"
    "        return None\n"
    "    return [type(v).__name__, str(v)]\n"
    "\n"
    "\n"
    "def decode(hexstr):\n"
    "    m = Message()\n"
    "    m.decode(bytes.fromhex(hexstr))\n"
    "    out = {\n"
    "        \"address\": m.address,\n"
    "        \"durable\": m.durable,\n"
    "        \"ttl_ms\": int(round(m.ttl * 1000)) if m.ttl else 0,\n"
    "        \"content_type\": m.content_type,\n"
    "        \"creation_time_ms\": int(round(m.creation_time * 1000)) if m.creation_time else 0,\n"
    "        \"correlation_id\": value(m.correlation_id),\n"
    "        \"properties\": [[k, value(v)] for k, v in (m.properties or {}).items()],\n"
    "        \"annotations\": {str(k): value(v) for k, v in (m.annotations or {}).items()},\n"
    "        \"body\": value(m.body),\n"
    "        \"inferred\": m.inferred,\n"
    "    }\n"
    "    print(json.dumps(out, sort_keys=True))\n"
    "\n"
    "\n"
    "def main():\n"
    "    if sys.argv[1:] == [\"command\"]:\n"
    "        for m in commands():\n"
    "            print(m.encode().hex())\n"
    "    elif len(sys.argv) == 3 and sys.argv[1] == \"decode\":\n"
    "        decode(sys.argv[2])\n"
    "    else:\n"
    "        sys.exit(\"usage: hono_peer.py command | decode HEX\")\n"
    "\n"
    "\n"
    "if __name__ == \"__main__\":\n"
    "    main()\n"
    "\n";

static char peer_path[64];

static int group_setup(void **state)
{
    (void)state;
    snprintf(peer_path, sizeof peer_path, "/tmp/gw_hono_peer_XXXXXX.py");
    int fd = mkstemps(peer_path, 3);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, peer_src, sizeof peer_src - 1);
    close(fd);
    return n == (ssize_t)(sizeof peer_src - 1) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    unlink(peer_path);
    return 0;
}

static void need_peer(void)
{
    if (access(PY, X_OK) != 0)
        fail_msg("%s not found: python3-qpid-proton is a test dependency", PY);
}

static size_t unhex(const char *hex, char *out, size_t cap)
{
    size_t n = 0;
    while (hex[0] && hex[0] != '\n' && hex[1] && n < cap) {
        unsigned v;
        if (sscanf(hex, "%2x", &v) != 1)
            fail_msg("bad hex from peer");
        out[n++] = (char)v;
        hex += 2;
    }
    return n;
}

static void test_commands_from_python(void **state)
{
    static char line[65536];
    static char bytes[32768];
    char cmd[1200], why[200], topic[512], id[GW_HONO_REQ_ID_LEN + 1];
    pn_message_t *m = pn_message();
    gw_hono_reqtab_t *tab = gw_hono_reqtab_new(16, 60000);
    gw_hono_cmd_filter_t f;
    gw_hono_command_t c;
    gw_hono_reason_t r;
    size_t n;
    int count = 0;
    (void)state;

    need_peer();
    assert_int_equal(gw_hono_cmd_filter_parse("c///q/#", 7, &f, NULL), GW_OK);
    snprintf(cmd, sizeof cmd, "%s %s command", PY, peer_path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(line, sizeof line, p) != NULL) {
        size_t len = unhex(line, bytes, sizeof bytes);
        assert_int_equal(gw_spec_message_decode(m, bytes, len, why, sizeof why), GW_OK);
        gw_err_t err = gw_hono_command_decode(m, &c, &r);
        switch (count++) {
        case 0: /* request/response, correlation-id, Data body */
            assert_int_equal(err, GW_OK);
            assert_int_equal(c.tenant.len, 14);
            assert_memory_equal(c.device.ptr, "4711", 4);
            assert_int_equal(c.name.len, 13);
            assert_false(c.one_way);
            assert_int_equal(c.reply_id.len, 5);
            assert_memory_equal(c.reply_id.ptr, "app-1", 5);
            assert_int_equal(c.correlation_id.type, PN_STRING);
            assert_memory_equal(c.correlation_id.u.as_bytes.start, "corr-7", 6);
            assert_int_equal(c.content_type.len, 16);
            assert_int_equal(c.payload_len, 17);
            assert_memory_equal(c.payload, "{\"brightness\":79}", 17);
            assert_int_equal(gw_hono_reqtab_add(tab, 0, &c, id, NULL), GW_OK);
            assert_int_equal(gw_hono_command_topic(&f, S("4711"), &c, (gw_hono_str_t){id, 16},
                                                   topic, sizeof topic, &n),
                             GW_OK);
            assert_int_equal(strncmp(topic, "c///q/", 6), 0);
            assert_string_equal(topic + 6 + 16, "/setBrightness");
            break;
        case 1: /* message-id (uuid) only, AmqpValue string body */
            assert_int_equal(err, GW_OK);
            assert_int_equal(c.correlation_id.type, PN_UUID);
            assert_int_equal((unsigned char)c.correlation_id.u.as_uuid.bytes[0], 0x01);
            assert_int_equal((unsigned char)c.correlation_id.u.as_uuid.bytes[15], 0xef);
            assert_int_equal(c.payload_len, 3);
            assert_memory_equal(c.payload, "now", 3);
            break;
        case 2: /* one-way, no body */
            assert_int_equal(err, GW_OK);
            assert_true(c.one_way);
            assert_int_equal(c.payload_len, 0);
            assert_int_equal(gw_hono_command_topic(&f, S("4711"), &c, (gw_hono_str_t){"", 0},
                                                   topic, sizeof topic, &n),
                             GW_OK);
            assert_string_equal(topic, "c///q//switchOn");
            break;
        case 3: /* no subject */
            assert_int_equal(err, GW_ERR_SPEC_FIELD);
            assert_int_equal(r, GW_HONO_R_CMD_SUBJECT);
            break;
        default:
            fail_msg("unexpected extra line from the peer");
        }
    }
    assert_int_equal(pclose(p), 0);
    assert_int_equal(count, 4);
    gw_hono_reqtab_free(tab);
    pn_message_free(m);
}

/* Encode msg, have python decode it, return its JSON report (caller frees). */
static json_t *python_decode(pn_message_t *msg)
{
    static char buf[16384], hex[32768 + 1], cmd[34000];
    size_t size = sizeof buf;
    json_error_t jerr;
    assert_int_equal(pn_message_encode(msg, buf, &size), 0);
    for (size_t i = 0; i < size; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)buf[i]);
    snprintf(cmd, sizeof cmd, "%s %s decode %s", PY, peer_path, hex);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    json_t *j = json_loadf(p, 0, &jerr);
    assert_int_equal(pclose(p), 0);
    if (j == NULL)
        fail_msg("peer output is not JSON: %s", jerr.text);
    return j;
}

static const char *jstr(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* properties as the peer saw them: "k=type:value;..." in wire order */
static void jprops(json_t *j, char *out, size_t cap)
{
    size_t n = 0, i;
    json_t *kv;
    out[0] = '\0';
    json_array_foreach(json_object_get(j, "properties"), i, kv)
    {
        json_t *tv = json_array_get(kv, 1);
        json_t *v = json_array_get(tv, 1);
        if (json_is_integer(v))
            n += (size_t)snprintf(out + n, cap - n, "%s=%s:%lld;",
                                  json_string_value(json_array_get(kv, 0)),
                                  json_string_value(json_array_get(tv, 0)),
                                  (long long)json_integer_value(v));
        else
            n += (size_t)snprintf(out + n, cap - n, "%s=%s:%s;",
                                  json_string_value(json_array_get(kv, 0)),
                                  json_string_value(json_array_get(tv, 0)), json_string_value(v));
    }
}

static void test_python_reads_ours(void **state)
{
    pn_message_t *m = pn_message();
    gw_hono_topic_t t;
    char props[1024];
    json_t *j;
    (void)state;
    need_peer();

    /* an event from gateway gw-1 for device 4712 */
    static const char topic[] = "e//4712/?content-type=application%2Fjson&hono-ttl=30&seqNo=7";
    assert_int_equal(gw_hono_topic_parse(topic, sizeof topic - 1, &t, NULL), GW_OK);
    gw_hono_upload_t u = {.kind = GW_HONO_EVENT, .tenant = S("DEFAULT_TENANT"),
                          .device = t.device, .topic = &t,
                          .orig_address = {topic, sizeof topic - 1}, .qos = 1, .retain = true,
                          .payload = (const uint8_t *)"{\"alarm\":1}", .payload_len = 11,
                          .now_ms = 1700000000123ull};
    assert_int_equal(gw_hono_build_upload(m, &u, NULL), GW_OK);
    j = python_decode(m);
    assert_string_equal(jstr(j, "address"), "event/DEFAULT_TENANT");
    assert_true(json_is_true(json_object_get(j, "durable")));
    assert_int_equal(json_integer_value(json_object_get(j, "ttl_ms")), 30000);
    assert_string_equal(jstr(j, "content_type"), "application/json");
    assert_int_equal(json_integer_value(json_object_get(j, "creation_time_ms")), 1700000000123ll);
    jprops(j, props, sizeof props);
    assert_string_equal(props, "device_id=string:4712;tenant_id=string:DEFAULT_TENANT;"
                               "orig_adapter=string:hono-mqtt;orig_address=string:e//4712/"
                               "?content-type=application%2Fjson&hono-ttl=30&seqNo=7;"
                               "qos=int:1;seqNo=string:7;");
    json_t *ret = json_object_get(json_object_get(j, "annotations"), "x-opt-retain");
    assert_string_equal(json_string_value(json_array_get(ret, 0)), "bool");
    assert_true(json_is_true(json_array_get(ret, 1)));
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "body"), 0)),
                        "binary");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "body"), 1)),
                        "{\"alarm\":1}");
    assert_true(json_is_true(json_object_get(j, "inferred"))); /* a Data section */
    json_decref(j);

    /* telemetry without bag */
    gw_hono_upload_t tu = {.kind = GW_HONO_TELEMETRY, .tenant = S("T"), .device = S("4711"),
                           .payload = (const uint8_t *)"21.5", .payload_len = 4, .now_ms = 5};
    assert_int_equal(gw_hono_build_upload(m, &tu, NULL), GW_OK);
    j = python_decode(m);
    assert_string_equal(jstr(j, "address"), "telemetry/T");
    assert_false(json_is_true(json_object_get(j, "durable")));
    assert_string_equal(jstr(j, "content_type"), "application/octet-stream");
    assert_int_equal(json_object_size(json_object_get(j, "annotations")), 0);
    jprops(j, props, sizeof props);
    assert_string_equal(props, "device_id=string:4711;tenant_id=string:T;"
                               "orig_adapter=string:hono-mqtt;qos=int:0;");
    json_decref(j);

    /* empty notification */
    assert_int_equal(gw_hono_build_ttd(m, S("T"), S("4711"), -1, 77), GW_OK);
    j = python_decode(m);
    assert_string_equal(jstr(j, "address"), "event/T");
    assert_true(json_is_true(json_object_get(j, "durable")));
    assert_string_equal(jstr(j, "content_type"), GW_HONO_CT_EMPTY_NOTIFICATION);
    assert_true(json_is_null(json_object_get(j, "body")));
    jprops(j, props, sizeof props);
    assert_string_equal(props, "device_id=string:4711;tenant_id=string:T;"
                               "orig_adapter=string:hono-mqtt;ttd=int:-1;");
    json_decref(j);

    /* command response */
    gw_hono_request_t req = {.tenant = S("T"), .device = S("4711"),
                             .reply_to = S("command_response/T/app-1"),
                             .correlation_id = {.type = PN_STRING}};
    req.correlation_id.u.as_bytes = pn_bytes(6, "corr-7");
    static const char resp[] = "c///s/0123456789abcdef/201/?content-type=text%2Fplain";
    assert_int_equal(gw_hono_topic_parse(resp, sizeof resp - 1, &t, NULL), GW_OK);
    assert_int_equal(gw_hono_build_command_response(m, &req, t.status, &t,
                                                    (const uint8_t *)"ok", 2, 9),
                     GW_OK);
    j = python_decode(m);
    assert_string_equal(jstr(j, "address"), "command_response/T/app-1");
    json_t *cid = json_object_get(j, "correlation_id");
    assert_string_equal(json_string_value(json_array_get(cid, 0)), "string");
    assert_string_equal(json_string_value(json_array_get(cid, 1)), "corr-7");
    assert_string_equal(jstr(j, "content_type"), "text/plain");
    jprops(j, props, sizeof props);
    assert_string_equal(props, "status=int:201;device_id=string:4711;tenant_id=string:T;"
                               "orig_adapter=string:hono-mqtt;");
    json_decref(j);
    pn_message_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commands_from_python),
        cmocka_unit_test(test_python_reads_ours),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
