/*
 * fuzz_request.c - libFuzzer target: the input as a Create Asset body
 * (agw_request_parse, both allow_private values) and as a source URI
 * (agw_uri_check, agw_uri_normalize), with the properties they promise.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "request.h"
#include "uri.h"

#define BUSINESS "550e8400-e29b-41d4-a716-446655440000"

/* A broken promise is a finding: abort so libFuzzer keeps the input. */
#define REQUIRE(cond)                                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_request: %s:%d: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

static bool
is_lower_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return s[len] == '\0';
}

/* What goes upstream is one JSON object carrying exactly the checked uri
 * (and id when given). */
static void
check_upstream_body(const struct agw_request *req)
{
    json_object *root = json_tokener_parse(req->upstream_body);
    json_object *v = NULL;

    REQUIRE(root != NULL && json_object_is_type(root, json_type_object));
    REQUIRE(json_object_object_get_ex(root, "uri", &v));
    REQUIRE(strcmp(json_object_get_string(v), req->uri) == 0);
    if (req->id != NULL) {
        REQUIRE(json_object_object_get_ex(root, "id", &v));
        REQUIRE(strcmp(json_object_get_string(v), req->id) == 0);
    }
    json_object_put(root);
}

static void
parse_body(const uint8_t *data, size_t size, bool allow_private)
{
    struct agw_request req;
    char err[256];

    err[0] = '\0';
    if (!agw_request_parse(&req, BUSINESS, (const char *)data, size,
                           allow_private, err, sizeof(err))) {
        REQUIRE(err[0] != '\0');
        REQUIRE(req.uri == NULL && req.upstream_body == NULL);
        return;
    }
    REQUIRE(req.uri != NULL && req.uri_normalized != NULL);
    REQUIRE(req.access != NULL);
    REQUIRE(is_lower_hex(req.dedupe_key, 64));
    REQUIRE(agw_uri_check(req.uri, allow_private, NULL) == AGW_URI_OK);
    check_upstream_body(&req);
    agw_request_clear(&req);
}

/* The normalized form of an accepted URI is accepted too, and is its own
 * normal form: otherwise one source could get two dedupe keys. */
static void
check_uri(const char *s)
{
    char *strict = NULL, *loose = NULL, *again;
    enum agw_uri_status st_strict = agw_uri_check(s, false, &strict);
    enum agw_uri_status st_loose = agw_uri_check(s, true, &loose);

    REQUIRE(agw_uri_status_text(st_strict) != NULL);
    if (st_strict == AGW_URI_OK) {
        REQUIRE(st_loose == AGW_URI_OK);
    }
    if (st_loose == AGW_URI_OK) {
        REQUIRE(loose != NULL);
        REQUIRE(strlen(loose) <= strlen(s));
        REQUIRE(agw_uri_check(loose, st_strict != AGW_URI_OK, NULL) ==
                AGW_URI_OK);
        again = agw_uri_normalize(loose);
        REQUIRE(again != NULL && strcmp(again, loose) == 0);
        free(again);
    } else {
        REQUIRE(loose == NULL);
    }
    if (strict != NULL) {
        REQUIRE(strcmp(strict, loose) == 0);
    }
    free(strict);
    free(loose);
    free(agw_uri_normalize(s));
    (void)agw_host_is_private(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;

    parse_body(data, size, false);
    parse_body(data, size, true);
    s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    check_uri(s);
    free(s);
    return 0;
}
