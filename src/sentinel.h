/*
 * sentinel.h - follows the Redis master that Redis Sentinel names (SPEC
 * §10), with plain commands since hiredis 0.14 has no Sentinel support:
 * SENTINEL get-master-addr-by-name asked of the sentinels in turn, and
 * +switch-master heard on one of them.
 */
#ifndef AGW_SENTINEL_H
#define AGW_SENTINEL_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct evdns_base;
struct agw_redis;
struct agw_sentinel;

#define AGW_SENTINEL_DEFAULT_PORT 26379
#define AGW_SENTINEL_MAX 16

struct agw_sentinel_addr {
    char host[256]; /* IPv4, IPv6 (without brackets) or a DNS name */
    int port;
};

/*
 * Parses "host:port, host:port, ..." (port 26379 when absent; [v6]:port)
 * into OUT (at most AGW_SENTINEL_MAX); the count in *N. False with the
 * reason in ERR on a bad entry, an empty list or too many. -t and the
 * daemon both parse with this.
 */
bool agw_sentinel_parse_list(const char *list, struct agw_sentinel_addr *out,
                             int *n, char *err, size_t errlen);

struct agw_sentinel_options {
    const char *sentinels;   /* the [store] sentinels list */
    const char *master_name; /* [store] sentinel_master */
    const char *password;    /* AUTH for the sentinels, or NULL; secret */
    int connect_timeout_ms;
    int command_timeout_ms;
    struct evdns_base *dns; /* borrowed, may be NULL */
};

/*
 * One per event loop. Starts asking the sentinels at once and never
 * blocks; strings are copied. NULL on a bad list (ERR says why) or out
 * of memory. Free with agw_sentinel_free after the followers (their
 * on_lost calls agw_sentinel_lost).
 */
struct agw_sentinel *agw_sentinel_new(struct event_base *base,
                                      const struct agw_sentinel_options *opts,
                                      char *err, size_t errlen);
void agw_sentinel_free(struct agw_sentinel *s);

/* R (a sentinel-mode connection, borrowed, at most 4) is told the
 * master's address now (when known) and on every change. */
void agw_sentinel_follow(struct agw_sentinel *s, struct agw_redis *r);

/* An agw_redis_lost_cb for the followers (ARG: the agw_sentinel): their
 * connection failed, so the master may have moved: ask again. */
void agw_sentinel_lost(const char *reason, void *arg);

#endif
