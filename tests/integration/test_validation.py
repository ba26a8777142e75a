"""Every validation failure of SPEC section 2 answered by the gateway
itself (400/413 in Connectly's error shape, naming the field), routing
404/405, malformed HTTP, and not one call reaching the sandbox. Each
scenario has its own gateway over the reset shared sandbox and checks
that none of its own calls reached it (-k NAME runs one alone)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MAX_BODY = 8192


def start(h, overrides=None):
    """The scenario's reset sandbox, its own gateway over it (with
    max_body_bytes = MAX_BODY) and a good source URI."""
    sb = h.sandbox()
    gw = H.Gateway(h, sb, overrides=overrides or {
        "server": {"max_body_bytes": MAX_BODY}})
    return h.t, sb, gw, sb.sample("v.png")


def check_none_reached(t, sb, gw, what):
    """None of the scenario's calls reached the sandbox; GW's log JSON."""
    t.eq(sb.calls(), 0, "no validation failure reached the sandbox (%s)"
         % what)
    H.check_json_log(t, gw)


@H.scenario
def business_id(h):
    t, sb, gw, good = start(h)
    for biz in ("not-a-uuid", "550e8400-e29b-41d4-a716-44665544000",
                "550e8400-e29b-41d4-a716-4466554400000",
                "550e8400e29b41d4a716446655440000",
                "g50e8400-e29b-41d4-a716-446655440000",
                "550e8400-e29b-41d4-a716_446655440000"):
        r = gw.create({"uri": good}, business=biz)
        H.check_error(t, r, 400, 3, "businessId %r" % biz, "businessId")
    r = gw.create({"uri": good}, business="not-a-uuid",
                  headers={"X-Request-Id": "val-rid-1"})
    H.check_create_headers(t, r, "400 on the create path", "val-rid-1")
    check_none_reached(t, sb, gw, "business id")


@H.scenario
def body(h):
    t, sb, gw, good = start(h)
    bodies = [
        ("not JSON", b"this is not json", "json"),
        ("truncated JSON", b'{"uri": "http://x', "json"),
        ("empty body", b"", ("json", "body")),
        ("JSON array", b"[]", ("json", "body")),
        ("JSON string", b'"uri"', ("json", "body")),
        ("JSON null", b"null", ("json", "body")),
        ("JSON number", b"42", ("json", "body")),
    ]
    for what, body, field in bodies:
        r = gw.create(body)
        H.check_error(t, r, 400, 3, "body %s" % what, field)
    r = gw.create(b"[]")
    H.check_create_headers(t, r, "400 for a bad body")
    r = gw.create(b'{"uri": "' + good.encode() + b'"} trailing')
    H.check_error(t, r, 400, 3, "JSON followed by garbage", "json")
    deep = b'{"uri": "' + good.encode() + b'", "metadata": ' + \
        b'{"x": ' * 40 + b'1' + b'}' * 40 + b'}'
    r = gw.create(deep)
    t.check(r.status == 400 and (r.json or {}).get("code") == 3,
            "JSON nested 40 deep -> 400 code 3", r.short())
    check_none_reached(t, sb, gw, "body")


@H.scenario
def uri(h):
    t, sb, gw, good = start(h)
    uris = [
        ("missing", {}),
        ("null", {"uri": None}),
        ("a number", {"uri": 5}),
        ("an object", {"uri": {"href": good}}),
        ("empty", {"uri": ""}),
        ("relative", {"uri": "/samples/v.png"}),
        ("ftp scheme", {"uri": "ftp://127.0.0.1/x.png"}),
        ("file scheme", {"uri": "file:///etc/passwd"}),
        ("no host", {"uri": "http:///x.png"}),
        ("scheme only", {"uri": "http://"}),
        ("no scheme", {"uri": "127.0.0.1/x.png"}),
        ("over 2048 bytes", {"uri": good + "?" + "a" * 2100}),
    ]
    for what, body in uris:
        r = gw.create(body)
        H.check_error(t, r, 400, 3, "uri %s" % what, "uri")
    r = gw.create({"id": "x"})
    t.check("uri is required" in str((r.json or {}).get("message")),
            "missing uri -> message 'uri is required' like Connectly",
            r.short())
    check_none_reached(t, sb, gw, "uri")


@H.scenario
def private_sources(h):
    """private / loopback sources refused unless allowed"""
    t, sb, strict, good = start(h, {
        "security": {"allow_private_sources": "no"}})
    private = ["http://127.0.0.1/x.png", "http://127.1.2.3:8080/x.png",
               "http://10.1.2.3/x.png", "http://172.16.0.1/x.png",
               "http://192.168.1.1/x.png", "http://169.254.169.254/latest",
               "http://0.0.0.0/x.png", "http://localhost/x.png",
               "http://LOCALHOST:9/x.png", "http://[::1]/x.png",
               "http://[fe80::1]/x.png", "http://[::]/x.png",
               "http://[fc00::1]/x.png", "https://192.168.0.10/x.png"]
    for u in private:
        r = strict.create({"uri": u})
        H.check_error(t, r, 400, 3, "allow_private_sources=no, uri %s" % u,
                      "uri")
    check_none_reached(t, sb, strict, "private sources")


@H.scenario
def id_field(h):
    t, sb, gw, good = start(h)
    ids = [("empty", ""), ("129 chars", "a" * 129), ("a space", "bad id"),
           ("a slash", "a/b"), ("non-ASCII", "caf\u00e9"), ("a number", 5),
           ("an object", {"v": 1}), ("a '!'", "x!")]
    for what, v in ids:
        r = gw.create({"uri": good, "id": v})
        H.check_error(t, r, 400, 3, "id %s" % what, "id")
    check_none_reached(t, sb, gw, "id field")


@H.scenario
def metadata(h):
    t, sb, gw, good = start(h)
    metas = [
        ("metadata a string", {"metadata": "x"}, "metadata"),
        ("metadata an array", {"metadata": []}, "metadata"),
        ("accessControlType unknown", {"metadata": {"accessControlType":
                                                    "PUBLIC"}},
         "metadata.accessControlType"),
        ("accessControlType lower-case", {"metadata": {
            "accessControlType": H.PUBLIC.lower()}},
         "metadata.accessControlType"),
        ("accessControlType a number", {"metadata": {"accessControlType":
                                                     1}},
         "metadata.accessControlType"),
        ("accessControlType empty", {"metadata": {"accessControlType": ""}},
         "metadata.accessControlType"),
    ]
    for what, extra, field in metas:
        body = {"uri": good}
        body.update(extra)
        r = gw.create(body)
        H.check_error(t, r, 400, 3, what, field)
    check_none_reached(t, sb, gw, "metadata")


@H.scenario
def size(h):
    t, sb, gw, good = start(h)
    big = {"uri": good, "pad": "x" * (MAX_BODY + 100)}
    r = gw.create(big)
    H.check_error(t, r, 413, 3, "body over max_body_bytes (%d)" % MAX_BODY)
    H.check_create_headers(t, r, "413")
    chunk = b"a" * 4096
    raw = (b"POST " + H.create_path().encode() + b" HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" +
           b"%x\r\n%s\r\n" % (len(chunk), chunk) * (4 * MAX_BODY // 4096)
           + b"0\r\n\r\n")
    r = H.raw_send(gw.port, raw, timeout=5)
    t.check(r.status == 413,
            "chunked body of %d bytes -> 413" % (4 * MAX_BODY), r.short())
    check_none_reached(t, sb, gw, "size")


@H.scenario
def routing(h):
    t, sb, gw, good = start(h)
    for path in ("/", "/nope", "/v1/businesses/%s" % H.BIZ,
                 "/v1/businesses/%s/assets/extra" % H.BIZ,
                 "/v2/businesses/%s/assets" % H.BIZ):
        r = H.request(gw.port, "POST", path, body={"uri": good})
        j = r.json if isinstance(r.json, dict) else {}
        t.check(r.status == 404 and isinstance(j.get("code"), int)
                and str(j.get("message", "")).startswith("XASSET."),
                "POST %s -> 404 with a JSON error body" % path, r.short())
    r = gw.get("/nope")
    t.check(r.status == 404 and isinstance((r.json or {}).get("code"), int),
            "GET /nope -> 404 with a JSON error body", r.short())
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        r = H.request(gw.port, method, H.create_path(),
                      body=None if method in ("GET", "DELETE")
                      else {"uri": good})
        allow = (r.header("allow") or "").replace(" ", "").upper().split(",")
        t.check(r.status == 405 and "POST" in allow
                and isinstance((r.json or {}).get("code"), int),
                "%s on the create path -> 405, Allow: POST, JSON body"
                % method, r.short())
    for path in ("/healthz", "/readyz"):
        r = H.request(gw.port, "POST", path, body={})
        allow = (r.header("allow") or "").replace(" ", "").upper().split(",")
        t.check(r.status == 405 and "GET" in allow
                and isinstance((r.json or {}).get("code"), int),
                "POST %s -> 405, Allow: GET, JSON body" % path, r.short())
    check_none_reached(t, sb, gw, "routing")


@H.scenario
def malformed_http(h):
    t, sb, gw, good = start(h)
    raws = [
        ("garbage request line", b"BLAH\r\n\r\n"),
        ("bad HTTP version", b"POST / HTTP/9.9\r\nHost: x\r\n\r\n"),
        ("bad content-length", b"POST " + H.create_path().encode() +
         b" HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}"),
        ("header without colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
         b"nocolon\r\n\r\n"),
        ("oversized header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
         + b"a" * 70000 + b"\r\n\r\n"),
        ("NUL bytes", b"\x00\x01\x02\x03\r\n\r\n"),
    ]
    for what, data in raws:
        r = H.raw_send(gw.port, data, timeout=5)
        t.check(r.status is None or r.status >= 400,
                "malformed HTTP (%s) -> error status or closed" % what,
                r.short())
        hz = gw.get("/healthz")
        t.eq(hz.status, 200, "gateway still serves after %s" % what)

    # a body shorter than its Content-Length: client idle timeout applies;
    # the gateway must not hang forever nor crash.
    r = H.raw_send(gw.port, b"POST " + H.create_path().encode() +
                   b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                   b"\r\nContent-Length: 100\r\n\r\n{\"uri\"", timeout=2)
    t.eq(gw.get("/healthz").status, 200,
         "gateway serves others while a body is incomplete")
    check_none_reached(t, sb, gw, "malformed http")


@H.scenario
def valid_boundaries(h):
    t, sb, gw, good = start(h)
    r = gw.create({"uri": sb.sample("boundary.png"), "id": "A" * 128})
    t.eq(r.status, 200, "id of 128 chars is valid")
    r = gw.create({"uri": sb.sample("b.png"), "id": "a-Z_0.9:x"})
    t.eq(r.status, 200, "id with [A-Za-z0-9._:-] is valid")
    r = gw.create({"uri": sb.sample("b.png"), "metadata": {}})
    t.eq(r.status, 200, "empty metadata object is valid")
    long_uri = sb.sample("long.png") + "?q="
    long_uri += "b" * (2048 - len(long_uri))
    r = gw.create({"uri": long_uri})
    t.eq(r.status, 200, "uri of exactly 2048 bytes is valid")
    t.eq(sb.calls(), 4, "the 4 valid creates reached the sandbox")
    H.check_json_log(t, gw)


if __name__ == "__main__":
    H.run()
