/*
 * parse_memo.c - a per-thread memo of recent successful Create Asset
 * parses, keyed by the exact input.
 */
#include "parse_memo.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "util.h"

/*
 * agw_request_parse() is a pure function of business id as sent,
 * allow_private and the body bytes, and most creates repeat a body seen
 * moments before (that is what makes them cache hits), so a repeat skips
 * the JSON parse, the URI checks and SHA-256: a hash of the input, a
 * comparison and one copy. What is kept is opaque here: request.c lays
 * out its parse in the room put() gives it. Set-associative (least recently
 * used way goes first), bodies up to MEMO_BODY_MAX bytes, at most MEMO_BYTES
 * per thread. The hash only picks a set; entries are compared byte for byte, so
 * a crafted collision costs a miss, never a wrong answer.
 */
#define MEMO_SETS 512 /* a power of two */
#define MEMO_WAYS 4
#define MEMO_SLOTS (MEMO_SETS * MEMO_WAYS)
#define MEMO_BODY_MAX 4096
#define MEMO_BYTES (1024 * 1024)

struct memo_entry {
    uint64_t hash;
    uint64_t used; /* memo clock at the last hit */
    size_t size;   /* bytes charged to the memo */
    size_t body_len;
    size_t value_len;
    bool allow_private;
    char business_id[37];
    max_align_t value[]; /* value_len bytes, then body_len of the body */
};

/* One thread's memo; freed when the thread ends. */
struct memo {
    uint64_t seed;  /* random: where entries land is not predictable */
    uint64_t clock; /* counts memo lookups */
    size_t bytes;   /* charged by entries now held */
    size_t rover;   /* next slot to give up when over MEMO_BYTES */
    struct memo_entry *slots[MEMO_SLOTS];
};

static pthread_once_t memo_once = PTHREAD_ONCE_INIT;
static pthread_key_t memo_key;
static bool memo_key_ok; /* written once under memo_once */
static _Thread_local struct memo *thread_memo;

static void
memo_free(void *arg)
{
    struct memo *m = arg;
    size_t i;

    for (i = 0; i < MEMO_SLOTS; i++) {
        free(m->slots[i]);
    }
    free(m);
    thread_memo = NULL; /* runs on the exiting thread itself */
}

static void
memo_init_once(void)
{
    memo_key_ok = pthread_key_create(&memo_key, memo_free) == 0;
}

/* This thread's memo, or NULL when memory ran out. */
static struct memo *
this_thread_memo(void)
{
    struct memo *m = thread_memo;

    if (m != NULL) {
        return m;
    }
    pthread_once(&memo_once, memo_init_once);
    m = calloc(1, sizeof(*m));
    if (m == NULL || !memo_key_ok || pthread_setspecific(memo_key, m) != 0) {
        free(m);
        return NULL;
    }
    if (RAND_bytes((unsigned char *)&m->seed, sizeof(m->seed)) != 1) {
        m->seed = (uint64_t)agw_now_us(); /* only spreads the sets */
    }
    thread_memo = m;
    return m;
}

static bool
memo_wants(const char *body, size_t len)
{
    return body != NULL && len <= MEMO_BODY_MAX;
}

static uint64_t
mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 32);
}

static uint64_t
mix_bytes(uint64_t h, const char *p, size_t len)
{
    uint64_t w;

    for (; len >= 8; p += 8, len -= 8) {
        memcpy(&w, p, 8);
        h = mix(h, w);
    }
    w = 0;
    memcpy(&w, p, len);
    return mix(h, w);
}

static _Thread_local bool forced;
static _Thread_local uint64_t forced_hash;

void
agw_parse_memo_force_hash(bool force, unsigned long long hash)
{
    forced = force;
    forced_hash = hash;
}

static uint64_t
memo_hash(const struct memo *m, const char *business_id, bool allow_private,
          const char *body, size_t len)
{
    uint64_t h;

    if (forced) {
        return forced_hash;
    }
    h = mix(m->seed, (uint64_t)len << 1 | allow_private);
    h = mix_bytes(h, business_id, 36);
    h = mix_bytes(h, body, len);
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 32);
}

static struct memo_entry **
memo_set(struct memo *m, uint64_t hash)
{
    return &m->slots[(hash >> 16 & (MEMO_SETS - 1)) * MEMO_WAYS];
}

static bool
memo_matches(const struct memo_entry *e, uint64_t hash, const char *business_id,
             bool allow_private, const char *body, size_t len)
{
    return e != NULL && e->hash == hash && e->body_len == len &&
           e->allow_private == allow_private &&
           memcmp(e->business_id, business_id, sizeof(e->business_id)) == 0 &&
           memcmp((const char *)e->value + e->value_len, body, len) == 0;
}

int
agw_parse_memo_get(const char *business_id, bool allow_private,
                   const char *body, size_t len, const void **value,
                   uint64_t *hash)
{
    struct memo *m;
    struct memo_entry **set;
    struct memo_entry *e;
    size_t i;

    *hash = 0;
    if (!memo_wants(body, len)) {
        return 0;
    }
    m = this_thread_memo();
    if (m == NULL) {
        return -1;
    }
    *hash = memo_hash(m, business_id, allow_private, body, len);
    set = memo_set(m, *hash);
    m->clock++;
    for (i = 0; i < MEMO_WAYS; i++) {
        e = set[i];
        if (!memo_matches(e, *hash, business_id, allow_private, body, len)) {
            continue;
        }
        e->used = m->clock;
        *value = e->value;
        return 1;
    }
    return 0;
}

static void
memo_drop(struct memo *m, struct memo_entry **slot)
{
    if (*slot != NULL) {
        m->bytes -= (*slot)->size;
        free(*slot);
        *slot = NULL;
    }
}

/* The way of SET to fill: an empty one, else the least recently used. */
static struct memo_entry **
memo_victim(struct memo_entry **set)
{
    struct memo_entry **victim = &set[0];
    size_t i;

    for (i = 0; i < MEMO_WAYS; i++) {
        if (set[i] == NULL) {
            return &set[i];
        }
        if (set[i]->used < (*victim)->used) {
            victim = &set[i];
        }
    }
    return victim;
}

void *
agw_parse_memo_put(uint64_t hash, const char *business_id, bool allow_private,
                   const char *body, size_t len, size_t value_len)
{
    struct memo *m;
    struct memo_entry **slot;
    struct memo_entry *e;
    size_t size, tries;

    m = memo_wants(body, len) ? this_thread_memo() : NULL;
    if (m == NULL) {
        return NULL;
    }
    slot = memo_victim(memo_set(m, hash));
    size = sizeof(*e) + value_len + len;
    memo_drop(m, slot);
    /* Over budget: give up other entries, in slot order, a few at most. */
    for (tries = 0; m->bytes + size > MEMO_BYTES && tries < 8; tries++) {
        memo_drop(m, &m->slots[m->rover]);
        m->rover = (m->rover + 1) % MEMO_SLOTS;
    }
    if (m->bytes + size > MEMO_BYTES) {
        return NULL;
    }
    e = malloc(size);
    if (e == NULL) {
        return NULL;
    }
    e->hash = hash;
    e->used = m->clock;
    e->size = size;
    e->body_len = len;
    e->value_len = value_len;
    e->allow_private = allow_private;
    memcpy(e->business_id, business_id, sizeof(e->business_id));
    memcpy((char *)e->value + value_len, body, len);
    m->bytes += size;
    *slot = e;
    return e->value;
}
