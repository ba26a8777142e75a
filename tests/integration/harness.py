"""Shared harness for the integration tests: TAP output, loopback ports,
a temp dir per test file, process management for the real binaries
(asset-gateway, connectly-sandbox) and for redis-server, and small HTTP
helpers.

Python 3.11 standard library only. Every wait is bounded; every process
started is stopped (by PID) at the end, also on exceptions.
"""

import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIZ = "550e8400-e29b-41d4-a716-446655440000"
BIZ2 = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
PUBLIC = "ASSET_ACCESS_CONTROL_TYPE_PUBLIC"
PRIVATE = "ASSET_ACCESS_CONTROL_TYPE_PRIVATE"
CDN_PRIVATE = "ASSET_ACCESS_CONTROL_TYPE_CDN_PRIVATE"

START_TIMEOUT_S = 10.0
STOP_GRACE_S = 5.0


def create_path(business=BIZ):
    return "/v1/businesses/%s/assets" % business


# ------------------------------------------------------------------ TAP

class Tap:
    """TAP producer. The plan is printed at the end. Failed checks never
    change the exit status; only an unexpected exception does (Bail out)."""

    def __init__(self):
        self.n = 0
        self.failed = 0
        self.redact = []  # secrets never to print, even in diagnostics

    def _clean(self, text):
        text = str(text)
        for secret in self.redact:
            if secret:
                text = text.replace(secret, "<REDACTED>")
        return text

    def diag(self, text):
        for line in self._clean(text).splitlines() or [""]:
            print("# " + line, flush=True)

    def check(self, cond, desc, diag=None):
        self.n += 1
        desc = self._clean(desc).replace("\n", " ").replace("#", "\\#")
        if cond:
            print("ok %d - %s" % (self.n, desc), flush=True)
        else:
            self.failed += 1
            print("not ok %d - %s" % (self.n, desc), flush=True)
            if diag is not None:
                self.diag(diag)
        return bool(cond)

    def eq(self, got, want, desc):
        return self.check(got == want, desc,
                          "expected %r, got %r" % (want, got))

    def bail(self, desc, diag=None):
        self.n += 1
        self.failed += 1  # so the summary line counts it
        print("not ok %d - %s" % (self.n, self._clean(desc)), flush=True)
        if diag:
            self.diag(diag)
        print("Bail out! %s" % self._clean(desc), flush=True)

    def plan(self):
        print("1..%d" % self.n, flush=True)


# ------------------------------------------------------------- processes

_procs = []
_all_procs = []  # every process started, for the final sanitizer scan
_procs_lock = threading.Lock()


def free_port():
    """A port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process with stdout/stderr in files under the temp dir."""

    def __init__(self, h, name, args, env=None):
        self.h = h
        self.name = name
        self.args = [str(a) for a in args]
        self.out_path = os.path.join(h.tmp, "%s.stdout" % name)
        self.err_path = os.path.join(h.tmp, "%s.stderr" % name)
        full_env = os.environ.copy()
        full_env.pop("ASSET_GATEWAY_API_KEY", None)
        if env:
            for k, v in env.items():
                if v is None:
                    full_env.pop(k, None)
                else:
                    full_env[k] = v
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.popen = subprocess.Popen(self.args, stdout=self._out,
                                      stderr=self._err,
                                      stdin=subprocess.DEVNULL,
                                      env=full_env, close_fds=True)
        self.pid = self.popen.pid
        self.returncode = None
        with _procs_lock:
            _procs.append(self)
            _all_procs.append(self)

    def alive(self):
        return self.popen.poll() is None

    def wait(self, timeout):
        """Exit status, or None when still running after TIMEOUT s."""
        try:
            self.returncode = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._close_files()
        return self.returncode

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, grace=STOP_GRACE_S):
        """SIGTERM, wait GRACE s, then SIGKILL. Returns (exit status,
        whether SIGKILL was needed)."""
        killed = False
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait(grace) is None:
                killed = True
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait(5)
        else:
            self.wait(0)
        with _procs_lock:
            if self in _procs:
                _procs.remove(self)
        return self.returncode, killed

    def _close_files(self):
        for f in (self._out, self._err):
            try:
                f.close()
            except OSError:
                pass

    def stdout_text(self):
        return _read_text(self.out_path)

    def stderr_text(self):
        return _read_text(self.err_path)

    def tail(self, nbytes=2000):
        return "stdout: %s\nstderr: %s" % (self.stdout_text()[-nbytes:],
                                           self.stderr_text()[-nbytes:])


def _read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def stop_all():
    with _procs_lock:
        procs = list(_procs)
    for p in procs:
        try:
            p.stop()
        except Exception:  # cleanup must go on
            pass


atexit.register(stop_all)


def run_cmd(args, env=None, timeout=10, input_bytes=None):
    """Runs a short command; returns (rc, stdout text, stderr text).
    rc is None when it had to be killed after TIMEOUT s."""
    full_env = os.environ.copy()
    full_env.pop("ASSET_GATEWAY_API_KEY", None)
    if env:
        for k, v in env.items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
    try:
        cp = subprocess.run([str(a) for a in args], env=full_env,
                            input=input_bytes, capture_output=True,
                            timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return (None, (e.stdout or b"").decode("utf-8", "replace"),
                (e.stderr or b"").decode("utf-8", "replace"))
    return (cp.returncode, cp.stdout.decode("utf-8", "replace"),
            cp.stderr.decode("utf-8", "replace"))


# ------------------------------------------------------------------ HTTP

class Resp:
    """An HTTP answer: status (None when the connection closed without
    one), headers (lower-cased names), body bytes, parsed JSON or None."""

    def __init__(self, status, headers, body, elapsed=0.0, error=None):
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed
        self.error = error
        try:
            self.json = json.loads(body.decode("utf-8")) if body else None
        except (ValueError, UnicodeDecodeError):
            self.json = None

    def __iter__(self):
        return iter((self.status, self.headers, self.body, self.json))

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def raw_text(self):
        """Status, headers and body as one string (for secret scans)."""
        lines = ["%s" % self.status]
        lines += ["%s: %s" % kv for kv in self.headers.items()]
        return "\n".join(lines) + "\n" + self.body.decode("utf-8", "replace")

    def short(self):
        return "status=%r headers=%r body=%r error=%r" % (
            self.status, self.headers, self.body[:600], self.error)


def _headers_dict(pairs):
    out = {}
    for k, v in pairs:
        k = k.lower()
        out[k] = v if k not in out else out[k] + ", " + v
    return out


def insecure_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def request(port, method, path, body=None, headers=None, timeout=15.0,
            tls=False, host="127.0.0.1"):
    """One request on a fresh connection. BODY: dict/list (sent as JSON),
    str or bytes. Network errors come back as Resp(status=None, error=...)."""
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    if body is not None and not any(k.lower() == "content-type"
                                    for k in hdrs):
        hdrs["Content-Type"] = "application/json"
    if tls:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=insecure_ctx())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, _headers_dict(r.getheaders()), data,
                    time.monotonic() - t0)
    except (OSError, http.client.HTTPException) as e:
        return Resp(None, {}, b"", time.monotonic() - t0,
                    error="%s: %s" % (type(e).__name__, e))
    finally:
        conn.close()


def get_url(url, timeout=10.0):
    """GET an absolute http(s) URL (certificates not checked)."""
    u = urllib.parse.urlsplit(url)
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    port = u.port or (443 if u.scheme == "https" else 80)
    return request(port, "GET", path, timeout=timeout,
                   tls=(u.scheme == "https"), host=u.hostname)


def raw_send(port, data, timeout=5.0):
    """Sends raw bytes, reads one answer (or until close/timeout)."""
    t0 = time.monotonic()
    buf = b""
    err = None
    try:
        with socket.create_connection(("127.0.0.1", port),
                                      timeout=timeout) as s:
            s.sendall(data)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                s.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    err = "timeout"
                    break
                if not chunk:
                    break
                buf += chunk
                if _raw_complete(buf):
                    break
    except OSError as e:
        err = "%s: %s" % (type(e).__name__, e)
    return _raw_parse(buf, time.monotonic() - t0, err)


def _raw_complete(buf):
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return m is not None and len(body) >= int(m.group(1))


def _raw_parse(buf, elapsed, err):
    head, sep, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/\d\.\d (\d{3})", lines[0]) if lines else None
    if not m:
        return Resp(None, {}, buf, elapsed, error=err or "no status line")
    pairs = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        pairs.append((k.strip(), v.strip()))
    return Resp(int(m.group(1)), _headers_dict(pairs), body, elapsed, err)


def concurrent(calls, timeout=60.0):
    """Runs every zero-argument callable in CALLS at once, one thread
    each (each opens its own connection), released together by a barrier.
    Returns their results in order; an exception is returned in place."""
    n = len(calls)
    results = [None] * n
    barrier = threading.Barrier(n + 1)

    def worker(i):
        try:
            barrier.wait(timeout=30)
            results[i] = calls[i]()
        except Exception as e:  # reported to the caller in place
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(n)]
    for th in threads:
        th.start()
    try:
        barrier.wait(timeout=30)
    except threading.BrokenBarrierError:
        pass
    deadline = time.monotonic() + timeout
    for th in threads:
        th.join(max(0.0, deadline - time.monotonic()))
    for i, th in enumerate(threads):
        if th.is_alive():
            results[i] = TimeoutError("still running after %.0f s" % timeout)
    return results


def bad_answers(res):
    """Answers that are neither 200 nor 429 code 8 with Retry-After."""
    bad = []
    for r in res:
        if not isinstance(r, Resp):
            bad.append(repr(r))
        elif r.status == 429:
            ra = r.header("retry-after") or ""
            if (r.json or {}).get("code") != 8 or \
                    not re.fullmatch(r"[1-9][0-9]*", ra):
                bad.append(r.short())
        elif r.status != 200:
            bad.append(r.short())
    return bad


class PacedLoad:
    """Creates at RATE per second for SECONDS (open loop: each sent on
    time in a thread of its own, whatever the earlier ones wait for),
    spread over GWS in turn, create I with {"uri": URI(I)}. start(), then
    join() gives [(sent, done, Resp or exception)] in completion order; a
    call still running at join()'s deadline is missing from it."""

    def __init__(self, gws, rate, seconds, uri, timeout=40):
        self.gws, self.rate, self.seconds = gws, rate, seconds
        self.uri, self.timeout = uri, timeout
        self.out = []
        self.lock = threading.Lock()
        self.threads = []
        self.pacer = threading.Thread(target=self._pace, daemon=True)

    def _one(self, i):
        t0 = time.monotonic()
        try:
            r = self.gws[i % len(self.gws)].create({"uri": self.uri(i)},
                                                   timeout=self.timeout)
        except Exception as e:  # in place: a check counts it as bad
            r = e
        with self.lock:
            self.out.append((t0, time.monotonic(), r))

    def _pace(self):
        t0 = time.monotonic()
        for i in range(int(self.rate * self.seconds)):
            delay = t0 + i / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            th = threading.Thread(target=self._one, args=(i,), daemon=True)
            th.start()
            self.threads.append(th)

    def start(self):
        self.pacer.start()
        return self

    def join(self):
        self.pacer.join(self.seconds + 10)
        deadline = time.monotonic() + self.timeout + 10
        for th in list(self.threads):
            th.join(max(0.0, deadline - time.monotonic()))
        with self.lock:
            return list(self.out)


# Calls a window check allows over the rate at the sandbox, for arrival
# jitter: the limiter spaces grants 10 ms per second apart (its margin),
# and one call more covers a departure that much later again. Under the
# sanitizers every process runs 2-3 times slower and, with the suite's
# other tests on the same CPUs, a gateway's departures were seen late by
# up to ~60 ms (42 in a second at rate 40, 2 CI runs in 2): one call more.
# A one-instance check is exact on the plain build (the departure guard
# counts real departures); under the sanitizers the instrumented sandbox
# stamped a burst's first arrival, on a new connection, 18 ms late behind
# a loaded machine (21 in a second at rate 20, once): one call more there.
SANITIZER_SLACK = 1 if os.environ.get("AGW_SANITIZERS") == "yes" else 0
ARRIVAL_SLACK = 1 + SANITIZER_SLACK


def worst_window(times, window=1.0):
    """(count, members): the half-open window [t, t + WINDOW) holding
    the most of TIMES, and the sorted times in it."""
    ts = sorted(times)
    best = (0, 0, -1)
    j = 0
    for i in range(len(ts)):
        while ts[i] - ts[j] >= window:
            j += 1
        if i - j + 1 > best[0]:
            best = (i - j + 1, j, i)
    return best[0], ts[best[1]:best[2] + 1]


def max_in_window(times, window=1.0):
    """Largest number of TIMES in any half-open window [t, t + WINDOW)."""
    return worst_window(times, window)[0]


# ------------------------------------------------------------- the harness

class Harness:
    """One per test file: the TAP emitter, the temp dir, the binaries."""

    def __init__(self):
        self.t = Tap()
        self.builddir = os.environ.get("AGW_BUILDDIR") or os.getcwd()
        self.srcdir = os.environ.get("AGW_SRCDIR") or os.path.abspath(
            os.path.join(os.path.dirname(__file__), "..", ".."))
        self.gateway_bin = os.path.join(self.builddir, "asset-gateway")
        self.sandbox_bin = os.path.join(self.builddir, "connectly-sandbox")
        self.tmp = tempfile.mkdtemp(prefix="agw-it-")
        self.api_key = "agw-test-key-" + os.urandom(12).hex()
        self.t.redact.append(self.api_key)
        self._seq = 0
        self._servers = []
        self._sandbox = None  # the scenarios' shared sandbox, once started
        self._shared = {}  # key -> what shared() made
        self._kept = set()  # processes and servers shared() started

    def name(self, prefix):
        self._seq += 1
        return "%s%d" % (prefix, self._seq)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, text, mode=0o600):
        p = self.path(name)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def key_file(self, key=None, name=None):
        return self.write(name or self.name("api-key-"),
                          (key or self.api_key) + "\n")

    def cleanup(self):
        stop_all()
        for srv in self._servers:
            try:
                srv.shutdown()
                srv.server_close()
            except Exception:
                pass
        if os.environ.get("AGW_KEEP_TMP"):
            self.t.diag("temp dir kept: %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def check_binaries(self):
        for b in (self.gateway_bin, self.sandbox_bin):
            if not os.access(b, os.X_OK):
                raise RuntimeError("binary missing: %s (set AGW_BUILDDIR)" % b)

    def sandbox(self):
        """The sandbox shared by the scenarios of a file (default
        arguments), started on first use; run() resets it (calls,
        counters, faults) before each scenario."""
        if self._sandbox is None or not self._sandbox.proc.alive():
            self._shared.pop("sandbox", None)
            self._sandbox = self.shared("sandbox", Sandbox)
        return self._sandbox

    def shared(self, key, make):
        """MAKE(self), made once per file and kept under KEY: what it
        starts (processes, source servers) outlives the scenario that
        first asked for it and is stopped at the end of the file."""
        if key not in self._shared:
            with _procs_lock:
                before = set(_procs)
            nservers = len(self._servers)
            self._shared[key] = make(self)
            with _procs_lock:
                self._kept.update(p for p in _procs if p not in before)
            self._kept.update(self._servers[nservers:])
        return self._shared[key]

    def source_server(self, files=None, port=0):
        """A small plain-HTTP source server: GET /samples/NAME answers
        200 with FILES[NAME] or generated bytes; /samples/missing-* 404.
        Raises OSError when PORT cannot be bound."""
        srv = _SourceServer(files or {}, port)
        self._servers.append(srv)
        return srv


def wait_http(port, proc, timeout=START_TIMEOUT_S, path="/", tls=False):
    """Until PORT answers any HTTP status; raises when PROC exits first
    or TIMEOUT s pass."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not proc.alive():
            proc.wait(1)
            raise RuntimeError("%s exited with %r before answering\n%s" % (
                proc.name, proc.returncode, proc.tail()))
        r = request(port, "GET", path, timeout=1.0, tls=tls)
        if r.status is not None:
            return r
        last = r.error
        time.sleep(0.05)
    raise RuntimeError("%s did not answer HTTP on port %d within %.0f s "
                       "(%s)\n%s" % (proc.name, port, timeout, last,
                                     proc.tail()))


# -------------------------------------------------------------- sandbox

class Sandbox:
    """connectly-sandbox on a free loopback port, with its control API."""

    def __init__(self, h, api_key=None, rate=None, tls_cert=None,
                 tls_key=None, extra_args=(), port=None):
        self.h = h
        self.port = port or free_port()
        self.tls = tls_cert is not None
        self.key_path = h.key_file(api_key)
        args = [h.sandbox_bin, "--listen", "127.0.0.1:%d" % self.port,
                "--api-key-file", self.key_path]
        if rate is not None:
            args += ["--rate", str(rate)]
        if self.tls:
            args += ["--tls-cert", tls_cert, "--tls-key", tls_key]
        args += list(extra_args)
        self.proc = Proc(h, h.name("sandbox"), args)
        wait_http(self.port, self.proc, path="/_sandbox/stats", tls=self.tls)

    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def base_url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.port)

    def sample(self, name):
        return "%s/samples/%s" % (self.base_url, name)

    def missing(self, name):
        return "%s/samples/missing-%s" % (self.base_url, name)

    def slow(self, ms, name):
        return "%s/samples/slow/%d/%s" % (self.base_url, ms, name)

    def _ctl(self, method, path, body=None):
        r = request(self.port, method, path, body=body, timeout=10,
                    tls=self.tls)
        if r.status != 200 or (method == "GET" and r.json is None):
            raise RuntimeError("sandbox %s %s failed: %s" % (
                method, path, r.short()))
        return r.json

    def stats(self):
        return self._ctl("GET", "/_sandbox/stats")

    def calls(self):
        """Number of arrivals at the create route."""
        return self.stats()["calls"]

    def call_list(self):
        return self._ctl("GET", "/_sandbox/calls")["calls"]

    def arrivals(self):
        """Arrival times (s) of the calls at the create route, sorted."""
        return sorted(c["t"] for c in self.call_list())

    def faults(self, **kw):
        return self._ctl("POST", "/_sandbox/faults", kw)

    def reset(self):
        return self._ctl("POST", "/_sandbox/reset", {})

    def stop(self):
        return self.proc.stop()


# -------------------------------------------------------------- gateway

def base_config(h, listen_port, base_url, key_path):
    """The tests' base config as {section: {key: value}} (ordered)."""
    cfg = {
        "server": {"listen": "127.0.0.1:%d" % listen_port},
        "upstream": {"base_url": base_url, "request_timeout_ms": "3000",
                     "max_retries": "2"},
        "store": {"backend": "memory"},
        "ratelimit": {"rate": "95"},
        "auth": {"mode": "none"},
        "security": {"allow_private_sources": "yes"},
        "log": {"level": "debug", "format": "json"},
    }
    if key_path is not None:
        cfg["upstream"]["api_key_file"] = key_path
    return cfg


def render_config(cfg):
    out = []
    for section, keys in cfg.items():
        out.append("[%s]" % section)
        for k, v in keys.items():
            if v is not None:
                out.append("%s = %s" % (k, v))
        out.append("")
    return "\n".join(out)


def merge_config(cfg, overrides):
    """OVERRIDES {section: {key: value}} onto CFG; value None removes."""
    for section, keys in (overrides or {}).items():
        sec = cfg.setdefault(section, {})
        for k, v in keys.items():
            if v is None:
                sec.pop(k, None)
            else:
                sec[k] = str(v)
    return cfg


class Gateway:
    """asset-gateway started from the base config plus OVERRIDES."""

    def __init__(self, h, sandbox=None, base_url=None, overrides=None,
                 api_key=None, key_file=True, env=None, start=True):
        self.h = h
        self.port = free_port()
        if base_url is None:
            base_url = sandbox.base_url
        key_path = h.key_file(api_key) if key_file else None
        cfg = base_config(h, self.port, base_url, key_path)
        merge_config(cfg, overrides)
        self.cfg = cfg
        self.name = h.name("gateway")
        self.conf_path = h.write(self.name + ".conf", render_config(cfg))
        self.env = env
        self.proc = None
        if start:
            self.start()

    def start(self):
        self.proc = Proc(self.h, self.name,
                         [self.h.gateway_bin, "-c", self.conf_path],
                         env=self.env)
        wait_http(self.port, self.proc, path="/healthz")

    def log_text(self):
        return self.proc.stderr_text() if self.proc else ""

    def output_text(self):
        if self.proc is None:
            return ""
        return self.proc.stdout_text() + self.proc.stderr_text()

    def stop(self):
        return self.proc.stop()

    def create(self, body, business=BIZ, headers=None, timeout=30.0):
        return request(self.port, "POST", create_path(business), body=body,
                       headers=headers, timeout=timeout)

    def wait_shared(self, timeout=8.0):
        """Waits until /readyz says ready on Redis; whether it did."""
        return wait_until(
            lambda: self.get("/readyz").json == {"status": "ready",
                                                 "store": "redis"},
            timeout, step=0.05)

    def get(self, path, headers=None, timeout=10.0):
        return request(self.port, "GET", path, headers=headers,
                       timeout=timeout)


# ---------------------------------------------------------------- redis

def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise OSError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise OSError("bad reply %r" % line)


class Redis:
    """redis-server on a free loopback port (or PORT), in a directory of
    its own under the temp dir, without persistence; with PASSWORD it
    requires AUTH. start() again after stop() is a restarted Redis on the
    same port, as the gateway sees one after an outage."""

    def __init__(self, h, password=None, port=None):
        self.h = h
        self.port = port or free_port()
        self.password = password
        self.dir = h.path(h.name("redis-dir-"))
        os.makedirs(self.dir)
        self.proc = None
        self.start()

    def start(self):
        args = ["redis-server", "--port", self.port, "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = Proc(self.h, self.h.name("redis"), args)
        deadline = time.monotonic() + START_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RuntimeError("redis-server exited\n" + self.proc.tail())
            try:
                if self.cmd("PING") == "PONG":
                    return
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError("redis-server not answering: %s" % last)

    def stop(self):
        """As Proc.stop(): (exit status, whether SIGKILL was needed)."""
        return self.proc.stop()

    def cmd(self, *args):
        """One command on a new connection. The reply: str (status), int,
        bytes or None (bulk), list (array), or a RuntimeError instance
        (error reply; returned, not raised)."""
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=5) as s:
            f = s.makefile("rb")
            if self.password:
                s.sendall(_resp_encode(["AUTH", self.password]))
                _resp_read(f)
            s.sendall(_resp_encode(args))
            return _resp_read(f)

    def keys(self, pattern):
        """The keys matching PATTERN, as sorted str."""
        got = self.cmd("KEYS", pattern)
        return sorted(k.decode() for k in got) if isinstance(got, list) \
            else []

    def url(self, db=0, password=None):
        auth = ":%s@" % password if password else ""
        return "redis://%s127.0.0.1:%d/%d" % (auth, self.port, db)


# ------------------------------------------------------- source server

class _SourceHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.hits[self.path] = srv.hits.get(self.path, 0) + 1
        name = self.path.split("?", 1)[0]
        if not name.startswith("/samples/") or "/missing-" in name:
            body = b"not found\n"
            self.send_response(404)
        else:
            key = name[len("/samples/"):]
            body = srv.files.get(key) or (b"sample bytes for " +
                                          key.encode() + b"\n")
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class _SourceServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files, port=0):
        super().__init__(("127.0.0.1", port), _SourceHandler)
        self.files = files
        self.hits = {}
        self.lock = threading.Lock()
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever,
                                       kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    def sample(self, name):
        return "http://127.0.0.1:%d/samples/%s" % (self.port, name)

    def hit_count(self):
        with self.lock:
            return sum(self.hits.values())

    def missing(self, name):
        return "http://127.0.0.1:%d/samples/missing-%s" % (self.port, name)


# ------------------------------------------------------------- checks


# ------------------------------------------------------- shared checks

def metric(gw, name, **labels):
    """Value of asset_gateway_NAME{LABELS} on GW now (0 when absent)."""
    r = gw.get("/metrics")
    if r.status != 200:
        raise RuntimeError("GET /metrics failed: %s" % r.short())
    lab = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    want = "asset_gateway_%s%s " % (name, "{%s}" % lab if lab else "")
    for ln in r.body.decode("utf-8", "replace").splitlines():
        if ln.startswith(want):
            return float(ln[len(want):])
    return 0.0


def log_records(gw):
    """GW's JSON log lines as dicts, in order (other lines skipped)."""
    out = []
    for ln in gw.log_text().splitlines():
        try:
            j = json.loads(ln)
        except ValueError:
            continue
        if isinstance(j, dict):
            out.append(j)
    return out


def wait_until(pred, timeout, step=0.02):
    """Polls PRED until it is true or TIMEOUT seconds pass; its last
    value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


def check_error(t, r, status, code, desc, field=None):
    """R is STATUS with {"code": CODE, "message": "XASSET.<NAME>: ..."}
    (naming FIELD, or one of a tuple of FIELDs, when given)."""
    j = r.json if isinstance(r.json, dict) else {}
    msg = j.get("message", "")
    ok = (r.status == status and j.get("code") == code
          and isinstance(msg, str) and re.match(r"XASSET\.[A-Z_]+: .+", msg)
          is not None)
    fields = (field,) if isinstance(field, str) else (field or ())
    if ok and fields:
        ok = any(f.lower() in msg.lower() for f in fields)
    return t.check(ok, "%s -> %d code %d%s" % (
        desc, status, code, (" naming %s" % " or ".join(fields))
        if fields else ""), r.short())


def create_headers_ok(r, sent_request_id=None):
    """Problems with the headers every create answer carries, or ''."""
    probs = []
    rid = r.header("x-request-id")
    if sent_request_id is not None:
        if rid != sent_request_id:
            probs.append("X-Request-Id %r != sent %r" % (rid,
                                                         sent_request_id))
    elif not rid:
        probs.append("no X-Request-Id")
    for name in ("ratelimit-limit", "ratelimit-remaining",
                 "ratelimit-reset"):
        v = r.header(name)
        if v is None or not re.fullmatch(r"\d+", v.strip()):
            probs.append("%s=%r not an integer" % (name, v))
    return "; ".join(probs)


def check_create_headers(t, r, desc, sent_request_id=None):
    probs = create_headers_ok(r, sent_request_id)
    return t.check(probs == "", "%s: X-Request-Id and RateLimit-* headers"
                   % desc, probs + "\n" + r.short())


def check_json_log(t, gw, desc=None):
    """Every stderr line of GW is a JSON object; no sanitizer report."""
    text = gw.log_text()
    bad = []
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        try:
            if not isinstance(json.loads(ln), dict):
                bad.append(ln)
        except ValueError:
            bad.append(ln)
    t.check(lines and not bad, desc or "%s: every one of %d stderr lines "
            "is a JSON object" % (gw.name, len(lines)),
            "non-JSON lines:\n" + "\n".join(bad[:10]))
    sani = [ln for ln in lines if "Sanitizer" in ln or "runtime error:" in ln]
    t.check(not sani, "%s: no sanitizer report in its log" % gw.name,
            "\n".join(sani[:10]))


def check_sanitizers(t):
    """After every process stopped: no ASan/UBSan/LSan report anywhere
    (a sanitizer build writes them to stderr, leaks only at exit)."""
    with _procs_lock:
        procs = list(_all_procs)
    bad = []
    for p in procs:
        for ln in p.stderr_text().splitlines():
            if "Sanitizer" in ln or "runtime error:" in ln:
                bad.append("%s: %s" % (p.name, ln))
    t.check(not bad, "no sanitizer report from any of the %d processes "
            "started" % len(procs), "\n".join(bad[:20]))


# ------------------------------------------------------------ scenarios

_scenarios = []


def scenario(fn):
    """Decorator: FN(h) is a named scenario of this file, run by run() in
    definition order. It starts from a reset sandbox (h.sandbox()); what
    it starts itself (gateways, Redis, source servers; not what
    h.shared() makes) is stopped when it ends, so no scenario sees
    another's processes or counters."""
    _scenarios.append(fn)
    return fn


def _selection(argv):
    """The -k patterns from ARGV ("-k NAME", "-kNAME", "-k=NAME"; several
    allowed) plus those in $AGW_K (comma or space separated, for make
    check); whether --list was given. Other arguments are an error."""
    pats = (os.environ.get("AGW_K") or "").replace(",", " ").split()
    listing = False
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--list":
            listing = True
            continue
        pat = None
        if a == "-k" and args:
            pat = args.pop(0)
        elif a.startswith("-k"):
            pat = a[2:].lstrip("=")
        if not pat:  # an empty pattern would select everything
            raise SystemExit("usage: %s [-k NAME]... [--list]\n"
                             "  -k NAME  run only the scenarios whose name "
                             "contains NAME" % sys.argv[0])
        pats.append(pat)
    return pats, listing


def _run_scenario(h, fn):
    """Runs FN(h) from a reset sandbox; an exception is a failed check
    with the traceback as diagnostics. Stops what FN started."""
    with _procs_lock:
        before = set(_procs)
    nservers = len(h._servers)
    h.t.diag("scenario %s" % fn.__name__)
    t0 = time.monotonic()
    try:
        if h._sandbox is not None and h._sandbox.proc.alive():
            h._sandbox.reset()
        fn(h)
    except Exception:
        h.t.check(False, "scenario %s: ran to its end" % fn.__name__,
                  traceback.format_exc())
    h.t.diag("scenario %s took %.1f s" % (fn.__name__,
                                          time.monotonic() - t0))
    with _procs_lock:
        started = [p for p in _procs if p not in before
                   and p not in h._kept]
    for p in started:
        try:
            p.stop()
        except Exception:  # cleanup must go on
            pass
    for srv in [x for x in h._servers[nservers:] if x not in h._kept]:
        srv.shutdown()
        srv.server_close()
        h._servers.remove(srv)


def _run_scenarios(h, pats):
    chosen = [fn for fn in _scenarios
              if not pats or any(p in fn.__name__ for p in pats)]
    if not chosen:
        h.t.check(False, "-k %s matches a scenario" % " -k ".join(pats),
                  "scenarios: " + " ".join(fn.__name__ for fn in _scenarios))
    for fn in chosen:
        _run_scenario(h, fn)


def run(main=None, summary=False):
    """Runs MAIN(h), or without MAIN the @scenario functions (those whose
    name contains one of the -k NAME arguments, or all), with TAP framing
    and cleanup. Exit status is 0 unless an unexpected exception bailed
    out. SUMMARY: end with the plain line "N passed, N failed" (for runs
    outside automake's TAP driver)."""
    pats, listing = _selection(sys.argv[1:] if main is None else [])
    if listing:
        print("\n".join(fn.__name__ for fn in _scenarios))
        sys.exit(0)
    h = Harness()
    status = 0
    try:
        h.check_binaries()
        if main is None:
            _run_scenarios(h, pats)
        else:
            main(h)
        stop_all()
        check_sanitizers(h.t)
    except Exception:
        h.t.bail("unexpected exception", traceback.format_exc())
        status = 1
    finally:
        try:
            h.cleanup()
        finally:
            h.t.plan()
            if h.t.failed:
                h.t.diag("%d of %d checks failed" % (h.t.failed, h.t.n))
            if summary:
                print("%d passed, %d failed" % (h.t.n - h.t.failed,
                                                h.t.failed), flush=True)
    sys.exit(status)
