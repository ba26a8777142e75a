/*
 * log.c - one line per message on stderr, as text or as a JSON object
 * (json-c does the escaping). Each line leaves in a single write.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "config.h"

#define MSG_MAX 2048

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
    int level = severity == EVENT_LOG_DEBUG ? AGW_LOG_DEBUG
                : severity == EVENT_LOG_MSG ? AGW_LOG_INFO
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

static void
write_text(const char *ts, const char *level, const char *rid, char *msg)
{
    char line[MSG_MAX + 256];
    char rid_part[160] = "";
    int n;

    if (rid != NULL) {
        snprintf(rid_part, sizeof(rid_part), " [%s]", rid);
        flatten(rid_part);
    }
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
        write_line(text, len);
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
        write_line(text, len);
    }
    json_object_put(obj);
}

void
agw_log_access(const struct agw_access *a)
{
    char msg[MSG_MAX];
    char ts[40];

    if (agw_log_level < (a->probe ? AGW_LOG_DEBUG : AGW_LOG_INFO)) {
        return;
    }
    format_time(ts, sizeof(ts));
    if (log_format == AGW_LOGFMT_JSON) {
        access_json(ts, a);
        return;
    }
    snprintf(msg, sizeof(msg),
             "access caller=%s business_id=%s method=%s path=%s status=%d "
             "cache=%s upstream_status=%d attempts=%d upstream_ms=%.1f "
             "ratelimit_wait_ms=%.1f total_ms=%.1f",
             a->caller, a->business_id, a->method, a->path, a->status,
             a->cache, a->upstream_status, a->attempts, a->upstream_ms,
             a->wait_ms, a->total_ms);
    write_text(ts, "info", a->request_id, msg);
}
