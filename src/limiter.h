/*
 * limiter.h - the upstream budget (SPEC §4). One interface, two
 * limiters: an in-process GCRA (limiter_process.c: one loop's, or the
 * process's, one for all its workers) and the fleet-wide GCRA in Redis
 * (limiter_fleet.c), which falls back to an in-process one while Redis
 * is away. A limiter only
 * decides: slots, pauses and the departure guard; the caller waits on its
 * own timer, and each departure the guard let go is reported to left() by
 * the attempt's upstream request (upstream.h, on_sent).
 */
#ifndef AGW_LIMITER_H
#define AGW_LIMITER_H

#include <stdbool.h>
#include <stdint.h>

struct agw_limiter;

/*
 * GRANTED: the call may start after WAIT_US (0: now); its slot is taken,
 * and valid only while the limiter's epoch() is still EPOCH: a slot of a
 * limiter no longer in force is asked for again (SPEC §4). Not GRANTED:
 * the slot is WAIT_US away, past the caller's max wait; nothing was taken.
 */
typedef void (*agw_limiter_cb)(bool granted, int64_t wait_us, uint64_t epoch,
                               void *arg);

/*
 * What one call asks of the limiter (SPEC §11): its class and its
 * caller's cap. With acquire_as(), a refusal whose WAIT_US is within
 * MAX_WAIT_US means "ask again (with RETRY set) after WAIT_US": a batch
 * call behind the backlog, or a call over its caller's cap. One past
 * MAX_WAIT_US means no slot within the call's wait: 429.
 */
struct agw_limiter_ask {
    int64_t max_wait_us;
    /* -1: interactive. Else batch: books only while the schedule's
     * backlog, its own slot included, stays at most this. */
    int64_t batch_backlog_us;
    bool retry;         /* asking again after such a refusal */
    const char *caller; /* the cap's name (clients file); NULL: no cap */
    double max_rate;    /* the caller's cap, calls/s fleet-wide; 0: none */
    /* Out, set before CB runs: the caller's cap schedule as the limiter
     * saw it (the time, agw_now_us(), its next call may start), for the
     * RateLimit-* headers; 0: no cap, or not known. */
    int64_t cap_tat_us;
};

struct agw_limiter_state {
    int limit;     /* RateLimit-Limit */
    int remaining; /* RateLimit-Remaining */
    int reset_s;   /* RateLimit-Reset */
};

struct agw_limiter_ops {
    const char *name;
    /* Asks for one upstream slot. CB runs exactly once, possibly before
     * acquire() returns. */
    void (*acquire)(struct agw_limiter *rl, int64_t max_wait_us,
                    agw_limiter_cb cb, void *arg);
    /* acquire() for a call of a class and a caller (struct
     * agw_limiter_ask, which must stay valid until CB runs). NULL: the
     * limiter knows no classes (acquire() with ASK's max wait). */
    void (*acquire_as)(struct agw_limiter *rl, struct agw_limiter_ask *ask,
                       agw_limiter_cb cb, void *arg);
    /* An upstream 429: grant nothing for PAUSE_US from now. */
    void (*pause)(struct agw_limiter *rl, int64_t pause_us);
    /* Monotonic time (agw_now_us) before which nothing is granted; 0. */
    int64_t (*paused_until)(struct agw_limiter *rl);
    /*
     * The departure guard, for a call whose slot has come: 0 when it may
     * leave now (it is then in transit until left()), else how long to
     * hold it first. A grant is not a departure: a connect can make a
     * call leave late and bunch up with the ones after it, so the limiter
     * also counts real departures and holds a call that would make any
     * second hold more than rate + burst of them. NULL: no guard.
     */
    int64_t (*leave)(struct agw_limiter *rl);
    /* The call leave() let go departed at SENT_US, or never (0). */
    void (*left)(struct agw_limiter *rl, int64_t sent_us);
    /* Headers for a caller that waits at most MAX_WAIT_US. */
    void (*state)(struct agw_limiter *rl, int64_t max_wait_us,
                  struct agw_limiter_state *out);
    /* A reload changed the rate or burst: granted slots stay granted
     * (the departure guard applies a lower rate to them at once). */
    void (*reconfigure)(struct agw_limiter *rl, double rate, int burst);
    /* How far ahead slots are booked now (the next grant's time - now,
     * 0 when free), for the operators' status; NULL: not known. */
    int64_t (*backlog_us)(struct agw_limiter *rl);
    /* Which limiter is in force now (see agw_limiter_cb); NULL: always 0. */
    uint64_t (*epoch)(struct agw_limiter *rl);
    void (*destroy)(struct agw_limiter *rl);
};

struct agw_limiter {
    const struct agw_limiter_ops *ops;
};

/* In-process GCRA at RATE calls/s with BURST extra; acquire() decides
 * before it returns. For one thread only. */
struct agw_limiter *agw_limiter_loop_new(double rate, int burst);

/*
 * The same, for the worker threads of one process to share, so that the
 * process as a whole keeps the rate: it owns its mutex, held inside each
 * call and released before acquire()'s callback runs. Both kinds are
 * reference counted, starting at one: destroy() drops a reference, the
 * last one frees the limiter. NULL when memory runs out.
 */
struct agw_limiter *agw_limiter_process_new(double rate, int burst);

/* Another reference to RL (an in-process limiter). Returns RL. */
struct agw_limiter *agw_limiter_process_ref(struct agw_limiter *rl);

struct event_base;
struct agw_redis;
struct agw_config;

/*
 * The fleet-wide limiter (limiter_fleet.c): one GCRA in Redis shared by
 * every instance with the same key_prefix, a fleet-wide pause, and an
 * in-process limiter at the fallback rate while Redis is unreachable. Reads
 * rate, burst, key_prefix, fallback_rate and expected_instances from CFG (not
 * kept). BASE and REDIS are borrowed; destroy() it before freeing REDIS.
 * GUARD (the departure guard at rate) and FALLBACK are in-process
 * limiters for the instance as a whole, one for all its workers
 * (agw_limiter_process_new); the limiter owns the references given and
 * reconfigures them. NULL: one of its own.
 */
struct agw_limiter *agw_limiter_fleet_new(struct event_base *base,
                                          struct agw_redis *redis,
                                          const struct agw_config *cfg,
                                          struct agw_limiter *guard,
                                          struct agw_limiter *fallback);

/* SIGHUP: applies fallback_rate and expected_instances from CFG (rate and
 * burst go through reconfigure()). Does nothing for other limiters. */
void agw_limiter_fleet_reload(struct agw_limiter *rl,
                              const struct agw_config *cfg);

/*
 * Fleet limiters only (others: nothing): CB(ARG) runs on RL's loop soon
 * after the process's limiter in force changed (Redis left or came back;
 * epoch() moved on), so that calls waiting on a slot of the other one can
 * ask again at once rather than at their slot's time.
 */
void agw_limiter_fleet_on_change(struct agw_limiter *rl, void (*cb)(void *arg),
                                 void *arg);

/* What the operators' status shows of RL (SPEC §12). */
struct agw_limiter_info {
    const char *mode; /* "shared" (fleet GCRA in Redis), "degraded" (the
                         local fallback), or "local" (backend = memory) */
    double rate;      /* the rate in force: the fleet's, or the fallback's;
                         0 for a local limiter (the config's rate applies) */
    long live_seen;   /* instances in the last heartbeat answer; 0: none */
};
void agw_limiter_info(struct agw_limiter *rl, struct agw_limiter_info *out);

/* The process's instance id in the fleet's heartbeats (32 hex + NUL). */
void agw_limiter_fleet_instance_id(char out[33]);

struct redisReply;

/*
 * The fleet's live instances (SPEC §12), read from the heartbeats with one
 * script call on RL's connection: CB(REPLY, ARG) gets an array of id,
 * info, id, info, ... (info: the JSON each heartbeat writes, see
 * agw_limiter_fleet_set_payload), or NULL when Redis failed (ERROR says
 * why). Not a fleet limiter: CB(NULL, "no fleet") at once.
 */
void agw_limiter_fleet_read_instances(struct agw_limiter *rl,
                                      void (*cb)(struct redisReply *reply,
                                                 const char *error, void *arg),
                                      void *arg);

/*
 * What each heartbeat writes next to this instance's id (host, version,
 * calls per caller: admin_stats.h): PAYLOAD() returns a malloc'd string
 * (NULL: "{}"), called on any worker's thread. Set once before workers
 * start; NULL (the default) writes "{}".
 */
void agw_limiter_fleet_set_payload(char *(*payload)(void));

#endif
