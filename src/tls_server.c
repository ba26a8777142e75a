/*
 * tls_server.c - the TLS listener's side of TLS (tls_server.h): one
 * server SSL_CTX per load of the certificate files, held by the process
 * behind a mutex and swapped whole on SIGHUP. Each connection's SSL
 * holds its own reference to the context it started with, so a swap
 * never touches an open connection.
 */
#include "tls_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "auth.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"
#include "util.h"

/* TLS 1.2 suites with an ephemeral key exchange; TLS 1.3's all are. */
#define FS_CIPHERS_TLS12 "ECDHE+AESGCM:ECDHE+CHACHA20"
/* Sessions resumed with a client certificate must come from here. */
#define SESSION_ID_CONTEXT "asset-gateway"
/* SSL app data once a failed handshake was counted. */
#define COUNTED ((void *)1)

struct agw_tls_server {
    pthread_mutex_t lock;
    SSL_CTX *ctx; /* new connections'; one reference */
};

/* Only a regular file is opened: a FIFO would block start-up. */
static bool
regular_file(const char *path, struct stat *st, char *why, size_t len)
{
    if (stat(path, st) != 0) {
        snprintf(why, len, "cannot read %s: %s", path, strerror(errno));
        return false;
    }
    if (!S_ISREG(st->st_mode)) {
        snprintf(why, len, "cannot read %s: not a regular file", path);
        return false;
    }
    /* Whoever may write it chooses whom the gateway trusts, or is. */
    if (agw_mode_writable_by_others(st->st_mode)) {
        snprintf(why, len, "%s is writable by group or others (mode %04o)",
                 path, (unsigned)(st->st_mode & 07777));
        return false;
    }
    return true;
}

/* The PEM certificates in PATH, at least one; NULL with WHY. */
static STACK_OF(X509) * read_certs(const char *path, char *why, size_t len)
{
    STACK_OF(X509) *certs = sk_X509_new_null();
    BIO *in = BIO_new_file(path, "r");
    X509 *x;
    char what[300];

    if (certs == NULL || in == NULL) {
        snprintf(what, sizeof(what), "cannot read %s", path);
        agw_tls_error(why, len, what);
        goto failed;
    }
    while ((x = PEM_read_bio_X509(in, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(certs, x)) {
            X509_free(x);
            snprintf(why, len, "out of memory");
            goto failed;
        }
    }
    /* The loop ends on "no start line" after the last one: expected. */
    if (ERR_GET_REASON(ERR_peek_last_error()) == PEM_R_NO_START_LINE &&
        sk_X509_num(certs) > 0) {
        ERR_clear_error();
        BIO_free(in);
        return certs;
    }
    snprintf(what, sizeof(what), "%s holds no PEM certificate%s", path,
             sk_X509_num(certs) > 0 ? " after a bad one" : "");
    agw_tls_error(why, len, what);

failed:
    BIO_free(in);
    sk_X509_pop_free(certs, X509_free);
    return NULL;
}

bool
agw_tls_server_check_cert(const char *path, char *why, size_t len)
{
    struct stat st;
    STACK_OF(X509) * certs;

    if (!regular_file(path, &st, why, len)) {
        return false;
    }
    certs = read_certs(path, why, len);
    sk_X509_pop_free(certs, X509_free);
    return certs != NULL;
}

bool
agw_tls_server_check_ca(const char *path, char *why, size_t len)
{
    return agw_tls_server_check_cert(path, why, len);
}

bool
agw_tls_server_check_key(const char *path, char *why, size_t len)
{
    struct stat st;
    BIO *in;
    EVP_PKEY *key = NULL;
    char what[300];

    if (!regular_file(path, &st, why, len)) {
        return false;
    }
    if (agw_readable_by_strangers(&st)) {
        log_warn("tls_key_file %s is readable by group or others (mode "
                 "%04o); chmod 600 it",
                 path, (unsigned)(st.st_mode & 07777));
    }
    in = BIO_new_file(path, "r");
    if (in != NULL) {
        key = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
        BIO_free(in);
    }
    if (key == NULL) {
        snprintf(what, sizeof(what), "%s holds no PEM private key", path);
        agw_tls_error(why, len, what);
        return false;
    }
    EVP_PKEY_free(key);
    return true;
}

/* ------------------------------------------------------------ context */

/* Offered http/1.1: that; anything else: no ALPN, as nginx does. */
static int
select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
            const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *chosen;

    if (SSL_select_next_proto(&chosen, outlen, ours, sizeof(ours) - 1, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

/* "addr:port" of SSL's peer, for the log ("?" when unknown). */
static void
peer_name(const SSL *ssl, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char addr[INET6_ADDRSTRLEN] = "?";
    int fd = SSL_get_fd(ssl);
    int port = 0;

    if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const void *)&ss;

            inet_ntop(AF_INET6, &a->sin6_addr, addr, sizeof(addr));
            port = ntohs(a->sin6_port);
        } else if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const void *)&ss;

            inet_ntop(AF_INET, &a->sin_addr, addr, sizeof(addr));
            port = ntohs(a->sin_port);
        }
    }
    snprintf(out, len, "%s:%d", addr, port);
}

/* Counts SSL's failed handshake, once, and says why at debug. */
static void
handshake_failed(const SSL *ssl, const char *how, const char *why)
{
    char peer[128];

    if (SSL_get_app_data(ssl) == COUNTED) {
        return;
    }
    SSL_set_app_data((SSL *)ssl, COUNTED);
    agw_metrics_inc(AGW_M_TLS_HANDSHAKE_FAILURES);
    peer_name(ssl, peer, sizeof(peer));
    log_debug("TLS handshake with %s failed: %s: %s", peer, how,
              why != NULL ? why : "?");
}

/*
 * The handshake failed when a fatal alert was sent or received before
 * it finished, or when the handshake stopped in OpenSSL's error state
 * without one (plain HTTP or garbage on the TLS port). A client that
 * connects and leaves without a word is not counted. No key material
 * is anywhere near this.
 */
static void
on_info(const SSL *ssl, int where, int ret)
{
    if (SSL_is_init_finished(ssl)) {
        return;
    }
    if ((where & SSL_CB_ALERT) && (ret >> 8) == SSL3_AL_FATAL) {
        handshake_failed(
            ssl, (where & SSL_CB_READ) ? "alert received" : "alert sent",
            SSL_alert_desc_string_long(ret));
    } else if ((where & SSL_CB_EXIT) && ret <= 0 &&
               strcmp(SSL_state_string(ssl), "SSLERR") == 0) {
        handshake_failed(ssl, "error",
                         ERR_reason_error_string(ERR_peek_last_error()));
    }
}

static bool
set_protocols(SSL_CTX *ctx, const struct agw_config *cfg, char *why, size_t len)
{
    int min =
        cfg->tls_min_version == AGW_TLS_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;

    if (SSL_CTX_set_min_proto_version(ctx, min) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, FS_CIPHERS_TLS12) != 1) {
        agw_tls_error(why, len, "cannot set the TLS versions and suites");
        return false;
    }
    /* Clients often close without close_notify; HTTP framing tells a
     * cut request. No renegotiation: a client could spend our CPU. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    SSL_CTX_set_info_callback(ctx, on_info);
    SSL_CTX_set_session_id_context(ctx,
                                   (const unsigned char *)SESSION_ID_CONTEXT,
                                   sizeof(SESSION_ID_CONTEXT) - 1);
    return true;
}

static bool
set_identity(SSL_CTX *ctx, const struct agw_config *cfg, char *why, size_t len)
{
    char what[600];

    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert_file) != 1) {
        snprintf(what, sizeof(what), "cannot load %s", cfg->tls_cert_file);
        agw_tls_error(why, len, what);
        return false;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key_file, SSL_FILETYPE_PEM) !=
            1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(what, sizeof(what), "%s is not the key of %s",
                 cfg->tls_key_file, cfg->tls_cert_file);
        agw_tls_error(why, len, what);
        return false;
    }
    return true;
}

static bool
set_client_auth(SSL_CTX *ctx, const struct agw_config *cfg, char *why,
                size_t len)
{
    STACK_OF(X509_NAME) * names;
    char what[300];
    int mode = SSL_VERIFY_PEER;

    if (cfg->tls_client_auth == AGW_TLS_CLIENT_NONE) {
        return true;
    }
    names = SSL_load_client_CA_file(cfg->tls_client_ca_file);
    if (names == NULL || SSL_CTX_load_verify_locations(
                             ctx, cfg->tls_client_ca_file, NULL) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        snprintf(what, sizeof(what), "cannot load CAs from %s",
                 cfg->tls_client_ca_file);
        agw_tls_error(why, len, what);
        return false;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    if (cfg->tls_client_auth == AGW_TLS_CLIENT_REQUIRE) {
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
    SSL_CTX_set_verify(ctx, mode, NULL);
    return true;
}

SSL_CTX *
agw_tls_server_ctx(const struct agw_config *cfg, char *why, size_t len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL) {
        agw_tls_error(why, len, "SSL_CTX_new");
        return NULL;
    }
    if (!set_protocols(ctx, cfg, why, len) ||
        !set_identity(ctx, cfg, why, len) ||
        !set_client_auth(ctx, cfg, why, len)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* ------------------------------------------------------------ holder */

struct agw_tls_server *
agw_tls_server_new(SSL_CTX *ctx)
{
    struct agw_tls_server *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->ctx = ctx;
    return s;
}

void
agw_tls_server_swap(struct agw_tls_server *s, SSL_CTX *ctx)
{
    SSL_CTX *old;

    pthread_mutex_lock(&s->lock);
    old = s->ctx;
    s->ctx = ctx;
    pthread_mutex_unlock(&s->lock);
    SSL_CTX_free(old); /* open connections' SSLs still hold it */
}

void
agw_tls_server_free(struct agw_tls_server *s)
{
    if (s == NULL) {
        return;
    }
    SSL_CTX_free(s->ctx);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

struct bufferevent *
agw_tls_server_bev(struct agw_tls_server *s, struct event_base *base)
{
    struct bufferevent *bev;
    SSL *ssl;

    pthread_mutex_lock(&s->lock);
    ssl = SSL_new(s->ctx); /* takes its own reference on the context */
    pthread_mutex_unlock(&s->lock);
    if (ssl == NULL) {
        ERR_clear_error();
        return NULL;
    }
    bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* ------------------------------------------------------------ peer */

static void
add_san(struct agw_peer_cert *out, const ASN1_STRING *s)
{
    const unsigned char *p = ASN1_STRING_get0_data(s);
    int n = ASN1_STRING_length(s);

    /* Too long for a name we match, or with a NUL in it: skipped. */
    if (out->nsans >= AGW_PEER_SANS_MAX || n <= 0 || n >= AGW_PEER_SAN_LEN ||
        memchr(p, '\0', (size_t)n) != NULL) {
        return;
    }
    memcpy(out->sans[out->nsans], p, (size_t)n);
    out->sans[out->nsans][n] = '\0';
    out->nsans++;
}

static void
read_sans(X509 *x, struct agw_peer_cert *out)
{
    GENERAL_NAMES *names =
        X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);

    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);

        if (g->type == GEN_URI) {
            add_san(out, g->d.uniformResourceIdentifier);
        } else if (g->type == GEN_DNS) {
            add_san(out, g->d.dNSName);
        }
    }
    GENERAL_NAMES_free(names);
}

bool
agw_tls_server_peer(struct bufferevent *transport, struct agw_peer_cert *out)
{
    SSL *ssl =
        transport != NULL ? bufferevent_openssl_get_ssl(transport) : NULL;
    X509 *x = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
    unsigned int n = 0;

    memset(out, 0, sizeof(*out));
    if (x == NULL || SSL_get_verify_result(ssl) != X509_V_OK ||
        X509_digest(x, EVP_sha256(), out->sha256, &n) != 1 ||
        n != sizeof(out->sha256)) {
        ERR_clear_error();
        return false;
    }
    read_sans(x, out);
    return true;
}
