/*
 * redact.c - secret occurrences are marked first, then the marked runs
 * replaced: overlapping occurrences (of one secret or of two) cannot
 * leave part of a secret behind, as replacing one secret after another
 * could.
 */
#include "redact.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MARKER_LEN (sizeof(AGW_REDACTED) - 1)

/* Marks every occurrence of SECRET in BODY; allocates *MARK at the
 * first. False when that allocation failed. */
static bool
mark_secret(const char *body, size_t len, const char *secret, bool **mark)
{
    size_t slen = secret != NULL ? strlen(secret) : 0;
    const char *p = body;
    const char *hit;

    if (slen == 0) {
        return true;
    }
    while ((size_t)(body + len - p) >= slen &&
           (hit = memmem(p, (size_t)(body + len - p), secret, slen)) != NULL) {
        if (*mark == NULL && (*mark = calloc(len, sizeof(bool))) == NULL) {
            return false;
        }
        memset(*mark + (hit - body), true, slen);
        p = hit + 1; /* overlapping occurrences too */
    }
    return true;
}

/* Writes BODY with each marked run replaced into OUT (NULL: only
 * counts); returns the length. */
static size_t
replace_runs(const char *body, size_t len, const bool *mark, char *out)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (!mark[i]) {
            if (out != NULL) {
                out[n] = body[i];
            }
            n++;
        } else if (i == 0 || !mark[i - 1]) {
            if (out != NULL) {
                memcpy(out + n, AGW_REDACTED, MARKER_LEN);
            }
            n += MARKER_LEN;
        }
    }
    return n;
}

int
agw_redact(const char *body, size_t len, const char *const *secrets, size_t n,
           char **out, size_t *out_len)
{
    bool *mark = NULL;
    size_t olen;
    char *copy;

    for (size_t i = 0; i < n; i++) {
        if (!mark_secret(body, len, secrets[i], &mark)) {
            return -1;
        }
    }
    if (mark == NULL) {
        return 0;
    }
    olen = replace_runs(body, len, mark, NULL);
    copy = malloc(olen + 1);
    if (copy == NULL) {
        free(mark);
        return -1;
    }
    replace_runs(body, len, mark, copy);
    copy[olen] = '\0';
    free(mark);
    *out = copy;
    *out_len = olen;
    return 1;
}
