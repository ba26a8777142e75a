/*
 * limiter_process.c - the in-process limiter (SPEC §4): a GCRA on the
 * monotonic clock, used alone or as the fallback while Redis is away;
 * with its own mutex when the worker threads share it.
 */
#include "limiter.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "gcra.h"
#include "log.h"
#include "util.h"

/*
 * The limiter decides when a call leaves; Connectly counts when it
 * arrives. Timer lateness and the network can bunch arrivals up, so grants
 * are spaced to leave this much slack in every second (about 1% of rate).
 */
#define ARRIVAL_JITTER_MARGIN_US 10000
#define WINDOW_US (1000000 + ARRIVAL_JITTER_MARGIN_US)
/* A guard that cannot decide yet (every recent call still in transit)
 * looks again this much later. */
#define TRANSIT_RECHECK_US 2000

/* A caller's cap (SPEC §11), by its name in the clients file. */
struct cap {
    char *name;
    double rate;
    struct agw_gcra gcra; /* burst 0 */
    struct agw_gcra_queue queue;
};

struct limiter_process {
    struct agw_limiter base; /* first: the ops receive &base */
    bool locked;             /* LOCK is used */
    atomic_int refs;         /* destroy() drops one; the last frees */
    pthread_mutex_t lock;    /* when LOCKED, guards everything below */
    struct agw_gcra gcra;
    int64_t paused_until_us; /* agw_now_us() time; 0 when never paused */
    /* The last `cap` real departures, oldest first from `head`. They are
     * reported as they happen, so they arrive in time order. */
    int64_t *departed;
    int cap, count, head;
    int in_transit; /* let go by leave(), not yet reported by left() */
    struct agw_gcra_queue batch_queue;
    /* Callers' caps: one per name asked with a cap, bounded by the names
     * the clients files gave. */
    struct cap *caps;
    size_t ncaps;
};

static struct limiter_process *
process_of(struct agw_limiter *rl)
{
    return (struct limiter_process *)rl;
}

static void
lock(struct limiter_process *l)
{
    if (l->locked) {
        pthread_mutex_lock(&l->lock);
    }
}

static void
unlock(struct limiter_process *l)
{
    if (l->locked) {
        pthread_mutex_unlock(&l->lock);
    }
}

/* Decided before it returns; CB runs with the lock released. */
static void
process_acquire(struct agw_limiter *rl, int64_t max_wait_us, agw_limiter_cb cb,
                void *arg)
{
    struct limiter_process *l = process_of(rl);
    int64_t wait_us = 0;
    bool granted;

    lock(l);
    /* A pause already raised the TAT, so no grant starts before it. */
    granted = agw_gcra_reserve(&l->gcra, agw_now_us(), max_wait_us, &wait_us);
    unlock(l);
    cb(granted, wait_us, 0, arg);
}

/* Locked: the cap of NAME at RATE (found, made, or its rate updated
 * keeping its schedule); NULL when memory runs out (no cap then). */
static struct cap *
cap_of(struct limiter_process *l, const char *name, double rate)
{
    struct cap *c = NULL, *more;
    int64_t tat;

    for (size_t i = 0; i < l->ncaps && c == NULL; i++) {
        if (strcmp(l->caps[i].name, name) == 0) {
            c = &l->caps[i];
        }
    }
    if (c == NULL) {
        more = realloc(l->caps, (l->ncaps + 1) * sizeof(*more));
        if (more == NULL) {
            return NULL;
        }
        l->caps = more;
        c = &l->caps[l->ncaps];
        *c = (struct cap){.name = strdup(name)};
        if (c->name == NULL) {
            return NULL;
        }
        l->ncaps++;
    }
    if (c->rate != rate) {
        tat = c->gcra.tat_us;
        agw_gcra_init_margin(&c->gcra, rate, 0, ARRIVAL_JITTER_MARGIN_US);
        c->gcra.tat_us = tat;
        c->rate = rate;
    }
    return c;
}

/* The same arithmetic as the fleet's script (agw_gcra_reserve_as()), on
 * this process's schedule. */
static void
process_acquire_as(struct agw_limiter *rl, struct agw_limiter_ask *ask,
                   agw_limiter_cb cb, void *arg)
{
    struct limiter_process *l = process_of(rl);
    struct agw_gcra_ask g = {ask->max_wait_us, ask->batch_backlog_us,
                             ask->retry};
    struct cap *cap = NULL;
    int64_t wait_us = 0;
    bool granted;

    lock(l);
    if (ask->caller != NULL && ask->max_rate > 0) {
        cap = cap_of(l, ask->caller, ask->max_rate);
    }
    granted = agw_gcra_reserve_as(
        &l->gcra, &l->batch_queue, cap != NULL ? &cap->gcra : NULL,
        cap != NULL ? &cap->queue : NULL, agw_now_us(), &g, &wait_us);
    ask->cap_tat_us = cap != NULL ? cap->gcra.tat_us : 0;
    unlock(l);
    cb(granted, wait_us, 0, arg);
}

static void
process_pause(struct agw_limiter *rl, int64_t pause_us)
{
    struct limiter_process *l = process_of(rl);
    int64_t now = agw_now_us();

    if (pause_us < 0) {
        pause_us = 0;
    }
    lock(l);
    agw_gcra_pause(&l->gcra, now, pause_us);
    if (now + pause_us > l->paused_until_us) {
        l->paused_until_us = now + pause_us;
    }
    unlock(l);
}

static int64_t
process_paused_until(struct agw_limiter *rl)
{
    struct limiter_process *l = process_of(rl);
    int64_t until;

    lock(l);
    until = l->paused_until_us;
    unlock(l);
    return until > agw_now_us() ? until : 0;
}

/* The N-th most recent real departure (N >= 1, N <= count). */
static int64_t
nth_latest(const struct limiter_process *l, int n)
{
    return l->departed[(l->head + l->count - n) % l->cap];
}

/* Locked: leave(). */
static int64_t
hold_for(struct limiter_process *l)
{
    int need = l->cap - l->in_transit;
    int64_t now = agw_now_us();
    int64_t allowed_at;

    /* Sending now is fine when the cap-th most recent departure, counting
     * calls in transit as the most recent, is a whole window ago. */
    if (need <= 0) {
        return TRANSIT_RECHECK_US;
    }
    if (l->count >= need) {
        allowed_at = nth_latest(l, need) + WINDOW_US;
        if (allowed_at > now) {
            return allowed_at - now;
        }
    }
    l->in_transit++;
    return 0;
}

static int64_t
process_leave(struct agw_limiter *rl)
{
    struct limiter_process *l = process_of(rl);
    int64_t hold_us;

    lock(l);
    hold_us = hold_for(l);
    unlock(l);
    return hold_us;
}

/* Locked: left(). */
static void
record_departure(struct limiter_process *l, int64_t sent_us)
{
    if (l->in_transit > 0) {
        l->in_transit--;
    }
    if (sent_us <= 0) {
        return;
    }
    if (l->count < l->cap) {
        l->departed[(l->head + l->count++) % l->cap] = sent_us;
    } else {
        l->departed[l->head] = sent_us;
        l->head = (l->head + 1) % l->cap;
    }
}

static void
process_left(struct agw_limiter *rl, int64_t sent_us)
{
    struct limiter_process *l = process_of(rl);

    lock(l);
    record_departure(l, sent_us);
    unlock(l);
}

static void
process_state(struct agw_limiter *rl, int64_t max_wait_us,
              struct agw_limiter_state *out)
{
    struct limiter_process *l = process_of(rl);

    lock(l);
    out->limit = l->gcra.rate_per_s;
    agw_gcra_state(&l->gcra, agw_now_us(), max_wait_us, &out->remaining,
                   &out->reset_s);
    unlock(l);
}

static int64_t
process_backlog(struct agw_limiter *rl)
{
    struct limiter_process *l = process_of(rl);
    int64_t ahead;

    lock(l);
    ahead = l->gcra.tat_us - agw_now_us();
    unlock(l);
    return ahead > 0 ? ahead : 0;
}

/* Sizes the departure log for RATE + BURST calls; keeps the newest. */
static bool
resize_departures(struct limiter_process *l, int cap)
{
    int64_t *log = calloc((size_t)cap, sizeof(*log));
    int keep = l->count < cap ? l->count : cap;

    if (log == NULL) {
        return false;
    }
    for (int i = 0; i < keep; i++) {
        log[i] = nth_latest(l, keep - i);
    }
    free(l->departed);
    l->departed = log;
    l->cap = cap;
    l->count = keep;
    l->head = 0;
    return true;
}

static void
process_reconfigure(struct agw_limiter *rl, double rate, int burst)
{
    struct limiter_process *l = process_of(rl);
    int64_t tat;
    bool resized;
    int cap;

    lock(l);
    tat = l->gcra.tat_us;
    agw_gcra_init_margin(&l->gcra, rate, burst, ARRIVAL_JITTER_MARGIN_US);
    l->gcra.tat_us = tat;
    resized =
        resize_departures(l, l->gcra.rate_per_s + (burst > 0 ? burst : 0));
    cap = l->cap;
    unlock(l);
    if (!resized) {
        log_error("out of memory resizing the rate limiter; keeping %d slots",
                  cap);
    }
}

static void
process_destroy(struct agw_limiter *rl)
{
    struct limiter_process *l = process_of(rl);

    /* acq_rel: the last reference sees every other thread's writes. */
    if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    if (l->locked) {
        pthread_mutex_destroy(&l->lock);
    }
    for (size_t i = 0; i < l->ncaps; i++) {
        free(l->caps[i].name);
    }
    free(l->caps);
    free(l->departed);
    free(l);
}

static const struct agw_limiter_ops process_ops = {
    .name = "local",
    .acquire = process_acquire,
    .acquire_as = process_acquire_as,
    .pause = process_pause,
    .paused_until = process_paused_until,
    .leave = process_leave,
    .left = process_left,
    .reconfigure = process_reconfigure,
    .state = process_state,
    .backlog_us = process_backlog,
    .destroy = process_destroy,
};

static struct agw_limiter *
limiter_new(double rate, int burst, bool locked)
{
    struct limiter_process *l = calloc(1, sizeof(*l));

    if (l == NULL) {
        return NULL;
    }
    l->base.ops = &process_ops;
    l->locked = locked;
    atomic_init(&l->refs, 1);
    agw_gcra_init_margin(&l->gcra, rate, burst, ARRIVAL_JITTER_MARGIN_US);
    if (!resize_departures(l, l->gcra.rate_per_s + (burst > 0 ? burst : 0))) {
        free(l);
        return NULL;
    }
    if (locked && pthread_mutex_init(&l->lock, NULL) != 0) {
        free(l->departed);
        free(l);
        return NULL;
    }
    return &l->base;
}

struct agw_limiter *
agw_limiter_loop_new(double rate, int burst)
{
    return limiter_new(rate, burst, false);
}

struct agw_limiter *
agw_limiter_process_new(double rate, int burst)
{
    return limiter_new(rate, burst, true);
}

struct agw_limiter *
agw_limiter_process_ref(struct agw_limiter *rl)
{
    /* Relaxed: the caller's own reference keeps the limiter alive. */
    atomic_fetch_add_explicit(&process_of(rl)->refs, 1, memory_order_relaxed);
    return rl;
}
