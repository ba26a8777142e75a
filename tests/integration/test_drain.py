"""SIGTERM/SIGINT drain of the real gateway (issue #6, SPEC §6 and §8):
a slow call in flight is answered 200 and the process exits 0; while
draining /readyz says 503 draining (or the listener is closed) and new
creates on open connections get 503 code 14; at drain_timeout_ms the
calls still pending get 503 code 14, never silence; coalesced waiters
and calls queued on the rate limiter get their answers too."""

import http.client
import json
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

EXIT_WAIT_S = 8.0


class KeepAlive:
    """One HTTP/1.1 connection kept open across requests."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method, path, body=None):
        hdrs = {}
        if body is not None:
            body = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=body, headers=hdrs)
            r = self.conn.getresponse()
            data = r.read()
            return H.Resp(r.status, H._headers_dict(r.getheaders()), data)
        except (OSError, http.client.HTTPException) as e:
            return H.Resp(None, {}, b"", error="%s: %s" % (
                type(e).__name__, e))

    def close(self):
        self.conn.close()


def start_calls(fns):
    """Runs each zero-argument callable in its own thread; returns
    (threads, results list filled in place, completion times)."""
    results = [None] * len(fns)
    done_at = [None] * len(fns)

    def run(i):
        try:
            results[i] = fns[i]()
        except Exception as e:  # reported by the caller
            results[i] = e
        done_at[i] = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,), daemon=True)
               for i in range(len(fns))]
    for th in threads:
        th.start()
    return threads, results, done_at


def join_all(threads, timeout):
    deadline = time.monotonic() + timeout
    for th in threads:
        th.join(max(0.0, deadline - time.monotonic()))


def short(r):
    return r.short() if isinstance(r, H.Resp) else repr(r)


def wait_exit(gw, timeout=EXIT_WAIT_S):
    """(exit status or None, seconds waited)."""
    t0 = time.monotonic()
    rc = gw.proc.wait(timeout)
    return rc, time.monotonic() - t0


@H.scenario
def slow_call_drains(h):
    """SIGTERM with a 1.5 s call in flight: 200, then exit 0."""
    t = h.t
    sb = H.Sandbox(h)
    gw = H.Gateway(h, sb)
    ka = KeepAlive(gw.port)
    ka2 = KeepAlive(gw.port)
    ka3 = KeepAlive(gw.port)
    t.eq(ka.request("GET", "/readyz").status, 200,
         "before SIGTERM: /readyz 200 on a kept-alive connection")
    t.eq(ka2.request("GET", "/healthz").status, 200,
         "before SIGTERM: a second kept-alive connection open")
    t.eq(ka3.request("GET", "/healthz").status, 200,
         "before SIGTERM: a third kept-alive connection open")
    sb.faults(latency_ms=1500)
    t0 = time.monotonic()
    threads, res, done_at = start_calls([lambda: gw.create(
        {"uri": sb.sample("drain-slow.png")},
        headers={"X-Request-Id": "drain-slow"})])
    arrived = H.wait_until(lambda: sb.calls() >= 1, 2.0)
    t.check(arrived, "slow call reached the sandbox before SIGTERM", "")
    t_term = time.monotonic()
    gw.proc.signal(signal.SIGTERM)
    time.sleep(0.15)
    gw.proc.signal(signal.SIGTERM)  # a second one changes nothing

    fresh = H.request(gw.port, "GET", "/readyz", timeout=2)
    t.check(fresh.status is None or (fresh.status == 503 and
                                     (fresh.json or {}).get("reason") ==
                                     "draining"),
            "while draining: /readyz on a new connection refused or 503 "
            "draining", fresh.short())
    t.diag("new connection while draining: %s" % (
        "refused (%s)" % fresh.error if fresh.status is None
        else fresh.status))
    r = ka.request("GET", "/readyz")
    t.check(r.status == 503 and r.json == {"status": "unavailable",
                                           "reason": "draining"},
            "while draining: /readyz on an open connection -> 503 "
            '{"status":"unavailable","reason":"draining"}', r.short())
    r = ka2.request("POST", H.create_path(),
                    {"uri": sb.sample("drain-new.png")})
    H.check_error(t, r, 503, 14, "while draining: a new create on an open "
                  "connection")
    t.check("shutting down" in str((r.json or {}).get("message", "")),
            "the 503 says the gateway is shutting down", r.short())
    H.check_create_headers(t, r, "drain 503")
    # Answers while draining say Connection: close (callers should go
    # elsewhere), so each open connection serves one more request.
    t.eq((r.headers.get("connection") or "").lower(), "close",
         "a create answered while draining says Connection: close")
    t.eq(ka3.request("GET", "/healthz").status, 200,
         "while draining: /healthz still 200 (the process serves)")
    t.check(gw.proc.alive(), "still running while the slow call is in "
            "flight", "")

    join_all(threads, 10)
    slow = res[0]
    t.check(isinstance(slow, H.Resp) and slow.status == 200
            and slow.header("x-cache") == "MISS",
            "the call in flight at SIGTERM -> 200 MISS", short(slow))
    rc, _ = wait_exit(gw)
    t_exit = time.monotonic()
    t.eq(rc, 0, "exit status 0 after draining")
    if done_at[0] is not None and rc is not None:
        t.check(t_exit - done_at[0] < 1.0,
                "exited within 1 s of the last answer (%.2f s)"
                % (t_exit - done_at[0]), "")
        t.diag("SIGTERM at +%.2f s, slow answer at +%.2f s, exit at "
               "+%.2f s" % (t_term - t0, done_at[0] - t0, t_exit - t0))
    ka.close()
    ka2.close()
    msgs = [j.get("msg", "") for j in H.log_records(gw)]
    t.check(any("draining" in m for m in msgs) and
            any("drained" in m for m in msgs),
            "the log says draining, then drained", "\n".join(msgs[-5:]))
    H.check_json_log(t, gw)
    sb.stop()


@H.scenario
def drain_timeout(h):
    """drain_timeout_ms 500, upstream 3000 ms: 503 code 14 at ~0.5 s."""
    t = h.t
    sb = H.Sandbox(h)
    gw = H.Gateway(h, sb, overrides={
        "server": {"drain_timeout_ms": 500},
        "upstream": {"request_timeout_ms": 6000}})
    sb.faults(latency_ms=3000)
    threads, res, done_at = start_calls([lambda: gw.create(
        {"uri": sb.sample("drain-timeout.png")})])
    arrived = H.wait_until(lambda: sb.calls() >= 1, 2.0)
    t.check(arrived, "drain timeout: the call reached the sandbox", "")
    t_term = time.monotonic()
    gw.proc.signal(signal.SIGTERM)
    rc, _ = wait_exit(gw, 5)
    t_exit = time.monotonic()
    join_all(threads, 5)
    r = res[0]
    H.check_error(t, r if isinstance(r, H.Resp) else H.Resp(None, {}, b""),
                  503, 14, "drain timeout: the call still pending at "
                  "drain_timeout_ms")
    t.check(isinstance(r, H.Resp) and "shutting down" in
            str((r.json or {}).get("message", "")),
            "drain timeout: the message says shutting down", short(r))
    if isinstance(r, H.Resp):
        H.check_create_headers(t, r, "drain timeout 503")
    if done_at[0] is not None:
        ans = done_at[0] - t_term
        t.check(0.4 <= ans <= 1.0, "drain timeout: answered ~0.5 s after "
                "SIGTERM (%.2f s)" % ans, "")
    t.eq(rc, 0, "drain timeout: exit status 0")
    t.check(t_exit - t_term <= 1.2, "drain timeout: exited within ~1 s of "
            "SIGTERM (%.2f s)" % (t_exit - t_term), "")
    t.diag("drain_timeout_ms 500: answer +%s s, exit +%.2f s after SIGTERM"
           % ("%.2f" % (done_at[0] - t_term) if done_at[0] else "?",
              t_exit - t_term))
    warns = [j.get("msg", "") for j in H.log_records(gw)
             if j.get("level") == "warn" and "drain" in j.get("msg", "")]
    t.check(warns, "drain timeout: a warn line says calls were cut off",
            "")
    H.check_json_log(t, gw)
    sb.stop()


def waiters_and_queue(h, drain_ms, sig, want_status):
    """A leader, a coalesced waiter and a call queued on the limiter
    (rate 1) at SIGTERM/SIGINT: all answered WANT_STATUS."""
    t = h.t
    what = "drain_timeout_ms %d, %s" % (drain_ms, signal.Signals(sig).name)
    sb = H.Sandbox(h)
    gw = H.Gateway(h, sb, overrides={
        "server": {"drain_timeout_ms": drain_ms},
        "ratelimit": {"rate": 1, "max_wait_ms": 5000}})
    sb.faults(latency_ms=1500)
    ua = sb.sample("drain-co.png")
    ub = sb.sample("drain-queued.png")
    threads, res, done_at = start_calls([
        lambda: gw.create({"uri": ua}, headers={"X-Request-Id": "leader"}),
        lambda: (time.sleep(0.1), gw.create(
            {"uri": ua}, headers={"X-Request-Id": "waiter"}))[1],
        lambda: (time.sleep(0.1), gw.create(
            {"uri": ub}, headers={"X-Request-Id": "queued"}))[1]])
    ready = H.wait_until(lambda: H.metric(gw, "singleflight_waiters") == 1
                         and H.metric(gw, "ratelimit_queue_depth") == 1, 2.0)
    t.check(ready, "%s: one coalesced waiter and one queued call before "
            "the signal" % what, "")
    t_sig = time.monotonic()
    gw.proc.signal(sig)
    rc, _ = wait_exit(gw)
    t_exit = time.monotonic()
    join_all(threads, 5)
    names = ("leader", "coalesced waiter", "rate-limit-queued call")
    for name, r in zip(names, res):
        if want_status == 200:
            t.check(isinstance(r, H.Resp) and r.status == 200,
                    "%s: the %s -> 200" % (what, name), short(r))
        else:
            H.check_error(t, r if isinstance(r, H.Resp)
                          else H.Resp(None, {}, b""), 503, 14,
                          "%s: the %s" % (what, name))
    t.eq(rc, 0, "%s: exit status 0" % what)
    t.diag("%s: answers at %s s, exit at +%.2f s after the signal" % (
        what, ["%.2f" % (d - t_sig) if d else "?" for d in done_at],
        t_exit - t_sig))
    H.check_json_log(t, gw)
    sb.stop()


@H.scenario
def idle_signals(h):
    t = h.t
    sb = H.Sandbox(h)
    for sig in (signal.SIGTERM, signal.SIGINT):
        gw = H.Gateway(h, sb)
        t0 = time.monotonic()
        gw.proc.signal(sig)
        rc, _ = wait_exit(gw, 5)
        el = time.monotonic() - t0
        t.eq(rc, 0, "idle gateway: %s -> exit 0" % signal.Signals(sig).name)
        t.check(el < 1.0, "idle gateway: %s exits at once (%.2f s)"
                % (signal.Signals(sig).name, el), "")
        try:
            with socket.create_connection(("127.0.0.1", gw.port),
                                          timeout=1):
                gone = False
        except OSError:
            gone = True
        t.check(gone, "after exit nothing listens on its port", "")
    sb.stop()


@H.scenario
def waiters_and_queue_sigterm(h):
    waiters_and_queue(h, 10000, signal.SIGTERM, 200)


@H.scenario
def waiters_and_queue_drain_timeout(h):
    waiters_and_queue(h, 300, signal.SIGINT, 503)


if __name__ == "__main__":
    H.run()
