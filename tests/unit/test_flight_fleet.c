/*
 * test_flight_fleet.c - the read-back of purges a subscriber missed
 * (agw_flight_fleet_missed_purges): which keys it forgets, and when it
 * cannot tell every purge missed (the caller then clears the whole
 * memory table).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "flight_fleet.h"

#define KEY_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define KEY_B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define MAX_KEYS 10000

static struct {
    int n;
    char keys[4][65];
} forgot;

static void
forget(const char *key, void *arg)
{
    (void)arg;
    if (forgot.n < 4) {
        snprintf(forgot.keys[forgot.n], sizeof(forgot.keys[0]), "%s", key);
    }
    forgot.n++;
}

static redisReply *strs[MAX_KEYS + 1];
static redisReply str_pool[MAX_KEYS + 1];
static redisReply full_r, list_r, top_r;
static redisReply *top_elems[2];

/* {FULL, [KEYS...]} as missed_lua answers it. */
static redisReply *
reply_of(long long full, const char *const *keys, size_t n)
{
    memset(&forgot, 0, sizeof(forgot));
    for (size_t i = 0; i < n; i++) {
        str_pool[i] = (redisReply){.type = REDIS_REPLY_STRING,
                                   .str = (char *)keys[i],
                                   .len = strlen(keys[i])};
        strs[i] = &str_pool[i];
    }
    full_r = (redisReply){.type = REDIS_REPLY_INTEGER, .integer = full};
    list_r =
        (redisReply){.type = REDIS_REPLY_ARRAY, .elements = n, .element = strs};
    top_elems[0] = &full_r;
    top_elems[1] = &list_r;
    top_r = (redisReply){
        .type = REDIS_REPLY_ARRAY, .elements = 2, .element = top_elems};
    return &top_r;
}

static void
test_forgets_each_key(void **state)
{
    const char *keys[] = {KEY_A, KEY_B};
    size_t bad = 99;

    (void)state;
    assert_int_equal(agw_flight_fleet_missed_purges(reply_of(0, keys, 2),
                                                    forget, NULL, &bad),
                     AGW_FLEET_MISSED_KNOWN);
    assert_int_equal(forgot.n, 2);
    assert_string_equal(forgot.keys[0], KEY_A);
    assert_string_equal(forgot.keys[1], KEY_B);
    assert_int_equal(bad, 0);
}

static void
test_none_missed(void **state)
{
    size_t bad = 99;

    (void)state;
    assert_int_equal(agw_flight_fleet_missed_purges(reply_of(0, NULL, 0),
                                                    forget, NULL, &bad),
                     AGW_FLEET_MISSED_KNOWN);
    assert_int_equal(forgot.n, 0);
    assert_int_equal(bad, 0);
}

/* Upper case, short, long, not hex, a NUL inside: ignored, counted. */
static void
test_keys_out_of_shape_ignored(void **state)
{
    static const char nul[65] = "0123456789abcdef0123456789abcdef\0"
                                "123456789abcdef0123456789abcdef";
    const char *keys[] = {
        "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123",
        KEY_A "0",
        "g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        KEY_B,
        ""};
    size_t bad = 0;
    redisReply *r = reply_of(0, keys, 6);

    (void)state;
    str_pool[5].str = (char *)nul; /* a NUL at 32, 64 bytes in all */
    str_pool[5].len = 64;
    assert_int_equal(agw_flight_fleet_missed_purges(r, forget, NULL, &bad),
                     AGW_FLEET_MISSED_KNOWN);
    assert_int_equal(forgot.n, 1);
    assert_string_equal(forgot.keys[0], KEY_B);
    assert_int_equal(bad, 5);
}

/* A key as an integer or an array is out of shape too, not a key. */
static void
test_key_of_another_type_ignored(void **state)
{
    const char *keys[] = {KEY_A, KEY_B};
    size_t bad = 0;
    redisReply *r = reply_of(0, keys, 2);

    (void)state;
    str_pool[0].type = REDIS_REPLY_STATUS;
    assert_int_equal(agw_flight_fleet_missed_purges(r, forget, NULL, &bad),
                     AGW_FLEET_MISSED_KNOWN);
    assert_int_equal(forgot.n, 1);
    assert_int_equal(bad, 1);
}

/* The set full: purges may have been trimmed, none is forgotten; a
 * flag other than 0 or 1 is out of shape. */
static void
test_full_set_is_unsure(void **state)
{
    const char *keys[] = {KEY_A};
    size_t bad = 0;

    (void)state;
    assert_int_equal(agw_flight_fleet_missed_purges(reply_of(1, keys, 1),
                                                    forget, NULL, &bad),
                     AGW_FLEET_MISSED_TRIMMED);
    assert_int_equal(forgot.n, 0);
    assert_int_equal(agw_flight_fleet_missed_purges(reply_of(2, keys, 1),
                                                    forget, NULL, &bad),
                     AGW_FLEET_MISSED_BAD);
    assert_int_equal(forgot.n, 0);
}

static void
test_replies_out_of_shape_are_unsure(void **state)
{
    const char *keys[] = {KEY_A};
    redisReply *r;
    redisReply err = {.type = REDIS_REPLY_ERROR, .str = "ERR", .len = 3};
    size_t bad = 0;

    (void)state;
    assert_int_equal(agw_flight_fleet_missed_purges(NULL, forget, NULL, &bad),
                     AGW_FLEET_MISSED_BAD);
    assert_int_equal(agw_flight_fleet_missed_purges(&err, forget, NULL, &bad),
                     AGW_FLEET_MISSED_BAD);
    r = reply_of(0, keys, 1);
    r->elements = 1;
    assert_int_equal(agw_flight_fleet_missed_purges(r, forget, NULL, &bad),
                     AGW_FLEET_MISSED_BAD);
    r = reply_of(0, keys, 1);
    full_r.type = REDIS_REPLY_STRING;
    full_r.str = "0";
    full_r.len = 1;
    assert_int_equal(agw_flight_fleet_missed_purges(r, forget, NULL, &bad),
                     AGW_FLEET_MISSED_BAD);
    r = reply_of(0, keys, 1);
    list_r.type = REDIS_REPLY_STRING;
    list_r.str = KEY_A;
    list_r.len = 64;
    assert_int_equal(agw_flight_fleet_missed_purges(r, forget, NULL, &bad),
                     AGW_FLEET_MISSED_BAD);
    assert_int_equal(forgot.n, 0);
}

/* More keys than the set may hold: not the script's answer. */
static void
test_too_many_keys_is_unsure(void **state)
{
    static const char *keys[MAX_KEYS + 1];
    size_t bad = 0;

    (void)state;
    for (size_t i = 0; i <= MAX_KEYS; i++) {
        keys[i] = KEY_A;
    }
    assert_int_equal(agw_flight_fleet_missed_purges(reply_of(0, keys, MAX_KEYS),
                                                    forget, NULL, &bad),
                     AGW_FLEET_MISSED_KNOWN);
    assert_int_equal(forgot.n, MAX_KEYS);
    assert_int_equal(agw_flight_fleet_missed_purges(
                         reply_of(0, keys, MAX_KEYS + 1), forget, NULL, &bad),
                     AGW_FLEET_MISSED_BAD);
    assert_int_equal(forgot.n, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forgets_each_key),
        cmocka_unit_test(test_none_missed),
        cmocka_unit_test(test_keys_out_of_shape_ignored),
        cmocka_unit_test(test_key_of_another_type_ignored),
        cmocka_unit_test(test_full_set_is_unsure),
        cmocka_unit_test(test_replies_out_of_shape_are_unsure),
        cmocka_unit_test(test_too_many_keys_is_unsure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
