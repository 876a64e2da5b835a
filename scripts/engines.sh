#!/usr/bin/env bash
# Private container engines for DAC's tests: a Docker 20.10 daemon (Debian's docker.io), a
# Podman 4 API service and a second Docker 20.10 daemon that is a single-node swarm manager, all
# confined to one directory so that nothing of the machine's own engine configuration is read or
# changed, and so that a test run can be wiped with `purge`.
#
#   scripts/engines.sh start    install what is missing, start the engines, wait until they answer;
#                               make the swarm engine a manager with its objects (see below)
#   scripts/engines.sh stop     stop the engines (images, volumes and container records are
#                               kept; containers do not keep running: the scene is rebuilt)
#   scripts/engines.sh status   print what answers; exit 1 unless all do
#   scripts/engines.sh env      print `export` lines for the tests (eval "$(scripts/engines.sh env)")
#   scripts/engines.sh purge    stop, kill what the engines left running, unmount, delete everything
#                               (with DAC_ENGINES_ONLY, only that engine's folder and socket)
#
# Environment: DAC_ENGINES_DIR (default /tmp/dac-engines), DAC_ENGINES_ONLY=docker|podman|swarm to
# act on only one, DAC_ENGINES_NO_INSTALL=1 to never call apt-get; for a second docker instance
# beside the first: DAC_ENGINES_TLS_PORT, DAC_ENGINES_CGROUP, DAC_ENGINES_BRIDGE,
# DAC_ENGINES_BRIDGE_CIDR, DAC_ENGINES_POOL (and DAC_ENGINES_SWARM_PORT, DAC_ENGINES_SWARM_BRIDGE,
# DAC_ENGINES_SWARM_BRIDGE_CIDR, DAC_ENGINES_SWARM_POOL, DAC_ENGINES_SWARM_CGROUP if its swarm
# engine runs too).
#
# Layout of $DAC_ENGINES_DIR:
#   docker.sock podman.sock swarm.sock  API sockets (the directory can be bind-mounted into a chroot)
#   docker/{data,exec,daemon.json,dockerd.pid,dockerd.log}
#   podman/{root,runroot,tmp,networks,containers.conf,service.pid,service.log}
#   swarm/{data,exec,daemon.json,dockerd.pid,dockerd.log,setup.lock}
#   tls/{ca.pem,ca-key.pem,server-*.pem} and tls/client/{ca.pem,cert.pem,key.pem}
#   tls-wrong/{ca.pem,cert.pem,key.pem}  a second, unrelated CA with its own client certificate
#
# dockerd flags, as found on the Debian 12 / kernel 6.x (cgroup v1, ext4 root) machines we run on:
#   --storage-driver overlay2   the kernel has overlayfs and /tmp is ext4 with d_type, so overlay2
#                               works ("Native Overlay Diff: true"); vfs is only the fallback when
#                               overlay2 cannot mount (e.g. /tmp on overlayfs or tmpfs without
#                               xattrs), because vfs copies every layer in full.
#   --iptables=false --ip-forward=false --ip-masq=false
#                               the scene needs containers and a user-defined bridge network, not a
#                               way out: bridges and veths work without any netfilter rule, so the
#                               daemon does not depend on the iptables binary or nf_tables modules,
#                               leaves the host's net.ipv4.ip_forward at 0 and adds no NAT. The
#                               daemon also started with the default iptables setup on this machine.
#   --bridge dac-docker0 (172.28.255.1/24, created here) --default-address-pool 172.29.0.0/16
#                               the default network on a bridge of our own: docker0 belongs to
#                               any other dockerd on the machine, and one that started later
#                               deleted it under us (seen here); user networks such as casenet
#                               come from a pool of our own.
#   --cgroup-parent=dac-engines-docker
#                               our containers' cgroups sit under one name of our own, so `purge`
#                               can find container processes that outlived a killed daemon.
#   --config-file (empty JSON)  /etc/docker/daemon.json, if any, must not merge into our flags.
#   no --containerd             dockerd starts its own containerd under --exec-root.
#
# The swarm engine (tests/swarm.rs) is another dockerd with the same flags but no TLS port, its
# own bridge dac-swarm0 (172.31.255.1/24), address pool 172.31.0.0/17 and cgroup parent
# dac-engines-swarm, so that the main engine and its scene never see a swarm. Once it answers it
# is made, each step only if not done yet (the swarm state lives in its data root):
#   network docker_gwbridge on a Linux bridge dac-swarm0-gw (not the usual docker_gwbridge,
#                               which any other swarm engine on the machine would also use)
#   docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377
#                     --data-path-port 4799 --default-addr-pool 10.231.0.0/16
#                               loopback only: nothing outside the machine can join; the VXLAN
#                               port and overlay pool are not the defaults, which a swarm of the
#                               machine's own would use.
#   image   dac-swarm/busybox:1.0   imported from a tar of the static busybox (no registry here)
#   secret  dac-secret   data: SWARM_SECRET_MARKER below (tests/swarm.rs has the same string and
#                        checks that it is nowhere in a bundle); label dac.marker.sha256 = its
#                        SHA-256, so the test can tell that its copy is the secret's data
#   config  dac-config   data: "dac swarm config v1"
#   service dac-svc      1 replica of the image, with the secret and the config attached,
#                        created with --no-resolve-image (nothing to pull from); its task is
#                        waited for (up to 30 s) until it runs.
#   service dac-logsvc   1 replica that writes "dac-logsvc out 1" to stdout and
#                        "dac-logsvc err 1" to stderr, then sleeps (service logs)
set -Eeuo pipefail
trap 'echo "[engines] ERROR: line $LINENO: \"$BASH_COMMAND\" failed (status $?)" >&2' ERR

ENG=${DAC_ENGINES_DIR:-/tmp/dac-engines}
# dockerd, iptables, ip and chroot live in sbin directories that a minimal PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;; esac
export PATH
DOCKER_SOCK=$ENG/docker.sock
PODMAN_SOCK=$ENG/podman.sock
TLS_PORT=${DAC_ENGINES_TLS_PORT:-2376}
TLS_HOST=tcp://127.0.0.1:$TLS_PORT
D=$ENG/docker
P=$ENG/podman
# Overridable so that a second, throw-away instance can run beside the usual one (docker only:
# two podman services would share podman's fixed lock memory, /libpod_lock).
CGROUP_PARENT=${DAC_ENGINES_CGROUP:-dac-engines-docker}
BRIDGE=${DAC_ENGINES_BRIDGE:-dac-docker0}
BRIDGE_CIDR=${DAC_ENGINES_BRIDGE_CIDR:-172.28.255.1/24}
POOL=${DAC_ENGINES_POOL:-172.29.0.0/16}
SWARM_SOCK=$ENG/swarm.sock
S=$ENG/swarm
SWARM_CGROUP_PARENT=${DAC_ENGINES_SWARM_CGROUP:-dac-engines-swarm}
SWARM_PORT=${DAC_ENGINES_SWARM_PORT:-2377}
SWARM_BRIDGE=${DAC_ENGINES_SWARM_BRIDGE:-dac-swarm0}
SWARM_BRIDGE_CIDR=${DAC_ENGINES_SWARM_BRIDGE_CIDR:-172.31.255.1/24}
SWARM_POOL=${DAC_ENGINES_SWARM_POOL:-172.31.0.0/17}
SWARM_IMAGE=dac-swarm/busybox:1.0
SWARM_SECRET_MARKER=TOP-SECRET-DAC-MARKER-5c81e0f4a7

log() { printf '[engines %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The Debian CLI matches the daemon (20.10); /usr/local/bin/docker, if present, is a newer client
# that also works against it through API version negotiation.
docker_cli() {
    if [ -x /usr/bin/docker ]; then echo /usr/bin/docker
    elif command -v docker >/dev/null 2>&1; then command -v docker
    else echo /usr/bin/docker; fi
}

want_docker() { [ "${DAC_ENGINES_ONLY:-docker}" = docker ] || [ -z "${DAC_ENGINES_ONLY:-}" ]; }
want_podman() { [ "${DAC_ENGINES_ONLY:-podman}" = podman ] || [ -z "${DAC_ENGINES_ONLY:-}" ]; }
want_swarm() { [ "${DAC_ENGINES_ONLY:-swarm}" = swarm ] || [ -z "${DAC_ENGINES_ONLY:-}" ]; }

ping_sock() { curl -sf --max-time 3 --unix-socket "$1" http://localhost/_ping >/dev/null 2>&1; }
docker_up() { ping_sock "$DOCKER_SOCK"; }
podman_up() { ping_sock "$PODMAN_SOCK"; }
swarm_up() { ping_sock "$SWARM_SOCK"; }
tls_up() {
    curl -sf --max-time 3 --cacert "$ENG/tls/client/ca.pem" --cert "$ENG/tls/client/cert.pem" \
        --key "$ENG/tls/client/key.pem" "https://127.0.0.1:$TLS_PORT/_ping" >/dev/null 2>&1
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_from() { [ -f "$1" ] && tr -dc '0-9' <"$1" || true; }
# A pid file can outlive its process and the pid be reused after a restart: only trust it if the
# process is the program we expect.
pid_is() {
    local pid=$1 name=$2
    pid_alive "$pid" && grep -aqF -- "$name" "/proc/$pid/cmdline" 2>/dev/null
}

# The scene's rootfs is a copy of this binary, so it must not need a dynamic loader.
static_busybox() {
    [ -x /bin/busybox ] || return 1
    local headers applets
    headers=$(LC_ALL=C readelf -l /bin/busybox 2>/dev/null) || return 1
    applets=$(/bin/busybox --list 2>/dev/null) || return 1
    ! grep -q INTERP <<<"$headers" && grep -qx sh <<<"$applets"
}

# ---------------------------------------------------------------------------------------------
install_missing() {
    local need=()
    command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
    [ -x /usr/bin/docker ] || need+=(docker.io)
    command -v podman >/dev/null 2>&1 || need+=(podman)
    static_busybox || need+=(busybox-static)
    command -v openssl >/dev/null 2>&1 || need+=(openssl)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v iptables >/dev/null 2>&1 || need+=(iptables)
    command -v newuidmap >/dev/null 2>&1 || need+=(uidmap)
    command -v ip >/dev/null 2>&1 || need+=(iproute2)
    [ ${#need[@]} -eq 0 ] && return 0
    if [ -n "${DAC_ENGINES_NO_INSTALL:-}" ]; then die "missing packages: ${need[*]} (DAC_ENGINES_NO_INSTALL is set)"; fi
    [ "$(id -u)" = 0 ] || die "missing packages ${need[*]} and not root"
    log "installing: docker.io podman busybox-static openssl curl iptables uidmap iproute2 (missing: ${need[*]})"
    export DEBIAN_FRONTEND=noninteractive
    local try
    for try in 1 2 3 4 5 6; do
        # -o DPkg::Lock::Timeout waits for another apt instead of failing at once.
        if apt-get -o DPkg::Lock::Timeout=120 update -qq &&
            apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
                docker.io podman busybox-static openssl curl iptables uidmap iproute2 </dev/null; then
            return 0
        fi
        log "apt-get failed (try $try), retrying in 10 s"
        sleep 10
    done
    die "apt-get install failed"
}

# ---------------------------------------------------------------------------------------------
# Test PKI: a CA, a server certificate for 127.0.0.1/localhost, a client certificate (docker's
# --tlsverify mode checks both sides), and a second CA with its own client certificate that must
# be refused. Regenerated when missing or within a day of expiry.
make_tls() {
    local t=$ENG/tls w=$ENG/tls-wrong
    if [ -f "$t/client/key.pem" ] && [ -f "$w/key.pem" ] &&
        openssl x509 -checkend 86400 -noout -in "$t/server-cert.pem" >/dev/null 2>&1 &&
        openssl x509 -checkend 86400 -noout -in "$t/client/cert.pem" >/dev/null 2>&1; then
        return 0
    fi
    log "creating test CA and certificates in $t"
    rm -rf "$t" "$w"
    mkdir -p "$t/client" "$w"
    local tmp
    tmp=$(mktemp -d)
    new_ca "$t" "DAC test CA"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$t/server-key.pem" 2>/dev/null
    openssl req -new -key "$t/server-key.pem" -subj "/CN=localhost" -out "$tmp/server.csr"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "basicConstraints=critical,CA:FALSE" >"$tmp/server.ext"
    openssl x509 -req -in "$tmp/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca-key.pem" -CAcreateserial \
        -days 3650 -sha256 -extfile "$tmp/server.ext" -out "$t/server-cert.pem" 2>/dev/null
    new_client "$t" "$t/client"
    cp "$t/ca.pem" "$t/client/ca.pem"
    # Wrong directory: a CA that did not sign the server, and a client certificate from it.
    new_ca "$w" "DAC wrong CA"
    new_client "$w" "$w"
    rm -f "$w/ca.srl" "$t/ca.srl"
    chmod 600 "$t"/*key.pem "$t/client/key.pem" "$w"/*key.pem
    chmod 644 "$t/client/key.pem" "$w/key.pem"
    rm -rf "$tmp"
}
new_ca() {
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1/ca-key.pem" 2>/dev/null
    openssl req -new -x509 -days 3650 -sha256 -key "$1/ca-key.pem" -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$1/ca.pem"
}
new_client() {
    local ca=$1 out=$2 tmp
    tmp=$(mktemp -d)
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$out/key.pem" 2>/dev/null
    openssl req -new -key "$out/key.pem" -subj "/CN=dac-client" -out "$tmp/c.csr"
    printf '%s\n' "extendedKeyUsage=clientAuth" "keyUsage=critical,digitalSignature" \
        "basicConstraints=critical,CA:FALSE" >"$tmp/c.ext"
    openssl x509 -req -in "$tmp/c.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca-key.pem" -CAcreateserial \
        -days 3650 -sha256 -extfile "$tmp/c.ext" -out "$out/cert.pem" 2>/dev/null
    rm -rf "$tmp"
}

# ---------------------------------------------------------------------------------------------
# Processes in the cgroups of one engine's containers (docker: $CGROUP_PARENT; podman with
# cgroupfs: libpod_parent, which also holds its conmon monitors). They outlive a daemon that was
# killed, e.g. with the session that started it.
leftover_pids() {
    local d
    for d in /sys/fs/cgroup/pids/$1 /sys/fs/cgroup/unified/$1 /sys/fs/cgroup/$1; do
        [ -d "$d" ] || continue
        find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null || true
        break
    done | sort -un
}

# kill_leftovers CGROUP: only called while that engine is not running.
kill_leftovers() {
    local cg=$1 pids i
    pids=$(leftover_pids "$cg" | tr '\n' ' ')
    if [ -n "${pids// /}" ]; then
        log "killing processes left in $cg: $pids"
        # shellcheck disable=SC2086
        kill -9 $pids 2>/dev/null || true
    fi
    # A paused container's processes are frozen and take no signal until thawed.
    if [ -d "/sys/fs/cgroup/freezer/$cg" ]; then
        find "/sys/fs/cgroup/freezer/$cg" -name freezer.state 2>/dev/null | while IFS= read -r f; do
            echo THAWED >"$f" 2>/dev/null || true
        done
    fi
    if [ -n "${pids// /}" ]; then
        for ((i = 0; i < 20; i++)); do
            [ -z "$(leftover_pids "$cg")" ] && break
            sleep 0.25
        done
        [ -z "$(leftover_pids "$cg")" ] || log "still alive in $cg: $(leftover_pids "$cg" | tr '\n' ' ')"
    fi
}

# Mount points below a directory, deepest first.
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

# ---------------------------------------------------------------------------------------------
start_docker() {
    if docker_up; then
        log "docker already answers on $DOCKER_SOCK"
        return 0
    fi
    local pid
    pid=$(pid_from "$D/dockerd.pid")
    if pid_is "$pid" dockerd; then
        log "dockerd (pid $pid) runs but does not answer yet; waiting"
    else
        # Runtime state of a daemon that is gone (killed with the session that started it): the
        # data root is kept, everything that only made sense while it ran is removed.
        kill_leftovers "$CGROUP_PARENT"
        kill_matching containerd "$D/exec/"
        kill_matching containerd-shim "$D/exec/"
        unmount_under "$D/exec"
        rm -rf "$D/exec" "$D/dockerd.pid" "$DOCKER_SOCK"
        mkdir -p "$D/data" "$D/exec"
        echo '{}' >"$D/daemon.json"
        local driver=${DAC_DOCKER_STORAGE_DRIVER:-}
        if [ -z "$driver" ]; then
            if [ -f "$D/driver" ]; then driver=$(cat "$D/driver"); else driver=overlay2; fi
        fi
        launch_dockerd "$driver"
        if ! wait_for docker_up 60 "$D/dockerd.pid" dockerd; then
            if [ "$driver" = overlay2 ] && [ -z "${DAC_DOCKER_STORAGE_DRIVER:-}" ] &&
                grep -qiE 'overlay|storage.driver|graphdriver' "$D/dockerd.log"; then
                log "dockerd did not start with overlay2; retrying with vfs"
                stop_pidfile "$D/dockerd.pid" dockerd
                unmount_under "$D/data"
                unmount_under "$D/exec"
                rm -rf "$D/data" "$D/exec" "$DOCKER_SOCK"
                mkdir -p "$D/data" "$D/exec"
                launch_dockerd vfs
                wait_for docker_up 60 "$D/dockerd.pid" dockerd || { tail -n 40 "$D/dockerd.log" >&2; die "dockerd did not start"; }
            else
                tail -n 40 "$D/dockerd.log" >&2
                die "dockerd did not start (log: $D/dockerd.log)"
            fi
        fi
    fi
    wait_for docker_up 60 "$D/dockerd.pid" dockerd || die "dockerd does not answer on $DOCKER_SOCK"
    wait_for tls_up 30 "$D/dockerd.pid" dockerd || { tail -n 20 "$D/dockerd.log" >&2; die "dockerd does not answer TLS on $TLS_HOST"; }
    log "docker up: $(curl -s --unix-socket "$DOCKER_SOCK" http://localhost/version | head -c 200)"
}

# The default bridge is ours, not docker0: another dockerd on the machine (a developer's, or a
# test's) manages docker0 too and may delete or reconfigure it under us, which makes every
# `docker run` on the default network fail ("could not find bridge docker0").
# ensure_bridge [NAME CIDR]: the main engine's bridge by default.
ensure_bridge() {
    local br=${1:-$BRIDGE} cidr=${2:-$BRIDGE_CIDR}
    if ! ip link show "$br" >/dev/null 2>&1; then
        ip link add "$br" type bridge
    fi
    local addrs
    addrs=$(ip -4 addr show dev "$br" 2>/dev/null || true)
    if ! grep -qF "inet $cidr" <<<"$addrs"; then
        ip addr add "$cidr" dev "$br"
    fi
    ip link set "$br" up
}

launch_dockerd() {
    local driver=$1
    ensure_bridge
    echo "$driver" >"$D/driver"
    log "starting dockerd (storage driver $driver)"
    {
        echo "=== $(date -u +%FT%TZ) dockerd start (driver $driver) ==="
    } >>"$D/dockerd.log"
    setsid nohup dockerd \
        --config-file "$D/daemon.json" \
        -H "unix://$DOCKER_SOCK" \
        -H "$TLS_HOST" --tlsverify \
        --tlscacert "$ENG/tls/ca.pem" --tlscert "$ENG/tls/server-cert.pem" --tlskey "$ENG/tls/server-key.pem" \
        --data-root "$D/data" --exec-root "$D/exec" --pidfile "$D/dockerd.pid" \
        --storage-driver "$driver" \
        --bridge "$BRIDGE" --default-address-pool "base=$POOL,size=24" \
        --iptables=false --ip-forward=false --ip-masq=false \
        --cgroup-parent "$CGROUP_PARENT" \
        --log-driver json-file \
        </dev/null >>"$D/dockerd.log" 2>&1 &
    echo $! >"$D/dockerd.launch.pid"
}

# ---------------------------------------------------------------------------------------------
# The swarm engine: started as the main one is (same recovery of a daemon that is gone, same
# overlay2-then-vfs choice), then made a manager with its objects by swarm_setup.
start_swarm() {
    if swarm_up; then
        log "swarm engine already answers on $SWARM_SOCK"
    else
        local pid
        pid=$(pid_from "$S/dockerd.pid")
        if pid_is "$pid" dockerd; then
            log "swarm dockerd (pid $pid) runs but does not answer yet; waiting"
        else
            kill_leftovers "$SWARM_CGROUP_PARENT"
            kill_matching containerd "$S/exec/"
            kill_matching containerd-shim "$S/exec/"
            unmount_under "$S/exec"
            rm -rf "$S/exec" "$S/dockerd.pid" "$SWARM_SOCK"
            mkdir -p "$S/data" "$S/exec"
            echo '{}' >"$S/daemon.json"
            local driver=${DAC_DOCKER_STORAGE_DRIVER:-}
            if [ -z "$driver" ]; then
                if [ -f "$S/driver" ]; then driver=$(cat "$S/driver"); else driver=overlay2; fi
            fi
            launch_swarm_dockerd "$driver"
            if ! wait_for swarm_up 60 "$S/dockerd.pid" dockerd; then
                if [ "$driver" = overlay2 ] && [ -z "${DAC_DOCKER_STORAGE_DRIVER:-}" ] &&
                    grep -qiE 'overlay|storage.driver|graphdriver' "$S/dockerd.log"; then
                    log "swarm dockerd did not start with overlay2; retrying with vfs"
                    stop_pidfile "$S/dockerd.pid" dockerd
                    unmount_under "$S/data"
                    unmount_under "$S/exec"
                    rm -rf "$S/data" "$S/exec" "$SWARM_SOCK"
                    mkdir -p "$S/data" "$S/exec"
                    launch_swarm_dockerd vfs
                else
                    tail -n 40 "$S/dockerd.log" >&2
                    die "swarm dockerd did not start (log: $S/dockerd.log)"
                fi
            fi
        fi
        wait_for swarm_up 60 "$S/dockerd.pid" dockerd || { tail -n 40 "$S/dockerd.log" >&2; die "swarm dockerd does not answer on $SWARM_SOCK"; }
    fi
    swarm_setup
    log "swarm engine up: $(swarm_cli info --format 'swarm {{.Swarm.LocalNodeState}}, manager {{.Swarm.ControlAvailable}}, node {{.Swarm.NodeID}}' </dev/null)"
}

# DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1: the swarm executor uses the local image instead of first
# trying to pull it (there is no registry to reach; the attempt would only time out).
launch_swarm_dockerd() {
    local driver=$1
    ensure_bridge "$SWARM_BRIDGE" "$SWARM_BRIDGE_CIDR"
    echo "$driver" >"$S/driver"
    log "starting the swarm dockerd (storage driver $driver)"
    echo "=== $(date -u +%FT%TZ) dockerd start (driver $driver) ===" >>"$S/dockerd.log"
    DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 setsid nohup dockerd \
        --config-file "$S/daemon.json" \
        -H "unix://$SWARM_SOCK" \
        --data-root "$S/data" --exec-root "$S/exec" --pidfile "$S/dockerd.pid" \
        --storage-driver "$driver" \
        --bridge "$SWARM_BRIDGE" --default-address-pool "base=$SWARM_POOL,size=24" \
        --iptables=false --ip-forward=false --ip-masq=false \
        --cgroup-parent "$SWARM_CGROUP_PARENT" \
        --log-driver json-file \
        </dev/null >>"$S/dockerd.log" 2>&1 &
    echo $! >"$S/dockerd.launch.pid"
}

swarm_cli() { "$(docker_cli)" -H "unix://$SWARM_SOCK" "$@"; }
swarm_state() { swarm_cli info --format '{{.Swarm.LocalNodeState}}' </dev/null 2>/dev/null || echo unknown; }

# Each step only when its result is missing, under a lock (the engines are shared).
swarm_setup() {
    local i state
    exec 8>"$S/setup.lock"
    flock -w 300 8 || die "another swarm setup holds $S/setup.lock"
    # After a restart the node reloads its raft state for a moment ("pending").
    for ((i = 0; i < 120; i++)); do
        state=$(swarm_state)
        case "$state" in active | inactive | error | locked) break ;; esac
        sleep 0.25
    done
    case "$state" in
    active) ;;
    inactive | error)
        if [ "$state" = error ]; then
            log "swarm state is 'error' (see $S/dockerd.log); leaving and initialising again"
            swarm_cli swarm leave --force </dev/null >/dev/null
        fi
        # The ingress sandbox joins a bridge network called docker_gwbridge, whose Linux bridge
        # is named docker_gwbridge too unless the network exists before the init: ours is
        # $SWARM_BRIDGE-gw, so another swarm engine on the machine keeps its own.
        if ! swarm_cli network inspect docker_gwbridge </dev/null >/dev/null 2>&1; then
            swarm_cli network create --driver bridge --label dac.swarm=1 \
                -o "com.docker.network.bridge.name=$SWARM_BRIDGE-gw" \
                -o com.docker.network.bridge.enable_icc=false \
                -o com.docker.network.bridge.enable_ip_masquerade=false \
                docker_gwbridge </dev/null >/dev/null
        fi
        log "docker swarm init (127.0.0.1:$SWARM_PORT)"
        swarm_cli swarm init --advertise-addr 127.0.0.1 --listen-addr "127.0.0.1:$SWARM_PORT" \
            --data-path-port 4799 --default-addr-pool 10.231.0.0/16 </dev/null >/dev/null
        ;;
    *) die "the swarm engine's node state is '$state' (log: $S/dockerd.log)" ;;
    esac
    # A manager answers swarm requests once its raft has a leader.
    for ((i = 0; i < 120; i++)); do
        swarm_cli node ls -q </dev/null >/dev/null 2>&1 && break
        sleep 0.25
    done
    swarm_cli node ls -q </dev/null >/dev/null || die "the swarm engine is not a working manager"

    if ! swarm_cli image inspect "$SWARM_IMAGE" </dev/null >/dev/null 2>&1; then
        static_busybox || die "/bin/busybox is missing or not static (apt-get install busybox-static)"
        local w a
        w=$(mktemp -d /tmp/dac-swarm-image.XXXXXX)
        mkdir -p "$w/r/bin" "$w/r/etc" "$w/r/tmp"
        chmod 1777 "$w/r/tmp"
        cp /bin/busybox "$w/r/bin/busybox"
        for a in $(/bin/busybox --list); do
            [ "$a" = busybox ] || ln -sf busybox "$w/r/bin/$a"
        done
        printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$w/r/etc/passwd"
        printf 'root:x:0:\nnogroup:x:65534:\n' >"$w/r/etc/group"
        tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 -C "$w/r" -cf "$w/rootfs.tar" .
        log "importing $SWARM_IMAGE"
        swarm_cli import --change 'LABEL dac.swarm=busybox' --change 'CMD ["/bin/sh"]' \
            "$w/rootfs.tar" "$SWARM_IMAGE" </dev/null >/dev/null
        rm -rf "$w"
    fi
    if ! swarm_cli secret inspect dac-secret </dev/null >/dev/null 2>&1; then
        local sum
        sum=$(printf '%s' "$SWARM_SECRET_MARKER" | sha256sum | cut -d' ' -f1)
        log "creating secret dac-secret"
        printf '%s' "$SWARM_SECRET_MARKER" |
            swarm_cli secret create --label dac.swarm=1 --label "dac.marker.sha256=$sum" dac-secret - >/dev/null
    fi
    if ! swarm_cli config inspect dac-config </dev/null >/dev/null 2>&1; then
        log "creating config dac-config"
        printf 'dac swarm config v1\n' | swarm_cli config create --label dac.swarm=1 dac-config - >/dev/null
    fi
    if ! swarm_cli service inspect dac-svc </dev/null >/dev/null 2>&1; then
        log "creating service dac-svc"
        swarm_cli service create --detach --name dac-svc --replicas 1 --label dac.swarm=1 \
            --no-resolve-image --with-registry-auth=false --stop-grace-period 2s \
            --secret dac-secret --config source=dac-config,target=/etc/dac-config \
            "$SWARM_IMAGE" /bin/sh -c 'trap "exit 0" TERM; while :; do sleep 1; done' </dev/null >/dev/null
    fi
    if ! swarm_cli service inspect dac-logsvc </dev/null >/dev/null 2>&1; then
        log "creating service dac-logsvc"
        swarm_cli service create --detach --name dac-logsvc --replicas 1 --label dac.swarm=1 \
            --no-resolve-image --with-registry-auth=false --stop-grace-period 2s \
            "$SWARM_IMAGE" /bin/sh -c 'echo "dac-logsvc out 1"; echo "dac-logsvc err 1" >&2; trap "exit 0" TERM; while :; do sleep 1; done' </dev/null >/dev/null
    fi
    # The tests read the services' running task containers (their logs, a secret's mount
    # target): wait for both, a few seconds on a cold start.
    local svc i running
    for svc in dac-svc dac-logsvc; do
        for ((i = 0; i < 60; i++)); do
            running=$(swarm_cli ps -q --filter "label=com.docker.swarm.service.name=$svc" </dev/null 2>/dev/null || true)
            [ -n "$running" ] && break
            sleep 0.5
        done
        [ -n "$running" ] || log "WARNING: no running task of $svc after 30 s"
    done
    exec 8>&-
}

# ---------------------------------------------------------------------------------------------
podman_flags() {
    printf '%s\n' --root "$P/root" --runroot "$P/runroot" --tmpdir "$P/tmp" \
        --network-config-dir "$P/networks" --cgroup-manager cgroupfs --events-backend file
}

start_podman() {
    if podman_up; then
        log "podman already answers on $PODMAN_SOCK"
        return 0
    fi
    local pid
    pid=$(pid_from "$P/service.pid")
    if pid_is "$pid" podman; then
        log "podman service (pid $pid) runs but does not answer yet; waiting"
    else
        # A service that is gone left its runtime state (runroot, tmpdir) describing processes that
        # no longer exist. Removing it makes podman do what it does after a reboot: refresh every
        # container to a stopped state. Stored containers, images and volumes are kept.
        kill_leftovers libpod_parent
        pkill_conmons
        unmount_under "$P/root"
        unmount_under "$P/runroot"
        rm -rf "$P/runroot" "$P/tmp" "$PODMAN_SOCK"
        mkdir -p "$P/root" "$P/runroot" "$P/tmp" "$P/networks"
        write_containers_conf
        log "starting podman system service"
        echo "=== $(date -u +%FT%TZ) podman service start ===" >>"$P/service.log"
        local flags
        mapfile -t flags < <(podman_flags)
        CONTAINERS_CONF=$P/containers.conf setsid nohup podman "${flags[@]}" \
            system service --time=0 "unix://$PODMAN_SOCK" </dev/null >>"$P/service.log" 2>&1 &
        echo $! >"$P/service.pid"
    fi
    wait_for podman_up 60 "$P/service.pid" podman || { tail -n 40 "$P/service.log" >&2; die "podman service did not start (log: $P/service.log)"; }
    log "podman up: $(curl -s --unix-socket "$PODMAN_SOCK" http://localhost/version | head -c 200)"
}

# kill_matching NAME TEXT: kill processes called NAME* whose command line contains TEXT (one
# of our directories), i.e. helpers that outlived the daemon that started them.
kill_matching() {
    local pid
    for pid in $(pgrep -- "^$1" 2>/dev/null || true); do
        if grep -aqF -- "$2" "/proc/$pid/cmdline" 2>/dev/null; then
            log "killing leftover $1 (pid $pid)"
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
}

# conmon processes that watched containers of our podman root (their command line names it).
pkill_conmons() { kill_matching conmon "$P/"; }

# Only this file is read by the service (CONTAINERS_CONF), so the machine's containers.conf, if
# any, does not change how the tests' engine behaves. The capabilities and sysctl are Debian's
# defaults. The ulimits: podman gives containers nofile=1048576 by default, above this machine's
# hard limit (20000), and runc then fails to start them.
write_containers_conf() {
    cat >"$P/containers.conf" <<EOF
[containers]
default_capabilities = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE",
  "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"]
default_sysctls = ["net.ipv4.ping_group_range=0 0"]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
log_driver = "k8s-file"

[network]
network_config_dir = "$P/networks"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$P/events.log"
tmp_dir = "$P/tmp"
EOF
}

# ---------------------------------------------------------------------------------------------
# wait_for CHECK SECONDS PIDFILE NAME: poll CHECK; give up early if the process is gone.
wait_for() {
    local check=$1 secs=$2 pidfile=$3 name=$4 i pid
    for ((i = 0; i < secs * 4; i++)); do
        if "$check"; then return 0; fi
        if ((i > 8)); then
            pid=$(pid_from "$pidfile")
            [ -z "$pid" ] && pid=$(pid_from "${pidfile%.pid}.launch.pid")
            if [ -n "$pid" ] && ! pid_alive "$pid"; then
                log "$name (pid $pid) exited"
                return 1
            fi
        fi
        sleep 0.25
    done
    return 1
}

stop_pidfile() {
    local pidfile=$1 name=$2 pid i
    pid=$(pid_from "$pidfile")
    pid_is "$pid" "$name" || pid=$(pid_from "${pidfile%.pid}.launch.pid")
    if pid_is "$pid" "$name"; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 120; i++)); do pid_alive "$pid" || break; sleep 0.25; done
        if pid_alive "$pid"; then
            log "$name did not stop in 30 s; killing"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    rm -f "$pidfile" "${pidfile%.pid}.launch.pid"
}

cmd_start() {
    install_missing
    mkdir -p "$ENG" "$D" "$P" "$S"
    chmod 755 "$ENG"
    make_tls
    # Not `start_docker || ...`: that would switch errexit off inside it.
    if want_docker; then start_docker; fi
    if want_podman; then start_podman; fi
    if want_swarm; then start_swarm; fi
}

cmd_stop() {
    if want_swarm; then
        stop_pidfile "$S/dockerd.pid" dockerd
        rm -f "$SWARM_SOCK"
    fi
    if want_podman; then
        stop_pidfile "$P/service.pid" podman
        rm -f "$PODMAN_SOCK"
    fi
    if want_docker; then
        stop_pidfile "$D/dockerd.pid" dockerd
        rm -f "$DOCKER_SOCK"
    fi
}

cmd_status() {
    local rc=0
    if want_docker; then
        if docker_up; then echo "docker: up   $DOCKER_SOCK  (pid $(pid_from "$D/dockerd.pid"), driver $(cat "$D/driver" 2>/dev/null))"; else echo "docker: DOWN $DOCKER_SOCK"; rc=1; fi
        if tls_up; then echo "docker-tls: up   $TLS_HOST"; else echo "docker-tls: DOWN $TLS_HOST"; rc=1; fi
    fi
    if want_podman; then
        if podman_up; then echo "podman: up   $PODMAN_SOCK  (pid $(pid_from "$P/service.pid"))"; else echo "podman: DOWN $PODMAN_SOCK"; rc=1; fi
    fi
    if want_swarm; then
        if swarm_up; then
            local sw
            sw=$(swarm_cli info --format '{{.Swarm.LocalNodeState}} manager={{.Swarm.ControlAvailable}}' </dev/null 2>/dev/null || echo unknown)
            echo "swarm: up   $SWARM_SOCK  (pid $(pid_from "$S/dockerd.pid"), driver $(cat "$S/driver" 2>/dev/null), swarm $sw)"
            [ "$sw" = "active manager=true" ] || rc=1
        else
            echo "swarm: DOWN $SWARM_SOCK"
            rc=1
        fi
    fi
    return $rc
}

cmd_env() {
    cat <<EOF
export DAC_ENGINES_DIR='$ENG'
export DAC_DOCKER_SOCK='$DOCKER_SOCK'
export DAC_PODMAN_SOCK='$PODMAN_SOCK'
export DAC_DOCKER='$(docker_cli) -H unix://$DOCKER_SOCK'
export DAC_PODMAN='podman --url unix://$PODMAN_SOCK'
export DAC_TLS_HOST='$TLS_HOST'
export DAC_TLS_DIR='$ENG/tls/client'
export DAC_TLS_WRONG_DIR='$ENG/tls-wrong'
export DAC_SWARM_SOCK='$SWARM_SOCK'
export DAC_SWARM_DOCKER='$(docker_cli) -H unix://$SWARM_SOCK'
EOF
}

cmd_purge() {
    cmd_stop
    if want_docker; then
        kill_leftovers "$CGROUP_PARENT"
        # Empty cgroup directories of our containers, deepest first, and our bridge.
        find /sys/fs/cgroup/*/"$CGROUP_PARENT" -depth -type d -exec rmdir {} + 2>/dev/null || true
        if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE" 2>/dev/null || true; fi
    fi
    if want_podman; then
        kill_leftovers libpod_parent
        pkill_conmons
    fi
    if want_swarm; then
        kill_leftovers "$SWARM_CGROUP_PARENT"
        find /sys/fs/cgroup/*/"$SWARM_CGROUP_PARENT" -depth -type d -exec rmdir {} + 2>/dev/null || true
        local br
        for br in "$SWARM_BRIDGE" "$SWARM_BRIDGE-gw"; do
            if ip link show "$br" >/dev/null 2>&1; then ip link del "$br" 2>/dev/null || true; fi
        done
    fi
    # The chosen engine's own folder and socket only; everything when none is chosen.
    local targets t
    case "${DAC_ENGINES_ONLY:-}" in
    docker) targets=("$D" "$DOCKER_SOCK") ;;
    podman) targets=("$P" "$PODMAN_SOCK") ;;
    swarm) targets=("$S" "$SWARM_SOCK") ;;
    *) targets=("$ENG") ;;
    esac
    for t in "${targets[@]}"; do
        [ -e "$t" ] || [ -S "$t" ] || continue
        unmount_under "$t"
        [ -z "$(mounts_under "$t")" ] || die "mounts remain under $t; not deleting it"
        rm -rf --one-file-system "$t"
        log "purged $t"
    done
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) if cmd_status; then exit 0; else exit 1; fi ;;
env) cmd_env ;;
purge) cmd_purge ;;
*)
    echo "usage: $0 start|stop|status|env|purge" >&2
    exit 64
    ;;
esac
