"""Caller authentication through the real gateway (SPEC section 2, issue
#5): the Bearer token paths, per-caller businesses, the caller's name in
the access log, the clients file checked by -t and reloaded on SIGHUP
(a broken one refused), and the warning of mode = none. Each scenario
has its own gateway and clients file (-k NAME runs one alone)."""

import hashlib
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

BIZ3 = "0f8fad5b-d9cb-469f-a165-70867728950e"
RELOAD_WAIT_S = 5.0


def sha(token):
    return hashlib.sha256(token.encode()).hexdigest()


def token(name):
    return "agw-tok-%s-%s" % (name, os.urandom(16).hex())


def clients_text(callers):
    """CALLERS: [(name, token, businesses string)] -> clients file."""
    out = ["# callers of the auth test"]
    for name, tok, biz in callers:
        out += ["[%s]" % name, "token_sha256 = %s" % sha(tok),
                "businesses = %s" % biz, ""]
    return "\n".join(out)


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def access_lines(gw):
    """The JSON access-log lines of GW, by request id."""
    return {j.get("request_id"): j for j in H.log_records(gw)
            if j.get("type") == "access"}


def new_errors(gw, n_err):
    """GW's error records after its first N_ERR."""
    return [j for j in H.log_records(gw) if j.get("level") == "error"][n_err:]


def check_401(t, r, desc, invalid_token):
    H.check_error(t, r, 401, 16, desc)
    want = 'Bearer error="invalid_token"' if invalid_token else "Bearer"
    t.eq(r.header("www-authenticate"), want,
         "%s: WWW-Authenticate: %s" % (desc, want))


def callers(h):
    """The file's caller tokens, made (and redacted) once."""
    if not hasattr(h, "auth_tokens"):
        h.auth_tokens = {n: token(n) for n in ("billing", "media", "ops")}
        h.t.redact += list(h.auth_tokens.values())
    return h.auth_tokens


def token_gateway(h, sb, toks):
    """A gateway with mode = token and a clients file of its own for the
    callers billing, media and ops; (gateway, clients file path)."""
    clients = h.write(h.name("clients-") + ".ini", clients_text([
        ("billing", toks["billing"], H.BIZ),
        ("media", toks["media"], "%s, %s" % (H.BIZ2.upper(), BIZ3)),
        ("ops", toks["ops"], "*"),
    ]))
    gw = H.Gateway(h, sb, overrides={
        "auth": {"mode": "token", "clients_file": clients},
        "log": {"level": "debug", "format": "json"}})
    return gw, clients


def check_end(t, gw, toks):
    """No caller token in GW's output; a clean exit; a JSON log."""
    text = gw.output_text()
    t.check(not any(tok in text for tok in toks.values()),
            "no caller token anywhere in %s's output" % gw.name,
            "a token was found")
    rc, killed = gw.stop()
    t.check(rc == 0 and not killed, "%s exits 0 on SIGTERM" % gw.name,
            "rc %r killed %r" % (rc, killed))
    H.check_json_log(t, gw)


@H.scenario
def token_paths_and_access_log(h):
    t, sb = h.t, h.sandbox()
    toks = callers(h)
    gw, _ = token_gateway(h, sb, toks)
    t.check(not any(j.get("level") == "warn" and "mode = none" in
                    (j.get("msg") or "") for j in H.log_records(gw)),
            "mode = token: no mode = none warning", gw.log_text()[-800:])
    expect = token_paths(h, sb, gw, toks)
    check_access_log(h, gw, expect, toks)
    check_end(t, gw, toks)


def token_paths(h, sb, gw, toks):
    """The refused paths first (the sandbox must see none of them), then
    the accepted ones. Returns {request id: (expected caller, status)}."""
    t = h.t
    expect = {}
    seq = [0]

    def call(desc, headers, business=H.BIZ, body=None, caller="-",
             status=None):
        seq[0] += 1
        rid = "auth-it-%03d" % seq[0]
        hdrs = dict(headers)
        hdrs["X-Request-Id"] = rid
        r = gw.create(body if body is not None else
                      {"uri": sb.sample("auth-%d.png" % seq[0])},
                      business=business, headers=hdrs)
        expect[rid] = (caller, status or r.status, desc)
        return r

    before = sb.stats()
    r = call("no Authorization", {}, status=401)
    check_401(t, r, "no Authorization header", False)
    H.check_create_headers(t, r, "401 answer")
    r = call("Basic", {"Authorization": "Basic xyz"}, status=401)
    check_401(t, r, "Authorization: Basic xyz", False)
    r = call("Bearer alone", {"Authorization": "Bearer"}, status=401)
    check_401(t, r, "Authorization: Bearer (no token)", False)
    r = call("Bearer space", {"Authorization": "Bearer   "}, status=401)
    check_401(t, r, "Authorization: 'Bearer   ' (blank token)", False)
    r = call("Bearer glued", {"Authorization": "Bearer" + toks["billing"]},
             status=401)
    H.check_error(t, r, 401, 16, "Authorization: Bearer<token> (no space)")
    r = call("unknown", bearer(token("unknown")), status=401)
    check_401(t, r, "unknown token", True)
    r = call("token+x", bearer(toks["billing"] + "x"), status=401)
    check_401(t, r, "good token with one extra character", True)
    r = call("token[:-1]", bearer(toks["billing"][:-1]), status=401)
    check_401(t, r, "good token less its last character", True)
    r = call("token upper", bearer(toks["billing"].upper()), status=401)
    check_401(t, r, "good token upper-cased (tokens are case-sensitive)",
              True)
    r = call("wrong business", bearer(toks["billing"]), business=H.BIZ2,
             caller="billing", status=403)
    H.check_error(t, r, 403, 7, "good token, business not allowed")
    t.check(r.header("www-authenticate") is None,
            "403: no WWW-Authenticate", r.short())
    H.check_create_headers(t, r, "403 answer")
    # authentication comes before body validation
    r = call("no auth, bad body", {}, body=b"{not json", status=401)
    check_401(t, r, "no token and an invalid body", False)
    r = call("unknown, bad body", bearer(token("u2")), body={"uri": 5},
             status=401)
    check_401(t, r, "unknown token and an invalid body", True)
    r = call("forbidden, bad body", bearer(toks["billing"]),
             business=BIZ3, body={}, caller="billing", status=403)
    H.check_error(t, r, 403, 7, "business not allowed and an invalid body")
    r = call("no auth, bad business", {}, business="not-a-uuid",
             status=401)
    check_401(t, r, "no token and an invalid business id", False)
    after = sb.stats()
    t.eq(after, before, "the refused calls reached the sandbox not at all "
         "(its /_sandbox/stats unchanged)")

    # accepted
    r = call("lower bearer", {"Authorization": "bearer " + toks["billing"]},
             caller="billing")
    t.check(r.status == 200 and r.header("x-cache") == "MISS",
            "lowercase 'bearer <good>' -> 200 MISS", r.short())
    r = call("upper BEARER", {"Authorization": "BEARER " + toks["billing"]},
             caller="billing")
    t.eq(r.status, 200, "'BEARER <good>' -> 200")
    r = call("allowed", bearer(toks["billing"]), caller="billing")
    t.check(r.status == 200 and r.header("x-cache") == "MISS",
            "good token, allowed business -> 200 MISS", r.short())
    H.check_create_headers(t, r, "200 answer")
    r = call("allowed upper biz", bearer(toks["billing"]),
             business=H.BIZ.upper(), caller="billing")
    t.eq(r.status, 200, "allowed business id sent upper-case -> 200 "
         "(business ids compare case-insensitively)")
    r = call("file upper biz", bearer(toks["media"]), business=H.BIZ2,
             caller="media")
    t.eq(r.status, 200, "business listed upper-case in the clients file, "
         "sent lower-case -> 200")
    r = call("media second biz", bearer(toks["media"]), business=BIZ3,
             caller="media")
    t.eq(r.status, 200, "caller with two businesses: the second -> 200")
    r = call("media not biz", bearer(toks["media"]), business=H.BIZ,
             caller="media", status=403)
    H.check_error(t, r, 403, 7, "caller with two businesses: a third")
    for biz in (H.BIZ, H.BIZ2, BIZ3):
        r = call("star %s" % biz, bearer(toks["ops"]), business=biz,
                 caller="ops")
        t.eq(r.status, 200, "businesses = * caller, %s -> 200" % biz)
    r = call("star bad biz", bearer(toks["ops"]), business="not-a-uuid",
             caller="ops", status=400)
    H.check_error(t, r, 400, 3, "businesses = * caller, invalid business id",
                  field="business")
    calls = sb.calls() - before["calls"]
    t.eq(calls, 9, "the sandbox saw exactly the 9 accepted calls")
    return expect


def check_access_log(h, gw, expect, toks):
    t = h.t
    lines = access_lines(gw)
    missing = [rid for rid in expect if rid not in lines]
    t.check(not missing, "an access line for each of the %d calls"
            % len(expect), "missing: %r" % missing)
    wrong = []
    for rid, (caller, status, desc) in expect.items():
        j = lines.get(rid)
        if j is None:
            continue
        if j.get("caller") != caller or j.get("status") != status:
            wrong.append("%s (%s): caller %r status %r, want %r %r" % (
                rid, desc, j.get("caller"), j.get("status"), caller, status))
    t.check(not wrong, "access lines carry the caller's name ('-' when "
            "unauthenticated) and the status", "\n".join(wrong))
    names = {j.get("caller") for j in lines.values()}
    t.check({"billing", "media", "ops", "-"} <= names,
            "callers billing, media, ops and '-' all appear", repr(names))
    text = gw.output_text()
    found = [n for n, tok in toks.items() if tok in text or sha(tok) in text]
    t.check(not found, "no caller token (nor its hash) in the gateway log",
            "found for %r" % found)


@H.scenario
def clients_file_checked_by_t(h):
    t, sb = h.t, h.sandbox()
    key = h.key_file()
    cases = [
        ("bad hex", ["[alpha]", "token_sha256 = " + "zz" * 32,
                     "businesses = *"], 2),
        ("short hash", ["[alpha]", "token_sha256 = abcd",
                        "businesses = *"], 2),
        ("bad business", ["[alpha]", "token_sha256 = " + sha("a"),
                          "businesses = not-a-uuid"], 3),
        ("unknown key", ["[alpha]", "token_sha256 = " + sha("a"),
                         "businesses = *", "colour = blue"], 4),
        ("duplicate hash", ["[alpha]", "token_sha256 = " + sha("a"),
                            "businesses = *", "[beta]",
                            "token_sha256 = " + sha("a"),
                            "businesses = *"], 5),
        ("bad name", ["[bad name!]", "token_sha256 = " + sha("a"),
                      "businesses = *"], 1),
    ]
    for desc, lines, line in cases:
        cf = h.write(h.name("clients-bad-") + ".ini",
                     "\n".join(lines) + "\n")
        cfg = H.base_config(h, H.free_port(), sb.base_url, key)
        H.merge_config(cfg, {"auth": {"mode": "token", "clients_file": cf}})
        conf = h.write(h.name("bad-auth-") + ".conf", H.render_config(cfg))
        rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c", conf])
        text = out + err
        t.check(rc == 1 and ("%s:%d" % (cf, line)) in text,
                "-t with a clients file with %s exits 1 naming %s:%d"
                % (desc, os.path.basename(cf), line),
                "rc %r output %r" % (rc, text[-600:]))
    # a missing key in a section: names the file (and the section)
    cf = h.write(h.name("clients-bad-") + ".ini",
                 "[lonely]\nbusinesses = *\n")
    cfg = H.base_config(h, H.free_port(), sb.base_url, key)
    H.merge_config(cfg, {"auth": {"mode": "token", "clients_file": cf}})
    conf = h.write(h.name("bad-auth-") + ".conf", H.render_config(cfg))
    rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c", conf])
    t.check(rc == 1 and cf in err and "lonely" in err and
            "token_sha256" in err,
            "-t with a caller lacking token_sha256 exits 1 naming the file, "
            "caller and key", "rc %r stderr %r" % (rc, err[-600:]))
    # a missing clients file
    cfg = H.base_config(h, H.free_port(), sb.base_url, key)
    gone = h.path("no-such-clients.ini")
    H.merge_config(cfg, {"auth": {"mode": "token", "clients_file": gone}})
    conf = h.write(h.name("bad-auth-") + ".conf", H.render_config(cfg))
    rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c", conf])
    t.check(rc == 1 and gone in err, "-t with a missing clients file exits 1 "
            "naming it", "rc %r stderr %r" % (rc, err[-600:]))
    # and the real gateway refuses to start with it
    rc, out, err = H.run_cmd([h.gateway_bin, "-c", conf], timeout=10)
    t.check(rc == 1 and gone in err, "the gateway does not start with a "
            "missing clients file (exit 1)",
            "rc %r stderr %r" % (rc, err[-600:]))
    # a clients file others may read: accepted with a warning naming it
    cf = h.write(h.name("clients-loose-") + ".ini", "[alpha]\ntoken_sha256 = "
                 "%s\nbusinesses = *\n" % sha("loose-token"), mode=0o644)
    cfg = H.base_config(h, H.free_port(), sb.base_url, key)
    H.merge_config(cfg, {"auth": {"mode": "token", "clients_file": cf}})
    conf = h.write(h.name("loose-auth-") + ".conf", H.render_config(cfg))
    rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c", conf])
    t.check(rc == 0 and cf in err and "readable" in err,
            "-t with a clients file of mode 0644 exits 0 with a warning "
            "naming it", "rc %r stderr %r" % (rc, err[-600:]))
    t.check(sha("loose-token") not in out + err,
            "that warning holds no token hash", err[-600:])
    # mode = token without a clients file at all
    cfg = H.base_config(h, H.free_port(), sb.base_url, key)
    H.merge_config(cfg, {"auth": {"mode": "token"}})
    conf = h.write(h.name("bad-auth-") + ".conf", H.render_config(cfg))
    rc, out, err = H.run_cmd([h.gateway_bin, "-t", "-c", conf])
    t.check(rc == 1 and "clients_file" in err, "-t with mode = token and no "
            "clients_file exits 1 naming clients_file",
            "rc %r stderr %r" % (rc, err[-600:]))


@H.scenario
def clients_file_reloads(h):
    """SIGHUP with a new clients file, a broken one, none at all"""
    t, sb = h.t, h.sandbox()
    toks = dict(callers(h))  # newbie joins this scenario's copy
    gw, clients_path = token_gateway(h, sb, toks)
    newbie = token("newbie")
    t.redact.append(newbie)
    toks["newbie"] = newbie
    r = gw.create({"uri": sb.sample("pre-reload.png")}, headers=bearer(newbie))
    check_401(t, r, "before the reload: the new caller's token", True)

    # the new file: billing kept, media removed, newbie added
    h.write(os.path.basename(clients_path), clients_text([
        ("billing", toks["billing"], H.BIZ),
        ("ops", toks["ops"], "*"),
        ("newbie", newbie, H.BIZ2),
    ]))
    gw.proc.signal(signal.SIGHUP)
    ok = H.wait_until(lambda: gw.create(
        {"uri": sb.sample("newbie.png")}, business=H.BIZ2,
        headers=bearer(newbie)).status == 200, RELOAD_WAIT_S, step=0.05)
    t.check(ok, "SIGHUP with a new clients file: the added "
            "caller's token now works (200)",
            gw.log_text()[-1500:])
    r = gw.create({"uri": sb.sample("media-after.png")}, business=H.BIZ2,
                  headers=bearer(toks["media"]))
    check_401(t, r, "after the reload: the removed caller's token", True)
    r = gw.create({"uri": sb.sample("newbie-biz.png")}, business=H.BIZ,
                  headers=bearer(newbie))
    H.check_error(t, r, 403, 7, "after the reload: the new caller outside "
                  "its businesses")
    r = gw.create({"uri": sb.sample("billing-after.png")},
                  headers=bearer(toks["billing"]))
    t.eq(r.status, 200, "after the reload: a kept caller still works")
    t.check(any("reloaded" in (j.get("msg") or "") for j in H.log_records(gw)),
            "the reload is logged", gw.log_text()[-1500:])

    # a broken file: refused, the old table stays
    n_err = sum(1 for j in H.log_records(gw) if j.get("level") == "error")
    h.write(os.path.basename(clients_path),
            clients_text([("billing", toks["billing"], H.BIZ)])
            + "\n[broken]\ntoken_sha256 = nothex\nbusinesses = *\n")
    gw.proc.signal(signal.SIGHUP)
    H.wait_until(lambda: new_errors(gw, n_err), RELOAD_WAIT_S, step=0.05)
    errs = new_errors(gw, n_err)
    t.check(errs and any(clients_path in (j.get("msg") or "")
                         for j in errs),
            "SIGHUP with a broken clients file logs an error naming it",
            repr(errs)[-1000:])
    t.check(gw.proc.alive(), "the gateway survives a broken clients file",
            gw.proc.tail())
    r = gw.create({"uri": sb.sample("newbie-kept.png")}, business=H.BIZ2,
                  headers=bearer(newbie))
    t.eq(r.status, 200, "after the refused reload the old table stays: "
         "newbie (absent from the broken file) still works")
    r = gw.create({"uri": sb.sample("ops-kept.png")}, business=BIZ3,
                  headers=bearer(toks["ops"]))
    t.eq(r.status, 200, "after the refused reload: ops still works")
    r = gw.create({"uri": sb.sample("media-still-gone.png")},
                  business=H.BIZ2, headers=bearer(toks["media"]))
    check_401(t, r, "after the refused reload: media is still gone", True)

    # a vanished clients file: refused too
    os.unlink(clients_path)
    n_err = sum(1 for j in H.log_records(gw) if j.get("level") == "error")
    gw.proc.signal(signal.SIGHUP)
    H.wait_until(lambda: new_errors(gw, n_err), RELOAD_WAIT_S, step=0.05)
    errs = new_errors(gw, n_err)
    t.check(bool(errs), "SIGHUP with the clients file gone logs an error",
            gw.log_text()[-1000:])
    r = gw.create({"uri": sb.sample("billing-gone.png")},
                  headers=bearer(toks["billing"]))
    t.eq(r.status, 200, "clients file gone: the old table stays")
    check_end(t, gw, toks)


@H.scenario
def mode_none(h):
    t, sb = h.t, h.sandbox()
    gw = H.Gateway(h, sb)  # the base config has mode = none
    warns = [j for j in H.log_records(gw) if j.get("level") == "warn"
             and "mode = none" in (j.get("msg") or "")]
    t.check(len(warns) == 1, "mode = none: one warning at start naming it",
            gw.log_text()[-1500:])
    r = gw.create({"uri": sb.sample("none.png")})
    t.eq(r.status, 200, "mode = none: a call without a token -> 200")
    r = gw.create({"uri": sb.sample("none-2.png")},
                  headers={"Authorization": "Basic whatever"})
    t.eq(r.status, 200, "mode = none: any Authorization is ignored -> 200")
    lines = access_lines(gw)
    t.check(lines and all(j.get("caller") == "-" for j in lines.values()),
            "mode = none: access lines say caller '-'", repr(lines)[-800:])
    check_end(t, gw, callers(h))


if __name__ == "__main__":
    H.run()
