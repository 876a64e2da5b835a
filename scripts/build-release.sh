#!/usr/bin/env bash
# Release build of dac: one static x86_64 Linux executable that runs from a USB stick or an empty
# chroot on the examined host, with no shared library of that host involved.
#
# Reproducible: paths are remapped (the source tree, cargo's and rustup's homes, the target dir),
# SOURCE_DATE_EPOCH is the commit time, and the profile (Cargo.toml) uses codegen-units=1 and
# strips symbols. Output: dist/dac, its SHA-256 and size. Fails if it is not static or >= 5 MB.
# Honours CARGO_TARGET_DIR (scripts/check-reproducible.sh builds twice in different places).
set -Eeuo pipefail
trap 'echo "[build-release] ERROR: line $LINENO: \"$BASH_COMMAND\" failed (status $?)" >&2' ERR
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
TARGET=x86_64-unknown-linux-gnu
MAX_BYTES=5000000

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || true)
    # A tree without commits has no commit time; a fixed date keeps the build reproducible.
    [ -n "$SOURCE_DATE_EPOCH" ] || SOURCE_DATE_EPOCH=1700000000
fi
export SOURCE_DATE_EPOCH

CARGO_HOME_DIR=${CARGO_HOME:-$HOME/.cargo}
RUSTUP_HOME_DIR=${RUSTUP_HOME:-$HOME/.rustup}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "$TARGET_DIR"
TARGET_DIR=$(cd "$TARGET_DIR" && pwd -P)

# rustc applies the last matching --remap-path-prefix, so the more specific target dir (often
# inside the source tree) comes after the source tree. CARGO_ENCODED_RUSTFLAGS (0x1f-separated)
# keeps paths with spaces intact; it applies to the target only, not to build scripts.
flags=(
    -C target-feature=+crt-static
    "--remap-path-prefix=$ROOT=/build"
    "--remap-path-prefix=$CARGO_HOME_DIR=/cargo"
    "--remap-path-prefix=$RUSTUP_HOME_DIR=/rustup"
    "--remap-path-prefix=$TARGET_DIR=/target"
)
CARGO_ENCODED_RUSTFLAGS=$(IFS=$'\x1f'; echo "${flags[*]}")
export CARGO_ENCODED_RUSTFLAGS
unset RUSTFLAGS
# Same locale and time zone everywhere; build scripts must not see the builder's.
export LC_ALL=C TZ=UTC

echo "== cargo build --release --locked --target $TARGET (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH, target dir $TARGET_DIR)"
echo "   rustflags: ${flags[*]}"
cargo --version
rustc --version
cargo build --release --locked --target "$TARGET"

bin=$TARGET_DIR/$TARGET/release/dac
[ -f "$bin" ] || { echo "build-release: $bin was not produced"; exit 1; }
mkdir -p dist
cp "$bin" dist/dac.tmp
mv -f dist/dac.tmp dist/dac

size=$(stat -c %s dist/dac)
sha=$(sha256sum dist/dac | awk '{print $1}')
ldd_out=$(ldd dist/dac 2>&1 || true)
headers=$(LC_ALL=C readelf -lW dist/dac 2>&1 || true)
dynamic=$(LC_ALL=C readelf -dW dist/dac 2>&1 || true)
echo "== dist/dac"
echo "sha256: $sha"
echo "size:   $size bytes"
echo "ldd:    $ldd_out"
command -v file >/dev/null 2>&1 && echo "file:   $(file -b dist/dac)"

fail=0
if grep -q 'Requesting program interpreter' <<<"$headers" || grep -q '(NEEDED)' <<<"$dynamic"; then
    echo "FAIL: dist/dac is dynamically linked:"
    grep -E 'interpreter|NEEDED' <<<"$headers$dynamic" || true
    fail=1
fi
if ! grep -qE 'statically linked|not a dynamic executable' <<<"$ldd_out"; then
    echo "FAIL: ldd does not call dist/dac static"
    fail=1
fi
if [ "$size" -ge "$MAX_BYTES" ]; then
    echo "FAIL: dist/dac is $size bytes, the limit is < $MAX_BYTES"
    fail=1
fi
[ "$fail" = 0 ] || exit 1
echo "$sha  dac" >dist/dac.sha256
echo "build-release: OK"
