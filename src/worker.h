/*
 * worker.h - one worker thread: an event loop with its own evhttp, Redis
 * connections and upstream pool, accepting on the process's one listen
 * socket. What the workers of a process have in common (the store's
 * tables, the limiters, the flight board, the listener) is in struct
 * agw_process; everything else is the worker's alone.
 */
#ifndef AGW_WORKER_H
#define AGW_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway.h"

struct event;
struct event_base;
struct agw_auth;
struct agw_config;
struct agw_flight_board;
struct agw_server;
struct agw_admin;
struct agw_tls_server;

/* The process's part: made by the first worker, borrowed by the others
 * (worker.c). */
struct agw_process {
    struct agw_store_tables *store; /* the store's memory and L1 tables */
    struct agw_limiter *limiter;    /* the process's (redis: its guard) */
    struct agw_limiter *fallback; /* redis: the process's while Redis is down */
    struct agw_flight_board *flights;  /* workers > 1 */
    const struct agw_server *listener; /* first worker's server */
    struct agw_tls_server *tls; /* tls_listen's context (main's); or NULL */
};

struct agw_worker {
    int index;
    struct agw_gateway gw;
    struct agw_server *server;
    struct agw_admin *admin; /* worker 0 with [admin] listen; else NULL */
    pthread_t thread;
    bool running;  /* the thread was started and not joined yet */
    bool redis_up; /* both Redis connections were up at the last change */
    struct event *drain_tick;
    int64_t drain_ticks_left;
    int linger_ticks_left;
    /* Run on the control loop when this worker's loop has ended. */
    struct event_base *control;
    void (*on_exit)(struct agw_worker *w, void *arg);
    void *exit_arg;
};

/*
 * Builds worker INDEX on a new loop of its own: store, flights, limiter,
 * upstream pool, server. CFG and AUTH get a holder each. PROC is filled
 * by worker 0 and read by the others. False with ERR on failure
 * (agw_worker_free() still cleans up).
 */
bool agw_worker_init(struct agw_worker *w, int index, struct agw_config *cfg,
                     struct agw_auth *auth, struct agw_process *proc, char *err,
                     size_t errlen);

/* Runs W's loop in a thread; ON_EXIT(W, ARG) runs on CONTROL's loop when
 * it ends. */
bool agw_worker_start(struct agw_worker *w, struct event_base *control,
                      void (*on_exit)(struct agw_worker *w, void *arg),
                      void *arg);

/* From the control thread: W applies CFG and AUTH (a holder each is
 * taken here) to calls that start from now on. */
void agw_worker_reload(struct agw_worker *w, struct agw_config *cfg,
                       struct agw_auth *auth);

/* From the control thread: W stops accepting, finishes its calls (up to
 * drain_timeout_ms) and ends its loop. */
void agw_worker_drain(struct agw_worker *w);

/* From the control thread: W's loop ends now (calls in flight are not
 * answered: for a start-up that failed). */
void agw_worker_stop(struct agw_worker *w);

/* Waits for W's thread to end (nothing when it was not started). */
void agw_worker_join(struct agw_worker *w);

/* Waits for W's thread, then frees what W holds (not W itself). Join
 * every worker first: one may still post to another's loop. */
void agw_worker_free(struct agw_worker *w);

/* Frees what worker 0 made in PROC, once every worker is freed. */
void agw_process_free(struct agw_process *proc);

#endif
