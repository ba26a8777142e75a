/*
 * flight_tier.h - a flight tier wider than one event loop, where a call
 * that leads its loop's flight (flight_loop.h) claims the key or waits
 * for the answer of the call that holds it (SPEC §3). Two kinds: the
 * process's (flight_process.h: the worker threads of one process) and the
 * fleet's (flight_fleet.h: every instance sharing a Redis). flight.h
 * stacks them; nothing else should need this interface. The KEY a tier
 * is given is the flight's name (flight.h): the dedupe key, or after a
 * purge "KEY#N", a flight apart from the one under way for KEY.
 */
#ifndef AGW_FLIGHT_TIER_H
#define AGW_FLIGHT_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agw_response;
struct agw_flight_tier;
struct agw_flight_wait;

enum agw_flight_tier_outcome {
    AGW_TIER_LEAD,        /* this caller holds the claim: call upstream,
                              then agw_flight_tier_release() */
    AGW_TIER_ANSWER,      /* another instance answered: RESP */
    AGW_TIER_UNAVAILABLE, /* Redis is down or failed: go on locally */
    AGW_TIER_STORED,      /* agw_flight_tier_lookup() only: the store holds an
                              answer for the key (RESP, a 2xx); no claim
                              was taken */
};

/* RESP is set for ANSWER and STORED only and valid only during the
 * callback. */
typedef void (*agw_flight_tier_cb)(enum agw_flight_tier_outcome outcome,
                                   const struct agw_response *resp, void *arg);

/* One tier of each kind per event loop. */
struct agw_flight_tier_ops {
    struct agw_flight_wait *(*join)(struct agw_flight_tier *tier,
                                    const char *key, agw_flight_tier_cb cb,
                                    void *arg);
    void (*cancel)(struct agw_flight_tier *tier, struct agw_flight_wait *wait);
    void (*renew)(struct agw_flight_tier *tier, const char *key, int ttl_ms);
    void (*release)(struct agw_flight_tier *tier, const char *key,
                    const struct agw_response *resp);
    /* NULL: nothing to do. */
    void (*abandon)(struct agw_flight_tier *tier, const char *key);
    void (*free)(struct agw_flight_tier *tier);
    /* Optional (NULL: the tier does not see the store, e.g. the
     * process's): join and release that also read and write the
     * store's answer for KEY, in the same round trip. */
    struct agw_flight_wait *(*lookup)(struct agw_flight_tier *tier,
                                      const char *key, agw_flight_tier_cb cb,
                                      void *arg);
    void (*release_storing)(struct agw_flight_tier *tier, const char *key,
                            const struct agw_response *resp, long ttl_s);
};

struct agw_flight_tier {
    const struct agw_flight_tier_ops *ops;
};

/* TIER may be NULL. Waits still open end without their callback. */
static inline void
agw_flight_tier_free(struct agw_flight_tier *tier)
{
    if (tier != NULL) {
        tier->ops->free(tier);
    }
}

/*
 * Claims KEY or waits for its answer. CB runs exactly once, never before
 * this returns, unless the wait is cancelled with agw_flight_tier_cancel()
 * (the caller's own deadline timer does that) or the tier is freed first.
 * Waiting has no deadline of its own: it ends with an answer, a takeover
 * (LEAD) when the claim expires unanswered (or is abandoned), or
 * UNAVAILABLE when the fleet's tier cannot coordinate (Redis down at
 * join, a command failing, its subscriber connection dropping while
 * waiting: messages in between would be lost, or
 * agw_flight_fleet_redis_state() down). While waits are open the fleet's
 * tier keeps a PING going, so a Redis that stops answering fails them
 * within the command timeout. Returns the handle (never NULL), owned by
 * the tier: it is invalid once CB ran.
 */
static inline struct agw_flight_wait *
agw_flight_tier_join(struct agw_flight_tier *tier, const char *key,
                     agw_flight_tier_cb cb, void *arg)
{
    return tier->ops->join(tier, key, cb, arg);
}

/* Stops waiting: CB will not run. Safe at any moment before CB ran
 * (replies still due are ignored); WAIT may be NULL. */
static inline void
agw_flight_tier_cancel(struct agw_flight_tier *tier,
                       struct agw_flight_wait *wait)
{
    if (wait != NULL) {
        tier->ops->cancel(tier, wait);
    }
}

/*
 * Holder only, before each upstream attempt: the claim must last TTL_MS
 * from now (the attempt under the caller's own settings, which a reload
 * may have lengthened since the claim was taken) and, renewed every
 * TTL_MS / 3, for as long as it is held: it expires only when its holder
 * died or lost Redis. Fire and forget; failures are logged. The Redis
 * fleet sends a renewal now only when TTL_MS is longer than any asked
 * before (or than the claim's own): its renewals every third of that
 * keep at least two thirds of it ahead of the claim already.
 */
static inline void
agw_flight_tier_renew(struct agw_flight_tier *tier, const char *key, int ttl_ms)
{
    tier->ops->renew(tier, key, ttl_ms);
}

/*
 * Holder only: publishes RESP (status, retry_after_s and body; errors
 * too) to the waiters on every instance, keeps a short-lived copy for
 * late subscribers, and deletes the claim if this instance still owns it
 * (one Lua script). Without a claim held for KEY (e.g. after UNAVAILABLE)
 * it does nothing. RESP is copied. Fire and forget; failures are logged
 * (waiters elsewhere then take over when the claim expires).
 */
static inline void
agw_flight_tier_release(struct agw_flight_tier *tier, const char *key,
                        const struct agw_response *resp)
{
    tier->ops->release(tier, key, resp);
}

/*
 * Whether TIER reads and writes the store's answers itself
 * (agw_flight_tier_lookup, agw_flight_tier_release_storing): the Redis one
 * does.
 */
static inline bool
agw_flight_tier_sees_store(const struct agw_flight_tier *tier)
{
    return tier->ops->lookup != NULL;
}

/*
 * agw_flight_tier_join() for a tier that sees the store: when the store holds
 * an answer for KEY, CB gets it (STORED) and no claim is taken; else as
 * agw_flight_tier_join(), in the same round trip. Not for calls that refresh
 * the stored answer (no-cache): they join.
 */
static inline struct agw_flight_wait *
agw_flight_tier_lookup(struct agw_flight_tier *tier, const char *key,
                       agw_flight_tier_cb cb, void *arg)
{
    return tier->ops->lookup(tier, key, cb, arg);
}

/*
 * agw_flight_tier_release() that also stores RESP (a 2xx) for TTL_S seconds
 * (> 0), before the claim goes: one round trip, or none without a claim
 * held (then store it through the store). A tier that does not see the
 * store just releases.
 */
static inline void
agw_flight_tier_release_storing(struct agw_flight_tier *tier, const char *key,
                                const struct agw_response *resp, long ttl_s)
{
    if (tier->ops->release_storing != NULL) {
        tier->ops->release_storing(tier, key, resp, ttl_s);
    } else {
        tier->ops->release(tier, key, resp);
    }
}

/*
 * Holder only, shutting down without an answer for the others: the Redis
 * claim is no longer renewed and left to expire (a waiter on a live
 * instance then takes over); in-process waiters are told at once.
 */
static inline void
agw_flight_tier_abandon(struct agw_flight_tier *tier, const char *key)
{
    if (tier->ops->abandon != NULL) {
        tier->ops->abandon(tier, key);
    }
}

#endif
