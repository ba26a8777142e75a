/*
 * test_guard.c - guard.c over a bufferevent pair: what evhttp would read
 * for sound requests (byte for byte, one request at a time), for each
 * refusal (a stand-in, a head without its framing field, a chunked body
 * cut short) and how it is to be answered, and the process budget.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "guard.h"

#define STAND_IN "GET / HTTP/1.1\r\n\r\n"
#define POST "POST /v1/x HTTP/1.1\r\nHost: h\r\n"

struct fix {
    struct event_base *base;
    struct bufferevent *client; /* what the caller writes into */
    struct bufferevent *bev;    /* the guard's: what evhttp reads */
    struct agw_guard *g;
    struct agw_guard_policy policy;
    char out[64 * 1024];
};

static void
open_fix(struct fix *f, long long max_body, long long max_buffered)
{
    struct bufferevent *pair[2];

    f->base = event_base_new();
    assert_non_null(f->base);
    assert_int_equal(bufferevent_pair_new(f->base, BEV_OPT_CLOSE_ON_FREE, pair),
                     0);
    f->client = pair[0];
    f->policy = (struct agw_guard_policy){.max_body = max_body,
                                          .max_buffered = max_buffered};
    f->bev = agw_guard_new(pair[1], &f->policy, &f->g);
    assert_non_null(f->bev);
    bufferevent_enable(f->client, EV_READ | EV_WRITE);
    bufferevent_enable(f->bev, EV_READ);
}

static void
close_fix(struct fix *f)
{
    bufferevent_free(f->bev);
    bufferevent_free(f->client);
    event_base_loop(f->base, EVLOOP_NONBLOCK); /* runs the finalizers */
    event_base_free(f->base);
}

/* The caller sends DATA; returns everything evhttp could read now (and
 * takes it out, as evhttp would). */
static const char *
send_text(struct fix *f, const char *data)
{
    struct evbuffer *in = bufferevent_get_input(f->bev);
    size_t n;

    if (*data != '\0') {
        bufferevent_write(f->client, data, strlen(data));
    }
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    n = evbuffer_get_length(in);
    assert_true(n < sizeof(f->out));
    evbuffer_remove(in, f->out, n);
    f->out[n] = '\0';
    return f->out;
}

static void
expect_refusal(struct fix *f, int status, int code, bool stand_in,
               const char *words)
{
    const struct agw_refusal *r = agw_guard_refusal(f->g);

    assert_non_null(r);
    assert_int_equal(r->status, status);
    assert_int_equal(r->code, code);
    assert_int_equal(r->stand_in, stand_in);
    assert_non_null(strstr(r->message, words));
}

static void
test_sound_requests_pass_one_at_a_time(void **state)
{
    struct fix f;
    const char *a = POST "Content-Length: 5\r\n\r\nhello";
    const char *b = "GET /b HTTP/1.1\r\n\r\n";
    char both[256];

    open_fix(&f, 1000, 1 << 20);
    snprintf(both, sizeof(both), "%s%s", a, b);
    assert_string_equal(send_text(&f, both), a);
    assert_null(agw_guard_refusal(f.g));
    assert_string_equal(send_text(&f, ""), ""); /* b waits for a's answer */
    agw_guard_answered(f.g);
    assert_string_equal(send_text(&f, ""), b);
    agw_guard_answered(f.g);
    assert_string_equal(send_text(&f, "GET /c HTTP/1.0\n\n"),
                        "GET /c HTTP/1.0\n\n");
    close_fix(&f);
}

static void
test_head_in_pieces(void **state)
{
    struct fix f;
    const char *req = POST "X-A: 1\r\nContent-Length: 2\r\n\r\n{}";
    char one[2] = {0};
    size_t n = strlen(req);

    open_fix(&f, 1000, 1 << 20);
    for (size_t i = 0; i < n - 3; i++) { /* up to the last CRLF's CR */
        one[0] = req[i];
        assert_string_equal(send_text(&f, one), "");
    }
    assert_string_equal(send_text(&f, req + n - 3), req);
    close_fix(&f);
}

static void
test_content_length_refused(void **state)
{
    static const char *const fields[] = {
        "Content-Length: 5\r\nContent-Length: 5",
        "Content-Length: 5\r\nContent-Length: 67",
        "Content-Length: +5",
        "Content-Length: 0x5",
        "Content-Length: 5 5",
        "Content-Length: 5, 5",
        "Content-Length: \v5",
        "Content-Length: -5",
        "Content-Length:",
    };

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        struct fix f;
        char req[256];

        open_fix(&f, 1000, 1 << 20);
        snprintf(req, sizeof(req),
                 POST "%s\r\n\r\nhelloGET /smuggled "
                      "HTTP/1.1\r\n\r\n",
                 fields[i]);
        assert_string_equal(send_text(&f, req), STAND_IN);
        expect_refusal(&f, 400, 3, true, "Content-Length");
        agw_guard_answered(f.g);
        assert_string_equal(send_text(&f, "GET / HTTP/1.1\r\n\r\n"), "");
        close_fix(&f);
    }
}

static void
test_blanks_around_content_length(void **state)
{
    struct fix f;
    const char *req = POST "Content-Length: \t 2 \t\r\n\r\n{}";

    open_fix(&f, 1000, 1 << 20);
    assert_string_equal(send_text(&f, req), req);
    assert_null(agw_guard_refusal(f.g));
    close_fix(&f);
}

static void
test_head_refused(void **state)
{
    static const struct {
        const char *req;
        const char *words;
    } cases[] = {
        {POST "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
         "both"},
        {POST "Transfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding"},
        {POST "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
              "\r\n",
         "Transfer-Encoding"},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0"},
        {"HEAD / HTTP/1.1\r\nContent-Length: 3\r\n\r\n", "body"},
        {"FOO / HTTP/1.1\r\nContent-Length: 3\r\n\r\n", "body"},
        {POST "X-A: 1\r\n folded\r\n\r\n", "folded"},
        {POST "Content-Length : 2\r\n\r\n", "token"},
        {POST "X-A: 1\rContent-Length: 2\r\n\r\n", "CR"},
        {POST "no colon\r\n\r\n", "colon"},
        {"\r\nGET / HTTP/1.1\r\n\r\n", "request line"},
        {"GET / HTTP/2.0\r\n\r\n", "request line"},
        {"GET /a b HTTP/1.1\r\n\r\n", "request line"},
        {"GET  / HTTP/1.1\r\n\r\n", "request line"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fix f;

        open_fix(&f, 1000, 1 << 20);
        assert_string_equal(send_text(&f, cases[i].req), STAND_IN);
        expect_refusal(&f, 400, 3, true, cases[i].words);
        close_fix(&f);
    }
}

static void
test_head_too_large(void **state)
{
    struct fix f;
    char *req = malloc(AGW_GUARD_HEAD_MAX + 100);

    assert_non_null(req);
    memset(req, 'a', AGW_GUARD_HEAD_MAX + 99);
    memcpy(req, "GET / HTTP/1.1\r\nX-Big: ", 23);
    req[AGW_GUARD_HEAD_MAX + 99] = '\0';
    open_fix(&f, 1000, 1 << 20);
    assert_string_equal(send_text(&f, req), STAND_IN);
    expect_refusal(&f, 431, 3, true, "16384");
    free(req);
    close_fix(&f);
}

static void
test_chunked_passes(void **state)
{
    struct fix f;
    const char *req = POST "Transfer-Encoding: chunked\r\n\r\n"
                           "0003\r\nabc\r\nA\n0123456789\n0\r\n\r\n";

    open_fix(&f, 1000, 1 << 20);
    assert_string_equal(send_text(&f, req), req);
    assert_null(agw_guard_refusal(f.g));
    close_fix(&f);
}

static void
test_chunked_refused(void **state)
{
    static const struct {
        const char *body;
        const char *passed; /* of the body, before the last chunk */
        const char *words;
    } cases[] = {
        {"0x3\r\nabc\r\n0\r\n\r\n", "", "bare hex"},
        {"+3\r\nabc\r\n0\r\n\r\n", "", "bare hex"},
        {" 3\r\nabc\r\n0\r\n\r\n", "", "bare hex"},
        {"3 \r\nabc\r\n0\r\n\r\n", "", "bare hex"},
        {"3;x=1\r\nabc\r\n0\r\n\r\n", "", "bare hex"},
        {"\r\n3\r\nabc\r\n0\r\n\r\n", "", "bare hex"},
        {"3\r\nabcd\r\n0\r\n\r\n", "3\r\nabc", "longer"},
        {"3\r\nabc\r\n2x\r\nab\r\n0\r\n\r\n", "3\r\nabc\r\n", "bare hex"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fix f;
        const char *head = POST "Transfer-Encoding: chunked\r\n\r\n";
        char req[256];
        char want[256];

        snprintf(req, sizeof(req), "%s%s", head, cases[i].body);
        snprintf(want, sizeof(want), "%s%s0\r\n\r\n", head, cases[i].passed);
        open_fix(&f, 1000, 1 << 20);
        assert_string_equal(send_text(&f, req), want);
        expect_refusal(&f, 400, 3, false, cases[i].words);
        close_fix(&f);
    }
}

static void
test_trailer_refused(void **state)
{
    struct fix f;
    const char *head =
        POST "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n";
    char req[256];
    char want[256];

    snprintf(req, sizeof(req), "%sX-T: 1\r\n\r\n", head);
    snprintf(want, sizeof(want), "%s\r\n", head);
    open_fix(&f, 1000, 1 << 20);
    assert_string_equal(send_text(&f, req), want);
    expect_refusal(&f, 400, 3, false, "trailer");
    close_fix(&f);
}

static void
test_body_too_large(void **state)
{
    struct fix f;

    open_fix(&f, 10, 1 << 20);
    assert_string_equal(send_text(&f, POST "Content-Length: 11\r\nX-B: 2"
                                           "\r\n\r\n"),
                        POST "X-B: 2\r\n\r\n");
    expect_refusal(&f, 413, 3, false, "max_body_bytes");
    close_fix(&f);

    open_fix(&f, 10, 1 << 20);
    assert_string_equal(send_text(&f, POST "Transfer-Encoding: chunked\r\n\r\n"
                                           "8\r\n12345678\r\n3\r\nabc\r\n"),
                        POST "Transfer-Encoding: chunked\r\n\r\n"
                             "8\r\n12345678\r\n0\r\n\r\n");
    expect_refusal(&f, 413, 3, false, "max_body_bytes");
    close_fix(&f);
}

static void
test_budget(void **state)
{
    struct fix a;
    struct fix b;
    long long before = agw_guard_buffered();
    const char *big = POST "Content-Length: 600\r\n\r\n";

    open_fix(&a, 1000, 1000);
    open_fix(&b, 1000, 1000);
    assert_string_equal(send_text(&a, big), big);
    assert_true(agw_guard_buffered() - before >= 600 + (long long)strlen(big));
    assert_string_equal(send_text(&b, big), POST "\r\n");
    expect_refusal(&b, 503, 14, false, "buffered");
    close_fix(&b);
    close_fix(&a);
    assert_int_equal(agw_guard_buffered(), before);
}

static void
test_answered_releases(void **state)
{
    struct fix f;
    long long before = agw_guard_buffered();
    char body[601];

    memset(body, 'x', 600);
    body[600] = '\0';
    open_fix(&f, 1000, 1 << 20);
    send_text(&f, POST "Content-Length: 600\r\n\r\n");
    send_text(&f, body);
    assert_true(agw_guard_buffered() > before + 600);
    agw_guard_answered(f.g);
    assert_int_equal(agw_guard_buffered(), before);
    close_fix(&f);
}

static bool
refuse_post(void *arg, const struct agw_guard_head *head,
            struct agw_refusal *out)
{
    struct agw_guard_head *seen = arg;

    *seen = *head;
    seen->method = strcmp(head->method, "POST") == 0 ? "POST" : "?";
    seen->authorization = head->authorization != NULL &&
                                  strcmp(head->authorization, "Bearer t") == 0
                              ? "ok"
                              : "?";
    *out = (struct agw_refusal){.status = 401, .code = 16};
    snprintf(out->message, sizeof(out->message), "no");
    return false;
}

static void
test_check_head(void **state)
{
    struct fix f;
    struct agw_guard_head seen = {0};

    open_fix(&f, 1000, 1 << 20);
    f.policy.check_head = refuse_post;
    f.policy.arg = &seen;
    assert_string_equal(send_text(&f, POST "Authorization:  Bearer t \r\n"
                                           "Content-Length: 7\r\n\r\nabcdefg"),
                        POST "Authorization:  Bearer t \r\n\r\n");
    expect_refusal(&f, 401, 16, false, "no");
    assert_string_equal(seen.method, "POST");
    assert_string_equal(seen.authorization, "ok");
    assert_int_equal(seen.body_bytes, 7);
    close_fix(&f);
}

static void
test_refuse_at_once(void **state)
{
    struct fix f;
    struct agw_refusal r = {.status = 503, .code = 14};

    snprintf(r.message, sizeof(r.message), "too many connections");
    open_fix(&f, 1000, 1 << 20);
    agw_guard_refuse(f.g, &r);
    assert_string_equal(send_text(&f, "GET / HTTP/1.1\r\n\r\n"), STAND_IN);
    expect_refusal(&f, 503, 14, true, "too many");
    close_fix(&f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sound_requests_pass_one_at_a_time),
        cmocka_unit_test(test_head_in_pieces),
        cmocka_unit_test(test_content_length_refused),
        cmocka_unit_test(test_blanks_around_content_length),
        cmocka_unit_test(test_head_refused),
        cmocka_unit_test(test_head_too_large),
        cmocka_unit_test(test_chunked_passes),
        cmocka_unit_test(test_chunked_refused),
        cmocka_unit_test(test_trailer_refused),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_answered_releases),
        cmocka_unit_test(test_check_head),
        cmocka_unit_test(test_refuse_at_once),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
