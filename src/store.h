/*
 * store.h - where answered creates are kept for dedupe (SPEC §3). One
 * interface (agw_store_ops), two backends: in process (store_memory.c,
 * one loop's or shared by the workers) and Redis (store_redis.c, shared
 * by the fleet; its layout is read and written by flight_tier.h's scripts too).
 * worker.c puts the L1 (store_l1.h) and the outage fallback
 * (store_tiered.h) in front of Redis; callers see one store.
 */
#ifndef AGW_STORE_H
#define AGW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum agw_store_result { AGW_STORE_HIT, AGW_STORE_MISS, AGW_STORE_ERROR };

/*
 * Result of a lookup. On HIT, BODY (LEN bytes, not NUL-terminated is
 * allowed) and STATUS are valid only during the callback: copy them.
 */
typedef void (*agw_store_get_cb)(enum agw_store_result result, int status,
                                 const char *body, size_t len, void *arg);

struct agw_store;

struct agw_store_ops {
    const char *name;
    /* Looks KEY up. CB runs exactly once; a backend without I/O (memory)
     * may run it before get() returns. */
    void (*get)(struct agw_store *store, const char *key, agw_store_get_cb cb,
                void *arg);
    /* Optional (NULL: none). A hit found without I/O: CB runs with it
     * before peek() returns true. Anything else (a miss, or an answer
     * that needs I/O) returns false without calling CB: ask get(). */
    bool (*peek)(struct agw_store *store, const char *key, agw_store_get_cb cb,
                 void *arg);
    /* Stores a copy of BODY under KEY for TTL_S seconds, replacing any. */
    void (*put)(struct agw_store *store, const char *key, int status,
                const char *body, size_t len, long ttl_s);
    /* Optional (NULL: nothing to do). An answer this instance served
     * that the shared store holds already (another instance's flight's,
     * or one the fleet read or wrote itself: flight_tier.h): keeps the copies
     * a put() would keep (the L1's, the one for outages: store_tiered.h),
     * without writing the shared store again. */
    void (*keep)(struct agw_store *store, const char *key, int status,
                 const char *body, size_t len, long ttl_s);
    void (*destroy)(struct agw_store *store);
};

struct agw_store {
    const struct agw_store_ops *ops;
};

/*
 * In-process store (an lru.h cache): at most MAX_ENTRIES answers and
 * MAX_BYTES bytes (key, body and the entry's own bookkeeping, about 100
 * bytes); the least recently used one is evicted to make room (an answer
 * bigger than MAX_BYTES is not kept); expired ones are never returned.
 * get() and peek() answer before they return, with no lock held during
 * the callback (it may call the store again). For one thread only.
 */
struct agw_store *agw_store_memory_new(long max_entries, size_t max_bytes);

/*
 * The same, for the worker threads of one process to share: it owns its
 * lock (lru.h), so any thread may call it. Both kinds are reference
 * counted, starting at one: destroy() drops a reference, the last one
 * frees the store.
 */
struct agw_store *agw_store_memory_shared_new(long max_entries,
                                              size_t max_bytes);

/* Another reference to STORE (a memory store). Returns STORE. */
struct agw_store *agw_store_memory_ref(struct agw_store *store);

/* Entries held now (expired ones not yet evicted included). */
long agw_store_memory_count(const struct agw_store *store);

struct agw_redis;

/*
 * Redis store (shared by the fleet): answers under KEY_PREFIX "a:" KEY,
 * with the TTL given to put(). A get is one round trip (GET). When Redis
 * is down or a command fails, get() answers AGW_STORE_ERROR and put()
 * drops the write (logged). REDIS is borrowed: it must outlive the store.
 */
struct agw_store *agw_store_redis_new(struct agw_redis *redis,
                                      const char *key_prefix);

/*
 * The Redis store's layout, shared with the fleet's scripts (flight_tier.h),
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

/* For tests: replace the monotonic microsecond clock. */
void agw_store_memory_set_clock(struct agw_store *store,
                                int64_t (*now_us)(void));

#endif
