/*
 * test_flight.c - the stacked flight (flight.h) over a real loop tier
 * and fake process and fleet tiers (their vtables), which keep the
 * callback for the test to fire: which tiers a call joins, in what
 * order, what it is told, and what its finish or abandon does to each.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "flight.h"
#include "flight_loop.h"
#include "flight_tier.h"
#include "reply.h"

#define KEY "k1"

/* ---- a fake tier; EVENTS logs what the tiers are asked, in order ---- */

static char events[256];

struct fake_tier {
    struct agw_flight_tier base;
    const char *name;
    agw_flight_tier_cb cb;
    void *arg;
};

static void
note(const struct agw_flight_tier *f, const char *what)
{
    size_t n = strlen(events);

    snprintf(events + n, sizeof(events) - n, "%s%s.%s", n > 0 ? " " : "",
             ((const struct fake_tier *)f)->name, what);
}

static struct agw_flight_wait *
tier_join(struct agw_flight_tier *f, const char *key, agw_flight_tier_cb cb,
          void *arg)
{
    struct fake_tier *t = (struct fake_tier *)f;

    note(f, "join");
    t->cb = cb;
    t->arg = arg;
    return (struct agw_flight_wait *)t;
}

static struct agw_flight_wait *
tier_lookup(struct agw_flight_tier *f, const char *key, agw_flight_tier_cb cb,
            void *arg)
{
    struct fake_tier *t = (struct fake_tier *)f;

    note(f, "lookup");
    t->cb = cb;
    t->arg = arg;
    return (struct agw_flight_wait *)t;
}

static void
tier_cancel(struct agw_flight_tier *f, struct agw_flight_wait *wait)
{
    note(f, "cancel");
}

static void
tier_renew(struct agw_flight_tier *f, const char *key, int ttl_ms)
{
    note(f, "renew");
}

static void
tier_release(struct agw_flight_tier *f, const char *key,
             const struct agw_response *resp)
{
    note(f, "release");
}

static void
tier_release_storing(struct agw_flight_tier *f, const char *key,
                     const struct agw_response *resp, long ttl_s)
{
    note(f, "store");
}

static void
tier_abandon(struct agw_flight_tier *f, const char *key)
{
    note(f, "abandon");
}

static const struct agw_flight_tier_ops tier_ops = {
    .join = tier_join,
    .cancel = tier_cancel,
    .renew = tier_renew,
    .release = tier_release,
    .abandon = tier_abandon,
};

/* The Redis one: its claim looks the store up, its release writes it. */
static const struct agw_flight_tier_ops seeing_ops = {
    .join = tier_join,
    .cancel = tier_cancel,
    .renew = tier_renew,
    .release = tier_release,
    .abandon = tier_abandon,
    .lookup = tier_lookup,
    .release_storing = tier_release_storing,
};

static struct fake_tier process = {{&tier_ops}, "process", NULL, NULL};
static struct fake_tier fleet = {{&tier_ops}, "fleet", NULL, NULL};

/* ---- what the flight tells its caller ---- */

struct told {
    int calls;
    enum agw_flight_outcome outcome;
    int status;
};

static void
on_flight(enum agw_flight_outcome outcome, const struct agw_response *resp,
          void *arg)
{
    struct told *told = arg;

    told->calls++;
    told->outcome = outcome;
    told->status = resp != NULL ? resp->status : 0;
}

static struct agw_flight_tiers tiers;

static int
setup(void **state)
{
    events[0] = '\0';
    process.base.ops = &tier_ops;
    fleet.base.ops = &tier_ops;
    tiers = (struct agw_flight_tiers){.loop = agw_flight_loop_new()};
    assert_non_null(tiers.loop);
    return 0;
}

static int
teardown(void **state)
{
    assert_int_equal(agw_flight_loop_flights(tiers.loop), 0);
    agw_flight_loop_free(tiers.loop);
    return 0;
}

static enum agw_flight_outcome
join(struct agw_flight *f, bool lookup, struct told *told)
{
    return agw_flight_join(f, &tiers, KEY, lookup, "rid", on_flight, told);
}

static const struct agw_response ok = {.status = 200, .retry_after_s = -1};

/* ---- the scenarios ---- */

/* One loop, no wider tier: the first leads at once, the next queues and
 * is answered by the leader's finish. */
static void
test_loop_only(void **state)
{
    struct agw_flight a, b;
    struct told ta = {0}, tb = {0};

    assert_int_equal(join(&a, true, &ta), AGW_FLIGHT_LEAD);
    assert_int_equal(join(&b, true, &tb), AGW_FLIGHT_QUEUED);
    assert_int_equal(ta.calls + tb.calls, 0);
    assert_false(agw_flight_stores(&a));
    agw_flight_finish(&a, &ok, 60);
    assert_int_equal(ta.calls, 0);
    assert_int_equal(tb.calls, 1);
    assert_int_equal(tb.outcome, AGW_FLIGHT_ANSWERED);
    assert_int_equal(tb.status, 200);
    agw_flight_finish(&a, &ok, 60); /* done: nothing more */
    assert_int_equal(tb.calls, 1);
}

/* A purge of the key while a flight is under way (SPEC §12): that
 * flight's calls are told their answer must not be kept, and still get
 * it; a call joining after the purge leads a flight of its own. */
static void
test_purge_detaches(void **state)
{
    struct agw_flight a, b, c, d;
    struct told ta = {0}, tb = {0}, tc = {0}, td = {0};
    struct agw_response created = {.status = 201, .retry_after_s = -1};

    assert_int_equal(join(&a, true, &ta), AGW_FLIGHT_LEAD);
    assert_int_equal(join(&b, true, &tb), AGW_FLIGHT_QUEUED);
    assert_false(agw_flight_purged(&a));
    agw_flight_purge(KEY);
    assert_true(agw_flight_purged(&a));
    assert_int_equal(join(&c, true, &tc), AGW_FLIGHT_LEAD);
    assert_false(agw_flight_purged(&c));
    assert_int_equal(agw_flight_loop_flights(tiers.loop), 2);
    agw_flight_finish(&c, &created, 60); /* not the purged one's waiter */
    assert_int_equal(tb.calls, 0);
    agw_flight_finish(&a, &ok, 60);
    assert_int_equal(tb.calls, 1);
    assert_int_equal(tb.status, 200);
    /* Every key (purges missed while away from Redis). */
    assert_int_equal(join(&d, true, &td), AGW_FLIGHT_LEAD);
    agw_flight_purge(NULL);
    assert_true(agw_flight_purged(&d));
    agw_flight_finish(&d, &ok, 60);
    assert_int_equal(ta.calls + tc.calls + td.calls, 0);
}

/* Loop, then process, then fleet; CB once, never inside join; finish
 * releases the widest tier first, then answers the loop's waiter. */
static void
test_tiers_stack(void **state)
{
    struct agw_flight a, b;
    struct told ta = {0}, tb = {0};

    tiers.process = &process.base;
    tiers.fleet = &fleet.base;
    assert_int_equal(join(&a, true, &ta), AGW_FLIGHT_WAIT);
    assert_int_equal(join(&b, true, &tb), AGW_FLIGHT_QUEUED);
    assert_string_equal(events, "process.join");
    process.cb(AGW_TIER_LEAD, NULL, process.arg);
    assert_string_equal(events, "process.join fleet.join");
    assert_int_equal(ta.calls, 0);
    fleet.cb(AGW_TIER_LEAD, NULL, fleet.arg);
    assert_int_equal(ta.calls, 1);
    assert_int_equal(ta.outcome, AGW_FLIGHT_LEAD); /* this fleet can't look */
    agw_flight_renew(&a, 5000);
    agw_flight_finish(&a, &ok, 60);
    assert_string_equal(events, "process.join fleet.join fleet.renew "
                                "fleet.release process.release");
    assert_int_equal(tb.calls, 1);
    assert_int_equal(tb.outcome, AGW_FLIGHT_ANSWERED);
    assert_int_equal(ta.calls, 1);
}

/* Another worker answered: the fleet is never asked. */
static void
test_process_answers(void **state)
{
    struct agw_flight a;
    struct told ta = {0};

    tiers.process = &process.base;
    tiers.fleet = &fleet.base;
    join(&a, true, &ta);
    process.cb(AGW_TIER_ANSWER, &ok, process.arg);
    assert_int_equal(ta.outcome, AGW_FLIGHT_ANSWERED);
    assert_int_equal(ta.status, 200);
    agw_flight_finish(&a, &ok, 60);
    assert_string_equal(events, "process.join");
}

/* A fleet that sees the store: STORED, LEAD_MISS and a storing release;
 * a call that refreshes (no lookup) joins, and its lead is LEAD. */
static void
test_fleet_sees_store(void **state)
{
    struct agw_flight a;
    struct told ta = {0};

    fleet.base.ops = &seeing_ops;
    tiers.fleet = &fleet.base;
    join(&a, true, &ta);
    fleet.cb(AGW_TIER_STORED, &ok, fleet.arg);
    assert_int_equal(ta.outcome, AGW_FLIGHT_STORED);
    agw_flight_finish(&a, &ok, 60);
    assert_string_equal(events, "fleet.lookup");

    events[0] = '\0';
    join(&a, true, &ta);
    fleet.cb(AGW_TIER_LEAD, NULL, fleet.arg);
    assert_int_equal(ta.outcome, AGW_FLIGHT_LEAD_MISS);
    assert_true(agw_flight_stores(&a));
    agw_flight_finish(&a, &ok, 60);
    assert_string_equal(events, "fleet.lookup fleet.store");

    events[0] = '\0';
    join(&a, false, &ta);
    fleet.cb(AGW_TIER_LEAD, NULL, fleet.arg);
    assert_int_equal(ta.outcome, AGW_FLIGHT_LEAD);
    agw_flight_finish(&a, &(struct agw_response){.status = 502}, 60);
    assert_string_equal(events, "fleet.join fleet.release");
}

/* Redis away: LEAD on this instance only; no claim to release, and no
 * rejoin while Redis is not up. */
static void
test_fleet_unavailable(void **state)
{
    struct agw_flight a;
    struct told ta = {0};

    tiers.fleet = &fleet.base;
    join(&a, true, &ta);
    fleet.cb(AGW_TIER_UNAVAILABLE, NULL, fleet.arg);
    assert_int_equal(ta.outcome, AGW_FLIGHT_LEAD);
    assert_false(agw_flight_may_rejoin(&a));
    assert_false(agw_flight_rejoin(&a));
    assert_false(agw_flight_stores(&a));
    agw_flight_renew(&a, 5000);
    agw_flight_finish(&a, &ok, 60);
    assert_string_equal(events, "fleet.join");
    assert_int_equal(ta.calls, 1);
}

/* The deadline: finish cancels the open wait; CB never runs. */
static void
test_finish_cancels_wait(void **state)
{
    struct agw_flight a;
    struct told ta = {0};

    tiers.process = &process.base;
    tiers.fleet = &fleet.base;
    join(&a, true, &ta);
    process.cb(AGW_TIER_LEAD, NULL, process.arg);
    agw_flight_finish(&a, &(struct agw_response){.status = 504}, 60);
    assert_string_equal(events,
                        "process.join fleet.join fleet.cancel process.release");
    assert_int_equal(ta.calls, 0);
}

/* Shutting down: the claims pass on; the loop's waiter gets the 503. */
static void
test_abandon(void **state)
{
    struct agw_flight a, b;
    struct told ta = {0}, tb = {0};

    tiers.process = &process.base;
    tiers.fleet = &fleet.base;
    join(&a, true, &ta);
    join(&b, true, &tb);
    process.cb(AGW_TIER_LEAD, NULL, process.arg);
    fleet.cb(AGW_TIER_LEAD, NULL, fleet.arg);
    agw_flight_abandon(&a, &(struct agw_response){.status = 503});
    assert_string_equal(events, "process.join fleet.join fleet.abandon "
                                "process.abandon");
    assert_int_equal(tb.calls, 1);
    assert_int_equal(tb.status, 503);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_loop_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_detaches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tiers_stack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_process_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_sees_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_unavailable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_finish_cancels_wait, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_abandon, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
