"""Operator endpoints (issue #17, SPEC section 12): the [admin] listener
with GET /admin/status, POST /admin/purge and GET /admin/, apart from the
callers' listener; the operators' token; the fleet facts read from the
heartbeats in Redis (instances, calls per caller), marked local while
Redis is down; a purge on one instance making the next identical create
on another a MISS, its L1 warm; -t and start-up refusing an admin
listener other than loopback without a token.

Each scenario has its own redis-server and gateways (-k NAME runs one).
"""

import hashlib
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

# Heartbeats are renewed every second with a TTL of 3 s
# (limiter_fleet.c): a killed instance leaves the fleet within that.
HEARTBEAT_TTL_S = 3.0
SLACK_S = 2.0
OP_TOKEN = "operators-secret-token"
CALLER_TOKEN = "alice-token"


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


class Admin:
    """The admin side of a gateway: requests to its [admin] listen port."""

    def __init__(self, gw, port, token=None):
        self.gw = gw
        self.port = port
        self.token = token

    def _headers(self, headers):
        hdrs = dict(bearer(self.token) if self.token else {})
        hdrs.update(headers or {})
        return hdrs

    def get(self, path, headers=None):
        return H.request(self.port, "GET", path,
                         headers=self._headers(headers), timeout=10)

    def status(self):
        r = self.get("/admin/status")
        return r.json if r.status == 200 and isinstance(r.json, dict) \
            else {}

    def purge(self, body, headers=None):
        return H.request(self.port, "POST", "/admin/purge", body=body,
                         headers=self._headers(headers), timeout=10)


def admin_gateway(h, sb, redis=None, prefix="agw:", token=None,
                  overrides=None, start_admin=True):
    port = H.free_port()
    ov = {"admin": {"listen": "127.0.0.1:%d" % port}}
    if token is not None:
        ov["admin"]["token_sha256"] = sha(token)
    if redis is not None:
        ov["store"] = {"backend": "redis", "redis_url": redis.url(),
                       "key_prefix": prefix}
    for section, keys in (overrides or {}).items():
        ov.setdefault(section, {}).update(keys)
    gw = H.Gateway(h, sb, overrides=ov)
    return Admin(gw, port, token)


def clients_file(h):
    return h.write(h.name("clients-") + ".ini",
                   "[alice]\ntoken_sha256 = %s\nbusinesses = %s\n"
                   % (sha(CALLER_TOKEN), H.BIZ))


def fleet_ids(st):
    return sorted(i.get("id") for i in
                  (st.get("fleet") or {}).get("instances") or [])


# ------------------------------------------------------------ scenarios

@H.scenario
def status_two_instances(h):
    t = h.t
    sb = h.sandbox()
    redis = H.Redis(h)
    a = admin_gateway(h, sb, redis)
    b = admin_gateway(h, sb, redis)
    for x in (a, b):
        t.check(x.gw.wait_shared(), "%s: ready on Redis" % x.gw.name)
    live2 = H.wait_until(
        lambda: (a.status().get("fleet") or {}).get("live") == 2,
        HEARTBEAT_TTL_S + SLACK_S, step=0.1)
    st = a.status()
    t.check(live2, "A's status: fleet.live = 2 with two instances on one "
            "Redis", json.dumps(st.get("fleet")))
    want = {
        "instance": ["id", "version", "uptime_s", "workers",
                     "config_loaded_at"],
        "fleet": ["live", "instances"],
        "limiter": ["rate", "backlog_ms", "pause_until", "mode"],
        "redis": ["up", "master"],
        "caches": ["l1", "memory"],
        "upstream": ["open_connections", "last_error", "last_error_at",
                     "last_errors"],
    }
    missing = ["%s.%s" % (k, f) for k, fs in want.items()
               for f in fs if f not in (st.get(k) or {})]
    missing += [k for k in ("callers", "history") if k not in st]
    missing += ["caches.memory.%s" % f for f in ("entries", "bytes")
                if f not in ((st.get("caches") or {}).get("memory") or {})]
    t.check(not missing, "status has every key SPEC 12 lists",
            "missing: %r" % missing)
    ida = (st.get("instance") or {}).get("id")
    idb = (b.status().get("instance") or {}).get("id")
    t.check(ida and idb and ida != idb and fleet_ids(st) == sorted([ida,
                                                                      idb]),
            "fleet.instances lists both instances' ids",
            "%r vs %r, %r" % (ida, idb, fleet_ids(st)))
    insts = (st.get("fleet") or {}).get("instances") or []
    ver = (st.get("instance") or {}).get("version")
    t.check(len(insts) == 2 and all(i.get("host") and
                                    i.get("version") == ver for i in insts),
            "each listed instance has its host and version", repr(insts))
    t.eq((st.get("limiter") or {}).get("mode"), "shared",
         "limiter.mode shared while Redis is up")
    t.eq((st.get("redis") or {}).get("up"), True, "redis.up true")
    t.eq((st.get("redis") or {}).get("master"), "127.0.0.1:%d" % redis.port,
         "redis.master is the Redis in use (no password)")
    w = (st.get("instance") or {}).get("workers")
    t.check(isinstance(w, int) and w >= 1, "instance.workers reported",
            repr(w))
    b.gw.proc.signal(signal.SIGKILL)
    t0 = time.monotonic()
    live1 = H.wait_until(
        lambda: (a.status().get("fleet") or {}).get("live") == 1,
        HEARTBEAT_TTL_S + SLACK_S, step=0.1)
    el = time.monotonic() - t0
    t.diag("fleet.live went from 2 to 1 %.2f s after SIGKILL of B" % el)
    t.check(live1 and fleet_ids(a.status()) == [ida],
            "after B is SIGKILLed, A's status lists only A within the "
            "heartbeat TTL (%.1f s)" % el, json.dumps(a.status().get("fleet")))
    gone = H.wait_until(lambda: redis.cmd("HKEYS", "agw:hb:info") ==
                        [ida.encode()], 2.0, step=0.1)
    t.check(gone, "B's host/version entry left the heartbeats' hash",
            repr(redis.cmd("HKEYS", "agw:hb:info")))


@H.scenario
def status_degraded_when_redis_dies(h):
    t = h.t
    sb = h.sandbox()
    redis = H.Redis(h)
    a = admin_gateway(h, sb, redis)
    t.check(a.gw.wait_shared(), "ready on Redis")
    st = a.status()
    t.eq(((st.get("limiter") or {}).get("mode"),
          (st.get("fleet") or {}).get("scope")), ("shared", "fleet"),
         "Redis up: limiter.mode shared, fleet facts from Redis")
    redis.proc.signal(signal.SIGKILL)
    deg = H.wait_until(
        lambda: (a.status().get("limiter") or {}).get("mode") == "degraded",
        5.0, step=0.1)
    st = a.status()
    t.check(deg, "Redis killed: limiter.mode degraded",
            json.dumps(st.get("limiter")))
    t.eq(((st.get("fleet") or {}).get("scope"),
          (st.get("limiter") or {}).get("scope"), st.get("callers_scope")),
         ("local", "local", "local"),
         "fleet, limiter and callers marked local while Redis is down")
    t.eq((st.get("redis") or {}).get("up"), False, "redis.up false")
    t.eq(fleet_ids(st), [(st.get("instance") or {}).get("id")],
         "fleet.instances lists this instance alone")
    r = a.purge({"businessId": H.BIZ, "uri": sb.sample("deg.png")})
    H.check_error(t, r, 503, 14, "a purge while Redis is down -> 503 code 14 "
                  "(only this instance could forget it)")


@H.scenario
def calls_last_minute_fleet_wide(h):
    t = h.t
    sb = h.sandbox()
    redis = H.Redis(h)
    cf = clients_file(h)
    ov = {"auth": {"mode": "token", "clients_file": cf}}
    a = admin_gateway(h, sb, redis, overrides=ov)
    b = admin_gateway(h, sb, redis, overrides=ov)
    for x in (a, b):
        t.check(x.gw.wait_shared(), "%s: ready on Redis" % x.gw.name)
    codes = []
    for i, x in enumerate([a, a, b, b, b]):
        r = x.gw.create({"uri": sb.sample("calls-%d.png" % i)},
                        headers=bearer(CALLER_TOKEN))
        codes.append((r.status, r.header("x-cache")))
    t.check(all(c == (200, "MISS") for c in codes),
            "5 distinct creates by alice (2 on A, 3 on B): 5 MISS",
            repr(codes))

    def alice(adm):
        return ((adm.status().get("callers") or {}).get("alice") or
                {}).get("calls_last_minute")
    got = H.wait_until(lambda: alice(a) == 5, HEARTBEAT_TTL_S, step=0.1)
    t.check(got, "A's status: callers.alice.calls_last_minute = 5, "
            "counted across both instances", repr(alice(a)))
    t.eq(alice(b), 5, "B's status says the same")
    t.eq(a.status().get("callers_scope"), "fleet", "callers_scope fleet")


@H.scenario
def purge_reaches_other_instance_l1(h):
    t = h.t
    sb = h.sandbox()
    redis = H.Redis(h)
    # A long L1 TTL: without the purge message B would answer from its L1
    # for a minute.
    ov = {"store": {"l1_ttl_ms": "60000"}}
    a = admin_gateway(h, sb, redis, overrides=ov)
    b = admin_gateway(h, sb, redis, overrides=ov)
    for x in (a, b):
        t.check(x.gw.wait_shared(), "%s: ready on Redis" % x.gw.name)
    u = sb.sample("purge-me.png")
    body = {"uri": u, "metadata": {"accessControlType": H.PRIVATE}}
    seq = [a.gw.create(body).header("x-cache"),
           b.gw.create(body).header("x-cache"),
           b.gw.create(body).header("x-cache")]
    t.eq(seq, ["MISS", "HIT", "HIT"], "create on A, then twice on B: B's L1 "
         "warm")
    r = a.purge({"businessId": H.BIZ, "uri": u,
                 "accessControlType": H.PRIVATE},
                headers={"X-Request-Id": "op-purge-1"})
    t.eq((r.status, r.json), (200, {"purged": True}),
         "purge on A -> 200 {purged: true}")
    t.eq(redis.keys("agw:a:*"), [], "the stored answer is gone from Redis")
    time.sleep(1.0)
    r2 = b.gw.create(body)
    t.eq((r2.status, r2.header("x-cache")), (200, "MISS"),
         "1 s after the purge, the identical create on B is a MISS")
    r3 = a.gw.create(body)
    t.eq(r3.header("x-cache"), "HIT", "then a HIT again on A (stored anew)")
    t.eq(sb.stats()["calls"], 2, "two upstream calls in all")
    t.eq(H.metric(a.gw, "admin_purges_total", result="purged"), 1.0,
         "admin_purges_total{result=purged} 1 on A")
    lines = [j for j in H.log_records(a.gw) if j.get("type") == "access"
             and j.get("request_id") == "op-purge-1"]
    t.check(len(lines) == 1 and lines[0].get("status") == 200 and
            lines[0].get("path") == "/admin/purge",
            "one access line for the purge with the operator's request id",
            repr(lines))


@H.scenario
def l1_dropped_after_outage(h):
    """Purges published while an instance was away from Redis never
    reach it: back, it drops its whole L1 (here: a restarted Redis that
    lost every answer; B's L1, good for a minute, must not answer)."""
    t = h.t
    sb = h.sandbox()
    redis = H.Redis(h)
    b = admin_gateway(h, sb, redis, overrides={"store": {"l1_ttl_ms":
                                                         "60000"}})
    t.check(b.gw.wait_shared(), "ready on Redis")
    u = sb.sample("outage-l1.png")
    seq = [b.gw.create({"uri": u}).header("x-cache") for _ in range(2)]
    t.eq(seq, ["MISS", "HIT"], "MISS, then HIT: B's L1 warm")
    redis.stop()
    redis.start()
    t.check(b.gw.wait_shared(), "ready on the restarted Redis")
    back = H.wait_until(
        lambda: (b.status().get("caches") or {}).get("l1", {}).get(
            "entries") == 0, 3.0, step=0.05)
    t.check(back, "back on Redis: B's L1 is empty",
            json.dumps(b.status().get("caches")))
    r = b.gw.create({"uri": u})
    t.eq((r.status, r.header("x-cache")), (200, "MISS"),
         "the create B's L1 held before the outage is a MISS after it")


@H.scenario
def purge_unknown_and_malformed(h):
    t = h.t
    sb = h.sandbox()
    redis = H.Redis(h)
    a = admin_gateway(h, sb, redis)
    t.check(a.gw.wait_shared(), "ready on Redis")
    r = a.purge({"businessId": H.BIZ, "uri": sb.sample("never.png")})
    t.eq((r.status, r.json), (200, {"purged": False}),
         "purge of a create never made -> 200 {purged: false}")
    r = a.purge(json.dumps({"businessId": H.BIZ.upper(),
                            "uri": sb.sample("never.png")}) + "\n")
    t.eq((r.status, r.json), (200, {"purged": False}),
         "a body with a trailing newline and an upper-case id is fine")
    bad = [("not JSON", "{nope"), ("an array", "[1]"), ("no body", ""),
           ("trailing garbage", '{"businessId": "%s", "uri": "http://x/y"}x'
            % H.BIZ),
           ("no businessId", {"uri": sb.sample("x.png")}),
           ("bad businessId", {"businessId": "nope", "uri": "http://x/y"}),
           ("no uri", {"businessId": H.BIZ}),
           ("bad access type", {"businessId": H.BIZ, "uri": "http://x/y",
                                "accessControlType": "NOPE"})]
    for desc, body in bad:
        r = a.purge(body)
        H.check_error(t, r, 400, 3, "purge with %s -> 400 code 3" % desc)
    t.eq(H.metric(a.gw, "admin_purges_total", result="invalid"),
         float(len(bad)), "admin_purges_total{result=invalid} counts them")
    t.eq(H.metric(a.gw, "admin_purges_total", result="absent"), 2.0,
         "admin_purges_total{result=absent} 2")


@H.scenario
def purge_memory_backend(h):
    t = h.t
    sb = h.sandbox()
    a = admin_gateway(h, sb)
    u = sb.sample("mem-purge.png")
    seq = [a.gw.create({"uri": u}).header("x-cache") for _ in range(2)]
    t.eq(seq, ["MISS", "HIT"], "memory backend: MISS then HIT")
    r = a.purge({"businessId": H.BIZ, "uri": u})
    t.eq((r.status, r.json), (200, {"purged": True}),
         "purge -> {purged: true}")
    t.eq(a.gw.create({"uri": u}).header("x-cache"), "MISS",
         "the next identical create is a MISS")
    st = a.status()
    t.eq(((st.get("limiter") or {}).get("mode"), st.get("callers_scope")),
         ("local", "local"), "memory backend: limiter local, callers local")


@H.scenario
def admin_token_required(h):
    t = h.t
    sb = h.sandbox()
    cf = clients_file(h)
    a = admin_gateway(h, sb, token=OP_TOKEN,
                      overrides={"auth": {"mode": "token",
                                          "clients_file": cf}})
    for path in ("/admin/status", "/admin/"):
        r = H.request(a.port, "GET", path)
        H.check_error(t, r, 401, 16, "GET %s without a token -> 401 code 16"
                      % path)
        r = H.request(a.port, "GET", path, headers=bearer(CALLER_TOKEN))
        H.check_error(t, r, 401, 16, "GET %s with a caller's token -> 401 "
                      "code 16" % path)
        r = H.request(a.port, "GET", path, headers=bearer(OP_TOKEN + "x"))
        H.check_error(t, r, 401, 16, "GET %s with a wrong token -> 401" %
                      path)
        r = H.request(a.port, "GET", path, headers=bearer(OP_TOKEN))
        t.eq(r.status, 200, "GET %s with the operators' token -> 200" % path)
    r = H.request(a.port, "POST", "/admin/purge",
                  body={"businessId": H.BIZ, "uri": "http://x/y"})
    H.check_error(t, r, 401, 16, "POST /admin/purge without a token -> 401")
    r = a.gw.create({"uri": sb.sample("t.png")}, headers=bearer(OP_TOKEN))
    t.eq(r.status, 401, "the operators' token is no caller's token")


@H.scenario
def routes_kept_apart(h):
    t = h.t
    sb = h.sandbox()
    a = admin_gateway(h, sb)
    for path in ("/admin/status", "/admin/", "/admin/purge"):
        r = a.gw.get(path)
        H.check_error(t, r, 404, 5, "GET %s on the callers' listener -> 404"
                      % path)
    r = H.request(a.gw.port, "POST", "/admin/purge",
                  body={"businessId": H.BIZ, "uri": "http://x/y"})
    H.check_error(t, r, 404, 5, "POST /admin/purge on the callers' listener "
                  "-> 404")
    for path in ("/healthz", "/readyz", "/metrics", "/", "/admin"):
        r = a.get(path)
        H.check_error(t, r, 404, 5, "GET %s on the admin listener -> 404"
                      % path)
    r = H.request(a.port, "POST", H.create_path(),
                  body={"uri": sb.sample("r.png")})
    H.check_error(t, r, 404, 5, "a create on the admin listener -> 404")
    t.eq(sb.stats()["calls"], 0, "no upstream call")
    r = a.get("/admin/")
    csp = r.header("content-security-policy") or ""
    t.check(r.status == 200 and
            (r.header("content-type") or "").startswith("text/html") and
            b"<html" in r.body,
            "GET /admin/ -> 200 text/html page", r.short())
    t.check("connect-src 'self'" in csp and "script-src 'unsafe-inline'" in
            csp and "default-src 'none'" in csp,
            "the page's CSP: inline script/style, connect-src 'self' only",
            csp)
    r = H.request(a.port, "POST", "/admin/status")
    H.check_error(t, r, 405, 3, "POST /admin/status -> 405")


@H.scenario
def non_loopback_needs_token(h):
    t = h.t
    sb = h.sandbox()
    port = H.free_port()
    cases = [("0.0.0.0:%d" % port, None, 1),
             ("[::]:%d" % port, None, 1),
             ("localhost:%d" % port, None, 1),
             ("0.0.0.0:%d" % port, sha(OP_TOKEN), 0),
             ("127.0.0.2:%d" % port, None, 0),
             ("[::1]:%d" % port, None, 0)]
    for listen, tok, want in cases:
        gw = H.Gateway(h, sb, start=False, overrides={
            "admin": {"listen": listen, "token_sha256": tok}})
        rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c", gw.conf_path])
        lines = open(gw.conf_path).read().splitlines()
        line = lines.index("listen = %s" % listen) + 1
        if want == 1:
            t.check(rc == 1 and "%s:%d: [admin] listen:" % (gw.conf_path,
                                                            line) in err
                    and "token_sha256" in err,
                    "-t refuses admin listen %s without a token, naming "
                    "FILE:LINE" % listen, "rc=%r err=%r" % (rc, err))
            rc2, _, err2 = H.run_cmd([h.gateway_bin, "-c", gw.conf_path])
            t.check(rc2 == 1 and "%s:%d: [admin] listen:" % (gw.conf_path,
                                                             line) in err2,
                    "start-up refuses it too", "rc=%r err=%r" % (rc2, err2))
        else:
            t.eq(rc, 0, "-t accepts admin listen %s%s" %
                 (listen, " with a token" if tok else ""))
    gw = H.Gateway(h, sb, start=False, overrides={
        "admin": {"listen": "127.0.0.1:%d" % port, "token_sha256": "abc"}})
    rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c", gw.conf_path])
    t.check(rc == 1 and "[admin] token_sha256:" in err,
            "-t refuses a token_sha256 that is not 64 hex", err)


@H.scenario
def reload_keeps_token(h):
    t = h.t
    sb = h.sandbox()
    port = H.free_port()
    gw = H.Gateway(h, sb, overrides={
        "admin": {"listen": "0.0.0.0:%d" % port,
                  "token_sha256": sha(OP_TOKEN)}})
    a = Admin(gw, port, OP_TOKEN)
    t.eq(a.get("/admin/status").status, 200, "token works")
    text = open(gw.conf_path).read()
    with open(gw.conf_path, "w") as f:
        f.write(text.replace("token_sha256 = %s\n" % sha(OP_TOKEN), ""))
    before = H.metric(gw, "config_reloads_total", result="failed")
    gw.proc.signal(signal.SIGHUP)
    H.wait_until(lambda: H.metric(gw, "config_reloads_total",
                                  result="failed") > before, 5.0)
    t.eq(H.metric(gw, "config_reloads_total", result="failed"), before + 1,
         "a reload removing the token of a 0.0.0.0 listener is refused")
    r = H.request(port, "GET", "/admin/status")
    H.check_error(t, r, 401, 16, "the token is still required")
    with open(gw.conf_path, "w") as f:
        f.write(text.replace(sha(OP_TOKEN), sha("new-token")))
    gw.proc.signal(signal.SIGHUP)
    ok = H.wait_until(lambda: H.request(port, "GET", "/admin/status",
                                        headers=bearer("new-token")).status
                      == 200, 5.0, step=0.1)
    t.check(ok, "a reload may change the token")
    r = H.request(port, "GET", "/admin/status", headers=bearer(OP_TOKEN))
    t.eq(r.status, 401, "the old token no longer opens it")


# Upstream latency for the purges of a flight under way: the purge comes
# ~0.2 s into the flight, the creates after it 1 s later, while it is
# still under way.
INFLIGHT_LATENCY_MS = 2500


def asset_id(r):
    """The sandbox's asset id in a create's answer: new for each call."""
    return ((r.json or {}).get("asset") or {}).get("id")


def purge_during_flight(h, flight_on, purge_on):
    """A create under way on instance FLIGHT_ON ("a"/"b") when the purge
    runs on PURGE_ON: its caller still gets its answer, but nothing keeps
    it (Redis, either L1), and the identical creates sent on A and on B
    1 s after the purge answer start a flight of their own (one leads,
    MISS; the other waits for that one) instead of joining the purged
    one or being served its answer."""
    t = h.t
    sb = h.sandbox()
    redis = H.Redis(h)
    # Two workers: the process's flights too (which worker takes a
    # connection is the kernel's choice).
    ov = {"store": {"l1_ttl_ms": "60000"},
          "upstream": {"request_timeout_ms": "6000"},
          "server": {"workers": "2"}}
    gws = {"a": admin_gateway(h, sb, redis, overrides=ov),
           "b": admin_gateway(h, sb, redis, overrides=ov)}
    for x in gws.values():
        t.check(x.gw.wait_shared(), "%s: ready on Redis" % x.gw.name)
    sb.faults(latency_ms=INFLIGHT_LATENCY_MS)
    u = sb.sample("inflight-%s-%s.png" % (flight_on, purge_on))
    body = {"uri": u}
    first = []
    th = threading.Thread(
        target=lambda: first.append(gws[flight_on].gw.create(body)),
        daemon=True)
    th.start()
    t.check(H.wait_until(lambda: sb.calls() == 1, 5.0, step=0.02),
            "the create on %s is under way upstream" % flight_on.upper())
    r = gws[purge_on].purge({"businessId": H.BIZ, "uri": u})
    purged_at = time.monotonic()
    t.eq((r.status, r.json), (200, {"purged": False}),
         "purge on %s while it is under way -> 200 {purged: false}"
         % purge_on.upper())
    time.sleep(max(0.0, purged_at + 1.05 - time.monotonic()))
    after = []
    th2 = threading.Thread(target=lambda: after.extend(H.concurrent(
        [lambda: gws["a"].gw.create(body),
         lambda: gws["b"].gw.create(body)])), daemon=True)
    th2.start()
    th.join(15.0)
    old = first[0] if first else None
    t.check(old is not None and old.status == 200,
            "the create under way still gets its 200",
            old.short() if old is not None else "no answer")
    t.check(th2.is_alive() and sb.calls() == 2, "it ended while the new "
            "flight was under way", "calls %d" % sb.calls())
    time.sleep(0.1)  # its release script, sent before its answer
    t.eq(redis.keys("agw:a:*"), [], "its answer was not stored in Redis")
    th2.join(30.0)
    old_id = asset_id(old) if old is not None else None
    ok = [isinstance(x, H.Resp) and x.status == 200 for x in after]
    t.check(all(ok), "1 s after the purge: the creates on A and B -> 200",
            repr([x.short() if isinstance(x, H.Resp) else x for x in after]))
    if not all(ok):
        return
    ids = [asset_id(x) for x in after]
    t.check(old_id is not None and old_id not in ids, "neither is served the purged flight's "
            "answer", "old %s, after %r" % (old_id, ids))
    t.eq(sorted(x.header("x-cache") for x in after), ["HIT", "MISS"],
         "one leads a new flight (MISS), the other waits for it (HIT)")
    t.check(ids[0] == ids[1], "both get the new flight's answer", repr(ids))
    t.eq(sb.stats()["calls"], 2, "2 upstream calls: the purged flight's "
         "and the new one's")
    later = [gws[x].gw.create(body) for x in ("a", "b")]
    t.eq([(x.header("x-cache"), asset_id(x)) for x in later],
         [("HIT", ids[0])] * 2, "then HITs on A and B with the new answer "
         "(no L1 or Redis kept the purged one)")


@H.scenario
def purge_during_flight_same_instance(h):
    purge_during_flight(h, "a", "a")


@H.scenario
def purge_during_flight_other_instance(h):
    purge_during_flight(h, "a", "b")


@H.scenario
def purge_during_flight_on_b_purged_on_a(h):
    purge_during_flight(h, "b", "a")


@H.scenario
def purge_during_flight_memory_backend(h):
    """One instance, memory backend: the purged flight's answer is not
    stored, and a create 1 s after the purge starts a flight of its own."""
    t = h.t
    sb = h.sandbox()
    a = admin_gateway(h, sb, overrides={
        "upstream": {"request_timeout_ms": "6000"}})
    sb.faults(latency_ms=INFLIGHT_LATENCY_MS)
    u = sb.sample("inflight-mem.png")
    first = []
    th = threading.Thread(
        target=lambda: first.append(a.gw.create({"uri": u})), daemon=True)
    th.start()
    t.check(H.wait_until(lambda: sb.calls() == 1, 5.0, step=0.02),
            "the create is under way upstream")
    r = a.purge({"businessId": H.BIZ, "uri": u})
    t.eq((r.status, r.json), (200, {"purged": False}),
         "purge while it is under way -> 200 {purged: false}")
    time.sleep(1.05)
    second = []
    th2 = threading.Thread(
        target=lambda: second.append(a.gw.create({"uri": u})), daemon=True)
    th2.start()
    th.join(15.0)
    old = first[0] if first else None
    t.check(old is not None and old.status == 200,
            "the create under way still gets its 200",
            old.short() if old is not None else "no answer")
    t.check(th2.is_alive() and sb.calls() == 2, "it ended while the new "
            "flight was under way", "calls %d" % sb.calls())
    mem = ((a.status().get("caches") or {}).get("memory") or {})
    t.eq(mem.get("entries"), 0, "its answer was not stored")
    th2.join(15.0)
    if not second:
        t.bail("the create after the purge got no answer")
    r2 = second[0]
    t.eq((r2.status, r2.header("x-cache")), (200, "MISS"),
         "the create 1 s after the purge -> 200 MISS (a flight of its own)")
    t.check(asset_id(r2) is not None and asset_id(r2) != asset_id(old),
            "with the new call's answer", repr((asset_id(old),
                                                asset_id(r2))))
    r3 = a.gw.create({"uri": u})
    t.eq((r3.header("x-cache"), asset_id(r3)), ("HIT", asset_id(r2)),
         "then a HIT with the new answer (the purged one was not kept)")
    t.eq(sb.stats()["calls"], 2, "2 upstream calls")


if __name__ == "__main__":
    H.run()
