/*
 * create.h - the Create Asset pipeline (SPEC §2-§5): one state machine
 * per call, from the validated request through dedupe (store and single
 * flight), the rate-limit slot and the upstream attempts to the answer,
 * which the call's waiters share (create.c's top comment traces it).
 * Every accepted call gets exactly one answer, through its responder.
 */
#ifndef AGW_CREATE_H
#define AGW_CREATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evhttp_request;
struct agw_gateway;
struct agw_refusal;
struct agw_response;
struct agw_header;
struct agw_peer_cert;

/*
 * The caller's side of a create: what the pipeline reads of the request
 * and how it answers. agw_create_handle() gives it an evhttp request;
 * unit tests give it their own. CONN is the responder's.
 */
struct agw_responder_ops {
    /* The request header NAME's value, or NULL. */
    const char *(*header)(void *conn, const char *name);
    /* The request body, *LEN bytes (need not end in NUL); NULL: none. */
    const char *(*body)(void *conn, size_t *len);
    /* The request's path and query, for the access log. */
    const char *(*uri)(void *conn);
    /* The request's id (see agw_reply_request_id()) into OUT (at least
     * AGW_REQUEST_ID_MAX + 1 bytes), also set on the answer. */
    void (*request_id)(void *conn, char *out);
    /* Adds header NAME to the answer, unless it has one already. */
    void (*add_header)(void *conn, const char *name, const char *value);
    /* Sends RESP with the N headers in EXTRA: the call's one answer. */
    void (*send)(void *conn, const struct agw_response *resp,
                 const struct agw_header *extra, size_t n);
    /* Optional: the connection's verified client certificate into OUT;
     * false (or no such op) when it has none. */
    bool (*peer_cert)(void *conn, struct agw_peer_cert *out);
};

struct agw_responder {
    const struct agw_responder_ops *ops;
    void *conn;
};

/* Once, before GW's first create: its list of calls in progress. */
void agw_create_init(struct agw_gateway *gw);

/* agw_create_handle() and agw_create_refuse() (REFUSED may be NULL) for
 * any responder: TO is copied. */
void agw_create_start(struct agw_gateway *gw, const struct agw_responder *to,
                      const char *business_id,
                      const struct agw_refusal *refused);

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
