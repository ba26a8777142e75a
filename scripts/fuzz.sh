#!/bin/sh
# Builds the libFuzzer targets of tests/fuzz/ (clang, ASan + UBSan) and runs
# each for a bounded time; a crash, hang or leak fails it and its input is
# kept. Ends with "N passed, N failed", one count per target.
#
# Usage: scripts/fuzz.sh [BUILD_DIR]        (default: build/fuzz in the tree)
#   FUZZ_SECONDS=60   time per target
#   FUZZ_TARGETS="fuzz_auth fuzz_config"   a subset (default: all)
# Reproduce a crash: BUILD_DIR/fuzz_x BUILD_DIR/artifacts/fuzz_x/crash-...
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build/fuzz}
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"fuzz_request fuzz_config fuzz_auth fuzz_upstream_response"}
passed=0
failed=0

install_missing() {
    missing=""
    for p in clang libclang-rt-14-dev pkg-config libevent-dev libssl-dev \
        libjson-c-dev libinih-dev libhiredis-dev; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing:$missing"
    # shellcheck disable=SC2086 # one word per package
    $SUDO apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
            --no-install-recommends $missing >/dev/null
}

PKGS="libevent libevent_openssl openssl json-c inih hiredis"
CC_FUZZ=${CC_FUZZ:-clang}
# -fno-sanitize-recover: a UBSan finding must stop the run, as a crash.
FLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer
-fno-sanitize-recover=undefined -Wall -Wextra -Wno-unused-parameter"

# Every module but main.c, instrumented (coverage, ASan, UBSan), in one
# archive: each target links just the modules it reaches, so the list
# never needs updating when a module grows a dependency.
build_lib() {
    mkdir -p "$out/obj" || return 1
    rm -f "$out/libagw_fuzz.a" "$out"/obj/*.o
    for c in "$top"/src/*.c; do
        n=$(basename "$c" .c)
        [ "$n" = main ] && continue
        # shellcheck disable=SC2086,SC2046 # the lists must split into words
        $CC_FUZZ $FLAGS -fsanitize=fuzzer-no-link,address,undefined \
            -I"$top/src" $(pkg-config --cflags $PKGS) -c "$c" \
            -o "$out/obj/$n.o" ||
            echo "warning: src/$n.c does not build; targets using it fail to link"
    done
    ar rcs "$out/libagw_fuzz.a" "$out"/obj/*.o
}

build() { # build TARGET: BUILD_DIR/TARGET
    # shellcheck disable=SC2086,SC2046
    $CC_FUZZ $FLAGS -fsanitize=fuzzer,address,undefined -I"$top/src" \
        $(pkg-config --cflags $PKGS) "$top/tests/fuzz/$1.c" \
        "$out/libagw_fuzz.a" $(pkg-config --libs $PKGS) -lm -o "$out/$1"
}

run() { # run TARGET: fuzzes for $seconds; 0 when nothing was found
    t=$1
    art="$out/artifacts/$t"
    corpus="$out/corpus/$t"
    dict="$top/tests/fuzz/$t.dict"
    rm -rf "$art"
    mkdir -p "$art" "$corpus"
    set -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$art/"
    [ -f "$dict" ] && set -- "$@" -dict="$dict"
    # New inputs go to the first directory, never to the seeds in tests/.
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
        UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        "$out/$t" "$@" "$corpus" "$top/tests/fuzz/corpus/$t" \
        >"$out/$t.log" 2>&1
}

report() { # report TARGET RC
    t=$1 rc=$2
    runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 executions in \2 s/p' \
        "$out/$t.log" | tail -n 1)
    # A crash ends the run before libFuzzer's "Done" line.
    [ -n "$runs" ] || runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\)/\1 executions/p' \
        "$out/$t.log" | tail -n 1)
    found=$(find "$out/artifacts/$t" -type f 2>/dev/null)
    if [ "$rc" -eq 0 ] && [ -z "$found" ] && grep -q '^Done [0-9]* runs' "$out/$t.log"; then
        echo "ok - $t: $runs, nothing found"
        passed=$((passed + 1))
        return
    fi
    echo "not ok - $t: exit $rc${runs:+, $runs}"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|fuzz_[a-z_]*: )' \
        "$out/$t.log" | head -n 10
    tail -n 30 "$out/$t.log"
    for f in $found; do
        echo "kept input: $f"
    done
    failed=$((failed + 1))
}

install_missing || exit 2
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
echo "=== instrumented modules"
build_lib || exit 2
for t in $targets; do
    if [ ! -f "$top/tests/fuzz/$t.c" ]; then
        echo "not ok - $t: no such target"
        failed=$((failed + 1))
        continue
    fi
    echo "=== $t: build"
    if ! build "$t"; then
        echo "not ok - $t: build failed"
        failed=$((failed + 1))
        continue
    fi
    echo "=== $t: fuzz for $seconds s"
    run "$t"
    report "$t" $?
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
