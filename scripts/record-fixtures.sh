#!/usr/bin/env bash
# Re-record the replay fixtures under fixtures/ from the real engines of scripts/engines.sh:
#
#   scripts/record-fixtures.sh            # all five recordings
#   scripts/record-fixtures.sh swarm      # only the swarm manager's
#
#   fixtures/docker-20.10/          a full collection of the toy scene from Docker
#   fixtures/podman-<ver>/          the same from Podman
#   fixtures/docker-20.10-vanish/   a targeted collection during which the target is removed
#   fixtures/podman-<ver>-vanish/   (real 404s from the engine, mid-run)
#   fixtures/docker-20.10-swarm/    metadata of the single-node swarm manager (services, tasks,
#                                   nodes, secrets, configs; its join tokens are the throwaway
#                                   loopback cluster's own)
#
# The scene is built from scripts/toy.c (DAC_SCENE_ROOTFS=toy) so exports and saves stay small;
# the default busybox scene is rebuilt at the end for the live tests.
set -Eeuo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
cd "$ROOT"
log() { printf '[record %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

"$HERE/engines.sh" start
eval "$("$HERE/engines.sh" env)"
cargo build --locked --quiet
DAC="$ROOT/target/debug/dac"
PODMAN_VER=$(podman --version | awk '{print $3}' | cut -d. -f1,2)

record() { # engine socket folder [collect args...]
    local engine=$1 sock=$2 name=$3
    shift 3
    local dir="$ROOT/fixtures/$name" out
    out=$(mktemp -d)
    rm -rf "$dir" 2>/dev/null || true
    log "recording $name"
    "$DAC" collect -H "unix://$sock" --record "$dir" --out "$out/bag" --quiet --case FIXTURE "$@" || true
    "$DAC" verify "$out/bag" >/dev/null || log "WARNING: the bundle recorded for $name does not verify"
    rm -rf "$out"
}

# A collection that loses its target mid-run: the target is removed as soon as the engine
# reports our `top` on it, so the metadata, log and export requests meet a real 404. The
# paused container of the scene is collected too: the daemon takes a second to give its
# stats, which leaves the removal time to finish before the metadata requests start.
record_vanish() { # engine cli socket folder
    local engine=$1 cli=$2 sock=$3 name=$4 try
    for try in 1 2 3 4 5 6 7 8; do
        $cli rm -f vanish1 >/dev/null 2>&1 || true
        $cli run -d --name vanish1 --label dac.scene=1 ${EXTRA_RUN:-} forensic/busybox:1.35 /bin/toy tick 0 >/dev/null
        # The trigger is the recording itself: once the request for processes is on disk,
        # the container goes (Podman emits no event for a read, so events cannot serve here).
        local dir="$ROOT/fixtures/$name"
        rm -rf "$dir"
        ( until grep -qs 'GET [^ ]*/top' "$dir"/*.req 2>/dev/null; do sleep 0.01; done
          $cli rm -f vanish1 >/dev/null 2>&1 ) &
        local watcher=$!
        sleep 0.5
        record "$engine" "$sock" "$name" --container vanish1 --container paused1 --no-save
        kill "$watcher" 2>/dev/null || true
        wait "$watcher" 2>/dev/null || true
        if grep -q '"status": *404\|"status":404' "$ROOT/fixtures/$name/manifest.json"; then
            log "$name holds a real 404 (try $try)"
            return 0
        fi
        log "the removal came too late on try $try; again"
    done
    log "ERROR: could not catch the vanishing container in $name"
    return 1
}

# The swarm engine keeps its own objects (engines.sh makes them); no scene is needed.
record docker "$DAC_SWARM_SOCK" docker-20.10-swarm --no-export --no-save
if [ "${1:-}" = swarm ]; then
    du -sh "$ROOT/fixtures/docker-20.10-swarm"
    exit 0
fi

DAC_SCENE_ROOTFS=toy "$HERE/scene.sh" docker
record docker "$DAC_DOCKER_SOCK" docker-20.10
EXTRA_RUN="" record_vanish docker "$DAC_DOCKER" "$DAC_DOCKER_SOCK" docker-20.10-vanish

DAC_SCENE_ROOTFS=toy "$HERE/scene.sh" podman
record podman "$DAC_PODMAN_SOCK" "podman-$PODMAN_VER"
EXTRA_RUN="--ulimit nofile=1024:1024 --ulimit nproc=4096:4096" \
    record_vanish podman "$DAC_PODMAN" "$DAC_PODMAN_SOCK" "podman-$PODMAN_VER-vanish"

"$HERE/scene.sh" docker
"$HERE/scene.sh" podman
du -sh "$ROOT/fixtures"/*
log "done"
