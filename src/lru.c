/*
 * lru.c - the bounded answer cache: a table (table.c) from key to entry,
 * a TAILQ of entries in use order, and a mutex when threads share it.
 */
#include "lru.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "table.h"
#include "util.h"

/* 100 years: keeps now + ttl far from overflowing int64. */
#define MAX_TTL_US (INT64_C(100) * 365 * 24 * 3600 * 1000000)
/* Buckets sized up front at most for this many: no rehash under the lock
 * for common sizes, no huge allocation for a huge bound. */
#define MAX_PRESIZE 49152

/*
 * One allocation holds the entry, its key and its body. REFS counts the
 * cache (while linked) and each reader holding the value, so a reader
 * needs no lock and eviction never frees a body being read.
 */
struct entry {
    TAILQ_ENTRY(entry) link; /* use order: head = most recent */
    int64_t expires_us;
    size_t cost; /* counted against max_bytes */
    atomic_int refs;
    struct agw_lru_value v;
    char key[]; /* the key, NUL, the body, NUL */
};

TAILQ_HEAD(entry_list, entry);

struct agw_lru {
    bool locked; /* LOCK is used */
    long max_entries;
    size_t max_bytes;
    int64_t (*now_us)(void);

    pthread_mutex_t lock;  /* when LOCKED, guards everything below */
    struct agw_table *map; /* key -> struct entry */
    struct entry_list order;
    uint64_t epoch; /* puts, removes and clears so far */
    struct agw_lru_stats stats;
};

static void
lock(struct agw_lru *lru)
{
    if (lru->locked) {
        pthread_mutex_lock(&lru->lock);
    }
}

static void
unlock(struct agw_lru *lru)
{
    if (lru->locked) {
        pthread_mutex_unlock(&lru->lock);
    }
}

static struct entry *
entry_of(const struct agw_lru_value *v)
{
    return (struct entry *)((char *)v - offsetof(struct entry, v));
}

static void
entry_unref(struct entry *e)
{
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
        free(e);
    }
}

/* A copy with one reference (the cache's); NULL: no memory. */
static struct entry *
entry_new(const char *key, int status, const char *body, size_t len)
{
    size_t klen = strlen(key);
    size_t size;
    struct entry *e;
    char *copy;

    if (len > SIZE_MAX / 2 || klen > SIZE_MAX / 4) {
        return NULL;
    }
    size = sizeof(*e) + klen + 1 + len + 1;
    if ((e = malloc(size)) == NULL) {
        return NULL;
    }
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, klen + 1);
    copy = e->key + klen + 1;
    if (len > 0) {
        memcpy(copy, body, len);
    }
    copy[len] = '\0';
    e->v = (struct agw_lru_value){status, len, copy};
    /* The table keeps its own copy of the key and a node for it. */
    e->cost = size + klen + 1 + 3 * sizeof(void *);
    atomic_init(&e->refs, 1);
    return e;
}

/* Locked: unlinks E from the table and the list, drops the cache's ref. */
static void
drop(struct agw_lru *lru, struct entry *e)
{
    agw_table_remove(lru->map, e->key);
    TAILQ_REMOVE(&lru->order, e, link);
    lru->stats.entries--;
    lru->stats.bytes -= e->cost;
    entry_unref(e);
}

static void
evict(struct agw_lru *lru, struct entry *e)
{
    drop(lru, e);
    lru->stats.evicted++;
}

/* Locked: replaces any entry for E's key with E, making room; false (E
 * freed, the old entry gone) when it does not fit or memory ran out. */
static bool
insert(struct agw_lru *lru, struct entry *e, int64_t now)
{
    struct entry *old = agw_table_get(lru->map, e->key);
    struct entry *tail;

    if (old != NULL) {
        drop(lru, old);
    }
    if (lru->max_entries <= 0 || e->cost > lru->max_bytes) {
        entry_unref(e);
        return false;
    }
    /* The oldest are often expired already: free them before counting. */
    while ((tail = TAILQ_LAST(&lru->order, entry_list)) != NULL &&
           now >= tail->expires_us) {
        evict(lru, tail);
    }
    while ((tail = TAILQ_LAST(&lru->order, entry_list)) != NULL &&
           (lru->stats.entries >= lru->max_entries ||
            lru->stats.bytes + e->cost > lru->max_bytes)) {
        evict(lru, tail);
    }
    if (!agw_table_put(lru->map, e->key, e)) {
        entry_unref(e);
        return false;
    }
    TAILQ_INSERT_HEAD(&lru->order, e, link);
    lru->stats.entries++;
    lru->stats.bytes += e->cost;
    return true;
}

/* A copy to insert, expiring TTL_US from now; NULL: nothing to keep. */
static struct entry *
prepare(struct agw_lru *lru, const char *key, int status, const char *body,
        size_t len, int64_t ttl_us, int64_t now)
{
    struct entry *e;

    if (ttl_us <= 0 || (body == NULL && len > 0)) {
        return NULL;
    }
    e = entry_new(key, status, body, len);
    if (e != NULL) {
        e->expires_us = now + (ttl_us > MAX_TTL_US ? MAX_TTL_US : ttl_us);
    }
    return e;
}

bool
agw_lru_put(struct agw_lru *lru, const char *key, int status, const char *body,
            size_t len, int64_t ttl_us)
{
    int64_t now = lru->now_us();
    /* Copy before taking the lock, and before the old entry goes: BODY
     * may be its value (the caller's reference keeps it alive). */
    struct entry *e = prepare(lru, key, status, body, len, ttl_us, now);
    struct entry *old;
    bool kept = false;

    lock(lru);
    lru->epoch++;
    if (e != NULL) {
        kept = insert(lru, e, now);
    } else if ((old = agw_table_get(lru->map, key)) != NULL) {
        drop(lru, old); /* never serve the one this put replaces */
    }
    unlock(lru);
    return kept;
}

bool
agw_lru_fill(struct agw_lru *lru, const char *key, int status, const char *body,
             size_t len, int64_t ttl_us, uint64_t epoch)
{
    int64_t now = lru->now_us();
    struct entry *e = prepare(lru, key, status, body, len, ttl_us, now);
    bool kept = false;

    if (e == NULL) {
        return false;
    }
    lock(lru);
    if (epoch == lru->epoch) {
        kept = insert(lru, e, now);
        e = NULL;
    }
    unlock(lru);
    if (e != NULL) {
        entry_unref(e);
    }
    return kept;
}

bool
agw_lru_remove(struct agw_lru *lru, const char *key)
{
    int64_t now = lru->now_us();
    struct entry *e;
    bool live = false;

    lock(lru);
    lru->epoch++;
    e = agw_table_get(lru->map, key);
    if (e != NULL) {
        live = now < e->expires_us;
        drop(lru, e);
    }
    unlock(lru);
    return live;
}

void
agw_lru_clear(struct agw_lru *lru)
{
    struct entry *e;

    lock(lru);
    lru->epoch++;
    while ((e = TAILQ_FIRST(&lru->order)) != NULL) {
        drop(lru, e);
    }
    unlock(lru);
}

const struct agw_lru_value *
agw_lru_get(struct agw_lru *lru, const char *key, uint64_t *epoch)
{
    int64_t now = lru->now_us();
    struct entry *e;

    lock(lru);
    e = agw_table_get(lru->map, key);
    if (e != NULL && now >= e->expires_us) {
        evict(lru, e);
        e = NULL;
    }
    if (e != NULL) {
        if (TAILQ_FIRST(&lru->order) != e) {
            TAILQ_REMOVE(&lru->order, e, link);
            TAILQ_INSERT_HEAD(&lru->order, e, link);
        }
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    }
    if (epoch != NULL) {
        *epoch = lru->epoch;
    }
    unlock(lru);
    return e != NULL ? &e->v : NULL;
}

uint64_t
agw_lru_epoch(struct agw_lru *lru)
{
    uint64_t epoch;

    lock(lru);
    epoch = lru->epoch;
    unlock(lru);
    return epoch;
}

void
agw_lru_unref(const struct agw_lru_value *value)
{
    if (value != NULL) {
        entry_unref(entry_of(value));
    }
}

void
agw_lru_stats(struct agw_lru *lru, struct agw_lru_stats *out)
{
    lock(lru);
    *out = lru->stats;
    unlock(lru);
}

void
agw_lru_set_clock(struct agw_lru *lru, int64_t (*now_us)(void))
{
    lru->now_us = now_us != NULL ? now_us : agw_now_us;
}

struct agw_lru *
agw_lru_new(long max_entries, size_t max_bytes, bool locked)
{
    struct agw_lru *lru = calloc(1, sizeof(*lru));
    long presize = max_entries < MAX_PRESIZE ? max_entries : MAX_PRESIZE;

    if (lru == NULL) {
        return NULL;
    }
    lru->locked = locked;
    lru->max_entries = max_bytes > 0 ? max_entries : 0;
    lru->max_bytes = max_bytes;
    lru->now_us = agw_now_us;
    TAILQ_INIT(&lru->order);
    lru->map = agw_table_new(presize > 0 ? (size_t)presize : 0);
    if (lru->map == NULL ||
        (locked && pthread_mutex_init(&lru->lock, NULL) != 0)) {
        agw_table_free(lru->map);
        free(lru);
        return NULL;
    }
    return lru;
}

void
agw_lru_free(struct agw_lru *lru)
{
    struct entry *e;

    if (lru == NULL) {
        return;
    }
    while ((e = TAILQ_FIRST(&lru->order)) != NULL) {
        TAILQ_REMOVE(&lru->order, e, link);
        entry_unref(e);
    }
    agw_table_free(lru->map);
    if (lru->locked) {
        pthread_mutex_destroy(&lru->lock);
    }
    free(lru);
}
