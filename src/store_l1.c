/*
 * store_l1.c - the L1 cache: one bounded LRU+TTL cache (lru.c, shared,
 * so it takes its own lock) with short-lived entries, and per-worker
 * fronts that each send misses and puts on to their own inner store.
 */
#include "store_l1.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lru.h"
#include "store.h"

/* A day: keeps now + ttl far from overflowing int64. */
#define MAX_TTL_MS (24L * 3600 * 1000)

/*
 * What every front shares. FRONTS counts the fronts on it: the last one
 * destroyed frees it, from whichever thread that happens on.
 */
struct l1_table {
    atomic_int fronts;
    bool off;
    int64_t ttl_us;
    struct agw_lru *lru; /* thread-safe on its own */
    atomic_uint_fast64_t hits;
    atomic_uint_fast64_t misses;
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
    uint64_t epoch;
    char key[];
};

static struct l1_front *
front_of(struct agw_store *store)
{
    return (struct l1_front *)store;
}

static void
on_inner_get(enum agw_store_result result, int status, const char *body,
             size_t len, void *arg)
{
    struct lookup *lk = arg;

    /* Kept unless a put raced the lookup: it may carry a newer answer. */
    if (result == AGW_STORE_HIT) {
        agw_lru_fill(lk->t->lru, lk->key, status, body, len, lk->t->ttl_us,
                     lk->epoch);
    }
    lk->cb(result, status, body, len, lk->arg);
    free(lk);
}

/* Answers a live L1 entry for KEY through CB; false: none. EPOCH
 * receives what a fill started now must still find. */
static bool
answer_hit(struct l1_table *t, const char *key, agw_store_get_cb cb, void *arg,
           uint64_t *epoch)
{
    const struct agw_lru_value *v = agw_lru_get(t->lru, key, epoch);

    if (v == NULL) {
        return false;
    }
    atomic_fetch_add_explicit(&t->hits, 1, memory_order_relaxed);
    cb(AGW_STORE_HIT, v->status, v->body, v->len, arg);
    agw_lru_unref(v);
    return true;
}

static void
l1_get(struct agw_store *store, const char *key, agw_store_get_cb cb, void *arg)
{
    struct l1_front *f = front_of(store);
    struct lookup *lk;
    uint64_t epoch;
    size_t klen;

    if (f->t->off || key == NULL) {
        f->inner->ops->get(f->inner, key, cb, arg);
        return;
    }
    if (answer_hit(f->t, key, cb, arg, &epoch)) {
        return;
    }
    atomic_fetch_add_explicit(&f->t->misses, 1, memory_order_relaxed);
    klen = strlen(key);
    lk = malloc(sizeof(*lk) + klen + 1);
    if (lk == NULL) {
        f->inner->ops->get(f->inner, key, cb, arg); /* just not kept */
        return;
    }
    *lk = (struct lookup){f->t, cb, arg, epoch};
    memcpy(lk->key, key, klen + 1);
    f->inner->ops->get(f->inner, lk->key, on_inner_get, lk);
}

/* A hit in the table only; a miss is counted by the get() that follows. */
static bool
l1_peek(struct agw_store *store, const char *key, agw_store_get_cb cb,
        void *arg)
{
    struct l1_front *f = front_of(store);
    uint64_t epoch;

    if (f->t->off || key == NULL) {
        return false;
    }
    return answer_hit(f->t, key, cb, arg, &epoch);
}

/* L1's own bound, or the answer's TTL when that is shorter. */
static int64_t
ttl_for_put(const struct l1_table *t, long ttl_s)
{
    if (ttl_s <= t->ttl_us / 1000000) {
        return ttl_s > 0 ? ttl_s * INT64_C(1000000) : 0;
    }
    return t->ttl_us;
}

/* put() and keep() copy alike; INNER gets the same call (keep() only
 * when INNER has one). */
static void
l1_copy(struct agw_store *store, const char *key, int status, const char *body,
        size_t len, long ttl_s, bool put)
{
    struct l1_front *f = front_of(store);
    struct l1_table *t = f->t;

    /* L1 first: it copies BODY, which may be an L1 value that INNER's
     * put would not keep alive; a put not kept still removes the old
     * copy, which must never be served again. */
    if (!t->off && key != NULL && (body != NULL || len == 0)) {
        agw_lru_put(t->lru, key, status, body, len, ttl_for_put(t, ttl_s));
    }
    if (put) {
        f->inner->ops->put(f->inner, key, status, body, len, ttl_s);
    } else if (f->inner->ops->keep != NULL) {
        f->inner->ops->keep(f->inner, key, status, body, len, ttl_s);
    }
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
    agw_lru_free(t->lru);
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

/* A table with one front's reference; NULL: no memory. */
static struct l1_table *
table_new(long max_entries, size_t max_bytes, long ttl_ms)
{
    struct l1_table *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        return NULL;
    }
    atomic_init(&t->fronts, 1);
    atomic_init(&t->hits, 0);
    atomic_init(&t->misses, 0);
    t->off = max_entries <= 0 || max_bytes == 0 || ttl_ms <= 0;
    t->ttl_us = (int64_t)(ttl_ms > MAX_TTL_MS ? MAX_TTL_MS : ttl_ms) * 1000;
    t->lru = agw_lru_new(t->off ? 0 : max_entries, max_bytes, true);
    if (t->lru == NULL) {
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
    agw_lru_set_clock(front_of(store)->t->lru, now_us);
}

void
agw_store_l1_stats(struct agw_store *store, struct agw_store_l1_stats *out)
{
    struct l1_table *t = front_of(store)->t;
    struct agw_lru_stats st;

    agw_lru_stats(t->lru, &st);
    out->entries = st.entries;
    out->bytes = st.bytes;
    out->evicted = st.evicted;
    out->hits = atomic_load_explicit(&t->hits, memory_order_relaxed);
    out->misses = atomic_load_explicit(&t->misses, memory_order_relaxed);
}
