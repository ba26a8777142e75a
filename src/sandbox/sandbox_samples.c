/*
 * sandbox_samples.c - the read side: GET /cdn/assets/{id} serves stored
 * bytes, and GET /samples/{name} is a built-in source server with
 * deterministic content, missing files and slow answers for tests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sandbox.h"

#define SAMPLE_MIN_BYTES 1024
#define SLOW_MAX_MS 30000L

static int
is_read_method(struct evhttp_request *req)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

    return cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
}

static void
method_not_allowed(struct evhttp_request *req, double t0, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    sbx_reply_error(req, t0, 405, 12,
                    "XASSET.UNIMPLEMENTED: method not allowed");
}

void
sbx_route_cdn(struct sbx_server *srv, struct evhttp_request *req,
              const char *raw_id, double t0)
{
    size_t idlen = 0;
    char *id;
    const char *ctype;
    const unsigned char *data;
    size_t len;
    struct evbuffer *b;

    if (!is_read_method(req)) {
        method_not_allowed(req, t0, "GET, HEAD");
        return;
    }
    id = evhttp_uridecode(raw_id, 0, &idlen);
    if (id == NULL || strlen(id) != idlen ||
        sbx_store_get(srv->store, id, &ctype, &data, &len) != 0) {
        free(id);
        sbx_reply_error(req, t0, 404, 5, "XASSET.NOT_FOUND: asset not found");
        return;
    }
    free(id);
    b = evbuffer_new();
    if (b == NULL || evbuffer_add(b, data, len) != 0) {
        if (b != NULL) {
            evbuffer_free(b);
        }
        sbx_reply_error(req, t0, 500, 13, "XASSET.INTERNAL: out of memory");
        return;
    }
    sbx_reply(req, t0, 200, ctype, b);
    evbuffer_free(b);
}

static const char *
sample_type(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *dot = strrchr(slash != NULL ? slash : name, '.');

    if (dot == NULL) {
        return "application/octet-stream";
    }
    if (strcasecmp(dot, ".png") == 0) {
        return "image/png";
    }
    if (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0) {
        return "image/jpeg";
    }
    if (strcasecmp(dot, ".pdf") == 0) {
        return "application/pdf";
    }
    return "application/octet-stream";
}

/* "sample:{name}\n" repeated until at least SAMPLE_MIN_BYTES. */
static int
sample_body(struct evbuffer *b, const char *name)
{
    size_t unit = strlen(name) + 8;

    for (size_t n = 0; n < SAMPLE_MIN_BYTES; n += unit) {
        if (evbuffer_add_printf(b, "sample:%s\n", name) < 0) {
            return -1;
        }
    }
    return 0;
}

/* slow/{ms}/{name}: returns the delay and points NAME at the rest; -1
 * when REST is not of that form. */
static long
parse_slow(const char *rest, const char **name)
{
    const char *p = rest + 5;
    long ms = 0;

    if (strncmp(rest, "slow/", 5) != 0 || *p < '0' || *p > '9') {
        return -1;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        if (ms <= SLOW_MAX_MS) {
            ms = ms * 10 + (*p - '0');
        }
    }
    if (*p != '/' || p[1] == '\0') {
        return -1;
    }
    *name = p + 1;
    return ms > SLOW_MAX_MS ? SLOW_MAX_MS : ms;
}

static void
set_sample_reply(struct sbx_job *job, const char *name)
{
    struct evbuffer *b;

    if (name[0] == '\0' || strncmp(name, "missing", 7) == 0) {
        sbx_job_set_error(job, 404, 5, "XASSET.NOT_FOUND: no such sample");
        return;
    }
    b = evbuffer_new();
    if (b == NULL || sample_body(b, name) != 0) {
        sbx_job_set_error(job, 500, 13, "XASSET.INTERNAL: out of memory");
    } else {
        sbx_job_set_reply(job, 200, sample_type(name), b);
    }
    if (b != NULL) {
        evbuffer_free(b);
    }
}

void
sbx_route_samples(struct sbx_server *srv, struct evhttp_request *req,
                  const char *rest, double t0)
{
    const char *name = rest;
    long delay = parse_slow(rest, &name);
    struct sbx_job *job;

    if (!is_read_method(req)) {
        method_not_allowed(req, t0, "GET, HEAD");
        return;
    }
    if (delay < 0) {
        name = rest;
    }
    job = sbx_job_new(srv, req, t0);
    if (job == NULL) {
        sbx_reply_error(req, t0, 500, 13, "XASSET.INTERNAL: out of memory");
        return;
    }
    set_sample_reply(job, name);
    sbx_job_finish(job, delay);
}
