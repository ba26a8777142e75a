/*
 * test_auth.c - auth.c against real temp files: every loader error with
 * its FILE:LINE: [caller] key, the mode warnings, and each answer of the
 * Bearer check; no token ever shows up in a message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "log.h"
#include "util.h"

/* Distinctive, so finding them in any message is never a coincidence. */
#define TOKEN_A "tok-A-Qm7SECRETx2Vb9"
#define TOKEN_B "tok-B-Hw4SECRETp8Kd1"
#define TOKEN_C "tok-C-Zr1SECRETn5Tf3"
#define BIZ1 "550e8400-e29b-41d4-a716-446655440000"
#define BIZ2 "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
#define BIZ3 "00000000-0000-4000-8000-000000000003"
#define EMPTY_SHA256                                                           \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static char hash_a[65], hash_b[65], hash_c[65];

static const char *
tmp_dir(void)
{
    const char *dir = getenv("TMPDIR");

    return dir != NULL && dir[0] != '\0' ? dir : "/tmp";
}

/* Writes LEN bytes of TEXT to a new temp file with MODE; path malloc'd. */
static char *
write_temp_bytes(const char *text, size_t len, mode_t mode)
{
    size_t plen = strlen(tmp_dir()) + 32;
    char *path = malloc(plen);
    int fd;

    assert_non_null(path);
    snprintf(path, plen, "%s/agw-auth-XXXXXX", tmp_dir());
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

static char *
write_temp(const char *text)
{
    return write_temp_bytes(text, strlen(text), 0600);
}

static void
remove_temp(char *path)
{
    unlink(path);
    free(path);
}

/* Printf-style file text. */
static char *
fmt(const char *f, ...)
{
    char *out = NULL;
    va_list ap;

    va_start(ap, f);
    assert_true(vasprintf(&out, f, ap) >= 0);
    va_end(ap);
    return out;
}

static struct agw_auth *
load_text(const char *text)
{
    char *path = write_temp(text);
    char err[512];
    struct agw_auth *a = agw_auth_load(path, err, sizeof(err));

    if (a == NULL) {
        fail_msg("load failed: %s", err);
    }
    remove_temp(path);
    return a;
}

/*
 * Loading TEXT fails with "PATH" WHERE (":LINE: [caller] key: ..." or
 * ": ...") at the start of the message, and the rest contains PROBLEM.
 * No token of the tests appears in it.
 */
static void
expect_error(const char *text, const char *where, const char *problem)
{
    char *path = write_temp(text);
    char err[512];
    char *prefix = fmt("%s%s", path, where);
    struct agw_auth *a = agw_auth_load(path, err, sizeof(err));

    if (a != NULL) {
        agw_auth_free(a);
        fail_msg("loaded, expected \"%s\"", problem);
    }
    if (strncmp(err, prefix, strlen(prefix)) != 0 ||
        strstr(err, problem) == NULL) {
        fail_msg("got \"%s\", want \"%s...%s\"", err, prefix, problem);
    }
    assert_null(strstr(err, TOKEN_A));
    assert_null(strstr(err, TOKEN_B));
    free(prefix);
    remove_temp(path);
}

static int
setup_hashes(void **state)
{
    agw_sha256_hex(TOKEN_A, strlen(TOKEN_A), hash_a);
    agw_sha256_hex(TOKEN_B, strlen(TOKEN_B), hash_b);
    agw_sha256_hex(TOKEN_C, strlen(TOKEN_C), hash_c);
    return 0;
}

/* "Bearer TOKEN" */
static const char *
bearer(const char *token)
{
    static char buf[256];

    snprintf(buf, sizeof(buf), "Bearer %s", token);
    return buf;
}

/* The standard table: A for BIZ1 and BIZ2, B for everything, C for BIZ3. */
static struct agw_auth *
load_standard(void)
{
    char *text = fmt("; callers of the gateway\n"
                     "[billing-service]\n"
                     "token_sha256 = %s\n"
                     "businesses = " BIZ1 ", " BIZ2 "\n"
                     "\n"
                     "[ops]\n"
                     "token_sha256 = %s\n"
                     "businesses = *\n"
                     "[reports]\n"
                     "token_sha256 = %s\n"
                     "businesses = " BIZ3 "\n",
                     hash_a, hash_b, hash_c);
    struct agw_auth *a = load_text(text);

    free(text);
    return a;
}

/* ------------------------------------------------------------ loading */

static void
test_load_spec_example(void **state)
{
    struct agw_auth *a = load_standard();

    assert_non_null(a);
    assert_int_equal(agw_auth_count(a), 3);
    agw_auth_free(a);
}

/* Malloc'd upper-case copy of S. */
static char *
upper_dup(const char *s)
{
    char *out = strdup(s);

    assert_non_null(out);
    for (char *p = out; *p != '\0'; p++) {
        if (*p >= 'a' && *p <= 'z') {
            *p = (char)(*p - 'a' + 'A');
        }
    }
    return out;
}

static void
test_load_lenient_syntax(void **state)
{
    /* BOM, CRLF, indented keys, comments, upper-case hex and ids, a list
     * split over two lines, "name: value". */
    char *upper = upper_dup(hash_a);
    char *text = fmt("\xef\xbb\xbf# clients\r\n"
                     "[svc.one_2:x-y] ; trailing comment\r\n"
                     "    token_sha256: %s\r\n"
                     "\tbusinesses = 550E8400-E29B-41D4-A716-446655440000 ; "
                     "one\r\n"
                     "businesses=" BIZ2 "\r\n",
                     upper);
    struct agw_auth *a = load_text(text);
    const char *name = NULL;

    assert_non_null(a);
    assert_int_equal(agw_auth_count(a), 1);
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A), BIZ1, &name),
                     AGW_AUTH_OK);
    assert_string_equal(name, "svc.one_2:x-y");
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A), BIZ2, &name),
                     AGW_AUTH_OK);
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A), BIZ3, &name),
                     AGW_AUTH_FORBIDDEN);
    agw_auth_free(a);
    free(text);
    free(upper);
}

static void
test_unreadable(void **state)
{
    char err[512];
    char dir[] = "/tmp/agw-auth-dir-XXXXXX";

    assert_null(agw_auth_load("/nonexistent/clients", err, sizeof(err)));
    assert_string_equal(err,
                        "/nonexistent/clients: cannot read: No such file or "
                        "directory");
    assert_non_null(mkdtemp(dir));
    assert_null(agw_auth_load(dir, err, sizeof(err)));
    assert_non_null(strstr(err, ": cannot read: not a regular file"));
    assert_int_equal(rmdir(dir), 0);
    /* ERRLEN 0 must not write. */
    assert_null(agw_auth_load("/nonexistent/clients", NULL, 0));
}

static void
test_too_large(void **state)
{
    size_t len = 1024 * 1024 + 1;
    char *big = malloc(len);
    char *path;
    char err[512];

    assert_non_null(big);
    memset(big, '#', len);
    path = write_temp_bytes(big, len, 0600);
    assert_null(agw_auth_load(path, err, sizeof(err)));
    assert_non_null(strstr(err, ": larger than 1048576 bytes"));
    remove_temp(path);
    free(big);
}

static void
test_no_callers(void **state)
{
    expect_error("", ": ", "no callers");
    expect_error("# only a comment\n\n", ": ", "no callers");
}

static void
test_key_outside_section(void **state)
{
    char *text = fmt("token_sha256 = %s\n[a]\n", hash_a);

    expect_error(text, ":1: token_sha256: ", "outside any [caller] section");
    free(text);
}

static void
test_unknown_key(void **state)
{
    char *text = fmt("[a]\ntoken_sha256 = %s\nbusinesses = *\n"
                     "token = " TOKEN_A "\n",
                     hash_a);

    expect_error(text, ":4: [a] token: ", "unknown key");
    free(text);
}

/* SPEC section 11: class and max_rate per caller. */
static void
test_class_and_cap(void **state)
{
    char *text = fmt("[a]\ntoken_sha256 = %s\nbusinesses = *\n"
                     "class = batch\nmax_rate = 20\n"
                     "[b]\ntoken_sha256 = %s\nbusinesses = *\n"
                     "max_rate = 0.5\nclass = interactive\n"
                     "[c]\ntoken_sha256 = %s\nbusinesses = *\n",
                     hash_a, hash_b, hash_c);
    struct agw_auth *a = load_text(text);
    struct agw_caller_policy p;

    assert_true(agw_auth_policy(a, "a", &p));
    assert_true(p.batch);
    assert_true(p.max_rate == 20);
    assert_true(agw_auth_policy(a, "b", &p));
    assert_false(p.batch);
    assert_true(p.max_rate == 0.5);
    assert_true(agw_auth_policy(a, "c", &p));
    assert_false(p.batch);
    assert_true(p.max_rate == 0);
    assert_false(agw_auth_policy(a, "nobody", &p));
    assert_false(p.batch);
    assert_false(agw_auth_policy(NULL, "a", &p));
    agw_auth_free(a);
    free(text);
}

static void
test_class_and_cap_checked(void **state)
{
    static const char *const bad[][3] = {
        {"class = bulk\n", ":4: [a] class: ", "interactive or batch"},
        {"class = batch\nclass = batch\n", ":5: [a] class: ", "duplicate"},
        {"max_rate = 0\n", ":4: [a] max_rate: ", "above 0"},
        {"max_rate = -3\n", ":4: [a] max_rate: ", "above 0"},
        {"max_rate = 5x\n", ":4: [a] max_rate: ", "above 0"},
        {"max_rate = nan\n", ":4: [a] max_rate: ", "above 0"},
        {"max_rate = 2000000\n", ":4: [a] max_rate: ", "at most"},
        {"max_rate = 1\nmax_rate = 2\n", ":5: [a] max_rate: ", "duplicate"},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *text = fmt("[a]\ntoken_sha256 = %s\nbusinesses = *\n%s", hash_a,
                         bad[i][0]);

        expect_error(text, bad[i][1], bad[i][2]);
        free(text);
    }
}

static void
test_bad_hex(void **state)
{
    char *text;

    expect_error("[a]\ntoken_sha256 = zz" EMPTY_SHA256 "\n",
                 ":2: [a] token_sha256: ", "must be 64 hex digits");
    text = fmt("[a]\ntoken_sha256 = %.63s\n", hash_a);
    expect_error(text, ":2: [a] token_sha256: ", "must be 64 hex digits");
    free(text);
    text = fmt("[a]\ntoken_sha256 = %s0\n", hash_a);
    expect_error(text, ":2: [a] token_sha256: ", "must be 64 hex digits");
    free(text);
    text = fmt("[a]\ntoken_sha256 = %.63sg\n", hash_a);
    expect_error(text, ":2: [a] token_sha256: ", "must be 64 hex digits");
    free(text);
    expect_error("[a]\ntoken_sha256 =\n",
                 ":2: [a] token_sha256: ", "must be 64 hex digits");
    /* The classic mistake: the token itself. */
    expect_error("[a]\ntoken_sha256 = " TOKEN_A "\n",
                 ":2: [a] token_sha256: ", "never the token itself");
}

static void
test_empty_token_hash(void **state)
{
    expect_error("[a]\ntoken_sha256 = " EMPTY_SHA256 "\n",
                 ":2: [a] token_sha256: ", "empty token");
}

static void
test_duplicate_hash_key(void **state)
{
    char *text =
        fmt("[a]\ntoken_sha256 = %s\ntoken_sha256 = %s\n", hash_a, hash_b);

    expect_error(
        text, ":3: [a] token_sha256: ", "duplicate key (first set on line 2)");
    free(text);
}

static void
test_duplicate_caller(void **state)
{
    char *text = fmt("[a]\ntoken_sha256 = %s\nbusinesses = *\n\n"
                     "[a]\ntoken_sha256 = %s\nbusinesses = *\n",
                     hash_a, hash_b);

    expect_error(text, ":5: [a] ", "duplicate caller name (first on line 1)");
    free(text);
}

static void
test_duplicate_token(void **state)
{
    char *upper = upper_dup(hash_a);
    char *text;

    /* Same bytes in other hex case is still the same token. */
    text = fmt("[a]\ntoken_sha256 = %s\nbusinesses = *\n"
               "[b]\nbusinesses = *\ntoken_sha256 = %s\n",
               hash_a, upper);
    expect_error(text,
                 ":6: [b] token_sha256: ", "same token as caller [a] (line 2)");
    free(text);
    free(upper);
}

static void
test_bad_businesses(void **state)
{
    char *head = fmt("[a]\ntoken_sha256 = %s\n", hash_a);
    char *text;

    text = fmt("%sbusinesses =\n", head);
    expect_error(text, ":3: [a] businesses: ", "must list business ids");
    free(text);
    text = fmt("%sbusinesses = " BIZ1 ", not-a-uuid\n", head);
    expect_error(text, ":3: [a] businesses: ", "item 2 is not a business id");
    free(text);
    text = fmt("%sbusinesses = 550e8400-e29b-41d4-a716-44665544000g\n", head);
    expect_error(text, ":3: [a] businesses: ", "item 1 is not a business id");
    free(text);
    text = fmt("%sbusinesses = 550e8400e29b-41d4-a716-446655440000-\n", head);
    expect_error(text, ":3: [a] businesses: ", "item 1 is not a business id");
    free(text);
    text = fmt("%sbusinesses = " BIZ1 ",," BIZ2 "\n", head);
    expect_error(text, ":3: [a] businesses: ", "item 2 is empty");
    free(text);
    text = fmt("%sbusinesses = " BIZ1 ",\n", head);
    expect_error(text, ":3: [a] businesses: ", "item 2 is empty");
    free(text);
    text = fmt("%sbusinesses = " TOKEN_A "\n", head);
    expect_error(text, ":3: [a] businesses: ", "item 1 is not a business id");
    free(text);
    free(head);
}

static void
test_star_alone(void **state)
{
    char *head = fmt("[a]\ntoken_sha256 = %s\n", hash_a);
    char *text;

    text = fmt("%sbusinesses = *, " BIZ1 "\n", head);
    expect_error(text, ":3: [a] businesses: ", "must stand alone");
    free(text);
    text = fmt("%sbusinesses = " BIZ1 ", *\n", head);
    expect_error(text, ":3: [a] businesses: ", "must stand alone");
    free(text);
    text = fmt("%sbusinesses = *\nbusinesses = " BIZ1 "\n", head);
    expect_error(text, ":4: [a] businesses: ", "must stand alone");
    free(text);
    text = fmt("%sbusinesses = *\nbusinesses = *\n", head);
    expect_error(text, ":4: [a] businesses: ", "must stand alone");
    free(text);
    free(head);
}

static void
test_missing_keys(void **state)
{
    char *text = fmt("[a]\nbusinesses = *\n\n[b]\ntoken_sha256 = %s\n", hash_a);

    expect_error(text, ":1: [a] token_sha256: ", "missing");
    free(text);
    text = fmt("[a]\ntoken_sha256 = %s\nbusinesses = *\n\n[b]\n"
               "token_sha256 = %s\n",
               hash_a, hash_b);
    expect_error(text, ":5: [b] businesses: ", "missing");
    free(text);
    expect_error("[empty]\n", ":1: [empty] token_sha256: ", "missing");
}

static void
test_bad_caller_names(void **state)
{
    char long_name[AGW_AUTH_NAME_MAX + 4];
    char *text, *where;

    expect_error("[]\n", ":1: ", "a caller section is [name]");
    expect_error("[two words]\n", ":1: ", "a caller section is [name]");
    expect_error("[a]x\n", ":1: ", "a caller section is [name]");
    expect_error("[caller/1]\n", ":1: ", "a caller section is [name]");
    memset(long_name, 'n', AGW_AUTH_NAME_MAX + 1);
    long_name[AGW_AUTH_NAME_MAX + 1] = '\0';
    text = fmt("[%s]\n", long_name);
    expect_error(text, ":1: ", "a caller section is [name]");
    free(text);
    /* The longest allowed name is kept whole (inih would cut it). */
    long_name[AGW_AUTH_NAME_MAX] = '\0';
    text = fmt("[%s]\nbusinesses = *\n", long_name);
    where = fmt(":1: [%s] token_sha256: ", long_name);
    expect_error(text, where, "missing");
    free(where);
    free(text);
}

static void
test_syntax_errors(void **state)
{
    char *text = fmt("[a]\ntoken_sha256 = %s\n" TOKEN_A "\n", hash_a);

    expect_error(text, ":3: ", "syntax error");
    free(text);
    expect_error("[a\ntoken_sha256 = x\n", ":1: ", "syntax error");
}

static void
test_nul_and_long_lines(void **state)
{
    static const char nul[] = "[a]\nbusi\0nesses = *\n";
    char line[300];
    char *path = write_temp_bytes(nul, sizeof(nul) - 1, 0600);
    char err[512];
    char *want = fmt("%s:2: NUL byte in line", path);
    char *text;

    assert_null(agw_auth_load(path, err, sizeof(err)));
    assert_string_equal(err, want);
    free(want);
    remove_temp(path);

    memset(line, ' ', sizeof(line));
    memcpy(line, "businesses = *", 14);
    line[sizeof(line) - 1] = '\0';
    line[198] = 'x';
    text = fmt("[a]\n%s\n", line);
    expect_error(text, ":2: ", "line longer than 197 characters");
    free(text);
}

static void
test_token_never_in_errors(void **state)
{
    /* The token wherever an operator might paste it by mistake. */
    static const char *const texts[] = {
        "[a]\ntoken_sha256 = " TOKEN_A "\n",
        "[a]\ntoken = " TOKEN_A "\n",
        "[a]\nbusinesses = " TOKEN_A "\n",
        "[a]\nbusinesses = " BIZ1 ", " TOKEN_A "\n",
        "token_sha256 = " TOKEN_A "\n",
        TOKEN_A "\n",
        "[a]\n" TOKEN_A "\n",
        "[a]\ntoken_sha256 = " TOKEN_A TOKEN_B TOKEN_A TOKEN_B "\n",
        "[" TOKEN_A " x]\n",
    };
    char err[512];

    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        char *path = write_temp(texts[i]);

        assert_null(agw_auth_load(path, err, sizeof(err)));
        assert_true(strlen(err) > strlen(path));
        assert_null(strstr(err, TOKEN_A));
        assert_null(strstr(err, TOKEN_B));
        assert_null(strstr(err, "SECRET"));
        remove_temp(path);
    }
}

/* Runs FN with stderr sent to a temp file; returns what it wrote. */
static char *
capture_stderr(void (*fn)(void *), void *arg)
{
    char *path = write_temp("");
    int fd = open(path, O_RDWR);
    int saved = dup(STDERR_FILENO);
    char *out = calloc(1, 8192);
    ssize_t n;

    assert_true(fd >= 0 && saved >= 0 && out != NULL);
    fflush(stderr);
    dup2(fd, STDERR_FILENO);
    fn(arg);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    n = pread(fd, out, 8191, 0);
    assert_true(n >= 0);
    close(fd);
    remove_temp(path);
    return out;
}

static void
load_and_check(void *arg)
{
    const char *path = arg;
    char err[512];
    struct agw_auth *a = agw_auth_load(path, err, sizeof(err));

    assert_non_null(a);
    /* Every answer, so a log line from the check would show up. */
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A), BIZ1, NULL),
                     AGW_AUTH_OK);
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A), BIZ3, NULL),
                     AGW_AUTH_FORBIDDEN);
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_B), BIZ1, NULL),
                     AGW_AUTH_UNKNOWN);
    assert_int_equal(agw_auth_check(a, "Basic eA==", BIZ1, NULL),
                     AGW_AUTH_MISSING);
    agw_auth_free(a);
}

static void
test_mode_warnings(void **state)
{
    char *text = fmt("[a]\ntoken_sha256 = %s\nbusinesses = " BIZ1 "\n", hash_a);
    char *path;
    char *out;
    int saved_level = agw_log_level;

    agw_log_level = AGW_LOG_DEBUG;
    path = write_temp_bytes(text, strlen(text), 0644);
    out = capture_stderr(load_and_check, path);
    assert_non_null(strstr(out, "readable by group or others"));
    assert_non_null(strstr(out, path));
    assert_non_null(strstr(out, "0644"));
    assert_null(strstr(out, TOKEN_A));
    assert_null(strstr(out, TOKEN_B));
    free(out);
    remove_temp(path);

    /* Writable by others: refused, naming the file (SPEC §8). */
    for (size_t i = 0; i < 2; i++) {
        static const mode_t loose[] = {0620, 0602};
        char err[512];
        char want[16];

        path = write_temp_bytes(text, strlen(text), loose[i]);
        assert_null(agw_auth_load(path, err, sizeof(err)));
        assert_non_null(strstr(err, path));
        assert_non_null(strstr(err, "writable by group or others"));
        snprintf(want, sizeof(want), "%04o", (unsigned)loose[i]);
        assert_non_null(strstr(err, want));
        remove_temp(path);
    }

    path = write_temp_bytes(text, strlen(text), 0600);
    out = capture_stderr(load_and_check, path);
    assert_string_equal(out, "");
    free(out);
    remove_temp(path);
    agw_log_level = saved_level;
    free(text);
}

/* ------------------------------------------------------------ checking */

static void
test_check_ok(void **state)
{
    struct agw_auth *a = load_standard();
    const char *name = NULL;

    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A), BIZ1, &name),
                     AGW_AUTH_OK);
    assert_string_equal(name, "billing-service");
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A), BIZ2, &name),
                     AGW_AUTH_OK);
    assert_string_equal(name, "billing-service");
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_C), BIZ3, &name),
                     AGW_AUTH_OK);
    assert_string_equal(name, "reports");
    /* No CALLER_NAME wanted. */
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A), BIZ1, NULL),
                     AGW_AUTH_OK);
    agw_auth_free(a);
}

static void
test_check_scheme_spellings(void **state)
{
    static const char *const ok[] = {
        "Bearer " TOKEN_A,   "bearer " TOKEN_A,      "BEARER " TOKEN_A,
        "bEaReR " TOKEN_A,   "Bearer   " TOKEN_A,    "Bearer\t" TOKEN_A,
        "  Bearer " TOKEN_A, "Bearer " TOKEN_A "  ", "Bearer " TOKEN_A "\t",
    };
    struct agw_auth *a = load_standard();
    const char *name;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        name = NULL;
        if (agw_auth_check(a, ok[i], BIZ1, &name) != AGW_AUTH_OK) {
            fail_msg("\"%s\" was not accepted", ok[i]);
        }
        assert_string_equal(name, "billing-service");
    }
    agw_auth_free(a);
}

static void
test_check_missing(void **state)
{
    static const char *const bad[] = {
        "",
        " ",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer  ",
        "Bearer\t",
        "Bearer" TOKEN_A,
        "Bearer: " TOKEN_A,
        "Token " TOKEN_A,
        TOKEN_A,
        "Bearer " TOKEN_A " extra",
        "Bearer " TOKEN_A "\x01",
        "Bearer " TOKEN_A "\xc3\xa9",
        "Bearer \"" TOKEN_A "\" x",
        "Bear " TOKEN_A,
        "Bearer\n" TOKEN_A,
    };
    struct agw_auth *a = load_standard();
    const char *name = "set";

    assert_int_equal(agw_auth_check(a, NULL, BIZ1, &name), AGW_AUTH_MISSING);
    assert_null(name);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        name = "set";
        if (agw_auth_check(a, bad[i], BIZ1, &name) != AGW_AUTH_MISSING) {
            fail_msg("\"%s\" was not MISSING", bad[i]);
        }
        assert_null(name);
    }
    agw_auth_free(a);
}

static void
test_check_unknown(void **state)
{
    static const char *const bad[] = {
        "Bearer tok-A-Qm7SECRETx2Vb",   /* a prefix */
        "Bearer tok-A-Qm7SECRETx2Vb99", /* one more character */
        "Bearer TOK-A-QM7SECRETX2VB9",  /* tokens are case-sensitive */
        "Bearer x",
        "Bearer " EMPTY_SHA256,
    };
    struct agw_auth *a = load_standard();
    const char *name;
    char with_hash[128];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        name = "set";
        if (agw_auth_check(a, bad[i], BIZ1, &name) != AGW_AUTH_UNKNOWN) {
            fail_msg("\"%s\" was not UNKNOWN", bad[i]);
        }
        assert_null(name);
    }
    /* Presenting the stored hash itself must not work. */
    snprintf(with_hash, sizeof(with_hash), "Bearer %s", hash_a);
    assert_int_equal(agw_auth_check(a, with_hash, BIZ1, &name),
                     AGW_AUTH_UNKNOWN);
    /* No table: nobody is known. */
    assert_int_equal(agw_auth_check(NULL, bearer(TOKEN_A), BIZ1, &name),
                     AGW_AUTH_UNKNOWN);
    assert_null(name);
    agw_auth_free(a);
}

static void
test_check_forbidden(void **state)
{
    struct agw_auth *a = load_standard();
    const char *name = NULL;

    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A), BIZ3, &name),
                     AGW_AUTH_FORBIDDEN);
    assert_string_equal(name, "billing-service");
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_C), BIZ1, &name),
                     AGW_AUTH_FORBIDDEN);
    assert_string_equal(name, "reports");
    /* Not a UUID at all: not on any list either. */
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A), "x", &name),
                     AGW_AUTH_FORBIDDEN);
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A), "", &name),
                     AGW_AUTH_FORBIDDEN);
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A), BIZ1 "0", &name),
                     AGW_AUTH_FORBIDDEN);
    agw_auth_free(a);
}

static void
test_check_star(void **state)
{
    struct agw_auth *a = load_standard();
    const char *name = NULL;

    assert_int_equal(agw_auth_check(a, bearer(TOKEN_B), BIZ1, &name),
                     AGW_AUTH_OK);
    assert_string_equal(name, "ops");
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_B), BIZ3, &name),
                     AGW_AUTH_OK);
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_B),
                                    "ffffffff-ffff-ffff-ffff-ffffffffffff",
                                    &name),
                     AGW_AUTH_OK);
    agw_auth_free(a);
}

static void
test_check_business_case(void **state)
{
    struct agw_auth *a = load_standard();
    char *text;
    const char *name = NULL;

    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A),
                                    "550E8400-E29B-41D4-A716-446655440000",
                                    &name),
                     AGW_AUTH_OK);
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A),
                                    "6Ba7B810-9dAD-11d1-80B4-00C04Fd430C8",
                                    &name),
                     AGW_AUTH_OK);
    agw_auth_free(a);

    /* Upper case in the file, lower case asked. */
    text = fmt("[a]\ntoken_sha256 = %s\n"
               "businesses = 6BA7B810-9DAD-11D1-80B4-00C04FD430C8\n",
               hash_a);
    a = load_text(text);
    assert_non_null(a);
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_A), BIZ2, &name),
                     AGW_AUTH_OK);
    agw_auth_free(a);
    free(text);
}

static void
test_check_without_business(void **state)
{
    struct agw_auth *a = load_standard();
    const char *name = NULL;

    assert_int_equal(agw_auth_check(a, bearer(TOKEN_C), NULL, &name),
                     AGW_AUTH_OK);
    assert_string_equal(name, "reports");
    assert_int_equal(agw_auth_check(a, bearer("nope"), NULL, &name),
                     AGW_AUTH_UNKNOWN);
    agw_auth_free(a);
}

/* Many callers: each token finds its own, wherever it sits. */
static void
test_check_many_callers(void **state)
{
    enum { N = 200 };
    size_t cap = N * 200;
    char *text = malloc(cap);
    size_t used = 0;
    struct agw_auth *a;
    char token[32], hash[65], header[64];
    const char *name;

    assert_non_null(text);
    for (int i = 0; i < N; i++) {
        snprintf(token, sizeof(token), "token-%d", i);
        agw_sha256_hex(token, strlen(token), hash);
        used += (size_t)snprintf(text + used, cap - used,
                                 "[caller-%d]\ntoken_sha256 = %s\n"
                                 "businesses = %s\n",
                                 i, hash, i % 2 == 0 ? "*" : BIZ1);
    }
    a = load_text(text);
    assert_non_null(a);
    assert_int_equal(agw_auth_count(a), N);
    for (int i = 0; i < N; i += 37) {
        char want[32];

        snprintf(header, sizeof(header), "Bearer token-%d", i);
        snprintf(want, sizeof(want), "caller-%d", i);
        assert_int_equal(agw_auth_check(a, header, BIZ2, &name),
                         i % 2 == 0 ? AGW_AUTH_OK : AGW_AUTH_FORBIDDEN);
        assert_string_equal(name, want);
    }
    snprintf(header, sizeof(header), "Bearer token-%d", N - 1);
    assert_int_equal(agw_auth_check(a, header, BIZ1, &name), AGW_AUTH_OK);
    assert_string_equal(name, "caller-199");
    assert_int_equal(agw_auth_check(a, "Bearer token-200", BIZ1, &name),
                     AGW_AUTH_UNKNOWN);
    agw_auth_free(a);
    free(text);
}

/* ------------------------------------------------------------ certs */

/* A certificate whose SHA-256 is HASH_HEX (64 hex) with the SANs given. */
static struct agw_peer_cert
cert_of(const char *hash_hex, const char *san1, const char *san2)
{
    struct agw_peer_cert c;

    memset(&c, 0, sizeof(c));
    for (size_t i = 0; hash_hex != NULL && i < sizeof(c.sha256); i++) {
        unsigned int byte;

        sscanf(hash_hex + 2 * i, "%2x", &byte);
        c.sha256[i] = (unsigned char)byte;
    }
    if (san1 != NULL) {
        snprintf(c.sans[c.nsans++], AGW_PEER_SAN_LEN, "%s", san1);
    }
    if (san2 != NULL) {
        snprintf(c.sans[c.nsans++], AGW_PEER_SAN_LEN, "%s", san2);
    }
    return c;
}

#define SPIFFE "spiffe://example.org/ns/prod/sa/uploader"

/* uploader by URI SAN (BIZ1), web by DNS SAN (all), pinned by its
 * certificate's hash (hash_c here stands for a DER hash; BIZ2), and a
 * token-only caller (BIZ3). */
static struct agw_auth *
load_certs(void)
{
    char *text = fmt("[uploader]\ncert_san = " SPIFFE "\n"
                     "businesses = " BIZ1 "\n"
                     "[web]\ncert_san = Web.Example.ORG\nbusinesses = *\n"
                     "[pinned]\ncert_sha256 = %s\nbusinesses = " BIZ2 "\n"
                     "[tokened]\ntoken_sha256 = %s\nbusinesses = " BIZ3 "\n",
                     hash_c, hash_a);
    struct agw_auth *a = load_text(text);

    free(text);
    return a;
}

static void
test_cert_mapping(void **state)
{
    struct agw_auth *a = load_certs();
    struct agw_peer_cert up = cert_of(NULL, "web.other.org", SPIFFE);
    struct agw_peer_cert web = cert_of(NULL, "web.example.org", NULL);
    struct agw_peer_cert pin = cert_of(hash_c, "nobody.example.org", NULL);
    struct agw_peer_cert stranger = cert_of(hash_b, SPIFFE "x", NULL);
    struct agw_peer_cert upper = cert_of(NULL,
                                         "SPIFFE://example.org/ns/prod/"
                                         "sa/uploader",
                                         NULL);
    const char *name = NULL;

    assert_int_equal(
        agw_auth_identify(a, AGW_AUTH_MTLS, NULL, &up, BIZ1, &name),
        AGW_AUTH_OK);
    assert_string_equal(name, "uploader");
    assert_int_equal(
        agw_auth_identify(a, AGW_AUTH_MTLS, NULL, &up, BIZ2, &name),
        AGW_AUTH_FORBIDDEN);
    assert_string_equal(name, "uploader");
    /* A DNS name matches without regard to case; a URI exactly. */
    assert_int_equal(
        agw_auth_identify(a, AGW_AUTH_MTLS, NULL, &web, BIZ3, &name),
        AGW_AUTH_OK);
    assert_string_equal(name, "web");
    assert_int_equal(
        agw_auth_identify(a, AGW_AUTH_MTLS, NULL, &upper, BIZ1, &name),
        AGW_AUTH_UNKNOWN_CERT);
    assert_null(name);
    assert_int_equal(
        agw_auth_identify(a, AGW_AUTH_MTLS, NULL, &pin, BIZ2, &name),
        AGW_AUTH_OK);
    assert_string_equal(name, "pinned");
    assert_int_equal(
        agw_auth_identify(a, AGW_AUTH_MTLS, NULL, &stranger, BIZ1, &name),
        AGW_AUTH_UNKNOWN_CERT);
    /* mtls takes no token, and a call without a certificate is refused. */
    assert_int_equal(
        agw_auth_identify(a, AGW_AUTH_MTLS, bearer(TOKEN_A), NULL, BIZ3, &name),
        AGW_AUTH_NO_CERT);
    assert_null(name);
    agw_auth_free(a);
}

static void
test_cert_mode_any_and_token(void **state)
{
    struct agw_auth *a = load_certs();
    struct agw_peer_cert up = cert_of(NULL, SPIFFE, NULL);
    struct agw_peer_cert stranger = cert_of(hash_b, NULL, NULL);
    const char *name = NULL;

    /* any: a known certificate wins over a token of another caller. */
    assert_int_equal(
        agw_auth_identify(a, AGW_AUTH_ANY, bearer(TOKEN_A), &up, BIZ1, &name),
        AGW_AUTH_OK);
    assert_string_equal(name, "uploader");
    assert_int_equal(agw_auth_identify(a, AGW_AUTH_ANY, bearer(TOKEN_A),
                                       &stranger, BIZ3, &name),
                     AGW_AUTH_OK);
    assert_string_equal(name, "tokened");
    assert_int_equal(
        agw_auth_identify(a, AGW_AUTH_ANY, NULL, &stranger, BIZ3, &name),
        AGW_AUTH_UNKNOWN_CERT);
    assert_int_equal(
        agw_auth_identify(a, AGW_AUTH_ANY, NULL, NULL, BIZ3, &name),
        AGW_AUTH_MISSING);
    assert_int_equal(
        agw_auth_identify(a, AGW_AUTH_ANY, bearer(TOKEN_B), NULL, BIZ3, &name),
        AGW_AUTH_UNKNOWN);
    /* token mode never looks at a certificate. */
    assert_int_equal(
        agw_auth_identify(a, AGW_AUTH_TOKEN, NULL, &up, BIZ1, &name),
        AGW_AUTH_MISSING);
    /* A caller without token_sha256 is never matched by a token. */
    assert_int_equal(agw_auth_check(a, bearer(TOKEN_C), BIZ1, &name),
                     AGW_AUTH_UNKNOWN);
    agw_auth_free(a);
}

static void
test_cert_keys_checked(void **state)
{
    char *text;

    expect_error("[a]\ncert_san = has space\nbusinesses = *\n",
                 ":2: [a] cert_san: ", "URI or DNS name");
    expect_error("[a]\ncert_sha256 = abcd\nbusinesses = *\n",
                 ":2: [a] cert_sha256: ", "64 hex digits");
    expect_error("[a]\ncert_san = " SPIFFE "\ncert_san = x\nbusinesses = *\n",
                 ":3: [a] cert_san: ", "duplicate key");
    expect_error("[a]\ncert_san = " SPIFFE "\nbusinesses = *\n"
                 "[b]\ncert_san = " SPIFFE "\nbusinesses = *\n",
                 ":5: [b] cert_san: ", "same name as caller [a]");
    text = fmt("[a]\ncert_sha256 = %s\nbusinesses = *\n"
               "[b]\ncert_sha256 = %s\nbusinesses = *\n",
               hash_a, hash_a);
    expect_error(text, ":5: [b] cert_sha256: ", "same certificate as caller");
    free(text);
    expect_error("[a]\nbusinesses = *\n",
                 ":1: [a] token_sha256: ", "cert_san or cert_sha256");
}

static void
test_free_null(void **state)
{
    agw_auth_free(NULL);
    assert_int_equal(agw_auth_count(NULL), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_spec_example),
        cmocka_unit_test(test_load_lenient_syntax),
        cmocka_unit_test(test_unreadable),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_no_callers),
        cmocka_unit_test(test_key_outside_section),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_class_and_cap),
        cmocka_unit_test(test_class_and_cap_checked),
        cmocka_unit_test(test_bad_hex),
        cmocka_unit_test(test_empty_token_hash),
        cmocka_unit_test(test_duplicate_hash_key),
        cmocka_unit_test(test_duplicate_caller),
        cmocka_unit_test(test_duplicate_token),
        cmocka_unit_test(test_bad_businesses),
        cmocka_unit_test(test_star_alone),
        cmocka_unit_test(test_missing_keys),
        cmocka_unit_test(test_bad_caller_names),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_nul_and_long_lines),
        cmocka_unit_test(test_token_never_in_errors),
        cmocka_unit_test(test_mode_warnings),
        cmocka_unit_test(test_check_ok),
        cmocka_unit_test(test_check_scheme_spellings),
        cmocka_unit_test(test_check_missing),
        cmocka_unit_test(test_check_unknown),
        cmocka_unit_test(test_check_forbidden),
        cmocka_unit_test(test_check_star),
        cmocka_unit_test(test_check_business_case),
        cmocka_unit_test(test_check_without_business),
        cmocka_unit_test(test_check_many_callers),
        cmocka_unit_test(test_cert_mapping),
        cmocka_unit_test(test_cert_mode_any_and_token),
        cmocka_unit_test(test_cert_keys_checked),
        cmocka_unit_test(test_free_null),
    };

    return cmocka_run_group_tests(tests, setup_hashes, NULL);
}
