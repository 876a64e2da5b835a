#!/usr/bin/env bash
# The floor for the benchmark: every request that `dac collect` sends, straight to the socket with
# curl, bodies to /dev/null, a few at a time (xargs -P, default 4). Nothing is written, hashed,
# parsed or checked, except the five list answers, which are needed to know what to ask next.
#
#   floor.sh --sock PATH [--no-export] [--no-save] [-P N] [--flat] [--to DIR] [--skip ERE]
#
# Default (phased): the collector's own plan, tier after tier, as src/collect.rs does it:
#   buffered events (and the live stream, held open to the end), container list;
#   top and one-shot stats of running/paused containers, all at once, in the background;
#   info; inspect and changes of every container, version, df, image/network/volume/plugin lists;
#   inspect and history of every image, inspect of every network (verbose), volume and plugin;
#   logs of every container; then (once top and stats have answered) exports, then image saves
#   (largest first).
# --flat: no tiers: after the lists, every request in one queue, exports and saves first (stats
# beside it, all at once).
# Within a tier the URLs are split into N batches, one curl per batch (one connection, reused),
# N curls at once; exports and saves get a curl each.
# --to DIR: bodies are written to files in DIR instead of /dev/null (still not hashed): what
# merely landing the evidence on the disk costs.
# --skip ERE: leave out the requests whose path matches ERE (e.g. '/changes$|/stats'), to see
# what one kind of request costs the daemon.
set -Eeuo pipefail

SOCK='' NO_EXPORT='' NO_SAVE='' P=4 FLAT='' TO='' SKIP='^$'
while [ $# -gt 0 ]; do
    case "$1" in
    --sock) SOCK=$2; shift 2 ;;
    --no-export) NO_EXPORT=1; shift ;;
    --no-save) NO_SAVE=1; shift ;;
    -P) P=$2; shift 2 ;;
    --flat) FLAT=1; shift ;;
    --to) TO=$2; shift 2 ;;
    --skip) SKIP=$2; shift 2 ;;
    *) echo "usage: $0 --sock PATH [--no-export] [--no-save] [-P N] [--flat] [--to DIR]" >&2; exit 64 ;;
    esac
done
[ -S "$SOCK" ] || { echo "floor: no socket at '$SOCK'" >&2; exit 2; }
if [ -n "$TO" ]; then mkdir -p "$TO"; TO=$(cd "$TO" && pwd); fi
export SOCK TO

T=$(mktemp -d /tmp/dac-bench-floor.XXXXXX)
LIVE=
cleanup() {
    [ -n "$LIVE" ] && kill "$LIVE" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

B=http://localhost
T0=$(date +%s%N)
# With DAC_BENCH_TRACE=1, the time of each phase's end on stderr.
mark() { [ -z "${DAC_BENCH_TRACE:-}" ] || echo "floor: $(( ($(date +%s%N) - T0) / 1000000 )) ms $1" >&2; }
get() { curl -sf --unix-socket "$SOCK" "$B$1"; }
# Percent-encode one path segment (as src/endpoints.rs does).
enc() { jq -rn --arg s "$1" '$s|@uri'; }

# batch: read URLs (paths) on stdin, fetch them with P curls at once, bodies to /dev/null.
batch() {
    local n per
    mapfile -t urls < <(grep -vE "$SKIP" || true)
    n=${#urls[@]}
    [ "$n" -gt 0 ] || return 0
    per=$(((n + P - 1) / P))
    printf '%s\n' "${urls[@]}" | xargs -d '\n' -P "$P" -n "$per" bash -c '
        a=(); for u in "$@"; do o=/dev/null; [ -z "$TO" ] || o=$TO/${u//[^A-Za-z0-9]/_}; a+=("http://localhost$u" -o "$o"); done
        curl -s --unix-socket "$SOCK" "${a[@]}"' _
}
# heavy: one curl per URL (exports and saves), P at once.
heavy() {
    { grep -vE "$SKIP" || true; } | xargs -d '\n' -r -P "$P" -n 1 bash -c 'u=$1; o=/dev/null; [ -z "$TO" ] || o=$TO/${u//[^A-Za-z0-9]/_}
        curl -s --unix-socket "$SOCK" -o "$o" "http://localhost$u"' _
}

V=$(curl -sfI --unix-socket "$SOCK" "$B/_ping" | tr -d '\r' | awk -F': ' 'tolower($1)=="api-version"{print $2}')
V=/v${V:-1.41}
now=$(date +%s.%N)
get "$V/events?since=0&until=$now" >/dev/null
curl -s --unix-socket "$SOCK" -o /dev/null "$B$V/events?since=$now" &
LIVE=$!
get "$V/containers/json?all=1" >"$T/containers.json"

# One line per container: id, state, image id.
jq -r '.[] | [.Id, .State, .ImageID] | @tsv' "$T/containers.json" >"$T/c.tsv"
ids() { cut -f1 "$T/c.tsv"; }

top_urls() {
    awk -F'\t' -v v="$V" '$2=="running"||$2=="paused" { print v "/containers/" $1 "/top" }' "$T/c.tsv"
}
stats_urls() {
    awk -F'\t' -v v="$V" '$2=="running"||$2=="paused" { print v "/containers/" $1 "/stats?stream=false&one-shot=true" }' "$T/c.tsv"
}
# Processes and stats all at once, one curl each (as dac starts them): the daemon's stats
# collector publishes once a second to everyone subscribed, so stats asked one after another
# cost up to a second each (12 containers: 11 s in sequence, 1 s at once).
all_at_once() {
    { grep -vE "$SKIP" || true; } | xargs -d '\n' -r -P 512 -n 1 bash -c 'curl -s --unix-socket "$SOCK" -o /dev/null "http://localhost$1"' _
}
meta_urls() {
    ids | awk -v v="$V" '{ print v "/containers/" $1 "/json"; print v "/containers/" $1 "/changes" }'
    printf '%s\n' "$V/version" "$V/system/df"
}
lists() {
    local pids=()
    get "$V/images/json" >"$T/images.json" & pids+=($!)
    get "$V/networks" >"$T/networks.json" & pids+=($!)
    get "$V/volumes" >"$T/volumes.json" & pids+=($!)
    get "$V/plugins" >"$T/plugins.json" & pids+=($!)
    wait "${pids[@]}"
}
object_urls() {
    local id
    { jq -r '.[].Id' "$T/images.json"; cut -f3 "$T/c.tsv"; } | sort -u | while read -r id; do
        [ -n "$id" ] || continue
        id=$(enc "$id")
        printf '%s\n' "$V/images/$id/json" "$V/images/$id/history"
    done
    jq -r '.[].Id' "$T/networks.json" | awk -v v="$V" '{ print v "/networks/" $1 "?verbose=1" }'
    jq -r '(.Volumes // [])[].Name' "$T/volumes.json" | while read -r id; do echo "$V/volumes/$(enc "$id")"; done
    jq -r '.[].Name' "$T/plugins.json" | while read -r id; do echo "$V/plugins/$(enc "$id")/json"; done
}
log_urls() {
    ids | awk -v v="$V" '{ print v "/containers/" $1 "/logs?stdout=1&stderr=1&timestamps=1&follow=0&tail=all" }'
}
heavy_urls() {
    [ -n "$NO_EXPORT" ] || ids | awk -v v="$V" '{ print v "/containers/" $1 "/export" }'
    if [ -z "$NO_SAVE" ]; then
        jq -r 'sort_by(-.Size) | .[].Id' "$T/images.json" | while read -r id; do echo "$V/images/$(enc "$id")/get"; done
    fi
}

if [ -z "$FLAT" ]; then
    # Metadata overlaps the volatile requests' wait; exports wait for them to finish.
    { top_urls; stats_urls; } | all_at_once &
    S=$!
    get "$V/info" >/dev/null
    lists &
    L=$!
    meta_urls | batch
    wait "$L"
    object_urls | batch
    mark metadata
    log_urls | batch
    mark logs
    wait "$S"
    mark volatile
    heavy_urls | heavy
    mark exports+saves
else
    lists
    stats_urls | all_at_once &
    S=$!
    { heavy_urls; top_urls; echo "$V/info"; meta_urls; object_urls; log_urls; } | { grep -vE "$SKIP" || true; } >"$T/all"
    # Heavy first, one curl each; the rest in P batches sharing the same P slots.
    { grep -E '/(export|get)$' "$T/all" || true; } >"$T/h"
    { grep -vE '/(export|get)$' "$T/all" || true; } >"$T/s"
    per=$((($(wc -l <"$T/s") + P - 1) / P))
    [ "$per" -gt 0 ] || per=1
    { cat "$T/h"; split -n "l/$P" "$T/s" "$T/part."; ls "$T"/part.* | sed 's/^/@/'; } |
        xargs -d '\n' -r -P "$P" -n 1 bash -c '
            if [ "${1#@}" != "$1" ]; then
                a=(); while IFS= read -r u; do o=/dev/null; [ -z "$TO" ] || o=$TO/${u//[^A-Za-z0-9]/_}; a+=("http://localhost$u" -o "$o"); done <"${1#@}"
                [ ${#a[@]} -eq 0 ] || curl -s --unix-socket "$SOCK" "${a[@]}"
            else
                u=$1; o=/dev/null; [ -z "$TO" ] || o=$TO/${u//[^A-Za-z0-9]/_}
                curl -s --unix-socket "$SOCK" -o "$o" "http://localhost$u"
            fi' _
    wait "$S"
fi
