/*
 * test_table.c - the string-keyed hash table: put/get/replace/remove,
 * growth from the smallest size, keys sharing a bucket, and removal while
 * iterating.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "table.h"

#define MANY 10000

/* Values the table borrows: slots of this array, owned by the test. */
static int values[MANY];

static void
key_of(int i, char *buf, size_t size)
{
    snprintf(buf, size, "key-%d", i);
}

static void
test_put_get_replace_remove(void **state)
{
    struct agw_table *t = agw_table_new(0);
    char key[8] = "k";

    (void)state;
    assert_non_null(t);
    assert_null(agw_table_get(t, "k"));
    assert_true(agw_table_put(t, key, &values[0]));
    key[0] = 'x'; /* the table keeps its own copy of the key */
    assert_ptr_equal(agw_table_get(t, "k"), &values[0]);
    assert_null(agw_table_get(t, "x"));
    assert_true(agw_table_put(t, "k", &values[1]));
    assert_ptr_equal(agw_table_get(t, "k"), &values[1]);
    assert_int_equal(agw_table_count(t), 1);
    assert_true(agw_table_put(t, "", &values[2])); /* the empty key is a key */
    assert_ptr_equal(agw_table_get(t, ""), &values[2]);
    assert_int_equal(agw_table_count(t), 2);
    assert_ptr_equal(agw_table_remove(t, "k"), &values[1]);
    assert_null(agw_table_remove(t, "k"));
    assert_null(agw_table_get(t, "k"));
    assert_int_equal(agw_table_count(t), 1);
    agw_table_free(t); /* frees the "" entry, not its value */
    agw_table_free(NULL);
}

/* From 16 buckets to thousands: every key stays reachable, and removing
 * half leaves exactly the other half. */
static void
test_growth(void **state)
{
    struct agw_table *t = agw_table_new(0);
    char key[32];

    (void)state;
    for (int i = 0; i < MANY; i++) {
        key_of(i, key, sizeof(key));
        assert_true(agw_table_put(t, key, &values[i]));
    }
    assert_int_equal(agw_table_count(t), MANY);
    for (int i = 0; i < MANY; i++) {
        key_of(i, key, sizeof(key));
        assert_ptr_equal(agw_table_get(t, key), &values[i]);
    }
    for (int i = 0; i < MANY; i += 2) {
        key_of(i, key, sizeof(key));
        assert_ptr_equal(agw_table_remove(t, key), &values[i]);
    }
    assert_int_equal(agw_table_count(t), MANY / 2);
    for (int i = 0; i < MANY; i++) {
        key_of(i, key, sizeof(key));
        if (i % 2 == 0) {
            assert_null(agw_table_get(t, key));
        } else {
            assert_ptr_equal(agw_table_get(t, key), &values[i]);
        }
    }
    agw_table_free(t);
}

/* Eight keys in one of 16 buckets (one chain): each found by its own
 * name, and removing one from the middle of the chain keeps the rest. */
static void
test_collisions(void **state)
{
    struct agw_table *t = agw_table_new(0);
    char keys[8][32];
    int n = 0;

    (void)state;
    for (int i = 0; n < 8 && i < 100000; i++) {
        key_of(i, keys[n], sizeof(keys[n]));
        if ((agw_table_hash(keys[n]) & 15) == 3) {
            n++;
        }
    }
    assert_int_equal(n, 8);
    for (int i = 0; i < 8; i++) {
        assert_true(agw_table_put(t, keys[i], &values[i]));
    }
    for (int i = 0; i < 8; i++) {
        assert_ptr_equal(agw_table_get(t, keys[i]), &values[i]);
    }
    assert_ptr_equal(agw_table_remove(t, keys[4]), &values[4]);
    assert_ptr_equal(agw_table_remove(t, keys[0]), &values[0]);
    assert_ptr_equal(agw_table_remove(t, keys[7]), &values[7]);
    for (int i = 0; i < 8; i++) {
        if (i == 0 || i == 4 || i == 7) {
            assert_null(agw_table_get(t, keys[i]));
        } else {
            assert_ptr_equal(agw_table_get(t, keys[i]), &values[i]);
        }
    }
    assert_int_equal(agw_table_count(t), 5);
    agw_table_free(t);
}

/* Filled with 0..N-1 (value = &values[i]); returns the table. */
static struct agw_table *
filled(int n)
{
    struct agw_table *t = agw_table_new(0);
    char key[32];

    for (int i = 0; i < n; i++) {
        key_of(i, key, sizeof(key));
        assert_true(agw_table_put(t, key, &values[i]));
    }
    return t;
}

static void
test_iterate_visits_each_once(void **state)
{
    struct agw_table *t = filled(1000);
    struct agw_table_iter it;
    static int seen[1000];
    const char *key;
    void *value;
    int visits = 0;

    (void)state;
    memset(seen, 0, sizeof(seen));
    agw_table_iter_init(t, &it);
    while (agw_table_next(&it, &key, &value)) {
        int i = (int *)value - values;
        char want[32];

        key_of(i, want, sizeof(want));
        assert_string_equal(key, want);
        seen[i]++;
        visits++;
    }
    assert_int_equal(visits, 1000);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(seen[i], 1);
    }
    assert_false(agw_table_next(&it, NULL, NULL)); /* stays at the end */
    agw_table_free(t);
}

/* Removing the entry the iteration stands on: every entry still visited
 * once, the odd ones removed, the even ones kept. */
static void
test_remove_current_while_iterating(void **state)
{
    struct agw_table *t = filled(1000);
    struct agw_table_iter it;
    const char *key;
    void *value;
    int visits = 0;

    (void)state;
    agw_table_iter_init(t, &it);
    while (agw_table_next(&it, &key, &value)) {
        visits++;
        if (((int *)value - values) % 2 == 1) {
            assert_ptr_equal(agw_table_remove(t, key), value);
        }
    }
    assert_int_equal(visits, 1000);
    assert_int_equal(agw_table_count(t), 500);
    assert_ptr_equal(agw_table_get(t, "key-2"), &values[2]);
    assert_null(agw_table_get(t, "key-3"));
    agw_table_free(t);
}

/* Emptying the table from inside the iteration, the current entry and
 * the one visited before it, which may share its chain. */
static void
test_remove_all_while_iterating(void **state)
{
    struct agw_table *t = filled(1000);
    struct agw_table_iter it;
    const char *key;
    char prev[32] = "";
    int visits = 0;

    (void)state;
    agw_table_iter_init(t, &it);
    while (agw_table_next(&it, &key, NULL)) {
        char cur[32];

        visits++;
        snprintf(cur, sizeof(cur), "%s", key);
        if (visits % 2 == 0) {
            assert_non_null(agw_table_remove(t, prev));
            assert_non_null(agw_table_remove(t, cur));
        }
        snprintf(prev, sizeof(prev), "%s", cur);
    }
    assert_int_equal(visits, 1000);
    assert_int_equal(agw_table_count(t), 0);
    agw_table_free(t);
}

static void
test_presized(void **state)
{
    struct agw_table *t = agw_table_new(MANY);
    char key[32];

    (void)state;
    for (int i = 0; i < MANY; i++) {
        key_of(i, key, sizeof(key));
        assert_true(agw_table_put(t, key, &values[i]));
    }
    assert_int_equal(agw_table_count(t), MANY);
    assert_ptr_equal(agw_table_get(t, "key-9999"), &values[9999]);
    agw_table_free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_replace_remove),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_collisions),
        cmocka_unit_test(test_iterate_visits_each_once),
        cmocka_unit_test(test_remove_current_while_iterating),
        cmocka_unit_test(test_remove_all_while_iterating),
        cmocka_unit_test(test_presized),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
