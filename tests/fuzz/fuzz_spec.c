/*
 * fuzz_spec.c - libFuzzer target for the spec-message parser (core/src/spec).
 *
 * The input is the bytes of one received AMQP message (a transfer's
 * payload). Two receive paths are fuzzed:
 *  A. gw_spec_message_decode() into a REUSED pn_message_t (still holding
 *     the previous input's message, as a link's message is in production):
 *     refused input must leave it cleared; accepted input must encode to
 *     the same bytes as the same input decoded into a fresh message (no
 *     stale field), its body must hold exactly the bytes of the Data
 *     sections, an int message-id must be recovered as a ulong;
 *     Proton's view of the sections must match the scanner's: each
 *     section decoded alone sets the same header, annotations, properties
 *     and AmqpValue as the whole message;
 *  B. proton's raw pn_message_decode() of a cleared message, for
 *     non-empty input (no crash; the spec decoders cope with its output).
 * Each decoded message then goes through gw_spec_decode() and
 * gw_spec_decode_opts() for every single kind and every link kind (will,
 * subscription control, pubrel, publish address, topic address with a link
 * target). The results must agree with a reference reading of the subject,
 * `why` must be one non-empty line on every refusal, a refused *out must be
 * empty, and the entries array is bounded by the input size. Every message
 * that decodes is re-encoded with the matching gw_spec_encode_*(), encoded
 * to bytes, decoded again: the fields must be equal, and encoding that
 * again must give the same bytes. Any mismatch calls abort().
 *
 * Memory: every pn_message_t and encode buffer is created once and reused;
 * run.sh caps RSS and single mallocs.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proton/codec.h>
#include <proton/message.h>

#include "gw/spec.h"

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "fuzz_spec: check failed at %s:%d: %s\n", __FILE__, \
                    __LINE__, #cond);                                           \
            abort();                                                            \
        }                                                                       \
    } while (0)

#define WHY_CAP 256
#define CANARY 0x5a

#define BIT(k) GW_SPEC_KIND_BIT(GW_SPEC_##k)

static pn_message_t *g_in;    /* path A: reused across inputs */
static pn_message_t *g_raw;   /* path B */
static pn_message_t *g_fresh; /* path A again, cleared first */
static pn_message_t *g_enc;   /* re-encoded */
static pn_message_t *g_back;  /* decoded from the re-encoding */
static pn_message_t *g_one;   /* one section alone */
static pn_data_t *g_split;    /* proton's split into sections */
static pn_rwbytes_t g_buf1, g_buf2, g_buf3;
static bool g_verbose; /* env FUZZ_SPEC_VERBOSE: one line per decode */
static unsigned long g_roundtrips;

static bool check_sections(const char *bytes, size_t size, const gw_spec_sections_t *sec,
                           pn_message_t *whole);

/* Link targets for the topic-address decode: valid, invalid, empty. */
static const char *const g_targets[] = {"fuzz/target", "a/+/b", "", "$SYS/x"};

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static bool str_eq(gw_spec_str_t a, gw_spec_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static size_t encode(pn_message_t *msg, pn_rwbytes_t *buf)
{
    ssize_t n = pn_message_encode2(msg, buf);
    CHECK(n > 0);
    return (size_t)n;
}

/* The why contract: NUL-terminated within whylen, one line, non-empty on
 * a refusal (the services put it into the rejection's description). */
static void check_why(const char *why, size_t whylen, gw_err_t err)
{
    size_t n = strnlen(why, whylen);
    CHECK(n < whylen);
    for (size_t i = 0; i < n; i++)
        CHECK((unsigned char)why[i] >= 0x20 && why[i] != 0x7f);
    if (err != GW_OK && whylen > 1)
        CHECK(n > 0);
    for (size_t i = whylen; i < WHY_CAP + 8; i++)
        CHECK((unsigned char)why[i] == CANARY);
}

/* Reference reading of the subject (spec "Messages"). *known false for
 * an unknown subject. */
static gw_spec_kind_t ref_kind(pn_message_t *msg, bool *known, bool *has_subject)
{
    static const char *const subjects[] = {
        [GW_SPEC_WILL] = "will",
        [GW_SPEC_WILL_CLEAR] = "will-clear",
        [GW_SPEC_LIST] = "list",
        [GW_SPEC_SUBSCRIPTIONS] = "subscriptions",
        [GW_SPEC_CLOSE] = "close",
        [GW_SPEC_SUBSCRIBE] = "subscribe",
        [GW_SPEC_UNSUBSCRIBE] = "unsubscribe",
        [GW_SPEC_PUBREL] = "pubrel",
        [GW_SPEC_WILL_PUBLISH] = "will-publish",
        [GW_SPEC_OFFLINE] = "offline",
        [GW_SPEC_STOLEN] = "stolen",
    };
    const char *s = pn_message_get_subject(msg);
    *known = true;
    *has_subject = s != NULL;
    if (!s)
        return GW_SPEC_PUBLISH;
    for (int k = GW_SPEC_WILL; k <= GW_SPEC_STOLEN; k++) {
        if (strcmp(s, subjects[k]) == 0)
            return (gw_spec_kind_t)k;
    }
    *known = false;
    return GW_SPEC_PUBLISH;
}

static bool entries_eq(const gw_spec_msg_t *a, const gw_spec_msg_t *b)
{
    if (a->count != b->count)
        return false;
    for (size_t i = 0; i < a->count; i++) {
        if (!str_eq(a->entries[i].filter, b->entries[i].filter) ||
            a->entries[i].qos != b->entries[i].qos)
            return false;
    }
    return true;
}

/* Field-by-field equality of two decodes of the same message. */
static bool msg_eq(const gw_spec_msg_t *a, const gw_spec_msg_t *b)
{
    const gw_spec_publish_t *p = &a->publish, *q = &b->publish;
    return a->kind == b->kind && str_eq(p->topic, q->topic) && str_eq(p->payload, q->payload) &&
           p->qos == q->qos && p->retain == q->retain && p->durable == q->durable &&
           p->delivery_count == q->delivery_count && p->has_message_id == q->has_message_id &&
           p->message_id == q->message_id && str_eq(a->correlation_id, b->correlation_id) &&
           str_eq(a->reply_to, b->reply_to) && a->has_message_id == b->has_message_id &&
           a->message_id == b->message_id && a->has_session_present == b->has_session_present &&
           a->session_present == b->session_present && entries_eq(a, b) &&
           a->has_delivery == b->has_delivery && str_eq(a->delivery_link, b->delivery_link) &&
           a->window == b->window && a->client_serial == b->client_serial;
}

static bool msg_empty(const gw_spec_msg_t *m)
{
    static const gw_spec_msg_t zero;
    return memcmp(m, &zero, sizeof(zero)) == 0;
}

/* Client id of a $mqtt.to.<id>.<which> address, for re-encoding. False if
 * the string is no such address (the decoder does not require one) or the
 * id holds a NUL (no MQTT client id can, MQTT-1.5.3-2). */
static bool client_of(gw_spec_str_t addr, gw_spec_client_addr_t want, gw_spec_str_t *id)
{
    gw_spec_client_addr_t which;
    if (gw_spec_addr_parse(NULL, addr.ptr, addr.len, &which, &id->ptr, &id->len) != GW_OK ||
        which != want || memchr(id->ptr, '\0', id->len))
        return false;
    return true;
}

/* ------------------------------------------------------------------ */
/* Round trip                                                          */
/* ------------------------------------------------------------------ */

/* Encode m into msg with the matching encoder. False: m cannot be
 * re-encoded (addresses that are not per-client addresses). */
/* The shared-delivery registration of m (spec 3.12) onto msg, which holds
 * the encoded LIST/CLOSE/OFFLINE; reply_to: set it to the link (a LIST
 * answered on the L4s). False if the link name holds a NUL. */
static bool add_delivery_like(pn_message_t *msg, const gw_spec_msg_t *m, bool reply_to)
{
    if (memchr(m->delivery_link.ptr, '\0', m->delivery_link.len))
        return false;
    char *link = malloc(m->delivery_link.len + 1);
    CHECK(link != NULL);
    memcpy(link, m->delivery_link.ptr, m->delivery_link.len);
    link[m->delivery_link.len] = '\0';
    CHECK(gw_spec_add_delivery(msg, link, m->window, m->client_serial) == GW_OK);
    if (reply_to)
        CHECK(pn_message_set_reply_to(msg, link) == 0);
    free(link);
    return true;
}

static bool encode_like(pn_message_t *msg, const gw_spec_msg_t *m)
{
    gw_spec_str_t id, id2;
    gw_err_t err;

    switch (m->kind) {
    case GW_SPEC_PUBLISH: err = gw_spec_encode_publish(msg, &m->publish); break;
    case GW_SPEC_WILL: err = gw_spec_encode_will(msg, &m->publish); break;
    case GW_SPEC_WILL_CLEAR: err = gw_spec_encode_will_clear(msg); break;
    case GW_SPEC_LIST: {
        /* reply-to: the client's control address, or (spec 3.12) its L4s */
        bool on_l4s = m->has_delivery && str_eq(m->reply_to, m->delivery_link);
        if (!client_of(m->correlation_id, GW_SPEC_ADDR_PUBLISH, &id) ||
            (!on_l4s && (!client_of(m->reply_to, GW_SPEC_ADDR_CONTROL, &id2) || !str_eq(id, id2))))
            return false;
        err = gw_spec_encode_list(msg, NULL, id.ptr, id.len);
        if (err == GW_OK && m->has_delivery && !add_delivery_like(msg, m, on_l4s))
            return false;
        break;
    }
    case GW_SPEC_SUBSCRIPTIONS:
        err = m->has_session_present
                  ? gw_spec_encode_session(msg, m->session_present, m->entries, m->count)
                  : gw_spec_encode_subscriptions(msg, m->entries, m->count);
        break;
    case GW_SPEC_CLOSE:
        if (!client_of(m->correlation_id, GW_SPEC_ADDR_PUBLISH, &id))
            return false;
        err = gw_spec_encode_close(msg, NULL, id.ptr, id.len);
        if (err == GW_OK && m->has_delivery && !add_delivery_like(msg, m, false))
            return false;
        break;
    case GW_SPEC_OFFLINE:
        if (!client_of(m->correlation_id, GW_SPEC_ADDR_PUBLISH, &id))
            return false;
        CHECK(m->has_delivery);
        err = gw_spec_encode_close(msg, NULL, id.ptr, id.len);
        if (err == GW_OK && !add_delivery_like(msg, m, false))
            return false;
        pn_message_set_subject(msg, GW_SPEC_SUBJECT_OFFLINE);
        break;
    case GW_SPEC_WILL_PUBLISH: err = gw_spec_encode_will_publish(msg, NULL); break;
    case GW_SPEC_STOLEN:
        pn_message_clear(msg);
        err = pn_message_set_subject(msg, GW_SPEC_SUBJECT_STOLEN) ? GW_ERR_NOMEM : GW_OK;
        break;
    case GW_SPEC_SUBSCRIBE:
    case GW_SPEC_UNSUBSCRIBE:
        if (!client_of(m->correlation_id, GW_SPEC_ADDR_PUBLISH, &id))
            return false;
        CHECK(m->has_message_id && m->message_id >= 1 && m->message_id <= 65535);
        err = (m->kind == GW_SPEC_SUBSCRIBE ? gw_spec_encode_subscribe : gw_spec_encode_unsubscribe)(
            msg, NULL, id.ptr, id.len, (uint16_t)m->message_id, m->entries, m->count);
        break;
    case GW_SPEC_PUBREL: err = gw_spec_encode_pubrel(msg, m->message_id); break;
    default: CHECK(!"unknown kind"); return false;
    }
    /* Everything the decoder accepted is something our encoders can send. */
    CHECK(err == GW_OK);
    return true;
}

/* What must survive encode -> bytes -> decode. */
static void check_same(const gw_spec_msg_t *m, const gw_spec_msg_t *b)
{
    CHECK(b->kind == m->kind);
    switch (m->kind) {
    case GW_SPEC_PUBLISH:
    case GW_SPEC_WILL:
        CHECK(str_eq(b->publish.topic, m->publish.topic));
        CHECK(str_eq(b->publish.payload, m->publish.payload));
        CHECK(b->publish.qos == m->publish.qos);
        CHECK(b->publish.retain == m->publish.retain);
        CHECK(b->publish.durable == (m->publish.qos > 0)); /* encoders: durable = qos > 0 */
        CHECK(b->publish.delivery_count == m->publish.delivery_count);
        if (m->kind == GW_SPEC_PUBLISH) {
            CHECK(b->publish.has_message_id == m->publish.has_message_id);
            if (m->publish.has_message_id)
                CHECK(b->publish.message_id == m->publish.message_id);
        } else {
            CHECK(!b->publish.has_message_id); /* a will carries no packet id */
        }
        break;
    case GW_SPEC_WILL_CLEAR:
    case GW_SPEC_WILL_PUBLISH:
    case GW_SPEC_STOLEN: break;
    case GW_SPEC_LIST:
        CHECK(str_eq(b->reply_to, m->reply_to));
        /* fall through */
    case GW_SPEC_CLOSE:
    case GW_SPEC_OFFLINE:
        CHECK(str_eq(b->correlation_id, m->correlation_id));
        CHECK(b->has_delivery == m->has_delivery);
        if (m->has_delivery) {
            CHECK(str_eq(b->delivery_link, m->delivery_link));
            CHECK(b->window == m->window && b->client_serial == m->client_serial);
        }
        break;
    case GW_SPEC_SUBSCRIPTIONS:
        CHECK(b->has_session_present == m->has_session_present);
        CHECK(b->session_present == m->session_present);
        CHECK(entries_eq(b, m));
        break;
    case GW_SPEC_SUBSCRIBE:
    case GW_SPEC_UNSUBSCRIBE:
        CHECK(str_eq(b->correlation_id, m->correlation_id));
        CHECK(b->has_message_id && b->message_id == m->message_id);
        CHECK(entries_eq(b, m));
        break;
    case GW_SPEC_PUBREL: CHECK(b->has_message_id && b->message_id == m->message_id); break;
    }
}

static void roundtrip(const gw_spec_msg_t *m)
{
    gw_spec_msg_t b, c;
    char why[WHY_CAP];
    size_t n1, n2;

    if (!encode_like(g_enc, m))
        return;
    g_roundtrips++;
    n1 = encode(g_enc, &g_buf1);
    CHECK(gw_spec_message_decode(g_back, g_buf1.start, n1, why, sizeof(why)) == GW_OK);
    CHECK(gw_spec_decode_kinds(g_back, GW_SPEC_KIND_BIT(m->kind), &b, why, sizeof(why)) == GW_OK);
    check_same(m, &b);
    /* Also through the all-kinds decoder: the encoding picks the kind. */
    CHECK(gw_spec_decode(g_back, &c, why, sizeof(why)) == GW_OK);
    CHECK(msg_eq(&b, &c));
    gw_spec_msg_clear(&c);
    /* Encoding is a function of the fields: re-encoding gives the same bytes. */
    CHECK(encode_like(g_enc, &b));
    n2 = encode(g_enc, &g_buf2);
    CHECK(n2 == n1 && memcmp(g_buf1.start, g_buf2.start, n1) == 0);
    gw_spec_msg_clear(&b);
}

/* ------------------------------------------------------------------ */
/* Decoding with every option set                                      */
/* ------------------------------------------------------------------ */

static gw_err_t decode_checked(pn_message_t *msg, const gw_spec_decode_opts_t *o,
                               gw_spec_msg_t *out, size_t size, size_t whylen)
{
    char why[WHY_CAP + 8];
    gw_err_t err;

    memset(why, CANARY, sizeof(why));
    err = gw_spec_decode_opts(msg, o, out, why, whylen);
    check_why(why, whylen, err);
    if (err != GW_OK) {
        CHECK(msg_empty(out));
        CHECK(err == GW_ERR_SPEC_SUBJECT || err == GW_ERR_SPEC_FIELD ||
              err == GW_ERR_SPEC_BODY || err == GW_ERR_NOMEM || err == GW_ERR_MQTT_UTF8 ||
              (err >= GW_ERR_MQTT_TOPIC_EMPTY && err <= GW_ERR_MQTT_TOPIC_TOO_LONG));
        return err;
    }
    CHECK(o->allowed & GW_SPEC_KIND_BIT(out->kind));
    /* Bounded allocation: each entry takes >= 2 bytes of input (a str8
     * header at least; the value or next element at least one more). */
    CHECK(out->count <= GW_SPEC_MAX_ENTRIES && out->count <= size / 2);
    CHECK((out->count == 0) == (out->entries == NULL));
    switch (out->kind) {
    case GW_SPEC_PUBLISH:
    case GW_SPEC_WILL:
        CHECK(out->publish.qos <= 2 && out->publish.topic.len > 0);
        break;
    case GW_SPEC_SUBSCRIBE:
    case GW_SPEC_UNSUBSCRIBE:
    case GW_SPEC_PUBREL:
        CHECK(out->has_message_id && out->message_id >= 1 && out->message_id <= 65535);
        break;
    default: break;
    }
    for (size_t i = 0; i < out->count; i++)
        CHECK(out->entries[i].qos <= 2 && out->entries[i].filter.len > 0);
    return err;
}

static void fuzz_decoded(pn_message_t *msg, size_t size, size_t whylen)
{
    bool known, has_subject;
    gw_spec_kind_t kind = ref_kind(msg, &known, &has_subject);
    gw_spec_decode_opts_t all = {.allowed = GW_SPEC_KIND_ALL};
    gw_spec_msg_t ref, m;
    gw_err_t ref_err, err;

    /* 1. every kind allowed */
    ref_err = decode_checked(msg, &all, &ref, size, WHY_CAP);
    if (g_verbose)
        fprintf(stderr, "fuzz_spec: %s: %s\n", msg == g_in ? "spec" : "raw",
                ref_err == GW_OK ? gw_spec_kind_name(ref.kind) : gw_err_name(ref_err));
    if (!known)
        CHECK(ref_err == GW_ERR_SPEC_SUBJECT);
    if (ref_err == GW_OK) {
        CHECK(ref.kind == kind);
        roundtrip(&ref);
    }
    /* the same again, with a short why buffer: same result */
    err = decode_checked(msg, &all, &m, size, whylen);
    CHECK(err == ref_err);
    if (err == GW_OK)
        CHECK(msg_eq(&m, &ref));
    gw_spec_msg_clear(&m);

    /* 2. one kind at a time: only the subject's kind passes, with the
     * same result as with every kind allowed */
    for (int k = GW_SPEC_PUBLISH; k <= GW_SPEC_STOLEN; k++) {
        gw_spec_decode_opts_t o = {.allowed = GW_SPEC_KIND_BIT(k)};
        err = decode_checked(msg, &o, &m, size, WHY_CAP);
        if (!known || (gw_spec_kind_t)k != kind) {
            CHECK(err == GW_ERR_SPEC_SUBJECT);
        } else {
            CHECK(err == ref_err);
            if (err == GW_OK)
                CHECK(msg_eq(&m, &ref));
        }
        gw_spec_msg_clear(&m);
    }

    /* 3. the link kinds of the services */
    static const unsigned control_sets[] = {
        BIT(WILL) | BIT(WILL_CLEAR),                              /* will service */
        BIT(WILL) | BIT(WILL_CLEAR) | BIT(WILL_PUBLISH),          /* will service, L1s */
        BIT(LIST) | BIT(CLOSE) | BIT(SUBSCRIBE) | BIT(UNSUBSCRIBE) |
            BIT(OFFLINE),                                         /* subscription control */
        BIT(PUBREL),                                              /* $mqtt.<id>.pubrel */
        BIT(SUBSCRIPTIONS),                                       /* gateway control */
    };
    for (size_t i = 0; i < sizeof(control_sets) / sizeof(control_sets[0]); i++) {
        gw_spec_decode_opts_t o = {.allowed = control_sets[i]};
        err = decode_checked(msg, &o, &m, size, WHY_CAP);
        if (known && (o.allowed & GW_SPEC_KIND_BIT(kind))) {
            CHECK(err == ref_err);
            if (err == GW_OK)
                CHECK(msg_eq(&m, &ref));
        } else {
            CHECK(err == GW_ERR_SPEC_SUBJECT);
        }
        gw_spec_msg_clear(&m);
    }

    /* 4. publish address (L4): PUBREL, everything else is a publication */
    gw_spec_msg_t pub;
    gw_spec_decode_opts_t po = {.allowed = BIT(PUBLISH) | BIT(PUBREL), .others_are_publish = true};
    gw_err_t pub_err = decode_checked(msg, &po, &pub, size, WHY_CAP);
    if (known && kind == GW_SPEC_PUBREL) {
        CHECK(pub_err == ref_err);
        if (pub_err == GW_OK)
            CHECK(msg_eq(&pub, &ref));
    } else {
        CHECK(pub_err != GW_ERR_SPEC_SUBJECT);
        if (pub_err == GW_OK)
            CHECK(pub.kind == GW_SPEC_PUBLISH);
        if (!has_subject) {
            CHECK(pub_err == ref_err);
            if (pub_err == GW_OK)
                CHECK(msg_eq(&pub, &ref));
        }
    }
    if (pub_err == GW_OK && pub.kind == GW_SPEC_PUBLISH)
        roundtrip(&pub);

    /* 5. topic address with a link target: every message is a publication
     * whose topic is the target */
    for (size_t t = 0; t < sizeof(g_targets) / sizeof(g_targets[0]); t++) {
        gw_spec_decode_opts_t o = {.allowed = BIT(PUBLISH), .others_are_publish = true,
                                   .topic = g_targets[t], .topic_len = strlen(g_targets[t])};
        err = decode_checked(msg, &o, &m, size, WHY_CAP);
        if (t == 1 || t == 2) {
            CHECK(err != GW_OK); /* invalid / empty target */
        } else if (err == GW_OK) {
            CHECK(m.kind == GW_SPEC_PUBLISH && m.publish.topic.ptr == g_targets[t]);
            /* the same publication as on the publish address, but the topic */
            if (pub_err == GW_OK && pub.kind == GW_SPEC_PUBLISH) {
                CHECK(str_eq(m.publish.payload, pub.publish.payload));
                CHECK(m.publish.qos == pub.publish.qos && m.publish.retain == pub.publish.retain);
            }
            roundtrip(&m);
        }
        gw_spec_msg_clear(&m);
    }
    gw_spec_msg_clear(&pub);
    gw_spec_msg_clear(&ref);
}

/* ------------------------------------------------------------------ */
/* Receive paths                                                       */
/* ------------------------------------------------------------------ */

static void check_cleared(pn_message_t *msg)
{
    CHECK(pn_message_get_subject(msg) == NULL);
    CHECK(pn_message_get_address(msg) == NULL);
    CHECK(pn_message_get_reply_to(msg) == NULL);
    CHECK(pn_message_get_id(msg).type == PN_NULL);
    CHECK(pn_message_get_correlation_id(msg).type == PN_NULL);
    CHECK(pn_data_size(pn_message_body(msg)) == 0);
    CHECK(pn_data_size(pn_message_annotations(msg)) == 0);
    CHECK(!pn_message_is_durable(msg));
}

static void fuzz_spec_path(const uint8_t *data, size_t size, size_t whylen)
{
    const char *bytes = (const char *)data;
    char why[WHY_CAP + 8];
    gw_spec_sections_t sec;
    gw_err_t err, scan;

    memset(why, CANARY, sizeof(why));
    scan = gw_spec_scan_sections(bytes, size, &sec);
    /* g_in still holds the previous input's message */
    err = gw_spec_message_decode(g_in, bytes, size, why, whylen);
    check_why(why, whylen, err);
    if (g_verbose && err != GW_OK)
        fprintf(stderr, "fuzz_spec: spec: refused: %s\n", why);
    if (err != GW_OK) {
        CHECK(err == GW_ERR_SPEC_BODY || err == GW_ERR_NOMEM);
        check_cleared(g_in);
        return;
    }
    CHECK(scan == GW_OK && sec.symbolic_sections == 0);
    bool disagree = check_sections(bytes, size, &sec, g_in);
    CHECK(sec.value_sections + (sec.data_sections > 0) + (sec.sequence_sections > 0) <= 1);

    /* Data sections: the body is exactly their concatenation. */
    if (sec.data_sections > 0) {
        pn_data_t *body = pn_message_body(g_in);
        bool binary;
        pn_data_rewind(body);
        binary = pn_data_next(body) && pn_data_type(body) == PN_BINARY;
        if (!binary || pn_data_get_binary(body).size != sec.data_bytes ||
            !pn_message_is_inferred(g_in)) {
            /* tests/fuzz/repro/README.md: proton read the sections
             * differently from gw_spec_scan_sections() */
            CHECK(disagree);
        }
    }
    /* An int message-id (not a ulong on the wire) is recovered. */
    if (sec.int_message_id) {
        pn_atom_t id = pn_message_get_id(g_in);
        CHECK((id.type == PN_ULONG && id.u.as_ulong == sec.message_id) || disagree);
    }
    /* No stale field of the previous message: the same bytes decoded into
     * a cleared message encode identically. */
    pn_message_clear(g_fresh);
    CHECK(gw_spec_message_decode(g_fresh, bytes, size, NULL, 0) == GW_OK);
    size_t n1 = encode(g_in, &g_buf3);
    size_t n2 = encode(g_fresh, &g_buf1);
    CHECK(n1 == n2 && memcmp(g_buf3.start, g_buf1.start, n1) == 0);

    fuzz_decoded(g_in, size, whylen);
}

static bool cstr_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* pn_data_format() of both, compared; true if either does not fit. */
static bool data_same(pn_data_t *a, pn_data_t *b)
{
    static char fa[4096], fb[4096];
    size_t la = sizeof(fa), lb = sizeof(fb);
    if (pn_data_format(a, fa, &la) != 0 || pn_data_format(b, fb, &lb) != 0)
        return true;
    return la == lb && memcmp(fa, fb, la) == 0;
}

/*
 * Proton's view of the sections must be the scanner's: split the input
 * with proton's generic decoder (pn_data_decode, one section at a time),
 * decode each known section ALONE into g_one and compare what it sets with
 * the whole message decoded by gw_spec_message_decode(). A section that
 * proton cannot decode on its own, an unknown section code, or a field
 * that differs means pn_message_decode() read the message differently
 * from the scanner (tests/fuzz/repro/README.md).
 */
static bool check_sections(const char *bytes, size_t size, const gw_spec_sections_t *sec,
                           pn_message_t *whole)
{
    unsigned seen[0x79 - 0x70] = {0};
    size_t off = 0, starts[64], lens[64], n = 0;

    while (off < size) {
        ssize_t len;
        pn_data_clear(g_split);
        len = pn_data_decode(g_split, bytes + off, size - off);
        pn_data_rewind(g_split);
        if (len <= 0 || !pn_data_next(g_split) || pn_data_type(g_split) != PN_DESCRIBED) {
            /* once: a described descriptor (corpus spec_nested_descriptor_*) */
            CHECK(!"proton cannot decode a section the scanner accepted");
            return true;
        }
        pn_data_enter(g_split);
        if (!pn_data_next(g_split) || pn_data_type(g_split) != PN_ULONG ||
            pn_data_get_ulong(g_split) < 0x70 || pn_data_get_ulong(g_split) > 0x78) {
            CHECK(!"the scanner accepted an unknown section code");
            return true;
        }
        uint64_t code = pn_data_get_ulong(g_split);
        pn_type_t vt = pn_data_next(g_split) ? pn_data_type(g_split) : PN_INVALID;
        bool list = code == 0x70 || code == 0x73;
        bool map = code == 0x71 || code == 0x72 || code == 0x74 || code == 0x78;
        if ((list && vt != PN_LIST) || (map && vt != PN_MAP && vt != PN_NULL)) {
            CHECK(!"the scanner accepted a section holding the wrong type");
            return true;
        }
        seen[code - 0x70]++;
        if (n < sizeof(starts) / sizeof(starts[0])) {
            starts[n] = off;
            lens[n++] = (size_t)len;
        }
        off += (size_t)len;
    }
    if (seen[0x75 - 0x70] != sec->data_sections || seen[0x76 - 0x70] != sec->sequence_sections ||
        seen[0x77 - 0x70] != sec->value_sections) {
        /* once: a list/map whose elements did not fill its declared
         * size; proton split by the count, the scanner by the size */
        CHECK(!"proton and the scanner split the sections differently");
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned code = (unsigned char)bytes[starts[i] + 2]; /* 0x00 0x53 code */
        if (bytes[starts[i] + 1] != 0x53 || code < 0x70 || code > 0x78 || seen[code - 0x70] != 1)
            continue; /* long descriptor forms, repeated sections: not compared */
        pn_message_clear(g_one);
        CHECK(pn_message_decode(g_one, bytes + starts[i], lens[i]) == 0);
        switch (code) {
        case 0x70:
            CHECK(pn_message_is_durable(g_one) == pn_message_is_durable(whole));
            CHECK(pn_message_get_delivery_count(g_one) == pn_message_get_delivery_count(whole));
            break;
        case 0x72:
            CHECK(data_same(pn_message_annotations(g_one), pn_message_annotations(whole)));
            break;
        case 0x73:
            CHECK((cstr_same(pn_message_get_subject(g_one), pn_message_get_subject(whole)) &&
                   cstr_same(pn_message_get_address(g_one), pn_message_get_address(whole)) &&
                   cstr_same(pn_message_get_reply_to(g_one), pn_message_get_reply_to(whole)) &&
                   pn_message_get_correlation_id(g_one).type ==
                       pn_message_get_correlation_id(whole).type));
            break;
        case 0x77:
            CHECK((data_same(pn_message_body(g_one), pn_message_body(whole)) &&
                   !pn_message_is_inferred(whole)));
            break;
        default: break;
        }
    }
    return false;
}

/* Proton's own decoder of a cleared message (what gw_amqp_recv() did
 * before it used gw_spec_message_decode()): proton must not crash, and
 * the spec decoders must cope with whatever it produces. */
static void fuzz_raw_path(const uint8_t *data, size_t size, size_t whylen)
{
    if (size == 0) /* proton asserts on empty input (gw_amqp_recv guards it) */
        return;
    pn_message_clear(g_raw);
    if (pn_message_decode(g_raw, (const char *)data, size) != 0)
        return;
    fuzz_decoded(g_raw, size, whylen);
}

static void fuzz_init(void)
{
    g_in = pn_message();
    g_raw = pn_message();
    g_fresh = pn_message();
    g_enc = pn_message();
    g_back = pn_message();
    g_one = pn_message();
    g_split = pn_data(16);
    CHECK(g_in && g_raw && g_fresh && g_enc && g_back && g_one && g_split);
    g_verbose = getenv("FUZZ_SPEC_VERBOSE") != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* why buffers from 1 to WHY_CAP bytes, to exercise truncation */
    size_t whylen = size ? (size_t)(data[size - 1] % WHY_CAP) + 1 : WHY_CAP;

    if (!g_in)
        fuzz_init();
    fuzz_spec_path(data, size, whylen);
    fuzz_raw_path(data, size, whylen);
    if (g_verbose)
        fprintf(stderr, "fuzz_spec: %lu round trips so far\n", g_roundtrips);
    return 0;
}
