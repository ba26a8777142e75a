/*
 * retry.c - whether a failed upstream attempt may be tried again, the
 * backoff before it, and Retry-After parsing (SPEC §5).
 */
#include "retry.h"

#include <ctype.h>
#include <limits.h>
#include <string.h>
#include <time.h>

#define BACKOFF_BASE_US INT64_C(100000)
#define BACKOFF_CAP_US INT64_C(2000000)
#define BACKOFF_FLOOR_US INT64_C(10000)
#define RETRY_AFTER_MAX_S 3600

static bool
retry_status(int status, bool idempotent)
{
    /* 501 and 505 say the request itself can never work there. */
    if (status == 501 || status == 505) {
        return false;
    }
    /* A 5xx may come after Connectly created the asset: only a create
     * with an id can safely be sent twice. 4xx (429 included, handled by
     * the caller) and 2xx/3xx are final. */
    return status >= 500 && status <= 599 && idempotent;
}

bool
agw_retry_allowed(enum agw_attempt_outcome outcome, int status, int attempt,
                  int max_retries, bool idempotent)
{
    if (attempt < 1 || attempt > max_retries) {
        return false;
    }
    switch (outcome) {
    case AGW_ATTEMPT_CONNECT_FAILED:
        return true; /* nothing was sent */
    case AGW_ATTEMPT_TIMEOUT:
    case AGW_ATTEMPT_BROKEN:
        return idempotent; /* it may have been received and acted on */
    case AGW_ATTEMPT_RESPONSE:
        return retry_status(status, idempotent);
    }
    return false;
}

int64_t
agw_backoff_us(int attempt, double rnd)
{
    int64_t cap = BACKOFF_BASE_US;
    int64_t us;

    for (int i = 1; i < attempt && cap < BACKOFF_CAP_US; i++) {
        cap *= 2;
    }
    if (cap > BACKOFF_CAP_US) {
        cap = BACKOFF_CAP_US;
    }
    if (!(rnd > 0.0)) { /* also NaN */
        rnd = 0.0;
    }
    if (rnd >= 1.0) {
        rnd = 0.0;
    }
    us = (int64_t)(rnd * (double)cap);
    /* Full jitter, but never an immediate retry. */
    return us < BACKOFF_FLOOR_US ? BACKOFF_FLOOR_US : us;
}

static int
parse_delta_seconds(const char *s, size_t len)
{
    long v = 0;

    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return -1;
        }
        if (v <= RETRY_AFTER_MAX_S) {
            v = v * 10 + (s[i] - '0');
        }
    }
    return v > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : (int)v;
}

/*
 * RFC 9110 §5.6.7: IMF-fixdate, and recipients also accept the obsolete
 * RFC 850 and asctime forms. strptime's names are the C locale's, which
 * the daemon never changes.
 */
static int
parse_http_date(const char *s)
{
    static const char *const formats[] = {
        "%a, %d %b %Y %H:%M:%S GMT",
        "%A, %d-%b-%y %H:%M:%S GMT",
        "%a %b %d %H:%M:%S %Y",
    };

    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        struct tm tm;
        const char *end;
        time_t when;
        double delta;

        memset(&tm, 0, sizeof(tm));
        end = strptime(s, formats[i], &tm);
        if (end == NULL || *end != '\0') {
            continue;
        }
        when = timegm(&tm);
        if (when == (time_t)-1) {
            return -1;
        }
        delta = difftime(when, time(NULL));
        if (delta <= 0) {
            return 0;
        }
        return delta > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : (int)delta;
    }
    return -1;
}

int
agw_retry_after_parse(const char *value)
{
    char buf[64];
    size_t len;

    if (value == NULL) {
        return -1;
    }
    while (*value == ' ' || *value == '\t') {
        value++;
    }
    len = strlen(value);
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t')) {
        len--;
    }
    if (len == 0) {
        return -1;
    }
    if (isdigit((unsigned char)value[0])) {
        int v = parse_delta_seconds(value, len);

        if (v >= 0) {
            return v;
        }
    }
    if (len >= sizeof(buf)) {
        return -1; /* no HTTP-date is this long */
    }
    memcpy(buf, value, len);
    buf[len] = '\0';
    return parse_http_date(buf);
}
