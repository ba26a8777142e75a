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
struct agw_tls_server;

/*
 * Serves GW on GW's loop: binds CFG's listen and tls_listen addresses
 * (each when set; TLS, borrowed, is the TLS listener's context), or with
 * SHARE (the first worker's server, NULL for that one) accepts on
 * SHARE's sockets too. NULL with ERR on failure.
 */
struct agw_server *agw_server_start(struct agw_gateway *gw,
                                    struct agw_tls_server *tls,
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
