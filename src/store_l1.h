/*
 * store_l1.h - an in-process L1 cache, one for all worker threads, in front
 * of each worker's own store (the Redis one), so a hot key is answered
 * without a Redis round trip (issue #7).
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
 * The result is the first front on a new table; agw_store_l1_share() adds
 * more. The table (entries, bounds, clock, counters) is one for all its
 * fronts; each front sends misses and puts to its own INNER.
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
 * while a callback runs, so fronts on it may run in different threads at
 * once. A front adds no thread-safety of its own: its calls go to its INNER
 * as they would without L1, so use a front only where its INNER may be
 * used (one front per worker thread when INNER is bound to one event
 * loop). Returns NULL when memory runs out (INNER is then destroyed).
 */
struct agw_store *agw_store_l1_new(struct agw_store *inner, long max_entries,
                                   size_t max_bytes, long ttl_ms);

/*
 * Another front on L1's table (L1 made by agw_store_l1_new or by this),
 * asking INNER (owned) on a miss: one front per worker, so every worker
 * is answered from one cache. L1 is borrowed. The table lives until its
 * last front is destroyed; fronts may be destroyed from different threads
 * in any order. Returns NULL when memory runs out or L1 is not an L1
 * (INNER is then destroyed). A pass-through L1 (bounds <= 0) makes
 * pass-through fronts.
 */
struct agw_store *agw_store_l1_share(struct agw_store *l1,
                                     struct agw_store *inner);

/* For tests: replace the monotonic microsecond clock (NULL: the real one)
 * of STORE's table, for all its fronts. Call it before the fronts are used
 * from other threads. */
void agw_store_l1_set_clock(struct agw_store *store, int64_t (*now_us)(void));

struct agw_store_l1_stats {
    long entries;     /* held now, expired ones not yet dropped included */
    size_t bytes;     /* as counted against MAX_BYTES */
    uint64_t hits;    /* gets answered from L1 */
    uint64_t misses;  /* gets passed to INNER */
    uint64_t evicted; /* entries dropped for room or age */
};

/* A snapshot of the counters of STORE's table (any front): ENTRIES,
 * BYTES and EVICTED are consistent with each other; HITS and MISSES are
 * counted apart, without the lock. */
void agw_store_l1_stats(struct agw_store *store,
                        struct agw_store_l1_stats *out);

#endif
