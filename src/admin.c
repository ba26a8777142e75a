/*
 * admin.c - the operators' listener (SPEC §12, admin.h): routes, the
 * operators' token, purges; the status JSON is admin_status.c's.
 *
 * It runs on the first worker's loop rather than a thread of its own:
 * operator traffic is a status poll every 2 s and a rare purge, and on
 * that loop it can use the worker's Redis connections (the fleet's
 * heartbeats, the purge script), its limiter and its store as they are,
 * with no locks and no connections of its own.
 */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <hiredis/hiredis.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "address.h"
#include "admin_status.h"
#include "config.h"
#include "conns.h"
#include "flight.h"
#include "flight_fleet.h"
#include "gateway.h"
#include "guard.h"
#include "limiter.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "reply.h"
#include "request.h"
#include "store.h"
#include "util.h"

#define BODY_MAX 65536
#define ADMIN_TIMEOUT_S 10
/* Connections the listener holds at most, idle and slow ones cut after
 * ADMIN_TIMEOUT_S (conns.h): operators poll one status every 2 s per
 * page, so a few dozen is plenty, and a client that opens thousands
 * (no token is needed to connect) then takes no more descriptors or
 * memory than these: the rest wait in the kernel's backlog. */
#define ADMIN_MAX_CONNECTIONS 64
#define CSP                                                                    \
    "default-src 'none'; script-src 'unsafe-inline'; style-src "               \
    "'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; "    \
    "form-action 'none'; frame-ancestors 'none'"

struct pending;

struct agw_admin {
    struct agw_gateway *gw;
    struct agw_store_tables *tables;
    int workers;
    struct evhttp *http;
    struct evhttp_bound_socket *listener;
    struct agw_conns *conns; /* every connection, capped */
    struct agw_guard_policy policy;
    struct event *sample_timer;
    struct agw_admin_history history;
    LIST_HEAD(, pending) pending; /* requests waiting on Redis */
};

/* A request waiting on Redis; ADM is NULL once the admin is freed. */
struct pending {
    LIST_ENTRY(pending) link;
    struct agw_admin *adm;
    struct evhttp_request *req;
    bool held_here; /* purge: this instance held the answer */
    char rid[AGW_REQUEST_ID_MAX + 1];
};

/* ------------------------------------------------------------ answers */

static const char *
method_name(struct evhttp_request *req)
{
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_POST:
        return "POST";
    default:
        return "OTHER";
    }
}

/* The access line (status polls at debug, as health checks are), then
 * the answer: BODY of LEN bytes as TYPE. */
static void
answer(struct evhttp_request *req, const char *rid, int status,
       const char *type, const char *body, size_t len)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    struct agw_access a = {
        .request_id = rid,
        .caller = "admin",
        .business_id = "-",
        .method = method_name(req),
        .path = evhttp_request_get_uri(req),
        .status = status,
        .cache = "-",
        .probe = path != NULL && strcmp(path, "/admin/status") == 0,
    };
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);

    agw_log_access(&a);
    evhttp_remove_header(out, "Content-Type");
    evhttp_add_header(out, "Content-Type", type);
    evhttp_add_header(out, "Cache-Control", "no-store");
    evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
    evhttp_send_reply(req, status, NULL, NULL);
}

static void
send_json(struct evhttp_request *req, const char *rid, int status,
          json_object *obj)
{
    const char *text = json_object_to_json_string_ext(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

    answer(req, rid, status, "application/json", text, strlen(text));
}

static void
send_error(struct evhttp_request *req, const char *rid, int status, int code,
           const char *message)
{
    size_t len;
    char *body = agw_error_body(code, message, &len);

    answer(req, rid, status, "application/json", body, len);
    free(body);
}

/* ---------------------------------------------------------- the token */

bool
agw_admin_token_ok(const char *token_sha256, const char *authorization)
{
    unsigned char want[32], got[EVP_MAX_MD_SIZE];
    unsigned int got_len = 0;
    const char *token;

    if (token_sha256 == NULL) {
        return true;
    }
    if (authorization == NULL || strlen(token_sha256) != 64 ||
        strncasecmp(authorization, "Bearer ", 7) != 0) {
        return false;
    }
    for (int i = 0; i < 32; i++) {
        int hi = agw_hex_value(token_sha256[2 * i]);
        int lo = agw_hex_value(token_sha256[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            return false;
        }
        want[i] = (unsigned char)(hi << 4 | lo);
    }
    token = authorization + 7;
    return token[0] != '\0' &&
           EVP_Digest(token, strlen(token), got, &got_len, EVP_sha256(),
                      NULL) == 1 &&
           got_len == 32 && CRYPTO_memcmp(want, got, 32) == 0;
}

static void
on_sample_timer(evutil_socket_t fd, short what, void *arg)
{
    struct agw_admin *adm = arg;

    agw_admin_history_sample(&adm->history, adm->gw->limiter);
}

/* The status, with the fleet from REPLY (NULL: this instance alone). */
static void
answer_status(struct agw_admin *adm, struct evhttp_request *req,
              const char *rid, const redisReply *reply)
{
    struct agw_admin_view v = {adm->gw, adm->tables, adm->workers,
                               &adm->history};
    json_object *root = agw_admin_status_json(&v, reply);

    send_json(req, rid, 200, root);
    json_object_put(root);
}

static struct pending *
pending_new(struct agw_admin *adm, struct evhttp_request *req, const char *rid)
{
    struct pending *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        return NULL;
    }
    p->adm = adm;
    p->req = req;
    snprintf(p->rid, sizeof(p->rid), "%s", rid);
    LIST_INSERT_HEAD(&adm->pending, p, link);
    return p;
}

/* The admin of P, unlinking P; NULL when the admin is gone (P is then
 * only freed by the caller). */
static struct agw_admin *
pending_done(struct pending *p)
{
    if (p->adm != NULL) {
        LIST_REMOVE(p, link);
    }
    return p->adm;
}

static void
on_instances(struct redisReply *reply, const char *error, void *arg)
{
    struct pending *p = arg;
    struct agw_admin *adm = pending_done(p);

    if (adm != NULL) {
        answer_status(adm, p->req, p->rid, reply);
    }
    free(p);
}

static void
handle_status(struct agw_admin *adm, struct evhttp_request *req,
              const char *rid)
{
    struct pending *p;

    if (adm->gw->redis == NULL || !agw_redis_is_up(adm->gw->redis)) {
        answer_status(adm, req, rid, NULL);
        return;
    }
    p = pending_new(adm, req, rid);
    if (p == NULL) {
        send_error(req, rid, 503, AGW_CODE_UNAVAILABLE, "out of memory");
        return;
    }
    agw_limiter_fleet_read_instances(adm->gw->limiter, on_instances, p);
}

/* ------------------------------------------------------------- purge */

static void
answer_purge(struct evhttp_request *req, const char *rid, bool purged)
{
    agw_metrics_count_purge(purged ? AGW_PURGE_PURGED : AGW_PURGE_ABSENT);
    answer(req, rid, 200, "application/json",
           purged ? "{\"purged\":true}" : "{\"purged\":false}",
           purged ? 15 : 16);
}

static void
purge_invalid(struct evhttp_request *req, const char *rid, const char *why)
{
    agw_metrics_count_purge(AGW_PURGE_INVALID);
    send_error(req, rid, 400, AGW_CODE_INVALID_ARGUMENT, why);
}

static void
on_purged(struct redisReply *reply, const char *error, void *arg)
{
    struct pending *p = arg;
    struct agw_admin *adm = pending_done(p);

    if (adm == NULL) {
        free(p);
        return;
    }
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        rlog_warn(p->rid, "purge: Redis did not delete the answer: %s",
                  reply == NULL ? error : "unexpected reply");
        send_error(p->req, p->rid, 503, AGW_CODE_UNAVAILABLE,
                   "Redis is unreachable: purged on this instance only; "
                   "try again");
    } else {
        answer_purge(p->req, p->rid, p->held_here || reply->integer == 1);
    }
    free(p);
}

/*
 * The create body the purge names: the purge's own fields less
 * businessId, with a top-level accessControlType moved where a create
 * has it (metadata). Malloc'd JSON, NULL with WHY.
 */
static char *
create_body(json_object *root, const char **business_id, const char **why)
{
    json_object *v, *meta;
    char *out;

    if (!json_object_object_get_ex(root, "businessId", &v) ||
        !json_object_is_type(v, json_type_string)) {
        *why = "businessId is required (a string)";
        return NULL;
    }
    *business_id = json_object_get_string(v);
    if (json_object_object_get_ex(root, "accessControlType", &v)) {
        if (json_object_object_get_ex(root, "metadata", &meta)) {
            *why = "give accessControlType or metadata, not both";
            return NULL;
        }
        meta = json_object_new_object();
        json_object_object_add(meta, "accessControlType", json_object_get(v));
        json_object_object_add(root, "metadata", meta);
        json_object_object_del(root, "accessControlType");
    }
    out = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
    if (out == NULL) {
        *why = "out of memory";
    }
    return out;
}

/* The dedupe key of the create the purge's BODY names, as create.c
 * computes it (agw_request_parse); false with WHY (LEN bytes). */
static bool
purge_key(const struct agw_config *cfg, const char *body, size_t len,
          char key[65], char *why, size_t whylen)
{
    /* As strict as a create's body (request.c): one JSON object. */
    json_tokener *tok = json_tokener_new_ex(AGW_JSON_MAX_DEPTH);
    json_object *root = NULL;
    const char *business_id = NULL, *problem = "body must be a JSON object";
    char *create = NULL;
    struct agw_request request;
    bool ok = false;

    if (tok != NULL) {
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        root = json_tokener_parse_ex(tok, body, (int)len);
    }
    if (root != NULL && json_object_is_type(root, json_type_object) &&
        json_tokener_get_parse_end(tok) == len) {
        create = create_body(root, &business_id, &problem);
    }
    if (create == NULL) {
        snprintf(why, whylen, "%s", problem);
    } else if (agw_request_parse(&request, business_id, create, strlen(create),
                                 cfg->allow_private_sources, why, whylen)) {
        memcpy(key, request.dedupe_key, 65);
        agw_request_clear(&request);
        ok = true;
    }
    free(create);
    json_object_put(root);
    if (tok != NULL) {
        json_tokener_free(tok);
    }
    return ok;
}

static void
handle_purge(struct agw_admin *adm, struct evhttp_request *req, const char *rid)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char key[65], why[256];
    const char *body = len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
    struct pending *p;
    bool held;

    if (len > BODY_MAX ||
        !purge_key(adm->gw->cfg, body, len, key, why, sizeof(why))) {
        purge_invalid(req, rid, len > BODY_MAX ? "body too large" : why);
        return;
    }
    agw_flight_purge(key); /* first: a flight ending now keeps nothing */
    held = agw_store_tables_forget(adm->tables, key);
    rlog_info(rid, "purge: key %.12s...: this instance %s it", key,
              held ? "held" : "did not hold");
    if (adm->gw->flight_fleet == NULL) {
        answer_purge(req, rid, held);
        return;
    }
    p = pending_new(adm, req, rid);
    if (p == NULL) {
        send_error(req, rid, 503, AGW_CODE_UNAVAILABLE, "out of memory");
        return;
    }
    p->held_here = held;
    agw_flight_fleet_purge(adm->gw->flight_fleet, key, on_purged, p);
}

/* ------------------------------------------------------------- routes */

static void
handle_page(struct evhttp_request *req, const char *rid)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);

    evhttp_add_header(out, "Content-Security-Policy", CSP);
    evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
    answer(req, rid, 200, "text/html; charset=utf-8",
           (const char *)agw_admin_page, agw_admin_page_len);
}

static bool
method_ok(struct evhttp_request *req, const char *rid, bool post)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    bool ok = post ? cmd == EVHTTP_REQ_POST
                   : cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;

    if (!ok) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          post ? "POST" : "GET, HEAD");
        send_error(req, rid, 405, AGW_CODE_INVALID_ARGUMENT,
                   post ? "method not allowed; use POST"
                        : "method not allowed; use GET, HEAD");
    }
    return ok;
}

static void
route(struct evhttp_request *req, void *arg)
{
    struct agw_admin *adm = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req),
                                          "Authorization");
    char rid[AGW_REQUEST_ID_MAX + 1];
    char message[160];
    const struct agw_refusal *refusal = agw_conns_request(adm->conns, req);

    agw_reply_request_id(req, rid);
    if (refusal != NULL) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                          "close");
        send_error(req, rid, refusal->status, refusal->code, refusal->message);
        return;
    }
    path = path != NULL ? path : "/";
    if (strncmp(path, "/admin/", 7) != 0) {
        snprintf(message, sizeof(message), "no route for %.100s", path);
        send_error(req, rid, 404, AGW_CODE_NOT_FOUND, message);
        return;
    }
    if (!agw_admin_token_ok(adm->gw->cfg->admin_token_sha256, auth)) {
        evhttp_add_header(evhttp_request_get_output_headers(req),
                          "WWW-Authenticate", "Bearer");
        send_error(req, rid, 401, AGW_CODE_UNAUTHENTICATED,
                   "missing or invalid Authorization: Bearer <operators' "
                   "token>");
        return;
    }
    if (strcmp(path, "/admin/status") == 0) {
        if (method_ok(req, rid, false)) {
            handle_status(adm, req, rid);
        }
    } else if (strcmp(path, "/admin/purge") == 0) {
        if (method_ok(req, rid, true)) {
            handle_purge(adm, req, rid);
        }
    } else if (strcmp(path, "/admin/") == 0) {
        if (method_ok(req, rid, false)) {
            handle_page(req, rid);
        }
    } else {
        snprintf(message, sizeof(message), "no route for %.100s", path);
        send_error(req, rid, 404, AGW_CODE_NOT_FOUND, message);
    }
}

/* ------------------------------------------------------------ set-up */

static bool
listen_admin(struct agw_admin *adm, const char *listen, char *err,
             size_t errlen)
{
    char host[AGW_LISTEN_HOST_MAX + 1];
    char why[256];
    int port;

    if (!agw_address_parse_listen(listen, host, &port, why, sizeof(why))) {
        snprintf(err, errlen, "[admin] listen: %s", why);
        return false;
    }
    adm->listener =
        evhttp_bind_socket_with_handle(adm->http, host, (ev_uint16_t)port);
    if (adm->listener == NULL) {
        snprintf(err, errlen, "cannot listen on %s ([admin] listen): %s",
                 listen, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return false;
    }
    agw_conns_own_listener(adm->conns,
                           evhttp_bound_socket_get_listener(adm->listener));
    log_info("admin: listening on %s", listen);
    printf("admin listening %s\n", listen);
    fflush(stdout);
    return true;
}

struct agw_admin *
agw_admin_start(struct agw_gateway *gw, struct agw_store_tables *tables,
                int workers, char *err, size_t errlen)
{
    struct agw_admin *adm = calloc(1, sizeof(*adm));
    struct timeval every = {AGW_ADMIN_HISTORY_EVERY_S, 0};

    if (adm == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    adm->gw = gw;
    adm->tables = tables;
    adm->workers = workers;
    agw_admin_history_init(&adm->history);
    LIST_INIT(&adm->pending);
    /* The guard's limits as the callers' listener has them at start. */
    adm->policy.max_body = BODY_MAX;
    adm->policy.max_buffered = gw->cfg->max_buffered_bytes;
    adm->conns = agw_conns_new(gw->base, ADMIN_TIMEOUT_S * 1000,
                               ADMIN_MAX_CONNECTIONS, &adm->policy);
    adm->http = evhttp_new(gw->base);
    adm->sample_timer =
        event_new(gw->base, -1, EV_PERSIST, on_sample_timer, adm);
    if (adm->conns == NULL || adm->http == NULL || adm->sample_timer == NULL) {
        snprintf(err, errlen, "out of memory");
        agw_admin_free(adm);
        return NULL;
    }
    evhttp_set_timeout(adm->http, ADMIN_TIMEOUT_S);
    evhttp_set_max_body_size(adm->http, BODY_MAX);
    evhttp_set_allowed_methods(
        adm->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                       EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                       EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(adm->http, route, adm);
    evhttp_set_bevcb(adm->http, agw_conns_bevcb, adm->conns);
    if (!listen_admin(adm, gw->cfg->admin_listen, err, errlen)) {
        agw_admin_free(adm);
        return NULL;
    }
    evtimer_add(adm->sample_timer, &every);
    return adm;
}

void
agw_admin_stop_accepting(struct agw_admin *adm)
{
    if (adm != NULL && adm->listener != NULL) {
        agw_conns_own_listener(adm->conns, NULL); /* freed now */
        evhttp_del_accept_socket(adm->http, adm->listener);
        adm->listener = NULL;
    }
}

void
agw_admin_free(struct agw_admin *adm)
{
    struct pending *p;

    if (adm == NULL) {
        return;
    }
    while ((p = LIST_FIRST(&adm->pending)) != NULL) {
        LIST_REMOVE(p, link);
        p->adm = NULL; /* its reply frees it */
    }
    if (adm->sample_timer != NULL) {
        event_free(adm->sample_timer);
    }
    if (adm->http != NULL) {
        evhttp_free(adm->http);
    }
    agw_conns_free(adm->conns); /* after evhttp_free: conns.h */
    free(adm);
}
