/*
 * store_l1.h - an in-process L1 cache in front of another store (the Redis
 * one), so a hot key is answered without a Redis round trip (issue #7).
 */
#ifndef AGW_STORE_L1_H
#define AGW_STORE_L1_H

#include <stddef.h>
#include <stdint.h>

struct agw_store;

/*
 * Wraps INNER (owned: destroying the result destroys it). get() answers an
 * L1 hit before it returns; a miss asks INNER, and an INNER hit is copied
 * into L1. put() writes INNER and replaces the L1 copy.
 *
 * Bounds: at most MAX_ENTRIES entries and MAX_BYTES bytes (key + body +
 * per-entry overhead; the least recently used entry goes first; a single
 * answer bigger than MAX_BYTES is not kept). Each entry lives at most
 * TTL_MS milliseconds from the moment it was copied in, and never past the
 * TTL given to put(). TTL_MS therefore bounds how long a refresh made on
 * another instance (Cache-Control: no-cache there) can still be answered
 * from this instance's L1, give or take one round trip to INNER. It may
 * also answer up to TTL_MS past the expiry of INNER's copy.
 *
 * MAX_ENTRIES <= 0 (or MAX_BYTES or TTL_MS <= 0) makes a pass-through that
 * keeps nothing. Thread-safe: the table is guarded by one mutex, never held
 * while a callback runs; INNER's own calls are made as they would be
 * without L1. Returns NULL when memory runs out (INNER is then destroyed).
 */
struct agw_store *agw_store_l1_new(struct agw_store *inner, long max_entries,
                                   size_t max_bytes, long ttl_ms);

/* For tests: replace the monotonic microsecond clock (NULL: the real one). */
void agw_store_l1_set_clock(struct agw_store *store, int64_t (*now_us)(void));

struct agw_store_l1_stats {
    long entries;     /* held now, expired ones not yet dropped included */
    size_t bytes;     /* as counted against MAX_BYTES */
    uint64_t hits;    /* gets answered from L1 */
    uint64_t misses;  /* gets passed to INNER */
    uint64_t evicted; /* entries dropped for room or age */
};

/* A consistent snapshot of STORE's counters. */
void agw_store_l1_stats(struct agw_store *store,
                        struct agw_store_l1_stats *out);

#endif
