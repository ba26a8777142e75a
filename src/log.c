/*
 * log.c - one line per message on stderr, as text or as a JSON object
 * (json-c does the escaping, made ASCII here). Each line leaves in a
 * single write. Nothing a caller sends adds a field or a line (SPEC §6).
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <json-c/json.h>

#define MSG_MAX 2048
/* Longest text-format value: of a request id, of an access field, of a
 * path (longer ones are cut, see format_value). */
#define RID_TEXT_MAX 160
#define FIELD_TEXT_MAX 256
#define PATH_TEXT_MAX 2048

atomic_int agw_log_level = AGW_LOG_INFO;

/* Worker threads log while the main thread reloads: the settings are
 * atomics, and the descriptor number, once it is a file's, never changes
 * (dup2 swaps what it refers to), so no line is written to a closed or
 * reused descriptor. */
static atomic_int log_format = AGW_LOGFMT_TEXT;
static atomic_int log_fd = STDERR_FILENO;
static char log_path[4096];
static char log_program[64] = "asset-gateway";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

#define HELD_MAX 32

struct held_line {
    int level;
    char *msg;
};

static bool holding;
static struct held_line held[HELD_MAX];
static int nheld;

static void write_message(int level, const char *request_id, char *msg);

void
agw_log_hold(void)
{
    holding = true;
}

void
agw_log_setup(int level, int format, const char *program)
{
    agw_log_level = level;
    log_format = format;
    if (program != NULL && strcmp(program, log_program) != 0) {
        snprintf(log_program, sizeof(log_program), "%s", program);
    }
    if (!holding) {
        return;
    }
    holding = false;
    for (int i = 0; i < nheld; i++) {
        if (held[i].level <= agw_log_level) {
            write_message(held[i].level, NULL, held[i].msg);
        }
        free(held[i].msg);
    }
    nheld = 0;
}

static void
from_libevent(int severity, const char *msg)
{
    int level = severity == EVENT_LOG_DEBUG  ? AGW_LOG_DEBUG
                : severity == EVENT_LOG_MSG  ? AGW_LOG_INFO
                : severity == EVENT_LOG_WARN ? AGW_LOG_WARN
                                             : AGW_LOG_ERROR;

    AGW_LOG_AT(level, NULL, "libevent: %s", msg);
}

void
agw_log_capture_libevent(void)
{
    event_set_log_callback(from_libevent);
}

/* Makes log_fd refer to FD (closed here unless it is stderr). */
static bool
point_log_at(int fd)
{
    int ok;

    if (log_fd == STDERR_FILENO) {
        if (fd != STDERR_FILENO) {
            log_fd = fd;
        }
        return true;
    }
    ok = dup2(fd, log_fd) >= 0;
    if (fd != STDERR_FILENO) {
        close(fd);
    }
    return ok;
}

static bool
open_path(const char *path)
{
    int fd;

    if (path == NULL || path[0] == '\0') {
        log_path[0] = '\0';
        return point_log_at(STDERR_FILENO);
    }
    if (strlen(path) >= sizeof(log_path)) {
        errno = ENAMETOOLONG;
        return false;
    }
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0 || !point_log_at(fd)) {
        return false;
    }
    if (log_path != path) {
        snprintf(log_path, sizeof(log_path), "%s", path);
    }
    return true;
}

bool
agw_log_open(const char *path)
{
    return open_path(path);
}

bool
agw_log_reopen(void)
{
    return log_path[0] == '\0' || open_path(log_path);
}

int
agw_log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0]));
         i++) {
        if (strcmp(name, level_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

/* 2026-11-23T10:41:00.123Z */
static void
format_time(char *out, size_t len)
{
    struct timespec ts;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, len - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

/* A caller-chosen request id or message must not forge extra lines. */
static void
flatten(char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            *s = ' ';
        }
    }
}

static void
write_line(const char *line, size_t len)
{
    struct iovec iov[2] = {{(void *)line, len}, {"\n", 1}};

    /* One writev per line keeps lines from threads whole. */
    while (writev(log_fd, iov, 2) < 0 && errno == EINTR) {
    }
}

/*
 * Length of the well-formed UTF-8 sequence at P (N > 0 bytes left), its
 * code point in *CP; 0 when the bytes are not UTF-8 (overlong forms and
 * surrogates included).
 */
static size_t
utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
    size_t len, i;
    uint32_t c, min;

    if (p[0] < 0x80) {
        len = 1, c = p[0], min = 0;
    } else if ((p[0] & 0xe0) == 0xc0) {
        len = 2, c = p[0] & 0x1fu, min = 0x80;
    } else if ((p[0] & 0xf0) == 0xe0) {
        len = 3, c = p[0] & 0x0fu, min = 0x800;
    } else if ((p[0] & 0xf8) == 0xf0) {
        len = 4, c = p[0] & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        c = c << 6 | (p[i] & 0x3fu);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        return 0;
    }
    *cp = c;
    return len;
}

/* Writes "\uXXXX" for U (at most 0xffff) to OUT; returns 6. */
static size_t
put_u_escape(char *out, uint32_t u)
{
    static const char hex[] = "0123456789abcdef";
    int i;

    out[0] = '\\';
    out[1] = 'u';
    for (i = 0; i < 4; i++) {
        out[2 + i] = hex[(u >> (12 - 4 * i)) & 0xf];
    }
    return 6;
}

/*
 * json-c copies bytes past 0x7e as they are: invalid UTF-8 from a caller
 * (a path may hold any byte) would make the line invalid JSON, and
 * U+0085, U+2028 and U+2029 end lines for some readers. Those bytes can
 * only be inside strings, so each character becomes a \uXXXX escape (a
 * surrogate pair past U+FFFF) and each byte of invalid UTF-8 \ufffd:
 * the line leaves as ASCII.
 */
static void
write_json_line(const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0, n;
    char *out;

    while (i < len && p[i] < 0x7f) {
        i++;
    }
    if (i == len) {
        write_line(text, len);
        return;
    }
    out = malloc(len * 6); /* at most 6 bytes out for each byte in */
    if (out == NULL) {
        return;
    }
    memcpy(out, text, i);
    for (n = i; i < len;) {
        uint32_t cp;
        size_t k;

        if (p[i] < 0x7f) {
            out[n++] = text[i++];
            continue;
        }
        k = utf8_decode(p + i, len - i, &cp);
        if (k == 0) {
            cp = 0xfffd; /* one for each byte that is not UTF-8 */
            k = 1;
        }
        if (cp < 0x10000) {
            n += put_u_escape(out + n, cp);
        } else {
            n += put_u_escape(out + n, 0xd800 + ((cp - 0x10000) >> 10));
            n += put_u_escape(out + n, 0xdc00 + ((cp - 0x10000) & 0x3ff));
        }
        i += k;
    }
    write_line(out, n);
    free(out);
}

/*
 * Text-format values (SPEC §6). A value holding whitespace, '"', '=',
 * '\', a control character or a non-ASCII byte is double-quoted, with
 * \" \\ \n \r \t and \xHH escapes: lines stay printable ASCII, as bytes
 * past 0x7f may spell U+0085 or U+2028, which some readers take for line
 * ends. '[' and ']' are quoted too: they frame the request id. An empty
 * value is "".
 */
static bool
is_plain(unsigned char c)
{
    return c > ' ' && c < 0x7f && c != '"' && c != '=' && c != '\\' &&
           c != '[' && c != ']';
}

/* Writes the escape for C to ESC; returns its length (1 to 4). */
static size_t
escape_byte(unsigned char c, char esc[4])
{
    static const char hex[] = "0123456789abcdef";
    char named = c == '"'    ? '"'
                 : c == '\\' ? '\\'
                 : c == '\n' ? 'n'
                 : c == '\r' ? 'r'
                 : c == '\t' ? 't'
                             : 0;

    if (named != 0) {
        esc[0] = '\\';
        esc[1] = named;
        return 2;
    }
    if (c < ' ' || c >= 0x7f) {
        esc[0] = '\\';
        esc[1] = 'x';
        esc[2] = hex[c >> 4];
        esc[3] = hex[c & 0xf];
        return 4;
    }
    esc[0] = (char)c;
    return 1;
}

/*
 * Writes V to OUT (SIZE >= 8 bytes, NUL-terminated) as a text-format
 * value. A value that does not fit is cut and quoted, ending in "...":
 * the closing quote is always written, so a long value cannot swallow
 * the fields after it.
 */
static void
format_value(char *out, size_t size, const char *v)
{
    const unsigned char *p = (const unsigned char *)v;
    size_t n = 0, len = strlen(v), i;
    bool plain = len > 0 && len < size;

    for (i = 0; plain && i < len; i++) {
        plain = is_plain(p[i]);
    }
    if (plain) {
        memcpy(out, v, len + 1);
        return;
    }
    out[n++] = '"';
    for (i = 0; i < len; i++) {
        char esc[4];
        size_t k = escape_byte(p[i], esc);

        if (n + k > size - 5) { /* room for "...", '"' and NUL */
            memcpy(out + n, "...", 3);
            n += 3;
            break;
        }
        memcpy(out + n, esc, k);
        n += k;
    }
    out[n++] = '"';
    out[n] = '\0';
}

/* " [RID]" (RID as a text-format value), or "" when RID is NULL. */
static void
format_rid(char *out, size_t size, const char *rid)
{
    char value[RID_TEXT_MAX];

    if (rid == NULL) {
        out[0] = '\0';
        return;
    }
    format_value(value, sizeof(value), rid);
    snprintf(out, size, " [%s]", value);
}

static void
write_text(const char *ts, const char *level, const char *rid, char *msg)
{
    char line[MSG_MAX + 256];
    char rid_part[RID_TEXT_MAX + 3];
    int n;

    format_rid(rid_part, sizeof(rid_part), rid);
    flatten(msg);
    n = snprintf(line, sizeof(line), "%s %s%s %s", ts, level, rid_part, msg);
    if (n >= (int)sizeof(line)) {
        n = (int)sizeof(line) - 1;
    }
    write_line(line, n > 0 ? (size_t)n : 0);
}

static void
add_string(struct json_object *obj, const char *key, const char *value)
{
    json_object_object_add(obj, key, json_object_new_string(value));
}

static void
write_json(const char *ts, const char *level, const char *rid, const char *msg)
{
    struct json_object *obj = json_object_new_object();
    const char *text;
    size_t len;

    if (obj == NULL) {
        return;
    }
    add_string(obj, "ts", ts);
    add_string(obj, "level", level);
    add_string(obj, "program", log_program);
    if (rid != NULL) {
        add_string(obj, "request_id", rid);
    }
    add_string(obj, "msg", msg);
    text = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (text != NULL) {
        write_json_line(text, len);
    }
    json_object_put(obj);
}

void
agw_log_write(int level, const char *request_id, const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;

    if (level < AGW_LOG_ERROR) {
        level = AGW_LOG_ERROR;
    } else if (level > AGW_LOG_DEBUG) {
        level = AGW_LOG_DEBUG;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (holding) {
        if (nheld < HELD_MAX && (held[nheld].msg = strdup(msg)) != NULL) {
            held[nheld++].level = level;
        }
        return;
    }
    write_message(level, request_id, msg);
}

static void
write_message(int level, const char *request_id, char *msg)
{
    char ts[40];

    format_time(ts, sizeof(ts));
    if (log_format == AGW_LOGFMT_JSON) {
        write_json(ts, level_names[level], request_id, msg);
    } else {
        write_text(ts, level_names[level], request_id, msg);
    }
}

/* Milliseconds to the microsecond, not 17 digits of binary noise. */
static void
add_ms(struct json_object *obj, const char *key, double ms)
{
    char text[32];

    snprintf(text, sizeof(text), "%.3f", ms);
    json_object_object_add(obj, key, json_object_new_double_s(ms, text));
}

static void
access_json(const char *ts, const struct agw_access *a)
{
    struct json_object *obj = json_object_new_object();
    const char *text;
    size_t len;

    if (obj == NULL) {
        return;
    }
    add_string(obj, "ts", ts);
    add_string(obj, "level", "info");
    add_string(obj, "program", log_program);
    add_string(obj, "type", "access");
    add_string(obj, "request_id", a->request_id);
    add_string(obj, "caller", a->caller);
    add_string(obj, "class", a->class_name != NULL ? a->class_name : "-");
    add_string(obj, "business_id", a->business_id);
    add_string(obj, "method", a->method);
    add_string(obj, "path", a->path);
    json_object_object_add(obj, "status", json_object_new_int(a->status));
    add_string(obj, "cache", a->cache);
    json_object_object_add(obj, "upstream_status",
                           json_object_new_int(a->upstream_status));
    json_object_object_add(obj, "attempts", json_object_new_int(a->attempts));
    add_ms(obj, "upstream_ms", a->upstream_ms);
    add_ms(obj, "ratelimit_wait_ms", a->wait_ms);
    add_ms(obj, "total_ms", a->total_ms);
    text = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (text != NULL) {
        write_json_line(text, len);
    }
    json_object_put(obj);
}

/* Every value fits the line whole: none is cut off by the line's end. */
static void
access_text(const char *ts, const struct agw_access *a)
{
    char rid[RID_TEXT_MAX + 3], caller[FIELD_TEXT_MAX], biz[FIELD_TEXT_MAX];
    char klass[FIELD_TEXT_MAX];
    char method[FIELD_TEXT_MAX], path[PATH_TEXT_MAX], cache[FIELD_TEXT_MAX];
    char line[sizeof(rid) + 5 * FIELD_TEXT_MAX + PATH_TEXT_MAX + 512];
    int n;

    format_rid(rid, sizeof(rid), a->request_id);
    format_value(caller, sizeof(caller), a->caller);
    format_value(klass, sizeof(klass),
                 a->class_name != NULL ? a->class_name : "-");
    format_value(biz, sizeof(biz), a->business_id);
    format_value(method, sizeof(method), a->method);
    format_value(path, sizeof(path), a->path);
    format_value(cache, sizeof(cache), a->cache);
    n = snprintf(line, sizeof(line),
                 "%s info%s access caller=%s class=%s business_id=%s "
                 "method=%s path=%s status=%d cache=%s upstream_status=%d "
                 "attempts=%d upstream_ms=%.1f ratelimit_wait_ms=%.1f "
                 "total_ms=%.1f",
                 ts, rid, caller, klass, biz, method, path, a->status, cache,
                 a->upstream_status, a->attempts, a->upstream_ms, a->wait_ms,
                 a->total_ms);
    if (n >= (int)sizeof(line)) {
        n = (int)sizeof(line) - 1;
    }
    write_line(line, n > 0 ? (size_t)n : 0);
}

void
agw_log_access(const struct agw_access *a)
{
    char ts[40];

    if (agw_log_level < (a->probe ? AGW_LOG_DEBUG : AGW_LOG_INFO)) {
        return;
    }
    format_time(ts, sizeof(ts));
    if (log_format == AGW_LOGFMT_JSON) {
        access_json(ts, a);
    } else {
        access_text(ts, a);
    }
}
