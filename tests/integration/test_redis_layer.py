"""The Redis layer (issue #3): redis.c, store_redis.c and flight_fleet.c against
a real redis-server, through tests/integration/redis_driver (one mode per
scenario, one result per output line). Each scenario has its own
redis-server (-k NAME runs one alone).

Set AGW_DRIVER_WRAPPER (e.g. "valgrind -q --leak-check=full
--error-exitcode=99") to run every driver under a checker: any report
makes its exit status non-zero, which fails the check for that run.
"""

import os
import re
import shlex
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

# Passwords in this file are test secrets: none may ever be printed.
PW = "Sekr1t-Auth-7f3a"
PW_SPECIAL = "p@ss:w/rd?Q-91c"  # needs percent-encoding in a URL
DRIVER_TIMEOUT_S = 60


# --------------------------------------------------------------- driver

def driver_path(h):
    return os.path.join(h.builddir, "tests", "integration", "redis_driver")


def wrapper():
    return shlex.split(os.environ.get("AGW_DRIVER_WRAPPER", ""))


class Run:
    """One finished driver run: exit status, output, lines by first word."""

    def __init__(self, rc, out, err):
        self.rc = rc
        self.out = out
        self.err = err
        self.lines = out.splitlines()

    def line(self, prefix):
        """The first line starting with PREFIX (and a space), or ''."""
        for ln in self.lines:
            if ln == prefix or ln.startswith(prefix + " "):
                return ln
        return ""

    def value(self, prefix):
        return self.line(prefix)[len(prefix) + 1:]

    def number(self, pattern):
        m = re.search(pattern, self.out)
        return int(m.group(1)) if m else None

    def text(self):
        return "exit %r\nstdout:\n%s\nstderr:\n%s" % (self.rc, self.out,
                                                        self.err[-3000:])


def drive(h, mode, *args, env=None):
    rc, out, err = H.run_cmd(wrapper() + [driver_path(h), mode] +
                             [str(a) for a in args], env=env,
                             timeout=DRIVER_TIMEOUT_S)
    return Run(rc, out, err)


def check_run(t, run, desc):
    """Exit 0 (so no checker report), no BUG line from the driver."""
    ok = run.rc == 0 and "BUG" not in run.out
    return t.check(ok, "%s: driver exits 0, no checker report" % desc,
                   run.text())


def wait_line(proc, pattern, after=0, timeout=10.0):
    """Index of the first stdout line at index >= AFTER matching PATTERN,
    or None after TIMEOUT s."""
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        lines = proc.stdout_text().splitlines()
        for i in range(after, len(lines)):
            if rx.search(lines[i]):
                return i
        time.sleep(0.05)
    return None


# ---------------------------------------------------------------- tests

GOOD_URLS = [
    ("redis://127.0.0.1:6379/0", "host=127.0.0.1 port=6379 path=- user=- "
     "password=- db=0"),
    ("redis://localhost", "host=localhost port=6379 path=- user=- "
     "password=- db=0"),
    ("REDIS://cache.internal:7000/", "host=cache.internal port=7000 path=- "
     "user=- password=- db=0"),
    ("redis://:Sekr1t-url-a@10.0.0.1:7000/3", "host=10.0.0.1 port=7000 "
     "path=- user=- password=<set> db=3"),
    ("redis://alice:Sekr1t-url-b@h:1/15", "host=h port=1 path=- "
     "user=alice password=<set> db=15"),
    ("redis://:Sekr1t%40url-c@h", "host=h port=6379 path=- user=- "
     "password=<set> db=0"),
    ("redis://[::1]:6380/2", "host=::1 port=6380 path=- user=- password=- "
     "db=2"),
    ("unix:///run/redis.sock", "host=- port=6379 path=/run/redis.sock "
     "user=- password=- db=0"),
    ("unix://:Sekr1t-url-d@/run/redis.sock?db=5", "host=- port=6379 "
     "path=/run/redis.sock user=- password=<set> db=5"),
]

BAD_URLS = [
    ("", "empty"),
    ("http://127.0.0.1:6379", "want redis://"),
    ("rediss://h:6379", "TLS"),
    ("redis://", "host is missing"),
    ("redis://h:0", "bad port"),
    ("redis://h:70000", "bad port"),
    ("redis://h:abc/1", "bad port"),
    ("redis://h/x", "database"),
    ("redis://h/-1", "database"),
    ("redis://h/1?timeout=5", "query"),
    ("redis://bad host/0", "bad host"),
    ("redis://Sekr1t-url-e@h", "without a password"),
    ("redis://:@h", "empty"),
    ("redis://:Sekr1t%zz-url-f@h", "percent-encoding in the password"),
    ("redis://:Sekr1t-url-g@[::1:6379", "IPv6"),
    ("redis://u%zz:Sekr1t-url-h@h", "percent-encoding in the user"),
    ("unix://", "socket path is missing"),
    ("unix://relative.sock", "socket path is missing"),
    ("unix:///tmp/s?timeout=1", "only ?db=N"),
    ("unix:///tmp/" + "s" * 200, "longer than"),
]

URL_SECRETS = ["Sekr1t-url-%s" % c for c in "abdegh"] + [
    "Sekr1t@url-c", "Sekr1t%40url-c", "Sekr1t%zz-url-f"]


def test_parse(h):
    t = h.t
    urls = [u for u, _ in GOOD_URLS] + [u for u, _ in BAD_URLS]
    run = drive(h, "parse", *urls)
    check_run(t, run, "parse")
    got = run.lines[:len(urls)]
    for i, (url, want) in enumerate(GOOD_URLS):
        line = got[i] if i < len(got) else ""
        t.eq(line, "ok " + want, "URL %r parses" % url)
    for j, (url, want) in enumerate(BAD_URLS):
        line = got[len(GOOD_URLS) + j] if len(GOOD_URLS) + j < len(got) \
            else ""
        t.check(line.startswith("err ") and want in line,
                "URL %r is refused: %s" % (url[:40], want), line)
    leaked = [s for s in URL_SECRETS if s in run.out or s in run.err]
    t.check(not leaked, "no password from %d URLs appears in any output"
            % len(urls), "leaked: %r" % leaked)


def test_basic(h, r):
    t = h.t
    run = drive(h, "basic", r.url())
    check_run(t, run, "basic")
    t.eq(run.value("early-sync"), "no",
         "a command sent while connecting does not call back inside the call")
    early = run.number(r"early fail:Redis is down[^\n]* after (\d+) ms")
    t.check(early is not None and early < 100,
            "a command sent before the connection is up fails at once",
            run.text())
    t.eq(run.value("rtt-before"), "-1", "RTT is -1 before any command")
    t.check(run.line("up is_up=1"), "connection comes up (is_up)", run.text())
    t.eq(run.value("ping"), "status:PONG", "PING answers PONG")
    rtt = run.number(r"rtt-after (\d+)")
    t.check(rtt is not None and 0 < rtt < 1000000,
            "RTT of the last command is set (%r us)" % rtt, run.text())
    t.eq(run.value("set"), "status:OK", "SET with a binary argv value")
    t.eq(run.value("strlen"), "int:8", "binary value stored with its NULs")
    t.eq(run.value("binary"), "same", "binary value read back unchanged")
    t.check(run.value("error-reply").startswith("err:ERR unknown command"),
            "a Redis error reply reaches the callback as a reply", run.text())
    t.eq(run.value("free-pending"), "5 of 5 failed with shutting down",
         "free: each pending command called back once with shutting down")
    t.check(len(re.findall(r"info redis basic: up", run.err)) == 1,
            "one 'up' info line in the log", run.err)


def test_free_inside(h, r):
    t = h.t
    run = drive(h, "free-inside", r.url())
    check_run(t, run, "free from callbacks")
    t.check("others-shut=3" in run.line("reply-free"),
            "free inside a reply callback: the other pending commands get "
            "'shutting down' once", run.text())
    t.eq(run.value("state-frees"), "1",
         "free inside the down callback (connection killed by the server)")
    t.check("freed=1" in run.line("deferred-free"),
            "free inside a deferred failure callback", run.text())


def test_auth(h):
    t = h.t
    r = H.Redis(h, password=PW)
    runs = []

    run = drive(h, "auth", r.url(password=PW))
    runs.append(run)
    check_run(t, run, "auth right")
    t.check(run.line("up") and run.value("ping") == "status:PONG",
            "AUTH with the right password: up, commands work", run.text())

    run = drive(h, "auth", "redis://default:%s@127.0.0.1:%d/0" % (PW, r.port))
    runs.append(run)
    t.check(run.line("up") and run.value("ping") == "status:PONG",
            "AUTH user password (ACL form) works", run.text())

    run = drive(h, "auth", r.url(password="Wrong-" + PW))
    runs.append(run)
    check_run(t, run, "auth wrong")
    t.check(run.line("not-up") and "WRONGPASS" in run.value("ping"),
            "wrong password: never up; commands fail at once naming "
            "WRONGPASS", run.text())
    downs = re.findall(r"warn redis auth: down: AUTH failed", run.err)
    t.eq(len(downs), 1, "wrong password: one warn line in 3 s of retries")

    run = drive(h, "auth", r.url())
    runs.append(run)
    t.check(run.line("not-up") and "NOAUTH" in run.value("ping"),
            "no password for a server that requires one: never up (NOAUTH)",
            run.text())

    leaked = [x for x in runs if PW in x.out or PW in x.err]
    t.check(not leaked, "the password appears in no output or log line",
            "\n".join(x.text() for x in leaked))
    r.stop()

    r2 = H.Redis(h, password=PW_SPECIAL)
    enc = "".join(c if c.isalnum() or c == "-" else "%%%02X" % ord(c)
                  for c in PW_SPECIAL)
    run = drive(h, "auth", "redis://:%s@127.0.0.1:%d/1" % (enc, r2.port))
    t.check(run.value("ping") == "status:PONG",
            "percent-encoded password with @ : / ? works", run.text())
    run2 = drive(h, "auth", "redis://:%s@127.0.0.1:%d/1" % (PW_SPECIAL,
                                                             r2.port))
    t.check(run2.value("ping") == "status:PONG",
            "unencoded password with @ : / ? works (last @ ends it)",
            run2.text())
    t.check(PW_SPECIAL not in run.out + run.err + run2.out + run2.err,
            "special password never printed")
    r2.stop()


def test_select(h, r):
    t = h.t
    run = drive(h, "set", r.url(db=3), "drv:db-key", "in-db-3")
    check_run(t, run, "select")
    t.eq(run.value("set"), "status:OK", "SET in db 3 (redis://.../3)")
    t.eq(drive(h, "get", r.url(db=3), "drv:db-key").value("get"),
         "str:in-db-3", "the key is visible in db 3")
    t.eq(drive(h, "get", r.url(db=0), "drv:db-key").value("get"), "nil",
         "the key is not visible in db 0")
    t.eq(r.cmd("EXISTS", "drv:db-key"), 0, "redis-server agrees (db 0)")


def test_timeout(h, r):
    t = h.t
    run = drive(h, "timeout", r.url())
    check_run(t, run, "timeout")
    t.eq(run.value("pause"), "status:OK", "second client: CLIENT PAUSE 1500")
    times = [int(x) for x in re.findall(r"^cmd\d fail:.* after (\d+) ms$",
                                        run.out, re.M)]
    t.check(len(times) == 3 and all(250 <= x <= 800 for x in times),
            "3 stalled commands all fail within the 300 ms timeout (%r)"
            % times, run.text())
    t.check(re.search(r"^cmd\d fail:timed out after 300 ms", run.out, re.M),
            "a stalled command reports 'timed out'", run.text())
    t.check(re.search(r"^cmd\d fail:a command timed out; connection "
                      r"recycled", run.out, re.M),
            "the other commands fail with the recycled connection",
            run.text())
    t.eq(run.value("is_up-after-timeout"), "0",
         "the stuck connection is recycled (down)")
    back = run.number(r"recovered after (\d+) ms")
    t.check(back is not None and back < 5000,
            "up again by itself after the pause (%r ms)" % back, run.text())
    t.eq(run.value("ping-after"), "status:PONG", "commands work again")
    t.eq(run.value("callbacks"), "1 1 1",
         "each timed-out command called back exactly once (late replies "
         "dropped)")


def test_restart(h):
    """Redis stopped: commands fail fast and the state is down; restarted
    on the same port: up again by itself."""
    t = h.t
    r = H.Redis(h)
    w = H.Proc(h, h.name("watch"), wrapper() + [driver_path(h), "watch",
                                                  r.url(), "14"])
    i_up = wait_line(w, r"state watch up")
    t.check(i_up is not None, "watcher comes up", w.tail())
    time.sleep(0.5)
    r.stop()
    t_stop = time.monotonic()
    i_down = wait_line(w, r"state watch down", after=i_up or 0, timeout=5)
    t.check(i_down is not None and time.monotonic() - t_stop < 3,
            "redis-server stopped: state down", w.tail())
    time.sleep(1.5)
    lines = w.stdout_text().splitlines()[(i_down or 0) + 1:]
    fails = [int(m.group(1)) for m in
             (re.search(r"ping done fail:\S.* in (\d+) ms", ln)
              for ln in lines) if m]
    t.check(len(fails) >= 5 and max(fails) < 50,
            "while down, commands fail fast (%d fails, max %r ms)"
            % (len(fails), max(fails) if fails else None), w.tail())
    r.start()
    t_start = time.monotonic()
    i_up2 = wait_line(w, r"state watch up", after=(i_down or 0) + 1,
                      timeout=8)
    took = time.monotonic() - t_start
    t.check(i_up2 is not None and took < 4,
            "restarted on the same port: up again by itself in %.1f s"
            % took, w.tail())
    i_ok = wait_line(w, r"ping done status:PONG", after=(i_up2 or 0),
                     timeout=3)
    t.check(i_ok is not None, "commands work after the restart", w.tail())
    rc = w.wait(30)
    t.eq(rc, 0, "watcher exits 0 (no checker report)")
    t.check("done ups=2 downs=1" in w.stdout_text(),
            "state callbacks: up, down, up (none per failed retry)",
            w.tail())
    err = w.stderr_text()
    t.eq(len(re.findall(r"warn redis watch: down", err)), 1,
         "one 'down' warn line for the whole outage")
    r.stop()


def test_store(h, r):
    t = h.t
    run = drive(h, "store", r.url())
    check_run(t, run, "store")
    t.check(re.search(r"^get k1 HIT status=201 len=265 ", run.out, re.M)
            and run.value("body") == "same",
            "put then get: HIT with status and the binary body unchanged",
            run.text())
    t.check(re.search(r"^get k3 HIT status=200 len=0 ", run.out, re.M),
            "an empty body round-trips", run.text())
    t.check(re.search(r"^get missing MISS ", run.out, re.M),
            "unknown key: MISS", run.text())
    t.eq(run.value("exists"), "int:1",
         "stored under key_prefix 'a:' key (agw:a:k1)")
    t.check(run.value("ttl") in ("int:1", "int:2"),
            "stored with the put() TTL (2 s): %s" % run.value("ttl"))
    t.check(re.search(r"^get bad ERROR ", run.out, re.M)
            and "is not \"<status>\\n<body>\"" in run.err,
            "a foreign value: ERROR, logged", run.text())
    lines = [ln for ln in run.lines if ln.startswith("get k3 ")]
    t.check(len(lines) == 2 and " MISS " in lines[1],
            "put with TTL 0 removes the answer", run.text())
    lines = [ln for ln in run.lines if ln.startswith("get k1 ")]
    t.check(len(lines) == 2 and " MISS " in lines[1],
            "expired after its TTL: MISS", run.text())

    run = drive(h, "store-down", "redis://127.0.0.1:%d/0" % H.free_port())
    check_run(t, run, "store down")
    ms = run.number(r"get k1 ERROR status=0 len=0 in (\d+) ms")
    t.check(ms is not None and ms < 100,
            "Redis unreachable: get answers ERROR at once (%r ms)" % ms,
            run.text())
    t.eq(len(re.findall(r"warn store: answer for k\d\.* not stored",
                        run.err)),
         1, "Redis unreachable: 3 dropped writes, one warn line (no flood)")


def fleet_basic(h, r, status, retry):
    t = h.t
    r.cmd("FLUSHALL")
    run = drive(h, "fleet-basic", r.url(), status, retry)
    desc = "fleet %d" % status
    check_run(t, run, desc)
    t.eq(run.value("leads"), "1 waiter-done 0",
         "%s: two instances join one key: exactly one LEAD, the other "
         "waits" % desc)
    ttl = run.number(r"lock-ttl int:(\d+)")
    t.check(ttl is not None and 4000 < ttl <= 5000,
            "%s: the claim has the claim TTL (%r ms)" % (desc, ttl),
            run.text())
    t.check(re.search(r"^\d+ [AB] ANSWER status=%d retry=%d " % (status,
                                                                  retry),
                      run.out, re.M),
            "%s: the waiter gets ANSWER with the holder's status and "
            "retry_after" % desc, run.text())
    t.check(re.search(r"^[AB] body same$", run.out, re.M),
            "%s: ... and its binary body" % desc, run.text())
    t.eq(run.value("lock-after"), "int:0", "%s: release deletes the claim"
         % desc)
    copy = run.number(r"copy-ttl int:(\d+)")
    t.check(copy is not None and 9000 < copy <= 10000,
            "%s: the answer copy lives 10 s (%r ms)" % (desc, copy))
    t.eq(run.value("calls"), "1 1", "%s: one callback each" % desc)


def test_fleet(h, r):
    t = h.t
    fleet_basic(h, r, 201, -1)
    fleet_basic(h, r, 502, 7)

    r.cmd("FLUSHALL")
    run = drive(h, "fleet-copy", r.url())
    check_run(t, run, "fleet copy")
    ms = run.number(r"outcome ANSWER after (\d+) ms body=copied-body")
    t.check(ms is not None and ms < 300,
            "late subscriber: the holder's answer copy answers it (%r ms)"
            % ms, run.text())

    r.cmd("FLUSHALL")
    run = drive(h, "fleet-stale", r.url())
    check_run(t, run, "fleet stale copy")
    ms = run.number(r"outcome LEAD after (\d+) ms")
    t.check(ms is not None and 780 <= ms < 1500,
            "a copy from another claim is ignored: LEAD when the claim "
            "expires (%r ms, claim 800 ms)" % ms, run.text())

    r.cmd("FLUSHALL")
    run = drive(h, "fleet-dead", r.url(), 800)
    check_run(t, run, "fleet dead holder")
    t.eq(run.value("waiting"), "1 1", "holder silent: both waiters wait")
    ms = run.number(r"first LEAD after (\d+) ms")
    t.check(ms is not None and 780 <= ms < 1600,
            "holder never renews or releases: a waiter takes over after the "
            "claim TTL (%r ms, TTL 800)" % ms, run.text())
    t.eq(run.value("leads"), "1", "exactly one waiter takes over")
    t.eq(run.value("other-waiting"), "1",
         "the other keeps waiting on the new holder")
    t.eq(run.value("other"), "ANSWER", "... and gets the new holder's answer")
    t.check(re.search(r"^[BC] body same$", run.out, re.M),
            "... with its body", run.text())

    r.cmd("FLUSHALL")
    run = drive(h, "fleet-renew", r.url())
    check_run(t, run, "fleet renew")
    t.eq(run.value("b-waiting-after-1600ms"), "1",
         "a renewed 500 ms claim is not taken over in 1.6 s")
    t.eq(run.value("b"), "ANSWER", "the waiter gets the answer")

    r.cmd("FLUSHALL")
    run = drive(h, "fleet-cancel", r.url())
    check_run(t, run, "fleet cancel")
    t.check(run.value("numsub-waiting").endswith("int:1]"),
            "one subscription for the waiting instance", run.text())
    t.check(run.value("numsub-after-cancel").endswith("int:0]"),
            "cancel drops the subscription", run.text())
    t.eq(run.value("cancelled-callbacks"), "0",
         "cancelled waits (while claiming, while waiting) never call back")

    r.cmd("FLUSHALL")
    run = drive(h, "fleet-many", r.url(), 100)
    check_run(t, run, "fleet many")
    t.check(run.value("numsub").endswith("int:1]"),
            "100 local waiters on one key: one SUBSCRIBE", run.text())
    t.eq(run.value("answers"), "100 same 100 of 100",
         "all 100 get the answer once")

    r.cmd("FLUSHALL")
    run = drive(h, "fleet-subdrop", r.url())
    check_run(t, run, "fleet sub dropped")
    t.eq(run.value("b-waiting"), "1", "waiter subscribed and waiting")
    t.eq(run.value("b"), "UNAVAILABLE",
         "its subscriber connection killed: UNAVAILABLE (goes on locally)")
    t.eq(run.value("sub-back"), "1", "the subscriber reconnects by itself")
    t.eq(run.value("b-calls"), "1", "one callback only")

    run = drive(h, "fleet-down", "redis://127.0.0.1:%d/0" % H.free_port())
    check_run(t, run, "fleet down")
    ms = run.number(r"outcome UNAVAILABLE after (\d+) ms")
    t.check(ms is not None and ms < 100,
            "Redis unreachable: join answers UNAVAILABLE at once (%r ms)" % ms,
            run.text())

    r.cmd("FLUSHALL")
    run = drive(h, "fleet-free", r.url())
    check_run(t, run, "fleet free")
    t.eq(run.value("freed-callbacks"), "0",
         "agw_flight_tier_free: pending waits get no callback")


def scenario(test, with_redis=True):
    """TEST(h[, r]) as a scenario: the driver checked, the file's
    passwords redacted, a redis-server of its own when it takes one."""
    def run(h):
        if not os.access(driver_path(h), os.X_OK):
            raise RuntimeError("driver missing: %s" % driver_path(h))
        if PW not in h.t.redact:
            h.t.redact += [PW, PW_SPECIAL] + URL_SECRETS
        if with_redis:
            test(h, H.Redis(h))
        else:
            test(h)
    run.__name__ = test.__name__[len("test_"):]
    return H.scenario(run)


parse = scenario(test_parse, False)
basic = scenario(test_basic)
free_inside = scenario(test_free_inside)
auth = scenario(test_auth, False)
select = scenario(test_select)
timeout = scenario(test_timeout)
store = scenario(test_store)
fleet = scenario(test_fleet)
restart = scenario(test_restart, False)


if __name__ == "__main__":
    if shutil.which("redis-server") is None:
        print("1..0 # SKIP redis-server not installed")
        sys.exit(0)
    H.run()
