/*
 * util.c - clocks, random and per-thread ids, UUID check, hex and SHA-256,
 * whole reads and error text: small helpers shared by the modules.
 */
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/*
 * Per-thread request ids: 64 random bits drawn once, as 16 hex digits,
 * then a 64-bit counter that starts at a random value. Two threads (here
 * or on another instance) repeat an id only if their prefixes are equal,
 * a 2^-64 chance per pair. (The gateway never forks, so a thread's state
 * is never copied.)
 */
static _Thread_local struct {
    bool drawn;
    unsigned char prefix[8];
    uint64_t counter;
} id_state;

void
agw_request_id_next(char out[33])
{
    unsigned char count[8];
    uint64_t n;

    if (!id_state.drawn) {
        random_bytes(id_state.prefix, sizeof(id_state.prefix));
        random_bytes((unsigned char *)&id_state.counter,
                     sizeof(id_state.counter));
        id_state.drawn = true;
    }
    n = id_state.counter++;
    for (int i = 7; i >= 0; i--, n >>= 8) {
        count[i] = (unsigned char)n;
    }
    agw_hex(id_state.prefix, sizeof(id_state.prefix), out);
    agw_hex(count, sizeof(count), out + 16);
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

/* 1 for the hex digits, in either case; a lookup, as it runs per request. */
static const unsigned char hex_digit[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1,
    ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['A'] = 1, ['B'] = 1,
    ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
};

bool
agw_is_uuid(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned ok = 1;
    size_t i;

    if (s == NULL) {
        return false;
    }
    /* A NUL is neither a dash nor a hex digit, so no read passes it. */
    for (i = 0; i < 36 && ok; i++) {
        ok = (i == 8 || i == 13 || i == 18 || i == 23) ? u[i] == '-'
                                                       : hex_digit[u[i]];
    }
    return ok && s[36] == '\0';
}

size_t
agw_fmt_long(long long v, char out[21])
{
    char tmp[20];
    unsigned long long u;
    size_t n = 0, len = 0;

    /* Negating in unsigned arithmetic is defined even for LLONG_MIN. */
    u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        out[len++] = '-';
    }
    while (n > 0) {
        out[len++] = tmp[--n];
    }
    out[len] = '\0';
    return len;
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

int
agw_hex_value(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/*
 * SHA-256 is on every create: EVP_sha256() makes OpenSSL look the
 * implementation up in its provider store on each use, and a fresh
 * EVP_MD_CTX costs allocations. So the algorithm is fetched once per
 * process and each thread keeps one context, freed when the thread ends.
 */
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha_md; /* written once under sha_once, then read-only */
static pthread_key_t sha_key;
static _Thread_local EVP_MD_CTX *sha_ctx;

/*
 * Only fails when OpenSSL cannot allocate. The digest keys cached answers
 * and compares token hashes: an empty or made-up value could match the
 * wrong entry, so stopping is the only safe answer.
 */
static void
sha_fail(void)
{
    fputs("asset-gateway: SHA-256 failed\n", stderr);
    abort();
}

static void
sha_free_ctx(void *ctx)
{
    EVP_MD_CTX_free(ctx);
    sha_ctx = NULL; /* runs on the exiting thread itself */
}

static void
sha_init_once(void)
{
    sha_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha_md == NULL || pthread_key_create(&sha_key, sha_free_ctx) != 0) {
        sha_fail();
    }
}

static EVP_MD_CTX *
sha_thread_ctx(void)
{
    if (sha_ctx == NULL) {
        pthread_once(&sha_once, sha_init_once);
        sha_ctx = EVP_MD_CTX_new();
        if (sha_ctx == NULL || pthread_setspecific(sha_key, sha_ctx) != 0) {
            sha_fail();
        }
    }
    return sha_ctx;
}

void
agw_sha256_hex_parts(const struct agw_span *parts, size_t n, char out[65])
{
    EVP_MD_CTX *ctx = sha_thread_ctx();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t i;

    if (EVP_DigestInit_ex2(ctx, sha_md, NULL) != 1) {
        sha_fail();
    }
    for (i = 0; i < n; i++) {
        if (EVP_DigestUpdate(ctx, parts[i].data, parts[i].len) != 1) {
            sha_fail();
        }
    }
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
        sha_fail();
    }
    agw_hex(md, mdlen, out);
}

void
agw_sha256_hex(const void *data, size_t len, char out[65])
{
    struct agw_span part = {data, len};

    agw_sha256_hex_parts(&part, 1, out);
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

bool
agw_mode_writable_by_others(mode_t mode)
{
    return (mode & (S_IWGRP | S_IWOTH)) != 0;
}

bool
agw_readable_by_strangers(const struct stat *st)
{
    return (st->st_mode & S_IROTH) != 0 ||
           ((st->st_mode & S_IRGRP) != 0 && st->st_gid != getegid());
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
