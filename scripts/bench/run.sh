#!/usr/bin/env bash
# DAC's benchmark (issue 5): dac against its peers and the curl floor, on the same scenes, in the
# same run, on a private Docker 20.10 engine under /tmp/dac-bench.
#
#   scripts/bench/run.sh [--rounds N] [--scenes "full meta big"] [--settle S] [--keep] [--no-build]
#
#   --rounds N     rounds per scene (default 3); each round runs every tool once, medians reported
#   --scenes LIST  which scenes (default "full meta big"; see scene.sh)
#   --settle S     seconds to wait after dropping the page cache before each run (default 5)
#   --keep         leave the engine and the last scene running at the end
#   (DAC_BENCH_QUIET_WAIT=S: how long to wait for a quiet machine before each run, default 30)
#   --no-build     use target/release/dac as it is
#   --extra        also run, on the meta scene, the analysis variants: docker-py-dacset (docker-py
#                  asking dac's requests: + stats and changes), floor-nochanges and floor-nostats
#
# Tools, each started on a fresh scratch folder on the same disk as the engine's data root
# (/tmp/dac-bench/scratch, deleted after each run), after `sync; echo 3 > drop_caches`:
#   dac          target/release/dac collect -H unix://SOCK --out DIR --quiet
#                (meta scene: --no-export --no-save)
#   dac-six      meta scene only: dac on the paper's six tables, as docker-py asks them
#                (--no-export --no-save --no-stats --no-changes)
#   docker-py    dockerpy_collect.py (docker-py 7.1.0 in /tmp/dac-bench/venv), sequential
#   shell        shell_collect.sh (docker CLI | tee | sha256sum)
#   floor        floor.sh: dac's requests with curl, tier by tier, bodies to /dev/null, -P 4
#   floor-flat   floor.sh --flat: the same requests with no tiers (exports first)
#   floor-disk   floor.sh --to DIR: the tiered floor writing the bodies to files (not hashed)
#   floor-six    meta scene only: the tiered floor of dac-six's requests
# Wall time from the shell (date +%s%N around the command), peak RSS from /usr/bin/time -f %M,
# the tool's CPU (%U + %S), the bench engine's (dockerd + its containerd, with their reaped
# children such as dockerd's tar helper) and everyone else's.
# Prints the table and writes scripts/bench/results.md; raw runs in /tmp/dac-bench/results/.
set -Eeuo pipefail
trap 'echo "[bench] ERROR: line $LINENO: \"$BASH_COMMAND\" failed (status $?)" >&2' ERR

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROUNDS=3
SCENES="full meta big"
SETTLE=5
QUIET_WAIT=${DAC_BENCH_QUIET_WAIT:-30}
KEEP=
BUILD=1
EXTRA=
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --scenes) SCENES=$2; shift 2 ;;
    --settle) SETTLE=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-build) BUILD=; shift ;;
    --extra) EXTRA=1; shift ;;
    -h | --help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 64 ;;
    esac
done

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

eval "$("$HERE/engine.sh" env)"
BENCH=$DAC_BENCH_DIR
SOCK=$DAC_BENCH_SOCK
SCRATCH=$BENCH/scratch
RES=$BENCH/results
VENV=$BENCH/venv
DAC=$REPO/target/release/dac

finish() {
    local rc=$?
    if [ -z "$KEEP" ]; then
        log "cleaning the scene and stopping the bench engine (--keep to leave it)"
        "$HERE/scene.sh" clean >/dev/null 2>&1 || true
        "$HERE/engine.sh" stop || true
    fi
    rm -rf "$SCRATCH"
    exit $rc
}

# ---------------------------------------------------------------------------------------------
"$HERE/engine.sh" start
trap finish EXIT
trap 'exit 130' INT TERM

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import docker, sys; sys.exit(docker.__version__ != "7.1.0")' 2>/dev/null; then
    log "installing docker-py 7.1.0 into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check docker==7.1.0
fi
if [ -n "$BUILD" ]; then
    log "cargo build --release"
    (cd "$REPO" && cargo build --release -q)
fi
[ -x "$DAC" ] || die "$DAC missing (run without --no-build)"
# A private copy: a build in the work tree during the run must not swap the binary under us.
# The commit is taken now, with the build, not at the end of the run.
commit=$(cd "$REPO" && git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(cd "$REPO" && git status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit (with uncommitted changes)"; fi
cp "$DAC" "$BENCH/dac"
DAC_SHA=$(sha256sum "$BENCH/dac" | cut -c1-64)
DAC=$BENCH/dac

DROP=yes
if ! { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    DROP="no (not permitted)"
    log "cannot drop the page cache: runs are warm"
fi

rm -rf "$RES"
mkdir -p "$RES"
RUNS=$RES/runs.tsv
printf 'scene\tround\ttool\twall_s\trss_kb\trc\ttool_cpu_s\tengine_cpu_s\tother_cpu_s\n' >"$RUNS"

# The machine may be shared (other builds and tests on the same cores): before each run, wait up to
# QUIET_WAIT seconds for a 2 s window in which the machine is less than 15% busy, and account,
# for each run, the CPU time that neither the tool nor the bench engine used ("other CPU").
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
engine_ticks() {
    local p t=0 pid
    for p in "$BENCH/docker/dockerd.pid" "$BENCH/docker/exec/containerd/containerd.pid"; do
        pid=$(tr -dc '0-9' <"$p" 2>/dev/null || true)
        # utime + stime + the reaped children's (dockerd re-execs itself to build export tars)
        [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] && t=$((t + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pid/stat")))
    done
    echo "$t"
}
wait_quiet() {
    local a b i cores limit
    cores=$(nproc)
    limit=$((2 * 100 * cores * 15 / 100))
    for ((i = 0; i < QUIET_WAIT; i += 2)); do
        a=$(busy_ticks); sleep 2; b=$(busy_ticks)
        [ $((b - a)) -lt "$limit" ] && return 0
    done
    log "the machine stayed busy ($((b - a)) of $((2 * 100 * cores)) ticks in 2 s); running anyway"
}

# run_tool SCENE ROUND TOOL: one timed run on a fresh scratch folder.
run_tool() {
    local scene=$1 round=$2 tool=$3 out meta=() cmd t0 t1 rc rss u s engine
    out=$SCRATCH/$tool
    rm -rf "$SCRATCH"
    mkdir -p "$SCRATCH"
    [ "$scene" = meta ] && meta=(--no-export --no-save)
    case "$tool" in
    dac) cmd=("$DAC" collect -H "unix://$SOCK" --out "$out" --quiet "${meta[@]}") ;;
    dac-six) cmd=("$DAC" collect -H "unix://$SOCK" --out "$out" --quiet --no-stats --no-changes "${meta[@]}") ;;
    docker-py) cmd=("$VENV/bin/python" "$HERE/dockerpy_collect.py" --host "unix://$SOCK" --out "$out" "${meta[@]}") ;;
    shell) cmd=("$HERE/shell_collect.sh" --host "unix://$SOCK" --out "$out" "${meta[@]}") ;;
    floor) cmd=("$HERE/floor.sh" --sock "$SOCK" "${meta[@]}") ;;
    floor-flat) cmd=("$HERE/floor.sh" --sock "$SOCK" --flat "${meta[@]}") ;;
    floor-disk) cmd=("$HERE/floor.sh" --sock "$SOCK" --to "$out" "${meta[@]}") ;;
    docker-py-dacset) cmd=("$VENV/bin/python" "$HERE/dockerpy_collect.py" --host "unix://$SOCK" --out "$out" --dac-set "${meta[@]}") ;;
    floor-nochanges) cmd=("$HERE/floor.sh" --sock "$SOCK" --skip '/changes$' "${meta[@]}") ;;
    floor-nostats) cmd=("$HERE/floor.sh" --sock "$SOCK" --skip '/stats[?]' "${meta[@]}") ;;
    floor-six) cmd=("$HERE/floor.sh" --sock "$SOCK" --skip '/changes$|/stats[?]' "${meta[@]}") ;;
    *) die "unknown tool $tool" ;;
    esac
    wait_quiet
    if [ "$DROP" = yes ]; then
        sync
        echo 3 >/proc/sys/vm/drop_caches
        sleep "$SETTLE"
    fi
    local b0 e0 b1 e1 cpu other
    b0=$(busy_ticks); e0=$(engine_ticks)
    t0=$(date +%s%N)
    set +e
    /usr/bin/time -f '%M %U %S' -o "$RES/rss" "${cmd[@]}" >"$RES/$scene-$tool-r$round.out" 2>"$RES/$scene-$tool-r$round.err"
    rc=$?
    set -e
    t1=$(date +%s%N)
    b1=$(busy_ticks); e1=$(engine_ticks)
    read -r rss u s < <(tail -n 1 "$RES/rss")
    cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
    other=$(awk -v b="$((b1 - b0))" -v e="$((e1 - e0))" -v c="$cpu" 'BEGIN { o = (b - e) / 100 - c; if (o < 0) o = 0; printf "%.2f", o }')
    engine=$(awk -v e="$((e1 - e0))" 'BEGIN { printf "%.2f", e / 100 }')
    if [[ $tool == dac* ]] && [ -f "$out/logs/acquisition.jsonl" ]; then
        cp "$out/logs/acquisition.jsonl" "$RES/$scene-$tool-r$round.jsonl"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scene" "$round" "$tool" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')" "${rss:-0}" "$rc" "$cpu" "$engine" "$other" >>"$RUNS"
    log "$scene r$round $tool: $(tail -n 1 "$RUNS" | cut -f4) s, $((${rss:-0} / 1024)) MiB, exit $rc, cpu $cpu s, engine $engine s, other $other s"
    rm -rf "$SCRATCH"
}

for scene in $SCENES; do
    case "$scene" in
    full) tools=(dac docker-py shell floor floor-flat floor-disk) ;;
    meta) tools=(dac dac-six docker-py shell floor floor-flat floor-six)
        [ -z "$EXTRA" ] || tools+=(docker-py-dacset floor-nochanges floor-nostats) ;;
    big) tools=(dac docker-py shell floor floor-disk) ;;
    *) die "unknown scene $scene" ;;
    esac
    log "building scene $scene"
    "$HERE/scene.sh" "$scene"
    /usr/bin/docker -H "unix://$SOCK" ps -a --size --format '{{.Names}}\t{{.Status}}\t{{.Size}}' </dev/null >"$RES/$scene-scene.txt"
    for ((r = 1; r <= ROUNDS; r++)); do
        # A different tool goes first in each round, so that drift in the machine spreads out.
        n=${#tools[@]}
        for ((i = 0; i < n; i++)); do
            run_tool "$scene" "$r" "${tools[$(((i + r - 1) % n))]}"
        done
    done
done

# ---------------------------------------------------------------------------------------------
{
    echo "date_utc=$(date -u +%FT%TZ)"
    echo "nproc=$(nproc)"
    echo "cpu=$(LC_ALL=C lscpu | sed -n 's/^Model name: *//p' | head -1)"
    echo "cpu_flags_sha=$(grep -qw sha_ni /proc/cpuinfo && echo sha_ni || echo none)"
    echo "ram=$(free -h | awk '/^Mem:/ {print $2}')"
    src=$(df --output=source "$BENCH" | tail -1)
    echo "disk=$src, $(df --output=fstype "$BENCH" | tail -1 | tr -d ' '), $(df -h --output=size "$BENCH" | tail -1 | tr -d ' '), $(lsblk -dno ROTA "$src" 2>/dev/null | tr -d ' ' | sed 's/^1$/reported rotational/;s/^0$/non-rotational/')"
    # A virtio balloon with free-page reporting hands freed memory back to the host: the first
    # write into it after a cache drop costs host page faults (seen here: ~1.8 s of system time
    # per GiB written), for every tool that writes and for the engine filling its page cache.
    echo "virt=$(systemd-detect-virt 2>/dev/null || echo unknown); virtio_balloon driver: $(compgen -G '/sys/bus/virtio/drivers/virtio_balloon/virtio*' >/dev/null && echo bound || echo absent)"
    echo "kernel=$(uname -r)"
    echo "docker=$(curl -s --unix-socket "$SOCK" http://localhost/version | jq -r '"\(.Version) (API \(.ApiVersion)), storage driver " ' 2>/dev/null)$(curl -s --unix-socket "$SOCK" http://localhost/info | jq -r .Driver 2>/dev/null)"
    echo "dac_commit=$commit (at build time)"
    echo "dac_binary=target/release/dac (cargo build --release), sha256 $DAC_SHA, $("$DAC" --version 2>/dev/null | head -1)"
    echo "rustc=$(cd "$REPO" && rustc --version 2>/dev/null)"
    echo "docker_py=$("$VENV/bin/python" -c 'import docker; print(docker.__version__)') on $("$VENV/bin/python" --version 2>&1)"
    echo "docker_cli=$(/usr/bin/docker --version)"
    echo "curl=$(curl --version | head -1 | cut -d' ' -f1-2)"
    echo "drop_caches=$DROP, settle ${SETTLE} s"
    echo "rounds=$ROUNDS"
} >"$RES/machine.txt"

python3 "$HERE/report.py" "$RES" "$HERE/results.md"
