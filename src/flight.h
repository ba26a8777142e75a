/*
 * flight.h - one call's place in the single flight of its dedupe key
 * (SPEC §3), across every tier there is, narrowest first: this loop
 * (flight_loop.h), this process's worker threads (flight_process.h), then
 * every instance sharing a Redis (flight_fleet.h). The caller sees one step:
 * join, then one outcome; a leader ends every tier it leads with one
 * finish (or abandon). One event loop's flights are used from its thread
 * only. Counts the coalesced calls (AGW_CACHE_COALESCED) and this loop's
 * queued ones (AGW_M_SINGLEFLIGHT_WAITERS).
 */
#ifndef AGW_FLIGHT_H
#define AGW_FLIGHT_H

#include <stdbool.h>

struct agw_flight_tier;
struct agw_flight_wait;
struct agw_redis;
struct agw_response;
struct agw_flight_loop;

/* The tiers of one event loop (borrowed: they outlive every flight). */
struct agw_flight_tiers {
    struct agw_flight_loop *loop;    /* never NULL */
    struct agw_flight_tier *process; /* NULL: one worker */
    struct agw_flight_tier *fleet;   /* NULL: no Redis */
    /* The fleet's connections: a call that went on alone rejoins when
     * both are up (agw_flight_rejoin). */
    struct agw_redis *redis, *redis_sub;
};

enum agw_flight_outcome {
    /* agw_flight_join() only: */
    AGW_FLIGHT_QUEUED, /* waits for this loop's leader of the key, which
                          answers it (ANSWERED): it leads nothing, and
                          needs no deadline of its own */
    AGW_FLIGHT_WAIT,   /* leads this loop's flight and waits for a wider
                          one: CB runs once, unless agw_flight_finish()
                          or agw_flight_abandon() comes first (the
                          caller's deadline) */
    /* Either, and CB: */
    AGW_FLIGHT_LEAD, /* leads every tier there is (or the fleet's flight
                        is unavailable: then this instance only); the
                        store was not looked up: look, then call
                        upstream, then agw_flight_finish() */
    /* CB only: */
    AGW_FLIGHT_LEAD_MISS, /* LEAD, and the fleet's claim found no stored
                             answer: call upstream */
    AGW_FLIGHT_ANSWERED,  /* a call of this process answered: RESP */
    AGW_FLIGHT_RECEIVED,  /* another instance answered: RESP */
    AGW_FLIGHT_STORED,    /* the fleet's claim found the stored answer
                             (RESP, a 2xx); no claim was taken */
};

/* RESP is set for ANSWERED, RECEIVED and STORED, and valid only during
 * the callback. */
typedef void (*agw_flight_cb)(enum agw_flight_outcome outcome,
                              const struct agw_response *resp, void *arg);

/* A flight's name in the tiers: its key, then "#" and the purge
 * generation of the key's slot when that is not 0 (agw_flight_purge). */
#define AGW_FLIGHT_NAME_MAX (64 + 1 + 20 + 1)

/* Caller-owned (e.g. inside the call); the fields are flight.c's. */
struct agw_flight {
    struct agw_flight_tiers tiers;
    const char *key;  /* borrowed */
    const char *name; /* KEY, or NAME_BUF: what the tiers are given */
    char name_buf[AGW_FLIGHT_NAME_MAX];
    unsigned long generation; /* the key's slot's, at the join */
    const char *log_id;       /* the request id, for debug lines */
    agw_flight_cb cb;
    void *arg;
    struct agw_flight_wait *wait;     /* open in the process or the fleet */
    struct agw_flight_tier *waits_in; /* the tier of WAIT */
    bool lookup;                      /* the fleet's claim looks the store up */
    bool leads_loop, leads_process, leads_fleet;
    bool alone;    /* went on without the fleet's flight (Redis away) */
    bool rejoined; /* asked the fleet's flight again, once */
};

/*
 * Joins KEY's flights into F: this loop's, then (leading it) the
 * process's, then (leading that) the fleet's. LOOKUP: the fleet's claim
 * also looks the store up (false for calls that refresh the stored
 * answer). KEY (at most 64 characters: a dedupe key) and LOG_ID must
 * outlive F.
 * Returns QUEUED or WAIT (CB runs exactly once, never before this
 * returns, with the outcome), or LEAD when there is no wider tier to
 * wait for (CB does not run). A call that leads this loop's flight (WAIT,
 * LEAD) ends it with agw_flight_finish() or agw_flight_abandon(),
 * whatever the outcome; a QUEUED one leads nothing and ends with CB.
 */
enum agw_flight_outcome agw_flight_join(struct agw_flight *f,
                                        const struct agw_flight_tiers *tiers,
                                        const char *key, bool lookup,
                                        const char *log_id, agw_flight_cb cb,
                                        void *arg);

/*
 * An operator's purge of KEY (SPEC §12) in this process, from any
 * thread; KEY NULL: of every key (purges may have been missed). Calls
 * that join KEY's flight from now on start a new one in every tier
 * instead of joining one under way (whose calls still get its answer),
 * and agw_flight_purged() is true for the calls of those under way.
 * Keys share 64 slots: a purge may count for other keys of its slot too
 * (a new flight for them, their answer not kept: never a stale one).
 */
void agw_flight_purge(const char *key);

/*
 * Whether a purge of F's key happened since F joined: then F's answer
 * is the purged one's flight's (it may be older than the purge), and
 * must not be kept or stored anywhere (it still answers F's calls).
 */
bool agw_flight_purged(const struct agw_flight *f);

/*
 * After a LEAD that went on without the fleet's flight (Redis was away):
 * whether Redis is back, so that agw_flight_rejoin() would ask it.
 */
bool agw_flight_may_rejoin(const struct agw_flight *f);

/*
 * Before going upstream, once: when agw_flight_may_rejoin(), asks the
 * fleet's flight again (the answer may be stored by now, or another
 * instance on its way for it) and returns true: CB then runs exactly
 * once more, never before this returns, as after WAIT. Else false.
 */
bool agw_flight_rejoin(struct agw_flight *f);

/*
 * Leader, before each upstream attempt: the fleet's claim, if held, must
 * last TTL_MS from now (agw_flight_tier_renew).
 */
void agw_flight_renew(struct agw_flight *f, int ttl_ms);

/* Whether agw_flight_finish() with a 2xx stores it (the fleet's claim is
 * held and its release writes the store): else the caller stores it. */
bool agw_flight_stores(const struct agw_flight *f);

/*
 * A leader's way out (WAIT or LEAD), at any moment, also at its
 * deadline: cancels a wait still open, and hands RESP (copied) to the
 * waiters of every tier it leads: the fleet's claim is released (storing
 * a 2xx for STORE_TTL_S when agw_flight_stores()), then the process's,
 * then this loop's waiters are answered, before this returns. F is then
 * done: a second finish does nothing.
 */
void agw_flight_finish(struct agw_flight *f, const struct agw_response *resp,
                       long store_ttl_s);

/*
 * agw_flight_finish() for a shutdown: the claims held pass on instead
 * (the fleet's expires for a live instance to take over; the process's
 * goes to its next waiter); this loop's waiters get RESP.
 */
void agw_flight_abandon(struct agw_flight *f, const struct agw_response *resp);

#endif
