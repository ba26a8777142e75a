"""The operators' listener under a connection flood (SPEC section 12: it
needs no token to connect): a client that opens far more connections to
[admin] listen than it holds (ADMIN_MAX_CONNECTIONS in src/admin.c)
neither kills the gateway nor grows its descriptors past that cap; the
callers' listener keeps serving creates meanwhile; once the flood's
connections close, an operator's GET /admin/status on a fresh
connection is answered again.

Each scenario has its own gateway (-k NAME runs one)."""

import hashlib
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

ADMIN_CAP = 64           # ADMIN_MAX_CONNECTIONS in src/admin.c
FLOOD = ADMIN_CAP + 96   # within the listen backlog (128) past the cap
FD_SLACK = 16            # descriptors a busy gateway may open meanwhile
SETTLE_S = 0.6           # for the gateway to accept what it will
MEASURE_S = 0.6          # fd counts taken over this long, the largest kept
CONNECT_TIMEOUT_S = 1.0
RECOVER_S = 4.0          # closed connections are swept every 250 ms
OP_TOKEN = "operators-limits-token-" + os.urandom(8).hex()


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def most_fds(pid, seconds):
    """The largest descriptor count seen over SECONDS."""
    most, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        most = max(most, fd_count(pid))
        time.sleep(0.05)
    return most


def flood(port, n):
    """N connections to PORT that send nothing; the ones that connected
    (a full backlog may refuse or stall the rest)."""
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(
                ("127.0.0.1", port), timeout=CONNECT_TIMEOUT_S))
        except OSError:
            break
    return socks


def admin_status(port):
    return H.request(port, "GET", "/admin/status", timeout=2,
                     headers={"Authorization": "Bearer " + OP_TOKEN})


@H.scenario
def admin_connection_flood(h):
    t, sb = h.t, h.sandbox()
    t.redact.append(OP_TOKEN)
    port = H.free_port()
    gw = H.Gateway(h, sb, overrides={"admin": {
        "listen": "127.0.0.1:%d" % port,
        "token_sha256": hashlib.sha256(OP_TOKEN.encode()).hexdigest()}})
    pid = gw.proc.pid
    t.eq(admin_status(port).status, 200, "before the flood: GET "
         "/admin/status with the operators' token -> 200")
    time.sleep(0.3)  # that connection is closed and swept
    before = fd_count(pid)
    socks = flood(port, FLOOD)
    try:
        time.sleep(SETTLE_S)
        most = most_fds(pid, MEASURE_S)
        t.diag("%d flood connections: descriptors %d -> at most %d"
               % (len(socks), before, most))
        t.check(len(socks) > ADMIN_CAP, "the flood opened more connections "
                "than the cap (%d > %d)" % (len(socks), ADMIN_CAP),
                "only %d connected" % len(socks))
        t.check(most - before <= ADMIN_CAP + FD_SLACK,
                "the gateway's descriptors grew by at most the cap "
                "(+%d, cap %d)" % (most - before, ADMIN_CAP),
                "+%d descriptors for %d connections"
                % (most - before, len(socks)))
        t.check(gw.proc.alive(), "the gateway is alive under the flood",
                gw.proc.tail())
        statuses = [gw.create({"uri": sb.sample("flood-%d.png" % i)}).status
                    for i in range(3)]
        t.eq(statuses, [200] * 3, "the callers' listener serves creates "
             "meanwhile")
    finally:
        for s in socks:
            s.close()
    r, deadline = None, time.monotonic() + RECOVER_S
    while time.monotonic() < deadline:
        r = admin_status(port)
        if r.status == 200:
            break
        time.sleep(0.1)
    t.check(r.status == 200 and isinstance(r.json, dict) and
            "instance" in r.json, "once the flood's connections close, GET "
            "/admin/status on a fresh connection -> 200 with the status",
            r.short())
    rc, killed = gw.stop()
    t.check(rc == 0 and not killed, "the gateway exits 0 on SIGTERM",
            "rc %r killed %r" % (rc, killed))


if __name__ == "__main__":
    H.run()
