"""Logs of the real gateway (issue #6): with format = json every line is
a JSON object, and each create call yields exactly one access line whose
fields have the right types and match the call (status, cache, business
id, request id, upstream status, attempts, times); format = text gives
one key=value line per call; level filters; [log] file with SIGUSR1
reopen after the file was moved away (logrotate)."""

import json
import os
import re
import signal
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
LEVELS = ("error", "warn", "info", "debug")
ACCESS_STR = ("request_id", "caller", "class", "business_id", "method", "path",
              "cache")
ACCESS_INT = ("status", "upstream_status", "attempts")
ACCESS_NUM = ("upstream_ms", "ratelimit_wait_ms", "total_ms")
TEXT_KEYS = ("caller", "class", "business_id", "method", "path", "status", "cache",
             "upstream_status", "attempts", "upstream_ms",
             "ratelimit_wait_ms", "total_ms")


def json_records(text):
    out = []
    for ln in text.splitlines():
        if not ln.strip():
            continue
        try:
            j = json.loads(ln)
        except ValueError:
            j = None
        out.append((ln, j))
    return out


def access_records(text):
    return [j for _, j in json_records(text)
            if isinstance(j, dict) and j.get("type") == "access"]


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def access_problems(j):
    """Type problems of one JSON access line."""
    p = []
    for k in ACCESS_STR:
        if not isinstance(j.get(k), str) or j.get(k) == "":
            p.append("%s=%r not a non-empty string" % (k, j.get(k)))
    for k in ACCESS_INT:
        if not isinstance(j.get(k), int) or isinstance(j.get(k), bool):
            p.append("%s=%r not an integer" % (k, j.get(k)))
    for k in ACCESS_NUM:
        if not is_num(j.get(k)) or j.get(k) < 0:
            p.append("%s=%r not a number >= 0" % (k, j.get(k)))
    if not TS_RE.fullmatch(str(j.get("ts"))):
        p.append("ts=%r" % j.get("ts"))
    if j.get("level") != "info" or j.get("program") != "asset-gateway":
        p.append("level/program %r/%r" % (j.get("level"), j.get("program")))
    if j.get("cache") not in ("HIT", "MISS", "-"):
        p.append("cache=%r" % j.get("cache"))
    if j.get("method") != "POST":
        p.append("method=%r" % j.get("method"))
    return p


class Call:
    def __init__(self, desc, resp, sent_rid, business, want, elapsed):
        self.desc = desc
        self.resp = resp
        self.sent_rid = sent_rid
        self.business = business
        self.want = want
        self.elapsed = elapsed

    @property
    def rid(self):
        return self.resp.header("x-request-id")


def do_call(gw, desc, body, want, rid=None, business=H.BIZ, headers=None):
    hdrs = dict(headers or {})
    if rid is not None:
        hdrs["X-Request-Id"] = rid
    t0 = time.monotonic()
    r = gw.create(body, business=business, headers=hdrs)
    return Call(desc, r, rid, business, want, time.monotonic() - t0)


def check_call_line(t, c, by_rid):
    lines = by_rid.get(c.rid, [])
    if not t.check(len(lines) == 1, "%s: exactly one access line for "
                   "request id %s" % (c.desc, c.rid),
                   "%d lines; answer %s" % (len(lines), c.resp.short())):
        return
    j = lines[0]
    probs = access_problems(j)
    t.check(not probs, "%s: access line fields have the right types"
            % c.desc, "; ".join(probs) + "\n" + json.dumps(j))
    want = dict(c.want)
    want.setdefault("status", c.resp.status)
    want.setdefault("business_id", c.business)
    want.setdefault("path", H.create_path(c.business))
    want.setdefault("caller", "-")
    want.setdefault("method", "POST")
    diff = {}
    for k, v in want.items():
        ok = j.get(k) in v if isinstance(v, tuple) else j.get(k) == v
        if not ok:
            diff[k] = (v, j.get(k))
    t.check(not diff, "%s: access line matches the call (%s)" % (
        c.desc, ", ".join("%s=%s" % (k, want[k]) for k in
                          ("status", "cache", "upstream_status", "attempts")
                          if k in want)),
            "field: (expected, got) %r\nline %s" % (diff, json.dumps(j)))
    if is_num(j.get("total_ms")):
        t.check(j["total_ms"] <= c.elapsed * 1000 + 5 and
                j.get("upstream_ms", 0) <= j["total_ms"] + 0.5 and
                j.get("ratelimit_wait_ms", 0) <= j["total_ms"] + 0.5,
                "%s: upstream_ms, ratelimit_wait_ms <= total_ms <= the "
                "client's time" % c.desc,
                "client %.1f ms; line %s" % (c.elapsed * 1000, json.dumps(j)))


@H.scenario
def json_gateway(h):
    sb = h.sandbox()
    t = h.t
    gw = H.Gateway(h, sb)
    ua = sb.sample("logs-a.png")
    calls = []
    calls.append(do_call(gw, "miss", {"uri": ua},
                         {"cache": "MISS", "upstream_status": 200,
                          "attempts": 1, "status": 200}, rid="log-miss-1"))
    calls.append(do_call(gw, "hit", {"uri": ua},
                         {"cache": "HIT", "upstream_status": 0,
                          "attempts": 0, "status": 200, "upstream_ms": 0},
                         rid="log-hit-1"))
    calls.append(do_call(gw, "other business, generated request id",
                         {"uri": ua}, {"cache": "MISS", "status": 200,
                                       "upstream_status": 200},
                         business=H.BIZ2))
    calls.append(do_call(gw, "unacceptable X-Request-Id replaced",
                         {"uri": ua}, {"cache": "HIT", "status": 200},
                         rid="bad id with spaces"))
    calls.append(do_call(gw, "invalid uri", {"uri": "ftp://example.com/x"},
                         {"status": 400, "cache": "-", "upstream_status": 0,
                          "attempts": 0}, rid="log-400"))
    calls.append(do_call(gw, "invalid business id", {"uri": ua},
                         {"status": 400, "cache": "-", "attempts": 0},
                         rid="log-badbiz", business="not-a-uuid"))
    calls.append(do_call(gw, "body too large", "y" * 70000,
                         {"status": 413, "cache": "-", "attempts": 0},
                         rid="log-413"))
    calls.append(do_call(gw, "no-cache", {"uri": ua},
                         {"status": 200, "cache": "MISS", "attempts": 1},
                         rid="log-nocache",
                         headers={"Cache-Control": "no-cache"}))
    sb.faults(status=500, status_count=-1)
    calls.append(do_call(gw, "upstream 500 without id",
                         {"uri": sb.sample("logs-500.png")},
                         {"status": 502, "cache": ("MISS", "-"),
                          "upstream_status": 500, "attempts": 1},
                         rid="log-500"))
    sb.reset()
    sb.faults(status=500, status_count=1)
    calls.append(do_call(gw, "500 once with id, retried",
                         {"uri": sb.sample("logs-retry.png"),
                          "id": "logs-retry-1"},
                         {"status": 200, "cache": "MISS",
                          "upstream_status": 200, "attempts": 2},
                         rid="log-retry"))
    sb.reset()
    sb.faults(latency_ms=300)
    slow = do_call(gw, "slow upstream (300 ms)",
                   {"uri": sb.sample("logs-slow.png")},
                   {"status": 200, "cache": "MISS", "attempts": 1},
                   rid="log-slow")
    calls.append(slow)

    # coalesced: three identical calls while the upstream takes 600 ms
    sb.faults(latency_ms=600)
    uc = sb.sample("logs-coalesced.png")
    rids = ["log-co-%d" % i for i in range(3)]
    t0 = time.monotonic()
    res = H.concurrent([lambda r=r: gw.create(
        {"uri": uc}, headers={"X-Request-Id": r}) for r in rids], timeout=20)
    el = time.monotonic() - t0
    sb.reset()
    for rid, r in zip(rids, res):
        if isinstance(r, H.Resp):
            calls.append(Call("coalesced %s" % rid, r, rid, H.BIZ,
                              {"status": 200, "cache": ("HIT", "MISS")},
                              el))
        else:
            t.check(False, "coalesced %s answered" % rid, repr(r))

    # coalesced on a leader that fails: the waiters got no stored answer
    sb.faults(latency_ms=400, status=500, status_count=-1)
    uf = sb.sample("logs-coalesced-fail.png")
    frids = ["log-cof-%d" % i for i in range(3)]
    t0 = time.monotonic()
    res = H.concurrent([lambda r=r: gw.create(
        {"uri": uf}, headers={"X-Request-Id": r}) for r in frids],
        timeout=20)
    el = time.monotonic() - t0
    sb.reset()
    for rid, r in zip(frids, res):
        if isinstance(r, H.Resp):
            calls.append(Call("coalesced on a failing leader %s" % rid, r,
                              rid, H.BIZ, {"status": 502,
                                           "cache": ("MISS", "-")}, el))
        else:
            t.check(False, "coalesced %s answered" % rid, repr(r))

    log = gw.log_text()
    # Health checks (the harness polls /healthz) log access lines at debug
    # level too; count the create calls' own.
    recs = [j for j in access_records(log)
            if "/assets" in str(j.get("path", ""))]
    by_rid = {}
    for j in recs:
        by_rid.setdefault(j.get("request_id"), []).append(j)

    for c in calls:
        if c.sent_rid is not None and re.fullmatch(r"[A-Za-z0-9._:-]+",
                                                   c.sent_rid):
            t.eq(c.rid, c.sent_rid, "%s: X-Request-Id echoed" % c.desc)
        elif c.sent_rid is not None:
            t.check(c.rid and c.rid != c.sent_rid,
                    "%s: a new request id replaces the unacceptable one"
                    % c.desc, c.resp.short())
        check_call_line(t, c, by_rid)
    t.eq(len(recs), len(calls),
         "one access line per create call (%d calls)" % len(calls))

    js = [by_rid.get(r, [{}])[0] for r in rids]
    caches = sorted(j.get("cache") for j in js)
    t.eq(caches, ["HIT", "HIT", "MISS"],
         "coalesced: the leader logs MISS, the two waiters HIT")
    t.eq(sorted(j.get("attempts") for j in js), [0, 0, 1],
         "coalesced: only the leader made an upstream attempt")
    sj = by_rid.get("log-slow", [{}])[0]
    t.check(is_num(sj.get("upstream_ms")) and sj["upstream_ms"] >= 290,
            "slow upstream: upstream_ms >= 290 for a 300 ms upstream",
            json.dumps(sj))
    t.diag("slow call: upstream_ms %r total_ms %r (client %.1f ms)" % (
        sj.get("upstream_ms"), sj.get("total_ms"), slow.elapsed * 1000))

    # every non-access line: {"ts","level","program","request_id"?,"msg"}
    H.check_json_log(t, gw)
    bad = []
    for ln, j in json_records(log):
        if not isinstance(j, dict) or j.get("type") == "access":
            continue
        if not (TS_RE.fullmatch(str(j.get("ts"))) and
                j.get("level") in LEVELS and
                j.get("program") == "asset-gateway" and
                isinstance(j.get("msg"), str) and
                isinstance(j.get("request_id", ""), str) and
                set(j) <= {"ts", "level", "program", "request_id", "msg"}):
            bad.append(ln)
    t.check(not bad, "every other line has ts, level, program, msg "
            "(request_id optional) and nothing else", "\n".join(bad[:5]))
    reqlines = [j for _, j in json_records(log) if isinstance(j, dict)
                and j.get("type") != "access"
                and j.get("request_id") == "log-500"]
    t.check(any(j.get("level") in ("warn", "error", "debug")
                for j in reqlines),
            "request-scoped lines of a failing call carry its request_id",
            repr(reqlines[:3]))
    t.check(h.api_key not in log, "the API key is in no log line",
            "key found")

    # SIGUSR1 while logging to stderr: nothing breaks
    gw.proc.signal(signal.SIGUSR1)
    time.sleep(0.2)
    r = gw.create({"uri": ua})
    t.check(gw.proc.alive() and r.status == 200,
            "SIGUSR1 with logs on stderr: still serving", r.short())
    errs = [j for _, j in json_records(gw.log_text())
            if isinstance(j, dict) and j.get("level") == "error"]
    t.check(not errs, "SIGUSR1 with logs on stderr: no error line",
            repr(errs[:3]))
    rc, killed = gw.stop()
    t.check(rc == 0 and not killed, "json gateway exits 0 on SIGTERM",
            "rc %r killed %r" % (rc, killed))


TEXT_LINE_RE = re.compile(
    r"(\d{4}-\d\d-\d\dT\S+Z) (error|warn|info|debug)( \[([^\]]+)\])? (.+)")


@H.scenario
def text_gateway(h):
    sb = h.sandbox()
    t = h.t
    sb.reset()
    gw = H.Gateway(h, sb, overrides={
        "log": {"format": "text"},
        "ratelimit": {"rate": 1, "max_wait_ms": 3000}})
    res = H.concurrent([
        lambda: gw.create({"uri": sb.sample("txt-1.png")},
                          headers={"X-Request-Id": "txt-1"}),
        lambda: gw.create({"uri": sb.sample("txt-2.png")},
                          headers={"X-Request-Id": "txt-2"})], timeout=15)
    r3 = gw.create({"uri": sb.sample("txt-1.png")},
                   headers={"X-Request-Id": "txt-3"})
    r4 = gw.create({"uri": "nope"}, headers={"X-Request-Id": "txt-4"})
    resp = dict(zip(["txt-1", "txt-2", "txt-3", "txt-4"],
                    list(res) + [r3, r4]))
    t.check(all(isinstance(r, H.Resp) for r in resp.values()) and
            [resp[k].status for k in sorted(resp)] == [200, 200, 200, 400],
            "text gateway: 3 creates -> 200, invalid -> 400",
            "\n".join(r.short() if isinstance(r, H.Resp) else repr(r)
                      for r in resp.values()))
    log = gw.log_text()
    lines = [ln for ln in log.splitlines() if ln.strip()]
    bad = [ln for ln in lines if TEXT_LINE_RE.fullmatch(ln) is None]
    t.check(lines and not bad, "format = text: every one of %d lines is "
            "'TS LEVEL [rid] message'" % len(lines), "\n".join(bad[:5]))
    t.check(not any(ln.lstrip().startswith("{") for ln in lines),
            "format = text: no JSON lines", "\n".join(lines[:3]))
    access = {}
    for ln in lines:
        m = TEXT_LINE_RE.fullmatch(ln)
        if (m and m.group(5).startswith("access ") and
                "/assets" in m.group(5)):
            access.setdefault(m.group(4), []).append(
                (m.group(2), dict(re.findall(r"(\w+)=(\S*)", m.group(5)))))
    t.eq(sum(len(v) for v in access.values()), 4,
         "format = text: one access line per create call (4)")
    want = {"txt-1": (200, ("MISS",)), "txt-2": (200, ("MISS",)),
            "txt-3": (200, ("HIT",)), "txt-4": (400, ("-",))}
    for rid, (status, caches) in want.items():
        got = access.get(rid, [])
        if not t.check(len(got) == 1, "text: exactly one access line "
                       "tagged [%s]" % rid, repr(got)):
            continue
        level, kv = got[0]
        probs = [k for k in TEXT_KEYS if k not in kv]
        for k in ("status", "upstream_status", "attempts"):
            if not re.fullmatch(r"\d+", kv.get(k, "")):
                probs.append("%s=%r" % (k, kv.get(k)))
        for k in ("upstream_ms", "ratelimit_wait_ms", "total_ms"):
            if not re.fullmatch(r"\d+(\.\d+)?", kv.get(k, "")):
                probs.append("%s=%r" % (k, kv.get(k)))
        t.check(not probs and level == "info",
                "text [%s]: info line with every key=value field" % rid,
                "problems %r in %r" % (probs, kv))
        t.check(kv.get("status") == str(status) and kv.get("cache") in caches
                and kv.get("business_id") == H.BIZ
                and kv.get("path") == H.create_path()
                and kv.get("method") == "POST" and kv.get("caller") == "-",
                "text [%s]: status=%d cache=%s business_id path method "
                "caller match" % (rid, status, "|".join(caches)), repr(kv))
    waits = sorted(float(access[r][0][1].get("ratelimit_wait_ms", "0"))
                   for r in ("txt-1", "txt-2") if len(access.get(r, [])) == 1)
    t.check(len(waits) == 2 and waits[0] < 50 and 500 <= waits[1] <= 1500,
            "text: with rate 1 one of two calls logs ratelimit_wait_ms "
            "~1000, the other ~0", repr(waits))
    rc, killed = gw.stop()
    t.check(rc == 0 and not killed, "text gateway exits 0 on SIGTERM",
            "rc %r" % rc)


@H.scenario
def level_gateway(h):
    sb = h.sandbox()
    t = h.t
    gw = H.Gateway(h, sb, overrides={"log": {"level": "warn"}})
    r = gw.create({"uri": sb.sample("lvl.png")},
                  headers={"X-Request-Id": "lvl-1"})
    t.eq(r.status, 200, "level = warn gateway: create -> 200")
    recs = [j for _, j in json_records(gw.log_text()) if isinstance(j, dict)]
    low = [j for j in recs if j.get("type") != "access"
           and j.get("level") not in ("warn", "error")]
    t.check(recs and not low, "level = warn: no info or debug lines",
            repr(low[:3]))
    t.diag("level = warn: %d access lines written" % len(
        [j for j in recs if j.get("type") == "access"]))
    gw.stop()


def poll_file(path, needle, timeout=3.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, "r", encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            text = None
        if text is not None and (needle is None or needle in text):
            return text
        if time.monotonic() >= deadline:
            return text
        time.sleep(0.03)


@H.scenario
def file_gateway(h):
    sb = h.sandbox()
    t = h.t
    logdir = h.path("logs")
    os.mkdir(logdir, 0o700)
    logf = os.path.join(logdir, "gw.log")
    rotated = logf + ".1"
    gw = H.Gateway(h, sb, overrides={"log": {"file": logf}})
    text = poll_file(logf, "listening") or ""
    t.check("listening" in text, "[log] file: start-up lines go to the file",
            text[:300])
    st = os.stat(logf)
    t.check(stat.S_IMODE(st.st_mode) & 0o007 == 0,
            "[log] file: not readable or writable by others (mode %o)"
            % stat.S_IMODE(st.st_mode), "")
    r = gw.create({"uri": sb.sample("file-1.png")},
                  headers={"X-Request-Id": "file-1"})
    t.eq(r.status, 200, "[log] file: create -> 200")
    text = poll_file(logf, '"file-1"') or ""
    t.eq(len([j for j in access_records(text)
              if j.get("request_id") == "file-1"]), 1,
         "[log] file: the access line is in the file")
    t.check(gw.log_text().strip() == "",
            "[log] file: nothing on stderr", gw.log_text()[:300])

    os.rename(logf, rotated)
    r = gw.create({"uri": sb.sample("file-2.png")},
                  headers={"X-Request-Id": "file-2"})
    text = poll_file(rotated, '"file-2"') or ""
    t.check('"file-2"' in text and not os.path.exists(logf),
            "after the move, before SIGUSR1: lines still go to the moved "
            "file", text[-300:])

    gw.proc.signal(signal.SIGUSR1)
    new = poll_file(logf, "reopen", 3.0)
    t.check(new is not None, "SIGUSR1 creates a new file at the configured "
            "path", "no %s" % logf)
    r = gw.create({"uri": sb.sample("file-3.png")},
                  headers={"X-Request-Id": "file-3"})
    t.eq(r.status, 200, "after SIGUSR1: create -> 200")
    new = poll_file(logf, '"file-3"') or ""
    old = poll_file(rotated, None) or ""
    t.eq(len([j for j in access_records(new)
              if j.get("request_id") == "file-3"]), 1,
         "after SIGUSR1: the new line is in the new file")
    t.check('"file-3"' not in old and '"file-2"' not in new,
            "after SIGUSR1: the moved file gets no new line", old[-300:])
    lines = [ln for ln in (old + new).splitlines() if ln.strip()]
    badj = [ln for ln in lines if not isinstance(json.loads(ln), dict)] \
        if all(_is_json(ln) for ln in lines) else ["not JSON"]
    t.check(not badj, "every line in both files is a JSON object",
            repr(badj[:3]))
    st = os.stat(logf)
    t.check(stat.S_IMODE(st.st_mode) & 0o007 == 0,
            "reopened file: not readable or writable by others (mode %o)"
            % stat.S_IMODE(st.st_mode), "")
    rc, killed = gw.stop()
    t.check(rc == 0 and not killed, "file gateway exits 0 on SIGTERM",
            "rc %r" % rc)
    t.check(h.api_key not in old + new, "the API key is in neither file",
            "key found")


def _is_json(ln):
    try:
        json.loads(ln)
        return True
    except ValueError:
        return False


if __name__ == "__main__":
    H.run()
