/*
 * topic_index.c - the subscription index (see gw/topic.h).
 *
 * Layout, chosen to keep a million filters well under 100 bytes each:
 *
 *   node   = kids pointer, ents pointer, level length, flags, level bytes
 *            (19 bytes + the level, from the slab in 8-byte steps).
 *   kids   = NULL (leaf), the only child itself (NF_KIDS_ONE), or a block
 *            {plus child, n, cap, slots}: a dense array while cap <= 8, an
 *            open-addressing table (linear probing, SipHash-1-3 with a
 *            per-index random key, backward-shift deletion) beyond that.
 *            The '+' child lives in the block, so leaves pay nothing for it.
 *   ents   = NULL, the only subscriber itself (NF_ENT_INLINE, its QoS and
 *            kind in the flags), or a block of parallel arrays subs[]/qos[]
 *            partitioned as [filters ending here | filters "<here>/#"],
 *            with a hash index on the subscriber once cap > 8 so that one
 *            filter shared by 100k clients still adds/removes in O(1).
 *
 * A trailing '#' is not a node of its own: "a/#" is a "hash" entry of node
 * "a". That saves one node per "devices/<id>/cmd/#" filter and is exactly
 * the rule that "a/#" matches "a" and everything below it (MQTT-4.7.1-2).
 */
#include "gw/topic.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "gw/log.h"
#include "topic/topic_slab.h"

#define KIDS_SMALL_MAX 8u   /* dense child array up to this many children */
#define KIDS_TABLE_MIN 16u  /* first open-addressing capacity */
#define ENT_INDEX_MIN 16u   /* entry blocks with cap >= this keep a hash index */
#define LOCAL_DEPTH 64u     /* deeper than this, add/remove/match use the heap */
#define LEVEL_MAX 65535u    /* MQTT-1.5.3: a string is at most 65535 bytes */

enum {
    NF_KIDS_ONE = 0x01,   /* kids is the only child (tnode_t *), no '+' child */
    NF_ENT_INLINE = 0x02, /* ents is the only entry's subscriber */
    NF_ENT_HASH = 0x04,   /* ... and that entry is a "/#" entry */
    NF_QOS_SHIFT = 3,
    NF_QOS_MASK = 0x18,
};

enum { KIND_HERE = 0, KIND_HASH = 1 };

typedef struct tnode {
    void *kids;
    void *ents;
    uint16_t len;
    uint8_t flags;
    char name[]; /* len bytes, not NUL-terminated */
} tnode_t;

typedef struct kids {
    tnode_t *plus;
    uint32_t n;   /* exact children */
    uint32_t cap; /* <= KIDS_SMALL_MAX: dense array, else table (power of 2) */
    tnode_t *slot[];
} kids_t;

typedef struct ents {
    uint32_t n_here; /* subs[0 .. n_here) end here */
    uint32_t n_hash; /* subs[n_here .. n_here + n_hash) are "<here>/#" */
    uint32_t cap;
    uint32_t icap;   /* index slots (2 * cap) or 0 */
    uint32_t *index; /* position + 1 per slot, 0 = empty */
    void *subs[];    /* cap pointers, then cap QoS bytes */
} ents_t;

struct gw_topic_index {
    tnode_t *root; /* malloc'ed, level "" */
    gw_topic_slab_t slab;
    uint64_t k0, k1; /* SipHash key: children tables resist crafted level strings */
    size_t count;
    size_t nodes;
    uint32_t max_depth; /* high-water mark of trie levels: bounds the match stack */
};

/* ------------------------------------------------------------------ */
/* Hashing                                                              */
/* ------------------------------------------------------------------ */

#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32);                              \
        v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2;                                                   \
        v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0;                                                   \
        v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32);                              \
    } while (0)

/* SipHash-1-3 of one level string. */
static uint64_t level_hash(const gw_topic_index_t *idx, const char *s, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ idx->k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ idx->k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ idx->k0;
    uint64_t v3 = 0x7465646279746573ULL ^ idx->k1;
    const unsigned char *p = (const unsigned char *)s;
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m;
        memcpy(&m, p + i, 8);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t j = len & 7; j > 0; j--)
        b |= (uint64_t)p[full + j - 1] << (8 * (j - 1));
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static size_t ptr_hash(const void *p, int kind)
{
    uint64_t x = (uint64_t)(uintptr_t)p ^ (uint64_t)kind;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

/* ------------------------------------------------------------------ */
/* Nodes and children                                                   */
/* ------------------------------------------------------------------ */

static size_t node_size(size_t len)
{
    return offsetof(tnode_t, name) + len;
}

static size_t kids_size(uint32_t cap)
{
    return sizeof(kids_t) + (size_t)cap * sizeof(tnode_t *);
}

static uint32_t kids_small_cap(uint32_t n)
{
    return n == 0 ? 0 : n <= 2 ? 2 : n <= 4 ? 4 : KIDS_SMALL_MAX;
}

static tnode_t *node_new(gw_topic_index_t *idx, const char *s, size_t len)
{
    tnode_t *n = gw_topic_slab_alloc(&idx->slab, node_size(len));
    if (!n)
        return NULL;
    n->kids = NULL;
    n->ents = NULL;
    n->len = (uint16_t)len;
    n->flags = 0;
    memcpy(n->name, s, len);
    idx->nodes++;
    return n;
}

static void node_free(gw_topic_index_t *idx, tnode_t *n)
{
    idx->nodes--;
    gw_topic_slab_free(&idx->slab, n, node_size(n->len));
}

static inline bool node_is(const tnode_t *c, const char *s, size_t len)
{
    return c->len == len && memcmp(c->name, s, len) == 0;
}

static inline const kids_t *kids_block(const tnode_t *n)
{
    return (n->kids && !(n->flags & NF_KIDS_ONE)) ? n->kids : NULL;
}

static inline tnode_t *kids_plus(const tnode_t *n)
{
    const kids_t *k = kids_block(n);
    return k ? k->plus : NULL;
}

static tnode_t *kids_find(const gw_topic_index_t *idx, const tnode_t *n, const char *s,
                          size_t len)
{
    if (!n->kids)
        return NULL;
    if (n->flags & NF_KIDS_ONE) {
        tnode_t *c = n->kids;
        return node_is(c, s, len) ? c : NULL;
    }
    const kids_t *k = n->kids;
    if (k->cap <= KIDS_SMALL_MAX) {
        for (uint32_t i = 0; i < k->n; i++)
            if (node_is(k->slot[i], s, len))
                return k->slot[i];
        return NULL;
    }
    size_t mask = k->cap - 1;
    for (size_t i = level_hash(idx, s, len) & mask;; i = (i + 1) & mask) {
        tnode_t *c = k->slot[i];
        if (!c || node_is(c, s, len))
            return c;
    }
}

static void table_put(const gw_topic_index_t *idx, kids_t *k, tnode_t *c)
{
    size_t mask = k->cap - 1;
    size_t i = level_hash(idx, c->name, c->len) & mask;
    while (k->slot[i])
        i = (i + 1) & mask;
    k->slot[i] = c;
}

/*
 * New children block of capacity cap holding the exact children of n (plus
 * extra if not NULL) and plus. Representation follows cap. NULL on NOMEM.
 */
static kids_t *kids_rebuild(gw_topic_index_t *idx, const tnode_t *n, uint32_t cap, tnode_t *extra,
                            tnode_t *plus)
{
    kids_t *k = gw_topic_slab_calloc(&idx->slab, kids_size(cap));
    if (!k)
        return NULL;
    k->plus = plus;
    k->cap = cap;
    k->n = 0;
    tnode_t *one = NULL;
    const kids_t *old = kids_block(n);
    uint32_t count = old ? old->n : (n->kids ? 1 : 0);
    if (!old && n->kids)
        one = n->kids;
    for (uint32_t i = 0, seen = 0; seen < count; i++) {
        tnode_t *c = one ? one : old->slot[i];
        if (!c)
            continue;
        seen++;
        if (cap <= KIDS_SMALL_MAX)
            k->slot[k->n] = c;
        else
            table_put(idx, k, c);
        k->n++;
    }
    if (extra) {
        if (cap <= KIDS_SMALL_MAX)
            k->slot[k->n] = extra;
        else
            table_put(idx, k, extra);
        k->n++;
    }
    return k;
}

static void kids_replace(gw_topic_index_t *idx, tnode_t *n, kids_t *k)
{
    const kids_t *old = kids_block(n);
    if (old)
        gw_topic_slab_free(&idx->slab, (void *)old, kids_size(old->cap));
    n->kids = k;
    n->flags &= (uint8_t)~NF_KIDS_ONE;
}

/* Add c (not present) as an exact child of n. */
static gw_err_t kids_add(gw_topic_index_t *idx, tnode_t *n, tnode_t *c)
{
    if (!n->kids) {
        n->kids = c;
        n->flags |= NF_KIDS_ONE;
        return GW_OK;
    }
    kids_t *k = (kids_t *)kids_block(n);
    if (k && k->cap <= KIDS_SMALL_MAX && k->n < k->cap) {
        k->slot[k->n++] = c;
        return GW_OK;
    }
    if (k && k->cap > KIDS_SMALL_MAX && (size_t)(k->n + 1) * 4 <= (size_t)k->cap * 3) {
        table_put(idx, k, c);
        k->n++;
        return GW_OK;
    }
    uint32_t n_now = k ? k->n : 1;
    uint32_t cap;
    if (n_now + 1 <= KIDS_SMALL_MAX)
        cap = kids_small_cap(n_now + 1);
    else if (k && k->cap > KIDS_SMALL_MAX)
        cap = k->cap * 2;
    else
        cap = KIDS_TABLE_MIN;
    if (cap > UINT32_MAX / 2)
        return GW_ERR_LIMIT;
    kids_t *nk = kids_rebuild(idx, n, cap, c, k ? k->plus : NULL);
    if (!nk)
        return GW_ERR_NOMEM;
    kids_replace(idx, n, nk);
    return GW_OK;
}

static gw_err_t kids_set_plus(gw_topic_index_t *idx, tnode_t *n, tnode_t *p)
{
    kids_t *k = (kids_t *)kids_block(n);
    if (k) {
        k->plus = p;
        return GW_OK;
    }
    uint32_t cap = n->kids ? kids_small_cap(1) : 0;
    kids_t *nk = kids_rebuild(idx, n, cap, NULL, p);
    if (!nk)
        return GW_ERR_NOMEM;
    kids_replace(idx, n, nk);
    return GW_OK;
}

/* Bring n's children block to the canonical shape for its size. Best effort. */
static void kids_normalize(gw_topic_index_t *idx, tnode_t *n)
{
    kids_t *k = (kids_t *)kids_block(n);
    if (!k)
        return;
    if (!k->plus && k->n <= 1) {
        tnode_t *only = NULL;
        for (uint32_t i = 0; k->n == 1 && !only; i++)
            only = k->slot[i];
        gw_topic_slab_free(&idx->slab, k, kids_size(k->cap));
        n->kids = only;
        n->flags = (uint8_t)((n->flags & ~NF_KIDS_ONE) | (only ? NF_KIDS_ONE : 0));
        return;
    }
    uint32_t want;
    if (k->cap <= KIDS_SMALL_MAX || k->n <= KIDS_SMALL_MAX)
        want = kids_small_cap(k->n);
    else if (k->cap > KIDS_TABLE_MIN && (size_t)k->n * 8 < k->cap)
        want = k->cap / 2; /* hysteresis: grow at 3/4, shrink below 1/8 */
    else
        want = k->cap;
    if (want == k->cap)
        return;
    kids_t *nk = kids_rebuild(idx, n, want, NULL, k->plus);
    if (nk) /* on NOMEM the bigger block stays: still valid */
        kids_replace(idx, n, nk);
}

/* Unlink child c (exact or '+') from n. */
static void kids_remove(gw_topic_index_t *idx, tnode_t *n, tnode_t *c)
{
    if (n->flags & NF_KIDS_ONE) {
        n->kids = NULL;
        n->flags &= (uint8_t)~NF_KIDS_ONE;
        return;
    }
    kids_t *k = n->kids;
    if (k->plus == c) {
        k->plus = NULL;
    } else if (k->cap <= KIDS_SMALL_MAX) {
        for (uint32_t i = 0; i < k->n; i++) {
            if (k->slot[i] == c) {
                k->slot[i] = k->slot[--k->n];
                k->slot[k->n] = NULL;
                break;
            }
        }
    } else {
        size_t mask = k->cap - 1;
        size_t i = level_hash(idx, c->name, c->len) & mask;
        while (k->slot[i] != c)
            i = (i + 1) & mask;
        /* backward-shift deletion: no tombstones, probe chains stay short */
        for (size_t j = (i + 1) & mask; k->slot[j]; j = (j + 1) & mask) {
            size_t home = level_hash(idx, k->slot[j]->name, k->slot[j]->len) & mask;
            bool movable = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
            if (movable) {
                k->slot[i] = k->slot[j];
                i = j;
            }
        }
        k->slot[i] = NULL;
        k->n--;
    }
    kids_normalize(idx, n);
}

/* ------------------------------------------------------------------ */
/* Entries                                                              */
/* ------------------------------------------------------------------ */

static size_t ents_size(uint32_t cap)
{
    return sizeof(ents_t) + (size_t)cap * (sizeof(void *) + 1);
}

static inline uint8_t *ents_qos(const ents_t *e)
{
    return (uint8_t *)(e->subs + e->cap);
}

static inline uint32_t ents_n(const ents_t *e)
{
    return e->n_here + e->n_hash;
}

static void ents_index_put(ents_t *e, uint32_t pos, int kind)
{
    size_t mask = e->icap - 1;
    size_t i = ptr_hash(e->subs[pos], kind) & mask;
    while (e->index[i])
        i = (i + 1) & mask;
    e->index[i] = pos + 1;
}

static size_t ents_index_slot(const ents_t *e, const void *sub, int kind, uint32_t pos)
{
    size_t mask = e->icap - 1;
    size_t i = ptr_hash(sub, kind) & mask;
    while (e->index[i] != pos + 1)
        i = (i + 1) & mask;
    return i;
}

static int ents_kind_at(const ents_t *e, uint32_t pos)
{
    return pos < e->n_here ? KIND_HERE : KIND_HASH;
}

static void ents_index_del(ents_t *e, size_t i)
{
    size_t mask = e->icap - 1;
    for (size_t j = (i + 1) & mask; e->index[j]; j = (j + 1) & mask) {
        uint32_t p = e->index[j] - 1;
        size_t home = ptr_hash(e->subs[p], ents_kind_at(e, p)) & mask;
        bool movable = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            e->index[i] = e->index[j];
            i = j;
        }
    }
    e->index[i] = 0;
}

static long ents_find(const ents_t *e, const void *sub, int kind)
{
    uint32_t lo = kind == KIND_HERE ? 0 : e->n_here;
    uint32_t hi = kind == KIND_HERE ? e->n_here : ents_n(e);
    if (e->index) {
        size_t mask = e->icap - 1;
        for (size_t i = ptr_hash(sub, kind) & mask; e->index[i]; i = (i + 1) & mask) {
            uint32_t p = e->index[i] - 1;
            if (p >= lo && p < hi && e->subs[p] == sub)
                return (long)p;
        }
        return -1;
    }
    for (uint32_t p = lo; p < hi; p++)
        if (e->subs[p] == sub)
            return (long)p;
    return -1;
}

/* Move the entry at from (of the given kind) to the free position to. */
static void ents_move(ents_t *e, uint32_t from, uint32_t to, int kind)
{
    if (from == to)
        return;
    if (e->index)
        e->index[ents_index_slot(e, e->subs[from], kind, from)] = to + 1;
    e->subs[to] = e->subs[from];
    ents_qos(e)[to] = ents_qos(e)[from];
}

static void ents_free(gw_topic_index_t *idx, ents_t *e)
{
    if (e->index)
        gw_topic_slab_free(&idx->slab, e->index, (size_t)e->icap * sizeof(uint32_t));
    gw_topic_slab_free(&idx->slab, e, ents_size(e->cap));
}

/* New block of capacity cap (>= entries) with the entries of old (may be NULL). */
static ents_t *ents_resize(gw_topic_index_t *idx, const ents_t *old, uint32_t cap)
{
    ents_t *e = gw_topic_slab_alloc(&idx->slab, ents_size(cap));
    if (!e)
        return NULL;
    e->cap = cap;
    e->n_here = old ? old->n_here : 0;
    e->n_hash = old ? old->n_hash : 0;
    e->icap = 0;
    e->index = NULL;
    if (old) {
        memcpy(e->subs, old->subs, ents_n(old) * sizeof(void *));
        memcpy(ents_qos(e), ents_qos(old), ents_n(old));
    }
    if (cap >= ENT_INDEX_MIN) {
        e->icap = cap * 2;
        e->index = gw_topic_slab_calloc(&idx->slab, (size_t)e->icap * sizeof(uint32_t));
        if (!e->index) {
            gw_topic_slab_free(&idx->slab, e, ents_size(cap));
            return NULL;
        }
        for (uint32_t p = 0; p < ents_n(e); p++)
            ents_index_put(e, p, ents_kind_at(e, p));
    }
    return e;
}

/* Insert (not present) into a block with room. */
static void ents_insert(ents_t *e, void *sub, int kind, uint8_t qos)
{
    uint32_t pos;
    if (kind == KIND_HERE) {
        pos = e->n_here;
        if (e->n_hash)
            ents_move(e, pos, ents_n(e), KIND_HASH); /* first "#" entry to the end */
        e->n_here++;
    } else {
        pos = ents_n(e);
        e->n_hash++;
    }
    e->subs[pos] = sub;
    ents_qos(e)[pos] = qos;
    if (e->index)
        ents_index_put(e, pos, kind);
}

static void ents_remove_at(ents_t *e, uint32_t pos)
{
    int kind = ents_kind_at(e, pos);
    if (e->index)
        ents_index_del(e, ents_index_slot(e, e->subs[pos], kind, pos));
    if (kind == KIND_HERE) {
        uint32_t last_here = e->n_here - 1;
        ents_move(e, last_here, pos, KIND_HERE);
        if (e->n_hash)
            ents_move(e, ents_n(e) - 1, last_here, KIND_HASH);
        e->n_here--;
    } else {
        ents_move(e, ents_n(e) - 1, pos, KIND_HASH);
        e->n_hash--;
    }
}

static void node_inline_get(const tnode_t *n, int *kind, uint8_t *qos)
{
    *kind = (n->flags & NF_ENT_HASH) ? KIND_HASH : KIND_HERE;
    *qos = (uint8_t)((n->flags & NF_QOS_MASK) >> NF_QOS_SHIFT);
}

static void node_inline_set(tnode_t *n, void *sub, int kind, uint8_t qos)
{
    n->ents = sub;
    n->flags = (uint8_t)((n->flags & ~(NF_ENT_HASH | NF_QOS_MASK)) | NF_ENT_INLINE |
                         (kind == KIND_HASH ? NF_ENT_HASH : 0) | (qos << NF_QOS_SHIFT));
}

static gw_err_t node_ent_add(gw_topic_index_t *idx, tnode_t *n, void *sub, int kind, uint8_t qos,
                             bool *added)
{
    *added = false;
    if (!(n->flags & NF_ENT_INLINE) && !n->ents) {
        node_inline_set(n, sub, kind, qos);
        *added = true;
        return GW_OK;
    }
    if (n->flags & NF_ENT_INLINE) {
        int k0;
        uint8_t q0;
        node_inline_get(n, &k0, &q0);
        if (n->ents == sub && k0 == kind) {
            node_inline_set(n, sub, kind, qos); /* update replaces QoS */
            return GW_OK;
        }
        ents_t *e = ents_resize(idx, NULL, 4);
        if (!e)
            return GW_ERR_NOMEM;
        ents_insert(e, n->ents, k0, q0);
        ents_insert(e, sub, kind, qos);
        n->ents = e;
        n->flags &= (uint8_t)~(NF_ENT_INLINE | NF_ENT_HASH | NF_QOS_MASK);
        *added = true;
        return GW_OK;
    }
    ents_t *e = n->ents;
    long pos = ents_find(e, sub, kind);
    if (pos >= 0) {
        ents_qos(e)[pos] = qos;
        return GW_OK;
    }
    if (ents_n(e) == e->cap) {
        if (e->cap > UINT32_MAX / 4)
            return GW_ERR_LIMIT;
        ents_t *ne = ents_resize(idx, e, e->cap * 2);
        if (!ne)
            return GW_ERR_NOMEM;
        ents_free(idx, e);
        n->ents = e = ne;
    }
    ents_insert(e, sub, kind, qos);
    *added = true;
    return GW_OK;
}

static gw_err_t node_ent_remove(gw_topic_index_t *idx, tnode_t *n, void *sub, int kind)
{
    if (n->flags & NF_ENT_INLINE) {
        int k0;
        uint8_t q0;
        node_inline_get(n, &k0, &q0);
        if (n->ents != sub || k0 != kind)
            return GW_ERR_NOT_FOUND;
        n->ents = NULL;
        n->flags &= (uint8_t)~(NF_ENT_INLINE | NF_ENT_HASH | NF_QOS_MASK);
        return GW_OK;
    }
    ents_t *e = n->ents;
    if (!e)
        return GW_ERR_NOT_FOUND;
    long pos = ents_find(e, sub, kind);
    if (pos < 0)
        return GW_ERR_NOT_FOUND;
    ents_remove_at(e, (uint32_t)pos);
    uint32_t left = ents_n(e);
    if (left == 1) {
        int k1 = ents_kind_at(e, 0);
        void *s1 = e->subs[0];
        uint8_t q1 = ents_qos(e)[0];
        ents_free(idx, e);
        node_inline_set(n, s1, k1, q1);
    } else if (e->cap > 4 && left <= e->cap / 4) {
        ents_t *ne = ents_resize(idx, e, e->cap / 2);
        if (ne) { /* on NOMEM the bigger block stays: still valid */
            ents_free(idx, e);
            n->ents = ne;
        }
    }
    return GW_OK;
}

static bool node_empty(const tnode_t *n)
{
    return !n->kids && !n->ents && !(n->flags & NF_ENT_INLINE);
}

/* ------------------------------------------------------------------ */
/* Filters                                                              */
/* ------------------------------------------------------------------ */

/* Length of the level starting at pos; *next is the start of the next level, > len at the end. */
static inline size_t level_at(const char *s, size_t len, size_t pos, size_t *next)
{
    const char *slash = memchr(s + pos, '/', len - pos);
    size_t llen = slash ? (size_t)(slash - (s + pos)) : len - pos;
    *next = pos + llen + 1;
    return llen;
}

/*
 * Structural check (the rest of gw_topic_filter_validate() is the caller's):
 * depth = trie levels (a trailing '#' excluded), kind = KIND_HASH for "/#".
 */
static gw_err_t filter_scan(const char *f, size_t len, uint32_t *depth, int *kind)
{
    if (len == 0)
        return GW_ERR_MQTT_TOPIC_EMPTY; /* MQTT-4.7.3-1 */
    if (len > LEVEL_MAX)
        return GW_ERR_MQTT_TOPIC_TOO_LONG;
    uint32_t d = 0;
    *kind = KIND_HERE;
    for (size_t pos = 0, next; pos <= len; pos = next) {
        size_t llen = level_at(f, len, pos, &next);
        const char *l = f + pos;
        if (llen == 1 && l[0] == '#') {
            if (next <= len)
                return GW_ERR_MQTT_TOPIC_FILTER; /* MQTT-4.7.1-2: '#' must be last */
            *kind = KIND_HASH;
            break;
        }
        if (llen > 1 && (memchr(l, '+', llen) || memchr(l, '#', llen)))
            return GW_ERR_MQTT_TOPIC_FILTER; /* MQTT-4.7.1-2/3: wildcard must fill its level */
        d++;
    }
    *depth = d;
    return GW_OK;
}

/* Free empty nodes bottom-up along path[1..d] (path[0] is the root). */
static void prune(gw_topic_index_t *idx, tnode_t **path, uint32_t d)
{
    for (uint32_t i = d; i > 0; i--) {
        tnode_t *n = path[i];
        if (!node_empty(n))
            break;
        kids_remove(idx, path[i - 1], n);
        node_free(idx, n);
    }
}

/* ------------------------------------------------------------------ */
/* Public API                                                           */
/* ------------------------------------------------------------------ */

gw_topic_index_t *gw_topic_index_new(void)
{
    gw_topic_index_t *idx = calloc(1, sizeof(*idx));
    if (!idx)
        return NULL;
    idx->root = calloc(1, sizeof(tnode_t));
    if (!idx->root) {
        free(idx);
        return NULL;
    }
    gw_topic_slab_init(&idx->slab);
    uint64_t key[2];
    if (getrandom(key, sizeof(key), GRND_NONBLOCK) != (ssize_t)sizeof(key)) {
        /* no entropy yet (early boot): still per-process, not guessable offline */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        key[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)idx;
        key[1] = (uint64_t)(uintptr_t)&key ^ 0x9e3779b97f4a7c15ULL;
    }
    idx->k0 = key[0];
    idx->k1 = key[1];
    return idx;
}

static void node_ents_release(gw_topic_index_t *idx, tnode_t *n)
{
    if (!(n->flags & NF_ENT_INLINE) && n->ents)
        ents_free(idx, n->ents);
    n->ents = NULL;
    n->flags &= (uint8_t)~(NF_ENT_INLINE | NF_ENT_HASH | NF_QOS_MASK);
}

void gw_topic_index_free(gw_topic_index_t *idx)
{
    if (!idx)
        return;
    /*
     * Iterative, no allocation: a node's ents field (released first) links
     * the work list, so a 65535-level trie cannot overflow the C stack.
     */
    tnode_t *work = idx->root;
    node_ents_release(idx, work);
    while (work) {
        tnode_t *n = work;
        work = n->ents;
        n->ents = NULL;
        const kids_t *k = kids_block(n);
        uint32_t nslots = k ? k->cap : (n->kids ? 1 : 0);
        for (uint32_t i = 0; i <= nslots; i++) {
            tnode_t *c;
            if (!k)
                c = i == 0 ? n->kids : NULL;
            else
                c = i < k->cap ? k->slot[i] : k->plus;
            if (!c)
                continue;
            node_ents_release(idx, c);
            c->ents = work;
            work = c;
        }
        if (k)
            gw_topic_slab_free(&idx->slab, (void *)k, kids_size(k->cap));
        if (n == idx->root)
            free(n);
        else
            node_free(idx, n);
    }
    gw_topic_slab_destroy(&idx->slab);
    free(idx);
}

gw_err_t gw_topic_index_add(gw_topic_index_t *idx, const char *filter, size_t len,
                            void *subscriber, uint8_t qos, bool *added)
{
    tnode_t *local[LOCAL_DEPTH + 1];
    tnode_t **path = local;
    uint32_t depth = 0, d = 0;
    int kind;
    bool was_added = false;
    gw_err_t err;

    if (added)
        *added = false;
    if (!idx || !filter || qos > 2)
        return GW_ERR_INVAL;
    err = filter_scan(filter, len, &depth, &kind);
    if (err != GW_OK)
        return err;
    if (depth > LOCAL_DEPTH) {
        path = malloc(((size_t)depth + 1) * sizeof(*path));
        if (!path)
            return GW_ERR_NOMEM;
    }
    tnode_t *n = idx->root;
    path[0] = n;
    for (size_t pos = 0, next; d < depth; pos = next) {
        size_t llen = level_at(filter, len, pos, &next);
        const char *l = filter + pos;
        bool plus = llen == 1 && l[0] == '+';
        tnode_t *c = plus ? kids_plus(n) : kids_find(idx, n, l, llen);
        if (!c) {
            c = node_new(idx, l, llen);
            if (!c) {
                err = GW_ERR_NOMEM;
                goto cleanup;
            }
            err = plus ? kids_set_plus(idx, n, c) : kids_add(idx, n, c);
            if (err != GW_OK) {
                node_free(idx, c);
                goto cleanup;
            }
        }
        path[++d] = n = c;
    }
    err = node_ent_add(idx, n, subscriber, kind, qos, &was_added);
    if (err == GW_OK && was_added) {
        idx->count++;
        if (depth > idx->max_depth)
            idx->max_depth = depth;
    }
    if (added)
        *added = was_added;

cleanup:
    if (err != GW_OK)
        prune(idx, path, d); /* undo nodes created for a failed add */
    if (path != local)
        free(path);
    return err;
}

gw_err_t gw_topic_index_remove(gw_topic_index_t *idx, const char *filter, size_t len,
                               void *subscriber)
{
    tnode_t *local[LOCAL_DEPTH + 1];
    tnode_t **path = local;
    uint32_t depth = 0, d = 0;
    int kind;
    gw_err_t err;

    if (!idx || !filter)
        return GW_ERR_INVAL;
    err = filter_scan(filter, len, &depth, &kind);
    if (err != GW_OK)
        return err;
    if (depth > idx->max_depth)
        return GW_ERR_NOT_FOUND; /* deeper than any filter ever added */
    if (depth > LOCAL_DEPTH) {
        path = malloc(((size_t)depth + 1) * sizeof(*path));
        if (!path)
            return GW_ERR_NOMEM;
    }
    tnode_t *n = idx->root;
    path[0] = n;
    for (size_t pos = 0, next; d < depth; pos = next) {
        size_t llen = level_at(filter, len, pos, &next);
        const char *l = filter + pos;
        tnode_t *c = (llen == 1 && l[0] == '+') ? kids_plus(n) : kids_find(idx, n, l, llen);
        if (!c) {
            err = GW_ERR_NOT_FOUND;
            goto cleanup;
        }
        path[++d] = n = c;
    }
    err = node_ent_remove(idx, n, subscriber, kind);
    if (err != GW_OK)
        goto cleanup;
    idx->count--;
    prune(idx, path, d);

cleanup:
    if (path != local)
        free(path);
    return err;
}

/* Report the entries of one kind; false if the callback asked to stop. */
static bool report(const tnode_t *n, int kind, gw_topic_match_fn fn, void *arg, size_t *count)
{
    if (n->flags & NF_ENT_INLINE) {
        int k;
        uint8_t q;
        node_inline_get(n, &k, &q);
        if (k != kind)
            return true;
        (*count)++;
        return fn(n->ents, q, arg);
    }
    const ents_t *e = n->ents;
    if (!e)
        return true;
    uint32_t lo = kind == KIND_HERE ? 0 : e->n_here;
    uint32_t hi = kind == KIND_HERE ? e->n_here : ents_n(e);
    const uint8_t *qos = ents_qos(e);
    for (uint32_t p = lo; p < hi; p++) {
        (*count)++;
        if (!fn(e->subs[p], qos[p], arg))
            return false;
    }
    return true;
}

typedef struct match_item {
    const tnode_t *node;
    size_t pos; /* start of the next topic level; > len once all are consumed */
} match_item_t;

size_t gw_topic_index_match(const gw_topic_index_t *idx, const char *topic, size_t len,
                            gw_topic_match_fn fn, void *arg)
{
    match_item_t local[LOCAL_DEPTH];
    match_item_t *stack = local;
    size_t count = 0, sp = 0;

    if (!idx || !topic || !fn || len == 0)
        return 0;
    /*
     * Depth-first with an explicit stack. Each pop pushes at most two nodes
     * one level deeper (exact and '+'), so the stack never holds more than
     * one pending node per trie level plus one: max_depth + 1 items,
     * whatever the topic's depth. Only a trie deeper than LOCAL_DEPTH pays
     * for a heap stack.
     */
    size_t need = (size_t)idx->max_depth + 2;
    if (need > LOCAL_DEPTH) {
        stack = malloc(need * sizeof(*stack));
        if (!stack) {
            GW_LOG_ERROR("topic", NULL, "no memory for a %zu-level match stack", need);
            return 0;
        }
    }
    /* MQTT-4.7.2-1: filters starting with a wildcard do not match "$..." topics */
    const bool dollar = topic[0] == '$';
    stack[sp++] = (match_item_t){idx->root, 0};
    while (sp > 0) {
        match_item_t it = stack[--sp];
        const tnode_t *n = it.node;
        bool first = n == idx->root;
        /* "a/#" matches "a" and everything below it (MQTT-4.7.1-2) */
        if (!(first && dollar) && !report(n, KIND_HASH, fn, arg, &count))
            break;
        if (it.pos > len) {
            if (!report(n, KIND_HERE, fn, arg, &count))
                break;
            continue;
        }
        if (!n->kids)
            continue;
        size_t next;
        size_t llen = level_at(topic, len, it.pos, &next);
        const tnode_t *plus = kids_plus(n);
        if (plus && !(first && dollar))
            stack[sp++] = (match_item_t){plus, next};
        const tnode_t *c = kids_find(idx, n, topic + it.pos, llen);
        if (c)
            stack[sp++] = (match_item_t){c, next};
    }
    if (stack != local)
        free(stack);
    return count;
}

size_t gw_topic_index_count(const gw_topic_index_t *idx)
{
    return idx ? idx->count : 0;
}

size_t gw_topic_index_memory(const gw_topic_index_t *idx)
{
    if (!idx)
        return 0;
    return gw_topic_slab_block_size(sizeof(*idx)) + gw_topic_slab_block_size(sizeof(tnode_t)) +
           idx->slab.reserved_bytes;
}

void gw_topic_index_stats(const gw_topic_index_t *idx, gw_topic_index_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!idx)
        return;
    out->entries = idx->count;
    out->nodes = idx->nodes;
    out->max_depth = idx->max_depth;
    out->bytes_live = idx->slab.live_bytes;
    out->bytes_reserved = gw_topic_index_memory(idx);
}
