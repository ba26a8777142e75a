/*
 * flight_fleet.c - single flight across the instances sharing a Redis (SPEC
 * §3): an atomic claim with an owner token, an answer published to waiters on
 * other instances, and a takeover by one waiter when a claim expires.
 *
 * Keys (PREFIX is key_prefix):
 *   PREFIX "lock:" KEY  the claim; value = the holder's random token,
 *                       PX claim_ttl_ms, renewed by the holder every
 *                       third of its TTL while it holds it.
 *   PREFIX "done:" KEY  pub/sub channel of the answer, and a copy of the
 *                       last answer kept 10 s for waiters that subscribed
 *                       after it was published.
 *   PREFIX "a:" KEY     the stored answer (store_redis.c's layout): the
 *                       claim script of a lookup join reads it, so a miss
 *                       is one round trip; the release script of a 2xx
 *                       writes it with the answer's publication.
 *   PREFIX "purge"      pub/sub channel of operators' purges (SPEC §12):
 *                       the key whose answer every instance drops from
 *                       its L1 and memory table (agw_flight_fleet_purge).
 *   PREFIX "purges"     sorted set of the purges of the last PURGE_MARK_MS
 *                       (member: the key, score: Redis's TIME in ms; at
 *                       most PURGES_MAX, the newest): an instance whose
 *                       subscription was away reads back those it missed
 *                       and drops them from its memory table (read_missed).
 * Answer encoding: "<token>\n<status>\n<retry_after or -1>\n<body>", where
 * token is the claim that produced it. A waiter trusts any message (it was
 * published while it listened, so it answers its request), but a copy
 * only when it comes from the holder it waited on: an older copy belongs
 * to an earlier flight (e.g. an error, which must not be reused). A
 * message with "!" in front comes from a claim that was no longer its
 * holder's when it answered (purged: SPEC §12, or expired): only the
 * waiters of that claim take it; the others wait for their own holder.
 *
 * What Redis answers is trusted only in the shape the scripts write
 * (SPEC §8): a holder is a token of ours (32 hex digits) with a PTTL no
 * claim can have past CLAIM_TTL_MAX_MS, an answer decodes field by field
 * (decode_answer). Anything else counts as Redis failing: the call goes
 * on locally (UNAVAILABLE) instead of waiting on a claim nobody holds.
 * A stored answer the claim script returns is checked as a GET of it is
 * (agw_store_redis_decode); one out of shape is UNAVAILABLE too, and the
 * caller's own lookup then refuses it as well (and warns).
 *
 * Scripts go as EVALSHA (agw_redis_script_call): a miss sends the claim
 * and the release, and a renewal only when the holder keeps its claim
 * longer than a third of its TTL or an attempt needs a longer one.
 *
 * A wait never outlives Redis (SPEC §4): it ends UNAVAILABLE when either
 * connection goes down, and while waits are open a command is kept going
 * on the command connection, so a Redis that stops answering (frozen) is
 * noticed within redis_command_timeout_ms, when it times out.
 *
 * A claim whose command got no reply may still be in Redis with nobody to
 * release it: a frozen Redis runs the commands it had read when it wakes,
 * after their sender gave up on them (a claim, or a renewal that keeps a
 * claim alive after its holder's release failed). Such leftovers are
 * released as soon as the command connection is up again, while they are
 * still ours: the answer published if there is one, else a message that
 * sends the waiters back to claiming. Waiters elsewhere are not held until
 * the claim expires, nor until they find it unrenewed.
 */
#include "flight_fleet.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "redis.h"
#include "reply.h"
#include "store_redis.h"
#include "table.h"
#include "util.h"

#define TOKEN_LEN 32
#define COPY_TTL_MS "10000"
#define RECHECK_SLACK_MS 2
/* The look that finds a holder unrenewed for its bound comes a timer
 * after the first; a timer may fire a few ms early (libevent's time is
 * cached per loop turn), and the bound has RENEW_SLACK_MS in it: a look
 * this close to the bound counts as past it. */
#define ORPHAN_EARLY_MS 50
/* Longer than any claim an instance takes: request_timeout_ms (at most
 * 1 h) + connect_timeout_ms (at most 10 min) + 1 s. */
#define CLAIM_TTL_MAX_MS (3600000LL + 600000 + 1000)
/* An answer's Retry-After: an upstream 429's, capped at max_pause_ms
 * (at most 1 h) and by Retry-After parsing (1 h). */
#define RETRY_AFTER_MAX_S 3600
/* Replies out of shape are said at warn at most this often (a planted
 * key answers the same on every call), else at debug. */
#define BAD_REPLY_WARN_EVERY_US (60 * 1000000LL)
/* While waits are open, a PING this often (one at a time). */
#define WATCH_EVERY_MS 50
/* A live holder renews its claim every third of its TTL; a claim not
 * renewed for a third of claim_ttl_ms and this much more has no live
 * holder (see orphan). */
#define RENEW_SLACK_MS 1000
/* A PTTL read twice differs from the time between the reads by Redis's
 * rounding to the ms and the replies' varying delays: up to this much
 * (or a sixth of the claim TTL, half of a renewal's rise, if less) it is
 * not a renewal. */
#define PTTL_JITTER_MS 200
/* Leftover claims kept for release at most: past that many, the oldest
 * is left to expire (a waiter then takes it over). */
#define LEFTOVERS_MAX 4096
/* How long a purge's mark outlives it: longer than any flight under way
 * then (request_deadline_ms is at most an hour). */
#define PURGE_MARK_MS 3600000
/* The purges kept for read-back at most (PREFIX "purges"), the newest: a
 * bound on the set and on one read-back's reply (~700 KB), far above what
 * operators purge in an hour. Past it, a returning instance cannot tell
 * which it missed and clears its whole memory table instead. */
#define PURGES_MAX 10000
/* A number macro as a script argument. */
#define ARG_OF(n) ARG_TEXT(n)
#define ARG_TEXT(n) #n
/* Purges are read back from this long before the subscription was seen
 * down: it may have stopped hearing them before that was noticed (a link
 * that goes quiet is seen down when a command on it times out). Reading
 * more than was missed only drops a few more memory copies. */
#define MISSED_SLACK_MS 60000
/* A message on an answer channel that is not an answer: "<token>\n"
 * alone says that claim is gone without one; its waiters claim again. */

/*
 * Claim, or learn who holds the claim. KEYS: lock, done, stored answer.
 * ARGV: our new token, claim TTL (ms), the holder we waited on ("" on
 * the first try), a holder found orphaned ("" if none): its claim is
 * replaced, "1" to look the stored answer up first ("" not to).
 * {3, stored}: the store holds an answer (no claim taken). {1}: ours.
 * {0, holder, pttl}: held. {2, answer}: the holder we waited on answered
 * and its claim is gone (we missed the message).
 */
static const char claim_lua[] =
    "if ARGV[5] ~= '' then\n"
    "  local a = redis.call('GET', KEYS[3])\n"
    "  if a then\n"
    "    return {3, a}\n"
    "  end\n"
    "end\n"
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur and (ARGV[4] == '' or cur ~= ARGV[4]) then\n"
    "  return {0, cur, redis.call('PTTL', KEYS[1])}\n"
    "end\n"
    "if ARGV[3] ~= '' then\n"
    "  local d = redis.call('GET', KEYS[2])\n"
    "  if d and string.sub(d, 1, string.len(ARGV[3]) + 1) == ARGV[3] .. "
    "'\\n' then\n"
    "    return {2, d}\n"
    "  end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "return {1}\n";

/* KEYS: lock, done, stored answer, purge mark. ARGV: token, answer,
 * copy TTL (ms), the value to store and its TTL (s) ("" and "": nothing
 * to store). While the claim is still ours, or it expired with nobody
 * after it (Redis failed for longer than its TTL) and no purge since,
 * the answer is stored before the claim goes (a caller that finds no
 * claim finds the answer) and published to every waiter. A claim taken
 * over (another call is on its way) or purged (SPEC §12: the answer may
 * predate the purge) stores nothing: the copy is written only where none
 * is (it may be a newer flight's), and the answer is published for the
 * waiters of this claim alone ("!" in front: on_message). */
static const char release_lua[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur ~= ARGV[1] and (cur or redis.call('EXISTS', KEYS[4]) == 1) "
    "then\n"
    "  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3], 'NX')\n"
    "  redis.call('PUBLISH', KEYS[2], '!' .. ARGV[2])\n"
    "  return 1\n"
    "end\n"
    "if ARGV[5] ~= '' then\n"
    "  redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])\n"
    "end\n"
    "redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])\n"
    "redis.call('PUBLISH', KEYS[2], ARGV[2])\n"
    "if cur then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 1\n";

/* As release_lua, for a leftover claim (the answer "<token>\n" alone:
 * none), and only while the claim is still ours. */
static const char leftover_lua[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"
    "  return 0\n"
    "end\n"
    "if ARGV[5] ~= '' then\n"
    "  redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])\n"
    "end\n"
    "if string.len(ARGV[2]) > string.len(ARGV[1]) + 1 then\n"
    "  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])\n"
    "end\n"
    "redis.call('PUBLISH', KEYS[2], ARGV[2])\n"
    "redis.call('DEL', KEYS[1])\n"
    "return 1\n";

/* KEYS: lock. ARGV: token, TTL (ms). 1 when still ours and extended. */
static const char renew_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "return 0\n";

/*
 * A claim this instance holds, kept alive by TIMER until released. Its
 * renewals out hold references, so a reply after the release (or after
 * the fleet is freed) still finds it.
 */
struct claim {
    struct redis_fleet *fleet; /* valid while HELD */
    char *name;                /* the flight's (flight_tier.h): FLEET's table */
    char *key;
    char token[TOKEN_LEN + 1];
    int ttl_ms;          /* what a renewal asks for: the longest asked */
    struct event *timer; /* the next renewal, while HELD */
    bool held;           /* in fleet->claims */
    bool lost;           /* a renewal found another holder: stop */
    int refs;            /* HELD + renewals out */
};

/* A claim of ours that may be left in Redis (see the top of the file),
 * with the answer to publish when it is released ("<token>\n": none). */
struct leftover {
    struct redis_fleet *fleet; /* NULL once the fleet is freed */
    char *key;
    char token[TOKEN_LEN + 1];
    char *answer;
    size_t len;
    char *value; /* the answer as the store keeps it; NULL: not stored */
    size_t vlen;
    char ttl[24]; /* the stored answer's TTL (s), or "" */
    bool sent;    /* a release is out for it */
    TAILQ_ENTRY(leftover) link;
};
TAILQ_HEAD(leftover_list, leftover);

/* This instance's subscription to one key's channel, for its waiters:
 * it lives while it has one. */
struct ksub {
    char *key;
    char *channel;
    bool confirmed;
    LIST_HEAD(, agw_flight_wait) waits;
};

struct redis_fleet {
    struct agw_flight_tier base_ops; /* first: the ops receive &base_ops */
    struct event_base *base;
    struct agw_redis *cmd;
    struct agw_redis *sub;
    char *prefix;
    int claim_ttl_ms;
    struct agw_redis_script claim_script, release_script, renew_script;
    struct agw_redis_script leftover_script;
    LIST_HEAD(, agw_flight_wait) waits; /* live waits */
    struct agw_table *ksubs;            /* key -> struct ksub */
    struct agw_table *claims;           /* key -> struct claim, held */
    int64_t bad_warned_us; /* the last warn of a reply out of shape */
    struct event *watch_timer;
    struct watch_op *watch_out; /* the PING out, if any */
    struct leftover_list leftovers;
    int nleftovers;
    char *purge_channel;
    char *purges_key; /* PREFIX "purges" */
    void (*on_purge)(enum agw_fleet_purge what, const char *key,
                     void *arg); /* NULL: none told */
    void *on_purge_arg;
    /* Since when purges may have been missed (from creation: the
     * command connection may fill the tables before the purge channel
     * is first confirmed); 0: none since the last read-back. */
    int64_t purge_lost_us;
    unsigned purge_downs;         /* the subscriber's downs so far */
    struct missed_op *missed_out; /* the read-back out, if any */
};

/* A read-back of missed purges out; F is NULL once it no longer counts
 * (the fleet freed, or another read-back sent). */
struct missed_op {
    struct redis_fleet *f;
    unsigned downs; /* f->purge_downs when it was sent */
};

/* A watch PING out; F is NULL once the fleet is freed. */
struct watch_op {
    struct redis_fleet *f;
};

/*
 * A join. It stays allocated while it is live (no outcome yet, not
 * cancelled) or a command it sent is still out: REFS counts both, so a
 * late reply after cancel or free finds it and is ignored.
 */
struct agw_flight_wait {
    struct redis_fleet *fleet; /* NULL once the fleet is freed */
    char *name;                /* the flight's; KEY is its Redis part */
    char *key;
    agw_flight_tier_cb cb;
    void *arg;
    int refs;
    bool live;
    struct ksub *ksub;          /* subscribed: on KSUB's list; or NULL */
    bool copy_checked;          /* the copy was read after the subscription */
    bool lookup;                /* the claim script looks the store up */
    char holder[TOKEN_LEN + 1]; /* the claim waited on; "" when unknown */
    char token[TOKEN_LEN + 1];  /* our latest claim attempt */
    char orphan[TOKEN_LEN + 1]; /* HOLDER, once found not renewing */
    long long seen_pttl;        /* HOLDER's PTTL when last renewed... */
    int64_t seen_us;            /* ...as far as we know: read then */
    bool deferred;              /* TIMER delivers DEFERRED_OUTCOME */
    enum agw_flight_tier_outcome deferred_outcome;
    struct event *timer;
    LIST_ENTRY(agw_flight_wait) link;     /* fleet->waits */
    LIST_ENTRY(agw_flight_wait) sub_link; /* ksub->waits */
};

static void send_claim(struct agw_flight_wait *w);
static const struct agw_flight_tier_ops redis_fleet_ops;

static struct redis_fleet *
redis_of(struct agw_flight_tier *fleet)
{
    return (struct redis_fleet *)fleet;
}

/* ---------------------------------------------------------- helpers */

static char *
join_str(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *out = malloc(la + lb + lc + 1);

    if (out == NULL) {
        log_error("fleet: out of memory");
        abort();
    }
    memcpy(out, a, la);
    memcpy(out + la, b, lb);
    memcpy(out + la + lb, c, lc + 1);
    return out;
}

static struct timeval
ms_tv(long ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

    return tv;
}

static void
copy_token(char out[TOKEN_LEN + 1], const char *s, size_t len)
{
    if (len > TOKEN_LEN) {
        len = TOKEN_LEN;
    }
    memcpy(out, s, len);
    out[len] = '\0';
}

/* One of our tokens: TOKEN_LEN lowercase hex digits. */
static bool
token_ok(const char *s, size_t len)
{
    if (len != TOKEN_LEN) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

/* The decimal integer S[0..LEN) ("-1" allowed when MIN < 0) in [MIN,
 * MAX] into *OUT; false for anything else. */
static bool
number_in(const char *s, size_t len, int min, int max, int *out)
{
    bool neg = len > 0 && s[0] == '-';
    long long v = 0;

    if (len == (size_t)neg || len - neg > 10) {
        return false;
    }
    for (size_t i = neg; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    v = neg ? -v : v;
    if (v < min || v > max) {
        return false;
    }
    *out = (int)v;
    return true;
}

/*
 * "<token>\n<status>\n<retry>\n<body>" into TOKEN and RESP (the body
 * points into DATA): token 32 hex digits, status 100 to 599, retry -1 or
 * 0 to RETRY_AFTER_MAX_S, body at most AGW_RESPONSE_MAX_BYTES. False for
 * anything else.
 */
static bool
decode_answer(const char *data, size_t len, char token[TOKEN_LEN + 1],
              struct agw_response *resp)
{
    const char *end = data + len;
    const char *nl1 = memchr(data, '\n', len);
    const char *nl2 = nl1 != NULL ? memchr(nl1 + 1, '\n', end - nl1 - 1) : NULL;
    const char *nl3 = nl2 != NULL ? memchr(nl2 + 1, '\n', end - nl2 - 1) : NULL;

    if (nl3 == NULL || !token_ok(data, (size_t)(nl1 - data)) ||
        !number_in(nl1 + 1, (size_t)(nl2 - nl1 - 1), 100, 599, &resp->status) ||
        !number_in(nl2 + 1, (size_t)(nl3 - nl2 - 1), -1, RETRY_AFTER_MAX_S,
                   &resp->retry_after_s) ||
        (size_t)(end - nl3 - 1) > AGW_RESPONSE_MAX_BYTES) {
        return false;
    }
    copy_token(token, data, (size_t)(nl1 - data));
    resp->body = (char *)(nl3 + 1);
    resp->len = (size_t)(end - nl3 - 1);
    return true;
}

/* A reply out of shape: at warn now and then, never its contents. */
static void
bad_reply(struct redis_fleet *f, const char *what)
{
    int64_t now = agw_now_us();

    if (f->bad_warned_us != 0 &&
        now - f->bad_warned_us < BAD_REPLY_WARN_EVERY_US) {
        log_debug("fleet: %s", what);
        return;
    }
    f->bad_warned_us = now;
    log_warn("fleet: %s: Redis's state is not trusted (a key corrupted or "
             "planted?); deduplicating on this instance only",
             what);
}

static char *
encode_answer(const char *token, const struct agw_response *resp, size_t *len)
{
    char head[TOKEN_LEN + 40];
    int hlen = snprintf(head, sizeof(head), "%s\n%d\n%d\n", token, resp->status,
                        resp->retry_after_s);
    char *out = malloc((size_t)hlen + resp->len + 1);

    if (out == NULL) {
        return NULL;
    }
    memcpy(out, head, (size_t)hlen);
    if (resp->len > 0) {
        memcpy(out + hlen, resp->body, resp->len);
    }
    out[hlen + resp->len] = '\0';
    *len = (size_t)hlen + resp->len;
    return out;
}

/* ------------------------------------------------------ subscriptions */

/* The subscription CHANNEL belongs to, if it is one of ours. */
static struct ksub *
ksub_of_channel(struct redis_fleet *f, const char *channel)
{
    size_t n = strlen(f->prefix);

    if (strncmp(channel, f->prefix, n) != 0 ||
        strncmp(channel + n, "done:", 5) != 0) {
        return NULL;
    }
    return agw_table_get(f->ksubs, channel + n + 5);
}

/* W waits for its key's answer on the key's channel from now on. */
static struct ksub *
subscribe(struct redis_fleet *f, struct agw_flight_wait *w)
{
    struct ksub *ks = agw_table_get(f->ksubs, w->key);

    if (ks == NULL) {
        ks = calloc(1, sizeof(*ks));
        if (ks == NULL || (ks->key = strdup(w->key)) == NULL ||
            (ks->channel = join_str(f->prefix, "done:", w->key)) == NULL ||
            !agw_table_put(f->ksubs, w->key, ks)) {
            log_error("fleet: out of memory");
            abort();
        }
        LIST_INIT(&ks->waits);
        agw_redis_subscribe(f->sub, ks->channel);
    }
    LIST_INSERT_HEAD(&ks->waits, w, sub_link);
    w->ksub = ks;
    return ks;
}

static void
ksub_free(struct ksub *ks)
{
    free(ks->key);
    free(ks->channel);
    free(ks);
}

/* W no longer waits on its key's channel; the last one unsubscribes. */
static void
unsubscribe(struct redis_fleet *f, struct agw_flight_wait *w)
{
    struct ksub *ks = w->ksub;

    LIST_REMOVE(w, sub_link);
    w->ksub = NULL;
    if (LIST_EMPTY(&ks->waits)) {
        agw_table_remove(f->ksubs, ks->key);
        agw_redis_unsubscribe(f->sub, ks->channel);
        ksub_free(ks);
    }
}

/* ---------------------------------------------------------- leftovers */

static void
leftover_free(struct leftover *lo)
{
    free(lo->key);
    free(lo->answer);
    free(lo->value);
    free(lo);
}

static void
leftover_unlink(struct redis_fleet *f, struct leftover *lo)
{
    TAILQ_REMOVE(&f->leftovers, lo, link);
    f->nleftovers--;
}

/* The reply to a release: the leftover is done with, unless nothing came
 * back (Redis down or frozen): then it waits for the connection to come
 * back up (agw_flight_fleet_redis_state). */
static void
on_leftover_reply(struct redisReply *reply, const char *error, void *arg)
{
    struct leftover *lo = arg;
    struct redis_fleet *f = lo->fleet;

    lo->sent = false;
    if (f == NULL) {
        leftover_free(lo); /* the fleet was freed meanwhile */
        return;
    }
    if (reply == NULL) {
        log_warn("fleet: releasing the claim on %.16s... failed: %.200s; "
                 "released when Redis answers again",
                 lo->key, error);
        return;
    }
    if (reply->type != REDIS_REPLY_INTEGER) {
        log_warn(
            "fleet: releasing the claim on %.16s... failed: %.200s", lo->key,
            reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    }
    leftover_unlink(f, lo);
    leftover_free(lo);
}

/* RELEASE: the holder's release (publishes its answer whatever became of
 * the claim); else a leftover's, only while the claim is still ours. */
static void
send_leftover(struct redis_fleet *f, struct leftover *lo, bool release)
{
    char *lock = join_str(f->prefix, "lock:", lo->key);
    char *done = join_str(f->prefix, "done:", lo->key);
    char *stored = join_str(f->prefix, AGW_STORE_REDIS_KEY, lo->key);
    char *mark = join_str(f->prefix, "purged:", lo->key);
    const char *argv[9] = {
        lock,      done,       stored,      mark,
        lo->token, lo->answer, COPY_TTL_MS, lo->value != NULL ? lo->value : "",
        lo->ttl};
    size_t argvlen[9];

    for (int i = 0; i < 9; i++) {
        argvlen[i] = i == 5 ? lo->len : i == 7 ? lo->vlen : strlen(argv[i]);
    }
    lo->sent = true;
    agw_redis_script_call(f->cmd,
                          release ? &f->release_script : &f->leftover_script,
                          on_leftover_reply, lo, 4, 9, argv, argvlen);
    free(lock);
    free(done);
    free(stored);
    free(mark);
}

/* Keeps TOKEN's claim on KEY for release, with ANSWER (LEN bytes, taken
 * over; NULL: none). Past LEFTOVERS_MAX the oldest not out is let go. */
static struct leftover *
leftover_add(struct redis_fleet *f, const char *key, const char *token,
             char *answer, size_t len)
{
    struct leftover *lo = calloc(1, sizeof(*lo));
    struct leftover *old;

    if (answer == NULL) {
        answer = join_str(token, "\n", "");
        len = strlen(answer);
    }
    if (lo == NULL || (lo->key = strdup(key)) == NULL) {
        log_error("fleet: out of memory");
        abort();
    }
    lo->fleet = f;
    snprintf(lo->token, sizeof(lo->token), "%s", token);
    lo->answer = answer;
    lo->len = len;
    if (f->nleftovers >= LEFTOVERS_MAX) {
        TAILQ_FOREACH (old, &f->leftovers, link) {
            if (!old->sent) {
                log_debug("fleet: too many leftover claims: the one on "
                          "%.16s... is left to expire",
                          old->key);
                leftover_unlink(f, old);
                leftover_free(old);
                break;
            }
        }
    }
    TAILQ_INSERT_TAIL(&f->leftovers, lo, link);
    f->nleftovers++;
    return lo;
}

/* The command connection is up: every leftover not out yet is sent. */
static void
release_leftovers(struct redis_fleet *f)
{
    struct leftover *lo;

    TAILQ_FOREACH (lo, &f->leftovers, link) {
        if (!lo->sent) {
            log_debug("fleet: releasing the claim on %.16s... left when "
                      "Redis failed",
                      lo->key);
            send_leftover(f, lo, false);
        }
    }
}

/* ------------------------------------------------------------- waits */

static void
wait_unref(struct agw_flight_wait *w)
{
    if (--w->refs > 0) {
        return;
    }
    if (w->timer != NULL) {
        event_free(w->timer);
    }
    free(w->name);
    free(w->key);
    free(w);
}

/* Ends W's life as a waiter without a callback. */
static void
retire(struct agw_flight_wait *w)
{
    struct redis_fleet *f = w->fleet;

    w->live = false;
    evtimer_del(w->timer);
    if (f == NULL) {
        return;
    }
    if (w->ksub != NULL) {
        unsubscribe(f, w);
    }
    LIST_REMOVE(w, link);
}

/* The one way an outcome reaches the caller. Touches neither the fleet
 * nor W after the callback (it may free either). */
static void
deliver(struct agw_flight_wait *w, enum agw_flight_tier_outcome outcome,
        const struct agw_response *resp)
{
    if (!w->live) {
        return;
    }
    retire(w);
    w->cb(outcome, resp, w->arg);
    wait_unref(w);
}

static void on_renew_timer(evutil_socket_t fd, short what, void *arg);

static void
arm_renewal(struct claim *c)
{
    struct timeval tv = ms_tv(c->ttl_ms / 3 > 0 ? c->ttl_ms / 3 : 1);

    evtimer_add(c->timer, &tv);
}

static struct claim *
find_claim(struct redis_fleet *f, const char *name)
{
    return agw_table_get(f->claims, name);
}

/* remove_claim() is below, with the claim's end. */
static void remove_claim(struct redis_fleet *f, struct claim *gone);

static void
add_claim(struct redis_fleet *f, const char *name, const char *key,
          const char *token)
{
    struct claim *c = calloc(1, sizeof(*c));
    struct claim *old = find_claim(f, name);

    /* Redis gave us KEY again: a claim we still thought held expired
     * there, and must not be renewed. */
    if (old != NULL) {
        remove_claim(f, old);
    }
    if (c == NULL || (c->key = strdup(key)) == NULL ||
        (c->name = strdup(name)) == NULL ||
        (c->timer = evtimer_new(f->base, on_renew_timer, c)) == NULL) {
        log_error("fleet: out of memory");
        abort();
    }
    c->fleet = f;
    snprintf(c->token, sizeof(c->token), "%s", token);
    c->ttl_ms = f->claim_ttl_ms;
    c->held = true;
    c->refs = 1;
    if (!agw_table_put(f->claims, name, c)) {
        log_error("fleet: out of memory");
        abort();
    }
    arm_renewal(c);
}

static void
claim_unref(struct claim *c)
{
    if (--c->refs > 0) {
        return;
    }
    free(c->name);
    free(c->key);
    free(c);
}

/* Stops holding GONE: no more renewals (the key in Redis is left as
 * it is). */
static void
remove_claim(struct redis_fleet *f, struct claim *gone)
{
    if (!gone->held) {
        return;
    }
    agw_table_remove(f->claims, gone->name);
    gone->held = false;
    gone->fleet = NULL;
    event_free(gone->timer);
    gone->timer = NULL;
    claim_unref(gone);
}

/* Called first in every command callback of W: drops the command's
 * reference; false when W is no longer live (the reply is ignored). */
static bool
reply_for_live(struct agw_flight_wait *w)
{
    if (w->live) {
        w->refs--; /* the live reference keeps W allocated */
        return true;
    }
    wait_unref(w);
    return false;
}

static void
on_copy(struct redisReply *reply, const char *error, void *arg)
{
    struct agw_flight_wait *w = arg;
    struct agw_response resp;
    char token[TOKEN_LEN + 1];

    if (!reply_for_live(w)) {
        return;
    }
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        log_debug("fleet: reading the answer copy failed: %s",
                  reply != NULL ? reply->str : error);
        deliver(w, AGW_TIER_UNAVAILABLE, NULL);
        return;
    }
    if (reply->type == REDIS_REPLY_STRING &&
        decode_answer(reply->str, reply->len, token, &resp) &&
        strcmp(token, w->holder) == 0) {
        deliver(w, AGW_TIER_ANSWER, &resp);
    }
    /* Otherwise no answer yet (or an older flight's): wait. */
}

/* The holder may have published before we subscribed: read the copy. */
static void
check_copy(struct agw_flight_wait *w)
{
    struct redis_fleet *f = w->fleet;
    char *done = join_str(f->prefix, "done:", w->key);
    const char *argv[2] = {"GET", done};
    size_t argvlen[2] = {3, strlen(done)};

    w->copy_checked = true;
    w->refs++;
    agw_redis_command(f->cmd, on_copy, w, 2, argv, argvlen);
    free(done);
}

/*
 * How long a live holder leaves its claim unrenewed at most: a third of
 * its TTL, plus slack. Its TTL is ours, or longer (a reload lengthened
 * it); it is at most 3/2 of the PTTL read just after a renewal, since a
 * live holder's PTTL never falls below 2/3 of its TTL.
 */
static long long
renew_bound_ms(const struct agw_flight_wait *w)
{
    long long ours = w->fleet->claim_ttl_ms / 3;
    long long theirs = w->seen_pttl / 2;

    return (ours > theirs ? ours : theirs) + RENEW_SLACK_MS;
}

/* Looks again when the claim expires, or sooner, when a live holder
 * must have renewed it (orphan). */
static void
arm_recheck(struct agw_flight_wait *w, long long pttl)
{
    long long every = renew_bound_ms(w);
    struct timeval tv;

    if (pttl < 0) {
        pttl = w->fleet->claim_ttl_ms; /* no TTL: someone else's key */
    }
    tv = ms_tv((long)(pttl < every ? pttl : every) + RECHECK_SLACK_MS);
    event_base_update_cache_time(w->fleet->base);
    evtimer_add(w->timer, &tv);
}

/*
 * Whether HOLDER's claim went unrenewed longer than a live holder lets
 * it: its release was lost when Redis failed, or it is a claim sent
 * while Redis was frozen that ran after its sender gave up. Such a claim
 * would hold its waiters for its whole TTL, past their deadlines. A
 * holder renews every third of its TTL (renew_bound_ms).
 */
static bool
orphan(struct agw_flight_wait *w, const redisReply *holder, long long pttl)
{
    int64_t now = agw_now_us();
    long long elapsed_ms, jitter_ms;

    if (strlen(w->holder) != holder->len ||
        memcmp(w->holder, holder->str, holder->len) != 0) {
        w->seen_pttl = pttl; /* a new holder: start watching it */
        w->seen_us = now;
        return false;
    }
    elapsed_ms = (now - w->seen_us) / 1000;
    jitter_ms = w->fleet->claim_ttl_ms / 6;
    if (jitter_ms > PTTL_JITTER_MS) {
        jitter_ms = PTTL_JITTER_MS;
    }
    if (pttl > w->seen_pttl - elapsed_ms + jitter_ms) {
        w->seen_pttl = pttl; /* renewed since */
        w->seen_us = now;
        return false;
    }
    return elapsed_ms + ORPHAN_EARLY_MS >= renew_bound_ms(w);
}

static void
become_waiter(struct agw_flight_wait *w, const redisReply *holder,
              long long pttl)
{
    struct redis_fleet *f = w->fleet;
    struct ksub *ks;

    if (!agw_redis_is_up(f->sub)) {
        deliver(w, AGW_TIER_UNAVAILABLE, NULL);
        return;
    }
    if (orphan(w, holder, pttl)) {
        log_debug("fleet: the claim on %.16s... has not been renewed in "
                  "%lld ms: taking it over",
                  w->key, (long long)((agw_now_us() - w->seen_us) / 1000));
        copy_token(w->orphan, holder->str, holder->len);
        send_claim(w);
        return;
    }
    copy_token(w->holder, holder->str, holder->len);
    log_debug("fleet: %.16s... is claimed by %.8s... (PTTL %lld ms): waiting",
              w->key, w->holder, pttl);
    if (w->ksub == NULL) {
        ks = subscribe(f, w);
        if (ks->confirmed) {
            check_copy(w);
        }
    }
    arm_recheck(w, pttl);
}

/*
 * The claim script's reply: {1} ours; {0, holder, pttl} with holder one
 * of our tokens and pttl 0 to CLAIM_TTL_MAX_MS (every claim has a TTL);
 * {2, answer} and {3, stored} (decoded by the caller; 3 only when asked).
 */
static bool
claim_reply_ok(const redisReply *r, bool w_lookup)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        return false;
    }
    switch (r->element[0]->integer) {
    case 1:
        return r->elements == 1;
    case 0:
        return r->elements == 3 && r->element[1]->type == REDIS_REPLY_STRING &&
               token_ok(r->element[1]->str, r->element[1]->len) &&
               r->element[2]->type == REDIS_REPLY_INTEGER &&
               r->element[2]->integer >= 0 &&
               r->element[2]->integer <= CLAIM_TTL_MAX_MS;
    case 2:
        return r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING;
    case 3:
        return w_lookup && r->elements == 2 &&
               r->element[1]->type == REDIS_REPLY_STRING;
    default:
        return false;
    }
}

/*
 * The stored answer the claim script found: served as a GET of it is
 * (store_redis.c), or refused like one. Refused, the caller's own lookup
 * that follows UNAVAILABLE refuses it again and says so at warn: here
 * only at debug, so as not to spend bad_reply()'s warn on it.
 */
static void
deliver_stored(struct agw_flight_wait *w, const redisReply *stored)
{
    struct agw_response resp = {.retry_after_s = -1};
    const char *body;

    if (!agw_store_redis_decode(stored->str, stored->len, &resp.status, &body,
                                &resp.len)) {
        log_debug("fleet: the stored answer for %.16s... is out of shape: "
                  "not served",
                  w->key);
        deliver(w, AGW_TIER_UNAVAILABLE, NULL);
        return;
    }
    resp.body = (char *)body;
    deliver(w, AGW_TIER_STORED, &resp);
}

static void
on_claim(struct redisReply *reply, const char *error, void *arg)
{
    struct agw_flight_wait *w = arg;
    struct agw_response resp;
    char token[TOKEN_LEN + 1];

    if (w->fleet != NULL &&
        (reply == NULL || (!w->live && claim_reply_ok(reply, w->lookup) &&
                           reply->element[0]->integer == 1))) {
        /* Redis may run the claim yet (frozen), or ran it for a wait
         * cancelled meanwhile: nobody would release it. */
        leftover_add(w->fleet, w->key, w->token, NULL, 0);
        if (reply != NULL) {
            release_leftovers(w->fleet);
        }
    }
    if (!reply_for_live(w)) {
        return;
    }
    if (reply == NULL) {
        log_debug("fleet: claim failed: %s", error);
        deliver(w, AGW_TIER_UNAVAILABLE, NULL);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        log_warn("fleet: claim failed: %.200s", reply->str);
        deliver(w, AGW_TIER_UNAVAILABLE, NULL);
        return;
    }
    if (!claim_reply_ok(reply, w->lookup)) {
        bad_reply(w->fleet, "the claim script answered out of shape (a "
                            "holder that is not a token, a TTL missing or "
                            "too long)");
        deliver(w, AGW_TIER_UNAVAILABLE, NULL);
        return;
    }
    switch (reply->element[0]->integer) {
    case 1:
        add_claim(w->fleet, w->name, w->key, w->token);
        deliver(w, AGW_TIER_LEAD, NULL);
        break;
    case 2:
        if (!decode_answer(reply->element[1]->str, reply->element[1]->len,
                           token, &resp)) {
            bad_reply(w->fleet, "an answer copy that is not an answer");
            deliver(w, AGW_TIER_UNAVAILABLE, NULL);
            return;
        }
        deliver(w, AGW_TIER_ANSWER, &resp);
        break;
    case 3:
        deliver_stored(w, reply->element[1]);
        break;
    default:
        become_waiter(w, reply->element[1], reply->element[2]->integer);
        break;
    }
}

static void
send_claim(struct agw_flight_wait *w)
{
    struct redis_fleet *f = w->fleet;
    char *lock = join_str(f->prefix, "lock:", w->key);
    char *done = join_str(f->prefix, "done:", w->key);
    char *stored = join_str(f->prefix, AGW_STORE_REDIS_KEY, w->key);
    char ttl[16];
    const char *argv[8] = {lock, done,      stored,    w->token,
                           ttl,  w->holder, w->orphan, w->lookup ? "1" : ""};
    size_t argvlen[8];

    agw_request_id_new(w->token); /* 32 random hex characters */
    snprintf(ttl, sizeof(ttl), "%d", f->claim_ttl_ms);
    for (int i = 0; i < 8; i++) {
        argvlen[i] = strlen(argv[i]);
    }
    w->refs++;
    agw_redis_script_call(f->cmd, &f->claim_script, on_claim, w, 3, 8, argv,
                          argvlen);
    free(lock);
    free(done);
    free(stored);
}

static void
on_wait_timer(evutil_socket_t fd, short what, void *arg)
{
    struct agw_flight_wait *w = arg;

    if (w->deferred) {
        w->deferred = false;
        deliver(w, w->deferred_outcome, NULL);
        return;
    }
    /* The claim we waited on should be gone: answer, takeover, or it
     * was renewed (then we learn the new PTTL). */
    send_claim(w);
}

/* ------------------------------------------------ subscriber events */

/* The live waits subscribed to KS (NULL: to any key), each with an extra
 * reference, so callbacks may cancel or free anything meanwhile. Caller
 * frees the array (release_snapshot()). */
static struct agw_flight_wait **
snapshot(struct redis_fleet *f, struct ksub *ks, size_t *n)
{
    struct agw_flight_wait **out, *w;
    size_t count = 0, i = 0;

    if (ks != NULL) {
        LIST_FOREACH (w, &ks->waits, sub_link) {
            count++;
        }
    } else {
        LIST_FOREACH (w, &f->waits, link) {
            count += w->ksub != NULL;
        }
    }
    out = calloc(count + 1, sizeof(*out));
    if (out == NULL) {
        log_error("fleet: out of memory");
        abort();
    }
    if (ks != NULL) {
        LIST_FOREACH (w, &ks->waits, sub_link) {
            out[i++] = w;
        }
    } else {
        LIST_FOREACH (w, &f->waits, link) {
            if (w->ksub != NULL) {
                out[i++] = w;
            }
        }
    }
    for (i = 0; i < count; i++) {
        out[i]->refs++;
    }
    *n = count;
    return out;
}

static void
release_snapshot(struct agw_flight_wait **ws, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        wait_unref(ws[i]);
    }
    free(ws);
}

/* HOLDER's claim on KS's key is gone without an answer: its waiters claim
 * again now rather than when they would have looked. */
static void
claim_again(struct redis_fleet *f, struct ksub *ks, const char *holder)
{
    size_t n;
    struct agw_flight_wait **ws = snapshot(f, ks, &n);

    for (size_t i = 0; i < n; i++) {
        struct agw_flight_wait *w = ws[i];

        if (w->live && strncmp(w->holder, holder, TOKEN_LEN) == 0) {
            evtimer_del(w->timer);
            send_claim(w);
        }
    }
    release_snapshot(ws, n);
}

static void
on_message(const char *channel, const char *data, size_t len, void *arg)
{
    struct redis_fleet *f = arg;
    struct ksub *ks = ksub_of_channel(f, channel);
    struct agw_response resp;
    char token[TOKEN_LEN + 1];
    struct agw_flight_wait **ws;
    size_t n;
    bool holders_only = len > 0 && data[0] == '!';

    if (strcmp(channel, f->purge_channel) == 0) {
        if (f->on_purge != NULL && len == 64 &&
            strspn(data, "0123456789abcdef") == 64) {
            f->on_purge(AGW_FLEET_PURGE_KEY, data, f->on_purge_arg);
        }
        return;
    }
    if (ks == NULL) {
        return;
    }
    if (len == TOKEN_LEN + 1 && data[TOKEN_LEN] == '\n' &&
        token_ok(data, TOKEN_LEN)) {
        claim_again(f, ks, data);
        return;
    }
    if (!decode_answer(data + holders_only, len - holders_only, token, &resp)) {
        bad_reply(f, "a message on an answer channel that is not an answer");
        return;
    }
    ws = snapshot(f, ks, &n);
    for (size_t i = 0; i < n; i++) {
        if (!holders_only || strcmp(ws[i]->holder, token) == 0) {
            deliver(ws[i], AGW_TIER_ANSWER, &resp);
        }
    }
    release_snapshot(ws, n);
}

static void read_missed(struct redis_fleet *f);

static void
on_subscribed(const char *channel, void *arg)
{
    struct redis_fleet *f = arg;
    struct ksub *ks = ksub_of_channel(f, channel);
    struct agw_flight_wait *w;

    /* Purges published while this connection was away were missed. */
    if (strcmp(channel, f->purge_channel) == 0) {
        if (f->on_purge != NULL) {
            f->on_purge(AGW_FLEET_PURGE_L1, NULL, f->on_purge_arg);
        }
        if (f->purge_lost_us != 0) {
            read_missed(f);
        }
        return;
    }
    if (ks == NULL) {
        return;
    }
    ks->confirmed = true;
    /* Sending a command never calls back at once: plain iteration. */
    LIST_FOREACH (w, &ks->waits, sub_link) {
        if (!w->copy_checked) {
            check_copy(w);
        }
    }
}

/* Messages sent while the subscriber was away are lost, and the holder's
 * Redis is likely the one that failed: waiters go on locally. */
static void
on_sub_state(bool up, void *arg)
{
    struct redis_fleet *f = arg;
    struct agw_flight_wait **ws;
    struct agw_table_iter it;
    void *ks;
    size_t n;

    if (up) {
        return;
    }
    f->purge_downs++;
    if (f->purge_lost_us == 0) {
        f->purge_lost_us = agw_now_us();
    }
    agw_table_iter_init(f->ksubs, &it);
    while (agw_table_next(&it, NULL, &ks)) {
        ((struct ksub *)ks)->confirmed = false;
    }
    ws = snapshot(f, NULL, &n);
    for (size_t i = 0; i < n; i++) {
        deliver(ws[i], AGW_TIER_UNAVAILABLE, NULL);
    }
    release_snapshot(ws, n);
}

/* Every live wait ends UNAVAILABLE: Redis failed, the holder's answer may
 * never reach us through it, and the callers go on locally. */
static void
fail_waits(struct redis_fleet *f)
{
    struct agw_flight_wait **ws, *w;
    size_t n = 0, i = 0;

    LIST_FOREACH (w, &f->waits, link) {
        n++;
    }
    ws = calloc(n + 1, sizeof(*ws));
    if (ws == NULL) {
        log_error("fleet: out of memory");
        abort();
    }
    LIST_FOREACH (w, &f->waits, link) {
        w->refs++;
        ws[i++] = w;
    }
    for (i = 0; i < n; i++) {
        deliver(ws[i], AGW_TIER_UNAVAILABLE, NULL);
    }
    release_snapshot(ws, n);
}

void
agw_flight_fleet_redis_state(struct agw_flight_tier *fleet, bool up)
{
    struct redis_fleet *f;

    if (fleet == NULL || fleet->ops != &redis_fleet_ops) {
        return;
    }
    f = redis_of(fleet);
    if (!up) {
        fail_waits(f);
    } else if (agw_redis_is_up(f->cmd)) {
        release_leftovers(f);
    }
}

/* The PING's reply, or its failure: a timeout recycles the connection,
 * whose going down ends the waits (agw_flight_fleet_redis_state). */
static void
on_watch_reply(struct redisReply *reply, const char *error, void *arg)
{
    struct watch_op *op = arg;

    if (op->f != NULL) {
        op->f->watch_out = NULL;
    }
    free(op);
}

static void
arm_watch(struct redis_fleet *f)
{
    struct timeval tv = ms_tv(WATCH_EVERY_MS);

    if (!evtimer_pending(f->watch_timer, NULL)) {
        evtimer_add(f->watch_timer, &tv);
    }
}

static void
on_watch_timer(evutil_socket_t fd, short what, void *arg)
{
    struct redis_fleet *f = arg;

    if (LIST_EMPTY(&f->waits)) {
        return;
    }
    if (f->watch_out == NULL && agw_redis_is_up(f->cmd)) {
        f->watch_out = malloc(sizeof(*f->watch_out));
        if (f->watch_out == NULL) {
            log_error("fleet: out of memory");
            abort();
        }
        f->watch_out->f = f;
        agw_redis_commandf(f->cmd, on_watch_reply, f->watch_out, "PING");
    }
    arm_watch(f);
}

/* ------------------------------------------------------------ public */

struct agw_flight_tier *
agw_flight_fleet_new(struct event_base *base, struct agw_redis *cmd,
                     struct agw_redis *sub, const char *prefix,
                     int claim_ttl_ms)
{
    struct redis_fleet *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return NULL;
    }
    f->prefix = strdup(prefix != NULL ? prefix : "");
    if (f->prefix == NULL) {
        free(f);
        return NULL;
    }
    f->watch_timer = evtimer_new(base, on_watch_timer, f);
    f->ksubs = agw_table_new(0);
    f->claims = agw_table_new(0);
    f->purge_channel = join_str(f->prefix, "purge", "");
    f->purges_key = join_str(f->prefix, "purges", "");
    if (f->watch_timer == NULL || f->ksubs == NULL || f->claims == NULL ||
        f->purge_channel == NULL || f->purges_key == NULL ||
        !agw_redis_script_init(&f->claim_script, claim_lua) ||
        !agw_redis_script_init(&f->release_script, release_lua) ||
        !agw_redis_script_init(&f->renew_script, renew_lua) ||
        !agw_redis_script_init(&f->leftover_script, leftover_lua)) {
        if (f->watch_timer != NULL) {
            event_free(f->watch_timer);
        }
        agw_table_free(f->ksubs);
        agw_table_free(f->claims);
        free(f->purge_channel);
        free(f->purges_key);
        free(f->prefix);
        free(f);
        return NULL;
    }
    f->base_ops.ops = &redis_fleet_ops;
    f->base = base;
    f->cmd = cmd;
    f->sub = sub;
    f->claim_ttl_ms = claim_ttl_ms > 0 ? claim_ttl_ms : 1;
    f->purge_lost_us = agw_now_us();
    LIST_INIT(&f->waits);
    TAILQ_INIT(&f->leftovers);
    agw_redis_set_subscriber(sub, on_message, on_subscribed, on_sub_state, f);
    agw_redis_subscribe(sub, f->purge_channel);
    return &f->base_ops;
}

/* ------------------------------------------------------------ purges */

/* KEYS: the stored answer, the answer's copy for late waiters, the purge
 * channel, the claim, the purge mark, the purges set. ARGV: the dedupe
 * key, the mark's TTL (ms), PURGES_MAX. Both copies go, and the claim:
 * the next call claims anew, and a flight under way no longer stores its
 * answer (release_lua: its claim is gone and the mark is there). Every
 * instance hears of it, or reads it back from the set (read_missed),
 * which keeps the purges of the mark's TTL, at most PURGES_MAX (TIME
 * before writes: scripts replicate their effects, replicate_commands is
 * for Redis < 5). Returns whether the stored answer was there. */
static const char purge_lua[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local n = redis.call('DEL', KEYS[1])\n"
    "redis.call('DEL', KEYS[2])\n"
    "redis.call('DEL', KEYS[4])\n"
    "redis.call('SET', KEYS[5], '1', 'PX', ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZADD', KEYS[6], now, ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - tonumber(ARGV[2]))\n"
    "redis.call('ZREMRANGEBYRANK', KEYS[6], 0, -1 - tonumber(ARGV[3]))\n"
    "redis.call('PEXPIRE', KEYS[6], ARGV[2])\n"
    "redis.call('PUBLISH', KEYS[3], ARGV[1])\n"
    "return n\n";

/* KEYS: the purges set. ARGV: how long ago (ms) the subscriber may last
 * have heard a purge, PURGES_MAX. {full, keys}: the keys purged since
 * (Redis's clock on both sides), full 1 when the set holds PURGES_MAX
 * entries (purges may have been trimmed off it). */
static const char missed_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local full = redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2])\n"
    "return {full and 1 or 0, redis.call('ZRANGEBYSCORE', KEYS[1], "
    "now - tonumber(ARGV[1]), '+inf', 'LIMIT', 0, tonumber(ARGV[2]))}\n";

static struct agw_redis_script purge_script, missed_script;
static pthread_once_t purge_once = PTHREAD_ONCE_INIT;

static void
init_purge_script(void)
{
    if (!agw_redis_script_init(&purge_script, purge_lua) ||
        !agw_redis_script_init(&missed_script, missed_lua)) {
        log_error("fleet: cannot digest the purge scripts");
        abort();
    }
}

static bool
key_ok(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING && r->len == 64 &&
           strspn(r->str, "0123456789abcdef") == 64;
}

enum agw_fleet_missed
agw_flight_fleet_missed_purges(const redisReply *reply,
                               void (*forget)(const char *key, void *arg),
                               void *arg, size_t *bad)
{
    const redisReply *keys;

    *bad = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        (reply->element[0]->integer != 0 && reply->element[0]->integer != 1) ||
        reply->element[1]->type != REDIS_REPLY_ARRAY ||
        reply->element[1]->elements > PURGES_MAX) {
        return AGW_FLEET_MISSED_BAD;
    }
    if (reply->element[0]->integer == 1) {
        return AGW_FLEET_MISSED_TRIMMED;
    }
    keys = reply->element[1];
    for (size_t i = 0; i < keys->elements; i++) {
        if (key_ok(keys->element[i])) {
            forget(keys->element[i]->str, arg);
        } else {
            (*bad)++;
        }
    }
    return AGW_FLEET_MISSED_KNOWN;
}

/* Whatever was missed is dropped now (up to the read-back sent with
 * DOWNS): nothing is missed any more unless the subscriber went down
 * again since. */
static void
missed_done(struct redis_fleet *f, unsigned downs)
{
    if (f->purge_downs == downs) {
        f->purge_lost_us = 0;
    }
}

/* Which purges were missed is not known: every memory copy goes. */
static void
forget_all(struct redis_fleet *f, unsigned downs, const char *why)
{
    log_info("fleet: purges missed while the subscription was away are "
             "not known (%s): the memory table is cleared",
             why);
    if (f->on_purge != NULL) {
        f->on_purge(AGW_FLEET_PURGE_ALL, NULL, f->on_purge_arg);
    }
    missed_done(f, downs);
}

static void
forget_key(const char *key, void *arg)
{
    struct redis_fleet *f = arg;

    if (f->on_purge != NULL) {
        f->on_purge(AGW_FLEET_PURGE_KEY, key, f->on_purge_arg);
    }
}

static void
on_missed(struct redisReply *reply, const char *error, void *arg)
{
    struct missed_op *op = arg;
    struct redis_fleet *f = op->f;
    unsigned downs = op->downs;
    enum agw_fleet_missed got = AGW_FLEET_MISSED_BAD;
    size_t bad = 0;

    free(op);
    if (f == NULL) {
        return;
    }
    f->missed_out = NULL;
    if (error == NULL) {
        got = agw_flight_fleet_missed_purges(reply, forget_key, f, &bad);
    }
    if (got == AGW_FLEET_MISSED_BAD && error == NULL &&
        reply->type != REDIS_REPLY_ERROR) {
        bad_reply(f, "the read-back of missed purges answered out of shape");
    }
    if (got != AGW_FLEET_MISSED_KNOWN) {
        forget_all(f, downs,
                   got == AGW_FLEET_MISSED_TRIMMED
                       ? "more purges than the set keeps"
                       : "the read-back failed");
        return;
    }
    if (bad > 0) {
        bad_reply(f, "a purge read back that is not a key");
    }
    log_debug("fleet: purges missed while the subscription was away "
              "dropped from the memory table");
    missed_done(f, downs);
}

/* The purge channel is confirmed again: the purges published since it
 * may have stopped hearing them are read back and dropped, or, past the
 * set's retention, all memory copies are. */
static void
read_missed(struct redis_fleet *f)
{
    int64_t away_ms = (agw_now_us() - f->purge_lost_us) / 1000;
    char since[24];
    const char *argv[3];
    size_t argvlen[3];

    pthread_once(&purge_once, init_purge_script);
    if (f->missed_out != NULL) {
        f->missed_out->f = NULL; /* this one reads from as far back */
    }
    if (away_ms + MISSED_SLACK_MS >= PURGE_MARK_MS) {
        forget_all(f, f->purge_downs, "away longer than purges are kept");
        return;
    }
    f->missed_out = malloc(sizeof(*f->missed_out));
    if (f->missed_out == NULL) {
        log_error("fleet: out of memory");
        abort();
    }
    f->missed_out->f = f;
    f->missed_out->downs = f->purge_downs;
    snprintf(since, sizeof(since), "%lld",
             (long long)(away_ms + MISSED_SLACK_MS));
    argv[0] = f->purges_key;
    argv[1] = since;
    argv[2] = ARG_OF(PURGES_MAX);
    for (int i = 0; i < 3; i++) {
        argvlen[i] = strlen(argv[i]);
    }
    agw_redis_script_call(f->cmd, &missed_script, on_missed, f->missed_out, 1,
                          3, argv, argvlen);
}

void
agw_flight_fleet_on_purge(struct agw_flight_tier *fleet,
                          void (*cb)(enum agw_fleet_purge what, const char *key,
                                     void *arg),
                          void *arg)
{
    struct redis_fleet *f;

    if (fleet == NULL || fleet->ops != &redis_fleet_ops) {
        return;
    }
    f = redis_of(fleet);
    f->on_purge = cb;
    f->on_purge_arg = arg;
}

void
agw_flight_fleet_purge(struct agw_flight_tier *fleet, const char *key,
                       void (*cb)(struct redisReply *reply, const char *error,
                                  void *arg),
                       void *arg)
{
    struct redis_fleet *f;
    char *stored, *copy, *lock, *mark;
    const char *argv[9];
    size_t argvlen[9];

    if (fleet == NULL || fleet->ops != &redis_fleet_ops) {
        cb(NULL, "no fleet", arg);
        return;
    }
    f = redis_of(fleet);
    pthread_once(&purge_once, init_purge_script);
    stored = join_str(f->prefix, AGW_STORE_REDIS_KEY, key);
    copy = join_str(f->prefix, "done:", key);
    lock = join_str(f->prefix, "lock:", key);
    mark = join_str(f->prefix, "purged:", key);
    argv[0] = stored;
    argv[1] = copy;
    argv[2] = f->purge_channel;
    argv[3] = lock;
    argv[4] = mark;
    argv[5] = f->purges_key;
    argv[6] = key;
    argv[7] = ARG_OF(PURGE_MARK_MS);
    argv[8] = ARG_OF(PURGES_MAX);
    for (int i = 0; i < 9; i++) {
        argvlen[i] = strlen(argv[i]);
    }
    /* The command copies its arguments. */
    agw_redis_script_call(f->cmd, &purge_script, cb, arg, 6, 9, argv, argvlen);
    free(stored);
    free(copy);
    free(lock);
    free(mark);
}

static void
redis_fleet_free(struct agw_flight_tier *fleet)
{
    struct redis_fleet *f = redis_of(fleet);
    struct agw_table_iter it;
    void *c;

    agw_redis_set_subscriber(f->sub, NULL, NULL, NULL, NULL);
    while (!LIST_EMPTY(&f->waits)) {
        struct agw_flight_wait *w = LIST_FIRST(&f->waits);

        retire(w); /* the last wait on a key unsubscribes it */
        w->fleet = NULL;
        wait_unref(w);
    }
    agw_table_iter_init(f->claims, &it);
    while (agw_table_next(&it, NULL, &c)) {
        remove_claim(f, c);
    }
    agw_table_free(f->claims);
    agw_table_free(f->ksubs);
    while (!TAILQ_EMPTY(&f->leftovers)) {
        struct leftover *lo = TAILQ_FIRST(&f->leftovers);

        leftover_unlink(f, lo);
        lo->fleet = NULL;
        if (!lo->sent) {
            leftover_free(lo); /* else its reply frees it */
        }
    }
    if (f->watch_out != NULL) {
        f->watch_out->f = NULL; /* its reply frees it */
    }
    if (f->missed_out != NULL) {
        f->missed_out->f = NULL; /* its reply frees it */
    }
    event_free(f->watch_timer);
    free(f->purge_channel);
    free(f->purges_key);
    free(f->prefix);
    free(f);
}

static void
defer_outcome(struct agw_flight_wait *w, enum agw_flight_tier_outcome outcome)
{
    struct timeval now = {0, 0};

    w->deferred = true;
    w->deferred_outcome = outcome;
    evtimer_add(w->timer, &now);
}

static struct agw_flight_wait *
join_with(struct agw_flight_tier *fleet, const char *name, bool lookup,
          agw_flight_tier_cb cb, void *arg)
{
    struct redis_fleet *f = redis_of(fleet);
    struct agw_flight_wait *w = calloc(1, sizeof(*w));

    if (w == NULL || (w->name = strdup(name)) == NULL ||
        (w->key = strndup(name, strcspn(name, "#"))) == NULL ||
        (w->timer = evtimer_new(f->base, on_wait_timer, w)) == NULL) {
        log_error("fleet: out of memory");
        abort();
    }
    w->fleet = f;
    w->cb = cb;
    w->arg = arg;
    w->refs = 1;
    w->live = true;
    w->lookup = lookup;
    LIST_INSERT_HEAD(&f->waits, w, link);
    if (!agw_redis_is_up(f->cmd) || !agw_redis_is_up(f->sub)) {
        defer_outcome(w, AGW_TIER_UNAVAILABLE);
    } else {
        send_claim(w);
        arm_watch(f);
    }
    return w;
}

static struct agw_flight_wait *
redis_fleet_join(struct agw_flight_tier *fleet, const char *key,
                 agw_flight_tier_cb cb, void *arg)
{
    return join_with(fleet, key, false, cb, arg);
}

static struct agw_flight_wait *
redis_fleet_lookup(struct agw_flight_tier *fleet, const char *key,
                   agw_flight_tier_cb cb, void *arg)
{
    return join_with(fleet, key, true, cb, arg);
}

static void
redis_fleet_cancel(struct agw_flight_tier *fleet, struct agw_flight_wait *w)
{
    if (w == NULL || !w->live) {
        return;
    }
    retire(w);
    wait_unref(w);
}

/* A renewal's reply: 1 renewed, 0 the claim is no longer ours. */
static void
on_renewed(struct redisReply *reply, const char *error, void *arg)
{
    struct claim *c = arg;

    if (reply == NULL) {
        /* Redis is down or slow (logged by redis.c): try again on time. */
        log_debug("fleet: renewing the claim on %.16s... failed: %s", c->key,
                  error);
    } else if (reply->type != REDIS_REPLY_INTEGER ||
               (reply->integer != 0 && reply->integer != 1)) {
        log_warn("fleet: renewing the claim on %.16s... failed: %.200s", c->key,
                 reply->type == REDIS_REPLY_ERROR ? reply->str
                                                  : "unexpected reply");
    } else if (reply->integer == 0 && c->held && !c->lost) {
        log_warn("fleet: the claim on %.16s... expired before it was renewed "
                 "(or an operator purged the key)",
                 c->key);
        c->lost = true; /* someone else's now: leave it be */
        evtimer_del(c->timer);
    }
    claim_unref(c);
}

static void
send_renewal(struct claim *c)
{
    struct redis_fleet *f = c->fleet;
    char *lock = join_str(f->prefix, "lock:", c->key);
    char ttl[16];
    const char *argv[3] = {lock, c->token, ttl};
    size_t argvlen[3];

    snprintf(ttl, sizeof(ttl), "%d", c->ttl_ms);
    for (int i = 0; i < 3; i++) {
        argvlen[i] = strlen(argv[i]);
    }
    c->refs++;
    agw_redis_script_call(f->cmd, &f->renew_script, on_renewed, c, 1, 3, argv,
                          argvlen);
    free(lock);
}

/* Renews while held, so that an attempt longer than the claim's TTL (a
 * reload lengthened request_timeout_ms) never lets a waiter elsewhere
 * take over from a live holder. */
static void
on_renew_timer(evutil_socket_t fd, short what, void *arg)
{
    struct claim *c = arg;

    send_renewal(c);
    arm_renewal(c);
}

static void
redis_fleet_renew(struct agw_flight_tier *fleet, const char *key, int ttl_ms)
{
    struct redis_fleet *f = redis_of(fleet);
    struct claim *c = find_claim(f, key);

    if (c == NULL || c->lost) {
        log_debug("fleet: renew of %.16s...: no claim held", key);
        return;
    }
    /* The renewal timer keeps at least 2/3 of c->ttl_ms ahead of the
     * claim: only a longer TTL needs a round trip now. */
    if (ttl_ms <= c->ttl_ms) {
        return;
    }
    c->ttl_ms = ttl_ms;
    send_renewal(c);
    arm_renewal(c);
}

/* Publishes RESP and, with TTL_S > 0, stores it: one script. If Redis
 * does not take it, a leftover released when Redis answers again. */
static void
release_storing(struct agw_flight_tier *fleet, const char *key,
                const struct agw_response *resp, long ttl_s)
{
    struct redis_fleet *f = redis_of(fleet);
    struct claim *c = find_claim(f, key);
    struct leftover *lo;
    char *answer;
    size_t alen;

    if (c == NULL) {
        log_debug("fleet: release of %.16s...: no claim held", key);
        return;
    }
    answer = encode_answer(c->token, resp, &alen);
    if (answer == NULL) {
        log_error("fleet: out of memory");
        abort();
    }
    lo = leftover_add(f, c->key, c->token, answer, alen);
    if (ttl_s > 0) {
        lo->value = agw_store_redis_encode(resp->status, resp->body, resp->len,
                                           &lo->vlen);
        if (lo->value == NULL) {
            log_error("fleet: out of memory");
            abort();
        }
        snprintf(lo->ttl, sizeof(lo->ttl), "%ld", ttl_s);
    }
    send_leftover(f, lo, true);
    remove_claim(f, c);
}

static void
redis_fleet_release(struct agw_flight_tier *fleet, const char *key,
                    const struct agw_response *resp)
{
    release_storing(fleet, key, resp, 0);
}

/* The claim is left to expire; a waiter elsewhere then takes over. */
static void
redis_fleet_abandon(struct agw_flight_tier *fleet, const char *key)
{
    struct redis_fleet *f = redis_of(fleet);
    struct claim *c = find_claim(f, key);

    if (c != NULL) {
        remove_claim(f, c);
    }
}

static const struct agw_flight_tier_ops redis_fleet_ops = {
    .join = redis_fleet_join,
    .cancel = redis_fleet_cancel,
    .renew = redis_fleet_renew,
    .release = redis_fleet_release,
    .abandon = redis_fleet_abandon,
    .free = redis_fleet_free,
    .lookup = redis_fleet_lookup,
    .release_storing = release_storing,
};
