/*
 * flight_loop.h - single flight within one event loop, the narrowest
 * tier (flight.h): while one call for a dedupe key is under way,
 * identical calls on the same loop queue for its answer (SPEC §3)
 * instead of calling upstream themselves. No lock: one thread only.
 */
#ifndef AGW_FLIGHT_LOOP_H
#define AGW_FLIGHT_LOOP_H

#include <stdbool.h>
#include <stddef.h>

struct agw_response;
struct agw_flight_loop;

/* RESP is valid only during the callback. */
typedef void (*agw_flight_loop_cb)(const struct agw_response *resp, void *arg);

struct agw_flight_loop *agw_flight_loop_new(void);

/* Frees the table. Flights still open are dropped without callbacks. */
void agw_flight_loop_free(struct agw_flight_loop *loop);

/*
 * Joins the flight for KEY. Returns true when no flight was under way:
 * the caller now leads and must call agw_flight_loop_finish(KEY) exactly once.
 * Returns false when the caller was queued: CB(RESP, ARG) runs once, from
 * the leader's agw_flight_loop_finish().
 */
bool agw_flight_loop_join(struct agw_flight_loop *loop, const char *key,
                          agw_flight_loop_cb cb, void *arg);

/*
 * Ends the flight for KEY: every queued waiter's callback runs with RESP,
 * in the order they joined. A waiter callback may join a new flight for
 * the same key; it is a new flight. Returns the number of waiters served.
 */
size_t agw_flight_loop_finish(struct agw_flight_loop *loop, const char *key,
                              const struct agw_response *resp);

/* Keys with a flight under way. */
size_t agw_flight_loop_flights(const struct agw_flight_loop *loop);

#endif
