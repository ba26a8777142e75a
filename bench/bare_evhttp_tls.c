/*
 * bare_evhttp_tls.c - the ceiling of the library over TLS: one event
 * loop, one evhttp over bufferevent_openssl (evhttp_set_bevcb), every
 * POST answered 200 with a fixed JSON body, GET 200 "ok". The same TLS
 * settings as the gateway's listener (TLS 1.2-1.3, tickets). Built and
 * run by bench/tls only: bare_evhttp_tls PORT BODY_FILE CERT KEY.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>

static char body[65536];
static size_t body_len;

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);

    (void)arg;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evbuffer_add(out, "ok", 2);
        evhttp_send_reply(req, 200, "OK", NULL);
        return;
    }
    evbuffer_add_reference(out, body, body_len, NULL, NULL);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evhttp_send_reply(req, 200, "OK", NULL);
}

static struct bufferevent *
on_connection(struct event_base *base, void *arg)
{
    SSL *ssl = SSL_new(arg);
    struct bufferevent *bev;

    if (ssl == NULL) {
        return NULL;
    }
    bev = bufferevent_openssl_socket_new(base, -1, ssl,
                                         BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev != NULL) {
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    }
    return bev;
}

static void
on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static SSL_CTX *
server_ctx(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "bare_evhttp_tls: cannot set up TLS\n");
        exit(1);
    }
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    return ctx;
}

int
main(int argc, char **argv)
{
    struct event_base *base;
    struct evhttp *http;
    struct event *term;
    struct evhttp_bound_socket *bound;
    SSL_CTX *ctx;
    int one = 1;
    FILE *f;

    if (argc != 5) {
        fprintf(stderr, "usage: bare_evhttp_tls PORT BODY_FILE CERT KEY\n");
        return 2;
    }
    f = fopen(argv[2], "rb");
    if (f == NULL) {
        perror(argv[2]);
        return 1;
    }
    body_len = fread(body, 1, sizeof(body), f);
    fclose(f);
    signal(SIGPIPE, SIG_IGN);
    ctx = server_ctx(argv[3], argv[4]);
    base = event_base_new();
    http = base != NULL ? evhttp_new(base) : NULL;
    if (http == NULL) {
        fprintf(stderr, "bare_evhttp_tls: out of memory\n");
        return 1;
    }
    evhttp_set_gencb(http, on_request, NULL);
    evhttp_set_bevcb(http, on_connection, ctx);
    bound = evhttp_bind_socket_with_handle(http, "127.0.0.1",
                                           (unsigned short)atoi(argv[1]));
    if (bound == NULL) {
        fprintf(stderr, "bare_evhttp_tls: cannot listen on 127.0.0.1:%s\n",
                argv[1]);
        return 1;
    }
    /* Accepted sockets inherit it (Linux): without it, the header and
     * body TLS records of one answer meet Nagle and delayed ACKs (~40 ms
     * each answer). */
    setsockopt(evhttp_bound_socket_get_fd(bound), IPPROTO_TCP, TCP_NODELAY,
               &one, sizeof(one));
    term = evsignal_new(base, SIGTERM, on_signal, base);
    event_add(term, NULL);
    printf("listening 127.0.0.1:%s\n", argv[1]);
    fflush(stdout);
    event_base_dispatch(base);
    event_free(term);
    evhttp_free(http);
    event_base_free(base);
    SSL_CTX_free(ctx);
    return 0;
}
