/*
 * conns.c - caller connections seen, in a pointer hash set (open
 * addressing, linear probing, backward-shift deletion: no tombstones).
 */
#include <stdint.h>
#include <stdlib.h>

#include <event2/http.h>

#include "conns.h"
#include "metrics.h"

#define MIN_SLOTS 64

struct agw_conns {
    struct evhttp_connection **slots;
    size_t nslots; /* a power of two */
    size_t count;
};

static size_t
slot_of(const struct agw_conns *set, const void *p)
{
    uint64_t h = (uint64_t)(uintptr_t)p * UINT64_C(0x9E3779B97F4A7C15);

    return (size_t)(h >> 17) & (set->nslots - 1);
}

static size_t
find(const struct agw_conns *set, const struct evhttp_connection *evcon)
{
    size_t i = slot_of(set, evcon);

    while (set->slots[i] != NULL && set->slots[i] != evcon) {
        i = (i + 1) & (set->nslots - 1);
    }
    return i;
}

static bool
grow(struct agw_conns *set)
{
    struct agw_conns bigger = {NULL, set->nslots * 2, 0};

    bigger.slots = calloc(bigger.nslots, sizeof(*bigger.slots));
    if (bigger.slots == NULL) {
        return false;
    }
    for (size_t i = 0; i < set->nslots; i++) {
        if (set->slots[i] != NULL) {
            bigger.slots[find(&bigger, set->slots[i])] = set->slots[i];
            bigger.count++;
        }
    }
    free(set->slots);
    *set = bigger;
    return true;
}

static void
remove_at(struct agw_conns *set, size_t hole)
{
    size_t i = hole;

    set->slots[hole] = NULL;
    set->count--;
    /* Pull later members of the probe run back over the hole. */
    for (;;) {
        size_t home;

        i = (i + 1) & (set->nslots - 1);
        if (set->slots[i] == NULL) {
            return;
        }
        home = slot_of(set, set->slots[i]);
        if (((i - home) & (set->nslots - 1)) >=
            ((i - hole) & (set->nslots - 1))) {
            set->slots[hole] = set->slots[i];
            set->slots[i] = NULL;
            hole = i;
        }
    }
}

static void
on_close(struct evhttp_connection *evcon, void *arg)
{
    struct agw_conns *set = arg;
    size_t i = find(set, evcon);

    if (set->slots[i] == evcon) {
        remove_at(set, i);
        agw_metrics_gauge_add(AGW_M_CONNECTIONS_OPEN, -1);
    }
}

struct agw_conns *
agw_conns_new(void)
{
    struct agw_conns *set = calloc(1, sizeof(*set));

    if (set == NULL) {
        return NULL;
    }
    set->nslots = MIN_SLOTS;
    set->slots = calloc(set->nslots, sizeof(*set->slots));
    if (set->slots == NULL) {
        free(set);
        return NULL;
    }
    return set;
}

void
agw_conns_free(struct agw_conns *set)
{
    if (set == NULL) {
        return;
    }
    free(set->slots);
    free(set);
}

bool
agw_conns_admit(struct agw_conns *set, struct evhttp_connection *evcon,
                size_t limit)
{
    size_t i;

    if (evcon == NULL) {
        return true; /* its caller is gone; the answer is dropped anyway */
    }
    i = find(set, evcon);
    if (set->slots[i] == evcon) {
        return true;
    }
    if (set->count >= limit) {
        return false;
    }
    if ((set->count + 1) * 2 > set->nslots) {
        if (!grow(set)) {
            return false;
        }
        i = find(set, evcon);
    }
    set->slots[i] = evcon;
    set->count++;
    agw_metrics_gauge_add(AGW_M_CONNECTIONS_OPEN, 1);
    evhttp_connection_set_closecb(evcon, on_close, set);
    return true;
}

size_t
agw_conns_count(const struct agw_conns *set)
{
    return set->count;
}
