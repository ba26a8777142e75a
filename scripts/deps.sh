#!/bin/sh
# Installs what building and testing asset-gateway needs, from Debian's
# packages, unless it is all there already. Run as root (or with sudo).
set -eu

PACKAGES="build-essential autoconf automake pkg-config libevent-dev
libssl-dev libjson-c-dev libhiredis-dev libinih-dev libcmocka-dev
redis-server curl python3 openssl ca-certificates"
# chromium (and a font for its screenshots): the status page's browser test.
# redis-sentinel: test_sentinel.py's sentinels (SPEC §10).
[ "${1:-}" = "--test" ] && PACKAGES="$PACKAGES redis-sentinel valgrind clang-format chromium fonts-dejavu-core"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
