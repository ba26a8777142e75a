/*
 * store_redis.h - the Redis tier of the store (store.c only): one loop's
 * GET and SET of answers shared by the fleet, in the layout of store.h
 * (AGW_STORE_REDIS_KEY, agw_store_redis_encode/decode). Not a store of
 * its own: store.c puts the L1 in front of it and the memory fallback
 * behind it.
 */
#ifndef AGW_STORE_REDIS_H
#define AGW_STORE_REDIS_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

struct agw_redis;
struct agw_store_redis;

/* The tier on REDIS (borrowed: it must outlive the tier) for keys under
 * KEY_PREFIX "a:". NULL when memory runs out. */
struct agw_store_redis *agw_store_redis_new(struct agw_redis *redis,
                                            const char *key_prefix);

/* Drops the owner's reference; commands in flight keep the tier until
 * their replies (or failures) are handled. */
void agw_store_redis_free(struct agw_store_redis *tier);

/* Whether Redis is up (connected) now. */
bool agw_store_redis_is_up(const struct agw_store_redis *tier);

/*
 * One GET. CB runs exactly once, maybe before this returns (out of
 * memory): HIT with a value in the store's shape, MISS, or ERROR (Redis
 * failed, or a value not ours: logged).
 */
void agw_store_redis_get(struct agw_store_redis *tier, const char *key,
                         agw_store_get_cb cb, void *arg);

/* One SET ... EX TTL_S (DEL when TTL_S <= 0); a failure is logged and
 * the write dropped. */
void agw_store_redis_set(struct agw_store_redis *tier, const char *key,
                         int status, const char *body, size_t len, long ttl_s);

#endif
