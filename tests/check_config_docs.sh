#!/bin/sh
# check_config_docs.sh - every key the binary knows (its --sample-config)
# must be in conf/asset-gateway.conf under its section and documented in
# the README's part for that section: from its "[section]" line to the next
# "[...]" line or heading, as `key` followed by " (" (its default) or " —"
# (its meaning); a bare word would not do, `rate` appears everywhere.
# Prints TAP; failures are "not ok" lines, not the exit status.

builddir=${AGW_BUILDDIR:-.}
srcdir=${AGW_SRCDIR:-.}
bin=$builddir/asset-gateway
conf=$srcdir/conf/asset-gateway.conf
readme=$srcdir/README

# "section key" for every `key =` or `# key =` line under a [section].
keys_of() {
    awk '
        /^\[[A-Za-z0-9_]+\]/ { s = substr($0, 2, index($0, "]") - 2); next }
        /^#? *[A-Za-z0-9_]+ *=/ && s != "" {
            k = $0
            sub(/^#? */, "", k)
            sub(/ *=.*/, "", k)
            print s, k
        }
    '
}

if ! sample=$("$bin" --sample-config); then
    echo "Bail out! cannot run $bin --sample-config"
    exit 1
fi
want=$(printf '%s\n' "$sample" | keys_of)
if [ -z "$want" ]; then
    echo "Bail out! $bin --sample-config printed no keys"
    exit 1
fi
have=$(keys_of <"$conf" 2>/dev/null)

# readme_part SECTION: the README's lines from "[SECTION]" up to the next
# "[...]" line, "#" heading or "---"/"===" underline.
readme_part() {
    awk -v want="[$1]" '
        $0 == want { on = 1; next }
        on && (/^\[[A-Za-z0-9_]+\]$/ || /^#/ || /^(-+|=+)$/) { exit }
        on { print }
    ' "$readme" 2>/dev/null
}

n=0
report() { # report OK DESCRIPTION [DIAGNOSTIC]
    n=$((n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"
        [ -n "${3:-}" ] && echo "# $3"
    fi
}

[ -r "$conf" ]
report $? "conf/asset-gateway.conf exists" "not readable: $conf"
[ "$sample" = "$(cat "$conf" 2>/dev/null)" ]
report $? "conf/asset-gateway.conf is the --sample-config output" \
    "regenerate it: asset-gateway --sample-config > conf/asset-gateway.conf"
[ -r "$readme" ]
report $? "README exists" "not readable: $readme"

while read -r section key; do
    printf '%s\n' "$have" | grep -qxF "$section $key"
    report $? "conf has [$section] $key"
    readme_part "$section" | grep -qE "\`$key\` (\(|—)"
    report $? "README documents [$section] $key" \
        "no \`$key\` ( or \`$key\` — under [$section] in the README"
done <<EOF
$want
EOF

echo "1..$n"
exit 0
