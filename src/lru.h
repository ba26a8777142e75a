/*
 * lru.h - a bounded cache of answers (status + body) by string key:
 * at most MAX_ENTRIES entries and MAX_BYTES bytes, a TTL per entry, the
 * least recently used evicted first, an expired entry never returned. It
 * serves the store's memory table and its L1 (store.c).
 */
#ifndef AGW_LRU_H
#define AGW_LRU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agw_lru;

/* What a hit reads. Valid while the caller holds its reference. */
struct agw_lru_value {
    int status;
    size_t len;
    const char *body; /* LEN bytes, then a NUL */
};

/*
 * A cache with the given bounds. An entry costs its key, its body and
 * its bookkeeping (about 100 bytes) against MAX_BYTES; one costing more
 * than MAX_BYTES is never kept. MAX_ENTRIES <= 0 or MAX_BYTES == 0
 * keeps nothing.
 *
 * LOCKED: the cache is used by several threads, and takes its own mutex
 * around every call (never held while the caller reads a value: a value
 * is reference-counted, so eviction cannot free one being read). Not
 * LOCKED: no lock, one thread only. NULL when memory runs out.
 */
struct agw_lru *agw_lru_new(long max_entries, size_t max_bytes, bool locked);

/* Frees the cache. Values still referenced stay valid until unref'd. */
void agw_lru_free(struct agw_lru *lru);

/*
 * The live entry for KEY with a reference the caller must drop with
 * agw_lru_unref, and KEY becomes the most recently used; or NULL (an
 * expired entry is removed on sight). EPOCH (may be NULL) receives the
 * count of puts, removes and clears so far, for agw_lru_fill.
 */
const struct agw_lru_value *agw_lru_get(struct agw_lru *lru, const char *key,
                                        uint64_t *epoch);

/*
 * What agw_lru_get gives in EPOCH, without a lookup: for a fill of an
 * answer read elsewhere that was not looked up here first (the memory
 * table's copy of a Redis hit).
 */
uint64_t agw_lru_epoch(struct agw_lru *lru);

/* Drops a reference from agw_lru_get. */
void agw_lru_unref(const struct agw_lru_value *value);

/*
 * Keeps a copy of KEY -> (STATUS, BODY, LEN) for TTL_US microseconds,
 * replacing any entry for KEY and evicting expired, then least recently
 * used, entries to make room. BODY may point into a value of this cache.
 * When it cannot be kept (TTL_US <= 0, too big, no memory) any older
 * entry for KEY is removed all the same, so it is never served after.
 * Returns whether it was kept.
 */
bool agw_lru_put(struct agw_lru *lru, const char *key, int status,
                 const char *body, size_t len, int64_t ttl_us);

/*
 * As agw_lru_put, but only when no put, remove or clear happened since
 * agw_lru_get or agw_lru_epoch gave EPOCH: a copy of an answer read
 * elsewhere (a fill from Redis) must not replace a newer one put
 * meanwhile, nor bring back one purged meanwhile. Does not count as a put.
 */
bool agw_lru_fill(struct agw_lru *lru, const char *key, int status,
                  const char *body, size_t len, int64_t ttl_us, uint64_t epoch);

/*
 * Removes KEY's entry (an operator's purge); a fill that started before
 * (agw_lru_fill with an older EPOCH) cannot bring it back. Returns
 * whether a live entry was there.
 */
bool agw_lru_remove(struct agw_lru *lru, const char *key);

/* Removes every entry, as agw_lru_remove does each. */
void agw_lru_clear(struct agw_lru *lru);

struct agw_lru_stats {
    long entries;     /* held now, expired ones not yet dropped included */
    size_t bytes;     /* as counted against MAX_BYTES */
    uint64_t evicted; /* entries dropped for room or age */
};

/* A consistent snapshot. */
void agw_lru_stats(struct agw_lru *lru, struct agw_lru_stats *out);

/* For tests: replace the monotonic microsecond clock (NULL: the real
 * one). Call it before other threads use the cache. */
void agw_lru_set_clock(struct agw_lru *lru, int64_t (*now_us)(void));

#endif
