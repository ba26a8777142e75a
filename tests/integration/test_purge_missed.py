"""Purges an instance missed while its pub/sub link was away (SPEC
section 12): every purge is also recorded in the sorted set PREFIX
"purges" (member: the dedupe key, score: Redis's TIME in ms; an hour of
them, at most 10000, the newest); an instance whose subscription comes
back reads back those published since it was away and drops them from
its memory table (the copy it answers from while Redis is down), or,
when it cannot tell which it missed (the set full), clears the whole
memory table.

B's subscriber is made to miss a purge: B talks to Redis as an ACL user
of its own; that user is disabled (connections made stay authenticated)
and B's subscriber connection killed, so it cannot come back until the
user is enabled again, after A's purge.

Each scenario has its own redis-server and gateways (-k NAME runs one).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

READY_WAIT_S = 8.0
BACK_WAIT_S = 5.0
PREFIX = "agw:"
PURGES = PREFIX + "purges"
CHANNEL = PREFIX + "purge"
HOUR_MS = 3600 * 1000
PURGES_MAX = 10000
B_USER, B_PASS = "gwb", "gwb-secret"
CLEARED = "the memory table is cleared"


def gateway(h, sb, redis, url=None):
    port = H.free_port()
    ov = {"admin": {"listen": "127.0.0.1:%d" % port},
          "server": {"workers": "1"},
          "store": {"backend": "redis",
                    "redis_url": url or redis.url(),
                    "key_prefix": PREFIX}}
    return H.Gateway(h, sb, overrides=ov), port


def status(port):
    r = H.request(port, "GET", "/admin/status", timeout=10)
    return r.json if r.status == 200 and isinstance(r.json, dict) else {}


def memory_entries(port):
    return ((status(port).get("caches") or {}).get("memory")
            or {}).get("entries")


def purge(port, uri):
    return H.request(port, "POST", "/admin/purge",
                     body={"businessId": H.BIZ, "uri": uri}, timeout=10)


def numsub(redis):
    got = redis.cmd("PUBSUB", "NUMSUB", CHANNEL)
    return got[1] if isinstance(got, list) and len(got) == 2 else None


def subscribers_of(redis, user):
    """The ids of USER's connections subscribed to a channel."""
    text = redis.cmd("CLIENT", "LIST")
    ids = []
    for line in (text or b"").decode().splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if f.get("user") == user and f.get("sub", "0") != "0":
            ids.append(f["id"])
    return ids


def redis_time_ms(redis):
    s, us = redis.cmd("TIME")
    return int(s) * 1000 + int(us) // 1000


def two_gateways(h, sb, redis):
    """A on the default user, B on an ACL user of its own."""
    t = h.t
    t.eq(redis.cmd("ACL", "SETUSER", B_USER, "on", ">" + B_PASS, "~*",
                   "&*", "+@all"), "OK", "an ACL user for B")
    a, a_adm = gateway(h, sb, redis)
    b, b_adm = gateway(h, sb, redis, "redis://%s:%s@127.0.0.1:%d/0"
                       % (B_USER, B_PASS, redis.port))
    for g in (a, b):
        t.check(g.wait_shared(), "%s: ready on Redis" % g.name)
    t.check(H.wait_until(lambda: numsub(redis) == 2, READY_WAIT_S),
            "both subscribed to the purge channel")
    return a, a_adm, b, b_adm


def purge_while_b_away(h, redis, a_adm, uri):
    """A purges URI while B's subscriber is away and kept away; B's
    subscriber back afterwards. Returns the purge's answer."""
    t = h.t
    t.eq(redis.cmd("ACL", "SETUSER", B_USER, "off"), "OK",
         "B's user disabled")
    ids = subscribers_of(redis, B_USER)
    t.check(len(ids) == 1, "B has one subscriber connection", repr(ids))
    for i in ids:
        redis.cmd("CLIENT", "KILL", "ID", i)
    t.check(H.wait_until(lambda: numsub(redis) == 1, BACK_WAIT_S),
            "B's subscriber is gone, and stays away")
    r = purge(a_adm, uri)
    t.eq((r.status, r.json), (200, {"purged": True}),
         "purge on A -> 200 {purged: true}")
    t.eq(numsub(redis), 1, "B was not subscribed when A purged")
    t.eq(redis.cmd("ACL", "SETUSER", B_USER, "on"), "OK",
         "B's user enabled again")
    t.check(H.wait_until(lambda: numsub(redis) == 2, BACK_WAIT_S),
            "B's subscriber is back")
    return r


def create_keys(redis, fn):
    """FN() creates an answer; the dedupe key it was stored under (the
    store's write may land just after the answer)."""
    before = set(redis.keys(PREFIX + "a:*"))
    fn()

    def new():
        return sorted(set(redis.keys(PREFIX + "a:*")) - before)
    got = H.wait_until(lambda: len(new()) == 1, BACK_WAIT_S) and new()
    return got[0][len(PREFIX + "a:"):] if got else None


def info_lines(gw, text):
    return [j for j in H.log_records(gw) if j.get("level") == "info"
            and text in str(j.get("msg"))]


# ------------------------------------------------------------ scenarios
@H.scenario
def missed_purge_dropped_from_memory(h):
    """B served X and Y; A purges X while B's link is away; back, B
    drops X (read back from the set) but keeps Y: Redis down, X is a MISS
    on B that goes upstream, Y still a HIT from B's memory table."""
    t = h.t
    sb = h.sandbox()
    redis = H.Redis(h)
    a, a_adm, b, b_adm = two_gateways(h, sb, redis)
    ux, uy = sb.sample("missed-x.png"), sb.sample("missed-y.png")
    got = {}
    kx = create_keys(redis, lambda: got.update(x=b.create({"uri": ux})))
    ky = create_keys(redis, lambda: got.update(y=b.create({"uri": uy})))
    t.eq([got[k].header("x-cache") for k in ("x", "y")], ["MISS", "MISS"],
         "X and Y created on B")
    t.check(kx is not None and ky is not None, "each stored in Redis",
            repr((kx, ky)))
    t.eq(memory_entries(b_adm), 2, "B's memory table holds X and Y")
    t0 = redis_time_ms(redis)
    purge_while_b_away(h, redis, a_adm, ux)
    t1 = redis_time_ms(redis)
    got = redis.cmd("ZRANGE", PURGES, "0", "-1", "WITHSCORES")
    t.check(isinstance(got, list) and len(got) == 2 and
            got[0].decode() == kx and t0 <= int(got[1]) <= t1,
            "the set holds X's key, scored with Redis's TIME in ms",
            repr((got, kx, t0, t1)))
    ttl = redis.cmd("PTTL", PURGES)
    t.check(isinstance(ttl, int) and HOUR_MS - 60000 < ttl <= HOUR_MS,
            "the set expires an hour after the last purge", repr(ttl))
    t.check(H.wait_until(lambda: memory_entries(b_adm) == 1, BACK_WAIT_S),
            "back, B dropped X from its memory table, not Y",
            json.dumps(status(b_adm).get("caches")))
    redis.stop()
    calls = sb.calls()
    rx, ry = b.create({"uri": ux}), b.create({"uri": uy})
    t.eq((rx.status, rx.header("x-cache"), sb.calls() - calls),
         (200, "MISS", 1),
         "Redis down: X on B is a MISS that goes upstream")
    t.eq((ry.status, ry.header("x-cache"), sb.calls() - calls),
         (200, "HIT", 1), "Redis down: Y on B is a HIT from its memory "
         "table")
    t.eq(info_lines(b, CLEARED), [], "B did not clear its memory table")


@H.scenario
def full_set_trimmed_and_memory_cleared(h):
    """The set at its maximum: a purge drops entries past the hour and
    the oldest past 10000. B, back after missing it, cannot tell whether
    purges it missed were trimmed: it clears its whole memory table, and
    says so at info."""
    t = h.t
    sb = h.sandbox()
    redis = H.Redis(h)
    a, a_adm, b, b_adm = two_gateways(h, sb, redis)
    uy, ux = sb.sample("full-y.png"), sb.sample("full-x.png")
    got = {}
    ky = create_keys(redis, lambda: got.update(y=b.create({"uri": uy})))
    t.check(got["y"].header("x-cache") == "MISS" and ky is not None,
            "Y created on B, and stored in Redis")
    kx = create_keys(redis, lambda: a.create({"uri": ux}))
    t.eq(memory_entries(b_adm), 1, "B's memory table holds Y")
    now = redis_time_ms(redis)
    args = ["ZADD", PURGES, str(now - 2 * HOUR_MS), "%064x" % 999999]
    for i in range(PURGES_MAX):
        args += [str(now - 50000 + i), "%064x" % i]
    t.eq(redis.cmd(*args), PURGES_MAX + 1, "the set filled past its bound")
    purge_while_b_away(h, redis, a_adm, ux)
    t.eq(redis.cmd("ZCARD", PURGES), PURGES_MAX, "trimmed to 10000")
    t.eq((redis.cmd("ZSCORE", PURGES, "%064x" % 999999),
          redis.cmd("ZSCORE", PURGES, "%064x" % 0)), (None, None),
         "the entry past the hour and the oldest one are gone")
    got = redis.cmd("ZREVRANGE", PURGES, "0", "0")
    t.eq([x.decode() for x in got or []], [kx], "X's purge is the newest")
    t.check(H.wait_until(lambda: memory_entries(b_adm) == 0, BACK_WAIT_S),
            "back, B cleared its whole memory table",
            json.dumps(status(b_adm).get("caches")))
    t.check(H.wait_until(lambda: info_lines(b, CLEARED), BACK_WAIT_S),
            "and said so at info")
    redis.stop()
    calls = sb.calls()
    r = b.create({"uri": uy})
    t.eq((r.status, r.header("x-cache"), sb.calls() - calls),
         (200, "MISS", 1), "Redis down: Y on B is a MISS")


if __name__ == "__main__":
    H.run()
