/*
 * fleet.h - single flight across every gateway sharing a Redis (SPEC
 * §3): the first instance to miss claims the key (SET NX PX with an owner
 * token), calls upstream and publishes its answer; the others wait for
 * that message on a pub/sub connection, and one of them takes over if the
 * claim expires without an answer (its holder died).
 */
#ifndef AGW_FLEET_H
#define AGW_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct agw_redis;
struct agw_response;
struct agw_fleet;
struct agw_fleet_wait;

enum agw_fleet_outcome {
    AGW_FLEET_LEAD,        /* this caller holds the claim: call upstream,
                              then agw_fleet_release() */
    AGW_FLEET_ANSWER,      /* another instance answered: RESP */
    AGW_FLEET_UNAVAILABLE, /* Redis is down or failed: go on locally */
    AGW_FLEET_STORED,      /* agw_fleet_lookup() only: the store holds an
                              answer for the key (RESP, a 2xx); no claim
                              was taken */
};

/* RESP is set for ANSWER and STORED only and valid only during the
 * callback. */
typedef void (*agw_fleet_cb)(enum agw_fleet_outcome outcome,
                             const struct agw_response *resp, void *arg);

/*
 * One fleet per event loop. Two kinds: the Redis one (agw_fleet_new) for
 * instances sharing a Redis, and the in-process one (fleet_local.h) for
 * worker threads sharing a memory store.
 */
struct agw_fleet_ops {
    struct agw_fleet_wait *(*join)(struct agw_fleet *fleet, const char *key,
                                   agw_fleet_cb cb, void *arg);
    void (*cancel)(struct agw_fleet *fleet, struct agw_fleet_wait *wait);
    void (*renew)(struct agw_fleet *fleet, const char *key, int ttl_ms);
    void (*release)(struct agw_fleet *fleet, const char *key,
                    const struct agw_response *resp);
    /* NULL: nothing to do. */
    void (*abandon)(struct agw_fleet *fleet, const char *key);
    void (*free)(struct agw_fleet *fleet);
    /* Optional (NULL: the fleet does not see the store, e.g. the
     * in-process one): join and release that also read and write the
     * store's answer for KEY, in the same round trip. */
    struct agw_fleet_wait *(*lookup)(struct agw_fleet *fleet, const char *key,
                                     agw_fleet_cb cb, void *arg);
    void (*release_storing)(struct agw_fleet *fleet, const char *key,
                            const struct agw_response *resp, long ttl_s);
};

struct agw_fleet {
    const struct agw_fleet_ops *ops;
};

/*
 * CMD sends commands, SUB is a subscriber connection (both borrowed; they
 * must outlive the fleet). The fleet makes itself SUB's subscriber
 * (agw_redis_set_subscriber): give it a connection of its own.
 * Keys: PREFIX "lock:" KEY (the claim, value = owner token),
 * PREFIX "done:" KEY (channel, and a copy of the answer kept 10 s for
 * waiters that subscribe late), and the Redis store's answer (store.h;
 * PREFIX must be the store's key_prefix), which lookups and storing
 * releases read and write. A claim is taken for CLAIM_TTL_MS and
 * kept alive while it is held: renewed every third of its TTL, and to
 * the TTL each agw_fleet_renew() asks for. See fleet.c for the encoding
 * of answers.
 */
struct agw_fleet *agw_fleet_new(struct event_base *base, struct agw_redis *cmd,
                                struct agw_redis *sub, const char *prefix,
                                int claim_ttl_ms);

/*
 * Redis fleets (others, and NULL: nothing): call it from the state
 * callback of both connections. Down: every wait still open ends
 * UNAVAILABLE now (an answer or takeover may never come through it). Up:
 * claims this instance may have left in Redis when it failed (fleet.c)
 * are released.
 */
void agw_fleet_redis_state(struct agw_fleet *fleet, bool up);

/* FLEET may be NULL. Waits still open end without their callback. */
static inline void
agw_fleet_free(struct agw_fleet *fleet)
{
    if (fleet != NULL) {
        fleet->ops->free(fleet);
    }
}

/*
 * Claims KEY or waits for its answer. CB runs exactly once, never before
 * this returns, unless the wait is cancelled with agw_fleet_cancel (the
 * caller's own deadline timer does that) or the fleet is freed first.
 * Waiting has no deadline of its own: it ends with an answer, a takeover
 * (LEAD) when the claim expires unanswered (or is abandoned), or
 * UNAVAILABLE when the fleet cannot coordinate (Redis down at join, a
 * command failing, SUB dropping while waiting: messages in between would
 * be lost, or agw_fleet_redis_down()). While waits are open the fleet
 * keeps a PING going on CMD, so a Redis that stops answering fails them
 * within CMD's command timeout. Returns the handle (never NULL), owned by
 * the fleet: it is invalid once CB ran.
 */
static inline struct agw_fleet_wait *
agw_fleet_join(struct agw_fleet *fleet, const char *key, agw_fleet_cb cb,
               void *arg)
{
    return fleet->ops->join(fleet, key, cb, arg);
}

/* Stops waiting: CB will not run. Safe at any moment before CB ran
 * (replies still due are ignored); WAIT may be NULL. */
static inline void
agw_fleet_cancel(struct agw_fleet *fleet, struct agw_fleet_wait *wait)
{
    if (wait != NULL) {
        fleet->ops->cancel(fleet, wait);
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
agw_fleet_renew(struct agw_fleet *fleet, const char *key, int ttl_ms)
{
    fleet->ops->renew(fleet, key, ttl_ms);
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
agw_fleet_release(struct agw_fleet *fleet, const char *key,
                  const struct agw_response *resp)
{
    fleet->ops->release(fleet, key, resp);
}

/*
 * Whether FLEET reads and writes the store's answers itself
 * (agw_fleet_lookup, agw_fleet_release_storing): the Redis one does.
 */
static inline bool
agw_fleet_sees_store(const struct agw_fleet *fleet)
{
    return fleet->ops->lookup != NULL;
}

/*
 * agw_fleet_join() for a fleet that sees the store: when the store holds
 * an answer for KEY, CB gets it (STORED) and no claim is taken; else as
 * agw_fleet_join(), in the same round trip. Not for calls that refresh
 * the stored answer (no-cache): they join.
 */
static inline struct agw_fleet_wait *
agw_fleet_lookup(struct agw_fleet *fleet, const char *key, agw_fleet_cb cb,
                 void *arg)
{
    return fleet->ops->lookup(fleet, key, cb, arg);
}

/*
 * agw_fleet_release() that also stores RESP (a 2xx) for TTL_S seconds
 * (> 0), before the claim goes: one round trip, or none without a claim
 * held (then store it through the store). A fleet that does not see the
 * store just releases.
 */
static inline void
agw_fleet_release_storing(struct agw_fleet *fleet, const char *key,
                          const struct agw_response *resp, long ttl_s)
{
    if (fleet->ops->release_storing != NULL) {
        fleet->ops->release_storing(fleet, key, resp, ttl_s);
    } else {
        fleet->ops->release(fleet, key, resp);
    }
}

/*
 * Holder only, shutting down without an answer for the others: the Redis
 * claim is no longer renewed and left to expire (a waiter on a live
 * instance then takes over); in-process waiters are told at once.
 */
static inline void
agw_fleet_abandon(struct agw_fleet *fleet, const char *key)
{
    if (fleet->ops->abandon != NULL) {
        fleet->ops->abandon(fleet, key);
    }
}

#endif
