/*
 * sandbox.h - connectly-sandbox, a loopback stand-in for the Connectly
 * Create Asset API (SPEC §7): the types and calls shared by its modules.
 */
#ifndef SBX_SANDBOX_H
#define SBX_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <json-c/json.h>
#include <openssl/ssl.h>

#define SBX_MAX_CALLS 200000         /* newest recorded create arrivals */
#define SBX_MAX_SOURCES 100000       /* distinct uris counted by_source */
#define SBX_MAX_ASSETS 10000         /* stored assets before eviction */
#define SBX_STORE_BYTES (256u << 20) /* stored bytes before eviction */
#define SBX_MAX_ID_LEN 1024          /* custom asset id, bytes */

/* Command-line settings; strings are heap copies owned by the config. */
struct sbx_config {
    char *listen_host; /* literal IP, no brackets */
    int listen_port;   /* 0 until bound, then the real port */
    char *key_file;
    char *tls_cert; /* NULL: plain HTTP */
    char *tls_key;
    long rate;      /* creates per second, 0 = unlimited */
    char *cdn_base; /* NULL: derived from the bound address */
    long fetch_timeout_ms;
    size_t max_asset_bytes;
};

struct sbx_store;
struct sbx_calls;
struct sbx_faults;
struct sbx_job;

/* Everything the handlers need; one per process. */
struct sbx_server {
    struct sbx_config cfg;
    unsigned char key_digest[32]; /* SHA-256 of the API key */
    struct event_base *base;
    struct evdns_base *dns;
    struct evhttp *http;
    struct evhttp_bound_socket *listener;
    SSL_CTX *ssl; /* NULL without TLS */
    struct sbx_store *store;
    struct sbx_calls *calls;
    struct sbx_faults *faults;
    struct sbx_job *jobs; /* replies still to be sent */
};

/* ---- sandbox_http.c: routing, replies, logging, delayed replies ---- */

/* Seconds on CLOCK_MONOTONIC. */
double sbx_now(void);

/* The evhttp general callback; ARG is the struct sbx_server. */
void sbx_handle_request(struct evhttp_request *req, void *arg);

/* Logs one line and sends the answer. BODY (may be NULL) is drained.
 * REQ is handed back to evhttp: do not touch it afterwards. */
void sbx_reply(struct evhttp_request *req, double t0, int status,
               const char *ctype, struct evbuffer *body);

/* Sends {"code":CODE,"message":MESSAGE} with STATUS. */
void sbx_reply_error(struct evhttp_request *req, double t0, int status,
                     int code, const char *message);

/* Sends OBJ as JSON with STATUS and drops the caller's reference. */
void sbx_reply_json(struct evhttp_request *req, double t0, int status,
                    struct json_object *obj);

/* One log line for a request answered with STATUS (0: dropped). */
void sbx_log_request(struct evhttp_request *req, int status, double t0);

/* A new evbuffer holding the error body; NULL when out of memory. */
struct evbuffer *sbx_error_body(int code, const char *message);

/* Appends OBJ serialised without slash escaping; -1 on failure. */
int sbx_json_append(struct evbuffer *out, struct json_object *obj);

/* The request body as a JSON object (new reference), NULL when the body
 * is not exactly one JSON object in valid UTF-8. */
struct json_object *sbx_parse_body_object(struct evhttp_request *req);

/* Called exactly once when a job ends: STATUS is the one that goes out
 * (503 when ABORTED at shutdown). Must release PRIV and its work. */
typedef void (*sbx_job_done_fn)(void *priv, int status, int aborted);

/* A reply sent later (latency fault, slow sample, source fetch). The job
 * borrows REQ from evhttp until the reply is sent. */
struct sbx_job {
    struct sbx_job *prev, *next;
    struct sbx_server *srv;
    struct evhttp_request *req;
    double t0;
    struct event *timer;
    int status;
    const char *ctype;     /* static string or NULL */
    struct evbuffer *body; /* owned */
    sbx_job_done_fn done;  /* may be NULL */
    void *priv;
};

/* NULL when out of memory (REQ is then still the caller's to answer). */
struct sbx_job *sbx_job_new(struct sbx_server *srv, struct evhttp_request *req,
                            double t0);

/* Sets the answer; BODY (may be NULL) is drained into the job. */
void sbx_job_set_reply(struct sbx_job *job, int status, const char *ctype,
                       struct evbuffer *body);

/* Sets an error answer in Connectly's shape. */
void sbx_job_set_error(struct sbx_job *job, int status, int code,
                       const char *message);

/* Sends the answer after DELAY_MS (now when <= 0) and frees the job. */
void sbx_job_finish(struct sbx_job *job, long delay_ms);

/* Shutdown: answers every pending job with 503 and frees it. */
void sbx_jobs_abort_all(struct sbx_server *srv);

/* ---- route handlers (sandbox_create.c, sandbox_samples.c,
 *      sandbox_control.c); each answers REQ exactly once ---- */

/* BUSINESS_ID is the raw path segment. */
void sbx_route_create(struct sbx_server *srv, struct evhttp_request *req,
                      const char *business_id, double t0);

/* RAW_ID is the percent-encoded path segment after /cdn/assets/. */
void sbx_route_cdn(struct sbx_server *srv, struct evhttp_request *req,
                   const char *raw_id, double t0);

/* REST is the path after /samples/. */
void sbx_route_samples(struct sbx_server *srv, struct evhttp_request *req,
                       const char *rest, double t0);

/* NAME is the path after /_sandbox/. */
void sbx_route_control(struct sbx_server *srv, struct evhttp_request *req,
                       const char *name, double t0);

/* ---- sandbox_map.c: string-keyed map keeping insertion order ---- */

struct sbx_map;

/* FREE_VAL (may be NULL) releases values the map drops. */
struct sbx_map *sbx_map_new(void (*free_val)(void *));
void sbx_map_free(struct sbx_map *map);
void sbx_map_clear(struct sbx_map *map);
size_t sbx_map_count(const struct sbx_map *map);

/* Returns the value stored under KEY or NULL. */
void *sbx_map_get(const struct sbx_map *map, const char *key);

/* Stores VAL (owned by the map) under a copy of KEY as the newest entry,
 * releasing a value it replaces. -1 when out of memory (VAL not taken). */
int sbx_map_put(struct sbx_map *map, const char *key, void *val);

/* Removes the oldest entry; returns -1 when empty. */
int sbx_map_drop_oldest(struct sbx_map *map);

/* The oldest value or NULL. */
void *sbx_map_oldest(const struct sbx_map *map);

/* Calls FN for every entry, oldest first. */
void sbx_map_foreach(const struct sbx_map *map,
                     void (*fn)(const char *key, void *val, void *arg),
                     void *arg);

/* ---- sandbox_store.c: stored assets, bounded, oldest evicted ---- */

struct sbx_store *sbx_store_new(size_t max_assets, size_t max_bytes);
void sbx_store_free(struct sbx_store *store);

/* Copies DATA and CTYPE under ID, replacing an asset with the same id.
 * -1 when out of memory or larger than the whole store. */
int sbx_store_put(struct sbx_store *store, const char *id, const char *ctype,
                  const unsigned char *data, size_t len);

/* 0 and borrowed pointers valid until the next put, -1 when unknown. */
int sbx_store_get(const struct sbx_store *store, const char *id,
                  const char **ctype, const unsigned char **data, size_t *len);

/* ---- sandbox_calls.c: recorded create arrivals, counters, own rate
 *      limit ---- */

/* RATE: admitted creates per sliding second, 0 = unlimited. */
struct sbx_calls *sbx_calls_new(long rate);
void sbx_calls_free(struct sbx_calls *calls);

/* Records an arrival; URI and ID may be NULL. Returns its sequence
 * number for sbx_calls_finish. */
uint64_t sbx_calls_record(struct sbx_calls *calls, double t, const char *uri,
                          const char *id);

/* Sets the final STATUS of call SEQ (0 = connection dropped). Calls from
 * before the last reset are ignored. */
void sbx_calls_finish(struct sbx_calls *calls, uint64_t seq, int status);

/* 1 and counts the call as admitted when the sliding window has room at
 * NOW, else 0. */
int sbx_calls_admit(struct sbx_calls *calls, double now);

/* Forgets recorded calls, counters and the rate window. */
void sbx_calls_reset(struct sbx_calls *calls);

/* New JSON object for GET /_sandbox/stats; NULL when out of memory. */
struct json_object *sbx_calls_stats(const struct sbx_calls *calls);

/* Appends {"calls":[...]} for GET /_sandbox/calls; -1 on failure. */
int sbx_calls_dump(const struct sbx_calls *calls, struct evbuffer *out);

/* ---- sandbox_faults.c: fault switches for create calls ---- */

enum sbx_fault_action {
    SBX_FAULT_NONE = 0,
    SBX_FAULT_DROP,
    SBX_FAULT_STATUS,
};

struct sbx_fault_decision {
    enum sbx_fault_action action;
    int status;       /* SBX_FAULT_STATUS: the HTTP status */
    long retry_after; /* seconds for a forced 429, -1 = no header */
    long latency_ms;  /* delay for the answer, 0 = none */
    int echo_key;     /* the answer quotes the request's X-API-Key (tests
                         of a gateway that must redact it) */
};

struct sbx_faults *sbx_faults_new(void);
void sbx_faults_free(struct sbx_faults *faults);
void sbx_faults_reset(struct sbx_faults *faults);

/* Decides what happens to the next create call and uses up one of the
 * counted faults it applies. */
void sbx_faults_next(struct sbx_faults *faults, struct sbx_fault_decision *out);

/* Applies a POST /_sandbox/faults body. On a bad body returns -1 with a
 * message in ERR and changes nothing. */
int sbx_faults_apply(struct sbx_faults *faults, struct json_object *obj,
                     char *err, size_t errlen);

/* New JSON object describing the current switches. */
struct json_object *sbx_faults_describe(const struct sbx_faults *faults);

/* ---- sandbox_fetch.c: GET of a source uri ---- */

/* OK: 1 when the source answered 2xx within the limits. CTYPE, DATA are
 * borrowed for the duration of the call. */
typedef void (*sbx_fetch_done_fn)(void *arg, int ok, const char *ctype,
                                  const unsigned char *data, size_t len);

struct sbx_fetch;

/* Starts a GET of URI; DONE runs once, later, from the event loop.
 * NULL when URI cannot be fetched at all (not http, not loopback,
 * unparseable, out of memory): DONE never runs then. */
struct sbx_fetch *sbx_fetch_start(struct sbx_server *srv, const char *uri,
                                  sbx_fetch_done_fn done, void *arg);

/* Stops a fetch whose DONE has not run; DONE will not run. */
void sbx_fetch_cancel(struct sbx_fetch *fetch);

#endif
