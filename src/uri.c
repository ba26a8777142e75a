/*
 * uri.c - checks a caller's source URI (SPEC §2) and normalizes it for the
 * dedupe key (SPEC §3, RFC 3986 §6.2.2), on top of libevent's URI parser.
 */
#include "uri.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>

/*
 * Longest host that can be an IP literal: a bracketed IPv6 address with
 * an embedded IPv4 part is at most 47 bytes; anything longer is a name.
 */
#define IP_LITERAL_MAX 64

const char *
agw_uri_status_text(enum agw_uri_status status)
{
    switch (status) {
    case AGW_URI_OK:
        return "is valid";
    case AGW_URI_EMPTY:
        /* Connectly (proto3 JSON) cannot tell "" from absent either. */
        return "is required";
    case AGW_URI_TOO_LONG:
        return "must be at most 2048 bytes";
    case AGW_URI_MALFORMED:
        return "must be an absolute http or https URL";
    case AGW_URI_BAD_SCHEME:
        return "must use http or https";
    case AGW_URI_NO_HOST:
        return "must have a host";
    case AGW_URI_PRIVATE_HOST:
        return "host is loopback, private, link-local or unspecified; "
               "Connectly cannot fetch it";
    }
    return "is invalid";
}

/* Default port of a scheme we accept, or -1 for any other scheme. */
static int
scheme_default_port(const char *scheme)
{
    if (strcasecmp(scheme, "http") == 0) {
        return 80;
    }
    if (strcasecmp(scheme, "https") == 0) {
        return 443;
    }
    return -1;
}

/*
 * The parser already refuses most of these outside NONCONFORMANT mode;
 * checking every byte ourselves keeps the guarantee independent of which
 * component the byte is in and of the libevent version.
 */
static bool
has_control_or_space(const char *uri)
{
    const unsigned char *p;

    for (p = (const unsigned char *)uri; *p != '\0'; p++) {
        if (*p <= 0x20 || *p == 0x7f) {
            return true;
        }
    }
    return false;
}

/*
 * Hosts the parser accepts but nothing can fetch. A '%' in a host is
 * legal RFC 3986 but no DNS name contains one, and fetchers disagree on
 * whether to decode it ("%31%32%37.0.0.1"), which would let a loopback
 * address past agw_host_is_private(); zone ids ("[fe80::1%25eth0]") are
 * link-local anyway. Brackets must hold an IPv6 address, not IPvFuture.
 */
static bool
host_is_well_formed(const char *host)
{
    char buf[IP_LITERAL_MAX];
    struct in6_addr a6;
    size_t len = strlen(host);

    if (strchr(host, '%') != NULL) {
        return false;
    }
    if (host[0] != '[') {
        return true;
    }
    if (len < 2 || len - 2 >= sizeof(buf) || host[len - 1] != ']') {
        return false;
    }
    memcpy(buf, host + 1, len - 2);
    buf[len - 2] = '\0';
    return inet_pton(AF_INET6, buf, &a6) == 1;
}

static enum agw_uri_status
check_parts(const struct evhttp_uri *u, bool allow_private)
{
    const char *scheme = evhttp_uri_get_scheme(u);
    const char *host = evhttp_uri_get_host(u);

    if (scheme == NULL) {
        return AGW_URI_MALFORMED; /* a relative reference */
    }
    if (scheme_default_port(scheme) < 0) {
        return AGW_URI_BAD_SCHEME;
    }
    if (host == NULL || host[0] == '\0') {
        return AGW_URI_NO_HOST;
    }
    /* Port 0 parses but can never be connected to. */
    if (!host_is_well_formed(host) || evhttp_uri_get_port(u) == 0) {
        return AGW_URI_MALFORMED;
    }
    if (!allow_private && agw_host_is_private(host)) {
        return AGW_URI_PRIVATE_HOST;
    }
    return AGW_URI_OK;
}

static char *normalize_parsed(const struct evhttp_uri *u, size_t uri_len);

enum agw_uri_status
agw_uri_check(const char *uri, bool allow_private, char **normalized)
{
    struct evhttp_uri *u;
    enum agw_uri_status status;
    size_t len;

    if (normalized != NULL) {
        *normalized = NULL;
    }
    if (uri == NULL || uri[0] == '\0') {
        return AGW_URI_EMPTY;
    }
    len = strnlen(uri, AGW_URI_MAX_LEN + 1);
    if (len > AGW_URI_MAX_LEN) {
        return AGW_URI_TOO_LONG;
    }
    if (has_control_or_space(uri)) {
        return AGW_URI_MALFORMED;
    }
    u = evhttp_uri_parse_with_flags(uri, 0);
    if (u == NULL) {
        return AGW_URI_MALFORMED;
    }
    status = check_parts(u, allow_private);
    /* On OK, *normalized stays NULL only when memory ran out. The parse
     * that checked the URI also feeds the normalization: one pass. */
    if (status == AGW_URI_OK && normalized != NULL) {
        *normalized = normalize_parsed(u, len);
    }
    evhttp_uri_free(u);
    return status;
}

/* ------------------------------------------------------------ private */

/* IPv4 address A in host byte order. */
static bool
ipv4_is_private(uint32_t a)
{
    /*
     * Beyond SPEC §2's loopback, private, link-local and unspecified:
     * CGNAT (RFC 6598) is not reachable from the internet either, and
     * multicast, reserved and broadcast (224/3) cannot serve a TCP fetch.
     */
    static const struct {
        uint32_t net;
        int bits;
    } ranges[] = {
        {0x00000000, 8},  /* 0/8 "this network", incl. 0.0.0.0 */
        {0x0a000000, 8},  /* 10/8 */
        {0x64400000, 10}, /* 100.64/10 CGNAT */
        {0x7f000000, 8},  /* 127/8 loopback */
        {0xa9fe0000, 16}, /* 169.254/16 link-local */
        {0xac100000, 12}, /* 172.16/12 */
        {0xc0a80000, 16}, /* 192.168/16 */
        {0xe0000000, 3},  /* 224/4 multicast, 240/4 reserved, broadcast */
    };
    size_t i;

    for (i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        uint32_t mask = 0xffffffffu << (32 - ranges[i].bits);

        if ((a & mask) == ranges[i].net) {
            return true;
        }
    }
    return false;
}

static uint32_t
embedded_ipv4(const unsigned char *b)
{
    return (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
           (uint32_t)b[14] << 8 | (uint32_t)b[15];
}

static bool
ipv6_is_private(const unsigned char *b)
{
    static const unsigned char zero[12];
    static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};

    /* ::/96 holds ::, ::1 and the deprecated IPv4-compatible form. */
    if (memcmp(b, zero, 12) == 0) {
        return true;
    }
    /* ::ffff:a.b.c.d and NAT64 64:ff9b::a.b.c.d reach the IPv4 host. */
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0) {
        return ipv4_is_private(embedded_ipv4(b));
    }
    if ((b[0] & 0xfe) == 0xfc) {
        return true; /* fc00::/7 unique local */
    }
    if (b[0] == 0xfe && (b[1] & 0x80) == 0x80) {
        return true; /* fe80::/10 link-local, fec0::/10 old site-local */
    }
    return b[0] == 0xff; /* multicast */
}

static bool
name_is_localhost(const char *name, size_t len)
{
    static const char suffix[] = ".localhost";
    size_t slen = sizeof(suffix) - 1;

    if (len == slen - 1 && strncasecmp(name, suffix + 1, len) == 0) {
        return true;
    }
    return len > slen && strncasecmp(name + len - slen, suffix, slen) == 0;
}

/*
 * HOST as the parser returns it (IPv6 in brackets) or bare. A NULL or
 * empty host fails closed. IPv4 goes through inet_aton, not inet_pton, on
 * purpose: resolvers (getaddrinfo, curl) accept the classic forms
 * "2130706433", "0x7f.1", "127.1" and "0177.0.0.1" as 127.0.0.1, so they
 * are private here too. Names that merely resolve to a private address
 * are not caught; that needs DNS, which this check does not do.
 */
bool
agw_host_is_private(const char *host)
{
    char buf[IP_LITERAL_MAX];
    struct in6_addr a6;
    struct in_addr a4;
    size_t len;

    if (host == NULL || host[0] == '\0') {
        return true;
    }
    len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    } else if (host[len - 1] == '.') {
        len--; /* "localhost." and "127.0.0.1." are the same hosts */
    }
    if (name_is_localhost(host, len)) {
        return true;
    }
    if (len == 0 || len >= sizeof(buf)) {
        return len == 0;
    }
    memcpy(buf, host, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET6, buf, &a6) == 1) {
        return ipv6_is_private(a6.s6_addr);
    }
    if (inet_aton(buf, &a4) != 0) {
        return ipv4_is_private(ntohl(a4.s_addr));
    }
    return false;
}

/* -------------------------------------------------------- normalize */

/* ASCII only, whatever the locale: URIs are ASCII by definition. */
static unsigned char
ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static unsigned char
ascii_upper(unsigned char c)
{
    return (c >= 'a' && c <= 'z') ? (unsigned char)(c - 'a' + 'A') : c;
}

static bool
is_unreserved(unsigned char c)
{
    c = ascii_lower(c);
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static int
hex_value(unsigned char c)
{
    c = ascii_upper(c);
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* A bounded output buffer; a write past its end marks it failed. */
struct out {
    char *buf;
    size_t size, len;
    bool failed;
};

static void
put(struct out *o, const char *s, size_t n)
{
    if (o->failed || n >= o->size - o->len) {
        o->failed = true;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void
put_lower(struct out *o, const char *s)
{
    size_t start = o->len, i;

    put(o, s, strlen(s));
    for (i = start; !o->failed && i < o->len; i++) {
        o->buf[i] = (char)ascii_lower((unsigned char)o->buf[i]);
    }
}

/*
 * RFC 3986 §6.2.2.1 and §6.2.2.2 on one component: "%7e" becomes "~",
 * "%2f" becomes "%2F"; every other byte is copied as is.
 */
static void
put_percent_normalized(struct out *o, const char *in)
{
    size_t i;

    for (i = 0; in[i] != '\0'; i++) {
        int hi, lo;
        char c;

        if (in[i] != '%' || (hi = hex_value((unsigned char)in[i + 1])) < 0 ||
            (lo = hex_value((unsigned char)in[i + 2])) < 0) {
            put(o, in + i, 1);
            continue;
        }
        c = (char)(hi << 4 | lo);
        if (is_unreserved((unsigned char)c)) {
            put(o, &c, 1);
        } else {
            char esc[3] = {'%', (char)ascii_upper((unsigned char)in[i + 1]),
                           (char)ascii_upper((unsigned char)in[i + 2])};

            put(o, esc, 3);
        }
        i += 2;
    }
}

/*
 * Only the §6.2.2 steps SPEC §3 names. Dot segments ("/a/../b") are not
 * removed and an empty path is not turned into "/": SPEC §3 keeps path and
 * query otherwise byte-exact, because origin servers may treat them
 * differently and a wrong merge would serve one source's asset for
 * another; a missed merge only costs one extra upload.
 *
 * The components are written back exactly as evhttp_uri_join would write
 * them, with two differences, both RFC 3986 §6.2.3 equivalences: an empty
 * port ("h:/") disappears and a port with leading zeros ("h:080") is
 * written in plain decimal, so "http://h:080/" normalizes like
 * "http://h/". An empty query ("/p?") and an empty userinfo ("@h") are
 * kept: §6.2.3 does not license removing a delimiter whose component is
 * empty, and servers may tell "/p?" from "/p". Written straight into the
 * result rather than through the evhttp_uri setters and join: the
 * normalized components stay within the characters the parser accepted.
 */
static char *
normalize_parsed(const struct evhttp_uri *u, size_t uri_len)
{
    const char *scheme = evhttp_uri_get_scheme(u);
    const char *host = evhttp_uri_get_host(u);
    const char *userinfo = evhttp_uri_get_userinfo(u);
    const char *path = evhttp_uri_get_path(u);
    const char *query = evhttp_uri_get_query(u);
    int port = evhttp_uri_get_port(u);
    /* Normalizing never lengthens a URI; the slack is for safety only. */
    struct out o = {.size = uri_len + 16};

    o.buf = malloc(o.size);
    if (o.buf == NULL) {
        return NULL;
    }
    if (scheme != NULL) {
        put_lower(&o, scheme);
        put(&o, ":", 1);
        if (port == scheme_default_port(scheme)) {
            port = -1;
        }
    }
    if (host != NULL) {
        put(&o, "//", 2);
        if (userinfo != NULL) {
            put_percent_normalized(&o, userinfo);
            put(&o, "@", 1);
        }
        put_lower(&o, host);
        if (port >= 0) {
            char digits[16];
            int n = snprintf(digits, sizeof(digits), ":%d", port);

            put(&o, digits, (size_t)n);
        }
        /* What evhttp_uri_join refuses: a rootless path after a host. */
        o.failed |= path != NULL && path[0] != '/' && path[0] != '\0';
    }
    if (path != NULL) {
        put_percent_normalized(&o, path);
    }
    if (query != NULL) {
        put(&o, "?", 1);
        put_percent_normalized(&o, query);
    }
    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    o.buf[o.len] = '\0';
    return o.buf;
}

char *
agw_uri_normalize(const char *uri)
{
    struct evhttp_uri *u;
    char *out;

    if (uri == NULL) {
        return NULL;
    }
    u = evhttp_uri_parse_with_flags(uri, 0);
    if (u == NULL) {
        return NULL;
    }
    out = normalize_parsed(u, strlen(uri));
    evhttp_uri_free(u);
    return out;
}
