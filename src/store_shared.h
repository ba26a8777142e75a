/*
 * store_shared.h - lets the worker threads share one synchronous store
 * (the memory one, which answers get() before it returns).
 */
#ifndef AGW_STORE_SHARED_H
#define AGW_STORE_SHARED_H

struct agw_store;

/*
 * Wraps INNER (owned) so that any thread may call it: one mutex around
 * each call; a get's callback runs after the mutex is released, on a copy
 * of the answer, so it may call the store again. INNER must answer get()
 * before it returns. Holds one reference; NULL when memory runs out
 * (INNER is then destroyed).
 */
struct agw_store *agw_store_shared_new(struct agw_store *inner);

/* Another reference to STORE (from agw_store_shared_new); destroy() drops
 * one and the last one destroys INNER. Returns STORE. */
struct agw_store *agw_store_shared_ref(struct agw_store *store);

#endif
