/*
 * parse_memo.h - a per-thread memo of recent successful Create Asset
 * parses, so that a repeated body skips agw_create_parse()'s real work.
 */
#ifndef AGW_PARSE_MEMO_H
#define AGW_PARSE_MEMO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agw_create;

/*
 * The key is the exact input of agw_create_parse(): BUSINESS_ID (already
 * checked to be a UUID, as sent: 37 bytes with the NUL), ALLOW_PRIVATE
 * and the LEN bytes of BODY; only bodies up to a few KiB are remembered.
 * Entries are compared byte for byte, so a hash collision costs a miss,
 * never a wrong answer. Each thread has its own memo, freed when the
 * thread exits; nothing is shared between threads.
 */

/*
 * Looks the input up. 1: found, REQ (zeroed by the caller) is filled
 * with a copy the caller owns (release with agw_create_clear()); 0: not
 * found, REQ untouched; -1: out of memory. HASH is set for a later
 * agw_parse_memo_put() of the same input on the same thread.
 */
int agw_parse_memo_get(const char *business_id, bool allow_private,
                       const char *body, size_t len, struct agw_create *req,
                       uint64_t *hash);

/*
 * Remembers REQ, which agw_create_parse() just produced from this input
 * (REQ->business_id is the input's), after agw_parse_memo_get() missed
 * and set HASH. Copies what it keeps; best effort, no failure to report.
 */
void agw_parse_memo_put(uint64_t hash, bool allow_private, const char *body,
                        size_t len, const struct agw_create *req);

/*
 * For tests, on the calling thread: with FORCE, every input hashes to
 * HASH, so inputs collide and must be told apart by their bytes.
 */
void agw_parse_memo_force_hash(bool force, unsigned long long hash);

#endif
