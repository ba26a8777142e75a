/*
 * store_tiered.h - the Redis store with an in-process fallback: while
 * Redis is up every lookup and write goes to Redis; while it is down they
 * go to a memory store, so an instance keeps deduplicating on its own
 * (SPEC §4 "in-process dedupe only") and needs no restart to return. The
 * memory store also keeps a copy of what Redis answered or was given (and
 * of what keep() is given: another instance's flight's answer), so that
 * answers this instance served or stored before an outage are still
 * served during it (SPEC §4: an outage does not re-create them).
 */
#ifndef AGW_STORE_TIERED_H
#define AGW_STORE_TIERED_H

struct agw_store;
struct agw_redis;

/*
 * Takes ownership of SHARED and LOCAL; REDIS (borrowed) tells which one
 * serves. Destroying the result destroys both. A copy kept from a Redis
 * hit lives COPY_TTL_S (the answer's own TTL is not known from a GET);
 * one from a write lives the write's TTL. LOCAL's bounds (entries and
 * bytes) bound the copies.
 */
struct agw_store *agw_store_tiered_new(struct agw_store *shared,
                                       struct agw_store *local,
                                       const struct agw_redis *redis,
                                       long copy_ttl_s);

#endif
