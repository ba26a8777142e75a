#!/bin/sh
# test_install.sh - `make install DESTDIR=...` from the build dir puts both
# programs, the sample config, the systemd unit, the man pages and the
# dashboard in place; the installed files work; `make uninstall` removes
# them again. Prints TAP; failures are "not ok" lines, not the exit status.

builddir=${AGW_BUILDDIR:-.}
n=0
failed=0

ok() {
    n=$((n + 1))
    echo "ok $n - $1"
}

not_ok() {
    n=$((n + 1))
    failed=$((failed + 1))
    echo "not ok $n - $1"
    if [ -n "$2" ]; then
        printf '%s\n' "$2" | sed 's/^/# /'
    fi
}

check() { # check DESC CMD...: ok when CMD succeeds
    desc=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "$desc"; else not_ok "$desc"; fi
}

finish() {
    rm -rf "$tmp"
    echo "1..$n"
    [ "$failed" -eq 0 ] || echo "# $failed of $n checks failed"
    exit 0
}

if [ ! -f "$builddir/Makefile" ]; then
    echo "Bail out! no Makefile in $builddir (set AGW_BUILDDIR)"
    exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/agw-install-XXXXXX") || {
    echo "Bail out! mktemp failed"
    exit 1
}
dest=$tmp/root
trap 'rm -rf "$tmp"' EXIT INT TERM

# A make run from inside `make check` must not join its job server.
if env -u MAKEFLAGS -u MFLAGS make -C "$builddir" install DESTDIR="$dest" \
    >"$tmp/install.log" 2>&1; then
    ok "make install DESTDIR=... exits 0"
else
    not_ok "make install DESTDIR=... exits 0" "$(tail -20 "$tmp/install.log")"
    finish
fi

# The prefix is whatever configure chose: find each file by its tail.
find_one() {
    find "$dest" -path "*/$1" -type f 2>/dev/null | head -n 1
}

for f in bin/asset-gateway bin/connectly-sandbox etc/asset-gateway.conf \
    lib/systemd/system/asset-gateway.service \
    share/man/man8/asset-gateway.8 share/man/man1/connectly-sandbox.1 \
    share/asset-gateway/grafana-dashboard.json; do
    p=$(find_one "$f")
    if [ -n "$p" ]; then
        ok "installed: $f (${p#"$dest"})"
    else
        not_ok "installed: $f" "$(cd "$dest" && find . -type f)"
    fi
done

gw=$(find_one bin/asset-gateway)
sbx=$(find_one bin/connectly-sandbox)
conf=$(find_one etc/asset-gateway.conf)
unit=$(find_one lib/systemd/system/asset-gateway.service)
man8=$(find_one share/man/man8/asset-gateway.8)
man1=$(find_one share/man/man1/connectly-sandbox.1)
dash=$(find_one share/asset-gateway/grafana-dashboard.json)

if [ -n "$gw" ] && [ -n "$sbx" ]; then
    check "both programs are executable" test -x "$gw" -a -x "$sbx"
    v=$("$gw" -V 2>/dev/null)
    bv=$("$builddir/asset-gateway" -V 2>/dev/null)
    if [ -n "$v" ] && [ "$v" = "$bv" ]; then
        ok "installed asset-gateway -V: $v"
    else
        not_ok "installed asset-gateway -V matches the build" \
            "got '$v', build '$bv'"
    fi
    check "installed connectly-sandbox -h exits 0" "$sbx" -h
fi

if [ -n "$gw" ] && [ -n "$conf" ]; then
    if ASSET_GATEWAY_API_KEY=install-test-key "$gw" -t -c "$conf" \
        >"$tmp/t.out" 2>&1; then
        ok "installed sample config passes -t (key from the environment)"
    else
        not_ok "installed sample config passes -t" "$(cat "$tmp/t.out")"
    fi
    if sample=$("$gw" --sample-config 2>/dev/null); then
        missing=$(printf '%s\n' "$sample" |
            sed -n 's/^#\{0,1\} *\([a-z_]*\) *=.*/\1/p' | sort -u |
            while read -r k; do
                grep -Eq "^#? *$k *=" "$conf" || echo "$k"
            done)
        if [ -z "$missing" ]; then
            ok "installed config names every key of --sample-config"
        else
            not_ok "installed config names every key" "missing: $missing"
        fi
    fi
fi

if [ -n "$unit" ]; then
    if grep -q '@[a-z]*@' "$unit"; then
        not_ok "unit: no unsubstituted @...@" "$(grep -n '@[a-z]*@' "$unit")"
    else
        ok "unit: no unsubstituted @...@"
    fi
    # bindir of the installed tree, as the unit must name it
    bindir=$(dirname "${gw#"$dest"}")
    sysconfdir=$(dirname "${conf#"$dest"}")
    exec_start="$bindir/asset-gateway -c $sysconfdir/asset-gateway.conf"
    check "unit: ExecStart runs $exec_start" \
        grep -Fxq "ExecStart=$exec_start" "$unit"
    check "unit: ExecReload sends SIGHUP" \
        grep -Eq '^ExecReload=.*(kill -HUP|kill -s HUP|SIGHUP)' "$unit"
    for d in DynamicUser=yes NoNewPrivileges=yes ProtectSystem=strict \
        ProtectHome=yes PrivateTmp=yes; do
        check "unit: $d" grep -q "^$d\$" "$unit"
    done
    if ! grep -q '^KillSignal=' "$unit" ||
        grep -q '^KillSignal=SIGTERM$' "$unit"; then
        ok "unit: KillSignal=SIGTERM (drain) or the default"
    else
        not_ok "unit: KillSignal=SIGTERM (drain) or the default" \
            "$(grep '^KillSignal=' "$unit")"
    fi
    check "unit: [Install] WantedBy=multi-user.target" \
        grep -q '^WantedBy=multi-user.target$' "$unit"
fi

if command -v groff >/dev/null 2>&1; then
    for m in "$man8" "$man1"; do
        [ -n "$m" ] || continue
        w=$(groff -man -Tutf8 -ww -z "$m" 2>&1)
        if [ -z "$w" ]; then
            ok "man page $(basename "$m") formats without warnings"
        else
            not_ok "man page $(basename "$m") formats without warnings" "$w"
        fi
    done
else
    echo "# groff not found: man pages not formatted"
fi
[ -n "$man8" ] && check "asset-gateway.8 is section 8 (.TH ... 8)" \
    grep -Eq '^\.TH +"?ASSET-GATEWAY"? +"?8"?' "$man8"
[ -n "$man1" ] && check "connectly-sandbox.1 is section 1 (.TH ... 1)" \
    grep -Eiq '^\.TH +"?CONNECTLY-SANDBOX"? +"?1"?' "$man1"

if [ -n "$dash" ] && command -v python3 >/dev/null 2>&1; then
    check "dashboard is valid JSON" python3 -c \
        'import json,sys; json.load(open(sys.argv[1]))' "$dash"
fi

if env -u MAKEFLAGS -u MFLAGS make -C "$builddir" uninstall DESTDIR="$dest" \
    >"$tmp/uninstall.log" 2>&1; then
    left=$(find "$dest" -type f)
    if [ -z "$left" ]; then
        ok "make uninstall removes every installed file"
    else
        not_ok "make uninstall removes every installed file" "$left"
    fi
else
    not_ok "make uninstall exits 0" "$(tail -20 "$tmp/uninstall.log")"
fi

finish
