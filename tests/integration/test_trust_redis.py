"""Closing the trust boundary (issue #11 items 4, 6, 9, 11; SPEC section 8)
against a real redis-server and the sandbox:

* the API key never reaches a caller or the store inside an upstream
  body (an error and a 2xx that echo it, an answer stored before
  redaction existed, and a key rotated by SIGHUP while a slow call still
  carries the old one);
* a SIGHUP that lengthens request_timeout_ms does not let a second
  instance take over a live holder's claim (one upstream call);
* one 429 with Retry-After 99999999999 pauses the fleet for at most
  max_pause_ms, and calls resume when it ends;
* hostile state planted in Redis (limiter TAT, pause key, stored
  answers, claims, heartbeats) neither crashes nor wedges the gateway:
  every call is answered well before its deadline, and a warning says
  Redis's state is not trusted.

Every scenario has its own redis-server and key_prefix (-k NAME runs one
alone). Measured times go to TAP
diagnostics.
"""

import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

metric, records, wait_until = H.metric, H.log_records, H.wait_until

RELOAD_WAIT_S = 5.0
# A call the gateway can answer must be answered this fast, far below
# HOSTILE_DEADLINE_MS (a wedged call would wait for that).
FAST_S = 5.0
HOSTILE_DEADLINE_MS = 20000
MARKER = b"[REDACTED]"


# -------------------------------------------------------------- helpers

def fleet_gateway(h, sb, redis, prefix, upstream=None, store=None,
                  ratelimit=None, server=None, api_key=None):
    overrides = {
        "store": {"backend": "redis", "redis_url": redis.url(),
                  "key_prefix": prefix},
        "upstream": {"max_retries": 0},
        "ratelimit": {},
        "server": {},
    }
    overrides["store"].update(store or {})
    overrides["upstream"].update(upstream or {})
    overrides["ratelimit"].update(ratelimit or {})
    overrides["server"].update(server or {})
    return H.Gateway(h, sb, overrides=overrides, api_key=api_key)



def sighup(gw):
    """SIGHUP, then waits until the reload is counted (ok or failed);
    returns True when it was ok."""
    ok0 = metric(gw, "config_reloads_total", result="ok")
    bad0 = metric(gw, "config_reloads_total", result="failed")
    gw.proc.signal(signal.SIGHUP)
    deadline = time.monotonic() + RELOAD_WAIT_S
    while time.monotonic() < deadline:
        if metric(gw, "config_reloads_total", result="ok") > ok0:
            return True
        if metric(gw, "config_reloads_total", result="failed") > bad0:
            return False
        time.sleep(0.03)
    raise RuntimeError("no reload counted within %.0f s\n%s"
                       % (RELOAD_WAIT_S, gw.proc.tail()))


def rewrite_config(gw, overrides):
    cfg = json.loads(json.dumps(gw.cfg))
    H.merge_config(cfg, overrides)
    with open(gw.conf_path, "w") as f:
        f.write(H.render_config(cfg))



def warns(gw, since, words, level="warn"):
    """Lines at LEVEL (None: any) after the first SINCE records whose msg
    has WORDS."""
    return [j for j in records(gw)[since:]
            if level in (None, j.get("level")) and words in j.get("msg", "")]


def in_background(fn):
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



def short(r):
    return r.short() if isinstance(r, H.Resp) else repr(r)


def stored_key(redis, prefix):
    """The one stored answer under PREFIX (str), or None. The gateway
    stores it with the script that releases the claim, which may reach
    Redis just after the caller has its answer: looked for up to 2 s."""
    ks = H.wait_until(lambda: (lambda k: k if len(k) == 1 else None)(
        redis.keys(prefix + "a:*")), 2, step=0.02)
    return ks[0] if ks else None


def has_asset(r):
    return (isinstance(r, H.Resp) and isinstance(r.json, dict)
            and isinstance(r.json.get("asset"), dict))


def length_ok(r):
    """Content-Length matches the body actually sent."""
    return r.header("content-length") == str(len(r.body))


# ---------------------------------------------- (4) the key in a body

def test_redact_error_body(h, sb, redis, run_id):
    t = h.t
    key = h.api_key.encode()
    prefix = "agwit-%s-red1:" % run_id
    gw = fleet_gateway(h, sb, redis, prefix, store={"l1_entries": 0})
    sb.reset()
    sb.faults(status=400, echo_key=1)
    r = gw.create({"uri": sb.sample("redact-400-%s.png" % run_id)})
    sb.reset()
    t.check(r.status == 400 and key not in r.body and MARKER in r.body,
            "upstream 400 echoing the API key -> 400 to the caller with the "
            "key redacted", r.short())
    t.check(isinstance(r.json, dict) and r.json.get("code") == 3,
            "redacted 400 body is still Connectly's JSON error", r.short())
    t.check(length_ok(r), "redacted 400: Content-Length follows the new "
            "length", r.short())
    t.eq(redis.keys(prefix + "a:*"), [], "a 400 is not stored")
    return gw


def test_redact_2xx(h, sb, redis, run_id):
    t = h.t
    key = h.api_key.encode()
    prefix = "agwit-%s-red2:" % run_id
    gw = fleet_gateway(h, sb, redis, prefix, store={"l1_entries": 0})
    u = sb.sample("redact-200-%s.png" % run_id)
    sb.reset()
    sb.faults(echo_key=1)
    r = gw.create({"uri": u})
    sb.reset()
    t.check(r.status == 200 and r.header("x-cache") == "MISS" and
            key not in r.body and has_asset(r),
            "upstream 200 echoing the API key -> 200 MISS without the key",
            r.short())
    t.eq((r.json or {}).get("echoedApiKey"), "[REDACTED]",
         "the echoed key reads [REDACTED]")
    t.check(length_ok(r), "redacted 200: Content-Length follows the new "
            "length", r.short())
    sk = stored_key(redis, prefix)
    val = redis.cmd("GET", sk) if sk else None
    t.check(isinstance(val, bytes) and key not in val and MARKER in val,
            "the stored answer (Redis GET) holds no key, the marker instead",
            repr(val)[:300])
    r2 = gw.create({"uri": u})
    t.check(r2.status == 200 and r2.header("x-cache") == "HIT" and
            key not in r2.body and r2.body == r.body,
            "the same create again -> HIT, same body, no key", r2.short())
    t.eq(sb.calls(), 0, "the HIT made no upstream call")
    # An answer stored before redaction existed (or by an older
    # instance) still holds the key: it must not go out either.
    if sk:
        planted = b"200\n" + json.dumps(
            {"asset": {"id": "x", "note": "key=" + h.api_key}}).encode()
        redis.cmd("SET", sk, planted, "EX", 3600)
    r3 = gw.create({"uri": u})
    t.check(r3.status == 200 and r3.header("x-cache") == "HIT" and
            key not in r3.body and MARKER in r3.body and length_ok(r3),
            "a stored answer holding the key (written before redaction) -> "
            "HIT with the key redacted", r3.short())
    return gw


def test_redact_rotation(h, redis, run_id):
    """A slow call posted with K1 is in flight when SIGHUP rotates the key
    to K2: its body echoes K1, which must still be redacted; a call after
    the rotation echoes K2, the current key."""
    t = h.t
    k1 = "agw-rot-old-" + os.urandom(12).hex()
    k2 = "agw-rot-new-" + os.urandom(12).hex()
    t.redact += [k1, k2]
    prefix = "agwit-%s-rot:" % run_id
    sb = H.Sandbox(h, api_key=k1)
    gw = fleet_gateway(h, sb, redis, prefix, store={"l1_entries": 0},
                       upstream={"request_timeout_ms": 8000}, api_key=k1)
    u = sb.sample("redact-rot-%s.png" % run_id)
    sb.faults(latency_ms=2500, echo_key=1)
    get = in_background(lambda: gw.create({"uri": u}, timeout=20))
    arrived = wait_until(lambda: sb.calls() >= 1, 5)
    with open(gw.cfg["upstream"]["api_key_file"], "w") as f:
        f.write(k2 + "\n")
    reloaded = sighup(gw)
    r = get(20)
    t.check(arrived and reloaded, "rotation: the slow call was in flight "
            "when the reload (K1 -> K2) was applied",
            "arrived=%r reloaded=%r" % (arrived, reloaded))
    t.check(isinstance(r, H.Resp) and r.status == 200 and
            k1.encode() not in r.body and k2.encode() not in r.body and
            MARKER in r.body,
            "rotation: the call still carrying the old key -> 200, the old "
            "key redacted from its body", short(r))
    sk = stored_key(redis, prefix)
    val = redis.cmd("GET", sk) if sk else None
    t.check(isinstance(val, bytes) and k1.encode() not in val and
            MARKER in val, "rotation: its stored answer holds no key",
            repr(val)[:300])
    # The sandbox knows only K1: a forced 400 answers before its key
    # check, echoing the key the call sent, now K2.
    sb.faults(status=400, echo_key=1, latency_ms=0)
    r2 = gw.create({"uri": sb.sample("redact-rot2-%s.png" % run_id)})
    seen = [c for c in sb.call_list()]
    t.check(r2.status == 400 and k2.encode() not in r2.body and
            MARKER in r2.body,
            "rotation: a call with the new key echoed back -> redacted",
            r2.short())
    t.diag("rotation: sandbox saw %d calls" % len(seen))
    text = gw.output_text()
    t.check(k1 not in text and k2 not in text,
            "rotation: neither key appears in the gateway's output", "")
    sb.stop()
    return gw


# ------------------------------------------ (6) claims across a reload

def test_claim_outlives_reload(h, sb, redis, run_id):
    """Start-up claim: 1000 + 500 + 1000 = 2500 ms. After SIGHUP raises
    request_timeout_ms to 8000 on A, an upstream call of 4.5 s must keep
    A's claim: B waits for A's answer instead of calling upstream."""
    t = h.t
    prefix = "agwit-%s-claim:" % run_id
    up = {"request_timeout_ms": 1000, "connect_timeout_ms": 500}
    a = fleet_gateway(h, sb, redis, prefix, upstream=up)
    b = fleet_gateway(h, sb, redis, prefix, upstream=up)
    rewrite_config(a, {"upstream": {"request_timeout_ms": 8000}})
    t.check(sighup(a), "claim: A reloaded request_timeout_ms 1000 -> 8000",
            a.proc.tail())
    u = sb.sample("claim-reload-%s.png" % run_id)
    sb.reset()
    sb.faults(latency_ms=4500)
    t0 = time.monotonic()
    get_a = in_background(lambda: a.create({"uri": u}, timeout=20))
    arrived = wait_until(lambda: sb.calls() >= 1, 5)
    time.sleep(0.3)
    get_b = in_background(lambda: b.create({"uri": u}, timeout=20))
    # Past the start-up claim's lifetime: the claim must still be there.
    time.sleep(max(0.0, 3.5 - (time.monotonic() - t0)))
    locks = redis.keys(prefix + "lock:*")
    pttl = redis.cmd("PTTL", locks[0]) if len(locks) == 1 else None
    ra, rb = get_a(20), get_b(20)
    st = sb.stats()
    sb.reset()
    t.diag("claim: at %.1f s the claim's PTTL was %r ms; A %s in %.2f s, "
           "B %s" % (3.5, pttl, ra.status if isinstance(ra, H.Resp) else ra,
                     ra.elapsed if isinstance(ra, H.Resp) else 0,
                     rb.status if isinstance(rb, H.Resp) else rb))
    t.check(arrived, "claim: A's call reached the sandbox", "")
    t.check(isinstance(pttl, int) and pttl > 0,
            "claim: 3.5 s in (start-up lifetime 2.5 s) A's claim is still "
            "held", repr(pttl))
    t.check(isinstance(ra, H.Resp) and ra.status == 200 and
            isinstance(rb, H.Resp) and rb.status == 200 and
            rb.header("x-cache") == "HIT" and rb.body == ra.body,
            "claim: A -> 200 MISS, B -> 200 HIT with A's answer",
            "A: %s\nB: %s" % (short(ra), short(rb)))
    t.eq(st["calls"], 1, "claim: exactly 1 upstream call for one source "
         "across two instances after the reload")
    return [a, b]


# ------------------------------------------------ (9) the pause's cap

def test_pause_capped(h, sb, redis, run_id):
    t = h.t
    prefix = "agwit-%s-pause:" % run_id
    gw = fleet_gateway(h, sb, redis, prefix)
    sb.reset()
    sb.faults(status=429, retry_after=99999999999, status_count=1)
    r = gw.create({"uri": sb.sample("pause-%s.png" % run_id)})
    # The caller's 429 may leave before the pause script's reply is back.
    wait_until(lambda: redis.cmd("PTTL", prefix + "rl:pause") != -2, 2.0)
    pttl = redis.cmd("PTTL", prefix + "rl:pause")
    sb.reset()
    t.diag("429 with Retry-After 99999999999: pause PTTL %r ms, answer %s "
           "Retry-After %r" % (pttl, r.status, r.header("retry-after")))
    t.check(isinstance(pttl, int) and 0 < pttl <= 60000,
            "one 429 with Retry-After 99999999999: the fleet pause (PTTL of "
            "rl:pause) is at most max_pause_ms 60000", repr(pttl))
    ra = r.header("retry-after")
    t.check(r.status == 429 and ra is not None and ra.isdigit() and
            1 <= int(ra) <= 60,
            "the call (deadline 30 s < pause 60 s) -> 429 with Retry-After "
            "at most 60", r.short())
    redis.cmd("DEL", prefix + "rl:pause")
    return gw


def test_pause_resumes(h, sb, redis, run_id):
    t = h.t
    prefix = "agwit-%s-pause2:" % run_id
    gw = fleet_gateway(h, sb, redis, prefix, ratelimit={"max_pause_ms": 2000})
    sb.reset()
    sb.faults(status=429, retry_after=99999999999, status_count=1)
    get = in_background(lambda: gw.create(
        {"uri": sb.sample("pause2-%s.png" % run_id)}, timeout=20))
    paused = wait_until(lambda: redis.cmd("PTTL", prefix + "rl:pause") > 0,
                        5, step=0.01)
    pttl = redis.cmd("PTTL", prefix + "rl:pause")
    r = get(20)
    st = sb.stats()
    sb.reset()
    t.diag("max_pause_ms 2000: pause PTTL %r ms when first seen; answered "
           "%s in %.2f s after %d upstream calls" % (
               pttl, r.status if isinstance(r, H.Resp) else r,
               r.elapsed if isinstance(r, H.Resp) else 0, st["calls"]))
    t.check(paused and isinstance(pttl, int) and pttl <= 2000,
            "max_pause_ms 2000: the pause key's PTTL is at most 2000 ms",
            repr(pttl))
    t.check(isinstance(r, H.Resp) and r.status == 200 and
            1.8 <= r.elapsed <= 8.0,
            "max_pause_ms 2000: the call resumes after the ~2 s pause -> 200",
            short(r))
    t.eq(st["calls"], 2, "max_pause_ms 2000: the 429 and the retry, 2 "
         "upstream calls")
    return gw


# --------------------------------------------- (11) hostile Redis state

class Hostile:
    """One gateway under planted state: each probe is a fresh source that
    must be answered 200 well before the deadline."""

    def __init__(self, h, sb, redis, run_id):
        self.h, self.sb, self.redis = h, sb, redis
        self.prefix = "agwit-%s-hostile:" % run_id
        self.run_id = run_id
        self.n = 0
        # One worker: each worker warns for itself.
        self.gw = fleet_gateway(
            h, sb, redis, self.prefix, store={"l1_entries": 0},
            server={"request_deadline_ms": HOSTILE_DEADLINE_MS,
                    "workers": 1},
            upstream={"request_timeout_ms": 5000})

    def source(self, tag):
        self.n += 1
        return self.sb.sample("hostile-%s-%s-%d.png" % (self.run_id, tag,
                                                       self.n))

    def probe(self, desc, uri=None, want_asset=True):
        t = self.h.t
        r = self.gw.create({"uri": uri or self.source("p")}, timeout=40)
        ok = (r.status == 200 and r.elapsed < FAST_S and
              (has_asset(r) or not want_asset))
        t.check(ok, "%s -> 200 with an asset in %.2f s (deadline %d s)" % (
            desc, r.elapsed, HOSTILE_DEADLINE_MS // 1000), r.short())
        return r

    def stored(self, uri):
        """Creates URI and returns the Redis key of its stored answer."""
        before = set(self.redis.keys(self.prefix + "a:*"))
        r = self.gw.create({"uri": uri})
        new = H.wait_until(lambda: sorted(
            set(self.redis.keys(self.prefix + "a:*")) - before), 2) or []
        if r.status != 200 or len(new) != 1:
            raise RuntimeError("no stored answer for %s: %s %r" % (
                uri, r.short(), new))
        return new[0]

    def dedupe_hash(self, uri):
        """The dedupe key of URI (its answer created, then deleted)."""
        k = self.stored(uri)
        self.redis.cmd("DEL", k)
        return k[len(self.prefix + "a:"):]


def test_hostile_limiter(h, hs):
    t = h.t
    rd, p, gw = hs.redis, hs.prefix, hs.gw
    since = len(records(gw))
    rd.cmd("SET", p + "rl", "9" * 30)
    for i in range(3):
        hs.probe("limiter TAT a 30-digit integer (probe %d)" % (i + 1))
    w = warns(gw, since, "GCRA script answered")
    t.check(len(w) == 1, "limiter TAT huge: one warn line for 3 calls",
            repr([j.get("msg") for j in w]))
    t.check("9" * 15 not in gw.log_text(),
            "the huge value is not echoed in the log", "")
    rd.cmd("SET", p + "rl", "not-a-number")
    hs.probe("limiter TAT not a number")
    secs, usecs = rd.cmd("TIME")
    ahead = int(secs) * 1000000 + int(usecs) + 3600 * 1000000
    rd.cmd("SET", p + "rl", str(ahead))
    hs.probe("limiter TAT an hour ahead (no instance grants that far)")
    rd.cmd("DEL", p + "rl")
    # Our own pause meets a planted one: the pause script answers the
    # longer, planted PTTL (in microseconds it overflows). First among
    # the pause cases: a gateway without bounds is wedged by those.
    hs.sb.reset()
    hs.sb.faults(status=429, retry_after=1, status_count=1, latency_ms=500)
    get = in_background(lambda: hs.gw.create({"uri": hs.source("p429")},
                                             timeout=40))
    seen = wait_until(lambda: hs.sb.calls() >= 1, 5)
    rd.cmd("SET", p + "rl:pause", "1", "PX", "9000000000000000000")
    r = get(40)
    hs.sb.reset()
    t.check(seen and isinstance(r, H.Resp) and r.status == 200 and
            r.elapsed < FAST_S,
            "an upstream 429 while a 9e18 ms pause is planted -> paused "
            "1 s here, then 200 in %.2f s" % (
                r.elapsed if isinstance(r, H.Resp) else -1), short(r))
    rd.cmd("DEL", p + "rl:pause")
    since = len(records(gw))
    rd.cmd("SET", p + "rl:pause", "1", "PX", "999999999999")
    hs.probe("pause key with a TTL of 31 years")
    t.check(warns(gw, since, "pause longer than max_pause_ms", level=None),
            "pause TTL huge: the log says so (a warn, or a debug line "
            "within a minute of the last warn)", "")
    # Near the largest TTL Redis takes: in microseconds it overflows.
    rd.cmd("SET", p + "rl:pause", "1", "PX", "9000000000000000000")
    hs.probe("pause key with a TTL of 9e18 ms")
    rd.cmd("SET", p + "rl:pause", "9" * 30, "PX", "300")
    hs.probe("pause key holding a 30-digit value (300 ms TTL)")
    rd.cmd("DEL", p + "rl:pause")
    recovered = wait_until(lambda: hs.gw.create(
        {"uri": hs.source("back")}).status == 200 and
        rd.cmd("EXISTS", p + "rl") == 1, 5, step=0.2)
    t.check(recovered, "planted keys gone: the shared limiter is used again "
            "(its TAT key is written)", "")


def test_hostile_store(h, hs):
    t = h.t
    rd, p, gw = hs.redis, hs.prefix, hs.gw
    u = hs.source("store")
    sk = hs.stored(u)
    body = rd.cmd("GET", sk).split(b"\n", 1)[1]
    since = len(records(gw))
    bad = [
        ("garbage", b"garbage"),
        ("an answer's JSON without its status line",
         b"{\"asset\":{\"id\":\"planted\"}}"),
        ("a status with a sign", b"+200\n{\"asset\":{}}"),
        ("an error status", b"503\n{\"code\":14,\"message\":\"x\"}"),
        ("a redirect status", b"302\n{\"asset\":{}}"),
        ("a status past 599", b"999\n{\"asset\":{}}"),
        ("an oversized body (5 MiB)",
         b"200\n{\"asset\":{\"pad\":\"" + b"x" * (5 << 20) + b"\"}}"),
    ]
    for desc, val in bad:
        rd.cmd("SET", sk, val, "EX", 3600)
        r = hs.probe("stored answer holding %s" % desc, uri=u)
        # A bad value counts as Redis failing: the instance answers from
        # its own copy of the answer it stored (stale-if-error, SPEC §4).
        t.check(r.status == 200 and r.header("x-cache") == "HIT" and
                r.body == body,
                "stored answer holding %s: not served (this instance's own "
                "copy of its answer instead)" % desc, r.short()[:300])
    t.check(len(warns(gw, since, "stored value is not")) == 1,
            "stored values not ours: one warn line for %d in a row"
            % len(bad), "")
    # An instance without a copy goes upstream and replaces the value.
    other = fleet_gateway(h, hs.sb, rd, p, store={"l1_entries": 0})
    r = other.create({"uri": u})
    t.check(r.status == 200 and r.header("x-cache") == "MISS" and
            len(r.body) < 4096, "another instance, without a copy: a MISS "
            "that replaces the bad value", r.short()[:300])
    other.stop()
    after = rd.cmd("GET", sk)
    t.check(isinstance(after, bytes) and after.startswith(b"200\n{"),
            "the last bad value was replaced by a real answer",
            repr(after)[:200])


def test_hostile_claims(h, hs):
    t = h.t
    rd, p, gw = hs.redis, hs.prefix, hs.gw
    planted = [
        ("garbage without a TTL", ["garbage"]),
        ("a token-shaped value without a TTL", ["0123456789abcdef" * 2]),
        ("a token-shaped value with a 31-year TTL",
         ["fedcba9876543210" * 2, "PX", "999999999999"]),
        ("a 1 MiB value", ["z" * (1 << 20), "PX", "60000"]),
    ]
    since = len(records(gw))
    for desc, val in planted:
        u = hs.source("claim")
        k = hs.dedupe_hash(u)
        rd.cmd("SET", p + "lock:" + k, *val)
        hs.probe("claim key holding %s" % desc, uri=u)
        rd.cmd("DEL", p + "lock:" + k)
    t.check(warns(gw, since, "claim script answered out of shape"),
            "claims held by no instance: a warn line says so", "")


def test_hostile_heartbeat(h, hs):
    t = h.t
    rd, p, gw = hs.redis, hs.prefix, hs.gw
    since = len(records(gw))
    args = ["ZADD", p + "hb"]
    for i in range(20000):
        args += ["99999999999999", "fake-%d" % i]
    rd.cmd(*args)
    seen = wait_until(lambda: warns(gw, since, "heartbeat script answered"),
                      4, step=0.1)
    t.check(seen, "20000 fake live instances: a warn line says the count "
            "is out of range", "")
    hs.probe("with 20000 fake instances in the heartbeat set")
    rd.cmd("DEL", p + "hb")


def check_gateways(h, gws):
    """The API key in no gateway's output; their logs JSON."""
    t, key = h.t, h.api_key
    for g in gws:
        t.check(key not in g.output_text(),
                "%s: the API key appears nowhere in its output" % g.name, "")
        H.check_json_log(t, g)


def fixtures(h):
    """A fresh run id and redis-server; the file's sandbox (no rate
    limit of its own), reset."""
    sb = h.shared("sandbox-0", lambda h: H.Sandbox(h, rate=0))
    sb.reset()
    return sb, H.Redis(h), os.urandom(4).hex()


def scenario(test, with_sandbox=True):
    """TEST(h, [sb,] redis, run_id) as a scenario; it returns the
    gateway(s) whose output is then checked."""
    def run(h):
        sb, redis, run_id = fixtures(h)
        args = (sb, redis, run_id) if with_sandbox else (redis, run_id)
        gws = test(h, *args)
        check_gateways(h, gws if isinstance(gws, list) else [gws])
    run.__name__ = test.__name__[len("test_"):]
    return H.scenario(run)


redact_error_body = scenario(test_redact_error_body)
redact_2xx = scenario(test_redact_2xx)
redact_rotation = scenario(test_redact_rotation, False)
claim_outlives_reload = scenario(test_claim_outlives_reload)
pause_capped = scenario(test_pause_capped)
pause_resumes = scenario(test_pause_resumes)


@H.scenario
def hostile_state(h):
    """Hostile values in every key the fleet reads, one after another on
    one gateway: it must still serve after all of them."""
    t = h.t
    sb, redis, run_id = fixtures(h)
    hs = Hostile(h, sb, redis, run_id)
    test_hostile_limiter(h, hs)
    test_hostile_store(h, hs)
    test_hostile_claims(h, hs)
    test_hostile_heartbeat(h, hs)
    t.check(hs.gw.get("/healthz").status == 200 and hs.gw.proc.alive(),
            "after all the hostile state the gateway still serves", "")
    check_gateways(h, [hs.gw])


if __name__ == "__main__":
    H.run()
