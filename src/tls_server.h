/*
 * tls_server.h - TLS for callers on [server] tls_listen (SPEC §9): the
 * server SSL_CTX built from the config, the process's current one
 * (swapped on SIGHUP), the OpenSSL bufferevent of each new connection,
 * and what a verified client certificate says about its caller.
 */
#ifndef AGW_TLS_SERVER_H
#define AGW_TLS_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct agw_config;
struct agw_peer_cert;
struct bufferevent;
struct event_base;

/*
 * Validators for the config table (they name the file and say why on
 * failure): a PEM certificate chain, a PEM private key (group or others
 * may not write it; a warning when they may read it), PEM CAs (at least
 * one certificate). -t, start-up and SIGHUP run these same checks.
 */
bool agw_tls_server_check_cert(const char *path, char *why, size_t len);
bool agw_tls_server_check_key(const char *path, char *why, size_t len);
bool agw_tls_server_check_ca(const char *path, char *why, size_t len);

/*
 * New server SSL_CTX for CFG's tls_* keys: its certificate chain and the
 * matching key, TLS 1.2 (or tls_min_version) to 1.3, forward-secret
 * suites only, ALPN http/1.1, session tickets, and client certificates
 * verified against tls_client_ca_file as tls_client_auth says. NULL with
 * the reason in WHY (a key that is not the certificate's, a file that
 * does not parse).
 */
SSL_CTX *agw_tls_server_ctx(const struct agw_config *cfg, char *why,
                            size_t len);

/* The process's current context, shared by every worker. */
struct agw_tls_server;

/* Takes CTX's reference. NULL when out of memory (CTX freed). */
struct agw_tls_server *agw_tls_server_new(SSL_CTX *ctx);

/* SIGHUP: new connections use CTX (its reference is taken); open ones
 * keep the context they started with (each SSL holds a reference). */
void agw_tls_server_swap(struct agw_tls_server *s, SSL_CTX *ctx);

void agw_tls_server_free(struct agw_tls_server *s);

/*
 * For a new caller connection (any thread): an OpenSSL bufferevent in
 * accepting state with no socket yet (evhttp sets it), closing it when
 * freed. A handshake that fails is counted in
 * asset_gateway_tls_handshake_failures_total and logged at debug with
 * the peer's address. NULL when out of memory.
 */
struct bufferevent *agw_tls_server_bev(struct agw_tls_server *s,
                                       struct event_base *base);

/*
 * The verified client certificate on TRANSPORT (a connection's bottom
 * bufferevent, NULL allowed) into OUT: its SHA-256 and its URI and DNS
 * subjectAltNames. False when TRANSPORT is not TLS, or its peer sent no
 * certificate or one that did not verify.
 */
bool agw_tls_server_peer(struct bufferevent *transport,
                         struct agw_peer_cert *out);

#endif
