/*
 * test_lru.c - the bounded LRU+TTL cache: eviction in use order, the
 * count and byte bounds, TTL expiry on a fake clock, fills that lose to
 * a newer put or a remove, values that outlive their eviction, and threads
 * sharing one cache.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "lru.h"

#define SEC INT64_C(1000000)

static int64_t fake_now = 1000000;

static int64_t
fake_clock(void)
{
    return fake_now;
}

static struct agw_lru *
make(long entries, size_t bytes)
{
    struct agw_lru *lru = agw_lru_new(entries, bytes, false);

    assert_non_null(lru);
    agw_lru_set_clock(lru, fake_clock);
    return lru;
}

static bool
put(struct agw_lru *lru, const char *key, const char *body, int64_t ttl_us)
{
    return agw_lru_put(lru, key, 200, body, strlen(body), ttl_us);
}

static bool
has(struct agw_lru *lru, const char *key)
{
    const struct agw_lru_value *v = agw_lru_get(lru, key, NULL);

    agw_lru_unref(v);
    return v != NULL;
}

static struct agw_lru_stats
stats(struct agw_lru *lru)
{
    struct agw_lru_stats st;

    agw_lru_stats(lru, &st);
    return st;
}

/* The cost of one entry with KEY and BODY, as the cache counts it. */
static size_t
cost_of(const char *key, const char *body)
{
    struct agw_lru *probe = make(10, 1 << 20);
    size_t cost;

    assert_true(put(probe, key, body, 60 * SEC));
    cost = stats(probe).bytes;
    agw_lru_free(probe);
    return cost;
}

static void
test_hit_copies_value(void **state)
{
    struct agw_lru *lru = make(10, 1 << 20);
    char body[] = "hello\0world";
    const struct agw_lru_value *v;

    (void)state;
    assert_null(agw_lru_get(lru, "k", NULL));
    assert_true(agw_lru_put(lru, "k", 201, body, sizeof(body) - 1, 60 * SEC));
    memset(body, 'x', sizeof(body)); /* the cache holds its own copy */
    v = agw_lru_get(lru, "k", NULL);
    assert_non_null(v);
    assert_int_equal(v->status, 201);
    assert_int_equal(v->len, 11);
    assert_memory_equal(v->body, "hello\0world", 11);
    assert_int_equal(v->body[v->len], '\0');
    agw_lru_unref(v);
    agw_lru_free(lru);
}

/* Count bound 3: the least recently *used* goes, and a get counts as a
 * use. */
static void
test_lru_order(void **state)
{
    struct agw_lru *lru = make(3, 1 << 20);

    (void)state;
    put(lru, "a", "1", 60 * SEC);
    put(lru, "b", "2", 60 * SEC);
    put(lru, "c", "3", 60 * SEC);
    assert_true(has(lru, "a")); /* a is now the most recent; b the least */
    put(lru, "d", "4", 60 * SEC);
    assert_false(has(lru, "b"));
    put(lru, "c", "3b", 60 * SEC); /* a replace is a use too */
    put(lru, "e", "5", 60 * SEC);
    assert_false(has(lru, "a"));
    assert_true(has(lru, "c"));
    assert_true(has(lru, "d"));
    assert_true(has(lru, "e"));
    assert_int_equal(stats(lru).entries, 3);
    assert_int_equal(stats(lru).evicted, 2);
    agw_lru_free(lru);
}

static void
test_count_bound(void **state)
{
    struct agw_lru *lru = make(100, 1 << 20);
    char key[16];

    (void)state;
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_true(put(lru, key, "v", 60 * SEC));
        assert_true(stats(lru).entries <= 100);
    }
    assert_int_equal(stats(lru).entries, 100);
    assert_int_equal(stats(lru).evicted, 900);
    assert_true(has(lru, "k999"));
    assert_true(has(lru, "k900"));
    assert_false(has(lru, "k899"));
    agw_lru_free(lru);
}

/* Room for exactly three 100-byte answers: the fourth evicts the oldest;
 * one bigger than the whole bound is not kept, evicts nothing, and still
 * removes the older copy under its key. */
static void
test_byte_bound(void **state)
{
    char body[101];
    char big[2000];
    size_t cost;
    struct agw_lru *lru;

    (void)state;
    memset(body, 'b', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    memset(big, 'B', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cost = cost_of("x", body);
    assert_true(cost > 100);
    lru = make(1000, 3 * cost);
    put(lru, "a", body, 60 * SEC);
    put(lru, "b", body, 60 * SEC);
    put(lru, "c", body, 60 * SEC);
    assert_int_equal(stats(lru).bytes, 3 * cost);
    put(lru, "d", body, 60 * SEC);
    assert_int_equal(stats(lru).entries, 3);
    assert_false(has(lru, "a"));
    assert_false(put(lru, "b", big, 60 * SEC));
    assert_false(has(lru, "b")); /* the old b is never served again */
    assert_true(has(lru, "c"));
    assert_true(has(lru, "d"));
    assert_int_equal(stats(lru).bytes, 2 * cost);
    agw_lru_free(lru);
}

/* An entry lives exactly its TTL; the expired one is removed when looked
 * up, and counted as evicted. */
static void
test_ttl_expiry(void **state)
{
    struct agw_lru *lru = make(10, 1 << 20);

    (void)state;
    put(lru, "short", "a", 10 * SEC);
    put(lru, "long", "b", 20 * SEC);
    fake_now += 10 * SEC - 1;
    assert_true(has(lru, "short"));
    fake_now += 1;
    assert_false(has(lru, "short"));
    assert_int_equal(stats(lru).entries, 1);
    assert_int_equal(stats(lru).evicted, 1);
    assert_true(has(lru, "long"));
    fake_now += 10 * SEC;
    assert_false(has(lru, "long"));
    assert_int_equal(stats(lru).entries, 0);
    assert_false(put(lru, "zero", "c", 0));
    assert_false(put(lru, "neg", "c", -1));
    assert_int_equal(stats(lru).entries, 0);
    /* A huge TTL is clamped, not overflowed into the past. */
    assert_true(put(lru, "forever", "d", INT64_MAX));
    fake_now += 1000 * SEC;
    assert_true(has(lru, "forever"));
    agw_lru_free(lru);
}

/* A put first frees the expired entries at the old end, all of them,
 * not just the one the count bound would evict. */
static void
test_expired_tail_swept(void **state)
{
    struct agw_lru *lru = make(3, 1 << 20);

    (void)state;
    put(lru, "a", "1", 10 * SEC);
    put(lru, "b", "2", 10 * SEC);
    put(lru, "c", "3", 100 * SEC);
    fake_now += 20 * SEC;
    put(lru, "d", "4", 100 * SEC);
    assert_int_equal(stats(lru).entries, 2);
    assert_int_equal(stats(lru).evicted, 2);
    assert_true(has(lru, "c"));
    assert_true(has(lru, "d"));
    agw_lru_free(lru);
}

/* A fill carries a value read before a put: it must not replace it. */
static void
test_fill_loses_to_put(void **state)
{
    struct agw_lru *lru = make(10, 1 << 20);
    const struct agw_lru_value *v;
    uint64_t epoch;

    (void)state;
    assert_null(agw_lru_get(lru, "k", &epoch));
    put(lru, "k", "new", 60 * SEC);
    assert_false(agw_lru_fill(lru, "k", 200, "old", 3, 60 * SEC, epoch));
    v = agw_lru_get(lru, "k", &epoch);
    assert_memory_equal(v->body, "new", 3);
    agw_lru_unref(v);
    assert_true(agw_lru_fill(lru, "j", 200, "filled", 6, 60 * SEC, epoch));
    assert_true(has(lru, "j"));
    agw_lru_free(lru);
}

/* An epoch taken without a lookup (agw_lru_epoch) guards a fill the
 * same way; a remove (an operator's purge) also refuses a fill that
 * started before it. */
static void
test_fill_loses_to_remove(void **state)
{
    struct agw_lru *lru = make(10, 1 << 20);
    uint64_t epoch = agw_lru_epoch(lru);

    (void)state;
    assert_false(agw_lru_remove(lru, "k")); /* nothing there: still counts */
    assert_false(agw_lru_fill(lru, "k", 200, "old", 3, 60 * SEC, epoch));
    assert_false(has(lru, "k"));
    epoch = agw_lru_epoch(lru);
    assert_true(agw_lru_fill(lru, "k", 200, "new", 3, 60 * SEC, epoch));
    assert_true(has(lru, "k"));
    agw_lru_free(lru);
}

/* A value being read survives its eviction, replacement and the cache's
 * end; it goes with its last reference (valgrind/ASan check that). */
static void
test_value_outlives_eviction(void **state)
{
    struct agw_lru *lru = make(1, 1 << 20);
    const struct agw_lru_value *v;

    (void)state;
    put(lru, "a", "first", 60 * SEC);
    v = agw_lru_get(lru, "a", NULL);
    /* Replacing "a" with its own body, then evicting it. */
    assert_true(agw_lru_put(lru, "a", 200, v->body, v->len, 60 * SEC));
    put(lru, "b", "second", 60 * SEC);
    agw_lru_free(lru);
    assert_memory_equal(v->body, "first", 5);
    agw_lru_unref(v);
}

static void
test_zero_bounds_keep_nothing(void **state)
{
    struct agw_lru *none = make(0, 1 << 20);
    struct agw_lru *nobytes = make(10, 0);

    (void)state;
    assert_false(put(none, "k", "v", 60 * SEC));
    assert_false(put(nobytes, "k", "v", 60 * SEC));
    assert_false(has(none, "k"));
    assert_false(has(nobytes, "k"));
    agw_lru_free(none);
    agw_lru_free(nobytes);
}

#define THREADS 4
#define ROUNDS 20000

static void *
hammer(void *arg)
{
    struct agw_lru *lru = arg;
    char key[16];

    for (int i = 0; i < ROUNDS; i++) {
        const struct agw_lru_value *v;

        snprintf(key, sizeof(key), "k%d", i % 64);
        if (i % 3 == 0) {
            agw_lru_put(lru, key, 200, key, strlen(key), 60 * SEC);
        }
        v = agw_lru_get(lru, key, NULL);
        if (v != NULL) {
            /* Every value is its own key: a torn one would differ. */
            assert_int_equal(v->len, strlen(key));
            assert_memory_equal(v->body, key, v->len);
            agw_lru_unref(v);
        }
    }
    return NULL;
}

/* SHARED: threads put and get at once; bounds hold, values stay whole. */
static void
test_shared_threads(void **state)
{
    struct agw_lru *lru = agw_lru_new(16, 16 * 200, true);
    pthread_t t[THREADS];

    (void)state;
    assert_non_null(lru);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, hammer, lru), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    assert_true(stats(lru).entries <= 16);
    assert_true(stats(lru).bytes <= 16 * 200);
    agw_lru_free(lru);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_copies_value),
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_count_bound),
        cmocka_unit_test(test_byte_bound),
        cmocka_unit_test(test_ttl_expiry),
        cmocka_unit_test(test_expired_tail_swept),
        cmocka_unit_test(test_fill_loses_to_put),
        cmocka_unit_test(test_fill_loses_to_remove),
        cmocka_unit_test(test_value_outlives_eviction),
        cmocka_unit_test(test_zero_bounds_keep_nothing),
        cmocka_unit_test(test_shared_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
