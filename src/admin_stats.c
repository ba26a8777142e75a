/*
 * admin_stats.c - the operators' in-process facts (admin_stats.h): one
 * mutex over a small table of callers (60 one-second slots each) and a
 * ring of the last upstream errors. Callers come from the clients file,
 * so the table is bounded by it (and by CALLERS_MAX).
 */
#include "admin_stats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "auth.h"

#define WINDOW_S 60
/* More callers than any clients file names; past it calls are not
 * counted per caller (said once). */
#define CALLERS_MAX 1024

struct caller_slots {
    char name[AGW_AUTH_NAME_MAX + 1];
    int64_t second[WINDOW_S]; /* which Unix second each slot counts */
    uint32_t count[WINDOW_S];
    uint64_t total;    /* since the start, for /metrics */
    const char *klass; /* SPEC §11: its class as of its last call (static) */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct caller_slots *callers; /* under LOCK */
static size_t ncallers, callers_cap;
static struct agw_admin_error errors[AGW_ADMIN_ERRORS_MAX]; /* a ring */
static size_t nerrors, next_error;
static double started_at, loaded_at;
static atomic_long upstream_conns;
static char host[256] = "unknown";
static char version[64] = "unknown";

static double
real_now_s(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static double (*now_s)(void) = real_now_s;

void
agw_admin_stats_set_clock(double (*fn)(void))
{
    now_s = fn != NULL ? fn : real_now_s;
}

void
agw_admin_stats_init(const char *v)
{
    pthread_mutex_lock(&lock);
    started_at = loaded_at = now_s();
    snprintf(version, sizeof(version), "%s", v != NULL ? v : "unknown");
    if (gethostname(host, sizeof(host)) != 0) {
        snprintf(host, sizeof(host), "unknown");
    }
    host[sizeof(host) - 1] = '\0';
    pthread_mutex_unlock(&lock);
}

void
agw_admin_stats_config_loaded(void)
{
    pthread_mutex_lock(&lock);
    loaded_at = now_s();
    pthread_mutex_unlock(&lock);
}

double
agw_admin_stats_started_at(void)
{
    double t;

    pthread_mutex_lock(&lock);
    t = started_at;
    pthread_mutex_unlock(&lock);
    return t;
}

double
agw_admin_stats_config_loaded_at(void)
{
    double t;

    pthread_mutex_lock(&lock);
    t = loaded_at;
    pthread_mutex_unlock(&lock);
    return t;
}

void
agw_admin_stats_upstream_conns(int delta)
{
    atomic_fetch_add_explicit(&upstream_conns, delta, memory_order_relaxed);
}

long
agw_admin_stats_upstream_conns_open(void)
{
    return atomic_load_explicit(&upstream_conns, memory_order_relaxed);
}

/* Written once by init, before any thread reads them. */
const char *
agw_admin_stats_host(void)
{
    return host;
}

const char *
agw_admin_stats_version(void)
{
    return version;
}

/* Locked: NAME's slots, added when new; NULL past CALLERS_MAX. */
static struct caller_slots *
caller_of(const char *name)
{
    struct caller_slots *grown;
    size_t cap;

    for (size_t i = 0; i < ncallers; i++) {
        if (strcmp(callers[i].name, name) == 0) {
            return &callers[i];
        }
    }
    if (ncallers == callers_cap) {
        cap = callers_cap == 0 ? 8 : callers_cap * 2;
        if (cap > CALLERS_MAX) {
            return NULL;
        }
        grown = realloc(callers, cap * sizeof(*callers));
        if (grown == NULL) {
            return NULL;
        }
        callers = grown;
        callers_cap = cap;
    }
    memset(&callers[ncallers], 0, sizeof(*callers));
    snprintf(callers[ncallers].name, sizeof(callers[ncallers].name), "%s",
             name);
    return &callers[ncallers++];
}

/* Locked: C's calls in the WINDOW_S seconds up to NOW. */
static long
calls_in_window(const struct caller_slots *c, int64_t now)
{
    long n = 0;

    for (int i = 0; i < WINDOW_S; i++) {
        if (c->second[i] > now - WINDOW_S && c->second[i] <= now) {
            n += c->count[i];
        }
    }
    return n;
}

static bool
is_failure(int status)
{
    return status == 0 || status == 401 || status == 403 || status == 429 ||
           status >= 500;
}

static void
keep_error(double at, int status, const char *detail)
{
    struct agw_admin_error *e = &errors[next_error];

    e->at = at;
    e->status = status;
    snprintf(e->error, sizeof(e->error), "%s",
             status != 0 ? "" : (detail != NULL ? detail : "no answer"));
    next_error = (next_error + 1) % AGW_ADMIN_ERRORS_MAX;
    if (nerrors < AGW_ADMIN_ERRORS_MAX) {
        nerrors++;
    }
}

void
agw_admin_stats_upstream(const char *caller, int status, const char *detail)
{
    agw_admin_stats_upstream_class(caller, "interactive", status, detail);
}

void
agw_admin_stats_upstream_class(const char *caller, const char *klass,
                               int status, const char *detail)
{
    double at = now_s();
    int64_t sec = (int64_t)at;
    struct caller_slots *c;
    int slot = (int)(sec % WINDOW_S);

    pthread_mutex_lock(&lock);
    c = caller_of(caller != NULL ? caller : "-");
    if (c != NULL) {
        if (c->second[slot] != sec) {
            c->second[slot] = sec;
            c->count[slot] = 0;
        }
        c->count[slot]++;
        c->total++;
        c->klass = klass;
    }
    if (is_failure(status)) {
        keep_error(at, status, detail);
    }
    pthread_mutex_unlock(&lock);
}

size_t
agw_admin_stats_errors(struct agw_admin_error out[AGW_ADMIN_ERRORS_MAX])
{
    size_t n;

    pthread_mutex_lock(&lock);
    n = nerrors;
    for (size_t i = 0; i < n; i++) {
        out[i] = errors[(next_error + AGW_ADMIN_ERRORS_MAX - n + i) %
                        AGW_ADMIN_ERRORS_MAX];
    }
    pthread_mutex_unlock(&lock);
    return n;
}

bool
agw_admin_stats_caller_total(size_t i, struct agw_admin_caller_total *out)
{
    bool found;

    pthread_mutex_lock(&lock);
    found = i < ncallers;
    if (found) {
        snprintf(out->name, sizeof(out->name), "%s", callers[i].name);
        out->klass =
            callers[i].klass != NULL ? callers[i].klass : "interactive";
        out->total = callers[i].total;
    }
    pthread_mutex_unlock(&lock);
    return found;
}

/* A new object of this instance's callers with calls in the last minute. */
static json_object *
calls_object(void)
{
    json_object *obj = json_object_new_object();
    int64_t now = (int64_t)now_s();
    long n;

    if (obj == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < ncallers; i++) {
        n = calls_in_window(&callers[i], now);
        if (n > 0) {
            json_object_object_add(obj, callers[i].name,
                                   json_object_new_int64(n));
        }
    }
    pthread_mutex_unlock(&lock);
    return obj;
}

static char *
to_string(json_object *obj)
{
    char *out = NULL;

    if (obj != NULL) {
        out =
            strdup(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN));
        json_object_put(obj);
    }
    return out;
}

char *
agw_admin_stats_calls_json(void)
{
    return to_string(calls_object());
}

char *
agw_admin_stats_heartbeat(void)
{
    json_object *obj = json_object_new_object();
    json_object *calls = calls_object();

    if (obj == NULL || calls == NULL) {
        json_object_put(obj);
        json_object_put(calls);
        return NULL;
    }
    json_object_object_add(obj, "host", json_object_new_string(host));
    json_object_object_add(obj, "version", json_object_new_string(version));
    json_object_object_add(obj, "calls", calls);
    return to_string(obj);
}
