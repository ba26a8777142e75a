/*
 * tls.h - the client-side TLS context for the upstream: peer and host
 * name verification against the system store or a given CA file.
 */
#ifndef AGW_TLS_H
#define AGW_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

/*
 * New client SSL_CTX that verifies the peer. CA_FILE NULL or "": system
 * store; otherwise a regular PEM file with at least one certificate. On
 * failure returns NULL with the reason in ERR. The config loader loads
 * [upstream] ca_file with this same function, so -t, start-up and a
 * reload give one verdict.
 */
SSL_CTX *agw_tls_client_ctx(const char *ca_file, char *err, size_t errlen);

/*
 * New SSL for one connection to HOST: SNI set, and the certificate must
 * name HOST (SSL_set1_host; IP literals checked as such).
 */
SSL *agw_tls_client_ssl(SSL_CTX *ctx, const char *host);

/* ERR gets WHAT, with the last OpenSSL error when there is one; the
 * thread's OpenSSL error queue is cleared. */
void agw_tls_error(char *err, size_t errlen, const char *what);

#endif
