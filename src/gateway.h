/*
 * gateway.h - what one event loop's worth of gateway holds: the loop, the
 * settings, and one of each stage of the create pipeline.
 */
#ifndef AGW_GATEWAY_H
#define AGW_GATEWAY_H

#include <stdbool.h>
#include <sys/queue.h>

struct event_base;
struct evdns_base;
struct agw_config;
struct agw_store;
struct agw_flight_loop;
struct agw_limiter;
struct agw_upstream;
struct agw_auth;
struct agw_redis;
struct agw_sentinel;
struct agw_flight_tier;
struct agw_call;

struct agw_gateway {
    struct event_base *base;
    struct evdns_base *dns;
    struct agw_config *cfg; /* the running snapshot (config.h refs) */
    struct agw_store *store;
    struct agw_flight_loop *flight_loop;
    struct agw_limiter *limiter;
    struct agw_upstream *upstream;
    struct agw_auth *auth; /* callers (mode = token); NULL: mode = none */
    /* backend = redis only (else NULL): commands, pub/sub, the fleet's
     * flights (flight_fleet.h) */
    struct agw_redis *redis;
    struct agw_redis *redis_sub;
    struct agw_sentinel *sentinel; /* [store] sentinels set, else NULL */
    struct agw_flight_tier *flight_fleet;
    /* workers > 1 (else NULL): the flights of this process's workers
     * (flight_process.h), joined before the fleet's */
    struct agw_flight_tier *flight_process;
    bool draining; /* stop taking new creates: answer 503 */
    long inflight; /* create calls accepted and not yet answered */
    /* Calls leading a flight, oldest first: create.c's (agw_create_init()) */
    TAILQ_HEAD(agw_call_list, agw_call) leaders;
};

#endif
