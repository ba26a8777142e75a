"""HTTPS to the upstream (SPEC section 5): chain and host-name
verification against ca_file, with a throw-away CA made by the openssl
CLI; a failed verification never sends the request."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def openssl(h, *args):
    rc, out, err = H.run_cmd(["openssl"] + list(args), timeout=30)
    if rc != 0:
        raise RuntimeError("openssl %s failed: %s %s" % (" ".join(args),
                                                         out, err))


def make_ca(h, name):
    key, pem = h.path(name + ".key"), h.path(name + ".pem")
    openssl(h, "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
            "-out", pem, "-days", "2", "-subj", "/CN=agw test %s" % name,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, pem


def make_cert(h, name, ca, san):
    ca_key, ca_pem = ca
    key, csr, pem = (h.path(name + ".key"), h.path(name + ".csr"),
                     h.path(name + ".pem"))
    ext = h.write(name + ".ext", "subjectAltName=%s\n"
                  "basicConstraints=CA:FALSE\n"
                  "keyUsage=critical,digitalSignature,keyEncipherment\n"
                  "extendedKeyUsage=serverAuth\n" % san)
    openssl(h, "req", "-new", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
            "-out", csr, "-subj", "/CN=%s" % name)
    openssl(h, "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
            "-out", pem, "-days", "2", "-extfile", ext)
    return pem, key


class Pki:
    """The file's CAs, server certificates, source server and TLS
    sandbox (made once: openssl is slow)."""

    def __init__(self, h):
        t = h.t
        self.ca1 = make_ca(h, "ca1")
        self.ca2 = make_ca(h, "ca2")
        self.good = make_cert(h, "server-good", self.ca1,
                              "IP:127.0.0.1,DNS:localhost")
        self.other = make_cert(h, "server-other", self.ca1,
                               "DNS:other.example")
        t.diag("test CAs and certificates made with the openssl CLI")
        self.src = h.source_server()
        self.sb = H.Sandbox(h, tls_cert=self.good[0], tls_key=self.good[1])
        t.check(self.sb.base_url.startswith("https://"), "TLS sandbox runs",
                self.sb.base_url)


def start(h):
    """The shared certificates, the TLS sandbox reset, the source."""
    pki = h.shared("pki", Pki)
    pki.sb.reset()
    return h.t, pki, pki.sb, pki.src, pki.ca1, pki.ca2


@H.scenario
def good_ca(h):
    t, pki, sb, src, ca1, ca2 = start(h)
    gw = H.Gateway(h, sb, overrides={"upstream": {"ca_file": ca1[1]}})
    u = src.sample("tls-ok.png")
    r = gw.create({"uri": u})
    t.check(r.status == 200 and r.header("x-cache") == "MISS",
            "https://127.0.0.1 with ca_file = the right CA -> 200 MISS",
            r.short())
    t.eq(((r.json or {}).get("asset") or {}).get("ownerId"), H.BIZ,
         "answer is the sandbox's asset")
    t.eq(sb.calls(), 1, "sandbox saw the call over TLS")
    r2 = gw.create({"uri": u})
    t.check(r2.status == 200 and r2.header("x-cache") == "HIT",
            "same create -> HIT", r2.short())
    for i in range(3):
        r3 = gw.create({"uri": src.sample("tls-more-%d.png" % i)})
        t.eq(r3.status, 200, "another create over TLS (%d) -> 200" % i)
    t.eq(sb.calls(), 4, "sandbox saw 4 calls over TLS")
    H.check_json_log(t, gw)


@H.scenario
def wrong_ca(h):
    t, pki, sb, src, ca1, ca2 = start(h)
    gw_bad = H.Gateway(h, sb, overrides={"upstream": {"ca_file": ca2[1]}})
    t0 = time.monotonic()
    r = gw_bad.create({"uri": src.sample("tls-wrong-ca.png")})
    el = time.monotonic() - t0
    H.check_error(t, r, 502, 14, "ca_file = another CA")
    t.eq(sb.calls(), 0, "wrong CA: the request never reached the sandbox")
    t.check(el < 5.0, "wrong CA answered promptly", "took %.2f s" % el)
    t.diag("wrong-CA log lines mentioning verify/certificate: %d" % len(
        [ln for ln in gw_bad.log_text().splitlines()
         if "verif" in ln.lower() or "certificate" in ln.lower()]))
    H.check_json_log(t, gw_bad)


@H.scenario
def system_store(h):
    """no ca_file: the system store does not know the test CA"""
    t, pki, sb, src, ca1, ca2 = start(h)
    gw_sys = H.Gateway(h, sb)
    r = gw_sys.create({"uri": src.sample("tls-system.png")})
    H.check_error(t, r, 502, 14, "no ca_file (system store) with a test CA")
    t.eq(sb.calls(), 0, "system store: the request never reached the "
         "sandbox")
    H.check_json_log(t, gw_sys)


@H.scenario
def by_host_name(h):
    t, pki, sb, src, ca1, ca2 = start(h)
    gw_name = H.Gateway(h, base_url="https://localhost:%d" % sb.port,
                        overrides={"upstream": {"ca_file": ca1[1]}})
    r = gw_name.create({"uri": src.sample("tls-localhost.png")})
    t.check(r.status == 200, "https://localhost with the right CA -> 200",
            r.short())
    t.eq(sb.calls(), 1, "sandbox saw the call made by name")
    H.check_json_log(t, gw_name)


@H.scenario
def certificate_for_another_name(h):
    t, pki, sb, src, ca1, ca2 = start(h)
    other = pki.other
    sbo = H.Sandbox(h, tls_cert=other[0], tls_key=other[1])
    gw_o = H.Gateway(h, sbo, overrides={"upstream": {"ca_file": ca1[1]}})
    r = gw_o.create({"uri": src.sample("tls-other.png")})
    H.check_error(t, r, 502, 14, "certificate only for other.example, "
                  "connecting to 127.0.0.1")
    gw_o2 = H.Gateway(h, base_url="https://localhost:%d" % sbo.port,
                      overrides={"upstream": {"ca_file": ca1[1]}})
    r = gw_o2.create({"uri": src.sample("tls-other2.png")})
    H.check_error(t, r, 502, 14, "certificate only for other.example, "
                  "connecting to localhost")
    t.eq(sbo.calls(), 0, "name mismatch: the request never reached the "
         "sandbox")
    H.check_json_log(t, gw_o)
    H.check_json_log(t, gw_o2)


@H.scenario
def https_to_plain_http(h):
    t, pki, sb, src, ca1, ca2 = start(h)
    plain = h.sandbox()
    gw_p = H.Gateway(h, base_url="https://127.0.0.1:%d" % plain.port,
                     overrides={"upstream": {"ca_file": ca1[1]}})
    t0 = time.monotonic()
    r = gw_p.create({"uri": src.sample("tls-plain.png")})
    el = time.monotonic() - t0
    H.check_error(t, r, 502, 14, "https base_url to a plain-http server")
    t.check(el < 5.0, "answered promptly", "took %.2f s" % el)
    H.check_json_log(t, gw_p)


@H.scenario
def plain_http_base_url(h):
    """plain http base_url is allowed with a warning"""
    t, pki, sb, src, ca1, ca2 = start(h)
    plain = h.sandbox()
    gw_h = H.Gateway(h, plain)
    r = gw_h.create({"uri": src.sample("plain-ok.png")})
    t.eq(r.status, 200, "plain http base_url works")
    warn = [ln for ln in gw_h.log_text().splitlines()
            if "warn" in ln.lower() and "http" in ln.lower()]
    t.check(warn, "plain http base_url logs a warning",
            gw_h.log_text()[-1500:])
    H.check_json_log(t, gw_h)


if __name__ == "__main__":
    H.run()
