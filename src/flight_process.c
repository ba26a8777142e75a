/*
 * flight_process.c - in-process single flight across worker threads: one
 * board of flights (a table.c table) under the board's own mutex, and a
 * TAILQ inbox per worker through which outcomes reach the worker's own
 * loop (evhttp is not thread-safe, so a waiter is always answered by the
 * thread that owns its request).
 */
#include "flight_process.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "flight_tier.h"
#include "log.h"
#include "metrics.h"
#include "reply.h"
#include "table.h"

enum wait_state {
    W_WAITING,   /* on its flight's list */
    W_READY,     /* outcome decided, in its fleet's inbox */
    W_CANCELLED, /* in the inbox, but nobody wants the outcome any more */
};

struct process_tier;

struct local_wait {
    TAILQ_ENTRY(local_wait) link; /* its flight's waiters, or the inbox */
    struct process_tier *fleet;   /* whose loop runs CB */
    agw_flight_tier_cb cb;
    void *arg;
    enum wait_state state;
    enum agw_flight_tier_outcome outcome;
    struct agw_response resp; /* ANSWER: a copy, owned */
    char key[];
};

TAILQ_HEAD(wait_list, local_wait);

struct flight {
    struct process_tier *holder;
    struct wait_list waiters; /* in join order */
};

/* Shared by the workers' threads: LOCK guards the table and every
 * fleet's inbox. */
struct agw_flight_board {
    pthread_mutex_t lock;
    struct agw_table *flights; /* key -> struct flight */
};

struct process_tier {
    struct agw_flight_tier base; /* first: the ops receive &base */
    struct agw_flight_board *board;
    struct event *wake; /* made active (from any thread) to read the inbox */
    struct wait_list inbox;
};

static const struct agw_flight_tier_ops process_tier_ops;

static struct process_tier *
process_of(struct agw_flight_tier *fleet)
{
    return (struct process_tier *)fleet;
}

static void *
checked(void *p)
{
    if (p == NULL) {
        log_error("fleet: out of memory");
        abort();
    }
    return p;
}

/* Under the lock: W's outcome is decided; its own loop will deliver it. */
static void
post(struct local_wait *w, enum agw_flight_tier_outcome outcome,
     const struct agw_response *resp)
{
    struct process_tier *f = w->fleet;

    w->state = W_READY;
    w->outcome = outcome;
    if (resp != NULL) {
        agw_response_copy(&w->resp, resp);
    }
    TAILQ_INSERT_TAIL(&f->inbox, w, link);
    event_active(f->wake, EV_READ, 0);
}

/* Under the lock: the flight FL for KEY loses its holder. The first
 * waiter takes over (as after an expired Redis claim); none left ends
 * it. */
static void
hand_over(struct agw_flight_board *board, const char *key, struct flight *fl)
{
    struct local_wait *w = TAILQ_FIRST(&fl->waiters);

    if (w == NULL) {
        agw_table_remove(board->flights, key);
        free(fl);
        return;
    }
    TAILQ_REMOVE(&fl->waiters, w, link);
    fl->holder = w->fleet;
    agw_metrics_gauge_add(AGW_M_SINGLEFLIGHT_WAITERS, -1);
    post(w, AGW_TIER_LEAD, NULL);
}

/* Under the lock: the flight for KEY if F holds it, else NULL. */
static struct flight *
held_by(struct process_tier *f, const char *key)
{
    struct flight *fl = agw_table_get(f->board->flights, key);

    return fl != NULL && fl->holder == f ? fl : NULL;
}

static void
wait_free(struct local_wait *w)
{
    agw_response_clear(&w->resp);
    free(w);
}

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct process_tier *f = arg;
    struct wait_list ready = TAILQ_HEAD_INITIALIZER(ready);
    struct local_wait *w;

    pthread_mutex_lock(&f->board->lock);
    TAILQ_CONCAT(&ready, &f->inbox, link);
    pthread_mutex_unlock(&f->board->lock);
    while ((w = TAILQ_FIRST(&ready)) != NULL) {
        TAILQ_REMOVE(&ready, w, link);
        if (w->state == W_READY) {
            w->cb(w->outcome, w->outcome == AGW_TIER_ANSWER ? &w->resp : NULL,
                  w->arg);
        }
        wait_free(w);
    }
}

static struct agw_flight_wait *
local_join(struct agw_flight_tier *fleet, const char *key,
           agw_flight_tier_cb cb, void *arg)
{
    struct process_tier *f = process_of(fleet);
    size_t klen = strlen(key);
    struct local_wait *w = checked(calloc(1, sizeof(*w) + klen + 1));
    struct flight *fl;

    *w = (struct local_wait){.fleet = f, .cb = cb, .arg = arg};
    memcpy(w->key, key, klen + 1);
    pthread_mutex_lock(&f->board->lock);
    fl = agw_table_get(f->board->flights, key);
    if (fl == NULL) {
        fl = checked(calloc(1, sizeof(*fl)));
        fl->holder = f;
        TAILQ_INIT(&fl->waiters);
        if (!agw_table_put(f->board->flights, key, fl)) {
            checked(NULL);
        }
        post(w, AGW_TIER_LEAD, NULL);
    } else {
        TAILQ_INSERT_TAIL(&fl->waiters, w, link);
        /* Waiting on another worker's call, as a single-flight waiter
         * waits on its own worker's. */
        agw_metrics_gauge_add(AGW_M_SINGLEFLIGHT_WAITERS, 1);
    }
    pthread_mutex_unlock(&f->board->lock);
    return (struct agw_flight_wait *)w;
}

static void
local_cancel(struct agw_flight_tier *fleet, struct agw_flight_wait *handle)
{
    struct process_tier *f = process_of(fleet);
    struct local_wait *w = (struct local_wait *)handle;
    struct flight *fl;
    bool unlinked = false;

    pthread_mutex_lock(&f->board->lock);
    if (w->state == W_WAITING) {
        /* Waiting means on the list of its key's flight. */
        fl = agw_table_get(f->board->flights, w->key);
        TAILQ_REMOVE(&fl->waiters, w, link);
        agw_metrics_gauge_add(AGW_M_SINGLEFLIGHT_WAITERS, -1);
        unlinked = true;
    } else if (w->state == W_READY) {
        /* Still in the inbox: on_wake frees it. A claim it was handed
         * must not be left without a holder. */
        w->state = W_CANCELLED;
        if (w->outcome == AGW_TIER_LEAD && (fl = held_by(f, w->key)) != NULL) {
            hand_over(f->board, w->key, fl);
        }
    }
    pthread_mutex_unlock(&f->board->lock);
    if (unlinked) {
        wait_free(w);
    }
}

static void
local_renew(struct agw_flight_tier *fleet, const char *key, int ttl_ms)
{
    /* In-process claims do not expire. */
}

static void
local_release(struct agw_flight_tier *fleet, const char *key,
              const struct agw_response *resp)
{
    struct process_tier *f = process_of(fleet);
    struct flight *fl;
    struct local_wait *w;

    pthread_mutex_lock(&f->board->lock);
    fl = held_by(f, key);
    if (fl != NULL) {
        agw_table_remove(f->board->flights, key);
        while ((w = TAILQ_FIRST(&fl->waiters)) != NULL) {
            TAILQ_REMOVE(&fl->waiters, w, link);
            agw_metrics_gauge_add(AGW_M_SINGLEFLIGHT_WAITERS, -1);
            post(w, AGW_TIER_ANSWER, resp);
        }
        free(fl);
    }
    pthread_mutex_unlock(&f->board->lock);
}

static void
local_abandon(struct agw_flight_tier *fleet, const char *key)
{
    struct process_tier *f = process_of(fleet);
    struct flight *fl;

    pthread_mutex_lock(&f->board->lock);
    fl = held_by(f, key);
    if (fl != NULL) {
        hand_over(f->board, key, fl);
    }
    pthread_mutex_unlock(&f->board->lock);
}

/* Under the lock: F's waiters leave every flight, F's claims pass on. */
static void
detach(struct process_tier *f)
{
    struct agw_table_iter it;
    const char *key;
    void *value;

    agw_table_iter_init(f->board->flights, &it);
    while (agw_table_next(&it, &key, &value)) {
        struct flight *fl = value;
        struct local_wait *w, *next;

        for (w = TAILQ_FIRST(&fl->waiters); w != NULL; w = next) {
            next = TAILQ_NEXT(w, link);
            if (w->fleet == f) {
                TAILQ_REMOVE(&fl->waiters, w, link);
                agw_metrics_gauge_add(AGW_M_SINGLEFLIGHT_WAITERS, -1);
                wait_free(w);
            }
        }
        if (fl->holder == f) {
            hand_over(f->board, key, fl); /* may remove this entry */
        }
    }
}

static void
local_free(struct agw_flight_tier *fleet)
{
    struct process_tier *f = process_of(fleet);
    struct wait_list left = TAILQ_HEAD_INITIALIZER(left);
    struct local_wait *w;

    pthread_mutex_lock(&f->board->lock);
    detach(f);
    TAILQ_CONCAT(&left, &f->inbox, link);
    pthread_mutex_unlock(&f->board->lock);
    while ((w = TAILQ_FIRST(&left)) != NULL) {
        TAILQ_REMOVE(&left, w, link);
        wait_free(w);
    }
    event_free(f->wake);
    free(f);
}

static const struct agw_flight_tier_ops process_tier_ops = {
    .join = local_join,
    .cancel = local_cancel,
    .renew = local_renew,
    .release = local_release,
    .abandon = local_abandon,
    .free = local_free,
};

struct agw_flight_tier *
agw_flight_process_new(struct event_base *base, struct agw_flight_board *board)
{
    struct process_tier *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return NULL;
    }
    f->base.ops = &process_tier_ops;
    f->board = board;
    TAILQ_INIT(&f->inbox);
    f->wake = event_new(base, -1, 0, on_wake, f);
    if (f->wake == NULL) {
        free(f);
        return NULL;
    }
    return &f->base;
}

struct agw_flight_board *
agw_flight_board_new(void)
{
    struct agw_flight_board *board = calloc(1, sizeof(*board));

    if (board == NULL) {
        return NULL;
    }
    board->flights = agw_table_new(0);
    if (board->flights == NULL || pthread_mutex_init(&board->lock, NULL) != 0) {
        agw_table_free(board->flights);
        free(board);
        return NULL;
    }
    return board;
}

void
agw_flight_board_free(struct agw_flight_board *board)
{
    if (board == NULL) {
        return;
    }
    pthread_mutex_destroy(&board->lock);
    agw_table_free(board->flights);
    free(board);
}
