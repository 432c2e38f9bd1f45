#include "topic/topic_slab.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SLAB_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SLAB_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SLAB_POISON(p, n) ((void)(p), (void)(n))
#define SLAB_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* glibc: 8-byte chunk header, 16-byte granularity; used for the estimate only. */
#define MALLOC_OVERHEAD 16u

typedef struct gw_topic_slab_chunk {
    struct gw_topic_slab_chunk *next;
    uint64_t pad; /* keeps the payload 16-byte aligned */
} gw_topic_slab_chunk_t;

static size_t slab_round(size_t size)
{
    return (size + 7u) & ~(size_t)7u;
}

size_t gw_topic_slab_block_size(size_t size)
{
    if (size <= GW_TOPIC_SLAB_MAX)
        return slab_round(size);
    return size + MALLOC_OVERHEAD;
}

void gw_topic_slab_init(gw_topic_slab_t *s)
{
    memset(s, 0, sizeof(*s));
}

static void slab_release_chunks(gw_topic_slab_t *s)
{
    gw_topic_slab_chunk_t *c = s->chunks;
    while (c) {
        gw_topic_slab_chunk_t *next = c->next;
        SLAB_UNPOISON(c, GW_TOPIC_SLAB_CHUNK);
        free(c);
        s->reserved_bytes -= GW_TOPIC_SLAB_CHUNK;
        c = next;
    }
    s->chunks = NULL;
    s->bump = NULL;
    s->bump_left = 0;
    memset(s->free_list, 0, sizeof(s->free_list));
}

void gw_topic_slab_destroy(gw_topic_slab_t *s)
{
    slab_release_chunks(s);
}

void *gw_topic_slab_alloc(gw_topic_slab_t *s, size_t size)
{
    if (size > GW_TOPIC_SLAB_MAX) {
        void *p = malloc(size);
        if (p) {
            s->live_bytes += size + MALLOC_OVERHEAD;
            s->reserved_bytes += size + MALLOC_OVERHEAD;
        }
        return p;
    }
    size_t bsize = slab_round(size ? size : 1);
    size_t cls = bsize / 8u - 1u;
    void *p = s->free_list[cls];
    if (p) {
        SLAB_UNPOISON(p, bsize);
        void *next;
        memcpy(&next, p, sizeof(next));
        s->free_list[cls] = next;
    } else {
        if (s->bump_left < bsize) {
            /* The tail of the old chunk (< 256 bytes) goes to its size class. */
            if (s->bump_left >= 8u) {
                size_t tcls = s->bump_left / 8u - 1u;
                SLAB_UNPOISON(s->bump, sizeof(void *));
                memcpy(s->bump, &s->free_list[tcls], sizeof(void *));
                s->free_list[tcls] = s->bump;
            }
            gw_topic_slab_chunk_t *c = malloc(GW_TOPIC_SLAB_CHUNK);
            if (!c)
                return NULL;
            c->next = s->chunks;
            s->chunks = c;
            s->reserved_bytes += GW_TOPIC_SLAB_CHUNK;
            s->bump = (char *)(c + 1);
            s->bump_left = GW_TOPIC_SLAB_CHUNK - sizeof(*c);
            SLAB_POISON(s->bump, s->bump_left);
        }
        p = s->bump;
        s->bump += bsize;
        s->bump_left -= bsize;
        SLAB_UNPOISON(p, bsize);
    }
    s->live_bytes += bsize;
    s->live_blocks++;
    return p;
}

void *gw_topic_slab_calloc(gw_topic_slab_t *s, size_t size)
{
    void *p = gw_topic_slab_alloc(s, size);
    if (p)
        memset(p, 0, size);
    return p;
}

void gw_topic_slab_free(gw_topic_slab_t *s, void *p, size_t size)
{
    if (!p)
        return;
    if (size > GW_TOPIC_SLAB_MAX) {
        free(p);
        s->live_bytes -= size + MALLOC_OVERHEAD;
        s->reserved_bytes -= size + MALLOC_OVERHEAD;
        return;
    }
    size_t bsize = slab_round(size ? size : 1);
    size_t cls = bsize / 8u - 1u;
    memcpy(p, &s->free_list[cls], sizeof(void *));
    s->free_list[cls] = p;
    /* keep the link word readable, poison the rest */
    SLAB_POISON((char *)p + sizeof(void *), bsize - sizeof(void *));
    s->live_bytes -= bsize;
    if (--s->live_blocks == 0)
        slab_release_chunks(s);
}
