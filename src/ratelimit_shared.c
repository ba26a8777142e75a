/*
 * ratelimit_shared.c - one in-process limiter shared by every worker
 * thread: each call under one mutex, the grant's callback after it.
 */
#include "ratelimit_shared.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "ratelimit.h"

struct limiter_shared {
    struct agw_limiter base; /* first: the ops receive &base */
    struct agw_limiter *inner;
    pthread_mutex_t lock;
    atomic_int refs;
};

struct grant {
    bool answered;
    bool granted;
    int64_t wait_us;
    uint64_t epoch;
};

static struct limiter_shared *
shared_of(struct agw_limiter *rl)
{
    return (struct limiter_shared *)rl;
}

static void
on_inner_grant(bool granted, int64_t wait_us, uint64_t epoch, void *arg)
{
    struct grant *g = arg;

    *g = (struct grant){true, granted, wait_us, epoch};
}

static void
shared_acquire(struct agw_limiter *rl, int64_t max_wait_us, agw_rl_cb cb,
               void *arg)
{
    struct limiter_shared *s = shared_of(rl);
    struct grant g = {false, false, 0, 0};

    pthread_mutex_lock(&s->lock);
    s->inner->ops->acquire(s->inner, max_wait_us, on_inner_grant, &g);
    pthread_mutex_unlock(&s->lock);
    /* INNER decides before acquire() returns (agw_limiter_shared_new). */
    cb(g.answered && g.granted, g.wait_us, g.epoch, arg);
}

static void
shared_pause(struct agw_limiter *rl, int64_t pause_us)
{
    struct limiter_shared *s = shared_of(rl);

    pthread_mutex_lock(&s->lock);
    s->inner->ops->pause(s->inner, pause_us);
    pthread_mutex_unlock(&s->lock);
}

static int64_t
shared_paused_until(struct agw_limiter *rl)
{
    struct limiter_shared *s = shared_of(rl);
    int64_t until;

    pthread_mutex_lock(&s->lock);
    until = s->inner->ops->paused_until(s->inner);
    pthread_mutex_unlock(&s->lock);
    return until;
}

static int64_t
shared_leave(struct agw_limiter *rl)
{
    struct limiter_shared *s = shared_of(rl);
    int64_t hold_us = 0;

    pthread_mutex_lock(&s->lock);
    if (s->inner->ops->leave != NULL) {
        hold_us = s->inner->ops->leave(s->inner);
    }
    pthread_mutex_unlock(&s->lock);
    return hold_us;
}

static void
shared_left(struct agw_limiter *rl, int64_t sent_us)
{
    struct limiter_shared *s = shared_of(rl);

    pthread_mutex_lock(&s->lock);
    if (s->inner->ops->left != NULL) {
        s->inner->ops->left(s->inner, sent_us);
    }
    pthread_mutex_unlock(&s->lock);
}

static void
shared_state(struct agw_limiter *rl, int64_t max_wait_us,
             struct agw_rl_state *out)
{
    struct limiter_shared *s = shared_of(rl);

    pthread_mutex_lock(&s->lock);
    s->inner->ops->state(s->inner, max_wait_us, out);
    pthread_mutex_unlock(&s->lock);
}

static void
shared_reconfigure(struct agw_limiter *rl, double rate, int burst)
{
    struct limiter_shared *s = shared_of(rl);

    pthread_mutex_lock(&s->lock);
    s->inner->ops->reconfigure(s->inner, rate, burst);
    pthread_mutex_unlock(&s->lock);
}

static void
shared_destroy(struct agw_limiter *rl)
{
    struct limiter_shared *s = shared_of(rl);

    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    s->inner->ops->destroy(s->inner);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static const struct agw_limiter_ops shared_ops = {
    .name = "local",
    .acquire = shared_acquire,
    .pause = shared_pause,
    .paused_until = shared_paused_until,
    .leave = shared_leave,
    .left = shared_left,
    .state = shared_state,
    .reconfigure = shared_reconfigure,
    .destroy = shared_destroy,
};

struct agw_limiter *
agw_limiter_shared_new(struct agw_limiter *inner)
{
    struct limiter_shared *s;

    if (inner == NULL) {
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL || pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        inner->ops->destroy(inner);
        return NULL;
    }
    s->base.ops = &shared_ops;
    s->inner = inner;
    atomic_init(&s->refs, 1);
    return &s->base;
}

struct agw_limiter *
agw_limiter_shared_ref(struct agw_limiter *rl)
{
    atomic_fetch_add_explicit(&shared_of(rl)->refs, 1, memory_order_relaxed);
    return rl;
}
