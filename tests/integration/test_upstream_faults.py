"""Upstream failures (SPEC section 5 and the status table of section 2):
down, 5xx with and without a custom id, timeout, dropped connection,
401/403 for the gateway's own key, 429 pause and retry. Each scenario
has its own gateway over the reset shared sandbox (-k NAME runs one)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

TIMEOUT_MS = 1000


def start(h):
    """The scenario's reset sandbox and its own gateway over it."""
    sb = h.sandbox()
    gw = H.Gateway(h, sb, overrides={"upstream": {
        "request_timeout_ms": TIMEOUT_MS, "max_retries": 2}})
    return h.t, sb, gw


def fresh(sb, name):
    sb.reset()
    return sb.sample(name)


@H.scenario
def status_500_without_id(h):
    """500 without id: not idempotent, no retry"""
    t, sb, gw = start(h)
    u = fresh(sb, "f500.png")
    sb.faults(status=500, status_count=-1)
    r = gw.create({"uri": u})
    H.check_error(t, r, 502, 14, "upstream 500 without id")
    H.check_create_headers(t, r, "502")
    t.eq(sb.calls(), 1, "upstream 500 without id: exactly 1 call (no retry)")

    sb.reset()
    r = gw.create({"uri": u})
    t.check(r.status == 200 and r.header("x-cache") == "MISS",
            "after the fault ends the same create -> 200 MISS (errors not "
            "cached)", r.short())
    H.check_json_log(t, gw)


@H.scenario
def status_5xx_with_id(h):
    """500 and 503 with id: retried"""
    t, sb, gw = start(h)
    u = fresh(sb, "f500id.png")
    sb.faults(status=500, status_count=-1)
    t0 = time.monotonic()
    r = gw.create({"uri": u, "id": "retry-me-1"})
    el = time.monotonic() - t0
    H.check_error(t, r, 502, 14, "upstream 500 with id, persistent")
    t.eq(sb.calls(), 3, "persistent 500 with id: max_retries + 1 = 3 calls")
    t.diag("3 attempts with backoff took %.2f s" % el)

    u = fresh(sb, "f500once.png")
    sb.faults(status=500, status_count=1)
    r = gw.create({"uri": u, "id": "retry-me-2"})
    t.check(r.status == 200 and r.header("x-cache") == "MISS",
            "500 on the first call only, with id -> 200 after a retry",
            r.short())
    t.eq(sb.calls(), 2, "500 once with id: 2 calls")

    u = fresh(sb, "f503.png")
    sb.faults(status=503, status_count=1)
    r = gw.create({"uri": u, "id": "retry-me-3"})
    t.eq(r.status, 200, "503 once with id -> 200 after a retry")
    H.check_json_log(t, gw)


@H.scenario
def slow_upstream(h):
    """slow upstream"""
    t, sb, gw = start(h)
    u = fresh(sb, "fslow.png")
    sb.faults(latency_ms=TIMEOUT_MS + 1500)
    t0 = time.monotonic()
    r = gw.create({"uri": u})
    el = time.monotonic() - t0
    H.check_error(t, r, 504, 4, "upstream slower than request_timeout_ms")
    H.check_create_headers(t, r, "504")
    t.check(el < TIMEOUT_MS / 1000.0 + 1.0,
            "504 answered within the attempt timeout (+1 s)",
            "took %.2f s" % el)
    t.eq(sb.calls(), 1, "timeout without id: 1 call (not retried)")

    u = fresh(sb, "fslowid.png")
    sb.faults(latency_ms=TIMEOUT_MS + 500)
    t0 = time.monotonic()
    r = gw.create({"uri": u, "id": "slow-id"})
    el = time.monotonic() - t0
    t.check(r.status in (502, 504) and (r.json or {}).get("code") in (4, 14),
            "timeout on every attempt with id -> 504/502", r.short())
    t.check(sb.calls() >= 2, "timeout with id is retried",
            "calls %d" % sb.calls())
    t.diag("slow upstream with id: %d calls, answered in %.2f s, status %r"
           % (sb.calls(), el, r.status))
    H.check_json_log(t, gw)


@H.scenario
def dropped_connection(h):
    """dropped connection"""
    t, sb, gw = start(h)
    u = fresh(sb, "fdrop.png")
    sb.faults(drop_count=1)
    r = gw.create({"uri": u, "id": "drop-id"})
    t.check(r.status == 200 and r.header("x-cache") == "MISS",
            "dropped connection with id -> retried -> 200", r.short())
    t.eq(sb.calls(), 2, "dropped once with id: 2 calls")

    u = fresh(sb, "fdrop2.png")
    sb.faults(drop_count=1)
    r = gw.create({"uri": u})
    H.check_error(t, r, 502, 14, "dropped connection without id (may have "
                  "been processed: no retry)")
    t.eq(sb.calls(), 1, "dropped without id: 1 call")
    H.check_json_log(t, gw)


@H.scenario
def status_429_pause(h):
    """upstream 429: pause and retry; the pause covers other creates too"""
    t, sb, gw = start(h)
    u = fresh(sb, "f429.png")
    sb.faults(status=429, status_count=1, retry_after=1)
    t0 = time.monotonic()
    r = gw.create({"uri": u})
    el = time.monotonic() - t0
    t.check(r.status == 200 and r.header("x-cache") == "MISS",
            "upstream 429 (Retry-After 1) once -> 200 after the pause",
            r.short())
    t.check(el >= 0.9, "the gateway paused ~1 s before retrying",
            "took %.2f s" % el)
    t.check(el < 4.0, "and not much longer", "took %.2f s" % el)
    t.diag("429 then 200 took %.2f s" % el)
    t.eq(sb.calls(), 2, "upstream 429 once: 2 calls")
    times = [c.get("t") for c in sb.call_list()]
    if len(times) == 2:
        t.check(times[1] - times[0] >= 0.9,
                "the retry arrived >= 0.9 s after the 429",
                "gap %.3f s" % (times[1] - times[0]))

    # the pause covers other creates too (the limiter is paused)
    u1, u2 = fresh(sb, "f429a.png"), sb.sample("f429b.png")
    sb.faults(status=429, status_count=1, retry_after=1)
    res = H.concurrent([lambda: gw.create({"uri": u1}),
                        lambda: (time.sleep(0.2), gw.create({"uri": u2}))[1]],
                       timeout=15)
    t.check(all(isinstance(x, H.Resp) and x.status == 200 for x in res),
            "two creates during a 429 pause -> both 200",
            "\n".join(x.short() if isinstance(x, H.Resp) else repr(x)
                      for x in res))
    calls = sb.call_list()
    t.diag("calls during pause: %r" % [(round(c.get("t"), 3), c.get("status"))
                                       for c in calls])
    if len(calls) >= 2:
        first = calls[0]["t"]
        later = [c["t"] - first for c in calls[1:]]
        t.check(min(later) >= 0.9,
                "no upstream call during the Retry-After pause",
                "gaps after the 429: %r" % later)
    H.check_json_log(t, gw)


@H.scenario
def status_403_own_key(h):
    """upstream 403 for the gateway's key"""
    t, sb, gw = start(h)
    u = fresh(sb, "f403.png")
    sb.faults(status=403, status_count=1)
    r = gw.create({"uri": u})
    H.check_error(t, r, 502, 13, "upstream 403 for the gateway's key")
    H.check_json_log(t, gw)


@H.scenario
def wrong_key_401(h):
    """upstream 401 for the gateway's key"""
    t, sb = h.t, h.sandbox()
    wrong = "agw-wrong-key-" + os.urandom(8).hex()
    t.redact.append(wrong)
    gw_bad = H.Gateway(h, sb, api_key=wrong)
    r = gw_bad.create({"uri": sb.sample("f401.png")})
    H.check_error(t, r, 502, 13, "upstream 401 (wrong key)")
    msg = str((r.json or {}).get("message", ""))
    t.check("credential" in msg.lower(),
            "401 message says the gateway's credentials were refused",
            msg)
    t.check(wrong not in r.raw_text() and h.api_key not in r.raw_text(),
            "401 answer does not contain the key", "key found in answer")
    t.eq(sb.calls(), 1, "upstream 401: 1 call (not retried)")
    t.check(wrong not in gw_bad.output_text(),
            "wrong key not in that gateway's output", "key found in log")
    H.check_json_log(t, gw_bad)


@H.scenario
def upstream_down(h):
    """upstream down"""
    t, sb = h.t, h.sandbox()
    dead_port = H.free_port()
    gw_down = H.Gateway(h, base_url="http://127.0.0.1:%d" % dead_port,
                        overrides={"upstream": {"request_timeout_ms": 3000}})
    for body in ({"uri": sb.sample("down.png")},
                 {"uri": sb.sample("down.png"), "id": "down-id"}):
        t0 = time.monotonic()
        r = gw_down.create(body)
        el = time.monotonic() - t0
        H.check_error(t, r, 502, 14, "nothing listening upstream (%s)"
                      % ("id" if "id" in body else "no id"))
        t.check(el < 6.0, "answered within the deadline",
                "took %.2f s" % el)
        t.diag("upstream down answered in %.2f s" % el)
    H.check_json_log(t, gw_down)


@H.scenario
def sandbox_stopped(h):
    """the sandbox stopped under a gateway that had a keep-alive
    connection to it"""
    t = h.t
    sb2 = H.Sandbox(h)
    gw2 = H.Gateway(h, sb2)
    r = gw2.create({"uri": sb2.sample("before-stop.png")})
    t.eq(r.status, 200, "create before the sandbox stops -> 200")
    src = h.source_server()
    sb2.stop()
    t0 = time.monotonic()
    r = gw2.create({"uri": src.sample("after-stop.png")})
    el = time.monotonic() - t0
    H.check_error(t, r, 502, 14, "sandbox stopped")
    t.check(el < 6.0, "answered within the deadline", "took %.2f s" % el)
    r = gw2.create({"uri": sb2.sample("before-stop.png")})
    t.check(r.status == 200 and r.header("x-cache") == "HIT",
            "cached answer still served while upstream is down", r.short())
    t.eq(gw2.get("/healthz").status, 200, "healthz 200 while upstream down")
    H.check_json_log(t, gw2)


if __name__ == "__main__":
    H.run()
