/*
 * sandbox.c - connectly-sandbox's main(): command line, API key file,
 * loopback listener (plain or TLS), signals and a clean shutdown.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "sandbox.h"

#define KEY_FILE_MAX 65536
#define MAX_BODY_BYTES (1 << 20)
#define MAX_HEADER_BYTES 65536
#define IO_TIMEOUT_S 30
#define DRAIN_MS 200

static const char usage_text[] =
    "usage: connectly-sandbox --listen 127.0.0.1:PORT --api-key-file FILE\n"
    "         [--tls-cert FILE --tls-key FILE] [--rate N] [--cdn-base URL]\n"
    "         [--fetch-timeout-ms N] [--max-asset-bytes N] [-h]\n"
    "\n"
    "A loopback stand-in for the Connectly Create Asset API.\n"
    "\n"
    "  --listen HOST:PORT      loopback address to serve on; PORT 0 picks a\n"
    "                          free port. Prints 'listening HOST:PORT'.\n"
    "  --api-key-file FILE     the accepted X-API-Key (trailing whitespace\n"
    "                          stripped); required, must not be empty\n"
    "  --tls-cert FILE         PEM certificate chain: serve HTTPS only\n"
    "  --tls-key FILE          PEM private key for --tls-cert\n"
    "  --rate N                creates admitted per sliding second\n"
    "                          (default 100, 0 = unlimited)\n"
    "  --cdn-base URL          base of returned asset uris\n"
    "                          (default http[s]://HOST:PORT)\n"
    "  --fetch-timeout-ms N    deadline for fetching a source (default 5000)\n"
    "  --max-asset-bytes N     largest source accepted (default 10485760)\n"
    "  -h, --help              this text\n"
    "\n"
    "Routes:\n"
    "  POST /v1/businesses/{businessId}/assets   create (needs X-API-Key)\n"
    "  GET  /cdn/assets/{id}                     stored bytes\n"
    "  GET  /samples/{name}                      deterministic source file\n"
    "  GET  /samples/missing...                  404\n"
    "  GET  /samples/slow/{ms}/{name}            answered after ms (<= 30000)\n"
    "  GET  /_sandbox/stats | /_sandbox/calls    counters, recorded calls\n"
    "  GET|POST /_sandbox/faults                 show / set fault switches:\n"
    "        latency_ms, status, status_count, retry_after, drop_count,\n"
    "        echo_key (1: a forced error's message and a created answer\n"
    "        quote the X-API-Key the call sent, as a careless API might)\n"
    "  POST /_sandbox/reset                      clear calls, counters, "
    "faults\n"
    "Source fetches are plain http to loopback hosts only.\n";

static const char short_usage[] =
    "usage: connectly-sandbox --listen 127.0.0.1:PORT --api-key-file FILE "
    "[options]; -h for help\n";

enum {
    OPT_LISTEN = 1000,
    OPT_KEY,
    OPT_CERT,
    OPT_TLSKEY,
    OPT_RATE,
    OPT_CDN,
    OPT_FETCH_TIMEOUT,
    OPT_MAX_ASSET,
};

static const struct option long_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"api-key-file", required_argument, NULL, OPT_KEY},
    {"tls-cert", required_argument, NULL, OPT_CERT},
    {"tls-key", required_argument, NULL, OPT_TLSKEY},
    {"rate", required_argument, NULL, OPT_RATE},
    {"cdn-base", required_argument, NULL, OPT_CDN},
    {"fetch-timeout-ms", required_argument, NULL, OPT_FETCH_TIMEOUT},
    {"max-asset-bytes", required_argument, NULL, OPT_MAX_ASSET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void
fail(const char *fmt, const char *arg)
{
    fprintf(stderr, "connectly-sandbox: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
}

/* ---------------------------------------------------------- arguments */

static int
parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

static int
is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (inet_pton(AF_INET, host, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* HOST:PORT or [V6]:PORT, loopback only: tests must never expose it. */
static int
parse_listen(struct sbx_config *cfg, const char *arg)
{
    const char *colon = strrchr(arg, ':');
    long port;
    size_t hlen;

    if (colon == NULL || parse_long(colon + 1, 0, 65535, &port) != 0) {
        return -1;
    }
    hlen = (size_t)(colon - arg);
    if (hlen >= 2 && arg[0] == '[' && arg[hlen - 1] == ']') {
        arg++;
        hlen -= 2;
    }
    free(cfg->listen_host);
    cfg->listen_host = strndup(arg, hlen);
    if (cfg->listen_host == NULL) {
        return -1;
    }
    if (strcmp(cfg->listen_host, "localhost") == 0) {
        free(cfg->listen_host);
        cfg->listen_host = strdup("127.0.0.1");
    }
    if (cfg->listen_host == NULL || !is_loopback(cfg->listen_host)) {
        return -1;
    }
    cfg->listen_port = (int)port;
    return 0;
}

static int
set_string(char **dst, const char *src)
{
    free(*dst);
    *dst = strdup(src);
    return *dst != NULL ? 0 : -1;
}

static int
apply_option(struct sbx_config *cfg, int opt, const char *arg)
{
    long v;

    switch (opt) {
    case OPT_LISTEN:
        return parse_listen(cfg, arg);
    case OPT_KEY:
        return set_string(&cfg->key_file, arg);
    case OPT_CERT:
        return set_string(&cfg->tls_cert, arg);
    case OPT_TLSKEY:
        return set_string(&cfg->tls_key, arg);
    case OPT_RATE:
        return parse_long(arg, 0, 1000000, &cfg->rate);
    case OPT_CDN:
        return set_string(&cfg->cdn_base, arg);
    case OPT_FETCH_TIMEOUT:
        return parse_long(arg, 1, 600000, &cfg->fetch_timeout_ms);
    case OPT_MAX_ASSET:
        if (parse_long(arg, 1, 1L << 30, &v) != 0) {
            return -1;
        }
        cfg->max_asset_bytes = (size_t)v;
        return 0;
    default:
        return -1;
    }
}

/* 0 to run, 1 on a usage error, 2 after printing help. */
static int
parse_args(struct sbx_config *cfg, int argc, char **argv)
{
    int opt;

    cfg->rate = 100;
    cfg->fetch_timeout_ms = 5000;
    cfg->max_asset_bytes = 10u << 20;
    while ((opt = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        if (opt == 'h') {
            fputs(usage_text, stdout);
            return 2;
        }
        if (opt == '?' || apply_option(cfg, opt, optarg) != 0) {
            if (opt != '?') {
                fail("bad value for --%s", long_options[opt - OPT_LISTEN].name);
            }
            fputs(short_usage, stderr);
            return 1;
        }
    }
    if (optind != argc || cfg->listen_host == NULL || cfg->key_file == NULL ||
        (cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
        fail("%s", "need --listen and --api-key-file (and both --tls-cert "
                   "and --tls-key, or neither)");
        fputs(short_usage, stderr);
        return 1;
    }
    return 0;
}

/* Reads the key, strips trailing whitespace and keeps only its digest;
 * the key itself is wiped at once. */
static int
load_key(struct sbx_server *srv)
{
    FILE *f = fopen(srv->cfg.key_file, "rb");
    char *buf;
    size_t n;
    int rc = -1;

    if (f == NULL) {
        fail("cannot read API key file %s", srv->cfg.key_file);
        return -1;
    }
    buf = malloc(KEY_FILE_MAX + 1);
    n = buf != NULL ? fread(buf, 1, KEY_FILE_MAX + 1, f) : 0;
    fclose(f);
    while (n > 0 && strchr(" \t\r\n\v\f", buf[n - 1]) != NULL) {
        n--;
    }
    if (buf == NULL || n == 0 || n > KEY_FILE_MAX) {
        fail("API key file %s is empty or too large", srv->cfg.key_file);
    } else if (EVP_Digest(buf, n, srv->key_digest, NULL, EVP_sha256(), NULL) ==
               1) {
        rc = 0;
    }
    if (buf != NULL) {
        OPENSSL_cleanse(buf, KEY_FILE_MAX + 1);
        free(buf);
    }
    return rc;
}

/* ---------------------------------------------------------------- TLS */

static struct bufferevent *
tls_bevcb(struct event_base *base, void *arg)
{
    SSL *ssl = SSL_new(arg);
    struct bufferevent *bev;

    if (ssl == NULL) {
        return NULL;
    }
    bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    /* Clients that just close the socket are not an error here. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static int
tls_setup(struct sbx_server *srv)
{
    srv->ssl = SSL_CTX_new(TLS_server_method());
    if (srv->ssl == NULL) {
        return -1;
    }
    SSL_CTX_set_min_proto_version(srv->ssl, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(srv->ssl, srv->cfg.tls_cert) != 1) {
        fail("cannot load TLS certificate chain %s", srv->cfg.tls_cert);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(srv->ssl, srv->cfg.tls_key,
                                    SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(srv->ssl) != 1) {
        fail("cannot load TLS key %s (or it does not match the certificate)",
             srv->cfg.tls_key);
        return -1;
    }
    evhttp_set_bevcb(srv->http, tls_bevcb, srv->ssl);
    return 0;
}

/* ------------------------------------------------------------- server */

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    fprintf(stderr, "connectly-sandbox: signal %d, exiting\n", (int)sig);
    event_base_loopbreak(arg);
}

static int
setup_dns(struct sbx_server *srv)
{
    srv->dns = evdns_base_new(srv->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (srv->dns == NULL) {
        /* No resolv.conf: /etc/hosts is all loopback sources need. */
        srv->dns = evdns_base_new(srv->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (srv->dns != NULL) {
            evdns_base_load_hosts(srv->dns, NULL);
        }
    }
    return srv->dns != NULL ? 0 : -1;
}

static int
bound_port(struct evhttp_bound_socket *h)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    evutil_socket_t fd = evhttp_bound_socket_get_fd(h);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        return -1;
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int
make_cdn_base(struct sbx_config *cfg)
{
    char buf[300];
    size_t n;
    int v6 = strchr(cfg->listen_host, ':') != NULL;

    if (cfg->cdn_base == NULL) {
        snprintf(buf, sizeof(buf), v6 ? "%s://[%s]:%d" : "%s://%s:%d",
                 cfg->tls_cert != NULL ? "https" : "http", cfg->listen_host,
                 cfg->listen_port);
        return set_string(&cfg->cdn_base, buf);
    }
    n = strlen(cfg->cdn_base);
    while (n > 0 && cfg->cdn_base[n - 1] == '/') {
        cfg->cdn_base[--n] = '\0';
    }
    return 0;
}

static int
setup_http(struct sbx_server *srv)
{
    struct timeval tv = {IO_TIMEOUT_S, 0};

    srv->http = evhttp_new(srv->base);
    if (srv->http == NULL) {
        return -1;
    }
    evhttp_set_max_body_size(srv->http, MAX_BODY_BYTES);
    evhttp_set_max_headers_size(srv->http, MAX_HEADER_BYTES);
    evhttp_set_timeout_tv(srv->http, &tv);
    /* Let every method reach the routes so they can answer 405 + Allow. */
    evhttp_set_allowed_methods(
        srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                       EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                       EVHTTP_REQ_PATCH);
    evhttp_set_gencb(srv->http, sbx_handle_request, srv);
    if (srv->cfg.tls_cert != NULL && tls_setup(srv) != 0) {
        return -1;
    }
    srv->listener = evhttp_bind_socket_with_handle(
        srv->http, srv->cfg.listen_host, (ev_uint16_t)srv->cfg.listen_port);
    if (srv->listener == NULL) {
        fail("cannot listen on %s", srv->cfg.listen_host);
        return -1;
    }
    srv->cfg.listen_port = bound_port(srv->listener);
    return srv->cfg.listen_port > 0 ? 0 : -1;
}

static int
server_start(struct sbx_server *srv, struct event **sigs)
{
    srv->base = event_base_new();
    if (srv->base == NULL || setup_dns(srv) != 0) {
        return -1;
    }
    srv->store =
        sbx_store_new(SBX_MAX_ASSETS, srv->cfg.max_asset_bytes > SBX_STORE_BYTES
                                          ? srv->cfg.max_asset_bytes
                                          : SBX_STORE_BYTES);
    srv->calls = sbx_calls_new(srv->cfg.rate);
    srv->faults = sbx_faults_new();
    if (srv->store == NULL || srv->calls == NULL || srv->faults == NULL) {
        return -1;
    }
    sigs[0] = evsignal_new(srv->base, SIGTERM, on_signal, srv->base);
    sigs[1] = evsignal_new(srv->base, SIGINT, on_signal, srv->base);
    if (sigs[0] == NULL || sigs[1] == NULL || evsignal_add(sigs[0], NULL) ||
        evsignal_add(sigs[1], NULL)) {
        return -1;
    }
    if (setup_http(srv) != 0) {
        return -1;
    }
    return make_cdn_base(&srv->cfg);
}

/* Stops accepting, answers what is pending with 503 and gives the
 * answers up to DRAIN_MS to leave before everything is freed. */
static void
server_drain(struct sbx_server *srv)
{
    struct timeval tv = {0, DRAIN_MS * 1000};

    evhttp_del_accept_socket(srv->http, srv->listener);
    srv->listener = NULL;
    sbx_jobs_abort_all(srv);
    event_base_loopexit(srv->base, &tv);
    event_base_dispatch(srv->base);
}

static void
server_stop(struct sbx_server *srv, struct event **sigs)
{
    sbx_jobs_abort_all(srv); /* before evhttp_free: it frees their requests */
    if (srv->http != NULL) {
        evhttp_free(srv->http);
    }
    for (int i = 0; i < 2; i++) {
        if (sigs[i] != NULL) {
            event_free(sigs[i]);
        }
    }
    if (srv->dns != NULL) {
        evdns_base_free(srv->dns, 0);
    }
    sbx_store_free(srv->store);
    sbx_calls_free(srv->calls);
    sbx_faults_free(srv->faults);
    if (srv->ssl != NULL) {
        SSL_CTX_free(srv->ssl);
    }
    if (srv->base != NULL) {
        event_base_free(srv->base);
    }
    free(srv->cfg.listen_host);
    free(srv->cfg.key_file);
    free(srv->cfg.tls_cert);
    free(srv->cfg.tls_key);
    free(srv->cfg.cdn_base);
    OPENSSL_cleanse(srv->key_digest, sizeof(srv->key_digest));
    libevent_global_shutdown();
}

int
main(int argc, char **argv)
{
    struct sbx_server srv;
    struct event *sigs[2] = {NULL, NULL};
    int rc;

    memset(&srv, 0, sizeof(srv));
    signal(SIGPIPE, SIG_IGN);
    rc = parse_args(&srv.cfg, argc, argv);
    if (rc == 0 && load_key(&srv) != 0) {
        rc = 1;
    }
    if (rc == 0 && server_start(&srv, sigs) != 0) {
        fail("%s", "start-up failed");
        ERR_print_errors_fp(stderr);
        rc = 1;
    }
    if (rc == 0) {
        printf(strchr(srv.cfg.listen_host, ':') != NULL ? "listening [%s]:%d\n"
                                                        : "listening %s:%d\n",
               srv.cfg.listen_host, srv.cfg.listen_port);
        fflush(stdout);
        event_base_dispatch(srv.base);
        server_drain(&srv);
    }
    server_stop(&srv, sigs);
    return rc == 2 ? 0 : rc;
}
