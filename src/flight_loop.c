/*
 * flight_loop.c - in-process coalescing (SPEC §3): a table (table.c) of
 * flights by dedupe key, each with the FIFO of requests waiting for its
 * answer.
 */
#include "flight_loop.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/queue.h>

#include "table.h"

struct waiter {
    STAILQ_ENTRY(waiter) link;
    agw_flight_loop_cb cb;
    void *arg;
};

STAILQ_HEAD(waiter_list, waiter);

struct flight {
    struct waiter_list waiters; /* in join order */
};

struct agw_flight_loop {
    struct agw_table *flights; /* key -> struct flight */
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

static void
flight_free(struct flight *f)
{
    struct waiter *w;

    while ((w = STAILQ_FIRST(&f->waiters)) != NULL) {
        STAILQ_REMOVE_HEAD(&f->waiters, link);
        free(w);
    }
    free(f);
}

struct agw_flight_loop *
agw_flight_loop_new(void)
{
    struct agw_flight_loop *loop = calloc(1, sizeof(*loop));

    if (loop == NULL) {
        return NULL;
    }
    loop->flights = agw_table_new(0);
    if (loop->flights == NULL) {
        free(loop);
        return NULL;
    }
    return loop;
}

void
agw_flight_loop_free(struct agw_flight_loop *loop)
{
    struct agw_table_iter it;
    void *f;

    if (loop == NULL) {
        return;
    }
    agw_table_iter_init(loop->flights, &it);
    while (agw_table_next(&it, NULL, &f)) {
        flight_free(f);
    }
    agw_table_free(loop->flights);
    free(loop);
}

bool
agw_flight_loop_join(struct agw_flight_loop *loop, const char *key,
                     agw_flight_loop_cb cb, void *arg)
{
    struct flight *f = agw_table_get(loop->flights, key);
    struct waiter *w;

    if (f != NULL) {
        w = checked(calloc(1, sizeof(*w)));
        w->cb = cb;
        w->arg = arg;
        STAILQ_INSERT_TAIL(&f->waiters, w, link);
        return false;
    }
    f = checked(calloc(1, sizeof(*f)));
    STAILQ_INIT(&f->waiters);
    if (!agw_table_put(loop->flights, key, f)) {
        checked(NULL);
    }
    return true;
}

size_t
agw_flight_loop_finish(struct agw_flight_loop *loop, const char *key,
                       const struct agw_response *resp)
{
    struct flight *f = agw_table_remove(loop->flights, key);
    struct waiter_list waiters;
    struct waiter *w;
    size_t served = 0;

    if (f == NULL) {
        return 0;
    }
    /*
     * The flight is out of the table, and only its waiter list is kept,
     * before any callback runs: a callback may join KEY again (a new
     * flight), finish that one, or free the whole table.
     */
    STAILQ_INIT(&waiters);
    STAILQ_CONCAT(&waiters, &f->waiters);
    free(f);
    while ((w = STAILQ_FIRST(&waiters)) != NULL) {
        agw_flight_loop_cb cb = w->cb;
        void *arg = w->arg;

        STAILQ_REMOVE_HEAD(&waiters, link);
        free(w);
        cb(resp, arg);
        served++;
    }
    return served;
}

size_t
agw_flight_loop_flights(const struct agw_flight_loop *loop)
{
    return agw_table_count(loop->flights);
}
