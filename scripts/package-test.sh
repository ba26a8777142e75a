#!/bin/sh
# package-test.sh - the Debian packages of SPEC section 13, end to end:
# builds them with `dpkg-buildpackage -us -uc -b` from a clean export of
# HEAD (in a temp dir, never in the checkout), runs lintian (errors fail)
# and `systemd-analyze security` on the unit (at most 2.0), installs both
# into a fresh Debian 12 minbase root (debootstrap, chroot), checks the
# user, the conffile and the unit, writes the API key, runs
# `asset-gateway -t` and then the daemon as the user asset-gateway against
# the packaged connectly-sandbox (one create: MISS, then HIT), boots the
# root with systemd-nspawn to drive the real unit (not started before the
# key; start, a create, reload, stop), purges both packages and checks
# what remains.
#
# Usage: scripts/package-test.sh [CACHE-DIR]   (default build/package)
# CACHE-DIR keeps the debootstrapped base system between runs; delete
# bookworm-minbase.tar.gz there to refresh it. Needs root (re-runs itself
# with sudo), Debian's mirror (the one apt uses; AGW_DEBIAN_MIRROR
# overrides) and mounts (/proc and /dev in the root). Installs its tools
# and the build dependencies with apt-get. Prints TAP, then a last line
# "N passed, N failed"; exits 0 only when nothing failed.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${1:-$top/build/package}

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        exec sudo -n sh "$0" "$cache"
    fi
    echo "1..0 # SKIP needs root (or sudo without a password)"
    echo "0 passed, 0 failed"
    exit 0
fi

n=0
failed=0
tmp="" root="" sb_pid="" gw_pid="" boot_pid=""

ok() {
    n=$((n + 1))
    echo "ok $n - $1"
}

not_ok() { # not_ok DESC [DETAIL]
    n=$((n + 1))
    failed=$((failed + 1))
    echo "not ok $n - $1"
    [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/# /'
    return 0
}

check() { # check DESC CMD...: ok when CMD succeeds
    desc=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "$desc"; else not_ok "$desc"; fi
}

in_root() { # in_root CMD...: runs CMD in the installed root
    chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"
}

as_user() { # as_user CMD...: runs CMD in the root as asset-gateway
    in_root setpriv --reuid=asset-gateway --regid=asset-gateway \
        --init-groups "$@"
}

stop_pid() { # stop_pid PID: SIGTERM, up to 15 s, then SIGKILL; its status
    kill "$1" 2>/dev/null
    i=0
    while kill -0 "$1" 2>/dev/null && [ "$i" -lt 150 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -9 "$1" 2>/dev/null
    wait "$1"
}

mount_api() { # /proc and /dev in the root, for chroot
    mount -t proc proc "$root/proc" && mount --bind /dev "$root/dev"
}

umount_api() {
    for m in "$root/dev" "$root/proc"; do
        mountpoint -q "$m" && umount "$m"
        mountpoint -q "$m" && umount -l "$m"
    done
    return 0
}

cleanup() {
    [ -n "$gw_pid" ] && stop_pid "$gw_pid" >/dev/null 2>&1
    [ -n "$sb_pid" ] && stop_pid "$sb_pid" >/dev/null 2>&1
    [ -n "$boot_pid" ] && stop_pid "$boot_pid" >/dev/null 2>&1
    gw_pid="" sb_pid="" boot_pid=""
    [ -n "$root" ] && umount_api
    # Only once nothing is mounted in it; --one-file-system guards /dev.
    if [ -n "$tmp" ] && ! grep -q " $tmp/" /proc/mounts; then
        rm -rf --one-file-system "$tmp"
    elif [ -n "$tmp" ]; then
        echo "# left $tmp: still mounted"
    fi
    tmp=""
}

finish() {
    cleanup
    echo "1..$n"
    echo "$((n - failed)) passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

trap cleanup EXIT
trap 'cleanup; exit 1' INT TERM

elapsed() { # seconds since $1 (date +%s)
    echo $(($(date +%s) - $1))
}

# ------------------------------------------------------------ tools, source
tools="dpkg-dev debhelper lintian debootstrap debian-archive-keyring
systemd systemd-container curl python3 ca-certificates git"
missing=""
for p in $tools; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "# installing:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends $missing >/dev/null
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agw-package-XXXXXX") || exit 2
src=$tmp/src
mkdir -p "$src"
if git -c safe.directory="$top" -C "$top" archive --format=tar HEAD |
    tar -x -C "$src"; then
    ok "exported HEAD ($(git -c safe.directory="$top" -C "$top" \
        rev-parse --short HEAD)) to a temp dir"
else
    not_ok "exported HEAD with git archive" "not a git checkout?"
    finish
fi
if [ -n "$(git -c safe.directory="$top" -C "$top" status --porcelain \
    -- debian 2>/dev/null)" ]; then
    echo "# debian/ has uncommitted changes; they are not in this build"
fi

if ! dpkg-checkbuilddeps "$src/debian/control" >/dev/null 2>&1; then
    echo "# installing the build dependencies"
    DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -qq "$src" \
        >"$tmp/build-dep.log" 2>&1 || cat "$tmp/build-dep.log"
fi

# ------------------------------------------------------------------ build
t0=$(date +%s)
if (cd "$src" && dpkg-buildpackage -us -uc -b) >"$tmp/build.log" 2>&1; then
    ok "dpkg-buildpackage -us -uc -b ($(elapsed "$t0") s)"
else
    not_ok "dpkg-buildpackage -us -uc -b" "$(tail -n 40 "$tmp/build.log")"
    finish
fi
sed -n 's/^# \(TOTAL\|PASS\|FAIL\|ERROR\): */# dh_auto_test \1: /p' \
    "$tmp/build.log"
gw_deb=$(ls "$tmp"/asset-gateway_*.deb 2>/dev/null | head -n 1)
sb_deb=$(ls "$tmp"/connectly-sandbox_*.deb 2>/dev/null | head -n 1)
if [ -n "$gw_deb" ] && [ -n "$sb_deb" ]; then
    ok "built $(basename "$gw_deb") and $(basename "$sb_deb")"
else
    not_ok "built both .debs" "$(ls "$tmp")"
    finish
fi

# --------------------------------------------------------- static checks
lintian --fail-on error "$gw_deb" "$sb_deb" >"$tmp/lintian.out" 2>&1
rc=$?
grep -v '^running with root privileges' "$tmp/lintian.out" | sed 's/^/# lintian: /'
if [ "$rc" -eq 0 ] && ! grep -q '^E:' "$tmp/lintian.out"; then
    ok "lintian: no errors ($(grep -c '^W:' "$tmp/lintian.out") warnings)"
else
    not_ok "lintian: no errors" "$(grep '^E:' "$tmp/lintian.out")"
fi

mkdir -p "$tmp/deb"
dpkg-deb -x "$gw_deb" "$tmp/deb"
unit=$tmp/deb/lib/systemd/system/asset-gateway.service
[ -f "$unit" ] || unit=$tmp/deb/usr/lib/systemd/system/asset-gateway.service
systemd-analyze security --offline=true "$unit" >"$tmp/security.out" 2>&1
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' \
    "$tmp/security.out")
if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
    ok "systemd-analyze security --offline=true: $score (at most 2.0)"
else
    not_ok "systemd-analyze security: at most 2.0" \
        "$(grep -v '^✓' "$tmp/security.out")"
fi
grep -v '^✓' "$tmp/security.out" | sed 's/  */ /g; s/^/# /'

# -------------------------------------------------------- the base system
# The Debian mirror apt uses here (its first .../debian URI).
mirror=${AGW_DEBIAN_MIRROR:-}
[ -n "$mirror" ] || mirror=$(cat /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list 2>/dev/null | awk '$1 == "URIs:" || $1 == "deb" {
        for (i = 2; i <= NF; i++)
            if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit }
    }')
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
base=$cache/bookworm-minbase.tar.gz
root=$tmp/root
mkdir -p "$cache" "$root"
t0=$(date +%s)
if [ ! -s "$base" ]; then
    echo "# debootstrap --variant=minbase bookworm from $mirror"
    if debootstrap --variant=minbase bookworm "$tmp/base" "$mirror" \
        >"$tmp/debootstrap.log" 2>&1 &&
        chroot "$tmp/base" apt-get clean &&
        tar -C "$tmp/base" --numeric-owner -czf "$base.tmp" . &&
        mv "$base.tmp" "$base"; then
        ok "debootstrap --variant=minbase bookworm ($(elapsed "$t0") s)"
    else
        rm -f "$base.tmp"
        not_ok "debootstrap --variant=minbase bookworm" \
            "$(tail -n 20 "$tmp/debootstrap.log")"
        finish
    fi
    rm -rf --one-file-system "$tmp/base"
fi
if tar -C "$root" --numeric-owner -xzpf "$base"; then
    ok "fresh Debian 12 minbase root from $base"
else
    not_ok "unpacked $base"
    finish
fi
if mount_api; then
    ok "mounted /proc and /dev in the root"
else
    not_ok "mounted /proc and /dev in the root" "no mount permission?"
    finish
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
# No service may start in the root (redis-server's init script would).
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"

# ---------------------------------------------------------------- install
mkdir -p "$root/tmp/debs"
cp "$gw_deb" "$sb_deb" "$root/tmp/debs/"
t0=$(date +%s)
if in_root apt-get update -qq >"$tmp/install.log" 2>&1 &&
    in_root apt-get install -y -q --no-install-recommends \
        "/tmp/debs/$(basename "$gw_deb")" "/tmp/debs/$(basename "$sb_deb")" \
        >>"$tmp/install.log" 2>&1; then
    ok "apt-get install ./asset-gateway_*.deb ./connectly-sandbox_*.deb ($(elapsed "$t0") s)"
else
    not_ok "apt-get install of both .debs" "$(tail -n 30 "$tmp/install.log")"
    finish
fi

# ----------------------------------------------------- what it installed
pw=$(in_root getent passwd asset-gateway)
uid=$(echo "$pw" | cut -d: -f3)
gid=$(in_root getent group asset-gateway | cut -d: -f3)
if [ -n "$uid" ] && [ "$uid" -lt 1000 ] && [ -n "$gid" ] &&
    [ "$(echo "$pw" | cut -d: -f4)" = "$gid" ] &&
    [ "$(echo "$pw" | cut -d: -f6)" = /nonexistent ]; then
    ok "system user and group asset-gateway ($pw)"
else
    not_ok "system user and group asset-gateway" "passwd: $pw; gid: $gid"
fi
if [ -n "$uid" ]; then
    owned=$(find "$root" -xdev \( -uid "$uid" -o -gid "$gid" \) -print)
    if [ -z "$owned" ]; then
        ok "asset-gateway owns no file"
    else
        not_ok "asset-gateway owns no file" "$owned"
    fi
fi
for f in /usr/sbin/asset-gateway /usr/bin/connectly-sandbox \
    /usr/share/man/man8/asset-gateway.8.gz \
    /usr/share/man/man1/connectly-sandbox.1.gz \
    /usr/share/doc/asset-gateway/README.Debian \
    /etc/logrotate.d/asset-gateway; do
    check "installed $f" test -f "$root$f"
done
conf=/etc/asset-gateway/asset-gateway.conf
check "$conf is a conffile" \
    sh -c "chroot '$root' dpkg-query -W -f='\${Conffiles}' asset-gateway |
        grep -q '^ $conf '"
mode=$(stat -c '%U:%G %a' "$root$conf" 2>/dev/null)
if [ "$mode" = "root:root 644" ]; then
    ok "$conf is root:root 644"
else
    not_ok "$conf is root:root 644" "it is: $mode"
fi
check "$conf sets api_key_file = /etc/asset-gateway/api-key" \
    grep -qx 'api_key_file = /etc/asset-gateway/api-key' "$root$conf"
installed_unit=$root/lib/systemd/system/asset-gateway.service
[ -f "$installed_unit" ] ||
    installed_unit=$root/usr/lib/systemd/system/asset-gateway.service
for d in User=asset-gateway Group=asset-gateway \
    ConditionPathExists=/etc/asset-gateway/api-key \
    "ExecStart=/usr/sbin/asset-gateway -c $conf"; do
    check "unit: $d" grep -qx "$d" "$installed_unit"
done
check "unit enabled (multi-user.target.wants)" test -L \
    "$root/etc/systemd/system/multi-user.target.wants/asset-gateway.service"
# verify needs the binaries where the unit names them: point it at the root.
sed "s|/usr/sbin/asset-gateway|$root/usr/sbin/asset-gateway|g" \
    "$installed_unit" >"$tmp/asset-gateway.service"
out=$(systemd-analyze verify --man=no "$tmp/asset-gateway.service" 2>&1)
if [ $? -eq 0 ] && [ -z "$out" ]; then
    ok "systemd-analyze verify: no complaint"
else
    not_ok "systemd-analyze verify: no complaint" "$out"
fi

# ------------------------------------------------------- key, -t, a create
out=$(as_user asset-gateway -t -c "$conf" 2>&1)
if [ $? -ne 0 ] && echo "$out" | grep -q /etc/asset-gateway/api-key; then
    ok "before the key exists, -t fails naming it"
else
    not_ok "before the key exists, -t fails naming it" "$out"
fi
key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
in_root install -m 0640 -o root -g asset-gateway /dev/null \
    /etc/asset-gateway/api-key
printf '%s\n' "$key" | in_root sh -c 'cat > /etc/asset-gateway/api-key'
out=$(as_user asset-gateway -t -c "$conf" 2>&1)
if [ $? -eq 0 ] && echo "$out" | grep -q 'is valid'; then
    ok "asset-gateway -t as asset-gateway accepts the installed config"
else
    not_ok "asset-gateway -t as asset-gateway accepts the installed config" \
        "$out"
fi
printf '%s\n' "$out" | sed 's/^/# -t: /'

free_ports() { # two free loopback ports, "SANDBOX GATEWAY"
    python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])'
}
ports=$(free_ports)
sp=${ports% *} gp=${ports#* }
printf '%s\n' "$key" >"$root/tmp/sandbox-key"
in_root chown nobody:nogroup /tmp/sandbox-key
chmod 0600 "$root/tmp/sandbox-key"
# Started without a shell function in between, so that $! is the daemon
# itself (chroot, env and setpriv exec each other).
chroot "$root" env -i PATH=/usr/bin:/bin \
    setpriv --reuid=nobody --regid=nogroup --clear-groups \
    connectly-sandbox --listen "127.0.0.1:$sp" \
    --api-key-file /tmp/sandbox-key >"$tmp/sandbox.log" 2>&1 &
sb_pid=$!
sed -e "s|^listen = .*|listen = 127.0.0.1:$gp|" \
    -e "s|^base_url = .*|base_url = http://127.0.0.1:$sp|" \
    -e "s|^allow_private_sources = .*|allow_private_sources = yes|" \
    "$root$conf" >"$root/tmp/asset-gateway.conf"
chmod 0644 "$root/tmp/asset-gateway.conf"
chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/bin \
    setpriv --reuid=asset-gateway --regid=asset-gateway --init-groups \
    asset-gateway -c /tmp/asset-gateway.conf >"$tmp/gateway.log" 2>&1 &
gw_pid=$!

wait_for() { # wait_for URL: up to 10 s
    i=0
    while ! curl -fsS -o /dev/null "$1" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -gt 100 ] && return 1
        sleep 0.1
    done
}
if wait_for "http://127.0.0.1:$sp/samples/ping.png" &&
    wait_for "http://127.0.0.1:$gp/healthz"; then
    ok "connectly-sandbox and asset-gateway answer on 127.0.0.1:$sp, :$gp"
else
    not_ok "connectly-sandbox and asset-gateway answer" \
        "$(tail -n 20 "$tmp/sandbox.log" "$tmp/gateway.log")"
    finish
fi
run_uid=$(awk '/^Uid:/ { print $2 }' "/proc/$gw_pid/status" 2>/dev/null)
if [ -n "$uid" ] && [ "$run_uid" = "$uid" ]; then
    ok "the daemon runs as asset-gateway (uid $uid)"
else
    not_ok "the daemon runs as asset-gateway" "uid $run_uid, want $uid"
fi

create() { # create N: POST one create; headers in $tmp/hN, body in $tmp/bN
    curl -sS -o "$tmp/b$1" -D "$tmp/h$1" -m 20 -X POST \
        "http://127.0.0.1:$gp/v1/businesses/550e8400-e29b-41d4-a716-446655440000/assets" \
        -H 'Content-Type: application/json' \
        -d "{\"uri\":\"http://127.0.0.1:$sp/samples/product-photo.png\"}"
}
cache_of() { # the X-Cache of answer N, if it was a 2xx
    head -n 1 "$tmp/h$1" | grep -q '^HTTP/1.1 2' &&
        sed -n 's/^X-Cache: *\([A-Z]*\).*/\1/ip' "$tmp/h$1"
}
create 1
got=$(cache_of 1)
if [ "$got" = MISS ]; then
    ok "first create: $(head -n 1 "$tmp/h1" | tr -d '\r'), X-Cache: MISS"
else
    not_ok "first create: 2xx, X-Cache: MISS" "$(cat "$tmp/h1" "$tmp/b1")"
fi
create 2
got=$(cache_of 2)
if [ "$got" = HIT ] && cmp -s "$tmp/b1" "$tmp/b2"; then
    ok "same create again: X-Cache: HIT, same body"
else
    not_ok "same create again: X-Cache: HIT, same body" \
        "$(cat "$tmp/h2" "$tmp/b2")"
fi

stop_pid "$gw_pid"
rc=$?
gw_pid=""
if [ "$rc" -eq 0 ]; then
    ok "SIGTERM: the daemon drains and exits 0"
else
    not_ok "SIGTERM: the daemon exits 0" "$(tail -n 20 "$tmp/gateway.log")"
fi
stop_pid "$sb_pid"
sb_pid=""
rm -f "$root/tmp/asset-gateway.conf" "$root/tmp/sandbox-key"

# ------------------------------------------------- the unit, under systemd
# The packaged unit itself, sandboxing and all: systemd-nspawn boots the
# root and systemctl drives the unit through the operator's steps. A
# runtime drop-in turns a system call outside the unit's filter into
# SIGSYS (the shipped unit answers EPERM), so a call the filter blocks
# shows as a dead daemon instead of a quiet error.
in_ct() { # in_ct CMD...: runs CMD inside the booted root
    nsenter -t "$ct" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        LC_ALL=C.UTF-8 "$@"
}

boot_root() { # boots the root; sets boot_pid, ct (its init) and state
    systemd-nspawn -D "$root" --boot --register=no --keep-unit -q \
        --console=pipe >"$tmp/nspawn.log" 2>&1 &
    boot_pid=$!
    i=0 ct="" state=""
    # Up to 60 s for its systemd to come up and finish booting.
    while [ "$i" -lt 120 ] && kill -0 "$boot_pid" 2>/dev/null; do
        # The container's init is nspawn's child named systemd; a child
        # caught while nspawn still forks its way there exits at once,
        # so a PID that is gone is looked up again.
        [ -n "$ct" ] && [ -d "/proc/$ct" ] ||
            ct=$(pgrep -P "$boot_pid" -x systemd | head -n 1)
        [ -n "$ct" ] &&
            state=$(in_ct timeout 60 systemctl is-system-running --wait 2>&1)
        case $state in running | degraded) return 0 ;; esac
        sleep 0.5
        i=$((i + 1))
    done
    return 1
}

unit_test() {
    t0=$(date +%s)
    if in_root apt-get install -y -q --no-install-recommends systemd \
        systemd-sysv dbus >"$tmp/systemd.log" 2>&1; then
        ok "installed systemd in the root ($(elapsed "$t0") s)"
    else
        not_ok "installed systemd in the root" "$(tail -n 20 "$tmp/systemd.log")"
        return
    fi
    mv "$root/etc/asset-gateway/api-key" "$root/root/api-key.away"
    umount_api
    if boot_root; then
        ok "systemd-nspawn --boot: the root boots ($state)"
    else
        not_ok "systemd-nspawn --boot: the root boots" \
            "state: ${state:-}; $(tail -n 20 "$tmp/nspawn.log")"
        return
    fi

    st=$(in_ct systemctl status asset-gateway --no-pager 2>&1)
    if echo "$st" | grep -q 'start condition failed' &&
        echo "$st" | grep -q \
            'ConditionPathExists=/etc/asset-gateway/api-key was not met'; then
        ok "enabled, not started without the key; systemctl status says why"
    else
        not_ok "systemctl status names ConditionPathExists before the key" "$st"
    fi
    echo "$st" | head -n 5 | sed 's/^/# /'

    mv "$root/root/api-key.away" "$root/etc/asset-gateway/api-key"
    ports=$(free_ports)
    sp=${ports% *} gp=${ports#* }
    sed -i -e "s|^listen = .*|listen = 127.0.0.1:$gp|" \
        -e "s|^base_url = .*|base_url = http://127.0.0.1:$sp|" \
        -e "s|^allow_private_sources = .*|allow_private_sources = yes|" \
        "$root$conf"
    in_ct systemd-run -q --unit=agw-test-sandbox connectly-sandbox \
        --listen "127.0.0.1:$sp" --api-key-file /etc/asset-gateway/api-key
    in_ct sh -c 'mkdir -p /run/systemd/system/asset-gateway.service.d &&
        printf "[Service]\nSystemCallErrorNumber=kill\n" \
            >/run/systemd/system/asset-gateway.service.d/test.conf &&
        systemctl daemon-reload'
    if in_ct systemctl start asset-gateway &&
        wait_for "http://127.0.0.1:$sp/samples/ping.png" &&
        wait_for "http://127.0.0.1:$gp/healthz"; then
        ok "systemctl start asset-gateway: it serves"
    else
        not_ok "systemctl start asset-gateway: it serves" \
            "$(in_ct journalctl -u asset-gateway --no-pager -n 20 2>&1)"
        return
    fi
    out=$(in_ct systemd-analyze security --no-pager asset-gateway 2>&1)
    score=$(echo "$out" |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
        ok "systemd-analyze security asset-gateway (running): $score"
    else
        not_ok "systemd-analyze security asset-gateway (running): at most 2.0" \
            "$(echo "$out" | grep -v '^✓')"
    fi
    main=$(in_ct systemctl show -P MainPID asset-gateway)
    run_uid=$(in_ct awk '/^Uid:/ { print $2 }' "/proc/$main/status")
    if [ "$run_uid" = "$uid" ]; then
        ok "the unit runs it as asset-gateway (uid $uid)"
    else
        not_ok "the unit runs it as asset-gateway" "uid $run_uid, want $uid"
    fi
    create 3
    create 4
    if [ "$(cache_of 3)" = MISS ] && [ "$(cache_of 4)" = HIT ]; then
        ok "under the unit's sandbox: create MISS, then HIT"
    else
        not_ok "under the unit's sandbox: create MISS, then HIT" \
            "$(cat "$tmp/h3" "$tmp/b3" "$tmp/h4" "$tmp/b4")"
    fi
    if in_ct systemctl reload asset-gateway &&
        [ "$(in_ct systemctl show -P MainPID asset-gateway)" = "$main" ] &&
        in_ct systemctl is-active -q asset-gateway; then
        ok "systemctl reload: -t, then SIGHUP; same process, still active"
    else
        not_ok "systemctl reload" \
            "$(in_ct journalctl -u asset-gateway --no-pager -n 20 2>&1)"
    fi
    in_ct systemctl stop asset-gateway
    res=$(in_ct systemctl show -P Result asset-gateway)
    code=$(in_ct systemctl show -P ExecMainStatus asset-gateway)
    if [ "$res" = success ] && [ "$code" = 0 ]; then
        ok "systemctl stop: drained, exit status 0"
    else
        not_ok "systemctl stop: drained, exit status 0" \
            "Result=$res ExecMainStatus=$code; $(in_ct journalctl \
                -u asset-gateway --no-pager -n 20 2>&1)"
    fi
    in_ct journalctl -u asset-gateway --no-pager -o cat 2>&1 |
        grep -i 'SIGSYS\|killed\|core' | sed 's/^/# journal: /'
}

if command -v systemd-nspawn >/dev/null 2>&1; then
    unit_test
    [ -n "$boot_pid" ] && stop_pid "$boot_pid" >/dev/null 2>&1
    boot_pid=""
    [ -f "$root/root/api-key.away" ] &&
        mv "$root/root/api-key.away" "$root/etc/asset-gateway/api-key"
    mountpoint -q "$root/proc" || mount_api ||
        not_ok "mounted /proc and /dev in the root again"
else
    echo "# systemd-nspawn not found: the unit was not started"
fi

# ------------------------------------------------------------------ purge
if in_root apt-get purge -y -q asset-gateway connectly-sandbox \
    >"$tmp/purge.log" 2>&1; then
    ok "apt-get purge asset-gateway connectly-sandbox"
else
    not_ok "apt-get purge of both" "$(tail -n 30 "$tmp/purge.log")"
fi
for f in /usr/sbin/asset-gateway /usr/bin/connectly-sandbox "$conf" \
    /lib/systemd/system/asset-gateway.service \
    /etc/systemd/system/multi-user.target.wants/asset-gateway.service \
    /usr/share/doc/asset-gateway /var/log/asset-gateway \
    /etc/logrotate.d/asset-gateway; do
    check "purged: $f is gone" test ! -e "$root$f" -a ! -L "$root$f"
done
left=$(ls -A "$root/etc/asset-gateway" 2>&1)
if [ "$left" = api-key ]; then
    ok "purged: /etc/asset-gateway holds only the operator's api-key"
else
    not_ok "purged: /etc/asset-gateway holds only the operator's api-key" \
        "$left"
fi
check "purged: the user asset-gateway stays" in_root getent passwd asset-gateway
finish
