/*
 * test_auth_cert.c - identity from client certificates (CN or another DN
 * field), refusals (absent, repeated, NUL inside, too long), issuer DN
 * string and the issuer -> tenant map. Certificates are made at test time
 * with the OpenSSL API (EC P-256 keys, self-signed CA, leaf signed by it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "gw/auth.h"

struct rdn {
    const char *field;
    const char *value;
    int len; /* -1: strlen */
    int type; /* MBSTRING_UTF8 or V_ASN1_... */
};

static EVP_PKEY *ca_key, *leaf_key;

static X509 *make_cert(const struct rdn *subject, size_t ns, const struct rdn *issuer, size_t ni,
                       EVP_PKEY *key, EVP_PKEY *signer)
{
    X509 *x = X509_new();
    X509_NAME *sn = X509_NAME_new(), *in = X509_NAME_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 42);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    for (size_t i = 0; i < ns; i++)
        assert_int_equal(X509_NAME_add_entry_by_txt(sn, subject[i].field, subject[i].type,
                                                    (const unsigned char *)subject[i].value,
                                                    subject[i].len, -1, 0),
                         1);
    for (size_t i = 0; i < ni; i++)
        assert_int_equal(X509_NAME_add_entry_by_txt(in, issuer[i].field, issuer[i].type,
                                                    (const unsigned char *)issuer[i].value,
                                                    issuer[i].len, -1, 0),
                         1);
    X509_set_subject_name(x, sn);
    X509_set_issuer_name(x, in);
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
    X509_NAME_free(sn);
    X509_NAME_free(in);
    return x;
}

#define U MBSTRING_UTF8
static const struct rdn acme_ca[] = {{"O", "Acme", -1, U}, {"CN", "Acme Device CA", -1, U}};

static int setup(void **state)
{
    ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    return ca_key && leaf_key ? 0 : -1;
}

static int teardown(void **state)
{
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(leaf_key);
    return 0;
}

static void test_identity_fields(void **state)
{
    static const struct rdn subj[] = {
        {"C", "DE", -1, U},
        {"O", "Acme", -1, U},
        {"OU", "sensors", -1, U},
        {"CN", "dev-\xc3\xa9t\xc3\xa9-01", -1, U}, /* UTF-8 kept */
        {"UID", "u-1234", -1, U},
        {"emailAddress", "dev01@acme.example", -1, U},
    };
    X509 *x = make_cert(subj, 6, acme_ca, 2, leaf_key, ca_key);
    char out[64];
    size_t len = 0;

    assert_int_equal(gw_auth_cert_identity(x, NULL, out, sizeof(out), &len), GW_OK);
    assert_string_equal(out, "dev-\xc3\xa9t\xc3\xa9-01");
    assert_int_equal(len, strlen(out));
    assert_int_equal(gw_auth_cert_identity(x, "CN", out, sizeof(out), NULL), GW_OK);
    assert_string_equal(out, "dev-\xc3\xa9t\xc3\xa9-01");
    assert_int_equal(gw_auth_cert_identity(x, "commonName", out, sizeof(out), NULL), GW_OK);
    assert_int_equal(gw_auth_cert_identity(x, "emailAddress", out, sizeof(out), &len), GW_OK);
    assert_string_equal(out, "dev01@acme.example");
    assert_int_equal(gw_auth_cert_identity(x, "UID", out, sizeof(out), NULL), GW_OK);
    assert_string_equal(out, "u-1234");
    assert_int_equal(gw_auth_cert_identity(x, "OU", out, sizeof(out), NULL), GW_OK);
    assert_string_equal(out, "sensors");
    /* absent field, unknown field name, buffer too small (exactly len fits not) */
    assert_int_equal(gw_auth_cert_identity(x, "serialNumber", out, sizeof(out), NULL),
                     GW_ERR_NOT_FOUND);
    assert_int_equal(gw_auth_cert_identity(x, "noSuchField", out, sizeof(out), NULL),
                     GW_ERR_INVAL);
    assert_int_equal(gw_auth_cert_identity(x, "UID", out, 6, NULL), GW_ERR_NOSPACE);
    assert_int_equal(gw_auth_cert_identity(x, "UID", out, 7, NULL), GW_OK);
    assert_int_equal(gw_auth_cert_identity(NULL, "UID", out, 7, NULL), GW_ERR_INVAL);

    char issuer[256];
    assert_int_equal(gw_auth_cert_issuer(x, issuer, sizeof(issuer)), GW_OK);
    assert_string_equal(issuer, "CN=Acme Device CA,O=Acme"); /* RFC 2253: reversed order */
    assert_int_equal(gw_auth_cert_issuer(x, issuer, 10), GW_ERR_NOSPACE);
    X509_free(x);
}

static void test_identity_refusals(void **state)
{
    static const struct rdn two_cn[] = {{"CN", "admin", -1, U}, {"CN", "dev01", -1, U}};
    static const struct rdn nul_cn[] = {{"CN", "admin\0.evil", 11, V_ASN1_UTF8STRING}};
    static const struct rdn ctl_cn[] = {{"CN", "a\nb", -1, U}};
    static const struct rdn bmp_cn[] = {{"CN", "\x00\x64\x00\xe9", 4, V_ASN1_BMPSTRING}};
    char out[64];
    size_t len;

    X509 *x = make_cert(two_cn, 2, acme_ca, 2, leaf_key, ca_key);
    assert_int_equal(gw_auth_cert_identity(x, NULL, out, sizeof(out), NULL), GW_ERR_EXISTS);
    X509_free(x);
    x = make_cert(nul_cn, 1, acme_ca, 2, leaf_key, ca_key);
    assert_int_equal(gw_auth_cert_identity(x, NULL, out, sizeof(out), NULL), GW_ERR_MQTT_UTF8);
    X509_free(x);
    x = make_cert(ctl_cn, 1, acme_ca, 2, leaf_key, ca_key);
    assert_int_equal(gw_auth_cert_identity(x, NULL, out, sizeof(out), NULL), GW_ERR_MQTT_UTF8);
    X509_free(x);
    /* BMPString (UCS-2) is converted to UTF-8 */
    x = make_cert(bmp_cn, 1, acme_ca, 2, leaf_key, ca_key);
    assert_int_equal(gw_auth_cert_identity(x, NULL, out, sizeof(out), &len), GW_OK);
    assert_string_equal(out, "d\xc3\xa9");
    assert_int_equal(len, 3);
    X509_free(x);
}

static void test_certmap(void **state)
{
    static const struct rdn leaf[] = {{"CN", "dev01", -1, U}};
    static const struct rdn other_ca[] = {{"CN", "Zeta CA", -1, U}};
    static const struct rdn unmapped_ca[] = {{"CN", "Nobody CA", -1, U}};
    static const char map_text[] = "# tenant  issuer DN (RFC 2253)\n"
                                   "acme CN=Acme Device CA,O=Acme\n"
                                   "\n"
                                   "zeta\tCN=Zeta CA  \n";
    gw_auth_certmap_t *map = NULL;
    char errbuf[GW_AUTH_ERRBUF];

    assert_int_equal(gw_auth_certmap_parse(map_text, strlen(map_text), "map", &map, errbuf),
                     GW_OK);
    X509 *a = make_cert(leaf, 1, acme_ca, 2, leaf_key, ca_key);
    X509 *z = make_cert(leaf, 1, other_ca, 1, leaf_key, ca_key);
    X509 *n = make_cert(leaf, 1, unmapped_ca, 1, leaf_key, ca_key);
    assert_string_equal(gw_auth_certmap_tenant(map, a), "acme");
    assert_string_equal(gw_auth_certmap_tenant(map, z), "zeta");
    assert_null(gw_auth_certmap_tenant(map, n));
    assert_null(gw_auth_certmap_tenant(NULL, a));
    X509_free(a);
    X509_free(z);
    X509_free(n);
    gw_auth_certmap_free(map);

    static const struct {
        const char *text;
        const char *want;
    } bad[] = {
        {"acme\n", "map:1: expected '<tenant> <issuer DN>'"},
        {"# c\nacme   \n", "map:2: expected"},
        {"a/b CN=X\n", "map:1: tenant contains"},
        {"acme CN=X\nzeta CN=X\n", "map:2: duplicate issuer (first on line 1)"},
        {"acme CN=\x01X\n", "map:1: invalid UTF-8 or control character"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        map = (gw_auth_certmap_t *)1;
        assert_int_equal(gw_auth_certmap_parse(bad[i].text, strlen(bad[i].text), "map", &map,
                                               errbuf),
                         GW_ERR_CONFIG);
        assert_null(map);
        if (strncmp(errbuf, bad[i].want, strlen(bad[i].want)) != 0)
            fail_msg("case %zu: got \"%s\" want \"%s\"", i, errbuf, bad[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_fields),
        cmocka_unit_test(test_identity_refusals),
        cmocka_unit_test(test_certmap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
