#!/usr/bin/env bash
# Reproducible build check: the committed state (HEAD) is cloned into two temporary directories
# of different names and depths, each is built with scripts/build-release.sh into its own target
# directory, and the two executables must be identical byte for byte. An examiner can then
# rebuild the release from the tagged source and compare hashes.
# Uncommitted changes are not part of the check (a warning says so).
set -Eeuo pipefail
trap 'echo "[check-reproducible] ERROR: line $LINENO: \"$BASH_COMMAND\" failed (status $?)" >&2' ERR
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)

git -C "$ROOT" rev-parse --verify -q HEAD >/dev/null || { echo "check-reproducible: $ROOT has no commit to build"; exit 1; }
head=$(git -C "$ROOT" rev-parse HEAD)
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    echo "check-reproducible: WARNING: uncommitted changes are not checked; building commit $head"
fi

WORK=$(mktemp -d /tmp/dac-repro.XXXXXX)
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
A=$WORK/a
B=$WORK/second-clone/of/the/source
mkdir -p "$(dirname "$B")"
git clone -q --no-hardlinks "$ROOT" "$A"
git clone -q --no-hardlinks "$ROOT" "$B"
git -C "$A" checkout -q "$head"
git -C "$B" checkout -q "$head"

# Each build uses its own target dir (nothing shared but cargo's registry cache), and the two
# differ in path length too, so an absolute path leaking into the binary shows.
build() {
    local dir=$1 target=$2 log=$3
    echo "== building $head in $dir (CARGO_TARGET_DIR=$target)"
    if ! (cd "$dir" && CARGO_TARGET_DIR=$target scripts/build-release.sh) >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "check-reproducible: build in $dir failed"
        exit 1
    fi
    grep -E '^(sha256|size):' "$log"
}
build "$A" "$WORK/t1" "$WORK/a.log"
build "$B" "$WORK/target-number-two" "$WORK/b.log"

sa=$(sha256sum "$A/dist/dac" | awk '{print $1}')
sb=$(sha256sum "$B/dist/dac" | awk '{print $1}')
echo "clone 1: $sa"
echo "clone 2: $sb"
if [ "$sa" != "$sb" ]; then
    echo "check-reproducible: FAILED: the two builds differ"
    cmp -l "$A/dist/dac" "$B/dist/dac" | head -n 20 || true
    echo "differing bytes: $(cmp -l "$A/dist/dac" "$B/dist/dac" | wc -l)"
    # Paths of the build machine are the usual cause.
    strings -n 8 "$A/dist/dac" | grep -E "$WORK|/root/|/home/" | head -n 10 || true
    mkdir -p "$ROOT/target/repro-diff"
    cp "$A/dist/dac" "$ROOT/target/repro-diff/dac.1"
    cp "$B/dist/dac" "$ROOT/target/repro-diff/dac.2"
    echo "both binaries kept in target/repro-diff/"
    exit 1
fi
echo "check-reproducible: OK ($sa)"
