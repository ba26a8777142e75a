/*
 * test_create.c - create.c's state machine driven through its seams: a
 * fake responder (the caller's side), fake store, limiter and fleet
 * (their vtables) and a fake upstream (agw_upstream_post/cancel/redact
 * are defined here, with the two base_url helpers config.o needs, so
 * upstream.o is not linked). Each fake either
 * answers at once or keeps the callback for the test to fire later, as
 * late as it likes: after the deadline, after the answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "config.h"
#include "create.h"
#include "flight_loop.h"
#include "flight_tier.h"
#include "gateway.h"
#include "limiter.h"
#include "reply.h"
#include "store.h"
#include "upstream.h"
#include "util.h"

#define BODY "{\"uri\":\"https://example.com/a.png\"}"
#define BODY_ID "{\"uri\":\"https://example.com/a.png\",\"id\":\"a1\"}"
#define BIZ "550e8400-e29b-41d4-a716-446655440000"
#define ASSET "{\"id\":\"a1\"}"
#define LOOP_LIMIT_US (5 * 1000000LL)

/* ---- the responder: what the caller got ---- */

static struct {
    const char *body;
    int sent;
    int hits; /* answers sent with X-Cache: HIT */
    int status;
    char cache[16];
    char resp_body[512];
} caller;

static const char *
fake_header(void *conn, const char *name)
{
    return NULL;
}

static const char *
fake_body(void *conn, size_t *len)
{
    *len = strlen(caller.body);
    return caller.body;
}

static const char *
fake_uri(void *conn)
{
    return "/v1/businesses/" BIZ "/assets";
}

static void
fake_request_id(void *conn, char *out)
{
    strcpy(out, "test-request");
}

static void
fake_add_header(void *conn, const char *name, const char *value)
{
}

static void
fake_send(void *conn, const struct agw_response *resp,
          const struct agw_header *extra, size_t n)
{
    caller.sent++;
    caller.status = resp->status;
    snprintf(caller.resp_body, sizeof(caller.resp_body), "%.*s", (int)resp->len,
             resp->body != NULL ? resp->body : "");
    caller.cache[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (strcmp(extra[i].name, "X-Cache") == 0) {
            snprintf(caller.cache, sizeof(caller.cache), "%s", extra[i].value);
            caller.hits += strcmp(extra[i].value, "HIT") == 0;
        }
    }
}

static const struct agw_responder_ops fake_responder = {
    .header = fake_header,
    .body = fake_body,
    .uri = fake_uri,
    .request_id = fake_request_id,
    .add_header = fake_add_header,
    .send = fake_send,
};

/* ---- the store: answers at once (HIT or MISS), or keeps the callback */

static struct {
    struct agw_store base;
    bool hit;
    bool defer;
    agw_store_get_cb cb;
    void *arg;
    int gets, puts;
} store;

static void
store_get(struct agw_store *s, const char *key, agw_store_get_cb cb, void *arg)
{
    store.gets++;
    if (store.defer) {
        store.cb = cb;
        store.arg = arg;
        return;
    }
    if (store.hit) {
        cb(AGW_STORE_HIT, 200, ASSET, strlen(ASSET), arg);
    } else {
        cb(AGW_STORE_MISS, 0, NULL, 0, arg);
    }
}

static void
store_put(struct agw_store *s, const char *key, int status, const char *body,
          size_t len, long ttl_s)
{
    store.puts++;
}

static const struct agw_store_ops store_ops = {
    .get = store_get,
    .put = store_put,
};

/* ---- the limiter: grants at once, or keeps the callback ---- */

static struct {
    struct agw_limiter base;
    bool defer;
    int64_t wait_us; /* a grant for later: the call waits this long */
    uint64_t epoch;  /* the limiter in force */
    agw_limiter_cb cb;
    void *arg;
    int acquires;
    int pauses;
    int leaves, lefts; /* departure guard (guarded_ops only) */
    int64_t left_us;   /* the last left()'s */
} limiter;

static void
rl_acquire(struct agw_limiter *rl, int64_t max_wait_us, agw_limiter_cb cb,
           void *arg)
{
    limiter.acquires++;
    if (limiter.defer) {
        limiter.cb = cb;
        limiter.arg = arg;
        return;
    }
    cb(true, limiter.wait_us, limiter.epoch, arg);
}

static void
rl_pause(struct agw_limiter *rl, int64_t pause_us)
{
    limiter.pauses++;
}

static int64_t
rl_paused_until(struct agw_limiter *rl)
{
    return 0;
}

static int64_t
rl_leave(struct agw_limiter *rl)
{
    limiter.leaves++;
    return 0;
}

static void
rl_left(struct agw_limiter *rl, int64_t sent_us)
{
    limiter.lefts++;
    limiter.left_us = sent_us;
}

static void
rl_state(struct agw_limiter *rl, int64_t max_wait_us,
         struct agw_limiter_state *out)
{
    *out =
        (struct agw_limiter_state){.limit = 10, .remaining = 9, .reset_s = 0};
}

static uint64_t
rl_epoch(struct agw_limiter *rl)
{
    return limiter.epoch;
}

static const struct agw_limiter_ops limiter_ops = {
    .name = "fake",
    .acquire = rl_acquire,
    .pause = rl_pause,
    .paused_until = rl_paused_until,
    .left = rl_left,
    .state = rl_state,
    .epoch = rl_epoch,
};

/* The same with a departure guard that lets every call go at once. */
static const struct agw_limiter_ops guarded_ops = {
    .name = "fake-guarded",
    .acquire = rl_acquire,
    .pause = rl_pause,
    .paused_until = rl_paused_until,
    .leave = rl_leave,
    .left = rl_left,
    .state = rl_state,
    .epoch = rl_epoch,
};

/* ---- the flights: keep the callback; the test says the outcome. FLEET
 * is the Redis tier (with SEEING_OPS: it looks the store up), PROCESS
 * the worker threads' one. ---- */

struct fake_fleet {
    struct agw_flight_tier base;
    agw_flight_tier_cb cb;
    void *arg;
    int joins, lookups, cancels, releases, stores, abandons;
};

static struct fake_fleet fleet, process;

static struct agw_flight_wait *
fleet_join(struct agw_flight_tier *f, const char *key, agw_flight_tier_cb cb,
           void *arg)
{
    struct fake_fleet *ff = (struct fake_fleet *)f;

    ff->joins++;
    ff->cb = cb;
    ff->arg = arg;
    return (struct agw_flight_wait *)ff;
}

static void
fleet_cancel(struct agw_flight_tier *f, struct agw_flight_wait *wait)
{
    ((struct fake_fleet *)f)->cancels++;
}

static void
fleet_renew(struct agw_flight_tier *f, const char *key, int ttl_ms)
{
}

static void
fleet_release(struct agw_flight_tier *f, const char *key,
              const struct agw_response *resp)
{
    ((struct fake_fleet *)f)->releases++;
}

static void
fleet_abandon(struct agw_flight_tier *f, const char *key)
{
    ((struct fake_fleet *)f)->abandons++;
}

static struct agw_flight_wait *
fleet_lookup(struct agw_flight_tier *f, const char *key, agw_flight_tier_cb cb,
             void *arg)
{
    ((struct fake_fleet *)f)->lookups++;
    return fleet_join(f, key, cb, arg);
}

static void
fleet_release_storing(struct agw_flight_tier *f, const char *key,
                      const struct agw_response *resp, long ttl_s)
{
    ((struct fake_fleet *)f)->stores++;
}

static const struct agw_flight_tier_ops fleet_ops = {
    .join = fleet_join,
    .cancel = fleet_cancel,
    .renew = fleet_renew,
    .release = fleet_release,
    .abandon = fleet_abandon,
};

static const struct agw_flight_tier_ops seeing_ops = {
    .join = fleet_join,
    .cancel = fleet_cancel,
    .renew = fleet_renew,
    .release = fleet_release,
    .abandon = fleet_abandon,
    .lookup = fleet_lookup,
    .release_storing = fleet_release_storing,
};

/* ---- upstream: a link seam (create.c's only upstream calls) ---- */

static struct {
    agw_upstream_cb cb;
    void *arg;
    void (*on_sent)(void *, int64_t); /* the departure not yet told */
    void *sent_arg;
    int posts, cancels;
} up;

/* As upstream.h says: the departure is told once, 0 if never sent. */
static void
upstream_departs(int64_t sent_us)
{
    void (*on_sent)(void *, int64_t) = up.on_sent;

    up.on_sent = NULL;
    if (on_sent != NULL) {
        on_sent(up.sent_arg, sent_us);
    }
}

struct agw_upstream_call *
agw_upstream_post(struct agw_upstream *u, const struct agw_upstream_request *rq,
                  agw_upstream_cb cb, void *arg)
{
    up.posts++;
    up.cb = cb;
    up.arg = arg;
    up.on_sent = rq->on_sent;
    up.sent_arg = rq->sent_arg;
    return (struct agw_upstream_call *)&up;
}

void
agw_upstream_cancel(struct agw_upstream_call *call)
{
    up.cancels++;
    up.cb = NULL;
    upstream_departs(0);
}

int
agw_upstream_redact(const struct agw_upstream *u, const char *body, size_t len,
                    char **out, size_t *out_len)
{
    return 0;
}

/* Upstream answers the attempt that is out. */
static void
upstream_answers(enum agw_attempt_outcome outcome, int status,
                 int retry_after_s)
{
    agw_upstream_cb cb = up.cb;
    struct agw_upstream_result res = {
        .outcome = outcome,
        .status = status,
        .body = status == 200 ? ASSET : "{}",
        .len = strlen(status == 200 ? ASSET : "{}"),
        .retry_after_s = retry_after_s,
    };

    assert_non_null(cb);
    up.cb = NULL;
    upstream_departs(0);
    cb(&res, up.arg);
}

/* ---- the gateway around them ---- */

static struct agw_gateway gw;

static int
setup(void **state)
{
    struct agw_config *cfg = calloc(1, sizeof(*cfg));

    assert_non_null(cfg);
    agw_config_defaults(cfg);
    cfg->request_deadline_ms = 2000;
    cfg->max_retries = 2;
    cfg->max_pause_ms = 10;
    memset(&caller, 0, sizeof(caller));
    memset(&store, 0, sizeof(store));
    memset(&limiter, 0, sizeof(limiter));
    memset(&fleet, 0, sizeof(fleet));
    memset(&process, 0, sizeof(process));
    memset(&up, 0, sizeof(up));
    caller.body = BODY;
    store.base.ops = &store_ops;
    limiter.base.ops = &limiter_ops;
    fleet.base.ops = &fleet_ops;
    process.base.ops = &fleet_ops;
    gw = (struct agw_gateway){
        .base = event_base_new(),
        .cfg = agw_config_ref(cfg),
        .store = &store.base,
        .flight_loop = agw_flight_loop_new(),
        .limiter = &limiter.base,
    };
    agw_create_init(&gw);
    assert_non_null(gw.base);
    assert_non_null(gw.flight_loop);
    return 0;
}

static int
teardown(void **state)
{
    assert_int_equal(gw.inflight, 0);
    assert_true(TAILQ_EMPTY(&gw.leaders));
    agw_flight_loop_free(gw.flight_loop);
    agw_config_unref(gw.cfg);
    event_base_free(gw.base);
    return 0;
}

static void
start_call(void)
{
    struct agw_responder to = {&fake_responder, NULL};

    agw_create_start(&gw, &to, BIZ, NULL);
}

/* Runs the loop until the caller is answered or COND holds. */
static void
run_until(bool (*cond)(void))
{
    int64_t until = agw_now_us() + LOOP_LIMIT_US;

    while (!cond() && agw_now_us() < until) {
        event_base_loop(gw.base, EVLOOP_ONCE);
    }
    assert_true(cond());
}

static bool
answered(void)
{
    return caller.sent > 0;
}

static bool
attempt_out(void)
{
    return up.cb != NULL;
}

/* ---- the scenarios ---- */

static void
test_hit(void **state)
{
    store.hit = true;
    start_call();
    assert_int_equal(caller.sent, 1);
    assert_int_equal(caller.status, 200);
    assert_string_equal(caller.cache, "HIT");
    assert_string_equal(caller.resp_body, ASSET);
    assert_int_equal(up.posts, 0);
    assert_int_equal(limiter.acquires, 0);
}

static void
test_miss_leads(void **state)
{
    start_call();
    assert_int_equal(store.gets, 1);
    assert_int_equal(limiter.acquires, 1);
    assert_int_equal(up.posts, 1);
    assert_int_equal(caller.sent, 0);
    upstream_answers(AGW_ATTEMPT_RESPONSE, 200, -1);
    assert_int_equal(caller.sent, 1);
    assert_int_equal(caller.status, 200);
    assert_string_equal(caller.cache, "MISS");
    assert_int_equal(store.puts, 1);
}

static void
test_timeout_retry_success(void **state)
{
    caller.body = BODY_ID; /* a custom id: a timed-out attempt may retry */
    start_call();
    assert_int_equal(up.posts, 1);
    upstream_answers(AGW_ATTEMPT_TIMEOUT, 0, -1);
    assert_int_equal(caller.sent, 0);
    run_until(attempt_out); /* the backoff timer */
    assert_int_equal(up.posts, 2);
    assert_int_equal(limiter.acquires, 2);
    upstream_answers(AGW_ATTEMPT_RESPONSE, 200, -1);
    assert_int_equal(caller.sent, 1);
    assert_int_equal(caller.status, 200);
}

static void
test_late_store_reply(void **state)
{
    gw.cfg->request_deadline_ms = 30;
    store.defer = true;
    start_call();
    assert_non_null(store.cb);
    run_until(answered);
    assert_int_equal(caller.status, 504);
    /* The lookup comes back after the answer: dropped, call freed. */
    store.cb(AGW_STORE_HIT, 200, ASSET, strlen(ASSET), store.arg);
    assert_int_equal(caller.sent, 1);
    assert_int_equal(up.posts, 0);
}

static void
test_late_limiter_reply(void **state)
{
    gw.cfg->request_deadline_ms = 30;
    limiter.defer = true;
    start_call();
    assert_non_null(limiter.cb);
    run_until(answered);
    assert_int_equal(caller.status, 504);
    limiter.cb(true, 0, 0, limiter.arg);
    assert_int_equal(caller.sent, 1);
    assert_int_equal(up.posts, 0);
}

static void
test_redis_down_mid_call(void **state)
{
    gw.flight_fleet = &fleet.base;
    start_call();
    assert_int_equal(fleet.joins, 1);
    assert_int_equal(up.posts, 0);
    /* Redis went away while the call waited in the fleet's flight. */
    fleet.cb(AGW_TIER_UNAVAILABLE, NULL, fleet.arg);
    assert_int_equal(up.posts, 1);
    upstream_answers(AGW_ATTEMPT_RESPONSE, 200, -1);
    assert_int_equal(caller.sent, 1);
    assert_int_equal(caller.status, 200);
    assert_int_equal(store.puts, 1);
    assert_int_equal(fleet.releases, 0); /* it never held the claim */
}

static void
test_fleet_lead_releases(void **state)
{
    gw.flight_fleet = &fleet.base;
    start_call();
    fleet.cb(AGW_TIER_LEAD, NULL, fleet.arg);
    /* After the claim only: the in-process peek is the look before it. */
    assert_int_equal(store.gets, 1);
    upstream_answers(AGW_ATTEMPT_RESPONSE, 200, -1);
    assert_int_equal(caller.status, 200);
    assert_int_equal(fleet.releases, 1);
}

/* The flight's tiers stack: a lead in the process's flight joins the
 * fleet's; its answer releases both, widest first. */
static void
test_process_then_fleet(void **state)
{
    gw.flight_process = &process.base;
    gw.flight_fleet = &fleet.base;
    start_call();
    assert_int_equal(process.joins, 1);
    assert_int_equal(fleet.joins, 0);
    process.cb(AGW_TIER_LEAD, NULL, process.arg);
    assert_int_equal(fleet.joins, 1);
    assert_int_equal(up.posts, 0);
    fleet.cb(AGW_TIER_LEAD, NULL, fleet.arg);
    assert_int_equal(up.posts, 1);
    upstream_answers(AGW_ATTEMPT_RESPONSE, 200, -1);
    assert_int_equal(caller.status, 200);
    assert_int_equal(fleet.releases, 1);
    assert_int_equal(process.releases, 1);
    assert_int_equal(store.puts, 1); /* this fleet does not store */
}

/* Another worker answered: the call and its loop's waiter take it, and
 * the fleet is never asked. */
static void
test_process_answers(void **state)
{
    struct agw_response resp = {
        .status = 200,
        .body = ASSET,
        .len = strlen(ASSET),
        .retry_after_s = -1,
    };

    gw.flight_process = &process.base;
    gw.flight_fleet = &fleet.base;
    start_call();
    start_call(); /* same key: this loop's waiter */
    assert_int_equal(process.joins, 1);
    process.cb(AGW_TIER_ANSWER, &resp, process.arg);
    assert_int_equal(caller.sent, 2);
    assert_int_equal(caller.hits, 2);
    assert_int_equal(fleet.joins, 0);
    assert_int_equal(process.releases, 0);
    assert_int_equal(up.posts, 0);
}

/* A fleet that sees the store: its claim looks (STORED: no upstream, no
 * claim), and a holder's 2xx is stored by its release. */
static void
test_fleet_stored(void **state)
{
    struct agw_response resp = {
        .status = 200,
        .body = ASSET,
        .len = strlen(ASSET),
        .retry_after_s = -1,
    };

    fleet.base.ops = &seeing_ops;
    gw.flight_fleet = &fleet.base;
    start_call();
    assert_int_equal(fleet.lookups, 1);
    fleet.cb(AGW_TIER_STORED, &resp, fleet.arg);
    assert_int_equal(caller.status, 200);
    assert_string_equal(caller.cache, "HIT");
    assert_int_equal(store.gets, 0);
    assert_int_equal(fleet.releases + fleet.stores, 0);
}

static void
test_fleet_lead_stores(void **state)
{
    fleet.base.ops = &seeing_ops;
    gw.flight_fleet = &fleet.base;
    start_call();
    fleet.cb(AGW_TIER_LEAD, NULL, fleet.arg);
    assert_int_equal(store.gets, 0); /* the claim looked */
    assert_int_equal(up.posts, 1);
    upstream_answers(AGW_ATTEMPT_RESPONSE, 200, -1);
    assert_int_equal(caller.status, 200);
    assert_int_equal(fleet.stores, 1);
    assert_int_equal(store.puts, 0);
}

/* Shutting down: the claims held pass on instead of a 503 published. */
static void
test_shutdown_abandons(void **state)
{
    gw.flight_process = &process.base;
    gw.flight_fleet = &fleet.base;
    start_call();
    process.cb(AGW_TIER_LEAD, NULL, process.arg);
    fleet.cb(AGW_TIER_LEAD, NULL, fleet.arg);
    gw.draining = true;
    agw_create_abort_all(&gw);
    assert_int_equal(caller.status, 503);
    assert_int_equal(fleet.abandons, 1);
    assert_int_equal(process.abandons, 1);
    assert_int_equal(fleet.releases + process.releases, 0);
    assert_int_equal(up.cancels, 1);
}

static void
test_429_then_success(void **state)
{
    start_call();
    upstream_answers(AGW_ATTEMPT_RESPONSE, 429, 1);
    assert_int_equal(limiter.pauses, 1);
    assert_int_equal(caller.sent, 0);
    assert_int_equal(limiter.acquires, 2);
    assert_int_equal(up.posts, 2);
    upstream_answers(AGW_ATTEMPT_RESPONSE, 200, -1);
    assert_int_equal(caller.sent, 1);
    assert_int_equal(caller.status, 200);
}

static void
test_waiter_gets_leaders_answer(void **state)
{
    start_call();
    start_call(); /* same key: waits on the first */
    assert_int_equal(up.posts, 1);
    upstream_answers(AGW_ATTEMPT_RESPONSE, 200, -1);
    assert_int_equal(caller.sent, 2);
    assert_int_equal(caller.hits, 1); /* the waiter's; then the leader */
    assert_string_equal(caller.cache, "MISS");
}

static void
test_abort_all_with_lookup_out(void **state)
{
    store.defer = true;
    start_call();
    agw_create_abort_all(&gw);
    assert_int_equal(caller.status, 503);
    store.cb(AGW_STORE_MISS, 0, NULL, 0, store.arg);
    assert_int_equal(caller.sent, 1);
    assert_int_equal(limiter.acquires, 0);
}

static void
test_slot_later(void **state)
{
    limiter.wait_us = 20000;
    start_call();
    assert_int_equal(up.posts, 0); /* QUEUED: on its timer */
    run_until(attempt_out);
    assert_int_equal(limiter.acquires, 1);
    upstream_answers(AGW_ATTEMPT_RESPONSE, 200, -1);
    assert_int_equal(caller.status, 200);
}

static void
test_limiter_change_asks_again(void **state)
{
    limiter.wait_us = 1000000; /* would leave in 1 s */
    start_call();
    assert_int_equal(up.posts, 0);
    limiter.epoch = 1; /* Redis came back, say: a new limiter */
    limiter.wait_us = 0;
    agw_create_on_limiter_change(&gw);
    assert_int_equal(limiter.acquires, 2);
    assert_int_equal(up.posts, 1); /* now, not on the old schedule */
    upstream_answers(AGW_ATTEMPT_RESPONSE, 200, -1);
    assert_int_equal(caller.status, 200);
}

static void
test_deadline_in_flight(void **state)
{
    gw.cfg->request_deadline_ms = 30;
    gw.flight_fleet = &fleet.base;
    start_call();
    assert_int_equal(fleet.joins, 1);
    run_until(answered);
    assert_int_equal(caller.status, 504);
    assert_int_equal(fleet.cancels, 1);
    assert_int_equal(fleet.releases, 0);
}

static void
test_5xx_backoff_then_success(void **state)
{
    caller.body = BODY_ID;
    start_call();
    upstream_answers(AGW_ATTEMPT_RESPONSE, 503, -1);
    assert_int_equal(caller.sent, 0); /* BACKOFF: on its timer */
    run_until(attempt_out);
    assert_int_equal(up.posts, 2);
    upstream_answers(AGW_ATTEMPT_RESPONSE, 200, -1);
    assert_int_equal(caller.sent, 1);
    assert_int_equal(caller.status, 200);
}

/* Every call the departure guard lets go is reported to left() once,
 * through the attempt's own request: its send time, or 0 if never sent. */
static void
test_departures_through_the_request(void **state)
{
    start_call();
    assert_null(up.on_sent); /* no guard: nobody to tell */
    upstream_answers(AGW_ATTEMPT_RESPONSE, 200, -1);
    limiter.base.ops = &guarded_ops;
    memset(&caller, 0, sizeof(caller));
    caller.body = BODY_ID;
    start_call();
    assert_int_equal(limiter.leaves, 1);
    assert_non_null(up.on_sent);
    assert_ptr_equal(up.sent_arg, &limiter.base);
    upstream_departs(12345); /* the request left */
    assert_int_equal(limiter.lefts, 1);
    assert_int_equal(limiter.left_us, 12345);
    upstream_answers(AGW_ATTEMPT_RESPONSE, 503, -1);
    assert_int_equal(limiter.lefts, 1);
    run_until(attempt_out); /* the retry, never sent: told 0 */
    assert_int_equal(limiter.leaves, 2);
    upstream_answers(AGW_ATTEMPT_CONNECT_FAILED, 0, -1);
    assert_int_equal(limiter.lefts, 2);
    assert_int_equal(limiter.left_us, 0);
    run_until(attempt_out); /* the last one, cancelled before it left */
    agw_create_abort_all(&gw);
    assert_int_equal(caller.sent, 1);
    assert_int_equal(limiter.leaves, 3);
    assert_int_equal(limiter.lefts, 3);
    assert_int_equal(limiter.left_us, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_miss_leads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_retry_success, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_late_store_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_limiter_reply, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redis_down_mid_call, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fleet_lead_releases, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_process_then_fleet, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_process_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_lead_stores, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_abandons, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_429_then_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiter_gets_leaders_answer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_abort_all_with_lookup_out, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_slot_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limiter_change_asks_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deadline_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_5xx_backoff_then_success, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_departures_through_the_request,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
