#!/usr/bin/env bash
# The dependency policy: a forensic tool's runtime code must stay small enough to audit.
#  - direct runtime dependencies only from ALLOWED;
#  - none of FORBIDDEN anywhere in the runtime graph (a second crypto or TLS stack, C OpenSSL);
#  - no dev-dependencies at all (tests use the same crates as the tool).
# Prints the runtime graph and its size.
set -Eeuo pipefail
trap 'echo "[check-deps] ERROR: line $LINENO: \"$BASH_COMMAND\" failed (status $?)" >&2' ERR
cd "$(dirname "$0")/.."

ALLOWED="hyper hyper-util http-body-util tokio serde_json sha2 rustls tokio-rustls pico-args ring"
FORBIDDEN="aws-lc-rs aws-lc-sys openssl openssl-sys native-tls reqwest"
TARGET=x86_64-unknown-linux-gnu
fail=0
allowed() { case " $ALLOWED " in *" $1 "*) return 0 ;; esac; return 1; }

graph=$(cargo tree --locked -e normal --target "$TARGET" --prefix none)
echo "== runtime dependency graph (cargo tree -e normal --target $TARGET) =="
echo "$graph"

crates=$(awk '{print $1 " " $2}' <<<"$graph" | sort -u)
echo "== runtime graph size: $(wc -l <<<"$crates") distinct crate versions, $(awk '{print $1}' <<<"$crates" | sort -u | wc -l) distinct crates (dac included) =="

meta=$(cargo metadata --locked --no-deps --format-version 1)
root=$(cargo tree --locked -e normal --target "$TARGET" --prefix none --depth 0 | awk '{print $1}')
# name<TAB>kind for every dependency declared by the root package (kind: normal, dev or build).
deps=$(python3 -c '
import json, sys
meta = json.load(sys.stdin)
root = sys.argv[1]
for p in meta["packages"]:
    if p["name"] != root:
        continue
    for d in p["dependencies"]:
        print("%s\t%s\t%s" % (d.get("rename") or d["name"], d["kind"] or "normal", d.get("target") or "all"))
' "$root" <<<"$meta")

echo "== declared dependencies of $root =="
echo "$deps"

while IFS=$'\t' read -r name kind target; do
    [ -n "$name" ] || continue
    case "$kind" in
    normal)
        if ! allowed "$name"; then
            echo "FAIL: direct runtime dependency '$name' (target $target) is not in the allowed list: $ALLOWED"
            fail=1
        fi
        ;;
    dev)
        echo "FAIL: dev-dependency '$name': [dev-dependencies] must stay empty"
        fail=1
        ;;
    esac
done <<<"$deps"

# The same check on the resolved graph, which also sees renamed or target-specific entries.
direct=$(cargo tree --locked -e normal --target "$TARGET" --prefix none --depth 1 | tail -n +2 | awk '{print $1}' | sort -u)
for name in $direct; do
    if ! allowed "$name"; then
        echo "FAIL: crate '$name' is a direct runtime dependency and is not allowed"
        fail=1
    fi
done

names=$(awk '{print $1}' <<<"$crates" | sort -u)
for bad in $FORBIDDEN; do
    if grep -qx -- "$bad" <<<"$names"; then
        echo "FAIL: forbidden crate '$bad' is in the runtime graph:"
        cargo tree --locked -e normal --target "$TARGET" -i "$bad" || true
        fail=1
    fi
done

# Belt and braces: a [dev-dependencies] table with entries in the manifest text.
if awk '/^\[(target\..*\.)?dev-dependencies\]/{sect=1; next} /^\[/{sect=0} sect && /^[[:space:]]*[A-Za-z0-9_-]+[[:space:]]*=/{found=1} END{exit !found}' Cargo.toml; then
    echo "FAIL: Cargo.toml has entries under [dev-dependencies]"
    fail=1
fi
if grep -qE '^\[(target\..*\.)?dev-dependencies\.' Cargo.toml; then
    echo "FAIL: Cargo.toml has a [dev-dependencies.<crate>] table"
    fail=1
fi

if [ "$fail" != 0 ]; then
    echo "check-deps: FAILED"
    exit 1
fi
echo "check-deps: OK (direct runtime dependencies: $(tr '\n' ' ' <<<"$direct"))"
