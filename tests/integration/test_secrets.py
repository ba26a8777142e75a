"""The API key is injected, never shown (SPEC section 8): exercise every
path at log level debug and look for the key in every answer and every
log line; a caller's own credentials never reach the upstream."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

CALLER_SECRET = "caller-secret"


def main(h):
    t = h.t
    key = h.api_key
    wrong = "agw-wrong-key-" + os.urandom(12).hex()
    t.redact += [wrong]
    needles = [key, key[len("agw-test-key-"):], wrong,
               wrong[len("agw-wrong-key-"):]]
    answers = []

    sb = H.Sandbox(h)
    gw = H.Gateway(h, sb, overrides={"upstream": {"request_timeout_ms": 800},
                                     "server": {"max_body_bytes": 4096}})

    def call(g, body, business=H.BIZ, headers=None):
        r = g.create(body, business=business, headers=headers)
        answers.append(r)
        return r

    # success, HIT, no-cache
    u = sb.sample("secret-1.png")
    r = call(gw, {"uri": u})
    t.eq(r.status, 200, "create with the injected key -> 200 (the sandbox "
         "accepts only the right key)")
    r = call(gw, {"uri": u})
    t.eq(r.header("x-cache"), "HIT", "HIT")
    r = call(gw, {"uri": u}, headers={"Cache-Control": "no-cache"})
    t.eq(r.status, 200, "no-cache -> 200")
    r = call(gw, {"uri": sb.sample("secret-2.png"), "id": "sec-id",
                  "metadata": {"accessControlType": H.PRIVATE}})
    t.eq(r.status, 200, "create with id and metadata -> 200")

    # validation errors of every kind
    for body, biz in (({"uri": u}, "nope"), (b"not json", H.BIZ),
                      ({}, H.BIZ), ({"uri": "ftp://x/y"}, H.BIZ),
                      ({"uri": u, "id": "bad id"}, H.BIZ),
                      ({"uri": u, "metadata": {"accessControlType": "X"}},
                       H.BIZ),
                      ({"uri": u, "pad": "x" * 5000}, H.BIZ)):
        r = call(gw, body, business=biz)
        t.check(r.status in (400, 413), "validation error -> %r" % r.status,
                r.short())
    for method, path in (("GET", "/nope"), ("GET", H.create_path()),
                         ("POST", "/healthz"), ("GET", "/healthz"),
                         ("GET", "/readyz")):
        answers.append(H.request(gw.port, method, path))

    # upstream 400, 500, timeout, 429, drop, 403
    r = call(gw, {"uri": sb.missing("secret.png")})
    t.eq(r.status, 400, "upstream 400 -> 400")
    sb.faults(status=500, status_count=-1)
    r = call(gw, {"uri": sb.sample("secret-500.png"), "id": "s500"})
    t.eq(r.status, 502, "upstream 500 -> 502")
    sb.reset()
    sb.faults(latency_ms=1500)
    r = call(gw, {"uri": sb.sample("secret-slow.png")})
    t.eq(r.status, 504, "upstream timeout -> 504")
    sb.reset()
    sb.faults(status=429, status_count=1, retry_after=1)
    r = call(gw, {"uri": sb.sample("secret-429.png")})
    t.eq(r.status, 200, "upstream 429 then 200 -> 200")
    sb.faults(drop_count=1)
    r = call(gw, {"uri": sb.sample("secret-drop.png"), "id": "sdrop"})
    t.eq(r.status, 200, "dropped then retried -> 200")
    sb.faults(status=403, status_count=1)
    r = call(gw, {"uri": sb.sample("secret-403.png")})
    t.eq(r.status, 502, "upstream 403 -> 502")
    sb.reset()

    # caller credentials are not forwarded
    for hdrs in ({"X-API-Key": CALLER_SECRET},
                 {"Authorization": "Bearer " + CALLER_SECRET},
                 {"X-API-Key": CALLER_SECRET,
                  "Authorization": "Bearer " + CALLER_SECRET}):
        r = call(gw, {"uri": sb.sample("caller-%d.png" % len(hdrs)),
                      "id": "caller-%d" % len(answers)}, headers=hdrs)
        t.check(r.status == 200 and r.header("x-cache") == "MISS",
                "caller sends %s -> 200 MISS (only the gateway's key went "
                "upstream)" % "+".join(sorted(hdrs)), r.short())
    creds = [x for x in answers if CALLER_SECRET in x.raw_text()]
    t.check(not creds, "caller-secret not echoed in any answer",
            creds[0].short() if creds else "")

    # a wrong key: 401 -> 502 13
    gw_wrong = H.Gateway(h, sb, api_key=wrong)
    r = call(gw_wrong, {"uri": sb.sample("secret-wrong.png")})
    H.check_error(t, r, 502, 13, "wrong key")

    # upstream down
    gw_down = H.Gateway(h, base_url="http://127.0.0.1:%d" % H.free_port())
    r = call(gw_down, {"uri": sb.sample("secret-down.png")})
    H.check_error(t, r, 502, 14, "upstream down")

    # the key from the environment
    gw_env = H.Gateway(h, sb, key_file=False,
                       env={"ASSET_GATEWAY_API_KEY": key})
    r = call(gw_env, {"uri": sb.sample("secret-env.png")})
    t.eq(r.status, 200, "key from ASSET_GATEWAY_API_KEY -> 200")

    # config check output
    rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c", gw.conf_path])
    t.eq(rc, 0, "-t on the config -> 0")

    # --- the scan ------------------------------------------------------------
    t.diag("%d answers collected" % len(answers))
    leaks = [i for i, x in enumerate(answers)
             if any(n in x.raw_text() for n in needles)]
    t.check(not leaks, "the API key is in no answer (status, headers, body)",
            "leaking answers: %r" % leaks)
    texts = {g.name: g.output_text() for g in (gw, gw_wrong, gw_down,
                                               gw_env)}
    texts["-t output"] = out + err
    for name, text in texts.items():
        found = [n for n in needles if n in text]
        t.check(not found, "API key absent from %s (%d lines, level debug)"
                % (name, len(text.splitlines())),
                "found %d needle(s)" % len(found))
        t.check(CALLER_SECRET not in text,
                "caller-secret absent from %s" % name,
                "found caller-secret")
    for g in (gw, gw_wrong, gw_down, gw_env):
        t.check(g.proc.alive(), "%s still running" % g.name,
                g.proc.tail())
    # the gateways stop cleanly and say nothing secret on the way out
    for g in (gw, gw_wrong, gw_down, gw_env):
        rc, killed = g.stop()
        t.check(rc == 0 and not killed, "%s exits 0 on SIGTERM" % g.name,
                "rc %r killed %r" % (rc, killed))
        text = g.output_text()
        t.check(not any(n in text for n in needles) and
                CALLER_SECRET not in text,
                "%s: no secret in its output after shutdown" % g.name,
                "found a secret")
        H.check_json_log(t, g)


if __name__ == "__main__":
    H.run(main)
