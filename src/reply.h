/*
 * reply.h - answers in Connectly's shape: {"code": N, "message":
 * "XASSET.<NAME>: text"}, and the response record that travels from the
 * upstream (or the store) to every caller waiting on it.
 */
#ifndef AGW_REPLY_H
#define AGW_REPLY_H

#include <stddef.h>

struct evhttp_request;

enum agw_grpc_code {
    AGW_CODE_INVALID_ARGUMENT = 3,
    AGW_CODE_DEADLINE_EXCEEDED = 4,
    AGW_CODE_NOT_FOUND = 5,
    AGW_CODE_PERMISSION_DENIED = 7,
    AGW_CODE_RESOURCE_EXHAUSTED = 8,
    AGW_CODE_UNIMPLEMENTED = 12,
    AGW_CODE_INTERNAL = 13,
    AGW_CODE_UNAVAILABLE = 14,
    AGW_CODE_UNAUTHENTICATED = 16,
};

/* The largest body an answer read back from Redis (stored, or published
 * by another instance) may carry: Connectly's are at most 1 MiB
 * (upstream.c), and redacting a short key can lengthen one. */
#define AGW_RESPONSE_MAX_BYTES (4 * 1024 * 1024)

/* An answer to a create call, whoever produced it. */
struct agw_response {
    int status; /* HTTP status */
    char *body; /* JSON; owned by whoever holds the struct */
    size_t len;
    int retry_after_s; /* Retry-After to send, or -1 */
};

/* "INVALID_ARGUMENT" etc.; "UNKNOWN" for codes not listed above. */
const char *agw_grpc_code_name(int code);

/* Malloc'd JSON error body; the caller frees. MESSAGE is plain text. */
char *agw_error_body(int code, const char *message, size_t *len);

/* Fills RESP with an error answer (RESP->body malloc'd). */
void agw_response_error(struct agw_response *resp, int status, int code,
                        const char *message);

/* Deep copy into DST (DST->body malloc'd). */
void agw_response_copy(struct agw_response *dst,
                       const struct agw_response *src);

void agw_response_clear(struct agw_response *resp);

/*
 * Sends RESP on REQ with Content-Type: application/json (and Retry-After
 * when set). Headers already added to REQ's output stay. Copies the body.
 */
void agw_reply_send(struct evhttp_request *req,
                    const struct agw_response *resp);

/* A header to add; both strings are borrowed. */
struct agw_header {
    const char *name;
    const char *value;
};

/* agw_reply_send() that also sends the N headers in EXTRA. */
void agw_reply_send_with(struct evhttp_request *req,
                         const struct agw_response *resp,
                         const struct agw_header *extra, size_t n);

#define AGW_REQUEST_ID_MAX 128

/*
 * The request's id: the caller's X-Request-Id when it is 1-128 characters
 * of [A-Za-z0-9._:-] (anything else could forge log lines), else a new
 * one from agw_request_id_next() (unique, not secret). Written to OUT and
 * set as X-Request-Id on the answer.
 */
void agw_reply_request_id(struct evhttp_request *req,
                          char out[AGW_REQUEST_ID_MAX + 1]);

/* One-shot error answer: builds, sends, frees. */
void agw_reply_error(struct evhttp_request *req, int status, int code,
                     const char *message);

#endif
