/*
 * address.h - the addresses of the config taken apart: [server] listen
 * (server.c binds it) and [upstream] base_url (upstream.c connects to
 * it). The config loader checks each with the same function its user
 * calls, so -t, start-up and a reload give one verdict (SPEC §6).
 */
#ifndef AGW_ADDRESS_H
#define AGW_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#define AGW_LISTEN_HOST_MAX 255

/*
 * Splits LISTEN, "host:port" or "[IPv6 address]:port" with a port from 1
 * to 65535, into HOST (AGW_LISTEN_HOST_MAX + 1 bytes, no brackets) and
 * *PORT. A host of digits and dots must be an IPv4 address; a name is
 * resolved when the socket is bound. On failure returns false with the
 * problem in ERR. The config loader checks [server] listen with this same
 * function, so -t, start-up and a reload give one verdict (SPEC §6).
 */
bool agw_address_parse_listen(const char *listen, char *host, int *port,
                              char *err, size_t errlen);

/*
 * Whether HOST (as agw_address_parse_listen gives it) is a loopback
 * address: an IPv4 literal in 127.0.0.0/8 or the IPv6 literal ::1. A
 * name (even "localhost") is not: what it resolves to is not known when
 * the config is checked.
 */
bool agw_address_is_loopback(const char *host);

/* base_url taken apart, as the client uses it; strings are malloc'ed. */
struct agw_base_url {
    bool https;
    int port;          /* 443 or 80 when the URL names none */
    char *host;        /* for connect and TLS: no brackets */
    char *host_header; /* with brackets and a non-default port */
    char *prefix;      /* "" or "/p", no trailing slash */
};

/*
 * Parses URL with evhttp_uri_parse: scheme http or https, a host, an
 * optional port and path; credentials, a query or a fragment are refused
 * (SPEC §6). On failure returns false and ERR gets the problem, which
 * never quotes URL. Free OUT with agw_address_clear_base_url(). The config
 * loader checks [upstream] base_url with this same function, so -t, start-up
 * and a reload give one verdict.
 */
bool agw_address_parse_base_url(const char *url, struct agw_base_url *out,
                                char *err, size_t errlen);
void agw_address_clear_base_url(struct agw_base_url *u);

#endif
