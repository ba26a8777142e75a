/*
 * test_uri.c - source URI checks (every status), the private-host table
 * and RFC 3986 §6.2.2 normalization used by the dedupe key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "uri.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

struct status_case {
    const char *uri;
    enum agw_uri_status want;
};

static void
check_cases(const struct status_case *cases, size_t n, bool allow_private)
{
    size_t i;

    for (i = 0; i < n; i++) {
        char *norm = (char *)0x1; /* must be overwritten with NULL */
        enum agw_uri_status got =
            agw_uri_check(cases[i].uri, allow_private, &norm);

        if (got != cases[i].want) {
            fail_msg("agw_uri_check(\"%s\") = %d, want %d",
                     cases[i].uri != NULL ? cases[i].uri : "(null)", got,
                     cases[i].want);
        }
        if (got == AGW_URI_OK) {
            assert_non_null(norm);
            free(norm);
        } else {
            assert_null(norm);
        }
    }
}

/* "http://example.com/" followed by 'a's, LEN bytes in all. */
static char *
uri_of_len(size_t len)
{
    static const char prefix[] = "http://example.com/";
    char *s = malloc(len + 1);

    assert_non_null(s);
    assert_true(len >= sizeof(prefix) - 1);
    memcpy(s, prefix, sizeof(prefix) - 1);
    memset(s + sizeof(prefix) - 1, 'a', len - (sizeof(prefix) - 1));
    s[len] = '\0';
    return s;
}

/* ------------------------------------------------------------ check */

static void
test_check_empty(void **state)
{
    static const struct status_case cases[] = {
        {NULL, AGW_URI_EMPTY},
        {"", AGW_URI_EMPTY},
    };

    (void)state;
    check_cases(cases, N_ELEMS(cases), false);
    check_cases(cases, N_ELEMS(cases), true);
}

static void
test_check_length_limit(void **state)
{
    char *at = uri_of_len(AGW_URI_MAX_LEN);
    char *over = uri_of_len(AGW_URI_MAX_LEN + 1);
    char *huge = uri_of_len(100000);
    char *norm = NULL;

    (void)state;
    assert_int_equal(AGW_URI_MAX_LEN, 2048);
    assert_int_equal(strlen(at), 2048);
    assert_int_equal(agw_uri_check(at, false, &norm), AGW_URI_OK);
    assert_string_equal(norm, at); /* already normal */
    free(norm);
    assert_int_equal(agw_uri_check(over, false, &norm), AGW_URI_TOO_LONG);
    assert_null(norm);
    assert_int_equal(agw_uri_check(huge, true, NULL), AGW_URI_TOO_LONG);
    free(at);
    free(over);
    free(huge);
}

static void
test_check_malformed(void **state)
{
    static const struct status_case cases[] = {
        {"example.com/a.png", AGW_URI_MALFORMED},   /* no scheme */
        {"//example.com/a.png", AGW_URI_MALFORMED}, /* network-path ref */
        {"/a.png", AGW_URI_MALFORMED},
        {"http://exa mple.com/", AGW_URI_MALFORMED},
        {"http://example.com/a b", AGW_URI_MALFORMED},
        {" http://example.com/", AGW_URI_MALFORMED},
        {"http://example.com/ ", AGW_URI_MALFORMED},
        {"http://example.com/\t", AGW_URI_MALFORMED},
        {"http://example.com/\r\nX-Injected: 1", AGW_URI_MALFORMED},
        {"http://example.com/?q=\x01", AGW_URI_MALFORMED},
        {"http://example.com/#\x1f", AGW_URI_MALFORMED},
        {"http://example.com/\x7f", AGW_URI_MALFORMED},
        {"http://example.com/caf\xc3\xa9", AGW_URI_MALFORMED}, /* raw UTF-8 */
        {"http://example.com/%zz", AGW_URI_MALFORMED},
        {"http://example.com/%4", AGW_URI_MALFORMED},
        {"http://example.com/a|b", AGW_URI_MALFORMED},
        {"http://example.com\\@127.0.0.1/", AGW_URI_MALFORMED},
        {"http://a@b@example.com/", AGW_URI_MALFORMED},
        {"http://[::1/", AGW_URI_MALFORMED},
        {"http://[::1]x/", AGW_URI_MALFORMED},
        {"http://[v1.fe]/", AGW_URI_MALFORMED},          /* IPvFuture */
        {"http://[2001:db8::zz]/", AGW_URI_MALFORMED},   /* not IPv6 */
        {"http://[fe80::1%25eth0]/", AGW_URI_MALFORMED}, /* zone id */
        {"http://%31%32%37.0.0.1/", AGW_URI_MALFORMED},  /* % in host */
        {"http://ex%41mple.com/", AGW_URI_MALFORMED},
        {"http://example.com:0/", AGW_URI_MALFORMED},
        {"http://example.com:65536/", AGW_URI_MALFORMED},
        {"http://example.com:8o/", AGW_URI_MALFORMED},
        {"http://example.com:80:81/", AGW_URI_MALFORMED},
    };

    (void)state;
    check_cases(cases, N_ELEMS(cases), false);
    check_cases(cases, N_ELEMS(cases), true);
}

static void
test_check_bad_scheme(void **state)
{
    static const struct status_case cases[] = {
        {"ftp://example.com/a.png", AGW_URI_BAD_SCHEME},
        {"file:///etc/passwd", AGW_URI_BAD_SCHEME},
        {"gopher://example.com:70/", AGW_URI_BAD_SCHEME},
        {"mailto:someone@example.com", AGW_URI_BAD_SCHEME},
        {"javascript:alert(1)", AGW_URI_BAD_SCHEME},
        {"httpx://example.com/", AGW_URI_BAD_SCHEME},
        {"htt://example.com/", AGW_URI_BAD_SCHEME},
        {"ws://example.com/", AGW_URI_BAD_SCHEME},
        {"data:text/plain,hi", AGW_URI_BAD_SCHEME},
    };

    (void)state;
    check_cases(cases, N_ELEMS(cases), false);
    check_cases(cases, N_ELEMS(cases), true);
}

static void
test_check_no_host(void **state)
{
    static const struct status_case cases[] = {
        {"http:///a.png", AGW_URI_NO_HOST},
        {"https://:443/a.png", AGW_URI_NO_HOST},
        {"http://user@/a.png", AGW_URI_NO_HOST},
        {"http:a.png", AGW_URI_NO_HOST},
        {"https:", AGW_URI_NO_HOST},
    };

    (void)state;
    check_cases(cases, N_ELEMS(cases), false);
    check_cases(cases, N_ELEMS(cases), true);
}

/* Refused without allow_private_sources, accepted with it (issue #11). */
static const char *const private_uris[] = {
    "http://127.0.0.1/a.png",
    "http://localhost:8080/a.png",
    "https://LocalHost./a.png",
    "http://[::1]:8080/a.png",
    "http://[::ffff:10.1.2.3]/a.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://user:pw@192.168.0.1:8443/",
    "http://[2002:7f00:1::]/",      /* 6to4 of 127.0.0.1 */
    "http://[64:ff9b:1::7f00:1]/",  /* RFC 8215 local-use NAT64 */
    "http://[64:ff9b::127.0.0.1]/", /* NAT64 */
    "http://[::ffff:0:127.0.0.1]/", /* SIIT translated */
    "http://[::127.0.0.1]/",        /* IPv4-compatible */
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", /* Teredo */
    "http://[2001:db8::1]:8080/",
    "http://192.0.0.1/",
    "http://198.18.0.1/",
    "http://198.51.100.7/",
    "http://localhost.localdomain/",
    "http://ip6-localhost/",
    "http://IP6-Loopback./",
    "http://localhost../",
    "http://a.localhost.../",
    "http://127.1/",
    "http://0x7f.0.0.1/",
    "http://017700000001/",
    "http://010.0.0.1/", /* 8.0.0.1 to inet_aton, 10.0.0.1 to others */
};

static void
test_check_private_host(void **state)
{
    size_t i, wrong = 0;

    (void)state;
    for (i = 0; i < N_ELEMS(private_uris); i++) {
        const char *uri = private_uris[i];
        enum agw_uri_status refused = agw_uri_check(uri, false, NULL);
        enum agw_uri_status allowed = agw_uri_check(uri, true, NULL);

        if (refused != AGW_URI_PRIVATE_HOST || allowed != AGW_URI_OK) {
            print_error("%s: %d without allow_private, %d with it; want %d, "
                        "%d\n",
                        uri, refused, allowed, AGW_URI_PRIVATE_HOST,
                        AGW_URI_OK);
            wrong++;
        }
    }
    assert_int_equal(wrong, 0);
}

/* The userinfo is not the host: "127.0.0.1:80@example.com" is public. */
static void
test_check_ok(void **state)
{
    static const struct status_case cases[] = {
        {"https://example.com/images/product-photo.png", AGW_URI_OK},
        {"http://example.com", AGW_URI_OK},
        {"HTTP://EXAMPLE.COM/", AGW_URI_OK},
        {"HtTpS://example.com:8443/a?b=c#d", AGW_URI_OK},
        {"http://127.0.0.1:80@example.com/", AGW_URI_OK},
        {"http://example.com#@127.0.0.1/", AGW_URI_OK},
        {"http://example.com/?next=http://127.0.0.1/", AGW_URI_OK},
        {"http://8.8.8.8/", AGW_URI_OK},
        {"http://[2606:4700:4700::1111]:8080/", AGW_URI_OK},
        {"http://[2002:808:808::1]/", AGW_URI_OK},  /* 6to4 of 8.8.8.8 */
        {"http://[64:ff9b::8.8.8.8]/", AGW_URI_OK}, /* NAT64 of 8.8.8.8 */
        {"http://[::ffff:8.8.8.8]/", AGW_URI_OK},   /* mapped 8.8.8.8 */
        {"http://192.31.196.1/", AGW_URI_OK},       /* AS112: reachable */
        {"http://1e100.net/", AGW_URI_OK},
        {"http://8.8.8.8./", AGW_URI_OK},
        {"http://example.com:65535/", AGW_URI_OK},
        {"http://example.com:/a", AGW_URI_OK},
        {"http://example.com/%E2%82%AC", AGW_URI_OK},
    };

    (void)state;
    check_cases(cases, N_ELEMS(cases), false);
}

static void
test_check_returns_normalized(void **state)
{
    char *norm = NULL;

    (void)state;
    assert_int_equal(
        agw_uri_check("HTTPS://Example.COM:443/a%7e?x=%2f#frag", false, &norm),
        AGW_URI_OK);
    assert_string_equal(norm, "https://example.com/a~?x=%2F");
    free(norm);
    /* A NULL out-pointer is allowed. */
    assert_int_equal(agw_uri_check("http://example.com/", false, NULL),
                     AGW_URI_OK);
}

static void
test_status_text(void **state)
{
    static const enum agw_uri_status all[] = {
        AGW_URI_EMPTY,      AGW_URI_TOO_LONG, AGW_URI_MALFORMED,
        AGW_URI_BAD_SCHEME, AGW_URI_NO_HOST,  AGW_URI_PRIVATE_HOST,
    };
    size_t i, j;

    (void)state;
    assert_string_equal(agw_uri_status_text(AGW_URI_EMPTY), "is required");
    assert_string_equal(agw_uri_status_text(AGW_URI_TOO_LONG),
                        "must be at most 2048 bytes");
    assert_string_equal(agw_uri_status_text(AGW_URI_MALFORMED),
                        "must be an absolute http or https URL");
    assert_string_equal(agw_uri_status_text(AGW_URI_BAD_SCHEME),
                        "must use http or https");
    assert_string_equal(agw_uri_status_text(AGW_URI_NO_HOST),
                        "must have a host");
    assert_non_null(strstr(agw_uri_status_text(AGW_URI_PRIVATE_HOST),
                           "Connectly cannot fetch it"));
    /* Every failure has its own text. */
    for (i = 0; i < N_ELEMS(all); i++) {
        for (j = i + 1; j < N_ELEMS(all); j++) {
            assert_string_not_equal(agw_uri_status_text(all[i]),
                                    agw_uri_status_text(all[j]));
        }
    }
}

/* ---------------------------------------------------------- private */

struct host_case {
    const char *host;
    bool is_private;
};

/*
 * Every row of uri.c's two tables with addresses at both ends inside and
 * just outside (an outside neighbour may fall in another row: then it is
 * refused for that row's reason, noted beside it).
 */
static const struct host_case ipv4_cases[] = {
    {"0.0.0.0", true}, /* 0.0.0.0/8 */
    {"0.255.255.255", true},
    {"1.0.0.0", false},
    {"9.255.255.255", false}, /* 10.0.0.0/8 */
    {"10.0.0.0", true},
    {"10.255.255.255", true},
    {"11.0.0.0", false},
    {"100.63.255.255", false}, /* 100.64.0.0/10 */
    {"100.64.0.0", true},
    {"100.127.255.255", true},
    {"100.128.0.0", false},
    {"126.255.255.255", false}, /* 127.0.0.0/8 */
    {"127.0.0.0", true},
    {"127.0.0.1", true},
    {"127.255.255.255", true},
    {"128.0.0.0", false},
    {"169.253.255.255", false}, /* 169.254.0.0/16 */
    {"169.254.0.0", true},
    {"169.254.169.254", true},
    {"169.254.255.255", true},
    {"169.255.0.0", false},
    {"172.15.255.255", false}, /* 172.16.0.0/12 */
    {"172.16.0.0", true},
    {"172.31.255.255", true},
    {"172.32.0.0", false},
    {"191.255.255.255", false}, /* 192.0.0.0/24 */
    {"192.0.0.0", true},
    {"192.0.0.9", true},  /* PCP anycast: reachable, refused with the /24 */
    {"192.0.0.10", true}, /* TURN anycast: likewise */
    {"192.0.0.255", true},
    {"192.0.1.0", false},
    {"192.0.1.255", false}, /* 192.0.2.0/24 */
    {"192.0.2.0", true},
    {"192.0.2.255", true},
    {"192.0.3.0", false},
    {"192.88.98.255", false}, /* 192.88.99.0/24 */
    {"192.88.99.0", true},
    {"192.88.99.255", true},
    {"192.88.100.0", false},
    {"192.167.255.255", false}, /* 192.168.0.0/16 */
    {"192.168.0.0", true},
    {"192.168.255.255", true},
    {"192.169.0.0", false},
    {"198.17.255.255", false}, /* 198.18.0.0/15 */
    {"198.18.0.0", true},
    {"198.19.255.255", true},
    {"198.20.0.0", false},
    {"198.51.99.255", false}, /* 198.51.100.0/24 */
    {"198.51.100.0", true},
    {"198.51.100.255", true},
    {"198.51.101.0", false},
    {"203.0.112.255", false}, /* 203.0.113.0/24 */
    {"203.0.113.0", true},
    {"203.0.113.255", true},
    {"203.0.114.0", false},
    {"223.255.255.255", false}, /* 224.0.0.0/4 */
    {"224.0.0.0", true},
    {"239.255.255.255", true},
    {"240.0.0.0", true}, /* 240.0.0.0/4 */
    {"255.255.255.254", true},
    {"255.255.255.255", true}, /* broadcast */
    /* globally reachable registry entries */
    {"192.31.196.1", false},
    {"192.52.193.1", false},
    {"192.175.48.1", false},
    {"8.8.8.8", false},
    {"1.1.1.1", false},
    /* trailing dots */
    {"127.0.0.1.", true},
    {"127.0.0.1..", true},
    {"8.8.8.8.", false},
    {"8.8.8.8..", false},
};

/* Hosts that end in a number but are no canonical dotted quad. */
static const struct host_case numeric_cases[] = {
    {"2130706433", true},   /* 127.0.0.1 */
    {"0177.0.0.1", true},   /* octal */
    {"017700000001", true}, /* octal, one number */
    {"0x7f.0.0.1", true},   /* hex */
    {"0X7F.1", true},
    {"0x7F000001", true},
    {"127.1", true}, /* a.b form */
    {"127.1.", true},
    {"127.0.1", true},
    {"012.1.2.3", true},  /* octal 10.1.2.3 */
    {"010.0.0.1", true},  /* 8.0.0.1 or 10.0.0.1, by whom you ask */
    {"3232235777", true}, /* 192.168.1.1 */
    {"134744072", true},  /* 8.8.8.8: refused too, fetchers disagree */
    {"08.8.8.8", true},
    {"8.8.8.010", true},
    {"4294967296", true}, /* wraps to 0.0.0.0 in some parsers */
    {"6425673729", true}, /* wraps to 127.0.0.1 */
    {"8.8.8.8.8", true},
    {"256.0.0.1", true},
    {"example.123", true},
    {"1.2.3.0x", true},
    {"0x", true},
    /* the last label is a name */
    {"1e100.net", false},
    {"123.example", false},
    {"0x7f.example", false},
    {"1.2.3.4a", false},
    {"0xg", false},
    {"a1", false},
};

static const struct host_case name_cases[] = {
    {"localhost", true},
    {"LOCALHOST", true},
    {"localhost.", true},
    {"localhost..", true},
    {"localhost...", true},
    {"LocalHost.", true},
    {"foo.localhost", true},
    {"a.b.LOCALHOST.", true},
    {"x.localhost..", true},
    {"localhost.localdomain", true},
    {"LOCALHOST.LocalDomain.", true},
    {"localhost.localdomain..", true},
    {"ip6-localhost", true},
    {"IP6-LOCALHOST.", true},
    {"ip6-loopback", true},
    {"ip6-loopback..", true},
    {"localhost4", true},
    {"localhost4.localdomain4", true},
    {"localhost6", true},
    {"Localhost6.Localdomain6.", true},
    {"ip6-localnet", true},
    {"ip6-mcastprefix", true},
    {"ip6-allnodes", true},
    {"ip6-allrouters", true},
    {".", true},
    {"..", true},
    {"localhost.example.com", false},
    {"mylocalhost", false},
    {"localhostx", false},
    {"notlocalhost.", false},
    {"localdomain", false},
    {"localhost.localdomain.example", false},
    {"x.localhost.localdomain", false},
    {"ip6-localhostx", false},
    {"xip6-loopback", false},
    {"localhost4.example", false},
    {"example.com", false},
    {"EXAMPLE.COM.", false},
    {"EXAMPLE.COM..", false},
};

static const struct host_case ipv6_cases[] = {
    {"[::]", true}, /* ::/128 */
    {"::", true},
    {"[::1]", true}, /* ::1/128 */
    {"::1", true},
    {"[0:0:0:0:0:0:0:1]", true},
    /* ::/96 IPv4-compatible: the embedded address decides */
    {"[::127.0.0.1]", true},
    {"[::10.1.2.3]", true},
    {"[::0.0.0.2]", true}, /* 0.0.0.0/8 */
    {"[::8.8.8.8]", false},
    {"[::1:0:0]", false}, /* just outside */
    /* ::ffff:0:0/96 mapped */
    {"[::ffff:127.0.0.1]", true},
    {"[::ffff:7f00:1]", true},
    {"[::FFFF:10.0.0.1]", true},
    {"::ffff:192.168.0.1", true},
    {"[::ffff:169.254.169.254]", true},
    {"[::ffff:100.64.0.1]", true},
    {"[::ffff:198.18.0.1]", true},
    {"[::ffff:203.0.113.9]", true},
    {"[::ffff:0.0.0.0]", true},
    {"[::ffff:8.8.8.8]", false},
    {"[::fffe:7f00:1]", false},   /* just below */
    {"[::1:ffff:7f00:1]", false}, /* just above */
    /* ::ffff:0:0:0/96 SIIT translated */
    {"[::ffff:0:127.0.0.1]", true},
    {"[::ffff:0:a00:1]", true},
    {"[::ffff:0:8.8.8.8]", false},
    {"[::fffe:ffff:7f00:1]", false}, /* just below */
    {"[::ffff:1:7f00:1]", false},    /* just above */
    /* 64:ff9b::/96 NAT64 */
    {"[64:ff9b::7f00:1]", true},
    {"[64:FF9B::10.0.0.1]", true},
    {"[64:ff9b::192.0.2.1]", true},
    {"[64:ff9b::8.8.8.8]", false},
    {"[64:ff9a:ffff:ffff:ffff:ffff:7f00:1]", false}, /* just below */
    {"[64:ff9b::1:7f00:1]", false},                  /* just above */
    /* 64:ff9b:1::/48 local-use NAT64: refused whole */
    {"[64:ff9b:1::7f00:1]", true},
    {"[64:ff9b:1::8.8.8.8]", true},
    {"[64:ff9b:1:ffff:ffff:ffff:ffff:ffff]", true},
    {"[64:ff9b:0:ffff:ffff:ffff:ffff:ffff]", false},
    {"[64:ff9b:2::7f00:1]", false},
    /* 100::/64 discard, 100:0:0:1::/64 dummy */
    {"[100::]", true},
    {"[100::ffff:ffff:ffff:ffff]", true},
    {"[100:0:0:1::]", true},
    {"[100:0:0:1:ffff:ffff:ffff:ffff]", true},
    {"[ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", false},
    {"[100:0:0:2::]", false},
    /* 2001::/32 Teredo, refused whole, inside 2001::/23 */
    {"[2001::]", true},
    {"[2001:0:4136:e378:8000:63bf:3fff:fdd2]", true},
    {"[2001:0:ffff:ffff:ffff:ffff:ffff:ffff]", true},
    {"[2001:1::1]", true}, /* PCP anycast: reachable, refused with the /23 */
    {"[2001:2::1]", true}, /* benchmarking */
    {"[2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff]", true},
    {"[2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", false},
    {"[2001:200::]", false},
    /* 2001:db8::/32 documentation */
    {"[2001:db8::1]", true},
    {"[2001:DB8:ffff:ffff:ffff:ffff:ffff:ffff]", true},
    {"[2001:db7:ffff:ffff:ffff:ffff:ffff:ffff]", false},
    {"[2001:db9::]", false},
    /* 2002::/16 6to4: bits 16-47 decide */
    {"[2002:7f00:1::]", true},
    {"[2002:7f00:0001::1]", true},
    {"[2002:a00:1::1]", true},     /* 10.0.0.1 */
    {"[2002:c000:201::1]", true},  /* 192.0.2.1 */
    {"[2002:c058:6301::1]", true}, /* 192.88.99.1 */
    {"[2002:808:808::1]", false},  /* 8.8.8.8 */
    {"[2002:808:808:ffff:ffff:ffff:ffff:ffff]", false},
    {"[2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", false},
    {"[2003::]", false},
    /* 3fff::/20 documentation */
    {"[3fff::1]", true},
    {"[3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff]", true},
    {"[3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", false},
    {"[3fff:1000::]", false},
    /* 5f00::/16 SRv6 SIDs */
    {"[5f00::1]", true},
    {"[5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", true},
    {"[5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", false},
    {"[5f01::]", false},
    /* fc00::/7 unique local */
    {"[fc00::]", true},
    {"[fd12:3456:789a::1]", true},
    {"[FD00::1]", true},
    {"[fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", true},
    {"[fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", false},
    {"[fe00::]", false},
    /* fe80::/10 link-local, fec0::/10 site-local, ff00::/8 multicast */
    {"[fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", false},
    {"[fe80::]", true},
    {"[FE80::1]", true},
    {"[febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", true},
    {"[fec0::]", true},
    {"[feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", true},
    {"[ff00::]", true},
    {"[ff02::1]", true},
    {"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", true},
    /* globally reachable */
    {"[2606:4700:4700::1111]", false},
    {"2606:4700:4700::1111", false},
    {"[2620:4f:8000::1]", false}, /* AS112 direct delegation */
    {"[2a00:1450:4001::1]", false},
    /* brackets without an address fail closed */
    {"[]", true},
    {"[not-an-address]", true},
    {"[::1%eth0]", true},
    /* nothing to fetch from */
    {"", true},
    {NULL, true},
};

/* Reports every wrong row, not just the first. */
static void
check_hosts(const struct host_case *cases, size_t n)
{
    size_t i, wrong = 0;

    for (i = 0; i < n; i++) {
        bool got = agw_host_is_private(cases[i].host);

        if (got != cases[i].is_private) {
            print_error("agw_host_is_private(\"%s\") = %d, want %d\n",
                        cases[i].host != NULL ? cases[i].host : "(null)", got,
                        cases[i].is_private);
            wrong++;
        }
    }
    assert_int_equal(wrong, 0);
}

static void
test_host_private_table(void **state)
{
    (void)state;
    check_hosts(ipv4_cases, N_ELEMS(ipv4_cases));
    check_hosts(numeric_cases, N_ELEMS(numeric_cases));
    check_hosts(name_cases, N_ELEMS(name_cases));
    check_hosts(ipv6_cases, N_ELEMS(ipv6_cases));
}

/* ------------------------------------------------------- normalize */

struct norm_case {
    const char *in;
    const char *want;
};

static const struct norm_case norm_cases[] = {
    /* scheme and host case; path, query and userinfo case kept */
    {"HTTP://Example.COM/Path/File.PNG", "http://example.com/Path/File.PNG"},
    {"HtTpS://WWW.Example.Com/?Q=A", "https://www.example.com/?Q=A"},
    {"http://User:PW@Example.com/", "http://User:PW@example.com/"},
    /* default ports dropped, others kept */
    {"http://example.com:80/a", "http://example.com/a"},
    {"https://example.com:443/a", "https://example.com/a"},
    {"http://example.com:443/a", "http://example.com:443/a"},
    {"https://example.com:80/a", "https://example.com:80/a"},
    {"http://example.com:8080/a", "http://example.com:8080/a"},
    {"http://example.com:080/a", "http://example.com/a"},
    {"http://example.com:08080/a", "http://example.com:8080/a"},
    {"http://example.com:/a", "http://example.com/a"},
    {"HTTPS://EXAMPLE.COM:443", "https://example.com"},
    /* fragment dropped */
    {"http://example.com/a#frag", "http://example.com/a"},
    {"http://example.com/a#", "http://example.com/a"},
    {"http://example.com/a?b#c", "http://example.com/a?b"},
    /* unreserved decoded, either case of hex */
    {"http://example.com/%7e", "http://example.com/~"},
    {"http://example.com/%7E", "http://example.com/~"},
    {"http://example.com/%41%5a%61%7a", "http://example.com/AZaz"},
    {"http://example.com/%30%39%2D%2e%5F", "http://example.com/09-._"},
    /* reserved and other bytes stay encoded, hex upper-cased */
    {"http://example.com/a%2fb", "http://example.com/a%2Fb"},
    {"http://example.com/a%2Fb", "http://example.com/a%2Fb"},
    {"http://example.com/%e2%82%ac", "http://example.com/%E2%82%AC"},
    {"http://example.com/%20%3a%3F%23", "http://example.com/%20%3A%3F%23"},
    {"http://example.com/%25", "http://example.com/%25"},
    {"http://example.com/%2541", "http://example.com/%2541"}, /* once */
    {"http://example.com/%257e", "http://example.com/%257e"},
    /* the query: same rules, otherwise untouched (order, +, case) */
    {"http://example.com/p?b=%7e&a=%2f&c=1",
     "http://example.com/p?b=~&a=%2F&c=1"},
    {"http://example.com/p?q=a+b&Z=%5a", "http://example.com/p?q=a+b&Z=Z"},
    {"http://example.com/p?x=http://a/b?c",
     "http://example.com/p?x=http://a/b?c"},
    /* an empty query is not no query; no "/" added to an empty path */
    {"http://example.com/p?", "http://example.com/p?"},
    {"http://example.com?", "http://example.com?"},
    {"http://example.com", "http://example.com"},
    /* dot segments and repeated slashes kept */
    {"http://example.com/a/../b/./c", "http://example.com/a/../b/./c"},
    {"http://example.com//a//b/", "http://example.com//a//b/"},
    /* userinfo */
    {"http://User%7e:P%2fw@Example.com/", "http://User~:P%2Fw@example.com/"},
    {"http://@example.com/", "http://@example.com/"},
    /* IPv6 host lower-cased, brackets kept */
    {"http://[FE80::AB]:8080/x", "http://[fe80::ab]:8080/x"},
    {"http://[2001:DB8::1]:80/", "http://[2001:db8::1]/"},
    {"https://[2001:DB8::A]:443/", "https://[2001:db8::a]/"},
    /* a trailing dot is a different name to TLS; kept */
    {"http://Example.COM./", "http://example.com./"},
};

static void
test_normalize_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(norm_cases); i++) {
        char *got = agw_uri_normalize(norm_cases[i].in);

        if (got == NULL || strcmp(got, norm_cases[i].want) != 0) {
            fail_msg("normalize(\"%s\") = \"%s\", want \"%s\"",
                     norm_cases[i].in, got != NULL ? got : "(null)",
                     norm_cases[i].want);
        }
        free(got);
    }
}

static void
test_normalize_idempotent(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(norm_cases); i++) {
        char *once = agw_uri_normalize(norm_cases[i].in);
        char *twice = agw_uri_normalize(once);

        assert_non_null(once);
        assert_non_null(twice);
        assert_string_equal(once, twice);
        free(once);
        free(twice);
    }
}

static void
test_normalize_distinct(void **state)
{
    /* pairs that must NOT normalize to the same string */
    static const char *const pairs[][2] = {
        {"http://example.com/a", "http://example.com/A"},
        {"http://example.com/a", "https://example.com/a"},
        {"http://example.com/a", "http://example.com:8080/a"},
        {"http://example.com/a", "http://example.com/a?"},
        {"http://example.com/a", "http://example.com/a/"},
        {"http://example.com", "http://example.com/"},
        {"http://example.com/a%2Fb", "http://example.com/a/b"},
        {"http://example.com/?a=1&b=2", "http://example.com/?b=2&a=1"},
        {"http://u@example.com/", "http://example.com/"},
        {"http://example.com/b", "http://example.com/a/../b"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(pairs); i++) {
        char *a = agw_uri_normalize(pairs[i][0]);
        char *b = agw_uri_normalize(pairs[i][1]);

        assert_non_null(a);
        assert_non_null(b);
        if (strcmp(a, b) == 0) {
            fail_msg("\"%s\" and \"%s\" both normalize to \"%s\"", pairs[i][0],
                     pairs[i][1], a);
        }
        free(a);
        free(b);
    }
}

/* The check normalizes from the parse it checked: the same result. */
static void
test_check_normalizes_like_normalize(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(norm_cases); i++) {
        char *norm = NULL;

        if (agw_uri_check(norm_cases[i].in, true, &norm) != AGW_URI_OK) {
            continue; /* e.g. a port the check refuses */
        }
        assert_non_null(norm);
        assert_string_equal(norm, norm_cases[i].want);
        free(norm);
    }
}

static void
test_normalize_unparseable(void **state)
{
    (void)state;
    assert_null(agw_uri_normalize(NULL));
    assert_null(agw_uri_normalize("http://exa mple.com/"));
    assert_null(agw_uri_normalize("http://example.com/%zz"));
    assert_null(agw_uri_normalize("http://[::1/"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_empty),
        cmocka_unit_test(test_check_length_limit),
        cmocka_unit_test(test_check_malformed),
        cmocka_unit_test(test_check_bad_scheme),
        cmocka_unit_test(test_check_no_host),
        cmocka_unit_test(test_check_private_host),
        cmocka_unit_test(test_check_ok),
        cmocka_unit_test(test_check_returns_normalized),
        cmocka_unit_test(test_status_text),
        cmocka_unit_test(test_host_private_table),
        cmocka_unit_test(test_normalize_table),
        cmocka_unit_test(test_normalize_idempotent),
        cmocka_unit_test(test_normalize_distinct),
        cmocka_unit_test(test_normalize_unparseable),
        cmocka_unit_test(test_check_normalizes_like_normalize),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
