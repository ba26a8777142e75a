/*
 * request.h - a Create Asset call: body parsing, validation (SPEC §2),
 * the body sent upstream and the dedupe key (SPEC §3).
 */
#ifndef AGW_REQUEST_H
#define AGW_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#define AGW_ID_MAX_LEN 128
#define AGW_JSON_MAX_DEPTH 16

extern const char *const agw_access_types[3]; /* PUBLIC first: the default */

/*
 * uri, uri_normalized, upstream_body and id share one allocation owned by
 * the struct: free them only with agw_request_clear(), never one by one.
 */
struct agw_request {
    char business_id[37];
    char *uri; /* as the caller sent it */
    char *uri_normalized;
    char *id;            /* NULL when absent */
    const char *access;  /* effective type: static string */
    bool access_given;   /* whether the caller named it */
    char *upstream_body; /* canonical JSON for Connectly */
    char dedupe_key[65]; /* SHA-256 hex */
};

/*
 * Validates BUSINESS_ID and the JSON BODY of LEN bytes. On success fills
 * REQ (release with agw_request_clear()) and returns true. On failure
 * returns false, leaves REQ cleared and writes a message naming the field
 * (for "XASSET.INVALID_ARGUMENT: <message>") into ERR. Thread-safe: each
 * thread keeps its own parser and memo of recent parses (parse_memo.h),
 * freed when the thread exits.
 */
bool agw_request_parse(struct agw_request *req, const char *business_id,
                       const char *body, size_t len, bool allow_private,
                       char *err, size_t errlen);

void agw_request_clear(struct agw_request *req);

/*
 * For copies kept elsewhere (the memo of parses keeps one in a block of
 * its own), without knowing the layout: the size in bytes of REQ's one string
 * allocation; and a copy TO of FROM whose strings are written to DST, which has
 * room for agw_request_strings_len(FROM) bytes. When DST is a malloc'd block of
 * its own, TO owns it (release with agw_request_clear()); when DST lies inside
 * a larger block, never pass TO to agw_request_clear().
 */
size_t agw_request_strings_len(const struct agw_request *req);
void agw_request_copy(struct agw_request *to, const struct agw_request *from,
                      char *dst);

/*
 * The dedupe key: SHA-256 over business id, normalized URI, effective
 * access type and custom id (empty when absent), each NUL-terminated.
 */
void agw_dedupe_key(const char *business_id, const char *uri_normalized,
                    const char *access, const char *id, char out[65]);

#endif
