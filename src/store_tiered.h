/*
 * store_tiered.h - the Redis store with an in-process fallback: while
 * Redis is up every lookup and write goes to Redis; while it is down they
 * go to a memory store, so an instance keeps deduplicating on its own
 * (SPEC §4 "in-process dedupe only") and needs no restart to return.
 */
#ifndef AGW_STORE_TIERED_H
#define AGW_STORE_TIERED_H

struct agw_store;
struct agw_redis;

/*
 * Takes ownership of SHARED and LOCAL; REDIS (borrowed) tells which one
 * serves. Destroying the result destroys both.
 */
struct agw_store *agw_store_tiered_new(struct agw_store *shared,
                                       struct agw_store *local,
                                       const struct agw_redis *redis);

#endif
