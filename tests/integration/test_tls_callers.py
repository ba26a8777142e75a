"""TLS for callers and mTLS caller identity (SPEC section 9, issue #14):
a real CA, server and client certificates made by `openssl` in the
test's temp dir; TLS 1.0/1.1 refused; client certificates required,
verified, and mapped to callers by cert_san or cert_sha256 (401 code 16,
403 code 7); mode = any; the plain listener in mode = mtls; workers
sharing one TLS port; keep-alive and session resumption; SIGHUP
certificate rotation under load, and a bad pair refused with the old
kept. Each scenario has its own gateway (-k NAME runs one alone)."""

import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

metric, wait_until = H.metric, H.wait_until
# The TLS 1.0/1.1 clients are made on purpose, to be refused.
warnings.filterwarnings("ignore", category=DeprecationWarning)
RELOAD_WAIT_S = 5.0
UPLOADER_SAN = "spiffe://example.org/ns/prod/sa/uploader"
STRANGER_SAN = "spiffe://example.org/ns/prod/sa/stranger"
OTHER_SAN = "spiffe://example.org/ns/prod/sa/other-team"


def openssl(h, *args):
    rc, out, err = H.run_cmd(["openssl"] + list(args), timeout=30)
    if rc != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), err))
    return out


class Pki:
    """A CA and certificates it signs, in a directory of the temp dir."""

    def __init__(self, h, name="pki"):
        self.h = h
        self.dir = h.path(h.name(name + "-"))
        os.makedirs(self.dir)
        self.ca, self.ca_key = self.path("ca.pem"), self.path("ca.key")
        openssl(h, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.ca_key,
                "-out", self.ca, "-days", "2", "-subj", "/CN=%s test CA" % name)
        self.serial = 100

    def path(self, name):
        return os.path.join(self.dir, name)

    def issue(self, name, san, serial=None):
        """A certificate NAME.pem with subjectAltName SAN and its key
        NAME.key (mode 0600); returns (cert, key)."""
        cert, key, csr = (self.path(name + ".pem"), self.path(name + ".key"),
                          self.path(name + ".csr"))
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\n" % san)
        openssl(self.h, "req", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                "-out", csr, "-subj", "/CN=%s" % name)
        self.serial += 1
        openssl(self.h, "x509", "-req", "-in", csr, "-CA", self.ca,
                "-CAkey", self.ca_key, "-set_serial",
                str(serial or self.serial), "-days", "2", "-out", cert,
                "-extfile", ext)
        os.chmod(key, 0o600)
        return cert, key


def der(cert_path):
    with open(cert_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def cert_sha256(cert_path):
    return hashlib.sha256(der(cert_path)).hexdigest()


def client_ctx(pki, cert=None, max_version=None, min_version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca)
    if cert is not None:
        ctx.load_cert_chain(cert[0], cert[1])
    if max_version is not None:
        # Let this client offer the old versions the server must refuse.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = min_version or ssl.TLSVersion.TLSv1
        ctx.maximum_version = max_version
    return ctx


def tls_request(port, ctx, method="GET", path="/healthz", body=None,
                headers=None, timeout=10.0):
    """One request on a fresh TLS connection: (status, json or None,
    error text or None)."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                       context=ctx)
    hdrs = dict(headers or {})
    if body is not None:
        body = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        try:
            j = json.loads(data)
        except ValueError:
            j = None
        return r.status, j, None
    except (OSError, http.client.HTTPException) as e:
        return None, None, "%s: %s" % (type(e).__name__, e)
    finally:
        conn.close()


def create_body(sb, name):
    return {"uri": sb.sample(name)}


class TlsGateway(H.Gateway):
    """A gateway with tls_listen on a port of its own; PLAIN False: no
    plain listener (listen = empty)."""

    def __init__(self, h, sb, pki, server_cert, overrides=None, plain=True,
                 client_cert=None, start=True):
        self.tls_port = H.free_port()
        self.pki = pki
        self.client = client_ctx(pki, client_cert)
        self.plain = plain
        ov = {"server": {"tls_listen": "127.0.0.1:%d" % self.tls_port,
                         "tls_cert_file": server_cert[0],
                         "tls_key_file": server_cert[1]}}
        if not plain:
            ov["server"]["listen"] = ""
        for section, keys in (overrides or {}).items():
            ov.setdefault(section, {}).update(keys)
        H.Gateway.__init__(self, h, sb, overrides=ov, start=False)
        if start:
            self.start()

    def start(self):
        self.proc = H.Proc(self.h, self.name,
                           [self.h.gateway_bin, "-c", self.conf_path],
                           env=self.env)
        if self.plain:
            H.wait_http(self.port, self.proc, path="/healthz")
            return
        deadline = time.monotonic() + H.START_TIMEOUT_S
        while time.monotonic() < deadline and self.proc.alive():
            if tls_request(self.tls_port, self.client, timeout=1)[0]:
                return
            time.sleep(0.05)
        raise RuntimeError("%s did not answer on TLS port %d\n%s" % (
            self.name, self.tls_port, self.proc.tail()))

    def get(self, path, headers=None, timeout=10.0):
        if self.plain:
            return H.Gateway.get(self, path, headers, timeout)
        conn = http.client.HTTPSConnection("127.0.0.1", self.tls_port,
                                           timeout=timeout,
                                           context=self.client)
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            return H.Resp(r.status, dict(r.getheaders()), r.read())
        finally:
            conn.close()


def mtls_setup(h, sb, mode="mtls", client_auth="require", workers=None,
               plain=True):
    """A PKI, a server certificate, client certificates and a gateway
    in MODE; returns (gw, pki, certs {name: (cert, key)}, clients)."""
    pki = h.shared("pki", Pki)
    certs = h.shared("certs", lambda h: {
        "server": pki.issue("server", "IP:127.0.0.1,DNS:localhost"),
        "uploader": pki.issue("uploader", "URI:" + UPLOADER_SAN),
        "byhash": pki.issue("byhash", "DNS:byhash.example.org"),
        "stranger": pki.issue("stranger", "URI:" + STRANGER_SAN),
        "other": pki.issue("other", "URI:" + OTHER_SAN),
    })
    clients = h.write(h.name("clients-") + ".ini", "\n".join([
        "[uploader]", "cert_san = " + UPLOADER_SAN,
        "businesses = " + H.BIZ, "",
        "[byhash]", "cert_sha256 = " + cert_sha256(certs["byhash"][0]),
        "businesses = *", "",
        "[other-team]", "cert_san = " + OTHER_SAN,
        "businesses = " + H.BIZ2, "",
        "[tokened]", "token_sha256 = " + hashlib.sha256(
            b"agw-tls-test-token").hexdigest(),
        "businesses = " + H.BIZ, ""]))
    server = {"tls_client_auth": client_auth,
              "tls_client_ca_file": pki.ca}
    if workers is not None:
        server["workers"] = str(workers)
    gw = TlsGateway(h, sb, pki, certs["server"], plain=plain,
                    client_cert=certs["uploader"], overrides={
        "server": server,
        "auth": {"mode": mode, "clients_file": clients},
        "log": {"level": "debug", "format": "json"}})
    return gw, pki, certs, clients


def access_callers(gw):
    return [j.get("caller") for j in H.log_records(gw)
            if j.get("type") == "access" and "/assets" in (j.get("path")
                                                           or "")]


# ------------------------------------------------------------ scenarios

@H.scenario
def handshake_refusals(h):
    """TLS 1.0/1.1, no client certificate under require, and a client
    certificate from another CA all fail the handshake, and each is
    counted in /metrics."""
    t, sb = h.t, h.sandbox()
    gw, pki, certs, _ = mtls_setup(h, sb)
    good = client_ctx(pki, certs["uploader"])
    st, _, err = tls_request(gw.tls_port, good)
    t.eq(st, 200, "TLS with a client certificate: /healthz 200 (%s)" % err)
    failures = metric(gw, "tls_handshake_failures_total")

    for ver in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        try:
            ctx = client_ctx(pki, certs["uploader"], max_version=ver)
        except (ValueError, ssl.SSLError) as e:
            t.check(False, "a client offering %s can be made" % ver, str(e))
            continue
        seen = metric(gw, "tls_handshake_failures_total")
        st, _, err = tls_request(gw.tls_port, ctx)
        t.check(st is None, "%s refused (handshake fails)" % ver.name,
                "status %r" % st)
        # The client did offer it: the server refused (and counted) it.
        t.check(wait_until(lambda: metric(gw, "tls_handshake_failures_total")
                           == seen + 1, 5),
                "%s: the server refused the handshake (counted)" % ver.name,
                err)
    st, _, err = tls_request(gw.tls_port, client_ctx(pki))
    t.check(st is None, "no client certificate under require: refused",
            "status %r" % st)
    other = Pki(h, "rogue")
    rogue = other.issue("rogue", "URI:" + UPLOADER_SAN)
    ctx = client_ctx(pki, rogue)
    st, _, err = tls_request(gw.tls_port, ctx)
    t.check(st is None, "client certificate of another CA (same SAN): "
            "refused", "status %r" % st)
    after = wait_until(lambda: metric(gw, "tls_handshake_failures_total")
                       >= failures + 4, 5)
    t.check(after, "tls_handshake_failures_total counted the 4 refusals",
            "before %r, now %r" % (failures,
                                   metric(gw, "tls_handshake_failures_total")))
    failures = metric(gw, "tls_handshake_failures_total")
    for desc, data in (("plain HTTP", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                       ("garbage", b"\x16\x09\x09" + b"x" * 200)):
        s = socket.create_connection(("127.0.0.1", gw.tls_port), 5)
        try:
            s.sendall(data)
            got = s.recv(100)
        except OSError:
            got = b""
        s.close()
        t.check(b"HTTP/" not in got, "%s on the TLS port: no HTTP answer"
                % desc, repr(got))
    s = socket.create_connection(("127.0.0.1", gw.tls_port), 5)
    s.close()
    t.check(wait_until(lambda: metric(gw, "tls_handshake_failures_total")
                       == failures + 2, 5),
            "plain HTTP and garbage on the TLS port count as failed "
            "handshakes; a connection closed without a word does not",
            "before %r, now %r" % (failures,
                                   metric(gw, "tls_handshake_failures_total")))
    t.check(any("TLS handshake with 127.0.0.1:" in (j.get("msg") or "")
                for j in H.log_records(gw)),
            "a failed handshake is logged at debug with the peer address",
            gw.log_text()[-1500:])
    H.check_json_log(t, gw)


@H.scenario
def mtls_caller_mapping(h):
    """cert_san and cert_sha256 name callers; an unknown certificate
    gets 401/16, another business 403/7; the plain listener 401/16; the
    caller's name is in the access log."""
    t, sb = h.t, h.sandbox()
    gw, pki, certs, _ = mtls_setup(h, sb)
    before = sb.calls()

    def create(cert, body_name, business=H.BIZ):
        return tls_request(gw.tls_port, client_ctx(pki, certs[cert]), "POST",
                           H.create_path(business),
                           create_body(sb, body_name))

    st, j, err = create("uploader", "tls-a.png")
    t.eq(st, 200, "cert_san caller: create over TLS 200 (%s)" % err)
    st, j, err = create("byhash", "tls-b.png", H.BIZ2)
    t.eq(st, 200, "cert_sha256 caller: create 200 (%s)" % err)
    st, j, err = create("stranger", "tls-c.png")
    t.check(st == 401 and (j or {}).get("code") == 16,
            "verified certificate naming no caller: 401 code 16",
            "%r %r %r" % (st, j, err))
    st, j, err = create("other", "tls-d.png", H.BIZ)
    t.check(st == 403 and (j or {}).get("code") == 7,
            "known caller, another business: 403 code 7",
            "%r %r %r" % (st, j, err))
    st, j, err = create("uploader", "tls-e.png", H.BIZ2)
    t.check(st == 403 and (j or {}).get("code") == 7,
            "cert_san caller for a business it may not: 403 code 7",
            "%r %r %r" % (st, j, err))
    r = H.request(gw.port, "POST", H.create_path(H.BIZ),
                  body=create_body(sb, "tls-f.png"),
                  headers={"Authorization": "Bearer agw-tls-test-token"})
    H.check_error(t, r, 401, 16, "plain listener in mode = mtls (even "
                  "with a valid token)")
    t.eq(sb.calls() - before, 2, "only the two identified calls went "
         "upstream")
    callers = access_callers(gw)
    t.check("uploader" in callers and "byhash" in callers
            and "other-team" in callers,
            "access log names the certificate's callers", repr(callers))
    calls = {c: H.metric(gw, "upstream_calls_total", caller=c,
                         **{"class": "interactive"})
             for c in ("uploader", "byhash", "other-team")}
    t.eq(calls, {"uploader": 1.0, "byhash": 1.0, "other-team": 0.0},
         "/metrics upstream_calls_total{caller,class} names the certificates' "
         "callers (one upstream call each; none for a refused one)")
    H.check_json_log(t, gw)


@H.scenario
def mode_any(h):
    """mode = any, tls_client_auth = optional: a bearer token over TLS
    without a certificate, a certificate without a token; neither: 401."""
    t, sb = h.t, h.sandbox()
    gw, pki, certs, _ = mtls_setup(h, sb, mode="any",
                                   client_auth="optional")
    tok = {"Authorization": "Bearer agw-tls-test-token"}
    st, j, err = tls_request(gw.tls_port, client_ctx(pki), "POST",
                             H.create_path(H.BIZ),
                             create_body(sb, "any-a.png"), tok)
    t.eq(st, 200, "mode = any: token over TLS, no certificate: 200 (%s)"
         % err)
    st, j, err = tls_request(gw.tls_port, client_ctx(pki, certs["uploader"]),
                             "POST", H.create_path(H.BIZ),
                             create_body(sb, "any-b.png"))
    t.eq(st, 200, "mode = any: certificate, no token: 200 (%s)" % err)
    st, j, err = tls_request(gw.tls_port, client_ctx(pki), "POST",
                             H.create_path(H.BIZ),
                             create_body(sb, "any-c.png"))
    t.check(st == 401 and (j or {}).get("code") == 16,
            "mode = any: neither: 401 code 16", "%r %r %r" % (st, j, err))
    r = H.request(gw.port, "POST", H.create_path(H.BIZ),
                  body=create_body(sb, "any-d.png"), headers=tok)
    t.eq(r.status, 200, "mode = any: token on the plain listener: 200")
    callers = access_callers(gw)
    t.check("tokened" in callers and "uploader" in callers,
            "access log names the token's and the certificate's callers",
            repr(callers))


@H.scenario
def config_checks(h):
    """-t refuses mode = mtls without tls_client_auth = require, a key
    that is not the certificate's (FILE:LINE), a TLS listener without a
    certificate, and no listener at all; accepts a TLS-only config."""
    t, sb = h.t, h.sandbox()
    gw, pki, certs, clients = mtls_setup(h, sb)
    gw.stop()
    base = json.loads(json.dumps(gw.cfg))

    def check(desc, overrides, want_ok, want_text=None):
        cfg = H.merge_config(json.loads(json.dumps(base)), overrides)
        path = h.write(h.name("t-") + ".conf", H.render_config(cfg))
        rc, out, err = H.run_cmd([h.gateway_bin, "-c", path, "-t"])
        ok = rc == 0
        good = ok == want_ok and (want_text is None or want_text in err)
        t.check(good, "-t: %s -> %s" % (desc, "valid" if want_ok else
                                          "refused"), out + err)
        return path, err

    check("the mtls config", {}, True)
    check("mode = mtls with tls_client_auth = optional",
          {"server": {"tls_client_auth": "optional"}}, False,
          "tls_client_auth = require")
    path, err = check("a key that is not the certificate's",
                      {"server": {"tls_key_file": certs["uploader"][1]}},
                      False, "is not the key of")
    with open(path) as f:
        line = [i + 1 for i, ln in enumerate(f.read().splitlines())
                if ln.startswith("tls_key_file")][0]
    t.check(("%s:%d:" % (path, line)) in err, "-t names FILE:LINE of "
            "tls_key_file", err)
    check("an unparsable certificate file",
          {"server": {"tls_cert_file": clients}}, False, "tls_cert_file")
    check("tls_listen without a certificate",
          {"server": {"tls_cert_file": None}}, False, "tls_cert_file")
    check("no listener at all",
          {"server": {"listen": "", "tls_listen": ""}}, False, "listen")
    check("TLS only", {"server": {"listen": ""}}, True)
    check("require without tls_client_ca_file",
          {"server": {"tls_client_ca_file": None}}, False,
          "tls_client_ca_file")
    check("tls_min_version = 1.1", {"server": {"tls_min_version": "1.1"}},
          False, "tls_min_version")


@H.scenario
def workers_keepalive_resumption(h):
    """4 workers accept on one TLS port (no plain listener); keep-alive
    carries several requests on one TLS connection; a second connection
    resumes the first one's session."""
    t, sb = h.t, h.sandbox()
    gw, pki, certs, _ = mtls_setup(h, sb, workers=4, plain=False)
    ctx = client_ctx(pki, certs["uploader"])
    res = H.concurrent([
        (lambda i=i: tls_request(gw.tls_port, ctx, "POST",
                                 H.create_path(H.BIZ),
                                 create_body(sb, "w%d.png" % (i % 5))))
        for i in range(40)])
    codes = [r[0] if isinstance(r, tuple) else r for r in res]
    t.check(len(codes) == 40 and all(c == 200 for c in codes), "4 workers, one TLS port: 40 "
            "concurrent creates on fresh connections all 200",
            repr(codes))
    conn = http.client.HTTPSConnection("127.0.0.1", gw.tls_port, timeout=10,
                                       context=ctx)
    socks = set()
    statuses = []
    for i in range(5):
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        r.read()
        statuses.append(r.status)
        socks.add(id(conn.sock))
    t.check(statuses == [200] * 5 and len(socks) == 1,
            "keep-alive: 5 requests on one TLS connection",
            "%r, %d sockets" % (statuses, len(socks)))
    t.eq(conn.sock.selected_alpn_protocol(), None,
         "no ALPN offered: none chosen")
    session = conn.sock.session
    conn.close()
    reused = []
    for ver in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        c = client_ctx(pki, certs["uploader"])
        c.maximum_version = ver
        c.set_alpn_protocols(["h2", "http/1.1"])
        first = http.client.HTTPSConnection("127.0.0.1", gw.tls_port,
                                            timeout=10, context=c)
        first.request("GET", "/healthz")
        first.getresponse().read()
        session = first.sock.session
        alpn = first.sock.selected_alpn_protocol()
        first.close()
        raw = socket.create_connection(("127.0.0.1", gw.tls_port), 10)
        s = c.wrap_socket(raw, server_hostname="127.0.0.1", session=session)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        data = s.recv(4096)
        reused.append((ver.name, s.session_reused, alpn,
                       data.split(b"\r\n", 1)[0]))
        s.close()
    t.check(all(r[1] for r in reused), "session resumption used (TLS 1.3 "
            "and 1.2): session_reused", repr(reused))
    t.check(all(r[2] == "http/1.1" for r in reused),
            "ALPN h2,http/1.1 offered: http/1.1 chosen", repr(reused))
    t.check(all(b" 200 " in r[3] for r in reused),
            "resumed connections answer 200", repr(reused))


def tls_raw(port, ctx, data, timeout=5.0):
    """Sends DATA on a new TLS connection and reads until close or
    TIMEOUT: (bytes read, whether the server closed, seconds taken)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    t0 = time.monotonic()
    buf, closed = b"", False
    try:
        s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            buf += chunk
    except (OSError, ssl.SSLError):
        pass
    finally:
        s.close()
    return buf, closed, time.monotonic() - t0


@H.scenario
def guard_over_tls(h):
    """The guard sits over TLS: ambiguous framing refused 400 with the
    connection closed; an unknown certificate's create refused 401
    before its body is read; max_connections counts TLS connections."""
    t, sb = h.t, h.sandbox()
    gw, pki, certs, _ = mtls_setup(h, sb, plain=False)
    good = client_ctx(pki, certs["uploader"])
    path = H.create_path(H.BIZ).encode()
    buf, closed, _ = tls_raw(gw.tls_port, good,
                             b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 5\r\nTransfer-Encoding: "
                             b"chunked\r\n\r\n0\r\n\r\n")
    t.check(buf.startswith(b"HTTP/1.1 400") and closed,
            "TLS: Content-Length and Transfer-Encoding both: 400, closed",
            repr(buf[:300]))
    before = sb.calls()
    buf, closed, took = tls_raw(gw.tls_port,
                                client_ctx(pki, certs["stranger"]),
                                b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Type: application/json\r\n"
                                b"Content-Length: 60000\r\n\r\n")
    t.check(buf.startswith(b"HTTP/1.1 401") and b'"code":16' in buf
            and took < 3, "TLS, certificate naming no caller: 401 code 16 "
            "before the announced body is sent (%.2f s)" % took,
            repr(buf[:300]))
    t.eq(sb.calls() - before, 0, "nothing went upstream")

    gw.stop()
    gw2 = gw
    # max_connections = 2: two idle TLS connections fill it.
    cfg = json.loads(json.dumps(gw2.cfg))
    H.merge_config(cfg, {"server": {"max_connections": "2"}})
    with open(gw2.conf_path, "w") as f:
        f.write(H.render_config(cfg))
    gw2.start()
    held = []
    for _ in range(2):
        c = http.client.HTTPSConnection("127.0.0.1", gw2.tls_port,
                                        timeout=10, context=good)
        c.request("GET", "/healthz")
        c.getresponse().read()
        held.append(c)
    buf, closed, _ = tls_raw(gw2.tls_port, good,
                             b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    t.check(buf.startswith(b"HTTP/1.1 503") and b'"code":14' in buf,
            "max_connections = 2 with two TLS connections held: the third "
            "gets 503 code 14", repr(buf[:300]))
    for c in held:
        c.close()
    ok = wait_until(lambda: tls_request(gw2.tls_port, good)[0] == 200, 5)
    t.check(ok, "once they close, a new TLS connection is served")


@H.scenario
def client_ca_rotation(h):
    """SIGHUP re-reads tls_client_ca_file: after the CA file is swapped
    for another CA's, a client certificate of the old CA fails the
    handshake and one of the new CA is served."""
    t, sb = h.t, h.sandbox()
    gw, pki, certs, _ = mtls_setup(h, sb)
    ca_path = h.write(h.name("client-ca-") + ".pem", open(pki.ca).read())
    gw.cfg["server"]["tls_client_ca_file"] = ca_path
    with open(gw.conf_path, "w") as f:
        f.write(H.render_config(gw.cfg))
    sighup(gw, "ok")
    st, _, err = tls_request(gw.tls_port, client_ctx(pki, certs["uploader"]))
    t.eq(st, 200, "before: the first CA's client is served (%s)" % err)
    pki2 = Pki(h, "second")
    newer = pki2.issue("uploader2", "URI:" + UPLOADER_SAN)
    with open(ca_path, "w") as f:
        f.write(open(pki2.ca).read())
    sighup(gw, "ok")
    st, _, err = tls_request(gw.tls_port, client_ctx(pki, certs["uploader"]))
    t.check(st is None, "after SIGHUP the old CA's client certificate is "
            "refused", "status %r" % st)
    st, j, err = tls_request(gw.tls_port, client_ctx(pki, newer), "POST",
                             H.create_path(H.BIZ),
                             create_body(sb, "ca2.png"))
    t.eq(st, 200, "and the new CA's client (same SAN) creates (%s)" % err)


@H.scenario
def reload_cannot_weaken(h):
    """A reload to tls_client_auth = none and mode = token keeps require
    and mtls until a restart (warned): a client without a certificate
    still fails the handshake, a token still does not identify."""
    t, sb = h.t, h.sandbox()
    gw, pki, certs, _ = mtls_setup(h, sb)
    gw.cfg["server"]["tls_client_auth"] = "none"
    gw.cfg["auth"]["mode"] = "token"
    with open(gw.conf_path, "w") as f:
        f.write(H.render_config(gw.cfg))
    sighup(gw, "ok")
    msgs = [j.get("msg") or "" for j in H.log_records(gw)]
    for key in ("[server] tls_client_auth", "[auth] mode"):
        t.check(any(key in m and "needs a restart" in m for m in msgs),
                "reload warns that %s needs a restart" % key,
                "\n".join(msgs[-8:]))
    st, _, err = tls_request(gw.tls_port, client_ctx(pki))
    t.check(st is None, "after the reload a client without a certificate "
            "still fails the handshake", "status %r" % st)
    st, j, err = tls_request(
        gw.tls_port, client_ctx(pki, certs["stranger"]), "POST",
        H.create_path(H.BIZ), create_body(sb, "weak.png"),
        {"Authorization": "Bearer agw-tls-test-token"})
    t.check(st == 401 and (j or {}).get("code") == 16,
            "and a valid token with an unknown certificate still gets "
            "401/16 (mode = mtls kept)", "%r %r %r" % (st, j, err))


def sighup(gw, expect):
    key = "ok" if expect == "ok" else "failed"
    before = metric(gw, "config_reloads_total", result=key)
    gw.proc.signal(signal.SIGHUP)
    got = wait_until(lambda: metric(gw, "config_reloads_total", result=key)
                     > before, RELOAD_WAIT_S)
    if not got:
        raise RuntimeError("no reload counted as %s\n%s"
                           % (expect, gw.proc.tail()))


def server_der(gw, ctx):
    raw = socket.create_connection(("127.0.0.1", gw.tls_port), 10)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        return s.getpeercert(binary_form=True)
    finally:
        s.close()


@H.scenario
def rotation_under_load(h):
    """SIGHUP with a new certificate and key: a client loop (keep-alive
    and fresh connections) keeps getting 200s throughout; a connection
    opened before keeps working; a new handshake sees the new
    certificate (its serial). Then a mismatched pair and an unparsable
    file are refused with the old kept."""
    t, sb = h.t, h.sandbox()
    gw, pki, certs, _ = mtls_setup(h, sb)
    ctx = client_ctx(pki, certs["uploader"])
    cur_cert, cur_key = gw.cfg["server"]["tls_cert_file"], \
        gw.cfg["server"]["tls_key_file"]
    t.eq(server_der(gw, ctx), der(certs["server"][0]),
         "before: the first server certificate")
    old_conn = http.client.HTTPSConnection("127.0.0.1", gw.tls_port,
                                           timeout=10, context=ctx)
    old_conn.request("GET", "/healthz")
    old_conn.getresponse().read()

    stop = threading.Event()
    results = []

    def loop():
        conn = None
        n = 0
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            n += 1
            if n % 3 == 0:
                results.append(tls_request(gw.tls_port, ctx)[0])
                continue
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection(
                        "127.0.0.1", gw.tls_port, timeout=10, context=ctx)
                conn.request("GET", "/healthz")
                r = conn.getresponse()
                r.read()
                results.append(r.status)
            except (OSError, http.client.HTTPException) as e:
                results.append("error %s" % e)
                conn = None
        if conn is not None:
            conn.close()

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    time.sleep(0.3)
    new_cert, new_key = pki.issue("server2", "IP:127.0.0.1", serial=777)
    os.replace(new_cert, cur_cert)
    os.replace(new_key, cur_key)
    sighup(gw, "ok")
    time.sleep(0.3)
    got = server_der(gw, ctx)
    t.eq(got, der(cur_cert), "after SIGHUP a new handshake sees the new "
         "certificate")
    seen = h.path(h.name("seen-") + ".der")
    with open(seen, "wb") as f:
        f.write(got or b"")
    serial = openssl(h, "x509", "-inform", "DER", "-in", seen, "-noout",
                     "-serial")
    t.check(serial.strip() == "serial=0309", "the certificate of the new "
            "handshake has the new serial (777 = 0x309)", serial)
    time.sleep(0.3)
    stop.set()
    th.join(15)
    bad = [r for r in results if r != 200]
    t.check(len(results) >= 10 and not bad, "client loop: %d requests "
            "during the rotation, all 200" % len(results), repr(bad[:10]))
    old_conn.request("GET", "/healthz")
    r = old_conn.getresponse()
    r.read()
    t.eq(r.status, 200, "a connection opened before the rotation still "
         "works")
    old_conn.close()

    # A key of another certificate: refused, the current pair stays.
    with open(certs["uploader"][1]) as f:
        other_key = f.read()
    with open(cur_key) as f:
        good_key = f.read()
    h.write(os.path.relpath(cur_key, h.tmp), other_key)
    sighup(gw, "failed")
    t.check(any("reload refused" in (j.get("msg") or "") and
                "is not the key of" in (j.get("msg") or "")
                for j in H.log_records(gw)),
            "the mismatched pair is refused, saying why",
            gw.log_text()[-1500:])
    t.eq(server_der(gw, ctx), der(cur_cert), "after the refused reload: "
         "the running certificate still served")
    st, _, err = tls_request(gw.tls_port, ctx)
    t.eq(st, 200, "and new connections are served (%s)" % err)
    rc, out, err = H.run_cmd([h.gateway_bin, "-c", gw.conf_path, "-t"])
    t.check(rc != 0 and "tls_key_file" in err and gw.conf_path + ":" in err,
            "-t refuses the mismatched pair with FILE:LINE", out + err)
    h.write(os.path.relpath(cur_key, h.tmp), good_key)
    with open(cur_cert) as f:
        good_cert = f.read()
    with open(cur_cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64\n"
                "-----END CERTIFICATE-----\n")
    sighup(gw, "failed")
    t.eq(server_der(gw, ctx), der(certs["server"][0]) if False else
         ssl.PEM_cert_to_DER_cert(good_cert),
         "an unparsable certificate: refused, the running one still served")
    H.check_json_log(t, gw)


if __name__ == "__main__":
    H.run()
