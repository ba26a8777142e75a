/*
 * singleflight.h - in-process coalescing: while one upstream call for a
 * dedupe key is under way, identical requests wait for its answer (SPEC
 * §3) instead of calling upstream themselves.
 */
#ifndef AGW_SINGLEFLIGHT_H
#define AGW_SINGLEFLIGHT_H

#include <stdbool.h>
#include <stddef.h>

struct agw_response;
struct agw_sf;

/* RESP is valid only during the callback. */
typedef void (*agw_sf_cb)(const struct agw_response *resp, void *arg);

struct agw_sf *agw_sf_new(void);

/* Frees the table. Flights still open are dropped without callbacks. */
void agw_sf_free(struct agw_sf *sf);

/*
 * Joins the flight for KEY. Returns true when no flight was under way:
 * the caller now leads and must call agw_sf_finish(KEY) exactly once.
 * Returns false when the caller was queued: CB(RESP, ARG) runs once, from
 * the leader's agw_sf_finish().
 */
bool agw_sf_join(struct agw_sf *sf, const char *key, agw_sf_cb cb, void *arg);

/*
 * Ends the flight for KEY: every queued waiter's callback runs with RESP,
 * in the order they joined. A waiter callback may join a new flight for
 * the same key; it is a new flight. Returns the number of waiters served.
 */
size_t agw_sf_finish(struct agw_sf *sf, const char *key,
                     const struct agw_response *resp);

/* Keys with a flight under way. */
size_t agw_sf_flights(const struct agw_sf *sf);

#endif
