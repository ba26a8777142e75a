"""Redis round trips of the create path (issue #13 item 3): a miss costs
at most four commands sent to Redis (lookup-or-claim, limiter, and
write + release + done in one script; a renewal only when an attempt
outlives a third of the claim's TTL), a hit at most one; the lookup part
of the claim script leaves no claim behind, and what it returns is
trusted only in the shape the store writes (SPEC section 8).

Counts come from MONITOR on a connection of its own: a command a client
sent is one line; a command run inside a script shows as "[N lua]" and is
not a round trip.
"""

import collections
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MISSES = 40
MAX_PER_MISS = 4
_LINE = re.compile(rb'^\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$')
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')


class Monitor:
    """MONITOR on REDIS while it lives: the commands clients sent (not
    those run inside scripts), as lists of arguments (bytes; escapes as
    MONITOR prints them)."""

    def __init__(self, redis):
        self.sock = socket.create_connection(("127.0.0.1", redis.port),
                                             timeout=5)
        self.f = self.sock.makefile("rb")
        self.sock.sendall(H._resp_encode(["MONITOR"]))
        if self.f.readline().strip() != b"+OK":
            raise RuntimeError("MONITOR refused")
        self.sock.settimeout(None)
        self.lock = threading.Lock()
        self.commands = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while True:
            try:
                line = self.f.readline()
            except (OSError, ValueError):
                return
            if not line:
                return
            m = _LINE.match(line.rstrip(b"\r\n")[1:])
            if m is None or m.group(1).endswith(b"lua"):
                continue
            with self.lock:
                self.commands.append(_ARG.findall(m.group(2)))

    def mark(self):
        """Commands seen so far (wait a little for MONITOR to catch up)."""
        time.sleep(0.2)
        with self.lock:
            return len(self.commands)

    def since(self, mark):
        time.sleep(0.2)
        with self.lock:
            return list(self.commands[mark:])

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(2)


def first_key(cmd):
    name = cmd[0].upper() if cmd else b""
    if name in (b"EVALSHA", b"EVAL"):
        return cmd[3] if len(cmd) > 3 and cmd[2] != b"0" else b""
    return cmd[1] if len(cmd) > 1 else b""


def periodic(cmd):
    """Commands an instance sends on its own clock, whatever it serves:
    heartbeats (the "hb" set), the limiter's poll of the pause key, and
    the fleet's PING that watches Redis while a claim is out longer than
    50 ms (a slow machine, an ASan build): not on the miss's path."""
    key = first_key(cmd)
    return key.endswith(b"hb") or cmd[0].upper() == b"PING" or (
        cmd[0].upper() == b"PTTL" and key.endswith(b"rl:pause"))


def per_call(cmds):
    return [c for c in cmds if not periodic(c)]


def names(cmds):
    return [c[0].upper().decode() for c in cmds]


def stored(redis, prefix):
    """The stored answers under PREFIX, waited for up to 2 s: the script
    that releases the claim stores the answer, and may reach Redis just
    after the caller has its answer."""
    return H.wait_until(lambda: redis.keys(prefix + "a:*"), 2) or []


def gateway(h, sb, redis, prefix, store=None, upstream=None):
    overrides = {
        "server": {"workers": 1},
        "store": {"backend": "redis", "redis_url": redis.url(),
                  "key_prefix": prefix},
        "upstream": {"request_timeout_ms": 3000, "connect_timeout_ms": 500,
                     "max_retries": 0},
        "ratelimit": {"rate": 10000},
    }
    overrides["store"].update(store or {})
    overrides["upstream"].update(upstream or {})
    gw = H.Gateway(h, sb, overrides=overrides)
    # Up (/healthz) is not yet on Redis: a create before that is served
    # degraded and stored in memory only (test_planted saw no stored
    # answer so on a loaded ASan run).
    if not gw.wait_shared():
        raise RuntimeError("%s: not ready on Redis" % gw.name)
    return gw


def miss(t, gw, uri, desc):
    r = gw.create({"uri": uri})
    ok = r.status == 200 and r.header("x-cache") == "MISS"
    t.check(ok, "%s -> 200 MISS" % desc, r.short())
    return ok


# ------------------------------------------------------------ scenarios

def test_misses(h, sb, redis, mon):
    """Sequential misses: at most four commands each, all EVALSHA once
    the scripts are known; no claim left behind."""
    t = h.t
    sb.reset()
    p = "agwrt-miss:"
    gw = gateway(h, sb, redis, p)
    miss(t, gw, sb.sample("rt-warm.png"), "warm-up (loads the scripts)")
    mark = mon.mark()
    ok = all(gw.create({"uri": sb.sample("rt-miss-%d.png" % i)}).header(
        "x-cache") == "MISS" for i in range(MISSES))
    cmds = per_call(mon.since(mark))
    t.check(ok, "%d sequential fresh creates -> MISS each" % MISSES, "")
    per = len(cmds) / MISSES
    t.check(per <= MAX_PER_MISS, "a sequential miss: %.2f commands to Redis "
            "(at most %d)" % (per, MAX_PER_MISS),
            repr(collections.Counter(names(cmds))))
    t.check(set(names(cmds)) == {"EVALSHA"}, "every command of a miss is "
            "EVALSHA (no script text, no GET or SET of its own)",
            repr(collections.Counter(names(cmds))))
    t.eq(sb.calls(), MISSES + 1, "one upstream call per miss")
    t.eq(redis.keys(p + "lock:*"), [], "no claim left behind by the misses")
    t.eq(len(redis.keys(p + "a:*")), MISSES + 1, "each answer stored")
    gw.stop()


def test_hits(h, sb, redis, mon):
    """A stored answer is found by the claim script, in one round trip,
    without a claim; then L1 answers it with none."""
    t = h.t
    sb.reset()
    p = "agwrt-hit:"
    a = gateway(h, sb, redis, p)
    b = gateway(h, sb, redis, p)
    u = sb.sample("rt-hit.png")
    miss(t, a, u, "instance A creates")
    mark = mon.mark()
    r = b.create({"uri": u})
    cmds = per_call(mon.since(mark))
    t.check(r.status == 200 and r.header("x-cache") == "HIT",
            "instance B, the same create -> 200 HIT", r.short())
    t.check(len(cmds) == 1 and names(cmds) == ["EVALSHA"] and
            b"lock:" in first_key(cmds[0]),
            "the hit is one round trip: the lookup-or-claim script",
            repr(cmds)[:300])
    t.eq(redis.keys(p + "lock:*"), [], "the hit left no claim behind")
    mark = mon.mark()
    r2 = b.create({"uri": u})
    cmds = per_call(mon.since(mark))
    t.check(r2.status == 200 and r2.header("x-cache") == "HIT" and
            r2.body == r.body, "instance B again -> the same 200 HIT",
            r2.short())
    t.eq(len(cmds), 0, "the second hit is answered by B's L1: no round trip")
    t.eq(sb.calls(), 1, "one upstream call in all")
    a.stop()
    b.stop()


def test_no_cache(h, sb, redis, mon):
    """no-cache refreshes: it claims, goes upstream and replaces the
    stored answer, in at most four round trips."""
    t = h.t
    sb.reset()
    p = "agwrt-nc:"
    gw = gateway(h, sb, redis, p)
    u = sb.sample("rt-nc.png")
    miss(t, gw, u, "first create")
    key = stored(redis, p)
    before = redis.cmd("GET", key[0]) if key else None
    mark = mon.mark()
    r = gw.create({"uri": u}, headers={"Cache-Control": "no-cache"})
    cmds = per_call(mon.since(mark))
    t.check(r.status == 200 and r.header("x-cache") == "MISS",
            "the same create with no-cache -> 200 MISS (refreshed)",
            r.short())
    t.eq(sb.calls(), 2, "no-cache called upstream again")
    after = redis.cmd("GET", key[0]) if key else None
    t.check(before is not None and after is not None and after != before
            and after.startswith(b"200\n"),
            "the stored answer was replaced by the fresh one",
            "%r -> %r" % (before, after))
    t.check(len(cmds) <= MAX_PER_MISS, "no-cache: %d commands to Redis (at "
            "most %d)" % (len(cmds), MAX_PER_MISS),
            repr(collections.Counter(names(cmds))))
    t.eq(redis.keys(p + "lock:*"), [], "no claim left behind")
    gw.stop()


def test_renewal(h, sb, redis, mon):
    """A renewal only when an attempt outlives a third of the claim's
    TTL (here 1500 + 500 + 1000 ms: renewed every 1000 ms)."""
    t = h.t
    sb.reset()
    p = "agwrt-renew:"
    gw = gateway(h, sb, redis, p, upstream={"request_timeout_ms": 1500})
    miss(t, gw, sb.sample("rt-renew-warm.png"), "warm-up")
    mark = mon.mark()
    miss(t, gw, sb.sample("rt-renew-fast.png"), "a fast attempt")
    fast = [c for c in per_call(mon.since(mark)) if b"lock:" in first_key(c)]
    sb.faults(latency_ms=1300)
    miss(t, gw, sb.sample("rt-renew-slow-warm.png"),
         "a 1.3 s attempt (loads the renewal script)")
    mark = mon.mark()
    miss(t, gw, sb.sample("rt-renew-slow.png"), "another 1.3 s attempt")
    all_slow = per_call(mon.since(mark))
    slow = [c for c in all_slow if b"lock:" in first_key(c)]
    sb.faults(latency_ms=0)
    t.eq(len(fast), 2, "a fast attempt: claim and release only, no renewal")
    t.eq(len(slow), 3, "a 1.3 s attempt: claim, one renewal, release")
    t.check(len(all_slow) <= MAX_PER_MISS, "the slow miss: %d commands (at "
            "most %d)" % (len(all_slow), MAX_PER_MISS),
            repr(collections.Counter(names(all_slow))))
    gw.stop()


def test_planted(h, sb, redis, mon):
    """A stored value out of shape is refused by the lookup-or-claim as a
    GET of it is: never served, replaced by the next answer."""
    t = h.t
    sb.reset()
    p = "agwrt-bad:"
    a = gateway(h, sb, redis, p, store={"l1_entries": 0})
    u = sb.sample("rt-bad-value.png")
    miss(t, a, u, "instance A creates")
    key = stored(redis, p)
    a.stop()
    t.eq(len(key), 1, "one stored answer")
    if not key:
        return
    forged = b"200\n{\"asset\":{\"id\":\"forged\"}}"
    for desc, val in [("an error status", b"503\n{\"code\":14}"),
                      ("garbage", b"garbage"),
                      ("a status past 599", b"999\n{}")]:
        redis.cmd("SET", key[0], val, "EX", 3600)
        b = gateway(h, sb, redis, p, store={"l1_entries": 0})
        r = b.create({"uri": u})
        t.check(r.status == 200 and r.header("x-cache") == "MISS" and
                b"forged" not in r.body and val not in r.body,
                "stored value holding %s: not served, a MISS instead" % desc,
                r.short()[:300])
        after = redis.cmd("GET", key[0])
        t.check(isinstance(after, bytes) and after.startswith(b"200\n{"),
                "stored value holding %s: replaced by the answer" % desc,
                repr(after)[:200])
        t.eq(redis.keys(p + "lock:*"), [], "no claim left behind (%s)" % desc)
        b.stop()
    # A well-formed 2xx is served as it is: the link to Redis is trusted.
    redis.cmd("SET", key[0], forged, "EX", 3600)
    b = gateway(h, sb, redis, p, store={"l1_entries": 0})
    r = b.create({"uri": u})
    t.check(r.status == 200 and r.header("x-cache") == "HIT" and
            r.body == forged[4:], "a well-formed stored answer is served "
            "as a HIT", r.short()[:300])
    b.stop()


def test_script_flush(h, sb, redis, mon):
    """Redis forgot the scripts (SCRIPT FLUSH, a restart): each is sent
    once more as EVAL, then EVALSHA again."""
    t = h.t
    sb.reset()
    p = "agwrt-flush:"
    gw = gateway(h, sb, redis, p)
    miss(t, gw, sb.sample("rt-flush-warm.png"), "warm-up")
    t.eq(redis.cmd("SCRIPT", "FLUSH"), "OK", "SCRIPT FLUSH")
    mark = mon.mark()
    miss(t, gw, sb.sample("rt-flush-1.png"), "a miss after the flush")
    first = names(per_call(mon.since(mark)))
    mark = mon.mark()
    miss(t, gw, sb.sample("rt-flush-2.png"), "the next miss")
    second = names(per_call(mon.since(mark)))
    t.check(first.count("EVAL") >= 1 and first.count("EVAL") <= 3,
            "after the flush: NOSCRIPT, then EVAL once per script",
            repr(first))
    t.check(set(second) == {"EVALSHA"} and len(second) <= MAX_PER_MISS,
            "the next miss: EVALSHA only again", repr(second))
    gw.stop()


def fixtures(h):
    """Redis, a sandbox that never limits, and MONITOR on that Redis:
    made once for the file; each scenario uses its own key prefix."""
    redis = h.shared("redis", H.Redis)
    sb = h.shared("sandbox-unlimited", lambda h: H.Sandbox(h, rate=100000))
    mon = h.shared("monitor", lambda h: Monitor(redis))
    return sb, redis, mon


def as_scenario(fn):
    def run(h):
        fn(h, *fixtures(h))
    run.__name__ = fn.__name__
    return H.scenario(run)


for _fn in (test_misses, test_hits, test_no_cache, test_renewal,
            test_planted, test_script_flush):
    as_scenario(_fn)


if __name__ == "__main__":
    H.run()
