/*
 * test_flight_process.c - single flight across workers: who leads, how an
 * answer reaches waiters on other loops, cancel, abandon and free hand the
 * claim on; and the shared store and limiter from several threads.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "flight_process.h"
#include "flight_tier.h"
#include "limiter.h"
#include "metrics.h"
#include "reply.h"
#include "store.h"
#include "util.h"

#define WORKERS 3

struct outcome {
    int calls;
    enum agw_flight_tier_outcome outcome;
    int status;
    char body[64];
};

struct world {
    struct agw_flight_board *board;
    struct event_base *base[WORKERS];
    struct agw_flight_tier *fleet[WORKERS];
};

static void
on_outcome(enum agw_flight_tier_outcome outcome,
           const struct agw_response *resp, void *arg)
{
    struct outcome *o = arg;

    o->calls++;
    o->outcome = outcome;
    if (resp != NULL) {
        o->status = resp->status;
        snprintf(o->body, sizeof(o->body), "%.*s", (int)resp->len, resp->body);
    }
}

/* Each loop runs until it has nothing ready (all in this thread). */
static void
run_all(struct world *w)
{
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < WORKERS; i++) {
            event_base_loop(w->base[i], EVLOOP_NONBLOCK);
        }
    }
}

static int
setup(void **state)
{
    static struct world w;

    evthread_use_pthreads();
    memset(&w, 0, sizeof(w));
    w.board = agw_flight_board_new();
    assert_non_null(w.board);
    for (int i = 0; i < WORKERS; i++) {
        w.base[i] = event_base_new();
        w.fleet[i] = agw_flight_process_new(w.base[i], w.board);
        assert_non_null(w.fleet[i]);
    }
    *state = &w;
    return 0;
}

static int
teardown(void **state)
{
    struct world *w = *state;

    for (int i = 0; i < WORKERS; i++) {
        agw_flight_tier_free(w->fleet[i]);
        event_base_free(w->base[i]);
    }
    agw_flight_board_free(w->board);
    return 0;
}

static void
release_with(struct agw_flight_tier *fleet, const char *key, int status,
             const char *body)
{
    struct agw_response resp = {status, (char *)body, strlen(body), -1};

    agw_flight_tier_release(fleet, key, &resp);
}

static void
test_first_leads_others_get_the_answer(void **state)
{
    struct world *w = *state;
    struct outcome a = {0}, b = {0}, c = {0};

    agw_flight_tier_join(w->fleet[0], "k", on_outcome, &a);
    agw_flight_tier_join(w->fleet[1], "k", on_outcome, &b);
    agw_flight_tier_join(w->fleet[2], "k", on_outcome, &c);
    assert_int_equal(a.calls, 0); /* never before join() returns */
    run_all(w);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.outcome, AGW_TIER_LEAD);
    assert_int_equal(b.calls + c.calls, 0);
    assert_int_equal(agw_metrics_gauge_get(AGW_M_SINGLEFLIGHT_WAITERS), 2);
    release_with(w->fleet[0], "k", 201, "{\"a\":1}");
    assert_int_equal(b.calls, 0); /* delivered on B's own loop */
    run_all(w);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.outcome, AGW_TIER_ANSWER);
    assert_int_equal(b.status, 201);
    assert_string_equal(b.body, "{\"a\":1}");
    assert_int_equal(c.calls, 1);
    assert_string_equal(c.body, "{\"a\":1}");
    assert_int_equal(agw_metrics_gauge_get(AGW_M_SINGLEFLIGHT_WAITERS), 0);
    /* The flight is over: the next join leads a new one. */
    agw_flight_tier_join(w->fleet[1], "k", on_outcome, &b);
    run_all(w);
    assert_int_equal(b.calls, 2);
    assert_int_equal(b.outcome, AGW_TIER_LEAD);
    release_with(w->fleet[1], "k", 200, "{}");
}

static void
test_keys_are_independent(void **state)
{
    struct world *w = *state;
    struct outcome a = {0}, b = {0};

    agw_flight_tier_join(w->fleet[0], "k1", on_outcome, &a);
    agw_flight_tier_join(w->fleet[1], "k2", on_outcome, &b);
    run_all(w);
    assert_int_equal(a.outcome, AGW_TIER_LEAD);
    assert_int_equal(b.outcome, AGW_TIER_LEAD);
    /* Only the holder's release counts. */
    release_with(w->fleet[1], "k1", 500, "{}");
    agw_flight_tier_join(w->fleet[2], "k1", on_outcome, &b);
    run_all(w);
    assert_int_equal(b.calls, 1);
    release_with(w->fleet[0], "k1", 200, "{\"k\":1}");
    run_all(w);
    assert_int_equal(b.calls, 2);
    assert_string_equal(b.body, "{\"k\":1}");
    release_with(w->fleet[1], "k2", 200, "{}");
}

static void
test_cancelled_waiter_is_never_called(void **state)
{
    struct world *w = *state;
    struct outcome a = {0}, b = {0}, c = {0};
    struct agw_flight_wait *wb;

    agw_flight_tier_join(w->fleet[0], "k", on_outcome, &a);
    run_all(w);
    wb = agw_flight_tier_join(w->fleet[1], "k", on_outcome, &b);
    agw_flight_tier_join(w->fleet[2], "k", on_outcome, &c);
    agw_flight_tier_cancel(w->fleet[1], wb);
    assert_int_equal(agw_metrics_gauge_get(AGW_M_SINGLEFLIGHT_WAITERS), 1);
    release_with(w->fleet[0], "k", 200, "{}");
    run_all(w);
    assert_int_equal(b.calls, 0);
    assert_int_equal(c.calls, 1);

    /* Cancelled after the answer was posted, before its loop ran. */
    agw_flight_tier_join(w->fleet[0], "k", on_outcome, &a);
    run_all(w);
    wb = agw_flight_tier_join(w->fleet[1], "k", on_outcome, &b);
    release_with(w->fleet[0], "k", 200, "{}");
    agw_flight_tier_cancel(w->fleet[1], wb);
    run_all(w);
    assert_int_equal(b.calls, 0);
}

static void
test_abandon_and_cancelled_lead_hand_the_claim_on(void **state)
{
    struct world *w = *state;
    struct outcome a = {0}, b = {0}, c = {0};
    struct agw_flight_wait *wb;

    agw_flight_tier_join(w->fleet[0], "k", on_outcome, &a);
    run_all(w);
    wb = agw_flight_tier_join(w->fleet[1], "k", on_outcome, &b);
    agw_flight_tier_join(w->fleet[2], "k", on_outcome, &c);
    agw_flight_tier_abandon(w->fleet[0], "k");
    /* B was handed the claim, but its caller gave up before hearing so:
     * the claim must pass on to C, not be left without a holder. */
    agw_flight_tier_cancel(w->fleet[1], wb);
    run_all(w);
    assert_int_equal(b.calls, 0);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.outcome, AGW_TIER_LEAD);
    agw_flight_tier_join(w->fleet[0], "k", on_outcome, &a);
    release_with(w->fleet[2], "k", 200, "{\"c\":1}");
    run_all(w);
    assert_int_equal(a.calls, 2);
    assert_int_equal(a.outcome, AGW_TIER_ANSWER);
    assert_string_equal(a.body, "{\"c\":1}");
}

static void
test_freeing_a_holder_passes_its_claim(void **state)
{
    struct world *w = *state;
    struct outcome a = {0}, b = {0}, c = {0};

    agw_flight_tier_join(w->fleet[0], "k", on_outcome, &a);
    run_all(w);
    agw_flight_tier_join(w->fleet[1], "k", on_outcome, &b);
    agw_flight_tier_join(w->fleet[0], "other", on_outcome, &c); /* never run */
    agw_flight_tier_free(w->fleet[0]);
    w->fleet[0] = agw_flight_process_new(w->base[0], w->board);
    run_all(w);
    assert_int_equal(c.calls, 0);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.outcome, AGW_TIER_LEAD);
    release_with(w->fleet[1], "k", 200, "{}");
    agw_flight_tier_join(w->fleet[2], "other", on_outcome, &c);
    run_all(w);
    assert_int_equal(c.outcome, AGW_TIER_LEAD); /* freed with its holder */
    release_with(w->fleet[2], "other", 200, "{}");
}

/* ------------------------------------------- shared store and limiter */

#define THREADS 4
#define ROUNDS 20000

struct hammer {
    struct agw_store *store;
    struct agw_limiter *limiter;
    int id;
    long hits, granted;
};

static void
on_get(enum agw_store_result result, int status, const char *body, size_t len,
       void *arg)
{
    struct hammer *hm = arg;

    if (result == AGW_STORE_HIT) {
        /* A torn write would show as a body that does not match. */
        assert_int_equal(len, 8);
        assert_memory_equal(body, "answer-", 7);
        assert_int_equal(status, 200 + (body[7] - '0'));
        hm->hits++;
    }
}

static void
on_grant(bool granted, int64_t wait_us, uint64_t epoch, void *arg)
{
    struct hammer *hm = arg;

    if (granted) {
        hm->granted++;
    }
}

static void *
hammer(void *arg)
{
    struct hammer *hm = arg;
    char key[16], body[9];

    for (int i = 0; i < ROUNDS; i++) {
        snprintf(key, sizeof(key), "k%d", (i / 4) % 8);
        snprintf(body, sizeof(body), "answer-%d", hm->id);
        if (i % 4 == 0) {
            hm->store->ops->put(hm->store, key, 200 + hm->id, body, 8, 60);
        } else {
            hm->store->ops->get(hm->store, key, on_get, hm);
        }
        if (i % 100 == 0) {
            hm->limiter->ops->acquire(hm->limiter, 0, on_grant, hm);
        }
    }
    return NULL;
}

static void
test_shared_store_and_limiter_from_threads(void **state)
{
    struct agw_store_tables *tables =
        agw_store_tables_new(1000, SIZE_MAX, 0, 0, 0);
    struct agw_store *store = agw_store_new(tables, NULL, NULL, 0);
    struct agw_limiter *rl = agw_limiter_process_new(10, 0);
    struct hammer hm[THREADS];
    pthread_t th[THREADS];
    long granted = 0, hits = 0;
    int64_t start_us = agw_now_us();
    double elapsed_s;

    assert_non_null(store);
    assert_non_null(rl);
    for (int i = 0; i < THREADS; i++) {
        hm[i] = (struct hammer){agw_store_new(tables, NULL, NULL, 0),
                                agw_limiter_process_ref(rl), i, 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &hm[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        granted += hm[i].granted;
        hits += hm[i].hits;
        hm[i].store->ops->destroy(hm[i].store);
        hm[i].limiter->ops->destroy(hm[i].limiter);
    }
    /* 800 asks with no wait allowed: the one limiter for all threads
     * grants at most one slot per 1/10 s that passed (valgrind is slow). */
    elapsed_s = (double)(agw_now_us() - start_us) / 1e6;
    assert_true(granted >= 1);
    assert_true(granted <= 1 + (long)(elapsed_s * 10) + 1);
    assert_true(hits > 0);
    /* peek answers hits only, before returning; a miss is left to get(). */
    hm[0].hits = 0;
    assert_true(store->ops->peek(store, "k0", on_get, &hm[0]));
    assert_int_equal(hm[0].hits, 1);
    assert_false(store->ops->peek(store, "absent", on_get, &hm[0]));
    assert_int_equal(hm[0].hits, 1);
    store->ops->destroy(store);
    agw_store_tables_unref(tables); /* the last reference */
    rl->ops->destroy(rl);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_leads_others_get_the_answer,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_are_independent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancelled_waiter_is_never_called,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_abandon_and_cancelled_lead_hand_the_claim_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freeing_a_holder_passes_its_claim,
                                        setup, teardown),
        cmocka_unit_test(test_shared_store_and_limiter_from_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
