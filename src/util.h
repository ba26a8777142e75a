/*
 * util.h - small helpers shared by the modules: clocks, ids, hex.
 */
#ifndef AGW_UTIL_H
#define AGW_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Monotonic clock in microseconds; for deadlines and the limiter. */
int64_t agw_now_us(void);

/* Writes 32 random hex characters and a NUL into OUT (33 bytes). */
void agw_request_id_new(char out[33]);

/* Writes a random RFC 4122 version 4 UUID and a NUL into OUT (37 bytes). */
void agw_uuid_v4(char out[37]);

/* True when S is 8-4-4-4-12 hexadecimal digits. */
bool agw_is_uuid(const char *s);

/* Lower-case hex of LEN bytes into OUT (2 * LEN + 1 bytes). */
void agw_hex(const unsigned char *in, size_t len, char *out);

/* SHA-256 of LEN bytes as 64 hex characters and a NUL into OUT. */
void agw_sha256_hex(const void *data, size_t len, char out[65]);

#endif
