/*
 * auth.h - authentication (password file, client certificates) and
 * authorisation (ACL file) for the gateway. Formats and semantics are
 * documented for operators in docs/security.md.
 *
 * Password verification is slow by design: PBKDF2-HMAC-SHA512 at the
 * default 210000 iterations costs ~100-250 ms of CPU. It must never run on
 * an event loop thread: the gateway submits CONNECT credentials to a
 * gw_auth_pool_t (worker threads) and gets the result back on its
 * event_base. A gw_auth_cache_t of recent successes (keyed by an HMAC of
 * user + password + stored hash under a per-process random key) avoids
 * rehashing during reconnect storms; it is consulted by the pool workers.
 *
 * ACL checks are cheap (no allocation, no syscall) and are meant to run on
 * the event loop for every SUBSCRIBE filter, PUBLISH topic and will topic.
 *
 * Threading: a gw_auth_passwd_t and a gw_auth_acl_t are immutable after
 * load and may be read from any number of threads. A gw_auth_passwd_t is
 * reference counted so that a reload (SIGHUP: load a new one, swap the
 * pointer, release the old one) is safe while pool jobs still use the old
 * one. A gw_auth_cache_t has its own lock. A gw_auth_pool_t is driven from
 * the one thread that runs its event_base.
 */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "gw/error.h"

struct event_base;

/* ------------------------------------------------------------------ */
/* Password file                                                       */
/* ------------------------------------------------------------------ */

/*
 * One user per line:
 *   username:pbkdf2-sha512$<iterations>$<salt base64>$<hash base64>
 * salt 16 bytes, hash 64 bytes, standard base64 with padding (RFC 4648 s.4).
 * Blank lines and lines whose first character is '#' are ignored. Lines are
 * at most GW_AUTH_LINE_MAX bytes (newline excluded). A user name is 1..
 * GW_AUTH_USER_MAX bytes of UTF-8 without ':', control characters or
 * U+0000; "user@tenant" is just a name here. Duplicate names are errors.
 */
#define GW_AUTH_SCHEME "pbkdf2-sha512"
#define GW_AUTH_SALT_LEN 16
#define GW_AUTH_HASH_LEN 64
#define GW_AUTH_DEFAULT_ITERATIONS 210000u /* OWASP 2023, PBKDF2-HMAC-SHA512 */
#define GW_AUTH_MIN_ITERATIONS 1000u
#define GW_AUTH_MAX_ITERATIONS 100000000u
#define GW_AUTH_LINE_MAX 1024
#define GW_AUTH_USER_MAX 512
#define GW_AUTH_MAX_USERS 1000000
/* Longest "pbkdf2-sha512$<iter>$<salt>$<hash>" string incl. the NUL. */
#define GW_AUTH_HASH_STR_MAX 160
/* Size of the errbuf the loaders write a message into. */
#define GW_AUTH_ERRBUF 256

typedef struct gw_auth_passwd gw_auth_passwd_t;

/** Outcome of a credential check. */
typedef enum gw_auth_result {
    GW_AUTH_OK = 0,           /* user known, password right */
    GW_AUTH_UNKNOWN_USER,     /* no such user: CONNACK 4 */
    GW_AUTH_BAD_PASSWORD,     /* wrong password: CONNACK 4 */
    GW_AUTH_ERROR,            /* internal failure (OpenSSL, memory): CONNACK 3 */
} gw_auth_result_t;

/** "ok", "unknown-user", "bad-password", "error" (for logs). */
const char *gw_auth_result_name(gw_auth_result_t r);

/**
 * Load a password file. On GW_OK *out holds a new database with one
 * reference (release with gw_auth_passwd_free()). On failure *out is NULL
 * and errbuf (GW_AUTH_ERRBUF bytes, may be NULL) holds "path:line: reason".
 * GW_ERR_IO (cannot open/read), GW_ERR_CONFIG (malformed line, line too
 * long, duplicate user, too many users), GW_ERR_NOMEM.
 */
gw_err_t gw_auth_passwd_load(const char *path, gw_auth_passwd_t **out, char *errbuf);
/** Same as gw_auth_passwd_load() on an in-memory text (tests, config). */
gw_err_t gw_auth_passwd_parse(const char *text, size_t len, const char *name,
                              gw_auth_passwd_t **out, char *errbuf);
/** Take one more reference; returns db. Thread-safe. */
gw_auth_passwd_t *gw_auth_passwd_ref(gw_auth_passwd_t *db);
/** Drop one reference; frees at zero. NULL ignored. Thread-safe. */
void gw_auth_passwd_free(gw_auth_passwd_t *db);
/** Number of users. */
size_t gw_auth_passwd_count(const gw_auth_passwd_t *db);

/**
 * Verify user/pass (not NUL-terminated; user as in the MQTT CONNECT).
 * SLOW (one PBKDF2 run): never call on an event loop thread. An unknown user
 * costs one dummy PBKDF2 run too, so that timing does not reveal which
 * user names exist. Comparison is constant time (CRYPTO_memcmp).
 */
gw_auth_result_t gw_auth_passwd_check(const gw_auth_passwd_t *db, const char *user,
                                      size_t userlen, const void *pass, size_t passlen);

/**
 * Hash a password with a fresh random salt into out[0..cap) as the NUL-
 * terminated "pbkdf2-sha512$<iterations>$<salt>$<hash>" (the part after
 * "username:"). iterations 0 = GW_AUTH_DEFAULT_ITERATIONS, otherwise it
 * must lie in [GW_AUTH_MIN_ITERATIONS, GW_AUTH_MAX_ITERATIONS] (GW_ERR_INVAL).
 * GW_ERR_NOSPACE if cap < GW_AUTH_HASH_STR_MAX; GW_ERR_IO if OpenSSL fails.
 */
gw_err_t gw_auth_passwd_hash(const void *pass, size_t passlen, uint32_t iterations, char *out,
                             size_t cap);
/** As gw_auth_passwd_hash() with a given salt (tests, known vectors). */
gw_err_t gw_auth_passwd_hash_salt(const void *pass, size_t passlen, uint32_t iterations,
                                  const uint8_t salt[GW_AUTH_SALT_LEN], char *out, size_t cap);
/**
 * Validate a user name for the password file (rules above): GW_OK or
 * GW_ERR_INVAL; *why (may be NULL) gets a static reason.
 */
gw_err_t gw_auth_user_validate(const char *user, size_t len, const char **why);
/**
 * Tenant part of a user name: the bytes after the LAST '@' (none if there
 * is no '@' or nothing follows it). Returns the length, *tenant points into
 * user; 0 and *tenant = NULL when there is none.
 */
size_t gw_auth_user_tenant(const char *user, size_t len, const char **tenant);

/* ------------------------------------------------------------------ */
/* Cache of recent successful verifications                            */
/* ------------------------------------------------------------------ */

typedef struct gw_auth_cache gw_auth_cache_t;

/**
 * capacity: maximum entries (rounded up to a multiple of 4, >= 4); ttl_ms:
 * lifetime of an entry after a successful verification. Entries are keyed
 * by HMAC-SHA256(random per-cache key, user, password, stored hash), so a
 * password change in a reloaded file invalidates the entry by itself and
 * the cache never holds a fast-to-brute-force digest of a password. Only
 * successes are cached. Eviction: 4-way set associative, least recently
 * used within a set. NULL on allocation/RNG failure.
 */
gw_auth_cache_t *gw_auth_cache_new(size_t capacity, uint64_t ttl_ms);
void gw_auth_cache_free(gw_auth_cache_t *cache);
/** Forget everything (e.g. on reload if the caller wants to be strict). */
void gw_auth_cache_clear(gw_auth_cache_t *cache);

typedef struct gw_auth_cache_stats {
    uint64_t hits, misses, inserts, evictions, expired;
} gw_auth_cache_stats_t;
void gw_auth_cache_stats(gw_auth_cache_t *cache, gw_auth_cache_stats_t *out);

/**
 * Verify with the cache: a fresh hit returns GW_AUTH_OK without PBKDF2;
 * otherwise gw_auth_passwd_check() and, on success, insert. cache may be
 * NULL. now_ms: a monotonic clock in milliseconds (injectable for tests);
 * gw_auth_now_ms() gives CLOCK_MONOTONIC. SLOW on a miss.
 */
gw_auth_result_t gw_auth_verify(const gw_auth_passwd_t *db, gw_auth_cache_t *cache,
                                const char *user, size_t userlen, const void *pass,
                                size_t passlen, uint64_t now_ms);
uint64_t gw_auth_now_ms(void);
/**
 * The cache only, never PBKDF2 (fast: one HMAC): GW_AUTH_OK on a fresh hit
 * (these credentials were verified within the TTL), GW_AUTH_BAD_PASSWORD
 * on a miss (not verified: it may still be right), GW_AUTH_UNKNOWN_USER,
 * GW_AUTH_ERROR. For an address blocked after failed logins: known-good
 * credentials still get in, nothing else costs a verification.
 */
gw_auth_result_t gw_auth_verify_cached(const gw_auth_passwd_t *db, gw_auth_cache_t *cache,
                                       const char *user, size_t userlen, const void *pass,
                                       size_t passlen, uint64_t now_ms);

/* ------------------------------------------------------------------ */
/* Worker pool: verification off the event loop                        */
/* ------------------------------------------------------------------ */

typedef struct gw_auth_pool gw_auth_pool_t;
typedef struct gw_auth_job gw_auth_job_t;

/** Called on the event_base's thread with the outcome; job is freed after. */
typedef void (*gw_auth_done_fn)(gw_auth_result_t result, void *arg);

/**
 * nthreads workers (1..64), at most max_pending jobs queued or running
 * (backpressure; 1..1000000). Completions are delivered through an eventfd
 * watched by base (no evthread setup needed), in the base's thread, one
 * eventfd write per batch. The pool keeps a reference to cache (not owned;
 * may be NULL; must outlive the pool). GW_ERR_INVAL, GW_ERR_NOMEM, GW_ERR_IO.
 */
gw_err_t gw_auth_pool_new(struct event_base *base, unsigned nthreads, size_t max_pending,
                          gw_auth_cache_t *cache, gw_auth_pool_t **out);
/**
 * Stop and join the workers, free everything. Callbacks of jobs not yet
 * delivered are NOT called. Call from the base's thread. NULL ignored.
 */
void gw_auth_pool_free(gw_auth_pool_t *pool);

/**
 * Queue a verification. user and pass are copied (the password copy is
 * wiped after use); the job takes a reference on db, so the caller may
 * swap and release db at once. done(result, arg) runs later on the base's
 * thread, never from inside this call. *job (may be NULL) is a handle for
 * gw_auth_pool_cancel(), valid until done runs or cancel returns.
 * GW_ERR_LIMIT when max_pending jobs are outstanding (answer CONNACK 3),
 * GW_ERR_INVAL, GW_ERR_NOMEM.
 */
gw_err_t gw_auth_pool_submit(gw_auth_pool_t *pool, gw_auth_passwd_t *db, const char *user,
                             size_t userlen, const void *pass, size_t passlen,
                             gw_auth_done_fn done, void *arg, gw_auth_job_t **job);
/**
 * The client went away: done will not be called for this job (a queued
 * job is not verified at all). Call from the base's thread, at most once,
 * and only before done ran.
 */
void gw_auth_pool_cancel(gw_auth_pool_t *pool, gw_auth_job_t *job);
/** Jobs submitted and neither delivered nor cancelled-and-reaped. */
size_t gw_auth_pool_pending(gw_auth_pool_t *pool);

/* ------------------------------------------------------------------ */
/* ACL file                                                            */
/* ------------------------------------------------------------------ */

typedef struct gw_auth_acl gw_auth_acl_t;

#define GW_ACL_READ 1u  /* SUBSCRIBE filters (and delivery) */
#define GW_ACL_WRITE 2u /* PUBLISH topics and will topics */

/**
 * Load an ACL file (syntax and semantics: docs/security.md). On failure
 * *out is NULL and errbuf gets "path:line: reason"; GW_ERR_IO, GW_ERR_CONFIG,
 * GW_ERR_NOMEM.
 */
gw_err_t gw_auth_acl_load(const char *path, gw_auth_acl_t **out, char *errbuf);
gw_err_t gw_auth_acl_parse(const char *text, size_t len, const char *name, gw_auth_acl_t **out,
                           char *errbuf);
void gw_auth_acl_free(gw_auth_acl_t *acl);

/** Who is asking. Strings are not NUL-terminated; NULL ptr = absent. */
typedef struct gw_auth_subject {
    const char *user;      /* NULL: anonymous client */
    size_t user_len;
    const char *tenant;    /* NULL: none (see gw_auth_user_tenant(), certificate map) */
    size_t tenant_len;
    const char *client_id; /* NULL or empty: no %c substitution possible */
    size_t client_id_len;
} gw_auth_subject_t;

/**
 * May subject perform access (exactly one of GW_ACL_READ / GW_ACL_WRITE)
 * on topic (is_filter false: a validated topic name) or filter (is_filter
 * true: a validated topic filter)? Default deny. Allowed when some
 * applicable allow rule covers it (a filter: every topic it can match is
 * matched by the rule) and no applicable deny rule can match any topic it
 * covers. No allocation. A NULL acl allows everything (no ACL configured).
 * Rules needing a %u/%c/%t value the subject lacks do not apply; a value
 * that is empty or holds '/', '+' or '#' never satisfies an allow rule and
 * makes a deny rule that needs it deny (fail closed). A topic name holding
 * '+' or '#' is refused. Callers map a refusal to SUBACK 0x80 (SUBSCRIBE),
 * a dropped message (PUBLISH) or CONNACK 5 (will topic).
 */
bool gw_auth_acl_check(const gw_auth_acl_t *acl, const gw_auth_subject_t *subject,
                       const char *topic, size_t len, unsigned access, bool is_filter);

/* Topic-filter relations used by the ACL (exported for tests and reuse);
 * both arguments validated filters. '$' rule (MQTT-4.7.2-1) honoured. */
/** True if every topic matched by inner is matched by outer. */
bool gw_auth_filter_covers(const char *outer, size_t olen, const char *inner, size_t ilen);
/** True if some topic is matched by both. */
bool gw_auth_filter_intersects(const char *a, size_t alen, const char *b, size_t blen);

/* ------------------------------------------------------------------ */
/* Client certificates                                                 */
/* ------------------------------------------------------------------ */

/**
 * Identity from a client certificate's subject: the value of field (a DN
 * attribute short or long name: "CN" (default when NULL), "emailAddress",
 * "UID", "OU", "serialNumber", ...) as UTF-8, NUL-terminated in out[0..cap),
 * length in *len (may be NULL).
 * GW_ERR_NOT_FOUND (field absent), GW_ERR_EXISTS (field present more than
 * once: ambiguous, refused), GW_ERR_INVAL (unknown field name, NULL cert),
 * GW_ERR_MQTT_UTF8 (value empty, not convertible, or contains U+0000 or a
 * control character), GW_ERR_NOSPACE (value needs more than cap - 1 bytes),
 * GW_ERR_NOMEM.
 */
gw_err_t gw_auth_cert_identity(X509 *cert, const char *field, char *out, size_t cap,
                               size_t *len);

/**
 * Issuer DN as an RFC 2253 string ("CN=Acme Device CA,O=Acme") into
 * out[0..cap): GW_OK, GW_ERR_NOSPACE, GW_ERR_NOMEM.
 */
gw_err_t gw_auth_cert_issuer(X509 *cert, char *out, size_t cap);

/**
 * Issuer -> tenant map. File: one mapping per line "<tenant> <issuer DN>",
 * the DN being the rest of the line in RFC 2253 form exactly as
 * gw_auth_cert_issuer() prints it; '#' comments and blank lines ignored;
 * duplicate issuers are errors.
 */
typedef struct gw_auth_certmap gw_auth_certmap_t;
gw_err_t gw_auth_certmap_load(const char *path, gw_auth_certmap_t **out, char *errbuf);
gw_err_t gw_auth_certmap_parse(const char *text, size_t len, const char *name,
                               gw_auth_certmap_t **out, char *errbuf);
void gw_auth_certmap_free(gw_auth_certmap_t *map);
/** Tenant for cert's issuer (borrowed from map), NULL if unmapped. */
const char *gw_auth_certmap_tenant(const gw_auth_certmap_t *map, X509 *cert);

#endif
