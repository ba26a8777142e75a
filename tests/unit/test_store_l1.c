/*
 * test_store_l1.c - the L1 cache over a fake inner store: hits without the
 * inner store, fills, puts, TTL on a fake clock, entry and byte bounds in
 * LRU order, off, a put racing a lookup, and 4 threads at once.
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
#include <stdatomic.h>

#include "store.h"
#include "store_l1.h"

#define FAKE_KEYS 64
#define BODY_MAX 256

/* ------------------------------------------------------ fake inner */

/*
 * A small inner store. It answers at once, or, with DEFER, keeps the last
 * lookup for answer_deferred(). With ECHO (thread test) it is stateless
 * and thread-safe: every key is a HIT whose body is "v:" + key.
 */
struct fake {
    struct agw_store base;
    atomic_long gets;
    atomic_long puts;
    int destroyed;
    int defer;
    int echo;
    int nkeys;
    char keys[FAKE_KEYS][64];
    char bodies[FAKE_KEYS][BODY_MAX];
    long ttls[FAKE_KEYS];
    char deferred_key[64];
    agw_store_get_cb deferred_cb;
    void *deferred_arg;
};

static int fake_destroyed_count;

static int
fake_find(struct fake *f, const char *key)
{
    for (int i = 0; i < f->nkeys; i++) {
        if (strcmp(f->keys[i], key) == 0) {
            return i;
        }
    }
    return -1;
}

static void
fake_answer(struct fake *f, const char *key, agw_store_get_cb cb, void *arg)
{
    int i = fake_find(f, key);

    if (i < 0) {
        cb(AGW_STORE_MISS, 0, NULL, 0, arg);
    } else {
        cb(AGW_STORE_HIT, 201, f->bodies[i], strlen(f->bodies[i]), arg);
    }
}

static void
fake_get(struct agw_store *store, const char *key, agw_store_get_cb cb,
         void *arg)
{
    struct fake *f = (struct fake *)store;
    char body[BODY_MAX];

    atomic_fetch_add(&f->gets, 1);
    if (f->echo) {
        snprintf(body, sizeof(body), "v:%s", key);
        cb(AGW_STORE_HIT, 201, body, strlen(body), arg);
    } else if (f->defer) {
        snprintf(f->deferred_key, sizeof(f->deferred_key), "%s", key);
        f->deferred_cb = cb;
        f->deferred_arg = arg;
    } else {
        fake_answer(f, key, cb, arg);
    }
}

static void
fake_put(struct agw_store *store, const char *key, int status, const char *body,
         size_t len, long ttl_s)
{
    struct fake *f = (struct fake *)store;
    int i;

    atomic_fetch_add(&f->puts, 1);
    if (f->echo) {
        return;
    }
    i = fake_find(f, key);
    if (i < 0) {
        assert_true(f->nkeys < FAKE_KEYS);
        i = f->nkeys++;
        snprintf(f->keys[i], sizeof(f->keys[i]), "%s", key);
    }
    assert_true(len < BODY_MAX);
    memcpy(f->bodies[i], body, len);
    f->bodies[i][len] = '\0';
    f->ttls[i] = ttl_s;
}

static void
fake_destroy(struct agw_store *store)
{
    fake_destroyed_count++;
    free(store);
}

static const struct agw_store_ops fake_ops = {
    .name = "fake",
    .get = fake_get,
    .put = fake_put,
    .destroy = fake_destroy,
};

static struct fake *
fake_new(void)
{
    struct fake *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->base.ops = &fake_ops;
    return f;
}

/* Writes straight into the inner store, behind L1's back (another
 * instance refreshing the shared store). */
static void
fake_set(struct fake *f, const char *key, const char *body)
{
    fake_put(&f->base, key, 201, body, strlen(body), 60);
    atomic_fetch_sub(&f->puts, 1);
}

static void
answer_deferred(struct fake *f)
{
    agw_store_get_cb cb = f->deferred_cb;

    assert_non_null(cb);
    f->deferred_cb = NULL;
    f->defer = 0;
    fake_answer(f, f->deferred_key, cb, f->deferred_arg);
}

/* ------------------------------------------------------ helpers */

static int64_t fake_now = 1000000;

static int64_t
fake_clock(void)
{
    return fake_now;
}

struct seen {
    int calls;
    enum agw_store_result result;
    int status;
    char body[BODY_MAX];
};

static void
record(enum agw_store_result result, int status, const char *body, size_t len,
       void *arg)
{
    struct seen *s = arg;

    s->calls++;
    s->result = result;
    s->status = status;
    s->body[0] = '\0';
    if (result == AGW_STORE_HIT) {
        assert_true(len < sizeof(s->body));
        memcpy(s->body, body, len);
        s->body[len] = '\0';
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
put(struct agw_store *st, const char *key, const char *body)
{
    st->ops->put(st, key, 201, body, strlen(body), 60);
}

struct fixture {
    struct fake *inner;
    struct agw_store *l1;
};

static struct fixture *
make(long entries, size_t bytes, long ttl_ms)
{
    struct fixture *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    fx->inner = fake_new();
    fx->l1 = agw_store_l1_new(&fx->inner->base, entries, bytes, ttl_ms);
    assert_non_null(fx->l1);
    agw_store_l1_set_clock(fx->l1, fake_clock);
    fake_now = 1000000;
    return fx;
}

static int
teardown(void **state)
{
    struct fixture *fx = *state;

    if (fx != NULL) {
        fx->l1->ops->destroy(fx->l1);
        free(fx);
    }
    return 0;
}

static long
gets_of(const struct fixture *fx)
{
    return atomic_load(&fx->inner->gets);
}

static struct agw_store_l1_stats
stats_of(struct fixture *fx)
{
    struct agw_store_l1_stats st;

    agw_store_l1_stats(fx->l1, &st);
    return st;
}

/* True when KEY is answered from L1 (the inner store is not asked). */
static bool
in_l1(struct fixture *fx, const char *key)
{
    long before = gets_of(fx);
    struct seen s = get(fx->l1, key);

    return s.result == AGW_STORE_HIT && gets_of(fx) == before;
}

/* ------------------------------------------------------ tests */

static void
test_miss_goes_to_inner_and_stays_a_miss(void **state)
{
    struct fixture *fx = make(10, 1 << 20, 1000);
    struct seen s;

    *state = fx;
    s = get(fx->l1, "k");
    assert_int_equal(s.result, AGW_STORE_MISS);
    assert_int_equal(gets_of(fx), 1);
    s = get(fx->l1, "k");
    assert_int_equal(s.result, AGW_STORE_MISS);
    assert_int_equal(gets_of(fx), 2); /* misses are not cached */
    assert_int_equal(stats_of(fx).misses, 2);
    assert_int_equal(stats_of(fx).entries, 0);
}

static void
test_inner_hit_fills_l1(void **state)
{
    struct fixture *fx = make(10, 1 << 20, 1000);
    struct seen s;

    *state = fx;
    fake_set(fx->inner, "k", "answer");
    s = get(fx->l1, "k");
    assert_int_equal(s.result, AGW_STORE_HIT);
    assert_int_equal(s.status, 201);
    assert_string_equal(s.body, "answer");
    assert_int_equal(gets_of(fx), 1);
    /* Second lookup: from L1, synchronously, same answer. */
    s = get(fx->l1, "k");
    assert_int_equal(s.result, AGW_STORE_HIT);
    assert_int_equal(s.status, 201);
    assert_string_equal(s.body, "answer");
    assert_int_equal(gets_of(fx), 1);
    assert_int_equal(stats_of(fx).hits, 1);
    assert_int_equal(stats_of(fx).misses, 1);
    assert_int_equal(stats_of(fx).entries, 1);
}

static void
test_put_writes_inner_and_l1(void **state)
{
    struct fixture *fx = make(10, 1 << 20, 1000);

    *state = fx;
    put(fx->l1, "k", "first");
    assert_int_equal(atomic_load(&fx->inner->puts), 1);
    assert_string_equal(fx->inner->bodies[0], "first");
    assert_int_equal(fx->inner->ttls[0], 60);
    assert_true(in_l1(fx, "k"));
    put(fx->l1, "k", "second");
    assert_int_equal(atomic_load(&fx->inner->puts), 2);
    assert_string_equal(get(fx->l1, "k").body, "second");
    assert_int_equal(gets_of(fx), 0);
    assert_int_equal(stats_of(fx).entries, 1);
}

static void
test_put_with_its_own_body_from_a_hit(void **state)
{
    struct fixture *fx = make(10, 1 << 20, 1000);
    struct seen s;

    *state = fx;
    put(fx->l1, "k", "same");
    s = get(fx->l1, "k");
    put(fx->l1, "k", s.body);
    assert_string_equal(get(fx->l1, "k").body, "same");
}

static void
test_put_with_zero_ttl_drops_the_l1_copy(void **state)
{
    struct fixture *fx = make(10, 1 << 20, 1000);

    *state = fx;
    put(fx->l1, "k", "old");
    fx->l1->ops->put(fx->l1, "k", 201, "new", 3, 0);
    assert_int_equal(stats_of(fx).entries, 0);
    assert_string_equal(fx->inner->bodies[0], "new");
    assert_false(in_l1(fx, "k"));
}

static void
test_ttl_expires_and_refetches(void **state)
{
    struct fixture *fx = make(10, 1 << 20, 1000);

    *state = fx;
    fake_set(fx->inner, "k", "old");
    assert_string_equal(get(fx->l1, "k").body, "old");
    /* Another instance refreshes the shared store. */
    fake_set(fx->inner, "k", "new");
    fake_now += 999 * 1000;
    assert_true(in_l1(fx, "k"));
    assert_string_equal(get(fx->l1, "k").body, "old"); /* within the bound */
    fake_now += 1000;
    assert_string_equal(get(fx->l1, "k").body, "new"); /* bound reached */
    assert_int_equal(gets_of(fx), 2);
    assert_int_equal(stats_of(fx).evicted, 1);
    assert_true(in_l1(fx, "k"));
}

static void
test_put_ttl_shorter_than_l1_ttl_wins(void **state)
{
    struct fixture *fx = make(10, 1 << 20, 5000);

    *state = fx;
    fx->l1->ops->put(fx->l1, "k", 201, "short", 5, 2);
    fake_now += 1999 * 1000;
    assert_true(in_l1(fx, "k"));
    fake_now += 1000;
    assert_false(in_l1(fx, "k"));
}

static void
test_entry_bound_evicts_least_recently_used(void **state)
{
    struct fixture *fx = make(3, 1 << 20, 1000);

    *state = fx;
    put(fx->l1, "a", "1");
    put(fx->l1, "b", "2");
    put(fx->l1, "c", "3");
    assert_true(in_l1(fx, "a")); /* a is now the most recent; b the least */
    put(fx->l1, "d", "4");
    assert_int_equal(stats_of(fx).entries, 3);
    assert_int_equal(stats_of(fx).evicted, 1);
    assert_true(in_l1(fx, "a"));
    assert_true(in_l1(fx, "c"));
    assert_true(in_l1(fx, "d"));
    assert_false(in_l1(fx, "b")); /* last: the miss fills it again */
}

static void
test_byte_bound_evicts_least_recently_used(void **state)
{
    struct fixture *fx;
    struct fixture *probe = make(10, 1 << 20, 1000);
    char body[101];
    size_t cost;

    /* The cost of one key-"x" entry with a 100-byte body, as L1 counts. */
    memset(body, 'b', 100);
    body[100] = '\0';
    put(probe->l1, "a", body);
    cost = stats_of(probe).bytes;
    assert_true(cost > 100);
    teardown((void **)&probe);

    fx = make(100, 3 * cost, 1000);
    *state = fx;
    put(fx->l1, "a", body);
    put(fx->l1, "b", body);
    put(fx->l1, "c", body);
    assert_int_equal(stats_of(fx).bytes, 3 * cost);
    assert_true(in_l1(fx, "a")); /* b is the least recent */
    put(fx->l1, "d", body);
    assert_int_equal(stats_of(fx).entries, 3);
    assert_true(stats_of(fx).bytes <= 3 * cost);
    assert_true(in_l1(fx, "a"));
    assert_true(in_l1(fx, "c"));
    assert_true(in_l1(fx, "d"));
    assert_false(in_l1(fx, "b")); /* last: the miss fills it again */
}

static void
test_answer_bigger_than_l1_is_not_kept(void **state)
{
    struct fixture *fx = make(10, 200, 1000);
    char body[201];

    *state = fx;
    put(fx->l1, "small", "s");
    memset(body, 'b', 200);
    body[200] = '\0';
    put(fx->l1, "big", body);
    assert_int_equal(atomic_load(&fx->inner->puts), 2); /* still stored */
    assert_false(in_l1(fx, "big"));
    assert_true(in_l1(fx, "small")); /* not evicted for nothing */
}

static void
test_off_when_entries_is_zero(void **state)
{
    struct fixture *fx = make(0, 1 << 20, 1000);
    struct seen s;

    *state = fx;
    put(fx->l1, "k", "v");
    assert_int_equal(atomic_load(&fx->inner->puts), 1);
    for (int i = 1; i <= 3; i++) {
        s = get(fx->l1, "k");
        assert_int_equal(s.result, AGW_STORE_HIT);
        assert_string_equal(s.body, "v");
        assert_int_equal(gets_of(fx), i); /* every lookup asks inner */
    }
    assert_int_equal(stats_of(fx).entries, 0);
    assert_int_equal(stats_of(fx).hits, 0);
}

/* A lookup sent to the inner store before a put must not bring back the
 * answer that put replaced. */
static void
test_put_during_a_lookup_wins(void **state)
{
    struct fixture *fx = make(10, 1 << 20, 1000);
    struct seen s;

    *state = fx;
    fake_set(fx->inner, "k", "old");
    memset(&s, 0, sizeof(s));
    fx->inner->defer = 1;
    fx->l1->ops->get(fx->l1, "k", record, &s);
    assert_int_equal(s.calls, 0); /* the lookup is on its way */
    put(fx->l1, "k", "new");
    /* The lookup had read the shared store before the put landed. */
    fake_set(fx->inner, "k", "old");
    answer_deferred(fx->inner);
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.body, "old"); /* the caller gets what it asked */
    assert_string_equal(get(fx->l1, "k").body, "new"); /* L1 kept the put */
    assert_int_equal(gets_of(fx), 1);
}

static void
test_destroy_destroys_inner(void **state)
{
    struct fake *inner = fake_new();
    struct agw_store *l1 = agw_store_l1_new(&inner->base, 10, 1000, 1000);
    int before = fake_destroyed_count;

    (void)state;
    assert_non_null(l1);
    put(l1, "k", "v");
    l1->ops->destroy(l1);
    assert_int_equal(fake_destroyed_count, before + 1);
}

/* ------------------------------------------------------ threads */

#define THREADS 4
#define ROUNDS 20000
#define HOT_KEYS 50

struct worker {
    struct fixture *fx;
    int id;
    long gets;
    long bad;
};

static void
check_echo(enum agw_store_result result, int status, const char *body,
           size_t len, void *arg)
{
    const char *key = arg;
    char want[BODY_MAX];

    snprintf(want, sizeof(want), "v:%s", key);
    if (result != AGW_STORE_HIT || status != 201 || len != strlen(want) ||
        memcmp(body, want, len) != 0) {
        /* Counted via the sentinel: the key's first byte is flipped. */
        ((char *)arg)[0] = '!';
    }
}

static void *
hammer(void *arg)
{
    struct worker *w = arg;
    struct agw_store *st = w->fx->l1;
    char key[32];
    char body[BODY_MAX];
    unsigned seed = (unsigned)w->id * 7919u + 1;

    for (int i = 0; i < ROUNDS; i++) {
        seed = seed * 1103515245u + 12345u;
        snprintf(key, sizeof(key), "key-%u", (seed >> 8) % HOT_KEYS);
        if ((seed >> 4) % 8 == 0) {
            snprintf(body, sizeof(body), "v:%s", key);
            st->ops->put(st, key, 201, body, strlen(body), 60);
            continue;
        }
        st->ops->get(st, key, check_echo, key);
        w->gets++;
        if (key[0] == '!') {
            w->bad++;
        }
    }
    return NULL;
}

static void
test_threads_share_one_l1(void **state)
{
    /* Small bounds so that eviction races with hits all the time. */
    struct fixture *fx = make(20, 20 * 200, 1000);
    struct worker w[THREADS];
    pthread_t t[THREADS];
    struct agw_store_l1_stats st;
    long gets = 0;

    *state = fx;
    agw_store_l1_set_clock(fx->l1, NULL); /* real clock: fake_now is racy */
    fx->inner->echo = 1;
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.fx = fx, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].bad, 0);
        gets += w[i].gets;
    }
    st = stats_of(fx);
    assert_true(gets > THREADS * ROUNDS / 2);
    assert_int_equal(st.hits + st.misses, gets);
    assert_int_equal(st.misses, gets_of(fx));
    assert_int_equal(atomic_load(&fx->inner->puts), THREADS * ROUNDS - gets);
    assert_true(st.hits > 0);
    assert_true(st.entries <= 20);
    assert_true(st.bytes <= 20 * 200);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_miss_goes_to_inner_and_stays_a_miss,
                                  teardown),
        cmocka_unit_test_teardown(test_inner_hit_fills_l1, teardown),
        cmocka_unit_test_teardown(test_put_writes_inner_and_l1, teardown),
        cmocka_unit_test_teardown(test_put_with_its_own_body_from_a_hit,
                                  teardown),
        cmocka_unit_test_teardown(test_put_with_zero_ttl_drops_the_l1_copy,
                                  teardown),
        cmocka_unit_test_teardown(test_ttl_expires_and_refetches, teardown),
        cmocka_unit_test_teardown(test_put_ttl_shorter_than_l1_ttl_wins,
                                  teardown),
        cmocka_unit_test_teardown(test_entry_bound_evicts_least_recently_used,
                                  teardown),
        cmocka_unit_test_teardown(test_byte_bound_evicts_least_recently_used,
                                  teardown),
        cmocka_unit_test_teardown(test_answer_bigger_than_l1_is_not_kept,
                                  teardown),
        cmocka_unit_test_teardown(test_off_when_entries_is_zero, teardown),
        cmocka_unit_test_teardown(test_put_during_a_lookup_wins, teardown),
        cmocka_unit_test(test_destroy_destroys_inner),
        cmocka_unit_test_teardown(test_threads_share_one_l1, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
