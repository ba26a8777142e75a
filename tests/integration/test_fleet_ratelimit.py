"""The fleet-wide rate limit (issue #4, SPEC section 4): several gateway
instances sharing one redis-server hold the sandbox to rate (+ burst)
calls in any 1 s window, queue rather than fail, answer 429 past
max_wait_ms without calling upstream, pause together on an upstream 429,
and fall back to a local limit of rate / live instances while Redis is
down, returning to the shared one when it is back.

Every scenario has its own redis-server and key_prefix, so no state leaks
between them (-k NAME runs one alone).
The sandbox runs with --rate 1000: its own limit never interferes.
"""

import collections
import os
import re
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

INSTANCES = 3
LONG_WAIT_MS = 20000


# -------------------------------------------------------------- helpers

def status_counts(res):
    return collections.Counter(r.status if isinstance(r, H.Resp)
                               else type(r).__name__ for r in res)


def fleet(h, sb, rd, prefix, rate, max_wait_ms, burst=0, n=INSTANCES,
          extra=None):
    ratelimit = {"rate": rate, "burst": burst, "max_wait_ms": max_wait_ms}
    ratelimit.update(extra or {})
    return [H.Gateway(h, sb, overrides={
        "store": {"backend": "redis", "redis_url": rd.url(),
                  "key_prefix": prefix},
        "ratelimit": ratelimit}) for _ in range(n)]


def stop_all(gws):
    for g in gws:
        g.stop()


def live_instances(rd, prefix):
    """Members of the heartbeat set whose expiry is still ahead."""
    now_s, now_us = rd.cmd("TIME")
    now_ms = int(now_s) * 1000 + int(now_us) // 1000
    members = rd.cmd("ZRANGE", prefix + "hb", 0, -1, "WITHSCORES") or []
    return sum(1 for i in range(1, len(members), 2)
               if int(float(members[i])) > now_ms)


def live_seen(gw):
    """The live instances GW last logged seeing in Redis, or None."""
    seen = re.findall(r"live instances sharing the limit: (\d+)",
                      gw.log_text())
    return int(seen[-1]) if seen else None


def utilization(ts, rate):
    """Calls per second over the busy span (first to last arrival)
    divided by RATE; n calls span n - 1 emission intervals."""
    if len(ts) < 2 or ts[-1] <= ts[0]:
        return 0.0
    return (len(ts) - 1) / (ts[-1] - ts[0]) / rate


def readyz_status(gw):
    r = gw.get("/readyz", timeout=3)
    return (r.json or {}).get("status") if r.status == 200 else None


def log_lines(gw, needle):
    return [ln for ln in gw.log_text().splitlines() if needle in ln]


# ------------------------------------------------------------ scenarios

def test_fleet_limit(h, sb, rd):
    """3 instances at rate 40: never more than 40 (+1) in any 1 s."""
    t = h.t
    rate, n = 40, 240
    sb.reset()
    gws = fleet(h, sb, rd, "fl1:", rate, LONG_WAIT_MS)
    H.wait_until(lambda: live_instances(rd, "fl1:") == INSTANCES, 5,
                 step=0.05)
    t.eq(live_instances(rd, "fl1:"), INSTANCES,
         "each instance keeps a heartbeat in the prefix's set")
    uris = [sb.sample("fleet-%03d.png" % i) for i in range(n)]
    t0 = time.monotonic()
    res = H.concurrent([lambda u=u, g=gws[i % INSTANCES]:
                        g.create({"uri": u}, timeout=60)
                        for i, u in enumerate(uris)], timeout=90)
    el = time.monotonic() - t0
    sc = status_counts(res)
    t.check(sc == {200: n}, "rate %d, %d instances: %d distinct creates "
            "as fast as possible -> all 200" % (rate, INSTANCES, n),
            repr(dict(sc)))
    ts = sb.arrivals()
    t.eq(len(ts), n, "the sandbox saw %d calls" % n)
    measured, members = H.worst_window(ts)
    util = utilization(ts, rate)
    t.diag("fleet rate %d: max arrivals in any 1 s window = %d, "
           "utilization %.3f, %d creates took %.2f s"
           % (rate, measured, util, n, el))
    t.check(measured <= rate + H.ARRIVAL_SLACK, "no 1 s window at the "
            "sandbox holds more than %d + %d calls (measured %d)"
            % (rate, H.ARRIVAL_SLACK, measured),
            "window, ms after its first arrival: %s" % [
                round((x - members[0]) * 1000, 1) for x in members])
    t.check(util >= 0.90, "utilization >= 90%% (%.1f%%)" % (util * 100),
            "%d calls over %.2f s" % (len(ts), ts[-1] - ts[0]))
    ok = [r for r in res if isinstance(r, H.Resp)]
    probs = [H.create_headers_ok(r) for r in ok if H.create_headers_ok(r)]
    t.check(not probs, "every answer carries RateLimit-* headers",
            probs[0] if probs else "")
    lims = {r.header("ratelimit-limit") for r in ok}
    t.eq(lims, {str(rate)}, "RateLimit-Limit is the fleet rate")
    tat = rd.cmd("GET", "fl1:rl")
    t.check(isinstance(tat, bytes) and re.fullmatch(rb"\d{13,}", tat),
            "the shared TAT sits in Redis under PREFIX rl, in whole "
            "microseconds", repr(tat))
    for g in gws:
        H.check_json_log(t, g)
    stop_all(gws)


def test_over_max_wait(h, sb, rd):
    """rate 5, max_wait 300 ms: the excess is refused and never sent."""
    t = h.t
    sb.reset()
    gws = fleet(h, sb, rd, "fl2:", 5, 300)
    uris = [sb.sample("fleet429-%02d.png" % i) for i in range(30)]
    res = H.concurrent([lambda u=u, g=gws[i % INSTANCES]: g.create({"uri": u})
                        for i, u in enumerate(uris)], timeout=30)
    sc = status_counts(res)
    t.diag("rate 5, max_wait_ms 300, 30 concurrent over %d instances: %r"
           % (INSTANCES, dict(sc)))
    t.check(set(sc) <= {200, 429} and sc.get(200, 0) >= 1
            and sc.get(429, 0) >= 1,
            "30 concurrent -> some 200, the rest 429", repr(dict(sc)))
    # One shared GCRA grants 1 + floor(300 ms / 202 ms) = 2 to a burst
    # (3 instances on their own would grant 2 each).
    t.check(sc.get(200, 0) <= 4, "at most about rate x max_wait granted "
            "fleet-wide", repr(dict(sc)))
    r429 = [r for r in res if isinstance(r, H.Resp) and r.status == 429]
    bad = [r for r in r429
           if not re.fullmatch(r"\d+", (r.header("retry-after") or "x"))
           or int(r.header("retry-after")) < 1
           or (r.json or {}).get("code") != 8
           or not str((r.json or {}).get("message", "")).startswith(
               "XASSET.RESOURCE_EXHAUSTED: ")]
    t.check(r429 and not bad, "every 429 has Retry-After >= 1 and code 8",
            bad[0].short() if bad else "")
    rem = [r.header("ratelimit-remaining") for r in r429]
    t.check(all(v is not None and 0 <= int(v) <= 5 for v in rem),
            "RateLimit-Remaining on 429s is within [0, rate]",
            repr(sorted(set(rem))))
    t.eq(sb.calls(), sc.get(200, 0),
         "none of the 429s reached the sandbox (calls == 200s)")
    stop_all(gws)


def test_fleet_pause(h, sb, rd):
    """An upstream 429 with Retry-After: 2 pauses every instance."""
    t = h.t
    rate, n = 40, 120
    sb.reset()
    gws = fleet(h, sb, rd, "fl3:", rate, LONG_WAIT_MS)
    uris = [sb.sample("pause-%03d.png" % i) for i in range(n)]
    out = {}

    def drive():
        # One burst of 3 s worth of calls, all granted at once: when the
        # 429 comes, every instance has calls waiting for their slots and
        # no new acquire that would bring the pause news; only reading
        # the pause key stops them.
        out["res"] = H.concurrent([
            lambda i=i, u=u: gws[i % INSTANCES].create({"uri": u},
                                                       timeout=60)
            for i, u in enumerate(uris)], timeout=90)

    th = threading.Thread(target=drive, daemon=True)
    th.start()
    time.sleep(1.0)
    sb.faults(status=429, retry_after=2, status_count=1)
    th.join(100)
    res = out.get("res", [])
    sc = status_counts(res)
    calls = sb.call_list()
    hit = [c["t"] for c in calls if c["status"] == 429]
    t.eq(len(hit), 1, "the sandbox answered exactly one 429")
    if not hit:
        stop_all(gws)
        return
    t429 = hit[0]
    # The pause is 2 s from when the gateway read the 429; leave 50 ms
    # for the two clocks' offsets.
    during = [c["t"] for c in calls if t429 < c["t"] < t429 + 1.95]
    after = [c["t"] for c in calls if c["t"] >= t429 + 1.95]
    t.diag("upstream 429 at +%.2f s; calls during the 2 s pause: %d "
           "(at +%s ms); after it: %d" % (
               t429 - calls[0]["t"], len(during),
               [round((x - t429) * 1000) for x in during], len(after)))
    t.check(len(during) <= 5, "at most a handful of calls reach the "
            "sandbox during the pause (%d)" % len(during),
            "without a fleet pause ~%d would" % (rate * 2))
    t.check(sc == {200: n}, "every create succeeds, the 429-ed one retried "
            "after the pause", repr(dict(sc)))
    t.check(len(after) >= 1, "calls resume after the pause",
            "%d after" % len(after))
    ts = sorted(c["t"] for c in calls)
    t.check(H.max_in_window(ts) <= rate + H.ARRIVAL_SLACK, "the limit holds "
            "around the pause too (%d)" % H.max_in_window(ts))
    paused = [g for g in gws if log_lines(g, "Connectly answered 429")]
    t.eq(len(paused), 1, "one instance saw the 429 (the others were "
         "paused through Redis)")
    stop_all(gws)


def test_fallback(h, sb, rd):
    """Redis down: each instance is held to rate / live instances."""
    t = h.t
    rate, fb = 30, 10
    sb.reset()
    gws = fleet(h, sb, rd, "fl4:", rate, LONG_WAIT_MS)
    g = gws[0]
    t.check(H.wait_until(lambda: live_seen(g) == INSTANCES, 5,
                         step=0.05),
            "instance 0 saw %d live instances through the heartbeats"
            % INSTANCES, "\n".join(log_lines(g, "live instances")))
    t.eq(readyz_status(g), "ready", "/readyz ready while Redis is up")
    rd.stop()
    t.check(H.wait_until(lambda: readyz_status(g) == "degraded", 5,
                         step=0.05),
            "Redis stopped -> /readyz degraded", repr(readyz_status(g)))
    n = 60
    uris = [sb.sample("fallback-%02d.png" % i) for i in range(n)]
    res = H.concurrent([lambda u=u: g.create({"uri": u}, timeout=60)
                        for u in uris], timeout=90)
    sc = status_counts(res)
    t.check(sc == {200: n}, "on the fallback: %d creates with a long max "
            "wait -> all 200 (not failing closed)" % n, repr(dict(sc)))
    ts = sb.arrivals()
    measured = H.max_in_window(ts)
    util = utilization(ts, fb)
    t.diag("fallback at %d/s: max arrivals in any 1 s window = %d, "
           "%.2f calls/s" % (fb, measured, util * fb))
    t.check(measured <= fb + 1, "the instance stays at rate %d / %d "
            "instances = %d (+1) in any 1 s window (measured %d)"
            % (rate, INSTANCES, fb, measured))
    t.check(util >= 0.85, "and uses it (%.1f calls/s)" % (util * fb))
    lims = {r.header("ratelimit-limit") for r in res
            if isinstance(r, H.Resp)}
    t.eq(lims, {str(fb)}, "RateLimit-Limit shows the fallback rate")
    t.check(log_lines(g, "limiting this instance locally at 10/s"),
            "the switch to the fallback is logged (once)",
            g.log_text()[-1500:])
    t.eq(len(log_lines(g, "limiting this instance locally")), 1,
         "... exactly once")

    # --- Redis back: the shared limiter again ----------------------------
    rd.start()
    t.check(H.wait_until(lambda: readyz_status(g) == "ready", 8,
                         step=0.05),
            "Redis back -> /readyz ready", repr(readyz_status(g)))
    # Until every instance is back on the shared limit (not merely
    # heartbeating: still on its fallback counts as away), each one back
    # takes only what the others' fallbacks leave of the rate.
    t.check(H.wait_until(lambda: log_lines(g, "takes the whole fleet "
                                              "rate again"), 6, step=0.05),
            "instance 0 counts every instance back on the shared limit",
            g.log_text()[-1500:])
    sb.reset()
    n = 60
    uris = [sb.sample("back-%02d.png" % i) for i in range(n)]
    res = H.concurrent([lambda u=u: g.create({"uri": u}, timeout=60)
                        for u in uris], timeout=90)
    sc = status_counts(res)
    t.check(sc == {200: n}, "after Redis is back: %d creates -> all 200"
            % n, repr(dict(sc)))
    ts = sb.arrivals()
    measured = H.max_in_window(ts)
    util = utilization(ts, rate)
    t.diag("shared again at %d/s from one instance: max in 1 s = %d, "
           "%.2f calls/s" % (rate, measured, util * rate))
    t.check(measured <= rate + H.ARRIVAL_SLACK and util >= 0.85,
            "one instance gets the whole fleet rate %d again (measured %d "
            "in 1 s, %.1f/s)" % (rate, measured, util * rate))
    t.check(log_lines(g, "Redis answers again"),
            "the switch back is logged", g.log_text()[-1500:])
    t.check(isinstance(rd.cmd("GET", "fl4:rl"), bytes),
            "the restarted Redis holds the shared TAT again (scripts "
            "reloaded after NOSCRIPT)")
    for gw in gws:
        H.check_json_log(t, gw)
    stop_all(gws)


def scenario(test):
    """TEST(h, sb, rd) as a scenario: the file's sandbox (--rate 1000)
    reset, a redis-server of its own."""
    def run(h):
        sb = h.shared("sandbox-1000", lambda h: H.Sandbox(h, rate=1000))
        sb.reset()
        test(h, sb, H.Redis(h))
    run.__name__ = test.__name__[len("test_"):]
    return H.scenario(run)


fleet_limit = scenario(test_fleet_limit)
over_max_wait = scenario(test_over_max_wait)
fleet_pause = scenario(test_fleet_pause)
fallback = scenario(test_fallback)


if __name__ == "__main__":
    if shutil.which("redis-server") is None:
        print("1..0 # SKIP redis-server not installed")
        sys.exit(0)
    H.run()
