/*
 * redis.c - one Redis connection on the event loop: hiredis's async API
 * driven by libevent, plus what hiredis 0.14 lacks: connect and command
 * timers, AUTH/SELECT before "up", reconnect with backoff, resubscribe.
 */
#include "redis.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#define DEFAULT_PORT 6379
#define DEFAULT_CONNECT_TIMEOUT_MS 2000
#define DEFAULT_COMMAND_TIMEOUT_MS 1000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define MAX_DB 1000000
#define MAX_HOST 253
#define REASON_MAX 200

/*
 * Lifetimes, since hiredis frees its context by itself on errors:
 * - r->ac is the live context; "detaching" it (ac->data = NULL, no
 *   connect/disconnect callbacks) makes every later hiredis callback for
 *   it a no-op for R, so R may go away while hiredis still holds it.
 * - A command (struct cmd) lives until both its user callback ran (done)
 *   and hiredis gave back its privdata (!in_hiredis): hiredis calls every
 *   queued callback exactly once, with NULL when the context is freed.
 * - redisAsyncFree is called only where hiredis allows it: outside its
 *   callbacks, or from a reply callback, where it merely sets a flag that
 *   hiredis acts on once the callback returns. Never from the connect or
 *   disconnect callbacks (hiredis still uses the context afterwards).
 * - User code may call agw_redis_free from any callback: R's memory is
 *   released only when the outermost entry into this file unwinds (busy).
 */

enum conn_state { ST_DOWN, ST_RESOLVING, ST_CONNECTING, ST_HANDSHAKE, ST_UP };

struct cmd {
    struct agw_redis *r;
    agw_redis_cb cb;
    void *arg;
    struct event *timer; /* command timeout, or the deferred failure */
    int64_t sent_us;
    bool sent;       /* handed to hiredis on the current context */
    bool in_hiredis; /* hiredis still owes us its callback */
    bool done;       /* CB ran */
    bool linked;     /* in r->pending */
    char error[REASON_MAX];
    struct cmd *prev, *next;
};

struct channel {
    char *name;
    bool wanted;    /* subscribed as far as the user is concerned */
    bool confirmed; /* the server confirmed it on this connection */
    int subs_due;   /* SUBSCRIBE replies still due on this connection */
    struct channel *next;
};

struct agw_redis {
    struct event_base *base;
    struct agw_redis_url url;
    char *name;
    char where[MAX_HOST + 48]; /* host:port/db for logs; no secrets */
    int connect_timeout_ms;
    int command_timeout_ms;
    agw_redis_state_cb on_state;
    void *arg;
    bool subscriber;
    agw_redis_message_cb on_message;
    agw_redis_subscribed_cb on_subscribed;
    agw_redis_state_cb sub_on_state;
    void *sub_arg;
    bool sentinel; /* address from agw_redis_set_address */
    bool moving;   /* dropping the connection for a new address */
    agw_redis_lost_cb on_lost;
    void *lost_arg;
    bool quiet; /* "up" and "down" at debug: the owner logs failures */

    struct evdns_base *dns;
    bool own_dns;
    struct evdns_getaddrinfo_request *lookup;
    bool resolving;

    redisAsyncContext *ac;
    enum conn_state state;
    int handshake_due; /* handshake replies still to come */
    struct event *retry_timer;
    struct event *connect_timer;
    int backoff_ms;
    bool down_logged;
    char last_error[REASON_MAX];
    long rtt_us;

    struct cmd *pending, *pending_tail; /* commands whose CB has not run */
    struct channel *channels;
    int busy;
    bool closing;
};

static void lose(struct agw_redis *r, const char *reason, bool we_free);
static void start_connect(struct agw_redis *r);

/* ------------------------------------------------------------ URL */

/* Percent-decodes LEN bytes of S into a new string; NULL when malformed
 * or when it would hold a NUL byte. */
static char *
pct_decode(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    size_t n = 0;

    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        int hi, lo;

        if (s[i] != '%') {
            out[n++] = s[i];
            continue;
        }
        hi = i + 2 < len ? agw_hex_value(s[i + 1]) : -1;
        lo = hi >= 0 ? agw_hex_value(s[i + 2]) : -1;
        if (lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        out[n++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[n] = '\0';
    return out;
}

/* USERINFO (LEN bytes, before the last '@'): "user:password" or
 * ":password". Messages never quote it: it holds the password. */
static bool
parse_userinfo(const char *s, size_t len, struct agw_redis_url *out, char *err,
               size_t errlen)
{
    const char *colon = memchr(s, ':', len);
    size_t ulen;

    if (colon == NULL) {
        agw_set_err(err, errlen,
                    "a user name without a password; write "
                    "redis://:PASSWORD@host or redis://USER:PASSWORD@host");
        return false;
    }
    ulen = (size_t)(colon - s);
    if (colon + 1 == s + len) {
        agw_set_err(err, errlen, "the password after ':' is empty");
        return false;
    }
    if (ulen > 0) {
        out->user = pct_decode(s, ulen);
        if (out->user == NULL) {
            agw_set_err(err, errlen, "bad percent-encoding in the user name");
            return false;
        }
    }
    out->password = pct_decode(colon + 1, len - ulen - 1);
    if (out->password == NULL) {
        agw_set_err(err, errlen, "bad percent-encoding in the password");
        return false;
    }
    return true;
}

/* Digits only, within [MIN, MAX]. */
static bool
parse_number(const char *s, size_t len, long min, long max, long *out)
{
    long v = 0;

    if (len == 0 || len > 9) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

static bool
host_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > MAX_HOST) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';

        if (!ok) {
            return false;
        }
    }
    return true;
}

/* HOSTPORT: host or [v6] literal, then optional :port. */
static bool
parse_hostport(const char *s, size_t len, struct agw_redis_url *out, char *err,
               size_t errlen)
{
    const char *end = s + len;
    const char *host = s;
    const char *p;
    size_t hlen;
    long port;
    char v6[64];
    unsigned char buf[16];

    if (len > 0 && s[0] == '[') {
        p = memchr(s, ']', len);
        hlen = p != NULL ? (size_t)(p - s - 1) : 0;
        if (p == NULL || hlen == 0 || hlen >= sizeof(v6)) {
            agw_set_err(err, errlen, "bad IPv6 address (want [addr])");
            return false;
        }
        memcpy(v6, s + 1, hlen);
        v6[hlen] = '\0';
        if (inet_pton(AF_INET6, v6, buf) != 1) {
            agw_set_err(err, errlen, "bad IPv6 address \"%s\"", v6);
            return false;
        }
        host = s + 1;
        p++;
    } else {
        p = memchr(s, ':', len);
        if (p == NULL) {
            p = end;
        }
        hlen = (size_t)(p - s);
        if (hlen == 0) {
            agw_set_err(err, errlen, "the host is missing");
            return false;
        }
        if (!host_name_ok(s, hlen)) {
            agw_set_err(err, errlen, "bad host \"%.*s\"",
                        (int)(hlen > 64 ? 64 : hlen), s);
            return false;
        }
    }
    if (p < end && *p != ':') {
        agw_set_err(err, errlen, "unexpected text after the IPv6 address");
        return false;
    }
    if (p < end) {
        if (!parse_number(p + 1, (size_t)(end - p - 1), 1, 65535, &port)) {
            agw_set_err(err, errlen, "bad port \"%.*s\" (want 1-65535)",
                        (int)(end - p - 1 > 16 ? 16 : end - p - 1), p + 1);
            return false;
        }
        out->port = (int)port;
    }
    out->host = strndup(host, hlen);
    if (out->host == NULL) {
        agw_set_err(err, errlen, "out of memory");
        return false;
    }
    return true;
}

static bool
parse_db(const char *s, size_t len, struct agw_redis_url *out, char *err,
         size_t errlen)
{
    long db;

    if (!parse_number(s, len, 0, MAX_DB, &db)) {
        agw_set_err(err, errlen,
                    "bad database number \"%.*s\" (want a number, e.g. /0)",
                    (int)(len > 16 ? 16 : len), s);
        return false;
    }
    out->db = (int)db;
    return true;
}

/* REST: what follows "redis://". The last '@' ends the user part, so a
 * password may hold any character and is never mistaken for the host. */
static bool
parse_tcp(const char *rest, struct agw_redis_url *out, char *err, size_t errlen)
{
    const char *at = strrchr(rest, '@');
    const char *hp = at != NULL ? at + 1 : rest;
    size_t hplen = strcspn(hp, "/?#");
    const char *tail = hp + hplen;
    size_t dblen = *tail == '/' ? strcspn(tail + 1, "?#") : 0;

    if (at != NULL &&
        !parse_userinfo(rest, (size_t)(at - rest), out, err, errlen)) {
        return false;
    }
    if (!parse_hostport(hp, hplen, out, err, errlen)) {
        return false;
    }
    if (*tail == '/') {
        tail += 1 + dblen;
    }
    if (*tail == '?' || *tail == '#') {
        agw_set_err(err, errlen,
                    "query or fragment not supported in redis:// URLs");
        return false;
    }
    if (dblen > 0) {
        return parse_db(tail - dblen, dblen, out, err, errlen);
    }
    return true;
}

/* REST: what follows "unix://": [userinfo@]/path[?db=N]. */
static bool
parse_unix(const char *rest, struct agw_redis_url *out, char *err,
           size_t errlen)
{
    const char *at = strrchr(rest, '@');
    const char *path = at != NULL ? at + 1 : rest;
    size_t plen = strcspn(path, "?#");
    const char *q = path + plen;
    struct sockaddr_un sa;

    if (at != NULL &&
        !parse_userinfo(rest, (size_t)(at - rest), out, err, errlen)) {
        return false;
    }
    if (plen < 2 || path[0] != '/') {
        agw_set_err(err, errlen,
                    "the socket path is missing (want unix:///path/to/socket)");
        return false;
    }
    if (plen >= sizeof(sa.sun_path)) {
        agw_set_err(err, errlen, "the socket path is longer than %zu bytes",
                    sizeof(sa.sun_path) - 1);
        return false;
    }
    if (*q == '#' || (*q == '?' && strncmp(q, "?db=", 4) != 0)) {
        agw_set_err(err, errlen, "unix:// URLs take only ?db=N");
        return false;
    }
    if (*q == '?' && !parse_db(q + 4, strlen(q + 4), out, err, errlen)) {
        return false;
    }
    out->path = strndup(path, plen);
    if (out->path == NULL) {
        agw_set_err(err, errlen, "out of memory");
        return false;
    }
    return true;
}

bool
agw_redis_url_parse(const char *url, struct agw_redis_url *out, char *err,
                    size_t errlen)
{
    bool ok;

    memset(out, 0, sizeof(*out));
    out->port = DEFAULT_PORT;
    if (url == NULL || *url == '\0') {
        agw_set_err(err, errlen, "the URL is empty");
        return false;
    }
    if (strncasecmp(url, "redis://", 8) == 0) {
        ok = parse_tcp(url + 8, out, err, errlen);
    } else if (strncasecmp(url, "unix://", 7) == 0) {
        ok = parse_unix(url + 7, out, err, errlen);
    } else if (strncasecmp(url, "rediss://", 9) == 0) {
        agw_set_err(err, errlen, "rediss:// (TLS) is not supported");
        ok = false;
    } else {
        agw_set_err(err, errlen,
                    "want redis://[[user]:password@]host[:port][/db] or "
                    "unix://[[user]:password@]/path[?db=N]");
        ok = false;
    }
    if (!ok) {
        agw_redis_url_clear(out);
    }
    return ok;
}

void
agw_redis_url_clear(struct agw_redis_url *url)
{
    if (url == NULL) {
        return;
    }
    free(url->host);
    free(url->path);
    free(url->user);
    if (url->password != NULL) {
        explicit_bzero(url->password, strlen(url->password));
        free(url->password);
    }
    memset(url, 0, sizeof(*url));
}

/* ------------------------------------------------------- helpers */

static void
hold(struct agw_redis *r)
{
    r->busy++;
}

static void destroy(struct agw_redis *r);

/* False when R was freed meanwhile: the caller must not touch it. */
static bool
unhold(struct agw_redis *r)
{
    if (--r->busy == 0 && r->closing) {
        destroy(r);
        return false;
    }
    return true;
}

/* Copies REASON into OUT, with the password (should a server ever echo
 * it) blanked out. */
static void
scrub(const struct agw_redis *r, const char *reason, char *out, size_t len)
{
    const char *pw = r->url.password;
    char *hit;

    snprintf(out, len, "%s", reason != NULL ? reason : "unknown error");
    if (pw == NULL || *pw == '\0') {
        return;
    }
    while ((hit = strstr(out, pw)) != NULL) {
        memset(hit, '*', strlen(pw));
    }
}

/* The context's error; hiredis copies it to ac->errstr only after the
 * connect callback, so read the inner context. */
static const char *
ac_error(const redisAsyncContext *ac, const char *fallback)
{
    if (ac != NULL && ac->c.err != 0 && ac->c.errstr[0] != '\0') {
        return ac->c.errstr;
    }
    return fallback;
}

static struct timeval
ms_tv(long ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

    return tv;
}

/* Every user callback of R goes through here. */
static void
notify_state(struct agw_redis *r, bool up)
{
    if (r->on_state != NULL) {
        r->on_state(up, r->arg);
    }
    if (!r->closing && r->sub_on_state != NULL) {
        r->sub_on_state(up, r->sub_arg);
    }
}

/* ------------------------------------------------------- commands */

static void
pending_link(struct agw_redis *r, struct cmd *c)
{
    c->prev = r->pending_tail;
    c->next = NULL;
    if (r->pending_tail != NULL) {
        r->pending_tail->next = c;
    } else {
        r->pending = c;
    }
    r->pending_tail = c;
    c->linked = true;
}

static void
pending_unlink(struct agw_redis *r, struct cmd *c)
{
    if (!c->linked) {
        return;
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        r->pending = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    } else {
        r->pending_tail = c->prev;
    }
    c->prev = c->next = NULL;
    c->linked = false;
}

static void
cmd_free(struct cmd *c)
{
    if (c->timer != NULL) {
        event_free(c->timer);
    }
    free(c);
}

/* Runs C's callback (C must be unlinked); frees C unless hiredis still
 * holds it. Touches neither C->r nor C after the callback. */
static void
complete(struct cmd *c, struct redisReply *reply, const char *error)
{
    c->done = true;
    if (c->timer != NULL) {
        evtimer_del(c->timer);
    }
    c->cb(reply, reply == NULL ? error : NULL, c->arg);
    if (!c->in_hiredis) {
        cmd_free(c);
    }
}

/* Completes every command in LIST (linked through next) with REASON. */
static void
fail_list(struct cmd *list, const char *reason)
{
    while (list != NULL) {
        struct cmd *c = list;

        list = c->next;
        c->next = NULL;
        complete(c, NULL, reason);
    }
}

/* Unlinks the commands sent on the current context into a list. */
static struct cmd *
take_sent(struct agw_redis *r)
{
    struct cmd *list = NULL, **tail = &list;
    struct cmd *c = r->pending;

    while (c != NULL) {
        struct cmd *next = c->next;

        if (c->sent) {
            pending_unlink(r, c);
            *tail = c;
            tail = &c->next;
        }
        c = next;
    }
    return list;
}

static void
on_cmd_timer(evutil_socket_t fd, short what, void *arg)
{
    struct cmd *c = arg;
    struct agw_redis *r = c->r;
    char reason[REASON_MAX];

    pending_unlink(r, c);
    if (!c->sent) {
        complete(c, NULL, c->error); /* deferred failure */
        return;
    }
    hold(r);
    snprintf(reason, sizeof(reason), "timed out after %d ms",
             r->command_timeout_ms);
    complete(c, NULL, reason);
    /* A stuck connection would stall every later command: recycle it. */
    if (!r->closing && r->ac != NULL) {
        lose(r, "a command timed out; connection recycled", true);
    }
    unhold(r);
}

/* Sentinel mode: replies saying this server is no longer the master
 * (a replica now, or a replica cut off from its master). A script's
 * write on a replica fails with READONLY too. */
static bool
is_failover_error(const redisReply *reply)
{
    return reply->type == REDIS_REPLY_ERROR && reply->str != NULL &&
           (strncmp(reply->str, "READONLY", 8) == 0 ||
            strncmp(reply->str, "MASTERDOWN", 10) == 0 ||
            strstr(reply->str, "READONLY You can't write") != NULL);
}

/* Hiredis's callback for a user command. */
static void
on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct cmd *c = privdata;
    struct agw_redis *r = ac->data;

    c->in_hiredis = false;
    if (c->done) {
        cmd_free(c); /* timed out or failed earlier; reply dropped */
        return;
    }
    if (r == NULL) {
        return; /* detached: whoever detached completes C */
    }
    hold(r);
    if (reply == NULL) {
        /* Hiredis is tearing the context down; this fails C as well. */
        lose(r, ac_error(ac, "connection lost"), false);
    } else if (r->sentinel && is_failover_error(reply)) {
        /* C is still sent: the loss fails it, as every other command. */
        char reason[REASON_MAX];

        snprintf(reason, sizeof(reason), "%.120s; asking the sentinels again",
                 ((redisReply *)reply)->str);
        lose(r, reason, true);
    } else {
        r->rtt_us = (long)(agw_now_us() - c->sent_us);
        agw_metrics_observe(AGW_M_REDIS_RTT, (double)r->rtt_us / 1e6);
        pending_unlink(r, c);
        complete(c, reply, NULL);
    }
    unhold(r);
}

static struct cmd *
cmd_new(struct agw_redis *r, agw_redis_cb cb, void *arg)
{
    struct cmd *c = calloc(1, sizeof(*c));

    if (c == NULL ||
        (c->timer = evtimer_new(r->base, on_cmd_timer, c)) == NULL) {
        /* No way to keep the "callback exactly once" promise. */
        log_error("redis %s: out of memory", r->name);
        abort();
    }
    c->r = r;
    c->cb = cb;
    c->arg = arg;
    pending_link(r, c);
    return c;
}

/* Why a command cannot be sent now, or NULL when it can. */
static const char *
refusal(const struct agw_redis *r, char *buf, size_t len)
{
    if (r->closing) {
        return "shutting down";
    }
    if (r->subscriber) {
        return "a subscriber connection takes no commands";
    }
    if (r->state != ST_UP) {
        snprintf(buf, len, "Redis is down (%.160s)",
                 r->last_error[0] != '\0' ? r->last_error : "connecting");
        return buf;
    }
    return NULL;
}

static void
defer_failure(struct cmd *c, const char *reason)
{
    struct timeval now = {0, 0};

    if (reason != c->error) {
        snprintf(c->error, sizeof(c->error), "%s", reason);
    }
    evtimer_add(c->timer, &now);
}

static void
mark_sent(struct agw_redis *r, struct cmd *c)
{
    struct timeval tv = ms_tv(r->command_timeout_ms);

    c->sent = true;
    c->in_hiredis = true;
    c->sent_us = agw_now_us();
    evtimer_add(c->timer, &tv);
}

void
agw_redis_command(struct agw_redis *r, agw_redis_cb cb, void *arg, int argc,
                  const char **argv, const size_t *argvlen)
{
    struct cmd *c = cmd_new(r, cb, arg);
    const char *why = refusal(r, c->error, sizeof(c->error));

    if (why != NULL) {
        defer_failure(c, why);
        return;
    }
    if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, argvlen) !=
        REDIS_OK) {
        defer_failure(c, "hiredis refused the command");
        return;
    }
    mark_sent(r, c);
}

void
agw_redis_commandf(struct agw_redis *r, agw_redis_cb cb, void *arg,
                   const char *fmt, ...)
{
    struct cmd *c = cmd_new(r, cb, arg);
    const char *why = refusal(r, c->error, sizeof(c->error));
    va_list ap;
    int rc;

    if (why != NULL) {
        defer_failure(c, why);
        return;
    }
    va_start(ap, fmt);
    rc = redisvAsyncCommand(r->ac, on_reply, c, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK) {
        defer_failure(c, "hiredis refused the command");
        return;
    }
    mark_sent(r, c);
}

/* ------------------------------------------------------------- scripts */

bool
agw_redis_script_init(struct agw_redis_script *s, const char *text)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    s->text = text;
    if (EVP_Digest(text, strlen(text), md, &len, EVP_sha1(), NULL) != 1 ||
        len != 20) {
        return false;
    }
    agw_hex(md, len, s->sha);
    return true;
}

/* A script call kept until its reply, so that it can be sent once more
 * as EVAL. ARGV[0] and ARGV[1] are "EVALSHA" and the SHA-1, then
 * "EVAL" and the text. */
struct script_call {
    struct agw_redis *r;
    const char *text;
    char sha[41];
    agw_redis_cb cb;
    void *arg;
    bool retried;
    int argc;
    const char **argv;
    size_t *argvlen;
};

static bool
is_noscript(const redisReply *reply)
{
    return reply != NULL && reply->type == REDIS_REPLY_ERROR &&
           reply->str != NULL && strncmp(reply->str, "NOSCRIPT", 8) == 0;
}

static void
on_script_reply(redisReply *reply, const char *error, void *arg)
{
    struct script_call *sc = arg;

    if (is_noscript(reply) && !sc->retried) {
        sc->retried = true;
        sc->argv[0] = "EVAL";
        sc->argvlen[0] = 4;
        sc->argv[1] = sc->text;
        sc->argvlen[1] = strlen(sc->text);
        agw_redis_command(sc->r, on_script_reply, sc, sc->argc, sc->argv,
                          sc->argvlen);
        return;
    }
    sc->cb(reply, error, sc->arg);
    free(sc);
}

void
agw_redis_script_call(struct agw_redis *r, const struct agw_redis_script *s,
                      agw_redis_cb cb, void *arg, int nkeys, int argc,
                      const char **argv, const size_t *argvlen)
{
    int total = argc + 3;
    size_t bytes = 0;
    struct script_call *sc;
    char *data;

    for (int i = 0; i < argc; i++) {
        bytes += argvlen[i];
    }
    /* One block: the struct, the argument vectors, then the bytes. */
    sc = calloc(1, sizeof(*sc) +
                       (size_t)total * (sizeof(char *) + sizeof(size_t)) +
                       bytes + 16);
    if (sc == NULL) {
        log_error("redis: out of memory");
        abort();
    }
    sc->r = r;
    sc->text = s->text;
    memcpy(sc->sha, s->sha, sizeof(sc->sha));
    sc->cb = cb;
    sc->arg = arg;
    sc->argc = total;
    sc->argv = (const char **)(sc + 1);
    sc->argvlen = (size_t *)(sc->argv + total);
    data = (char *)(sc->argvlen + total);
    sc->argv[0] = "EVALSHA";
    sc->argvlen[0] = 7;
    sc->argv[1] = sc->sha;
    sc->argvlen[1] = 40;
    sc->argvlen[2] = (size_t)snprintf(data, 16, "%d", nkeys);
    sc->argv[2] = data;
    data += 16;
    for (int i = 0; i < argc; i++) {
        memcpy(data, argv[i], argvlen[i]);
        sc->argv[3 + i] = data;
        sc->argvlen[3 + i] = argvlen[i];
        data += argvlen[i];
    }
    agw_redis_command(r, on_script_reply, sc, total, sc->argv, sc->argvlen);
}

/* ----------------------------------------------------- subscriber */

static struct channel *
channel_find(struct agw_redis *r, const char *name, size_t len)
{
    struct channel *ch;

    for (ch = r->channels; ch != NULL; ch = ch->next) {
        if (strlen(ch->name) == len && memcmp(ch->name, name, len) == 0) {
            return ch;
        }
    }
    return NULL;
}

static void
channel_remove_unwanted(struct agw_redis *r)
{
    struct channel **p = &r->channels;

    while (*p != NULL) {
        struct channel *ch = *p;

        if (!ch->wanted && ch->subs_due == 0) {
            *p = ch->next;
            free(ch->name);
            free(ch);
        } else {
            p = &ch->next;
        }
    }
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata);

static void
send_subscribe(struct agw_redis *r, struct channel *ch)
{
    if (redisAsyncCommand(r->ac, on_sub_reply, NULL, "SUBSCRIBE %s",
                          ch->name) == REDIS_OK) {
        ch->subs_due++;
    }
}

static void
deliver_message(struct agw_redis *r, redisReply *reply)
{
    redisReply *name = reply->element[1];
    redisReply *data = reply->element[2];
    struct channel *ch;

    if (name->type != REDIS_REPLY_STRING || data->type != REDIS_REPLY_STRING) {
        return;
    }
    ch = channel_find(r, name->str, name->len);
    /* The reply's copy of the name: the callback may unsubscribe, which
     * can free CH. */
    if (ch != NULL && ch->wanted && r->on_message != NULL) {
        r->on_message(name->str, data->str, data->len, r->sub_arg);
    }
}

/* A SUBSCRIBE counts as confirmed only when its last reply arrived, so a
 * quick unsubscribe + subscribe is not confirmed by the first reply. */
static void
on_subscribe_reply(struct agw_redis *r, redisReply *reply)
{
    redisReply *name = reply->element[1];
    struct channel *ch;

    if (name->type != REDIS_REPLY_STRING) {
        return;
    }
    ch = channel_find(r, name->str, name->len);
    if (ch == NULL) {
        return;
    }
    if (ch->subs_due > 0) {
        ch->subs_due--;
    }
    if (ch->subs_due > 0 || ch->confirmed) {
        return;
    }
    if (!ch->wanted) {
        channel_remove_unwanted(r);
        return;
    }
    ch->confirmed = true;
    if (r->on_subscribed != NULL) {
        r->on_subscribed(name->str, r->sub_arg);
    }
}

static void
on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct agw_redis *r = ac->data;
    redisReply *rep = reply;
    const char *kind;

    if (r == NULL) {
        return;
    }
    hold(r);
    if (rep == NULL) {
        lose(r, ac_error(ac, "connection lost"), false);
    } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 3 &&
               rep->element[0]->type == REDIS_REPLY_STRING) {
        kind = rep->element[0]->str;
        if (strcasecmp(kind, "message") == 0) {
            deliver_message(r, rep);
        } else if (strcasecmp(kind, "subscribe") == 0) {
            on_subscribe_reply(r, rep);
        }
    }
    unhold(r);
}

void
agw_redis_subscribe(struct agw_redis *r, const char *channel)
{
    struct channel *ch = channel_find(r, channel, strlen(channel));

    if (ch != NULL && ch->wanted) {
        return;
    }
    if (ch == NULL) {
        ch = calloc(1, sizeof(*ch));
        if (ch == NULL || (ch->name = strdup(channel)) == NULL) {
            log_error("redis %s: out of memory", r->name);
            abort();
        }
        ch->next = r->channels;
        r->channels = ch;
    }
    ch->wanted = true;
    ch->confirmed = false;
    r->subscriber = true;
    if (r->state == ST_UP && r->ac != NULL) {
        send_subscribe(r, ch);
    }
}

void
agw_redis_unsubscribe(struct agw_redis *r, const char *channel)
{
    struct channel *ch = channel_find(r, channel, strlen(channel));

    if (ch == NULL || !ch->wanted) {
        return;
    }
    ch->wanted = false;
    ch->confirmed = false;
    if (r->state == ST_UP && r->ac != NULL) {
        /* Hiredis queues no callback for UNSUBSCRIBE (its replies go to
         * the channel's SUBSCRIBE callback). */
        redisAsyncCommand(r->ac, NULL, NULL, "UNSUBSCRIBE %s", ch->name);
    }
    channel_remove_unwanted(r);
}

void
agw_redis_set_subscriber(struct agw_redis *r, agw_redis_message_cb on_message,
                         agw_redis_subscribed_cb on_subscribed,
                         agw_redis_state_cb on_state, void *arg)
{
    r->subscriber = true;
    r->on_message = on_message;
    r->on_subscribed = on_subscribed;
    r->sub_on_state = on_state;
    r->sub_arg = arg;
}

/* ---------------------------------------------------- connection */

/* Makes hiredis's later callbacks for AC no-ops for R. */
static void
detach(redisAsyncContext *ac)
{
    ac->data = NULL;
    ac->onConnect = NULL;
    ac->onDisconnect = NULL;
}

static void
schedule_retry(struct agw_redis *r)
{
    struct timeval tv = ms_tv(r->backoff_ms);

    evtimer_add(r->retry_timer, &tv);
    r->backoff_ms *= 2;
    if (r->backoff_ms > BACKOFF_MAX_MS) {
        r->backoff_ms = BACKOFF_MAX_MS;
    }
}

static void
reset_channels(struct agw_redis *r)
{
    for (struct channel *ch = r->channels; ch != NULL; ch = ch->next) {
        ch->confirmed = false;
        ch->subs_due = 0;
    }
    channel_remove_unwanted(r);
}

/*
 * The connection (or the attempt) is gone: fails what was sent on it,
 * reports "down" once and schedules the next attempt. WE_FREE: hiredis
 * is not already freeing the context, so we do.
 */
static void
lose(struct agw_redis *r, const char *reason, bool we_free)
{
    redisAsyncContext *ac = r->ac;
    bool was_up = r->state == ST_UP;
    char why[REASON_MAX];
    struct cmd *sent;

    scrub(r, reason, why, sizeof(why));
    snprintf(r->last_error, sizeof(r->last_error), "%s", why);
    r->ac = NULL;
    r->state = ST_DOWN;
    evtimer_del(r->connect_timer);
    reset_channels(r);
    sent = take_sent(r);
    if (ac != NULL) {
        detach(ac);
        if (we_free) {
            redisAsyncFree(ac);
        }
    }
    if (was_up || !r->down_logged) {
        AGW_LOG_AT(r->quiet ? AGW_LOG_DEBUG : AGW_LOG_WARN, NULL,
                   "redis %s: down: %s (%s)", r->name, why, r->where);
        r->down_logged = true;
    } else {
        log_debug("redis %s: still down: %s", r->name, why);
    }
    if (!r->closing) {
        schedule_retry(r);
    }
    fail_list(sent, why);
    if (was_up && !r->closing) {
        notify_state(r, false);
    }
    if (r->on_lost != NULL && !r->closing && !r->moving) {
        r->on_lost(why, r->lost_arg);
    }
}

static void
go_up(struct agw_redis *r)
{
    r->state = ST_UP;
    r->backoff_ms = BACKOFF_MIN_MS;
    r->last_error[0] = '\0';
    r->down_logged = false;
    evtimer_del(r->connect_timer);
    AGW_LOG_AT(r->quiet ? AGW_LOG_DEBUG : AGW_LOG_INFO, NULL,
               "redis %s: up (%s)", r->name, r->where);
    for (struct channel *ch = r->channels; ch != NULL; ch = ch->next) {
        if (ch->wanted) {
            send_subscribe(r, ch);
        }
    }
    notify_state(r, true);
}

/* ROLE's reply: an array whose first element is "master". */
static bool
is_master_role(const redisReply *rep)
{
    return rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
           rep->element[0]->type == REDIS_REPLY_STRING &&
           strcmp(rep->element[0]->str, "master") == 0;
}

static void
on_handshake(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct agw_redis *r = ac->data;
    redisReply *rep = reply;
    char reason[REASON_MAX];

    if (r == NULL) {
        return;
    }
    hold(r);
    if (rep == NULL) {
        lose(r, ac_error(ac, "connection lost"), false);
    } else if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(reason, sizeof(reason), "%s failed: %s",
                 (const char *)privdata, rep->str);
        lose(r, reason, true);
    } else if (strcmp(privdata, "ROLE") == 0 && !is_master_role(rep)) {
        lose(r, "ROLE says this server is not a master", true);
    } else if (--r->handshake_due == 0) {
        go_up(r);
    }
    unhold(r);
}

/* AUTH (when a password is set), then SELECT db, or PING for db 0: "up"
 * only once the server answered, so a wrong password or a NOAUTH server
 * never counts as up. */
static void
send_handshake(struct agw_redis *r, redisAsyncContext *ac)
{
    const struct agw_redis_url *u = &r->url;
    int ok = REDIS_OK;

    r->state = ST_HANDSHAKE;
    r->handshake_due = 0;
    if (u->password != NULL && u->user != NULL) {
        ok = redisAsyncCommand(ac, on_handshake, "AUTH", "AUTH %s %s", u->user,
                               u->password);
        r->handshake_due++;
    } else if (u->password != NULL) {
        ok =
            redisAsyncCommand(ac, on_handshake, "AUTH", "AUTH %s", u->password);
        r->handshake_due++;
    }
    if (ok == REDIS_OK && u->db != 0) {
        ok = redisAsyncCommand(ac, on_handshake, "SELECT", "SELECT %d", u->db);
        r->handshake_due++;
    } else if (ok == REDIS_OK) {
        ok = redisAsyncCommand(ac, on_handshake, "PING", "PING");
        r->handshake_due++;
    }
    /* Sentinel mode: the address a sentinel gave may be stale (a master
     * demoted since, an old master back as a replica). */
    if (ok == REDIS_OK && r->sentinel) {
        ok = redisAsyncCommand(ac, on_handshake, "ROLE", "ROLE");
        r->handshake_due++;
    }
    if (ok != REDIS_OK) {
        /* Only when hiredis is already failing the context; its
         * disconnect path reports the reason. */
        log_debug("redis %s: could not queue the handshake", r->name);
    }
}

static void
on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct agw_redis *r = ac->data;

    if (r == NULL) {
        return;
    }
    hold(r);
    if (status != REDIS_OK) {
        /* Hiredis frees the context when this returns. */
        lose(r, ac_error(ac, "connect failed"), false);
    } else {
        redisEnableKeepAlive(&ac->c);
        send_handshake(r, ac);
    }
    unhold(r);
}

static void
on_disconnect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct agw_redis *r = ac->data;

    if (r == NULL) {
        return;
    }
    hold(r);
    lose(r,
         status == REDIS_OK ? "connection closed"
                            : ac_error(ac, "connection lost"),
         false);
    unhold(r);
}

/* Adopts a fresh context (connect in progress) or reports its error. */
static void
adopt(struct agw_redis *r, redisAsyncContext *ac)
{
    char reason[REASON_MAX];

    if (ac == NULL) {
        lose(r, "out of memory", false);
        return;
    }
    if (ac->err != 0) {
        snprintf(reason, sizeof(reason), "%s", ac_error(ac, "connect failed"));
        redisAsyncFree(ac); /* not attached: no callbacks */
        lose(r, reason, false);
        return;
    }
    ac->data = r;
    if (redisLibeventAttach(ac, r->base) != REDIS_OK) {
        redisAsyncFree(ac);
        lose(r, "could not attach to the event loop", false);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    r->state = ST_CONNECTING;
}

static void
on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    struct agw_redis *r = arg;
    char ip[INET6_ADDRSTRLEN] = "";
    char reason[REASON_MAX];
    const void *addr;

    if (result == EVUTIL_EAI_CANCEL) {
        return; /* we cancelled: R may be on its way out */
    }
    r->lookup = NULL;
    r->resolving = false;
    hold(r);
    if (result != 0 || res == NULL) {
        snprintf(reason, sizeof(reason), "cannot resolve %s: %s", r->url.host,
                 evutil_gai_strerror(result));
        lose(r, reason, false);
    } else {
        addr =
            res->ai_family == AF_INET6
                ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)
                      ->sin6_addr
                : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
        evutil_inet_ntop(res->ai_family, addr, ip, sizeof(ip));
        adopt(r, redisAsyncConnect(ip, r->url.port));
    }
    if (res != NULL) {
        evutil_freeaddrinfo(res);
    }
    unhold(r);
}

static bool
is_numeric_host(const char *host)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
}

static void
resolve(struct agw_redis *r)
{
    struct evutil_addrinfo hints;
    struct evdns_getaddrinfo_request *req;

    if (r->dns == NULL) {
        r->dns = evdns_base_new(r->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
        r->own_dns = r->dns != NULL;
        if (r->dns == NULL) {
            lose(r, "cannot set up DNS", false);
            return;
        }
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    r->state = ST_RESOLVING;
    r->resolving = true;
    /* The callback may run before this returns (hosts file, cache). */
    req = evdns_getaddrinfo(r->dns, r->url.host, NULL, &hints, on_resolved, r);
    if (r->resolving) {
        r->lookup = req;
    }
}

static void
start_connect(struct agw_redis *r)
{
    struct timeval tv = ms_tv(r->connect_timeout_ms);
    const char *host = r->url.host;

    if (r->sentinel && r->url.host == NULL) {
        lose(r, "no master address from the sentinels yet", false);
        return;
    }
    evtimer_add(r->connect_timer, &tv);
    if (r->url.path != NULL) {
        adopt(r, redisAsyncConnectUnix(r->url.path));
    } else if (strcasecmp(host, "localhost") == 0) {
        adopt(r, redisAsyncConnect("127.0.0.1", r->url.port));
    } else if (is_numeric_host(host)) {
        adopt(r, redisAsyncConnect(host, r->url.port));
    } else {
        resolve(r);
    }
}

static void
on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    struct agw_redis *r = arg;

    hold(r);
    start_connect(r);
    unhold(r);
}

static void
cancel_lookup(struct agw_redis *r)
{
    if (r->lookup != NULL) {
        struct evdns_getaddrinfo_request *req = r->lookup;

        r->lookup = NULL;
        r->resolving = false;
        evdns_getaddrinfo_cancel(req);
    }
}

static void
on_connect_timer(evutil_socket_t fd, short what, void *arg)
{
    struct agw_redis *r = arg;
    char reason[REASON_MAX];

    hold(r);
    cancel_lookup(r);
    snprintf(reason, sizeof(reason), "no connection within %d ms",
             r->connect_timeout_ms);
    lose(r, reason, true);
    unhold(r);
}

/* -------------------------------------------------------- public */

static bool
init_events(struct agw_redis *r)
{
    struct timeval now = {0, 0};

    r->retry_timer = evtimer_new(r->base, on_retry_timer, r);
    r->connect_timer = evtimer_new(r->base, on_connect_timer, r);
    if (r->retry_timer == NULL || r->connect_timer == NULL) {
        return false;
    }
    evtimer_add(r->retry_timer, &now);
    return true;
}

static void
describe(struct agw_redis *r)
{
    const struct agw_redis_url *u = &r->url;

    if (u->path != NULL) {
        snprintf(r->where, sizeof(r->where), "unix:%s db %d", u->path, u->db);
    } else if (u->host == NULL) {
        snprintf(r->where, sizeof(r->where), "master unknown/%d", u->db);
    } else if (strchr(u->host, ':') != NULL) {
        snprintf(r->where, sizeof(r->where), "[%s]:%d/%d", u->host, u->port,
                 u->db);
    } else {
        snprintf(r->where, sizeof(r->where), "%s:%d/%d", u->host, u->port,
                 u->db);
    }
}

struct agw_redis *
agw_redis_new(struct event_base *base, const struct agw_redis_options *opts,
              char *err, size_t errlen)
{
    struct agw_redis *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        agw_set_err(err, errlen, "out of memory");
        return NULL;
    }
    if (!agw_redis_url_parse(opts->url, &r->url, err, errlen)) {
        free(r);
        return NULL;
    }
    r->base = base;
    r->name = strdup(opts->name != NULL ? opts->name : "redis");
    r->connect_timeout_ms = opts->connect_timeout_ms > 0
                                ? opts->connect_timeout_ms
                                : DEFAULT_CONNECT_TIMEOUT_MS;
    r->command_timeout_ms = opts->command_timeout_ms > 0
                                ? opts->command_timeout_ms
                                : DEFAULT_COMMAND_TIMEOUT_MS;
    r->on_state = opts->on_state;
    r->arg = opts->arg;
    r->on_message = opts->on_message;
    r->sub_arg = opts->arg;
    r->subscriber = opts->on_message != NULL;
    r->dns = opts->dns;
    r->sentinel = opts->sentinel;
    r->on_lost = opts->on_lost;
    r->lost_arg = opts->lost_arg;
    r->quiet = opts->quiet;
    if (r->sentinel) {
        /* The sentinels name the master: forget the URL's host. */
        free(r->url.host);
        r->url.host = NULL;
    }
    r->backoff_ms = BACKOFF_MIN_MS;
    r->rtt_us = -1;
    describe(r);
    if (r->name == NULL || !init_events(r)) {
        agw_set_err(err, errlen, "out of memory");
        destroy(r);
        return NULL;
    }
    return r;
}

static void
destroy(struct agw_redis *r)
{
    while (r->channels != NULL) {
        struct channel *ch = r->channels;

        r->channels = ch->next;
        free(ch->name);
        free(ch);
    }
    if (r->retry_timer != NULL) {
        event_free(r->retry_timer);
    }
    if (r->connect_timer != NULL) {
        event_free(r->connect_timer);
    }
    if (r->own_dns) {
        evdns_base_free(r->dns, 0);
    }
    agw_redis_url_clear(&r->url);
    free(r->name);
    free(r);
}

void
agw_redis_free(struct agw_redis *r)
{
    redisAsyncContext *ac;

    if (r == NULL || r->closing) {
        return;
    }
    r->closing = true;
    hold(r);
    evtimer_del(r->retry_timer);
    evtimer_del(r->connect_timer);
    cancel_lookup(r);
    ac = r->ac;
    r->ac = NULL;
    r->state = ST_DOWN;
    if (ac != NULL) {
        detach(ac);
        redisAsyncFree(ac);
    }
    /* Callbacks may queue more commands; they fail here too. */
    while (r->pending != NULL) {
        struct cmd *c = r->pending;

        pending_unlink(r, c);
        complete(c, NULL, "shutting down");
    }
    unhold(r);
}

bool
agw_redis_is_up(const struct agw_redis *r)
{
    return r != NULL && !r->closing && r->state == ST_UP;
}

void
agw_redis_set_address(struct agw_redis *r, const char *host, int port)
{
    char *copy;
    struct timeval now = {0, 0};

    if (r->closing || (r->url.host != NULL && strcmp(r->url.host, host) == 0 &&
                       r->url.port == port)) {
        return;
    }
    copy = strdup(host);
    if (copy == NULL) {
        log_error("redis %s: out of memory", r->name);
        abort();
    }
    free(r->url.host);
    r->url.host = copy;
    r->url.port = port;
    hold(r);
    cancel_lookup(r);
    if (r->state != ST_DOWN) {
        /* Not reported to on_lost: the new address is the answer. */
        r->moving = true;
        lose(r, "the master moved", true);
        r->moving = false;
    }
    describe(r);
    log_info("redis %s: the master is %s", r->name, r->where);
    r->backoff_ms = BACKOFF_MIN_MS;
    evtimer_del(r->retry_timer);
    if (!r->closing) {
        evtimer_add(r->retry_timer, &now);
    }
    unhold(r);
}

bool
agw_redis_address(const struct agw_redis *r, char *buf, size_t len)
{
    const struct agw_redis_url *u = &r->url;

    buf[0] = '\0';
    if (!agw_redis_is_up(r)) {
        return false;
    }
    if (u->path != NULL) {
        snprintf(buf, len, "%s", u->path);
    } else if (strchr(u->host, ':') != NULL) {
        snprintf(buf, len, "[%s]:%d", u->host, u->port);
    } else {
        snprintf(buf, len, "%s:%d", u->host, u->port);
    }
    return true;
}

long
agw_redis_last_rtt_us(const struct agw_redis *r)
{
    return r->rtt_us;
}
