/*
 * topic_slab.h - size-class allocator for the subscription index (internal).
 *
 * The index holds millions of small objects (trie nodes of 24..64 bytes,
 * child arrays, entry blocks). glibc malloc adds an 8-byte header and rounds
 * every chunk to 16 bytes (32 bytes minimum), which alone costs ~30 bytes per
 * filter. The slab hands out 8-byte-granular blocks from 64 KiB chunks with
 * one free list per size class and no per-block header: the caller passes
 * the size back on free (it always knows it). Blocks above
 * GW_TOPIC_SLAB_MAX go to malloc directly.
 *
 * Chunks are kept for reuse until the slab has no live block left, then all
 * of them are released (so an index emptied by removals returns to its
 * baseline footprint). Under AddressSanitizer free blocks are poisoned, so a
 * use-after-free inside the slab is still reported.
 *
 * Not thread-safe (one per index).
 */
#ifndef GW_TOPIC_SLAB_H
#define GW_TOPIC_SLAB_H

#include <stddef.h>

#define GW_TOPIC_SLAB_MAX 256u
#define GW_TOPIC_SLAB_CLASSES (GW_TOPIC_SLAB_MAX / 8u)
#define GW_TOPIC_SLAB_CHUNK 65536u

typedef struct gw_topic_slab {
    void *free_list[GW_TOPIC_SLAB_CLASSES]; /* class c holds blocks of 8*(c+1) bytes */
    struct gw_topic_slab_chunk *chunks;     /* all chunks, newest first */
    char *bump;                             /* next free byte in the newest chunk */
    size_t bump_left;
    size_t live_bytes;     /* bytes in live blocks (slab + large) */
    size_t reserved_bytes; /* chunks + large blocks (+ malloc header estimate) */
    size_t live_blocks;    /* live slab blocks; 0 releases every chunk */
} gw_topic_slab_t;

void gw_topic_slab_init(gw_topic_slab_t *s);
/** Release every chunk; outstanding blocks become invalid (large ones are the caller's). */
void gw_topic_slab_destroy(gw_topic_slab_t *s);
/** size > 0. Returns NULL on allocation failure. Block is 8-byte aligned, not zeroed. */
void *gw_topic_slab_alloc(gw_topic_slab_t *s, size_t size);
/** Same as alloc, zero-filled. */
void *gw_topic_slab_calloc(gw_topic_slab_t *s, size_t size);
/** p from gw_topic_slab_alloc with the same size; NULL is ignored. */
void gw_topic_slab_free(gw_topic_slab_t *s, void *p, size_t size);
/** Bytes a block of `size` really occupies (rounded class size, or size + malloc header). */
size_t gw_topic_slab_block_size(size_t size);

#endif
