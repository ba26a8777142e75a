"""The operators' status page (issue #17, SPEC section 12) in a real
browser: headless Chromium (Debian's chromium package) loads /admin/ from
one of two gateways sharing one redis-server, the test waits until the
page has listed both instances in its fleet table and drawn its chart,
takes a screenshot into the test's output directory, and fails on any
message the page wrote to the JavaScript console (an uncaught error is
one) and on any request the page made other than /admin/ and
/admin/status.

Chromium runs with --virtual-time-budget, so its clock runs ahead while
the page waits for its 2 s poll; each run is bounded in wall time.
"""

import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

BROWSER_TIMEOUT_S = 60
# Browser time the page gets: its first poll, then two more (2 s each).
VIRTUAL_TIME_MS = 5000
CONSOLE = re.compile(r":CONSOLE[:(]?\d*\)?\] (.*)")


def browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("no chromium on PATH (scripts/deps.sh --test installs it)")


def chromium(h, url, *extra):
    """Runs headless Chromium on URL; (rc, stdout, console lines)."""
    profile = h.path(h.name("chromium-profile-"))
    args = [browser(), "--headless", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--disable-extensions",
            "--disable-background-networking", "--disable-sync",
            "--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=%d" % VIRTUAL_TIME_MS] + list(extra) + [url]
    rc, out, err = H.run_cmd(args, timeout=BROWSER_TIMEOUT_S)
    console = [m.group(1) for m in map(CONSOLE.search, err.splitlines()) if m]
    return rc, out, console


def admin_fleet(h, sb):
    redis = H.Redis(h)
    gws = []
    for _ in range(2):
        admin_port = H.free_port()
        gw = H.Gateway(h, sb, overrides={
            "store": {"backend": "redis", "redis_url": redis.url(),
                      "key_prefix": "page:"},
            "admin": {"listen": "127.0.0.1:%d" % admin_port},
        })
        gw.admin_port = admin_port
        gws.append(gw)
    return redis, gws


def status(gw):
    r = H.request(gw.admin_port, "GET", "/admin/status")
    return r.json if r.status == 200 and isinstance(r.json, dict) else {}


def fleet_live(gw, n):
    return status(gw).get("fleet", {}).get("live") == n


def attr(dom, element_id_or_tag, name):
    """The value of NAME on the element whose opening tag matches."""
    m = re.search(r"<%s\b[^>]*\b%s=\"([^\"]*)\"" % (element_id_or_tag, name),
                  dom)
    return m.group(1) if m else None


def admin_paths(gw):
    """The paths the admin listener answered, from its access lines."""
    return [r.get("path") for r in H.log_records(gw)
            if r.get("type") == "access" and r.get("caller") == "admin"]


@H.scenario
def page_shows_fleet(h):
    t = h.t
    sb = h.sandbox()
    redis, (a, b) = admin_fleet(h, sb)
    t.check(H.wait_until(lambda: fleet_live(a, 2), 5.0),
            "both instances heartbeat: /admin/status says live = 2")
    # Some upstream calls and hits, so the chart and the hit ratio have data.
    for i in range(6):
        body = {"uri": sb.sample("page-%d.png" % (i % 3))}
        (a if i % 2 else b).create(body)
    # Two history samples (one each history_every_s): a line to draw.
    samples = H.wait_until(lambda: len(status(a).get("history", [])) >= 2,
                           15.0)
    t.check(samples, "/admin/status has two history samples")
    url = "http://127.0.0.1:%d/admin/" % a.admin_port
    rc, dom, console = chromium(h, url, "--dump-dom")
    t.eq(rc, 0, "chromium --dump-dom exits 0")
    t.eq(console, [], "no message on the JavaScript console")
    t.eq(attr(dom, "body", "data-ready"), "1",
         "the page rendered /admin/status (body data-ready)")
    t.eq(attr(dom, "body", "data-instances"), "2",
         "the fleet table lists both instances")
    for gw in (a, b):
        ident = status(gw).get("instance", {}).get("id", "?")
        t.check(ident in dom, "the fleet table names instance %s" % ident)
    drawn = attr(dom, "canvas", "data-drawn")
    t.check(drawn is not None and int(drawn) >= 1,
            "the chart has drawn (%s times)" % drawn)
    points = attr(dom, "canvas", "data-points")
    t.check(points is not None and int(points) >= 2,
            "the chart has history points (%s)" % points)
    shot = os.path.join(h.builddir, "tests", "integration",
                        "test_admin_page.png")
    os.makedirs(os.path.dirname(shot), exist_ok=True)
    if os.path.exists(shot):
        os.unlink(shot)
    rc, _, console = chromium(h, url, "--hide-scrollbars",
                              "--window-size=1366,900",
                              "--screenshot=" + shot)
    size = os.path.getsize(shot) if os.path.exists(shot) else 0
    t.check(rc == 0 and size > 10000,
            "screenshot taken: %s (%d bytes)" % (shot, size))
    t.eq(console, [], "no console message while taking the screenshot")
    paths = set(admin_paths(a))
    t.check(paths <= {"/admin/", "/admin/status"} and "/admin/status" in paths,
            "the page asked for nothing but /admin/ and /admin/status",
            "paths %r" % sorted(paths))


@H.scenario
def page_shows_degraded(h):
    """Redis gone: the page says the limit is local and Redis is down
    (the status marks its facts local), and writes nothing to the
    console."""
    t = h.t
    sb = h.sandbox()
    redis, (a, _) = admin_fleet(h, sb)
    a.create({"uri": sb.sample("page-degraded.png")})
    redis.stop()
    t.check(H.wait_until(lambda: status(a).get("limiter", {}).get("mode")
                         == "degraded", 5.0),
            "Redis stopped: /admin/status says the limiter is degraded")
    rc, dom, console = chromium(h, "http://127.0.0.1:%d/admin/" % a.admin_port,
                                "--dump-dom")
    t.eq(rc, 0, "chromium --dump-dom exits 0")
    t.eq(console, [], "no message on the JavaScript console")
    t.check("degraded: local limit" in dom and "Redis down" in dom,
            "the page shows the degraded limit and Redis down")


if __name__ == "__main__":
    H.run()
