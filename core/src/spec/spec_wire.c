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
 *    first and hand proton only a well-framed message.
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

/*
 * Walk the AMQP value at p (at most n bytes): *len = its encoded size,
 * *nodes += the pn_data_t nodes proton would create for it (compound
 * contents are walked; array elements counted one node each). False if it
 * is malformed, nests deeper than GWI_MAX_DEPTH or needs more than
 * GWI_PN_DATA_MAX_NODES nodes (*nodes then exceeds the limit).
 * AMQP 1.0 part 1.2: the high nibble of a format code fixes its width.
 */
static bool walk(const uint8_t *p, size_t n, int depth, size_t *len, size_t *nodes)
{
    size_t hdr, size, count, off;

    if (n == 0 || depth > GWI_MAX_DEPTH || *nodes >= GWI_PN_DATA_MAX_NODES + 1)
        return false;
    if (p[0] == 0x00) { /* described: descriptor, then value */
        size_t dlen, vlen;
        (*nodes)++;
        if (!walk(p + 1, n - 1, depth + 1, &dlen, nodes) ||
            !walk(p + 1 + dlen, n - 1 - dlen, depth + 1, &vlen, nodes))
            return false;
        *len = 1 + dlen + vlen;
        return true;
    }
    (*nodes)++;
    switch (p[0] >> 4) {
    case 0x4: *len = 1; return true;
    case 0x5: *len = 2; break;
    case 0x6: *len = 3; break;
    case 0x7: *len = 5; break;
    case 0x8: *len = 9; break;
    case 0x9: *len = 17; break;
    case 0xa: /* vbin8, str8, sym8 */
        if (n < 2)
            return false;
        *len = 2 + (size_t)p[1];
        break;
    case 0xb:
        if (n < 5 || rd_u32(p + 1) > n - 5)
            return false;
        *len = 5 + (size_t)rd_u32(p + 1);
        break;
    case 0xc: /* list8, map8: size, count, elements */
    case 0xe: /* array8 */
        if (n < 3 || p[1] < 1 || (size_t)p[1] > n - 2)
            return false;
        hdr = 3;
        size = (size_t)p[1] - 1;
        count = p[2];
        *len = 2 + (size_t)p[1];
        goto compound;
    case 0xd:
    case 0xf:
        if (n < 9 || rd_u32(p + 1) < 4 || rd_u32(p + 1) > n - 5)
            return false;
        hdr = 9;
        size = (size_t)rd_u32(p + 1) - 4;
        count = rd_u32(p + 5);
        *len = 5 + (size_t)rd_u32(p + 1);
        goto compound;
    default:
        return false;
    }
    return *len <= n;

compound:
    if ((p[0] >> 4) >= 0xe) {
        /* array: element constructor then count bare values; proton makes
         * one node per element (plus the descriptor, if any). */
        if (count > GWI_PN_DATA_MAX_NODES || (*nodes += count + 1) > GWI_PN_DATA_MAX_NODES)
            return false;
        return true;
    }
    /* Every element takes at least one byte: refuse impossible counts
     * before walking anything. */
    if (count > size)
        return false;
    off = 0;
    for (size_t i = 0; i < count; i++) {
        size_t elen;
        if (!walk(p + hdr + off, size - off, depth + 1, &elen, nodes))
            return false;
        off += elen;
    }
    return *nodes <= GWI_PN_DATA_MAX_NODES;
}

/* Section descriptor: ulong code (smallulong, ulong, ulong0) or symbol. */
static bool descriptor_code(const uint8_t *p, size_t dlen, uint64_t *code, bool *symbolic)
{
    *symbolic = false;
    if (p[0] == 0x53 && dlen == 2) {
        *code = p[1];
        return true;
    }
    if (p[0] == 0x44 && dlen == 1) {
        *code = 0;
        return true;
    }
    if (p[0] == 0x80 && dlen == 9) {
        uint64_t c = 0;
        for (int i = 1; i <= 8; i++)
            c = (c << 8) | p[i];
        *code = c;
        return true;
    }
    if (p[0] == 0xa3 || p[0] == 0xb3) {
        /* legal AMQP, but proton 0.37 only understands ulong section
         * descriptors (it reads the rest of the message as the body) */
        *symbolic = true;
        *code = UINT64_MAX;
        return true;
    }
    return false;
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

gw_err_t gw_spec_scan_sections(const char *bytes, size_t size, gw_spec_sections_t *out)
{
    const uint8_t *p = (const uint8_t *)bytes;
    size_t off = 0;

    if (!out || (!bytes && size))
        return GW_ERR_INVAL;
    memset(out, 0, sizeof(*out));
    if (size == 0)
        return GW_ERR_SPEC_BODY;
    while (off < size) {
        const uint8_t *s = p + off, *v;
        size_t n = size - off, dlen, vlen, nodes = 0;
        uint64_t code;
        bool symbolic;
        /* Every section is a described value: 0x00 descriptor value. */
        if (s[0] != 0x00 || !walk(s + 1, n - 1, 1, &dlen, &nodes) ||
            !descriptor_code(s + 1, dlen, &code, &symbolic))
            return GW_ERR_SPEC_BODY;
        nodes = 0;
        v = s + 1 + dlen;
        if (!walk(v, n - 1 - dlen, 1, &vlen, &nodes)) {
            if (nodes > GWI_PN_DATA_MAX_NODES)
                out->too_many_nodes = true;
            return GW_ERR_SPEC_BODY;
        }
        if (symbolic)
            out->symbolic_sections++;
        switch (code) {
        case GWI_SPEC_DESC_DATA:
            if (v[0] != 0xa0 && v[0] != 0xb0) /* a Data section holds a binary */
                return GW_ERR_SPEC_BODY;
            out->data_sections++;
            out->data_bytes += vlen - (v[0] == 0xa0 ? 2 : 5);
            break;
        case GWI_SPEC_DESC_SEQUENCE: out->sequence_sections++; break;
        case GWI_SPEC_DESC_VALUE: out->value_sections++; break;
        case GWI_SPEC_DESC_PROPERTIES: int_message_id(v, vlen, out); break;
        default: break;
        }
        off += 1 + dlen + vlen;
    }
    return GW_OK;
}

/* Copy every Data section's bytes, in order, into dst (already scanned). */
static void gather_data(const uint8_t *p, size_t size, uint8_t *dst)
{
    size_t off = 0;
    while (off < size) {
        const uint8_t *s = p + off, *v;
        size_t dlen = 0, vlen = 0, nodes = 0;
        uint64_t code = 0;
        bool symbolic;
        walk(s + 1, size - off - 1, 1, &dlen, &nodes);
        descriptor_code(s + 1, dlen, &code, &symbolic);
        v = s + 1 + dlen;
        walk(v, size - off - 1 - dlen, 1, &vlen, &nodes);
        if (code == GWI_SPEC_DESC_DATA) {
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
    err = gw_spec_scan_sections(bytes, size, &sec);
    if (err != GW_OK) {
        gwi_spec_why(why, whylen, "%s",
                     size == 0 ? "empty message"
                     : sec.too_many_nodes
                         ? "a section holds more than 65535 values (proton would truncate it)"
                         : "malformed AMQP message sections");
        return err;
    }
    if (sec.symbolic_sections > 0) {
        gwi_spec_why(why, whylen, "%u sections with symbolic descriptors are not supported",
                     sec.symbolic_sections);
        return GW_ERR_SPEC_BODY;
    }
    /* AMQP 1.0 3.2: the body is one AmqpValue, or Data sections, or
     * AmqpSequence sections - never a mix. */
    if ((sec.value_sections > 0) + (sec.data_sections > 0) + (sec.sequence_sections > 0) > 1 ||
        sec.value_sections > 1) {
        gwi_spec_why(why, whylen, "invalid body: %u AmqpValue, %u Data, %u AmqpSequence sections",
                     sec.value_sections, sec.data_sections, sec.sequence_sections);
        return GW_ERR_SPEC_BODY;
    }
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
