/*
 * sandbox_http.c - the sandbox's front door: routing by path, answers in
 * Connectly's error shape, one log line per request, and replies that
 * go out later from a timer (jobs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/keyvalq_struct.h>

#include "sandbox.h"

#define LOG_PATH_MAX 200

double
sbx_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *
method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "?";
}

/* The path only: no query string, no headers (the API key travels in a
 * header and must never reach the log). */
static void
log_path(struct evhttp_request *req, char *out, size_t outlen)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u != NULL ? evhttp_uri_get_path(u) : NULL;
    size_t i = 0;

    if (path == NULL || path[0] == '\0') {
        path = "/";
    }
    for (; path[i] != '\0' && i + 1 < outlen && i < LOG_PATH_MAX; i++) {
        unsigned char c = (unsigned char)path[i];

        out[i] = (c < 0x20 || c > 0x7e) ? '?' : (char)c;
    }
    out[i] = '\0';
}

void
sbx_log_request(struct evhttp_request *req, int status, double t0)
{
    char path[LOG_PATH_MAX + 1];
    double ms = (sbx_now() - t0) * 1000.0;

    log_path(req, path, sizeof(path));
    if (status == 0) {
        fprintf(stderr, "%s %s drop %.1fms\n",
                method_name(evhttp_request_get_command(req)), path, ms);
        return;
    }
    fprintf(stderr, "%s %s %d %.1fms\n",
            method_name(evhttp_request_get_command(req)), path, status, ms);
}

/* libevent 2.1 has no phrase for 429 ("Client Error"); name the ones
 * tests and clients look at. */
static const char *
reason_phrase(int status)
{
    switch (status) {
    case 429:
        return "Too Many Requests";
    case 413:
        return "Payload Too Large";
    default:
        return NULL; /* libevent's own table */
    }
}

void
sbx_reply(struct evhttp_request *req, double t0, int status, const char *ctype,
          struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    if (ctype != NULL) {
        evhttp_remove_header(h, "Content-Type");
        evhttp_add_header(h, "Content-Type", ctype);
    }
    sbx_log_request(req, status, t0);
    evhttp_send_reply(req, status, reason_phrase(status), body);
}

int
sbx_json_append(struct evbuffer *out, struct json_object *obj)
{
    size_t len;
    const char *s = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);

    if (s == NULL) {
        return -1;
    }
    return evbuffer_add(out, s, len);
}

struct evbuffer *
sbx_error_body(int code, const char *message)
{
    struct evbuffer *b = evbuffer_new();
    struct json_object *o = json_object_new_object();

    if (b == NULL || o == NULL) {
        goto fail;
    }
    json_object_object_add(o, "code", json_object_new_int(code));
    json_object_object_add(o, "message", json_object_new_string(message));
    if (sbx_json_append(b, o) != 0) {
        goto fail;
    }
    json_object_put(o);
    return b;
fail:
    if (b != NULL) {
        evbuffer_free(b);
    }
    json_object_put(o);
    return NULL;
}

void
sbx_reply_error(struct evhttp_request *req, double t0, int status, int code,
                const char *message)
{
    struct evbuffer *b = sbx_error_body(code, message);

    sbx_reply(req, t0, status, "application/json", b);
    if (b != NULL) {
        evbuffer_free(b);
    }
}

void
sbx_reply_json(struct evhttp_request *req, double t0, int status,
               struct json_object *obj)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL || obj == NULL || sbx_json_append(b, obj) != 0) {
        if (b != NULL) {
            evbuffer_free(b);
        }
        json_object_put(obj);
        sbx_reply_error(req, t0, 500, 13, "XASSET.INTERNAL: out of memory");
        return;
    }
    json_object_put(obj);
    sbx_reply(req, t0, status, "application/json", b);
    evbuffer_free(b);
}

static int
only_whitespace(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n') {
            return 0;
        }
    }
    return 1;
}

struct json_object *
sbx_parse_body_object(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *data;
    struct json_tokener *tok;
    struct json_object *obj = NULL;

    if (len == 0 || len > 0x7fffffff) {
        return NULL;
    }
    data = (const char *)evbuffer_pullup(in, -1);
    tok = json_tokener_new_ex(64);
    if (data == NULL || tok == NULL) {
        goto out;
    }
    json_tokener_set_flags(tok,
                           JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    obj = json_tokener_parse_ex(tok, data, (int)len);
    if (json_tokener_get_error(tok) != json_tokener_success ||
        !only_whitespace(data + json_tokener_get_parse_end(tok),
                         len - json_tokener_get_parse_end(tok)) ||
        !json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        obj = NULL;
    }
out:
    if (tok != NULL) {
        json_tokener_free(tok);
    }
    return obj;
}

/* ---------------------------------------------------------------- jobs */

struct sbx_job *
sbx_job_new(struct sbx_server *srv, struct evhttp_request *req, double t0)
{
    struct sbx_job *job = calloc(1, sizeof(*job));

    if (job == NULL) {
        return NULL;
    }
    job->srv = srv;
    job->req = req;
    job->t0 = t0;
    job->status = 500;
    job->next = srv->jobs;
    if (srv->jobs != NULL) {
        srv->jobs->prev = job;
    }
    srv->jobs = job;
    return job;
}

static void
job_free(struct sbx_job *job)
{
    struct sbx_server *srv = job->srv;

    if (job->prev != NULL) {
        job->prev->next = job->next;
    } else {
        srv->jobs = job->next;
    }
    if (job->next != NULL) {
        job->next->prev = job->prev;
    }
    if (job->timer != NULL) {
        event_free(job->timer);
    }
    if (job->body != NULL) {
        evbuffer_free(job->body);
    }
    free(job);
}

void
sbx_job_set_reply(struct sbx_job *job, int status, const char *ctype,
                  struct evbuffer *body)
{
    job->status = status;
    job->ctype = ctype;
    if (job->body == NULL) {
        job->body = evbuffer_new();
    } else {
        evbuffer_drain(job->body, evbuffer_get_length(job->body));
    }
    if (job->body != NULL && body != NULL) {
        evbuffer_add_buffer(job->body, body);
    }
}

void
sbx_job_set_error(struct sbx_job *job, int status, int code,
                  const char *message)
{
    struct evbuffer *b = sbx_error_body(code, message);

    sbx_job_set_reply(job, status, "application/json", b);
    if (b != NULL) {
        evbuffer_free(b);
    }
}

static void
job_send(struct sbx_job *job)
{
    if (job->done != NULL) {
        job->done(job->priv, job->status, 0);
        job->done = NULL;
    }
    sbx_reply(job->req, job->t0, job->status, job->ctype, job->body);
    job_free(job);
}

static void
job_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    job_send(arg);
}

void
sbx_job_finish(struct sbx_job *job, long delay_ms)
{
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};

    if (delay_ms <= 0) {
        job_send(job);
        return;
    }
    if (job->timer == NULL) {
        job->timer = evtimer_new(job->srv->base, job_timer_cb, job);
    }
    if (job->timer == NULL || evtimer_add(job->timer, &tv) != 0) {
        job_send(job); /* late is worse than never only for tests */
    }
}

void
sbx_jobs_abort_all(struct sbx_server *srv)
{
    while (srv->jobs != NULL) {
        struct sbx_job *job = srv->jobs;

        if (job->done != NULL) {
            job->done(job->priv, 503, 1);
            job->done = NULL;
        }
        sbx_job_set_error(job, 503, 14, "XASSET.UNAVAILABLE: shutting down");
        sbx_reply(job->req, job->t0, job->status, job->ctype, job->body);
        job_free(job);
    }
}

/* ------------------------------------------------------------- routing */

static void
not_found(struct evhttp_request *req, double t0)
{
    sbx_reply_error(req, t0, 404, 5, "XASSET.NOT_FOUND: unknown path");
}

/* Matches /v1/businesses/{businessId}/assets; copies the id. */
static int
match_create(const char *path, char *bid, size_t bidlen)
{
    static const char prefix[] = "/v1/businesses/";
    static const char suffix[] = "/assets";
    size_t plen = sizeof(prefix) - 1;
    size_t slen = sizeof(suffix) - 1;
    size_t len = strlen(path);
    size_t idlen;

    if (len < plen + slen || strncmp(path, prefix, plen) != 0 ||
        strcmp(path + len - slen, suffix) != 0) {
        return 0;
    }
    idlen = len - plen - slen;
    if (memchr(path + plen, '/', idlen) != NULL) {
        return 0;
    }
    snprintf(bid, bidlen, "%.*s", (int)idlen, path + plen);
    return 1;
}

static const char *
after_prefix(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);

    return strncmp(path, prefix, n) == 0 ? path + n : NULL;
}

void
sbx_handle_request(struct evhttp_request *req, void *arg)
{
    struct sbx_server *srv = arg;
    double t0 = sbx_now();
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u != NULL ? evhttp_uri_get_path(u) : NULL;
    const char *rest;
    char bid[256];

    if (path == NULL || path[0] == '\0') {
        path = "/";
    }
    if (match_create(path, bid, sizeof(bid))) {
        sbx_route_create(srv, req, bid, t0);
    } else if ((rest = after_prefix(path, "/cdn/assets/")) != NULL) {
        sbx_route_cdn(srv, req, rest, t0);
    } else if ((rest = after_prefix(path, "/samples/")) != NULL) {
        sbx_route_samples(srv, req, rest, t0);
    } else if ((rest = after_prefix(path, "/_sandbox/")) != NULL) {
        sbx_route_control(srv, req, rest, t0);
    } else {
        not_found(req, t0);
    }
}
