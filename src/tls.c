/*
 * tls.c - client TLS for the upstream: one verifying SSL_CTX, and per
 * connection an SSL bound to the expected host name (SNI + name check).
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

void
agw_tls_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char reason[256];

    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
        snprintf(err, errlen, "%s: %s", what, reason);
    } else {
        snprintf(err, errlen, "%s", what);
    }
    ERR_clear_error();
}

/* Only a regular file is opened: a FIFO would block the open. */
static bool
load_ca_file(SSL_CTX *ctx, const char *ca_file, char *err, size_t errlen)
{
    struct stat st;
    char what[300];

    if (stat(ca_file, &st) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", ca_file, strerror(errno));
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "cannot read %s: not a regular file", ca_file);
        return false;
    }
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        snprintf(what, sizeof(what), "cannot load CAs from %s", ca_file);
        agw_tls_error(err, errlen, what);
        return false;
    }
    return true;
}

SSL_CTX *
agw_tls_client_ctx(const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL) {
        agw_tls_error(err, errlen, "SSL_CTX_new");
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        agw_tls_error(err, errlen, "cannot require TLS 1.2");
        goto failed;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* Servers often close connections without close_notify: OpenSSL 3
     * makes that a fatal error, so libevent's allow_dirty_shutdown would
     * not apply. HTTP framing (Content-Length, chunks) detects truncation,
     * and a cut JSON body does not parse. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (ca_file != NULL && ca_file[0] != '\0') {
        if (!load_ca_file(ctx, ca_file, err, errlen)) {
            goto failed;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        agw_tls_error(err, errlen, "cannot load the system CA store");
        goto failed;
    }
    return ctx;

failed:
    SSL_CTX_free(ctx);
    return NULL;
}

static bool
is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
}

/*
 * A certificate for an IP address names it in an iPAddress SAN, and SNI
 * must not carry an address (RFC 6066 §3), hence the two paths.
 */
SSL *
agw_tls_client_ssl(SSL_CTX *ctx, const char *host)
{
    SSL *ssl;

    if (ctx == NULL || host == NULL || host[0] == '\0') {
        return NULL;
    }
    ssl = SSL_new(ctx);
    if (ssl == NULL) {
        return NULL;
    }
    if (is_ip_literal(host)) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1) {
            goto failed;
        }
        return ssl;
    }
    if (SSL_set_tlsext_host_name(ssl, host) != 1) {
        goto failed;
    }
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set1_host(ssl, host) != 1) {
        goto failed;
    }
    return ssl;

failed:
    SSL_free(ssl);
    ERR_clear_error();
    return NULL;
}
