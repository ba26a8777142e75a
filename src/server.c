/*
 * server.c - the evhttp front end: binds the listen address, sets the
 * limits on caller connections, routes requests, answers /healthz and
 * /readyz, 404/405 and the guard's refusals in Connectly's error shape.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "address.h"
#include "auth.h"
#include "config.h"
#include "conns.h"
#include "create.h"
#include "gateway.h"
#include "guard.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "reply.h"
#include "server.h"
#include "tls_server.h"
#include "util.h"

#define HEADERS_MAX_BYTES AGW_GUARD_HEAD_MAX
/* The guard refuses a body over max_body_bytes before evhttp reads it,
 * with a 413 in Connectly's shape. evhttp's own cap (a plain 413) stays
 * above it, for connections opened before a reload raised the limit. */
#define BODY_HARD_CAP_MIN (1024 * 1024)

#define CREATE_PREFIX "/v1/businesses/"
#define CREATE_SUFFIX "/assets"

/* Out of file descriptors: accept again after this, log at most this often. */
#define ACCEPT_PAUSE_MS 100
#define ACCEPT_WARN_EVERY_US (10 * 1000000)

/* One listener: plain HTTP, or TLS (SPEC §9). evhttp makes each
 * connection's bufferevent per evhttp, not per socket, hence one evhttp
 * each. */
struct front {
    struct evhttp *http; /* NULL: this listener is off */
    struct evhttp_bound_socket *listener;
    /* LISTENER's, for server_of_listener(): read by other workers' threads
     * (they share the socket), so set and cleared under all_servers_lock. */
    struct evconnlistener *lev;
};

enum { FRONT_PLAIN, FRONT_TLS, FRONTS };

struct agw_server {
    struct agw_gateway *gw;
    struct front fronts[FRONTS];
    struct agw_conns *conns;
    struct agw_guard_policy policy; /* every connection's guard's */
    struct event *accept_resume;
    int64_t accept_warned_us;
    struct agw_server *next; /* all_servers */
};

/* libevent's accept error callback gets no argument of ours: find the
 * server by its listener. */
static struct agw_server *all_servers;
static pthread_mutex_t all_servers_lock = PTHREAD_MUTEX_INITIALIZER;

static void
register_server(struct agw_server *srv, bool add)
{
    struct agw_server **p;

    pthread_mutex_lock(&all_servers_lock);
    for (p = &all_servers; *p != NULL && *p != srv; p = &(*p)->next) {
    }
    if (add && *p == NULL) {
        srv->next = all_servers;
        all_servers = srv;
    } else if (!add && *p != NULL) {
        *p = srv->next;
    }
    pthread_mutex_unlock(&all_servers_lock);
}

static struct agw_server *
server_of_listener(struct evconnlistener *lev)
{
    struct agw_server *srv;

    pthread_mutex_lock(&all_servers_lock);
    for (srv = all_servers; srv != NULL; srv = srv->next) {
        if (srv->fronts[FRONT_PLAIN].lev == lev ||
            srv->fronts[FRONT_TLS].lev == lev) {
            break;
        }
    }
    pthread_mutex_unlock(&all_servers_lock);
    return srv;
}

static const char *
method_name(struct evhttp_request *req)
{
    switch (evhttp_request_get_command(req)) {
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
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    default:
        return "OTHER";
    }
}

/* The access line of an answer not to a create call (those log their
 * own); health checks and scrapes only at debug. Before sending: evhttp
 * may free REQ inside the send. */
static void
note(struct evhttp_request *req, const char *rid, int status)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    struct agw_access a = {
        .request_id = rid,
        .caller = "-",
        .business_id = "-",
        .method = method_name(req),
        .path = evhttp_request_get_uri(req),
        .status = status,
        .cache = "-",
        .probe = path != NULL && (strcmp(path, "/healthz") == 0 ||
                                  strcmp(path, "/readyz") == 0 ||
                                  strcmp(path, "/metrics") == 0),
    };

    agw_log_access(&a);
}

static void
reply_error(struct evhttp_request *req, const char *rid, int status, int code,
            const char *message)
{
    note(req, rid, status);
    agw_reply_error(req, status, code, message);
}

static void
reply_json_text(struct evhttp_request *req, const char *rid, int status,
                const char *json)
{
    struct agw_response resp = {
        .status = status,
        .body = (char *)json,
        .len = strlen(json),
        .retry_after_s = -1,
    };

    note(req, rid, status);
    agw_reply_send(req, &resp);
}

static void
reply_method_not_allowed(struct evhttp_request *req, const char *rid,
                         const char *allow)
{
    char message[96];

    snprintf(message, sizeof(message), "method not allowed; use %s", allow);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    reply_error(req, rid, 405, AGW_CODE_INVALID_ARGUMENT, message);
}

static int
is_get(struct evhttp_request *req)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

    return cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
}

static void
handle_healthz(struct agw_server *srv, struct evhttp_request *req,
               const char *rid)
{
    if (!is_get(req)) {
        reply_method_not_allowed(req, rid, "GET, HEAD");
        return;
    }
    reply_json_text(req, rid, 200, "{\"status\":\"ok\"}");
}

/* With sentinels (SPEC §10): ,"redis_master":"host:port" (the master this
 * worker's commands go to) or null while it has none; characters outside
 * an address's are shown as '?' so that nothing needs escaping. Without:
 * nothing, the answer keeps its shape. */
static void
redis_master_json(const struct agw_gateway *gw, char *out, size_t len)
{
    char addr[300];

    if (gw->sentinel == NULL) {
        out[0] = '\0';
        return;
    }
    if (!agw_redis_address(gw->redis, addr, sizeof(addr))) {
        snprintf(out, len, ",\"redis_master\":null");
        return;
    }
    for (char *p = addr; *p != '\0'; p++) {
        if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789._:/[]-",
                   *p) == NULL) {
            *p = '?';
        }
    }
    snprintf(out, len, ",\"redis_master\":\"%s\"", addr);
}

static void
handle_readyz(struct agw_server *srv, struct evhttp_request *req,
              const char *rid)
{
    char master[340];
    char body[512];

    if (!is_get(req)) {
        reply_method_not_allowed(req, rid, "GET, HEAD");
        return;
    }
    if (srv->gw->draining) {
        reply_json_text(req, rid, 503,
                        "{\"status\":\"unavailable\",\"reason\":\"draining\"}");
        return;
    }
    if (srv->gw->redis == NULL) {
        reply_json_text(req, rid, 200,
                        "{\"status\":\"ready\",\"store\":\"memory\"}");
        return;
    }
    redis_master_json(srv->gw, master, sizeof(master));
    if (agw_metrics_gauge_get(AGW_M_REDIS_UP) == 1) {
        /* Every worker's connections, not only the ones of the worker
         * that took this probe. */
        snprintf(body, sizeof(body),
                 "{\"status\":\"ready\",\"store\":\"redis\"%s}", master);
    } else {
        /* Still doing its job, on the local fallback (SPEC §4). */
        snprintf(body, sizeof(body),
                 "{\"status\":\"degraded\",\"store\":\"redis\","
                 "\"reason\":\"redis unreachable: local dedupe and "
                 "rate limit\"%s}",
                 master);
    }
    reply_json_text(req, rid, 200, body);
}

static void
handle_metrics(struct agw_server *srv, struct evhttp_request *req,
               const char *rid)
{
    struct evbuffer *buf;

    if (!is_get(req)) {
        reply_method_not_allowed(req, rid, "GET, HEAD");
        return;
    }
    buf = evbuffer_new();
    if (buf == NULL || agw_metrics_render(buf) != 0) {
        if (buf != NULL) {
            evbuffer_free(buf);
        }
        reply_error(req, rid, 503, AGW_CODE_UNAVAILABLE, "out of memory");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      AGW_METRICS_CONTENT_TYPE);
    agw_metrics_count_request(200);
    note(req, rid, 200);
    evhttp_send_reply(req, 200, "OK", buf);
    evbuffer_free(buf);
}

/*
 * If PATH is /v1/businesses/{id}/assets, copies {id} into ID (which may
 * still be an invalid business id: the create handler says so) and
 * returns 1.
 */
static int
match_create_path(const char *path, char *id, size_t idlen)
{
    size_t plen = strlen(CREATE_PREFIX);
    size_t slen = strlen(CREATE_SUFFIX);
    size_t total = strlen(path);
    size_t n;

    if (total <= plen + slen || strncmp(path, CREATE_PREFIX, plen) != 0 ||
        strcmp(path + total - slen, CREATE_SUFFIX) != 0) {
        return 0;
    }
    n = total - plen - slen;
    if (n >= idlen || memchr(path + plen, '/', n) != NULL) {
        return 0;
    }
    memcpy(id, path + plen, n);
    id[n] = '\0';
    return 1;
}

/*
 * The guard refused the request (its body was not read) or its
 * connection; the answer closes the connection. A create with its own
 * head goes to the create pipeline, which authenticates it first and
 * answers with its usual headers and access line.
 */
static void
refuse(struct agw_server *srv, struct evhttp_request *req, const char *path,
       const struct agw_refusal *r)
{
    char business_id[128];
    char rid[AGW_REQUEST_ID_MAX + 1];
    struct agw_access a = {
        .request_id = rid,
        .caller = "-",
        .business_id = "-",
        .method = "-",
        .path = "-",
        .status = r->status,
        .cache = "-",
    };

    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                      "close");
    if (!r->stand_in && evhttp_request_get_command(req) == EVHTTP_REQ_POST &&
        match_create_path(path, business_id, sizeof(business_id))) {
        agw_create_refuse(srv->gw, req, business_id, r);
        return;
    }
    agw_reply_request_id(req, rid);
    if (r->stand_in) {
        agw_log_access(&a); /* what the caller sent was never parsed */
        agw_reply_error(req, r->status, r->code, r->message);
        return;
    }
    reply_error(req, rid, r->status, r->code, r->message);
}

static void
route(struct evhttp_request *req, void *arg)
{
    struct agw_server *srv = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    char business_id[128];
    char request_id[AGW_REQUEST_ID_MAX + 1];
    char message[160];
    const struct agw_refusal *refusal;

    if (path == NULL || *path == '\0') {
        path = "/";
    }
    if (srv->gw->draining) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                          "close");
    }
    refusal = agw_conns_request(srv->conns, req);
    if (refusal != NULL) {
        refuse(srv, req, path, refusal);
        return;
    }
    if (match_create_path(path, business_id, sizeof(business_id))) {
        if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
            agw_reply_request_id(req, request_id);
            reply_method_not_allowed(req, request_id, "POST");
            return;
        }
        agw_create_handle(srv->gw, req, business_id);
        return;
    }
    agw_reply_request_id(req, request_id);
    if (strcmp(path, "/healthz") == 0) {
        handle_healthz(srv, req, request_id);
    } else if (strcmp(path, "/readyz") == 0) {
        handle_readyz(srv, req, request_id);
    } else if (strcmp(path, "/metrics") == 0) {
        handle_metrics(srv, req, request_id);
    } else {
        snprintf(message, sizeof(message), "no route for %.100s", path);
        reply_error(req, request_id, 404, AGW_CODE_NOT_FOUND, message);
    }
}

static int
bound_port(struct evhttp_bound_socket *listener)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    evutil_socket_t fd = evhttp_bound_socket_get_fd(listener);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        return -1;
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/*
 * The guard's early look at a request head (guard.h): with callers
 * authenticated, a create that carries a body but no caller identity
 * (bearer token or client certificate, as [auth] mode says) is refused
 * before its body is read. The create pipeline checks the token again
 * and answers the 401 itself, exactly as when the body was read.
 */
static bool
check_head(void *arg, const struct agw_guard_head *head,
           struct agw_refusal *out)
{
    struct agw_server *srv = arg;
    struct evhttp_uri *uri;
    const char *path;
    char business_id[128];
    bool create;
    enum agw_auth_result res;
    struct agw_peer_cert cert;
    bool has_cert;

    if (srv->gw->auth == NULL || head->body_bytes == 0 ||
        strcmp(head->method, "POST") != 0) {
        return true;
    }
    uri = evhttp_uri_parse_with_flags(head->target, EVHTTP_URI_NONCONFORMANT);
    path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    create = path != NULL &&
             match_create_path(path, business_id, sizeof(business_id));
    if (uri != NULL) {
        evhttp_uri_free(uri);
    }
    if (!create) {
        return true;
    }
    has_cert = srv->gw->cfg->auth_mode != AGW_AUTH_TOKEN &&
               agw_tls_server_peer(head->transport, &cert);
    res = agw_auth_identify(srv->gw->auth, srv->gw->cfg->auth_mode,
                            head->authorization, has_cert ? &cert : NULL, NULL,
                            NULL);
    if (res == AGW_AUTH_OK || res == AGW_AUTH_FORBIDDEN) {
        return true;
    }
    *out = (struct agw_refusal){
        .status = 401,
        .code = AGW_CODE_UNAUTHENTICATED,
        .message = "caller not identified",
    };
    return false;
}

static void
set_policy(struct agw_server *srv, const struct agw_config *cfg)
{
    srv->policy.max_body = cfg->max_body_bytes;
    srv->policy.max_buffered = cfg->max_buffered_bytes;
    srv->policy.check_head = check_head;
    srv->policy.arg = srv;
}

static void
apply_limits(struct evhttp *http, const struct agw_config *cfg)
{
    /* Idle and slow callers are cut by conns.c's sweep at
     * client_timeout_ms, which knows when a request is being answered;
     * evhttp's own timeout runs from when it last enabled reading, also
     * while a call is in progress, so it is only the backstop: a call may
     * take request_deadline_ms after the caller's idle time. */
    int64_t ms = (int64_t)cfg->client_timeout_ms + cfg->request_deadline_ms;
    struct timeval idle = {
        .tv_sec = (time_t)(ms / 1000),
        .tv_usec = (suseconds_t)(ms % 1000) * 1000,
    };
    ev_ssize_t body_cap = (ev_ssize_t)cfg->max_body_bytes * 4;

    if (body_cap < BODY_HARD_CAP_MIN) {
        body_cap = BODY_HARD_CAP_MIN;
    }
    evhttp_set_timeout_tv(http, &idle);
    evhttp_set_max_headers_size(http, HEADERS_MAX_BYTES);
    evhttp_set_max_body_size(http, body_cap);
    /* Every method reaches route(), so wrong ones get our 405, not 501. */
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
                                         EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                         EVHTTP_REQ_OPTIONS);
    evhttp_set_default_content_type(http, "application/json");
}

static void
on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct agw_server *srv = arg;

    for (int i = 0; i < FRONTS; i++) {
        if (srv->fronts[i].listener != NULL) {
            evconnlistener_enable(
                evhttp_bound_socket_get_listener(srv->fronts[i].listener));
        }
    }
}

/*
 * accept() failed. Out of descriptors the listening socket stays readable,
 * and retrying at once would spin; pause accepting briefly instead, and
 * say so at most every 10 s.
 */
static void
on_accept_error(struct evconnlistener *lev, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    struct agw_server *srv = server_of_listener(lev);
    struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};
    int64_t now = agw_now_us();

    if (srv == NULL) {
        return;
    }
    if (now - srv->accept_warned_us >= ACCEPT_WARN_EVERY_US) {
        srv->accept_warned_us = now;
        log_warn("accept failed: %s; pausing new connections for %d ms "
                 "(said at most every 10 s)",
                 evutil_socket_error_to_string(err), ACCEPT_PAUSE_MS);
    }
    evconnlistener_disable(lev);
    evtimer_add(srv->accept_resume, &pause);
}

/* Binds a new listening socket, or accepts on a copy of SHARE's. */
static bool
listen_on(struct front *f, const char *host, int port,
          const struct front *share)
{
    evutil_socket_t fd;

    if (share == NULL) {
        f->listener =
            evhttp_bind_socket_with_handle(f->http, host, (ev_uint16_t)port);
        return f->listener != NULL;
    }
    /* Every worker's evhttp accepts on the same socket; the copy lets each
     * close its own when it stops accepting. */
    fd = dup(evhttp_bound_socket_get_fd(share->listener));
    if (fd < 0) {
        return false;
    }
    f->listener = evhttp_accept_socket_with_handle(f->http, fd);
    if (f->listener == NULL) {
        evutil_closesocket(fd);
    }
    return f->listener != NULL;
}

/* Serves every route on ADDR (plain, or TLS when TLS is set), or on a
 * copy of SHARE's socket. */
static bool
open_front(struct agw_server *srv, struct front *f, const char *addr,
           struct agw_tls_server *tls, const struct front *share, char *err,
           size_t errlen)
{
    char host[AGW_LISTEN_HOST_MAX + 1];
    char why[256];
    int port;

    if (!agw_address_parse_listen(addr, host, &port, why, sizeof(why))) {
        snprintf(err, errlen, "%s: %s", tls ? "tls_listen" : "listen", why);
        return false;
    }
    f->http = evhttp_new(srv->gw->base);
    if (f->http == NULL) {
        snprintf(err, errlen, "evhttp_new failed");
        return false;
    }
    apply_limits(f->http, srv->gw->cfg);
    evhttp_set_gencb(f->http, route, srv);
    evhttp_set_bevcb(f->http, tls ? agw_conns_bevcb_tls : agw_conns_bevcb,
                     srv->conns);
    if (!listen_on(f, host, port, share)) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return false;
    }
    f->lev = evhttp_bound_socket_get_listener(f->listener);
    evconnlistener_set_error_cb(f->lev, on_accept_error);
    if (share == NULL) {
        log_info("listening on %s:%d%s", host, bound_port(f->listener),
                 tls ? " (TLS)" : "");
        printf("listening %s%s:%d\n", tls ? "tls " : "", host,
               bound_port(f->listener));
        fflush(stdout);
    }
    return true;
}

struct agw_server *
agw_server_start(struct agw_gateway *gw, struct agw_tls_server *tls,
                 const struct agw_server *share, char *err, size_t errlen)
{
    struct agw_server *srv = calloc(1, sizeof(*srv));
    const struct agw_config *cfg = gw->cfg;

    if (srv == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->gw = gw;
    set_policy(srv, cfg);
    srv->conns = agw_conns_new(gw->base, cfg->client_timeout_ms,
                               (size_t)cfg->max_clients, &srv->policy);
    srv->accept_resume = evtimer_new(gw->base, on_accept_resume, srv);
    if (srv->conns == NULL || srv->accept_resume == NULL) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }
    agw_conns_set_tls(srv->conns, tls);
    if (cfg->listen != NULL &&
        !open_front(srv, &srv->fronts[FRONT_PLAIN], cfg->listen, NULL,
                    share ? &share->fronts[FRONT_PLAIN] : NULL, err, errlen)) {
        goto failed;
    }
    if (cfg->tls_listen != NULL &&
        (tls == NULL ||
         !open_front(srv, &srv->fronts[FRONT_TLS], cfg->tls_listen, tls,
                     share ? &share->fronts[FRONT_TLS] : NULL, err, errlen))) {
        if (tls == NULL) {
            snprintf(err, errlen, "tls_listen: no TLS context");
        }
        goto failed;
    }
    register_server(srv, true);
    return srv;

failed:
    agw_server_free(srv);
    return NULL;
}

void
agw_server_reconfigure(struct agw_server *srv, const struct agw_config *cfg)
{
    for (int i = 0; i < FRONTS; i++) {
        if (srv->fronts[i].http != NULL) {
            apply_limits(srv->fronts[i].http, cfg);
        }
    }
    set_policy(srv, cfg);
    agw_conns_set_limits(srv->conns, cfg->client_timeout_ms,
                         (size_t)cfg->max_clients);
}

void
agw_server_stop_accepting(struct agw_server *srv)
{
    for (int i = 0; i < FRONTS; i++) {
        struct front *f = &srv->fronts[i];

        if (f->listener != NULL) {
            pthread_mutex_lock(&all_servers_lock);
            f->lev = NULL;
            pthread_mutex_unlock(&all_servers_lock);
            evhttp_del_accept_socket(f->http, f->listener);
            f->listener = NULL;
        }
    }
}

size_t
agw_server_connections(const struct agw_server *srv)
{
    return agw_conns_count(srv->conns);
}

void
agw_server_free(struct agw_server *srv)
{
    if (srv == NULL) {
        return;
    }
    register_server(srv, false);
    if (srv->accept_resume != NULL) {
        event_free(srv->accept_resume);
    }
    for (int i = 0; i < FRONTS; i++) {
        if (srv->fronts[i].http != NULL) {
            /* closes connections: before conns go */
            evhttp_free(srv->fronts[i].http);
        }
    }
    agw_conns_free(srv->conns);
    free(srv);
}
