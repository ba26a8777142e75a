/*
 * test_request.c - Create Asset validation (every message, in order), the
 * body sent upstream, the dedupe key, repeated bodies (the per-thread memo
 * of parses), and the util.c helpers they use.
 */
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "parse_memo.h"
#include "request.h"
#include "uri.h"
#include "util.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

#define BIZ "550e8400-e29b-41d4-a716-446655440000"
#define BIZ_UPPER "550E8400-E29B-41D4-A716-446655440000"
#define BIZ2 "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
#define PUBLIC "ASSET_ACCESS_CONTROL_TYPE_PUBLIC"
#define PRIVATE "ASSET_ACCESS_CONTROL_TYPE_PRIVATE"
#define CDN_PRIVATE "ASSET_ACCESS_CONTROL_TYPE_CDN_PRIVATE"
#define URI "https://example.com/images/product-photo.png"
#define MSG_OBJECT "request body must be a JSON object"
#define MSG_ID "id must be 1-128 characters of A-Z a-z 0-9 . _ : -"
#define MSG_ACCESS                                                             \
    "metadata.accessControlType must be one of "                               \
    "ASSET_ACCESS_CONTROL_TYPE_PUBLIC, ASSET_ACCESS_CONTROL_TYPE_PRIVATE, "    \
    "ASSET_ACCESS_CONTROL_TYPE_CDN_PRIVATE"

static bool
all_zero(const void *p, size_t len)
{
    const unsigned char *b = p;
    size_t i;

    for (i = 0; i < len; i++) {
        if (b[i] != 0) {
            return false;
        }
    }
    return true;
}

/* Parses BODY (LEN bytes) that must be accepted. */
static void
parse_ok_len(struct agw_request *req, const char *biz, const char *body,
             size_t len, bool allow_private)
{
    char err[256] = "";

    if (!agw_request_parse(req, biz, body, len, allow_private, err,
                           sizeof(err))) {
        fail_msg("refused %s: %s", body, err);
    }
    assert_non_null(req->uri);
    assert_non_null(req->uri_normalized);
    assert_non_null(req->access);
    assert_non_null(req->upstream_body);
    assert_int_equal(strlen(req->dedupe_key), 64);
}

static void
parse_ok(struct agw_request *req, const char *body)
{
    parse_ok_len(req, BIZ, body, strlen(body), false);
}

/*
 * BODY (LEN bytes) must be refused with exactly WANT, leaving REQ all
 * zero even though it starts out full of garbage.
 */
static void
expect_err_len(const char *biz, const char *body, size_t len,
               bool allow_private, const char *want)
{
    struct agw_request req;
    char err[512];

    memset(&req, 0xa5, sizeof(req));
    memset(err, 'x', sizeof(err));
    err[sizeof(err) - 1] = '\0';
    if (agw_request_parse(&req, biz, body, len, allow_private, err,
                          sizeof(err))) {
        fail_msg("accepted %s, want \"%s\"", body != NULL ? body : "(null)",
                 want);
    }
    if (strcmp(err, want) != 0) {
        fail_msg("body %s: got \"%s\", want \"%s\"",
                 body != NULL ? body : "(null)", err, want);
    }
    assert_true(all_zero(&req, sizeof(req)));
}

static void
expect_err(const char *body, const char *want)
{
    expect_err_len(BIZ, body, strlen(body), false, want);
}

static char *
key_of(const char *biz, const char *body)
{
    struct agw_request req;
    char *key;

    parse_ok_len(&req, biz, body, strlen(body), false);
    key = strdup(req.dedupe_key);
    assert_non_null(key);
    agw_request_clear(&req);
    return key;
}

/* {"uri":"http://example.com/" + 'a' * ..., LEN bytes of URI in all. */
static char *
body_with_uri_len(size_t len)
{
    static const char prefix[] = "http://example.com/";
    size_t plen = sizeof(prefix) - 1;
    char *body = malloc(len + 32);
    size_t off;

    assert_non_null(body);
    off = (size_t)sprintf(body, "{\"uri\":\"%s", prefix);
    memset(body + off, 'a', len - plen);
    off += len - plen;
    strcpy(body + off, "\"}");
    return body;
}

/* {"a": [[...[1]...]]}: LEVELS containers in all, the object included. */
static char *
nested_body(int levels)
{
    char *body = malloc((size_t)levels * 2 + 64);
    int i;

    assert_non_null(body);
    strcpy(body, "{\"uri\":\"" URI "\",\"a\":");
    for (i = 1; i < levels; i++) {
        strcat(body, "[");
    }
    strcat(body, "1");
    for (i = 1; i < levels; i++) {
        strcat(body, "]");
    }
    strcat(body, "}");
    return body;
}

/* --------------------------------------------------------- businessId */

static void
test_business_id(void **state)
{
    static const char *const bad[] = {
        "",
        "not-a-uuid",
        "550e8400e29b41d4a716446655440000",
        "550e8400-e29b-41d4-a716-44665544000",
        "550e8400-e29b-41d4-a716-4466554400000",
        "550e8400-e29b-41d4-a716-44665544000g",
        "550e8400_e29b_41d4_a716_446655440000",
        "{550e8400-e29b-41d4-a716-446655440000}",
        " 550e8400-e29b-41d4-a716-446655440000",
    };
    struct agw_request req;
    size_t i;

    (void)state;
    expect_err_len(NULL, "{}", 2, false, "businessId must be a UUID");
    for (i = 0; i < N_ELEMS(bad); i++) {
        const char *body = "{\"uri\":\"" URI "\"}";

        expect_err_len(bad[i], body, strlen(body), false,
                       "businessId must be a UUID");
    }
    /* checked before the body */
    expect_err_len("nope", "[", 1, false, "businessId must be a UUID");
    /* upper case is a UUID too, and kept as sent for the upstream path */
    parse_ok_len(&req, BIZ_UPPER, "{\"uri\":\"" URI "\"}",
                 strlen("{\"uri\":\"" URI "\"}"), false);
    assert_string_equal(req.business_id, BIZ_UPPER);
    agw_request_clear(&req);
}

/* --------------------------------------------------------------- body */

static void
test_body_not_an_object(void **state)
{
    static const char *const bad[] = {
        "",
        " ",
        "\n",
        "null",
        "true",
        "1",
        "\"s\"",
        "[]",
        "[{\"uri\":\"" URI "\"}]",
        "{",
        "{\"uri\":",
        "{\"uri\":\"" URI "\"",
        "{\"uri\":\"" URI "\",}",  /* trailing comma */
        "{uri:\"" URI "\"}",       /* unquoted key */
        "{\"uri\":\"" URI "\"} x", /* trailing garbage */
        "{\"uri\":\"" URI "\"}{}", /* two objects */
        "{\"uri\":\"" URI "\"}]",
        "{\"uri\":\"" URI "\"} // comment",
        "\xef\xbb\xbf{\"uri\":\"" URI "\"}",    /* BOM */
        "{\"uri\":\"" URI "\",\"x\":\"\xff\"}", /* not UTF-8 */
    };
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(bad); i++) {
        expect_err(bad[i], MSG_OBJECT);
    }
    expect_err_len(BIZ, NULL, 0, false, MSG_OBJECT);
    expect_err_len(BIZ, "{}", 0, false, MSG_OBJECT);
}

static void
test_body_nul_byte(void **state)
{
    static const char body[] = "{\"uri\":\"" URI "\"}\0{\"id\":\"x y\"}";
    static const char inside[] = "{\"uri\":\"" URI "\",\0\"id\":\"a\"}";

    (void)state;
    /* a NUL after the object: the length says there is more */
    expect_err_len(BIZ, body, sizeof(body) - 1, false, MSG_OBJECT);
    expect_err_len(BIZ, inside, sizeof(inside) - 1, false, MSG_OBJECT);
}

static void
test_body_trailing_whitespace_ok(void **state)
{
    struct agw_request req;

    (void)state;
    parse_ok(&req, " \t\r\n{ \"uri\" : \"" URI "\" }\r\n \n");
    assert_string_equal(req.uri, URI);
    agw_request_clear(&req);
}

static void
test_body_depth(void **state)
{
    char *ok16 = nested_body(AGW_JSON_MAX_DEPTH);
    char *deep17 = nested_body(AGW_JSON_MAX_DEPTH + 1);
    char *deep100 = nested_body(100);
    struct agw_request req;

    (void)state;
    assert_int_equal(AGW_JSON_MAX_DEPTH, 16);
    parse_ok(&req, ok16);
    agw_request_clear(&req);
    expect_err(deep17, "request body nests deeper than 16 levels");
    expect_err(deep100, "request body nests deeper than 16 levels");
    free(ok16);
    free(deep17);
    free(deep100);
}

/* ---------------------------------------------------------------- uri */

static void
test_uri_messages(void **state)
{
    char *at = body_with_uri_len(AGW_URI_MAX_LEN);
    char *over = body_with_uri_len(AGW_URI_MAX_LEN + 1);
    struct agw_request req;

    (void)state;
    /* the vendor's own text, byte for byte */
    expect_err("{}", "uri is required");
    expect_err("{\"id\":\"abc\"}", "uri is required");
    expect_err("{\"uri\":null}", "uri is required");
    expect_err("{\"uri\":\"\"}", "uri is required");
    expect_err("{\"URI\":\"" URI "\"}", "uri is required");
    expect_err("{\"uri\":5}", "uri must be a string");
    expect_err("{\"uri\":true}", "uri must be a string");
    expect_err("{\"uri\":[\"" URI "\"]}", "uri must be a string");
    expect_err("{\"uri\":{\"href\":\"" URI "\"}}", "uri must be a string");
    expect_err("{\"uri\":\"https://example.com/a\\u0000.png\"}",
               "uri must not contain NUL characters");
    expect_err(over, "uri must be at most 2048 bytes");
    expect_err("{\"uri\":\"/images/a.png\"}",
               "uri must be an absolute http or https URL");
    expect_err("{\"uri\":\"https://example.com/a b.png\"}",
               "uri must be an absolute http or https URL");
    expect_err("{\"uri\":\"https://example.com/\\r\\nX: y\"}",
               "uri must be an absolute http or https URL");
    expect_err("{\"uri\":\"ftp://example.com/a.png\"}",
               "uri must use http or https");
    expect_err("{\"uri\":\"file:///etc/passwd\"}",
               "uri must use http or https");
    expect_err("{\"uri\":\"http:///a.png\"}", "uri must have a host");
    expect_err("{\"uri\":\"http://127.0.0.1:8080/a.png\"}",
               "uri host is not globally reachable (loopback, private, "
               "reserved or a local name); Connectly cannot fetch it");
    expect_err("{\"uri\":\"http://localhost/a.png\"}",
               "uri host is not globally reachable (loopback, private, "
               "reserved or a local name); Connectly cannot fetch it");
    parse_ok(&req, at);
    assert_int_equal(strlen(req.uri), 2048);
    agw_request_clear(&req);
    free(at);
    free(over);
}

static void
test_uri_private_allowed(void **state)
{
    static const char body[] = "{\"uri\":\"http://127.0.0.1:8080/a.png\"}";
    struct agw_request req;

    (void)state;
    parse_ok_len(&req, BIZ, body, sizeof(body) - 1, true);
    assert_string_equal(req.uri, "http://127.0.0.1:8080/a.png");
    agw_request_clear(&req);
    /* allow_private does not relax anything else */
    expect_err_len(BIZ, "{\"uri\":\"ftp://127.0.0.1/\"}",
                   strlen("{\"uri\":\"ftp://127.0.0.1/\"}"), true,
                   "uri must use http or https");
}

/* ----------------------------------------------------------------- id */

static void
test_id(void **state)
{
    char body[512];
    char id128[129], id129[130];
    struct agw_request req;
    static const char *const bad[] = {
        "\"\"",          "\"a b\"",     "\"a/b\"", "\"a+b\"", "\"caf\xc3\xa9\"",
        "\"a\\u0000b\"", "\"\\u0000\"", "5",       "true",    "{}",
        "[\"a\"]",       "\"a\\nb\"",   "\"%41\"",
    };
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(bad); i++) {
        snprintf(body, sizeof(body), "{\"uri\":\"%s\",\"id\":%s}", URI, bad[i]);
        expect_err(body, MSG_ID);
    }
    memset(id128, 'a', 128);
    id128[128] = '\0';
    memset(id129, 'b', 129);
    id129[129] = '\0';
    snprintf(body, sizeof(body), "{\"uri\":\"%s\",\"id\":\"%s\"}", URI, id129);
    expect_err(body, MSG_ID);
    snprintf(body, sizeof(body), "{\"uri\":\"%s\",\"id\":\"%s\"}", URI, id128);
    parse_ok(&req, body);
    assert_string_equal(req.id, id128);
    agw_request_clear(&req);

    parse_ok(&req, "{\"uri\":\"" URI "\",\"id\":\"Az09._:-\"}");
    assert_string_equal(req.id, "Az09._:-");
    agw_request_clear(&req);
    parse_ok(&req, "{\"uri\":\"" URI "\",\"id\":\"x\"}");
    assert_string_equal(req.id, "x");
    agw_request_clear(&req);
    /* null is absent, as in proto3 JSON */
    parse_ok(&req, "{\"uri\":\"" URI "\",\"id\":null}");
    assert_null(req.id);
    agw_request_clear(&req);
}

/* ----------------------------------------------------------- metadata */

static void
test_metadata(void **state)
{
    static const char *const not_object[] = {"5", "\"x\"", "[]", "true",
                                             "[{}]"};
    static const char *const bad_type[] = {
        "\"bogus\"",
        "\"asset_access_control_type_public\"",
        "\"PUBLIC\"",
        "\"\"",
        "\" ASSET_ACCESS_CONTROL_TYPE_PUBLIC\"",
        "\"ASSET_ACCESS_CONTROL_TYPE_PUBLIC\\u0000x\"",
        "\"ASSET_ACCESS_CONTROL_TYPE_UNSPECIFIED\"",
        "0",
        "1",
        "true",
        "[\"ASSET_ACCESS_CONTROL_TYPE_PUBLIC\"]",
        "{}",
    };
    char body[512];
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(not_object); i++) {
        snprintf(body, sizeof(body), "{\"uri\":\"%s\",\"metadata\":%s}", URI,
                 not_object[i]);
        expect_err(body, "metadata must be an object");
    }
    for (i = 0; i < N_ELEMS(bad_type); i++) {
        snprintf(body, sizeof(body),
                 "{\"uri\":\"%s\",\"metadata\":{\"accessControlType\":%s}}",
                 URI, bad_type[i]);
        expect_err(body, MSG_ACCESS);
    }
}

static void
test_access_types(void **state)
{
    static const char *const types[] = {PUBLIC, PRIVATE, CDN_PRIVATE};
    struct agw_request req;
    char body[512];
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(types); i++) {
        assert_string_equal(agw_access_types[i], types[i]);
        snprintf(body, sizeof(body),
                 "{\"uri\":\"%s\",\"metadata\":{\"accessControlType\":\"%s\"}}",
                 URI, types[i]);
        parse_ok(&req, body);
        assert_string_equal(req.access, types[i]);
        assert_ptr_equal(req.access, agw_access_types[i]); /* static */
        assert_true(req.access_given);
        agw_request_clear(&req);
    }
    /* absent in three ways: the default, not "given" */
    parse_ok(&req, "{\"uri\":\"" URI "\"}");
    assert_string_equal(req.access, PUBLIC);
    assert_false(req.access_given);
    agw_request_clear(&req);
    parse_ok(&req, "{\"uri\":\"" URI "\",\"metadata\":null}");
    assert_string_equal(req.access, PUBLIC);
    assert_false(req.access_given);
    agw_request_clear(&req);
    parse_ok(&req, "{\"uri\":\"" URI "\",\"metadata\":{\"other\":1}}");
    assert_string_equal(req.access, PUBLIC);
    assert_false(req.access_given);
    agw_request_clear(&req);
    parse_ok(&req,
             "{\"uri\":\"" URI "\",\"metadata\":{\"accessControlType\":null}}");
    assert_false(req.access_given);
    agw_request_clear(&req);
}

/* The first failing field, in SPEC order, is the one reported. */
static void
test_validation_order(void **state)
{
    (void)state;
    expect_err("{\"id\":\"a b\",\"metadata\":5}", "uri is required");
    expect_err("{\"uri\":\"ftp://x/\",\"id\":\"a b\"}",
               "uri must use http or https");
    expect_err("{\"uri\":\"" URI "\",\"id\":\"a b\",\"metadata\":5}", MSG_ID);
    expect_err("{\"metadata\":{\"accessControlType\":\"x\"},\"id\":\"\","
               "\"uri\":\"" URI "\"}",
               MSG_ID);
    expect_err("{\"uri\":\"" URI "\",\"metadata\":{\"accessControlType\":5},"
               "\"id\":\"ok\"}",
               MSG_ACCESS);
}

static void
test_error_buffer(void **state)
{
    struct agw_request req;
    char small[8];

    (void)state;
    /* truncated, still terminated */
    assert_false(
        agw_request_parse(&req, BIZ, "{}", 2, false, small, sizeof(small)));
    assert_string_equal(small, "uri is ");
    /* no buffer at all is allowed */
    assert_false(agw_request_parse(&req, BIZ, "{}", 2, false, NULL, 0));
    assert_true(all_zero(&req, sizeof(req)));
}

/* ------------------------------------------------------ parsed fields */

static void
test_fields_and_upstream_body(void **state)
{
    static const char body[] =
        "{\"extra\":{\"deep\":[1,2]},\"uri\":\"HTTPS://Example.COM:443/a%7e"
        "/b.png?x=1#frag\",\"id\":\"sku-1\",\"metadata\":{\"accessControl"
        "Type\":\"ASSET_ACCESS_CONTROL_TYPE_CDN_PRIVATE\",\"note\":\"n\"}}";
    struct agw_request req;
    json_object *up, *v, *meta;

    (void)state;
    parse_ok(&req, body);
    assert_string_equal(req.business_id, BIZ);
    assert_string_equal(req.uri, "HTTPS://Example.COM:443/a%7e/b.png?x=1#frag");
    assert_string_equal(req.uri_normalized, "https://example.com/a~/b.png?x=1");
    assert_string_equal(req.id, "sku-1");
    assert_string_equal(req.access, CDN_PRIVATE);
    assert_true(req.access_given);

    /* the exact bytes: canonical, plain, slashes not escaped */
    assert_string_equal(
        req.upstream_body,
        "{\"uri\":\"HTTPS://Example.COM:443/a%7e/b.png?x=1#frag\","
        "\"id\":\"sku-1\",\"metadata\":{\"accessControlType\":"
        "\"ASSET_ACCESS_CONTROL_TYPE_CDN_PRIVATE\"}}");
    up = json_tokener_parse(req.upstream_body);
    assert_non_null(up);
    assert_int_equal(json_object_object_length(up), 3);
    assert_true(json_object_object_get_ex(up, "uri", &v));
    assert_string_equal(json_object_get_string(v), req.uri);
    assert_true(json_object_object_get_ex(up, "id", &v));
    assert_string_equal(json_object_get_string(v), "sku-1");
    assert_true(json_object_object_get_ex(up, "metadata", &meta));
    assert_int_equal(json_object_object_length(meta), 1);
    assert_true(json_object_object_get_ex(meta, "accessControlType", &v));
    assert_string_equal(json_object_get_string(v), CDN_PRIVATE);
    assert_false(json_object_object_get_ex(up, "extra", NULL));
    json_object_put(up);
    agw_request_clear(&req);
}

static void
test_upstream_body_minimal(void **state)
{
    struct agw_request req;
    json_object *up, *v;

    (void)state;
    parse_ok(&req, "{\"uri\":\"" URI "\",\"unknown\":true,\"metadata\":{}}");
    assert_null(req.id);
    assert_string_equal(req.upstream_body, "{\"uri\":\"" URI "\"}");
    up = json_tokener_parse(req.upstream_body);
    assert_non_null(up);
    assert_int_equal(json_object_object_length(up), 1);
    assert_true(json_object_object_get_ex(up, "uri", &v));
    assert_string_equal(json_object_get_string(v), URI);
    json_object_put(up);
    agw_request_clear(&req);

    /* an explicit PUBLIC is forwarded, since the caller named it */
    parse_ok(&req, "{\"uri\":\"" URI "\",\"metadata\":{\"accessControlType\":"
                   "\"" PUBLIC "\"}}");
    assert_string_equal(req.upstream_body,
                        "{\"uri\":\"" URI "\",\"metadata\":{\"accessControlType"
                        "\":\"" PUBLIC "\"}}");
    agw_request_clear(&req);
}

/* Escapes in the input are decoded, and the value checked is the value
 * forwarded: with duplicate keys json-c keeps the last, for both. */
static void
test_upstream_body_escapes_and_duplicates(void **state)
{
    struct agw_request req;
    json_object *up, *v;

    (void)state;
    parse_ok(&req, "{\"uri\":\"https:\\/\\/example.com\\/\\u0061.png\"}");
    assert_string_equal(req.uri, "https://example.com/a.png");
    assert_string_equal(req.upstream_body,
                        "{\"uri\":\"https://example.com/a.png\"}");
    agw_request_clear(&req);

    expect_err("{\"uri\":\"" URI "\",\"uri\":\"http://127.0.0.1/\"}",
               "uri host is not globally reachable (loopback, private, "
               "reserved or a local name); Connectly cannot fetch it");
    parse_ok(&req, "{\"uri\":\"http://127.0.0.1/\",\"uri\":\"" URI "\"}");
    up = json_tokener_parse(req.upstream_body);
    assert_non_null(up);
    assert_true(json_object_object_get_ex(up, "uri", &v));
    assert_string_equal(json_object_get_string(v), URI);
    json_object_put(up);
    agw_request_clear(&req);
}

/* --------------------------------------------------------- dedupe key */

static void
test_dedupe_equivalent_uris(void **state)
{
    static const char *const same[] = {
        "{\"uri\":\"https://example.com/a~b.png\"}",
        "{\"uri\":\"HTTPS://EXAMPLE.COM/a~b.png\"}",
        "{\"uri\":\"https://example.com:443/a~b.png\"}",
        "{\"uri\":\"https://example.com/a~b.png#top\"}",
        "{\"uri\":\"https://example.com/a%7Eb.png\"}",
        "{\"uri\":\"https://Example.com:443/a%7eb.png#x\"}",
        "{\"uri\":\"https://example.com/a~b.png\",\"unknown\":1}",
        "{\"uri\":\"https://example.com/a~b.png\",\"metadata\":{}}",
        ("{\"uri\":\"https://example.com/a~b.png\",\"metadata\":"
         "{\"accessControlType\":\"ASSET_ACCESS_CONTROL_TYPE_PUBLIC\"}}"),
        "{\"uri\":\"https://example.com/a~b.png\",\"id\":null}",
    };
    char *first = key_of(BIZ, same[0]);
    char *upper = key_of(BIZ_UPPER, same[0]);
    size_t i;

    (void)state;
    for (i = 1; i < N_ELEMS(same); i++) {
        char *k = key_of(BIZ, same[i]);

        if (strcmp(k, first) != 0) {
            fail_msg("key of %s differs from %s", same[i], same[0]);
        }
        free(k);
    }
    assert_string_equal(upper, first); /* UUIDs are case-insensitive */
    free(first);
    free(upper);
}

static void
test_dedupe_different(void **state)
{
    static const char *const differ[] = {
        "{\"uri\":\"https://example.com/a.png\"}",
        "{\"uri\":\"https://example.com/A.png\"}",
        "{\"uri\":\"http://example.com/a.png\"}",
        "{\"uri\":\"https://example.com:8443/a.png\"}",
        "{\"uri\":\"https://example.com/a.png?\"}",
        "{\"uri\":\"https://example.com/a.png?v=2\"}",
        "{\"uri\":\"https://example.org/a.png\"}",
        "{\"uri\":\"https://example.com/a%2Fb.png\"}",
        "{\"uri\":\"https://example.com/a/b.png\"}",
        "{\"uri\":\"https://example.com/a.png\",\"id\":\"one\"}",
        "{\"uri\":\"https://example.com/a.png\",\"id\":\"two\"}",
        ("{\"uri\":\"https://example.com/a.png\",\"metadata\":"
         "{\"accessControlType\":\"ASSET_ACCESS_CONTROL_TYPE_PRIVATE\"}}"),
        ("{\"uri\":\"https://example.com/a.png\",\"metadata\":"
         "{\"accessControlType\":\"ASSET_ACCESS_CONTROL_TYPE_CDN_PRIVATE\"}}"),
    };
    char *keys[N_ELEMS(differ) + 1];
    size_t i, j, n = N_ELEMS(differ);

    (void)state;
    for (i = 0; i < n; i++) {
        keys[i] = key_of(BIZ, differ[i]);
    }
    keys[n] = key_of(BIZ2, differ[0]); /* another business */
    for (i = 0; i <= n; i++) {
        for (j = i + 1; j <= n; j++) {
            if (strcmp(keys[i], keys[j]) == 0) {
                fail_msg("same key for cases %zu and %zu", i, j);
            }
        }
    }
    for (i = 0; i <= n; i++) {
        free(keys[i]);
    }
}

static void
test_dedupe_key_definition(void **state)
{
    static const char parts[] =
        BIZ "\0https://example.com/a\0" PRIVATE "\0sku\0";
    char want[65], got[65], again[65], none[65], empty[65];
    struct agw_request req;

    (void)state;
    /* SHA-256 over the four parts, each with its NUL */
    agw_sha256_hex(parts, sizeof(parts) - 1, want);
    agw_dedupe_key(BIZ_UPPER, "https://example.com/a", PRIVATE, "sku", got);
    assert_string_equal(got, want);
    agw_dedupe_key(BIZ, "https://example.com/a", PRIVATE, "sku", again);
    assert_string_equal(again, want);

    /* the parsed request uses exactly that key */
    parse_ok(&req, "{\"uri\":\"HTTPS://example.com:443/a#f\",\"id\":\"sku\","
                   "\"metadata\":{\"accessControlType\":\"" PRIVATE "\"}}");
    assert_string_equal(req.dedupe_key, want);
    agw_request_clear(&req);

    /* an absent id hashes as empty; NULL access means PUBLIC */
    agw_dedupe_key(BIZ, "u", PUBLIC, NULL, none);
    agw_dedupe_key(BIZ, "u", NULL, "", empty);
    assert_string_equal(none, empty);

    /* the separators matter: ("ab","c") is not ("a","bc") */
    agw_dedupe_key(BIZ, "ab", "c", "", got);
    agw_dedupe_key(BIZ, "a", "bc", "", again);
    assert_string_not_equal(got, again);
}

/* ------------------------------------------------------------- clear */

static void
test_clear_twice(void **state)
{
    struct agw_request req;

    (void)state;
    parse_ok(&req, "{\"uri\":\"" URI "\",\"id\":\"a\"}");
    agw_request_clear(&req);
    assert_true(all_zero(&req, sizeof(req)));
    agw_request_clear(&req);
    assert_true(all_zero(&req, sizeof(req)));
    agw_request_clear(NULL);
}

/* -------------------------------------------------------------- memo */

/* A and B are equal parses held in separate allocations. */
static void
assert_same_parse(const struct agw_request *a, const struct agw_request *b)
{
    assert_string_equal(a->business_id, b->business_id);
    assert_string_equal(a->uri, b->uri);
    assert_string_equal(a->uri_normalized, b->uri_normalized);
    if (a->id == NULL || b->id == NULL) {
        assert_null(a->id);
        assert_null(b->id);
    } else {
        assert_string_equal(a->id, b->id);
        assert_ptr_not_equal(a->id, b->id);
    }
    assert_ptr_equal(a->access, b->access);
    assert_int_equal(a->access_given, b->access_given);
    assert_string_equal(a->upstream_body, b->upstream_body);
    assert_string_equal(a->dedupe_key, b->dedupe_key);
    assert_ptr_not_equal(a->uri, b->uri);
    assert_ptr_not_equal(a->upstream_body, b->upstream_body);
}

/* A repeated body (served from the memo) parses exactly like the first. */
static void
test_repeat_parses_same(void **state)
{
    static const char *const bodies[] = {
        "{\"uri\":\"HTTPS://Example.COM:443/a%7e?x=1#f\",\"id\":\"sku-9\","
        "\"metadata\":{\"accessControlType\":\"" CDN_PRIVATE "\"}}",
        "{\"uri\":\"" URI "\"}",
        "{\"uri\":\"" URI "\",\"metadata\":{}}",
    };
    struct agw_request first, again, third;
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(bodies); i++) {
        parse_ok(&first, bodies[i]);
        parse_ok(&again, bodies[i]);
        parse_ok(&third, bodies[i]);
        assert_same_parse(&first, &again);
        assert_same_parse(&first, &third);
        /* each is its own: clearing one leaves the others intact */
        agw_request_clear(&again);
        assert_string_equal(first.uri_normalized, third.uri_normalized);
        agw_request_clear(&first);
        assert_true(strlen(third.upstream_body) > 0);
        agw_request_clear(&third);
    }
}

/* Everything the parse depends on tells parses apart, even on a repeat
 * (run once as is, once with every input in one memo set). */
static void
test_repeat_keyed_by_whole_input(void **state)
{
    static const char priv[] = "{\"uri\":\"http://127.0.0.1:8080/a.png\"}";
    static const char body[] = "{\"uri\":\"" URI "\",\"id\":\"a1\"}";
    static const char body2[] = "{\"uri\":\"" URI "\",\"id\":\"a2\"}";
    struct agw_request a, b;
    char err[256];

    (void)state;
    /* allow_private: accepted with it, refused without, in either order */
    parse_ok_len(&a, BIZ, priv, sizeof(priv) - 1, true);
    agw_request_clear(&a);
    expect_err_len(BIZ, priv, sizeof(priv) - 1, false,
                   "uri host is not globally reachable (loopback, private, "
                   "reserved or a local name); Connectly cannot fetch it");
    parse_ok_len(&a, BIZ, priv, sizeof(priv) - 1, true);
    agw_request_clear(&a);

    /* the business id as spelled: kept for upstream, one dedupe key */
    parse_ok_len(&a, BIZ, body, sizeof(body) - 1, false);
    parse_ok_len(&b, BIZ_UPPER, body, sizeof(body) - 1, false);
    assert_string_equal(a.business_id, BIZ);
    assert_string_equal(b.business_id, BIZ_UPPER);
    assert_string_equal(a.dedupe_key, b.dedupe_key);
    agw_request_clear(&b);
    parse_ok_len(&b, BIZ2, body, sizeof(body) - 1, false);
    assert_string_equal(b.business_id, BIZ2);
    assert_string_not_equal(a.dedupe_key, b.dedupe_key);
    agw_request_clear(&b);

    /* one byte of body */
    parse_ok_len(&b, BIZ, body2, sizeof(body2) - 1, false);
    assert_string_equal(b.id, "a2");
    assert_string_not_equal(a.dedupe_key, b.dedupe_key);
    agw_request_clear(&b);
    /* a prefix of a remembered body is not that body */
    assert_false(agw_request_parse(&b, BIZ, body, sizeof(body) - 2, false, err,
                                   sizeof(err)));
    assert_string_equal(err, MSG_OBJECT);
    agw_request_clear(&a);
}

static void
test_repeat_keyed_by_whole_input_colliding(void **state)
{
    agw_parse_memo_force_hash(true, 12345);
    test_repeat_keyed_by_whole_input(state);
    test_repeat_parses_same(state);
    agw_parse_memo_force_hash(false, 0);
}

/* {"uri":"https://example.com/N.png","id":"idN"} with the padding PAD. */
static size_t
numbered_body(char *buf, size_t size, int n, size_t pad)
{
    int len = snprintf(buf, size,
                       "{\"uri\":\"https://example.com/%d.png\",\"id\":"
                       "\"id%d\"%*s}",
                       n, n, (int)pad, "");

    assert_true(len > 0 && (size_t)len < size);
    return (size_t)len;
}

static void
check_numbered(int n, size_t pad)
{
    char body[8192], want[64];
    struct agw_request req;
    size_t len = numbered_body(body, sizeof(body), n, pad);

    parse_ok_len(&req, BIZ, body, len, false);
    snprintf(want, sizeof(want), "https://example.com/%d.png", n);
    assert_string_equal(req.uri, want);
    snprintf(want, sizeof(want), "id%d", n);
    assert_string_equal(req.id, want);
    agw_request_clear(&req);
}

/* Far more distinct bodies than are remembered, large ones among them:
 * whatever was given up or never kept still parses right. */
static void
test_repeat_many_bodies(void **state)
{
    int n, round;

    (void)state;
    for (round = 0; round < 2; round++) {
        for (n = 0; n < 6000; n++) {
            check_numbered(n, 0);
        }
        for (n = 0; n < 400; n++) {
            check_numbered(n, n % 2 == 0 ? 3000 : 5000); /* 5000: too big */
        }
    }
}

struct thread_run {
    int first;
    int failures;
};

static void *
parse_in_thread(void *arg)
{
    struct thread_run *run = arg;
    char body[256], want[64];
    struct agw_request req;
    char err[256];
    int i;

    for (i = 0; i < 3000; i++) {
        int n = run->first + i % 50;
        size_t len = numbered_body(body, sizeof(body), n, 0);

        snprintf(want, sizeof(want), "https://example.com/%d.png", n);
        if (!agw_request_parse(&req, BIZ, body, len, false, err, sizeof(err)) ||
            strcmp(req.uri, want) != 0) {
            run->failures++;
        }
        agw_request_clear(&req);
    }
    return NULL;
}

/* Each thread parses with its own state; results never cross threads. */
static void
test_parse_threads(void **state)
{
    struct thread_run runs[4];
    pthread_t th[4];
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(th); i++) {
        runs[i] = (struct thread_run){(int)i * 25, 0};
        assert_int_equal(
            pthread_create(&th[i], NULL, parse_in_thread, &runs[i]), 0);
    }
    for (i = 0; i < N_ELEMS(th); i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(runs[i].failures, 0);
    }
}

/* The upstream body is written without json-c; it must be json-c's bytes. */
static void
test_upstream_body_is_json_c_output(void **state)
{
    static const char *const uris[] = {
        URI,
        "HTTPS://Example.COM:443/a%7e?x=%2f#frag",
        "http://u:p@example.com/!$&'()*+,;=:@~-._/%41?q=a+b&c=/d?e",
        "http://[2606:4700:4700::1111]:8080/",
        "https://example.com",
    };
    static const char *const ids[] = {NULL, "sku-1", "Az09._:-"};
    size_t i, j, k;

    (void)state;
    for (i = 0; i < N_ELEMS(uris); i++) {
        for (j = 0; j < N_ELEMS(ids); j++) {
            for (k = 0; k < 4; k++) { /* 3: no metadata */
                json_object *want = json_object_new_object();
                char body[1024];
                struct agw_request req;
                int n =
                    snprintf(body, sizeof(body), "{\"uri\":\"%s\"", uris[i]);

                json_object_object_add(want, "uri",
                                       json_object_new_string(uris[i]));
                if (ids[j] != NULL) {
                    n += snprintf(body + n, sizeof(body) - (size_t)n,
                                  ",\"id\":\"%s\"", ids[j]);
                    json_object_object_add(want, "id",
                                           json_object_new_string(ids[j]));
                }
                if (k < 3) {
                    json_object *meta = json_object_new_object();

                    n += snprintf(body + n, sizeof(body) - (size_t)n,
                                  ",\"metadata\":{\"accessControlType\":"
                                  "\"%s\"}",
                                  agw_access_types[k]);
                    json_object_object_add(
                        meta, "accessControlType",
                        json_object_new_string(agw_access_types[k]));
                    json_object_object_add(want, "metadata", meta);
                }
                snprintf(body + n, sizeof(body) - (size_t)n, "}");
                parse_ok(&req, body);
                assert_string_equal(
                    req.upstream_body,
                    json_object_to_json_string_ext(
                        want, JSON_C_TO_STRING_PLAIN |
                                  JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(want);
                agw_request_clear(&req);
            }
        }
    }
}

/* -------------------------------------------------------------- util */

static void
test_util_is_uuid(void **state)
{
    (void)state;
    assert_true(agw_is_uuid(BIZ));
    assert_true(agw_is_uuid(BIZ_UPPER));
    assert_true(agw_is_uuid("00000000-0000-0000-0000-000000000000"));
    assert_true(agw_is_uuid("AbCdEf01-2345-6789-aBcD-eF0123456789"));
    assert_false(agw_is_uuid(NULL));
    assert_false(agw_is_uuid(""));
    assert_false(agw_is_uuid("550e8400-e29b-41d4-a716-44665544000"));
    assert_false(agw_is_uuid("550e8400-e29b-41d4-a716-4466554400000"));
    assert_false(agw_is_uuid("550e8400-e29b-41d4-a716-44665544000g"));
    assert_false(agw_is_uuid("550e8400-e29b-41d4-a7166-44665544000"));
    assert_false(agw_is_uuid("550e8400e-29b-41d4-a716-446655440000"));
    assert_false(agw_is_uuid("550e8400-e29b-41d4-a716-446655440000 "));
    assert_false(agw_is_uuid("550e8400 e29b 41d4 a716 446655440000"));
    assert_false(agw_is_uuid("550e8400-e29b-41d4-a716-44665544000-"));
}

static bool
is_lower_hex(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return s[len] == '\0';
}

static void
test_util_ids(void **state)
{
    char a[33], b[33], u[37], v[37];
    int i;

    (void)state;
    agw_request_id_new(a);
    agw_request_id_new(b);
    assert_true(is_lower_hex(a, 32));
    assert_string_not_equal(a, b);
    for (i = 0; i < 64; i++) {
        agw_uuid_v4(u);
        assert_true(agw_is_uuid(u));
        assert_int_equal(u[14], '4');              /* version */
        assert_non_null(strchr("89ab", u[19]));    /* variant */
        assert_true(strpbrk(u, "ABCDEF") == NULL); /* lower case */
    }
    agw_uuid_v4(v);
    assert_string_not_equal(u, v);
}

static bool
all_distinct(char (*ids)[33], size_t n)
{
    size_t i, j;

    for (i = 0; i < n; i++) {
        for (j = i + 1; j < n; j++) {
            if (strcmp(ids[i], ids[j]) == 0) {
                return false;
            }
        }
    }
    return true;
}

static void *
ids_in_thread(void *arg)
{
    char(*ids)[33] = arg;
    int i;

    for (i = 0; i < 100; i++) {
        agw_request_id_next(ids[i]);
    }
    return NULL;
}

/* Request ids: the format of agw_request_id_new(), never repeated within
 * a thread or across threads. */
static void
test_util_request_id_next(void **state)
{
    static char ids[400][33];
    pthread_t th[3];
    size_t i;

    (void)state;
    for (i = 0; i < 100; i++) {
        agw_request_id_next(ids[i]);
        assert_true(is_lower_hex(ids[i], 32));
    }
    for (i = 0; i < N_ELEMS(th); i++) {
        assert_int_equal(
            pthread_create(&th[i], NULL, ids_in_thread, ids[100 * (i + 1)]), 0);
    }
    for (i = 0; i < N_ELEMS(th); i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
    }
    for (i = 100; i < N_ELEMS(ids); i++) {
        assert_true(is_lower_hex(ids[i], 32));
    }
    assert_true(all_distinct(ids, N_ELEMS(ids)));
}

static void
test_util_fmt_long(void **state)
{
    static const struct {
        long long v;
        const char *want;
    } cases[] = {
        {0, "0"},
        {7, "7"},
        {10, "10"},
        {95, "95"},
        {-1, "-1"},
        {-120, "-120"},
        {LLONG_MAX, "9223372036854775807"},
        {LLONG_MIN, "-9223372036854775808"},
    };
    char out[21];
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(cases); i++) {
        assert_int_equal(agw_fmt_long(cases[i].v, out), strlen(cases[i].want));
        assert_string_equal(out, cases[i].want);
    }
}

static void
test_util_sha256_parts(void **state)
{
    static const char whole[] = "business\0uri\0access\0";
    const struct agw_span parts[] = {
        {"business", 9}, {"uri", 4}, {"", 0}, {"access", 7}};
    char want[65], got[65];

    (void)state;
    agw_sha256_hex(whole, sizeof(whole) - 1, want);
    agw_sha256_hex_parts(parts, N_ELEMS(parts), got);
    assert_string_equal(got, want);
    agw_sha256_hex_parts(parts, 0, got);
    assert_string_equal(got, "e3b0c44298fc1c149afbf4c8996fb924"
                             "27ae41e4649b934ca495991b7852b855");
}

static void
test_util_hex_and_sha256(void **state)
{
    static const unsigned char bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char hex[13], out[65];

    (void)state;
    agw_hex(bytes, sizeof(bytes), hex);
    assert_string_equal(hex, "00017f80abff");
    agw_hex(bytes, 0, hex);
    assert_string_equal(hex, "");
    /* FIPS 180-2 test vectors */
    agw_sha256_hex("", 0, out);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb924"
                             "27ae41e4649b934ca495991b7852b855");
    agw_sha256_hex("abc", 3, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223"
                             "b00361a396177a9cb410ff61f20015ad");
    /* the SPEC §2 clients-file example: sha256("test") */
    agw_sha256_hex("test", 4, out);
    assert_string_equal(out, "9f86d081884c7d659a2feaa0c55ad015"
                             "a3bf4f1b2b0b822cd15d6c15b0f00a08");
}

static void
test_util_now_us(void **state)
{
    int64_t a, b;

    (void)state;
    a = agw_now_us();
    b = agw_now_us();
    assert_true(a > 0);
    assert_true(b >= a);
    assert_true(b - a < 1000000); /* two reads, not a second apart */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_business_id),
        cmocka_unit_test(test_body_not_an_object),
        cmocka_unit_test(test_body_nul_byte),
        cmocka_unit_test(test_body_trailing_whitespace_ok),
        cmocka_unit_test(test_body_depth),
        cmocka_unit_test(test_uri_messages),
        cmocka_unit_test(test_uri_private_allowed),
        cmocka_unit_test(test_id),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_access_types),
        cmocka_unit_test(test_validation_order),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_fields_and_upstream_body),
        cmocka_unit_test(test_upstream_body_minimal),
        cmocka_unit_test(test_upstream_body_escapes_and_duplicates),
        cmocka_unit_test(test_dedupe_equivalent_uris),
        cmocka_unit_test(test_dedupe_different),
        cmocka_unit_test(test_dedupe_key_definition),
        cmocka_unit_test(test_clear_twice),
        cmocka_unit_test(test_repeat_parses_same),
        cmocka_unit_test(test_repeat_keyed_by_whole_input),
        cmocka_unit_test(test_repeat_keyed_by_whole_input_colliding),
        cmocka_unit_test(test_repeat_many_bodies),
        cmocka_unit_test(test_parse_threads),
        cmocka_unit_test(test_upstream_body_is_json_c_output),
        cmocka_unit_test(test_util_is_uuid),
        cmocka_unit_test(test_util_ids),
        cmocka_unit_test(test_util_request_id_next),
        cmocka_unit_test(test_util_fmt_long),
        cmocka_unit_test(test_util_sha256_parts),
        cmocka_unit_test(test_util_hex_and_sha256),
        cmocka_unit_test(test_util_now_us),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
