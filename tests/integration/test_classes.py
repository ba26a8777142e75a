"""Priority classes and per-caller caps (issue #16, SPEC section 11).

The fleet GCRA script's arithmetic, EVALed on a real redis-server: how
far ahead each class books, the batch backlog bound and its wake queue,
the per-caller cap and that a refusal spends nothing. Then 2-3 gateways
on one redis-server: a batch caller far over the rate beside an
interactive one (the interactive one is never refused and never queues
behind more than batch_max_backlog_ms), a capped caller held to its cap
at the sandbox, the fleet bound, and caps applied locally while Redis is
down.
"""

import ast
import hashlib
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

# The script tests' emission interval (us): long beside the time between
# two script calls, even on a loaded machine.
T = 100000
# Slack on Redis's clock between two script calls of one check (us).
CLOCK_SLACK_US = 30000


# -------------------------------------------------------------- helpers

def gcra_script(h):
    """The fleet GCRA script, read from limiter_fleet.c's C literal."""
    src = open(os.path.join(h.srcdir, "src", "limiter_fleet.c")).read()
    body = src.split("static const char gcra_lua[] =", 1)[1]
    body = body.split(";\n", 1)[0]
    return "".join(ast.literal_eval(lit)
                   for lit in re.findall(r'"(?:[^"\\]|\\.)*"', body))


class Script:
    """EVALs the GCRA script with one key prefix."""

    def __init__(self, rd, text, prefix, caller="x"):
        self.rd, self.text, self.p = rd, text, prefix
        self.keys = [prefix + "rl", prefix + "rl:pause",
                     prefix + "rl:cap:" + caller, prefix + "rl:batchq",
                     prefix + "rl:capq:" + caller]

    def call(self, interval, max_wait, batch=-1, cap=0, retry=False,
             tau=0):
        r = self.rd.cmd("EVAL", self.text, "5", *self.keys,
                        str(interval), str(tau), str(max_wait), str(batch),
                        str(cap), "1" if retry else "0")
        if not isinstance(r, list) or len(r) != 5:
            raise RuntimeError("script answered %r" % (r,))
        return r

    def get(self, key):
        return self.rd.cmd("GET", self.p + key)


def sha(token):
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def clients(h, callers):
    """CALLERS: [(name, extra lines)] -> (clients file, {name: token})."""
    toks, out = {}, []
    for name, extra in callers:
        toks[name] = "agw-tok-%s-%s" % (name, os.urandom(12).hex())
        out += ["[%s]" % name, "token_sha256 = %s" % sha(toks[name]),
                "businesses = *"] + extra + [""]
    h.t.redact += list(toks.values())
    return h.write(h.name("clients-") + ".ini", "\n".join(out)), toks


def fleet(h, sb, rd, prefix, cf, n, ratelimit):
    return [H.Gateway(h, sb, overrides={
        "store": {"backend": "redis", "redis_url": rd.url(),
                  "key_prefix": prefix},
        "auth": {"mode": "token", "clients_file": cf},
        "ratelimit": ratelimit}) for _ in range(n)]


def live_instances(rd, prefix):
    now_s, now_us = rd.cmd("TIME")
    now_ms = int(now_s) * 1000 + int(now_us) // 1000
    members = rd.cmd("ZRANGE", prefix + "hb", 0, -1, "WITHSCORES") or []
    return sum(1 for i in range(1, len(members), 2)
               if int(float(members[i])) > now_ms)


class Load:
    """THREADS loops of creates by token TOK spread over GWS until
    STOP_AT (time.monotonic()), each pausing EVERY_S between calls."""

    def __init__(self, sb, gws, tok, tag, threads, stop_at, every_s=0.0):
        self.results = []
        self.lock = threading.Lock()
        self.sb, self.gws, self.tok, self.tag = sb, gws, tok, tag
        self.stop_at, self.every_s = stop_at, every_s
        self.threads = [threading.Thread(target=self.loop, args=(i,),
                                         daemon=True)
                        for i in range(threads)]
        for th in self.threads:
            th.start()

    def loop(self, i):
        k = 0
        while time.monotonic() < self.stop_at and k < 10000:
            g = self.gws[(i + k) % len(self.gws)]
            u = self.sb.sample("%s-%d-%d.png" % (self.tag, i, k))
            r = g.create({"uri": u}, headers=bearer(self.tok), timeout=40)
            with self.lock:
                self.results.append(r)
            k += 1
            if self.every_s:
                time.sleep(self.every_s)

    def join(self, timeout):
        deadline = time.monotonic() + timeout
        for th in self.threads:
            th.join(max(0.0, deadline - time.monotonic()))

    def statuses(self):
        out = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out


def access(gws, klass):
    return [j for g in gws for j in H.log_records(g)
            if j.get("type") == "access" and j.get("class") == klass]


# ------------------------------------------------- the script's arithmetic

@H.scenario
def script_interactive_books_to_max_wait(h):
    """interactive: books up to max_wait ahead; a refusal spends nothing"""
    t = h.t
    rd = H.Redis(h)
    s = Script(rd, gcra_script(h), "si:")
    waits = [s.call(T, 5 * T) for _ in range(6)]
    t.check(all(r[0] == 1 for r in waits), "interval 100 ms, max wait "
            "500 ms: 6 calls at once are all granted", repr(waits))
    t.check(all(abs(r[1] - T * i) <= CLOCK_SLACK_US
                for i, r in enumerate(waits)),
            "their waits are 0, 100, ..., 500 ms", repr([r[1] for r in waits]))
    tat = s.get("rl")
    r = s.call(T, 5 * T)
    t.check(r[0] == 0 and r[1] > 5 * T, "the 7th is refused: its slot is "
            "past the max wait", repr(r))
    t.eq(s.get("rl"), tat, "the refusal left the TAT as it was")
    t.eq(r[4], 0, "no cap: the cap field is 0")


@H.scenario
def script_batch_backlog(h):
    """batch: books only while the backlog is within its bound"""
    t = h.t
    rd = H.Redis(h)
    s = Script(rd, gcra_script(h), "sb:")
    far = 60 * 1000000
    got = [s.call(T, far, batch=3 * T) for _ in range(3)]
    t.check([r[0] for r in got] == [1, 1, 1], "bound 300 ms, interval "
            "100 ms: 3 batch calls book (their slots end 100, 200, 300 ms "
            "ahead)", repr(got))
    tat = s.get("rl")
    r1 = s.call(T, far, batch=3 * T)
    t.check(r1[0] == 0 and T - CLOCK_SLACK_US <= r1[1] <= T,
            "the 4th (its slot would end 400 ms ahead) is refused and told "
            "to ask again when the backlog has drained to 200 ms (~100 ms)",
            repr(r1))
    t.eq(s.get("rl"), tat, "the refusal booked nothing")
    r2 = s.call(T, far, batch=3 * T)
    t.check(r2[0] == 0 and T - CLOCK_SLACK_US <= r2[1] - r1[1] <= T,
            "the 5th gets the next turn, one interval later", repr((r1, r2)))
    rr = s.call(T, far, batch=3 * T, retry=True)
    t.check(rr[0] == 0 and T - CLOCK_SLACK_US <= rr[1] - r2[1] <= T,
            "a call asking again too early takes a new turn, after those "
            "given already", repr((r2, rr)))
    ri = s.call(T, 2 * 1000000)
    t.check(ri[0] == 1 and ri[1] <= 3 * T,
            "an interactive call books at once behind at most the bound "
            "of batch work (wait <= 300 ms)", repr(ri))
    r = s.call(T, 5000, batch=3 * T)
    t.check(r[0] == 0 and r[1] > 5000, "a batch turn past its max wait: "
            "refused for good", repr(r))
    time.sleep(0.45)
    r = s.call(T, far, batch=3 * T, retry=True)
    t.check(r[0] == 1, "once drained, the batch call asking again books",
            repr(r))


@H.scenario
def script_cap(h):
    """cap: a second GCRA per caller; a slot only when both grant it"""
    t = h.t
    rd = H.Redis(h)
    s = Script(rd, gcra_script(h), "sc:")
    r = s.call(10000, 2000000, cap=100000)
    t.check(r[0] == 1 and r[1] == 0 and
            abs(r[4] - 100000) <= CLOCK_SLACK_US,
            "cap 10/s: the first call goes at once; the cap's TAT is 100 ms "
            "ahead", repr(r))
    tat, ctat = s.get("rl"), s.get("rl:cap:x")
    r = s.call(10000, 2000000, cap=100000)
    t.check(r[0] == 0 and 100000 - CLOCK_SLACK_US <= r[1] <= 100000,
            "the second is refused by the cap and told to ask in ~100 ms "
            "(the fleet would have granted it)", repr(r))
    t.eq((s.get("rl"), s.get("rl:cap:x")), (tat, ctat),
         "the cap's refusal spent neither the fleet's budget nor the cap's")
    other = Script(rd, s.text, "sc:", caller="y")
    r = other.call(10000, 2000000, cap=100000)
    t.check(r[0] == 1, "another caller's cap is its own key", repr(r))
    for _ in range(10):
        s.call(T, 2000000)  # books the fleet 1 s ahead
    time.sleep(0.12)
    ctat = s.get("rl:cap:x")
    r = s.call(10000, 100000, cap=100000, retry=True)
    t.check(r[0] == 0 and r[1] > 100000,
            "the cap would grant, the fleet's slot is past the max wait: "
            "refused", repr(r))
    t.eq(s.get("rl:cap:x"), ctat, "... and the cap spent nothing")


# ------------------------------------------------------------ the fleet

@H.scenario
def batch_beside_interactive(h):
    """batch far over the rate, interactive at a fraction: interactive is
    never refused and waits at most the batch bound (+ slack)"""
    t = h.t
    sb = h.sandbox()
    rd = H.Redis(h)
    rate, bound_ms, run_s = 40, 100, 6.0
    cf, toks = clients(h, [("backfill", ["class = batch"]),
                           ("uploader", [])])
    gws = fleet(h, sb, rd, "cb:", cf, 3, {
        "rate": rate, "max_wait_ms": 2000, "batch_max_backlog_ms": bound_ms,
        "batch_max_wait_ms": 5000})
    H.wait_until(lambda: live_instances(rd, "cb:") == 3, 5, step=0.05)
    sb.reset()
    stop_at = time.monotonic() + run_s
    batch = Load(sb, gws, toks["backfill"], "cb-b", 40, stop_at)
    inter = Load(sb, gws, toks["uploader"], "cb-i", 2, stop_at, 0.2)
    batch.join(run_s + 15)
    inter.join(run_s + 15)
    ist, bst = inter.statuses(), batch.statuses()
    t.diag("interactive %r, batch %r" % (ist, bst))
    t.check(set(ist) == {200} and sum(ist.values()) >= 20,
            "the interactive caller: every call 200 (%d calls)"
            % sum(ist.values()), repr(ist))
    waits = sorted(j.get("ratelimit_wait_ms", 0)
                   for j in access(gws, "interactive"))
    interval_ms = 1000.0 / rate
    # The bound of batch work, one interval for the other interactive
    # thread's call ahead, and 40 ms for timers on a loaded machine.
    limit = bound_ms + interval_ms + 40
    t.diag("interactive limiter waits: max %.1f ms, p50 %.1f ms over %d"
           % (waits[-1] if waits else -1,
              waits[len(waits) // 2] if waits else -1, len(waits)))
    t.check(waits and waits[-1] <= limit, "interactive waits stay within "
            "batch_max_backlog_ms + 1 interval + 40 ms (%.0f ms)" % limit,
            repr(waits[-5:]))
    t.check(bst.get(200, 0) > 0 and set(bst) <= {200, 429},
            "the batch caller gets 200s (or 429 past batch_max_wait_ms)",
            repr(bst))
    ts = sb.arrivals()
    worst, members = H.worst_window(ts)
    util = (len(ts) - 1) / (ts[-1] - ts[0]) / rate if len(ts) > 1 else 0
    t.diag("sandbox: %d calls, worst 1 s window %d, utilization %.3f"
           % (len(ts), worst, util))
    t.check(worst <= rate + H.ARRIVAL_SLACK, "the fleet bound holds: no "
            "1 s window at the sandbox over %d + %d (%d)"
            % (rate, H.ARRIVAL_SLACK, worst), repr(members[:5]))
    t.check(util >= 0.85, "batch takes the rest: utilization >= 85%% "
            "(%.1f%%)" % (util * 100), "")
    t.check(access(gws, "batch"), "access lines carry class=batch", "")
    m = H.metric(gws[0], "upstream_calls_total", caller="backfill",
                 **{"class": "batch"})
    t.check(m > 0, "upstream_calls_total{caller,class=batch} counts the "
            "batch caller", repr(m))


@H.scenario
def capped_caller(h):
    """max_rate: never more than the cap in any 1 s at the sandbox"""
    t = h.t
    sb = h.sandbox()
    rd = H.Redis(h)
    cap, run_s = 5, 4.0
    cf, toks = clients(h, [("capped", ["max_rate = %d" % cap])])
    gws = fleet(h, sb, rd, "cc:", cf, 3, {"rate": 40, "max_wait_ms": 1500})
    H.wait_until(lambda: live_instances(rd, "cc:") == 3, 5, step=0.05)
    sb.reset()
    load = Load(sb, gws, toks["capped"], "cc", 12, time.monotonic() + run_s)
    load.join(run_s + 10)
    st = load.statuses()
    ts = sb.arrivals()
    worst, members = H.worst_window(ts)
    t.diag("capped caller: %r; sandbox %d calls, worst window %d"
           % (st, len(ts), worst))
    t.check(worst <= cap + H.ARRIVAL_SLACK, "no 1 s window at the sandbox "
            "holds more than max_rate %d + %d (%d)"
            % (cap, H.ARRIVAL_SLACK, worst), repr(members))
    t.check(len(ts) >= cap * (run_s - 1), "the cap is used: %d calls in "
            "%.0f s" % (len(ts), run_s), "")
    t.check(set(st) <= {200, 429} and st.get(429, 0) > 0,
            "calls past max_wait_ms behind the cap get 429", repr(st))
    r429 = [r for r in load.results if r.status == 429]
    if r429:
        H.check_error(t, r429[0], 429, 8, "a call over its cap")
        t.check(re.fullmatch(r"[1-9][0-9]*",
                             r429[0].header("retry-after") or ""),
                "its 429 carries Retry-After", r429[0].short())
    ok = [r for r in load.results if r.status == 200]
    t.check(ok and all(r.header("ratelimit-limit") == str(cap) for r in ok),
            "RateLimit-Limit is the caller's cap",
            repr({r.header("ratelimit-limit") for r in ok}))


@H.scenario
def degraded_caps(h):
    """Redis down: each instance applies the cap locally, scaled"""
    t = h.t
    sb = h.sandbox()
    rd = H.Redis(h)
    cap, run_s = 6, 4.0
    cf, toks = clients(h, [("capped", ["max_rate = %d" % cap])])
    gws = fleet(h, sb, rd, "cd:", cf, 2, {"rate": 40, "max_wait_ms": 1500,
                                           "expected_instances": 2})
    H.wait_until(lambda: all("live instances sharing the limit: 2"
                             in g.log_text() for g in gws), 5, step=0.05)
    rd.stop()
    H.wait_until(lambda: all("limiting this instance locally" in
                             g.log_text() for g in gws), 5, step=0.05)
    sb.reset()
    load = Load(sb, gws, toks["capped"], "cd", 12, time.monotonic() + run_s)
    load.join(run_s + 10)
    ts = sb.arrivals()
    worst, members = H.worst_window(ts)
    t.diag("degraded, capped caller: %r; sandbox %d calls, worst window %d"
           % (load.statuses(), len(ts), worst))
    t.check(worst <= cap + H.ARRIVAL_SLACK, "each instance applies its "
            "share of the cap: no 1 s window over %d + %d (%d)"
            % (cap, H.ARRIVAL_SLACK, worst), repr(members))
    t.check(len(ts) >= (cap / 2.0) * (run_s - 1), "the cap's shares are "
            "used: %d calls" % len(ts), "")


if __name__ == "__main__":
    H.run()
