/*
 * conns.h - every caller connection, from accept to close: counts them
 * for connections_open and [server] max_connections, and cuts off the
 * ones that take longer than client_timeout_ms to send a request (libevent
 * 2.1's own timeout restarts at every byte, so a slow sender would hold a
 * connection forever) or sit idle that long between requests. Each
 * connection's bufferevent is a guard (guard.h) over its socket's.
 */
#ifndef AGW_CONNS_H
#define AGW_CONNS_H

#include <stddef.h>

struct agw_conns;
struct agw_guard_policy;
struct agw_refusal;
struct agw_tls_server;
struct bufferevent;
struct event_base;
struct evconnlistener;
struct evhttp_request;

/* IDLE_MS and LIMIT apply from now on (a reload may change them).
 * POLICY (borrowed; it must outlive the set) is every guard's. */
struct agw_conns *agw_conns_new(struct event_base *base, int idle_ms,
                                size_t limit,
                                const struct agw_guard_policy *policy);
void agw_conns_set_limits(struct agw_conns *set, int idle_ms, size_t limit);

/*
 * Makes SET the connections of LEV, a listener that is not the callers'
 * (the operators'), and bounds their descriptors: SET counts its own
 * connections only (not against max_connections, not in
 * connections_open), and LEV stops accepting while SET holds LIMIT
 * sockets (closed ones not yet swept included: their descriptors are
 * still open), or after accept() failed, until a sweep finds room. More
 * connections then wait in the kernel's backlog, not in the process.
 * LEV is borrowed: detach it (NULL) before it is freed.
 */
void agw_conns_own_listener(struct agw_conns *set, struct evconnlistener *lev);

/* Frees the set; call after evhttp_free (which closes the connections). */
void agw_conns_free(struct agw_conns *set);

/* For evhttp_set_bevcb: the bufferevent of each new caller connection.
 * One accepted past the limit is refused before a byte is read: its
 * first request is a stand-in answered 503 code 14. */
struct bufferevent *agw_conns_bevcb(struct event_base *base, void *arg);

/* The same for the TLS listener: the guard sits over an OpenSSL
 * bufferevent from TLS (borrowed; it must outlive the set), so every
 * guard check and the connection limit apply to TLS callers too. */
void agw_conns_set_tls(struct agw_conns *set, struct agw_tls_server *tls);
struct bufferevent *agw_conns_bevcb_tls(struct event_base *base, void *arg);

/*
 * A complete request arrived on REQ's connection: it is busy until its
 * answer is written, and its guard passes the next request on after
 * that. Returns NULL to serve it, or how to refuse it (its guard's
 * refusal, or 503 on a connection that could not be tracked): the
 * caller answers so, with Connection: close.
 */
const struct agw_refusal *agw_conns_request(struct agw_conns *set,
                                            struct evhttp_request *req);

size_t agw_conns_count(const struct agw_conns *set);

#endif
