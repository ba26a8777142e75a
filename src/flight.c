/*
 * flight.c - the tiers of single flight stacked into one (flight.h): a
 * call waits in the narrowest tier where another call leads its key, and
 * leads every tier below that one.
 */
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "flight.h"
#include "flight_loop.h"
#include "flight_tier.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "reply.h"

#define PURGE_SLOTS 64

static bool join_process(struct agw_flight *f);
static bool join_fleet(struct agw_flight *f);

/* The purges of each slot's keys in this process (agw_flight_purge). */
static atomic_ulong purge_generations[PURGE_SLOTS];

static atomic_ulong *
slot_of(const char *key)
{
    unsigned h = 2166136261u; /* FNV-1a */

    for (; *key != '\0'; key++) {
        h = (h ^ (unsigned char)*key) * 16777619u;
    }
    return &purge_generations[h % PURGE_SLOTS];
}

void
agw_flight_purge(const char *key)
{
    if (key != NULL) {
        atomic_fetch_add(slot_of(key), 1);
        return;
    }
    for (int i = 0; i < PURGE_SLOTS; i++) {
        atomic_fetch_add(&purge_generations[i], 1);
    }
}

bool
agw_flight_purged(const struct agw_flight *f)
{
    return f->key != NULL && atomic_load(slot_of(f->key)) != f->generation;
}

/* F's name in the tiers: after a purge, a flight under way for the key
 * has another name, so F starts its own (and ends its own, whichever
 * ends first). */
static void
name_flight(struct agw_flight *f)
{
    f->generation = atomic_load(slot_of(f->key));
    f->name = f->key;
    if (f->generation != 0 && strlen(f->key) <= 64) {
        snprintf(f->name_buf, sizeof(f->name_buf), "%s#%lu", f->key,
                 f->generation);
        f->name = f->name_buf;
    }
}

/* This loop's leader answered a QUEUED call. Nothing of F is touched
 * after CB: the call may be freed by it. */
static void
on_loop(const struct agw_response *resp, void *arg)
{
    struct agw_flight *f = arg;

    agw_metrics_gauge_add(AGW_M_SINGLEFLIGHT_WAITERS, -1);
    f->cb(AGW_FLIGHT_ANSWERED, resp, f->arg);
}

enum agw_flight_outcome
agw_flight_join(struct agw_flight *f, const struct agw_flight_tiers *tiers,
                const char *key, bool lookup, const char *log_id,
                agw_flight_cb cb, void *arg)
{
    *f = (struct agw_flight){
        .tiers = *tiers,
        .key = key,
        .log_id = log_id,
        .cb = cb,
        .arg = arg,
        .lookup = lookup,
    };
    name_flight(f);
    if (!agw_flight_loop_join(tiers->loop, f->name, on_loop, f)) {
        agw_metrics_count_cache(AGW_CACHE_COALESCED);
        agw_metrics_gauge_add(AGW_M_SINGLEFLIGHT_WAITERS, 1);
        return AGW_FLIGHT_QUEUED;
    }
    f->leads_loop = true;
    if (join_process(f) || join_fleet(f)) {
        return AGW_FLIGHT_WAIT;
    }
    return AGW_FLIGHT_LEAD;
}

/* The wait in FLEET's tier ended: it is no longer to be cancelled. */
static void
end_wait(struct agw_flight *f)
{
    f->wait = NULL;
    f->waits_in = NULL;
}

static void
on_process(enum agw_flight_tier_outcome outcome,
           const struct agw_response *resp, void *arg)
{
    struct agw_flight *f = arg;

    end_wait(f);
    rlog_debug(f->log_id, "%s in this process for %.16s...",
               outcome == AGW_TIER_ANSWER ? "answered by another worker"
                                          : "leads the flight",
               f->key);
    if (outcome == AGW_TIER_ANSWER) {
        agw_metrics_count_cache(AGW_CACHE_COALESCED);
        f->cb(AGW_FLIGHT_ANSWERED, resp, f->arg);
        return;
    }
    f->leads_process = true;
    if (!join_fleet(f)) {
        f->cb(AGW_FLIGHT_LEAD, NULL, f->arg);
    }
}

/* Another worker may be calling upstream for the key already. */
static bool
join_process(struct agw_flight *f)
{
    if (f->tiers.process == NULL) {
        return false;
    }
    f->waits_in = f->tiers.process;
    f->wait = agw_flight_tier_join(f->waits_in, f->name, on_process, f);
    return true;
}

/* The fleet's claim looks the store up too (flight_tier.h). */
static bool
fleet_looks(const struct agw_flight *f)
{
    return f->lookup && agw_flight_tier_sees_store(f->tiers.fleet);
}

static void
on_fleet(enum agw_flight_tier_outcome outcome, const struct agw_response *resp,
         void *arg)
{
    struct agw_flight *f = arg;

    end_wait(f);
    switch (outcome) {
    case AGW_TIER_STORED:
        f->cb(AGW_FLIGHT_STORED, resp, f->arg);
        return;
    case AGW_TIER_ANSWER:
        agw_metrics_count_cache(AGW_CACHE_COALESCED);
        f->cb(AGW_FLIGHT_RECEIVED, resp, f->arg);
        return;
    case AGW_TIER_LEAD:
        rlog_debug(f->log_id, "holds the fleet's claim on %.16s...", f->key);
        f->leads_fleet = true;
        f->cb(fleet_looks(f) ? AGW_FLIGHT_LEAD_MISS : AGW_FLIGHT_LEAD, NULL,
              f->arg);
        return;
    default:
        rlog_debug(f->log_id, "fleet single flight unavailable: "
                              "deduplicating on this instance only");
        f->alone = true;
        f->cb(AGW_FLIGHT_LEAD, NULL, f->arg);
        return;
    }
}

/* Another instance may be calling upstream for the key already. */
static bool
join_fleet(struct agw_flight *f)
{
    struct agw_flight_tier *fleet = f->tiers.fleet;

    if (fleet == NULL) {
        return false;
    }
    f->waits_in = fleet;
    f->wait = fleet_looks(f)
                  ? agw_flight_tier_lookup(fleet, f->name, on_fleet, f)
                  : agw_flight_tier_join(fleet, f->name, on_fleet, f);
    return true;
}

bool
agw_flight_may_rejoin(const struct agw_flight *f)
{
    return f->alone && !f->rejoined && f->tiers.fleet != NULL &&
           agw_redis_is_up(f->tiers.redis) &&
           agw_redis_is_up(f->tiers.redis_sub);
}

bool
agw_flight_rejoin(struct agw_flight *f)
{
    if (!agw_flight_may_rejoin(f)) {
        return false;
    }
    f->rejoined = true;
    f->alone = false;
    rlog_debug(f->log_id, "Redis is back: asking the fleet's single "
                          "flight before calling Connectly");
    return join_fleet(f);
}

void
agw_flight_renew(struct agw_flight *f, int ttl_ms)
{
    if (f->leads_fleet) {
        agw_flight_tier_renew(f->tiers.fleet, f->name, ttl_ms);
    }
}

bool
agw_flight_stores(const struct agw_flight *f)
{
    return f->leads_fleet && agw_flight_tier_sees_store(f->tiers.fleet);
}

/* Ends F's part in the flight of FLEET that it leads (*LEADS). */
static void
end_claim(struct agw_flight *f, struct agw_flight_tier *fleet, bool *leads,
          const struct agw_response *resp, bool shutting_down, long store_ttl_s)
{
    if (*leads && shutting_down) {
        agw_flight_tier_abandon(fleet, f->name);
    } else if (*leads && store_ttl_s > 0) {
        agw_flight_tier_release_storing(fleet, f->name, resp, store_ttl_s);
    } else if (*leads) {
        agw_flight_tier_release(fleet, f->name, resp);
    }
    *leads = false;
}

/* Widest tier first: the answer reaches other instances, then other
 * workers, then this loop's waiters. */
static void
end_tiers(struct agw_flight *f, const struct agw_response *resp,
          bool shutting_down, long store_ttl_s)
{
    bool ok = resp->status >= 200 && resp->status < 300;

    if (f->waits_in != NULL) {
        agw_flight_tier_cancel(f->waits_in, f->wait);
        end_wait(f);
    }
    if (f->tiers.fleet != NULL) {
        end_claim(f, f->tiers.fleet, &f->leads_fleet, resp, shutting_down,
                  ok && agw_flight_tier_sees_store(f->tiers.fleet) ? store_ttl_s
                                                                   : 0);
    }
    if (f->tiers.process != NULL) {
        end_claim(f, f->tiers.process, &f->leads_process, resp, shutting_down,
                  0);
    }
    if (f->leads_loop) {
        f->leads_loop = false;
        agw_flight_loop_finish(f->tiers.loop, f->name, resp);
    }
}

void
agw_flight_finish(struct agw_flight *f, const struct agw_response *resp,
                  long store_ttl_s)
{
    end_tiers(f, resp, false, store_ttl_s);
}

void
agw_flight_abandon(struct agw_flight *f, const struct agw_response *resp)
{
    end_tiers(f, resp, true, 0);
}
