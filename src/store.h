/*
 * store.h - where answered creates are kept for dedupe (SPEC §3). One
 * interface (agw_store_ops) that create.c calls, and one implementation
 * (store.c) with its tiers inside, built by one call per event loop:
 *
 *   memory backend: the process's memory table (an lru.h cache).
 *   redis backend:  the L1 (a small short-lived lru.h cache, one per
 *                   process, optional) in front of this loop's Redis
 *                   connection (store_redis.h), with the process's memory
 *                   table as the outage fallback and stale-if-error copy.
 *
 * The process-wide tables (struct agw_store_tables) are made once and
 * shared by every loop's store; tests fake the store through the ops.
 */
#ifndef AGW_STORE_H
#define AGW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store_result.h"

struct agw_store;
struct agw_store_tables;

struct agw_store_ops {
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
     * that Redis holds already (another instance's flight's, or one the
     * fleet's claim read or its release wrote: flight_fleet.h): keeps the
     * copies a put() would keep (the L1's, the one for outages) without
     * writing Redis again. */
    void (*keep)(struct agw_store *store, const char *key, int status,
                 const char *body, size_t len, long ttl_s);
    void (*destroy)(struct agw_store *store);
};

struct agw_store {
    const struct agw_store_ops *ops;
};

/*
 * The process-wide part: the memory table, at most MAX_ENTRIES answers
 * and MAX_BYTES bytes (key, body and the entry's own bookkeeping, about
 * 100 bytes; the least recently used one is evicted to make room; an
 * answer bigger than MAX_BYTES is not kept; expired ones are never
 * returned), and the L1 table: at most L1_ENTRIES entries and L1_BYTES
 * bytes, each living at most L1_TTL_MS from the moment it was copied in
 * and never past the TTL given to put(). L1_TTL_MS therefore bounds how
 * long a refresh made on another instance (Cache-Control: no-cache there)
 * can still be answered from this instance's L1, give or take one Redis
 * round trip; it may also answer up to L1_TTL_MS past the expiry of the
 * Redis copy. Any L1 bound <= 0: no L1 (every lookup goes to Redis).
 *
 * Both tables own their locks: stores on them may run in different
 * threads at once. Reference counted, starting at one (the caller's);
 * each store holds one more. NULL when memory runs out.
 */
struct agw_store_tables *agw_store_tables_new(long max_entries,
                                              size_t max_bytes, long l1_entries,
                                              size_t l1_bytes, long l1_ttl_ms);

/* Drops a reference; the last one frees the tables (any thread). */
void agw_store_tables_unref(struct agw_store_tables *tables);

struct agw_redis;

/*
 * One event loop's store on TABLES (a reference is taken).
 *
 * REDIS NULL: the memory backend. get() and peek() answer before they
 * return, with no lock held during the callback (it may call the store
 * again); keep() does nothing (put() wrote the only copy).
 *
 * REDIS (borrowed: it must outlive the store; used from its loop only):
 * answers under KEY_PREFIX "a:" KEY (store_redis.h). An L1 hit
 * is answered before get() returns (peek() answers only those); an L1
 * miss is one Redis GET while Redis is up, and a Redis hit is copied into
 * the L1 and into the memory table for COPY_TTL_S (a GET does not tell
 * the answer's own TTL), each unless that table had a put or a purge
 * while the lookup was out (a put may be newer; a purge's DEL may have
 * reached Redis after the GET; the check is table-wide, so a put of
 * another key also costs the copy). While Redis is down, or when its
 * lookup fails, the memory table answers instead (SPEC §4: in-process
 * dedupe only, and an answer served or stored before an outage is still
 * served during it).
 * put() writes Redis (while up), the L1 and the memory table; keep() the
 * L1 and the memory table only (Redis holds the answer already).
 *
 * destroy() drops the store; lookups still in flight answer as usual
 * when their Redis replies (or failures) come. NULL when memory runs out.
 */
struct agw_store *agw_store_new(struct agw_store_tables *tables,
                                struct agw_redis *redis, const char *key_prefix,
                                long copy_ttl_s);

struct agw_store_stats {
    long memory_entries; /* held now, expired ones not yet dropped incl. */
    size_t memory_bytes; /* as counted against MAX_BYTES */
    long l1_entries;     /* the same, in the L1 */
    size_t l1_bytes;     /* as counted against L1_BYTES */
    uint64_t l1_hits;    /* lookups answered from the L1 */
    uint64_t l1_misses;  /* lookups passed on to Redis */
    uint64_t l1_evicted; /* L1 entries dropped for room or age */
};

/* A snapshot: each table's entries, bytes and evictions are consistent
 * with each other; hits and misses are counted apart, without the lock. */
void agw_store_tables_stats(struct agw_store_tables *tables,
                            struct agw_store_stats *out);

/*
 * An operator's purge (SPEC §12): KEY's answer leaves the L1 and the
 * memory table (a lookup in flight cannot put it back into either).
 * Returns whether either held it. Redis's copy is the caller's to delete.
 */
bool agw_store_tables_forget(struct agw_store_tables *tables, const char *key);

/* Empties the L1: back from a Redis outage, this instance may have missed
 * purges published meanwhile. */
void agw_store_tables_forget_l1(struct agw_store_tables *tables);

/* Empties the L1 and the memory table: this instance missed purges and
 * cannot tell which (flight_fleet.h, AGW_FLEET_PURGE_ALL). */
void agw_store_tables_forget_all(struct agw_store_tables *tables);

/* For tests: replace the monotonic microsecond clock (NULL: the real
 * one) of both tables. Call it before stores are used from threads. */
void agw_store_tables_set_clock(struct agw_store_tables *tables,
                                int64_t (*now_us)(void));

#endif
