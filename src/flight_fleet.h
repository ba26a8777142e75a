/*
 * flight_fleet.h - single flight across every gateway sharing a Redis (SPEC
 * §3), a flight tier (flight_tier.h): the first instance to miss claims
 * the key (SET NX PX with an owner token), calls upstream and publishes
 * its answer; the others wait for that message on a pub/sub connection,
 * and one of them takes over if the claim expires without an answer (its
 * holder died).
 */
#ifndef AGW_FLIGHT_FLEET_H
#define AGW_FLIGHT_FLEET_H

#include <stdbool.h>
#include <stddef.h>

#include "flight_tier.h"

struct event_base;
struct agw_redis;

/*
 * CMD sends commands, SUB is a subscriber connection (both borrowed; they
 * must outlive the fleet). The fleet makes itself SUB's subscriber
 * (agw_redis_set_subscriber): give it a connection of its own.
 * Keys: PREFIX "lock:" KEY (the claim, value = owner token),
 * PREFIX "done:" KEY (channel, and a copy of the answer kept 10 s for
 * waiters that subscribe late), and the Redis store's answer (store.h;
 * PREFIX must be the store's key_prefix), which lookups and storing
 * releases read and write. KEY given to the ops may be a flight's name
 * (flight.h: "KEY#N"): its claims are told apart by it, Redis sees KEY.
 * A claim is taken for CLAIM_TTL_MS and
 * kept alive while it is held: renewed every third of its TTL, and to
 * the TTL each agw_flight_tier_renew() asks for. See flight_fleet.c for the
 * encoding of answers.
 */
struct agw_flight_tier *agw_flight_fleet_new(struct event_base *base,
                                             struct agw_redis *cmd,
                                             struct agw_redis *sub,
                                             const char *prefix,
                                             int claim_ttl_ms);

/*
 * Redis fleets (others, and NULL: nothing): call it from the state
 * callback of both connections. Down: every wait still open ends
 * UNAVAILABLE now (an answer or takeover may never come through it). Up:
 * claims this instance may have left in Redis when it failed (flight_fleet.c)
 * are released.
 */
void agw_flight_fleet_redis_state(struct agw_flight_tier *fleet, bool up);

struct redisReply;

/*
 * An operator's purge of KEY (a dedupe key, 64 hex) fleet-wide (SPEC
 * §12): one script deletes the stored answer, the late waiters' copy and
 * the claim (a flight under way then stores nothing: flight_fleet.c) and
 * publishes KEY on PREFIX "purge", and records it in PREFIX "purges"
 * (for instances whose subscription was away: agw_flight_fleet_on_purge).
 * CB(REPLY, ERROR, ARG) runs once, never before this returns unless FLEET
 * is not a Redis fleet (then REPLY NULL): REPLY's integer is 1 when Redis
 * held the answer.
 */
void agw_flight_fleet_purge(struct agw_flight_tier *fleet, const char *key,
                            void (*cb)(struct redisReply *reply,
                                       const char *error, void *arg),
                            void *arg);

/* What a purge callback must drop. */
enum agw_fleet_purge {
    AGW_FLEET_PURGE_KEY, /* KEY's copies (its L1 and memory table entry) */
    AGW_FLEET_PURGE_L1,  /* the whole L1 (KEY NULL) */
    AGW_FLEET_PURGE_ALL, /* the whole L1 and memory table (KEY NULL) */
};

/*
 * CB(WHAT, KEY, ARG) runs on FLEET's loop for every purge any instance
 * publishes (WHAT _KEY, KEY: 64 hex), and with WHAT _L1 whenever the
 * subscription is (re)confirmed: purges published while it was away were
 * missed, so every copy that may predate one (the L1) must go. When it
 * had been confirmed before, the purges published since it was last seen
 * down (less a slack) are read back from PREFIX "purges": _KEY for each,
 * or _ALL when that cannot tell every one for sure (away past the set's
 * hour, the set full, the read failed or answered out of shape). Others:
 * nothing.
 */
void agw_flight_fleet_on_purge(struct agw_flight_tier *fleet,
                               void (*cb)(enum agw_fleet_purge what,
                                          const char *key, void *arg),
                               void *arg);

/* What the read-back of missed purges tells. */
enum agw_fleet_missed {
    AGW_FLEET_MISSED_KNOWN,   /* every purge missed: each key was given */
    AGW_FLEET_MISSED_TRIMMED, /* the set was full: some may be gone */
    AGW_FLEET_MISSED_BAD,     /* a failure, or a reply out of shape */
};

/*
 * For tests: the read-back of missed purges' reply (flight_fleet.c,
 * missed_lua). KNOWN: FORGET(KEY, ARG) ran for each key in it that is 64
 * lowercase hex; the others are ignored and counted in *BAD. Otherwise
 * nothing was forgotten: the caller cannot tell every purge missed.
 */
enum agw_fleet_missed
agw_flight_fleet_missed_purges(const struct redisReply *reply,
                               void (*forget)(const char *key, void *arg),
                               void *arg, size_t *bad);

#endif
