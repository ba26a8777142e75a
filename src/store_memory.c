/*
 * store_memory.c - the in-process dedupe store (SPEC §3): a chained hash
 * table with a least-recently-used list and a TTL per entry.
 */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#define INITIAL_BUCKETS 16
/* 100 years: keeps now + ttl far from overflowing int64. */
#define MAX_TTL_S (100L * 365 * 24 * 3600)

struct entry {
    struct entry *chain; /* next in the same bucket */
    struct entry *prev;  /* LRU list: toward the most recent */
    struct entry *next;  /* LRU list: toward the least recent */
    uint64_t hash;
    char *key;  /* owned */
    char *body; /* owned; LEN bytes plus a NUL */
    size_t len;
    size_t cost; /* counted against max_bytes */
    int status;
    int64_t expires_us;
};

struct store_memory {
    struct agw_store base; /* first: the ops receive &base */
    struct entry **buckets;
    size_t nbuckets; /* a power of two */
    long count;
    long max_entries;
    size_t bytes;
    size_t max_bytes;
    struct entry *mru; /* head of the LRU list */
    struct entry *lru; /* tail: evicted first */
    int64_t (*now_us)(void);
};

static struct store_memory *
mem_of(struct agw_store *store)
{
    return (struct store_memory *)store;
}

static uint64_t
fnv1a(const char *s)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static struct entry **
slot_of(struct store_memory *m, const char *key, uint64_t hash)
{
    struct entry **p = &m->buckets[hash & (m->nbuckets - 1)];

    while (*p != NULL && ((*p)->hash != hash || strcmp((*p)->key, key) != 0)) {
        p = &(*p)->chain;
    }
    return p;
}

static void
lru_unlink(struct store_memory *m, struct entry *e)
{
    if (e->prev != NULL) {
        e->prev->next = e->next;
    } else {
        m->mru = e->next;
    }
    if (e->next != NULL) {
        e->next->prev = e->prev;
    } else {
        m->lru = e->prev;
    }
    e->prev = NULL;
    e->next = NULL;
}

static void
lru_push_front(struct store_memory *m, struct entry *e)
{
    e->prev = NULL;
    e->next = m->mru;
    if (m->mru != NULL) {
        m->mru->prev = e;
    } else {
        m->lru = e;
    }
    m->mru = e;
}

static void
entry_free(struct entry *e)
{
    free(e->key);
    free(e->body);
    free(e);
}

/* Unlinks the entry *SLOT points at from both structures and frees it. */
static void
remove_at(struct store_memory *m, struct entry **slot)
{
    struct entry *e = *slot;

    *slot = e->chain;
    lru_unlink(m, e);
    m->count--;
    m->bytes -= e->cost;
    entry_free(e);
}

static void
evict_lru(struct store_memory *m)
{
    struct entry *e = m->lru;

    remove_at(m, slot_of(m, e->key, e->hash));
}

/* Doubles the table; on allocation failure keeps the longer chains. */
static void
grow(struct store_memory *m)
{
    size_t n = m->nbuckets * 2;
    struct entry **b = calloc(n, sizeof(*b));

    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct entry *e = m->buckets[i];

        while (e != NULL) {
            struct entry *chain = e->chain;

            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = chain;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

static void
mem_get(struct agw_store *store, const char *key, agw_store_get_cb cb,
        void *arg)
{
    struct store_memory *m = mem_of(store);
    struct entry **slot;
    struct entry *e;

    if (key == NULL) {
        cb(AGW_STORE_ERROR, 0, NULL, 0, arg);
        return;
    }
    slot = slot_of(m, key, fnv1a(key));
    e = *slot;
    if (e != NULL && m->now_us() >= e->expires_us) {
        remove_at(m, slot);
        e = NULL;
    }
    if (e == NULL) {
        cb(AGW_STORE_MISS, 0, NULL, 0, arg);
        return;
    }
    lru_unlink(m, e);
    lru_push_front(m, e);
    cb(AGW_STORE_HIT, e->status, e->body, e->len, arg);
}

/* A copy of KEY and BODY; NULL when memory ran out. */
static struct entry *
entry_new(const char *key, uint64_t hash, int status, const char *body,
          size_t len)
{
    struct entry *e = calloc(1, sizeof(*e));

    if (e == NULL) {
        return NULL;
    }
    e->key = strdup(key);
    e->body = malloc(len + 1);
    if (e->key == NULL || e->body == NULL) {
        entry_free(e);
        return NULL;
    }
    if (len > 0) {
        memcpy(e->body, body, len);
    }
    e->body[len] = '\0';
    e->len = len;
    e->cost = sizeof(*e) + strlen(key) + 1 + len + 1;
    e->hash = hash;
    e->status = status;
    return e;
}

static void
mem_put(struct agw_store *store, const char *key, int status, const char *body,
        size_t len, long ttl_s)
{
    struct store_memory *m = mem_of(store);
    uint64_t hash;
    struct entry *e;

    if (key == NULL || (body == NULL && len > 0)) {
        return;
    }
    hash = fnv1a(key);
    /* Copy before removing the old entry: BODY may point into it. */
    e = entry_new(key, hash, status, body, len);
    if (e == NULL) {
        return; /* a cache: dropping the answer only costs a later call */
    }
    if (*slot_of(m, key, hash) != NULL) {
        remove_at(m, slot_of(m, key, hash));
    }
    if (ttl_s <= 0 || m->max_entries <= 0 || e->cost > m->max_bytes) {
        entry_free(e); /* would never be returned, or never fit */
        return;
    }
    while (m->count >= m->max_entries || m->bytes + e->cost > m->max_bytes) {
        evict_lru(m);
    }
    if ((size_t)m->count >= m->nbuckets - m->nbuckets / 4) {
        grow(m);
    }
    e->expires_us = m->now_us() +
                    (ttl_s > MAX_TTL_S ? MAX_TTL_S : ttl_s) * INT64_C(1000000);
    e->chain = m->buckets[hash & (m->nbuckets - 1)];
    m->buckets[hash & (m->nbuckets - 1)] = e;
    lru_push_front(m, e);
    m->count++;
    m->bytes += e->cost;
}

static void
mem_destroy(struct agw_store *store)
{
    struct store_memory *m = mem_of(store);
    struct entry *e;

    if (m == NULL) {
        return;
    }
    while ((e = m->mru) != NULL) {
        m->mru = e->next;
        entry_free(e);
    }
    free(m->buckets);
    free(m);
}

static const struct agw_store_ops memory_ops = {
    .name = "memory",
    .get = mem_get,
    .put = mem_put,
    .destroy = mem_destroy,
};

struct agw_store *
agw_store_memory_new(long max_entries, size_t max_bytes)
{
    struct store_memory *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        return NULL;
    }
    m->buckets = calloc(INITIAL_BUCKETS, sizeof(*m->buckets));
    if (m->buckets == NULL) {
        free(m);
        return NULL;
    }
    m->base.ops = &memory_ops;
    m->nbuckets = INITIAL_BUCKETS;
    m->max_entries = max_entries;
    m->max_bytes = max_bytes;
    m->now_us = agw_now_us;
    return &m->base;
}

long
agw_store_memory_count(const struct agw_store *store)
{
    return ((const struct store_memory *)store)->count;
}

void
agw_store_memory_set_clock(struct agw_store *store, int64_t (*now_us)(void))
{
    mem_of(store)->now_us = now_us != NULL ? now_us : agw_now_us;
}
