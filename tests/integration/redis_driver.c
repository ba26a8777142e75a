/*
 * redis_driver.c - drives redis.c, store_redis.c and flight_fleet.c against a
 * real redis-server for test_redis_layer.py: "redis_driver MODE URL
 * [ARGS]" prints one result per line; the Python side checks them.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "config.h"
#include "flight_fleet.h"
#include "log.h"
#include "redis.h"
#include "reply.h"
#include "store.h"
#include "store_redis.h"
#include "util.h"

#define WAIT_UP_MS 5000

static struct event_base *base;
static int64_t start_us;

/* ------------------------------------------------------------ loop */

static long
now_ms(void)
{
    return (long)((agw_now_us() - start_us) / 1000);
}

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
out(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
}

/* Runs the loop until *FLAG (when FLAG is not NULL) or MS pass. */
static bool
run_until(const bool *flag, long ms)
{
    int64_t end = agw_now_us() + (int64_t)ms * 1000;

    while ((flag == NULL || !*flag) && agw_now_us() < end) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    return flag == NULL || *flag;
}

static void
run_for(long ms)
{
    run_until(NULL, ms);
}

/* ------------------------------------------------------ connections */

struct conn {
    const char *name;
    struct agw_redis *r;
    bool up;
    int ups, downs;
};

static void
on_state(bool up, void *arg)
{
    struct conn *c = arg;

    c->up = up;
    if (up) {
        c->ups++;
    } else {
        c->downs++;
    }
    out("%ld state %s %s", now_ms(), c->name, up ? "up" : "down");
}

static bool
conn_open(struct conn *c, const char *name, const char *url, int connect_ms,
          int command_ms)
{
    struct agw_redis_options o = {
        .url = url,
        .connect_timeout_ms = connect_ms,
        .command_timeout_ms = command_ms,
        .name = name,
        .on_state = on_state,
        .arg = c,
    };
    char err[256];

    memset(c, 0, sizeof(*c));
    c->name = name;
    c->r = agw_redis_new(base, &o, err, sizeof(err));
    if (c->r == NULL) {
        out("new-failed %s", err);
        return false;
    }
    return true;
}

static bool
conn_wait_up(struct conn *c, long ms)
{
    return run_until(&c->up, ms);
}

/* ------------------------------------------------- sync commands */

struct result {
    bool done;
    int calls;
    long at_ms;
    char text[600];
    char raw[600]; /* string replies, binary */
    size_t rawlen;
};

static void
describe(const redisReply *rep, const char *error, char *buf, size_t len)
{
    if (rep == NULL) {
        snprintf(buf, len, "fail:%s", error != NULL ? error : "(null)");
        return;
    }
    switch (rep->type) {
    case REDIS_REPLY_STATUS:
        snprintf(buf, len, "status:%s", rep->str);
        break;
    case REDIS_REPLY_ERROR:
        snprintf(buf, len, "err:%s", rep->str);
        break;
    case REDIS_REPLY_INTEGER:
        snprintf(buf, len, "int:%lld", rep->integer);
        break;
    case REDIS_REPLY_NIL:
        snprintf(buf, len, "nil");
        break;
    case REDIS_REPLY_STRING:
        snprintf(buf, len, "str:%.*s", (int)(rep->len > 400 ? 400 : rep->len),
                 rep->str);
        break;
    case REDIS_REPLY_ARRAY: {
        size_t n = (size_t)snprintf(buf, len, "array:[");

        for (size_t i = 0; i < rep->elements && n + 2 < len; i++) {
            describe(rep->element[i], NULL, buf + n, len - n - 1);
            n = strlen(buf);
            if (i + 1 < rep->elements && n + 2 < len) {
                buf[n++] = ',';
                buf[n] = '\0';
            }
        }
        snprintf(buf + n, len - n, "]");
        break;
    }
    default:
        snprintf(buf, len, "type:%d", rep->type);
    }
}

static void
on_result(struct redisReply *rep, const char *error, void *arg)
{
    struct result *res = arg;

    res->calls++;
    res->done = true;
    res->at_ms = now_ms();
    describe(rep, error, res->text, sizeof(res->text));
    if (rep != NULL && rep->type == REDIS_REPLY_STRING &&
        rep->len <= sizeof(res->raw)) {
        memcpy(res->raw, rep->str, rep->len);
        res->rawlen = rep->len;
    }
}

/* Sends FMT on R and waits (at most 10 s) for the reply text. */
static const char *
sync_cmd(struct agw_redis *r, struct result *res, const char *fmt, ...)
{
    va_list ap;
    char cmd[512];

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    memset(res, 0, sizeof(*res));
    agw_redis_commandf(r, on_result, res, cmd);
    if (res->done) {
        out("BUG callback ran inside agw_redis_command");
    }
    if (!run_until(&res->done, 10000)) {
        snprintf(res->text, sizeof(res->text), "no-callback");
    }
    return res->text;
}

/* ------------------------------------------------------------ modes */

static int
mode_parse(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        struct agw_redis_url u;
        char err[256];

        if (!agw_redis_url_parse(argv[i], &u, err, sizeof(err))) {
            out("err %s", err);
            continue;
        }
        out("ok host=%s port=%d path=%s user=%s password=%s db=%d",
            u.host != NULL ? u.host : "-", u.port,
            u.path != NULL ? u.path : "-", u.user != NULL ? u.user : "-",
            u.password != NULL ? "<set>" : "-", u.db);
        agw_redis_url_clear(&u);
    }
    return 0;
}

/* Connects, runs commands, checks RTT, binary safety, and free with
 * commands pending. */
static int
mode_basic(const char *url)
{
    struct conn c;
    struct result early, res, many[5];
    const char bin[] = "a\0b\r\n\xff\x01z";
    const char *argv[3] = {"SET", "drv:bin", bin};
    size_t argvlen[3] = {3, 7, sizeof(bin) - 1};
    int shut = 0;

    if (!conn_open(&c, "basic", url, 2000, 1000)) {
        return 1;
    }
    memset(&early, 0, sizeof(early));
    agw_redis_commandf(c.r, on_result, &early, "PING");
    out("early-sync %s", early.done ? "yes" : "no");
    run_until(&early.done, 1000);
    out("early %s after %ld ms", early.text, early.at_ms);
    out("rtt-before %ld", agw_redis_last_rtt_us(c.r));
    if (!conn_wait_up(&c, WAIT_UP_MS)) {
        out("not-up");
        return 1;
    }
    out("up is_up=%d", agw_redis_is_up(c.r));
    out("ping %s", sync_cmd(c.r, &res, "PING"));
    out("rtt-after %ld", agw_redis_last_rtt_us(c.r));
    memset(&res, 0, sizeof(res));
    agw_redis_command(c.r, on_result, &res, 3, argv, argvlen);
    run_until(&res.done, 5000);
    out("set %s", res.text);
    out("strlen %s", sync_cmd(c.r, &res, "STRLEN drv:bin"));
    sync_cmd(c.r, &res, "GET drv:bin");
    out("binary %s", res.rawlen == sizeof(bin) - 1 &&
                             memcmp(res.raw, bin, sizeof(bin) - 1) == 0
                         ? "same"
                         : "different");
    out("error-reply %s", sync_cmd(c.r, &res, "NOSUCHCOMMAND x"));
    memset(many, 0, sizeof(many));
    for (int i = 0; i < 5; i++) {
        agw_redis_commandf(c.r, on_result, &many[i], "PING");
    }
    agw_redis_free(c.r);
    for (int i = 0; i < 5; i++) {
        shut += many[i].calls == 1 &&
                strcmp(many[i].text, "fail:shutting down") == 0;
    }
    out("free-pending %d of 5 failed with shutting down", shut);
    return 0;
}

static int
mode_auth(const char *url)
{
    struct conn c;
    struct result res;

    if (!conn_open(&c, "auth", url, 2000, 1000)) {
        return 1;
    }
    out("%s", conn_wait_up(&c, 3000) ? "up" : "not-up");
    out("ping %s", sync_cmd(c.r, &res, "PING"));
    out("downs %d ups %d", c.downs, c.ups);
    agw_redis_free(c.r);
    return 0;
}

static int
mode_set(const char *url, const char *key, const char *value)
{
    struct conn c;
    struct result res;

    if (!conn_open(&c, "set", url, 2000, 1000) ||
        !conn_wait_up(&c, WAIT_UP_MS)) {
        out("not-up");
        return 1;
    }
    out("set %s", sync_cmd(c.r, &res, "SET %s %s", key, value));
    agw_redis_free(c.r);
    return 0;
}

static int
mode_get(const char *url, const char *key)
{
    struct conn c;
    struct result res;

    if (!conn_open(&c, "get", url, 2000, 1000) ||
        !conn_wait_up(&c, WAIT_UP_MS)) {
        out("not-up");
        return 1;
    }
    out("get %s", sync_cmd(c.r, &res, "GET %s", key));
    agw_redis_free(c.r);
    return 0;
}

/* CLIENT PAUSE from a second connection stalls the first one's
 * commands: they time out, the connection is recycled, and it comes back
 * once the pause ends. */
static int
mode_timeout(const char *url)
{
    struct conn a, b;
    struct result res, p[3];
    long t0, back;

    if (!conn_open(&a, "a", url, 500, 300) ||
        !conn_open(&b, "b", url, 2000, 5000) || !conn_wait_up(&a, WAIT_UP_MS) ||
        !conn_wait_up(&b, WAIT_UP_MS)) {
        out("not-up");
        return 1;
    }
    out("pause %s", sync_cmd(b.r, &res, "CLIENT PAUSE 1500 ALL"));
    memset(p, 0, sizeof(p));
    t0 = now_ms();
    for (int i = 0; i < 3; i++) {
        agw_redis_commandf(a.r, on_result, &p[i], "PING");
    }
    run_until(&p[2].done, 3000);
    run_until(&p[1].done, 100);
    run_until(&p[0].done, 100);
    for (int i = 0; i < 3; i++) {
        out("cmd%d %s after %ld ms", i, p[i].text, p[i].at_ms - t0);
    }
    out("is_up-after-timeout %d", agw_redis_is_up(a.r));
    if (!conn_wait_up(&a, WAIT_UP_MS)) {
        out("not-recovered");
        return 1;
    }
    back = now_ms() - t0;
    out("recovered after %ld ms", back);
    out("ping-after %s", sync_cmd(a.r, &res, "PING"));
    run_for(500); /* late replies to the timed-out commands are dropped */
    out("callbacks %d %d %d", p[0].calls, p[1].calls, p[2].calls);
    agw_redis_free(a.r);
    agw_redis_free(b.r);
    return 0;
}

/* PING every 100 ms for SECONDS, printing results and state changes. */
static int
mode_watch(const char *url, long seconds)
{
    struct conn c;
    struct result res[1000];
    int n = 0;
    int64_t end = agw_now_us() + seconds * 1000000;

    if (!conn_open(&c, "watch", url, 500, 500)) {
        return 1;
    }
    memset(res, 0, sizeof(res));
    while (agw_now_us() < end && n < 1000) {
        long t = now_ms();
        struct result *r = &res[n++];

        agw_redis_commandf(c.r, on_result, r, "PING");
        run_until(&r->done, 1000);
        out("%ld ping %s %s in %ld ms", t, r->done ? "done" : "pending",
            r->text, r->at_ms - t);
        run_for(100);
    }
    agw_redis_free(c.r);
    out("done ups=%d downs=%d", c.ups, c.downs);
    return 0;
}

/* ------------------------------------------------------------ store */

struct lookup {
    bool done;
    enum agw_store_result result;
    int status;
    char body[600];
    size_t len;
    long at_ms;
};

static void
on_lookup(enum agw_store_result result, int status, const char *body,
          size_t len, void *arg)
{
    struct lookup *l = arg;

    l->done = true;
    l->result = result;
    l->status = status;
    l->len = len;
    l->at_ms = now_ms();
    if (body != NULL) {
        memcpy(l->body, body, len < sizeof(l->body) ? len : sizeof(l->body));
    }
}

static const char *
result_name(enum agw_store_result r)
{
    return r == AGW_STORE_HIT ? "HIT" : r == AGW_STORE_MISS ? "MISS" : "ERROR";
}

static void
store_get(struct agw_store_redis *s, const char *key, struct lookup *l)
{
    long t0 = now_ms();

    memset(l, 0, sizeof(*l));
    agw_store_redis_get(s, key, on_lookup, l);
    if (l->done) {
        out("BUG store callback inside get");
    }
    run_until(&l->done, 5000);
    out("get %s %s status=%d len=%zu in %ld ms", key, result_name(l->result),
        l->status, l->len, l->at_ms - t0);
}

static int
mode_store(const char *url)
{
    struct conn c;
    struct agw_store_redis *s;
    struct lookup l;
    struct result res;
    char body[300];

    for (int i = 0; i < 256; i++) {
        body[i] = (char)i;
    }
    memcpy(body + 256, "\n201\n\0end", 9);
    if (!conn_open(&c, "store", url, 2000, 1000) ||
        !conn_wait_up(&c, WAIT_UP_MS)) {
        out("not-up");
        return 1;
    }
    s = agw_store_redis_new(c.r, "agw:");
    agw_store_redis_set(s, "k1", 201, body, 265, 2);
    agw_store_redis_set(s, "k3", 200, "", 0, 100);
    run_for(200);
    store_get(s, "k1", &l);
    out("body %s",
        l.len == 265 && memcmp(l.body, body, 265) == 0 ? "same" : "different");
    store_get(s, "k3", &l);
    store_get(s, "missing", &l);
    out("exists %s", sync_cmd(c.r, &res, "EXISTS agw:a:k1"));
    out("ttl %s", sync_cmd(c.r, &res, "TTL agw:a:k1"));
    sync_cmd(c.r, &res, "SET agw:a:bad garbage");
    store_get(s, "bad", &l);
    agw_store_redis_set(s, "k3", 200, "x", 1, 0); /* TTL 0: removes it */
    run_for(200);
    store_get(s, "k3", &l);
    run_for(2300);
    store_get(s, "k1", &l);
    agw_store_redis_free(s);
    agw_redis_free(c.r);
    return 0;
}

/* Redis unreachable: lookups fail fast, writes are dropped (logged). */
static int
mode_store_down(const char *url)
{
    struct conn c;
    struct agw_store_redis *s;
    struct lookup l;

    if (!conn_open(&c, "store", url, 500, 500)) {
        return 1;
    }
    s = agw_store_redis_new(c.r, "agw:");
    run_for(300);
    store_get(s, "k1", &l);
    agw_store_redis_set(s, "k1", 200, "{}", 2, 60);
    agw_store_redis_set(s, "k2", 200, "{}", 2, 60);
    run_for(200);
    /* Freed in the other order than usual: pending writes survive it. */
    agw_store_redis_set(s, "k3", 200, "{}", 2, 60);
    agw_store_redis_free(s);
    agw_redis_free(c.r);
    return 0;
}

/* ------------------------------------------------------------ fleet */

struct inst {
    struct conn cmd, sub;
    struct agw_flight_tier *fleet;
    char name[8];
};

struct outcome {
    const char *who;
    int calls;
    bool done;
    enum agw_flight_tier_outcome outcome;
    int status, retry;
    char body[256];
    size_t len;
    long at_ms;
    struct agw_flight_wait *w;
};

static const char *
outcome_name(enum agw_flight_tier_outcome o)
{
    return o == AGW_TIER_LEAD     ? "LEAD"
           : o == AGW_TIER_ANSWER ? "ANSWER"
                                  : "UNAVAILABLE";
}

static void
on_fleet(enum agw_flight_tier_outcome o, const struct agw_response *resp,
         void *arg)
{
    struct outcome *oc = arg;
    char hex[2 * sizeof(oc->body) + 1] = "";

    oc->calls++;
    oc->done = true;
    oc->outcome = o;
    oc->at_ms = now_ms();
    if (resp != NULL) {
        oc->status = resp->status;
        oc->retry = resp->retry_after_s;
        oc->len = resp->len;
        memcpy(oc->body, resp->body,
               resp->len < sizeof(oc->body) ? resp->len : sizeof(oc->body));
        agw_hex((const unsigned char *)oc->body,
                oc->len < sizeof(oc->body) ? oc->len : sizeof(oc->body), hex);
    }
    if (getenv("DRIVER_QUIET") == NULL) {
        out("%ld %s %s status=%d retry=%d body=%s", oc->at_ms, oc->who,
            outcome_name(o), oc->status, oc->retry, hex);
    }
}

static bool
inst_open(struct inst *in, const char *name, const char *url, int ttl_ms)
{
    char cname[32], sname[32];

    snprintf(in->name, sizeof(in->name), "%s", name);
    snprintf(cname, sizeof(cname), "%s-cmd", name);
    snprintf(sname, sizeof(sname), "%s-sub", name);
    if (!conn_open(&in->cmd, strdup(cname), url, 1000, 1000) ||
        !conn_open(&in->sub, strdup(sname), url, 1000, 1000)) {
        return false;
    }
    in->fleet =
        agw_flight_fleet_new(base, in->cmd.r, in->sub.r, "agw:", ttl_ms);
    return conn_wait_up(&in->cmd, WAIT_UP_MS) &&
           conn_wait_up(&in->sub, WAIT_UP_MS);
}

static void
inst_close(struct inst *in)
{
    agw_flight_tier_free(in->fleet);
    agw_redis_free(in->cmd.r);
    agw_redis_free(in->sub.r);
    free((char *)in->cmd.name);
    free((char *)in->sub.name);
}

static void
join(struct inst *in, const char *key, struct outcome *oc, const char *who)
{
    memset(oc, 0, sizeof(*oc));
    oc->who = who;
    oc->w = agw_flight_tier_join(in->fleet, key, on_fleet, oc);
    if (oc->done) {
        out("BUG fleet callback inside join");
    }
}

static const char answer_body[] =
    "{\"name\":\"businesses/x/assets/1\"}\0\n\xff";

static void
release(struct inst *in, const char *key, int status, int retry)
{
    struct agw_response resp = {
        .status = status,
        .body = (char *)answer_body,
        .len = sizeof(answer_body) - 1,
        .retry_after_s = retry,
    };

    agw_flight_tier_release(in->fleet, key, &resp);
}

static void
print_body_check(const struct outcome *oc)
{
    out("%s body %s", oc->who,
        oc->len == sizeof(answer_body) - 1 &&
                memcmp(oc->body, answer_body, oc->len) == 0
            ? "same"
            : "different");
}

/* Two instances join one key at once: one leads, the other gets its
 * answer (STATUS, RETRY) after the release. */
static int
mode_fleet_basic(const char *url, int status, int retry)
{
    struct inst a, b;
    struct conn raw;
    struct outcome oa, ob;
    struct outcome *leader, *waiter;
    struct result res;

    if (!inst_open(&a, "A", url, 5000) || !inst_open(&b, "B", url, 5000) ||
        !conn_open(&raw, "raw", url, 1000, 1000) ||
        !conn_wait_up(&raw, WAIT_UP_MS)) {
        out("not-up");
        return 1;
    }
    join(&a, "k", &oa, "A");
    join(&b, "k", &ob, "B");
    run_until(NULL, 300);
    leader = oa.done && oa.outcome == AGW_TIER_LEAD ? &oa : &ob;
    waiter = leader == &oa ? &ob : &oa;
    out("leads %d waiter-done %d",
        (oa.done && oa.outcome == AGW_TIER_LEAD) +
            (ob.done && ob.outcome == AGW_TIER_LEAD),
        waiter->done);
    out("lock-ttl %s", sync_cmd(raw.r, &res, "PTTL agw:lock:k"));
    release(leader == &oa ? &a : &b, "k", status, retry);
    run_until(&waiter->done, 3000);
    print_body_check(waiter);
    out("lock-after %s", sync_cmd(raw.r, &res, "EXISTS agw:lock:k"));
    out("copy-ttl %s", sync_cmd(raw.r, &res, "PTTL agw:done:k"));
    run_for(200);
    out("calls %d %d", oa.calls, ob.calls);
    inst_close(&a);
    inst_close(&b);
    agw_redis_free(raw.r);
    return 0;
}

#define TOKEN_T "0123456789abcdef0123456789abcdef"
#define TOKEN_U "fedcba9876543210fedcba9876543210"

/* A holder that published before the waiter subscribed: the copy
 * answers (STALE: the copy is from another claim and must be ignored,
 * so the waiter takes over when the claim expires). */
static int
mode_fleet_copy(const char *url, bool stale)
{
    struct inst b;
    struct conn raw;
    struct outcome ob;
    struct result res;
    long t0;

    if (!inst_open(&b, "B", url, 5000) ||
        !conn_open(&raw, "raw", url, 1000, 1000) ||
        !conn_wait_up(&raw, WAIT_UP_MS)) {
        out("not-up");
        return 1;
    }
    out("lock %s", sync_cmd(raw.r, &res, "SET agw:lock:k %s PX 800", TOKEN_T));
    out("copy %s", sync_cmd(raw.r, &res,
                            "SET agw:done:k %s\n201\n-1\ncopied-body PX 10000",
                            stale ? TOKEN_U : TOKEN_T));
    t0 = now_ms();
    join(&b, "k", &ob, "B");
    run_until(&ob.done, 3000);
    out("outcome %s after %ld ms body=%.*s",
        ob.done ? outcome_name(ob.outcome) : "none", ob.at_ms - t0, (int)ob.len,
        ob.body);
    out("lock-now %s", sync_cmd(raw.r, &res, "GET agw:lock:k"));
    inst_close(&b);
    agw_redis_free(raw.r);
    return 0;
}

/* A holds the claim and dies (stops renewing, never releases: abandon
 * is what its fleet then does); B and C wait. Exactly one takes over
 * after the claim TTL, and the other gets its answer. */
static int
mode_fleet_dead(const char *url, int ttl_ms)
{
    struct inst a, b, c;
    struct outcome oa, ob, oc;
    struct outcome *taker, *other;
    long t0;

    if (!inst_open(&a, "A", url, ttl_ms) || !inst_open(&b, "B", url, ttl_ms) ||
        !inst_open(&c, "C", url, ttl_ms)) {
        out("not-up");
        return 1;
    }
    t0 = now_ms();
    join(&a, "k", &oa, "A");
    run_until(&oa.done, 2000);
    agw_flight_tier_abandon(a.fleet, "k");
    join(&b, "k", &ob, "B");
    join(&c, "k", &oc, "C");
    run_until(NULL, (long)ttl_ms / 2);
    out("waiting %d %d", !ob.done, !oc.done);
    for (long end = now_ms() + ttl_ms + 1000; now_ms() < end;) {
        if (ob.done || oc.done) {
            break;
        }
        event_base_loop(base, EVLOOP_ONCE);
    }
    taker = ob.done ? &ob : &oc;
    other = taker == &ob ? &oc : &ob;
    out("first %s after %ld ms (claim made at 0)",
        taker->done ? outcome_name(taker->outcome) : "none", taker->at_ms - t0);
    /* The new holder works for a while, renewing its claim. */
    for (int i = 0; i < 4; i++) {
        run_for(ttl_ms / 4);
        agw_flight_tier_renew(taker == &ob ? b.fleet : c.fleet, "k", ttl_ms);
    }
    out("leads %d", (ob.done && ob.outcome == AGW_TIER_LEAD) +
                        (oc.done && oc.outcome == AGW_TIER_LEAD));
    out("other-waiting %d", !other->done);
    release(taker == &ob ? &b : &c, "k", 201, -1);
    run_until(&other->done, 2000);
    out("other %s", other->done ? outcome_name(other->outcome) : "none");
    print_body_check(other);
    run_for(200); /* the holder's own replies */
    inst_close(&a);
    inst_close(&b);
    inst_close(&c);
    return 0;
}

/* The holder renews a short claim while it works: no takeover. */
static int
mode_fleet_renew(const char *url)
{
    struct inst a, b;
    struct outcome oa, ob;

    if (!inst_open(&a, "A", url, 500) || !inst_open(&b, "B", url, 500)) {
        out("not-up");
        return 1;
    }
    join(&a, "k", &oa, "A");
    run_until(&oa.done, 2000);
    join(&b, "k", &ob, "B");
    for (int i = 0; i < 8; i++) {
        run_for(200);
        agw_flight_tier_renew(a.fleet, "k", 500);
    }
    out("b-waiting-after-1600ms %d", !ob.done);
    release(&a, "k", 200, -1);
    run_until(&ob.done, 2000);
    out("b %s", ob.done ? outcome_name(ob.outcome) : "none");
    inst_close(&a);
    inst_close(&b);
    return 0;
}

/* Cancelled waits never call back, at any moment. */
static int
mode_fleet_cancel(const char *url)
{
    struct inst a, b;
    struct conn raw;
    struct outcome oa, ob, ob2, ob3;
    struct result res;

    if (!inst_open(&a, "A", url, 5000) || !inst_open(&b, "B", url, 5000) ||
        !conn_open(&raw, "raw", url, 1000, 1000) ||
        !conn_wait_up(&raw, WAIT_UP_MS)) {
        out("not-up");
        return 1;
    }
    join(&a, "k", &oa, "A");
    run_until(&oa.done, 2000);
    join(&b, "k", &ob, "B1");
    join(&b, "k", &ob2, "B2");
    agw_flight_tier_cancel(b.fleet, ob2.w); /* claim still in flight */
    run_for(200);
    out("numsub-waiting %s", sync_cmd(raw.r, &res, "PUBSUB NUMSUB agw:done:k"));
    agw_flight_tier_cancel(b.fleet, ob.w); /* subscribed, waiting */
    run_for(200);
    out("numsub-after-cancel %s",
        sync_cmd(raw.r, &res, "PUBSUB NUMSUB agw:done:k"));
    join(&b, "k", &ob3, "B3");
    run_for(100);
    agw_flight_tier_cancel(b.fleet, ob3.w);
    release(&a, "k", 201, -1);
    run_for(500);
    out("cancelled-callbacks %d", ob.calls + ob2.calls + ob3.calls);
    inst_close(&a);
    inst_close(&b);
    agw_redis_free(raw.r);
    return 0;
}

/* Many local waiters on one key share one subscription. */
static int
mode_fleet_many(const char *url, int n)
{
    struct inst a, b;
    struct conn raw;
    struct outcome oa;
    struct outcome *ws = calloc((size_t)n, sizeof(*ws));
    struct result res;
    int answers = 0, same = 0;

    setenv("DRIVER_QUIET", "1", 1);
    if (ws == NULL || !inst_open(&a, "A", url, 5000) ||
        !inst_open(&b, "B", url, 5000) ||
        !conn_open(&raw, "raw", url, 1000, 1000) ||
        !conn_wait_up(&raw, WAIT_UP_MS)) {
        out("not-up");
        return 1;
    }
    join(&a, "k", &oa, "A");
    run_until(&oa.done, 2000);
    out("a %s", outcome_name(oa.outcome));
    for (int i = 0; i < n; i++) {
        join(&b, "k", &ws[i], "B");
    }
    run_for(300);
    out("numsub %s", sync_cmd(raw.r, &res, "PUBSUB NUMSUB agw:done:k"));
    release(&a, "k", 201, -1);
    run_for(500);
    for (int i = 0; i < n; i++) {
        answers += ws[i].calls == 1 && ws[i].outcome == AGW_TIER_ANSWER;
        same += ws[i].len == sizeof(answer_body) - 1 &&
                memcmp(ws[i].body, answer_body, ws[i].len) == 0;
    }
    out("answers %d same %d of %d", answers, same, n);
    inst_close(&a);
    inst_close(&b);
    agw_redis_free(raw.r);
    free(ws);
    return 0;
}

/* Redis unreachable: UNAVAILABLE, fast, never inside join. */
static int
mode_fleet_down(const char *url)
{
    struct inst a;
    struct outcome oa;
    long t0;

    inst_open(&a, "A", url, 5000); /* does not come up */
    t0 = now_ms();
    join(&a, "k", &oa, "A");
    run_until(&oa.done, 2000);
    out("outcome %s after %ld ms", oa.done ? outcome_name(oa.outcome) : "none",
        oa.at_ms - t0);
    agw_flight_tier_renew(a.fleet, "k", 5000);
    release(&a, "k", 200, -1);
    run_for(100);
    inst_close(&a);
    return 0;
}

/* The waiter's subscriber connection is killed: UNAVAILABLE. */
static int
mode_fleet_subdrop(const char *url)
{
    struct inst a, b;
    struct conn raw;
    struct outcome oa, ob;
    struct result res;

    if (!inst_open(&a, "A", url, 5000) || !inst_open(&b, "B", url, 5000) ||
        !conn_open(&raw, "raw", url, 1000, 1000) ||
        !conn_wait_up(&raw, WAIT_UP_MS)) {
        out("not-up");
        return 1;
    }
    join(&a, "k", &oa, "A");
    run_until(&oa.done, 2000);
    join(&b, "k", &ob, "B");
    run_for(300);
    out("b-waiting %d", !ob.done);
    out("kill %s", sync_cmd(raw.r, &res, "CLIENT KILL TYPE pubsub"));
    run_until(&ob.done, 2000);
    out("b %s", ob.done ? outcome_name(ob.outcome) : "none");
    run_until(&b.sub.up, 3000);
    out("sub-back %d", b.sub.up);
    release(&a, "k", 201, -1);
    run_for(300);
    out("b-calls %d", ob.calls);
    inst_close(&a);
    inst_close(&b);
    agw_redis_free(raw.r);
    return 0;
}

/* agw_flight_tier_free with waits in every state; then the connections go
 * with replies still due. Checked for leaks and bad accesses. */
static int
mode_fleet_free(const char *url)
{
    struct inst a, b;
    struct outcome oa, ob1, ob2;

    if (!inst_open(&a, "A", url, 5000) || !inst_open(&b, "B", url, 5000)) {
        out("not-up");
        return 1;
    }
    join(&a, "k", &oa, "A");
    run_until(&oa.done, 2000);
    join(&b, "k", &ob1, "B1");
    run_for(200);
    join(&b, "k", &ob2, "B2"); /* claim in flight */
    agw_flight_tier_free(b.fleet);
    b.fleet = NULL;
    release(&a, "k", 201, -1);
    agw_flight_tier_join(a.fleet, "k2", on_fleet, &oa); /* pending at free */
    run_for(300);
    out("freed-callbacks %d", ob1.calls + ob2.calls);
    agw_redis_free(a.cmd.r); /* before the fleet: its join fails */
    a.cmd.r = NULL;
    run_for(100);
    inst_close(&a);
    inst_close(&b);
    return 0;
}

/* ------------------------------------------------ free from inside */

struct freer {
    struct agw_redis **r;
    struct result res;
};

static void
free_in_reply(struct redisReply *rep, const char *error, void *arg)
{
    struct freer *f = arg;

    on_result(rep, error, &f->res);
    agw_redis_free(*f->r);
    *f->r = NULL;
}

static struct agw_redis *state_victim;
static int state_frees;

static void
free_on_down(bool up, void *arg)
{
    if (!up && state_victim != NULL) {
        agw_redis_free(state_victim);
        state_victim = NULL;
        state_frees++;
    }
}

/* agw_redis_free from a reply callback (more replies due on the same
 * read), from the state callback (inside hiredis's disconnect path) and
 * from a deferred failure. */
static int
mode_free_inside(const char *url)
{
    struct conn c, raw;
    struct freer f;
    struct result res, rest[3];
    struct agw_redis_options o = {
        .url = url, .name = "victim", .on_state = free_on_down};
    char err[128];
    int shut = 0;

    if (!conn_open(&c, "c", url, 1000, 1000) ||
        !conn_open(&raw, "raw", url, 1000, 1000) ||
        !conn_wait_up(&c, WAIT_UP_MS) || !conn_wait_up(&raw, WAIT_UP_MS)) {
        out("not-up");
        return 1;
    }
    memset(&f, 0, sizeof(f));
    memset(rest, 0, sizeof(rest));
    f.r = &c.r;
    agw_redis_commandf(c.r, free_in_reply, &f, "PING");
    for (int i = 0; i < 3; i++) {
        agw_redis_commandf(c.r, on_result, &rest[i], "PING");
    }
    run_until(&rest[2].done, 2000);
    for (int i = 0; i < 3; i++) {
        shut += rest[i].calls == 1 &&
                strcmp(rest[i].text, "fail:shutting down") == 0;
    }
    out("reply-free first=%s others-shut=%d", f.res.text, shut);

    state_victim = agw_redis_new(base, &o, err, sizeof(err));
    run_for(300);
    sync_cmd(raw.r, &res, "CLIENT KILL TYPE normal SKIPME yes");
    out("kill %s", res.text);
    run_for(300);
    out("state-frees %d", state_frees);

    c.r = agw_redis_new(base, &o, err, sizeof(err)); /* not up yet */
    memset(&f, 0, sizeof(f));
    f.r = &c.r;
    agw_redis_commandf(c.r, free_in_reply, &f, "PING");
    run_for(100);
    out("deferred-free first=%s freed=%d", f.res.text, c.r == NULL);
    agw_redis_free(raw.r);
    return 0;
}

static void
usage(void)
{
    fputs("usage: redis_driver MODE [URL [ARGS]]\n"
          "modes: parse URL..., basic, auth, set KEY VALUE, get KEY, "
          "timeout, watch SECONDS, store, store-down, fleet-basic STATUS "
          "RETRY, fleet-copy, fleet-stale, fleet-dead TTL_MS, fleet-renew, "
          "fleet-cancel, fleet-many N, fleet-down, fleet-subdrop, "
          "fleet-free, free-inside\n",
          stderr);
}

static int
dispatch(const char *mode, int argc, char **argv)
{
    const char *url = argc > 0 ? argv[0] : "";
    const char *a1 = argc > 1 ? argv[1] : "0";
    const char *a2 = argc > 2 ? argv[2] : "0";

    if (strcmp(mode, "parse") == 0) {
        return mode_parse(argc, argv);
    }
    if (argc < 1) {
        usage();
        return 2;
    }
    if (strcmp(mode, "basic") == 0) {
        return mode_basic(url);
    } else if (strcmp(mode, "auth") == 0) {
        return mode_auth(url);
    } else if (strcmp(mode, "set") == 0) {
        return mode_set(url, a1, a2);
    } else if (strcmp(mode, "get") == 0) {
        return mode_get(url, a1);
    } else if (strcmp(mode, "timeout") == 0) {
        return mode_timeout(url);
    } else if (strcmp(mode, "watch") == 0) {
        return mode_watch(url, atol(a1));
    } else if (strcmp(mode, "store") == 0) {
        return mode_store(url);
    } else if (strcmp(mode, "store-down") == 0) {
        return mode_store_down(url);
    } else if (strcmp(mode, "fleet-basic") == 0) {
        return mode_fleet_basic(url, atoi(a1), atoi(a2));
    } else if (strcmp(mode, "fleet-copy") == 0) {
        return mode_fleet_copy(url, false);
    } else if (strcmp(mode, "fleet-stale") == 0) {
        return mode_fleet_copy(url, true);
    } else if (strcmp(mode, "fleet-dead") == 0) {
        return mode_fleet_dead(url, atoi(a1));
    } else if (strcmp(mode, "fleet-renew") == 0) {
        return mode_fleet_renew(url);
    } else if (strcmp(mode, "fleet-cancel") == 0) {
        return mode_fleet_cancel(url);
    } else if (strcmp(mode, "fleet-many") == 0) {
        return mode_fleet_many(url, atoi(a1));
    } else if (strcmp(mode, "fleet-down") == 0) {
        return mode_fleet_down(url);
    } else if (strcmp(mode, "fleet-subdrop") == 0) {
        return mode_fleet_subdrop(url);
    } else if (strcmp(mode, "fleet-free") == 0) {
        return mode_fleet_free(url);
    } else if (strcmp(mode, "free-inside") == 0) {
        return mode_free_inside(url);
    }
    usage();
    return 2;
}

int
main(int argc, char **argv)
{
    struct event *tick;
    struct timeval tv = {0, 10000};
    int rc;

    if (argc < 2) {
        usage();
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN); /* hiredis writes with write(), as main.c */
    agw_log_setup(getenv("DRIVER_DEBUG") != NULL ? AGW_LOG_DEBUG : AGW_LOG_INFO,
                  AGW_LOGFMT_TEXT, "redis_driver");
    base = event_base_new();
    tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    event_add(tick, &tv);
    start_us = agw_now_us();
    rc = dispatch(argv[1], argc - 2, argv + 2);
    /* Let hiredis finish any free it deferred, then drop the base. */
    event_base_loop(base, EVLOOP_NONBLOCK);
    event_free(tick);
    event_base_free(base);
    out("exit %d", rc);
    return rc;
}
