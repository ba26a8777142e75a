"""Secrets never shown (SPEC section 8, issue #5), with caller tokens on:
a run at log level debug over success, HIT, every validation error,
401/403, upstream 400/500/timeout/429/drop/down, a key the upstream
refuses, /metrics, /readyz and a SIGHUP reload that swaps in a new key
and a new clients file. Every answer (status line, headers, body), the
whole output of every gateway (JSON and text format), -t output,
/metrics and the sandbox's own output are searched for the API keys
(old, new, wrong) and every caller token: none may be there, not even
a 12-character piece of one.

Each scenario has its own sandbox and gateways and ends by scanning
what it collected (Run.finish), so any one runs alone (-k NAME)."""

import hashlib
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

BIZ3 = "0f8fad5b-d9cb-469f-a165-70867728950e"
PIECE = 12  # length of the secret pieces searched for


def secret(prefix):
    return "%s-%s" % (prefix, os.urandom(20).hex())


def sha(tok):
    return hashlib.sha256(tok.encode()).hexdigest()


def clients_text(callers):
    out = []
    for name, tok, biz in callers:
        out += ["[%s]" % name, "token_sha256 = %s" % sha(tok),
                "businesses = %s" % biz, ""]
    return "\n".join(out)


class Scanner:
    """Finds any secret, or any PIECE-character window of its random
    part, in a text."""

    def __init__(self, secrets):
        self.needles = []
        for name, value in secrets.items():
            self.needles.append((name, value))
            rnd = value.rsplit("-", 1)[1]
            for i in range(0, len(rnd) - PIECE + 1):
                self.needles.append((name + " (piece)", rnd[i:i + PIECE]))

    def find(self, text):
        return sorted({name for name, n in self.needles if n in text})


SECRETS = {}  # name -> value, made once per file (the API key is h's)


def secrets(h):
    """The file's secrets, made and registered for redaction once."""
    if not SECRETS:
        SECRETS["key1"] = h.api_key  # the sandbox accepts this one
        SECRETS["key2"] = secret("agw-new-key")
        SECRETS["wrong key"] = secret("agw-wrong-key")
        for n in ("alpha", "star", "unknown", "newbie", "removed"):
            SECRETS["token " + n] = secret("agw-tok-" + n)
        h.t.redact += [v for k, v in SECRETS.items() if k != "key1"]
    return SECRETS


def tok(name):
    return SECRETS["token " + name]


class Run:
    """One scenario's sandbox, clients file, gateways and answers;
    finish() checks and scans them all."""

    def __init__(self, h):
        self.h = h
        self.t = h.t
        self.scan = Scanner(secrets(h))
        # its own sandbox: its output is complete once it has stopped
        self.sb = H.Sandbox(h)
        self.clients = h.write(h.name("clients-") + ".ini", clients_text([
            ("alpha", tok("alpha"), H.BIZ),
            ("star", tok("star"), "*"),
            ("removed", tok("removed"), H.BIZ2)]))
        self.auth = {"mode": "token", "clients_file": self.clients}
        self.answers = []  # (description, Resp)
        self.gws = []  # (Gateway, JSON log format?)
        self.gw = None  # the gateway call() and raw() use by default

    def gateway(self, fmt="json", **kw):
        overrides = kw.pop("overrides", {})
        overrides.setdefault("auth", self.auth)
        overrides.setdefault("log", {"level": "debug", "format": fmt})
        g = H.Gateway(self.h, kw.pop("sandbox", self.sb), overrides=overrides,
                      **kw)
        self.gws.append((g, fmt == "json"))
        self.gw = self.gw or g
        return g

    def main_gateway(self):
        """The gateway most scenarios use: tokens, short timeouts."""
        return self.gateway(overrides={
            "upstream": {"request_timeout_ms": 800, "max_retries": 1},
            "server": {"max_body_bytes": 4096, "request_deadline_ms": 4000}})

    def call(self, desc, body, business=H.BIZ, tok="alpha", headers=None,
             g=None, want=None):
        hdrs = dict(headers or {})
        if tok is not None:
            hdrs.setdefault("Authorization", "Bearer " + SECRETS[
                "token " + tok])
        r = (g or self.gw).create(body, business=business, headers=hdrs)
        self.answers.append((desc, r))
        if want is not None:
            self.t.check(r.status in (want if isinstance(want, tuple) else
                                      (want,)),
                         "%s -> %r" % (desc, want), r.short())
        return r

    def raw(self, desc, method, path, body=None, headers=None, g=None,
            want=None):
        r = H.request((g or self.gw).port, method, path, body=body,
                      headers=headers)
        self.answers.append((desc, r))
        if want is not None:
            self.t.eq(r.status, want, "%s -> %d" % (desc, want))
        return r

    def finish(self, scrapes=0):
        """The scans: every answer, -t on every config, every gateway's
        whole output (each stopped with SIGTERM first), the sandbox's.
        SCRAPES: how many /metrics answers the scenario collected."""
        t, h, scan = self.t, self.h, self.scan
        for g, _ in self.gws:
            rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c",
                                      g.conf_path])
            found = scan.find(out + err)
            t.check(rc == 0 and not found, "-t on %s: exit 0, no secret in "
                    "its output" % g.name, "rc %r found %r" % (rc, found))
        t.diag("%d answers collected; slowest: %s" % (
            len(self.answers), ", ".join(
                "%s %.1f s" % (d, r.elapsed) for d, r in sorted(
                    self.answers, key=lambda x: -x[1].elapsed)[:4])))
        leaks = [(d, scan.find(r.raw_text())) for d, r in self.answers]
        leaks = [x for x in leaks if x[1]]
        t.check(not leaks, "no secret in any of the %d answers (status, "
                "headers, body)" % len(self.answers), repr(leaks)[:1500])
        no_answer = [d for d, r in self.answers if r.status is None]
        t.check(not no_answer, "every request got an answer",
                repr(no_answer))
        if scrapes:
            metrics = [r for d, r in self.answers if d.startswith("metrics")]
            t.check(len(metrics) == scrapes and all(
                b"asset_gateway_requests_total" in r.body for r in metrics),
                "%d /metrics scrapes with asset_gateway_requests_total"
                % scrapes, repr([r.short() for r in metrics])[:800])
        for g, _ in self.gws:
            t.check(g.proc.alive(), "%s still running" % g.name,
                    g.proc.tail())
        for g, _ in self.gws:
            rc, killed = g.stop()
            t.check(rc == 0 and not killed, "%s exits 0 on SIGTERM"
                    % g.name, "rc %r killed %r" % (rc, killed))
        for g, json_log in self.gws:
            if json_log:
                check_debug_logged(t, g)
        for g, _ in self.gws:
            text = g.output_text()
            found = scan.find(text)
            t.check(not found, "%s: no secret in its whole output (%d lines)"
                    % (g.name, len(text.splitlines())), "found %r" % found)
        for g, json_log in self.gws:
            if json_log:
                H.check_json_log(t, g)
        self.sb.stop()
        text = self.sb.proc.stdout_text() + self.sb.proc.stderr_text()
        found = scan.find(text)
        t.check(not found, "the sandbox's output holds no secret (%d lines)"
                % len(text.splitlines()), "found %r" % found)


def check_debug_logged(t, g):
    levels = {}
    for j in H.log_records(g):
        levels[j.get("level")] = levels.get(j.get("level"), 0) + 1
    t.diag("%s log lines by level: %r" % (g.name, levels))
    t.check(levels.get("debug", 0) > 0, "%s logged at debug level (so "
            "debug lines were searched)" % g.name, repr(levels))


@H.scenario
def success_hit_and_callers(h):
    """success, HIT, no-cache, custom id, metadata; the star caller"""
    run = Run(h)
    t, sb = h.t, run.sb
    run.main_gateway()
    u = sb.sample("full-1.png")
    run.call("create", {"uri": u}, want=200)
    r = run.call("create again", {"uri": u}, want=200)
    t.eq(r.header("x-cache"), "HIT", "second create is a HIT")
    run.call("no-cache", {"uri": u}, headers={"Cache-Control": "no-cache"},
             want=200)
    run.call("id and metadata", {
        "uri": sb.sample("full-2.png"), "id": "full-2",
        "metadata": {"accessControlType": H.PRIVATE}}, want=200)
    run.call("star caller", {"uri": sb.sample("full-3.png")}, business=BIZ3,
             tok="star", want=200)
    run.finish()


@H.scenario
def validation_errors(h):
    run = Run(h)
    run.main_gateway()
    u = run.sb.sample("full-1.png")
    bad = [
        ("not JSON", b"{not json", H.BIZ, 400),
        ("JSON array", b"[1,2]", H.BIZ, 400),
        ("JSON string", b'"uri"', H.BIZ, 400),
        ("empty body", b"", H.BIZ, 400),
        ("no uri", {}, H.BIZ, 400),
        ("uri not a string", {"uri": 42}, H.BIZ, 400),
        ("uri null", {"uri": None}, H.BIZ, 400),
        ("ftp uri", {"uri": "ftp://example.com/x"}, H.BIZ, 400),
        ("relative uri", {"uri": "/samples/x.png"}, H.BIZ, 400),
        ("uri without host", {"uri": "http:///x.png"}, H.BIZ, 400),
        ("uri too long", {"uri": "https://example.com/" + "a" * 2100},
         H.BIZ, 400),
        ("id bad chars", {"uri": u, "id": "bad id!"}, H.BIZ, 400),
        ("id empty", {"uri": u, "id": ""}, H.BIZ, 400),
        ("id too long", {"uri": u, "id": "a" * 129}, H.BIZ, 400),
        ("id not a string", {"uri": u, "id": 7}, H.BIZ, 400),
        ("metadata not an object", {"uri": u, "metadata": "x"}, H.BIZ, 400),
        ("bad accessControlType", {"uri": u, "metadata":
                                   {"accessControlType": "X"}}, H.BIZ, 400),
        ("deep nesting", b'{"uri":' + b"[" * 40 + b"]" * 40 + b"}", H.BIZ,
         400),
        ("invalid UTF-8", b'{"uri":"http://example.com/\xff\xfe"}', H.BIZ,
         400),
        ("body too large", {"uri": u, "pad": "x" * 5000}, H.BIZ, 413),
    ]
    for desc, body, biz, want in bad:
        run.call(desc, body, business=biz, want=want)
    for biz in ("nope", "ZZZZZZZZ-e29b-41d4-a716-446655440000",
                H.BIZ + "0", "%s" % H.BIZ.replace("-", "")):
        run.call("bad business id %r" % biz, {"uri": u}, business=biz,
                 tok="star", want=400)
    run.finish()


@H.scenario
def auth_refusals(h):
    """401 and 403, including a caller who sends the gateway's own key"""
    run = Run(h)
    run.main_gateway()
    u = run.sb.sample("full-1.png")
    key1 = h.api_key
    run.call("no token", {"uri": u}, tok=None, want=401)
    run.call("unknown token", {"uri": u}, tok="unknown", want=401)
    run.call("token as X-API-Key", {"uri": u}, tok=None,
             headers={"X-API-Key": tok("alpha")}, want=401)
    run.call("API key as bearer token", {"uri": u}, tok=None,
             headers={"Authorization": "Bearer " + key1}, want=401)
    run.call("API key as Basic", {"uri": u}, tok=None,
             headers={"Authorization": "Basic " + key1}, want=401)
    run.call("wrong business", {"uri": u}, business=H.BIZ2, want=403)
    run.call("forbidden with the key as X-API-Key", {"uri": u},
             business=H.BIZ2, headers={"X-API-Key": key1}, want=403)
    run.finish()


@H.scenario
def routes_and_methods(h):
    run = Run(h)
    run.main_gateway()
    run.raw("healthz", "GET", "/healthz", want=200)
    run.raw("readyz", "GET", "/readyz", want=200)
    run.raw("HEAD healthz", "HEAD", "/healthz", want=200)
    run.raw("404", "GET", "/v1/nothing-here", want=404)
    run.raw("405 create", "GET", H.create_path(),
            headers={"Authorization": "Bearer " + tok("alpha")}, want=405)
    run.raw("405 healthz", "POST", "/healthz", body=b"{}", want=405)
    run.raw("metrics early", "GET", "/metrics", want=200)
    run.finish(scrapes=1)


@H.scenario
def upstream_faults(h):
    run = Run(h)
    t, sb = h.t, run.sb
    run.main_gateway()
    run.call("upstream 400", {"uri": sb.missing("full.png")}, want=400)
    sb.faults(status=500, status_count=-1)
    run.call("upstream 500", {"uri": sb.sample("full-500.png")}, want=502)
    sb.reset()
    sb.faults(latency_ms=1500)
    run.call("upstream timeout", {"uri": sb.sample("full-slow.png")},
             want=504)
    sb.reset()
    sb.faults(status=429, status_count=-1, retry_after=1)
    r = run.call("upstream 429 always", {"uri": sb.sample("full-429.png")})
    H.check_error(t, r, 429, 8, "upstream 429 on every attempt")
    sb.reset()
    sb.faults(status=429, status_count=1, retry_after=1)
    run.call("upstream 429 once", {"uri": sb.sample("full-429b.png")},
             want=200)
    sb.faults(drop_count=-1)
    run.call("upstream drops", {"uri": sb.sample("full-drop.png")}, want=502)
    sb.reset()
    sb.faults(status=403, status_count=1)
    r = run.call("upstream 403", {"uri": sb.sample("full-403.png")},
                 want=502)
    H.check_error(t, r, 502, 13, "upstream 403 (key refused)")
    sb.reset()
    run.finish()


@H.scenario
def wrong_key(h):
    """a wrong key: the sandbox answers 401, the gateway 502 code 13"""
    run = Run(h)
    gw_wrong = run.gateway(api_key=SECRETS["wrong key"])
    r = run.call("wrong key", {"uri": run.sb.sample("full-wrong.png")})
    H.check_error(h.t, r, 502, 13, "gateway with a wrong key")
    run.raw("metrics wrong-key gateway", "GET", "/metrics", g=gw_wrong,
            want=200)
    run.finish(scrapes=1)


@H.scenario
def upstream_down_text_log(h):
    """upstream down, with the text log format"""
    run = Run(h)
    t = h.t
    run.gateway(fmt="text", sandbox=None,
                base_url="http://127.0.0.1:%d" % H.free_port())
    r = run.call("upstream down", {"uri": run.sb.sample("full-down.png")})
    H.check_error(t, r, 502, 14, "upstream down")
    run.call("text-format gateway 401", {"uri": run.sb.sample("full-1.png")},
             tok="unknown", want=401)
    run.call("text-format gateway validation", {"uri": 1}, want=400)
    run.raw("metrics down gateway", "GET", "/metrics", want=200)
    run.raw("readyz down gateway", "GET", "/readyz")
    run.finish(scrapes=1)


@H.scenario
def world_readable_key_file(h):
    """start-up warns about the key file, without the key"""
    run = Run(h)
    t = h.t
    loose = h.write(h.name("loose-key-"), h.api_key + "\n", mode=0o644)
    gw_loose = run.gateway(overrides={"upstream": {"api_key_file": loose}})
    lo = gw_loose.output_text()
    t.check(loose in lo and ("0644" in lo or "readable" in lo),
            "a world-readable key file: a warning names it",
            lo[-800:])
    plain = [ln for ln in gw_loose.log_text().splitlines()
             if ln.strip() and not ln.startswith("{")]
    t.check(not plain, "[log] format = json: the start-up warnings about "
            "file modes are JSON lines too", "\n".join(plain[:5]))
    run.call("loose-key gateway works", {"uri": run.sb.sample(
        "full-loose.png")}, want=200)
    run.finish()


def wait_reload_answer(run, gw):
    """Creates until the gateway answers with the new key (502), 5 s."""
    deadline = time.monotonic() + 5
    r = None
    while time.monotonic() < deadline:
        r = run.call("after reload (new key)", {"uri": run.sb.sample(
            "full-new-%d.png" % len(run.answers))})
        if r.status == 502:
            break
        time.sleep(0.05)
    return r


@H.scenario
def sighup_new_key_and_clients(h):
    """SIGHUP: a new key (which the sandbox refuses) and a new clients
    file; then a broken reload (the key file gone)"""
    run = Run(h)
    t, sb = h.t, run.sb
    gw = run.main_gateway()
    key_path = gw.cfg["upstream"]["api_key_file"]
    u = sb.sample("full-1.png")
    run.call("create before the reload", {"uri": u}, want=200)
    h.write(os.path.basename(key_path), SECRETS["key2"] + "\n")
    h.write(os.path.basename(run.clients), clients_text([
        ("alpha", tok("alpha"), H.BIZ),
        ("star", tok("star"), "*"),
        ("newbie", tok("newbie"), H.BIZ2)]))
    gw.proc.signal(signal.SIGHUP)
    r = wait_reload_answer(run, gw)
    H.check_error(t, r, 502, 13, "after SIGHUP with a new key the sandbox "
                  "refuses it")
    t.check(any("reloaded" in ln for ln in gw.log_text().splitlines()),
            "the reload is logged", gw.log_text()[-800:])
    r = run.call("newbie after reload", {"uri": sb.sample(
        "full-newbie.png")}, business=H.BIZ2, tok="newbie")
    H.check_error(t, r, 502, 13, "the new caller is let in (and the new key "
                  "refused upstream)")
    run.call("removed after reload", {"uri": u}, business=H.BIZ2,
             tok="removed", want=401)
    r = run.call("HIT after reload", {"uri": u}, want=200)
    t.eq(r.header("x-cache"), "HIT", "a cached answer still served after "
         "the reload")
    # a broken reload: the key file names a missing file
    os.unlink(key_path)
    gw.proc.signal(signal.SIGHUP)
    H.wait_until(lambda: "reload refused" in gw.log_text(), 5, step=0.05)
    t.check("reload refused" in gw.log_text(),
            "SIGHUP with the key file gone: reload refused (logged)",
            gw.log_text()[-800:])
    h.write(os.path.basename(key_path), SECRETS["key2"] + "\n")
    run.raw("metrics after reloads", "GET", "/metrics", want=200)
    run.raw("readyz after reloads", "GET", "/readyz", want=200)
    run.finish(scrapes=1)


if __name__ == "__main__":
    H.run()
