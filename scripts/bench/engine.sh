#!/usr/bin/env bash
# The benchmark's own Docker 20.10 engine (Debian's dockerd), confined to /tmp/dac-bench so that it
# never touches the test engines of scripts/engines.sh (/tmp/dac-engines) or the machine's own.
#
#   scripts/bench/engine.sh start    start it (idempotent: an engine that answers is kept)
#   scripts/bench/engine.sh stop     stop it; kill what its containers left running
#   scripts/bench/engine.sh status   exit 0 if it answers
#   scripts/bench/engine.sh env      print `export` lines (DAC_BENCH_SOCK, DAC_BENCH_DOCKER)
#   scripts/bench/engine.sh purge    stop, unmount and delete /tmp/dac-bench/docker
#
# Same approach as scripts/engines.sh (flags chosen for this machine: overlay2 on ext4, no
# netfilter rules, a bridge and address pool of its own, its own cgroup parent, no daemon.json
# from /etc), but with different names everywhere, no TLS listener and no Podman:
#   socket      /tmp/dac-bench/docker.sock
#   data-root   /tmp/dac-bench/docker/data     exec-root /tmp/dac-bench/docker/exec
#   pidfile     /tmp/dac-bench/docker/dockerd.pid, log /tmp/dac-bench/docker/dockerd.log
#   bridge      dac-bench0 (172.30.255.1/24), pool 172.30.0.0/17 (user networks)
#   cgroups     dac-bench-docker
# Environment: DAC_BENCH_DIR (default /tmp/dac-bench).
set -Eeuo pipefail
trap 'echo "[bench-engine] ERROR: line $LINENO: \"$BASH_COMMAND\" failed (status $?)" >&2' ERR

BENCH=${DAC_BENCH_DIR:-/tmp/dac-bench}
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;; esac
export PATH
SOCK=$BENCH/docker.sock
D=$BENCH/docker
CGROUP_PARENT=dac-bench-docker
BRIDGE=dac-bench0
BRIDGE_CIDR=172.30.255.1/24
POOL=172.30.0.0/17

log() { printf '[bench-engine %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

up() { curl -sf --max-time 3 --unix-socket "$SOCK" http://localhost/_ping >/dev/null 2>&1; }
pid_from() { [ -f "$1" ] && tr -dc '0-9' <"$1" || true; }
pid_is() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && grep -aqF -- "$2" "/proc/$1/cmdline" 2>/dev/null; }

install_missing() {
    local need=()
    command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
    [ -x /usr/bin/docker ] || need+=(docker.io)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v ip >/dev/null 2>&1 || need+=(iproute2)
    command -v jq >/dev/null 2>&1 || need+=(jq)
    [ -x /usr/bin/time ] || need+=(time)
    if ! { [ -x /bin/busybox ] && ! LC_ALL=C readelf -l /bin/busybox 2>/dev/null | grep -q INTERP; }; then
        need+=(busybox-static)
    fi
    python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
    [ ${#need[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "missing packages ${need[*]} and not root"
    log "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=120 update -qq
    apt-get -o DPkg::Lock::Timeout=120 install -y -qq "${need[@]}" </dev/null
}

# Processes in our containers' cgroups (they outlive a daemon that was killed).
leftover_pids() {
    local d
    for d in /sys/fs/cgroup/pids/$CGROUP_PARENT /sys/fs/cgroup/unified/$CGROUP_PARENT /sys/fs/cgroup/$CGROUP_PARENT; do
        [ -d "$d" ] || continue
        find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null || true
        break
    done | sort -un
}

kill_leftovers() {
    local pids i
    pids=$(leftover_pids | tr '\n' ' ')
    [ -n "${pids// /}" ] || return 0
    log "killing processes left in $CGROUP_PARENT: $pids"
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    if [ -d "/sys/fs/cgroup/freezer/$CGROUP_PARENT" ]; then
        find "/sys/fs/cgroup/freezer/$CGROUP_PARENT" -name freezer.state 2>/dev/null |
            while IFS= read -r f; do echo THAWED >"$f" 2>/dev/null || true; done
    fi
    for ((i = 0; i < 20; i++)); do
        [ -z "$(leftover_pids)" ] && break
        sleep 0.25
    done
}

# containerd and shims started by our dockerd: their command lines name our exec-root.
kill_helpers() {
    local pid name
    for name in containerd-shim containerd; do
        for pid in $(pgrep -- "^$name" 2>/dev/null || true); do
            if grep -aqF -- "$D/exec/" "/proc/$pid/cmdline" 2>/dev/null; then
                log "killing leftover $name (pid $pid)"
                kill -9 "$pid" 2>/dev/null || true
            fi
        done
    done
}

mounts_under() {
    awk -v p="$1" '{ m=$5; gsub(/\\040/, " ", m); if (m == p || index(m, p "/") == 1) print m }' /proc/self/mountinfo |
        awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}

unmount_under() {
    local m
    while IFS= read -r m; do
        [ -n "$m" ] || continue
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done < <(mounts_under "$1")
}

ensure_bridge() {
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    if ! ip -4 addr show dev "$BRIDGE" | grep -qF "inet $BRIDGE_CIDR"; then
        ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
}

cmd_start() {
    install_missing
    mkdir -p "$BENCH" "$D"
    if up; then
        log "already answers on $SOCK"
        return 0
    fi
    local pid i
    pid=$(pid_from "$D/dockerd.pid")
    if ! pid_is "$pid" dockerd; then
        kill_leftovers
        kill_helpers
        unmount_under "$D/exec"
        rm -rf "$D/exec" "$D/dockerd.pid" "$SOCK"
        mkdir -p "$D/data" "$D/exec"
        echo '{}' >"$D/daemon.json"
        ensure_bridge
        log "starting dockerd (overlay2) under $D"
        echo "=== $(date -u +%FT%TZ) dockerd start ===" >>"$D/dockerd.log"
        setsid nohup dockerd \
            --config-file "$D/daemon.json" \
            -H "unix://$SOCK" \
            --data-root "$D/data" --exec-root "$D/exec" --pidfile "$D/dockerd.pid" \
            --storage-driver overlay2 \
            --bridge "$BRIDGE" --default-address-pool "base=$POOL,size=24" \
            --iptables=false --ip-forward=false --ip-masq=false \
            --cgroup-parent "$CGROUP_PARENT" \
            --log-driver json-file \
            </dev/null >>"$D/dockerd.log" 2>&1 &
        echo $! >"$D/dockerd.launch.pid"
    fi
    for ((i = 0; i < 240; i++)); do
        up && break
        if ((i > 8)); then
            pid=$(pid_from "$D/dockerd.launch.pid")
            if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
                tail -n 30 "$D/dockerd.log" >&2
                die "dockerd exited (log: $D/dockerd.log)"
            fi
        fi
        sleep 0.25
    done
    up || { tail -n 30 "$D/dockerd.log" >&2; die "dockerd does not answer on $SOCK"; }
    log "up: $(curl -s --unix-socket "$SOCK" http://localhost/version | head -c 160)"
}

cmd_stop() {
    local pid i
    pid=$(pid_from "$D/dockerd.pid")
    pid_is "$pid" dockerd || pid=$(pid_from "$D/dockerd.launch.pid")
    if pid_is "$pid" dockerd; then
        log "stopping dockerd (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 120; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        if kill -0 "$pid" 2>/dev/null; then
            log "dockerd did not stop in 30 s; killing"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    rm -f "$D/dockerd.pid" "$D/dockerd.launch.pid" "$SOCK"
    # Containers do not outlive the benchmark: dockerd leaves running ones to their shims.
    kill_leftovers
    kill_helpers
    unmount_under "$D/exec"
}

cmd_env() {
    cat <<EOF
export DAC_BENCH_DIR='$BENCH'
export DAC_BENCH_SOCK='$SOCK'
export DAC_BENCH_DOCKER='/usr/bin/docker -H unix://$SOCK'
EOF
}

cmd_purge() {
    cmd_stop
    find /sys/fs/cgroup/*/"$CGROUP_PARENT" -depth -type d -exec rmdir {} + 2>/dev/null || true
    ip link show "$BRIDGE" >/dev/null 2>&1 && { ip link del "$BRIDGE" 2>/dev/null || true; }
    [ -d "$D" ] || return 0
    unmount_under "$D"
    [ -z "$(mounts_under "$D")" ] || die "mounts remain under $D; not deleting it"
    rm -rf --one-file-system "$D"
    log "purged $D"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) if up; then echo "bench docker: up $SOCK (pid $(pid_from "$D/dockerd.pid"))"; else echo "bench docker: DOWN $SOCK"; exit 1; fi ;;
env) cmd_env ;;
purge) cmd_purge ;;
*) echo "usage: $0 start|stop|status|env|purge" >&2; exit 64 ;;
esac
