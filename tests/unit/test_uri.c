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

static void
test_check_private_host(void **state)
{
    static const struct status_case refused[] = {
        {"http://127.0.0.1/a.png", AGW_URI_PRIVATE_HOST},
        {"http://localhost:8080/a.png", AGW_URI_PRIVATE_HOST},
        {"https://LocalHost./a.png", AGW_URI_PRIVATE_HOST},
        {"http://[::1]:8080/a.png", AGW_URI_PRIVATE_HOST},
        {"http://[::ffff:10.1.2.3]/a.png", AGW_URI_PRIVATE_HOST},
        {"http://169.254.169.254/latest/meta-data/", AGW_URI_PRIVATE_HOST},
        {"http://2130706433/", AGW_URI_PRIVATE_HOST},
        {"http://0177.0.0.1/", AGW_URI_PRIVATE_HOST},
        {"http://user:pw@192.168.0.1:8443/", AGW_URI_PRIVATE_HOST},
    };
    static const struct status_case allowed[] = {
        {"http://127.0.0.1/a.png", AGW_URI_OK},
        {"http://localhost:8080/a.png", AGW_URI_OK},
        {"https://LocalHost./a.png", AGW_URI_OK},
        {"http://[::1]:8080/a.png", AGW_URI_OK},
        {"http://[::ffff:10.1.2.3]/a.png", AGW_URI_OK},
        {"http://169.254.169.254/latest/meta-data/", AGW_URI_OK},
        {"http://2130706433/", AGW_URI_OK},
        {"http://0177.0.0.1/", AGW_URI_OK},
        {"http://user:pw@192.168.0.1:8443/", AGW_URI_OK},
    };

    (void)state;
    check_cases(refused, N_ELEMS(refused), false);
    check_cases(allowed, N_ELEMS(allowed), true);
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
        {"http://[2001:db8::1]:8080/", AGW_URI_OK},
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

static void
test_host_private_table(void **state)
{
    static const struct host_case cases[] = {
        /* localhost names, any case, trailing dot */
        {"localhost", true},
        {"LOCALHOST", true},
        {"localhost.", true},
        {"LocalHost.", true},
        {"foo.localhost", true},
        {"a.b.LOCALHOST.", true},
        {"localhost.example.com", false},
        {"mylocalhost", false},
        {"localhostx", false},
        {"notlocalhost.", false},
        {"example.com", false},
        {"EXAMPLE.COM.", false},
        /* IPv4 ranges and their edges */
        {"0.0.0.0", true},
        {"0.1.2.3", true},
        {"1.0.0.0", false},
        {"9.255.255.255", false},
        {"10.0.0.1", true},
        {"10.255.255.255", true},
        {"11.0.0.0", false},
        {"100.63.255.255", false},
        {"100.64.0.1", true},
        {"100.127.255.255", true},
        {"100.128.0.0", false},
        {"126.255.255.255", false},
        {"127.0.0.1", true},
        {"127.255.255.254", true},
        {"128.0.0.0", false},
        {"169.253.255.255", false},
        {"169.254.169.254", true},
        {"169.255.0.0", false},
        {"172.15.255.255", false},
        {"172.16.0.1", true},
        {"172.31.255.255", true},
        {"172.32.0.0", false},
        {"192.167.255.255", false},
        {"192.168.1.1", true},
        {"192.169.0.0", false},
        {"223.255.255.255", false},
        {"224.0.0.1", true},
        {"239.255.255.250", true},
        {"240.0.0.1", true},
        {"255.255.255.255", true},
        {"8.8.8.8", false},
        {"1.1.1.1", false},
        {"127.0.0.1.", true},
        /* forms inet_aton and resolvers accept */
        {"2130706433", true}, /* 127.0.0.1 */
        {"0177.0.0.1", true}, /* octal */
        {"0x7f.0.0.1", true}, /* hex */
        {"0x7F000001", true},
        {"127.1", true},       /* a.b form */
        {"012.1.2.3", true},   /* octal 10.1.2.3 */
        {"3232235777", true},  /* 192.168.1.1 */
        {"134744072", false},  /* 8.8.8.8 */
        {"4294967296", false}, /* too big: a name, not an address */
        {"1e100.net", false},
        /* IPv6, bracketed as the parser gives them, and bare */
        {"[::1]", true},
        {"::1", true},
        {"[::]", true},
        {"::", true},
        {"[0:0:0:0:0:0:0:1]", true},
        {"[fc00::1]", true},
        {"[fd12:3456:789a::1]", true},
        {"[FD00::1]", true},
        {"[fbff::1]", false},
        {"[fe80::1]", true},
        {"[FE80::1]", true},
        {"[febf:ffff::1]", true},
        {"[fec0::1]", true},
        {"[fe7f::1]", false},
        {"[ff02::1]", true},
        {"[2001:db8::1]", false},
        {"2606:4700:4700::1111", false},
        /* IPv4 inside IPv6 */
        {"[::ffff:127.0.0.1]", true},
        {"[::ffff:7f00:1]", true},
        {"[::FFFF:10.0.0.1]", true},
        {"::ffff:192.168.0.1", true},
        {"[::ffff:169.254.169.254]", true},
        {"[::ffff:100.64.0.1]", true},
        {"[::ffff:8.8.8.8]", false},
        {"[::127.0.0.1]", true},       /* deprecated compatible form */
        {"[64:ff9b::10.0.0.1]", true}, /* NAT64 */
        {"[64:ff9b::8.8.8.8]", false},
        /* nothing to fetch from */
        {"", true},
        {NULL, true},
    };
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(cases); i++) {
        bool got = agw_host_is_private(cases[i].host);

        if (got != cases[i].is_private) {
            fail_msg("agw_host_is_private(\"%s\") = %d, want %d",
                     cases[i].host != NULL ? cases[i].host : "(null)", got,
                     cases[i].is_private);
        }
    }
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
