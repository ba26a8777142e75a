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

#include "util.h"

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
        return "host is not globally reachable (loopback, private, reserved "
               "or a local name); Connectly cannot fetch it";
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

/*
 * SPEC §2 refuses IP literals that are not globally reachable. The two
 * tables below follow the IANA IPv4 and IPv6 Special-Purpose Address
 * Registries (entries with "Globally Reachable" False or N/A), plus the
 * multicast and deprecated blocks, which cannot serve a fetch either.
 * Where a registry block holds a few globally reachable anycast service
 * addresses (192.0.0.9 and .10 in 192.0.0.0/24; 2001:1::1-3, AMT 2001:3::/32,
 * AS112 2001:4:112::/48, ORCHIDv2 and DRIP in 2001::/23), the whole block
 * is refused: those are DNS, PCP, TURN and tunnel services that serve no
 * file, and one row per block keeps the tables checkable by eye. The
 * globally reachable blocks outside them (AS112 192.31.196.0/24 and
 * 192.175.48.0/24, AMT 192.52.193.0/24, 2620:4f:8000::/48) are accepted.
 */
struct v4_block {
    uint32_t net; /* host byte order */
    int bits;
};

static const struct v4_block v4_refused[] = {
    {0x00000000, 8},  /* 0.0.0.0/8 "this network" */
    {0x0a000000, 8},  /* 10.0.0.0/8 private */
    {0x64400000, 10}, /* 100.64.0.0/10 shared (CGNAT) */
    {0x7f000000, 8},  /* 127.0.0.0/8 loopback */
    {0xa9fe0000, 16}, /* 169.254.0.0/16 link-local */
    {0xac100000, 12}, /* 172.16.0.0/12 private */
    {0xc0000000, 24}, /* 192.0.0.0/24 IETF protocol assignments */
    {0xc0000200, 24}, /* 192.0.2.0/24 documentation (TEST-NET-1) */
    {0xc0586300, 24}, /* 192.88.99.0/24 6to4 relay anycast (deprecated) */
    {0xc0a80000, 16}, /* 192.168.0.0/16 private */
    {0xc6120000, 15}, /* 198.18.0.0/15 benchmarking */
    {0xc6336400, 24}, /* 198.51.100.0/24 documentation (TEST-NET-2) */
    {0xcb007100, 24}, /* 203.0.113.0/24 documentation (TEST-NET-3) */
    {0xe0000000, 4},  /* 224.0.0.0/4 multicast */
    {0xf0000000, 4},  /* 240.0.0.0/4 reserved */
    {0xffffffff, 32}, /* 255.255.255.255 limited broadcast */
};

/* A in host byte order. */
static bool
ipv4_is_private(uint32_t a)
{
    size_t i;

    for (i = 0; i < sizeof(v4_refused) / sizeof(v4_refused[0]); i++) {
        uint32_t mask = 0xffffffffu << (32 - v4_refused[i].bits);

        if ((a & mask) == v4_refused[i].net) {
            return true;
        }
    }
    return false;
}

/*
 * What an IPv6 block means for a fetch: nothing reachable, or the IPv4
 * host whose address it embeds (then that address decides).
 */
enum v6_kind {
    V6_REFUSE,
    V6_EMBED_LOW32, /* the IPv4 address is the last 32 bits */
    V6_EMBED_6TO4,  /* 2002:AABB:CCDD::/48 carries AA.BB.CC.DD, bits 16-47 */
};

struct v6_block {
    unsigned char net[16];
    int bits;
    enum v6_kind kind;
};

/*
 * The first block that holds the address decides, so the exact ::/128
 * and ::1/128 come before ::/96. Teredo (2001::/32) is refused whole, not
 * decoded: its client address is a NAT's public side, only reachable
 * through a Teredo relay, and the service is all but retired. The
 * local-use NAT64 prefix 64:ff9b:1::/48 is refused whole too: the
 * registry marks it not globally reachable, and RFC 8215 lets each
 * network place the IPv4 address at bits 32, 40, 48, 56 or 96, so no one
 * position can be decoded.
 */
static const struct v6_block v6_blocks[] = {
    {{0}, 128, V6_REFUSE},        /* ::/128 unspecified */
    {{[15] = 1}, 128, V6_REFUSE}, /* ::1/128 loopback */
    {{0}, 96, V6_EMBED_LOW32},    /* ::/96 IPv4-compatible */
    {{[10] = 0xff, [11] = 0xff}, 96, V6_EMBED_LOW32}, /* ::ffff:0:0/96 mapped */
    {{[8] = 0xff, [9] = 0xff}, 96, V6_EMBED_LOW32},   /* ::ffff:0:0:0/96 SIIT */
    {{0, 0x64, 0xff, 0x9b}, 96, V6_EMBED_LOW32},      /* 64:ff9b::/96 NAT64 */
    {{0, 0x64, 0xff, 0x9b, 0, 1}, 48, V6_REFUSE},     /* 64:ff9b:1::/48 */
    {{0x01}, 64, V6_REFUSE},                          /* 100::/64 discard */
    {{0x01, [7] = 1}, 64, V6_REFUSE},                 /* 100:0:0:1::/64 dummy */
    {{0x20, 0x01}, 32, V6_REFUSE},                    /* 2001::/32 Teredo */
    {{0x20, 0x01}, 23, V6_REFUSE},                    /* 2001::/23 IETF */
    {{0x20, 0x01, 0x0d, 0xb8}, 32, V6_REFUSE},        /* 2001:db8::/32 docs */
    {{0x20, 0x02}, 16, V6_EMBED_6TO4},                /* 2002::/16 6to4 */
    {{0x3f, 0xff}, 20, V6_REFUSE},                    /* 3fff::/20 docs */
    {{0x5f, 0x00}, 16, V6_REFUSE},                    /* 5f00::/16 SRv6 SIDs */
    {{0xfc}, 7, V6_REFUSE},        /* fc00::/7 unique local */
    {{0xfe, 0x80}, 10, V6_REFUSE}, /* fe80::/10 link-local */
    {{0xfe, 0xc0}, 10, V6_REFUSE}, /* fec0::/10 site-local */
    {{0xff}, 8, V6_REFUSE},        /* ff00::/8 multicast */
};

static bool
in_v6_block(const unsigned char *a, const struct v6_block *blk)
{
    int whole = blk->bits / 8, rest = blk->bits % 8;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));

    if (memcmp(a, blk->net, (size_t)whole) != 0) {
        return false;
    }
    return rest == 0 || (a[whole] & mask) == blk->net[whole];
}

/* The 4 bytes at B as an IPv4 address in host byte order. */
static uint32_t
ipv4_at(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
           (uint32_t)b[3];
}

static bool
ipv6_is_private(const unsigned char *a)
{
    size_t i;

    for (i = 0; i < sizeof(v6_blocks) / sizeof(v6_blocks[0]); i++) {
        if (!in_v6_block(a, &v6_blocks[i])) {
            continue;
        }
        switch (v6_blocks[i].kind) {
        case V6_REFUSE:
            return true;
        case V6_EMBED_LOW32:
            return ipv4_is_private(ipv4_at(a + 12));
        case V6_EMBED_6TO4:
            return ipv4_is_private(ipv4_at(a + 2));
        }
    }
    return false;
}

/*
 * Names for the loopback addresses: "localhost" and its subdomains (RFC
 * 6761), and the aliases /etc/hosts files of Debian and Red Hat give
 * them, which a fetcher's resolver may honour.
 */
static bool
name_is_loopback(const char *name, size_t len)
{
    static const char *const aliases[] = {
        "localhost",     "localhost.localdomain",
        "localhost4",    "localhost4.localdomain4",
        "localhost6",    "localhost6.localdomain6",
        "ip6-localhost", "ip6-loopback",
        "ip6-localnet",  "ip6-mcastprefix",
        "ip6-allnodes",  "ip6-allrouters",
    };
    static const char suffix[] = ".localhost";
    size_t slen = sizeof(suffix) - 1, i;

    for (i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
        if (len == strlen(aliases[i]) &&
            strncasecmp(name, aliases[i], len) == 0) {
            return true;
        }
    }
    return len > slen && strncasecmp(name + len - slen, suffix, slen) == 0;
}

/*
 * True when the last label of NAME is a number: decimal digits, or "0x"
 * and hex digits (the WHATWG URL standard's "ends in a number"). No DNS
 * name has a numeric top-level label; such a host is an IPv4 address in
 * some form.
 */
static bool
ends_in_number(const char *name, size_t len)
{
    size_t start = len, i;
    bool hex;

    while (start > 0 && name[start - 1] != '.') {
        start--;
    }
    hex = len - start >= 2 && name[start] == '0' &&
          (name[start + 1] == 'x' || name[start + 1] == 'X');
    for (i = start + (hex ? 2 : 0); i < len; i++) {
        char c = name[i];
        bool digit = c >= '0' && c <= '9';
        bool letter = (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');

        if (!(digit || (hex && letter))) {
            return false;
        }
    }
    return hex || len > start;
}

/* The bracketed part of "[...]": fails closed when it is no address. */
static bool
ipv6_literal_is_private(const char *s, size_t len)
{
    char buf[IP_LITERAL_MAX];
    struct in6_addr a6;

    if (len >= sizeof(buf)) {
        return true;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(AF_INET6, buf, &a6) != 1 || ipv6_is_private(a6.s6_addr);
}

/*
 * A host that ends in a number must be a dotted quad in canonical
 * decimal (what inet_pton takes). The classic forms "127.1",
 * "0x7f.0.0.1", "2130706433" and "0177.0.0.1" are refused whatever they
 * mean, because fetchers do not agree on it: inet_aton (and so
 * getaddrinfo) reads "010.0.0.1" as 8.0.0.1, parsers that take leading
 * zeros as decimal (Go before 1.17, Python before 3.9.5) as 10.0.0.1,
 * and some wrap numbers past 2^32. Checking one reading would let the
 * others through.
 */
static bool
numeric_host_is_private(const char *s, size_t len)
{
    char buf[INET_ADDRSTRLEN];
    struct in_addr a4;

    if (len >= sizeof(buf)) {
        return true;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(AF_INET, buf, &a4) != 1 ||
           ipv4_is_private(ntohl(a4.s_addr));
}

/*
 * HOST as the parser returns it (IPv6 in brackets), or bare. A NULL or
 * empty host fails closed. Trailing dots are dropped ("localhost..",
 * "127.0.0.1."): resolvers ignore them. Names that merely resolve to a
 * private address are not caught; that needs DNS, which this check does
 * not do.
 */
bool
agw_host_is_private(const char *host)
{
    size_t len;

    if (host == NULL) {
        return true;
    }
    len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        return ipv6_literal_is_private(host + 1, len - 2);
    }
    if (memchr(host, ':', len) != NULL) {
        return ipv6_literal_is_private(host, len); /* a bare IPv6 literal */
    }
    while (len > 0 && host[len - 1] == '.') {
        len--;
    }
    if (len == 0 || name_is_loopback(host, len)) {
        return true;
    }
    return ends_in_number(host, len) && numeric_host_is_private(host, len);
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

        if (in[i] != '%' ||
            (hi = agw_hex_value((unsigned char)in[i + 1])) < 0 ||
            (lo = agw_hex_value((unsigned char)in[i + 2])) < 0) {
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
