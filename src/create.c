/*
 * create.c - the Create Asset pipeline. A call travels one way, and this
 * file reads in that order: validate -> peek at the in-process store ->
 * join the key's flight (flight.h: this loop's, then the process's, then
 * the fleet's; a waiter stops there) -> (leader only) store lookup unless
 * the fleet's claim looked -> rate-limit slot -> upstream attempt, with
 * retries -> store write -> answer the leader and every waiter. With
 * Redis, the fleet's claim script does the store lookup and its release
 * the store write (flight_fleet.h): a miss is three round trips (claim, slot,
 * release) and a hit at most one.
 *
 * A call is a state machine (enum call_state): the state says what it
 * waits for. Every callback enters through resume(), which checks that
 * the call is still in the state that callback belongs to; each stage
 * ends by moving to the next state or by finish(), the only way out for
 * a leader (answer() for the rest), so every call is answered once.
 *
 * Waiting for a slot (SPEC §4): a call's limiter waits add up to at most
 * max_wait_ms, whatever happens meanwhile (a grant, a re-grant, a hold at
 * the departure guard); past that it is answered 429. A slot is valid only
 * in the limiter epoch that granted it: when the limiter in force changes
 * (Redis leaves or comes back), waiting calls ask the new one again, oldest
 * first, instead of leaving on the old schedule. A call that went on
 * without the fleet's single flight while Redis was away takes part in it
 * before it goes upstream, if Redis is back by then.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/rand.h>

#include "admin_stats.h"
#include "auth.h"
#include "config.h"
#include "create.h"
#include "flight.h"
#include "gateway.h"
#include "gcra.h"
#include "guard.h"
#include "limiter.h"
#include "log.h"
#include "metrics.h"
#include "reply.h"
#include "request.h"
#include "retry.h"
#include "store.h"
#include "tls_server.h"
#include "upstream.h"
#include "util.h"

#define US_PER_MS 1000
#define US_PER_S 1000000
#define UPSTREAM_PAUSE_DEFAULT_S 1
/* A call told to ask the limiter again (batch, capped) asks up to this
 * much later still, drawn at random: calls of several instances given
 * the same turn do not all ask at once (SPEC §11). */
#define SLOT_RETRY_JITTER_US 2000
/* Such a call asks with this much less than its budget left, so that a
 * turn it is given still leaves room for asking again (the jitter, a
 * late timer, the round trip): a turn at the very end of its budget
 * would be refused on arrival, the slot it takes then wasted. */
#define SLOT_TURN_MARGIN_US 50000
/* A fleet claim outlives the attempt it covers by this much. */
#define CLAIM_SLACK_MS 1000
/* A stored answer holding the key is served (redacted) on every hit:
 * said at warn at most this often per worker. */
#define REDACTED_WARN_EVERY_US (60 * 1000000LL)

/*
 * What a call waits for. Store lookups and limiter requests have no
 * cancel: a call answered (deadline, shutdown) in LOOKUP or SLOT becomes
 * DONE and stays allocated until that one callback comes back; every
 * other wait is cancelled by finish().
 */
enum call_state {
    CALL_RUNNING, /* a step of it runs now: it waits for nothing */
    CALL_WAITER,  /* waits for this loop's leader of its key (QUEUED) */
    CALL_LOOKUP,  /* leader: a store lookup is out */
    CALL_FLIGHT,  /* leader here: waits on a wider flight (flight.h) */
    CALL_SLOT,    /* a rate-limit slot request is out */
    CALL_QUEUED,  /* a timer: the slot granted later, or the departure guard */
    CALL_ATTEMPT, /* an upstream attempt is out */
    CALL_BACKOFF, /* a timer: the pause before the next attempt */
    CALL_DONE,    /* answered; only its LOOKUP or SLOT callback is still due */
};

/* A set of states, for resume(). */
#define IN(state) (1u << (state))

struct agw_call {
    struct agw_gateway *gw;
    struct agw_config *cfg;  /* the snapshot it started with; a ref */
    struct agw_responder to; /* the caller's side: evhttp's, or a test's */
    char request_id[AGW_REQUEST_ID_MAX + 1];
    struct agw_request request;
    char upstream_path[96];
    char business_id[48];               /* as sent, for the access log */
    char caller[AGW_AUTH_NAME_MAX + 1]; /* "-" when mode = none */
    enum call_state state;
    enum call_state late; /* DONE only: the state whose callback is due */
    int64_t upstream_us;  /* time spent in upstream attempts */
    int64_t start_us;
    int64_t deadline_us;
    int64_t waited_us;     /* time spent waiting for rate-limit slots */
    int64_t paused_us;     /* upstream 429 pauses: not counted as waiting */
    int64_t wait_since_us; /* waiting for a slot since; 0: not waiting */
    uint64_t slot_epoch;   /* the limiter epoch its slot was granted in */
    /* Its caller's class and cap (SPEC §11), and what it asks the
     * limiter (kept here: the limiter writes to it before on_slot()). */
    struct agw_caller_policy policy;
    struct agw_limiter_ask ask;
    bool slot_retry; /* QUEUED: to ask again, not to leave */
    int attempts;    /* upstream attempts sent */
    int upstream_status;
    bool no_cache;
    bool miss_counted;
    int64_t attempt_start_us;
    /* Leaders only (arm_timers()): a hit needs neither. */
    struct event *timer;              /* QUEUED and BACKOFF */
    struct event *deadline;           /* request_deadline_ms after start_us */
    struct agw_upstream_call *upcall; /* ATTEMPT */
    struct agw_flight flight;         /* its key's, in every tier */
    TAILQ_ENTRY(agw_call) link;       /* gw->leaders */
};

/* The stages, in the order a call travels them. */
static void on_flight(enum agw_flight_outcome outcome,
                      const struct agw_response *resp, void *arg);
static void lead(struct agw_call *call, enum agw_flight_outcome joined);
static void look_up_then_upstream(struct agw_call *call);
static void go_upstream(struct agw_call *call);
static void acquire_slot(struct agw_call *call);
static double random_unit(void);
static void on_slot(bool granted, int64_t wait_us, uint64_t epoch, void *arg);
static void send_attempt(struct agw_call *call);
static void on_upstream(const struct agw_upstream_result *res, void *arg);
static void on_upstream_response(struct agw_call *call,
                                 const struct agw_upstream_result *res);
static void store_answer(struct agw_call *call,
                         const struct agw_upstream_result *res);
static void on_upstream_429(struct agw_call *call, int retry_after_s);
static bool retry_later(struct agw_call *call, enum agw_attempt_outcome outcome,
                        int status);
static void finish(struct agw_call *call, const struct agw_response *resp,
                   const char *cache);
static void finish_error(struct agw_call *call, int status, int code,
                         const char *message, int retry_after_s);
static void answer(struct agw_call *call, const struct agw_response *resp,
                   const char *cache);

/* ---- the state machine ---- */

static void
release(struct agw_call *call)
{
    agw_config_unref(call->cfg);
    agw_request_clear(&call->request);
    free(call);
}

/* Moves CALL to state TO; QUEUED is what the queue-depth gauge counts. */
static void
set_state(struct agw_call *call, enum call_state to)
{
    if ((call->state == CALL_QUEUED) != (to == CALL_QUEUED)) {
        agw_metrics_gauge_add(AGW_M_RATELIMIT_QUEUE_DEPTH,
                              to == CALL_QUEUED ? 1 : -1);
    }
    call->state = to;
}

/*
 * Every callback starts here, STATES being the states it belongs to:
 * true when the call goes on (now RUNNING). A late one, the lookup or
 * slot reply of a call answered meanwhile, finds it DONE and frees it:
 * it was the last thing outstanding.
 */
static bool
resume(struct agw_call *call, unsigned states)
{
    if (call->state == CALL_DONE) {
        if (states == IN(call->late)) {
            release(call);
        }
        return false;
    }
    if ((states & IN(call->state)) == 0) {
        rlog_error(call->request_id, "a callback for another state (%d)",
                   (int)call->state);
        return false;
    }
    set_state(call, CALL_RUNNING);
    return true;
}

/* The answer is out: frees CALL unless a callback of it is still due. */
static void
set_done(struct agw_call *call)
{
    enum call_state was = call->state;

    set_state(call, CALL_DONE);
    if (was == CALL_LOOKUP || was == CALL_SLOT) {
        call->late = was;
        return;
    }
    release(call);
}

static int64_t
remaining_us(const struct agw_call *call)
{
    return call->deadline_us - agw_now_us();
}

/* ---- intake: who, what, and an in-process hit ---- */

static void
answer_error(struct agw_call *call, int status, int code, const char *message)
{
    struct agw_response resp;

    agw_response_error(&resp, status, code, message);
    answer(call, &resp, "-");
    agw_response_clear(&resp);
}

static void
answer_unauthenticated(struct agw_call *call, const char *challenge,
                       const char *message)
{
    if (challenge != NULL) {
        call->to.ops->add_header(call->to.conn, "WWW-Authenticate", challenge);
    }
    answer_error(call, 401, AGW_CODE_UNAUTHENTICATED, message);
}

/* Who is calling (SPEC §2, §9); answers 401/403 itself and returns
 * false. */
static bool
authenticate(struct agw_call *call, const char *business_id)
{
    const char *header = call->to.ops->header(call->to.conn, "Authorization");
    const char *name = NULL;
    struct agw_peer_cert cert;
    bool has_cert;

    if (call->gw->auth == NULL) {
        return true;
    }
    has_cert = call->cfg->auth_mode != AGW_AUTH_TOKEN &&
               call->to.ops->peer_cert != NULL &&
               call->to.ops->peer_cert(call->to.conn, &cert);
    switch (agw_auth_identify(call->gw->auth, call->cfg->auth_mode, header,
                              has_cert ? &cert : NULL, business_id, &name)) {
    case AGW_AUTH_OK:
        snprintf(call->caller, sizeof(call->caller), "%s", name);
        agw_auth_policy(call->gw->auth, name, &call->policy);
        return true;
    case AGW_AUTH_FORBIDDEN:
        snprintf(call->caller, sizeof(call->caller), "%s", name);
        answer_error(call, 403, AGW_CODE_PERMISSION_DENIED,
                     "this caller may not act for this business");
        return false;
    case AGW_AUTH_UNKNOWN:
        answer_unauthenticated(call, "Bearer error=\"invalid_token\"",
                               "the bearer token is not valid");
        return false;
    case AGW_AUTH_NO_CERT:
        answer_unauthenticated(call, NULL,
                               "a client certificate is required: call the "
                               "TLS listener with one");
        return false;
    case AGW_AUTH_UNKNOWN_CERT:
        answer_unauthenticated(call, NULL,
                               "the client certificate names no known caller");
        return false;
    default:
        answer_unauthenticated(call, "Bearer",
                               "missing Authorization: Bearer <token>");
        return false;
    }
}

/* Reads and validates the body; answers 4xx itself and returns false. */
static bool
parse_call(struct agw_call *call, const char *business_id)
{
    const struct agw_config *cfg = call->cfg;
    size_t len = 0;
    const char *body = call->to.ops->body(call->to.conn, &len);
    char message[512];

    if (len > (size_t)cfg->max_body_bytes) {
        snprintf(message, sizeof(message),
                 "request body is %zu bytes; the limit is %ld", len,
                 cfg->max_body_bytes);
        answer_error(call, 413, AGW_CODE_INVALID_ARGUMENT, message);
        return false;
    }
    if (!agw_request_parse(
            &call->request, business_id, body != NULL ? body : "", len,
            cfg->allow_private_sources, message, sizeof(message))) {
        answer_error(call, 400, AGW_CODE_INVALID_ARGUMENT, message);
        return false;
    }
    return true;
}

static bool
wants_no_cache(struct agw_call *call)
{
    const char *value = call->to.ops->header(call->to.conn, "Cache-Control");

    return value != NULL && strcasestr(value, "no-cache") != NULL;
}

/* A stored answer (valid only during the store's callback), counted as
 * a hit. */
static struct agw_response
stored_hit(int status, const char *body, size_t len)
{
    agw_metrics_count_cache(AGW_CACHE_HIT);
    return (struct agw_response){
        .status = status,
        .body = (char *)body,
        .len = len,
        .retry_after_s = -1,
    };
}

static void
on_peek(enum agw_store_result result, int status, const char *body, size_t len,
        void *arg)
{
    struct agw_response resp = stored_hit(status, body, len);

    answer(arg, &resp, "HIT");
}

/*
 * A store that holds the answer in process (the L1, the memory store)
 * gives it here, before the call joins a flight: a hit needs none.
 */
static bool
answered_at_once(struct agw_call *call)
{
    struct agw_store *store = call->gw->store;

    if (call->no_cache || store->ops->peek == NULL) {
        return false;
    }
    return store->ops->peek(store, call->request.dedupe_key, on_peek, call);
}

/* REFUSED: the guard refused the call and did not read its body; it is
 * answered so once its caller is authenticated. */
static void
handle(struct agw_gateway *gw, const struct agw_responder *to,
       const char *business_id, const struct agw_refusal *refused)
{
    struct agw_call *call = calloc(1, sizeof(*call));
    struct agw_flight_tiers tiers = {
        .loop = gw->flight_loop,
        .process = gw->flight_process,
        .fleet = gw->flight_fleet,
        .redis = gw->redis,
        .redis_sub = gw->redis_sub,
    };
    enum agw_flight_outcome joined;
    struct agw_response oom;

    if (call == NULL) {
        agw_response_error(&oom, 503, AGW_CODE_UNAVAILABLE, "out of memory");
        to->ops->send(to->conn, &oom, NULL, 0);
        agw_response_clear(&oom);
        return;
    }
    call->gw = gw;
    call->cfg = agw_config_ref(gw->cfg);
    call->to = *to;
    call->state = CALL_RUNNING;
    call->start_us = agw_now_us();
    call->deadline_us =
        call->start_us + (int64_t)call->cfg->request_deadline_ms * US_PER_MS;
    /* At most 40 bytes of whatever the path held, for the access log. */
    memcpy(call->business_id, business_id, strnlen(business_id, 40));
    call->caller[0] = '-';
    to->ops->request_id(to->conn, call->request_id);
    gw->inflight++;
    agw_metrics_gauge_add(AGW_M_INFLIGHT, 1);
    if (gw->draining) {
        answer_error(call, 503, AGW_CODE_UNAVAILABLE,
                     "the gateway is shutting down");
        return;
    }
    if (!authenticate(call, business_id)) {
        return;
    }
    if (refused != NULL) {
        answer_error(call, refused->status, refused->code, refused->message);
        return;
    }
    if (!parse_call(call, business_id)) {
        return;
    }
    call->no_cache = wants_no_cache(call);
    if (answered_at_once(call)) {
        return;
    }
    joined =
        agw_flight_join(&call->flight, &tiers, call->request.dedupe_key,
                        !call->no_cache, call->request_id, on_flight, call);
    if (joined == AGW_FLIGHT_QUEUED) {
        set_state(call, CALL_WAITER);
        return;
    }
    lead(call, joined);
}

/* ---- the leader: a deadline, the flight, the store ---- */

/* A leader's deadline, in any state but DONE (finish() frees it). */
static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct agw_call *call = arg;
    char message[96];

    /* Not resume(): the deadline interrupts whatever the call waits for.
     * finish() cancels what can be cancelled; a lookup or slot reply
     * still due finds the call DONE. */
    snprintf(message, sizeof(message),
             "no answer from Connectly within %d ms (%d attempts)",
             call->cfg->request_deadline_ms, call->attempts);
    finish_error(call, 504, AGW_CODE_DEADLINE_EXCEEDED, message, -1);
}

/* A QUEUED call leaves now; a BACKOFF one asks for its next slot. */
static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct agw_call *call = arg;
    enum call_state was = call->state;

    if (!resume(call, IN(CALL_QUEUED) | IN(CALL_BACKOFF))) {
        return;
    }
    if (was == CALL_QUEUED && !call->slot_retry) {
        send_attempt(call);
    } else {
        acquire_slot(call);
    }
}

/*
 * Makes the deadline (at start_us + request_deadline_ms, whenever it is
 * armed) and the limiter's timer. Only leaders need them. False when
 * memory ran out: the call is answered.
 */
static bool
arm_timers(struct agw_call *call)
{
    struct event_base *base = call->gw->base;
    int64_t left = remaining_us(call);
    struct timeval tv = {
        .tv_sec = left > 0 ? (time_t)(left / US_PER_S) : 0,
        .tv_usec = left > 0 ? (suseconds_t)(left % US_PER_S) : 0,
    };

    if (call->deadline == NULL) {
        call->deadline = evtimer_new(base, on_deadline, call);
        if (call->deadline != NULL) {
            evtimer_add(call->deadline, &tv);
        }
    }
    if (call->timer == NULL) {
        call->timer = evtimer_new(base, on_timer, call);
    }
    if (call->deadline == NULL || call->timer == NULL) {
        finish_error(call, 503, AGW_CODE_UNAVAILABLE, "out of memory", -1);
        return false;
    }
    return true;
}

/* A stored answer (valid only now): the leader ends its flight with it. */
static void
finish_hit(struct agw_call *call, int status, const char *body, size_t len)
{
    struct agw_response resp = stored_hit(status, body, len);

    finish(call, &resp, "HIT");
}

/*
 * Leads this loop's flight for its key: a deadline for it and (JOINED
 * WAIT) the wait for a wider flight, else (LEAD) the store, then
 * upstream.
 */
static void
lead(struct agw_call *call, enum agw_flight_outcome joined)
{
    struct agw_gateway *gw = call->gw;

    TAILQ_INSERT_TAIL(&gw->leaders, call, link);
    if (!arm_timers(call)) {
        return;
    }
    if (joined == AGW_FLIGHT_WAIT) {
        set_state(call, CALL_FLIGHT);
        return;
    }
    look_up_then_upstream(call);
}

/* Another instance's answer, or the stored one the fleet found, served
 * here: kept in process (L1, and for Redis outages as this instance's
 * own answers are: SPEC §4), not written to Redis again. */
static void
keep_copy(struct agw_call *call, const struct agw_response *resp)
{
    struct agw_store *store = call->gw->store;

    if (resp->status >= 200 && resp->status < 300 && store->ops->keep != NULL &&
        !agw_flight_purged(&call->flight)) {
        store->ops->keep(store, call->request.dedupe_key, resp->status,
                         resp->body, resp->len, call->cfg->cache_ttl_s);
    }
}

/* The flight's outcome: an answer (this loop's waiter is answered; a
 * leader finishes, answering its own waiters), or the lead. */
static void
on_flight(enum agw_flight_outcome outcome, const struct agw_response *resp,
          void *arg)
{
    struct agw_call *call = arg;
    enum call_state was = call->state;
    bool ok = resp != NULL && resp->status >= 200 && resp->status < 300;

    if (!resume(call, IN(CALL_WAITER) | IN(CALL_FLIGHT))) {
        return;
    }
    switch (outcome) {
    case AGW_FLIGHT_ANSWERED:
        if (was == CALL_WAITER) {
            answer(call, resp, ok ? "HIT" : "-");
        } else {
            finish(call, resp, ok ? "HIT" : "-");
        }
        return;
    case AGW_FLIGHT_RECEIVED:
        keep_copy(call, resp);
        finish(call, resp, ok ? "HIT" : "-");
        return;
    case AGW_FLIGHT_STORED:
        keep_copy(call, resp);
        finish_hit(call, resp->status, resp->body, resp->len);
        return;
    case AGW_FLIGHT_LEAD_MISS:
        go_upstream(call); /* the fleet's claim looked the store up */
        return;
    default:
        look_up_then_upstream(call);
        return;
    }
}

static void
on_lead_lookup(enum agw_store_result result, int status, const char *body,
               size_t len, void *arg)
{
    struct agw_call *call = arg;

    if (!resume(call, IN(CALL_LOOKUP))) {
        return;
    }
    if (result == AGW_STORE_HIT) {
        finish_hit(call, status, body, len);
        return;
    }
    rlog_debug(call->request_id,
               "leads the flight for %.16s...: no stored "
               "answer, asking for a rate-limit slot",
               call->request.dedupe_key);
    go_upstream(call);
}

/*
 * The store's answer, else upstream (no-cache calls refresh: upstream).
 * After winning every claim without the fleet's lookup, since a flight
 * may have ended between the peek and the claim; or when the fleet
 * could not look (Redis failing), in the store's fallback.
 */
static void
look_up_then_upstream(struct agw_call *call)
{
    if (call->no_cache) {
        go_upstream(call);
        return;
    }
    set_state(call, CALL_LOOKUP);
    call->gw->store->ops->get(call->gw->store, call->request.dedupe_key,
                              on_lead_lookup, call);
}

/* ---- the rate-limit slot ---- */

/* The call's whole limiter budget: max_wait_ms, batch_max_wait_ms for a
 * batch caller's call (SPEC §11). */
static int64_t
wait_budget_us(const struct agw_call *call)
{
    return (int64_t)(call->policy.batch ? call->cfg->batch_max_wait_ms
                                        : call->cfg->max_wait_ms) *
           US_PER_MS;
}

/* What is left of the call's limiter budget: max_wait_ms for all its
 * slot waits together (SPEC §4), and never past its deadline. The pause
 * after the call's own upstream 429 does not count: such a call is
 * retried once the pause ends, if its deadline allows. */
static int64_t
wait_left_us(const struct agw_call *call)
{
    int64_t left = wait_budget_us(call) + call->paused_us - call->waited_us;
    int64_t deadline_left = remaining_us(call);

    if (call->wait_since_us > 0) {
        left -= agw_now_us() - call->wait_since_us;
    }
    return left < deadline_left ? left : deadline_left;
}

/* The call stops waiting for a slot: it leaves, or is answered. */
static void
end_wait(struct agw_call *call)
{
    if (call->wait_since_us > 0) {
        call->waited_us += agw_now_us() - call->wait_since_us;
        call->wait_since_us = 0;
    }
}

/* The call leads at every level: it is the one that goes upstream. */
static void
go_upstream(struct agw_call *call)
{
    if (!call->miss_counted) {
        call->miss_counted = true;
        agw_metrics_count_cache(AGW_CACHE_MISS);
    }
    acquire_slot(call);
}

/* Asks for a slot with what is left of the budget; the wait that started
 * with the first ask goes on through every ask until the call leaves. */
static void
acquire_slot(struct agw_call *call)
{
    struct agw_limiter *rl = call->gw->limiter;
    int64_t left;

    if (call->wait_since_us == 0) {
        call->wait_since_us = agw_now_us();
    }
    left = wait_left_us(call);
    set_state(call, CALL_SLOT);
    if (rl->ops->acquire_as == NULL) {
        rl->ops->acquire(rl, left > 0 ? left : 0, on_slot, call);
        return;
    }
    if (call->policy.batch || call->policy.max_rate > 0) {
        left -= SLOT_TURN_MARGIN_US;
    }
    call->ask = (struct agw_limiter_ask){
        .max_wait_us = left > 0 ? left : 0,
        .batch_backlog_us =
            call->policy.batch
                ? (int64_t)call->cfg->batch_max_backlog_ms * US_PER_MS
                : -1,
        .retry = call->slot_retry,
        .caller = call->policy.max_rate > 0 ? call->caller : NULL,
        .max_rate = call->policy.max_rate,
    };
    call->slot_retry = false;
    rl->ops->acquire_as(rl, &call->ask, on_slot, call);
}

/* No slot within what is left of the call's budget: 429, with the time
 * the slot was away as Retry-After. */
static void
refuse_slot(struct agw_call *call, int64_t wait_us)
{
    int retry_after_s = (int)((wait_us + US_PER_S - 1) / US_PER_S);

    agw_metrics_count_rejected(call->policy.batch);
    finish_error(call, 429, AGW_CODE_RESOURCE_EXHAUSTED,
                 call->policy.batch
                     ? "rate limit: the call would wait longer than "
                       "batch_max_wait_ms"
                     : "rate limit: the call would wait longer than "
                       "max_wait_ms",
                 retry_after_s > 0 ? retry_after_s : 1);
}

/* Waits WAIT_US in state TO (QUEUED or BACKOFF): then on_timer(). */
static void
wait_then(struct agw_call *call, int64_t wait_us, enum call_state to)
{
    struct timeval tv = {
        .tv_sec = (time_t)(wait_us / US_PER_S),
        .tv_usec = (suseconds_t)(wait_us % US_PER_S),
    };

    set_state(call, to);
    /* libevent adds TV to the time cached at the start of this loop turn;
     * refresh it, or a busy turn makes the timer fire early and calls
     * leave before their rate-limit slot. */
    event_base_update_cache_time(call->gw->base);
    evtimer_add(call->timer, &tv);
}

static void
on_slot(bool granted, int64_t wait_us, uint64_t epoch, void *arg)
{
    struct agw_call *call = arg;

    if (!resume(call, IN(CALL_SLOT))) {
        return;
    }
    if (!granted && wait_us <= wait_left_us(call) &&
        call->gw->limiter->ops->acquire_as != NULL) {
        /* A batch call behind the backlog, or over its caller's cap:
         * it asks again at the turn it was given. */
        call->slot_epoch = epoch;
        call->slot_retry = true;
        wait_then(call,
                  wait_us + (int64_t)(random_unit() * SLOT_RETRY_JITTER_US),
                  CALL_QUEUED);
        return;
    }
    if (!granted) {
        refuse_slot(call, wait_us);
        return;
    }
    /* The whole wait, the turns a batch or capped call waited included. */
    agw_metrics_observe_class(
        AGW_M_RATELIMIT_WAIT, call->policy.batch,
        (double)(agw_now_us() - call->wait_since_us + wait_us) / US_PER_S);
    rlog_debug(call->request_id,
               "rate-limit slot in %lld ms (limiter epoch "
               "%llu)",
               (long long)(wait_us / US_PER_MS), (unsigned long long)epoch);
    call->slot_epoch = epoch;
    if (wait_us <= 0) {
        send_attempt(call);
        return;
    }
    wait_then(call, wait_us, CALL_QUEUED);
}

/* Granted by the limiter still in force (see agw_limiter_cb). */
static bool
slot_valid(const struct agw_call *call)
{
    struct agw_limiter *rl = call->gw->limiter;

    return rl->ops->epoch == NULL || rl->ops->epoch(rl) == call->slot_epoch;
}

/* ---- the upstream attempt ---- */

/*
 * Before it goes upstream, a call that went without the fleet's single
 * flight asks it after all if Redis is back, once: the answer may be
 * stored by now, or another instance on its way to Connectly for it.
 */
static bool
rejoin_fleet(struct agw_call *call)
{
    if (!agw_flight_rejoin(&call->flight)) {
        return false;
    }
    end_wait(call);
    set_state(call, CALL_FLIGHT);
    return true;
}

/*
 * The attempt the departure guard let go (leave() returned 0) left at
 * SENT_US, or never (0): the upstream client tells it through the request,
 * exactly once, so the guard's count of calls in transit stays exact.
 */
static void
departed(void *limiter, int64_t sent_us)
{
    struct agw_limiter *rl = limiter;

    rl->ops->left(rl, sent_us);
}

static void
send_attempt(struct agw_call *call)
{
    struct agw_limiter *rl = call->gw->limiter;
    int64_t left = remaining_us(call);
    int64_t timeout_ms = call->cfg->request_timeout_ms;
    int64_t hold;

    if (rejoin_fleet(call)) {
        return;
    }
    /* The limiter in force changed, or a 429 arrived while this call
     * waited for its slot: ask again rather than leave on the old
     * schedule, or into the pause. */
    if (!slot_valid(call) || rl->ops->paused_until(rl) > agw_now_us()) {
        acquire_slot(call);
        return;
    }
    hold = rl->ops->leave != NULL ? rl->ops->leave(rl) : 0;
    if (hold > 0 && hold > wait_left_us(call)) {
        refuse_slot(call, hold);
        return;
    }
    if (hold > 0) {
        wait_then(call, hold, CALL_QUEUED);
        return;
    }
    end_wait(call);
    if (left / US_PER_MS < timeout_ms) {
        timeout_ms = left / US_PER_MS;
    }
    /* Sized by this call's settings, not the start-up ones: a reload
     * may have lengthened the attempt since the claim was taken. */
    agw_flight_renew(&call->flight, call->cfg->request_timeout_ms +
                                        call->cfg->connect_timeout_ms +
                                        CLAIM_SLACK_MS);
    if (call->upstream_path[0] == '\0') {
        snprintf(call->upstream_path, sizeof(call->upstream_path),
                 "/v1/businesses/%s/assets", call->request.business_id);
    }
    call->attempts++;
    call->attempt_start_us = agw_now_us();
    set_state(call, CALL_ATTEMPT);
    call->upcall = agw_upstream_post(
        call->gw->upstream,
        &(struct agw_upstream_request){
            .path = call->upstream_path,
            .body = call->request.upstream_body,
            .len = strlen(call->request.upstream_body),
            .request_id = call->request_id,
            .api_key = call->cfg->api_key,
            .timeout_ms = (int)(timeout_ms > 0 ? timeout_ms : 1),
            .on_sent = rl->ops->leave != NULL ? departed : NULL,
            .sent_arg = rl,
        },
        on_upstream, call);
    if (call->upcall == NULL) {
        set_state(call, CALL_RUNNING);
        finish_error(call, 503, AGW_CODE_UNAVAILABLE, "out of memory", -1);
    }
}

static void
on_upstream(const struct agw_upstream_result *res, void *arg)
{
    struct agw_call *call = arg;
    char message[128];

    call->upcall = NULL;
    if (!resume(call, IN(CALL_ATTEMPT))) {
        return;
    }
    call->upstream_status = res->status;
    call->upstream_us += agw_now_us() - call->attempt_start_us;
    agw_metrics_count_upstream(
        res->outcome == AGW_ATTEMPT_RESPONSE ? res->status : 0);
    agw_admin_stats_upstream_class(
        call->caller, agw_class_name(call->policy.batch),
        res->outcome == AGW_ATTEMPT_RESPONSE ? res->status : 0, res->detail);
    agw_metrics_observe(AGW_M_UPSTREAM_DURATION,
                        (double)(agw_now_us() - call->attempt_start_us) /
                            US_PER_S);
    if (res->outcome == AGW_ATTEMPT_RESPONSE) {
        on_upstream_response(call, res);
        return;
    }
    rlog_warn(call->request_id, "upstream attempt %d failed: %s",
              call->attempts, res->detail != NULL ? res->detail : "");
    if (retry_later(call, res->outcome, 0)) {
        return;
    }
    if (res->outcome == AGW_ATTEMPT_TIMEOUT) {
        snprintf(message, sizeof(message),
                 "Connectly did not answer within %d ms",
                 call->cfg->request_timeout_ms);
        finish_error(call, 504, AGW_CODE_DEADLINE_EXCEEDED, message, -1);
        return;
    }
    snprintf(message, sizeof(message), "Connectly is unreachable (%d attempts)",
             call->attempts);
    finish_error(call, 502, AGW_CODE_UNAVAILABLE, message, -1);
}

static void
on_upstream_response(struct agw_call *call,
                     const struct agw_upstream_result *res)
{
    struct agw_response resp = {
        .status = res->status,
        .body = (char *)res->body,
        .len = res->len,
        .retry_after_s = -1,
    };
    char message[96];

    if (res->status >= 200 && res->status < 300) {
        store_answer(call, res);
        finish(call, &resp, "MISS");
    } else if (res->status == 429) {
        on_upstream_429(call, res->retry_after_s);
    } else if (res->status == 401 || res->status == 403) {
        rlog_error(call->request_id,
                   "Connectly refused the gateway's API key (status %d)",
                   res->status);
        finish_error(call, 502, AGW_CODE_INTERNAL,
                     "the gateway's credentials were refused by Connectly", -1);
    } else if (res->status >= 500) {
        if (!retry_later(call, res->outcome, res->status)) {
            snprintf(message, sizeof(message),
                     "Connectly answered %d after %d attempts", res->status,
                     call->attempts);
            finish_error(call, 502, AGW_CODE_UNAVAILABLE, message, -1);
        }
    } else {
        /* Connectly's own 4xx (e.g. an unfetchable source): its words. */
        finish(call, &resp, "MISS");
    }
}

/* Upstream's 2xx: the fleet's holder writes Redis with its release
 * (agw_flight_finish()) and keeps the in-process copies now; any other
 * call writes it through the store. An answer a purge came after while
 * it was on its way is not kept (SPEC §12; the release does not store
 * it either: its claim was purged). */
static void
store_answer(struct agw_call *call, const struct agw_upstream_result *res)
{
    struct agw_store *store = call->gw->store;

    if (agw_flight_purged(&call->flight)) {
        rlog_debug(call->request_id,
                   "purged meanwhile: the answer is not kept");
    } else if (!agw_flight_stores(&call->flight)) {
        store->ops->put(store, call->request.dedupe_key, res->status, res->body,
                        res->len, call->cfg->cache_ttl_s);
    } else if (store->ops->keep != NULL) {
        store->ops->keep(store, call->request.dedupe_key, res->status,
                         res->body, res->len, call->cfg->cache_ttl_s);
    }
}

/* Connectly's 429 pauses the fleet for its Retry-After, but never longer
 * than max_pause_ms: one answer must not stop the fleet for an hour. */
static void
on_upstream_429(struct agw_call *call, int retry_after_s)
{
    struct agw_limiter *rl = call->gw->limiter;
    int pause_s = retry_after_s >= 0 ? retry_after_s : UPSTREAM_PAUSE_DEFAULT_S;
    int64_t pause_us = (int64_t)pause_s * US_PER_S;
    int64_t max_us = (int64_t)call->cfg->max_pause_ms * US_PER_MS;

    if (pause_us > max_us) {
        pause_us = max_us;
    }
    pause_s = (int)((pause_us + US_PER_S - 1) / US_PER_S);
    rlog_warn(call->request_id, "Connectly answered 429: pausing %lld ms",
              (long long)(pause_us / US_PER_MS));
    rl->ops->pause(rl, pause_us);
    if (pause_us < remaining_us(call)) {
        call->paused_us += pause_us;
        acquire_slot(call);
        return;
    }
    finish_error(call, 429, AGW_CODE_RESOURCE_EXHAUSTED,
                 "Connectly's rate limit was reached; retry later",
                 pause_s > 0 ? pause_s : 1);
}

static double
random_unit(void)
{
    uint32_t r = 0;

    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1) {
        r = (uint32_t)agw_now_us();
    }
    return (double)r / 4294967296.0;
}

/* After a failed attempt: schedules the next one (BACKOFF) if the rules
 * allow. */
static bool
retry_later(struct agw_call *call, enum agw_attempt_outcome outcome, int status)
{
    int64_t backoff;

    if (!agw_retry_allowed(outcome, status, call->attempts,
                           call->cfg->max_retries, call->request.id != NULL)) {
        return false;
    }
    backoff = agw_backoff_us(call->attempts, random_unit());
    if (backoff >= remaining_us(call)) {
        return false;
    }
    agw_metrics_inc(AGW_M_UPSTREAM_RETRIES);
    rlog_debug(call->request_id, "retrying in %lld ms after attempt %d",
               (long long)(backoff / US_PER_MS), call->attempts);
    wait_then(call, backoff, CALL_BACKOFF);
    return true;
}

/* ---- the way out ---- */

/* The leader's way out: ends the flight (answering its waiters too) and
 * cancels every wait of the call that can be cancelled. */
static void
finish(struct agw_call *call, const struct agw_response *resp,
       const char *cache)
{
    end_wait(call);
    TAILQ_REMOVE(&call->gw->leaders, call, link);
    if (call->upcall != NULL) {
        agw_upstream_cancel(call->upcall);
        call->upcall = NULL;
    }
    if (call->timer != NULL) {
        event_free(call->timer);
        call->timer = NULL;
    }
    if (call->deadline != NULL) {
        event_free(call->deadline);
        call->deadline = NULL;
    }
    /* Not a shutdown's 503, which is this instance's own business: then
     * the claims pass on. A 2xx from upstream is stored by the fleet's
     * release (store_answer() kept only the in-process copies). */
    if (call->gw->draining && resp->status == 503) {
        agw_flight_abandon(&call->flight, resp);
    } else {
        agw_flight_finish(&call->flight, resp, call->cfg->cache_ttl_s);
    }
    answer(call, resp, cache);
}

static void
finish_error(struct agw_call *call, int status, int code, const char *message,
             int retry_after_s)
{
    struct agw_response resp;

    agw_response_error(&resp, status, code, message);
    resp.retry_after_s = retry_after_s;
    finish(call, &resp, "MISS");
    agw_response_clear(&resp);
}

/*
 * A capped caller's budget is its cap (SPEC §11): the headers say the
 * least of the fleet's and the cap's, the cap's schedule as the limiter
 * last said (ask.cap_tat_us; unknown: the cap as if idle).
 */
static void
cap_state(const struct agw_call *call, struct agw_limiter_state *state)
{
    struct agw_gcra cap;
    int remaining, reset_s;

    if (!(call->policy.max_rate > 0)) {
        return;
    }
    agw_gcra_init(&cap, call->policy.max_rate, 0);
    cap.tat_us = call->ask.cap_tat_us;
    agw_gcra_state(&cap, agw_now_us(), wait_budget_us(call), &remaining,
                   &reset_s);
    if (cap.rate_per_s < state->limit) {
        state->limit = cap.rate_per_s;
    }
    if (remaining < state->remaining) {
        state->remaining = remaining;
    }
    if (reset_s > state->reset_s) {
        state->reset_s = reset_s;
    }
}

/* The RateLimit-* headers into H (3 of them), their values into TEXT. */
static void
ratelimit_headers(struct agw_call *call, struct agw_header *h, char text[3][21])
{
    struct agw_limiter *rl = call->gw->limiter;
    struct agw_limiter_state state;

    rl->ops->state(rl, wait_budget_us(call), &state);
    cap_state(call, &state);
    agw_fmt_long(state.limit, text[0]);
    agw_fmt_long(state.remaining, text[1]);
    agw_fmt_long(state.reset_s, text[2]);
    h[0] = (struct agw_header){"RateLimit-Limit", text[0]};
    h[1] = (struct agw_header){"RateLimit-Remaining", text[1]};
    h[2] = (struct agw_header){"RateLimit-Reset", text[2]};
}

static void
log_access(const struct agw_call *call, int status, const char *cache)
{
    struct agw_access access = {
        .request_id = call->request_id,
        .caller = call->caller,
        .class_name = agw_class_name(call->policy.batch),
        .business_id = call->business_id,
        .method = "POST",
        .path = call->to.ops->uri(call->to.conn),
        .status = status,
        .cache = cache,
        .upstream_status = call->upstream_status,
        .attempts = call->attempts,
        .upstream_ms = (double)call->upstream_us / US_PER_MS,
        .wait_ms = (double)call->waited_us / US_PER_MS,
        .total_ms = (double)(agw_now_us() - call->start_us) / US_PER_MS,
    };

    agw_log_access(&access);
}

/*
 * The body as it may go out: a stored answer (or another instance's) can
 * predate the redaction of upstream bodies, so every key in use is taken
 * out here too (SPEC §8). Returns RESP, or CLEAN holding a redacted copy
 * (CLEAN->body to free); NULL when memory ran out.
 */
static const struct agw_response *
redacted(struct agw_call *call, const struct agw_response *resp,
         struct agw_response *clean)
{
    static _Thread_local int64_t warned_us; /* this worker's last warn */
    int rc = call->gw->upstream == NULL
                 ? 0
                 : agw_upstream_redact(call->gw->upstream, resp->body,
                                       resp->len, &clean->body, &clean->len);

    if (rc == 0) {
        return resp;
    }
    if (rc < 0) {
        return NULL;
    }
    if (warned_us == 0 || agw_now_us() - warned_us >= REDACTED_WARN_EVERY_US) {
        warned_us = agw_now_us();
        rlog_warn(call->request_id, "an answer to send held the API key (a "
                                    "stored answer from before redaction?): "
                                    "redacted");
    }
    clean->status = resp->status;
    clean->retry_after_s = resp->retry_after_s;
    return clean;
}

/* Sends RESP to this call's caller, logs the access line, and makes the
 * call DONE (freed now, or by the lookup or slot reply still due). */
static void
answer(struct agw_call *call, const struct agw_response *resp,
       const char *cache)
{
    struct agw_response clean = {.body = NULL};
    struct agw_response oom;
    struct agw_header extra[4];
    char text[3][21];
    size_t n = 0;

    resp = redacted(call, resp, &clean);
    if (resp == NULL) {
        agw_response_error(&oom, 503, AGW_CODE_UNAVAILABLE, "out of memory");
        resp = &oom;
        cache = "-";
    }
    if (resp->status >= 200 && resp->status < 300) {
        extra[n++] = (struct agw_header){"X-Cache", cache};
    }
    if (call->gw->draining) {
        call->to.ops->add_header(call->to.conn, "Connection", "close");
    }
    ratelimit_headers(call, extra + n, text);
    n += 3;
    log_access(call, resp->status, cache);
    call->to.ops->send(call->to.conn, resp, extra, n);
    free(clean.body);
    if (resp == &oom) {
        agw_response_clear(&oom);
    }
    call->gw->inflight--;
    agw_metrics_gauge_add(AGW_M_INFLIGHT, -1);
    set_done(call);
}

/* ---- the module's entry points ---- */

void
agw_create_start(struct agw_gateway *gw, const struct agw_responder *to,
                 const char *business_id, const struct agw_refusal *refused)
{
    handle(gw, to, business_id, refused);
}

/* The responder for an evhttp request (CONN). */

static const char *
ev_header(void *conn, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(conn), name);
}

static const char *
ev_body(void *conn, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(conn);

    *len = evbuffer_get_length(in);
    return (const char *)evbuffer_pullup(in, -1);
}

static const char *
ev_uri(void *conn)
{
    return evhttp_request_get_uri(conn);
}

static void
ev_request_id(void *conn, char *out)
{
    agw_reply_request_id(conn, out);
}

static void
ev_add_header_once(void *conn, const char *name, const char *value)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(conn);

    if (evhttp_find_header(headers, name) == NULL) {
        evhttp_add_header(headers, name, value);
    }
}

static void
ev_send(void *conn, const struct agw_response *resp,
        const struct agw_header *extra, size_t n)
{
    agw_reply_send_with(conn, resp, extra, n);
}

/* The guard's transport under evhttp's bufferevent: TLS or a socket. */
static bool
ev_peer_cert(void *conn, struct agw_peer_cert *out)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(conn);
    struct bufferevent *bev =
        evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;

    return bev != NULL &&
           agw_tls_server_peer(bufferevent_get_underlying(bev), out);
}

static const struct agw_responder_ops evhttp_responder = {
    .peer_cert = ev_peer_cert,
    .header = ev_header,
    .body = ev_body,
    .uri = ev_uri,
    .request_id = ev_request_id,
    .add_header = ev_add_header_once,
    .send = ev_send,
};

void
agw_create_handle(struct agw_gateway *gw, struct evhttp_request *req,
                  const char *business_id)
{
    struct agw_responder to = {&evhttp_responder, req};

    handle(gw, &to, business_id, NULL);
}

void
agw_create_refuse(struct agw_gateway *gw, struct evhttp_request *req,
                  const char *business_id, const struct agw_refusal *refused)
{
    struct agw_responder to = {&evhttp_responder, req};

    handle(gw, &to, business_id, refused);
}

void
agw_create_init(struct agw_gateway *gw)
{
    TAILQ_INIT(&gw->leaders);
}

void
agw_create_on_limiter_change(void *arg)
{
    struct agw_gateway *gw = arg;
    struct agw_call *call, *newer;

    for (call = TAILQ_FIRST(&gw->leaders); call != NULL; call = newer) {
        newer = TAILQ_NEXT(call, link); /* CALL may be answered and freed */
        if (call->state != CALL_QUEUED ||
            (slot_valid(call) && !agw_flight_may_rejoin(&call->flight))) {
            continue;
        }
        evtimer_del(call->timer);
        set_state(call, CALL_RUNNING);
        if (!rejoin_fleet(call)) {
            acquire_slot(call);
        }
    }
}

void
agw_create_abort_all(struct agw_gateway *gw)
{
    while (!TAILQ_EMPTY(&gw->leaders)) {
        finish_error(TAILQ_FIRST(&gw->leaders), 503, AGW_CODE_UNAVAILABLE,
                     "the gateway is shutting down", -1);
    }
}
