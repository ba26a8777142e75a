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
 * publishes KEY on PREFIX "purge". CB(REPLY, ERROR, ARG) runs once,
 * never before this returns unless FLEET is not a Redis fleet (then
 * REPLY NULL): REPLY's integer is 1 when Redis held the answer.
 */
void agw_flight_fleet_purge(struct agw_flight_tier *fleet, const char *key,
                            void (*cb)(struct redisReply *reply,
                                       const char *error, void *arg),
                            void *arg);

/*
 * CB(KEY, ARG) runs on FLEET's loop for every purge any instance
 * publishes (KEY: 64 hex), and with KEY NULL whenever the subscription
 * is (re)confirmed: purges published while it was away were missed, so
 * every copy that may predate one (the L1) must go. Others: nothing.
 */
void agw_flight_fleet_on_purge(struct agw_flight_tier *fleet,
                               void (*cb)(const char *key, void *arg),
                               void *arg);

#endif
