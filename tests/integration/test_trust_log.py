"""Access lines cannot be forged (issue #11 item 7, SPEC §6). Requests
whose request line carries " caller=svc-b status=200", quotes,
backslashes, '=', control characters (CR, tab, ESC, DEL) and non-ASCII
bytes (NEL, U+2028, invalid UTF-8), and headers that try the same
(User-Agent, a folded header, an unacceptable X-Request-Id), each give
exactly one access line. With format = text every line is printable
ASCII and starts with a timestamp, each access key appears exactly once
and in order, a value is plain or double-quoted with escapes, and
undoing the escapes gives back the bytes sent. With format = json every
line is one JSON object in valid UTF-8 (in fact ASCII), without
duplicate keys, whose path is the one sent."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

TEXT_KEYS = ["caller", "class", "business_id", "method", "path", "status",
             "cache", "upstream_status", "attempts", "upstream_ms",
             "ratelimit_wait_ms", "total_ms"]
JSON_KEYS = {"ts", "level", "program", "type", "request_id"} | set(TEXT_KEYS)
LINE_RE = re.compile(
    rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug)"
    rb"( \[[^\]]*\])? \S.*")
ACCESS_RE = re.compile(rb"\S+ (\w+) \[([A-Za-z0-9._:-]+)\] access (.*)")
KEY_RE = re.compile(rb"(\w+)=")
PLAIN_RE = re.compile(rb'[^\s"=\\]+')
QUOTED_RE = re.compile(rb'"((?:[^"\\]|\\.)*)"')
ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b'"': b'"', b"\\": b"\\"}

FORGED = b" caller=svc-b status=200"
# 6 KB that escape to 18 KB: format = text cuts the value, not the line.
LONG_TARGET = b"/long" + b'"\xe2\x80\xa8=' * 1200 + FORGED
TEXT_LINE_MAX = 6000

# (name, method, raw request-target, extra header lines, body or None).
# A target with a blank or a control byte, or a folded header, is refused
# 400 by the framing guard before evhttp parses it (see framed()): its one
# access line is found by the X-Request-Id the gateway answered, with
# method and path "-". Every other target reaches the router.
CASES = [
    ("SPEC example on a probe path", b"GET", b"/healthz" + FORGED, b"",
     None),
    ("forged fields after the create path", b"POST",
     b"/v1/businesses/a" + FORGED + b"/assets", b"", b"{}"),
    ("quote, equals and backslash", b"GET",
     b'/x\\" caller="svc-b\\ a=b"', b"", None),
    ("CR in the request line", b"GET", b"/x\rcaller=svc-b" + FORGED, b"",
     None),
    ("tab, VT, FF", b"GET", b"/x\tstatus=200\x0b\x0ccache=HIT", b"", None),
    ("ESC, BEL, DEL and C0 bytes", b"GET",
     b"/x\x1b[31mred\x07\x7f\x01\x1c\x1d\x1e", b"", None),
    ("NEL and U+2028", b"GET",
     b"/x\xc2\x85caller=svc-b\xe2\x80\xa8status=200\xe2\x80\xa9", b"",
     None),
    ("invalid UTF-8", b"GET", b"/x\xff\xfe\xc0/\xed\xa0\x80", b"", None),
    ("forged business id on a create", b"POST",
     b'/v1/businesses/\xc2\x85x"=\\' + FORGED + b"/assets", b"", b"{}"),
    ("a path too long for a text line", b"GET", LONG_TARGET, b"", None),
    ("forged fields without a blank", b"GET",
     b'/healthz"caller=svc-b"status=200\\"', b"", None),
    ("forged business id without a blank", b"POST",
     b'/v1/businesses/\xc2\x85x"=\\caller=svc-b/assets', b"", b"{}"),
    ("hostile User-Agent and folded header", b"POST",
     H.create_path(H.BIZ2).encode(),
     b'User-Agent: ua" caller=svc-b status=200\r\n'
     b"X-Forged: a\r\n caller=svc-b status=200\r\n", b'{"uri":"nope"}'),
]


def framed(target, extra):
    """True when the guard passes the head on to evhttp (SPEC §8)."""
    return (re.search(rb"[\x00-\x20\x7f]", target) is None and
            b"\r\n " not in extra)


def send(gw, i, method, target, extra, body, rid=None):
    rid = rid or "trust-%d" % i
    data = b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: %s\r\n%s" % (
        method, target, rid.encode(), extra)
    if body is not None:
        data += b"Content-Type: application/json\r\n"
        data += b"Content-Length: %d\r\n" % len(body)
    data += b"Connection: close\r\n\r\n" + (body or b"")
    return H.raw_send(gw.port, data)


def run_cases(h, sb, fmt):
    """Starts a gateway logging in FMT, sends every case and one whose
    X-Request-Id is unacceptable; returns (gateway, [(case, resp, rid)])."""
    gw = H.Gateway(h, sb, overrides={"log": {"format": fmt}})
    sent = []
    for i, case in enumerate(CASES):
        name, method, target, extra, body = case
        r = send(gw, i, method, target, extra, body)
        h.t.check(r.status is not None, "%s %s: answered (%s)"
                  % (fmt, name, r.status), r.short())
        rid = "trust-%d" % i
        if not framed(target, extra):
            h.t.check(r.status == 400 and b"INVALID_ARGUMENT" in r.body,
                      "%s %s: refused 400 by the framing guard"
                      % (fmt, name), r.short())
            rid = r.header("x-request-id") or rid
        sent.append((case, r, rid))
    case = ("unacceptable X-Request-Id", b"POST", H.create_path().encode(),
            b"", b'{"uri":"nope"}')
    r = send(gw, 0, case[1], case[2], case[3], case[4],
             rid="a b caller=svc-b status=200]")
    got = r.header("x-request-id") or ""
    h.t.check(r.status == 400 and got and " " not in got,
              "%s: an unacceptable X-Request-Id is replaced" % fmt, r.short())
    sent.append((case, r, got))
    rc, killed = gw.stop()
    h.t.check(rc == 0 and not killed, "%s gateway exits 0" % fmt,
              "rc %r killed %r" % (rc, killed))
    return gw, sent


def log_bytes(gw):
    with open(gw.proc.err_path, "rb") as f:
        return f.read()


def unescape(raw):
    """The bytes a quoted text-format value stands for, or None when it
    holds an escape other than \\" \\\\ \\n \\r \\t \\xHH."""
    out = b""
    i = 0
    while i < len(raw):
        c = raw[i:i + 1]
        if c != b"\\":
            out += c
            i += 1
            continue
        e = raw[i + 1:i + 2]
        if e in ESCAPES:
            out += ESCAPES[e]
            i += 2
        elif e == b"x" and re.fullmatch(rb"[0-9a-fA-F]{2}", raw[i + 2:i + 4]):
            out += bytes([int(raw[i + 2:i + 4], 16)])
            i += 4
        else:
            return None
    return out


def parse_fields(rest):
    """key=value fields separated by one space, as SPEC §6 defines them:
    [(key, value bytes)], or None when REST does not parse."""
    fields = []
    pos = 0
    while pos < len(rest):
        m = KEY_RE.match(rest, pos)
        if m is None:
            return None
        key, pos = m.group(1).decode(), m.end()
        q = QUOTED_RE.match(rest, pos)
        p = PLAIN_RE.match(rest, pos)
        if q is not None:
            value, pos = unescape(q.group(1)), q.end()
        elif p is not None:
            value, pos = p.group(0), p.end()
        else:
            return None
        if value is None:
            return None
        fields.append((key, value))
        if pos < len(rest):
            if rest[pos:pos + 1] != b" ":
                return None
            pos += 1
            if pos == len(rest):
                return None
    return fields


def check_lines_whole(t, fmt, log):
    """No line was added: every byte between the newlines is printable
    ASCII, and readers that also split on NEL or U+2028 see as many."""
    lines = log.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    bad = [ln for ln in lines if re.fullmatch(rb"[\x20-\x7e]*", ln) is None]
    t.check(lines and not bad, "%s: all %d lines are printable ASCII"
            % (fmt, len(lines)), "\n".join(repr(ln) for ln in bad[:5]))
    text = log.decode("utf-8", "replace")
    t.eq(len(text.splitlines()), len(lines),
         "%s: str.splitlines() sees the same %d lines" % (fmt, len(lines)))
    return lines


@H.scenario
def text_format(h):
    sb = h.sandbox()
    t = h.t
    gw, sent = run_cases(h, sb, "text")
    lines = check_lines_whole(t, "text", log_bytes(gw))
    bad = [ln for ln in lines if LINE_RE.fullmatch(ln) is None]
    t.check(not bad, "text: every line is 'TS LEVEL [rid] message'",
            "\n".join(repr(ln) for ln in bad[:5]))
    by_rid = {}
    for ln in lines:
        m = ACCESS_RE.fullmatch(ln)
        if m is not None:
            by_rid.setdefault(m.group(2).decode(), []).append(m)
    for (name, method, target, _, _), r, rid in sent:
        got = by_rid.get(rid, [])
        if not t.check(len(got) == 1, "text %s: exactly one access line "
                       "[%s]" % (name, rid), repr([m.group(0) for m in got])):
            continue
        m = got[0]
        fields = parse_fields(m.group(3))
        if not t.check(fields is not None, "text %s: the line is key=value "
                       "fields, quoted where SPEC §6 says" % name,
                       repr(m.group(0))):
            continue
        keys = [k for k, _ in fields]
        t.check(keys == TEXT_KEYS, "text %s: each key once, in order" % name,
                "keys %r\nline %r" % (keys, m.group(0)))
        kv = dict(fields)
        path = kv.get("path", b"")
        if not framed(target, _extra_of(name)):
            method, target = b"-", b"-"
        if target == LONG_TARGET:
            t.check(len(m.group(0)) < TEXT_LINE_MAX and
                    path.endswith(b"...") and len(path) > 100 and
                    target.startswith(path[:-3]),
                    "text %s: the value is cut and ends in ..., the fields "
                    "after it are whole" % name, repr(m.group(0)[:300]))
            path = target
        t.check(path == target and kv.get("method") == method and
                kv.get("status") == str(r.status).encode() and
                kv.get("caller") == b"-" and m.group(1) == b"info",
                "text %s: path, method, status and caller are what was sent"
                % name, "sent %r, status %r\nline %r"
                % (target, r.status, m.group(0)))
        segment = re.fullmatch(rb"/v1/businesses/(.*)/assets", target)
        if segment is not None:
            t.check(kv.get("business_id") == segment.group(1)[:40],
                    "text %s: business_id is the segment sent" % name,
                    "sent %r\nline %r" % (segment.group(1), m.group(0)))


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate keys %r" % keys)
    return dict(pairs)


@H.scenario
def json_format(h):
    sb = h.sandbox()
    t = h.t
    gw, sent = run_cases(h, sb, "json")
    log = log_bytes(gw)
    try:
        log.decode("utf-8")
        utf8 = None
    except UnicodeDecodeError as e:
        utf8 = str(e)
    t.check(utf8 is None, "json: the log is valid UTF-8", utf8)
    lines = check_lines_whole(t, "json", log)
    recs, bad = [], []
    for ln in lines:
        try:
            j = json.loads(ln.decode("utf-8"), object_pairs_hook=no_duplicates)
        except ValueError:
            j = None
        if isinstance(j, dict):
            recs.append(j)
        else:
            bad.append(ln)
    t.check(not bad, "json: every line is one JSON object without duplicate "
            "keys", "\n".join(repr(ln) for ln in bad[:5]))
    by_rid = {}
    for j in recs:
        if j.get("type") == "access":
            by_rid.setdefault(j.get("request_id"), []).append(j)
    for (name, method, target, _, _), r, rid in sent:
        got = by_rid.get(rid, [])
        if not t.check(len(got) == 1, "json %s: exactly one access line "
                       "for %s" % (name, rid), repr(got)):
            continue
        j = got[0]
        t.check(set(j) == JSON_KEYS, "json %s: the access keys, no other"
                % name, repr(sorted(j)))
        if not framed(target, _extra_of(name)):
            method, target = b"-", b"-"
        want = target.decode("utf-8", "replace")
        t.check(j.get("path") == want and j.get("method") == method.decode()
                and j.get("status") == r.status and j.get("caller") == "-",
                "json %s: path (invalid UTF-8 as U+FFFD), method, status "
                "and caller are what was sent" % name,
                "sent %r\nline %r" % (want, j))


def _extra_of(name):
    return {c[0]: c[3] for c in CASES}.get(name, b"")


if __name__ == "__main__":
    H.run()
