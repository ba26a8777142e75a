/*
 * upstream.h - the client for Connectly (SPEC §5): HTTP/1.1 over TLS
 * (bufferevent_openssl) or plain http for tests, a small pool of
 * keep-alive connections, the API key injected. One call = one attempt;
 * retries and the rate budget are the caller's (create.c).
 */
#ifndef AGW_UPSTREAM_H
#define AGW_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "retry.h"

struct event_base;
struct evdns_base;
struct agw_config;
struct agw_upstream;
struct agw_upstream_call;

struct agw_upstream_result {
    enum agw_attempt_outcome outcome;
    int status;       /* HTTP status when outcome is RESPONSE, else 0 */
    const char *body; /* response body (NUL-terminated), valid in the cb */
    size_t len;
    int retry_after_s;  /* the Retry-After header, -1 when absent */
    const char *detail; /* for logs, e.g. TLS verify error; never secret */
};

typedef void (*agw_upstream_cb)(const struct agw_upstream_result *res,
                                void *arg);

/*
 * Client for CFG's base_url with CFG's api_key (copied; wiped on free),
 * timeouts and pool size. On failure returns NULL with the reason in ERR.
 * Warns once when base_url is plain http.
 */
struct agw_upstream *agw_upstream_new(struct event_base *base,
                                      struct evdns_base *dns,
                                      const struct agw_config *cfg, char *err,
                                      size_t errlen);

/*
 * A reload: the API key and the timeouts of CFG apply from the next
 * attempt on; calls in flight keep theirs. base_url, ca_file and the
 * pool size need a restart.
 */
void agw_upstream_reconfigure(struct agw_upstream *up,
                              const struct agw_config *cfg);

/* Cancels every call in progress (their callbacks do not run) and frees. */
void agw_upstream_free(struct agw_upstream *up);

/* One attempt's request; every pointer but SENT_ARG is only read during
 * the post. */
struct agw_upstream_request {
    const char *path; /* after base_url's path prefix */
    const char *body; /* JSON, LEN bytes */
    size_t len;
    const char *request_id; /* X-Request-Id; may be NULL */
    const char *api_key;    /* the caller's snapshot; NULL: the current */
    int timeout_ms;         /* the whole attempt; <= 0: request_timeout_ms */
    /*
     * The departure, for the rate limiter, which counts calls when they
     * leave, not when it granted them (a connect can lag behind its
     * slot). NULL: nobody is told. Else ON_SENT(SENT_ARG, t) runs exactly
     * once per agw_upstream_post(), even one that returns NULL: T is when
     * the request was handed to a connection's output (it really left),
     * or 0 when it never was (no connection, timed out waiting, cancelled,
     * out of memory); in that case before the call's callback, or inside
     * agw_upstream_cancel() or agw_upstream_free(), or post itself. So
     * SENT_ARG must outlive the client, or every call posted with it.
     */
    void (*on_sent)(void *sent_arg, int64_t sent_us);
    void *sent_arg;
};

/*
 * One attempt: POST with X-API-Key, Content-Type, User-Agent and
 * X-Request-Id. CB runs exactly once, never before this returns, unless
 * the call is cancelled. The attempt fails as TIMEOUT after timeout_ms.
 * A call keeps the key and timeout it was posted with across a reload.
 */
struct agw_upstream_call *
agw_upstream_post(struct agw_upstream *up,
                  const struct agw_upstream_request *rq, agw_upstream_cb cb,
                  void *arg);

/* Abandons CALL: its callback will not run. */
void agw_upstream_cancel(struct agw_upstream_call *call);

/*
 * Takes every API key in use out of BODY (LEN bytes): the current key
 * and any key a reload replaced while calls posted with it are still in
 * flight; each occurrence becomes "[REDACTED]" (redact.h). Response
 * bodies are redacted before their callback; this is for bodies from
 * elsewhere (the store) about to be sent. Returns as agw_redact(): 0
 * nothing found, 1 *OUT malloc'd (*OUT_LEN bytes), -1 out of memory.
 */
int agw_upstream_redact(const struct agw_upstream *up, const char *body,
                        size_t len, char **out, size_t *out_len);

/* Connections open now (idle and busy), for /readyz and tests. */
int agw_upstream_connections(const struct agw_upstream *up);

#endif
