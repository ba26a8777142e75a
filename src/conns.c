/*
 * conns.c - caller connections by bufferevent, in a pointer hash table
 * (open addressing, linear probing, backward-shift deletion). We hold a
 * reference on each bufferevent so that a sweep can tell when evhttp has
 * let go of it (its callbacks are cleared by bufferevent_free) before it
 * is really freed; then we drop ours, which closes the socket. Each
 * bufferevent is a guard (guard.h) over the socket's.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "conns.h"
#include "guard.h"
#include "log.h"
#include "metrics.h"
#include "reply.h"
#include "tls_server.h"
#include "util.h"

#define MIN_SLOTS 64
#define SWEEP_MS 250

/* A tracked connection's life. It counts as open only while OPEN: one
 * we cut off is counted out at once, before evhttp reads the EOF (the
 * caller may see its close and connect again first). */
enum conn_state {
    CONN_OPEN,   /* serving, or waiting for a request */
    CONN_CUT,    /* shut down by us; evhttp has not seen it yet */
    CONN_CLOSED, /* evhttp closed it; the sweep drops our reference */
};

struct slot {
    struct bufferevent *bev; /* NULL: free slot */
    struct agw_guard *guard; /* BEV's */
    int64_t since_us;        /* accept, or the last answer written */
    enum conn_state state;
    bool busy; /* a request is being answered */
};

struct agw_conns {
    struct slot *slots;
    size_t nslots; /* a power of two */
    size_t used;   /* slots taken, closed ones not yet swept included */
    size_t count;  /* connections open */
    int64_t idle_us;
    size_t limit;
    const struct agw_guard_policy *policy;
    struct agw_tls_server *tls; /* agw_conns_bevcb_tls()'s */
    struct event *sweep;
    bool apart;                 /* not callers' (agw_conns_own_listener) */
    struct evconnlistener *lev; /* paused at LIMIT sockets; NULL: never */
};

/* The answer to a request on a connection we do not know (it could not
 * be tracked: out of memory). */
static const struct agw_refusal untracked = {
    .status = 503,
    .code = AGW_CODE_UNAVAILABLE,
    .message = "out of memory; try again later",
};

/* The answer on a connection accepted past max_connections. */
static const struct agw_refusal over_limit = {
    .status = 503,
    .code = AGW_CODE_UNAVAILABLE,
    .message = "too many connections; try again later",
};

/* Caller connections open in the process, every worker's: max_connections
 * is one limit for the whole gateway. */
static atomic_size_t open_in_process;

/* One connection opened (+1) or closed (-1) in SET. Returns how many the
 * process had open before (SET had, when it is apart). */
static size_t
count_open(struct agw_conns *set, int delta)
{
    size_t before = set->count;

    set->count += (size_t)(ssize_t)delta;
    if (set->apart) {
        return before;
    }
    agw_metrics_gauge_add(AGW_M_CONNECTIONS_OPEN, delta);
    return atomic_fetch_add_explicit(&open_in_process, (size_t)(ssize_t)delta,
                                     memory_order_relaxed);
}

static size_t
home_of(const struct agw_conns *set, const void *p)
{
    uint64_t h = (uint64_t)(uintptr_t)p * UINT64_C(0x9E3779B97F4A7C15);

    return (size_t)(h >> 17) & (set->nslots - 1);
}

static size_t
find(const struct agw_conns *set, const struct bufferevent *bev)
{
    size_t i = home_of(set, bev);

    while (set->slots[i].bev != NULL && set->slots[i].bev != bev) {
        i = (i + 1) & (set->nslots - 1);
    }
    return i;
}

static bool
grow(struct agw_conns *set)
{
    struct agw_conns bigger = *set;

    bigger.nslots = set->nslots * 2;
    bigger.slots = calloc(bigger.nslots, sizeof(*bigger.slots));
    if (bigger.slots == NULL) {
        return false;
    }
    for (size_t i = 0; i < set->nslots; i++) {
        if (set->slots[i].bev != NULL) {
            bigger.slots[find(&bigger, set->slots[i].bev)] = set->slots[i];
        }
    }
    free(set->slots);
    set->slots = bigger.slots;
    set->nslots = bigger.nslots;
    return true;
}

/* Empties slot HOLE, pulling later members of its probe run back. */
static void
remove_at(struct agw_conns *set, size_t hole)
{
    size_t mask = set->nslots - 1;
    size_t i = hole;

    set->slots[hole].bev = NULL;
    set->used--;
    for (;;) {
        size_t home;

        i = (i + 1) & mask;
        if (set->slots[i].bev == NULL) {
            return;
        }
        home = home_of(set, set->slots[i].bev);
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            set->slots[hole] = set->slots[i];
            set->slots[i].bev = NULL;
            hole = i;
        }
    }
}

static bool
released_by_evhttp(struct bufferevent *bev)
{
    bufferevent_data_cb readcb;
    bufferevent_event_cb eventcb;

    bufferevent_getcb(bev, &readcb, NULL, &eventcb, NULL);
    return readcb == NULL && eventcb == NULL;
}

/* Returns true when slot I was emptied (look at it again). */
static bool
sweep_slot(struct agw_conns *set, size_t i, int64_t now)
{
    struct slot *s = &set->slots[i];
    struct bufferevent *bev = s->bev;
    evutil_socket_t fd;

    if (released_by_evhttp(bev)) {
        if (s->state == CONN_OPEN) {
            count_open(set, -1);
        }
        remove_at(set, i);
        bufferevent_decref(bev); /* the last reference: closes the socket */
        return true;
    }
    if (s->busy || s->state != CONN_OPEN || now - s->since_us <= set->idle_us) {
        return false;
    }
    fd = bufferevent_getfd(bev);
    if (fd >= 0) {
        /* evhttp reads EOF and frees the connection; a later sweep sees it. */
        shutdown(fd, SHUT_RDWR);
        s->state = CONN_CUT;
        count_open(set, -1);
    }
    return false;
}

static void
on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct agw_conns *set = arg;
    int64_t now = agw_now_us();
    size_t i = 0;

    while (i < set->nslots) {
        if (set->slots[i].bev == NULL || !sweep_slot(set, i, now)) {
            i++;
        }
    }
    if (set->lev != NULL && set->used < set->limit) {
        evconnlistener_enable(set->lev); /* a no-op when it is not paused */
    }
}

/* Guards and tracks a new connection over its transport SOCK; with
 * REFUSE, its first request is a stand-in answered so. */
static struct bufferevent *
track(struct agw_conns *set, struct bufferevent *sock,
      const struct agw_refusal *refuse)
{
    struct agw_guard *guard;
    struct bufferevent *bev;
    size_t i;

    if (sock == NULL ||
        (bev = agw_guard_new(sock, set->policy, &guard)) == NULL) {
        return NULL;
    }
    if ((set->used + 1) * 2 > set->nslots && !grow(set)) {
        return bev; /* untracked: its request is answered 503 */
    }
    bufferevent_incref(bev);
    i = find(set, bev);
    set->slots[i] = (struct slot){
        .bev = bev,
        .guard = guard,
        .since_us = agw_now_us(),
        .state = CONN_OPEN,
    };
    set->used++;
    if (count_open(set, 1) >= set->limit) {
        refuse = &over_limit;
    }
    if (set->lev != NULL && set->used >= set->limit) {
        evconnlistener_disable(set->lev); /* until a sweep finds room */
    }
    if (refuse != NULL) {
        agw_guard_refuse(guard, refuse); /* before reading a byte */
    }
    return bev;
}

/* Out of memory it returns NULL, and evhttp makes a bufferevent of its
 * own: that connection goes unguarded, as would any with evhttp alone. */
struct bufferevent *
agw_conns_bevcb(struct event_base *base, void *arg)
{
    return track(arg, bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE),
                 NULL);
}

void
agw_conns_set_tls(struct agw_conns *set, struct agw_tls_server *tls)
{
    set->tls = tls;
}

/*
 * A NULL here would make evhttp serve plain HTTP on the TLS port. Out of
 * memory for TLS, the connection is refused (503, in clear) before a
 * byte of it is read; out of memory for its guard, it goes unguarded
 * but still over TLS. Only when both fail does evhttp's fallback apply.
 */
struct bufferevent *
agw_conns_bevcb_tls(struct event_base *base, void *arg)
{
    struct agw_conns *set = arg;
    struct bufferevent *ssl = agw_tls_server_bev(set->tls, base);
    struct bufferevent *bev;

    if (ssl == NULL) {
        return track(set,
                     bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE),
                     &untracked);
    }
    bev = track(set, ssl, NULL); /* NULL: SSL freed with its guard */
    return bev != NULL ? bev : agw_tls_server_bev(set->tls, base);
}

/* Counted out at once, so a closed connection frees its place before the
 * next sweep. */
static void
on_close(struct evhttp_connection *evcon, void *arg)
{
    struct agw_conns *set = arg;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    size_t i = find(set, bev);

    if (set->slots[i].bev == bev) {
        agw_guard_close(set->slots[i].guard);
        if (set->slots[i].state == CONN_OPEN) {
            count_open(set, -1);
        }
        set->slots[i].state = CONN_CLOSED;
    }
}

static void
on_answered(struct evhttp_request *req, void *arg)
{
    struct agw_conns *set = arg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev;
    size_t i;

    if (evcon == NULL) {
        return;
    }
    bev = evhttp_connection_get_bufferevent(evcon);
    i = find(set, bev);
    if (set->slots[i].bev == bev) {
        set->slots[i].busy = false;
        set->slots[i].since_us = agw_now_us();
        agw_guard_answered(set->slots[i].guard); /* the next may come in */
    }
}

const struct agw_refusal *
agw_conns_request(struct agw_conns *set, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev;
    size_t i;

    if (evcon == NULL) {
        return NULL; /* its caller is gone; the answer is dropped anyway */
    }
    bev = evhttp_connection_get_bufferevent(evcon);
    i = find(set, bev);
    if (set->slots[i].bev != bev) {
        return &untracked;
    }
    set->slots[i].busy = true;
    evhttp_request_set_on_complete_cb(req, on_answered, set);
    evhttp_connection_set_closecb(evcon, on_close, set);
    return agw_guard_refusal(set->slots[i].guard);
}

struct agw_conns *
agw_conns_new(struct event_base *base, int idle_ms, size_t limit,
              const struct agw_guard_policy *policy)
{
    struct agw_conns *set = calloc(1, sizeof(*set));
    struct timeval every = {0, SWEEP_MS * 1000};

    if (set == NULL) {
        return NULL;
    }
    set->policy = policy;
    set->nslots = MIN_SLOTS;
    set->slots = calloc(set->nslots, sizeof(*set->slots));
    set->sweep = event_new(base, -1, EV_PERSIST, on_sweep, set);
    if (set->slots == NULL || set->sweep == NULL) {
        agw_conns_free(set);
        return NULL;
    }
    agw_conns_set_limits(set, idle_ms, limit);
    event_add(set->sweep, &every);
    return set;
}

void
agw_conns_set_limits(struct agw_conns *set, int idle_ms, size_t limit)
{
    set->idle_us = (int64_t)idle_ms * 1000;
    set->limit = limit;
}

/* Out of descriptors (or any accept() failure) the listening socket
 * stays readable: pause rather than spin; the next sweep resumes. */
static void
on_accept_error(struct evconnlistener *lev, void *arg)
{
    evconnlistener_disable(lev);
}

void
agw_conns_own_listener(struct agw_conns *set, struct evconnlistener *lev)
{
    set->apart = true;
    set->lev = lev;
    if (lev != NULL) {
        evconnlistener_set_error_cb(lev, on_accept_error);
    }
}

void
agw_conns_free(struct agw_conns *set)
{
    if (set == NULL) {
        return;
    }
    if (set->sweep != NULL) {
        event_free(set->sweep);
    }
    for (size_t i = 0; set->slots != NULL && i < set->nslots; i++) {
        if (set->slots[i].bev != NULL) {
            bufferevent_decref(set->slots[i].bev);
        }
    }
    free(set->slots);
    free(set);
}

size_t
agw_conns_count(const struct agw_conns *set)
{
    return set->count;
}
