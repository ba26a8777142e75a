"""HTTP/1.1 framing and memory at the trust boundary (issue #11 items 2
and 3, SPEC section 8), on raw sockets against the real gateway:
ambiguous framing (two Content-Length fields, a Content-Length that is
not plain digits, Content-Length with Transfer-Encoding, chunk sizes
that are not bare hex digits) is refused with 400 and Connection: close
and nothing after it is read as a request; a body over max_body_bytes
gets 413, and an unauthenticated create 401, before the body is sent;
the max_connections cap answers 503 at accept; the max_buffered_bytes
budget answers 503 before a body is read; and 200 slow-body connections
hold no more memory than max_connections x max_body_bytes allows.

Decisions: blanks (SP, HTAB) around a Content-Length value are the
field's optional whitespace and are allowed ("Content-Length:  34" is
34); any other character is refused ("+34", "3 4", "0x22", a vertical
tab). A chunk-size line is hex digits and its CRLF only: no blanks
before or after, no chunk extensions, no trailer fields.

Each scenario has its own gateway over the reset shared sandbox (-k NAME
runs one alone).
"""

import http.client
import json
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

metric = H.metric

READ_S = 3.0           # how long a raw exchange waits for answers
SETTLE_S = 1.0         # and for more once the answers expected came
EARLY_S = 2.0          # an early refusal comes within this
TOKEN = "trust-http-token-" + os.urandom(8).hex()

MAX_BODY = 65536        # max_body_bytes of the framing gateways
HOSTILE_CONNS = 200
HOSTILE_MAX_CONNS = 10
HOSTILE_BODY = 1024 * 1024       # max_body_bytes in the memory test
OVERHEAD_MIB = 32                # fixed allowance: buffers, allocator
OVERHEAD_ASAN_MIB = 160          # ASan: shadow memory and quarantine


# ------------------------------------------------------------ raw HTTP

def head(method="POST", path=None, fields=(), version="HTTP/1.1"):
    lines = ["%s %s %s" % (method, path or H.create_path(), version),
             "Host: 127.0.0.1"] + list(fields)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def body_of(sb, name):
    return json.dumps({"uri": sb.sample(name)}).encode()


def chunked(*parts):
    """A chunked body from (size text, data) pairs, then the last chunk."""
    out = b""
    for size, data in parts:
        out += size.encode("latin-1") + b"\r\n" + data + b"\r\n"
    return out + b"0\r\n\r\n"


def parse_answers(buf):
    """Every complete HTTP answer in BUF as (status, headers, json)."""
    out = []
    while True:
        hdr, sep, rest = buf.partition(b"\r\n\r\n")
        if not sep:
            return out
        lines = hdr.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
        if not m:
            return out
        fields = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            fields[k.strip().lower()] = v.strip()
        n = int(fields.get("content-length", "0"))
        body, buf = rest[:n], rest[n:]
        try:
            j = json.loads(body.decode("utf-8"))
        except ValueError:
            j = None
        out.append((int(m.group(1)), fields, j))


def exchange(port, data, wait=READ_S, then=None, expect=None):
    """Sends DATA (and THEN after the first answer, if given) on one
    connection; reads until the gateway closes it or WAIT passes, or,
    with EXPECT, SETTLE_S after EXPECT answers came (a keep-alive
    connection stays open: anything more would follow at once).
    Returns (answers, closed by the gateway, seconds to first byte)."""
    buf = b""
    closed = False
    first = None
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the gateway may close before taking it all
        deadline = t0 + wait
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            if first is None:
                first = time.monotonic() - t0
            buf += chunk
            if then is not None and parse_answers(buf):
                s.sendall(then)
                then = None
            if expect is not None and len(parse_answers(buf)) >= expect:
                deadline = min(deadline, time.monotonic() + SETTLE_S)
                expect = None
    return parse_answers(buf), closed, first



def check_refused(t, got, status, code, desc, names=None):
    """GOT from exchange(): exactly one answer, STATUS with CODE in
    Connectly's shape (its message naming NAMES), Connection: close, and
    the connection closed."""
    answers, closed, _ = got
    st = [a[0] for a in answers]
    ok = len(answers) == 1 and answers[0][0] == status
    if ok:
        _, fields, j = answers[0]
        msg = (j or {}).get("message", "") if isinstance(j, dict) else ""
        ok = (isinstance(j, dict) and j.get("code") == code and
              re.match(r"XASSET\.[A-Z_]+: .+", msg) is not None and
              fields.get("connection", "").lower() == "close" and closed)
        if ok and names:
            ok = names.lower() in msg.lower()
    return t.check(ok, "%s -> one answer, %d code %d%s, Connection: close, "
                   "closed" % (desc, status, code,
                               " naming %s" % names if names else ""),
                   "answers %r closed %r: %r" % (st, closed, answers))


# ------------------------------------------------------------ scenarios

def duplicate_content_length(h, sb, gw):
    """Two Content-Length fields: the first (5) would frame a short body
    and the rest would be read as a second request."""
    t = h.t
    smuggled = b"GET /nope-smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b'{"a":' + smuggled
    body += b" " * (67 - len(body))
    n404 = metric(gw, "requests_total", code="404")
    got = exchange(gw.port, head(fields=["Content-Type: application/json",
                                         "Content-Length: 5",
                                         "Content-Length: 67"]) + body)
    check_refused(t, got, 400, 3, "Content-Length 5 then 67",
                  "Content-Length")
    time.sleep(0.3)
    t.check("nope-smuggled" not in gw.log_text(),
            "the bytes after the first 5 were not read as a request (no "
            "access line for /nope-smuggled)",
            [ln for ln in gw.log_text().splitlines()
             if "nope-smuggled" in ln][:3])
    t.eq(metric(gw, "requests_total", code="404"), n404,
         "no 404 counted for a smuggled request")
    got = exchange(gw.port, head(fields=["Content-Length: 5",
                                         "Content-Length: 5"]) + b'{"a":')
    check_refused(t, got, 400, 3, "Content-Length 5 twice (equal values)",
                  "Content-Length")
    got = exchange(gw.port, head(fields=["Content-Length: 5, 5"]) + b'{"a":')
    check_refused(t, got, 400, 3, "Content-Length: 5, 5", "Content-Length")


def malformed_content_length(h, sb, gw):
    t = h.t
    body = body_of(sb, "cl.png")
    n = len(body)
    for value in ("+%d" % n, "0x%x" % n, "%d %d" % (n // 10, n % 10),
                  "\x0b%d" % n, "\x0c%d" % n, "%d." % n, "-%d" % n, ""):
        got = exchange(gw.port, head(fields=[
            "Content-Type: application/json",
            "Content-Length:" + (" " if value else "") + value]) + body)
        check_refused(t, got, 400, 3, "Content-Length %r" % value,
                      "Content-Length")
    for value in (" %d" % n, "\t%d " % n, "%d" % n):
        got = exchange(gw.port, head(fields=[
            "Content-Type: application/json",
            "Content-Length: " + value]) + body, wait=10,
            expect=1)
        st = [a[0] for a in got[0]]
        t.eq(st, [200], "Content-Length %r (blanks around the digits are "
             "allowed) -> 200" % (" " + value))


def transfer_encoding(h, sb, gw):
    t = h.t
    body = body_of(sb, "te.png")
    ck = chunked(("%x" % len(body), body))
    cases = [
        ("Content-Length then Transfer-Encoding",
         ["Content-Length: %d" % len(ck), "Transfer-Encoding: chunked"]),
        ("Transfer-Encoding then Content-Length",
         ["Transfer-Encoding: chunked", "Content-Length: %d" % len(ck)]),
        ("Transfer-Encoding: gzip, chunked",
         ["Transfer-Encoding: gzip, chunked"]),
        ("Transfer-Encoding twice",
         ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]),
        ("Transfer-Encoding: identity", ["Transfer-Encoding: identity"]),
    ]
    for desc, fields in cases:
        got = exchange(gw.port, head(fields=fields) + ck)
        check_refused(t, got, 400, 3, desc, "Transfer-Encoding")
    got = exchange(gw.port, head(fields=["Transfer-Encoding: chunked"],
                                 version="HTTP/1.0") + ck)
    check_refused(t, got, 400, 3, "Transfer-Encoding in HTTP/1.0",
                  "Transfer-Encoding")
    got = exchange(gw.port, head(method="HEAD", path="/healthz",
                                 fields=["Content-Length: 40"]) +
                   b"GET /nope-head HTTP/1.1\r\nHost: x\r\n\r\n")
    check_refused(t, got, 400, 3, "HEAD with a Content-Length body", "body")
    for desc, fields in (
            ("a folded Content-Length line",
             ["Content-Length: 3", " 4"]),
            ("a space before the colon", ["Content-Length : 34"]),
            ("a bare CR in a field", ["X-A: 1\rContent-Length: 34"])):
        got = exchange(gw.port, head(fields=fields) + body)
        check_refused(t, got, 400, 3, desc)


def chunk_sizes(h, sb, gw):
    t = h.t
    body = body_of(sb, "chunks.png")
    n = len(body)
    fields = ["Content-Type: application/json", "Transfer-Encoding: chunked"]
    for size in ("0x%x" % n, "+%x" % n, " %x" % n, "%x " % n,
                 "%x;ext=1" % n, "-%x" % n, "", "%x\t" % n):
        got = exchange(gw.port, head(fields=fields) +
                       chunked((size, body)))
        check_refused(t, got, 400, 3, "chunk size %r" % size, "chunk")
    # data longer than its size; a trailer field
    got = exchange(gw.port, head(fields=fields) +
                   chunked(("%x" % (n - 3), body)))
    check_refused(t, got, 400, 3, "chunk data longer than its size",
                  "chunk")
    got = exchange(gw.port, head(fields=fields) +
                   b"%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (n, body))
    check_refused(t, got, 400, 3, "a trailer field", "trailer")
    # valid chunked bodies
    half = n // 2
    for desc, data in (
            ("two chunks, lower-case hex",
             chunked(("%x" % half, body[:half]),
                     ("%x" % (n - half), body[half:]))),
            ("upper-case hex and leading zeros",
             chunked(("000%X" % half, body[:half]),
                     ("%X" % (n - half), body[half:])))):
        got = exchange(gw.port, head(fields=fields) + data, wait=10,
                       expect=1)
        t.eq([a[0] for a in got[0]], [200], "valid chunked body (%s) -> 200"
             % desc)


def keep_alive_order(h, sb, gw):
    """Requests on one connection are answered in order; a bad one after
    a good one is refused after the good one's answer."""
    t = h.t
    good = head(fields=["Content-Type: application/json",
                        "Content-Length: %d" % len(body_of(sb, "ka.png"))])
    good += body_of(sb, "ka.png")
    health = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    answers, closed, _ = exchange(gw.port, good + health + good, wait=6,
                                  expect=3)
    t.eq([a[0] for a in answers], [200, 200, 200],
         "three requests sent at once on one connection -> 200 200 200")
    bad = head(fields=["Content-Length: 5", "Content-Length: 6"]) + b"{}{}{}"
    answers, closed, _ = exchange(gw.port, good + bad + health, wait=6)
    st = [a[0] for a in answers]
    t.check(st == [200, 400] and closed and
            answers[1][1].get("connection", "").lower() == "close",
            "a good request, then two Content-Length fields, then a GET -> "
            "200, then 400 with Connection: close, and nothing more",
            "answers %r closed %r" % (st, closed))


def body_too_large(h, sb, gw, max_body=None):
    max_body = max_body or MAX_BODY
    t = h.t
    data = head(fields=["Content-Type: application/json",
                        "X-Request-Id: trust-413",
                        "Content-Length: %d" % (max_body + 1)])
    answers, closed, first = exchange(gw.port, data, wait=EARLY_S)
    t.check(len(answers) == 1 and answers[0][0] == 413 and
            (answers[0][2] or {}).get("code") == 3 and closed,
            "Content-Length max_body_bytes + 1, body not sent -> 413 code 3 "
            "at once, connection closed",
            "answers %r closed %r" % (answers, closed))
    if answers:
        t.eq(answers[0][1].get("x-request-id"), "trust-413",
             "the early 413 carries the caller's X-Request-Id")
        t.check(answers[0][1].get("ratelimit-limit") is not None,
                "the early 413 carries RateLimit-Limit (a create's headers)",
                repr(answers[0][1]))


def early_auth(h, sb):
    t = h.t
    import hashlib
    clients = h.write("trust-clients.ini", "[caller]\ntoken_sha256 = %s\n"
                      "businesses = *\n" % hashlib.sha256(
                          TOKEN.encode()).hexdigest())
    gw = H.Gateway(h, sb, overrides={
        "auth": {"mode": "token", "clients_file": clients},
        "server": {"client_timeout_ms": 5000}})
    big = 60000
    for desc, auth in (("no Authorization", []),
                       ("an unknown token",
                        ["Authorization: Bearer not-the-token"])):
        data = head(fields=["Content-Type: application/json",
                            "Content-Length: %d" % big] + auth)
        answers, closed, _ = exchange(gw.port, data, wait=EARLY_S)
        ok = (len(answers) == 1 and answers[0][0] == 401 and
              (answers[0][2] or {}).get("code") == 16 and closed and
              answers[0][1].get("www-authenticate", "").startswith("Bearer"))
        t.check(ok, "unauthenticated create (%s) announcing a %d-byte body, "
                "body not sent -> 401 code 16 with WWW-Authenticate at once"
                % (desc, big), "answers %r closed %r" % (answers, closed))
    body = body_of(sb, "auth-ok.png")
    pad = body[:-1] + b" " * 40000 + b"}"
    data = head(fields=["Content-Type: application/json",
                        "Authorization: Bearer " + TOKEN,
                        "Content-Length: %d" % len(pad)])
    answers, closed, _ = exchange(gw.port, data, wait=1.0)
    t.check(not answers, "the same with the right token: the gateway waits "
            "for the body", repr(answers))
    answers, closed, _ = exchange(gw.port, data + pad, wait=10, expect=1)
    t.eq([a[0] for a in answers], [200], "and with its body -> 200")
    gw.stop()


def cap_at_accept(h, sb):
    t = h.t
    gw = H.Gateway(h, sb, overrides={
        "server": {"max_connections": 2, "client_timeout_ms": 30000}})
    # The start-up probe's connection, then /metrics's own, must be gone
    # (counted out) before the two are held: one metric read is one
    # connection that closes right after.
    H.wait_until(lambda: metric(gw, "connections_open") <= 1, 3, step=0.05)
    time.sleep(0.5)
    held = [socket.create_connection(("127.0.0.1", gw.port), timeout=5)
            for _ in range(2)]
    time.sleep(0.2)
    answers, closed, first = exchange(gw.port, b"", wait=EARLY_S)
    t.check(len(answers) == 1 and answers[0][0] == 503 and
            (answers[0][2] or {}).get("code") == 14 and closed,
            "max_connections = 2, two idle connections held: a third gets "
            "503 code 14 and is closed before it sends a byte",
            "answers %r closed %r" % (answers, closed))
    for s in held:
        s.close()
    deadline = time.monotonic() + 3
    r = None
    while time.monotonic() < deadline:
        r = gw.create({"uri": sb.sample("after-cap.png")})
        if r.status == 200:
            break
        time.sleep(0.1)
    t.eq(r.status, 200, "once they close, a create -> 200")
    gw.stop()


def budget(h, sb):
    """max_buffered_bytes: a body that would take the process past it is
    refused 503 before it is read."""
    t = h.t
    gw = H.Gateway(h, sb, overrides={"server": {
        "max_body_bytes": 600000, "max_buffered_bytes": 1048576,
        "client_timeout_ms": 30000}})
    body = body_of(sb, "budget.png")
    pad = body[:-1] + b" " * (600000 - len(body)) + b"}"
    data = head(fields=["Content-Type: application/json",
                        "Content-Length: %d" % len(pad)])
    a = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    a.sendall(data + pad[:1000])
    time.sleep(0.3)
    answers, closed, _ = exchange(gw.port, data, wait=EARLY_S)
    t.check(len(answers) == 1 and answers[0][0] == 503 and
            (answers[0][2] or {}).get("code") == 14 and closed,
            "max_buffered_bytes = 1 MiB, one 600000-byte body in flight: a "
            "second announced -> 503 code 14 before its body is read",
            "answers %r closed %r" % (answers, closed))
    a.sendall(pad[1000:])
    a.settimeout(10)
    buf = b""
    while not parse_answers(buf):
        chunk = a.recv(65536)
        if not chunk:
            break
        buf += chunk
    a.close()
    t.eq([x[0] for x in parse_answers(buf)], [200],
         "the first body completes -> 200")
    # the first one's bytes leave the budget on its worker's thread just
    # after its answer went out: allow that thread a moment
    deadline = time.monotonic() + 3
    while True:
        answers, closed, _ = exchange(gw.port, data + pad, wait=10,
                                      expect=1)
        if [x[0] for x in answers] != [503] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    t.check([x[0] for x in answers] == [200],
            "once it was answered, another 600000-byte body -> 200",
            repr(answers))
    gw.stop()


# ------------------------------------------------------------ memory

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return -1


def is_asan(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def slow_body(port, data, results, i, sent_all):
    """Connects, sends DATA (a head and all but the last body byte) and
    leaves the connection open. RESULTS[i] = (socket or None, outcome)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError as e:
        results[i] = (None, "connect: %s" % e)
        return
    try:
        s.sendall(data)
        results[i] = (s, "sent")
    except OSError as e:
        results[i] = (s, "send: %s" % type(e).__name__)
    sent_all.release()


def outcome_now(s):
    """'held' (open, nothing received), '503', 'closed' or another status."""
    s.setblocking(False)
    try:
        data = s.recv(65536)
    except BlockingIOError:
        return "held"
    except OSError:
        return "closed"
    finally:
        s.setblocking(True)
    if not data:
        return "closed"
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return m.group(1).decode() if m else "junk"


def hostile_memory(h, sb):
    t = h.t
    gw = H.Gateway(h, sb, overrides={"server": {
        "max_connections": HOSTILE_MAX_CONNS,
        "max_body_bytes": HOSTILE_BODY, "client_timeout_ms": 60000},
        "log": {"level": "info"}})
    pid = gw.proc.pid
    r = gw.create({"uri": sb.sample("mem-warm.png")})
    t.eq(r.status, 200, "memory test: a warm-up create -> 200")
    deadline = time.monotonic() + 3
    while (metric(gw, "connections_open") > 1 and
           time.monotonic() < deadline):
        time.sleep(0.05)
    time.sleep(0.3)
    before = rss_kib(pid)

    data = head(fields=["Content-Type: application/json",
                        "Content-Length: %d" % HOSTILE_BODY])
    data += b"x" * (HOSTILE_BODY - 1)
    results = [None] * HOSTILE_CONNS
    sent_all = threading.Semaphore(0)
    threads = [threading.Thread(target=slow_body, daemon=True,
                                args=(gw.port, data, results, i, sent_all))
               for i in range(HOSTILE_CONNS)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(max(0.1, t0 + 60 - time.monotonic()))
    t.check(not any(th.is_alive() for th in threads),
            "%d clients connected and sent a head and %d body bytes each "
            "within 60 s" % (HOSTILE_CONNS, HOSTILE_BODY - 1),
            "%d still sending" % sum(th.is_alive() for th in threads))
    peak = before
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        peak = max(peak, rss_kib(pid))
        time.sleep(0.05)
    outcomes = {}
    socks = []
    for res in results:
        s, how = res if res is not None else (None, "no result")
        if s is not None:
            socks.append(s)
            how = outcome_now(s) if how == "sent" or how.startswith("send") \
                else how
        outcomes[how] = outcomes.get(how, 0) + 1
    overhead = OVERHEAD_ASAN_MIB if is_asan(h.gateway_bin) else OVERHEAD_MIB
    allowed = HOSTILE_MAX_CONNS * HOSTILE_BODY // 1024 + overhead * 1024
    t.diag("hostile memory: %d connections, each a head with "
           "Content-Length %d and all but its last byte; max_connections "
           "%d" % (HOSTILE_CONNS, HOSTILE_BODY, HOSTILE_MAX_CONNS))
    t.diag("  outcomes: %s" % " ".join("%s:%d" % kv
                                       for kv in sorted(outcomes.items())))
    t.diag("  gateway RSS before: %d KiB (%.1f MiB); while held (peak): %d "
           "KiB (%.1f MiB); grown %.1f MiB" % (
               before, before / 1024.0, peak, peak / 1024.0,
               (peak - before) / 1024.0))
    t.diag("  bound: before + max_connections x max_body_bytes (%d MiB) + "
           "fixed overhead %d MiB = %.1f MiB" % (
               HOSTILE_MAX_CONNS * HOSTILE_BODY // (1024 * 1024), overhead,
               (before + allowed) / 1024.0))
    t.check(before > 0 and peak - before <= allowed,
            "RSS while 200 slow bodies are held stays within max_connections"
            " x max_body_bytes + %d MiB (grew %.1f MiB)"
            % (overhead, (peak - before) / 1024.0),
            "before %d KiB peak %d KiB" % (before, peak))
    held = outcomes.get("held", 0)
    others = {k: v for k, v in outcomes.items()
              if k not in ("held", "503", "closed")}
    t.check(0 < held <= HOSTILE_MAX_CONNS and not others,
            "at most max_connections (%d) connections held (%d); every "
            "other one answered 503 or closed" % (HOSTILE_MAX_CONNS, held),
            repr(outcomes))
    for s in socks:
        s.close()
    deadline = time.monotonic() + 5
    r = None
    while time.monotonic() < deadline:
        r = gw.create({"uri": sb.sample("mem-after.png")})
        if r.status == 200:
            break
        time.sleep(0.1)
    t.eq(r.status, 200, "after they all close, a create -> 200")
    t.check(gw.proc.alive(), "the gateway is alive after the memory test",
            gw.proc.tail())
    gw.stop()


def slow_call_after_idle(h, sb):
    """A keep-alive caller idle for most of client_timeout_ms, then a call
    that takes longer than the rest of it: the call is answered (the idle
    cut applies between requests, not while one is answered)."""
    t = h.t
    gw = H.Gateway(h, sb, overrides={
        "server": {"client_timeout_ms": 2000, "workers": 1},
        "upstream": {"request_timeout_ms": 5000}})
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)

    def post(name):
        body = json.dumps({"uri": sb.sample(name)})
        conn.request("POST", H.create_path(), body,
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        return r.status

    first = post("idle-first.png")
    time.sleep(1.5)
    sb.faults(latency_ms=2000)
    t0 = time.monotonic()
    try:
        got = post("idle-slow.png")
    except (OSError, http.client.HTTPException) as e:
        got = repr(e)
    sb.reset()
    t.check(first == 200 and got == 200, "idle 1.5 s of client_timeout_ms "
            "2 s, then a 2 s call on the same connection -> answered 200",
            "first %r, second %r after %.2f s" % (
                first, got, time.monotonic() - t0))
    conn.close()
    gw.stop()


def framing(part):
    """PART(h, sb, gw) as a scenario on a gateway of its own; the gateway
    must still be alive after it, and exit 0 with a JSON log."""
    def run(h):
        t, sb = h.t, h.sandbox()
        gw = H.Gateway(h, sb, overrides={
            "server": {"max_body_bytes": MAX_BODY},
            "log": {"level": "info"}})
        part(h, sb, gw)
        t.check(gw.proc.alive(), "the gateway is alive after the framing "
                "tests", gw.proc.tail())
        rc, killed = gw.stop()
        t.check(rc == 0 and not killed, "it exits 0 on SIGTERM",
                "rc %r killed %r" % (rc, killed))
        H.check_json_log(t, gw)
    run.__name__ = part.__name__
    return H.scenario(run)


def own_gateways(part):
    """PART(h, sb) as a scenario: it starts its own gateways."""
    def run(h):
        part(h, h.sandbox())
    run.__name__ = part.__name__
    return H.scenario(run)


duplicate_content_length = framing(duplicate_content_length)
malformed_content_length = framing(malformed_content_length)
transfer_encoding = framing(transfer_encoding)
chunk_sizes = framing(chunk_sizes)
keep_alive_order = framing(keep_alive_order)
body_too_large = framing(body_too_large)
early_auth = own_gateways(early_auth)
cap_at_accept = own_gateways(cap_at_accept)
hostile_memory = own_gateways(hostile_memory)
budget = own_gateways(budget)
slow_call_after_idle = own_gateways(slow_call_after_idle)


if __name__ == "__main__":
    H.run()
