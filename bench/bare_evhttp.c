/*
 * bare_evhttp.c - the ceiling of the library the gateway is built on: one
 * event loop, one evhttp, every POST answered 200 with a fixed JSON body.
 * Built and run by bench/hit-path only: bare_evhttp PORT BODY_FILE.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

static char body[65536];
static size_t body_len;

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);

    (void)arg;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_send_reply(req, 405, "Method Not Allowed", NULL);
        return;
    }
    /* A reference, not a copy: the same economy the gateway aims for. */
    evbuffer_add_reference(out, body, body_len, NULL, NULL);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void
on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

int
main(int argc, char **argv)
{
    struct event_base *base;
    struct evhttp *http;
    struct event *term;
    FILE *f;

    if (argc != 3) {
        fprintf(stderr, "usage: bare_evhttp PORT BODY_FILE\n");
        return 2;
    }
    f = fopen(argv[2], "rb");
    if (f == NULL) {
        perror(argv[2]);
        return 1;
    }
    body_len = fread(body, 1, sizeof(body), f);
    fclose(f);
    base = event_base_new();
    http = base != NULL ? evhttp_new(base) : NULL;
    if (http == NULL) {
        fprintf(stderr, "bare_evhttp: out of memory\n");
        return 1;
    }
    evhttp_set_gencb(http, on_request, NULL);
    if (evhttp_bind_socket(http, "127.0.0.1", (unsigned short)atoi(argv[1])) !=
        0) {
        fprintf(stderr, "bare_evhttp: cannot listen on 127.0.0.1:%s\n",
                argv[1]);
        return 1;
    }
    term = evsignal_new(base, SIGTERM, on_signal, base);
    event_add(term, NULL);
    printf("listening 127.0.0.1:%s\n", argv[1]);
    fflush(stdout);
    event_base_dispatch(base);
    event_free(term);
    evhttp_free(http);
    event_base_free(base);
    return 0;
}
