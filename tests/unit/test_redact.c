/*
 * test_redact.c - secrets taken out of bodies (SPEC §8): every
 * occurrence, overlapping ones, several secrets, binary bodies, and no
 * allocation when there is nothing to take out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "redact.h"

/* Redacts BODY (a C string) with SECRETS; the result, or NULL when
 * nothing was found. */
static char *
run(const char *body, const char *const *secrets, size_t n, size_t *len)
{
    char *out = NULL;
    int rc = agw_redact(body, strlen(body), secrets, n, &out, len);

    assert_int_not_equal(rc, -1);
    if (rc == 0) {
        assert_null(out);
        return NULL;
    }
    assert_non_null(out);
    assert_int_equal(strlen(out), *len);
    return out;
}

static void
test_none(void **state)
{
    const char *keys[] = {"sekret-key-1"};
    size_t len = 99;

    assert_null(run("{\"asset\":{\"id\":\"x\"}}", keys, 1, &len));
    assert_int_equal(len, 99); /* untouched */
    assert_null(run("", keys, 1, &len));
    assert_null(run("sekret-key", keys, 1, &len)); /* a prefix only */
}

static void
test_every_occurrence(void **state)
{
    const char *keys[] = {"K3y-abc"};
    size_t len;
    char *out = run("{\"m\":\"K3y-abc\",\"again\":\"xK3y-abcK3y-abcy\"}", keys,
                    1, &len);

    assert_string_equal(out,
                        "{\"m\":\"[REDACTED]\",\"again\":\"x[REDACTED]y\"}");
    free(out);
    out = run("K3y-abc", keys, 1, &len);
    assert_string_equal(out, "[REDACTED]");
    free(out);
}

static void
test_overlaps(void **state)
{
    const char *same[] = {"abab"};
    const char *two[] = {"abcd", "cdef"};
    size_t len;
    char *out;

    out = run("xababab-y", same, 1, &len); /* "abab" at 1 and 3 */
    assert_string_equal(out, "x[REDACTED]-y");
    free(out);
    out = run("<abcdef>", two, 2, &len);
    assert_string_equal(out, "<[REDACTED]>");
    free(out);
    /* Order of the secrets does not matter. */
    out = run("<abcdef>", (const char *[]){"cdef", "abcd"}, 2, &len);
    assert_string_equal(out, "<[REDACTED]>");
    free(out);
}

static void
test_several_secrets(void **state)
{
    const char *keys[] = {"old-key-111", NULL, "", "new-key-222"};
    size_t len;
    char *out = run("a old-key-111 b new-key-222 c", keys, 4, &len);

    assert_string_equal(out, "a [REDACTED] b [REDACTED] c");
    free(out);
}

static void
test_binary(void **state)
{
    const char body[] = {'\0', 'k', 'e', 'y', '9', '\0', 'z'};
    const char *keys[] = {"key9"};
    char *out = NULL;
    size_t len = 0;

    assert_int_equal(agw_redact(body, sizeof(body), keys, 1, &out, &len), 1);
    assert_int_equal(len, 2 + strlen(AGW_REDACTED) + 1);
    assert_memory_equal(out, "\0[REDACTED]\0z", len);
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_every_occurrence),
        cmocka_unit_test(test_overlaps),
        cmocka_unit_test(test_several_secrets),
        cmocka_unit_test(test_binary),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
