/*
 * topic.c - topic name / topic filter validation and matching (MQTT 4.7).
 *
 * Only syntax and single-filter matching live here; the subscription index
 * (core/src/topic/) builds on these.
 */
#include <string.h>

#include "mqtt/mqtt-internal.h"

static gw_err_t gw_topic__common(const gw_mqtt_ctx_t *ctx, const char *s, size_t len)
{
    if (len == 0)
        return GW_ERR_MQTT_TOPIC_EMPTY; /* MQTT-4.7.3-1 */
    if (len > UINT16_MAX || (ctx && ctx->max_topic_len && len > ctx->max_topic_len))
        return GW_ERR_MQTT_TOPIC_TOO_LONG;
    return gw_utf8_validate(s, len);
}

static inline gw_err_t gw_topic__levels(const gw_mqtt_ctx_t *ctx, size_t levels)
{
    if (ctx && ctx->max_topic_levels && levels > ctx->max_topic_levels)
        return GW_ERR_MQTT_TOPIC_TOO_LONG;
    return GW_OK;
}

gw_err_t gw_topic_name_validate(const gw_mqtt_ctx_t *ctx, const char *s, size_t len)
{
    gw_err_t err = gw_topic__common(ctx, s, len);
    size_t levels = 1;

    if (err != GW_OK)
        return err;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '/')
            levels++;
        else if (c == '+' || c == '#')
            return GW_ERR_MQTT_TOPIC_WILDCARD; /* MQTT-3.3.2-2 */
    }
    return gw_topic__levels(ctx, levels);
}

gw_err_t gw_topic_filter_validate(const gw_mqtt_ctx_t *ctx, const char *s, size_t len)
{
    gw_err_t err = gw_topic__common(ctx, s, len);
    size_t levels = 1;

    if (err != GW_OK)
        return err;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool level_start = i == 0 || s[i - 1] == '/';
        if (c == '/') {
            levels++;
        } else if (c == '#') {
            /* MQTT-4.7.1-2: alone in its level and the last character. */
            if (!level_start || i + 1 != len)
                return GW_ERR_MQTT_TOPIC_FILTER;
        } else if (c == '+') {
            /* MQTT-4.7.1-3: occupies an entire level. */
            if (!level_start || (i + 1 < len && s[i + 1] != '/'))
                return GW_ERR_MQTT_TOPIC_FILTER;
        }
    }
    return gw_topic__levels(ctx, levels);
}

bool gw_topic_matches(const char *filter, size_t flen, const char *topic, size_t tlen)
{
    size_t f = 0, t = 0;

    /* MQTT-4.7.2-1: wildcards in the first level never match '$' topics. */
    if (tlen > 0 && topic[0] == '$' && flen > 0 && (filter[0] == '+' || filter[0] == '#'))
        return false;
    while (f < flen) {
        /* Here f and t are both at the start of a level. */
        if (filter[f] == '#')
            return true; /* the rest, including the parent level */
        if (filter[f] == '+') {
            while (t < tlen && topic[t] != '/')
                t++;
            f++;
        } else {
            while (f < flen && filter[f] != '/') {
                if (t >= tlen || topic[t] != filter[f])
                    return false;
                f++;
                t++;
            }
            if (t < tlen && topic[t] != '/')
                return false;
        }
        /* Both at a '/' or at the end. */
        if (f == flen)
            return t == tlen;
        f++; /* filter '/' */
        if (t == tlen) {
            /* Topic has no more levels: only "x/#" matches its parent "x"
             * (MQTT 4.7.1.2). */
            return flen - f == 1 && filter[f] == '#';
        }
        t++; /* topic '/' */
    }
    /* The filter ended right after a '/': its last level is empty. */
    return t == tlen;
}
