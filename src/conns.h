/*
 * conns.h - the set of caller connections that have sent a request:
 * counts them for the connections_open gauge and enforces [server]
 * max_connections (libevent 2.1 has no accept hook to do it earlier).
 */
#ifndef AGW_CONNS_H
#define AGW_CONNS_H

#include <stdbool.h>
#include <stddef.h>

struct agw_conns;
struct evhttp_connection;

struct agw_conns *agw_conns_new(void);
void agw_conns_free(struct agw_conns *set);

/*
 * Notes EVCON (on its first request) and arranges for its removal when
 * it closes. Returns false when that would exceed LIMIT connections: the
 * caller answers 503 and closes it.
 */
bool agw_conns_admit(struct agw_conns *set, struct evhttp_connection *evcon,
                     size_t limit);

size_t agw_conns_count(const struct agw_conns *set);

#endif
