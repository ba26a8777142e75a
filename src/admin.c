/*
 * admin.c - the operators' listener (SPEC §12, admin.h).
 *
 * It runs on the first worker's loop rather than a thread of its own:
 * operator traffic is a status poll every 2 s and a rare purge, and on
 * that loop it can use the worker's Redis connections (the fleet's
 * heartbeats, the purge script), its limiter and its store as they are,
 * with no locks and no connections of its own.
 *
 * Status scopes: "fleet" facts come from Redis (the heartbeats); while
 * Redis is down the fleet, limiter and callers parts say "scope":
 * "local" (callers: "callers_scope", since a caller may be named
 * "scope") and show this instance alone. The history (one sample every
 * HISTORY_EVERY_S, the last HISTORY_MAX) is this instance's.
 */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <hiredis/hiredis.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "address.h"
#include "admin_stats.h"
#include "config.h"
#include "flight_fleet.h"
#include "gateway.h"
#include "limiter.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "reply.h"
#include "request.h"
#include "store.h"
#include "util.h"

#define HISTORY_EVERY_S 5
#define HISTORY_MAX (300 / HISTORY_EVERY_S) /* five minutes */
#define BODY_MAX 65536
#define ADMIN_TIMEOUT_S 10
#define CSP                                                                    \
    "default-src 'none'; script-src 'unsafe-inline'; style-src "               \
    "'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action "       \
    "'none'; frame-ancestors 'none'"

struct sample {
    double t;
    double calls_per_s;
    double backlog_ms;
    unsigned long long hits, misses;
};

struct pending;

struct agw_admin {
    struct agw_gateway *gw;
    struct agw_store_tables *tables;
    int workers;
    struct evhttp *http;
    struct evhttp_bound_socket *listener;
    struct event *sample_timer;
    struct sample history[HISTORY_MAX]; /* a ring */
    size_t nhistory, next_sample;
    unsigned long long seen_calls, seen_hits, seen_misses;
    int64_t seen_us;
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

static double
unix_now(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

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

/* ----------------------------------------------------------- history */

static void
add_sample(struct agw_admin *adm)
{
    unsigned long long calls = agw_metrics_upstream_count();
    unsigned long long hits = agw_metrics_cache_count(AGW_CACHE_HIT);
    unsigned long long misses = agw_metrics_cache_count(AGW_CACHE_MISS);
    struct agw_limiter *rl = adm->gw->limiter;
    int64_t now = agw_now_us();
    double dt = (double)(now - adm->seen_us) / 1e6;
    struct sample *s = &adm->history[adm->next_sample];

    s->t = unix_now();
    s->calls_per_s = dt > 0 ? (double)(calls - adm->seen_calls) / dt : 0;
    s->backlog_ms = rl->ops->backlog_us != NULL
                        ? (double)rl->ops->backlog_us(rl) / 1000.0
                        : 0;
    s->hits = hits - adm->seen_hits;
    s->misses = misses - adm->seen_misses;
    adm->seen_calls = calls;
    adm->seen_hits = hits;
    adm->seen_misses = misses;
    adm->seen_us = now;
    adm->next_sample = (adm->next_sample + 1) % HISTORY_MAX;
    if (adm->nhistory < HISTORY_MAX) {
        adm->nhistory++;
    }
}

static void
on_sample_timer(evutil_socket_t fd, short what, void *arg)
{
    add_sample(arg);
}

static json_object *
history_json(const struct agw_admin *adm)
{
    json_object *arr = json_object_new_array();

    for (size_t i = 0; i < adm->nhistory; i++) {
        const struct sample *s =
            &adm->history[(adm->next_sample + HISTORY_MAX - adm->nhistory + i) %
                          HISTORY_MAX];
        json_object *o = json_object_new_object();
        unsigned long long seen = s->hits + s->misses;

        json_object_object_add(o, "t", json_object_new_double(s->t));
        json_object_object_add(o, "upstream_calls_per_s",
                               json_object_new_double(s->calls_per_s));
        json_object_object_add(o, "backlog_ms",
                               json_object_new_double(s->backlog_ms));
        json_object_object_add(o, "hits",
                               json_object_new_int64((int64_t)s->hits));
        json_object_object_add(o, "misses",
                               json_object_new_int64((int64_t)s->misses));
        json_object_object_add(
            o, "hit_ratio",
            seen > 0 ? json_object_new_double((double)s->hits / (double)seen)
                     : NULL);
        json_object_array_add(arr, o);
    }
    return arr;
}

/* ------------------------------------------------------------ status */

static json_object *
instance_json(const struct agw_admin *adm)
{
    json_object *o = json_object_new_object();
    char id[33];
    double now = unix_now();

    agw_limiter_fleet_instance_id(id);
    json_object_object_add(o, "id", json_object_new_string(id));
    json_object_object_add(o, "host",
                           json_object_new_string(agw_admin_stats_host()));
    json_object_object_add(o, "version",
                           json_object_new_string(agw_admin_stats_version()));
    json_object_object_add(
        o, "uptime_s",
        json_object_new_int64((int64_t)(now - agw_admin_stats_started_at())));
    json_object_object_add(o, "workers", json_object_new_int(adm->workers));
    json_object_object_add(
        o, "config_loaded_at",
        json_object_new_double(agw_admin_stats_config_loaded_at()));
    return o;
}

static json_object *
limiter_json(const struct agw_admin *adm, const char *scope)
{
    struct agw_limiter *rl = adm->gw->limiter;
    struct agw_limiter_info info;
    json_object *o = json_object_new_object();
    int64_t until = rl->ops->paused_until(rl);
    double pause_until =
        until > 0 ? unix_now() + (double)(until - agw_now_us()) / 1e6 : 0;

    agw_limiter_info(rl, &info);
    json_object_object_add(
        o, "rate",
        json_object_new_double(info.rate > 0 ? info.rate : adm->gw->cfg->rate));
    json_object_object_add(
        o, "backlog_ms",
        json_object_new_double(rl->ops->backlog_us != NULL
                                   ? (double)rl->ops->backlog_us(rl) / 1000.0
                                   : 0));
    json_object_object_add(o, "pause_until",
                           until > 0 ? json_object_new_double(pause_until)
                                     : NULL);
    json_object_object_add(o, "mode", json_object_new_string(info.mode));
    json_object_object_add(o, "scope", json_object_new_string(scope));
    return o;
}

/* "host:port" or the socket path of redis_url: never its password. */
static json_object *
redis_json(const struct agw_admin *adm, bool up)
{
    const struct agw_config *cfg = adm->gw->cfg;
    json_object *o = json_object_new_object();
    struct agw_redis_url url;
    char where[300] = "";
    char why[128];

    if (adm->gw->redis != NULL &&
        agw_redis_url_parse(cfg->redis_url, &url, why, sizeof(why))) {
        if (url.path != NULL) {
            snprintf(where, sizeof(where), "unix:%s", url.path);
        } else {
            snprintf(where, sizeof(where), "%s:%d", url.host, url.port);
        }
        agw_redis_url_clear(&url);
    }
    json_object_object_add(o, "up", json_object_new_boolean(up));
    json_object_object_add(
        o, "master", where[0] != '\0' ? json_object_new_string(where) : NULL);
    return o;
}

static json_object *
caches_json(const struct agw_admin *adm)
{
    struct agw_store_stats st;
    json_object *o = json_object_new_object();
    json_object *l1 = json_object_new_object();
    json_object *mem = json_object_new_object();

    agw_store_tables_stats(adm->tables, &st);
    json_object_object_add(l1, "entries", json_object_new_int64(st.l1_entries));
    json_object_object_add(l1, "bytes",
                           json_object_new_int64((int64_t)st.l1_bytes));
    json_object_object_add(l1, "hits",
                           json_object_new_int64((int64_t)st.l1_hits));
    json_object_object_add(l1, "misses",
                           json_object_new_int64((int64_t)st.l1_misses));
    json_object_object_add(mem, "entries",
                           json_object_new_int64(st.memory_entries));
    json_object_object_add(mem, "bytes",
                           json_object_new_int64((int64_t)st.memory_bytes));
    json_object_object_add(o, "l1", l1);
    json_object_object_add(o, "memory", mem);
    return o;
}

static json_object *
upstream_json(void)
{
    struct agw_admin_error errs[AGW_ADMIN_ERRORS_MAX];
    size_t n = agw_admin_stats_errors(errs);
    json_object *o = json_object_new_object();
    json_object *list = json_object_new_array();
    char last[160] = "";

    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_new_object();

        json_object_object_add(e, "at", json_object_new_double(errs[i].at));
        json_object_object_add(
            e, "status",
            errs[i].status != 0 ? json_object_new_int(errs[i].status) : NULL);
        json_object_object_add(
            e, "error",
            errs[i].status == 0 ? json_object_new_string(errs[i].error) : NULL);
        json_object_array_add(list, e);
    }
    if (n > 0 && errs[n - 1].status != 0) {
        snprintf(last, sizeof(last), "HTTP %d", errs[n - 1].status);
    } else if (n > 0) {
        snprintf(last, sizeof(last), "%s", errs[n - 1].error);
    }
    json_object_object_add(
        o, "open_connections",
        json_object_new_int64(agw_admin_stats_upstream_conns_open()));
    json_object_object_add(o, "last_error",
                           n > 0 ? json_object_new_string(last) : NULL);
    json_object_object_add(o, "last_error_at",
                           n > 0 ? json_object_new_double(errs[n - 1].at)
                                 : NULL);
    json_object_object_add(o, "last_errors", list);
    return o;
}

/* {NAME: {"calls_last_minute": N}} from CALLS ({NAME: N}), into OUT. */
static void
add_calls(json_object *out, json_object *calls)
{
    json_object *entry;
    int64_t n;

    if (calls == NULL || !json_object_is_type(calls, json_type_object)) {
        return;
    }
    json_object_object_foreach(calls, name, v)
    {
        if (!json_object_is_type(v, json_type_int)) {
            continue;
        }
        n = json_object_get_int64(v);
        if (!json_object_object_get_ex(out, name, &entry)) {
            entry = json_object_new_object();
            json_object_object_add(entry, "calls_last_minute",
                                   json_object_new_int64(0));
            json_object_object_add(out, name, entry);
        }
        json_object_object_add(
            entry, "calls_last_minute",
            json_object_new_int64(json_object_get_int64(json_object_object_get(
                                      entry, "calls_last_minute")) +
                                  n));
    }
}

static json_object *
self_entry(void)
{
    json_object *o = json_object_new_object();
    char id[33];

    agw_limiter_fleet_instance_id(id);
    json_object_object_add(o, "id", json_object_new_string(id));
    json_object_object_add(o, "host",
                           json_object_new_string(agw_admin_stats_host()));
    json_object_object_add(o, "version",
                           json_object_new_string(agw_admin_stats_version()));
    return o;
}

/* The fleet from the instances script's reply, callers summed over it. */
static bool
fleet_from_reply(const redisReply *r, json_object *fleet, json_object *callers)
{
    json_object *list = json_object_new_array();

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        json_object_put(list);
        return false;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *id = r->element[i], *info = r->element[i + 1];
        json_object *o = json_object_new_object();
        json_object *parsed = NULL, *v;

        if (id->type != REDIS_REPLY_STRING ||
            info->type != REDIS_REPLY_STRING) {
            json_object_put(o);
            continue;
        }
        parsed = json_tokener_parse(info->str);
        json_object_object_add(o, "id", json_object_new_string(id->str));
        json_object_object_add(o, "host",
                               json_object_object_get_ex(parsed, "host", &v)
                                   ? json_object_get(v)
                                   : NULL);
        json_object_object_add(o, "version",
                               json_object_object_get_ex(parsed, "version", &v)
                                   ? json_object_get(v)
                                   : NULL);
        if (json_object_object_get_ex(parsed, "calls", &v)) {
            add_calls(callers, v);
        }
        json_object_put(parsed);
        json_object_array_add(list, o);
    }
    json_object_object_add(fleet, "live",
                           json_object_new_int((int)(r->elements / 2)));
    json_object_object_add(fleet, "instances", list);
    json_object_object_add(fleet, "scope", json_object_new_string("fleet"));
    return true;
}

/* This instance alone: Redis is down, or there is no fleet. */
static void
fleet_local(const struct agw_admin *adm, json_object *fleet,
            json_object *callers)
{
    struct agw_limiter_info info;
    json_object *list = json_object_new_array();
    char *calls = agw_admin_stats_calls_json();
    json_object *parsed = calls != NULL ? json_tokener_parse(calls) : NULL;

    agw_limiter_info(adm->gw->limiter, &info);
    json_object_array_add(list, self_entry());
    /* The fallback's count: the instances last seen in Redis. */
    json_object_object_add(
        fleet, "live",
        json_object_new_int64(info.live_seen > 0 ? info.live_seen : 1));
    json_object_object_add(fleet, "instances", list);
    json_object_object_add(fleet, "scope", json_object_new_string("local"));
    add_calls(callers, parsed);
    json_object_put(parsed);
    free(calls);
}

/* The status, with the fleet from REPLY (NULL: this instance alone). */
static void
answer_status(struct agw_admin *adm, struct evhttp_request *req,
              const char *rid, const redisReply *reply)
{
    json_object *root = json_object_new_object();
    json_object *fleet = json_object_new_object();
    json_object *callers = json_object_new_object();
    bool shared = fleet_from_reply(reply, fleet, callers);
    bool redis_up =
        adm->gw->redis != NULL && agw_metrics_gauge_get(AGW_M_REDIS_UP) == 1;

    if (!shared) {
        json_object_put(fleet);
        json_object_put(callers);
        fleet = json_object_new_object();
        callers = json_object_new_object();
        fleet_local(adm, fleet, callers);
    }
    json_object_object_add(root, "instance", instance_json(adm));
    json_object_object_add(root, "fleet", fleet);
    json_object_object_add(root, "limiter",
                           limiter_json(adm, shared ? "fleet" : "local"));
    json_object_object_add(root, "redis", redis_json(adm, redis_up));
    json_object_object_add(root, "caches", caches_json(adm));
    json_object_object_add(root, "upstream", upstream_json());
    json_object_object_add(root, "callers", callers);
    json_object_object_add(root, "callers_scope",
                           json_object_new_string(shared ? "fleet" : "local"));
    json_object_object_add(root, "history_every_s",
                           json_object_new_int(HISTORY_EVERY_S));
    json_object_object_add(root, "history", history_json(adm));
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
    json_tokener *tok = json_tokener_new();
    json_object *root =
        tok != NULL ? json_tokener_parse_ex(tok, body, (int)len) : NULL;
    const char *business_id = NULL, *problem = "body must be a JSON object";
    char *create = NULL;
    struct agw_request request;
    bool ok = false;

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

    agw_reply_request_id(req, rid);
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
    struct timeval every = {HISTORY_EVERY_S, 0};

    if (adm == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    adm->gw = gw;
    adm->tables = tables;
    adm->workers = workers;
    adm->seen_us = agw_now_us();
    adm->seen_calls = agw_metrics_upstream_count();
    adm->seen_hits = agw_metrics_cache_count(AGW_CACHE_HIT);
    adm->seen_misses = agw_metrics_cache_count(AGW_CACHE_MISS);
    LIST_INIT(&adm->pending);
    adm->http = evhttp_new(gw->base);
    adm->sample_timer =
        event_new(gw->base, -1, EV_PERSIST, on_sample_timer, adm);
    if (adm->http == NULL || adm->sample_timer == NULL) {
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
    free(adm);
}
