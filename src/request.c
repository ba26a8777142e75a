/*
 * request.c - parses and validates a Create Asset call (SPEC §2), builds
 * the body sent to Connectly and the dedupe key (SPEC §3).
 */
#include "request.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "uri.h"
#include "util.h"

const char *const agw_access_types[3] = {
    "ASSET_ACCESS_CONTROL_TYPE_PUBLIC",
    "ASSET_ACCESS_CONTROL_TYPE_PRIVATE",
    "ASSET_ACCESS_CONTROL_TYPE_CDN_PRIVATE",
};

#define MSG_NOT_OBJECT "request body must be a JSON object"
#define MSG_OOM "request could not be validated: out of memory"

/*
 * json-c lets \u0000 into a string; C code downstream would silently cut
 * the value at it, so such strings are refused.
 */
static bool
string_has_nul(json_object *v)
{
    const char *s = json_object_get_string(v);

    return strlen(s) != (size_t)json_object_get_string_len(v);
}

/* A member that is absent or JSON null yields NULL, as in proto3 JSON. */
static json_object *
member(json_object *obj, const char *key)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(obj, key, &v)) {
        return NULL;
    }
    return v;
}

/*
 * The whole body must be exactly one JSON object (trailing whitespace
 * aside). json-c's STRICT mode refuses trailing garbage itself; comparing
 * the parse end with LEN also catches a NUL byte, where json-c stops.
 */
static bool
parse_body(const char *body, size_t len, json_object **out, char *err,
           size_t errlen)
{
    json_tokener *tok;
    json_object *root;
    enum json_tokener_error jerr;

    *out = NULL;
    if (body == NULL || len == 0 || len > INT_MAX) {
        agw_set_err(err, errlen, MSG_NOT_OBJECT);
        return false;
    }
    /*
     * json-c's depth counts one more than the container levels it allows:
     * json_tokener_new_ex(16) takes only 15 nested objects/arrays.
     */
    tok = json_tokener_new_ex(AGW_JSON_MAX_DEPTH + 1);
    if (tok == NULL) {
        agw_set_err(err, errlen, MSG_OOM);
        return false;
    }
    json_tokener_set_flags(tok,
                           JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    root = json_tokener_parse_ex(tok, body, (int)len);
    jerr = json_tokener_get_error(tok);
    if (root != NULL && json_tokener_get_parse_end(tok) == len &&
        json_object_is_type(root, json_type_object)) {
        json_tokener_free(tok);
        *out = root;
        return true;
    }
    json_object_put(root);
    json_tokener_free(tok);
    if (jerr == json_tokener_error_depth) {
        agw_set_err(err, errlen, "request body nests deeper than %d levels",
                AGW_JSON_MAX_DEPTH);
    } else {
        agw_set_err(err, errlen, MSG_NOT_OBJECT);
    }
    return false;
}

static bool
take_uri(struct agw_create *req, json_object *root, bool allow_private,
         char *err, size_t errlen)
{
    json_object *v = member(root, "uri");
    enum agw_uri_status st;

    if (v == NULL) {
        agw_set_err(err, errlen, "uri is required"); /* the vendor's text */
        return false;
    }
    if (!json_object_is_type(v, json_type_string)) {
        agw_set_err(err, errlen, "uri must be a string");
        return false;
    }
    if (string_has_nul(v)) {
        agw_set_err(err, errlen, "uri must not contain NUL characters");
        return false;
    }
    st = agw_uri_check(json_object_get_string(v), allow_private,
                       &req->uri_normalized);
    if (st != AGW_URI_OK) {
        agw_set_err(err, errlen, "uri %s", agw_uri_status_text(st));
        return false;
    }
    req->uri = strdup(json_object_get_string(v));
    if (req->uri == NULL || req->uri_normalized == NULL) {
        agw_set_err(err, errlen, MSG_OOM);
        return false;
    }
    return true;
}

static bool
id_is_valid(json_object *v)
{
    const char *s;
    int len, i;

    if (!json_object_is_type(v, json_type_string)) {
        return false;
    }
    s = json_object_get_string(v);
    len = json_object_get_string_len(v);
    if (len < 1 || len > AGW_ID_MAX_LEN) {
        return false;
    }
    /* Stepping over LEN bytes, not to the NUL, refuses embedded NULs. */
    for (i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
              c == '-')) {
            return false;
        }
    }
    return true;
}

static bool
take_id(struct agw_create *req, json_object *root, char *err, size_t errlen)
{
    json_object *v = member(root, "id");

    if (v == NULL) {
        return true;
    }
    if (!id_is_valid(v)) {
        agw_set_err(err, errlen,
                "id must be 1-%d characters of A-Z a-z 0-9 . _ : -",
                AGW_ID_MAX_LEN);
        return false;
    }
    req->id = strdup(json_object_get_string(v));
    if (req->id == NULL) {
        agw_set_err(err, errlen, MSG_OOM);
        return false;
    }
    return true;
}

/* The static string in agw_access_types equal to V, or NULL. */
static const char *
access_type_of(json_object *v)
{
    size_t i;

    if (!json_object_is_type(v, json_type_string) || string_has_nul(v)) {
        return NULL;
    }
    for (i = 0; i < 3; i++) {
        if (strcmp(json_object_get_string(v), agw_access_types[i]) == 0) {
            return agw_access_types[i];
        }
    }
    return NULL;
}

static bool
take_metadata(struct agw_create *req, json_object *root, char *err,
              size_t errlen)
{
    json_object *meta = member(root, "metadata");
    json_object *v;

    req->access = agw_access_types[0];
    if (meta == NULL) {
        return true;
    }
    if (!json_object_is_type(meta, json_type_object)) {
        agw_set_err(err, errlen, "metadata must be an object");
        return false;
    }
    v = member(meta, "accessControlType");
    if (v == NULL) {
        return true;
    }
    req->access = access_type_of(v);
    if (req->access == NULL) {
        agw_set_err(err, errlen,
                "metadata.accessControlType must be one of %s, %s, %s",
                agw_access_types[0], agw_access_types[1], agw_access_types[2]);
        return false;
    }
    req->access_given = true;
    return true;
}

static bool
add_string(json_object *obj, const char *key, const char *value)
{
    json_object *s = json_object_new_string(value);

    if (s == NULL) {
        return false;
    }
    if (json_object_object_add(obj, key, s) != 0) {
        json_object_put(s);
        return false;
    }
    return true;
}

/*
 * Only validated fields go upstream, rebuilt by json-c: unknown fields
 * stay behind, and Connectly never sees a duplicate key, lenient syntax
 * json-c tolerated, or a value other than the one that was checked.
 */
static char *
build_upstream_body(const struct agw_create *req)
{
    json_object *obj = json_object_new_object();
    json_object *meta = NULL;
    char *out = NULL;
    bool ok;

    ok = obj != NULL && add_string(obj, "uri", req->uri) &&
         (req->id == NULL || add_string(obj, "id", req->id));
    if (ok && req->access_given) {
        meta = json_object_new_object();
        ok = meta != NULL &&
             add_string(meta, "accessControlType", req->access) &&
             json_object_object_add(obj, "metadata", meta) == 0;
        if (!ok) {
            json_object_put(meta);
        }
    }
    if (ok) {
        const char *s = json_object_to_json_string_ext(
            obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

        out = s != NULL ? strdup(s) : NULL;
    }
    json_object_put(obj);
    return out;
}

bool
agw_create_parse(struct agw_create *req, const char *business_id,
                 const char *body, size_t len, bool allow_private, char *err,
                 size_t errlen)
{
    json_object *root = NULL;
    bool ok;

    memset(req, 0, sizeof(*req));
    if (!agw_is_uuid(business_id)) {
        agw_set_err(err, errlen, "businessId must be a UUID");
        return false;
    }
    memcpy(req->business_id, business_id, sizeof(req->business_id));
    ok = parse_body(body, len, &root, err, errlen) &&
         take_uri(req, root, allow_private, err, errlen) &&
         take_id(req, root, err, errlen) &&
         take_metadata(req, root, err, errlen);
    json_object_put(root);
    if (ok) {
        req->upstream_body = build_upstream_body(req);
        ok = req->upstream_body != NULL;
        if (!ok) {
            agw_set_err(err, errlen, MSG_OOM);
        }
    }
    if (!ok) {
        agw_create_clear(req);
        return false;
    }
    agw_dedupe_key(req->business_id, req->uri_normalized, req->access, req->id,
                   req->dedupe_key);
    return true;
}

void
agw_create_clear(struct agw_create *req)
{
    if (req == NULL) {
        return;
    }
    free(req->uri);
    free(req->uri_normalized);
    free(req->id);
    free(req->upstream_body);
    memset(req, 0, sizeof(*req));
}

/*
 * UUIDs are case-insensitive (RFC 4122 §3), so the business id is
 * lower-cased here: "550E8400-..." and "550e8400-..." are one business
 * and share cached answers. req->business_id keeps the caller's spelling
 * for the upstream path. NULL ACCESS means the default, PUBLIC; NULL
 * strings otherwise hash as empty. Each part is hashed with its NUL so
 * that ("ab", "c") and ("a", "bc") differ.
 */
void
agw_dedupe_key(const char *business_id, const char *uri_normalized,
               const char *access, const char *id, char out[65])
{
    const char *parts[4];
    size_t lens[4], total = 0, off = 0, i;
    char *buf;

    parts[0] = business_id != NULL ? business_id : "";
    parts[1] = uri_normalized != NULL ? uri_normalized : "";
    parts[2] = access != NULL ? access : agw_access_types[0];
    parts[3] = id != NULL ? id : "";
    for (i = 0; i < 4; i++) {
        lens[i] = strlen(parts[i]) + 1;
        total += lens[i];
    }
    buf = malloc(total);
    if (buf == NULL) {
        /* A made-up key could return another request's asset. */
        fputs("asset-gateway: out of memory building a dedupe key\n", stderr);
        abort();
    }
    for (i = 0; i < 4; i++) {
        memcpy(buf + off, parts[i], lens[i]);
        off += lens[i];
    }
    for (i = 0; i < lens[0]; i++) {
        if (buf[i] >= 'A' && buf[i] <= 'Z') {
            buf[i] = (char)(buf[i] - 'A' + 'a');
        }
    }
    agw_sha256_hex(buf, total, out);
    free(buf);
}
