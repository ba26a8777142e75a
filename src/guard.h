/*
 * guard.h - a bufferevent filter between each caller connection and
 * evhttp: it reads every request's head before evhttp sees a byte of it
 * and refuses what HTTP/1.1 framing leaves ambiguous (SPEC §8), and it
 * keeps what a request may buffer within its body limit and the
 * process's budget, whatever an unauthenticated client sends.
 */
#ifndef AGW_GUARD_H
#define AGW_GUARD_H

#include <stdbool.h>

struct bufferevent;

/* Longest request head (request line and header fields) read. */
#define AGW_GUARD_HEAD_MAX (16 * 1024)

/* How to answer a refused request; the answer closes the connection. */
struct agw_refusal {
    int status;    /* HTTP status */
    int code;      /* Connectly's error code */
    bool stand_in; /* evhttp got a stand-in, not the caller's own head */
    char message[160];
};

/* A request head whose framing is sound, for agw_guard_policy.check_head.
 * The strings live until check_head returns. */
struct agw_guard_head {
    const char *method;
    const char *target;            /* the request-target as sent */
    const char *authorization;     /* the first Authorization field, or NULL */
    long long body_bytes;          /* Content-Length; -1: chunked; 0: no body */
    struct bufferevent *transport; /* the connection's socket or TLS */
};

/*
 * The limits, read afresh for each request (a reload may change them).
 * Owned by the caller, it must outlive every guard made with it; guards
 * read it on their connection's loop thread only.
 */
struct agw_guard_policy {
    long long max_body;     /* a larger body is refused 413 code 3 */
    long long max_buffered; /* process-wide budget: past it, 503 code 14 */
    /* Optional: may refuse a request by its head, before its body is
     * read: fills OUT and returns false. */
    bool (*check_head)(void *arg, const struct agw_guard_head *head,
                       struct agw_refusal *out);
    void *arg;
};

struct agw_guard;

/*
 * Puts a guard over UNDERLYING (the transport: a socket or TLS
 * bufferevent, not yet connected is fine) and returns the bufferevent
 * evhttp is to use, which owns UNDERLYING and frees it with itself; *OUT
 * is the guard, alive as long as that bufferevent. NULL (UNDERLYING
 * freed) when out of memory.
 *
 * What the guard passes on to evhttp, one request at a time (the next
 * is read once agw_guard_answered() says this one was answered):
 *  - a head is a request line "METHOD SP target SP HTTP/1.0|1.1" and
 *    header lines, each ending in CRLF (or a bare LF, as evhttp reads
 *    it), then an empty line, at most AGW_GUARD_HEAD_MAX bytes (else
 *    431). Refused with 400: any other CR, a NUL, an obsolete folded
 *    line, a field name that is not a token, more than one
 *    Content-Length or Transfer-Encoding, a Content-Length that is not
 *    decimal digits (with optional blanks around them: "+34", "0x22",
 *    "3 4" are refused), a Transfer-Encoding other than "chunked", both,
 *    Transfer-Encoding in HTTP/1.0, a body on HEAD, TRACE or a method
 *    evhttp does not know (it would read none);
 *  - a chunked body is chunk-size lines of bare hex digits (no sign, no
 *    "0x", no blanks, no extensions), each chunk's data followed by
 *    CRLF, then "0" and an empty line (no trailer fields); anything else
 *    is refused with 400 mid-body;
 *  - a body larger than max_body (declared, or the chunks so far) is
 *    refused with 413, one that would take the process past
 *    max_buffered with 503, before its bytes are read; so is a head
 *    still coming in while the process is past max_buffered (503).
 *    policy->check_head, when set, looks at a sound head first.
 * A refused request reaches evhttp without a body: its own head less
 * Content-Length and Transfer-Encoding when the head is sound (so the
 * handler sees its path and headers), else a stand-in "GET / HTTP/1.1";
 * a chunked body is cut short with a last chunk. Nothing after it is
 * passed on; agw_guard_refusal() then says how to answer.
 *
 * Answers go out as evhttp writes them; evhttp learns one was sent once
 * the transport has sent it (so a close after it loses nothing).
 */
struct bufferevent *agw_guard_new(struct bufferevent *underlying,
                                  const struct agw_guard_policy *policy,
                                  struct agw_guard **out);

/* Refuses the connection before anything is read from it: its first
 * request is a stand-in answered with R (copied). */
void agw_guard_refuse(struct agw_guard *g, const struct agw_refusal *r);

/* The refusal to answer the request evhttp has now, or NULL: serve it. */
const struct agw_refusal *agw_guard_refusal(const struct agw_guard *g);

/* The request passed on was answered: its bytes leave the budget and the
 * next request is passed on (evhttp reads it when it reads again). */
void agw_guard_answered(struct agw_guard *g);

/* evhttp let go of the connection: whatever comes in is dropped. */
void agw_guard_close(struct agw_guard *g);

/* Request bytes held now by every guard of the process: heads waiting,
 * and heads and bodies passed on or reserved and not yet answered. */
long long agw_guard_buffered(void);

#endif
