/*
 * redact.h - takes secrets (the API key) out of bodies that came from
 * outside before they are stored or sent (SPEC §8): every occurrence
 * becomes AGW_REDACTED.
 */
#ifndef AGW_REDACT_H
#define AGW_REDACT_H

#include <stddef.h>

#define AGW_REDACTED "[REDACTED]"

/*
 * Looks for each of the N SECRETS (NUL-terminated; empty or NULL ones are
 * skipped) in BODY (LEN bytes, binary-safe). Overlapping or adjacent
 * occurrences, of one secret or several, become one AGW_REDACTED.
 * Returns 0 when none occurs (*OUT untouched: nothing is allocated, the
 * common case costs N memmem passes); 1 with *OUT a malloc'd copy
 * (NUL-terminated; the caller frees) of *OUT_LEN bytes; -1 when memory
 * ran out (the body must then not be used).
 */
int agw_redact(const char *body, size_t len, const char *const *secrets,
               size_t n, char **out, size_t *out_len);

#endif
