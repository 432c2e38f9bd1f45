/*
 * registry.c - client id -> owning worker and connection serial.
 *
 * The one structure shared by the workers; only CONNECT and client close
 * touch it (not the message path), under one mutex. Chained hash table that
 * doubles when the load factor exceeds 1.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

typedef struct gw_reg_entry {
    struct gw_reg_entry *next;
    uint64_t hash;
    uint64_t serial;
    size_t worker;
    size_t len;
    char id[];
} gw_reg_entry_t;

struct gw_registry {
    pthread_mutex_t mu;
    gw_reg_entry_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
};

static uint64_t hash_id(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

gw_registry_t *gw_registry_new(void)
{
    gw_registry_t *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return NULL;
    reg->nbuckets = 1024;
    reg->buckets = calloc(reg->nbuckets, sizeof(*reg->buckets));
    if (!reg->buckets) {
        free(reg);
        return NULL;
    }
    pthread_mutex_init(&reg->mu, NULL);
    return reg;
}

void gw_registry_free(gw_registry_t *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->nbuckets; i++) {
        gw_reg_entry_t *e = reg->buckets[i];
        while (e) {
            gw_reg_entry_t *n = e->next;
            free(e);
            e = n;
        }
    }
    free(reg->buckets);
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

static void grow(gw_registry_t *reg)
{
    size_t nb = reg->nbuckets * 2;
    gw_reg_entry_t **b = calloc(nb, sizeof(*b));
    if (!b)
        return; /* keep the longer chains */
    for (size_t i = 0; i < reg->nbuckets; i++) {
        gw_reg_entry_t *e = reg->buckets[i];
        while (e) {
            gw_reg_entry_t *n = e->next;
            size_t k = e->hash & (nb - 1);
            e->next = b[k];
            b[k] = e;
            e = n;
        }
    }
    free(reg->buckets);
    reg->buckets = b;
    reg->nbuckets = nb;
}

bool gw_registry_claim(gw_registry_t *reg, const char *id, size_t len, size_t worker,
                       uint64_t serial, size_t *old_worker, uint64_t *old_serial)
{
    uint64_t h = hash_id(id, len);
    bool replaced = false;
    pthread_mutex_lock(&reg->mu);
    for (gw_reg_entry_t *e = reg->buckets[h & (reg->nbuckets - 1)]; e; e = e->next) {
        if (e->hash == h && e->len == len && memcmp(e->id, id, len) == 0) {
            *old_worker = e->worker;
            *old_serial = e->serial;
            e->worker = worker;
            e->serial = serial;
            replaced = true;
            goto cleanup;
        }
    }
    gw_reg_entry_t *e = malloc(sizeof(*e) + len);
    if (!e)
        goto cleanup; /* takeover detection degrades; the services still steal links */
    e->hash = h;
    e->serial = serial;
    e->worker = worker;
    e->len = len;
    memcpy(e->id, id, len);
    size_t k = h & (reg->nbuckets - 1);
    e->next = reg->buckets[k];
    reg->buckets[k] = e;
    if (++reg->count > reg->nbuckets)
        grow(reg);
cleanup:
    pthread_mutex_unlock(&reg->mu);
    return replaced;
}

void gw_registry_release(gw_registry_t *reg, const char *id, size_t len, uint64_t serial)
{
    uint64_t h = hash_id(id, len);
    pthread_mutex_lock(&reg->mu);
    gw_reg_entry_t **pp = &reg->buckets[h & (reg->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next) {
        gw_reg_entry_t *e = *pp;
        if (e->hash == h && e->len == len && memcmp(e->id, id, len) == 0) {
            if (e->serial == serial) {
                *pp = e->next;
                free(e);
                reg->count--;
            }
            break;
        }
    }
    pthread_mutex_unlock(&reg->mu);
}
