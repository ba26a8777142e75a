"""The trust boundary of the config (issue #11 items 1, 5, 10; SPEC §6,
§8): a reload from [auth] mode = token to none keeps token
authentication enforced until a restart; -t, start-up and SIGHUP give one
verdict, naming FILE:LINE and the key, on base_url, ca_file, listen and
redis_url; a config, key or clients file that group or others may write
is refused at start and on reload, naming it, while 0600 and 0640 are
accepted."""

import hashlib
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

metric = H.metric

RELOAD_WAIT_S = 5.0
START_TIMEOUT_S = 10



def reloads(gw):
    return (metric(gw, "config_reloads_total", result="ok"),
            metric(gw, "config_reloads_total", result="failed"))


def sighup(gw):
    """Sends SIGHUP; returns 'ok' or 'failed' by which of
    config_reloads_total grew, or raises after RELOAD_WAIT_S."""
    before = reloads(gw)
    gw.proc.signal(signal.SIGHUP)
    deadline = time.monotonic() + RELOAD_WAIT_S
    while time.monotonic() < deadline:
        now = reloads(gw)
        if now != before:
            return "ok" if now[0] > before[0] else "failed"
        time.sleep(0.03)
    raise RuntimeError("no reload counted within %.0f s\n%s"
                       % (RELOAD_WAIT_S, gw.proc.tail()))


def sha(tok):
    return hashlib.sha256(tok.encode()).hexdigest()


def new_token(h, name):
    tok = "agw-tok-%s-%s" % (name, os.urandom(16).hex())
    h.t.redact.append(tok)
    return tok


def clients_file(h, tok, mode=0o600):
    return h.write(h.name("clients-") + ".ini",
                   "[billing]\ntoken_sha256 = %s\nbusinesses = %s\n"
                   % (sha(tok), H.BIZ), mode=mode)


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def rewrite(gw, overrides):
    """GW's config file becomes its start config plus OVERRIDES (mode
    0600, as the harness writes every file)."""
    cfg = H.merge_config(
        {s: dict(k) for s, k in gw.cfg.items()}, overrides)
    text = H.render_config(cfg)
    gw.h.write(os.path.basename(gw.conf_path), text)
    return text


def line_of(text, key):
    for i, ln in enumerate(text.splitlines(), 1):
        if re.match(r"\s*%s\s*=" % re.escape(key), ln):
            return i
    raise AssertionError("%r not in config" % key)


def error_line(text):
    """The 'asset-gateway: ...' line the daemon prints on a bad file."""
    for ln in text.splitlines():
        if ln.startswith("asset-gateway: "):
            return ln[len("asset-gateway: "):]
    return ""


def start_verdict(h, path):
    """Runs the gateway on PATH as a daemon would start; a file it accepts
    keeps it running until the timeout kills it (rc None)."""
    return H.run_cmd([h.gateway_bin, "-c", path], timeout=START_TIMEOUT_S)


# ------------------------------------------- (1) reload token -> none

@H.scenario
def reload_token_to_none(h):
    t = h.t
    sb = H.Sandbox(h)
    tok = new_token(h, "billing")
    cf = clients_file(h, tok)
    gw = H.Gateway(h, sb, overrides={
        "auth": {"mode": "token", "clients_file": cf}})
    d = "reload token->none"
    r = gw.create({"uri": sb.sample("trust-0.png")})
    H.check_error(t, r, 401, 16, "%s: before, no token -> 401" % d)
    r = gw.create({"uri": sb.sample("trust-1.png")}, headers=bearer(tok))
    t.eq(r.status, 200, "%s: before, a valid token -> 200" % d)

    rewrite(gw, {"auth": {"mode": "none"}})
    got = sighup(gw)
    t.eq(got, "ok", "%s: the reload itself is applied "
         "(config_reloads_total{result=\"ok\"})" % d)
    t.check(re.search(r"\[auth\] mode changed, which needs a restart",
                      gw.log_text()),
            "%s: the log says [auth] mode needs a restart" % d,
            gw.proc.tail())
    calls = sb.calls()
    r = gw.create({"uri": sb.sample("trust-2.png")})
    H.check_error(t, r, 401, 16, "%s: after, no token -> still 401" % d)
    r = gw.create({"uri": sb.sample("trust-3.png")},
                  headers=bearer("agw-tok-wrong"))
    H.check_error(t, r, 401, 16, "%s: after, a wrong token -> 401" % d)
    r = gw.create({"uri": sb.sample("trust-4.png")}, headers=bearer(tok),
                  business=H.BIZ2)
    H.check_error(t, r, 403, 7, "%s: after, a business the caller may not "
                  "act for -> still 403" % d)
    t.eq(sb.calls(), calls, "%s: none of those spent the key (no upstream "
         "call)" % d)
    r = gw.create({"uri": sb.sample("trust-5.png")}, headers=bearer(tok))
    t.eq(r.status, 200, "%s: after, a valid token -> still 200" % d)

    # The kept mode = token has no clients file in this one: refused.
    rewrite(gw, {"auth": {"mode": "none", "clients_file": None}})
    got = sighup(gw)
    t.eq(got, "failed", "%s: mode = none without clients_file -> reload "
         "refused (token mode, kept, needs one)" % d)
    t.check(re.search(r"reload refused.*\[auth\] mode: .*clients_file",
                      gw.log_text()),
            "%s: the refusal names [auth] mode and clients_file" % d,
            gw.proc.tail())
    r = gw.create({"uri": sb.sample("trust-6.png")})
    H.check_error(t, r, 401, 16, "%s: still no token -> 401" % d)
    r = gw.create({"uri": sb.sample("trust-7.png")}, headers=bearer(tok))
    t.eq(r.status, 200, "%s: the old callers still serve: token -> 200" % d)
    gw.stop()
    sb.stop()


# --------------------------------------- (5) -t == start-up == SIGHUP

def writable_ca(h):
    """A real CA certificate file, group-writable."""
    path = h.path("writable-ca.pem")
    if not os.path.exists(path):
        H.run_cmd(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                   "-keyout", h.path("writable-ca.key"), "-out", path,
                   "-days", "1", "-subj", "/CN=trust-test-ca"], timeout=30)
        os.chmod(path, 0o664)
    return path


def bad_values(h):
    """(what, overrides, section, key, words the message holds)."""
    ca = h.path("no-such-ca.pem")
    return [
        ("base_url with a query",
         {"upstream": {"base_url": "https://127.0.0.1:9/v1?x=1"}},
         "upstream", "base_url", "query"),
        ("base_url with credentials",
         {"upstream": {"base_url": "https://u:pw-hidden-7q@127.0.0.1:9/v1"}},
         "upstream", "base_url", "credentials"),
        ("base_url with a fragment",
         {"upstream": {"base_url": "https://127.0.0.1:9/v1#top"}},
         "upstream", "base_url", "fragment"),
        ("a missing ca_file",
         {"upstream": {"base_url": "https://127.0.0.1:9", "ca_file": ca}},
         "upstream", "ca_file", "No such file"),
        ("a bad listen address",
         {"server": {"listen": "999.1.1.1:%d" % H.free_port()}},
         "server", "listen", "IPv4"),
        ("a bad redis_url",
         {"store": {"backend": "redis",
                    "redis_url": "redis://127.0.0.1:99999/0"}},
         "store", "redis_url", "port"),
        ("a ca_file others may write",
         {"upstream": {"base_url": "https://127.0.0.1:9",
                       "ca_file": writable_ca(h)}},
         "upstream", "ca_file", "writable by group or others"),
        ("a log file in a missing directory",
         {"log": {"file": h.path("no-such-dir/gw.log")}},
         "log", "file", "No such file"),
    ]


def names_place(msg, path, text, section, key, words):
    """Problems with MSG: it must name PATH:LINE of KEY, [SECTION] KEY and
    WORDS, and never the URL's password."""
    probs = []
    line = line_of(text, key)
    if "%s:%d: [%s] %s: " % (path, line, section, key) not in msg:
        probs.append("no '%s:%d: [%s] %s: '" % (path, line, section, key))
    if words not in msg:
        probs.append("no %r" % words)
    if "pw-hidden-7q" in msg:
        probs.append("the password is echoed")
    return probs


@H.scenario
def check_and_start_agree(h):
    sb = h.sandbox()
    t = h.t
    key = h.key_file()
    for what, over, section, key_name, words in bad_values(h):
        cfg = H.merge_config(H.base_config(h, H.free_port(), sb.base_url,
                                           key), over)
        text = H.render_config(cfg)
        path = h.write(h.name("bad-") + ".conf", text)
        rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c", path])
        probs = names_place(err, path, text, section, key_name, words)
        t.check(rc == 1 and not probs, "-t with %s -> exit 1 naming "
                "file:line and [%s] %s" % (what, section, key_name),
                "rc %r %s\n%s" % (rc, probs, (out + err)[-600:]))
        rc2, out2, err2 = start_verdict(h, path)
        t.check(rc2 == 1 and error_line(err2) == error_line(err)
                and error_line(err) != "",
                "start-up with %s -> exit 1 with the same message as -t"
                % what, "rc %r\n-t: %s\nstart: %s" % (
                    rc2, error_line(err), (out2 + err2)[-600:]))


@H.scenario
def reload_refuses_bad_values(h):
    sb = h.sandbox()
    t = h.t
    gw = H.Gateway(h, sb)
    for i, (what, over, section, key_name, words) in enumerate(bad_values(h)):
        before = len(gw.log_text())
        text = rewrite(gw, over)
        got = sighup(gw)
        t.eq(got, "failed", "SIGHUP with %s -> refused "
             "(config_reloads_total{result=\"failed\"})" % what)
        log = gw.log_text()[before:]
        probs = names_place(log, gw.conf_path, text, section, key_name, words)
        t.check("reload refused" in log and not probs,
                "SIGHUP with %s: the error names file:line and [%s] %s"
                % (what, section, key_name), "%s\n%s" % (probs, log[-800:]))
        r = gw.create({"uri": sb.sample("trust-reload-%d.png" % i)})
        t.check(r.status == 200 and r.header("x-cache") == "MISS",
                "SIGHUP with %s: the old config keeps serving (create -> "
                "200 from the same upstream)" % what, r.short())
    rewrite(gw, {})
    t.eq(sighup(gw), "ok", "the good file again -> the reload applies")
    gw.stop()


# ------------------------------------------- (10) file permissions

def trusted_files(h, sb, mode=0o600):
    """A token-mode config, its key file and clients file, all MODE;
    returns them, the caller's token and the listen port."""
    tok = new_token(h, "perm")
    port = H.free_port()
    key = h.write(h.name("api-key-"), h.api_key + "\n", mode=mode)
    cf = clients_file(h, tok, mode=mode)
    cfg = H.merge_config(H.base_config(h, port, sb.base_url, key),
                         {"auth": {"mode": "token", "clients_file": cf}})
    conf = h.write(h.name("perm-") + ".conf", H.render_config(cfg), mode=mode)
    return {"config": conf, "key file": key, "clients file": cf}, tok, port


LOOSE = ((0o620, "group-writable"), (0o602, "world-writable"))


@H.scenario
def writable_refused_at_start(h):
    sb = h.sandbox()
    t = h.t
    files, _, _ = trusted_files(h, sb)
    for which, path in files.items():
        for mode, word in LOOSE:
            os.chmod(path, mode)
            rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c",
                                      files["config"]])
            t.check(rc == 1 and path in err and "writable by group or "
                    "others" in err and "%04o" % mode in err,
                    "-t with a %s %s (%04o) -> exit 1 naming it"
                    % (word, which, mode), "rc %r %s" % (rc, err[-600:]))
            rc, out, err = start_verdict(h, files["config"])
            t.check(rc == 1 and path in err and "writable" in err,
                    "start-up with a %s %s -> exit 1 naming it"
                    % (word, which), "rc %r %s" % (rc, err[-600:]))
            os.chmod(path, 0o600)


@H.scenario
def readable_accepted(h):
    sb = h.sandbox()
    t = h.t
    for mode in (0o600, 0o640):
        files, tok, port = trusted_files(h, sb, mode)
        rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c",
                                  files["config"]])
        t.check(rc == 0, "-t with config, key and clients file all %04o "
                "-> exit 0" % mode, "rc %r %s" % (rc, err[-600:]))
    # the 0640 set really starts and serves
    gw = H.Gateway(h, sb, start=False)
    gw.conf_path, gw.port = files["config"], port
    gw.start()
    r = gw.create({"uri": sb.sample("trust-perm-ok.png")},
                  headers=bearer(tok))
    t.eq(r.status, 200, "a gateway started on 0640 files serves a token "
         "caller -> 200")
    gw.stop()


@H.scenario
def writable_refused_on_reload(h):
    sb = h.sandbox()
    t = h.t
    tok = new_token(h, "reload-perm")
    cf = clients_file(h, tok)
    gw = H.Gateway(h, sb, overrides={
        "auth": {"mode": "token", "clients_file": cf}})
    files = {"config": gw.conf_path,
             "key file": gw.cfg["upstream"]["api_key_file"],
             "clients file": cf}
    n = 0
    for which, path in files.items():
        for mode, word in LOOSE:
            before = len(gw.log_text())
            os.chmod(path, mode)
            got = sighup(gw)
            log = gw.log_text()[before:]
            t.check(got == "failed" and path in log and "writable" in log,
                    "SIGHUP with a %s %s -> refused, naming it"
                    % (word, which), "%s\n%s" % (got, log[-600:]))
            os.chmod(path, 0o600)
            n += 1
            r = gw.create({"uri": sb.sample("trust-perm-%d.png" % n)},
                          headers=bearer(tok))
            t.eq(r.status, 200, "after the refused reload (%s %s) the old "
                 "config serves -> 200" % (word, which))
    os.chmod(files["clients file"], 0o640)
    t.eq(sighup(gw), "ok", "SIGHUP with the clients file at 0640 -> applied")
    gw.stop()


if __name__ == "__main__":
    H.run()
