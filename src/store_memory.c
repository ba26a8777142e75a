/*
 * store_memory.c - the in-process dedupe store (SPEC §3): the store
 * interface over one bounded LRU+TTL cache (lru.c), which takes its own
 * lock when the store is shared by threads.
 */
#include "store.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "lru.h"

/* 100 years: keeps the TTL in microseconds far from overflowing int64. */
#define MAX_TTL_S (100L * 365 * 24 * 3600)

struct store_memory {
    struct agw_store base; /* first: the ops receive &base */
    struct agw_lru *lru;
    atomic_int refs; /* destroy() drops one; the last frees */
};

static struct agw_lru *
lru_of(const struct agw_store *store)
{
    return ((const struct store_memory *)store)->lru;
}

static void
mem_get(struct agw_store *store, const char *key, agw_store_get_cb cb,
        void *arg)
{
    const struct agw_lru_value *v;

    if (key == NULL) {
        cb(AGW_STORE_ERROR, 0, NULL, 0, arg);
        return;
    }
    v = agw_lru_get(lru_of(store), key, NULL);
    if (v == NULL) {
        cb(AGW_STORE_MISS, 0, NULL, 0, arg);
        return;
    }
    cb(AGW_STORE_HIT, v->status, v->body, v->len, arg);
    agw_lru_unref(v);
}

/* Every answer is found without I/O: a hit is a get's hit. */
static bool
mem_peek(struct agw_store *store, const char *key, agw_store_get_cb cb,
         void *arg)
{
    const struct agw_lru_value *v;

    if (key == NULL) {
        return false;
    }
    v = agw_lru_get(lru_of(store), key, NULL);
    if (v == NULL) {
        return false;
    }
    cb(AGW_STORE_HIT, v->status, v->body, v->len, arg);
    agw_lru_unref(v);
    return true;
}

static void
mem_put(struct agw_store *store, const char *key, int status, const char *body,
        size_t len, long ttl_s)
{
    if (key == NULL || (body == NULL && len > 0)) {
        return;
    }
    /* Not kept (no TTL, too big, no memory) only costs a later call. */
    agw_lru_put(lru_of(store), key, status, body, len,
                ttl_s <= 0 ? 0
                           : (ttl_s > MAX_TTL_S ? MAX_TTL_S : ttl_s) *
                                 INT64_C(1000000));
}

static void
mem_destroy(struct agw_store *store)
{
    struct store_memory *m = (struct store_memory *)store;

    /* acq_rel: the last reference sees every other thread's writes. */
    if (m == NULL ||
        atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    agw_lru_free(lru_of(store));
    free(store);
}

static const struct agw_store_ops memory_ops = {
    .name = "memory",
    .get = mem_get,
    .peek = mem_peek,
    .put = mem_put,
    .destroy = mem_destroy,
};

static struct agw_store *
memory_new(long max_entries, size_t max_bytes, bool shared)
{
    struct store_memory *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        return NULL;
    }
    m->lru = agw_lru_new(max_entries, max_bytes, shared);
    if (m->lru == NULL) {
        free(m);
        return NULL;
    }
    m->base.ops = &memory_ops;
    atomic_init(&m->refs, 1);
    return &m->base;
}

struct agw_store *
agw_store_memory_new(long max_entries, size_t max_bytes)
{
    return memory_new(max_entries, max_bytes, false);
}

struct agw_store *
agw_store_memory_shared_new(long max_entries, size_t max_bytes)
{
    return memory_new(max_entries, max_bytes, true);
}

struct agw_store *
agw_store_memory_ref(struct agw_store *store)
{
    struct store_memory *m = (struct store_memory *)store;

    /* Relaxed: the caller's own reference keeps the store alive. */
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return store;
}

long
agw_store_memory_count(const struct agw_store *store)
{
    struct agw_lru_stats st;

    agw_lru_stats(lru_of(store), &st);
    return st.entries;
}

void
agw_store_memory_set_clock(struct agw_store *store, int64_t (*now_us)(void))
{
    agw_lru_set_clock(lru_of(store), now_us);
}
