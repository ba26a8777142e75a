/*
 * test_store.c - the store over a fake Redis tier (agw_store_redis_*
 * defined here). Memory backend: hits, replacement, TTL on a fake clock,
 * LRU eviction, growth with many keys, binary bodies, peek. L1: hits
 * without Redis, fills, puts, TTL, entry and byte bounds in LRU order,
 * off, a put racing a lookup, stores on one table, 4 threads at once.
 * Tiers: Redis down or failing answers from the memory table, copies of
 * Redis hits, keep() writes only the local copies, a purge racing a
 * lookup leaves no copy.
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
#include "store_redis.h"

#define FAKE_KEYS 64
#define BODY_MAX 256

/* ------------------------------------------------------ fake Redis */

/*
 * A small Redis. It answers at once, or, with DEFER, keeps the last
 * lookup for answer_deferred(); DOWN: not connected; FAIL: every GET
 * fails. With ECHO (thread test) it is stateless and thread-safe: every
 * key is a HIT whose body is "v:" + key.
 */
struct agw_redis {
    atomic_long gets;
    atomic_long puts;
    int down;
    int fail;
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

/* The tier a store makes on a fake Redis. */
struct agw_store_redis {
    struct agw_redis *r;
};

static int tiers_freed;

struct agw_store_redis *
agw_store_redis_new(struct agw_redis *redis, const char *key_prefix)
{
    struct agw_store_redis *tier = calloc(1, sizeof(*tier));

    (void)key_prefix;
    assert_non_null(tier);
    tier->r = redis;
    return tier;
}

void
agw_store_redis_free(struct agw_store_redis *tier)
{
    if (tier != NULL) {
        tiers_freed++;
        free(tier);
    }
}

bool
agw_store_redis_is_up(const struct agw_store_redis *tier)
{
    return !tier->r->down;
}

static int
fake_find(struct agw_redis *f, const char *key)
{
    for (int i = 0; i < f->nkeys; i++) {
        if (strcmp(f->keys[i], key) == 0) {
            return i;
        }
    }
    return -1;
}

static void
fake_answer(struct agw_redis *f, const char *key, agw_store_get_cb cb,
            void *arg)
{
    int i = fake_find(f, key);

    if (f->fail) {
        cb(AGW_STORE_ERROR, 0, NULL, 0, arg);
    } else if (i < 0) {
        cb(AGW_STORE_MISS, 0, NULL, 0, arg);
    } else {
        cb(AGW_STORE_HIT, 201, f->bodies[i], strlen(f->bodies[i]), arg);
    }
}

void
agw_store_redis_get(struct agw_store_redis *tier, const char *key,
                    agw_store_get_cb cb, void *arg)
{
    struct agw_redis *f = tier->r;
    char body[BODY_MAX];

    assert_false(f->down); /* the store asks only while Redis is up */
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
fake_put(struct agw_redis *f, const char *key, const char *body, size_t len,
         long ttl_s)
{
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

void
agw_store_redis_set(struct agw_store_redis *tier, const char *key, int status,
                    const char *body, size_t len, long ttl_s)
{
    (void)status; /* the fake answers 201 */
    assert_false(tier->r->down);
    fake_put(tier->r, key, body, len, ttl_s);
}

static struct agw_redis *
fake_new(void)
{
    struct agw_redis *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    return f;
}

/* Writes straight into Redis, behind the store's back (another instance
 * refreshing the shared store). */
static void
fake_set(struct agw_redis *f, const char *key, const char *body)
{
    fake_put(f, key, body, strlen(body), 60);
    atomic_fetch_sub(&f->puts, 1);
}

static void
answer_deferred(struct agw_redis *f)
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
    size_t len;
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
    s->len = len;
    s->body[0] = '\0';
    if (result == AGW_STORE_HIT && len < sizeof(s->body)) {
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

static void
put_ttl(struct agw_store *st, const char *key, const char *body, long ttl_s)
{
    st->ops->put(st, key, 201, body, strlen(body), ttl_s);
}

static bool
has(struct agw_store *st, const char *key)
{
    return get(st, key).result == AGW_STORE_HIT;
}

static struct agw_store_stats
stats_of_tables(struct agw_store_tables *t)
{
    struct agw_store_stats st;

    agw_store_tables_stats(t, &st);
    return st;
}

/* ------------------------------------------------------ memory backend */

/* The tables of the memory store made last. */
static struct agw_store_tables *mem_tables;

static struct agw_store *
mem_new(long max_entries, size_t max_bytes)
{
    struct agw_store *st;

    mem_tables = agw_store_tables_new(max_entries, max_bytes, 0, 0, 0);
    assert_non_null(mem_tables);
    st = agw_store_new(mem_tables, NULL, NULL, 0);
    assert_non_null(st);
    agw_store_tables_unref(mem_tables); /* the store's reference keeps it */
    return st;
}

static long
mem_count(void)
{
    return stats_of_tables(mem_tables).memory_entries;
}

static int
mem_setup(void **state)
{
    struct agw_store *st = mem_new(3, SIZE_MAX);

    fake_now = 1000000;
    agw_store_tables_set_clock(mem_tables, fake_clock);
    *state = st;
    return 0;
}

static int
mem_teardown(void **state)
{
    struct agw_store *st = *state;

    st->ops->destroy(st);
    return 0;
}

static void
test_hit_and_miss(void **state)
{
    struct agw_store *st = *state;
    struct seen s;

    put_ttl(st, "k1", "{\"asset\":1}", 60);
    s = get(st, "k1");
    assert_int_equal(s.result, AGW_STORE_HIT);
    assert_int_equal(s.status, 201);
    assert_int_equal(s.len, strlen("{\"asset\":1}"));
    assert_memory_equal(s.body, "{\"asset\":1}", s.len);

    assert_int_equal(get(st, "k2").result, AGW_STORE_MISS);
    assert_int_equal(get(st, "k").result, AGW_STORE_MISS);
    assert_int_equal(get(st, "k10").result, AGW_STORE_MISS);
    assert_int_equal(mem_count(), 1);
}

static void
test_replace(void **state)
{
    struct agw_store *st = *state;
    struct seen s;

    put_ttl(st, "k", "old", 60);
    st->ops->put(st, "k", 200, "newer", 5, 60);
    assert_int_equal(mem_count(), 1);
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

    put_ttl(st, "short", "a", 10);
    put_ttl(st, "long", "b", 20);
    fake_now += 10 * 1000000 - 1;
    assert_true(has(st, "short"));
    fake_now += 1;
    assert_false(has(st, "short"));
    /* Removed on sight, the other one untouched. */
    assert_int_equal(mem_count(), 1);
    assert_true(has(st, "long"));
    fake_now += 10 * 1000000;
    assert_false(has(st, "long"));
    assert_int_equal(mem_count(), 0);
}

static void
test_replace_renews_ttl(void **state)
{
    struct agw_store *st = *state;

    put_ttl(st, "k", "a", 10);
    fake_now += 9 * 1000000;
    put_ttl(st, "k", "b", 10);
    fake_now += 5 * 1000000;
    assert_true(has(st, "k"));
}

static void
test_zero_ttl_not_stored(void **state)
{
    struct agw_store *st = *state;

    put_ttl(st, "k", "a", 60);
    put_ttl(st, "k", "b", 0);
    assert_false(has(st, "k"));
    assert_int_equal(mem_count(), 0);
}

static void
test_lru_evicts_oldest(void **state)
{
    struct agw_store *st = *state;

    put_ttl(st, "a", "1", 60);
    put_ttl(st, "b", "2", 60);
    put_ttl(st, "c", "3", 60);
    assert_int_equal(mem_count(), 3);
    put_ttl(st, "d", "4", 60);
    assert_int_equal(mem_count(), 3);
    assert_false(has(st, "a"));
    assert_true(has(st, "b"));
    assert_true(has(st, "c"));
    assert_true(has(st, "d"));
}

static void
test_lru_get_refreshes(void **state)
{
    struct agw_store *st = *state;

    put_ttl(st, "a", "1", 60);
    put_ttl(st, "b", "2", 60);
    put_ttl(st, "c", "3", 60);
    assert_true(has(st, "a")); /* now b is the least recent */
    put_ttl(st, "d", "4", 60);
    assert_false(has(st, "b"));
    assert_true(has(st, "a"));
    assert_true(has(st, "c"));
    put_ttl(st, "e", "5", 60); /* recency now c, a, d: d goes */
    assert_false(has(st, "d"));
    assert_true(has(st, "e"));
}

static void
test_lru_replace_refreshes(void **state)
{
    struct agw_store *st = *state;

    put_ttl(st, "a", "1", 60);
    put_ttl(st, "b", "2", 60);
    put_ttl(st, "c", "3", 60);
    put_ttl(st, "a", "1b", 60); /* a replaced in place, nothing evicted */
    assert_int_equal(mem_count(), 3);
    put_ttl(st, "d", "4", 60);
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

    put_ttl(st, "self", "payload", 60);
    st->ops->get(st, "self", put_back, st);
    s = get(st, "self");
    assert_int_equal(s.len, 7);
    assert_memory_equal(s.body, "payload", 7);
    assert_int_equal(mem_count(), 1);
}

static void
test_many_keys(void **state)
{
    struct agw_store *st = mem_new(20000, SIZE_MAX);
    char key[64];
    char body[64];
    struct seen s;

    (void)state;
    assert_non_null(st);
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "biz:%d:uri", i);
        snprintf(body, sizeof(body), "{\"n\":%d}", i);
        put_ttl(st, key, body, 60);
    }
    assert_int_equal(mem_count(), 10000);
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
    struct agw_store *st = mem_new(1000, SIZE_MAX);
    char key[64];
    int hits = 0;

    (void)state;
    assert_non_null(st);
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put_ttl(st, key, "x", 60);
    }
    assert_int_equal(mem_count(), 1000);
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
    struct agw_store *st = mem_new(0, SIZE_MAX);

    (void)state;
    assert_non_null(st);
    put_ttl(st, "k", "v", 60);
    assert_int_equal(mem_count(), 0);
    assert_false(has(st, "k"));
    st->ops->destroy(st);
}

/* Bytes bound the store too: 1000-byte bodies in 4 KiB keep the newest
 * few; one bigger than the bound is never kept. */
static void
test_bytes_bound(void **state)
{
    struct agw_store *st = mem_new(1000, 4096);
    char body[1001];
    char key[16];
    char big[5000];

    (void)state;
    assert_non_null(st);
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put_ttl(st, key, body, 60);
    }
    /* Each costs 1000 + key + ~90: three fit, a fourth would not. */
    assert_int_equal(mem_count(), 3);
    assert_true(has(st, "k9"));
    assert_true(has(st, "k7"));
    assert_false(has(st, "k6"));
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    put_ttl(st, "big", big, 60);
    assert_false(has(st, "big"));
    assert_true(has(st, "k9")); /* nothing evicted for it */
    st->ops->destroy(st);
}

/* peek answers a hit before returning and leaves a miss to get(); the
 * tables outlive their owner's reference while a store holds one, and a
 * second store on them sees the first one's answers. */
static void
test_peek_and_references(void **state)
{
    struct agw_store_tables *t = agw_store_tables_new(10, 1 << 20, 0, 0, 0);
    struct agw_store *st = agw_store_new(t, NULL, NULL, 0);
    struct agw_store *other = agw_store_new(t, NULL, NULL, 0);
    struct seen s;

    (void)state;
    assert_non_null(st);
    assert_non_null(other);
    put_ttl(st, "k", "v", 60);
    memset(&s, 0, sizeof(s));
    assert_true(st->ops->peek(st, "k", record, &s));
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.result, AGW_STORE_HIT);
    assert_false(st->ops->peek(st, "absent", record, &s));
    assert_int_equal(s.calls, 1);
    agw_store_tables_unref(t);
    st->ops->destroy(st);
    assert_true(has(other, "k"));
    other->ops->destroy(other); /* the last reference */
}

/* ------------------------------------------------------ L1 */

/* The L1 counters of a store's tables, as the old L1 module named them. */
struct l1_stats {
    long entries;
    size_t bytes;
    uint64_t hits;
    uint64_t misses;
    uint64_t evicted;
};

static struct l1_stats
l1_stats_of(struct agw_store_tables *t)
{
    struct agw_store_stats st = stats_of_tables(t);

    return (struct l1_stats){st.l1_entries, st.l1_bytes, st.l1_hits,
                             st.l1_misses, st.l1_evicted};
}

/* L1 is a store on TABLES over INNER; L1_B (when made) a second one on
 * the same tables over INNER_B (two workers). */
struct fixture {
    struct agw_store_tables *tables;
    struct agw_redis *inner;
    struct agw_store *l1;
    struct agw_redis *inner_b;
    struct agw_store *l1_b;
};

static struct fixture *
make(long entries, size_t bytes, long ttl_ms)
{
    struct fixture *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    fx->tables = agw_store_tables_new(1000, SIZE_MAX, entries, bytes, ttl_ms);
    assert_non_null(fx->tables);
    fx->inner = fake_new();
    fx->l1 = agw_store_new(fx->tables, fx->inner, "agw:", 3600);
    assert_non_null(fx->l1);
    agw_store_tables_set_clock(fx->tables, fake_clock);
    fake_now = 1000000;
    return fx;
}

/* Two stores on one table, each on its own fake. */
static struct fixture *
make_shared(long entries, size_t bytes, long ttl_ms)
{
    struct fixture *fx = make(entries, bytes, ttl_ms);

    fx->inner_b = fake_new();
    fx->l1_b = agw_store_new(fx->tables, fx->inner_b, "agw:", 3600);
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
        agw_store_tables_unref(fx->tables);
        free(fx->inner);
        free(fx->inner_b);
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

static struct l1_stats
stats_of(struct fixture *fx)
{
    return l1_stats_of(fx->tables);
}

/* True when KEY is answered from L1 (Redis is not asked). */
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
    /* In Redis only: no answer, and Redis is not
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

/* A lookup sent to Redis before a put must not bring back the
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
test_destroy_frees_the_redis_tier(void **state)
{
    struct fixture *fx = make(10, 1000, 1000);
    int before = tiers_freed;

    *state = fx;
    put(fx->l1, "k", "v");
    fx->l1->ops->destroy(fx->l1);
    fx->l1 = NULL;
    assert_int_equal(tiers_freed, before + 1);
}

/* ------------------------------------------ stores on one table */

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
    /* A miss through A asks A's Redis only. */
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
    put(fx->l1_b, "k", "new"); /* through the other store */
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
    struct l1_stats a;

    *state = fx;
    put(fx->l1, "k", "v");
    get(fx->l1_b, "k");      /* hit */
    get(fx->l1, "k");        /* hit */
    get(fx->l1_b, "absent"); /* miss */
    a = stats_of(fx);
    assert_int_equal(a.hits, 2);
    assert_int_equal(a.misses, 1);
    assert_int_equal(a.entries, 1);
    /* One clock for the tables, whichever store reads them. */
    agw_store_tables_set_clock(fx->tables, NULL);
    assert_false(in_l1(fx, "k")); /* real clock: far past fake_now + TTL */
    agw_store_tables_set_clock(fx->tables, fake_clock);
    put(fx->l1, "k", "v");
    fake_now += 1000 * 1000;
    assert_false(in_l1(fx, "k"));
}

static void
test_share_outlives_the_first_store_and_the_owner(void **state)
{
    struct fixture *fx = make_shared(10, 1 << 20, 1000);
    int before = tiers_freed;
    struct agw_redis *third_inner = fake_new();
    struct agw_store *third =
        agw_store_new(fx->tables, third_inner, "agw:", 3600);

    *state = fx;
    assert_non_null(third);
    put(fx->l1, "k", "v");
    agw_store_tables_unref(fx->tables); /* the owner's reference */
    fx->tables = NULL;
    fx->l1->ops->destroy(fx->l1);
    fx->l1 = NULL;
    assert_int_equal(tiers_freed, before + 1); /* A's tier only */
    assert_string_equal(get(fx->l1_b, "k").body, "v");
    put(fx->l1_b, "j", "w");
    assert_int_equal(atomic_load(&fx->inner_b->puts), 1);
    fx->l1_b->ops->destroy(fx->l1_b);
    fx->l1_b = NULL;
    assert_int_equal(tiers_freed, before + 2);
    /* The last store still has both entries. */
    assert_string_equal(get(third, "k").body, "v");
    assert_string_equal(get(third, "j").body, "w");
    assert_int_equal(atomic_load(&third_inner->gets), 0);
    third->ops->destroy(third); /* frees the tables */
    assert_int_equal(tiers_freed, before + 3);
    free(third_inner);
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
test_no_tables_no_store(void **state)
{
    struct agw_redis *r = fake_new();

    (void)state;
    assert_null(agw_store_new(NULL, r, "agw:", 3600));
    assert_null(agw_store_new(NULL, NULL, NULL, 0));
    free(r);
}

/* ------------------------------------------------------ tiers */

/* A store on tables with an L1, over a fake Redis: the fixture's. */
static struct fixture *
make_tiered(void)
{
    return make(10, 1 << 20, 1000);
}

static long
memory_entries(struct fixture *fx)
{
    return stats_of_tables(fx->tables).memory_entries;
}

/* While Redis is down: no Redis call; puts and lookups use the memory
 * table (and the L1); back up, Redis answers again. */
static void
test_redis_down_uses_the_memory_table(void **state)
{
    struct fixture *fx = make(0, 0, 0); /* no L1: every lookup goes past */
    struct seen s;

    *state = fx;
    fx->inner->down = 1;
    assert_int_equal(get(fx->l1, "k").result, AGW_STORE_MISS);
    put(fx->l1, "k", "local");
    assert_int_equal(atomic_load(&fx->inner->puts), 0);
    s = get(fx->l1, "k");
    assert_int_equal(s.result, AGW_STORE_HIT);
    assert_string_equal(s.body, "local");
    assert_int_equal(gets_of(fx), 0);
    fx->inner->down = 0;
    assert_int_equal(get(fx->l1, "k").result, AGW_STORE_MISS); /* Redis's */
    assert_int_equal(gets_of(fx), 1);
}

/* A lookup Redis fails is answered from the memory table: what was put
 * while Redis was up too (stale-if-error). */
static void
test_redis_error_falls_back_to_memory(void **state)
{
    struct fixture *fx = make(0, 0, 0);
    struct seen s;

    *state = fx;
    put(fx->l1, "k", "stored");
    assert_int_equal(atomic_load(&fx->inner->puts), 1);
    fx->inner->fail = 1;
    s = get(fx->l1, "k");
    assert_int_equal(s.result, AGW_STORE_HIT);
    assert_string_equal(s.body, "stored");
    assert_int_equal(gets_of(fx), 1);
    assert_int_equal(get(fx->l1, "absent").result, AGW_STORE_MISS);
}

/* A Redis hit is copied into the memory table for COPY_TTL_S (3600 in
 * the fixture), served once Redis fails, and gone after. */
static void
test_redis_hit_is_copied_for_copy_ttl(void **state)
{
    struct fixture *fx = make(0, 0, 0);

    *state = fx;
    fake_set(fx->inner, "k", "from-redis");
    assert_int_equal(memory_entries(fx), 0);
    assert_string_equal(get(fx->l1, "k").body, "from-redis");
    assert_int_equal(memory_entries(fx), 1);
    fx->inner->down = 1;
    fake_now += 3599 * INT64_C(1000000);
    assert_string_equal(get(fx->l1, "k").body, "from-redis");
    fake_now += 1000000;
    assert_int_equal(get(fx->l1, "k").result, AGW_STORE_MISS);
}

/* keep(): the L1 and the memory table, never Redis. */
static void
test_keep_writes_local_copies_only(void **state)
{
    struct fixture *fx = make_tiered();
    struct seen s;

    *state = fx;
    fx->l1->ops->keep(fx->l1, "k", 201, "kept", 4, 60);
    assert_int_equal(atomic_load(&fx->inner->puts), 0);
    assert_true(in_l1(fx, "k"));
    assert_int_equal(memory_entries(fx), 1);
    fake_now += 1001 * 1000; /* past the L1's bound */
    fx->inner->fail = 1;
    s = get(fx->l1, "k");
    assert_int_equal(s.result, AGW_STORE_HIT);
    assert_string_equal(s.body, "kept"); /* from the memory table */
}

/* The memory backend keeps nothing on keep() (put() wrote it) and has
 * no Redis to ask. */
static void
test_memory_backend_keep_is_nothing(void **state)
{
    struct agw_store *st = mem_new(10, SIZE_MAX);

    (void)state;
    st->ops->keep(st, "k", 201, "kept", 4, 60);
    assert_int_equal(mem_count(), 0);
    assert_false(has(st, "k"));
    st->ops->destroy(st);
}

/* A fallback hit while Redis is down fills the L1 too. */
static void
test_fallback_hit_fills_l1(void **state)
{
    struct fixture *fx = make_tiered();

    *state = fx;
    fx->inner->down = 1;
    put(fx->l1, "k", "v");
    fake_now += 1001 * 1000; /* the L1 copy is gone, the memory one not */
    assert_false(fx->l1->ops->peek(fx->l1, "k", record, &(struct seen){0}));
    assert_string_equal(get(fx->l1, "k").body, "v");
    assert_int_equal(stats_of(fx).misses, 1);
    assert_true(fx->l1->ops->peek(fx->l1, "k", record, &(struct seen){0}));
}

/* An operator's purge while a Redis lookup is on its way: the lookup
 * had read the answer before Redis deleted it, and its reply comes after
 * the purge. The caller gets what it asked for, but neither the L1 nor
 * the memory table keeps it: else the purged answer would be served
 * again here (from the memory table once Redis fails). */
static void
test_purge_during_a_lookup_keeps_no_copy(void **state)
{
    struct fixture *fx = make_tiered();
    struct seen s;

    *state = fx;
    fake_set(fx->inner, "k", "purged");
    memset(&s, 0, sizeof(s));
    fx->inner->defer = 1;
    fx->l1->ops->get(fx->l1, "k", record, &s);
    assert_int_equal(s.calls, 0); /* the GET is on its way */
    assert_false(agw_store_tables_forget(fx->tables, "k"));
    answer_deferred(fx->inner); /* read before the purge's DEL */
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.body, "purged");
    assert_int_equal(stats_of(fx).entries, 0); /* the L1 */
    assert_int_equal(memory_entries(fx), 0);
    fx->inner->fail = 1; /* the fallback has nothing either */
    assert_int_equal(get(fx->l1, "k").result, AGW_STORE_MISS);
}

/* Purges missed and not known (flight_fleet.h, AGW_FLEET_PURGE_ALL):
 * both tables are emptied, so Redis failing later serves none of them;
 * forgetting the L1 alone (purges missed, but known) keeps the memory
 * table's copies for that. */
static void
test_forget_all_empties_both_tables(void **state)
{
    struct fixture *fx = make_tiered();

    *state = fx;
    put(fx->l1, "k", "v");
    put(fx->l1, "j", "w");
    agw_store_tables_forget_l1(fx->tables);
    assert_int_equal(stats_of(fx).entries, 0);
    assert_int_equal(memory_entries(fx), 2);
    assert_string_equal(get(fx->l1, "k").body, "v"); /* fills the L1 */
    agw_store_tables_forget_all(fx->tables);
    assert_int_equal(stats_of(fx).entries, 0);
    assert_int_equal(memory_entries(fx), 0);
    fx->inner->fail = 1;
    assert_int_equal(get(fx->l1, "k").result, AGW_STORE_MISS);
    assert_int_equal(get(fx->l1, "j").result, AGW_STORE_MISS);
}

/* ------------------------------------------------------ threads */

#define THREADS 4
#define ROUNDS 20000
#define HOT_KEYS 50

struct worker {
    struct agw_store *st; /* its own, on the fixture's tables and Redis */
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
    struct agw_store *st = w->st;
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
    struct l1_stats st;
    long gets = 0;

    *state = fx;
    /* Real clock: fake_now is racy. */
    agw_store_tables_set_clock(fx->tables, NULL);
    fx->inner->echo = 1; /* thread-safe: one Redis for all */
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){
            .st = agw_store_new(fx->tables, fx->inner, "agw:", 3600), .id = i};
        assert_non_null(w[i].st);
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].bad, 0);
        gets += w[i].gets;
        w[i].st->ops->destroy(w[i].st);
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
 * Every thread has its own store over its own Redis (as a worker has its
 * own Redis connection), all on one table; thread 0 only reads. Bodies
 * name the thread that wrote them, so a hit can tell it came through the
 * table.
 */
#define SHARED_KEYS 8
#define SHARED_ENTRIES 4
#define SHARED_BYTES 500 /* binds before SHARED_ENTRIES for the longer keys */
#define STATS_EVERY 1024

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
    struct agw_store_tables *tables;
    struct agw_redis *redis; /* its own, thread-confined */
    int id;
    long gets;
    long l1_hits; /* answered without asking its own Redis */
    long inner_gets;
    long foreign; /* hits with another thread's body */
    long bad;
};

static void
shared_check_bounds(struct shared_worker *w)
{
    struct l1_stats st = l1_stats_of(w->tables);

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
    long asked = atomic_load(&w->redis->gets);

    snprintf(key, sizeof(key), "key-%d", p.k);
    if (w->id != 0 && (seed >> 4) % 4 == 0) {
        shared_body(w->id, p.k, body, sizeof(body));
        w->front->ops->put(w->front, key, 201, body, strlen(body), 60);
        return;
    }
    w->front->ops->get(w->front, key, check_shared, &p);
    w->gets++;
    w->bad += p.bad;
    w->l1_hits += atomic_load(&w->redis->gets) == asked;
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
    w->inner_gets = atomic_load(&w->redis->gets);
    return NULL;
}

/* Asks every key through L1 (its Redis is empty): the hits. */
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
test_threads_with_own_stores_share_one_table(void **state)
{
    struct shared_worker w[THREADS];
    pthread_t t[THREADS];
    struct l1_stats st;
    struct agw_redis *observer = fake_new();
    long gets = 0, l1_hits = 0, inner_gets = 0;
    struct agw_store_tables *tables = agw_store_tables_new(
        1000, SIZE_MAX, SHARED_ENTRIES, SHARED_BYTES, 60000);
    struct agw_store *l1 = agw_store_new(tables, observer, "agw:", 3600);

    (void)state;
    assert_non_null(l1); /* the observer's store, destroyed last */
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct shared_worker){.tables = tables, .id = i};
        w[i].redis = fake_new();
        w[i].front = agw_store_new(tables, w[i].redis, "agw:", 3600);
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
        free(w[i].redis);
    }
    st = l1_stats_of(tables);
    assert_true(st.entries <= SHARED_ENTRIES);
    assert_true(st.bytes <= SHARED_BYTES);
    assert_int_equal(st.hits, l1_hits);
    assert_int_equal(st.misses, inner_gets); /* each to its own Redis */
    assert_int_equal(gets, l1_hits + inner_gets);
    assert_int_equal(w[0].foreign, w[0].l1_hits); /* all written by others */
    assert_true(st.entries > 0);
    assert_int_equal(shared_hits_left(l1), st.entries);
    assert_int_equal(atomic_load(&observer->gets), SHARED_KEYS - st.entries);
    l1->ops->destroy(l1);
    agw_store_tables_unref(tables);
    free(observer);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hit_and_miss, mem_setup,
                                        mem_teardown),
        cmocka_unit_test_setup_teardown(test_replace, mem_setup, mem_teardown),
        cmocka_unit_test_setup_teardown(test_ttl_expiry, mem_setup,
                                        mem_teardown),
        cmocka_unit_test_setup_teardown(test_replace_renews_ttl, mem_setup,
                                        mem_teardown),
        cmocka_unit_test_setup_teardown(test_zero_ttl_not_stored, mem_setup,
                                        mem_teardown),
        cmocka_unit_test_setup_teardown(test_lru_evicts_oldest, mem_setup,
                                        mem_teardown),
        cmocka_unit_test_setup_teardown(test_lru_get_refreshes, mem_setup,
                                        mem_teardown),
        cmocka_unit_test_setup_teardown(test_lru_replace_refreshes, mem_setup,
                                        mem_teardown),
        cmocka_unit_test_setup_teardown(test_binary_body, mem_setup,
                                        mem_teardown),
        cmocka_unit_test_setup_teardown(test_empty_body, mem_setup,
                                        mem_teardown),
        cmocka_unit_test_setup_teardown(test_put_from_callback, mem_setup,
                                        mem_teardown),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_many_keys_capped),
        cmocka_unit_test(test_zero_capacity),
        cmocka_unit_test(test_bytes_bound),
        cmocka_unit_test(test_peek_and_references),
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
        cmocka_unit_test_teardown(test_forget_all_empties_both_tables,
                                  teardown),
        cmocka_unit_test_teardown(test_destroy_frees_the_redis_tier, teardown),
        cmocka_unit_test_teardown(test_share_put_on_a_is_a_hit_on_b, teardown),
        cmocka_unit_test_teardown(test_share_miss_asks_its_own_inner, teardown),
        cmocka_unit_test_teardown(test_share_put_on_b_drops_a_fill_racing_it,
                                  teardown),
        cmocka_unit_test_teardown(test_share_stats_and_clock_are_the_tables,
                                  teardown),
        cmocka_unit_test_teardown(
            test_share_outlives_the_first_store_and_the_owner, teardown),
        cmocka_unit_test_teardown(test_share_of_a_pass_through_passes_through,
                                  teardown),
        cmocka_unit_test(test_no_tables_no_store),
        cmocka_unit_test_teardown(test_peek_answers_only_what_l1_holds,
                                  teardown),
        cmocka_unit_test_teardown(test_redis_down_uses_the_memory_table,
                                  teardown),
        cmocka_unit_test_teardown(test_redis_error_falls_back_to_memory,
                                  teardown),
        cmocka_unit_test_teardown(test_redis_hit_is_copied_for_copy_ttl,
                                  teardown),
        cmocka_unit_test_teardown(test_keep_writes_local_copies_only, teardown),
        cmocka_unit_test(test_memory_backend_keep_is_nothing),
        cmocka_unit_test_teardown(test_fallback_hit_fills_l1, teardown),
        cmocka_unit_test_teardown(test_purge_during_a_lookup_keeps_no_copy,
                                  teardown),
        cmocka_unit_test_teardown(test_threads_share_one_l1, teardown),
        cmocka_unit_test(test_threads_with_own_stores_share_one_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
