#!/bin/sh
# The whole test suite: unit and integration tests (`make check`) on a plain
# build and on an AddressSanitizer+UBSan build, `make format-check`, the
# soak test for SOAK_SECONDS (45) on the plain build, the unit tests under
# valgrind, each libFuzzer target for FUZZ_SECONDS (30), and the Debian
# packages (scripts/package-test.sh). Installs what it needs first. Ends
# with "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
out=${AGW_TEST_DIR:-$top/build}
passed=0
failed=0

sh "$top/scripts/deps.sh" --test || exit 2

count() { # count LABEL TEST-SUITE-LOG: adds its PASS and FAIL+ERROR+XPASS
    p=$(sed -n 's/^# PASS: *//p' "$2" | head -n1)
    f=$(sed -n 's/^# \(FAIL\|ERROR\|XPASS\): *//p' "$2" | awk '{s+=$1} END {print s+0}')
    echo "$1: ${p:-0} passed, ${f:-0} failed"
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
}

run_check() { # run_check LABEL DIR [configure args]
    label=$1 dir=$2
    shift 2
    echo "=== $label: build"
    if ! sh "$top/scripts/build.sh" "$dir" "$@"; then
        echo "$label: build failed"
        failed=$((failed + 1))
        return
    fi
    echo "=== $label: make check"
    make -C "$dir" -s check >"$dir/check.out" 2>&1
    grep -E '^(PASS|FAIL|ERROR|XPASS|SKIP|# )' "$dir/check.out" | grep -v '^# \(XFAIL\|SKIP\)' || true
    if [ -f "$dir/test-suite.log" ]; then
        grep -A40 -E '^(FAIL|ERROR):' "$dir/test-suite.log" | head -n 200
        count "$label" "$dir/test-suite.log"
    else
        tail -n 40 "$dir/check.out"
        failed=$((failed + 1))
    fi
}

run_valgrind() { # unit tests of the plain build under memcheck
    echo "=== valgrind: unit tests"
    for t in "$out/plain"/tests/unit/test_*; do
        [ -x "$t" ] || continue
        if CMOCKA_MESSAGE_OUTPUT=TAP valgrind -q --error-exitcode=99 \
            --leak-check=full --errors-for-leak-kinds=definite \
            "$t" >"$t.valgrind.out" 2>&1; then
            echo "ok - valgrind $(basename "$t")"
            passed=$((passed + 1))
        else
            echo "not ok - valgrind $(basename "$t")"
            tail -n 30 "$t.valgrind.out"
            failed=$((failed + 1))
        fi
    done
}

add_summary() { # adds FILE's closing "N passed, N failed" (none: 1 failed)
    line=$(tail -n 1 "$1")
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
    f=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
    if [ -z "$p" ]; then
        tail -n 40 "$1"
        failed=$((failed + 1))
        return
    fi
    passed=$((passed + p))
    failed=$((failed + f))
}

run_fuzz() { # scripts/fuzz.sh ends with its own "N passed, N failed"
    echo "=== fuzz: ${FUZZ_SECONDS:-30} s per target"
    FUZZ_SECONDS=${FUZZ_SECONDS:-30} sh "$top/scripts/fuzz.sh" "$out/fuzz" \
        >"$out/fuzz.out" 2>&1
    grep -E '^(ok|not ok|kept input)' "$out/fuzz.out" || tail -n 40 "$out/fuzz.out"
    add_summary "$out/fuzz.out"
}

run_soak() { # tests/soak/soak.py prints its report and "N passed, N failed"
    echo "=== soak: ${SOAK_SECONDS:-45} s on the plain build"
    AGW_BUILDDIR="$out/plain" AGW_SRCDIR="$top" PYTHONDONTWRITEBYTECODE=1 \
        python3 "$top/tests/soak/soak.py" --seconds "${SOAK_SECONDS:-45}" \
        >"$out/soak.out" 2>&1
    cat "$out/soak.out"
    add_summary "$out/soak.out"
}

run_package() { # Debian packages: scripts/package-test.sh, when it can build
    if ! command -v dpkg-buildpackage >/dev/null 2>&1; then
        echo "=== package: no dpkg-buildpackage, skipped"
        return
    fi
    echo "=== package: build, lintian, install into Debian 12 minbase, purge"
    sh "$top/scripts/package-test.sh" "$out/package" >"$out/package.out" 2>&1
    cat "$out/package.out"
    add_summary "$out/package.out"
}

run_format() { # the .clang-format style, checked like any other test
    echo "=== format: make format-check"
    if make -C "$out/plain" -s format-check >"$out/format.out" 2>&1; then
        echo "ok - make format-check"
        passed=$((passed + 1))
    else
        echo "not ok - make format-check ('make format' fixes it)"
        head -n 40 "$out/format.out"
        failed=$((failed + 1))
    fi
}

start=$(date +%s)
phase() { # phase NAME: prints how long the suite has run, then runs NAME
    echo "--- at $(($(date +%s) - start)) s: $1"
    "$@"
}

phase run_check plain "$out/plain"
phase run_format
phase run_soak
phase run_check sanitizers "$out/asan" --enable-sanitizers
phase run_valgrind
phase run_fuzz
phase run_package
echo "--- at $(($(date +%s) - start)) s: done"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
