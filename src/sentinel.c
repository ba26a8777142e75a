/*
 * sentinel.c - finds the Redis master through Redis Sentinel and moves the
 * followers (a worker's command and pub/sub connections) to it whenever it
 * changes. One command connection and one subscriber connection to one
 * sentinel at a time; any failure of that sentinel moves both to the next.
 */
#include "sentinel.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "util.h"

#define MAX_FOLLOWERS 4
#define ROUND_PAUSE_MS 500 /* after every sentinel failed in a row */
#define SWITCH_CHANNEL "+switch-master"

struct agw_sentinel {
    struct event_base *base;
    struct evdns_base *dns;
    struct agw_sentinel_addr list[AGW_SENTINEL_MAX];
    int n;
    int cur; /* the sentinel in use */
    char *master_name;
    char *password;
    int connect_timeout_ms;
    int command_timeout_ms;

    struct agw_redis *q;   /* commands to list[cur] */
    struct agw_redis *sub; /* +switch-master from list[cur] */
    struct agw_redis *followers[MAX_FOLLOWERS];
    int nfollowers;

    struct event *kick;     /* step() outside every callback */
    struct event *deadline; /* list[cur] took too long to answer */
    bool advance;           /* move to the next sentinel */
    bool want;              /* ask for the master's address */
    bool asking;            /* the question is on q */
    bool dropping;          /* freeing q and sub: their callbacks are moot */
    int misses;             /* sentinels that failed in a row */

    bool known;
    char host[256];
    int port;
};

/* The master the process uses, for counting switches once per process
 * whatever the number of workers. */
static pthread_mutex_t master_lock = PTHREAD_MUTEX_INITIALIZER;
static char process_master[300];

/* ------------------------------------------------------------ list */

static bool
parse_one(const char *item, size_t len, struct agw_sentinel_addr *out,
          char *err, size_t errlen)
{
    char url[300];
    const char *bracket = memrchr(item, ']', len);
    const char *after = bracket != NULL ? bracket : item;
    bool has_port = memchr(after, ':', len - (size_t)(after - item)) != NULL;
    struct agw_redis_url u;
    char why[200];

    if (len == 0 || len > 260 || memchr(item, '@', len) != NULL ||
        memchr(item, '/', len) != NULL) {
        agw_set_err(err, errlen, "bad sentinel \"%.*s\" (want host:port)",
                    (int)(len > 64 ? 64 : len), item);
        return false;
    }
    snprintf(url, sizeof(url), "redis://%.*s", (int)len, item);
    if (!agw_redis_url_parse(url, &u, why, sizeof(why))) {
        agw_set_err(err, errlen, "bad sentinel \"%.*s\": %s",
                    (int)(len > 64 ? 64 : len), item, why);
        return false;
    }
    snprintf(out->host, sizeof(out->host), "%s", u.host);
    out->port = has_port ? u.port : AGW_SENTINEL_DEFAULT_PORT;
    agw_redis_url_clear(&u);
    return true;
}

bool
agw_sentinel_parse_list(const char *list, struct agw_sentinel_addr *out, int *n,
                        char *err, size_t errlen)
{
    const char *p = list != NULL ? list : "";

    *n = 0;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        const char *end = p + len;

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }
        while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }
        if (*n == AGW_SENTINEL_MAX) {
            agw_set_err(err, errlen, "more than %d sentinels",
                        AGW_SENTINEL_MAX);
            return false;
        }
        if (!parse_one(p, (size_t)(end - p), &out[*n], err, errlen)) {
            return false;
        }
        (*n)++;
        p += strcspn(p, ",");
        p += *p == ',';
    }
    if (*n == 0) {
        agw_set_err(err, errlen, "no sentinel (want host:port, ...)");
        return false;
    }
    return true;
}

/* ------------------------------------------------------ the master */

/* Counts a switch when the process's master changes (not the first
 * discovery, not the second worker following the first). */
static void
note_process_master(const char *host, int port)
{
    char now[sizeof(process_master)];

    snprintf(now, sizeof(now), strchr(host, ':') != NULL ? "[%s]:%d" : "%s:%d",
             host, port);
    pthread_mutex_lock(&master_lock);
    if (strcmp(process_master, now) != 0) {
        if (process_master[0] != '\0') {
            agw_metrics_inc(AGW_M_REDIS_MASTER_CHANGES);
            log_warn("sentinel: the master moved from %s to %s", process_master,
                     now);
        }
        snprintf(process_master, sizeof(process_master), "%s", now);
    }
    pthread_mutex_unlock(&master_lock);
}

static void
adopt(struct agw_sentinel *s, const char *host, int port)
{
    if (s->known && strcmp(s->host, host) == 0 && s->port == port) {
        return;
    }
    /* From the network: an address's characters only, as it goes into
     * logs and /readyz. */
    if (host[0] == '\0' || strlen(host) >= sizeof(s->host) ||
        strspn(host, "0123456789abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ.:-_") != strlen(host) ||
        port < 1 || port > 65535) {
        log_warn("sentinel: ignored a bad master address");
        return;
    }
    s->known = true;
    snprintf(s->host, sizeof(s->host), "%s", host);
    s->port = port;
    note_process_master(host, port);
    for (int i = 0; i < s->nfollowers; i++) {
        agw_redis_set_address(s->followers[i], host, port);
    }
}

/* ------------------------------------------------------ the steps */

static void
schedule(struct agw_sentinel *s, long ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

    evtimer_add(s->kick, &tv);
}

/* The sentinel in use failed: the next one, after a pause once all of
 * them failed in a row. */
static void
miss(struct agw_sentinel *s, const char *why)
{
    const struct agw_sentinel_addr *a = &s->list[s->cur];

    if (s->advance) {
        return;
    }
    /* Once per sentinel, not for every round while all are away. */
    if (s->misses < s->n) {
        log_warn("sentinel %s:%d: %s; trying the next sentinel", a->host,
                 a->port, why);
    } else {
        log_debug("sentinel %s:%d: %s", a->host, a->port, why);
    }
    s->advance = true;
    s->misses++;
    schedule(s, s->misses % s->n == 0 ? ROUND_PAUSE_MS : 0);
}

static void
need_answer(struct agw_sentinel *s)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 0};
    long ms = (long)s->connect_timeout_ms + s->command_timeout_ms;

    s->want = true;
    if (!evtimer_pending(s->deadline, NULL)) {
        tv.tv_sec = ms / 1000;
        tv.tv_usec = (ms % 1000) * 1000;
        evtimer_add(s->deadline, &tv);
    }
    if (!evtimer_pending(s->kick, NULL)) {
        schedule(s, 0);
    }
}

/* Why a get-master-addr-by-name answer is no address. */
static const char *
reply_problem(const redisReply *reply, const char *error)
{
    if (reply == NULL) {
        return error;
    }
    if (reply->type == REDIS_REPLY_NIL) {
        return "does not know the master";
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        return reply->str;
    }
    return "unexpected reply";
}

static void
on_master_addr(redisReply *reply, const char *error, void *arg)
{
    struct agw_sentinel *s = arg;
    long port = 0;
    char *end = NULL;

    if (s->dropping) {
        return;
    }
    s->asking = false;
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY &&
        reply->elements == 2 && reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING) {
        port = strtol(reply->element[1]->str, &end, 10);
    }
    if (end == NULL || *end != '\0') {
        miss(s, reply_problem(reply, error));
        return;
    }
    s->want = false;
    s->misses = 0;
    evtimer_del(s->deadline);
    adopt(s, reply->element[0]->str, (int)port);
}

/* "+switch-master NAME OLD-IP OLD-PORT NEW-IP NEW-PORT" */
static void
on_message(const char *channel, const char *data, size_t len, void *arg)
{
    struct agw_sentinel *s = arg;
    char name[256], old_ip[256], new_ip[256];
    int old_port, new_port;

    if (s->dropping || strcmp(channel, SWITCH_CHANNEL) != 0 ||
        sscanf(data, "%255s %255s %d %255s %d", name, old_ip, &old_port, new_ip,
               &new_port) != 5) {
        return;
    }
    if (strcmp(name, s->master_name) != 0) {
        log_debug("sentinel: +switch-master of %s, not ours: ignored", name);
        return;
    }
    log_info("sentinel: +switch-master: %s is now %s:%d", name, new_ip,
             new_port);
    adopt(s, new_ip, new_port);
}

static void
on_sentinel_lost(const char *reason, void *arg)
{
    struct agw_sentinel *s = arg;

    if (!s->dropping) {
        miss(s, reason);
    }
}

static void
on_sentinel_state(bool up, void *arg)
{
    struct agw_sentinel *s = arg;

    if (up && !s->dropping) {
        schedule(s, 0); /* the question may be waiting for q */
    }
}

/* redis://[:PASSWORD@]HOST:PORT, the password percent-encoded: a new
 * string sized for any password the config accepts (up to 4096 bytes,
 * three characters each once encoded), to be wiped and freed; NULL when
 * out of memory. */
static char *
sentinel_url(const struct agw_sentinel *s, const struct agw_sentinel_addr *a)
{
    size_t pwlen = s->password != NULL ? strlen(s->password) : 0;
    size_t len = sizeof("redis://:@[]:65535") + 3 * pwlen + strlen(a->host);
    char *buf = malloc(len);
    size_t n;

    if (buf == NULL) {
        return NULL;
    }
    n = (size_t)snprintf(buf, len, "redis://");
    if (s->password != NULL) {
        n += (size_t)snprintf(buf + n, len - n, ":");
        for (const char *p = s->password; *p != '\0'; p++) {
            n +=
                (size_t)snprintf(buf + n, len - n, "%%%02X", (unsigned char)*p);
        }
        n += (size_t)snprintf(buf + n, len - n, "@");
    }
    snprintf(buf + n, len - n,
             strchr(a->host, ':') != NULL ? "[%s]:%d" : "%s:%d", a->host,
             a->port);
    return buf;
}

static struct agw_redis *
open_one(struct agw_sentinel *s, const char *name, bool subscriber)
{
    const struct agw_sentinel_addr *a = &s->list[s->cur];
    char *url = sentinel_url(s, a);
    char err[256] = "out of memory";
    struct agw_redis *r = NULL;
    struct agw_redis_options opts = {
        .url = url,
        .connect_timeout_ms = s->connect_timeout_ms,
        .command_timeout_ms = s->command_timeout_ms,
        .name = name,
        .on_state = on_sentinel_state,
        .on_message = subscriber ? on_message : NULL,
        .on_lost = on_sentinel_lost,
        .lost_arg = s,
        .arg = s,
        .dns = s->dns,
        /* A new connection per round: miss() logs once per sentinel. */
        .quiet = true,
    };

    if (url != NULL) {
        r = agw_redis_new(s->base, &opts, err, sizeof(err));
        explicit_bzero(url, strlen(url));
        free(url);
    }
    if (r == NULL) {
        log_error("sentinel %s:%d: %s", a->host, a->port, err);
        abort(); /* the list was parsed already: out of memory */
    }
    return r;
}

static void
drop_sentinel(struct agw_sentinel *s)
{
    s->dropping = true;
    agw_redis_free(s->q);
    agw_redis_free(s->sub);
    s->q = s->sub = NULL;
    s->asking = false;
    s->dropping = false;
}

/* Connects to list[cur]; asks it at once (it may have switched while we
 * were elsewhere) and listens to it. */
static void
open_sentinel(struct agw_sentinel *s)
{
    s->q = open_one(s, "sentinel", false);
    s->sub = open_one(s, "sentinel-pubsub", true);
    agw_redis_subscribe(s->sub, SWITCH_CHANNEL);
    evtimer_del(s->deadline);
    need_answer(s);
}

static void
step(evutil_socket_t fd, short what, void *arg)
{
    struct agw_sentinel *s = arg;

    if (s->advance) {
        s->advance = false;
        drop_sentinel(s);
        s->cur = (s->cur + 1) % s->n;
        open_sentinel(s);
    }
    if (s->want && !s->asking && agw_redis_is_up(s->q)) {
        s->asking = true;
        agw_redis_commandf(s->q, on_master_addr, s,
                           "SENTINEL get-master-addr-by-name %s",
                           s->master_name);
    }
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct agw_sentinel *s = arg;
    char why[64];

    snprintf(why, sizeof(why), "no answer within %d ms",
             s->connect_timeout_ms + s->command_timeout_ms);
    miss(s, why);
}

/* ---------------------------------------------------------- public */

void
agw_sentinel_lost(const char *reason, void *arg)
{
    struct agw_sentinel *s = arg;

    need_answer(s);
}

void
agw_sentinel_follow(struct agw_sentinel *s, struct agw_redis *r)
{
    if (s->nfollowers == MAX_FOLLOWERS) {
        log_error("sentinel: too many followers");
        abort();
    }
    s->followers[s->nfollowers++] = r;
    if (s->known) {
        agw_redis_set_address(r, s->host, s->port);
    }
}

struct agw_sentinel *
agw_sentinel_new(struct event_base *base,
                 const struct agw_sentinel_options *opts, char *err,
                 size_t errlen)
{
    struct agw_sentinel *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        agw_set_err(err, errlen, "out of memory");
        return NULL;
    }
    if (!agw_sentinel_parse_list(opts->sentinels, s->list, &s->n, err,
                                 errlen)) {
        free(s);
        return NULL;
    }
    s->base = base;
    s->dns = opts->dns;
    s->master_name = strdup(opts->master_name);
    s->password = opts->password != NULL ? strdup(opts->password) : NULL;
    s->connect_timeout_ms = opts->connect_timeout_ms;
    s->command_timeout_ms = opts->command_timeout_ms;
    s->kick = evtimer_new(base, step, s);
    s->deadline = evtimer_new(base, on_deadline, s);
    if (s->master_name == NULL || s->kick == NULL || s->deadline == NULL ||
        (opts->password != NULL && s->password == NULL)) {
        agw_set_err(err, errlen, "out of memory");
        agw_sentinel_free(s);
        return NULL;
    }
    open_sentinel(s);
    return s;
}

void
agw_sentinel_free(struct agw_sentinel *s)
{
    if (s == NULL) {
        return;
    }
    drop_sentinel(s);
    if (s->kick != NULL) {
        event_free(s->kick);
    }
    if (s->deadline != NULL) {
        event_free(s->deadline);
    }
    if (s->password != NULL) {
        explicit_bzero(s->password, strlen(s->password));
        free(s->password);
    }
    free(s->master_name);
    free(s);
}
