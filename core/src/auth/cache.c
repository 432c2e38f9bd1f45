/*
 * cache.c - bounded cache of recent successful password verifications.
 *
 * Key = HMAC-SHA256(per-cache random key, user, iterations, salt, stored
 * hash, password). Binding the stored salt/hash means a changed password in
 * a reloaded file never hits an old entry; the random key means the table
 * holds nothing an attacker could brute-force faster than the file itself.
 * 4-way set associative, LRU inside a set: O(1), no allocation after new().
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth/auth-internal.h"

#define WAYS 4
#define KEY_LEN 32

typedef struct slot {
    uint8_t key[KEY_LEN];
    uint64_t expires_ms;
    uint64_t used; /* LRU tick; 0 = empty */
} slot_t;

struct gw_auth_cache {
    pthread_mutex_t lock;
    slot_t *slots;
    size_t nsets;
    uint64_t ttl_ms;
    uint64_t tick;
    EVP_MAC *mac;
    EVP_MAC_CTX *mac_ctx; /* initialised with the key; dup'd per use */
    gw_auth_cache_stats_t stats;
};

uint64_t gw_auth_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

gw_auth_cache_t *gw_auth_cache_new(size_t capacity, uint64_t ttl_ms)
{
    gw_auth_cache_t *c = calloc(1, sizeof(*c));
    uint8_t key[KEY_LEN];
    OSSL_PARAM params[2];

    if (!c)
        return NULL;
    c->nsets = capacity < WAYS ? 1 : (capacity + WAYS - 1) / WAYS;
    c->ttl_ms = ttl_ms;
    c->slots = calloc(c->nsets * WAYS, sizeof(slot_t));
    c->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (c->mac)
        c->mac_ctx = EVP_MAC_CTX_new(c->mac);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (!c->slots || !c->mac_ctx || RAND_bytes(key, sizeof(key)) != 1 ||
        EVP_MAC_init(c->mac_ctx, key, sizeof(key), params) != 1 ||
        pthread_mutex_init(&c->lock, NULL) != 0) {
        OPENSSL_cleanse(key, sizeof(key));
        EVP_MAC_CTX_free(c->mac_ctx);
        EVP_MAC_free(c->mac);
        free(c->slots);
        free(c);
        return NULL;
    }
    OPENSSL_cleanse(key, sizeof(key));
    return c;
}

void gw_auth_cache_free(gw_auth_cache_t *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->lock);
    EVP_MAC_CTX_free(c->mac_ctx);
    EVP_MAC_free(c->mac);
    OPENSSL_cleanse(c->slots, c->nsets * WAYS * sizeof(slot_t));
    free(c->slots);
    free(c);
}

void gw_auth_cache_clear(gw_auth_cache_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    memset(c->slots, 0, c->nsets * WAYS * sizeof(slot_t));
    pthread_mutex_unlock(&c->lock);
}

void gw_auth_cache_stats(gw_auth_cache_t *c, gw_auth_cache_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}

static int cache_key(gw_auth_cache_t *c, const gw_auth_entry_t *e, const void *pass,
                     size_t passlen, uint8_t out[KEY_LEN])
{
    size_t outlen = 0;
    uint8_t hdr[8];
    int ok;
    EVP_MAC_CTX *ctx;

    /* EVP_MAC_CTX is not shareable between threads: work on a copy. */
    pthread_mutex_lock(&c->lock);
    ctx = EVP_MAC_CTX_dup(c->mac_ctx);
    pthread_mutex_unlock(&c->lock);
    if (!ctx)
        return 0;
    hdr[0] = (uint8_t)(e->user_len >> 24);
    hdr[1] = (uint8_t)(e->user_len >> 16);
    hdr[2] = (uint8_t)(e->user_len >> 8);
    hdr[3] = (uint8_t)e->user_len;
    hdr[4] = (uint8_t)(e->iterations >> 24);
    hdr[5] = (uint8_t)(e->iterations >> 16);
    hdr[6] = (uint8_t)(e->iterations >> 8);
    hdr[7] = (uint8_t)e->iterations;
    ok = EVP_MAC_update(ctx, hdr, sizeof(hdr)) == 1 &&
         EVP_MAC_update(ctx, (const uint8_t *)e->user, e->user_len) == 1 &&
         EVP_MAC_update(ctx, e->salt, sizeof(e->salt)) == 1 &&
         EVP_MAC_update(ctx, e->hash, sizeof(e->hash)) == 1 &&
         (passlen == 0 || EVP_MAC_update(ctx, pass, passlen) == 1) &&
         EVP_MAC_final(ctx, out, &outlen, KEY_LEN) == 1 && outlen == KEY_LEN;
    EVP_MAC_CTX_free(ctx);
    return ok;
}

static slot_t *set_of(gw_auth_cache_t *c, const uint8_t key[KEY_LEN])
{
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    return &c->slots[(h % c->nsets) * WAYS];
}

/* Under the lock. */
static bool cache_lookup(gw_auth_cache_t *c, const uint8_t key[KEY_LEN], uint64_t now)
{
    slot_t *set = set_of(c, key);

    for (int i = 0; i < WAYS; i++) {
        slot_t *s = &set[i];
        if (s->used && CRYPTO_memcmp(s->key, key, KEY_LEN) == 0) {
            if (now >= s->expires_ms) {
                memset(s, 0, sizeof(*s));
                c->stats.expired++;
                return false;
            }
            s->used = ++c->tick;
            return true;
        }
    }
    return false;
}

/* Under the lock. Same key, else a free or expired slot, else the LRU one. */
static void cache_insert(gw_auth_cache_t *c, const uint8_t key[KEY_LEN], uint64_t now)
{
    slot_t *set = set_of(c, key);
    slot_t *same = NULL, *free_slot = NULL, *lru = NULL;

    for (int i = 0; i < WAYS; i++) {
        slot_t *s = &set[i];
        if (s->used && CRYPTO_memcmp(s->key, key, KEY_LEN) == 0)
            same = s; /* a concurrent verification got there first */
        else if (!s->used || now >= s->expires_ms)
            free_slot = free_slot ? free_slot : s;
        else if (!lru || s->used < lru->used)
            lru = s;
    }
    slot_t *victim = same ? same : free_slot ? free_slot : lru;
    if (victim == lru)
        c->stats.evictions++;
    memcpy(victim->key, key, KEY_LEN);
    victim->expires_ms = now + c->ttl_ms;
    victim->used = ++c->tick;
    c->stats.inserts++;
}

gw_auth_result_t gw_auth_verify(const gw_auth_passwd_t *db, gw_auth_cache_t *cache,
                                const char *user, size_t userlen, const void *pass,
                                size_t passlen, uint64_t now_ms)
{
    uint8_t key[KEY_LEN];
    const gw_auth_entry_t *e;
    gw_auth_result_t r;

    if (!cache || !db)
        return gw_auth_passwd_check(db, user, userlen, pass, passlen);
    e = gw_auth__passwd_find(db, user, userlen);
    if (!e || !cache_key(cache, e, pass, passlen, key))
        return gw_auth_passwd_check(db, user, userlen, pass, passlen);

    pthread_mutex_lock(&cache->lock);
    bool hit = cache_lookup(cache, key, now_ms);
    if (hit)
        cache->stats.hits++;
    else
        cache->stats.misses++;
    pthread_mutex_unlock(&cache->lock);
    if (hit) {
        OPENSSL_cleanse(key, sizeof(key));
        return GW_AUTH_OK;
    }
    r = gw_auth_passwd_check(db, user, userlen, pass, passlen);
    if (r == GW_AUTH_OK) {
        pthread_mutex_lock(&cache->lock);
        cache_insert(cache, key, now_ms);
        pthread_mutex_unlock(&cache->lock);
    }
    OPENSSL_cleanse(key, sizeof(key));
    return r;
}

gw_auth_result_t gw_auth_verify_cached(const gw_auth_passwd_t *db, gw_auth_cache_t *cache,
                                       const char *user, size_t userlen, const void *pass,
                                       size_t passlen, uint64_t now_ms)
{
    uint8_t key[KEY_LEN];
    const gw_auth_entry_t *e;
    bool hit = false;

    if (!cache || !db)
        return GW_AUTH_BAD_PASSWORD;
    e = gw_auth__passwd_find(db, user, userlen);
    if (!e)
        return GW_AUTH_UNKNOWN_USER;
    if (!cache_key(cache, e, pass, passlen, key))
        return GW_AUTH_ERROR;
    pthread_mutex_lock(&cache->lock);
    hit = cache_lookup(cache, key, now_ms);
    if (hit)
        cache->stats.hits++;
    else
        cache->stats.misses++;
    pthread_mutex_unlock(&cache->lock);
    OPENSSL_cleanse(key, sizeof(key));
    return hit ? GW_AUTH_OK : GW_AUTH_BAD_PASSWORD;
}
