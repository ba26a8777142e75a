/*
 * store_l1.c - the L1 cache: one chained hash table with an LRU list, bounded
 * by entries and bytes, entries short-lived, shared by per-worker fronts
 * that each send misses and puts on to their own inner store.
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

/*
 * What every front shares. FRONTS counts the fronts on it: the last one
 * destroyed frees it, from whichever thread that happens on.
 */
struct l1_table {
    atomic_int fronts;
    bool off;
    long max_entries;
    size_t max_bytes;
    int64_t ttl_us;
    int64_t (*now_us)(void); /* set before the fronts go to their threads */

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

/* One worker's way into the table; misses go to its own INNER. */
struct l1_front {
    struct agw_store base; /* first: the ops receive &base */
    struct agw_store *inner;
    struct l1_table *t;
};

/* A miss on its way through a front's inner store. */
struct lookup {
    struct l1_table *t;
    agw_store_get_cb cb;
    void *arg;
    uint64_t hash;
    uint64_t epoch;
    char key[];
};

static struct l1_front *
front_of(struct agw_store *store)
{
    return (struct l1_front *)store;
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
slot_of(struct l1_table *t, const char *key, uint64_t hash)
{
    struct entry **p = &t->buckets[hash & (t->nbuckets - 1)];

    while (*p != NULL && ((*p)->hash != hash || strcmp((*p)->data, key) != 0)) {
        p = &(*p)->chain;
    }
    return p;
}

static void
lru_unlink(struct l1_table *t, struct entry *e)
{
    if (e->prev != NULL) {
        e->prev->next = e->next;
    } else {
        t->mru = e->next;
    }
    if (e->next != NULL) {
        e->next->prev = e->prev;
    } else {
        t->lru = e->prev;
    }
    e->prev = NULL;
    e->next = NULL;
}

static void
lru_push_front(struct l1_table *t, struct entry *e)
{
    e->prev = NULL;
    e->next = t->mru;
    if (t->mru != NULL) {
        t->mru->prev = e;
    } else {
        t->lru = e;
    }
    t->mru = e;
}

/* Unlinks the entry *SLOT points at and drops the table's reference. */
static void
remove_at(struct l1_table *t, struct entry **slot)
{
    struct entry *e = *slot;

    *slot = e->chain;
    lru_unlink(t, e);
    t->stats.entries--;
    t->stats.bytes -= e->cost;
    entry_unref(e);
}

static void
evict_lru(struct l1_table *t)
{
    struct entry *e = t->lru;

    remove_at(t, slot_of(t, e->data, e->hash));
    t->stats.evicted++;
}

/* Doubles the table; on allocation failure keeps the longer chains. */
static void
grow(struct l1_table *t)
{
    size_t n = t->nbuckets * 2;
    struct entry **b = calloc(n, sizeof(*b));

    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct entry *e = t->buckets[i];

        while (e != NULL) {
            struct entry *chain = e->chain;

            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = chain;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

/* Under the lock: replaces any entry for E's key with E, making room. */
static void
insert(struct l1_table *t, struct entry *e)
{
    struct entry **slot = slot_of(t, e->data, e->hash);
    int64_t now = t->now_us();

    if (*slot != NULL) {
        remove_at(t, slot);
    }
    /* The oldest are often expired already: free them before counting. */
    while (t->lru != NULL && now >= t->lru->expires_us) {
        evict_lru(t);
    }
    while (t->lru != NULL && (t->stats.entries >= t->max_entries ||
                              t->stats.bytes + e->cost > t->max_bytes)) {
        evict_lru(t);
    }
    if ((size_t)t->stats.entries >= t->nbuckets - t->nbuckets / 4) {
        grow(t);
    }
    slot = &t->buckets[e->hash & (t->nbuckets - 1)];
    e->chain = *slot;
    *slot = e;
    lru_push_front(t, e);
    t->stats.entries++;
    t->stats.bytes += e->cost;
}

/* Keeps a copy of an inner hit unless a put raced the lookup. */
static void
fill(struct lookup *lk, int status, const char *body, size_t len)
{
    struct l1_table *t = lk->t;
    struct entry *e = entry_new(lk->key, lk->hash, status, body, len,
                                t->now_us() + t->ttl_us);

    if (e == NULL) {
        return;
    }
    pthread_mutex_lock(&t->lock);
    if (lk->epoch == t->epoch && e->cost <= t->max_bytes) {
        insert(t, e);
        e = NULL;
    }
    pthread_mutex_unlock(&t->lock);
    if (e != NULL) {
        entry_unref(e);
    }
}

static void
on_inner_get(enum agw_store_result result, int status, const char *body,
             size_t len, void *arg)
{
    struct lookup *lk = arg;

    if (result == AGW_STORE_HIT) {
        fill(lk, status, body, len);
    }
    lk->cb(result, status, body, len, lk->arg);
    free(lk);
}

/* Under the lock: a live entry for KEY with a reader's reference, or NULL. */
static struct entry *
take_hit(struct l1_table *t, const char *key, uint64_t hash)
{
    struct entry **slot = slot_of(t, key, hash);
    struct entry *e = *slot;

    if (e == NULL) {
        return NULL;
    }
    if (t->now_us() >= e->expires_us) {
        remove_at(t, slot);
        t->stats.evicted++;
        return NULL;
    }
    if (t->mru != e) {
        lru_unlink(t, e);
        lru_push_front(t, e);
    }
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

/* The hit for KEY (a reader's reference), or NULL and the epoch a fill
 * started now must still find. */
static struct entry *
lookup_hit(struct l1_table *t, const char *key, uint64_t hash, uint64_t *epoch,
           bool count_miss)
{
    struct entry *e;

    pthread_mutex_lock(&t->lock);
    e = take_hit(t, key, hash);
    if (e != NULL) {
        t->stats.hits++;
    } else if (count_miss) {
        t->stats.misses++;
    }
    *epoch = t->epoch;
    pthread_mutex_unlock(&t->lock);
    return e;
}

static void
l1_get(struct agw_store *store, const char *key, agw_store_get_cb cb, void *arg)
{
    struct l1_front *f = front_of(store);
    struct lookup *lk;
    struct entry *e;
    uint64_t hash;
    uint64_t epoch;
    size_t klen;

    if (f->t->off || key == NULL) {
        f->inner->ops->get(f->inner, key, cb, arg);
        return;
    }
    hash = fnv1a(key);
    e = lookup_hit(f->t, key, hash, &epoch, true);
    if (e != NULL) {
        cb(AGW_STORE_HIT, e->status, e->body, e->len, arg);
        entry_unref(e);
        return;
    }
    klen = strlen(key);
    lk = malloc(sizeof(*lk) + klen + 1);
    if (lk == NULL) {
        f->inner->ops->get(f->inner, key, cb, arg); /* just not kept */
        return;
    }
    *lk = (struct lookup){f->t, cb, arg, hash, epoch};
    memcpy(lk->key, key, klen + 1);
    f->inner->ops->get(f->inner, lk->key, on_inner_get, lk);
}

/* A hit in the table only; a miss is counted by the get() that follows. */
static bool
l1_peek(struct agw_store *store, const char *key, agw_store_get_cb cb,
        void *arg)
{
    struct l1_front *f = front_of(store);
    struct entry *e;
    uint64_t epoch;

    if (f->t->off || key == NULL) {
        return false;
    }
    e = lookup_hit(f->t, key, fnv1a(key), &epoch, false);
    if (e == NULL) {
        return false;
    }
    cb(AGW_STORE_HIT, e->status, e->body, e->len, arg);
    entry_unref(e);
    return true;
}

/* L1's own bound, or the answer's TTL when that is shorter. */
static int64_t
expiry_of(const struct l1_table *t, long ttl_s)
{
    int64_t ttl_us = t->ttl_us;

    if (ttl_s <= ttl_us / 1000000) {
        ttl_us = ttl_s * INT64_C(1000000);
    }
    return t->now_us() + ttl_us;
}

/* The entry a put keeps, or NULL: nothing to keep (no TTL, too big, no
 * memory), and any older copy must then go. */
static struct entry *
entry_for_put(struct l1_table *t, const char *key, uint64_t hash, int status,
              const char *body, size_t len, long ttl_s)
{
    struct entry *e = NULL;

    if (ttl_s > 0) {
        e = entry_new(key, hash, status, body, len, expiry_of(t, ttl_s));
    }
    if (e != NULL && e->cost > t->max_bytes) {
        entry_unref(e);
        e = NULL;
    }
    return e;
}

/* put() and keep() copy alike; INNER gets the same call (keep() only
 * when INNER has one). */
static void
l1_copy(struct agw_store *store, const char *key, int status, const char *body,
        size_t len, long ttl_s, bool put)
{
    struct l1_front *f = front_of(store);
    struct l1_table *t = f->t;
    bool keep = !t->off && key != NULL && (body != NULL || len == 0);
    struct entry *e = NULL;
    uint64_t hash = 0;

    /* Copy first: BODY may point into an L1 entry that put() replaces. */
    if (keep) {
        hash = fnv1a(key);
        e = entry_for_put(t, key, hash, status, body, len, ttl_s);
    }
    if (put) {
        f->inner->ops->put(f->inner, key, status, body, len, ttl_s);
    } else if (f->inner->ops->keep != NULL) {
        f->inner->ops->keep(f->inner, key, status, body, len, ttl_s);
    }
    if (!keep) {
        return;
    }
    pthread_mutex_lock(&t->lock);
    t->epoch++;
    if (e != NULL) {
        insert(t, e);
    } else if (*slot_of(t, key, hash) != NULL) {
        remove_at(t, slot_of(t, key, hash)); /* never serve the old one */
    }
    pthread_mutex_unlock(&t->lock);
}

static void
l1_put(struct agw_store *store, const char *key, int status, const char *body,
       size_t len, long ttl_s)
{
    l1_copy(store, key, status, body, len, ttl_s, true);
}

/* An answer Redis holds already (the fleet read or wrote it): L1 keeps
 * it as a get() or put() through L1 would. */
static void
l1_keep(struct agw_store *store, const char *key, int status, const char *body,
        size_t len, long ttl_s)
{
    l1_copy(store, key, status, body, len, ttl_s, false);
}

static void
table_free(struct l1_table *t)
{
    struct entry *e;

    while ((e = t->mru) != NULL) {
        t->mru = e->next;
        entry_unref(e);
    }
    pthread_mutex_destroy(&t->lock);
    free(t->buckets);
    free(t);
}

static void
l1_destroy(struct agw_store *store)
{
    struct l1_front *f = front_of(store);
    struct l1_table *t;

    if (f == NULL) {
        return;
    }
    t = f->t;
    /* First: callbacks INNER runs while it goes may still fill the table. */
    if (f->inner != NULL) {
        f->inner->ops->destroy(f->inner);
    }
    free(f);
    /* acq_rel: the last front sees every other front's writes before
     * freeing what they wrote. */
    if (atomic_fetch_sub_explicit(&t->fronts, 1, memory_order_acq_rel) == 1) {
        table_free(t);
    }
}

static const struct agw_store_ops l1_ops = {
    .name = "l1",
    .get = l1_get,
    .peek = l1_peek,
    .put = l1_put,
    .keep = l1_keep,
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

/* A table with one front's reference; NULL: no memory. */
static struct l1_table *
table_new(long max_entries, size_t max_bytes, long ttl_ms)
{
    struct l1_table *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        return NULL;
    }
    atomic_init(&t->fronts, 1);
    t->off = max_entries <= 0 || max_bytes == 0 || ttl_ms <= 0;
    t->max_entries = max_entries;
    t->max_bytes = max_bytes;
    t->ttl_us = (int64_t)(ttl_ms > MAX_TTL_MS ? MAX_TTL_MS : ttl_ms) * 1000;
    t->now_us = agw_now_us;
    t->nbuckets = initial_buckets(t->off ? 0 : max_entries);
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    if (t->buckets == NULL || pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t->buckets);
        free(t);
        return NULL;
    }
    return t;
}

/* A front on T asking INNER (owned: destroyed when this fails). The caller
 * accounts for the front in T->fronts. */
static struct agw_store *
front_new(struct l1_table *t, struct agw_store *inner)
{
    struct l1_front *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        inner->ops->destroy(inner);
        return NULL;
    }
    f->base.ops = &l1_ops;
    f->inner = inner;
    f->t = t;
    return &f->base;
}

struct agw_store *
agw_store_l1_new(struct agw_store *inner, long max_entries, size_t max_bytes,
                 long ttl_ms)
{
    struct l1_table *t;
    struct agw_store *front;

    if (inner == NULL) {
        return NULL;
    }
    t = table_new(max_entries, max_bytes, ttl_ms);
    if (t == NULL) {
        inner->ops->destroy(inner);
        return NULL;
    }
    front = front_new(t, inner);
    if (front == NULL) {
        table_free(t);
    }
    return front;
}

struct agw_store *
agw_store_l1_share(struct agw_store *l1, struct agw_store *inner)
{
    struct l1_table *t;
    struct agw_store *front;

    if (inner == NULL) {
        return NULL;
    }
    if (l1 == NULL || l1->ops != &l1_ops) {
        inner->ops->destroy(inner);
        return NULL;
    }
    t = front_of(l1)->t;
    front = front_new(t, inner);
    if (front != NULL) {
        /* Relaxed: the caller's live front L1 already keeps T alive. */
        atomic_fetch_add_explicit(&t->fronts, 1, memory_order_relaxed);
    }
    return front;
}

void
agw_store_l1_set_clock(struct agw_store *store, int64_t (*now_us)(void))
{
    front_of(store)->t->now_us = now_us != NULL ? now_us : agw_now_us;
}

void
agw_store_l1_stats(struct agw_store *store, struct agw_store_l1_stats *out)
{
    struct l1_table *t = front_of(store)->t;

    pthread_mutex_lock(&t->lock);
    *out = t->stats;
    pthread_mutex_unlock(&t->lock);
}
