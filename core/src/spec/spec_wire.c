/*
 * spec_wire.c - decode a message's bytes into a pn_message_t, fixing what
 * pn_message_decode() of proton 0.37 does not do for us (each checked
 * against the installed libqpid-proton11 0.37):
 *
 *  - it does not clear the message first: fields absent from the new
 *    message keep the values of the previous one (a reused pn_message_t
 *    would turn a PUBLISH into a stale "will" etc.);
 *  - it keeps only the LAST of several Data sections (each one clears the
 *    body), silently dropping payload bytes; we concatenate them, as AMQP
 *    1.0 (3.2.5-3.2.7) defines the body to be their concatenation;
 *  - a pn_data_t holds at most 65535 nodes: a bigger map or list (a map of
 *    more than 32767 pairs) is silently TRUNCATED with no error; we count
 *    the nodes of every section first and refuse such messages;
 *  - it drops a message-id of an integer type other than ulong (an int or
 *    long id from a Java peer arrives as "no id"); we recover it as a ulong;
 *  - it asserts on empty input; we walk all sections with a bounded reader
 *    first and hand proton only a well-framed message;
 *  - it silently reads some malformed messages differently from the bytes
 *    (tests/fuzz/repro/README.md): a described descriptor makes it swallow
 *    the following sections, an unknown section code replaces the body, a
 *    header/properties that is not a list eats the rest of the message, a
 *    list/map whose elements do not fill its size is split by the size
 *    while pn_data_decode() goes by the count. The scanner refuses all of
 *    these, plus sections out of the AMQP 1.0 (3.2) order or repeated.
 */
#include <stdlib.h>
#include <string.h>

#include <proton/codec.h>

#include "gw/spec.h"
#include "spec/spec_internal.h"

/* Capacity of one pn_data_t: node ids are 16 bits (pni_nid_t). */
#define GWI_PN_DATA_MAX_NODES 65535u
/* Nesting accepted in a section (bounds our recursion). */
#define GWI_MAX_DEPTH 32

static uint32_t rd_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* State of one walk: pn_data_t nodes counted so far and the first problem
 * found (static text, with its offset in the message). */
typedef struct {
    const uint8_t *base;
    size_t nodes;
    const char *what;
    size_t at;
} wctx_t;

static bool bad(wctx_t *c, const uint8_t *p, const char *what)
{
    if (!c->what) {
        c->what = what;
        c->at = (size_t)(p - c->base);
    }
    return false;
}

/*
 * Encoded width of a primitive format code (AMQP 1.0 part 1.6, the codes
 * proton 0.37 decodes): 0..16 fixed, -1 variable (vbin/str/sym), -2
 * compound (list/map), -3 array, -4 not a format code.
 */
static int code_width(uint8_t code)
{
    switch (code) {
    case 0x40: case 0x41: case 0x42: case 0x43: case 0x44: case 0x45: return 0;
    case 0x50: case 0x51: case 0x52: case 0x53: case 0x54: case 0x55: case 0x56: return 1;
    case 0x60: case 0x61: return 2;
    case 0x70: case 0x71: case 0x72: case 0x73: case 0x74: return 4;
    case 0x80: case 0x81: case 0x82: case 0x83: case 0x84: return 8;
    case 0x94: case 0x98: return 16;
    case 0xa0: case 0xa1: case 0xa3: case 0xb0: case 0xb1: case 0xb3: return -1;
    case 0xc0: case 0xc1: case 0xd0: case 0xd1: return -2;
    case 0xe0: case 0xf0: return -3;
    default: return -4;
    }
}

static bool walk(const uint8_t *p, size_t n, int depth, size_t *len, wctx_t *c);

/* A descriptor (AMQP 1.0 part 1.5) is a ulong or a symbol; other types are
 * reserved, and proton 0.37 misreads them (a described descriptor makes
 * pn_message_decode() swallow the following sections). */
static bool walk_descriptor(const uint8_t *p, size_t n, int depth, size_t *len, wctx_t *c)
{
    if (n == 0)
        return bad(c, p, "truncated descriptor");
    if (p[0] != 0x44 && p[0] != 0x53 && p[0] != 0x80 && p[0] != 0xa3 && p[0] != 0xb3)
        return bad(c, p, "a descriptor is not a ulong or symbol (AMQP 1.0 1.5)");
    return walk(p, n, depth, len, c);
}

/*
 * The value of format code `code` whose bytes (after the constructor)
 * start at p, at most n bytes: *len = their size, nodes counted. Lists
 * and maps must hold exactly `count` elements filling exactly `size`
 * bytes, arrays `count` elements of their one constructor: proton's
 * message decoder goes by the size, its generic decoder by the count.
 */
static bool walk_value(uint8_t code, const uint8_t *p, size_t n, int depth, size_t *len,
                       wctx_t *c)
{
    int w = code_width(code);
    size_t hdr, size, count, off;
    const uint8_t *elems;

    if (++c->nodes > GWI_PN_DATA_MAX_NODES)
        return bad(c, p, "more than 65535 values");
    if (w >= 0) {
        if ((size_t)w > n)
            return bad(c, p, "truncated value");
        *len = (size_t)w;
        return true;
    }
    if (w == -4)
        return bad(c, p - 1, "unknown format code");
    if (w == -1) {
        if (code < 0xb0) {
            if (n < 1 || p[0] > n - 1)
                return bad(c, p, "binary/string/symbol longer than its container");
            *len = 1 + (size_t)p[0];
        } else {
            if (n < 4 || rd_u32(p) > n - 4)
                return bad(c, p, "binary/string/symbol longer than its container");
            *len = 4 + (size_t)rd_u32(p);
        }
        return true;
    }
    if ((code & 0xf0) == 0xc0 || code == 0xe0) { /* size8, count8 */
        if (n < 2 || p[0] < 1 || p[0] > n - 1)
            return bad(c, p, "list/map/array size past its container");
        hdr = 2;
        size = (size_t)p[0] - 1;
        count = p[1];
    } else { /* size32, count32 */
        if (n < 8 || rd_u32(p) < 4 || rd_u32(p) > n - 4)
            return bad(c, p, "list/map/array size past its container");
        hdr = 8;
        size = (size_t)rd_u32(p) - 4;
        count = rd_u32(p + 4);
    }
    *len = hdr + size;
    elems = p + hdr;
    if (depth >= GWI_MAX_DEPTH)
        return bad(c, p, "nested deeper than 32 levels");
    /* Every list/map element takes at least one byte. */
    if (w == -2 && count > size)
        return bad(c, p, "list/map count larger than its size");
    /* Bound the loops before walking: at most one node per element. */
    if (count > GWI_PN_DATA_MAX_NODES || c->nodes + count > GWI_PN_DATA_MAX_NODES) {
        c->nodes = GWI_PN_DATA_MAX_NODES + 1;
        return bad(c, p, "more than 65535 values");
    }
    off = 0;
    if (w == -3) {
        /* array: one element constructor (maybe described), count bare values */
        uint8_t ecode;
        if (size < 1)
            return bad(c, elems, "array without an element constructor");
        if (elems[0] == 0x00) {
            size_t dlen;
            if (!walk_descriptor(elems + 1, size - 1, depth + 1, &dlen, c))
                return false;
            off = 1 + dlen;
            if (off >= size)
                return bad(c, elems, "array without an element constructor");
        }
        ecode = elems[off++];
        if (ecode == 0x00 || code_width(ecode) == -4)
            return bad(c, elems + off - 1, "bad array element constructor");
        for (size_t i = 0; i < count; i++) {
            size_t elen;
            if (!walk_value(ecode, elems + off, size - off, depth + 1, &elen, c))
                return false;
            off += elen;
        }
    } else {
        if ((code & 0x0f) == 0x01 && count % 2 != 0)
            return bad(c, p, "map with an odd number of elements");
        for (size_t i = 0; i < count; i++) {
            size_t elen;
            if (!walk(elems + off, size - off, depth + 1, &elen, c))
                return false;
            off += elen;
        }
    }
    if (off != size)
        return bad(c, elems + off, "list/map/array elements do not fill its declared size");
    return true;
}

/*
 * Walk the AMQP value at p (at most n bytes): *len = its encoded size,
 * c->nodes += the pn_data_t nodes proton would create for it. False (with
 * c->what set) if it is malformed, nests deeper than GWI_MAX_DEPTH or needs
 * more than GWI_PN_DATA_MAX_NODES nodes (c->nodes then exceeds the limit).
 */
static bool walk(const uint8_t *p, size_t n, int depth, size_t *len, wctx_t *c)
{
    size_t dlen, vlen;

    if (n == 0)
        return bad(c, p, "truncated value");
    if (depth > GWI_MAX_DEPTH)
        return bad(c, p, "nested deeper than 32 levels");
    if (p[0] != 0x00) {
        if (!walk_value(p[0], p + 1, n - 1, depth, &vlen, c))
            return false;
        *len = 1 + vlen;
        return true;
    }
    /* described: descriptor, then value */
    if (++c->nodes > GWI_PN_DATA_MAX_NODES)
        return bad(c, p, "more than 65535 values");
    if (!walk_descriptor(p + 1, n - 1, depth + 1, &dlen, c) ||
        !walk(p + 1 + dlen, n - 1 - dlen, depth + 1, &vlen, c))
        return false;
    *len = 1 + dlen + vlen;
    return true;
}

/* AMQP 1.0 3.2: the sections of a message, in the order they must come. */
static const struct {
    const char *name;
    const char *symbol;
    size_t symlen;
} g_sections[] = {
#define GWI_SEC(name, sym) {name, sym, sizeof(sym) - 1}
    GWI_SEC("header", "amqp:header:list"),
    GWI_SEC("delivery-annotations", "amqp:delivery-annotations:map"),
    GWI_SEC("message-annotations", "amqp:message-annotations:map"),
    GWI_SEC("properties", "amqp:properties:list"),
    GWI_SEC("application-properties", "amqp:application-properties:map"),
    GWI_SEC("data", "amqp:data:binary"),
    GWI_SEC("amqp-sequence", "amqp:amqp-sequence:list"),
    GWI_SEC("amqp-value", "amqp:amqp-value:*"),
    GWI_SEC("footer", "amqp:footer:map"),
#undef GWI_SEC
};
#define GWI_SEC_FIRST 0x70u
#define GWI_SEC_LAST 0x78u

/* Section code (0x70..0x78) of a descriptor already walked (dlen bytes):
 * a ulong (smallulong, ulong, ulong0) or one of the section symbols.
 * UINT64_MAX for an unknown symbol. */
static uint64_t descriptor_code(const uint8_t *p, size_t dlen, bool *symbolic)
{
    uint64_t code = 0;
    *symbolic = false;
    switch (p[0]) {
    case 0x53: return p[1];
    case 0x44: return 0;
    case 0x80:
        for (int i = 1; i <= 8; i++)
            code = (code << 8) | p[i];
        return code;
    default: /* 0xa3, 0xb3: walk_descriptor() allows nothing else */
        *symbolic = true;
        {
            size_t h = p[0] == 0xa3 ? 2 : 5;
            for (unsigned i = 0; i < sizeof(g_sections) / sizeof(g_sections[0]); i++) {
                if (dlen - h == g_sections[i].symlen &&
                    memcmp(p + h, g_sections[i].symbol, g_sections[i].symlen) == 0)
                    return GWI_SEC_FIRST + i;
            }
        }
        return UINT64_MAX;
    }
}

/* Place of a section in the order of AMQP 1.0 3.2 (the body kinds share one). */
static unsigned section_rank(uint64_t code)
{
    return code >= GWI_SPEC_DESC_DATA && code <= GWI_SPEC_DESC_VALUE
               ? (unsigned)(GWI_SPEC_DESC_DATA - GWI_SEC_FIRST)
           : code == GWI_SEC_LAST ? (unsigned)(GWI_SEC_LAST - GWI_SEC_FIRST - 2)
                                  : (unsigned)(code - GWI_SEC_FIRST);
}

/* First field of the properties list (v: the list value, vlen bytes) when it
 * is a non-negative integer of a type other than ulong. */
static void int_message_id(const uint8_t *v, size_t vlen, gw_spec_sections_t *out)
{
    const uint8_t *f;
    size_t avail;
    int64_t val;

    if (v[0] == 0xc0 && vlen >= 4 && v[2] >= 1) {
        f = v + 3;
        avail = vlen - 3;
    } else if (v[0] == 0xd0 && vlen >= 10 && rd_u32(v + 5) >= 1) {
        f = v + 9;
        avail = vlen - 9;
    } else {
        return;
    }
    switch (f[0]) {
    case 0x43: val = 0; break;                                        /* uint0 */
    case 0x50: case 0x52: if (avail < 2) return; val = f[1]; break; /* ubyte, smalluint */
    case 0x54: case 0x55: if (avail < 2) return; val = (int8_t)f[1]; break; /* smallint, smalllong */
    case 0x60: if (avail < 3) return; val = ((int64_t)f[1] << 8) | f[2]; break; /* ushort */
    case 0x70: if (avail < 5) return; val = rd_u32(f + 1); break;               /* uint */
    case 0x71: if (avail < 5) return; val = (int32_t)rd_u32(f + 1); break;      /* int */
    case 0x81:                                                                    /* long */
        if (avail < 9)
            return;
        val = (int64_t)(((uint64_t)rd_u32(f + 1) << 32) | rd_u32(f + 5));
        break;
    default: return;
    }
    if (val >= 0) {
        out->int_message_id = true;
        out->message_id = (uint64_t)val;
    }
}

/*
 * gw_spec_scan_sections(), with the reason for a refusal written into why
 * (may be NULL): "section N at offset O: what".
 */
static gw_err_t scan(const char *bytes, size_t size, gw_spec_sections_t *out, char *why,
                     size_t whylen)
{
    const uint8_t *p = (const uint8_t *)bytes;
    size_t off = 0;
    unsigned index = 0, last_rank = 0;
    uint64_t last_code = 0;
    wctx_t c = {.base = p};

    memset(out, 0, sizeof(*out));
    if (size == 0) {
        gwi_spec_why(why, whylen, "empty message");
        return GW_ERR_SPEC_BODY;
    }
    while (off < size) {
        const uint8_t *s = p + off, *v;
        size_t n = size - off, dlen, vlen;
        uint64_t code;
        bool symbolic, ok;
        uint8_t vt;

        index++;
        c.nodes = 0;
        /* Every section is a described value: 0x00 descriptor value. */
        if (s[0] != 0x00) {
            bad(&c, s, "not a described section");
            goto refused;
        }
        if (!walk_descriptor(s + 1, n - 1, 1, &dlen, &c))
            goto refused;
        code = descriptor_code(s + 1, dlen, &symbolic);
        if (code < GWI_SEC_FIRST || code > GWI_SEC_LAST) {
            /* proton 0.37 would take an unknown section for the body */
            bad(&c, s, "not an AMQP 1.0 message section (3.2)");
            goto refused;
        }
        c.nodes = 0;
        v = s + 1 + dlen;
        if (!walk(v, n - 1 - dlen, 1, &vlen, &c)) {
            if (c.nodes > GWI_PN_DATA_MAX_NODES)
                out->too_many_nodes = true;
            goto refused;
        }
        /* AMQP 1.0 3.2: header? delivery-annotations? message-annotations?
         * properties? application-properties? body footer?; the body is
         * data+, amqp-sequence+ or one amqp-value. */
        if (index > 1 && section_rank(code) <= last_rank) {
            if (section_rank(code) != section_rank(GWI_SPEC_DESC_DATA) ||
                code != last_code || code == GWI_SPEC_DESC_VALUE) {
                if (code == last_code)
                    gwi_spec_why(why, whylen, "section %u at offset %zu: %s section repeated "
                                 "(AMQP 1.0 3.2)", index, off,
                                 g_sections[code - GWI_SEC_FIRST].name);
                else
                    gwi_spec_why(why, whylen, "section %u at offset %zu: %s section after %s "
                                 "section (AMQP 1.0 3.2 order)", index, off,
                                 g_sections[code - GWI_SEC_FIRST].name,
                                 g_sections[last_code - GWI_SEC_FIRST].name);
                return GW_ERR_SPEC_BODY;
            }
        }
        last_rank = section_rank(code);
        last_code = code;
        /* The value each section is defined to hold (AMQP 1.0 3.2.x);
         * proton 0.37 reads any other as the rest of the message. */
        vt = v[0];
        switch (code) {
        case GWI_SPEC_DESC_HEADER:
        case GWI_SPEC_DESC_PROPERTIES:
        case GWI_SPEC_DESC_SEQUENCE:
            ok = vt == 0x45 || vt == 0xc0 || vt == 0xd0;
            break;
        case GWI_SPEC_DESC_DATA: ok = vt == 0xa0 || vt == 0xb0; break;
        case GWI_SPEC_DESC_VALUE: ok = true; break;
        default: ok = vt == 0xc1 || vt == 0xd1; break; /* annotations, footer */
        }
        if (!ok) {
            gwi_spec_why(why, whylen, "section %u at offset %zu: %s section does not hold a %s",
                         index, off, g_sections[code - GWI_SEC_FIRST].name,
                         code == GWI_SPEC_DESC_DATA   ? "binary"
                         : code == GWI_SPEC_DESC_HEADER || code == GWI_SPEC_DESC_PROPERTIES ||
                                 code == GWI_SPEC_DESC_SEQUENCE
                             ? "list"
                             : "map");
            return GW_ERR_SPEC_BODY;
        }
        if (symbolic)
            out->symbolic_sections++;
        switch (code) {
        case GWI_SPEC_DESC_DATA:
            out->data_sections++;
            out->data_bytes += vlen - (vt == 0xa0 ? 2 : 5);
            break;
        case GWI_SPEC_DESC_SEQUENCE: out->sequence_sections++; break;
        case GWI_SPEC_DESC_VALUE: out->value_sections++; break;
        case GWI_SPEC_DESC_PROPERTIES: int_message_id(v, vlen, out); break;
        default: break;
        }
        off += 1 + dlen + vlen;
    }
    return GW_OK;

refused:
    if (out->too_many_nodes)
        gwi_spec_why(why, whylen, "section %u: holds more than 65535 values (proton would "
                     "truncate it)", index);
    else
        gwi_spec_why(why, whylen, "malformed section %u: %s at offset %zu", index, c.what,
                     c.at);
    return GW_ERR_SPEC_BODY;
}

gw_err_t gw_spec_scan_sections(const char *bytes, size_t size, gw_spec_sections_t *out)
{
    if (!out || (!bytes && size))
        return GW_ERR_INVAL;
    return scan(bytes, size, out, NULL, 0);
}

/* Copy every Data section's bytes, in order, into dst (already scanned). */
static void gather_data(const uint8_t *p, size_t size, uint8_t *dst)
{
    size_t off = 0;
    while (off < size) {
        const uint8_t *s = p + off, *v;
        size_t dlen = 0, vlen = 0;
        bool symbolic;
        wctx_t c = {.base = p};
        walk(s + 1, size - off - 1, 1, &dlen, &c);
        v = s + 1 + dlen;
        walk(v, size - off - 1 - dlen, 1, &vlen, &c);
        if (descriptor_code(s + 1, dlen, &symbolic) == GWI_SPEC_DESC_DATA) {
            size_t hdr = v[0] == 0xa0 ? 2 : 5;
            memcpy(dst, v + hdr, vlen - hdr);
            dst += vlen - hdr;
        }
        off += 1 + dlen + vlen;
    }
}

gw_err_t gw_spec_message_decode(pn_message_t *msg, const char *bytes, size_t size, char *why,
                                size_t whylen)
{
    gw_spec_sections_t sec;
    uint8_t *joined = NULL;
    gw_err_t err;
    int rc;

    if (why && whylen)
        why[0] = '\0';
    if (!msg || (!bytes && size))
        return GW_ERR_INVAL;
    pn_message_clear(msg);
    err = scan(bytes, size, &sec, why, whylen);
    if (err != GW_OK)
        return err;
    if (sec.symbolic_sections > 0) {
        gwi_spec_why(why, whylen, "%u sections with symbolic descriptors are not supported",
                     sec.symbolic_sections);
        return GW_ERR_SPEC_BODY;
    }
    /* The scanner refused mixed body kinds and repeated AmqpValue sections. */
    if (sec.sequence_sections > 1) {
        /* proton would keep only the last one; nothing of ours uses them */
        gwi_spec_why(why, whylen, "%u AmqpSequence sections are not supported",
                     sec.sequence_sections);
        return GW_ERR_SPEC_BODY;
    }
    rc = pn_message_decode(msg, bytes, size);
    if (rc != 0) {
        gwi_spec_why(why, whylen, "proton could not decode the message (%d)", rc);
        err = GW_ERR_SPEC_BODY;
        goto cleanup;
    }
    if (sec.int_message_id && pn_message_get_id(msg).type == PN_NULL) {
        pn_atom_t id;
        id.type = PN_ULONG;
        id.u.as_ulong = sec.message_id;
        pn_message_set_id(msg, id);
    }
    if (sec.data_sections > 1) {
        /* Rare path (native senders only): one allocation for the joined
         * payload, which proton then copies into the body. */
        pn_data_t *body = pn_message_body(msg);
        joined = malloc(sec.data_bytes ? sec.data_bytes : 1);
        if (!joined) {
            err = GW_ERR_NOMEM;
            goto cleanup;
        }
        gather_data((const uint8_t *)bytes, size, joined);
        pn_data_clear(body);
        if (pn_data_put_binary(body, pn_bytes(sec.data_bytes, (const char *)joined)) != 0) {
            err = GW_ERR_NOMEM;
            goto cleanup;
        }
        pn_data_rewind(body);
        pn_message_set_inferred(msg, true);
    }
cleanup:
    free(joined);
    if (err != GW_OK)
        pn_message_clear(msg);
    return err;
}
