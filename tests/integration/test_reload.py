"""SIGHUP reload of the real gateway (issue #6, SPEC §6): a new API key
takes effect on the next upstream call while a slow call in flight
completes with 200; calls in flight keep the settings they started with;
a broken config or key file is refused with an error line and the old
settings stay; reloadable keys apply to new calls; restart-only keys
(listen, base_url) keep their running value with a warn line naming
them; reloads under load drop no call. Each scenario has its own sandbox and
gateway (-k NAME runs one alone)."""

import json
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

metric, records, wait_until = H.metric, H.log_records, H.wait_until

RELOAD_WAIT_S = 5.0



def reloads(gw):
    return (metric(gw, "config_reloads_total", result="ok"),
            metric(gw, "config_reloads_total", result="failed"))


def sighup(gw, expect):
    """Sends SIGHUP and waits until config_reloads_total{result=EXPECT}
    grew by one. Returns (ok, failed) after, or raises on timeout."""
    before = reloads(gw)
    idx = 0 if expect == "ok" else 1
    gw.proc.signal(signal.SIGHUP)
    deadline = time.monotonic() + RELOAD_WAIT_S
    while time.monotonic() < deadline:
        now = reloads(gw)
        if now != before:
            return now
        time.sleep(0.03)
    raise RuntimeError("no reload counted within %.0f s (expected %s)\n%s"
                       % (RELOAD_WAIT_S, expect, gw.proc.tail()))


def write_config(gw, overrides=None, extra=""):
    """Rewrites GW's config file: its start config plus OVERRIDES, then
    the raw text EXTRA."""
    cfg = json.loads(json.dumps(gw.cfg))
    H.merge_config(cfg, overrides)
    text = H.render_config(cfg) + extra
    with open(gw.conf_path, "w") as f:
        f.write(text)


def write_key(path, key):
    with open(path, "w") as f:
        f.write(key + "\n")



def new_lines(gw, since):
    return records(gw)[since:]


def in_thread(fn):
    box = {}

    def run():
        try:
            box["r"] = fn()
        except Exception as e:  # reported by the caller
            box["r"] = e
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, box



def short(r):
    return r.short() if isinstance(r, H.Resp) else repr(r)


# ------------------------------------------------------------ (a) key

@H.scenario
def key_change(h):
    t = h.t
    k1 = h.api_key
    k2 = "agw-test-key2-" + os.urandom(12).hex()
    t.redact.append(k2)
    sb = H.Sandbox(h, api_key=k1)
    gw = H.Gateway(h, sb, api_key=k1,
                   overrides={"upstream": {"request_timeout_ms": 5000}})
    key_path = gw.cfg["upstream"]["api_key_file"]
    sb.faults(latency_ms=1500)
    t0 = time.monotonic()
    th, box = in_thread(lambda: gw.create(
        {"uri": sb.sample("reload-inflight.png")},
        headers={"X-Request-Id": "reload-inflight"}))
    arrived = wait_until(lambda: sb.calls() >= 1, 2.0)
    t.check(arrived, "key change: the slow call reached the sandbox", "")
    write_key(key_path, k2)
    after = sighup(gw, "ok")
    t.eq(after, (1.0, 0.0), "key change: config_reloads_total ok 1, "
         "failed 0")
    sb.faults(latency_ms=0)
    r = gw.create({"uri": sb.sample("reload-next.png")},
                  headers={"X-Request-Id": "reload-next"})
    H.check_error(t, r, 502, 13, "key change: the next call carries the new "
                  "key, which the sandbox (old key) refuses")
    statuses = [c.get("status") for c in sb.call_list()]
    t.check(401 in statuses, "key change: the sandbox answered 401 to the "
            "call after the reload", repr(statuses))
    th.join(10)
    slow = box.get("r")
    el = time.monotonic() - t0
    t.check(isinstance(slow, H.Resp) and slow.status == 200
            and slow.header("x-cache") == "MISS",
            "key change: the call in flight during the reload -> 200 MISS",
            short(slow))
    t.check(el >= 1.4, "key change: the in-flight call really was slow "
            "(%.2f s)" % el, "")

    # the sandbox now restarts with the new key on the same port
    port = sb.port
    sb.stop()
    sb2 = H.Sandbox(h, api_key=k2, port=port)
    r = gw.create({"uri": sb2.sample("reload-after.png")})
    t.check(r.status == 200 and r.header("x-cache") == "MISS",
            "key change: with the sandbox on the new key, a create -> 200",
            r.short())
    r = gw.create({"uri": sb2.sample("reload-after-2.png")})
    t.eq(r.status, 200, "key change: and the next one too")
    recs = records(gw)
    t.check(any(j.get("level") == "info" and "reload" in j.get("msg", "")
                for j in recs),
            "key change: an info line says the configuration was reloaded",
            "")
    out = gw.output_text()
    t.check(k1 not in out and k2 not in out,
            "key change: neither key appears in the gateway's output",
            "key found")
    H.check_json_log(t, gw)
    gw.stop()
    sb2.stop()


@H.scenario
def key_change_queued(h):
    """A call queued on the limiter started under the old key; the
    settings it started with include the key (issue #6: in-flight calls
    finish with the settings they started with)."""
    t = h.t
    k1 = h.api_key
    k2 = "agw-test-key3-" + os.urandom(12).hex()
    t.redact.append(k2)
    sb = H.Sandbox(h, api_key=k1)
    gw = H.Gateway(h, sb, api_key=k1, overrides={
        "ratelimit": {"rate": 1, "max_wait_ms": 5000}})
    key_path = gw.cfg["upstream"]["api_key_file"]
    res = [None]
    th = threading.Thread(target=lambda: res.__setitem__(0, H.concurrent(
        [lambda: gw.create({"uri": sb.sample("reload-q1.png")}),
         lambda: gw.create({"uri": sb.sample("reload-q2.png")})],
        timeout=15)), daemon=True)
    th.start()
    queued = wait_until(
        lambda: metric(gw, "ratelimit_queue_depth") == 1, 0.8)
    t.check(queued, "queued call: one call waits on the limiter", "")
    write_key(key_path, k2)
    sighup(gw, "ok")
    th.join(15)
    out = res[0] or []
    st = [x.status if isinstance(x, H.Resp) else repr(x) for x in out]
    t.check(st == [200, 200],
            "queued call: a call waiting on the limiter during the key "
            "reload still completes with 200 (it started under the old "
            "key)", "statuses %r; sandbox saw %r\n%s" % (
                st, [c.get("status") for c in sb.call_list()],
                "\n".join(short(x) for x in out)))
    gw.stop()
    sb.stop()


@H.scenario
def timeout_change_queued(h):
    """A call queued on the limiter when request_timeout_ms shrinks keeps
    the timeout it started with."""
    t = h.t
    sb = H.Sandbox(h)
    gw = H.Gateway(h, sb, overrides={
        "ratelimit": {"rate": 1, "max_wait_ms": 5000},
        "upstream": {"request_timeout_ms": 5000}})
    sb.faults(latency_ms=1500)
    res = [None]
    th = threading.Thread(target=lambda: res.__setitem__(0, H.concurrent(
        [lambda: gw.create({"uri": sb.sample("reload-tq1.png")}),
         lambda: gw.create({"uri": sb.sample("reload-tq2.png")})],
        timeout=15)), daemon=True)
    th.start()
    queued = wait_until(
        lambda: metric(gw, "ratelimit_queue_depth") == 1, 0.8)
    t.check(queued, "queued call (timeout): one call waits on the limiter",
            "")
    write_config(gw, {"ratelimit": {"rate": 1, "max_wait_ms": 5000},
                      "upstream": {"request_timeout_ms": 500}})
    sighup(gw, "ok")
    th.join(15)
    out = res[0] or []
    st = [x.status if isinstance(x, H.Resp) else repr(x) for x in out]
    t.check(st == [200, 200],
            "queued call: a call waiting on the limiter when "
            "request_timeout_ms drops 5000 -> 500 keeps its 5000 ms "
            "(1.5 s upstream -> 200)", "statuses %r\n%s" % (
                st, "\n".join(short(x) for x in out)))
    gw.stop()
    sb.stop()


# ----------------------------------------------- (b) (c) broken + changes

@H.scenario
def broken_and_changes(h):
    t = h.t
    sb = H.Sandbox(h)
    gw = H.Gateway(h, sb, overrides={
        "ratelimit": {"rate": 10},
        "upstream": {"request_timeout_ms": 5000}})
    key_path = gw.cfg["upstream"]["api_key_file"]
    r = gw.create({"uri": sb.sample("b-0.png")})
    t.check(r.status == 200 and r.header("ratelimit-limit") == "10",
            "start: rate 10 -> RateLimit-Limit 10", r.short())

    def still_old(desc):
        r = gw.create({"uri": sb.sample("b-%s.png" % desc.replace(" ", "-"))})
        t.check(r.status == 200 and r.header("ratelimit-limit") == "10",
                "%s: refused, still serving with rate 10 and the old key"
                % desc, r.short())
        t.eq(gw.get("/readyz").status, 200, "%s: /readyz still 200" % desc)

    def errors_since(n):
        return [j for j in new_lines(gw, n) if j.get("level") == "error"]

    broken = [
        ("syntax error", {"ratelimit": {"rate": 20}},
         "[ratelimit\nthis line is not ini\n"),
        ("bad value", {"ratelimit": {"rate": "-5"}}, ""),
        ("unknown key", {"ratelimit": {"rate": 20, "no_such_key": 1}}, ""),
    ]
    failed = 0
    for desc, ov, extra in broken:
        n = len(records(gw))
        write_config(gw, ov, extra)
        ok_n, failed_n = sighup(gw, "failed")
        failed += 1
        t.eq((ok_n, failed_n), (0.0, float(failed)),
             "%s: config_reloads_total{result=\"failed\"} %d, ok 0"
             % (desc, failed))
        errs = errors_since(n)
        t.check(errs and any(gw.conf_path in j.get("msg", "") for j in errs),
                "%s: an error line naming the config file" % desc,
                repr(new_lines(gw, n)[-3:]))
        t.diag("%s: %s" % (desc, errs[0].get("msg") if errs else "-"))
        still_old(desc)

    # the key file: empty, then gone (the config itself is fine)
    write_config(gw, {"ratelimit": {"rate": 20}})
    for desc, act in (("empty key file", lambda: write_key(key_path, "")),
                      ("key file gone", lambda: os.unlink(key_path))):
        act()
        n = len(records(gw))
        ok_n, failed_n = sighup(gw, "failed")
        failed += 1
        t.eq((ok_n, failed_n), (0.0, float(failed)),
             "%s: reload refused (failed %d)" % (desc, failed))
        errs = errors_since(n)
        t.check(errs, "%s: an error line" % desc, "")
        t.check(all(h.api_key not in j.get("msg", "") for j in errs),
                "%s: the error line does not hold the key" % desc, "")
        still_old(desc)

    # (c) a good file: rate 10 -> 20 applies to new calls
    write_key(key_path, h.api_key)
    n = len(records(gw))
    ok_n, failed_n = sighup(gw, "ok")
    t.eq((ok_n, failed_n), (1.0, float(failed)),
         "fixed files: config_reloads_total ok 1")
    r = gw.create({"uri": sb.sample("c-rate.png")})
    t.check(r.status == 200 and r.header("ratelimit-limit") == "20",
            "reload rate 10 -> 20: RateLimit-Limit 20", r.short())
    t.check(any(j.get("level") == "info" and "reload" in j.get("msg", "")
                for j in new_lines(gw, n)),
            "good reload: an info line says so", "")

    # max_body_bytes smaller -> 413 for a body that passed before
    pad = {"uri": sb.sample("c-body.png"), "metadata": {}}
    body = json.dumps(pad) + " " * (900 - len(json.dumps(pad)))
    r = gw.create(body)
    t.eq(r.status, 200, "900-byte body with max_body_bytes 65536 -> 200")
    write_config(gw, {"ratelimit": {"rate": 20},
                      "server": {"max_body_bytes": 512}})
    sighup(gw, "ok")
    r = gw.create(body)
    H.check_error(t, r, 413, 3, "after reload max_body_bytes 512: the same "
                  "900-byte body")
    r = gw.create({"uri": sb.sample("c-body.png")})
    t.check(r.status == 200 and r.header("x-cache") == "HIT",
            "a small body still passes (HIT)", r.short())

    # allow_private_sources yes -> no
    write_config(gw, {"ratelimit": {"rate": 20},
                      "server": {"max_body_bytes": 512},
                      "security": {"allow_private_sources": "no"}})
    sighup(gw, "ok")
    r = gw.create({"uri": sb.sample("c-private.png")})
    H.check_error(t, r, 400, 3, "after reload allow_private_sources = no: "
                  "a loopback source", "uri")

    # log level debug -> info: no more debug lines
    write_config(gw, {"ratelimit": {"rate": 20},
                      "log": {"level": "info"}})
    sighup(gw, "ok")
    n = len(records(gw))
    r = gw.create({"uri": sb.sample("c-level.png")})
    t.eq(r.status, 200, "after reload level = info: create -> 200")
    lv = [j.get("level") for j in new_lines(gw, n)]
    t.check("debug" not in lv and "info" in lv,
            "after reload level = info: no debug line, access line kept",
            repr(lv))

    # request_timeout_ms: the call in flight keeps its 5000 ms
    sb.reset()
    sb.faults(latency_ms=1500)
    th, box = in_thread(lambda: gw.create({"uri": sb.sample("c-slow.png")}))
    arrived = wait_until(lambda: sb.calls() >= 1, 2.0)
    t.check(arrived, "request_timeout_ms: a slow call reached the sandbox",
            "")
    write_config(gw, {"ratelimit": {"rate": 20},
                      "upstream": {"request_timeout_ms": 500}})
    sighup(gw, "ok")
    t0 = time.monotonic()
    r = gw.create({"uri": sb.sample("c-slow-2.png")})
    el = time.monotonic() - t0
    H.check_error(t, r, 504, 4, "after reload request_timeout_ms 500: a new "
                  "call to a 1.5 s upstream")
    t.check(el < 1.2, "and it timed out after ~0.5 s (%.2f s)" % el, "")
    th.join(10)
    t.check(isinstance(box.get("r"), H.Resp) and box["r"].status == 200,
            "the call in flight during that reload keeps its 5000 ms "
            "timeout -> 200", short(box.get("r")))
    sb.reset()
    H.check_json_log(t, gw)
    gw.stop()
    sb.stop()


# --------------------------------------------------- (d) restart-only keys

@H.scenario
def restart_only(h):
    t = h.t
    sb = H.Sandbox(h)
    gw = H.Gateway(h, sb)
    new_port = H.free_port()
    other = "http://127.0.0.1:%d" % H.free_port()
    n = len(records(gw))
    write_config(gw, {"server": {"listen": "127.0.0.1:%d" % new_port},
                      "upstream": {"base_url": other},
                      "ratelimit": {"rate": 30},
                      "log": {"format": "text"}})
    ok_n, failed_n = sighup(gw, "ok")
    t.eq((ok_n, failed_n), (1.0, 0.0),
         "listen/base_url changed: the reload is applied (ok 1) for the "
         "other keys")
    warns = [j.get("msg", "") for j in new_lines(gw, n)
             if j.get("level") == "warn"]
    t.check(any("listen" in w and "restart" in w for w in warns),
            "a warn line names listen and says it needs a restart",
            repr(warns))
    t.check(any("base_url" in w for w in warns),
            "a warn line names base_url", repr(warns))
    t.check(any("format" in w for w in warns),
            "a warn line names [log] format", repr(warns))
    r = gw.get("/healthz")
    t.eq(r.status, 200, "still listening on the old port %d" % gw.port)
    r = gw.create({"uri": sb.sample("d-1.png")})
    t.check(r.status == 200 and r.header("ratelimit-limit") == "30",
            "creates still reach the running base_url, the new rate "
            "applies", r.short())
    try:
        with socket.create_connection(("127.0.0.1", new_port), timeout=1):
            listening = True
    except OSError:
        listening = False
    t.check(not listening, "nothing listens on the new port until a "
            "restart", "port %d accepts connections" % new_port)
    H.check_json_log(t, gw, "format stays json after the reload: every "
                     "stderr line is a JSON object")

    # [log] file is reloadable: lines move to the file
    logf = h.path("reloaded.log")
    write_config(gw, {"ratelimit": {"rate": 30}, "log": {"file": logf}})
    sighup(gw, "ok")
    r = gw.create({"uri": sb.sample("d-2.png")},
                  headers={"X-Request-Id": "d-after-file"})
    t.eq(r.status, 200, "after reload with [log] file: create -> 200")
    text = ""
    if wait_until(lambda: os.path.exists(logf), 2.0):
        with open(logf) as f:
            text = f.read()
    t.check('"d-after-file"' in text and '"d-after-file"' not in
            gw.log_text(), "after reload with [log] file: the access line "
            "goes to the file, not stderr", text[-300:])
    gw.stop()
    sb.stop()


# ------------------------------------------------------ reload under load

@H.scenario
def under_load(h):
    t = h.t
    sb = H.Sandbox(h)
    gw = H.Gateway(h, sb)
    stop = threading.Event()
    results = []
    lock = threading.Lock()

    def client(k):
        i = 0
        while not stop.is_set() and i < 400:
            # every other call is a repeat: hits and misses mixed
            r = gw.create({"uri": sb.sample("load-%d-%d.png" % (k, i // 2))},
                          timeout=10)
            with lock:
                results.append(r)
            i += 1
    threads = [threading.Thread(target=client, args=(k,), daemon=True)
               for k in range(4)]
    for th in threads:
        th.start()
    sent = 0
    for i in range(10):
        time.sleep(0.08)
        write_config(gw, {"ratelimit": {"rate": 95 + i}})
        gw.proc.signal(signal.SIGHUP)
        sent += 1
    time.sleep(0.2)
    stop.set()
    for th in threads:
        th.join(15)
    bad = [r for r in results if r.status != 200]
    t.check(results and not bad, "reload under load: all %d calls made "
            "during %d SIGHUPs -> 200" % (len(results), sent),
            "\n".join(r.short() for r in bad[:5]))
    ok_n, failed_n = reloads(gw)
    t.check(1 <= ok_n <= sent and failed_n == 0,
            "reload under load: between 1 and %d reloads counted ok, none "
            "failed" % sent, "ok %r failed %r" % (ok_n, failed_n))
    t.diag("reload under load: %d calls, %d SIGHUPs, %d reloads counted"
           % (len(results), sent, ok_n))
    r = gw.create({"uri": sb.sample("load-last.png")})
    t.check(r.status == 200 and r.header("ratelimit-limit") == "104",
            "after the last reload: RateLimit-Limit 104", r.short())
    H.check_json_log(t, gw)
    gw.stop()
    sb.stop()


if __name__ == "__main__":
    H.run()
