/*
 * server.h - the evhttp front end: listen, limits, routing to the create
 * pipeline, /healthz and /readyz, 404 and 405 in Connectly's shape.
 */
#ifndef AGW_SERVER_H
#define AGW_SERVER_H

#include <stdbool.h>
#include <stddef.h>

struct agw_config;
struct agw_gateway;
struct agw_server;

#define AGW_LISTEN_HOST_MAX 255

/*
 * Splits LISTEN, "host:port" or "[IPv6 address]:port" with a port from 1
 * to 65535, into HOST (AGW_LISTEN_HOST_MAX + 1 bytes, no brackets) and
 * *PORT. A host of digits and dots must be an IPv4 address; a name is
 * resolved when the socket is bound. On failure returns false with the
 * problem in ERR. The config loader checks [server] listen with this same
 * function, so -t, start-up and a reload give one verdict (SPEC §6).
 */
bool agw_server_parse_listen(const char *listen, char *host, int *port,
                             char *err, size_t errlen);

/*
 * Serves GW on GW's loop: binds CFG's listen address, or with SHARE (the
 * first worker's server, NULL for that one) accepts on SHARE's socket too.
 * NULL with ERR on failure.
 */
struct agw_server *agw_server_start(struct agw_gateway *gw,
                                    const struct agw_server *share, char *err,
                                    size_t errlen);

/* A reload: body size and idle limits of CFG apply to new requests. */
void agw_server_reconfigure(struct agw_server *srv,
                            const struct agw_config *cfg);

/* Stops accepting new connections; answered ones finish. */
void agw_server_stop_accepting(struct agw_server *srv);

/* Caller connections open now. */
size_t agw_server_connections(const struct agw_server *srv);

void agw_server_free(struct agw_server *srv);

#endif
