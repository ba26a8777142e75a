/*
 * test_store_l1.c - the L1 cache over fake inner stores: hits without the
 * inner store, fills, puts, TTL on a fake clock, entry and byte bounds in
 * LRU order, off, a put racing a lookup, fronts sharing one table, and 4
 * threads at once (one front, and a front each over its own store).
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

    (void)status; /* the fake answers 201 */
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

/* L1 is the first front, on INNER; L1_B (when made) a second one on
 * INNER_B. */
struct fixture {
    struct fake *inner;
    struct agw_store *l1;
    struct fake *inner_b;
    struct agw_store *l1_b;
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

/* Two fronts on one table, each on its own fake. */
static struct fixture *
make_shared(long entries, size_t bytes, long ttl_ms)
{
    struct fixture *fx = make(entries, bytes, ttl_ms);

    fx->inner_b = fake_new();
    fx->l1_b = agw_store_l1_share(fx->l1, &fx->inner_b->base);
    assert_non_null(fx->l1_b);
    return fx;
}

static int
teardown(void **state)
{
    struct fixture *fx = *state;

    if (fx != NULL) {
        if (fx->l1 != NULL) {
            fx->l1->ops->destroy(fx->l1);
        }
        if (fx->l1_b != NULL) {
            fx->l1_b->ops->destroy(fx->l1_b);
        }
        free(fx);
    }
    return 0;
}

static long
gets_of(const struct fixture *fx)
{
    return atomic_load(&fx->inner->gets);
}

static long
gets_of_b(const struct fixture *fx)
{
    return atomic_load(&fx->inner_b->gets);
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
test_peek_answers_only_what_l1_holds(void **state)
{
    struct fixture *fx = make(10, 1 << 20, 1000);
    struct seen s;

    *state = fx;
    fake_set(fx->inner, "k", "in-redis");
    memset(&s, 0, sizeof(s));
    /* In the inner store only: no answer, and the inner store is not
     * asked (that is get()'s job) nor the miss counted twice. */
    assert_false(fx->l1->ops->peek(fx->l1, "k", record, &s));
    assert_int_equal(s.calls, 0);
    assert_int_equal(gets_of(fx), 0);
    assert_int_equal(stats_of(fx).misses, 0);
    put(fx->l1, "k", "held");
    assert_true(fx->l1->ops->peek(fx->l1, "k", record, &s));
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.result, AGW_STORE_HIT);
    assert_string_equal(s.body, "held");
    assert_int_equal(gets_of(fx), 0);
    assert_int_equal(stats_of(fx).hits, 1);
    fake_now += 1001 * 1000; /* past l1_ttl_ms: gone from L1 */
    assert_false(fx->l1->ops->peek(fx->l1, "k", record, &s));
    assert_int_equal(s.calls, 1);
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

/* ------------------------------------------------------ shared fronts */

static void
test_share_put_on_a_is_a_hit_on_b(void **state)
{
    struct fixture *fx = make_shared(10, 1 << 20, 1000);
    struct seen s;

    *state = fx;
    put(fx->l1, "k", "from-a");
    assert_int_equal(atomic_load(&fx->inner->puts), 1);
    assert_int_equal(atomic_load(&fx->inner_b->puts), 0); /* A's only */
    s = get(fx->l1_b, "k");
    assert_int_equal(s.result, AGW_STORE_HIT);
    assert_int_equal(s.status, 201);
    assert_string_equal(s.body, "from-a");
    assert_int_equal(gets_of_b(fx), 0);
    assert_int_equal(gets_of(fx), 0);
}

static void
test_share_miss_asks_its_own_inner(void **state)
{
    struct fixture *fx = make_shared(10, 1 << 20, 1000);
    struct seen s;

    *state = fx;
    fake_set(fx->inner, "k", "in-a");
    fake_set(fx->inner_b, "k", "in-b");
    s = get(fx->l1_b, "k");
    assert_string_equal(s.body, "in-b");
    assert_int_equal(gets_of_b(fx), 1);
    assert_int_equal(gets_of(fx), 0);
    /* B's fill is in the one table: A is answered from it. */
    s = get(fx->l1, "k");
    assert_string_equal(s.body, "in-b");
    assert_int_equal(gets_of(fx), 0);
    /* A miss through A asks A's inner store only. */
    s = get(fx->l1, "other");
    assert_int_equal(s.result, AGW_STORE_MISS);
    assert_int_equal(gets_of(fx), 1);
    assert_int_equal(gets_of_b(fx), 1);
}

static void
test_share_put_on_b_drops_a_fill_racing_it(void **state)
{
    struct fixture *fx = make_shared(10, 1 << 20, 1000);
    struct seen s;

    *state = fx;
    fake_set(fx->inner, "k", "old");
    memset(&s, 0, sizeof(s));
    fx->inner->defer = 1;
    fx->l1->ops->get(fx->l1, "k", record, &s);
    put(fx->l1_b, "k", "new"); /* through the other front */
    answer_deferred(fx->inner);
    assert_string_equal(s.body, "old");
    assert_string_equal(get(fx->l1, "k").body, "new");
    assert_string_equal(get(fx->l1_b, "k").body, "new");
    assert_int_equal(gets_of(fx), 1);
    assert_int_equal(gets_of_b(fx), 0);
}

static void
test_share_stats_and_clock_are_the_tables(void **state)
{
    struct fixture *fx = make_shared(10, 1 << 20, 1000);
    struct agw_store_l1_stats a;
    struct agw_store_l1_stats b;

    *state = fx;
    put(fx->l1, "k", "v");
    get(fx->l1_b, "k");      /* hit */
    get(fx->l1, "k");        /* hit */
    get(fx->l1_b, "absent"); /* miss */
    agw_store_l1_stats(fx->l1, &a);
    agw_store_l1_stats(fx->l1_b, &b);
    assert_int_equal(a.hits, 2);
    assert_int_equal(a.misses, 1);
    assert_int_equal(a.entries, 1);
    assert_memory_equal(&a, &b, sizeof(a));
    /* One clock for the table, set through either front. */
    agw_store_l1_set_clock(fx->l1_b, NULL);
    assert_false(in_l1(fx, "k")); /* real clock: far past fake_now + TTL */
    agw_store_l1_set_clock(fx->l1_b, fake_clock);
    put(fx->l1, "k", "v");
    fake_now += 1000 * 1000;
    assert_false(in_l1(fx, "k"));
}

static void
test_share_outlives_the_first_front(void **state)
{
    struct fixture *fx = make_shared(10, 1 << 20, 1000);
    int before = fake_destroyed_count;
    struct fake *third_inner = fake_new();
    struct agw_store *third;

    *state = fx;
    put(fx->l1, "k", "v");
    third = agw_store_l1_share(fx->l1_b, &third_inner->base); /* of a share */
    assert_non_null(third);
    fx->l1->ops->destroy(fx->l1);
    fx->l1 = NULL;
    assert_int_equal(fake_destroyed_count, before + 1); /* A's inner only */
    assert_string_equal(get(fx->l1_b, "k").body, "v");
    put(fx->l1_b, "j", "w");
    assert_int_equal(atomic_load(&fx->inner_b->puts), 1);
    fx->l1_b->ops->destroy(fx->l1_b);
    fx->l1_b = NULL;
    assert_int_equal(fake_destroyed_count, before + 2);
    /* The last front still has both entries. */
    assert_string_equal(get(third, "k").body, "v");
    assert_string_equal(get(third, "j").body, "w");
    assert_int_equal(atomic_load(&third_inner->gets), 0);
    third->ops->destroy(third);
    assert_int_equal(fake_destroyed_count, before + 3);
}

static void
test_share_of_a_pass_through_passes_through(void **state)
{
    struct fixture *fx = make_shared(0, 1 << 20, 1000);

    *state = fx;
    put(fx->l1, "k", "v");
    put(fx->l1_b, "k", "v");
    assert_int_equal(get(fx->l1_b, "k").result, AGW_STORE_HIT);
    assert_int_equal(get(fx->l1_b, "k").result, AGW_STORE_HIT);
    assert_int_equal(gets_of_b(fx), 2); /* every lookup asks B's inner */
    assert_int_equal(gets_of(fx), 0);
    assert_int_equal(stats_of(fx).entries, 0);
}

static void
test_share_of_no_l1_destroys_inner(void **state)
{
    struct fake *other = fake_new();
    struct fake *inner = fake_new();
    int before = fake_destroyed_count;

    (void)state;
    assert_null(agw_store_l1_share(NULL, &inner->base));
    assert_int_equal(fake_destroyed_count, before + 1);
    inner = fake_new();
    assert_null(agw_store_l1_share(&other->base, &inner->base)); /* not L1 */
    assert_int_equal(fake_destroyed_count, before + 2);
    assert_null(agw_store_l1_share(&other->base, NULL));
    other->base.ops->destroy(&other->base);
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

/*
 * Every thread has its own front over its own memory store (as a worker
 * has its own Redis connection); thread 0 only reads. Bodies name the
 * thread that wrote them, so a hit can tell it came through the table.
 */
#define SHARED_KEYS 8
#define SHARED_ENTRIES 4
#define SHARED_BYTES 500 /* binds before SHARED_ENTRIES for the longer keys */
#define STATS_EVERY 1024

/* Counts the lookups that reach its memory store; thread-confined. */
struct counting {
    struct agw_store base;
    struct agw_store *mem;
    long *gets; /* into the worker: outlives this store */
};

static void
counting_get(struct agw_store *store, const char *key, agw_store_get_cb cb,
             void *arg)
{
    struct counting *c = (struct counting *)store;

    (*c->gets)++;
    c->mem->ops->get(c->mem, key, cb, arg);
}

static void
counting_put(struct agw_store *store, const char *key, int status,
             const char *body, size_t len, long ttl_s)
{
    struct counting *c = (struct counting *)store;

    c->mem->ops->put(c->mem, key, status, body, len, ttl_s);
}

static void
counting_destroy(struct agw_store *store)
{
    struct counting *c = (struct counting *)store;

    c->mem->ops->destroy(c->mem);
    free(c);
}

static const struct agw_store_ops counting_ops = {
    .name = "counting",
    .get = counting_get,
    .put = counting_put,
    .destroy = counting_destroy,
};

static struct agw_store *
counting_new(long *gets)
{
    struct counting *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->base.ops = &counting_ops;
    c->mem = agw_store_memory_new(100, SIZE_MAX);
    assert_non_null(c->mem);
    c->gets = gets;
    return &c->base;
}

/* Thread ID's body for key K: its id, the key, and K * 16 dots. */
static void
shared_body(int id, int k, char *out, size_t size)
{
    int n = snprintf(out, size, "t%d:key-%d:", id, k);

    memset(out + n, '.', (size_t)k * 16);
    out[n + k * 16] = '\0';
}

struct probe {
    int self;
    int k;
    int from; /* the thread that wrote the body of a hit, or -1 */
    int bad;
};

static void
check_shared(enum agw_store_result result, int status, const char *body,
             size_t len, void *arg)
{
    struct probe *p = arg;
    char want[BODY_MAX];

    p->from = -1;
    if (result == AGW_STORE_MISS) {
        return;
    }
    if (result != AGW_STORE_HIT || status != 201 || len < 2 || body[1] < '0' ||
        body[1] >= '0' + THREADS) {
        p->bad++;
        return;
    }
    p->from = body[1] - '0';
    shared_body(p->from, p->k, want, sizeof(want));
    if (len != strlen(want) || memcmp(body, want, len) != 0) {
        p->bad++;
    }
}

struct shared_worker {
    struct agw_store *front; /* owned: destroyed by the thread when done */
    int id;
    long gets;
    long l1_hits; /* answered without asking the own inner store */
    long inner_gets;
    long foreign; /* hits with another thread's body */
    long bad;
};

static void
shared_check_bounds(struct shared_worker *w)
{
    struct agw_store_l1_stats st;

    agw_store_l1_stats(w->front, &st);
    if (st.entries > SHARED_ENTRIES || st.bytes > SHARED_BYTES) {
        w->bad++;
    }
}

static void
shared_step(struct shared_worker *w, unsigned seed)
{
    struct probe p = {.self = w->id, .k = (int)((seed >> 8) % SHARED_KEYS)};
    char key[32];
    char body[BODY_MAX];
    long asked = w->inner_gets;

    snprintf(key, sizeof(key), "key-%d", p.k);
    if (w->id != 0 && (seed >> 4) % 4 == 0) {
        shared_body(w->id, p.k, body, sizeof(body));
        w->front->ops->put(w->front, key, 201, body, strlen(body), 60);
        return;
    }
    w->front->ops->get(w->front, key, check_shared, &p);
    w->gets++;
    w->bad += p.bad;
    w->l1_hits += w->inner_gets == asked;
    w->foreign += p.from >= 0 && p.from != w->id;
    if (w->id == 0 && p.from == 0) {
        w->bad++; /* thread 0 never wrote anything */
    }
}

static void *
shared_hammer(void *arg)
{
    struct shared_worker *w = arg;
    unsigned seed = (unsigned)w->id * 7919u + 17;

    for (int i = 0; i < ROUNDS; i++) {
        seed = seed * 1103515245u + 12345u;
        shared_step(w, seed);
        if (i % STATS_EVERY == 0) {
            shared_check_bounds(w);
        }
    }
    w->front->ops->destroy(w->front); /* while others may still run */
    w->front = NULL;
    return NULL;
}

/* Asks every key through L1 (its inner store is empty): the hits. */
static long
shared_hits_left(struct agw_store *l1)
{
    long hits = 0;
    char key[32];
    struct probe p = {.self = -1};

    for (p.k = 0; p.k < SHARED_KEYS; p.k++) {
        snprintf(key, sizeof(key), "key-%d", p.k);
        l1->ops->get(l1, key, check_shared, &p);
        assert_int_equal(p.bad, 0);
        hits += p.from >= 0;
    }
    return hits;
}

static void
test_threads_with_own_fronts_share_one_table(void **state)
{
    struct shared_worker w[THREADS];
    pthread_t t[THREADS];
    struct agw_store_l1_stats st;
    long observer_gets = 0;
    long gets = 0, l1_hits = 0, inner_gets = 0;
    struct agw_store *l1 = agw_store_l1_new(
        counting_new(&observer_gets), SHARED_ENTRIES, SHARED_BYTES, 60000);

    (void)state;
    assert_non_null(l1); /* the observer's front, destroyed last */
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct shared_worker){.id = i};
        w[i].front = agw_store_l1_share(l1, counting_new(&w[i].inner_gets));
        assert_non_null(w[i].front);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, shared_hammer, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].bad, 0);
        gets += w[i].gets;
        l1_hits += w[i].l1_hits;
        inner_gets += w[i].inner_gets;
    }
    agw_store_l1_stats(l1, &st);
    assert_true(st.entries <= SHARED_ENTRIES);
    assert_true(st.bytes <= SHARED_BYTES);
    assert_int_equal(st.hits, l1_hits);
    assert_int_equal(st.misses, inner_gets); /* each to its own inner */
    assert_int_equal(gets, l1_hits + inner_gets);
    assert_int_equal(w[0].foreign, w[0].l1_hits); /* all written by others */
    assert_true(st.entries > 0);
    assert_int_equal(shared_hits_left(l1), st.entries);
    assert_int_equal(observer_gets, SHARED_KEYS - st.entries);
    l1->ops->destroy(l1);
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
        cmocka_unit_test_teardown(test_share_put_on_a_is_a_hit_on_b, teardown),
        cmocka_unit_test_teardown(test_share_miss_asks_its_own_inner, teardown),
        cmocka_unit_test_teardown(test_share_put_on_b_drops_a_fill_racing_it,
                                  teardown),
        cmocka_unit_test_teardown(test_share_stats_and_clock_are_the_tables,
                                  teardown),
        cmocka_unit_test_teardown(test_share_outlives_the_first_front,
                                  teardown),
        cmocka_unit_test_teardown(test_share_of_a_pass_through_passes_through,
                                  teardown),
        cmocka_unit_test(test_share_of_no_l1_destroys_inner),
        cmocka_unit_test_teardown(test_peek_answers_only_what_l1_holds,
                                  teardown),
        cmocka_unit_test_teardown(test_threads_share_one_l1, teardown),
        cmocka_unit_test(test_threads_with_own_fronts_share_one_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
