/*
 * address.c - [server] listen and [upstream] base_url taken apart: one
 * parser each, used by the config loader and by the module that binds or
 * connects, so -t, start-up and a reload give one verdict (SPEC §6).
 */
#include "address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/util.h>

#include "util.h"

/* 1 to 65535, digits only. */
static bool
parse_port(const char *s, int *port)
{
    size_t n = strspn(s, "0123456789");
    long value = n > 0 && n <= 5 ? strtol(s, NULL, 10) : 0;

    if (s[n] != '\0' || value < 1 || value > 65535) {
        return false;
    }
    *port = (int)value;
    return true;
}

/* A host of digits and dots can only be meant as an IPv4 address, and a
 * bracketed one as IPv6; anything else must look like a host name. No
 * name is looked up here: binding does that. */
static bool
host_ok(const char *host, bool bracketed, char *err, size_t errlen)
{
    unsigned char addr[sizeof(struct in6_addr)];

    if (bracketed) {
        if (inet_pton(AF_INET6, host, addr) != 1) {
            agw_set_err(err, errlen, "\"[%.80s]\" is not an IPv6 address",
                        host);
            return false;
        }
    } else if (host[strspn(host, "0123456789.")] == '\0') {
        if (inet_pton(AF_INET, host, addr) != 1) {
            agw_set_err(err, errlen, "\"%.80s\" is not an IPv4 address", host);
            return false;
        }
    } else if (host[strspn(host, "abcdefghijklmnopqrstuvwxyz"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")] !=
               '\0') {
        agw_set_err(err, errlen, "\"%.80s\" is not a host name", host);
        return false;
    }
    return true;
}

bool
agw_address_parse_listen(const char *listen, char *host, int *port, char *err,
                         size_t errlen)
{
    const char *colon = strrchr(listen, ':');
    size_t n = colon != NULL ? (size_t)(colon - listen) : 0;
    bool bracketed = n >= 2 && listen[0] == '[' && listen[n - 1] == ']';
    const char *start = bracketed ? listen + 1 : listen;

    if (bracketed) {
        n -= 2;
    }
    /* A bare IPv6 address would be ambiguous: it needs brackets. */
    if (colon == NULL || n == 0 || n > AGW_LISTEN_HOST_MAX ||
        (!bracketed && memchr(listen, ':', n) != NULL) ||
        !parse_port(colon + 1, port)) {
        agw_set_err(err, errlen,
                    "\"%.80s\" must be host:port with a port from 1 to "
                    "65535 ([addr]:port for IPv6)",
                    listen);
        return false;
    }
    memcpy(host, start, n);
    host[n] = '\0';
    return host_ok(host, bracketed, err, errlen);
}

bool
agw_address_is_loopback(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;

    if (inet_pton(AF_INET, host, &v4) == 1) {
        return (ntohl(v4.s_addr) >> 24) == 127;
    }
    return inet_pton(AF_INET6, host, &v6) == 1 &&
           memcmp(&v6, &in6addr_loopback, sizeof(v6)) == 0;
}

static bool
set_host(struct agw_base_url *u, const char *host, int default_port)
{
    size_t len = strlen(host);
    char buf[300];
    bool v6 = len >= 2 && host[0] == '[' && host[len - 1] == ']';

    u->host = v6 ? strndup(host + 1, len - 2) : strdup(host);
    if (u->port == default_port) {
        snprintf(buf, sizeof(buf), "%s", host);
    } else {
        snprintf(buf, sizeof(buf), "%s:%d", host, u->port);
    }
    u->host_header = strdup(buf);
    return u->host != NULL && u->host_header != NULL && u->host[0] != '\0';
}

static bool
set_prefix(struct agw_base_url *u, const char *path)
{
    size_t len = path != NULL ? strlen(path) : 0;

    while (len > 0 && path[len - 1] == '/') {
        len--;
    }
    u->prefix = strndup(path != NULL ? path : "", len);
    return u->prefix != NULL;
}

/* The parts of URI the client keeps, or why URI is not a base_url. */
static bool
take_base_url(const struct evhttp_uri *uri, struct agw_base_url *out, char *err,
              size_t errlen)
{
    const char *scheme = evhttp_uri_get_scheme(uri);
    const char *host = evhttp_uri_get_host(uri);
    int port = evhttp_uri_get_port(uri);
    int default_port;

    if (scheme == NULL || (evutil_ascii_strcasecmp(scheme, "https") != 0 &&
                           evutil_ascii_strcasecmp(scheme, "http") != 0)) {
        agw_set_err(err, errlen, "must be http:// or https://");
    } else if (host == NULL || host[0] == '\0') {
        agw_set_err(err, errlen, "has no host");
    } else if (evhttp_uri_get_userinfo(uri) != NULL) {
        agw_set_err(err, errlen, "must not carry credentials (user@)");
    } else if (evhttp_uri_get_query(uri) != NULL) {
        agw_set_err(err, errlen, "must not carry a query (?...)");
    } else if (evhttp_uri_get_fragment(uri) != NULL) {
        agw_set_err(err, errlen, "must not carry a fragment (#...)");
    } else if (port == 0 || port > 65535) {
        agw_set_err(err, errlen, "has a bad port");
    } else {
        out->https = evutil_ascii_strcasecmp(scheme, "https") == 0;
        default_port = out->https ? 443 : 80;
        out->port = port > 0 ? port : default_port;
        if (set_host(out, host, default_port) &&
            set_prefix(out, evhttp_uri_get_path(uri))) {
            return true;
        }
        agw_set_err(err, errlen, "bad host or out of memory");
    }
    return false;
}

bool
agw_address_parse_base_url(const char *url, struct agw_base_url *out, char *err,
                           size_t errlen)
{
    struct evhttp_uri *uri = url != NULL ? evhttp_uri_parse(url) : NULL;
    bool ok;

    memset(out, 0, sizeof(*out));
    if (uri == NULL) {
        agw_set_err(err, errlen, "is not a URL");
        return false;
    }
    ok = take_base_url(uri, out, err, errlen);
    evhttp_uri_free(uri);
    if (!ok) {
        agw_address_clear_base_url(out);
    }
    return ok;
}

void
agw_address_clear_base_url(struct agw_base_url *u)
{
    free(u->host);
    free(u->host_header);
    free(u->prefix);
    memset(u, 0, sizeof(*u));
}
