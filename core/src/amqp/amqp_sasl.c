/*
 * amqp_sasl.c - server-side SASL for our listeners when PLAIN is offered.
 *
 * proton's built-in SASL (no Cyrus) cannot verify PLAIN on the server side,
 * so incoming transports whose sasl_mechs list PLAIN get this implementation
 * through proton's plugin interface (proton/sasl_plugin.h). It handles
 * ANONYMOUS and EXTERNAL exactly like proton's default implementation and
 * checks PLAIN credentials with the configured verifier (RFC 4616).
 */
#include "amqp/amqp_internal.h"
#include "gw/log.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <proton/sasl_plugin.h>
#include <proton/transport.h>

static bool gw_amqp_sasl_init_server(pn_transport_t *t)
{
    pnx_sasl_set_desired_state(t, SASL_POSTED_MECHANISMS);
    return true;
}

/* Installed on server transports only. */
static bool gw_amqp_sasl_init_client(pn_transport_t *t) { return false; }

/* The context holds the authenticated PLAIN user name proton points to. */
static void gw_amqp_sasl_free(pn_transport_t *t) { free(pnx_sasl_get_context(t)); }

/* Filtered by proton against the allowed (offered) mechanisms. */
static const char *gw_amqp_sasl_list(pn_transport_t *t)
{
    return pnx_sasl_get_external_username(t) ? "EXTERNAL PLAIN ANONYMOUS" : "PLAIN ANONYMOUS";
}

static void gw_amqp_sasl_prepare(pn_transport_t *t) {}

static bool gw_amqp_sasl_check_plain(pn_transport_t *t, const pn_bytes_t *recv, char **user_out)
{
    /* RFC 4616: [authzid] NUL authcid NUL passwd; each part at most 255 octets */
    if (!recv || !recv->start || recv->size < 2 || recv->size > 3 * 255 + 2)
        return false;
    const char *p = recv->start, *end = recv->start + recv->size;
    const char *nul1 = memchr(p, '\0', recv->size);
    if (!nul1)
        return false;
    const char *authcid = nul1 + 1;
    const char *nul2 = memchr(authcid, '\0', (size_t)(end - authcid));
    if (!nul2)
        return false;
    size_t zlen = (size_t)(nul1 - p), ulen = (size_t)(nul2 - authcid);
    size_t plen = (size_t)(end - nul2 - 1);
    if (ulen == 0 || ulen > 255 || zlen > 255 || plen > 255 ||
        memchr(nul2 + 1, '\0', plen) != NULL)
        return false;
    /* an authorization identity other than the user itself is not supported */
    if (zlen != 0 && (zlen != ulen || memcmp(p, authcid, ulen) != 0))
        return false;
    char user[256], pass[256];
    memcpy(user, authcid, ulen);
    user[ulen] = '\0';
    memcpy(pass, nul2 + 1, plen);
    pass[plen] = '\0';
    gw_amqp_conn_t *c = gw_amqp_conn_of(pn_transport_connection(t));
    bool ok = c && gw_amqp__plain_verify(c, user, pass);
    OPENSSL_cleanse(pass, sizeof(pass));
    if (ok) {
        *user_out = strdup(user);
        ok = *user_out != NULL;
    }
    return ok;
}

static void gw_amqp_sasl_process_init(pn_transport_t *t, const char *mech, const pn_bytes_t *recv)
{
    const char *ext = pnx_sasl_get_external_username(t);
    char *user = NULL;
    if (strcmp(mech, "ANONYMOUS") == 0) {
        pnx_sasl_set_succeeded(t, "anonymous", NULL);
    } else if (strcmp(mech, "EXTERNAL") == 0 && ext) {
        pnx_sasl_set_succeeded(t, ext, NULL);
    } else if (strcmp(mech, "PLAIN") == 0 && gw_amqp_sasl_check_plain(t, recv, &user)) {
        free(pnx_sasl_get_context(t));
        pnx_sasl_set_context(t, user); /* proton keeps the pointer */
        pnx_sasl_set_succeeded(t, user, NULL);
    } else {
        pnx_sasl_set_failed(t);
    }
    pnx_sasl_set_desired_state(t, SASL_POSTED_OUTCOME);
}

static void gw_amqp_sasl_process_response(pn_transport_t *t, const pn_bytes_t *recv) {}
static bool gw_amqp_sasl_process_mechanisms(pn_transport_t *t, const char *mechs) { return false; }
static void gw_amqp_sasl_process_challenge(pn_transport_t *t, const pn_bytes_t *recv) {}
static void gw_amqp_sasl_process_outcome(pn_transport_t *t, const pn_bytes_t *recv) {}
static bool gw_amqp_sasl_can_encrypt(pn_transport_t *t) { return false; }
static ssize_t gw_amqp_sasl_max_encrypt_size(pn_transport_t *t) { return 0; }
static ssize_t gw_amqp_sasl_encode(pn_transport_t *t, pn_bytes_t in, pn_bytes_t *out) { return 0; }
static ssize_t gw_amqp_sasl_decode(pn_transport_t *t, pn_bytes_t in, pn_bytes_t *out) { return 0; }

static const pnx_sasl_implementation gw_amqp_sasl_server_impl = {
    gw_amqp_sasl_free,
    gw_amqp_sasl_list,
    gw_amqp_sasl_init_server,
    gw_amqp_sasl_init_client,
    gw_amqp_sasl_prepare,
    gw_amqp_sasl_process_init,
    gw_amqp_sasl_process_response,
    gw_amqp_sasl_process_mechanisms,
    gw_amqp_sasl_process_challenge,
    gw_amqp_sasl_process_outcome,
    gw_amqp_sasl_can_encrypt,
    gw_amqp_sasl_max_encrypt_size,
    gw_amqp_sasl_encode,
    gw_amqp_sasl_decode,
};

void gw_amqp__sasl_install_plain_server(pn_transport_t *t)
{
    pnx_sasl_set_implementation(t, &gw_amqp_sasl_server_impl, NULL);
}
