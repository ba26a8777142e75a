/*
 * worker.c - a worker thread: builds one event loop's worth of gateway
 * (each stage of the create pipeline, wired to what workers share), runs
 * it, applies reloads and drains it, each on the worker's own thread.
 */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "admin.h"
#include "auth.h"
#include "config.h"
#include "create.h"
#include "flight.h"
#include "flight_fleet.h"
#include "flight_loop.h"
#include "flight_process.h"
#include "limiter.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "sentinel.h"
#include "server.h"
#include "store.h"
#include "upstream.h"

#define DRAIN_TICK_MS 50
#define FLUSH_GRACE_MS 100
/* Once every call is answered, connections still open may be sending a
 * request that arrived after SIGTERM: wait this long for them to finish
 * (their answer is 503 with Connection: close) or to go away. */
#define DRAIN_LINGER_TICKS 20

static void on_drain_tick(evutil_socket_t fd, short what, void *arg);

/* Workers whose Redis connections are not both up: the gateway is
 * degraded while any is. */
static pthread_mutex_t redis_down_lock = PTHREAD_MUTEX_INITIALIZER;
static int workers_redis_down;

/* ------------------------------------------------------------- Redis */

/* Counted and shown under one lock, so two workers changing at once
 * cannot leave the gauges showing the older count. */
static void
count_redis_down(int delta)
{
    pthread_mutex_lock(&redis_down_lock);
    workers_redis_down += delta;
    agw_metrics_gauge_set(AGW_M_REDIS_UP, workers_redis_down == 0 ? 1 : 0);
    agw_metrics_gauge_set(AGW_M_DEGRADED, workers_redis_down == 0 ? 0 : 1);
    pthread_mutex_unlock(&redis_down_lock);
}

static void
on_redis_state(bool up, void *arg)
{
    struct agw_worker *w = arg;
    bool all_up =
        agw_redis_is_up(w->gw.redis) && agw_redis_is_up(w->gw.redis_sub);

    /* Down: calls waiting on another instance's flight go on locally
     * now. Up: claims left when Redis failed are released. */
    agw_flight_fleet_redis_state(w->gw.flight_fleet, up);
    if (all_up == w->redis_up) {
        return;
    }
    w->redis_up = all_up;
    count_redis_down(all_up ? -1 : 1);
}

static struct agw_redis *
connect_redis(struct agw_worker *w, const char *name, char *err, size_t errlen)
{
    const struct agw_config *cfg = w->gw.cfg;
    struct agw_redis_options opts = {
        .url = cfg->redis_url,
        .connect_timeout_ms = cfg->redis_connect_timeout_ms,
        .command_timeout_ms = cfg->redis_command_timeout_ms,
        .name = name,
        .on_state = on_redis_state,
        .arg = w,
        .dns = w->gw.dns,
        /* Sentinel: both connections follow the master it names. */
        .sentinel = w->gw.sentinel != NULL,
        .on_lost = w->gw.sentinel != NULL ? agw_sentinel_lost : NULL,
        .lost_arg = w->gw.sentinel,
    };
    struct agw_redis *r;

    r = agw_redis_new(w->gw.base, &opts, err, errlen);
    if (r != NULL && w->gw.sentinel != NULL) {
        agw_sentinel_follow(w->gw.sentinel, r);
    }
    return r;
}

/* The worker's own Sentinel client: every worker follows the master by
 * itself (each hears +switch-master), so none waits on another. */
static bool
start_sentinel(struct agw_worker *w, char *err, size_t errlen)
{
    const struct agw_config *cfg = w->gw.cfg;
    struct agw_sentinel_options opts = {
        .sentinels = cfg->sentinels,
        .master_name = cfg->sentinel_master,
        .password = cfg->sentinel_password,
        .connect_timeout_ms = cfg->redis_connect_timeout_ms,
        .command_timeout_ms = cfg->redis_command_timeout_ms,
        .dns = w->gw.dns,
    };

    w->gw.sentinel = agw_sentinel_new(w->gw.base, &opts, err, errlen);
    return w->gw.sentinel != NULL;
}

/* ---------------------------------------------------------- the store */

/* A purge published by any instance or read back (KEY), or the purge
 * channel confirmed again after an outage (L1: the L1 may hold answers
 * purged meanwhile; ALL: which were purged is not known, and the memory
 * table may hold them too). ARG: the process's store tables. */
static void
on_purge(enum agw_fleet_purge what, const char *key, void *arg)
{
    agw_flight_purge(key); /* first: a flight ending now keeps nothing */
    if (what == AGW_FLEET_PURGE_KEY) {
        agw_store_tables_forget(arg, key);
    } else if (what == AGW_FLEET_PURGE_L1) {
        agw_store_tables_forget_l1(arg);
    } else {
        agw_store_tables_forget_all(arg);
    }
}

/*
 * Memory: a store on the process's tables. Redis: the same, over this
 * worker's connection (the L1 in front, the memory table as the fallback
 * for outages: store.h). A fleet claim must outlive one upstream attempt (SPEC
 * §5), connect included, so that only a dead holder's claim expires.
 */
static bool
start_store(struct agw_worker *w, struct agw_process *proc, char *err,
            size_t errlen)
{
    struct agw_gateway *gw = &w->gw;
    const struct agw_config *cfg = gw->cfg;

    if (cfg->store_backend == AGW_STORE_MEMORY) {
        gw->store = agw_store_new(proc->store, NULL, NULL, 0);
        if (gw->store == NULL) {
            snprintf(err, errlen, "out of memory");
        }
        return gw->store != NULL;
    }
    if (cfg->sentinels != NULL && !start_sentinel(w, err, errlen)) {
        return false;
    }
    gw->redis = connect_redis(w, "store", err, errlen);
    gw->redis_sub = connect_redis(w, "pubsub", err, errlen);
    if (gw->redis == NULL || gw->redis_sub == NULL) {
        return false;
    }
    count_redis_down(1); /* until both are up */
    gw->flight_fleet = agw_flight_fleet_new(
        gw->base, gw->redis, gw->redis_sub, cfg->key_prefix,
        cfg->request_timeout_ms + cfg->connect_timeout_ms + 1000);
    gw->store = agw_store_new(proc->store, gw->redis, cfg->key_prefix,
                              cfg->cache_ttl_s);
    if (gw->flight_fleet == NULL || gw->store == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    agw_flight_fleet_on_purge(gw->flight_fleet, on_purge, proc->store);
    return true;
}

/* Worker 0 makes what the others share. */
static bool
start_process(const struct agw_config *cfg, struct agw_process *proc)
{
    /* The L1 serves the redis backend only. */
    proc->store = agw_store_tables_new(
        cfg->cache_max_entries, (size_t)cfg->cache_max_bytes,
        cfg->store_backend == AGW_STORE_REDIS ? cfg->l1_entries : 0,
        (size_t)cfg->l1_bytes, cfg->l1_ttl_ms);
    if (agw_config_workers(cfg) > 1) {
        proc->flights = agw_flight_board_new();
    }
    /* Memory: the process's limiter. Redis: the departure guard of the
     * fleet limiter (at rate; a fallback's settings come from Redis). */
    proc->limiter = agw_limiter_process_new(cfg->rate, cfg->burst);
    if (cfg->store_backend == AGW_STORE_REDIS) {
        proc->fallback = agw_limiter_process_new(cfg->rate, cfg->burst);
    }
    return proc->store != NULL && proc->limiter != NULL &&
           (cfg->store_backend != AGW_STORE_REDIS || proc->fallback != NULL) &&
           (agw_config_workers(cfg) == 1 || proc->flights != NULL);
}

/* Everything but the store and the server. */
static bool
start_stages(struct agw_worker *w, struct agw_process *proc, char *err,
             size_t errlen)
{
    struct agw_gateway *gw = &w->gw;

    gw->flight_loop = agw_flight_loop_new();
    gw->limiter =
        gw->redis != NULL
            ? agw_limiter_fleet_new(gw->base, gw->redis, gw->cfg,
                                    agw_limiter_process_ref(proc->limiter),
                                    agw_limiter_process_ref(proc->fallback))
            : agw_limiter_process_ref(proc->limiter);
    /* Calls waiting for a slot ask again when the limiter in force
     * changes (SPEC §4). */
    agw_limiter_fleet_on_change(gw->limiter, agw_create_on_limiter_change, gw);
    if (proc->flights != NULL) {
        gw->flight_process = agw_flight_process_new(gw->base, proc->flights);
    }
    w->drain_tick = evtimer_new(gw->base, on_drain_tick, w);
    if (gw->flight_loop == NULL || gw->limiter == NULL ||
        w->drain_tick == NULL ||
        (proc->flights != NULL && gw->flight_process == NULL)) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    gw->upstream = agw_upstream_new(gw->base, gw->dns, gw->cfg, err, errlen);
    return gw->upstream != NULL;
}

bool
agw_worker_init(struct agw_worker *w, int index, struct agw_config *cfg,
                struct agw_auth *auth, struct agw_process *proc, char *err,
                size_t errlen)
{
    struct agw_gateway *gw = &w->gw;

    memset(w, 0, sizeof(*w));
    w->index = index;
    gw->cfg = agw_config_ref(cfg);
    gw->auth = agw_auth_ref(auth);
    agw_create_init(gw);
    gw->base = event_base_new();
    gw->dns = gw->base == NULL
                  ? NULL
                  : evdns_base_new(gw->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (gw->dns == NULL) {
        snprintf(err, errlen,
                 "cannot make an event loop with a resolver "
                 "(is /etc/resolv.conf readable?)");
        return false;
    }
    if (index == 0 && !start_process(cfg, proc)) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    if (!start_store(w, proc, err, errlen) ||
        !start_stages(w, proc, err, errlen)) {
        return false;
    }
    w->server = agw_server_start(gw, proc->tls, proc->listener, err, errlen);
    if (w->server == NULL) {
        return false;
    }
    if (index == 0) {
        proc->listener = w->server;
    }
    /* The operators' listener: on this loop, see admin.c. */
    if (index == 0 && cfg->admin_listen != NULL) {
        w->admin = agw_admin_start(gw, proc->store, agw_config_workers(cfg),
                                   err, errlen);
        return w->admin != NULL;
    }
    return true;
}

/* ------------------------------------------------------------ running */

static void
on_exited(evutil_socket_t fd, short what, void *arg)
{
    struct agw_worker *w = arg;

    w->on_exit(w, w->exit_arg);
}

static void *
run(void *arg)
{
    struct agw_worker *w = arg;
    struct timeval now = {0, 0};
    char name[16];

    /* For top -H and the tests: which thread is which. */
    snprintf(name, sizeof(name), "agw-worker-%d", w->index);
    pthread_setname_np(pthread_self(), name);
    event_base_dispatch(w->gw.base);
    if (event_base_once(w->control, -1, EV_TIMEOUT, on_exited, w, &now) != 0) {
        log_error("worker %d: cannot tell the main loop it stopped", w->index);
    }
    return NULL;
}

bool
agw_worker_start(struct agw_worker *w, struct event_base *control,
                 void (*on_exit)(struct agw_worker *w, void *arg), void *arg)
{
    w->control = control;
    w->on_exit = on_exit;
    w->exit_arg = arg;
    if (pthread_create(&w->thread, NULL, run, w) != 0) {
        return false;
    }
    w->running = true;
    return true;
}

/* ------------------------------------------------------------- reload */

struct reload_msg {
    struct agw_worker *w;
    struct agw_config *cfg;
    struct agw_auth *auth;
};

static void
on_reload(evutil_socket_t fd, short what, void *arg)
{
    struct reload_msg *m = arg;
    struct agw_gateway *gw = &m->w->gw;

    /* Calls copy the caller's name when they start, so this worker's
     * hold on the old table can go at once. */
    agw_auth_free(gw->auth);
    gw->auth = m->auth;
    agw_upstream_reconfigure(gw->upstream, m->cfg);
    gw->limiter->ops->reconfigure(gw->limiter, m->cfg->rate, m->cfg->burst);
    agw_limiter_fleet_reload(gw->limiter, m->cfg);
    agw_server_reconfigure(m->w->server, m->cfg);
    agw_config_unref(gw->cfg);
    gw->cfg = m->cfg;
    free(m);
}

void
agw_worker_reload(struct agw_worker *w, struct agw_config *cfg,
                  struct agw_auth *auth)
{
    struct reload_msg *m = malloc(sizeof(*m));
    struct timeval now = {0, 0};

    if (m == NULL) {
        log_error("worker %d: reload not applied: out of memory", w->index);
        return;
    }
    *m = (struct reload_msg){w, agw_config_ref(cfg), agw_auth_ref(auth)};
    if (event_base_once(w->gw.base, -1, EV_TIMEOUT, on_reload, m, &now) != 0) {
        log_error("worker %d: reload not applied", w->index);
        agw_config_unref(m->cfg);
        agw_auth_free(m->auth);
        free(m);
    }
}

/* -------------------------------------------------------------- drain */

static void
exit_soon(struct agw_worker *w)
{
    struct timeval grace = {0, FLUSH_GRACE_MS * 1000};

    /* Answers just handed to evhttp still need a loop turn to be written. */
    event_base_loopexit(w->gw.base, &grace);
}

static void
on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct agw_worker *w = arg;
    struct timeval tick = {0, DRAIN_TICK_MS * 1000};

    if (w->gw.inflight == 0 && (agw_server_connections(w->server) == 0 ||
                                w->linger_ticks_left-- <= 0)) {
        log_debug("worker %d drained: every call answered", w->index);
        exit_soon(w);
        return;
    }
    if (--w->drain_ticks_left <= 0) {
        log_warn("drain_timeout_ms reached with %ld calls in flight: "
                 "answering them 503",
                 w->gw.inflight);
        agw_create_abort_all(&w->gw);
        exit_soon(w);
        return;
    }
    evtimer_add(w->drain_tick, &tick);
}

static void
on_drain(evutil_socket_t fd, short what, void *arg)
{
    struct agw_worker *w = arg;

    if (w->gw.draining) {
        return;
    }
    w->gw.draining = true;
    agw_server_stop_accepting(w->server);
    agw_admin_stop_accepting(w->admin);
    w->drain_ticks_left = w->gw.cfg->drain_timeout_ms / DRAIN_TICK_MS + 1;
    w->linger_ticks_left = DRAIN_LINGER_TICKS;
    on_drain_tick(-1, 0, w);
}

void
agw_worker_drain(struct agw_worker *w)
{
    struct timeval now = {0, 0};

    if (event_base_once(w->gw.base, -1, EV_TIMEOUT, on_drain, w, &now) != 0) {
        log_error("worker %d: cannot start draining; stopping it", w->index);
        agw_worker_stop(w);
    }
}

static void
on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct agw_worker *w = arg;

    event_base_loopbreak(w->gw.base);
}

void
agw_worker_stop(struct agw_worker *w)
{
    struct timeval now = {0, 0};

    /* An event, not event_base_loopbreak() from here: a loop that has not
     * started yet clears the break flag when it starts. */
    if (event_base_once(w->gw.base, -1, EV_TIMEOUT, on_stop, w, &now) != 0) {
        event_base_loopbreak(w->gw.base); /* out of memory: the best left */
    }
}

/* ---------------------------------------------------------- clean-up */

void
agw_worker_join(struct agw_worker *w)
{
    if (w->running) {
        pthread_join(w->thread, NULL);
        w->running = false;
    }
}

void
agw_worker_free(struct agw_worker *w)
{
    struct agw_gateway *gw = &w->gw;

    agw_worker_join(w);
    agw_server_free(w->server);
    agw_admin_free(w->admin); /* before the Redis connections it uses */
    /* Before the limiter: calls it cancels tell it they never left. */
    if (gw->upstream != NULL) {
        agw_upstream_free(gw->upstream);
    }
    if (gw->limiter != NULL) {
        gw->limiter->ops->destroy(gw->limiter);
    }
    if (gw->flight_loop != NULL) {
        agw_flight_loop_free(gw->flight_loop);
    }
    agw_flight_tier_free(gw->flight_fleet);
    agw_flight_tier_free(gw->flight_process);
    if (gw->store != NULL) {
        gw->store->ops->destroy(gw->store);
    }
    if (gw->redis_sub != NULL) {
        agw_redis_free(gw->redis_sub);
    }
    if (gw->redis != NULL) {
        agw_redis_free(gw->redis);
    }
    agw_sentinel_free(gw->sentinel); /* after its followers */
    if (w->drain_tick != NULL) {
        event_free(w->drain_tick);
    }
    if (gw->dns != NULL) {
        evdns_base_free(gw->dns, 0);
    }
    if (gw->base != NULL) {
        event_base_free(gw->base);
    }
    agw_auth_free(gw->auth);
    agw_config_unref(gw->cfg);
}

void
agw_process_free(struct agw_process *proc)
{
    agw_store_tables_unref(proc->store);
    if (proc->limiter != NULL) {
        proc->limiter->ops->destroy(proc->limiter);
    }
    if (proc->fallback != NULL) {
        proc->fallback->ops->destroy(proc->fallback);
    }
    agw_flight_board_free(proc->flights);
    memset(proc, 0, sizeof(*proc));
}
