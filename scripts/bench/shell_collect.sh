#!/usr/bin/env bash
# The way an examiner collects by hand, as a peer for the benchmark: a loop of docker CLI commands
# (Debian's 20.10 client), each piped through `tee FILE | sha256sum`, one after another.
#
#   shell_collect.sh --host unix:///tmp/dac-bench/docker.sock --out DIR [--no-export] [--no-save]
#
# Same tables as dockerpy_collect.py: events until now, containers (ps, inspect, top of running
# ones, logs with timestamps, export), images (ls, inspect, history, save), networks, volumes,
# plugins, info, version, system df. SHA256SUMS lists every file.
set -uo pipefail

HOST='' OUT='' NO_EXPORT='' NO_SAVE=''
while [ $# -gt 0 ]; do
    case "$1" in
    --host) HOST=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-export) NO_EXPORT=1; shift ;;
    --no-save) NO_SAVE=1; shift ;;
    *) echo "usage: $0 --host URL --out DIR [--no-export] [--no-save]" >&2; exit 64 ;;
    esac
done
[ -n "$HOST" ] && [ -n "$OUT" ] || { echo "usage: $0 --host URL --out DIR [--no-export] [--no-save]" >&2; exit 64; }
DOCKER=${DAC_BENCH_DOCKER_CLI:-/usr/bin/docker}
export DOCKER_HOST=$HOST
mkdir -p "$OUT"
cd "$OUT" || exit 2
SUMS=SHA256SUMS
: >"$SUMS"
rc=0

# grab FILE CMD...: run CMD, keep its output in FILE and its hash in SHA256SUMS.
grab() {
    local f=$1
    shift
    mkdir -p "$(dirname "$f")"
    if ! "$@" | tee "$f" | sha256sum | sed "s|-\$|$f|" >>"$SUMS"; then
        echo "shell_collect: failed: $*" >&2
        rc=1
    fi
}

now=$(date +%s)
grab system/events.jsonl "$DOCKER" events --since 0 --until "$now" --format '{{json .}}'
grab containers/ps.json "$DOCKER" ps -a --no-trunc --format '{{json .}}'
for id in $("$DOCKER" ps -aq --no-trunc); do
    grab "containers/$id/inspect.json" "$DOCKER" inspect "$id"
    if [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$id")" = true ]; then
        grab "containers/$id/top.txt" "$DOCKER" top "$id"
    fi
    grab "containers/$id/logs.txt" sh -c '"$0" logs -t "$1" 2>&1' "$DOCKER" "$id"
    if [ -z "$NO_EXPORT" ]; then
        grab "containers/$id/export.tar" "$DOCKER" export "$id"
    fi
done
grab images/ls.json "$DOCKER" images --no-trunc --format '{{json .}}'
for id in $("$DOCKER" images -q --no-trunc | sort -u); do
    n=${id//:/_}
    grab "images/$n/inspect.json" "$DOCKER" image inspect "$id"
    grab "images/$n/history.txt" "$DOCKER" history --no-trunc "$id"
    if [ -z "$NO_SAVE" ]; then
        grab "images/$n/save.tar" "$DOCKER" save "$id"
    fi
done
grab networks/ls.json "$DOCKER" network ls --no-trunc --format '{{json .}}'
for id in $("$DOCKER" network ls -q --no-trunc); do
    grab "networks/$id.json" "$DOCKER" network inspect -v "$id"
done
grab volumes/ls.json "$DOCKER" volume ls --format '{{json .}}'
for v in $("$DOCKER" volume ls -q); do
    grab "volumes/$(printf %s "$v" | sha256sum | cut -c1-64).json" "$DOCKER" volume inspect "$v"
done
grab plugins/ls.json "$DOCKER" plugin ls --no-trunc --format '{{json .}}'
grab system/info.json "$DOCKER" info --format '{{json .}}'
grab system/version.json "$DOCKER" version --format '{{json .}}'
grab system/df.txt "$DOCKER" system df -v
exit $rc
