/*
 * flight_process.h - single flight across the worker threads of one
 * process (workers > 1, either backend): a flight tier (flight_tier.h)
 * over one in-process board of flights, one for all the workers. With
 * Redis, a call that leads here goes on to the fleet's flight
 * (flight_fleet.h) as well.
 */
#ifndef AGW_FLIGHT_PROCESS_H
#define AGW_FLIGHT_PROCESS_H

struct event_base;
struct agw_flight_tier;
struct agw_flight_board;

/* The board every worker's fleet shares. NULL when memory runs out. */
struct agw_flight_board *agw_flight_board_new(void);

/* Frees BOARD; every fleet made on it must be freed first. */
void agw_flight_board_free(struct agw_flight_board *board);

/*
 * A fleet for the worker whose loop is BASE. Outcomes (LEAD, ANSWER) are
 * delivered on BASE's thread, however they were decided: libevent must
 * run with threads enabled (evthread_use_pthreads). A holder's abandon()
 * hands the claim to its first waiter (LEAD). UNAVAILABLE never happens.
 * Free it from any thread once BASE's loop has stopped; waits still open
 * end without their callback, claims still held pass to their waiters.
 */
struct agw_flight_tier *agw_flight_process_new(struct event_base *base,
                                               struct agw_flight_board *board);

#endif
