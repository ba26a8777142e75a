/*
 * admin_status.c - GET /admin/status's JSON (admin_status.h): this
 * instance's facts from the modules that keep them (metrics, limiter,
 * store tables, admin_stats) and the fleet's from the heartbeats' reply.
 */
#include "admin_status.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <json-c/json.h>

#include "admin_stats.h"
#include "config.h"
#include "gateway.h"
#include "limiter.h"
#include "metrics.h"
#include "redis.h"
#include "store.h"
#include "util.h"

static double
unix_now(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static double
backlog_ms(struct agw_limiter *rl)
{
    return rl->ops->backlog_us != NULL
               ? (double)rl->ops->backlog_us(rl) / 1000.0
               : 0;
}

/* ----------------------------------------------------------- history */

void
agw_admin_history_init(struct agw_admin_history *h)
{
    memset(h, 0, sizeof(*h));
    h->seen_us = agw_now_us();
    h->seen_calls = agw_metrics_upstream_count();
    h->seen_hits = agw_metrics_cache_count(AGW_CACHE_HIT);
    h->seen_misses = agw_metrics_cache_count(AGW_CACHE_MISS);
}

/* Rates and counts since the last sample, from the metrics' counters. */
void
agw_admin_history_sample(struct agw_admin_history *h, struct agw_limiter *rl)
{
    unsigned long long calls = agw_metrics_upstream_count();
    unsigned long long hits = agw_metrics_cache_count(AGW_CACHE_HIT);
    unsigned long long misses = agw_metrics_cache_count(AGW_CACHE_MISS);
    int64_t now = agw_now_us();
    double dt = (double)(now - h->seen_us) / 1e6;
    struct agw_admin_sample *s = &h->samples[h->next];

    s->t = unix_now();
    s->calls_per_s = dt > 0 ? (double)(calls - h->seen_calls) / dt : 0;
    s->backlog_ms = backlog_ms(rl);
    s->hits = hits - h->seen_hits;
    s->misses = misses - h->seen_misses;
    h->seen_calls = calls;
    h->seen_hits = hits;
    h->seen_misses = misses;
    h->seen_us = now;
    h->next = (h->next + 1) % AGW_ADMIN_HISTORY_MAX;
    if (h->n < AGW_ADMIN_HISTORY_MAX) {
        h->n++;
    }
}

static json_object *
history_json(const struct agw_admin_history *h)
{
    json_object *arr = json_object_new_array();

    for (size_t i = 0; i < h->n; i++) {
        const struct agw_admin_sample *s =
            &h->samples[(h->next + AGW_ADMIN_HISTORY_MAX - h->n + i) %
                        AGW_ADMIN_HISTORY_MAX];
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

/* This instance as the fleet table lists it: id, host, version. */
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

static json_object *
instance_json(const struct agw_admin_view *v)
{
    json_object *o = self_entry();
    double now = unix_now();

    json_object_object_add(
        o, "uptime_s",
        json_object_new_int64((int64_t)(now - agw_admin_stats_started_at())));
    json_object_object_add(o, "workers", json_object_new_int(v->workers));
    json_object_object_add(
        o, "config_loaded_at",
        json_object_new_double(agw_admin_stats_config_loaded_at()));
    return o;
}

static json_object *
limiter_json(const struct agw_admin_view *v, const char *scope)
{
    struct agw_limiter *rl = v->gw->limiter;
    struct agw_limiter_info info;
    json_object *o = json_object_new_object();
    int64_t until = rl->ops->paused_until(rl);
    double pause_until =
        until > 0 ? unix_now() + (double)(until - agw_now_us()) / 1e6 : 0;

    agw_limiter_info(rl, &info);
    json_object_object_add(
        o, "rate",
        json_object_new_double(info.rate > 0 ? info.rate : v->gw->cfg->rate));
    json_object_object_add(o, "backlog_ms",
                           json_object_new_double(backlog_ms(rl)));
    json_object_object_add(o, "pause_until",
                           until > 0 ? json_object_new_double(pause_until)
                                     : NULL);
    json_object_object_add(o, "mode", json_object_new_string(info.mode));
    json_object_object_add(o, "scope", json_object_new_string(scope));
    return o;
}

/* "host:port" or the socket path of redis_url: never its password. With
 * sentinels, the master named by them and in use (null while none). */
static json_object *
redis_json(const struct agw_admin_view *v, bool up)
{
    const struct agw_config *cfg = v->gw->cfg;
    json_object *o = json_object_new_object();
    struct agw_redis_url url;
    char where[300] = "";
    char why[128];

    if (v->gw->sentinel != NULL) {
        agw_redis_address(v->gw->redis, where, sizeof(where));
    } else if (v->gw->redis != NULL &&
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
caches_json(const struct agw_admin_view *v)
{
    struct agw_store_stats st;
    json_object *o = json_object_new_object();
    json_object *l1 = json_object_new_object();
    json_object *mem = json_object_new_object();

    agw_store_tables_stats(v->tables, &st);
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
fleet_local(const struct agw_admin_view *v, json_object *fleet,
            json_object *callers)
{
    struct agw_limiter_info info;
    json_object *list = json_object_new_array();
    char *calls = agw_admin_stats_calls_json();
    json_object *parsed = calls != NULL ? json_tokener_parse(calls) : NULL;

    agw_limiter_info(v->gw->limiter, &info);
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

json_object *
agw_admin_status_json(const struct agw_admin_view *v,
                      const struct redisReply *reply)
{
    json_object *root = json_object_new_object();
    json_object *fleet = json_object_new_object();
    json_object *callers = json_object_new_object();
    bool shared = fleet_from_reply(reply, fleet, callers);
    bool redis_up =
        v->gw->redis != NULL && agw_metrics_gauge_get(AGW_M_REDIS_UP) == 1;

    if (!shared) {
        json_object_put(fleet);
        json_object_put(callers);
        fleet = json_object_new_object();
        callers = json_object_new_object();
        fleet_local(v, fleet, callers);
    }
    json_object_object_add(root, "instance", instance_json(v));
    json_object_object_add(root, "fleet", fleet);
    json_object_object_add(root, "limiter",
                           limiter_json(v, shared ? "fleet" : "local"));
    json_object_object_add(root, "redis", redis_json(v, redis_up));
    json_object_object_add(root, "caches", caches_json(v));
    json_object_object_add(root, "upstream", upstream_json());
    json_object_object_add(root, "callers", callers);
    json_object_object_add(root, "callers_scope",
                           json_object_new_string(shared ? "fleet" : "local"));
    json_object_object_add(root, "history_every_s",
                           json_object_new_int(AGW_ADMIN_HISTORY_EVERY_S));
    json_object_object_add(root, "history", history_json(v->history));
    return root;
}
