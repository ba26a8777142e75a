/*
 * store_tiered.c - routes each store operation to Redis or, while Redis
 * is down, to the local memory store. A Redis failure during a lookup
 * falls back to the local store for that lookup too. While Redis is up,
 * what it answers and what is written to it is copied to the local store
 * (stale-if-error: an asset's create answer does not go stale); the copy
 * is read only when Redis cannot answer, so Redis stays the truth.
 */
#include <stdlib.h>
#include <string.h>

#include "redis.h"
#include "store.h"
#include "store_tiered.h"

struct store_tiered {
    struct agw_store base; /* first: the ops receive &base */
    struct agw_store *shared;
    struct agw_store *local;
    const struct agw_redis *redis;
    long copy_ttl_s;
};

struct lookup {
    struct store_tiered *t;
    char *key;
    agw_store_get_cb cb;
    void *arg;
};

static struct store_tiered *
tiered_of(struct agw_store *store)
{
    return (struct store_tiered *)store;
}

static void
on_shared_get(enum agw_store_result result, int status, const char *body,
              size_t len, void *arg)
{
    struct lookup *l = arg;

    if (result == AGW_STORE_ERROR) {
        l->t->local->ops->get(l->t->local, l->key, l->cb, l->arg);
    } else {
        if (result == AGW_STORE_HIT) {
            l->t->local->ops->put(l->t->local, l->key, status, body, len,
                                  l->t->copy_ttl_s);
        }
        l->cb(result, status, body, len, l->arg);
    }
    free(l->key);
    free(l);
}

static void
tiered_get(struct agw_store *store, const char *key, agw_store_get_cb cb,
           void *arg)
{
    struct store_tiered *t = tiered_of(store);
    struct lookup *l;

    if (!agw_redis_is_up(t->redis) || (l = malloc(sizeof(*l))) == NULL) {
        t->local->ops->get(t->local, key, cb, arg);
        return;
    }
    *l = (struct lookup){t, strdup(key), cb, arg};
    if (l->key == NULL) {
        free(l);
        t->local->ops->get(t->local, key, cb, arg);
        return;
    }
    t->shared->ops->get(t->shared, key, on_shared_get, l);
}

static void
tiered_put(struct agw_store *store, const char *key, int status,
           const char *body, size_t len, long ttl_s)
{
    struct store_tiered *t = tiered_of(store);

    if (agw_redis_is_up(t->redis)) {
        t->shared->ops->put(t->shared, key, status, body, len, ttl_s);
    }
    t->local->ops->put(t->local, key, status, body, len, ttl_s);
}

static void
tiered_keep(struct agw_store *store, const char *key, int status,
            const char *body, size_t len, long ttl_s)
{
    struct store_tiered *t = tiered_of(store);

    t->local->ops->put(t->local, key, status, body, len, ttl_s);
}

static void
tiered_destroy(struct agw_store *store)
{
    struct store_tiered *t = tiered_of(store);

    t->shared->ops->destroy(t->shared);
    t->local->ops->destroy(t->local);
    free(t);
}

static const struct agw_store_ops tiered_ops = {
    .name = "redis",
    .get = tiered_get,
    .put = tiered_put,
    .keep = tiered_keep,
    .destroy = tiered_destroy,
};

struct agw_store *
agw_store_tiered_new(struct agw_store *shared, struct agw_store *local,
                     const struct agw_redis *redis, long copy_ttl_s)
{
    struct store_tiered *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        return NULL;
    }
    t->base.ops = &tiered_ops;
    t->shared = shared;
    t->local = local;
    t->redis = redis;
    t->copy_ttl_s = copy_ttl_s;
    return &t->base;
}
