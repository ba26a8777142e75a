/*
 * singleflight.c - in-process coalescing (SPEC §3): a table of flights by
 * dedupe key, each with the FIFO of requests waiting for its answer.
 */
#include "singleflight.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_BUCKETS 16

struct waiter {
    struct waiter *next;
    agw_sf_cb cb;
    void *arg;
};

struct flight {
    struct flight *chain; /* next in the same bucket */
    uint64_t hash;
    char *key; /* owned */
    struct waiter *head;
    struct waiter *tail;
};

struct agw_sf {
    struct flight **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
};

/*
 * A waiter that cannot be queued would never be answered, and there is
 * no way to tell the caller: stop loudly, as for any allocation the
 * daemon cannot do without.
 */
static void *
checked(void *p)
{
    if (p == NULL) {
        fputs("asset-gateway: singleflight: out of memory\n", stderr);
        abort();
    }
    return p;
}

static uint64_t
fnv1a(const char *s)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static struct flight **
slot_of(const struct agw_sf *sf, const char *key, uint64_t hash)
{
    struct flight **p = &sf->buckets[hash & (sf->nbuckets - 1)];

    while (*p != NULL && ((*p)->hash != hash || strcmp((*p)->key, key) != 0)) {
        p = &(*p)->chain;
    }
    return p;
}

static void
free_waiters(struct waiter *w)
{
    while (w != NULL) {
        struct waiter *next = w->next;

        free(w);
        w = next;
    }
}

static void
flight_free(struct flight *f)
{
    free_waiters(f->head);
    free(f->key);
    free(f);
}

static void
grow(struct agw_sf *sf)
{
    size_t n = sf->nbuckets * 2;
    struct flight **b = calloc(n, sizeof(*b));

    if (b == NULL) {
        return; /* longer chains still work */
    }
    for (size_t i = 0; i < sf->nbuckets; i++) {
        struct flight *f = sf->buckets[i];

        while (f != NULL) {
            struct flight *chain = f->chain;

            f->chain = b[f->hash & (n - 1)];
            b[f->hash & (n - 1)] = f;
            f = chain;
        }
    }
    free(sf->buckets);
    sf->buckets = b;
    sf->nbuckets = n;
}

struct agw_sf *
agw_sf_new(void)
{
    struct agw_sf *sf = calloc(1, sizeof(*sf));

    if (sf == NULL) {
        return NULL;
    }
    sf->buckets = calloc(INITIAL_BUCKETS, sizeof(*sf->buckets));
    if (sf->buckets == NULL) {
        free(sf);
        return NULL;
    }
    sf->nbuckets = INITIAL_BUCKETS;
    return sf;
}

void
agw_sf_free(struct agw_sf *sf)
{
    if (sf == NULL) {
        return;
    }
    for (size_t i = 0; i < sf->nbuckets; i++) {
        struct flight *f = sf->buckets[i];

        while (f != NULL) {
            struct flight *chain = f->chain;

            flight_free(f);
            f = chain;
        }
    }
    free(sf->buckets);
    free(sf);
}

static void
enqueue(struct flight *f, agw_sf_cb cb, void *arg)
{
    struct waiter *w = checked(calloc(1, sizeof(*w)));

    w->cb = cb;
    w->arg = arg;
    if (f->tail != NULL) {
        f->tail->next = w;
    } else {
        f->head = w;
    }
    f->tail = w;
}

bool
agw_sf_join(struct agw_sf *sf, const char *key, agw_sf_cb cb, void *arg)
{
    uint64_t hash = fnv1a(key);
    struct flight **slot = slot_of(sf, key, hash);
    struct flight *f = *slot;

    if (f != NULL) {
        enqueue(f, cb, arg);
        return false;
    }
    f = checked(calloc(1, sizeof(*f)));
    f->key = checked(strdup(key));
    f->hash = hash;
    *slot = f;
    sf->count++;
    if (sf->count > sf->nbuckets - sf->nbuckets / 4) {
        grow(sf);
    }
    return true;
}

size_t
agw_sf_finish(struct agw_sf *sf, const char *key,
              const struct agw_response *resp)
{
    struct flight **slot = slot_of(sf, key, fnv1a(key));
    struct flight *f = *slot;
    struct waiter *w;
    size_t served = 0;

    if (f == NULL) {
        return 0;
    }
    /*
     * Take the flight out of the table and keep only its waiter list
     * before any callback runs: a callback may join KEY again (a new
     * flight), finish that one, or free the whole table.
     */
    *slot = f->chain;
    sf->count--;
    w = f->head;
    f->head = NULL;
    flight_free(f);
    while (w != NULL) {
        struct waiter *next = w->next;
        agw_sf_cb cb = w->cb;
        void *arg = w->arg;

        free(w);
        cb(resp, arg);
        served++;
        w = next;
    }
    return served;
}

size_t
agw_sf_flights(const struct agw_sf *sf)
{
    return sf->count;
}
