/*
 * test_gcra.c - the GCRA arithmetic (above all: never more than
 * ceil(rate) + burst grants in any one-second window) and the local
 * limiter built on it, through its ops table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "gcra.h"
#include "limiter.h"
#include "util.h"

#define SEC INT64_C(1000000)
#define T0 (INT64_C(1000) * SEC) /* an arbitrary "now" */

/* xorshift64*: a deterministic stream, so a failure reproduces. */
static uint64_t rng_state;

static double
rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * UINT64_C(2685821657736338717)) >> 11) /
           9007199254740992.0;
}

static int64_t
rnd_us(int64_t below)
{
    return (int64_t)(rnd() * (double)below);
}

/* Field by field: the struct has padding that memcmp would read. */
static void
expect_same_gcra(const struct agw_gcra *a, const struct agw_gcra *b)
{
    assert_int_equal(a->interval_us, b->interval_us);
    assert_int_equal(a->tolerance_us, b->tolerance_us);
    assert_int_equal(a->tat_us, b->tat_us);
    assert_int_equal(a->rate_per_s, b->rate_per_s);
}

static void
test_interval_rounds_up(void **state)
{
    static const double rates[] = {0.5, 1, 2.5, 3, 7, 7.3, 95, 99, 100, 333};
    struct agw_gcra g;

    (void)state;
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        agw_gcra_init(&g, rates[i], 2);
        /* rate intervals never fit in less than a second... */
        assert_true((double)g.interval_us * rates[i] >= 1e6);
        /* ...and the interval is not longer than it must be. */
        assert_true((double)(g.interval_us - 1) * rates[i] < 1e6);
        assert_int_equal(g.tolerance_us, 2 * g.interval_us);
    }
    agw_gcra_init(&g, 2.5, 0);
    assert_int_equal(g.rate_per_s, 3);
    agw_gcra_init(&g, 95, 0);
    assert_int_equal(g.rate_per_s, 95);
    assert_int_equal(g.interval_us, 10527);
}

/* Most grants in any half-open window [t, t + 1 s); START is sorted. */
static int
max_in_window(const int64_t *start, int n)
{
    int best = 0;
    int j = 0;

    for (int i = 0; i < n; i++) {
        while (start[i] - start[j] >= SEC) {
            j++;
        }
        if (i - j + 1 > best) {
            best = i - j + 1;
        }
    }
    return best;
}

static int64_t
sim_gap(const struct agw_gcra *g)
{
    double r = rnd();
    double full = g->rate_per_s + (double)g->tolerance_us / g->interval_us;

    /* Rare enough that busy stretches fill whole windows. */
    if (r < 0.25 / (full + 1)) {
        /* Idle, often long enough to drain a backlog of up to the
         * longest max wait (3 s): the burst refills. */
        return rnd_us(6 * SEC + 2 * g->tolerance_us);
    }
    if (r < 0.4) {
        return 0; /* simultaneous arrivals */
    }
    return rnd_us(2 * g->interval_us);
}

static int64_t
sim_max_wait(int64_t interval)
{
    double r = rnd();

    if (r < 0.2) {
        return 0;
    }
    if (r < 0.5) {
        return rnd_us(3 * interval);
    }
    return rnd_us(3 * SEC);
}

#define SIM_CALLS 20000

/*
 * Random arrivals (idle gaps, simultaneous bursts, overload) with random
 * max waits; every grant starts at now + wait. No one-second window may
 * hold more than ceil(rate) + burst starts, and under this load some
 * window must reach exactly that (so the bound is tight, not loose).
 */
static void
simulate(double rate, int burst, uint64_t seed)
{
    struct agw_gcra g;
    struct agw_gcra before;
    int64_t *start = calloc(SIM_CALLS, sizeof(*start));
    int64_t now = T0;
    int n = 0;

    assert_non_null(start);
    rng_state = seed;
    agw_gcra_init(&g, rate, burst);
    for (int i = 0; i < SIM_CALLS; i++) {
        int64_t max_wait = sim_max_wait(g.interval_us);
        int64_t wait = -1;

        now += sim_gap(&g);
        before = g;
        if (agw_gcra_reserve(&g, now, max_wait, &wait)) {
            assert_true(wait >= 0 && wait <= max_wait);
            /* Starts come in grant order (the proof's t_k grow). */
            assert_true(n == 0 || now + wait >= start[n - 1]);
            start[n++] = now + wait;
        } else {
            assert_true(wait > max_wait);
            expect_same_gcra(&before, &g);
        }
    }
    assert_true(n > SIM_CALLS / 10);
    assert_int_equal(max_in_window(start, n), g.rate_per_s + burst);
    free(start);
}

static void
test_window_bound(void **state)
{
    static const struct {
        double rate;
        int burst;
    } cases[] = {
        {1, 0},   {2.5, 0}, {2.5, 3}, {3, 2},  {7.3, 1}, {0.5, 0},
        {0.5, 2}, {95, 0},  {95, 5},  {99, 1}, {100, 0}, {1000, 10},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (uint64_t seed = 1; seed <= 3; seed++) {
            simulate(cases[i].rate, cases[i].burst, seed * 7919 + i);
        }
    }
}

static void
test_idle_goes_now(void **state)
{
    struct agw_gcra g;
    int64_t wait = -1;

    (void)state;
    agw_gcra_init(&g, 10, 0);
    assert_true(agw_gcra_reserve(&g, T0, 0, &wait));
    assert_int_equal(wait, 0);
    /* Long idle afterwards: again no wait, and no credit beyond burst. */
    assert_true(agw_gcra_reserve(&g, T0 + 60 * SEC, 0, &wait));
    assert_int_equal(wait, 0);
    assert_false(agw_gcra_reserve(&g, T0 + 60 * SEC, 0, &wait));
}

static void
test_wait_grows_by_interval(void **state)
{
    struct agw_gcra g;
    int64_t wait = -1;

    (void)state;
    agw_gcra_init(&g, 10, 0);
    for (int i = 0; i < 5; i++) {
        assert_true(agw_gcra_reserve(&g, T0, 10 * SEC, &wait));
        assert_int_equal(wait, i * 100000);
    }
    /* Half an interval later, the next slot is half an interval nearer. */
    assert_true(agw_gcra_reserve(&g, T0 + 50000, 10 * SEC, &wait));
    assert_int_equal(wait, 5 * 100000 - 50000);
}

static void
test_reject_takes_nothing(void **state)
{
    struct agw_gcra g;
    struct agw_gcra before;
    int64_t wait = -1;

    (void)state;
    agw_gcra_init(&g, 10, 0);
    assert_true(agw_gcra_reserve(&g, T0, 0, &wait));
    before = g;
    assert_false(agw_gcra_reserve(&g, T0, 99999, &wait));
    assert_int_equal(wait, 100000);
    expect_same_gcra(&before, &g);
    /* Exactly the max wait is still granted. */
    assert_true(agw_gcra_reserve(&g, T0, 100000, &wait));
    assert_int_equal(wait, 100000);
}

/* SPEC section 11: a batch call books only while the backlog stays within
 * its bound with its own slot added, else takes a turn in the wake queue
 * and nothing else; an interactive call never queues behind more than
 * the bound. */
static void
test_batch_backlog(void **state)
{
    struct agw_gcra g, before;
    struct agw_gcra_queue q = {0};
    struct agw_gcra_ask batch = {10 * SEC, 300000, false};
    struct agw_gcra_ask inter = {10 * SEC, -1, false};
    int64_t wait = -1;

    (void)state;
    agw_gcra_init(&g, 10, 0); /* T = 100 ms */
    for (int i = 0; i < 3; i++) {
        assert_true(agw_gcra_reserve_as(&g, &q, NULL, NULL, T0, &batch, &wait));
        assert_int_equal(wait, i * 100000);
    }
    /* Backlog 300 ms: another slot would end past the 300 ms bound, so
     * refused, told to ask when it has drained to 200 ms. */
    before = g;
    assert_false(agw_gcra_reserve_as(&g, &q, NULL, NULL, T0, &batch, &wait));
    assert_int_equal(wait, 100000);
    expect_same_gcra(&before, &g);
    /* The next one waits its own turn, one interval later. */
    assert_false(agw_gcra_reserve_as(&g, &q, NULL, NULL, T0, &batch, &wait));
    assert_int_equal(wait, 200000);
    /* An interactive call still books, behind the bound at most. */
    assert_true(agw_gcra_reserve_as(&g, &q, NULL, NULL, T0, &inter, &wait));
    assert_int_equal(wait, 300000);
    /* Asking again too early (another call took the room): a new turn,
     * after those given already; books once drained to the bound less
     * its slot. */
    batch.retry = true;
    assert_false(
        agw_gcra_reserve_as(&g, &q, NULL, NULL, T0 + 100000, &batch, &wait));
    assert_int_equal(wait, 200000);
    assert_true(
        agw_gcra_reserve_as(&g, &q, NULL, NULL, T0 + 200000, &batch, &wait));
    /* A first ask while turns are due queues behind them. */
    batch.retry = false;
    assert_false(
        agw_gcra_reserve_as(&g, &q, NULL, NULL, T0 + 200000, &batch, &wait));
    /* A turn past the max wait: refused for good, no turn taken. */
    batch.max_wait_us = 1000;
    q.next_us = 0;
    assert_false(
        agw_gcra_reserve_as(&g, &q, NULL, NULL, T0 + 200000, &batch, &wait));
    assert_true(wait > 1000);
    assert_int_equal(q.next_us, 0);
}

/* A bound shorter than one interval: a batch call books only while the
 * schedule is idle (a slot is never split), and then at once. */
static void
test_batch_bound_below_interval(void **state)
{
    struct agw_gcra g, before;
    struct agw_gcra_queue q = {0};
    struct agw_gcra_ask batch = {10 * SEC, 100000, false};
    int64_t wait = -1;

    (void)state;
    agw_gcra_init(&g, 5, 0); /* T = 200 ms */
    assert_true(agw_gcra_reserve_as(&g, &q, NULL, NULL, T0, &batch, &wait));
    assert_int_equal(wait, 0);
    before = g;
    assert_false(agw_gcra_reserve_as(&g, &q, NULL, NULL, T0, &batch, &wait));
    assert_int_equal(wait, 200000); /* when the schedule is idle again */
    expect_same_gcra(&before, &g);
    batch.retry = true;
    assert_true(
        agw_gcra_reserve_as(&g, &q, NULL, NULL, T0 + 200000, &batch, &wait));
    assert_int_equal(wait, 0);
}

/* SPEC section 11: the cap is a second GCRA; a slot only when both grant
 * it, and a refusal by either spends neither. */
static void
test_cap(void **state)
{
    struct agw_gcra g, cap, gb, cb;
    struct agw_gcra_queue q = {0}, cq = {0};
    struct agw_gcra_ask ask = {SEC, -1, false};
    int64_t wait = -1;

    (void)state;
    agw_gcra_init(&g, 100, 0);  /* T = 10 ms */
    agw_gcra_init(&cap, 10, 0); /* 100 ms */
    assert_true(agw_gcra_reserve_as(&g, &q, &cap, &cq, T0, &ask, &wait));
    assert_int_equal(wait, 0);
    assert_int_equal(cap.tat_us, T0 + 100000);
    gb = g;
    cb = cap;
    /* Its fleet slot is 10 ms away: asked at 90 ms, it goes at 100. */
    assert_false(agw_gcra_reserve_as(&g, &q, &cap, &cq, T0, &ask, &wait));
    assert_int_equal(wait, 90000);
    expect_same_gcra(&gb, &g);
    expect_same_gcra(&cb, &cap);
    /* At its turn the cap grants it. */
    ask.retry = true;
    assert_true(
        agw_gcra_reserve_as(&g, &q, &cap, &cq, T0 + 100000, &ask, &wait));
    assert_int_equal(wait, 0);
    /* The fleet refuses (slot past the max wait): the cap spends nothing. */
    g.tat_us = T0 + 3 * SEC;
    cb = cap;
    assert_false(
        agw_gcra_reserve_as(&g, &q, &cap, &cq, T0 + 300000, &ask, &wait));
    expect_same_gcra(&cb, &cap);
    /* A fleet slot later than the cap's TAT: granted at the fleet slot,
     * the cap's next one interval after it. */
    g.tat_us = T0 + 500000;
    assert_true(
        agw_gcra_reserve_as(&g, &q, &cap, &cq, T0 + 300000, &ask, &wait));
    assert_int_equal(wait, 200000);
    assert_int_equal(cap.tat_us, T0 + 600000);
}

static void
test_burst_at_an_instant(void **state)
{
    struct agw_gcra g;
    int64_t wait = -1;

    (void)state;
    agw_gcra_init(&g, 10, 3);
    for (int i = 0; i < 4; i++) {
        assert_true(agw_gcra_reserve(&g, T0, 0, &wait));
        assert_int_equal(wait, 0);
    }
    assert_false(agw_gcra_reserve(&g, T0, 0, &wait));
    assert_int_equal(wait, 100000);
}

static void
test_pause(void **state)
{
    struct agw_gcra g;
    int64_t wait = -1;

    (void)state;
    agw_gcra_init(&g, 10, 2);
    agw_gcra_pause(&g, T0, 2 * SEC);
    assert_false(agw_gcra_reserve(&g, T0, 2 * SEC - 1, &wait));
    assert_int_equal(wait, 2 * SEC);
    /* The first grant starts when the pause ends, then one per interval:
     * the burst is not spent in one go against an upstream that just
     * said 429. */
    assert_true(agw_gcra_reserve(&g, T0, 10 * SEC, &wait));
    assert_int_equal(wait, 2 * SEC);
    assert_true(agw_gcra_reserve(&g, T0, 10 * SEC, &wait));
    assert_int_equal(wait, 2 * SEC + 100000);

    /* A shorter pause never pulls queued slots forward. */
    agw_gcra_pause(&g, T0, SEC);
    assert_true(agw_gcra_reserve(&g, T0, 10 * SEC, &wait));
    assert_int_equal(wait, 2 * SEC + 200000);

    /* Pause from idle, no burst: exactly the pause. */
    agw_gcra_init(&g, 95, 0);
    agw_gcra_pause(&g, T0, 1500000);
    assert_true(agw_gcra_reserve(&g, T0 + 1000, 10 * SEC, &wait));
    assert_int_equal(wait, 1500000 - 1000);
}

static void
expect_state(const struct agw_gcra *g, int64_t now, int remaining, int reset_s)
{
    int r = -1;
    int s = -1;

    agw_gcra_state(g, now, SEC - 1, &r, &s);
    assert_int_equal(r, remaining);
    assert_int_equal(s, reset_s);
}

static void
test_state_numbers(void **state)
{
    struct agw_gcra g;
    int64_t wait;

    (void)state;
    agw_gcra_init(&g, 10, 0);
    expect_state(&g, T0, 10, 0);
    assert_true(agw_gcra_reserve(&g, T0, 0, &wait));
    expect_state(&g, T0, 9, 1);
    for (int i = 0; i < 9; i++) {
        assert_true(agw_gcra_reserve(&g, T0, 10 * SEC, &wait));
    }
    /* The 11th would start at T0 + 1 s: not within the next second. */
    expect_state(&g, T0, 0, 1);
    expect_state(&g, T0 + 1, 1, 1);
    expect_state(&g, T0 + SEC, 10, 0);

    agw_gcra_init(&g, 10, 5);
    expect_state(&g, T0, 15, 0);
    agw_gcra_init(&g, 2.5, 0);
    expect_state(&g, T0, 3, 0);
    agw_gcra_init(&g, 95, 0);
    expect_state(&g, T0, 95, 0);

    agw_gcra_init(&g, 10, 0);
    agw_gcra_pause(&g, T0, 3 * SEC);
    expect_state(&g, T0, 0, 3);
    expect_state(&g, T0 + 2500000, 5, 1);
}

/* Grants that would start before NOW + 1 s, counted on a copy. */
static int
count_next_second(struct agw_gcra g, int64_t now)
{
    int64_t wait;
    int n = 0;

    while (n < 10000 && agw_gcra_reserve(&g, now, SEC - 1, &wait)) {
        n++;
    }
    return n;
}

/* Immediate grants available at NOW (on a copy). */
static int
count_now(struct agw_gcra g, int64_t now)
{
    int64_t wait;
    int n = 0;

    while (n < 10000 && agw_gcra_reserve(&g, now, 0, &wait)) {
        n++;
    }
    return n;
}

/*
 * From many random states: "remaining" is exactly what reserve would
 * grant within the next second, and "reset" is the first whole second
 * at which the full burst is available again.
 */
static void
test_state_matches_reserve(void **state)
{
    static const struct {
        double rate;
        int burst;
    } cases[] = {{10, 0}, {2.5, 1}, {95, 0}, {95, 4}, {7.3, 2}, {0.5, 0}};

    (void)state;
    rng_state = 42;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct agw_gcra g;
        int64_t now = T0;

        agw_gcra_init(&g, cases[c].rate, cases[c].burst);
        for (int i = 0; i < 2000; i++) {
            int64_t wait;
            int remaining;
            int reset_s;

            now += sim_gap(&g);
            agw_gcra_reserve(&g, now, sim_max_wait(g.interval_us), &wait);
            if (rnd() < 0.01) {
                agw_gcra_pause(&g, now, rnd_us(3 * SEC));
            }
            agw_gcra_state(&g, now, SEC - 1, &remaining, &reset_s);
            assert_int_equal(remaining, count_next_second(g, now));
            assert_int_equal(count_now(g, now + reset_s * SEC),
                             cases[c].burst + 1);
            if (reset_s > 0) {
                assert_true(count_now(g, now + (reset_s - 1) * SEC) <=
                            cases[c].burst);
            }
        }
    }
}

/* ---------------------------------------------------- local limiter */

struct rl_result {
    int calls;
    bool granted;
    int64_t wait_us;
};

static void
on_rl(bool granted, int64_t wait_us, uint64_t epoch, void *arg)
{
    struct rl_result *r = arg;

    r->calls++;
    r->granted = granted;
    r->wait_us = wait_us;
}

static struct rl_result
acquire(struct agw_limiter *rl, int64_t max_wait_us)
{
    struct rl_result r = {0, false, -1};

    rl->ops->acquire(rl, max_wait_us, on_rl, &r);
    assert_int_equal(r.calls, 1);
    return r;
}

/* The shared kind keeps one budget for all its references, and lives
 * until the last one is dropped. */
static void
test_local_limiter_shared_references(void **state)
{
    struct agw_limiter *rl = agw_limiter_process_new(10, 0);
    struct agw_limiter *other;

    (void)state;
    assert_non_null(rl);
    other = agw_limiter_process_ref(rl);
    assert_ptr_equal(other, rl);
    assert_true(acquire(rl, 0).granted);
    rl->ops->destroy(rl);
    assert_false(acquire(other, 0).granted); /* the same budget, still alive */
    assert_int_equal(other->ops->leave(other), 0);
    other->ops->left(other, 1);
    other->ops->destroy(other); /* the last reference */
}

static void
test_local_limiter(void **state)
{
    struct agw_limiter *rl = agw_limiter_loop_new(10, 0);
    struct agw_limiter_state st;
    struct rl_result r;

    (void)state;
    assert_non_null(rl);
    assert_string_equal(rl->ops->name, "local");
    assert_int_equal(rl->ops->paused_until(rl), 0);
    rl->ops->state(rl, SEC - 1, &st);
    assert_int_equal(st.limit, 10);
    assert_int_equal(st.remaining, 10);
    assert_int_equal(st.reset_s, 0);

    r = acquire(rl, 0);
    assert_true(r.granted);
    assert_int_equal(r.wait_us, 0);
    /* The next slot is up to one interval away (less as time passes);
     * the interval is (1 s + the 10 ms arrival margin) / rate. */
    r = acquire(rl, 0);
    assert_false(r.granted);
    assert_true(r.wait_us > 0 && r.wait_us <= 101000);
    r = acquire(rl, SEC);
    assert_true(r.granted);
    assert_true(r.wait_us > 0 && r.wait_us <= 101000);
    rl->ops->state(rl, SEC - 1, &st);
    assert_int_equal(st.limit, 10);
    assert_true(st.remaining >= 8 && st.remaining <= 9);
    assert_int_equal(st.reset_s, 1);
    rl->ops->destroy(rl);
}

static void
test_local_limiter_pause(void **state)
{
    struct agw_limiter *rl = agw_limiter_loop_new(95, 3);
    struct timespec ms2 = {0, 2000000};
    struct rl_result r;
    int64_t before = agw_now_us();
    int64_t until;
    int64_t after;

    (void)state;
    assert_non_null(rl);
    rl->ops->pause(rl, 500000);
    until = rl->ops->paused_until(rl);
    after = agw_now_us();
    assert_true(until >= before + 500000 && until <= after + 500000);

    r = acquire(rl, 100000);
    assert_false(r.granted); /* the pause is longer than the max wait */
    r = acquire(rl, 10 * SEC);
    after = agw_now_us();
    assert_true(r.granted);
    /* Started no earlier than the pause end: the call happened before
     * AFTER, so now + wait >= until implies wait >= until - after. */
    assert_true(r.wait_us >= until - after);
    assert_true(r.wait_us <= 500000);

    /* A shorter pause does not shorten it. */
    rl->ops->pause(rl, 1000);
    assert_int_equal(rl->ops->paused_until(rl), until);
    rl->ops->destroy(rl);

    /* An elapsed pause reads as 0. */
    rl = agw_limiter_loop_new(95, 0);
    assert_non_null(rl);
    rl->ops->pause(rl, 1000);
    assert_true(rl->ops->paused_until(rl) != 0);
    nanosleep(&ms2, NULL);
    assert_int_equal(rl->ops->paused_until(rl), 0);
    rl->ops->destroy(rl);
}

/* With a margin, any rate + burst + 1 grants span at least 1 s + margin,
 * whatever the arrival pattern. */
static void
test_margin_spacing(void **state)
{
    static const struct {
        double rate;
        int burst;
    } cases[] = {{20, 0}, {20, 5}, {95, 0}, {7.3, 2}};
    const int64_t margin = 10000;
    int64_t starts[4000];

    (void)state;
    rng_state = UINT64_C(0x9e3779b97f4a7c15);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct agw_gcra g;
        int64_t now = T0;
        int n = 0;
        int span;

        agw_gcra_init_margin(&g, cases[c].rate, cases[c].burst, margin);
        assert_true((double)g.interval_us * cases[c].rate >= 1e6 + margin);
        while (n < 4000) {
            int64_t wait;

            now += rnd_us(g.interval_us * 2);
            if (agw_gcra_reserve(&g, now, 3 * SEC, &wait)) {
                starts[n++] = now + wait;
            }
        }
        span = g.rate_per_s + cases[c].burst;
        for (int i = 0; i + span < n; i++) {
            assert_true(starts[i + span] - starts[i] >= SEC + margin);
        }
    }
}

/* The departure guard counts real departures, calls in transit as the
 * most recent ones. */
static void
test_local_departure_guard(void **state)
{
    struct agw_limiter *rl = agw_limiter_loop_new(5, 0);
    int64_t now = agw_now_us();
    int64_t hold;

    (void)state;
    assert_non_null(rl);
    /* Five departures in a row are fine... */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(rl->ops->leave(rl), 0);
        rl->ops->left(rl, now);
    }
    /* ...a sixth must wait until the first is a window (1.01 s) old. */
    hold = rl->ops->leave(rl);
    assert_true(hold > 900000 && hold <= 1010000);
    /* A call that never left frees its place without a departure. */
    rl->ops->destroy(rl);

    rl = agw_limiter_loop_new(2, 0);
    assert_int_equal(rl->ops->leave(rl), 0);
    assert_int_equal(rl->ops->leave(rl), 0);
    /* Both in transit: nothing is known yet, look again shortly. */
    hold = rl->ops->leave(rl);
    assert_true(hold > 0 && hold < 100000);
    rl->ops->left(rl, 0);
    rl->ops->left(rl, 0);
    assert_int_equal(rl->ops->leave(rl), 0);
    rl->ops->destroy(rl);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interval_rounds_up),
        cmocka_unit_test(test_margin_spacing),
        cmocka_unit_test(test_window_bound),
        cmocka_unit_test(test_idle_goes_now),
        cmocka_unit_test(test_wait_grows_by_interval),
        cmocka_unit_test(test_reject_takes_nothing),
        cmocka_unit_test(test_batch_backlog),
        cmocka_unit_test(test_batch_bound_below_interval),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_burst_at_an_instant),
        cmocka_unit_test(test_pause),
        cmocka_unit_test(test_state_numbers),
        cmocka_unit_test(test_state_matches_reserve),
        cmocka_unit_test(test_local_limiter),
        cmocka_unit_test(test_local_limiter_shared_references),
        cmocka_unit_test(test_local_limiter_pause),
        cmocka_unit_test(test_local_departure_guard),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
