/*
 * test_flight_loop.c - coalescing: who leads, who waits, the order
 * waiters are served in, and flights started from inside a callback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "flight_loop.h"
#include "reply.h"

#define MAX_LOG 16

/* Every waiter callback appends here: who ran, and what it was given. */
static struct {
    int n;
    int who[MAX_LOG];
    const struct agw_response *resp[MAX_LOG];
    int status[MAX_LOG];
} served;

struct waiter_ctx {
    int id;
    struct agw_flight_loop *loop;
    const char *rejoin_key; /* join this key from inside the callback */
    bool rejoin_result;
    bool free_loop; /* free the table from inside the callback */
};

static void
on_answer(const struct agw_response *resp, void *arg)
{
    struct waiter_ctx *w = arg;

    assert_true(served.n < MAX_LOG);
    served.who[served.n] = w->id;
    served.resp[served.n] = resp;
    served.status[served.n] = resp->status;
    served.n++;
    if (w->rejoin_key != NULL) {
        w->rejoin_result =
            agw_flight_loop_join(w->loop, w->rejoin_key, on_answer, w);
        w->rejoin_key = NULL; /* the next run of this context only records */
    }
    if (w->free_loop) {
        agw_flight_loop_free(w->loop);
    }
}

static struct agw_response answer = {201, (char *)"{\"asset\":{}}", 12, -1};

static int
setup(void **state)
{
    struct agw_flight_loop *loop = agw_flight_loop_new();

    if (loop == NULL) {
        return -1;
    }
    memset(&served, 0, sizeof(served));
    *state = loop;
    return 0;
}

/* For tests that make (and free) their own table. */
static int
setup_log_only(void **state)
{
    memset(&served, 0, sizeof(served));
    *state = NULL;
    return 0;
}

static int
teardown(void **state)
{
    agw_flight_loop_free(*state);
    return 0;
}

static void
test_leader_then_waiters_in_order(void **state)
{
    struct agw_flight_loop *loop = *state;
    struct waiter_ctx w[3] = {{.id = 1}, {.id = 2}, {.id = 3}};

    assert_int_equal(agw_flight_loop_flights(loop), 0);
    assert_true(agw_flight_loop_join(loop, "key", on_answer, NULL));
    assert_int_equal(agw_flight_loop_flights(loop), 1);
    for (int i = 0; i < 3; i++) {
        assert_false(agw_flight_loop_join(loop, "key", on_answer, &w[i]));
    }
    assert_int_equal(agw_flight_loop_flights(loop), 1);
    assert_int_equal(served.n, 0); /* nobody answered before finish */

    assert_int_equal(agw_flight_loop_finish(loop, "key", &answer), 3);
    assert_int_equal(served.n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(served.who[i], i + 1);
        assert_ptr_equal(served.resp[i], &answer);
        assert_int_equal(served.status[i], 201);
    }
    assert_int_equal(agw_flight_loop_flights(loop), 0);
    /* The flight is over: finishing again serves nobody twice. */
    assert_int_equal(agw_flight_loop_finish(loop, "key", &answer), 0);
    assert_int_equal(served.n, 3);
}

static void
test_leader_alone(void **state)
{
    struct agw_flight_loop *loop = *state;

    assert_true(agw_flight_loop_join(loop, "solo", on_answer, NULL));
    assert_int_equal(agw_flight_loop_finish(loop, "solo", &answer), 0);
    assert_int_equal(agw_flight_loop_flights(loop), 0);
    /* The key is free again: the next caller leads. */
    assert_true(agw_flight_loop_join(loop, "solo", on_answer, NULL));
}

static void
test_finish_unknown_key(void **state)
{
    struct agw_flight_loop *loop = *state;

    assert_true(agw_flight_loop_join(loop, "a", on_answer, NULL));
    assert_int_equal(agw_flight_loop_finish(loop, "b", &answer), 0);
    assert_int_equal(agw_flight_loop_flights(loop), 1);
}

static void
test_keys_independent(void **state)
{
    struct agw_flight_loop *loop = *state;
    struct waiter_ctx wa = {.id = 1};
    struct waiter_ctx wb = {.id = 2};

    assert_true(agw_flight_loop_join(loop, "a", on_answer, NULL));
    assert_true(agw_flight_loop_join(loop, "b", on_answer, NULL));
    assert_true(agw_flight_loop_join(loop, "ab", on_answer, NULL));
    assert_int_equal(agw_flight_loop_flights(loop), 3);
    assert_false(agw_flight_loop_join(loop, "a", on_answer, &wa));
    assert_false(agw_flight_loop_join(loop, "b", on_answer, &wb));

    assert_int_equal(agw_flight_loop_finish(loop, "b", &answer), 1);
    assert_int_equal(served.n, 1);
    assert_int_equal(served.who[0], 2);
    assert_int_equal(agw_flight_loop_flights(loop), 2);
    assert_int_equal(agw_flight_loop_finish(loop, "ab", &answer), 0);
    assert_int_equal(agw_flight_loop_finish(loop, "a", &answer), 1);
    assert_int_equal(served.who[1], 1);
    assert_int_equal(agw_flight_loop_flights(loop), 0);
}

static void
test_rejoin_from_callback_starts_new_flight(void **state)
{
    struct agw_flight_loop *loop = *state;
    struct waiter_ctx w1 = {.id = 1, .loop = loop, .rejoin_key = "key"};
    struct waiter_ctx w2 = {.id = 2, .loop = loop, .rejoin_key = "key"};
    struct waiter_ctx w3 = {.id = 3};

    assert_true(agw_flight_loop_join(loop, "key", on_answer, NULL));
    assert_false(agw_flight_loop_join(loop, "key", on_answer, &w1));
    assert_false(agw_flight_loop_join(loop, "key", on_answer, &w2));
    assert_false(agw_flight_loop_join(loop, "key", on_answer, &w3));

    /* w1 leads a new flight, w2 queues on it; w3 still gets this answer. */
    assert_int_equal(agw_flight_loop_finish(loop, "key", &answer), 3);
    assert_true(w1.rejoin_result);
    assert_false(w2.rejoin_result);
    assert_int_equal(served.n, 3);
    assert_int_equal(served.who[2], 3);
    assert_int_equal(agw_flight_loop_flights(loop), 1);

    struct agw_response second = {200, (char *)"{}", 2, -1};

    assert_int_equal(agw_flight_loop_finish(loop, "key", &second), 1);
    assert_int_equal(served.n, 4);
    assert_int_equal(served.who[3], 2);
    assert_int_equal(served.status[3], 200);
    assert_int_equal(agw_flight_loop_flights(loop), 0);
}

static void
test_free_from_callback(void **state)
{
    struct agw_flight_loop *loop = agw_flight_loop_new();
    struct waiter_ctx w1 = {.id = 1, .loop = loop, .free_loop = true};
    struct waiter_ctx w2 = {.id = 2};

    (void)state;
    assert_non_null(loop);
    assert_true(agw_flight_loop_join(loop, "key", on_answer, NULL));
    assert_true(agw_flight_loop_join(loop, "other", on_answer, NULL));
    assert_false(agw_flight_loop_join(loop, "key", on_answer, &w1));
    assert_false(agw_flight_loop_join(loop, "key", on_answer, &w2));
    /* The table goes away during the first callback; the second waiter
     * is still served (the sanitizer build checks the memory). */
    assert_int_equal(agw_flight_loop_finish(loop, "key", &answer), 2);
    assert_int_equal(served.n, 2);
    assert_int_equal(served.who[1], 2);
}

static void
test_many_flights(void **state)
{
    struct agw_flight_loop *loop = *state;
    struct waiter_ctx w = {.id = 7};
    char key[32];

    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_true(agw_flight_loop_join(loop, key, on_answer, NULL));
    }
    assert_int_equal(agw_flight_loop_flights(loop), 1000);
    snprintf(key, sizeof(key), "k%d", 500);
    assert_false(agw_flight_loop_join(loop, key, on_answer, &w));
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(agw_flight_loop_finish(loop, key, &answer),
                         i == 500 ? 1 : 0);
    }
    assert_int_equal(agw_flight_loop_flights(loop), 0);
    assert_int_equal(served.n, 1);
}

static void
test_free_with_open_flights(void **state)
{
    struct agw_flight_loop *loop = agw_flight_loop_new();
    struct waiter_ctx w = {.id = 1};

    (void)state;
    assert_non_null(loop);
    assert_true(agw_flight_loop_join(loop, "a", on_answer, NULL));
    assert_false(agw_flight_loop_join(loop, "a", on_answer, &w));
    assert_false(agw_flight_loop_join(loop, "a", on_answer, &w));
    agw_flight_loop_free(
        loop); /* no callbacks; the sanitizer checks for leaks */
    assert_int_equal(served.n, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_leader_then_waiters_in_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_leader_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_unknown_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_keys_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_rejoin_from_callback_starts_new_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_callback, setup_log_only,
                                        NULL),
        cmocka_unit_test_setup_teardown(test_many_flights, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_open_flights,
                                        setup_log_only, NULL),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
