/*
 * reply.c - Connectly-shaped answers, and the response record that one
 * upstream call hands to every caller waiting on it.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <json-c/json.h>

#include "metrics.h"
#include "reply.h"
#include "util.h"

const char *
agw_grpc_code_name(int code)
{
    switch (code) {
    case AGW_CODE_INVALID_ARGUMENT:
        return "INVALID_ARGUMENT";
    case AGW_CODE_DEADLINE_EXCEEDED:
        return "DEADLINE_EXCEEDED";
    case AGW_CODE_NOT_FOUND:
        return "NOT_FOUND";
    case AGW_CODE_PERMISSION_DENIED:
        return "PERMISSION_DENIED";
    case AGW_CODE_RESOURCE_EXHAUSTED:
        return "RESOURCE_EXHAUSTED";
    case AGW_CODE_UNIMPLEMENTED:
        return "UNIMPLEMENTED";
    case AGW_CODE_INTERNAL:
        return "INTERNAL";
    case AGW_CODE_UNAVAILABLE:
        return "UNAVAILABLE";
    case AGW_CODE_UNAUTHENTICATED:
        return "UNAUTHENTICATED";
    default:
        return "UNKNOWN";
    }
}

char *
agw_error_body(int code, const char *message, size_t *len)
{
    struct json_object *obj = json_object_new_object();
    struct json_object *text;
    char *prefixed = NULL;
    char *out;
    size_t n;

    n = strlen("XASSET.: ") + strlen(agw_grpc_code_name(code)) +
        strlen(message) + 1;
    prefixed = malloc(n);
    if (obj == NULL || prefixed == NULL) {
        abort();
    }
    snprintf(prefixed, n, "XASSET.%s: %s", agw_grpc_code_name(code), message);
    text = json_object_new_string(prefixed);
    json_object_object_add(obj, "code", json_object_new_int(code));
    json_object_object_add(obj, "message", text);
    out = strdup(json_object_to_json_string_ext(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(obj);
    free(prefixed);
    if (out == NULL) {
        abort();
    }
    if (len != NULL) {
        *len = strlen(out);
    }
    return out;
}

void
agw_response_error(struct agw_response *resp, int status, int code,
                   const char *message)
{
    resp->status = status;
    resp->body = agw_error_body(code, message, &resp->len);
    resp->retry_after_s = -1;
}

void
agw_response_copy(struct agw_response *dst, const struct agw_response *src)
{
    *dst = *src;
    dst->body = malloc(src->len + 1);
    if (dst->body == NULL) {
        abort();
    }
    memcpy(dst->body, src->body, src->len);
    dst->body[src->len] = '\0';
}

void
agw_response_clear(struct agw_response *resp)
{
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
    resp->retry_after_s = -1;
}

static const char *
reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return NULL; /* evhttp picks a generic phrase */
    }
}

void
agw_reply_send(struct evhttp_request *req, const struct agw_response *resp)
{
    agw_reply_send_with(req, resp, NULL, 0);
}

/*
 * The body goes straight into REQ's output buffer (one copy, no scratch
 * evbuffer); evhttp sends what is there when given no buffer of its own.
 */
void
agw_reply_send_with(struct evhttp_request *req, const struct agw_response *resp,
                    const struct agw_header *extra, size_t n)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    char retry[21];

    evhttp_remove_header(headers, "Content-Type");
    evhttp_add_header(headers, "Content-Type", "application/json");
    for (size_t i = 0; i < n; i++) {
        evhttp_add_header(headers, extra[i].name, extra[i].value);
    }
    if (resp->retry_after_s >= 0) {
        agw_fmt_long(resp->retry_after_s, retry);
        evhttp_remove_header(headers, "Retry-After");
        evhttp_add_header(headers, "Retry-After", retry);
    }
    agw_metrics_count_request(resp->status);
    if (evbuffer_add(evhttp_request_get_output_buffer(req), resp->body,
                     resp->len) != 0) {
        evhttp_send_error(req, 503, "Out of memory");
        return;
    }
    evhttp_send_reply(req, resp->status, reason_phrase(resp->status), NULL);
}

void
agw_reply_error(struct evhttp_request *req, int status, int code,
                const char *message)
{
    struct agw_response resp;

    agw_response_error(&resp, status, code, message);
    agw_reply_send(req, &resp);
    agw_response_clear(&resp);
}

/* Length of ID when it is acceptable as a request id, else 0. */
static size_t
request_id_acceptable(const char *id)
{
    size_t n = 0;

    for (; id[n] != '\0'; n++) {
        char c = id[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
                  c == '-';
        if (!ok || n >= AGW_REQUEST_ID_MAX) {
            return 0;
        }
    }
    return n;
}

void
agw_reply_request_id(struct evhttp_request *req,
                     char out[AGW_REQUEST_ID_MAX + 1])
{
    const char *given = evhttp_find_header(
        evhttp_request_get_input_headers(req), "X-Request-Id");
    size_t len = given != NULL ? request_id_acceptable(given) : 0;

    if (len > 0) {
        memcpy(out, given, len + 1);
    } else {
        agw_request_id_next(out);
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Request-Id",
                      out);
}
