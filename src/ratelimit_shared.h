/*
 * ratelimit_shared.h - lets the worker threads share one in-process
 * limiter (the local GCRA), so the process as a whole keeps the rate.
 */
#ifndef AGW_RATELIMIT_SHARED_H
#define AGW_RATELIMIT_SHARED_H

struct agw_limiter;

/*
 * Wraps INNER (owned), a limiter that decides before acquire() returns,
 * so that any thread may call it: one mutex around each call; acquire()'s
 * callback runs after the mutex is released. Holds one reference; NULL
 * when memory runs out (INNER is then destroyed).
 */
struct agw_limiter *agw_limiter_shared_new(struct agw_limiter *inner);

/* Another reference (destroy() drops one; the last destroys INNER). */
struct agw_limiter *agw_limiter_shared_ref(struct agw_limiter *rl);

#endif
