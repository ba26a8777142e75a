/*
 * store_l1.c - the L1 cache: a chained hash table with an LRU list, bounded
 * by entries and bytes, each entry short-lived, in front of another store.
 */
#include "store_l1.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "util.h"

/* Buckets allocated up front: no rehash under the lock for common sizes. */
#define MAX_INITIAL_BUCKETS (1 << 16)
#define MIN_BUCKETS 16
/* A day: keeps now + ttl far from overflowing int64. */
#define MAX_TTL_MS (24L * 3600 * 1000)

/*
 * One allocation holds the entry, its key and its body. REFS counts the
 * table (while linked) and each get callback reading the body right now, so
 * the lock is not held while a callback runs and eviction cannot free a
 * body that is being read.
 */
struct entry {
    struct entry *chain; /* next in the same bucket */
    struct entry *prev;  /* LRU list: toward the most recent */
    struct entry *next;  /* LRU list: toward the least recent */
    uint64_t hash;
    int64_t expires_us;
    size_t cost; /* counted against max_bytes */
    size_t len;
    int status;
    atomic_int refs;
    char *body;  /* into DATA, after the key; LEN bytes plus a NUL */
    char data[]; /* the key, NUL, the body, NUL */
};

struct store_l1 {
    struct agw_store base; /* first: the ops receive &base */
    struct agw_store *inner;
    bool off;
    long max_entries;
    size_t max_bytes;
    int64_t ttl_us;
    int64_t (*now_us)(void);

    pthread_mutex_t lock; /* guards everything below */
    struct entry **buckets;
    size_t nbuckets;   /* a power of two */
    struct entry *mru; /* head of the LRU list */
    struct entry *lru; /* tail: evicted first */
    /* Bumped by every put: a fill whose lookup started before a put may
     * carry the value that put replaced, so it is dropped. */
    uint64_t epoch;
    struct agw_store_l1_stats stats;
};

/* A miss on its way through the inner store. */
struct lookup {
    struct store_l1 *l1;
    agw_store_get_cb cb;
    void *arg;
    uint64_t hash;
    uint64_t epoch;
    char key[];
};

static struct store_l1 *
l1_of(struct agw_store *store)
{
    return (struct store_l1 *)store;
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

static void
entry_unref(struct entry *e)
{
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
        free(e);
    }
}

/* A copy of KEY and BODY with one reference (the table's); NULL: no memory. */
static struct entry *
entry_new(const char *key, uint64_t hash, int status, const char *body,
          size_t len, int64_t expires_us)
{
    size_t klen = strlen(key);
    size_t size = sizeof(struct entry) + klen + 1 + len + 1;
    struct entry *e;

    if (len > SIZE_MAX / 2 || (e = malloc(size)) == NULL) {
        return NULL;
    }
    memset(e, 0, sizeof(*e));
    memcpy(e->data, key, klen + 1);
    e->body = e->data + klen + 1;
    if (len > 0) {
        memcpy(e->body, body, len);
    }
    e->body[len] = '\0';
    e->len = len;
    e->cost = size;
    e->hash = hash;
    e->status = status;
    e->expires_us = expires_us;
    atomic_init(&e->refs, 1);
    return e;
}

static struct entry **
slot_of(struct store_l1 *l1, const char *key, uint64_t hash)
{
    struct entry **p = &l1->buckets[hash & (l1->nbuckets - 1)];

    while (*p != NULL && ((*p)->hash != hash || strcmp((*p)->data, key) != 0)) {
        p = &(*p)->chain;
    }
    return p;
}

static void
lru_unlink(struct store_l1 *l1, struct entry *e)
{
    if (e->prev != NULL) {
        e->prev->next = e->next;
    } else {
        l1->mru = e->next;
    }
    if (e->next != NULL) {
        e->next->prev = e->prev;
    } else {
        l1->lru = e->prev;
    }
    e->prev = NULL;
    e->next = NULL;
}

static void
lru_push_front(struct store_l1 *l1, struct entry *e)
{
    e->prev = NULL;
    e->next = l1->mru;
    if (l1->mru != NULL) {
        l1->mru->prev = e;
    } else {
        l1->lru = e;
    }
    l1->mru = e;
}

/* Unlinks the entry *SLOT points at and drops the table's reference. */
static void
remove_at(struct store_l1 *l1, struct entry **slot)
{
    struct entry *e = *slot;

    *slot = e->chain;
    lru_unlink(l1, e);
    l1->stats.entries--;
    l1->stats.bytes -= e->cost;
    entry_unref(e);
}

static void
evict_lru(struct store_l1 *l1)
{
    struct entry *e = l1->lru;

    remove_at(l1, slot_of(l1, e->data, e->hash));
    l1->stats.evicted++;
}

/* Doubles the table; on allocation failure keeps the longer chains. */
static void
grow(struct store_l1 *l1)
{
    size_t n = l1->nbuckets * 2;
    struct entry **b = calloc(n, sizeof(*b));

    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < l1->nbuckets; i++) {
        struct entry *e = l1->buckets[i];

        while (e != NULL) {
            struct entry *chain = e->chain;

            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = chain;
        }
    }
    free(l1->buckets);
    l1->buckets = b;
    l1->nbuckets = n;
}

/* Under the lock: replaces any entry for E's key with E, making room. */
static void
insert(struct store_l1 *l1, struct entry *e)
{
    struct entry **slot = slot_of(l1, e->data, e->hash);
    int64_t now = l1->now_us();

    if (*slot != NULL) {
        remove_at(l1, slot);
    }
    /* The oldest are often expired already: free them before counting. */
    while (l1->lru != NULL && now >= l1->lru->expires_us) {
        evict_lru(l1);
    }
    while (l1->lru != NULL && (l1->stats.entries >= l1->max_entries ||
                               l1->stats.bytes + e->cost > l1->max_bytes)) {
        evict_lru(l1);
    }
    if ((size_t)l1->stats.entries >= l1->nbuckets - l1->nbuckets / 4) {
        grow(l1);
    }
    slot = &l1->buckets[e->hash & (l1->nbuckets - 1)];
    e->chain = *slot;
    *slot = e;
    lru_push_front(l1, e);
    l1->stats.entries++;
    l1->stats.bytes += e->cost;
}

static void
on_inner_get(enum agw_store_result result, int status, const char *body,
             size_t len, void *arg)
{
    struct lookup *lk = arg;
    struct store_l1 *l1 = lk->l1;
    struct entry *e = NULL;

    if (result == AGW_STORE_HIT) {
        e = entry_new(lk->key, lk->hash, status, body, len,
                      l1->now_us() + l1->ttl_us);
    }
    if (e != NULL) {
        pthread_mutex_lock(&l1->lock);
        if (lk->epoch == l1->epoch && e->cost <= l1->max_bytes) {
            insert(l1, e);
            e = NULL;
        }
        pthread_mutex_unlock(&l1->lock);
        if (e != NULL) {
            entry_unref(e);
        }
    }
    lk->cb(result, status, body, len, lk->arg);
    free(lk);
}

/* Under the lock: a live entry for KEY with a reader's reference, or NULL. */
static struct entry *
take_hit(struct store_l1 *l1, const char *key, uint64_t hash)
{
    struct entry **slot = slot_of(l1, key, hash);
    struct entry *e = *slot;

    if (e == NULL) {
        return NULL;
    }
    if (l1->now_us() >= e->expires_us) {
        remove_at(l1, slot);
        l1->stats.evicted++;
        return NULL;
    }
    if (l1->mru != e) {
        lru_unlink(l1, e);
        lru_push_front(l1, e);
    }
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

static void
l1_get(struct agw_store *store, const char *key, agw_store_get_cb cb, void *arg)
{
    struct store_l1 *l1 = l1_of(store);
    uint64_t hash;
    uint64_t epoch;
    struct entry *e;
    struct lookup *lk;
    size_t klen;

    if (l1->off || key == NULL) {
        l1->inner->ops->get(l1->inner, key, cb, arg);
        return;
    }
    hash = fnv1a(key);
    pthread_mutex_lock(&l1->lock);
    e = take_hit(l1, key, hash);
    if (e != NULL) {
        l1->stats.hits++;
    } else {
        l1->stats.misses++;
    }
    epoch = l1->epoch;
    pthread_mutex_unlock(&l1->lock);
    if (e != NULL) {
        cb(AGW_STORE_HIT, e->status, e->body, e->len, arg);
        entry_unref(e);
        return;
    }
    klen = strlen(key);
    lk = malloc(sizeof(*lk) + klen + 1);
    if (lk == NULL) {
        l1->inner->ops->get(l1->inner, key, cb, arg); /* just not kept */
        return;
    }
    *lk = (struct lookup){l1, cb, arg, hash, epoch};
    memcpy(lk->key, key, klen + 1);
    l1->inner->ops->get(l1->inner, lk->key, on_inner_get, lk);
}

/* L1's own bound, or the answer's TTL when that is shorter. */
static int64_t
expiry_of(const struct store_l1 *l1, long ttl_s)
{
    int64_t ttl_us = l1->ttl_us;

    if (ttl_s <= ttl_us / 1000000) {
        ttl_us = ttl_s * INT64_C(1000000);
    }
    return l1->now_us() + ttl_us;
}

static void
l1_put(struct agw_store *store, const char *key, int status, const char *body,
       size_t len, long ttl_s)
{
    struct store_l1 *l1 = l1_of(store);
    bool keep = !l1->off && key != NULL && (body != NULL || len == 0);
    struct entry *e = NULL;
    uint64_t hash = 0;

    /* Copy first: BODY may point into an L1 entry that put() replaces. */
    if (keep) {
        hash = fnv1a(key);
        if (ttl_s > 0) {
            e = entry_new(key, hash, status, body, len, expiry_of(l1, ttl_s));
        }
        if (e != NULL && e->cost > l1->max_bytes) {
            entry_unref(e);
            e = NULL;
        }
    }
    l1->inner->ops->put(l1->inner, key, status, body, len, ttl_s);
    if (!keep) {
        return;
    }
    pthread_mutex_lock(&l1->lock);
    l1->epoch++;
    if (e != NULL) {
        insert(l1, e);
    } else if (*slot_of(l1, key, hash) != NULL) {
        remove_at(l1, slot_of(l1, key, hash)); /* never serve the old one */
    }
    pthread_mutex_unlock(&l1->lock);
}

static void
l1_destroy(struct agw_store *store)
{
    struct store_l1 *l1 = l1_of(store);
    struct entry *e;

    if (l1 == NULL) {
        return;
    }
    while ((e = l1->mru) != NULL) {
        l1->mru = e->next;
        entry_unref(e);
    }
    if (l1->inner != NULL) {
        l1->inner->ops->destroy(l1->inner);
    }
    pthread_mutex_destroy(&l1->lock);
    free(l1->buckets);
    free(l1);
}

static const struct agw_store_ops l1_ops = {
    .name = "l1",
    .get = l1_get,
    .put = l1_put,
    .destroy = l1_destroy,
};

static size_t
initial_buckets(long max_entries)
{
    size_t n = MIN_BUCKETS;

    /* Room for MAX_ENTRIES at the 3/4 load factor, up to a cap. */
    while (n < MAX_INITIAL_BUCKETS && (long)(n - n / 4) < max_entries) {
        n *= 2;
    }
    return n;
}

struct agw_store *
agw_store_l1_new(struct agw_store *inner, long max_entries, size_t max_bytes,
                 long ttl_ms)
{
    struct store_l1 *l1;

    if (inner == NULL) {
        return NULL;
    }
    l1 = calloc(1, sizeof(*l1));
    if (l1 == NULL) {
        inner->ops->destroy(inner);
        return NULL;
    }
    l1->base.ops = &l1_ops;
    l1->inner = inner;
    l1->off = max_entries <= 0 || max_bytes == 0 || ttl_ms <= 0;
    l1->max_entries = max_entries;
    l1->max_bytes = max_bytes;
    l1->ttl_us = (int64_t)(ttl_ms > MAX_TTL_MS ? MAX_TTL_MS : ttl_ms) * 1000;
    l1->now_us = agw_now_us;
    l1->nbuckets = initial_buckets(l1->off ? 0 : max_entries);
    l1->buckets = calloc(l1->nbuckets, sizeof(*l1->buckets));
    if (l1->buckets == NULL || pthread_mutex_init(&l1->lock, NULL) != 0) {
        free(l1->buckets);
        free(l1);
        inner->ops->destroy(inner);
        return NULL;
    }
    return &l1->base;
}

void
agw_store_l1_set_clock(struct agw_store *store, int64_t (*now_us)(void))
{
    l1_of(store)->now_us = now_us != NULL ? now_us : agw_now_us;
}

void
agw_store_l1_stats(struct agw_store *store, struct agw_store_l1_stats *out)
{
    struct store_l1 *l1 = l1_of(store);

    pthread_mutex_lock(&l1->lock);
    *out = l1->stats;
    pthread_mutex_unlock(&l1->lock);
}
