/*
 * spec_addr.c - the address plan of spec/ and the kind names.
 */
#include <string.h>

#include "gw/spec.h"
#include "spec/spec_internal.h"

const gw_spec_addrs_t gw_spec_default_addrs = {
    .lwt = "$mqtt.lwtservice",
    .subctrl = "$mqtt.subscriptionservice",
    .to_prefix = "$mqtt.to.",
    .pubrel_prefix = "$mqtt.",
};

static const char suffix_control[] = ".control";
static const char suffix_publish[] = ".publish";
static const char suffix_pubrel[] = ".pubrel";

static void addr_parts(const gw_spec_addrs_t *addrs, gw_spec_client_addr_t which,
                       const char **prefix, const char **suffix, size_t *suffix_len)
{
    switch (which) {
    case GW_SPEC_ADDR_CONTROL:
        *prefix = addrs->to_prefix;
        *suffix = suffix_control;
        *suffix_len = sizeof(suffix_control) - 1;
        return;
    case GW_SPEC_ADDR_PUBLISH:
        *prefix = addrs->to_prefix;
        *suffix = suffix_publish;
        *suffix_len = sizeof(suffix_publish) - 1;
        return;
    case GW_SPEC_ADDR_PUBREL:
    default:
        *prefix = addrs->pubrel_prefix;
        *suffix = suffix_pubrel;
        *suffix_len = sizeof(suffix_pubrel) - 1;
        return;
    }
}

gw_err_t gw_spec_addr_client(const gw_spec_addrs_t *addrs, gw_spec_client_addr_t which,
                             const char *client_id, size_t id_len, char *buf, size_t cap)
{
    const char *prefix, *suffix;
    size_t prefix_len, suffix_len;

    if (!addrs)
        addrs = &gw_spec_default_addrs;
    if ((unsigned)which > GW_SPEC_ADDR_PUBREL || !buf || id_len == 0 || !client_id)
        return GW_ERR_INVAL;
    addr_parts(addrs, which, &prefix, &suffix, &suffix_len);
    if (!prefix)
        return GW_ERR_INVAL;
    prefix_len = strlen(prefix);
    /* Checked piecewise so that a huge id_len cannot wrap the sum. */
    if (cap == 0 || id_len > cap || prefix_len + suffix_len >= cap - id_len)
        return GW_ERR_NOSPACE;
    memcpy(buf, prefix, prefix_len);
    memcpy(buf + prefix_len, client_id, id_len);
    memcpy(buf + prefix_len + id_len, suffix, suffix_len);
    buf[prefix_len + id_len + suffix_len] = '\0';
    return GW_OK;
}

static bool match_client(const char *addr, size_t len, const char *prefix, const char *suffix,
                         size_t suffix_len, const char **id, size_t *id_len)
{
    size_t prefix_len;

    if (!prefix)
        return false;
    prefix_len = strlen(prefix);
    /* At least one byte of id between prefix and suffix. */
    if (len <= prefix_len + suffix_len)
        return false;
    if (memcmp(addr, prefix, prefix_len) != 0 ||
        memcmp(addr + len - suffix_len, suffix, suffix_len) != 0)
        return false;
    *id = addr + prefix_len;
    *id_len = len - prefix_len - suffix_len;
    return true;
}

gw_err_t gw_spec_addr_parse(const gw_spec_addrs_t *addrs, const char *addr, size_t len,
                            gw_spec_client_addr_t *which, const char **id, size_t *id_len)
{
    static const gw_spec_client_addr_t order[] = {GW_SPEC_ADDR_CONTROL, GW_SPEC_ADDR_PUBLISH,
                                                  GW_SPEC_ADDR_PUBREL};
    const char *cid;
    size_t clen;

    if (!addrs)
        addrs = &gw_spec_default_addrs;
    if (!addr || !which || !id || !id_len)
        return GW_ERR_INVAL;
    /* The suffixes differ, so at most one kind can match: the suffix is
     * anchored at the end and the id is whatever lies between prefix and
     * suffix, dots included ("$mqtt.to.a.b.control" is client "a.b"). */
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        const char *prefix, *suffix;
        size_t suffix_len;
        addr_parts(addrs, order[i], &prefix, &suffix, &suffix_len);
        if (match_client(addr, len, prefix, suffix, suffix_len, &cid, &clen)) {
            *which = order[i];
            *id = cid;
            *id_len = clen;
            return GW_OK;
        }
    }
    return GW_ERR_NOT_FOUND;
}

const char *gw_spec_kind_name(gw_spec_kind_t kind)
{
    switch (kind) {
    case GW_SPEC_PUBLISH: return "AMQP_PUBLISH";
    case GW_SPEC_WILL: return "AMQP_WILL";
    case GW_SPEC_WILL_CLEAR: return "AMQP_WILL_CLEAR";
    case GW_SPEC_LIST: return "AMQP_LIST";
    case GW_SPEC_SUBSCRIPTIONS: return "AMQP_SUBSCRIPTIONS";
    case GW_SPEC_CLOSE: return "AMQP_CLOSE";
    case GW_SPEC_SUBSCRIBE: return "AMQP_SUBSCRIBE";
    case GW_SPEC_UNSUBSCRIBE: return "AMQP_UNSUBSCRIBE";
    case GW_SPEC_PUBREL: return "AMQP_PUBREL";
    case GW_SPEC_WILL_PUBLISH: return "AMQP_WILL_PUBLISH";
    case GW_SPEC_OFFLINE: return "AMQP_OFFLINE";
    case GW_SPEC_STOLEN: return "AMQP_STOLEN";
    }
    return "AMQP_UNKNOWN";
}

static bool spec_has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t n = prefix ? strlen(prefix) : 0;
    return n > 0 && len >= n && memcmp(s, prefix, n) == 0;
}

bool gw_spec_addr_reserved(const gw_spec_addrs_t *addrs, const char *s, size_t len)
{
    if (!addrs)
        addrs = &gw_spec_default_addrs;
    if (!s)
        return false;
    return spec_has_prefix(s, len, addrs->lwt) || spec_has_prefix(s, len, addrs->subctrl) ||
           spec_has_prefix(s, len, addrs->to_prefix) ||
           spec_has_prefix(s, len, addrs->pubrel_prefix);
}
