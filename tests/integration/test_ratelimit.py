"""The local rate limit (SPEC section 4): bursts are queued, never more
than rate + burst upstream calls in any 1 s window as the sandbox counts
them; a wait past max_wait_ms is a 429 that never reaches upstream;
cache hits and coalesced waiters cost no budget. Each scenario has its
own gateway over the file's sandbox (--rate 1000, reset for each; -k NAME
runs one alone)."""

import collections
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def status_counts(res):
    return collections.Counter(r.status if isinstance(r, H.Resp)
                               else type(r).__name__ for r in res)


def sandbox(h):
    """The file's sandbox (its own limit far above ours), reset."""
    sb = h.shared("sandbox-1000", lambda h: H.Sandbox(h, rate=1000))
    sb.reset()
    return sb


def burst_case(h, rate, burst, n):
    t = h.t
    sb = sandbox(h)
    gw = H.Gateway(h, sb, overrides={"ratelimit": {
        "rate": rate, "burst": burst, "max_wait_ms": 20000}})
    uris = [sb.sample("rl-%d-%d-%03d.png" % (rate, burst, i))
            for i in range(n)]
    t0 = time.monotonic()
    res = H.concurrent([lambda u=u: gw.create({"uri": u}, timeout=60)
                        for u in uris], timeout=90)
    el = time.monotonic() - t0
    sc = status_counts(res)
    t.check(sc == {200: n}, "rate %d burst %d: %d concurrent distinct "
            "creates -> all 200" % (rate, burst, n), repr(dict(sc)))
    calls = sb.call_list()
    t.eq(len(calls), n, "rate %d burst %d: sandbox saw %d calls"
         % (rate, burst, n))
    measured = H.max_in_window([c["t"] for c in calls])
    st = sb.stats()
    t.diag("rate %d burst %d: max arrivals in any 1 s window = %d "
           "(sandbox max_in_1s = %r), %d creates took %.2f s"
           % (rate, burst, measured, st.get("max_in_1s"), n, el))
    ts = sorted(c["t"] for c in calls)
    _, members = H.worst_window(ts)
    bound = rate + burst + H.SANITIZER_SLACK
    t.check(measured <= bound,
            "rate %d burst %d: at most %d upstream calls in any 1 s window"
            % (rate, burst, bound),
            "measured %d; arrivals in that window, ms after the first "
            "arrival of the burst: %s" % (measured, [
                round((x - ts[0]) * 1000, 1) for x in members]))
    # queued, not failed: the whole burst took about (n - burst) / rate
    expect = (n - burst - 1) / float(rate)
    t.check(el >= expect * 0.85, "rate %d burst %d: the burst was spread "
            "over >= %.2f s" % (rate, burst, expect * 0.85),
            "took %.2f s" % el)
    t.check(el <= expect + 3.0, "rate %d burst %d: and not much longer "
            "(<= %.2f s)" % (rate, burst, expect + 3.0), "took %.2f s" % el)
    lim = [r.header("ratelimit-limit") for r in res
           if isinstance(r, H.Resp)]
    t.diag("RateLimit-Limit values seen: %r" % sorted(set(lim)))
    H.check_json_log(t, gw)
    gw.stop()
    return measured


def rate5_gateway(h):
    """Rate 5, no burst, max_wait_ms 300, over the reset sandbox."""
    sb = sandbox(h)
    return h.t, sb, H.Gateway(h, sb, overrides={"ratelimit": {
        "rate": 5, "burst": 0, "max_wait_ms": 300}})


@H.scenario
def burst_0(h):
    burst_case(h, 20, 0, 80)


@H.scenario
def burst_5(h):
    burst_case(h, 20, 5, 80)


@H.scenario
def over_max_wait_429(h):
    """over max_wait_ms: 429 that never reaches upstream"""
    t, sb, gw = rate5_gateway(h)
    uris = [sb.sample("rl429-%02d.png" % i) for i in range(30)]
    res = H.concurrent([lambda u=u: gw.create({"uri": u}) for u in uris],
                       timeout=30)
    sc = status_counts(res)
    t.diag("rate 5 max_wait 300, 30 concurrent: %r" % dict(sc))
    t.check(set(sc) <= {200, 429} and sc.get(429, 0) > 0
            and sc.get(200, 0) > 0,
            "rate 5, max_wait_ms 300, 30 concurrent -> some 200, the rest "
            "429", repr(dict(sc)))
    t.check(sc.get(200, 0) <= 5, "at most ~rate + max_wait worth granted",
            repr(dict(sc)))
    r429 = [r for r in res if isinstance(r, H.Resp) and r.status == 429]
    bad = [r for r in r429
           if not re.fullmatch(r"\d+", (r.header("retry-after") or "x"))
           or int(r.header("retry-after")) < 1
           or (r.json or {}).get("code") != 8
           or not str((r.json or {}).get("message", "")).startswith(
               "XASSET.RESOURCE_EXHAUSTED: ")]
    t.check(r429 and not bad, "every 429 has Retry-After >= 1 and code 8 "
            "RESOURCE_EXHAUSTED", bad[0].short() if bad else "")
    t.check(all(H.create_headers_ok(r) == "" for r in r429),
            "429 answers carry X-Request-Id and RateLimit-*",
            next((H.create_headers_ok(r) for r in r429
                  if H.create_headers_ok(r)), ""))
    if r429:
        rem = [r.header("ratelimit-remaining") for r in r429]
        # gcra.h defines Remaining as the calls that could start within
        # the next second (waiting), so it need not be 0 on a 429 whose
        # max_wait_ms is shorter; it can never exceed the limit.
        t.check(all(0 <= int(v) <= 5 for v in rem),
                "RateLimit-Remaining on 429s is within [0, rate]",
                repr(sorted(set(rem))))
        t.diag("RateLimit-Remaining on 429s: %r" % sorted(set(rem)))
    t.eq(sb.calls(), sc.get(200, 0),
         "the sandbox saw exactly as many calls as there were 200s")
    H.check_json_log(t, gw)


@H.scenario
def hits_cost_no_budget(h):
    t, sb, gw = rate5_gateway(h)
    warm = sb.sample("rl-warm.png")
    r = gw.create({"uri": warm})
    t.eq(r.status, 200, "warm one key at rate 5")
    t0 = time.monotonic()
    hits = [gw.create({"uri": warm}) for _ in range(50)]
    el = time.monotonic() - t0
    t.check(all(x.status == 200 and x.header("x-cache") == "HIT"
                for x in hits),
            "50 repeated hits at rate 5 -> all 200 HIT",
            repr(status_counts(hits)))
    t.check(el < 3.0, "50 hits answered quickly (no budget used)",
            "took %.2f s" % el)
    t.diag("50 sequential hits took %.2f s" % el)
    res = H.concurrent([lambda: gw.create({"uri": warm})
                        for _ in range(50)], timeout=20)
    t.eq(status_counts(res), {200: 50}, "50 concurrent hits -> all 200")
    t.eq(sb.calls(), 1, "hits made no sandbox call")
    H.check_json_log(t, gw)


@H.scenario
def coalesced_cost_no_budget(h):
    t, sb, gw = rate5_gateway(h)
    sb.faults(latency_ms=400)
    uc = sb.sample("rl-coalesced.png")
    res = H.concurrent([lambda: gw.create({"uri": uc}) for _ in range(30)],
                       timeout=20)
    t.eq(status_counts(res), {200: 30},
         "30 coalesced identical creates at rate 5, max_wait 300 -> all 200")
    t.eq(sb.calls(), 1, "coalesced waiters: 1 call")
    H.check_json_log(t, gw)


if __name__ == "__main__":
    H.run()
