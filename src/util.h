/*
 * util.h - small helpers shared by the modules: clocks, ids, hex.
 */
#ifndef AGW_UTIL_H
#define AGW_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Monotonic clock in microseconds; for deadlines and the limiter. */
int64_t agw_now_us(void);

/* Writes 32 random hex characters and a NUL into OUT (33 bytes). */
void agw_request_id_new(char out[33]);

/*
 * Writes a request id for logs and X-Request-Id into OUT (33 bytes): 32
 * lower-case hex characters and a NUL, like agw_request_id_new(), but
 * without drawing randomness per call: a random per-thread prefix and a
 * per-thread counter. Unique across threads and instances with
 * overwhelming probability; NOT unpredictable, so never a secret or token.
 */
void agw_request_id_next(char out[33]);

/* Writes a random RFC 4122 version 4 UUID and a NUL into OUT (37 bytes). */
void agw_uuid_v4(char out[37]);

/* True when S is 8-4-4-4-12 hexadecimal digits. */
bool agw_is_uuid(const char *s);

/* Decimal text of V and a NUL into OUT (21 bytes hold any value);
 * returns its length. For hot paths where snprintf costs too much. */
size_t agw_fmt_long(long long v, char out[21]);

/* Lower-case hex of LEN bytes into OUT (2 * LEN + 1 bytes). */
void agw_hex(const unsigned char *in, size_t len, char *out);

/* The value of hex digit C (either case), or -1. */
int agw_hex_value(int c);

/* Reads up to LEN bytes from FD, retrying on EINTR, stopping at EOF.
 * Returns how many, or -1 with errno set. */
ssize_t agw_read_full(int fd, void *buf, size_t len);

/*
 * True when group or others may write a file of MODE. A config, key or
 * clients file like that is refused, naming it (SPEC §8): whoever may
 * write it chooses the key spent or the callers let in.
 */
bool agw_mode_writable_by_others(mode_t mode);

/*
 * True when someone besides this process may read the file of ST: others,
 * or a group that is not the process's own (a key kept root:asset-gateway
 * 0640 is the packaged layout, read by the daemon through its group).
 */
bool agw_readable_by_strangers(const struct stat *st);

/* Formats into ERR (ERRLEN bytes) unless ERR is NULL or ERRLEN is 0. */
void agw_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* SHA-256 of LEN bytes as 64 hex characters and a NUL into OUT. */
void agw_sha256_hex(const void *data, size_t len, char out[65]);

/* One piece of a message hashed piecewise; DATA is borrowed. */
struct agw_span {
    const void *data;
    size_t len;
};

/* SHA-256 of the concatenation of the N spans in PARTS, as hex. */
void agw_sha256_hex_parts(const struct agw_span *parts, size_t n, char out[65]);

#endif
