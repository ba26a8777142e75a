"""Single flight (SPEC section 3): N identical concurrent creates cause
exactly one upstream call and all N get its answer. Each scenario has
its own gateway over the reset shared sandbox (-k NAME runs one)."""

import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def responses(res):
    ok = [r for r in res if isinstance(r, H.Resp)]
    bad = [r for r in res if not isinstance(r, H.Resp)]
    return ok, bad


def start(h):
    """The scenario's reset sandbox and its own gateway over it."""
    sb = h.sandbox()
    gw = H.Gateway(h, sb, overrides={"upstream": {"request_timeout_ms":
                                                  5000}})
    return h.t, sb, gw


@H.scenario
def identical_200(h):
    t, sb, gw = start(h)
    sb.faults(latency_ms=500)
    u = sb.sample("sf-200.png")
    t0 = time.monotonic()
    res = H.concurrent([lambda: gw.create({"uri": u}) for _ in range(200)],
                       timeout=60)
    el = time.monotonic() - t0
    ok, bad = responses(res)
    statuses = collections.Counter(r.status for r in ok)
    t.check(not bad and statuses == {200: 200},
            "200 concurrent identical creates -> 200 x 200",
            "statuses %r, exceptions %r, first odd: %s" % (
                dict(statuses), bad[:3],
                next((r.short() for r in ok if r.status != 200), "")))
    t.eq(sb.calls(), 1, "200 concurrent identical creates: exactly 1 call")
    t.eq(len({r.body for r in ok}), 1, "all 200 bodies identical")
    xc = collections.Counter(r.header("x-cache") for r in ok)
    t.check(xc.get("MISS") == 1 and xc.get("HIT") == len(ok) - 1,
            "one MISS, the other 199 HIT", repr(dict(xc)))
    rids = [r.header("x-request-id") for r in ok]
    t.check(all(rids) and len(set(rids)) == len(rids),
            "each coalesced answer has its own X-Request-Id",
            "%d ids, %d distinct" % (len(rids), len(set(rids))))
    t.check(all(H.create_headers_ok(r) == "" for r in ok),
            "coalesced answers carry RateLimit-* headers",
            next((H.create_headers_ok(r) for r in ok
                  if H.create_headers_ok(r)), ""))
    t.diag("200 identical answered in %.2f s" % el)
    H.check_json_log(t, gw)


@H.scenario
def keys_20_copies_10(h):
    t, sb, gw = start(h)
    sb.faults(latency_ms=300)
    keys = [sb.sample("sf-key-%02d.png" % i) for i in range(20)]
    calls = []
    for k in keys:
        for _ in range(10):
            calls.append((k, lambda k=k: gw.create({"uri": k})))
    res = H.concurrent([c for _, c in calls], timeout=60)
    ok, bad = responses(res)
    t.check(not bad and all(r.status == 200 for r in ok),
            "20 keys x 10 copies -> 200 x 200",
            "exceptions %r, statuses %r" % (
                bad[:3], collections.Counter(r.status for r in ok)))
    t.eq(sb.calls(), 20, "20 keys x 10 copies: exactly 20 calls")
    by_key = collections.defaultdict(set)
    for (k, _), r in zip(calls, res):
        if isinstance(r, H.Resp):
            by_key[k].add(r.body)
    t.check(all(len(v) == 1 for v in by_key.values()) and len(by_key) == 20,
            "one body per key", repr({k: len(v) for k, v in by_key.items()}))
    ids = {(((H.json.loads(next(iter(v)))).get("asset") or {}).get("id"))
           for v in by_key.values() if v}
    t.eq(len(ids), 20, "20 distinct assets")
    xc = collections.Counter(r.header("x-cache") for r in ok)
    t.eq(xc.get("MISS"), 20, "exactly 20 MISS")
    st = sb.stats()
    srcs = st.get("by_source") or {}
    t.check(len(srcs) == 20 and all(v == 1 for v in srcs.values()),
            "sandbox by_source: each source created once",
            repr(srcs)[:800])
    H.check_json_log(t, gw)


@H.scenario
def error_shared_not_stored(h):
    """an upstream error is shared, not stored"""
    t, sb, gw = start(h)
    sb.faults(latency_ms=400)
    um = sb.missing("sf-missing.png")
    res = H.concurrent([lambda: gw.create({"uri": um}) for _ in range(10)],
                       timeout=30)
    ok, bad = responses(res)
    t.check(not bad and all(r.status == 400 for r in ok),
            "10 concurrent creates of a missing source -> 10 x 400",
            repr([r.status if isinstance(r, H.Resp) else r for r in res]))
    t.eq(sb.calls(), 1, "waiters got the holder's 400: 1 call")
    r = gw.create({"uri": um})
    t.eq(sb.calls(), 2, "the 400 was not stored: a later create calls again")
    H.check_json_log(t, gw)


@H.scenario
def slow_holder_times_out(h):
    """a slow holder that times out: waiters get its answer"""
    t, sb = h.t, h.sandbox()
    gw_fast = H.Gateway(h, sb, overrides={"upstream": {
        "request_timeout_ms": 800}})
    sb.faults(latency_ms=2000)
    us = sb.sample("sf-slow.png")
    t0 = time.monotonic()
    res = H.concurrent([lambda: gw_fast.create({"uri": us})
                        for _ in range(10)], timeout=30)
    el = time.monotonic() - t0
    ok, bad = responses(res)
    t.check(not bad and all(r.status == 504 for r in ok),
            "10 coalesced creates on a timing-out upstream -> 10 x 504",
            repr([r.status if isinstance(r, H.Resp) else r for r in res]))
    t.eq(sb.calls(), 1, "timing-out holder: 1 call")
    t.check(el < 5.0, "all answered promptly", "took %.2f s" % el)
    H.check_json_log(t, gw_fast)


if __name__ == "__main__":
    H.run()
