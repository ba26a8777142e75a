/*
 * fuzz_upstream_response.c - libFuzzer target: the input is Connectly's
 * answer. A listener on 127.0.0.1 in this process takes the real
 * upstream client's connection (upstream.c over libevent's HTTP parser),
 * writes the input and closes its side; the result the client delivers
 * is checked and copied as create.c passes it through. The input also
 * goes straight to agw_retry_after_parse().
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "config.h"
#include "log.h"
#include "reply.h"
#include "retry.h"
#include "upstream.h"

#define REQUIRE(cond)                                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_upstream_response: %s:%d: %s\n", __FILE__,   \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

#define PATH "/v1/businesses/550e8400-e29b-41d4-a716-446655440000/assets"
#define BODY "{\"uri\":\"https://example.com/a.png\"}"
/* Every input ends in EOF, so only a stuck client ever waits this long. */
#define CALL_TIMEOUT_MS 5000
#define MAX_LOOPS 100000

struct run {
    const uint8_t *data;
    size_t size;
    struct bufferevent *srv; /* the accepted connection; owned */
    bool done;
    enum agw_attempt_outcome outcome;
};

static struct event_base *base;
static evutil_socket_t listener = -1;
static struct event *accept_ev;
static struct agw_config cfg;
static struct run *current;

static void
open_listener(void)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    char url[64];

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listener >= 0);
    REQUIRE(bind(listener, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    REQUIRE(listen(listener, 16) == 0);
    REQUIRE(evutil_make_socket_nonblocking(listener) == 0);
    REQUIRE(getsockname(listener, (struct sockaddr *)&sin, &len) == 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sin.sin_port));
    free(cfg.base_url);
    cfg.base_url = strdup(url);
    REQUIRE(cfg.base_url != NULL);
}

/* The response is out: half-close, as a server that is done would. */
static void
srv_write_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static void
srv_read_cb(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);

    (void)arg;
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void
srv_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    (void)arg;
    bufferevent_disable(bev, EV_READ | EV_WRITE);
}

static void
on_accept(evutil_socket_t fd, short what, void *arg)
{
    struct run *run = current;
    evutil_socket_t s = accept(fd, NULL, NULL);

    (void)what;
    (void)arg;
    if (s < 0) {
        return;
    }
    if (run == NULL || run->srv != NULL) {
        close(s); /* one connection per input */
        return;
    }
    REQUIRE(evutil_make_socket_nonblocking(s) == 0);
    run->srv = bufferevent_socket_new(base, s, BEV_OPT_CLOSE_ON_FREE);
    REQUIRE(run->srv != NULL);
    bufferevent_setcb(run->srv, srv_read_cb, srv_write_cb, srv_event_cb, run);
    bufferevent_enable(run->srv, EV_READ | EV_WRITE);
    if (run->size == 0) {
        shutdown(s, SHUT_WR);
    } else {
        REQUIRE(bufferevent_write(run->srv, run->data, run->size) == 0);
    }
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    agw_log_level = -1; /* the plain-http warning would flood the output */
    agw_config_defaults(&cfg);
    cfg.api_key = strdup("fuzz-upstream-key");
    cfg.request_timeout_ms = CALL_TIMEOUT_MS;
    cfg.connect_timeout_ms = CALL_TIMEOUT_MS;
    cfg.max_connections = 1;
    REQUIRE(cfg.api_key != NULL);
    base = event_base_new();
    REQUIRE(base != NULL);
    open_listener();
    accept_ev =
        event_new(base, listener, EV_READ | EV_PERSIST, on_accept, NULL);
    REQUIRE(accept_ev != NULL && event_add(accept_ev, NULL) == 0);
    return 0;
}

/* What create.c relies on, then the copy it makes for the store and the
 * waiting callers. */
static void
on_result(const struct agw_upstream_result *res, void *arg)
{
    struct run *run = arg;
    struct agw_response resp, copy;

    run->done = true;
    run->outcome = res->outcome;
    REQUIRE(res->retry_after_s >= -1 && res->retry_after_s <= 3600);
    if (res->outcome != AGW_ATTEMPT_RESPONSE) {
        REQUIRE(res->status == 0 && res->body == NULL && res->len == 0);
        REQUIRE(res->detail != NULL);
        return;
    }
    REQUIRE(res->body != NULL && res->body[res->len] == '\0');
    REQUIRE(res->len <= run->size);
    /* A final status; anything else reaches the caller as a broken or
     * interim (1xx) status line. */
    REQUIRE(res->status >= 200 && res->status <= 599);
    resp.status = res->status;
    resp.body = (char *)res->body;
    resp.len = res->len;
    resp.retry_after_s = res->retry_after_s;
    agw_response_copy(&copy, &resp);
    REQUIRE(copy.len == res->len &&
            memcmp(copy.body, res->body, res->len) == 0);
    agw_response_clear(&copy);
}

static void
check_retry_after(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    int v;

    if (s == NULL) {
        return;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    v = agw_retry_after_parse(s);
    REQUIRE(v >= -1 && v <= 3600);
    free(s);
}

/* Connections the client opened that were never taken: refuse them. */
static void
drain_backlog(void)
{
    evutil_socket_t s;

    while ((s = accept(listener, NULL, NULL)) >= 0) {
        close(s);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run run = {.data = data, .size = size};
    struct agw_upstream *up;
    struct agw_upstream_call *call;
    char err[256];

    check_retry_after(data, size);
    current = &run;
    up = agw_upstream_new(base, NULL, &cfg, err, sizeof(err));
    REQUIRE(up != NULL);
    call = agw_upstream_post(up,
                             &(struct agw_upstream_request){
                                 .path = PATH,
                                 .body = BODY,
                                 .len = strlen(BODY),
                                 .request_id = "fuzz-request",
                                 .timeout_ms = CALL_TIMEOUT_MS,
                             },
                             on_result, &run);
    REQUIRE(call != NULL);
    for (int i = 0; !run.done && i < MAX_LOOPS; i++) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    REQUIRE(run.done);
    /* The input always ends in EOF: waiting out the deadline is a hang. */
    REQUIRE(run.outcome != AGW_ATTEMPT_TIMEOUT);
    REQUIRE(run.outcome != AGW_ATTEMPT_CONNECT_FAILED);
    agw_upstream_free(up);
    if (run.srv != NULL) {
        bufferevent_free(run.srv);
    }
    drain_backlog();
    current = NULL;
    /* Lets libevent finish deferred frees of the closed connections. */
    event_base_loop(base, EVLOOP_NONBLOCK);
    return 0;
}
