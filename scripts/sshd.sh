#!/bin/sh
# A private sshd on 127.0.0.1:2222 for testing DAC's ssh:// transport.
#   scripts/sshd.sh start   install openssh-server if needed, create keys, start, self-test
#   scripts/sshd.sh stop    stop the sshd started here (only that one)
#   scripts/sshd.sh env     print export lines; use: eval "$(scripts/sshd.sh env)"
#   scripts/sshd.sh status
# Everything lives in $DAC_SSHD_DIR (default /tmp/dac-sshd); the system sshd and its
# configuration are not touched. Needs root (it logs in as root).
set -eu

DIR=${DAC_SSHD_DIR:-/tmp/dac-sshd}
ADDR=127.0.0.1
PORT=${DAC_SSHD_PORT:-2222}
PIDFILE=$DIR/sshd.pid
CONF=$DIR/sshd_config
HOSTKEY=$DIR/host_ed25519_key
CLIENTKEY=$DIR/client_ed25519_key
AUTHKEYS=$DIR/authorized_keys
LOG=$DIR/sshd.log
SSHD=/usr/sbin/sshd

say() { printf 'sshd.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

client_opts() {
    printf '%s' "-i $CLIENTKEY -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
}

running_pid() {
    [ -f "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    # Only a process started with our config counts; a recycled pid must not be killed.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-f $CONF" || return 1
    echo "$pid"
}

install_sshd() {
    [ -x "$SSHD" ] && command -v ssh >/dev/null && command -v ssh-keygen >/dev/null && return 0
    command -v apt-get >/dev/null || die "openssh-server missing and apt-get not available"
    say "installing openssh-server"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        openssh-server openssh-client >/dev/null
    [ -x "$SSHD" ] || die "openssh-server installation did not provide $SSHD"
}

make_files() {
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    [ -s "$HOSTKEY" ] || ssh-keygen -q -t ed25519 -N '' -C dac-sshd-host -f "$HOSTKEY"
    [ -s "$CLIENTKEY" ] || ssh-keygen -q -t ed25519 -N '' -C dac-sshd-client -f "$CLIENTKEY"
    cp "$CLIENTKEY.pub" "$AUTHKEYS"
    chmod 600 "$HOSTKEY" "$CLIENTKEY" "$AUTHKEYS"
    # The collector opens one ssh connection per request and may run several at once;
    # the default MaxStartups (10:30:100) would drop some of them at random.
    cat >"$CONF" <<EOF
ListenAddress $ADDR:$PORT
HostKey $HOSTKEY
PidFile $PIDFILE
AuthorizedKeysFile $AUTHKEYS
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
MaxStartups 200:30:400
MaxSessions 50
LoginGraceTime 30
X11Forwarding no
AllowTcpForwarding no
LogLevel VERBOSE
EOF
    # Privilege separation directory; normally created by the distribution's unit file.
    mkdir -p /run/sshd
    chmod 755 /run/sshd
}

self_test() {
    # shellcheck disable=SC2046
    ssh $(client_opts) -o BatchMode=yes -o ConnectTimeout=5 -p "$PORT" "root@$ADDR" true
}

start() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    install_sshd
    if pid=$(running_pid); then
        say "already running (pid $pid) on $ADDR:$PORT"
        self_test || die "running sshd (pid $pid) refuses the test key; see $LOG"
        return 0
    fi
    make_files
    "$SSHD" -t -f "$CONF" || die "sshd rejected $CONF"
    # -E keeps sshd's log in $DIR instead of syslog (there may be no syslog at all).
    "$SSHD" -f "$CONF" -E "$LOG"
    i=0
    while ! running_pid >/dev/null; do
        i=$((i + 1))
        [ $i -lt 50 ] || die "sshd did not start; see $LOG"
        sleep 0.1
    done
    i=0
    until self_test 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 30 ] || { self_test || true; die "ssh login test failed; see $LOG"; }
        sleep 0.2
    done
    say "running (pid $(running_pid)) on $ADDR:$PORT, login test ok"
    # The remote side of ssh:// runs `docker system dial-stdio`; say early if it cannot.
    # shellcheck disable=SC2046
    if ! ssh $(client_opts) -o BatchMode=yes -p "$PORT" "root@$ADDR" \
        'docker system dial-stdio --help' >/dev/null 2>&1; then
        say "warning: no docker CLI with 'system dial-stdio' in the remote PATH"
    fi
}

stop() {
    if pid=$(running_pid); then
        kill "$pid"
        i=0
        while kill -0 "$pid" 2>/dev/null; do
            i=$((i + 1))
            [ $i -lt 50 ] || die "sshd (pid $pid) did not stop"
            sleep 0.1
        done
        say "stopped (pid $pid)"
    else
        say "not running"
    fi
    rm -f "$PIDFILE"
}

env_lines() {
    [ -s "$CLIENTKEY" ] || die "no client key yet; run: $0 start"
    running_pid >/dev/null || say "warning: sshd is not running; run: $0 start"
    printf 'export DAC_SSH_HOST=ssh://root@%s:%s\n' "$ADDR" "$PORT"
    printf 'export DAC_SSH_KEY=%s\n' "$CLIENTKEY"
    printf 'export DAC_SSH_OPTS="%s"\n' "$(client_opts)"
}

case ${1:-} in
start) start ;;
stop) stop ;;
env) env_lines ;;
status)
    if pid=$(running_pid); then echo "running pid $pid on $ADDR:$PORT"; else
        echo "not running"
        exit 1
    fi
    ;;
*)
    echo "usage: $0 start|stop|env|status" >&2
    exit 2
    ;;
esac
