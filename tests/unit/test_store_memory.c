/*
 * test_store_memory.c - the in-process store: hits, replacement, TTL on a
 * fake clock, LRU eviction, growth with many keys, binary bodies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store.h"

static int64_t fake_now = 1000000;

static int64_t
fake_clock(void)
{
    return fake_now;
}

/* What the last get callback saw. */
struct seen {
    int calls;
    enum agw_store_result result;
    int status;
    char body[256];
    size_t len;
};

static void
record(enum agw_store_result result, int status, const char *body, size_t len,
       void *arg)
{
    struct seen *s = arg;

    s->calls++;
    s->result = result;
    s->status = status;
    s->len = len;
    if (result == AGW_STORE_HIT && len <= sizeof(s->body)) {
        memcpy(s->body, body, len);
    }
}

static struct seen
get(struct agw_store *st, const char *key)
{
    struct seen s;

    memset(&s, 0, sizeof(s));
    st->ops->get(st, key, record, &s);
    assert_int_equal(s.calls, 1);
    return s;
}

static void
put(struct agw_store *st, const char *key, const char *body, long ttl_s)
{
    st->ops->put(st, key, 201, body, strlen(body), ttl_s);
}

static bool
has(struct agw_store *st, const char *key)
{
    return get(st, key).result == AGW_STORE_HIT;
}

static int
setup(void **state)
{
    struct agw_store *st = agw_store_memory_new(3, SIZE_MAX);

    if (st == NULL) {
        return -1;
    }
    fake_now = 1000000;
    agw_store_memory_set_clock(st, fake_clock);
    *state = st;
    return 0;
}

static int
teardown(void **state)
{
    struct agw_store *st = *state;

    st->ops->destroy(st);
    return 0;
}

static void
test_name(void **state)
{
    struct agw_store *st = *state;

    assert_string_equal(st->ops->name, "memory");
}

static void
test_hit_and_miss(void **state)
{
    struct agw_store *st = *state;
    struct seen s;

    put(st, "k1", "{\"asset\":1}", 60);
    s = get(st, "k1");
    assert_int_equal(s.result, AGW_STORE_HIT);
    assert_int_equal(s.status, 201);
    assert_int_equal(s.len, strlen("{\"asset\":1}"));
    assert_memory_equal(s.body, "{\"asset\":1}", s.len);

    assert_int_equal(get(st, "k2").result, AGW_STORE_MISS);
    assert_int_equal(get(st, "k").result, AGW_STORE_MISS);
    assert_int_equal(get(st, "k10").result, AGW_STORE_MISS);
    assert_int_equal(agw_store_memory_count(st), 1);
}

static void
test_replace(void **state)
{
    struct agw_store *st = *state;
    struct seen s;

    put(st, "k", "old", 60);
    st->ops->put(st, "k", 200, "newer", 5, 60);
    assert_int_equal(agw_store_memory_count(st), 1);
    s = get(st, "k");
    assert_int_equal(s.result, AGW_STORE_HIT);
    assert_int_equal(s.status, 200);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.body, "newer", 5);
}

static void
test_ttl_expiry(void **state)
{
    struct agw_store *st = *state;

    put(st, "short", "a", 10);
    put(st, "long", "b", 20);
    fake_now += 10 * 1000000 - 1;
    assert_true(has(st, "short"));
    fake_now += 1;
    assert_false(has(st, "short"));
    /* Removed on sight, the other one untouched. */
    assert_int_equal(agw_store_memory_count(st), 1);
    assert_true(has(st, "long"));
    fake_now += 10 * 1000000;
    assert_false(has(st, "long"));
    assert_int_equal(agw_store_memory_count(st), 0);
}

static void
test_replace_renews_ttl(void **state)
{
    struct agw_store *st = *state;

    put(st, "k", "a", 10);
    fake_now += 9 * 1000000;
    put(st, "k", "b", 10);
    fake_now += 5 * 1000000;
    assert_true(has(st, "k"));
}

static void
test_zero_ttl_not_stored(void **state)
{
    struct agw_store *st = *state;

    put(st, "k", "a", 60);
    put(st, "k", "b", 0);
    assert_false(has(st, "k"));
    assert_int_equal(agw_store_memory_count(st), 0);
}

static void
test_lru_evicts_oldest(void **state)
{
    struct agw_store *st = *state;

    put(st, "a", "1", 60);
    put(st, "b", "2", 60);
    put(st, "c", "3", 60);
    assert_int_equal(agw_store_memory_count(st), 3);
    put(st, "d", "4", 60);
    assert_int_equal(agw_store_memory_count(st), 3);
    assert_false(has(st, "a"));
    assert_true(has(st, "b"));
    assert_true(has(st, "c"));
    assert_true(has(st, "d"));
}

static void
test_lru_get_refreshes(void **state)
{
    struct agw_store *st = *state;

    put(st, "a", "1", 60);
    put(st, "b", "2", 60);
    put(st, "c", "3", 60);
    assert_true(has(st, "a")); /* now b is the least recent */
    put(st, "d", "4", 60);
    assert_false(has(st, "b"));
    assert_true(has(st, "a"));
    assert_true(has(st, "c"));
    put(st, "e", "5", 60); /* recency now c, a, d: d goes */
    assert_false(has(st, "d"));
    assert_true(has(st, "e"));
}

static void
test_lru_replace_refreshes(void **state)
{
    struct agw_store *st = *state;

    put(st, "a", "1", 60);
    put(st, "b", "2", 60);
    put(st, "c", "3", 60);
    put(st, "a", "1b", 60); /* a replaced in place, nothing evicted */
    assert_int_equal(agw_store_memory_count(st), 3);
    put(st, "d", "4", 60);
    assert_false(has(st, "b"));
    assert_true(has(st, "a"));
}

static void
test_binary_body(void **state)
{
    struct agw_store *st = *state;
    static const char body[] = {'a', '\0', 'b', '\0', '\xff', '\n', '\0'};
    struct seen s;

    st->ops->put(st, "bin", 200, body, sizeof(body), 60);
    s = get(st, "bin");
    assert_int_equal(s.result, AGW_STORE_HIT);
    assert_int_equal(s.len, sizeof(body));
    assert_memory_equal(s.body, body, sizeof(body));
}

static void
test_empty_body(void **state)
{
    struct agw_store *st = *state;
    struct seen s;

    st->ops->put(st, "empty", 204, NULL, 0, 60);
    s = get(st, "empty");
    assert_int_equal(s.result, AGW_STORE_HIT);
    assert_int_equal(s.status, 204);
    assert_int_equal(s.len, 0);
}

/* The callback stores over the very entry whose body it was handed. */
static void
put_back(enum agw_store_result result, int status, const char *body, size_t len,
         void *arg)
{
    struct agw_store *st = arg;

    assert_int_equal(result, AGW_STORE_HIT);
    st->ops->put(st, "self", status, body, len, 60);
}

static void
test_put_from_callback(void **state)
{
    struct agw_store *st = *state;
    struct seen s;

    put(st, "self", "payload", 60);
    st->ops->get(st, "self", put_back, st);
    s = get(st, "self");
    assert_int_equal(s.len, 7);
    assert_memory_equal(s.body, "payload", 7);
    assert_int_equal(agw_store_memory_count(st), 1);
}

static void
test_many_keys(void **state)
{
    struct agw_store *st = agw_store_memory_new(20000, SIZE_MAX);
    char key[64];
    char body[64];
    struct seen s;

    (void)state;
    assert_non_null(st);
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "biz:%d:uri", i);
        snprintf(body, sizeof(body), "{\"n\":%d}", i);
        put(st, key, body, 60);
    }
    assert_int_equal(agw_store_memory_count(st), 10000);
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "biz:%d:uri", i);
        snprintf(body, sizeof(body), "{\"n\":%d}", i);
        s = get(st, key);
        assert_int_equal(s.result, AGW_STORE_HIT);
        assert_int_equal(s.len, strlen(body));
        assert_memory_equal(s.body, body, s.len);
    }
    assert_false(has(st, "biz:10000:uri"));
    st->ops->destroy(st);
}

static void
test_many_keys_capped(void **state)
{
    struct agw_store *st = agw_store_memory_new(1000, SIZE_MAX);
    char key[64];
    int hits = 0;

    (void)state;
    assert_non_null(st);
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put(st, key, "x", 60);
    }
    assert_int_equal(agw_store_memory_count(st), 1000);
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        if (has(st, key)) {
            assert_true(i >= 9000); /* only the newest 1000 remain */
            hits++;
        }
    }
    assert_int_equal(hits, 1000);
    st->ops->destroy(st);
}

static void
test_zero_capacity(void **state)
{
    struct agw_store *st = agw_store_memory_new(0, SIZE_MAX);

    (void)state;
    assert_non_null(st);
    put(st, "k", "v", 60);
    assert_int_equal(agw_store_memory_count(st), 0);
    assert_false(has(st, "k"));
    st->ops->destroy(st);
}

/* Bytes bound the store too: 1000-byte bodies in 4 KiB keep the newest
 * few; one bigger than the bound is never kept. */
static void
test_bytes_bound(void **state)
{
    struct agw_store *st = agw_store_memory_new(1000, 4096);
    char body[1001];
    char key[16];
    char big[5000];

    (void)state;
    assert_non_null(st);
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put(st, key, body, 60);
    }
    /* Each costs 1000 + key + ~90: three fit, a fourth would not. */
    assert_int_equal(agw_store_memory_count(st), 3);
    assert_true(has(st, "k9"));
    assert_true(has(st, "k7"));
    assert_false(has(st, "k6"));
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    put(st, "big", big, 60);
    assert_false(has(st, "big"));
    assert_true(has(st, "k9")); /* nothing evicted for it */
    st->ops->destroy(st);
}

/* peek answers a hit before returning and leaves a miss to get(); a
 * second reference keeps the store alive after the first is dropped. */
static void
test_peek_and_references(void **state)
{
    struct agw_store *st = agw_store_memory_shared_new(10, 1 << 20);
    struct seen s;

    (void)state;
    assert_non_null(st);
    put(st, "k", "v", 60);
    memset(&s, 0, sizeof(s));
    assert_true(st->ops->peek(st, "k", record, &s));
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.result, AGW_STORE_HIT);
    assert_false(st->ops->peek(st, "absent", record, &s));
    assert_int_equal(s.calls, 1);
    assert_ptr_equal(agw_store_memory_ref(st), st);
    st->ops->destroy(st);
    assert_true(has(st, "k"));
    st->ops->destroy(st); /* the last reference */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hit_and_miss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_renews_ttl, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_zero_ttl_not_stored, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lru_evicts_oldest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lru_get_refreshes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lru_replace_refreshes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_binary_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_from_callback, setup,
                                        teardown),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_many_keys_capped),
        cmocka_unit_test(test_zero_capacity),
        cmocka_unit_test(test_bytes_bound),
        cmocka_unit_test(test_peek_and_references),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
