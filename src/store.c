/*
 * store.c - the one store (store.h): the process's tables (memory and
 * L1, both lru.h caches with their own locks) and, per event loop, a
 * store that reads them and, for the redis backend, this loop's Redis
 * tier (store_redis.h). Which tier answers is decided here, in one place:
 * L1, then Redis while it is up, then the memory table.
 */
#include "store.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lru.h"
#include "store_redis.h"

/* 100 years: keeps the TTL in microseconds far from overflowing int64. */
#define MAX_TTL_S (100L * 365 * 24 * 3600)
/* A day: the same for the L1's own bound. */
#define MAX_L1_TTL_MS (24L * 3600 * 1000)

struct agw_store_tables {
    atomic_int refs;
    struct agw_lru *memory;
    struct agw_lru *l1; /* NULL: no L1 */
    int64_t l1_ttl_us;
    atomic_uint_fast64_t l1_hits;
    atomic_uint_fast64_t l1_misses;
};

struct store {
    struct agw_store base; /* first: the ops receive &base */
    struct agw_store_tables *t;
    struct agw_store_redis *redis; /* NULL: the memory backend */
    long copy_ttl_s;
    int refs; /* the owner until destroy(), plus each lookup out */
};

/* An L1 miss on its way through Redis (and maybe the memory table). */
struct lookup {
    struct store *s;
    agw_store_get_cb cb;
    void *arg;
    uint64_t epoch;        /* what an L1 fill must still find */
    uint64_t memory_epoch; /* what the memory table's copy must */
    char key[];
};

static struct store *
store_of(struct agw_store *store)
{
    return (struct store *)store;
}

/* ------------------------------------------------------------ tables */

static int64_t
ttl_us(long ttl_s)
{
    if (ttl_s <= 0) {
        return 0;
    }
    return (ttl_s > MAX_TTL_S ? MAX_TTL_S : ttl_s) * INT64_C(1000000);
}

/* The L1's own bound, or the answer's TTL when that is shorter. */
static int64_t
l1_ttl_for_put(const struct agw_store_tables *t, long ttl_s)
{
    if (ttl_s <= t->l1_ttl_us / 1000000) {
        return ttl_s > 0 ? ttl_s * INT64_C(1000000) : 0;
    }
    return t->l1_ttl_us;
}

/* Answers LRU's live entry for KEY through CB; false: none. EPOCH (may
 * be NULL) receives what a fill started now must still find. */
static bool
answer_from(struct agw_lru *lru, const char *key, agw_store_get_cb cb,
            void *arg, uint64_t *epoch)
{
    const struct agw_lru_value *v = agw_lru_get(lru, key, epoch);

    if (v == NULL) {
        return false;
    }
    cb(AGW_STORE_HIT, v->status, v->body, v->len, arg);
    agw_lru_unref(v);
    return true;
}

static bool
l1_answer(struct agw_store_tables *t, const char *key, agw_store_get_cb cb,
          void *arg, uint64_t *epoch)
{
    if (!answer_from(t->l1, key, cb, arg, epoch)) {
        return false;
    }
    atomic_fetch_add_explicit(&t->l1_hits, 1, memory_order_relaxed);
    return true;
}

static void
memory_get(struct agw_store_tables *t, const char *key, agw_store_get_cb cb,
           void *arg)
{
    if (!answer_from(t->memory, key, cb, arg, NULL)) {
        cb(AGW_STORE_MISS, 0, NULL, 0, arg);
    }
}

/* Not kept (no TTL, too big, no memory) only costs a later call. */
static void
memory_put(struct agw_store_tables *t, const char *key, int status,
           const char *body, size_t len, long ttl_s)
{
    agw_lru_put(t->memory, key, status, body, len, ttl_us(ttl_s));
}

struct agw_store_tables *
agw_store_tables_new(long max_entries, size_t max_bytes, long l1_entries,
                     size_t l1_bytes, long l1_ttl_ms)
{
    struct agw_store_tables *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        return NULL;
    }
    atomic_init(&t->refs, 1);
    atomic_init(&t->l1_hits, 0);
    atomic_init(&t->l1_misses, 0);
    t->memory = agw_lru_new(max_entries, max_bytes, true);
    if (l1_entries > 0 && l1_bytes > 0 && l1_ttl_ms > 0) {
        t->l1_ttl_us =
            (int64_t)(l1_ttl_ms > MAX_L1_TTL_MS ? MAX_L1_TTL_MS : l1_ttl_ms) *
            1000;
        t->l1 = agw_lru_new(l1_entries, l1_bytes, true);
    }
    if (t->memory == NULL || (t->l1_ttl_us > 0 && t->l1 == NULL)) {
        agw_store_tables_unref(t);
        return NULL;
    }
    return t;
}

void
agw_store_tables_unref(struct agw_store_tables *t)
{
    /* acq_rel: the last reference sees every other thread's writes. */
    if (t == NULL ||
        atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    if (t->memory != NULL) {
        agw_lru_free(t->memory);
    }
    if (t->l1 != NULL) {
        agw_lru_free(t->l1);
    }
    free(t);
}

void
agw_store_tables_set_clock(struct agw_store_tables *t, int64_t (*now_us)(void))
{
    agw_lru_set_clock(t->memory, now_us);
    if (t->l1 != NULL) {
        agw_lru_set_clock(t->l1, now_us);
    }
}

void
agw_store_tables_stats(struct agw_store_tables *t, struct agw_store_stats *out)
{
    struct agw_lru_stats st;

    memset(out, 0, sizeof(*out));
    agw_lru_stats(t->memory, &st);
    out->memory_entries = st.entries;
    out->memory_bytes = st.bytes;
    if (t->l1 != NULL) {
        agw_lru_stats(t->l1, &st);
        out->l1_entries = st.entries;
        out->l1_bytes = st.bytes;
        out->l1_evicted = st.evicted;
    }
    out->l1_hits = atomic_load_explicit(&t->l1_hits, memory_order_relaxed);
    out->l1_misses = atomic_load_explicit(&t->l1_misses, memory_order_relaxed);
}

bool
agw_store_tables_forget(struct agw_store_tables *t, const char *key)
{
    bool held = agw_lru_remove(t->memory, key);

    if (t->l1 != NULL && agw_lru_remove(t->l1, key)) {
        held = true;
    }
    return held;
}

void
agw_store_tables_forget_l1(struct agw_store_tables *t)
{
    if (t->l1 != NULL) {
        agw_lru_clear(t->l1);
    }
}

void
agw_store_tables_forget_all(struct agw_store_tables *t)
{
    agw_lru_clear(t->memory);
    agw_store_tables_forget_l1(t);
}

/* ------------------------------------------------------------ lookups */

static void
store_unref(struct store *s)
{
    if (--s->refs > 0) {
        return;
    }
    agw_store_redis_free(s->redis);
    agw_store_tables_unref(s->t);
    free(s);
}

/* The end of an L1 miss: a hit (from Redis or the fallback) is kept in
 * the L1 unless a put raced the lookup: it may carry a newer answer. */
static void
lookup_done(struct lookup *lk, enum agw_store_result result, int status,
            const char *body, size_t len)
{
    struct agw_store_tables *t = lk->s->t;

    if (result == AGW_STORE_HIT && t->l1 != NULL) {
        agw_lru_fill(t->l1, lk->key, status, body, len, t->l1_ttl_us,
                     lk->epoch);
    }
    lk->cb(result, status, body, len, lk->arg);
    store_unref(lk->s);
    free(lk);
}

static void
on_fallback(enum agw_store_result result, int status, const char *body,
            size_t len, void *arg)
{
    lookup_done(arg, result, status, body, len);
}

/* Redis answered: a failure asks the memory table instead; a hit is
 * copied there for the next outage, unless a put or a purge came since
 * the lookup started (the purge's DEL may have come after this GET). */
static void
on_redis_get(enum agw_store_result result, int status, const char *body,
             size_t len, void *arg)
{
    struct lookup *lk = arg;

    if (result == AGW_STORE_ERROR) {
        memory_get(lk->s->t, lk->key, on_fallback, lk);
        return;
    }
    if (result == AGW_STORE_HIT) {
        agw_lru_fill(lk->s->t->memory, lk->key, status, body, len,
                     ttl_us(lk->s->copy_ttl_s), lk->memory_epoch);
    }
    lookup_done(lk, result, status, body, len);
}

/* Past the L1: Redis while it is up, else the memory table. */
static void
lookup_start(struct store *s, const char *key, agw_store_get_cb cb, void *arg,
             uint64_t epoch)
{
    size_t klen = strlen(key);
    struct lookup *lk = malloc(sizeof(*lk) + klen + 1);

    if (lk == NULL) {
        memory_get(s->t, key, cb, arg); /* no memory: the local copy */
        return;
    }
    /* Both epochs before the GET goes: a purge after them, even one
     * whose DEL reaches Redis after the GET, keeps the answer out. */
    *lk = (struct lookup){s, cb, arg, epoch, agw_lru_epoch(s->t->memory)};
    memcpy(lk->key, key, klen + 1);
    s->refs++;
    if (agw_store_redis_is_up(s->redis)) {
        agw_store_redis_get(s->redis, lk->key, on_redis_get, lk);
    } else {
        memory_get(s->t, lk->key, on_fallback, lk);
    }
}

static void
store_get(struct agw_store *store, const char *key, agw_store_get_cb cb,
          void *arg)
{
    struct store *s = store_of(store);
    struct agw_store_tables *t = s->t;
    uint64_t epoch = 0;

    if (key == NULL) {
        cb(AGW_STORE_ERROR, 0, NULL, 0, arg);
    } else if (s->redis == NULL) {
        memory_get(t, key, cb, arg);
    } else if (t->l1 == NULL) {
        lookup_start(s, key, cb, arg, 0);
    } else if (!l1_answer(t, key, cb, arg, &epoch)) {
        atomic_fetch_add_explicit(&t->l1_misses, 1, memory_order_relaxed);
        lookup_start(s, key, cb, arg, epoch);
    }
}

/* A hit without I/O: the memory backend's, or the L1's. A miss is
 * counted by the get() that follows. */
static bool
store_peek(struct agw_store *store, const char *key, agw_store_get_cb cb,
           void *arg)
{
    struct store *s = store_of(store);

    if (key == NULL) {
        return false;
    }
    if (s->redis == NULL) {
        return answer_from(s->t->memory, key, cb, arg, NULL);
    }
    return s->t->l1 != NULL && l1_answer(s->t, key, cb, arg, NULL);
}

/* ------------------------------------------------------------ writes */

/* put() and keep() alike, but for the Redis write (put's only). */
static void
store_copy(struct store *s, const char *key, int status, const char *body,
           size_t len, long ttl_s, bool put)
{
    struct agw_store_tables *t = s->t;

    if (key == NULL || (body == NULL && len > 0)) {
        return;
    }
    if (s->redis == NULL) {
        if (put) {
            memory_put(t, key, status, body, len, ttl_s);
        }
        return;
    }
    /* L1 first: it copies BODY, which may be an L1 value that a later
     * put would not keep alive; a put not kept still removes the old
     * copy, which must never be served again. */
    if (t->l1 != NULL) {
        agw_lru_put(t->l1, key, status, body, len, l1_ttl_for_put(t, ttl_s));
    }
    if (put && agw_store_redis_is_up(s->redis)) {
        agw_store_redis_set(s->redis, key, status, body, len, ttl_s);
    }
    memory_put(t, key, status, body, len, ttl_s);
}

static void
store_put(struct agw_store *store, const char *key, int status,
          const char *body, size_t len, long ttl_s)
{
    store_copy(store_of(store), key, status, body, len, ttl_s, true);
}

/* An answer Redis holds already (the fleet read or wrote it). */
static void
store_keep(struct agw_store *store, const char *key, int status,
           const char *body, size_t len, long ttl_s)
{
    store_copy(store_of(store), key, status, body, len, ttl_s, false);
}

static void
store_destroy(struct agw_store *store)
{
    if (store != NULL) {
        store_unref(store_of(store));
    }
}

static const struct agw_store_ops store_ops = {
    .get = store_get,
    .peek = store_peek,
    .put = store_put,
    .keep = store_keep,
    .destroy = store_destroy,
};

struct agw_store *
agw_store_new(struct agw_store_tables *tables, struct agw_redis *redis,
              const char *key_prefix, long copy_ttl_s)
{
    struct store *s = calloc(1, sizeof(*s));

    if (s == NULL || tables == NULL) {
        free(s);
        return NULL;
    }
    if (redis != NULL) {
        s->redis = agw_store_redis_new(redis, key_prefix);
        if (s->redis == NULL) {
            free(s);
            return NULL;
        }
    }
    s->base.ops = &store_ops;
    atomic_fetch_add_explicit(&tables->refs, 1, memory_order_relaxed);
    s->t = tables;
    s->copy_ttl_s = copy_ttl_s;
    s->refs = 1;
    return &s->base;
}
