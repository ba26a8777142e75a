/*
 * store_redis.h - the Redis tier of the store: one loop's GET and SET of
 * answers shared by the fleet (store.c only), and their layout in Redis
 * (AGW_STORE_REDIS_KEY, agw_store_redis_encode/decode), which the fleet's
 * flight scripts read and write too (flight_fleet.c). Not a store of its
 * own: store.c puts the L1 in front of it and the memory fallback behind
 * it.
 */
#ifndef AGW_STORE_REDIS_H
#define AGW_STORE_REDIS_H

#include <stdbool.h>
#include <stddef.h>

#include "store_result.h"

struct agw_redis;
struct agw_store_redis;

/*
 * The Redis store's layout, shared with the fleet's scripts (flight_fleet.h),
 * which read an answer in a miss's claim and write it in its release:
 * key KEY_PREFIX AGW_STORE_REDIS_KEY KEY, value "<status>\n<body>".
 * Encode returns a malloc'd value of *VALUE_LEN bytes (NULL: out of
 * memory). Decode accepts only what the store serves (a 2xx status in
 * at most 3 digits, a body of at most AGW_RESPONSE_MAX_BYTES); *BODY
 * points into VALUE.
 */
#define AGW_STORE_REDIS_KEY "a:"
char *agw_store_redis_encode(int status, const char *body, size_t len,
                             size_t *value_len);
bool agw_store_redis_decode(const char *value, size_t len, int *status,
                            const char **body, size_t *body_len);

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
