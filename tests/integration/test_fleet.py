"""Fleet (issue #3, SPEC section 3): three asset-gateway processes sharing
one real redis-server behave as one gateway for dedupe and single flight:
concurrent identical creates across instances cause one upstream call, an
answer stored through one instance is a HIT on the others, no-cache
replaces it fleet-wide, an upstream error reaches every waiter, a waiter
takes over from a killed holder, a Redis outage degrades to in-process
dedupe and recovers by itself, and a create reaching another instance just
as a flight ends does not call upstream a second time.

Measured counts and timings are printed as TAP diagnostics. Each scenario
has its own redis-server, sandbox and gateways (-k NAME runs one alone).
"""

import collections
import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

# One upstream attempt; the claim lives request + connect + 1000 ms.
REQUEST_TIMEOUT_MS = 2000
CONNECT_TIMEOUT_MS = 500
CLAIM_TTL_MS = REQUEST_TIMEOUT_MS + CONNECT_TIMEOUT_MS + 1000
CACHE_TTL_S = 3600
READY_WAIT_S = 8.0
# Longest an instance may answer a body replaced elsewhere (no-cache) from
# its in-process L1: l1_ttl_ms's default (issue #7), plus slack for a
# loaded machine.
L1_BOUND_S = 1.0
STALE_SLACK_S = 0.5


# -------------------------------------------------------------- helpers

def fleet_gateway(h, sb, redis, prefix, store=None):
    overrides = {
        "store": {"backend": "redis", "redis_url": redis.url(),
                  "key_prefix": prefix, "cache_ttl_s": CACHE_TTL_S},
        "upstream": {"request_timeout_ms": REQUEST_TIMEOUT_MS,
                     "connect_timeout_ms": CONNECT_TIMEOUT_MS,
                     "max_retries": 0},
    }
    overrides["store"].update(store or {})
    return H.Gateway(h, sb, overrides=overrides)


def split(res):
    ok = [r for r in res if isinstance(r, H.Resp)]
    bad = [r for r in res if not isinstance(r, H.Resp)]
    return ok, bad


def statuses(res):
    return dict(collections.Counter(
        r.status if isinstance(r, H.Resp) else type(r).__name__
        for r in res))


def cache_counts(ok):
    return dict(collections.Counter(r.header("x-cache") for r in ok))


def asset_id(r):
    a = (r.json or {}).get("asset") if isinstance(r.json, dict) else None
    return a.get("id") if isinstance(a, dict) else None


def first_odd(ok, want=200):
    return next((r.short() for r in ok if r.status != want), "")


def readyz(gw):
    r = gw.get("/readyz", timeout=5)
    return r.status, (r.json or {}).get("status") \
        if isinstance(r.json, dict) else None


def in_background(fn):
    """Runs FN in a thread; returns a getter for its result (waits up to
    its TIMEOUT argument; TimeoutError in place when still running)."""
    box = {}

    def run():
        try:
            box["r"] = fn()
        except Exception as e:  # reported in place
            box["r"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()

    def get(timeout):
        th.join(timeout)
        return box.get("r", TimeoutError("still running"))
    return get


def call_times(sb):
    """Sandbox arrival times (its CLOCK_MONOTONIC, as time.monotonic())."""
    return [c["t"] for c in sb.call_list()]


# ---------------------------------------------------------------- tests

def test_setup(h, redis, gws, prefix):
    t = h.t
    for g in gws:
        st = H.wait_until(lambda g=g: readyz(g) == (200, "ready"),
                          READY_WAIT_S, step=0.05)
        t.check(st, "%s: /readyz 200 ready (store redis)"
                % g.name, repr(readyz(g)))
        t.check(g.get("/readyz").json == {"status": "ready",
                                          "store": "redis"},
                "%s: /readyz names store redis" % g.name,
                g.get("/readyz").short())
        t.eq(H.metric(g, "redis_up"), 1.0,
             "%s: asset_gateway_redis_up 1" % g.name)
        t.eq(H.metric(g, "degraded"), 0.0,
             "%s: asset_gateway_degraded 0" % g.name)


def test_300_identical(h, sb, gws, run_id):
    t = h.t
    sb.reset()
    sb.faults(latency_ms=500)
    u = sb.sample("fleet-300-%s.png" % run_id)
    n = 300
    targets = [gws[i % len(gws)] for i in range(n)]
    t0 = time.monotonic()
    res = H.concurrent([lambda g=g: g.create({"uri": u}) for g in targets],
                       timeout=60)
    el = time.monotonic() - t0
    ok, bad = split(res)
    t.check(not bad and len(ok) == n and all(r.status == 200 for r in ok),
            "%d concurrent identical creates over 3 instances -> %d x 200"
            % (n, n), "statuses %r; first odd: %s" % (statuses(res),
                                                      first_odd(ok)))
    st = sb.stats()
    t.diag("300 identical over 3 instances: sandbox calls=%r by_source=%r, "
           "answered in %.2f s" % (st["calls"], st.get("by_source"), el))
    t.eq(st["calls"], 1, "300 identical over 3 instances: exactly 1 "
         "upstream call")
    t.eq(st.get("by_source"), {u: 1}, "sandbox by_source: the source "
         "created once")
    t.eq(len({r.body for r in ok}), 1, "all 300 bodies identical")
    xc = cache_counts(ok)
    t.check(xc.get("MISS") == 1 and xc.get("HIT") == n - 1,
            "exactly one MISS fleet-wide, %d HIT" % (n - 1), repr(xc))
    per = collections.Counter(g.name for g, r in zip(targets, res)
                              if isinstance(r, H.Resp) and r.status == 200)
    t.check(all(per[g.name] == n // len(gws) for g in gws),
            "each instance answered its %d callers with 200"
            % (n // len(gws)), repr(dict(per)))
    miss_on = [g.name for g, r in zip(targets, res)
               if isinstance(r, H.Resp) and r.header("x-cache") == "MISS"]
    t.diag("the MISS (upstream call) was on %r" % miss_on)


def test_20_keys(h, sb, gws, run_id):
    t = h.t
    sb.reset()
    sb.faults(latency_ms=300)
    keys = [sb.sample("fleet-key-%s-%02d.png" % (run_id, i))
            for i in range(20)]
    plan = []
    for i, k in enumerate(keys):
        for c in range(15):
            plan.append((k, gws[(i + c) % len(gws)]))
    t0 = time.monotonic()
    res = H.concurrent([lambda k=k, g=g: g.create({"uri": k})
                        for k, g in plan], timeout=60)
    el = time.monotonic() - t0
    ok, bad = split(res)
    t.check(not bad and all(r.status == 200 for r in ok) and len(ok) == 300,
            "20 keys x 15 copies over 3 instances -> 300 x 200",
            "statuses %r; first odd: %s" % (statuses(res), first_odd(ok)))
    st = sb.stats()
    t.diag("20 keys x 15 copies: sandbox calls=%r, answered in %.2f s"
           % (st["calls"], el))
    t.eq(st["calls"], 20, "20 keys x 15 copies over 3 instances: exactly "
         "20 upstream calls")
    srcs = st.get("by_source") or {}
    t.check(sorted(srcs) == sorted(keys) and
            all(v == 1 for v in srcs.values()),
            "sandbox by_source: each of the 20 sources created once",
            repr(srcs)[:800])
    by_key = collections.defaultdict(set)
    for (k, _), r in zip(plan, res):
        if isinstance(r, H.Resp):
            by_key[k].add(r.body)
    t.check(len(by_key) == 20 and all(len(v) == 1 for v in by_key.values()),
            "one body per key across the instances",
            repr({k[-12:]: len(v) for k, v in by_key.items()}))
    ids = {asset_id(r) for r in ok}
    t.eq(len(ids), 20, "20 distinct assets")
    t.eq(cache_counts(ok).get("MISS"), 20, "exactly 20 MISS fleet-wide")


def test_cross_instance(h, sb, redis, gws, prefix, run_id):
    t = h.t
    a, b, c = gws
    sb.reset()
    u = sb.sample("fleet-cross-%s.png" % run_id)
    before = set(redis.keys(prefix + "a:*"))
    ra = a.create({"uri": u})
    t.check(ra.status == 200 and ra.header("x-cache") == "MISS",
            "create via A -> 200 MISS", ra.short())
    rb = b.create({"uri": u})
    t.check(rb.status == 200 and rb.header("x-cache") == "HIT",
            "same create via B -> 200 HIT", rb.short())
    t.check(rb.body == ra.body, "B's HIT body is A's answer",
            "A %r\nB %r" % (ra.body, rb.body))
    rc = c.create({"uri": u})
    t.check(rc.status == 200 and rc.header("x-cache") == "HIT" and
            rc.body == ra.body, "same create via C -> 200 HIT, same body",
            rc.short())
    t.eq(sb.calls(), 1, "A, B, C: one upstream call")

    # Stored by the script that releases the claim, which may reach Redis
    # just after the caller has its answer.
    answers = H.wait_until(lambda: sorted(
        set(redis.keys(prefix + "a:*")) - before), 2) or []
    t.eq(len(answers), 1, "Redis holds one new answer key under "
         "key_prefix + 'a:'")
    ttl = redis.cmd("TTL", answers[0]) if answers else None
    t.check(isinstance(ttl, int) and CACHE_TTL_S - 60 < ttl <= CACHE_TTL_S,
            "the answer key expires after cache_ttl_s (%d s)" % CACHE_TTL_S,
            "TTL %r" % ttl)
    t.eq(redis.keys(prefix + "lock:*"), [], "no claim left behind")
    return u, ra


def converge(gw, u, want, old, bound_s):
    """Plain creates of U via GW every 50 ms until one answers WANT, for at
    most BOUND_S. Returns (seconds until WANT, problems): every answer on
    the way must be a 200 HIT with WANT or OLD."""
    t0 = time.monotonic()
    problems = []
    while True:
        r = gw.create({"uri": u})
        if r.status != 200 or r.header("x-cache") != "HIT" or \
                r.body not in (want, old):
            problems.append(r.short())
        elif r.body == want:
            return time.monotonic() - t0, problems
        if time.monotonic() - t0 > bound_s:
            return None, problems
        time.sleep(0.05)


def test_no_cache(h, sb, gws, u, ra):
    """no-cache via B replaces the stored answer for the whole fleet. An
    instance may keep answering the previous body from its in-process L1
    (issue #7) for at most the documented bound (l1_ttl_ms, default
    1 s); without an L1 the new body shows at once."""
    t = h.t
    a, b, c = gws
    calls = sb.calls()
    rn = b.create({"uri": u}, headers={"Cache-Control": "no-cache"})
    t.check(rn.status == 200 and rn.header("x-cache") == "MISS",
            "Cache-Control: no-cache via B -> 200 MISS", rn.short())
    t.eq(sb.calls(), calls + 1, "no-cache via B made one fresh upstream call")
    t.check(asset_id(rn) is not None and asset_id(rn) != asset_id(ra),
            "no-cache answer is a new upstream answer (new asset id)",
            "before %r, after %r" % (asset_id(ra), asset_id(rn)))
    rb2 = b.create({"uri": u})
    t.check(rb2.status == 200 and rb2.header("x-cache") == "HIT" and
            rb2.body == rn.body,
            "plain create via B afterwards -> HIT with the new answer",
            rb2.short())
    bound = L1_BOUND_S + STALE_SLACK_S
    for g in (a, c):
        took, problems = converge(g, u, rn.body, ra.body, bound)
        t.diag("%s answered the refreshed body after %s" % (
            g.name, "never" if took is None else "%.0f ms" % (took * 1000)))
        t.check(took is not None and not problems,
                "plain create via %s afterwards -> HIT with B's new answer "
                "within %.1f s" % (g.name, bound),
                "took %r; odd answers: %s" % (took, problems[:3]))
    t.eq(sb.calls(), calls + 1, "no further upstream call")


def test_shared_error(h, sb, gws, run_id):
    """An upstream error is the holder's answer for every waiter in the
    fleet, and is not stored."""
    t = h.t
    sb.reset()
    sb.faults(latency_ms=500)
    um = sb.missing("fleet-err-%s.png" % run_id)
    res = H.concurrent([lambda g=gws[i % 3]: g.create({"uri": um})
                        for i in range(30)], timeout=30)
    ok, bad = split(res)
    t.check(not bad and len(ok) == 30 and all(r.status == 400 for r in ok),
            "30 concurrent creates of an unfetchable source over 3 "
            "instances -> 30 x 400", "statuses %r" % statuses(res))
    t.eq(sb.calls(), 1, "the holder's 400 went to every waiter: 1 call")
    t.eq(len({r.body for r in ok}), 1, "one error body for all 30")
    sb.faults(latency_ms=0)
    r = gws[2].create({"uri": um})
    t.check(r.status == 400 and sb.calls() == 2,
            "the 400 was not stored: a later create via C calls again",
            "calls %r; %s" % (sb.calls(), r.short()))


def test_redis_outage(h, sb, redis, gws, run_id):
    """Redis stopped (SIGTERM) while flights are under way, then restarted
    on the same port."""
    t = h.t
    a, b, c = gws

    # --- flights in progress when Redis goes ------------------------------
    sb.reset()
    sb.faults(latency_ms=1500)
    u1 = sb.sample("fleet-outage-inflight-%s.png" % run_id)
    get_a = in_background(lambda: a.create({"uri": u1}, timeout=20))
    ok_first = H.wait_until(lambda: sb.calls() >= 1, 3.0, step=0.05)
    t.check(ok_first, "A's upstream call is under way",
            repr(sb.stats()))
    gets = [in_background(lambda g=g: g.create({"uri": u1}, timeout=20))
            for g in (b, b, c, c)]
    time.sleep(0.3)
    t.eq(sb.calls(), 1, "B's and C's callers wait on A's flight (still 1 "
         "call)")
    t_stop = time.monotonic()
    rc_stop, killed = redis.stop()
    t.check(not killed, "redis-server stopped on SIGTERM (status %r)"
            % rc_stop)
    res = [get_a(20)] + [g(20) for g in gets]
    el = time.monotonic() - t_stop
    ok, bad = split(res)
    t.check(not bad and all(r.status == 200 for r in ok),
            "Redis stopped mid-flight: all 5 callers (A, 2xB, 2xC) -> 200",
            "statuses %r; first odd: %s" % (statuses(res), first_odd(ok)))
    n_calls = sb.calls()
    t.diag("Redis stopped mid-flight: %d upstream calls, all answered "
           "%.2f s after the stop" % (n_calls, el))
    t.check(1 <= n_calls <= 3, "at most one upstream call per instance "
            "(in-process dedupe still holds)", "calls %r" % n_calls)
    t.check(el < 10.0, "answered promptly after the stop",
            "took %.2f s" % el)

    # --- degraded -----------------------------------------------------------
    for g in gws:
        took = H.wait_until(lambda g=g: readyz(g) == (200, "degraded"),
                            5.0, step=0.05)
        t.check(took, "%s: /readyz 200 degraded while Redis "
                "is down" % g.name, repr(readyz(g)))
        t.eq(H.metric(g, "redis_up"), 0.0,
             "%s: asset_gateway_redis_up 0" % g.name)
        t.eq(H.metric(g, "degraded"), 1.0,
             "%s: asset_gateway_degraded 1" % g.name)

    sb.reset()
    u2 = sb.sample("fleet-outage-local-%s.png" % run_id)
    r1 = a.create({"uri": u2})
    t.check(r1.status == 200 and r1.header("x-cache") == "MISS",
            "during the outage: a new create via A -> 200 MISS", r1.short())
    r2 = a.create({"uri": u2})
    t.check(r2.status == 200 and r2.header("x-cache") == "HIT" and
            r2.body == r1.body,
            "during the outage: the same create via A again -> 200 HIT "
            "(in-process store)", r2.short())
    t.eq(sb.calls(), 1, "during the outage: the repeat made no call")

    sb.reset()
    sb.faults(latency_ms=300)
    u3 = sb.sample("fleet-outage-sf-%s.png" % run_id)
    res = H.concurrent([lambda: b.create({"uri": u3}) for _ in range(20)],
                       timeout=30)
    ok, bad = split(res)
    t.check(not bad and all(r.status == 200 for r in ok),
            "during the outage: 20 concurrent identical creates via B -> "
            "20 x 200", "statuses %r" % statuses(res))
    t.eq(sb.calls(), 1, "during the outage: in-process single flight, "
         "1 call for 20")

    # --- back ---------------------------------------------------------------
    redis.start()
    t_start = time.monotonic()
    took = {}
    for g in gws:
        left = max(0.1, READY_WAIT_S - (time.monotonic() - t_start))
        w = H.wait_until(lambda g=g: readyz(g) == (200, "ready"), left,
                         step=0.05)
        took[g.name] = time.monotonic() - t_start if w else None
    t.diag("ready again after the restart: %s" % ", ".join(
        "%s %s" % (k, "never" if v is None else "%.2f s" % v)
        for k, v in took.items()))
    for g in gws:
        v = took[g.name]
        t.check(v is not None and v <= 5.0, "%s: /readyz ready again "
                "within 5 s of the restart" % g.name,
                "took %r; readyz %r" % (v, readyz(g)))
        t.eq(H.metric(g, "redis_up"), 1.0,
             "%s: asset_gateway_redis_up 1 again" % g.name)

    sb.reset()
    sb.faults(latency_ms=0)
    u4 = sb.sample("fleet-outage-after-%s.png" % run_id)
    ra = a.create({"uri": u4})
    t.check(ra.status == 200 and ra.header("x-cache") == "MISS",
            "after the restart: new create via A -> 200 MISS", ra.short())
    rb = b.create({"uri": u4})
    t.check(rb.status == 200 and rb.header("x-cache") == "HIT" and
            rb.body == ra.body,
            "after the restart: same create via B -> HIT with A's answer "
            "(shared store again)", rb.short())
    t.eq(sb.calls(), 1, "after the restart: one call for A and B")

    sb.reset()
    sb.faults(latency_ms=500)
    u5 = sb.sample("fleet-outage-sf2-%s.png" % run_id)
    res = H.concurrent([lambda g=gws[i % 3]: g.create({"uri": u5})
                        for i in range(30)], timeout=30)
    ok, bad = split(res)
    t.check(not bad and all(r.status == 200 for r in ok) and
            len({r.body for r in ok}) == 1,
            "after the restart: 30 concurrent identical creates over "
            "3 instances -> 30 x 200, one body",
            "statuses %r" % statuses(res))
    n_calls = sb.calls()
    t.diag("after the restart: 30 identical over 3 instances -> %d call(s)"
           % n_calls)
    t.eq(n_calls, 1, "after the restart: fleet single flight again, "
         "1 call for 30")


def test_holder_killed(h, sb, redis, gws, prefix, run_id):
    """The holder (A) is SIGKILLed while its upstream call is under way:
    a waiter on B or C takes over once the claim expires."""
    t = h.t
    a, b, c = gws
    sb.reset()
    sb.faults(latency_ms=3000)
    u = sb.sample("fleet-holder-%s.png" % run_id)
    get_a = in_background(lambda: a.create({"uri": u}, timeout=20))
    first = H.wait_until(lambda: sb.calls() >= 1, 3.0, step=0.05)
    t.check(first, "A (the holder) called upstream",
            repr(sb.stats()))
    locks = redis.keys(prefix + "lock:*")
    t.eq(len(locks), 1, "A holds a claim in Redis")
    pttl = redis.cmd("PTTL", locks[0]) if locks else None
    t.check(isinstance(pttl, int) and 0 < pttl <= CLAIM_TTL_MS,
            "the claim expires within request + connect timeout + 1 s "
            "(%d ms)" % CLAIM_TTL_MS, "PTTL %r" % pttl)
    time.sleep(0.3)
    targets = [b, b, b, c, c, c]
    gets = [in_background(lambda g=g: g.create({"uri": u}, timeout=20))
            for g in targets]
    time.sleep(0.4)
    t.eq(sb.calls(), 1, "B's and C's callers wait (no new call)")
    t_kill = time.monotonic()
    a.proc.signal(signal.SIGKILL)
    t.check(a.proc.wait(5) is not None, "A killed (SIGKILL)")
    sb.faults(latency_ms=200)  # the takeover's own call answers quickly
    res = [g(20) for g in gets]
    el = time.monotonic() - t_kill
    ra = get_a(5)
    ok, bad = split(res)
    t.check(not bad and len(ok) == 6 and all(r.status == 200 for r in ok),
            "every surviving caller (3 via B, 3 via C) -> 200",
            "statuses %r; first odd: %s" % (statuses(res), first_odd(ok)))
    t.eq(len({r.body for r in ok}), 1, "all six got the same answer")
    xc = cache_counts(ok)
    t.check(xc.get("MISS") == 1 and xc.get("HIT") == 5,
            "one MISS (the new holder), 5 HIT", repr(xc))
    times = call_times(sb)
    t.diag("holder killed: %d upstream calls in total" % len(times))
    t.eq(len(times), 2, "exactly one more upstream call after the kill "
         "(2 in total)")
    if len(times) >= 2:
        after_first = (times[1] - times[0]) * 1000
        after_kill = (times[1] - t_kill) * 1000
        t.diag("takeover: %.0f ms after the kill, %.0f ms after A's call "
               "(claim TTL %d ms); all answered %.2f s after the kill"
               % (after_kill, after_first, CLAIM_TTL_MS, el))
        # A waiter takes over a claim left unrenewed for a third of its
        # TTL + 1 s (flight_fleet.c renew_bound_ms), or once it expires.
        unrenewed_ms = CLAIM_TTL_MS // 3 + 1000
        t.check(after_kill > 0 and
                unrenewed_ms - 250 <= after_first <= CLAIM_TTL_MS + 1500,
                "the takeover happened once A stopped renewing its claim "
                "(%d ms unrenewed), not while A was alive" % unrenewed_ms,
                "%.0f ms after A's call, %.0f ms after the kill, claim TTL "
                "%d ms" % (after_first, after_kill, CLAIM_TTL_MS))
    t.check(not (isinstance(ra, H.Resp) and ra.status is not None),
            "A's own caller got no answer (A was killed mid-call)",
            ra.short() if isinstance(ra, H.Resp) else repr(ra))
    t.eq(redis.keys(prefix + "lock:*"), [], "no claim left behind")
    rb = b.create({"uri": u})
    t.check(rb.status == 200 and rb.header("x-cache") == "HIT" and
            ok and rb.body == ok[0].body,
            "the takeover's answer is stored: a later create -> HIT",
            rb.short())
    t.eq(sb.calls(), 2, "still 2 calls")


def late_attempt(sb, redis, a, b, u):
    """One try of test_late_arrival_paused on key U. Returns (A's answer,
    B's answer, whether B was asked inside the pause after A answered)."""
    sb.faults(latency_ms=600)
    n0 = sb.calls()
    get_a = in_background(lambda: a.create({"uri": u}, timeout=20))
    first = H.wait_until(lambda: sb.calls() > n0, 3.0, step=0.05)
    t0 = call_times(sb)[-1] if first else time.monotonic()
    time.sleep(max(0.0, t0 + 0.52 - time.monotonic()))
    t_pause = time.monotonic()
    paused = redis.cmd("CLIENT", "PAUSE", "400", "WRITE")
    try:
        ra = get_a(3.0)
        time.sleep(max(0.0, t0 + 0.68 - time.monotonic()))
        in_time = time.monotonic() - t_pause < 0.3 and t_pause < t0 + 0.6
        rb = b.create({"uri": u}, timeout=20)
    finally:
        redis.cmd("CLIENT", "UNPAUSE")
    return ra, rb, paused == "OK" and in_time


def test_late_arrival_paused(h, sb, redis, a, b, run_id, attempts=4):
    """A create reaches B after A's caller got its answer, while A's
    writes (store, release) still wait in Redis: B's lookup misses, and
    the claim B tries next runs after A's release. Made likely with CLIENT
    PAUSE WRITE (reads go on, writes wait and then run in arrival order).
    B's own periodic writes (rate-limit heartbeat) can queue its lookup
    behind the pause too, which hides the case: hence a few attempts.
    Needs redis_command_timeout_ms above the pause."""
    t = h.t
    sb.reset()
    keys = [sb.sample("fleet-late-paused-%s-%d.png" % (run_id, i))
            for i in range(attempts)]
    conclusive = 0
    wrong = []
    for u in keys:
        ra, rb, ok_timing = late_attempt(sb, redis, a, b, u)
        conclusive += ok_timing
        if not (isinstance(ra, H.Resp) and ra.status == 200 and
                rb.status == 200 and rb.header("x-cache") == "HIT" and
                rb.body == ra.body):
            wrong.append("A: %s %s id %s / B: %s %s id %s" % (
                getattr(ra, "status", ra), getattr(ra, "headers", {}).get(
                    "x-cache"), asset_id(ra) if isinstance(ra, H.Resp)
                else None, rb.status, rb.header("x-cache"), asset_id(rb)))
    srcs = sb.stats().get("by_source") or {}
    twice = sorted(k.rsplit("/", 1)[-1] for k, v in srcs.items() if v > 1)
    t.diag("late arrival with A's writes held: %d tries (%d timed as "
           "planned), %d upstream calls, keys called twice: %s" % (
               attempts, conclusive, sum(srcs.values()), twice or "none"))
    t.check(not wrong, "create via B just after A answered (A's writes "
            "still queued in Redis) -> HIT with A's answer, %d tries"
            % attempts, "\n".join(wrong[:2]))
    t.check(sorted(srcs) == sorted(keys) and
            all(v == 1 for v in srcs.values()),
            "late arrival at B: one upstream call per key", repr(srcs))


def test_late_arrival_sweep(h, sb, a, b, run_id, trials=100):
    """No tricks: for each of TRIALS keys, a create via A and the same
    create via B timed to arrive as A's flight ends (jittered around the
    measured A latency). Every key must cost one upstream call."""
    t = h.t
    sb.reset()
    sb.faults(latency_ms=40)
    base = []
    for i in range(8):
        u = sb.sample("fleet-sweep-base-%s-%d.png" % (run_id, i))
        r = a.create({"uri": u})
        if r.status == 200:
            base.append(r.elapsed)
    base.sort()
    med = base[len(base) // 2] if base else 0.045
    sb.reset()
    sb.faults(latency_ms=40)
    keys = [sb.sample("fleet-sweep-%s-%03d.png" % (run_id, i))
            for i in range(trials)]
    rng = random.Random(run_id)
    statuses_seen = collections.Counter()
    t0 = time.monotonic()
    for u in keys:
        get_a = in_background(lambda u=u: a.create({"uri": u}, timeout=10))
        time.sleep(max(0.0, med + rng.uniform(-0.004, 0.001)))
        rb = b.create({"uri": u}, timeout=10)
        ra = get_a(10)
        statuses_seen[(ra.status if isinstance(ra, H.Resp) else None,
                       rb.status)] += 1
    el = time.monotonic() - t0
    st = sb.stats()
    dups = sorted(k for k, v in (st.get("by_source") or {}).items()
                  if v > 1)
    t.diag("late-arrival sweep: %d keys, %d upstream calls, %d keys "
           "called twice (A median %.1f ms, %.1f s)" % (
               trials, st["calls"], len(dups), med * 1000, el))
    t.eq(dict(statuses_seen), {(200, 200): trials},
         "late-arrival sweep: every A and B caller -> 200")
    t.check(st["calls"] == trials and not dups,
            "late-arrival sweep: one upstream call per key (%d keys)"
            % trials, "%d calls; called twice: %s" % (
                st["calls"], ", ".join(d.rsplit("/", 1)[-1]
                                       for d in dups[:10])))


class Fleet:
    """A scenario's redis-server, its reset sandbox and N instances
    sharing one key_prefix."""

    def __init__(self, h, n=3, store=None):
        self.run_id = os.urandom(4).hex()
        self.prefix = "agwit-%s:" % self.run_id
        self.redis = H.Redis(h)
        self.sb = h.sandbox()
        self.gws = [fleet_gateway(h, self.sb, self.redis, self.prefix, store)
                    for _ in range(n)]
        h.t.diag("redis on %d, sandbox on %d, gateways on %s, key_prefix %s"
                 % (self.redis.port, self.sb.port,
                    [g.port for g in self.gws], self.prefix))

    def check_logs(self, t):
        for g in self.gws:
            H.check_json_log(t, g)


@H.scenario
def fleet_ready(h):
    f = Fleet(h)
    test_setup(h, f.redis, f.gws, f.prefix)
    f.check_logs(h.t)


@H.scenario
def identical_300(h):
    f = Fleet(h)
    test_300_identical(h, f.sb, f.gws, f.run_id)
    f.check_logs(h.t)


@H.scenario
def keys_20(h):
    f = Fleet(h)
    test_20_keys(h, f.sb, f.gws, f.run_id)
    f.check_logs(h.t)


@H.scenario
def cross_instance_and_no_cache(h):
    f = Fleet(h)
    u, ra = test_cross_instance(h, f.sb, f.redis, f.gws, f.prefix, f.run_id)
    test_no_cache(h, f.sb, f.gws, u, ra)
    f.check_logs(h.t)


@H.scenario
def shared_error(h):
    f = Fleet(h)
    test_shared_error(h, f.sb, f.gws, f.run_id)
    f.check_logs(h.t)


@H.scenario
def redis_outage(h):
    f = Fleet(h)
    test_redis_outage(h, f.sb, f.redis, f.gws, f.run_id)
    f.check_logs(h.t)


@H.scenario
def holder_killed(h):
    f = Fleet(h)
    test_holder_killed(h, f.sb, f.redis, f.gws, f.prefix, f.run_id)
    f.check_logs(h.t)


@H.scenario
def late_arrival_paused(h):
    f = Fleet(h, 2, {"redis_command_timeout_ms": 5000})
    test_late_arrival_paused(h, f.sb, f.redis, f.gws[0], f.gws[1], f.run_id)
    f.check_logs(h.t)


@H.scenario
def late_arrival_sweep(h):
    f = Fleet(h, 2, {"redis_command_timeout_ms": 5000})
    test_late_arrival_sweep(h, f.sb, f.gws[0], f.gws[1], f.run_id)
    f.check_logs(h.t)


@H.scenario
def expired_claim_still_stores(h):
    """A claim that expires under its holder (Redis away for longer than
    its TTL; here deleted by hand) with nobody after it: the holder's
    answer is still stored, so the fleet does not create it again. Only
    a purge (test_admin.py) or another holder stops the store."""
    t = h.t
    f = Fleet(h, 2)
    f.sb.faults(latency_ms=1500)
    u = f.sb.sample("fleet-expired-%s.png" % f.run_id)
    out = []
    th = threading.Thread(target=lambda: out.append(
        f.gws[0].create({"uri": u})))
    th.start()
    locks = H.wait_until(lambda: f.redis.keys(f.prefix + "lock:*"), 3.0)
    t.check(len(locks or []) == 1, "the create holds the fleet's claim",
            repr(locks))
    for k in locks or []:
        f.redis.cmd("DEL", k)
    th.join(10)
    r = out[0] if out else None
    t.check(r is not None and r.status == 200
            and r.header("X-Cache") == "MISS",
            "the holder is answered 200 MISS", r.short() if r else "none")
    stored = H.wait_until(lambda: f.redis.keys(f.prefix + "a:*"), 2.0)
    t.eq(len(stored or []), 1, "its answer is stored in Redis though the "
         "claim was gone")
    r2 = f.gws[1].create({"uri": u})
    t.check(r2.status == 200 and r2.header("X-Cache") == "HIT"
            and r2.body == (r.body if r else None),
            "the same create on the other instance: HIT, same body",
            r2.short())
    t.eq(f.sb.calls(), 1, "one upstream call")
    f.check_logs(t)


if __name__ == "__main__":
    H.run()
