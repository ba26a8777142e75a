"""GET /metrics against the real gateway and sandbox (issue #6, SPEC §2
Metrics): the exposition is well formed, and the counters move by
exactly the right amount for a miss, a hit, coalesced calls, a limiter
429, validation errors, upstream errors and retries; gauges show calls
in flight, waiters and queued calls; histograms are consistent; labels
never carry business ids, URIs or request ids.

Every /metrics answer is itself counted in requests_total{code="200"}
after it is rendered, so a scrape sees all the scrapes before it: the
Scraper below counts them to predict that series exactly. Each scenario
has its own gateway over the reset shared sandbox and compares scrapes it
took itself (-k NAME runs one alone)."""

import math
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

P = "asset_gateway_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SAMPLE_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^{}]*)\})? '
    r'([-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|\+Inf|-Inf|NaN))$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
ALLOWED_LABELS = {"code", "result", "le", "version", "caller", "class"}
# SPEC section 11: a caller's priority class.
CLASSES = ("interactive", "batch")
# Histograms with one series per class.
BY_CLASS = ("ratelimit_wait_seconds",)
INTER = {"class": "interactive"}
# upstream_calls_total{caller,class}: names from the clients file; these
# gateways run with mode = none, where every caller is "-".
KNOWN_CALLERS = {"-"}
HISTOGRAMS = ("upstream_duration_seconds", "ratelimit_wait_seconds",
              "redis_rtt_seconds")


def parse_labels(text):
    out = {}
    rest = text or ""
    pos = 0
    while pos < len(rest):
        m = LABEL_RE.match(rest, pos)
        if m is None:
            raise ValueError("bad label text %r" % rest)
        out[m.group(1)] = m.group(2)
        pos = m.end()
        if pos < len(rest):
            if rest[pos] != ",":
                raise ValueError("bad label text %r" % rest)
            pos += 1
    return out


class Exposition:
    """One parsed /metrics answer: samples, HELP/TYPE lines, problems."""

    def __init__(self, text):
        self.text = text
        self.samples = {}   # (name, frozenset(labels.items())) -> value
        self.order = []     # (name, labels) in text order
        self.types = {}
        self.helps = {}
        self.problems = []
        for ln in text.splitlines():
            if ln == "":
                continue
            if ln.startswith("# HELP "):
                parts = ln.split(" ", 3)
                self.helps[parts[2]] = parts[3] if len(parts) > 3 else ""
                continue
            if ln.startswith("# TYPE "):
                parts = ln.split(" ")
                if len(parts) != 4:
                    self.problems.append("bad TYPE line %r" % ln)
                    continue
                self.types[parts[2]] = parts[3]
                continue
            if ln.startswith("#"):
                continue
            m = SAMPLE_RE.match(ln)
            if m is None:
                self.problems.append("bad sample line %r" % ln)
                continue
            try:
                labels = parse_labels(m.group(3))
            except ValueError as e:
                self.problems.append(str(e))
                continue
            key = (m.group(1), frozenset(labels.items()))
            if key in self.samples:
                self.problems.append("duplicate sample %r" % ln)
            self.samples[key] = float(m.group(4))
            self.order.append((m.group(1), labels))

    def get(self, name, **labels):
        """Value of P+NAME{LABELS}; 0 when absent (vec families only show
        non-zero HTTP statuses)."""
        return self.samples.get((P + name, frozenset(labels.items())), 0.0)

    def has(self, name, **labels):
        return (P + name, frozenset(labels.items())) in self.samples

    def total(self, name):
        """Sum over every label value of P+NAME."""
        return sum(v for (n, _), v in self.samples.items() if n == P + name)

    def family_of(self, name):
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] in self.types:
                return name[:-len(suffix)]
        return name

    def buckets(self, hist, **want):
        """[(le, count)] of histogram P+HIST{WANT} in text order."""
        out = []
        for name, labels in self.order:
            if name == P + hist + "_bucket" and all(
                    labels.get(k) == v for k, v in want.items()):
                le = labels.get("le")
                v = self.samples[(name, frozenset(labels.items()))]
                out.append((float("inf") if le == "+Inf" else float(le), v))
        return out


class Scraper:
    """Scrapes /metrics on a fresh connection each time; counts scrapes
    so requests_total{code="200"} can be predicted."""

    def __init__(self, t, gw):
        self.t = t
        self.gw = gw
        self.count = 0
        self.last = None

    def scrape(self):
        r = self.gw.get("/metrics")
        if r.status != 200:
            raise RuntimeError("GET /metrics failed: %s" % r.short())
        self.count += 1
        self.last = r
        return Exposition(r.body.decode("utf-8"))

    def poll(self, cond, timeout=3.0):
        """Scrapes until COND(exposition) holds or TIMEOUT s pass; returns
        the last exposition and whether COND held."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.scrape()
            if cond(m):
                return m, True
            if time.monotonic() >= deadline:
                return m, False
            time.sleep(0.03)


def deltas(a, b, names):
    """{name(labels): b - a} for the (name, labels) pairs in NAMES."""
    out = {}
    for name, labels in names:
        key = name + ("{%s}" % ",".join("%s=%s" % kv for kv in
                                        sorted(labels.items()))
                      if labels else "")
        out[key] = b.get(name, **labels) - a.get(name, **labels)
    return out


WATCHED = [
    ("requests_total", {"code": "200"}),
    ("requests_total", {"code": "400"}),
    ("requests_total", {"code": "405"}),
    ("requests_total", {"code": "413"}),
    ("requests_total", {"code": "429"}),
    ("requests_total", {"code": "502"}),
    ("cache_lookups_total", {"result": "hit"}),
    ("cache_lookups_total", {"result": "miss"}),
    ("cache_lookups_total", {"result": "coalesced"}),
    ("upstream_requests_total", {"code": "200"}),
    ("upstream_requests_total", {"code": "500"}),
    ("upstream_requests_total", {"code": "error"}),
    ("upstream_retries_total", {}),
    ("upstream_429_total", {}),
    ("upstream_duration_seconds_count", {}),
    ("ratelimit_wait_seconds_count", INTER),
    ("ratelimit_wait_seconds_count", {"class": "batch"}),
    ("ratelimit_rejected_total", INTER),
    ("ratelimit_rejected_total", {"class": "batch"}),
    ("config_reloads_total", {"result": "ok"}),
    ("config_reloads_total", {"result": "failed"}),
]


def check_moves(t, a, b, want, desc):
    """Every WATCHED series moved from A to B by WANT[key] (0 when not
    named)."""
    got = deltas(a, b, WATCHED)
    exp = {k: 0 for k in got}
    exp.update(want)
    diff = {k: (exp[k], got[k]) for k in got if got[k] != exp[k]}
    return t.check(not diff, "%s: counters moved by exactly %s" % (
        desc, ", ".join("%s+%d" % kv for kv in sorted(want.items()))
        or "nothing"),
        "series whose change differs (expected, got): %r" % diff)


def check_format(t, m, resp, desc):
    t.eq(resp.header("content-type"), CONTENT_TYPE,
         "%s: Content-Type is the 0.0.4 text format" % desc)
    t.check(not m.problems and m.samples,
            "%s: every line is HELP, TYPE or a valid sample (%d samples)"
            % (desc, len(m.samples)), "\n".join(m.problems[:10]))
    fams = {m.family_of(n) for n, _ in m.order}
    no_meta = sorted(f for f in fams
                     if f not in m.types or f not in m.helps)
    t.check(not no_meta, "%s: every family has # HELP and # TYPE" % desc,
            repr(no_meta))
    bad_prefix = sorted(f for f in fams if not f.startswith(P))
    t.check(not bad_prefix, "%s: every name starts with %s" % (desc, P),
            repr(bad_prefix))
    bad_type = {f: ty for f, ty in m.types.items()
                if ty not in ("counter", "gauge", "histogram")}
    t.check(not bad_type, "%s: TYPEs are counter, gauge or histogram"
            % desc, repr(bad_type))
    ctr_bad = sorted(f for f, ty in m.types.items()
                     if ty == "counter" and not f.endswith("_total"))
    t.check(not ctr_bad, "%s: counter names end in _total" % desc,
            repr(ctr_bad))
    needed = ["requests_total", "cache_lookups_total",
              "upstream_requests_total", "upstream_duration_seconds",
              "ratelimit_wait_seconds", "ratelimit_rejected_total",
              "redis_up", "build_info", "start_time_seconds",
              "inflight_requests", "ratelimit_queue_depth",
              "connections_open", "config_reloads_total"]
    missing = [n for n in needed if P + n not in m.types]
    t.check(not missing, "%s: SPEC §2 and issue #6 families present"
            % desc, repr(missing))
    t.eq(m.types.get(P + "upstream_duration_seconds"), "histogram",
         "%s: upstream_duration_seconds is a histogram" % desc)
    t.eq(m.types.get(P + "ratelimit_wait_seconds"), "histogram",
         "%s: ratelimit_wait_seconds is a histogram" % desc)
    t.check(all(m.has("cache_lookups_total", result=r)
                for r in ("hit", "miss", "coalesced")),
            "%s: cache_lookups_total shows hit, miss and coalesced" % desc,
            m.text[:400])


def check_histograms(t, m, desc):
    probs = []
    for hname, labels in [(n, {"class": c}) if n in BY_CLASS else (n, {})
                          for n in HISTOGRAMS
                          for c in (CLASSES if n in BY_CLASS else ("",))]:
        b = m.buckets(hname, **labels)
        if not b:
            probs.append("%s: no buckets" % hname)
            continue
        les = [le for le, _ in b]
        counts = [c for _, c in b]
        if les != sorted(les) or len(set(les)) != len(les):
            probs.append("%s: le not strictly increasing %r" % (hname, les))
        if not math.isinf(les[-1]):
            probs.append("%s: last bucket is not +Inf" % hname)
        if any(counts[i] > counts[i + 1] for i in range(len(counts) - 1)):
            probs.append("%s: cumulative counts decrease %r" % (hname,
                                                                 counts))
        cnt = m.get(hname + "_count", **labels)
        if counts[-1] != cnt:
            probs.append("%s: +Inf bucket %r != _count %r" % (
                hname, counts[-1], cnt))
        s = m.get(hname + "_sum", **labels)
        if not m.has(hname + "_sum", **labels) or s < 0 or \
                (cnt == 0 and s != 0):
            probs.append("%s: _sum %r with _count %r" % (hname, s, cnt))
    t.check(not probs, "%s: histograms consistent (buckets increasing, "
            "+Inf == _count, _sum sane)" % desc, "\n".join(probs))


def check_labels_bounded(t, m, desc, forbidden):
    bad = []
    for name, labels in m.order:
        for k, v in labels.items():
            if k not in ALLOWED_LABELS:
                bad.append("%s: label %s" % (name, k))
            elif k == "code" and not re.fullmatch(r"[1-5][0-9][0-9]|error",
                                                  v):
                bad.append("%s: code=%r" % (name, v))
            elif k == "result" and v not in ("hit", "miss", "coalesced",
                                             "ok", "failed", "purged",
                                             "absent", "invalid"):
                bad.append("%s: result=%r" % (name, v))
            elif k == "caller" and v not in KNOWN_CALLERS:
                bad.append("%s: caller=%r" % (name, v))
            elif k == "class" and v not in CLASSES:
                bad.append("%s: class=%r" % (name, v))
    t.check(not bad, "%s: label names and values come from fixed sets"
            % desc, "\n".join(bad[:10]))
    low = m.text.lower()
    found = [f for f in forbidden if f and f.lower() in low]
    t.check(not found, "%s: no business id, URI, request id or key in "
            "/metrics" % desc, "found: %r" % found)


class Run:
    """A scenario's gateway over the reset sandbox, its Scraper, and the
    strings its /metrics must never show."""

    def __init__(self, h, overrides=None):
        self.t = h.t
        self.sb = h.sandbox()
        self.gw = H.Gateway(h, self.sb, overrides=overrides)
        self.s = Scraper(h.t, self.gw)
        self.forbidden = [H.BIZ, H.BIZ2, "samples/", "/v1/", h.api_key]
        h.t.diag("sandbox on %d, gateway on %d" % (self.sb.port,
                                                    self.gw.port))

    def sample(self, name):
        u = self.sb.sample(name)
        self.forbidden.append(u)
        return u

    def finish(self, desc):
        """Histograms consistent, labels bounded, the log JSON."""
        m = self.s.scrape()
        check_histograms(self.t, m, desc)
        check_labels_bounded(self.t, m, desc, self.forbidden)
        H.check_json_log(self.t, self.gw)


@H.scenario
def first_scrape(h):
    t = h.t
    rc, out, _ = H.run_cmd([h.gateway_bin, "-V"])
    version = out.strip().split()[-1] if rc == 0 and out.strip() else None
    t_start = time.time()
    run = Run(h)
    s = run.s
    m0 = s.scrape()
    check_format(t, m0, s.last, "first scrape")
    t.eq(m0.get("build_info", version=version), 1.0,
         "build_info{version=%r} 1 (as asset-gateway -V)" % version)
    st = m0.get("start_time_seconds")
    t.check(t_start - 2 <= st <= time.time() + 1,
            "start_time_seconds is the process start (unix time)",
            "start_time %r, started near %r" % (st, t_start))
    t.eq(m0.get("inflight_requests"), 0.0, "inflight_requests 0 when idle")
    t.eq(m0.get("redis_up"), 0.0, "redis_up 0 with the memory store")
    time.sleep(1.1)  # a second later: a start time that moved would show
    t.check(m0.get("start_time_seconds") ==
            s.scrape().get("start_time_seconds"),
            "start_time_seconds stable between scrapes", "")
    hd = H.request(run.gw.port, "HEAD", "/metrics")
    t.check(hd.status == 200 and hd.body == b"",
            "HEAD /metrics -> 200 without a body", hd.short())
    run.finish("first scrapes")


@H.scenario
def miss_and_hit(h):
    t = h.t
    run = Run(h)
    s = run.s
    m0 = s.scrape()
    ua = run.sample("metrics-a.png")
    t0 = time.monotonic()
    r = run.gw.create({"uri": ua}, headers={"X-Request-Id": "metrics-rid-a"})
    el = time.monotonic() - t0
    run.forbidden.append("metrics-rid-a")
    t.check(r.status == 200 and r.header("x-cache") == "MISS",
            "miss: create -> 200 MISS", r.short())
    m1 = s.scrape()
    check_moves(t, m0, m1, {
        'requests_total{code=200}': 2,  # the create and scrape m0
        'cache_lookups_total{result=miss}': 1,
        'upstream_requests_total{code=200}': 1,
        'upstream_duration_seconds_count': 1,
        'ratelimit_wait_seconds_count{class=interactive}': 1}, "miss")
    t.eq(m1.get("upstream_calls_total", caller="-", **INTER), 1.0,
         "miss: upstream_calls_total{caller=\"-\",class=\"interactive\"} "
         "is 1 with mode = none")
    ds = m1.get("upstream_duration_seconds_sum") - \
        m0.get("upstream_duration_seconds_sum")
    t.check(0 < ds <= el + 0.01,
            "miss: upstream_duration_seconds_sum grew by the attempt time "
            "(0 < %.6f <= %.3f)" % (ds, el), "")
    t.eq(m1.get("inflight_requests"), 0.0, "miss: inflight back to 0")

    r = run.gw.create({"uri": ua})
    t.check(r.status == 200 and r.header("x-cache") == "HIT",
            "hit: same create -> 200 HIT", r.short())
    m2 = s.scrape()
    check_moves(t, m1, m2, {'requests_total{code=200}': 2,
                            'cache_lookups_total{result=hit}': 1}, "hit")
    t.eq(m2.total("upstream_requests_total"),
         m1.total("upstream_requests_total"),
         "hit: no upstream series moved (sum over every code)")
    run.finish("after a miss and a hit")


@H.scenario
def coalesced(h):
    """N identical calls while the upstream is slow"""
    t = h.t
    run = Run(h)
    s, sb, gw = run.s, run.sb, run.gw
    n = 5
    m2 = s.scrape()
    sb.faults(latency_ms=1500)
    ub = run.sample("metrics-coalesced.png")
    before = s.count
    res = [None]
    th = threading.Thread(target=lambda: res.__setitem__(0, H.concurrent(
        [lambda: gw.create({"uri": ub}) for _ in range(n)], timeout=20)),
        daemon=True)
    th.start()
    mid, ok = s.poll(lambda m: m.get("inflight_requests") >= n, 1.2)
    t.check(ok, "coalesced: inflight_requests reaches %d while the "
            "upstream is slow" % n,
            "inflight %r" % mid.get("inflight_requests"))
    t.eq(mid.get("singleflight_waiters"), float(n - 1),
         "coalesced: singleflight_waiters %d during the flight" % (n - 1))
    t.eq(mid.get("inflight_requests"), float(n),
         "coalesced: inflight_requests exactly %d" % n)
    th.join(20)
    polls = s.count - before
    out = res[0] or []
    t.check(len(out) == n and all(isinstance(x, H.Resp) and x.status == 200
                                  for x in out),
            "coalesced: %d identical creates -> %d x 200" % (n, n),
            "\n".join(x.short() if isinstance(x, H.Resp) else repr(x)
                       for x in out))
    sb.faults(latency_ms=0)
    m3 = s.scrape()
    check_moves(t, m2, m3, {'requests_total{code=200}': n + 1 + polls,
                            'cache_lookups_total{result=coalesced}': n - 1,
                            'cache_lookups_total{result=miss}': 1,
                            'upstream_requests_total{code=200}': 1,
                            'upstream_duration_seconds_count': 1,
                            'ratelimit_wait_seconds_count{class=interactive}': 1},
                "coalesced x%d" % n)
    t.eq((m3.get("singleflight_waiters"), m3.get("inflight_requests")),
         (0.0, 0.0), "coalesced: waiters and inflight back to 0")
    d = m3.get("upstream_duration_seconds_sum") - \
        m2.get("upstream_duration_seconds_sum")
    t.check(1.4 <= d <= 3.0, "coalesced: the slow attempt (1.5 s) is in "
            "upstream_duration_seconds_sum", "grew by %.3f s" % d)
    b3, b2 = dict(m3.buckets("upstream_duration_seconds")), \
        dict(m2.buckets("upstream_duration_seconds"))
    t.check(b3[1.0] - b2[1.0] == 0 and b3[2.5] - b2[2.5] == 1,
            "coalesced: the 1.5 s attempt landed in the (1, 2.5] bucket",
            "le=1 +%r, le=2.5 +%r" % (b3[1.0] - b2[1.0], b3[2.5] - b2[2.5]))
    run.finish("after coalesced calls")


@H.scenario
def validation_errors(h):
    """no lookup, no upstream"""
    t = h.t
    run = Run(h)
    s, gw = run.s, run.gw
    m3 = s.scrape()
    r1 = gw.create({"uri": 5})
    r2 = gw.create({"uri": run.sample("metrics-a.png")},
                   business="not-a-uuid")
    r3 = gw.create("x" * 70000)
    r4 = H.request(gw.port, "POST", "/metrics", body="")
    t.check((r1.status, r2.status, r3.status, r4.status) ==
            (400, 400, 413, 405),
            "validation: uri 5 -> 400, bad business -> 400, 70000-byte "
            "body -> 413, POST /metrics -> 405",
            "%s\n%s\n%s\n%s" % (r1.short(), r2.short(), r3.short(),
                                  r4.short()))
    m4 = s.scrape()
    check_moves(t, m3, m4, {'requests_total{code=200}': 1,
                            'requests_total{code=400}': 2,
                            'requests_total{code=413}': 1,
                            'requests_total{code=405}': 1},
                "400 x2, 413, 405")
    run.finish("after validation errors")


@H.scenario
def upstream_500_not_retried(h):
    """upstream 500 without id: not retried"""
    t = h.t
    run = Run(h)
    s, sb = run.s, run.sb
    m4 = s.scrape()
    sb.faults(status=500, status_count=-1)
    r = run.gw.create({"uri": run.sample("metrics-500.png")})
    H.check_error(t, r, 502, 14, "upstream 500 without id")
    sb.reset()
    m5 = s.scrape()
    check_moves(t, m4, m5, {'requests_total{code=200}': 1,
                            'requests_total{code=502}': 1,
                            'cache_lookups_total{result=miss}': 1,
                            'upstream_requests_total{code=500}': 1,
                            'upstream_duration_seconds_count': 1,
                            'ratelimit_wait_seconds_count{class=interactive}': 1},
                "upstream 500")
    run.finish("after an upstream 500")


@H.scenario
def upstream_dropped(h):
    """dropped connection without id: code "error"."""
    t = h.t
    run = Run(h)
    s, sb = run.s, run.sb
    m5 = s.scrape()
    sb.faults(drop_count=1)
    r = run.gw.create({"uri": run.sample("metrics-drop.png")})
    H.check_error(t, r, 502, 14, "dropped upstream connection without id")
    sb.reset()
    m6 = s.scrape()
    check_moves(t, m5, m6, {'requests_total{code=200}': 1,
                            'requests_total{code=502}': 1,
                            'cache_lookups_total{result=miss}': 1,
                            'upstream_requests_total{code=error}': 1,
                            'upstream_duration_seconds_count': 1,
                            'ratelimit_wait_seconds_count{class=interactive}': 1},
                "dropped upstream connection")
    run.finish("after a dropped upstream connection")


@H.scenario
def one_retry(h):
    """a retry: custom id, 500 once, then 200"""
    t = h.t
    run = Run(h)
    s, sb = run.s, run.sb
    m6 = s.scrape()
    sb.faults(status=500, status_count=1)
    r = run.gw.create({"uri": run.sample("metrics-retry.png"),
                       "id": "metrics-retry-1"})
    t.check(r.status == 200 and r.header("x-cache") == "MISS",
            "retry: 500 once with id -> 200", r.short())
    sb.reset()
    m7 = s.scrape()
    check_moves(t, m6, m7, {'requests_total{code=200}': 2,
                            'cache_lookups_total{result=miss}': 1,
                            'upstream_requests_total{code=500}': 1,
                            'upstream_requests_total{code=200}': 1,
                            'upstream_retries_total': 1,
                            'upstream_duration_seconds_count': 2,
                            'ratelimit_wait_seconds_count{class=interactive}': 2},
                "one retry")
    run.finish("after a retry")


@H.scenario
def upstream_429_once(h):
    """upstream 429 once: counted, paused, retried"""
    t = h.t
    run = Run(h)
    s, sb = run.s, run.sb
    m7 = s.scrape()
    sb.faults(status=429, status_count=1, retry_after=1)
    r = run.gw.create({"uri": run.sample("metrics-429.png")})
    t.check(r.status == 200, "upstream 429 once -> 200 after the pause",
            r.short())
    sb.reset()
    m8 = s.scrape()
    got = deltas(m7, m8, [("upstream_429_total", {}),
                          ("upstream_requests_total", {"code": "429"}),
                          ("upstream_requests_total", {"code": "200"}),
                          ("ratelimit_rejected_total", INTER)])
    t.eq(got, {"upstream_429_total": 1,
               "upstream_requests_total{code=429}": 1,
               "upstream_requests_total{code=200}": 1,
               "ratelimit_rejected_total{class=interactive}": 0},
         "upstream 429: upstream_429_total +1, code 429 +1, then 200 +1")
    run.finish("after an upstream 429")


@H.scenario
def connections_open(h):
    """connections_open follows held connections"""
    t = h.t
    run = Run(h)
    s = run.s
    held = []
    try:
        for _ in range(3):
            c = socket.create_connection(("127.0.0.1", run.gw.port),
                                         timeout=5)
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            c.recv(4096)
            held.append(c)
        mh, ok = s.poll(lambda m: m.get("connections_open") >= 4, 2.0)
        t.check(ok, "connections_open >= 4 with 3 keep-alive connections "
                "held and one scraping", "connections_open %r" %
                mh.get("connections_open"))
    finally:
        for c in held:
            c.close()
    ml, ok = s.poll(lambda m: m.get("connections_open") <= 1, 3.0)
    t.check(ok, "connections_open back to 1 (the scrape) after they close",
            "connections_open %r" % ml.get("connections_open"))
    run.finish("after held connections")


@H.scenario
def limiter_429(h):
    """429 from the gateway's own limiter"""
    t = h.t
    run = Run(h, {"ratelimit": {"rate": 1, "max_wait_ms": 0}})
    s, gw = run.s, run.gw
    m0 = s.scrape()
    r1 = gw.create({"uri": run.sample("metrics-rl-1.png")})
    r2 = gw.create({"uri": run.sample("metrics-rl-2.png")})
    t.eq(r1.status, 200, "rate 1, max_wait_ms 0: first create -> 200")
    H.check_error(t, r2, 429, 8, "rate 1, max_wait_ms 0: second distinct "
                  "create at once")
    t.check(re.fullmatch(r"[1-9][0-9]*", r2.header("retry-after") or ""),
            "limiter 429 carries Retry-After >= 1", r2.short())
    m1 = s.scrape()
    check_moves(t, m0, m1, {'requests_total{code=200}': 2,
                            'requests_total{code=429}': 1,
                            'ratelimit_rejected_total{class=interactive}': 1,
                            'cache_lookups_total{result=miss}': 2,
                            'upstream_requests_total{code=200}': 1,
                            'upstream_duration_seconds_count': 1,
                            'ratelimit_wait_seconds_count{class=interactive}': 1},
                "limiter 429")
    check_histograms(t, m1, "limiter gateway")
    run.finish("after a limiter 429")


@H.scenario
def limiter_queue(h):
    """a queued call: rate 1, the second distinct call waits ~1 s"""
    t = h.t
    run = Run(h, {"ratelimit": {"rate": 1, "max_wait_ms": 3000}})
    s, gw = run.s, run.gw
    m0 = s.scrape()
    u1, u2 = run.sample("metrics-q-1.png"), run.sample("metrics-q-2.png")
    res = [None]
    th = threading.Thread(target=lambda: res.__setitem__(0, H.concurrent(
        [lambda: gw.create({"uri": u1}), lambda: gw.create({"uri": u2})],
        timeout=10)), daemon=True)
    th.start()
    mid, ok = s.poll(lambda m: m.get("ratelimit_queue_depth") >= 1, 0.8)
    t.check(ok and mid.get("ratelimit_queue_depth") == 1,
            "ratelimit_queue_depth 1 while the second call waits",
            "queue depth %r" % mid.get("ratelimit_queue_depth"))
    th.join(10)
    out = res[0] or []
    t.check(len(out) == 2 and all(isinstance(x, H.Resp) and x.status == 200
                                  for x in out),
            "both queued-limiter calls -> 200",
            "\n".join(x.short() if isinstance(x, H.Resp) else repr(x)
                      for x in out))
    m1 = s.scrape()
    t.eq(m1.get("ratelimit_queue_depth"), 0.0,
         "ratelimit_queue_depth back to 0")
    t.eq(m1.get("ratelimit_wait_seconds_count", **INTER) -
         m0.get("ratelimit_wait_seconds_count", **INTER), 2.0,
         "ratelimit_wait_seconds_count +2")
    w = m1.get("ratelimit_wait_seconds_sum", **INTER) - \
        m0.get("ratelimit_wait_seconds_sum", **INTER)
    t.check(0.5 <= w <= 1.2, "ratelimit_wait_seconds_sum grew by the "
            "queued call's wait (~1 s)", "grew by %.3f s" % w)
    t.diag("queued call's recorded wait: %.4f s" % w)
    b1, b0 = dict(m1.buckets("ratelimit_wait_seconds", **INTER)), \
        dict(m0.buckets("ratelimit_wait_seconds", **INTER))
    t.check(b1[0.001] - b0[0.001] == 1 and b1[0.5] - b0[0.5] == 1
            and b1[2.0] - b0[2.0] == 2,
            "wait buckets: one call at 0, one in (0.5, 2]",
            "le=0.001 +%r le=0.5 +%r le=2 +%r" % (
                b1[0.001] - b0[0.001], b1[0.5] - b0[0.5],
                b1[2.0] - b0[2.0]))
    check_histograms(t, m1, "queued-limiter gateway")
    run.finish("after a queued call")


if __name__ == "__main__":
    H.run()
