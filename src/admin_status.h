/*
 * admin_status.h - the JSON of GET /admin/status (SPEC §12, admin.h) and
 * the in-process history it carries for the status page's chart.
 *
 * Scopes: facts read from Redis (the heartbeats: instances, calls per
 * caller) make "scope": "fleet" in the fleet and limiter objects and
 * "callers_scope": "fleet"; without them (Redis down, or backend =
 * memory) those show this instance alone and say "local". callers_scope
 * sits beside callers because a caller may be named "scope".
 */
#ifndef AGW_ADMIN_STATUS_H
#define AGW_ADMIN_STATUS_H

#include <stddef.h>
#include <stdint.h>

struct agw_gateway;
struct agw_limiter;
struct agw_store_tables;
struct json_object;
struct redisReply;

/* One sample every AGW_ADMIN_HISTORY_EVERY_S for the last five minutes. */
#define AGW_ADMIN_HISTORY_EVERY_S 5
#define AGW_ADMIN_HISTORY_MAX (300 / AGW_ADMIN_HISTORY_EVERY_S)

struct agw_admin_sample {
    double t;           /* Unix time */
    double calls_per_s; /* upstream attempts per second since the last */
    double backlog_ms;  /* the limiter's, at T */
    unsigned long long hits, misses; /* creates served since the last */
};

/* This instance's history, a ring: one loop's (not locked). */
struct agw_admin_history {
    struct agw_admin_sample samples[AGW_ADMIN_HISTORY_MAX];
    size_t n, next;
    unsigned long long seen_calls, seen_hits, seen_misses;
    int64_t seen_us;
};

/* Starts H from the metrics' counters now. */
void agw_admin_history_init(struct agw_admin_history *h);

/* Adds a sample (the oldest goes when full), RL's backlog included. */
void agw_admin_history_sample(struct agw_admin_history *h,
                              struct agw_limiter *rl);

/* What the status reads; all borrowed, read on GW's loop. */
struct agw_admin_view {
    struct agw_gateway *gw;
    struct agw_store_tables *tables;
    int workers;
    const struct agw_admin_history *history;
};

/*
 * The status object (the caller puts it). FLEET: the reply of
 * agw_limiter_fleet_read_instances(), or NULL (or not its shape): this
 * instance alone, scope "local".
 */
struct json_object *agw_admin_status_json(const struct agw_admin_view *v,
                                          const struct redisReply *fleet);

#endif
