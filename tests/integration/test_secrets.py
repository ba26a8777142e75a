"""The API key is injected, never shown (SPEC section 8): exercise every
path at log level debug and look for the key in every answer and every
log line; a caller's own credentials never reach the upstream. Each
scenario has its own gateways over the reset shared sandbox and scans
what it collected (-k NAME runs one alone)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

CALLER_SECRET = "caller-secret"


class Run:
    """A scenario's sandbox, gateways and answers; finish() scans them."""

    def __init__(self, h):
        self.h = h
        self.t = h.t
        self.key = h.api_key
        if not hasattr(h, "wrong_key"):
            h.wrong_key = "agw-wrong-key-" + os.urandom(12).hex()
            h.t.redact.append(h.wrong_key)
        self.wrong = h.wrong_key
        self.needles = [self.key, self.key[len("agw-test-key-"):],
                        self.wrong, self.wrong[len("agw-wrong-key-"):]]
        self.sb = h.sandbox()
        self.answers = []
        self.gws = []

    def gateway(self, **kw):
        kw.setdefault("overrides", {
            "upstream": {"request_timeout_ms": 800},
            "server": {"max_body_bytes": 4096}})
        if "base_url" not in kw:
            kw["sandbox"] = self.sb
        g = H.Gateway(self.h, **kw)
        self.gws.append(g)
        return g

    def call(self, g, body, business=H.BIZ, headers=None):
        r = g.create(body, business=business, headers=headers)
        self.answers.append(r)
        return r

    def finish(self, extra_texts=None):
        """No key in any answer, nor in any gateway's output (also
        EXTRA_TEXTS {name: text}), nor the caller's secret; each gateway
        alive, then exits 0 on SIGTERM saying nothing secret."""
        t, needles = self.t, self.needles
        t.diag("%d answers collected" % len(self.answers))
        leaks = [i for i, x in enumerate(self.answers)
                 if any(n in x.raw_text() for n in needles)]
        t.check(not leaks, "the API key is in no answer (status, headers, "
                "body)", "leaking answers: %r" % leaks)
        texts = {g.name: g.output_text() for g in self.gws}
        texts.update(extra_texts or {})
        for name, text in texts.items():
            found = [n for n in needles if n in text]
            t.check(not found, "API key absent from %s (%d lines, level "
                    "debug)" % (name, len(text.splitlines())),
                    "found %d needle(s)" % len(found))
            t.check(CALLER_SECRET not in text,
                    "caller-secret absent from %s" % name,
                    "found caller-secret")
        for g in self.gws:
            t.check(g.proc.alive(), "%s still running" % g.name,
                    g.proc.tail())
        for g in self.gws:
            rc, killed = g.stop()
            t.check(rc == 0 and not killed, "%s exits 0 on SIGTERM"
                    % g.name, "rc %r killed %r" % (rc, killed))
            text = g.output_text()
            t.check(not any(n in text for n in needles) and
                    CALLER_SECRET not in text,
                    "%s: no secret in its output after shutdown" % g.name,
                    "found a secret")
            H.check_json_log(t, g)


@H.scenario
def success_hit_no_cache(h):
    run = Run(h)
    t, sb, gw = h.t, run.sb, run.gateway()
    u = sb.sample("secret-1.png")
    r = run.call(gw, {"uri": u})
    t.eq(r.status, 200, "create with the injected key -> 200 (the sandbox "
         "accepts only the right key)")
    r = run.call(gw, {"uri": u})
    t.eq(r.header("x-cache"), "HIT", "HIT")
    r = run.call(gw, {"uri": u}, headers={"Cache-Control": "no-cache"})
    t.eq(r.status, 200, "no-cache -> 200")
    r = run.call(gw, {"uri": sb.sample("secret-2.png"), "id": "sec-id",
                  "metadata": {"accessControlType": H.PRIVATE}})
    t.eq(r.status, 200, "create with id and metadata -> 200")
    rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c", gw.conf_path])
    t.eq(rc, 0, "-t on the config -> 0")
    run.finish({"-t output": out + err})


@H.scenario
def validation_errors(h):
    """validation errors of every kind, and routing"""
    run = Run(h)
    t, sb, gw = h.t, run.sb, run.gateway()
    u = sb.sample("secret-1.png")
    for body, biz in (({"uri": u}, "nope"), (b"not json", H.BIZ),
                      ({}, H.BIZ), ({"uri": "ftp://x/y"}, H.BIZ),
                      ({"uri": u, "id": "bad id"}, H.BIZ),
                      ({"uri": u, "metadata": {"accessControlType": "X"}},
                       H.BIZ),
                      ({"uri": u, "pad": "x" * 5000}, H.BIZ)):
        r = run.call(gw, body, business=biz)
        t.check(r.status in (400, 413), "validation error -> %r" % r.status,
                r.short())
    for method, path in (("GET", "/nope"), ("GET", H.create_path()),
                         ("POST", "/healthz"), ("GET", "/healthz"),
                         ("GET", "/readyz")):
        run.answers.append(H.request(gw.port, method, path))
    run.finish()


@H.scenario
def upstream_faults(h):
    """upstream 400, 500, timeout, 429, drop, 403"""
    run = Run(h)
    t, sb, gw = h.t, run.sb, run.gateway()
    r = run.call(gw, {"uri": sb.missing("secret.png")})
    t.eq(r.status, 400, "upstream 400 -> 400")
    sb.faults(status=500, status_count=-1)
    r = run.call(gw, {"uri": sb.sample("secret-500.png"), "id": "s500"})
    t.eq(r.status, 502, "upstream 500 -> 502")
    sb.reset()
    sb.faults(latency_ms=1500)
    r = run.call(gw, {"uri": sb.sample("secret-slow.png")})
    t.eq(r.status, 504, "upstream timeout -> 504")
    sb.reset()
    sb.faults(status=429, status_count=1, retry_after=1)
    r = run.call(gw, {"uri": sb.sample("secret-429.png")})
    t.eq(r.status, 200, "upstream 429 then 200 -> 200")
    sb.faults(drop_count=1)
    r = run.call(gw, {"uri": sb.sample("secret-drop.png"), "id": "sdrop"})
    t.eq(r.status, 200, "dropped then retried -> 200")
    sb.faults(status=403, status_count=1)
    r = run.call(gw, {"uri": sb.sample("secret-403.png")})
    t.eq(r.status, 502, "upstream 403 -> 502")
    sb.reset()
    run.finish()


@H.scenario
def caller_credentials_not_forwarded(h):
    run = Run(h)
    t, sb, gw = h.t, run.sb, run.gateway()
    for hdrs in ({"X-API-Key": CALLER_SECRET},
                 {"Authorization": "Bearer " + CALLER_SECRET},
                 {"X-API-Key": CALLER_SECRET,
                  "Authorization": "Bearer " + CALLER_SECRET}):
        r = run.call(gw, {"uri": sb.sample("caller-%d.png" % len(hdrs)),
                      "id": "caller-%d" % len(run.answers)}, headers=hdrs)
        t.check(r.status == 200 and r.header("x-cache") == "MISS",
                "caller sends %s -> 200 MISS (only the gateway's key went "
                "upstream)" % "+".join(sorted(hdrs)), r.short())
    creds = [x for x in run.answers if CALLER_SECRET in x.raw_text()]
    t.check(not creds, "caller-secret not echoed in any answer",
            creds[0].short() if creds else "")
    run.finish()


@H.scenario
def wrong_key(h):
    """a wrong key: 401 -> 502 13"""
    run = Run(h)
    t, sb = h.t, run.sb
    gw_wrong = run.gateway(api_key=run.wrong, overrides=None)
    r = run.call(gw_wrong, {"uri": sb.sample("secret-wrong.png")})
    H.check_error(t, r, 502, 13, "wrong key")
    run.finish()


@H.scenario
def upstream_down(h):
    run = Run(h)
    t, sb = h.t, run.sb
    gw_down = run.gateway(overrides=None, base_url="http://127.0.0.1:%d"
                          % H.free_port())
    r = run.call(gw_down, {"uri": sb.sample("secret-down.png")})
    H.check_error(t, r, 502, 14, "upstream down")
    run.finish()


@H.scenario
def key_from_environment(h):
    """the key from the environment"""
    run = Run(h)
    t, sb = h.t, run.sb
    gw_env = run.gateway(key_file=False, overrides=None,
                         env={"ASSET_GATEWAY_API_KEY": run.key})
    r = run.call(gw_env, {"uri": sb.sample("secret-env.png")})
    t.eq(r.status, 200, "key from ASSET_GATEWAY_API_KEY -> 200")
    run.finish()


if __name__ == "__main__":
    H.run()
