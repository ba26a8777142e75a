/*
 * util.c - clocks, random ids, UUID check, hex and SHA-256, whole reads
 * and error text: small helpers shared by the modules.
 */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

int64_t
agw_now_us(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail on Linux with a valid pointer. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Ids must be unique (a gateway-assigned asset id makes a create
 * idempotent upstream); without entropy there is no safe fallback, so a
 * failing CSPRNG stops the process rather than hand out colliding ids.
 */
static void
random_bytes(unsigned char *buf, int len)
{
    if (RAND_bytes(buf, len) != 1) {
        fputs("asset-gateway: RAND_bytes failed; no entropy\n", stderr);
        abort();
    }
}

void
agw_request_id_new(char out[33])
{
    unsigned char raw[16];

    random_bytes(raw, sizeof(raw));
    agw_hex(raw, sizeof(raw), out);
}

void
agw_uuid_v4(char out[37])
{
    unsigned char b[16];

    random_bytes(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
             b[11], b[12], b[13], b[14], b[15]);
}

static bool
is_hex_digit(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
}

bool
agw_is_uuid(const char *s)
{
    size_t i;

    if (s == NULL) {
        return false;
    }
    for (i = 0; i < 36; i++) {
        bool dash_pos = (i == 8 || i == 13 || i == 18 || i == 23);

        if (s[i] == '\0') {
            return false;
        }
        if (dash_pos ? s[i] != '-' : !is_hex_digit(s[i])) {
            return false;
        }
    }
    return s[36] == '\0';
}

void
agw_hex(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

void
agw_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    /*
     * Only fails when OpenSSL cannot allocate. The digest keys cached
     * answers and compares token hashes: an empty or made-up value could
     * match the wrong entry, so stopping is the only safe answer.
     */
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != 32) {
        fputs("asset-gateway: SHA-256 failed\n", stderr);
        abort();
    }
    agw_hex(md, mdlen, out);
}

ssize_t
agw_read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -1;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    return (ssize_t)got;
}

void
agw_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
