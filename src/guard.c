/*
 * guard.c - the HTTP/1.1 framing filter in front of evhttp (guard.h).
 * It reads the transport's input (SRC) and appends to the input evhttp
 * reads (DST): a request's head stays in SRC until the head is whole and
 * checked, then it is passed on with its body, and whatever follows
 * stays in SRC until that request was answered. So evhttp and the guard
 * always agree where a request ends, and a refusal never overtakes the
 * answer to an earlier request.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "guard.h"
#include "reply.h"
#include "util.h"

#define STAND_IN "GET / HTTP/1.1\r\n\r\n"
#define LAST_CHUNK "0\r\n\r\n"
#define TRAILER_END "\r\n"
/* A chunk-size line with its line end: 16 hex digits and leading zeros. */
#define CHUNK_LINE_MAX 64
#define BUSY "too many request bytes buffered; try again later"

enum state {
    S_HEAD,       /* reading a request head */
    S_BODY,       /* passing on a Content-Length body */
    S_CHUNK_SIZE, /* expecting a chunk-size line */
    S_CHUNK_DATA, /* passing on a chunk's data */
    S_CHUNK_END,  /* expecting the line end after a chunk's data */
    S_TRAILER,    /* expecting the empty line after the last chunk */
    S_ANSWER,     /* request passed on: the rest waits for its answer */
    S_DROP,       /* refused, or evhttp let go: input is dropped */
};

struct agw_guard {
    const struct agw_guard_policy *policy;
    struct bufferevent *bev; /* the filter: evhttp's side */
    struct evbuffer_cb_entry *on_output;
    enum state state;
    size_t searched;   /* S_HEAD: bytes searched for the head's end */
    size_t line_start; /* S_HEAD: where the line being searched starts */
    uint64_t left;     /* S_BODY, S_CHUNK_DATA: bytes still to pass on */
    uint64_t body;     /* chunked: body bytes announced so far */
    long long held;    /* this request's bytes passed on or reserved */
    long long waiting; /* bytes in SRC, as last counted */
    size_t copied;     /* bytes of evhttp's output the transport has */
    bool refused;
    struct agw_refusal refusal;
};

/* A request head as parsed; the strings point into its copy. */
struct head {
    const char *method;
    const char *target;
    const char *authorization;
    bool http10;
    bool chunked;
    int lengths;     /* Content-Length fields */
    int codings;     /* Transfer-Encoding fields */
    uint64_t length; /* the Content-Length, saturated */
    size_t frame_at; /* the Content-Length or Transfer-Encoding line */
    size_t frame_len;
    const char *problem;
};

enum step { MOVED, STUCK }; /* went on; or needs more input */

/* Every guard's held + waiting. */
static _Atomic long long buffered;

static long long
charge(long long delta)
{
    return atomic_fetch_add_explicit(&buffered, delta, memory_order_relaxed) +
           delta;
}

/* ------------------------------------------------------------ moving */

/* Passes N bytes on. RESERVED: charged when their chunk or body was
 * announced; else they stop waiting and count as held. */
static void
pass(struct agw_guard *g, struct evbuffer *src, struct evbuffer *dst, size_t n,
     bool reserved)
{
    evbuffer_remove_buffer(src, dst, n);
    g->waiting -= (long long)n;
    if (reserved) {
        charge(-(long long)n);
    } else {
        g->held += (long long)n;
    }
}

static void
drop(struct agw_guard *g, struct evbuffer *src, size_t n)
{
    evbuffer_drain(src, n);
    g->waiting -= (long long)n;
    charge(-(long long)n);
}

static void
vrefuse(struct agw_guard *g, bool stand_in, int status, int code,
        const char *fmt, va_list ap)
{
    g->refused = true;
    g->refusal.status = status;
    g->refusal.code = code;
    g->refusal.stand_in = stand_in;
    vsnprintf(g->refusal.message, sizeof(g->refusal.message), fmt, ap);
    g->state = S_DROP;
}

/* Refuses a request whose head went on to evhttp. */
static enum step
refuse(struct agw_guard *g, int status, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vrefuse(g, false, status, code, fmt, ap);
    va_end(ap);
    return MOVED;
}

/* Nothing of the request went on: evhttp gets a stand-in. */
static enum step
refuse_head(struct agw_guard *g, struct evbuffer *dst, int status, int code,
            const char *fmt, ...)
{
    va_list ap;

    evbuffer_add(dst, STAND_IN, sizeof(STAND_IN) - 1);
    va_start(ap, fmt);
    vrefuse(g, true, status, code, fmt, ap);
    va_end(ap);
    return MOVED;
}

/* Its head and part of its chunked body went on: END cuts it short. */
static enum step
refuse_body(struct agw_guard *g, struct evbuffer *dst, const char *end,
            int status, int code, const char *fmt, ...)
{
    va_list ap;

    evbuffer_add(dst, end, strlen(end));
    va_start(ap, fmt);
    vrefuse(g, false, status, code, fmt, ap);
    va_end(ap);
    return MOVED;
}

/* Its head is sound: it goes on without its framing field, so with no
 * body, and the handler answers it knowing its path and headers. */
static void
pass_bare_head(struct agw_guard *g, struct evbuffer *src, struct evbuffer *dst,
               size_t end, const struct head *h)
{
    pass(g, src, dst, h->frame_at, false);
    drop(g, src, h->frame_len);
    pass(g, src, dst, end - h->frame_at - h->frame_len, false);
}

/* ------------------------------------------------------------ parsing */

static bool
is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool
is_token(const char *s)
{
    if (*s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (!is_tchar((unsigned char)*s)) {
            return false;
        }
    }
    return true;
}

/* N bytes at S in base BASE (10 or 16), only digits, at least one;
 * saturates at UINT64_MAX. */
static bool
parse_number(const char *s, size_t n, int base, uint64_t *out)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++) {
        int d = agw_hex_value((unsigned char)s[i]);

        if (d < 0 || d >= base) {
            return false;
        }
        v = v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base
                ? UINT64_MAX
                : v * (uint64_t)base + (uint64_t)d;
    }
    *out = v;
    return n > 0;
}

/* Methods evhttp reads a body for (evhttp_method_may_have_body). */
static bool
may_have_body(const char *method)
{
    static const char *const with_body[] = {
        "GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT"};

    for (size_t i = 0; i < sizeof(with_body) / sizeof(with_body[0]); i++) {
        if (strcmp(method, with_body[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bool
fail(struct head *h, const char *problem)
{
    h->problem = problem;
    return false;
}

/* LINE is "METHOD SP target SP HTTP/1.x". */
static bool
parse_request_line(char *line, struct head *h)
{
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
    const char *bad = "the request line is not METHOD SP target SP HTTP/1.x";

    if (sp2 == NULL) {
        return fail(h, bad);
    }
    *sp1 = '\0';
    *sp2 = '\0';
    h->method = line;
    h->target = sp1 + 1;
    if (!is_token(h->method) || *h->target == '\0') {
        return fail(h, bad);
    }
    for (const char *p = h->target; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x21 || *p == 0x7f) {
            return fail(h, bad);
        }
    }
    h->http10 = strcmp(sp2 + 1, "HTTP/1.0") == 0;
    if (!h->http10 && strcmp(sp2 + 1, "HTTP/1.1") != 0) {
        return fail(h, bad);
    }
    return true;
}

/* Strips blanks (SP, HTAB) around S in place. */
static char *
trim(char *s)
{
    size_t n;

    s += strspn(s, " \t");
    n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
        s[--n] = '\0';
    }
    return s;
}

/* A header line at LINE (LEN bytes with its line end, OFFSET into the
 * head), already cut at its line end. */
static bool
parse_field(char *line, size_t len, size_t offset, struct head *h)
{
    char *colon;
    char *value;

    if (*line == ' ' || *line == '\t') {
        return fail(h, "an obsolete folded header line");
    }
    colon = strchr(line, ':');
    if (colon == NULL) {
        return fail(h, "a header line without a colon");
    }
    *colon = '\0';
    if (!is_token(line)) {
        return fail(h, "a header field name that is not a token");
    }
    value = trim(colon + 1);
    if (strcasecmp(line, "Content-Length") == 0) {
        if (++h->lengths > 1) {
            return fail(h, "more than one Content-Length");
        }
        if (!parse_number(value, strlen(value), 10, &h->length)) {
            return fail(h, "Content-Length is not a decimal number");
        }
    } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
        if (++h->codings > 1) {
            return fail(h, "more than one Transfer-Encoding");
        }
        if (strcasecmp(value, "chunked") != 0) {
            return fail(h, "a Transfer-Encoding other than chunked");
        }
        h->chunked = true;
    } else {
        if (h->authorization == NULL &&
            strcasecmp(line, "Authorization") == 0) {
            h->authorization = value;
        }
        return true;
    }
    h->frame_at = offset;
    h->frame_len = len;
    return true;
}

static bool
check_framing(struct head *h)
{
    if (h->lengths > 0 && h->codings > 0) {
        return fail(h, "both Content-Length and Transfer-Encoding");
    }
    if (h->chunked && h->http10) {
        return fail(h, "Transfer-Encoding in an HTTP/1.0 request");
    }
    if ((h->chunked || h->length > 0) && !may_have_body(h->method)) {
        return fail(h, "a body on a request whose method takes none");
    }
    return true;
}

/* TEXT is a whole head of LEN bytes (its empty line included) plus a NUL;
 * it is cut up in place. */
static bool
parse_head(char *text, size_t len, struct head *h)
{
    char *line = text;
    char *end = text + len;

    memset(h, 0, sizeof(*h));
    if (memchr(text, '\0', len) != NULL) {
        return fail(h, "a NUL byte in the request head");
    }
    while (line < end) {
        char *lf = memchr(line, '\n', (size_t)(end - line));
        char *stop = lf > line && lf[-1] == '\r' ? lf - 1 : lf;
        size_t offset = (size_t)(line - text);

        if (memchr(line, '\r', (size_t)(stop - line)) != NULL) {
            return fail(h, "a CR without LF in the request head");
        }
        *stop = '\0';
        if (offset == 0) {
            if (!parse_request_line(line, h)) {
                return false;
            }
        } else if (stop == line) {
            break; /* the empty line */
        } else if (!parse_field(line, (size_t)(lf + 1 - line), offset, h)) {
            return false;
        }
        line = lf + 1;
    }
    return check_framing(h);
}

/* ------------------------------------------------------------ steps */

static enum step
admit(struct agw_guard *g, struct evbuffer *src, struct evbuffer *dst,
      size_t end, const struct head *h)
{
    const struct agw_guard_policy *pol = g->policy;
    long long length =
        h->length > (uint64_t)LLONG_MAX ? LLONG_MAX : (long long)h->length;
    struct agw_guard_head head = {
        .method = h->method,
        .target = h->target,
        .authorization = h->authorization,
        .body_bytes = h->chunked ? -1 : length,
        .transport = bufferevent_get_underlying(g->bev),
    };
    struct agw_refusal r;

    if (pol->check_head != NULL && !pol->check_head(pol->arg, &head, &r)) {
        pass_bare_head(g, src, dst, end, h);
        return refuse(g, r.status, r.code, "%s", r.message);
    }
    if (h->length > (uint64_t)pol->max_body) {
        pass_bare_head(g, src, dst, end, h);
        return refuse(g, 413, AGW_CODE_INVALID_ARGUMENT,
                      "request body of %llu bytes is over max_body_bytes "
                      "(%lld)",
                      (unsigned long long)h->length, pol->max_body);
    }
    if (h->length > 0 && charge((long long)h->length) > pol->max_buffered) {
        charge(-(long long)h->length);
        pass_bare_head(g, src, dst, end, h);
        return refuse(g, 503, AGW_CODE_UNAVAILABLE, BUSY);
    }
    g->held += (long long)h->length; /* reserved */
    pass(g, src, dst, end, false);
    g->left = h->length;
    g->body = 0;
    g->state = h->chunked ? S_CHUNK_SIZE : h->length > 0 ? S_BODY : S_ANSWER;
    return MOVED;
}

/* Offset just past the empty line that ends the head in the first LEN
 * bytes of SRC, or 0. */
static size_t
find_head_end(struct agw_guard *g, struct evbuffer *src, size_t len)
{
    struct evbuffer_ptr p;
    size_t lf;
    char first;

    while (g->searched < len) {
        evbuffer_ptr_set(src, &p, g->searched, EVBUFFER_PTR_SET);
        p = evbuffer_search(src, "\n", 1, &p);
        if (p.pos < 0 || (size_t)p.pos >= len) {
            g->searched = len;
            return 0;
        }
        lf = (size_t)p.pos;
        if (lf == g->line_start) {
            return lf + 1;
        }
        if (lf == g->line_start + 1) {
            evbuffer_ptr_set(src, &p, g->line_start, EVBUFFER_PTR_SET);
            evbuffer_copyout_from(src, &p, &first, 1);
            if (first == '\r') {
                return lf + 1;
            }
        }
        g->line_start = g->searched = lf + 1;
    }
    return 0;
}

static enum step
step_head(struct agw_guard *g, struct evbuffer *src, struct evbuffer *dst)
{
    size_t len = evbuffer_get_length(src);
    size_t end = find_head_end(
        g, src, len > AGW_GUARD_HEAD_MAX + 1 ? AGW_GUARD_HEAD_MAX + 1 : len);
    struct head h;
    char *text;
    enum step r;

    if (end == 0 || end > AGW_GUARD_HEAD_MAX) {
        if (end != 0 || len > AGW_GUARD_HEAD_MAX) {
            return refuse_head(g, dst, 431, AGW_CODE_INVALID_ARGUMENT,
                               "request head over %d bytes",
                               AGW_GUARD_HEAD_MAX);
        }
        if (len > 0 && atomic_load(&buffered) > g->policy->max_buffered) {
            return refuse_head(g, dst, 503, AGW_CODE_UNAVAILABLE, BUSY);
        }
        return STUCK;
    }
    g->searched = g->line_start = 0;
    text = malloc(end + 1);
    if (text == NULL) {
        return refuse_head(g, dst, 503, AGW_CODE_UNAVAILABLE, "out of memory");
    }
    evbuffer_copyout(src, text, end);
    text[end] = '\0';
    if (parse_head(text, end, &h)) {
        r = admit(g, src, dst, end, &h);
    } else {
        r = refuse_head(g, dst, 400, AGW_CODE_INVALID_ARGUMENT, "%s",
                        h.problem);
    }
    free(text);
    return r;
}

static enum step
step_data(struct agw_guard *g, struct evbuffer *src, struct evbuffer *dst)
{
    size_t len = evbuffer_get_length(src);
    size_t n = len < g->left ? len : (size_t)g->left;

    if (n == 0) {
        return STUCK;
    }
    pass(g, src, dst, n, true);
    g->left -= n;
    if (g->left == 0) {
        g->state = g->state == S_BODY ? S_ANSWER : S_CHUNK_END;
    }
    return MOVED;
}

static enum step
step_chunk_size(struct agw_guard *g, struct evbuffer *src, struct evbuffer *dst)
{
    const struct agw_guard_policy *pol = g->policy;
    char line[CHUNK_LINE_MAX];
    size_t len = evbuffer_get_length(src);
    size_t n = len < sizeof(line) ? len : sizeof(line);
    char *lf;
    size_t digits;
    uint64_t size;

    evbuffer_copyout(src, line, n);
    lf = memchr(line, '\n', n);
    if (lf == NULL) {
        return n < sizeof(line) ? STUCK
                                : refuse_body(g, dst, LAST_CHUNK, 400,
                                              AGW_CODE_INVALID_ARGUMENT,
                                              "a chunk-size line too long");
    }
    digits = (size_t)(lf - line);
    if (digits > 0 && line[digits - 1] == '\r') {
        digits--;
    }
    if (!parse_number(line, digits, 16, &size)) {
        return refuse_body(g, dst, LAST_CHUNK, 400, AGW_CODE_INVALID_ARGUMENT,
                           "a chunk size that is not bare hex digits");
    }
    if (size > (uint64_t)pol->max_body ||
        g->body > (uint64_t)pol->max_body - size) {
        return refuse_body(g, dst, LAST_CHUNK, 413, AGW_CODE_INVALID_ARGUMENT,
                           "chunked request body over max_body_bytes (%lld)",
                           pol->max_body);
    }
    if (size > 0 && charge((long long)size) > pol->max_buffered) {
        charge(-(long long)size);
        return refuse_body(g, dst, LAST_CHUNK, 503, AGW_CODE_UNAVAILABLE, BUSY);
    }
    g->held += (long long)size; /* reserved */
    g->body += size;
    g->left = size;
    pass(g, src, dst, (size_t)(lf - line) + 1, false);
    g->state = size > 0 ? S_CHUNK_DATA : S_TRAILER;
    return MOVED;
}

/* Expects a bare line end (CRLF or LF), then goes to NEXT; else the
 * body is cut short with END and refused for PROBLEM. */
static enum step
step_line_end(struct agw_guard *g, struct evbuffer *src, struct evbuffer *dst,
              enum state next, const char *end, const char *problem)
{
    unsigned char b[2];
    size_t len = evbuffer_get_length(src);
    size_t n = len < 2 ? len : 2;

    if (n == 0) {
        return STUCK;
    }
    evbuffer_copyout(src, b, n);
    if (b[0] == '\n') {
        n = 1;
    } else if (b[0] != '\r' || (n == 2 && b[1] != '\n')) {
        return refuse_body(g, dst, end, 400, AGW_CODE_INVALID_ARGUMENT, "%s",
                           problem);
    } else if (n < 2) {
        return STUCK;
    }
    pass(g, src, dst, n, false);
    g->state = next;
    return MOVED;
}

static enum step
step(struct agw_guard *g, struct evbuffer *src, struct evbuffer *dst)
{
    switch (g->state) {
    case S_HEAD:
        return step_head(g, src, dst);
    case S_BODY:
    case S_CHUNK_DATA:
        return step_data(g, src, dst);
    case S_CHUNK_SIZE:
        return step_chunk_size(g, src, dst);
    case S_CHUNK_END:
        return step_line_end(g, src, dst, S_CHUNK_SIZE, LAST_CHUNK,
                             "chunk data longer than its chunk size");
    case S_TRAILER:
        return step_line_end(g, src, dst, S_ANSWER, TRAILER_END,
                             "trailer fields are not accepted");
    case S_DROP:
        drop(g, src, evbuffer_get_length(src));
        return STUCK;
    case S_ANSWER:
    default:
        return STUCK;
    }
}

static void
run(struct agw_guard *g, struct evbuffer *src, struct evbuffer *dst)
{
    long long now = (long long)evbuffer_get_length(src);

    charge(now - g->waiting); /* what the transport read meanwhile */
    g->waiting = now;
    while (step(g, src, dst) == MOVED) {
    }
}

/* bufferevent_filter's input filter. */
static enum bufferevent_filter_result
filter_in(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit,
          enum bufferevent_flush_mode mode, void *arg)
{
    size_t before = evbuffer_get_length(dst);

    run(arg, src, dst);
    return evbuffer_get_length(dst) > before ? BEV_OK : BEV_NEED_MORE;
}

/* Copies to the transport's output, DST, what evhttp added to its own,
 * SRC, since the last copy. */
static bool
copy_out(struct agw_guard *g, struct evbuffer *src, struct evbuffer *dst)
{
    struct evbuffer_ptr p;
    char buf[4096];
    size_t n;
    bool moved = false;

    while (g->copied < evbuffer_get_length(src)) {
        evbuffer_ptr_set(src, &p, g->copied, EVBUFFER_PTR_SET);
        n = (size_t)evbuffer_copyout_from(src, &p, buf, sizeof(buf));
        evbuffer_add(dst, buf, n);
        g->copied += n;
        moved = true;
    }
    return moved;
}

/*
 * The output filter. evhttp takes an empty output for an answer sent, and
 * may shut the socket down right then: so its output keeps the answer
 * until the transport has sent the copy it got (its output is empty).
 */
static enum bufferevent_filter_result
filter_out(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit,
           enum bufferevent_flush_mode mode, void *arg)
{
    struct agw_guard *g = arg;
    bool moved = false;

    if (g->copied > 0 && evbuffer_get_length(dst) == 0) {
        evbuffer_drain(src, g->copied);
        g->copied = 0;
        moved = true;
    }
    if (copy_out(g, src, dst)) {
        moved = true;
    }
    return moved ? BEV_OK : BEV_NEED_MORE;
}

/*
 * evhttp adds an answer to its output before it enables writing, and the
 * filter only looks at the output while writing is enabled or when the
 * transport has written: so each byte goes to the transport as it is
 * added, and the transport's write has the filter see it sent.
 */
static void
on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct agw_guard *g = arg;

    if (info->n_added > 0) {
        copy_out(g, buf,
                 bufferevent_get_output(bufferevent_get_underlying(g->bev)));
    }
}

static void
free_guard(void *arg)
{
    struct agw_guard *g = arg;

    evbuffer_remove_cb_entry(bufferevent_get_output(g->bev), g->on_output);
    charge(-(g->held + g->waiting));
    free(g);
}

/* ------------------------------------------------------------ API */

struct bufferevent *
agw_guard_new(struct bufferevent *underlying,
              const struct agw_guard_policy *policy, struct agw_guard **out)
{
    struct agw_guard *g = calloc(1, sizeof(*g));
    struct bufferevent *bev = NULL;

    if (g != NULL) {
        g->policy = policy;
        bev = bufferevent_filter_new(underlying, filter_in, filter_out,
                                     BEV_OPT_CLOSE_ON_FREE, free_guard, g);
    }
    if (bev == NULL) {
        free(g);
        bufferevent_free(underlying);
        return NULL;
    }
    g->bev = bev;
    g->on_output = evbuffer_add_cb(bufferevent_get_output(bev), on_output, g);
    /* The transport stops reading once a head's worth waits: deciding
     * never takes more, and while a request is answered nothing more is
     * read. */
    bufferevent_setwatermark(underlying, EV_READ, 0, AGW_GUARD_HEAD_MAX + 1);
    *out = g;
    return bev;
}

void
agw_guard_refuse(struct agw_guard *g, const struct agw_refusal *r)
{
    refuse_head(g, bufferevent_get_input(g->bev), r->status, r->code, "%s",
                r->message);
}

const struct agw_refusal *
agw_guard_refusal(const struct agw_guard *g)
{
    return g->refused ? &g->refusal : NULL;
}

void
agw_guard_answered(struct agw_guard *g)
{
    if (g->state != S_ANSWER) {
        return;
    }
    charge(-g->held);
    g->held = 0;
    g->state = S_HEAD;
    run(g, bufferevent_get_input(bufferevent_get_underlying(g->bev)),
        bufferevent_get_input(g->bev));
}

void
agw_guard_close(struct agw_guard *g)
{
    g->state = S_DROP;
}

long long
agw_guard_buffered(void)
{
    return atomic_load(&buffered);
}
