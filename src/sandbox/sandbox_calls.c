/*
 * sandbox_calls.c - what tests assert on: every create arrival (newest
 * SBX_MAX_CALLS kept), the counters behind /_sandbox/stats, and the
 * sandbox's own sliding-window rate limit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox.h"

#define STATUS_SLOTS 600

struct call {
    double t;
    char *uri;  /* NULL: the body had no string uri */
    char *id;   /* NULL: no custom id */
    int status; /* 0: dropped or not answered yet */
};

struct sbx_calls {
    struct call *ring;
    size_t cap;  /* allocated slots, grows to SBX_MAX_CALLS */
    size_t head; /* slot of the oldest recorded call */
    size_t len;
    uint64_t first_seq; /* sequence number of ring[head] */
    uint64_t next_seq;
    uint64_t epoch_seq; /* first sequence number since the last reset */

    uint64_t calls;
    uint64_t admitted;
    uint64_t created;
    uint64_t dropped;
    uint64_t by_status[STATUS_SLOTS];
    struct sbx_map *by_source; /* uri -> count stored in the pointer */
    uint64_t other_sources;    /* arrivals past SBX_MAX_SOURCES uris */

    double *admits; /* ring of admission times, rate slots */
    long rate;
    size_t admit_head;
    size_t admit_len;
};

struct sbx_calls *
sbx_calls_new(long rate)
{
    struct sbx_calls *calls = calloc(1, sizeof(*calls));

    if (calls == NULL) {
        return NULL;
    }
    calls->by_source = sbx_map_new(NULL);
    calls->rate = rate;
    if (rate > 0) {
        calls->admits = calloc((size_t)rate, sizeof(*calls->admits));
    }
    if (calls->by_source == NULL || (rate > 0 && calls->admits == NULL)) {
        sbx_calls_free(calls);
        return NULL;
    }
    return calls;
}

static struct call *
call_at(const struct sbx_calls *calls, size_t i)
{
    return &calls->ring[(calls->head + i) % calls->cap];
}

static void
forget_calls(struct sbx_calls *calls)
{
    for (size_t i = 0; i < calls->len; i++) {
        struct call *c = call_at(calls, i);

        free(c->uri);
        free(c->id);
    }
    calls->first_seq += calls->len;
    calls->head = 0;
    calls->len = 0;
}

void
sbx_calls_free(struct sbx_calls *calls)
{
    if (calls == NULL) {
        return;
    }
    forget_calls(calls);
    free(calls->ring);
    sbx_map_free(calls->by_source);
    free(calls->admits);
    free(calls);
}

/* Makes room for one more call: grow while below the cap, then drop the
 * oldest. -1 only when growing failed and nothing could be dropped. */
static int
make_room(struct sbx_calls *calls)
{
    size_t ncap;
    struct call *n;

    if (calls->len < calls->cap) {
        return 0;
    }
    if (calls->cap < SBX_MAX_CALLS) {
        ncap = calls->cap == 0 ? 1024 : calls->cap * 2;
        ncap = ncap > SBX_MAX_CALLS ? SBX_MAX_CALLS : ncap;
        n = malloc(ncap * sizeof(*n));
        if (n != NULL) {
            for (size_t i = 0; i < calls->len; i++) {
                n[i] = *call_at(calls, i);
            }
            free(calls->ring);
            calls->ring = n;
            calls->cap = ncap;
            calls->head = 0;
            return 0;
        }
    }
    if (calls->len == 0) {
        return -1;
    }
    free(call_at(calls, 0)->uri);
    free(call_at(calls, 0)->id);
    calls->head = (calls->head + 1) % calls->cap;
    calls->len--;
    calls->first_seq++;
    return 0;
}

static void
count_source(struct sbx_calls *calls, const char *uri)
{
    uintptr_t n = (uintptr_t)sbx_map_get(calls->by_source, uri);

    if (n == 0 && sbx_map_count(calls->by_source) >= SBX_MAX_SOURCES) {
        calls->other_sources++;
        return;
    }
    /* put() moves the key to the newest end; order is not promised. */
    if (sbx_map_put(calls->by_source, uri, (void *)(n + 1)) != 0) {
        calls->other_sources++;
    }
}

uint64_t
sbx_calls_record(struct sbx_calls *calls, double t, const char *uri,
                 const char *id)
{
    uint64_t seq = calls->next_seq++;
    struct call *c;

    calls->calls++;
    if (uri != NULL) {
        count_source(calls, uri);
    }
    if (make_room(calls) != 0) {
        return seq; /* counted, but not listed */
    }
    if (calls->len == 0) {
        calls->first_seq = seq;
    }
    c = &calls->ring[(calls->head + calls->len) % calls->cap];
    c->t = t;
    c->uri = uri != NULL ? strdup(uri) : NULL;
    c->id = id != NULL ? strdup(id) : NULL;
    c->status = 0;
    calls->len++;
    return seq;
}

void
sbx_calls_finish(struct sbx_calls *calls, uint64_t seq, int status)
{
    if (seq < calls->epoch_seq) {
        return; /* arrived before a reset */
    }
    if (seq >= calls->first_seq && seq - calls->first_seq < calls->len) {
        call_at(calls, (size_t)(seq - calls->first_seq))->status = status;
    }
    if (status == 0) {
        calls->dropped++;
        return;
    }
    if (status == 200) {
        calls->created++;
    }
    if (status > 0 && status < STATUS_SLOTS) {
        calls->by_status[status]++;
    }
}

int
sbx_calls_admit(struct sbx_calls *calls, double now)
{
    size_t slots = (size_t)calls->rate;

    if (calls->rate <= 0) {
        calls->admitted++;
        return 1;
    }
    while (calls->admit_len > 0 &&
           now - calls->admits[calls->admit_head] >= 1.0) {
        calls->admit_head = (calls->admit_head + 1) % slots;
        calls->admit_len--;
    }
    if (calls->admit_len >= slots) {
        return 0;
    }
    calls->admits[(calls->admit_head + calls->admit_len) % slots] = now;
    calls->admit_len++;
    calls->admitted++;
    return 1;
}

void
sbx_calls_reset(struct sbx_calls *calls)
{
    forget_calls(calls);
    calls->first_seq = calls->next_seq;
    calls->epoch_seq = calls->next_seq;
    calls->calls = 0;
    calls->admitted = 0;
    calls->created = 0;
    calls->dropped = 0;
    memset(calls->by_status, 0, sizeof(calls->by_status));
    sbx_map_clear(calls->by_source);
    calls->other_sources = 0;
    calls->admit_head = 0;
    calls->admit_len = 0;
}

/* Most arrivals in any window [t, t+1s); arrivals are in time order. */
static size_t
max_in_one_second(const struct sbx_calls *calls)
{
    size_t best = 0;
    size_t j = 0;

    for (size_t i = 0; i < calls->len; i++) {
        double end = call_at(calls, i)->t + 1.0;

        if (j < i) {
            j = i;
        }
        while (j < calls->len && call_at(calls, j)->t < end) {
            j++;
        }
        if (j - i > best) {
            best = j - i;
        }
    }
    return best;
}

static void
add_source(const char *key, void *val, void *arg)
{
    json_object_object_add(arg, key,
                           json_object_new_int64((int64_t)(uintptr_t)val));
}

static struct json_object *
status_counts(const struct sbx_calls *calls)
{
    struct json_object *o = json_object_new_object();
    char name[12];

    for (int s = 0; o != NULL && s < STATUS_SLOTS; s++) {
        if (calls->by_status[s] == 0) {
            continue;
        }
        snprintf(name, sizeof(name), "%d", s);
        json_object_object_add(
            o, name, json_object_new_int64((int64_t)calls->by_status[s]));
    }
    return o;
}

struct json_object *
sbx_calls_stats(const struct sbx_calls *calls)
{
    struct json_object *o = json_object_new_object();
    struct json_object *src = json_object_new_object();

    if (o == NULL || src == NULL) {
        json_object_put(o);
        json_object_put(src);
        return NULL;
    }
    sbx_map_foreach(calls->by_source, add_source, src);
    json_object_object_add(o, "calls",
                           json_object_new_int64((int64_t)calls->calls));
    json_object_object_add(o, "admitted",
                           json_object_new_int64((int64_t)calls->admitted));
    json_object_object_add(o, "created",
                           json_object_new_int64((int64_t)calls->created));
    json_object_object_add(o, "dropped",
                           json_object_new_int64((int64_t)calls->dropped));
    json_object_object_add(o, "by_status", status_counts(calls));
    json_object_object_add(
        o, "max_in_1s",
        json_object_new_int64((int64_t)max_in_one_second(calls)));
    json_object_object_add(o, "by_source", src);
    json_object_object_add(
        o, "by_source_overflow",
        json_object_new_int64((int64_t)calls->other_sources));
    json_object_object_add(o, "recorded",
                           json_object_new_int64((int64_t)calls->len));
    return o;
}

/* JSON string or null, written straight into OUT: the list can hold
 * 200,000 entries and building a json-c tree for it would be wasteful. */
static void
append_string(struct evbuffer *out, const char *s)
{
    struct json_object *js;

    if (s == NULL) {
        evbuffer_add(out, "null", 4);
        return;
    }
    js = json_object_new_string(s);
    if (js == NULL) {
        evbuffer_add(out, "null", 4);
        return;
    }
    sbx_json_append(out, js);
    json_object_put(js);
}

int
sbx_calls_dump(const struct sbx_calls *calls, struct evbuffer *out)
{
    if (evbuffer_add_printf(out, "{\"calls\":[") < 0) {
        return -1;
    }
    for (size_t i = 0; i < calls->len; i++) {
        const struct call *c = call_at(calls, i);

        evbuffer_add_printf(out, "%s{\"t\":%.6f,\"uri\":", i > 0 ? "," : "",
                            c->t);
        append_string(out, c->uri);
        evbuffer_add(out, ",\"id\":", 6);
        append_string(out, c->id);
        evbuffer_add_printf(out, ",\"status\":%d}", c->status);
    }
    return evbuffer_add(out, "]}", 2);
}
