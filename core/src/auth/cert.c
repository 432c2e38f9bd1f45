/*
 * cert.c - identity from a client certificate, issuer -> tenant map.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "auth/auth-internal.h"

#define ISSUER_MAX 4096

gw_err_t gw_auth_cert_identity(X509 *cert, const char *field, char *out, size_t cap,
                               size_t *len)
{
    unsigned char *utf8 = NULL;
    gw_err_t err;
    int nid, idx, n;

    if (len)
        *len = 0;
    if (!cert || !out || cap == 0)
        return GW_ERR_INVAL;
    out[0] = '\0';
    nid = OBJ_txt2nid(field ? field : "CN");
    if (nid == NID_undef)
        return GW_ERR_INVAL;
    const X509_NAME *subject = X509_get_subject_name(cert);
    if (!subject)
        return GW_ERR_NOT_FOUND;
    idx = X509_NAME_get_index_by_NID(subject, nid, -1);
    if (idx < 0)
        return GW_ERR_NOT_FOUND;
    /* Two CNs (or two UIDs...) would let the CA's choice of order decide
     * who the client is: refuse rather than guess. */
    if (X509_NAME_get_index_by_NID(subject, nid, idx) >= 0)
        return GW_ERR_EXISTS;
    const X509_NAME_ENTRY *entry = X509_NAME_get_entry(subject, idx);
    n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry));
    if (n <= 0) {
        err = GW_ERR_MQTT_UTF8;
        goto cleanup;
    }
    /* Embedded NULs ("admin\0.evil.com") and control bytes are refused. */
    if (!gw_auth__text_ok((const char *)utf8, (size_t)n)) {
        err = GW_ERR_MQTT_UTF8;
        goto cleanup;
    }
    if ((size_t)n >= cap) {
        err = GW_ERR_NOSPACE;
        goto cleanup;
    }
    memcpy(out, utf8, (size_t)n);
    out[n] = '\0';
    if (len)
        *len = (size_t)n;
    err = GW_OK;
cleanup:
    OPENSSL_free(utf8);
    return err;
}

gw_err_t gw_auth_cert_issuer(X509 *cert, char *out, size_t cap)
{
    BIO *bio;
    char *data = NULL;
    long n;
    gw_err_t err = GW_OK;

    if (!cert || !out || cap == 0)
        return GW_ERR_INVAL;
    out[0] = '\0';
    bio = BIO_new(BIO_s_mem());
    if (!bio)
        return GW_ERR_NOMEM;
    /* RFC 2253 order and escaping, but UTF-8 kept as is (not \XX). */
    if (X509_NAME_print_ex(bio, X509_get_issuer_name(cert), 0,
                           XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
        err = GW_ERR_NOMEM;
        goto cleanup;
    }
    n = BIO_get_mem_data(bio, &data);
    if (n < 0 || (size_t)n >= cap) {
        err = GW_ERR_NOSPACE;
        goto cleanup;
    }
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
cleanup:
    BIO_free(bio);
    return err;
}

typedef struct map_entry {
    const char *issuer; /* NUL-terminated, into map->text */
    const char *tenant;
    size_t lineno;
} map_entry_t;

struct gw_auth_certmap {
    char *text;
    map_entry_t *entries; /* sorted by issuer */
    size_t count;
};

static int map_cmp(const void *a, const void *b)
{
    return strcmp(((const map_entry_t *)a)->issuer, ((const map_entry_t *)b)->issuer);
}

void gw_auth_certmap_free(gw_auth_certmap_t *map)
{
    if (!map)
        return;
    free(map->entries);
    free(map->text);
    free(map);
}

gw_err_t gw_auth_certmap_parse(const char *text, size_t len, const char *name,
                               gw_auth_certmap_t **out, char *errbuf)
{
    gw_auth_certmap_t *map = calloc(1, sizeof(*map));
    gw_err_t err = GW_ERR_CONFIG;
    gw_auth_lines_t it;
    gw_auth_line_rc_t rc;
    const char *line;
    size_t llen, cap = 0;

    *out = NULL;
    if (!map || !(map->text = malloc(len + 1)))
        goto nomem;
    memcpy(map->text, text, len);
    map->text[len] = '\0';
    gw_auth__lines_init(&it, map->text, len);
    while ((rc = gw_auth__lines_next(&it, ISSUER_MAX, &line, &llen)) != GW_AUTH_LINE_END) {
        char *l = (char *)line; /* our own copy: terminate fields in place */
        size_t t = 0;
        const char *why = NULL;

        if (rc == GW_AUTH_LINE_LONG) {
            why = "line too long";
        } else {
            while (t < llen && (l[t] == ' ' || l[t] == '\t'))
                t++;
            if (t == llen || l[t] == '#')
                continue;
            if (!gw_auth__line_ok(l + t, llen - t))
                why = "invalid UTF-8 or control character";
        }
        size_t ts = t;
        while (!why && t < llen && l[t] != ' ' && l[t] != '\t')
            t++;
        size_t te = t;
        while (!why && t < llen && (l[t] == ' ' || l[t] == '\t'))
            t++;
        size_t de = llen;
        while (!why && de > t && (l[de - 1] == ' ' || l[de - 1] == '\t'))
            de--;
        if (!why && de == t)
            why = "expected '<tenant> <issuer DN>'";
        if (!why && (memchr(l + ts, '/', te - ts) || memchr(l + ts, '+', te - ts) ||
                     memchr(l + ts, '#', te - ts)))
            why = "tenant contains '/', '+' or '#'";
        if (why) {
            gw_auth__err(errbuf, name, it.lineno, "%s", why);
            goto cleanup;
        }
        if (map->count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            map_entry_t *ne = realloc(map->entries, ncap * sizeof(*ne));
            if (!ne)
                goto nomem;
            map->entries = ne;
            cap = ncap;
        }
        l[te] = '\0';
        l[de] = '\0';
        map->entries[map->count++] = (map_entry_t){l + t, l + ts, it.lineno};
    }
    if (map->count)
        qsort(map->entries, map->count, sizeof(map_entry_t), map_cmp);
    for (size_t i = 1; i < map->count; i++) {
        if (map_cmp(&map->entries[i - 1], &map->entries[i]) == 0) {
            size_t a = map->entries[i - 1].lineno, b = map->entries[i].lineno;
            gw_auth__err(errbuf, name, a > b ? a : b, "duplicate issuer (first on line %zu)",
                         a < b ? a : b);
            goto cleanup;
        }
    }
    *out = map;
    map = NULL;
    err = GW_OK;
    goto cleanup;
nomem:
    gw_auth__err(errbuf, name, 0, "out of memory");
    err = GW_ERR_NOMEM;
cleanup:
    gw_auth_certmap_free(map);
    return err;
}

gw_err_t gw_auth_certmap_load(const char *path, gw_auth_certmap_t **out, char *errbuf)
{
    char *text = NULL;
    size_t len = 0;
    gw_err_t err = gw_auth__read_file(path, GW_AUTH_FILE_MAX, &text, &len);

    *out = NULL;
    if (err != GW_OK) {
        gw_auth__err(errbuf, path, 0, "%s",
                     err == GW_ERR_IO ? strerror(errno) : err == GW_ERR_LIMIT ? "file too large"
                                                                               : "out of memory");
        return err == GW_ERR_LIMIT ? GW_ERR_CONFIG : err;
    }
    err = gw_auth_certmap_parse(text, len, path, out, errbuf);
    free(text);
    return err;
}

const char *gw_auth_certmap_tenant(const gw_auth_certmap_t *map, X509 *cert)
{
    char issuer[ISSUER_MAX + 1];

    if (!map || !cert || gw_auth_cert_issuer(cert, issuer, sizeof(issuer)) != GW_OK)
        return NULL;
    map_entry_t key = {.issuer = issuer};
    const map_entry_t *e = bsearch(&key, map->entries, map->count, sizeof(map_entry_t), map_cmp);
    return e ? e->tenant : NULL;
}
