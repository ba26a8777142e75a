/*
 * retry.h - when an upstream attempt may be tried again, and how long to
 * back off first (SPEC §5). Pure functions.
 */
#ifndef AGW_RETRY_H
#define AGW_RETRY_H

#include <stdbool.h>
#include <stdint.h>

enum agw_attempt_outcome {
    AGW_ATTEMPT_RESPONSE,       /* an HTTP answer arrived (see status) */
    AGW_ATTEMPT_CONNECT_FAILED, /* never connected: provably not sent */
    AGW_ATTEMPT_TIMEOUT,        /* request_timeout_ms ran out */
    AGW_ATTEMPT_BROKEN,         /* connection lost after sending */
};

/*
 * Whether attempt number ATTEMPT (1-based) that ended in OUTCOME (and
 * STATUS, for a response) may be retried when MAX_RETRIES retries are
 * allowed. IDEMPOTENT is true when the create carries an id: without one
 * only a connect failure is retried, since Connectly may have created
 * the asset already. A 429 is not decided here (the caller pauses).
 */
bool agw_retry_allowed(enum agw_attempt_outcome outcome, int status,
                       int attempt, int max_retries, bool idempotent);

/*
 * Backoff before the attempt after ATTEMPT: exponential from 100 ms,
 * capped at 2 s, with full jitter: RND in [0, 1) picks the point.
 */
int64_t agw_backoff_us(int attempt, double rnd);

/* Retry-After header value in seconds; -1 when absent or unparseable. */
int agw_retry_after_parse(const char *value);

#endif
