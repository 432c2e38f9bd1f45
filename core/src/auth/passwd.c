/*
 * passwd.c - password file: PBKDF2-HMAC-SHA512 entries, load, verify, hash.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth/auth-internal.h"


struct gw_auth_passwd {
    atomic_uint refs;
    char *text; /* owned copy of the file; entries point into it */
    gw_auth_entry_t *entries; /* sorted by user name */
    size_t count;
    uint32_t dummy_iterations; /* for unknown users */
};

const char *gw_auth_result_name(gw_auth_result_t r)
{
    switch (r) {
    case GW_AUTH_OK: return "ok";
    case GW_AUTH_UNKNOWN_USER: return "unknown-user";
    case GW_AUTH_BAD_PASSWORD: return "bad-password";
    case GW_AUTH_ERROR: return "error";
    }
    return "error";
}

gw_err_t gw_auth_user_validate(const char *user, size_t len, const char **why)
{
    const char *reason = NULL;

    if (len == 0)
        reason = "empty user name";
    else if (len > GW_AUTH_USER_MAX)
        reason = "user name too long";
    else if (!gw_auth__text_ok(user, len))
        reason = "user name is not valid UTF-8 or contains a control character";
    else if (memchr(user, ':', len))
        reason = "user name contains ':'";
    else if (user[0] == '#')
        reason = "user name starts with '#'";
    if (why)
        *why = reason;
    return reason ? GW_ERR_INVAL : GW_OK;
}

size_t gw_auth_user_tenant(const char *user, size_t len, const char **tenant)
{
    *tenant = NULL;
    for (size_t i = len; i > 0; i--) {
        if (user[i - 1] == '@') {
            if (i == len)
                return 0;
            *tenant = user + i;
            return len - i;
        }
    }
    return 0;
}

static int entry_cmp_key(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int entry_cmp(const void *pa, const void *pb)
{
    const gw_auth_entry_t *a = pa, *b = pb;
    return entry_cmp_key(a->user, a->user_len, b->user, b->user_len);
}

/* Parse "pbkdf2-sha512$<iter>$<salt>$<hash>" (exactly len bytes). */
static const char *parse_hash(const char *s, size_t len, gw_auth_entry_t *e)
{
    static const char scheme[] = GW_AUTH_SCHEME "$";
    size_t sl = sizeof(scheme) - 1;
    size_t i;
    uint64_t iter = 0;

    if (len < sl || memcmp(s, scheme, sl) != 0)
        return "unknown hash scheme (want " GW_AUTH_SCHEME ")";
    for (i = sl; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        iter = iter * 10 + (uint64_t)(s[i] - '0');
        if (iter > GW_AUTH_MAX_ITERATIONS)
            return "iteration count out of range";
    }
    if (i == sl || i >= len || s[i] != '$')
        return "bad iteration count";
    if (iter < GW_AUTH_MIN_ITERATIONS)
        return "iteration count out of range";
    e->iterations = (uint32_t)iter;
    i++;
    const char *salt = s + i;
    const char *d = memchr(salt, '$', len - i);
    if (!d)
        return "missing hash";
    if (gw_auth__b64_decode(salt, (size_t)(d - salt), e->salt, sizeof(e->salt)) !=
        GW_AUTH_SALT_LEN)
        return "salt is not 16 bytes of base64";
    const char *hash = d + 1;
    size_t hlen = (size_t)(s + len - hash);
    if (gw_auth__b64_decode(hash, hlen, e->hash, sizeof(e->hash)) != GW_AUTH_HASH_LEN)
        return "hash is not 64 bytes of base64";
    return NULL;
}

gw_err_t gw_auth_passwd_parse(const char *text, size_t len, const char *name,
                              gw_auth_passwd_t **out, char *errbuf)
{
    gw_err_t err = GW_ERR_NOMEM;
    gw_auth_passwd_t *db = NULL;
    gw_auth_lines_t it;
    const char *line;
    size_t llen, cap = 0;
    gw_auth_line_rc_t rc;

    *out = NULL;
    db = calloc(1, sizeof(*db));
    if (!db)
        goto nomem;
    atomic_init(&db->refs, 1u);
    db->text = malloc(len + 1);
    if (!db->text)
        goto nomem;
    memcpy(db->text, text, len);
    db->text[len] = '\0';

    gw_auth__lines_init(&it, db->text, len);
    while ((rc = gw_auth__lines_next(&it, GW_AUTH_LINE_MAX, &line, &llen)) != GW_AUTH_LINE_END) {
        if (rc == GW_AUTH_LINE_LONG) {
            gw_auth__err(errbuf, name, it.lineno, "line longer than %d bytes", GW_AUTH_LINE_MAX);
            err = GW_ERR_CONFIG;
            goto cleanup;
        }
        if (llen == 0 || line[0] == '#')
            continue;
        const char *colon = memchr(line, ':', llen);
        const char *why = NULL;
        gw_auth_entry_t e = {.user = line, .lineno = it.lineno};
        if (!colon) {
            gw_auth__err(errbuf, name, it.lineno, "expected user:hash");
            err = GW_ERR_CONFIG;
            goto cleanup;
        }
        e.user_len = (size_t)(colon - line);
        if (gw_auth_user_validate(e.user, e.user_len, &why) != GW_OK ||
            (why = parse_hash(colon + 1, llen - e.user_len - 1, &e)) != NULL) {
            gw_auth__err(errbuf, name, it.lineno, "%s", why);
            err = GW_ERR_CONFIG;
            goto cleanup;
        }
        if (db->count == cap) {
            if (cap >= GW_AUTH_MAX_USERS) {
                gw_auth__err(errbuf, name, it.lineno, "more than %d users", GW_AUTH_MAX_USERS);
                err = GW_ERR_CONFIG;
                goto cleanup;
            }
            size_t ncap = cap ? cap * 2 : 16;
            gw_auth_entry_t *ne = realloc(db->entries, ncap * sizeof(*ne));
            if (!ne)
                goto nomem;
            db->entries = ne;
            cap = ncap;
        }
        db->entries[db->count++] = e;
    }
    if (db->count)
        qsort(db->entries, db->count, sizeof(db->entries[0]), entry_cmp);
    for (size_t i = 1; i < db->count; i++) {
        if (entry_cmp(&db->entries[i - 1], &db->entries[i]) == 0) {
            size_t a = db->entries[i - 1].lineno, b = db->entries[i].lineno;
            gw_auth__err(errbuf, name, a > b ? a : b, "duplicate user (first on line %zu)",
                         a < b ? a : b);
            err = GW_ERR_CONFIG;
            goto cleanup;
        }
    }
    db->dummy_iterations = db->count ? db->entries[0].iterations : GW_AUTH_DEFAULT_ITERATIONS;
    *out = db;
    db = NULL;
    err = GW_OK;
    goto cleanup;
nomem:
    gw_auth__err(errbuf, name, 0, "out of memory");
    err = GW_ERR_NOMEM;
cleanup:
    if (db) {
        free(db->entries);
        free(db->text);
        free(db);
    }
    return err;
}

gw_err_t gw_auth_passwd_load(const char *path, gw_auth_passwd_t **out, char *errbuf)
{
    char *text = NULL;
    size_t len = 0;
    gw_err_t err = gw_auth__read_file(path, GW_AUTH_FILE_MAX, &text, &len);

    *out = NULL;
    if (err == GW_ERR_IO) {
        gw_auth__err(errbuf, path, 0, "%s", strerror(errno));
        return err;
    }
    if (err == GW_ERR_LIMIT) {
        gw_auth__err(errbuf, path, 0, "file larger than %u bytes", GW_AUTH_FILE_MAX);
        return GW_ERR_CONFIG;
    }
    if (err != GW_OK) {
        gw_auth__err(errbuf, path, 0, "out of memory");
        return err;
    }
    err = gw_auth_passwd_parse(text, len, path, out, errbuf);
    free(text);
    return err;
}

gw_auth_passwd_t *gw_auth_passwd_ref(gw_auth_passwd_t *db)
{
    if (db)
        atomic_fetch_add(&db->refs, 1u);
    return db;
}

void gw_auth_passwd_free(gw_auth_passwd_t *db)
{
    if (!db || atomic_fetch_sub(&db->refs, 1u) != 1u)
        return;
    free(db->entries);
    free(db->text);
    free(db);
}

size_t gw_auth_passwd_count(const gw_auth_passwd_t *db)
{
    return db ? db->count : 0;
}

const gw_auth_entry_t *gw_auth__passwd_find(const gw_auth_passwd_t *db, const char *user,
                                            size_t userlen)
{
    size_t lo = 0, hi = db->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const gw_auth_entry_t *e = &db->entries[mid];
        int c = entry_cmp_key(user, userlen, e->user, e->user_len);
        if (c == 0)
            return e;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int derive(const void *pass, size_t passlen, const uint8_t *salt, uint32_t iterations,
                  uint8_t out[GW_AUTH_HASH_LEN])
{
    static const char empty[1] = {0};
    if (passlen > INT32_MAX)
        return 0;
    return PKCS5_PBKDF2_HMAC(passlen ? (const char *)pass : empty, (int)passlen, salt,
                             GW_AUTH_SALT_LEN, (int)iterations, EVP_sha512(), GW_AUTH_HASH_LEN,
                             out);
}

gw_auth_result_t gw_auth_passwd_check(const gw_auth_passwd_t *db, const char *user,
                                      size_t userlen, const void *pass, size_t passlen)
{
    uint8_t got[GW_AUTH_HASH_LEN];
    gw_auth_result_t r;

    if (!db || (!user && userlen) || (!pass && passlen))
        return GW_AUTH_ERROR;
    const gw_auth_entry_t *e = gw_auth__passwd_find(db, user, userlen);
    if (!e) {
        /* Same work as for a known user: timing must not reveal user names. */
        static const uint8_t dummy_salt[GW_AUTH_SALT_LEN] = {0};
        if (!derive(pass, passlen, dummy_salt, db->dummy_iterations, got))
            return GW_AUTH_ERROR;
        OPENSSL_cleanse(got, sizeof(got));
        return GW_AUTH_UNKNOWN_USER;
    }
    if (!derive(pass, passlen, e->salt, e->iterations, got))
        return GW_AUTH_ERROR;
    /* Constant time: no early exit revealing how many bytes matched. */
    r = CRYPTO_memcmp(got, e->hash, sizeof(got)) == 0 ? GW_AUTH_OK : GW_AUTH_BAD_PASSWORD;
    OPENSSL_cleanse(got, sizeof(got));
    return r;
}

gw_err_t gw_auth_passwd_hash_salt(const void *pass, size_t passlen, uint32_t iterations,
                                  const uint8_t salt[GW_AUTH_SALT_LEN], char *out, size_t cap)
{
    uint8_t hash[GW_AUTH_HASH_LEN];
    char salt64[32], hash64[96];

    if (iterations == 0)
        iterations = GW_AUTH_DEFAULT_ITERATIONS;
    if (!out || (!pass && passlen) || iterations < GW_AUTH_MIN_ITERATIONS ||
        iterations > GW_AUTH_MAX_ITERATIONS)
        return GW_ERR_INVAL;
    if (cap < GW_AUTH_HASH_STR_MAX)
        return GW_ERR_NOSPACE;
    if (!derive(pass, passlen, salt, iterations, hash))
        return GW_ERR_IO;
    gw_auth__b64_encode(salt, GW_AUTH_SALT_LEN, salt64);
    gw_auth__b64_encode(hash, GW_AUTH_HASH_LEN, hash64);
    OPENSSL_cleanse(hash, sizeof(hash));
    snprintf(out, cap, GW_AUTH_SCHEME "$%u$%s$%s", (unsigned)iterations, salt64, hash64);
    return GW_OK;
}

gw_err_t gw_auth_passwd_hash(const void *pass, size_t passlen, uint32_t iterations, char *out,
                             size_t cap)
{
    uint8_t salt[GW_AUTH_SALT_LEN];

    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return GW_ERR_IO;
    return gw_auth_passwd_hash_salt(pass, passlen, iterations, salt, out, cap);
}
