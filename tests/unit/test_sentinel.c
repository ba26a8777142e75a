/*
 * test_sentinel.c - the [store] sentinels list parser (SPEC §10), shared
 * by -t and the Sentinel client.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sentinel.h"

static struct agw_sentinel_addr list[AGW_SENTINEL_MAX];
static int n;
static char err[256];

static bool
parse(const char *text)
{
    err[0] = '\0';
    return agw_sentinel_parse_list(text, list, &n, err, sizeof(err));
}

static void
test_list(void **state)
{
    assert_true(parse("127.0.0.1:26379, 10.0.0.2:26380,sentinel-3"));
    assert_int_equal(n, 3);
    assert_string_equal(list[0].host, "127.0.0.1");
    assert_int_equal(list[0].port, 26379);
    assert_string_equal(list[1].host, "10.0.0.2");
    assert_int_equal(list[1].port, 26380);
    assert_string_equal(list[2].host, "sentinel-3");
    assert_int_equal(list[2].port, AGW_SENTINEL_DEFAULT_PORT);
}

static void
test_ipv6(void **state)
{
    assert_true(parse("[::1]:5000, [fe80::1]"));
    assert_int_equal(n, 2);
    assert_string_equal(list[0].host, "::1");
    assert_int_equal(list[0].port, 5000);
    assert_string_equal(list[1].host, "fe80::1");
    assert_int_equal(list[1].port, AGW_SENTINEL_DEFAULT_PORT);
}

static void
test_refused(void **state)
{
    const char *bad[] = {"",           " , ",        "host:0",
                         "host:70000", "a:1,,b:2",   "user:pw@host:1",
                         "host:1/0",   "bad host:1", "[::zz]:1",
                         "host:port"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(parse(bad[i]));
        assert_true(err[0] != '\0');
    }
}

static void
test_too_many(void **state)
{
    char text[1024] = "";

    for (int i = 0; i <= AGW_SENTINEL_MAX; i++) {
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "%sh%d:1",
                 i > 0 ? "," : "", i);
    }
    assert_false(parse(text));
    assert_non_null(strstr(err, "more than"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_too_many),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
