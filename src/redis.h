/*
 * redis.h - one asynchronous Redis connection on the event loop (hiredis
 * async API + its libevent adapter): connect and command timeouts of our
 * own (hiredis 0.14 has none for commands), AUTH and SELECT, reconnect
 * with backoff, and an up/down state the rest of the gateway reads.
 */
#ifndef AGW_REDIS_H
#define AGW_REDIS_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct evdns_base;
struct redisReply;
struct agw_redis;

/*
 * Parsed redis_url:
 *   redis://[[user]:password@]host[:port][/db]   port 6379 and db 0 by default
 *   unix://[[user]:password@]/path/to/socket[?db=N]
 * host is an IPv4 address, [IPv6], "localhost" (taken as 127.0.0.1) or a
 * DNS name (resolved with evdns on each connect: nothing blocks). User and
 * password may be percent-encoded; the password is everything between the
 * first ':' of the user part and the last '@'. "user@host" without a
 * password is refused. rediss:// (TLS) is not supported.
 */
struct agw_redis_url {
    char *host; /* NULL for unix sockets */
    int port;
    char *path;     /* unix socket path, or NULL */
    char *user;     /* NULL when absent (AUTH password only) */
    char *password; /* NULL when absent; secret: never log it */
    int db;
};

/* Parses URL into OUT (free with agw_redis_url_clear). On failure returns
 * false with the reason in ERR, which never contains the password. */
bool agw_redis_url_parse(const char *url, struct agw_redis_url *out, char *err,
                         size_t errlen);
void agw_redis_url_clear(struct agw_redis_url *url);

/*
 * Result of a command. REPLY is NULL when the command failed: connection
 * down or lost, timed out, or refused before sending; ERROR then says
 * why. A Redis error reply (REDIS_REPLY_ERROR) is passed as a REPLY. The
 * reply is valid only during the callback.
 */
typedef void (*agw_redis_cb)(struct redisReply *reply, const char *error,
                             void *arg);

/* Called when the connection goes up (after AUTH/SELECT) or down. */
typedef void (*agw_redis_state_cb)(bool up, void *arg);

/*
 * Subscriber connections: MESSAGE_CB runs for each message on a
 * subscribed channel (DATA is LEN bytes, NUL-terminated as well, valid
 * only during the call). Subscriptions are re-sent after every reconnect.
 */
typedef void (*agw_redis_message_cb)(const char *channel, const char *data,
                                     size_t len, void *arg);

/* Subscriber connections: the server confirmed the SUBSCRIBE of CHANNEL
 * (again after every reconnect); messages published from now on arrive. */
typedef void (*agw_redis_subscribed_cb)(const char *channel, void *arg);

/* Called on every loss or failed connection attempt (not only on changes
 * of "up"), with the reason (never the password). */
typedef void (*agw_redis_lost_cb)(const char *reason, void *arg);

struct agw_redis_options {
    const char *url;
    int connect_timeout_ms;          /* TCP connect + AUTH/SELECT; <= 0: 2000 */
    int command_timeout_ms;          /* <= 0: 1000 */
    const char *name;                /* for logs, e.g. "store" or "pubsub" */
    agw_redis_state_cb on_state;     /* may be NULL */
    agw_redis_message_cb on_message; /* non-NULL makes a subscriber */
    void *arg;                       /* for both callbacks */
    struct evdns_base *dns;          /* borrowed, for DNS names; NULL: one of
                                        its own is made when the host needs it */
    /*
     * Sentinel mode (SPEC §10): the URL's host and port are ignored; the
     * connection waits for agw_redis_set_address, goes up only once ROLE
     * says "master", and drops the connection on a READONLY or MASTERDOWN
     * reply (the command fails as if the connection were lost).
     */
    bool sentinel;
    agw_redis_lost_cb on_lost; /* may be NULL */
    void *lost_arg;            /* for on_lost */
    /* The owner reports failures itself (on_lost): "up" and "down" are
     * logged at debug only. For connections made anew on every retry,
     * which would otherwise log "down" on each one. */
    bool quiet;
};

/*
 * Starts connecting at once (from the event loop: no callback runs before
 * this returns); never blocks. Reconnects by itself with backoff (100 ms
 * doubling to 2 s) whenever the connection is down. Returns NULL only when
 * the URL is invalid or memory ran out (reason in ERR, never the
 * password). OPTS and its strings are copied. Logs "up" (info) and "down:
 * reason" (warn) once per change (both at debug when quiet), never the
 * password.
 */
struct agw_redis *agw_redis_new(struct event_base *base,
                                const struct agw_redis_options *opts, char *err,
                                size_t errlen);

/* Closes the connection; pending commands get their callback with
 * REPLY NULL ("shutting down") before this returns. May be called from
 * any callback of R. R must not be used afterwards. */
void agw_redis_free(struct agw_redis *r);

/* Connected, authenticated and SELECTed. The state callbacks run only on
 * changes of this value (not for each failed reconnect attempt). */
bool agw_redis_is_up(const struct agw_redis *r);

/*
 * Sends one command (binary-safe argv; copied). CB runs exactly once,
 * never before this returns: with the reply, or with NULL on failure
 * (down — also while still connecting —, lost, or no reply within
 * command_timeout_ms — a reply arriving after that is dropped, and the
 * connection is recycled since it is stuck: every other command pending
 * on it fails too, and it reconnects with backoff). Subscriber
 * connections take no commands (CB gets NULL).
 */
void agw_redis_command(struct agw_redis *r, agw_redis_cb cb, void *arg,
                       int argc, const char **argv, const size_t *argvlen);

/* printf-style convenience for commands without binary arguments. */
void agw_redis_commandf(struct agw_redis *r, agw_redis_cb cb, void *arg,
                        const char *fmt, ...);

/*
 * A Lua script called with EVALSHA, so each call sends the script's
 * SHA-1 rather than its text. Redis knows the script after the first
 * EVAL of it (or a SCRIPT LOAD); it forgets it on restart or SCRIPT
 * FLUSH, and then answers NOSCRIPT.
 */
struct agw_redis_script {
    const char *text; /* borrowed: a string that lives as long (static) */
    char sha[41];     /* lowercase hex */
};

/* Computes TEXT's SHA-1 into S; false only when the digest failed. */
bool agw_redis_script_init(struct agw_redis_script *s, const char *text);

/*
 * Calls S with NKEYS keys then the other arguments (ARGC strings of
 * ARGVLEN bytes, binary-safe; copied) as EVALSHA; on NOSCRIPT, sends the
 * call once more as EVAL with the script's text, which also loads it
 * for the next EVALSHA. CB runs exactly once, as for agw_redis_command:
 * with the reply of the call that ran (a NOSCRIPT only if the EVAL
 * answered it too).
 */
void agw_redis_script_call(struct agw_redis *r,
                           const struct agw_redis_script *s, agw_redis_cb cb,
                           void *arg, int nkeys, int argc, const char **argv,
                           const size_t *argvlen);

/* Subscriber connections only: (un)subscribe CHANNEL. Idempotent per
 * channel; kept across reconnects. */
void agw_redis_subscribe(struct agw_redis *r, const char *channel);
void agw_redis_unsubscribe(struct agw_redis *r, const char *channel);

/*
 * Makes R a subscriber and sends its messages, subscription confirmations
 * and up/down changes to these callbacks (any may be NULL; ARG for all),
 * replacing opts->on_message; opts->on_state keeps running too. For the
 * module that owns the channels (flight_fleet.c), which exists only after the
 * connection does. Call again with NULLs to detach.
 */
void agw_redis_set_subscriber(struct agw_redis *r,
                              agw_redis_message_cb on_message,
                              agw_redis_subscribed_cb on_subscribed,
                              agw_redis_state_cb on_state, void *arg);

/*
 * Sentinel mode: connect to HOST:PORT from now on (copied). A different
 * address drops the current connection ("down") and connects to the new
 * one at once; the same address changes nothing.
 */
void agw_redis_set_address(struct agw_redis *r, const char *host, int port);

/* "host:port" of the server R is connected to into BUF; false (BUF
 * empty) while R is not up. */
bool agw_redis_address(const struct agw_redis *r, char *buf, size_t len);

/* Round-trip time of the last successful command, in microseconds; -1
 * before the first one. */
long agw_redis_last_rtt_us(const struct agw_redis *r);

#endif
