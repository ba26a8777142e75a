"""Secrets never shown (SPEC section 8, issue #5), with caller tokens on:
a run at log level debug over success, HIT, every validation error,
401/403, upstream 400/500/timeout/429/drop/down, a key the upstream
refuses, /metrics, /readyz and a SIGHUP reload that swaps in a new key
and a new clients file. Every answer (status line, headers, body), the
whole output of every gateway (JSON and text format), -t output,
/metrics and the sandbox's own output are searched for the API keys
(old, new, wrong) and every caller token: none may be there, not even
a 12-character piece of one."""

import hashlib
import json
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


def main(h):
    t = h.t
    key1 = h.api_key  # the sandbox accepts this one
    key2 = secret("agw-new-key")
    wrong = secret("agw-wrong-key")
    toks = {n: secret("agw-tok-" + n) for n in
            ("alpha", "star", "unknown", "newbie", "removed")}
    secrets = {"key1": key1, "key2": key2, "wrong key": wrong}
    secrets.update({"token " + n: v for n, v in toks.items()})
    t.redact += [key2, wrong] + list(toks.values())
    scan = Scanner(secrets)
    answers = []  # (description, Resp)

    sb = H.Sandbox(h)
    clients = h.write("clients.ini", clients_text([
        ("alpha", toks["alpha"], H.BIZ),
        ("star", toks["star"], "*"),
        ("removed", toks["removed"], H.BIZ2)]))
    auth = {"mode": "token", "clients_file": clients}
    gw = H.Gateway(h, sb, overrides={
        "auth": auth, "log": {"level": "debug", "format": "json"},
        "upstream": {"request_timeout_ms": 800, "max_retries": 1},
        "server": {"max_body_bytes": 4096, "request_deadline_ms": 4000}})
    key_path = gw.cfg["upstream"]["api_key_file"]

    def call(desc, body, business=H.BIZ, tok="alpha", headers=None,
             g=None, want=None):
        hdrs = dict(headers or {})
        if tok is not None:
            hdrs.setdefault("Authorization", "Bearer " + toks[tok])
        r = (g or gw).create(body, business=business, headers=hdrs)
        answers.append((desc, r))
        if want is not None:
            t.check(r.status in (want if isinstance(want, tuple) else
                                 (want,)),
                    "%s -> %r" % (desc, want), r.short())
        return r

    def raw(desc, method, path, body=None, headers=None, g=None, want=None):
        r = H.request((g or gw).port, method, path, body=body,
                      headers=headers)
        answers.append((desc, r))
        if want is not None:
            t.eq(r.status, want, "%s -> %d" % (desc, want))
        return r

    # success, HIT, no-cache, custom id, metadata; the star caller
    u = sb.sample("full-1.png")
    call("create", {"uri": u}, want=200)
    r = call("create again", {"uri": u}, want=200)
    t.eq(r.header("x-cache"), "HIT", "second create is a HIT")
    call("no-cache", {"uri": u}, headers={"Cache-Control": "no-cache"},
         want=200)
    call("id and metadata", {"uri": sb.sample("full-2.png"), "id": "full-2",
                             "metadata": {"accessControlType": H.PRIVATE}},
         want=200)
    call("star caller", {"uri": sb.sample("full-3.png")}, business=BIZ3,
         tok="star", want=200)

    # every validation error
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
        call(desc, body, business=biz, want=want)
    for biz in ("nope", "ZZZZZZZZ-e29b-41d4-a716-446655440000",
                H.BIZ + "0", "%s" % H.BIZ.replace("-", "")):
        call("bad business id %r" % biz, {"uri": u}, business=biz,
             tok="star", want=400)

    # 401 and 403, including a caller who sends the gateway's own key
    call("no token", {"uri": u}, tok=None, want=401)
    call("unknown token", {"uri": u}, tok="unknown", want=401)
    call("token as X-API-Key", {"uri": u}, tok=None,
         headers={"X-API-Key": toks["alpha"]}, want=401)
    call("API key as bearer token", {"uri": u}, tok=None,
         headers={"Authorization": "Bearer " + key1}, want=401)
    call("API key as Basic", {"uri": u}, tok=None,
         headers={"Authorization": "Basic " + key1}, want=401)
    call("wrong business", {"uri": u}, business=H.BIZ2, want=403)
    call("forbidden with the key as X-API-Key", {"uri": u},
         business=H.BIZ2, headers={"X-API-Key": key1}, want=403)

    # routes and methods
    raw("healthz", "GET", "/healthz", want=200)
    raw("readyz", "GET", "/readyz", want=200)
    raw("HEAD healthz", "HEAD", "/healthz", want=200)
    raw("404", "GET", "/v1/nothing-here", want=404)
    raw("405 create", "GET", H.create_path(),
        headers={"Authorization": "Bearer " + toks["alpha"]}, want=405)
    raw("405 healthz", "POST", "/healthz", body=b"{}", want=405)
    raw("metrics early", "GET", "/metrics", want=200)

    # upstream faults
    call("upstream 400", {"uri": sb.missing("full.png")}, want=400)
    sb.faults(status=500, status_count=-1)
    call("upstream 500", {"uri": sb.sample("full-500.png")}, want=502)
    sb.reset()
    sb.faults(latency_ms=1500)
    call("upstream timeout", {"uri": sb.sample("full-slow.png")}, want=504)
    sb.reset()
    sb.faults(status=429, status_count=-1, retry_after=1)
    r = call("upstream 429 always", {"uri": sb.sample("full-429.png")})
    H.check_error(t, r, 429, 8, "upstream 429 on every attempt")
    sb.reset()
    sb.faults(status=429, status_count=1, retry_after=1)
    call("upstream 429 once", {"uri": sb.sample("full-429b.png")}, want=200)
    sb.faults(drop_count=-1)
    call("upstream drops", {"uri": sb.sample("full-drop.png")}, want=502)
    sb.reset()
    sb.faults(status=403, status_count=1)
    r = call("upstream 403", {"uri": sb.sample("full-403.png")}, want=502)
    H.check_error(t, r, 502, 13, "upstream 403 (key refused)")
    sb.reset()

    # a wrong key: the sandbox answers 401, the gateway 502 code 13
    gw_wrong = H.Gateway(h, sb, api_key=wrong, overrides={
        "auth": auth, "log": {"level": "debug", "format": "json"}})
    r = call("wrong key", {"uri": sb.sample("full-wrong.png")}, g=gw_wrong)
    H.check_error(t, r, 502, 13, "gateway with a wrong key")
    raw("metrics wrong-key gateway", "GET", "/metrics", g=gw_wrong, want=200)

    # upstream down, with the text log format
    gw_down = H.Gateway(h, base_url="http://127.0.0.1:%d" % H.free_port(),
                        overrides={"auth": auth, "log": {
                            "level": "debug", "format": "text"}})
    r = call("upstream down", {"uri": sb.sample("full-down.png")},
             g=gw_down)
    H.check_error(t, r, 502, 14, "upstream down")
    call("text-format gateway 401", {"uri": u}, tok="unknown", g=gw_down,
         want=401)
    call("text-format gateway validation", {"uri": 1}, g=gw_down, want=400)
    raw("metrics down gateway", "GET", "/metrics", g=gw_down, want=200)
    raw("readyz down gateway", "GET", "/readyz", g=gw_down)

    # a world-readable key file: start-up warns about it, without the key
    loose = h.write(h.name("loose-key-"), key1 + "\n", mode=0o644)
    gw_loose = H.Gateway(h, sb, overrides={
        "auth": auth, "upstream": {"api_key_file": loose},
        "log": {"level": "debug", "format": "json"}})
    lo = gw_loose.output_text()
    t.check(loose in lo and ("0644" in lo or "readable" in lo),
            "a world-readable key file: a warning names it",
            lo[-800:])
    plain = [ln for ln in gw_loose.log_text().splitlines()
             if ln.strip() and not ln.startswith("{")]
    t.check(not plain, "[log] format = json: the start-up warnings about "
            "file modes are JSON lines too", "\n".join(plain[:5]))
    call("loose-key gateway works", {"uri": sb.sample("full-loose.png")},
         g=gw_loose, want=200)

    # SIGHUP: a new key (which the sandbox refuses) and a new clients file
    h.write(os.path.basename(key_path), key2 + "\n")
    h.write(os.path.basename(clients), clients_text([
        ("alpha", toks["alpha"], H.BIZ),
        ("star", toks["star"], "*"),
        ("newbie", toks["newbie"], H.BIZ2)]))
    gw.proc.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    r = None
    while time.monotonic() < deadline:
        r = call("after reload (new key)", {"uri": sb.sample(
            "full-new-%d.png" % len(answers))})
        if r.status == 502:
            break
        time.sleep(0.05)
    H.check_error(t, r, 502, 13, "after SIGHUP with a new key the sandbox "
                  "refuses it")
    t.check(any("reloaded" in ln for ln in gw.log_text().splitlines()),
            "the reload is logged", gw.log_text()[-800:])
    r = call("newbie after reload", {"uri": sb.sample("full-newbie.png")},
             business=H.BIZ2, tok="newbie")
    H.check_error(t, r, 502, 13, "the new caller is let in (and the new key "
                  "refused upstream)")
    call("removed after reload", {"uri": u}, business=H.BIZ2, tok="removed",
         want=401)
    r = call("HIT after reload", {"uri": u}, want=200)
    t.eq(r.header("x-cache"), "HIT", "a cached answer still served after "
         "the reload")
    # a broken reload: the key file names a missing file
    os.unlink(key_path)
    gw.proc.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "reload refused" not in \
            gw.log_text():
        time.sleep(0.05)
    t.check("reload refused" in gw.log_text(),
            "SIGHUP with the key file gone: reload refused (logged)",
            gw.log_text()[-800:])
    h.write(os.path.basename(key_path), key2 + "\n")
    raw("metrics after reloads", "GET", "/metrics", want=200)
    raw("readyz after reloads", "GET", "/readyz", want=200)

    # -t on every config
    for g in (gw, gw_wrong, gw_down, gw_loose):
        rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c", g.conf_path])
        found = scan.find(out + err)
        t.check(rc == 0 and not found, "-t on %s: exit 0, no secret in its "
                "output" % g.name, "rc %r found %r" % (rc, found))

    # --- the scan -------------------------------------------------------
    t.diag("%d answers collected; slowest: %s" % (len(answers), ", ".join(
        "%s %.1f s" % (d, r.elapsed) for d, r in sorted(
            answers, key=lambda x: -x[1].elapsed)[:4])))
    leaks = [(d, scan.find(r.raw_text())) for d, r in answers]
    leaks = [x for x in leaks if x[1]]
    t.check(not leaks, "no secret in any of the %d answers (status, headers, "
            "body)" % len(answers), repr(leaks)[:1500])
    no_answer = [d for d, r in answers if r.status is None]
    t.check(not no_answer, "every request got an answer", repr(no_answer))
    metrics = [r for d, r in answers if d.startswith("metrics")]
    t.check(len(metrics) == 4 and all(
        b"asset_gateway_requests_total" in r.body for r in metrics),
        "4 /metrics scrapes with asset_gateway_requests_total",
        repr([r.short() for r in metrics])[:800])

    gws = (gw, gw_wrong, gw_down, gw_loose)
    for g in gws:
        t.check(g.proc.alive(), "%s still running" % g.name, g.proc.tail())
    for g in gws:
        rc, killed = g.stop()
        t.check(rc == 0 and not killed, "%s exits 0 on SIGTERM" % g.name,
                "rc %r killed %r" % (rc, killed))
    levels = {}
    for ln in gw.log_text().splitlines():
        try:
            j = json.loads(ln)
        except ValueError:
            continue
        levels[j.get("level")] = levels.get(j.get("level"), 0) + 1
    t.diag("main gateway log lines by level: %r" % levels)
    t.check(levels.get("debug", 0) > 0, "the main gateway logged at debug "
            "level (so debug lines were searched)", repr(levels))
    for g in gws:
        text = g.output_text()
        found = scan.find(text)
        t.check(not found, "%s: no secret in its whole output (%d lines)"
                % (g.name, len(text.splitlines())), "found %r" % found)
    for g in (gw, gw_wrong):
        H.check_json_log(t, g)
    sb.stop()
    text = sb.proc.stdout_text() + sb.proc.stderr_text()
    found = scan.find(text)
    t.check(not found, "the sandbox's output holds no secret (%d lines)"
            % len(text.splitlines()), "found %r" % found)


if __name__ == "__main__":
    H.run(main)
