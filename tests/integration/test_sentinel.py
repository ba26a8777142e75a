"""Redis high availability through Sentinel (issue #15, SPEC section 10),
with real processes on loopback: a redis-server master, a replica
(--replicaof), three redis-sentinel processes (quorum 2, down after
1000 ms) and two gateway instances, each with two workers.

* failover: the master is SIGKILLed under a steady client loop: every
  call is answered, the gateways go degraded and then shared on the new
  master (/readyz's redis_master), a create replicated before (WAIT) is a
  HIT after, dedupe and the fleet limit hold on the new master, the old
  master back as a replica changes nothing;
* a sentinel dying while the gateways listen to it: they move to the next
  and still follow a failover;
* a +switch-master for another master name is ignored;
* all sentinels unreachable at start: the gateway starts degraded and
  goes shared once a sentinel answers (README, "Redis with Sentinel");
* a sentinel that requires AUTH: the right sentinel_password_file works,
  a wrong one leaves the gateway degraded, saying why, never the password;
* a sentinel that does not know the master (nil): degraded until it does;
* MASTERDOWN from a demoted master: the gateway asks again, runs degraded
  while the sentinels know no master, and goes shared on the next one.

Each scenario runs alone with -k NAME. The sandbox runs with --rate 1000:
its own limit never interferes.
"""

import collections
import os
import re
import shutil
import signal
import socketserver
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MASTER = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
SWITCH_TIMEOUT_S = 20  # SIGKILL to shared mode on the new master, at most


# ------------------------------------------------------------ the load

# ------------------------------------------------------------- processes

class Server(H.Redis):
    """redis-server as H.Redis, optionally a replica of REPLICAOF (a
    port); full syncs start at once (no diskless delay)."""

    def __init__(self, h, replicaof=None, port=None):
        self.replicaof = replicaof
        super().__init__(h, port=port)

    def start(self):
        args = ["redis-server", "--port", self.port, "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--repl-diskless-sync-delay", "0"]
        if self.replicaof:
            args += ["--replicaof", "127.0.0.1", self.replicaof]
        self.proc = H.Proc(self.h, self.h.name("redis"), args)
        wait_ping(self)
        self.replicaof = None  # a restart comes back as a master

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port


class Sentinel(H.Redis):
    """redis-sentinel monitoring MASTERS ([(name, port)]) with QUORUM;
    with PASSWORD (no '"' or '\\') it requires AUTH (requirepass)."""

    def __init__(self, h, masters, quorum=2, port=None, password=None):
        self.masters, self.quorum = masters, quorum
        super().__init__(h, port=port, password=password)

    def start(self):
        lines = ["port %d" % self.port, "bind 127.0.0.1",
                 "protected-mode no", "dir %s" % self.dir]
        if self.password:
            lines.append('requirepass "%s"' % self.password)
        for name, port in self.masters:
            lines += ["sentinel monitor %s 127.0.0.1 %d %d"
                      % (name, port, self.quorum),
                      "sentinel down-after-milliseconds %s %d"
                      % (name, DOWN_AFTER_MS),
                      "sentinel failover-timeout %s %d"
                      % (name, FAILOVER_TIMEOUT_MS),
                      "sentinel parallel-syncs %s 1" % name]
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = H.Proc(self.h, self.h.name("sentinel"),
                           ["redis-sentinel", conf])
        wait_ping(self)

    def master_info(self, name=MASTER):
        got = self.cmd("SENTINEL", "master", name)
        if not isinstance(got, list):
            return {}
        it = iter(got)
        return {k.decode(): v.decode() for k, v in zip(it, it)}

    def master_addr(self, name=MASTER):
        got = self.cmd("SENTINEL", "get-master-addr-by-name", name)
        return "%s:%s" % (got[0].decode(), got[1].decode()) \
            if isinstance(got, list) else None


class FakeSentinel:
    """A sentinel of our own (RESP on loopback) naming ADDR ("host:port")
    as the master, so that a test chooses what it answers: PING, AUTH,
    SENTINEL get-master-addr-by-name, SUBSCRIBE (held, never published).
    ADDR None: it knows no master (a nil answer)."""

    def __init__(self, h, addr):
        self.addr = addr
        self.asked = 0
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                while True:
                    try:
                        args = H._resp_read(self.rfile)
                    except (OSError, ValueError):
                        return
                    if not isinstance(args, list) or not args:
                        return
                    self.wfile.write(fake.answer(
                        [a.decode() for a in args]))

        self.srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        h._servers.append(self.srv)

    def answer(self, args):
        cmd = args[0].upper()
        if cmd == "PING":
            return b"+PONG\r\n"
        if cmd == "AUTH":
            return b"+OK\r\n"
        if cmd == "SUBSCRIBE":
            return (b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n"
                    % (len(args[1]), args[1].encode()))
        addr = self.addr  # once: the test may change it meanwhile
        if cmd == "SENTINEL" and len(args) == 3 and args[2] == MASTER and \
                addr is not None:
            self.asked += 1
            host, port = addr.rsplit(":", 1)
            return H._resp_encode([host, port])
        return b"*-1\r\n" if cmd == "SENTINEL" else b"-ERR unknown\r\n"


def wait_ping(rd):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not rd.proc.alive():
            raise RuntimeError("%s exited\n%s" % (rd.proc.name,
                                                  rd.proc.tail()))
        try:
            if rd.cmd("PING") == "PONG":
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("%s not answering" % rd.proc.name)


def cluster(h, names=(MASTER,)):
    """Per name a master and its replica, and three sentinels watching
    them all; returns ({name: (master, replica)}, sentinels) once every
    sentinel sees the replicas and the other two sentinels."""
    pairs = {}
    for name in names:
        m = Server(h)
        pairs[name] = (m, Server(h, replicaof=m.port))
    sentinels = [Sentinel(h, [(n, p[0].port) for n, p in pairs.items()])
                 for _ in range(3)]

    def settled():
        for s in sentinels:
            for n in names:
                info = s.master_info(n)
                if int(info.get("num-slaves", 0)) < 1 or \
                        int(info.get("num-other-sentinels", 0)) < 2:
                    return False
        return True

    if not H.wait_until(settled, 15, 0.1):
        raise RuntimeError("sentinels did not settle: %r" % [
            s.master_info(n) for s in sentinels for n in names])
    return pairs, sentinels


def gateways(h, sb, sentinels, prefix, n=2, ratelimit=None, ports=None,
             password_file=None, workers=2):
    """N gateways (WORKERS workers each) finding the master through
    SENTINELS (or raw PORTS), with the sentinels' PASSWORD_FILE."""
    ports = ports or [s.port for s in sentinels]
    # request_timeout_ms at its default (the base config's 3000 makes
    # claims of 6 s, taken over after 3 s unrenewed: too close to the
    # limiter waits of a saturated loop on a loaded 2-core machine).
    over = {"server": {"workers": str(workers)},
            "upstream": {"request_timeout_ms": "15000"},
            "store": {"backend": "redis",
                      # host and port ignored: the sentinels name them
                      "redis_url": "redis://127.0.0.1:1/0",
                      "sentinels": ", ".join("127.0.0.1:%d" % p
                                             for p in ports),
                      "sentinel_master": MASTER, "key_prefix": prefix},
            "ratelimit": dict(ratelimit or {"rate": "50"})}
    if password_file:
        over["store"]["sentinel_password_file"] = password_file
    return [H.Gateway(h, sb, overrides=over) for _ in range(n)]


def readyz(gw):
    r = gw.get("/readyz", timeout=3)
    j = r.json if isinstance(r.json, dict) else {}
    return j.get("status"), j.get("redis_master")


def on_master(gws, addr):
    return all(readyz(g) == ("ready", addr) for g in gws)


class Watch:
    """Polls each gateway's /readyz every 50 ms in the background:
    [(time, status, redis_master)] per gateway."""

    def __init__(self, gws):
        self.gws = gws
        self.seen = [[] for _ in gws]
        self.stop_flag = False
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        while not self.stop_flag:
            for i, g in enumerate(self.gws):
                try:
                    st, m = readyz(g)
                except Exception:  # a probe lost: the next one counts
                    continue
                self.seen[i].append((time.monotonic(), st, m))
            time.sleep(0.05)

    def stop(self):
        self.stop_flag = True
        self.th.join(5)

    def first(self, i, since, pred):
        for ts, st, m in self.seen[i]:
            if ts >= since and pred(st, m):
                return ts
        return None


def check_logs(t, gws):
    for g in gws:
        H.check_json_log(t, g)
        text = g.log_text()
        t.check("agw-test-key" not in text,
                "%s: the API key is not in its log" % g.name)


def logged(gw, text, levels=("error", "warn", "info", "debug")):
    """GW's log messages at LEVELS that contain TEXT."""
    return [j.get("msg") for j in H.log_records(gw)
            if j.get("level") in levels and text in (j.get("msg") or "")]


def shared_on(t, sb, g, server, prefix, how):
    """Checks that G goes shared on SERVER (HOW says why it should), and
    that a create then answers 200 and is stored there under PREFIX."""
    t.check(H.wait_until(lambda: on_master([g], server.addr), 5, 0.05),
            how, repr(readyz(g)))
    r = g.create({"uri": sb.sample(prefix.rstrip(":") + "-shared.png")})
    t.eq(r.status, 200, "...a create -> 200")
    t.check(H.wait_until(lambda: server.keys(prefix + "*"), 3, 0.05),
            "...stored on %s (shared mode)" % server.addr)


def upstream_per_key(sb, prefix):
    per = collections.Counter(c.get("uri") for c in sb.call_list()
                              if prefix in (c.get("uri") or ""))
    return per


# ------------------------------------------------------------- scenarios

@H.scenario
def test_failover(h):
    """The master SIGKILLed under a steady loop on two instances."""
    t = h.t
    sb = H.Sandbox(h, rate=1000)
    pairs, sentinels = cluster(h)
    master, replica = pairs[MASTER]
    rate = 15
    gws = gateways(h, sb, sentinels, "sn-a:",
                   ratelimit={"rate": rate, "max_wait_ms": "2000",
                              "expected_instances": "2"})
    t.check(H.wait_until(lambda: on_master(gws, master.addr), 10, 0.05),
            "both gateways ready, /readyz redis_master = the master %s"
            % master.addr, repr([readyz(g) for g in gws]))
    t.check(all(H.metric(g, "redis_master_changes_total") == 0
                for g in gws), "no master change counted at start")

    # Stored before the failover and replicated (WAIT) before the kill.
    k0 = sb.sample("sn-a-before.png")
    r0 = gws[0].create({"uri": k0})
    t.eq(r0.status, 200, "a create before the failover -> 200")
    t.check(master.cmd("WAIT", 1, 2000) == 1,
            "WAIT: the replica acknowledged the writes before the kill")

    # Each key twice, one call on each instance (fleet dedupe), 30 calls/s
    # for 14 s: 15 keys/s against rate 15.
    def uri(i):
        return sb.sample("sn-a-%04d.png" % (i // 2))
    load = H.PacedLoad(gws, 30, 14.0, uri, timeout=30)
    watch = Watch(gws)
    load.start()
    time.sleep(4.0)
    master.proc.signal(signal.SIGKILL)
    master.proc.wait(5)
    t_kill = time.monotonic()
    switched = H.wait_until(lambda: on_master(gws, replica.addr),
                            SWITCH_TIMEOUT_S, 0.05)
    t.check(switched, "both gateways shared on the new master %s after "
            "the SIGKILL" % replica.addr, repr([readyz(g) for g in gws]))
    out = load.join()
    watch.stop()

    t_deg = [watch.first(i, t_kill, lambda s, m: s == "degraded")
             for i in range(len(gws))]
    t_up = [watch.first(i, t_kill,
                        lambda s, m: s == "ready" and m == replica.addr)
            for i in range(len(gws))]
    t.check(all(x is not None for x in t_deg),
            "each gateway reported degraded after the SIGKILL",
            repr(t_deg))
    t.check(all(x is not None for x in t_up),
            "each gateway reported shared mode on the new master by itself",
            repr(t_up))
    for i, g in enumerate(gws):
        if t_up[i] is not None:
            t.diag("%s: SIGKILL to shared mode on the new master: %.2f s"
                   % (g.name, t_up[i] - t_kill))
    t_all_up = max([x for x in t_up if x is not None] or [t_kill])

    res = [r for _, _, r in out]
    answered = sum(1 for r in res
                   if isinstance(r, H.Resp) and r.status is not None)
    t.diag("calls answered / sent: %d / %d (%r)" % (
        answered, int(30 * 14.0), dict(collections.Counter(
            r.status if isinstance(r, H.Resp) else "none" for r in res))))
    t.eq(answered, int(30 * 14.0), "every call of the loop got an answer "
         "(0 unanswered)")
    bad = H.bad_answers(res)
    t.check(not bad, "every answer is 200 or 429 code 8 with Retry-After",
            "\n".join(bad[:5]))

    # The fleet limit outside the switch itself.
    ts = sb.arrivals()
    before = [x for x in ts if x < t_kill]
    after = [x for x in ts if x >= t_all_up + 1.0]
    during = [x for x in ts if t_kill <= x < t_all_up + 1.0]
    wb, _ = H.worst_window(before)
    wa, _ = H.worst_window(after)
    wd, _ = H.worst_window(during)
    t.diag("worst 1 s window at the sandbox: %d before the kill, %d during "
           "the switch, %d after it (rate %d)" % (wb, wd, wa, rate))
    t.check(wb <= rate + H.ARRIVAL_SLACK and wa <= rate + H.ARRIVAL_SLACK,
            "at most rate + burst (%d, +%d slack) arrivals in every 1 s "
            "window before the kill and on the new master" % (
                rate, H.ARRIVAL_SLACK), "before %d, after %d" % (wb, wa))
    t.check(len(after) >= rate, "calls went upstream on the new master",
            "%d" % len(after))

    # Upstream calls per key: 1 except around the switch.
    per = upstream_per_key(sb, "sn-a-")
    t.diag("upstream calls per key: %r" % dict(
        collections.Counter(per.values())))
    calls = sb.call_list()
    # Calls granted on the fallback may leave up to max_wait_ms later.
    late_dupes = [u for u, n in per.items() if n > 1 and any(
        c.get("uri") == u and c["t"] >= t_all_up + 2.5 for c in calls)]
    t.check(not late_dupes, "fleet dedupe on the new master: no key went "
            "upstream twice after the switch", repr(late_dupes[:5]))
    dupe_ts = sorted(c["t"] - t_kill for c in calls
                     if per.get(c.get("uri"), 0) > 1)
    if dupe_ts:
        t.diag("duplicate upstream calls: %d keys, from %.2f s to %.2f s "
               "after the SIGKILL (shared again at %.2f s)" % (
                   sum(1 for n in per.values() if n > 1), dupe_ts[0],
                   dupe_ts[-1], t_all_up - t_kill))
    t.check(not dupe_ts or dupe_ts[0] >= -0.5, "fleet dedupe before the "
            "kill: no key went upstream twice", "first at %.2f s"
            % (dupe_ts[0] if dupe_ts else 0))

    # The create stored before the failover.
    for g in gws:
        r = g.create({"uri": k0})
        t.check(r.status == 200 and r.header("x-cache") == "HIT",
                "%s: the create replicated before the failover is a HIT "
                "after it" % g.name, r.short())
    # Dedupe on the new master: one key, four calls at once on both.
    k1 = sb.sample("sn-a-after.png")
    res = H.concurrent([(lambda g=g: g.create({"uri": k1}))
                        for g in gws for _ in range(2)])
    t.check(all(isinstance(r, H.Resp) and r.status == 200 for r in res),
            "four identical creates on the new master -> 200",
            repr([getattr(r, "status", r) for r in res]))
    t.eq(upstream_per_key(sb, "sn-a-after")[k1], 1,
         "...one upstream call between the two instances")

    # The old master back: a replica now; nothing moves.
    master.start()
    t.check(H.wait_until(lambda: isinstance(master.cmd("ROLE"), list) and
                         master.cmd("ROLE")[0] == b"slave", 15, 0.1),
            "the old master came back as a replica", repr(master.cmd("ROLE")))
    time.sleep(1.0)
    t.check(on_master(gws, replica.addr), "...the gateways stay on the new "
            "master", repr([readyz(g) for g in gws]))
    for g in gws:
        t.eq(H.metric(g, "redis_master_changes_total"), 1,
             "%s: asset_gateway_redis_master_changes_total = 1" % g.name)
        r = g.create({"uri": k0})
        t.check(r.status == 200 and r.header("x-cache") == "HIT",
                "%s: still a HIT with the old master back" % g.name,
                r.short())
    check_logs(t, gws)


@H.scenario
def test_sentinel_dies(h):
    """The sentinel the gateways listen to dies: they move to the next
    and still follow the next failover."""
    t = h.t
    sb = H.Sandbox(h, rate=1000)
    pairs, sentinels = cluster(h)
    master, replica = pairs[MASTER]
    gws = gateways(h, sb, sentinels, "sn-b:")
    t.check(H.wait_until(lambda: on_master(gws, master.addr), 10, 0.05),
            "both gateways ready on the master")
    # The first sentinel listed is the one they listen to.
    sentinels[0].proc.signal(signal.SIGKILL)
    sentinels[0].proc.wait(5)
    t.check(H.wait_until(lambda: all(re.search(
        r"sentinel 127\.0\.0\.1:%d: .*trying the next sentinel"
        % sentinels[0].port, g.log_text()) for g in gws), 5, 0.05),
        "each gateway logs that it moves to the next sentinel")

    def subscribers():
        n = 0
        for s in sentinels[1:]:
            got = s.cmd("CLIENT", "LIST")
            text = got.decode() if isinstance(got, bytes) else ""
            n += len(re.findall(r"\bsub=1\b", text))
        return n
    # Two workers per gateway, each with its own subscription.
    t.check(H.wait_until(lambda: subscribers() >= 4, 5, 0.05),
            "the gateways' four workers listen to another sentinel now",
            "%d subscribers" % subscribers())
    t.check(on_master(gws, master.addr), "...and never left the master",
            repr([readyz(g) for g in gws]))
    master.proc.signal(signal.SIGKILL)
    master.proc.wait(5)
    t_kill = time.monotonic()
    t.check(H.wait_until(lambda: on_master(gws, replica.addr),
                         SWITCH_TIMEOUT_S, 0.05),
            "a failover with two sentinels left: both gateways follow",
            repr([readyz(g) for g in gws]))
    t.diag("SIGKILL to both on the new master: %.2f s"
           % (time.monotonic() - t_kill))
    r = gws[1].create({"uri": sb.sample("sn-b-after.png")})
    t.eq(r.status, 200, "a create on the new master -> 200")
    check_logs(t, gws)


@H.scenario
def test_other_master_ignored(h):
    """A +switch-master for another master name moves nothing."""
    t = h.t
    sb = H.Sandbox(h, rate=1000)
    pairs, sentinels = cluster(h, (MASTER, "othermaster"))
    master, _ = pairs[MASTER]
    _, other_replica = pairs["othermaster"]
    gws = gateways(h, sb, sentinels, "sn-c:", n=1)
    g = gws[0]
    t.check(H.wait_until(lambda: on_master(gws, master.addr), 10, 0.05),
            "the gateway is ready on the master")
    downs = g.log_text().count("redis store: down")
    got = sentinels[0].cmd("SENTINEL", "FAILOVER", "othermaster")
    t.eq(got, "OK", "SENTINEL FAILOVER othermaster accepted")
    t.check(H.wait_until(lambda: sentinels[0].master_addr("othermaster") ==
                         other_replica.addr, 10, 0.1),
            "othermaster switched to its replica (+switch-master sent)")
    t.check(H.wait_until(lambda: "+switch-master of othermaster, not ours"
                         in g.log_text(), 3, 0.05),
            "the gateway heard that +switch-master and ignored it")
    t.check(on_master(gws, master.addr), "...it stays on its master",
            repr(readyz(g)))
    t.eq(H.metric(g, "redis_master_changes_total"), 0,
         "...no master change counted")
    t.eq(g.log_text().count("redis store: down"), downs,
         "...its connection never went down")
    check_logs(t, gws)


@H.scenario
def test_no_sentinel_at_start(h):
    """Every sentinel unreachable at start: the gateway starts degraded
    (calls answered locally) and goes shared once a sentinel answers."""
    t = h.t
    sb = H.Sandbox(h, rate=1000)
    ports = [H.free_port() for _ in range(3)]
    g = gateways(h, sb, None, "sn-d:", n=1, ports=ports)[0]
    t.eq(readyz(g), ("degraded", None), "/readyz: degraded, redis_master "
         "null")
    r = g.create({"uri": sb.sample("sn-d-0.png")})
    t.eq(r.status, 200, "a create while no sentinel answers -> 200 "
         "(degraded mode)")
    t.check(re.search(r"no master address from the sentinels yet",
                      g.log_text()), "the log says why Redis is down")
    master = Server(h)
    Sentinel(h, [(MASTER, master.port)], quorum=1, port=ports[1])
    t.check(H.wait_until(lambda: on_master([g], master.addr), 10, 0.05),
            "a sentinel answering: shared mode on its master by itself",
            repr(readyz(g)))
    check_logs(t, [g])


@H.scenario
def test_role_and_readonly(h):
    """The address a sentinel gives is used only once ROLE says master;
    a READONLY reply (the master demoted under the gateway) makes it ask
    the sentinels again."""
    t = h.t
    sb = H.Sandbox(h, rate=1000)
    m = Server(h)
    r = Server(h, replicaof=m.port)
    fake = FakeSentinel(h, r.addr)  # a replica, first
    g = gateways(h, sb, None, "sn-e:", n=1, ports=[fake.port])[0]
    t.check(H.wait_until(lambda: "ROLE says this server is not a master"
                         in g.log_text(), 5, 0.05),
            "given a replica's address, the gateway refuses it after ROLE")
    t.eq(readyz(g), ("degraded", None), "...and stays degraded")
    fake.addr = m.addr
    t.check(H.wait_until(lambda: on_master([g], m.addr), 5, 0.05),
            "given the master's address: shared mode on it",
            repr(readyz(g)))
    # Demoted under the gateway: R promoted, M its replica, no sentinel
    # message; only the replies say so.
    r.cmd("REPLICAOF", "NO", "ONE")
    m.cmd("REPLICAOF", "127.0.0.1", r.port)
    fake.addr = r.addr
    res = g.create({"uri": sb.sample("sn-e-0.png")})
    t.eq(res.status, 200, "a create while the master is demoted -> 200")
    t.check(H.wait_until(lambda: on_master([g], r.addr), 5, 0.05),
            "the gateway asked again and moved to the new master",
            repr(readyz(g)))
    t.check("READONLY" in g.log_text(), "...on a READONLY reply")
    check_logs(t, [g])


@H.scenario
def test_sentinel_password(h):
    """A sentinel that requires AUTH (requirepass): with the right
    sentinel_password_file the gateway finds the master and serves;
    with a wrong one it runs degraded, says why in its log without
    either password, and keeps running."""
    t = h.t
    sb = H.Sandbox(h, rate=1000)
    # Long (the file may hold up to 4096 bytes; each is %XX in the URL
    # the gateway builds) and full of characters a URL gives meaning to.
    good = ("Pw@:%/ #?&=+" * 50)[:600]
    bad = "Wr0ng-sentinel-pw"
    master = Server(h)
    sen = Sentinel(h, [(MASTER, master.port)], quorum=1, password=good)
    t.eq(sen.master_addr(), master.addr, "the sentinel, asked with the "
         "password, names the master")
    good_file = h.write(h.name("sentinel-pw-"), good + "\n")
    bad_file = h.write(h.name("sentinel-pw-"), bad + "\n")
    g_ok = gateways(h, sb, [sen], "sn-f:", n=1, password_file=good_file)[0]
    g_bad = gateways(h, sb, [sen], "sn-g:", n=1, password_file=bad_file)[0]
    shared_on(t, sb, g_ok, master, "sn-f:",
              "the right password: ready, redis_master = the master")

    why = re.compile(r"sentinel 127\.0\.0\.1:%d: AUTH failed: WRONGPASS"
                     % sen.port)
    t.check(H.wait_until(lambda: why.search(g_bad.log_text()), 5, 0.05),
            "a wrong password: the log says the sentinel refused the AUTH",
            g_bad.log_text()[-600:])
    t.eq(readyz(g_bad), ("degraded", None), "...it runs degraded, "
         "redis_master null")
    r = g_bad.create({"uri": sb.sample("sn-g-0.png")})
    t.eq(r.status, 200, "...a create -> 200 (degraded mode)")
    time.sleep(1.2)  # two more rounds of asking (500 ms pause each)
    t.check(g_bad.proc.alive(), "...it keeps running")
    t.eq(readyz(g_bad), ("degraded", None), "...still degraded")
    t.check(len(logged(g_bad, "sentinel 127.0.0.1:%d: AUTH failed"
                       % sen.port)) >= 4,
            "...it asked again in more rounds (at debug)")
    loud = logged(g_bad, "WRONGPASS", ("error", "warn", "info"))
    t.check(len(loud) <= 2, "...the refusal is logged at info or above "
            "once per worker, not in every round", "\n".join(loud))
    t.check(master.keys("sn-g:*") == [], "...nothing of it on the master")
    encoded = "".join("%%%02X" % ord(c) for c in good[:8])
    for g in (g_ok, g_bad):
        text = g.output_text()
        t.check(good[:12] not in text and encoded not in text and
                bad not in text, "%s: neither password is in its output "
                "(plain or percent-encoded)" % g.name)
    check_logs(t, [g_ok, g_bad])


@H.scenario
def test_master_unknown(h):
    """A sentinel that does not know the master's name answers nil: the
    gateway runs degraded and says why, keeps asking, and goes shared
    once the sentinel monitors that name."""
    t = h.t
    sb = H.Sandbox(h, rate=1000)
    master = Server(h)
    sen = Sentinel(h, [], quorum=1)
    g = gateways(h, sb, [sen], "sn-h:", n=1)[0]
    t.check(H.wait_until(lambda: re.search(
        r"sentinel 127\.0\.0\.1:%d: does not know the master" % sen.port,
        g.log_text()), 5, 0.05), "the log says the sentinel does not know "
        "the master", g.log_text()[-600:])
    t.eq(readyz(g), ("degraded", None), "...degraded, redis_master null")
    r = g.create({"uri": sb.sample("sn-h-0.png")})
    t.eq(r.status, 200, "...a create -> 200 (degraded mode)")
    t.check(H.wait_until(lambda: len(logged(g, "does not know the master"))
                         >= 6, 3, 0.05),
            "...it asks again, round after round (500 ms apart)")
    loud = [m for m in logged(g, "sentinel", ("error", "warn", "info"))
            if m.startswith(("sentinel ", "redis sentinel"))]
    t.check(len(loud) <= 2, "...of its sentinel connections, only the "
            "first answer is logged at info or above, once per worker",
            "\n".join(loud))
    t.eq(sen.cmd("SENTINEL", "MONITOR", MASTER, "127.0.0.1", master.port, 1),
         "OK", "the sentinel now monitors %s" % MASTER)
    shared_on(t, sb, g, master, "sn-h:",
              "...the gateway goes shared on the master by itself")
    t.eq(H.metric(g, "redis_master_changes_total"), 0,
         "...the first discovery is not a master change")
    check_logs(t, [g])


@H.scenario
def test_masterdown(h):
    """The master demoted under the gateway to a replica of a master that
    is gone, serving no stale data: MASTERDOWN. The gateway asks the
    sentinels again, runs degraded while they know no master (nil), and
    goes shared on the master they name next."""
    t = h.t
    sb = H.Sandbox(h, rate=1000)
    m = Server(h)
    m2 = Server(h)
    fake = FakeSentinel(h, m.addr)
    g = gateways(h, sb, None, "sn-i:", n=1, ports=[fake.port],
                 workers=1)[0]
    t.check(H.wait_until(lambda: on_master([g], m.addr), 5, 0.05),
            "the gateway is ready on the master", repr(readyz(g)))
    fake.addr = None  # mid-failover: no master
    m.cmd("CONFIG", "SET", "replica-serve-stale-data", "no")
    m.cmd("REPLICAOF", "127.0.0.1", H.free_port())
    got = m.cmd("GET", "sn-i:x")
    t.check(isinstance(got, RuntimeError) and "MASTERDOWN" in str(got),
            "the demoted master answers MASTERDOWN", repr(got))
    r = g.create({"uri": sb.sample("sn-i-0.png")})
    t.eq(r.status, 200, "a create meeting MASTERDOWN -> 200 (finished in "
         "degraded mode)")
    t.check(H.wait_until(lambda: re.search(
        r"MASTERDOWN.*asking the sentinels again", g.log_text()), 3, 0.05),
        "...the log says MASTERDOWN; asking the sentinels again",
        g.log_text()[-600:])
    t.check(H.wait_until(lambda: "does not know the master" in
                         g.log_text(), 3, 0.05),
            "...they know no master (nil)")
    t.eq(readyz(g), ("degraded", None), "...degraded, redis_master null")
    r = g.create({"uri": sb.sample("sn-i-1.png")})
    t.eq(r.status, 200, "...a create -> 200 (degraded mode)")
    fake.addr = m2.addr
    shared_on(t, sb, g, m2, "sn-i:",
              "the sentinel names another master: shared mode on it")
    t.eq(H.metric(g, "redis_master_changes_total"), 1,
         "...one master change counted")
    check_logs(t, [g])


@H.scenario
def test_check_keys(h):
    """-t checks [store] sentinels, sentinel_master and
    sentinel_password_file as start-up does, naming the key."""
    t = h.t
    sb = H.Sandbox(h, rate=1000)
    pw = h.write(h.name("sentinel-pw-"), "s3cret\n")
    open_pw = h.write(h.name("sentinel-pw-"), "s3cret\n", mode=0o666)
    base = {"backend": "redis", "redis_url": "redis://127.0.0.1:1/0",
            "sentinels": "127.0.0.1:26379, [::1]:26380, sentinel-3"}
    cases = [
        ("a good list, name and password file", {"sentinel_master": "m1",
         "sentinel_password_file": pw}, 0, None),
        ("a bad port", {"sentinels": "127.0.0.1:99999"}, 1, "sentinels"),
        ("an empty entry", {"sentinels": "127.0.0.1:1,,127.0.0.1:2"}, 1,
         "sentinels"),
        ("credentials in an entry", {"sentinels": "u:p@127.0.0.1:1"}, 1,
         "sentinels"),
        ("backend = memory", {"backend": "memory"}, 1, "sentinels"),
        ("a unix:// redis_url", {"redis_url": "unix:///tmp/r.sock"}, 1,
         "sentinels"),
        ("a master name with a space", {"sentinel_master": "my master"}, 1,
         "sentinel_master"),
        ("a missing password file", {"sentinel_password_file":
                                     h.path("no-such-pw")}, 1,
         "sentinel_password_file"),
        ("a password file others may write",
         {"sentinel_password_file": open_pw}, 1, "sentinel_password_file"),
    ]
    for desc, store, want_rc, key in cases:
        cfg = H.base_config(h, H.free_port(), sb.base_url, h.key_file())
        H.merge_config(cfg, {"store": dict(base, **store)})
        conf = h.write(h.name("sentinel-t-") + ".conf", H.render_config(cfg))
        rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c", conf])
        ok = rc == want_rc and (key is None or (
            "[store] %s" % key in err and conf in err))
        t.check(ok, "-t with %s -> exit %d%s" % (
            desc, want_rc, " naming the file and [store] %s" % key
            if key else ""), "rc %r stderr %r" % (rc, err[-400:]))
        t.check("s3cret" not in out + err, "-t with %s: the password is not "
                "printed" % desc)


if __name__ == "__main__":
    if shutil.which("redis-sentinel") is None:
        print("1..0 # SKIP redis-sentinel not installed "
              "(scripts/deps.sh --test)")
        sys.exit(0)
    H.run()
