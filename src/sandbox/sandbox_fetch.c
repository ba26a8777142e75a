/*
 * sandbox_fetch.c - the GET Connectly makes of a source uri: plain http
 * to loopback hosts only, one disposable connection per fetch, an overall
 * deadline and a size cap.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/keyvalq_struct.h>

#include "sandbox.h"

#define FETCH_MAX_HEADERS 65536

struct sbx_fetch {
    struct sbx_server *srv;
    struct evhttp_connection *evcon; /* ours; never free-on-completion */
    struct event *ev;                /* deadline, then hand-over */
    sbx_fetch_done_fn done;
    void *arg;
    int answered; /* libevent called back */
    int ok;
    char *ctype;
    struct evbuffer *body;
};

static void
fetch_free(struct sbx_fetch *f)
{
    if (f->evcon != NULL) {
        evhttp_connection_free(f->evcon); /* frees its request, no callback */
    }
    if (f->ev != NULL) {
        event_free(f->ev);
    }
    if (f->body != NULL) {
        evbuffer_free(f->body);
    }
    free(f->ctype);
    free(f);
}

void
sbx_fetch_cancel(struct sbx_fetch *fetch)
{
    if (fetch != NULL) {
        fetch_free(fetch);
    }
}

static void
take_response(struct sbx_fetch *f, struct evhttp_request *req)
{
    int code = evhttp_request_get_response_code(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    const char *ct;

    if (code < 200 || code > 299) {
        return;
    }
    if (evbuffer_get_length(in) > f->srv->cfg.max_asset_bytes) {
        return;
    }
    ct = evhttp_find_header(evhttp_request_get_input_headers(req),
                            "Content-Type");
    f->ctype = strdup(ct != NULL ? ct : "application/octet-stream");
    if (f->ctype == NULL || evbuffer_add_buffer(f->body, in) != 0) {
        return;
    }
    f->ok = 1;
}

/* libevent's answer (NULL or code 0 on failure). The connection is not
 * freed here, inside its own callback: the hand-over event runs from the
 * event loop, frees it and calls the caller, so nothing re-enters
 * libevent from this stack. */
static void
fetch_http_cb(struct evhttp_request *req, void *arg)
{
    struct sbx_fetch *f = arg;

    f->answered = 1;
    if (req != NULL) {
        take_response(f, req);
    }
    event_del(f->ev);
    event_active(f->ev, EV_TIMEOUT, 1);
}

static void
fetch_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sbx_fetch *f = arg;
    size_t len = evbuffer_get_length(f->body);
    const unsigned char *data = evbuffer_pullup(f->body, -1);

    (void)fd;
    (void)what;
    if (!f->answered) {
        f->ok = 0; /* deadline passed; fetch_free() drops the request */
    }
    f->done(f->arg, f->ok, f->ok ? f->ctype : NULL, f->ok ? data : NULL,
            f->ok ? len : 0);
    fetch_free(f);
}

/* Connectly cannot reach our loopback, and we must not reach anything
 * else: only loopback hosts are fetched. */
static int
host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (strcasecmp(host, "localhost") == 0) {
        return 1;
    }
    if (inet_pton(AF_INET, host, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        return IN6_IS_ADDR_LOOPBACK(&a6);
    }
    return 0;
}

/* Splits URI into a bare host, port and request target; -1 when it is
 * not a fetchable absolute http uri. */
static int
parse_source(const char *uri, char *host, size_t hostlen, int *port,
             char *target, size_t targetlen)
{
    struct evhttp_uri *u = evhttp_uri_parse_with_flags(uri, 0);
    const char *scheme, *h, *path, *query;
    int rc = -1;

    if (u == NULL) {
        return -1;
    }
    scheme = evhttp_uri_get_scheme(u);
    h = evhttp_uri_get_host(u);
    path = evhttp_uri_get_path(u);
    query = evhttp_uri_get_query(u);
    if (scheme == NULL || strcasecmp(scheme, "http") != 0 || h == NULL) {
        goto out;
    }
    if (h[0] == '[') {
        snprintf(host, hostlen, "%.*s", (int)strcspn(h + 1, "]"), h + 1);
    } else {
        snprintf(host, hostlen, "%s", h);
    }
    *port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
    if (host[0] == '\0' || !host_is_loopback(host)) {
        goto out;
    }
    if (snprintf(target, targetlen, "%s%s%s",
                 path != NULL && path[0] != '\0' ? path : "/",
                 query != NULL ? "?" : "",
                 query != NULL ? query : "") >= (int)targetlen) {
        goto out;
    }
    rc = 0;
out:
    evhttp_uri_free(u);
    return rc;
}

static int
add_request_headers(struct evhttp_request *req, const char *host, int port)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char hostport[300];
    int v6 = strchr(host, ':') != NULL;

    if (port == 80) {
        snprintf(hostport, sizeof(hostport), v6 ? "[%s]" : "%s", host);
    } else {
        snprintf(hostport, sizeof(hostport), v6 ? "[%s]:%d" : "%s:%d", host,
                 port);
    }
    if (evhttp_add_header(h, "Host", hostport) != 0 ||
        evhttp_add_header(h, "Connection", "close") != 0 ||
        evhttp_add_header(h, "User-Agent", "connectly-sandbox-fetch") != 0 ||
        evhttp_add_header(h, "Accept", "*/*") != 0) {
        return -1;
    }
    return 0;
}

static struct sbx_fetch *
fetch_new(struct sbx_server *srv, sbx_fetch_done_fn done, void *arg)
{
    struct sbx_fetch *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return NULL;
    }
    f->srv = srv;
    f->done = done;
    f->arg = arg;
    f->ev = evtimer_new(srv->base, fetch_event_cb, f);
    f->body = evbuffer_new();
    if (f->ev == NULL || f->body == NULL) {
        fetch_free(f);
        return NULL;
    }
    return f;
}

static int
open_connection(struct sbx_fetch *f, const char *host, int port)
{
    long ms = f->srv->cfg.fetch_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    f->evcon = evhttp_connection_base_new(f->srv->base, f->srv->dns, host,
                                          (unsigned short)port);
    if (f->evcon == NULL) {
        return -1;
    }
    evhttp_connection_set_timeout_tv(f->evcon, &tv);
    evhttp_connection_set_retries(f->evcon, 0);
    evhttp_connection_set_max_body_size(
        f->evcon, (ev_ssize_t)f->srv->cfg.max_asset_bytes);
    evhttp_connection_set_max_headers_size(f->evcon, FETCH_MAX_HEADERS);
    return evtimer_add(f->ev, &tv);
}

struct sbx_fetch *
sbx_fetch_start(struct sbx_server *srv, const char *uri, sbx_fetch_done_fn done,
                void *arg)
{
    char host[256];
    char target[4096];
    int port;
    struct sbx_fetch *f;
    struct evhttp_request *req;

    if (parse_source(uri, host, sizeof(host), &port, target, sizeof(target)) !=
        0) {
        return NULL;
    }
    f = fetch_new(srv, done, arg);
    if (f == NULL) {
        return NULL;
    }
    if (open_connection(f, host, port) != 0) {
        fetch_free(f);
        return NULL;
    }
    req = evhttp_request_new(fetch_http_cb, f);
    if (req == NULL || add_request_headers(req, host, port) != 0) {
        if (req != NULL) {
            evhttp_request_free(req);
        }
        fetch_free(f);
        return NULL;
    }
    if (evhttp_make_request(f->evcon, req, EVHTTP_REQ_GET, target) != 0) {
        /* libevent has unlinked REQ but kept it; leaking it is safer
         * than guessing its state. */
        fetch_free(f);
        return NULL;
    }
    return f;
}
