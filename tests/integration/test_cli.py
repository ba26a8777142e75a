"""The command line and life cycle (SPEC section 6): -V, -h, -t with good
and bad files (errors name file, line and key), the API key from a file
or the environment, --sample-config, /healthz and /readyz, signals. Each
scenario starts what it needs itself (-k NAME runs one alone)."""

import json
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def conf_text(h, overrides=None, key_path=None, extra_lines=None):
    cfg = H.base_config(h, H.free_port(), "http://127.0.0.1:9",
                        key_path or h.key_file())
    H.merge_config(cfg, overrides)
    text = H.render_config(cfg)
    if extra_lines:
        text += "\n".join(extra_lines) + "\n"
    return text


def line_of(text, needle):
    for i, ln in enumerate(text.splitlines(), 1):
        if ln.strip().startswith(needle):
            return i
    raise AssertionError("%r not in config" % needle)


def check_bad(h, name, text, key, line_needle=None, what=None):
    t = h.t
    path = h.write(name + ".conf", text)
    rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c", path])
    msg = out + err
    probs = []
    if rc != 1:
        probs.append("exit %r" % rc)
    if path not in msg and os.path.basename(path) not in msg:
        probs.append("file not named")
    if line_needle is not None:
        line = line_of(text, line_needle)
        if not re.search(r"(:|line )%d\b" % line, msg):
            probs.append("line %d not named" % line)
    if key.lower() not in msg.lower():
        probs.append("%r not named" % key)
    t.check(not probs, "-t with %s -> exit 1 naming file%s%s" % (
        what or name, ", line" if line_needle else "",
        (" and " + key) if key else ""),
        "; ".join(probs) + "\noutput: " + msg[-800:])


def busy_port(h):
    """A listening socket on a free port and a config that listens there:
    (socket, port, config path)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    busy = holder.getsockname()[1]
    busy_conf = h.write(h.name("busy-") + ".conf", conf_text(h, {
        "server": {"listen": "127.0.0.1:%d" % busy}}))
    return holder, busy, busy_conf


@H.scenario
def version_and_usage(h):
    """-V, -h"""
    t, gwb = h.t, h.gateway_bin
    rc, out, err = H.run_cmd([gwb, "-V"])
    t.check(rc == 0 and re.search(r"\d+\.\d+", out + err),
            "-V prints a version and exits 0", "rc %r: %r" % (rc, out + err))
    t.diag("version: %s" % (out + err).strip()[:200])
    rc, out, err = H.run_cmd([gwb, "-h"])
    t.check(rc == 0 and "-c" in out + err, "-h prints usage and exits 0",
            "rc %r: %r" % (rc, (out + err)[:500]))
    rc, out, err = H.run_cmd([gwb, "--no-such-option"])
    t.check(rc not in (0, None), "unknown option -> non-zero exit",
            "rc %r" % rc)
    rc, out, err = H.run_cmd([h.sandbox_bin, "-h"])
    t.check(rc == 0 and "--listen" in out + err,
            "connectly-sandbox -h lists its options and exits 0",
            "rc %r: %r" % (rc, (out + err)[:500]))


@H.scenario
def config_test(h):
    """-t with good and bad files"""
    t, gwb = h.t, h.gateway_bin
    good = h.write("good.conf", conf_text(h))
    rc, out, err = H.run_cmd([gwb, "-t", "-c", good])
    t.check(rc == 0, "-t -c good.conf -> exit 0", "rc %r: %s" % (rc,
                                                                 out + err))
    holder, busy, busy_conf = busy_port(h)
    rc, out, err = H.run_cmd([gwb, "-t", "-c", busy_conf])
    t.eq(rc, 0, "-t does not bind the listen port")
    holder.close()

    text = conf_text(h, extra_lines=["[server]", "bogus_key = 1"])
    check_bad(h, "unknown-key", text, "bogus_key", "bogus_key",
              "an unknown key")
    text = conf_text(h, extra_lines=["[nosuchsection]", "x = 1"])
    check_bad(h, "unknown-section", text, "nosuchsection", None,
              "an unknown section")
    for sec, key, val in (("ratelimit", "rate", "abc"),
                          ("ratelimit", "rate", "-1"),
                          ("ratelimit", "burst", "lots"),
                          ("server", "max_body_bytes", "-5"),
                          ("server", "listen", "not-an-address"),
                          ("upstream", "max_retries", "2x"),
                          ("upstream", "base_url", "ftp://127.0.0.1/"),
                          ("store", "backend", "mongodb"),
                          ("log", "level", "loud"),
                          ("log", "format", "xml"),
                          ("auth", "mode", "sometimes"),
                          ("security", "allow_private_sources", "maybe")):
        text = conf_text(h, {sec: {key: val}})
        check_bad(h, "bad-%s-%s" % (key, re.sub(r"\W", "", val)), text, key,
                  "%s = %s" % (key, val), "[%s] %s = %s" % (sec, key, val))
    missing_key = h.path("no-such-dir/api-key")
    text = conf_text(h, {"upstream": {"api_key_file": missing_key}})
    check_bad(h, "unreadable-keyfile", text, "api_key_file",
              "api_key_file", "an unreadable api_key_file")
    empty_key = h.write("empty-key", "")
    text = conf_text(h, {"upstream": {"api_key_file": empty_key}})
    check_bad(h, "empty-keyfile", text, "api_key_file", "api_key_file",
              "an empty api_key_file")
    text = conf_text(h, extra_lines=["this line has no equals sign"])
    check_bad(h, "syntax", text, "", "this line has no", "a syntax error")
    text = conf_text(h, {"auth": {"mode": None}})
    path = h.write("no-auth-mode.conf", text)
    rc, out, err = H.run_cmd([gwb, "-t", "-c", path])
    t.check(rc == 1 and re.search(r"auth|mode", out + err),
            "-t without an explicit [auth] mode -> exit 1 (token mode is "
            "not available yet)", "rc %r: %s" % (rc, out + err))
    rc, out, err = H.run_cmd([gwb, "-t", "-c", h.path("nonexistent.conf")])
    t.check(rc not in (0, None) and "nonexistent.conf" in out + err,
            "-t with a missing file -> non-zero naming it",
            "rc %r: %s" % (rc, out + err))


@H.scenario
def api_key(h):
    """the API key: none, or from the environment"""
    t, gwb = h.t, h.gateway_bin
    nokey = h.write("nokey.conf", conf_text(h, {"upstream": {
        "api_key_file": None}}))
    p = H.Proc(h, "gw-nokey", [gwb, "-c", nokey])
    rc = p.wait(5)
    msg = p.stdout_text() + p.stderr_text()
    t.check(rc not in (0, None) and "key" in msg.lower(),
            "start without api_key_file and ASSET_GATEWAY_API_KEY -> "
            "non-zero exit with a message about the key",
            "rc %r: %s" % (rc, msg[-600:]))
    p.stop()

    sb = h.sandbox()
    gw_env = H.Gateway(h, sb, key_file=False,
                       env={"ASSET_GATEWAY_API_KEY": h.api_key})
    r = gw_env.create({"uri": sb.sample("cli-env.png")})
    t.eq(r.status, 200, "ASSET_GATEWAY_API_KEY from the environment works "
         "(the sandbox accepted it)")


@H.scenario
def sample_config(h):
    t, gwb = h.t, h.gateway_bin
    rc, out, err = H.run_cmd([gwb, "--sample-config"])
    t.check(rc == 0 and "[auth]" in out
            and re.search(r"(?m)^\s*mode\s*=\s*none\s*$", out),
            "--sample-config prints a config with [auth] mode = none",
            "rc %r: %s" % (rc, (out + err)[:600]))
    sample = h.write("sample.conf", out)
    rc2, out2, err2 = H.run_cmd([gwb, "-t", "-c", sample],
                                env={"ASSET_GATEWAY_API_KEY": h.api_key})
    t.check(rc2 == 0, "the sample config passes -t (key from env)",
            "rc %r: %s" % (rc2, out2 + err2))
    for sec in ("server", "upstream", "store", "ratelimit", "auth",
                "security", "log"):
        t.check("[%s]" % sec in out, "sample documents [%s]" % sec, "")
    shipped = os.path.join(h.srcdir, "conf", "asset-gateway.conf")
    if os.path.exists(shipped):
        rc3, out3, err3 = H.run_cmd([gwb, "-t", "-c", shipped],
                                    env={"ASSET_GATEWAY_API_KEY":
                                         h.api_key})
        t.check(rc3 == 0, "conf/asset-gateway.conf passes -t",
                "rc %r: %s" % (rc3, out3 + err3))
        with open(shipped) as f:
            t.check(f.read() == out, "conf/asset-gateway.conf is the "
                    "--sample-config output", "they differ")
    else:
        t.check(False, "conf/asset-gateway.conf exists", shipped)


@H.scenario
def health_reload_and_drain(h):
    """/healthz, /readyz; SIGHUP keeps it serving; SIGTERM with a call in
    flight"""
    t, sb = h.t, h.sandbox()
    gw = H.Gateway(h, sb, overrides={"server": {"drain_timeout_ms": 5000}})
    r = gw.get("/healthz")
    t.eq(r.status, 200, "/healthz -> 200")
    r = gw.get("/readyz")
    t.check(r.status == 200 and isinstance(r.json, dict),
            "/readyz -> 200 with a JSON object", r.short())
    t.diag("/readyz: %s" % r.body[:300])
    gw.proc.signal(signal.SIGHUP)
    time.sleep(0.5)
    r = gw.get("/healthz")
    t.check(gw.proc.alive() and r.status == 200,
            "SIGHUP (reload) keeps the gateway serving", gw.proc.tail())

    # --- SIGTERM with a call in flight ---------------------------------------
    sb.faults(latency_ms=1500)
    holder_res = {}
    th = threading.Thread(target=lambda: holder_res.setdefault(
        "r", gw.create({"uri": sb.sample("cli-drain.png")}, timeout=15)))
    th.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    gw.proc.signal(signal.SIGTERM)
    time.sleep(0.2)
    late = gw.create({"uri": sb.sample("cli-late.png")}, timeout=5)
    t.check(late.status is None or (late.status == 503 and (
        late.json or {}).get("code") == 14),
        "a new create while draining -> refused or 503 code 14",
        late.short())
    rc = gw.proc.wait(8)
    el = time.monotonic() - t0
    th.join(10)
    r = holder_res.get("r")
    t.check(r is not None and r.status == 200,
            "the in-flight create finished during the drain -> 200",
            r.short() if r else "no answer")
    t.check(rc == 0, "SIGTERM -> exit 0", "rc %r after %.2f s\n%s" % (
        rc, el, gw.proc.tail()))
    t.check(el < 5.0 + 1.0, "exit within drain_timeout_ms",
            "took %.2f s" % el)
    t.diag("SIGTERM with a 1.5 s call in flight: exit after %.2f s" % el)
    H.check_json_log(t, gw)


@H.scenario
def listen_port_taken(h):
    t, gwb = h.t, h.gateway_bin
    holder, busy, busy_conf = busy_port(h)
    p = H.Proc(h, "gw-busy", [gwb, "-c", busy_conf])
    rc = p.wait(5)
    msg = p.stdout_text() + p.stderr_text()
    t.check(rc not in (0, None) and str(busy) in msg,
            "listen address in use -> non-zero exit naming it",
            "rc %r: %s" % (rc, msg[-600:]))
    p.stop()
    holder.close()


@H.scenario
def drain_timeout_shorter_than_call(h):
    t, sb = h.t, h.sandbox()
    gw2 = H.Gateway(h, sb, overrides={
        "server": {"drain_timeout_ms": 700},
        "upstream": {"request_timeout_ms": 8000}})
    sb.faults(latency_ms=4000)
    res = {}
    th = threading.Thread(target=lambda: res.setdefault(
        "r", gw2.create({"uri": sb.sample("cli-drain2.png")}, timeout=15)))
    th.start()
    time.sleep(0.4)
    t0 = time.monotonic()
    gw2.proc.signal(signal.SIGTERM)
    rc = gw2.proc.wait(6)
    el = time.monotonic() - t0
    th.join(10)
    r = res.get("r")
    t.check(r is not None and r.status == 503
            and (r.json or {}).get("code") == 14,
            "a call still running at the drain deadline gets 503 code 14",
            r.short() if r else "no answer")
    t.check(rc == 0 and el < 0.7 + 1.5,
            "exit 0 soon after drain_timeout_ms", "rc %r after %.2f s"
            % (rc, el))


@H.scenario
def sigint(h):
    t, sb = h.t, h.sandbox()
    gw3 = H.Gateway(h, sb)
    gw3.proc.signal(signal.SIGINT)
    rc = gw3.proc.wait(5)
    t.eq(rc, 0, "SIGINT with nothing in flight -> exit 0")


@H.scenario
def text_log_format(h):
    t, sb = h.t, h.sandbox()
    gw4 = H.Gateway(h, sb, overrides={"log": {"format": "text"}})
    gw4.create({"uri": sb.sample("cli-text.png")})
    gw4.stop()
    lines = [ln for ln in gw4.log_text().splitlines() if ln.strip()]

    def is_json(ln):
        try:
            json.loads(ln)
            return True
        except ValueError:
            return False
    t.check(lines and not any(is_json(ln) for ln in lines),
            "format = text writes text lines", "\n".join(lines[:5]))


if __name__ == "__main__":
    H.run()
