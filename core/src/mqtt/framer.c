/*
 * framer.c - MQTT fixed header parsing and packet boundaries.
 *
 * The framer only knows the fixed header (MQTT 2.2): packet type, flags and
 * the remaining length. It bounds the remaining length against max_packet
 * before anything is allocated, and resumes at any byte boundary.
 */
#include <stdlib.h>
#include <string.h>

#include "mqtt/mqtt-internal.h"

enum {
    GW_FR_HEADER = 0, /* expecting the first byte of a packet */
    GW_FR_LENGTH = 1, /* inside the remaining-length bytes */
    GW_FR_BODY = 2,   /* buffering the body into fr->buf */
    GW_FR_BROKEN = 3, /* a framing error was returned: the stream is unusable */
};

/* Type 0 and 15 are reserved (MQTT 2.2.1). */
static inline bool gw_mqtt__type_valid(uint8_t header)
{
    uint8_t type = header >> 4;
    return type != 0 && type != 15;
}

void gw_mqtt_framer_init(gw_mqtt_framer_t *fr, uint32_t max_packet)
{
    memset(fr, 0, sizeof(*fr));
    if (max_packet > GW_MQTT_MAX_REMAINING_LENGTH)
        max_packet = GW_MQTT_MAX_REMAINING_LENGTH;
    fr->max_packet = max_packet;
    fr->state = GW_FR_HEADER;
}

void gw_mqtt_framer_cleanup(gw_mqtt_framer_t *fr)
{
    free(fr->buf);
    fr->buf = NULL;
    fr->have = 0;
    fr->frame_ready = false;
    fr->state = GW_FR_HEADER;
}

gw_err_t gw_mqtt_frame_header(const uint8_t *data, size_t len, uint32_t max_packet,
                              uint8_t *header, size_t *header_len, uint32_t *remaining)
{
    uint32_t value = 0;
    uint32_t shift = 0;
    size_t i;

    if (len < 1)
        return GW_ERR_AGAIN;
    if (!gw_mqtt__type_valid(data[0]))
        return GW_ERR_MQTT_BAD_TYPE;
    /* MQTT 2.2.3: up to 4 bytes, 7 bits each, least significant first.
     * Non-minimal encodings (e.g. 0x80 0x00) are allowed by 3.1.1. */
    for (i = 1; i < len && i <= 4; i++) {
        value |= (uint32_t)(data[i] & 0x7f) << shift;
        shift += 7;
        if (value > max_packet)
            return GW_ERR_MQTT_TOO_LARGE;
        if (!(data[i] & 0x80)) {
            *header = data[0];
            *header_len = i + 1;
            *remaining = value;
            return GW_OK;
        }
        if (i == 4)
            return GW_ERR_MQTT_REMAINING_LENGTH;
    }
    return GW_ERR_AGAIN;
}

gw_err_t gw_mqtt_framer_feed(gw_mqtt_framer_t *fr, const uint8_t *data, size_t len,
                             size_t *consumed, gw_mqtt_frame_t *frame)
{
    size_t off = 0;
    gw_err_t err = GW_ERR_AGAIN;

    *consumed = 0;
    if (fr->frame_ready) {
        /* The previous frame was handed out from fr->buf: it is released now,
         * as documented. */
        free(fr->buf);
        fr->buf = NULL;
        fr->have = 0;
        fr->frame_ready = false;
    }
    if (fr->state == GW_FR_BROKEN)
        return GW_ERR_STATE;

    while (off < len) {
        switch (fr->state) {
        case GW_FR_HEADER: {
            uint8_t b = data[off++];
            if (!gw_mqtt__type_valid(b)) {
                err = GW_ERR_MQTT_BAD_TYPE;
                goto broken;
            }
            fr->header = b;
            fr->len_bytes = 0;
            fr->multiplier = 1;
            fr->remaining = 0;
            fr->state = GW_FR_LENGTH;
            break;
        }
        case GW_FR_LENGTH: {
            uint8_t b = data[off++];
            fr->remaining += (uint32_t)(b & 0x7f) * fr->multiplier;
            fr->multiplier <<= 7;
            fr->len_bytes++;
            /* Checked on every byte: what was read so far is a lower bound. */
            if (fr->remaining > fr->max_packet) {
                err = GW_ERR_MQTT_TOO_LARGE;
                goto broken;
            }
            if (b & 0x80) {
                if (fr->len_bytes == 4) {
                    err = GW_ERR_MQTT_REMAINING_LENGTH;
                    goto broken;
                }
                break;
            }
            frame->header = fr->header;
            frame->body_len = fr->remaining;
            if (fr->remaining == 0) {
                frame->body = NULL;
                fr->state = GW_FR_HEADER;
                *consumed = off;
                return GW_OK;
            }
            fr->have = 0;
            fr->state = GW_FR_BODY;
            break;
        }
        case GW_FR_BODY: {
            size_t n;
            if (fr->buf == NULL) {
                if (len - off >= fr->remaining) {
                    /* Zero-copy: nothing of the body is buffered and all of
                     * it is inside the caller's chunk. */
                    frame->header = fr->header;
                    frame->body = data + off;
                    frame->body_len = fr->remaining;
                    off += fr->remaining;
                    fr->state = GW_FR_HEADER;
                    *consumed = off;
                    return GW_OK;
                }
                /* One exact-size buffer, allocated only once the length
                 * passed the maximum check and the body is known to span
                 * more than this chunk. */
                fr->buf = malloc(fr->remaining);
                if (fr->buf == NULL) {
                    err = GW_ERR_NOMEM;
                    goto broken;
                }
                fr->have = 0;
            }
            n = len - off < fr->remaining - fr->have ? len - off : fr->remaining - fr->have;
            memcpy(fr->buf + fr->have, data + off, n);
            fr->have += (uint32_t)n;
            off += n;
            if (fr->have == fr->remaining) {
                frame->header = fr->header;
                frame->body = fr->buf;
                frame->body_len = fr->remaining;
                fr->frame_ready = true;
                fr->state = GW_FR_HEADER;
                *consumed = off;
                return GW_OK;
            }
            break;
        }
        default:
            return GW_ERR_STATE;
        }
    }
    *consumed = off;
    return GW_ERR_AGAIN;

broken:
    fr->state = GW_FR_BROKEN;
    *consumed = off;
    return err;
}
