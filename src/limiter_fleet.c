/*
 * limiter_fleet.c - the fleet-wide limiter (SPEC §4): one GCRA evaluated
 * atomically in Redis on Redis's clock, a fleet-wide pause key for upstream
 * 429s, heartbeats, and a local limiter at the fallback rate while Redis is
 * unreachable.
 *
 * Keys (PREFIX is key_prefix):
 *   PREFIX "rl"        the fleet's theoretical arrival time (TAT), in
 *                      microseconds on Redis's clock (TIME); expires once
 *                      it is in the past, which means the same as absent.
 *   PREFIX "rl:pause"  exists while the fleet is paused; its PTTL is the
 *                      time left. Only ever lengthened.
 *   PREFIX "rl:batchq" when the next refused batch call is to ask again
 *                      (SPEC §11; us on Redis's clock, expires once past).
 *   PREFIX "rl:cap:" NAME, PREFIX "rl:capq:" NAME  caller NAME's cap
 *                      (max_rate): its TAT, and when its next refused call
 *                      is to ask again. Two prefixes: a name may hold ":".
 *   PREFIX "hb"        sorted set: instance id -> expiry of its heartbeat
 *                      (ms on Redis's clock), renewed every second. A
 *                      sorted set rather than one key per instance: a
 *                      count is then one ZCARD after trimming, where a
 *                      SCAN would walk the whole cache keyspace.
 *   PREFIX "hb:fallback"  the same, for the instances whose heartbeat
 *                      says they are still on their local fallback: a
 *                      rejoining instance counts them as away.
 *   PREFIX "hb:info"   hash: instance id -> what its heartbeat says of it
 *                      for the operators (JSON: host, version, upstream
 *                      calls per caller in the last minute; SPEC §12),
 *                      written by the same script; a field leaves with
 *                      its instance's heartbeat, the hash with the last.
 *
 * The scripts are called with EVALSHA (agw_redis_script_call: on NOSCRIPT
 * the call is sent once more as EVAL). Redis >= 5 is needed: the scripts write
 * after calling TIME, which needs effects replication (the default since 5.0).
 *
 * Replies are trusted only within the ranges the scripts' arithmetic can
 * produce (SPEC §8), since a key planted or corrupted in Redis would
 * otherwise stall or overflow the limiter; see gcra_reply_ok() and
 * pause_ok(). A GCRA reply out of range counts as Redis failing (the call
 * goes on the local fallback); other replies out of range are ignored.
 *
 * Transitions (SPEC §4): the limiter in force is one per process (the
 * fleet one, or the process's fallback as soon as one worker cannot reach
 * Redis), and each change of it starts an epoch: a slot granted in one
 * epoch is void in the next, so calls waiting across the change ask the
 * limiter then in force again instead of leaving together. Instances
 * return from an outage one by one: until every instance the fallback
 * counted heartbeats again (or REJOIN_US passed), the returned ones space
 * their fleet grants at the rate minus the fallback shares of those still
 * away, so the fleet keeps to the rate while it moves between modes. A
 * worker goes back to the fleet limiter only once it has counted them.
 */
#include "limiter.h"

#include <stdatomic.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "config.h"
#include "gcra.h"
#include "log.h"
#include "redis.h"
#include "util.h"

/* As in limiter_process.c: grants are spaced so that any rate + burst + 1
 * of them span 1 s + this, which absorbs arrival jitter. */
#define ARRIVAL_JITTER_MARGIN_US 10000
#define HEARTBEAT_TTL_MS 3000
#define HEARTBEAT_EVERY_MS 1000
#define HEARTBEAT_FIRST_MS 100
/* On the fallback or rejoining, the heartbeat (with the probe, or the
 * count of instances back) goes this often: an outage ends as soon as
 * Redis answers, and the fleet's rejoin as soon as everyone is back. */
#define HEARTBEAT_TRANSITION_MS 200
/* While this instance has granted calls waiting for their slot, it reads
 * the pause key this often, so a pause set by another instance stops them
 * too (a script reply carries the pause as well and counts as a read). */
#define PAUSE_POLL_US 20000
#define US_PER_MS 1000
#define MAX_ARGS 6
#define MAX_KEYS 5
/* More live instances than any fleet has: a larger count is planted. */
#define MAX_INSTANCES 10000
/* A script answering out of range is said at warn at most this often
 * (a planted key answers the same on every call), else at debug. */
#define BAD_REPLY_WARN_EVERY_US (60 * 1000000LL)
/* Longest an instance back from an outage waits for the others before it
 * takes the whole fleet rate: their reconnect backoff (2 s at most) and
 * first heartbeat (1 s), with room to spare. An instance not back by then
 * is taken for gone. */
#define REJOIN_US 5000000
/* A heartbeat renewed this recently means the instance reaches Redis
 * (each renews every HEARTBEAT_EVERY_MS). */
#define FRESH_HEARTBEAT_MS 1500
/* Back from an outage, a worker announces itself (a heartbeat) and waits
 * this long before it counts the instances back: instances that lost
 * Redis together get it back within moments of each other. */
#define REJOIN_SETTLE_US 100000
/* On the fallback with calls coming, Redis is probed at most this often
 * (besides the heartbeat's probe). */
#define PROBE_EVERY_US 50000

/*
 * KEYS: TAT, pause, the caller's cap TAT, the batch wake queue, the
 * caller's cap wake queue. ARGV: emission interval T (us), tolerance tau
 * (us), max wait (us), batch backlog bound (us; -1: interactive), the
 * cap's interval (us; 0: no cap), "1" when the call asks again after a
 * refusal. The arithmetic of gcra.c (agw_gcra_reserve_as): a pause
 * raises the TAT so that no grant starts before it ends; a batch call
 * books only while TAT - now stays within its bound with its own slot
 * added (or the schedule is idle), a capped call only
 * when its cap's TAT is at most its slot; a refused one learns when to
 * ask again (its turn in a wake queue) and takes nothing else. Returns
 * {granted 0/1, wait (us), TAT after the call - now (us), pause left
 * (ms, 0: none), the cap's TAT after the call - now (us, 0: no cap)}.
 * Numbers written back are formatted with %.0f: Lua would print a
 * microsecond timestamp with 14 significant digits.
 */
static const char gcra_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local interval = tonumber(ARGV[1])\n"
    "local tau = tonumber(ARGV[2])\n"
    "local max_wait = tonumber(ARGV[3])\n"
    "local bound = tonumber(ARGV[4])\n"
    "local cap = tonumber(ARGV[5])\n"
    "local retry = ARGV[6] == '1'\n"
    "local function num(key)\n"
    "  return tonumber(redis.call('GET', key) or '0') or 0\n"
    "end\n"
    "local function put(key, v)\n"
    "  redis.call('SET', key, string.format('%.0f', v), 'PX',\n"
    "    string.format('%.0f', math.ceil((v - now) / 1000) + 1000))\n"
    "end\n"
    "local tat = num(KEYS[1])\n"
    "local pause = redis.call('PTTL', KEYS[2])\n"
    "if pause > 0 then\n"
    "  tat = math.max(tat, now + pause * 1000 + tau)\n"
    "else\n"
    "  pause = 0\n"
    "end\n"
    "tat = math.max(tat, now)\n"
    "local wait = math.max(0, tat - tau - now)\n"
    "local ctat = now\n"
    "if cap > 0 then\n"
    "  ctat = math.max(num(KEYS[3]), now)\n"
    "end\n"
    "local function refuse(w)\n"
    "  return {0, w, tat - now, pause, ctat - now}\n"
    "end\n"
    "local function turn(q, ready, spacing)\n"
    "  if retry and ready - now <= spacing / 4 then\n"
    "    return ready - now\n"
    "  end\n"
    "  local at = math.max(num(q), ready)\n"
    "  if at - now <= max_wait then\n"
    "    put(q, at + spacing)\n"
    "  end\n"
    "  return at - now\n"
    "end\n"
    "if wait > max_wait then\n"
    "  return refuse(wait)\n"
    "end\n"
    "local room = math.max(bound - interval, 0)\n"
    "if bound >= 0 and (tat - now > room or\n"
    "    (not retry and num(KEYS[4]) > now)) then\n"
    "  return refuse(turn(KEYS[4], math.max(tat - room, now), interval))\n"
    "end\n"
    "if cap > 0 and (ctat > now + wait or\n"
    "    (not retry and num(KEYS[5]) > now)) then\n"
    "  return refuse(turn(KEYS[5], math.max(ctat - wait, now), cap))\n"
    "end\n"
    "if cap > 0 then\n"
    "  ctat = math.max(ctat, now + wait) + cap\n"
    "  put(KEYS[3], ctat)\n"
    "end\n"
    "tat = tat + interval\n"
    "put(KEYS[1], tat)\n"
    "return {1, wait, tat - now, pause, ctat - now}\n";

/* KEYS: pause. ARGV: pause (ms, >= 1). Keeps the longer of an existing
 * pause and this one; returns the pause left (ms). */
static const char pause_lua[] =
    "local ms = tonumber(ARGV[1])\n"
    "local cur = redis.call('PTTL', KEYS[1])\n"
    "if cur >= ms then\n"
    "  return cur\n"
    "end\n"
    "redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])\n"
    "return ms\n";

/* KEYS: heartbeat set, fallback set, info hash. ARGV: instance id, TTL
 * (ms), "1" when the instance is on its fallback, its info. Renews this
 * instance (in the fallback set too, or out of it) and its info, drops
 * the expired ones (and their info), returns how many are live (this one
 * included). */
static const char heartbeat_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local expiry = string.format('%.0f', now + tonumber(ARGV[2]))\n"
    "local past = string.format('%.0f', now)\n"
    "local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', past)\n"
    "for _, id in ipairs(gone) do redis.call('HDEL', KEYS[3], id) end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', past)\n"
    "redis.call('ZADD', KEYS[1], expiry, ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])\n"
    "redis.call('PEXPIRE', KEYS[3], ARGV[2])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', past)\n"
    "if ARGV[3] == '1' then\n"
    "  redis.call('ZADD', KEYS[2], expiry, ARGV[1])\n"
    "  redis.call('PEXPIRE', KEYS[2], ARGV[2])\n"
    "else\n"
    "  redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "end\n"
    "return redis.call('ZCARD', KEYS[1])\n";

/* KEYS: heartbeat set, fallback set. ARGV: heartbeat TTL (ms), window
 * (ms), the counting instance's id. How many instances are back on the
 * fleet limit: those that renewed their heartbeat within the window
 * (reaching Redis now: ZCARD also counts, for a TTL, those that just
 * lost it), less those whose heartbeat said they are still on their
 * fallback; the counting instance, about to go back, counts as back. */
static const char fresh_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local min = now + tonumber(ARGV[1]) - tonumber(ARGV[2])\n"
    "local from = string.format('%.0f', min)\n"
    "local back = redis.call('ZCOUNT', KEYS[1], from, '+inf')\n"
    "local away = redis.call('ZCOUNT', KEYS[2], from, '+inf')\n"
    "local own = redis.call('ZSCORE', KEYS[2], ARGV[3])\n"
    "if own and tonumber(own) >= min then\n"
    "  away = away - 1\n"
    "end\n"
    "return back - away\n";

/* KEYS: heartbeat set, info hash. The live instances (expiry still
 * ahead on Redis's clock), oldest heartbeat first: {id, info, ...}; an
 * info missing (written by an older version) is "{}". */
static const char instances_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1],\n"
    "  '(' .. string.format('%.0f', now), '+inf')\n"
    "local out = {}\n"
    "for _, id in ipairs(ids) do\n"
    "  out[#out + 1] = id\n"
    "  out[#out + 1] = redis.call('HGET', KEYS[2], id) or '{}'\n"
    "end\n"
    "return out\n";

static struct agw_redis_script instances_script;
static pthread_once_t instances_once = PTHREAD_ONCE_INIT;
/* What heartbeats write as this instance's info (see limiter.h). */
static char *(*heartbeat_payload)(void);

struct script {
    const char *name; /* for logs */
    struct agw_redis_script rs;
    int64_t bad_warned_us; /* the last warn of a reply out of range */
};

struct op;

struct limiter_fleet {
    struct agw_limiter base; /* first: the ops receive &base */
    struct agw_redis *redis; /* borrowed */
    /* 1 for the owner + 1 per command out: a reply after destroy() still
     * finds the struct (marked dead) and is dropped. */
    int refs;
    bool dead;
    char *key_tat, *key_pause, *key_hb, *key_hb_fallback, *key_hb_info;
    char *key_batchq;
    const char *prefix; /* key_prefix, for the caps' keys (in key_tat) */
    size_t prefix_len;
    char id[33]; /* the process's instance id for the heartbeat */
    struct script gcra, pause, heartbeat, fresh;
    double rate;
    int burst;
    double cfg_fallback_rate; /* 0: rate / live instances */
    int expected_instances;
    /* Bounds of what a script may answer: how far any call books (the
     * longer of max_wait_ms and batch_max_backlog_ms), max_pause_ms, and
     * how far any call's turn to ask again may be (the longer of
     * max_wait_ms and batch_max_wait_ms). */
    int64_t max_wait_us;
    int64_t max_turn_us;
    int64_t max_pause_us;
    long live_seen; /* instances in the last heartbeat answer; 0: none */
    double fb_rate; /* the fallback limiter's current settings */
    int fb_burst;
    /* The fleet state as last seen, on agw_now_us() time: for the
     * RateLimit-* headers and the script's interval and tolerance. */
    struct agw_gcra shadow;
    int64_t paused_until_us; /* local estimate of the fleet pause */
    int64_t pause_seen_us;   /* when the pause key was last read */
    int64_t queued_until_us; /* the last granted slot this instance waits on */
    bool poll_out;           /* a PTTL is out */
    bool on_fleet;           /* false: on the local fallback */
    /* Departure guards: GUARD at the full rate while on the fleet limiter (it
     * holds a call only when this instance alone would break the limit), the
     * fallback limiter's own while on the fallback. */
    struct agw_limiter *guard;
    struct agw_limiter *fallback;
    struct event *heartbeat_timer;
    struct event *poll_timer;
    /* The process's mode (mode_epoch) as this loop last took note of it,
     * and as last told to ON_CHANGE. MODE_EVENT is made active by the
     * worker that changes the mode. */
    uint64_t epoch_seen, epoch_told;
    struct event *mode_event;
    void (*on_change)(void *arg);
    void *on_change_arg;
    struct limiter_fleet *next_in_process; /* under mode_lock */
    /* Back from an outage (rejoining() until REJOIN_US or everyone is):
     * the instances the fallback counted, and those heartbeating again
     * (counted before this worker goes back, then on each heartbeat). */
    long outage_n;
    long rejoin_k;
    int64_t rejoin_until_us;   /* 0: not rejoining */
    int64_t answered_since_us; /* on the fallback, Redis answers; 0: not */
    int64_t probe_sent_us;
    bool count_out;
};

/* One script call, kept until its reply. */
struct op {
    struct limiter_fleet *f;
    struct script *script;
    void (*done)(struct op *op, const redisReply *reply, const char *error);
    agw_limiter_cb cb; /* acquire only */
    void *arg;
    int64_t max_wait_us;
    int64_t batch_backlog_us;    /* -1: interactive */
    int64_t cap_interval_us;     /* 0: no cap */
    struct agw_limiter_ask *ask; /* the caller's, for cap_tat_us; NULL */
    struct agw_limiter_ask own;  /* ASK, or what acquire() asked */
    int64_t sent_us;
    int nkeys, nargs;
    const char *keys[MAX_KEYS]; /* f's strings, or CAP_KEYS */
    char *cap_keys[2];          /* malloc'd; NULL: none */
    char args[MAX_ARGS][40];    /* numbers, or the 32-character id */
    char *last_arg;             /* malloc'd, sent after ARGS; NULL: none */
};

static const struct agw_limiter_ops fleet_ops;

/* ------------------------------------------------------------ helpers */

static struct limiter_fleet *
fleet_of(struct agw_limiter *rl)
{
    return (struct limiter_fleet *)rl;
}

static char *
join2(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *out = malloc(la + lb + 1);

    if (out != NULL) {
        memcpy(out, a, la);
        memcpy(out + la, b, lb + 1);
    }
    return out;
}

static bool
script_init(struct script *s, const char *name, const char *text)
{
    s->name = name;
    return agw_redis_script_init(&s->rs, text);
}

static void
fleet_unref(struct limiter_fleet *f)
{
    if (--f->refs > 0) {
        return;
    }
    free(f->key_tat);
    free(f->key_pause);
    free(f->key_hb);
    free(f->key_hb_fallback);
    free(f->key_hb_info);
    free(f->key_batchq);
    free(f);
}

/* Why a reply is not what the script returns, for a log line. */
static const char *
failure_text(const redisReply *reply, const char *error)
{
    if (reply == NULL) {
        return error != NULL ? error : "no reply";
    }
    if (reply->type == REDIS_REPLY_ERROR && reply->str != NULL) {
        return reply->str;
    }
    return "unexpected reply";
}

/* ------------------------------------------------------ local fallback */

static char process_id[33];

/*
 * The process's mode. Every worker's limiter follows it: a process on
 * both limiters at once would spend its fallback share on top of fleet
 * grants. Even epochs are the fleet limiter's, odd ones the fallback; the epoch
 * moves on (under MODE_LOCK) when the first worker goes to the fallback and
 * when the last one leaves it.
 */
static pthread_mutex_t mode_lock = PTHREAD_MUTEX_INITIALIZER;
static int workers_on_fallback;                /* under mode_lock */
static struct limiter_fleet *process_limiters; /* under mode_lock */
static atomic_uint_fast64_t mode_epoch;
/* After a reload lowered the rate, the departure guard holds the process
 * to its share of the new rate until then (hold_to_share()); 0: not. */
static _Atomic int64_t share_until_us;

static uint64_t
current_epoch(void)
{
    return atomic_load(&mode_epoch);
}

static bool
epoch_is_fleet(uint64_t epoch)
{
    return (epoch & 1) == 0;
}

static void
draw_process_id(void)
{
    agw_request_id_new(process_id);
}

/* One id per process: its workers heartbeat as one instance. */
static void
instance_id(char out[33])
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, draw_process_id);
    memcpy(out, process_id, sizeof(process_id));
}

/* RATE / instances, where instances are the live ones last seen in Redis,
 * else expected_instances; or fallback_rate when set. The fleet's burst
 * is split the same way. An instance's workers share one fallback (and
 * one heartbeat stands for them all). */
static void
fallback_settings(const struct limiter_fleet *f, double *rate, int *burst,
                  long *instances)
{
    long n = f->live_seen > 0 ? f->live_seen : f->expected_instances;

    /* In an outage, or back from one, heartbeats count only those back so
     * far: the fleet is as large as before it. */
    if (f->outage_n > n &&
        (f->rejoin_until_us != 0 || !epoch_is_fleet(f->epoch_seen))) {
        n = f->outage_n;
    }
    if (n < 1) {
        n = 1;
    }
    *instances = n;
    *burst = (int)(f->burst / n);
    *rate = f->cfg_fallback_rate > 0 ? f->cfg_fallback_rate : f->rate / n;
}

static void
update_fallback(struct limiter_fleet *f)
{
    double rate;
    int burst;
    long n;

    fallback_settings(f, &rate, &burst, &n);
    if (rate == f->fb_rate && burst == f->fb_burst) {
        return;
    }
    f->fb_rate = rate;
    f->fb_burst = burst;
    f->fallback->ops->reconfigure(f->fallback, rate, burst);
    log_debug("ratelimit: fallback rate now %.6g/s, burst %d (%ld "
              "instance%s)",
              rate, burst, n, n == 1 ? "" : "s");
}

/* Counts this worker in or out of those on the fallback: true when that
 * changed the process's mode (every worker's limiter is then told). */
static bool
count_worker(bool on_fallback)
{
    bool changed;

    pthread_mutex_lock(&mode_lock);
    workers_on_fallback += on_fallback ? 1 : -1;
    changed = workers_on_fallback == (on_fallback ? 1 : 0);
    if (changed) {
        atomic_fetch_add(&mode_epoch, 1);
        for (struct limiter_fleet *l = process_limiters; l != NULL;
             l = l->next_in_process) {
            event_active(l->mode_event, EV_TIMEOUT, 0);
        }
    }
    pthread_mutex_unlock(&mode_lock);
    return changed;
}

/* Switches this worker between the fleet limiter and the local fallback;
 * logs each change of the process's mode once. */
static void
set_fleet(struct limiter_fleet *f, bool on_fleet, const char *why)
{
    double rate;
    int burst;
    long n;

    if (f->on_fleet == on_fleet) {
        return;
    }
    f->on_fleet = on_fleet;
    if (!count_worker(!on_fleet)) {
        return;
    }
    if (on_fleet) {
        log_info("ratelimit: Redis answers again: the fleet limit of "
                 "%.6g/s applies",
                 f->rate);
        return;
    }
    fallback_settings(f, &rate, &burst, &n);
    if (f->cfg_fallback_rate > 0) {
        log_warn("ratelimit: %s: limiting this instance locally at "
                 "fallback_rate %.6g/s",
                 why, rate);
    } else {
        log_warn("ratelimit: %s: limiting this instance locally at %.6g/s "
                 "(rate %.6g / %ld instance%s, %s)",
                 why, rate, f->rate, n, n == 1 ? "" : "s",
                 f->live_seen > 0 ? "as last seen in Redis"
                                  : "expected_instances");
    }
}

/* -------------------------------------------------------- transitions */

/* After an outage: true while the instances the fallback counted are not
 * all back (and REJOIN_US has not passed); ends the rejoin otherwise. */
static bool
rejoining(struct limiter_fleet *f)
{
    if (f->rejoin_until_us == 0) {
        return false;
    }
    if (agw_now_us() < f->rejoin_until_us && f->rejoin_k < f->outage_n) {
        return true;
    }
    log_debug("ratelimit: %ld of %ld instances back on the fleet limit: "
              "this one takes the whole fleet rate again",
              f->rejoin_k, f->outage_n);
    f->rejoin_until_us = 0;
    update_fallback(f); /* the heartbeats count the fleet again */
    return false;
}

/*
 * The rate this instance spaces its fleet grants at. While rejoining, the
 * N - K instances still on their fallback may each send its fallback
 * share, so the K instances back share what is left of the rate (at least
 * one fallback share: what this instance sent while away).
 */
static double
fleet_rate(struct limiter_fleet *f, int *burst)
{
    long n = f->outage_n, k = f->rejoin_k;
    double rate;

    *burst = f->burst;
    if (!rejoining(f)) {
        return f->rate;
    }
    rate = f->rate - (double)(n - k) * f->fb_rate;
    if (rate < f->fb_rate) {
        rate = f->fb_rate;
    }
    *burst = (int)(f->burst * k / n);
    return rate;
}

/* This loop takes note of the process's mode: going to the fallback
 * remembers how many instances it counted; coming back starts a rejoin. */
static void
observe_mode(struct limiter_fleet *f)
{
    uint64_t epoch = current_epoch();
    double rate;
    int burst;
    long n;

    if (epoch == f->epoch_seen) {
        return;
    }
    f->epoch_seen = epoch;
    if (!epoch_is_fleet(epoch)) {
        fallback_settings(f, &rate, &burst, &n);
        f->outage_n = n;
        f->rejoin_k = 1; /* this one, until counted again */
        f->rejoin_until_us = 0;
        f->answered_since_us = 0;
        return;
    }
    f->rejoin_until_us = f->outage_n > 1 ? agw_now_us() + REJOIN_US : 0;
}

/* Made active by the worker that changed the process's mode. */
static void
on_mode_event(evutil_socket_t fd, short what, void *arg)
{
    struct limiter_fleet *f = arg;

    observe_mode(f);
    if (f->epoch_told != f->epoch_seen && f->on_change != NULL) {
        f->epoch_told = f->epoch_seen;
        f->on_change(f->on_change_arg);
    }
}

static void
join_process(struct limiter_fleet *f)
{
    pthread_mutex_lock(&mode_lock);
    f->next_in_process = process_limiters;
    process_limiters = f;
    f->epoch_seen = f->epoch_told = current_epoch();
    pthread_mutex_unlock(&mode_lock);
}

static void
leave_process(struct limiter_fleet *f)
{
    pthread_mutex_lock(&mode_lock);
    for (struct limiter_fleet **p = &process_limiters; *p != NULL;
         p = &(*p)->next_in_process) {
        if (*p == f) {
            *p = f->next_in_process;
            break;
        }
    }
    pthread_mutex_unlock(&mode_lock);
}

/* ------------------------------------------------------ script calls */

static void on_op_reply(struct redisReply *reply, const char *error, void *arg);

static struct op *
op_new(struct limiter_fleet *f, struct script *script,
       void (*done)(struct op *, const redisReply *, const char *))
{
    struct op *op = calloc(1, sizeof(*op));

    if (op == NULL) {
        /* The caller's callback must run exactly once: no way out. */
        log_error("ratelimit: out of memory");
        abort();
    }
    op->f = f;
    op->script = script;
    op->done = done;
    f->refs++;
    return op;
}

static void
op_free(struct op *op)
{
    struct limiter_fleet *f = op->f;

    free(op->last_arg);
    free(op->cap_keys[0]);
    free(op->cap_keys[1]);
    free(op);
    fleet_unref(f);
}

static void
op_send(struct op *op)
{
    const char *argv[MAX_KEYS + MAX_ARGS + 1];
    size_t argvlen[MAX_KEYS + MAX_ARGS + 1];
    int argc = 0;

    for (int i = 0; i < op->nkeys; i++) {
        argv[argc++] = op->keys[i];
    }
    for (int i = 0; i < op->nargs; i++) {
        argv[argc++] = op->args[i];
    }
    if (op->last_arg != NULL) {
        argv[argc++] = op->last_arg;
    }
    for (int i = 0; i < argc; i++) {
        argvlen[i] = strlen(argv[i]);
    }
    op->sent_us = agw_now_us();
    agw_redis_script_call(op->f->redis, &op->script->rs, on_op_reply, op,
                          op->nkeys, argc, argv, argvlen);
}

static void
on_op_reply(struct redisReply *reply, const char *error, void *arg)
{
    struct op *op = arg;

    if (!op->f->dead) {
        op->done(op, reply, error);
    }
    op_free(op);
}

/* ------------------------------------------------- what replies teach */

static void
learn_pause(struct limiter_fleet *f, int64_t now, long long pause_ms)
{
    f->pause_seen_us = now;
    if (pause_ms > 0 && now + pause_ms * US_PER_MS > f->paused_until_us) {
        f->paused_until_us = now + pause_ms * US_PER_MS;
    }
}

/* A reply of script S out of range: at warn now and then, never its
 * values (they may be huge). */
static void
bad_reply(struct script *s, const char *why)
{
    int64_t now = agw_now_us();

    if (s->bad_warned_us != 0 &&
        now - s->bad_warned_us < BAD_REPLY_WARN_EVERY_US) {
        log_debug("ratelimit: the %s script answered %s", s->name, why);
        return;
    }
    s->bad_warned_us = now;
    log_warn("ratelimit: the %s script answered %s: Redis's state is not "
             "trusted (a key corrupted or planted?)",
             s->name, why);
}

/* A pause (ms) no instance sets: negative, or past max_pause_ms. Compared
 * in ms: a planted PTTL times 1000 would overflow. */
static bool
pause_ok(const struct limiter_fleet *f, long long pause_ms)
{
    return pause_ms >= 0 && pause_ms <= f->max_pause_us / US_PER_MS;
}

struct gcra_reply {
    bool granted;
    long long wait_us, backlog_us, pause_ms, cap_backlog_us;
};

/* The widest spacing any instance's grants may have: while instances
 * rejoin after an outage they space theirs as far as one fallback share
 * of the rate (fleet_rate()), and the fleet was as large as outage_n. */
static int64_t
widest_interval_us(const struct limiter_fleet *f)
{
    struct agw_gcra g;
    double rate;
    int burst;
    long n;

    fallback_settings(f, &rate, &burst, &n);
    if (f->outage_n > n) {
        n = f->outage_n;
    }
    if (f->rate / n < rate) {
        rate = f->rate / n;
    }
    agw_gcra_init_margin(&g, rate, 0, ARRIVAL_JITTER_MARGIN_US);
    return g.interval_us > f->shadow.interval_us ? g.interval_us
                                                 : f->shadow.interval_us;
}

/* Why the wait of reply R is out of range for OP; NULL: in range. */
static const char *
wait_wrong(const struct op *op, const struct gcra_reply *r, int64_t turn_max)
{
    bool classed = op->batch_backlog_us >= 0 || op->cap_interval_us > 0;

    if (r->granted) {
        return r->wait_us < 0 || r->wait_us > r->backlog_us ||
                       r->wait_us > op->max_wait_us
                   ? "a grant past max_wait_ms"
                   : NULL;
    }
    /* Refused: the slot past the max wait (never past the TAT), or, for
     * a batch or capped call, a turn to ask again: after now, no later
     * than the furthest turn any instance takes. */
    if (r->wait_us > op->max_wait_us && r->wait_us <= r->backlog_us) {
        return NULL;
    }
    return classed && r->wait_us > 0 && r->wait_us <= turn_max
               ? NULL
               : "a wait out of range";
}

/*
 * The GCRA script's reply {granted, wait, backlog, pause, cap backlog},
 * within what its arithmetic can produce for OP (max wait -1: a probe,
 * which is always refused):
 *   granted  0 or 1
 *   wait     granted: 0 to the max wait, never above backlog (wait =
 *            TAT - tau - now); refused: above the max wait and at most
 *            backlog, or (batch, capped) a turn after now, at most the
 *            backlog's bound + the longest wait + the widest spacing or
 *            the cap's interval
 *   backlog  TAT - now: 0 to max_wait_ms + max_pause_ms + tau + the
 *            widest spacing (no grant is made further out; a pause lifts
 *            TAT to its end + tau)
 *   pause    0 to max_pause_ms (no instance pauses longer)
 *   cap      the cap's TAT - now: 0 without a cap; else 0 to max_wait_ms
 *            + max_pause_ms + tau + the widest spacing + its interval
 * (max_wait_ms here is the longer of max_wait_ms and batch_max_backlog_ms:
 * a batch call books no further than its bound; the longest wait is the
 * longer of max_wait_ms and batch_max_wait_ms.)
 * False, with the field in *WHY (NULL: not the script's shape at all),
 * for anything else.
 */
static bool
gcra_reply_ok(const struct limiter_fleet *f, const struct op *op,
              const redisReply *r, struct gcra_reply *out, const char **why)
{
    int64_t widest = widest_interval_us(f);
    int64_t backlog_max =
        f->max_wait_us + f->max_pause_us + f->shadow.tolerance_us + widest;
    int64_t spacing =
        op->cap_interval_us > widest ? op->cap_interval_us : widest;
    long long granted;

    *why = NULL;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
        return false;
    }
    for (size_t i = 0; i < 5; i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER) {
            *why = "a field that is not an integer";
            return false;
        }
    }
    granted = r->element[0]->integer;
    out->granted = granted == 1;
    out->wait_us = r->element[1]->integer;
    out->backlog_us = r->element[2]->integer;
    out->pause_ms = r->element[3]->integer;
    out->cap_backlog_us = r->element[4]->integer;
    /* The pause first: a long one lifts the TAT (and the wait) too. */
    if (granted != 0 && granted != 1) {
        *why = "a granted flag that is neither 0 nor 1";
    } else if (!pause_ok(f, out->pause_ms)) {
        *why = "a pause longer than max_pause_ms";
    } else if (out->backlog_us < 0 || out->backlog_us > backlog_max) {
        *why = "a TAT out of range";
    } else if (out->cap_backlog_us < 0 ||
               out->cap_backlog_us > (op->cap_interval_us > 0
                                          ? backlog_max + op->cap_interval_us
                                          : 0)) {
        *why = "a cap TAT out of range";
    } else {
        *why = wait_wrong(op, out, backlog_max + f->max_turn_us + spacing);
    }
    return *why == NULL;
}

static void send_fresh_count(struct limiter_fleet *f);
static void send_heartbeat(struct limiter_fleet *f);

/*
 * Redis answers this worker again. Back from an outage of a fleet, it
 * announces itself, lets the others that lost Redis with it do the same
 * (REJOIN_SETTLE_US), then counts the instances back, so that its first
 * fleet grants already leave room for those still away (fleet_rate()).
 */
static void
come_back(struct limiter_fleet *f)
{
    int64_t now = agw_now_us();

    if (f->on_fleet) {
        return;
    }
    observe_mode(f); /* the outage's count of instances */
    if (f->outage_n <= 1) {
        set_fleet(f, true, NULL);
    } else if (f->answered_since_us == 0) {
        f->answered_since_us = now;
        send_heartbeat(f);
    } else if (now - f->answered_since_us >= REJOIN_SETTLE_US &&
               !f->count_out) {
        send_fresh_count(f);
    }
}

/* A reply of the GCRA script: the fleet state as of now. */
static void
learn_gcra(struct limiter_fleet *f, const struct gcra_reply *r)
{
    int64_t now = agw_now_us();

    f->shadow.tat_us = now + r->backlog_us;
    learn_pause(f, now, r->pause_ms);
    come_back(f);
}

static void poll_arm(struct limiter_fleet *f);

static void
note_queued(struct limiter_fleet *f, int64_t wait_us)
{
    int64_t until = agw_now_us() + wait_us;

    if (until > f->queued_until_us) {
        f->queued_until_us = until;
    }
    poll_arm(f);
}

/* --------------------------------------------------------- acquire */

struct fallback_grant {
    bool granted;
    int64_t wait_us;
};

static void
on_fallback_grant(bool granted, int64_t wait_us, uint64_t epoch, void *arg)
{
    *(struct fallback_grant *)arg = (struct fallback_grant){granted, wait_us};
}

/* The fallback decides before acquire() returns (limiter.h); its
 * grants belong to the fallback's epoch. A cap applies there scaled as
 * the fleet's rate is (SPEC §11): this instance's share of it. */
static void
fallback_acquire(struct limiter_fleet *f, struct agw_limiter_ask *ask,
                 int64_t max_wait_us, agw_limiter_cb cb, void *arg)
{
    uint64_t epoch = current_epoch() | 1;
    struct fallback_grant g = {false, 0};
    struct agw_limiter_ask local = *ask;
    struct agw_limiter *fb = f->fallback;

    local.max_wait_us = max_wait_us;
    if (local.max_rate > 0 && f->rate > 0) {
        local.max_rate = local.max_rate * f->fb_rate / f->rate;
    }
    if (fb->ops->acquire_as != NULL) {
        fb->ops->acquire_as(fb, &local, on_fallback_grant, &g);
    } else {
        fb->ops->acquire(fb, max_wait_us, on_fallback_grant, &g);
    }
    ask->cap_tat_us = local.cap_tat_us;
    cb(g.granted, g.wait_us, epoch, arg);
}

/*
 * The script granted or refused the call: valid only if the process is
 * on the fleet limiter now (another worker may have left it meanwhile),
 * and only if the slot is still within the caller's max wait now that the
 * reply is here (a slow reply). Otherwise the slot taken in Redis goes
 * unused. A refusal's turn to ask again counts from the script's time.
 */
static void
grant_fleet(struct op *op, const struct gcra_reply *r)
{
    struct limiter_fleet *f = op->f;
    uint64_t epoch = current_epoch();
    int64_t late_us = agw_now_us() - op->sent_us;
    int64_t wait_us = r->wait_us;

    observe_mode(f);
    if (!epoch_is_fleet(epoch)) {
        fallback_acquire(f, op->ask, op->max_wait_us - late_us, op->cb,
                         op->arg);
        return;
    }
    op->ask->cap_tat_us =
        op->cap_interval_us > 0 ? agw_now_us() + r->cap_backlog_us : 0;
    if (r->granted && r->wait_us + late_us > op->max_wait_us) {
        op->cb(false, r->wait_us + late_us, epoch, op->arg);
        return;
    }
    if (!r->granted && wait_us <= op->max_wait_us) {
        wait_us = wait_us > late_us ? wait_us - late_us : 0;
    }
    if (r->granted && r->wait_us > 0) {
        note_queued(f, r->wait_us);
    }
    op->cb(r->granted, wait_us, epoch, op->arg);
}

static void
acquire_done(struct op *op, const redisReply *reply, const char *error)
{
    struct limiter_fleet *f = op->f;
    struct gcra_reply r;
    const char *why;

    if (!gcra_reply_ok(f, op, reply, &r, &why)) {
        if (why != NULL) {
            bad_reply(&f->gcra, why);
        } else {
            log_debug("ratelimit: the GCRA script failed: %s",
                      failure_text(reply, error));
        }
        set_fleet(f, false,
                  why != NULL ? "Redis answered the rate-limit script "
                                "out of range"
                              : "Redis did not answer the rate-limit "
                                "script");
        /* Time already spent waiting for Redis counts. */
        fallback_acquire(f, op->ask,
                         op->max_wait_us - (agw_now_us() - op->sent_us), op->cb,
                         op->arg);
        return;
    }
    learn_gcra(f, &r);
    grant_fleet(op, &r);
}

/* The keys of ASK's caller's cap, into OP (false: out of memory). */
static bool
cap_keys(struct limiter_fleet *f, struct op *op, const char *caller)
{
    size_t n = f->prefix_len + strlen(caller) + sizeof("rl:capq:");

    op->cap_keys[0] = malloc(n);
    op->cap_keys[1] = malloc(n);
    if (op->cap_keys[0] == NULL || op->cap_keys[1] == NULL) {
        return false;
    }
    snprintf(op->cap_keys[0], n, "%.*srl:cap:%s", (int)f->prefix_len, f->prefix,
             caller);
    snprintf(op->cap_keys[1], n, "%.*srl:capq:%s", (int)f->prefix_len,
             f->prefix, caller);
    op->keys[2] = op->cap_keys[0];
    op->keys[4] = op->cap_keys[1];
    return true;
}

/* A script call for ASK (its copy in the op; the out field goes to ASK
 * itself, or to the copy when ASK is NULL). */
static struct op *
gcra_op(struct limiter_fleet *f, struct agw_limiter_ask *ask,
        void (*done)(struct op *, const redisReply *, const char *))
{
    struct op *op = op_new(f, &f->gcra, done);
    struct agw_gcra g, cap = {0};
    int burst;
    double rate = fleet_rate(f, &burst);

    op->own = *ask;
    op->ask = ask;
    agw_gcra_init_margin(&g, rate, burst, ARRIVAL_JITTER_MARGIN_US);
    op->nkeys = 5;
    op->keys[0] = f->key_tat;
    op->keys[1] = f->key_pause;
    op->keys[2] = op->keys[3] = op->keys[4] = f->key_batchq;
    if (ask->caller != NULL && ask->max_rate > 0) {
        if (!cap_keys(f, op, ask->caller)) {
            log_error("ratelimit: out of memory");
            abort(); /* as op_new: the callback must run once */
        }
        agw_gcra_init_margin(&cap, ask->max_rate, 0, ARRIVAL_JITTER_MARGIN_US);
    }
    op->max_wait_us = ask->max_wait_us;
    op->batch_backlog_us =
        ask->batch_backlog_us >= 0 ? ask->batch_backlog_us : -1;
    op->cap_interval_us = cap.interval_us;
    op->nargs = 6;
    snprintf(op->args[0], sizeof(op->args[0]), "%lld",
             (long long)g.interval_us);
    snprintf(op->args[1], sizeof(op->args[1]), "%lld",
             (long long)g.tolerance_us);
    snprintf(op->args[2], sizeof(op->args[2]), "%lld",
             (long long)op->max_wait_us);
    snprintf(op->args[3], sizeof(op->args[3]), "%lld",
             (long long)op->batch_backlog_us);
    snprintf(op->args[4], sizeof(op->args[4]), "%lld",
             (long long)op->cap_interval_us);
    snprintf(op->args[5], sizeof(op->args[5]), "%d", ask->retry ? 1 : 0);
    return op;
}

static void probe_done(struct op *op, const redisReply *reply,
                       const char *error);

/* A probe takes nothing: max wait -1 refuses every call. */
static struct op *
probe_op(struct limiter_fleet *f)
{
    struct agw_limiter_ask ask = {.max_wait_us = -1, .batch_backlog_us = -1};
    struct op *op = gcra_op(f, &ask, probe_done);

    op->ask = &op->own;
    return op;
}

static void
probe_soon(struct limiter_fleet *f)
{
    int64_t now = agw_now_us();

    if (!f->on_fleet && now - f->probe_sent_us >= PROBE_EVERY_US) {
        f->probe_sent_us = now;
        op_send(probe_op(f));
    }
}

static void
fleet_acquire_as(struct agw_limiter *rl, struct agw_limiter_ask *ask,
                 agw_limiter_cb cb, void *arg)
{
    struct limiter_fleet *f = fleet_of(rl);
    struct op *op;

    observe_mode(f);
    if (!agw_redis_is_up(f->redis)) {
        set_fleet(f, false, "Redis is unreachable");
        fallback_acquire(f, ask, ask->max_wait_us, cb, arg);
        return;
    }
    if (!epoch_is_fleet(current_epoch())) {
        /* Granted by the fallback until the process is back; a probe,
         * which takes no slot, finds out whether Redis answers again. */
        probe_soon(f);
        fallback_acquire(f, ask, ask->max_wait_us, cb, arg);
        return;
    }
    op = gcra_op(f, ask, acquire_done);
    op->cb = cb;
    op->arg = arg;
    op_send(op);
}

/* An interactive call without a cap: the op keeps the ask. */
static void
fleet_acquire(struct agw_limiter *rl, int64_t max_wait_us, agw_limiter_cb cb,
              void *arg)
{
    struct limiter_fleet *f = fleet_of(rl);
    struct agw_limiter_ask ask = {.max_wait_us = max_wait_us,
                                  .batch_backlog_us = -1};
    struct op *op;

    observe_mode(f);
    if (!agw_redis_is_up(f->redis) || !epoch_is_fleet(current_epoch())) {
        fleet_acquire_as(rl, &ask, cb, arg); /* decided before it returns */
        return;
    }
    op = gcra_op(f, &ask, acquire_done);
    op->ask = &op->own;
    op->cb = cb;
    op->arg = arg;
    op_send(op);
}

/* ---------------------------------------------------------- pause */

/* The pause script answers the pause now in force: ours, or a longer
 * one already there (never past max_pause_ms, unless planted). */
static void
pause_done(struct op *op, const redisReply *reply, const char *error)
{
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        log_warn("ratelimit: the fleet-wide pause was not written: %s; "
                 "only this instance pauses",
                 failure_text(reply, error));
        return;
    }
    if (!pause_ok(op->f, reply->integer)) {
        bad_reply(&op->f->pause, "a pause longer than max_pause_ms");
        return;
    }
    learn_pause(op->f, agw_now_us(), reply->integer);
}

static void
fleet_pause(struct agw_limiter *rl, int64_t pause_us)
{
    struct limiter_fleet *f = fleet_of(rl);
    int64_t now = agw_now_us();
    long long ms;
    struct op *op;

    if (pause_us <= 0) {
        return;
    }
    if (now + pause_us > f->paused_until_us) {
        f->paused_until_us = now + pause_us;
    }
    f->fallback->ops->pause(f->fallback, pause_us);
    if (!agw_redis_is_up(f->redis)) {
        return;
    }
    ms = (pause_us + US_PER_MS - 1) / US_PER_MS;
    op = op_new(f, &f->pause, pause_done);
    op->nkeys = 1;
    op->keys[0] = f->key_pause;
    op->nargs = 1;
    snprintf(op->args[0], sizeof(op->args[0]), "%lld", ms);
    op_send(op);
}

static int64_t
fleet_paused_until(struct agw_limiter *rl)
{
    struct limiter_fleet *f = fleet_of(rl);
    int64_t until = f->paused_until_us;
    int64_t local = f->fallback->ops->paused_until(f->fallback);

    if (local > until) {
        until = local;
    }
    return until > agw_now_us() ? until : 0;
}

static void
on_pttl(struct redisReply *reply, const char *error, void *arg)
{
    struct limiter_fleet *f = arg;

    f->poll_out = false;
    if (f->dead || reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        fleet_unref(f);
        return;
    }
    /* -2: no pause key; -1: one without a TTL, which no instance writes. */
    if (reply->integer >= -2 &&
        pause_ok(f, reply->integer < 0 ? 0 : reply->integer)) {
        learn_pause(f, agw_now_us(), reply->integer);
    } else {
        bad_reply(&f->pause, "a pause longer than max_pause_ms (PTTL)");
    }
    fleet_unref(f);
}

static void
poll_arm(struct limiter_fleet *f)
{
    struct timeval tv = {0, PAUSE_POLL_US};

    if (!evtimer_pending(f->poll_timer, NULL)) {
        evtimer_add(f->poll_timer, &tv);
    }
}

/* Calls granted here wait for their slot on their own timers: make sure
 * a pause set elsewhere meanwhile reaches them before they leave. */
static void
on_poll_timer(evutil_socket_t fd, short what, void *arg)
{
    struct limiter_fleet *f = arg;
    int64_t now = agw_now_us();
    const char *argv[2] = {"PTTL", f->key_pause};
    size_t argvlen[2] = {4, strlen(f->key_pause)};

    if (now >= f->queued_until_us) {
        return;
    }
    if (now - f->pause_seen_us >= PAUSE_POLL_US && !f->poll_out &&
        agw_redis_is_up(f->redis)) {
        f->poll_out = true;
        f->refs++;
        agw_redis_command(f->redis, on_pttl, f, 2, argv, argvlen);
    }
    poll_arm(f);
}

/* ------------------------------------------------------- heartbeat */

static void
heartbeat_done(struct op *op, const redisReply *reply, const char *error)
{
    struct limiter_fleet *f = op->f;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        log_debug("ratelimit: heartbeat failed: %s",
                  failure_text(reply, error));
        set_fleet(f, false, "Redis did not answer the heartbeat");
        return;
    }
    /* At least this instance; a count past any fleet's size would make
     * the fallback rate absurd: not learnt (the heartbeat itself is
     * written, so Redis works). */
    if (reply->integer < 1 || reply->integer > MAX_INSTANCES) {
        bad_reply(&f->heartbeat, "a count of live instances out of range");
        return;
    }
    if (reply->integer != f->live_seen) {
        log_info("ratelimit: live instances sharing the limit: %lld",
                 reply->integer);
    }
    f->live_seen = (long)reply->integer;
    update_fallback(f);
}

/* On the fallback, a probe that takes nothing (max wait -1 refuses every
 * call) switches back as soon as the script answers again. */
static void
probe_done(struct op *op, const redisReply *reply, const char *error)
{
    struct gcra_reply r;
    const char *why;

    if (gcra_reply_ok(op->f, op, reply, &r, &why)) {
        learn_gcra(op->f, &r);
    } else if (why != NULL) {
        bad_reply(&op->f->gcra, why);
    }
}

/* Rejoining: how many instances are back (heartbeating again). */
static void
fresh_count_done(struct op *op, const redisReply *reply, const char *error)
{
    struct limiter_fleet *f = op->f;

    f->count_out = false;
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER ||
        reply->integer < 1 || reply->integer > INT32_MAX) {
        log_debug("ratelimit: counting the instances back failed: %s",
                  failure_text(reply, error));
        return;
    }
    f->rejoin_k = (long)reply->integer;
    set_fleet(f, true, NULL); /* if it was not: counted, it goes back */
}

/* Sent after this instance's own heartbeat, which it therefore counts. */
static void
send_fresh_count(struct limiter_fleet *f)
{
    struct op *op = op_new(f, &f->fresh, fresh_count_done);

    f->count_out = true;
    op->nkeys = 2;
    op->keys[0] = f->key_hb;
    op->keys[1] = f->key_hb_fallback;
    op->nargs = 3;
    snprintf(op->args[0], sizeof(op->args[0]), "%d", HEARTBEAT_TTL_MS);
    snprintf(op->args[1], sizeof(op->args[1]), "%d", FRESH_HEARTBEAT_MS);
    snprintf(op->args[2], sizeof(op->args[2]), "%s", f->id);
    op_send(op);
}

static void
send_heartbeat(struct limiter_fleet *f)
{
    struct op *op = op_new(f, &f->heartbeat, heartbeat_done);

    op->nkeys = 3;
    op->keys[0] = f->key_hb;
    op->keys[1] = f->key_hb_fallback;
    op->keys[2] = f->key_hb_info;
    op->last_arg = heartbeat_payload != NULL ? heartbeat_payload() : NULL;
    if (op->last_arg == NULL) {
        op->last_arg = strdup("{}");
    }
    if (op->last_arg == NULL) {
        log_error("ratelimit: out of memory");
        abort(); /* as op_new: the heartbeat decides the fallback rate */
    }
    op->nargs = 3;
    snprintf(op->args[0], sizeof(op->args[0]), "%s", f->id);
    snprintf(op->args[1], sizeof(op->args[1]), "%d", HEARTBEAT_TTL_MS);
    /* The process's mode: its workers share one id. */
    snprintf(op->args[2], sizeof(op->args[2]), "%d",
             epoch_is_fleet(current_epoch()) ? 0 : 1);
    op_send(op);
}

static void
on_heartbeat_timer(evutil_socket_t fd, short what, void *arg)
{
    struct limiter_fleet *f = arg;
    int every_ms = f->on_fleet && !rejoining(f) ? HEARTBEAT_EVERY_MS
                                                : HEARTBEAT_TRANSITION_MS;
    struct timeval tv = {every_ms / 1000, (every_ms % 1000) * US_PER_MS};

    evtimer_add(f->heartbeat_timer, &tv);
    if (!agw_redis_is_up(f->redis)) {
        set_fleet(f, false, "Redis is unreachable");
        return;
    }
    send_heartbeat(f);
    if (!f->on_fleet) {
        op_send(probe_op(f));
    }
    if (rejoining(f) && !f->count_out) {
        send_fresh_count(f);
    }
}

/* ------------------------------------------ departures, headers, reload */

static int64_t
fleet_leave(struct agw_limiter *rl)
{
    struct limiter_fleet *f = fleet_of(rl);
    struct agw_limiter *g =
        epoch_is_fleet(current_epoch()) ? f->guard : f->fallback;
    int64_t until = atomic_load(&share_until_us);

    /* The slots the old rate gave have passed: the whole rate again. */
    if (until != 0 && agw_now_us() >= until &&
        atomic_compare_exchange_strong(&share_until_us, &until, 0)) {
        f->guard->ops->reconfigure(f->guard, f->rate, f->burst);
    }
    return g->ops->leave(g);
}

/* Both guards hear of every departure: they are this instance's, and the
 * one that takes over after a switch must count the recent ones. */
static void
fleet_left(struct agw_limiter *rl, int64_t sent_us)
{
    struct limiter_fleet *f = fleet_of(rl);

    f->guard->ops->left(f->guard, sent_us);
    f->fallback->ops->left(f->fallback, sent_us);
}

static void
fleet_state(struct agw_limiter *rl, int64_t max_wait_us,
            struct agw_limiter_state *out)
{
    struct limiter_fleet *f = fleet_of(rl);

    if (!epoch_is_fleet(current_epoch())) {
        f->fallback->ops->state(f->fallback, max_wait_us, out);
        return;
    }
    out->limit = f->shadow.rate_per_s;
    agw_gcra_state(&f->shadow, agw_now_us(), max_wait_us, &out->remaining,
                   &out->reset_s);
}

/*
 * A reload lowered the rate. The calls granted already keep the slots the
 * old rate gave them, booked up to BOOKED_UNTIL_US (the fleet TAT as last
 * seen); until then the departure guard holds this process to its share
 * of the new rate, so that the fleet keeps to the new rate as its
 * instances reload. Grants after that are at the new rate.
 */
static void
hold_to_share(struct limiter_fleet *f, int64_t booked_until_us)
{
    double rate;
    int burst;
    long n;
    int64_t until = atomic_load(&share_until_us);

    if (booked_until_us <= agw_now_us()) {
        return;
    }
    while (until < booked_until_us &&
           !atomic_compare_exchange_weak(&share_until_us, &until,
                                         booked_until_us)) {
    }
    fallback_settings(f, &rate, &burst, &n);
    f->guard->ops->reconfigure(f->guard, f->rate / (double)n,
                               (int)(f->burst / n));
}

static void
fleet_reconfigure(struct agw_limiter *rl, double rate, int burst)
{
    struct limiter_fleet *f = fleet_of(rl);
    int64_t tat = f->shadow.tat_us;
    bool lower = rate < f->rate;

    f->rate = rate;
    f->burst = burst;
    agw_gcra_init_margin(&f->shadow, rate, burst, ARRIVAL_JITTER_MARGIN_US);
    f->shadow.tat_us = tat;
    f->guard->ops->reconfigure(f->guard, rate, burst);
    if (lower) {
        hold_to_share(f, tat);
    }
    update_fallback(f);
}

static void
set_reply_bounds(struct limiter_fleet *f, const struct agw_config *cfg)
{
    int book_ms = cfg->max_wait_ms > cfg->batch_max_backlog_ms
                      ? cfg->max_wait_ms
                      : cfg->batch_max_backlog_ms;
    int turn_ms = cfg->max_wait_ms > cfg->batch_max_wait_ms
                      ? cfg->max_wait_ms
                      : cfg->batch_max_wait_ms;

    f->max_wait_us = (int64_t)(book_ms > 0 ? book_ms : 0) * US_PER_MS;
    f->max_turn_us = (int64_t)(turn_ms > 0 ? turn_ms : 0) * US_PER_MS;
    f->max_pause_us =
        (int64_t)(cfg->max_pause_ms > 0 ? cfg->max_pause_ms : 0) * US_PER_MS;
}

void
agw_limiter_fleet_reload(struct agw_limiter *rl, const struct agw_config *cfg)
{
    struct limiter_fleet *f;

    if (rl == NULL || rl->ops != &fleet_ops) {
        return;
    }
    f = fleet_of(rl);
    f->cfg_fallback_rate = cfg->fallback_rate;
    f->expected_instances = cfg->expected_instances;
    set_reply_bounds(f, cfg);
    update_fallback(f);
}

/* On the fleet: the TAT last seen (every reply of the GCRA script moves
 * the shadow); on the fallback: the fallback's own. */
static int64_t
fleet_backlog(struct agw_limiter *rl)
{
    struct limiter_fleet *f = fleet_of(rl);
    int64_t ahead;

    if (!epoch_is_fleet(current_epoch())) {
        return f->fallback->ops->backlog_us(f->fallback);
    }
    ahead = f->shadow.tat_us - agw_now_us();
    return ahead > 0 ? ahead : 0;
}

void
agw_limiter_info(struct agw_limiter *rl, struct agw_limiter_info *out)
{
    struct limiter_fleet *f;

    memset(out, 0, sizeof(*out));
    out->mode = "local";
    if (rl == NULL || rl->ops != &fleet_ops) {
        return;
    }
    f = fleet_of(rl);
    out->live_seen = f->live_seen;
    if (epoch_is_fleet(current_epoch())) {
        out->mode = "shared";
        out->rate = f->rate;
    } else {
        out->mode = "degraded";
        out->rate = f->fb_rate;
    }
}

void
agw_limiter_fleet_instance_id(char out[33])
{
    instance_id(out);
}

void
agw_limiter_fleet_set_payload(char *(*payload)(void))
{
    heartbeat_payload = payload;
}

static void
init_instances_script(void)
{
    if (!agw_redis_script_init(&instances_script, instances_lua)) {
        log_error("ratelimit: cannot digest the instances script");
        abort();
    }
}

void
agw_limiter_fleet_read_instances(struct agw_limiter *rl,
                                 void (*cb)(struct redisReply *reply,
                                            const char *error, void *arg),
                                 void *arg)
{
    struct limiter_fleet *f;
    const char *argv[2];
    size_t argvlen[2];

    if (rl == NULL || rl->ops != &fleet_ops) {
        cb(NULL, "no fleet", arg);
        return;
    }
    f = fleet_of(rl);
    pthread_once(&instances_once, init_instances_script);
    argv[0] = f->key_hb;
    argv[1] = f->key_hb_info;
    argvlen[0] = strlen(argv[0]);
    argvlen[1] = strlen(argv[1]);
    agw_redis_script_call(f->redis, &instances_script, cb, arg, 2, 2, argv,
                          argvlen);
}

static uint64_t
fleet_epoch(struct agw_limiter *rl)
{
    return current_epoch();
}

void
agw_limiter_fleet_on_change(struct agw_limiter *rl, void (*cb)(void *arg),
                            void *arg)
{
    struct limiter_fleet *f;

    if (rl == NULL || rl->ops != &fleet_ops) {
        return;
    }
    f = fleet_of(rl);
    f->on_change = cb;
    f->on_change_arg = arg;
}

static void
fleet_destroy(struct agw_limiter *rl)
{
    struct limiter_fleet *f = fleet_of(rl);

    f->dead = true;
    if (f->mode_event != NULL) {
        leave_process(f);
        event_free(f->mode_event);
        f->mode_event = NULL;
    }
    if (f->heartbeat_timer != NULL) {
        event_free(f->heartbeat_timer);
    }
    if (f->poll_timer != NULL) {
        event_free(f->poll_timer);
    }
    if (f->guard != NULL) {
        f->guard->ops->destroy(f->guard);
    }
    if (f->fallback != NULL) {
        f->fallback->ops->destroy(f->fallback);
    }
    f->heartbeat_timer = f->poll_timer = NULL;
    f->guard = f->fallback = NULL;
    fleet_unref(f);
}

static const struct agw_limiter_ops fleet_ops = {
    .name = "redis",
    .acquire = fleet_acquire,
    .acquire_as = fleet_acquire_as,
    .pause = fleet_pause,
    .paused_until = fleet_paused_until,
    .leave = fleet_leave,
    .left = fleet_left,
    .state = fleet_state,
    .reconfigure = fleet_reconfigure,
    .backlog_us = fleet_backlog,
    .epoch = fleet_epoch,
    .destroy = fleet_destroy,
};

static bool
fleet_init(struct limiter_fleet *f, struct event_base *base,
           const struct agw_config *cfg)
{
    const char *prefix = cfg->key_prefix != NULL ? cfg->key_prefix : "";
    double rate;
    int burst;
    long n;
    struct timeval first = {0, HEARTBEAT_FIRST_MS * US_PER_MS};

    f->key_tat = join2(prefix, "rl");
    f->key_pause = join2(prefix, "rl:pause");
    f->key_hb = join2(prefix, "hb");
    f->key_hb_fallback = join2(prefix, "hb:fallback");
    f->key_hb_info = join2(prefix, "hb:info");
    f->key_batchq = join2(prefix, "rl:batchq");
    f->prefix = f->key_tat; /* PREFIX "rl" */
    f->prefix_len = strlen(prefix);
    fallback_settings(f, &rate, &burst, &n);
    f->fb_rate = rate;
    f->fb_burst = burst;
    if (f->guard == NULL) {
        f->guard = agw_limiter_loop_new(f->rate, f->burst);
    }
    if (f->fallback == NULL) {
        f->fallback = agw_limiter_loop_new(rate, burst);
    } else {
        f->fallback->ops->reconfigure(f->fallback, rate, burst);
    }
    f->heartbeat_timer = evtimer_new(base, on_heartbeat_timer, f);
    f->poll_timer = evtimer_new(base, on_poll_timer, f);
    f->mode_event = event_new(base, -1, 0, on_mode_event, f);
    if (f->key_tat == NULL || f->key_pause == NULL || f->key_hb == NULL ||
        f->key_hb_fallback == NULL || f->key_hb_info == NULL ||
        f->key_batchq == NULL || f->guard == NULL || f->fallback == NULL ||
        f->heartbeat_timer == NULL || f->poll_timer == NULL ||
        f->mode_event == NULL || !script_init(&f->gcra, "GCRA", gcra_lua) ||
        !script_init(&f->pause, "pause", pause_lua) ||
        !script_init(&f->heartbeat, "heartbeat", heartbeat_lua) ||
        !script_init(&f->fresh, "fresh heartbeats", fresh_lua)) {
        return false;
    }
    join_process(f);
    evtimer_add(f->heartbeat_timer, &first);
    return true;
}

struct agw_limiter *
agw_limiter_fleet_new(struct event_base *base, struct agw_redis *redis,
                      const struct agw_config *cfg, struct agw_limiter *guard,
                      struct agw_limiter *fallback)
{
    struct limiter_fleet *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        if (guard != NULL) {
            guard->ops->destroy(guard);
        }
        if (fallback != NULL) {
            fallback->ops->destroy(fallback);
        }
        return NULL;
    }
    f->guard = guard;
    f->fallback = fallback;
    f->base.ops = &fleet_ops;
    f->redis = redis;
    f->refs = 1;
    f->on_fleet = true; /* until Redis proves otherwise; logged then */
    f->rate = cfg->rate;
    f->burst = cfg->burst > 0 ? cfg->burst : 0;
    f->cfg_fallback_rate = cfg->fallback_rate;
    f->expected_instances = cfg->expected_instances;
    set_reply_bounds(f, cfg);
    instance_id(f->id);
    agw_gcra_init_margin(&f->shadow, f->rate, f->burst,
                         ARRIVAL_JITTER_MARGIN_US);
    if (!fleet_init(f, base, cfg)) {
        fleet_destroy(&f->base);
        return NULL;
    }
    return &f->base;
}
