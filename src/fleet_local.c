/*
 * fleet_local.c - in-process single flight across worker threads: one
 * board of flights under a mutex, and an inbox per worker through which
 * outcomes reach the worker's own loop (evhttp is not thread-safe, so a
 * waiter is always answered by the thread that owns its request).
 */
#include "fleet_local.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "fleet.h"
#include "log.h"
#include "metrics.h"
#include "reply.h"

#define BOARD_BUCKETS 1024

enum wait_state {
    W_WAITING,   /* on a flight's list */
    W_READY,     /* outcome decided, in its fleet's inbox */
    W_CANCELLED, /* in the inbox, but nobody wants the outcome any more */
};

struct local_fleet;

struct local_wait {
    struct local_fleet *fleet; /* whose loop runs CB */
    agw_fleet_cb cb;
    void *arg;
    enum wait_state state;
    enum agw_fleet_outcome outcome;
    struct agw_response resp; /* ANSWER: a copy, owned */
    struct local_wait *next;  /* flight's waiters, or the inbox */
    char key[];
};

struct flight {
    struct flight *chain;
    struct local_fleet *holder;
    struct local_wait *waiters; /* in join order */
    char key[];
};

/* Everything here is guarded by LOCK, inboxes included. */
struct agw_flights {
    pthread_mutex_t lock;
    struct flight *buckets[BOARD_BUCKETS];
};

struct local_fleet {
    struct agw_fleet base; /* first: the ops receive &base */
    struct agw_flights *board;
    struct event *wake; /* made active (from any thread) to read the inbox */
    struct local_wait *inbox, *inbox_tail;
};

static const struct agw_fleet_ops local_fleet_ops;

static struct local_fleet *
local_of(struct agw_fleet *fleet)
{
    return (struct local_fleet *)fleet;
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

static struct flight **
slot_of(struct agw_flights *board, const char *key)
{
    uint64_t h = UINT64_C(14695981039346656037);
    struct flight **p;

    for (const char *s = key; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
    }
    p = &board->buckets[h % BOARD_BUCKETS];
    while (*p != NULL && strcmp((*p)->key, key) != 0) {
        p = &(*p)->chain;
    }
    return p;
}

/* Under the lock: W's outcome is decided; its own loop will deliver it. */
static void
post(struct local_wait *w, enum agw_fleet_outcome outcome,
     const struct agw_response *resp)
{
    struct local_fleet *f = w->fleet;

    w->state = W_READY;
    w->outcome = outcome;
    if (resp != NULL) {
        agw_response_copy(&w->resp, resp);
    }
    w->next = NULL;
    if (f->inbox_tail != NULL) {
        f->inbox_tail->next = w;
    } else {
        f->inbox = w;
    }
    f->inbox_tail = w;
    event_active(f->wake, EV_READ, 0);
}

/* Under the lock: the flight at SLOT loses its holder. The first waiter
 * takes over (as after an expired Redis claim); none left ends it. */
static void
hand_over(struct flight **slot)
{
    struct flight *fl = *slot;
    struct local_wait *w = fl->waiters;

    if (w == NULL) {
        *slot = fl->chain;
        free(fl);
        return;
    }
    fl->waiters = w->next;
    fl->holder = w->fleet;
    agw_metrics_gauge_add(AGW_M_SINGLEFLIGHT_WAITERS, -1);
    post(w, AGW_FLEET_LEAD, NULL);
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
    struct local_fleet *f = arg;
    struct local_wait *w, *next;

    pthread_mutex_lock(&f->board->lock);
    w = f->inbox;
    f->inbox = f->inbox_tail = NULL;
    pthread_mutex_unlock(&f->board->lock);
    for (; w != NULL; w = next) {
        next = w->next;
        if (w->state == W_READY) {
            w->cb(w->outcome, w->outcome == AGW_FLEET_ANSWER ? &w->resp : NULL,
                  w->arg);
        }
        wait_free(w);
    }
}

static struct agw_fleet_wait *
local_join(struct agw_fleet *fleet, const char *key, agw_fleet_cb cb, void *arg)
{
    struct local_fleet *f = local_of(fleet);
    size_t klen = strlen(key);
    struct local_wait *w = checked(calloc(1, sizeof(*w) + klen + 1));
    struct flight **slot, *fl;
    struct local_wait **tail;

    *w = (struct local_wait){.fleet = f, .cb = cb, .arg = arg};
    memcpy(w->key, key, klen + 1);
    pthread_mutex_lock(&f->board->lock);
    slot = slot_of(f->board, key);
    if (*slot == NULL) {
        fl = checked(calloc(1, sizeof(*fl) + klen + 1));
        fl->holder = f;
        memcpy(fl->key, key, klen + 1);
        *slot = fl;
        post(w, AGW_FLEET_LEAD, NULL);
    } else {
        for (tail = &(*slot)->waiters; *tail != NULL; tail = &(*tail)->next) {
        }
        *tail = w;
        /* Waiting on another worker's call, as a single-flight waiter
         * waits on its own worker's. */
        agw_metrics_gauge_add(AGW_M_SINGLEFLIGHT_WAITERS, 1);
    }
    pthread_mutex_unlock(&f->board->lock);
    return (struct agw_fleet_wait *)w;
}

/* Under the lock: takes W off its flight's list, if it is on one. */
static bool
unlink_waiter(struct agw_flights *board, struct local_wait *w)
{
    struct flight *fl = *slot_of(board, w->key);
    struct local_wait **p;

    if (fl == NULL) {
        return false;
    }
    for (p = &fl->waiters; *p != NULL && *p != w; p = &(*p)->next) {
    }
    if (*p == NULL) {
        return false;
    }
    *p = w->next;
    agw_metrics_gauge_add(AGW_M_SINGLEFLIGHT_WAITERS, -1);
    return true;
}

static void
local_cancel(struct agw_fleet *fleet, struct agw_fleet_wait *handle)
{
    struct local_fleet *f = local_of(fleet);
    struct local_wait *w = (struct local_wait *)handle;
    struct flight **slot;
    bool unlinked = false;

    pthread_mutex_lock(&f->board->lock);
    if (w->state == W_WAITING) {
        unlinked = unlink_waiter(f->board, w);
    } else if (w->state == W_READY) {
        /* Still in the inbox: on_wake frees it. A claim it was handed
         * must not be left without a holder. */
        w->state = W_CANCELLED;
        slot = slot_of(f->board, w->key);
        if (w->outcome == AGW_FLEET_LEAD && *slot != NULL &&
            (*slot)->holder == f) {
            hand_over(slot);
        }
    }
    pthread_mutex_unlock(&f->board->lock);
    if (unlinked) {
        wait_free(w);
    }
}

static void
local_renew(struct agw_fleet *fleet, const char *key, int ttl_ms)
{
    /* In-process claims do not expire. */
}

static void
local_release(struct agw_fleet *fleet, const char *key,
              const struct agw_response *resp)
{
    struct local_fleet *f = local_of(fleet);
    struct flight **slot, *fl;
    struct local_wait *w, *next;

    pthread_mutex_lock(&f->board->lock);
    slot = slot_of(f->board, key);
    fl = *slot;
    if (fl != NULL && fl->holder == f) {
        *slot = fl->chain;
        for (w = fl->waiters; w != NULL; w = next) {
            next = w->next;
            agw_metrics_gauge_add(AGW_M_SINGLEFLIGHT_WAITERS, -1);
            post(w, AGW_FLEET_ANSWER, resp);
        }
        free(fl);
    }
    pthread_mutex_unlock(&f->board->lock);
}

static void
local_abandon(struct agw_fleet *fleet, const char *key)
{
    struct local_fleet *f = local_of(fleet);
    struct flight **slot;

    pthread_mutex_lock(&f->board->lock);
    slot = slot_of(f->board, key);
    if (*slot != NULL && (*slot)->holder == f) {
        hand_over(slot);
    }
    pthread_mutex_unlock(&f->board->lock);
}

/* Under the lock: F's waiters leave every flight, F's claims pass on. */
static void
detach(struct local_fleet *f)
{
    for (size_t i = 0; i < BOARD_BUCKETS; i++) {
        struct flight **slot = &f->board->buckets[i];

        while (*slot != NULL) {
            struct flight *fl = *slot;
            struct local_wait **p = &fl->waiters;

            while (*p != NULL) {
                struct local_wait *w = *p;

                if (w->fleet == f) {
                    *p = w->next;
                    agw_metrics_gauge_add(AGW_M_SINGLEFLIGHT_WAITERS, -1);
                    wait_free(w);
                } else {
                    p = &w->next;
                }
            }
            if (fl->holder == f) {
                hand_over(slot);
            }
            if (*slot == fl) {
                slot = &fl->chain;
            }
        }
    }
}

static void
local_free(struct agw_fleet *fleet)
{
    struct local_fleet *f = local_of(fleet);
    struct local_wait *w, *next;

    pthread_mutex_lock(&f->board->lock);
    detach(f);
    w = f->inbox;
    f->inbox = f->inbox_tail = NULL;
    pthread_mutex_unlock(&f->board->lock);
    for (; w != NULL; w = next) {
        next = w->next;
        wait_free(w);
    }
    event_free(f->wake);
    free(f);
}

static const struct agw_fleet_ops local_fleet_ops = {
    .join = local_join,
    .cancel = local_cancel,
    .renew = local_renew,
    .release = local_release,
    .abandon = local_abandon,
    .free = local_free,
};

struct agw_fleet *
agw_fleet_local_new(struct event_base *base, struct agw_flights *board)
{
    struct local_fleet *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return NULL;
    }
    f->base.ops = &local_fleet_ops;
    f->board = board;
    f->wake = event_new(base, -1, 0, on_wake, f);
    if (f->wake == NULL) {
        free(f);
        return NULL;
    }
    return &f->base;
}

struct agw_flights *
agw_flights_new(void)
{
    struct agw_flights *board = calloc(1, sizeof(*board));

    if (board != NULL && pthread_mutex_init(&board->lock, NULL) != 0) {
        free(board);
        board = NULL;
    }
    return board;
}

void
agw_flights_free(struct agw_flights *board)
{
    if (board == NULL) {
        return;
    }
    pthread_mutex_destroy(&board->lock);
    free(board);
}
