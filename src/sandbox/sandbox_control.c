/*
 * sandbox_control.c - the test controls under /_sandbox/ (no key needed):
 * stats, the list of recorded calls, fault switches and reset.
 */
#include <stdio.h>
#include <string.h>

#include "sandbox.h"

static int
method_is(struct evhttp_request *req, enum evhttp_cmd_type want, double t0)
{
    if (evhttp_request_get_command(req) == want) {
        return 1;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                      want == EVHTTP_REQ_GET ? "GET" : "POST");
    sbx_reply_error(req, t0, 405, 12,
                    "XASSET.UNIMPLEMENTED: method not allowed");
    return 0;
}

static struct json_object *
ok_object(void)
{
    struct json_object *o = json_object_new_object();

    if (o != NULL) {
        json_object_object_add(o, "ok", json_object_new_boolean(1));
    }
    return o;
}

static void
get_calls(struct sbx_server *srv, struct evhttp_request *req, double t0)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL || sbx_calls_dump(srv->calls, b) != 0) {
        if (b != NULL) {
            evbuffer_free(b);
        }
        sbx_reply_error(req, t0, 500, 13, "XASSET.INTERNAL: out of memory");
        return;
    }
    sbx_reply(req, t0, 200, "application/json", b);
    evbuffer_free(b);
}

/* Test logs read better when they say which faults were active. */
static void
log_faults(struct sbx_server *srv)
{
    struct json_object *d = sbx_faults_describe(srv->faults);

    if (d != NULL) {
        fprintf(
            stderr, "faults now %s\n",
            json_object_to_json_string_ext(
                d, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(d);
    }
}

static void
post_faults(struct sbx_server *srv, struct evhttp_request *req, double t0)
{
    struct json_object *body = sbx_parse_body_object(req);
    char err[160];
    char msg[200];

    if (sbx_faults_apply(srv->faults, body, err, sizeof(err)) != 0) {
        json_object_put(body);
        snprintf(msg, sizeof(msg), "XASSET.INVALID_ARGUMENT: %s", err);
        sbx_reply_error(req, t0, 400, 3, msg);
        return;
    }
    json_object_put(body);
    log_faults(srv);
    sbx_reply_json(req, t0, 200, ok_object());
}

static void
faults_route(struct sbx_server *srv, struct evhttp_request *req, double t0)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

    if (cmd == EVHTTP_REQ_GET) {
        sbx_reply_json(req, t0, 200, sbx_faults_describe(srv->faults));
        return;
    }
    if (cmd != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          "GET, POST");
        sbx_reply_error(req, t0, 405, 12,
                        "XASSET.UNIMPLEMENTED: method not allowed");
        return;
    }
    post_faults(srv, req, t0);
}

void
sbx_route_control(struct sbx_server *srv, struct evhttp_request *req,
                  const char *name, double t0)
{
    if (strcmp(name, "stats") == 0) {
        if (method_is(req, EVHTTP_REQ_GET, t0)) {
            sbx_reply_json(req, t0, 200, sbx_calls_stats(srv->calls));
        }
    } else if (strcmp(name, "calls") == 0) {
        if (method_is(req, EVHTTP_REQ_GET, t0)) {
            get_calls(srv, req, t0);
        }
    } else if (strcmp(name, "faults") == 0) {
        faults_route(srv, req, t0);
    } else if (strcmp(name, "reset") == 0) {
        if (method_is(req, EVHTTP_REQ_POST, t0)) {
            sbx_calls_reset(srv->calls);
            sbx_faults_reset(srv->faults);
            sbx_reply_json(req, t0, 200, ok_object());
        }
    } else {
        sbx_reply_error(req, t0, 404, 5, "XASSET.NOT_FOUND: unknown path");
    }
}
