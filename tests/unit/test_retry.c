/*
 * test_retry.c - the retry decision table (SPEC §5), backoff bounds and
 * Retry-After parsing.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <cmocka.h>

#include "retry.h"

#define MS INT64_C(1000)

struct row {
    enum agw_attempt_outcome outcome;
    int status;
    bool if_idempotent; /* expected with an id */
    bool if_not;        /* expected without one */
};

static const struct row table[] = {
    {AGW_ATTEMPT_CONNECT_FAILED, 0, true, true},
    {AGW_ATTEMPT_TIMEOUT, 0, true, false},
    {AGW_ATTEMPT_BROKEN, 0, true, false},
    {AGW_ATTEMPT_RESPONSE, 200, false, false},
    {AGW_ATTEMPT_RESPONSE, 201, false, false},
    {AGW_ATTEMPT_RESPONSE, 204, false, false},
    {AGW_ATTEMPT_RESPONSE, 301, false, false},
    {AGW_ATTEMPT_RESPONSE, 304, false, false},
    {AGW_ATTEMPT_RESPONSE, 400, false, false},
    {AGW_ATTEMPT_RESPONSE, 401, false, false},
    {AGW_ATTEMPT_RESPONSE, 403, false, false},
    {AGW_ATTEMPT_RESPONSE, 404, false, false},
    {AGW_ATTEMPT_RESPONSE, 408, false, false},
    {AGW_ATTEMPT_RESPONSE, 409, false, false},
    {AGW_ATTEMPT_RESPONSE, 429, false, false},
    {AGW_ATTEMPT_RESPONSE, 499, false, false},
    {AGW_ATTEMPT_RESPONSE, 500, true, false},
    {AGW_ATTEMPT_RESPONSE, 501, false, false},
    {AGW_ATTEMPT_RESPONSE, 502, true, false},
    {AGW_ATTEMPT_RESPONSE, 503, true, false},
    {AGW_ATTEMPT_RESPONSE, 504, true, false},
    {AGW_ATTEMPT_RESPONSE, 505, false, false},
    {AGW_ATTEMPT_RESPONSE, 599, true, false},
    {AGW_ATTEMPT_RESPONSE, 600, false, false},
    {AGW_ATTEMPT_RESPONSE, 0, false, false},
};

#define NROWS (sizeof(table) / sizeof(table[0]))

static void
test_decision_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < NROWS; i++) {
        const struct row *r = &table[i];

        for (int attempt = 1; attempt <= 2; attempt++) {
            if (agw_retry_allowed(r->outcome, r->status, attempt, 2, true) !=
                    r->if_idempotent ||
                agw_retry_allowed(r->outcome, r->status, attempt, 2, false) !=
                    r->if_not) {
                fail_msg("row %zu (outcome %d, status %d), attempt %d", i,
                         (int)r->outcome, r->status, attempt);
            }
        }
    }
}

static void
test_attempt_limit(void **state)
{
    (void)state;
    /* Nothing is retried past max_retries, whatever went wrong. */
    for (size_t i = 0; i < NROWS; i++) {
        const struct row *r = &table[i];

        assert_false(agw_retry_allowed(r->outcome, r->status, 3, 2, true));
        assert_false(agw_retry_allowed(r->outcome, r->status, 1, 0, true));
    }
    assert_true(agw_retry_allowed(AGW_ATTEMPT_CONNECT_FAILED, 0, 2, 2, false));
    assert_false(agw_retry_allowed(AGW_ATTEMPT_CONNECT_FAILED, 0, 3, 2, false));
    assert_true(agw_retry_allowed(AGW_ATTEMPT_RESPONSE, 503, 5, 5, true));
    assert_false(agw_retry_allowed(AGW_ATTEMPT_RESPONSE, 503, 6, 5, true));
    assert_false(agw_retry_allowed(AGW_ATTEMPT_CONNECT_FAILED, 0, 0, 2, true));
}

static void
test_backoff_values(void **state)
{
    (void)state;
    assert_int_equal(agw_backoff_us(1, 0.5), 50 * MS);
    assert_int_equal(agw_backoff_us(2, 0.5), 100 * MS);
    assert_int_equal(agw_backoff_us(3, 0.5), 200 * MS);
    assert_int_equal(agw_backoff_us(5, 0.5), 800 * MS);
    assert_int_equal(agw_backoff_us(6, 0.5), 1000 * MS); /* capped at 2 s */
    assert_int_equal(agw_backoff_us(1000, 0.5), 1000 * MS);
    assert_int_equal(agw_backoff_us(2147483647, 0.5), 1000 * MS);
    /* Never immediate. */
    assert_int_equal(agw_backoff_us(1, 0.0), 10 * MS);
    assert_int_equal(agw_backoff_us(1, 0.05), 10 * MS);
    assert_int_equal(agw_backoff_us(4, 0.0), 10 * MS);
    assert_int_equal(agw_backoff_us(1, 0.2), 20 * MS);
    /* Out-of-range inputs stay in range. */
    assert_int_equal(agw_backoff_us(0, 0.5), 50 * MS);
    assert_int_equal(agw_backoff_us(-3, 0.5), 50 * MS);
    assert_int_equal(agw_backoff_us(1, -1.0), 10 * MS);
    assert_int_equal(agw_backoff_us(1, 1.0), 10 * MS);
    assert_int_equal(agw_backoff_us(1, NAN), 10 * MS);
}

static void
test_backoff_bounds(void **state)
{
    static const double rnds[] = {0.0, 0.01, 0.25, 0.5, 0.75, 0.999999};

    (void)state;
    for (int attempt = 1; attempt <= 12; attempt++) {
        int64_t cap = 100 * MS << (attempt - 1);
        int64_t prev = 0;

        if (cap > 2000 * MS) {
            cap = 2000 * MS;
        }
        for (size_t i = 0; i < sizeof(rnds) / sizeof(rnds[0]); i++) {
            int64_t b = agw_backoff_us(attempt, rnds[i]);

            assert_true(b >= 10 * MS);
            assert_true(b < cap);
            assert_true(b >= prev); /* more rnd, never less backoff */
            prev = b;
        }
        /* The top of the jitter range reaches the cap. */
        assert_true(prev >= cap - cap / 1000);
    }
}

static void
test_retry_after_seconds(void **state)
{
    (void)state;
    assert_int_equal(agw_retry_after_parse("120"), 120);
    assert_int_equal(agw_retry_after_parse("0"), 0);
    assert_int_equal(agw_retry_after_parse("1"), 1);
    assert_int_equal(agw_retry_after_parse(" 5 "), 5);
    assert_int_equal(agw_retry_after_parse("007"), 7);
    assert_int_equal(agw_retry_after_parse("3600"), 3600);
    assert_int_equal(agw_retry_after_parse("3601"), 3600);
    assert_int_equal(agw_retry_after_parse("99999999999999999999999"), 3600);
}

static void
test_retry_after_garbage(void **state)
{
    (void)state;
    assert_int_equal(agw_retry_after_parse(NULL), -1);
    assert_int_equal(agw_retry_after_parse(""), -1);
    assert_int_equal(agw_retry_after_parse("   "), -1);
    assert_int_equal(agw_retry_after_parse("-5"), -1);
    assert_int_equal(agw_retry_after_parse("+5"), -1);
    assert_int_equal(agw_retry_after_parse("1.5"), -1);
    assert_int_equal(agw_retry_after_parse("5s"), -1);
    assert_int_equal(agw_retry_after_parse("5 5"), -1);
    assert_int_equal(agw_retry_after_parse("soon"), -1);
    assert_int_equal(agw_retry_after_parse("0x10"), -1);
    assert_int_equal(agw_retry_after_parse("Sun, 06 Nov 1994 08:49:37 XYZ"),
                     -1);
    assert_int_equal(
        agw_retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT trailing"), -1);
    assert_int_equal(agw_retry_after_parse("Sun, 06 Nov 1994"), -1);
    assert_int_equal(agw_retry_after_parse("Sun, 06 Foo 1994 08:49:37 GMT"),
                     -1);
}

static void
test_retry_after_date(void **state)
{
    char buf[64];
    time_t when = time(NULL) + 120;
    struct tm tm;
    int v;

    (void)state;
    gmtime_r(&when, &tm);
    strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    v = agw_retry_after_parse(buf);
    assert_in_range(v, 118, 120); /* a slow second may pass meanwhile */

    /* In the past: go now. */
    assert_int_equal(agw_retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT"), 0);
    /* Far future: capped like delta-seconds. */
    assert_int_equal(agw_retry_after_parse("Fri, 01 Jan 2100 00:00:00 GMT"),
                     3600);
    /* The obsolete forms recipients must still accept (RFC 9110). */
    assert_int_equal(agw_retry_after_parse("Sunday, 06-Nov-94 08:49:37 GMT"),
                     0);
    assert_int_equal(agw_retry_after_parse("Sun Nov  6 08:49:37 1994"), 0);

    when = time(NULL) + 600;
    gmtime_r(&when, &tm);
    strftime(buf, sizeof(buf), "%a %b %e %H:%M:%S %Y", &tm);
    assert_in_range(agw_retry_after_parse(buf), 598, 600);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decision_table),
        cmocka_unit_test(test_attempt_limit),
        cmocka_unit_test(test_backoff_values),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_garbage),
        cmocka_unit_test(test_retry_after_date),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
