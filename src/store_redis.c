/*
 * store_redis.c - the Redis tier of the store (SPEC §3): one Redis
 * string per answer, so a lookup is a single GET.
 *
 * Key layout: KEY_PREFIX "a:" DEDUPE_KEY, e.g. "agw:a:3f5c...e1" (the
 * dedupe key is 64 hex characters). Value: the HTTP status in decimal, a
 * '\n', then the body bytes as they are (binary-safe). TTL: put()'s
 * ttl_s, set with SET ... EX.
 *
 * A value read back is served only in the shape put() is given (SPEC
 * §8): a 2xx status (only those are stored) in 3 digits, then a body of
 * at most AGW_RESPONSE_MAX_BYTES. Anything else is a failed lookup, never
 * an answer. The body itself stays binary-safe and is not checked: a
 * writer to Redis could plant a well-formed false answer anyway, which is
 * why the Redis link must be trusted (README).
 */
#include "store_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "redis.h"
#include "reply.h"
#include "util.h"

#define STATUS_MAX_DIGITS 3
/* Values not ours are said at warn at most this often (a planted key
 * answers the same on every lookup), else at debug. */
#define BAD_VALUE_WARN_EVERY_US (60 * 1000000LL)

struct agw_store_redis {
    struct agw_redis *redis;
    char *prefix;          /* KEY_PREFIX "a:" */
    bool put_failing;      /* warn once per run of failed writes */
    int64_t bad_warned_us; /* the last warn of a value not ours */
    int refs;              /* the owner until freed, plus each op out */
};

/* One lookup in flight; holds a reference on the store. */
struct get_op {
    struct agw_store_redis *store;
    agw_store_get_cb cb;
    void *arg;
};

/* One write in flight; holds a reference on the store. */
struct put_op {
    struct agw_store_redis *store;
    char key[72]; /* the dedupe key, for the log */
};

static void
store_unref(struct agw_store_redis *s)
{
    if (--s->refs == 0) {
        free(s->prefix);
        free(s);
    }
}

static char *
full_key(const struct agw_store_redis *s, const char *key, size_t *len)
{
    size_t plen = strlen(s->prefix);
    size_t klen = strlen(key);
    char *out = malloc(plen + klen + 1);

    if (out == NULL) {
        return NULL;
    }
    memcpy(out, s->prefix, plen);
    memcpy(out + plen, key, klen + 1);
    *len = plen + klen;
    return out;
}

/* "<2xx status>\n<body>": false when VALUE is not in that shape. */
bool
agw_store_redis_decode(const char *value, size_t len, int *status,
                       const char **body, size_t *body_len)
{
    const char *nl = memchr(value, '\n', len < 8 ? len : 8);
    int st = 0;

    if (nl == NULL || nl == value || nl - value > STATUS_MAX_DIGITS) {
        return false;
    }
    for (const char *p = value; p < nl; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
        st = st * 10 + (*p - '0');
    }
    if (st < 200 || st > 299) {
        return false;
    }
    *status = st;
    *body = nl + 1;
    *body_len = len - (size_t)(nl + 1 - value);
    return *body_len <= AGW_RESPONSE_MAX_BYTES;
}

char *
agw_store_redis_encode(int status, const char *body, size_t len,
                       size_t *value_len)
{
    char head[16];
    int hlen = snprintf(head, sizeof(head), "%d\n", status);
    char *value = malloc((size_t)hlen + len + 1);

    if (value == NULL) {
        return NULL;
    }
    memcpy(value, head, (size_t)hlen);
    if (len > 0) {
        memcpy(value + hlen, body, len);
    }
    value[hlen + len] = '\0';
    *value_len = (size_t)hlen + len;
    return value;
}

/* A value that is not ours: at warn now and then, never echoed (it may
 * be huge, or anything). */
static void
bad_value(struct agw_store_redis *s, const redisReply *reply)
{
    int64_t now = agw_now_us();

    if (s->bad_warned_us != 0 &&
        now - s->bad_warned_us < BAD_VALUE_WARN_EVERY_US) {
        log_debug("store: a stored value is not \"<status>\\n<body>\"; "
                  "ignored");
        return;
    }
    s->bad_warned_us = now;
    log_warn("store: a stored value is not \"<status>\\n<body>\" (a 2xx "
             "status, at most %d bytes; got %zu bytes): ignored, and the next "
             "answer for the key replaces it",
             AGW_RESPONSE_MAX_BYTES, reply->len);
}

static void
on_get(struct redisReply *reply, const char *error, void *arg)
{
    struct get_op *op = arg;
    struct agw_store_redis *s = op->store;
    int status = 0;
    const char *body = NULL;
    size_t len = 0;

    if (reply == NULL) {
        log_debug("store: GET failed: %s", error);
        op->cb(AGW_STORE_ERROR, 0, NULL, 0, op->arg);
    } else if (reply->type == REDIS_REPLY_NIL) {
        op->cb(AGW_STORE_MISS, 0, NULL, 0, op->arg);
    } else if (reply->type == REDIS_REPLY_STRING &&
               agw_store_redis_decode(reply->str, reply->len, &status, &body,
                                      &len)) {
        op->cb(AGW_STORE_HIT, status, body, len, op->arg);
    } else if (reply->type == REDIS_REPLY_STRING) {
        /* Not written by us (or by an incompatible version, or planted):
         * a failed lookup, so the call goes on as when Redis fails. */
        bad_value(s, reply);
        op->cb(AGW_STORE_ERROR, 0, NULL, 0, op->arg);
    } else {
        log_warn("store: unexpected GET reply (type %d%s%.200s)", reply->type,
                 reply->type == REDIS_REPLY_ERROR ? ": " : "",
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        op->cb(AGW_STORE_ERROR, 0, NULL, 0, op->arg);
    }
    store_unref(s);
    free(op);
}

void
agw_store_redis_get(struct agw_store_redis *s, const char *key,
                    agw_store_get_cb cb, void *arg)
{
    struct get_op *op = malloc(sizeof(*op));
    const char *argv[2] = {"GET", NULL};
    size_t argvlen[2] = {3, 0};
    char *k = full_key(s, key, &argvlen[1]);

    if (op == NULL || k == NULL) {
        /* The interface allows an immediate callback. */
        free(op);
        free(k);
        cb(AGW_STORE_ERROR, 0, NULL, 0, arg);
        return;
    }
    op->store = s;
    s->refs++;
    op->cb = cb;
    op->arg = arg;
    argv[1] = k;
    agw_redis_command(s->redis, on_get, op, 2, argv, argvlen);
    free(k);
}

static void
on_put(struct redisReply *reply, const char *error, void *arg)
{
    struct put_op *op = arg;
    struct agw_store_redis *s = op->store;
    bool ok = reply != NULL && reply->type != REDIS_REPLY_ERROR;

    if (ok && s->put_failing) {
        log_info("store: writes to Redis work again");
        s->put_failing = false;
    } else if (!ok && !s->put_failing) {
        log_warn("store: answer for %.16s... not stored: %s", op->key,
                 reply != NULL ? reply->str : error);
        s->put_failing = true;
    } else if (!ok) {
        log_debug("store: answer for %.16s... not stored: %s", op->key,
                  reply != NULL ? reply->str : error);
    }
    store_unref(s);
    free(op);
}

void
agw_store_redis_set(struct agw_store_redis *s, const char *key, int status,
                    const char *body, size_t len, long ttl_s)
{
    struct put_op *op = calloc(1, sizeof(*op));
    char ttl[24];
    const char *argv[5] = {"SET", NULL, NULL, "EX", ttl};
    size_t argvlen[5] = {3, 0, 0, 2, 0};
    char *value = agw_store_redis_encode(status, body, len, &argvlen[2]);
    char *k = full_key(s, key, &argvlen[1]);

    if (op == NULL || value == NULL || k == NULL) {
        log_warn("store: answer for %.16s... not stored: out of memory", key);
        free(op);
        free(value);
        free(k);
        return;
    }
    op->store = s;
    s->refs++;
    snprintf(op->key, sizeof(op->key), "%s", key);
    argv[1] = k;
    argv[2] = value;
    argvlen[4] = (size_t)snprintf(ttl, sizeof(ttl), "%ld", ttl_s);
    if (ttl_s <= 0) {
        /* Like the memory store: replaced by nothing. */
        argv[0] = "DEL";
        argvlen[0] = 3;
        agw_redis_command(s->redis, on_put, op, 2, argv, argvlen);
    } else {
        agw_redis_command(s->redis, on_put, op, 5, argv, argvlen);
    }
    free(k);
    free(value);
}

void
agw_store_redis_free(struct agw_store_redis *s)
{
    if (s != NULL) {
        store_unref(s);
    }
}

bool
agw_store_redis_is_up(const struct agw_store_redis *s)
{
    return agw_redis_is_up(s->redis);
}

struct agw_store_redis *
agw_store_redis_new(struct agw_redis *redis, const char *key_prefix)
{
    struct agw_store_redis *s = calloc(1, sizeof(*s));
    const char *p = key_prefix != NULL ? key_prefix : "";

    if (s == NULL) {
        return NULL;
    }
    s->prefix = malloc(strlen(p) + 3);
    if (s->prefix == NULL) {
        free(s);
        return NULL;
    }
    sprintf(s->prefix, "%s" AGW_STORE_REDIS_KEY, p);
    s->redis = redis;
    s->refs = 1;
    return s;
}
