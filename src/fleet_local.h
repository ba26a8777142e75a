/*
 * fleet_local.h - single flight across the worker threads of one process
 * (workers > 1, either backend): the fleet interface of fleet.h over one
 * in-process board of flights shared by the workers. With Redis, a call
 * that leads here goes on to the fleet's flight (fleet.h) as well.
 */
#ifndef AGW_FLEET_LOCAL_H
#define AGW_FLEET_LOCAL_H

struct event_base;
struct agw_fleet;
struct agw_flights;

/* The board every worker's fleet shares. NULL when memory runs out. */
struct agw_flights *agw_flights_new(void);

/* Frees BOARD; every fleet made on it must be freed first. */
void agw_flights_free(struct agw_flights *board);

/*
 * A fleet for the worker whose loop is BASE. Outcomes (LEAD, ANSWER) are
 * delivered on BASE's thread, however they were decided: libevent must
 * run with threads enabled (evthread_use_pthreads). A holder's abandon()
 * hands the claim to its first waiter (LEAD). UNAVAILABLE never happens.
 * Free it from any thread once BASE's loop has stopped; waits still open
 * end without their callback, claims still held pass to their waiters.
 */
struct agw_fleet *agw_fleet_local_new(struct event_base *base,
                                      struct agw_flights *board);

#endif
