/*
 * uri.h - source URI checks (SPEC §2) and RFC 3986 §6.2.2 normalization
 * used for the dedupe key (SPEC §3).
 */
#ifndef AGW_URI_H
#define AGW_URI_H

#include <stdbool.h>
#include <stddef.h>

#define AGW_URI_MAX_LEN 2048

enum agw_uri_status {
    AGW_URI_OK = 0,
    AGW_URI_EMPTY,
    AGW_URI_TOO_LONG,
    AGW_URI_MALFORMED,  /* not parseable, or not absolute */
    AGW_URI_BAD_SCHEME, /* not http or https */
    AGW_URI_NO_HOST,
    AGW_URI_PRIVATE_HOST /* not globally reachable (SPEC §2), see below */
};

/*
 * Checks URI as a source for Connectly. On AGW_URI_OK and when NORMALIZED
 * is not NULL, *NORMALIZED receives a malloc'd normalized copy that the
 * caller frees.
 */
enum agw_uri_status agw_uri_check(const char *uri, bool allow_private,
                                  char **normalized);

/* Text for a status, to follow "uri " in an error message. */
const char *agw_uri_status_text(enum agw_uri_status status);

/*
 * RFC 3986 §6.2.2 normalization of an absolute URI: lowercase scheme and
 * host, default port dropped, fragment dropped, percent-encoded unreserved
 * characters decoded, other percent-encodings upper-cased. Returns a
 * malloc'd string, or NULL when URI does not parse.
 */
char *agw_uri_normalize(const char *uri);

/*
 * True for hosts Connectly could never fetch from (SPEC §2): IP literals
 * in the IANA special-purpose registries that are not globally reachable,
 * IPv6 literals embedding such an IPv4 address (mapped, compatible,
 * SIIT, NAT64 64:ff9b::/96, 6to4), Teredo and 64:ff9b:1::/48 whole,
 * localhost names (trailing dots and case ignored), and hosts that end in
 * a number but are not a canonical dotted quad ("127.1", "2130706433").
 * HOST is as evhttp_uri_get_host gives it (IPv6 in brackets) or bare.
 */
bool agw_host_is_private(const char *host);

#endif
