#!/usr/bin/env bash
# Benchmark scenes on the bench engine (scripts/bench/engine.sh start first). One scene at a time:
# the collectors take everything the engine has, so building a scene first removes the last.
#
#   scripts/bench/scene.sh full    ~25 containers: 10 running with logs, 1 running with a TTY,
#                                  12 exited with logs, 1 created, and "big256", running, that
#                                  wrote a 256 MiB random file into its own layer; a user
#                                  network and a volume; images bench/busybox:1 and bench/app:1
#   scripts/bench/scene.sh meta    200 containers: 20 running, 180 exited (a few log lines each)
#   scripts/bench/scene.sh big     one running container that wrote a 1 GiB random file
#   scripts/bench/scene.sh clean   remove every container, user network and volume (images kept)
#
# The root filesystem is Debian's static busybox, imported (`docker import`): no registry.
# Logs are written once at start, so a scene does not change while it is being collected.
# Environment: DAC_BENCH_LOG_LINES (lines per container in the full scene, default 2000).
set -Eeuo pipefail
trap 'echo "[bench-scene] ERROR: line $LINENO: \"$BASH_COMMAND\" failed (status $?)" >&2' ERR

HERE=$(cd "$(dirname "$0")" && pwd)
eval "$("$HERE/engine.sh" env)"
read -r -a CLI <<<"$DAC_BENCH_DOCKER"
export DOCKER_BUILDKIT=0
LINES_PER=${DAC_BENCH_LOG_LINES:-2000}
LABEL=dac.bench

log() { printf '[bench-scene %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
d() { "${CLI[@]}" "$@" </dev/null; }
q() { "${CLI[@]}" "$@" </dev/null >/dev/null; }

curl -sf --max-time 5 --unix-socket "$DAC_BENCH_SOCK" http://localhost/_ping >/dev/null ||
    die "the bench engine does not answer on $DAC_BENCH_SOCK: run $HERE/engine.sh start"

clean() {
    local ids
    ids=$(d ps -aq)
    if [ -n "$ids" ]; then
        log "removing $(wc -w <<<"$ids") containers"
        # shellcheck disable=SC2086
        printf '%s\n' $ids | xargs -r -n 20 -P 4 "${CLI[@]}" rm -f -v >/dev/null
    fi
    for n in $(d network ls -q --filter "label=$LABEL"); do q network rm "$n" || true; done
    for v in $(d volume ls -q); do q volume rm -f "$v" || true; done
}

images() {
    if ! d image inspect bench/busybox:1 >/dev/null 2>&1; then
        local work
        work=$(mktemp -d /tmp/dac-bench-rootfs.XXXXXX)
        local R=$work/rootfs
        mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/data" "$R/root"
        chmod 1777 "$R/tmp"
        cp /bin/busybox "$R/bin/busybox"
        for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
        printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
        printf 'root:x:0:\n' >"$R/etc/group"
        tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 -C "$R" -cf "$work/rootfs.tar" .
        q import --change "LABEL $LABEL=base" --change 'CMD ["/bin/sh"]' "$work/rootfs.tar" bench/busybox:1
        rm -rf "$work"
        log "imported bench/busybox:1"
    fi
    if ! d image inspect bench/app:1 >/dev/null 2>&1; then
        local ctx
        ctx=$(mktemp -d /tmp/dac-bench-ctx.XXXXXX)
        printf 'FROM bench/busybox:1\nRUN mkdir -p /app && seq 1 5000 > /app/numbers.txt\nLABEL %s=app\n' "$LABEL" >"$ctx/Dockerfile"
        "${CLI[@]}" build -q -t bench/app:1 "$ctx" </dev/null >/dev/null
        rm -rf "$ctx"
        log "built bench/app:1"
    fi
}

# Print N numbered lines on stdout and every 4th also on stderr, then $2 (exit or sleep).
script() {
    printf 'i=0; while [ $i -lt %d ]; do echo "line $i of the benchmark log, some payload text to make it longer"; [ $((i %% 4)) -eq 0 ] && echo "warn $i" >&2; i=$((i+1)); done; %s' "$1" "$2"
}

# Wait until every running container has finished writing (it prints READY on stdout).
wait_ready() {
    local name i
    for name in "$@"; do
        for ((i = 0; i < 600; i++)); do
            d logs "$name" 2>/dev/null | grep -q READY && break
            sleep 0.2
        done
        d logs "$name" 2>/dev/null | grep -q READY || die "$name did not get ready"
    done
}

scene_full() {
    clean
    images
    q network create --label "$LABEL=1" benchnet
    q volume create --label "$LABEL=1" benchvol
    log "full: 10 running, 1 tty, 12 exited, 1 created, big256 (256 MiB)"
    local i running=()
    for i in $(seq 1 10); do
        local img=bench/busybox:1 extra=()
        ((i % 2 == 0)) && img=bench/app:1
        ((i <= 3)) && extra=(--network benchnet)
        ((i == 1)) && extra+=(-v benchvol:/data)
        q run -d --name "run$i" --label "$LABEL=1" "${extra[@]}" "$img" sh -c "$(script "$LINES_PER" 'echo READY; exec sleep 100000')"
        running+=("run$i")
    done
    q run -d -t --name tty1 --label "$LABEL=1" bench/busybox:1 sh -c "$(script 200 'echo READY; exec sleep 100000')"
    running+=(tty1)
    for i in $(seq 1 12); do
        q run -d --name "exit$i" --label "$LABEL=1" bench/busybox:1 sh -c "$(script "$LINES_PER" 'echo READY; echo /tmp/x > /tmp/x; exit 0')"
    done
    q create --name created1 --label "$LABEL=1" bench/busybox:1 true
    # 256 MiB of random data in the container's own layer (what export reads, save does not).
    q run -d --name big256 --label "$LABEL=1" bench/busybox:1 sh -c 'head -c 268435456 /dev/urandom > /data.bin && echo READY && exec sleep 100000'
    running+=(big256)
    wait_ready "${running[@]}"
    for i in $(seq 1 12); do d wait "exit$i" >/dev/null; done
    log "full: $(d ps -aq | wc -l) containers ready"
}

scene_meta() {
    clean
    images
    log "meta: 20 running, 180 exited"
    # Created first (cheap, in parallel), then started.
    seq 1 20 | xargs -P 4 -I{} "${CLI[@]}" run -d --name run{} --label "$LABEL=1" bench/busybox:1 \
        sh -c 'echo hello; echo warn >&2; echo READY; exec sleep 100000' >/dev/null
    seq 1 180 | xargs -P 4 -I{} "${CLI[@]}" run -d --name exit{} --label "$LABEL=1" bench/busybox:1 \
        sh -c 'echo hello; echo warn >&2; echo READY' >/dev/null
    local i names=()
    for i in $(seq 1 20); do names+=("run$i"); done
    wait_ready "${names[@]}"
    log "meta: $(d ps -aq | wc -l) containers ready"
}

scene_big() {
    clean
    images
    log "big: one container holding 1 GiB"
    q run -d --name big1g --label "$LABEL=1" bench/busybox:1 sh -c 'head -c 1073741824 /dev/urandom > /data.bin && echo READY && exec sleep 100000'
    wait_ready big1g
    log "big: ready"
}

case "${1:-}" in
full) scene_full ;;
meta) scene_meta ;;
big) scene_big ;;
clean) clean ;;
*) echo "usage: $0 full|meta|big|clean" >&2; exit 64 ;;
esac
