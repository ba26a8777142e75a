/*
 * create.h - the Create Asset pipeline: validate -> store lookup ->
 * single flight -> rate limit -> upstream (with retries) -> store write ->
 * reply. Every accepted call ends in exactly one reply.
 */
#ifndef AGW_CREATE_H
#define AGW_CREATE_H

#include <stdint.h>

struct evhttp_request;
struct agw_gateway;
struct agw_refusal;

/* Handles POST /v1/businesses/BUSINESS_ID/assets on REQ. */
void agw_create_handle(struct agw_gateway *gw, struct evhttp_request *req,
                       const char *business_id);

/*
 * The same call, refused by the guard before its body was read (REFUSED
 * borrowed): answered REFUSED's way, after the usual 503 while draining
 * and 401/403 of an unauthenticated caller, with a create's headers and
 * access line.
 */
void agw_create_refuse(struct agw_gateway *gw, struct evhttp_request *req,
                       const char *business_id,
                       const struct agw_refusal *refused);

/* For agw_upstream_set_sent_cb: a create's request has left. */
void agw_create_on_sent(void *arg, int64_t sent_us);

/*
 * For agw_limiter_fleet_on_change (ARG: the gateway): the limiter in force
 * changed. Calls of this loop waiting for a slot of the other one ask the
 * new one, oldest first, with what is left of their budget (or 429); one
 * that went without the fleet's single flight asks it first if Redis is
 * back.
 */
void agw_create_on_limiter_change(void *gw);

/*
 * Answers every create still in progress with 503 UNAVAILABLE (the drain
 * deadline passed); their upstream calls and timers are cancelled.
 */
void agw_create_abort_all(struct agw_gateway *gw);

#endif
