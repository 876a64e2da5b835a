#!/usr/bin/env bash
# Build DAC's test scene on one of the private engines of scripts/engines.sh (start them first).
#
#   scripts/scene.sh docker|podman
#
# Idempotent: everything labelled dac.scene (and the scene's names) is removed first.
# The scene, built from a tiny root filesystem with no registry involved:
#   images      forensic/busybox:1.35 (imported tar), forensic/app:1.0 = forensic/app:latest
#               (built FROM forensic/busybox:1.35, two more layers)
#   network     casenet (bridge)          volume  casevol
#   containers  idle1     running, a tick line on stdout and on stderr every second
#               exited1   ran, wrote to stdout and stderr, exited 0
#               paused1   running, then paused
#               tty1      running with a TTY, ticking
#               created1  created, never started
#               changes1  exited after adding /added.txt, changing /etc/motd, deleting /bin/true
#               suspect   running on casenet with casevol at /data; wrote /data/exfil.txt and
#                         /tmp/loot.txt, ticking
# DAC_SCENE_ROOTFS=busybox (default: Debian's static busybox and its applet links) or toy
# (scripts/toy.c compiled static, ~10 KB, so that exports and saved images stay small).
set -Eeuo pipefail
trap 'echo "[scene] ERROR: line $LINENO: \"$BASH_COMMAND\" failed (status $?)" >&2' ERR

HERE=$(cd "$(dirname "$0")" && pwd)
ENGINE=${1:-}
ROOTFS=${DAC_SCENE_ROOTFS:-busybox}
LABEL=dac.scene
NAMES=(idle1 exited1 paused1 tty1 created1 changes1 suspect)

log() { printf '[scene %s %s] %s\n' "$ENGINE" "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case "$ENGINE" in
docker | podman) ;;
*)
    echo "usage: $0 docker|podman   (DAC_SCENE_ROOTFS=busybox|toy)" >&2
    exit 64
    ;;
esac
case "$ROOTFS" in busybox | toy) ;; *) die "DAC_SCENE_ROOTFS must be busybox or toy, not '$ROOTFS'" ;; esac

eval "$("$HERE/engines.sh" env)"
if [ "$ENGINE" = docker ]; then
    SOCK=$DAC_DOCKER_SOCK
    read -r -a CLI <<<"$DAC_DOCKER"
    # The legacy builder: Debian's 20.10 has no buildx, and BuildKit would be a different code
    # path in the engine than the one a forensic examiner usually meets on such hosts.
    export DOCKER_BUILDKIT=0
    EXTRA=()
else
    SOCK=$DAC_PODMAN_SOCK
    read -r -a CLI <<<"$DAC_PODMAN"
    # Podman's default nofile limit (1048576) is above this machine's hard limit.
    EXTRA=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
fi
curl -sf --max-time 5 --unix-socket "$SOCK" http://localhost/_ping >/dev/null ||
    die "$ENGINE does not answer on $SOCK: run scripts/engines.sh start"

c() { "${CLI[@]}" "$@"; }
# No standard input anywhere: CI has none, and -i would wait on it.
q() { "${CLI[@]}" "$@" </dev/null >/dev/null; }

# One scene build per engine at a time (several people and test runs share the engines).
exec 9>"$DAC_ENGINES_DIR/scene-$ENGINE.lock"
flock -w 300 9 || die "another scene build on $ENGINE holds $DAC_ENGINES_DIR/scene-$ENGINE.lock"

WORK=$(mktemp -d /tmp/dac-scene.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------------------------------------
log "removing the previous scene"
ids=$(c ps -aq --filter "label=$LABEL" </dev/null || true)
# shellcheck disable=SC2086
[ -z "$ids" ] || q rm -f $ids || true
for n in "${NAMES[@]}"; do q rm -f "$n" 2>/dev/null || true; done
q network rm casenet 2>/dev/null || true
q volume rm -f casevol 2>/dev/null || true
ids=$(c images -q --filter "label=$LABEL" </dev/null | sort -u || true)
for img in forensic/app:latest forensic/app:1.0 forensic/busybox:1.35 $ids; do
    q rmi -f "$img" 2>/dev/null || true
done

# ---------------------------------------------------------------------------------------------
log "building the $ROOTFS root filesystem"
R=$WORK/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/data" "$R/root"
chmod 1777 "$R/tmp"
if [ "$ROOTFS" = busybox ]; then
    BB=/bin/busybox
    [ -x "$BB" ] || die "$BB missing (apt-get install busybox-static)"
    headers=$(LC_ALL=C readelf -l "$BB" 2>&1) || die "readelf cannot read $BB: $headers"
    if grep -q INTERP <<<"$headers"; then
        die "$BB is dynamically linked; install busybox-static"
    fi
    cp "$BB" "$R/bin/busybox"
    for a in $("$BB" --list); do
        [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"
    done
    [ -e "$R/bin/true" ] || die "busybox has no 'true' applet"
    # sed reads to the end: with head, busybox could die of SIGPIPE and pipefail stop the script.
    version=$({ "$BB" 2>&1 || true; } | sed -n '1s/^BusyBox \(v[^ ]*\).*/\1/p')
else
    gcc -static -Os -s -nostdlib -fno-builtin -fno-stack-protector -fno-asynchronous-unwind-tables \
        -o "$R/bin/toy" "$HERE/toy.c"
    ln -s toy "$R/bin/true"
    version=toy
fi
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
printf 'DAC forensic test scene (%s)\n' "$ROOTFS" >"$R/etc/motd"
# Fixed owner and times: the layer's bytes, and so its digest, do not depend on when or where the
# scene was built.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 -C "$R" -cf "$WORK/rootfs.tar" .
log "rootfs: $(stat -c %s "$WORK/rootfs.tar") bytes, version: $version"

if [ "$ROOTFS" = busybox ]; then
    base_cmd='["/bin/sh"]'
    app_cmd='["/bin/sh", "-c", "cat /app/app.txt"]'
else
    base_cmd='["/bin/true"]'
    app_cmd='["/bin/toy", "out", "forensic app"]'
fi
q import --change "LABEL $LABEL=$ROOTFS" --change "CMD $base_cmd" "$WORK/rootfs.tar" forensic/busybox:1.35

mkdir -p "$WORK/app"
printf 'forensic app, version 1.0\n' >"$WORK/app/app.txt"
printf '{"mode": "forensic", "debug": false}\n' >"$WORK/app/config.json"
cat >"$WORK/app/Dockerfile" <<EOF
FROM forensic/busybox:1.35
LABEL $LABEL=$ROOTFS org.opencontainers.image.title="forensic app"
ENV APP_MODE=forensic
COPY app.txt /app/app.txt
COPY config.json /app/config.json
CMD $app_cmd
EOF
log "building forensic/app:1.0"
q build -t forensic/app:1.0 -f "$WORK/app/Dockerfile" "$WORK/app"
q tag forensic/app:1.0 forensic/app:latest

q network create --label "$LABEL=$ROOTFS" casenet
q volume create --label "$LABEL=$ROOTFS" casevol

# ---------------------------------------------------------------------------------------------
if [ "$ROOTFS" = busybox ]; then
    TICK='trap "exit 0" TERM INT; i=0; while :; do i=$((i+1)); echo "tick $i stdout"; echo "tick $i stderr" >&2; sleep 1; done'
    CMD_IDLE=(/bin/sh -c "$TICK")
    CMD_EXITED=(/bin/sh -c 'echo "exited1 says hello on stdout"; echo "exited1 complains on stderr" >&2')
    CMD_CREATED=(/bin/true)
    CMD_CHANGES=(/bin/sh -c 'echo added > /added.txt && echo changed > /etc/motd && rm /bin/true && echo "changes done"')
    CMD_SUSPECT=(/bin/sh -c "echo 'exfiltrated case data' > /data/exfil.txt && echo loot > /tmp/loot.txt && $TICK")
else
    CMD_IDLE=(/bin/toy tick 0)
    CMD_EXITED=(/bin/toy out "exited1 says hello on stdout" err "exited1 complains on stderr")
    CMD_CREATED=(/bin/true)
    CMD_CHANGES=(/bin/toy put /added.txt added put /etc/motd changed rm /bin/true out "changes done")
    CMD_SUSPECT=(/bin/toy put /data/exfil.txt "exfiltrated case data" put /tmp/loot.txt loot tick 0)
fi

L=(--label "$LABEL=$ROOTFS")
log "starting containers"
q run -d --name idle1 "${L[@]}" "${EXTRA[@]}" forensic/busybox:1.35 "${CMD_IDLE[@]}"
q run -d --name exited1 "${L[@]}" "${EXTRA[@]}" forensic/busybox:1.35 "${CMD_EXITED[@]}"
q run -d --name paused1 "${L[@]}" "${EXTRA[@]}" forensic/busybox:1.35 "${CMD_IDLE[@]}"
q run -d -t --name tty1 "${L[@]}" "${EXTRA[@]}" forensic/busybox:1.35 "${CMD_IDLE[@]}"
q create --name created1 "${L[@]}" "${EXTRA[@]}" forensic/busybox:1.35 "${CMD_CREATED[@]}"
q run -d --name changes1 "${L[@]}" "${EXTRA[@]}" forensic/app:1.0 "${CMD_CHANGES[@]}"
q run -d --name suspect "${L[@]}" "${EXTRA[@]}" --network casenet -v casevol:/data forensic/app:1.0 "${CMD_SUSPECT[@]}"

status() { c inspect --format '{{.State.Status}}' "$1" </dev/null 2>/dev/null || echo missing; }
wait_logs() {
    local n=$1 pat=$2 i out
    for ((i = 0; i < 80; i++)); do
        # Not `logs | grep -q`: grep may exit first and pipefail would count the SIGPIPE.
        out=$(c logs "$n" </dev/null 2>&1 || true)
        if grep -q -- "$pat" <<<"$out"; then return 0; fi
        sleep 0.25
    done
    die "$n did not print '$pat'; logs: $(c logs "$n" </dev/null 2>&1 | tail -n 5)"
}
wait_exit() {
    local n=$1 i s
    for ((i = 0; i < 80; i++)); do
        s=$(status "$n")
        [ "$s" = exited ] && return 0
        sleep 0.25
    done
    die "$n did not exit (state $s); logs: $(c logs "$n" </dev/null 2>&1 | tail -n 5)"
}
wait_exit exited1
wait_exit changes1
for n in idle1 paused1 tty1 suspect; do wait_logs "$n" "tick 2"; done
q pause paused1

# ---------------------------------------------------------------------------------------------
declare -A WANT=([idle1]=running [exited1]=exited [paused1]=paused [tty1]=running [created1]=created
    [changes1]=exited [suspect]=running)
bad=0
for n in "${NAMES[@]}"; do
    s=$(status "$n")
    if [ "$s" != "${WANT[$n]}" ]; then
        log "MISMATCH: $n is $s, wanted ${WANT[$n]}"
        bad=1
    fi
done
diff=$(c diff changes1 </dev/null 2>&1 || true)
for want in 'A /added.txt' 'C /etc/motd' 'D /bin/true'; do
    grep -qx -- "$want" <<<"$diff" || { log "MISMATCH: changes1 diff lacks '$want': $diff"; bad=1; }
done
[ "$bad" = 0 ] || die "the scene is not as wanted"

echo "=== scene on $ENGINE ($ROOTFS rootfs) ==="
c ps -a --filter "label=$LABEL" --format '{{.Names}}\t{{.Status}}\t{{.Image}}\t{{.ID}}' </dev/null | sort
c images --format '{{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Size}}' </dev/null | grep forensic/ | sort
echo "network: $(c network ls --filter name=casenet --format '{{.Name}} {{.Driver}}' </dev/null)"
echo "volume:  $(c volume ls --filter name=casevol --format '{{.Name}} {{.Driver}}' </dev/null)"
echo "changes1 diff: $(tr '\n' ' ' <<<"$diff")"
