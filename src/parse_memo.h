/*
 * parse_memo.h - a per-thread memo of recent successful Create Asset
 * parses, so that a repeated body skips agw_request_parse()'s real work.
 * The memo keeps each parse as bytes its caller (request.c) lays out.
 */
#ifndef AGW_PARSE_MEMO_H
#define AGW_PARSE_MEMO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The key is the exact input of agw_request_parse(): BUSINESS_ID (already
 * checked to be a UUID, as sent: 37 bytes with the NUL), ALLOW_PRIVATE
 * and the LEN bytes of BODY; only bodies up to a few KiB are remembered.
 * Entries are compared byte for byte, so a hash collision costs a miss,
 * never a wrong answer. Each thread has its own memo, freed when the
 * thread exits; nothing is shared between threads.
 */

/*
 * Looks the input up. 1: found, *VALUE is what was put for it (the
 * memo's own bytes, aligned for any type: copy them out before the next
 * agw_parse_memo_put() on this thread); 0: not found; -1: out of memory.
 * HASH is set for a later agw_parse_memo_put() of the same input on the
 * same thread.
 */
int agw_parse_memo_get(const char *business_id, bool allow_private,
                       const char *body, size_t len, const void **value,
                       uint64_t *hash);

/*
 * After agw_parse_memo_get() missed and set HASH: room for VALUE_LEN
 * bytes (aligned for any type) to remember for this input, which the
 * caller fills at once. NULL: not remembered (too large, over the
 * memo's budget, out of memory); best effort, nothing to report.
 */
void *agw_parse_memo_put(uint64_t hash, const char *business_id,
                         bool allow_private, const char *body, size_t len,
                         size_t value_len);

/*
 * For tests, on the calling thread: with FORCE, every input hashes to
 * HASH, so inputs collide and must be told apart by their bytes.
 */
void agw_parse_memo_force_hash(bool force, unsigned long long hash);

#endif
