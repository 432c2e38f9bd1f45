/*
 * utf8.c - MQTT-1.5.3 string validation.
 *
 * Well-formed UTF-8 per Unicode table 3-7 (which already excludes overlong
 * forms, the surrogates U+D800..U+DFFF and code points above U+10FFFF), plus
 * MQTT-1.5.3-2: no U+0000. Control characters and non-characters are only a
 * SHOULD NOT in MQTT-1.5.3 ("MAY close"); they are accepted.
 */
#include <string.h>

#include "mqtt/mqtt-internal.h"

#define GW_UTF8_ONES 0x0101010101010101ull
#define GW_UTF8_HIGHS 0x8080808080808080ull

gw_err_t gw_utf8_validate(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    if (len == 0)
        return GW_OK;
    if (s == NULL)
        return GW_ERR_INVAL;
    while (i < len) {
        /* ASCII fast path: 8 bytes with no high bit and no zero byte. */
        while (len - i >= 8) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if ((v & GW_UTF8_HIGHS) || ((v - GW_UTF8_ONES) & ~v & GW_UTF8_HIGHS))
                break;
            i += 8;
        }
        if (i >= len)
            break;

        unsigned c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return GW_ERR_MQTT_UTF8; /* MQTT-1.5.3-2 */
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xbf; /* range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates U+D800..U+DFFF (MQTT-1.5.3-1) */
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else {
            return GW_ERR_MQTT_UTF8; /* 80..C1 (continuation, overlong lead), F5..FF */
        }
        if (len - i <= need)
            return GW_ERR_MQTT_UTF8; /* truncated sequence */
        if (s[i + 1] < lo || s[i + 1] > hi)
            return GW_ERR_MQTT_UTF8;
        for (size_t k = 2; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return GW_ERR_MQTT_UTF8;
        }
        i += need + 1;
    }
    return GW_OK;
}
