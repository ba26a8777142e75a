/*
 * test_upstream.c - the upstream client's departure report
 * (agw_upstream_request.on_sent), against an evhttp server on loopback in
 * the same loop: told exactly once per post, with the time the request
 * left when it did, with 0 when it never did (refused, queued then
 * cancelled, cancelled before the connect, client freed), and before the
 * call's callback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>

#include "config.h"
#include "upstream.h"
#include "util.h"

#define MAX_CALLS 4

/* What one call was told, in order. */
struct told {
    int sent;        /* on_sent runs */
    int64_t sent_us; /* its last argument */
    int done;        /* callback runs */
    bool sent_first; /* on_sent ran before the callback */
    enum agw_attempt_outcome outcome;
};

static struct told told[MAX_CALLS];
static struct event_base *base;
static struct evhttp *server;
static int port;

static void
on_sent(void *arg, int64_t sent_us)
{
    struct told *t = arg;

    t->sent++;
    t->sent_us = sent_us;
}

static void
on_done(const struct agw_upstream_result *res, void *arg)
{
    struct told *t = arg;

    t->done++;
    t->sent_first = t->sent == 1;
    t->outcome = res->outcome;
}

static void
answer(struct evhttp_request *req, void *arg)
{
    struct evbuffer *out = evbuffer_new();

    evbuffer_add_printf(out, "{}");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

/* A loopback port nothing listens on: bound, then closed. */
static int
closed_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    evutil_socket_t fd = socket(AF_INET, SOCK_STREAM, 0);

    sin.sin_addr.s_addr = htonl(0x7f000001);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    evutil_closesocket(fd);
    return ntohs(sin.sin_port);
}

static int
setup(void **state)
{
    struct evhttp_bound_socket *bound;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    memset(told, 0, sizeof(told));
    base = event_base_new();
    server = evhttp_new(base);
    assert_non_null(server);
    evhttp_set_gencb(server, answer, NULL);
    bound = evhttp_bind_socket_with_handle(server, "127.0.0.1", 0);
    assert_non_null(bound);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bound),
                                 (struct sockaddr *)&sin, &len),
                     0);
    port = ntohs(sin.sin_port);
    return 0;
}

static int
teardown(void **state)
{
    evhttp_free(server);
    event_base_free(base);
    return 0;
}

static struct agw_upstream *
client(int to_port, int max_connections)
{
    char url[64], err[256] = "";
    struct agw_config cfg;
    struct agw_upstream *up;

    memset(&cfg, 0, sizeof(cfg));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", to_port);
    cfg.base_url = url;
    cfg.api_key = "test-key";
    cfg.connect_timeout_ms = 2000;
    cfg.request_timeout_ms = 2000;
    cfg.max_connections = max_connections;
    up = agw_upstream_new(base, NULL, &cfg, err, sizeof(err));
    assert_non_null(up);
    return up;
}

static struct agw_upstream_call *
post(struct agw_upstream *up, struct told *t)
{
    struct agw_upstream_request rq = {
        .path = "/v1/businesses/b/assets",
        .body = "{}",
        .len = 2,
        .on_sent = on_sent,
        .sent_arg = t,
    };
    struct agw_upstream_call *call = agw_upstream_post(up, &rq, on_done, t);

    assert_non_null(call);
    return call;
}

/* Runs the loop until every call in T[0..N) was answered (bounded). */
static void
run_until_done(int n)
{
    int64_t until = agw_now_us() + 3000000;
    bool all;

    do {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        all = true;
        for (int i = 0; i < n; i++) {
            all = all && told[i].done > 0;
        }
    } while (!all && agw_now_us() < until);
}

/* Lets the loop run for MS, for late reports to show. */
static void
run_for(int ms)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = ms * 1000};

    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static void
test_sent_with_its_time(void **state)
{
    struct agw_upstream *up = client(port, 2);
    int64_t before = agw_now_us(), after;

    post(up, &told[0]);
    run_until_done(1);
    after = agw_now_us();
    assert_int_equal(told[0].done, 1);
    assert_int_equal(told[0].outcome, AGW_ATTEMPT_RESPONSE);
    assert_int_equal(told[0].sent, 1);
    assert_true(told[0].sent_first);
    assert_true(told[0].sent_us >= before && told[0].sent_us <= after);
    /* A second call on the kept connection is told too, once. */
    post(up, &told[1]);
    run_until_done(2);
    assert_int_equal(told[1].sent, 1);
    assert_true(told[1].sent_us > 0);
    run_for(50);
    assert_int_equal(told[0].sent, 1);
    assert_int_equal(told[1].sent, 1);
    agw_upstream_free(up);
    assert_int_equal(told[0].sent + told[1].sent, 2);
}

static void
test_refused_never_left(void **state)
{
    struct agw_upstream *up = client(closed_port(), 1);

    post(up, &told[0]);
    run_until_done(1);
    assert_int_equal(told[0].done, 1);
    assert_int_equal(told[0].outcome, AGW_ATTEMPT_CONNECT_FAILED);
    assert_int_equal(told[0].sent, 1);
    assert_true(told[0].sent_first);
    assert_true(told[0].sent_us == 0);
    agw_upstream_free(up);
    assert_int_equal(told[0].sent, 1);
}

static void
test_cancelled_never_left(void **state)
{
    struct agw_upstream *up = client(port, 1);
    struct agw_upstream_call *first, *queued;

    first = post(up, &told[0]);
    queued = post(up, &told[1]); /* one connection: it waits */
    agw_upstream_cancel(queued);
    assert_int_equal(told[1].sent, 1);
    assert_true(told[1].sent_us == 0);
    /* The first is still connecting: cancelled, it never left either. */
    agw_upstream_cancel(first);
    assert_int_equal(told[0].sent, 1);
    assert_true(told[0].sent_us == 0);
    run_for(100);
    assert_int_equal(told[0].sent + told[1].sent, 2);
    assert_int_equal(told[0].done + told[1].done, 0);
    agw_upstream_free(up);
    assert_int_equal(told[0].sent + told[1].sent, 2);
}

static void
test_free_tells_calls_in_progress(void **state)
{
    struct agw_upstream *up = client(port, 1);

    post(up, &told[0]);
    post(up, &told[1]);
    agw_upstream_free(up);
    assert_int_equal(told[0].sent, 1);
    assert_int_equal(told[1].sent, 1);
    assert_true(told[0].sent_us == 0 && told[1].sent_us == 0);
    assert_int_equal(told[0].done + told[1].done, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sent_with_its_time, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refused_never_left, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancelled_never_left, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_free_tells_calls_in_progress,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
