"""Soak test (issue #12, SPEC sections 4 and 8): a fleet of asset-gateway
instances on one redis-server and the sandbox, under a steady offered
load over keep-alive connections, while a fault schedule runs: Redis
SIGKILL and restart (empty: no persistence), Redis SIGSTOP and SIGCONT,
one instance SIGKILL and restart on the same port, an upstream 503 span,
an upstream 429 span, SIGHUP on every instance, and SIGTERM of one
instance under load at the end.

Each check prints the measured number beside its bound, as a TAP line;
a table of phases is printed as TAP diagnostics; the last line is
"N passed, N failed". The exit status is 0 unless the run itself broke.

    AGW_BUILDDIR=build/plain python3 tests/soak/soak.py --seconds 600

Python 3 standard library only; every process started is stopped by PID,
every wait is bounded. tests/soak/README.md explains phases and bounds.
"""

import argparse
import collections
import http.client
import json
import os
import queue
import random
import select
import shutil
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness as H  # noqa: E402

# The fleet as the issue ran it: max_wait_ms 3000, 3 instances, and
# offered load / rate = 10 (400 req/s at rate 40 there; 150 req/s at rate
# 15 by default here, which two shared cores can drive): the fresh keys
# alone (15%) ask for 1.5 x rate, so the limiter queues and refuses, as it
# did in the run.
LOAD_PER_RATE = 10.0
BURST = 0
MAX_WAIT_MS = 3000
REDIS_COMMAND_TIMEOUT_MS = 500  # the default, named here for the bounds
# Every create is answered within this (default 30000). Shorter here so a
# call stuck on Redis shows within a CI run; still above what a call
# handled as SPEC §4 says can take: max_wait_ms 3000 + one upstream
# attempt (request_timeout_ms 3000) + Redis commands timing out (500 ms
# each, a few of them).
REQUEST_DEADLINE_MS = 8000
CLIENT_TIMEOUT_S = REQUEST_DEADLINE_MS / 1000.0 + 5.0
# Slack on the logged limiter wait: the gateway adds departure-guard holds
# (a few ms) to its planned waits.
WAIT_SLACK_MS = 200
# An instance must be back on Redis this soon after Redis returns.
RECONNECT_BOUND_S = 5.0
# Leak tripwire, not a tight bound: resident memory growth per process.
RSS_GROWTH_BOUND_KB = 64 * 1024
# Answers this long after an upstream fault span ends still belong to it.
FAULT_TAIL_S = 0.5
REPEAT_MEMORY_S = 60.0
SIGTERM_LATENCY_MS = 1000
READY_POLL_S = 0.1
# Clients let go of keep-alive connections idle this long, before the
# gateway's client_timeout_ms (10000) cuts them.
CLIENT_IDLE_S = 5.0
RSS_EVERY_S = 2.0


def now():
    return time.monotonic()


def sleep_until(t):
    while True:
        left = t - now()
        if left <= 0:
            return
        time.sleep(min(left, 0.2))


def overlaps(a0, a1, b0, b1):
    return a0 < b1 and b0 < a1


# ------------------------------------------------------------- the fleet

class Fleet:
    """redis-server, the sandbox and N gateways, with what happened to
    them and when: Redis down spans, instance generations, kills."""

    def __init__(self, h, args, run_id):
        self.h = h
        self.args = args
        self.redis = H.Redis(h)
        # Its own limit far above the gateway's: it measures, never limits.
        self.sb = H.Sandbox(h, rate=1000)
        self.prefix = "soak-%s:" % run_id
        self.gws = [self._gateway() for _ in range(args.instances)]
        self.base_names = [g.name for g in self.gws]
        self.gen = [0] * len(self.gws)
        self.routable = [True] * len(self.gws)
        self.procs = [[g.proc] for g in self.gws]   # per instance, per gen
        self.killed = {}      # (inst, gen) -> SIGKILL time
        self.termed = {}      # (inst, gen) -> SIGTERM time
        self.redis_down = []  # [start, back, kind]
        self.upstream_spans = []  # (start, end, kind)
        self.events = []      # (t, text)
        self.lock = threading.Lock()

    def _gateway(self):
        return H.Gateway(self.h, self.sb, overrides={
            "server": {"request_deadline_ms": REQUEST_DEADLINE_MS},
            "upstream": {"request_timeout_ms": 3000, "max_retries": 2},
            "store": {"backend": "redis", "redis_url": self.redis.url(),
                      "key_prefix": self.prefix,
                      "redis_command_timeout_ms": REDIS_COMMAND_TIMEOUT_MS},
            "ratelimit": {"rate": self.args.rate, "burst": BURST,
                          "max_wait_ms": MAX_WAIT_MS},
            "log": {"level": os.environ.get("AGW_SOAK_LOG_LEVEL", "info"),
                    "format": "json"},
        })

    def event(self, text):
        self.events.append((now(), text))

    # --- Redis -----------------------------------------------------------
    def redis_kill(self):
        t = now()
        self.redis.proc.signal(signal.SIGKILL)
        self.redis.proc.wait(5)
        self.redis.proc.stop()  # reaps it, drops it from the stop list
        self.redis_down.append([t, None, "kill"])
        self.event("redis SIGKILL")

    def redis_restart(self):
        self.redis.start()  # same port; answers PING when this returns
        self.redis_down[-1][1] = now()
        self.event("redis restarted (empty)")

    def redis_freeze(self):
        self.redis.proc.signal(signal.SIGSTOP)
        self.redis_down.append([now(), None, "freeze"])
        self.event("redis SIGSTOP")

    def redis_thaw(self):
        self.redis.proc.signal(signal.SIGCONT)
        self.redis_down[-1][1] = now()
        self.event("redis SIGCONT")

    # --- instances ---------------------------------------------------------
    def instance_kill(self, i):
        self.routable[i] = False
        g = self.gws[i]
        self.killed[(i, self.gen[i])] = now()
        g.proc.signal(signal.SIGKILL)
        g.proc.wait(5)
        g.proc.stop()
        self.event("instance %d SIGKILL" % i)

    def instance_restart(self, i):
        g = self.gws[i]
        # A new name keeps the old process's log files.
        g.name = "%s.r%d" % (self.base_names[i], self.gen[i] + 1)
        g.start()  # same config, same port
        with self.lock:
            self.gen[i] += 1
            self.procs[i].append(g.proc)
        ready = wait_until(lambda: readyz(g) == "ready", 5.0)
        self.routable[i] = True
        self.event("instance %d restarted (%s)" % (
            i, "ready" if ready else "not ready after 5 s"))

    def instance_term(self, i):
        self.routable[i] = False
        self.termed[(i, self.gen[i])] = now()
        self.gws[i].proc.signal(signal.SIGTERM)
        self.event("instance %d SIGTERM" % i)

    def sighup_all(self):
        for g in self.gws:
            g.proc.signal(signal.SIGHUP)
        self.event("SIGHUP to every instance")

    def alive(self, i):
        return self.gws[i].proc is not None and self.gws[i].proc.alive()


def wait_until(pred, timeout, step=0.05):
    deadline = now() + timeout
    while now() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def readyz(g, timeout=1.0):
    r = H.request(g.port, "GET", "/readyz", timeout=timeout)
    if r.status is None:
        return "down"
    j = r.json if isinstance(r.json, dict) else {}
    return j.get("status") or "status %d" % r.status


def sanitized(proc):
    """Whether PROC runs with AddressSanitizer (its quarantine keeps freed
    memory resident, so RSS growth says nothing about leaks there)."""
    try:
        with open("/proc/%d/maps" % proc.pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


def rss_kb(proc):
    try:
        with open("/proc/%d/status" % proc.pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
    except (OSError, ValueError):
        pass
    return None


# ------------------------------------------------------------- the load

class Load:
    """A fixed offered rate of creates, REPEAT_FRACTION of them repeats,
    the rest fresh keys; each with a unique X-Request-Id, sent round-robin
    to the routable instances over keep-alive connections (a pool of
    threads per instance, one connection each). A repeat is of the hot
    set, or (RECENT_SHARE of them) of one of the last RECENT_KEYS fresh
    keys: a fresh key is asked for again while its first create may still
    be under way, often on another instance, so flights have waiters."""

    REPEAT_FRACTION = 0.85
    RECENT_SHARE = 0.2
    RECENT_KEYS = 30

    def __init__(self, fleet, args, run_id):
        self.fleet = fleet
        self.rate = args.offered
        self.run_id = run_id
        self.rng = random.Random(run_id)
        self.hot = [fleet.sb.sample("soak-%s-hot-%04d.png" % (run_id, i))
                    for i in range(args.hot)]
        self.recent = collections.deque(maxlen=self.RECENT_KEYS)
        self.records = []
        self.queues = [queue.Queue() for _ in fleet.gws]
        self.stop_at = None
        self.stopped = threading.Event()
        self.dispatched = 0
        self.threads = []
        self.pool = args.pool

    def start(self, t0, t_end):
        self.t0 = t0
        self.stop_at = t_end
        for i in range(len(self.queues)):
            for _ in range(self.pool):
                th = threading.Thread(target=self._worker, args=(i,),
                                      daemon=True)
                th.start()
                self.threads.append(th)
        th = threading.Thread(target=self._dispatch, daemon=True)
        th.start()
        self.threads.append(th)

    def _dispatch(self):
        n = len(self.queues)
        rr = 0
        seq = 0
        while not self.stopped.is_set():
            due = self.t0 + seq / self.rate
            if due >= self.stop_at:
                break
            sleep_until(due)
            routable = [i for i in range(n) if self.fleet.routable[i]]
            if routable:
                inst = routable[rr % len(routable)]
                rr += 1
                key, fresh = self._key(seq)
                self.queues[inst].put((seq, due, inst, key, fresh))
                self.dispatched += 1
            seq += 1
        self.stopped.set()

    def _key(self, seq):
        """(key, whether it is new) for request SEQ."""
        if self.rng.random() < self.REPEAT_FRACTION:
            if self.recent and self.rng.random() < self.RECENT_SHARE:
                return self.rng.choice(self.recent), False
            return self.rng.choice(self.hot), False
        key = self.fleet.sb.sample("soak-%s-f%07d.png" % (self.run_id, seq))
        self.recent.append(key)
        return key, True

    def _worker(self, inst):
        conn = None
        port = self.fleet.gws[inst].port
        while True:
            try:
                job = self.queues[inst].get(timeout=0.2)
            except queue.Empty:
                if self.stopped.is_set():
                    break
                continue
            conn = self._one(conn, port, inst, job)
        if conn is not None:
            conn.close()

    def _one(self, conn, port, inst, job):
        seq, due, _, key, fresh = job
        rid = "soak-%s-%07d" % (self.run_id, seq)
        body = json.dumps({"uri": key}).encode()
        hdrs = {"Content-Type": "application/json", "X-Request-Id": rid}
        gen = self.fleet.gen[inst]
        if conn is not None and (now() - conn.soak_last > CLIENT_IDLE_S or
                                 conn.sock is None or
                                 select.select([conn.sock], [], [], 0)[0]):
            # Idle for long (the gateway cuts connections idle for
            # client_timeout_ms; a client lets go of them sooner, as load
            # balancers do), or closed by the instance (restart): a fresh
            # connection, as any keep-alive client does.
            conn.close()
            conn = None
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port,
                                              timeout=CLIENT_TIMEOUT_S)
            conn.soak_last = now()
            conn.soak_count = 0
        idle = now() - conn.soak_last
        conn.soak_count += 1
        sent = now()
        status = xcache = error = None
        close = False
        try:
            conn.request("POST", H.create_path(), body=body, headers=hdrs)
            r = conn.getresponse()
            r.read()
            status = r.status
            xcache = r.getheader("X-Cache")
            close = (r.getheader("Connection") or "").lower() == "close"
        except (OSError, http.client.HTTPException) as e:
            error = "%s: %s (request %d on its connection, idle %.0f ms " \
                "before)" % (type(e).__name__, e, conn.soak_count,
                             idle * 1000)
            close = True
        done = now()
        conn.soak_last = done
        self.records.append(Rec(seq, rid, inst, gen, key, fresh, due, sent,
                                done, status, xcache, error))
        if close:
            conn.close()
            return None
        return conn

    def join(self, timeout):
        deadline = now() + timeout
        for th in self.threads:
            th.join(max(0.0, deadline - now()))
        return sum(th.is_alive() for th in self.threads)


Rec = collections.namedtuple("Rec", "seq rid inst gen key fresh due sent "
                             "done status xcache error")


class Monitor:
    """Polls every instance's /readyz: when each went degraded and came
    back (ready) after a Redis fault."""

    def __init__(self, fleet):
        self.fleet = fleet
        self.samples = []  # (t, inst, gen, state)
        self.rss = {}      # process name -> [(t, kB) first, (t, kB) last]
        self.asan = False
        self.stop = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.th.start()

    def _run(self):
        last_rss = 0.0
        while not self.stop.is_set():
            for i, g in enumerate(self.fleet.gws):
                if self.fleet.alive(i) and (i, self.fleet.gen[i]) not in \
                        self.fleet.termed:
                    gen = self.fleet.gen[i]
                    self.samples.append((now(), i, gen, readyz(g, 0.5)))
            if now() - last_rss >= RSS_EVERY_S:
                last_rss = now()
                self.sample_rss()
            self.stop.wait(READY_POLL_S)

    def sample_rss(self):
        """First and last resident size seen of every gateway process."""
        with self.fleet.lock:
            procs = [p for gens in self.fleet.procs for p in gens]
        for p in procs:
            kb = rss_kb(p) if p.alive() else None
            if kb is not None and p.name not in self.rss and sanitized(p):
                self.asan = True
            if kb is not None:
                seen = self.rss.setdefault(p.name, [(now(), kb), None])
                seen[1] = (now(), kb)

    def finish(self):
        self.stop.set()
        self.th.join(5)


# ------------------------------------------------------------- schedule

Phase = collections.namedtuple("Phase", "name seconds run")


def build_schedule(fleet, seconds):
    """The phases: a fault cycle (repeated about once a minute on long
    runs), calm phases stretched to fill SECONDS, SIGTERM at the end."""
    n = len(fleet.gws)
    outage = 8.0 if seconds >= 90 else 6.0
    cycles = max(1, int(round(seconds / 60.0)))
    faults = [("redis-kill", outage), ("redis-freeze", 3.0),
              ("instance-kill", 3.0), ("upstream-5xx", 2.0),
              ("upstream-429", 2.0), ("sighup", 3.0)]
    calm_weights = [4, 5, 4, 3, 2, 3]  # before each fault, and after 429
    final = 3.0
    fault_total = cycles * sum(d for _, d in faults) + final
    calm_total = max(cycles * 6.0, seconds - fault_total)
    unit = calm_total / (cycles * sum(calm_weights))
    out = []
    for c in range(cycles):
        tag = "" if cycles == 1 else "#%d" % (c + 1)
        victim = c % n
        calm = [w * unit for w in calm_weights]
        out.append(Phase("calm" + tag, calm[0], None))
        out.append(Phase("redis-kill" + tag, outage, redis_kill_phase))
        out.append(Phase("recover" + tag, calm[1], None))
        out.append(Phase("redis-freeze" + tag, 3.0, redis_freeze_phase))
        out.append(Phase("calm" + tag, calm[2], None))
        out.append(Phase("instance-kill" + tag, 3.0,
                         lambda f, end, v=victim: instance_kill_phase(
                             f, end, v)))
        out.append(Phase("calm" + tag, calm[3], None))
        out.append(Phase("upstream-5xx" + tag, 2.0, upstream_5xx_phase))
        out.append(Phase("calm" + tag, calm[4], None))
        out.append(Phase("upstream-429" + tag, 2.0, upstream_429_phase))
        out.append(Phase("calm" + tag, calm[5], None))
        out.append(Phase("sighup" + tag, 3.0, sighup_phase))
    out.append(Phase("sigterm", final,
                     lambda f, end: sigterm_phase(f, end, n - 1)))
    return out


def redis_kill_phase(f, end):
    f.redis_kill()
    sleep_until(end)
    f.redis_restart()


def redis_freeze_phase(f, end):
    f.redis_freeze()
    sleep_until(end)
    f.redis_thaw()


def instance_kill_phase(f, end, i):
    f.instance_kill(i)
    time.sleep(1.0)
    f.instance_restart(i)
    sleep_until(end)


def upstream_5xx_phase(f, end):
    t = now()
    f.sb.faults(status=503)
    f.event("upstream answers 503")
    sleep_until(end)
    f.sb.faults(status=0)
    f.upstream_spans.append((t, now(), "5xx"))
    f.event("upstream 503 span over")


def upstream_429_phase(f, end):
    t = now()
    f.sb.faults(status=429, retry_after=1)
    f.event("upstream answers 429 Retry-After: 1")
    sleep_until(end)
    f.sb.faults(status=0)
    f.upstream_spans.append((t, now(), "429"))
    f.event("upstream 429 span over")


def sighup_phase(f, end):
    f.sighup_all()
    sleep_until(end)


def sigterm_phase(f, end, i):
    # Slow upstream answers, so that calls are in flight at the signal.
    f.sb.faults(latency_ms=SIGTERM_LATENCY_MS)
    f.event("upstream answers take %d ms" % SIGTERM_LATENCY_MS)
    sleep_until(min(end, now() + SIGTERM_LATENCY_MS / 1000.0 + 0.5))
    f.instance_term(i)
    sleep_until(end)
    f.sb.faults(latency_ms=0)


def run_schedule(f, phases):
    """Runs the phases back to back; returns [(name, start, end)]."""
    out = []
    for p in phases:
        t0 = now()
        end = t0 + p.seconds
        if p.run is None:
            sleep_until(end)
        else:
            p.run(f, end)
        out.append((p.name, t0, now()))
    return out


# ------------------------------------------------------------- analysis

def access_entries(fleet):
    """request id -> the JSON access line, from every process's log."""
    out = {}
    for gens in fleet.procs:
        for p in gens:
            for ln in p.stderr_text().splitlines():
                if '"access"' not in ln:
                    continue
                try:
                    j = json.loads(ln)
                except ValueError:
                    continue
                if isinstance(j, dict) and j.get("type") == "access":
                    out[j.get("request_id")] = j
    return out


class Spans:
    """When Redis was down, when every instance was back on it, and the
    windows of the upstream faults."""

    def __init__(self, fleet, monitor, t_end):
        self.down = [(d0, d1 if d1 is not None else t_end, kind)
                     for d0, d1, kind in fleet.redis_down]
        self.back = []      # per down span: (seconds until all ready, who)
        self.settled = []   # per down span: the time every instance was back
        for d0, d1, _ in self.down:
            took, lagging = back_on_redis(monitor, fleet, d1)
            self.back.append((took, lagging))
            self.settled.append(d1 + (took if took is not None
                                      else RECONNECT_BOUND_S * 2))
        # Restarted empty: a new store, so earlier creates do not count.
        self.epochs = [d1 for d0, d1, kind in self.down if kind == "kill"]
        self.upstream = list(fleet.upstream_spans)

    def redis_fault(self, t0, t1, tail=0.0):
        """Whether [t0, t1] overlaps Redis down or reconnecting."""
        return any(overlaps(t0, t1, d0, s + tail)
                   for (d0, _, _), s in zip(self.down, self.settled))

    def unsettled(self, t):
        return any(d0 <= t <= s for (d0, _, _), s in
                   zip(self.down, self.settled))

    def down_at(self, t):
        """Whether Redis itself was down (killed or stopped) at T."""
        return any(d0 <= t < d1 for d0, d1, _ in self.down)

    def just_before_fault(self, t, before=1.0):
        """Whether a Redis fault began within BEFORE s after T (the store
        write of an answer received at T may have failed)."""
        return any(t <= d0 <= t + before for d0, _, _ in self.down)

    def upstream_fault(self, t0, t1, kinds=("5xx", "429")):
        return any(overlaps(t0, t1, s, e + FAULT_TAIL_S)
                   for s, e, k in self.upstream if k in kinds)

    def epoch(self, t):
        return sum(1 for e in self.epochs if t >= e)

    def window_class(self, t):
        """The class of the 1 s window [t, t + 1)."""
        for d0, d1, _ in self.down:
            if t < d1 and t + 1.0 > d0:
                return "outage"
        for (_, d1, _), s in zip(self.down, self.settled):
            if d1 <= t < s + 1.0:
                return "reconnection"
        return "up"


def back_on_redis(monitor, fleet, t_back):
    """Seconds from T_BACK until every instance answered /readyz ready,
    and the instances that never did (within the bound's double)."""
    worst = 0.0
    lagging = []
    for i in range(len(fleet.gws)):
        ts = [t for t, inst, _, st in monitor.samples
              if inst == i and t >= t_back and st == "ready"]
        polled = [t for t, inst, _, _ in monitor.samples
                  if inst == i and t >= t_back]
        if not polled:
            continue  # not running then (killed or drained)
        if not ts or ts[0] - t_back > RECONNECT_BOUND_S * 2:
            lagging.append(i)
            continue
        worst = max(worst, ts[0] - t_back)
    return (None if lagging else worst), lagging


def windows(arrivals):
    """(start, count) for each arrival: arrivals in [t, t + 1 s)."""
    ts = sorted(arrivals)
    out = []
    j = 0
    for i, t in enumerate(ts):
        if j < i:
            j = i
        while j < len(ts) and ts[j] < t + 1.0:
            j += 1
        out.append((t, j - i))
    return out


def worst_by_class(spans, wins):
    best = {}
    for t, n in wins:
        c = spans.window_class(t)
        if n > best.get(c, (None, -1))[1]:
            best[c] = (t, n)
    return best


def duplicate_creates(spans, calls, kills):
    """Successful upstream creates of a key that an earlier successful
    create of the same key, both while Redis was up (not down, not
    reconnecting) and in the same Redis lifetime, made needless. An
    earlier create is no evidence when its holder was SIGKILLed soon
    after it (SPEC §3: the claim expires, a waiter takes over), or when a
    Redis fault began right after it (its answer may not be stored)."""
    first = {}
    dups = []
    for c in sorted(calls, key=lambda c: c["t"]):
        t = c["t"]
        if not (200 <= c["status"] < 300) or spans.unsettled(t):
            continue
        k = (c["uri"], c.get("id"), spans.epoch(t))
        if k in first:
            dups.append((first[k], t, c["uri"]))
        elif not (any(kt - 4.0 <= t <= kt for kt in kills) or
                  spans.just_before_fault(t)):
            first[k] = t
    return dups


def outage_repeats(spans, recs):
    """MISS answers (an upstream create) to calls sent while Redis was
    down, by an instance process that had itself answered the key 2xx in
    the minute before."""
    answered = {}
    repeats = []
    ok = sorted((r for r in recs if r.status is not None and
                 200 <= r.status < 300), key=lambda r: r.done)
    miss = sorted((r for r in ok if r.xcache == "MISS" and
                   spans.down_at(r.sent)), key=lambda r: r.sent)
    j = 0
    for m in miss:
        while j < len(ok) and ok[j].done < m.sent:
            answered[(ok[j].inst, ok[j].gen, ok[j].key)] = ok[j].done
            j += 1
        prev = answered.get((m.inst, m.gen, m.key))
        if prev is not None and m.sent - prev <= REPEAT_MEMORY_S:
            repeats.append(m)
    return repeats


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def fmt_statuses(counter):
    return " ".join("%s:%d" % (k if k is not None else "none", v)
                    for k, v in sorted(counter.items(),
                                       key=lambda kv: str(kv[0])))


# ---------------------------------------------------------------- checks

class Soak:
    def __init__(self, h, args):
        self.h = h
        self.t = h.t
        self.args = args
        self.run_id = os.urandom(3).hex()

    def check(self, measured, bound, ok, desc, diag=None):
        """A TAP line saying the measured number beside its bound."""
        return self.t.check(ok, "%s: measured %s, bound %s" % (
            desc, measured, bound), diag)

    def run(self):
        a = self.args
        f = self.fleet = Fleet(self.h, a, self.run_id)
        self.t.diag("redis :%d, sandbox :%d (--rate 1000), gateways %s; "
                    "rate %d burst %d max_wait_ms %d request_deadline_ms %d; "
                    "offered %.0f req/s (%.0f%% repeats of %d hot keys "
                    "and recent fresh ones, the rest fresh), %d s" % (
                        f.redis.port, f.sb.port, [g.port for g in f.gws],
                        a.rate, BURST, MAX_WAIT_MS, REQUEST_DEADLINE_MS,
                        a.offered, Load.REPEAT_FRACTION * 100, a.hot,
                        a.seconds))
        for g in f.gws:
            wait_until(lambda g=g: readyz(g) == "ready", 5.0)
        self.load = Load(f, a, self.run_id)
        self.warm_up()
        self.monitor = Monitor(f)
        self.monitor.start()
        phases = build_schedule(f, a.seconds)
        total = sum(p.seconds for p in phases)
        self.t0 = now()
        self.load.start(self.t0, self.t0 + total)
        try:
            self.phases = run_schedule(f, phases)
        finally:
            self.load.stopped.set()
        self.t_end = now()
        left = self.load.join(CLIENT_TIMEOUT_S + 5)
        self.monitor.sample_rss()
        self.monitor.finish()
        term = [k for k in f.termed]
        self.exit_status = {}
        for (i, gen) in term:
            p = f.procs[i][gen]
            self.exit_status[(i, gen)] = p.wait(15)
        self.calls = f.sb.call_list()
        self.stats = f.sb.stats()
        self.analyse(left)

    def warm_up(self):
        """Every hot key created once (at the fleet rate) before the load
        starts: the repeats are repeats from the first second."""
        f = self.fleet
        keys = self.load.hot
        t0 = now()
        bad = []
        for lo in range(0, len(keys), self.args.rate):
            batch = keys[lo:lo + self.args.rate]
            res = H.concurrent([
                lambda k=k, g=f.gws[n % len(f.gws)]: g.create(
                    {"uri": k}, timeout=CLIENT_TIMEOUT_S)
                for n, k in enumerate(batch)], timeout=30)
            bad += [r for r in res if not isinstance(r, H.Resp) or
                    r.status != 200]
            sleep_until(t0 + (lo // self.args.rate + 1) * 1.0)
        self.t.diag("warm-up: %d hot keys created in %.1f s, %d not 200"
                    % (len(keys), now() - t0, len(bad)))

    # --- the checks ----------------------------------------------------------
    def analyse(self, threads_left):
        f = self.fleet
        recs = self.load.records
        spans = self.spans = Spans(f, self.monitor, self.t_end)
        access = access_entries(f)
        arrivals = [c["t"] for c in self.calls]
        wins = windows(arrivals)
        self.print_table(recs, wins)
        self.print_events()
        self.check_load(recs, threads_left)
        self.check_faults_ran(spans)
        self.check_unanswered(recs, access)
        self.check_5xx(spans, recs, access)
        self.check_outage_repeats(spans, recs)
        self.check_windows(spans, wins)
        self.check_waits(spans, recs, access)
        self.check_duplicates(spans)
        self.check_reconnect(spans)
        self.check_drain(recs)
        self.check_sighup()
        self.check_rss()

    def check_load(self, recs, threads_left):
        planned = int(self.args.offered * (self.t_end - self.t0))
        lag = [r.sent - r.due for r in recs]
        self.t.diag("load: %d dispatched of %d planned, %d answered; send "
                    "lag p50 %.1f ms p99 %.1f ms max %.1f ms; %d threads "
                    "still running" % (
                        self.load.dispatched, planned, len(recs),
                        (pct(lag, 0.5) or 0) * 1000,
                        (pct(lag, 0.99) or 0) * 1000,
                        max(lag or [0]) * 1000, threads_left))
        self.check(self.load.dispatched, ">= 95%% of %d" % planned,
                   self.load.dispatched >= 0.95 * planned and
                   len(recs) == self.load.dispatched,
                   "the load generator offered %.0f req/s throughout "
                   "(requests sent)" % self.args.offered,
                   "%d records for %d dispatched" % (
                       len(recs), self.load.dispatched))

    def check_faults_ran(self, spans):
        f = self.fleet
        degraded = []
        for d0, d1, kind in spans.down:
            seen = {i for t, i, _, st in self.monitor.samples
                    if d0 <= t <= d1 + 1.0 and st == "degraded"}
            degraded.append("%s: %d degraded" % (kind, len(seen)))
        st = [c["status"] for c in self.calls]
        n503, n429 = st.count(503), st.count(429)
        restarted = sum(1 for g in f.gen if g > 0)
        ok = (len(spans.down) >= 2 and
              all(not x.endswith(": 0 degraded") for x in degraded) and
              n503 > 0 and n429 > 0 and restarted > 0 and f.termed)
        self.check("%s; upstream 503s %d, 429s %d; instances restarted %d"
                   % (", ".join(degraded), n503, n429, restarted),
                   "each fault seen", ok,
                   "the fault schedule took effect")

    def check_unanswered(self, recs, access):
        f = self.fleet
        lost, excused = [], collections.Counter()
        for r in recs:
            if r.status is not None:
                continue
            kt = f.killed.get((r.inst, r.gen))
            tt = f.termed.get((r.inst, r.gen))
            if kt is not None and r.done >= kt - 0.01:
                excused["instance SIGKILLed"] += 1
            elif tt is not None and r.sent >= tt:
                excused["sent after SIGTERM (not accepted)"] += 1
            else:
                lost.append(r)
        self.t.diag("no answer, instance not live: %s" % (
            dict(excused) or "none"))
        self.check(len(lost), 0, not lost,
                   "calls without an answer from a live instance",
                   "\n".join("%s inst %d gen %d sent +%.2f s, %.0f ms: "
                             "%s; access log: %s" % (
                                 r.rid, r.inst, r.gen, r.sent - self.t0,
                                 (r.done - r.sent) * 1000, r.error,
                                 access.get(r.rid))
                             for r in lost[:10]))

    def check_5xx(self, spans, recs, access):
        f = self.fleet
        outside, by_redis, orphans = [], [], []
        for r in recs:
            if r.status is None or r.status < 500:
                continue
            tt = f.termed.get((r.inst, r.gen))
            draining = tt is not None and r.done >= tt
            # In flight when an instance was killed: the flight it waited
            # on may have died with it (its claim expires after 6 s).
            orphan = any(r.sent <= kt <= r.done for kt in f.killed.values())
            up = spans.upstream_fault(r.sent, r.done)
            redis = spans.redis_fault(r.sent, r.done, FAULT_TAIL_S)
            if redis and not up and not draining:
                by_redis.append(r)
            elif not (redis or up or draining or orphan):
                outside.append(r)
            elif orphan:
                orphans.append(r)
        # A waiter handed its flight holder's error (cache "-") at the
        # moment an excused 5xx for the same key was answered shares that
        # cause, even if the waiter came after the fault: a Redis-caused
        # one counts as Redis's, an instance kill's is excused.
        def handed_by(rs):
            held = collections.defaultdict(list)
            for r in rs:
                held[r.key].append(r.done)
            return [r for r in outside
                    if access.get(r.rid, {}).get("cache") == "-" and any(
                        abs(r.done - t) < 0.5 for t in held[r.key])]
        handed = handed_by(by_redis)
        outside = [r for r in outside if r not in handed]
        by_redis += handed
        outside = [r for r in outside if r not in handed_by(orphans)]

        def show(rs):
            # cache "-": a waiter given its flight holder's error.
            return "\n".join("%s %d inst %d sent +%.2f s, %.0f ms, cache "
                             "%s, waited %s ms" % (
                                 r.rid, r.status, r.inst, r.sent - self.t0,
                                 (r.done - r.sent) * 1000,
                                 access.get(r.rid, {}).get("cache"),
                                 access.get(r.rid, {}).get(
                                     "ratelimit_wait_ms"))
                             for r in rs[:10])
        self.check(len(outside), 0, not outside,
                   "5xx answers outside fault windows", show(outside))
        codes = collections.Counter(r.status for r in by_redis)
        self.check("%d (%s; %d of them waiters handed their holder's "
                   "answer)" % (len(by_redis), fmt_statuses(codes) or "-",
                                len(handed)),
                   0, not by_redis,
                   "5xx answers caused by Redis failing (504s among them)",
                   show(by_redis))

    def check_outage_repeats(self, spans, recs):
        reps = outage_repeats(spans, recs)
        per = collections.Counter("inst %d" % r.inst for r in reps)
        keys = len({r.key for r in reps})
        self.check(len(reps), 0, not reps,
                   "creates repeated while Redis was down by an instance "
                   "that had itself answered the key in the minute before",
                   "%d keys; %s" % (keys, dict(per)))

    def check_windows(self, spans, wins):
        rate, n = self.args.rate, len(self.fleet.gws)
        best = worst_by_class(spans, wins)
        strict = rate + BURST + 1
        loose = rate + BURST + n
        # Where the limiter stands apart from the transitions (diagnosis).
        far = [c for t, c in wins if spans.window_class(t) == "up" and
               not any(d0 - 1.0 <= t <= s + 10.0 for (d0, _, _), s in
                       zip(spans.down, spans.settled))]
        self.t.diag("worst 1 s upstream window with Redis up and no Redis "
                    "fault within 10 s: %d (bound %d)" % (max(far or [0]),
                                                          strict))
        for cls, bound, desc in (
                ("up", strict, "worst 1 s upstream window with Redis up"),
                ("reconnection", strict, "worst 1 s upstream window "
                 "starting while the fleet reconnects to Redis"),
                ("outage", loose, "worst 1 s upstream window overlapping "
                 "a Redis fault (local fallback, each instance at rate / "
                 "%d: rate + burst + instances)" % n)):
            t, got = best.get(cls, (None, 0))
            where = "" if t is None else " at +%.2f s (%s)" % (
                t - self.t0, self.phase_at(t))
            self.check("%d%s" % (got, where), bound, got <= bound, desc)

    def phase_at(self, t):
        for name, s, e in self.phases:
            if s <= t < e:
                return name
        return "warm-up" if t < self.t0 else "after"

    def check_waits(self, spans, recs, access):
        bound = MAX_WAIT_MS + WAIT_SLACK_MS
        waits, pre, over = [], [], []
        for r in recs:
            a = access.get(r.rid)
            if a is None or r.status is None:
                continue
            if spans.upstream_fault(r.sent, r.done + 1.0, ("429",)):
                continue  # an upstream 429 pauses and re-queues (SPEC §4)
            w = a.get("ratelimit_wait_ms") or 0.0
            waits.append(w)
            if w > bound:
                over.append((w, r))
            if r.status == 429 or r.xcache == "MISS":
                pre.append((r.done - r.sent) * 1000 -
                           (a.get("upstream_ms") or 0.0))
        missing = sum(1 for r in recs if r.status is not None and
                      r.rid not in access)
        nz = [w for w in waits if w > 0]
        self.t.diag("limiter waits (access log, %d calls, %d answered "
                    "without an access line): %d waited, median %.0f ms, "
                    "p99 %.0f ms, max %.0f ms; callers' time before "
                    "upstream (latency - upstream_ms) p99 %.0f ms, max "
                    "%.0f ms" % (
                        len(waits), missing, len(nz), pct(nz, 0.5) or 0,
                        pct(nz, 0.99) or 0, max(nz or [0]),
                        pct(pre, 0.99) or 0, max(pre or [0])))
        over.sort(key=lambda x: -x[0])
        self.check("%.0f ms (%d calls over)" % (max(waits or [0]),
                                                len(over)),
                   "max_wait_ms %d + %d ms" % (MAX_WAIT_MS, WAIT_SLACK_MS),
                   not over, "worst limiter wait (ratelimit_wait_ms)",
                   "\n".join("%.0f ms: %s inst %d sent +%.2f s (%s)" % (
                       w, r.rid, r.inst, r.sent - self.t0,
                       self.phase_at(r.sent)) for w, r in over[:8]))

    def check_duplicates(self, spans):
        kills = list(self.fleet.killed.values())
        dups = duplicate_creates(spans, self.calls, kills)
        self.check(len(dups), 0, not dups,
                   "duplicate upstream creates while Redis is up",
                   "\n".join("%s at +%.2f s (%s), first at +%.2f s" % (
                       u.rsplit("/", 1)[-1], t - self.t0,
                       self.phase_at(t), t0 - self.t0)
                       for t0, t, u in dups[:10]))

    def check_reconnect(self, spans):
        worst, bad = 0.0, []
        for (d0, d1, kind), (took, lagging) in zip(spans.down, spans.back):
            if took is None:
                bad.append("%s: instances %s" % (kind, lagging))
            else:
                worst = max(worst, took)
        self.check("%.2f s%s" % (worst, "; never: " + ", ".join(bad)
                                 if bad else ""),
                   "%.0f s" % RECONNECT_BOUND_S,
                   not bad and worst <= RECONNECT_BOUND_S,
                   "every instance back on Redis (/readyz ready) after "
                   "each Redis fault")

    def check_drain(self, recs):
        f = self.fleet
        for (i, gen), tt in f.termed.items():
            mine = [r for r in recs if r.inst == i and r.gen == gen and
                    r.sent < tt]
            inflight = [r for r in mine if r.done >= tt]
            lost = [r for r in inflight if r.status is None]
            rc = self.exit_status.get((i, gen))
            st = collections.Counter(r.status for r in inflight)
            self.check("%d of %d in flight answered (%s), exit status %r"
                       % (len(inflight) - len(lost), len(inflight),
                          fmt_statuses(st) or "-", rc),
                       "all (at least 1), exit 0",
                       inflight and not lost and rc == 0,
                       "SIGTERM under load (instance %d): the drain "
                       "answers every call in flight" % i,
                       "\n".join("%s sent %.0f ms before SIGTERM: %s" % (
                           r.rid, (tt - r.sent) * 1000, r.error)
                           for r in lost[:10]))

    def check_sighup(self):
        f = self.fleet
        hups = [t for t, e in f.events if e.startswith("SIGHUP")]
        missing = []
        for i, gens in enumerate(f.procs):
            for gen, p in enumerate(gens):
                lived = [t for t in hups if self.lived(i, gen, t)]
                got = p.stderr_text().count("configuration reloaded from")
                if got < len(lived):
                    missing.append("%s: %d of %d" % (p.name, got,
                                                     len(lived)))
        self.check(len(missing), 0, not missing,
                   "SIGHUP: instances that did not log the reload",
                   "; ".join(missing))

    def lived(self, i, gen, t):
        """Whether instance I's generation GEN was running at T."""
        f = self.fleet
        start = max([kt for (ii, g), kt in f.killed.items()
                     if ii == i and g == gen - 1] or [0.0])
        end = f.killed.get((i, gen), f.termed.get((i, gen), float("inf")))
        return start < t < end

    def check_rss(self):
        rows, bad = [], []
        for name, (first, last) in sorted(self.monitor.rss.items()):
            if last is None:
                continue
            growth = last[1] - first[1]
            rows.append("%s %d -> %d kB over %.0f s" % (
                name, first[1], last[1], last[0] - first[0]))
            if growth > RSS_GROWTH_BOUND_KB:
                bad.append(name)
        self.t.diag("RSS start/end: " + "; ".join(rows))
        if self.monitor.asan:
            bad = []
            self.t.diag("AddressSanitizer build: its quarantine keeps freed "
                        "memory resident; the RSS bound is not applied")
        self.check("%s" % ", ".join(rows) if bad else
                   "max growth %d kB" % max(
                       [l[1] - fi[1] for fi, l in self.monitor.rss.values()
                        if l is not None] or [0]),
                   "not applied under AddressSanitizer" if self.monitor.asan
                   else "%d kB" % RSS_GROWTH_BOUND_KB, not bad,
                   "resident memory growth per gateway process (leak "
                   "tripwire)")

    # --- the report ------------------------------------------------------
    def print_table(self, recs, wins):
        d = self.t.diag
        d("")
        d("%-16s %13s %7s %8s %-34s %8s %6s" % (
            "phase", "start-end s", "offered", "answered", "statuses",
            "upstream", "max1s"))
        for name, s, e in self.phases:
            mine = [r for r in recs if s <= r.due < e]
            st = collections.Counter(r.status for r in mine)
            up = sum(1 for c in self.calls if s <= c["t"] < e)
            w = max([n for t, n in wins if s <= t < e] or [0])
            d("%-16s %6.1f-%6.1f %7d %8d %-34s %8d %6d" % (
                name, s - self.t0, e - self.t0, len(mine),
                sum(1 for r in mine if r.status is not None),
                fmt_statuses(st), up, w))
        d("")

    def print_events(self):
        f = self.fleet
        for t, e in f.events:
            self.t.diag("+%7.2f s  %s" % (t - self.t0, e))
        for (d0, d1, kind), (took, lag) in zip(self.spans.down,
                                               self.spans.back):
            self.t.diag("redis %s: down +%.2f..+%.2f s, every instance "
                        "ready again %s" % (
                            kind, d0 - self.t0, d1 - self.t0,
                            "after %.2f s" % took if took is not None
                            else "never (instances %s)" % lag))


# ------------------------------------------------------------------ main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=45.0,
                   help="length of the fault schedule (default 45)")
    p.add_argument("--instances", type=int, default=3)
    p.add_argument("--rate", type=int, default=None,
                   help="the fleet's [ratelimit] rate (default: offered "
                   "/ 10, as in the issue)")
    p.add_argument("--offered", type=float, default=150.0,
                   help="requests per second offered (default 150)")
    p.add_argument("--hot", type=int, default=100,
                   help="size of the hot set (default 100)")
    p.add_argument("--pool", type=int, default=80,
                   help="client threads per instance (default 80)")
    a = p.parse_args(argv)
    if a.rate is None:
        a.rate = max(1, int(round(a.offered / LOAD_PER_RATE)))
    if a.seconds < 30 or a.instances < 2 or a.rate < 1 or a.offered <= 0:
        p.error("--seconds >= 30, --instances >= 2, --rate >= 1, "
                "--offered > 0")
    return a


def main():
    args = parse_args(sys.argv[1:])
    H.run(lambda h: Soak(h, args).run(), summary=True)


if __name__ == "__main__":
    if shutil.which("redis-server") is None:
        print("1..0 # SKIP redis-server not installed")
        sys.exit(0)
    main()
