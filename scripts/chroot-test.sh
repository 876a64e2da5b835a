#!/usr/bin/env bash
# dist/dac alone in an empty root: no /etc, /dev, /proc, /lib, no shell. This is how it runs
# from removable media on a compromised host, where nothing of that host should be trusted or
# loaded. Two collections are made inside the chroot:
#   1. over the Docker socket: the engines' socket directory is bind-mounted at /eng;
#   2. over TLS to tcp://127.0.0.1:2376, with the test CA and client certificate copied in
#      (the chroot shares the host's network namespace, so loopback is reachable).
# Each must exit 0, or 1 only when its output says the acquisition was partial, and leave a
# bundle with bagit.txt; `dac verify` must then accept the bundle.
# Needs root (chroot, mount) and the engines (scripts/engines.sh start, done here if needed).
set -Eeuo pipefail
trap 'echo "[chroot-test] ERROR: line $LINENO: \"$BASH_COMMAND\" failed (status $?)" >&2' ERR
cd "$(dirname "$0")/.."

[ -x dist/dac ] || { echo "chroot-test: dist/dac missing: run scripts/build-release.sh first"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "chroot-test: needs root"; exit 1; }

scripts/engines.sh start
eval "$(scripts/engines.sh env)"

CHROOT=$(command -v chroot || echo /usr/sbin/chroot)
DIR=$(mktemp -d /tmp/dac-chroot.XXXXXX)
MNT=$DIR/eng
cleanup() {
    local rc=$?
    if mountpoint -q "$MNT" 2>/dev/null; then
        umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    fi
    # Never delete through a bind mount that is still there: it is the live engines' directory.
    if mountpoint -q "$MNT" 2>/dev/null; then
        echo "chroot-test: $MNT is still mounted; leaving $DIR in place"
    elif [ "$rc" = 0 ] && [ -z "${DAC_CHROOT_KEEP:-}" ]; then
        rm -rf --one-file-system "$DIR"
    else
        echo "chroot-test: chroot kept for inspection: $DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT

cp dist/dac "$DIR/dac"
mkdir -p "$MNT" "$DIR/tls"
# Non-recursive bind: the sockets only, not the engines' own mounts below that directory.
mount --bind "$DAC_ENGINES_DIR" "$MNT"
cp "$DAC_TLS_DIR/ca.pem" "$DAC_TLS_DIR/cert.pem" "$DAC_TLS_DIR/key.pem" "$DIR/tls/"
echo "== chroot $DIR: $(cd "$DIR" && find . -path ./eng -prune -o -print | sort | tr '\n' ' ')"

TLS_ARGS=${DAC_CHROOT_TLS_ARGS:---tlsverify --tlscacert /tls/ca.pem --tlscert /tls/cert.pem --tlskey /tls/key.pem}
fail=0

# run_case NAME OUT ARGS...: collect into OUT inside the chroot and check the result.
run_case() {
    local name=$1 out=$2 rc=0
    shift 2
    echo "== [$name] chroot $DIR /dac $*"
    local log=$DIR/$name.log
    # env -i: nothing of the host's environment (HOME, DOCKER_HOST, proxies) leaks in.
    env -i PATH=/ "$CHROOT" "$DIR" /dac "$@" >"$log" 2>&1 || rc=$?
    tail -n 25 "$log"
    echo "-- [$name] exit status $rc"
    if [ ! -f "$DIR$out/bagit.txt" ]; then
        echo "FAIL [$name]: no $out/bagit.txt in the chroot"
        fail=1
        return
    fi
    case "$rc" in
    0) ;;
    1)
        if grep -qi 'partial' "$log" || grep -q 'Acquisition-State: partial' "$DIR$out/bag-info.txt" 2>/dev/null; then
            echo "-- [$name] exit 1 with a partial acquisition, as its summary says"
        else
            echo "FAIL [$name]: exit 1 and the output does not say the acquisition was partial"
            fail=1
            return
        fi
        ;;
    *)
        echo "FAIL [$name]: exit status $rc"
        fail=1
        return
        ;;
    esac
    echo "-- [$name] bundle: $(find "$DIR$out" -type f | wc -l) files, $(du -sk "$DIR$out" | awk '{print $1}') KiB"
    if [ -z "${DAC_CHROOT_NO_VERIFY:-}" ]; then
        local vrc=0
        env -i PATH=/ "$CHROOT" "$DIR" /dac verify "$out" >"$DIR/$name.verify.log" 2>&1 || vrc=$?
        tail -n 10 "$DIR/$name.verify.log"
        if [ "$vrc" != 0 ]; then
            echo "FAIL [$name]: dac verify $out exited $vrc"
            fail=1
        fi
    fi
}

run_case unix /out1 collect -H unix:///eng/docker.sock --out /out1 --no-save
# shellcheck disable=SC2086
run_case tls /out2 collect -H "$DAC_TLS_HOST" $TLS_ARGS --out /out2 --no-save

if [ "$fail" != 0 ]; then
    echo "chroot-test: FAILED"
    exit 1
fi
echo "chroot-test: OK"
